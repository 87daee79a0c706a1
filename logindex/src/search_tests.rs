//! Tests of `search`: a split built, searched locally and in place.

use std::sync::Arc;

use arrow_array::{Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use super::*;
use crate::query_lang::parse;
use crate::split::SplitWriter;

fn batch(lines: &[(i64, i32, &str)]) -> RecordBatch {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        s("namespace"),
        s("pod"),
        s("pod_uid"),
        s("container"),
        Field::new("restart", DataType::Int32, false),
        s("stream"),
        s("level"),
        s("node"),
        s("message"),
        s("line_id"),
        Field::new("byte_offset", DataType::Int64, true),
    ]));
    let n = lines.len();
    let col = |v: &str| Arc::new(StringArray::from(vec![v; n])) as _;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(lines.iter().map(|l| l.0).collect::<Vec<_>>())
                    .with_timezone("+00:00"),
            ),
            col("shop"),
            col("api-0"),
            col("uid-1"),
            col("app"),
            Arc::new(Int32Array::from(
                lines.iter().map(|l| l.1).collect::<Vec<_>>(),
            )),
            col("stdout"),
            Arc::new(StringArray::from(vec![Some("info"); n])),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
            Arc::new(StringArray::from(
                lines.iter().map(|l| l.2).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                (0..n).map(|i| format!("id{i:03}")).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

#[test]
fn terms_phrases_filters_pages_and_context() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SplitWriter::create(dir.path(), "s1").unwrap();
    let mut lines = Vec::new();
    for i in 0..50i32 {
        let text = match i % 10 {
            0 => "Container app OOMKilled (req-8c1f) out of memory",
            5 => "memory pressure: out of budget",
            _ => "handled request GET /v1/orders/12",
        };
        lines.push((1_000 + i64::from(i), i / 25, text));
    }
    w.add_batch(&batch(&lines)).unwrap();
    let meta = w.finish().unwrap();
    assert_eq!(meta.lines, 50);
    let filters = |from, restart, container: &str| Filters {
        from: Some(from),
        namespace: Some("shop".into()),
        pod: Some("api-0".into()),
        container: Some(container.into()),
        restart,
        ..Default::default()
    };
    let filters_match = |m: &SplitMeta, f: &Filters| f.may_match(m);
    assert!(filters_match(&meta, &filters(1_000, Some(1), "app")));
    assert!(!filters_match(&meta, &filters(2_000, None, "app")), "time");
    assert!(
        !filters_match(&meta, &filters(1_000, None, "sidecar")),
        "container"
    );
    assert!(
        !filters_match(&meta, &filters(1_000, Some(2), "app")),
        "restart"
    );
    let split = OpenSplit::open(meta, dir.path(), Arc::new(ColumnCache::new(64 << 20))).unwrap();
    let run =
        |q: &str, restart: Option<i64>, limit: usize, cursor: Option<Cursor>, context: usize| {
            search(
                &[&split],
                &SearchRequest {
                    q: parse(q).unwrap(),
                    filters: Filters {
                        restart,
                        ..Default::default()
                    },
                    limit,
                    order: SortOrder::Desc,
                    cursor,
                    context,
                    cancelled: never_cancelled,
                },
            )
            .unwrap()
        };
    assert_eq!(run("OOMKilled", None, 100, None, 0).total, 5);
    assert_eq!(
        run("8c1f", None, 100, None, 0).total,
        5,
        "a part of an identifier"
    );
    assert_eq!(run("\"out of memory\"", None, 100, None, 0).total, 5);
    assert_eq!(run("\"of memory out\"", None, 100, None, 0).total, 0);
    assert_eq!(run("memory", None, 100, None, 0).total, 10);
    assert_eq!(run("memory AND NOT oomkilled", None, 100, None, 0).total, 5);
    assert_eq!(run("orders OR budget", None, 100, None, 0).total, 45);
    assert_eq!(run("*", Some(1), 100, None, 0).total, 25);
    assert_eq!(run("restart:1 oomkilled", None, 100, None, 0).total, 2);
    // Newest first, paged by cursor without loss or repetition.
    let first = run("*", None, 20, None, 0);
    assert_eq!(first.hits[0].line.ts, 1_049);
    let mut seen: Vec<i64> = first.hits.iter().map(|h| h.line.ts).collect();
    let mut cursor = first.next_cursor.clone();
    while let Some(c) = cursor {
        let page = run("*", None, 20, Cursor::decode(&c), 0);
        assert_eq!(page.total, 50);
        seen.extend(page.hits.iter().map(|h| h.line.ts));
        cursor = page.next_cursor;
    }
    assert_eq!(seen, (1_000..1_050).rev().collect::<Vec<_>>());
    // Context: lines around a hit in the same instance.
    let hit = &run("oomkilled", Some(0), 1, None, 2).hits[0];
    assert_eq!(hit.line.ts, 1_020);
    let ctx = hit.context.as_ref().unwrap();
    assert_eq!(
        ctx.before.iter().map(|l| l.ts).collect::<Vec<_>>(),
        vec![1_018, 1_019]
    );
    assert_eq!(
        ctx.after.iter().map(|l| l.ts).collect::<Vec<_>>(),
        vec![1_021, 1_022]
    );
}

/// A split whose dictionaries lack what a query needs is ruled out
/// before its columns are fetched; one that may match, or any when
/// context lines are asked for, is not.
#[test]
fn splits_without_the_terms_are_ruled_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SplitWriter::create(dir.path(), "s1").unwrap();
    w.add_batch(&batch(&[
        (1_000, 0, "Container app OOMKilled"),
        (1_001, 1, "GET /v1/orders"),
    ]))
    .unwrap();
    let split = OpenSplit::open(
        w.finish().unwrap(),
        dir.path(),
        Arc::new(ColumnCache::new(1 << 20)),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let may = |q: &str, restart: Option<i64>, context: usize| {
        let req = SearchRequest {
            q: parse(q).unwrap(),
            filters: Filters {
                restart,
                ..Default::default()
            },
            limit: 10,
            order: SortOrder::Desc,
            cursor: None,
            context,
            cancelled: never_cancelled,
        };
        rt.block_on(warm_up(&split, &req)).unwrap()
    };
    for (q, restart, expected) in [
        ("oomkilled", None, true),
        ("segfault", None, false),
        ("segfault OR orders", None, true),
        ("segfault AND orders", None, false),
        ("NOT segfault", None, true),
        ("*", None, true),
        ("\"app oomkilled\"", None, true),
        ("\"app segfault\"", None, false),
        ("pod:api-0 orders", None, true),
        ("pod:api-9 orders", None, false),
        ("restart:7", None, false),
        ("orders", Some(1), true),
        ("orders", Some(5), false),
    ] {
        assert_eq!(may(q, restart, 0), expected, "{q} restart {restart:?}");
    }
    assert!(may("segfault", None, 3), "context may come from any split");
}

/// The same searches answer alike from a local split, in place with a
/// cold cache, with a warm one, and from the disk tier after a restart;
/// a warm search fetches nothing.
#[test]
fn in_place_cold_and_warm_answer_alike() {
    use crate::range_cache::{CacheMetrics, CacheSettings, RangeCache};
    use crate::store::IndexStore;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let warehouse = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for i in 0..200_000i32 {
        let text = match i % 7 {
            0 => format!("Container app OOMKilled (req-{i:x}) out of memory"),
            3 => format!("memory pressure: {i} bytes out of budget"),
            _ => format!("handled request GET /v1/orders/{i} in {}ms", i % 300),
        };
        lines.push((1_000_000 + i64::from(i) * 10, i / 50_000, text));
    }
    let borrowed: Vec<(i64, i32, &str)> =
        lines.iter().map(|(t, r, m)| (*t, *r, m.as_str())).collect();
    let split_dir = work.path().join("s1");
    let mut w = SplitWriter::create(&split_dir, "s1").unwrap();
    w.add_batch(&batch(&borrowed)).unwrap();
    let mut meta = w.finish().unwrap();
    let local = OpenSplit::open(
        meta.clone(),
        &split_dir,
        Arc::new(ColumnCache::new(64 << 20)),
    )
    .unwrap();
    let store = IndexStore::new(
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(warehouse.path()).unwrap()),
        object_store::path::Path::from("index"),
        "file:///index".into(),
    );
    let (bytes, hot) = rt.block_on(store.upload_split("s1", &split_dir)).unwrap();
    meta.split_bytes = bytes;
    meta.hotcache_offset = Some(hot);
    let requests: Vec<SearchRequest> = [
        ("oomkilled", None, 0),
        ("\"out of memory\"", Some(2), 3),
        ("memory AND NOT oomkilled", None, 0),
        ("*", Some(1), 2),
    ]
    .into_iter()
    .map(|(q, restart, context)| SearchRequest {
        q: parse(q).unwrap(),
        filters: Filters {
            restart,
            from: Some(1_500_000),
            ..Default::default()
        },
        limit: 50,
        order: SortOrder::Desc,
        cursor: None,
        context,
        cancelled: never_cancelled,
    })
    .collect();
    let expected: Vec<SearchResult> = requests
        .iter()
        .map(|r| search(&[&local], r).unwrap())
        .collect();
    assert!(expected.iter().all(|r| r.total > 0 && !r.hits.is_empty()));
    let cache_dir = work.path().join("cache");
    let open_cache = |disk_blocks: u64| {
        Arc::new(
            RangeCache::open(
                CacheSettings {
                    dir: Some(cache_dir.clone()),
                    disk_bytes: disk_blocks * crate::range_cache::BLOCK_BYTES,
                    memory_bytes: 64 << 20,
                },
                CacheMetrics::default(),
            )
            .unwrap(),
        )
    };
    let run = |cache: &Arc<RangeCache>, warm: bool| -> Vec<SearchResult> {
        let directory = rt.block_on(store.open_split(&meta, cache.clone())).unwrap();
        assert!(directory.hotcache_bytes() > 0);
        let split = rt
            .block_on(async {
                let meta = meta.clone();
                let columns = Arc::new(ColumnCache::new(64 << 20));
                tokio::task::spawn_blocking(move || {
                    OpenSplit::open_in_place(meta, directory, columns)
                })
                .await
            })
            .unwrap()
            .unwrap();
        let split = Arc::new(split);
        requests
            .iter()
            .map(|r| {
                if warm {
                    assert!(rt.block_on(warm_up(&split, r)).unwrap());
                }
                let (split, r) = (split.clone(), r.clone());
                rt.block_on(rt.spawn_blocking(move || search(&[&split], &r)))
                    .unwrap()
                    .unwrap()
            })
            .collect()
    };
    let cache = open_cache(1024);
    assert_eq!(run(&cache, true), expected, "cold, warmed up first");
    let fetched = cache.stats().bytes_fetched;
    assert!(
        fetched < bytes / 2,
        "four searches fetched {fetched} of the split's {bytes} bytes"
    );
    eprintln!("four cold searches fetched {fetched} of the split's {bytes} bytes");
    assert_eq!(run(&cache, false), expected, "warm");
    assert_eq!(
        cache.stats().bytes_fetched - fetched,
        // The hotcache is fetched again by a new open; nothing else.
        bytes - hot,
        "a warm search fetched more than the split's tail"
    );
    drop(cache);
    let cache = open_cache(1024);
    assert_eq!(run(&cache, false), expected, "from the disk tier");
    assert!(cache.stats().disk_hits > 0);
    let small = open_cache(2);
    assert_eq!(
        run(&small, false),
        expected,
        "through a cache of two blocks"
    );
    assert!(crate::range_cache::dir_bytes(&cache_dir) <= 2 * crate::range_cache::BLOCK_BYTES);
}

/// The same searches answer alike whether the columns are kept or
/// opened each time; kept columns stay within the bound, and a closed
/// split lets go of them.
#[test]
fn columns_kept_within_their_bound_answer_alike() {
    let lines: Vec<(i64, i32, String)> = (0..3_000i32)
        .map(|i| {
            let text = if i % 9 == 0 {
                "OOMKilled out of memory"
            } else {
                "GET /v1/orders"
            };
            (1_000 + i64::from(i), i / 1_000, text.to_string())
        })
        .collect();
    let borrowed: Vec<(i64, i32, &str)> =
        lines.iter().map(|(t, r, m)| (*t, *r, m.as_str())).collect();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut metas = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        let mut w = SplitWriter::create(dir.path(), &format!("s{n}")).unwrap();
        let half = &borrowed[n * 1_500..(n + 1) * 1_500];
        w.add_batch(&batch(half)).unwrap();
        metas.push(w.finish().unwrap());
    }
    let run = |splits: &[&OpenSplit]| {
        let mut out = Vec::new();
        for (q, order, limit) in [
            ("oomkilled", SortOrder::Desc, 7),
            ("oomkilled", SortOrder::Asc, 7),
            ("*", SortOrder::Asc, 2_000),
            ("orders", SortOrder::Desc, 0),
        ] {
            let r = search(
                splits,
                &SearchRequest {
                    q: parse(q).unwrap(),
                    filters: Default::default(),
                    limit,
                    order,
                    cursor: None,
                    context: 1,
                    cancelled: never_cancelled,
                },
            )
            .unwrap();
            out.push(format!("{} {:?}", r.total, r.hits));
        }
        out
    };
    let open_all = |columns: &Arc<ColumnCache>| -> Vec<OpenSplit> {
        metas
            .iter()
            .zip(&dirs)
            .map(|(m, d)| OpenSplit::open(m.clone(), d.path(), columns.clone()).unwrap())
            .collect()
    };
    // Nothing kept: every search opens its columns.
    let none = Arc::new(ColumnCache::new(0));
    let opened = open_all(&none);
    let refs: Vec<&OpenSplit> = opened.iter().collect();
    let expected = run(&refs);
    assert_eq!(none.bytes(), 0);
    // The first answer: oldest first starts at the first line.
    assert!(expected[1].contains("ts: 1000,"), "{}", expected[1]);
    // Room for both splits' columns: kept, and the answers the same.
    let all = Arc::new(ColumnCache::new(64 << 20));
    let opened = open_all(&all);
    let refs: Vec<&OpenSplit> = opened.iter().collect();
    assert_eq!(run(&refs), expected);
    let both = all.bytes();
    assert!(both > 0);
    assert_eq!(run(&refs), expected, "from the kept columns");
    assert_eq!(all.bytes(), both, "opened once");
    // Room for one: the other is opened each time, within the bound.
    let one = Arc::new(ColumnCache::new(both / 2 + 1));
    let opened = open_all(&one);
    let refs: Vec<&OpenSplit> = opened.iter().collect();
    assert_eq!(run(&refs), expected);
    assert!(
        one.bytes() > 0 && one.bytes() <= both / 2 + 1,
        "{}",
        one.bytes()
    );
    drop(opened);
    assert_eq!(one.bytes(), 0, "closed splits let go of their columns");
}
