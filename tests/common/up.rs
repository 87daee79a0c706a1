//! Helpers for the tests that run `sluice up`: starting it, asking it SQL,
//! and counting what its demo wrote.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::generator::log_gc;

use super::{Proc, http, http_get};

pub fn spawn_up(data_dir: &Path, addr: &str, demo: bool, env: &[(&str, String)]) -> Proc {
    spawn_up_with(data_dir, addr, if demo { &["--demo"] } else { &[] }, env)
}

/// [`spawn_up`] with `up`'s own arguments (`--demo`, `--demo-spike-minute 2`).
pub fn spawn_up_with(data_dir: &Path, addr: &str, args: &[&str], env: &[(&str, String)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["--http", addr, "up"])
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let proc = Proc(cmd.spawn().expect("start sluice up"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_get(addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "sluice up never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    proc
}

pub fn get_json(addr: &str, path: &str) -> Value {
    let r = http(addr, "GET", path, &[], None);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

pub fn sql(addr: &str, query: &str) -> Vec<Value> {
    let body = json!({ "sql": query }).to_string();
    let r = http(
        addr,
        "POST",
        "/v1/sql",
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r.json()["rows"].as_array().cloned().unwrap_or_default()
}

pub fn count(addr: &str, query: &str) -> u64 {
    let rows = sql(addr, query);
    let v = rows[0]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap()
}

pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Complete logical CRI lines in every file under `root`: one final (`F`)
/// part each, counted only when its newline was written.
pub fn logical_lines(root: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                n += log_gc::logical_lines(&p).unwrap();
            }
        }
    }
    n
}

/// Every line the demo under `data_dir` wrote: those still on disk and those
/// in files it removed as kubelet would (the demo must not be running).
pub fn demo_lines(data_dir: &Path) -> u64 {
    let demo = data_dir.join("demo");
    logical_lines(&demo.join("var/log/pods")) + log_gc::removed_lines(&demo).unwrap()
}

/// Lines of a write-ahead log, over all its segments (`<name>.wal`,
/// `<name>.<start>.wal`) in `dir`.
pub fn wal_lines(dir: &Path, name: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}.")) && n.ends_with(".wal"))
        })
        .map(|p| lines_of(&p))
        .sum()
}

pub fn lines_of(path: &Path) -> u64 {
    match std::fs::File::open(path) {
        Ok(f) => BufReader::new(f).lines().count() as u64,
        Err(_) => 0,
    }
}

pub fn dead_letters(data_dir: &Path, table: &str) -> u64 {
    let Ok(f) = std::fs::File::open(data_dir.join("up/dead-letters.ndjson")) else {
        return 0;
    };
    BufReader::new(f)
        .lines()
        .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
        .filter(|v| v["table"] == table)
        .count() as u64
}

/// Starts `sluice up` without the demo on a data directory the demo wrote,
/// waits until the tables hold what is on disk, and asserts they hold it
/// exactly: every complete CRI line, every acknowledged intake record (less
/// dead letters) and every lifecycle record, none twice.
pub fn catch_up_exactly(data_dir: &Path, addr: &str) -> Proc {
    let pods_root = data_dir.join("demo/var/log/pods");
    let env = [(
        "SLUICE_COLLECTOR__PODS_ROOT",
        pods_root.display().to_string(),
    )];
    let up = spawn_up(data_dir, addr, false, &env);
    let want_lines = demo_lines(data_dir);
    let want_events =
        wal_lines(&data_dir.join("up"), "events") - dead_letters(data_dir, "platform_event_logs");
    let want_lifecycle = wal_lines(&data_dir.join("up"), "lifecycle");
    assert!(want_lines > 500, "the demo wrote only {want_lines} lines");
    assert!(want_events > 100, "the demo sent only {want_events} events");
    // The demo's crashes are random and a chaos run may give it little
    // time between kills: one lifecycle record is enough to check exactly
    // (three failed a chaos run once, seed 1796505918136968, with two).
    assert!(
        want_lifecycle >= 1,
        "no lifecycle events: the demo's pods never changed"
    );
    wait_for("the tables to catch up", Duration::from_secs(90), || {
        count(addr, "SELECT count(*) AS n FROM pod_logs") >= want_lines
            && count(addr, "SELECT count(*) AS n FROM platform_event_logs") >= want_events
            && count(addr, "SELECT count(*) AS n FROM platform_events") >= want_lifecycle
    });
    // Settled: nothing more arrives.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        count(addr, "SELECT count(*) AS n FROM pod_logs"),
        want_lines
    );
    assert_eq!(
        count(addr, "SELECT count(DISTINCT line_id) AS n FROM pod_logs"),
        want_lines,
        "a pod log line was written twice"
    );
    assert_eq!(
        count(addr, "SELECT count(*) AS n FROM platform_event_logs"),
        want_events
    );
    assert_eq!(
        count(
            addr,
            "SELECT count(DISTINCT event_id) AS n FROM platform_event_logs"
        ),
        want_events,
        "an event was written twice"
    );
    assert_eq!(
        count(addr, "SELECT count(*) AS n FROM platform_events"),
        want_lifecycle
    );
    up
}
