//! Parsing alone (criterion): kubelet log bytes → pod log records, CRI and
//! Docker json-file, partial lines joined, level parsed and line ids made —
//! everything the collector does per line before encoding. One core.
//! Target: ≥ 100 MB/s of log input.
//!
//! `cargo bench --bench log_parse` (no services needed).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_ingest::sources::pod_log_file::{Origin, read_pod_log};
use sluice_ingest::sources::pod_log_path::PodLogPath;

/// About 16 MB of CRI lines in the generator's mix (JSON, logfmt and plain
/// app lines, stack traces, one line in 2500 over 16 KiB and so split).
fn cri_input() -> Vec<u8> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cfg = sluice::generator::GenConfig {
        out: tmp.path().to_path_buf(),
        pods: 4,
        events: 10,
        days: 1,
        until: chrono::DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc),
        seed: 3,
        cluster: "bench".into(),
        lines_per_pod_day: 40_000,
        rotate_bytes: 1 << 40,
        force: false,
        events_part: 0,
    };
    sluice::generator::generate(&cfg, &|_| {}, &|_| {}).expect("generate");
    let mut out = Vec::new();
    collect_logs(&tmp.path().join("var/log/pods"), &mut out);
    out
}

fn collect_logs(dir: &Path, out: &mut Vec<u8>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_logs(&p, out);
        } else if p.extension().is_some_and(|e| e == "log") {
            out.extend(std::fs::read(&p).expect("read log"));
        }
    }
}

/// The same lines as Docker's json-file driver writes them.
fn docker_input(cri: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cri.len() * 5 / 4);
    for line in cri.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let text = String::from_utf8_lossy(line);
        let mut parts = text.splitn(4, ' ');
        let (Some(ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let content = parts.next().unwrap_or("");
        let log = if tag.starts_with('P') {
            content.to_string()
        } else {
            format!("{content}\n")
        };
        let obj = serde_json::json!({"log": log, "stream": stream, "time": ts});
        out.extend(obj.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn parse(c: &mut Criterion) {
    let cri = cri_input();
    let docker = docker_input(&cri);
    let path = PodLogPath::parse(Path::new("shop_api-0_uid-1/app/0.log")).expect("path");
    let origin = Origin {
        cluster: "bench",
        node: Some("node-a"),
    };
    let mut group = c.benchmark_group("parse");
    group.sample_size(10);
    for (name, input) in [("cri", &cri), ("docker_json", &docker)] {
        let (records, stats) = read_pod_log(&path, input, &origin, 256 * 1024);
        assert_eq!(stats.malformed_lines, 0, "{name}: {stats:?}");
        eprintln!(
            "{name}: {:.1} MB, {} lines ({} physical)",
            input.len() as f64 / 1e6,
            records.len(),
            stats.physical_lines
        );
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(read_pod_log(&path, black_box(input), &origin, 256 * 1024)))
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
