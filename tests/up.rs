//! `sluice up`: the whole pipeline in one process, without Kafka. The demo
//! runs, its first OOMKill becomes searchable, the spike principal leads
//! attribution, and after two `kill -9`s the tables hold exactly what the
//! demo wrote to files and what the intake acknowledged — no row lost, none
//! twice.

mod common;

use std::process::Command;
use std::time::Duration;

use common::up::{catch_up_exactly, count, get_json, spawn_up, sql, wait_for};
use common::{free_port, http, http_get};
use serde_json::Value;

#[test]
fn up_demo_is_searchable_attributable_and_exact_across_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());

    // 1. The demo: first OOMKill searchable, spike principal on top.
    let mut up = spawn_up(&data_dir, &addr, true, &[]);
    let facts: Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("demo/facts.json")).unwrap()).unwrap();
    let ns = facts["first_oom_namespace"].as_str().unwrap().to_string();
    let pod = facts["first_oom_pod"].as_str().unwrap().to_string();
    let spike = facts["spike_principal"].as_str().unwrap().to_string();
    let restarts_path = format!("/v1/logs/restarts?namespace={ns}&pod={pod}");
    wait_for(
        "the first OOMKill and the instance after it to be searchable",
        Duration::from_secs(120),
        || {
            let r = http(&addr, "GET", &restarts_path, &[], None);
            if r.status != 200 {
                return false;
            }
            let v = r.json();
            let instances = v["instances"].as_array().cloned().unwrap_or_default();
            let killed = instances
                .iter()
                .any(|i| i["termination"] == "OOMKilled" && i["lines"].as_u64() > Some(0));
            let next = instances
                .iter()
                .any(|i| i["restart"].as_i64() >= Some(1) && i["lines"].as_u64() > Some(0));
            killed && next
        },
    );
    // The table shows the instances first; the index follows within a
    // round or two.
    let search = format!("/v1/logs/search?q=OOMKilled&namespace={ns}&pod={pod}&from=1h");
    wait_for(
        "the restarted instance's OOMKilled line to be searchable",
        Duration::from_secs(60),
        || {
            let found = get_json(&addr, &search);
            found["hits"]
                .as_array()
                .is_some_and(|h| h.iter().any(|hit| hit["restart"] == 1))
        },
    );

    wait_for(
        "the spike principal to lead attribution",
        Duration::from_secs(60),
        || {
            let v = get_json(&addr, "/v1/attribution?by=user&since=1h&limit=5");
            v["rows"]
                .as_array()
                .and_then(|r| r.first())
                .is_some_and(|top| top["principal"] == spike.as_str())
        },
    );

    // up's writers commit through the same loop as the Kafka writer, and
    // are counted in the same family.
    let (status, metrics) = common::http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    for table in ["pod_logs", "platform_event_logs"] {
        assert!(
            metrics.contains(&format!(
                "sluice_table_commits_total{{table=\"{table}\",outcome=\"committed\"}}"
            )),
            "{metrics}"
        );
    }

    // The intake answers 202 only for what is durable; a bad record is
    // named and the rest accepted.
    let body = br#"[{"event_id":"e2e-1","occurred_at":"2026-01-01T00:00:00Z","service":"iom-core","action":"sql.queries.submit","success":true,"user_id":"e2e-probe","method":"POST","path":"/api/v1/sql/queries","status_code":200,"latency_ms":12.5},
{"event_id":"e2e-2","service":"iom-core"},
{"event_id":"e2e-3","occurred_at":"2026-01-01T00:00:01Z","service":"iom-core","action":"sql.queries.submit","success":false,"user_id":"e2e-probe","method":"POST","path":"/api/v1/sql/queries","status_code":500,"latency_ms":40}]"#;
    let r = http(
        &addr,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/json")],
        Some(body),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["accepted"], 2);
    assert_eq!(r.json()["rejected"][0]["index"], 1);

    // 2. kill -9 twice, the second time shortly after a restart.
    up.0.kill().unwrap();
    up.0.wait().unwrap();
    let mut up = spawn_up(&data_dir, &addr, true, &[]);
    std::thread::sleep(Duration::from_secs(8));
    up.0.kill().unwrap();
    up.0.wait().unwrap();

    // 3. Without the demo, the pipeline catches up with what is on disk.
    let mut up = catch_up_exactly(&data_dir, &addr);
    assert_eq!(
        count(
            &addr,
            "SELECT count(*) AS n FROM platform_event_logs WHERE user_id = 'e2e-probe'"
        ),
        2
    );
    let reasons = sql(
        &addr,
        "SELECT count(*) AS n FROM platform_events WHERE reason = 'OOMKilled'",
    );
    assert!(reasons[0]["n"].as_u64() >= Some(1), "{reasons:?}");

    // A second `sluice up` on the same data directory is refused.
    let other = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--http", &format!("127.0.0.1:{}", free_port()), "up"])
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("another `sluice up`"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    assert!(up.terminate().success());
}

/// `sluice --kafka B up`: the four distributed roles side by side, each on
/// its own port, moving a generated cluster's files and a POSTed event
/// through the broker into the tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_kafka_runs_the_distributed_roles() {
    use sluice_testkit::TestTopic;
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    common::ok(common::sluice(
        &data_dir,
        &[
            "gen",
            "--out",
            gen_dir.to_str().unwrap(),
            "--pods",
            "3",
            "--events",
            "1000",
            "--days",
            "1",
        ],
    ));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(gen_dir.join("manifest.json")).unwrap()).unwrap();
    let want_lines = manifest["totals"]["log_lines"].as_u64().unwrap();
    let events = TestTopic::create("up-events", 1).await;
    let podlogs = TestTopic::create("up-podlogs", 1).await;
    let k8s = TestTopic::create("up-k8s", 1).await;
    let dlq = TestTopic::create("up-dlq", 1).await;
    // Four consecutive free ports.
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
        ("SLUICE_KAFKA__GROUP_ID", sluice_testkit::unique("up")),
        (
            "SLUICE_COLLECTOR__PODS_ROOT",
            gen_dir.join("var/log/pods").display().to_string(),
        ),
    ];
    let mut up = tokio::task::block_in_place(|| spawn_up(&data_dir, &addr, false, &env));
    tokio::task::block_in_place(|| {
        for i in 1..4 {
            let role = format!("127.0.0.1:{}", base + i);
            wait_for("every role to be ready", Duration::from_secs(60), || {
                http_get(&role, "/readyz").0 == 200
            });
        }
        let collector = format!("127.0.0.1:{}", base + 1);
        let body = br#"{"event_id":"up-kafka-1","occurred_at":"2026-01-01T00:00:00Z","service":"iom-core","action":"sql.queries.submit","success":true,"user_id":"kafka-probe"}"#;
        let r = http(&collector, "POST", "/v1/events", &[], Some(body));
        assert_eq!(r.status, 202, "{}", r.text());
        wait_for("the tables to fill", Duration::from_secs(120), || {
            count(&addr, "SELECT count(*) AS n FROM pod_logs") >= want_lines
                && count(
                    &addr,
                    "SELECT count(*) AS n FROM platform_event_logs WHERE user_id = 'kafka-probe'",
                ) == 1
        });
        assert_eq!(
            count(&addr, "SELECT count(DISTINCT line_id) AS n FROM pod_logs"),
            want_lines
        );
        wait_for(
            "the indexer to follow pod_logs",
            Duration::from_secs(60),
            || {
                let found = get_json(&addr, "/v1/logs/search?q=*&from=30d&limit=1");
                found["total"].as_u64() == Some(want_lines)
            },
        );
    });
    assert!(up.terminate().success());
}

/// Posts `n` events with ids `<prefix>-<i>`, `batch` per request; returns
/// how many were acknowledged (a request to a killed process is not).
fn post_events(addr: &str, prefix: &str, range: std::ops::Range<usize>, batch: usize) -> usize {
    let mut acked = 0;
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(batch) {
        let body: Vec<Value> = chunk
            .iter()
            .map(|i| {
                serde_json::json!({
                    "event_id": format!("{prefix}-{i}"),
                    "occurred_at": "2026-12-01T00:00:00Z",
                    "service": "iom-core",
                    "action": "sql.queries.submit",
                    "success": true,
                    "user_id": prefix,
                    // Instances write records of different lengths, so their
                    // logs' offsets never line up by chance.
                    "path": format!("/api/v1/{}", "x".repeat(prefix.len())),
                })
            })
            .collect();
        let r = http(
            addr,
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            Some(Value::Array(body).to_string().as_bytes()),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        acked += chunk.len();
    }
    acked
}

/// Two `sluice up` on one shared catalog (Postgres) and warehouse: each
/// resumes from its own positions after a `kill -9`, and every event either
/// accepted lands exactly once. A copy of one's data directory started
/// beside it is stopped rather than let write rows twice.
#[test]
fn two_up_instances_share_a_catalog_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = common::postgres_catalog();
    let config = tmp.path().join("shared.toml");
    std::fs::write(
        &config,
        format!(
            "[catalog]\nkind = \"postgres\"\nuri = \"{catalog}\"\n\n[warehouse]\nlocation = \"file://{}\"\n",
            tmp.path().join("warehouse").display()
        ),
    )
    .unwrap();
    let env = [("SLUICE_CONFIG", config.display().to_string())];
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (addr_a, addr_b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut a = spawn_up(&dir_a, &addr_a, false, &env);
    let mut b = spawn_up(&dir_b, &addr_b, false, &env);

    // Both take events at once; A is killed halfway and restarted.
    let b_poster = {
        let addr_b = addr_b.clone();
        std::thread::spawn(move || post_events(&addr_b, "bb", 0..3000, 50))
    };
    post_events(&addr_a, "a", 0..1500, 50);
    std::thread::sleep(Duration::from_millis(300));
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let mut a = spawn_up(&dir_a, &addr_a, false, &env);
    post_events(&addr_a, "a", 1500..3000, 50);
    assert_eq!(b_poster.join().unwrap(), 3000);

    let n = |addr: &str, q: &str| count(addr, q);
    wait_for("both instances' events", Duration::from_secs(90), || {
        n(&addr_a, "SELECT count(*) AS n FROM platform_event_logs") >= 6000
    });
    std::thread::sleep(Duration::from_secs(2));
    for addr in [&addr_a, &addr_b] {
        assert_eq!(
            n(addr, "SELECT count(*) AS n FROM platform_event_logs"),
            6000
        );
        assert_eq!(
            n(
                addr,
                "SELECT count(DISTINCT event_id) AS n FROM platform_event_logs"
            ),
            6000,
            "an event was written twice"
        );
        for who in ["a", "bb"] {
            assert_eq!(
                n(
                    addr,
                    &format!(
                        "SELECT count(*) AS n FROM platform_event_logs WHERE user_id = '{who}'"
                    )
                ),
                3000,
                "{who}'s events"
            );
        }
    }
    // Each instance's positions are its own.
    let instance = |dir: &std::path::Path| -> String {
        let v: Value =
            serde_json::from_slice(&std::fs::read(dir.join("up/instance.json")).unwrap()).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    assert_ne!(instance(&dir_a), instance(&dir_b));
    assert!(b.terminate().success());

    // A copy of A's data directory is the same instance: whichever of the
    // two commits second finds its positions moved by the other and stops.
    assert!(a.terminate().success());
    let dir_c = tmp.path().join("c");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&dir_a)
        .arg(&dir_c)
        .status()
        .unwrap();
    assert!(copied.success());
    let addr_c = format!("127.0.0.1:{}", free_port());
    let mut a = spawn_up(&dir_a, &addr_a, false, &env);
    let mut c = spawn_up(&dir_c, &addr_c, false, &env);
    let mut posted = 0;
    let stopped = loop {
        if let Some(s) = a.0.try_wait().unwrap() {
            break s;
        }
        if let Some(s) = c.0.try_wait().unwrap() {
            break s;
        }
        assert!(posted < 40, "neither copy of the instance stopped");
        for (addr, prefix) in [(&addr_a, "a2"), (&addr_c, "ccc2")] {
            let _ = std::panic::catch_unwind(|| post_events(addr, prefix, posted..posted + 10, 10));
        }
        posted += 10;
        std::thread::sleep(Duration::from_millis(700));
    };
    assert!(!stopped.success(), "stopped with an error: {stopped:?}");
}
