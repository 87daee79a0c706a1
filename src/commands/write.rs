//! `sluice write`: the Kafka → Iceberg writer role.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use sluice_ingest::enrich::Enricher;
use sluice_ingest::writer::metrics::WriterMetrics;
use sluice_ingest::writer::{RecordKind, Route, Writer, WriterSettings, WriterStatus};
use sluice_schema::tables::{EVENT_LOGS, PLATFORM_EVENTS, POD_LOGS};
use sluice_warehouse::append::TableSink;
use sluice_warehouse::catalog;
use sluice_warehouse::commit_metrics::CommitMetrics;

use crate::config::Config;
use crate::health;

pub async fn run(config: &Config) -> anyhow::Result<()> {
    let Some(bootstrap) = config.kafka.bootstrap.clone() else {
        anyhow::bail!(
            "sluice write consumes Kafka: pass --kafka BROKERS (or SLUICE_KAFKA, or [kafka] bootstrap)"
        );
    };
    let catalog = catalog::open(&config.catalog, &config.warehouse, &config.data_dir).await?;
    catalog::ensure_tables(catalog.as_ref()).await?;
    let enricher = Enricher::new(&config.enrich).context("setting up enrichment")?;

    // Unique per process: a restarted pod keeps its name but is a new writer.
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "writer".into());
    let writer_id = format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let topics = &config.kafka.topics;
    let mut registry = Registry::default();
    let commits = CommitMetrics::register(&mut registry);
    let sink =
        |table| TableSink::new(catalog.clone(), table, &writer_id).with_metrics(commits.clone());
    let routes = vec![
        Route {
            topic: topics.events.clone(),
            kind: RecordKind::Events,
            sink: sink(&EVENT_LOGS),
        },
        Route {
            topic: topics.podlogs.clone(),
            kind: RecordKind::PodLogs,
            sink: sink(&POD_LOGS),
        },
        Route {
            topic: topics.k8s.clone(),
            kind: RecordKind::Lifecycle,
            sink: sink(&PLATFORM_EVENTS),
        },
    ];

    let metrics = WriterMetrics::register(&mut registry);
    let status = Arc::new(WriterStatus::default());
    let ready = {
        let status = status.clone();
        let catalog = catalog.clone();
        health::ready(move || {
            let status = status.clone();
            let catalog = catalog.clone();
            async move {
                if status.assigned_partitions.load(Ordering::Relaxed) == 0 {
                    return Err(
                        "no partitions assigned (broker unreachable or group rebalancing)".into(),
                    );
                }
                health::catalog_answers(catalog.as_ref(), &EVENT_LOGS).await
            }
        })
    };
    let addr = health::spawn(&config.http, health::routes(Arc::new(registry), ready)).await?;
    tracing::info!(%addr, writer = %writer_id, "writer serving /healthz, /readyz, /metrics");

    let mut settings = WriterSettings::new(&bootstrap, &config.kafka.group_id, &topics.dlq);
    settings.max_rows = config.writer.max_rows.max(1);
    settings.max_bytes = config.writer.max_bytes.max(1);
    settings.max_age = Duration::from_millis(config.writer.max_age_ms);
    settings.dedup_window = config.writer.dedup_window;
    settings.dedup_horizon = Duration::from_secs(config.writer.dedup_horizon_secs);
    settings.extra = config.kafka.properties.clone();
    Writer::new(routes, settings, enricher, metrics, status)
        .run(health::shutdown_signal())
        .await?;
    Ok(())
}
