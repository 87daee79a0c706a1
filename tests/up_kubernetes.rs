//! `sluice up` without Kafka watches a real kube-apiserver as `sluice
//! collect --kubernetes` does: the watcher writes through the same outlet
//! trait into up's lifecycle write-ahead log, and the rows reach
//! `platform_events` once, across a restart of `up`. The test plays the
//! kubelet (no kubelet or scheduler runs), patching `pods/status` and
//! creating Events through the API.

mod common;

use std::time::Duration;

use common::free_port;
use common::kube::CrashingPod;
use common::up::{count, spawn_up, sql, wait_for};
use kube::api::{Patch, PatchParams, PostParams};

#[tokio::test(flavor = "multi_thread")]
async fn up_without_kafka_records_kubernetes_lifecycle_events() {
    let kubeconfig = sluice_testkit::kubeconfig();
    let fixture = CrashingPod::create("up").await;
    let (ns, pods, events) = (&fixture.ns, &fixture.pods, &fixture.events);
    let pp = PostParams::default();
    let terminated = CrashingPod::terminated;

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [
        ("SLUICE_COLLECTOR__KUBERNETES", "true".to_string()),
        (
            "SLUICE_COLLECTOR__KUBECONFIG",
            kubeconfig.display().to_string(),
        ),
        (
            "SLUICE_COLLECTOR__PODS_ROOT",
            tmp.path().join("no-pods").display().to_string(),
        ),
        ("SLUICE_CLUSTER", "kind-a".to_string()),
    ];
    let addr = format!("127.0.0.1:{}", free_port());
    let mut up = spawn_up(&data, &addr, false, &env);

    // An OOM kill and the kubelet's back-off event.
    let ps = PatchParams::default();
    pods.patch_status("api-0", &ps, &Patch::Merge(terminated(1, "OOMKilled", 137)))
        .await
        .unwrap();
    events
        .create(&pp, &serde_json::from_value(fixture.backoff(1)).unwrap())
        .await
        .unwrap();
    let in_ns = |extra: &str| {
        format!("SELECT count(*) AS n FROM platform_events WHERE namespace = '{ns}' {extra}")
    };
    wait_for(
        "the OOM kill and the back-off",
        Duration::from_secs(60),
        || count(&addr, &in_ns("AND reason IN ('OOMKilled', 'BackOff')")) >= 2,
    );
    let oom = sql(
        &addr,
        &format!(
            "SELECT cluster, kind, name, container, exit_code, restart_count FROM platform_events \
             WHERE namespace = '{ns}' AND reason = 'OOMKilled'"
        ),
    );
    assert_eq!(oom.len(), 1, "{oom:?}");
    assert_eq!(oom[0]["cluster"], "kind-a");
    assert_eq!(oom[0]["name"], "api-0");
    assert_eq!(oom[0]["container"], "app");
    assert_eq!(oom[0]["exit_code"], 137);
    assert_eq!(oom[0]["restart_count"], 1);
    assert!(up.terminate().success());

    // While up is down, another crash; a restarted up resumes the watch
    // from its saved state and records only the new one.
    pods.patch_status("api-0", &ps, &Patch::Merge(terminated(2, "Error", 1)))
        .await
        .unwrap();
    let mut up = spawn_up(&data, &addr, false, &env);
    wait_for(
        "the crash while up was down",
        Duration::from_secs(60),
        || count(&addr, &in_ns("AND reason = 'Error'")) >= 1,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&addr, &in_ns("AND reason = 'OOMKilled'")), 1);
    assert_eq!(count(&addr, &in_ns("AND reason = 'BackOff'")), 1);
    assert_eq!(count(&addr, &in_ns("AND reason = 'Error'")), 1);
    assert_eq!(
        count(
            &addr,
            &format!(
                "SELECT count(*) - count(DISTINCT event_id) AS n FROM platform_events WHERE namespace = '{ns}'"
            )
        ),
        0,
        "no record twice"
    );
    assert!(up.terminate().success());
}
