//! The fast-field columns a search reads hits and their order from, opened
//! once per split segment and kept in a byte-bounded LRU.
//!
//! Opening a column decodes its whole block index: tantivy's
//! blockwise-linear codec (what `ts` and `byte_offset` get) keeps one
//! header per 512 lines, read into a vector on every open. Opened for every
//! search, that was a third of a warm search's CPU (perf over a 2 GB index:
//! `Block::deserialize` and the vector it fills), and grew with the index.
//! An open column holds its bytes (shared with the range cache while that
//! has them), so the cache is bounded in bytes, not splits.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use tantivy::collector::sort_key::NaturalComparator;
use tantivy::collector::{SegmentSortKeyComputer, SortKeyComputer};
use tantivy::columnar::{Column, StrColumn};
use tantivy::index::SegmentId;
use tantivy::schema::Value;
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentReader, TantivyDocument};

use crate::split::LogFields;

/// One log line as search returns it (read from a split by
/// [`SegmentLines`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Epoch microseconds.
    pub ts: i64,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub restart: i64,
    pub stream: String,
    pub level: Option<String>,
    pub node: Option<String>,
    pub message: String,
    pub line_id: String,
    pub byte_offset: Option<i64>,
}

/// Reads hits of one segment: message and line id from the store, the rest
/// from fast fields (which the split does not store twice).
pub(crate) struct SegmentLines {
    ts: Column<i64>,
    restart: Column<i64>,
    byte_offset: Option<Column<i64>>,
    namespace: Option<StrColumn>,
    pod: Option<StrColumn>,
    pod_uid: Option<StrColumn>,
    container: Option<StrColumn>,
    stream: Option<StrColumn>,
    level: Option<StrColumn>,
    node: Option<StrColumn>,
}

/// The columns [`SegmentLines`] opens: those a hit is read from besides
/// the stored message and id, and `ts` (also the order of hits).
pub(crate) const COLUMNS: [&str; 10] = [
    "ts",
    "restart",
    "byte_offset",
    "namespace",
    "pod",
    "pod_uid",
    "container",
    "stream",
    "level",
    "node",
];

/// The value of a string fast field for `doc` (`None` when it has none).
fn str_value(col: &Option<StrColumn>, doc: DocId) -> tantivy::Result<Option<String>> {
    let Some(col) = col else {
        return Ok(None);
    };
    let Some(ord) = col.term_ords(doc).next() else {
        return Ok(None);
    };
    let mut out = String::new();
    col.ord_to_str(ord, &mut out)?;
    Ok(Some(out))
}

impl SegmentLines {
    /// The segment's `ts` column (the order of hits).
    pub(crate) fn ts(&self) -> &Column<i64> {
        &self.ts
    }

    fn open(reader: &SegmentReader) -> tantivy::Result<Self> {
        let ff = reader.fast_fields();
        Ok(Self {
            ts: ff.i64("ts")?,
            restart: ff.i64("restart")?,
            byte_offset: ff.column_opt::<i64>("byte_offset")?,
            namespace: ff.str("namespace")?,
            pod: ff.str("pod")?,
            pod_uid: ff.str("pod_uid")?,
            container: ff.str("container")?,
            stream: ff.str("stream")?,
            level: ff.str("level")?,
            node: ff.str("node")?,
        })
    }

    /// Bytes of the segment's columns this holds open.
    fn bytes(reader: &SegmentReader) -> u64 {
        let ff = reader.fast_fields();
        COLUMNS
            .iter()
            .filter_map(|c| ff.column_num_bytes(c).ok())
            .map(|b| b.get_bytes())
            .sum()
    }

    pub(crate) fn load(
        &self,
        fields: &LogFields,
        searcher: &Searcher,
        addr: DocAddress,
    ) -> tantivy::Result<LogLine> {
        let doc: TantivyDocument = searcher.doc(addr)?;
        let stored = |f| {
            doc.get_first(f)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .unwrap_or_default()
        };
        let d = addr.doc_id;
        let pod_uid = str_value(&self.pod_uid, d)?.unwrap_or_default();
        let container = str_value(&self.container, d)?.unwrap_or_default();
        let restart = self.restart.first(d).unwrap_or_default();
        let byte_offset = self.byte_offset.as_ref().and_then(|c| c.first(d));
        // Format 4 stores the file fingerprint instead of an id that
        // derives from it (the split checked that it does when built).
        let fingerprint = doc
            .get_first(fields.file_fingerprint)
            .and_then(|v| v.as_u64());
        let line_id = match (fingerprint, byte_offset, i32::try_from(restart)) {
            (Some(fp), Some(offset), Ok(restart)) => {
                let id =
                    crate::split::derived_line_id(&pod_uid, &container, restart, fp as i64, offset);
                String::from_utf8_lossy(&id).into_owned()
            }
            _ => stored(fields.line_id),
        };
        Ok(LogLine {
            ts: self.ts.first(d).unwrap_or_default(),
            namespace: str_value(&self.namespace, d)?.unwrap_or_default(),
            pod: str_value(&self.pod, d)?.unwrap_or_default(),
            pod_uid,
            container,
            restart,
            stream: str_value(&self.stream, d)?.unwrap_or_default(),
            level: str_value(&self.level, d)?,
            node: str_value(&self.node, d)?,
            message: stored(fields.message),
            line_id,
            byte_offset,
        })
    }
}

/// Which opened split a segment belongs to: a number given to each
/// [`crate::search::OpenSplit`] (split ids repeat across tests and rebuilds;
/// an open split's segments never change).
type Key = (u64, SegmentId);

/// Opened [`SegmentLines`], least recently used out first, holding at most
/// `budget` bytes of columns (a segment bigger than that is opened for each
/// search and not kept).
pub struct ColumnCache {
    budget: u64,
    state: Mutex<State>,
}

struct State {
    lru: lru::LruCache<Key, (Arc<SegmentLines>, u64)>,
    bytes: u64,
}

impl ColumnCache {
    pub fn new(budget_bytes: u64) -> Self {
        Self {
            budget: budget_bytes,
            state: Mutex::new(State {
                lru: lru::LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes of the columns held open.
    pub fn bytes(&self) -> u64 {
        self.state().bytes
    }

    pub(crate) fn get_or_open(
        &self,
        split: u64,
        reader: &SegmentReader,
    ) -> tantivy::Result<Arc<SegmentLines>> {
        let key = (split, reader.segment_id());
        if let Some((lines, _)) = self.state().lru.get(&key) {
            return Ok(lines.clone());
        }
        // Opened outside the lock: other searches go on meanwhile (two
        // opening the same segment both keep the first).
        let lines = Arc::new(SegmentLines::open(reader)?);
        let bytes = SegmentLines::bytes(reader);
        if bytes > self.budget {
            return Ok(lines);
        }
        let mut state = self.state();
        if let Some((kept, _)) = state.lru.get(&key) {
            return Ok(kept.clone());
        }
        state.bytes += bytes;
        state.lru.put(key, (lines.clone(), bytes));
        while state.bytes > self.budget {
            match state.lru.pop_lru() {
                Some((_, (_, b))) => state.bytes -= b,
                None => break,
            }
        }
        Ok(lines)
    }

    /// Lets go of a split's columns (the split was closed).
    pub(crate) fn forget(&self, split: u64) {
        let mut state = self.state();
        let keys: Vec<Key> = state
            .lru
            .iter()
            .filter(|(k, _)| k.0 == split)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some((_, b)) = state.lru.pop(&k) {
                state.bytes -= b;
            }
        }
    }
}

/// Orders a split's matches by time from its cached `ts` columns, as
/// `TopDocs::order_by_fast_field` would after opening the column itself.
/// Keys are the time, or its bitwise complement for oldest first (so the
/// highest key is always the first hit, across segments too; `!t` reverses
/// the order of `i64`s and cannot overflow): see [`ByTime::time_of`].
pub(crate) struct ByTime {
    pub(crate) columns: Vec<(SegmentId, Column<i64>)>,
    pub(crate) oldest_first: bool,
}

impl ByTime {
    /// The time a key stands for.
    pub(crate) fn time_of(oldest_first: bool, key: i64) -> i64 {
        if oldest_first { !key } else { key }
    }
}

pub(crate) struct ByTimeSegment {
    ts: Column<i64>,
    oldest_first: bool,
}

impl SortKeyComputer for ByTime {
    type SortKey = i64;
    type Child = ByTimeSegment;
    type Comparator = NaturalComparator;

    fn segment_sort_key_computer(&self, reader: &SegmentReader) -> tantivy::Result<ByTimeSegment> {
        let ts = match self
            .columns
            .iter()
            .find(|(id, _)| *id == reader.segment_id())
        {
            Some((_, c)) => c.clone(),
            None => reader.fast_fields().i64("ts")?,
        };
        Ok(ByTimeSegment {
            ts,
            oldest_first: self.oldest_first,
        })
    }
}

impl SegmentSortKeyComputer for ByTimeSegment {
    type SortKey = i64;
    type SegmentSortKey = i64;
    type SegmentComparator = NaturalComparator;

    fn segment_sort_key(&mut self, doc: DocId, _score: Score) -> i64 {
        // Its own inverse.
        ByTime::time_of(self.oldest_first, self.ts.first(doc).unwrap_or_default())
    }

    fn convert_segment_sort_key(&self, key: i64) -> i64 {
        key
    }
}
