//! `sluice write` end to end against a real broker and a real catalog: an
//! independent client produces events (some malformed), pod log records (one
//! batch replayed) and lifecycle events; the writer runs as a real process;
//! PyIceberg reads the tables back and recomputes the enrichment; the DLQ
//! holds exactly the bad records, with their source and reasons.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use sluice::generator::{self, GenConfig};
use sluice_ingest::sources::pod_log_file::{self, Origin};
use sluice_ingest::sources::pod_log_path::PodLogPath;
use sluice_schema::tables::{EVENT_LOGS, PLATFORM_EVENTS, POD_LOGS};
use sluice_testkit::TestTopic;

mod common;
use common::{http_get, open_catalog, positions_sum, produce_lines, read_tables, spawn_writer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_iceberg_exactly_once_with_dead_letters() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    let manifest = generator::generate(
        &GenConfig {
            out: gen_dir.clone(),
            pods: 3,
            events: 4000,
            days: 1,
            until: DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            seed: 5,
            cluster: "it".into(),
            lines_per_pod_day: 400,
            rotate_bytes: 1 << 20,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap();

    let events = TestTopic::create("w-events", 2).await;
    let podlogs = TestTopic::create("w-podlogs", 1).await;
    let k8s = TestTopic::create("w-k8s", 1).await;
    let dlq = TestTopic::create("w-dlq", 1).await;
    let bootstrap = events.bootstrap.clone();

    // Events: the generated ones, then three bad records.
    let event_files: Vec<PathBuf> = manifest
        .event_files
        .iter()
        .map(|f| gen_dir.join(&f.path))
        .collect();
    let bad = tmp.path().join("bad.ndjson");
    std::fs::write(
        &bad,
        "{\"event_id\":\"b1\",\"occurred_at\":\"yesterday\",\"service\":\"s\",\"action\":\"a\",\"success\":true}\n\
         {\"event_id\":\"b2\",\"service\":\"s\"}\n\
         this is not json\n",
    )
    .unwrap();
    // And one event sent again: a producer's retry the writer must drop.
    let replay = tmp.path().join("replay.ndjson");
    let first_event = std::fs::read_to_string(&event_files[0]).unwrap();
    std::fs::write(&replay, first_event.lines().next().unwrap()).unwrap();
    let mut all_event_files = event_files.clone();
    all_event_files.push(bad.clone());
    all_event_files.push(replay);
    let produced_events = produce_lines(&bootstrap, &events.name, &all_event_files);
    assert_eq!(produced_events, 4004);
    let produced_k8s = produce_lines(&bootstrap, &k8s.name, &[gen_dir.join("k8s-events.ndjson")]);

    // Pod logs as the collector sends them: arrays of one container's records,
    // the first array sent twice (a replay the writer must drop).
    let producer: FutureProducer = podlogs.client_config().set("acks", "all").create().unwrap();
    let mut lines = 0u64;
    let mut messages = 0u64;
    let mut first: Option<String> = None;
    let mut replayed = 0u64;
    for pod in &manifest.pods {
        for c in &pod.containers {
            for inst in &c.instances {
                for f in &inst.files {
                    let path = gen_dir.join(&c.dir).join(f);
                    let meta = PodLogPath::parse(&path).unwrap();
                    let content = std::fs::read(&path).unwrap();
                    let (records, _) = pod_log_file::read_pod_log(
                        &meta,
                        &content,
                        &Origin {
                            cluster: "it",
                            node: Some("n1"),
                        },
                        1 << 20,
                    );
                    lines += records.len() as u64;
                    for chunk in records.chunks(200) {
                        let payload =
                            Value::Array(chunk.iter().map(|r| r.to_json()).collect()).to_string();
                        if first.is_none() {
                            first = Some(payload.clone());
                            replayed = chunk.len() as u64;
                        }
                        let key = format!("{}/{}/{}", meta.pod_uid, meta.container, meta.restart);
                        producer
                            .send(
                                FutureRecord::to(&podlogs.name).key(&key).payload(&payload),
                                Duration::from_secs(30),
                            )
                            .await
                            .unwrap();
                        messages += 1;
                    }
                }
            }
        }
    }
    producer
        .send(
            FutureRecord::to(&podlogs.name)
                .key("replay")
                .payload(first.as_deref().unwrap()),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    messages += 1;

    let (mut writer, addr) = spawn_writer(
        &data_dir,
        &bootstrap,
        &[
            ("SLUICE_KAFKA__TOPICS__EVENTS", events.name.clone()),
            ("SLUICE_KAFKA__TOPICS__PODLOGS", podlogs.name.clone()),
            ("SLUICE_KAFKA__TOPICS__K8S", k8s.name.clone()),
            ("SLUICE_KAFKA__TOPICS__DLQ", dlq.name.clone()),
            ("SLUICE_KAFKA__GROUP_ID", format!("g-{}", events.name)),
            (
                "SLUICE_ENRICH__DIRECTORY",
                gen_dir.join("directory.yaml").display().to_string(),
            ),
        ],
    );

    // Wait until the tables' positions cover every produced message.
    let wanted = [
        (&EVENT_LOGS, produced_events),
        (&POD_LOGS, messages),
        (&PLATFORM_EVENTS, produced_k8s),
    ];
    let catalog = open_catalog(&data_dir).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut done = true;
        for (table, want) in &wanted {
            done &= positions_sum(&catalog, table).await == *want as i64;
        }
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writer did not catch up within 120 s"
        );
        assert!(
            writer.0.try_wait().unwrap().is_none(),
            "writer exited early"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("sluice_writer_events_consumed_total"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "sluice_writer_duplicates_dropped_total{{table=\"pod_logs\"}} {replayed}"
        )),
        "every record of the replayed array counted as a duplicate: {body}"
    );
    assert!(
        body.contains("sluice_writer_duplicates_dropped_total{table=\"platform_event_logs\"} 1"),
        "the replayed event counted: {body}"
    );
    assert!(
        body.contains("reason=\"occurred_at\""),
        "DLQ counted by reason: {body}"
    );
    // The one commit loop counts every writer's commits alike.
    assert!(
        body.contains("sluice_table_commits_total{table=\"pod_logs\",outcome=\"committed\"}"),
        "{body}"
    );
    assert!(
        body.contains("sluice_table_rows_committed_total{table=\"pod_logs\"}"),
        "{body}"
    );
    assert_eq!(http_get(&addr, "/healthz").0, 200);

    // Lag, delay, last commit and readiness. The lag of every partition is
    // read from the broker every 5 s: it reaches 0 once the writer caught up.
    let partitions = [
        (&events.name, 0),
        (&events.name, 1),
        (&podlogs.name, 0),
        (&k8s.name, 0),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let m = scrape(&addr);
        let lags: Vec<Option<f64>> = partitions
            .iter()
            .map(|(t, p)| {
                m.get(&format!(
                    "sluice_writer_consumer_lag{{topic=\"{t}\",partition=\"{p}\"}}"
                ))
                .copied()
            })
            .collect();
        if lags.iter().all(|l| *l == Some(0.0)) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer lag did not reach 0 for every partition within 30 s: {lags:?}\n{m:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    for table in ["platform_event_logs", "pod_logs", "platform_events"] {
        let last =
            metrics[&format!("sluice_writer_last_commit_timestamp_seconds{{table=\"{table}\"}}")];
        assert!(
            last <= now + 1.0 && now - last < 180.0,
            "{table}: last commit at {last}, now {now}"
        );
        let count =
            metrics[&format!("sluice_writer_ingest_delay_seconds_count{{table=\"{table}\"}}")];
        let sum = metrics[&format!("sluice_writer_ingest_delay_seconds_sum{{table=\"{table}\"}}")];
        // Everything was produced before the writer started, within minutes.
        assert!(count >= 1.0, "{table}: no ingest delay observed");
        assert!(
            sum >= 0.0 && sum / count < 600.0,
            "{table}: mean ingest delay {} s",
            sum / count
        );
        let le5 = metrics
            [&format!("sluice_writer_ingest_delay_seconds_bucket{{le=\"5.0\",table=\"{table}\"}}")];
        assert!(le5 <= count, "{table}: cumulative buckets");
    }
    assert_eq!(metrics.get("sluice_ready"), Some(&1.0), "{metrics:#?}");
    // The binary allocates with jemalloc and reports its heap: with glibc's
    // malloc (or jemalloc linked but not the allocator) these read 0.
    let allocated = metrics.get("sluice_memory_allocated_bytes").copied();
    let resident = metrics.get("sluice_memory_resident_bytes").copied();
    assert!(
        allocated.is_some_and(|a| a > 1_048_576.0),
        "allocated {allocated:?}"
    );
    assert!(
        resident.is_some_and(|r| r >= allocated.unwrap_or(0.0)),
        "resident {resident:?} below allocated {allocated:?}"
    );

    // A graceful stop (SIGTERM) exits 0.
    let code = writer.terminate();
    assert!(code.success(), "{code:?}");

    let tables = read_tables(&data_dir, &gen_dir);
    let ev = &tables["tables"]["platform_event_logs"];
    assert_eq!(ev["rows"], 4000);
    assert_eq!(ev["distinct_ids"], 4000);
    assert_eq!(ev["enrichment_mismatches"], serde_json::json!([]), "{ev}");
    assert_eq!(
        tables["tables"]["pod_logs"]["rows"], lines,
        "the replayed batch was dropped"
    );
    assert_eq!(tables["tables"]["pod_logs"]["distinct_ids"], lines);
    assert_eq!(
        tables["tables"]["platform_events"]["rows"],
        manifest.totals.lifecycle_events
    );

    // The DLQ holds exactly the three bad records, with source and reasons.
    let consumer: StreamConsumer = dlq
        .client_config()
        .set("group.id", format!("read-{}", dlq.name))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&dlq.name]).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("DLQ message")
            .unwrap();
        let headers: std::collections::HashMap<String, String> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_string(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(headers["source.topic"], events.name);
        assert!(headers.contains_key("source.offset") && headers.contains_key("source.partition"));
        seen.push(headers["error"].clone());
    }
    seen.sort();
    assert!(
        seen.iter()
            .any(|e| e.contains("occurred_at: not a timestamp")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| e.contains("action: required field is missing")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|e| e.contains("not JSON")), "{seen:?}");
}

/// The samples of a `/metrics` answer, by series (`name{labels}`).
fn scrape(addr: &str) -> std::collections::BTreeMap<String, f64> {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| l.starts_with("sluice_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// A batch is cut when its buffered input reaches `max_bytes`, long before
/// the row or age limits; a graceful stop commits the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_cut_by_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    let manifest = generator::generate(
        &GenConfig {
            out: gen_dir.clone(),
            pods: 1,
            events: 400,
            days: 1,
            until: DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            seed: 9,
            cluster: "it".into(),
            lines_per_pod_day: 10,
            rotate_bytes: 1 << 20,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap();
    let files: Vec<PathBuf> = manifest
        .event_files
        .iter()
        .map(|f| gen_dir.join(&f.path))
        .collect();
    let input_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let events = TestTopic::create("bytes-events", 1).await;
    assert_eq!(produce_lines(&events.bootstrap, &events.name, &files), 400);

    let max_bytes = 16 * 1024;
    let (mut writer, _) = spawn_writer(
        &data_dir,
        &events.bootstrap,
        &[
            ("SLUICE_KAFKA__TOPICS__EVENTS", events.name.clone()),
            ("SLUICE_KAFKA__GROUP_ID", format!("g-{}", events.name)),
            ("SLUICE_WRITER__MAX_BYTES", max_bytes.to_string()),
            ("SLUICE_WRITER__MAX_ROWS", "1000000".into()),
            ("SLUICE_WRITER__MAX_AGE_MS", "3600000".into()),
        ],
    );

    // Neither the row limit nor the age (an hour) can cut a batch here.
    let catalog = open_catalog(&data_dir).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected_cuts = input_bytes / max_bytes as u64;
    loop {
        let table = catalog.load_table(&EVENT_LOGS.ident()).await;
        let snapshots = table
            .as_ref()
            .map(|t| t.metadata().snapshots().count() as u64)
            .unwrap_or(0);
        if snapshots >= expected_cuts {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {snapshots} of {expected_cuts} byte-sized commits after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let committed = positions_sum(&catalog, &EVENT_LOGS).await;
    assert!(
        committed > 0 && committed < 400,
        "byte-sized batches, the tail still buffered: {committed}"
    );
    let table = catalog.load_table(&EVENT_LOGS.ident()).await.unwrap();
    for s in table.metadata().snapshots() {
        let added: u64 = s.summary().additional_properties["added-records"]
            .parse()
            .unwrap();
        // A batch is cut by the record that crosses the limit.
        assert!(
            added * 300 <= (max_bytes as u64) * 2,
            "{added} rows in one commit"
        );
    }

    assert!(writer.terminate().success());
    assert_eq!(positions_sum(&catalog, &EVENT_LOGS).await, 400);
}
