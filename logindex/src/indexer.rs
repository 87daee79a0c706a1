//! `sluice index`: follows the `pod_logs` table and indexes what each new
//! snapshot appended.
//!
//! The snapshots after the watermark (oldest first, several at a time up to
//! [`ROUND_LINES`]) have the data files they added read, a day at a time
//! (see [`crate::round_files`]), and indexed into a split per day of log
//! time (one per core for a day with lines enough, a new one past
//! [`MAX_SPLIT_LINES`] or when the splits being built outgrow the memory
//! budget); the splits are uploaded, then the state (splits + the last
//! snapshot as the new watermark) is replaced in one put. A crash before
//! that put leaves unlisted splits (removed when an indexer next starts,
//! see [`Indexer::collect_garbage`]) and the old watermark, so those
//! snapshots are indexed again: no line twice, none skipped.
//! Small splits of the same day are merged in the background, level by
//! level (see [`crate::merge_policy`]); a split past
//! [`MERGE_BELOW_LINES`] is not merged again.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use iceberg::Catalog;
use iceberg::table::Table;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_schema::tables::POD_LOGS;
use sluice_warehouse::maintain::snapshot::RETAINED_FROM_PROPERTY;

use crate::merge_policy::merge_groups;
pub use crate::merge_policy::{MERGE_BELOW_LINES, MERGE_LEVEL_LINES};
use crate::round_files::{BUCKET_MICROS, DataFileRef, added_files, all_files, feeding_order};
use crate::split::{
    OLDEST_SEARCHABLE_SCHEMA_VERSION, SPLIT_SCHEMA_VERSION, SplitError, SplitMeta, SplitWriter,
};
use crate::store::{IndexState, IndexStore, StoreError};

/// A split is closed and another begun past this many lines.
pub const MAX_SPLIT_LINES: u64 = 8_000_000;
/// Lines of consecutive snapshots indexed in one round (one save of the
/// state): bounds the work a crash repeats.
pub const ROUND_LINES: u64 = 16_000_000;
/// Memory the splits being built may hold together, by default.
pub const DEFAULT_MEMORY_BUDGET: usize = 2 << 30;
/// The share of the memory budget (one in this many bytes) that batches
/// waiting for the splits' threads may hold.
const QUEUED_SHARE: usize = 8;
/// A day's lines in a round past which a second split of that day is
/// built beside the first (up to [`IndexerSettings::threads`]): below it a
/// round is one split per day, so live indexing does not make more small
/// splits to merge.
pub const PARALLEL_FROM_LINES: u64 = 250_000;
/// How long a split taken out of the index (merged, expired, rebuilt) is
/// kept: longer than any search that read the index before may run.
pub const RETIRED_GRACE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("Iceberg: {0}")]
    Iceberg(#[from] iceberg::Error),
    #[error("reading {0}: {1}")]
    Parquet(String, parquet::errors::ParquetError),
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

#[derive(Debug, Clone)]
pub struct IndexerSettings {
    /// Where splits are built before upload (and fetched to be merged).
    pub work_dir: PathBuf,
    /// Splits of one day built side by side when a round has lines enough
    /// (each on a thread of its own); 0: one per core.
    pub threads: usize,
    /// Small splits of one day merged once there are this many.
    pub merge_at: usize,
    /// Bytes the splits being built and the batches waiting for them may
    /// hold in memory together (an eighth for the batches); past it the
    /// biggest split is closed.
    pub memory_budget: usize,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundReport {
    pub snapshots: usize,
    pub files: usize,
    pub lines: u64,
    pub bytes: u64,
    pub splits: usize,
    pub merged: usize,
    /// Splits dropped because retention removed their days.
    pub expired: usize,
    pub watermark: Option<i64>,
}

pub struct Indexer {
    catalog: Arc<dyn Catalog>,
    store: IndexStore,
    settings: IndexerSettings,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn new_split_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A split being built, with where it is built.
struct SplitInProgress {
    id: String,
    dir: PathBuf,
    writer: SplitWriter,
}

impl SplitInProgress {
    fn create(work_dir: &std::path::Path) -> Result<Self, SplitError> {
        let id = new_split_id();
        let dir = work_dir.join(&id);
        let writer = SplitWriter::create(&dir, &id)?;
        Ok(Self { id, dir, writer })
    }
}

impl Indexer {
    pub fn new(catalog: Arc<dyn Catalog>, store: IndexStore, settings: IndexerSettings) -> Self {
        Self {
            catalog,
            store,
            settings,
        }
    }

    /// Removes half-built splits from the work directory: after a round
    /// that failed (a full disk, a store outage), so retries do not pile
    /// them up. Only between rounds: a round in flight builds there.
    pub fn clear_work_dir(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.settings.work_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.settings.work_dir.display(), error = %e, "clearing the index work directory");
        }
    }

    /// Removes what a killed indexer left: splits uploaded but never listed
    /// in the state (older than `min_age`, so another indexer's upload in
    /// flight is not taken) and half-built splits in the work directory.
    /// Returns how many splits were removed.
    pub async fn collect_garbage(&self, min_age: std::time::Duration) -> Result<usize, IndexError> {
        let _ = std::fs::remove_dir_all(&self.settings.work_dir);
        let state = self.store.load_state().await?;
        let listed: HashSet<&str> = state
            .splits
            .iter()
            .map(|s| s.id.as_str())
            .chain(state.retired.iter().map(|r| r.id.as_str()))
            .collect();
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::zero());
        let mut removed = 0;
        for (id, changed) in self.store.list_splits().await? {
            if !listed.contains(id.as_str()) && changed <= cutoff {
                self.store.delete_split(&id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn store(&self) -> &IndexStore {
        &self.store
    }

    async fn table(&self) -> Result<Table, IndexError> {
        Ok(self.catalog.load_table(&POD_LOGS.ident()).await?)
    }

    /// Snapshots after `watermark` up to the current one, oldest first;
    /// `None` when the watermark is not an ancestor (history rewritten).
    fn new_snapshots(table: &Table, watermark: Option<i64>) -> Option<Vec<i64>> {
        let meta = table.metadata();
        let mut out = Vec::new();
        let mut at = meta.current_snapshot().map(|s| s.snapshot_id());
        while let Some(id) = at {
            if Some(id) == watermark {
                out.reverse();
                return Some(out);
            }
            out.push(id);
            at = meta.snapshot_by_id(id).and_then(|s| s.parent_snapshot_id());
        }
        if watermark.is_some() {
            return None;
        }
        out.reverse();
        Some(out)
    }

    /// Reads `files` and builds one split per day of log time (rows before
    /// `from` skipped); uploads them and returns their metadata.
    async fn build_splits(
        &self,
        table: &Table,
        files: &[DataFileRef],
        from: Option<i64>,
        report: &mut RoundReport,
    ) -> Result<Vec<SplitMeta>, IndexError> {
        let threads = match self.settings.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut writers: BTreeMap<i64, Vec<SplitInProgress>> = BTreeMap::new();
        // Batches queued for the splits' threads share one budget (an
        // eighth of the memory budget, the rest for the splits): the rows
        // of a file go to one day's split, and a queue per split made the
        // feeding wait for that split while the others ran dry.
        let queue_bytes = self.settings.memory_budget / QUEUED_SHARE;
        let queue_kib = (queue_bytes / 1024).clamp(1, u32::MAX as usize);
        let split_budget = self.settings.memory_budget - queue_bytes;
        let queued = Arc::new(tokio::sync::Semaphore::new(queue_kib));
        let mut metas = Vec::new();
        let mut finishing = tokio::task::JoinSet::new();
        for (file, last_of_day) in feeding_order(files) {
            // A rebuild from a time skips the days wholly before it unread.
            if let (Some(day), Some(from)) = (file.day, from)
                && (day + 1) * BUCKET_MICROS <= from
            {
                continue;
            }
            let path = &file.path;
            let bytes = table.file_io().new_input(path)?.read().await?;
            report.bytes += bytes.len() as u64;
            report.files += 1;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.with_batch_size(8192).build())
                .map_err(|e| IndexError::Parquet(path.clone(), e))?;
            for batch in reader {
                let batch = batch.map_err(|e| IndexError::Parquet(path.clone(), e.into()))?;
                for (bucket, rows) in bucket_slices(&batch, from)? {
                    let open: usize = writers.values().map(Vec::len).sum();
                    let day = writers.entry(bucket).or_default();
                    // The least loaded split of the day takes the rows; once
                    // it has lines enough, another is begun beside it — if
                    // fewer splits are open than cores (several days' splits
                    // already keep the cores busy, and more splits in the
                    // same memory would only be smaller).
                    let least = day
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, w)| w.writer.lines())
                        .map(|(i, w)| (i, w.writer.lines()));
                    let at = match least {
                        Some((i, lines)) if lines < PARALLEL_FROM_LINES || open >= threads => i,
                        _ => {
                            day.push(SplitInProgress::create(&self.settings.work_dir)?);
                            day.len() - 1
                        }
                    };
                    // A batch bigger than the whole budget waits for all of it.
                    let kib = (rows.get_array_memory_size() / 1024).clamp(1, queue_kib);
                    let permit = queued
                        .clone()
                        .acquire_many_owned(kib as u32)
                        .await
                        .map_err(|_| SplitError::Stopped)?;
                    day[at].writer.add_batch_held(&rows, permit)?;
                    if day[at].writer.lines() >= MAX_SPLIT_LINES {
                        let full = day.swap_remove(at);
                        self.finish_split(full, &mut finishing, threads, &mut metas, report)
                            .await?;
                    }
                }
                // The open splits' memory together stays within the budget:
                // the biggest is closed (another opens for its day if more
                // rows come).
                let held: usize = writers
                    .values()
                    .flatten()
                    .map(|w| w.writer.mem_usage())
                    .sum();
                if held > split_budget
                    && let Some((bucket, at)) = writers
                        .iter()
                        .flat_map(|(b, day)| day.iter().enumerate().map(move |(i, w)| (*b, i, w)))
                        .max_by_key(|(_, _, w)| w.writer.mem_usage())
                        .map(|(b, i, _)| (b, i))
                    && let Some(day) = writers.get_mut(&bucket)
                {
                    let full = day.swap_remove(at);
                    self.finish_split(full, &mut finishing, threads, &mut metas, report)
                        .await?;
                }
            }
            // The day is done: its splits close while the next is fed.
            if let Some(day) = last_of_day {
                for w in writers.remove(&day).unwrap_or_default() {
                    self.finish_split(w, &mut finishing, threads, &mut metas, report)
                        .await?;
                }
            }
        }
        for (_, day) in std::mem::take(&mut writers) {
            for w in day {
                self.finish_split(w, &mut finishing, threads, &mut metas, report)
                    .await?;
            }
        }
        while let Some(done) = finishing.join_next().await {
            Self::finished(done, &mut metas, report)?;
        }
        Ok(metas)
    }

    /// Closes a split: its segment written, packed and uploaded in the
    /// background while the round feeds the other splits, at most `threads`
    /// at once (past that, this waits for the oldest). Dropping `finishing`
    /// (an error) stops the others; what they uploaded is unlisted, removed
    /// by [`Indexer::collect_garbage`].
    async fn finish_split(
        &self,
        SplitInProgress { id, dir, writer }: SplitInProgress,
        finishing: &mut tokio::task::JoinSet<Result<SplitMeta, IndexError>>,
        threads: usize,
        metas: &mut Vec<SplitMeta>,
        report: &mut RoundReport,
    ) -> Result<(), IndexError> {
        while finishing.len() >= threads.max(1) {
            match finishing.join_next().await {
                Some(done) => Self::finished(done, metas, report)?,
                None => break,
            }
        }
        let store = self.store.clone();
        finishing.spawn(async move {
            let mut meta = tokio::task::spawn_blocking(move || writer.finish())
                .await
                .map_err(|_| SplitError::Panicked)??;
            let (bytes, hotcache_offset) = store.upload_split(&id, &dir).await?;
            meta.split_bytes = bytes;
            meta.hotcache_offset = Some(hotcache_offset);
            let _ = std::fs::remove_dir_all(&dir);
            Ok(meta)
        });
        Ok(())
    }

    fn finished(
        done: Result<Result<SplitMeta, IndexError>, tokio::task::JoinError>,
        metas: &mut Vec<SplitMeta>,
        report: &mut RoundReport,
    ) -> Result<(), IndexError> {
        let meta = done.map_err(|_| SplitError::Panicked)??;
        report.lines += meta.lines;
        report.splits += 1;
        metas.push(meta);
        Ok(())
    }

    /// Indexes every snapshot after the watermark; merges small splits.
    ///
    /// Consecutive snapshots are indexed together, up to [`ROUND_LINES`]
    /// lines, and the watermark moves past all of them at once: a backlog
    /// of many small commits becomes a few full splits instead of many
    /// small ones to merge later.
    pub async fn run_once(&self) -> Result<RoundReport, IndexError> {
        let table = self.table().await?;
        let mut state = self.store.load_state().await?;
        let mut report = RoundReport {
            watermark: state.watermark,
            ..Default::default()
        };
        if let Some(old) = state
            .splits
            .iter()
            .find(|s| s.schema_version < OLDEST_SEARCHABLE_SCHEMA_VERSION)
        {
            tracing::warn!(
                split = %old.id,
                format = old.schema_version,
                current = SPLIT_SCHEMA_VERSION,
                "the index holds splits this version cannot search in place; rebuilding it \
                 from the table (search answers 503 until done)"
            );
            return self.rebuild(None).await;
        }
        let Some(snapshots) = Self::new_snapshots(&table, state.watermark) else {
            tracing::warn!(
                watermark = ?state.watermark,
                "the indexed snapshot is no longer in the table's history; rebuilding"
            );
            return self.rebuild(None).await;
        };
        // Retention dropped days from the table: their splits go too.
        let retained_from = snapshots
            .iter()
            .filter_map(|id| table.metadata().snapshot_by_id(*id))
            .filter_map(|s| {
                s.summary()
                    .additional_properties
                    .get(RETAINED_FROM_PROPERTY)?
                    .parse::<i64>()
                    .ok()
            })
            .max();
        if let Some(from) = retained_from {
            report.expired = self.expire(&mut state, from).await?;
        }
        let mut pending = snapshots.into_iter().peekable();
        while pending.peek().is_some() {
            let started = Instant::now();
            let mut files = Vec::new();
            let mut group = Vec::new();
            let mut lines = 0u64;
            while let Some(snapshot) = pending.next_if(|_| group.is_empty() || lines < ROUND_LINES)
            {
                let added = added_files(&table, snapshot).await?;
                lines += added.iter().map(|f| f.lines).sum::<u64>();
                files.extend(added);
                group.push(snapshot);
            }
            let Some(&last) = group.last() else { break };
            let metas = self.build_splits(&table, &files, None, &mut report).await?;
            state.splits.extend(metas);
            state.watermark = Some(last);
            self.store.save_state(&state).await?;
            report.snapshots += group.len();
            report.watermark = Some(last);
            tracing::debug!(
                snapshots = group.len(),
                watermark = last,
                files = files.len(),
                elapsed = ?started.elapsed(),
                "indexed"
            );
        }
        report.merged = self.merge(&mut state).await?;
        self.delete_retired(&mut state).await?;
        Ok(report)
    }

    /// Replaces the index with one built from the table's current files
    /// (lines at or after `from` only).
    pub async fn rebuild(&self, from: Option<i64>) -> Result<RoundReport, IndexError> {
        let table = self.table().await?;
        let old = self.store.load_state().await?;
        let mut report = RoundReport::default();
        let files = all_files(&table).await?;
        let metas = self.build_splits(&table, &files, from, &mut report).await?;
        let mut state = IndexState {
            version: 1,
            watermark: table.metadata().current_snapshot().map(|s| s.snapshot_id()),
            splits: metas,
            retired: old.retired,
        };
        state.retire(old.splits.iter().map(|s| s.id.as_str()), now_micros());
        self.store.save_state(&state).await?;
        report.watermark = state.watermark;
        Ok(report)
    }

    /// Merges the small splits of a day once there are `merge_at` of them.
    /// Drops the splits whose lines are all before `from` (epoch
    /// microseconds): the days retention removed from the table. Splits are
    /// one day of log time each, so they line up with the table's days.
    async fn expire(&self, state: &mut IndexState, from: i64) -> Result<usize, IndexError> {
        let gone: Vec<SplitMeta> = state
            .splits
            .iter()
            .filter(|s| s.max_ts < from)
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        state.retire(gone.iter().map(|m| m.id.as_str()), now_micros());
        self.store.save_state(state).await?;
        tracing::info!(
            splits = gone.len(),
            from,
            "dropped the splits of days retention removed"
        );
        Ok(gone.len())
    }

    /// Deletes the objects of splits retired more than [`RETIRED_GRACE`]
    /// ago: the state is saved without them first, so a crash in between
    /// leaves unlisted objects, which [`Indexer::collect_garbage`] removes.
    async fn delete_retired(&self, state: &mut IndexState) -> Result<(), IndexError> {
        let grace = i64::try_from(RETIRED_GRACE.as_micros()).unwrap_or(i64::MAX);
        let due = state.due_for_deletion(now_micros(), grace);
        if due.is_empty() {
            return Ok(());
        }
        self.store.save_state(state).await?;
        for id in &due {
            self.store.delete_split(id).await?;
        }
        Ok(())
    }

    async fn merge(&self, state: &mut IndexState) -> Result<usize, IndexError> {
        let mut merged = 0;
        for group in merge_groups(&state.splits, self.settings.merge_at) {
            let metas: Vec<SplitMeta> = state
                .splits
                .iter()
                .filter(|s| group.contains(&s.id))
                .cloned()
                .collect();
            let new = self.merge_splits(&metas).await?;
            state.retire(metas.iter().map(|m| m.id.as_str()), now_micros());
            state.splits.push(new);
            self.store.save_state(state).await?;
            merged += metas.len();
        }
        Ok(merged)
    }

    async fn merge_splits(&self, metas: &[SplitMeta]) -> Result<SplitMeta, IndexError> {
        let mut indexes = Vec::new();
        let mut fetched = Vec::new();
        for m in metas {
            let dir = self.settings.work_dir.join(format!("{}.merging", m.id));
            fetched.push(dir.clone());
            self.store.fetch_split(&m.id, &dir).await?;
            let index = tantivy::Index::open_in_dir(&dir)?;
            crate::split::register_tokenizer(&index);
            indexes.push(index);
        }
        let id = new_split_id();
        let dir = self.settings.work_dir.join(&id);
        std::fs::create_dir_all(&dir)?;
        let schema_version = metas
            .first()
            .map_or(SPLIT_SCHEMA_VERSION, |m| m.schema_version);
        tokio::task::block_in_place(|| {
            let out = tantivy::directory::MmapDirectory::open(&dir)
                .map_err(tantivy::TantivyError::from)?;
            tantivy::indexer::merge_indices(&indexes, out).map(|_| ())
        })?;
        drop(indexes);
        for dir in fetched {
            let _ = std::fs::remove_dir_all(dir);
        }
        let mut meta = SplitMeta {
            id: id.clone(),
            min_ts: metas.iter().map(|m| m.min_ts).min().unwrap_or_default(),
            max_ts: metas.iter().map(|m| m.max_ts).max().unwrap_or_default(),
            lines: metas.iter().map(|m| m.lines).sum(),
            raw_bytes: metas.iter().map(|m| m.raw_bytes).sum(),
            split_bytes: 0,
            namespaces: metas
                .iter()
                .flat_map(|m| m.namespaces.iter().cloned())
                .collect(),
            pods: metas.iter().flat_map(|m| m.pods.iter().cloned()).collect(),
            containers: metas
                .iter()
                .flat_map(|m| m.containers.iter().cloned())
                .collect(),
            restarts: metas
                .iter()
                .filter_map(|m| m.restarts)
                .reduce(|(a, b), (c, d)| (a.min(c), b.max(d))),
            hotcache_offset: None,
            schema_version,
        };
        let (bytes, hotcache_offset) = self.store.upload_split(&id, &dir).await?;
        meta.split_bytes = bytes;
        meta.hotcache_offset = Some(hotcache_offset);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(meta)
    }
}

/// The rows of `batch` grouped by day of `ts` (rows before `from` left out).
fn bucket_slices(
    batch: &arrow_array::RecordBatch,
    from: Option<i64>,
) -> Result<Vec<(i64, arrow_array::RecordBatch)>, IndexError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMicrosecondType;
    let ts = batch
        .column_by_name("ts")
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or(SplitError::Column("ts"))?;
    let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (i, t) in ts.values().iter().enumerate() {
        if from.is_some_and(|f| *t < f) {
            continue;
        }
        rows.entry(t.div_euclid(BUCKET_MICROS))
            .or_default()
            .push(i as u32);
    }
    if rows.len() == 1 && rows.values().all(|r| r.len() == batch.num_rows()) {
        return Ok(rows.into_keys().map(|b| (b, batch.clone())).collect());
    }
    let mut out = Vec::new();
    for (bucket, idx) in rows {
        let idx = arrow_array::UInt32Array::from(idx);
        let cols = batch
            .columns()
            .iter()
            .map(|c| arrow_select::take::take(c, &idx, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SplitError::Io(std::io::Error::other(e)))?;
        let b = arrow_array::RecordBatch::try_new(batch.schema(), cols)
            .map_err(|e| SplitError::Io(std::io::Error::other(e)))?;
        out.push((bucket, b));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_listed_before_versions_are_version_one() {
        let meta: SplitMeta = serde_json::from_str(
            r#"{"id":"x","min_ts":0,"max_ts":1,"lines":1,"raw_bytes":1,"split_bytes":1,
                "namespaces":[],"pods":[]}"#,
        )
        .unwrap();
        assert_eq!(meta.schema_version, 1);
    }
}
