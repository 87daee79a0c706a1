//! The HTTP API of `sluice serve`: SQL, attribution, guardrails and service
//! health, behind bearer tokens with roles when tokens are configured.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::access::{AccessControl, Caller, authorize};
use crate::attribution::{
    AttributionParams, AttributionQuery, SeriesParams, SeriesQuery, attribution, series,
};
use crate::config::Role;
use crate::encode;
use crate::error::QueryError;
use crate::guardrails::{self, PeaksParams, SimulateRequest};
use crate::isolation::ANONYMOUS;
use crate::service_health::{HealthParams, service_health};

/// The OpenAPI 3 description of every route.
pub const OPENAPI: &str = include_str!("openapi.json");

use sluice_warehouse::maintain::snapshot::RETAINED_FROM_TABLE_PROPERTY;

pub use crate::state::ApiState;

/// Runs the request's handler as one query on the query executor: admitted
/// (429 past the queue), on the query threads, within the time limit (408),
/// cancelled when the client goes away. See [`crate::isolation`].
async fn isolate(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let (caller, tenant) = request.extensions().get::<Caller>().map_or_else(
        || (ANONYMOUS.to_string(), None),
        |c| (c.key.clone(), c.tenant.clone()),
    );
    let path = request.uri().path().to_string();
    let loki = path.starts_with("/loki/");
    let started = Instant::now();
    let outcome = state
        .engine
        .executor()
        .run_as(&caller, tenant, async move { Ok(next.run(request).await) })
        .await;
    match outcome {
        Ok(response) => response,
        Err(e) => {
            // Stopped outside the handler (timeout, queue, shutdown): counted
            // as the handler counts its own failures.
            state.engine.metrics().observe(
                endpoint_of(&path),
                started.elapsed().as_secs_f64(),
                Some(e.kind()),
            );
            tracing::debug!(error = %e, "query stopped");
            if loki {
                crate::loki::LokiError::from(e).into_response()
            } else {
                e.into_response()
            }
        }
    }
}

/// The `endpoint` label of a route (bounded: path parameters left out),
/// as the handlers name themselves.
fn endpoint_of(path: &str) -> &'static str {
    match path {
        "/v1/sql" => "sql",
        "/v1/attribution" => "attribution",
        "/v1/attribution/series" => "attribution_series",
        "/v1/guardrails/peaks" => "guardrails_peaks",
        "/v1/guardrails/simulate" => "guardrails_simulate",
        "/v1/guardrails/export" => "guardrails_export",
        "/v1/logs/search" => "logs_search",
        "/v1/logs/restarts" => "logs_restarts",
        "/loki/api/v1/query" => "loki_query",
        "/loki/api/v1/query_range" => "loki_query_range",
        "/loki/api/v1/labels" | "/loki/api/v1/label" => "loki_labels",
        "/loki/api/v1/series" => "loki_series",
        "/loki/api/v1/index/stats" => "loki_index_stats",
        "/loki/api/v1/index/volume" => "loki_index_volume",
        p if p.starts_with("/v1/services/") => "service_health",
        p if p.starts_with("/loki/api/v1/label/") => "loki_label_values",
        _ => "other",
    }
}

/// The `/v1/…` routes, and `/openapi.json` and the console (open to all).
/// `extra`: routes of other parts of the service (the alert APIs) served
/// behind the same tokens.
pub fn router(state: Arc<ApiState>, access: Arc<AccessControl>, extra: Router) -> Router {
    let api = Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/attribution", get(attribution_route))
        .route("/v1/attribution/series", get(series_route))
        .route("/v1/guardrails/peaks", get(peaks_route))
        .route("/v1/guardrails/simulate", post(simulate_route))
        .route("/v1/guardrails/export", get(export_route))
        .route("/v1/services/{namespace}/{name}/health", get(health_route))
        .route("/v1/logs/search", get(log_search_route))
        .route("/v1/logs/restarts", get(restarts_route))
        .route("/v1/tables", get(tables_route))
        .merge(crate::loki::routes())
        .method_not_allowed_fallback(wrong_method)
        .with_state(state.clone())
        .merge(extra)
        .layer(middleware::from_fn_with_state(state.clone(), isolate));
    // Tails stay open for hours: outside the executor (its time limit and
    // slots), behind the same tokens; their backfill runs inside it.
    let tails = Router::new()
        .route("/v1/logs/tail", get(crate::live::routes::tail_route))
        .route("/loki/api/v1/tail", get(crate::loki::tail::tail_route))
        .with_state(state);
    let api = api
        .merge(tails)
        .layer(middleware::from_fn_with_state(access, authorize));
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/ready", get(crate::loki::ready))
        .merge(crate::console::routes())
        .merge(api)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Runs a handler body, recording its latency and outcome.
async fn observed<F>(state: &ApiState, endpoint: &str, body: F) -> Response
where
    F: Future<Output = Result<Response, QueryError>>,
{
    let started = Instant::now();
    let result = body.await;
    let seconds = started.elapsed().as_secs_f64();
    let metrics = state.engine.metrics();
    match result {
        Ok(response) => {
            metrics.observe(endpoint, seconds, None);
            response
        }
        Err(e) => {
            metrics.observe(endpoint, seconds, Some(e.kind()));
            if e.status().is_server_error() {
                tracing::error!(endpoint, error = %e, "query failed");
            } else {
                tracing::debug!(endpoint, error = %e, "request refused");
            }
            e.into_response()
        }
    }
}

fn query_params<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, QueryError> {
    q.map(|Query(t)| t)
        .map_err(|e| QueryError::BadRequest(e.body_text()))
}

fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, QueryError> {
    serde_json::from_slice(body).map_err(|e| {
        QueryError::BadRequest(format!(
            "the request body is not valid JSON for this call: {e}"
        ))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlParams {
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Csv,
    Arrow,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// `?format=` wins over `Accept`; JSON by default.
fn encoding(format: Option<&str>, headers: &HeaderMap) -> Result<Encoding, QueryError> {
    match format.map(str::trim) {
        Some("json") => return Ok(Encoding::Json),
        Some("csv") => return Ok(Encoding::Csv),
        Some("arrow") => return Ok(Encoding::Arrow),
        Some(other) => {
            return Err(QueryError::BadRequest(format!(
                "format={other:?}: expected json, csv or arrow"
            )));
        }
        None => {}
    }
    // The first listed type sluice can produce, by preference (q) then order.
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut offered: Vec<(f32, usize, Encoding)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, item)| {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next()?.to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let encoding = match media.as_str() {
                ARROW_STREAM => Encoding::Arrow,
                "text/csv" => Encoding::Csv,
                "application/json" | "*/*" | "application/*" => Encoding::Json,
                _ => return None,
            };
            (q > 0.0).then_some((q, i, encoding))
        })
        .collect();
    offered.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(offered.first().map_or(Encoding::Json, |o| o.2))
}

async fn sql(
    State(state): State<Arc<ApiState>>,
    caller: Option<Extension<Caller>>,
    params: Result<Query<SqlParams>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let role = caller.map(|Extension(c)| c.role);
    observed(&state, "sql", async {
        let params = query_params(params)?;
        let encoding = encoding(params.format.as_deref(), &headers)?;
        let request: SqlRequest = json_body(&body)?;
        if request.sql.trim().is_empty() {
            return Err(QueryError::BadRequest("sql is empty".to_string()));
        }
        let out = state.engine.sql_as(&request.sql, Vec::new(), role).await?;
        Ok(match encoding {
            Encoding::Json => Json(json!({
                "columns": encode::columns(&out.schema),
                "rows": encode::json_rows(&out.batches)?,
                "row_count": out.rows,
                "rows_scanned": out.rows_scanned,
                "elapsed_ms": out.elapsed.as_secs_f64() * 1000.0,
            }))
            .into_response(),
            Encoding::Csv => (
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
                encode::csv(&out.schema, &out.batches)?,
            )
                .into_response(),
            Encoding::Arrow => (
                [(header::CONTENT_TYPE, ARROW_STREAM)],
                encode::arrow_ipc(&out.schema, &out.batches)?,
            )
                .into_response(),
        })
    })
    .await
}

async fn attribution_route(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<AttributionParams>, QueryRejection>,
) -> Response {
    observed(&state, "attribution", async {
        let q = AttributionQuery::from_params(&query_params(params)?, Utc::now())?;
        Ok(Json(attribution(&state.engine, &q).await?).into_response())
    })
    .await
}

async fn series_route(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<SeriesParams>, QueryRejection>,
) -> Response {
    observed(&state, "attribution_series", async {
        let q = SeriesQuery::from_params(&query_params(params)?, Utc::now())?;
        Ok(Json(series(&state.engine, &q).await?).into_response())
    })
    .await
}

async fn peaks_route(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<PeaksParams>, QueryRejection>,
) -> Response {
    observed(&state, "guardrails_peaks", async {
        let report = query_params(params)?
            .peaks(&state.engine, &state.guardrails, Utc::now())
            .await?;
        Ok(Json(report).into_response())
    })
    .await
}

async fn simulate_route(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    observed(&state, "guardrails_simulate", async {
        let request: SimulateRequest = json_body(&body)?;
        let report = guardrails::simulate(&state.engine, &request, Utc::now()).await?;
        Ok(Json(report).into_response())
    })
    .await
}

async fn export_route(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<PeaksParams>, QueryRejection>,
) -> Response {
    observed(&state, "guardrails_export", async {
        let yaml = query_params(params)?
            .export(&state.engine, &state.guardrails, Utc::now())
            .await?;
        let mut response = Response::new(Body::from(yaml));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        );
        Ok(response)
    })
    .await
}

async fn log_search_route(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<crate::logsearch::SearchParams>, QueryRejection>,
) -> Response {
    observed(&state, "logs_search", async {
        let request = query_params(params)?.request(Utc::now())?;
        Ok(Json(state.logs.search(request).await?).into_response())
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartsParams {
    namespace: Option<String>,
    pod: Option<String>,
}

async fn restarts_route(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<RestartsParams>, QueryRejection>,
) -> Response {
    observed(&state, "logs_restarts", async {
        let p = query_params(params)?;
        let report = crate::logsearch::restarts::restarts(
            &state.engine,
            p.namespace.as_deref().unwrap_or(""),
            p.pod.as_deref().unwrap_or(""),
        )
        .await?;
        Ok(Json(report).into_response())
    })
    .await
}

/// The tables the caller's role reads: where they stand and from when they
/// keep rows (set by retention; `null` until it first ran).
async fn tables_route(
    State(state): State<Arc<ApiState>>,
    caller: Option<Extension<Caller>>,
) -> Response {
    let role = caller.as_ref().map(|Extension(c)| c.role);
    let tenant = caller.and_then(|Extension(c)| c.tenant);
    observed(&state, "tables", async {
        let mut tables = Vec::new();
        for contract in sluice_schema::tables::ALL_TABLES {
            if let Some(allowed) = role.and_then(Role::tables)
                && !allowed.contains(&contract.name)
            {
                continue;
            }
            if tenant.as_ref().is_some_and(|t| !t.sees_table(contract.name)) {
                continue;
            }
            let table = state
                .engine
                .catalog()
                .load_table(&contract.ident())
                .await
                .map_err(|e| QueryError::Catalog(e.to_string()))?;
            let meta = table.metadata();
            let current = meta.current_snapshot();
            let summary = |key: &str| {
                current
                    .and_then(|s| s.summary().additional_properties.get(key))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            // The table's totals are every tenant's: a tenant gets the
            // table and its retention only.
            if tenant.is_some() {
                tables.push(json!({
                    "name": contract.name,
                    "retained_from": meta.properties().get(RETAINED_FROM_TABLE_PROPERTY),
                }));
                continue;
            }
            tables.push(json!({
                "name": contract.name,
                "retained_from": meta.properties().get(RETAINED_FROM_TABLE_PROPERTY),
                "snapshot_id": current.map(|s| s.snapshot_id()),
                "last_commit": current.and_then(|s| chrono::DateTime::from_timestamp_millis(s.timestamp_ms())).map(|t| t.to_rfc3339()),
                "rows": summary("total-records"),
                "data_files": summary("total-data-files"),
            }));
        }
        Ok(Json(json!({ "tables": tables })).into_response())
    })
    .await
}

async fn health_route(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    params: Result<Query<HealthParams>, QueryRejection>,
) -> Response {
    observed(&state, "service_health", async {
        let params = query_params(params)?;
        let health = service_health(&state.engine, &namespace, &name, &params, Utc::now()).await?;
        Ok(Json(health).into_response())
    })
    .await
}

/// For unknown routes: the API's error shape, not an empty 404.
pub async fn not_found(request: Request) -> Response {
    QueryError::NotFound(format!(
        "no route {} {}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

/// For a known route called with the wrong method.
pub async fn wrong_method(request: Request) -> Response {
    let mut response = QueryError::BadRequest(format!(
        "{} is not a method of {}",
        request.method(),
        request.uri().path()
    ))
    .into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Encoding {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        encoding(None, &h).unwrap()
    }

    #[test]
    fn content_negotiation() {
        assert_eq!(accept("text/csv"), Encoding::Csv);
        assert_eq!(accept("application/json, text/csv;q=0.1"), Encoding::Json);
        assert_eq!(
            accept("text/html, application/vnd.apache.arrow.stream"),
            Encoding::Arrow
        );
        assert_eq!(
            accept("text/csv;q=0.5, application/vnd.apache.arrow.stream;q=0.9"),
            Encoding::Arrow
        );
        assert_eq!(accept("text/html"), Encoding::Json);
        assert_eq!(
            encoding(Some("csv"), &HeaderMap::new()).unwrap(),
            Encoding::Csv
        );
        assert!(encoding(Some("xml"), &HeaderMap::new()).is_err());
    }
}
