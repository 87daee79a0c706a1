//! `sluice serve`: the query service.

use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use sluice_ingest::catalog;
use sluice_query::api::{self, ApiState};
use sluice_query::engine::Engine;

use crate::config::Config;
use crate::health;

/// Opens the configured catalog as a query engine, creating the tables when
/// the catalog has none yet (a fresh embedded data directory).
pub async fn open_engine(config: &Config) -> anyhow::Result<Arc<Engine>> {
    let catalog = catalog::open(&config.catalog, &config.warehouse, &config.data_dir).await?;
    if let Err(e) = catalog::ensure_tables(catalog.as_ref()).await {
        // A read-only catalog account may not create tables; queries still work.
        tracing::warn!(error = %e, "could not create or evolve the tables");
    }
    Ok(Arc::new(Engine::new(
        catalog,
        config.query.clone(),
        config.warehouse.s3.clone(),
    )?))
}

/// Without tokens the API is open, so it may only listen on loopback.
pub(crate) async fn check_exposure(config: &Config) -> anyhow::Result<()> {
    if !config.query.tokens.is_empty() {
        return Ok(());
    }
    let addrs: Vec<_> = tokio::net::lookup_host(&config.http.addr)
        .await
        .with_context(|| format!("resolving {}", config.http.addr))?
        .collect();
    if let Some(open) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "refusing to serve the API on {open} without authentication: configure [query] tokens \
             (see sluice.example.toml) or listen on 127.0.0.1"
        );
    }
    Ok(())
}

pub async fn run(config: &Config) -> anyhow::Result<()> {
    check_exposure(config).await?;
    let engine = open_engine(config).await?;
    let mut registry = Registry::default();
    engine.metrics().register(&mut registry);
    let ready: health::ReadyCheck = {
        let engine = engine.clone();
        Arc::new(move || {
            let engine = engine.clone();
            Box::pin(async move { engine.ready().await })
        })
    };
    let logs = Arc::new(sluice_query::logsearch::LogIndex::new(
        engine.catalog().clone(),
        engine.stores().clone(),
        config.data_dir.join("index-cache"),
    ));
    let state = Arc::new(ApiState {
        engine: engine.clone(),
        guardrails: config.guardrails.clone(),
        logs,
    });
    let router = health::routes(Arc::new(registry), ready)
        .merge(api::router(state, config.query.tokens.clone()))
        .fallback(api::not_found);
    let addr = health::spawn(&config.http.addr, router).await?;
    tracing::info!(%addr, "query service listening");
    eprintln!("sluice serve: listening on http://{addr}");
    health::shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}
