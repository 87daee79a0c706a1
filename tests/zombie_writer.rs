//! A zombie writer is fenced: two `sluice write` processes share a consumer
//! group on a two-partition topic fed without pause. One is frozen
//! (`SIGSTOP`) past the group's session timeout with batches in flight; the
//! group gives its partitions to the other, which commits past them; then
//! the frozen one is thawed (`SIGCONT`) and its stale batches must be
//! refused by the table (the position check of every append), not
//! committed. The same is done to the other writer. At the end the table
//! holds every produced event exactly once (count and distinct ids, read
//! with sluice's SQL), and at least one stale batch was counted as fenced.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_schema::tables::EVENT_LOGS;
use sluice_testkit::TestTopic;

use common::{Proc, http_get, open_catalog, positions_sum, spawn_writer};

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn fenced(addr: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .filter(|l| l.starts_with("sluice_writer_fenced_batches_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_writer_thawed_after_a_rebalance_is_fenced() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let events = TestTopic::create("z-events", 2).await;
    let podlogs = TestTopic::create("z-podlogs", 1).await;
    let k8s = TestTopic::create("z-k8s", 1).await;
    let dlq = TestTopic::create("z-dlq", 1).await;
    // A short session, so the group notices a frozen member in seconds;
    // small batches, so some are always between consume and commit.
    let config = tmp.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [writer]\nmax_age_ms = 150\nmax_rows = 500\n",
    )
    .unwrap();
    let env = [
        ("SLUICE_CONFIG", config.display().to_string()),
        ("SLUICE_KAFKA__TOPICS__EVENTS", events.name.clone()),
        ("SLUICE_KAFKA__TOPICS__PODLOGS", podlogs.name.clone()),
        ("SLUICE_KAFKA__TOPICS__K8S", k8s.name.clone()),
        ("SLUICE_KAFKA__TOPICS__DLQ", dlq.name.clone()),
        ("SLUICE_KAFKA__GROUP_ID", sluice_testkit::unique("zombie")),
    ];

    // Events without pause until told to stop, 1 500 a second.
    let produced = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer_task = {
        let (produced, stop) = (produced.clone(), stop.clone());
        let producer: FutureProducer = events
            .client_config()
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let topic = events.name.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let now = chrono::Utc::now().to_rfc3339();
                let mut sends = Vec::new();
                for _ in 0..150 {
                    let body = format!(
                        "{{\"event_id\":\"z-{i}\",\"occurred_at\":\"{now}\",\"service\":\"zombie\",\"action\":\"probe.get\",\"success\":true,\"user_id\":\"u{}\"}}",
                        i % 17
                    );
                    let key = format!("k{}", i % 31);
                    let (producer, topic) = (&producer, &topic);
                    sends.push(async move {
                        producer
                            .send(
                                FutureRecord::to(topic).key(&key).payload(&body),
                                Duration::from_secs(30),
                            )
                            .await
                            .map(|_| ())
                            .map_err(|(e, _)| e)
                    });
                    i += 1;
                }
                for r in futures::future::join_all(sends).await {
                    r.expect("the broker took the event");
                }
                produced.fetch_add(150, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let catalog = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let (a, a_addr) = spawn_writer(&data_dir, &events.bootstrap, &env);
            let catalog = open_catalog(&data_dir).await;
            wait_rows(&catalog, 1).await;
            let (b, b_addr) = spawn_writer(&data_dir, &events.bootstrap, &env);
            tokio::time::sleep(Duration::from_secs(5)).await;
            // Each in turn: frozen with batches in flight, its partitions
            // moved to the other, which commits past them, then thawed.
            for (zombie, other) in [(&a, &b), (&b, &a)] {
                signal(zombie, "-STOP");
                let at = positions_sum(&catalog, &EVENT_LOGS).await;
                // The session (6 s) expires, the other writer takes both
                // partitions and commits well past where the zombie stood.
                tokio::time::sleep(Duration::from_secs(12)).await;
                let moved = positions_sum(&catalog, &EVENT_LOGS).await;
                assert!(moved > at, "the other writer took over ({at} → {moved})");
                assert!(other.0.id() > 0);
                signal(zombie, "-CONT");
                tokio::time::sleep(Duration::from_secs(8)).await;
            }
            stop.store(true, Ordering::Relaxed);
            (a, a_addr, b, b_addr, catalog)
        })
    });
    producer_task.await.unwrap();
    let (a, a_addr, b, b_addr, catalog) = catalog;
    let want = produced.load(Ordering::Relaxed) as i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while positions_sum(&catalog, &EVENT_LOGS).await < want {
        assert!(Instant::now() < deadline, "the writers did not catch up");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let fenced_total = fenced(&a_addr) + fenced(&b_addr);
    assert!(
        fenced_total >= 1.0,
        "no stale batch was fenced (sluice_writer_fenced_batches_total is 0 on both)"
    );
    drop((a, b));

    // Every event exactly once, read back through sluice's SQL.
    let out = common::sluice(
        &data_dir,
        &[
            "sql",
            "--format",
            "json",
            "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM platform_event_logs",
        ],
    );
    let text = common::ok(out);
    let rows: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let row = &rows
        .as_array()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or(rows);
    assert_eq!(row["n"].as_i64(), Some(want), "{text}");
    assert_eq!(row["ids"].as_i64(), Some(want), "{text}");
}

async fn wait_rows(catalog: &Arc<dyn iceberg::Catalog>, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while positions_sum(catalog, &EVENT_LOGS).await < at_least {
        assert!(
            Instant::now() < deadline,
            "the first writer never committed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
