//! The writer never loses or duplicates a row: not when it is killed with
//! SIGKILL at random moments, not when it dies between writing data files and
//! committing them, and not when partitions move between two writers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sluice::generator::{self, GenConfig, Manifest};
use sluice_ingest::sinks::iceberg::ABORT_BEFORE_COMMIT_ENV;
use sluice_schema::tables::EVENT_LOGS;
use sluice_testkit::TestTopic;

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

    // 3. A last run to the end.
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
