//! Files → broker-acknowledged messages, side by side in one run:
//!
//! - baseline: a bare rdkafka producer loop sending every line of one plain
//!   file as a message, with the collector's producer settings
//!   (idempotence, acks=all, lz4, linger 20 ms), until every delivery is
//!   acknowledged — the broker's ceiling here;
//! - `sluice collect` (the release binary) tailing the same lines spread
//!   over container log files, until `lines_produced` covers them all: once
//!   with the default (a JSON array of up to 500 lines of one container per
//!   message) and once with one line per message.
//!
//! Needs a Kafka-protocol broker: `scripts/test --bench collector` starts one.
//! SLUICE_BENCH_LINES sets the size (default 3000000), SLUICE_BENCH_ROUNDS
//! the alternating rounds of baseline and batched collector (default 3).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sluice_testkit::TestTopic;

mod common;
use common::{env_usize, median};

const CONTAINERS: usize = 50;

/// Writes `lines` CRI lines spread over containers, and the same lines into
/// one plain file; returns the bytes written per copy.
fn write_inputs(root: &Path, plain: &Path, lines: usize) -> anyhow::Result<usize> {
    let mut all = fs::File::create(plain)?;
    let mut files = Vec::new();
    for c in 0..CONTAINERS {
        let dir = root.join(format!("bench_api-{c}_uid-{c}/app"));
        fs::create_dir_all(&dir)?;
        files.push(std::io::BufWriter::new(fs::File::create(
            dir.join("0.log"),
        )?));
    }
    let mut bytes = 0;
    let mut line = String::new();
    for i in 0..lines {
        line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "2026-11-23T10:{:02}:{:02}.{:09}Z stdout F {{\"level\":\"info\",\"msg\":\"handled request\",\"path\":\"/v1/orders/{i}\",\"status\":200,\"duration_ms\":{}}}",
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1_000_000_000,
            i % 997
        );
        files[i % CONTAINERS].write_all(line.as_bytes())?;
        all.write_all(line.as_bytes())?;
        bytes += line.len();
    }
    for mut f in files {
        f.flush()?;
    }
    Ok(bytes)
}

fn bare_producer(bootstrap: &str, topic: &str, plain: &Path) -> anyhow::Result<(usize, f64)> {
    let content = fs::read(plain)?;
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "196608")
        .set("message.timeout.ms", "0")
        .create()?;
    let started = Instant::now();
    let mut n = 0;
    for line in content.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    // Queue full: the same back-pressure the collector sees.
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        n += 1;
    }
    producer.flush(Duration::from_secs(300))?;
    Ok((n, started.elapsed().as_secs_f64()))
}

fn metric(addr: &str, name: &str) -> f64 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0.0;
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn sluice_collect(
    root: &Path,
    data: &Path,
    bootstrap: &str,
    topic: &str,
    batch_lines: usize,
    lines: usize,
) -> anyhow::Result<f64> {
    let http = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(data)
        .args([
            "--kafka",
            bootstrap,
            "--http",
            &http,
            "collect",
            "--pods-root",
        ])
        .arg(root)
        .env("SLUICE_KAFKA__TOPICS__PODLOGS", topic)
        .env("SLUICE_COLLECTOR__BATCH_LINES", batch_lines.to_string())
        .env("SLUICE_LOG", "warn")
        .env_remove("SLUICE_CONFIG")
        .stdout(Stdio::null())
        .spawn()?;
    loop {
        if metric(&http, "sluice_collector_lines_produced_total") >= lines as f64 {
            break;
        }
        anyhow::ensure!(child.try_wait()?.is_none(), "sluice collect exited early");
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "sluice collect stalled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    Ok(secs)
}

fn main() -> anyhow::Result<()> {
    let lines = env_usize("SLUICE_BENCH_LINES", 3_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("pods");
    let plain = tmp.path().join("all.log");
    let bytes = write_inputs(&root, &plain, lines)?;

    // Baseline and batched alternate, medians compared: this machine's
    // speed drifts by a fifth from one run to the next.
    let rounds = env_usize("SLUICE_BENCH_ROUNDS", 3).max(1);
    let (mut bare_runs, mut batch_runs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let t_bare = rt.block_on(TestTopic::create(&format!("bench-bare-{round}"), 2));
        let (sent, secs) = bare_producer(&t_bare.bootstrap, &t_bare.name, &plain)?;
        anyhow::ensure!(sent == lines, "bare loop sent {sent}");
        bare_runs.push(secs);
        let t_batch = rt.block_on(TestTopic::create(&format!("bench-collect-{round}"), 2));
        batch_runs.push(sluice_collect(
            &root,
            &tmp.path().join(format!("data-batch-{round}")),
            &t_batch.bootstrap,
            &t_batch.name,
            500,
            lines,
        )?);
        eprintln!(
            "round {}: bare {:.2}s, sluice (batched) {:.2}s",
            round + 1,
            bare_runs[round],
            batch_runs[round]
        );
    }
    let (bare_secs, batch_secs) = (median(bare_runs), median(batch_runs));
    let t_single = rt.block_on(TestTopic::create("bench-collect1", 2));
    let single_secs = sluice_collect(
        &root,
        &tmp.path().join("data-single"),
        &t_single.bootstrap,
        &t_single.name,
        1,
        lines,
    )?;

    let rate = |s: f64| lines as f64 / s;
    println!(
        "collector benchmark: {lines} lines, {:.1} MB, {CONTAINERS} container files, topics with 2 partitions; baseline and batched: medians of {rounds} alternating rounds",
        bytes as f64 / 1e6
    );
    println!("{:<64} {:>12} {:>10}", "path", "lines/s", "seconds");
    println!(
        "{:<64} {:>12.0} {:>10.2}",
        "sluice collect, 500 lines per message (default)",
        rate(batch_secs),
        batch_secs
    );
    println!(
        "{:<64} {:>12.0} {:>10.2}",
        "sluice collect, 1 line per message",
        rate(single_secs),
        single_secs
    );
    println!(
        "{:<64} {:>12.0} {:>10.2}",
        "baseline: bare rdkafka producer loop, 1 line per message",
        rate(bare_secs),
        bare_secs
    );
    println!(
        "ratio sluice (batched) / bare loop: {:.0}%; sluice (1 line per message) / bare loop: {:.0}%",
        100.0 * bare_secs / batch_secs,
        100.0 * bare_secs / single_secs
    );
    Ok(())
}
