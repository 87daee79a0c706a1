//! `sluice up`: the whole pipeline in one process.
//!
//! Without Kafka, the pod-log tailer, the HTTP intake (through a
//! write-ahead log) and the demo feed one in-process writer per table, whose
//! commits carry the sources' positions (see `sluice_ingest::embedded`); the
//! indexer follows `pod_logs` and the query service, console and intake
//! share one HTTP port. With `--kafka`, the four distributed roles run side
//! by side against the broker instead.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use sluice_ingest::collect::acks::Acks;
use sluice_ingest::collect::checkpoint::CheckpointFile;
use sluice_ingest::collect::intake::{Intake, IntakeSettings};
use sluice_ingest::collect::kube_watch::{self, KubeSettings, KubeWatcher};
use sluice_ingest::collect::metrics::CollectorMetrics;
use sluice_ingest::collect::tail::{Tailer, parse_table_source};
use sluice_ingest::embedded::instance::Instance;
use sluice_ingest::embedded::wal::Wal;
use sluice_ingest::embedded::wal::WalOutlet;
use sluice_ingest::embedded::{
    BatchLimits, DeadLetterFile, EmbeddedMetrics, LocalLogSink, Message, TableWriter, WriterStopped,
};
use sluice_ingest::enrich::Enricher;
use sluice_ingest::outlet::RecordOutlet;
use sluice_ingest::writer::RecordKind;
use sluice_logindex::indexer::DEFAULT_MEMORY_BUDGET;
use sluice_query::api;
use sluice_query::engine::Engine;
use sluice_schema::tables::{EVENT_LOGS, PLATFORM_EVENTS, POD_LOGS};
use sluice_warehouse::append::TableSink;
use sluice_warehouse::catalog;
use sluice_warehouse::commit_metrics::CommitMetrics;
use sluice_warehouse::maintain::metrics::MaintenanceMetrics;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::generator::live::{LiveConfig, LiveDemo, LiveOutlet};
use crate::health;
use crate::roles::indexer::{DEFAULT_MERGE_AT, IndexerMetrics, IndexerRole};
use crate::roles::live_feed::{TeeLogOutlet, TeeRecordOutlet};
use crate::roles::query::QueryRole;

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub demo: bool,
    /// The demo's load as a multiple of its default.
    pub demo_load: f64,
    /// The minute the demo's first spike starts in.
    pub demo_spike_minute: usize,
    /// How often the index follows new snapshots.
    pub index_interval: Duration,
}

pub async fn run(config: &Config, opts: UpOptions) -> anyhow::Result<()> {
    if config.kafka.bootstrap.is_some() {
        return distributed(config, opts).await;
    }
    // One port: the API and the intake.
    super::serve::check_exposure(
        config,
        super::serve::Exposed {
            api: true,
            intake: true,
        },
    )
    .await?;
    let mut config = config.clone();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let lock_path = config.data_dir.join("up.lock");
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "another `sluice up` is running on {} (it holds {})",
            config.data_dir.display(),
            lock_path.display()
        );
    }
    let up_dir = config.data_dir.join("up");

    let demo = if opts.demo {
        let mut live =
            LiveConfig::new(config.data_dir.join("demo")).scaled(opts.demo_load.max(0.01));
        live.first_spike_minute = opts.demo_spike_minute;
        let demo = LiveDemo::prepare(live).context("preparing the demo cluster")?;
        config.collector.pods_root = demo.pods_root();
        config.collector.pod_logs = true;
        config.enrich.directory = Some(PathBuf::from(&demo.facts().directory));
        config.cluster = "demo".into();
        Some(demo)
    } else {
        None
    };

    // Positions in the tables are this data directory's own (see
    // `sluice_ingest::embedded::instance`); a directory written before
    // instances keeps the unscoped ones.
    let legacy = up_dir.join("events.wal").exists() || up_dir.join("collector").exists();
    let instance = Arc::new(Instance::load_or_create(&up_dir, legacy)?);
    let catalog = catalog::open(&config.catalog, &config.warehouse, &config.data_dir).await?;
    catalog::ensure_tables(catalog.as_ref()).await?;
    let enricher = Enricher::new(&config.enrich).context("setting up enrichment")?;
    let writer_id = format!("up-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut registry = Registry::default();
    let commits = CommitMetrics::register(&mut registry);
    let sink_of =
        |table| TableSink::new(catalog.clone(), table, &writer_id).with_metrics(commits.clone());
    let (pod_sink, event_sink, lifecycle_sink) = (
        sink_of(&POD_LOGS),
        sink_of(&EVENT_LOGS),
        sink_of(&PLATFORM_EVENTS),
    );

    let collector_metrics = CollectorMetrics::register(&mut registry);
    let up_metrics = EmbeddedMetrics::register(&mut registry);
    // Table maintenance on its schedule (compaction, retention, expiry,
    // cleanup), so a month of the demo stays as fast as its first hour.
    let maintenance_task = if config.maintenance.enabled {
        let metrics = MaintenanceMetrics::register(&mut registry);
        let maintainer = super::maintain::maintainer(&config, metrics)
            .await
            .context("starting table maintenance")?;
        Some(tokio::spawn(async move {
            maintainer.run(std::future::pending()).await
        }))
    } else {
        None
    };
    let dead_letters = Arc::new(DeadLetterFile::new(up_dir.join("dead-letters.ndjson")));
    let limits = BatchLimits {
        max_age: Duration::from_millis(config.writer.max_age_ms.clamp(100, 1000)),
        ..BatchLimits::default()
    };
    let acks = Arc::new(Acks::default());
    // Forgotten pod-log files leave the pod_logs positions (TableWriter).
    acks.track_forgotten();
    let writer = |kind, sink: &TableSink, acks: Option<Arc<Acks>>| TableWriter {
        kind,
        sink: sink.clone(),
        enricher: enricher.clone(),
        limits,
        dead_letters: dead_letters.clone(),
        metrics: up_metrics.clone(),
        acks,
        instance: instance.clone(),
    };
    let (pod_tx, pod_rx) = mpsc::channel::<Message>(64);
    let (event_tx, event_rx) = mpsc::channel::<Message>(64);
    let (lifecycle_tx, lifecycle_rx) = mpsc::channel::<Message>(16);
    // A writer that stops on its own (another process writing as this
    // instance) stops `sluice up`.
    let (stopped_tx, mut stopped) = mpsc::unbounded_channel::<WriterStopped>();
    let supervised = |w: TableWriter, rx: mpsc::Receiver<Message>| {
        let stopped_tx = stopped_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = w.run(rx).await {
                let _ = stopped_tx.send(e);
            }
        })
    };
    let writers = vec![
        supervised(
            writer(RecordKind::PodLogs, &pod_sink, Some(acks.clone())),
            pod_rx,
        ),
        supervised(writer(RecordKind::Events, &event_sink, None), event_rx),
        supervised(
            writer(RecordKind::Lifecycle, &lifecycle_sink, None),
            lifecycle_rx,
        ),
    ];
    drop(stopped_tx);

    // The write-ahead logs resume from what their tables hold.
    let segment = config.writer.wal_segment_mib.max(1) << 20;
    let events_wal = Wal::open_with(&up_dir, "events", segment)?;
    let lifecycle_wal = Wal::open_with(&up_dir, "lifecycle", segment)?;
    let mut followers = Vec::new();
    for (wal, sink, tx) in [
        (&events_wal, &event_sink, event_tx),
        (&lifecycle_wal, &lifecycle_sink, lifecycle_tx),
    ] {
        let positions = TableWriter::start_positions(sink, &instance).await.start;
        let from = positions
            .get(&wal.source())
            .map_or(0, |p| u64::try_from(*p).unwrap_or(0));
        if from < wal.first_offset() {
            anyhow::bail!(
                "table {} holds {} only up to offset {from}, but the write-ahead log's oldest \
                 segment starts at {}: segments it had not committed were deleted",
                sink.contract().name,
                wal.source(),
                wal.first_offset()
            );
        }
        if from > wal.len() {
            anyhow::bail!(
                "{} is shorter ({} bytes) than what table {} already holds from it ({from}); \
                 was the data directory's up/ folder replaced?",
                wal.path().display(),
                wal.len(),
                sink.contract().name
            );
        }
        followers.push(tokio::spawn(wal.clone().follow(
            from,
            5000,
            tx,
            dead_letters.clone(),
            sink.contract().name,
        )));
    }

    // Segments of the logs the tables have passed are deleted.
    let trim_task = {
        let logs = [
            (events_wal.clone(), event_sink.clone()),
            (lifecycle_wal.clone(), lifecycle_sink.clone()),
        ];
        let instance = instance.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                for (wal, sink) in &logs {
                    let committed = TableWriter::start_positions(sink, &instance)
                        .await
                        .committed
                        .get(&wal.source())
                        .and_then(|p| u64::try_from(*p).ok());
                    if let Some(at) = committed
                        && let Err(e) = wal.trim(at)
                    {
                        tracing::warn!(error = %e, "trimming the write-ahead log");
                    }
                }
            }
        })
    };

    // The index follows pod_logs.
    let engine = Arc::new(Engine::new(
        catalog.clone(),
        config.query.clone(),
        config.warehouse.s3.clone(),
    )?);
    let query = QueryRole::build(&config, engine.clone(), &mut registry).await?;
    let indexer = IndexerRole::build(
        &config,
        catalog.clone(),
        engine.stores(),
        DEFAULT_MERGE_AT,
        DEFAULT_MEMORY_BUDGET,
        0,
        IndexerMetrics::register(&mut registry),
    )
    .await?;
    // Pod logs: the checkpoint starts from the positions pod_logs holds.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tailer_thread = None;
    if config.collector.pod_logs && config.collector.pods_root.is_dir() {
        let checkpoint = CheckpointFile::new(&up_dir.join("collector"));
        let mut saved = checkpoint.load()?;
        let positions = TableWriter::start_positions(&pod_sink, &instance)
            .await
            .start;
        for (source, offset) in &positions {
            if let Some((key, pos)) = parse_table_source(source, *offset) {
                let newer = saved
                    .get(&key)
                    .is_none_or(|p| (p.generation, p.offset) <= (pos.generation, pos.offset));
                if newer {
                    saved.insert(key, pos);
                }
            }
        }
        checkpoint.save(&saved)?;
        let settings = super::collect::tail_settings(&config);
        // What the writer accepts is also published to the live tail.
        let sink = Box::new(TeeLogOutlet {
            inner: LocalLogSink::new(pod_tx, acks.clone()),
            hub: query.live().clone(),
        });
        let tailer = Tailer::new(settings, checkpoint, sink, acks, collector_metrics.clone())
            .context("starting the pod log tailer")?;
        tailer_thread = Some(super::collect::spawn_tailer(tailer, stop.clone())?);
        tracing::info!(root = %config.collector.pods_root.display(), "tailing pod logs");
    } else {
        drop(pod_tx);
        tracing::info!(root = %config.collector.pods_root.display(), "no pod log tree to tail");
    }

    let index_interval = opts.index_interval;
    let index_task = tokio::spawn(async move {
        indexer
            .follow(index_interval, std::future::pending::<()>())
            .await
    });

    // Lifecycle events go to their write-ahead log, and terminations to
    // the live tail too.
    let lifecycle_outlet: Arc<dyn RecordOutlet> = Arc::new(TeeRecordOutlet {
        inner: Arc::new(WalOutlet(lifecycle_wal.clone())),
        hub: query.live().clone(),
    });
    // Lifecycle events from the Kubernetes API, as `sluice collect
    // --kubernetes` records them, into the lifecycle write-ahead log.
    let watcher = if config.collector.kubernetes {
        let client = kube_watch::client(config.collector.kubeconfig.as_deref())
            .await
            .context("connecting to the Kubernetes API ([collector] kubernetes)")?;
        let watcher = KubeWatcher::new(
            KubeSettings {
                cluster: config.cluster.clone(),
                kubeconfig: config.collector.kubeconfig.clone(),
                state_path: up_dir.join("k8s-watch.json"),
            },
            client,
            lifecycle_outlet.clone(),
            collector_metrics.clone(),
        )?;
        tracing::info!(
            "watching Pods, Events, Deployments, StatefulSets and DaemonSets in the Kubernetes API"
        );
        Some(watcher)
    } else {
        None
    };
    let watch_task = watcher.clone().map(|w| tokio::spawn(w.run()));

    // One port: API, console, intake, health.
    let intake = Arc::new(Intake::new(
        Arc::new(WalOutlet(events_wal.clone())),
        IntakeSettings {
            max_body_bytes: config.collector.intake_max_body_bytes,
            max_record_bytes: config.collector.intake_max_record_bytes,
            max_records: config.collector.intake_max_records,
            max_concurrent: config.collector.intake_max_concurrent,
            tokens: config.collector.intake_tokens.clone(),
            tenants: config.intake_tenants(),
        },
        collector_metrics.clone(),
    ));
    let router = health::routes(Arc::new(registry), query.ready())
        .merge(intake.routes())
        .merge(query.router())
        .fallback(api::not_found);
    let addr = health::spawn(&config.http, router).await?;

    let demo_stop = Arc::new(AtomicBool::new(false));
    let mut demo_thread = None;
    let url = format!("http://{addr}");
    if let Some(demo) = demo {
        let facts = demo.facts().clone();
        let mut outlet = LiveOutlet {
            handle: tokio::runtime::Handle::current(),
            events: Arc::new(WalOutlet(events_wal.clone())),
            lifecycle: lifecycle_outlet.clone(),
            stop: demo_stop.clone(),
        };
        let stop = demo_stop.clone();
        demo_thread = Some(
            std::thread::Builder::new()
                .name("demo".into())
                .spawn(move || {
                    let ran = demo.run(&mut outlet, &stop);
                    // Said when it happens, not only at shutdown.
                    if let Err(e) = &ran {
                        tracing::error!(error = %format!("{e:#}"), "the demo stopped");
                    }
                    ran
                })
                .context("starting the demo")?,
        );
        let facts_path = config.data_dir.join("demo/facts.json");
        std::fs::write(&facts_path, serde_json::to_vec_pretty(&facts)?)
            .with_context(|| format!("writing {}", facts_path.display()))?;
        let sluice = runnable_name();
        eprintln!(
            "sluice up: the demo cluster is live; console at {url}/\n\
             \n  try, in another terminal (the first OOMKill comes within 30 s):\n\
             \n    {sluice} attribution --server {url} --since 15m --by user\
             \n    {sluice} logs search OOMKilled --server {url} --pod {pod} --since 1h\
             \n    {sluice} guardrails peaks --server {url} --since 1h\n",
            pod = facts.first_oom_pod,
        );
    } else {
        eprintln!(
            "sluice up: listening on {url}/ (console, API, POST /v1/events); tailing {}",
            config.collector.pods_root.display()
        );
    }
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "sluice up running");
    let alerts = query.start_alerts();
    let stop_reload = tokio_util::sync::CancellationToken::new();
    let reload = query.spawn_reload(stop_reload.clone());

    let failure = tokio::select! {
        _ = health::shutdown_signal() => None,
        Some(e) = stopped.recv() => {
            tracing::error!(error = %e, "a table writer stopped");
            Some(e)
        }
    };
    eprintln!("sluice up: stopping; committing what was read");
    // Queries and tails first: a runaway one must not hold the drain.
    query.live().close();
    engine.executor().shutdown();
    stop_reload.cancel();
    let _ = reload.await;
    alerts.stop().await;
    demo_stop.store(true, Ordering::Relaxed);
    if let Some(t) = demo_thread {
        super::collect::join_thread(t, "the demo").await?;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = tailer_thread {
        super::collect::join_thread(t, "the pod log tailer").await?;
    }
    for f in followers {
        f.abort();
    }
    for w in writers {
        if tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .is_err()
        {
            tracing::warn!(
                "a table writer did not finish within 30 s; its sources resume from the table at the next start"
            );
        }
    }
    if let (Some(task), Some(w)) = (watch_task, watcher) {
        task.abort();
        if let Err(e) = w.save() {
            tracing::warn!(error = %e, "saving the Kubernetes watch state");
        }
    }
    index_task.abort();
    trim_task.abort();
    if let Some(t) = maintenance_task {
        t.abort();
    }
    drop(lock);
    match failure.or_else(|| stopped.try_recv().ok()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `sluice up --kafka`: collector, writer, indexer and query service as in
/// a cluster, on four ports from the configured one.
async fn distributed(config: &Config, opts: UpOptions) -> anyhow::Result<()> {
    if opts.demo {
        anyhow::bail!(
            "--demo runs without Kafka; for the distributed topology run `sluice gen` and point \
             [collector] pods_root at its var/log/pods"
        );
    }
    let base: std::net::SocketAddr = config.http.addr.parse().with_context(|| {
        format!(
            "--http {} must be ADDR:PORT for `sluice up --kafka`",
            config.http.addr
        )
    })?;
    let at = |offset: u16| -> anyhow::Result<Config> {
        let port = base.port().checked_add(offset).with_context(|| {
            format!(
                "--http {}: `sluice up --kafka` needs the three ports after it too",
                config.http.addr
            )
        })?;
        let mut c = config.clone();
        c.http.addr = std::net::SocketAddr::new(base.ip(), port).to_string();
        Ok(c)
    };
    let (serve, collect, write, index) = (at(0)?, at(1)?, at(2)?, at(3)?);
    eprintln!(
        "sluice up --kafka: query {} · collector {} · writer {} · indexer {}",
        serve.http.addr, collect.http.addr, write.http.addr, index.http.addr
    );
    let index_opts = super::index::IndexOptions {
        rebuild: false,
        from: None,
        once: false,
        interval: opts.index_interval,
        merge_at: crate::roles::indexer::DEFAULT_MERGE_AT,
        memory_budget: DEFAULT_MEMORY_BUDGET,
        threads: 0,
    };
    tokio::try_join!(
        super::serve::run(&serve),
        super::collect::run(&collect),
        super::write::run(&write),
        super::index::run(&index, index_opts),
    )?;
    Ok(())
}

/// How to run this very binary from another terminal: `sluice` when that
/// is what `PATH` finds, else its full path (`cargo run` leaves it under
/// `target/`, off the `PATH`), so the commands printed work as printed.
fn runnable_name() -> String {
    let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "sluice".into();
    };
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .filter_map(|dir| dir.join("sluice").canonicalize().ok())
            .next()
            .is_some_and(|first| first == me)
    });
    if found {
        return "sluice".into();
    }
    let text = me.display().to_string();
    if text.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
        format!("'{}'", text.replace('\'', "'\\''"))
    } else {
        text
    }
}
