//! `sluice serve`: the query service.

use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use sluice_query::api;
use sluice_query::engine::Engine;
use sluice_warehouse::catalog;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health;
use crate::roles::query::QueryRole;

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

/// What a role serves on its port that needs tokens beyond loopback.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exposed {
    /// The query API (`[query] tokens`).
    pub api: bool,
    /// The HTTP intake (`[collector] intake_tokens`).
    pub intake: bool,
}

/// Without tokens an endpoint is open, so it may only listen on loopback:
/// each endpoint the port serves needs its tokens before the role listens
/// anywhere else.
pub(crate) async fn check_exposure(config: &Config, exposed: Exposed) -> anyhow::Result<()> {
    let mut open = Vec::new();
    let mut missing = Vec::new();
    if exposed.api && config.query.tokens.is_empty() && config.query.jwt.is_none() {
        open.push("the API");
        missing.push("[query] tokens (or [query.jwt])");
    }
    if exposed.intake
        && config.collector.intake_tokens.is_empty()
        && config.collector.intake_tenant_tokens.is_empty()
    {
        open.push("POST /v1/events");
        missing.push("[collector] intake_tokens");
    }
    if open.is_empty() {
        return Ok(());
    }
    let addrs: Vec<_> = tokio::net::lookup_host(&config.http.addr)
        .await
        .with_context(|| format!("resolving {}", config.http.addr))?
        .collect();
    if let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "refusing to serve {} on {addr} without authentication: configure {} \
             (see sluice.example.toml) or listen on 127.0.0.1",
            open.join(" and "),
            missing.join(" and ")
        );
    }
    Ok(())
}

pub async fn run(config: &Config) -> anyhow::Result<()> {
    check_exposure(
        config,
        Exposed {
            api: true,
            intake: false,
        },
    )
    .await?;
    let mut registry = Registry::default();
    let role = QueryRole::build(config, open_engine(config).await?, &mut registry).await?;
    let router = health::routes(Arc::new(registry), role.ready())
        .merge(role.router())
        .fallback(api::not_found);
    let addr = health::spawn(&config.http, router).await?;
    tracing::info!(%addr, "query service listening");
    eprintln!("sluice serve: listening on http://{addr}");
    let alerts = role.start_alerts();
    let stop_reload = CancellationToken::new();
    let reload = role.spawn_reload(stop_reload.clone());
    // With Kafka, the live tail reads the pod-log topic while tails are open.
    let stop_feed = CancellationToken::new();
    let feed =
        crate::roles::live_feed::spawn_kafka_feed(config, role.live().clone(), stop_feed.clone());
    health::shutdown_signal().await;
    stop_reload.cancel();
    let _ = reload.await;
    tracing::info!("shutting down");
    // Running queries are cancelled and tails closed; none holds the exit.
    role.live().close();
    stop_feed.cancel();
    let _ = feed.await;
    role.engine.executor().shutdown();
    alerts.stop().await;
    Ok(())
}
