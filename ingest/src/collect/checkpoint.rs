//! The collector's file positions, saved atomically and fsync'd.
//!
//! A position is saved only once the broker has acknowledged every line
//! before it, so after a crash the collector re-reads at most what was not
//! yet acknowledged — and those lines carry the ids they had the first time.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Identifies the bytes of one log file, whatever its name: the container
/// instance plus a fingerprint of the file's first line. A rotated file
/// keeps its key across the rename and the gzip.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileKey {
    pub pod_uid: String,
    pub container: String,
    pub restart: i32,
    /// Fingerprint of the first line, hex (JSON numbers lose u64 precision).
    pub fingerprint: String,
}

impl FileKey {
    pub fn as_string(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.pod_uid, self.container, self.restart, self.fingerprint
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.rsplitn(4, '/');
        let fingerprint = parts.next()?.to_string();
        let restart = parts.next()?.parse().ok()?;
        let container = parts.next()?.to_string();
        let pod_uid = parts.next()?.to_string();
        Some(Self {
            pod_uid,
            container,
            restart,
            fingerprint,
        })
    }
}

/// Where reading a file resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Byte offset (in the uncompressed stream) of the first line not yet
    /// acknowledged.
    pub offset: u64,
    /// How often the file was truncated and refilled with the same first
    /// line; part of the line ids, so refilled lines are not taken for replays.
    #[serde(default)]
    pub generation: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("collector checkpoint {path}: {source}")]
pub struct CheckpointError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: BTreeMap<String, Position>,
}

/// The checkpoint file of one collector.
#[derive(Debug)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("checkpoints.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: std::io::Error) -> CheckpointError {
        CheckpointError {
            path: self.path.clone(),
            source,
        }
    }

    /// The saved positions; none when the collector never saved any. A file
    /// that does not parse is an error, not an empty checkpoint: starting
    /// over would send every line on the node again.
    pub fn load(&self) -> Result<BTreeMap<FileKey, Position>, CheckpointError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.err(e)),
        };
        let disk: OnDisk = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        Ok(disk
            .files
            .into_iter()
            .filter_map(|(k, p)| FileKey::parse(&k).map(|k| (k, p)))
            .collect())
    }

    /// Replaces the saved positions: written to a temporary file, fsync'd,
    /// renamed over the old one, and the directory fsync'd, so a crash leaves
    /// either the old or the new checkpoint, never a torn one.
    pub fn save(&self, positions: &BTreeMap<FileKey, Position>) -> Result<(), CheckpointError> {
        let disk = OnDisk {
            version: 1,
            files: positions.iter().map(|(k, p)| (k.as_string(), *p)).collect(),
        };
        let bytes = serde_json::to_vec(&disk)
            .map_err(|e| self.err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        crate::state_file::write_atomic(&self.path, &bytes).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = CheckpointFile::new(dir.path());
        assert!(file.load().unwrap().is_empty());
        let key = FileKey {
            pod_uid: "u-1".into(),
            container: "app".into(),
            restart: 2,
            fingerprint: "00ff".into(),
        };
        let mut positions = BTreeMap::new();
        positions.insert(
            key.clone(),
            Position {
                offset: 123,
                generation: 1,
            },
        );
        file.save(&positions).unwrap();
        assert_eq!(file.load().unwrap(), positions);
        fs::write(file.path(), b"{not json").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("checkpoints.json"), "{err}");
    }
}
