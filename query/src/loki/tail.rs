//! `GET /loki/api/v1/tail`: Loki's live tail, a WebSocket of
//! `{"streams": [...], "dropped_entries": [...]}` messages (what Grafana
//! Explore's live mode and `logcli --tail` read), with `query`, `limit`
//! (lines from before, default 100), `start` (default an hour ago) and
//! `delay_for` (0–5 s). A restart or a container's end is one more stream,
//! labelled `sluice_notice`, so Grafana shows it between the lines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};

use super::{LokiError, Params, limit_param, parse_scoped, splits_for, time_param};
use crate::access::Caller;
use crate::error::QueryError;
use crate::live::filter::{LiveFilter, Selection};
use crate::live::routes::{HEARTBEAT, WARM_WAIT, caller_of};
use crate::live::session::{Start, Tail, TailEvent};
use crate::logsearch::search::LogLine;
use crate::loki::eval;
use crate::loki::logql::Query;
use crate::state::ApiState;

/// Loki refuses a longer `delay_for`.
const MAX_DELAY_SECS: u64 = 5;

pub async fn tail_route(
    State(state): State<Arc<ApiState>>,
    caller: Option<Extension<Caller>>,
    raw: RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let caller = caller.map(|Extension(c)| c);
    match open(state, caller, raw).await {
        Ok((tail, delay)) => ws
            .max_message_size(64 << 10)
            .on_upgrade(move |socket| serve(socket, tail, delay)),
        Err(e) => e.into_response(),
    }
}

async fn open(
    state: Arc<ApiState>,
    caller: Option<Caller>,
    raw: RawQuery,
) -> Result<(Tail, Duration), LokiError> {
    let p = Params::parse(raw.0)?;
    let text = p
        .get("query")
        .ok_or_else(|| LokiError::bad("missing parameter \"query\""))?
        .to_string();
    let limit = limit_param(&p)?;
    let now = chrono::Utc::now().timestamp_micros();
    let start_us = time_param(&p, "start", now - 3_600_000_000)?;
    let delay = match p.get("delay_for") {
        None => 0,
        Some(d) => d
            .parse::<u64>()
            .ok()
            .filter(|d| *d <= MAX_DELAY_SECS)
            .ok_or_else(|| {
                LokiError::bad(format!(
                    "delay_for can't be greater than {MAX_DELAY_SECS}: got {d:?}"
                ))
            })?,
    };
    let (key, tenant) = caller_of(caller.as_ref());
    // Parsed inside the caller's scope: a tenant's selector gets its
    // namespace matcher.
    let executor = state.engine.executor();
    let sel = executor
        .run_as(&key, tenant.clone(), async move {
            match parse_scoped(&text) {
                Ok(Query::Logs(sel)) => Ok(Ok(sel)),
                Ok(Query::Metric(_)) => Ok(Err(LokiError::bad(
                    "a tail needs a log query (a stream selector and line filters), not a metric query",
                ))),
                Err(e) => Ok(Err(e)),
            }
        })
        .await??;
    let hub = state.live.clone();
    let permit = hub
        .admit(&key, tenant.as_ref().map(|t| t.name.as_str()))
        .map_err(|m| LokiError::from(QueryError::Busy(m)))?;
    if !hub.wait_warm(WARM_WAIT).await {
        return Err(QueryError::Unavailable(
            "the live stream has not caught up with Kafka yet; retry".into(),
        )
        .into());
    }
    let start = Start::now(&hub);
    let logs = state.logs.clone();
    let backfill_sel = sel.clone();
    let streams = executor
        .run_as(&key, tenant.clone(), async move {
            let splits = splits_for(&logs, &[&backfill_sel], start_us, now + 60_000_000)
                .await
                .map_err(|e| QueryError::Internal(e.message().to_string()))?;
            crate::isolation::blocking(move || {
                eval::select_lines(&splits, &backfill_sel, start_us, i64::MAX, limit, true)
                    .map_err(|e| QueryError::Internal(e.to_string()))
            })
            .await?
        })
        .await?;
    let filter = LiveFilter {
        selection: Selection::LogQl(sel),
        tenant,
        from_us: start_us,
    };
    let backfill = streams.into_iter().flat_map(lines_of).collect();
    Ok((
        Tail::open(hub, permit, filter, start, backfill, limit).await,
        Duration::from_secs(delay),
    ))
}

/// A stream's entries as lines (labels back into fields).
fn lines_of(s: eval::Stream) -> Vec<LogLine> {
    let label = |k: &str| s.labels.get(k).cloned();
    let base = LogLine {
        ts: 0,
        namespace: label("namespace").unwrap_or_default(),
        pod: label("pod").unwrap_or_default(),
        pod_uid: String::new(),
        container: label("container").unwrap_or_default(),
        restart: label("restart").and_then(|r| r.parse().ok()).unwrap_or(0),
        stream: label("stream").unwrap_or_default(),
        level: label("level"),
        node: label("node"),
        message: String::new(),
        line_id: String::new(),
        byte_offset: None,
    };
    s.entries
        .into_iter()
        .zip(s.line_ids)
        .map(|((ns, message), line_id)| LogLine {
            ts: ns / 1000,
            message,
            line_id,
            ..base.clone()
        })
        .collect()
}

fn labels(l: &LogLine) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("namespace", l.namespace.clone());
    m.insert("pod", l.pod.clone());
    m.insert("container", l.container.clone());
    m.insert("restart", l.restart.to_string());
    m.insert("stream", l.stream.clone());
    if let Some(v) = &l.level {
        m.insert("level", v.clone());
    }
    if let Some(v) = &l.node {
        m.insert("node", v.clone());
    }
    m
}

fn notice(
    namespace: &str,
    pod: &str,
    container: &str,
    restart: Option<i64>,
    kind: &str,
    text: String,
    ts_us: i64,
) -> Json {
    let mut stream = json!({
        "namespace": namespace, "pod": pod, "container": container, "sluice_notice": kind,
    });
    if let Some(r) = restart {
        stream["restart"] = json!(r.to_string());
    }
    json!({ "stream": stream, "values": [[(ts_us.saturating_mul(1000)).to_string(), text]] })
}

/// How an instance ended: `OOMKilled, exit code 137`.
pub fn ending(t: &crate::live::hub::Termination) -> String {
    match t.exit_code {
        Some(code) => format!("{}, exit code {code}", t.reason),
        None => t.reason.clone(),
    }
}

fn ended_text(t: &crate::live::hub::Termination) -> String {
    match t.restart {
        Some(r) => format!(
            "container {} of pod {} (restart {r}) ended: {}",
            t.container,
            t.pod,
            ending(t)
        ),
        None => format!(
            "container {} of pod {} ended: {}",
            t.container,
            t.pod,
            ending(t)
        ),
    }
}

/// One batch as Loki's tail message.
pub fn message(events: &[TailEvent]) -> Json {
    let now = chrono::Utc::now().timestamp_micros();
    let mut streams: Vec<Json> = Vec::new();
    let mut dropped: Vec<Json> = Vec::new();
    for e in events {
        match e {
            TailEvent::Lines { lines, .. } => {
                // Consecutive lines of one stream share an entry list.
                let mut current: Option<(BTreeMap<&str, String>, Vec<Json>)> = None;
                for l in lines {
                    let ls = labels(l);
                    let v = json!([(l.ts.saturating_mul(1000)).to_string(), l.message]);
                    match &mut current {
                        Some((cur, values)) if *cur == ls => values.push(v),
                        _ => {
                            if let Some((cur, values)) = current.take() {
                                streams.push(json!({"stream": cur, "values": values}));
                            }
                            current = Some((ls, vec![v]));
                        }
                    }
                }
                if let Some((cur, values)) = current {
                    streams.push(json!({"stream": cur, "values": values}));
                }
            }
            TailEvent::Restart {
                namespace,
                pod,
                container,
                restart,
                previous,
            } => {
                let mut text =
                    format!("container {container} of pod {pod} restarted: now restart {restart}");
                if let Some(p) = previous {
                    text.push_str(&format!("; the previous instance ended: {}", ending(p)));
                }
                streams.push(notice(
                    namespace,
                    pod,
                    container,
                    Some(*restart),
                    "restart",
                    text,
                    now,
                ));
            }
            TailEvent::Ended(t) => {
                let at = chrono::DateTime::parse_from_rfc3339(&t.at)
                    .map_or(now, |d| d.timestamp_micros());
                streams.push(notice(
                    &t.namespace,
                    &t.pod,
                    &t.container,
                    t.restart,
                    "ended",
                    ended_text(t),
                    at,
                ));
            }
            TailEvent::Dropped { entries, .. } => {
                for d in entries {
                    let mut labels = json!({
                        "namespace": d.namespace, "pod": d.pod, "container": d.container,
                        "restart": d.restart.to_string(), "stream": d.stream,
                    });
                    if let Some(v) = &d.level {
                        labels["level"] = json!(v);
                    }
                    if let Some(v) = &d.node {
                        labels["node"] = json!(v);
                    }
                    dropped.push(json!({
                        "labels": labels,
                        "timestamp": (d.ts.saturating_mul(1000)).to_string(),
                    }));
                }
            }
            TailEvent::Behind { skipped_messages } => {
                streams.push(json!({
                    "stream": {"sluice_notice": "behind"},
                    "values": [[(now * 1000).to_string(), format!("the tail fell behind the live stream: {skipped_messages} messages were skipped")]],
                }));
            }
            TailEvent::Closed { .. } => {}
        }
    }
    json!({
        "streams": streams,
        "dropped_entries": if dropped.is_empty() { Json::Null } else { Json::Array(dropped) },
    })
}

async fn serve(socket: WebSocket, tail: Tail, delay: Duration) {
    let (mut tx, mut rx) = socket.split();
    let write_timeout = tail.write_timeout();
    loop {
        let batch = tokio::select! {
            b = tail.next() => b,
            incoming = rx.next() => match incoming {
                // The client closed, or the connection broke.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            },
            _ = tokio::time::sleep(HEARTBEAT) => {
                match tokio::time::timeout(write_timeout, tx.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tail.end("slow");
                        return;
                    }
                }
            }
        };
        let Some(batch) = batch else {
            let _ = tx.send(Message::Close(None)).await;
            return;
        };
        if let Some(TailEvent::Closed { reason }) = batch.events.last() {
            let body = message(&batch.events[..batch.events.len() - 1]);
            let _ = tokio::time::timeout(
                write_timeout,
                tx.send(Message::Text(body.to_string().into())),
            )
            .await;
            let frame = axum::extract::ws::CloseFrame {
                code: 1008,
                reason: reason.chars().take(120).collect::<String>().into(),
            };
            let _ = tokio::time::timeout(write_timeout, tx.send(Message::Close(Some(frame)))).await;
            return;
        }
        let body = message(&batch.events);
        match tokio::time::timeout(
            write_timeout,
            tx.send(Message::Text(body.to_string().into())),
        )
        .await
        {
            Ok(Ok(())) => tail.written(&batch),
            Ok(Err(_)) => return,
            Err(_) => {
                tail.end("slow");
                return;
            }
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}
