//! The collector's Prometheus metrics (`sluice_collector_…`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

/// A tenant's name (or `other`) and what became of its records.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantOutcome {
    pub tenant: String,
    /// `accepted`, `rejected` or `throttled`.
    pub outcome: String,
}

#[derive(Clone, Debug, Default)]
pub struct CollectorMetrics {
    pub lines_read: Counter,
    pub bytes_read: Counter,
    pub lines_produced: Counter,
    pub messages_produced: Family<TopicLabel, Counter>,
    pub produce_errors: Family<TopicLabel, Counter>,
    pub malformed_lines: Counter,
    pub truncated_lines: Counter,
    pub oversized_lines: Counter,
    pub file_truncations: Counter,
    pub files_open: Gauge,
    pub checkpoint_age_seconds: Gauge<f64, AtomicU64>,
    pub intake_records: Counter,
    pub intake_rejected: Counter,
    pub intake_tenant_records: Family<TenantOutcome, Counter>,
    pub k8s_events: Counter,
    pub k8s_relists: Counter,
}

impl CollectorMetrics {
    /// Counts `n` records of a tenant's token.
    pub fn tenant(&self, label: &str, outcome: &str, n: usize) {
        if n > 0 {
            self.intake_tenant_records
                .get_or_create(&TenantOutcome {
                    tenant: label.to_string(),
                    outcome: outcome.to_string(),
                })
                .inc_by(n as u64);
        }
    }

    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("sluice_collector");
        r.register(
            "lines_read",
            "Logical log lines read from files",
            m.lines_read.clone(),
        );
        r.register(
            "bytes_read",
            "Bytes read from log files (uncompressed)",
            m.bytes_read.clone(),
        );
        r.register(
            "lines_produced",
            "Log lines the broker acknowledged",
            m.lines_produced.clone(),
        );
        r.register(
            "messages_produced",
            "Messages the broker acknowledged",
            m.messages_produced.clone(),
        );
        r.register(
            "produce_errors",
            "Failed deliveries (each is retried)",
            m.produce_errors.clone(),
        );
        r.register(
            "malformed_lines",
            "Physical lines that are neither CRI nor json-file, skipped",
            m.malformed_lines.clone(),
        );
        r.register(
            "truncated_lines",
            "Logical lines cut at the maximum line size",
            m.truncated_lines.clone(),
        );
        r.register(
            "oversized_lines",
            "Physical lines longer than any runtime writes, dropped",
            m.oversized_lines.clone(),
        );
        r.register(
            "file_truncations",
            "Log files found truncated while being read",
            m.file_truncations.clone(),
        );
        r.register("files_open", "Log files being tailed", m.files_open.clone());
        r.register(
            "checkpoint_age_seconds",
            "Seconds since the saved checkpoint last covered every acknowledged line",
            m.checkpoint_age_seconds.clone(),
        );
        r.register(
            "intake_records",
            "Platform events accepted by POST /v1/events",
            m.intake_records.clone(),
        );
        r.register(
            "intake_rejected",
            "Platform events rejected by POST /v1/events",
            m.intake_rejected.clone(),
        );
        r.register(
            "intake_tenant_records",
            "Platform events of tenants' tokens at POST /v1/events, by tenant (named for the \
             first [query] tenant_metric_labels tenants, else other) and outcome",
            m.intake_tenant_records.clone(),
        );
        r.register(
            "k8s_events",
            "Lifecycle events produced from the Kubernetes API",
            m.k8s_events.clone(),
        );
        r.register(
            "k8s_relists",
            "Watches restarted with a full list (410 Gone or errors)",
            m.k8s_relists.clone(),
        );
        m
    }
}
