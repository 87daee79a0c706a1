//! Table maintenance, side by side in one run:
//!
//! 1. `count(*)` and attribution over `platform_event_logs` made of many
//!    small files (SLUICE_BENCH_FILES, default 20 000, of
//!    SLUICE_BENCH_ROWS_PER_FILE rows, 20), before and after one maintenance
//!    pass — the ratio is what compaction buys;
//! 2. compaction's throughput (input MB/s) against the bare rewrite of the
//!    same files a parquet-rs user would write: read every file with
//!    `ParquetRecordBatchReader`, concatenate, one `ArrowWriter` with the
//!    same properties (zstd). Target: ≥ 60 % of the bare rewrite.
//!
//! The small files are committed 200 per append (what 20 000 single-file
//! commits leave, without waiting for them): the writers' one-file commits
//! would take hours to replay here and give the same file count.
//!
//! `cargo bench --bench maintenance` (SLUICE_BENCH_RUNS queries per phase,
//! default 5).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use sluice_query::attribution::{AttributionParams, AttributionQuery, attribution};
use sluice_query::config::QueryConfig;
use sluice_query::engine::Engine;
use sluice_schema::raw::{Enrichment, RawEvent};
use sluice_schema::tables::EVENT_LOGS;
use sluice_warehouse::append::{POSITIONS_PROPERTY, TableSink, parquet_properties};
use sluice_warehouse::catalog::{self, CatalogConfig};
use sluice_warehouse::maintain::commit::MetadataCommitter;
use sluice_warehouse::maintain::metrics::MaintenanceMetrics;
use sluice_warehouse::maintain::snapshot::live_entries;
use sluice_warehouse::maintain::{Maintainer, MaintenanceConfig, RetentionConfig};
use sluice_warehouse::object_stores::ObjectStores;

mod common;
use common::{env_usize, median};

/// Two days before this.
const UNTIL_US: i64 = 1_795_219_200_000_000; // 2026-11-21T00:00:00Z

fn batch(file: usize, rows: usize) -> anyhow::Result<RecordBatch> {
    let rows: Vec<(RawEvent, Enrichment)> = (0..rows)
        .map(|i| {
            let n = file * rows + i;
            let at = UNTIL_US - 1 - ((n as i64 * 7_919_000) % (2 * 86_400_000_000));
            let e = RawEvent::from_json(&json!({
                "event_id": format!("e{n}"),
                "occurred_at": at / 1000,
                "service": format!("svc-{}", n % 5),
                "action": "jobs.list",
                "success": !n.is_multiple_of(7),
                "user_id": format!("user-{}", n % 97),
                "path": format!("/api/v1/jobs/{}", n % 1000),
                "status_code": 200,
                "latency_ms": (n % 300) as f64,
            }))?;
            Ok((
                e,
                Enrichment {
                    endpoint: Some("jobs/{id}".into()),
                    caller_type: Some("internal"),
                    team: Some(format!("team-{}", n % 9)),
                    domain: Some("data".into()),
                    ingested_at: Some(UNTIL_US),
                },
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(sluice_schema::batch::event_logs_batch(
        &Arc::new(EVENT_LOGS.arrow_schema()?),
        &rows,
    )?)
}

fn main() -> anyhow::Result<()> {
    let files = env_usize("SLUICE_BENCH_FILES", 20_000);
    let rows_per_file = env_usize("SLUICE_BENCH_ROWS_PER_FILE", 20);
    let runs = env_usize("SLUICE_BENCH_RUNS", 5);
    let per_commit = 200;
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("data");
    let (rt, catalog) = common::embedded_catalog(&data_dir)?;
    rt.block_on(catalog::ensure_tables(catalog.as_ref()))?;
    let sink = TableSink::new(catalog.clone(), &EVENT_LOGS, "bench");

    // Setup (not timed): the small files, 200 per append.
    let t = Instant::now();
    let mut written = 0;
    while written < files {
        let n = per_commit.min(files - written);
        rt.block_on(async {
            let table = sink.load().await?;
            let mut data_files = Vec::new();
            for f in written..written + n {
                let sorted = sink.sort(&[batch(f, rows_per_file)?])?;
                let (mut out, _) = sink.write_files(&table, sorted.as_ref()).await?;
                data_files.append(&mut out);
            }
            let positions = json!({"kafka:bench:0": written + n}).to_string();
            let tx = Transaction::new(&table);
            let action = tx
                .fast_append()
                .add_data_files(data_files)
                .set_snapshot_properties(HashMap::from([(
                    POSITIONS_PROPERTY.to_string(),
                    positions,
                )]));
            action.apply(tx)?.commit(catalog.as_ref()).await?;
            anyhow::Ok(())
        })?;
        written += n;
    }
    let table = rt.block_on(sink.load())?;
    let live = rt.block_on(live_entries(&table))?;
    let input_bytes: u64 = live.iter().map(|e| e.file_size_in_bytes()).sum();
    let paths: Vec<String> = live.iter().map(|e| e.file_path().to_string()).collect();
    eprintln!(
        "{} data files ({:.1} MB, {} rows) written in {:.0} s",
        live.len(),
        input_bytes as f64 / 1e6,
        files * rows_per_file,
        t.elapsed().as_secs_f64()
    );

    let engine = Engine::new(catalog.clone(), QueryConfig::default(), Default::default())?;
    let params = AttributionParams {
        by: Some("user".into()),
        from: Some("2026-11-19T00:00:00Z".into()),
        to: Some("2026-11-21T00:00:00Z".into()),
        ..Default::default()
    };
    let until = chrono::DateTime::from_timestamp_micros(UNTIL_US).unwrap_or_default();
    let q = AttributionQuery::from_params(&params, until)?;
    let measure = |label: &str| -> anyhow::Result<(f64, f64)> {
        let (mut count, mut attr) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            let out =
                rt.block_on(engine.sql("SELECT count(*) FROM platform_event_logs", Vec::new()))?;
            count.push(t.elapsed().as_secs_f64());
            anyhow::ensure!(out.rows == 1, "count(*) answered {} rows", out.rows);
            let t = Instant::now();
            let a = rt.block_on(attribution(&engine, &q))?;
            attr.push(t.elapsed().as_secs_f64());
            anyhow::ensure!(
                a.total as usize == files * rows_per_file,
                "{label}: attribution saw {} rows",
                a.total
            );
        }
        Ok((median(count), median(attr)))
    };
    let (count_before, attr_before) = measure("before")?;

    // The bare rewrite of the same files, as a parquet-rs user writes it.
    let t = Instant::now();
    let mut batches = Vec::new();
    for p in &paths {
        let file = std::fs::File::open(p.strip_prefix("file://").unwrap_or(p))?;
        for b in ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(64 * 1024)
            .build()?
        {
            batches.push(b?);
        }
    }
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| anyhow::anyhow!("no rows"))?;
    let out = std::fs::File::create(tmp.path().join("bare.parquet"))?;
    let mut w = ArrowWriter::try_new(out, schema.clone(), Some(parquet_properties(256 * 1024)))?;
    for b in &batches {
        w.write(b)?;
    }
    w.close()?;
    let bare_secs = t.elapsed().as_secs_f64();
    drop(batches);

    // One maintenance pass (compaction; nothing to expire or clean yet).
    let committer = rt.block_on(MetadataCommitter::open(
        &CatalogConfig::default(),
        &data_dir,
    ))?;
    let maintainer = Maintainer::new(
        catalog.clone(),
        committer,
        Arc::new(ObjectStores::default()),
        MaintenanceConfig {
            max_rewrite_mib: 1 << 20,
            ..MaintenanceConfig::default()
        },
        RetentionConfig {
            pod_logs: String::new(),
            platform_events: String::new(),
            alert_history: String::new(),
            platform_event_logs: String::new(),
        },
        MaintenanceMetrics::default(),
    )?;
    let t = Instant::now();
    let report = rt.block_on(maintainer.table(&EVENT_LOGS))?;
    let maintain_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.compacted_files == live.len(),
        "compacted {} of {} files",
        report.compacted_files,
        live.len()
    );
    let (count_after, attr_after) = measure("after")?;

    let mb = input_bytes as f64 / 1e6;
    println!(
        "maintenance over {} small files ({mb:.1} MB) → {} files",
        live.len(),
        report.data_files_after
    );
    println!(
        "  count(*):     {:.3} s before, {:.3} s after  ({:.1}x faster)",
        count_before,
        count_after,
        count_before / count_after
    );
    println!(
        "  attribution:  {:.3} s before, {:.3} s after  ({:.1}x faster)",
        attr_before,
        attr_after,
        attr_before / attr_after
    );
    println!(
        "  rewrite:      sluice maintain {:.1} MB/s ({maintain_secs:.2} s, whole pass), bare parquet-rs {:.1} MB/s ({bare_secs:.2} s): {:.0} %",
        mb / maintain_secs,
        mb / bare_secs,
        100.0 * bare_secs / maintain_secs
    );
    Ok(())
}
