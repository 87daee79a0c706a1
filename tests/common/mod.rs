//! Helpers shared by the end-to-end tests: talking to the `sluice` binary,
//! its HTTP endpoints, the interop Python and the tables.
#![allow(dead_code)]

pub mod browser;
pub mod disk;
pub mod kube;
pub mod up;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_schema::tables::TableContract;
use sluice_warehouse::append::TableSink;
use sluice_warehouse::catalog::{self, CatalogConfig, WarehouseConfig};

/// `sluice --data-dir DIR ARGS` without the caller's configuration.
pub fn sluice(data_dir: &Path, args: &[&str]) -> Output {
    sluice_with(data_dir, args, &[])
}

/// [`sluice`] with extra environment settings.
pub fn sluice_with(data_dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_SERVER")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run sluice")
}

/// The stdout of a run that must have succeeded (its stderr shown if not).
pub fn ok(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// A plain HTTP/1.1 GET: (status, whole response).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let status = body
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body)
}

/// Percent-encodes a query-string value (every byte but RFC 3986's
/// unreserved characters).
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// PyIceberg's and DuckDB's digests of every table (rows from `from_day`
/// on, when given).
pub fn table_digests(data_dir: &Path, from_day: Option<i64>) -> Value {
    let mut cmd = Command::new(sluice_testkit::python());
    cmd.arg(sluice_testkit::source_path("tests/interop/table_digest.py"))
        .arg(data_dir);
    if let Some(d) = from_day {
        cmd.arg(d.to_string());
    }
    let out = cmd.output().expect("run table_digest.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Produces each line of `files` as a message with the independent client.
pub fn produce_lines(bootstrap: &str, topic: &str, files: &[PathBuf]) -> u64 {
    let script = sluice_testkit::source_path("tests/interop/produce_lines.py");
    let out = Command::new(sluice_testkit::python())
        .arg(script)
        .arg(bootstrap)
        .arg(topic)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves
/// nothing running.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.0.wait().unwrap()
    }
}

/// Starts `sluice write` on `data_dir` against `bootstrap`, configured by
/// `env` (`SLUICE_*` settings), its logs on the test's stderr. Returns the
/// process and its HTTP address.
pub fn spawn_writer(data_dir: &Path, bootstrap: &str, env: &[(&str, String)]) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args([
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--kafka",
        bootstrap,
        "--http",
        &addr,
        "write",
    ])
    .env_remove("SLUICE_CONFIG")
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    (Proc(cmd.spawn().expect("start sluice write")), addr)
}

/// Opens the embedded catalog of `data_dir` once a writer has created it.
pub async fn open_catalog(data_dir: &Path) -> Arc<dyn iceberg::Catalog> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if data_dir.join("catalog.db").exists()
            && let Ok(c) = catalog::open(
                &CatalogConfig::default(),
                &WarehouseConfig::default(),
                data_dir,
            )
            .await
            && catalog::ensure_tables(c.as_ref()).await.is_ok()
        {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "catalog never appeared in {}",
            data_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sum of the Kafka positions a table holds (= messages consumed when every
/// partition started at offset 0).
pub async fn positions_sum(
    catalog: &Arc<dyn iceberg::Catalog>,
    table: &'static TableContract,
) -> i64 {
    let sink = TableSink::new(catalog.clone(), table, "probe");
    match sink.current_positions().await {
        Ok(p) => p
            .iter()
            .filter(|(k, _)| k.starts_with("kafka:"))
            .map(|(_, v)| v)
            .sum(),
        Err(_) => 0,
    }
}

/// Reads the tables with PyIceberg, recomputing enrichment from the
/// generator's directory.
pub fn read_tables(data_dir: &Path, gen_dir: &Path) -> Value {
    let directory = sluice_schema::directory::PrincipalDirectory::from_yaml(
        &std::fs::read_to_string(gen_dir.join("directory.yaml")).unwrap(),
    )
    .unwrap();
    let dir_json = data_dir.join("directory.json");
    let as_json = serde_json::json!({
        "teams": directory.teams.iter().map(|(k, t)| (k.clone(), serde_json::json!({"domain": t.domain}))).collect::<serde_json::Map<_, _>>(),
        "users": directory.users,
        "service_accounts": directory.service_accounts,
    });
    std::fs::write(&dir_json, as_json.to_string()).unwrap();
    let script = sluice_testkit::source_path("tests/interop/read_tables.py");
    let out = Command::new(sluice_testkit::python())
        .arg(script)
        .arg(data_dir)
        .arg(&dir_json)
        .output()
        .expect("run the PyIceberg reader");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An HTTP answer, read whole.
pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: status {} body {}", self.status, self.text()))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A plain HTTP/1.1 request (`Connection: close`, the body read to EOF).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    http_within(addr, method, path, headers, body, None)
        .unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"))
}

/// [`http`] that gives up after `limit` (connect, send and read), with the
/// failure as an error instead of a panic.
pub fn http_within(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    limit: Option<Duration>,
) -> Result<HttpResponse, String> {
    let mut s = match limit {
        Some(l) => {
            let sock = addr.parse().map_err(|e| format!("address {addr}: {e}"))?;
            TcpStream::connect_timeout(&sock, l)
        }
        None => TcpStream::connect(addr),
    }
    .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(limit).map_err(|e| e.to_string())?;
    s.set_write_timeout(limit).map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    // The caller's own Host, if it gives one (tests of the Host check).
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    if let Some(b) = body {
        s.write_all(b).map_err(|e| format!("send: {e}"))?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response head in {} bytes", raw.len()))?;
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Starts `sluice serve` on `data_dir`, with `args` before the role (e.g.
/// `--config`) and `env` settings; waits until `/readyz` answers 200.
pub fn spawn_serve(data_dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Proc, String) {
    spawn_role(data_dir, args, "serve", env)
}

/// Starts the long-running `role` on `data_dir` on a free port, with `args`
/// before it and `env` settings; waits until `/readyz` answers 200.
pub fn spawn_role(
    data_dir: &Path,
    args: &[&str],
    role: &str,
    env: &[(&str, String)],
) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["--http", &addr])
        .args(args)
        .arg(role)
        .env_remove("SLUICE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let proc = Proc(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("start sluice {role}: {e}")),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(&addr, "/readyz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "sluice {role} never became ready on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (proc, addr)
}

/// A database of its own on the test Postgres server, for a catalog that two
/// processes share.
pub fn postgres_catalog() -> String {
    let base = sluice_testkit::postgres_uri();
    let db = sluice_testkit::unique("shared");
    let out = Command::new("psql")
        .args([base.as_str(), "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("CREATE DATABASE {db}"))
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{db}")
}

/// Settings for a warehouse in a bucket of its own (named after `prefix`)
/// on the test S3 store.
pub fn s3_warehouse_env(prefix: &str) -> Vec<(&'static str, String)> {
    let store = sluice_testkit::s3();
    let bucket = sluice_testkit::unique(prefix);
    vec![
        ("SLUICE_WAREHOUSE__LOCATION", format!("s3://{bucket}/wh")),
        ("SLUICE_WAREHOUSE__S3__ENDPOINT", store.endpoint),
        ("SLUICE_WAREHOUSE__S3__REGION", "us-east-1".to_string()),
        ("SLUICE_WAREHOUSE__S3__PATH_STYLE", "true".to_string()),
        ("SLUICE_WAREHOUSE__S3__ACCESS_KEY_ID", store.access_key),
        ("SLUICE_WAREHOUSE__S3__SECRET_ACCESS_KEY", store.secret_key),
    ]
}
