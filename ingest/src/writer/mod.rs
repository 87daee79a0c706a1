//! `sluice write`: Kafka → validated, enriched rows → Iceberg, exactly once.
//!
//! Each topic feeds one table. On every partition assignment the writer reads
//! the partition's position from the table (the snapshot summary) and starts
//! there, not at the group's committed offset. A batch advances each partition
//! it covers from exactly the position the table holds; if the table moved (a
//! rebalance, a zombie), the batch is refused and the writer re-reads
//! positions and resumes from them. The group's offsets are still committed
//! after each table commit, for lag monitoring only.
//!
//! Invalid records go to the dead-letter topic with headers naming their
//! source and every validation error; they are acknowledged by the broker
//! before the commit that moves past their offsets.

pub mod dedup;
pub mod metrics;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use sluice_schema::batch;
use sluice_schema::raw::{LifecycleEvent, PodLogRecord, RawEvent};
use sluice_schema::validation::ValidationErrors;
use tokio::sync::mpsc;

use crate::enrich::Enricher;
use crate::sinks::iceberg::{Advance, Outcome, Positions, TableSink, kafka_source};
use dedup::DedupWindow;
use metrics::{DlqLabel, TableLabel, TopicLabel, WriterMetrics};

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Raw platform events (one JSON object per message).
    Events,
    /// Pod log records (one object, or an array of one container's records).
    PodLogs,
    /// Lifecycle events (one JSON object per message).
    Lifecycle,
}

/// A topic and the table it feeds.
#[derive(Debug, Clone)]
pub struct Route {
    pub topic: String,
    pub kind: RecordKind,
    pub sink: TableSink,
}

#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub bootstrap: String,
    pub group_id: String,
    pub dlq_topic: String,
    /// Flush a table's batch at this many rows…
    pub max_rows: usize,
    /// …or this many bytes of input payload (bounds memory for big records)…
    pub max_bytes: usize,
    /// …or once its oldest record waited this long.
    pub max_age: Duration,
    /// Committed ids remembered per table to drop replays.
    pub dedup_window: usize,
}

impl WriterSettings {
    pub fn new(bootstrap: &str, group_id: &str, dlq_topic: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_string(),
            group_id: group_id.to_string(),
            dlq_topic: dlq_topic.to_string(),
            max_rows: 250_000,
            max_bytes: 128 << 20,
            max_age: Duration::from_secs(2),
            dedup_window: 1_000_000,
        }
    }
}

/// Shared with the health endpoints.
#[derive(Debug, Default)]
pub struct WriterStatus {
    pub assigned_partitions: AtomicUsize,
}

#[derive(Debug)]
enum Rebalanced {
    Assigned(Vec<(String, i32, Option<i64>)>),
    Revoked(Vec<(String, i32)>),
}

struct WriterContext {
    routes: Vec<Route>,
    handle: tokio::runtime::Handle,
    events: mpsc::UnboundedSender<Rebalanced>,
}

impl ClientContext for WriterContext {}

impl WriterContext {
    fn positions_of(&self, topic: &str) -> Option<Positions> {
        let route = self.routes.iter().find(|r| r.topic == topic)?;
        // The rebalance callback is synchronous; the writer runs on a
        // multi-threaded runtime, so blocking this worker briefly is allowed.
        let loaded =
            tokio::task::block_in_place(|| self.handle.block_on(route.sink.current_positions()));
        match loaded {
            Ok(p) => Some(p),
            Err(e) => {
                // Starting from the beginning is safe: the first commit is
                // fenced and the writer then resumes from the table's positions.
                tracing::error!(error = %e, topic, "cannot read positions from the table; starting from the beginning");
                None
            }
        }
    }
}

impl ConsumerContext for WriterContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let mut cache: HashMap<String, Option<Positions>> = HashMap::new();
                let mut assigned = Vec::new();
                for (topic, partition) in parts {
                    let positions = cache
                        .entry(topic.clone())
                        .or_insert_with(|| self.positions_of(&topic));
                    let start = positions
                        .as_ref()
                        .and_then(|p| p.get(&kafka_source(&topic, partition)).copied());
                    let offset = start.map_or(Offset::Beginning, Offset::Offset);
                    if let Err(e) = tpl.set_partition_offset(&topic, partition, offset) {
                        tracing::error!(error = %e, topic, partition, "cannot set the start offset");
                    }
                    assigned.push((topic, partition, start));
                }
                tracing::info!(partitions = ?assigned, "partitions assigned; starting at the table's positions");
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assign failed");
                }
                let _ = self.events.send(Rebalanced::Assigned(assigned));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                tracing::info!(partitions = ?revoked, "partitions revoked; uncommitted rows of them are dropped");
                let _ = self.events.send(Rebalanced::Revoked(revoked));
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => tracing::error!(error = ?other, "rebalance error"),
        }
    }
}

/// Where a partition stands in this writer.
#[derive(Debug, Clone, Copy)]
struct PartitionState {
    /// The position the table holds (what the next batch must start from).
    committed: Option<i64>,
    /// One past the last offset consumed.
    next: Option<i64>,
}

#[derive(Default)]
struct Buffer {
    events: Vec<RawEvent>,
    pod_logs: Vec<PodLogRecord>,
    lifecycle: Vec<LifecycleEvent>,
    ids: HashSet<String>,
    /// Input payload bytes behind the buffered rows.
    bytes: usize,
    partitions: HashSet<i32>,
    oldest: Option<Instant>,
    dlq: Vec<DeadLetter>,
}

/// A dead letter on its way to the broker.
enum DeadLetter {
    Pending(rdkafka::producer::DeliveryFuture),
    /// The produce call itself was refused.
    Failed,
}

impl Buffer {
    fn rows(&self) -> usize {
        self.events.len() + self.pod_logs.len() + self.lifecycle.len()
    }
}

pub struct Writer {
    routes: Vec<Route>,
    settings: WriterSettings,
    enricher: Enricher,
    metrics: WriterMetrics,
    status: Arc<WriterStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("Kafka client: {0}")]
    Kafka(#[from] KafkaError),
}

fn first_field(errors: &ValidationErrors) -> String {
    errors
        .problems()
        .first()
        .map(|p| p.path.clone())
        .unwrap_or_else(|| "unknown".into())
}

impl Writer {
    pub fn new(
        routes: Vec<Route>,
        settings: WriterSettings,
        enricher: Enricher,
        metrics: WriterMetrics,
        status: Arc<WriterStatus>,
    ) -> Self {
        Self {
            routes,
            settings,
            enricher,
            metrics,
            status,
        }
    }

    /// Runs until `shutdown` resolves, then commits what is buffered.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), WriterError> {
        let (tx, mut rebalances) = mpsc::unbounded_channel();
        let context = WriterContext {
            routes: self.routes.clone(),
            handle: tokio::runtime::Handle::current(),
            events: tx,
        };
        let consumer: StreamConsumer<WriterContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.bootstrap)
            .set("group.id", &self.settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "range,roundrobin")
            // A writer that died is noticed within 10 s and its partitions move on.
            .set("session.timeout.ms", "10000")
            .create_with_context(context)?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "zstd")
            .create()?;
        let topics: Vec<&str> = self.routes.iter().map(|r| r.topic.as_str()).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(?topics, group = %self.settings.group_id, "writer subscribed");

        let mut state: BTreeMap<(String, i32), PartitionState> = BTreeMap::new();
        let mut buffers: Vec<Buffer> = self.routes.iter().map(|_| Buffer::default()).collect();
        let mut windows: Vec<DedupWindow> = self
            .routes
            .iter()
            .map(|_| DedupWindow::new(self.settings.dedup_window))
            .collect();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(event) = rebalances.recv() => {
                    self.on_rebalance(event, &consumer, &mut state, &mut buffers);
                }
                _ = tick.tick() => {
                    for i in 0..self.routes.len() {
                        let due = buffers[i].oldest.is_some_and(|t| t.elapsed() >= self.settings.max_age);
                        self.observe(i, &buffers[i]);
                        if due {
                            self.flush(i, &consumer, &mut state, &mut buffers[i], &mut windows[i]).await;
                        }
                    }
                }
                msg = consumer.recv() => {
                    // Apply assignments that arrived with this poll first.
                    while let Ok(event) = rebalances.try_recv() {
                        self.on_rebalance(event, &consumer, &mut state, &mut buffers);
                    }
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "consume error");
                            continue;
                        }
                    };
                    let topic = msg.topic().to_string();
                    let Some(i) = self.routes.iter().position(|r| r.topic == topic) else { continue };
                    let key = (topic.clone(), msg.partition());
                    let Some(st) = state.get_mut(&key) else { continue };
                    if st.next.is_some_and(|n| msg.offset() < n) {
                        continue;
                    }
                    st.next = Some(msg.offset() + 1);
                    self.metrics.events_consumed.get_or_create(&TopicLabel { topic: topic.clone() }).inc();
                    let payload = msg.payload().unwrap_or_default();
                    self.accept(i, &producer, &msg, payload, &mut buffers[i], &windows[i]);
                    buffers[i].bytes += payload.len();
                    if buffers[i].rows() >= self.settings.max_rows || buffers[i].bytes >= self.settings.max_bytes {
                        self.flush(i, &consumer, &mut state, &mut buffers[i], &mut windows[i]).await;
                    }
                }
            }
        }
        tracing::info!("shutting down: committing buffered rows");
        for i in 0..self.routes.len() {
            self.flush(i, &consumer, &mut state, &mut buffers[i], &mut windows[i])
                .await;
        }
        Ok(())
    }

    fn observe(&self, i: usize, buffer: &Buffer) {
        let table = TableLabel {
            table: self.routes[i].sink.contract().name.to_string(),
        };
        self.metrics
            .buffer_rows
            .get_or_create(&table)
            .set(buffer.rows() as i64);
        let lag = buffer.oldest.map_or(0.0, |t| t.elapsed().as_secs_f64());
        self.metrics
            .commit_lag_seconds
            .get_or_create(&table)
            .set(lag);
    }

    fn on_rebalance(
        &self,
        event: Rebalanced,
        consumer: &StreamConsumer<WriterContext>,
        state: &mut BTreeMap<(String, i32), PartitionState>,
        buffers: &mut [Buffer],
    ) {
        match event {
            Rebalanced::Assigned(parts) => {
                for (topic, partition, start) in parts {
                    state.insert(
                        (topic, partition),
                        PartitionState {
                            committed: start,
                            next: start,
                        },
                    );
                }
            }
            Rebalanced::Revoked(parts) => {
                // Uncommitted rows of revoked partitions are dropped; whoever
                // gets the partitions re-reads them from the table's positions.
                for (topic, partition) in parts {
                    state.remove(&(topic.clone(), partition));
                    if let Some(i) = self.routes.iter().position(|r| r.topic == topic)
                        && buffers[i].partitions.contains(&partition)
                    {
                        self.rewind(i, consumer, state, &mut buffers[i]);
                    }
                }
            }
        }
        let n = state.len();
        self.status.assigned_partitions.store(n, Ordering::Relaxed);
    }

    /// Drops a route's buffer and moves its partitions back to their
    /// committed positions, to be consumed again.
    fn rewind(
        &self,
        i: usize,
        consumer: &StreamConsumer<WriterContext>,
        state: &mut BTreeMap<(String, i32), PartitionState>,
        buffer: &mut Buffer,
    ) {
        let topic = &self.routes[i].topic;
        for ((t, p), st) in state.iter_mut() {
            if t != topic || !buffer.partitions.contains(p) {
                continue;
            }
            st.next = st.committed;
            let offset = st.committed.map_or(Offset::Beginning, Offset::Offset);
            if let Err(e) = consumer.seek(t, *p, offset, Duration::from_secs(5)) {
                tracing::warn!(error = %e, topic = %t, partition = p, "seek back failed");
            }
        }
        *buffer = Buffer::default();
    }

    fn dead_letter(
        &self,
        producer: &FutureProducer,
        msg: &rdkafka::message::BorrowedMessage<'_>,
        payload: &[u8],
        errors: &ValidationErrors,
        buffer: &mut Buffer,
    ) {
        let reason = first_field(errors);
        self.metrics
            .dlq
            .get_or_create(&DlqLabel {
                topic: msg.topic().to_string(),
                reason,
            })
            .inc();
        let errors_text = errors.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "source.topic",
                value: Some(msg.topic()),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(&msg.partition().to_string()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(&msg.offset().to_string()),
            })
            .insert(Header {
                key: "error",
                value: Some(&errors_text),
            });
        let record = FutureRecord::to(&self.settings.dlq_topic)
            .payload(payload)
            .headers(headers);
        let record = match msg.key() {
            Some(k) => record.key(k),
            None => record,
        };
        match producer.send_result(record) {
            Ok(delivery) => buffer.dlq.push(DeadLetter::Pending(delivery)),
            Err((e, _)) => {
                // Not acknowledged means not durable: count it against the
                // batch so it is not committed past this record.
                tracing::error!(error = %e, "dead-letter produce failed");
                buffer.dlq.push(DeadLetter::Failed);
            }
        }
    }

    fn accept(
        &self,
        i: usize,
        producer: &FutureProducer,
        msg: &rdkafka::message::BorrowedMessage<'_>,
        payload: &[u8],
        buffer: &mut Buffer,
        window: &DedupWindow,
    ) {
        let route = &self.routes[i];
        let table = TableLabel {
            table: route.sink.contract().name.to_string(),
        };
        buffer.partitions.insert(msg.partition());
        buffer.oldest.get_or_insert_with(Instant::now);
        let fresh = |id: &str, buffer: &mut Buffer| {
            if window.contains(id) || !buffer.ids.insert(id.to_string()) {
                self.metrics.duplicates_dropped.get_or_create(&table).inc();
                false
            } else {
                true
            }
        };
        match route.kind {
            RecordKind::Events => match RawEvent::from_json_bytes(payload) {
                Ok(e) => {
                    if fresh(&e.event_id, buffer) {
                        buffer.events.push(e);
                    }
                }
                Err(errors) => self.dead_letter(producer, msg, payload, &errors, buffer),
            },
            RecordKind::Lifecycle => match LifecycleEvent::from_json_bytes(payload) {
                Ok(e) => {
                    if fresh(&e.event_id, buffer) {
                        buffer.lifecycle.push(e);
                    }
                }
                Err(errors) => self.dead_letter(producer, msg, payload, &errors, buffer),
            },
            RecordKind::PodLogs => {
                let records: Result<Vec<Value>, ValidationErrors> =
                    match serde_json::from_slice::<Value>(payload) {
                        Ok(Value::Array(items)) => Ok(items),
                        Ok(v) => Ok(vec![v]),
                        Err(e) => Err(ValidationErrors::single("$", format!("not JSON: {e}"))),
                    };
                match records {
                    Ok(items) => {
                        for (n, item) in items.iter().enumerate() {
                            match PodLogRecord::from_json(item) {
                                Ok(r) => {
                                    if fresh(&r.line_id, buffer) {
                                        buffer.pod_logs.push(r);
                                    }
                                }
                                Err(errors) => {
                                    let one = serde_json::to_vec(item).unwrap_or_default();
                                    let errors = ValidationErrors(
                                        errors
                                            .0
                                            .into_iter()
                                            .map(|mut p| {
                                                p.path = format!("[{n}].{}", p.path);
                                                p
                                            })
                                            .collect(),
                                    );
                                    self.dead_letter(producer, msg, &one, &errors, buffer);
                                }
                            }
                        }
                    }
                    Err(errors) => self.dead_letter(producer, msg, payload, &errors, buffer),
                }
            }
        }
    }

    async fn flush(
        &self,
        i: usize,
        consumer: &StreamConsumer<WriterContext>,
        state: &mut BTreeMap<(String, i32), PartitionState>,
        buffer: &mut Buffer,
        window: &mut DedupWindow,
    ) {
        if buffer.partitions.is_empty() {
            return;
        }
        let route = &self.routes[i];
        let table = TableLabel {
            table: route.sink.contract().name.to_string(),
        };
        let started = Instant::now();
        // Dead letters must be durable before the commit moves past them.
        for d in std::mem::take(&mut buffer.dlq) {
            let acked = match d {
                DeadLetter::Pending(delivery) => matches!(delivery.await, Ok(Ok(_))),
                DeadLetter::Failed => false,
            };
            if !acked {
                tracing::error!(topic = %route.topic, "a dead letter was not acknowledged; re-reading the batch");
                self.metrics.append_errors.get_or_create(&table).inc();
                self.rewind(i, consumer, state, buffer);
                return;
            }
        }
        let advances: Vec<Advance> = buffer
            .partitions
            .iter()
            .filter_map(|p| {
                let st = state.get(&(route.topic.clone(), *p))?;
                Some(Advance {
                    source: kafka_source(&route.topic, *p),
                    from: st.committed,
                    to: st.next?,
                })
            })
            .collect();
        let batch = match self.build_batch(route, buffer) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "building a batch failed");
                self.metrics.append_errors.get_or_create(&table).inc();
                self.rewind(i, consumer, state, buffer);
                return;
            }
        };
        match route.sink.commit(&advances, &[batch]).await {
            Ok(Outcome::Committed {
                rows, snapshot_id, ..
            }) => {
                self.metrics
                    .rows_committed
                    .get_or_create(&table)
                    .inc_by(rows);
                self.metrics
                    .batch_flush_seconds
                    .get_or_create(&table)
                    .observe(started.elapsed().as_secs_f64());
                let mut offsets = TopicPartitionList::new();
                for a in &advances {
                    if let Some(p) = a
                        .source
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<i32>().ok())
                    {
                        if let Some(st) = state.get_mut(&(route.topic.clone(), p)) {
                            st.committed = Some(a.to);
                        }
                        let _ = offsets.add_partition_offset(&route.topic, p, Offset::Offset(a.to));
                    }
                }
                window.commit(std::mem::take(&mut buffer.ids));
                tracing::debug!(table = %table.table, rows, snapshot_id, "committed");
                *buffer = Buffer::default();
                // For lag monitoring only; positions live in the table.
                if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
                    tracing::warn!(error = %e, "committing group offsets failed");
                }
            }
            Ok(Outcome::Fenced {
                source,
                expected,
                found,
            }) => {
                tracing::warn!(%source, ?expected, ?found, "batch refused: the table moved; resuming from its positions");
                self.metrics.fenced_batches.get_or_create(&table).inc();
                let positions = route.sink.current_positions().await.unwrap_or_default();
                for ((t, p), st) in state.iter_mut() {
                    if *t == route.topic {
                        st.committed = positions.get(&kafka_source(t, *p)).copied();
                    }
                }
                self.rewind(i, consumer, state, buffer);
            }
            Err(e) => {
                tracing::error!(error = %e, "append failed; re-reading the batch");
                self.metrics.append_errors.get_or_create(&table).inc();
                self.rewind(i, consumer, state, buffer);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        self.observe(i, buffer);
    }

    fn build_batch(
        &self,
        route: &Route,
        buffer: &mut Buffer,
    ) -> Result<arrow_array::RecordBatch, String> {
        let schema = Arc::new(
            route
                .sink
                .contract()
                .arrow_schema()
                .map_err(|e| e.to_string())?,
        );
        match route.kind {
            RecordKind::Events => {
                let now = chrono::Utc::now().timestamp_micros();
                let enrichment = self.enricher.enrich_all(buffer.events.iter(), now);
                let rows: Vec<_> = std::mem::take(&mut buffer.events)
                    .into_iter()
                    .zip(enrichment)
                    .collect();
                batch::event_logs_batch(&schema, &rows).map_err(|e| e.to_string())
            }
            RecordKind::PodLogs => {
                batch::pod_logs_batch(&schema, &buffer.pod_logs).map_err(|e| e.to_string())
            }
            RecordKind::Lifecycle => {
                batch::platform_events_batch(&schema, &buffer.lifecycle).map_err(|e| e.to_string())
            }
        }
    }
}
