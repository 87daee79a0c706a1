//! `sluice up` without Kafka: sources feed one in-process writer per table
//! through bounded channels, and each commit records the sources' positions
//! (file offsets, write-ahead-log offsets) in the same Iceberg snapshot as
//! the rows they produced. After a `kill -9`, every source resumes from the
//! position its table holds, so nothing is lost or written twice — the
//! guarantee the Kafka path gets from partition offsets.
//!
//! One process owns a data directory (`sluice up` locks it), and its
//! positions are scoped by the directory's instance id (see [`instance`]),
//! so a fenced commit means the previous attempt of this very batch landed:
//! the writer re-reads the table and carries on from there. If it did not
//! land, something else is writing as this instance; the writer stops
//! instead of committing the batch at a position it was not read from.

pub mod instance;
pub mod wal;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::mpsc;

use crate::collect::acks::{Acks, LaneId};
use crate::enrich::Enricher;
use crate::outlet::{Delivery, Failed, LogOutlet, SendError};
use crate::writer::RecordKind;
use crate::writer::decode::{self, RawRecords};
use instance::{Instance, StartPositions};
use sluice_warehouse::append::{FORGOTTEN, Positions, SinkError, Sorted, TableSink};
use sluice_warehouse::checkpoint::{Advanced, Checkpoint, NotAdvanced};
use sluice_warehouse::commit_loop::Retries;
use sluice_warehouse::retry::Backoff;
use sluice_warehouse::source_id::SourceId;

/// Records from one source, in source order, and the source position after
/// them.
#[derive(Debug)]
pub struct Message {
    pub source: Arc<str>,
    pub after: i64,
    pub records: Vec<Vec<u8>>,
    /// Only at a boundary may a commit end (see [`Delivery::chunk_end`]).
    pub boundary: bool,
    acked: Option<(LaneId, u64)>,
}

impl Message {
    /// Records whose position `after` is a record boundary.
    pub fn records(source: Arc<str>, after: u64, records: Vec<Vec<u8>>) -> Self {
        Self {
            source,
            after: after as i64,
            records,
            boundary: true,
            acked: None,
        }
    }
}

/// The tailer's side of the pod-log channel: a full channel is the same
/// "queue full" a Kafka producer reports, so reading pauses.
pub struct LocalLogSink {
    tx: mpsc::Sender<Message>,
    acks: Arc<Acks>,
}

impl LocalLogSink {
    pub fn new(tx: mpsc::Sender<Message>, acks: Arc<Acks>) -> Self {
        Self { tx, acks }
    }
}

impl LogOutlet for LocalLogSink {
    fn send(
        &self,
        _key: &[u8],
        payload: &[u8],
        delivery: Box<Delivery>,
    ) -> Result<(), (SendError, Box<Delivery>)> {
        let message = Message {
            source: delivery.source.clone(),
            after: delivery.after as i64,
            records: vec![payload.to_vec()],
            boundary: delivery.chunk_end,
            acked: Some((delivery.lane, delivery.seq)),
        };
        match self.tx.try_send(message) {
            Ok(()) => Ok(()),
            Err(_) => Err((SendError::QueueFull, delivery)),
        }
    }

    /// Nothing fails once in the channel: a commit that fails is retried
    /// by the writer, which holds the messages.
    fn take_failed(&self) -> Vec<Failed> {
        Vec::new()
    }

    /// Waits until every message sent is committed, up to `timeout`.
    fn flush(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.acks.in_flight() > 0 {
            if Instant::now() >= deadline || self.tx.is_closed() {
                return Err(format!("{} messages not committed", self.acks.in_flight()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

pub use sluice_warehouse::commit_metrics::TableLabel;

/// Metrics of the in-process writers.
#[derive(Clone, Debug)]
pub struct EmbeddedMetrics {
    pub rows_committed: Family<TableLabel, Counter>,
    pub commits: Family<TableLabel, Counter>,
    pub commit_errors: Family<TableLabel, Counter>,
    pub dead_letters: Family<TableLabel, Counter>,
    pub commit_seconds: Family<TableLabel, Histogram>,
    /// Unix time of the last commit.
    pub last_commit: Family<TableLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl EmbeddedMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            rows_committed: Family::default(),
            commits: Family::default(),
            commit_errors: Family::default(),
            dead_letters: Family::default(),
            commit_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 12))
            }),
            last_commit: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("sluice_up");
        r.register(
            "rows_committed",
            "Rows appended to the tables",
            m.rows_committed.clone(),
        );
        r.register("commits", "Iceberg commits", m.commits.clone());
        r.register(
            "commit_errors",
            "Commits that failed and are retried",
            m.commit_errors.clone(),
        );
        r.register(
            "dead_letters",
            "Records that failed validation, written to the dead-letter file",
            m.dead_letters.clone(),
        );
        r.register(
            "commit_seconds",
            "Time from a batch's cut to its commit",
            m.commit_seconds.clone(),
        );
        r.register(
            "last_commit_timestamp_seconds",
            "Unix time of the table's last commit",
            m.last_commit.clone(),
        );
        m
    }
}

/// Invalid records, one JSON object per line with the table, source,
/// position and reason — the dead-letter topic's stand-in without Kafka.
pub struct DeadLetterFile {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl DeadLetterFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn write(&self, lines: &[serde_json::Value]) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            *guard = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let Some(f) = guard.as_mut() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        for l in lines {
            serde_json::to_writer(&mut buf, l)?;
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        // Before the commit that moves past these records.
        f.sync_data()
    }
}

/// When a table's batch is cut.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_records: 50_000,
            max_bytes: 64 << 20,
            max_age: Duration::from_millis(1000),
        }
    }
}

/// The writer of one table.
pub struct TableWriter {
    pub kind: RecordKind,
    pub sink: TableSink,
    pub enricher: Enricher,
    pub limits: BatchLimits,
    pub dead_letters: Arc<DeadLetterFile>,
    pub metrics: EmbeddedMetrics,
    /// Acknowledged per message once committed (the tailer's file lanes).
    pub acks: Option<Arc<Acks>>,
    /// Scopes the sources' keys in the table's positions.
    pub instance: Arc<Instance>,
}

/// Why a table writer stopped before its input closed.
#[derive(Debug, thiserror::Error)]
pub enum WriterStopped {
    #[error(
        "table {table}: another process committed positions of this instance ({instance}) — \
         source {key} expected at {expected:?}, found at {found:?}. Is a copy of this data \
         directory running elsewhere against the same catalog? Stopping rather than write \
         rows twice."
    )]
    Foreign {
        table: String,
        instance: String,
        key: String,
        expected: Option<i64>,
        found: Option<i64>,
    },
    #[error("table {table}: cannot build a batch ({reason}); stopping rather than skip it")]
    Contract { table: String, reason: String },
}

/// A batch ready to commit.
struct Batch {
    messages: Vec<Message>,
    records: usize,
}

impl TableWriter {
    fn label(&self) -> TableLabel {
        TableLabel {
            table: self.sink.contract().name.to_string(),
        }
    }

    /// This instance's positions in the table (see [`Instance::view`]),
    /// retried until the catalog answers.
    pub async fn start_positions(sink: &TableSink, instance: &Instance) -> StartPositions {
        instance.view(&Self::positions(sink).await)
    }

    /// The table's positions, retried until the catalog answers.
    pub async fn positions(sink: &TableSink) -> Positions {
        let mut backoff = Backoff::unavailable();
        loop {
            match sink.current_positions().await {
                Ok(p) => return p,
                Err(e) => {
                    tracing::error!(table = sink.contract().name, error = %e, "cannot read the table's positions; retrying");
                    backoff.wait().await;
                }
            }
        }
    }

    /// Commits what arrives on `rx` until it closes and is drained.
    pub async fn run(self, mut rx: mpsc::Receiver<Message>) -> Result<(), WriterStopped> {
        let mut positions = Checkpoint::new(
            Self::start_positions(&self.sink, &self.instance)
                .await
                .committed,
        );
        // Messages after the last boundary of their source wait here for
        // the rest of their chunk.
        let mut pending: Vec<Message> = Vec::new();
        let mut pending_records = 0usize;
        let mut pending_bytes = 0usize;
        let mut oldest: Option<Instant> = None;
        let mut open = true;
        while open || !pending.is_empty() {
            let deadline = oldest.map(|t| t + self.limits.max_age);
            let full = pending_records >= self.limits.max_records
                || pending_bytes >= self.limits.max_bytes;
            let due = full || deadline.is_some_and(|d| Instant::now() >= d) || !open;
            if !due {
                let received = match deadline {
                    Some(d) => {
                        tokio::select! {
                            m = rx.recv() => m,
                            _ = tokio::time::sleep_until(d.into()) => continue,
                        }
                    }
                    None => rx.recv().await,
                };
                match received {
                    Some(m) => {
                        pending_records += m.records.len();
                        pending_bytes += m.records.iter().map(Vec::len).sum::<usize>();
                        oldest.get_or_insert_with(Instant::now);
                        pending.push(m);
                    }
                    None => open = false,
                }
                continue;
            }
            let batch = take_through_boundaries(&mut pending);
            pending_records = pending.iter().map(|m| m.records.len()).sum();
            pending_bytes = pending.iter().flat_map(|m| &m.records).map(Vec::len).sum();
            oldest = (!pending.is_empty()).then(Instant::now);
            match batch {
                Some(batch) => self.commit(batch, &mut positions).await?,
                None if !open => {
                    // Closed with a chunk cut short: its source re-reads it.
                    tracing::debug!(
                        messages = pending.len(),
                        "dropping an unfinished chunk at shutdown"
                    );
                    pending.clear();
                }
                None => {
                    // Only unfinished chunks are pending: their ends are
                    // still in the channel, so wait for them rather than spin.
                    match rx.recv().await {
                        Some(m) => {
                            pending_records += m.records.len();
                            pending_bytes += m.records.iter().map(Vec::len).sum::<usize>();
                            pending.push(m);
                        }
                        None => open = false,
                    }
                }
            }
        }
        Ok(())
    }

    /// This instance's sources (and positions) of the pod-log files the
    /// tailer has forgotten since the last commit.
    fn forgotten_keys(&self, positions: &Checkpoint) -> Vec<(String, i64)> {
        let Some(acks) = &self.acks else {
            return Vec::new();
        };
        let gone: HashSet<String> = acks
            .take_forgotten()
            .iter()
            .map(|k| k.as_string())
            .collect();
        if gone.is_empty() {
            return Vec::new();
        }
        positions
            .sources()
            .filter(|(key, _)| {
                matches!(key.parse::<SourceId>(), Ok(SourceId::PodLog { file, .. }) if gone.contains(&file))
            })
            .map(|(key, at)| (key.to_string(), at))
            .collect()
    }

    /// Decodes, writes and commits `batch`, retrying until it is in the
    /// table: the sources are blocked behind it anyway, and giving up would
    /// leave a hole.
    async fn commit(&self, batch: Batch, positions: &mut Checkpoint) -> Result<(), WriterStopped> {
        let started = Instant::now();
        let label = self.label();
        let mut raw = RawRecords::default();
        let mut origin = Vec::with_capacity(batch.records);
        for (mi, m) in batch.messages.iter().enumerate() {
            for (ri, r) in m.records.iter().enumerate() {
                raw.push(0, raw.len() as i64, None, r);
                origin.push((mi, ri));
            }
        }
        let mut last: HashMap<Arc<str>, i64> = HashMap::new();
        let mut order: Vec<Arc<str>> = Vec::new();
        for m in &batch.messages {
            if last.insert(m.source.clone(), m.after).is_none() {
                order.push(m.source.clone());
            }
        }
        let (kind, enricher, sink) = (self.kind, self.enricher.clone(), self.sink.clone());
        let schema = match sink.contract().arrow_schema() {
            Ok(s) => Arc::new(s),
            Err(e) => {
                return Err(WriterStopped::Contract {
                    table: label.table,
                    reason: e.to_string(),
                });
            }
        };
        let now = chrono::Utc::now().timestamp_micros();
        let prepared = tokio::task::spawn_blocking(move || {
            let d =
                decode::decode(kind, &enricher, &schema, &raw, now).map_err(|e| e.to_string())?;
            let sorted = sink.sort(&d.batches).map_err(|e| e.to_string())?;
            Ok::<_, String>((sorted, d.rejects, raw))
        })
        .await;
        let prepared = prepared.map_err(|e| e.to_string()).and_then(|r| r);
        let (sorted, rejects, raw): (Option<Sorted>, Vec<decode::Reject>, RawRecords) =
            match prepared {
                Ok(p) => p,
                Err(e) => {
                    // Only a contract bug fails here: retrying cannot help and
                    // skipping would lose data, so this table stops, loudly.
                    self.metrics.commit_errors.get_or_create(&label).inc();
                    return Err(WriterStopped::Contract {
                        table: label.table,
                        reason: e,
                    });
                }
            };
        if !rejects.is_empty() {
            let lines: Vec<serde_json::Value> = rejects
                .iter()
                .map(|r| {
                    let (mi, _) = origin.get(r.record).copied().unwrap_or((0, 0));
                    let m = &batch.messages[mi];
                    let record = r.item.as_deref().unwrap_or_else(|| raw.payload(r.record));
                    json!({
                        "table": label.table,
                        "source": &*m.source,
                        "position": m.after,
                        "reason": r.errors.to_string(),
                        "record": String::from_utf8_lossy(record),
                    })
                })
                .collect();
            let mut backoff = Backoff::unavailable();
            while let Err(e) = self.dead_letters.write(&lines) {
                tracing::error!(path = %self.dead_letters.path().display(), error = %e, "cannot write dead letters; retrying");
                backoff.wait().await;
            }
            self.metrics
                .dead_letters
                .get_or_create(&label)
                .inc_by(rejects.len() as u64);
        }
        let mut to: Vec<(String, i64)> = order.iter().map(|s| (s.to_string(), last[s])).collect();
        // Pod-log files the tailer forgot (gone, read to their end, retired
        // past [collector] forget_after_secs) leave the table's positions
        // with this commit, so the map every snapshot carries holds the
        // files that exist, not every file there ever was.
        let forgotten = self.forgotten_keys(positions);
        to.extend(forgotten.iter().map(|(key, _)| (key.clone(), FORGOTTEN)));
        let on_error = |e: &SinkError| {
            tracing::error!(table = %label.table, error = %e, "commit failed; retrying");
            self.metrics.commit_errors.get_or_create(&label).inc();
        };
        let scoped = |s: &str| self.instance.scoped(s);
        match positions
            .try_advance(
                &self.sink,
                &to,
                &scoped,
                sorted.as_ref(),
                Retries::UntilDecided,
                &on_error,
            )
            .await
        {
            Ok(Advanced { rows, earlier }) => {
                if !forgotten.is_empty() {
                    tracing::info!(table = %label.table, files = forgotten.len(), "positions of forgotten pod-log files removed");
                }
                if earlier {
                    // Only this instance writes its keys: an earlier
                    // attempt of this very batch landed (its answer lost).
                    tracing::info!(table = %label.table, "an earlier attempt of this batch had committed");
                } else {
                    self.metrics
                        .rows_committed
                        .get_or_create(&label)
                        .inc_by(rows);
                    self.metrics.commits.get_or_create(&label).inc();
                    self.metrics
                        .commit_seconds
                        .get_or_create(&label)
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics
                        .last_commit
                        .get_or_create(&label)
                        .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
                }
            }
            Err(NotAdvanced::Fenced {
                source,
                expected,
                found,
            }) => {
                // Someone else writes as this instance.
                self.metrics.commit_errors.get_or_create(&label).inc();
                return Err(WriterStopped::Foreign {
                    table: label.table,
                    instance: self.instance.id.clone(),
                    key: source,
                    expected,
                    found,
                });
            }
            // Retried until decided: never here.
            Err(NotAdvanced::Failed(e)) => {
                return Err(WriterStopped::Contract {
                    table: label.table,
                    reason: e.to_string(),
                });
            }
        }
        if let Some(acks) = &self.acks {
            for m in &batch.messages {
                if let Some((lane, seq)) = m.acked {
                    acks.acked(lane, seq);
                }
            }
        }
        Ok(())
    }
}

/// Takes every message up to the last boundary of its source; the rest (an
/// unfinished chunk) stays.
fn take_through_boundaries(pending: &mut Vec<Message>) -> Option<Batch> {
    let mut last_boundary: HashMap<Arc<str>, usize> = HashMap::new();
    for (i, m) in pending.iter().enumerate() {
        if m.boundary {
            last_boundary.insert(m.source.clone(), i);
        }
    }
    if last_boundary.is_empty() {
        return None;
    }
    let mut take = Vec::new();
    let mut keep = Vec::new();
    for (i, m) in pending.drain(..).enumerate() {
        if last_boundary.get(&m.source).is_some_and(|&b| i <= b) {
            take.push(m);
        } else {
            keep.push(m);
        }
    }
    *pending = keep;
    let records = take.iter().map(|m| m.records.len()).sum();
    Some(Batch {
        messages: take,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(source: &str, after: i64, boundary: bool) -> Message {
        Message {
            source: source.into(),
            after,
            records: vec![b"{}".to_vec()],
            boundary,
            acked: None,
        }
    }

    #[test]
    fn a_batch_ends_at_each_source_s_last_boundary() {
        let mut pending = vec![
            msg("a", 0, false),
            msg("a", 10, true),
            msg("b", 0, false),
            msg("a", 10, false),
        ];
        let batch = take_through_boundaries(&mut pending).unwrap();
        assert_eq!(batch.records, 2);
        assert_eq!(pending.len(), 2);
        assert!(take_through_boundaries(&mut pending).is_none());
        pending.push(msg("b", 20, true));
        let batch = take_through_boundaries(&mut pending).unwrap();
        assert_eq!(batch.records, 2);
        assert_eq!(pending.len(), 1);
    }
}
