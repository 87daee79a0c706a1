//! Headless Chromium driven by playwright-core (both installed by
//! `scripts/test`): where they are, and running one of the browser scripts
//! of `tests/console/` with a time limit, its output shown either way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn node_modules() -> PathBuf {
    std::env::var_os("SLUICE_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/sluice/node/node_modules")
        })
}

pub fn chromium() -> PathBuf {
    std::env::var_os("SLUICE_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Where screenshots go: `$SLUICE_TEST_OUTPUT/console`, else the target's
/// temporary directory.
pub fn output_dir() -> PathBuf {
    let base = std::env::var_os("SLUICE_TEST_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    base.join("console")
}

/// Runs `node tests/console/<script> BASE OUT` with `env`; fails the test
/// when it fails or outlives `limit`.
pub fn run_script(script: &str, base: &str, out: &Path, env: &[(&str, String)], limit: Duration) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/console")
        .join(script);
    let modules = node_modules();
    assert!(
        modules.join("playwright-core/package.json").exists(),
        "playwright-core is missing from {} — `scripts/test --setup` installs it",
        modules.display()
    );
    assert!(
        chromium().exists(),
        "{} is missing — `scripts/test --setup` installs Debian's chromium",
        chromium().display()
    );
    let mut child = Command::new("node")
        .arg(&script)
        .arg(base)
        .arg(out)
        .env("SLUICE_TEST_NODE_MODULES", &modules)
        .env("SLUICE_TEST_CHROMIUM", chromium())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (the machine's Node.js)");
    // Bounded: a hung browser fails the test instead of stalling the suite.
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not finish within {limit:?}", script.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        status.success(),
        "{} failed ({status}):\n{stdout}\n{stderr}",
        script.display()
    );
}
