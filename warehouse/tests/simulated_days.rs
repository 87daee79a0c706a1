//! Bounded state: six simulated days of a busy writer — a commit every
//! simulated 20 minutes, maintenance every simulated hour, two days of
//! retention — on a real SQLite catalog and local warehouse. The
//! maintainer's clock is the simulated one; everything else (snapshot
//! times, file ages) is real.
//!
//! The bounds asserted (docs/maintenance.md, "What stays bounded"):
//! - data files per day partition: one after each pass (a day's rows are
//!   far under the target size), plus one per commit between passes;
//! - manifests per table: at most `max_manifests` plus the commits between
//!   passes;
//! - the warehouse (files and bytes) stops growing once retention is
//!   reached: each later day ends within a tenth of the first such day;
//! - the table holds exactly the rows of the retained days.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arrow_array::RecordBatch;
use serde_json::json;
use sluice_schema::batch;
use sluice_schema::raw::{Enrichment, RawEvent};
use sluice_schema::tables::{EVENT_LOGS, PLATFORM_EVENTS, POD_LOGS};
use sluice_warehouse::append::{Advance, Outcome, TableSink, kafka_source};
use sluice_warehouse::catalog::{CatalogConfig, WarehouseConfig};
use sluice_warehouse::maintain::commit::MetadataCommitter;
use sluice_warehouse::maintain::metrics::MaintenanceMetrics;
use sluice_warehouse::maintain::{Maintainer, MaintenanceConfig, RetentionConfig, snapshot};
use sluice_warehouse::object_stores::ObjectStores;

const DAY_MS: i64 = 86_400_000;
const COMMIT_EVERY_MS: i64 = 20 * 60_000;
const COMMITS_PER_PASS: usize = 3;
const DAYS: i64 = 6;
const ROWS_PER_COMMIT: usize = 40;
const MAX_MANIFESTS: usize = 8;

/// A commit's rows, spread over its 20 simulated minutes.
fn rows(slot: i64, at_ms: i64) -> RecordBatch {
    let rows: Vec<(RawEvent, Enrichment)> = (0..ROWS_PER_COMMIT)
        .map(|i| {
            let e = RawEvent::from_json(&json!({
                "event_id": format!("e-{slot}-{i}"),
                "occurred_at": at_ms + i as i64 * (COMMIT_EVERY_MS / ROWS_PER_COMMIT as i64),
                "service": "iom-core",
                "action": format!("a{}", i % 7),
                "user_id": format!("u{}", (slot + i as i64) % 13),
                "success": i % 5 != 0,
                "duration_ms": (i * 3) as i64,
            }))
            .unwrap();
            (e, Enrichment::default())
        })
        .collect();
    batch::event_logs_batch(&Arc::new(EVENT_LOGS.arrow_schema().unwrap()), &rows).unwrap()
}

/// Files and bytes under `dir` by kind (data, metadata.json, manifest
/// lists, manifests, the catalog database), for failure messages.
fn breakdown(dir: &Path) -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let kind = if name.ends_with(".parquet") {
                "data"
            } else if name.ends_with(".metadata.json") {
                "metadata.json"
            } else if name.starts_with("snap-") {
                "manifest list"
            } else if name.ends_with(".avro") {
                "manifest"
            } else {
                "other"
            };
            let key = if kind == "other" {
                name
            } else {
                kind.to_string()
            };
            let entry: &mut (u64, u64) = out.entry(key).or_default();
            entry.0 += 1;
            entry.1 += meta.len();
        }
    }
    out
}

/// (files, bytes) under `dir`.
fn disk(dir: &Path) -> (u64, u64) {
    breakdown(dir)
        .values()
        .fold((0, 0), |(f, b), (files, bytes)| (f + files, b + bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_simulated_days_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let catalog_cfg = CatalogConfig::default();
    let warehouse = WarehouseConfig::default();
    let catalog = common::embedded_catalog(dir.path()).await;
    let sink = TableSink::new(catalog.clone(), &EVENT_LOGS, "sim");
    let committer = MetadataCommitter::open(&catalog_cfg, dir.path())
        .await
        .unwrap();

    // 2026-11-01T00:00Z, advanced by the loop.
    let start = 20_393 * DAY_MS;
    let now = Arc::new(AtomicI64::new(start));
    let clock = now.clone();
    let maintainer = Maintainer::new(
        catalog.clone(),
        committer,
        Arc::new(ObjectStores::new(warehouse.s3.clone())),
        MaintenanceConfig {
            max_manifests: MAX_MANIFESTS,
            snapshot_max_age_secs: 0,
            snapshots_to_keep: 3,
            orphan_min_age_secs: 0,
            ..MaintenanceConfig::default()
        },
        RetentionConfig {
            platform_event_logs: "2d".into(),
            pod_logs: String::new(),
            platform_events: String::new(),
            alert_history: String::new(),
        },
        MaintenanceMetrics::default(),
    )
    .unwrap()
    .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));

    let source = kafka_source("sim", 0);
    let slots = DAYS * DAY_MS / COMMIT_EVERY_MS;
    let mut worst_files_per_partition = 0;
    let mut worst_manifests = 0;
    let mut end_of_day: Vec<(u64, u64)> = Vec::new();
    for slot in 0..slots {
        let at = start + slot * COMMIT_EVERY_MS;
        now.store(at + COMMIT_EVERY_MS, Ordering::SeqCst);
        let outcome = sink
            .commit(
                &[Advance {
                    source: source.clone(),
                    from: (slot > 0).then_some(slot),
                    to: slot + 1,
                }],
                &[rows(slot, at)],
            )
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Committed { .. }), "{outcome:?}");
        if !(slot as usize + 1).is_multiple_of(COMMITS_PER_PASS) {
            continue;
        }

        // Just before a pass is the worst moment: measure then.
        let table = sink.load().await.unwrap();
        let live = snapshot::live_entries(&table).await.unwrap();
        let mut per_partition: HashMap<String, usize> = HashMap::new();
        for e in &live {
            *per_partition
                .entry(format!("{:?}", e.data_file().partition()))
                .or_default() += 1;
        }
        worst_files_per_partition =
            worst_files_per_partition.max(per_partition.values().copied().max().unwrap_or(0));
        let manifests = table
            .manifest_list_reader(table.metadata().current_snapshot().unwrap())
            .load()
            .await
            .unwrap()
            .entries()
            .len();
        worst_manifests = worst_manifests.max(manifests);

        for r in maintainer.run_once().await {
            r.unwrap();
        }
        let ends_day = (at + COMMIT_EVERY_MS) % DAY_MS == 0;
        if ends_day {
            end_of_day.push(disk(dir.path()));
            eprintln!(
                "end of day {}: {:?}",
                end_of_day.len(),
                breakdown(dir.path())
            );
        }
    }

    // After each pass one file per partition, so before the next at most
    // one more per commit in between (and the commit that crosses midnight
    // writes to two partitions).
    assert!(
        worst_files_per_partition <= 1 + COMMITS_PER_PASS,
        "{worst_files_per_partition} data files in one partition"
    );
    assert!(
        worst_manifests <= MAX_MANIFESTS + COMMITS_PER_PASS,
        "{worst_manifests} manifests"
    );

    // Retention keeps the last two whole days, reached by the end of the
    // second; from the third on, each day ends where the third ended.
    assert_eq!(end_of_day.len(), DAYS as usize);
    let (files_at, bytes_at) = end_of_day[2];
    for (day, &(files, bytes)) in end_of_day.iter().enumerate().skip(3) {
        assert!(
            files as f64 <= files_at as f64 * 1.1 && bytes as f64 <= bytes_at as f64 * 1.1,
            "day {day}: {files} files, {bytes} bytes; day 2: {files_at} files, {bytes_at} bytes ({end_of_day:?}); now {:?}",
            breakdown(dir.path())
        );
    }
    // And it did grow before: the bound is retention's, not an empty table.
    assert!(end_of_day[0].1 < bytes_at, "{end_of_day:?}");

    // The idle tables were passed over 144 times and gained no metadata
    // version: a pass with nothing to do commits nothing.
    for idle in [&PLATFORM_EVENTS, &POD_LOGS] {
        let table = catalog.load_table(&idle.ident()).await.unwrap();
        assert!(
            table.metadata().metadata_log().len() <= 1,
            "{}: {} metadata versions",
            idle.name,
            table.metadata().metadata_log().len() + 1
        );
    }

    // Exactly the retained days' rows. The last pass ran at the end of the
    // last day, when the day before the last two had just ended two days
    // ago (all of it older than the retention): the last two days remain.
    assert_eq!(
        common::rows(&sink).await,
        2 * (DAY_MS / COMMIT_EVERY_MS) as usize * ROWS_PER_COMMIT
    );
    eprintln!(
        "bounded: <= {worst_files_per_partition} files per partition, <= {worst_manifests} manifests; end of each day (files, bytes): {end_of_day:?}"
    );
}
