//! `GET /v1/logs/restarts`: the container instances of a pod — restart
//! numbers, first and last line, and how each ended (from
//! `platform_events`) — so an operator can open "the instance before the
//! OOMKill".

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::encode::json_rows;
use crate::engine::Engine;
use crate::error::QueryError;
use crate::params::Bindings;
use crate::service_health::TERMINATION_REASONS;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub container: String,
    pub restart: i64,
    pub pod_uid: String,
    pub first_line: Option<String>,
    pub last_line: Option<String>,
    pub lines: u64,
    /// How the instance ended (`OOMKilled`, `Error`, `Completed`), if it did.
    pub termination: Option<String>,
    pub terminated_at: Option<String>,
    pub exit_code: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restarts {
    pub namespace: String,
    pub pod: String,
    pub instances: Vec<Instance>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

pub async fn restarts(engine: &Engine, namespace: &str, pod: &str) -> Result<Restarts, QueryError> {
    if !valid_name(namespace) || !valid_name(pod) {
        return Err(QueryError::BadRequest(
            "namespace and pod are required Kubernetes names: letters, digits, '-' and '.'".into(),
        ));
    }
    let mut b = Bindings::default();
    let ns = b.bind_str(namespace);
    let p = b.bind_str(pod);
    let sql = format!(
        "SELECT container, restart, pod_uid, min(ts) AS first_line, max(ts) AS last_line, count(*) AS lines\n\
         FROM platform.pod_logs WHERE namespace = {ns} AND pod = {p}\n\
         GROUP BY container, restart, pod_uid ORDER BY container, restart"
    );
    let out = engine.sql(&sql, b.values).await?;
    let mut instances = Vec::new();
    for row in json_rows(&out.batches)? {
        let s = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
        instances.push(Instance {
            container: s("container").unwrap_or_default(),
            restart: row
                .get("restart")
                .and_then(Value::as_i64)
                .unwrap_or_default(),
            pod_uid: s("pod_uid").unwrap_or_default(),
            first_line: s("first_line"),
            last_line: s("last_line"),
            lines: row.get("lines").and_then(Value::as_u64).unwrap_or_default(),
            termination: None,
            terminated_at: None,
            exit_code: None,
        });
    }
    let reasons: Vec<String> = TERMINATION_REASONS
        .iter()
        .map(|r| format!("'{r}'"))
        .collect();
    let mut b = Bindings::default();
    let ns = b.bind_str(namespace);
    let p = b.bind_str(pod);
    let sql = format!(
        "SELECT container, restart_count, reason, occurred_at, exit_code FROM platform.platform_events\n\
         WHERE namespace = {ns} AND name = {p} AND kind = 'Pod' AND reason IN ({})\n\
         ORDER BY occurred_at",
        reasons.join(", ")
    );
    let out = engine.sql(&sql, b.values).await?;
    for row in json_rows(&out.batches)? {
        let (Some(container), Some(count)) = (
            row.get("container").and_then(Value::as_str),
            row.get("restart_count").and_then(Value::as_i64),
        ) else {
            continue;
        };
        // The record of restart N tells how instance N-1 ended.
        if let Some(i) = instances
            .iter_mut()
            .find(|i| i.container == container && i.restart == count - 1)
        {
            i.termination = row
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            i.terminated_at = row
                .get("occurred_at")
                .and_then(Value::as_str)
                .map(str::to_string);
            i.exit_code = row.get("exit_code").and_then(Value::as_i64);
        }
    }
    Ok(Restarts {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        instances,
    })
}
