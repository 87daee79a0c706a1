//! `sluice index`: keeps the log search index up to date with `pod_logs`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_query::logsearch::LogIndex;
use sluice_logindex::indexer::{Indexer, IndexerSettings};
use sluice_query::object_stores::ObjectStores;
use sluice_warehouse::catalog;

use crate::config::Config;
use crate::health;

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
}

pub async fn run(config: &Config, opts: IndexOptions) -> anyhow::Result<()> {
    let catalog = catalog::open(&config.catalog, &config.warehouse, &config.data_dir).await?;
    catalog::ensure_tables(catalog.as_ref()).await?;
    let stores = ObjectStores::new(config.warehouse.s3.clone());
    let store = LogIndex::store_for(catalog.as_ref(), &stores)
        .await
        .context("locating the index store")?;
    tracing::info!(location = store.location(), "log index");
    let settings = IndexerSettings {
        work_dir: config.data_dir.join("index-work"),
        cache_dir: config.data_dir.join("index-cache"),
        merge_at: opts.merge_at,
        memory_budget: opts.memory_budget,
    };
    let indexer = Indexer::new(catalog.clone(), store, settings);
    // An upload younger than this may be another indexer's, about to commit.
    match indexer.collect_garbage(Duration::from_secs(15 * 60)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(splits = n, "removed splits a stopped indexer left unlisted"),
        Err(e) => tracing::warn!(error = %e, "could not clean up unlisted splits"),
    }
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

    let mut registry = Registry::default();
    let lines = Counter::<u64>::default();
    let errors = Counter::<u64>::default();
    let splits = Gauge::<i64>::default();
    let r = registry.sub_registry_with_prefix("sluice_indexer");
    r.register("lines_indexed", "Log lines indexed", lines.clone());
    r.register("errors", "Indexing rounds that failed", errors.clone());
    r.register(
        "splits_written",
        "Splits written by this process",
        splits.clone(),
    );
    let ready: health::ReadyCheck = {
        let catalog = catalog.clone();
        Arc::new(move || {
            let catalog = catalog.clone();
            Box::pin(async move {
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    catalog.load_table(&sluice_schema::tables::POD_LOGS.ident()),
                )
                .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("catalog: {e}")),
                    Err(_) => Err("catalog did not answer within 2 s".into()),
                }
            })
        })
    };
    let addr = health::spawn(&config.http, health::routes(Arc::new(registry), ready)).await?;
    tracing::info!(%addr, "indexer serving /healthz, /readyz, /metrics");
    let shutdown = health::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        match indexer.run_once().await {
            Ok(r) => {
                lines.inc_by(r.lines);
                splits.inc_by(r.splits as i64);
                if r.snapshots > 0 {
                    tracing::info!(
                        snapshots = r.snapshots,
                        lines = r.lines,
                        splits = r.splits,
                        merged = r.merged,
                        "indexed"
                    );
                }
            }
            Err(e) => {
                errors.inc();
                tracing::error!(error = %e, "indexing failed; retrying");
            }
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(opts.interval) => {}
        }
    }
}
