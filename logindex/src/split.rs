//! A split: one tantivy index over a time slice of `pod_logs`, built from
//! the table's rows and searchable alone. Splits are immutable; the index
//! of a table is the set of its splits (see `store`).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use serde::{Deserialize, Serialize};
use tantivy::indexer::SingleSegmentIndexWriter;
use tantivy::schema::{
    FAST, Field, IndexRecordOption, NumericOptions, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions,
};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{Index, TantivyDocument};

use crate::terms::{TermSpan, term_spans};

/// Name the message tokenizer is registered under in every split.
pub const MESSAGE_TOKENIZER: &str = "sluice_log";

/// The fields of a split.
#[derive(Debug, Clone)]
pub struct LogFields {
    pub schema: Schema,
    pub ts: Field,
    pub namespace: Field,
    pub pod: Field,
    pub pod_uid: Field,
    pub container: Field,
    pub restart: Field,
    pub stream: Field,
    pub level: Field,
    pub node: Field,
    pub message: Field,
    pub line_id: Field,
    pub byte_offset: Field,
    /// Bytes of the message (what Loki's volume and `bytes_*` count).
    pub bytes: Field,
    /// The source file's fingerprint, stored instead of `line_id` when the
    /// id derives from it (split format 4): consecutive lines share it, so
    /// the store compresses it to almost nothing, where the 32 hex digits of
    /// a hash cost 16 bytes a line.
    pub file_fingerprint: Field,
}

impl Default for LogFields {
    fn default() -> Self {
        Self::new()
    }
}

impl LogFields {
    pub fn new() -> Self {
        let mut b = Schema::builder();
        // Only what the hit needs and no fast field holds is stored: the
        // store is written and compressed line by line.
        // No field norms anywhere (split format 4): hits are ordered by time
        // and counted, never scored, and the norms cost a byte per line per
        // indexed field, 4 % of the raw logs.
        let exact = (STRING | FAST).set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        );
        let message = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(MESSAGE_TOKENIZER)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions)
                    .set_fieldnorms(false),
            )
            .set_stored();
        // Not indexed: time ranges are answered from the fast field, and
        // indexing made nearly every line's time a term of its own.
        let ts = b.add_i64_field("ts", FAST);
        let namespace = b.add_text_field("namespace", exact.clone());
        let pod = b.add_text_field("pod", exact.clone());
        let pod_uid = b.add_text_field("pod_uid", exact.clone());
        let container = b.add_text_field("container", exact.clone());
        let restart = b.add_i64_field(
            "restart",
            NumericOptions::default().set_indexed().set_fast(),
        );
        let stream = b.add_text_field("stream", exact.clone());
        let level = b.add_text_field("level", exact.clone());
        let node = b.add_text_field("node", exact);
        let message = b.add_text_field("message", message);
        // Stored only: never searched, and unique per line, so indexing it
        // would make the term dictionary as large as the index.
        let line_id = b.add_text_field("line_id", STORED);
        let byte_offset = b.add_i64_field("byte_offset", FAST);
        let bytes = b.add_u64_field("bytes", FAST);
        // Last: the fields before keep the numbers older splits have.
        let file_fingerprint = b.add_u64_field("file_fingerprint", STORED);
        Self {
            schema: b.build(),
            ts,
            namespace,
            pod,
            pod_uid,
            container,
            restart,
            stream,
            level,
            node,
            message,
            line_id,
            byte_offset,
            bytes,
            file_fingerprint,
        }
    }

    /// The field a `field:value` names.
    pub fn exact(&self, name: &str) -> Option<Field> {
        Some(match name {
            "namespace" => self.namespace,
            "pod" => self.pod,
            "pod_uid" => self.pod_uid,
            "container" => self.container,
            "stream" => self.stream,
            "level" => self.level,
            "node" => self.node,
            _ => return None,
        })
    }
}

/// The message tokenizer for tantivy (see [`crate::terms`]).
#[derive(Clone, Default)]
pub struct LogTokenizer {
    terms: Vec<TermSpan>,
    buf: String,
    token: Token,
}

pub struct LogTokenStream<'a> {
    terms: &'a [TermSpan],
    buf: &'a str,
    next: usize,
    token: &'a mut Token,
}

impl Tokenizer for LogTokenizer {
    type TokenStream<'a> = LogTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> LogTokenStream<'a> {
        term_spans(text, &mut self.terms, &mut self.buf);
        LogTokenStream {
            terms: &self.terms,
            buf: &self.buf,
            next: 0,
            token: &mut self.token,
        }
    }
}

impl TokenStream for LogTokenStream<'_> {
    fn advance(&mut self) -> bool {
        let Some(t) = self.terms.get(self.next) else {
            return false;
        };
        self.next += 1;
        self.token.text.clear();
        self.token.text.push_str(&self.buf[t.start..t.end]);
        self.token.position = t.position;
        self.token.offset_from = t.from;
        self.token.offset_to = t.to;
        self.token.position_length = 1;
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// How a split is written: the doc store compressed with zstd, which
/// holds the message text at about half lz4's size for a little more CPU
/// per hit read, in blocks of 16 KiB (a hit fetches one block). Level 1:
/// on 16 KiB blocks of generated pod logs it compresses as well as level 3
/// (ratio 5.03 against 5.02) 14 % faster (`zstd -b1 -e3 -B16384`).
pub fn split_settings() -> tantivy::IndexSettings {
    tantivy::IndexSettings {
        docstore_compression: tantivy::store::Compressor::Zstd(tantivy::store::ZstdCompressor {
            compression_level: Some(1),
        }),
        docstore_blocksize: 16 * 1024,
        ..Default::default()
    }
}

/// Registers the message tokenizer on an index (needed to write or query).
pub fn register_tokenizer(index: &Index) {
    index
        .tokenizers()
        .register(MESSAGE_TOKENIZER, LogTokenizer::default());
}

/// What a split holds, to choose splits without opening them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitMeta {
    pub id: String,
    /// Epoch microseconds, inclusive.
    pub min_ts: i64,
    pub max_ts: i64,
    pub lines: u64,
    /// Bytes of message text indexed.
    pub raw_bytes: u64,
    /// Bytes of the packed split.
    pub split_bytes: u64,
    pub namespaces: BTreeSet<String>,
    /// `<namespace>/<pod>`.
    pub pods: BTreeSet<String>,
    /// Container names.
    #[serde(default)]
    pub containers: BTreeSet<String>,
    /// The lowest and highest container restart count in the split.
    #[serde(default)]
    pub restarts: Option<(i64, i64)>,
    /// Where the split object's hotcache begins (its footer follows): one
    /// ranged read from there to the end opens the split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotcache_offset: Option<u64>,
    /// Which [`LogFields`] options the split was built with; splits of
    /// different versions are searched alike but not merged together.
    #[serde(default = "first_schema_version")]
    pub schema_version: u32,
}

/// The version of the split schema [`LogFields::new`] builds: 2 stores
/// only the message and line id and does not index `ts`; 3 has sstable term
/// dictionaries (read by block, in place), a zstd doc store, and is packed
/// with a hotcache (`split_file`); 4 has no field norms and stores the file
/// fingerprint instead of a line id that derives from it. Splits before
/// [`OLDEST_SEARCHABLE_SCHEMA_VERSION`] cannot be read in place (their term
/// dictionaries are FSTs, read whole): the indexer rebuilds an index that
/// has them.
pub const SPLIT_SCHEMA_VERSION: u32 = 4;

/// The oldest split format search reads. Format 3 splits are searched as
/// they are (a stored line id is read as stored) and merged only with each
/// other, until retention drops their days.
pub const OLDEST_SEARCHABLE_SCHEMA_VERSION: u32 = 3;

fn first_schema_version() -> u32 {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("pod_logs batch has no usable column {0:?}")]
    Column(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the split's indexing thread stopped")]
    Stopped,
    #[error("the split's indexing thread panicked")]
    Panicked,
}

fn strings<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a arrow_array::StringArray, SplitError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or(SplitError::Column(name))
}

/// Builds one split in `dir` from `pod_logs` batches.
///
/// The split is one tantivy segment, built on a thread of its own that the
/// batches are handed to: no per-line hand-off between threads, no memory
/// flushes into several segments and no merge of them when the split
/// closes (the indexer closes a split once its memory use or line count is
/// reached, see `indexer`). Several splits build side by side.
pub struct SplitWriter {
    batches: Option<std::sync::mpsc::Sender<Queued>>,
    worker: Option<std::thread::JoinHandle<Result<SplitMeta, SplitError>>>,
    lines: u64,
    mem_usage: Arc<AtomicUsize>,
}

/// A batch queued for a split's thread, with what it holds of the
/// caller's budget for queued batches (released once it is indexed).
type Queued = (RecordBatch, Option<tokio::sync::OwnedSemaphorePermit>);

/// What tantivy sizes a segment's term hash table from (it grows past
/// it); the split's memory is bounded by the indexer instead.
const SEGMENT_TABLE_BUDGET: usize = 256 << 20;

/// The columns of a `pod_logs` batch a split reads.
struct Columns<'a> {
    ts: &'a arrow_array::TimestampMicrosecondArray,
    restart: &'a arrow_array::Int32Array,
    byte_offset: Option<&'a arrow_array::Int64Array>,
    namespace: &'a arrow_array::StringArray,
    pod: &'a arrow_array::StringArray,
    pod_uid: &'a arrow_array::StringArray,
    container: &'a arrow_array::StringArray,
    stream: &'a arrow_array::StringArray,
    level: &'a arrow_array::StringArray,
    node: &'a arrow_array::StringArray,
    message: &'a arrow_array::StringArray,
    line_id: &'a arrow_array::StringArray,
    file_fingerprint: Option<&'a arrow_array::Int64Array>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self, SplitError> {
        Ok(Self {
            ts: batch
                .column_by_name("ts")
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
                .ok_or(SplitError::Column("ts"))?,
            restart: batch
                .column_by_name("restart")
                .and_then(|c| c.as_primitive_opt::<Int32Type>())
                .ok_or(SplitError::Column("restart"))?,
            byte_offset: batch
                .column_by_name("byte_offset")
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
            namespace: strings(batch, "namespace")?,
            pod: strings(batch, "pod")?,
            pod_uid: strings(batch, "pod_uid")?,
            container: strings(batch, "container")?,
            stream: strings(batch, "stream")?,
            level: strings(batch, "level")?,
            node: strings(batch, "node")?,
            message: strings(batch, "message")?,
            line_id: strings(batch, "line_id")?,
            // Absent from tables written before the column was added.
            file_fingerprint: batch
                .column_by_name("file_fingerprint")
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
        })
    }
}

/// What a split's thread owns.
struct SegmentBuilder {
    fields: LogFields,
    writer: SingleSegmentIndexWriter<TantivyDocument>,
    meta: SplitMeta,
}

impl SegmentBuilder {
    fn add_batch(&mut self, batch: &RecordBatch) -> Result<(), SplitError> {
        let f = &self.fields;
        let c = Columns::of(batch)?;
        for i in 0..batch.num_rows() {
            let t = c.ts.value(i);
            let message = c.message.value(i);
            let mut doc = TantivyDocument::new();
            doc.add_i64(f.ts, t);
            doc.add_text(f.namespace, c.namespace.value(i));
            doc.add_text(f.pod, c.pod.value(i));
            doc.add_text(f.pod_uid, c.pod_uid.value(i));
            doc.add_text(f.container, c.container.value(i));
            doc.add_i64(f.restart, i64::from(c.restart.value(i)));
            doc.add_text(f.stream, c.stream.value(i));
            if c.level.is_valid(i) {
                doc.add_text(f.level, c.level.value(i));
            }
            if c.node.is_valid(i) {
                doc.add_text(f.node, c.node.value(i));
            }
            doc.add_text(f.message, message);
            doc.add_u64(f.bytes, message.len() as u64);
            let line_id = c.line_id.value(i);
            let offset = c.byte_offset.filter(|o| o.is_valid(i)).map(|o| o.value(i));
            if let Some(o) = offset {
                doc.add_i64(f.byte_offset, o);
            }
            let fingerprint = c
                .file_fingerprint
                .filter(|fp| fp.is_valid(i))
                .map(|fp| fp.value(i));
            // The id is stored only when it does not derive from what the
            // split keeps anyway (a line not read from a file, or an id made
            // some other way): the line reads back with the id it has.
            match (fingerprint, offset) {
                (Some(fp), Some(o))
                    if derived_line_id(
                        c.pod_uid.value(i),
                        c.container.value(i),
                        c.restart.value(i),
                        fp,
                        o,
                    )
                    .as_slice()
                        == line_id.as_bytes() =>
                {
                    doc.add_u64(f.file_fingerprint, fp as u64);
                }
                _ => doc.add_text(f.line_id, line_id),
            }
            self.writer.add_document(doc)?;
            let m = &mut self.meta;
            m.min_ts = m.min_ts.min(t);
            m.max_ts = m.max_ts.max(t);
            m.lines += 1;
            m.raw_bytes += message.len() as u64;
            // Rows come grouped by pod (the table's sort order): only a
            // change of pod can add to the sets.
            let (ns, pod) = (c.namespace.value(i), c.pod.value(i));
            let restart = i64::from(c.restart.value(i));
            m.restarts = Some(match m.restarts {
                Some((lo, hi)) => (lo.min(restart), hi.max(restart)),
                None => (restart, restart),
            });
            let same_pod = i > 0
                && ns == c.namespace.value(i - 1)
                && pod == c.pod.value(i - 1)
                && c.container.value(i) == c.container.value(i - 1);
            if !same_pod {
                let container = c.container.value(i);
                if !m.containers.contains(container) {
                    m.containers.insert(container.to_string());
                }
                if !m.namespaces.contains(ns) {
                    m.namespaces.insert(ns.to_string());
                }
                let key = format!("{ns}/{pod}");
                if !m.pods.contains(&key) {
                    m.pods.insert(key);
                }
            }
        }
        Ok(())
    }

    fn run(
        mut self,
        batches: std::sync::mpsc::Receiver<Queued>,
        mem_usage: &AtomicUsize,
    ) -> Result<SplitMeta, SplitError> {
        for (batch, held) in batches {
            self.add_batch(&batch)?;
            drop(held);
            mem_usage.store(self.writer.mem_usage(), AtomicOrdering::Relaxed);
        }
        self.writer.finalize()?;
        Ok(self.meta)
    }
}

impl SplitWriter {
    pub fn create(dir: &Path, id: &str) -> Result<Self, SplitError> {
        let fields = LogFields::new();
        std::fs::create_dir_all(dir)?;
        let tokenizers = tantivy::tokenizer::TokenizerManager::default();
        tokenizers.register(MESSAGE_TOKENIZER, LogTokenizer::default());
        let directory =
            tantivy::directory::MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?;
        // `single_segment_index_writer` is hidden from tantivy's docs but
        // public; the workspace pins tantivy's version.
        let writer = Index::builder()
            .schema(fields.schema.clone())
            .settings(split_settings())
            .tokenizers(tokenizers)
            .single_segment_index_writer(directory, SEGMENT_TABLE_BUDGET)?;
        let builder = SegmentBuilder {
            fields,
            writer,
            meta: SplitMeta {
                id: id.to_string(),
                min_ts: i64::MAX,
                max_ts: i64::MIN,
                schema_version: SPLIT_SCHEMA_VERSION,
                ..Default::default()
            },
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let mem_usage = Arc::new(AtomicUsize::new(0));
        let mem = mem_usage.clone();
        let worker = std::thread::Builder::new()
            .name("sluice-split".to_string())
            .spawn(move || builder.run(rx, &mem))?;
        Ok(Self {
            batches: Some(tx),
            worker: Some(worker),
            lines: 0,
            mem_usage,
        })
    }

    /// Queues every row of a `pod_logs` batch (the table's Arrow schema)
    /// for the split's thread. The queue itself is unbounded: the caller
    /// bounds what waits by passing a permit of its budget with each batch
    /// (see [`SplitWriter::add_batch_held`]), or passes few batches.
    pub fn add_batch(&mut self, batch: &RecordBatch) -> Result<(), SplitError> {
        self.queue(batch, None)
    }

    /// [`SplitWriter::add_batch`], holding `permit` until the batch is
    /// indexed: several splits fed from one budget each get work as it
    /// comes, and no split's full queue stops the feeding of the others.
    pub fn add_batch_held(
        &mut self,
        batch: &RecordBatch,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<(), SplitError> {
        self.queue(batch, Some(permit))
    }

    fn queue(
        &mut self,
        batch: &RecordBatch,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<(), SplitError> {
        // Checked here too, so a wrong batch fails the call that passed it.
        Columns::of(batch)?;
        let sent = self
            .batches
            .as_ref()
            .is_some_and(|tx| tx.send((batch.clone(), permit)).is_ok());
        if !sent {
            // The thread stopped: its error says why.
            return Err(self.join().err().unwrap_or(SplitError::Stopped));
        }
        self.lines += batch.num_rows() as u64;
        Ok(())
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Bytes the split's in-memory index holds (as of the last batch
    /// indexed).
    pub fn mem_usage(&self) -> usize {
        self.mem_usage.load(AtomicOrdering::Relaxed)
    }

    fn join(&mut self) -> Result<SplitMeta, SplitError> {
        self.batches = None;
        let worker = self.worker.take().ok_or(SplitError::Stopped)?;
        worker.join().map_err(|_| SplitError::Panicked)?
    }

    /// Writes the split's segment; returns what the split holds.
    pub fn finish(mut self) -> Result<SplitMeta, SplitError> {
        self.join()
    }
}

/// A line's id from the fields it derives from (the table contract's
/// derivation); `fingerprint` and `offset` as the table's signed longs.
pub fn derived_line_id(
    pod_uid: &str,
    container: &str,
    restart: i32,
    fingerprint: i64,
    offset: i64,
) -> [u8; 32] {
    sluice_schema::tables::pod_log_line_id(
        pod_uid,
        container,
        restart,
        fingerprint as u64,
        offset as u64,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use arrow_schema::{DataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit};
    use tantivy::schema::Value;

    use super::*;
    use crate::search::{OpenSplit, SearchRequest, SortOrder, search};

    /// Lines read from files (id derived from the fingerprint), a line whose
    /// id was made some other way, and lines without a fingerprint: every
    /// line reads back with the id the table holds, and only the ids that
    /// do not derive are stored.
    #[test]
    fn line_ids_derive_from_the_fingerprint_or_are_stored() {
        let n = 40usize;
        let fp = |i: usize| -> Option<i64> {
            match i % 4 {
                3 => None,
                // A negative long: the fingerprint's high bit set.
                1 => Some(-0x5eed_0000_0000_0001),
                _ => Some(0x1234_5678_9abc_def0),
            }
        };
        let ids: Vec<String> = (0..n)
            .map(|i| match (fp(i), i) {
                (_, 10) => "otel-7f3a".to_string(),
                (Some(f), _) => String::from_utf8(
                    derived_line_id("uid-1", "app", 2, f, i as i64 * 100).to_vec(),
                )
                .unwrap(),
                (None, _) => format!("other-{i}"),
            })
            .collect();
        let s = |name: &str| ArrowField::new(name, DataType::Utf8, true);
        let schema = Arc::new(ArrowSchema::new(vec![
            ArrowField::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
            s("namespace"),
            s("pod"),
            s("pod_uid"),
            s("container"),
            ArrowField::new("restart", DataType::Int32, false),
            s("stream"),
            s("level"),
            s("node"),
            s("message"),
            s("line_id"),
            ArrowField::new("byte_offset", DataType::Int64, true),
            ArrowField::new("file_fingerprint", DataType::Int64, true),
        ]));
        let col = |v: &str| Arc::new(StringArray::from(vec![v; n])) as _;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from((0..n as i64).collect::<Vec<_>>())
                        .with_timezone("+00:00"),
                ),
                col("shop"),
                col("api-0"),
                col("uid-1"),
                col("app"),
                Arc::new(Int32Array::from(vec![2; n])),
                col("stdout"),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                col("handled request"),
                Arc::new(StringArray::from(ids.clone())),
                Arc::new(Int64Array::from(
                    (0..n as i64).map(|i| i * 100).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from((0..n).map(fp).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut w = SplitWriter::create(dir.path(), "s1").unwrap();
        w.add_batch(&batch).unwrap();
        let meta = w.finish().unwrap();
        assert_eq!(meta.schema_version, SPLIT_SCHEMA_VERSION);
        let split = OpenSplit::open(
            meta,
            dir.path(),
            Arc::new(crate::hit_columns::ColumnCache::new(1 << 20)),
        )
        .unwrap();
        let result = search(
            &[&split],
            &SearchRequest {
                q: crate::query_lang::parse("*").unwrap(),
                filters: Default::default(),
                limit: n,
                order: SortOrder::Asc,
                cursor: None,
                context: 0,
                cancelled: crate::search::never_cancelled,
            },
        )
        .unwrap();
        let read: Vec<&str> = result
            .hits
            .iter()
            .map(|h| h.line.line_id.as_str())
            .collect();
        assert_eq!(read, ids.iter().map(String::as_str).collect::<Vec<_>>());
        // What the store holds: a fingerprint, or the id, never both.
        let fields = LogFields::new();
        let searcher = split.searcher();
        let mut stored_ids = 0;
        for doc_id in 0..n as u32 {
            let doc: TantivyDocument = searcher.doc(tantivy::DocAddress::new(0, doc_id)).unwrap();
            let id = doc.get_first(fields.line_id).and_then(|v| v.as_str());
            let fp = doc
                .get_first(fields.file_fingerprint)
                .and_then(|v| v.as_u64());
            assert!(id.is_some() != fp.is_some(), "doc {doc_id}: {id:?} {fp:?}");
            stored_ids += usize::from(id.is_some());
        }
        // 10 without a fingerprint, and line 10's own id.
        assert_eq!(stored_ids, 11);
        // Nothing is scored: no field keeps norms.
        for (field, entry) in fields.schema.fields() {
            assert!(!entry.has_fieldnorms(), "{field:?} {}", entry.name());
        }
    }
}
