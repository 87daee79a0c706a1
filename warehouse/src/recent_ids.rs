//! The ids a table received most recently, read back from the table itself.
//!
//! A writer drops replayed records by id (see `writer::dedup`). Its window
//! of committed ids lives in memory, so after a restart or a rebalance it
//! would be empty exactly when replays arrive: a collector that crashed
//! re-sends the lines after its last checkpoint, a client retries a request
//! that got a 503. Those replays follow their originals closely, so the ids
//! of the table's latest appends are the ones that matter: this reads the id
//! column of the data files added by the newest `append` snapshots, newest
//! first, until a count or an age (relative to the newest snapshot) is
//! reached. Only one column is read, with ranged reads.
//!
//! Snapshots that rewrite rows (compaction's `replace`) add no new ids and
//! are skipped; the walk stops where the snapshot history ends (expired
//! snapshots), which the expiry keeps well beyond the horizon.

use std::time::Duration;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowFileReader;
use iceberg::io::FileMetadata;
use iceberg::spec::{DataContentType, ManifestContentType, ManifestStatus, Operation};
use iceberg::table::Table;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use xxhash_rust::xxh3::xxh3_128;

/// How far back to read.
#[derive(Debug, Clone, Copy)]
pub struct Reach {
    /// At most this many ids (whole files: a few more may come back).
    pub max_ids: usize,
    /// Only snapshots committed this long before the newest one.
    pub horizon: Duration,
    /// Stop at this snapshot (already read by an earlier call).
    pub stop_at: Option<i64>,
}

/// What [`recent_ids`] found.
#[derive(Debug, Default)]
pub struct RecentIds {
    /// Id keys, oldest snapshot first.
    pub keys: Vec<u128>,
    /// The snapshot the walk started from (the table's current one).
    pub newest: Option<i64>,
    pub snapshots: usize,
    pub files: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RecentIdsError {
    #[error("reading table {table}'s snapshot history: {source}")]
    Iceberg {
        table: String,
        #[source]
        source: iceberg::Error,
    },
    #[error("reading column {column} of {path}: {source}")]
    Parquet {
        column: String,
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("column {column} of {path} is not a string column")]
    NotStrings { column: String, path: String },
}

/// A record id's key in a dedup window: a 128-bit hash, so a million of
/// them fit in ~40 MB, and two distinct ids colliding is as likely as a
/// random UUID collision.
pub fn id_key(id: &str) -> u128 {
    xxh3_128(id.as_bytes())
}

/// Files read at once.
const CONCURRENCY: usize = 8;

/// The ids of `id_column` in the data files the newest appends of `table`
/// added, within `reach`.
pub async fn recent_ids(
    table: &Table,
    id_column: &str,
    reach: Reach,
) -> Result<RecentIds, RecentIdsError> {
    let meta = table.metadata();
    let iceberg = |source| RecentIdsError::Iceberg {
        table: table.identifier().name().to_string(),
        source,
    };
    let mut found = RecentIds::default();
    let Some(current) = meta.current_snapshot() else {
        return Ok(found);
    };
    found.newest = Some(current.snapshot_id());
    let newest_ms = current.timestamp_ms();
    let horizon_ms = i64::try_from(reach.horizon.as_millis()).unwrap_or(i64::MAX);
    // Newest first; reversed at the end.
    let mut per_snapshot: Vec<Vec<u128>> = Vec::new();
    let mut total = 0usize;
    let mut next = Some(current.clone());
    while let Some(snapshot) = next {
        if Some(snapshot.snapshot_id()) == reach.stop_at
            || newest_ms.saturating_sub(snapshot.timestamp_ms()) > horizon_ms
            || total >= reach.max_ids
        {
            break;
        }
        found.snapshots += 1;
        if snapshot.summary().operation == Operation::Append {
            let id = snapshot.snapshot_id();
            let list = table
                .manifest_list_reader(&snapshot)
                .load()
                .await
                .map_err(iceberg)?;
            let mut files = Vec::new();
            for manifest in list.entries() {
                if manifest.added_snapshot_id != id || manifest.content != ManifestContentType::Data
                {
                    continue;
                }
                let manifest = manifest
                    .load_manifest(table.file_io())
                    .await
                    .map_err(iceberg)?;
                for entry in manifest.entries() {
                    if entry.status() == ManifestStatus::Added
                        && entry.snapshot_id() == Some(id)
                        && entry.content_type() == DataContentType::Data
                    {
                        let f = entry.data_file();
                        files.push((f.file_path().to_string(), f.file_size_in_bytes()));
                    }
                }
            }
            found.files += files.len();
            let keys: Vec<Vec<u128>> = futures::stream::iter(files)
                .map(|(path, size)| read_ids(table, id_column, path, size))
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
            let keys: Vec<u128> = keys.into_iter().flatten().collect();
            total += keys.len();
            per_snapshot.push(keys);
        }
        next = snapshot
            .parent_snapshot_id()
            .and_then(|p| meta.snapshot_by_id(p).cloned());
    }
    found.keys = per_snapshot.into_iter().rev().flatten().collect();
    Ok(found)
}

/// The id keys of one data file's `column`.
async fn read_ids(
    table: &Table,
    column: &str,
    path: String,
    size: u64,
) -> Result<Vec<u128>, RecentIdsError> {
    let parquet = |source| RecentIdsError::Parquet {
        column: column.to_string(),
        path: path.clone(),
        source,
    };
    let iceberg = |source| RecentIdsError::Iceberg {
        table: table.identifier().name().to_string(),
        source,
    };
    let reader = table
        .file_io()
        .new_input(&path)
        .map_err(iceberg)?
        .reader()
        .await
        .map_err(iceberg)?;
    let file = ArrowFileReader::new(FileMetadata { size }, reader);
    let builder = ParquetRecordBatchStreamBuilder::new(file)
        .await
        .map_err(parquet)?;
    let schema = builder.parquet_schema();
    let Some(index) = schema
        .columns()
        .iter()
        .position(|c| c.path().string() == column)
    else {
        return Err(RecentIdsError::NotStrings {
            column: column.to_string(),
            path,
        });
    };
    let mask = ProjectionMask::leaves(schema, [index]);
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(parquet)?;
    let mut keys = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(parquet)?;
        let col = batch.column(0);
        let ids: Vec<Option<&str>> = if let Some(a) = col.as_string_opt::<i32>() {
            a.iter().collect()
        } else if let Some(a) = col.as_string_opt::<i64>() {
            a.iter().collect()
        } else if let Some(a) = col.as_string_view_opt() {
            a.iter().collect()
        } else {
            return Err(RecentIdsError::NotStrings {
                column: column.to_string(),
                path,
            });
        };
        keys.reserve(col.len());
        keys.extend(ids.into_iter().map(|id| id_key(id.unwrap_or_default())));
    }
    Ok(keys)
}
