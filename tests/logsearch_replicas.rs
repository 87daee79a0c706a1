//! Log search at object-storage scale: the index of a generated cluster in
//! an S3 warehouse (the test SeaweedFS) with a shared Postgres catalog,
//! searched in place by two `sluice serve` replicas that share nothing else
//! — each its own data directory and cache, one with a cache far smaller
//! than what the searches fetch. Every answer (totals, hits, pages by
//! cursor, context lines, restarts) is the same from either replica, cold
//! or warm; the small cache stays within its bound; the pruning by split
//! metadata leaves splits unopened.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice::generator::{self, GenConfig};

mod common;
use common::{enc, http, ok, sluice_with, spawn_serve};

const UNTIL: &str = "2026-11-21T00:00:00Z";

fn until() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(UNTIL)
        .unwrap()
        .with_timezone(&Utc)
}

fn get_json(addr: &str, path: &str) -> Value {
    let r = http(addr, "GET", path, &[], None);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.text()))
}

/// Every page of a search (by cursor, 1000 hits a page), as the API
/// returned them.
fn pages(addr: &str, params: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/logs/search?{params}&limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let mut page = get_json(addr, &path);
        cursor = page["next_cursor"].as_str().map(str::to_string);
        // How many splits a replica opened is its own business.
        page.as_object_mut().unwrap().remove("splits_searched");
        out.push(page);
        if cursor.is_none() {
            break;
        }
    }
    out
}

/// A counter of `/metrics` (summed over its labels).
fn metric(addr: &str, name: &str) -> f64 {
    let (status, body) = common::http_get(addr, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn replicas_search_splits_in_place_on_s3_alike_cold_or_warm() {
    let mut env = common::s3_warehouse_env("search");
    env.push(("SLUICE_CATALOG__KIND", "postgres".to_string()));
    env.push(("SLUICE_CATALOG__URI", common::postgres_catalog()));
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let manifest = generator::generate(
        &GenConfig {
            out: gen_dir.clone(),
            pods: 8,
            events: 1_000,
            days: 3,
            until: until(),
            seed: 23,
            cluster: "replicas".into(),
            lines_per_pod_day: 4_000,
            rotate_bytes: 256 * 1024,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap();
    let writer_dir = tmp.path().join("writer");
    ok(sluice_with(
        &writer_dir,
        &["import", gen_dir.to_str().unwrap(), "--format", "json"],
        &env,
    ));
    ok(sluice_with(&writer_dir, &["index", "--once"], &env));
    assert!(
        !writer_dir.join("warehouse").exists(),
        "tables and index are in the bucket"
    );

    let (a_dir, b_dir) = (tmp.path().join("replica-a"), tmp.path().join("replica-b"));
    let (_a, a) = spawn_serve(&a_dir, &[], &env);
    // B's cache holds 1 MiB on disk and 1 MiB in memory: far less than the
    // searches below fetch, so it evicts all along.
    let mut small = env.clone();
    small.push(("SLUICE_SEARCH__CACHE_MIB", "1".into()));
    small.push(("SLUICE_SEARCH__MEMORY_CACHE_MIB", "1".into()));
    let (_b, b) = spawn_serve(&b_dir, &[], &small);

    let pod = manifest
        .pods
        .iter()
        .find(|p| p.containers.iter().any(|c| c.instances.len() > 1))
        .expect("a pod that restarted");
    let day_ago = enc(&(until() - chrono::Duration::hours(24)).to_rfc3339());
    let searches = [
        "q=OOMKilled".to_string(),
        format!("q=heartbeat&pod={}", pod.pod),
        "q=OOMKilled&context=3".to_string(),
        format!("q=heartbeat&from={day_ago}"),
        format!("q=*&namespace={}&pod={}", pod.namespace, pod.pod),
        format!("q=*&pod={}&restart=0&order=asc", pod.pod),
        format!("q=evaluating&container={}", pod.containers[0].name),
        "q=%22out%20of%20memory%22".to_string(),
        "q=nosuchwordanywhere".to_string(),
    ];
    for s in &searches {
        let cold_a = pages(&a, s);
        let total = cold_a[0]["total"].as_u64().unwrap();
        if !s.contains("nosuchword") {
            assert!(total > 0, "{s}: the data holds matches");
        }
        let hits: usize = cold_a
            .iter()
            .map(|p| p["hits"].as_array().unwrap().len())
            .sum();
        assert_eq!(hits as u64, total, "{s}: every page together is the total");
        assert_eq!(pages(&a, s), cold_a, "{s}: warm A = cold A");
        assert_eq!(pages(&b, s), cold_a, "{s}: B (evicting) = A");
    }
    // The splits' metadata rules splits out before anything is fetched:
    // by time (a split per day), by container, by restart.
    let opened = |params: &str| {
        get_json(&a, &format!("/v1/logs/search?{params}&limit=1"))["splits_searched"]
            .as_u64()
            .unwrap()
    };
    let all = opened("q=*");
    assert!(all >= 3, "a split per day at least: {all}");
    assert!(opened(&format!("q=*&from={day_ago}")) < all);
    assert_eq!(opened("q=*&container=no-such-container"), 0);
    assert_eq!(opened("q=*&restart=999"), 0);
    // Restarts across replicas.
    let restarts = format!(
        "/v1/logs/restarts?namespace={}&pod={}",
        pod.namespace, pod.pod
    );
    assert_eq!(get_json(&a, &restarts), get_json(&b, &restarts));

    // Each replica fetched from the bucket into its own cache; B's stayed
    // within its bound though it fetched more than that.
    let fetched_b = metric(&b, "sluice_search_cache_fetched_bytes_total");
    assert!(fetched_b > 2.0 * 1048576.0, "B fetched {fetched_b} bytes");
    let on_disk = sluice_logindex::range_cache::dir_bytes(&b_dir.join("index-cache"));
    assert!(on_disk <= 1 << 20, "B's cache holds {on_disk} bytes");
    assert!(sluice_logindex::range_cache::dir_bytes(&a_dir.join("index-cache")) > 0);
    // A warm replica answers from its cache: a repeated search fetches
    // nothing.
    let before = metric(&a, "sluice_search_cache_fetched_bytes_total");
    pages(&a, &searches[0]);
    assert_eq!(
        metric(&a, "sluice_search_cache_fetched_bytes_total"),
        before
    );
}
