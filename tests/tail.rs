//! The live tail across container restarts, against `sluice up --demo`
//! and against the distributed roles through Kafka, with real clients: the
//! Python `websockets` library on Loki's `/loki/api/v1/tail` (as logcli and
//! Grafana speak it) and `sluice logs tail -f` on `/v1/logs/tail`.
//!
//! The demo OOMKills its first pod's container 20 s after it starts; a
//! tail opened before that must receive every line of the old instance and
//! of the new one, in file order, with their restart numbers, and say that
//! the old one ended OOMKilled (exit code 137) and the new one started. What
//! it received is checked against the `pod_logs` table afterwards: no line
//! missing, none twice, also at the seam between the index's backfill and
//! the live stream. Slow clients get `dropped_entries` and are cut off
//! while the server's buffers stay within their bound; tails are limited
//! per token; a tenant's tail sees its own namespaces only.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::up::{spawn_up_with, wait_for};
use common::{Proc, enc, free_port, http};

const OPERATOR: &str = "tail-operator-token-0001";
const CLI: &str = "tail-cli-token-0002";
const LIMITED: &str = "tail-limited-token-0003";
const SLOW: &str = "tail-slow-token-0004";
const PLATFORM: &str = "tail-platform-tenant-0005";
const BROWSER: &str = "tail-browser-token-0006";

fn config() -> String {
    let mut c = String::from(
        "[tail]\nmax_per_caller = 2\nclient_buffer_lines = 100\nmax_dropped = 3000\nwrite_timeout_secs = 5\n\
         [[tenants]]\nname = \"platform\"\nnamespaces = [\"iomete-system\"]\n",
    );
    for (token, tenant) in [
        (OPERATOR, None),
        (CLI, None),
        (LIMITED, None),
        (SLOW, None),
        (PLATFORM, Some("platform")),
        (BROWSER, None),
    ] {
        c.push_str(&format!(
            "[[query.tokens]]\ntoken = \"{token}\"\nrole = \"operator\"\n"
        ));
        if let Some(t) = tenant {
            c.push_str(&format!("tenant = \"{t}\"\n"));
        }
    }
    c
}

fn sql_as(addr: &str, token: &str, query: &str) -> Vec<Value> {
    let body = json!({ "sql": query }).to_string();
    let auth = format!("Bearer {token}");
    let r = http(
        addr,
        "POST",
        "/v1/sql",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r.json()["rows"].as_array().cloned().unwrap_or_default()
}

/// The Python Loki tail client (tests/interop/loki_tail.py), started.
/// `limit`: lines from the last 10 minutes before the live ones.
fn loki_tail(addr: &str, query: &str, token: &str, limit: usize, args: &[&str]) -> Child {
    let start_ns = (chrono::Utc::now().timestamp() - 600) * 1_000_000_000;
    let url = format!(
        "ws://{addr}/loki/api/v1/tail?query={}&limit={limit}&start={start_ns}",
        enc(query)
    );
    Command::new(sluice_testkit::python())
        .arg(sluice_testkit::source_path("tests/interop/loki_tail.py"))
        .arg(url)
        .args(["--token", token])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start loki_tail.py")
}

fn finish(child: Child) -> Value {
    let out = child.wait_with_output().expect("loki_tail.py");
    assert!(out.status.success(), "loki_tail.py failed");
    serde_json::from_slice(&out.stdout).expect("loki_tail.py's JSON")
}

/// Every stream value of the messages, in the order received:
/// (notice kind or "", restart label, line).
fn flatten(messages: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for m in messages.as_array().into_iter().flatten() {
        for s in m["streams"].as_array().into_iter().flatten() {
            let labels = &s["stream"];
            let kind = labels["sluice_notice"].as_str().unwrap_or("").to_string();
            let restart = labels["restart"].as_str().unwrap_or("").to_string();
            for v in s["values"].as_array().into_iter().flatten() {
                out.push((
                    kind.clone(),
                    restart.clone(),
                    v[1].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

fn metric(addr: &str, name: &str) -> f64 {
    let text = http(addr, "GET", "/metrics", &[], None).text();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `lines` lines of about 1 KB into a new pod `burst-0`'s log, at once.
fn write_burst(pods_root: &Path, lines: usize) {
    use std::io::Write;
    let dir = pods_root.join("burst_burst-0_6d1c0b7e-0000-4000-8000-00000000b0b0/app");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("0.log")).unwrap());
    let pad = "x".repeat(1000);
    for i in 0..lines {
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ");
        writeln!(f, "{ts} stdout F burst line {i} {pad}").unwrap();
    }
    f.flush().unwrap();
}

/// `got` equals `want`, or the first difference is shown.
fn same_lines(what: &str, got: &[String], want: &[String]) {
    if let Some(i) = (0..got.len().max(want.len())).find(|i| got.get(*i) != want.get(*i)) {
        panic!(
            "{what}: {} lines received, {} in the table; first difference at {i}:\n received {:?}\n table    {:?}",
            got.len(),
            want.len(),
            got.get(i),
            want.get(i)
        );
    }
}

fn facts(data_dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(data_dir.join("demo/facts.json")).unwrap()).unwrap()
}

#[test]
fn a_tail_follows_the_oomkilled_container_into_its_next_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let config_path = tmp.path().join("sluice.toml");
    std::fs::write(&config_path, config()).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let env = [("SLUICE_CONFIG", config_path.display().to_string())];
    let up = spawn_up_with(&data_dir, &addr, &["--demo"], &env);
    let f = facts(&data_dir);
    let (ns, pod, container) = (
        f["first_oom_namespace"].as_str().unwrap().to_string(),
        f["first_oom_pod"].as_str().unwrap().to_string(),
        f["first_oom_container"].as_str().unwrap().to_string(),
    );
    let selector = format!("{{namespace=\"{ns}\", pod=\"{pod}\", container=\"{container}\"}}");

    // The console's Live toggle on the same container, in Chromium.
    let browser = {
        let (base, pod_ref, container) = (
            format!("http://{addr}"),
            format!("{ns}/{pod}"),
            container.clone(),
        );
        std::thread::spawn(move || {
            common::browser::run_script(
                "live.mjs",
                &base,
                &common::browser::output_dir(),
                &[
                    ("LIVE_TOKEN", BROWSER.to_string()),
                    ("LIVE_POD", pod_ref),
                    ("LIVE_CONTAINER", container),
                ],
                Duration::from_secs(180),
            )
        })
    };
    // Loki's tail until 20 lines of the next instance came (the OOMKill is
    // 20 s after the start).
    let follower = loki_tail(
        &addr,
        &selector,
        OPERATOR,
        5000,
        &["--until-restart", "1", "--after", "20", "--seconds", "120"],
    );
    // `sluice logs tail -f`: 5 lines of backfill (the pod has written
    // them by now), then live.
    std::thread::sleep(Duration::from_secs(4));
    let cli_out = tmp.path().join("cli.ndjson");
    let mut cli = Proc(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["logs", "tail", "-f", "--server", &format!("http://{addr}")])
            .args(["--token", CLI, "-n", &ns, "--pod", &pod, "-c", &container])
            .args(["--lines", "5", "--format", "json"])
            .env_remove("SLUICE_CONFIG")
            .stdout(std::fs::File::create(&cli_out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // A tenant's tail of "everything" sees its own namespaces only.
    let tenant = loki_tail(
        &addr,
        "{namespace=~\".+\"}",
        PLATFORM,
        10,
        &["--seconds", "8"],
    );
    // Two tails per token; the third is refused with a 429.
    let held: Vec<Child> = (0..2)
        .map(|_| loki_tail(&addr, &selector, LIMITED, 1, &["--seconds", "12"]))
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let refused = finish(loki_tail(&addr, &selector, LIMITED, 1, &["--seconds", "5"]));
    assert_eq!(refused["closed"]["status"], 429, "{refused}");
    assert!(
        refused["closed"]["body"]
            .as_str()
            .unwrap()
            .contains("max_per_caller"),
        "{refused}"
    );
    // Slow clients of a burst pod: 30 000 lines of 1 KB written at once
    // (more than the kernel's socket buffers absorb). One reads a message
    // (at most client_buffer_lines = 100 lines) a second behind a 2 KB
    // receive buffer, so it falls behind; one stops reading, so a write
    // waits past write_timeout_secs.
    let burst = "{pod=\"burst-0\"}";
    let slow = loki_tail(
        &addr,
        burst,
        SLOW,
        1,
        &["--rcvbuf", "2048", "--read-delay", "1", "--seconds", "15"],
    );
    let stalled = loki_tail(
        &addr,
        burst,
        SLOW,
        1,
        &["--rcvbuf", "2048", "--pause", "25", "--seconds", "30"],
    );
    std::thread::sleep(Duration::from_secs(2));
    write_burst(&data_dir.join("demo/var/log/pods"), 30_000);
    // Past the backfills (written at once), each open tail holds at most
    // client_buffer_lines = 100.
    std::thread::sleep(Duration::from_secs(2));
    let cap = 8.0 * 100.0;
    let mut most_buffered: f64 = 0.0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(18) {
        most_buffered = most_buffered.max(metric(&addr, "sluice_tail_buffered_lines"));
        std::thread::sleep(Duration::from_millis(500));
    }

    for t in held {
        finish(t);
    }
    let tenant = finish(tenant);
    let lines = flatten(&tenant["messages"]);
    assert!(!lines.is_empty(), "the tenant's tail got nothing");
    for m in tenant["messages"].as_array().unwrap() {
        for s in m["streams"].as_array().unwrap() {
            if s["stream"]["sluice_notice"].is_null() {
                assert_eq!(s["stream"]["namespace"], "iomete-system", "{s}");
            }
        }
    }

    let slow = finish(slow);
    let dropped: Vec<&Value> = slow["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["dropped_entries"].as_array())
        .flatten()
        .collect();
    assert!(
        !dropped.is_empty(),
        "the slow client was never told of dropped lines"
    );
    assert!(dropped[0]["labels"]["namespace"].is_string() && dropped[0]["timestamp"].is_string());
    let stalled = finish(stalled);
    assert!(
        metric(&addr, "sluice_tail_disconnected_total{reason=\"slow\"}") >= 1.0,
        "the stalled client was not cut off: {}",
        stalled["closed"]
    );
    assert!(
        most_buffered <= cap,
        "the tails' buffers held {most_buffered} lines, more than their bound {cap}"
    );
    assert!(metric(&addr, "sluice_tail_dropped_entries_total") > 0.0);

    // The follower: every line of both instances, in file order, and the
    // notices between them.
    let followed = finish(follower);
    let items = flatten(&followed["messages"]);
    let first_new = items
        .iter()
        .position(|(k, r, _)| k.is_empty() && r == "1")
        .expect("no line of the next instance");
    let ended = items
        .iter()
        .position(|(k, _, t)| k == "ended" && t.contains("OOMKilled, exit code 137"))
        .expect("no notice of the OOMKill");
    let restart = items
        .iter()
        .position(|(k, r, t)| k == "restart" && r == "1" && t.contains("OOMKilled, exit code 137"))
        .expect("no notice of the next instance");
    assert!(
        ended < first_new && restart < first_new,
        "notices after the new lines"
    );
    let received = |restart: &str| -> Vec<String> {
        items
            .iter()
            .filter(|(k, r, _)| k.is_empty() && r == restart)
            .map(|(_, _, l)| l.clone())
            .collect()
    };
    let (old, new) = (received("0"), received("1"));
    assert!(
        old.len() >= 20 && new.len() >= 20,
        "{} / {}",
        old.len(),
        new.len()
    );
    // One column of an instance's rows, in file order.
    let instance = |column: &str, restart: i64| -> Vec<String> {
        sql_as(
            &addr,
            OPERATOR,
            &format!(
                "SELECT {column} FROM pod_logs WHERE namespace = '{ns}' AND pod = '{pod}' \
                 AND container = '{container}' AND restart = {restart} ORDER BY byte_offset"
            ),
        )
        .into_iter()
        .map(|r| r[column].as_str().unwrap().to_string())
        .collect()
    };
    let table = |restart: i64| instance("message", restart);
    wait_for(
        "the table to hold the old instance",
        Duration::from_secs(30),
        || table(0).len() >= old.len() && table(1).len() >= new.len(),
    );
    same_lines("the old instance", &old, &table(0));
    same_lines("the new instance", &new, &table(1)[..new.len()]);

    // The CLI's stream: backfill joined to live lines by line_id, no gap,
    // no duplicate; the restart event names how the old instance ended.
    std::thread::sleep(Duration::from_secs(2));
    let _ = cli.0.kill();
    let _ = cli.0.wait();
    let mut text = String::new();
    std::fs::File::open(&cli_out)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let backfill: usize = events
        .iter()
        .filter(|e| e["type"] == "lines" && e["backfill"] == true)
        .map(|e| e["lines"].as_array().unwrap().len())
        .sum();
    assert_eq!(backfill, 5, "the backfill is --lines");
    let got: Vec<(i64, String)> = events
        .iter()
        .filter(|e| e["type"] == "lines")
        .flat_map(|e| e["lines"].as_array().unwrap().clone())
        .map(|l| {
            (
                l["restart"].as_i64().unwrap(),
                l["line_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let restart_event = events
        .iter()
        .find(|e| e["type"] == "restart" && e["restart"] == 1)
        .expect("no restart event in the CLI's stream");
    assert_eq!(
        restart_event["previous"]["reason"], "OOMKilled",
        "{restart_event}"
    );
    assert_eq!(restart_event["previous"]["exit_code"], 137);
    let mut by_restart: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (r, id) in &got {
        by_restart.entry(*r).or_default().push(id.clone());
    }
    for (r, ids) in &by_restart {
        let rows = instance("line_id", *r);
        let at = rows
            .iter()
            .position(|id| *id == ids[0])
            .unwrap_or_else(|| panic!("restart {r}: the first line received is not in the table"));
        let end = (at + ids.len()).min(rows.len());
        assert_eq!(
            ids[..end - at],
            rows[at..end],
            "restart {r}: the lines received are the table's, each once, none skipped"
        );
    }
    assert!(
        by_restart.len() == 2,
        "the CLI saw both instances: {by_restart:?}"
    );
    browser
        .join()
        .expect("the console's Live test (tests/console/live.mjs)");
    wait_for("every tail to close", Duration::from_secs(20), || {
        metric(&addr, "sluice_tail_clients") == 0.0
    });
    drop(up);
}

/// Appends `n` CRI lines `"<what> <i>"` to `path`, `gap` apart.
fn write_lines(path: &Path, what: &str, n: usize, gap: Duration) -> Vec<String> {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut written = Vec::new();
    for i in 0..n {
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ");
        let line = format!("{what} {i}");
        writeln!(f, "{ts} stdout F {line}").unwrap();
        f.flush().unwrap();
        written.push(line);
        std::thread::sleep(gap);
    }
    written
}

/// `sluice up --kafka`: the query role's tail reads the pod-log and
/// lifecycle topics (a consumer of its own, started by the first tail) and
/// follows a container a test writes, across its restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_through_kafka_follows_a_restart() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use sluice_testkit::TestTopic;
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let pods = tmp.path().join("pods");
    std::fs::create_dir_all(&pods).unwrap();
    let events = TestTopic::create("tail-events", 1).await;
    let podlogs = TestTopic::create("tail-podlogs", 2).await;
    let k8s = TestTopic::create("tail-k8s", 1).await;
    let dlq = TestTopic::create("tail-dlq", 1).await;
    let base = loop {
        let p = free_port();
        if p < 65000 && (1..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            break p;
        }
    };
    let addr = format!("127.0.0.1:{base}");
    let env = [
        ("SLUICE_KAFKA", events.bootstrap.clone()),
        ("SLUICE_KAFKA__TOPICS__EVENTS", events.name.clone()),
        ("SLUICE_KAFKA__TOPICS__PODLOGS", podlogs.name.clone()),
        ("SLUICE_KAFKA__TOPICS__K8S", k8s.name.clone()),
        ("SLUICE_KAFKA__TOPICS__DLQ", dlq.name.clone()),
        ("SLUICE_KAFKA__GROUP_ID", sluice_testkit::unique("tail")),
        ("SLUICE_COLLECTOR__PODS_ROOT", pods.display().to_string()),
    ];
    let _up = tokio::task::block_in_place(|| {
        let up = spawn_up_with(&data_dir, &addr, &[], &env);
        for i in 1..4 {
            let role = format!("127.0.0.1:{}", base + i);
            wait_for("every role to be ready", Duration::from_secs(60), || {
                common::http_get(&role, "/readyz").0 == 200
            });
        }
        up
    });
    let tail = loki_tail(
        &addr,
        "{namespace=\"kt\", pod=\"crash-0\"}",
        "unused",
        5000,
        &["--until-restart", "1", "--after", "40", "--seconds", "90"],
    );
    let pod_dir = pods.join("kt_crash-0_1f1b0c7e-0000-4000-8000-0000000c4a50/app");
    let gap = Duration::from_millis(50);
    let old = tokio::task::block_in_place(|| write_lines(&pod_dir.join("0.log"), "old", 40, gap));
    // The container's end, as the Kubernetes watcher records it.
    let producer: FutureProducer = k8s.client_config().create().unwrap();
    let ended = json!({
        "event_id": "kt-crash-0-oom-1", "occurred_at": chrono::Utc::now().to_rfc3339(),
        "cluster": "default", "namespace": "kt", "kind": "Pod", "name": "crash-0",
        "container": "app", "reason": "OOMKilled", "type": "Warning",
        "message": "Container app terminated: OOMKilled (exit code 137)",
        "restart_count": 1, "exit_code": 137,
    })
    .to_string();
    producer
        .send(
            FutureRecord::to(&k8s.name)
                .key("kt/crash-0")
                .payload(&ended),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let new = tokio::task::block_in_place(|| write_lines(&pod_dir.join("1.log"), "new", 40, gap));
    let got = tokio::task::block_in_place(|| finish(tail));
    let items = flatten(&got["messages"]);
    let received = |restart: &str| -> Vec<String> {
        items
            .iter()
            .filter(|(k, r, _)| k.is_empty() && r == restart)
            .map(|(_, _, l)| l.clone())
            .collect()
    };
    same_lines("restart 0 through Kafka", &received("0"), &old);
    same_lines("restart 1 through Kafka", &received("1"), &new);
    let first_new = items
        .iter()
        .position(|(k, r, _)| k.is_empty() && r == "1")
        .unwrap();
    let notice = items
        .iter()
        .position(|(k, r, t)| k == "restart" && r == "1" && t.contains("OOMKilled, exit code 137"))
        .unwrap_or_else(|| panic!("no restart notice: {items:?}"));
    assert!(notice < first_new);
    assert!(
        items
            .iter()
            .any(|(k, _, t)| k == "ended" && t.contains("(restart 0) ended: OOMKilled")),
        "no notice of the end"
    );
}
