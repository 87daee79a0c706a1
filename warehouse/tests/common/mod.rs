//! Helpers shared by the ingest integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use arrow_array::RecordBatch;
use futures::TryStreamExt;
use iceberg::Catalog;
use serde_json::json;
use sluice_schema::batch;
use sluice_schema::raw::{Enrichment, RawEvent};
use sluice_schema::tables::EVENT_LOGS;
use sluice_warehouse::append::TableSink;
use sluice_warehouse::catalog::{self, CatalogConfig, S3Config, WarehouseConfig};
use sqlx::Connection;

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

/// The embedded default catalog (SQLite, local warehouse) under `dir`,
/// with the tables created.
pub async fn embedded_catalog(dir: &std::path::Path) -> Arc<dyn Catalog> {
    let catalog = catalog::open(&CatalogConfig::default(), &WarehouseConfig::default(), dir)
        .await
        .unwrap();
    catalog::ensure_tables(catalog.as_ref()).await.unwrap();
    catalog
}

/// The `event_id` column of the sink's table, read back through an
/// Iceberg scan.
async fn event_id_batches(sink: &TableSink) -> Vec<RecordBatch> {
    let table = sink.load().await.unwrap();
    table
        .scan()
        .select(["event_id"])
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Rows in the sink's table (duplicates counted).
pub async fn rows(sink: &TableSink) -> usize {
    event_id_batches(sink)
        .await
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

/// The test S3 store as the warehouse: under `s3://<bucket>/warehouse`, or
/// with no location of its own (a REST catalog places its tables).
pub fn s3_warehouse(bucket: Option<&str>) -> WarehouseConfig {
    let store = sluice_testkit::s3();
    WarehouseConfig {
        location: bucket.map(|b| format!("s3://{b}/warehouse")),
        s3: S3Config {
            endpoint: Some(store.endpoint),
            region: Some("us-east-1".into()),
            path_style: true,
            access_key_id: Some(store.access_key),
            secret_access_key: Some(store.secret_key),
        },
    }
}

/// A database of its own on the test Postgres server (`<prefix>-…`), so
/// test runs never share tables; its URI.
pub async fn postgres_database(prefix: &str) -> String {
    let base = sluice_testkit::postgres_uri();
    let db = sluice_testkit::unique(prefix);
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to Postgres");
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{db}")
}

/// The event ids in the sink's table.
pub async fn ids(sink: &TableSink) -> std::collections::BTreeSet<String> {
    let batches = event_id_batches(sink).await;
    let mut out = std::collections::BTreeSet::new();
    for b in batches {
        let col = arrow_array::cast::AsArray::as_string::<i32>(b.column(0));
        out.extend(col.iter().map(|v| v.unwrap().to_string()));
    }
    out
}
