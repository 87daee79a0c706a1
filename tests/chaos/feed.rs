//! Live writes during a chaos run, with their ground truth: pod log lines
//! appended (and rotated, the kubelet's way) to a file the collector tails,
//! and platform events posted to the collector's intake, each batch retried
//! until acknowledged, one invalid record in each.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

use crate::common::http_within;

/// Lines per file before it is rotated.
const ROTATE_LINES: u64 = 1500;

/// Appends CRI lines to `<root>/chaos_live-0_<uid>/app/0.log` every 100 ms
/// until `stop`; rotates to `0.log.<stamp>` and gzips the rotation before.
pub fn pod_log_writer(root: &Path, lines_per_tick: u64, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    let dir = root.join("chaos_live-0_6a1f0c2e-0000-4000-8000-00000000c4a0/app");
    std::fs::create_dir_all(&dir).unwrap();
    std::thread::spawn(move || {
        let live = dir.join("0.log");
        let mut file = open_append(&live);
        let mut written = 0u64;
        let mut in_file = 0u64;
        let mut rotated_before: Option<PathBuf> = None;
        let mut stamp_secs = chrono::Utc::now().timestamp();
        while !stop.load(Ordering::Relaxed) {
            let mut chunk = String::new();
            for _ in 0..lines_per_tick {
                let now = chrono::Utc::now();
                let stream = if written.is_multiple_of(7) {
                    "stderr"
                } else {
                    "stdout"
                };
                chunk.push_str(&format!(
                    "{} {stream} F chaos line {written} level=info msg=\"request served\" latency_ms={}\n",
                    now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    written % 97
                ));
                written += 1;
            }
            file.write_all(chunk.as_bytes()).unwrap();
            in_file += lines_per_tick;
            if in_file >= ROTATE_LINES {
                drop(file);
                stamp_secs = stamp_secs.max(chrono::Utc::now().timestamp()) + 1;
                let stamp = chrono::DateTime::from_timestamp(stamp_secs, 0)
                    .unwrap()
                    .format("%Y%m%d-%H%M%S");
                let rotated = dir.join(format!("0.log.{stamp}"));
                std::fs::rename(&live, &rotated).unwrap();
                if let Some(previous) = rotated_before.replace(rotated) {
                    gzip_in_place(&previous);
                }
                file = open_append(&live);
                in_file = 0;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        written
    })
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `<file>.gz` written whole, then `<file>` removed: the kubelet's order.
fn gzip_in_place(path: &Path) {
    let data = std::fs::read(path).unwrap();
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let mut enc = GzEncoder::new(File::create(&gz).unwrap(), Compression::fast());
    enc.write_all(&data).unwrap();
    enc.finish().unwrap().sync_all().unwrap();
    std::fs::remove_file(path).unwrap();
}

/// What the intake poster got acknowledged.
#[derive(Debug, Default, Clone, Copy)]
pub struct Posted {
    /// Valid events acknowledged (each id once, however often retried).
    pub events: u64,
    /// Invalid records the intake refused by name.
    pub refused: u64,
    /// Attempts that failed (process down, broker down) and were retried.
    pub retries: u64,
}

/// Posts a batch of `batch` valid events plus one invalid record to
/// `addr`'s `/v1/events` every 300 ms until `stop`, each batch retried
/// until it is acknowledged (202): the same ids again, as a real client
/// does, so a batch whose answer was lost lands once all the same.
pub fn intake_poster(addr: String, batch: usize, stop: Arc<AtomicBool>) -> JoinHandle<Posted> {
    std::thread::spawn(move || {
        let mut posted = Posted::default();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let now = chrono::Utc::now().to_rfc3339();
            let mut records: Vec<Value> = (0..batch)
                .map(|i| {
                    json!({
                        "event_id": format!("intake-{n}-{i}"),
                        "occurred_at": now,
                        "service": "chaos",
                        "action": "probe.get",
                        "success": !i.is_multiple_of(9),
                        "user_id": format!("u{}", i % 7),
                        "latency_ms": (i * 13) % 400,
                    })
                })
                .collect();
            // No service: the intake refuses it by name, takes the rest.
            records.push(json!({"event_id": format!("intake-{n}-bad"), "occurred_at": now}));
            let body = Value::Array(records).to_string();
            loop {
                match http_within(
                    &addr,
                    "POST",
                    "/v1/events",
                    &[("Content-Type", "application/json")],
                    Some(body.as_bytes()),
                    Some(Duration::from_secs(60)),
                ) {
                    Ok(r) if r.status == 202 => {
                        let answer = r.json();
                        assert_eq!(answer["accepted"], batch, "{answer}");
                        assert_eq!(answer["rejected_total"], 1, "{answer}");
                        posted.events += batch as u64;
                        posted.refused += 1;
                        break;
                    }
                    // Not durable (the broker is away) or not up: again.
                    Ok(r) if r.status == 503 || r.status == 429 => {}
                    Ok(r) => panic!("the intake answered {}: {}", r.status, r.text()),
                    Err(_) => {}
                }
                posted.retries += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        posted
    })
}

/// Writes `good` valid events and `bad` invalid ones (a bad timestamp,
/// spread among them) as NDJSON lines for a producer that writes straight
/// to the events topic, as a gateway speaking Kafka does.
pub fn direct_events(path: &Path, good: usize, bad: usize) {
    let now = chrono::Utc::now().to_rfc3339();
    let stride = (good + bad) / bad.max(1);
    let (mut out, mut bad_left) = (String::new(), bad);
    for i in 0..good + bad {
        let line = if bad_left > 0 && (i.is_multiple_of(stride) || good + bad - i == bad_left) {
            bad_left -= 1;
            json!({"event_id": format!("direct-bad-{i}"), "occurred_at": "yesterday", "service": "chaos", "action": "probe.get"})
        } else {
            json!({"event_id": format!("direct-{i}"), "occurred_at": now, "service": "chaos-direct", "action": "probe.put", "success": true, "user_id": "kafka-gw"})
        };
        out.push_str(&line.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}
