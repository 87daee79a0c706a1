//! A service's recent lifecycle from `platform_events`: restarts, how its
//! containers ended (OOMKilled, Error…), and the latest events.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::encode::json_rows;
use crate::engine::Engine;
use crate::error::QueryError;
use crate::params::{Bindings, TimeRange, rfc3339, timestamp_param};

/// Reasons a container instance ends with; each is one restart.
pub const TERMINATION_REASONS: [&str; 4] =
    ["OOMKilled", "Error", "Completed", "ContainerCannotRun"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthParams {
    pub since: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    pub occurred_at: String,
    pub kind: String,
    pub name: String,
    pub container: Option<String>,
    pub reason: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub message: Option<String>,
    pub restart_count: Option<i64>,
    pub exit_code: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceHealth {
    pub namespace: String,
    pub service: String,
    pub from: String,
    pub to: String,
    /// Container terminations in the window (each is followed by a restart).
    pub restarts: u64,
    /// Terminations by reason, e.g. `{"OOMKilled": 5, "Error": 1}`.
    pub termination_reasons: std::collections::BTreeMap<String, u64>,
    /// The latest terminations, newest first.
    pub last_terminations: Vec<LifecycleEvent>,
    /// The latest events of any kind, newest first.
    pub recent_events: Vec<LifecycleEvent>,
}

const RECENT: usize = 50;

/// Events of the service's own object and of its pods (`<name>-…`).
pub async fn service_health(
    engine: &Engine,
    namespace: &str,
    service: &str,
    params: &HealthParams,
    now: DateTime<Utc>,
) -> Result<ServiceHealth, QueryError> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if !valid(namespace) || !valid(service) {
        return Err(QueryError::BadRequest(
            "namespace and service are Kubernetes names: letters, digits, '-' and '.'".to_string(),
        ));
    }
    let range = TimeRange::from_request(
        params.from.as_deref(),
        params.since.as_deref(),
        params.to.as_deref(),
        Duration::hours(24),
        now,
    )?;
    // The service's own object and its pods: StatefulSet pods `<name>-<n>`,
    // Deployment pods `<name>-<replicaset hash>-<pod hash>`, Job pods
    // `<name>-<hash>` (Spark drivers `<name>-<hash>-driver`), so `api` does
    // not take in `api-gateway-…`.
    let pods = format!(
        "^{}-([0-9]+|[a-z0-9]{{5}}(-driver)?|[a-z0-9]{{5,10}}-[a-z0-9]{{5}})$",
        service.replace('.', "\\.")
    );
    let scope = |b: &mut Bindings| {
        let from = b.bind(timestamp_param(range.from));
        let to = b.bind(timestamp_param(range.to));
        let ns = b.bind_str(namespace);
        let name = b.bind_str(service);
        let pods = b.bind_str(&pods);
        format!(
            "occurred_at >= {from} AND occurred_at < {to}\n\
             \x20 AND namespace = {ns} AND (name = {name} OR regexp_like(name, {pods}))"
        )
    };
    let mut health = ServiceHealth {
        namespace: namespace.to_string(),
        service: service.to_string(),
        from: rfc3339(range.from),
        to: rfc3339(range.to),
        restarts: 0,
        termination_reasons: Default::default(),
        last_terminations: Vec::new(),
        recent_events: Vec::new(),
    };
    let reasons: Vec<String> = TERMINATION_REASONS
        .iter()
        .map(|r| format!("'{r}'"))
        .collect();
    let reasons = reasons.join(", ");

    let mut b = Bindings::default();
    let sql = format!(
        "SELECT reason, count(*) AS n FROM platform.platform_events\nWHERE {}\n  AND reason IN ({reasons})\nGROUP BY reason",
        scope(&mut b)
    );
    let out = engine.sql(&sql, b.values).await?;
    for row in json_rows(&out.batches)? {
        let (Some(reason), Some(n)) = (
            row.get("reason").and_then(Value::as_str),
            row.get("n").and_then(Value::as_u64),
        ) else {
            continue;
        };
        health.restarts += n;
        health.termination_reasons.insert(reason.to_string(), n);
    }

    let events = |only_terminations: bool| {
        let mut b = Bindings::default();
        let filter = if only_terminations {
            format!("\n  AND reason IN ({reasons})")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT occurred_at, kind, name, container, reason, type, message, restart_count, exit_code\n\
             FROM platform.platform_events\n\
             WHERE {}{filter}\n\
             ORDER BY occurred_at DESC, event_id\n\
             LIMIT {RECENT}",
            scope(&mut b)
        );
        (sql, b)
    };
    for (only_terminations, into) in [
        (true, &mut health.last_terminations),
        (false, &mut health.recent_events),
    ] {
        let (sql, b) = events(only_terminations);
        let out = engine.sql(&sql, b.values).await?;
        for row in json_rows(&out.batches)? {
            into.push(
                serde_json::from_value(Value::Object(row))
                    .map_err(|e| QueryError::Internal(format!("reading a lifecycle event: {e}")))?,
            );
        }
    }
    Ok(health)
}
