//! The web console, end to end: a generated cluster imported and indexed,
//! the query service serving the console, and headless Chromium
//! (`tests/console/console.mjs`, playwright-core) loading each page,
//! interacting and asserting on what is shown; a screenshot per page lands
//! in `$CARGO_TARGET_TMPDIR/console` (or `$SLUICE_TEST_OUTPUT/console`).
//!
//! Needs what `scripts/test` installs: Debian's chromium
//! (`SLUICE_TEST_CHROMIUM`, default `/usr/bin/chromium`) and playwright-core
//! (`SLUICE_TEST_NODE_MODULES`, default `~/.cache/sluice/node/node_modules`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Proc, http, ok, sluice, spawn_serve};

/// The data the console is shown: a small generated cluster, imported into
/// the tables and indexed for log search.
struct Data {
    _tmp: tempfile::TempDir,
    data_dir: PathBuf,
    manifest: Value,
}

fn prepare() -> Data {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    let gen_arg = gen_dir.to_str().unwrap();
    // Ending now, so the console's "last 24 hours" has data.
    ok(sluice(
        &data_dir,
        &[
            "gen", "--out", gen_arg, "--pods", "8", "--events", "50000", "--days", "2", "--seed",
            "7",
        ],
    ));
    ok(sluice(&data_dir, &["import", gen_arg, "--format", "json"]));
    ok(sluice(&data_dir, &["index", "--once"]));
    let manifest =
        serde_json::from_str(&std::fs::read_to_string(gen_dir.join("manifest.json")).unwrap())
            .unwrap();
    Data {
        _tmp: tmp,
        data_dir,
        manifest,
    }
}

/// Starts the service the browser talks to; returns it and its address.
/// The one place to change when the console is tested on `sluice up --demo`.
fn start_server(data: &Data) -> (Proc, String) {
    spawn_serve(&data.data_dir, &[], &[])
}

/// The generated pod with the most OOM kills (the console's troubled
/// service), as `namespace/pod`.
fn troubled_pod(manifest: &Value) -> String {
    let mut ooms: BTreeMap<String, usize> = BTreeMap::new();
    for pod in manifest["pods"].as_array().unwrap() {
        let n = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["instances"].as_array().unwrap())
            .filter(|i| i["termination"] == "OOMKilled")
            .count();
        ooms.insert(
            format!(
                "{}/{}",
                pod["namespace"].as_str().unwrap(),
                pod["pod"].as_str().unwrap()
            ),
            n,
        );
    }
    let (pod, n) = ooms.into_iter().max_by_key(|(_, n)| *n).unwrap();
    assert!(
        n >= 2,
        "the generated cluster has a pod restarted by OOM kills"
    );
    pod
}

fn output_dir() -> PathBuf {
    let base = std::env::var_os("SLUICE_TEST_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    base.join("console")
}

fn node_modules() -> PathBuf {
    std::env::var_os("SLUICE_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/sluice/node/node_modules")
        })
}

fn chromium() -> PathBuf {
    std::env::var_os("SLUICE_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Runs the browser script; its output is shown either way.
fn run_browser(base: &str, out: &Path, spike: &str, pod: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/console.mjs");
    let modules = node_modules();
    assert!(
        modules.join("playwright-core/package.json").exists(),
        "playwright-core is missing from {} — `scripts/test --setup` installs it",
        modules.display()
    );
    assert!(
        chromium().exists(),
        "{} is missing — `scripts/test --setup` installs Debian's chromium",
        chromium().display()
    );
    let mut child = Command::new("node")
        .arg(&script)
        .arg(base)
        .arg(out)
        .env("SLUICE_TEST_NODE_MODULES", &modules)
        .env("SLUICE_TEST_CHROMIUM", chromium())
        .env("CONSOLE_SPIKE", spike)
        .env("CONSOLE_POD", pod)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (the machine's Node.js)");
    // Bounded: a hung browser fails the test instead of stalling the suite.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser tests did not finish within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        status.success(),
        "the browser tests failed ({status}):\n{stdout}\n{stderr}"
    );
}

/// The console's files are served from the binary with their types and
/// cache validators; the series endpoint agrees with attribution.
fn check_http(addr: &str, manifest: &Value) {
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

    // The chart's series: the top principal's buckets add up to its
    // attribution row, over the same fixed range.
    let from = manifest["window_start"].as_str().unwrap();
    let to = manifest["until"].as_str().unwrap();
    let range = format!("from={from}&to={to}");
    let attribution = http(
        addr,
        "GET",
        &format!("/v1/attribution?by=team&{range}&limit=3"),
        &[],
        None,
    )
    .json();
    let series = http(
        addr,
        "GET",
        &format!("/v1/attribution/series?by=team&{range}&top=3&step=1h"),
        &[],
        None,
    );
    assert_eq!(series.status, 200, "{}", series.text());
    let series = series.json();
    assert_eq!(series["step_seconds"], 3600);
    assert!(series["sql"].as_str().unwrap().contains("date_bin"));
    let rows = attribution["rows"].as_array().unwrap();
    let lines = series["series"].as_array().unwrap();
    assert_eq!(lines.len(), rows.len().min(3));
    for (row, line) in rows.iter().zip(lines) {
        assert_eq!(row["principal"], line["principal"]);
        assert_eq!(row["requests"], line["requests"]);
        let sum: u64 = line["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_u64().unwrap())
            .sum();
        assert_eq!(Some(sum), row["requests"].as_u64(), "{line}");
    }
    // One principal at the guardrails' window: one point per busy minute.
    let spike = manifest["spikes"][0]["principal"].as_str().unwrap();
    let one = http(
        addr,
        "GET",
        &format!(
            "/v1/attribution/series?by=user&{range}&principal={}&step=1m",
            encode(spike)
        ),
        &[],
        None,
    )
    .json();
    assert_eq!(one["series"].as_array().unwrap().len(), 1);
    assert_eq!(one["series"][0]["principal"], spike);
    let bad = http(addr, "GET", "/v1/attribution/series?step=2m", &[], None);
    assert_eq!(bad.status, 400, "{}", bad.text());
}

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn console_pages_in_a_browser() {
    let data = prepare();
    let (_server, addr) = start_server(&data);
    check_http(&addr, &data.manifest);
    let out = output_dir();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let spike = data.manifest["spikes"][0]["principal"]
        .as_str()
        .unwrap()
        .to_string();
    run_browser(
        &format!("http://{addr}"),
        &out,
        &spike,
        &troubled_pod(&data.manifest),
    );
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
