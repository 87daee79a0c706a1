//! `sluice_alert_*`: per rule, its evaluations, failures and how long the
//! last took; per rule and state, its alerts (Prometheus's `ALERTS`); the
//! alerts delivered per channel and outcome; whether this process holds the
//! evaluator lease; the transitions written to `alert_history`, waiting in
//! the outbox, dropped from it, and the writes that failed. Rules come from the operator's files, so the `rule`
//! label's cardinality is the rule count.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub rule: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    /// `alertmanager` or `webhook`.
    pub channel: String,
    /// `sent` or `failed`.
    pub outcome: String,
}

#[derive(Clone, Debug, Default)]
pub struct AlertMetrics {
    evaluations: Family<RuleLabel, Counter>,
    failures: Family<RuleLabel, Counter>,
    seconds: Family<RuleLabel, Gauge<f64, AtomicU64>>,
    alerts: Family<StateLabel, Gauge>,
    notifications: Family<ChannelLabel, Counter>,
    leader: Gauge,
    history_written: Counter,
    history_failures: Counter,
    history_dropped: Counter,
    history_outbox: Gauge,
}

impl AlertMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sluice_alert");
        r.register(
            "rule_evaluations",
            "Evaluations of each alerting rule",
            self.evaluations.clone(),
        );
        r.register(
            "rule_evaluation_failures",
            "Evaluations of each alerting rule that failed (the error is on GET /api/v1/rules)",
            self.failures.clone(),
        );
        r.register(
            "rule_last_evaluation_seconds",
            "How long each rule's last evaluation took",
            self.seconds.clone(),
        );
        r.register(
            "alerts",
            "Alerts of each rule by state (pending, firing)",
            self.alerts.clone(),
        );
        r.register(
            "notifications",
            "Alerts delivered, by channel (alertmanager, webhook) and outcome (sent, failed)",
            self.notifications.clone(),
        );
        r.register(
            "history_written",
            "Alert state transitions appended to the alert_history table",
            self.history_written.clone(),
        );
        r.register(
            "history_write_failures",
            "Appends to alert_history that failed (the transitions stay in the outbox and are tried again)",
            self.history_failures.clone(),
        );
        r.register(
            "history_dropped",
            "Transitions dropped from a full outbox before alert_history took them",
            self.history_dropped.clone(),
        );
        r.register(
            "history_outbox",
            "Transitions waiting to be appended to alert_history",
            self.history_outbox.clone(),
        );
        r.register(
            "evaluator_leader",
            "1 while this process evaluates the rules (holds the lease)",
            self.leader.clone(),
        );
    }

    pub fn evaluated(&self, rule: &str, ok: bool, seconds: f64) {
        let l = RuleLabel {
            rule: rule.to_string(),
        };
        self.evaluations.get_or_create(&l).inc();
        if !ok {
            self.failures.get_or_create(&l).inc();
        }
        self.seconds.get_or_create(&l).set(seconds);
    }

    pub fn alerts(&self, rule: &str, pending: usize, firing: usize) {
        for (state, n) in [("pending", pending), ("firing", firing)] {
            self.alerts
                .get_or_create(&StateLabel {
                    rule: rule.to_string(),
                    state: state.to_string(),
                })
                .set(n as i64);
        }
    }

    pub fn sent(&self, channel: &str, ok: bool, alerts: usize) {
        self.notifications
            .get_or_create(&ChannelLabel {
                channel: channel.to_string(),
                outcome: if ok { "sent" } else { "failed" }.to_string(),
            })
            .inc_by(alerts as u64);
    }

    pub fn history(&self, written: u64, failed: bool, dropped: u64, waiting: usize) {
        self.history_written.inc_by(written);
        if failed {
            self.history_failures.inc();
        }
        self.history_dropped.inc_by(dropped);
        self.history_outbox
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    pub fn leader(&self, held: bool) {
        self.leader.set(i64::from(held));
    }
}
