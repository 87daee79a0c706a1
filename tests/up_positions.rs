//! The positions `sluice up` keeps in `pod_logs` follow the files that
//! exist: a pod-log file gone from disk and read to its end leaves the
//! table's position map once the tailer forgets it (`[collector]
//! forget_after_secs`), so the map every snapshot carries does not grow by a
//! key per file forever — and a restart afterwards still reads every line
//! exactly once.

mod common;

use std::path::Path;
use std::time::Duration;

use common::free_port;
use common::up::{count, spawn_up, wait_for};
use sluice_schema::tables::POD_LOGS;
use sluice_warehouse::append::{POSITIONS_PROPERTY, Positions};

fn write_lines(dir: &Path, prefix: &str, from: usize, to: usize) {
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("0.log"))
        .unwrap();
    for i in from..to {
        writeln!(f, "2026-12-04T10:00:00.{i:09}Z stdout F {prefix}-{i} hello").unwrap();
    }
    f.sync_all().unwrap();
}

async fn table_positions(data_dir: &Path) -> Positions {
    let catalog = common::open_catalog(data_dir).await;
    let table = catalog.load_table(&POD_LOGS.ident()).await.unwrap();
    table
        .metadata()
        .current_snapshot()
        .and_then(|s| {
            s.summary()
                .additional_properties
                .get(POSITIONS_PROPERTY)
                .cloned()
        })
        .map(|p| serde_json::from_str(&p).unwrap())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_of_gone_files_leave_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pods = tmp.path().join("pods");
    let a = pods.join("shop_api-0_uid-aaaa/app");
    let b = pods.join("shop_api-1_uid-bbbb/app");
    write_lines(&a, "a", 0, 50);
    let env = [
        ("SLUICE_COLLECTOR__PODS_ROOT", pods.display().to_string()),
        ("SLUICE_COLLECTOR__FORGET_AFTER_SECS", "2".to_string()),
        ("SLUICE_MAINTENANCE__ENABLED", "false".to_string()),
    ];
    let addr = format!("127.0.0.1:{}", free_port());
    let mut up = spawn_up(&data, &addr, false, &env);
    let lines = |prefix: &str| {
        count(
            &addr,
            &format!("SELECT count(*) AS n FROM pod_logs WHERE message LIKE '{prefix}-%'"),
        )
    };
    wait_for("a's lines", Duration::from_secs(60), || lines("a") == 50);
    let before = table_positions(&data).await;
    assert!(before.keys().any(|k| k.contains("uid-aaaa")), "{before:?}");

    // a's pod is deleted (kubelet removes its logs); b keeps writing, and
    // one of b's commits carries a's removal once the tailer forgot a.
    std::fs::remove_dir_all(pods.join("shop_api-0_uid-aaaa")).unwrap();
    let mut written = 0;
    let mut pruned = false;
    for _ in 0..60 {
        write_lines(&b, "b", written, written + 10);
        written += 10;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = table_positions(&data).await;
        if !now.keys().any(|k| k.contains("uid-aaaa")) && now.keys().any(|k| k.contains("uid-bbbb"))
        {
            pruned = true;
            break;
        }
    }
    assert!(
        pruned,
        "a's key never left: {:?}",
        table_positions(&data).await
    );
    wait_for("b's lines", Duration::from_secs(60), || {
        lines("b") == written as u64
    });
    assert!(up.terminate().success());

    // A restart reads nothing twice and loses nothing.
    write_lines(&b, "b", written, written + 5);
    written += 5;
    let mut up = spawn_up(&data, &addr, false, &env);
    wait_for("b's last lines", Duration::from_secs(60), || {
        lines("b") == written as u64
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lines("a"), 50);
    assert_eq!(lines("b"), written as u64);
    assert!(up.terminate().success());
}
