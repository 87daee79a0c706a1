//! Maintenance through each SQL catalog and warehouse: an embedded SQLite
//! catalog over local files, and Postgres over an S3 bucket (SeaweedFS).
//! Many small appends are compacted into one file, an append that lands
//! while a compaction is being built makes its commit conflict (and the
//! rebuilt one keeps both), positions survive expiry, and the files nothing
//! references any more leave the store.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use iceberg::spec::Operation;
use sluice_schema::tables::EVENT_LOGS;
use sluice_warehouse::append::{Advance, Outcome, TableSink, kafka_source};
use sluice_warehouse::catalog::{self, CatalogConfig, WarehouseConfig};
use sluice_warehouse::maintain::commit::{CommitError, MetadataCommitter};
use sluice_warehouse::maintain::metrics::MaintenanceMetrics;
use sluice_warehouse::maintain::snapshot::{self, Rewrite};
use sluice_warehouse::maintain::{Maintainer, MaintenanceConfig, RetentionConfig};
use sluice_warehouse::object_stores::ObjectStores;

use common::{events, ids, postgres_database, s3_warehouse};

async fn append(sink: &TableSink, topic: &str, n: usize, from: i64) -> i64 {
    let source = kafka_source(topic, 0);
    let to = from + n as i64;
    let outcome = sink
        .commit(
            &[Advance {
                source,
                from: (from > 0).then_some(from),
                to,
            }],
            &[events(&format!("{topic}-{from}"), n)],
        )
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Committed { .. }), "{outcome:?}");
    to
}

/// `lists`: the store lists data files (SeaweedFS's S3 table buckets list
/// only `metadata.json` files).
async fn exercise(catalog_cfg: CatalogConfig, warehouse: WarehouseConfig, lists: bool) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog::open(&catalog_cfg, &warehouse, dir.path())
        .await
        .unwrap();
    catalog::ensure_tables(catalog.as_ref()).await.unwrap();
    let sink = TableSink::new(catalog.clone(), &EVENT_LOGS, "it");
    // A source of its own: a shared catalog (REST) may hold other runs' rows.
    let topic = sluice_testkit::unique("mt");
    let initial = ids(&sink).await.len();
    let mut at = 0;
    for _ in 0..6 {
        at = append(&sink, &topic, 10, at).await;
    }
    let before = ids(&sink).await;
    assert_eq!(before.len(), initial + 60);
    let committer = MetadataCommitter::open(&catalog_cfg, dir.path())
        .await
        .unwrap();

    // A compaction built on one state, committed after an append: refused.
    let table = sink.load().await.unwrap();
    let live = snapshot::live_entries(&table).await.unwrap();
    let removed: HashSet<String> = live.iter().map(|e| e.file_path().to_string()).collect();
    let updates = snapshot::build(
        &table,
        &Rewrite {
            operation: Operation::Replace,
            removed: &removed,
            added: &[],
            reason: "test",
            retained_from_day: None,
        },
    )
    .await
    .unwrap();
    at = append(&sink, &topic, 10, at).await;
    let refused = committer.commit(&table, updates).await;
    assert!(
        matches!(refused, Err(CommitError::Conflict { .. })),
        "{refused:?}"
    );
    assert_eq!(
        ids(&sink).await.len(),
        initial + 70,
        "nothing lost to the refusal"
    );

    // The maintainer compacts, expires and cleans up.
    let stores = Arc::new(ObjectStores::new(warehouse.s3.clone()));
    let config = MaintenanceConfig {
        snapshot_max_age_secs: 0,
        snapshots_to_keep: 1,
        orphan_min_age_secs: 0,
        ..MaintenanceConfig::default()
    };
    let maintainer = Maintainer::new(
        catalog.clone(),
        committer,
        stores.clone(),
        config,
        RetentionConfig {
            pod_logs: String::new(),
            platform_events: String::new(),
            alert_history: String::new(),
            platform_event_logs: String::new(),
        },
        MaintenanceMetrics::default(),
    )
    .unwrap();
    let report = maintainer.table(&EVENT_LOGS).await.unwrap();
    assert!(report.compacted_files >= 7, "{report:?}");
    assert!(report.orphans_deleted >= 7, "{report:?}");
    let after = ids(&sink).await;
    assert_eq!(after.len(), initial + 70);
    assert!(after.is_superset(&before));

    // Positions survived the expiry of every append snapshot.
    let table = sink.load().await.unwrap();
    assert_eq!(table.metadata().snapshots().len(), 1);
    assert_eq!(
        sink.current_positions()
            .await
            .unwrap()
            .get(&kafka_source(&topic, 0)),
        Some(&at)
    );
    // A writer goes on from there, and a stale one is still fenced.
    let stale = sink
        .commit(
            &[Advance {
                source: kafka_source(&topic, 0),
                from: Some(at - 10),
                to: at,
            }],
            &[events("stale", 10)],
        )
        .await
        .unwrap();
    assert!(matches!(stale, Outcome::Fenced { .. }), "{stale:?}");
    append(&sink, &topic, 10, at).await;
    assert_eq!(ids(&sink).await.len(), initial + 80);

    if !lists {
        return;
    }
    // Every file left in the table's directories is referenced.
    let keep = sluice_warehouse::maintain::orphans::referenced(&sink.load().await.unwrap())
        .await
        .unwrap();
    let location = table.metadata().location().to_string();
    let (store, _) = stores.store_for(&location).unwrap();
    let prefix = object_store::path::Path::from(format!(
        "{}/data",
        sluice_warehouse::maintain::orphans::object_key(&location)
    ));
    let listed: Vec<object_store::ObjectMeta> =
        store.list(Some(&prefix)).try_collect().await.unwrap();
    assert!(!listed.is_empty());
    for meta in listed {
        assert!(keep.contains(meta.location.as_ref()), "{}", meta.location);
    }
}

/// SeaweedFS's Iceberg REST catalog with OAuth2 client credentials (the S3
/// key and secret), its tables in the S3 table bucket `sluice-rest`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_catalog_with_oauth2_client_credentials() {
    let store = sluice_testkit::s3();
    exercise(
        CatalogConfig::Rest {
            uri: sluice_testkit::iceberg_rest_uri(),
            warehouse: Some("s3://sluice-rest/".into()),
            token: None,
            credential: Some(format!("{}:{}", store.access_key, store.secret_key)),
        },
        s3_warehouse(None),
        false,
    )
    .await;
    // The catalog's s3:// locations went to S3, not to a local path named
    // after them.
    assert!(
        !std::path::Path::new("s3:").exists(),
        "data files written locally under ./s3:"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_catalog_over_local_files() {
    exercise(CatalogConfig::default(), WarehouseConfig::default(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_catalog_over_an_s3_warehouse() {
    let uri = postgres_database("maint").await;
    let bucket = sluice_testkit::unique("mw");
    exercise(
        CatalogConfig::Postgres { uri },
        s3_warehouse(Some(&bucket)),
        true,
    )
    .await;
}
