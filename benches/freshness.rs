//! End-to-end freshness of `sluice up`: the time from a log line written to
//! a kubelet file until log search returns it, and from an event POSTed to
//! the intake until attribution counts it — p50 and p95, under the demo's
//! load and under 10× that load, in one run. Target: p95 ≤ 5 s.
//!
//! Each probe is a unique word in a new line of a probe pod's `0.log` (in
//! the demo's own pod tree, so the same tailer reads it) and an event of a
//! probe service; both are polled every 50 ms through the HTTP API, as an
//! operator or the console would see them.
//!
//! `scripts/test --bench freshness`. SLUICE_BENCH_PROBES sets the probes
//! per load (default 20), SLUICE_BENCH_WARMUP_SECS the demo's run before
//! the first probe (default 20).

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::env_usize;

struct Up(Child);

impl Drop for Up {
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

struct Probe {
    client: reqwest::Client,
    base: String,
}

impl Probe {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok(body)
    }

    /// Seconds until `check` holds, polling every 50 ms (at most 60 s).
    async fn until(
        &self,
        start: Instant,
        path: &str,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<f64> {
        loop {
            if check(&self.get(path).await?) {
                return Ok(start.elapsed().as_secs_f64());
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60),
                "{path} never matched"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn log_line(&self, file: &mut std::fs::File, word: &str) -> anyhow::Result<f64> {
        let now = chrono::Utc::now();
        let line = format!(
            "{} stdout F freshness probe {word} written\n",
            now.format("%Y-%m-%dT%H:%M:%S%.9fZ")
        );
        let start = Instant::now();
        file.write_all(line.as_bytes())?;
        file.flush()?;
        self.until(
            start,
            &format!("/v1/logs/search?q={word}&from=1h&limit=1"),
            |v| v["total"].as_u64() == Some(1),
        )
        .await
    }

    async fn event(&self, service: &str) -> anyhow::Result<f64> {
        let now = chrono::Utc::now();
        let event = json!({
            "event_id": uuid::Uuid::new_v4().to_string(),
            "occurred_at": now.to_rfc3339(),
            "service": service,
            "action": "probe.get",
            "success": true,
            "user_id": "freshness-probe",
            "method": "GET",
            "path": "/probe",
            "status_code": 200,
            "latency_ms": 1.0,
        });
        let start = Instant::now();
        let r = self
            .client
            .post(format!("{}/v1/events", self.base))
            .json(&event)
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "intake: {}", r.status());
        self.until(
            start,
            &format!("/v1/attribution?by=user&service={service}&since=1h"),
            |v| {
                v["rows"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|row| row["requests"] == 1))
            },
        )
        .await
    }
}

/// Runs the demo at `load` and returns (log p50, log p95, event p50, event p95).
fn measure(load: f64, probes: usize, warmup: u64) -> anyhow::Result<[f64; 4]> {
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let _up = Up(Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--http", &addr, "up", "--demo", "--demo-load"])
        .arg(load.to_string())
        .env_remove("SLUICE_CONFIG")
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let probe = Probe {
        client: reqwest::Client::new(),
        base: format!("http://{addr}"),
    };
    rt.block_on(async {
        let start = Instant::now();
        while probe.get("/readyz").await.is_err() {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "never ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(warmup)).await;
        let pod_dir = dir.path().join(
            "demo/var/log/pods/bench_freshness-probe_0b7c6d4e-0000-4000-8000-000000000001/probe",
        );
        std::fs::create_dir_all(&pod_dir)?;
        let mut file = open_append(&pod_dir.join("0.log"))?;
        let (mut logs, mut events) = (Vec::new(), Vec::new());
        let tag = uuid::Uuid::new_v4().simple().to_string();
        for i in 0..probes {
            let word = format!("fresh{}x{i}", &tag[..8]);
            let service = format!("probe-{}-{i}", &tag[..8]);
            let (l, e) = tokio::join!(probe.log_line(&mut file, &word), probe.event(&service));
            logs.push(l?);
            events.push(e?);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok([
            percentile(&logs, 0.5),
            percentile(&logs, 0.95),
            percentile(&events, 0.5),
            percentile(&events, 0.95),
        ])
    })
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let probes = env_usize("SLUICE_BENCH_PROBES", 20).max(2);
    let warmup = env_usize("SLUICE_BENCH_WARMUP_SECS", 20) as u64;
    println!(
        "end-to-end freshness of `sluice up --demo` ({probes} probes per load; target p95 ≤ 5 s)"
    );
    println!(
        "{:<14} {:>14} {:>14} {:>16} {:>16}",
        "load", "log p50 (s)", "log p95 (s)", "event p50 (s)", "event p95 (s)"
    );
    for load in [1.0, 10.0] {
        let [lp50, lp95, ep50, ep95] = measure(load, probes, warmup)?;
        println!(
            "{:<14} {lp50:>14.2} {lp95:>14.2} {ep50:>16.2} {ep95:>16.2}",
            format!("demo ×{load}")
        );
    }
    Ok(())
}
