//! `GET /v1/logs/tail`: the live tail as newline-delimited JSON events
//! (`lines`, `restart`, `ended`, `dropped`, `behind`, `closed`, and a
//! `heartbeat` after 15 s of silence), for `sluice logs tail -f` and the
//! console. It runs outside the query executor (a tail is open for hours);
//! only its backfill search runs inside, under the usual limits.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use tokio::sync::mpsc;

use super::filter::{Exact, LiveFilter, Selection};
use super::session::{Start, Tail, TailEvent};
use crate::access::Caller;
use crate::error::QueryError;
use crate::isolation::ANONYMOUS;
use crate::logsearch::search::SortOrder;
use crate::logsearch::{MAX_LIMIT, SearchParams, query_lang};
use crate::state::ApiState;

/// Silence after which a heartbeat is written (it also finds clients that
/// went away).
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long a tail waits for a Kafka-fed stream to catch up.
pub const WARM_WAIT: Duration = Duration::from_secs(15);

/// The parameters of `GET /v1/logs/tail`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailParams {
    pub q: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub restart: Option<String>,
    pub stream: Option<String>,
    pub level: Option<String>,
    pub node: Option<String>,
    /// Lines from before the tail opened (default 50).
    pub lines: Option<String>,
    /// Only lines from this time on (RFC 3339 or a span back from now).
    pub from: Option<String>,
}

/// Who is calling, for the tail limits and the tenant's view.
pub fn caller_of(caller: Option<&Caller>) -> (String, Option<Arc<crate::tenancy::TenantView>>) {
    caller.map_or_else(
        || (ANONYMOUS.to_string(), None),
        |c| (c.key.clone(), c.tenant.clone()),
    )
}

pub async fn tail_route(
    State(state): State<Arc<ApiState>>,
    caller: Option<Extension<Caller>>,
    params: Result<Query<TailParams>, QueryRejection>,
) -> Response {
    match open(state, caller.map(|Extension(c)| c), params).await {
        Ok(tail) => stream(tail),
        Err(e) => {
            tracing::debug!(error = %e, "tail refused");
            e.into_response()
        }
    }
}

async fn open(
    state: Arc<ApiState>,
    caller: Option<Caller>,
    params: Result<Query<TailParams>, QueryRejection>,
) -> Result<Tail, QueryError> {
    let Query(p) = params.map_err(|e| QueryError::BadRequest(e.body_text()))?;
    let lines = crate::params::parse_limit(p.lines.as_deref(), 50, MAX_LIMIT).or_else(|e| {
        if p.lines.as_deref() == Some("0") {
            Ok(0)
        } else {
            Err(e)
        }
    })?;
    // The search API's own checks of q, restart, from.
    let search = SearchParams {
        q: p.q.clone(),
        namespace: p.namespace.clone(),
        pod: p.pod.clone(),
        container: p.container.clone(),
        restart: p.restart.clone(),
        stream: p.stream.clone(),
        level: p.level.clone(),
        node: p.node.clone(),
        from: p.from.clone(),
        limit: Some(lines.max(1).to_string()),
        ..Default::default()
    };
    let mut request = search.request(Utc::now())?;
    request.order = SortOrder::Desc;
    let q = query_lang::parse(p.q.as_deref().unwrap_or(""))
        .map_err(|e| QueryError::BadRequest(format!("q: {e}")))?;
    let f = &request.filters;
    let (key, tenant) = caller_of(caller.as_ref());
    let filter = LiveFilter {
        selection: Selection::Search {
            exact: Box::new(Exact {
                namespace: f.namespace.clone(),
                pod: f.pod.clone(),
                container: f.container.clone(),
                restart: f.restart,
                stream: f.stream.clone(),
                level: f.level.clone(),
                node: f.node.clone(),
            }),
            q: Box::new(sluice_logindex::line_match::LineMatcher::new(q)),
        },
        tenant: tenant.clone(),
        from_us: f.from.unwrap_or(i64::MIN),
    };
    let hub = state.live.clone();
    let permit = hub
        .admit(&key, tenant.as_ref().map(|t| t.name.as_str()))
        .map_err(QueryError::Busy)?;
    if !hub.wait_warm(WARM_WAIT).await {
        return Err(QueryError::Unavailable(
            "the live stream has not caught up with Kafka yet; retry".into(),
        ));
    }
    let start = Start::now(&hub);
    let logs = state.logs.clone();
    let backfill = if lines == 0 {
        Vec::new()
    } else {
        state
            .engine
            .executor()
            .run_as(&key, tenant, async move { logs.search(request).await })
            .await?
            .hits
            .into_iter()
            .map(|h| h.line)
            .collect()
    };
    Ok(Tail::open(hub, permit, filter, start, backfill, lines).await)
}

/// The tail's events as NDJSON, written by a task of its own so a client
/// that stops reading is cut off (and its slot freed) after
/// `[tail] write_timeout_secs`.
fn stream(tail: Tail) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let write_timeout = tail.write_timeout();
        loop {
            let batch = tokio::select! {
                b = tail.next() => b,
                _ = tokio::time::sleep(HEARTBEAT) => {
                    match tx.send_timeout(Ok(Bytes::from_static(b"{\"type\":\"heartbeat\"}\n")), write_timeout).await {
                        Ok(()) => continue,
                        Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                            tail.end("slow");
                            return;
                        }
                        Err(_) => return,
                    }
                }
            };
            let Some(batch) = batch else { return };
            let mut out = Vec::new();
            for e in &batch.events {
                if serde_json::to_writer(&mut out, e).is_ok() {
                    out.push(b'\n');
                }
            }
            let closing = batch
                .events
                .iter()
                .any(|e| matches!(e, TailEvent::Closed { .. }));
            match tx.send_timeout(Ok(Bytes::from(out)), write_timeout).await {
                Ok(()) => tail.written(&batch),
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                    tail.end("slow");
                    return;
                }
                // The client went away.
                Err(_) => return,
            }
            if closing {
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream_of(rx));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn tokio_stream_of<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}
