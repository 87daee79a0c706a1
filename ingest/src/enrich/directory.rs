//! The principal directory file, reloaded when it changes: operators edit it
//! while the writer runs. A file that fails to parse is reported and the
//! previous directory stays in use — a typo must not blank out every team.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use sluice_schema::directory::{DirectoryError, DirectoryIndex, PrincipalDirectory};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading principal directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: DirectoryError,
    },
}

/// Loads a directory file: `.csv` as CSV, anything else as YAML.
pub fn load(path: &Path) -> Result<PrincipalDirectory, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        PrincipalDirectory::from_csv(&text)
    } else {
        PrincipalDirectory::from_yaml(&text)
    };
    parsed.map_err(|source| LoadError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Debug)]
struct State {
    directory: Arc<DirectoryIndex>,
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

/// A directory file that is re-read when its modification time or size
/// changes, checked at most once per `interval`.
#[derive(Debug)]
pub struct WatchedDirectory {
    path: PathBuf,
    interval: Duration,
    state: RwLock<State>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl WatchedDirectory {
    /// Loads the file now; a missing or broken file at start is an error.
    pub fn open(path: &Path, interval: Duration) -> Result<Self, LoadError> {
        let directory = load(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            interval,
            state: RwLock::new(State {
                directory: Arc::new(DirectoryIndex::new(&directory)),
                stamp: stamp(path),
                checked: Instant::now(),
            }),
        })
    }

    /// The current directory, re-reading the file first if it changed.
    pub fn current(&self) -> Arc<DirectoryIndex> {
        let due = match self.state.read() {
            Ok(s) => s.checked.elapsed() >= self.interval,
            Err(_) => true,
        };
        if due {
            self.reload_if_changed();
        }
        match self.state.read() {
            Ok(s) => s.directory.clone(),
            Err(poisoned) => poisoned.into_inner().directory.clone(),
        }
    }

    fn reload_if_changed(&self) {
        let mut s = match self.state.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        s.checked = Instant::now();
        let now = stamp(&self.path);
        if now == s.stamp {
            return;
        }
        match load(&self.path) {
            Ok(d) => {
                tracing::info!(path = %self.path.display(), principals = d.users.len() + d.service_accounts.len(), "principal directory reloaded");
                s.directory = Arc::new(DirectoryIndex::new(&d));
                s.stamp = now;
            }
            Err(e) => {
                // Keep serving the last good directory; try again on the next change.
                tracing::warn!(error = %e, "principal directory not reloaded, keeping the previous one");
                s.stamp = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_on_change_and_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.yaml");
        std::fs::write(&path, "teams:\n  a: { domain: x }\nusers:\n  u1: a\n").unwrap();
        let w = WatchedDirectory::open(&path, Duration::ZERO).unwrap();
        assert_eq!(w.current().lookup("u1").unwrap().team, "a");
        assert!(w.current().lookup("u2").is_none());

        std::fs::write(
            &path,
            "teams:\n  b: { domain: y }\nusers:\n  u1: b\n  u2: b\n",
        )
        .unwrap();
        assert_eq!(w.current().lookup("u2").unwrap().team, "b");

        std::fs::write(&path, "users: [this is: not a map").unwrap();
        assert_eq!(
            w.current().lookup("u2").unwrap().team,
            "b",
            "broken file keeps the last good directory"
        );

        assert!(WatchedDirectory::open(&dir.path().join("missing.yaml"), Duration::ZERO).is_err());
    }
}
