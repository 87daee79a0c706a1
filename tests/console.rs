//! The web console, end to end, against a running `sluice up --demo`: the
//! live demo writes pod logs, API events and lifecycle events, `sluice up`
//! commits and indexes them and serves the console, and headless Chromium
//! (`tests/console/console.mjs`, playwright-core) loads each page, interacts
//! and asserts on what is shown; a screenshot per page lands in
//! `$CARGO_TARGET_TMPDIR/console` (or `$SLUICE_TEST_OUTPUT/console`).
//!
//! Needs what `scripts/test` installs: Debian's chromium
//! (`SLUICE_TEST_CHROMIUM`, default `/usr/bin/chromium`) and playwright-core
//! (`SLUICE_TEST_NODE_MODULES`, default `~/.cache/sluice/node/node_modules`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

mod common;
use common::{Proc, browser, enc, free_port, http, http_get};

/// A running `sluice up --demo` and what the demo says about itself.
struct Demo {
    _tmp: tempfile::TempDir,
    _up: Proc,
    addr: String,
    started: DateTime<Utc>,
    spike: String,
    namespace: String,
    pod: String,
    container: String,
}

/// Starts `sluice --data-dir D --http 127.0.0.1:PORT up --demo` on a fresh
/// data directory and waits until it answers `/readyz`.
fn start_demo() -> Demo {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Utc::now();
    let up = Proc(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--http", &addr, "up", "--demo"])
            .env_remove("SLUICE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice up --demo"),
    );
    wait_for("sluice up to be ready", Duration::from_secs(120), || {
        http_get(&addr, "/readyz").0 == 200
    });
    let facts: Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("demo/facts.json")).unwrap()).unwrap();
    let fact = |k: &str| {
        facts[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} in the demo's facts: {facts}"))
            .to_string()
    };
    Demo {
        addr,
        started,
        spike: fact("spike_principal"),
        namespace: fact("first_oom_namespace"),
        pod: fact("first_oom_pod"),
        container: fact("first_oom_container"),
        _up: up,
        _tmp: tmp,
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn get_json(addr: &str, path: &str) -> Value {
    let r = http(addr, "GET", path, &[], None);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

/// Waits until what the browser is shown exists: the first OOMKilled
/// instance and the one after it in the tables, the restarted instance's
/// "previous instance terminated: reason=OOMKilled" line in the search
/// index, and the spike principal on top of attribution and the guardrail
/// peaks. Returns when the OOMKilled instance ended (`terminated_at`).
fn wait_for_demo(demo: &Demo) -> String {
    let (addr, ns, pod) = (&demo.addr, &demo.namespace, &demo.pod);
    let restarts_path = format!("/v1/logs/restarts?namespace={ns}&pod={pod}");
    let mut killed_at = None;
    wait_for(
        "the first OOMKill and the instance after it to be in the tables",
        Duration::from_secs(120),
        || {
            let r = http(addr, "GET", &restarts_path, &[], None);
            if r.status != 200 {
                return false;
            }
            let v = r.json();
            let instances = v["instances"].as_array().cloned().unwrap_or_default();
            let ours = |i: &&Value| i["container"] == demo.container.as_str();
            killed_at = instances
                .iter()
                .filter(ours)
                .find(|i| {
                    i["restart"] == 0
                        && i["termination"] == "OOMKilled"
                        && i["lines"].as_u64() > Some(0)
                })
                .and_then(|i| i["terminated_at"].as_str().map(str::to_string));
            let next = instances
                .iter()
                .filter(ours)
                .any(|i| i["restart"] == 1 && i["lines"].as_u64() > Some(0));
            killed_at.is_some() && next
        },
    );
    let killed_at = killed_at.unwrap();
    let when = DateTime::parse_from_rfc3339(&killed_at).expect("terminated_at is RFC 3339");
    assert!(
        when > demo.started && when < Utc::now(),
        "the OOMKill happened while the demo ran: {killed_at}"
    );
    wait_for(
        "the restarted instance's OOMKilled line to be searchable",
        Duration::from_secs(60),
        || {
            let v = get_json(
                addr,
                &format!("/v1/logs/search?q=OOMKilled&namespace={ns}&pod={pod}&from=15m"),
            );
            v["hits"].as_array().is_some_and(|hits| {
                hits.iter().any(|h| {
                    h["restart"] == 1
                        && h["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("reason=OOMKilled"))
                })
            })
        },
    );
    let spike = demo.spike.as_str();
    wait_for(
        "the spike principal to lead attribution and the guardrail peaks",
        Duration::from_secs(60),
        || {
            let top = get_json(addr, "/v1/attribution?by=user&since=1h&limit=1");
            let peaks = get_json(
                addr,
                "/v1/guardrails/peaks?by=user&window=1m&since=1h&limit=1",
            );
            top["rows"][0]["principal"] == spike && peaks["rows"][0]["principal"] == spike
        },
    );
    killed_at
}

/// Runs the browser script on the demo's facts; its output is shown either
/// way.
fn run_browser(demo: &Demo, killed_at: &str, out: &Path) {
    browser::run_script(
        "console.mjs",
        &format!("http://{}", demo.addr),
        out,
        &[
            ("CONSOLE_SPIKE", demo.spike.clone()),
            ("CONSOLE_POD", format!("{}/{}", demo.namespace, demo.pod)),
            ("CONSOLE_CONTAINER", demo.container.clone()),
            ("CONSOLE_OOM_AT", killed_at.to_string()),
        ],
        Duration::from_secs(300),
    );
}

/// The console's files are served from the binary with their types and
/// cache validators; the series endpoint agrees with attribution.
fn check_http(demo: &Demo) {
    let addr = demo.addr.as_str();
    let index = http(addr, "GET", "/", &[], None);
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert!(index.text().contains("/console/app.js"));
    assert!(
        index
            .header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'self'"))
    );
    for (file, ty) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("uPlot.min.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = http(addr, "GET", &format!("/console/{file}"), &[], None);
        assert_eq!(r.status, 200, "{file}");
        assert_eq!(r.header("content-type").as_deref(), Some(ty), "{file}");
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-cache"),
            "{file}"
        );
        let etag = r.header("etag").expect("an ETag");
        let again = http(
            addr,
            "GET",
            &format!("/console/{file}"),
            &[("If-None-Match", &etag)],
            None,
        );
        assert_eq!(again.status, 304, "{file} revalidates");
        assert!(again.body.is_empty());
    }
    let missing = http(addr, "GET", "/console/nope.js", &[], None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");

    // The chart's series: the top principals' buckets add up to their
    // attribution rows over the same fixed range. The demo keeps writing,
    // so a pair of answers taken while rows of the range were still
    // arriving may differ: the pair is asked again until it agrees.
    let from = rfc3339(demo.started - chrono::Duration::minutes(1));
    let mut last = String::new();
    let agreed = (0..10).any(|_| {
        let to = rfc3339(Utc::now() - chrono::Duration::seconds(1));
        let range = format!("from={}&to={}", enc(&from), enc(&to));
        let attribution = get_json(addr, &format!("/v1/attribution?by=team&{range}&limit=3"));
        let series = get_json(
            addr,
            &format!("/v1/attribution/series?by=team&{range}&top=3&step=1m"),
        );
        assert_eq!(series["step_seconds"], 60);
        assert!(series["sql"].as_str().unwrap().contains("date_bin"));
        let rows = attribution["rows"].as_array().unwrap();
        let lines = series["series"].as_array().unwrap();
        assert!(
            !rows.is_empty(),
            "the demo's events are attributed: {attribution}"
        );
        assert_eq!(lines.len(), rows.len().min(3));
        for line in lines {
            let buckets: Vec<i64> = line["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[0].as_i64().unwrap())
                .collect();
            assert!(
                buckets.windows(2).all(|w| w[0] < w[1]),
                "a line's points in bucket order, once each: {line}"
            );
        }
        let sums: Vec<(Value, Value, u64)> = lines
            .iter()
            .map(|line| {
                let sum = line["points"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p[1].as_u64().unwrap())
                    .sum();
                (line["principal"].clone(), line["requests"].clone(), sum)
            })
            .collect();
        let agree = rows
            .iter()
            .zip(&sums)
            .all(|(row, (principal, requests, sum))| {
                row["principal"] == *principal
                    && row["requests"] == *requests
                    && row["requests"].as_u64() == Some(*sum)
            });
        if !agree {
            last = format!(
                "attribution {rows:?}\nseries (principal, requests, sum of points) {sums:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        agree
    });
    assert!(agreed, "the series never added up to attribution:\n{last}");
    // One principal at the guardrails' window: one point per busy minute.
    let range = format!("from={}", enc(&from));
    let one = get_json(
        addr,
        &format!(
            "/v1/attribution/series?by=user&{range}&principal={}&step=1m",
            enc(&demo.spike)
        ),
    );
    assert_eq!(one["series"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["series"][0]["principal"], demo.spike.as_str());
    assert!(one["series"][0]["requests"].as_u64() > Some(0), "{one}");
    let bad = http(addr, "GET", "/v1/attribution/series?step=2m", &[], None);
    assert_eq!(bad.status, 400, "{}", bad.text());
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[test]
fn console_pages_in_a_browser() {
    let demo = start_demo();
    let killed_at = wait_for_demo(&demo);
    check_http(&demo);
    let out = browser::output_dir();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    run_browser(&demo, &killed_at, &out);
    for page in [
        "attribution",
        "logs",
        "logs-instance",
        "guardrails",
        "health",
    ] {
        let png = out.join(format!("{page}.png"));
        let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "a screenshot of {page}: {}", png.display());
    }
    println!("screenshots in {}", out.display());
}
