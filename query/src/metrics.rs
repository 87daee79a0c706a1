//! The query service's Prometheus metrics: requests and latency per
//! endpoint, errors by kind, rows scanned.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub endpoint: String,
    /// `sql`, `timeout`, `memory_limit`, `row_cap`, `refused`, …
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct QueryMetrics {
    pub requests: Family<EndpointLabel, Counter>,
    pub duration_seconds: Family<EndpointLabel, Histogram>,
    pub errors: Family<ErrorLabel, Counter>,
    /// Rows read from data files by every statement (after pruning).
    pub rows_scanned: Counter,
    /// SQL statements executed, including those the endpoints compose.
    pub statements: Counter,
    /// Queries holding an execution slot now.
    pub running: Gauge,
    /// Queries waiting for a slot now.
    pub queued: Gauge,
    /// How long admitted queries waited for their slot.
    pub queue_wait_seconds: Histogram,
    /// Queries refused a slot (`queue_full`, `queue_timeout`).
    pub rejected: Family<ReasonLabel, Counter>,
    /// Queries stopped before they ended (`timeout`, `disconnect`,
    /// `shutdown`).
    pub cancelled_by: Family<ReasonLabel, Counter>,
    /// Bytes the running queries' memory pools hold together.
    pub memory_reserved_bytes: Gauge,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            errors: Family::default(),
            rows_scanned: Counter::default(),
            statements: Counter::default(),
            running: Gauge::default(),
            queued: Gauge::default(),
            queue_wait_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            rejected: Family::default(),
            cancelled_by: Family::default(),
            memory_reserved_bytes: Gauge::default(),
        }
    }
}

impl QueryMetrics {
    /// Registers under `sluice_query_…`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sluice_query");
        r.register(
            "requests",
            "API requests by endpoint",
            self.requests.clone(),
        );
        r.register(
            "duration_seconds",
            "API request latency by endpoint",
            self.duration_seconds.clone(),
        );
        r.register(
            "errors",
            "Failed API requests by endpoint and kind",
            self.errors.clone(),
        );
        r.register(
            "rows_scanned",
            "Rows read from table data files",
            self.rows_scanned.clone(),
        );
        r.register(
            "statements",
            "SQL statements executed",
            self.statements.clone(),
        );
        r.register(
            "running",
            "Queries holding an execution slot",
            self.running.clone(),
        );
        r.register(
            "queued",
            "Queries waiting for an execution slot",
            self.queued.clone(),
        );
        r.register(
            "queue_wait_seconds",
            "How long admitted queries waited for their slot",
            self.queue_wait_seconds.clone(),
        );
        r.register(
            "rejected",
            "Queries refused a slot (HTTP 429) by reason",
            self.rejected.clone(),
        );
        r.register(
            "cancelled",
            "Queries stopped before they ended, by reason (timeout, disconnect, shutdown)",
            self.cancelled_by.clone(),
        );
        r.register(
            "memory_reserved_bytes",
            "Bytes the running queries' memory pools hold together",
            self.memory_reserved_bytes.clone(),
        );
    }

    pub fn rejected(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn cancelled(&self, reason: &str) {
        self.cancelled_by
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn observe(&self, endpoint: &str, seconds: f64, error: Option<&str>) {
        let label = EndpointLabel {
            endpoint: endpoint.to_string(),
        };
        self.requests.get_or_create(&label).inc();
        self.duration_seconds.get_or_create(&label).observe(seconds);
        if let Some(kind) = error {
            self.errors
                .get_or_create(&ErrorLabel {
                    endpoint: endpoint.to_string(),
                    kind: kind.to_string(),
                })
                .inc();
        }
    }
}
