//! Bounded state under `sluice up --demo` at ten times the demo's load,
//! with maintenance every 10 s: for a few minutes of the demo's ~6 commits
//! a second, data files per partition and manifests per table stay under
//! the bounds docs/maintenance.md gives, and the write-ahead logs' disk use
//! stays flat while what they carried keeps growing (segments are deleted
//! once committed). The simulated-days test in `warehouse/tests` covers
//! the warehouse's disk once retention is reached.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, free_port, http_get};
use sluice_schema::tables::ALL_TABLES;
use sluice_warehouse::maintain::snapshot;

const INTERVAL_SECS: u64 = 10;
const MAX_MANIFESTS: usize = 8;

/// (bytes on disk, bytes ever written) of each write-ahead log under `up/`.
fn wal_bytes(data_dir: &Path) -> HashMap<String, (u64, u64)> {
    let mut out: HashMap<String, (u64, u64)> = HashMap::new();
    for e in std::fs::read_dir(data_dir.join("up")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        // `<name>.wal` starts at 0, `<name>.<start>.wal` at `start`.
        let (log, start) = match stem.split_once('.') {
            Some((log, start)) => (log.to_string(), start.parse::<u64>().unwrap()),
            None => (stem.to_string(), 0),
        };
        let len = e.metadata().unwrap().len();
        let entry = out.entry(log).or_default();
        entry.0 += len;
        entry.1 = entry.1.max(start + len);
    }
    out
}

/// Per table: (most data files in one partition, manifests).
async fn table_state(data_dir: &Path) -> HashMap<&'static str, (usize, usize)> {
    let catalog = common::open_catalog(data_dir).await;
    let mut out = HashMap::new();
    for contract in ALL_TABLES {
        let table = catalog.load_table(&contract.ident()).await.unwrap();
        let Some(current) = table.metadata().current_snapshot() else {
            continue;
        };
        let manifests = table
            .manifest_list_reader(current)
            .load()
            .await
            .unwrap()
            .entries()
            .len();
        let mut per_partition: HashMap<String, usize> = HashMap::new();
        for e in snapshot::live_entries(&table).await.unwrap() {
            *per_partition
                .entry(format!("{:?}", e.data_file().partition()))
                .or_default() += 1;
        }
        let worst = per_partition.values().copied().max().unwrap_or(0);
        out.insert(contract.name, (worst, manifests));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_demo_state_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let _up = Proc(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http", &addr, "up", "--demo", "--demo-load", "10"])
            .env_remove("SLUICE_CONFIG")
            .env("SLUICE_WRITER__WAL_SEGMENT_MIB", "1")
            .env(
                "SLUICE_MAINTENANCE__INTERVAL_SECS",
                INTERVAL_SECS.to_string(),
            )
            .env(
                "SLUICE_MAINTENANCE__MAX_MANIFESTS",
                MAX_MANIFESTS.to_string(),
            )
            .env("SLUICE_MAINTENANCE__SNAPSHOT_MAX_AGE_SECS", "0")
            .env("SLUICE_MAINTENANCE__SNAPSHOTS_TO_KEEP", "3")
            .env("SLUICE_MAINTENANCE__ORPHAN_MIN_AGE_SECS", "60")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice up"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_get(&addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "sluice up never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        samples.push((
            started.elapsed().as_secs(),
            wal_bytes(data_dir),
            table_state(data_dir).await,
        ));
    }
    for (at, wal, tables) in &samples {
        eprintln!("{at:>4} s  wal {wal:?}  tables {tables:?}");
    }

    // After a pass one file per partition (a few megabytes a day here, far
    // under the target), then one per commit: up's writers commit a table
    // at most once a second (max_age_ms is capped at 1 s under up), so at
    // most one pass interval of commits, plus the pass's own duration and
    // the sampling's skew (2 s).
    let commits_between = INTERVAL_SECS as usize + 2;
    for (at, _, tables) in &samples {
        for (table, (files, manifests)) in tables {
            assert!(
                *files <= 1 + commits_between,
                "{at} s: {table} has {files} data files in one partition"
            );
            assert!(
                *manifests <= MAX_MANIFESTS + commits_between,
                "{at} s: {table} has {manifests} manifests"
            );
        }
    }

    // The logs carried many segments' worth and keep on disk only what
    // was written since the last trim (every 30 s) and commit, plus the
    // segment being appended to: bounded by the rate, not the run's length.
    let (first_at, first_wal, _) = &samples[0];
    let (last_at, last_wal, _) = samples.last().unwrap();
    let events = last_wal["events"];
    assert!(
        events.1 > 8 << 20,
        "events log carried only {} bytes",
        events.1
    );
    let rate = (events.1 - first_wal["events"].1) as f64 / (last_at - first_at) as f64;
    let bound = (rate * 40.0) as u64 + (2 << 20);
    // The demo writes its first hour at once at start; the first trim (at
    // 30 s) takes it away.
    for (at, wal, _) in samples.iter().filter(|(at, _, _)| *at >= 35) {
        assert!(
            wal["events"].0 <= bound,
            "{at} s: {} bytes of events log on disk (bound {bound}: {rate:.0} B/s for 40 s and two segments)",
            wal["events"].0
        );
    }
    assert!(events.0 < events.1 / 2, "{events:?}");
}
