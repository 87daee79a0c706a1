//! The writer's own cost, side by side with its ceiling, in one run:
//!
//! - sluice: raw JSON events (from memory) → decode → validate → enrich →
//!   Arrow → sorted, day-partitioned zstd Parquet → Iceberg commit (embedded
//!   catalog, local warehouse), in batches of `SLUICE_BENCH_BATCH` rows;
//! - ceiling: the same rows, already as Arrow batches, written by a bare
//!   parquet `ArrowWriter` with the same writer properties.
//!
//! `cargo bench --bench writer` (SLUICE_BENCH_EVENTS, default 2000000; SLUICE_BENCH_BATCH, default 250000 = the writer's `max_rows`).
//! Machines here are noisy: read the ratio, not the absolute numbers.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use sluice_ingest::catalog::{self, CatalogConfig, WarehouseConfig};
use sluice_ingest::enrich::{EnrichConfig, Enricher};
use sluice_ingest::sinks::iceberg::{Advance, Outcome, TableSink, file_source, parquet_properties};
use sluice_schema::tables::EVENT_LOGS;

mod common;
use common::{env_usize, generated_events};

fn main() -> anyhow::Result<()> {
    let events = env_usize("SLUICE_BENCH_EVENTS", 2_000_000);
    let batch_rows = env_usize("SLUICE_BENCH_BATCH", 250_000);
    let tmp = tempfile::tempdir()?;
    let (gen_dir, lines) = generated_events(tmp.path(), events, 1)?;
    let input_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let enricher = Enricher::new(&EnrichConfig {
        directory: Some(gen_dir.join("directory.yaml")),
        ..Default::default()
    })?;
    let schema = Arc::new(EVENT_LOGS.arrow_schema()?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // sluice: the whole writer path, committing every batch.
    let data_dir = tmp.path().join("data");
    let catalog = rt.block_on(catalog::open(
        &CatalogConfig::default(),
        &WarehouseConfig::default(),
        &data_dir,
    ))?;
    rt.block_on(catalog::ensure_tables(catalog.as_ref()))?;
    let sink = TableSink::new(catalog.clone(), &EVENT_LOGS, "bench");
    // As in `sluice import`: the next batch is decoded and built (on every
    // core) while the previous one is sorted, written and committed.
    let started = Instant::now();
    let mut prebuilt = Vec::new();
    let (mut decode, mut commit) = (0.0, 0.0);
    let (lines, enricher, schema) = (&lines, &enricher, &schema);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<RecordBatch>>(1);
        let producer = scope.spawn(move || -> anyhow::Result<f64> {
            let mut decode = 0.0;
            for chunk in lines.chunks(batch_rows) {
                let t = Instant::now();
                let payloads: Vec<(usize, &[u8])> = chunk
                    .iter()
                    .enumerate()
                    .map(|(n, l)| (n, l.as_slice()))
                    .collect();
                let decoded = enricher.decode_events(schema, &payloads, 0)?;
                decode += t.elapsed().as_secs_f64();
                if tx.send(decoded.batches).is_err() {
                    break;
                }
            }
            Ok(decode)
        });
        for (i, b) in rx.iter().enumerate() {
            let t = Instant::now();
            let advance = Advance {
                source: file_source(&format!("bench-{i}")),
                from: None,
                to: 1,
            };
            match rt.block_on(sink.commit(&[advance], &b))? {
                Outcome::Committed { .. } => {}
                other => anyhow::bail!("unexpected {other:?}"),
            }
            commit += t.elapsed().as_secs_f64();
            prebuilt.push(b);
        }
        decode = producer
            .join()
            .map_err(|_| anyhow::anyhow!("decoder thread panicked"))??;
        Ok(())
    })?;
    let sluice_secs = started.elapsed().as_secs_f64();

    // Ceiling: the same Arrow rows straight into Parquet files.
    let out = tmp.path().join("bare");
    std::fs::create_dir_all(&out)?;
    let started = Instant::now();
    for (i, parts) in prebuilt.iter().enumerate() {
        let file = std::fs::File::create(out.join(format!("{i}.parquet")))?;
        let mut w =
            ArrowWriter::try_new(file, schema.clone(), Some(parquet_properties(256 * 1024)))?;
        for b in parts {
            w.write(b)?;
        }
        w.close()?;
    }
    let bare_secs = started.elapsed().as_secs_f64();

    let rate = |s: f64| events as f64 / s;
    println!(
        "writer benchmark: {events} events, {:.1} MB of JSON, batches of {batch_rows}",
        input_bytes as f64 / 1e6
    );
    println!("{:<58} {:>12} {:>10}", "path", "events/s", "seconds");
    println!(
        "{:<58} {:>12.0} {:>10.2}",
        "sluice: JSON→validate→enrich→sorted Parquet→Iceberg commit",
        rate(sluice_secs),
        sluice_secs
    );
    println!(
        "{:<58} {:>12.0} {:>10.2}",
        "ceiling: bare Arrow→Parquet (same rows, same properties)",
        rate(bare_secs),
        bare_secs
    );
    println!(
        "  sluice phases (overlapped): decode+validate+enrich→Arrow {decode:.2}s, sort+Parquet+commit {commit:.2}s"
    );
    println!(
        "ratio sluice/ceiling: {:.0}%",
        100.0 * bare_secs / sluice_secs
    );
    Ok(())
}
