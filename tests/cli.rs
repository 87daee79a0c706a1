//! The `sluice` binary as users meet it: roles in --help, exit codes
//! (0 ok, 1 runtime failure, 2 usage error) with a one-line cause, and
//! `--format` for scripts.

use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_KAFKA")
        .output()
        .expect("run sluice")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_every_role() {
    let o = sluice(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    for role in [
        "up",
        "collect",
        "write",
        "import",
        "index",
        "serve",
        "sql",
        "logs",
        "attribution",
        "guardrails",
        "gen",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(role)),
            "{role} missing:\n{text}"
        );
    }
    for flag in [
        "--config",
        "--data-dir",
        "--kafka",
        "--http",
        "--log-format",
        "SLUICE_DATA_DIR",
    ] {
        assert!(text.contains(flag), "{flag} missing");
    }
}

#[test]
fn usage_errors_exit_2() {
    let o = sluice(&["gen", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--no-such-flag"));
    let o = sluice(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = sluice(&["--log-format", "xml", "gen", "--out", "x"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn runtime_failures_exit_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g");
    let o = sluice(&[
        "gen",
        "--out",
        out.to_str().unwrap(),
        "--until",
        "yesterday",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--until") && err.contains("yesterday"),
        "{err}"
    );

    let o = sluice(&["write"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("sluice write"));

    let o = sluice(&["--config", "/nonexistent/sluice.toml", "config"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/sluice.toml"));
}

#[test]
fn gen_prints_a_summary_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g");
    let base = [
        "gen",
        "--out",
        out.to_str().unwrap(),
        "--pods",
        "3",
        "--events",
        "500",
        "--days",
        "1",
        "--until",
        "2026-11-21T00:00:00Z",
    ];
    let o = sluice(&[&base[..], &["--format", "json"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let events = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["item"] == "events")
        .unwrap();
    assert_eq!(events["count"], 500);
    assert!(out.join("manifest.json").is_file());

    let o = sluice(&[&base[..], &["--format", "csv", "--force"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(
        csv.starts_with("item,count\n") && csv.contains("events,500\n"),
        "{csv}"
    );

    // Without --force the second run refuses to mix data sets.
    let o = sluice(&base);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"));
}

#[test]
fn config_shows_layers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(
        &file,
        "cluster = \"from-file\"\n[kafka.topics]\nevents = \"gw\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            "/srv/sluice",
            "config",
        ])
        .env("SLUICE_KAFKA", "k1:9092")
        .env("SLUICE_KAFKA__TOPICS__DLQ", "dead")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cfg: toml::Value = toml::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(cfg["cluster"].as_str(), Some("from-file"));
    assert_eq!(cfg["data_dir"].as_str(), Some("/srv/sluice"));
    assert_eq!(cfg["kafka"]["bootstrap"].as_str(), Some("k1:9092"));
    assert_eq!(cfg["kafka"]["topics"]["events"].as_str(), Some("gw"));
    assert_eq!(cfg["kafka"]["topics"]["dlq"].as_str(), Some("dead"));
}

/// `[kafka.properties]` cannot weaken delivery: `acks = "0"` (or another
/// setting sluice's guarantees rest on) is a configuration error, exit 2,
/// naming the setting — for every role, before anything connects.
#[test]
fn kafka_properties_cannot_weaken_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[kafka.properties]\n\"security.protocol\" = \"PLAINTEXT\"\nacks = \"0\"\n",
    )
    .unwrap();
    for role in [&["collect"][..], &["write"][..]] {
        let mut args = vec![
            "--config",
            config.to_str().unwrap(),
            "--kafka",
            "127.0.0.1:1",
        ];
        args.extend_from_slice(role);
        let o = sluice(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{role:?}: {err}");
        assert!(
            err.contains("[kafka.properties] may not set")
                && err.contains("acks: the collector produces with acks=all"),
            "{role:?}: {err}"
        );
        assert!(!err.contains("security.protocol"), "{err}");
    }
    // Without the reserved key the same file loads.
    std::fs::write(
        &config,
        "[kafka.properties]\n\"security.protocol\" = \"PLAINTEXT\"\n",
    )
    .unwrap();
    let o = sluice(&["--config", config.to_str().unwrap(), "config"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
