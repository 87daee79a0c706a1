//! Where splits live: beside the tables in the warehouse's object store
//! (`<warehouse>/sluice-index/pod_logs/`), so a query service on another
//! machine finds them, with a local cache of unpacked splits.
//!
//! - `splits/<id>.split`: one split, its tantivy files packed into one
//!   object (`SLUICESPLIT1`, a JSON table of contents, the files);
//! - `state.json`: the index — the splits that are part of it with their
//!   metadata, and the last snapshot indexed. Replacing it is the commit:
//!   a split not listed there is not part of the index.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::split::SplitMeta;

const MAGIC: &[u8] = b"SLUICESPLIT1\n";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store {0}: {1}")]
    Object(String, object_store::Error),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("split {0} is not a sluice split: {1}")]
    Format(String, String),
    #[error("index state {0}: {1}")]
    State(String, serde_json::Error),
    #[error("warehouse location {0:?}: {1}")]
    Location(String, String),
}

/// The index of a table, as committed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexState {
    pub version: u32,
    /// Last `pod_logs` snapshot whose appended files are indexed.
    pub watermark: Option<i64>,
    pub splits: Vec<SplitMeta>,
}

/// One table's index in an object store.
#[derive(Debug, Clone)]
pub struct IndexStore {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    /// Shown in errors.
    location: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    len: u64,
}

/// Why the index store of a catalog could not be located.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("{0}")]
    Catalog(String),
    #[error("index store {location}: {reason}")]
    Store { location: String, reason: String },
}

impl IndexStore {
    /// The index store of the `pod_logs` table of `catalog`: beside the
    /// table, in the same object store.
    pub async fn of_catalog(
        catalog: &dyn iceberg::Catalog,
        stores: &sluice_warehouse::object_stores::ObjectStores,
    ) -> Result<Self, LocateError> {
        use sluice_schema::tables::POD_LOGS;
        let table = catalog
            .load_table(&POD_LOGS.ident())
            .await
            .map_err(|e| LocateError::Catalog(e.to_string()))?;
        let location = Self::location_for_table(table.metadata().location(), POD_LOGS.name);
        let (store, root) = stores
            .store_for(&location)
            .map_err(|reason| LocateError::Store {
                location: location.clone(),
                reason,
            })?;
        Ok(Self::new(store, root, location))
    }

    pub fn new(store: Arc<dyn ObjectStore>, root: ObjectPath, location: String) -> Self {
        Self {
            store,
            root,
            location,
        }
    }

    /// The index location for a table: `<warehouse>/sluice-index/<table>`,
    /// from the table's location `<warehouse>/<namespace>/<table>`. Kept out
    /// of the table's own directory, which other engines' maintenance owns.
    pub fn location_for_table(table_location: &str, table: &str) -> String {
        let t = table_location.trim_end_matches('/');
        let warehouse = t.rsplitn(3, '/').nth(2).unwrap_or(t);
        format!("{warehouse}/sluice-index/{table}")
    }

    fn err(&self, e: object_store::Error) -> StoreError {
        StoreError::Object(self.location.clone(), e)
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, rel: &str) -> ObjectPath {
        let mut p = self.root.clone();
        for part in rel.split('/') {
            p = p.clone().join(part);
        }
        p
    }

    pub async fn load_state(&self) -> Result<IndexState, StoreError> {
        match self.store.get(&self.path("state.json")).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| self.err(e))?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::State(self.location.clone(), e))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(IndexState {
                version: 1,
                ..Default::default()
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Replaces the state: the commit of every split it lists.
    pub async fn save_state(&self, state: &IndexState) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec(state).map_err(|e| StoreError::State(self.location.clone(), e))?;
        self.store
            .put(&self.path("state.json"), Bytes::from(bytes).into())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Packs the split built in `dir` and uploads it; returns its size.
    pub async fn upload_split(&self, id: &str, dir: &Path) -> Result<u64, StoreError> {
        let packed = pack(dir)?;
        let len = packed.len() as u64;
        self.store
            .put(
                &self.path(&format!("splits/{id}.split")),
                Bytes::from(packed).into(),
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(len)
    }

    pub async fn delete_split(&self, id: &str) -> Result<(), StoreError> {
        match self
            .store
            .delete(&self.path(&format!("splits/{id}.split")))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Ids of the split objects in the store, with their last change.
    pub async fn list_splits(
        &self,
    ) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, StoreError> {
        use futures::TryStreamExt;
        let prefix = self.path("splits");
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let name = o.location.filename()?.strip_suffix(".split")?.to_string();
                Some((name, o.last_modified))
            })
            .collect())
    }

    /// The split unpacked under `cache/<id>`, downloaded if not there yet.
    pub async fn fetch_split(&self, id: &str, cache: &Path) -> Result<PathBuf, StoreError> {
        let dir = cache.join(id);
        if dir.join(".complete").exists() {
            return Ok(dir);
        }
        let bytes = self
            .store
            .get(&self.path(&format!("splits/{id}.split")))
            .await
            .map_err(|e| self.err(e))?
            .bytes()
            .await
            .map_err(|e| self.err(e))?;
        // Requests may fetch the same split at once: each unpacks into its own
        // directory and the first to finish wins.
        static FETCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = FETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = cache.join(format!("{id}.tmp-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        unpack(id, &bytes, &tmp)?;
        std::fs::write(tmp.join(".complete"), b"").map_err(|e| StoreError::Io(tmp.clone(), e))?;
        if dir.join(".complete").exists() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(dir);
        }
        // A directory without its marker is a fetch that died half-way.
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            if dir.join(".complete").exists() {
                return Ok(dir);
            }
            return Err(StoreError::Io(dir.clone(), e));
        }
        Ok(dir)
    }
}

/// Every file of a finished tantivy directory in one buffer.
pub fn pack(dir: &Path) -> Result<Vec<u8>, StoreError> {
    let io = |e| StoreError::Io(dir.to_path_buf(), e);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        // The writer's lock files are not part of the index.
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    names.sort();
    let mut entries = Vec::new();
    let mut body = Vec::new();
    for name in names {
        let bytes = std::fs::read(dir.join(&name)).map_err(io)?;
        entries.push(Entry {
            name,
            len: bytes.len() as u64,
        });
        body.extend_from_slice(&bytes);
    }
    let toc = serde_json::to_vec(&entries)
        .map_err(|e| StoreError::Io(dir.to_path_buf(), std::io::Error::other(e)))?;
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + toc.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(toc.len() as u64).to_le_bytes());
    out.extend_from_slice(&toc);
    out.extend_from_slice(&body);
    Ok(out)
}

/// The inverse of [`pack`], into `dir`.
pub fn unpack(id: &str, bytes: &[u8], dir: &Path) -> Result<(), StoreError> {
    let bad = |why: &str| StoreError::Format(id.to_string(), why.to_string());
    let rest = bytes.strip_prefix(MAGIC).ok_or_else(|| bad("no magic"))?;
    let (len, rest) = rest.split_at_checked(8).ok_or_else(|| bad("truncated"))?;
    let toc_len = u64::from_le_bytes(len.try_into().map_err(|_| bad("truncated"))?) as usize;
    let (toc, mut body) = rest
        .split_at_checked(toc_len)
        .ok_or_else(|| bad("truncated table of contents"))?;
    let entries: Vec<Entry> = serde_json::from_slice(toc).map_err(|e| bad(&e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(dir.to_path_buf(), e))?;
    for e in entries {
        if e.name.contains('/') || e.name.starts_with('.') && e.name != ".managed.json" {
            return Err(bad("unexpected file name"));
        }
        let (file, next) = body
            .split_at_checked(e.len as usize)
            .ok_or_else(|| bad("truncated file"))?;
        std::fs::write(dir.join(&e.name), file)
            .map_err(|err| StoreError::Io(dir.join(&e.name), err))?;
        body = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_location_is_beside_the_tables() {
        assert_eq!(
            IndexStore::location_for_table("s3://bucket/wh/platform/pod_logs", "pod_logs"),
            "s3://bucket/wh/sluice-index/pod_logs"
        );
        assert_eq!(
            IndexStore::location_for_table("file:///data/warehouse/platform/pod_logs/", "pod_logs"),
            "file:///data/warehouse/sluice-index/pod_logs"
        );
    }

    #[test]
    fn pack_round_trip_and_damage() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.idx"), b"alpha").unwrap();
        std::fs::write(src.path().join("meta.json"), b"{}").unwrap();
        std::fs::write(src.path().join(".tantivy-writer.lock"), b"").unwrap();
        let packed = pack(src.path()).unwrap();
        let dst = tempfile::tempdir().unwrap();
        unpack("s1", &packed, dst.path()).unwrap();
        assert_eq!(std::fs::read(dst.path().join("a.idx")).unwrap(), b"alpha");
        assert!(!dst.path().join(".tantivy-writer.lock").exists());
        let err = unpack("s1", &packed[..packed.len() - 2], dst.path()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
