//! `sluice import` end to end: a generated cluster goes into real Iceberg
//! tables (embedded SQLite catalog, local warehouse), PyIceberg reads them
//! back and recomputes the enrichment independently; a second run adds
//! nothing; bad records are rejected with reasons and lose nothing else.

use std::path::Path;
use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice::generator::{self, GenConfig, Manifest};

mod common;
use common::read_tables;

fn sluice(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .output()
        .expect("run sluice")
}

fn summary(o: &Output) -> Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut m = serde_json::Map::new();
    for r in rows.as_array().unwrap() {
        m.insert(r["item"].as_str().unwrap().to_string(), r["count"].clone());
    }
    Value::Object(m)
}

#[test]
fn import_is_complete_correct_and_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    let manifest: Manifest = generator::generate(
        &GenConfig {
            out: gen_dir.clone(),
            pods: 8,
            events: 30_000,
            days: 2,
            until: DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            seed: 11,
            cluster: "it".into(),
            lines_per_pod_day: 1000,
            rotate_bytes: 64 * 1024,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap();
    let t = &manifest.totals;
    let src = gen_dir.to_str().unwrap();

    let first = summary(&sluice(&data_dir, &["import", src, "--format", "json"]));
    assert_eq!(first["platform events"], 30_000);
    assert_eq!(first["pod log lines"], t.log_lines);
    assert_eq!(first["lifecycle events"], t.lifecycle_events);
    assert_eq!(first["rejected records"], 0);
    let files = t.log_files + t.event_files + 1;
    assert_eq!(first["files imported"], files);

    let tables = read_tables(&data_dir, &gen_dir);
    let ev = &tables["tables"]["platform_event_logs"];
    assert_eq!(ev["rows"], 30_000);
    assert_eq!(ev["distinct_ids"], 30_000);
    assert_eq!(ev["enrichment_mismatches"], serde_json::json!([]), "{ev}");
    for caller in ["internal", "external", "unknown"] {
        assert!(ev["caller_types"][caller].as_u64().unwrap() > 0, "{ev}");
    }
    assert!(ev["with_attributes"].as_u64().unwrap() > 0);
    assert_eq!(
        ev["partition_fields"],
        serde_json::json!(["occurred_at_day"])
    );
    assert_eq!(
        ev["sort_fields"],
        serde_json::json!(["service", "occurred_at"])
    );
    assert_eq!(
        ev["positions"], t.event_files,
        "one recorded position per imported file"
    );
    let logs = &tables["tables"]["pod_logs"];
    assert_eq!(logs["rows"], t.log_lines);
    assert_eq!(logs["distinct_ids"], t.log_lines, "line ids are unique");
    assert_eq!(
        logs["restarts_of_iom_cluster_0"],
        serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7])
    );
    for level in ["debug", "error", "info", "warn"] {
        assert!(
            logs["levels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l == level),
            "{logs}"
        );
    }
    assert_eq!(
        tables["tables"]["platform_events"]["rows"],
        t.lifecycle_events
    );

    // Again: nothing new, no new snapshots.
    let second = summary(&sluice(&data_dir, &["import", src, "--format", "json"]));
    assert_eq!(second["files imported"], 0);
    assert_eq!(second["files already imported"], files);
    let again = read_tables(&data_dir, &gen_dir);
    for name in ["platform_event_logs", "pod_logs", "platform_events"] {
        assert_eq!(
            again["tables"][name]["rows"], tables["tables"][name]["rows"],
            "{name}"
        );
        assert_eq!(
            again["tables"][name]["snapshots"], tables["tables"][name]["snapshots"],
            "{name}"
        );
    }

    // A file with bad records: the good ones land, the bad ones are reported.
    let good = r#"{"event_id":"late-1","occurred_at":"2026-11-20T10:00:00Z","service":"iom-core","action":"a","success":true}"#;
    let bad = [
        r#"{"event_id":"late-2","occurred_at":"yesterday","service":"iom-core","action":"a","success":true}"#,
        r#"{"event_id":"late-3","service":"iom-core","success":"yes"}"#,
        "not json at all",
    ];
    let body = format!("{good}\n{}\n", bad.join("\n"));
    std::fs::write(gen_dir.join("events/late.ndjson"), body).unwrap();
    let third = summary(&sluice(&data_dir, &["import", src, "--format", "json"]));
    assert_eq!(third["files imported"], 1);
    assert_eq!(third["platform events"], 1);
    assert_eq!(third["rejected records"], 3);
    let rejects: Vec<_> = std::fs::read_dir(data_dir.join("rejects"))
        .unwrap()
        .collect();
    assert_eq!(rejects.len(), 1);
    let text = std::fs::read_to_string(rejects[0].as_ref().unwrap().path()).unwrap();
    assert!(
        text.contains("occurred_at: not a timestamp")
            && text.contains("action: required field is missing"),
        "{text}"
    );
    let after = read_tables(&data_dir, &gen_dir);
    assert_eq!(after["tables"]["platform_event_logs"]["rows"], 30_001);
}

#[test]
fn import_of_nothing_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = sluice(
        &tmp.path().join("data"),
        &["import", tmp.path().to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds nothing to import"), "{err}");
}
