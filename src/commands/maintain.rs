//! `sluice maintain`: table maintenance — retention, compaction, snapshot
//! expiry and cleanup (see `sluice_warehouse::maintain`) — once, or as a
//! role on a schedule. `sluice up` runs the same maintainer in-process.
//!
//! With `[maintenance] lease` set, passes run only while this process holds
//! that Kubernetes Lease, so of several maintainers (a rolling update, a
//! second replica for availability, a `--once` by hand) one works at a
//! time. The lease is for efficiency, not correctness: two maintainers at
//! once are safe — each commit is checked against the table it was built
//! on, and the cleanup deletes only files older than
//! `orphan_min_age_secs`, far longer than any run — so a lease that cannot
//! be renewed (the API server away) never stops the pipeline.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use kube_lease_manager::LeaseManagerBuilder;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_warehouse::catalog;
use sluice_warehouse::maintain::commit::MetadataCommitter;
use sluice_warehouse::maintain::metrics::MaintenanceMetrics;
use sluice_warehouse::maintain::{Maintainer, MaintenanceConfig, TableReport};
use sluice_warehouse::object_stores::ObjectStores;
use tokio::sync::watch;

use crate::config::Config;
use crate::health;

/// The maintainer of the configured catalog.
pub async fn maintainer(
    config: &Config,
    metrics: MaintenanceMetrics,
) -> anyhow::Result<Maintainer> {
    let catalog = catalog::open(&config.catalog, &config.warehouse, &config.data_dir).await?;
    catalog::ensure_tables(catalog.as_ref()).await?;
    let committer = MetadataCommitter::open(&config.catalog, &config.data_dir)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the catalog database for maintenance: {e}"))?;
    Ok(Maintainer::new(
        catalog,
        committer,
        Arc::new(ObjectStores::new(config.warehouse.s3.clone())),
        config.maintenance.clone(),
        config.retention.clone(),
        metrics,
    )?)
}

pub async fn run(config: &Config, once: bool) -> anyhow::Result<()> {
    if once {
        return run_once(config).await;
    }
    let mut registry = Registry::default();
    let metrics = MaintenanceMetrics::register(&mut registry);
    let held_gauge = Gauge::<i64>::default();
    registry
        .sub_registry_with_prefix("sluice_maintenance")
        .register(
            "lease_held",
            "1 while this maintainer holds [maintenance] lease (always 1 without a lease)",
            held_gauge.clone(),
        );
    let m = maintainer(config, metrics).await?;
    let mut lease = LeaseGate::start(&config.maintenance).await?;
    let ready = health::ready(|| async { Ok(()) });
    let addr = health::spawn(&config.http, health::routes(Arc::new(registry), ready)).await?;
    tracing::info!(%addr, every_secs = config.maintenance.interval_secs, "maintainer serving /healthz, /readyz, /metrics");

    let interval = Duration::from_secs(config.maintenance.interval_secs.max(1));
    let stop = health::shutdown_signal();
    tokio::pin!(stop);
    loop {
        held_gauge.set(i64::from(lease.held()));
        if !lease.held() {
            tracing::info!(lease = %lease.name, "another maintainer holds the lease; waiting");
            tokio::select! {
                _ = &mut stop => break,
                r = lease.acquired() => r?,
            }
            held_gauge.set(1);
            tracing::info!(lease = %lease.name, "holding the lease; maintaining");
        }
        // A pass at start (or as soon as the lease is ours), then on the
        // schedule. A pass is dropped if the lease is lost meanwhile: a
        // maintenance pass may stop at any point (each commit is atomic and
        // what an unfinished one wrote is cleaned up as an orphan).
        tokio::select! {
            _ = &mut stop => break,
            _ = lease.lost() => {
                tracing::warn!(lease = %lease.name, "lease lost during a pass; the pass is abandoned");
                continue;
            }
            _ = m.run_once() => {}
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = lease.lost() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
    held_gauge.set(0);
    lease.release().await;
    Ok(())
}

/// One pass with progress on stderr and a JSON report on stdout; with a
/// lease, only once it is held (a clear error naming the holder if another
/// maintainer keeps it).
async fn run_once(config: &Config) -> anyhow::Result<()> {
    let m = maintainer(config, MaintenanceMetrics::default())
        .await?
        .with_progress(Arc::new(|line: &str| eprintln!("sluice maintain: {line}")));
    let mut lease = LeaseGate::start(&config.maintenance).await?;
    if !lease.held() {
        let wait = Duration::from_secs(config.maintenance.lease_duration_secs.max(1) * 2 + 5);
        eprintln!(
            "sluice maintain: waiting up to {} s for the lease {} ({})",
            wait.as_secs(),
            lease.name,
            lease.holder().await
        );
        match tokio::time::timeout(wait, lease.acquired()).await {
            Ok(r) => r?,
            Err(_) => {
                let holder = lease.holder().await;
                let name = lease.name.clone();
                lease.release().await;
                anyhow::bail!(
                    "the lease {name} is held by another maintainer ({holder}); it runs the passes, or try again once it stops"
                );
            }
        }
    }
    let results = tokio::select! {
        r = m.run_once() => r,
        _ = lease.lost() => {
            let name = lease.name.clone();
            lease.release().await;
            anyhow::bail!("lost the lease {name} during the pass; the pass was abandoned (safe: nothing half-done stays visible)");
        }
    };
    lease.release().await;
    let mut failed = Vec::new();
    let mut reports: Vec<TableReport> = Vec::new();
    for r in results {
        match r {
            Ok(r) => reports.push(r),
            Err(e) => failed.push(e.to_string()),
        }
    }
    println!("{}", serde_json::to_string_pretty(&reports)?);
    if !failed.is_empty() {
        anyhow::bail!("maintenance failed: {}", failed.join("; "));
    }
    Ok(())
}

/// Whether this process may run passes: always without a lease, else while
/// it holds `[maintenance] lease`.
struct LeaseGate {
    /// `namespace/name`, for messages.
    name: String,
    held: watch::Receiver<bool>,
    /// Keeps the channel open when there is no lease.
    _always: Option<watch::Sender<bool>>,
    task: Option<
        tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    >,
    api: Option<kube::Api<Lease>>,
}

impl LeaseGate {
    async fn start(config: &MaintenanceConfig) -> anyhow::Result<Self> {
        if config.lease.is_empty() {
            let (tx, rx) = watch::channel(true);
            return Ok(Self {
                name: String::new(),
                held: rx,
                _always: Some(tx),
                task: None,
                api: None,
            });
        }
        let client = sluice_ingest::collect::kube_watch::client(None)
            .await
            .context("connecting to Kubernetes for [maintenance] lease")?;
        let namespace = if config.lease_namespace.is_empty() {
            client.default_namespace().to_string()
        } else {
            config.lease_namespace.clone()
        };
        let duration = config.lease_duration_secs.max(2);
        // Renew a third of the duration before it runs out.
        let grace = (duration / 3).max(1);
        let manager = LeaseManagerBuilder::new(client.clone(), &config.lease)
            .with_namespace(&namespace)
            .with_identity(identity())
            .with_duration(duration)
            .with_grace(grace)
            .build()
            .await
            .with_context(|| format!("opening the lease {namespace}/{}", config.lease))?;
        let (mut held, task) = manager.watch().await;
        // The first state arrives once the manager has tried to lock.
        let _ = tokio::time::timeout(Duration::from_secs(5), held.changed()).await;
        Ok(Self {
            name: format!("{namespace}/{}", config.lease),
            held,
            _always: None,
            task: Some(task),
            api: Some(kube::Api::namespaced(client, &namespace)),
        })
    }

    fn held(&self) -> bool {
        *self.held.borrow()
    }

    /// Resolves once the lease is held.
    async fn acquired(&mut self) -> anyhow::Result<()> {
        self.held
            .wait_for(|h| *h)
            .await
            .map(|_| ())
            .map_err(|_| anyhow::anyhow!("the lease {} stopped being watched", self.name))
    }

    /// Resolves when the lease is lost (never without a lease).
    async fn lost(&mut self) {
        if self.held.wait_for(|h| !*h).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Who holds the lease, for messages.
    async fn holder(&self) -> String {
        let Some(api) = &self.api else {
            return "no lease".into();
        };
        match api
            .get_opt(self.name.rsplit('/').next().unwrap_or_default())
            .await
        {
            Ok(Some(l)) => l
                .spec
                .and_then(|s| s.holder_identity)
                .map(|h| format!("held by {h}"))
                .unwrap_or_else(|| "free".into()),
            Ok(None) => "not created yet".into(),
            Err(e) => format!("holder unknown: {e}"),
        }
    }

    /// Gives the lease up, so another maintainer takes over at once rather
    /// than after the lease duration.
    async fn release(self) {
        let Self {
            held, task, name, ..
        } = self;
        drop(held);
        if let Some(task) = task {
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Ok(_))) => tracing::info!(lease = %name, "lease released"),
                Ok(Ok(Err(e))) => tracing::warn!(lease = %name, error = %e, "releasing the lease"),
                Ok(Err(e)) => tracing::warn!(lease = %name, error = %e, "the lease task failed"),
                Err(_) => {
                    tracing::warn!(lease = %name, "releasing the lease timed out; it expires on its own")
                }
            }
        }
    }
}

/// This process among maintainers: the pod's name (`$HOSTNAME` in
/// Kubernetes) and the process id.
fn identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sluice".into());
    format!("{host}-{}", std::process::id())
}
