//! The writer's own cost, side by side with its ceiling, in one run:
//!
//! - sluice: raw JSON events (from memory) → decode → validate → enrich →
//!   Arrow → sorted, day-partitioned zstd Parquet → Iceberg commit (embedded
//!   catalog, local warehouse), in batches of `SLUICE_BENCH_BATCH` rows, the
//!   next batch decoded while the previous one is written, as `sluice write`
//!   and `sluice import` do;
//! - ceiling: the same rows, already as Arrow batches, written by a bare
//!   parquet `ArrowWriter` with the same writer properties.
//!
//! The two alternate for `SLUICE_BENCH_ROUNDS` rounds and the medians are
//! compared, since this machine's speed drifts by ±20 % from one second to
//! the next.
//!
//! `cargo bench --bench writer` (SLUICE_BENCH_EVENTS, default 2000000;
//! SLUICE_BENCH_BATCH, default 250000 = the writer's `max_rows`;
//! SLUICE_BENCH_ROUNDS, default 3).

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use sluice_ingest::enrich::{EnrichConfig, Enricher};
use sluice_schema::tables::EVENT_LOGS;
use sluice_warehouse::append::{
    Advance, Outcome, Sorted, TableSink, file_source, parquet_properties,
};
use sluice_warehouse::catalog;

mod common;
use common::{env_usize, generated_events, median};

/// One sluice run: wall seconds, decode seconds, commit seconds, and the
/// Arrow batches it built (per commit).
struct SluiceRun {
    secs: f64,
    decode: f64,
    commit: f64,
    batches: Vec<Vec<RecordBatch>>,
}

fn sluice_run(
    rt: &tokio::runtime::Runtime,
    sink: &TableSink,
    enricher: &Enricher,
    schema: &arrow_schema::SchemaRef,
    lines: &[Vec<u8>],
    batch_rows: usize,
    round: usize,
) -> anyhow::Result<SluiceRun> {
    let started = Instant::now();
    let mut batches = Vec::new();
    let mut commit = 0.0;
    let decode = std::thread::scope(|scope| -> anyhow::Result<f64> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<RecordBatch>, Option<Sorted>)>(1);
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
                let sorted = sink.sort(&decoded.batches)?;
                decode += t.elapsed().as_secs_f64();
                if tx.send((decoded.batches, sorted)).is_err() {
                    break;
                }
            }
            Ok(decode)
        });
        for (i, (b, sorted)) in rx.iter().enumerate() {
            let t = Instant::now();
            let advance = Advance {
                source: file_source(&format!("bench-{round}-{i}")),
                from: None,
                to: 1,
            };
            match rt.block_on(sink.commit_sorted(&[advance], sorted.as_ref()))? {
                Outcome::Committed { .. } => {}
                other => anyhow::bail!("unexpected {other:?}"),
            }
            commit += t.elapsed().as_secs_f64();
            batches.push(b);
        }
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("decoder thread panicked"))?
    })?;
    Ok(SluiceRun {
        secs: started.elapsed().as_secs_f64(),
        decode,
        commit,
        batches,
    })
}

fn bare_run(
    out: &std::path::Path,
    schema: &arrow_schema::SchemaRef,
    batches: &[Vec<RecordBatch>],
) -> anyhow::Result<f64> {
    std::fs::create_dir_all(out)?;
    let started = Instant::now();
    for (i, parts) in batches.iter().enumerate() {
        let file = std::fs::File::create(out.join(format!("{i}.parquet")))?;
        let mut w =
            ArrowWriter::try_new(file, schema.clone(), Some(parquet_properties(256 * 1024)))?;
        for b in parts {
            w.write(b)?;
        }
        w.close()?;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let events = env_usize("SLUICE_BENCH_EVENTS", 2_000_000);
    let batch_rows = env_usize("SLUICE_BENCH_BATCH", 250_000);
    let rounds = env_usize("SLUICE_BENCH_ROUNDS", 3).max(1);
    let tmp = tempfile::tempdir()?;
    let (gen_dir, lines) = generated_events(tmp.path(), events, 1)?;
    let input_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let enricher = Enricher::new(&EnrichConfig {
        directory: Some(gen_dir.join("directory.yaml")),
        ..Default::default()
    })?;
    let schema = Arc::new(EVENT_LOGS.arrow_schema()?);
    let data_dir = tmp.path().join("data");
    let (rt, catalog) = common::embedded_catalog(&data_dir)?;
    rt.block_on(catalog::ensure_tables(catalog.as_ref()))?;
    let sink = TableSink::new(catalog.clone(), &EVENT_LOGS, "bench");

    let (mut sluice, mut bare, mut decode, mut commit) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let run = sluice_run(&rt, &sink, &enricher, &schema, &lines, batch_rows, round)?;
        let b = bare_run(
            &tmp.path().join(format!("bare-{round}")),
            &schema,
            &run.batches,
        )?;
        eprintln!(
            "round {}: sluice {:.2}s (decode+sort {:.2}s, Parquet+commit {:.2}s), bare {b:.2}s",
            round + 1,
            run.secs,
            run.decode,
            run.commit
        );
        sluice.push(run.secs);
        decode.push(run.decode);
        commit.push(run.commit);
        bare.push(b);
    }
    let (sluice_secs, bare_secs) = (median(sluice), median(bare));
    let rate = |s: f64| events as f64 / s;
    println!(
        "writer benchmark: {events} events, {:.1} MB of JSON, batches of {batch_rows}, median of {rounds} alternating rounds",
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
        "  sluice stages (overlapped, medians): decode+validate+enrich→Arrow+sort {:.2}s, Parquet+commit {:.2}s",
        median(decode),
        median(commit)
    );
    println!(
        "ratio sluice/ceiling: {:.0}%",
        100.0 * bare_secs / sluice_secs
    );
    Ok(())
}
