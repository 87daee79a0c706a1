//! `POST /v1/events`: platform events over HTTP, for gateways that do not
//! speak Kafka.
//!
//! The body is one JSON object, a JSON array of objects, or NDJSON, plain or
//! `Content-Encoding: gzip`. Every record is validated against the raw event
//! contract; the valid ones are produced to the events topic (keyed by
//! principal, so one principal's events stay in order) and the answer — 202
//! with the rejected records by index — comes only once the broker has
//! acknowledged them (or, under `sluice up` without Kafka, once they are
//! fsync'd to the write-ahead log). Nothing is accepted that is not durable.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flate2::read::MultiGzDecoder;
use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use sluice_schema::raw::RawEvent;

use super::metrics::CollectorMetrics;

#[derive(Debug, Clone)]
pub struct IntakeSettings {
    pub topic: String,
    /// Largest request body, compressed or not, and largest decoded body.
    pub max_body_bytes: usize,
    /// Bearer tokens accepted; empty = no authentication.
    pub tokens: Vec<String>,
}

/// Where accepted records go.
pub enum Outlet {
    Kafka(FutureProducer),
    /// `sluice up`: the in-process writer reads them from this log.
    Wal(Arc<crate::embedded::wal::Wal>),
}

pub struct Intake {
    outlet: Outlet,
    settings: IntakeSettings,
    metrics: CollectorMetrics,
}

impl Intake {
    pub fn new(outlet: Outlet, settings: IntakeSettings, metrics: CollectorMetrics) -> Self {
        Self {
            outlet,
            settings,
            metrics,
        }
    }

    pub fn routes(self: Arc<Self>) -> Router {
        let limit = self.settings.max_body_bytes;
        Router::new()
            .route("/v1/events", post(post_events))
            .layer(DefaultBodyLimit::max(limit))
            .with_state(self)
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// One record of the body: where it came from and its bytes.
struct Item {
    index: usize,
    payload: Result<Vec<u8>, String>,
}

/// Splits a decoded body into records.
fn split_body(body: &[u8]) -> Result<Vec<Item>, String> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err("empty body: send a JSON object, a JSON array or NDJSON".into());
    }
    if trimmed.starts_with(b"[") {
        let items: Vec<Value> = serde_json::from_slice(trimmed)
            .map_err(|e| format!("body is not a JSON array: {e}"))?;
        return Ok(items
            .into_iter()
            .enumerate()
            .map(|(index, v)| Item {
                index,
                payload: serde_json::to_vec(&v).map_err(|e| e.to_string()),
            })
            .collect());
    }
    // One object, or NDJSON (one object per line): a single object spread
    // over several lines parses whole first.
    if serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok() {
        return Ok(vec![Item {
            index: 0,
            payload: Ok(trimmed.to_vec()),
        }]);
    }
    Ok(trimmed
        .split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(index, line)| Item {
            index,
            payload: Ok(line.to_vec()),
        })
        .collect())
}

fn authorized(intake: &Intake, headers: &HeaderMap) -> bool {
    if intake.settings.tokens.is_empty() {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    intake.settings.tokens.iter().any(|t| t == given.trim())
}

/// A refusal, already shaped as the response.
struct Refusal(Box<Response>);

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(Box::new(error(status, message)))
}

fn decode(intake: &Intake, headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(body.to_vec()),
        "gzip" | "x-gzip" => {
            let limit = intake.settings.max_body_bytes as u64;
            let mut out = Vec::new();
            MultiGzDecoder::new(body)
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    refuse(
                        StatusCode::BAD_REQUEST,
                        format!("body is not valid gzip: {e}"),
                    )
                })?;
            if out.len() as u64 > limit {
                return Err(refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("decoded body is over the limit of {limit} bytes"),
                ));
            }
            Ok(out)
        }
        other => Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other:?} is not supported (gzip or none)"),
        )),
    }
}

async fn post_events(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !authorized(&intake, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "body is over the limit of {} bytes",
                    intake.settings.max_body_bytes
                )
            } else {
                rejection.body_text()
            };
            return error(status, message);
        }
    };
    let decoded = match decode(&intake, &headers, &body) {
        Ok(d) => d,
        Err(Refusal(response)) => return *response,
    };
    let items = match split_body(&decoded) {
        Ok(items) => items,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let total = items.len();
    let mut rejected = Vec::new();
    let mut valid = Vec::new();
    for item in items {
        let checked = item.payload.and_then(|p| {
            RawEvent::validate_json_bytes(&p)
                .map(|e| (e, p))
                .map_err(|e| e.to_string())
        });
        match checked {
            Ok((event, payload)) => {
                let key = event.user_id.unwrap_or(event.service);
                valid.push((item.index, key, payload));
            }
            Err(reason) => rejected.push(json!({"index": item.index, "error": reason})),
        }
    }
    intake.metrics.intake_rejected.inc_by(rejected.len() as u64);
    if valid.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "error": "no valid record",
                "accepted": 0,
                "rejected": rejected,
            })),
        )
            .into_response();
    }
    let producer = match &intake.outlet {
        Outlet::Kafka(p) => p,
        Outlet::Wal(wal) => {
            let records: Vec<&[u8]> = valid.iter().map(|(_, _, p)| p.as_slice()).collect();
            if let Err(e) = wal.append(&records).await {
                tracing::error!(error = %e, "intake: cannot append to the write-ahead log");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the write-ahead log did not take the records: {e}; retry the request"),
                );
            }
            return accepted(&intake, valid.len(), rejected, total);
        }
    };
    let topic = intake.settings.topic.as_str();
    let sends = valid.iter().map(|(_, key, payload)| {
        producer.send(
            FutureRecord::to(topic).key(key.as_bytes()).payload(payload),
            Duration::from_secs(30),
        )
    });
    let results = join_all(sends).await;
    let mut failed = 0usize;
    for r in &results {
        if let Err((e, _)) = r {
            failed += 1;
            tracing::warn!(error = %e, "intake: the broker did not acknowledge a record");
        }
    }
    if failed > 0 {
        // Some records may be in Kafka; the caller retries the whole request
        // and the writer drops the replays by event_id.
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the broker did not acknowledge {failed} of {} records; retry the request",
                valid.len()
            ),
        );
    }
    accepted(&intake, valid.len(), rejected, total)
}

fn accepted(intake: &Intake, valid: usize, rejected: Vec<Value>, total: usize) -> Response {
    intake.metrics.intake_records.inc_by(valid as u64);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "accepted": valid,
            "rejected": rejected,
            "records": total,
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_split_into_records() {
        let one = split_body(b" {\"a\":\n 1} ").unwrap();
        assert_eq!(one.len(), 1);
        let arr = split_body(b"[{\"a\":1},{\"a\":2}]").unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[1].payload.as_deref().unwrap(), b"{\"a\":2}");
        let nd = split_body(b"{\"a\":1}\n\nnot json\n{\"a\":3}\n").unwrap();
        assert_eq!(nd.len(), 3);
        assert_eq!(nd[1].payload.as_deref().unwrap(), b"not json");
        assert_eq!(nd[2].index, 2);
        assert!(split_body(b"  ").is_err());
        assert!(split_body(b"[{\"a\":1},").is_err());
    }
}
