//! Live-tail latency of `sluice up`: the time from a log line written to a
//! kubelet file until a tail client receives it, p50 and p95, under the
//! demo's load and under 10× that load, in one run. Target: p95 ≤ 1 s.
//!
//! Side by side, the same lines read by `tail -n0 -F` on the very file: the
//! floor a node-local follower reaches (`kubectl logs -f` is the kubelet
//! reading the file the same way), so the ratio says what sluice's path
//! (tailer → writer hand-off → live stream → HTTP) adds to it.
//!
//! Each probe is a new line of a probe pod's `0.log` in the demo's own pod
//! tree, so the same tailer reads it; the sluice client is a
//! `GET /v1/logs/tail?pod=…` stream, as `sluice logs tail -f` and the
//! console read it.
//!
//! `scripts/test --bench tail`. SLUICE_BENCH_PROBES sets the probes per
//! load (default 200, one every 20 ms), SLUICE_BENCH_WARMUP_SECS the
//! demo's run before the first probe (default 15).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::env_usize;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn percentile(times: &[f64], p: f64) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    t[((t.len() - 1) as f64 * p).round() as usize]
}

/// When each probe number arrived.
type Arrivals = Arc<Mutex<HashMap<usize, Instant>>>;

fn probe_number(text: &str) -> Option<usize> {
    let at = text.find("tail probe ")?;
    text[at + 11..].split_whitespace().next()?.parse().ok()
}

/// Reads `/v1/logs/tail` and notes each probe's arrival.
async fn sluice_client(base: String, arrivals: Arrivals) -> anyhow::Result<()> {
    let mut r = reqwest::Client::new()
        .get(format!("{base}/v1/logs/tail?pod=tail-probe&lines=0"))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "tail: {}", r.status());
    let mut buf = Vec::new();
    while let Some(chunk) = r.chunk().await? {
        let now = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let event: Vec<u8> = buf.drain(..=i).collect();
            let v: serde_json::Value = serde_json::from_slice(&event)?;
            for l in v["lines"].as_array().into_iter().flatten() {
                if let Some(n) = l["message"].as_str().and_then(probe_number) {
                    arrivals.lock().unwrap().entry(n).or_insert(now);
                }
            }
        }
    }
    Ok(())
}

/// `tail -n0 -F file`, noting each probe's arrival.
fn tail_f(file: &Path, arrivals: Arrivals) -> anyhow::Result<Killed> {
    let mut child = Command::new("tail")
        .args(["-n0", "-F"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(n) = probe_number(&line) {
                arrivals
                    .lock()
                    .unwrap()
                    .entry(n)
                    .or_insert_with(Instant::now);
            }
        }
    });
    Ok(Killed(child))
}

/// Runs the demo at `load`; (sluice p50, p95, tail -F p50, p95) in seconds.
fn measure(load: f64, probes: usize, warmup: u64) -> anyhow::Result<[f64; 4]> {
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let _up = Killed(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--http", &addr, "up", "--demo", "--demo-load"])
            .arg(load.to_string())
            .env_remove("SLUICE_CONFIG")
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let base = format!("http://{addr}");
    rt.block_on(async {
        let start = Instant::now();
        let client = reqwest::Client::new();
        while !client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "never ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(())
    })?;
    std::thread::sleep(Duration::from_secs(warmup));
    let pod_dir = dir
        .path()
        .join("demo/var/log/pods/bench_tail-probe_0b7c6d4e-0000-4000-8000-0000000000a1/probe");
    std::fs::create_dir_all(&pod_dir)?;
    let path = pod_dir.join("0.log");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let (ours, theirs): (Arrivals, Arrivals) = Default::default();
    let _tail = tail_f(&path, theirs.clone())?;
    let client = rt.spawn(sluice_client(base, ours.clone()));
    // The stream is open once its (empty) backfill is sent; give both
    // followers a moment.
    std::thread::sleep(Duration::from_secs(2));
    let mut written = Vec::with_capacity(probes);
    for i in 0..probes {
        let now = chrono::Utc::now();
        let line = format!(
            "{} stdout F tail probe {i} written\n",
            now.format("%Y-%m-%dT%H:%M:%S%.9fZ")
        );
        file.write_all(line.as_bytes())?;
        file.flush()?;
        written.push(Instant::now());
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (ours.lock().unwrap().len() < probes || theirs.lock().unwrap().len() < probes)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    client.abort();
    let latencies = |arrivals: &Arrivals| -> anyhow::Result<Vec<f64>> {
        let got = arrivals.lock().unwrap();
        anyhow::ensure!(
            got.len() == probes,
            "{} of {probes} probes arrived",
            got.len()
        );
        Ok(written
            .iter()
            .enumerate()
            .map(|(i, w)| got[&i].saturating_duration_since(*w).as_secs_f64())
            .collect())
    };
    let (s, t) = (latencies(&ours)?, latencies(&theirs)?);
    Ok([
        percentile(&s, 0.5),
        percentile(&s, 0.95),
        percentile(&t, 0.5),
        percentile(&t, 0.95),
    ])
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let probes = env_usize("SLUICE_BENCH_PROBES", 200).max(2);
    let warmup = env_usize("SLUICE_BENCH_WARMUP_SECS", 15) as u64;
    println!(
        "live tail of `sluice up --demo`: line written → received ({probes} probes per load; target p95 ≤ 1 s)"
    );
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>14} {:>10}",
        "load", "sluice p50", "sluice p95", "tail -F p50", "tail -F p95", "p95 ratio"
    );
    for load in [1.0, 10.0] {
        let [sp50, sp95, tp50, tp95] = measure(load, probes, warmup)?;
        println!(
            "{:<10} {:>10.1}ms {:>10.1}ms {:>12.1}ms {:>12.1}ms {:>9.1}×",
            format!("demo ×{load}"),
            sp50 * 1e3,
            sp95 * 1e3,
            tp50 * 1e3,
            tp95 * 1e3,
            sp95 / tp95.max(1e-6)
        );
    }
    Ok(())
}
