//! `sluice up --demo`: the `sluice gen` model in real time. Pods write CRI
//! log files under `<out>/var/log/pods` as kubelet would (rotations, a gzip
//! of the older rotation, partial lines), one container is OOMKilled within
//! `first_oom` of the start and another every `oom_every`, gateways send
//! platform events with a periodic spike of one principal, and each restart
//! produces its lifecycle events. Old rotations and old instances' logs are
//! removed as kubelet removes them (see [`crate::log_gc`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde::Serialize;
use sluice_ingest::outlet::RecordOutlet;
use sluice_schema::raw::LifecycleEvent;

use super::app_logs;
use super::cluster::{self, Pod, Termination};
use super::events::{self, LoadPlan};
use super::log_gc::LogGc;
use super::pod_logs::CriFile;
use super::principals;
use super::rng::{self, GenRng};

/// What the demo emits and how fast.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `var/log/pods` and `directory.yaml` go here.
    pub out: PathBuf,
    pub seed: u64,
    pub cluster: String,
    pub pods: usize,
    /// Log lines per second per pod (sidecars write a third of it).
    pub lines_per_pod_second: f64,
    pub events_per_minute: u64,
    pub rotate_bytes: u64,
    pub first_oom: Duration,
    pub oom_every: Duration,
    /// The spike principal's burst repeats this often, for `spike_minutes`.
    pub spike_every_minutes: usize,
    pub spike_minutes: usize,
    /// The minute the first spike starts in.
    pub first_spike_minute: usize,
}

impl LiveConfig {
    pub fn new(out: PathBuf) -> Self {
        Self {
            out,
            seed: 42,
            cluster: "demo".into(),
            pods: 12,
            lines_per_pod_second: 4.0,
            events_per_minute: 600,
            rotate_bytes: 1 << 20,
            first_oom: Duration::from_secs(20),
            oom_every: Duration::from_secs(150),
            spike_every_minutes: 10,
            spike_minutes: 3,
            first_spike_minute: 0,
        }
    }

    /// The same demo at `factor` times the load.
    pub fn scaled(mut self, factor: f64) -> Self {
        self.lines_per_pod_second *= factor;
        self.events_per_minute = (self.events_per_minute as f64 * factor) as u64;
        self
    }
}

/// Where the demo's events and lifecycle events go (the HTTP intake's
/// write-ahead log in `sluice up`). Each call returns once the records are
/// durable.
pub struct LiveOutlet {
    /// The runtime the outlets' futures run on (the demo is a thread).
    pub handle: tokio::runtime::Handle,
    pub events: Arc<dyn RecordOutlet>,
    pub lifecycle: Arc<dyn RecordOutlet>,
    /// Set when the demo should stop: a refused send stops retrying.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
}

impl LiveOutlet {
    /// Sends until the outlet takes the records, as a gateway retries an
    /// intake that answers 503 (a full disk under the write-ahead log):
    /// every second, until it does or the demo stops.
    fn send(&self, outlet: &Arc<dyn RecordOutlet>, records: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let refs: Vec<(&[u8], &[u8])> = records.iter().map(|r| (&b""[..], r.as_slice())).collect();
        let mut refused = false;
        loop {
            match self.handle.block_on(outlet.send(&refs)) {
                Ok(()) => {
                    if refused {
                        tracing::info!("the demo's records are taken again");
                    }
                    return Ok(());
                }
                Err(e) if self.stop.load(std::sync::atomic::Ordering::Relaxed) => {
                    return Err(e.into());
                }
                Err(e) => {
                    if !refused {
                        tracing::warn!(error = %e, "the demo's records were refused; retrying every second");
                        refused = true;
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }

    fn events(&mut self, records: Vec<Vec<u8>>) -> anyhow::Result<()> {
        self.send(&self.events, records)
    }

    fn lifecycle(&mut self, records: Vec<Vec<u8>>) -> anyhow::Result<()> {
        self.send(&self.lifecycle, records)
    }
}

/// Facts a user of the demo needs: who spikes, which pod was killed first.
#[derive(Debug, Clone, Serialize)]
pub struct LiveFacts {
    pub spike_principal: String,
    pub first_oom_namespace: String,
    pub first_oom_pod: String,
    pub first_oom_container: String,
    pub pods_root: String,
    pub directory: String,
}

struct Live {
    pod: usize,
    container: usize,
    restart: i32,
    file: Option<CriFile>,
    /// Lines owed (fractional) at this container's rate.
    owed: f64,
    /// Down after a crash until this time (ns).
    down_until: Option<i64>,
    previous: Option<Termination>,
    logger: String,
    dir: PathBuf,
}

pub struct LiveDemo {
    config: LiveConfig,
    pods: Vec<Pod>,
    principals: Vec<principals::Principal>,
    plan: LoadPlan,
    facts: LiveFacts,
}

/// How often old log files are looked for (kubelet's log manager checks
/// every 10 s).
const GC_EVERY: Duration = Duration::from_secs(10);

fn now_ns() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl LiveDemo {
    /// Lays out the demo cluster and writes its principal directory.
    pub fn prepare(config: LiveConfig) -> anyhow::Result<Self> {
        let start = Utc::now();
        let start_ns = now_ns();
        let day_ns = 86_400 * 1_000_000_000i64;
        let pods = cluster::build(config.seed, config.pods.max(1), start_ns, start_ns + day_ns);
        let principals = principals::build(config.seed, events::ENDPOINTS.len());
        let minute0 = DateTime::from_timestamp(start.timestamp() / 60 * 60, 0).unwrap_or(start);
        let minutes = 1440;
        let mut plan = LoadPlan::new(
            config.seed,
            config.events_per_minute * minutes as u64,
            minute0,
            minutes,
            &principals,
        );
        let spike = plan
            .spikes
            .first()
            .cloned()
            .context("the load plan has no spike")?;
        // The headline spike repeats from the first minute on, so the
        // attribution and guardrail pages show it at once.
        plan.spikes = (0..minutes / config.spike_every_minutes.max(1))
            .map(|k| config.first_spike_minute + k * config.spike_every_minutes.max(1))
            .filter(|m| *m < minutes)
            .map(|start_minute| {
                let from = minute0 + chrono::Duration::minutes(start_minute as i64);
                events::Spike {
                    start_minute,
                    minutes: config.spike_minutes.max(1),
                    start: from.to_rfc3339_opts(SecondsFormat::Secs, true),
                    end: (from + chrono::Duration::minutes(config.spike_minutes as i64))
                        .to_rfc3339_opts(SecondsFormat::Secs, true),
                    ..spike.clone()
                }
            })
            .collect();
        let directory = principals::directory(&principals);
        let directory_path = config.out.join("directory.yaml");
        let pods_root = config.out.join("var/log/pods");
        std::fs::create_dir_all(&pods_root)
            .with_context(|| format!("creating {}", pods_root.display()))?;
        let yaml = directory.to_yaml().context("rendering directory.yaml")?;
        std::fs::write(&directory_path, yaml)
            .with_context(|| format!("writing {}", directory_path.display()))?;
        let first = &pods[0];
        let facts = LiveFacts {
            spike_principal: spike.principal.clone(),
            first_oom_namespace: first.namespace.clone(),
            first_oom_pod: first.name.clone(),
            first_oom_container: first.containers[0].name.clone(),
            pods_root: config.out.join("var/log/pods").display().to_string(),
            directory: directory_path.display().to_string(),
        };
        Ok(Self {
            config,
            pods,
            principals,
            plan,
            facts,
        })
    }

    pub fn facts(&self) -> &LiveFacts {
        &self.facts
    }

    pub fn pods_root(&self) -> PathBuf {
        self.config.out.join("var/log/pods")
    }

    /// Emits until `stop` is set. Restarts continue from the restart numbers
    /// already on disk, so a restarted demo appends new instances.
    pub fn run(self, outlet: &mut LiveOutlet, stop: &AtomicBool) -> anyhow::Result<()> {
        let cfg = &self.config;
        let mut r = rng::stream(cfg.seed ^ now_ns() as u64, "live", 0);
        let mut live = Vec::new();
        for (pi, pod) in self.pods.iter().enumerate() {
            for (ci, c) in pod.containers.iter().enumerate() {
                let dir = cfg.out.join(format!(
                    "var/log/pods/{}_{}_{}/{}",
                    pod.namespace, pod.name, pod.uid, c.name
                ));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let restart = next_restart(&dir);
                live.push(Live {
                    pod: pi,
                    container: ci,
                    restart,
                    file: None,
                    owed: 0.0,
                    down_until: None,
                    previous: None,
                    logger: format!("{}.{}", pod.workload, c.name).replace('-', "_"),
                    dir,
                });
            }
        }
        let mut gc = LogGc::open(&cfg.out)?;
        let mut flush_failing = false;
        let mut next_gc = now_ns();
        let started = now_ns();
        let mut next_oom = started + cfg.first_oom.as_nanos() as i64;
        let mut first_oom = true;
        let mut minute_index = usize::MAX;
        let mut minute_events: Vec<Vec<u8>> = Vec::new();
        let mut minute_sent = 0usize;
        let mut events_rng = rng::stream(cfg.seed ^ started as u64, "live-events", 0);
        let mut last = started;
        let tick = Duration::from_millis(200);
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(tick);
            let now = now_ns();
            let elapsed_s = (now - last) as f64 / 1e9;
            last = now;

            // Pod logs.
            let mut lifecycle = Vec::new();
            for l in live.iter_mut() {
                let pod = &self.pods[l.pod];
                let c = &pod.containers[l.container];
                if let Some(until) = l.down_until {
                    if now < until {
                        continue;
                    }
                    l.down_until = None;
                    l.restart += 1;
                    lifecycle.push(self.event(
                        &mut r,
                        now,
                        l,
                        "Started",
                        false,
                        format!("Started container {}", c.name),
                        Some(l.restart),
                        None,
                    ));
                }
                if l.file.is_none() {
                    let mut f = CriFile::create(&l.dir, l.restart, cfg.rotate_bytes)
                        .with_context(|| format!("creating a log file in {}", l.dir.display()))?;
                    let mut t = now;
                    for line in app_logs::startup_lines(
                        c.style,
                        t,
                        &c.name,
                        l.restart,
                        l.previous.take(),
                        &l.logger,
                    ) {
                        f.write(t, &line)?;
                        t += 1_000_000;
                    }
                    l.file = Some(f);
                }
                let rate = cfg.lines_per_pod_second
                    * pod.volume.clamp(0.2, 3.0)
                    * if l.container > 0 { 0.3 } else { 1.0 };
                l.owed += rate * elapsed_s;
                let n = l.owed.floor() as usize;
                l.owed -= n as f64;
                let step = (elapsed_s * 1e9) as i64 / (n as i64 + 1);
                if let Some(f) = l.file.as_mut() {
                    for i in 0..n {
                        let t = now - (elapsed_s * 1e9) as i64 + step * (i as i64 + 1);
                        let line = if r.random_ratio(1, 2500) {
                            app_logs::oversized_line(&mut r, c.style, t, &l.logger)
                        } else {
                            app_logs::normal_line(&mut r, c.style, t, &l.logger)
                        };
                        f.write(t, &line)?;
                    }
                }
            }

            // An OOM kill: the first in the first pod, then any container.
            if now >= next_oom && !live.is_empty() {
                let i = if first_oom {
                    0
                } else {
                    r.random_range(0..live.len())
                };
                first_oom = false;
                next_oom = now + cfg.oom_every.as_nanos() as i64;
                let l = &mut live[i];
                if l.down_until.is_none()
                    && let Some(mut f) = l.file.take()
                {
                    let c = &self.pods[l.pod].containers[l.container];
                    let why = Termination::OOMKilled;
                    let tail = app_logs::crash_tail(&mut r, c.style, now, why, &l.logger);
                    let mut t = now;
                    for line in &tail {
                        t += 2_000_000;
                        f.write(t, line)?;
                    }
                    f.flush()?;
                    let pod_name = self.pods[l.pod].name.clone();
                    let count = l.restart + 1;
                    lifecycle.push(self.event(
                        &mut r,
                        t + 1_000_000,
                        l,
                        why.as_str(),
                        true,
                        format!(
                            "Container {} in pod {pod_name} terminated: {} (exit code {})",
                            c.name,
                            why.as_str(),
                            why.exit_code()
                        ),
                        Some(count),
                        Some(why.exit_code()),
                    ));
                    lifecycle.push(self.event(
                        &mut r,
                        t + 1_000_000_000,
                        l,
                        "BackOff",
                        true,
                        format!(
                            "Back-off restarting failed container {} in pod {pod_name}",
                            c.name
                        ),
                        Some(count),
                        None,
                    ));
                    l.previous = Some(why);
                    l.down_until = Some(now + 2_000_000_000);
                }
            }
            // A full disk: what could not be written stays buffered (a
            // BufWriter keeps what a failed write left) and goes out with a
            // later flush; the demo goes on, as containers do.
            let mut flushed = Ok(());
            for l in live.iter_mut() {
                if let Some(f) = l.file.as_mut()
                    && let Err(e) = f.flush()
                {
                    flushed = Err(e);
                }
            }
            match flushed {
                Err(e) if !flush_failing => {
                    flush_failing = true;
                    tracing::warn!(error = %e, "writing the demo's pod logs failed; retrying");
                }
                Ok(()) if flush_failing => {
                    flush_failing = false;
                    tracing::info!("the demo's pod logs are written again");
                }
                _ => {}
            }
            if now >= next_gc {
                next_gc = now + GC_EVERY.as_nanos() as i64;
                // Housekeeping: a failure (a full disk) is retried at the
                // next sweep, not the end of the demo.
                for l in &live {
                    if let Err(e) = gc.sweep(&l.dir, l.restart) {
                        tracing::warn!(
                            dir = %l.dir.display(),
                            error = %format!("{e:#}"),
                            "removing old demo log files failed; retrying in {} s",
                            GC_EVERY.as_secs()
                        );
                    }
                }
            }
            if !lifecycle.is_empty() {
                outlet.lifecycle(lifecycle)?;
            }

            // Platform events: a minute of the plan, released as it passes.
            let since = (now - self.plan.window_start.timestamp_nanos_opt().unwrap_or(0)).max(0);
            let m = (since / 60_000_000_000) as usize % self.plan.baseline.len().max(1);
            if m != minute_index {
                let rest = minute_events.split_off(minute_sent.min(minute_events.len()));
                if !rest.is_empty() {
                    outlet.events(rest)?;
                }
                minute_index = m;
                minute_sent = 0;
                let mut buf = Vec::new();
                events::write_minutes_to(
                    &mut buf,
                    &self.plan,
                    m,
                    m + 1,
                    &self.principals,
                    &mut events_rng,
                    &|_| {},
                )?;
                minute_events = buf
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect();
            }
            let into_minute = (since % 60_000_000_000) as f64 / 60e9;
            let due = ((minute_events.len() as f64 * into_minute).ceil() as usize)
                .min(minute_events.len());
            if due > minute_sent {
                let batch = minute_events[minute_sent..due].to_vec();
                outlet.events(batch)?;
                minute_sent = due;
            }
        }
        for l in live.iter_mut() {
            if let Some(f) = l.file.as_mut() {
                f.flush()?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        r: &mut GenRng,
        at_ns: i64,
        l: &Live,
        reason: &str,
        warning: bool,
        message: String,
        restart_count: Option<i32>,
        exit_code: Option<i32>,
    ) -> Vec<u8> {
        let pod = &self.pods[l.pod];
        let e = LifecycleEvent {
            event_id: rng::uuid(r),
            occurred_at: at_ns / 1000,
            cluster: self.config.cluster.clone(),
            namespace: pod.namespace.clone(),
            kind: "Pod".into(),
            name: pod.name.clone(),
            container: Some(pod.containers[l.container].name.clone()),
            reason: reason.to_string(),
            event_type: if warning { "Warning" } else { "Normal" }.into(),
            message: Some(message),
            restart_count,
            actor: None,
            exit_code,
        };
        serde_json::to_vec(&e.to_json()).unwrap_or_default()
    }
}

/// The restart number after the highest one with a log file in `dir`.
fn next_restart(dir: &std::path::Path) -> i32 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.split('.').next()?.parse::<i32>().ok()
        })
        .max()
        .map_or(0, |m| m + 1)
}
