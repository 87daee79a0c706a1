//! Where splits live: beside the tables in the warehouse's object store
//! (`<warehouse>/sluice-index/pod_logs/`), so a query service on another
//! machine finds them, with a local cache of unpacked splits.
//!
//! - `splits/<id>.split`: one split, its tantivy files packed into one
//!   object that a search reads in place (see `split_file`);
//! - `state.json`: the index — the splits that are part of it with their
//!   metadata, and the last snapshot indexed. Replacing it is the commit:
//!   a split not listed there is not part of the index.
//!
//! Searches read splits in place through the range cache
//! ([`IndexStore::open_split`]); only merging fetches a split whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::split::SplitMeta;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store {0}: {1}")]
    Object(String, object_store::Error),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("split {0}: {1}")]
    Format(String, crate::split_file::SplitFileError),
    #[error("index state {0}: {1}")]
    State(String, serde_json::Error),
    #[error("warehouse location {0:?}: {1}")]
    Location(String, String),
}

/// Part size of a split's upload (S3's minimum is 5 MiB). The crate's own
/// tests upload in 1 MiB parts to a local store, so their splits go up in
/// several parts, each crossing from one of the split's files to the next.
const UPLOAD_PART_BYTES: usize = if cfg!(test) { 1 << 20 } else { 16 << 20 };
/// Parts of one upload in flight at once.
const UPLOADS_IN_FLIGHT: usize = 4;

/// The index of a table, as committed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexState {
    pub version: u32,
    /// Last `pod_logs` snapshot whose appended files are indexed.
    pub watermark: Option<i64>,
    pub splits: Vec<SplitMeta>,
    /// Splits no longer part of the index (merged, expired, replaced by a
    /// rebuild) whose objects are kept a while: a query service that read
    /// the state before may still be reading them in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<Retired>,
}

/// A split taken out of the index, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retired {
    pub id: String,
    /// Epoch microseconds.
    pub at: i64,
}

impl IndexState {
    /// Takes `ids` out of the index; their objects go once
    /// [`IndexState::due_for_deletion`] says so.
    pub fn retire<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>, now: i64) {
        // In the order given (a set's order would differ run to run).
        let mut seen = std::collections::HashSet::new();
        let ids: Vec<&str> = ids.into_iter().filter(|id| seen.insert(*id)).collect();
        self.splits.retain(|s| !seen.contains(s.id.as_str()));
        self.retired.extend(ids.into_iter().map(|id| Retired {
            id: id.to_string(),
            at: now,
        }));
    }

    /// Removes from the retired list, and returns, the splits retired more
    /// than `grace_micros` before `now`.
    pub fn due_for_deletion(&mut self, now: i64, grace_micros: i64) -> Vec<String> {
        let (due, keep): (Vec<Retired>, Vec<Retired>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|r| now - r.at >= grace_micros);
        self.retired = keep;
        due.into_iter().map(|r| r.id).collect()
    }
}

/// One table's index in an object store.
#[derive(Debug, Clone)]
pub struct IndexStore {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    /// Shown in errors.
    location: String,
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
        let warehouse = sluice_warehouse::object_stores::warehouse_of(table_location);
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

    fn split_path(&self, id: &str) -> ObjectPath {
        self.path(&format!("splits/{id}.split"))
    }

    /// Packs the split built in `dir` and streams it to the store from its
    /// files; returns its size and where its hotcache begins.
    pub async fn upload_split(&self, id: &str, dir: &Path) -> Result<(u64, u64), StoreError> {
        let from = dir.to_path_buf();
        let (packed, reader) = tokio::task::spawn_blocking(move || {
            let packed = crate::split_file::pack(&from)?;
            let reader = packed.reader()?;
            Ok::<_, crate::split_file::SplitFileError>((packed, reader))
        })
        .await
        .map_err(|e| StoreError::Io(dir.to_path_buf(), std::io::Error::other(e)))?
        .map_err(|e| StoreError::Format(id.to_string(), e))?;
        self.upload(reader, dir, &self.split_path(id), packed.len)
            .await?;
        Ok((packed.len, packed.hotcache_offset))
    }

    /// Uploads what `file` reads (`len` bytes, from `from`): one put up
    /// to [`UPLOAD_PART_BYTES`], else in parts of that size, a few in
    /// flight, read a part at a time off the runtime (a tokio file would
    /// hop to a blocking thread every few KB).
    async fn upload(
        &self,
        file: Box<dyn std::io::Read + Send>,
        from: &Path,
        to: &ObjectPath,
        len: u64,
    ) -> Result<(), StoreError> {
        let io = |e| StoreError::Io(from.to_path_buf(), e);
        let read_part = |mut file: Box<dyn std::io::Read + Send>| async move {
            tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut buf = Vec::with_capacity(UPLOAD_PART_BYTES);
                (&mut file)
                    .take(UPLOAD_PART_BYTES as u64)
                    .read_to_end(&mut buf)?;
                Ok::<_, std::io::Error>((file, buf))
            })
            .await
            .map_err(std::io::Error::other)?
        };
        // A file that changed under the upload would make an object its
        // footer does not describe.
        let short = |read: u64| {
            io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("read {read} bytes of the {len} to upload"),
            ))
        };
        if len <= UPLOAD_PART_BYTES as u64 {
            let (_, bytes) = read_part(file).await.map_err(io)?;
            if bytes.len() as u64 != len {
                return Err(short(bytes.len() as u64));
            }
            self.store
                .put(to, Bytes::from(bytes).into())
                .await
                .map_err(|e| self.err(e))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(to)
            .await
            .map_err(|e| self.err(e))?;
        let mut upload =
            object_store::WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_BYTES);
        let mut file = file;
        let mut read = 0u64;
        let sent: Result<(), StoreError> = async {
            loop {
                let (f, part) = read_part(file).await.map_err(io)?;
                file = f;
                if part.is_empty() {
                    return if read == len {
                        Ok(())
                    } else {
                        Err(short(read))
                    };
                }
                read += part.len() as u64;
                upload
                    .wait_for_capacity(UPLOADS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.err(e))?;
                upload.put(Bytes::from(part));
            }
        }
        .await;
        match sent {
            Ok(()) => upload.finish().await.map(|_| ()).map_err(|e| self.err(e)),
            Err(e) => {
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }

    /// A split to search in place: its footer and hotcache read, the rest
    /// read on demand through `cache`. Call from the runtime that will run
    /// the fetches.
    pub async fn open_split(
        &self,
        meta: &crate::split::SplitMeta,
        cache: Arc<crate::range_cache::RangeCache>,
    ) -> Result<crate::split_directory::SplitDirectory, StoreError> {
        let source = Arc::new(crate::split_directory::SplitSource {
            id: Arc::from(meta.id.as_str()),
            store: self.store.clone(),
            path: self.split_path(&meta.id),
            len: meta.split_bytes,
            cache,
            runtime: tokio::runtime::Handle::current(),
        });
        crate::split_directory::SplitDirectory::open(source, meta.hotcache_offset)
            .await
            .map_err(|e| {
                StoreError::Io(
                    PathBuf::from(format!("{}/splits/{}.split", self.location, meta.id)),
                    e,
                )
            })
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

    /// The split fetched whole and unpacked into `dir` (to merge it).
    pub async fn fetch_split(&self, id: &str, dir: &Path) -> Result<(), StoreError> {
        let bytes = self
            .store
            .get(&self.split_path(id))
            .await
            .map_err(|e| self.err(e))?
            .bytes()
            .await
            .map_err(|e| self.err(e))?;
        let _ = std::fs::remove_dir_all(dir);
        crate::split_file::unpack(&bytes, dir).map_err(|e| StoreError::Format(id.to_string(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_splits_go_after_their_grace() {
        let meta = |id: &str| SplitMeta {
            id: id.into(),
            ..Default::default()
        };
        let mut state = IndexState {
            splits: vec![meta("a"), meta("b"), meta("c")],
            ..Default::default()
        };
        state.retire(["a", "b"], 1_000);
        assert_eq!(state.splits, vec![meta("c")]);
        state.retire(["c"], 5_000);
        assert!(state.due_for_deletion(1_500, 1_000).is_empty());
        assert_eq!(state.due_for_deletion(2_000, 1_000), vec!["a", "b"]);
        assert_eq!(state.retired.len(), 1);
        // A state written before retirement existed reads as none retired.
        let old: IndexState =
            serde_json::from_str(r#"{"version":1,"watermark":null,"splits":[]}"#).unwrap();
        assert!(old.retired.is_empty());
    }

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
}
