//! Lifecycle events from the Kubernetes API: Pods and Events are watched
//! and turned into `platform_events` records on the lifecycle topic.
//!
//! - A container whose `restartCount` grew yields one record with its last
//!   termination (`OOMKilled`, `Error`, `Completed`), exit code and time.
//! - Every core/v1 Event (BackOff, ScalingReplicaSet, Killing, …) yields one
//!   record per occurrence (`count`).
//!
//! What was emitted (restart counts, event counts) and the watches'
//! resourceVersions are saved only after the broker acknowledged, so a
//! restart resumes the watch where it stopped, and a re-list (after `410
//! Gone` or without a saved version) emits only what changed. Record ids are
//! derived from the object and its state, so even a lost state file yields
//! replays the writer drops, never new rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::outlet::RecordOutlet;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod, PodTemplateSpec};
use kube::Resource;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::{Deserialize, Serialize};
use sluice_schema::raw::LifecycleEvent;
use sluice_warehouse::retry::Backoff;
use xxhash_rust::xxh3::Xxh3;

use super::metrics::CollectorMetrics;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("watch state {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lifecycle records not durable: {0}")]
    Outlet(crate::outlet::OutletError),
}

/// What the watcher has emitted, saved beside the collector's checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatchState {
    pub pods_version: Option<String>,
    pub events_version: Option<String>,
    pub deployments_version: Option<String>,
    pub statefulsets_version: Option<String>,
    pub daemonsets_version: Option<String>,
    /// `<pod uid>/<container>` → the restart count last emitted.
    pub restarts: BTreeMap<String, i32>,
    /// Event uid → the occurrence count last emitted.
    pub events: BTreeMap<String, i32>,
    /// Workload uid → its replicas and pod template resources last seen.
    pub workloads: BTreeMap<String, WorkloadSeen>,
}

/// What a workload looked like when last seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSeen {
    pub replicas: Option<i32>,
    /// Container → `requests cpu=…, memory=…; limits …`.
    pub resources: BTreeMap<String, String>,
}

impl WatchState {
    fn version_mut(&mut self, kind: Kind) -> &mut Option<String> {
        match kind {
            Kind::Pods => &mut self.pods_version,
            Kind::Events => &mut self.events_version,
            Kind::Deployments => &mut self.deployments_version,
            Kind::StatefulSets => &mut self.statefulsets_version,
            Kind::DaemonSets => &mut self.daemonsets_version,
        }
    }

    pub fn load(path: &Path) -> Result<Self, KubeError> {
        let err = |source| KubeError::State {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(err(e)),
        }
    }

    /// Replaced atomically ([`crate::state_file`]).
    pub fn save(&self, path: &Path) -> Result<(), KubeError> {
        let err = |source| KubeError::State {
            path: path.to_path_buf(),
            source,
        };
        let bytes = serde_json::to_vec(self)
            .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        crate::state_file::write_atomic(path, &bytes).map_err(err)
    }
}

/// A stable record id from the parts that identify what happened.
fn derived_id(parts: &[&str]) -> String {
    let mut h = Xxh3::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    uuid::Uuid::from_u128(h.digest128()).to_string()
}

fn micros(t: &k8s_openapi::jiff::Timestamp) -> i64 {
    t.as_microsecond()
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// State updates that become true once the records are acknowledged.
#[derive(Debug, Default)]
pub struct Changes {
    pub records: Vec<LifecycleEvent>,
    restarts: Vec<(String, Option<i32>)>,
    events: Vec<(String, i32)>,
    forget_events: Vec<String>,
    workloads: Vec<(String, Option<WorkloadSeen>)>,
}

impl Changes {
    fn apply(self, state: &mut WatchState) {
        for (k, v) in self.workloads {
            match v {
                Some(v) => state.workloads.insert(k, v),
                None => state.workloads.remove(&k),
            };
        }
        for (k, v) in self.restarts {
            match v {
                Some(v) => state.restarts.insert(k, v),
                None => state.restarts.remove(&k),
            };
        }
        for (k, v) in self.events {
            state.events.insert(k, v);
        }
        for k in self.forget_events {
            state.events.remove(&k);
        }
    }
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(
            status
                .and_then(|s| s.init_container_statuses.as_ref())
                .into_iter()
                .flatten(),
        )
}

/// Records for the restarts of `pod` not yet emitted.
pub fn pod_changes(cluster: &str, pod: &Pod, state: &WatchState, out: &mut Changes) {
    let meta = &pod.metadata;
    let (Some(uid), Some(name)) = (meta.uid.as_deref(), meta.name.as_deref()) else {
        return;
    };
    let namespace = meta.namespace.as_deref().unwrap_or("default");
    for cs in statuses(pod) {
        let key = format!("{uid}/{}", cs.name);
        let seen = state.restarts.get(&key).copied().unwrap_or(0);
        if cs.restart_count <= seen {
            continue;
        }
        out.restarts.push((key, Some(cs.restart_count)));
        let Some(term) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            continue;
        };
        let reason = term.reason.clone().unwrap_or_else(|| "Terminated".into());
        let when = term
            .finished_at
            .as_ref()
            .map(|t| micros(&t.0))
            .unwrap_or_else(now_micros);
        let restart = cs.restart_count.to_string();
        out.records.push(LifecycleEvent {
            event_id: derived_id(&[uid, &cs.name, &restart, "terminated"]),
            occurred_at: when,
            cluster: cluster.to_string(),
            namespace: namespace.to_string(),
            kind: "Pod".into(),
            name: name.to_string(),
            container: Some(cs.name.clone()),
            message: Some(format!(
                "Container {} in pod {name} terminated: {reason} (exit code {})",
                cs.name, term.exit_code
            )),
            event_type: if reason == "Completed" {
                "Normal"
            } else {
                "Warning"
            }
            .into(),
            reason,
            restart_count: Some(cs.restart_count),
            actor: Some("kubelet".into()),
            exit_code: Some(term.exit_code),
        });
    }
}

/// Forgets the restart counts of a deleted pod.
pub fn pod_deleted(pod: &Pod, out: &mut Changes) {
    if let Some(uid) = pod.metadata.uid.as_deref() {
        for cs in statuses(pod) {
            out.restarts.push((format!("{uid}/{}", cs.name), None));
        }
    }
}

/// The container an Event is about, from `spec.containers{name}`.
fn field_path_container(path: &str) -> Option<String> {
    let inner = path.strip_prefix("spec.")?;
    let start = inner.find('{')?;
    let end = inner.find('}')?;
    (start < end).then(|| inner[start + 1..end].to_string())
}

/// The record of an Event occurrence not yet emitted.
pub fn event_change(cluster: &str, ev: &Event, state: &WatchState, out: &mut Changes) {
    let Some(uid) = ev.metadata.uid.as_deref() else {
        return;
    };
    let count = ev.count.unwrap_or(1).max(1);
    if state.events.get(uid).is_some_and(|seen| *seen >= count) {
        return;
    }
    out.events.push((uid.to_string(), count));
    let obj = &ev.involved_object;
    let Some(reason) = ev.reason.clone().filter(|r| !r.is_empty()) else {
        return;
    };
    let when = ev
        .last_timestamp
        .as_ref()
        .map(|t| micros(&t.0))
        .or_else(|| ev.event_time.as_ref().map(|t| micros(&t.0)))
        .or_else(|| ev.first_timestamp.as_ref().map(|t| micros(&t.0)))
        .or_else(|| {
            ev.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| micros(&t.0))
        })
        .unwrap_or_else(now_micros);
    let event_type = match ev.type_.as_deref() {
        Some("Warning") => "Warning",
        _ => "Normal",
    };
    let actor = ev
        .source
        .as_ref()
        .and_then(|s| s.component.clone())
        .or_else(|| ev.reporting_component.clone())
        .filter(|a| !a.is_empty());
    out.records.push(LifecycleEvent {
        event_id: derived_id(&[uid, &count.to_string(), "event"]),
        occurred_at: when,
        cluster: cluster.to_string(),
        namespace: obj
            .namespace
            .clone()
            .or_else(|| ev.metadata.namespace.clone())
            .unwrap_or_else(|| "default".into()),
        kind: obj.kind.clone().unwrap_or_else(|| "Unknown".into()),
        name: obj.name.clone().unwrap_or_default(),
        container: obj.field_path.as_deref().and_then(field_path_container),
        reason,
        event_type: event_type.into(),
        message: ev.message.clone(),
        restart_count: None,
        actor,
        exit_code: None,
    });
}

/// What the watcher needs of a resource kind.
trait Watched:
    Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Records (and state updates) for this object's current state.
    fn changes(&self, cluster: &str, state: &WatchState, out: &mut Changes);
    /// State to forget when the object is deleted.
    fn deleted(&self, _out: &mut Changes) {}
    /// The state keys this object keeps alive (for a re-list).
    fn state_keys(&self, _alive: &mut std::collections::HashSet<String>) {}
    /// State of objects that a re-list no longer shows.
    fn forget_missing(
        _state: &WatchState,
        _alive: &std::collections::HashSet<String>,
        _out: &mut Changes,
    ) {
    }
}

impl Watched for Pod {
    fn changes(&self, cluster: &str, state: &WatchState, out: &mut Changes) {
        pod_changes(cluster, self, state, out);
    }
    fn deleted(&self, out: &mut Changes) {
        pod_deleted(self, out);
    }
    fn state_keys(&self, alive: &mut std::collections::HashSet<String>) {
        if let Some(uid) = &self.metadata.uid {
            for cs in statuses(self) {
                alive.insert(format!("{uid}/{}", cs.name));
            }
        }
    }
    fn forget_missing(
        state: &WatchState,
        alive: &std::collections::HashSet<String>,
        out: &mut Changes,
    ) {
        for key in state.restarts.keys() {
            if !alive.contains(key) {
                out.restarts.push((key.clone(), None));
            }
        }
    }
}

impl Watched for Event {
    fn changes(&self, cluster: &str, state: &WatchState, out: &mut Changes) {
        event_change(cluster, self, state, out);
    }
    // Events expire (an hour by default); their counts need not outlive them.
    fn deleted(&self, out: &mut Changes) {
        if let Some(uid) = &self.metadata.uid {
            out.forget_events.push(uid.clone());
        }
    }
    fn state_keys(&self, alive: &mut std::collections::HashSet<String>) {
        if let Some(uid) = &self.metadata.uid {
            alive.insert(uid.clone());
        }
    }
    fn forget_missing(
        state: &WatchState,
        alive: &std::collections::HashSet<String>,
        out: &mut Changes,
    ) {
        for uid in state.events.keys() {
            if !alive.contains(uid) {
                out.forget_events.push(uid.clone());
            }
        }
    }
}

/// Deployments, StatefulSets and DaemonSets: replicas and pod template.
trait Workload: Watched {
    const KIND: &'static str;
    fn replicas(&self) -> Option<i32>;
    fn template(&self) -> Option<&PodTemplateSpec>;
}

impl Workload for Deployment {
    const KIND: &'static str = "Deployment";
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl Workload for StatefulSet {
    const KIND: &'static str = "StatefulSet";
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl Workload for DaemonSet {
    const KIND: &'static str = "DaemonSet";
    fn replicas(&self) -> Option<i32> {
        None
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

macro_rules! watched_workload {
    ($t:ty) => {
        impl Watched for $t {
            fn changes(&self, cluster: &str, state: &WatchState, out: &mut Changes) {
                workload_changes(cluster, self, state, out);
            }
            fn deleted(&self, out: &mut Changes) {
                if let Some(uid) = &self.meta().uid {
                    out.workloads.push((uid.clone(), None));
                }
            }
            fn state_keys(&self, alive: &mut std::collections::HashSet<String>) {
                if let Some(uid) = &self.meta().uid {
                    alive.insert(uid.clone());
                }
            }
        }
    };
}
watched_workload!(Deployment);
watched_workload!(StatefulSet);
watched_workload!(DaemonSet);

/// `requests cpu=250m, memory=512Mi; limits memory=1Gi` per container.
fn template_resources(template: Option<&PodTemplateSpec>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(spec) = template.and_then(|t| t.spec.as_ref()) else {
        return out;
    };
    for c in &spec.containers {
        let Some(res) = &c.resources else {
            out.insert(c.name.clone(), String::new());
            continue;
        };
        let fmt = |m: &Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >| {
            m.as_ref()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        out.insert(
            c.name.clone(),
            format!(
                "requests {}; limits {}",
                fmt(&res.requests),
                fmt(&res.limits)
            ),
        );
    }
    out
}

/// Who last changed an object: the newest `Update` in its managed fields.
fn last_manager(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<String> {
    meta.managed_fields
        .as_ref()?
        .iter()
        .filter(|m| m.operation.as_deref() == Some("Update"))
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone())
}

/// Records for a workload's changed replicas or container resources (the
/// first sight of a workload only records what it looks like).
fn workload_changes<W: Workload>(cluster: &str, w: &W, state: &WatchState, out: &mut Changes) {
    let meta = w.meta();
    let (Some(uid), Some(name)) = (meta.uid.as_deref(), meta.name.as_deref()) else {
        return;
    };
    let now = WorkloadSeen {
        replicas: w.replicas(),
        resources: template_resources(w.template()),
    };
    let Some(seen) = state.workloads.get(uid) else {
        out.workloads.push((uid.to_string(), Some(now)));
        return;
    };
    if *seen == now {
        return;
    }
    let generation = meta.generation.unwrap_or_default().to_string();
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let when = now_micros();
    let actor = last_manager(meta);
    let record = |reason: &str, message: String, id: &str| LifecycleEvent {
        event_id: derived_id(&[uid, &generation, id]),
        occurred_at: when,
        cluster: cluster.to_string(),
        namespace: namespace.clone(),
        kind: W::KIND.into(),
        name: name.to_string(),
        container: None,
        reason: reason.into(),
        event_type: "Normal".into(),
        message: Some(message),
        restart_count: None,
        actor: actor.clone(),
        exit_code: None,
    };
    if seen.replicas != now.replicas {
        let show = |r: Option<i32>| r.map_or_else(|| "unset".to_string(), |r| r.to_string());
        out.records.push(record(
            "ReplicasChanged",
            format!("Replicas {} -> {}", show(seen.replicas), show(now.replicas)),
            "replicas",
        ));
    }
    if seen.resources != now.resources {
        let mut parts = Vec::new();
        for (c, after) in &now.resources {
            match seen.resources.get(c) {
                Some(before) if before == after => {}
                Some(before) => parts.push(format!("{c}: {before} -> {after}")),
                None => parts.push(format!("{c}: added ({after})")),
            }
        }
        for c in seen.resources.keys() {
            if !now.resources.contains_key(c) {
                parts.push(format!("{c}: removed"));
            }
        }
        out.records.push(record(
            "ResourcesUpdated",
            format!("Resources updated: {}", parts.join("; ")),
            "resources",
        ));
    }
    out.workloads.push((uid.to_string(), Some(now)));
}

/// Settings of the watcher.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub cluster: String,
    pub kubeconfig: Option<PathBuf>,
    pub state_path: PathBuf,
}

/// Builds a client: the given kubeconfig, else in-cluster, else `$KUBECONFIG`
/// / `~/.kube/config`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, KubeError> {
    // Both of rustls' backends are compiled in (through other crates), and
    // then rustls wants the process to name one; an error only means one
    // was installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?
        }
        None => Config::infer()
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(KubeError::Api)
}

/// The watcher: two watches sharing one state.
pub struct KubeWatcher {
    settings: KubeSettings,
    client: Client,
    /// The lifecycle topic, or `sluice up`'s lifecycle write-ahead log.
    outlet: Arc<dyn RecordOutlet>,
    metrics: CollectorMetrics,
    state: Mutex<WatchState>,
    last_save: Mutex<Instant>,
    /// One writer of the state file at a time (both watches save).
    saving: Mutex<()>,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Pods,
    Events,
    Deployments,
    StatefulSets,
    DaemonSets,
}

const KINDS: [Kind; 5] = [
    Kind::Pods,
    Kind::Events,
    Kind::Deployments,
    Kind::StatefulSets,
    Kind::DaemonSets,
];

impl KubeWatcher {
    pub fn new(
        settings: KubeSettings,
        client: Client,
        outlet: Arc<dyn RecordOutlet>,
        metrics: CollectorMetrics,
    ) -> Result<Arc<Self>, KubeError> {
        let state = WatchState::load(&settings.state_path)?;
        Ok(Arc::new(Self {
            settings,
            client,
            outlet,
            metrics,
            state: Mutex::new(state),
            last_save: Mutex::new(Instant::now()),
            saving: Mutex::new(()),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the API server answers (for `/readyz`).
    pub async fn check(&self) -> Result<(), String> {
        self.client
            .apiserver_version()
            .await
            .map(|_| ())
            .map_err(|e| format!("Kubernetes API: {e}"))
    }

    /// Watches until the task is dropped; errors are logged and retried.
    pub async fn run(self: Arc<Self>) {
        let tasks: Vec<_> = KINDS
            .into_iter()
            .map(|k| tokio::spawn(self.clone().watch_loop(k)))
            .collect();
        futures::future::join_all(tasks).await;
    }

    /// Saves the state now (at shutdown).
    pub fn save(&self) -> Result<(), KubeError> {
        let _one = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.state().clone();
        state.save(&self.settings.state_path)
    }

    async fn watch_loop(self: Arc<Self>, kind: Kind) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            match self.watch_once(kind).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(?kind, error = %e, "Kubernetes watch failed; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn version(&self, kind: Kind) -> Option<String> {
        self.state().version_mut(kind).clone()
    }

    fn set_version(&self, kind: Kind, v: Option<String>) {
        *self.state().version_mut(kind) = v;
    }

    /// One list (when there is no version to resume from) and one watch
    /// until the server ends it.
    async fn watch_once(&self, kind: Kind) -> Result<(), KubeError> {
        match kind {
            Kind::Pods => self.watch_resource::<Pod>(kind).await,
            Kind::Events => self.watch_resource::<Event>(kind).await,
            Kind::Deployments => self.watch_resource::<Deployment>(kind).await,
            Kind::StatefulSets => self.watch_resource::<StatefulSet>(kind).await,
            Kind::DaemonSets => self.watch_resource::<DaemonSet>(kind).await,
        }
    }

    async fn watch_resource<K: Watched>(&self, kind: Kind) -> Result<(), KubeError> {
        let version = match self.version(kind) {
            Some(v) => v,
            None => self.relist::<K>(kind).await?,
        };
        let params = WatchParams::default().timeout(290);
        let cluster = self.settings.cluster.as_str();
        let api: Api<K> = Api::all(self.client.clone());
        let mut stream = match api.watch(&params, &version).await {
            Ok(s) => s.boxed(),
            Err(e) => return self.request_error(kind, e),
        };
        while let Some(ev) = match stream.try_next().await {
            Ok(ev) => ev,
            Err(e) => return self.request_error(kind, e),
        } {
            let mut changes = Changes::default();
            let version = match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    o.changes(cluster, &self.state(), &mut changes);
                    o.meta().resource_version.clone()
                }
                WatchEvent::Deleted(o) => {
                    o.deleted(&mut changes);
                    o.meta().resource_version.clone()
                }
                WatchEvent::Bookmark(b) => Some(b.metadata.resource_version),
                WatchEvent::Error(e) => return self.watch_error(kind, e.code, &e.message),
            };
            self.commit(kind, changes, version).await?;
        }
        Ok(())
    }

    /// A failed watch request: 410 Gone (answered on the request rather than
    /// in the stream) is an expiry like the stream's; the rest is an error.
    fn request_error(&self, kind: Kind, e: kube::Error) -> Result<(), KubeError> {
        match e {
            kube::Error::Api(st) if st.code == 410 => self.watch_error(kind, st.code, &st.message),
            e => Err(e.into()),
        }
    }

    fn watch_error(&self, kind: Kind, code: u16, message: &str) -> Result<(), KubeError> {
        if code == 410 {
            // The version is compacted away: list again (only changes are
            // emitted, against the saved counts).
            tracing::info!(?kind, %message, "watch expired (410 Gone); listing again");
            self.metrics.k8s_relists.inc();
            self.set_version(kind, None);
            return Ok(());
        }
        Err(KubeError::Config(format!("watch error {code}: {message}")))
    }

    /// Lists everything, emits what changed, and returns the list's version.
    async fn relist<K: Watched>(&self, kind: Kind) -> Result<String, KubeError> {
        let cluster = self.settings.cluster.as_str();
        let api: Api<K> = Api::all(self.client.clone());
        let list = api.list(&ListParams::default()).await?;
        let state = self.state().clone();
        let mut changes = Changes::default();
        let mut alive = std::collections::HashSet::new();
        for o in &list.items {
            o.changes(cluster, &state, &mut changes);
            o.state_keys(&mut alive);
        }
        // Objects deleted while nobody watched.
        K::forget_missing(&state, &alive, &mut changes);
        let version = list.metadata.resource_version.unwrap_or_default();
        tracing::info!(?kind, records = changes.records.len(), %version, "listed");
        self.commit(kind, changes, Some(version.clone())).await?;
        Ok(version)
    }

    /// Sends the records, waits until they are durable, then records the
    /// state.
    async fn commit(
        &self,
        kind: Kind,
        changes: Changes,
        version: Option<String>,
    ) -> Result<(), KubeError> {
        let payloads: Vec<(String, Vec<u8>)> = changes
            .records
            .iter()
            .map(|r| {
                let key = format!("{}/{}", r.namespace, r.name);
                (key, serde_json::to_vec(&r.to_json()).unwrap_or_default())
            })
            .collect();
        let records: Vec<(&[u8], &[u8])> = payloads
            .iter()
            .map(|(key, payload)| (key.as_bytes(), payload.as_slice()))
            .collect();
        // Only once they are durable does the state move past them.
        self.outlet
            .send(&records)
            .await
            .map_err(KubeError::Outlet)?;
        self.metrics.k8s_events.inc_by(changes.records.len() as u64);
        {
            let mut state = self.state();
            changes.apply(&mut state);
            if let Some(v) = version {
                *state.version_mut(kind) = Some(v);
            }
        }
        let due = {
            let mut last = self.last_save.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.elapsed() >= Duration::from_secs(1) || !payloads.is_empty();
            if due {
                *last = Instant::now();
            }
            due
        };
        if due {
            self.save()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_from_field_path() {
        assert_eq!(
            field_path_container("spec.containers{app}").as_deref(),
            Some("app")
        );
        assert_eq!(
            field_path_container("spec.initContainers{init-db}").as_deref(),
            Some("init-db")
        );
        assert_eq!(field_path_container("metadata.name"), None);
    }

    #[test]
    fn restarts_are_emitted_once_per_count() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api-0", "namespace": "shop", "uid": "u-1"},
            "status": {"containerStatuses": [{
                "name": "app", "restartCount": 2, "ready": false, "image": "x", "imageID": "",
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                    "finishedAt": "2026-11-23T10:00:00Z"}}
            }]}
        }))
        .unwrap();
        let mut state = WatchState::default();
        let mut changes = Changes::default();
        pod_changes("c", &pod, &state, &mut changes);
        assert_eq!(changes.records.len(), 1);
        let r = &changes.records[0];
        assert_eq!(r.reason, "OOMKilled");
        assert_eq!(r.exit_code, Some(137));
        assert_eq!(r.restart_count, Some(2));
        assert_eq!(r.container.as_deref(), Some("app"));
        let id = r.event_id.clone();
        changes.apply(&mut state);
        let mut again = Changes::default();
        pod_changes("c", &pod, &state, &mut again);
        assert!(again.records.is_empty(), "same count, nothing new");
        // Without state (lost file), the same record id: the writer drops it.
        let mut fresh = Changes::default();
        pod_changes("c", &pod, &WatchState::default(), &mut fresh);
        assert_eq!(fresh.records[0].event_id, id);
    }
}
