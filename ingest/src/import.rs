//! `sluice import DIR`: history straight into the tables, through the same
//! validation, enrichment and exactly-once append as the streaming writer.
//!
//! DIR may hold (as `sluice gen` writes them): NDJSON platform events under
//! `events/`, a kubelet tree under `var/log/pods/`, and lifecycle events in
//! `k8s-events.ndjson`. Each file is recorded in the table's snapshot summary
//! by a key made of its path and a hash of its content, in the same commit as
//! its rows: re-running an import adds nothing, and an import killed midway
//! resumes with the files it had not committed.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use flate2::read::GzDecoder;
use serde_json::json;
use sluice_schema::batch;
use sluice_schema::raw::{LifecycleEvent, PodLogRecord};
use sluice_schema::tables::{EVENT_LOGS, PLATFORM_EVENTS, POD_LOGS, TableContract};
use xxhash_rust::xxh3::xxh3_128;

use crate::enrich::Enricher;
use crate::sources::pod_log_file::{self, DEFAULT_MAX_LINE_BYTES, Origin};
use crate::sources::pod_log_path::PodLogPath;
use sluice_warehouse::append::{Advance, Positions, SinkError, TableSink, file_source};
use sluice_warehouse::commit_loop::{Retries, Settled};

/// Rows per commit: big enough for large files, small enough to bound memory.
const COMMIT_ROWS: usize = 500_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Events,
    PodLog,
    Lifecycle,
}

impl FileKind {
    fn table(self) -> &'static TableContract {
        match self {
            FileKind::Events => &EVENT_LOGS,
            FileKind::PodLog => &POD_LOGS,
            FileKind::Lifecycle => &PLATFORM_EVENTS,
        }
    }
}

#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    /// Path relative to the import root, with `/` separators.
    pub relative: String,
    pub kind: FileKind,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} holds nothing to import (expected events/*.ndjson, var/log/pods/… or k8s-events.ndjson)"
    )]
    Empty(PathBuf),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("building a batch for {table}: {source}")]
    Batch {
        table: &'static str,
        source: arrow_schema::ArrowError,
    },
    #[error("a background commit did not finish: {0}")]
    CommitTask(#[from] tokio::task::JoinError),
    #[error("{table}: {file} was imported by another import running at the same time")]
    Raced { table: &'static str, file: String },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Finds the importable files under `root`, in a stable order.
pub fn discover(root: &Path) -> Result<Vec<InputFile>, ImportError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let kind = if relative.contains("var/log/pods/") && PodLogPath::parse(&path).is_ok() {
                FileKind::PodLog
            } else if relative == "k8s-events.ndjson" || relative.ends_with("/k8s-events.ndjson") {
                FileKind::Lifecycle
            } else if relative.starts_with("events/") && relative.ends_with(".ndjson") {
                FileKind::Events
            } else {
                continue;
            };
            let bytes = fs::metadata(&path).map_err(io_err(&path))?.len();
            out.push(InputFile {
                path,
                relative,
                kind,
                bytes,
            });
        }
    }
    if out.is_empty() {
        return Err(ImportError::Empty(root.to_path_buf()));
    }
    out.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(out)
}

/// Totals of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub files_imported: u64,
    pub files_skipped: u64,
    pub events: u64,
    pub pod_log_lines: u64,
    pub lifecycle_events: u64,
    pub rejected: u64,
    pub commits: u64,
    pub bytes: u64,
}

/// A record that failed validation, with where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub file: String,
    /// 1-based line number, or the byte offset for pod logs.
    pub position: String,
    pub reason: String,
}

/// Where rejected records and progress go.
pub trait ImportObserver: Send + Sync {
    fn rejected(&self, r: &Rejected);
    /// Bytes of input processed since the last call.
    fn progress(&self, bytes: u64);
}

pub struct Importer {
    pub sinks: [TableSink; 3],
    pub enricher: Enricher,
    pub cluster: String,
}

struct Pending {
    sink_index: usize,
    advances: Vec<Advance>,
    batches: Vec<RecordBatch>,
    rows: usize,
    files: u64,
}

/// A commit running in the background.
struct InFlight {
    task: tokio::task::JoinHandle<(&'static str, Settled)>,
    files: u64,
}

impl Importer {
    fn sink_index(kind: FileKind) -> usize {
        match kind {
            FileKind::Events => 0,
            FileKind::PodLog => 1,
            FileKind::Lifecycle => 2,
        }
    }

    fn schema(&self, index: usize) -> Result<SchemaRef, ImportError> {
        let table = self.sinks[index].contract();
        table.arrow_schema().map(Arc::new).map_err(|e| {
            ImportError::Sink(SinkError::Iceberg {
                table: table.name,
                context: "arrow schema",
                source: Box::new(e),
            })
        })
    }

    /// Imports `files`; already-imported ones are skipped.
    pub async fn run(
        &self,
        files: &[InputFile],
        observer: &dyn ImportObserver,
    ) -> Result<ImportReport, ImportError> {
        let mut report = ImportReport::default();
        let mut done: [Positions; 3] = Default::default();
        for (i, sink) in self.sinks.iter().enumerate() {
            done[i] = sink.current_positions().await?;
        }
        let mut pending: [Option<Pending>; 3] = Default::default();
        let mut in_flight: Option<InFlight> = None;
        for file in files {
            let index = Self::sink_index(file.kind);
            let content = read_content(&file.path)?;
            let key = format!("{}#{:032x}", file.relative, xxh3_128(&content));
            let source = file_source(&key);
            if done[index].contains_key(&source) {
                report.files_skipped += 1;
                observer.progress(file.bytes);
                continue;
            }
            let schema = self.schema(index)?;
            let (batches, rows, rejected) = self.parse(file, &content, &schema, observer)?;
            report.rejected += rejected;
            match file.kind {
                FileKind::Events => report.events += rows as u64,
                FileKind::PodLog => report.pod_log_lines += rows as u64,
                FileKind::Lifecycle => report.lifecycle_events += rows as u64,
            }
            report.bytes += file.bytes;
            let p = pending[index].get_or_insert_with(|| Pending {
                sink_index: index,
                advances: Vec::new(),
                batches: Vec::new(),
                rows: 0,
                files: 0,
            });
            p.advances.push(Advance {
                source,
                from: None,
                to: 1,
            });
            p.batches.extend(batches);
            p.rows += rows;
            p.files += 1;
            if (p.rows >= COMMIT_ROWS || p.advances.len() >= 256)
                && let Some(p) = pending[index].take()
            {
                self.flush(p, &mut in_flight, &mut report).await?;
            }
            observer.progress(file.bytes);
        }
        for p in pending.into_iter().flatten() {
            self.flush(p, &mut in_flight, &mut report).await?;
        }
        if let Some(commit) = in_flight.take() {
            Self::settle(commit, &mut report).await?;
        }
        Ok(report)
    }

    /// Starts committing `p` in the background, so the next files are parsed
    /// while this one is written; at most one commit is in flight.
    async fn flush(
        &self,
        p: Pending,
        in_flight: &mut Option<InFlight>,
        report: &mut ImportReport,
    ) -> Result<(), ImportError> {
        let sink = self.sinks[p.sink_index].clone();
        // Sorted while the previous commit is still writing.
        let sorted = sink.sort_blocking(p.batches).await?;
        if let Some(commit) = in_flight.take() {
            Self::settle(commit, report).await?;
        }
        let files = p.files;
        let advances = p.advances;
        let task = tokio::spawn(async move {
            // A failed attempt is tried twice more: the file keys make a
            // retry (or a re-run of the import) exact.
            let on_error = |e: &SinkError| tracing::warn!(error = %e, "import commit failed");
            let settled = sink
                .commit_settled(&advances, sorted.as_ref(), Retries::Attempts(3), &on_error)
                .await;
            (sink.contract().name, settled)
        });
        *in_flight = Some(InFlight { task, files });
        Ok(())
    }

    async fn settle(commit: InFlight, report: &mut ImportReport) -> Result<(), ImportError> {
        let (table, settled) = commit.task.await?;
        match settled {
            // Committed now, or by an earlier attempt whose answer was lost.
            Settled::Committed { .. } => {
                report.commits += 1;
                report.files_imported += commit.files;
                Ok(())
            }
            Settled::Fenced { source, .. } => Err(ImportError::Raced {
                table,
                file: source,
            }),
            Settled::Failed(e) => Err(e.into()),
        }
    }

    fn parse(
        &self,
        file: &InputFile,
        content: &[u8],
        schema: &SchemaRef,
        observer: &dyn ImportObserver,
    ) -> Result<(Vec<RecordBatch>, usize, u64), ImportError> {
        let table = file.kind.table().name;
        let batch_err = |source| ImportError::Batch { table, source };
        let mut rejected = 0u64;
        let mut reject = |position: String, reason: String| {
            rejected += 1;
            observer.rejected(&Rejected {
                file: file.relative.clone(),
                position,
                reason,
            });
        };
        match file.kind {
            FileKind::Events => {
                let lines: Vec<_> = ndjson_lines(content).collect();
                let now = chrono::Utc::now().timestamp_micros();
                let decoded = self
                    .enricher
                    .decode_events(schema, &lines, now)
                    .map_err(batch_err)?;
                for (n, err) in decoded.rejected {
                    reject(format!("line {n}"), err.to_string());
                }
                Ok((decoded.batches, decoded.rows, rejected))
            }
            FileKind::Lifecycle => {
                let mut events = Vec::new();
                for (n, line) in ndjson_lines(content) {
                    match LifecycleEvent::from_json_bytes(line) {
                        Ok(e) => events.push(e),
                        Err(err) => reject(format!("line {n}"), err.to_string()),
                    }
                }
                let b = batch::platform_events_batch(schema, &events).map_err(batch_err)?;
                Ok((vec![b], events.len(), rejected))
            }
            FileKind::PodLog => {
                let meta = PodLogPath::parse(&file.path).map_err(|e| ImportError::Io {
                    path: file.path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                })?;
                let origin = Origin {
                    cluster: &self.cluster,
                    node: None,
                };
                let (records, stats): (Vec<PodLogRecord>, _) =
                    pod_log_file::read_pod_log(&meta, content, &origin, DEFAULT_MAX_LINE_BYTES);
                for example in &stats.malformed_examples {
                    reject(example.clone(), "not a CRI or json-file log line".into());
                }
                rejected += stats
                    .malformed_lines
                    .saturating_sub(stats.malformed_examples.len() as u64);
                let b = batch::pod_logs_batch(schema, &records).map_err(batch_err)?;
                Ok((vec![b], records.len(), rejected))
            }
        }
    }
}

/// Non-empty lines with their 1-based numbers.
fn ndjson_lines(content: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    content
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
}

fn read_content(path: &Path) -> Result<Vec<u8>, ImportError> {
    let raw = fs::read(path).map_err(io_err(path))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io_err(path))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// A rejected record as a JSON line (for a rejects file).
pub fn rejected_json(r: &Rejected) -> String {
    json!({"file": r.file, "position": r.position, "reason": r.reason}).to_string()
}
