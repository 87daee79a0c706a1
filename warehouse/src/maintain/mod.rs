//! Table maintenance, so the tables stay fast and bounded for months:
//! retention drops expired day partitions (`delete` snapshot), compaction
//! rewrites small files into large ones and merges manifests (`replace`
//! snapshot), old snapshots expire, and files nothing references any more
//! are deleted.
//!
//! Writers keep appending meanwhile. Every maintenance snapshot is built on
//! the table's current snapshot and committed only if the table has not
//! moved since (see [`commit`]); if it has, the snapshot is rebuilt on the
//! new state — compaction's new files are kept, only the manifests are
//! written again — and committed again. Rows appended in between stay,
//! rows compacted are swapped exactly once, and the writers' positions are
//! carried into every maintenance snapshot.

pub mod commit;
pub mod compact;
pub mod metrics;
pub mod orphans;
pub mod retention;
pub mod snapshot;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::spec::Operation;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableUpdate};
use serde::{Deserialize, Serialize};
use sluice_schema::tables::{ALL_TABLES, TableContract};

use crate::append::TableSink;
use crate::object_stores::ObjectStores;
use commit::{CommitError, MetadataCommitter};
use metrics::{MaintenanceMetrics, TableLabel};
use snapshot::{Rewrite, SnapshotError};

/// `[maintenance]`: what runs, how often, and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Run inside `sluice up` (the distributed deployment runs `sluice
    /// maintain` instead).
    pub enabled: bool,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Compaction writes files of about this size; files under three
    /// quarters of it are compacted.
    pub target_file_mib: u64,
    /// At most this much input is rewritten per table and run (bounds a
    /// run's time and memory; the rest waits for the next run).
    pub max_rewrite_mib: u64,
    /// Manifests are merged when a table has more than this many.
    pub max_manifests: usize,
    /// Snapshots older than this expire…
    pub snapshot_max_age_secs: u64,
    /// …but the newest this many are always kept.
    pub snapshots_to_keep: usize,
    /// Unreferenced files are deleted once this old.
    pub orphan_min_age_secs: u64,
    /// `sluice maintain` runs passes only while holding this Kubernetes
    /// Lease ("" = no lease), so one maintainer of many works at a time.
    pub lease: String,
    /// The Lease's namespace ("" = the client's: in-cluster, the pod's).
    pub lease_namespace: String,
    /// A holder that stops renewing loses the Lease after this long.
    pub lease_duration_secs: u64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 300,
            target_file_mib: 128,
            max_rewrite_mib: 1024,
            max_manifests: 16,
            snapshot_max_age_secs: 900,
            snapshots_to_keep: 10,
            orphan_min_age_secs: 3600,
            lease: String::new(),
            lease_namespace: String::new(),
            lease_duration_secs: 30,
        }
    }
}

/// `[retention]`: how long each table keeps its rows (`"14d"`, `"36h"`;
/// empty keeps forever).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub pod_logs: String,
    pub platform_events: String,
    pub platform_event_logs: String,
    pub alert_history: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            pod_logs: "14d".into(),
            platform_events: "90d".into(),
            platform_event_logs: "400d".into(),
            alert_history: "400d".into(),
        }
    }
}

impl RetentionConfig {
    /// The retention of a table; `None` keeps its rows forever.
    pub fn of(&self, table: &str) -> Result<Option<Duration>, String> {
        let text = match table {
            "pod_logs" => &self.pod_logs,
            "platform_events" => &self.platform_events,
            "platform_event_logs" => &self.platform_event_logs,
            "alert_history" => &self.alert_history,
            _ => return Ok(None),
        };
        parse_age(text).map_err(|e| format!("[retention] {table} = {text:?}: {e}"))
    }

    /// Checks every value (at config load).
    pub fn validate(&self) -> Result<(), String> {
        for t in ALL_TABLES {
            self.of(t.name)?;
        }
        Ok(())
    }
}

/// `"14d"`, `"36h"`, `"90m"` → a duration; `""` → none. Less than a day
/// is refused: retention drops whole days.
pub fn parse_age(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("a unit is missing (d, h or m)")?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| "expected a number and a unit, e.g. 14d")?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        _ => return Err(format!("unknown unit {unit:?} (d, h or m)")),
    };
    if secs < 86_400 {
        return Err("less than a day (retention drops whole days)".into());
    }
    Ok(Some(Duration::from_secs(secs)))
}

#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    #[error("table {table}: {context}: {source}")]
    Iceberg {
        table: &'static str,
        context: &'static str,
        #[source]
        source: Box<iceberg::Error>,
    },
    #[error(transparent)]
    Snapshot(Box<SnapshotError>),
    #[error(transparent)]
    Commit(Box<CommitError>),
    #[error("table {table}: {source}")]
    Rewrite {
        table: &'static str,
        #[source]
        source: compact::RewriteError,
    },
    #[error(transparent)]
    Orphans(Box<orphans::OrphanError>),
    #[error("table {table}: still conflicting after {attempts} attempts")]
    Busy { table: &'static str, attempts: u32 },
    #[error("{0}")]
    Config(String),
}

impl From<SnapshotError> for MaintainError {
    fn from(e: SnapshotError) -> Self {
        Self::Snapshot(Box::new(e))
    }
}

impl From<CommitError> for MaintainError {
    fn from(e: CommitError) -> Self {
        Self::Commit(Box::new(e))
    }
}

impl From<orphans::OrphanError> for MaintainError {
    fn from(e: orphans::OrphanError) -> Self {
        Self::Orphans(Box::new(e))
    }
}

/// Receives progress lines.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// What one table's run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TableReport {
    pub table: &'static str,
    pub expired_files: usize,
    pub expired_rows: u64,
    pub compacted_files: usize,
    pub compacted_bytes: u64,
    pub written_files: usize,
    pub manifests_before: usize,
    pub snapshots_expired: usize,
    /// Files listed under the table's `data/` and `metadata/`.
    pub files_listed: usize,
    pub orphans_deleted: usize,
    pub orphan_bytes_deleted: u64,
    pub data_files_after: usize,
    pub commit_retries: u32,
    pub seconds: f64,
}

/// Runs maintenance on the tables of one catalog.
pub struct Maintainer {
    catalog: Arc<dyn Catalog>,
    committer: Arc<MetadataCommitter>,
    stores: Arc<ObjectStores>,
    config: MaintenanceConfig,
    retention: RetentionConfig,
    metrics: MaintenanceMetrics,
    /// Progress lines (`sluice maintain --once`).
    progress: Option<Progress>,
    /// Milliseconds since the epoch that retention counts back from.
    clock: Clock,
}

/// A wall clock in milliseconds since the epoch.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Commit attempts before a run gives up on a table (the next run retries).
const ATTEMPTS: u32 = 20;

impl Maintainer {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        committer: Arc<MetadataCommitter>,
        stores: Arc<ObjectStores>,
        config: MaintenanceConfig,
        retention: RetentionConfig,
        metrics: MaintenanceMetrics,
    ) -> Result<Self, MaintainError> {
        retention.validate().map_err(MaintainError::Config)?;
        Ok(Self {
            catalog,
            committer,
            stores,
            config,
            retention,
            metrics,
            progress: None,
            clock: Arc::new(|| chrono::Utc::now().timestamp_millis()),
        })
    }

    /// Retention counts back from `clock` instead of the wall clock (a
    /// simulated month in a test).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    fn say(&self, line: &str) {
        tracing::info!("{line}");
        if let Some(p) = &self.progress {
            p(line);
        }
    }

    /// One pass over every table; a table that fails does not stop the
    /// others.
    pub async fn run_once(&self) -> Vec<Result<TableReport, MaintainError>> {
        let mut out = Vec::new();
        for contract in ALL_TABLES {
            let label = TableLabel {
                table: contract.name.to_string(),
            };
            let result = self.table(contract).await;
            match &result {
                Ok(r) => {
                    self.metrics.record(&label, r);
                }
                Err(e) => {
                    tracing::error!(table = contract.name, error = %e, "maintenance failed");
                    self.metrics.failures.get_or_create(&label).inc();
                }
            }
            out.push(result);
        }
        out
    }

    /// Runs every `interval_secs` until `stop` resolves.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let interval = Duration::from_secs(self.config.interval_secs.max(1));
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let _ = self.run_once().await;
        }
    }

    async fn load(&self, contract: &'static TableContract) -> Result<Table, MaintainError> {
        self.catalog
            .load_table(&contract.ident())
            .await
            .map_err(|source| MaintainError::Iceberg {
                table: contract.name,
                context: "loading the table",
                source: Box::new(source),
            })
    }

    /// Retention, compaction, snapshot expiry and cleanup of one table.
    pub async fn table(
        &self,
        contract: &'static TableContract,
    ) -> Result<TableReport, MaintainError> {
        let started = Instant::now();
        let mut report = TableReport {
            table: contract.name,
            ..TableReport::default()
        };

        // 1. Retention.
        if let Some(retention) = self
            .retention
            .of(contract.name)
            .map_err(MaintainError::Config)?
        {
            let first_kept = retention::first_kept_day((self.clock)(), retention);
            let table = self.load(contract).await?;
            let live = snapshot::live_entries(&table).await?;
            let expired = retention::expired_files(&table, &live, first_kept);
            if !expired.is_empty() {
                report.expired_files = expired.len();
                report.expired_rows = live
                    .iter()
                    .filter(|e| expired.contains(e.file_path()))
                    .map(|e| e.record_count())
                    .sum();
                self.say(&format!(
                    "{}: dropping {} files ({} rows) of days before {}",
                    contract.name,
                    expired.len(),
                    report.expired_rows,
                    day_name(first_kept)
                ));
                report.commit_retries += self
                    .commit_rewrite(
                        contract,
                        Operation::Delete,
                        &expired,
                        &[],
                        "retention",
                        Some(first_kept),
                    )
                    .await?;
            }
        }

        // 2. Compaction (and manifest merging).
        let table = self.load(contract).await?;
        let live = snapshot::live_entries(&table).await?;
        report.manifests_before = manifest_count(contract, &table).await?;
        let target = self.config.target_file_mib.max(1) << 20;
        let mut groups = compact::plan(&live, target);
        // Largest groups first, up to this run's budget.
        groups.sort_by_key(|g| std::cmp::Reverse(g.files.len()));
        let budget = self.config.max_rewrite_mib.max(1) << 20;
        let mut taken = 0u64;
        groups.retain(|g| {
            let fits = taken == 0 || taken + g.bytes() <= budget;
            if fits {
                taken += g.bytes();
            }
            fits
        });
        if !groups.is_empty() || report.manifests_before > self.config.max_manifests {
            let sink = TableSink::new(self.catalog.clone(), contract, "maintain")
                .with_target_file_size(target as usize);
            let mut added = Vec::new();
            for (i, group) in groups.iter().enumerate() {
                self.say(&format!(
                    "{}: compacting group {}/{}: {} files, {:.1} MiB, partition {}",
                    contract.name,
                    i + 1,
                    groups.len(),
                    group.files.len(),
                    group.bytes() as f64 / 1048576.0,
                    group.partition
                ));
                let (files, _) =
                    compact::rewrite(&sink, &table, group)
                        .await
                        .map_err(|source| MaintainError::Rewrite {
                            table: contract.name,
                            source,
                        })?;
                report.compacted_files += group.files.len();
                report.compacted_bytes += group.bytes();
                report.written_files += files.len();
                added.extend(files);
            }
            let removed = compact::paths(&groups);
            match self
                .commit_rewrite(
                    contract,
                    Operation::Replace,
                    &removed,
                    &added,
                    "compaction",
                    None,
                )
                .await
            {
                Ok(retries) => report.commit_retries += retries,
                Err(e) => {
                    // Never committed: the new files are nobody's.
                    for f in &added {
                        let _ = table.file_io().delete(f.file_path()).await;
                    }
                    return Err(e);
                }
            }
        }

        // 3. Snapshot expiry (iceberg-rust's own action: any catalog).
        let before = self.load(contract).await?;
        let older_than = chrono::Utc::now().timestamp_millis()
            - i64::try_from(self.config.snapshot_max_age_secs.saturating_mul(1000)).unwrap_or(0);
        // The action commits a new metadata.json even when nothing
        // expires: skip it then, or an idle table gains a metadata version
        // (and a longer metadata log) every pass.
        let keep_last = self.config.snapshots_to_keep.max(1);
        let snapshots = before.metadata().snapshots().count();
        let any_old = before
            .metadata()
            .snapshots()
            .any(|s| s.timestamp_ms() < older_than);
        if snapshots > keep_last && any_old {
            let tx = Transaction::new(&before);
            let action = tx
                .expire_snapshots()
                .expire_older_than_ms(older_than)
                .retain_last(keep_last);
            action
                .apply(tx)
                .map_err(|source| MaintainError::Iceberg {
                    table: contract.name,
                    context: "expiring snapshots",
                    source: Box::new(source),
                })?
                .commit(self.catalog.as_ref())
                .await
                .map_err(|source| MaintainError::Iceberg {
                    table: contract.name,
                    context: "expiring snapshots",
                    source: Box::new(source),
                })?;
        }

        // 4. Cleanup. What the table still reaches is read once: the files
        //    only the expired snapshots reached go without a listing, then
        //    the table's directories are listed for files nothing references
        //    (a writer's that died before its commit, say).
        let table = self.load(contract).await?;
        let keep = orphans::reachable(&table).await?;
        let retained: HashSet<i64> = table
            .metadata()
            .snapshots()
            .map(|s| s.snapshot_id())
            .collect();
        let expired: HashSet<i64> = before
            .metadata()
            .snapshots()
            .map(|s| s.snapshot_id())
            .filter(|id| !retained.contains(id))
            .collect();
        report.snapshots_expired = expired.len();
        if !expired.is_empty() {
            let swept = orphans::delete_unreachable(&before, &expired, &keep).await?;
            report.orphans_deleted += swept.deleted;
        }
        let swept = orphans::sweep(
            &table,
            &keep,
            &self.stores,
            Duration::from_secs(self.config.orphan_min_age_secs),
        )
        .await?;
        report.files_listed = swept.listed;
        report.orphans_deleted += swept.deleted;
        report.orphan_bytes_deleted = swept.deleted_bytes;
        report.data_files_after = snapshot::live_entries(&table).await?.len();
        report.seconds = started.elapsed().as_secs_f64();
        self.say(&format!(
            "{}: {} files compacted into {}, {} expired, {} snapshots expired, {} unreferenced files deleted; {} data files now ({:.1} s)",
            contract.name,
            report.compacted_files,
            report.written_files,
            report.expired_files,
            report.snapshots_expired,
            report.orphans_deleted,
            report.data_files_after,
            report.seconds
        ));
        Ok(report)
    }

    /// Builds and commits a rewrite on the current snapshot, rebuilding on
    /// the new one when a commit landed in between. Returns the retries.
    async fn commit_rewrite(
        &self,
        contract: &'static TableContract,
        operation: Operation,
        removed: &HashSet<String>,
        added: &[iceberg::spec::DataFile],
        reason: &'static str,
        retained_from_day: Option<i64>,
    ) -> Result<u32, MaintainError> {
        let mut backoff = crate::retry::Backoff::commit_conflict();
        for attempt in 0..ATTEMPTS {
            let table = self.load(contract).await?;
            let updates: Vec<TableUpdate> = snapshot::build(
                &table,
                &Rewrite {
                    operation: operation.clone(),
                    removed,
                    added,
                    reason,
                    retained_from_day,
                },
            )
            .await?;
            match self.committer.commit(&table, updates).await {
                Ok(_) => return Ok(attempt),
                Err(CommitError::Conflict { .. }) => {
                    tracing::debug!(
                        table = contract.name,
                        attempt,
                        "a commit landed first; rebuilding on it"
                    );
                    backoff.wait().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(MaintainError::Busy {
            table: contract.name,
            attempts: ATTEMPTS,
        })
    }
}

async fn manifest_count(
    contract: &'static TableContract,
    table: &Table,
) -> Result<usize, MaintainError> {
    let Some(current) = table.metadata().current_snapshot() else {
        return Ok(0);
    };
    let list = table
        .manifest_list_reader(current)
        .load()
        .await
        .map_err(|source| MaintainError::Iceberg {
            table: contract.name,
            context: "reading the manifest list",
            source: Box::new(source),
        })?;
    Ok(list.entries().len())
}

fn day_name(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| day.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(
            parse_age("14d").unwrap(),
            Some(Duration::from_secs(14 * 86_400))
        );
        assert_eq!(
            parse_age("36h").unwrap(),
            Some(Duration::from_secs(36 * 3_600))
        );
        assert_eq!(parse_age("").unwrap(), None);
        assert!(parse_age("2h").is_err(), "under a day");
        assert!(parse_age("14").is_err());
        assert!(parse_age("14w").is_err());
        assert!(RetentionConfig::default().validate().is_ok());
    }
}
