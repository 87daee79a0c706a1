//! What `sluice up --demo` prints for a newcomer works as printed: the
//! suggested commands name this binary so that a shell finds it even when
//! `sluice` is not on the PATH (as after `cargo run`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, free_port};

#[test]
fn the_commands_up_suggests_run_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--http", &addr, "up", "--demo"])
        .env_remove("SLUICE_CONFIG")
        // A PATH without the binary's directory: what a newcomer has.
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _up = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut suggested = Vec::new();
    while suggested.len() < 3 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("sluice up printed its suggestions");
        let line = line.trim();
        if line.contains(" --server http://") {
            suggested.push(line.to_string());
        }
    }
    for command in &suggested {
        let out = Command::new("/bin/sh")
            .args(["-c", command])
            .env("PATH", "/usr/bin:/bin")
            .env_remove("SLUICE_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
