//! `sluice index`: keeps the log search index up to date with `pod_logs`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use sluice_warehouse::catalog;
use sluice_warehouse::object_stores::ObjectStores;

use sluice_schema::tables::POD_LOGS;

use crate::config::Config;
use crate::health;
use crate::roles::indexer::{IndexerMetrics, IndexerRole};

pub struct IndexOptions {
    pub rebuild: bool,
    /// RFC 3339 or a span (`7d`): with `rebuild`, lines from then on.
    pub from: Option<String>,
    pub once: bool,
    pub interval: Duration,
    /// Small splits of a day merged once there are this many.
    pub merge_at: usize,
    /// Bytes the splits being built may hold in memory together.
    pub memory_budget: usize,
    /// Splits of one day built side by side (0: one per core).
    pub threads: usize,
}

pub async fn run(config: &Config, opts: IndexOptions) -> anyhow::Result<()> {
    let catalog = catalog::open(&config.catalog, &config.warehouse, &config.data_dir).await?;
    catalog::ensure_tables(catalog.as_ref()).await?;
    let stores = ObjectStores::new(config.warehouse.s3.clone());
    let mut registry = Registry::default();
    let metrics = IndexerMetrics::register(&mut registry);
    let role = IndexerRole::build(
        config,
        catalog.clone(),
        &stores,
        opts.merge_at,
        opts.memory_budget,
        opts.threads,
        metrics,
    )
    .await?;
    let indexer = &role.indexer;
    if opts.rebuild {
        let from = opts
            .from
            .as_deref()
            .map(|f| {
                sluice_query::window::parse_instant(f, chrono::Utc::now())
                    .map(|t| t.timestamp_micros())
            })
            .transpose()?;
        let r = indexer.rebuild(from).await?;
        println!(
            "rebuilt the log index: {} lines from {} files in {} splits (watermark snapshot {:?})",
            r.lines, r.files, r.splits, r.watermark
        );
        if opts.once {
            return Ok(());
        }
    }
    if opts.once {
        let r = indexer.run_once().await?;
        println!(
            "indexed {} snapshots: {} lines from {} files in {} splits, merged {} splits (watermark snapshot {:?})",
            r.snapshots, r.lines, r.files, r.splits, r.merged, r.watermark
        );
        return Ok(());
    }

    let ready = health::ready(move || {
        let catalog = catalog.clone();
        async move { health::catalog_answers(catalog.as_ref(), &POD_LOGS).await }
    });
    let addr = health::spawn(&config.http, health::routes(Arc::new(registry), ready)).await?;
    tracing::info!(%addr, "indexer serving /healthz, /readyz, /metrics");
    role.follow(opts.interval, health::shutdown_signal()).await;
    Ok(())
}
