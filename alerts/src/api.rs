//! The alert APIs: Prometheus's `GET /api/v1/rules` and `GET /api/v1/alerts`
//! in its response shapes (so Grafana's alerting view lists sluice's
//! rules), and `GET /v1/alerts` for the console: each rule with its
//! target, threshold, channel, state, last fired, error and recent
//! transitions.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::duration::format_duration;
use crate::evaluator::{Alerts, lock, rule_key};
use crate::rules::Rule;
use crate::state::{Alert, AlertState, RuleState};

impl Alerts {
    /// The routes, for the query API's router (behind its tokens).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/rules", get(rules_route))
            .route("/api/v1/alerts", get(alerts_route))
            .route("/v1/alerts", get(console_route))
            .with_state(self.clone())
    }
}

fn time(t: Option<DateTime<Utc>>) -> String {
    // Go's zero time, as Prometheus prints a rule never evaluated.
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// A sample value as Prometheus's API prints one (Go's
/// `strconv.FormatFloat(v, 'e', -1, 64)`): `4e+00`, `1.5e+03`, `2.5e-01`.
pub fn prometheus_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn alert_json(a: &Alert) -> Json {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": time(Some(a.active_at)),
        "value": prometheus_value(a.value),
    })
}

/// Alerts as Prometheus lists them: pending and firing (resolved ones are
/// kept only to tell Alertmanager).
fn listed(rs: Option<&RuleState>) -> Vec<&Alert> {
    rs.map(|rs| {
        rs.alerts
            .iter()
            .filter(|a| a.state != AlertState::Inactive)
            .collect()
    })
    .unwrap_or_default()
}

#[derive(Deserialize)]
struct RulesParams {
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn rule_json(rule: &Rule, rs: Option<&RuleState>) -> Json {
    let state = rs.map(RuleState::summary).unwrap_or(AlertState::Inactive);
    let (health, last_error) = match rs {
        None => ("unknown", None),
        Some(rs) if rs.last_evaluation.is_none() => ("unknown", None),
        Some(rs) => match &rs.last_error {
            None => ("ok", None),
            Some(e) => ("err", Some(e.clone())),
        },
    };
    let mut j = json!({
        "state": state.as_str(),
        "name": rule.name,
        "query": rule.query,
        "duration": rule.for_.as_secs_f64(),
        "keepFiringFor": rule.keep_firing_for.as_secs_f64(),
        "labels": rule.labels,
        "annotations": rule.annotations,
        "alerts": listed(rs).into_iter().map(alert_json).collect::<Vec<_>>(),
        "health": health,
        "evaluationTime": rs.map(|r| r.evaluation_seconds).unwrap_or(0.0),
        "lastEvaluation": time(rs.and_then(|r| r.last_evaluation)),
        "type": "alerting",
    });
    if let Some(e) = last_error {
        j["lastError"] = json!(e);
    }
    j
}

async fn rules_route(State(alerts): State<Alerts>, Query(p): Query<RulesParams>) -> Response {
    let shared = &alerts.shared;
    // Only alerting rules exist: `type=record` lists none.
    let recording_only = p.kind.as_deref() == Some("record");
    let state = lock(&shared.state);
    let groups: Vec<Json> = shared
        .groups
        .iter()
        .filter(|_| !recording_only)
        .map(|g| {
            let run = state.groups.get(&g.name);
            json!({
                "name": g.name,
                "file": g.file,
                "rules": g.rules.iter().enumerate()
                    .map(|(i, r)| rule_json(r, state.rules.get(&rule_key(g, i))))
                    .collect::<Vec<_>>(),
                "interval": g.interval.as_secs_f64(),
                "limit": 0,
                "evaluationTime": run.map(|r| r.evaluation_seconds).unwrap_or(0.0),
                "lastEvaluation": time(run.and_then(|r| r.last_evaluation)),
            })
        })
        .collect();
    axum::Json(json!({"status": "success", "data": {"groups": groups}})).into_response()
}

async fn alerts_route(State(alerts): State<Alerts>) -> Response {
    let shared = &alerts.shared;
    let state = lock(&shared.state);
    let mut list = Vec::new();
    for g in &shared.groups {
        for i in 0..g.rules.len() {
            list.extend(
                listed(state.rules.get(&rule_key(g, i)))
                    .into_iter()
                    .map(alert_json),
            );
        }
    }
    axum::Json(json!({"status": "success", "data": {"alerts": list}})).into_response()
}

/// `GET /v1/alerts`: the console's table, one row per rule.
async fn console_route(State(alerts): State<Alerts>) -> Response {
    let shared = &alerts.shared;
    let state = lock(&shared.state);
    let mut rules = Vec::new();
    for g in &shared.groups {
        for (i, r) in g.rules.iter().enumerate() {
            let rs = state.rules.get(&rule_key(g, i));
            let alerts: Vec<Json> = rs
                .map(|rs| {
                    rs.alerts
                        .iter()
                        .map(|a| {
                            json!({
                                "labels": a.labels,
                                "annotations": a.annotations,
                                "state": if a.state == AlertState::Inactive { "resolved" } else { a.state.as_str() },
                                "value": a.value,
                                "active_at": a.active_at,
                                "fired_at": a.fired_at,
                                "resolved_at": a.resolved_at,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let history: Vec<Json> = rs
                .map(|rs| {
                    rs.history
                        .iter()
                        .rev()
                        .map(|t| json!({"at": t.at, "labels": t.labels, "from": t.from.as_str(), "to": t.to.as_str(), "value": t.value}))
                        .collect()
                })
                .unwrap_or_default();
            rules.push(json!({
                "group": g.name,
                "file": g.file,
                "name": r.name,
                "kind": r.expr.kind(),
                "query": r.query,
                "signal": r.annotations.get("signal"),
                "target": r.annotations.get("target"),
                "threshold": r.condition.map(|c| c.to_string()).or_else(|| r.implied_threshold.clone()),
                "for": format_duration(r.for_),
                "keep_firing_for": format_duration(r.keep_firing_for),
                "channel": r.labels.get("channel"),
                "labels": r.labels,
                "annotations": r.annotations,
                "state": rs.map(RuleState::summary).unwrap_or(AlertState::Inactive).as_str(),
                "last_fired": rs.and_then(|r| r.last_fired),
                "last_evaluation": rs.and_then(|r| r.last_evaluation),
                "last_error": rs.and_then(|r| r.last_error.clone()),
                "interval": format_duration(g.interval),
                "alerts": alerts,
                "history": history,
            }));
        }
    }
    let leader = shared.leader.load(std::sync::atomic::Ordering::Acquire);
    axum::Json(json!({
        "evaluating_here": leader,
        "alertmanagers": shared.config.alertmanagers.len(),
        "rules": rules,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_like_go() {
        assert_eq!(prometheus_value(4.0), "4e+00");
        assert_eq!(prometheus_value(1500.0), "1.5e+03");
        assert_eq!(prometheus_value(0.25), "2.5e-01");
        assert_eq!(prometheus_value(0.0), "0e+00");
        assert_eq!(prometheus_value(f64::NAN), "NaN");
        assert_eq!(prometheus_value(1e120), "1e+120");
    }
}
