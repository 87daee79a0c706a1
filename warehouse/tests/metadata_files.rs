//! A table committed many times keeps only the metadata files its log
//! names: each commit deletes the ones that left the log (Java Iceberg's
//! `write.metadata.delete-after-commit`), against a real catalog (embedded
//! SQLite) and local warehouse, and the table still reads whole.

use std::collections::BTreeSet;

use sluice_schema::tables::EVENT_LOGS;
use sluice_warehouse::append::{Advance, Outcome, TableSink, kafka_source};

mod common;
use common::{embedded_catalog, events, rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_files_that_leave_the_log_are_deleted_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = embedded_catalog(dir.path()).await;
    let sink = TableSink::new(catalog.clone(), &EVENT_LOGS, "meta");
    let source = kafka_source("sluice.events", 0);
    // More commits than the log's 100 entries.
    const COMMITS: i64 = 130;
    for i in 0..COMMITS {
        let out = sink
            .commit(
                &[Advance {
                    source: source.clone(),
                    from: (i > 0).then_some(i * 2),
                    to: (i + 1) * 2,
                }],
                &[events(&format!("m{i}-"), 2)],
            )
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Committed { .. }), "{out:?}");
    }
    let table = catalog.load_table(&EVENT_LOGS.ident()).await.unwrap();
    let meta = table.metadata();
    let mut named: BTreeSet<String> = meta
        .metadata_log()
        .iter()
        .map(|l| file_name(&l.metadata_file))
        .collect();
    named.insert(file_name(table.metadata_location().unwrap()));
    assert_eq!(meta.metadata_log().len(), 100, "the log holds its 100");

    let metadata_dir = table
        .metadata_location()
        .unwrap()
        .trim_start_matches("file://")
        .rsplit_once('/')
        .unwrap()
        .0
        .to_string();
    let on_disk: BTreeSet<String> = std::fs::read_dir(&metadata_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".metadata.json"))
        .collect();
    // The table's creation and its first commits wrote more than 130 files;
    // exactly those the log and the pointer name are left.
    assert_eq!(
        on_disk, named,
        "metadata files on disk = the ones the table names"
    );
    assert_eq!(
        rows(&sink).await,
        (COMMITS * 2) as usize,
        "the table reads whole"
    );
}

fn file_name(location: &str) -> String {
    location.rsplit('/').next().unwrap().to_string()
}
