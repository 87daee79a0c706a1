//! The query role: the engine's metrics, the log index's search side, the
//! alert evaluator, and the HTTP API behind the configured tokens. `sluice serve` serves it
//! alone; `sluice up` merges the intake beside it on one port.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use prometheus_client::registry::Registry;
use sluice_alerts::Alerts;
use sluice_query::api::{self, ApiState};
use sluice_query::engine::Engine;
use sluice_query::logsearch::LogIndex;
use sluice_query::logsearch::range_cache::CacheMetrics;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health;

pub struct QueryRole {
    pub engine: Arc<Engine>,
    state: Arc<ApiState>,
    tokens: Vec<sluice_query::config::Token>,
    /// The alert evaluator and its APIs (`[alerts]`).
    pub alerts: Alerts,
}

/// The alert evaluator while it runs: [`RunningAlerts::stop`] releases its
/// lease and saves its state.
pub struct RunningAlerts {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningAlerts {
    pub async fn stop(self) {
        self.cancel.cancel();
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            tracing::warn!("the alert evaluator did not stop within 10 s");
        }
    }
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
        let alerts = Alerts::new(
            &config.alerts,
            engine.clone(),
            logs.clone(),
            &format!("http://{}", config.http.addr),
        )
        .context("loading the alert rules ([alerts] rules)")?;
        alerts.metrics().register(registry);
        let state = Arc::new(ApiState {
            engine: engine.clone(),
            guardrails: config.guardrails.clone(),
            logs,
        });
        Ok(Self {
            engine,
            state,
            tokens: config.query.tokens.clone(),
            alerts,
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
        api::router(
            self.state.clone(),
            self.tokens.clone(),
            self.alerts.router(),
        )
    }

    /// Starts evaluating the alert rules (only the lease's holder of
    /// several replicas evaluates).
    pub fn start_alerts(&self) -> RunningAlerts {
        let cancel = CancellationToken::new();
        let task = self.alerts.spawn(cancel.clone());
        if self.alerts.rule_count() > 0 {
            tracing::info!(rules = self.alerts.rule_count(), "alert rules loaded");
        }
        RunningAlerts { cancel, task }
    }
}
