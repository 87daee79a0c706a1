//! The life of an alert, exactly as Prometheus's ruler has it
//! (`rules/alerting.go`): a new instance is *pending*; after `for` it is
//! *firing*; when its series goes, a firing alert stays firing for
//! `keep_firing_for`, then is *inactive* (resolved) and is kept 15 minutes
//! so Alertmanager hears of the resolution; a pending one is dropped. What
//! is sent, and when, is Prometheus's too: firing and resolved alerts, again
//! every `resend_delay`, with `endsAt` four resend periods ahead so a ruler
//! that stops sending lets Alertmanager resolve them itself.
//!
//! The state is plain data (serde) so it survives a restart: a firing alert
//! keeps its `startsAt` and is neither lost nor announced again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::Rule;

pub type Labels = BTreeMap<String, String>;

/// How long a resolved alert is kept (and re-sent as resolved).
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);
/// State transitions kept per rule for `GET /v1/alerts`.
pub const HISTORY_PER_RULE: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One row or series the rule's query returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Labels,
    pub state: AlertState,
    #[serde(with = "float_text")]
    pub value: f64,
    pub active_at: DateTime<Utc>,
    #[serde(default)]
    pub fired_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_sent_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub keep_firing_since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    /// What the plain webhooks were last told (they do not deduplicate, so
    /// each transition is sent once).
    #[serde(default)]
    pub webhook_told: Option<AlertState>,
}

/// A change of one alert's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub rule: String,
    pub labels: Labels,
    pub from: AlertState,
    pub to: AlertState,
    #[serde(with = "float_text")]
    pub value: f64,
    /// When the alert became pending (absent in states saved before it
    /// was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_at: Option<DateTime<Utc>>,
    /// Its `summary` annotation then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// Floats as JSON numbers, and NaN and ±Inf as Prometheus writes them
/// (`"NaN"`, `"+Inf"`, `"-Inf"`): JSON has no such numbers, and serde_json
/// would write `null`, which does not read back as a float.
mod float_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_str(&sluice_query::loki::sample(*v))
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Number(f64),
        Word(String),
        Null(()),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(match Stored::deserialize(d)? {
            Stored::Number(v) => v,
            Stored::Word(t) => match t.as_str() {
                "+Inf" | "Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                _ => f64::NAN,
            },
            Stored::Null(()) => f64::NAN,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    pub alerts: Vec<Alert>,
    #[serde(default)]
    pub last_evaluation: Option<DateTime<Utc>>,
    #[serde(default)]
    pub evaluation_seconds: f64,
    /// The last evaluation's error; `None` when it succeeded.
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_fired: Option<DateTime<Utc>>,
    #[serde(default)]
    pub history: VecDeque<Transition>,
}

/// An alert as Alertmanager's API v2 takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outgoing {
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `{{ $labels.x }}`, `{{ $value }}` (and Go's `{{ .Labels.x }}`,
/// `{{ .Value }}`) in an annotation or label, the part of Prometheus's
/// templates rule files use most; anything else is left as written.
pub fn expand(template: &str, labels: &Labels, value: f64) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = rest[open + 2..open + close].trim();
        let label = inner
            .strip_prefix("$labels.")
            .or_else(|| inner.strip_prefix(".Labels."));
        match (inner, label) {
            (_, Some(name)) => {
                out.push_str(labels.get(name.trim()).map(String::as_str).unwrap_or(""))
            }
            ("$value" | ".Value", None) => out.push_str(&sluice_query::loki::sample(value)),
            _ => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

impl RuleState {
    fn record(&mut self, t: Transition) {
        if self.history.len() >= HISTORY_PER_RULE {
            self.history.pop_front();
        }
        self.history.push_back(t);
    }

    /// Applies one evaluation's samples (already past the rule's
    /// comparison) at `now`; returns the transitions it made.
    pub fn apply(
        &mut self,
        rule: &Rule,
        samples: Vec<Sample>,
        now: DateTime<Utc>,
    ) -> Vec<Transition> {
        let mut transitions = Vec::new();
        let mut index: HashMap<Labels, usize> = self
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.labels.clone(), i))
            .collect();
        let mut present = vec![false; self.alerts.len()];
        for s in samples {
            // The series' labels, the rule's over them, and alertname.
            let mut labels = s.labels.clone();
            for (k, v) in &rule.labels {
                labels.insert(k.clone(), expand(v, &s.labels, s.value));
            }
            labels.insert("alertname".into(), rule.name.clone());
            // As Prometheus (and Alertmanager): an empty label is no label.
            labels.retain(|_, v| !v.is_empty());
            let annotations: Labels = rule
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), expand(v, &s.labels, s.value)))
                .collect();
            match index.get(&labels) {
                Some(&i) if self.alerts[i].state != AlertState::Inactive => {
                    let a = &mut self.alerts[i];
                    a.value = s.value;
                    a.annotations = annotations;
                    a.keep_firing_since = None;
                    present[i] = true;
                }
                found => {
                    let alert = Alert {
                        labels: labels.clone(),
                        annotations,
                        state: AlertState::Pending,
                        value: s.value,
                        active_at: now,
                        fired_at: None,
                        resolved_at: None,
                        last_sent_at: None,
                        keep_firing_since: None,
                        valid_until: None,
                        webhook_told: None,
                    };
                    transitions.push(Transition {
                        at: now,
                        rule: rule.name.clone(),
                        labels: labels.clone(),
                        from: AlertState::Inactive,
                        to: AlertState::Pending,
                        value: s.value,
                        active_at: Some(now),
                        summary: alert.annotations.get("summary").cloned(),
                    });
                    match found {
                        // A resolved alert whose series is back starts over.
                        Some(&i) => {
                            self.alerts[i] = alert;
                            present[i] = true;
                        }
                        None => {
                            index.insert(labels, self.alerts.len());
                            self.alerts.push(alert);
                            present.push(true);
                        }
                    }
                }
            }
        }
        let mut keep = Vec::with_capacity(self.alerts.len());
        for (a, present) in std::mem::take(&mut self.alerts).into_iter().zip(present) {
            let mut a = a;
            if !present {
                if a.state == AlertState::Firing && !rule.keep_firing_for.is_zero() {
                    let since = *a.keep_firing_since.get_or_insert(now);
                    if now - since < to_chrono(rule.keep_firing_for) {
                        keep.push(a);
                        continue;
                    }
                }
                let expired = a
                    .resolved_at
                    .is_some_and(|r| now - r > to_chrono(RESOLVED_RETENTION));
                if a.state == AlertState::Pending || expired {
                    if a.state == AlertState::Pending {
                        transitions.push(Transition {
                            at: now,
                            rule: rule.name.clone(),
                            labels: a.labels.clone(),
                            from: AlertState::Pending,
                            to: AlertState::Inactive,
                            value: a.value,
                            active_at: Some(a.active_at),
                            summary: a.annotations.get("summary").cloned(),
                        });
                    }
                    continue;
                }
                if a.state != AlertState::Inactive {
                    transitions.push(Transition {
                        at: now,
                        rule: rule.name.clone(),
                        labels: a.labels.clone(),
                        from: a.state,
                        to: AlertState::Inactive,
                        value: a.value,
                        active_at: Some(a.active_at),
                        summary: a.annotations.get("summary").cloned(),
                    });
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(now);
                }
                keep.push(a);
                continue;
            }
            if a.state == AlertState::Pending && now - a.active_at >= to_chrono(rule.for_) {
                a.state = AlertState::Firing;
                a.fired_at = Some(now);
                self.last_fired = Some(now);
                transitions.push(Transition {
                    at: now,
                    rule: rule.name.clone(),
                    labels: a.labels.clone(),
                    from: AlertState::Pending,
                    to: AlertState::Firing,
                    value: a.value,
                    active_at: Some(a.active_at),
                    summary: a.annotations.get("summary").cloned(),
                });
            }
            keep.push(a);
        }
        self.alerts = keep;
        for t in &transitions {
            self.record(t.clone());
        }
        transitions
    }

    /// The alerts due to Alertmanager at `now` (marking them sent):
    /// firing and resolved ones not sent within `resend_delay`, and any
    /// resolved since its last send.
    pub fn due(
        &mut self,
        now: DateTime<Utc>,
        resend_delay: Duration,
        interval: Duration,
        generator_url: &str,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let delta = to_chrono(resend_delay.max(interval));
        for a in &mut self.alerts {
            if a.state == AlertState::Pending {
                continue;
            }
            let resolved_since_sent = match (a.resolved_at, a.last_sent_at) {
                (Some(r), Some(s)) => r > s,
                (Some(_), None) => true,
                _ => false,
            };
            let stale = a
                .last_sent_at
                .is_none_or(|s| s + to_chrono(resend_delay) < now);
            if !(resolved_since_sent || stale) {
                continue;
            }
            a.last_sent_at = Some(now);
            let valid_until = now + delta * 4;
            a.valid_until = Some(valid_until);
            out.push(Outgoing {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.fired_at.unwrap_or(a.active_at),
                ends_at: a.resolved_at.unwrap_or(valid_until),
                generator_url: generator_url.to_string(),
            });
        }
        out
    }

    /// The alerts whose state the plain webhooks have not been told yet:
    /// firing, or resolved after firing. [`RuleState::told`] marks them
    /// once a delivery succeeded.
    pub fn webhook_due(&self) -> Vec<(AlertState, Alert)> {
        self.alerts
            .iter()
            .filter(|a| match a.state {
                AlertState::Firing => a.webhook_told != Some(AlertState::Firing),
                AlertState::Inactive => a.webhook_told == Some(AlertState::Firing),
                AlertState::Pending => false,
            })
            .map(|a| (a.state, a.clone()))
            .collect()
    }

    /// Notes that the webhooks heard `state` of the alert with `labels`.
    pub fn told(&mut self, labels: &Labels, state: AlertState) {
        if let Some(a) = self.alerts.iter_mut().find(|a| &a.labels == labels) {
            a.webhook_told = Some(state);
        }
    }

    /// The rule's state as the console shows it: firing if any alert
    /// fires, else pending if any is pending, else inactive.
    pub fn summary(&self) -> AlertState {
        let states = self.alerts.iter().map(|a| a.state);
        if states.clone().any(|s| s == AlertState::Firing) {
            AlertState::Firing
        } else if states.into_iter().any(|s| s == AlertState::Pending) {
            AlertState::Pending
        } else {
            AlertState::Inactive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Expr;

    fn rule(for_secs: u64, keep_secs: u64) -> Rule {
        Rule {
            name: "HighRestartCount".into(),
            expr: Expr::Sql("SELECT 1 AS value".into()),
            query: String::new(),
            condition: None,
            implied_threshold: None,
            for_: Duration::from_secs(for_secs),
            keep_firing_for: Duration::from_secs(keep_secs),
            labels: [("severity".to_string(), "page".to_string())].into(),
            annotations: [(
                "summary".to_string(),
                "{{ $labels.pod }} restarted {{ $value }} times".to_string(),
            )]
            .into(),
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    /// What is due with a 1-minute resend delay and a 10 s interval.
    fn due(s: &mut RuleState, now: DateTime<Utc>) -> Vec<Outgoing> {
        s.due(now, Duration::from_secs(60), Duration::from_secs(10), "u")
    }

    fn sample(pod: &str, v: f64) -> Sample {
        Sample {
            labels: [("pod".to_string(), pod.to_string())].into(),
            value: v,
        }
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved_and_dropped() {
        let r = rule(60, 0);
        let mut s = RuleState::default();
        let t = s.apply(&r, vec![sample("a", 4.0)], at(0));
        assert_eq!(t[0].to, AlertState::Pending);
        assert_eq!(s.alerts[0].annotations["summary"], "a restarted 4 times");
        assert_eq!(s.alerts[0].labels["alertname"], "HighRestartCount");
        assert!(due(&mut s, at(0)).is_empty(), "pending is not sent");
        s.apply(&r, vec![sample("a", 5.0)], at(30));
        assert_eq!(s.summary(), AlertState::Pending);
        let t = s.apply(&r, vec![sample("a", 5.0)], at(60));
        assert_eq!(
            (t[0].from, t[0].to),
            (AlertState::Pending, AlertState::Firing)
        );
        let sent = due(&mut s, at(60));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].starts_at, at(60));
        assert_eq!(sent[0].ends_at, at(60 + 240), "four resend periods ahead");
        // Not again before the resend delay; again after it.
        assert!(due(&mut s, at(90)).is_empty());
        assert_eq!(due(&mut s, at(121)).len(), 1);
        // Gone: resolved at once (no keep_firing_for), sent with endsAt then.
        let t = s.apply(&r, vec![], at(130));
        assert_eq!(t[0].to, AlertState::Inactive);
        let sent = due(&mut s, at(130));
        assert_eq!(sent[0].ends_at, at(130));
        // Kept 15 minutes, then dropped.
        s.apply(&r, vec![], at(130 + 15 * 60));
        assert_eq!(s.alerts.len(), 1);
        s.apply(&r, vec![], at(131 + 15 * 60));
        assert!(s.alerts.is_empty());
    }

    #[test]
    fn a_pending_alert_that_goes_is_dropped_without_being_sent() {
        let r = rule(60, 0);
        let mut s = RuleState::default();
        s.apply(&r, vec![sample("a", 1.0)], at(0));
        s.apply(&r, vec![], at(10));
        assert!(s.alerts.is_empty());
        assert_eq!(s.history.len(), 2);
    }

    #[test]
    fn for_zero_fires_on_the_first_evaluation() {
        let r = rule(0, 0);
        let mut s = RuleState::default();
        let t = s.apply(&r, vec![sample("a", 1.0)], at(0));
        assert_eq!(t.len(), 2);
        assert_eq!(s.summary(), AlertState::Firing);
        assert_eq!(s.last_fired, Some(at(0)));
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert_then_resolves_it() {
        let r = rule(0, 60);
        let mut s = RuleState::default();
        s.apply(&r, vec![sample("a", 1.0)], at(0));
        s.apply(&r, vec![], at(10));
        assert_eq!(s.summary(), AlertState::Firing);
        s.apply(&r, vec![], at(69));
        assert_eq!(s.summary(), AlertState::Firing);
        // Back within the window: the clock restarts.
        s.apply(&r, vec![sample("a", 1.0)], at(70));
        s.apply(&r, vec![], at(80));
        s.apply(&r, vec![], at(139));
        assert_eq!(s.summary(), AlertState::Firing);
        s.apply(&r, vec![], at(140));
        assert_eq!(s.summary(), AlertState::Inactive);
    }

    #[test]
    fn a_resolved_alert_that_returns_starts_pending_again() {
        let r = rule(30, 0);
        let mut s = RuleState::default();
        s.apply(&r, vec![sample("a", 1.0)], at(0));
        s.apply(&r, vec![sample("a", 1.0)], at(30));
        s.apply(&r, vec![], at(40));
        s.apply(&r, vec![sample("a", 1.0)], at(50));
        assert_eq!(s.alerts.len(), 1);
        assert_eq!(s.alerts[0].state, AlertState::Pending);
        assert_eq!(s.alerts[0].active_at, at(50));
    }

    #[test]
    fn the_state_survives_a_restart_without_resending() {
        let r = rule(0, 0);
        let mut s = RuleState::default();
        s.apply(&r, vec![sample("a", 1.0)], at(0));
        assert_eq!(due(&mut s, at(0)).len(), 1);
        let told = s.webhook_due();
        assert_eq!(told.len(), 1);
        s.told(&told[0].1.labels, told[0].0);
        let json = serde_json::to_string(&s).unwrap();
        let mut back: RuleState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        back.apply(&r, vec![sample("a", 1.0)], at(20));
        assert!(due(&mut back, at(20)).is_empty());
        assert!(
            back.webhook_due().is_empty(),
            "the webhook heard of it before the restart"
        );
        back.apply(&r, vec![], at(30));
        assert_eq!(back.webhook_due()[0].0, AlertState::Inactive);
    }

    #[test]
    fn non_finite_values_survive_the_saved_state() {
        let r = rule(0, 0);
        let mut s = RuleState::default();
        s.apply(
            &r,
            vec![sample("a", f64::NAN), sample("b", f64::INFINITY)],
            at(0),
        );
        let json = serde_json::to_string(&s).unwrap();
        let back: RuleState = serde_json::from_str(&json).unwrap();
        assert!(back.alerts[0].value.is_nan());
        assert_eq!(back.alerts[1].value, f64::INFINITY);
        assert!(json.contains("\"+Inf\""), "{json}");
    }

    #[test]
    fn templates_expand_labels_and_value() {
        let labels: Labels = [("pod".to_string(), "p-1".to_string())].into();
        assert_eq!(
            expand(
                "{{ $labels.pod }}: {{$value}} ({{ .Labels.pod }}) {{ other }}",
                &labels,
                2.5
            ),
            "p-1: 2.5 (p-1) {{ other }}"
        );
        assert_eq!(
            expand("unclosed {{ $value", &labels, 1.0),
            "unclosed {{ $value"
        );
    }
}
