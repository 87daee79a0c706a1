//! The query role: the engine's metrics, the log index's search side, the
//! alert evaluator, and the HTTP API behind the configured tokens, JWTs and
//! tenants (reloaded from the configuration file when it changes, or on
//! SIGHUP). `sluice serve` serves it alone; `sluice up` merges the intake
//! beside it on one port.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use prometheus_client::registry::Registry;
use sluice_alerts::Alerts;
use sluice_query::access::{Access, AccessControl, AccessSettings};
use sluice_query::api::{self, ApiState};
use sluice_query::audit::AuditLog;
use sluice_query::engine::Engine;
use sluice_query::live::LiveHub;
use sluice_query::live::metrics::TailMetrics;
use sluice_query::logsearch::LogIndex;
use sluice_query::logsearch::range_cache::CacheMetrics;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health;

pub struct QueryRole {
    pub engine: Arc<Engine>,
    state: Arc<ApiState>,
    access: Arc<AccessControl>,
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
    pub async fn build(
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
            config.search.columns_mib << 20,
        ));
        let alerts = Alerts::new(
            &config.alerts,
            engine.clone(),
            logs.clone(),
            &format!("http://{}", config.http.addr),
        )
        .context("loading the alert rules ([alerts] rules)")?;
        alerts.metrics().register(registry);
        let tail_metrics = TailMetrics::default();
        tail_metrics.register(registry);
        let live = Arc::new(LiveHub::new(config.tail.clone(), tail_metrics));
        let state = Arc::new(ApiState {
            engine: engine.clone(),
            guardrails: config.guardrails.clone(),
            logs,
            live,
        });
        let audit_path = match config.query.audit_log.as_str() {
            "-" => None,
            "" => Some(config.data_dir.join("audit").join("audit.jsonl")),
            path => Some(std::path::PathBuf::from(path)),
        };
        let access = AccessControl::new(
            access_of(config)
                .await
                .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?,
            AuditLog::new(audit_path, config.query.audit_max_mb << 20),
        );
        access.register(registry);
        Ok(Self {
            engine,
            state,
            access,
            alerts,
        })
    }

    /// Reloads tokens, JWT settings and tenants when the configuration
    /// file changes (checked every 2 s) or on SIGHUP, until `cancel`. A
    /// configuration that does not load is logged and the current one kept.
    pub fn spawn_reload(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let access = self.access.clone();
        tokio::spawn(async move {
            let modified = || {
                crate::config::Config::source_file()
                    .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            };
            let mut seen = modified();
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<()>();
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = hangup => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {
                        let now = modified();
                        if now == seen {
                            continue;
                        }
                        seen = now;
                    }
                }
                let loaded = match Config::reload() {
                    Ok(c) => access_of(&c).await,
                    Err(e) => Err(format!("{e:#}")),
                };
                match loaded {
                    Ok(a) => {
                        tracing::info!(
                            tenants = a.tenants().len(),
                            "reloaded the query tokens, JWT settings and tenants"
                        );
                        access.replace(a);
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "the configuration does not load; keeping the tokens and tenants in use"
                    ),
                }
            }
        })
    }

    /// The live stream the tails read: the embedded pipeline publishes to
    /// it, or a Kafka feed ([`crate::roles::live_feed`]).
    pub fn live(&self) -> &Arc<LiveHub> {
        &self.state.live
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
            self.access.clone(),
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

/// The access settings `config` describes (the JWKS fetched).
async fn access_of(config: &Config) -> Result<Access, String> {
    Access::build(AccessSettings {
        tokens: config.query.tokens.clone(),
        tenants: config.tenants.clone(),
        jwt: config.query.jwt.clone(),
        per_tenant_max_concurrent: config.query.per_tenant_max_concurrent,
        tenant_metric_labels: config.query.tenant_metric_labels,
        queue_timeout: std::time::Duration::from_secs(config.query.queue_timeout_secs),
        max_queued: config.query.max_queued,
    })
    .await
}
