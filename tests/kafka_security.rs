//! Kafka over TLS with SCRAM-SHA-512: a nisshi broker of the test's own that
//! requires both (its certificate signed by a CA made here, a SCRAM user in
//! its SQLite storage); `sluice collect` takes events on `POST /v1/events`
//! and `sluice write` commits them, both configured for the broker only
//! through `[kafka.properties]`. Clients without the password, or without
//! TLS, get nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_schema::tables::EVENT_LOGS;

mod common;
use common::{Proc, free_port, http, http_get, open_catalog, positions_sum};

const USER: &str = "sluice";
const PASSWORD: &str = "scram-test-password";

fn run(cmd: &mut Command, what: &str) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA, and a certificate for 127.0.0.1 it signed: (CA, certificate, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        run(
            Command::new("openssl").current_dir(dir).args(args),
            &format!("openssl {}", args[0]),
        )
    };
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-newkey",
        "rsa:2048",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=sluice-test-ca",
        "-days",
        "2",
    ]);
    openssl(&[
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "rsa:2048",
        "-keyout",
        "broker.key",
        "-out",
        "broker.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "broker.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "broker.crt",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    ]);
    (
        dir.join("ca.crt"),
        dir.join("broker.crt"),
        dir.join("broker.key"),
    )
}

/// A nisshi broker that accepts only TLS connections authenticated with
/// SCRAM-SHA-512 as [`USER`]; killed on drop.
struct SecureBroker {
    bootstrap: String,
    ca: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SecureBroker {
    fn start() -> SecureBroker {
        let bin = std::env::var(sluice_testkit::NISSHI_ENV).unwrap_or_else(|_| {
            panic!(
                "{} is not set: run the tests with scripts/test",
                sluice_testkit::NISSHI_ENV
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = certificates(dir.path());
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let broker = |extra: &[&str]| {
            let child = Command::new(&bin)
                .current_dir(dir.path())
                .env_remove("STORAGE_ENGINE")
                .env_remove("LISTENER_URL")
                .env_remove("ADVERTISED_LISTENER_URL")
                .env_remove("CLUSTER_ID")
                .args(["broker", "--silent", "--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                // Users live in the storage; SQLite keeps them across the restart.
                .args(["--storage-engine", "sqlite://nisshi.db"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting nisshi: {e}"));
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "nisshi did not listen");
                std::thread::sleep(Duration::from_millis(100));
            }
            child
        };
        // Without authentication first, to create the user (an authenticated
        // broker answers nothing before authentication).
        let mut open = broker(&[]);
        run(
            Command::new(&bin).args([
                "user",
                "create",
                "--broker",
                &url,
                "--mechanism",
                "scram512",
                USER,
                PASSWORD,
            ]),
            "nisshi user create",
        );
        let _ = open.kill();
        let _ = open.wait();
        let child = broker(&[
            "--authentication",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        SecureBroker {
            bootstrap: format!("127.0.0.1:{port}"),
            ca,
            child,
            _dir: dir,
        }
    }

    /// The `[kafka.properties]` a client needs, with `password`.
    fn properties(&self, password: &str) -> Vec<(&'static str, String)> {
        vec![
            ("security.protocol", "SASL_SSL".into()),
            ("sasl.mechanism", "SCRAM-SHA-512".into()),
            ("sasl.username", USER.into()),
            ("sasl.password", password.into()),
            ("ssl.ca.location", self.ca.display().to_string()),
        ]
    }

    fn client_config(&self, password: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in self.properties(password) {
            c.set(k, v);
        }
        c
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metadata(config: &ClientConfig) -> Result<usize, String> {
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .map(|m| m.brokers().len())
        .map_err(|e| e.to_string())
}

/// Starts `sluice --config CONFIG ROLE`; waits until `/readyz` answers 200.
fn spawn(config: &Path, data_dir: &Path, role: &str) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--http", &addr, role])
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_KAFKA")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start sluice {role}: {e}"));
    let mut proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(&addr, "/readyz");
        if status == 200 {
            break;
        }
        assert!(proc.0.try_wait().unwrap().is_none(), "sluice {role} exited");
        assert!(
            Instant::now() < deadline,
            "sluice {role} not ready over SASL_SSL within 60 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    (proc, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_and_writer_over_tls_with_scram() {
    let broker = SecureBroker::start();

    // The right credentials over TLS get in; a wrong password, or no TLS and
    // no SASL, do not.
    assert_eq!(metadata(&broker.client_config(PASSWORD)), Ok(1));
    assert!(metadata(&broker.client_config("wrong")).is_err());
    let mut plain = ClientConfig::new();
    plain.set("bootstrap.servers", &broker.bootstrap);
    assert!(metadata(&plain).is_err());

    let topics: Vec<String> = ["events", "podlogs", "k8s", "dlq"]
        .iter()
        .map(|t| sluice_testkit::unique(&format!("sec-{t}-")))
        .collect();
    let admin: AdminClient<DefaultClientContext> = broker.client_config(PASSWORD).create().unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics(new.iter(), &opts).await.unwrap() {
        r.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
    }

    let tmp = tempfile::tempdir().unwrap();
    let mut toml = format!(
        "[kafka]\nbootstrap = \"{}\"\ngroup_id = \"{}\"\n\n\
         [kafka.topics]\nevents = \"{}\"\npodlogs = \"{}\"\nk8s = \"{}\"\ndlq = \"{}\"\n\n\
         [collector]\npod_logs = false\n\n[kafka.properties]\n",
        broker.bootstrap,
        sluice_testkit::unique("g-sec-"),
        topics[0],
        topics[1],
        topics[2],
        topics[3],
    );
    for (k, v) in broker.properties(PASSWORD) {
        toml.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    let config = tmp.path().join("sluice.toml");
    std::fs::write(&config, toml).unwrap();

    let (mut collector, intake) = spawn(&config, &tmp.path().join("collector"), "collect");
    let writer_dir = tmp.path().join("writer");
    let (mut writer, writer_addr) = spawn(&config, &writer_dir, "write");

    let body: String = (0..50)
        .map(|i| {
            format!(
                "{{\"event_id\":\"sec-{i}\",\"occurred_at\":\"2026-11-23T10:00:00Z\",\"service\":\"orders\",\"action\":\"GET /v1/orders\",\"success\":true,\"user_id\":\"u{}\"}}\n",
                i % 7
            )
        })
        .collect();
    let r = http(
        &intake,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/x-ndjson")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["accepted"], 50, "{}", r.text());

    let catalog = open_catalog(&writer_dir).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while positions_sum(&catalog, &EVENT_LOGS).await != 50 {
        assert!(
            Instant::now() < deadline,
            "the writer did not commit the 50 events within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, metrics) = http_get(&writer_addr, "/metrics");
    assert!(metrics.contains("\nsluice_ready 1\n"), "{metrics}");
    assert!(
        metrics.contains("sluice_writer_rows_committed_total{table=\"platform_event_logs\"} 50"),
        "{metrics}"
    );
    assert!(collector.terminate().success());
    assert!(writer.terminate().success());
}
