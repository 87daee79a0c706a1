//! No query can stop the pipeline. A corpus of hostile queries — cross
//! joins, `range` over 10¹² rows, value-building functions, deep nesting,
//! regexes over long strings, Loki queries over ten years, LogQL bombs —
//! runs four at a time against a live `sluice up --demo`, then against
//! `sluice serve`, while the test watches the process:
//!
//! - `/healthz` answers every probe (one every 100 ms) within 500 ms;
//! - rows keep being committed (`sluice_up_rows_committed_total` grows);
//! - every query ends with its documented status within its limit + 2 s;
//! - the process's CPU falls back once the corpus is done (the work
//!   stopped, not just the answer), and no query holds a slot;
//! - its RSS stays under the global query memory limit + a fixed margin;
//! - SIGTERM stops it within 15 s, and the next `up` resumes exactly.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::up::{catch_up_exactly, count, spawn_up, wait_for};
use common::{Proc, enc, free_port, http_within, spawn_serve};
use serde_json::json;

/// `[query] timeout_secs` for the run.
const TIMEOUT_SECS: u64 = 5;
const QUERY_MEMORY_MB: u64 = 256;
const GLOBAL_MEMORY_MB: u64 = 512;
/// What the process may hold beyond the queries' global budget: the
/// pipeline, the index, caches, allocator slack.
const RSS_MARGIN_MB: u64 = 1024;

fn limits_env() -> Vec<(&'static str, String)> {
    vec![
        ("SLUICE_QUERY__TIMEOUT_SECS", TIMEOUT_SECS.to_string()),
        ("SLUICE_QUERY__MEMORY_LIMIT_MB", QUERY_MEMORY_MB.to_string()),
        (
            "SLUICE_QUERY__GLOBAL_MEMORY_LIMIT_MB",
            GLOBAL_MEMORY_MB.to_string(),
        ),
        ("SLUICE_QUERY__MAX_CONCURRENT", "4".to_string()),
        ("SLUICE_QUERY__MAX_FUNCTION_OUTPUT_MB", "4".to_string()),
    ]
}

/// One hostile request and the statuses it may end with.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    body: Option<String>,
    expect: &'static [u16],
}

fn sql_case(name: &'static str, sql: String, expect: &'static [u16]) -> Case {
    Case {
        name,
        method: "POST",
        path: "/v1/sql".to_string(),
        body: Some(json!({ "sql": sql }).to_string()),
        expect,
    }
}

fn get_case(name: &'static str, path: String, expect: &'static [u16]) -> Case {
    Case {
        name,
        method: "GET",
        path,
        body: None,
        expect,
    }
}

const TIMEOUT: &[u16] = &[408];
const TOO_BIG: &[u16] = &[422];
const BAD: &[u16] = &[400];

fn corpus() -> Vec<Case> {
    let ten_years_ago = chrono::Utc::now() - chrono::Duration::days(3650);
    let start_ns = ten_years_ago.timestamp_nanos_opt().unwrap_or(0).to_string();
    let end_ns = chrono::Utc::now()
        .timestamp_nanos_opt()
        .unwrap_or(0)
        .to_string();
    let loki = |q: &str, extra: &str| {
        format!(
            "/loki/api/v1/query_range?query={}&start={start_ns}&end={end_ns}{extra}",
            enc(q)
        )
    };
    vec![
        // Work that never ends on its own: cancelled at the timeout.
        sql_case(
            "3-way cross join",
            "SELECT count(*) FROM pod_logs a, pod_logs b, pod_logs c".into(),
            TIMEOUT,
        ),
        sql_case(
            "sum over range(10^12)",
            "SELECT sum(value) FROM range(1000000000000)".into(),
            TIMEOUT,
        ),
        sql_case(
            "top-1 over generate_series(10^12)",
            "SELECT value FROM generate_series(1, 1000000000000) ORDER BY value DESC LIMIT 1"
                .into(),
            TIMEOUT,
        ),
        sql_case(
            "nested-loop join on <>",
            "SELECT count(*) FROM pod_logs a JOIN pod_logs b ON a.message <> b.message \
             JOIN pod_logs c ON b.line_id <> c.line_id"
                .into(),
            &[408, 422],
        ),
        sql_case(
            "nested-loop join whose filter matches nothing",
            "SELECT count(*) FROM range(10000000) a JOIN range(10000000) b \
             ON a.value + b.value < 0"
                .into(),
            &[422],
        ),
        sql_case(
            "cartesian products under UNION ALL",
            "SELECT count(*) FROM (SELECT a.message FROM pod_logs a, pod_logs b, pod_logs c \
             UNION ALL SELECT a.pod FROM pod_logs a, pod_logs b, pod_logs c) t"
                .into(),
            TIMEOUT,
        ),
        sql_case(
            "EXPLAIN ANALYZE of a cross join",
            "EXPLAIN ANALYZE SELECT count(*) FROM pod_logs a, pod_logs b, pod_logs c".into(),
            TIMEOUT,
        ),
        sql_case(
            "regex over long strings for every row",
            "SELECT count(*) FROM range(1000000000) \
             WHERE regexp_like(repeat('a', 2000) || CAST(value AS VARCHAR), '(a+)+b')"
                .into(),
            TIMEOUT,
        ),
        sql_case(
            "endless recursive CTE",
            "WITH RECURSIVE t AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM t) \
             SELECT count(*) FROM t"
                .into(),
            &[408, 422],
        ),
        // Work that needs more memory than a query may have.
        sql_case(
            "ORDER BY over a cross join",
            "SELECT a.message, b.message FROM pod_logs a, pod_logs b ORDER BY 1, 2".into(),
            &[408, 422],
        ),
        sql_case(
            "a billion groups",
            "SELECT value % 1000000000 AS k, count(*) FROM range(1000000000) GROUP BY 1".into(),
            &[408, 422],
        ),
        sql_case(
            "string_agg over a cross join",
            "SELECT length(string_agg(a.message, ',')) FROM pod_logs a, pod_logs b".into(),
            &[408, 422],
        ),
        sql_case(
            "repeat 2 GB",
            "SELECT length(repeat('x', 2000000000))".into(),
            TOO_BIG,
        ),
        sql_case(
            "repeat per row",
            "SELECT max(length(repeat(message, 100000))) FROM pod_logs".into(),
            TOO_BIG,
        ),
        sql_case(
            "lpad 2 GB",
            "SELECT length(lpad('x', 2000000000))".into(),
            TOO_BIG,
        ),
        sql_case(
            "array_repeat 10^9",
            "SELECT cardinality(array_repeat('x', 1000000000))".into(),
            TOO_BIG,
        ),
        sql_case(
            "range as a list of 10^12",
            "SELECT cardinality(range(0, 1000000000000))".into(),
            TOO_BIG,
        ),
        sql_case(
            "concat repeating one value",
            "WITH t AS (SELECT repeat('x', 1000000) AS s) \
             SELECT length(concat(s, s, s, s, s, s, s, s, s, s)) FROM t"
                .into(),
            TOO_BIG,
        ),
        sql_case(
            "regexp_replace of every empty match",
            "SELECT length(regexp_replace(repeat('a', 100000), '', repeat('b', 100000), 'g'))"
                .into(),
            TOO_BIG,
        ),
        // Statements whose shape would take the planner down.
        sql_case(
            "1+1+… with 20 000 terms",
            format!("SELECT 1{}", "+1".repeat(20_000)),
            BAD,
        ),
        sql_case(
            "10 000 nested parentheses",
            format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
            BAD,
        ),
        sql_case(
            "1 000 chained UNIONs",
            vec!["SELECT 1"; 1000].join(" UNION ALL "),
            BAD,
        ),
        sql_case(
            "a 300 KB statement",
            format!("SELECT '{}'", "x".repeat(300_000)),
            BAD,
        ),
        sql_case(
            "LIKE with a 60 000-character pattern",
            format!(
                "SELECT count(*) FROM pod_logs WHERE message LIKE '%{}%'",
                "ab%".repeat(20_000)
            ),
            // Answered, or refused by the regex size limit.
            &[200, 400],
        ),
        // Log search.
        get_case(
            "search: 60 000 minus signs",
            format!("/v1/logs/search?q={}x", "-".repeat(60_000)),
            BAD,
        ),
        get_case(
            "search: everything over ten years, most hits and context",
            "/v1/logs/search?q=*&from=3650d&limit=5000&context=100".into(),
            &[200, 408],
        ),
        // The Loki API.
        get_case(
            "loki: step=1ms over ten years",
            loki(r#"count_over_time({namespace=~".+"}[1m])"#, "&step=0.001"),
            BAD,
        ),
        get_case(
            "loki: a step that rounds to zero",
            loki(
                r#"count_over_time({namespace=~".+"}[1m])"#,
                "&step=0.0000001",
            ),
            BAD,
        ),
        get_case(
            "loki: negative step",
            loki(r#"count_over_time({namespace=~".+"}[1m])"#, "&step=-5"),
            BAD,
        ),
        get_case(
            "loki: regex line filter over ten years",
            loki(r#"{namespace=~".+"} |~ "(a|aa)*(b|c)+d""#, "&limit=5000"),
            &[200, 408],
        ),
        get_case(
            "loki: rate over a ten-year range",
            loki(
                r#"sum by (pod) (rate({namespace=~".+"} |~ "e" [3650d]))"#,
                "&step=86400",
            ),
            &[200, 400, 408],
        ),
        get_case(
            "loki: an exploding regex matcher",
            loki(r#"{pod=~"((a{1000}){1000}){1000}"}"#, "&limit=10"),
            BAD,
        ),
        get_case(
            "loki: 1+1+… with 20 000 terms",
            loki(&format!("1{}", "+1".repeat(20_000)), "&step=60"),
            // Refused by the parser, or by the server for its URI length.
            &[400, 414],
        ),
        // Analytics endpoints over everything.
        get_case(
            "attribution over ten years",
            "/v1/attribution?by=endpoint&since=3650d&limit=1000".into(),
            &[200],
        ),
        get_case(
            "guardrail peaks per second over ten years",
            "/v1/guardrails/peaks?since=3650d&window=1s&limit=1000".into(),
            &[200, 400, 408, 422],
        ),
    ]
}

struct Outcome {
    name: &'static str,
    expect: &'static [u16],
    status: u16,
    elapsed: Duration,
    body: String,
}

/// Runs the corpus `parallel` at a time.
fn run_corpus(addr: &str, cases: Vec<Case>, parallel: usize) -> Vec<Outcome> {
    let queue = Arc::new(Mutex::new(cases.into_iter().collect::<VecDeque<_>>()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let (queue, results, addr) = (queue.clone(), results.clone(), addr.to_string());
            std::thread::spawn(move || {
                loop {
                    let Some(case) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
                    else {
                        break;
                    };
                    let started = Instant::now();
                    let headers: &[(&str, &str)] = if case.body.is_some() {
                        &[("Content-Type", "application/json")]
                    } else {
                        &[]
                    };
                    let answer = http_within(
                        &addr,
                        case.method,
                        &case.path,
                        headers,
                        case.body.as_deref().map(str::as_bytes),
                        Some(Duration::from_secs(TIMEOUT_SECS + 30)),
                    );
                    let (status, body) = match answer {
                        Ok(r) => (r.status, r.text()),
                        Err(e) => (0, e),
                    };
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Outcome {
                            name: case.name,
                            expect: case.expect,
                            status,
                            elapsed: started.elapsed(),
                            body,
                        });
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a corpus worker failed");
    }
    Arc::try_unwrap(results)
        .ok()
        .expect("workers are done")
        .into_inner()
        .unwrap()
}

/// What the watcher saw while the corpus ran.
#[derive(Default, Debug)]
struct Watched {
    probes: usize,
    slowest_probe: Duration,
    failed_probes: Vec<String>,
    max_rss_kib: u64,
    /// `sluice_up_rows_committed_total` (all tables), sampled each second.
    committed: Vec<f64>,
}

struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Watched>,
}

impl Watcher {
    fn start(addr: &str, pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, flag) = (addr.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut w = Watched::default();
            let mut last_metrics = Instant::now() - Duration::from_secs(10);
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                match http_within(
                    &addr,
                    "GET",
                    "/healthz",
                    &[],
                    None,
                    Some(Duration::from_secs(2)),
                ) {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => w.failed_probes.push(format!("status {}", r.status)),
                    Err(e) => w.failed_probes.push(e),
                }
                w.slowest_probe = w.slowest_probe.max(started.elapsed());
                w.probes += 1;
                w.max_rss_kib = w.max_rss_kib.max(rss_kib(pid));
                if last_metrics.elapsed() >= Duration::from_secs(1) {
                    last_metrics = Instant::now();
                    if let Some(c) = committed(&addr) {
                        w.committed.push(c);
                    }
                }
                std::thread::sleep(Duration::from_millis(100).saturating_sub(started.elapsed()));
            }
            w
        });
        Self { stop, thread }
    }

    fn finish(self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the watcher failed")
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) in a `/proc/…/stat` file.
fn stat_seconds(path: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based); here 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    stat_seconds(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// CPU seconds the query executor's threads (`sluice-query`) have used.
fn query_thread_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("sluice-query"))
        })
        .map(|t| stat_seconds(&t.path().join("stat")))
        .sum()
}

/// Cores the process keeps busy over `span`.
fn cpu_cores(pid: u32, span: Duration) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::sleep(span);
    (cpu_seconds(pid) - before) / span.as_secs_f64()
}

fn metric_sum(addr: &str, name: &str) -> Option<f64> {
    let r = http_within(
        addr,
        "GET",
        "/metrics",
        &[],
        None,
        Some(Duration::from_secs(2)),
    )
    .ok()?;
    let text = r.text();
    let mut sum = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(name)
            && (rest.starts_with('{') || rest.starts_with(' '))
        {
            let v: f64 = rest.rsplit(' ').next()?.parse().ok()?;
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

fn committed(addr: &str) -> Option<f64> {
    metric_sum(addr, "sluice_up_rows_committed_total")
}

/// The corpus with the watcher around it; the assertions every run shares.
fn hostile_run(addr: &str, pid: u32, expect_ingestion: bool) {
    let idle_cores = cpu_cores(pid, Duration::from_secs(3));
    let watcher = Watcher::start(addr, pid);
    let started = Instant::now();
    let outcomes = run_corpus(addr, corpus(), 4);
    let corpus_time = started.elapsed();
    let corpus_end = Instant::now();
    // The work stopped, not just the answers: the query threads (named
    // sluice-query) fall idle. Polled in half-second windows from the end
    // of the corpus; a query that kept running would keep them busy.
    let idle_after = loop {
        let before = query_thread_seconds(pid);
        std::thread::sleep(Duration::from_millis(500));
        let cores = (query_thread_seconds(pid) - before) / 0.5;
        if cores < 0.05 {
            break corpus_end.elapsed();
        }
        assert!(
            corpus_end.elapsed() < Duration::from_secs(15),
            "the query threads still use {cores:.2} cores 15 s after the corpus"
        );
    };
    // Watch a little past the corpus: commits continue.
    std::thread::sleep(Duration::from_secs(2));
    let watched = watcher.finish();

    let limit = Duration::from_secs(TIMEOUT_SECS + 2);
    for o in &outcomes {
        eprintln!(
            "  {:>5} ms  {}  {}",
            o.elapsed.as_millis(),
            o.status,
            o.name
        );
    }
    for o in &outcomes {
        assert!(
            o.expect.contains(&o.status),
            "{}: expected {:?}, got {}: {}",
            o.name,
            o.expect,
            o.status,
            o.body.chars().take(300).collect::<String>()
        );
        assert!(
            o.elapsed <= limit,
            "{} took {:?}, over its limit + 2 s ({limit:?}): {}",
            o.name,
            o.elapsed,
            o.body.chars().take(200).collect::<String>()
        );
    }
    assert!(outcomes.len() >= 25, "only {} queries ran", outcomes.len());
    eprintln!(
        "corpus: {} queries in {corpus_time:?}; {} health probes, slowest {:?}; max RSS {} MiB",
        outcomes.len(),
        watched.probes,
        watched.slowest_probe,
        watched.max_rss_kib >> 10
    );
    assert!(
        watched.failed_probes.is_empty(),
        "/healthz failed: {:?}",
        watched.failed_probes
    );
    assert!(
        watched.slowest_probe < Duration::from_millis(500),
        "a /healthz probe took {:?}",
        watched.slowest_probe
    );
    assert!(watched.probes as f64 >= corpus_time.as_secs_f64() * 5.0);
    let rss_limit = (GLOBAL_MEMORY_MB + RSS_MARGIN_MB) << 10;
    assert!(
        watched.max_rss_kib < rss_limit,
        "RSS reached {} MiB, over the global query limit + margin ({} MiB)",
        watched.max_rss_kib >> 10,
        rss_limit >> 10
    );
    if expect_ingestion {
        let (first, last) = (
            watched.committed.first().copied().unwrap_or(0.0),
            watched.committed.last().copied().unwrap_or(0.0),
        );
        eprintln!("rows committed during the corpus: {}", last - first);
        assert!(
            last > first,
            "no rows were committed while the corpus ran: {:?}",
            watched.committed
        );
        // Not only at the edges: commits go on through the middle too.
        let mid = watched.committed.len() / 2;
        assert!(
            watched.committed[mid] > first && last > watched.committed[mid],
            "commits stalled during the corpus: {:?}",
            watched.committed
        );
    }

    let after_cores = cpu_cores(pid, Duration::from_secs(3));
    eprintln!(
        "CPU: {idle_cores:.2} cores before the corpus, {after_cores:.2} after; \
         the query threads idle {idle_after:?} after the last answer"
    );
    assert!(
        after_cores < idle_cores + 0.9,
        "the process still uses {after_cores:.2} cores after the corpus (idle: {idle_cores:.2})"
    );
    assert_eq!(metric_sum(addr, "sluice_query_running"), Some(0.0));
}

fn terminate_within(proc: &mut Proc, limit: Duration) {
    let started = Instant::now();
    let pid = proc.0.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            eprintln!("exited {status} {:?} after SIGTERM", started.elapsed());
            return;
        }
        assert!(
            started.elapsed() < limit,
            "still running {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hostile_queries_cannot_stall_up_or_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    let env = limits_env();

    // 1. `up --demo`, with enough rows that a cross join never ends.
    let mut up = spawn_up(&data_dir, &addr, true, &env);
    let pid = up.0.id();
    wait_for("2 000 pod log lines", Duration::from_secs(120), || {
        count(&addr, "SELECT count(*) AS n FROM pod_logs") >= 2000
    });
    hostile_run(&addr, pid, true);

    // 2. SIGTERM stops it whatever ran; the next `up` resumes exactly.
    terminate_within(&mut up, Duration::from_secs(15));
    let mut again = catch_up_exactly(&data_dir, &addr);
    terminate_within(&mut again, Duration::from_secs(15));

    // 3. The same corpus against `sluice serve` on the same tables.
    let env: Vec<(&str, String)> = env;
    let (mut serve, serve_addr) = spawn_serve(&data_dir, &[], &env);
    let pid = serve.0.id();
    hostile_run(&serve_addr, pid, false);
    terminate_within(&mut serve, Duration::from_secs(15));
}

/// One hostile request that must be refused with `status`.
fn refused(
    addr: &str,
    name: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    status: &[u16],
) {
    let r = http_within(
        addr,
        method,
        path,
        headers,
        body,
        Some(Duration::from_secs(30)),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        status.contains(&r.status),
        "{name}: expected {status:?}, got {}: {}",
        r.status,
        r.text().chars().take(300).collect::<String>()
    );
}

/// Requests shaped to crash, confuse or exhaust the API; each gets its
/// refusal and the process stays up.
fn hostile_api_requests(addr: &str) {
    let json = ("Content-Type", "application/json");
    let sql = |q: &str| json!({ "sql": q }).to_string().into_bytes();
    // JSON nested 10 000 deep.
    let deep_json = format!("{{\"sql\": {}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    refused(
        addr,
        "deeply nested JSON",
        "POST",
        "/v1/sql",
        &[json],
        Some(deep_json.as_bytes()),
        &[400],
    );
    // Browser-made requests.
    refused(
        addr,
        "DNS rebinding",
        "POST",
        "/v1/sql",
        &[json, ("Host", "evil.example")],
        Some(&sql("SELECT 1")),
        &[421],
    );
    refused(
        addr,
        "another site's page",
        "POST",
        "/v1/sql",
        &[json, ("Origin", "https://evil.example")],
        Some(&sql("SELECT 1")),
        &[403],
    );
    refused(
        addr,
        "a text/plain form post",
        "POST",
        "/v1/sql",
        &[("Content-Type", "text/plain")],
        Some(&sql("SELECT 1")),
        &[415],
    );
    refused(
        addr,
        "an <img> of another site",
        "GET",
        &format!("/v1/logs/search?q={}x", "-".repeat(60_000)),
        &[
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Mode", "no-cors"),
        ],
        None,
        &[403],
    );
    // Dates at the limits.
    for path in [
        "/v1/attribution?by=user&from=0000-01-01T00:00:00Z&to=9999-12-31T23:59:59Z",
        "/v1/attribution?by=user&to=0000-01-01T00:00:00Z",
        "/v1/logs/search?q=x&from=0000-01-01T00:00:00Z&to=9999-12-31T23:59:59Z",
        "/v1/guardrails/peaks?from=0000-01-01T00:00:00Z&to=0000-01-02T00:00:00Z",
        "/loki/api/v1/query_range?query=%7Bpod%3D%22x%22%7D&start=-9223372036854775808&end=9223372036854775807",
        "/loki/api/v1/query?query=count_over_time(%7Bpod%3D%22x%22%7D%5B1m%5D)&time=9223372036854775807",
        "/v1/attribution?by=user&since=99999999999999999w",
    ] {
        refused(addr, path, "GET", path, &[], None, &[200, 400]);
    }
    // Deep nesting in every query language.
    refused(
        addr,
        "search NOT×10k",
        "GET",
        &format!("/v1/logs/search?q={}x", "NOT%20".repeat(10_000)),
        &[],
        None,
        &[400],
    );
    refused(
        addr,
        "search (×10k",
        "GET",
        &format!(
            "/v1/logs/search?q={}x{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        ),
        &[],
        None,
        &[400],
    );
    refused(
        addr,
        "LogQL -×60k",
        "GET",
        &format!("/loki/api/v1/query?query={}1", "-".repeat(60_000)),
        &[],
        None,
        &[400],
    );
    refused(
        addr,
        "SQL -×60k",
        "POST",
        "/v1/sql",
        &[json],
        Some(&sql(&format!("SELECT {}1", "-".repeat(60_000)))),
        &[400],
    );
    // Slow headers: the connection is cut after the header deadline.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a client that never ends its headers was held {:?}",
        started.elapsed()
    );
    assert_eq!(common::http_get(addr, "/healthz").0, 200);
}

/// Bodies shaped to lose records or exhaust the intake.
fn hostile_intake_requests(addr: &str) {
    let json = ("Content-Type", "application/json");
    let event = |id: &str, attr: usize| {
        json!({
            "event_id": id, "occurred_at": "2026-01-01T00:00:00Z", "service": "iom-core",
            "action": "sql.queries.submit", "success": true, "user_id": "hostile-probe",
            "method": "POST", "path": "/api/v1/sql/queries", "status_code": 200,
            "latency_ms": 1.0, "attributes": {"blob": "x".repeat(attr)}
        })
    };
    // A 5 MB attribute: refused by name, not accepted and lost.
    let r = http_within(
        addr,
        "POST",
        "/v1/events",
        &[json],
        Some(event("big-1", 5_000_000).to_string().as_bytes()),
        Some(Duration::from_secs(30)),
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let j = r.json();
    assert_eq!(j["rejected"][0]["index"], 0, "{j}");
    assert!(
        j["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("intake_max_record_bytes"),
        "{j}"
    );
    // Beside a good record: the good one is taken, the big one named.
    let both = json!([event("ok-1", 10), event("big-2", 1_000_000)]).to_string();
    let r = http_within(
        addr,
        "POST",
        "/v1/events",
        &[json],
        Some(both.as_bytes()),
        Some(Duration::from_secs(30)),
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["accepted"], 1);
    assert_eq!(r.json()["rejected"][0]["index"], 1);
    // A small gzip body of millions of `{}`.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    use std::io::Write;
    enc.write_all(b"[").unwrap();
    for _ in 0..2_000_000 {
        enc.write_all(b"{},").unwrap();
    }
    enc.write_all(b"{}]").unwrap();
    let gz = enc.finish().unwrap();
    assert!(gz.len() < 100_000, "{}", gz.len());
    refused(
        addr,
        "gzip of millions of {}",
        "POST",
        "/v1/events",
        &[json, ("Content-Encoding", "gzip")],
        Some(&gz),
        &[413],
    );
    refused(
        addr,
        "intake text/plain",
        "POST",
        "/v1/events",
        &[("Content-Type", "text/plain")],
        Some(event("tp", 1).to_string().as_bytes()),
        &[415],
    );
    assert_eq!(common::http_get(addr, "/healthz").0, 200);
}

#[test]
fn hostile_requests_are_refused_and_the_process_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    let env = vec![("SLUICE_HTTP__HEADER_TIMEOUT_SECS", "2".to_string())];
    let mut up = spawn_up(&data_dir, &addr, true, &env);
    hostile_api_requests(&addr);
    hostile_intake_requests(&addr);
    // Still ingesting and answering after all of it.
    let before = committed(&addr).unwrap_or(0.0);
    wait_for("more rows to be committed", Duration::from_secs(30), || {
        committed(&addr).unwrap_or(0.0) > before
    });
    terminate_within(&mut up, Duration::from_secs(15));

    let (mut serve, serve_addr) = spawn_serve(&data_dir, &[], &env);
    hostile_api_requests(&serve_addr);
    terminate_within(&mut serve, Duration::from_secs(15));
}
