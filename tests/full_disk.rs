//! A full disk under `sluice up --demo`: its data directory on a small
//! tmpfs, filled to the last byte while the demo writes pod logs, API
//! events and lifecycle events. While it is full the process stays up and
//! healthy, the intake answers 503 naming the cause (and takes nothing it
//! cannot keep), table commits, checkpoints, the write-ahead logs and the
//! index fail and retry; once space returns everything resumes, and a
//! restart finds every complete line, every acknowledged event and every
//! lifecycle event in the tables exactly once, and the index count equal
//! to the table's — nothing corrupt, nothing lost.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN), as CI runs the suite.

mod common;

use std::time::Duration;

use common::disk::{Tmpfs, fill};
use common::up::{catch_up_exactly, get_json, spawn_up, wait_for};
use common::{free_port, http, http_get};

/// Posts `n` events `<id>-<i>` (one when `n` is 1: `<id>`) as NDJSON.
fn post_events(addr: &str, id: &str, n: usize) -> common::HttpResponse {
    let now = chrono::Utc::now().to_rfc3339();
    let body: Vec<String> = (0..n)
        .map(|i| {
            let id = if n == 1 { id.to_string() } else { format!("{id}-{i}") };
            format!(
                "{{\"event_id\":\"{id}\",\"occurred_at\":\"{now}\",\"service\":\"disk-probe\",\"action\":\"probe.get\",\"success\":true}}"
            )
        })
        .collect();
    http(
        addr,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/x-ndjson")],
        Some(body.join("\n").as_bytes()),
    )
}

#[test]
fn a_full_data_disk_loses_and_corrupts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = Tmpfs::mount(&tmp.path().join("disk"), "96m");
    let data_dir = mnt.0.join("data");
    // The demo cluster's pod logs (the node's /var/log) live on another
    // disk than sluice's data, as on a node: only sluice's disk fills.
    let node_logs = tmp.path().join("node");
    std::fs::create_dir_all(&node_logs).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    std::os::unix::fs::symlink(&node_logs, data_dir.join("demo")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut up = spawn_up(&data_dir, &addr, true, &[]);
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(post_events(&addr, "disk-before", 1).status, 202);

    let filler = fill(&mnt.0);
    // Full for 15 s: the process stays up, the intake says why it refuses.
    let mut refused = None;
    for i in 0..15 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            http_get(&addr, "/healthz").0,
            200,
            "healthz while the disk is full"
        );
        // Enough records that they cannot fit in a page the log already has.
        let r = post_events(&addr, &format!("disk-full-{i}"), 200);
        if r.status == 503 {
            refused = Some(r.text());
        }
    }
    let refused = refused.expect("the intake never refused a record while the disk was full");
    assert!(
        refused.contains("No space left on device"),
        "the refusal names the cause: {refused}"
    );
    let (status, body) = http_get(&addr, "/metrics");
    assert_eq!(status, 200, "metrics while the disk is full: {body}");

    // Space returns: the intake takes records again, commits resume.
    std::fs::remove_file(&filler).unwrap();
    wait_for(
        "the intake to take records again",
        Duration::from_secs(30),
        || post_events(&addr, "disk-after", 1).status == 202,
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        up.terminate().success(),
        "sluice up stops cleanly after the full disk"
    );
    // Failed index rounds left no half-built splits behind.
    let work = std::fs::read_dir(data_dir.join("index-work")).map_or(0, |d| d.count());
    assert!(work <= 1, "{work} split directories left in index-work");

    // A restart (no demo) catches up from the files and the logs, exactly.
    let up = catch_up_exactly(&data_dir, &addr);
    let lines = common::up::count(&addr, "SELECT count(*) AS n FROM pod_logs");
    wait_for(
        "the index to hold every line",
        Duration::from_secs(90),
        || get_json(&addr, "/v1/logs/search?q=*&from=30d&limit=1")["total"].as_u64() == Some(lines),
    );
    for id in ["disk-before", "disk-after"] {
        assert_eq!(
            common::up::count(
                &addr,
                &format!("SELECT count(*) AS n FROM platform_event_logs WHERE event_id = '{id}'")
            ),
            1,
            "{id}, acknowledged, is in the table once"
        );
    }
    drop(up);
}
