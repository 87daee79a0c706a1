//! "Who is driving API load": requests, share of the total, success and
//! failure, last seen and latency percentiles per principal, endpoint, team…

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::encode::json_rows;
use crate::engine::Engine;
use crate::error::QueryError;
use crate::params::{
    Bindings, Dimension, TimeRange, check_caller_type, event_filters, parse_limit, rfc3339,
};

/// The query string of `GET /v1/attribution`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributionParams {
    pub by: Option<String>,
    pub service: Option<String>,
    pub action: Option<String>,
    pub endpoint: Option<String>,
    pub caller_type: Option<String>,
    pub from: Option<String>,
    /// A synonym of `from`.
    pub since: Option<String>,
    pub to: Option<String>,
    pub limit: Option<String>,
}

/// A validated attribution request.
#[derive(Debug, Clone)]
pub struct AttributionQuery {
    pub by: Dimension,
    pub range: TimeRange,
    pub service: Option<String>,
    pub action: Option<String>,
    pub endpoint: Option<String>,
    pub caller_type: Option<String>,
    pub limit: usize,
}

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 10_000;

impl AttributionQuery {
    pub fn from_params(p: &AttributionParams, now: DateTime<Utc>) -> Result<Self, QueryError> {
        check_caller_type(p.caller_type.as_deref())?;
        Ok(Self {
            by: Dimension::parse(p.by.as_deref(), Dimension::User, &Dimension::ALL)?,
            range: TimeRange::from_request(
                p.from.as_deref(),
                p.since.as_deref(),
                p.to.as_deref(),
                Duration::hours(24),
                now,
            )?,
            service: p.service.clone(),
            action: p.action.clone(),
            endpoint: p.endpoint.clone(),
            caller_type: p.caller_type.clone(),
            limit: parse_limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?,
        })
    }

    /// The SQL and its bound values. Percentiles are exact (linearly
    /// interpolated, like `quantile_cont` elsewhere).
    pub fn sql(&self) -> (String, Bindings) {
        let mut b = Bindings::default();
        let clauses = event_filters(
            &mut b,
            self.range,
            &[
                ("service", self.service.as_deref()),
                ("action", self.action.as_deref()),
                ("endpoint", self.endpoint.as_deref()),
                ("caller_type", self.caller_type.as_deref()),
            ],
        );
        let column = self.by.column();
        let sql = format!(
            "SELECT {column} AS principal,\n\
             \x20      count(*) AS requests,\n\
             \x20      100.0 * count(*) / sum(count(*)) OVER () AS pct_of_total,\n\
             \x20      count(*) FILTER (WHERE success) AS success,\n\
             \x20      count(*) FILTER (WHERE NOT success) AS failed,\n\
             \x20      max(occurred_at) AS last_seen,\n\
             \x20      percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_latency_ms,\n\
             \x20      percentile_cont(0.9) WITHIN GROUP (ORDER BY latency_ms) AS p90_latency_ms,\n\
             \x20      percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99_latency_ms,\n\
             \x20      sum(count(*)) OVER () AS total_requests\n\
             FROM platform.platform_event_logs\n\
             WHERE {}\n\
             GROUP BY {column}\n\
             ORDER BY requests DESC, principal ASC NULLS LAST\n\
             LIMIT {}",
            clauses.join("\n  AND "),
            self.limit
        );
        (sql, b)
    }
}

/// One row of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionRow {
    /// The user, team, endpoint… (`null`: requests without one, e.g.
    /// anonymous callers or principals missing from the directory).
    pub principal: Option<String>,
    pub requests: u64,
    pub pct_of_total: f64,
    pub success: u64,
    pub failed: u64,
    pub last_seen: String,
    pub p50_latency_ms: Option<f64>,
    pub p90_latency_ms: Option<f64>,
    pub p99_latency_ms: Option<f64>,
}

/// `GET /v1/attribution`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttributionReport {
    pub by: Dimension,
    pub from: String,
    pub to: String,
    /// The SQL that ran; `$n` are the values in `params`, in order.
    pub sql: String,
    pub params: Vec<Value>,
    /// Requests in the window under the filters (all principals, not only
    /// the rows shown).
    pub total: u64,
    pub rows: Vec<AttributionRow>,
}

pub async fn attribution(
    engine: &Engine,
    q: &AttributionQuery,
) -> Result<AttributionReport, QueryError> {
    let (sql, bindings) = q.sql();
    let params = bindings.json();
    let out = engine.sql(&sql, bindings.values).await?;
    let mut total = 0;
    let mut rows = Vec::with_capacity(out.rows);
    for mut row in json_rows(&out.batches)? {
        if let Some(t) = row.remove("total_requests").and_then(|v| v.as_u64()) {
            total = t;
        }
        rows.push(
            serde_json::from_value(Value::Object(row))
                .map_err(|e| QueryError::Internal(format!("reading an attribution row: {e}")))?,
        );
    }
    Ok(AttributionReport {
        by: q.by,
        from: rfc3339(q.range.from),
        to: rfc3339(q.range.to),
        sql,
        params,
        total,
        rows,
    })
}
