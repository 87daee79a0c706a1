//! Helpers shared by the ingest integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use arrow_array::RecordBatch;
use futures::TryStreamExt;
use serde_json::json;
use sluice_schema::batch;
use sluice_schema::raw::{Enrichment, RawEvent};
use sluice_schema::tables::EVENT_LOGS;
use sluice_warehouse::append::TableSink;

/// `n` valid events with ids `<prefix>-<i>`, two hours apart (so a day
/// boundary, and with it a second partition, is crossed after 12).
pub fn events(prefix: &str, n: usize) -> RecordBatch {
    let rows: Vec<(RawEvent, Enrichment)> = (0..n)
        .map(|i| {
            let e = RawEvent::from_json(&json!({
                "event_id": format!("{prefix}-{i}"),
                "occurred_at": 1_795_264_328_500_i64 + i as i64 * 7_200_000,
                "service": "iom-core", "action": "a", "success": i % 3 != 0,
            }))
            .unwrap();
            (e, Enrichment::default())
        })
        .collect();
    batch::event_logs_batch(&Arc::new(EVENT_LOGS.arrow_schema().unwrap()), &rows).unwrap()
}

/// Rows in the sink's table, read back through an Iceberg scan.
pub async fn rows(sink: &TableSink) -> usize {
    let table = sink.load().await.unwrap();
    let batches: Vec<RecordBatch> = table
        .scan()
        .select(["event_id"])
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
}
