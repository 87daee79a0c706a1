//! The test broker (a real Kafka-protocol broker, started by `scripts/test`)
//! does what the pipeline relies on: idempotent compressed produce, consumer
//! groups with manual commits, per-key ordering, and interop with an
//! independent client.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sluice_testkit::TestTopic;

async fn drain(topic: &TestTopic, group: &str, expect: usize) -> Vec<(String, i64, i32, i64)> {
    let consumer: StreamConsumer = topic
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic.name]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < expect {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {expect} messages within 60 s", got.len()))
            .expect("consume");
        let key = String::from_utf8(msg.key().unwrap().to_vec()).unwrap();
        let value: serde_json::Value = serde_json::from_slice(msg.payload().unwrap()).unwrap();
        got.push((
            key,
            value["seq"].as_i64().unwrap(),
            msg.partition(),
            msg.offset(),
        ));
        consumer
            .commit_message(&msg, CommitMode::Sync)
            .expect("commit");
    }
    // The group's committed offsets cover everything consumed.
    let committed = consumer
        .committed(Duration::from_secs(10))
        .expect("committed");
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum();
    assert_eq!(
        total as usize, expect,
        "committed offsets sum to the message count"
    );
    got
}

fn assert_ordered_per_key(got: &[(String, i64, i32, i64)]) {
    let mut last: HashMap<&str, (i64, i32)> = HashMap::new();
    for (key, seq, partition, _) in got {
        if let Some((prev, p)) = last.insert(key, (*seq, *partition)) {
            assert_eq!(p, *partition, "key {key} moved partitions");
            assert!(*seq > prev, "key {key}: {seq} after {prev}");
        }
    }
}

#[tokio::test]
async fn idempotent_zstd_produce_then_group_consume_with_manual_commits() {
    let topic = TestTopic::create("broker-roundtrip", 3).await;
    let producer: FutureProducer = topic
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "zstd")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let n = 3000;
    let sends = (0..n).map(|i| {
        let producer = producer.clone();
        let topic = topic.name.clone();
        async move {
            let payload = format!("{{\"seq\":{i}}}");
            let key = format!("k{}", i % 7);
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
        }
    });
    for r in futures_join(sends).await {
        r.expect("delivery");
    }
    let got = drain(&topic, "g-roundtrip", n).await;
    assert_eq!(got.len(), n);
    let mut seqs: Vec<i64> = got.iter().map(|g| g.1).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (0..n as i64).collect::<Vec<_>>(),
        "every message exactly once"
    );
    assert_ordered_per_key(&got);
    let partitions: std::collections::BTreeSet<i32> = got.iter().map(|g| g.2).collect();
    assert!(partitions.len() > 1, "keys spread over partitions");

    // A second consumer in the same group resumes after the commits: nothing left.
    let again: StreamConsumer = topic
        .client_config()
        .set("group.id", "g-roundtrip")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..topic.partitions {
        tpl.add_partition(&topic.name, p);
    }
    let committed = again
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let resume: i64 = committed
        .elements()
        .iter()
        .map(|e| {
            if let Offset::Offset(o) = e.offset() {
                o
            } else {
                0
            }
        })
        .sum();
    assert_eq!(resume, n as i64);
}

/// Sends all futures concurrently and collects their results in order.
async fn futures_join<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn an_independent_client_produces_what_rdkafka_consumes() {
    let topic = TestTopic::create("broker-interop", 2).await;
    let script = sluice_testkit::source_path("tests/interop/produce.py");
    let n = 500;
    let out = Command::new(sluice_testkit::python())
        .arg(&script)
        .args([&topic.bootstrap, &topic.name, &n.to_string()])
        .output()
        .expect("run confluent-kafka producer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = drain(&topic, "g-interop", n).await;
    let mut seqs: Vec<i64> = got.iter().map(|g| g.1).collect();
    seqs.sort();
    assert_eq!(seqs, (0..n as i64).collect::<Vec<_>>());
    assert_ordered_per_key(&got);
}
