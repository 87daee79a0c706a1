//! The alert history's outbox against a real catalog (the embedded SQLite
//! one, real Parquet files): rows go into `alert_history` once, whether the
//! same outbox is written again (a crash between the commit and the saved
//! state) or a fresh state starts its numbering again.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use futures::TryStreamExt;
use iceberg::Catalog;
use sluice_alerts::history::{HistoryWriter, Outbox, series};
use sluice_alerts::state::{AlertState, Transition};
use sluice_schema::tables::ALERT_HISTORY;
use sluice_warehouse::catalog::{self, CatalogConfig, WarehouseConfig};

fn transition(pod: &str, from: AlertState, to: AlertState) -> Transition {
    Transition {
        at: chrono::Utc::now(),
        rule: "HighRestartCount".into(),
        labels: [
            ("alertname".to_string(), "HighRestartCount".to_string()),
            ("pod".to_string(), pod.to_string()),
        ]
        .into(),
        from,
        to,
        value: 4.0,
        active_at: Some(chrono::Utc::now()),
        summary: Some(format!("{pod} restarted 4 times")),
    }
}

async fn rows(catalog: &dyn Catalog) -> Vec<RecordBatch> {
    catalog
        .load_table(&ALERT_HISTORY.ident())
        .await
        .unwrap()
        .scan()
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn column(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = b.column_by_name(name).unwrap().as_string::<i32>();
        out.extend((0..c.len()).map(|i| c.value(i).to_string()));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_land_once_across_rewrites_and_fresh_states() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog::open(
        &CatalogConfig::default(),
        &WarehouseConfig::default(),
        dir.path(),
    )
    .await
    .unwrap();
    // The writer creates the table itself (a query replica need not have).
    let writer = HistoryWriter::new(catalog.clone(), "test-evaluator");
    let mut outbox = Outbox::default();
    outbox.push(
        "g",
        "me",
        transition("a", AlertState::Inactive, AlertState::Pending),
    );
    outbox.push(
        "g",
        "me",
        transition("a", AlertState::Pending, AlertState::Firing),
    );
    let (lineage, batch) = outbox.next_batch().unwrap();
    assert_eq!(writer.write(&lineage, &batch).await.unwrap(), 2);
    assert_eq!(
        column(&rows(catalog.as_ref()).await, "to_state"),
        ["firing", "pending"]
    );

    // A crash after the commit, before the state was saved: the same rows
    // again, and a new one. Only the new one lands.
    outbox.push(
        "g",
        "me",
        transition("a", AlertState::Firing, AlertState::Inactive),
    );
    let (_, again) = outbox.next_batch().unwrap();
    assert_eq!(again.len(), 3);
    assert_eq!(writer.write(&lineage, &again).await.unwrap(), 3);
    assert_eq!(writer.write(&lineage, &again).await.unwrap(), 3);
    let batches = rows(catalog.as_ref()).await;
    assert_eq!(
        column(&batches, "to_state"),
        ["firing", "inactive", "pending"]
    );
    outbox.written(&lineage, 3);
    assert!(outbox.next_batch().is_none());

    // A state started afresh numbers from 0 again, under a new lineage.
    let mut fresh = Outbox::default();
    fresh.push(
        "g",
        "me",
        transition("b", AlertState::Inactive, AlertState::Pending),
    );
    let (new_lineage, batch) = fresh.next_batch().unwrap();
    assert_ne!(new_lineage, lineage);
    assert_eq!(writer.write(&new_lineage, &batch).await.unwrap(), 1);
    let batches = rows(catalog.as_ref()).await;
    let want_b = series("HighRestartCount", &batch[0].transition.labels);
    assert_eq!(want_b, r#"HighRestartCount{pod="b"}"#);
    let got = column(&batches, "series");
    assert_eq!(got.len(), 4);
    assert_eq!(got.iter().filter(|s| **s == want_b).count(), 1);
    assert_eq!(
        column(&batches, "summary")
            .iter()
            .filter(|s| s.as_str() == "a restarted 4 times")
            .count(),
        3
    );
    // The labels map carries alertname and the pod.
    let labels = batches[0]
        .column_by_name("labels")
        .unwrap()
        .as_map()
        .value(0);
    let keys = labels.column(0).as_string::<i32>();
    let names: Vec<&str> = (0..keys.len()).map(|i| keys.value(i)).collect();
    assert_eq!(names, ["alertname", "pod"]);
}
