//! `sluice import DIR`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use sluice_ingest::enrich::{EnrichConfig, Enricher};
use sluice_ingest::import::{ImportObserver, Importer, Rejected, discover, rejected_json};
use sluice_schema::tables::{EVENT_LOGS, PLATFORM_EVENTS, POD_LOGS};
use sluice_warehouse::append::TableSink;
use sluice_warehouse::catalog;

use crate::config::Config;
use crate::output::{DataTable, Datum, OutputFormat};
use crate::progress::Progress;

/// Rejected records are written to a file; the first few are also shown.
struct Observer {
    progress: Progress,
    rejects_path: PathBuf,
    rejects: Mutex<Option<BufWriter<File>>>,
    shown: AtomicU64,
}

const SHOW_REJECTS: u64 = 5;

impl ImportObserver for Observer {
    fn rejected(&self, r: &Rejected) {
        if self.shown.fetch_add(1, Ordering::Relaxed) < SHOW_REJECTS {
            tracing::warn!(file = %r.file, position = %r.position, reason = %r.reason, "rejected record");
        }
        let Ok(mut guard) = self.rejects.lock() else {
            return;
        };
        if guard.is_none() {
            match File::create(&self.rejects_path) {
                Ok(f) => *guard = Some(BufWriter::new(f)),
                Err(e) => {
                    tracing::error!(path = %self.rejects_path.display(), error = %e, "cannot write rejects file");
                    return;
                }
            }
        }
        if let Some(w) = guard.as_mut() {
            let _ = writeln!(w, "{}", rejected_json(r));
        }
    }

    fn progress(&self, bytes: u64) {
        self.progress.add(bytes);
    }
}

pub struct ImportOptions {
    pub dir: PathBuf,
    pub directory: Option<PathBuf>,
    pub format: OutputFormat,
}

pub async fn run(config: &Config, opts: ImportOptions) -> anyhow::Result<()> {
    let files = discover(&opts.dir)?;
    let catalog = catalog::open(&config.catalog, &config.warehouse, &config.data_dir).await?;
    catalog::ensure_tables(catalog.as_ref()).await?;

    let mut enrich: EnrichConfig = config.enrich.clone();
    let bundled = opts.dir.join("directory.yaml");
    if let Some(d) = opts.directory.clone() {
        enrich.directory = Some(d);
    } else if bundled.is_file() {
        enrich.directory = Some(bundled);
    }
    let enricher = Enricher::new(&enrich).context("setting up enrichment")?;

    let writer_id = format!(
        "import-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let importer = Importer {
        sinks: [
            TableSink::new(catalog.clone(), &EVENT_LOGS, &writer_id),
            TableSink::new(catalog.clone(), &POD_LOGS, &writer_id),
            TableSink::new(catalog.clone(), &PLATFORM_EVENTS, &writer_id),
        ],
        enricher,
        cluster: config.cluster.clone(),
    };
    let rejects_dir = config.data_dir.join("rejects");
    std::fs::create_dir_all(&rejects_dir)
        .with_context(|| format!("creating {}", rejects_dir.display()))?;
    let observer = Observer {
        progress: Progress::new("bytes"),
        rejects_path: rejects_dir.join(format!(
            "import-{}.ndjson",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        )),
        rejects: Mutex::new(None),
        shown: AtomicU64::new(0),
    };
    observer
        .progress
        .set_total(files.iter().map(|f| f.bytes).sum());
    let started = std::time::Instant::now();
    let report = importer.run(&files, &observer).await;
    observer.progress.finish();
    if let Ok(mut g) = observer.rejects.lock()
        && let Some(w) = g.as_mut()
    {
        w.flush().context("writing the rejects file")?;
    }
    let report = report?;

    let mut table = DataTable::new(&["item", "count"]);
    let rows: [(&str, Datum); 9] = [
        ("files imported", report.files_imported.into()),
        ("files already imported", report.files_skipped.into()),
        ("platform events", report.events.into()),
        ("pod log lines", report.pod_log_lines.into()),
        ("lifecycle events", report.lifecycle_events.into()),
        ("rejected records", report.rejected.into()),
        ("commits", report.commits.into()),
        ("bytes read", report.bytes.into()),
        (
            "seconds",
            format!("{:.1}", started.elapsed().as_secs_f64()).into(),
        ),
    ];
    for (item, count) in rows {
        table.push(vec![item.into(), count]);
    }
    table.print(opts.format)?;
    if report.rejected > 0 {
        eprintln!(
            "{} records rejected; reasons in {}",
            report.rejected,
            observer.rejects_path.display()
        );
    }
    Ok(())
}
