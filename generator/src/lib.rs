//! `sluice gen`: a deterministic synthetic cluster. The same `--seed` and
//! `--until` give the same bytes, at any scale, so demos, tests and
//! benchmarks share one source of realistic data.
//!
//! Output layout under `--out DIR`:
//! - `var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log[.<stamp>[.gz]]`
//!   CRI log files, as kubelet and containerd leave them;
//! - `events/<YYYY-MM-DD>.ndjson` platform API events (raw event contract);
//! - `directory.yaml` the principal directory (user → team → domain);
//! - `k8s-events.ndjson` lifecycle events (lifecycle contract);
//! - `manifest.json` what was generated: instances, files, spikes, counts.

mod app_logs;
mod cluster;
mod events;
mod lifecycle;
pub mod live;
pub mod log_gc;
mod pod_logs;
mod principals;
mod rng;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rayon::prelude::*;
use serde::Serialize;

pub use cluster::{LogStyle, Termination};
pub use events::Spike;
pub use pod_logs::{CRI_MAX_LINE, ContainerReport, InstanceReport};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub out: PathBuf,
    pub pods: usize,
    pub events: u64,
    pub days: u32,
    /// End of the window (exclusive); the data covers the `days` before it.
    pub until: DateTime<Utc>,
    pub seed: u64,
    pub cluster: String,
    /// Average logical log lines per pod per day.
    pub lines_per_pod_day: u64,
    /// Rotate a container log file once it reaches this many bytes.
    pub rotate_bytes: u64,
    /// Replace earlier generated output in `out`.
    pub force: bool,
    /// 0: a whole generation. Part k > 0 keeps the seed's cluster,
    /// principals and load shape and draws other API events (other ids),
    /// so parts generated and imported one after another add up to a
    /// history too large to hold as JSON on disk at once (the query
    /// benchmark's 100 M events).
    pub events_part: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodReport {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub node: String,
    pub workload: String,
    pub containers: Vec<ContainerReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventFileReport {
    pub path: String,
    pub events: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub pods: u64,
    pub containers: u64,
    pub instances: u64,
    pub restarts: u64,
    pub log_files: u64,
    pub rotated_files: u64,
    pub gzipped_files: u64,
    pub log_lines: u64,
    pub physical_log_lines: u64,
    pub partial_lines: u64,
    pub log_bytes: u64,
    pub events: u64,
    pub event_files: u64,
    pub event_bytes: u64,
    pub lifecycle_events: u64,
}

/// Everything generated, written as `manifest.json`: the ground truth tests
/// and benchmarks check the pipeline against.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub seed: u64,
    pub cluster: String,
    pub window_start: String,
    pub until: String,
    pub days: u32,
    pub totals: Totals,
    /// The injected spikes; the first is the largest.
    pub spikes: Vec<Spike>,
    pub pods: Vec<PodReport>,
    pub event_files: Vec<EventFileReport>,
}

const OUTPUTS: [&str; 5] = [
    "var/log/pods",
    "events",
    "directory.yaml",
    "k8s-events.ndjson",
    "manifest.json",
];

fn prepare_out_dir(cfg: &GenConfig) -> anyhow::Result<()> {
    fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let existing: Vec<&str> = OUTPUTS
        .iter()
        .copied()
        .filter(|o| cfg.out.join(o).exists())
        .collect();
    if !existing.is_empty() {
        if !cfg.force {
            bail!(
                "{} already holds generated data ({}); pass --force to replace it",
                cfg.out.display(),
                existing.join(", ")
            );
        }
        for o in existing {
            let p = cfg.out.join(o);
            let result = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            result.with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

enum Job<'a> {
    Container {
        pod: &'a cluster::Pod,
        index: usize,
    },
    Events {
        date: String,
        from: usize,
        to: usize,
        chunk: u64,
    },
}

enum JobResult {
    Container(usize, ContainerReport),
    Events(EventFileReport),
}

/// Expected logical lines, for the progress bar's length.
fn expected_work(cfg: &GenConfig, pods: &[cluster::Pod]) -> u64 {
    let lines: f64 = pods
        .iter()
        .map(|p| {
            let sidecars = p.containers.len().saturating_sub(1) as f64;
            (1.0 + 0.3 * sidecars) * p.volume * cfg.lines_per_pod_day as f64 * cfg.days as f64
        })
        .sum();
    lines as u64 + cfg.events
}

/// Generates everything; `progress` is told how much work each step did and
/// is given the expected total first.
pub fn generate(
    cfg: &GenConfig,
    progress: &(dyn Fn(u64) + Sync),
    set_total: &dyn Fn(u64),
) -> anyhow::Result<Manifest> {
    if cfg.days == 0 {
        bail!("--days must be at least 1");
    }
    if cfg.pods == 0 {
        bail!("--pods must be at least 1");
    }
    prepare_out_dir(cfg)?;
    let until = DateTime::from_timestamp(cfg.until.timestamp(), 0).unwrap_or(cfg.until);
    let window_start = until - Duration::days(cfg.days as i64);
    let start_ns = window_start.timestamp() * 1_000_000_000;
    let end_ns = until.timestamp() * 1_000_000_000;
    let pods = cluster::build(cfg.seed, cfg.pods, start_ns, end_ns);
    let principals = principals::build(cfg.seed, events::ENDPOINTS.len());
    let minutes = cfg.days as usize * 1440;
    let plan = events::LoadPlan::new(cfg.seed, cfg.events, window_start, minutes, &principals);
    set_total(expected_work(cfg, &pods));

    // What the operator pods see of other pods' terminations.
    let mut observed: Vec<pod_logs::ObservedTermination> = pods
        .iter()
        .flat_map(|p| {
            p.containers.iter().flat_map(move |c| {
                c.instances.iter().filter_map(move |i| {
                    i.termination.map(|why| pod_logs::ObservedTermination {
                        ts_ns: i.end_ns + 500_000_000,
                        namespace: p.namespace.clone(),
                        pod: p.name.clone(),
                        container: c.name.clone(),
                        why,
                        restart_count: i.restart + 1,
                    })
                })
            })
        })
        .collect();
    observed.sort_by_key(|o| o.ts_ns);

    let mut jobs = Vec::new();
    for pod in &pods {
        for index in 0..pod.containers.len() {
            jobs.push(Job::Container { pod, index });
        }
    }
    let events_dir = cfg.out.join("events");
    fs::create_dir_all(&events_dir)
        .with_context(|| format!("creating {}", events_dir.display()))?;
    let mut m = 0;
    while m < minutes {
        let date = (window_start + Duration::minutes(m as i64)).date_naive();
        let mut end = m;
        while end < minutes && (window_start + Duration::minutes(end as i64)).date_naive() == date {
            end += 1;
        }
        jobs.push(Job::Events {
            date: date.format("%Y-%m-%d").to_string(),
            from: m,
            to: end,
            chunk: date.to_epoch_days() as u64,
        });
        m = end;
    }

    let volume = pod_logs::LogVolume {
        lines_per_pod_day: cfg.lines_per_pod_day as f64,
        rotate_bytes: cfg.rotate_bytes.max(4096),
    };
    let results: Vec<JobResult> = jobs
        .par_iter()
        .map(|job| -> anyhow::Result<JobResult> {
            match job {
                Job::Container { pod, index } => {
                    let container = &pod.containers[*index];
                    let mut r =
                        rng::stream(cfg.seed, "container-logs", (pod.index * 16 + index) as u64);
                    let seen: &[pod_logs::ObservedTermination] =
                        if pod.workload == "iom-operator" && *index == 0 {
                            &observed
                        } else {
                            &[]
                        };
                    let report = pod_logs::write_container(
                        &cfg.out,
                        pod,
                        container,
                        *index > 0,
                        seen,
                        &volume,
                        &mut r,
                        progress,
                    )?;
                    Ok(JobResult::Container(pod.index, report))
                }
                Job::Events {
                    date,
                    from,
                    to,
                    chunk,
                } => {
                    let rel = format!("events/{date}.ndjson");
                    let mut r = match cfg.events_part {
                        0 => rng::stream(cfg.seed, "events", *chunk),
                        part => rng::stream(cfg.seed, &format!("events/part-{part}"), *chunk),
                    };
                    let n = events::write_minutes(
                        &cfg.out.join(&rel),
                        &plan,
                        *from,
                        *to,
                        &principals,
                        &mut r,
                        progress,
                    )?;
                    Ok(JobResult::Events(EventFileReport {
                        path: rel,
                        events: n,
                    }))
                }
            }
        })
        .collect::<anyhow::Result<_>>()?;

    let mut pod_reports: Vec<PodReport> = pods
        .iter()
        .map(|p| PodReport {
            namespace: p.namespace.clone(),
            pod: p.name.clone(),
            uid: p.uid.clone(),
            node: p.node.clone(),
            workload: p.workload.clone(),
            containers: Vec::new(),
        })
        .collect();
    let mut event_files = Vec::new();
    for r in results {
        match r {
            JobResult::Container(p, report) => pod_reports[p].containers.push(report),
            JobResult::Events(e) => event_files.push(e),
        }
    }

    let directory = principals::directory(&principals);
    let directory_yaml = directory.to_yaml().context("rendering directory.yaml")?;
    write_file(&cfg.out.join("directory.yaml"), directory_yaml.as_bytes())?;

    let actor = directory
        .users
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| "admin".into());
    let lifecycle = lifecycle::events(cfg.seed, &cfg.cluster, &pods, start_ns, &actor);
    let mut k8s = Vec::new();
    for e in &lifecycle {
        serde_json::to_writer(&mut k8s, &e.to_json())?;
        k8s.push(b'\n');
    }
    write_file(&cfg.out.join("k8s-events.ndjson"), &k8s)?;

    let mut totals = Totals {
        pods: pods.len() as u64,
        lifecycle_events: lifecycle.len() as u64,
        event_files: event_files.len() as u64,
        ..Default::default()
    };
    for p in &pod_reports {
        for c in &p.containers {
            totals.containers += 1;
            for i in &c.instances {
                totals.instances += 1;
                totals.restarts += u64::from(i.termination.is_some());
                totals.log_files += i.files.len() as u64;
                totals.rotated_files +=
                    i.files.iter().filter(|f| !f.ends_with(".log")).count() as u64;
                totals.gzipped_files +=
                    i.files.iter().filter(|f| f.ends_with(".gz")).count() as u64;
                totals.log_lines += i.lines;
                totals.physical_log_lines += i.physical_lines;
                totals.partial_lines += i.partial_lines;
                totals.log_bytes += i.bytes;
            }
        }
    }
    for e in &event_files {
        totals.events += e.events;
        totals.event_bytes += fs::metadata(cfg.out.join(&e.path))
            .map(|m| m.len())
            .unwrap_or(0);
    }
    let manifest = Manifest {
        seed: cfg.seed,
        cluster: cfg.cluster.clone(),
        window_start: window_start.to_rfc3339_opts(SecondsFormat::Secs, true),
        until: until.to_rfc3339_opts(SecondsFormat::Secs, true),
        days: cfg.days,
        totals,
        spikes: plan.spikes.clone(),
        pods: pod_reports,
        event_files,
    };
    let mut json = serde_json::to_vec_pretty(&manifest)?;
    json.push(b'\n');
    write_file(&cfg.out.join("manifest.json"), &json)?;
    Ok(manifest)
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
