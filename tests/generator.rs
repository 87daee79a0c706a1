//! `sluice gen` output is the ground truth for every later test and benchmark:
//! check it is deterministic, parses with our own CRI reader, obeys the
//! contracts (our validator and an independent JSON Schema validator), and
//! carries the restarts, rotations, partial lines and spikes it promises.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use flate2::read::GzDecoder;
use serde_json::{Value, json};
use sluice::generator::{self, GenConfig, Manifest};
use sluice_ingest::sources::cri::{self, PartialJoiner};
use sluice_ingest::sources::pod_log_path::PodLogPath;
use sluice_schema::directory::PrincipalDirectory;
use sluice_schema::raw::{LifecycleEvent, RawEvent};

fn until() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn config(out: &Path, seed: u64) -> GenConfig {
    GenConfig {
        out: out.to_path_buf(),
        pods: 12,
        events: 40_000,
        days: 3,
        until: until(),
        seed,
        cluster: "test".into(),
        lines_per_pod_day: 1500,
        rotate_bytes: 96 * 1024,
        force: false,
        events_part: 0,
    }
}

fn generate(cfg: &GenConfig) -> Manifest {
    generator::generate(cfg, &|_| {}, &|_| {}).expect("generate")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read_maybe_gz(path: &Path) -> Vec<u8> {
    let raw = fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..]).read_to_end(&mut out).unwrap();
        out
    } else {
        raw
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let small = |dir: &Path, seed| GenConfig {
        pods: 6,
        events: 5000,
        days: 2,
        lines_per_pod_day: 600,
        rotate_bytes: 32 * 1024,
        ..config(dir, seed)
    };
    let whole = generate(&small(a.path(), 7));
    generate(&small(b.path(), 7));
    generate(&small(c.path(), 8));
    let fa = files_under(a.path());
    let fb = files_under(b.path());
    let rel = |root: &Path, v: &[PathBuf]| -> Vec<PathBuf> {
        v.iter()
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .collect()
    };
    assert_eq!(rel(a.path(), &fa), rel(b.path(), &fb), "same file set");
    assert!(fa.len() > 10);
    for (x, y) in fa.iter().zip(&fb) {
        assert!(
            fs::read(x).unwrap() == fs::read(y).unwrap(),
            "{} differs",
            x.display()
        );
    }
    let ea = fs::read(a.path().join("events/2026-11-20.ndjson")).unwrap();
    let ec = fs::read(c.path().join("events/2026-11-20.ndjson")).unwrap();
    assert_ne!(ea, ec, "another seed gives other data");

    // An events part of seed 7: the same cluster and principals and the
    // same events per day, other events (no id shared with part 0).
    let d = tempfile::tempdir().unwrap();
    let part = generate(&GenConfig {
        events_part: 1,
        ..small(d.path(), 7)
    });
    assert_eq!(
        fs::read(a.path().join("directory.yaml")).unwrap(),
        fs::read(d.path().join("directory.yaml")).unwrap(),
        "the same principals"
    );
    let per_file = |m: &Manifest| -> Vec<(String, u64)> {
        m.event_files
            .iter()
            .map(|f| (f.path.clone(), f.events))
            .collect()
    };
    assert_eq!(per_file(&whole), per_file(&part), "the same load shape");
    let ids = |dir: &Path| -> std::collections::HashSet<String> {
        let text = fs::read_to_string(dir.join("events/2026-11-20.ndjson")).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["event_id"].to_string())
            .collect()
    };
    let (ia, id) = (ids(a.path()), ids(d.path()));
    assert!(!ia.is_empty() && ia.len() == id.len());
    assert!(ia.is_disjoint(&id), "a part's events are other events");
}

#[test]
fn refuses_to_mix_with_earlier_output_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GenConfig {
        pods: 2,
        events: 200,
        days: 1,
        ..config(dir.path(), 1)
    };
    generate(&cfg);
    let err = generator::generate(&cfg, &|_| {}, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("--force"), "{err}");
    generator::generate(&GenConfig { force: true, ..cfg }, &|_| {}, &|_| {}).unwrap();
}

/// One generated data set shared by the checks below (generation is the slow part).
fn shared() -> &'static (tempfile::TempDir, Manifest) {
    static DATA: std::sync::OnceLock<(tempfile::TempDir, Manifest)> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let m = generate(&config(dir.path(), 7));
        (dir, m)
    })
}

#[test]
fn every_log_file_parses_and_matches_the_manifest() {
    let (dir, manifest) = shared();
    let mut instances_seen = 0;
    let mut rotated = 0;
    let mut gzipped = 0;
    let mut partial_lines = 0;
    let mut total_lines = 0u64;
    for pod in &manifest.pods {
        for c in &pod.containers {
            for inst in &c.instances {
                instances_seen += 1;
                // Files in reading order: rotated ones (by stamp), then the live one.
                let mut joiner = PartialJoiner::new(1 << 20);
                let mut lines = 0u64;
                let mut last_ts = i64::MIN;
                assert!(inst.files.last().unwrap().ends_with(".log"));
                for f in &inst.files {
                    let path = dir.path().join(&c.dir).join(f);
                    let meta = PodLogPath::parse(&path).unwrap();
                    assert_eq!(
                        (meta.namespace.as_str(), meta.pod.as_str()),
                        (pod.namespace.as_str(), pod.pod.as_str())
                    );
                    assert_eq!(meta.pod_uid, pod.uid);
                    assert_eq!(meta.restart, inst.restart);
                    rotated += usize::from(meta.rotated_at.is_some());
                    gzipped += usize::from(meta.gzipped);
                    let bytes = read_maybe_gz(&path);
                    assert!(
                        bytes.is_empty() || bytes.ends_with(b"\n"),
                        "{} ends mid-line",
                        path.display()
                    );
                    for raw in bytes.split_inclusive(|b| *b == b'\n') {
                        let line = cri::parse_line(raw).unwrap_or_else(|e| {
                            panic!(
                                "{}: {e}: {:?}",
                                path.display(),
                                String::from_utf8_lossy(raw)
                            )
                        });
                        assert!(line.content.len() <= generator::CRI_MAX_LINE);
                        if let Some(joined) = joiner.push(&line) {
                            assert!(
                                joined.ts_nanos >= last_ts,
                                "{}: time goes back",
                                path.display()
                            );
                            last_ts = joined.ts_nanos;
                            lines += 1;
                            if joined.parts > 1 {
                                partial_lines += 1;
                                assert!(joined.content.len() > generator::CRI_MAX_LINE);
                            }
                        }
                    }
                }
                assert!(!joiner.has_pending(), "an instance ends on a partial line");
                assert_eq!(lines, inst.lines, "{} restart {}", c.dir, inst.restart);
                total_lines += lines;
            }
        }
    }
    let t = &manifest.totals;
    assert_eq!(instances_seen as u64, t.instances);
    assert_eq!(total_lines, t.log_lines);
    assert_eq!(rotated as u64, t.rotated_files);
    assert_eq!(gzipped as u64, t.gzipped_files);
    assert_eq!(partial_lines as u64, t.partial_lines);
    assert!(
        t.rotated_files > 0 && t.gzipped_files > 0 && t.partial_lines > 0,
        "{t:?}"
    );
    assert!(
        t.gzipped_files < t.rotated_files,
        "the newest rotated file stays uncompressed"
    );
    // Nothing on disk the manifest does not know about.
    let on_disk = files_under(&dir.path().join("var/log/pods")).len() as u64;
    assert_eq!(on_disk, t.log_files);
}

#[test]
fn the_troubled_pod_restarts_seven_times_from_oom_and_says_so() {
    let (dir, manifest) = shared();
    let pod = &manifest.pods[0];
    assert_eq!(pod.pod, "iom-cluster-0");
    let main = &pod.containers[0];
    assert_eq!(main.instances.len(), 8);
    for (n, inst) in main.instances.iter().enumerate() {
        assert_eq!(inst.restart as usize, n);
        assert!(
            dir.path()
                .join(&main.dir)
                .join(format!("{n}.log"))
                .is_file()
        );
        let expect = if n < 7 {
            Some(generator::Termination::OOMKilled)
        } else {
            None
        };
        assert_eq!(inst.termination, expect);
    }
    // The crashed instance ends with the OOM's last words; the next one reports it.
    let last =
        String::from_utf8(fs::read(dir.path().join(&main.dir).join("3.log")).unwrap()).unwrap();
    let tail: Vec<&str> = last.lines().rev().take(8).collect();
    assert!(
        tail.iter()
            .any(|l| l.contains("fatal error: runtime: out of memory")),
        "{tail:#?}"
    );
    // Its first lines are in its oldest file, which may be rotated and gzipped.
    let first_file = dir.path().join(&main.dir).join(&main.instances[4].files[0]);
    let next = String::from_utf8(read_maybe_gz(&first_file)).unwrap();
    let second = next.lines().nth(1).unwrap();
    assert!(
        second.contains("reason=OOMKilled") && second.contains("restart=3"),
        "{second}"
    );
    // Lifecycle events: one OOMKilled per OOM restart, with the right counts.
    let k8s = fs::read_to_string(dir.path().join("k8s-events.ndjson")).unwrap();
    let mut oom_counts = Vec::new();
    for line in k8s.lines() {
        let e = LifecycleEvent::from_json_bytes(line.as_bytes()).unwrap();
        if e.name == "iom-cluster-0" && e.reason == "OOMKilled" {
            assert_eq!(e.exit_code, Some(137));
            oom_counts.push(e.restart_count.unwrap());
        }
    }
    assert_eq!(oom_counts, (1..=7).collect::<Vec<_>>());
}

#[test]
fn events_obey_the_contract_and_the_spike_tops_the_peaks() {
    let (dir, manifest) = shared();
    let mut total = 0u64;
    let mut per_minute: HashMap<(String, i64), u64> = HashMap::new();
    let mut formats = BTreeMap::new();
    for f in &manifest.event_files {
        let text = fs::read_to_string(dir.path().join(&f.path)).unwrap();
        let mut n = 0;
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let kind = match &v["occurred_at"] {
                Value::Number(_) => "millis",
                Value::String(s) if s.ends_with('Z') => "utc",
                _ => "offset",
            };
            *formats.entry(kind).or_insert(0) += 1;
            let e = RawEvent::from_json(&v).unwrap_or_else(|err| panic!("{line}: {err}"));
            if let Some(u) = e.user_id {
                *per_minute
                    .entry((u, e.occurred_at / 60_000_000))
                    .or_default() += 1;
            }
            n += 1;
        }
        assert_eq!(n, f.events, "{}", f.path);
        total += n;
    }
    assert_eq!(total, 40_000, "exactly --events events");
    assert_eq!(total, manifest.totals.events);
    assert_eq!(formats.len(), 3, "all timestamp forms appear: {formats:?}");

    let mut peaks: HashMap<&str, u64> = HashMap::new();
    for ((user, _), n) in &per_minute {
        let p = peaks.entry(user.as_str()).or_default();
        *p = (*p).max(*n);
    }
    let mut ranked: Vec<(&str, u64)> = peaks.into_iter().collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
    let spike = &manifest.spikes[0];
    assert_eq!(
        ranked[0].0,
        spike.principal,
        "top peaks: {:?}",
        &ranked[..5]
    );
    assert!(ranked[0].1 >= 2 * ranked[1].1.max(1) || ranked[1].0 != spike.principal);

    let directory = PrincipalDirectory::from_yaml(
        &fs::read_to_string(dir.path().join("directory.yaml")).unwrap(),
    )
    .unwrap();
    assert!(directory.service_accounts.len() >= 10);
    assert!(directory.users.len() > 200);
}

/// Edge cases where a hand-written validator and a schema often disagree.
fn contract_cases() -> Vec<Value> {
    let base = json!({"event_id": "e1", "occurred_at": "2026-11-21T14:32:08Z", "service": "s", "action": "a", "success": true});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    vec![
        base.clone(),
        with("occurred_at", json!(1_795_264_328_500_i64)),
        with("occurred_at", json!("2026-11-21T14:32:08.123+02:00")),
        with("occurred_at", json!("yesterday")),
        with("occurred_at", json!("2026-11-21T14:32:08")),
        with("occurred_at", json!(1_795_264_328_i64)),
        with("success", json!("true")),
        with("user_id", Value::Null),
        with("status_code", json!(99)),
        with("status_code", json!(204)),
        with("latency_ms", json!(-0.5)),
        with("latency_ms", json!(12.75)),
        with("client_ip", json!("10.0.0.1")),
        with("client_ip", json!("2001:db8::1")),
        with("client_ip", json!("10.0.0.300")),
        with("bytes_in", json!(1.5)),
        with("event_id", json!("")),
        with("region", json!({"nested": true})),
        without("service"),
        without("success"),
        json!([1, 2, 3]),
    ]
}

#[test]
fn an_independent_json_schema_validator_agrees() {
    let (dir, manifest) = shared();
    let cases = contract_cases();
    let cases_file = dir.path().join("contract-cases.ndjson");
    let body: String = cases.iter().map(|c| format!("{c}\n")).collect();
    fs::write(&cases_file, body).unwrap();
    let schema_dir = sluice_testkit::source_path("schema/contracts");
    let script = sluice_testkit::source_path("tests/interop/validate_contracts.py");
    let out = Command::new(sluice_testkit::python())
        .arg(&script)
        .arg(&schema_dir)
        .arg(dir.path())
        .arg(&cases_file)
        .output()
        .expect("run the interop python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failures"], json!([]), "{report}");
    assert_eq!(report["events"], manifest.totals.events);
    assert_eq!(report["lifecycle"], manifest.totals.lifecycle_events);
    for (i, case) in cases.iter().enumerate() {
        let ours = RawEvent::from_json(case).is_ok();
        let theirs = report["cases"][i]["valid"].as_bool().unwrap();
        assert_eq!(ours, theirs, "case {i}: {case}");
    }
    // The corpus has both verdicts, so agreement is not vacuous.
    let valid = cases
        .iter()
        .filter(|c| RawEvent::from_json(c).is_ok())
        .count();
    assert!(valid > 3 && valid < cases.len() - 3);
}
