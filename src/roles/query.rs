//! The query role: the engine's metrics, the log index's search side, and
//! the HTTP API behind the configured tokens. `sluice serve` serves it
//! alone; `sluice up` merges the intake beside it on one port.

use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;
use sluice_query::api::{self, ApiState};
use sluice_query::engine::Engine;
use sluice_query::logsearch::LogIndex;
use sluice_query::logsearch::range_cache::CacheMetrics;

use crate::config::Config;
use crate::health;

pub struct QueryRole {
    pub engine: Arc<Engine>,
    state: Arc<ApiState>,
    tokens: Vec<sluice_query::config::Token>,
}

impl QueryRole {
    /// Registers the engine's and the search cache's metrics in `registry`.
    pub fn build(
        config: &Config,
        engine: Arc<Engine>,
        registry: &mut Registry,
    ) -> anyhow::Result<Self> {
        engine.metrics().register(registry);
        let metrics = CacheMetrics::default();
        metrics.register(registry);
        let cache = config
            .search
            .cache(Some(config.data_dir.join("index-cache")), metrics)?;
        let logs = Arc::new(LogIndex::new(
            engine.catalog().clone(),
            engine.stores().clone(),
            Arc::new(cache),
        ));
        let state = Arc::new(ApiState {
            engine: engine.clone(),
            guardrails: config.guardrails.clone(),
            logs,
        });
        Ok(Self {
            engine,
            state,
            tokens: config.query.tokens.clone(),
        })
    }

    /// Ready when the engine can read the catalog.
    pub fn ready(&self) -> health::ReadyCheck {
        let engine = self.engine.clone();
        health::ready(move || {
            let engine = engine.clone();
            async move { engine.ready().await }
        })
    }

    /// The API's routes (add [`api::not_found`] as the fallback last).
    pub fn router(&self) -> Router {
        api::router(self.state.clone(), self.tokens.clone())
    }
}
