//! Table maintenance against real tables: `sluice up --demo` writes many
//! small commits, `sluice maintain` compacts, expires and cleans up, and
//! two independent readers (PyIceberg, and DuckDB over the files PyIceberg
//! plans) read exactly the same rows before and after. The pipeline then
//! resumes from the maintenance snapshots' positions with nothing lost or
//! doubled — also when maintenance runs beside it and is killed at random
//! moments.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::up::{catch_up_exactly, spawn_up};
use common::{free_port, ok, sluice_with};
use serde_json::Value;

const TABLES: [&str; 3] = ["platform_event_logs", "pod_logs", "platform_events"];

fn report_of<'a>(reports: &'a Value, table: &str) -> &'a Value {
    reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == table)
        .unwrap_or_else(|| panic!("no report for {table}: {reports}"))
}

/// Maintenance that expires everything it may at once.
fn eager() -> Vec<(&'static str, String)> {
    vec![
        ("SLUICE_MAINTENANCE__ORPHAN_MIN_AGE_SECS", "0".into()),
        ("SLUICE_MAINTENANCE__SNAPSHOT_MAX_AGE_SECS", "0".into()),
        ("SLUICE_MAINTENANCE__SNAPSHOTS_TO_KEEP", "1".into()),
    ]
}

fn files_under(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                n += 1;
            }
        }
    }
    n
}

/// The demo's first OOMKill (within 30 s) gives the lifecycle table rows.
fn wait_for_lifecycle(data_dir: &Path) {
    common::up::wait_for("lifecycle events", Duration::from_secs(90), || {
        common::up::lines_of(&data_dir.join("up/lifecycle.wal")) >= 3
    });
    // A few commits more after them.
    std::thread::sleep(Duration::from_secs(3));
}

#[test]
fn maintenance_keeps_every_row_and_up_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    let off = [("SLUICE_MAINTENANCE__ENABLED", "false".to_string())];
    let up = spawn_up(&data_dir, &addr, true, &off);
    wait_for_lifecycle(&data_dir);
    drop(up); // SIGKILL: the demo's last lines stay in files and the WAL
    let before = common::table_digests(&data_dir, None);
    let files_before = files_under(&data_dir.join("warehouse"));

    let reports: Value = serde_json::from_str(&ok(sluice_with(
        &data_dir,
        &["maintain", "--once"],
        &eager(),
    )))
    .unwrap();
    for table in ["platform_event_logs", "pod_logs"] {
        let r = report_of(&reports, table);
        let compacted = r["compacted_files"].as_u64().unwrap();
        assert!(compacted >= 5, "{table}: {r}");
        assert!(r["data_files_after"].as_u64().unwrap() < compacted, "{r}");
        assert!(r["snapshots_expired"].as_u64().unwrap() >= 5, "{r}");
        assert!(r["orphans_deleted"].as_u64().unwrap() >= compacted, "{r}");
    }
    let after = common::table_digests(&data_dir, None);
    for table in TABLES {
        let (b, a) = (&before[table], &after[table]);
        assert_eq!(a["pyiceberg"], b["pyiceberg"], "{table}: rows changed");
        assert_eq!(a["duckdb"], a["pyiceberg"], "{table}: DuckDB disagrees");
        if b["files"].as_u64() >= Some(2) {
            assert_eq!(a["operation"], "replace", "{table}");
            assert_eq!(a["inspect"]["snapshots"], 1, "{table}: {a}");
        }
        assert!(
            a["files"].as_u64() < b["files"].as_u64() || b["files"].as_u64() <= Some(1),
            "{table}: {b} → {a}"
        );
    }
    let files_after = files_under(&data_dir.join("warehouse"));
    assert!(
        files_after < files_before,
        "warehouse files {files_before} → {files_after}"
    );

    // A restart resumes from the positions the maintenance snapshots carry:
    // every line and event on disk exactly once.
    let mut up = catch_up_exactly(&data_dir, &addr);
    assert!(up.terminate().success());
}

/// `sluice maintain --once` beside a running `sluice up --demo`, killed
/// at pseudo-random moments in 20 of 40 rounds: the demo keeps committing
/// small files throughout, and in the end every row is there once.
#[test]
fn maintenance_killed_beside_a_running_pipeline_loses_and_doubles_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    let off = [("SLUICE_MAINTENANCE__ENABLED", "false".to_string())];
    let up = spawn_up(&data_dir, &addr, true, &off);
    // Cleanup beside live writers: their files are never older than this
    // before they are committed.
    let env = [
        ("SLUICE_MAINTENANCE__ORPHAN_MIN_AGE_SECS", "15".to_string()),
        ("SLUICE_MAINTENANCE__SNAPSHOT_MAX_AGE_SECS", "2".to_string()),
        ("SLUICE_MAINTENANCE__SNAPSHOTS_TO_KEEP", "3".to_string()),
        ("SLUICE_LOG", "warn".to_string()),
    ];
    let mut compacted = 0;
    let mut completed = 0;
    let started = Instant::now();
    for round in 0..40u64 {
        std::thread::sleep(Duration::from_millis(400));
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["maintain", "--once"])
            .env_remove("SLUICE_CONFIG")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if round % 2 == 1 {
            let pause = 30 + (round * 7919) % 400;
            std::thread::sleep(Duration::from_millis(pause));
            let _ = child.kill();
            let _ = child.wait();
            continue;
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "round {round} failed");
        let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
        completed += 1;
        compacted += TABLES
            .iter()
            .map(|t| report_of(&reports, t)["compacted_files"].as_u64().unwrap())
            .sum::<u64>();
    }
    assert_eq!(completed, 20);
    wait_for_lifecycle(&data_dir);
    assert!(compacted >= 20, "only {compacted} files compacted");
    eprintln!(
        "40 maintenance rounds beside the demo in {:.1} s; {compacted} files compacted",
        started.elapsed().as_secs_f64()
    );
    drop(up); // SIGKILL

    let mut up = catch_up_exactly(&data_dir, &addr);
    assert!(up.terminate().success());
    let after = common::table_digests(&data_dir, None);
    for table in TABLES {
        assert_eq!(
            after[table]["duckdb"], after[table]["pyiceberg"],
            "{table}: {after}"
        );
    }
}

/// Retention drops whole expired days in a `delete` snapshot; the rest of
/// the table reads the same.
#[test]
fn retention_drops_expired_days_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let gen_dir = tmp.path().join("gen");
    // Ten days of history ending now: with 3 days' retention, about 7 go.
    let until = chrono::Utc::now();
    ok(sluice_with(
        &data_dir,
        &[
            "gen",
            "--out",
            gen_dir.to_str().unwrap(),
            "--pods",
            "2",
            "--events",
            "3000",
            "--days",
            "10",
            "--until",
            &until.to_rfc3339(),
            "--lines-per-pod-day",
            "50",
        ],
        &[],
    ));
    ok(sluice_with(
        &data_dir,
        &["import", gen_dir.to_str().unwrap()],
        &[],
    ));
    ok(sluice_with(&data_dir, &["index", "--once"], &[]));
    let first_kept = sluice_warehouse::maintain::retention::first_kept_day(
        chrono::Utc::now().timestamp_millis(),
        Duration::from_secs(3 * 86_400),
    );
    let kept_before = common::table_digests(&data_dir, Some(first_kept));
    let all_before = common::table_digests(&data_dir, None);
    let mut env = eager();
    env.extend([
        ("SLUICE_RETENTION__POD_LOGS", "3d".to_string()),
        ("SLUICE_RETENTION__PLATFORM_EVENT_LOGS", "3d".to_string()),
        ("SLUICE_RETENTION__PLATFORM_EVENTS", "3d".to_string()),
    ]);
    let reports: Value =
        serde_json::from_str(&ok(sluice_with(&data_dir, &["maintain", "--once"], &env))).unwrap();
    let after = common::table_digests(&data_dir, None);
    for table in ["platform_event_logs", "pod_logs"] {
        let r = report_of(&reports, table);
        assert!(r["expired_files"].as_u64().unwrap() > 0, "{table}: {r}");
        let gone = all_before[table]["pyiceberg"]["rows"].as_u64().unwrap()
            - kept_before[table]["pyiceberg"]["rows"].as_u64().unwrap();
        assert!(gone > 0, "{table}: nothing old to expire");
        assert_eq!(r["expired_rows"].as_u64().unwrap(), gone, "{table}: {r}");
        assert_eq!(
            after[table]["pyiceberg"], kept_before[table]["pyiceberg"],
            "{table}: exactly the expired days left"
        );
        assert_eq!(after[table]["duckdb"], after[table]["pyiceberg"], "{table}");
    }
    // The log index drops the splits of the expired days.
    let kept_from_us = first_kept * 86_400_000_000;
    let split_ends = || -> Vec<i64> {
        let state: Value = serde_json::from_slice(
            &std::fs::read(data_dir.join("warehouse/sluice-index/pod_logs/state.json")).unwrap(),
        )
        .unwrap();
        state["splits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["max_ts"].as_i64().unwrap())
            .collect()
    };
    assert!(
        split_ends().iter().any(|end| *end < kept_from_us),
        "splits of the old days were indexed"
    );
    ok(sluice_with(&data_dir, &["index", "--once"], &[]));
    let ends = split_ends();
    assert!(!ends.is_empty());
    assert!(
        ends.iter().all(|end| *end >= kept_from_us),
        "splits of expired days remain: {ends:?}"
    );

    // The API says from when the tables keep rows.
    let (mut serve, addr) = common::spawn_serve(&data_dir, &[], &[]);
    let r = common::http(&addr, "GET", "/v1/tables", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let tables: Value = r.json();
    let kept_from = chrono::DateTime::from_timestamp(first_kept * 86_400, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for t in tables["tables"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        if report_of(&reports, name)["expired_files"].as_u64() > Some(0) {
            assert_eq!(t["retained_from"], kept_from.as_str(), "{t}");
        }
    }
    assert_eq!(
        tables["tables"].as_array().unwrap().len(),
        sluice_schema::tables::ALL_TABLES.len()
    );
    assert!(serve.terminate().success());

    // Bad retention values are refused at config load.
    let bad = sluice_with(
        &data_dir,
        &["maintain", "--once"],
        &[("SLUICE_RETENTION__POD_LOGS", "2h".to_string())],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("[retention] pod_logs"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
