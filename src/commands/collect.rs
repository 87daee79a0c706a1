//! `sluice collect`: the node agent (DaemonSet) and HTTP intake.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use rdkafka::producer::{FutureProducer, Producer};
use sluice_ingest::collect::acks::Acks;
use sluice_ingest::collect::checkpoint::CheckpointFile;
use sluice_ingest::collect::intake::{Intake, IntakeSettings};
use sluice_ingest::collect::kube_watch::{self, KubeSettings, KubeWatcher};
use sluice_ingest::collect::metrics::CollectorMetrics;
use sluice_ingest::collect::produce::{LogProducer, ProducerSettings};
use sluice_ingest::collect::tail::{TailError, TailSettings, Tailer};
use sluice_ingest::outlet::KafkaOutlet;

use crate::config::Config;
use crate::health;

pub async fn run(config: &Config) -> anyhow::Result<()> {
    let Some(bootstrap) = config.kafka.bootstrap.clone() else {
        anyhow::bail!(
            "sluice collect produces to Kafka: pass --kafka BROKERS (or SLUICE_KAFKA, or [kafka] bootstrap)"
        );
    };
    let c = &config.collector;
    let topics = &config.kafka.topics;
    let producer_settings = ProducerSettings {
        bootstrap,
        compression: c.compression.clone(),
        queue_bytes: c.memory_limit_bytes / 4 * 3,
        extra: config.kafka.properties.clone(),
    };
    super::serve::check_exposure(
        config,
        super::serve::Exposed {
            api: false,
            intake: true,
        },
    )
    .await?;
    let mut registry = Registry::default();
    let metrics = CollectorMetrics::register(&mut registry);

    let intake_producer: FutureProducer = producer_settings
        .client_config()
        // An intake request waits for its records; do not hold them back.
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .context("creating the intake producer")?;
    let intake = Arc::new(Intake::new(
        Arc::new(KafkaOutlet::new(
            intake_producer.clone(),
            topics.events.clone(),
            Duration::from_secs(30),
        )),
        IntakeSettings {
            max_body_bytes: c.intake_max_body_bytes,
            max_record_bytes: c.intake_max_record_bytes,
            max_records: c.intake_max_records,
            max_concurrent: c.intake_max_concurrent,
            tokens: c.intake_tokens.clone(),
            tenants: config.intake_tenants(),
        },
        metrics.clone(),
    ));

    let watcher = if c.kubernetes {
        let client = kube_watch::client(c.kubeconfig.as_deref())
            .await
            .context("connecting to the Kubernetes API")?;
        let watcher = KubeWatcher::new(
            KubeSettings {
                cluster: config.cluster.clone(),
                kubeconfig: c.kubeconfig.clone(),
                state_path: config.data_dir.join("collector/k8s-watch.json"),
            },
            client,
            Arc::new(KafkaOutlet::new(
                intake_producer.clone(),
                topics.k8s.clone(),
                Duration::from_secs(60),
            )),
            metrics.clone(),
        )?;
        tracing::info!(topic = %topics.k8s, "watching Pods, Events, Deployments, StatefulSets and DaemonSets in the Kubernetes API");
        Some(watcher)
    } else {
        None
    };

    let ready = {
        let producer = intake_producer.clone();
        let watcher = watcher.clone();
        health::ready(move || {
            let producer = producer.clone();
            let watcher = watcher.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    producer
                        .client()
                        .fetch_metadata(None, Duration::from_secs(2))
                        .map(|_| ())
                        .map_err(|e| format!("Kafka: {e}"))
                })
                .await
                .map_err(|e| e.to_string())??;
                if let Some(w) = watcher {
                    w.check().await?;
                }
                Ok(())
            }
        })
    };
    let watch_task = watcher.clone().map(|w| tokio::spawn(w.run()));
    let router = health::routes(Arc::new(registry), ready).merge(intake.routes());
    let addr = health::spawn(&config.http, router).await?;
    tracing::info!(%addr, "collector serving POST /v1/events, /healthz, /readyz, /metrics");

    let stop = Arc::new(AtomicBool::new(false));
    let mut tailer_thread = None;
    if c.pod_logs {
        let acks = Arc::new(Acks::default());
        let producer = LogProducer::new(
            &producer_settings,
            &topics.podlogs,
            acks.clone(),
            metrics.clone(),
        )
        .context("creating the pod log producer")?;
        let settings = tail_settings(config);
        let checkpoint = CheckpointFile::new(&config.data_dir.join("collector"));
        tracing::info!(
            root = %c.pods_root.display(),
            checkpoint = %checkpoint.path().display(),
            topic = %topics.podlogs,
            "tailing pod logs"
        );
        let tailer = Tailer::new(
            settings,
            checkpoint,
            Box::new(producer),
            acks,
            metrics.clone(),
        )
        .context("starting the pod log tailer")?;
        tailer_thread = Some(spawn_tailer(tailer, stop.clone())?);
    }

    health::shutdown_signal().await;
    tracing::info!("shutting down: draining acknowledgements, saving checkpoints");
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = tailer_thread {
        join_thread(t, "the pod log tailer").await?;
    }
    if let (Some(task), Some(w)) = (watch_task, watcher) {
        task.abort();
        w.save().context("saving the Kubernetes watch state")?;
    }
    intake_producer
        .flush(Duration::from_secs(10))
        .context("flushing intake records")?;
    Ok(())
}

/// The tailer's settings from `[collector]` (shared with `sluice up`).
pub fn tail_settings(config: &Config) -> TailSettings {
    let c = &config.collector;
    let mut settings = TailSettings::new(
        c.pods_root.clone(),
        config.cluster.clone(),
        config.node.clone(),
    );
    settings.batch_lines = c.batch_lines.max(1);
    settings.read_threads = c.read_threads.max(1);
    settings.max_line_bytes = c.max_line_bytes.max(1024);
    settings.scan_interval = Duration::from_millis(c.scan_interval_ms.max(10));
    settings.forget_after = Duration::from_secs(c.forget_after_secs);
    settings
}

/// Runs the tailer on its own thread until `stop` is set; it then waits up
/// to 10 s for what it sent to be acknowledged.
pub fn spawn_tailer(
    tailer: Tailer,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<Result<(), TailError>>> {
    std::thread::Builder::new()
        .name("tailer".into())
        .spawn(move || tailer.run(&stop, Duration::from_secs(10)))
        .context("starting the tailer thread")
}

/// Waits for a worker thread without blocking the runtime; its error, or
/// its panic, is reported as `what`'s.
pub async fn join_thread<E: Into<anyhow::Error> + Send + 'static>(
    handle: std::thread::JoinHandle<Result<(), E>>,
    what: &str,
) -> anyhow::Result<()> {
    match tokio::task::spawn_blocking(move || handle.join())
        .await
        .with_context(|| format!("joining {what}"))?
    {
        Ok(r) => r.map_err(Into::into).with_context(|| what.to_string()),
        Err(_) => anyhow::bail!("{what} panicked"),
    }
}
