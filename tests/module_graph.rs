//! The module graph of every crate in the workspace: no two files import
//! each other (a cycle means one of them holds what both need, which then
//! belongs in a module of its own). Reads the sources: a `crate::a::b`
//! or `super::…` path (in `use` or inline, outside `#[cfg(test)]`
//! modules) makes a file depend on the file that defines module `a::b`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace members, from the root `Cargo.toml`.
fn members(root: &Path) -> Vec<String> {
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    manifest["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src` (`a/b.rs`, `a/b/mod.rs` → `[a, b]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file defining the longest prefix of `path` that is a module file.
fn file_of(modules: &BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<PathBuf> {
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]).cloned())
}

/// The code of a file without its comments and its `#[cfg(test)]` modules.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_test = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if skip_depth.is_none() && t.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let opens = line.matches('{').count() as i32;
        let closes = line.matches('}').count() as i32;
        if pending_test && t.starts_with("mod ") && opens > 0 {
            skip_depth = Some(depth);
        }
        pending_test = false;
        depth += opens - closes;
        match skip_depth {
            Some(d) if depth <= d => skip_depth = None,
            Some(_) => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// `crate::a::b` and `super::a` paths in `code`, as module paths.
fn imported(code: &str, me: &[String]) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    for (start, prefix) in [("crate::", 0usize), ("super::", 1)] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (ident(bytes[at - 1]) || bytes[at - 1] == b':') && prefix == 0 {
                continue;
            }
            // Base module: the crate root, or this module's parent (for
            // `a/b.rs` and `a/b/mod.rs` alike, module `a`).
            let mut base: Vec<String> = if prefix == 0 {
                Vec::new()
            } else {
                me[..me.len().saturating_sub(1)].to_vec()
            };
            let mut rest = &code[from..];
            // super::super::…
            while prefix == 1 && rest.starts_with("super::") {
                base.pop();
                rest = &rest["super::".len()..];
            }
            let mut path = base;
            for seg in rest.split("::") {
                let name: String = seg
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.is_empty() || name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                    break;
                }
                path.push(name.clone());
                if name.len() != seg.len() {
                    break;
                }
            }
            out.insert(path);
        }
    }
    out
}

#[test]
fn no_two_files_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cycles = Vec::new();
    let mut edges_seen = 0;
    let crates = members(root);
    assert!(crates.len() >= 8, "{crates:?}");
    for krate in &crates {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeMap<Vec<String>, PathBuf> = files
            .iter()
            .map(|f| (module_of(&src, f), f.clone()))
            .collect();
        let mut deps: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for f in &files {
            let me = module_of(&src, f);
            let text = std::fs::read_to_string(f).unwrap();
            for path in imported(&code(&text), &me) {
                if let Some(target) = file_of(&modules, &path)
                    && &target != f
                {
                    deps.entry(f.clone()).or_default().insert(target);
                }
            }
        }
        for (a, targets) in &deps {
            for b in targets {
                edges_seen += 1;
                // A parent module file declaring `mod child` is not an
                // import; only paths count, and both directions must be
                // paths for a cycle.
                if a < b && deps.get(b).is_some_and(|t| t.contains(a)) {
                    cycles.push(format!(
                        "{} <-> {}",
                        a.strip_prefix(root).unwrap().display(),
                        b.strip_prefix(root).unwrap().display()
                    ));
                }
            }
        }
    }
    // The scan found the workspace's imports (a broken scan finds none).
    assert!(edges_seen > 150, "only {edges_seen} imports found");
    assert!(
        cycles.is_empty(),
        "files importing each other:\n{}",
        cycles.join("\n")
    );
}
