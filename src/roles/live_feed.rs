//! What feeds the live tail ([`sluice_query::live::LiveHub`]):
//!
//! - under `sluice up` (no Kafka), the tailer's outlet and the lifecycle
//!   write-ahead log's, teed: each message the writer accepted is also
//!   published ([`TeeLogOutlet`], [`TeeRecordOutlet`]);
//! - with Kafka, a consumer of the pod-log and lifecycle topics outside
//!   the writers' group ([`spawn_kafka_feed`]): it starts with the first
//!   tail, `[tail] replay_secs` back (`offsets_for_times`), commits nothing,
//!   and stops `[tail] kafka_idle_secs` after the last tail closed, so an
//!   idle query replica reads nothing from the broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sluice_ingest::outlet::{Delivery, Failed, LogOutlet, OutletError, RecordOutlet, SendError};
use sluice_query::live::LiveHub;

use crate::config::Config;

/// A pod-log outlet whose accepted messages are also published live.
pub struct TeeLogOutlet<O> {
    pub inner: O,
    pub hub: Arc<LiveHub>,
}

impl<O: LogOutlet> LogOutlet for TeeLogOutlet<O> {
    fn send(
        &self,
        key: &[u8],
        payload: &[u8],
        delivery: Box<Delivery>,
    ) -> Result<(), (SendError, Box<Delivery>)> {
        self.inner.send(key, payload, delivery)?;
        self.hub.publish_pod_logs(payload);
        Ok(())
    }

    fn take_failed(&self) -> Vec<Failed> {
        self.inner.take_failed()
    }

    fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.inner.flush(timeout)
    }
}

/// A lifecycle outlet whose accepted records are also published live.
pub struct TeeRecordOutlet {
    pub inner: Arc<dyn RecordOutlet>,
    pub hub: Arc<LiveHub>,
}

impl RecordOutlet for TeeRecordOutlet {
    fn send<'a>(
        &'a self,
        records: &'a [(&'a [u8], &'a [u8])],
    ) -> BoxFuture<'a, Result<(), OutletError>> {
        Box::pin(async move {
            self.inner.send(records).await?;
            for (_, payload) in records {
                self.hub.publish_lifecycle(payload);
            }
            Ok(())
        })
    }
}

/// Follows the hub's demand: runs the Kafka consumer while tails are open
/// (and `kafka_idle_secs` after), until `stop`.
pub fn spawn_kafka_feed(
    config: &Config,
    hub: Arc<LiveHub>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let Some(bootstrap) = config.kafka.bootstrap.clone() else {
        return tokio::spawn(async {});
    };
    hub.set_warm(false);
    let settings = FeedSettings {
        bootstrap,
        properties: config.kafka.properties.clone(),
        podlogs: config.kafka.topics.podlogs.clone(),
        lifecycle: config.kafka.topics.k8s.clone(),
        replay: Duration::from_secs(config.tail.replay_secs.max(1)),
    };
    let idle = Duration::from_secs(config.tail.kafka_idle_secs);
    tokio::spawn(async move {
        let mut demand = hub.demand();
        loop {
            // Wait for a first tail.
            tokio::select! {
                _ = stop.cancelled() => return,
                r = demand.wait_for(|n| *n > 0) => if r.is_err() { return },
            }
            let running = Arc::new(AtomicBool::new(true));
            let thread = {
                let (hub, settings, running) = (hub.clone(), settings.clone(), running.clone());
                std::thread::Builder::new()
                    .name("tail-feed".into())
                    .spawn(move || consume(&settings, &hub, &running))
            };
            let thread = match thread {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "starting the live tail's Kafka consumer");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            tracing::info!("live tail: following the pod-log topic");
            // Until no tail has been open for `idle`.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    r = demand.wait_for(|n| *n == 0) => if r.is_err() { break },
                }
                // No tails: a new one within `idle` keeps the consumer.
                let again = tokio::select! {
                    _ = stop.cancelled() => false,
                    r = tokio::time::timeout(idle, demand.wait_for(|n| *n > 0)) => matches!(r, Ok(Ok(_))),
                };
                if !again {
                    break;
                }
            }
            running.store(false, Ordering::Relaxed);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            hub.set_warm(false);
            hub.clear();
            tracing::info!("live tail: stopped following the pod-log topic (no tails)");
            if stop.is_cancelled() {
                return;
            }
        }
    })
}

#[derive(Clone)]
struct FeedSettings {
    bootstrap: String,
    properties: std::collections::BTreeMap<String, String>,
    podlogs: String,
    lifecycle: String,
    replay: Duration,
}

fn consume(s: &FeedSettings, hub: &LiveHub, running: &AtomicBool) {
    while running.load(Ordering::Relaxed) {
        match follow(s, hub, running) {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "live tail: the Kafka consumer failed; retrying in 5 s");
                std::thread::sleep(Duration::from_secs(5));
            }
        }
    }
}

fn follow(s: &FeedSettings, hub: &LiveHub, running: &AtomicBool) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut client = sluice_ingest::kafka_properties::consumer_config(&s.bootstrap, &s.properties);
    // A group of its own that never commits: it only assigns partitions.
    client
        .set(
            "group.id",
            format!("sluice-tail-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest");
    let consumer: BaseConsumer = client.create().context("creating the consumer")?;
    let timeout = Duration::from_secs(10);
    let since_ms = chrono::Utc::now().timestamp_millis() - s.replay.as_millis() as i64;
    let mut wanted = TopicPartitionList::new();
    let mut highs = Vec::new();
    for topic in [&s.podlogs, &s.lifecycle] {
        let meta = consumer
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("reading the metadata of {topic}"))?;
        for t in meta.topics() {
            for p in t.partitions() {
                wanted
                    .add_partition_offset(topic, p.id(), Offset::Offset(since_ms))
                    .context("listing a partition")?;
                let (_, high) = consumer
                    .fetch_watermarks(topic, p.id(), timeout)
                    .with_context(|| format!("reading the end of {topic}/{}", p.id()))?;
                highs.push((topic.clone(), p.id(), high));
            }
        }
    }
    let mut start = consumer
        .offsets_for_times(wanted, timeout)
        .context("finding the offsets of the replay's start")?;
    // A partition with nothing that recent starts at its end.
    let at_end: Vec<(String, i32, i64)> = start
        .elements()
        .iter()
        .filter(|e| e.offset().to_raw().is_none_or(|o| o < 0))
        .map(|e| {
            let high = highs
                .iter()
                .find(|(t, p, _)| t == e.topic() && *p == e.partition())
                .map_or(0, |h| h.2);
            (e.topic().to_string(), e.partition(), high)
        })
        .collect();
    for (topic, partition, high) in at_end {
        start
            .set_partition_offset(&topic, partition, Offset::Offset(high))
            .context("setting a start offset")?;
    }
    consumer
        .assign(&start)
        .context("assigning the partitions")?;
    // Warm once every partition is read up to where it ended at the start.
    let mut behind: Vec<(String, i32, i64)> = highs.into_iter().filter(|h| h.2 > 0).collect();
    behind.retain(|(t, p, high)| {
        start
            .find_partition(t, *p)
            .and_then(|e| e.offset().to_raw())
            .is_none_or(|o| o < *high)
    });
    let started = Instant::now();
    if behind.is_empty() {
        hub.set_warm(true);
    }
    while running.load(Ordering::Relaxed) {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.context("reading a message")?;
        if let Some(payload) = m.payload() {
            if m.topic() == s.podlogs {
                hub.publish_pod_logs(payload);
            } else {
                hub.publish_lifecycle(payload);
            }
        }
        if !behind.is_empty() {
            let (topic, part, offset) = (m.topic().to_string(), m.partition(), m.offset());
            behind.retain(|(t, p, high)| !(*t == topic && *p == part && offset + 1 >= *high));
            if behind.is_empty() {
                tracing::debug!(
                    seconds = started.elapsed().as_secs_f64(),
                    "live tail: caught up with the pod-log topic"
                );
                hub.set_warm(true);
            }
        }
    }
    Ok(())
}
