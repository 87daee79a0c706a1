//! Which `sluice up` a table position belongs to.
//!
//! Every commit of `sluice up` records how far each of its sources has been
//! written (`wal:events`, `pod:<file>@<generation>`). Two `up` instances
//! that share a catalog (one Postgres or REST catalog, one bucket) have
//! sources of the same names — their own write-ahead logs, their own nodes'
//! files — so the keys are scoped by an instance id kept in the data
//! directory: `<id>/wal:events`. Each instance then reads and advances only
//! its own positions, and a commit refused because its positions moved means
//! something else is writing as this instance (a copy of the data directory
//! running elsewhere): the writer stops rather than commit at a position it
//! did not read from.
//!
//! Data directories from before the scoping keep their place: their first
//! run records that the unscoped keys are theirs (`adopts_legacy_keys`), and
//! each source starts from its unscoped position until its scoped one exists.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sluice_warehouse::append::Positions;
use sluice_warehouse::source_id::SourceId;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a sluice instance file: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    /// This data directory wrote unscoped keys before instances existed.
    #[serde(default)]
    pub adopts_legacy_keys: bool,
}

/// Where a source starts reading, and what the table holds for it.
#[derive(Debug, Default, Clone)]
pub struct StartPositions {
    /// By unscoped source key: where to start reading.
    pub start: Positions,
    /// By unscoped source key: the table's position under this instance's
    /// scoped key — what the next commit must start from.
    pub committed: Positions,
}

impl Instance {
    /// Reads `<up_dir>/instance.json`, creating it (durably) on first use.
    /// `legacy` says whether the directory already holds state of a `sluice
    /// up` from before instances.
    pub fn load_or_create(up_dir: &Path, legacy: bool) -> Result<Self, InstanceError> {
        let path = up_dir.join("instance.json");
        let io = |source| InstanceError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                return serde_json::from_slice(&bytes).map_err(|source| InstanceError::Invalid {
                    path: path.clone(),
                    source,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let instance = Self {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            adopts_legacy_keys: legacy,
        };
        let json =
            serde_json::to_vec_pretty(&instance).map_err(|e| io(std::io::Error::other(e)))?;
        crate::state_file::write_atomic(&path, &json).map_err(io)?;
        tracing::info!(id = %instance.id, legacy, "this data directory is sluice up instance {}", instance.id);
        Ok(instance)
    }

    /// A source's key in the table's positions.
    pub fn scoped(&self, source: &str) -> String {
        match source.parse::<SourceId>() {
            Ok(id) => id.scoped(&self.id).to_string(),
            // Not a source id (never written by sluice): scoped all the same.
            Err(_) => format!("{}/{source}", self.id),
        }
    }

    /// This instance's view of a table's positions.
    pub fn view(&self, table: &Positions) -> StartPositions {
        let prefix = format!("{}/", self.id);
        let mut view = StartPositions::default();
        for (key, at) in table {
            if let Some(source) = key.strip_prefix(&prefix) {
                view.committed.insert(source.to_string(), *at);
                view.start.insert(source.to_string(), *at);
            }
        }
        if self.adopts_legacy_keys {
            for (key, at) in table {
                if is_legacy(key) && !view.committed.contains_key(key) {
                    view.start.insert(key.clone(), *at);
                }
            }
        }
        view
    }
}

/// A key written before instances: the bare source kinds of `sluice up`.
fn is_legacy(key: &str) -> bool {
    matches!(
        key.parse::<SourceId>(),
        Ok(SourceId::Wal { .. } | SourceId::PodLog { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_kept_and_keys_are_scoped() {
        let dir = tempfile::tempdir().unwrap();
        let a = Instance::load_or_create(dir.path(), false).unwrap();
        let again = Instance::load_or_create(dir.path(), true).unwrap();
        assert_eq!(a, again, "created once");
        let other = Instance::load_or_create(&dir.path().join("other"), false).unwrap();
        assert_ne!(a.id, other.id);
        let table = Positions::from([
            (a.scoped("wal:events"), 10),
            (other.scoped("wal:events"), 99),
            ("wal:lifecycle".to_string(), 7),
        ]);
        let view = a.view(&table);
        assert_eq!(view.start.get("wal:events"), Some(&10));
        assert_eq!(view.committed.get("wal:events"), Some(&10));
        assert_eq!(view.start.get("wal:lifecycle"), None, "not adopted");
    }

    #[test]
    fn a_legacy_directory_starts_from_unscoped_keys_until_its_own_exist() {
        let dir = tempfile::tempdir().unwrap();
        let a = Instance::load_or_create(dir.path(), true).unwrap();
        let table = Positions::from([
            ("wal:events".to_string(), 10),
            ("wal:lifecycle".to_string(), 7),
            (a.scoped("wal:lifecycle"), 9),
        ]);
        let view = a.view(&table);
        assert_eq!(view.start.get("wal:events"), Some(&10));
        assert_eq!(view.committed.get("wal:events"), None);
        assert_eq!(view.start.get("wal:lifecycle"), Some(&9));
    }
}
