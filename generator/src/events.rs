//! Platform API events: who called which endpoint when, with what result and
//! latency. Load follows the day (and is lighter at weekends), principals
//! follow a Zipf law, and a few injected spikes give guardrail tuning a peak
//! to find.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Datelike, Duration, SecondsFormat, Timelike, Utc, Weekday};
use rand::Rng;
use rand::distr::weighted::WeightedIndex;
use rand_distr::{Distribution, LogNormal, Zipf};
use serde::Serialize;

use super::principals::{Kind, Principal};
use super::rng::{self, GenRng};

pub struct Endpoint {
    pub service: &'static str,
    pub method: &'static str,
    /// Placeholders: {num} {uuid} {hex} are ids; {catalog} {ns} {table} names.
    pub path: &'static str,
    pub action: &'static str,
    pub median_ms: f64,
    pub sigma: f64,
    pub error_rate: f64,
    pub weight: u32,
}

#[rustfmt::skip]
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint { service: "iom-cluster", method: "GET", path: "/api/v1/spark/jobs/{num}/runs", action: "spark.jobs.runs.list", median_ms: 120.0, sigma: 0.7, error_rate: 0.01, weight: 30 },
    Endpoint { service: "iom-cluster", method: "POST", path: "/api/v1/spark/jobs/{num}/runs", action: "spark.jobs.runs.submit", median_ms: 450.0, sigma: 0.6, error_rate: 0.04, weight: 8 },
    Endpoint { service: "iom-cluster", method: "GET", path: "/api/v1/spark/jobs", action: "spark.jobs.list", median_ms: 80.0, sigma: 0.5, error_rate: 0.005, weight: 12 },
    Endpoint { service: "iom-cluster", method: "GET", path: "/api/v1/clusters/{uuid}/status", action: "clusters.status.get", median_ms: 25.0, sigma: 0.4, error_rate: 0.003, weight: 15 },
    Endpoint { service: "iom-core", method: "POST", path: "/api/v1/sql/queries", action: "sql.queries.submit", median_ms: 900.0, sigma: 0.9, error_rate: 0.06, weight: 14 },
    Endpoint { service: "iom-core", method: "GET", path: "/api/v1/sql/queries/{uuid}/results", action: "sql.queries.results.get", median_ms: 200.0, sigma: 0.8, error_rate: 0.02, weight: 14 },
    Endpoint { service: "iom-core", method: "GET", path: "/api/v1/artifacts/{hex}", action: "artifacts.get", median_ms: 60.0, sigma: 0.6, error_rate: 0.01, weight: 5 },
    Endpoint { service: "iom-catalog", method: "GET", path: "/api/v1/catalogs/{catalog}/namespaces/{ns}/tables/{table}", action: "catalog.tables.get", median_ms: 40.0, sigma: 0.5, error_rate: 0.01, weight: 16 },
    Endpoint { service: "iom-catalog", method: "GET", path: "/api/v1/catalogs/{catalog}/namespaces", action: "catalog.namespaces.list", median_ms: 30.0, sigma: 0.4, error_rate: 0.005, weight: 6 },
    Endpoint { service: "iom-identity", method: "POST", path: "/api/v1/auth/token", action: "auth.token.issue", median_ms: 35.0, sigma: 0.3, error_rate: 0.03, weight: 10 },
    Endpoint { service: "iom-identity", method: "GET", path: "/api/v1/users/me", action: "users.me.get", median_ms: 12.0, sigma: 0.3, error_rate: 0.002, weight: 8 },
    Endpoint { service: "typesense", method: "GET", path: "/api/v1/search", action: "search.query", median_ms: 22.0, sigma: 0.5, error_rate: 0.004, weight: 9 },
    Endpoint { service: "iom-cluster", method: "DELETE", path: "/api/v1/spark/jobs/{num}", action: "spark.jobs.delete", median_ms: 150.0, sigma: 0.4, error_rate: 0.05, weight: 1 },
];

const CATALOGS: &[&str] = &["lakehouse", "spark_catalog", "finance"];
const NAMESPACES: &[&str] = &["sales", "marketing", "raw", "staging", "ml_features"];
const TABLES: &[&str] = &[
    "orders",
    "customers",
    "events",
    "sessions",
    "invoices",
    "clicks",
];

/// An injected burst: one principal far above its normal rate.
#[derive(Debug, Clone, Serialize)]
pub struct Spike {
    pub principal: String,
    /// Index of the window minute the spike starts in.
    #[serde(skip)]
    pub start_minute: usize,
    pub minutes: usize,
    /// Extra requests per minute on top of the principal's normal load.
    pub per_minute: u64,
    pub endpoint: String,
    pub start: String,
    pub end: String,
}

/// The load plan: how many events each minute of the window gets.
pub struct LoadPlan {
    pub window_start: DateTime<Utc>,
    pub baseline: Vec<u64>,
    pub spikes: Vec<Spike>,
}

fn diurnal_weight(t: DateTime<Utc>) -> u64 {
    let h = t.hour() as f64 + t.minute() as f64 / 60.0;
    let day = 250.0 + 750.0 * (-((h - 14.0) / 4.5).powi(2)).exp();
    let weekend = matches!(t.weekday(), Weekday::Sat | Weekday::Sun);
    (day * if weekend { 0.5 } else { 1.0 }) as u64
}

impl LoadPlan {
    pub fn new(
        seed: u64,
        total: u64,
        window_start: DateTime<Utc>,
        minutes: usize,
        principals: &[Principal],
    ) -> Self {
        let mut r = rng::stream(seed, "load-plan", 0);
        let weights: Vec<u64> = (0..minutes)
            .map(|m| diurnal_weight(window_start + Duration::minutes(m as i64)))
            .collect();
        let weight_sum: u64 = weights.iter().sum::<u64>().max(1);
        let max_weight = weights.iter().copied().max().unwrap_or(1);
        let peak_minute = (total as f64 * max_weight as f64 / weight_sum as f64).ceil() as u64;

        let spike_count = if minutes >= 3 * 1440 { 3 } else { 1 };
        let durations: Vec<usize> = (0..spike_count)
            .map(|i| if i == 0 { 15 } else { 10 })
            .collect();
        let mut head_rate = (peak_minute * 6 / 10).max(12);
        let spike_events = |rate: u64| -> u64 {
            durations
                .iter()
                .enumerate()
                .map(|(i, d)| *d as u64 * if i == 0 { rate } else { (rate / 2).max(1) })
                .sum()
        };
        while spike_events(head_rate) > total / 4 && head_rate > 1 {
            head_rate = head_rate * 3 / 4;
        }
        let mut spikes = Vec::new();
        if total >= 100 && minutes >= 60 {
            let rank_hi = principals.len().min(40);
            let mut used = Vec::new();
            for (i, &d) in durations.iter().enumerate() {
                let mut rank = r.random_range(10.min(rank_hi - 1)..rank_hi);
                while used.contains(&rank) {
                    rank = (rank + 1) % principals.len();
                }
                used.push(rank);
                // The headline spike lands in the last day, inside a default 24 h window.
                let (lo, hi) = if i == 0 {
                    (minutes.saturating_sub(1440), minutes - d)
                } else {
                    (0, minutes.saturating_sub(1440).max(1))
                };
                let daytime: Vec<usize> = (lo..hi.max(lo + 1))
                    .filter(|m| {
                        let h = (window_start + Duration::minutes(*m as i64)).hour();
                        (9..17).contains(&h) && m + d <= minutes
                    })
                    .collect();
                let start_minute = if daytime.is_empty() {
                    r.random_range(lo..hi.max(lo + 1)).min(minutes - d)
                } else {
                    daytime[r.random_range(0..daytime.len())]
                };
                let per_minute = if i == 0 {
                    head_rate
                } else {
                    (head_rate / 2).max(1)
                };
                let start = window_start + Duration::minutes(start_minute as i64);
                spikes.push(Spike {
                    principal: principals[rank].id.clone(),
                    start_minute,
                    minutes: d,
                    per_minute,
                    endpoint: "/api/v1/spark/jobs/{num}/runs".into(),
                    start: start.to_rfc3339_opts(SecondsFormat::Secs, true),
                    end: (start + Duration::minutes(d as i64))
                        .to_rfc3339_opts(SecondsFormat::Secs, true),
                });
            }
        }
        let spiked: u64 = spikes.iter().map(|s| s.per_minute * s.minutes as u64).sum();
        let base_total = total - spiked.min(total);
        // Exact integer apportioning: the minutes add up to base_total.
        let mut baseline = Vec::with_capacity(minutes);
        let mut cumulative: u128 = 0;
        let mut given: u64 = 0;
        for w in &weights {
            cumulative += *w as u128;
            let upto = (base_total as u128 * cumulative / weight_sum as u128) as u64;
            baseline.push(upto - given);
            given = upto;
        }
        LoadPlan {
            window_start,
            baseline,
            spikes,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Occurred {
    Text(String),
    Millis(i64),
}

#[derive(Serialize)]
struct EventOut<'a> {
    event_id: String,
    occurred_at: Occurred,
    service: &'static str,
    action: &'static str,
    success: bool,
    user_id: Option<&'a str>,
    method: &'static str,
    path: String,
    status_code: u16,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<&'a str>,
    user_agent: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_account: Option<bool>,
    request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    bytes_in: u64,
    bytes_out: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<u32>,
}

fn render_path(r: &mut GenRng, template: &str) -> String {
    let mut p = template.to_string();
    if p.contains("{num}") {
        p = p.replace("{num}", &r.random_range(100..99_999).to_string());
    }
    if p.contains("{uuid}") {
        p = p.replace("{uuid}", &rng::uuid(r));
    }
    if p.contains("{hex}") {
        p = p.replace("{hex}", &rng::hex(r, 40));
    }
    p = p
        .replace("{catalog}", CATALOGS[r.random_range(0..CATALOGS.len())])
        .replace("{ns}", NAMESPACES[r.random_range(0..NAMESPACES.len())])
        .replace("{table}", TABLES[r.random_range(0..TABLES.len())]);
    if r.random_ratio(1, 20) {
        p.push_str(&format!(
            "?limit={}&page={}",
            [20, 50, 100][r.random_range(0..3)],
            r.random_range(1..9)
        ));
    }
    p
}

fn status(r: &mut GenRng, method: &str, ok: bool) -> u16 {
    if ok {
        return match method {
            "POST" => {
                if r.random_bool(0.7) {
                    201
                } else {
                    202
                }
            }
            "DELETE" => 204,
            _ => 200,
        };
    }
    const FAILED: [u16; 10] = [400, 401, 403, 404, 409, 429, 500, 502, 503, 504];
    const WEIGHTS: [u32; 10] = [10, 8, 6, 12, 3, 6, 8, 3, 5, 4];
    match WeightedIndex::new(WEIGHTS) {
        Ok(w) => FAILED[w.sample(r)],
        Err(_) => 500,
    }
}

/// Writes the events of window minutes `[from, to)` to `path`; returns how
/// many were written.
pub fn write_minutes(
    path: &Path,
    plan: &LoadPlan,
    from: usize,
    to: usize,
    principals: &[Principal],
    rng: &mut GenRng,
    progress: &dyn Fn(u64),
) -> anyhow::Result<u64> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let written = write_minutes_to(&mut out, plan, from, to, principals, rng, progress)?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(written)
}

/// Writes the events of window minutes `[from, to)` to `out`, in time order
/// within each minute; returns how many were written.
pub fn write_minutes_to(
    out: &mut dyn Write,
    plan: &LoadPlan,
    from: usize,
    to: usize,
    principals: &[Principal],
    rng: &mut GenRng,
    progress: &dyn Fn(u64),
) -> anyhow::Result<u64> {
    let zipf = Zipf::new(principals.len() as f64, 1.1).map_err(|e| anyhow::anyhow!("zipf: {e}"))?;
    let endpoint_pick = WeightedIndex::new(ENDPOINTS.iter().map(|e| e.weight))
        .map_err(|e| anyhow::anyhow!("endpoint weights: {e}"))?;
    let latency: Vec<LogNormal<f64>> = ENDPOINTS
        .iter()
        .map(|e| LogNormal::new(e.median_ms.ln(), e.sigma))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("latency distribution: {e}"))?;
    let spike_principals: Vec<usize> = plan
        .spikes
        .iter()
        .map(|s| {
            principals
                .iter()
                .position(|p| p.id == s.principal)
                .unwrap_or(0)
        })
        .collect();

    let mut written = 0u64;
    let mut reported = 0u64;
    let mut slots: Vec<(i64, Option<usize>)> = Vec::new();
    for m in from..to {
        slots.clear();
        for _ in 0..plan.baseline[m] {
            slots.push((rng.random_range(0..60_000), None));
        }
        for (i, s) in plan.spikes.iter().enumerate() {
            if (s.start_minute..s.start_minute + s.minutes).contains(&m) {
                for _ in 0..s.per_minute {
                    slots.push((rng.random_range(0..60_000), Some(i)));
                }
            }
        }
        slots.sort_unstable();
        let minute_start = plan.window_start + Duration::minutes(m as i64);
        for &(offset_ms, spike) in &slots {
            let at = minute_start + Duration::milliseconds(offset_ms);
            let principal = match spike {
                Some(i) => Some(&principals[spike_principals[i]]),
                None if rng.random_ratio(1, 50) => None,
                None => {
                    Some(&principals[(zipf.sample(rng) as usize).clamp(1, principals.len()) - 1])
                }
            };
            let e_index = match (spike, principal) {
                (Some(_), _) => 0,
                (None, Some(p)) if p.kind == Kind::ServiceAccount && rng.random_bool(0.8) => {
                    p.favourite_endpoint
                }
                _ => endpoint_pick.sample(rng),
            };
            let ep = &ENDPOINTS[e_index];
            let error_rate = if spike.is_some() { 0.02 } else { ep.error_rate };
            let ok = !rng.random_bool(error_rate);
            let code = status(rng, ep.method, ok);
            let mut latency_ms = latency[e_index].sample(rng);
            if code >= 500 {
                latency_ms *= 3.0;
            } else if code >= 400 {
                latency_ms *= 0.3;
            }
            let latency_ms = (latency_ms * 1000.0).round() / 1000.0;
            // A few gateways send neither client IP nor account flag.
            let blind = rng.random_ratio(3, 100);
            let (client_ip, service_account) = match principal {
                _ if blind => (None, None),
                Some(p) => (
                    Some(p.ip.as_str()),
                    match p.kind {
                        Kind::ServiceAccount => Some(true),
                        _ => rng.random_bool(0.5).then_some(false),
                    },
                ),
                None => (None, None),
            };
            let occurred_at = match (
                rng.random_range(0..20),
                chrono::FixedOffset::east_opt(2 * 3600),
            ) {
                (0, _) => Occurred::Millis(at.timestamp_millis()),
                (1, Some(cest)) => Occurred::Text(
                    at.with_timezone(&cest)
                        .to_rfc3339_opts(SecondsFormat::Millis, false),
                ),
                _ => Occurred::Text(at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            };
            let bytes_in = match ep.method {
                "POST" => rng.random_range(200..20_000),
                _ => rng.random_range(0..300),
            };
            let event = EventOut {
                event_id: rng::uuid(rng),
                occurred_at,
                service: ep.service,
                action: ep.action,
                success: ok,
                user_id: principal.map(|p| p.id.as_str()),
                method: ep.method,
                path: render_path(rng, ep.path),
                status_code: code,
                latency_ms,
                client_ip,
                user_agent: principal.map(|p| p.user_agent).unwrap_or("curl/8.5.0"),
                service_account,
                request_id: format!("req-{}", rng::hex(rng, 12)),
                trace_id: rng.random_bool(0.5).then(|| rng::hex(rng, 32)),
                bytes_in,
                bytes_out: (latency_ms * rng.random_range(5.0..40.0)) as u64,
                region: rng
                    .random_ratio(1, 10)
                    .then_some(["eu-west-1", "us-east-1"][rng.random_range(0..2)]),
                org_id: rng.random_ratio(1, 20).then(|| rng.random_range(1..500)),
            };
            serde_json::to_writer(&mut *out, &event)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        if m % 60 == 59 {
            progress(written - reported);
            reported = written;
        }
    }
    progress(written - reported);
    Ok(written)
}
