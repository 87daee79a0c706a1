//! Helpers for integration tests that talk to real services.
//!
//! The test command (`scripts/test`) starts the services and exports where
//! they are. A test that needs a service it cannot find fails with the reason:
//! a missing service is a broken test run, never a skipped test.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// Environment variable holding the test broker's bootstrap address.
pub const KAFKA_ENV: &str = "SLUICE_TEST_KAFKA";
/// Environment variable holding the interop venv's Python interpreter.
pub const PYTHON_ENV: &str = "SLUICE_TEST_PYTHON";
/// Environment variable holding a Postgres URI (a superuser database URI).
pub const POSTGRES_ENV: &str = "SLUICE_TEST_POSTGRES";
/// Environment variables describing the S3-compatible store.
pub const S3_ENDPOINT_ENV: &str = "SLUICE_TEST_S3_ENDPOINT";
pub const S3_ACCESS_KEY_ENV: &str = "SLUICE_TEST_S3_ACCESS_KEY";
pub const S3_SECRET_KEY_ENV: &str = "SLUICE_TEST_S3_SECRET_KEY";
/// Environment variable holding the path of the nisshi broker binary, for
/// tests that need a broker of their own (to stop it).
pub const NISSHI_ENV: &str = "SLUICE_TEST_NISSHI";
/// Environment variable holding a kubeconfig for the test kube-apiserver.
pub const KUBECONFIG_ENV: &str = "SLUICE_TEST_KUBECONFIG";
/// Environment variable holding the Iceberg REST catalog URI.
pub const ICEBERG_REST_ENV: &str = "SLUICE_TEST_ICEBERG_REST";

fn required_env(name: &str, what: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs {what}. Run the test suite with \
             `scripts/test`, which starts it (or export {name} yourself)."
        ),
    }
}

/// The running test broker's bootstrap servers.
pub fn kafka_bootstrap() -> String {
    required_env(KAFKA_ENV, "a running Kafka-protocol broker")
}

/// A broker of the calling test's own (in-memory storage), killed on drop.
pub struct OwnBroker {
    pub bootstrap: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        let bin = required_env(NISSHI_ENV, "the nisshi broker binary");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let url = format!("tcp://127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let child = std::process::Command::new(bin)
            .current_dir(dir.path())
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("CLUSTER_ID")
            .args(["broker", "--silent", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://nisshi/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting nisshi: {e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nisshi did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        OwnBroker {
            bootstrap: format!("127.0.0.1:{port}"),
            child,
            _dir: dir,
        }
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the broker process.
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name} nisshi");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        // A stopped process does not die of SIGKILL until continued.
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file of the package under test, found at run time: cargo sets
/// `CARGO_MANIFEST_DIR` for test processes. The compile-time `env!` form would
/// bake in the path of whichever checkout first built a cached test binary.
pub fn source_path(relative: &str) -> PathBuf {
    PathBuf::from(required_env("CARGO_MANIFEST_DIR", "cargo test")).join(relative)
}

/// The interop venv's Python (with pyiceberg, duckdb, jsonschema, confluent-kafka).
pub fn python() -> PathBuf {
    PathBuf::from(required_env(PYTHON_ENV, "the interop Python venv"))
}

/// A kubeconfig (cluster admin) for the running test kube-apiserver.
pub fn kubeconfig() -> PathBuf {
    PathBuf::from(required_env(KUBECONFIG_ENV, "a running kube-apiserver"))
}

/// The etcd behind the test kube-apiserver (`http://host:port`), for tests
/// that compact it.
pub fn etcd_url() -> String {
    required_env("SLUICE_TEST_ETCD", "the kube-apiserver's etcd")
}

/// The running Postgres server's URI.
pub fn postgres_uri() -> String {
    required_env(POSTGRES_ENV, "a running Postgres server")
}

/// The running S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Store {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

pub fn s3() -> S3Store {
    S3Store {
        endpoint: required_env(S3_ENDPOINT_ENV, "a running S3-compatible store"),
        access_key: required_env(S3_ACCESS_KEY_ENV, "the S3 store's access key"),
        secret_key: required_env(S3_SECRET_KEY_ENV, "the S3 store's secret key"),
    }
}

/// The running Iceberg REST catalog's URI.
pub fn iceberg_rest_uri() -> String {
    required_env(ICEBERG_REST_ENV, "a running Iceberg REST catalog")
}

/// A name no other test uses (lowercase letters and digits).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// A topic that exists only for the calling test.
#[derive(Debug, Clone)]
pub struct TestTopic {
    pub bootstrap: String,
    pub name: String,
    pub partitions: i32,
}

impl TestTopic {
    /// Creates `<prefix>-<uuid>` with `partitions` partitions on the test broker.
    pub async fn create(prefix: &str, partitions: i32) -> TestTopic {
        TestTopic::create_on(&kafka_bootstrap(), prefix, partitions).await
    }

    /// [`TestTopic::create`] on the broker at `bootstrap` (a test's own).
    pub async fn create_on(bootstrap: &str, prefix: &str, partitions: i32) -> TestTopic {
        let bootstrap = bootstrap.to_string();
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("admin client for {bootstrap}: {e}"));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics([&topic], &opts)
            .await
            .unwrap_or_else(|e| panic!("create topic {name} on {bootstrap}: {e}"));
        for r in results {
            if let Err((t, code)) = r {
                panic!("create topic {t} on {bootstrap}: {code}");
            }
        }
        TestTopic {
            bootstrap,
            name,
            partitions,
        }
    }

    /// A client config pointed at the test broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }
}
