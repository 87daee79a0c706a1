//! Query isolation under load, side by side in one run: `/healthz` latency
//! (p99) and a plain attribution query's latency (p50) against a live
//! `sluice serve`, first idle, then while four runaway queries (sums over
//! cross joins of 10¹² rows that only the timeout ends) keep the query
//! threads busy.
//!
//! Targets: `/healthz` p99 ≤ 50 ms under load; attribution p50 ≤ 3× idle.
//!
//! `cargo bench --bench isolation` (SLUICE_BENCH_EVENTS, default 1 000 000
//! events over 7 days, loaded with `sluice import` first, not timed;
//! SLUICE_BENCH_RUNS attribution queries per phase, default 15).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{env_usize, generate_events, import, median};

/// One request; the status and how long the answer took.
fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, Duration) {
    let (status, took, _) = request_text(addr, method, path, body);
    (status, took)
}

/// [`request`] with the answer's text.
fn request_text(addr: &str, method: &str, path: &str, body: &str) -> (u16, Duration, String) {
    let started = Instant::now();
    let mut s = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => return (0, started.elapsed(), format!("connecting: {e}")),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() {
        return (0, started.elapsed(), String::new());
    }
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        return (0, started.elapsed(), format!("reading the answer: {e}"));
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, started.elapsed(), text)
}

/// The value of a metric without labels on `/metrics`.
fn metric(addr: &str, name: &str) -> f64 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return -1.0;
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(-1.0)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

struct Phase {
    healthz_p99_ms: f64,
    attribution_p50_ms: f64,
}

/// Probes `/healthz` every 10 ms while `runs` attribution queries run one
/// after another.
fn measure(addr: &str, runs: usize) -> Phase {
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let (addr, done) = (addr.to_string(), done.clone());
        std::thread::spawn(move || {
            let mut times = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let (status, t) = request(&addr, "GET", "/healthz", "");
                assert_eq!(status, 200, "/healthz failed");
                times.push(t.as_secs_f64() * 1000.0);
                std::thread::sleep(Duration::from_millis(10));
            }
            times
        })
    };
    let mut attribution = Vec::new();
    for _ in 0..runs {
        let (status, t, text) = request_text(
            addr,
            "GET",
            "/v1/attribution?by=user&since=3650d&limit=20",
            "",
        );
        assert_eq!(status, 200, "attribution failed after {t:?}: {text}");
        attribution.push(t.as_secs_f64() * 1000.0);
    }
    done.store(true, Ordering::Relaxed);
    let probes = prober.join().expect("the prober failed");
    Phase {
        healthz_p99_ms: percentile(probes, 0.99),
        attribution_p50_ms: median(attribution),
    }
}

fn main() -> anyhow::Result<()> {
    let events = env_usize("SLUICE_BENCH_EVENTS", 1_000_000);
    let runs = env_usize("SLUICE_BENCH_RUNS", 15).max(3);
    let tmp = tempfile::tempdir()?;
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    generate_events(&gen_dir, events, 7, 11)?;
    import(&data_dir, &gen_dir)?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    // Runaways end only at the timeout; eight slots leave room for the
    // measured query beside the four of them.
    let mut serve = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--http", &addr, "serve"])
        .env_remove("SLUICE_CONFIG")
        .env("SLUICE_QUERY__TIMEOUT_SECS", "600")
        .env("SLUICE_QUERY__MAX_CONCURRENT", "8")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(&addr, "GET", "/readyz", "").0 != 200 {
        anyhow::ensure!(Instant::now() < deadline, "sluice serve never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Warm the footer cache and the catalog.
    for _ in 0..3 {
        request(
            &addr,
            "GET",
            "/v1/attribution?by=user&since=3650d&limit=20",
            "",
        );
    }

    let idle = measure(&addr, runs);

    let stop = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicUsize::new(0));
    let runaways: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, finished) = (addr.clone(), stop.clone(), finished.clone());
            std::thread::spawn(move || {
                // A sum over a cross join: no statistic answers it, only the
                // timeout (600 s here) or the end of the benchmark ends it.
                // Its build side (one column of one table) stays small: it
                // takes CPU, not the memory other queries need.
                let body = r#"{"sql":"SELECT sum(a.latency_ms + b.latency_ms) FROM platform_event_logs a, platform_event_logs b"}"#;
                while !stop.load(Ordering::Relaxed) {
                    request(&addr, "POST", "/v1/sql", body);
                    finished.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Let them take the query threads.
    std::thread::sleep(Duration::from_secs(2));
    let loaded = measure(&addr, runs);
    // They ran the whole time, none answered.
    let ended_early = finished.load(Ordering::Relaxed);
    let running = metric(&addr, "sluice_query_running");
    stop.store(true, Ordering::Relaxed);
    // The runaways' connections close with the server.
    let _ = serve.kill();
    let _ = serve.wait();
    for r in runaways {
        let _ = r.join();
    }
    anyhow::ensure!(
        ended_early == 0 && running >= 4.0,
        "the runaway queries did not keep running ({ended_early} ended, {running} running)"
    );

    println!(
        "isolation ({events} events; {runs} attribution runs per phase; 4 runaway cross joins)"
    );
    println!(
        "  /healthz p99:        idle {:7.2} ms   under load {:7.2} ms   (target ≤ 50 ms)",
        idle.healthz_p99_ms, loaded.healthz_p99_ms
    );
    println!(
        "  attribution p50:     idle {:7.1} ms   under load {:7.1} ms   ratio {:.2}× (target ≤ 3×)",
        idle.attribution_p50_ms,
        loaded.attribution_p50_ms,
        loaded.attribution_p50_ms / idle.attribution_p50_ms
    );
    Ok(())
}
