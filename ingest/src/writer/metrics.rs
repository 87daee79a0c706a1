//! The writer's Prometheus metrics, named in the spirit of the platform's
//! metrics catalog (`…_events_consumed_total`, `…_dlq_total`, …).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

pub use sluice_warehouse::commit_metrics::TableLabel;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DlqLabel {
    pub topic: String,
    /// The first field that failed, e.g. `occurred_at`, or `json`.
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct WriterMetrics {
    pub events_consumed: Family<TopicLabel, Counter>,
    pub duplicates_dropped: Family<TableLabel, Counter>,
    pub dlq: Family<DlqLabel, Counter>,
    pub append_errors: Family<TableLabel, Counter>,
    pub fenced_batches: Family<TableLabel, Counter>,
    pub rows_committed: Family<TableLabel, Counter>,
    pub batch_flush_seconds: Family<TableLabel, Histogram>,
    pub buffer_rows: Family<TableLabel, Gauge>,
    /// Seconds between now and the oldest buffered record's arrival.
    pub commit_lag_seconds: Family<TableLabel, Gauge<f64, AtomicU64>>,
    /// Per assigned partition: the partition's high watermark minus the
    /// writer's next offset (one past the last record it took from the
    /// consumer), refreshed every [`LAG_INTERVAL`](super::LAG_INTERVAL);
    /// removed when the partition is revoked.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Per committed batch: commit time minus the Kafka timestamp of the
    /// batch's oldest record (the time its producer sent it, or the broker
    /// appended it with `LogAppendTime`), so the worst delay of the batch.
    pub ingest_delay_seconds: Family<TableLabel, Histogram>,
    /// Unix time of the last successful Iceberg commit to the table.
    pub last_commit_timestamp_seconds: Family<TableLabel, Gauge<f64, AtomicU64>>,
    /// Time to refill the dedup window from the table after an assignment.
    pub dedup_refill_seconds: Family<TableLabel, Histogram>,
}

/// Ingest delay buckets: fine around the 5 s target (a bound at 5 exactly),
/// then up to an hour for catching up after an outage.
const INGEST_DELAY_BUCKETS: [f64; 16] = [
    0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

impl WriterMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            events_consumed: Family::default(),
            duplicates_dropped: Family::default(),
            dlq: Family::default(),
            append_errors: Family::default(),
            fenced_batches: Family::default(),
            rows_committed: Family::default(),
            batch_flush_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 12))
            }),
            buffer_rows: Family::default(),
            commit_lag_seconds: Family::default(),
            consumer_lag: Family::default(),
            ingest_delay_seconds: Family::new_with_constructor(|| {
                Histogram::new(INGEST_DELAY_BUCKETS)
            }),
            last_commit_timestamp_seconds: Family::default(),
            dedup_refill_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 14))
            }),
        };
        let r = registry.sub_registry_with_prefix("sluice_writer");
        r.register(
            "events_consumed",
            "Records consumed from Kafka",
            m.events_consumed.clone(),
        );
        r.register(
            "duplicates_dropped",
            "Records dropped as replays of committed ids",
            m.duplicates_dropped.clone(),
        );
        r.register(
            "events_dlq",
            "Records sent to the dead-letter topic, by first failing field",
            m.dlq.clone(),
        );
        r.register(
            "iceberg_append_errors",
            "Failed Iceberg appends",
            m.append_errors.clone(),
        );
        r.register(
            "fenced_batches",
            "Batches refused because the table had moved past them",
            m.fenced_batches.clone(),
        );
        r.register(
            "rows_committed",
            "Rows committed to Iceberg",
            m.rows_committed.clone(),
        );
        r.register(
            "batch_flush_seconds",
            "Time to write and commit one batch",
            m.batch_flush_seconds.clone(),
        );
        r.register(
            "buffer_rows",
            "Rows buffered, not yet committed",
            m.buffer_rows.clone(),
        );
        r.register(
            "commit_lag_seconds",
            "Age of the oldest buffered record",
            m.commit_lag_seconds.clone(),
        );
        r.register(
            "consumer_lag",
            "Records of an assigned partition the writer has not consumed: high watermark minus its next offset",
            m.consumer_lag.clone(),
        );
        r.register(
            "ingest_delay_seconds",
            "Per committed batch: commit time minus the Kafka timestamp of its oldest record",
            m.ingest_delay_seconds.clone(),
        );
        r.register(
            "last_commit_timestamp_seconds",
            "Unix time of the last successful Iceberg commit",
            m.last_commit_timestamp_seconds.clone(),
        );
        r.register(
            "dedup_refill_seconds",
            "Time to refill the dedup window with the table's recent ids after a partition assignment",
            m.dedup_refill_seconds.clone(),
        );
        m
    }
}
