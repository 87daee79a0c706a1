//! The simulated cluster: workloads, their pods and containers, and when each
//! container instance started and how it ended.

use rand::Rng;
use serde::Serialize;

use super::rng::{self, GenRng};

/// How a container's application formats its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStyle {
    /// `{"ts":…,"level":"info","msg":…}` on stdout.
    Json,
    /// `time=… level=info msg="…"` on stdout.
    Logfmt,
    /// Spring/Log4j style `2026-11-21 14:32:08.123  INFO 1 --- [thread] logger : msg`.
    Java,
    /// Kubernetes klog `I1121 14:32:08.123456       1 file.go:123] msg` on stderr.
    Klog,
    /// A bare level word, then the message.
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WorkloadKind {
    StatefulSet,
    Deployment,
    Job,
}

struct Workload {
    namespace: &'static str,
    name: &'static str,
    kind: WorkloadKind,
    containers: &'static [&'static str],
    style: LogStyle,
    /// Log volume relative to the average pod.
    volume: f64,
}

#[rustfmt::skip]
const WORKLOADS: &[Workload] = &[
    Workload { namespace: "iomete-system", name: "iom-cluster", kind: WorkloadKind::StatefulSet, containers: &["iom-cluster"], style: LogStyle::Json, volume: 1.6 },
    Workload { namespace: "iomete-system", name: "iom-core", kind: WorkloadKind::Deployment, containers: &["iom-core", "envoy"], style: LogStyle::Json, volume: 2.0 },
    Workload { namespace: "iomete-system", name: "iom-identity", kind: WorkloadKind::Deployment, containers: &["iom-identity"], style: LogStyle::Logfmt, volume: 0.8 },
    Workload { namespace: "iomete-system", name: "iom-catalog", kind: WorkloadKind::Deployment, containers: &["iom-catalog"], style: LogStyle::Java, volume: 1.0 },
    Workload { namespace: "spark-jobs", name: "spark-etl-daily", kind: WorkloadKind::Job, containers: &["spark-kubernetes-driver"], style: LogStyle::Java, volume: 1.2 },
    Workload { namespace: "data-plane", name: "typesense", kind: WorkloadKind::StatefulSet, containers: &["typesense"], style: LogStyle::Plain, volume: 0.6 },
    Workload { namespace: "data-plane", name: "trino-coordinator", kind: WorkloadKind::Deployment, containers: &["trino"], style: LogStyle::Java, volume: 1.0 },
    Workload { namespace: "iomete-system", name: "iom-operator", kind: WorkloadKind::Deployment, containers: &["manager"], style: LogStyle::Klog, volume: 0.7 },
    Workload { namespace: "monitoring", name: "prometheus", kind: WorkloadKind::StatefulSet, containers: &["prometheus", "config-reloader"], style: LogStyle::Logfmt, volume: 0.5 },
    Workload { namespace: "kube-system", name: "coredns", kind: WorkloadKind::Deployment, containers: &["coredns"], style: LogStyle::Plain, volume: 0.3 },
];

/// How a container instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Termination {
    OOMKilled,
    Error,
}

impl Termination {
    pub fn exit_code(self) -> i32 {
        match self {
            Termination::OOMKilled => 137,
            Termination::Error => 2,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Termination::OOMKilled => "OOMKilled",
            Termination::Error => "Error",
        }
    }
}

/// One run of a container: `<restart>.log` holds its lines.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub restart: i32,
    /// Nanoseconds since the epoch.
    pub start_ns: i64,
    pub end_ns: i64,
    /// `None` for the instance still running at the end of the window.
    pub termination: Option<Termination>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Container {
    pub name: String,
    pub style: LogStyle,
    pub instances: Vec<Instance>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pod {
    pub index: usize,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub workload: String,
    pub workload_kind: WorkloadKind,
    /// Log lines per day relative to the configured average.
    pub volume: f64,
    pub containers: Vec<Container>,
}

const NS_PER_SEC: i64 = 1_000_000_000;
const NS_PER_MIN: i64 = 60 * NS_PER_SEC;
const NS_PER_DAY: i64 = 86_400 * NS_PER_SEC;

/// Builds the cluster for a window `[start_ns, end_ns)`.
pub fn build(seed: u64, pods: usize, start_ns: i64, end_ns: i64) -> Vec<Pod> {
    let nodes = pods.div_ceil(4).max(1);
    // Deployments share one ReplicaSet hash per workload, as in a real cluster.
    let mut rs_hash = Vec::new();
    for (w, _) in WORKLOADS.iter().enumerate() {
        let mut r = rng::stream(seed, "replicaset", w as u64);
        rs_hash.push(rng::kube_suffix(&mut r, 9));
    }
    (0..pods)
        .map(|index| {
            let mut r = rng::stream(seed, "pod", index as u64);
            let w_index = index % WORKLOADS.len();
            let w = &WORKLOADS[w_index];
            let replica = index / WORKLOADS.len();
            let name = match w.kind {
                WorkloadKind::StatefulSet => format!("{}-{replica}", w.name),
                WorkloadKind::Deployment => {
                    format!(
                        "{}-{}-{}",
                        w.name,
                        rs_hash[w_index],
                        rng::kube_suffix(&mut r, 5)
                    )
                }
                WorkloadKind::Job => format!("{}-{}-driver", w.name, rng::kube_suffix(&mut r, 5)),
            };
            let uid = rng::uuid(&mut r);
            let node = format!("node-{:02}", r.random_range(0..nodes) + 1);
            let containers = w
                .containers
                .iter()
                .enumerate()
                .map(|(c, cname)| {
                    // Only the main container crashes; sidecars run on.
                    let crashes = if c == 0 {
                        restart_plan(&mut r, index, start_ns, end_ns)
                    } else {
                        Vec::new()
                    };
                    Container {
                        name: cname.to_string(),
                        style: if c == 0 { w.style } else { LogStyle::Logfmt },
                        instances: instances(&mut r, start_ns, end_ns, &crashes),
                    }
                })
                .collect();
            Pod {
                index,
                namespace: w.namespace.to_string(),
                name,
                uid,
                node,
                workload: w.name.to_string(),
                workload_kind: w.kind,
                volume: w.volume * r.random_range(0.6..1.4),
                containers,
            }
        })
        .collect()
}

/// When the main container of a pod crashes, and why. Pod 0 is the demo's
/// troubled service: seven OOM kills, most of them in the last day.
fn restart_plan(
    r: &mut GenRng,
    pod_index: usize,
    start_ns: i64,
    end_ns: i64,
) -> Vec<(i64, Termination)> {
    let span = end_ns - start_ns;
    if span < 30 * NS_PER_MIN {
        return Vec::new();
    }
    let mut times = Vec::new();
    if pod_index == 0 {
        let last_day_start = (end_ns - NS_PER_DAY).max(start_ns);
        let early = if last_day_start > start_ns + NS_PER_DAY / 2 {
            2
        } else {
            0
        };
        times.extend(spread(r, start_ns, last_day_start, early));
        times.extend(spread(r, last_day_start, end_ns, 7 - early));
        return times
            .into_iter()
            .map(|t| (t, Termination::OOMKilled))
            .collect();
    }
    if !r.random_bool(0.3) {
        return Vec::new();
    }
    let n = r.random_range(1..=3);
    spread(r, start_ns, end_ns, n)
        .into_iter()
        .map(|t| {
            let why = if r.random_bool(0.5) {
                Termination::OOMKilled
            } else {
                Termination::Error
            };
            (t, why)
        })
        .collect()
}

/// `n` instants in `[from, to)`, one in the middle part of each of `n` equal
/// segments, so they are ordered and well apart.
fn spread(r: &mut GenRng, from: i64, to: i64, n: usize) -> Vec<i64> {
    if n == 0 {
        return Vec::new();
    }
    let seg = (to - from) / n as i64;
    (0..n as i64)
        .map(|i| from + i * seg + seg / 10 + r.random_range(0..(seg * 8 / 10).max(1)))
        .collect()
}

fn instances(
    r: &mut GenRng,
    start_ns: i64,
    end_ns: i64,
    crashes: &[(i64, Termination)],
) -> Vec<Instance> {
    let mut out = Vec::new();
    let mut begin = start_ns;
    for (k, (at, why)) in crashes.iter().enumerate() {
        out.push(Instance {
            restart: k as i32,
            start_ns: begin,
            end_ns: *at,
            termination: Some(*why),
        });
        // CrashLoopBackOff: 10 s doubling, capped at 5 min, plus start-up time.
        let backoff = ((10 * NS_PER_SEC) << k.min(5)).min(300 * NS_PER_SEC);
        begin = at + backoff + r.random_range(NS_PER_SEC..5 * NS_PER_SEC);
    }
    out.push(Instance {
        restart: crashes.len() as i32,
        start_ns: begin.min(end_ns),
        end_ns,
        termination: None,
    });
    out
}
