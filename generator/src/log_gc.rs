//! What kubelet deletes, done by the live demo: a container's rotated log
//! files beyond `containerLogMaxFiles` (default 5: the live file and four
//! rotated), and the logs of dead instances beyond the previous one (the
//! container garbage collector's `MaxPerPodContainer` = 1, which is what
//! keeps the lines before an OOMKill readable after the restart).
//!
//! Without it the demo's log directory and the collector's positions (one
//! per file it has seen) grew for as long as the demo ran.
//!
//! Tests compare the tables with the lines on disk; lines in files removed
//! here are counted in `<out>/removed-log-lines.json` (the total, and the
//! file being removed while it is removed, so a crash in between neither
//! loses nor double-counts a file: the next start finishes the removal).

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

/// kubelet's `containerLogMaxFiles` default, the live file included.
pub const MAX_FILES: usize = 5;
/// The ledger of removed lines, under the demo's output directory.
pub const LEDGER: &str = "removed-log-lines.json";
/// Files written to more recently than this stay whatever the limits say.
/// Each start of the demo begins a new instance of every container, so a
/// demo restarted twice in a row (a `kill -9`ed `sluice up`, in the chaos
/// suite) would otherwise remove the instance its collector had not
/// finished reading when it was killed.
pub const MIN_AGE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    /// Complete logical lines in files removed so far.
    lines: u64,
    /// A file being removed and its lines (already in `lines`).
    #[serde(default)]
    pending: Option<(PathBuf, u64)>,
}

/// Removes what kubelet would, keeping count of the lines removed.
pub struct LogGc {
    path: PathBuf,
    ledger: Ledger,
}

/// Lines removed by the demo under `out` (0 when none were).
pub fn removed_lines(out: &Path) -> anyhow::Result<u64> {
    let path = out.join(LEDGER);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice::<Ledger>(&bytes)
            .with_context(|| format!("reading {}", path.display()))?
            .lines),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Complete logical lines (partial parts joined) in a CRI log file, gzipped
/// or not.
pub fn logical_lines(path: &Path) -> std::io::Result<u64> {
    let file = std::fs::File::open(path)?;
    let mut text = Vec::new();
    if path.extension().is_some_and(|x| x == "gz") {
        MultiGzDecoder::new(file).read_to_end(&mut text)?;
    } else {
        BufReader::new(file).read_to_end(&mut text)?;
    }
    Ok(text
        .split_inclusive(|b| *b == b'\n')
        .filter(|line| line.ends_with(b"\n"))
        .filter(|line| line.splitn(4, |b| *b == b' ').nth(2) == Some(b"F"))
        .count() as u64)
}

/// The instance (restart number) a log file belongs to: `<restart>.log…`.
fn restart_of(name: &str) -> Option<i32> {
    name.split('.').next()?.parse().ok()
}

impl LogGc {
    /// Reads the ledger under `out` and finishes a removal a crash cut
    /// short.
    pub fn open(out: &Path) -> anyhow::Result<Self> {
        let path = out.join(LEDGER);
        let ledger = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut gc = Self { path, ledger };
        if let Some((file, _)) = gc.ledger.pending.clone() {
            gc.finish(&file)?;
        }
        Ok(gc)
    }

    fn save(&self) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.ledger)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn finish(&mut self, file: &Path) -> anyhow::Result<()> {
        match std::fs::remove_file(file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", file.display())),
        }
        self.ledger.pending = None;
        self.save()
    }

    fn remove(&mut self, file: PathBuf) -> anyhow::Result<()> {
        let lines = logical_lines(&file).with_context(|| format!("counting {}", file.display()))?;
        self.ledger.lines += lines;
        self.ledger.pending = Some((file.clone(), lines));
        self.save()?;
        self.finish(&file)
    }

    /// Applies kubelet's limits to one container's directory, whose live
    /// instance is `current`: files of instances before `current - 1` go,
    /// and each remaining instance keeps its newest `MAX_FILES - 1` rotated
    /// files; none written to within [`MIN_AGE`]. Returns how many files
    /// went.
    pub fn sweep(&mut self, dir: &Path, current: i32) -> anyhow::Result<usize> {
        // A removal an earlier sweep counted but did not finish (its error
        // was returned): finished first, so the next cannot replace it.
        if let Some((file, _)) = self.ledger.pending.clone() {
            self.finish(&file)?;
        }
        let mut old = Vec::new();
        let mut rotated: std::collections::BTreeMap<i32, Vec<String>> = Default::default();
        let now = std::time::SystemTime::now();
        let mut recent = std::collections::HashSet::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let fresh = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() < MIN_AGE)
                .unwrap_or(true);
            let name = entry.file_name().to_string_lossy().into_owned();
            if fresh {
                recent.insert(name.clone());
            }
            let Some(restart) = restart_of(&name) else {
                continue;
            };
            if restart < current - 1 {
                old.push(name);
            } else if name != format!("{restart}.log") {
                rotated.entry(restart).or_default().push(name);
            }
        }
        for names in rotated.values_mut() {
            // `<r>.log.<YYYYMMDD-HHMMSS>[.gz]`: by name is by age.
            names.sort();
            let excess = names.len().saturating_sub(MAX_FILES - 1);
            old.extend(names.drain(..excess));
        }
        // Counted against the limits, but not removed while written to.
        old.retain(|name| !recent.contains(name));
        let removed = old.len();
        for name in old {
            self.remove(dir.join(name))?;
        }
        Ok(removed)
    }

    /// Lines removed so far.
    pub fn lines(&self) -> u64 {
        self.ledger.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log file of `lines` logical lines, last written `age` ago.
    fn write_aged(dir: &Path, name: &str, lines: usize, age: std::time::Duration) {
        let mut text = String::new();
        for i in 0..lines {
            // A partial part, then the final part of one logical line.
            text.push_str(&format!("2026-12-05T00:00:00.{i:09}Z stdout P part\n"));
            text.push_str(&format!("2026-12-05T00:00:00.{i:09}Z stdout F line {i}\n"));
        }
        std::fs::write(dir.join(name), text).unwrap();
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(name))
            .unwrap();
        file.set_modified(std::time::SystemTime::now() - age)
            .unwrap();
    }

    fn write(dir: &Path, name: &str, lines: usize) {
        write_aged(dir, name, lines, MIN_AGE * 2);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_what_kubelet_keeps_and_counts_the_rest() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("c");
        std::fs::create_dir(&dir).unwrap();
        write(&dir, "0.log", 3);
        write(&dir, "0.log.20261205-000000", 4);
        write(&dir, "1.log", 5);
        write(&dir, "2.log", 1);
        for (i, lines) in [10, 20, 30, 40, 50, 60].iter().enumerate() {
            write(&dir, &format!("2.log.20261205-00000{i}"), *lines);
        }
        let mut gc = LogGc::open(out.path()).unwrap();
        assert_eq!(gc.sweep(&dir, 2).unwrap(), 4);
        assert_eq!(
            names(&dir),
            [
                "1.log",
                "2.log",
                "2.log.20261205-000002",
                "2.log.20261205-000003",
                "2.log.20261205-000004",
                "2.log.20261205-000005",
            ]
        );
        assert_eq!(gc.lines(), 3 + 4 + 10 + 20);
        assert_eq!(removed_lines(out.path()).unwrap(), 37);
        // Nothing more to do; the count stays.
        assert_eq!(gc.sweep(&dir, 2).unwrap(), 0);
        // Past the limits but written to a moment ago: kept for now.
        write_aged(&dir, "2.log.20261205-000006", 70, std::time::Duration::ZERO);
        write(&dir, "2.log.20261205-000007", 80);
        assert_eq!(gc.sweep(&dir, 3).unwrap(), 3, "1.log and two rotations");
        assert!(dir.join("2.log.20261205-000006").exists());
        assert_eq!(gc.lines(), 37 + 5 + 30 + 40);
        assert_eq!(LogGc::open(out.path()).unwrap().lines(), 112);
    }

    #[test]
    fn a_removal_cut_short_is_finished_once() {
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("0.log.20261205-000000");
        write(out.path(), "0.log.20261205-000000", 7);
        // The ledger was saved with the file counted, then the process died.
        let ledger = Ledger {
            lines: 7,
            pending: Some((file.clone(), 7)),
        };
        std::fs::write(
            out.path().join(LEDGER),
            serde_json::to_vec(&ledger).unwrap(),
        )
        .unwrap();
        let gc = LogGc::open(out.path()).unwrap();
        assert!(!file.exists());
        assert_eq!(gc.lines(), 7);
        assert_eq!(removed_lines(out.path()).unwrap(), 7);
    }
}
