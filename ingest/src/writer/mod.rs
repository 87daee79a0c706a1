//! `sluice write`: Kafka → validated, enriched rows → Iceberg, exactly once.
//!
//! Each topic feeds one table. On every partition assignment the writer reads
//! the partition's position from the table (the snapshot summary) and starts
//! there, not at the group's committed offset. A batch advances each partition
//! it covers from exactly the position the table holds; if the table moved (a
//! rebalance, a zombie, an earlier batch of this writer that failed), the
//! batch is refused and the writer re-reads positions and resumes from them.
//! The group's offsets are still committed after each table commit, for lag
//! monitoring only.
//!
//! Three stages per table run at once, so consuming never waits for a commit:
//! the consume loop only copies records into the next batch; a decode stage
//! validates, enriches, builds Arrow columns on every core and sorts them
//! into file order; a commit stage drops replayed ids, writes Parquet and
//! commits. A batch's start positions
//! are the previous batch's ends, so if that one fails, the batches queued
//! behind it are fenced (and dropped early by epoch) and the loop seeks back
//! to the table's positions. Channels of one batch bound the memory: a
//! table holds at most five batches (filling, queued, decoding, queued,
//! committing).
//!
//! Invalid records go to the dead-letter topic with headers naming their
//! source and every validation error; they are acknowledged by the broker
//! before the commit that moves past their offsets.

pub mod decode;
pub mod dedup;
pub mod metrics;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use prometheus_client::metrics::counter::Counter;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_schema::validation::ValidationErrors;
use sluice_warehouse::retry::Backoff;
use sluice_warehouse::source_id::SourceId;
use tokio::sync::mpsc;

use crate::enrich::Enricher;
use decode::RawRecords;
use dedup::DedupWindow;
use metrics::{DlqLabel, PartitionLabel, TableLabel, TopicLabel, WriterMetrics};
use sluice_warehouse::append::{Advance, Positions, SinkError, Sorted, TableSink, kafka_source};
use sluice_warehouse::commit_loop::{Retries, Settled};
use sluice_warehouse::recent_ids::{Reach, recent_ids};

/// How often the writer asks the broker for the high watermarks of its
/// partitions and updates `sluice_writer_consumer_lag`.
pub const LAG_INTERVAL: Duration = Duration::from_secs(5);

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
    /// Cut a table's batch at this many Kafka records (counted as consumed,
    /// before decoding; a pod-log record may carry many lines)…
    pub max_rows: usize,
    /// …or this many bytes of input payload (bounds memory for big records)…
    pub max_bytes: usize,
    /// …or once its oldest record waited this long.
    pub max_age: Duration,
    /// Committed ids remembered per table to drop replays.
    pub dedup_window: usize,
    /// On every partition assignment the window is refilled with the ids
    /// of the table's appends this far back from its newest snapshot (at
    /// most `dedup_window` of them): replays that arrive after a restart or
    /// a rebalance are dropped too.
    pub dedup_horizon: Duration,
    /// Extra librdkafka properties (`[kafka.properties]`: SASL, TLS) for the
    /// consumer and the dead-letter producer.
    pub extra: std::collections::BTreeMap<String, String>,
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
            dedup_horizon: Duration::from_secs(900),
            extra: Default::default(),
        }
    }

    fn with_extra(&self) -> ClientConfig {
        crate::kafka_properties::client_config(&self.bootstrap, &self.extra)
    }

    /// The consumer's librdkafka configuration: `extra` (with sluice's
    /// consumer tuning where `extra` is silent), then what the writer relies
    /// on.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = crate::kafka_properties::consumer_config(&self.bootstrap, &self.extra);
        config
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "range,roundrobin")
            // A writer that died is noticed within 10 s and its partitions move on.
            .set("session.timeout.ms", "10000");
        config
    }

    /// The dead-letter producer's librdkafka configuration.
    pub fn dlq_producer_config(&self) -> ClientConfig {
        let mut config = self.with_extra();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "zstd");
        config
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

/// Where a partition stands in the consume loop.
#[derive(Debug, Clone, Copy)]
struct PartitionState {
    /// Where the next batch starts: the end of the last batch handed to the
    /// stages (the table's position once that batch commits).
    handed: Option<i64>,
    /// One past the last offset consumed.
    next: Option<i64>,
}

/// A table's records consumed since its last cut.
#[derive(Default)]
struct Pending {
    raw: RawRecords,
    partitions: BTreeSet<i32>,
    oldest: Option<Instant>,
    /// The oldest Kafka timestamp among the records (ms since the epoch).
    oldest_timestamp_ms: Option<i64>,
}

/// A cut batch on its way through the decode and commit stages.
struct Cut {
    seq: u64,
    epoch: u64,
    raw: RawRecords,
    advances: Vec<Advance>,
    oldest_timestamp_ms: Option<i64>,
}

/// A batch's rows, validated and sorted for its table.
struct Prepared {
    sorted: Option<Sorted>,
    /// Dedup key of every row, in input order.
    keys: Vec<u128>,
}

/// A decoded batch whose dead letters are on their way to the broker.
struct DecodedCut {
    seq: u64,
    epoch: u64,
    advances: Vec<Advance>,
    /// `Err` when the batch could not be built: it must not be committed.
    decoded: Result<Prepared, String>,
    dead_letters: Vec<DeadLetter>,
    started: Instant,
    oldest_timestamp_ms: Option<i64>,
}

/// A dead letter on its way to the broker.
enum DeadLetter {
    Pending(rdkafka::producer::DeliveryFuture),
    /// The produce call itself was refused.
    Failed,
}

/// High watermarks the broker reported: (topic, partition, low, high).
type Watermarks = Vec<(String, i32, i64, i64)>;

/// From a commit stage to the consume loop: a batch was not committed, so
/// consuming resumes at the table's positions, under a new epoch.
#[derive(Debug)]
struct Setback {
    route: usize,
    epoch: u64,
    positions: Positions,
}

/// What one table's stages share with the consume loop.
#[derive(Default)]
struct RouteShared {
    /// Batches of an older epoch are stale: a batch before them failed.
    epoch: AtomicU64,
    /// Cut, not yet committed or dropped: (seq, oldest record's arrival, rows).
    in_flight: Mutex<Vec<(u64, Instant, usize)>>,
    /// Bumped when this table's topic gets partitions, before any of their
    /// records is consumed: the commit stage then refills its dedup window
    /// from the table before committing.
    assignments: AtomicU64,
}

impl RouteShared {
    fn finished(&self, seq: u64) {
        if let Ok(mut f) = self.in_flight.lock() {
            f.retain(|(s, _, _)| *s != seq);
        }
    }

    fn stale(&self, epoch: u64) -> bool {
        epoch < self.epoch.load(Ordering::Acquire)
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
    #[error("{table}: the table contract has no valid Arrow schema: {source}")]
    Schema {
        table: &'static str,
        source: Box<iceberg::Error>,
    },
}

fn first_field(errors: &ValidationErrors) -> String {
    errors
        .problems()
        .first()
        .map(|p| p.path.clone())
        .unwrap_or_else(|| "unknown".into())
}

type KafkaConsumer = StreamConsumer<WriterContext>;

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
        let consumer: KafkaConsumer = self
            .settings
            .consumer_config()
            .create_with_context(context)?;
        let consumer = Arc::new(consumer);
        let producer: FutureProducer = self.settings.dlq_producer_config().create()?;
        let topics: Vec<&str> = self.routes.iter().map(|r| r.topic.as_str()).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(?topics, group = %self.settings.group_id, "writer subscribed");

        let (setback_tx, mut setbacks) = mpsc::unbounded_channel::<Setback>();
        let mut lanes = Vec::new();
        let mut stages = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            let shared = Arc::new(RouteShared::default());
            let (cut_tx, cut_rx) = mpsc::channel::<Cut>(1);
            let (decoded_tx, decoded_rx) = mpsc::channel::<DecodedCut>(1);
            let schema = route
                .sink
                .contract()
                .arrow_schema()
                .map(Arc::new)
                .map_err(|source| WriterError::Schema {
                    table: route.sink.contract().name,
                    source: Box::new(source),
                })?;
            let decoder = DecodeStage {
                route: route.clone(),
                schema,
                enricher: self.enricher.clone(),
                producer: producer.clone(),
                dlq_topic: self.settings.dlq_topic.clone(),
                metrics: self.metrics.clone(),
                shared: shared.clone(),
            };
            let committer = CommitStage {
                index: i,
                route: route.clone(),
                window: DedupWindow::new(self.settings.dedup_window),
                horizon: self.settings.dedup_horizon,
                refilled: None,
                metrics: self.metrics.clone(),
                shared: shared.clone(),
                consumer: consumer.clone(),
                setbacks: setback_tx.clone(),
            };
            stages.push(tokio::spawn(decoder.run(cut_rx, decoded_tx)));
            stages.push(tokio::spawn(committer.run(decoded_rx)));
            lanes.push(Lane {
                pending: Pending::default(),
                epoch: 0,
                seq: 0,
                cuts: Some(cut_tx),
                shared,
                consumed: self
                    .metrics
                    .events_consumed
                    .get_or_create(&TopicLabel {
                        topic: route.topic.clone(),
                    })
                    .clone(),
            });
        }
        drop(setback_tx);

        let mut state: HashMap<(usize, i32), PartitionState> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut lag_tick = tokio::time::interval(LAG_INTERVAL);
        lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (marks_tx, mut marks_rx) = mpsc::channel::<Watermarks>(1);
        // One watermark query at a time: a slow broker does not pile them up.
        let mut querying = false;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = lag_tick.tick(), if !querying => {
                    querying = self.query_watermarks(&consumer, &state, &marks_tx);
                }
                Some(marks) = marks_rx.recv() => {
                    querying = false;
                    self.observe_lag(&marks, &state);
                }
                Some(event) = rebalances.recv() => {
                    self.on_rebalance(event, &consumer, &mut state, &mut lanes);
                }
                Some(setback) = setbacks.recv() => {
                    self.on_setback(setback, &consumer, &mut state, &mut lanes);
                }
                _ = tick.tick() => {
                    for (i, lane) in lanes.iter_mut().enumerate() {
                        self.observe(i, lane);
                        let due = lane.pending.oldest.is_some_and(|t| t.elapsed() >= self.settings.max_age);
                        if due {
                            self.cut(i, &mut state, lane).await;
                        }
                    }
                }
                msg = consumer.recv() => {
                    // Apply assignments that arrived with this poll first.
                    while let Ok(event) = rebalances.try_recv() {
                        self.on_rebalance(event, &consumer, &mut state, &mut lanes);
                    }
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "consume error");
                            continue;
                        }
                    };
                    let Some(i) = self.routes.iter().position(|r| r.topic == msg.topic()) else { continue };
                    let partition = msg.partition();
                    let Some(st) = state.get_mut(&(i, partition)) else { continue };
                    if st.next.is_some_and(|n| msg.offset() < n) {
                        continue;
                    }
                    st.next = Some(msg.offset() + 1);
                    let lane = &mut lanes[i];
                    lane.consumed.inc();
                    let pending = &mut lane.pending;
                    pending.raw.push(partition, msg.offset(), msg.key(), msg.payload().unwrap_or_default());
                    pending.partitions.insert(partition);
                    pending.oldest.get_or_insert_with(Instant::now);
                    if let Some(ts) = msg.timestamp().to_millis() {
                        pending.oldest_timestamp_ms = Some(pending.oldest_timestamp_ms.map_or(ts, |o| o.min(ts)));
                    }
                    if pending.raw.len() >= self.settings.max_rows || pending.raw.bytes() >= self.settings.max_bytes {
                        drop(msg);
                        self.cut(i, &mut state, lane).await;
                    }
                }
            }
        }
        tracing::info!("shutting down: committing buffered rows");
        for (i, lane) in lanes.iter_mut().enumerate() {
            self.cut(i, &mut state, lane).await;
            lane.cuts = None;
        }
        for stage in stages {
            if let Err(e) = stage.await {
                tracing::error!(error = %e, "a writer stage failed");
            }
        }
        Ok(())
    }

    /// Hands a table's pending records to its stages as one batch.
    async fn cut(
        &self,
        i: usize,
        state: &mut HashMap<(usize, i32), PartitionState>,
        lane: &mut Lane,
    ) {
        if lane.pending.raw.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut lane.pending);
        let topic = &self.routes[i].topic;
        let advances: Vec<Advance> = pending
            .partitions
            .iter()
            .filter_map(|p| {
                let st = state.get_mut(&(i, *p))?;
                let advance = Advance {
                    source: kafka_source(topic, *p),
                    from: st.handed,
                    to: st.next?,
                };
                st.handed = st.next;
                Some(advance)
            })
            .collect();
        lane.seq += 1;
        let rows = pending.raw.len();
        if let Ok(mut f) = lane.shared.in_flight.lock() {
            f.push((lane.seq, pending.oldest.unwrap_or_else(Instant::now), rows));
        }
        let cut = Cut {
            seq: lane.seq,
            epoch: lane.epoch,
            raw: pending.raw,
            advances,
            oldest_timestamp_ms: pending.oldest_timestamp_ms,
        };
        let Some(cuts) = &lane.cuts else { return };
        tracing::debug!(%topic, seq = lane.seq, rows, "batch cut");
        if cuts.send(cut).await.is_err() {
            tracing::error!(topic = %topic, "the writer's decode stage is gone");
        }
        self.observe(i, lane);
    }

    fn observe(&self, i: usize, lane: &Lane) {
        let table = TableLabel {
            table: self.routes[i].sink.contract().name.to_string(),
        };
        let mut rows = lane.pending.raw.len();
        let mut oldest = lane.pending.oldest;
        if let Ok(f) = lane.shared.in_flight.lock() {
            for (_, t, n) in f.iter() {
                rows += n;
                oldest = Some(oldest.map_or(*t, |o| o.min(*t)));
            }
        }
        self.metrics
            .buffer_rows
            .get_or_create(&table)
            .set(rows as i64);
        let lag = oldest.map_or(0.0, |t| t.elapsed().as_secs_f64());
        self.metrics
            .commit_lag_seconds
            .get_or_create(&table)
            .set(lag);
    }

    /// Asks the broker, off the consume loop, for the high watermark of
    /// every assigned partition; the answer comes back on `marks`. Returns
    /// whether a query is under way.
    fn query_watermarks(
        &self,
        consumer: &Arc<KafkaConsumer>,
        state: &HashMap<(usize, i32), PartitionState>,
        marks: &mpsc::Sender<Watermarks>,
    ) -> bool {
        if state.is_empty() {
            return false;
        }
        let parts: Vec<(String, i32)> = state
            .keys()
            .map(|(i, p)| (self.routes[*i].topic.clone(), *p))
            .collect();
        let consumer = consumer.clone();
        let marks = marks.clone();
        tokio::spawn(async move {
            let queried = tokio::task::spawn_blocking(move || {
                parts
                    .into_iter()
                    .filter_map(|(topic, partition)| {
                        match consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5)) {
                            Ok((low, high)) => Some((topic, partition, low, high)),
                            Err(e) => {
                                tracing::debug!(error = %e, topic, partition, "cannot read the high watermark");
                                None
                            }
                        }
                    })
                    .collect()
            })
            .await
            .unwrap_or_default();
            let _ = marks.send(queried).await;
        });
        true
    }

    /// Sets `sluice_writer_consumer_lag` of the partitions still assigned:
    /// the high watermark minus the next offset the writer will consume
    /// (the low watermark when it starts from the beginning and has
    /// consumed nothing yet).
    fn observe_lag(&self, marks: &Watermarks, state: &HashMap<(usize, i32), PartitionState>) {
        for (topic, partition, low, high) in marks {
            let Some(i) = self.routes.iter().position(|r| &r.topic == topic) else {
                continue;
            };
            // Revoked while the query ran: its series is gone and stays gone.
            let Some(st) = state.get(&(i, *partition)) else {
                continue;
            };
            let next = st.next.unwrap_or(*low);
            self.metrics
                .consumer_lag
                .get_or_create(&PartitionLabel {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .set((high - next).max(0));
        }
    }

    fn on_rebalance(
        &self,
        event: Rebalanced,
        consumer: &KafkaConsumer,
        state: &mut HashMap<(usize, i32), PartitionState>,
        lanes: &mut [Lane],
    ) {
        let route_of = |topic: &str| self.routes.iter().position(|r| r.topic == topic);
        match event {
            Rebalanced::Assigned(parts) => {
                for (topic, partition, start) in parts {
                    if let Some(i) = route_of(&topic) {
                        lanes[i].shared.assignments.fetch_add(1, Ordering::AcqRel);
                        state.insert(
                            (i, partition),
                            PartitionState {
                                handed: start,
                                next: start,
                            },
                        );
                    }
                }
            }
            Rebalanced::Revoked(parts) => {
                // Uncommitted rows of revoked partitions are dropped; whoever
                // gets the partitions re-reads them from the table's positions.
                // Batches already cut commit or are fenced: either is right.
                for (topic, partition) in parts {
                    self.metrics.consumer_lag.remove(&PartitionLabel {
                        topic: topic.clone(),
                        partition,
                    });
                    let Some(i) = route_of(&topic) else { continue };
                    state.remove(&(i, partition));
                    if lanes[i].pending.partitions.contains(&partition) {
                        self.rewind(i, consumer, state, &mut lanes[i]);
                    }
                }
            }
        }
        let n = state.len();
        self.status.assigned_partitions.store(n, Ordering::Relaxed);
    }

    /// Drops a table's pending records and moves their partitions back to
    /// where the pending batch started, to be consumed again.
    fn rewind(
        &self,
        i: usize,
        consumer: &KafkaConsumer,
        state: &mut HashMap<(usize, i32), PartitionState>,
        lane: &mut Lane,
    ) {
        let topic = &self.routes[i].topic;
        for ((r, p), st) in state.iter_mut() {
            if *r != i || !lane.pending.partitions.contains(p) {
                continue;
            }
            st.next = st.handed;
            seek(consumer, topic, *p, st.handed);
        }
        lane.pending = Pending::default();
    }

    /// A batch was not committed: every partition of the table resumes at
    /// the table's position, and batches cut before now are stale.
    fn on_setback(
        &self,
        setback: Setback,
        consumer: &KafkaConsumer,
        state: &mut HashMap<(usize, i32), PartitionState>,
        lanes: &mut [Lane],
    ) {
        let i = setback.route;
        let topic = &self.routes[i].topic;
        for ((r, p), st) in state.iter_mut() {
            if *r != i {
                continue;
            }
            let at = setback.positions.get(&kafka_source(topic, *p)).copied();
            st.handed = at;
            st.next = at;
            seek(consumer, topic, *p, at);
        }
        lanes[i].pending = Pending::default();
        lanes[i].epoch = setback.epoch;
        tracing::info!(%topic, epoch = setback.epoch, "resuming from the table's positions");
    }
}

fn seek(consumer: &KafkaConsumer, topic: &str, partition: i32, at: Option<i64>) {
    let offset = at.map_or(Offset::Beginning, Offset::Offset);
    if let Err(e) = consumer.seek(topic, partition, offset, Duration::from_secs(5)) {
        tracing::warn!(error = %e, topic, partition, "seek back failed");
    }
}

/// The consume loop's view of one table.
struct Lane {
    pending: Pending,
    epoch: u64,
    seq: u64,
    cuts: Option<mpsc::Sender<Cut>>,
    shared: Arc<RouteShared>,
    consumed: Counter,
}

/// Validates, enriches and builds Arrow columns; sends dead letters.
struct DecodeStage {
    route: Route,
    schema: SchemaRef,
    enricher: Enricher,
    producer: FutureProducer,
    dlq_topic: String,
    metrics: WriterMetrics,
    shared: Arc<RouteShared>,
}

impl DecodeStage {
    async fn run(self, mut cuts: mpsc::Receiver<Cut>, decoded: mpsc::Sender<DecodedCut>) {
        while let Some(cut) = cuts.recv().await {
            if self.shared.stale(cut.epoch) {
                self.shared.finished(cut.seq);
                continue;
            }
            let started = Instant::now();
            let (kind, enricher, schema) =
                (self.route.kind, self.enricher.clone(), self.schema.clone());
            let raw = cut.raw;
            let sink = self.route.sink.clone();
            let now = chrono::Utc::now().timestamp_micros();
            // Decoding and sorting run here, beside the previous batch's
            // Parquet encoding in the commit stage.
            let joined = tokio::task::spawn_blocking(move || {
                let prepared = decode::decode(kind, &enricher, &schema, &raw, now)
                    .map_err(|e| e.to_string())
                    .and_then(|d| {
                        let sorted = sink.sort(&d.batches).map_err(|e| e.to_string())?;
                        Ok((
                            Prepared {
                                sorted,
                                keys: d.keys,
                            },
                            d.rejects,
                        ))
                    });
                (raw, prepared)
            })
            .await;
            tracing::debug!(
                topic = %self.route.topic,
                seq = cut.seq,
                seconds = started.elapsed().as_secs_f64(),
                "batch decoded"
            );
            let (raw, result) = match joined {
                Ok((raw, result)) => (raw, result),
                Err(e) => (
                    RawRecords::default(),
                    Err(format!("decoding panicked: {e}")),
                ),
            };
            let (result, dead_letters) = match result {
                Ok((prepared, rejects)) => (
                    Ok(prepared),
                    rejects.iter().map(|r| self.dead_letter(&raw, r)).collect(),
                ),
                Err(e) => (Err(e), Vec::new()),
            };
            let out = DecodedCut {
                seq: cut.seq,
                epoch: cut.epoch,
                advances: cut.advances,
                decoded: result,
                dead_letters,
                started,
                oldest_timestamp_ms: cut.oldest_timestamp_ms,
            };
            if decoded.send(out).await.is_err() {
                return;
            }
        }
    }

    fn dead_letter(&self, raw: &RawRecords, reject: &decode::Reject) -> DeadLetter {
        let record = raw.record(reject.record);
        self.metrics
            .dlq
            .get_or_create(&DlqLabel {
                topic: self.route.topic.clone(),
                reason: first_field(&reject.errors),
            })
            .inc();
        let errors_text = reject.errors.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "source.topic",
                value: Some(&self.route.topic),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(&record.partition.to_string()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(&record.offset.to_string()),
            })
            .insert(Header {
                key: "error",
                value: Some(&errors_text),
            });
        let payload = reject
            .item
            .as_deref()
            .unwrap_or_else(|| raw.payload(reject.record));
        let letter = FutureRecord::to(&self.dlq_topic)
            .payload(payload)
            .headers(headers);
        let letter = match raw.key(reject.record) {
            Some(k) => letter.key(k),
            None => letter,
        };
        match self.producer.send_result(letter) {
            Ok(delivery) => DeadLetter::Pending(delivery),
            Err((e, _)) => {
                // Not acknowledged means not durable: the batch must not be
                // committed past this record.
                tracing::error!(error = %e, "dead-letter produce failed");
                DeadLetter::Failed
            }
        }
    }
}

/// Drops replays, writes Parquet and commits with the batch's positions.
struct CommitStage {
    index: usize,
    route: Route,
    window: DedupWindow,
    horizon: Duration,
    /// The assignment count and the newest snapshot the window was last
    /// refilled at.
    refilled: Option<(u64, Option<i64>)>,
    metrics: WriterMetrics,
    shared: Arc<RouteShared>,
    consumer: Arc<KafkaConsumer>,
    setbacks: mpsc::UnboundedSender<Setback>,
}

impl CommitStage {
    fn table(&self) -> TableLabel {
        TableLabel {
            table: self.route.sink.contract().name.to_string(),
        }
    }

    async fn run(mut self, mut batches: mpsc::Receiver<DecodedCut>) {
        while let Some(cut) = batches.recv().await {
            let seq = cut.seq;
            if !self.shared.stale(cut.epoch) {
                self.commit(cut).await;
            }
            self.shared.finished(seq);
        }
    }

    async fn commit(&mut self, cut: DecodedCut) {
        let table = self.table();
        let decoded = match cut.decoded {
            Ok(d) => d,
            Err(e) => {
                // Validated rows always build; if not, nothing is committed
                // past them and the batch is read again.
                tracing::error!(error = %e, topic = %self.route.topic, "building a batch failed");
                self.metrics.append_errors.get_or_create(&table).inc();
                tokio::time::sleep(Duration::from_millis(500)).await;
                self.set_back().await;
                return;
            }
        };
        // Dead letters must be durable before the commit moves past them.
        for d in cut.dead_letters {
            let acked = match d {
                DeadLetter::Pending(delivery) => matches!(delivery.await, Ok(Ok(_))),
                DeadLetter::Failed => false,
            };
            if !acked {
                tracing::error!(topic = %self.route.topic, "a dead letter was not acknowledged; re-reading the batch");
                self.metrics.append_errors.get_or_create(&table).inc();
                self.set_back().await;
                return;
            }
        }
        let Prepared { sorted, keys } = decoded;
        self.refill().await;
        let fresh = self.window.fresh(&keys);
        let dropped = fresh.iter().filter(|f| !**f).count();
        let sorted = if dropped == 0 {
            sorted
        } else {
            self.metrics
                .duplicates_dropped
                .get_or_create(&table)
                .inc_by(dropped as u64);
            match sorted.map(|s| s.retain(&fresh)).transpose() {
                Ok(s) => s.flatten(),
                Err(e) => {
                    tracing::error!(error = %e, "dropping duplicates failed");
                    self.metrics.append_errors.get_or_create(&table).inc();
                    self.set_back().await;
                    return;
                }
            }
        };
        // One attempt: a failed commit re-reads its batch from Kafka
        // (set_back), so shutdown never waits on an unreachable catalog.
        let on_error = |e: &SinkError| {
            tracing::error!(error = %e, "append failed; re-reading the batch");
            self.metrics.append_errors.get_or_create(&table).inc();
        };
        tracing::debug!(table = %table.table, seq = cut.seq, "committing");
        match self
            .route
            .sink
            .commit_settled(
                &cut.advances,
                sorted.as_ref(),
                Retries::Attempts(1),
                &on_error,
            )
            .await
        {
            Settled::Committed {
                rows,
                snapshot_id,
                earlier,
                ..
            } => {
                if earlier {
                    tracing::info!(table = %table.table, "the table already holds this batch (an earlier commit landed)");
                }
                self.metrics
                    .rows_committed
                    .get_or_create(&table)
                    .inc_by(rows);
                self.metrics
                    .batch_flush_seconds
                    .get_or_create(&table)
                    .observe(cut.started.elapsed().as_secs_f64());
                let now_ms = chrono::Utc::now().timestamp_millis();
                self.metrics
                    .last_commit_timestamp_seconds
                    .get_or_create(&table)
                    .set(now_ms as f64 / 1000.0);
                if let Some(ts) = cut.oldest_timestamp_ms {
                    // A producer's clock ahead of ours is no negative delay.
                    let delay = (now_ms - ts).max(0) as f64 / 1000.0;
                    self.metrics
                        .ingest_delay_seconds
                        .get_or_create(&table)
                        .observe(delay);
                }
                self.window.commit(
                    keys.iter()
                        .zip(&fresh)
                        .filter(|(_, f)| **f)
                        .map(|(k, _)| *k),
                );
                tracing::debug!(
                    table = %table.table,
                    seq = cut.seq,
                    rows,
                    ?snapshot_id,
                    since_decode_started = cut.started.elapsed().as_secs_f64(),
                    "committed"
                );
                // For lag monitoring only; positions live in the table.
                let mut offsets = TopicPartitionList::new();
                for a in &cut.advances {
                    if let Ok(SourceId::Kafka { partition, .. }) = a.source.parse() {
                        let _ = offsets.add_partition_offset(
                            &self.route.topic,
                            partition,
                            Offset::Offset(a.to),
                        );
                    }
                }
                if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
                    tracing::debug!(error = %e, "committing group offsets failed");
                }
            }
            Settled::Fenced {
                source,
                expected,
                found,
            } => {
                tracing::warn!(%source, ?expected, ?found, "batch refused: the table moved; resuming from its positions");
                self.metrics.fenced_batches.get_or_create(&table).inc();
                // Someone else committed: their ids join the window before
                // the batch is committed again.
                self.shared.assignments.fetch_add(1, Ordering::AcqRel);
                self.set_back().await;
            }
            Settled::Failed(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                self.set_back().await;
            }
        }
    }

    /// Refills the dedup window from the table's recent appends when
    /// partitions were assigned (or another writer committed) since the
    /// last refill: only the snapshots after that refill are read. Retried
    /// until the catalog answers, as a commit would be.
    async fn refill(&mut self) {
        let wanted = self.shared.assignments.load(Ordering::Acquire);
        if self.refilled.is_some_and(|(at, _)| at == wanted) {
            return;
        }
        let table_label = self.table();
        let contract = self.route.sink.contract();
        let started = Instant::now();
        let mut backoff = Backoff::unavailable();
        let found = loop {
            let reach = Reach {
                max_ids: self.window.capacity(),
                horizon: self.horizon,
                stop_at: self.refilled.and_then(|(_, newest)| newest),
            };
            let result = match self.route.sink.load().await {
                Ok(table) => recent_ids(&table, contract.id_column, reach)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(found) => break found,
                Err(e) => {
                    tracing::error!(table = %table_label.table, error = %e, "cannot read the table's recent ids; retrying");
                    self.metrics.append_errors.get_or_create(&table_label).inc();
                    backoff.wait().await;
                }
            }
        };
        let ids = found.keys.len();
        self.window.commit(found.keys);
        self.refilled = Some((wanted, found.newest.or(self.refilled.and_then(|r| r.1))));
        self.metrics
            .dedup_refill_seconds
            .get_or_create(&table_label)
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            table = %table_label.table,
            ids,
            snapshots = found.snapshots,
            files = found.files,
            window = self.window.len(),
            seconds = started.elapsed().as_secs_f64(),
            "dedup window refilled from the table"
        );
    }

    /// Marks every batch cut so far stale and sends the consume loop back to
    /// the table's positions (read until the catalog answers).
    async fn set_back(&self) {
        let epoch = self.shared.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let mut backoff = Backoff::unavailable();
        let positions = loop {
            match self.route.sink.current_positions().await {
                Ok(p) => break p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the table's positions; retrying");
                    backoff.wait().await;
                }
            }
        };
        let _ = self.setbacks.send(Setback {
            route: self.index,
            epoch,
            positions,
        });
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::producer::BaseProducer;

    use super::*;

    fn settings(props: &[(&str, &str)]) -> WriterSettings {
        let mut s = WriterSettings::new("127.0.0.1:1", "g", "dlq");
        s.extra = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    /// librdkafka refuses, when the client is created, a mechanism it was
    /// built without ("No provider for SASL mechanism …"): SCRAM and TLS
    /// need the `ssl` feature, which the workspace enables.
    #[test]
    fn clients_take_scram_and_tls_properties() {
        for props in [
            vec![
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "sluice"),
                ("sasl.password", "secret"),
            ],
            vec![
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "SCRAM-SHA-256"),
                ("sasl.username", "sluice"),
                ("sasl.password", "secret"),
            ],
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "sluice"),
                ("sasl.password", "secret"),
            ],
            vec![("security.protocol", "SSL")],
        ] {
            let s = settings(&props);
            let consumer: Result<BaseConsumer, _> = s.consumer_config().create();
            assert!(consumer.is_ok(), "{props:?}: {:?}", consumer.err());
            let producer: Result<BaseProducer, _> = s.dlq_producer_config().create();
            assert!(producer.is_ok(), "{props:?}: {:?}", producer.err());
        }
        // Kerberos is not built in, and saying so is librdkafka's job.
        let s = settings(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "GSSAPI"),
        ]);
        let consumer: Result<BaseConsumer, _> = s.consumer_config().create();
        let err = consumer.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("GSSAPI"), "{err}");
    }

    #[test]
    fn writer_settings_win_over_extra_properties() {
        let s = settings(&[("enable.auto.commit", "true"), ("client.id", "w")]);
        let c = s.consumer_config();
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("client.id"), Some("w"));
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:1"));
    }

    /// librdkafka's 1 s fetch backoff left the writer idle between fetches;
    /// an operator's own value still wins.
    #[test]
    fn fetch_backoff_is_short_unless_set() {
        let c = settings(&[]).consumer_config();
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("20"));
        let c = settings(&[("fetch.queue.backoff.ms", "500")]).consumer_config();
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("500"));
        let consumer: Result<BaseConsumer, _> = settings(&[]).consumer_config().create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
    }
}
