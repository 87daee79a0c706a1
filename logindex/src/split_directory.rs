//! A split searched in place: a read-only tantivy [`Directory`] over the
//! split's object, answering from its hotcache (in memory while the split
//! is open) and otherwise by ranged reads through the process's
//! [`RangeCache`].
//!
//! tantivy reads synchronously; a search runs on a blocking thread, and a
//! read there hands its fetch to the runtime and waits for it. The warm-up
//! before a search (see `search::warm_up`) uses the async reads instead, so
//! the postings and columns a query needs are fetched concurrently.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use tantivy::HasLen;
use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::{Directory, FileHandle, OwnedBytes, WatchCallback, WatchHandle, WritePtr};

use crate::range_cache::RangeCache;
use crate::split_file::{self, FileEntry, Footer, HotRange, TRAILER_BYTES};

/// One split object and how to read it.
pub struct SplitSource {
    pub id: Arc<str>,
    pub store: Arc<dyn ObjectStore>,
    pub path: ObjectPath,
    /// Bytes of the object.
    pub len: u64,
    pub cache: Arc<RangeCache>,
    /// Where fetches run (the caller's runtime).
    pub runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for SplitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitSource")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish()
    }
}

impl SplitSource {
    pub async fn read_async(&self, range: Range<u64>) -> io::Result<OwnedBytes> {
        let store = self.store.clone();
        let path = self.path.clone();
        self.cache
            .read(&self.id, self.len, range, |ranges| async move {
                store
                    .get_ranges(&path, &ranges)
                    .await
                    .map_err(|e| io::Error::other(format!("reading split {path}: {e}")))
            })
            .await
    }

    /// For tantivy's synchronous reads. The fetch runs on the runtime and
    /// this thread waits: a blocking thread simply waits; a runtime worker
    /// (a multi-threaded runtime's) hands its other tasks on first; a
    /// single-threaded runtime's cannot wait without stopping the fetch, so
    /// that read fails rather than hangs.
    fn read(self: &Arc<Self>, range: Range<u64>) -> io::Result<OwnedBytes> {
        let this = self.clone();
        let (tx, rx) = futures::channel::oneshot::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(this.read_async(range).await);
        });
        let wait = || {
            futures::executor::block_on(rx)
                .map_err(|_| io::Error::other("the runtime that fetches splits stopped"))?
        };
        match tokio::runtime::Handle::try_current() {
            Err(_) => wait(),
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            Ok(_) => Err(io::Error::other(
                "a split read in place was read synchronously on a single-threaded runtime",
            )),
        }
    }

    /// Bytes read straight from the store, not kept in the cache.
    async fn fetch(&self, range: Range<u64>) -> io::Result<OwnedBytes> {
        let bytes = self
            .store
            .get_ranges(&self.path, std::slice::from_ref(&range))
            .await
            .map_err(|e| io::Error::other(format!("reading split {}: {e}", self.path)))?;
        let bytes = bytes.into_iter().next().unwrap_or_default();
        if bytes.len() as u64 != range.end - range.start {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("split {}: short read", self.path),
            ));
        }
        Ok(OwnedBytes::new(bytes.to_vec()))
    }
}

struct Inner {
    source: Arc<SplitSource>,
    files: HashMap<PathBuf, FileEntry>,
    hot: HashMap<PathBuf, Vec<HotRange>>,
    hotcache: OwnedBytes,
}

/// The split's files, read in place.
#[derive(Clone)]
pub struct SplitDirectory {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SplitDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SplitDirectory({})", self.inner.source.id)
    }
}

impl SplitDirectory {
    /// Reads the split's footer and hotcache: one ranged read when
    /// `hotcache_offset` (from the split's metadata) is known, three
    /// otherwise.
    pub async fn open(source: Arc<SplitSource>, hotcache_offset: Option<u64>) -> io::Result<Self> {
        let bad = |e: split_file::SplitFileError| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("split {}: {e}", source.id),
            )
        };
        let len = source.len;
        let start = match hotcache_offset {
            Some(o) if o < len => o,
            _ => {
                let trailer = source
                    .fetch(len.saturating_sub(TRAILER_BYTES as u64)..len)
                    .await?;
                let json_len = split_file::footer_len(trailer.as_slice()).map_err(bad)?;
                let json_at = len
                    .checked_sub(TRAILER_BYTES as u64 + json_len)
                    .ok_or_else(|| bad(split_file::SplitFileError::Format("truncated".into())))?;
                let json = source.fetch(json_at..len - TRAILER_BYTES as u64).await?;
                let footer: Footer = serde_json::from_slice(json.as_slice())
                    .map_err(|e| bad(split_file::SplitFileError::Format(format!("footer: {e}"))))?;
                footer.hotcache_offset
            }
        };
        let tail = source.fetch(start..len).await?;
        source.cache.count_fetched(tail.len() as u64);
        let (footer, hotcache) = split_file::parse_tail(tail).map_err(bad)?;
        let mut hot: HashMap<PathBuf, Vec<HotRange>> = HashMap::new();
        for h in footer.hot {
            hot.entry(PathBuf::from(&h.file)).or_default().push(h);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                files: footer
                    .files
                    .into_iter()
                    .map(|(name, e)| (PathBuf::from(name), e))
                    .collect(),
                hot,
                hotcache,
            }),
        })
    }

    /// Bytes of the hotcache (kept in memory while the split is open).
    pub fn hotcache_bytes(&self) -> usize {
        self.inner.hotcache.len()
    }

    pub fn source(&self) -> &Arc<SplitSource> {
        &self.inner.source
    }
}

impl Inner {
    fn hot(&self, path: &Path, range: &Range<usize>) -> Option<OwnedBytes> {
        let (start, end) = (range.start as u64, range.end as u64);
        let h = self
            .hot
            .get(path)?
            .iter()
            .find(|h| h.start <= start && end <= h.start + h.len)?;
        let at = (h.at + start - h.start) as usize;
        Some(self.hotcache.slice(at..at + range.len()))
    }
}

#[derive(Clone)]
struct SplitFile {
    dir: Arc<Inner>,
    path: PathBuf,
    entry: FileEntry,
}

impl std::fmt::Debug for SplitFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.dir.source.id, self.path.display())
    }
}

impl SplitFile {
    fn absolute(&self, range: &Range<usize>) -> io::Result<Range<u64>> {
        if range.end as u64 > self.entry.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{self:?}: read past the file's end"),
            ));
        }
        Ok(self.entry.offset + range.start as u64..self.entry.offset + range.end as u64)
    }
}

impl HasLen for SplitFile {
    fn len(&self) -> usize {
        self.entry.len as usize
    }
}

#[async_trait::async_trait]
impl FileHandle for SplitFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if let Some(b) = self.dir.hot(&self.path, &range) {
            return Ok(b);
        }
        let absolute = self.absolute(&range)?;
        let source = &self.dir.source;
        if let Some(b) = source.cache.cached_range(&source.id, &absolute) {
            return Ok(b);
        }
        source.read(absolute)
    }

    async fn read_bytes_async(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if let Some(b) = self.dir.hot(&self.path, &range) {
            return Ok(b);
        }
        self.dir.source.read_async(self.absolute(&range)?).await
    }
}

fn read_only(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: a split is read-only", path.display()),
    )
}

impl Directory for SplitDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let entry = self
            .inner
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))?;
        Ok(Arc::new(SplitFile {
            dir: self.inner.clone(),
            path: path.to_path_buf(),
            entry,
        }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: Arc::new(read_only(path)),
            filepath: path.to_path_buf(),
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        Ok(self.inner.files.contains_key(path))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::wrap_io_error(
            read_only(path),
            path.to_path_buf(),
        ))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let handle = self.get_file_handle(path)?;
        handle
            .read_bytes(0..handle.len())
            .map(|b| b.as_slice().to_vec())
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))
    }

    fn atomic_write(&self, path: &Path, _data: &[u8]) -> io::Result<()> {
        Err(read_only(path))
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    /// Nothing writes a split: readers need no lock (the default takes one
    /// by creating a file).
    fn acquire_lock(
        &self,
        _lock: &tantivy::directory::Lock,
    ) -> Result<tantivy::directory::DirectoryLock, tantivy::directory::error::LockError> {
        Ok(tantivy::directory::DirectoryLock::from(Box::new(())))
    }

    fn watch(&self, _watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }
}
