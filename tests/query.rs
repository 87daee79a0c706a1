//! `sluice serve` end to end, on a generated cluster imported into real
//! Iceberg tables (embedded SQLite catalog, local warehouse): attribution,
//! peaks and cap simulation equal what DuckDB computes independently over
//! the same Parquet data files (the table's current snapshot, listed by
//! PyIceberg); the SQL endpoint answers in JSON, CSV and Arrow, refuses
//! writes and enforces its limits with clear 4xx errors; new snapshots and
//! new tables are visible without a restart; tokens and roles are enforced;
//! the CLI gives the same answers embedded and through a server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sluice::generator::{self, GenConfig, Manifest};

mod common;
use common::{HttpResponse, enc, http, http_get, ok, sluice, sluice_with, spawn_serve};

const UNTIL: &str = "2026-11-21T00:00:00Z";
const DAYS: u32 = 3;
const EVENTS: u64 = 60_000;

struct Fixture {
    _tmp: tempfile::TempDir,
    gen_dir: PathBuf,
    data_dir: PathBuf,
    manifest: Manifest,
}

fn until() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(UNTIL)
        .unwrap()
        .with_timezone(&Utc)
}

fn window_start() -> DateTime<Utc> {
    until() - Duration::days(DAYS as i64)
}

fn generate(out: &Path, seed: u64, events: u64) -> Manifest {
    generator::generate(
        &GenConfig {
            out: out.to_path_buf(),
            pods: 4,
            events,
            days: DAYS,
            until: until(),
            seed,
            cluster: "qt".into(),
            lines_per_pod_day: 300,
            rotate_bytes: 256 * 1024,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap()
}

/// One generated cluster, imported once, shared by the read-only tests.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let gen_dir = tmp.path().join("gen");
        let data_dir = tmp.path().join("data");
        let manifest = generate(&gen_dir, 5, EVENTS);
        ok(sluice(
            &data_dir,
            &["import", gen_dir.to_str().unwrap(), "--format", "json"],
        ));
        Fixture {
            _tmp: tmp,
            gen_dir,
            data_dir,
            manifest,
        }
    })
}

/// Answers of the independent DuckDB implementation, one per request.
fn duckdb(data_dir: &Path, requests: &[Value]) -> Vec<Value> {
    let file = data_dir.join(format!("duckdb-requests-{}.json", uuid_ish()));
    std::fs::write(&file, serde_json::to_vec(requests).unwrap()).unwrap();
    let out = Command::new(sluice_testkit::python())
        .arg(sluice_testkit::source_path("tests/interop/query_check.py"))
        .arg(data_dir)
        .arg(&file)
        .output()
        .expect("run the DuckDB checker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers.len(), requests.len());
    answers
}

fn uuid_ish() -> String {
    format!(
        "{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn micros(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .timestamp_micros()
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Floats agree to DataFusion's interpolation precision (1e-6 of the gap
/// between neighbours) and printing.
fn close(a: &Value, b: &Value, what: &str) {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => assert!(
            (x - y).abs() <= 1e-5 * x.abs().max(y.abs()).max(1.0),
            "{what}: sluice {x} vs duckdb {y}"
        ),
        _ => assert_eq!(a, b, "{what}"),
    }
}

fn get(addr: &str, path: &str) -> HttpResponse {
    http(addr, "GET", path, &[], None)
}

fn post_json(addr: &str, path: &str, body: &Value) -> HttpResponse {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

fn sql(addr: &str, q: &str) -> HttpResponse {
    post_json(addr, "/v1/sql", &json!({ "sql": q }))
}

fn expect_error(r: &HttpResponse, status: u16, kind: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], kind, "{body}");
    let detail = body["detail"].as_str().unwrap().to_string();
    assert!(!detail.is_empty());
    detail
}

fn compare_attribution(sluice: &Value, duck: &Value, what: &str) {
    assert_eq!(sluice["total"], duck["total"], "{what}: total");
    let (ours, theirs) = (
        sluice["rows"].as_array().unwrap(),
        duck["rows"].as_array().unwrap(),
    );
    assert_eq!(ours.len(), theirs.len(), "{what}: rows");
    assert!(!ours.is_empty(), "{what}: no rows");
    for (o, t) in ours.iter().zip(theirs) {
        for key in ["principal", "requests", "success", "failed"] {
            assert_eq!(o[key], t[key], "{what}: {key} of {o} vs {t}");
        }
        assert_eq!(
            micros(o["last_seen"].as_str().unwrap()),
            t["last_seen_us"].as_i64().unwrap(),
            "{what}: last_seen of {o}"
        );
        for key in [
            "pct_of_total",
            "p50_latency_ms",
            "p90_latency_ms",
            "p99_latency_ms",
        ] {
            close(
                &o[key],
                &t[key],
                &format!("{what}: {key} of {}", o["principal"]),
            );
        }
    }
}

#[test]
fn attribution_equals_duckdb() {
    let f = fixture();
    let (_server, addr) = spawn_serve(&f.data_dir, &[], &[]);
    let (from, to) = (window_start(), until());
    let last_day = to - Duration::hours(24);
    let mut cases = Vec::new();
    for by in [
        "user",
        "team",
        "domain",
        "endpoint",
        "caller_type",
        "service",
    ] {
        cases.push((by, from, to, json!({}), 50));
    }
    cases.push(("user", last_day, to, json!({"service": "iom-cluster"}), 20));
    cases.push(("team", from, to, json!({"caller_type": "external"}), 1000));
    cases.push((
        "endpoint",
        last_day,
        to,
        json!({"service": "iom-cluster", "caller_type": "internal"}),
        10,
    ));

    let mut requests = Vec::new();
    let mut answers = Vec::new();
    for (by, from, to, filters, limit) in &cases {
        let mut path = format!(
            "/v1/attribution?by={by}&from={}&to={}&limit={limit}",
            enc(&rfc(*from)),
            enc(&rfc(*to))
        );
        for (k, v) in filters.as_object().unwrap() {
            path.push_str(&format!("&{k}={}", enc(v.as_str().unwrap())));
        }
        let r = get(&addr, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        answers.push(r.json());
        let mut req = json!({
            "kind": "attribution", "by": by, "limit": limit,
            "from_us": from.timestamp_micros(), "to_us": to.timestamp_micros(),
            "service": null, "action": null, "endpoint": null, "caller_type": null,
        });
        for (k, v) in filters.as_object().unwrap() {
            req[k] = v.clone();
        }
        requests.push(req);
    }
    let duck = duckdb(&f.data_dir, &requests);
    for (i, (ours, theirs)) in answers.iter().zip(&duck).enumerate() {
        compare_attribution(ours, theirs, &format!("case {i} {:?}", cases[i].0));
    }
    // The whole window holds every event.
    assert_eq!(answers[0]["total"], EVENTS);
    // The SQL shown is the SQL that ran, its values bound, not spliced.
    let shown = &answers[6];
    assert!(
        shown["sql"].as_str().unwrap().contains("service = $3"),
        "{shown}"
    );
    assert_eq!(shown["params"][2], "iom-cluster");

    // Without from/to the window is the last 24 h before now: the fixture's
    // history is older, so nothing.
    let r = get(&addr, "/v1/attribution?by=team");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["total"], 0);
}

#[test]
fn peaks_and_simulation_equal_duckdb_and_find_the_spike() {
    let f = fixture();
    let (_server, addr) = spawn_serve(&f.data_dir, &[], &[]);
    let (from, to) = (window_start(), until());
    let range = format!("from={}&to={}", enc(&rfc(from)), enc(&rfc(to)));
    let spike = &f.manifest.spikes[0];

    let cases = [
        ("user", "1m", 60),
        ("team", "5m", 300),
        ("endpoint", "1h", 3600),
    ];
    let mut answers = Vec::new();
    let mut requests = Vec::new();
    for (by, window, secs) in cases {
        let r = get(
            &addr,
            &format!("/v1/guardrails/peaks?by={by}&window={window}&{range}&limit=40"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        answers.push(r.json());
        requests.push(json!({
            "kind": "peaks", "by": by, "window_secs": secs, "limit": 40, "service": null,
            "from_us": from.timestamp_micros(), "to_us": to.timestamp_micros(),
        }));
    }
    let top_user = answers[0]["rows"][0]["principal"]
        .as_str()
        .unwrap()
        .to_string();
    let top_peak = answers[0]["rows"][0]["peak"].as_u64().unwrap();
    assert_eq!(
        top_user, spike.principal,
        "the injected spike tops the peaks"
    );
    assert_eq!(
        answers[0]["rows"][0]["recommended_cap"],
        (top_peak as f64 * 1.5).ceil() as u64,
        "default headroom 1.5"
    );
    let second_peak = answers[0]["rows"][1]["peak"].as_u64().unwrap();

    // Monitor mode: the spike principal capped just below its peak, and a
    // default cap between the second peak and the top one.
    let caps = json!([
        {"principal": spike.principal, "limit": top_peak - 1},
        {"limit": second_peak.saturating_sub(2).max(1)},
        {"principal": "nobody-at-all", "limit": 1},
    ]);
    let r = post_json(
        &addr,
        "/v1/guardrails/simulate",
        &json!({"by": "user", "window": "1m", "from": rfc(from), "to": rfc(to), "caps": caps}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let sim = r.json();
    requests.push(json!({
        "kind": "simulate", "by": "user", "window_secs": 60, "service": null,
        "from_us": from.timestamp_micros(), "to_us": to.timestamp_micros(), "caps": caps,
    }));
    let duck = duckdb(&f.data_dir, &requests);

    for (i, (ours, theirs)) in answers.iter().zip(&duck).enumerate() {
        let (o, t) = (ours["rows"].as_array().unwrap(), theirs.as_array().unwrap());
        assert_eq!(o.len(), t.len(), "peaks case {i}");
        for (a, b) in o.iter().zip(t) {
            for key in ["principal", "peak", "windows", "requests"] {
                assert_eq!(a[key], b[key], "peaks case {i}: {key} of {a} vs {b}");
            }
            assert_eq!(
                micros(a["peak_at"].as_str().unwrap()),
                b["peak_at_us"].as_i64().unwrap(),
                "{a}"
            );
            for key in ["p99", "p95", "mean"] {
                close(
                    &a[key],
                    &b[key],
                    &format!("peaks case {i}: {key} of {}", a["principal"]),
                );
            }
        }
    }
    let theirs = &duck[3];
    let ours = sim["caps"].as_array().unwrap();
    assert_eq!(ours.len(), 3);
    for (i, (o, t)) in ours.iter().zip(theirs.as_array().unwrap()).enumerate() {
        assert_eq!(o["breach_windows"], t["breach_windows"], "cap {i}");
        assert_eq!(o["limited_requests"], t["limited_requests"], "cap {i}");
        let (op, tp) = (
            o["principals"].as_array().unwrap(),
            t["principals"].as_array().unwrap(),
        );
        assert_eq!(op.len(), tp.len(), "cap {i}");
        for (a, b) in op.iter().zip(tp) {
            assert_eq!(a["principal"], b["principal"], "cap {i}");
            assert_eq!(a["limited_requests"], b["limited_requests"], "cap {i}");
            assert_eq!(
                micros(a["first_breach"].as_str().unwrap()),
                b["first_breach_us"].as_i64().unwrap()
            );
            assert_eq!(
                micros(a["last_breach"].as_str().unwrap()),
                b["last_breach_us"].as_i64().unwrap()
            );
        }
    }
    // The spike breaches its own cap exactly in its peak minute(s).
    assert!(ours[0]["breach_windows"].as_u64().unwrap() >= 1);
    assert_eq!(
        ours[0]["principals"][0]["principal"],
        spike.principal.as_str()
    );
    // The default cap covers everyone else (not the spike principal).
    assert!(
        ours[1]["principals"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["principal"] != spike.principal.as_str())
    );
    assert_eq!(
        ours[2]["breach_windows"], 0,
        "a principal with no requests breaches nothing"
    );

    // Export for Envoy: the recommended caps, one descriptor per principal.
    let r = get(
        &addr,
        &format!("/v1/guardrails/export?format=envoy&by=user&window=1m&{range}&domain=gw"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/yaml")
    );
    let text = r.text();
    assert!(text.starts_with("# Envoy rate-limit"), "{text}");
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(doc["domain"], "gw");
    let spike_rule = doc["descriptors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["value"] == spike.principal.as_str())
        .expect("the spike principal has a descriptor");
    assert_eq!(spike_rule["key"], "user_id");
    assert_eq!(spike_rule["rate_limit"]["unit"], "minute");
    assert_eq!(
        spike_rule["rate_limit"]["requests_per_unit"],
        (top_peak as f64 * 1.5).ceil() as u64
    );
    let r = get(&addr, &format!("/v1/guardrails/export?window=5m&{range}"));
    assert!(expect_error(&r, 400, "bad_request").contains("window=1m or 1h"));
}

#[test]
fn service_health_reports_the_oom_kills() {
    let f = fixture();
    let (_server, addr) = spawn_serve(&f.data_dir, &[], &[]);
    // Ground truth from the generated lifecycle file itself.
    let text = std::fs::read_to_string(f.gen_dir.join("k8s-events.ndjson")).unwrap();
    let mut namespace = String::new();
    let mut ooms = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let name = v["name"].as_str().unwrap_or("");
        if (name == "iom-cluster" || name.starts_with("iom-cluster-")) && v["reason"] == "OOMKilled"
        {
            namespace = v["namespace"].as_str().unwrap().to_string();
            ooms += 1;
        }
    }
    assert!(ooms >= 1, "the generator's troubled service has OOM kills");
    let path = format!(
        "/v1/services/{namespace}/iom-cluster/health?from={}&to={}",
        enc(&rfc(window_start() - Duration::days(30))),
        enc(&rfc(until() + Duration::days(1)))
    );
    let r = get(&addr, &path);
    assert_eq!(r.status, 200, "{}", r.text());
    let h = r.json();
    assert_eq!(h["termination_reasons"]["OOMKilled"], ooms, "{h}");
    assert!(h["restarts"].as_u64().unwrap() >= ooms);
    let last = h["last_terminations"][0]["reason"].as_str().unwrap();
    assert!(["OOMKilled", "Error", "Completed"].contains(&last), "{h}");
    let newest = h["recent_events"][0]["occurred_at"].as_str().unwrap();
    let oldest = h["recent_events"].as_array().unwrap().last().unwrap()["occurred_at"]
        .as_str()
        .unwrap();
    assert!(micros(newest) >= micros(oldest), "newest first");
    let r = get(
        &addr,
        &format!("/v1/services/{namespace}/no-such-service/health?since=7d"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["restarts"], 0);
    expect_error(
        &get(&addr, "/v1/services/a%25b/x/health"),
        400,
        "bad_request",
    );
}

#[test]
fn sql_answers_in_three_formats_and_refuses_writes() {
    let f = fixture();
    let (_server, addr) = spawn_serve(&f.data_dir, &[], &[]);
    let q = "SELECT service, count(*) AS n FROM platform_event_logs GROUP BY service ORDER BY n DESC, service";
    let r = sql(&addr, q);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(
        body["columns"][0],
        json!({"name": "service", "type": "Utf8"})
    );
    assert_eq!(body["columns"][1]["name"], "n");
    let rows = body["rows"].as_array().unwrap();
    let total: u64 = rows.iter().map(|r| r["n"].as_u64().unwrap()).sum();
    assert_eq!(total, EVENTS);
    assert_eq!(body["row_count"], rows.len());
    assert_eq!(
        body["rows_scanned"], EVENTS,
        "every row read once, nothing more"
    );

    // Qualified names resolve to the same table.
    let r = sql(
        &addr,
        "SELECT count(*) AS n FROM platform.platform_event_logs",
    );
    assert_eq!(r.json()["rows"][0]["n"], EVENTS);

    // CSV by Accept, and by ?format=.
    let csv = http(
        &addr,
        "POST",
        "/v1/sql",
        &[("Accept", "text/csv"), ("Content-Type", "application/json")],
        Some(json!({ "sql": q }).to_string().as_bytes()),
    );
    assert_eq!(csv.status, 200);
    assert_eq!(
        csv.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    let text = csv.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("service,n"));
    assert_eq!(lines.count(), rows.len());

    // Arrow IPC stream, read back with the Arrow reader.
    let arrow = http(
        &addr,
        "POST",
        "/v1/sql?format=arrow",
        &[],
        Some(json!({ "sql": q }).to_string().as_bytes()),
    );
    assert_eq!(arrow.status, 200);
    assert_eq!(
        arrow.header("content-type").as_deref(),
        Some("application/vnd.apache.arrow.stream")
    );
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow.body), None).unwrap();
    let mut n = 0;
    for batch in reader {
        let batch = batch.unwrap();
        assert_eq!(batch.schema().field(0).name(), "service");
        n += batch.num_rows();
    }
    assert_eq!(n, rows.len());

    // Read-only, by DataFusion's statement checks.
    for statement in [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO platform_event_logs (event_id) VALUES ('x')",
        "DROP TABLE platform_event_logs",
        "COPY (SELECT 1) TO '/tmp/sluice-copy.csv'",
        "SET datafusion.execution.batch_size = 1",
        "CREATE VIEW v AS SELECT 1",
    ] {
        let detail = expect_error(&sql(&addr, statement), 400, "refused");
        assert!(detail.contains("read-only"), "{statement}: {detail}");
    }
    assert!(!Path::new("/tmp/sluice-copy.csv").exists());
    // Unknown columns and tables, broken SQL, bad bodies: 400 with the reason.
    let detail = expect_error(
        &sql(&addr, "SELECT no_such_column FROM platform_event_logs"),
        400,
        "sql",
    );
    assert!(detail.contains("no_such_column"), "{detail}");
    expect_error(&sql(&addr, "SELECT * FROM no_such_table"), 400, "sql");
    expect_error(&sql(&addr, "SELEC 1"), 400, "sql");
    expect_error(
        &post_json(&addr, "/v1/sql", &json!({"query": "SELECT 1"})),
        400,
        "bad_request",
    );
    expect_error(
        &http(&addr, "POST", "/v1/sql", &[], Some(b"not json")),
        400,
        "bad_request",
    );
    expect_error(&sql(&addr, "  "), 400, "bad_request");
    expect_error(
        &http(
            &addr,
            "POST",
            "/v1/sql?format=xml",
            &[],
            Some(b"{\"sql\":\"SELECT 1\"}"),
        ),
        400,
        "bad_request",
    );
    expect_error(&get(&addr, "/v1/nothing-here"), 404, "not_found");

    // Bad parameters of the analytics endpoints.
    for path in [
        "/v1/attribution?by=nope",
        "/v1/attribution?from=yesterday",
        "/v1/attribution?limit=0",
        "/v1/attribution?colour=blue",
        "/v1/attribution?caller_type=alien",
        "/v1/attribution?from=2026-11-21T00:00:00Z&to=2026-11-20T00:00:00Z",
        "/v1/guardrails/peaks?window=2m",
        "/v1/guardrails/peaks?by=caller_type",
    ] {
        expect_error(&get(&addr, path), 400, "bad_request");
    }
    for body in [
        json!({"caps": []}),
        json!({"caps": [{"limit": 5}, {"limit": 6}]}),
        json!({"caps": [{"limit": -1}]}),
        json!({"caps": [{"limit": 5}], "window": "3m"}),
    ] {
        expect_error(
            &post_json(&addr, "/v1/guardrails/simulate", &body),
            400,
            "bad_request",
        );
    }

    // Metrics count what happened.
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("sluice_query_requests_total{endpoint=\"sql\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_query_errors_total{endpoint=\"sql\",kind=\"refused\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_query_rows_scanned_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_query_duration_seconds_bucket"),
        "{metrics}"
    );
    let openapi = get(&addr, "/openapi.json").json();
    for route in [
        "/v1/sql",
        "/v1/attribution",
        "/v1/attribution/series",
        "/v1/guardrails/peaks",
        "/v1/guardrails/simulate",
        "/v1/guardrails/export",
        "/v1/services/{namespace}/{name}/health",
        "/v1/logs/search",
        "/v1/logs/restarts",
        "/v1/logs/tail",
        "/v1/tables",
        "/loki/api/v1/query_range",
        "/loki/api/v1/query",
        "/loki/api/v1/labels",
        "/loki/api/v1/label/{name}/values",
        "/loki/api/v1/series",
        "/loki/api/v1/tail",
        "/loki/api/v1/index/stats",
        "/loki/api/v1/index/volume",
        "/loki/api/v1/status/buildinfo",
        "/ready",
        "/v1/alerts",
        "/api/v1/rules",
        "/api/v1/alerts",
    ] {
        assert!(openapi["paths"][route].is_object(), "{route} documented");
    }
}

/// EXPLAIN's physical plan of `query`.
fn physical_plan(addr: &str, query: &str) -> String {
    let r = sql(addr, &format!("EXPLAIN {query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let plan = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["plan_type"] == "physical_plan")
        .expect("a physical plan")["plan"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(plan.contains("DataSourceExec"), "{plan}");
    plan
}

/// Data files a plan reads, from EXPLAIN's DataSourceExec lines.
fn planned_files(addr: &str, query: &str) -> usize {
    physical_plan(addr, query).matches(".parquet").count()
}

#[test]
fn time_filters_prune_files_and_scans_run_in_parallel() {
    let f = fixture();
    let (_server, addr) = spawn_serve(&f.data_dir, &[], &[]);
    let files = duckdb(
        &f.data_dir,
        &[json!({"kind": "files", "table": "platform_event_logs"})],
    )[0]["files"]
        .as_u64()
        .unwrap() as usize;
    let all = planned_files(&addr, "SELECT count(*) FROM platform_event_logs");
    assert_eq!(all, files, "without a filter every data file is read");
    let last_day = rfc(until() - Duration::hours(12));
    let pruned = planned_files(
        &addr,
        &format!(
            "SELECT count(*) FROM platform_event_logs WHERE occurred_at >= TIMESTAMP '{last_day}'"
        ),
    );
    assert!(
        pruned >= 1 && pruned < all,
        "a time filter prunes day partitions: {pruned} of {all}"
    );
    // The pruned answer is still exact.
    let r = sql(
        &addr,
        &format!(
            "SELECT count(*) AS n FROM platform_event_logs WHERE occurred_at >= TIMESTAMP '{last_day}'"
        ),
    );
    let ours = r.json()["rows"][0]["n"].as_u64().unwrap();
    let theirs = duckdb(
        &f.data_dir,
        &[json!({"kind": "count", "table": "platform_event_logs", "from_us": micros(&last_day), "to_us": null})],
    )[0]["rows"]
        .as_u64()
        .unwrap();
    assert_eq!(ours, theirs);

    // Bounds on the time column are answered from the day partitions: a
    // range of whole days reads its files unfiltered, a ragged one filters
    // the rows of its end days only; the answers stay exact either way.
    let day = |n: i64| window_start() + Duration::days(n);
    let ragged_from = day(1) + Duration::minutes(337);
    let ragged_to = until() - Duration::minutes(433);
    for (from, to, op_from, op_to, filters) in [
        (day(1), until(), ">=", "<", 0),
        (ragged_from, ragged_to, ">=", "<", 1),
        (ragged_from, ragged_to, ">", "<=", 1),
        // Rows at exactly midnight would fail `>`: day 1 is filtered.
        (day(1), day(2), ">", "<", 1),
    ] {
        let range = format!(
            "occurred_at {op_from} TIMESTAMP '{}' AND occurred_at {op_to} TIMESTAMP '{}'",
            rfc(from),
            rfc(to)
        );
        let count = format!("SELECT count(*) AS n FROM platform_event_logs WHERE {range}");
        let plan = physical_plan(&addr, &count);
        assert_eq!(
            plan.matches("FilterExec").count(),
            filters,
            "{range}: row filters in {plan}"
        );
        let ours = sql(&addr, &count).json()["rows"][0]["n"].as_u64().unwrap();
        // DuckDB counts [from_us, to_us); a strict or inclusive bound is
        // one microsecond over.
        let from_us = from.timestamp_micros() + i64::from(op_from == ">");
        let to_us = to.timestamp_micros() + i64::from(op_to == "<=");
        let theirs = duckdb(
            &f.data_dir,
            &[json!({"kind": "count", "table": "platform_event_logs", "from_us": from_us, "to_us": to_us})],
        )[0]["rows"]
            .as_u64()
            .unwrap();
        assert_eq!(ours, theirs, "{range}");
        assert!(ours > 0, "{range} holds events");
        // Columns other than the filtered one, with a limit.
        let r = sql(
            &addr,
            &format!("SELECT user_id, latency_ms FROM platform_event_logs WHERE {range} LIMIT 7"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["rows"].as_array().unwrap().len(), 7, "{range}");
    }

    let r = sql(&addr, "EXPLAIN SELECT count(*) FROM platform_event_logs");
    let plan = r.text();
    assert!(
        !plan.contains("IcebergTableScan"),
        "sluice's own parallel scan, not the single-stream one: {plan}"
    );
}

#[test]
fn limits_answer_with_clear_errors() {
    let f = fixture();
    let (_a, capped) = spawn_serve(&f.data_dir, &[], &[("SLUICE_QUERY__ROW_CAP", "100".into())]);
    let detail = expect_error(
        &sql(&capped, "SELECT * FROM platform_event_logs"),
        422,
        "row_cap",
    );
    assert!(detail.contains("100 rows"), "{detail}");
    assert_eq!(
        sql(&capped, "SELECT * FROM platform_event_logs LIMIT 100").status,
        200
    );

    let (_b, slow) = spawn_serve(
        &f.data_dir,
        &[],
        &[("SLUICE_QUERY__TIMEOUT_SECS", "1".into())],
    );
    let started = std::time::Instant::now();
    let r = sql(
        &slow,
        "SELECT count(*) FROM platform_event_logs a, platform_event_logs b WHERE a.latency_ms > b.latency_ms",
    );
    expect_error(&r, 408, "timeout");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "cancelled, not run to the end"
    );
    // The server is still fine afterwards.
    assert_eq!(
        sql(&slow, "SELECT count(*) FROM platform_events").status,
        200
    );

    let (_c, small) = spawn_serve(
        &f.data_dir,
        &[],
        &[("SLUICE_QUERY__MEMORY_LIMIT_MB", "1".into())],
    );
    let detail = expect_error(
        &sql(
            &small,
            "SELECT array_agg(path) AS paths FROM platform_event_logs",
        ),
        422,
        "memory_limit",
    );
    assert!(detail.contains("1 MiB"), "{detail}");
}

#[test]
fn new_snapshots_and_new_tables_are_visible_without_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    generate(&first, 21, 2_000);
    generate(&second, 22, 3_000);
    ok(sluice(
        &data_dir,
        &["import", first.to_str().unwrap(), "--format", "json"],
    ));
    let (_server, addr) = spawn_serve(&data_dir, &[], &[]);
    let count = |table: &str| -> u64 {
        let r = sql(&addr, &format!("SELECT count(*) AS n FROM {table}"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["rows"][0]["n"].as_u64().unwrap()
    };
    assert_eq!(count("platform_event_logs"), 2_000);
    ok(sluice(
        &data_dir,
        &["import", second.to_str().unwrap(), "--format", "json"],
    ));
    assert_eq!(
        count("platform_event_logs"),
        5_000,
        "the new snapshot is read"
    );

    // A table another engine creates in the namespace is found too.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let catalog = common::open_catalog(&data_dir).await;
        let schema = iceberg::spec::Schema::builder()
            .with_fields(vec![
                iceberg::spec::NestedField::required(
                    1,
                    "id",
                    iceberg::spec::Type::Primitive(iceberg::spec::PrimitiveType::Long),
                )
                .into(),
            ])
            .build()
            .unwrap();
        catalog
            .create_table(
                &iceberg::NamespaceIdent::new("platform".into()),
                iceberg::TableCreation::builder()
                    .name("added_later".into())
                    .schema(schema)
                    .build(),
            )
            .await
            .unwrap();
    });
    assert_eq!(count("added_later"), 0);
    assert_eq!(count("platform.added_later"), 0);
}

#[test]
fn tokens_and_roles_guard_the_api() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[[query.tokens]]\ntoken = \"analyst-secret-token\"\nrole = \"analyst\"\n\
         [[query.tokens]]\ntoken = \"operator-secret-token\"\nrole = \"operator\"\n\
         [[query.tokens]]\ntoken = \"admin-secret-token\"\nrole = \"admin\"\n",
    )
    .unwrap();
    let (_server, addr) = spawn_serve(&f.data_dir, &["--config", config.to_str().unwrap()], &[]);
    let body = json!({"sql": "SELECT 1 AS one"}).to_string();
    let call = |token: Option<&str>, path: &str| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        if path == "/v1/sql" {
            http(&addr, "POST", path, &headers, Some(body.as_bytes()))
        } else {
            http(&addr, "GET", path, &headers, None)
        }
    };
    let r = call(None, "/v1/sql");
    expect_error(&r, 401, "unauthorized");
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    expect_error(&call(Some("wrong"), "/v1/sql"), 401, "unauthorized");
    assert_eq!(call(Some("analyst-secret-token"), "/v1/sql").status, 200);
    assert_eq!(call(Some("admin-secret-token"), "/v1/sql").status, 200);
    // Without tenants, Loki's tenant header (Grafana may send one) changes
    // nothing.
    let scoped = http(
        &addr,
        "POST",
        "/v1/sql",
        &[
            ("Authorization", "Bearer admin-secret-token"),
            ("X-Scope-OrgID", "fake"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(scoped.status, 200, "{}", scoped.text());
    // SQL is every role's; the tables it sees are the role's (below).
    assert_eq!(call(Some("operator-secret-token"), "/v1/sql").status, 200);
    expect_error(
        &call(Some("operator-secret-token"), "/v1/attribution"),
        403,
        "forbidden",
    );
    let health = "/v1/services/x/y/health";
    assert_eq!(call(Some("operator-secret-token"), health).status, 200);
    assert_eq!(call(Some("analyst-secret-token"), health).status, 200);
    // Roles guard data, not only routes: an analyst's SQL sees the API
    // events alone, an operator's the logs and lifecycle events, in queries
    // and in information_schema; an admin's all.
    let sql_as = |token: &str, q: &str| {
        let auth = format!("Bearer {token}");
        http(
            &addr,
            "POST",
            "/v1/sql",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(json!({ "sql": q }).to_string().as_bytes()),
        )
    };
    for hidden in [
        "pod_logs",
        "platform.pod_logs",
        "sluice.platform.platform_events",
    ] {
        let r = sql_as(
            "analyst-secret-token",
            &format!("SELECT count(*) FROM {hidden}"),
        );
        let detail = expect_error(&r, 400, "sql");
        assert!(detail.contains("not found"), "{hidden}: {detail}");
    }
    let listed = |token: &str| -> Vec<String> {
        let r = sql_as(
            token,
            "SELECT table_name FROM information_schema.tables              WHERE table_schema = 'platform' ORDER BY table_name",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["table_name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed("analyst-secret-token"), ["platform_event_logs"]);
    assert_eq!(
        listed("operator-secret-token"),
        ["alert_history", "platform_events", "pod_logs"]
    );
    let r = sql_as(
        "operator-secret-token",
        "SELECT count(*) FROM platform_event_logs",
    );
    expect_error(&r, 400, "sql");
    assert_eq!(
        listed("admin-secret-token"),
        [
            "alert_history",
            "platform_event_logs",
            "platform_events",
            "pod_logs"
        ]
    );
    assert_eq!(
        sql_as(
            "analyst-secret-token",
            "SELECT count(*) FROM platform_event_logs"
        )
        .status,
        200
    );
    // A subquery or a join does not widen it.
    let r = sql_as(
        "analyst-secret-token",
        "SELECT count(*) FROM platform_event_logs e          WHERE EXISTS (SELECT 1 FROM pod_logs p WHERE p.pod = e.service)",
    );
    expect_error(&r, 400, "sql");
    // Probes and the API description stay open.
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(http_get(&addr, "/readyz").0, 200);
    assert_eq!(http_get(&addr, "/metrics").0, 200);
    assert_eq!(http_get(&addr, "/openapi.json").0, 200);

    // Without tokens, only loopback.
    let o = sluice(&f.data_dir, &["--http", "0.0.0.0:0", "serve"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to serve the API on 0.0.0.0"),
        "{err}"
    );
}

#[test]
fn cli_answers_the_same_embedded_and_through_a_server() {
    let f = fixture();
    let (_server, addr) = spawn_serve(&f.data_dir, &[], &[]);
    let url = format!("http://{addr}");
    let (from, to) = (rfc(window_start()), rfc(until()));
    let attribution = [
        "attribution",
        "--by",
        "team",
        "--since",
        &from,
        "--to",
        &to,
        "--format",
        "json",
    ];
    let embedded: Value = serde_json::from_str(&ok(sluice(&f.data_dir, &attribution))).unwrap();
    let mut remote_args = attribution.to_vec();
    remote_args.extend(["--server", &url]);
    let remote: Value = serde_json::from_str(&ok(sluice(&f.data_dir, &remote_args))).unwrap();
    assert_eq!(embedded["rows"], remote["rows"]);
    assert_eq!(embedded["total"], EVENTS);

    let csv = ok(sluice(
        &f.data_dir,
        &[
            "sql",
            "SELECT count(*) AS n FROM platform_event_logs",
            "--format",
            "csv",
        ],
    ));
    assert_eq!(csv, format!("n\n{EVENTS}\n"));
    let table = ok(sluice(
        &f.data_dir,
        &[
            "sql",
            "SELECT count(*) AS n FROM platform_event_logs",
            "--server",
            &url,
        ],
    ));
    assert!(table.contains(&EVENTS.to_string()), "{table}");

    let peaks: Value = serde_json::from_str(&ok(sluice(
        &f.data_dir,
        &[
            "guardrails",
            "peaks",
            "--since",
            &from,
            "--to",
            &to,
            "--format",
            "json",
            "--server",
            &url,
        ],
    )))
    .unwrap();
    assert_eq!(
        peaks["rows"][0]["principal"],
        f.manifest.spikes[0].principal.as_str()
    );
    let sim: Value = serde_json::from_str(&ok(sluice(
        &f.data_dir,
        &[
            "guardrails",
            "simulate",
            "--since",
            &from,
            "--to",
            &to,
            "--cap",
            "3",
            "--format",
            "json",
        ],
    )))
    .unwrap();
    assert!(sim["caps"][0]["limited_requests"].as_u64().unwrap() > 0);
    let yaml = ok(sluice(
        &f.data_dir,
        &[
            "guardrails",
            "export",
            "--since",
            &from,
            "--to",
            &to,
            "--domain",
            "edge",
        ],
    ));
    assert!(yaml.contains("domain: edge"), "{yaml}");

    // Errors: one line, exit 1, the server's reason.
    let o = sluice(
        &f.data_dir,
        &["sql", "DROP TABLE platform_events", "--server", &url],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("400") && err.contains("read-only"), "{err}");
    let o = sluice(&f.data_dir, &["guardrails", "simulate", "--cap", "lots"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--cap \"lots\""));
}

#[test]
fn s3_warehouses_are_read_with_the_parallel_scan() {
    let env = common::s3_warehouse_env("query");
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let gen_dir = tmp.path().join("gen");
    generate(&gen_dir, 31, 4_000);
    ok(sluice_with(
        &data_dir,
        &["import", gen_dir.to_str().unwrap(), "--format", "json"],
        &env,
    ));
    assert!(
        !data_dir.join("warehouse").exists(),
        "the data is in the bucket"
    );
    let (_server, addr) = spawn_serve(&data_dir, &[], &env);
    let r = sql(&addr, "SELECT count(*) AS n FROM platform_event_logs");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rows"][0]["n"], 4_000);
    let plan = sql(&addr, "EXPLAIN SELECT count(*) FROM platform_event_logs").text();
    assert!(
        plan.contains("DataSourceExec") && plan.contains("wh/platform/platform_event_logs"),
        "{plan}"
    );
    assert!(!plan.contains("IcebergTableScan"), "{plan}");
    let (from, to) = (rfc(window_start()), rfc(until()));
    let r = get(
        &addr,
        &format!(
            "/v1/attribution?by=team&from={}&to={}",
            enc(&from),
            enc(&to)
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["total"], 4_000);
}
