//! The query service's analytics, side by side with DuckDB, in one run:
//!
//! - attribution by user over the whole history (requests, share,
//!   success/failed, last seen, exact p50/p90/p99 latency);
//! - peaks per user per minute over 7 days (peak, when, p99/p95/mean of
//!   per-minute counts);
//!
//! each through sluice's engine (DataFusion over the Iceberg table of the
//! embedded catalog: Iceberg plans, DataFusion reads the files in parallel)
//! and through DuckDB over the very same Parquet files, a few runs each;
//! p50s compared.
//!
//! `cargo bench --bench query` (SLUICE_BENCH_EVENTS, default 10 000 000;
//! SLUICE_BENCH_RUNS, default 5). The data is generated (`sluice gen`, 7
//! days) and loaded with `sluice import` first; that part is not timed.
//! Machines here are noisy: read the ratio, not the absolute numbers.

use std::process::Command;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use sluice_query::attribution::{AttributionParams, AttributionQuery, attribution};
use sluice_query::config::{GuardrailsConfig, QueryConfig};
use sluice_query::engine::Engine;
use sluice_query::guardrails::{Scope, peaks};

mod common;
use common::{UNTIL, env_usize, generate_events, import};

fn p50(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let events = env_usize("SLUICE_BENCH_EVENTS", 10_000_000);
    let runs = env_usize("SLUICE_BENCH_RUNS", 5).max(1);
    let tmp = tempfile::tempdir()?;
    let until = DateTime::parse_from_rfc3339(UNTIL)?.with_timezone(&Utc);
    let from = until - Duration::days(7);
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");

    let t = Instant::now();
    generate_events(&gen_dir, events, 7, 3)?;
    eprintln!(
        "generated {events} events in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    import(&data_dir, &gen_dir)?;
    eprintln!("imported in {:.0} s", t.elapsed().as_secs_f64());
    std::fs::remove_dir_all(&gen_dir)?;

    let (rt, catalog) = common::embedded_catalog(&data_dir)?;
    let engine = Engine::new(catalog, QueryConfig::default(), Default::default())?;
    let rfc = |t: DateTime<Utc>| t.to_rfc3339();
    let params = AttributionParams {
        by: Some("user".into()),
        from: Some(rfc(from)),
        to: Some(rfc(until)),
        ..Default::default()
    };
    let q = AttributionQuery::from_params(&params, until)?;
    let scope = Scope::parse(
        Some("user"),
        Some("1m"),
        [Some(&rfc(from)), None, Some(&rfc(until))],
        None,
        until,
    )?;
    let guardrails = GuardrailsConfig::default();

    let mut sluice_attr = Vec::new();
    let mut sluice_peaks = Vec::new();
    let mut total = 0;
    for _ in 0..runs {
        let t = Instant::now();
        total = rt.block_on(attribution(&engine, &q))?.total;
        sluice_attr.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        rt.block_on(peaks(&engine, &scope, 100, &guardrails))?;
        sluice_peaks.push(t.elapsed().as_secs_f64());
    }
    anyhow::ensure!(
        total as usize == events,
        "attribution saw {total} of {events} events"
    );

    // The interop venv's Python (SLUICE_TEST_PYTHON, as `scripts/test --bench` sets).
    let out = Command::new(sluice_testkit::python())
        .arg(sluice_testkit::source_path("benches/duckdb_queries.py"))
        .arg(&data_dir)
        .arg(from.timestamp_micros().to_string())
        .arg(until.timestamp_micros().to_string())
        .arg(runs.to_string())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "DuckDB side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let times = |k: &str| -> Vec<f64> {
        duck[k]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default()
    };
    anyhow::ensure!(
        duck["rows"].as_u64() == Some(events as u64),
        "DuckDB saw {} rows",
        duck["rows"]
    );

    println!("query benchmark: {events} events over 7 days, p50 of {runs} runs (2 cores)");
    println!(
        "{:<44} {:>10} {:>10} {:>14}",
        "query", "sluice s", "duckdb s", "sluice/duckdb"
    );
    for (name, ours, theirs) in [
        (
            "attribution by user (p50/p90/p99 exact)",
            sluice_attr,
            times("attribution"),
        ),
        (
            "peaks per user per minute, 7 days",
            sluice_peaks,
            times("peaks"),
        ),
    ] {
        let (a, b) = (p50(ours), p50(theirs));
        println!("{name:<44} {a:>10.3} {b:>10.3} {:>13.2}x", a / b);
    }
    Ok(())
}
