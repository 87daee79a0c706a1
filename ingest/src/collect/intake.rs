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
//! A tenant's token sends only its own services' events, at its rate
//! ([`super::intake_tenants`]).

use std::io::Read;
use std::sync::Arc;

use crate::outlet::RecordOutlet;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flate2::read::MultiGzDecoder;
use serde_json::{Value, json};
use sluice_schema::raw::RawEvent;
use tokio::sync::Semaphore;

use super::intake_tenants::{Buckets, TenantIntake, Throttled};
use super::metrics::CollectorMetrics;

#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// Largest request body, compressed or not, and largest decoded body.
    pub max_body_bytes: usize,
    /// Largest record, attributes included; a larger one is rejected by
    /// name. Kept below what the broker and the write-ahead log take, so an
    /// accepted record is always writable.
    pub max_record_bytes: usize,
    /// Most records in one request (413 past it).
    pub max_records: usize,
    /// Requests handled at once (429 past it): bounds the bodies in memory.
    pub max_concurrent: usize,
    /// Bearer tokens accepted; empty (and no `tenants`) = no
    /// authentication.
    pub tokens: Vec<String>,
    /// Tenants' tokens: their own services only, at their rate.
    pub tenants: Vec<TenantIntake>,
}

/// The default record cap: under librdkafka's default `message.max.bytes`
/// (1 000 000) with room for the key and headers, and far under the
/// write-ahead log's 4 MiB read window.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 512 << 10;

/// Rejections listed in one answer; the rest are counted.
const MAX_LISTED_REJECTIONS: usize = 100;

pub struct Intake {
    /// Where accepted records go: the events topic, or `sluice up`'s
    /// write-ahead log.
    outlet: Arc<dyn RecordOutlet>,
    settings: IntakeSettings,
    metrics: CollectorMetrics,
    /// Requests in progress (bodies in memory).
    slots: Arc<Semaphore>,
    buckets: Buckets,
}

impl Intake {
    pub fn new(
        outlet: Arc<dyn RecordOutlet>,
        settings: IntakeSettings,
        metrics: CollectorMetrics,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_concurrent.max(1)));
        Self {
            outlet,
            settings,
            metrics,
            slots,
            buckets: Buckets::default(),
        }
    }

    pub fn routes(self: Arc<Self>) -> Router {
        let limit = self.settings.max_body_bytes;
        let slots = self.slots.clone();
        Router::new()
            .route("/v1/events", post(post_events))
            .layer(DefaultBodyLimit::max(limit))
            // Outside the body limit: the slot is taken before the body is read.
            .layer(axum::middleware::from_fn_with_state(slots, one_slot))
            .with_state(self)
    }
}

/// Admits a request only while a slot is free; 429 otherwise.
async fn one_slot(
    State(slots): State<Arc<Semaphore>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_slot) = slots.try_acquire_owned() else {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many intake requests at once ([collector] intake_max_concurrent); retry",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return r;
    };
    next.run(request).await
}

/// The error body every endpoint answers with (`sluice_http::error`).
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    sluice_http::error::response(status, sluice_http::error::kind_of(status), message)
}

/// One record of the body: where it came from and its bytes (borrowed
/// from the decoded body: no copy, no `Value` tree per record).
struct Item<'a> {
    index: usize,
    payload: &'a [u8],
}

/// A JSON array's elements as raw slices, refused past `max` elements
/// before more are read.
struct CappedArray<'a> {
    items: Vec<&'a serde_json::value::RawValue>,
    max: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for &mut CappedArray<'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &mut CappedArray<'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of event objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<&'de serde_json::value::RawValue>()? {
            if self.items.len() >= self.max {
                return Err(serde::de::Error::custom(TooMany(self.max)));
            }
            self.items.push(item);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct TooMany(usize);

impl std::fmt::Display for TooMany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the body holds more than {} records ([collector] intake_max_records); split it",
            self.0
        )
    }
}

/// Splits a decoded body into at most `max` records.
fn split_body(body: &[u8], max: usize) -> Result<Vec<Item<'_>>, Refusal> {
    let bad = |m: String| refuse(StatusCode::BAD_REQUEST, m);
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(bad(
            "empty body: send a JSON object, a JSON array or NDJSON".into(),
        ));
    }
    if trimmed.starts_with(b"[") {
        let mut array = CappedArray {
            items: Vec::new(),
            max,
        };
        let mut de = serde_json::Deserializer::from_slice(trimmed);
        if let Err(e) =
            serde::de::DeserializeSeed::deserialize(&mut array, &mut de).and_then(|()| de.end())
        {
            if e.to_string().contains("intake_max_records") {
                return Err(refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    TooMany(max).to_string(),
                ));
            }
            return Err(bad(format!("body is not a JSON array: {e}")));
        }
        return Ok(array
            .items
            .into_iter()
            .enumerate()
            .map(|(index, v)| Item {
                index,
                payload: v.get().as_bytes(),
            })
            .collect());
    }
    // One object, or NDJSON (one object per line): a single object spread
    // over several lines parses whole first.
    if serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok() {
        return Ok(vec![Item {
            index: 0,
            payload: trimmed,
        }]);
    }
    let mut items = Vec::new();
    for (index, line) in trimmed
        .split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if index >= max {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                TooMany(max).to_string(),
            ));
        }
        items.push(Item {
            index,
            payload: line,
        });
    }
    Ok(items)
}

/// Who posts: `None` when the token is missing or unknown; `Some(None)`
/// for an open intake or a platform token; `Some(Some(t))` for a tenant's.
fn caller<'a>(intake: &'a Intake, headers: &HeaderMap) -> Option<Option<&'a TenantIntake>> {
    let s = &intake.settings;
    if s.tokens.is_empty() && s.tenants.is_empty() {
        return Some(None);
    }
    // The same check as the query API's: scheme case-insensitive,
    // constant-time comparison.
    if sluice_http::auth::find(headers, &s.tokens, |t| t).is_some() {
        return Some(None);
    }
    sluice_http::auth::find(headers, &s.tenants, |t| &t.token).map(Some)
}

/// A refusal, already shaped as the response.
struct Refusal(Box<Response>);

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(Box::new(error(status, message)))
}

/// The records of a request body as the intake reads them: decoded (gzip
/// when `encoding` says so) within `max_body_bytes`, split (one JSON
/// object, a JSON array, or NDJSON) into at most `max_records`; or the HTTP
/// status it is refused with. What the fuzz target drives.
pub fn body_records(
    encoding: Option<&str>,
    body: &[u8],
    max_body_bytes: usize,
    max_records: usize,
) -> Result<Vec<Vec<u8>>, u16> {
    let status = |Refusal(r): Refusal| r.status().as_u16();
    let decoded = decode(encoding.unwrap_or("identity"), max_body_bytes, body).map_err(status)?;
    let items = split_body(&decoded, max_records).map_err(status)?;
    Ok(items.into_iter().map(|i| i.payload.to_vec()).collect())
}

fn content_encoding(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
}

fn decode(encoding: &str, max_body_bytes: usize, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let encoding = encoding.trim().to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(body.to_vec()),
        "gzip" | "x-gzip" => {
            let limit = max_body_bytes as u64;
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
    let Some(tenant) = caller(&intake, &headers) else {
        return error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
    };
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
    let decoded = match decode(
        content_encoding(&headers),
        intake.settings.max_body_bytes,
        &body,
    ) {
        Ok(d) => d,
        Err(Refusal(response)) => return *response,
    };
    let items = match split_body(&decoded, intake.settings.max_records) {
        Ok(items) => items,
        Err(Refusal(response)) => return *response,
    };
    let total = items.len();
    let max_record = intake.settings.max_record_bytes;
    let mut rejected = Rejected::default();
    let mut valid = Vec::new();
    for item in items {
        if item.payload.len() > max_record {
            rejected.push(
                item.index,
                format!(
                    "the record is {} bytes, over the limit of {max_record} \
                     ([collector] intake_max_record_bytes): shorten its attributes",
                    item.payload.len()
                ),
            );
            continue;
        }
        match RawEvent::validate_json_bytes(item.payload) {
            Ok(event) if tenant.is_some_and(|t| !t.owns(&event.service)) => rejected.push(
                item.index,
                format!(
                    "service: {:?} is not one of tenant {}'s services",
                    event.service,
                    tenant.map_or("", |t| t.tenant.as_str())
                ),
            ),
            Ok(event) => {
                let key = event.user_id.unwrap_or(event.service);
                valid.push((item.index, key, item.payload));
            }
            Err(e) => rejected.push(item.index, e.to_string()),
        }
    }
    intake.metrics.intake_rejected.inc_by(rejected.total as u64);
    if let Some(t) = tenant {
        intake
            .metrics
            .tenant(&t.metric_label, "rejected", rejected.total);
    }
    if valid.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "error": "no_valid_record",
                "detail": "no record of the body is valid: see rejected",
                "accepted": 0,
                "rejected": rejected.listed,
                "rejected_total": rejected.total,
            })),
        )
            .into_response();
    }
    if let Some(t) = tenant {
        let throttled = |message: String, retry: Option<std::time::Duration>| {
            intake
                .metrics
                .tenant(&t.metric_label, "throttled", valid.len());
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, message);
            if let Some(d) = retry {
                let secs = d.as_secs_f64().ceil().max(1.0) as u64;
                if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            r
        };
        match intake
            .buckets
            .take(t, valid.len(), std::time::Instant::now())
        {
            Ok(()) => intake
                .metrics
                .tenant(&t.metric_label, "accepted", valid.len()),
            Err(Throttled::RetryAfter(d)) => {
                return throttled(
                    format!(
                        "tenant {} sends over its {} events per second; nothing of this body was taken, retry it after {:.1} s",
                        t.tenant,
                        t.events_per_sec,
                        d.as_secs_f64()
                    ),
                    Some(d),
                );
            }
            Err(Throttled::TooMany { burst }) => {
                return throttled(
                    format!(
                        "tenant {} may send at most {burst} events at once (10 s at its rate); split the body",
                        t.tenant
                    ),
                    None,
                );
            }
        }
    }
    let records: Vec<(&[u8], &[u8])> = valid
        .iter()
        .map(|(_, key, payload)| (key.as_bytes(), *payload))
        .collect();
    if let Err(e) = intake.outlet.send(&records).await {
        // Some records may be durable already; the caller retries the whole
        // request and the writer drops the replays by event_id.
        tracing::warn!(error = %e, "intake: records not durable");
        return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    accepted(&intake, valid.len(), rejected, total)
}

/// The rejected records: the first [`MAX_LISTED_REJECTIONS`] by index and
/// reason, and how many in all.
#[derive(Default)]
struct Rejected {
    listed: Vec<Value>,
    total: usize,
}

impl Rejected {
    fn push(&mut self, index: usize, reason: String) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_REJECTIONS {
            self.listed.push(json!({"index": index, "error": reason}));
        }
    }
}

fn accepted(intake: &Intake, valid: usize, rejected: Rejected, total: usize) -> Response {
    intake.metrics.intake_records.inc_by(valid as u64);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "accepted": valid,
            "rejected": rejected.listed,
            "rejected_total": rejected.total,
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
        let split = |b: &'static [u8]| split_body(b, 1000).ok().unwrap();
        let one = split(b" {\"a\":\n 1} ");
        assert_eq!(one.len(), 1);
        let arr = split(b"[{\"a\":1},{\"a\":2}]");
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[1].payload, b"{\"a\":2}");
        let nd = split(b"{\"a\":1}\n\nnot json\n{\"a\":3}\n");
        assert_eq!(nd.len(), 3);
        assert_eq!(nd[1].payload, b"not json");
        assert_eq!(nd[2].index, 2);
        assert!(split_body(b"  ", 1000).is_err());
        assert!(split_body(b"[{\"a\":1},", 1000).is_err());
    }

    #[test]
    fn record_counts_are_capped_before_the_rest_is_read() {
        let status = |r: Result<Vec<Item<'_>>, Refusal>| match r {
            Ok(items) => items.len() as u16,
            Err(Refusal(response)) => response.status().as_u16(),
        };
        // A few bytes per record: millions of `{}` in a small gzip body.
        let many = format!("[{}{{}}]", "{},".repeat(100_000));
        assert_eq!(status(split_body(many.as_bytes(), 10_000)), 413);
        let lines = "{}\n".repeat(100_000);
        assert_eq!(status(split_body(lines.as_bytes(), 10_000)), 413);
        assert_eq!(status(split_body(b"[{},{}]", 2)), 2);
    }
}
