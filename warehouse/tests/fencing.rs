//! Exactly-once appends against a real catalog (embedded SQLite + local
//! warehouse): positions ride in the snapshot summary, a stale writer is
//! refused, and of two writers racing from the same position exactly one wins.

use sluice_schema::tables::EVENT_LOGS;
use sluice_warehouse::append::{Advance, Outcome, TableSink, kafka_source, positions};
use sluice_warehouse::catalog;

mod common;
use common::{embedded_catalog, events, rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_writers_are_refused_and_races_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = embedded_catalog(dir.path()).await;
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

/// A writer's `Checkpoint` moves only with a commit; a stale copy of it is
/// fenced and left unchanged; a retried batch whose first commit landed is
/// settled as committed once; a finished source is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_advance_with_commits_and_fence_stale_copies() {
    use sluice_warehouse::append::{FORGOTTEN, SinkError};
    use sluice_warehouse::checkpoint::{Advanced, Checkpoint, NotAdvanced};
    use sluice_warehouse::commit_loop::{Retries, Settled};

    let dir = tempfile::tempdir().unwrap();
    let catalog = embedded_catalog(dir.path()).await;
    let sink = TableSink::new(catalog.clone(), &EVENT_LOGS, "cp");
    let never = |e: &SinkError| panic!("commit failed: {e}");
    let same = |s: &str| s.to_string();
    let sorted = |prefix: &str, n: usize| sink.sort(&[events(prefix, n)]).unwrap();

    let mut cp = Checkpoint::default();
    let (a, b) = ("wal:a".to_string(), "wal:b".to_string());
    let done = cp
        .try_advance(
            &sink,
            &[(a.clone(), 10), (b.clone(), 5)],
            &same,
            sorted("x", 10).as_ref(),
            Retries::Attempts(1),
            &never,
        )
        .await
        .unwrap();
    assert_eq!(
        done,
        Advanced {
            rows: 10,
            earlier: false
        }
    );
    assert_eq!((cp.get(&a), cp.get(&b)), (Some(10), Some(5)));

    // A copy taken before that commit is stale: fenced, and unchanged.
    let mut stale = Checkpoint::default();
    let refused = stale
        .try_advance(
            &sink,
            &[(a.clone(), 20)],
            &same,
            sorted("y", 10).as_ref(),
            Retries::Attempts(1),
            &never,
        )
        .await;
    assert!(
        matches!(
            &refused,
            Err(NotAdvanced::Fenced {
                found: Some(10),
                expected: None,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(stale.get(&a), None);
    assert_eq!(rows(&sink).await, 10, "nothing appended by the stale copy");

    // The same batch sent again after its commit landed (the answer lost):
    // settled as committed by the earlier attempt, nothing appended twice.
    let again = sink
        .commit_settled(
            &[
                Advance {
                    source: a.clone(),
                    from: None,
                    to: 10,
                },
                Advance {
                    source: b.clone(),
                    from: None,
                    to: 5,
                },
            ],
            sorted("x", 10).as_ref(),
            Retries::Attempts(1),
            &never,
        )
        .await;
    assert!(
        matches!(
            again,
            Settled::Committed {
                earlier: true,
                rows: 0,
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(rows(&sink).await, 10);

    // b is finished: forgetting it drops its key, nothing else moves.
    cp.try_advance(
        &sink,
        &[(a.clone(), 15), (b.clone(), FORGOTTEN)],
        &same,
        sorted("z", 5).as_ref(),
        Retries::Attempts(1),
        &never,
    )
    .await
    .unwrap();
    let held = sink.current_positions().await.unwrap();
    assert_eq!(held.get(&a), Some(&15));
    assert_eq!(held.get(&b), None, "{held:?}");
    assert_eq!(cp.get(&b), None);
    assert_eq!(rows(&sink).await, 15);
}
