//! `sluice_tail_*`: open tails, what they were sent and dropped, why some
//! were refused or cut off, what the replay holds, and how long a line
//! took from its publication to a client.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::metrics::ReasonLabel;

#[derive(Clone, Debug)]
pub struct TailMetrics {
    pub clients: Gauge,
    pub published: Counter,
    pub lines_sent: Counter,
    pub dropped: Counter,
    pub refused: Family<ReasonLabel, Counter>,
    pub disconnected: Family<ReasonLabel, Counter>,
    pub replay_bytes: Gauge,
    /// Lines waiting in the clients' buffers, all tails together.
    pub buffered_lines: Gauge,
    pub replay_seconds: Gauge<f64, AtomicU64>,
    /// Published → written to a client's connection.
    pub delivery_seconds: Histogram,
}

impl Default for TailMetrics {
    fn default() -> Self {
        Self {
            clients: Gauge::default(),
            published: Counter::default(),
            lines_sent: Counter::default(),
            dropped: Counter::default(),
            refused: Family::default(),
            disconnected: Family::default(),
            replay_bytes: Gauge::default(),
            buffered_lines: Gauge::default(),
            replay_seconds: Gauge::default(),
            delivery_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
        }
    }
}

impl TailMetrics {
    pub fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn disconnected(&self, reason: &str) {
        self.disconnected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Registers under `sluice_tail_…`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sluice_tail");
        r.register("clients", "Live tails open", self.clients.clone());
        r.register(
            "published",
            "Messages published to the live stream",
            self.published.clone(),
        );
        r.register(
            "lines_sent",
            "Lines sent to tail clients (backfill and live)",
            self.lines_sent.clone(),
        );
        r.register(
            "dropped_entries",
            "Lines dropped for tail clients that did not keep up",
            self.dropped.clone(),
        );
        r.register(
            "refused",
            "Tails refused by limit (caller, tenant, total)",
            self.refused.clone(),
        );
        r.register(
            "disconnected",
            "Tails closed by the server, by reason (slow, shutdown)",
            self.disconnected.clone(),
        );
        r.register(
            "replay_bytes",
            "Bytes of the live stream held for new tails",
            self.replay_bytes.clone(),
        );
        r.register(
            "buffered_lines",
            "Lines waiting in tail clients' buffers (each bounded by [tail] client_buffer_lines)",
            self.buffered_lines.clone(),
        );
        r.register(
            "replay_seconds",
            "Age of the oldest message held for new tails",
            self.replay_seconds.clone(),
        );
        r.register(
            "delivery_seconds",
            "From a line's publication to its write to a client",
            self.delivery_seconds.clone(),
        );
    }
}
