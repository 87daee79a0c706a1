//! What the benchmarks share: their size knobs and the generated input.
// Each bench uses the helpers it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sluice::generator::{self, GenConfig};
use sluice_warehouse::catalog::{self, Catalog, CatalogConfig, WarehouseConfig};

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The middle value of `v` (the upper one of an even count): rounds
/// alternate with their baseline and medians are compared.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A multi-threaded runtime and the embedded default catalog (SQLite,
/// local warehouse) under `data_dir`, opened on it.
pub fn embedded_catalog(
    data_dir: &Path,
) -> anyhow::Result<(tokio::runtime::Runtime, Arc<dyn Catalog>)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let catalog = rt.block_on(catalog::open(
        &CatalogConfig::default(),
        &WarehouseConfig::default(),
        data_dir,
    ))?;
    Ok((rt, catalog))
}

/// The end of every benchmark's generated history.
pub const UNTIL: &str = "2026-11-21T00:00:00Z";

/// `sluice import DIR --format json` into `data_dir` (not timed by the
/// caller unless it wants to).
pub fn import(data_dir: &Path, gen_dir: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("import")
        .arg(gen_dir)
        .args(["--format", "json"])
        .env_remove("SLUICE_CONFIG")
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "sluice import failed");
    Ok(())
}

/// A generated cluster of one pod with `events` API events over `days`
/// before [`UNTIL`], written to `out`.
pub fn generate_events(
    out: &Path,
    events: usize,
    days: u32,
    seed: u64,
) -> anyhow::Result<generator::Manifest> {
    generate_events_part(out, events, days, seed, 0)
}

/// [`generate_events`]'s part `part` (see `GenConfig::events_part`): the
/// same principals and load shape, other events.
pub fn generate_events_part(
    out: &Path,
    events: usize,
    days: u32,
    seed: u64,
    part: u64,
) -> anyhow::Result<generator::Manifest> {
    generator::generate(
        &GenConfig {
            out: out.to_path_buf(),
            pods: 1,
            events: events as u64,
            days,
            until: DateTime::parse_from_rfc3339(UNTIL)?.with_timezone(&Utc),
            seed,
            cluster: "bench".into(),
            lines_per_pod_day: 10,
            rotate_bytes: 1 << 30,
            force: false,
            events_part: part,
        },
        &|_| {},
        &|_| {},
    )
}

/// `events` generated raw events (two days, one pod) under `dir/gen`: the
/// generator's output directory (with `directory.yaml`) and the NDJSON lines.
pub fn generated_events(
    dir: &Path,
    events: usize,
    seed: u64,
) -> anyhow::Result<(PathBuf, Vec<Vec<u8>>)> {
    let gen_dir = dir.join("gen");
    let manifest = generate_events(&gen_dir, events, 2, seed)?;
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(events);
    for f in &manifest.event_files {
        for l in std::fs::read(gen_dir.join(&f.path))?.split(|b| *b == b'\n') {
            if !l.is_empty() {
                lines.push(l.to_vec());
            }
        }
    }
    Ok((gen_dir, lines))
}
