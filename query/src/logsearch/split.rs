//! A split: one tantivy index over a time slice of `pod_logs`, built from
//! the table's rows and searchable alone. Splits are immutable; the index
//! of a table is the set of its splits (see `store`).

use std::collections::BTreeSet;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use serde::{Deserialize, Serialize};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{Index, IndexWriter, TantivyDocument};

use super::terms::{TermSpan, term_spans};

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
}

impl Default for LogFields {
    fn default() -> Self {
        Self::new()
    }
}

impl LogFields {
    pub fn new() -> Self {
        let mut b = Schema::builder();
        let exact = STRING | STORED | FAST;
        let message = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(MESSAGE_TOKENIZER)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored();
        let ts = b.add_i64_field("ts", INDEXED | STORED | FAST);
        let namespace = b.add_text_field("namespace", exact.clone());
        let pod = b.add_text_field("pod", exact.clone());
        let pod_uid = b.add_text_field("pod_uid", exact.clone());
        let container = b.add_text_field("container", exact.clone());
        let restart = b.add_i64_field("restart", INDEXED | STORED | FAST);
        let stream = b.add_text_field("stream", exact.clone());
        let level = b.add_text_field("level", exact.clone());
        let node = b.add_text_field("node", exact);
        let message = b.add_text_field("message", message);
        // Stored only: never searched, and unique per line, so indexing it
        // would make the term dictionary as large as the index.
        let line_id = b.add_text_field("line_id", STORED);
        let byte_offset = b.add_i64_field("byte_offset", STORED | FAST);
        let bytes = b.add_u64_field("bytes", FAST);
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

/// The message tokenizer for tantivy (see [`super::terms`]).
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
}

impl SplitMeta {
    /// Whether a search with these bounds and filters can match in here.
    pub fn may_match(
        &self,
        from: Option<i64>,
        to: Option<i64>,
        namespace: Option<&str>,
        pod: Option<&str>,
    ) -> bool {
        if from.is_some_and(|f| self.max_ts < f) || to.is_some_and(|t| self.min_ts >= t) {
            return false;
        }
        if let Some(ns) = namespace
            && !self.namespaces.contains(ns)
        {
            return false;
        }
        if let Some(pod) = pod {
            let found = match namespace {
                Some(ns) => self.pods.contains(&format!("{ns}/{pod}")),
                None => self
                    .pods
                    .iter()
                    .any(|p| p.rsplit_once('/').is_some_and(|(_, p)| p == pod)),
            };
            if !found {
                return false;
            }
        }
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("pod_logs batch has no usable column {0:?}")]
    Column(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Builds one split in `dir` from `pod_logs` batches.
pub struct SplitWriter {
    fields: LogFields,
    index: Index,
    writer: IndexWriter<TantivyDocument>,
    meta: SplitMeta,
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

impl SplitWriter {
    pub fn create(dir: &Path, id: &str) -> Result<Self, SplitError> {
        let fields = LogFields::new();
        std::fs::create_dir_all(dir)?;
        let index = Index::create_in_dir(dir, fields.schema.clone())?;
        register_tokenizer(&index);
        // One thread: the indexer parallelises across splits, not inside one.
        let writer = index.writer_with_num_threads(1, 96 << 20)?;
        Ok(Self {
            fields,
            index,
            writer,
            meta: SplitMeta {
                id: id.to_string(),
                min_ts: i64::MAX,
                max_ts: i64::MIN,
                ..Default::default()
            },
        })
    }

    /// Adds every row of a `pod_logs` batch (the table's Arrow schema).
    pub fn add_batch(&mut self, batch: &RecordBatch) -> Result<(), SplitError> {
        let f = &self.fields;
        let ts = batch
            .column_by_name("ts")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or(SplitError::Column("ts"))?;
        let restart = batch
            .column_by_name("restart")
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .ok_or(SplitError::Column("restart"))?;
        let offset = batch
            .column_by_name("byte_offset")
            .and_then(|c| c.as_primitive_opt::<Int64Type>());
        let namespace = strings(batch, "namespace")?;
        let pod = strings(batch, "pod")?;
        let pod_uid = strings(batch, "pod_uid")?;
        let container = strings(batch, "container")?;
        let stream = strings(batch, "stream")?;
        let level = strings(batch, "level")?;
        let node = strings(batch, "node")?;
        let message = strings(batch, "message")?;
        let line_id = strings(batch, "line_id")?;
        for i in 0..batch.num_rows() {
            let t = ts.value(i);
            let mut doc = TantivyDocument::new();
            doc.add_i64(f.ts, t);
            doc.add_text(f.namespace, namespace.value(i));
            doc.add_text(f.pod, pod.value(i));
            doc.add_text(f.pod_uid, pod_uid.value(i));
            doc.add_text(f.container, container.value(i));
            doc.add_i64(f.restart, i64::from(restart.value(i)));
            doc.add_text(f.stream, stream.value(i));
            if level.is_valid(i) {
                doc.add_text(f.level, level.value(i));
            }
            if node.is_valid(i) {
                doc.add_text(f.node, node.value(i));
            }
            doc.add_text(f.message, message.value(i));
            doc.add_u64(f.bytes, message.value(i).len() as u64);
            doc.add_text(f.line_id, line_id.value(i));
            if let Some(o) = offset.filter(|o| o.is_valid(i)) {
                doc.add_i64(f.byte_offset, o.value(i));
            }
            self.writer.add_document(doc)?;
            let m = &mut self.meta;
            m.min_ts = m.min_ts.min(t);
            m.max_ts = m.max_ts.max(t);
            m.lines += 1;
            m.raw_bytes += message.value(i).len() as u64;
            // Rows come grouped by pod (the table's sort order): only a
            // change of pod can add to the sets.
            let same_pod = i > 0
                && namespace.value(i) == namespace.value(i - 1)
                && pod.value(i) == pod.value(i - 1);
            if !same_pod {
                if !m.namespaces.contains(namespace.value(i)) {
                    m.namespaces.insert(namespace.value(i).to_string());
                }
                let key = format!("{}/{}", namespace.value(i), pod.value(i));
                if !m.pods.contains(&key) {
                    m.pods.insert(key);
                }
            }
        }
        Ok(())
    }

    pub fn lines(&self) -> u64 {
        self.meta.lines
    }

    /// Commits and merges into one segment; returns what the split holds.
    pub fn finish(mut self) -> Result<SplitMeta, SplitError> {
        self.writer.commit()?;
        let segments = self.index.searchable_segment_ids()?;
        if segments.len() > 1 {
            let _ = self.writer.merge(&segments).wait()?;
        }
        self.writer.wait_merging_threads()?;
        Ok(self.meta)
    }
}
