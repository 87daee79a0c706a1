//! Alerts under `sluice up --demo`, delivered to a real Alertmanager
//! (Debian's `prometheus-alertmanager`, installed by `scripts/test`; each
//! test starts its own on a free port), whose notifications reach a webhook
//! receiver in this test:
//!
//! - the demo's first OOMKill takes a restart rule through pending to
//!   firing, and Alertmanager lists it with the rule's and the row's labels;
//! - a restart of sluice keeps the firing alert (same `activeAt`) and
//!   Alertmanager sends no second notification;
//! - a LogQL rule over the OOMKilled lines fires for the same pod;
//! - the demo's request spike fires the spike rule for the spike principal;
//! - the restart alert resolves once its window has passed: Alertmanager
//!   stops listing it and notifies the resolution;
//! - a rule whose SQL fails shows its error on `/api/v1/rules` and in
//!   `/metrics`, and the other rules keep evaluating;
//! - `/api/v1/rules` and `/api/v1/alerts` have the shapes of a real
//!   Prometheus's answers (`tests/fixtures/prometheus/`, recorded);
//! - the `alert_history` table holds each of the restart alert's
//!   transitions once across the restart, by SQL, by PyIceberg and by
//!   DuckDB, and the same rows after compaction;
//! - of two `sluice serve` replicas on an S3 warehouse (SeaweedFS) and a
//!   Postgres catalog one evaluates, the other follows its saved state and
//!   takes the object-store lease over when the first is killed, carrying
//!   the alert on without a second notification.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::up::{get_json, spawn_up_with, sql, wait_for};
use common::{Proc, free_port, http_get, ok, sluice_with};
use serde_json::Value;

/// Collects the JSON bodies POSTed to it (Alertmanager's webhook receiver).
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let sink = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.to_ascii_lowercase();
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(v) = serde_json::from_slice(&body)
                {
                    sink.lock().unwrap().push(v);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Self { url, bodies }
    }

    /// Notifications whose alerts include one with these labels, by status.
    fn notified(&self, alertname: &str, pod: &str, status: &str) -> usize {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|b| {
                b["alerts"].as_array().is_some_and(|alerts| {
                    alerts.iter().any(|a| {
                        a["labels"]["alertname"] == alertname
                            && a["labels"]["pod"] == pod
                            && a["status"] == status
                    })
                })
            })
            .count()
    }
}

fn alertmanager_bin() -> String {
    std::env::var("SLUICE_ALERTMANAGER_BIN").unwrap_or_else(|_| "prometheus-alertmanager".into())
}

/// A real Alertmanager routing every alert, one group per alert name and
/// pod, to `receiver`: notified a second after an alert arrives, again only
/// after an hour (so a second notification is a duplicate).
fn start_alertmanager(dir: &Path, receiver: &str) -> (Proc, String) {
    let port = free_port();
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, pod]\n  group_wait: 1s\n  \
             group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    \
             webhook_configs:\n      - url: {receiver}\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let proc = Proc(
        Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager (scripts/test installs it)"),
    );
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() || get_1_0(&addr, "/-/ready").0 != 200 {
        assert!(Instant::now() < deadline, "Alertmanager never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    (proc, addr)
}

/// GET over HTTP/1.0, so Go's server answers unchunked: (status, body).
fn get_1_0(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Alertmanager's active alerts named `alertname`.
fn am_alerts(am: &str, alertname: &str) -> Vec<Value> {
    let (status, body) = get_1_0(am, "/api/v2/alerts");
    assert_eq!(status, 200, "{body}");
    let all: Vec<Value> = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    all.into_iter()
        .filter(|a| a["labels"]["alertname"] == alertname)
        .collect()
}

/// The alert of `alertname` for `pod` on sluice's `/api/v1/alerts`.
fn sluice_alert(addr: &str, alertname: &str, key: &str, value: &str) -> Option<Value> {
    let v = get_json(addr, "/api/v1/alerts");
    v["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == alertname && a["labels"][key] == value)
        .cloned()
}

const RULES: &str = r#"
groups:
  - name: demo
    interval: 1s
    rules:
      - alert: DemoRestarts
        expr:
          restarts: {window: 100s, by: [namespace, pod], reasons: [OOMKilled]}
        for: 4s
        labels: {severity: page, channel: demo-oncall}
        annotations: {summary: "{{ $labels.pod }} restarted {{ $value }} times"}
      - alert: DemoSpike
        expr:
          spike: {window: 30s, baseline: 1h, factor: 3, by: [user_id], min_baseline: 20s, min_per_minute: 60}
        labels: {severity: warning}
      - alert: BrokenRule
        expr: SELECT no_such_column AS value FROM platform_events
  - name: logs
    interval: 2s
    rules:
      - alert: OOMLines
        expr: sum by (namespace, pod) (count_over_time({namespace=~".+"} |= "OOMKilled" [10m])) > 0
"#;

/// Every key of `want`, at every depth, is in `got` with a value of the
/// same JSON type (arrays: their first elements compared).
fn same_shape(want: &Value, got: &Value, at: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                // Label and annotation maps hold the rules' own keys.
                if matches!(k.as_str(), "labels" | "annotations") {
                    assert!(
                        g.get(k).is_some_and(Value::is_object),
                        "{at}.{k}: missing or not an object in {got}"
                    );
                    continue;
                }
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}.{k}: missing in {got}"));
                same_shape(wv, gv, &format!("{at}.{k}"));
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if let (Some(w0), Some(g0)) = (w.first(), g.first()) {
                same_shape(w0, g0, &format!("{at}[0]"));
            }
        }
        (w, g) => assert_eq!(
            std::mem::discriminant(w),
            std::mem::discriminant(g),
            "{at}: Prometheus has {w}, sluice {g}"
        ),
    }
}

#[test]
fn demo_alerts_fire_survive_a_restart_and_resolve_through_alertmanager() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let receiver = Receiver::start();
    let (_am, am) = start_alertmanager(tmp.path(), &receiver.url);
    let rules = tmp.path().join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let config = tmp.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[alerts]\nrules = [{:?}]\ndefault_rules = false\nalertmanagers = [\"http://{am}\"]\n",
            rules.display().to_string()
        ),
    )
    .unwrap();
    let env = [("SLUICE_CONFIG", config.display().to_string())];
    let addr = format!("127.0.0.1:{}", free_port());
    let args = ["--demo", "--demo-spike-minute", "2"];
    let mut up = spawn_up_with(&data_dir, &addr, &args, &env);
    let facts: Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("demo/facts.json")).unwrap()).unwrap();
    let pod = facts["first_oom_pod"].as_str().unwrap().to_string();
    let ns = facts["first_oom_namespace"].as_str().unwrap().to_string();
    let spike = facts["spike_principal"].as_str().unwrap().to_string();

    // 1. The first OOMKill: pending, then firing after `for`.
    let mut seen = Vec::new();
    wait_for(
        "the restart rule to fire for the first OOMKilled pod",
        Duration::from_secs(120),
        || {
            let a = sluice_alert(&addr, "DemoRestarts", "pod", &pod);
            let state = a
                .as_ref()
                .map(|a| a["state"].as_str().unwrap_or("").to_string());
            if let Some(s) = &state
                && seen.last() != Some(s)
            {
                seen.push(s.clone());
            }
            std::thread::sleep(Duration::from_millis(200));
            state.as_deref() == Some("firing")
        },
    );
    assert_eq!(seen, ["pending", "firing"], "the alert's states in order");
    let firing = sluice_alert(&addr, "DemoRestarts", "pod", &pod).unwrap();
    assert_eq!(firing["labels"]["namespace"], ns.as_str());
    assert_eq!(
        firing["annotations"]["summary"],
        format!("{pod} restarted 1 times")
    );
    wait_for(
        "Alertmanager to list the alert",
        Duration::from_secs(30),
        || {
            am_alerts(&am, "DemoRestarts").iter().any(|a| {
                a["labels"]["pod"] == pod.as_str()
                    && a["labels"]["namespace"] == ns.as_str()
                    && a["labels"]["severity"] == "page"
                    && a["labels"]["channel"] == "demo-oncall"
                    && a["generatorURL"]
                        .as_str()
                        .is_some_and(|u| u.ends_with("/#/alerts"))
            })
        },
    );
    wait_for(
        "the webhook to be notified",
        Duration::from_secs(30),
        || receiver.notified("DemoRestarts", &pod, "firing") == 1,
    );

    // 2. A restart keeps the firing alert and notifies nobody again.
    assert!(up.terminate().success());
    let restarted_at = chrono::Utc::now();
    let mut up = spawn_up_with(&data_dir, &addr, &args, &env);
    wait_for(
        "the restarted sluice to evaluate",
        Duration::from_secs(60),
        || {
            get_json(&addr, "/api/v1/rules")["data"]["groups"][0]["lastEvaluation"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t > restarted_at)
        },
    );
    let after = sluice_alert(&addr, "DemoRestarts", "pod", &pod)
        .expect("the firing alert survives the restart");
    assert_eq!(after["state"], "firing");
    assert_eq!(
        after["activeAt"], firing["activeAt"],
        "the same alert, not a new one"
    );

    // 3. The LogQL rule sees the OOMKilled lines of the same pod.
    wait_for(
        "the LogQL rule to fire for the pod",
        Duration::from_secs(90),
        || sluice_alert(&addr, "OOMLines", "pod", &pod).is_some_and(|a| a["state"] == "firing"),
    );

    // 4. The spike rule fires for the spike principal.
    wait_for(
        "the spike rule to fire for the spike principal",
        Duration::from_secs(200),
        || {
            sluice_alert(&addr, "DemoSpike", "user_id", &spike)
                .is_some_and(|a| a["state"] == "firing")
        },
    );
    assert!(
        am_alerts(&am, "DemoSpike")
            .iter()
            .any(|a| a["labels"]["user_id"] == spike.as_str()),
        "Alertmanager lists the spike"
    );

    // 5. The restart alert resolves when its window has passed.
    wait_for(
        "the restart alert to resolve",
        Duration::from_secs(150),
        || {
            sluice_alert(&addr, "DemoRestarts", "pod", &pod).is_none()
                && !am_alerts(&am, "DemoRestarts")
                    .iter()
                    .any(|a| a["labels"]["pod"] == pod.as_str())
        },
    );
    wait_for(
        "the webhook to hear of the resolution",
        Duration::from_secs(30),
        || receiver.notified("DemoRestarts", &pod, "resolved") >= 1,
    );
    assert_eq!(
        receiver.notified("DemoRestarts", &pod, "firing"),
        1,
        "one firing notification across the restart"
    );

    // The alert's life in alert_history: each transition once, though
    // sluice restarted while it fired.
    let history_sql = format!(
        "SELECT from_state, to_state, CAST(active_at AS VARCHAR) AS active_at, rule_group \
         FROM alert_history WHERE rule = 'DemoRestarts' AND series LIKE '%pod=\"{pod}\"%' ORDER BY seq"
    );
    let mut history = Vec::new();
    wait_for(
        "alert_history to hold the resolution",
        Duration::from_secs(30),
        || {
            history = sql(&addr, &history_sql);
            history.len() >= 3
        },
    );
    let steps: Vec<(String, String)> = history
        .iter()
        .map(|r| {
            (
                r["from_state"].as_str().unwrap().to_string(),
                r["to_state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("inactive".into(), "pending".into()),
            ("pending".into(), "firing".into()),
            ("firing".into(), "inactive".into())
        ],
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .all(|r| r["active_at"] == history[0]["active_at"] && r["rule_group"] == "demo"),
        "one episode: {history:?}"
    );
    // docs/alerts.md's example: how often each rule fired, for how long.
    let example = sql(
        &addr,
        "SELECT f.rule, count(*) AS fired, \
                avg(date_part('epoch', r.at) - date_part('epoch', f.at)) AS avg_seconds_firing \
         FROM alert_history f \
         JOIN alert_history r \
           ON r.series = f.series AND r.active_at = f.active_at \
          AND r.from_state = 'firing' AND r.to_state = 'inactive' \
         WHERE f.to_state = 'firing' AND f.at > now() - INTERVAL '30 days' \
         GROUP BY f.rule ORDER BY fired DESC",
    );
    let restarts = example
        .iter()
        .find(|r| r["rule"] == "DemoRestarts")
        .unwrap_or_else(|| panic!("{example:?}"));
    assert!(
        restarts["avg_seconds_firing"].as_f64().unwrap() > 0.0,
        "{restarts}"
    );

    // 6. The broken rule shows its error; the others kept evaluating.
    let rules = get_json(&addr, "/api/v1/rules");
    let all: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let broken = all.iter().find(|r| r["name"] == "BrokenRule").unwrap();
    assert_eq!(broken["health"], "err");
    assert!(
        broken["lastError"]
            .as_str()
            .unwrap()
            .contains("no_such_column"),
        "{broken}"
    );
    for r in all.iter().filter(|r| r["name"] != "BrokenRule") {
        assert_eq!(r["health"], "ok", "{r}");
    }
    let (_, metrics) = http_get(&addr, "/metrics");
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("sluice_alert_rule_evaluation_failures_total{rule=\"BrokenRule\"}"))
        .unwrap_or_else(|| panic!("no failure count for BrokenRule in\n{metrics}"));
    assert!(!failures.ends_with(" 0"), "{failures}");
    assert!(metrics.contains("sluice_alert_rule_evaluations_total{rule=\"DemoRestarts\"}"));
    assert!(metrics.contains("sluice_alert_evaluator_leader 1"));

    // 7. Prometheus's shapes.
    let want_rules: Value =
        serde_json::from_str(include_str!("fixtures/prometheus/rules.json")).unwrap();
    same_shape(&want_rules, &rules, "rules");
    let firing_group = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| {
            g["rules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| !r["alerts"].as_array().unwrap().is_empty())
        })
        .expect("a rule with alerts, to compare an alert's shape");
    same_shape(&want_rules["data"]["groups"][0], firing_group, "group");
    let want_alerts: Value =
        serde_json::from_str(include_str!("fixtures/prometheus/alerts.json")).unwrap();
    same_shape(&want_alerts, &get_json(&addr, "/api/v1/alerts"), "alerts");

    // The console's view names the rule's threshold, channel and last fire.
    let console = get_json(&addr, "/v1/alerts");
    let restarts = console["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "DemoRestarts")
        .unwrap();
    assert_eq!(restarts["channel"], "demo-oncall");
    assert!(restarts["last_fired"].is_string(), "{restarts}");
    assert!(
        restarts["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["to"] == "firing"),
        "{restarts}"
    );
    let rows = common::up::count(&addr, "SELECT count(*) AS n FROM alert_history");
    assert!(up.terminate().success());

    // Other engines read the same rows, before and after compaction.
    let digest =
        |dir: &Path| -> Value { common::table_digests(dir, None)["alert_history"].clone() };
    let before = digest(&data_dir);
    assert_eq!(before["pyiceberg"]["rows"], rows, "{before}");
    assert_eq!(before["duckdb"], before["pyiceberg"], "{before}");
    let eager = [
        ("SLUICE_MAINTENANCE__ORPHAN_MIN_AGE_SECS", "0".to_string()),
        ("SLUICE_MAINTENANCE__SNAPSHOT_MAX_AGE_SECS", "0".to_string()),
        ("SLUICE_MAINTENANCE__SNAPSHOTS_TO_KEEP", "1".to_string()),
    ];
    let reports: Value =
        serde_json::from_str(&ok(sluice_with(&data_dir, &["maintain", "--once"], &eager))).unwrap();
    let report = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == "alert_history")
        .unwrap_or_else(|| panic!("no alert_history report: {reports}"));
    assert!(report["compacted_files"].as_u64().unwrap() >= 2, "{report}");
    let after = digest(&data_dir);
    assert_eq!(
        after["pyiceberg"], before["pyiceberg"],
        "rows changed: {after}"
    );
    assert_eq!(after["duckdb"], after["pyiceberg"], "{after}");
    assert!(
        after["files"].as_u64().unwrap() < before["files"].as_u64().unwrap(),
        "{before} → {after}"
    );
}

/// `/metrics`' value of an unlabelled gauge.
fn gauge(addr: &str, name: &str) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Two `sluice serve` replicas on one S3 warehouse (SeaweedFS) and one
/// Postgres catalog: one evaluates (it holds the lease in the object
/// store), the other answers the alert APIs from the saved state; when the
/// evaluating one is killed (`kill -9`, no release) the other takes the
/// lease over once it expires and carries on with the same alert — the
/// webhook hears of it once.
#[test]
fn one_replica_evaluates_and_another_takes_over_with_the_same_alert() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let rules = tmp.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "groups:\n  - name: always\n    interval: 1s\n    rules:\n      - alert: Always\n        \
         expr: SELECT 'replicas' AS pod, 1 AS value\n",
    )
    .unwrap();
    let config = tmp.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[alerts]\nrules = [{:?}]\ndefault_rules = false\nwebhooks = [{:?}]\nlease_duration = \"3s\"\n",
            rules.display().to_string(),
            receiver.url
        ),
    )
    .unwrap();
    let mut env = common::s3_warehouse_env("alerts");
    env.push(("SLUICE_CATALOG__KIND", "postgres".to_string()));
    env.push(("SLUICE_CATALOG__URI", common::postgres_catalog()));
    env.push(("SLUICE_CONFIG", config.display().to_string()));

    let (a, a_addr) = common::spawn_serve(&tmp.path().join("a"), &[], &env);
    wait_for(
        "replica A to fire the alert",
        Duration::from_secs(60),
        || {
            sluice_alert(&a_addr, "Always", "pod", "replicas")
                .is_some_and(|x| x["state"] == "firing")
        },
    );
    let fired = sluice_alert(&a_addr, "Always", "pod", "replicas").unwrap();
    assert_eq!(gauge(&a_addr, "sluice_alert_evaluator_leader"), Some(1.0));

    let (mut b, b_addr) = common::spawn_serve(&tmp.path().join("b"), &[], &env);
    wait_for(
        "replica B to follow A's state",
        Duration::from_secs(30),
        || {
            sluice_alert(&b_addr, "Always", "pod", "replicas")
                .is_some_and(|x| x["activeAt"] == fired["activeAt"])
        },
    );
    // A keeps the lease while it renews: B never evaluates meanwhile.
    for _ in 0..10 {
        assert_eq!(
            gauge(&b_addr, "sluice_alert_evaluator_leader"),
            Some(0.0),
            "B evaluates too"
        );
        assert_eq!(gauge(&a_addr, "sluice_alert_evaluator_leader"), Some(1.0));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(receiver.notified("Always", "replicas", "firing"), 1);

    // A dies without releasing: B takes over after the lease expires.
    drop(a);
    wait_for(
        "replica B to take the lease over",
        Duration::from_secs(30),
        || gauge(&b_addr, "sluice_alert_evaluator_leader") == Some(1.0),
    );
    let rules_b = get_json(&b_addr, "/api/v1/rules");
    let t0 = chrono::Utc::now();
    wait_for("replica B to evaluate", Duration::from_secs(30), || {
        get_json(&b_addr, "/api/v1/rules")["data"]["groups"][0]["lastEvaluation"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > t0)
    });
    let after = sluice_alert(&b_addr, "Always", "pod", "replicas").expect("the alert on B");
    assert_eq!(after["state"], "firing", "{rules_b}");
    assert_eq!(
        after["activeAt"], fired["activeAt"],
        "the same alert, carried over"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        receiver.notified("Always", "replicas", "firing"),
        1,
        "the webhook heard of the alert once across the handover"
    );
    assert!(b.terminate().success());
}
