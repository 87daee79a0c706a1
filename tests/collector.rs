//! `sluice collect` end to end: real log files (from `sluice gen` and
//! written by the test as kubelet and containerd would), a real broker, and
//! an independent consumer reading the topic back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde_json::Value;
use sluice::generator::{self, GenConfig, Manifest};
use sluice_ingest::sources::pod_log_file::{Origin, read_pod_log};
use sluice_ingest::sources::pod_log_path::PodLogPath;
use sluice_testkit::{OwnBroker, TestTopic};

mod common;
use common::{Proc, free_port, http_get};

/// Starts `sluice collect` on `pods_root`, producing to `topic`.
fn spawn_collector(
    data_dir: &Path,
    pods_root: &Path,
    bootstrap: &str,
    topic: &str,
    env: &[(&str, String)],
) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args([
            "--kafka", bootstrap, "--http", &addr, "collect", "--node", "node-a",
        ])
        .arg("--pods-root")
        .arg(pods_root)
        .env_remove("SLUICE_CONFIG")
        .env("SLUICE_KAFKA__TOPICS__PODLOGS", topic)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let proc = Proc(cmd.spawn().expect("start sluice collect"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&addr, "/healthz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "collector did not serve /healthz"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (proc, addr)
}

/// A counter or gauge from `/metrics`.
fn metric(addr: &str, name: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = rest.strip_prefix("_total").unwrap_or(rest);
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every record on `topic` (messages hold one record or an array of them),
/// read with a plain consumer until `want` records arrived and nothing more
/// came for a while.
fn consume(bootstrap: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("check-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                let v: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
                match v {
                    Value::Array(items) => out.extend(items),
                    other => out.push(other),
                }
            }
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            None => {
                if out.len() >= want && quiet_since.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
        }
    }
    out
}

fn by_line_id(records: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut m: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in records {
        m.entry(r["line_id"].as_str().unwrap().to_string())
            .or_default()
            .push(r);
    }
    m
}

fn generate(dir: &Path, pods: usize, lines_per_pod_day: u64) -> Manifest {
    generator::generate(
        &GenConfig {
            out: dir.to_path_buf(),
            pods,
            events: 10,
            days: 2,
            until: DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            seed: 5,
            cluster: "it".into(),
            lines_per_pod_day,
            rotate_bytes: 64 * 1024,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap()
}

/// The line ids of every log file under `root`, as `sluice import` reads them.
fn ids_in_tree(root: &Path) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for pod in fs::read_dir(root).unwrap() {
        for container in fs::read_dir(pod.unwrap().path()).unwrap() {
            for file in fs::read_dir(container.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                let meta = PodLogPath::parse(&path).unwrap();
                let raw = fs::read(&path).unwrap();
                let content = if meta.gzipped {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(
                        &mut flate2::read::MultiGzDecoder::new(&raw[..]),
                        &mut out,
                    )
                    .unwrap();
                    out
                } else {
                    raw
                };
                let origin = Origin {
                    cluster: "it",
                    node: None,
                };
                let (records, _) = read_pod_log(&meta, &content, &origin, 256 * 1024);
                ids.extend(records.into_iter().map(|r| r.line_id));
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn every_generated_line_arrives_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = generate(&tmp.path().join("gen"), 6, 1500);
    let t = &manifest.totals;
    assert!(t.rotated_files > 0 && t.gzipped_files > 0, "{t:?}");
    let root = tmp.path().join("gen/var/log/pods");
    let topic = TestTopic::create("collect", 3).await;
    let (mut collector, addr) = spawn_collector(
        &tmp.path().join("data"),
        &root,
        &topic.bootstrap,
        &topic.name,
        &[],
    );
    let want = t.log_lines as f64;
    wait_for("every line acknowledged", Duration::from_secs(120), || {
        metric(&addr, "sluice_collector_lines_produced") >= want
    });
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metric(&addr, "sluice_collector_malformed_lines"),
        0.0,
        "generated files are well-formed"
    );
    assert!(collector.terminate().success());

    let records = consume(
        &topic.bootstrap,
        &topic.name,
        t.log_lines as usize,
        Duration::from_secs(60),
    );
    let ids = by_line_id(&records);
    assert_eq!(records.len() as u64, t.log_lines, "every line, once");
    assert_eq!(ids.len() as u64, t.log_lines, "no line twice");
    // The same ids `sluice import` gives: the writer drops a line that both
    // an import and the collector delivered.
    let expected = ids_in_tree(&root);
    assert_eq!(ids.keys().cloned().collect::<BTreeSet<_>>(), expected);
    // Metadata from the path and the config; every restart collected.
    let restarts: BTreeSet<i64> = records
        .iter()
        .map(|r| r["restart"].as_i64().unwrap())
        .collect();
    assert!(restarts.len() > 1, "{restarts:?}");
    for r in records.iter().take(50) {
        assert_eq!(r["node"], "node-a");
        assert!(r["pod_uid"].as_str().is_some_and(|u| !u.is_empty()));
        assert!(r["byte_offset"].as_i64().is_some());
    }
    // The checkpoint was saved on the way out: a restart sends nothing again.
    let (mut again, addr) = spawn_collector(
        &tmp.path().join("data"),
        &root,
        &topic.bootstrap,
        &topic.name,
        &[],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(metric(&addr, "sluice_collector_lines_produced"), 0.0);
    assert!(metric(&addr, "sluice_collector_files_open") > 0.0);
    assert!(again.terminate().success());
}

/// Writes CRI lines the way containerd does.
struct CriWriter {
    file: fs::File,
    n: usize,
    tag: String,
}

impl CriWriter {
    fn create(path: &Path, tag: &str) -> Self {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        Self {
            file: fs::File::create(path).unwrap(),
            n: 0,
            tag: tag.into(),
        }
    }

    /// Appends `count` lines `<tag> line <n>`; returns their texts.
    fn lines(&mut self, count: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = String::new();
        for _ in 0..count {
            let text = format!("{} line {}", self.tag, self.n);
            self.n += 1;
            buf.push_str(&format!(
                "2026-11-23T10:00:00.{:09}Z stdout F {text}\n",
                self.n
            ));
            out.push(text);
        }
        self.file.write_all(buf.as_bytes()).unwrap();
        out
    }
}

fn gzip(path: &Path) -> PathBuf {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let mut enc =
        flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&fs::read(path).unwrap()).unwrap();
    enc.finish().unwrap();
    fs::remove_file(path).unwrap();
    gz
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_rotation_restarts_truncation_and_deleted_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let app = root.join("shop_api-7d9_uid-1/app");
    let topic = TestTopic::create("collect-live", 1).await;
    let mut expected: Vec<String> = Vec::new();

    let mut w0 = CriWriter::create(&app.join("0.log"), "r0");
    expected.extend(w0.lines(100));
    let (mut collector, addr) = spawn_collector(
        &tmp.path().join("data"),
        &root,
        &topic.bootstrap,
        &topic.name,
        &[],
    );
    let produced = |n: usize| {
        let addr = addr.clone();
        move || metric(&addr, "sluice_collector_lines_produced") >= n as f64
    };
    wait_for(
        "first lines",
        Duration::from_secs(30),
        produced(expected.len()),
    );

    // Rotation as kubelet does it: rename, the runtime writes a few more
    // lines to the renamed file, then a new file; later the rotated one is
    // gzipped and the plain copy removed.
    let rotated = app.join("0.log.20261123-100000");
    fs::rename(app.join("0.log"), &rotated).unwrap();
    expected.extend(w0.lines(20));
    let mut w0b = CriWriter::create(&app.join("0.log"), "r0b");
    expected.extend(w0b.lines(50));
    wait_for(
        "lines after rotation",
        Duration::from_secs(30),
        produced(expected.len()),
    );
    gzip(&rotated);
    expected.extend(w0b.lines(10));

    // A new container instance appears (restart 1): picked up within a second.
    let mut w1 = CriWriter::create(&app.join("1.log"), "r1");
    let first_of_restart = w1.lines(1);
    expected.extend(first_of_restart);
    let started = Instant::now();
    wait_for(
        "the new restart's line",
        Duration::from_secs(10),
        produced(expected.len()),
    );
    let pickup = started.elapsed();
    assert!(
        pickup < Duration::from_millis(1500),
        "restart file picked up after {pickup:?}"
    );

    // Truncation (copytruncate-style): the file is emptied and refilled;
    // the new lines are read from the start, once.
    let side = root.join("shop_side-1_uid-2/sidecar/0.log");
    let mut ws = CriWriter::create(&side, "side");
    expected.extend(ws.lines(30));
    wait_for(
        "sidecar lines",
        Duration::from_secs(30),
        produced(expected.len()),
    );
    let f = fs::OpenOptions::new().write(true).open(&side).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    let mut ws2 = CriWriter {
        file: fs::OpenOptions::new().append(true).open(&side).unwrap(),
        n: 1000,
        tag: "side-after-truncate".into(),
    };
    std::thread::sleep(Duration::from_millis(500));
    expected.extend(ws2.lines(5));
    wait_for(
        "lines after truncation",
        Duration::from_secs(30),
        produced(expected.len()),
    );

    // A file deleted while open: lines appended just before the delete are
    // still read through the open descriptor.
    let gone = root.join("shop_gone-1_uid-3/app/0.log");
    let mut wg = CriWriter::create(&gone, "gone");
    expected.extend(wg.lines(10));
    wait_for(
        "lines of the doomed file",
        Duration::from_secs(30),
        produced(expected.len()),
    );
    expected.extend(wg.lines(15));
    fs::remove_file(&gone).unwrap();
    wait_for(
        "lines of the deleted file",
        Duration::from_secs(30),
        produced(expected.len()),
    );
    assert!(metric(&addr, "sluice_collector_file_truncations") >= 1.0);
    assert!(collector.terminate().success());

    let records = consume(
        &topic.bootstrap,
        &topic.name,
        expected.len(),
        Duration::from_secs(60),
    );
    let mut got: Vec<String> = records
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "every line exactly once");
    let restarts: HashMap<&str, i64> = records
        .iter()
        .map(|r| {
            (
                r["message"].as_str().unwrap(),
                r["restart"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(restarts["r1 line 0"], 1);
    assert_eq!(restarts["r0 line 110"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_nothing_and_replays_keep_their_ids() {
    // A broker of its own, stopped (SIGSTOP) around the kill so that the
    // kill lands with lines read, sent and not yet acknowledged.
    let broker = OwnBroker::start();
    let tmp = tempfile::tempdir().unwrap();
    let manifest = generate(&tmp.path().join("gen"), 10, 6000);
    let total = manifest.totals.log_lines;
    let root = tmp.path().join("gen/var/log/pods");
    let data = tmp.path().join("data");
    let topic = "sluice.podlogs.kill";
    let env = [("SLUICE_COLLECTOR__BATCH_LINES", "1".to_string())];
    let (collector, addr) = spawn_collector(&data, &root, &broker.bootstrap, topic, &env);
    wait_for("some lines out", Duration::from_secs(60), || {
        metric(&addr, "sluice_collector_lines_produced") > 1000.0
    });
    broker.signal("STOP");
    let checkpoint = data.join("collector/checkpoints.json");
    wait_for("a saved checkpoint", Duration::from_secs(30), || {
        fs::read_to_string(&checkpoint).is_ok_and(|c| c.contains("offset"))
    });
    std::thread::sleep(Duration::from_millis(1500));
    let before_kill = metric(&addr, "sluice_collector_lines_produced");
    assert!(before_kill < total as f64, "killed mid-stream");
    drop(collector); // SIGKILL
    broker.signal("CONT");
    let (mut collector, addr) = spawn_collector(&data, &root, &broker.bootstrap, topic, &env);
    let consumed = consume(
        &broker.bootstrap,
        topic,
        total as usize,
        Duration::from_secs(120),
    );
    let ids = by_line_id(&consumed);
    assert_eq!(ids.len() as u64, total, "nothing lost");
    assert_eq!(
        ids.keys().cloned().collect::<BTreeSet<_>>(),
        ids_in_tree(&root)
    );
    // Replayed lines are exact copies: same id, same content.
    let mut replayed = 0;
    for copies in ids.values() {
        replayed += copies.len() - 1;
        assert!(copies.iter().all(|c| *c == copies[0]), "{copies:?}");
    }
    let resent = metric(&addr, "sluice_collector_lines_produced");
    assert!(
        resent < total as f64,
        "the restart resumed from the checkpoint ({resent} of {total} sent again)"
    );
    eprintln!("kill -9: {replayed} lines sent twice of {total}");
    assert!(collector.terminate().success());
}

fn rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_broker_pauses_reading_and_loses_nothing() {
    let broker = OwnBroker::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    // 40 containers × 20 000 lines of ~120 bytes: ~100 MB, several times
    // the collector's 24 MiB memory limit.
    let pad = "x".repeat(80);
    let mut total = 0usize;
    for c in 0..40 {
        let mut w = CriWriter::create(
            &root.join(format!("load_p{c}_uid-{c}/app/0.log")),
            &format!("c{c} {pad}"),
        );
        for _ in 0..20 {
            total += w.lines(1000).len();
        }
    }
    let topic = "sluice.podlogs.outage";
    let env = [(
        "SLUICE_COLLECTOR__MEMORY_LIMIT_BYTES",
        (24 << 20).to_string(),
    )];
    let (mut collector, addr) = spawn_collector(
        &tmp.path().join("data"),
        &root,
        &broker.bootstrap,
        topic,
        &env,
    );
    wait_for("some lines out", Duration::from_secs(60), || {
        metric(&addr, "sluice_collector_lines_produced") > 10_000.0
    });
    broker.signal("STOP");
    let paused_at = Instant::now();
    let mut max_rss = 0;
    let mut read_samples = Vec::new();
    while paused_at.elapsed() < Duration::from_secs(30) {
        max_rss = max_rss.max(rss_bytes(collector.0.id()));
        read_samples.push(metric(&addr, "sluice_collector_bytes_read"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let produced_during = metric(&addr, "sluice_collector_lines_produced");
    broker.signal("CONT");
    // Reading paused: the last ten seconds of the outage read nothing new,
    // and not everything had been read.
    let n = read_samples.len();
    assert_eq!(
        read_samples[n - 1],
        read_samples[n - 10],
        "{read_samples:?}"
    );
    assert!(produced_during < total as f64);
    assert!(
        max_rss < 160 << 20,
        "collector RSS reached {} MiB",
        max_rss >> 20
    );
    wait_for("catching up", Duration::from_secs(180), || {
        metric(&addr, "sluice_collector_lines_produced") >= total as f64
    });
    assert!(collector.terminate().success());
    let records = consume(&broker.bootstrap, topic, total, Duration::from_secs(120));
    let ids = by_line_id(&records);
    assert_eq!(ids.len(), total, "nothing lost");
    eprintln!(
        "outage: max RSS {} MiB, {} records consumed for {total} lines",
        max_rss >> 20,
        records.len()
    );
}

fn event(id: &str, user: &str) -> Value {
    serde_json::json!({
        "event_id": id,
        "occurred_at": "2026-11-23T10:00:00Z",
        "service": "orders",
        "action": "GET /v1/orders",
        "success": true,
        "user_id": user,
        "latency_ms": 12.5
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn http_intake_accepts_valid_records_after_the_broker_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let topic = TestTopic::create("intake", 2).await;
    let config = tmp.path().join("sluice.toml");
    fs::write(
        &config,
        "[collector]\npod_logs = false\nintake_max_body_bytes = 65536\nintake_tokens = [\"s3cret-intake-token\", \"other-intake-token\"]\n",
    )
    .unwrap();
    let env = [
        ("SLUICE_CONFIG", config.display().to_string()),
        ("SLUICE_KAFKA__TOPICS__EVENTS", topic.name.clone()),
    ];
    let (mut collector, addr) = spawn_collector(
        &tmp.path().join("data"),
        &tmp.path().join("no-pods"),
        &topic.bootstrap,
        "unused",
        &env,
    );
    let auth = ("Authorization", "Bearer s3cret-intake-token");
    let post = |headers: &[(&str, &str)], body: &[u8]| {
        common::http(&addr, "POST", "/v1/events", headers, Some(body))
    };

    // One object.
    let r = post(&[auth], event("e1", "alice").to_string().as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["accepted"], 1);

    // An array with one bad record: partial acceptance, the bad one named.
    let mut bad = event("e3", "bob");
    bad["occurred_at"] = Value::from("yesterday");
    let body = Value::Array(vec![event("e2", "bob"), bad, event("e4", "carol")]);
    let r = post(&[auth], body.to_string().as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    let j = r.json();
    assert_eq!(j["accepted"], 2);
    assert_eq!(j["rejected"][0]["index"], 1);
    assert!(
        j["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("occurred_at"),
        "{j}"
    );

    // Gzip'd NDJSON.
    let nd = format!("{}\n{}\n", event("e5", "dave"), event("e6", "dave"));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(nd.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let r = post(&[auth, ("Content-Encoding", "gzip")], &gz);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["accepted"], 2);

    // Nothing valid: 400 with the reasons.
    let r = post(&[auth], b"{\"event_id\": 1}");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["rejected"][0]["index"], 0);
    // Over the size limit: 413, also when the limit is passed by unzipping.
    let r = post(&[auth], &vec![b' '; 70_000]);
    assert_eq!(r.status, 413, "{}", r.text());
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![b' '; 200_000]).unwrap();
    let r = post(
        &[auth, ("Content-Encoding", "gzip")],
        &enc.finish().unwrap(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    // Unauthorized.
    assert_eq!(
        post(&[], event("x", "eve").to_string().as_bytes()).status,
        401
    );
    let r = post(&[("Authorization", "Bearer nope")], b"{}");
    assert_eq!(r.status, 401);
    // The error body every endpoint answers with (sluice_http::error).
    assert_eq!(r.json()["error"], "unauthorized", "{}", r.text());
    assert!(r.json()["detail"].as_str().unwrap().contains("token"));
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    // Unknown encoding.
    let r = post(&[auth, ("Content-Encoding", "br")], b"{}");
    assert_eq!(r.status, 415, "{}", r.text());
    // Still serving after all that.
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(metric(&addr, "sluice_collector_intake_records"), 5.0);
    assert!(collector.terminate().success());

    // Exactly the valid records, keyed by principal.
    let consumer: BaseConsumer = topic
        .client_config()
        .set("group.id", format!("check-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic.name]).unwrap();
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 5 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            got.insert(v["event_id"].as_str().unwrap().to_string(), key);
        }
    }
    let want: BTreeMap<String, String> = [
        ("e1", "alice"),
        ("e2", "bob"),
        ("e4", "carol"),
        ("e5", "dave"),
        ("e6", "dave"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
}

/// Lifecycle records of `namespace` on `topic` (the test's own topic).
fn lifecycle_records(bootstrap: &str, topic: &str, namespace: &str, want: usize) -> Vec<Value> {
    consume(bootstrap, topic, want, Duration::from_secs(60))
        .into_iter()
        .filter(|r| r["namespace"] == namespace)
        .collect()
}

fn summary(records: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} restart={} exit={} container={}",
                r["kind"].as_str().unwrap(),
                r["name"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
                r["restart_count"],
                r["exit_code"],
                r["container"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    out.sort();
    out
}

/// Compacts the test etcd up to its current revision (etcd's JSON gateway).
fn compact_etcd() {
    let url = sluice_testkit::etcd_url();
    let addr = url.trim_start_matches("http://");
    let r = common::http(
        addr,
        "POST",
        "/v3/kv/range",
        &[],
        Some(br#"{"key":"AA=="}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let revision = r.json()["header"]["revision"].as_str().unwrap().to_string();
    let body = format!(r#"{{"revision":"{revision}","physical":true}}"#);
    let r = common::http(
        addr,
        "POST",
        "/v3/kv/compaction",
        &[],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The kube-apiserver runs without kubelet or scheduler: the test plays the
/// kubelet, patching `pods/status` and creating Events through the API.
#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_restarts_and_events_become_lifecycle_records_once() {
    use common::kube::CrashingPod;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let kubeconfig = sluice_testkit::kubeconfig();
    let fixture = CrashingPod::create("t").await;
    let (client, ns, pods, events) = (
        fixture.client.clone(),
        fixture.ns.clone(),
        fixture.pods.clone(),
        fixture.events.clone(),
    );
    let pp = PostParams::default();
    let terminated = CrashingPod::terminated;
    let backoff = |count: i32| fixture.backoff(count);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let template = |memory: &str| {
        serde_json::json!({
            "metadata": {"labels": {"app": "api"}},
            "spec": {"containers": [{"name": "app", "image": "shop/api:1",
                "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": memory}}}]}
        })
    };
    deployments
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "api"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                    "template": template("2000Mi")}
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let topic = TestTopic::create("k8s", 1).await;
    let env = [
        ("SLUICE_KAFKA__TOPICS__K8S", topic.name.clone()),
        ("SLUICE_COLLECTOR__POD_LOGS", "false".into()),
        ("SLUICE_COLLECTOR__KUBERNETES", "true".into()),
        (
            "SLUICE_COLLECTOR__KUBECONFIG",
            kubeconfig.display().to_string(),
        ),
    ];
    let no_pods = tmp.path().join("none");
    let (mut collector, addr) = spawn_collector(&data, &no_pods, &topic.bootstrap, "x", &env);
    wait_for(
        "readiness (broker and API server)",
        Duration::from_secs(30),
        || http_get(&addr, "/readyz").0 == 200,
    );

    // 1. An OOM kill and the kubelet's back-off event.
    let ps = PatchParams::default();
    pods.patch_status("api-0", &ps, &Patch::Merge(terminated(1, "OOMKilled", 137)))
        .await
        .unwrap();
    events
        .create(&pp, &serde_json::from_value(backoff(1)).unwrap())
        .await
        .unwrap();
    // The memory limit raised and the deployment scaled (the first sight
    // of the deployment, at the start, only recorded what it looked like).
    deployments
        .patch(
            "api",
            &ps,
            &Patch::Merge(
                serde_json::json!({"spec": {"replicas": 3, "template": template("4000Mi")}}),
            ),
        )
        .await
        .unwrap();
    wait_for("four lifecycle records", Duration::from_secs(30), || {
        metric(&addr, "sluice_collector_k8s_events") >= 4.0
    });
    assert!(collector.terminate().success());

    // 2. While the collector is down: another crash, the event repeats. The
    // restart resumes the watches from the saved resourceVersion.
    pods.patch_status("api-0", &ps, &Patch::Merge(terminated(2, "Error", 1)))
        .await
        .unwrap();
    events
        .patch(
            "api-0.backoff",
            &ps,
            &Patch::Merge(serde_json::json!({"count": 2})),
        )
        .await
        .unwrap();
    let (mut collector, addr) = spawn_collector(&data, &no_pods, &topic.bootstrap, "x", &env);
    wait_for("the two new records", Duration::from_secs(30), || {
        metric(&addr, "sluice_collector_k8s_events") >= 2.0
    });
    assert!(collector.terminate().success());

    // 3. While the collector is down, another restart — and etcd is
    // compacted past the saved resourceVersions: the watches get 410 Gone,
    // list again, and emit only what changed since.
    pods.patch_status("api-0", &ps, &Patch::Merge(terminated(3, "Completed", 0)))
        .await
        .unwrap();
    compact_etcd();
    let (mut collector, addr) = spawn_collector(&data, &no_pods, &topic.bootstrap, "x", &env);
    wait_for("the re-list", Duration::from_secs(30), || {
        metric(&addr, "sluice_collector_k8s_relists") >= 1.0
    });
    wait_for(
        "the record after the re-list",
        Duration::from_secs(30),
        || metric(&addr, "sluice_collector_k8s_events") >= 1.0,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(&addr, "sluice_collector_k8s_events"),
        1.0,
        "nothing emitted twice"
    );
    assert!(collector.terminate().success());

    let records = lifecycle_records(&topic.bootstrap, &topic.name, &ns, 7);
    assert_eq!(
        summary(&records),
        vec![
            "Deployment api ReplicasChanged restart=null exit=null container=-",
            "Deployment api ResourcesUpdated restart=null exit=null container=-",
            "Pod api-0 BackOff restart=null exit=null container=app",
            "Pod api-0 BackOff restart=null exit=null container=app",
            "Pod api-0 Completed restart=3 exit=0 container=app",
            "Pod api-0 Error restart=2 exit=1 container=app",
            "Pod api-0 OOMKilled restart=1 exit=137 container=app",
        ]
    );
    let ids: BTreeSet<&str> = records
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 7, "distinct ids");
    let resources = records
        .iter()
        .find(|r| r["reason"] == "ResourcesUpdated")
        .unwrap();
    assert_eq!(
        resources["message"],
        "Resources updated: app: requests cpu=250m; limits memory=2000Mi -> requests cpu=250m; limits memory=4000Mi"
    );
    let oom = records.iter().find(|r| r["reason"] == "OOMKilled").unwrap();
    assert_eq!(oom["type"], "Warning");
    assert_eq!(oom["occurred_at"], "2026-11-23T10:05:00.000000Z");
    // Valid against the lifecycle contract, as the writer will check.
    for r in &records {
        sluice_schema::raw::LifecycleEvent::from_json(r).unwrap();
    }
}
