//! The split file: a finished tantivy index packed into one object that a
//! search reads in place, by byte ranges.
//!
//! ```text
//! [file 1][file 2]…[hotcache][footer JSON][footer length: u64 LE][MAGIC]
//! ```
//!
//! The footer lists each tantivy file's place in the object and the
//! *hotcache*: the byte ranges of those files that opening the index and its
//! term dictionaries reads (file footers, the term dictionaries' block
//! index, the doc store's skip index, `meta.json`), recorded at build time by
//! opening the index through [`RecordingDirectory`]. A reader fetches the
//! hotcache and the footer in one ranged read (its offset is in the split's
//! metadata, [`crate::split::SplitMeta::hotcache_offset`]) and everything
//! else a query touches on demand (see `split_directory`).

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, FileHandle, MmapDirectory, OwnedBytes, WatchCallback, WatchHandle, WritePtr,
};
use tantivy::{HasLen, Index, ReloadPolicy};

/// Ends every split object (format 3: in place, with a hotcache).
pub const MAGIC: &[u8; 8] = b"SLUICE03";
/// Footer length and magic.
pub const TRAILER_BYTES: usize = 16;

/// Where a tantivy file is in the split object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub offset: u64,
    pub len: u64,
}

/// A range of a file kept in the hotcache, and where in the hotcache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotRange {
    pub file: String,
    /// In the file.
    pub start: u64,
    pub len: u64,
    /// In the hotcache.
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Footer {
    pub files: BTreeMap<String, FileEntry>,
    /// Offset of the hotcache in the object; the footer follows it.
    pub hotcache_offset: u64,
    pub hotcache_len: u64,
    pub hot: Vec<HotRange>,
}

#[derive(Debug, thiserror::Error)]
pub enum SplitFileError {
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("recording the hotcache: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("not a sluice split (format 3): {0}")]
    Format(String),
}

/// A split object to be written: the tantivy files of its directory, in
/// order, then `trailer` (the hotcache, the footer, its length and the
/// magic). Read through [`Packed::reader`], so the object is streamed to
/// the store from the files as they are: packing into a file first wrote
/// and read every split once more (a copy of the whole index per build).
#[derive(Debug)]
pub struct Packed {
    files: Vec<PathBuf>,
    trailer: Vec<u8>,
    /// The object's size.
    pub len: u64,
    /// Where the hotcache begins in the object.
    pub hotcache_offset: u64,
}

impl Packed {
    /// The object's bytes, from the files (opened now) and the trailer.
    pub fn reader(&self) -> Result<Box<dyn io::Read + Send>, SplitFileError> {
        let mut out: Box<dyn io::Read + Send> = Box::new(io::Cursor::new(self.trailer.clone()));
        for path in self.files.iter().rev() {
            let file =
                std::fs::File::open(path).map_err(|e| SplitFileError::Io(path.clone(), e))?;
            out = Box::new(io::Read::chain(file, out));
        }
        Ok(out)
    }
}

/// Packs the tantivy index in `dir` into a split object, with its
/// hotcache: only the hot ranges are read here.
pub fn pack(dir: &Path) -> Result<Packed, SplitFileError> {
    use std::io::{Read, Seek, Write};
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| SplitFileError::Io(p.clone(), e)
    };
    let hot = record_hotcache(dir)?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        // The writer's lock files are not part of the index.
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    names.sort();
    let mut footer = Footer::default();
    let mut offset = 0u64;
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let len = std::fs::metadata(&path).map_err(io(&path))?.len();
        footer.files.insert(name, FileEntry { offset, len });
        offset += len;
        files.push(path);
    }
    footer.hotcache_offset = offset;
    let mut trailer = Vec::new();
    for (name, ranges) in &hot {
        let (Some(entry), path) = (footer.files.get(name), dir.join(name)) else {
            continue;
        };
        let mut file = std::fs::File::open(&path).map_err(io(&path))?;
        for r in ranges {
            let end = (r.end as u64).min(entry.len);
            if r.start as u64 >= end {
                continue;
            }
            let len = end - r.start as u64;
            file.seek(io::SeekFrom::Start(r.start as u64))
                .map_err(io(&path))?;
            let at = trailer.len() as u64;
            (&mut file)
                .take(len)
                .read_to_end(&mut trailer)
                .map_err(io(&path))?;
            if trailer.len() as u64 != at + len {
                return Err(SplitFileError::Io(
                    path,
                    io::Error::from(io::ErrorKind::UnexpectedEof),
                ));
            }
            footer.hot.push(HotRange {
                file: name.clone(),
                start: r.start as u64,
                len,
                at,
            });
        }
    }
    footer.hotcache_len = trailer.len() as u64;
    let json = serde_json::to_vec(&footer)
        .map_err(|e| SplitFileError::Io(dir.to_path_buf(), io::Error::other(e)))?;
    let io_vec = |e| SplitFileError::Io(dir.to_path_buf(), e);
    trailer.write_all(&json).map_err(io_vec)?;
    trailer
        .write_all(&(json.len() as u64).to_le_bytes())
        .map_err(io_vec)?;
    trailer.write_all(MAGIC).map_err(io_vec)?;
    Ok(Packed {
        files,
        len: offset + trailer.len() as u64,
        trailer,
        hotcache_offset: footer.hotcache_offset,
    })
}

/// The footer length a split's last [`TRAILER_BYTES`] give.
pub fn footer_len(trailer: &[u8]) -> Result<u64, SplitFileError> {
    let bad = |why: &str| SplitFileError::Format(why.to_string());
    if trailer.len() != TRAILER_BYTES || &trailer[8..] != MAGIC {
        return Err(bad("no magic at the end"));
    }
    let len = u64::from_le_bytes(trailer[..8].try_into().map_err(|_| bad("trailer"))?);
    Ok(len)
}

/// The footer and the hotcache from the split's tail `[hotcache_offset,
/// end)`.
pub fn parse_tail(tail: OwnedBytes) -> Result<(Footer, OwnedBytes), SplitFileError> {
    let bad = |why: String| SplitFileError::Format(why);
    let n = tail.len();
    if n < TRAILER_BYTES {
        return Err(bad("truncated".into()));
    }
    let json_len = footer_len(&tail.as_slice()[n - TRAILER_BYTES..])? as usize;
    let json_at = (n - TRAILER_BYTES)
        .checked_sub(json_len)
        .ok_or_else(|| bad("footer longer than the split".into()))?;
    let footer: Footer = serde_json::from_slice(&tail.as_slice()[json_at..n - TRAILER_BYTES])
        .map_err(|e| bad(format!("footer: {e}")))?;
    if footer.hotcache_len as usize != json_at {
        return Err(bad(format!(
            "the hotcache is {} bytes, the tail holds {json_at}",
            footer.hotcache_len
        )));
    }
    Ok((footer, tail.slice(0..json_at)))
}

/// Writes the files of a split (the whole object in `bytes`) into `dir`.
pub fn unpack(bytes: &[u8], dir: &Path) -> Result<(), SplitFileError> {
    let n = bytes.len();
    let bad = |why: &str| SplitFileError::Format(why.to_string());
    let trailer = bytes
        .get(n.saturating_sub(TRAILER_BYTES)..)
        .ok_or_else(|| bad("truncated"))?;
    let json_len = footer_len(trailer)? as usize;
    let json_at = (n - TRAILER_BYTES)
        .checked_sub(json_len)
        .ok_or_else(|| bad("truncated footer"))?;
    let footer: Footer = serde_json::from_slice(&bytes[json_at..n - TRAILER_BYTES])
        .map_err(|e| bad(&format!("footer: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| SplitFileError::Io(dir.to_path_buf(), e))?;
    for (name, e) in &footer.files {
        if name.contains('/') || name.starts_with('.') && name != ".managed.json" {
            return Err(bad("unexpected file name"));
        }
        let range = e.offset as usize..(e.offset + e.len) as usize;
        let file = bytes.get(range).ok_or_else(|| bad("truncated file"))?;
        std::fs::write(dir.join(name), file)
            .map_err(|err| SplitFileError::Io(dir.join(name), err))?;
    }
    Ok(())
}

/// The ranges of each file read while opening the index in `dir`, a
/// reader over it and every indexed field's term dictionary: what every
/// query needs before it reads anything of its own. Adjacent ranges are
/// joined.
fn record_hotcache(dir: &Path) -> Result<BTreeMap<String, Vec<Range<usize>>>, SplitFileError> {
    let inner = MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?;
    let reads = Arc::new(Mutex::new(Vec::new()));
    let recording = RecordingDirectory {
        inner: Box::new(inner),
        reads: reads.clone(),
    };
    let index = Index::open(recording)?;
    crate::split::register_tokenizer(&index);
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    let searcher = reader.searcher();
    let schema = index.schema();
    for segment in searcher.segment_readers() {
        for (field, entry) in schema.fields() {
            if entry.is_indexed() {
                segment.inverted_index(field)?;
            }
        }
    }
    let reads = reads.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut by_file: BTreeMap<String, Vec<Range<usize>>> = BTreeMap::new();
    for (path, range) in reads {
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            by_file.entry(name.to_string()).or_default().push(range);
        }
    }
    for ranges in by_file.values_mut() {
        ranges.sort_by_key(|r| (r.start, r.end));
        let mut joined: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for r in ranges.drain(..) {
            match joined.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => joined.push(r),
            }
        }
        *ranges = joined;
    }
    Ok(by_file)
}

/// The ranges read, by file.
type Reads = Arc<Mutex<Vec<(PathBuf, Range<usize>)>>>;

/// A directory that notes every range read through it (whole files for
/// `atomic_read`).
#[derive(Debug, Clone)]
struct RecordingDirectory {
    inner: Box<dyn Directory>,
    reads: Reads,
}

#[derive(Debug)]
struct RecordingHandle {
    path: PathBuf,
    inner: Arc<dyn FileHandle>,
    reads: Reads,
}

impl HasLen for RecordingHandle {
    fn len(&self) -> usize {
        self.inner.len()
    }
}

#[async_trait::async_trait]
impl FileHandle for RecordingHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        self.reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((self.path.clone(), range.clone()));
        self.inner.read_bytes(range)
    }
}

impl Directory for RecordingDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        Ok(Arc::new(RecordingHandle {
            path: path.to_path_buf(),
            inner: self.inner.get_file_handle(path)?,
            reads: self.reads.clone(),
        }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let bytes = self.inner.atomic_read(path)?;
        self.reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path.to_path_buf(), 0..bytes.len()));
        Ok(bytes)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn acquire_lock(
        &self,
        lock: &tantivy::directory::Lock,
    ) -> Result<tantivy::directory::DirectoryLock, tantivy::directory::error::LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}
