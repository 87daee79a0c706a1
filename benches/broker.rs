//! Through the broker, side by side in one run: the same topic of raw events
//! drained by
//!
//! - a bare rdkafka consumer loop (poll, count, nothing else): the baseline;
//! - `sluice write` (the release binary, as an operator runs it): consume →
//!   validate → enrich → Parquet → Iceberg commit, timed until the table's
//!   positions cover every message;
//! - `sluice import` over the generator's files of the same events: the
//!   import path the Kafka path is held to (≥ 90 % of its rate).
//!
//! Both clocks start at the first message consumed (after the group join,
//! which both pay and which says nothing about throughput); sluice's stops
//! when the table holds everything, its last batch cut by the default
//! `max_age` like in production. Needs a Kafka-protocol broker:
//! `scripts/test --bench broker` starts one (SLUICE_TEST_KAFKA).
//! SLUICE_BENCH_EVENTS sets the size (default 1000000), SLUICE_BENCH_ROUNDS
//! the rounds (default 3; medians are compared).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_schema::tables::EVENT_LOGS;
use sluice_testkit::TestTopic;
use sluice_warehouse::append::TableSink;
use sluice_warehouse::catalog::{self, CatalogConfig, WarehouseConfig};

mod common;
use common::{env_usize, generated_events, median};

fn main() -> anyhow::Result<()> {
    let events = env_usize("SLUICE_BENCH_EVENTS", 1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let (gen_dir, lines) = generated_events(tmp.path(), events, 3)?;
    let input_bytes: usize = lines.iter().map(|l| l.len()).sum();

    let topic = rt.block_on(TestTopic::create("bench-broker", 2));
    eprintln!("producing {} events to {}", lines.len(), topic.name);
    rt.block_on(async {
        let producer: FutureProducer = topic
            .client_config()
            .set("linger.ms", "20")
            .set("compression.type", "zstd")
            .set("queue.buffering.max.messages", "1000000")
            .create()?;
        let mut pending = Vec::with_capacity(10_000);
        for l in &lines {
            pending
                .push(producer.send_result(FutureRecord::<(), [u8]>::to(&topic.name).payload(l)));
            if pending.len() == 10_000 {
                for p in pending.drain(..) {
                    p.map_err(|(e, _)| e)?.await?.map_err(|(e, _)| e)?;
                }
            }
        }
        for p in pending.drain(..) {
            p.map_err(|(e, _)| e)?.await?.map_err(|(e, _)| e)?;
        }
        anyhow::Ok(())
    })?;

    let rounds = env_usize("SLUICE_BENCH_ROUNDS", 3).max(1);
    let (mut bare, mut import, mut write) = (Vec::new(), Vec::new(), Vec::new());
    // Rounds alternate the three paths, so a slow stretch of the machine
    // (the broker flushing on the same two cores) does not fall on one.
    for round in 0..rounds {
        bare.push(bare_consumer(&topic, &lines, input_bytes, round)?);
        import.push(sluice_import(tmp.path(), &gen_dir, lines.len(), round)?);
        write.push(sluice_write(
            &rt,
            tmp.path(),
            &gen_dir,
            &topic,
            lines.len(),
            round,
        )?);
        eprintln!(
            "round {}: write {:.2} s, import {:.2} s, bare consumer {:.2} s",
            round + 1,
            write[round],
            import[round],
            bare[round]
        );
    }
    let (bare_secs, import_secs, sluice_secs) = (median(bare), median(import), median(write));

    let rate = |s: f64| lines.len() as f64 / s;
    println!(
        "broker benchmark: {} events, {:.1} MB, topic with 2 partitions, median of {rounds} rounds",
        lines.len(),
        input_bytes as f64 / 1e6
    );
    println!("{:<58} {:>12} {:>10}", "path", "events/s", "seconds");
    println!(
        "{:<58} {:>12.0} {:>10.2}",
        "sluice write: Kafka → committed Iceberg rows",
        rate(sluice_secs),
        sluice_secs
    );
    println!(
        "{:<58} {:>12.0} {:>10.2}",
        "sluice import: the same events from files → Iceberg rows",
        rate(import_secs),
        import_secs
    );
    println!(
        "{:<58} {:>12.0} {:>10.2}",
        "baseline: bare rdkafka consumer loop",
        rate(bare_secs),
        bare_secs
    );
    println!(
        "ratio Kafka path/import path: {:.2} (target ≥ 0.90)",
        import_secs / sluice_secs
    );
    println!(
        "ratio sluice/bare consumer: {:.0}%",
        100.0 * bare_secs / sluice_secs
    );
    Ok(())
}

/// Baseline: a bare consumer loop (poll, count bytes), clock from the first
/// message.
fn bare_consumer(
    topic: &TestTopic,
    lines: &[Vec<u8>],
    input_bytes: usize,
    round: usize,
) -> anyhow::Result<f64> {
    let mut started = Instant::now();
    let consumer: BaseConsumer = topic
        .client_config()
        .set("group.id", format!("bare-{}-{round}", topic.name))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic.name])?;
    let mut seen = 0usize;
    let mut bytes = 0usize;
    while seen < lines.len() {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            if seen == 0 {
                started = Instant::now();
            }
            bytes += rdkafka::Message::payload(&m?).map_or(0, <[u8]>::len);
            seen += 1;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "bare consumer stalled"
        );
    }
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        bytes == input_bytes,
        "bare consumer saw {bytes} of {input_bytes} bytes"
    );
    Ok(secs)
}

/// The import path over the same events: `sluice import` reading the
/// generator's files (validation, enrichment, Parquet, Iceberg commits, the
/// same code after decoding), timed from process start to exit.
fn sluice_import(
    tmp: &std::path::Path,
    gen_dir: &std::path::Path,
    events: usize,
    round: usize,
) -> anyhow::Result<f64> {
    let import_dir = tmp.join(format!("import-{round}"));
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--data-dir",
            import_dir.to_str().unwrap_or_default(),
            "import",
            gen_dir.to_str().unwrap_or_default(),
            "--format",
            "json",
        ])
        .env("SLUICE_ENRICH__DIRECTORY", gen_dir.join("directory.yaml"))
        .env("SLUICE_LOG", "warn")
        .env_remove("SLUICE_CONFIG")
        .stdout(Stdio::piped())
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "sluice import failed: {out:?}");
    // The summary is a table of {item, count} rows.
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let imported = rows
        .iter()
        .find(|r| r["item"] == "platform events")
        .and_then(|r| r["count"].as_u64());
    anyhow::ensure!(
        imported == Some(events as u64),
        "sluice import took {imported:?} of {events} events"
    );
    std::fs::remove_dir_all(&import_dir)?;
    Ok(secs)
}

/// `sluice write` (the release binary, as an operator runs it) in a group of
/// its own, until the table's positions cover every message; clock from the
/// first message consumed.
fn sluice_write(
    rt: &tokio::runtime::Runtime,
    tmp: &std::path::Path,
    gen_dir: &std::path::Path,
    topic: &TestTopic,
    events: usize,
    round: usize,
) -> anyhow::Result<f64> {
    let data_dir = tmp.join(format!("data-{round}"));
    let http = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string();
    let mut started = Instant::now();
    let mut consuming = false;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--data-dir",
            data_dir.to_str().unwrap_or_default(),
            "--kafka",
            &topic.bootstrap,
            "--http",
            &http,
            "write",
        ])
        .env("SLUICE_KAFKA__TOPICS__EVENTS", &topic.name)
        .env(
            "SLUICE_KAFKA__GROUP_ID",
            format!("sluice-{}-{round}", topic.name),
        )
        .env("SLUICE_ENRICH__DIRECTORY", gen_dir.join("directory.yaml"))
        // SLUICE_BENCH_WRITER_LOG=sluice_ingest=debug shows each batch's
        // cut, decode and commit.
        .env(
            "SLUICE_LOG",
            std::env::var("SLUICE_BENCH_WRITER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("SLUICE_CONFIG")
        .stdout(Stdio::null())
        .spawn()?;
    let committed = rt.block_on(async {
        let mut sink: Option<TableSink> = None;
        loop {
            if sink.is_none() && data_dir.join("catalog.db").exists() {
                let catalog = catalog::open(
                    &CatalogConfig::default(),
                    &WarehouseConfig::default(),
                    &data_dir,
                )
                .await?;
                sink = Some(TableSink::new(Arc::clone(&catalog), &EVENT_LOGS, "probe"));
            }
            if !consuming && consumed(&http) > 0 {
                consuming = true;
                started = Instant::now();
            }
            if let Some(s) = &sink
                && let Ok(p) = s.current_positions().await
            {
                let n: i64 = p.values().sum();
                if n as usize >= events {
                    return anyhow::Ok(n);
                }
            }
            anyhow::ensure!(child.try_wait()?.is_none(), "sluice write exited early");
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "sluice write stalled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    anyhow::ensure!(committed as usize == events, "committed {committed}");
    std::fs::remove_dir_all(&data_dir)?;
    Ok(secs)
}

/// `sluice_writer_events_consumed_total` from the writer's `/metrics`.
fn consumed(addr: &str) -> u64 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with("sluice_writer_events_consumed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
