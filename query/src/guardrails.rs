//! Rate-limit guardrails tuned from history: each principal's peak requests
//! per window, what a candidate cap would have limited (monitor mode), and
//! the recommended caps as an Envoy rate-limit service configuration.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::GuardrailsConfig;
use crate::encode::json_rows;
use crate::engine::Engine;
use crate::error::QueryError;
use crate::params::{Bindings, Dimension, TimeRange, event_filters, parse_limit, rfc3339};

/// What a guardrail can be keyed by.
pub const GUARDRAIL_DIMENSIONS: [Dimension; 4] = [
    Dimension::User,
    Dimension::Team,
    Dimension::Domain,
    Dimension::Endpoint,
];

/// The length of the windows requests are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Window {
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    Hour,
}

impl Window {
    pub fn parse(text: Option<&str>) -> Result<Self, QueryError> {
        match text.map(str::trim).unwrap_or("1m") {
            "" | "1m" => Ok(Window::Minute),
            "5m" => Ok(Window::FiveMinutes),
            "1h" => Ok(Window::Hour),
            other => Err(QueryError::BadRequest(format!(
                "window={other:?}: expected 1m, 5m or 1h"
            ))),
        }
    }

    fn interval(self) -> &'static str {
        match self {
            Window::Minute => "INTERVAL '1 minute'",
            Window::FiveMinutes => "INTERVAL '5 minutes'",
            Window::Hour => "INTERVAL '1 hour'",
        }
    }

    /// Envoy's rate-limit unit, where one matches.
    fn envoy_unit(self) -> Option<&'static str> {
        match self {
            Window::Minute => Some("minute"),
            Window::Hour => Some("hour"),
            Window::FiveMinutes => None,
        }
    }
}

/// Which history to count: dimension, window length, range, service.
#[derive(Debug, Clone)]
pub struct Scope {
    pub by: Dimension,
    pub window: Window,
    pub range: TimeRange,
    pub service: Option<String>,
}

impl Scope {
    /// `since` is a synonym of `from` (one or the other).
    pub fn parse(
        by: Option<&str>,
        window: Option<&str>,
        [from, since, to]: [Option<&str>; 3],
        service: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, QueryError> {
        Ok(Self {
            by: Dimension::parse(by, Dimension::User, &GUARDRAIL_DIMENSIONS)?,
            window: Window::parse(window)?,
            range: TimeRange::from_request(from, since, to, Duration::days(7), now)?,
            service: service.map(str::to_string),
        })
    }

    /// From request fields `[by, window, since, from, to, service]`.
    fn from_params(fields: [&Option<String>; 6], now: DateTime<Utc>) -> Result<Self, QueryError> {
        let [by, window, since, from, to, service] = fields;
        Scope::parse(
            by.as_deref(),
            window.as_deref(),
            [from.as_deref(), since.as_deref(), to.as_deref()],
            service.as_deref(),
            now,
        )
    }

    /// `per_window`: requests per principal per window, windows aligned to
    /// the Unix epoch. Only windows with at least one request exist.
    fn per_window_cte(&self, b: &mut Bindings) -> String {
        let clauses = event_filters(b, self.range, &[("service", self.service.as_deref())]);
        let bin = format!("date_bin({}, occurred_at)", self.window.interval());
        format!(
            "WITH per_window AS (\n\
             \x20 SELECT {col} AS principal, {bin} AS window_start, count(*) AS requests\n\
             \x20 FROM platform.platform_event_logs\n\
             \x20 WHERE {where_}\n\
             \x20 GROUP BY {col}, {bin}\n\
             )",
            col = self.by.column(),
            where_ = clauses.join(" AND "),
        )
    }
}

/// The query string of `GET /v1/guardrails/peaks` and `/export`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeaksParams {
    pub by: Option<String>,
    pub window: Option<String>,
    pub since: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub service: Option<String>,
    pub limit: Option<String>,
    /// `/export` only: the output format (`envoy`).
    pub format: Option<String>,
    /// `/export` only: the Envoy rate-limit domain.
    pub domain: Option<String>,
}

impl PeaksParams {
    pub fn scope(&self, now: DateTime<Utc>) -> Result<Scope, QueryError> {
        Scope::from_params(
            [
                &self.by,
                &self.window,
                &self.since,
                &self.from,
                &self.to,
                &self.service,
            ],
            now,
        )
    }

    /// Answers `GET /v1/guardrails/peaks` (and `sluice guardrails peaks`).
    pub async fn peaks(
        &self,
        engine: &Engine,
        cfg: &GuardrailsConfig,
        now: DateTime<Utc>,
    ) -> Result<PeaksReport, QueryError> {
        if self.format.is_some() || self.domain.is_some() {
            return Err(QueryError::BadRequest(
                "format and domain belong to /v1/guardrails/export".to_string(),
            ));
        }
        let limit = parse_limit(self.limit.as_deref(), DEFAULT_PEAKS_LIMIT, MAX_PEAKS_LIMIT)?;
        peaks(engine, &self.scope(now)?, limit, cfg).await
    }

    /// Answers `GET /v1/guardrails/export` (and `sluice guardrails export`):
    /// every principal's recommended cap, as Envoy configuration.
    pub async fn export(
        &self,
        engine: &Engine,
        cfg: &GuardrailsConfig,
        now: DateTime<Utc>,
    ) -> Result<String, QueryError> {
        match self.format.as_deref().unwrap_or("envoy") {
            "envoy" => {}
            other => {
                return Err(QueryError::BadRequest(format!(
                    "format={other:?}: the export format is envoy"
                )));
            }
        }
        let limit = parse_limit(self.limit.as_deref(), MAX_PEAKS_LIMIT, MAX_PEAKS_LIMIT)?;
        let report = peaks(engine, &self.scope(now)?, limit, cfg).await?;
        envoy_config(&report, self.domain.as_deref().unwrap_or("sluice"))
    }
}

/// One principal's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakRow {
    pub principal: Option<String>,
    /// Most requests in one window.
    pub peak: u64,
    /// Start of the (first) window with the peak.
    pub peak_at: String,
    /// Percentiles and mean of the per-window counts, over the windows in
    /// which the principal made at least one request.
    pub p99: f64,
    pub p95: f64,
    pub mean: f64,
    /// Windows with at least one request.
    pub windows: u64,
    pub requests: u64,
    /// max(ceil(peak × headroom), floor).
    #[serde(default)]
    pub recommended_cap: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeaksReport {
    pub by: Dimension,
    pub window: Window,
    pub from: String,
    pub to: String,
    pub headroom: f64,
    pub floor: u64,
    pub sql: String,
    pub params: Vec<Value>,
    pub rows: Vec<PeakRow>,
}

pub const DEFAULT_PEAKS_LIMIT: usize = 100;
pub const MAX_PEAKS_LIMIT: usize = 100_000;

pub fn recommended_cap(peak: u64, cfg: &GuardrailsConfig) -> u64 {
    let scaled = (peak as f64 * cfg.headroom).ceil();
    let scaled = if scaled.is_finite() && scaled > 0.0 {
        scaled as u64
    } else {
        0
    };
    scaled.max(cfg.floor)
}

pub fn peaks_sql(scope: &Scope, limit: usize) -> (String, Bindings) {
    let mut b = Bindings::default();
    let cte = scope.per_window_cte(&mut b);
    let sql = format!(
        "{cte}\n\
         SELECT principal,\n\
         \x20      max(requests) AS peak,\n\
         \x20      first_value(window_start ORDER BY requests DESC, window_start ASC) AS peak_at,\n\
         \x20      quantiles_cont(requests, 0.99, 0.95)[1] AS p99,\n\
         \x20      quantiles_cont(requests, 0.99, 0.95)[2] AS p95,\n\
         \x20      avg(CAST(requests AS DOUBLE)) AS mean,\n\
         \x20      count(*) AS windows,\n\
         \x20      sum(requests) AS requests\n\
         FROM per_window\n\
         GROUP BY principal\n\
         ORDER BY peak DESC, principal ASC NULLS LAST\n\
         LIMIT {limit}"
    );
    (sql, b)
}

pub async fn peaks(
    engine: &Engine,
    scope: &Scope,
    limit: usize,
    cfg: &GuardrailsConfig,
) -> Result<PeaksReport, QueryError> {
    let (sql, bindings) = peaks_sql(scope, limit);
    let params = bindings.json();
    let out = engine.sql(&sql, bindings.values).await?;
    let mut rows = Vec::with_capacity(out.rows);
    for row in json_rows(&out.batches)? {
        let mut row: PeakRow = serde_json::from_value(Value::Object(row))
            .map_err(|e| QueryError::Internal(format!("reading a peaks row: {e}")))?;
        row.recommended_cap = recommended_cap(row.peak, cfg);
        rows.push(row);
    }
    Ok(PeaksReport {
        by: scope.by,
        window: scope.window,
        from: rfc3339(scope.range.from),
        to: rfc3339(scope.range.to),
        headroom: cfg.headroom,
        floor: cfg.floor,
        sql,
        params,
        rows,
    })
}

/// `POST /v1/guardrails/simulate`'s body.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateRequest {
    pub by: Option<String>,
    pub window: Option<String>,
    pub since: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub service: Option<String>,
    /// Candidate caps: with `principal`, for that principal; without, the
    /// default for every principal that has no cap of its own.
    pub caps: Vec<Cap>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Requests allowed per window.
    pub limit: u64,
}

/// One principal that would have been limited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breacher {
    pub principal: Option<String>,
    pub breach_windows: u64,
    /// Requests beyond the cap, summed over the breaching windows.
    pub limited_requests: u64,
    pub first_breach: String,
    pub last_breach: String,
}

/// What one cap would have done over the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapOutcome {
    pub cap: Cap,
    /// Windows (of any covered principal) over the cap.
    pub breach_windows: u64,
    pub limited_requests: u64,
    pub first_breach: Option<String>,
    pub last_breach: Option<String>,
    /// Every principal that would have been limited, most limited first.
    pub principals: Vec<Breacher>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimulateReport {
    pub by: Dimension,
    pub window: Window,
    pub from: String,
    pub to: String,
    pub sql: String,
    pub params: Vec<Value>,
    pub caps: Vec<CapOutcome>,
}

impl SimulateRequest {
    pub fn scope(&self, now: DateTime<Utc>) -> Result<Scope, QueryError> {
        Scope::from_params(
            [
                &self.by,
                &self.window,
                &self.since,
                &self.from,
                &self.to,
                &self.service,
            ],
            now,
        )
    }

    fn check(&self) -> Result<(), QueryError> {
        if self.caps.is_empty() {
            return Err(QueryError::BadRequest(
                "caps: give at least one cap".to_string(),
            ));
        }
        if self.caps.len() > 1000 {
            return Err(QueryError::BadRequest(
                "caps: at most 1000 caps at once".to_string(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for cap in &self.caps {
            if cap.limit > i64::MAX as u64 {
                return Err(QueryError::BadRequest(format!(
                    "caps: limit {} is too large",
                    cap.limit
                )));
            }
            if !seen.insert(cap.principal.as_deref()) {
                return Err(QueryError::BadRequest(match &cap.principal {
                    Some(p) => format!("caps: principal {p:?} has two caps"),
                    None => "caps: two default caps (caps without a principal)".to_string(),
                }));
            }
        }
        Ok(())
    }
}

pub fn simulate_sql(scope: &Scope, caps: &[Cap]) -> (String, Bindings) {
    let mut b = Bindings::default();
    let cte = scope.per_window_cte(&mut b);
    let mut index_case = String::from("CASE");
    let mut limit_case = String::from("CASE");
    let mut default = None;
    for (i, cap) in caps.iter().enumerate() {
        match &cap.principal {
            Some(p) => {
                let p = b.bind_str(p);
                let l = b.bind(ScalarValue::Int64(Some(cap.limit as i64)));
                index_case.push_str(&format!(" WHEN principal = {p} THEN {i}"));
                limit_case.push_str(&format!(" WHEN principal = {p} THEN CAST({l} AS BIGINT)"));
            }
            None => default = Some((i, cap.limit)),
        }
    }
    match default {
        Some((i, limit)) => {
            let l = b.bind(ScalarValue::Int64(Some(limit as i64)));
            index_case.push_str(&format!(" ELSE {i} END"));
            limit_case.push_str(&format!(" ELSE CAST({l} AS BIGINT) END"));
        }
        None => {
            index_case.push_str(" END");
            limit_case.push_str(" END");
        }
    }
    // A CASE without any WHEN is not SQL: only a default cap was given.
    if !index_case.contains("WHEN") {
        index_case = index_case.replace("CASE ELSE ", "").replace(" END", "");
        limit_case = limit_case.replace("CASE ELSE ", "").replace(" END", "");
    }
    let sql = format!(
        "{cte},\n\
         capped AS (\n\
         \x20 SELECT principal, window_start, requests,\n\
         \x20        {index_case} AS cap_index,\n\
         \x20        {limit_case} AS cap\n\
         \x20 FROM per_window\n\
         )\n\
         SELECT cap_index, principal,\n\
         \x20      count(*) AS breach_windows,\n\
         \x20      sum(requests - cap) AS limited_requests,\n\
         \x20      min(window_start) AS first_breach,\n\
         \x20      max(window_start) AS last_breach\n\
         FROM capped\n\
         WHERE requests > cap\n\
         GROUP BY cap_index, principal\n\
         ORDER BY cap_index, limited_requests DESC, principal ASC NULLS LAST"
    );
    (sql, b)
}

#[derive(Debug, Deserialize)]
struct BreachRow {
    cap_index: usize,
    #[serde(flatten)]
    breacher: Breacher,
}

pub async fn simulate(
    engine: &Engine,
    request: &SimulateRequest,
    now: DateTime<Utc>,
) -> Result<SimulateReport, QueryError> {
    request.check()?;
    let scope = request.scope(now)?;
    let (sql, bindings) = simulate_sql(&scope, &request.caps);
    let params = bindings.json();
    let out = engine.sql(&sql, bindings.values).await?;
    let mut by_cap: BTreeMap<usize, Vec<Breacher>> = BTreeMap::new();
    for row in json_rows(&out.batches)? {
        let row: BreachRow = serde_json::from_value(Value::Object(row))
            .map_err(|e| QueryError::Internal(format!("reading a simulation row: {e}")))?;
        by_cap.entry(row.cap_index).or_default().push(row.breacher);
    }
    let caps = request
        .caps
        .iter()
        .enumerate()
        .map(|(i, cap)| {
            let principals = by_cap.remove(&i).unwrap_or_default();
            CapOutcome {
                cap: cap.clone(),
                breach_windows: principals.iter().map(|p| p.breach_windows).sum(),
                limited_requests: principals.iter().map(|p| p.limited_requests).sum(),
                first_breach: principals
                    .iter()
                    .min_by_key(|p| instant(&p.first_breach))
                    .map(|p| p.first_breach.clone()),
                last_breach: principals
                    .iter()
                    .max_by_key(|p| instant(&p.last_breach))
                    .map(|p| p.last_breach.clone()),
                principals,
            }
        })
        .collect();
    Ok(SimulateReport {
        by: scope.by,
        window: scope.window,
        from: rfc3339(scope.range.from),
        to: rfc3339(scope.range.to),
        sql,
        params,
        caps,
    })
}

/// A timestamp of an answer as an instant (text would sort `…:00Z` after
/// `…:00.5Z`).
fn instant(text: &str) -> Option<DateTime<chrono::FixedOffset>> {
    DateTime::parse_from_rfc3339(text).ok()
}

/// The descriptor key a gateway sends for a dimension.
fn envoy_key(by: Dimension) -> &'static str {
    match by {
        Dimension::User => "user_id",
        other => other.name(),
    }
}

#[derive(Serialize)]
struct EnvoyConfig {
    domain: String,
    descriptors: Vec<EnvoyDescriptor>,
}

#[derive(Serialize)]
struct EnvoyDescriptor {
    key: &'static str,
    value: String,
    rate_limit: EnvoyLimit,
}

#[derive(Serialize)]
struct EnvoyLimit {
    unit: &'static str,
    requests_per_unit: u64,
}

/// The recommended caps as the configuration of Envoy's rate-limit service
/// (one descriptor per principal). Principals without a name are skipped:
/// a gateway cannot key a limit on them.
pub fn envoy_config(report: &PeaksReport, domain: &str) -> Result<String, QueryError> {
    let unit = report.window.envoy_unit().ok_or_else(|| {
        QueryError::BadRequest(
            "Envoy's rate-limit units are second, minute, hour and day: export with window=1m or 1h"
                .to_string(),
        )
    })?;
    if domain.trim().is_empty() {
        return Err(QueryError::BadRequest(
            "domain must not be empty".to_string(),
        ));
    }
    let config = EnvoyConfig {
        domain: domain.to_string(),
        descriptors: report
            .rows
            .iter()
            .filter_map(|r| {
                Some(EnvoyDescriptor {
                    key: envoy_key(report.by),
                    value: r.principal.clone()?,
                    rate_limit: EnvoyLimit {
                        unit,
                        requests_per_unit: r.recommended_cap,
                    },
                })
            })
            .collect(),
    };
    let yaml = serde_yaml_ng::to_string(&config)
        .map_err(|e| QueryError::Internal(format!("writing the Envoy configuration: {e}")))?;
    Ok(format!(
        "# Envoy rate-limit service configuration generated by sluice.\n\
         # Caps: max(ceil(peak x {headroom}), {floor}) requests per {unit}, from peaks per {by}\n\
         # between {from} and {to}.\n{yaml}",
        headroom = report.headroom,
        floor = report.floor,
        by = report.by.name(),
        from = report.from,
        to = report.to,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_headroom_and_floor() {
        let cfg = GuardrailsConfig {
            headroom: 1.5,
            floor: 10,
        };
        assert_eq!(recommended_cap(100, &cfg), 150);
        assert_eq!(recommended_cap(3, &cfg), 10);
        assert_eq!(recommended_cap(7, &cfg), 11);
    }

    #[test]
    fn windows() {
        assert_eq!(Window::parse(None).unwrap(), Window::Minute);
        assert_eq!(Window::parse(Some("1h")).unwrap(), Window::Hour);
        assert!(Window::parse(Some("2m")).is_err());
    }

    #[test]
    fn simulate_binds_principals_and_limits() {
        let now = Utc::now();
        let scope = Scope::parse(None, None, [None; 3], None, now).unwrap();
        let caps = vec![
            Cap {
                principal: Some("a'; DROP TABLE x; --".into()),
                limit: 5,
            },
            Cap {
                principal: None,
                limit: 50,
            },
        ];
        let (sql, b) = simulate_sql(&scope, &caps);
        assert!(!sql.contains("DROP"), "{sql}");
        assert!(sql.contains("WHEN principal = $3 THEN 0"), "{sql}");
        assert!(sql.contains("ELSE 1 END"), "{sql}");
        assert_eq!(b.values.len(), 5);
        let (only_default, _) = simulate_sql(
            &scope,
            &[Cap {
                principal: None,
                limit: 9,
            }],
        );
        assert!(!only_default.contains("CASE"), "{only_default}");
        assert!(only_default.contains("0 AS cap_index"), "{only_default}");
    }

    #[test]
    fn duplicate_caps_are_refused() {
        let req = SimulateRequest {
            by: None,
            window: None,
            since: None,
            from: None,
            to: None,
            service: None,
            caps: vec![
                Cap {
                    principal: None,
                    limit: 1,
                },
                Cap {
                    principal: None,
                    limit: 2,
                },
            ],
        };
        assert!(req.check().is_err());
    }
}
