//! The indexer role: keeps the log index up to date with `pod_logs`. Used
//! by `sluice index` and, in-process, by `sluice up` — same settings (the
//! garbage-collection age, the merge threshold), same metrics.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_logindex::indexer::{Indexer, IndexerSettings};
use sluice_logindex::store::IndexStore;
use sluice_warehouse::catalog::Catalog;
use sluice_warehouse::object_stores::ObjectStores;

use crate::config::Config;

/// Small splits of a day are merged once there are this many.
pub const DEFAULT_MERGE_AT: usize = 8;

/// Splits uploaded but never listed are removed once this old: a younger
/// one may be another indexer's (another replica, another `sluice up` on
/// the same catalog) about to commit.
pub const GARBAGE_MIN_AGE: Duration = Duration::from_secs(15 * 60);

/// `sluice_indexer_*`.
#[derive(Clone, Default)]
pub struct IndexerMetrics {
    pub lines: Counter<u64>,
    pub errors: Counter<u64>,
    pub splits: Gauge<i64>,
}

impl IndexerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("sluice_indexer");
        r.register("lines_indexed", "Log lines indexed", m.lines.clone());
        r.register("errors", "Indexing rounds that failed", m.errors.clone());
        r.register(
            "splits_written",
            "Splits written by this process",
            m.splits.clone(),
        );
        m
    }
}

pub struct IndexerRole {
    pub indexer: Indexer,
    metrics: IndexerMetrics,
}

impl IndexerRole {
    /// The indexer of the configured catalog, after removing what a stopped
    /// indexer left unlisted.
    pub async fn build(
        config: &Config,
        catalog: Arc<dyn Catalog>,
        stores: &ObjectStores,
        merge_at: usize,
        memory_budget: usize,
        threads: usize,
        metrics: IndexerMetrics,
    ) -> anyhow::Result<Self> {
        let store = IndexStore::of_catalog(catalog.as_ref(), stores)
            .await
            .context("locating the index store")?;
        tracing::info!(location = store.location(), "log index");
        let settings = IndexerSettings {
            work_dir: config.data_dir.join("index-work"),
            threads,
            merge_at,
            memory_budget,
        };
        let indexer = Indexer::new(catalog, store, settings);
        match indexer.collect_garbage(GARBAGE_MIN_AGE).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(splits = n, "removed splits a stopped indexer left unlisted"),
            Err(e) => tracing::warn!(error = %e, "could not clean up unlisted splits"),
        }
        Ok(Self { indexer, metrics })
    }

    /// One round, counted and logged.
    pub async fn round(&self) {
        match self.indexer.run_once().await {
            Ok(r) => {
                self.metrics.lines.inc_by(r.lines);
                self.metrics.splits.inc_by(r.splits as i64);
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
                self.metrics.errors.inc();
                tracing::error!(error = %e, "indexing failed; retrying");
                self.indexer.clear_work_dir();
            }
        }
    }

    /// A round every `interval` until `stop`.
    pub async fn follow(&self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            self.round().await;
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
