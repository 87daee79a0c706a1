//! The scaled-out storage variants against real servers (started by
//! `scripts/test`): a Postgres SQL catalog over an S3 warehouse (SeaweedFS),
//! and SeaweedFS's Iceberg REST catalog. Each must create the tables, append
//! exactly once, fence a stale writer and read back what it wrote.

use std::sync::Arc;

use futures::TryStreamExt;
use iceberg::Catalog;
use sluice_schema::tables::{ALL_TABLES, EVENT_LOGS};
use sluice_warehouse::append::{Advance, Outcome, TableSink, kafka_source};
use sluice_warehouse::catalog::{self, CatalogConfig, WarehouseConfig};
use sqlx::Connection;

mod common;
use common::{events, postgres_database, rows, s3_warehouse};

/// Creates, appends, fences and reads back through `catalog`.
async fn exercise(catalog: Arc<dyn Catalog>) -> Vec<String> {
    catalog::ensure_tables(catalog.as_ref()).await.unwrap();
    let source = kafka_source("sluice.events", 0);
    let sink = TableSink::new(catalog.clone(), &EVENT_LOGS, "it");
    let first = sink
        .commit(
            &[Advance {
                source: source.clone(),
                from: None,
                to: 24,
            }],
            &[events("e", 24)],
        )
        .await
        .unwrap();
    assert!(
        matches!(first, Outcome::Committed { rows: 24, .. }),
        "{first:?}"
    );
    let stale = sink
        .commit(
            &[Advance {
                source: source.clone(),
                from: None,
                to: 24,
            }],
            &[events("e", 24)],
        )
        .await
        .unwrap();
    assert!(
        matches!(
            stale,
            Outcome::Fenced {
                found: Some(24),
                ..
            }
        ),
        "{stale:?}"
    );

    assert_eq!(rows(&sink).await, 24);
    let table = sink.load().await.unwrap();
    let tasks: Vec<_> = table
        .scan()
        .build()
        .unwrap()
        .plan_files()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    tasks.iter().map(|t| t.data_file_path.clone()).collect()
}

#[tokio::test]
async fn postgres_catalog_over_an_s3_warehouse() {
    let uri = postgres_database("sluice").await;

    let bucket = sluice_testkit::unique("wh");
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog::open(
        &CatalogConfig::Postgres { uri: uri.clone() },
        &s3_warehouse(Some(&bucket)),
        dir.path(),
    )
    .await
    .unwrap();
    let files = exercise(catalog).await;
    // Two days of events: one data file per day partition, all in the bucket.
    assert!(files.len() >= 2, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with(&format!("s3://{bucket}/warehouse/"))),
        "{files:?}"
    );
    assert!(
        !dir.path().join("warehouse").exists(),
        "nothing written locally"
    );

    // The catalog rows live in Postgres.
    let mut conn = sqlx::PgConnection::connect(&uri).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM iceberg_tables WHERE table_namespace = 'platform'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(n, ALL_TABLES.len() as i64);

    // A second process's view (a fresh catalog) sees the same table.
    let again = catalog::open(
        &CatalogConfig::Postgres { uri },
        &s3_warehouse(Some(&bucket)),
        dir.path(),
    )
    .await
    .unwrap();
    let sink = TableSink::new(again, &EVENT_LOGS, "other");
    assert_eq!(
        sink.current_positions()
            .await
            .unwrap()
            .get(&kafka_source("sluice.events", 0)),
        Some(&24)
    );
}

#[tokio::test]
async fn a_bad_postgres_uri_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = catalog::open(
        &CatalogConfig::Postgres {
            uri: "postgres://nobody@127.0.0.1:1/none".into(),
        },
        &WarehouseConfig::default(),
        dir.path(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().starts_with("opening the postgres catalog"),
        "{err}"
    );
}

/// SeaweedFS's Iceberg REST catalog (`scripts/test` starts it with the table
/// bucket `sluice-rest`), authenticated with OAuth2 client credentials (the
/// S3 access key and secret), data files in its S3 store.
#[tokio::test]
async fn rest_catalog_with_oauth2_client_credentials() {
    let store = sluice_testkit::s3();
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::Rest {
        uri: sluice_testkit::iceberg_rest_uri(),
        warehouse: Some("s3://sluice-rest/".into()),
        token: None,
        credential: Some(format!("{}:{}", store.access_key, store.secret_key)),
    };
    let catalog = catalog::open(&config, &s3_warehouse(Some("unused")), dir.path())
        .await
        .expect("open the REST catalog");
    let files = exercise(catalog).await;
    assert!(files.len() >= 2, "{files:?}");
    assert!(
        files.iter().all(|f| f.starts_with("s3://sluice-rest/")),
        "data files live where the catalog put the table: {files:?}"
    );

    // Another process (a fresh client) sees the committed position.
    let again = catalog::open(&config, &s3_warehouse(Some("unused")), dir.path())
        .await
        .unwrap();
    let sink = TableSink::new(again, &EVENT_LOGS, "other");
    assert_eq!(
        sink.current_positions()
            .await
            .unwrap()
            .get(&kafka_source("sluice.events", 0)),
        Some(&24)
    );

    // A wrong secret is refused with the catalog's answer, not a panic.
    let wrong = CatalogConfig::Rest {
        uri: sluice_testkit::iceberg_rest_uri(),
        warehouse: Some("s3://sluice-rest/".into()),
        token: None,
        credential: Some(format!("{}:not-the-secret", store.access_key)),
    };
    let refused = match catalog::open(&wrong, &s3_warehouse(Some("unused")), dir.path()).await {
        Err(e) => e.to_string(),
        Ok(c) => catalog::ensure_tables(c.as_ref())
            .await
            .expect_err("a wrong secret must be refused")
            .to_string(),
    };
    assert!(
        refused.contains("401") && refused.contains("Invalid client credentials"),
        "{refused}"
    );
}
