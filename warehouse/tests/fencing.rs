//! Exactly-once appends against a real catalog (embedded SQLite + local
//! warehouse): positions ride in the snapshot summary, a stale writer is
//! refused, and of two writers racing from the same position exactly one wins.

use sluice_schema::tables::EVENT_LOGS;
use sluice_warehouse::append::{Advance, Outcome, TableSink, kafka_source, positions};
use sluice_warehouse::catalog::{self, CatalogConfig, WarehouseConfig};

mod common;
use common::{events, rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_writers_are_refused_and_races_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog::open(
        &CatalogConfig::default(),
        &WarehouseConfig::default(),
        dir.path(),
    )
    .await
    .unwrap();
    catalog::ensure_tables(catalog.as_ref()).await.unwrap();
    // Idempotent: a second start changes nothing.
    catalog::ensure_tables(catalog.as_ref()).await.unwrap();

    let source = kafka_source("sluice.events", 0);
    let a = TableSink::new(catalog.clone(), &EVENT_LOGS, "writer-a");
    let b = TableSink::new(catalog.clone(), &EVENT_LOGS, "writer-b");

    let first = a
        .commit(
            &[Advance {
                source: source.clone(),
                from: None,
                to: 10,
            }],
            &[events("a", 10)],
        )
        .await
        .unwrap();
    assert!(
        matches!(first, Outcome::Committed { rows: 10, .. }),
        "{first:?}"
    );
    assert_eq!(a.current_positions().await.unwrap().get(&source), Some(&10));

    // B still believes the partition starts at the beginning: a zombie.
    let stale = b
        .commit(
            &[Advance {
                source: source.clone(),
                from: None,
                to: 10,
            }],
            &[events("b", 10)],
        )
        .await
        .unwrap();
    assert_eq!(
        stale,
        Outcome::Fenced {
            source: source.clone(),
            expected: None,
            found: Some(10)
        }
    );
    assert_eq!(rows(&a).await, 10, "the stale batch was not appended");

    // Two writers both start at 10: exactly one may advance it.
    let race = |sink: TableSink, tag: &'static str| {
        let source = source.clone();
        tokio::spawn(async move {
            sink.commit(
                &[Advance {
                    source,
                    from: Some(10),
                    to: 20,
                }],
                &[events(tag, 10)],
            )
            .await
            .unwrap()
        })
    };
    let (x, y) = tokio::join!(race(a.clone(), "x"), race(b.clone(), "y"));
    let outcomes = [x.unwrap(), y.unwrap()];
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Committed { .. }))
        .count();
    let fenced = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Outcome::Fenced {
                    found: Some(20),
                    ..
                }
            )
        })
        .count();
    assert_eq!((committed, fenced), (1, 1), "{outcomes:?}");
    assert_eq!(rows(&a).await, 20);

    // A commit to another source merges with, and keeps, the earlier positions.
    let other = kafka_source("sluice.events", 1);
    let o = a
        .commit(
            &[Advance {
                source: other.clone(),
                from: None,
                to: 5,
            }],
            &[events("p1", 5)],
        )
        .await
        .unwrap();
    assert!(matches!(o, Outcome::Committed { .. }));
    let table = a.load().await.unwrap();
    let p = positions(&table, "platform_event_logs").unwrap();
    assert_eq!((p.get(&source), p.get(&other)), (Some(&20), Some(&5)));
    assert_eq!(rows(&a).await, 25);

    // Data files carry the writer's id and are unique per commit.
    let files: Vec<String> = walk(&dir.path().join("warehouse"));
    let parquet: Vec<&String> = files.iter().filter(|f| f.ends_with(".parquet")).collect();
    assert!(parquet.iter().any(|f| f.contains("writer-a-")));
    let mut names: Vec<&str> = parquet
        .iter()
        .map(|f| f.rsplit('/').next().unwrap())
        .collect();
    let before = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), before, "file names are unique");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
