//! Where sources put what they read, whatever carries it on: Kafka (the
//! distributed roles) or `sluice up`'s in-process writers (a write-ahead
//! log, or a channel a writer commits from). Sources see only these traits,
//! so every source runs in every deployment — `sluice up` without Kafka
//! watches Kubernetes as `sluice collect --kubernetes` does.
//!
//! Two contracts, because sources need two:
//! - [`RecordOutlet`]: a batch of keyed records, answered once every one is
//!   durable (the broker acknowledged it, or the write-ahead log fsync'd
//!   it). The HTTP intake answers its request then; the Kubernetes watcher
//!   then records how far it got.
//! - [`LogOutlet`]: the pod-log tailer's stream of messages, each with a
//!   [`Delivery`] receipt that comes back when it is durable, and a full
//!   queue that pauses reading (back-pressure, not an error).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::collect::acks::LaneId;

/// Why records are not (all) durable. The sender retries the whole batch:
/// the writers drop replays by record id.
#[derive(Debug, thiserror::Error)]
pub enum OutletError {
    #[error("the broker did not acknowledge {failed} of {total} records ({first}); retry")]
    Unacknowledged {
        failed: usize,
        total: usize,
        first: String,
    },
    #[error("the write-ahead log did not take the records: {0}; retry")]
    Wal(String),
}

/// A batch of `(key, payload)` records, resolved once all are durable.
pub trait RecordOutlet: Send + Sync {
    fn send<'a>(
        &'a self,
        records: &'a [(&'a [u8], &'a [u8])],
    ) -> BoxFuture<'a, Result<(), OutletError>>;
}

/// Records to a Kafka topic through an idempotent `acks=all` producer.
pub struct KafkaOutlet {
    producer: FutureProducer,
    topic: String,
    /// How long one record may wait for the broker before the batch fails.
    timeout: Duration,
}

impl KafkaOutlet {
    pub fn new(producer: FutureProducer, topic: impl Into<String>, timeout: Duration) -> Self {
        Self {
            producer,
            topic: topic.into(),
            timeout,
        }
    }
}

impl RecordOutlet for KafkaOutlet {
    fn send<'a>(
        &'a self,
        records: &'a [(&'a [u8], &'a [u8])],
    ) -> BoxFuture<'a, Result<(), OutletError>> {
        Box::pin(async move {
            let sends = records.iter().map(|(key, payload)| {
                self.producer.send(
                    FutureRecord::to(&self.topic).key(*key).payload(*payload),
                    self.timeout,
                )
            });
            let mut failed = 0;
            let mut first = String::new();
            for r in futures::future::join_all(sends).await {
                if let Err((e, _)) = r {
                    if failed == 0 {
                        first = e.to_string();
                    }
                    failed += 1;
                }
            }
            if failed > 0 {
                tracing::warn!(topic = %self.topic, failed, error = %first, "the broker did not acknowledge records");
                return Err(OutletError::Unacknowledged {
                    failed,
                    total: records.len(),
                    first,
                });
            }
            Ok(())
        })
    }
}

/// What a delivery receipt needs to move a file position.
#[derive(Debug)]
pub struct Delivery {
    pub lane: LaneId,
    pub seq: u64,
    pub lines: u64,
    /// The file's key in a table's source positions (`sluice up` only).
    pub source: Arc<str>,
    /// The file offset reading resumes from once this message is durable.
    pub after: u64,
    /// The last message of a read chunk: only here is `after` a line
    /// boundary past every record sent before it.
    pub chunk_end: bool,
}

/// A message whose delivery failed, to send again.
#[derive(Debug)]
pub struct Failed {
    pub delivery: Box<Delivery>,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Why a message was not enqueued.
#[derive(Debug)]
pub enum SendError {
    /// The bounded queue is full: try again after a pause.
    QueueFull,
    Other(String),
}

/// The tailer's outlet: messages with delivery receipts.
pub trait LogOutlet: Send + Sync {
    /// Enqueues one message; a refused one comes back with its receipt.
    fn send(
        &self,
        key: &[u8],
        payload: &[u8],
        delivery: Box<Delivery>,
    ) -> Result<(), (SendError, Box<Delivery>)>;

    /// Messages whose delivery failed since the last call, to send again.
    fn take_failed(&self) -> Vec<Failed>;

    /// Waits up to `timeout` for what was sent to be durable.
    fn flush(&self, timeout: Duration) -> Result<(), String>;
}
