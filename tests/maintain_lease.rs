//! `[maintenance] lease`: of several `sluice maintain` processes, only the
//! holder of a Kubernetes Lease (on a real kube-apiserver) runs passes; a
//! stopped holder hands over at once, a killed one once its lease expires,
//! and `maintain --once` waits for the lease or names its holder.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Proc, http_get, sluice_with};

const DURATION_SECS: u64 = 4;

fn lease_env(lease: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "KUBECONFIG",
            sluice_testkit::kubeconfig().display().to_string(),
        ),
        ("SLUICE_MAINTENANCE__LEASE", lease.into()),
        ("SLUICE_MAINTENANCE__LEASE_NAMESPACE", "default".into()),
        (
            "SLUICE_MAINTENANCE__LEASE_DURATION_SECS",
            DURATION_SECS.to_string(),
        ),
        ("SLUICE_MAINTENANCE__INTERVAL_SECS", "1".into()),
    ]
}

fn spawn_maintainer(data_dir: &Path, env: &[(&str, String)]) -> (Proc, String) {
    common::spawn_role(data_dir, &[], "maintain", env)
}

/// (lease held, passes completed) from a maintainer's `/metrics`.
fn state(addr: &str) -> (bool, u64) {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let mut held = false;
    let mut runs = 0.0;
    for line in body.lines() {
        if let Some(v) = line.strip_prefix("sluice_maintenance_lease_held ") {
            held = v.trim() == "1";
        } else if line.starts_with("sluice_maintenance_runs_total{") {
            runs += line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    (held, runs as u64)
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn one_maintainer_works_at_a_time_and_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let lease = format!("sluice-maintainer-{}", std::process::id());
    let env = lease_env(&lease);

    // A takes the free lease and runs passes (one a second).
    let (mut a, a_addr) = spawn_maintainer(dir.path(), &env);
    wait_until(
        "A holding the lease and running",
        Duration::from_secs(60),
        || {
            let (held, runs) = state(&a_addr);
            held && runs >= 3
        },
    );

    // B waits: through several of A's passes it runs none.
    let (mut b, b_addr) = spawn_maintainer(dir.path(), &env);
    let a_before = state(&a_addr).1;
    std::thread::sleep(Duration::from_secs(DURATION_SECS + 2));
    assert_eq!(state(&b_addr), (false, 0), "B must wait for the lease");
    assert!(state(&a_addr).1 > a_before, "A keeps maintaining");

    // A one-off pass names the holder once it gives up waiting.
    let started = Instant::now();
    let once = sluice_with(dir.path(), &["maintain", "--once"], &env);
    let stderr = String::from_utf8_lossy(&once.stderr);
    assert!(
        !once.status.success(),
        "--once ran beside a holder: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "the lease default/{lease} is held by another maintainer"
        )) && stderr.contains(&format!("-{})", a.0.id())),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(DURATION_SECS * 2 + 30));

    // SIGTERM: A releases the lease and B takes over well before it would
    // have expired.
    assert!(a.terminate().success());
    let stopped = Instant::now();
    wait_until("B taking over", Duration::from_secs(30), || {
        let (held, runs) = state(&b_addr);
        held && runs >= 1
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(DURATION_SECS + 3),
        "handover took {:?}",
        stopped.elapsed()
    );

    // kill -9: nothing releases the lease; `--once` waits for it to expire,
    // then runs its pass.
    let _ = b.0.kill();
    let _ = b.0.wait();
    let once = sluice_with(dir.path(), &["maintain", "--once"], &env);
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&once.stdout).unwrap();
    assert_eq!(
        reports.as_array().map(Vec::len),
        Some(sluice_schema::tables::ALL_TABLES.len()),
        "{reports}"
    );
}

/// Without a lease, `--once` does not touch Kubernetes at all (no
/// kubeconfig needed).
#[test]
fn without_a_lease_no_kubernetes_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let once = sluice_with(
        dir.path(),
        &["maintain", "--once"],
        &[("KUBECONFIG", "/nonexistent/kubeconfig".into())],
    );
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
}
