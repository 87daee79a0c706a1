//! Log search end to end, on a generated cluster imported into real Iceberg
//! tables and indexed by `sluice index`: a search finds exactly the lines
//! `zgrep` finds in the generated kubelet files (every restart's file and
//! every rotated, gzipped file included), filters narrow it exactly, the
//! Loki-compatible API answers in Loki's shapes (checked against responses
//! recorded from Loki's documentation, `tests/fixtures/loki/`) and with the
//! same counts, the CLI finds the instance before a restart, and an indexer
//! killed while building a split resumes without losing or repeating a line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice::generator::{self, GenConfig, Manifest};

mod common;
use common::{Proc, enc, http, ok, sluice, spawn_serve};

const UNTIL: &str = "2026-11-21T00:00:00Z";
const DAYS: u32 = 2;

struct Fixture {
    tmp: tempfile::TempDir,
    gen_dir: PathBuf,
    data_dir: PathBuf,
    manifest: Manifest,
}

fn until() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(UNTIL)
        .unwrap()
        .with_timezone(&Utc)
}

fn generate(out: &Path, pods: usize, lines_per_pod_day: u64) -> Manifest {
    generator::generate(
        &GenConfig {
            out: out.to_path_buf(),
            pods,
            events: 1_000,
            days: DAYS,
            until: until(),
            seed: 11,
            cluster: "ls".into(),
            lines_per_pod_day,
            // Small, so every container has rotated and gzipped files.
            rotate_bytes: 48 * 1024,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap()
}

/// Generated files (`gen`) imported into the embedded default (`data`) of
/// a temporary directory.
fn imported(pods: usize, lines_per_pod_day: u64) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    let manifest = generate(&gen_dir, pods, lines_per_pod_day);
    ok(sluice(
        &data_dir,
        &["import", gen_dir.to_str().unwrap(), "--format", "json"],
    ));
    Fixture {
        tmp,
        gen_dir,
        data_dir,
        manifest,
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let f = imported(6, 1_500);
        ok(sluice(&f.data_dir, &["index", "--once"]));
        f
    })
}

/// A line of a generated kubelet file, as grep printed it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GrepLine {
    ts: i64,
    namespace: String,
    pod: String,
    container: String,
    restart: i64,
    message: String,
    file: String,
}

/// `zgrep -H ARGS` over every file of the generated tree, parsed: the path
/// gives namespace/pod/container/restart, the CRI prefix the time. Only
/// complete (`F`) lines: the generator's partial lines never hold the
/// terms searched here, which `assert_no_partial` checks.
fn zgrep(gen_dir: &Path, args: &[&str]) -> Vec<GrepLine> {
    let root = gen_dir.join("var/log/pods");
    let mut files = Vec::new();
    for pod_dir in std::fs::read_dir(&root).unwrap() {
        for c in std::fs::read_dir(pod_dir.unwrap().path()).unwrap() {
            for f in std::fs::read_dir(c.unwrap().path()).unwrap() {
                files.push(f.unwrap().path());
            }
        }
    }
    files.sort();
    let out = Command::new("zgrep")
        .arg("-H")
        .args(args)
        .args(&files)
        .output()
        .expect("zgrep (gzip package)");
    // 1: nothing matched.
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "zgrep: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = Vec::new();
    for l in text.lines() {
        let (path, rest) = l.split_once(".log").unwrap();
        let (suffix, cri) = rest.split_once(':').unwrap();
        let file = format!("{path}.log{suffix}");
        // <root>/<ns>_<pod>_<uid>/<container>/<restart>
        let parts: Vec<&str> = path.rsplitn(3, '/').collect();
        let restart: i64 = parts[0].parse().unwrap();
        let container = parts[1].to_string();
        let pod_dir = parts[2].rsplit('/').next().unwrap();
        let mut ids = pod_dir.splitn(3, '_');
        let namespace = ids.next().unwrap().to_string();
        let pod = ids.next().unwrap().to_string();
        let mut f = cri.splitn(4, ' ');
        let ts = DateTime::parse_from_rfc3339(f.next().unwrap())
            .unwrap()
            .timestamp_micros();
        let _stream = f.next().unwrap();
        let tag = f.next().unwrap();
        let message = f.next().unwrap_or("").to_string();
        assert_eq!(tag, "F", "a partial line matched: {l}");
        lines.push(GrepLine {
            ts,
            namespace,
            pod,
            container,
            restart,
            message,
            file,
        });
    }
    lines.sort();
    lines
}

fn get_json(addr: &str, path: &str) -> Value {
    let r = http(addr, "GET", path, &[], None);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.text()))
}

/// Every hit of a search (paged by cursor), as (ts, ns, pod, container,
/// restart, message); and the `total` the first page gave.
/// (ts, namespace, pod, container, restart, message)
type Found = (i64, String, String, String, i64, String);

fn search_all(addr: &str, params: &str) -> (u64, Vec<Found>) {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    loop {
        let mut path = format!("/v1/logs/search?{params}&limit=700");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let page = get_json(addr, &path);
        let t = page["total"].as_u64().unwrap();
        assert_eq!(*total.get_or_insert(t), t, "total changes between pages");
        for h in page["hits"].as_array().unwrap() {
            out.push((
                h["ts"].as_i64().unwrap(),
                h["namespace"].as_str().unwrap().to_string(),
                h["pod"].as_str().unwrap().to_string(),
                h["container"].as_str().unwrap().to_string(),
                h["restart"].as_i64().unwrap(),
                h["message"].as_str().unwrap().to_string(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    (total.unwrap_or(0), out)
}

fn keyed(lines: &[GrepLine]) -> Vec<Found> {
    let mut v: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l.ts,
                l.namespace.clone(),
                l.pod.clone(),
                l.container.clone(),
                l.restart,
                l.message.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn search_finds_exactly_what_grep_finds_across_restarts_and_rotations() {
    let f = fixture();
    let (_serve, addr) = spawn_serve(&f.data_dir, &[], &[]);
    for term in ["OOMKilled", "heartbeat", "evaluating"] {
        let grep = zgrep(&f.gen_dir, &["-i", "-w", term]);
        assert!(!grep.is_empty(), "the generator writes {term}");
        let (total, hits) = search_all(&addr, &format!("q={term}"));
        assert_eq!(total as usize, grep.len(), "{term}: total vs zgrep");
        assert_eq!(
            sorted(hits),
            keyed(&grep),
            "{term}: the very lines zgrep finds"
        );
        if term == "heartbeat" {
            // The data covers what the test is about.
            assert!(
                grep.iter().any(|l| l.restart > 0),
                "lines of a restarted instance"
            );
            assert!(
                grep.iter().any(|l| l.file.contains(".log.")),
                "lines of a rotated file"
            );
        }
    }

    // Filters narrow exactly: by pod, by restart, by time.
    let grep = zgrep(&f.gen_dir, &["-i", "-w", "heartbeat"]);
    let pod = &grep.iter().find(|l| l.restart > 0).unwrap().pod.clone();
    let of_pod: Vec<GrepLine> = grep.iter().filter(|l| &l.pod == pod).cloned().collect();
    let (total, hits) = search_all(&addr, &format!("q=heartbeat&pod={pod}"));
    assert_eq!(total as usize, of_pod.len());
    assert_eq!(sorted(hits), keyed(&of_pod));
    let restart = of_pod.iter().map(|l| l.restart).max().unwrap();
    let of_restart: Vec<GrepLine> = of_pod
        .iter()
        .filter(|l| l.restart == restart - 1)
        .cloned()
        .collect();
    assert!(!of_restart.is_empty());
    let (total, hits) = search_all(
        &addr,
        &format!("q=heartbeat&pod={pod}&restart={}", restart - 1),
    );
    assert_eq!(total as usize, of_restart.len());
    assert_eq!(sorted(hits), keyed(&of_restart));
    let from = until() - chrono::Duration::hours(30);
    let to = until() - chrono::Duration::hours(6);
    let in_window: Vec<GrepLine> = grep
        .iter()
        .filter(|l| l.ts >= from.timestamp_micros() && l.ts < to.timestamp_micros())
        .cloned()
        .collect();
    assert!(!in_window.is_empty() && in_window.len() < grep.len());
    let (total, hits) = search_all(
        &addr,
        &format!(
            "q=heartbeat&from={}&to={}",
            enc(&from.to_rfc3339()),
            enc(&to.to_rfc3339())
        ),
    );
    assert_eq!(total as usize, in_window.len());
    assert_eq!(sorted(hits), keyed(&in_window));
}

/// Whether `ours` has the structure of `recorded` (a Loki response): the
/// same JSON types, every key the recording has (label maps aside, whose
/// keys are the data's own), arrays' elements alike.
fn same_shape(ours: &Value, recorded: &Value, at: &str) {
    match (ours, recorded) {
        (Value::Object(o), Value::Object(r)) => {
            let label_map =
                ["stream", "metric"].iter().any(|k| at.ends_with(k)) || at.ends_with("data[]");
            for (k, rv) in r {
                if label_map || k == "stats" {
                    continue;
                }
                let ov = o
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}: no key {k:?} in {ours}"));
                same_shape(ov, rv, &format!("{at}.{k}"));
            }
        }
        (Value::Array(o), Value::Array(r)) => {
            if let (Some(of), Some(rf)) = (o.first(), r.first()) {
                if at.ends_with(".value")
                    || at.ends_with("values[]")
                    || at.ends_with(".result") && matches!(rf, Value::Number(_))
                {
                    assert_eq!(o.len(), r.len(), "{at}: {ours} vs {recorded}");
                    for (a, b) in o.iter().zip(r) {
                        same_shape(a, b, &format!("{at}[]"));
                    }
                } else {
                    same_shape(of, rf, &format!("{at}[]"));
                }
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        _ => panic!("{at}: {ours} is not shaped like Loki's {recorded}"),
    }
}

fn recorded(name: &str) -> Value {
    let path = sluice_testkit::source_path(&format!("tests/fixtures/loki/{name}"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn ns(t: DateTime<Utc>) -> String {
    (t.timestamp_micros() * 1000).to_string()
}

/// Sum of every sample of a matrix or vector result, by one label.
fn sums_by(result: &Value, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in result.as_array().unwrap() {
        let key = s["metric"][label].as_str().unwrap_or("").to_string();
        let points: Vec<&Value> = match s.get("values") {
            Some(v) => v.as_array().unwrap().iter().collect(),
            None => vec![&s["value"]],
        };
        for p in points {
            let v: f64 = p[1].as_str().unwrap().parse().unwrap();
            *out.entry(key.clone()).or_default() += v;
        }
    }
    out
}

#[test]
fn loki_api_answers_like_loki_with_grep_counts() {
    let f = fixture();
    let (_serve, addr) = spawn_serve(&f.data_dir, &[], &[]);
    let a = &addr;
    let start = until() - chrono::Duration::days(DAYS as i64 + 1);
    let end = until() + chrono::Duration::hours(1);
    let range = format!("start={}&end={}", ns(start), ns(end));

    // Grafana's data-source health check (Grafana ≥ 10.2), as it sends it.
    let health = get_json(
        a,
        "/loki/api/v1/query?direction=backward&query=vector%281%29%2Bvector%281%29&time=4000000000",
    );
    assert_eq!(health["data"]["resultType"], "vector");
    assert_eq!(health["data"]["result"][0]["value"][1], "2", "{health}");
    same_shape(&health, &recorded("query_vector.json"), "");

    // A log query the way Grafana's Explore sends it; the line filter is
    // case-sensitive, as zgrep without -i.
    let grep = zgrep(&f.gen_dir, &["-F", "OOMKilled"]);
    let pod = grep[0].pod.clone();
    let namespace = grep[0].namespace.clone();
    let of_pod: Vec<&GrepLine> = grep.iter().filter(|l| l.pod == pod).collect();
    let q = format!("{{namespace=\"{namespace}\", pod=\"{pod}\"}} |= \"OOMKilled\"");
    let streams = get_json(
        a,
        &format!(
            "/loki/api/v1/query_range?direction=backward&limit=1000&query={}&{range}&step=60000ms",
            enc(&q)
        ),
    );
    same_shape(&streams, &recorded("query_range_streams.json"), "");
    assert_eq!(streams["data"]["resultType"], "streams");
    let mut entries = Vec::new();
    for s in streams["data"]["result"].as_array().unwrap() {
        let restart: i64 = s["stream"]["restart"].as_str().unwrap().parse().unwrap();
        for v in s["values"].as_array().unwrap() {
            let t: i64 = v[0].as_str().unwrap().parse().unwrap();
            entries.push((t / 1000, restart, v[1].as_str().unwrap().to_string()));
        }
    }
    let mut expected: Vec<_> = of_pod
        .iter()
        .map(|l| (l.ts, l.restart, l.message.clone()))
        .collect();
    entries.sort();
    expected.sort();
    assert_eq!(entries, expected, "{q}");
    // Newest first within a stream (direction=backward).
    for s in streams["data"]["result"].as_array().unwrap() {
        let ts: Vec<i64> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[0].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] >= w[1]));
    }

    // A metric query: hourly counts by restart add up to zgrep's counts.
    let q = format!("sum by (restart) (count_over_time({{pod=\"{pod}\"}} |= \"OOMKilled\" [1h]))");
    let matrix = get_json(
        a,
        &format!(
            "/loki/api/v1/query_range?query={}&{range}&step=3600",
            enc(&q)
        ),
    );
    same_shape(&matrix, &recorded("query_range_matrix.json"), "");
    let mut by_restart = BTreeMap::new();
    for l in &of_pod {
        *by_restart.entry(l.restart.to_string()).or_insert(0.0) += 1.0;
    }
    assert_eq!(sums_by(&matrix["data"]["result"], "restart"), by_restart);

    // Grafana's logs-volume query, with its header.
    let all_of_ns = zgrep(&f.gen_dir, &["-E", "^[^ ]+ [^ ]+ F "]);
    let all_of_ns: Vec<&GrepLine> = all_of_ns
        .iter()
        .filter(|l| l.namespace == namespace)
        .collect();
    let q = format!(
        "sum by (level, detected_level) (count_over_time({{namespace=\"{namespace}\"}} | drop __error__[1h]))"
    );
    let r = http(
        a,
        "GET",
        &format!(
            "/loki/api/v1/query_range?query={}&{range}&step=3600000ms",
            enc(&q)
        ),
        &[("X-Query-Tags", "Source=logvolhist")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let volume: Value = serde_json::from_slice(&r.body).unwrap();
    let total: f64 = sums_by(&volume["data"]["result"], "level").values().sum();
    assert_eq!(
        total as usize,
        all_of_ns.len(),
        "every line of the namespace, by level"
    );
    assert!(
        volume["data"]["result"].as_array().unwrap().len() > 1,
        "several levels"
    );
    let metrics = http(a, "GET", "/metrics", &[], None).text();
    assert!(
        metrics.contains("endpoint=\"loki_query_range_volume\""),
        "volume queries are counted apart"
    );

    // Labels, values, series, stats, volume.
    let labels = get_json(a, &format!("/loki/api/v1/labels?{range}"));
    same_shape(&labels, &recorded("labels.json"), "");
    let names: BTreeSet<&str> = labels["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // (`node` is set by the collector; imported files have none.)
    for l in [
        "namespace",
        "pod",
        "container",
        "restart",
        "stream",
        "level",
    ] {
        assert!(names.contains(l), "{l} in {names:?}");
    }
    let values = get_json(a, &format!("/loki/api/v1/label/pod/values?{range}"));
    same_shape(&values, &recorded("label_values.json"), "");
    let pods: BTreeSet<String> = values["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let generated: BTreeSet<String> = f.manifest.pods.iter().map(|p| p.pod.clone()).collect();
    assert_eq!(pods, generated);
    let series = get_json(
        a,
        &format!(
            "/loki/api/v1/series?match%5B%5D={}&{range}",
            enc(&format!("{{pod=\"{pod}\"}}"))
        ),
    );
    same_shape(&series, &recorded("series.json"), "");
    let restarts: BTreeSet<String> = series["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["restart"].as_str().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = zgrep(&f.gen_dir, &["-E", "^[^ ]+ [^ ]+ F "])
        .into_iter()
        .filter(|l| l.pod == pod)
        .map(|l| l.restart.to_string())
        .collect();
    assert_eq!(restarts, files, "one series per instance");
    let stats = get_json(
        a,
        &format!(
            "/loki/api/v1/index/stats?query={}&{range}",
            enc(&format!("{{namespace=\"{namespace}\"}}"))
        ),
    );
    same_shape(&stats, &recorded("index_stats.json"), "");
    assert_eq!(stats["entries"].as_u64().unwrap() as usize, all_of_ns.len());
    let vol = get_json(
        a,
        &format!(
            "/loki/api/v1/index/volume?query={}&{range}&targetLabels=pod",
            enc(&format!("{{namespace=\"{namespace}\"}}"))
        ),
    );
    same_shape(&vol, &recorded("index_volume.json"), "");
    let bytes: u64 = vol["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"][1].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    // (Joined partial lines are longer than their final part zgrep sees:
    // the table is the reference for bytes.)
    let out = ok(sluice(
        &f.data_dir,
        &[
            "sql",
            &format!(
                "SELECT sum(octet_length(message)) AS b FROM pod_logs WHERE namespace = '{namespace}'"
            ),
            "--format",
            "json",
        ],
    ));
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        Some(bytes),
        rows[0]["b"].as_u64(),
        "volume counts message bytes"
    );
    let build = get_json(a, "/loki/api/v1/status/buildinfo");
    same_shape(&build, &recorded("buildinfo.json"), "");
    let ready = http(a, "GET", "/ready", &[], None);
    assert_eq!((ready.status, ready.text().trim()), (200, "ready"));

    // Unsupported LogQL: Loki's plain-text 400 naming the part.
    for (q, part) in [
        (format!("{{pod=\"{pod}\"}} | json"), "| json"),
        (
            format!("avg_over_time({{pod=\"{pod}\"}}[1m])"),
            "avg_over_time",
        ),
        ("{pod=~\".*\"}".to_string(), "empty-compatible"),
    ] {
        let r = http(
            a,
            "GET",
            &format!("/loki/api/v1/query_range?query={}&{range}", enc(&q)),
            &[],
            None,
        );
        assert_eq!(r.status, 400, "{q}");
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains("content-type: text/plain")
        );
        assert!(r.text().contains(part), "{q}: {}", r.text());
        assert!(r.text().starts_with("parse error"), "{}", r.text());
    }
}

#[test]
fn cli_searches_and_tails_the_instance_before_a_restart() {
    let f = fixture();
    let (_serve, addr) = spawn_serve(&f.data_dir, &[], &[]);
    let grep = zgrep(&f.gen_dir, &["-i", "-w", "heartbeat"]);
    let line = grep.iter().find(|l| l.restart > 0).unwrap();
    let since = (until() - chrono::Duration::days(5)).to_rfc3339();
    let out = ok(sluice(
        &f.data_dir,
        &[
            "logs",
            "search",
            "heartbeat",
            "--pod",
            &line.pod,
            "--since",
            &since,
            "--limit",
            "5000",
            "--format",
            "json",
        ],
    ));
    let hits: Value = serde_json::from_str(&out).unwrap();
    let expected = grep.iter().filter(|l| l.pod == line.pod).count();
    assert_eq!(hits.as_array().unwrap().len(), expected);

    // `tail --restart previous`: the last lines of the instance before the
    // newest one, oldest first, even though that container is long gone.
    let all = zgrep(&f.gen_dir, &["-E", "^[^ ]+ [^ ]+ F "]);
    let of_pod: Vec<&GrepLine> = all
        .iter()
        .filter(|l| l.pod == line.pod && l.container == line.container)
        .collect();
    let newest = of_pod.iter().map(|l| l.restart).max().unwrap();
    let mut previous: Vec<&&GrepLine> = of_pod.iter().filter(|l| l.restart == newest - 1).collect();
    previous.sort_by_key(|l| l.ts);
    let want: Vec<&str> = previous[previous.len() - 5..]
        .iter()
        .map(|l| l.message.as_str())
        .collect();
    let out = ok(sluice(
        &f.data_dir,
        &[
            "logs",
            "tail",
            "--pod",
            &line.pod,
            "--container",
            &line.container,
            "--restart",
            "previous",
            "--lines",
            "5",
            "--format",
            "json",
        ],
    ));
    let hits: Value = serde_json::from_str(&out).unwrap();
    let got: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message"].as_str().unwrap())
        .collect();
    assert_eq!(got, want);
    assert!(
        hits.as_array()
            .unwrap()
            .iter()
            .all(|h| h["restart"] == newest - 1)
    );

    // The same through the server.
    let out = ok(sluice(
        &f.data_dir,
        &[
            "logs",
            "tail",
            "--pod",
            &line.pod,
            "--container",
            &line.container,
            "--restart",
            "previous",
            "--lines",
            "5",
            "--format",
            "json",
            "--server",
            &format!("http://{addr}"),
        ],
    ));
    let via_server: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(via_server, hits);
    let bad = sluice(&f.data_dir, &["logs", "tail", "--restart", "previous"]);
    assert_ne!(bad.status.code(), Some(0));
}

/// The exact number of lines a search for `q` matches.
fn search_total(addr: &str, q: &str) -> u64 {
    let r = get_json(addr, &format!("/v1/logs/search?q={}&limit=1", enc(q)));
    r["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no total in {r}"))
}

fn count_sql(data_dir: &Path) -> u64 {
    count_sql_where(data_dir, "true")
}

fn count_sql_where(data_dir: &Path, condition: &str) -> u64 {
    let sql = format!("SELECT count(*) AS n FROM pod_logs WHERE {condition}");
    let out = ok(sluice(data_dir, &["sql", &sql, "--format", "json"]));
    let rows: Value = serde_json::from_str(&out).unwrap();
    rows[0]["n"].as_u64().unwrap()
}

#[test]
fn indexer_killed_while_building_a_split_resumes_exactly() {
    let f = imported(8, 4_000);
    let data_dir = f.data_dir.clone();
    let work = data_dir.join("index-work");
    let mut kills = 0;
    for _ in 0..3 {
        let mut child = Proc(
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--http", "127.0.0.1:0", "index", "--interval", "0.2"])
                .env_remove("SLUICE_CONFIG")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Kill it while a split is being built (its files in the work dir).
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut killed = false;
        while Instant::now() < deadline {
            let building = std::fs::read_dir(&work)
                .map(|d| d.count() > 0)
                .unwrap_or(false);
            if building {
                std::thread::sleep(Duration::from_millis(30));
                child.0.kill().unwrap();
                child.0.wait().unwrap();
                killed = true;
                break;
            }
            if child.0.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if !killed {
            break;
        }
        kills += 1;
    }
    assert!(kills >= 1, "the indexer was never caught building a split");
    ok(sluice(&data_dir, &["index", "--once"]));
    // As much history again of the same days, from another cluster, in a
    // later snapshot: a second split per day of the first one's size level
    // (splits merge only with splits of their own level), so both days'
    // splits are merged in one round.
    let more = f.tmp.path().join("more");
    generator::generate(
        &GenConfig {
            out: more.clone(),
            pods: 8,
            events: 100,
            days: DAYS,
            until: until(),
            seed: 11,
            cluster: "ls2".into(),
            lines_per_pod_day: 4_000,
            rotate_bytes: 1 << 30,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap();
    ok(sluice(
        &data_dir,
        &["import", more.to_str().unwrap(), "--format", "json"],
    ));
    let lines = count_sql(&data_dir);
    let report = ok(sluice(&data_dir, &["index", "--once", "--merge-at", "2"]));
    let merged: usize = report
        .split("merged ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no merge count in {report:?}"));
    assert!(merged >= 4, "both days' splits merged: {report}");
    let (serve, addr) = spawn_serve(&data_dir, &[], &[]);
    assert_eq!(search_total(&addr, ""), lines, "index count = table count");
    let stats = get_json(
        &addr,
        &format!(
            "/loki/api/v1/index/stats?query={}&start=0&end={}",
            enc("{stream=~\"std.+\"}"),
            ns(until() + chrono::Duration::days(1))
        ),
    );
    assert_eq!(stats["entries"].as_u64().unwrap(), lines);
    drop(serve);
}

#[test]
fn a_small_memory_budget_closes_splits_early_and_loses_nothing() {
    let f = imported(8, 16_000);
    let (gen_dir, data_dir) = (f.gen_dir.clone(), f.data_dir.clone());
    let lines = count_sql(&data_dir);
    // 1 MiB is less than one batch of lines takes in a split, so a split
    // closes as soon as its thread has indexed a batch: with the batches
    // queued ahead of it, a few batches per split, several per day.
    let report = ok(sluice(
        &data_dir,
        &["index", "--once", "--memory-mib", "1", "--merge-at", "1000"],
    ));
    let splits: usize = report
        .split(" splits")
        .next()
        .and_then(|r| r.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no split count in {report:?}"));
    assert!(
        splits > 2 * DAYS as usize,
        "splits closed for memory, not only once per day: {report}"
    );
    let (serve, addr) = spawn_serve(&data_dir, &[], &[]);
    assert_eq!(search_total(&addr, ""), lines, "index count = table count");
    let grep = zgrep(&gen_dir, &["-i", "-w", "OOMKilled"]);
    assert!(!grep.is_empty());
    assert_eq!(search_total(&addr, "OOMKilled"), grep.len() as u64);
    drop(serve);
}

/// An index written before splits were read in place (split format 2) is
/// not searched as if it were empty: the query service answers 503 naming
/// it, and the next indexer rebuilds it from the table, after which search
/// answers with every line again.
#[test]
fn an_index_of_an_older_split_format_is_refused_then_rebuilt() {
    let f = imported(2, 400);
    let data_dir = f.data_dir.clone();
    ok(sluice(&data_dir, &["index", "--once"]));
    let lines = count_sql(&data_dir);
    let state_path = data_dir.join("warehouse/sluice-index/pod_logs/state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let old_ids: Vec<String> = state["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!old_ids.is_empty());
    for split in state["splits"].as_array_mut().unwrap() {
        split["schema_version"] = 2.into();
    }
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();

    let (serve, addr) = spawn_serve(&data_dir, &[], &[]);
    let r = http(&addr, "GET", "/v1/logs/search?q=*", &[], None);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("format 2") && r.text().contains("rebuild"),
        "{}",
        r.text()
    );
    ok(sluice(&data_dir, &["index", "--once"]));
    assert_eq!(
        search_total(&addr, ""),
        lines,
        "rebuilt: index count = table count"
    );
    let state: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let retired: Vec<&str> = state["retired"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        sorted(retired.iter().map(|s| s.to_string()).collect()),
        sorted(old_ids.clone()),
        "the old splits are retired, not deleted at once"
    );
    for id in &old_ids {
        assert!(
            data_dir
                .join(format!("warehouse/sluice-index/pod_logs/splits/{id}.split"))
                .exists(),
            "a retired split's object stays for its grace"
        );
    }
    drop(serve);
}

/// `sluice index --rebuild --from T` indexes exactly the lines at or after
/// T: the day wholly before T is skipped unread (its files' bounds say so),
/// the day T falls in is cut at T.
#[test]
fn a_rebuild_from_a_time_indexes_exactly_the_lines_from_then() {
    let f = imported(2, 400);
    let data_dir = f.data_dir.clone();
    // "rebuilt the log index: L lines from F files in …": (L, F).
    let rebuild = |extra: &[&str]| -> (u64, u64) {
        let args: Vec<&str> = ["index", "--once", "--rebuild"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let out = ok(sluice(&data_dir, &args));
        let number = |after: &str| -> u64 {
            out.split(after)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no number after {after:?} in {out:?}"))
        };
        (number("index: "), number(" from "))
    };
    let all = count_sql(&data_dir);
    let (lines, files) = rebuild(&[]);
    assert_eq!(lines, all);
    let from =
        (until() - chrono::Duration::hours(12)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let since = count_sql_where(&data_dir, &format!("ts >= TIMESTAMP '{from}'"));
    assert!(
        since > 0 && since < all / 2,
        "{since} of {all} lines since {from}"
    );
    let (lines_since, files_since) = rebuild(&["--from", &from]);
    assert_eq!(lines_since, since, "lines indexed since {from}");
    assert!(
        files_since < files,
        "the first day's files are not read: {files_since} of {files}"
    );
    let (serve, addr) = spawn_serve(&data_dir, &[], &[]);
    assert_eq!(
        search_total(&addr, ""),
        since,
        "lines searchable since {from}"
    );
    drop(serve);
}
