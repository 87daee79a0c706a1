//! `sluice maintain`: table maintenance — retention, compaction, snapshot
//! expiry and cleanup (see `sluice_warehouse::maintain`) — once, or as a
//! role on a schedule. `sluice up` runs the same maintainer in-process.
//!
//! Two maintainers at once are safe, only wasteful: each commit is checked
//! against the table it was built on, and the cleanup deletes only files
//! older than `orphan_min_age_secs`, far longer than any run.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use sluice_warehouse::catalog;
use sluice_warehouse::maintain::commit::MetadataCommitter;
use sluice_warehouse::maintain::metrics::MaintenanceMetrics;
use sluice_warehouse::maintain::{Maintainer, TableReport};
use sluice_warehouse::object_stores::ObjectStores;

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
        let m = maintainer(config, MaintenanceMetrics::default())
            .await?
            .with_progress(Arc::new(|line: &str| eprintln!("sluice maintain: {line}")));
        let results = m.run_once().await;
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
        return Ok(());
    }
    let mut registry = Registry::default();
    let metrics = MaintenanceMetrics::register(&mut registry);
    let m = maintainer(config, metrics).await?;
    let ready: health::ReadyCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    let addr = health::spawn(&config.http, health::routes(Arc::new(registry), ready)).await?;
    tracing::info!(%addr, every_secs = config.maintenance.interval_secs, "maintainer serving /healthz, /readyz, /metrics");
    // A first pass at start, then on the schedule.
    let _ = m.run_once().await;
    m.run(health::shutdown_signal()).await;
    Ok(())
}
