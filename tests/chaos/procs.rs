//! The processes a chaos run kills and starts again: sluice's roles, the
//! broker (nisshi on SQLite storage, so it keeps its log across restarts)
//! and the object store (SeaweedFS, its data on disk), each on fixed ports
//! so a restart comes back where its clients look for it.

use std::fs::OpenOptions;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use crate::common::free_port;

/// A long-running process, its output appended to `<run>/<name>.log` over
/// all its lives.
pub struct Role {
    pub name: &'static str,
    command: Box<dyn Fn() -> Command>,
    log: PathBuf,
    child: Option<Child>,
    /// The port it listens on, waited for after each start (0: none).
    pub port: u16,
}

impl Role {
    pub fn new(
        name: &'static str,
        run_dir: &Path,
        port: u16,
        command: impl Fn() -> Command + 'static,
    ) -> Role {
        Role {
            name,
            command: Box::new(command),
            log: run_dir.join(format!("{name}.log")),
            child: None,
            port,
        }
    }

    /// Starts it (with `env` on top of its command's), without waiting.
    pub fn spawn_with(&mut self, env: &[(&str, String)]) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("{}: {e}", self.log.display()));
        let mut cmd = (self.command)();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", self.name)),
        );
    }

    /// Starts it and waits until its port answers.
    pub fn start(&mut self) {
        self.spawn_with(&[]);
        self.wait_listening(Duration::from_secs(120));
    }

    pub fn wait_listening(&mut self, limit: Duration) {
        if self.port == 0 {
            return;
        }
        let deadline = Instant::now() + limit;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.exited() {
                panic!("{} exited while starting: {status}", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {} within {limit:?}",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9`, and reaped.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A stopped process is continued first, so it dies at once.
            signal(c.id(), "CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, name: &str) {
        if let Some(pid) = self.pid() {
            assert!(signal(pid, name), "kill -{name} {}", self.name);
        }
    }

    /// Its exit status if it exited on its own since the last look.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}

/// nisshi with SQLite storage in `dir`: what it acknowledged survives a
/// `kill -9`.
pub fn broker(run_dir: &Path) -> Role {
    let bin = std::env::var(sluice_testkit::NISSHI_ENV).unwrap_or_else(|_| {
        panic!(
            "{} is not set: the chaos run needs the nisshi binary (scripts/test sets it)",
            sluice_testkit::NISSHI_ENV
        )
    });
    let dir = run_dir.join("broker");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    Role::new("broker", run_dir, port, move || {
        let mut cmd = Command::new(&bin);
        cmd.current_dir(&dir)
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("CLUSTER_ID")
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://broker.db"]);
        cmd
    })
}

/// An S3 store of the run's own: SeaweedFS (`weed mini`, from the test
/// venv) with its data in `dir`, every port its own so it never meets the
/// suite's store, and one bucket.
pub struct S3 {
    pub role: Role,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
}

pub fn s3(run_dir: &Path) -> S3 {
    let weed = sluice_testkit::python()
        .parent()
        .map(|d| d.join("weed"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("no weed beside the test venv's python (scripts/test installs it)")
        });
    let dir = run_dir.join("s3");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let (access_key, secret_key) = ("chaos".to_string(), format!("chaos-{}", free_port()));
    std::fs::write(
        dir.join("s3.json"),
        serde_json::json!({"identities": [{"name": "chaos",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]})
        .to_string(),
    )
    .unwrap();
    let s3_port = free_port();
    // Every listener weed mini opens, so none collides with another store.
    let ports: Vec<(&str, u16)> = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "volume.port.public",
        "filer.port",
        "filer.port.grpc",
        "filer.port.public",
        "s3.port.grpc",
        "s3.port.https",
        "s3.port.iceberg",
        "s3.port.lance",
        "s3.metricsPort",
        "s3.debug.port",
        "admin.port",
        "admin.port.grpc",
        "debug.port",
        "webdav.port",
    ]
    .into_iter()
    .map(|flag| (flag, free_port()))
    .collect();
    let bucket = "chaos".to_string();
    let args_bucket = bucket.clone();
    let role = Role::new("s3", run_dir, s3_port, move || {
        let mut cmd = Command::new(&weed);
        cmd.current_dir(&dir)
            .arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-webdav=false",
                "-admin.ui=false",
            ])
            .arg(format!("-s3.config={}", dir.join("s3.json").display()))
            .arg(format!("-s3.port={s3_port}"))
            .arg(format!("-bucket={args_bucket}"));
        for (flag, port) in &ports {
            cmd.arg(format!("-{flag}={port}"));
        }
        cmd
    });
    S3 {
        role,
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        access_key,
        secret_key,
        bucket,
    }
}

impl S3 {
    /// The settings that put a warehouse in this store.
    pub fn warehouse_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "SLUICE_WAREHOUSE__LOCATION",
                format!("s3://{}/wh", self.bucket),
            ),
            ("SLUICE_WAREHOUSE__S3__ENDPOINT", self.endpoint.clone()),
            ("SLUICE_WAREHOUSE__S3__REGION", "us-east-1".into()),
            ("SLUICE_WAREHOUSE__S3__PATH_STYLE", "true".into()),
            (
                "SLUICE_WAREHOUSE__S3__ACCESS_KEY_ID",
                self.access_key.clone(),
            ),
            (
                "SLUICE_WAREHOUSE__S3__SECRET_ACCESS_KEY",
                self.secret_key.clone(),
            ),
        ]
    }
}
