//! The query service's analytics side by side with DuckDB at its best, in
//! one run, at several table sizes:
//!
//! - attribution by user, by team and by endpoint over 7 days (requests,
//!   share, success/failed, last seen, exact p50/p90/p99 latency);
//! - guardrail peaks per user per minute over 7 days (peak, when, p99/p95
//!   and mean of per-minute counts);
//! - the attribution series: the top 5 users' requests per hour, 7 days;
//!
//! each through sluice's engine (the functions behind `GET /v1/attribution`,
//! `/v1/guardrails/peaks` and `/v1/attribution/series`: DataFusion over the
//! Iceberg table of the embedded catalog) and through DuckDB over the very
//! same Parquet files, written as DuckDB's users write them (see
//! `benches/duckdb_queries.py` for why that is its best form). Medians of
//! a few warm runs compared; the first answer row is checked to agree.
//!
//! `cargo bench --bench query` — sizes from SLUICE_BENCH_SIZES (default
//! `1000000,10000000`; add `100000000` for the long mode, ~11 GB of scratch
//! space and most of an hour), SLUICE_BENCH_RUNS runs each (default 5; at
//! least 15 up to 1 M events). The data is generated (`sluice gen`, 7 days,
//! in parts of at most 10 M events) and loaded with `sluice import` first;
//! that part is not timed. Machines here are noisy: read the ratio.

use std::process::Command;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use sluice_query::attribution::{
    AttributionParams, AttributionQuery, SeriesParams, SeriesQuery, attribution, series,
};
use sluice_query::config::{GuardrailsConfig, QueryConfig};
use sluice_query::engine::Engine;
use sluice_query::guardrails::{Scope, peaks};

mod common;
use common::{UNTIL, env_usize, generate_events_part, import, median};

/// The targets of issue #25: every query within 1.5x of DuckDB, and
/// attribution under a second at 10 M rows.
const TARGET_RATIO: f64 = 1.5;

/// Most events generated (as JSON) at once.
const PART: usize = 10_000_000;

/// Queries over at most this many events run at least [`SMALL_RUNS`]
/// times: they take tens of milliseconds, where a machine's noise moves a
/// median of 5 by 10 %.
const SMALL: usize = 1_000_000;
const SMALL_RUNS: usize = 15;

struct Row {
    events: usize,
    name: &'static str,
    sluice: f64,
    duckdb: f64,
}

fn sizes() -> Vec<usize> {
    std::env::var("SLUICE_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1_000_000, 10_000_000])
}

fn main() -> anyhow::Result<()> {
    let runs = env_usize("SLUICE_BENCH_RUNS", 5).max(1);
    let mut table = Vec::new();
    for events in sizes() {
        table.extend(one_size(events, runs)?);
    }
    println!(
        "query benchmark: median of {runs} warm runs each ({SMALL_RUNS} up to {SMALL} events), 7 days of events (2 cores)"
    );
    println!(
        "{:>12} {:<36} {:>10} {:>10} {:>14}",
        "events", "query", "sluice s", "duckdb s", "sluice/duckdb"
    );
    let mut missed = Vec::new();
    for r in &table {
        let ratio = r.sluice / r.duckdb;
        println!(
            "{:>12} {:<36} {:>10.3} {:>10.3} {:>13.2}x",
            r.events, r.name, r.sluice, r.duckdb, ratio
        );
        if ratio > TARGET_RATIO {
            missed.push(format!("{} at {}: {ratio:.2}x", r.name, r.events));
        }
        if r.name.starts_with("attribution") && r.events == 10_000_000 && r.sluice >= 1.0 {
            missed.push(format!("{} at {}: {:.2} s", r.name, r.events, r.sluice));
        }
    }
    if missed.is_empty() {
        println!("targets (<= {TARGET_RATIO}x DuckDB; attribution < 1 s at 10 M): met");
    } else {
        println!(
            "targets (<= {TARGET_RATIO}x DuckDB; attribution < 1 s at 10 M) missed: {missed:?}"
        );
    }
    Ok(())
}

fn one_size(events: usize, runs: usize) -> anyhow::Result<Vec<Row>> {
    let runs = if events <= SMALL {
        runs.max(SMALL_RUNS)
    } else {
        runs
    };
    let tmp = tempfile::tempdir()?;
    let until = DateTime::parse_from_rfc3339(UNTIL)?.with_timezone(&Utc);
    let from = until - Duration::days(7);
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");

    // Generated and imported in parts of at most PART events: 100 M
    // events are ~46 GB of JSON, more scratch space than a CI machine
    // has; each part is removed once imported.
    let parts = events.div_ceil(PART).max(1);
    let (mut generated, mut imported) = (0.0, 0.0);
    for part in 0..parts {
        let share = events / parts + usize::from(part < events % parts);
        let t = Instant::now();
        generate_events_part(&gen_dir, share, 7, 3, part as u64)?;
        generated += t.elapsed().as_secs_f64();
        let t = Instant::now();
        import(&data_dir, &gen_dir)?;
        imported += t.elapsed().as_secs_f64();
        std::fs::remove_dir_all(&gen_dir)?;
        if parts > 1 {
            eprintln!("{events}: part {} of {parts} imported", part + 1);
        }
    }
    eprintln!("{events}: generated in {generated:.0} s, imported in {imported:.0} s");

    let (rt, catalog) = common::embedded_catalog(&data_dir)?;
    let engine = Engine::new(catalog, QueryConfig::default(), Default::default())?;
    let rfc = |t: DateTime<Utc>| t.to_rfc3339();
    let attribution_by = |by: &str| -> anyhow::Result<AttributionQuery> {
        Ok(AttributionQuery::from_params(
            &AttributionParams {
                by: Some(by.into()),
                from: Some(rfc(from)),
                to: Some(rfc(until)),
                ..Default::default()
            },
            until,
        )?)
    };
    let by_user = attribution_by("user")?;
    let by_team = attribution_by("team")?;
    let by_endpoint = attribution_by("endpoint")?;
    let scope = Scope::parse(
        Some("user"),
        Some("1m"),
        [Some(&rfc(from)), None, Some(&rfc(until))],
        None,
        until,
    )?;
    let guardrails = GuardrailsConfig::default();
    let series_q = SeriesQuery::from_params(
        &SeriesParams {
            by: Some("user".into()),
            from: Some(rfc(from)),
            to: Some(rfc(until)),
            top: Some("5".into()),
            step: Some("1h".into()),
            ..Default::default()
        },
        until,
    )?;

    // Each query: its runs' times and its first answer row's principal and
    // request count, to compare with DuckDB's.
    type Timed = (Vec<f64>, Option<(String, u64)>);
    let time = |f: &dyn Fn() -> anyhow::Result<Option<(String, u64)>>| -> anyhow::Result<Timed> {
        let mut times = Vec::new();
        let mut first = None;
        for _ in 0..runs {
            let t = Instant::now();
            first = f()?;
            times.push(t.elapsed().as_secs_f64());
        }
        Ok((times, first))
    };
    let attr = |q: &AttributionQuery| -> anyhow::Result<Option<(String, u64)>> {
        let report = rt.block_on(attribution(&engine, q))?;
        anyhow::ensure!(
            report.total as usize == events,
            "attribution saw {} of {events} events",
            report.total
        );
        Ok(report
            .rows
            .first()
            .map(|r| (r.principal.clone().unwrap_or_default(), r.requests)))
    };
    let ours = [
        ("attribution_user", time(&|| attr(&by_user))?),
        ("attribution_team", time(&|| attr(&by_team))?),
        ("attribution_endpoint", time(&|| attr(&by_endpoint))?),
        (
            "peaks",
            time(&|| {
                let report = rt.block_on(peaks(&engine, &scope, 100, &guardrails))?;
                Ok(report
                    .rows
                    .first()
                    .map(|r| (r.principal.clone().unwrap_or_default(), r.peak)))
            })?,
        ),
        (
            "series",
            time(&|| {
                let report = rt.block_on(series(&engine, &series_q))?;
                Ok(report
                    .series
                    .first()
                    .map(|s| (s.principal.clone().unwrap_or_default(), s.requests)))
            })?,
        ),
    ];

    // The interop venv's Python (SLUICE_TEST_PYTHON, as `scripts/test --bench` sets).
    let out = Command::new(sluice_testkit::python())
        .arg(sluice_testkit::source_path("benches/duckdb_queries.py"))
        .arg(&data_dir)
        .arg(rfc(from))
        .arg(rfc(until))
        .arg(runs.to_string())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "DuckDB side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(
        duck["rows"].as_u64() == Some(events as u64),
        "DuckDB saw {} rows",
        duck["rows"]
    );
    let mut rows = Vec::new();
    for (name, (times, first)) in ours {
        let theirs = &duck[name];
        let duck_times: Vec<f64> = theirs["times"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default();
        anyhow::ensure!(!duck_times.is_empty(), "DuckDB did not time {name}");
        // The first row: the principal, then its requests (the peak for
        // peaks, the range's total for the series).
        let duck_first = theirs["first"].as_array().and_then(|r| {
            let principal = r.first()?.as_str()?.to_string();
            let count = r.get(1)?.as_str()?.parse().ok()?;
            Some((principal, count))
        });
        anyhow::ensure!(
            first == duck_first,
            "{name} at {events}: sluice's first row {first:?}, DuckDB's {duck_first:?}"
        );
        rows.push(Row {
            events,
            name,
            sluice: median(times),
            duckdb: median(duck_times),
        });
    }
    Ok(rows)
}
