//! A Loki-compatible read API over the log index, so Grafana (or logcli)
//! can use sluice as a Loki data source: the same paths, parameters and
//! response shapes (`resultType` streams / matrix / vector / scalar,
//! nanosecond timestamps as strings in streams, `[seconds, "value"]`
//! samples), and Loki's plain-text 400 for a query it cannot answer.
//!
//! Streams are container instances: their labels are `namespace`, `pod`,
//! `container`, `restart`, `stream`, `level` and `node`.

pub mod eval;
pub mod logql;
pub mod tail;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use crate::error::QueryError;
use crate::logsearch::LogIndex;
use crate::logsearch::search::OpenSplit;
use crate::state::ApiState;
use eval::{EvalError, Labels, Series, Steps, Value};
use logql::{LogSelector, MatchOp, Matcher, Query};

/// Most lines one log query returns (Loki's `max_entries_limit_per_query`).
pub const MAX_ENTRIES: usize = 5000;
/// Most points per series in a range query (Loki's limit).
pub const MAX_POINTS: i64 = 11_000;
/// The Loki API version whose shapes sluice answers with.
pub const LOKI_API_VERSION: &str = "3.0.0";

/// A failure, answered the way Loki answers: plain text with the status.
#[derive(Debug)]
pub struct LokiError {
    status: StatusCode,
    message: String,
}

impl LokiError {
    /// What went wrong, as the API would answer it.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn kind(&self) -> &'static str {
        if self.status.is_client_error() {
            "bad_request"
        } else {
            "internal"
        }
    }
}

impl From<QueryError> for LokiError {
    fn from(e: QueryError) -> Self {
        Self {
            status: e.status(),
            message: e.to_string(),
        }
    }
}

impl From<EvalError> for LokiError {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::Limit(m) => Self::bad(m),
            EvalError::Cancelled => QueryError::Cancelled.into(),
            EvalError::Index(m) => Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: m,
            },
        }
    }
}

impl From<logql::ParseError> for LokiError {
    fn from(e: logql::ParseError) -> Self {
        Self::bad(e.to_string())
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        let retry = (self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status == StatusCode::SERVICE_UNAVAILABLE)
            .then_some([(header::RETRY_AFTER, crate::error::RETRY_AFTER_SECS)]);
        (
            self.status,
            retry,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            self.message,
        )
            .into_response()
    }
}

/// The routes under `/loki/api/v1/` (behind the API's authentication).
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/loki/api/v1/query", get(query_route))
        .route("/loki/api/v1/query_range", get(query_range_route))
        .route("/loki/api/v1/labels", get(labels_route))
        .route("/loki/api/v1/label", get(labels_route))
        .route("/loki/api/v1/label/{name}/values", get(label_values_route))
        .route("/loki/api/v1/series", get(series_route))
        .route("/loki/api/v1/index/stats", get(stats_route))
        .route("/loki/api/v1/index/volume", get(volume_route))
        .route("/loki/api/v1/status/buildinfo", get(buildinfo_route))
}

/// Loki's readiness probe path (open, like `/readyz`).
pub async fn ready() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ready\n",
    )
        .into_response()
}

/// Query-string parameters; repeated keys (`match[]`) are kept.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<String>) -> Result<Self, LokiError> {
        let raw = raw.unwrap_or_default();
        serde_urlencoded::from_str::<Vec<(String, String)>>(&raw)
            .map(Params)
            .map_err(|e| LokiError::bad(format!("invalid query string: {e}")))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A Loki timestamp: integer nanoseconds (or seconds when it has at most
/// ten digits), float seconds, or RFC 3339. Epoch microseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Some(if text.trim_start_matches('-').len() <= 10 {
            n.saturating_mul(1_000_000)
        } else {
            n / 1_000
        });
    }
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
    {
        return Some((f * 1e6).round() as i64);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, LokiError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => parse_time(v).ok_or_else(|| {
            LokiError::bad(format!(
                "invalid parameter {name:?}: cannot parse {v:?} to a valid timestamp"
            ))
        }),
    }
}

/// `step`: a duration (`1m`) or float seconds. Microseconds.
/// `None` for zero, negative, or under a microsecond (a step that rounds to
/// 0 would divide by zero).
fn parse_step(text: &str) -> Option<i64> {
    let us = match text.trim().parse::<f64>() {
        Ok(f) => (f.is_finite() && f > 0.0).then(|| (f * 1e6).round() as i64)?,
        Err(_) => logql::parse_duration_us(text)?,
    };
    (us > 0).then_some(us)
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// `start`/`end` (or `since`), defaulting to the last `default_span_us`.
fn range_params(p: &Params, default_span_us: i64) -> Result<(i64, i64), LokiError> {
    let end = time_param(p, "end", now_us())?;
    let span = match p.get("since") {
        Some(s) => logql::parse_duration_us(s)
            .ok_or_else(|| LokiError::bad(format!("invalid parameter \"since\": {s:?}")))?,
        None => default_span_us,
    };
    let start = time_param(p, "start", end.saturating_sub(span))?;
    if end < start {
        return Err(LokiError::bad(
            "the end timestamp must not be before the start time",
        ));
    }
    Ok((start, end))
}

fn limit_param(p: &Params) -> Result<usize, LokiError> {
    let limit = match p.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| LokiError::bad(format!("invalid parameter \"limit\": {v:?}")))?,
    };
    if limit == 0 {
        return Err(LokiError::bad("limit must be a positive value"));
    }
    if limit > MAX_ENTRIES {
        return Err(LokiError::bad(format!(
            "max entries limit per query exceeded, limit > max_entries_limit ({limit} > {MAX_ENTRIES})"
        )));
    }
    Ok(limit)
}

fn newest_first(p: &Params) -> Result<bool, LokiError> {
    match p.get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("backward") => Ok(true),
        Some("forward") => Ok(false),
        Some(other) => Err(LokiError::bad(format!(
            "invalid parameter \"direction\": {other:?} (forward or backward)"
        ))),
    }
}

fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, LokiError> {
    p.get(name)
        .ok_or_else(|| LokiError::bad(format!("missing parameter {name:?}")))
}

/// Every LogQL query of this API is parsed here: a tenant's gets one more
/// matcher on each of its selectors, `namespace=~"<its namespaces>"`, which
/// the evaluation checks on every stream like the query's own matchers.
fn parse_scoped(text: &str) -> Result<Query, LokiError> {
    let mut query = logql::parse(text)?;
    if let Some(tenant) = tenant_matcher()? {
        for sel in query.selectors_mut() {
            sel.matchers.push(tenant.clone());
        }
    }
    Ok(query)
}

/// The matcher of the query's tenant, if it has one.
fn tenant_matcher() -> Result<Option<Matcher>, LokiError> {
    let Some(tenant) = crate::isolation::current_scope().and_then(|s| s.tenant) else {
        return Ok(None);
    };
    Matcher::regex("namespace", &tenant.namespace_regex())
        .map(Some)
        .map_err(|e| {
            LokiError::from(QueryError::Internal(format!(
                "the tenant's namespaces: {e}"
            )))
        })
}

/// The `namespace="…"` and `pod="…"` a selector requires, to choose splits.
fn split_hints(sel: &LogSelector) -> (Option<String>, Option<String>) {
    let eq = |label: &str| {
        sel.matchers
            .iter()
            .find(|m| m.label == label && m.op == MatchOp::Eq && !m.value.is_empty())
            .map(|m| m.value.clone())
    };
    (eq("namespace"), eq("pod"))
}

async fn splits_for(
    logs: &LogIndex,
    selectors: &[&LogSelector],
    from_us: i64,
    to_us: i64,
) -> Result<Vec<Arc<OpenSplit>>, LokiError> {
    // One selector's hints narrow the splits; several select their union.
    let (ns, pod) = match selectors {
        [one] => split_hints(one),
        _ => (None, None),
    };
    let filters = crate::logsearch::search::Filters {
        namespace: ns,
        pod,
        from: Some(from_us),
        to: Some(to_us),
        ..Default::default()
    };
    Ok(logs.open_splits(&filters).await?)
}

async fn blocking<T, F>(f: F) -> Result<T, LokiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LokiError> + Send + 'static,
{
    crate::isolation::blocking(f).await?
}

async fn observed<F>(state: &ApiState, endpoint: &str, body: F) -> Response
where
    F: Future<Output = Result<Json, LokiError>>,
{
    let started = Instant::now();
    let result = body.await;
    let seconds = started.elapsed().as_secs_f64();
    let metrics = state.engine.metrics();
    match result {
        Ok(body) => {
            metrics.observe(endpoint, seconds, None);
            axum::Json(body).into_response()
        }
        Err(e) => {
            metrics.observe(endpoint, seconds, Some(e.kind()));
            if e.status.is_server_error() {
                tracing::error!(endpoint, error = %e.message, "loki query failed");
            } else {
                tracing::debug!(endpoint, error = %e.message, "loki query refused");
            }
            e.into_response()
        }
    }
}

fn seconds(t_us: i64) -> Json {
    // Whole seconds print as integers, as Loki prints them.
    if t_us % 1_000_000 == 0 {
        json!(t_us / 1_000_000)
    } else {
        json!(t_us as f64 / 1e6)
    }
}

/// A sample value as Prometheus writes it (`2`, `0.5`, `+Inf`, `NaN`):
/// Loki's answers and the alert templates' `$value`.
pub fn sample(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn streams_json(streams: Vec<eval::Stream>) -> (Json, usize) {
    let mut lines = 0;
    let result: Vec<Json> = streams
        .into_iter()
        .map(|s| {
            lines += s.entries.len();
            json!({
                "stream": s.labels,
                "values": s.entries.into_iter()
                    .map(|(ns, line)| json!([ns.to_string(), line]))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    (Json::Array(result), lines)
}

fn stats(started: Instant, entries: usize) -> Json {
    json!({
        "summary": {
            "execTime": started.elapsed().as_secs_f64(),
            "totalEntriesReturned": entries,
        }
    })
}

fn success(result_type: &str, result: Json, stats: Json) -> Json {
    json!({
        "status": "success",
        "data": { "resultType": result_type, "result": result, "stats": stats },
    })
}

/// Whether Grafana sent this as a logs-volume query (counted apart, since
/// every Explore search also sends one).
fn is_volume_query(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-query-tags")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|tag| tag.trim().eq_ignore_ascii_case("source=logvolhist"))
        })
}

async fn query_range_route(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    raw: RawQuery,
) -> Response {
    let started = Instant::now();
    let endpoint = if is_volume_query(&headers) {
        "loki_query_range_volume"
    } else {
        "loki_query_range"
    };
    observed(&state, endpoint, async {
        let p = Params::parse(raw.0)?;
        let query = parse_scoped(required(&p, "query")?)?;
        let (start, end) = range_params(&p, 3_600_000_000)?;
        match query {
            Query::Logs(sel) => {
                let limit = limit_param(&p)?;
                let newest = newest_first(&p)?;
                let splits = splits_for(&state.logs, &[&sel], start, end).await?;
                let streams = blocking(move || {
                    Ok(eval::select_lines(
                        &splits, &sel, start, end, limit, newest,
                    )?)
                })
                .await?;
                let (result, n) = streams_json(streams);
                Ok(success("streams", result, stats(started, n)))
            }
            Query::Metric(expr) => {
                let step = match p.get("step") {
                    Some(s) => parse_step(s).ok_or_else(|| {
                        LokiError::bad(format!("invalid parameter \"step\": {s:?}"))
                    })?,
                    // Loki's default: about 250 points, at least a second.
                    None => (end.saturating_sub(start) / 250 / 1_000_000).max(1) * 1_000_000,
                };
                if end.saturating_sub(start) / step > MAX_POINTS {
                    return Err(LokiError::bad(
                        "exceeded maximum resolution of 11,000 points per timeseries. Try \
                         decreasing the query resolution (?step=XX)",
                    ));
                }
                let steps = Steps {
                    start_us: start,
                    end_us: end,
                    step_us: step,
                };
                let value = metric(&state.logs, expr, steps).await?;
                let series = match value {
                    Value::Vector(s) => s,
                    // A scalar over a range is one series without labels.
                    Value::Scalar(v) => vec![Series {
                        labels: Labels::new(),
                        points: steps.times().map(|t| (t, v)).collect(),
                    }],
                };
                let result: Vec<Json> = series
                    .into_iter()
                    .map(|s| {
                        json!({
                            "metric": s.labels,
                            "values": s.points.iter()
                                .map(|(t, v)| json!([seconds(*t), sample(*v)]))
                                .collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                Ok(success("matrix", Json::Array(result), stats(started, 0)))
            }
        }
    })
    .await
}

async fn metric(
    logs: &LogIndex,
    expr: logql::MetricExpr,
    steps: Steps,
) -> Result<Value, LokiError> {
    let ranges = expr.ranges();
    let longest = ranges
        .iter()
        .filter_map(|r| match r {
            logql::MetricExpr::Range { range_us, .. } => Some(*range_us),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let selectors: Vec<&LogSelector> = ranges
        .iter()
        .filter_map(|r| match r {
            logql::MetricExpr::Range { selector, .. } => Some(selector),
            _ => None,
        })
        .collect();
    let splits = if selectors.is_empty() {
        Vec::new()
    } else {
        splits_for(
            logs,
            &selectors,
            steps.start_us.saturating_sub(longest),
            steps.end_us.saturating_add(1),
        )
        .await?
    };
    blocking(move || Ok(eval::eval(&splits, &expr, steps)?)).await
}

/// A metric query's value at `time_us` (an instant query): what the
/// alert evaluator asks of the logs.
pub async fn instant_metric(
    logs: &LogIndex,
    expr: logql::MetricExpr,
    time_us: i64,
) -> Result<Value, LokiError> {
    let steps = Steps {
        start_us: time_us,
        end_us: time_us,
        step_us: 1,
    };
    metric(logs, expr, steps).await
}

async fn query_route(State(state): State<Arc<ApiState>>, raw: RawQuery) -> Response {
    let started = Instant::now();
    observed(&state, "loki_query", async {
        let p = Params::parse(raw.0)?;
        let query = parse_scoped(required(&p, "query")?)?;
        let time = time_param(&p, "time", now_us())?;
        match query {
            Query::Logs(sel) => {
                // The lines before `time` (Loki 2's instant log query).
                let limit = limit_param(&p)?;
                let newest = newest_first(&p)?;
                let start = time.saturating_sub(3_600_000_000);
                let splits = splits_for(&state.logs, &[&sel], start, time).await?;
                let streams = blocking(move || {
                    Ok(eval::select_lines(
                        &splits, &sel, start, time, limit, newest,
                    )?)
                })
                .await?;
                let (result, n) = streams_json(streams);
                Ok(success("streams", result, stats(started, n)))
            }
            Query::Metric(expr) => {
                let steps = Steps {
                    start_us: time,
                    end_us: time,
                    step_us: 1,
                };
                match metric(&state.logs, expr, steps).await? {
                    Value::Scalar(v) => Ok(success(
                        "scalar",
                        json!([seconds(time), sample(v)]),
                        stats(started, 0),
                    )),
                    Value::Vector(series) => {
                        let result: Vec<Json> = series
                            .into_iter()
                            .filter_map(|s| {
                                s.points.last().map(|(t, v)| {
                                    json!({"metric": s.labels, "value": [seconds(*t), sample(*v)]})
                                })
                            })
                            .collect();
                        Ok(success("vector", Json::Array(result), stats(started, 0)))
                    }
                }
            }
        }
    })
    .await
}

/// The selector of an optional `query` parameter (labels, values, volume).
fn optional_selector(p: &Params, name: &str) -> Result<Option<LogSelector>, LokiError> {
    match p.get(name) {
        // A tenant's labels and values come from its own streams only.
        None => Ok(tenant_matcher()?.map(|m| LogSelector {
            matchers: vec![m],
            filters: Vec::new(),
        })),
        Some(q) => match parse_scoped(q)? {
            Query::Logs(sel) => Ok(Some(sel)),
            Query::Metric(_) => Err(LokiError::bad(format!(
                "{name} must be a log selector such as {{namespace=\"shop\"}}, not a metric query"
            ))),
        },
    }
}

/// Labels and values default to the last hour, as Loki's code does (its
/// documentation says six).
const LABELS_SPAN_US: i64 = 3_600_000_000;

async fn labels_route(State(state): State<Arc<ApiState>>, raw: RawQuery) -> Response {
    observed(&state, "loki_labels", async {
        let p = Params::parse(raw.0)?;
        let (start, end) = range_params(&p, LABELS_SPAN_US)?;
        let sel = optional_selector(&p, "query")?;
        let selectors: Vec<&LogSelector> = sel.iter().collect();
        let splits = splits_for(&state.logs, &selectors, start, end).await?;
        let names = blocking(move || match sel {
            None => Ok(eval::label_names(&splits)?),
            Some(sel) => {
                let (streams, _) = eval::totals(&splits, &sel, start, end.saturating_add(1))?;
                Ok(streams
                    .into_iter()
                    .flat_map(|s| s.labels.into_keys())
                    .collect())
            }
        })
        .await?;
        Ok(json!({"status": "success", "data": names}))
    })
    .await
}

async fn label_values_route(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    raw: RawQuery,
) -> Response {
    observed(&state, "loki_label_values", async {
        let p = Params::parse(raw.0)?;
        let (start, end) = range_params(&p, LABELS_SPAN_US)?;
        let sel = optional_selector(&p, "query")?;
        let selectors: Vec<&LogSelector> = sel.iter().collect();
        let splits = splits_for(&state.logs, &selectors, start, end).await?;
        let values = blocking(move || match sel {
            None => Ok(eval::label_values(&splits, &name)?),
            Some(sel) => {
                let (streams, _) = eval::totals(&splits, &sel, start, end.saturating_add(1))?;
                Ok(streams
                    .into_iter()
                    .filter_map(|mut s| s.labels.remove(&name))
                    .collect())
            }
        })
        .await?;
        Ok(json!({"status": "success", "data": values}))
    })
    .await
}

async fn series_route(State(state): State<Arc<ApiState>>, raw: RawQuery) -> Response {
    observed(&state, "loki_series", async {
        let p = Params::parse(raw.0)?;
        let (start, end) = range_params(&p, 3_600_000_000)?;
        let mut selectors = Vec::new();
        for m in p.all("match[]").into_iter().chain(p.all("match")) {
            match parse_scoped(m)? {
                Query::Logs(sel) => selectors.push(sel),
                Query::Metric(_) => {
                    return Err(LokiError::bad(format!(
                        "match[] must be a stream selector, got {m:?}"
                    )));
                }
            }
        }
        if selectors.is_empty() {
            return Err(LokiError::bad("missing parameter \"match[]\""));
        }
        let refs: Vec<&LogSelector> = selectors.iter().collect();
        let splits = splits_for(&state.logs, &refs, start, end).await?;
        let series = blocking(move || {
            let mut all = std::collections::BTreeSet::new();
            for sel in &selectors {
                let (streams, _) = eval::totals(&splits, sel, start, end.saturating_add(1))?;
                all.extend(streams.into_iter().map(|s| s.labels));
            }
            Ok(all)
        })
        .await?;
        Ok(json!({"status": "success", "data": series}))
    })
    .await
}

async fn stats_route(State(state): State<Arc<ApiState>>, raw: RawQuery) -> Response {
    observed(&state, "loki_index_stats", async {
        let p = Params::parse(raw.0)?;
        let (start, end) = range_params(&p, 3_600_000_000)?;
        let sel = optional_selector(&p, "query")?
            .ok_or_else(|| LokiError::bad("missing parameter \"query\""))?;
        let splits = splits_for(&state.logs, &[&sel], start, end).await?;
        let (streams, chunks) =
            blocking(move || Ok(eval::totals(&splits, &sel, start, end.saturating_add(1))?))
                .await?;
        Ok(json!({
            "streams": streams.len(),
            "chunks": chunks,
            "entries": streams.iter().map(|s| s.lines).sum::<u64>(),
            "bytes": streams.iter().map(|s| s.bytes).sum::<u64>(),
        }))
    })
    .await
}

async fn volume_route(State(state): State<Arc<ApiState>>, raw: RawQuery) -> Response {
    observed(&state, "loki_index_volume", async {
        let p = Params::parse(raw.0)?;
        let (start, end) = range_params(&p, 3_600_000_000)?;
        let sel = optional_selector(&p, "query")?
            .ok_or_else(|| LokiError::bad("missing parameter \"query\""))?;
        let limit = match p.get("limit") {
            None => 100,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| LokiError::bad(format!("invalid parameter \"limit\": {v:?}")))?,
        };
        let targets: Vec<String> = p
            .get("targetLabels")
            .map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let by_series = match p.get("aggregateBy") {
            None | Some("series") => true,
            Some("labels") => false,
            Some(other) => {
                return Err(LokiError::bad(format!(
                    "invalid parameter \"aggregateBy\": {other:?} (series or labels)"
                )));
            }
        };
        // Grouped by the target labels, else by the labels the selector names.
        // (not by the matcher a tenant's selectors get, which the caller
        // did not write)
        let added = tenant_matcher()?;
        let keys: Vec<String> = if targets.is_empty() {
            sel.matchers
                .iter()
                .filter(|m| {
                    !added
                        .as_ref()
                        .is_some_and(|t| t.label == m.label && t.value == m.value && t.op == m.op)
                })
                .map(|m| m.label.clone())
                .collect()
        } else {
            targets
        };
        let splits = splits_for(&state.logs, &[&sel], start, end).await?;
        let (streams, _) =
            blocking(move || Ok(eval::totals(&splits, &sel, start, end.saturating_add(1))?))
                .await?;
        let mut volumes: BTreeMap<Labels, u64> = BTreeMap::new();
        for s in streams {
            if by_series {
                let key: Labels = s
                    .labels
                    .into_iter()
                    .filter(|(k, _)| keys.contains(k))
                    .collect();
                *volumes.entry(key).or_default() += s.bytes;
            } else {
                // One entry per target label (name only), summed.
                for k in &keys {
                    if s.labels.contains_key(k) {
                        let key: Labels = [(k.clone(), String::new())].into_iter().collect();
                        *volumes.entry(key).or_default() += s.bytes;
                    }
                }
            }
        }
        let mut sorted: Vec<(Labels, u64)> = volumes.into_iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        sorted.truncate(limit);
        let result: Vec<Json> = sorted
            .into_iter()
            .map(|(labels, bytes)| {
                json!({"metric": labels, "value": [seconds(end), bytes.to_string()]})
            })
            .collect();
        Ok(json!({
            "status": "success",
            "data": {"resultType": "vector", "result": result},
        }))
    })
    .await
}

async fn buildinfo_route() -> Response {
    axum::Json(json!({
        "version": LOKI_API_VERSION,
        "revision": format!("sluice-{}", env!("CARGO_PKG_VERSION")),
        "branch": "sluice",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loki_time_formats() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000_000));
        assert_eq!(
            parse_time("1700000000123456789"),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000_500_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_step("60"), Some(60_000_000));
        assert_eq!(parse_step("1m"), Some(60_000_000));
        assert_eq!(parse_step("0"), None);
        assert_eq!(parse_step("0.0000001"), None);
        assert_eq!(parse_step("-1"), None);
        assert_eq!(sample(2.0), "2");
        assert_eq!(sample(0.25), "0.25");
        assert_eq!(sample(f64::INFINITY), "+Inf");
    }
}
