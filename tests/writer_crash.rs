//! The writer never loses or duplicates a row: not when it is killed with
//! SIGKILL at random moments, not when it dies between writing data files and
//! committing them, and not when partitions move between two writers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sluice::generator::{self, GenConfig, Manifest};
use sluice_schema::tables::{EVENT_LOGS, POD_LOGS};
use sluice_testkit::TestTopic;
use sluice_warehouse::append::ABORT_BEFORE_COMMIT_ENV;

mod common;
use common::{
    Proc, http_get, open_catalog, positions_sum, produce_lines, read_tables, spawn_writer,
};

struct Topics {
    events: TestTopic,
    podlogs: TestTopic,
    k8s: TestTopic,
    dlq: TestTopic,
}

impl Topics {
    async fn create(partitions: i32) -> Self {
        Self {
            events: TestTopic::create("c-events", partitions).await,
            podlogs: TestTopic::create("c-podlogs", 1).await,
            k8s: TestTopic::create("c-k8s", 1).await,
            dlq: TestTopic::create("c-dlq", 1).await,
        }
    }
}

/// The generated data ends on a fixed day (2026-11-21), so pod_logs'
/// default 14-day retention would drop it once that day is past: these
/// tests are about compaction and expiry, not retention.
const KEEP_POD_LOGS: (&str, String) = ("SLUICE_RETENTION__POD_LOGS", String::new());

fn generate(dir: &Path, events: u64, days: u32) -> Manifest {
    generator::generate(
        &GenConfig {
            out: dir.to_path_buf(),
            pods: 1,
            events,
            days,
            until: DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            seed: 3,
            cluster: "it".into(),
            lines_per_pod_day: 10,
            rotate_bytes: 1 << 20,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap()
}

/// Starts `sluice write` with small batches so a run makes many commits.
fn start_writer(
    data_dir: &Path,
    topics: &Topics,
    group: &str,
    gen_dir: &Path,
    extra: &[(&str, &str)],
) -> (Proc, String) {
    let mut env = vec![
        ("SLUICE_KAFKA__TOPICS__EVENTS", topics.events.name.clone()),
        ("SLUICE_KAFKA__TOPICS__PODLOGS", topics.podlogs.name.clone()),
        ("SLUICE_KAFKA__TOPICS__K8S", topics.k8s.name.clone()),
        ("SLUICE_KAFKA__TOPICS__DLQ", topics.dlq.name.clone()),
        ("SLUICE_KAFKA__GROUP_ID", group.to_string()),
        ("SLUICE_WRITER__MAX_ROWS", "400".into()),
        ("SLUICE_WRITER__MAX_AGE_MS", "150".into()),
        (
            "SLUICE_ENRICH__DIRECTORY",
            gen_dir.join("directory.yaml").display().to_string(),
        ),
        (
            "SLUICE_LOG",
            std::env::var("SLUICE_TEST_WRITER_LOG").unwrap_or_else(|_| "warn".into()),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    spawn_writer(data_dir, &topics.events.bootstrap, &env)
}

async fn wait_for_positions(data_dir: &Path, want: i64, writers: &mut [&mut Proc]) {
    let catalog = open_catalog(data_dir).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = positions_sum(&catalog, &EVENT_LOGS).await;
        if got == want {
            return;
        }
        assert!(
            got <= want,
            "positions beyond what was produced: {got} > {want}"
        );
        assert!(
            Instant::now() < deadline,
            "only {got} of {want} consumed within 180 s"
        );
        for w in writers.iter_mut() {
            assert!(w.0.try_wait().unwrap().is_none(), "a writer exited early");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn event_files(gen_dir: &Path, m: &Manifest) -> Vec<PathBuf> {
    m.event_files
        .iter()
        .map(|f| gen_dir.join(&f.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_moment_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    let m = generate(&gen_dir, 12_000, 1);
    let topics = Topics::create(3).await;
    let produced = produce_lines(
        &topics.events.bootstrap,
        &topics.events.name,
        &event_files(&gen_dir, &m),
    );
    assert_eq!(produced, 12_000);

    // Each run uses a new consumer group: the table, not the group, says where
    // to resume (which is what this test checks), and a fresh group does not
    // wait out the killed member's session.
    let group = |round: usize| format!("crash-{round}-{}", topics.events.name);

    // 1. Die exactly between writing data files and committing them.
    let (mut w, _) = start_writer(
        &data_dir,
        &topics,
        &group(0),
        &gen_dir,
        &[(ABORT_BEFORE_COMMIT_ENV, "3")],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = w.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the failpoint never fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "aborted at the failpoint: {status:?}");
    drop(w);

    // 2. SIGKILL at pseudo-random moments, several times.
    let catalog = open_catalog(&data_dir).await;
    let mut progress = Vec::new();
    for round in 1..=5 {
        let (w, _) = start_writer(&data_dir, &topics, &group(round), &gen_dir, &[]);
        let pause = 700 + (round as u64 * 977) % 1500;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        drop(w); // SIGKILL
        progress.push(positions_sum(&catalog, &EVENT_LOGS).await);
    }

    // 3. Compaction, and expiry of every append snapshot: the positions
    //    live on in the maintenance snapshot.
    let maintained = common::sluice_with(
        &data_dir,
        &["maintain", "--once"],
        &[
            ("SLUICE_MAINTENANCE__SNAPSHOT_MAX_AGE_SECS", "0".into()),
            ("SLUICE_MAINTENANCE__SNAPSHOTS_TO_KEEP", "1".into()),
            ("SLUICE_MAINTENANCE__ORPHAN_MIN_AGE_SECS", "0".into()),
            KEEP_POD_LOGS,
        ],
    );
    let report = common::ok(maintained);
    assert!(report.contains("\"compacted_files\""), "{report}");
    let before_last = positions_sum(&catalog, &EVENT_LOGS).await;
    assert_eq!(before_last, *progress.last().unwrap(), "positions kept");

    // 4. A last run to the end.
    let (mut w, _) = start_writer(&data_dir, &topics, &group(99), &gen_dir, &[]);
    wait_for_positions(&data_dir, 12_000, &mut [&mut w]).await;
    assert!(w.terminate().success());

    let tables = read_tables(&data_dir, &gen_dir);
    let ev = &tables["tables"]["platform_event_logs"];
    assert_eq!(ev["rows"], 12_000, "progress after kills: {progress:?}");
    assert_eq!(ev["distinct_ids"], 12_000);
    assert_eq!(ev["enrichment_mismatches"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_in_one_group_share_partitions_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    let m = generate(&gen_dir, 12_000, 2);
    let files = event_files(&gen_dir, &m);
    assert_eq!(files.len(), 2);
    let topics = Topics::create(4).await;
    let group = format!("pair-{}", topics.events.name);

    let first = produce_lines(&topics.events.bootstrap, &topics.events.name, &files[..1]);
    let (mut a, a_addr) = start_writer(&data_dir, &topics, &group, &gen_dir, &[]);
    let catalog = open_catalog(&data_dir).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while positions_sum(&catalog, &EVENT_LOGS).await < 1000 {
        assert!(Instant::now() < deadline, "writer A made no progress");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // B joins the group: a rebalance while A is mid-stream.
    let (mut b, b_addr) = start_writer(&data_dir, &topics, &group, &gen_dir, &[]);
    // B is ready only once the group gave it partitions (A gave some up).
    let deadline = Instant::now() + Duration::from_secs(90);
    while http_get(&b_addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "writer B never got partitions");
        assert!(b.0.try_wait().unwrap().is_none(), "writer B exited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = produce_lines(&topics.events.bootstrap, &topics.events.name, &files[1..]);
    let total = (first + second) as i64;
    assert_eq!(total, 12_000);
    wait_for_positions(&data_dir, total, &mut [&mut a, &mut b]).await;

    // Both writers took part.
    for addr in [&a_addr, &b_addr] {
        let (status, body) = http_get(addr, "/metrics");
        assert_eq!(status, 200);
        let committed: f64 = body
            .lines()
            .filter(|l| {
                l.starts_with("sluice_writer_rows_committed_total{table=\"platform_event_logs\"}")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            committed > 0.0,
            "writer at {addr} committed nothing:\n{body}"
        );
    }
    assert!(a.terminate().success());
    assert!(b.terminate().success());

    let tables = read_tables(&data_dir, &gen_dir);
    let ev = &tables["tables"]["platform_event_logs"];
    assert_eq!(ev["rows"], 12_000);
    assert_eq!(ev["distinct_ids"], 12_000);
}

/// Starts `sluice collect` on `pods_root` (one line per Kafka message).
fn start_collector(data_dir: &Path, pods_root: &Path, topics: &Topics) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--kafka",
            &topics.podlogs.bootstrap,
            "--http",
            &addr,
            "collect",
            "--node",
            "node-a",
        ])
        .arg("--pods-root")
        .arg(pods_root)
        .env_remove("SLUICE_CONFIG")
        .env("SLUICE_KAFKA__TOPICS__PODLOGS", &topics.podlogs.name)
        .env("SLUICE_COLLECTOR__BATCH_LINES", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start sluice collect");
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&addr, "/healthz").0 != 200 {
        assert!(Instant::now() < deadline, "collector never served /healthz");
        std::thread::sleep(Duration::from_millis(100));
    }
    (proc, addr)
}

/// A counter from `/metrics`, summed over its label sets.
fn counter(addr: &str, name: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Messages in a one-partition topic.
fn topic_end(topic: &TestTopic) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = topic.client_config().create().unwrap();
    let (_, high) = consumer
        .fetch_watermarks(&topic.name, 0, Duration::from_secs(10))
        .unwrap();
    high
}

/// The collector dies after sending lines it never checkpointed, and the
/// writer dies after committing them: the restarted collector sends them
/// again, to a writer whose in-memory window is empty. The window is refilled
/// from the table on assignment, so the replays are dropped, not committed
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_after_collector_and_writer_restarts_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    let collector_dir = tmp.path().join("collector");
    let m = generator::generate(
        &GenConfig {
            out: gen_dir.clone(),
            pods: 3,
            events: 10,
            days: 1,
            until: DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            seed: 11,
            cluster: "it".into(),
            lines_per_pod_day: 1500,
            rotate_bytes: 1 << 20,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap();
    let total = m.totals.log_lines as i64;
    assert!(total > 2000, "{total} lines");
    let pods_root = gen_dir.join("var/log/pods");
    let topics = Topics::create(1).await;
    let catalog = open_catalog_after(&data_dir, &topics, &gen_dir).await;

    // 1. The collector sends the first pods' lines and saves its
    //    checkpoint; then the other pods' files appear and it sends those
    //    too. Its checkpoint from before them is what a crash right after
    //    that save would have left.
    let parked = tmp.path().join("parked");
    std::fs::create_dir_all(&parked).unwrap();
    let mut pods: Vec<_> = std::fs::read_dir(&pods_root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pods.sort();
    for p in &pods[1..] {
        std::fs::rename(p, parked.join(p.file_name().unwrap())).unwrap();
    }
    let (mut w1, _) = start_writer(&data_dir, &topics, "replay-1", &gen_dir, &[]);
    let (c1, c1_addr) = start_collector(&collector_dir, &pods_root, &topics);
    let checkpoint = collector_dir.join("collector/checkpoints.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first = 0.0;
    let early = loop {
        let produced = counter(&c1_addr, "sluice_collector_lines_produced_total");
        // Settled: nothing more to send, and a checkpoint saved since.
        if produced > 0.0 && produced == first {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            break std::fs::read(&checkpoint).expect("a saved checkpoint");
        }
        first = produced;
        assert!(Instant::now() < deadline, "the collector made no progress");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    };
    let first = first as i64;
    assert!(
        first < total,
        "the first pod holds {first} of {total} lines"
    );
    for p in &pods[1..] {
        std::fs::rename(parked.join(p.file_name().unwrap()), p).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while topic_end(&topics.podlogs) < total {
        assert!(
            Instant::now() < deadline,
            "the collector sent {} of {total} lines",
            topic_end(&topics.podlogs)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(c1); // SIGKILL
    std::fs::write(&checkpoint, &early).unwrap();

    // 2. The writer commits all of it, then dies.
    let deadline = Instant::now() + Duration::from_secs(120);
    while positions_sum(&catalog, &POD_LOGS).await < total {
        assert!(Instant::now() < deadline, "writer 1 never caught up");
        assert!(w1.0.try_wait().unwrap().is_none(), "writer 1 exited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(w1); // SIGKILL

    // Compaction in between: the new writer's window is refilled from the
    // appends still in the history, past the replace snapshot.
    let report = common::ok(common::sluice_with(
        &data_dir,
        &["maintain", "--once"],
        &[
            ("SLUICE_MAINTENANCE__ORPHAN_MIN_AGE_SECS", "0".into()),
            KEEP_POD_LOGS,
        ],
    ));
    let reports: serde_json::Value = serde_json::from_str(&report).unwrap();
    let compacted = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == "pod_logs")
        .unwrap()["compacted_files"]
        .as_u64()
        .unwrap();
    assert!(compacted >= 2, "{report}");

    // 3. A new writer (empty window), then the collector re-sends from its
    //    old checkpoint.
    let (mut w2, w2_addr) = start_writer(&data_dir, &topics, "replay-2", &gen_dir, &[]);
    let (mut c2, c2_addr) = start_collector(&collector_dir, &pods_root, &topics);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (-1, -1);
    loop {
        let end = topic_end(&topics.podlogs);
        let at = positions_sum(&catalog, &POD_LOGS).await;
        if end > total && at == end && last == (end, at) {
            break;
        }
        last = (end, at);
        assert!(
            Instant::now() < deadline,
            "writer 2 never caught up: {end} messages, positions at {at}, {total} lines"
        );
        assert!(w2.0.try_wait().unwrap().is_none(), "writer 2 exited");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let replayed = topic_end(&topics.podlogs) - total;
    assert_eq!(
        replayed,
        total - first,
        "the lines after the old checkpoint"
    );
    assert!(
        counter(&c2_addr, "sluice_collector_lines_produced_total") >= replayed as f64,
        "the replay came from the restarted collector"
    );
    let dropped = counter(&w2_addr, "sluice_writer_duplicates_dropped_total");
    assert_eq!(dropped as i64, replayed, "every replayed line dropped");
    assert!(c2.terminate().success());
    assert!(w2.terminate().success());

    let tables = read_tables(&data_dir, &gen_dir);
    let logs = &tables["tables"]["pod_logs"];
    assert_eq!(logs["rows"], total, "{replayed} lines were replayed");
    assert_eq!(logs["distinct_ids"], total);
}

/// The writer's catalog, once a first writer run has created it.
async fn open_catalog_after(
    data_dir: &Path,
    topics: &Topics,
    gen_dir: &Path,
) -> std::sync::Arc<dyn iceberg::Catalog> {
    let (w, _) = start_writer(data_dir, topics, "replay-0", gen_dir, &[]);
    let catalog = open_catalog(data_dir).await;
    drop(w);
    catalog
}
