//! The Kubernetes lifecycle events that match the simulated cluster: every
//! restart (termination, back-off, start), a resource change and scaling.

use sluice_schema::raw::LifecycleEvent;

use super::cluster::{Pod, WorkloadKind};
use super::rng;

const NS_TO_US: i64 = 1000;

/// All lifecycle events, ordered by time.
pub fn events(
    seed: u64,
    cluster: &str,
    pods: &[Pod],
    window_start_ns: i64,
    actor: &str,
) -> Vec<LifecycleEvent> {
    let mut r = rng::stream(seed, "lifecycle", 0);
    let mut out = Vec::new();
    let mut event = |at_ns: i64, pod: &Pod, kind: &str, name: &str, reason: &str, warning: bool| {
        LifecycleEvent {
            event_id: rng::uuid(&mut r),
            occurred_at: at_ns / NS_TO_US,
            cluster: cluster.to_string(),
            namespace: pod.namespace.clone(),
            kind: kind.to_string(),
            name: name.to_string(),
            container: None,
            reason: reason.to_string(),
            event_type: if warning { "Warning" } else { "Normal" }.to_string(),
            message: None,
            restart_count: None,
            actor: None,
            exit_code: None,
        }
    };
    for pod in pods {
        for c in &pod.containers {
            for (i, inst) in c.instances.iter().enumerate() {
                if i > 0 {
                    out.push(LifecycleEvent {
                        container: Some(c.name.clone()),
                        message: Some(format!("Started container {}", c.name)),
                        restart_count: Some(inst.restart),
                        ..event(inst.start_ns, pod, "Pod", &pod.name, "Started", false)
                    });
                }
                let Some(why) = inst.termination else {
                    continue;
                };
                let count = inst.restart + 1;
                out.push(LifecycleEvent {
                    container: Some(c.name.clone()),
                    message: Some(format!(
                        "Container {} in pod {} terminated: {} (exit code {})",
                        c.name,
                        pod.name,
                        why.as_str(),
                        why.exit_code()
                    )),
                    restart_count: Some(count),
                    exit_code: Some(why.exit_code()),
                    ..event(inst.end_ns, pod, "Pod", &pod.name, why.as_str(), true)
                });
                out.push(LifecycleEvent {
                    container: Some(c.name.clone()),
                    message: Some(format!(
                        "Back-off restarting failed container {} in pod {}",
                        c.name, pod.name
                    )),
                    restart_count: Some(count),
                    ..event(
                        inst.end_ns + 1_000_000_000,
                        pod,
                        "Pod",
                        &pod.name,
                        "BackOff",
                        true,
                    )
                });
            }
        }
        if pod.index == 0 {
            // The memory limit raised before the worst day, as in the console.
            let first_crash = pod.containers[0].instances[0].end_ns;
            let at = window_start_ns.max(first_crash - 13 * 60 * 1_000_000_000);
            out.push(LifecycleEvent {
                message: Some("Resources updated: memory limit 2000Mi -> 4000Mi".into()),
                actor: Some(actor.to_string()),
                ..event(
                    at,
                    pod,
                    pod_kind(pod),
                    &pod.workload,
                    "ResourcesUpdated",
                    false,
                )
            });
        }
        if pod.workload_kind == WorkloadKind::Deployment && pod.index < 10 {
            let rs = pod
                .name
                .rsplit_once('-')
                .map_or(pod.name.as_str(), |(rs, _)| rs)
                .to_string();
            out.push(LifecycleEvent {
                message: Some(format!(
                    "Scaled up replica set {rs} to {}",
                    1 + pod.index % 3
                )),
                actor: Some("deployment-controller".into()),
                ..event(
                    window_start_ns + 60_000_000_000,
                    pod,
                    "Deployment",
                    &pod.workload,
                    "ScalingReplicaSet",
                    false,
                )
            });
        }
    }
    out.sort_by(|a, b| {
        a.occurred_at
            .cmp(&b.occurred_at)
            .then_with(|| a.event_id.cmp(&b.event_id))
    });
    out
}

fn pod_kind(pod: &Pod) -> &'static str {
    match pod.workload_kind {
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::Job => "Job",
    }
}
