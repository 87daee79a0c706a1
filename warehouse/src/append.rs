//! Appending to an Iceberg table exactly once.
//!
//! Every commit records, in its snapshot summary (`sluice.positions`), how far
//! each source it consumed has been written: `kafka:<topic>:<partition>` → the
//! next offset, `file:<key>` → 1 once an imported file is in. The map is
//! merged with the previous snapshot's, so the table itself is the only
//! checkpoint that matters: a restarted writer resumes from it, and a batch
//! whose start does not match it (a zombie after a rebalance, a replay of an
//! imported file) is refused instead of appended.
//!
//! iceberg-rust 0.10.1 rebases a transaction onto whatever snapshot is current
//! when it commits, so a check made before `commit()` would not fence. The
//! check here runs against a table we load, and the commit goes through
//! [`PinnedCatalog`], which hands the transaction that very table: the
//! catalog's own `main`-ref requirement then refuses the commit if anyone
//! committed in between, and we re-load, re-check and retry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow_schema::{ArrowError, DataType, TimeUnit};
use arrow_select::concat::concat;
use arrow_select::filter::filter_record_batch;
use arrow_select::interleave::interleave;
use arrow_select::take::take;
use async_trait::async_trait;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat, PartitionKey, Transform};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::{
    Catalog, ErrorKind, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use rayon::prelude::*;
use sluice_schema::tables::TableContract;

use crate::commit_metrics::CommitMetrics;
use crate::parallel_parquet::ParallelParquetWriterBuilder;
use crate::source_id::SourceId;

/// Failpoint for crash tests: when set to N, the process aborts (as a
/// `kill -9` would stop it) after writing the data files of its N-th commit
/// attempt and before committing them — the window where a crash leaves
/// orphan files but must not lose or duplicate rows.
pub const ABORT_BEFORE_COMMIT_ENV: &str = "SLUICE_FAILPOINT_ABORT_BEFORE_COMMIT";

fn failpoint_abort_before_commit() {
    static ATTEMPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some(n) = std::env::var(ABORT_BEFORE_COMMIT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    if ATTEMPTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n {
        tracing::warn!(
            "failpoint {ABORT_BEFORE_COMMIT_ENV}={n}: aborting between data files and commit"
        );
        std::process::abort();
    }
}

/// Snapshot summary property holding the merged source positions (JSON).
pub const POSITIONS_PROPERTY: &str = "sluice.positions";
/// Snapshot summary property naming the writer that made the snapshot.
pub const WRITER_PROPERTY: &str = "sluice.writer";

/// How far each source has been written: source key (a [`SourceId`]
/// printed) → next position.
pub type Positions = BTreeMap<String, i64>;

/// Source key of a Kafka partition.
pub fn kafka_source(topic: &str, partition: i32) -> String {
    SourceId::kafka(topic, partition).to_string()
}

/// Source key of an imported file.
pub fn file_source(key: &str) -> String {
    SourceId::File {
        key: key.to_string(),
    }
    .to_string()
}

/// An [`Advance`] to this position removes the source's key from the
/// table's positions: the source is finished for good (a pod-log file gone
/// from disk and read to its end), so its key would only grow the map that
/// every snapshot carries.
pub const FORGOTTEN: i64 = i64::MIN;

/// One source's progress in a commit: the batch covers `[from, to)`. `from`
/// must be what the table holds (`None`: the table must not know the source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub source: String,
    pub from: Option<i64>,
    pub to: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Committed {
        snapshot_id: i64,
        data_files: usize,
        rows: u64,
    },
    /// The table already holds a different position for `source`: another
    /// writer advanced it, or this data was written before. Nothing appended.
    Fenced {
        source: String,
        expected: Option<i64>,
        found: Option<i64>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{table}: {context}: {source}")]
    Iceberg {
        table: &'static str,
        context: &'static str,
        source: Box<iceberg::Error>,
    },
    #[error("{table}: {context}: {source}")]
    Arrow {
        table: &'static str,
        context: &'static str,
        source: arrow_schema::ArrowError,
    },
    #[error("{table}: snapshot {snapshot} has an unreadable {POSITIONS_PROPERTY}: {source}")]
    Positions {
        table: &'static str,
        snapshot: i64,
        source: serde_json::Error,
    },
    #[error("{table}: commit kept conflicting with other writers after {attempts} attempts")]
    Contended { table: &'static str, attempts: u32 },
}

/// The positions recorded by the newest snapshot that carries them.
/// Snapshots made by other engines (compaction, Spark) carry none and are
/// skipped.
pub fn positions(table: &Table, name: &'static str) -> Result<Positions, SinkError> {
    let metadata = table.metadata();
    let mut snapshot = metadata.current_snapshot().cloned();
    while let Some(s) = snapshot {
        if let Some(json) = s.summary().additional_properties.get(POSITIONS_PROPERTY) {
            return serde_json::from_str(json).map_err(|source| SinkError::Positions {
                table: name,
                snapshot: s.snapshot_id(),
                source,
            });
        }
        snapshot = s
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id).cloned());
    }
    Ok(Positions::new())
}

/// Parquet settings, set explicitly: iceberg-rust does not apply the table's
/// `write.parquet.*` properties, and parquet-rs defaults to no compression.
pub fn parquet_properties(row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(row_group_rows))
        // Page-level statistics give readers the column and offset indexes.
        .set_statistics_enabled(EnabledStatistics::Page)
        .build()
}

/// Writes data files for one table and commits them with source positions.
#[derive(Debug, Clone)]
pub struct TableSink {
    catalog: Arc<dyn Catalog>,
    pub(crate) contract: &'static TableContract,
    writer_id: String,
    properties: WriterProperties,
    target_file_size: usize,
    max_attempts: u32,
    /// `sluice_table_*`, when the process serves metrics.
    pub(crate) metrics: Option<CommitMetrics>,
}

impl TableSink {
    /// `writer_id` names this process in file names and snapshot summaries;
    /// it must be unique among concurrent writers (a UUID is).
    pub fn new(
        catalog: Arc<dyn Catalog>,
        contract: &'static TableContract,
        writer_id: &str,
    ) -> Self {
        Self {
            catalog,
            contract,
            writer_id: writer_id.to_string(),
            properties: parquet_properties(256 * 1024),
            target_file_size: 256 * 1024 * 1024,
            max_attempts: 20,
            metrics: None,
        }
    }

    /// Counts this sink's commits in `metrics` ([`Self::commit_settled`]).
    pub fn with_metrics(mut self, metrics: CommitMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Data files roll over at this size (default 256 MiB).
    pub fn with_target_file_size(mut self, bytes: usize) -> Self {
        self.target_file_size = bytes.max(1);
        self
    }

    pub fn contract(&self) -> &'static TableContract {
        self.contract
    }

    fn iceberg_err(&self, context: &'static str) -> impl Fn(iceberg::Error) -> SinkError + '_ {
        move |source| SinkError::Iceberg {
            table: self.contract.name,
            context,
            source: Box::new(source),
        }
    }

    fn arrow_err(
        &self,
        context: &'static str,
    ) -> impl Fn(arrow_schema::ArrowError) -> SinkError + '_ {
        move |source| SinkError::Arrow {
            table: self.contract.name,
            context,
            source,
        }
    }

    pub async fn load(&self) -> Result<Table, SinkError> {
        self.catalog
            .load_table(&self.contract.ident())
            .await
            .map_err(self.iceberg_err("loading the table"))
    }

    /// The positions the table holds now.
    pub async fn current_positions(&self) -> Result<Positions, SinkError> {
        positions(&self.load().await?, self.contract.name)
    }

    /// The rows of `batches` in the order of the table's data files: by day
    /// of the partition column, then by the contract's sort columns (nulls
    /// first). CPU work with no I/O: callers that pipeline run it beside the
    /// previous batch's commit ([`Self::commit_sorted`]); `None` when there
    /// are no rows.
    pub fn sort(&self, batches: &[RecordBatch]) -> Result<Option<Sorted>, SinkError> {
        let parts: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
        if parts.is_empty() {
            return Ok(None);
        }
        let sort_err = self.arrow_err("sorting");
        let days =
            order_keys(&parts, self.contract.day_partition_column, true).map_err(&sort_err)?;
        let mut keys = Vec::with_capacity(self.contract.sort_columns.len());
        for name in self.contract.sort_columns {
            keys.push(order_keys(&parts, name, false).map_err(&sort_err)?);
        }
        let mut all_keys = Vec::with_capacity(keys.len() + 1);
        all_keys.push(&days);
        all_keys.extend(keys.iter());
        let order = sort_order(&all_keys);
        let mut runs: Vec<DayRun> = Vec::new();
        for (pos, &i) in order.iter().enumerate() {
            match runs.last_mut() {
                Some((start, len)) if days[order[*start] as usize] == days[i as usize] => *len += 1,
                _ => runs.push((pos, 1)),
            }
        }
        let sorted = gather(&parts, &order).map_err(&sort_err)?;
        Ok(Some(Sorted {
            batch: sorted,
            days: runs,
            order,
        }))
    }

    /// `batch` in the table's current Arrow schema (see
    /// [`Self::in_table_schema`]): rows read back from files written under
    /// an older schema line up with newer ones.
    pub fn conform(&self, table: &Table, batch: &RecordBatch) -> Result<RecordBatch, SinkError> {
        self.in_table_schema(batch, table.metadata().current_schema())
    }

    /// The batch with the table's own field ids (the catalog may have
    /// assigned them differently from the contract), columns the table gained
    /// from a newer writer as NULL, and nested types cast to the table's.
    fn in_table_schema(
        &self,
        batch: &RecordBatch,
        schema: &iceberg::spec::Schema,
    ) -> Result<RecordBatch, SinkError> {
        let target = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(schema)
                .map_err(self.iceberg_err("the table's Arrow schema"))?,
        );
        if target.as_ref() == batch.schema().as_ref() {
            return Ok(batch.clone());
        }
        let columns = target
            .fields()
            .iter()
            .map(|field| match batch.column_by_name(field.name()) {
                Some(c) if c.data_type() == field.data_type() => Ok(c.clone()),
                Some(c) => arrow_cast::cast(c, field.data_type())
                    .map_err(self.arrow_err("matching the table's column types")),
                None => Ok(arrow_array::new_null_array(
                    field.data_type(),
                    batch.num_rows(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(target, columns).map_err(self.arrow_err("matching the table's schema"))
    }

    /// Writes sorted rows as Parquet data files of `table`, one per day
    /// partition (rolling over at the target size). Files are named
    /// `<writer>-<commit uuid>-NNNNN`, unique across writers and commits.
    pub async fn write_files(
        &self,
        table: &Table,
        sorted: Option<&Sorted>,
    ) -> Result<(Vec<DataFile>, u64), SinkError> {
        let Some(Sorted { batch, days, .. }) = sorted else {
            return Ok((Vec::new(), 0));
        };
        let rows = batch.num_rows() as u64;
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let batch = self.in_table_schema(batch, &schema)?;
        let spec = metadata.default_partition_spec().clone();
        let by_day = schema
            .field_by_name(self.contract.day_partition_column)
            .is_some_and(|source| {
                matches!(spec.fields(), [f] if f.transform == Transform::Day && f.source_id == source.id)
            });
        let names = DefaultFileNameGenerator::new(
            format!("{}-{}", self.writer_id, uuid::Uuid::now_v7()),
            None,
            DataFileFormat::Parquet,
        );
        let rolling = RollingFileWriterBuilder::new(
            ParallelParquetWriterBuilder::new(self.properties.clone(), schema.clone()),
            self.target_file_size,
            table.file_io().clone(),
            DefaultLocationGenerator::new(metadata).map_err(self.iceberg_err("data location"))?,
            names,
        );
        let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)
            .map_err(self.iceberg_err("partitioning"))?;
        let mut writer = FanoutWriter::new(DataFileWriterBuilder::new(rolling));
        // The table is partitioned by the day its rows are sorted by first,
        // so each day's rows are one slice: no per-row partition values, no
        // copy. Any other spec (changed by another engine) takes the
        // general path.
        let parts: Vec<(PartitionKey, RecordBatch)> = if by_day {
            let mut parts = Vec::with_capacity(days.len());
            for &(start, len) in days {
                let slice = batch.slice(start, len);
                let key = splitter
                    .split(&slice.slice(0, 1))
                    .map_err(self.iceberg_err("partitioning"))?
                    .pop()
                    .map(|(key, _)| key)
                    .ok_or_else(|| {
                        self.iceberg_err("partitioning")(iceberg::Error::new(
                            ErrorKind::Unexpected,
                            "no partition for a row",
                        ))
                    })?;
                parts.push((key, slice));
            }
            parts
        } else {
            splitter
                .split(&batch)
                .map_err(self.iceberg_err("partitioning"))?
        };
        for (key, part) in parts {
            writer
                .write(key, part)
                .await
                .map_err(self.iceberg_err("writing data files"))?;
        }
        let files = writer
            .close()
            .await
            .map_err(self.iceberg_err("closing data files"))?;
        Ok((files, rows))
    }

    /// Appends `batches` and advances the sources in one snapshot, or refuses
    /// if the table disagrees about where a source stands.
    pub async fn commit(
        &self,
        advances: &[Advance],
        batches: &[RecordBatch],
    ) -> Result<Outcome, SinkError> {
        let sorted = self.sort_blocking(batches.to_vec()).await?;
        self.commit_sorted(advances, sorted.as_ref()).await
    }

    /// [`Self::sort`] on a blocking thread: it is CPU work, not for the
    /// async runtime's workers.
    pub async fn sort_blocking(
        &self,
        batches: Vec<RecordBatch>,
    ) -> Result<Option<Sorted>, SinkError> {
        let sink = self.clone();
        tokio::task::spawn_blocking(move || sink.sort(&batches))
            .await
            .map_err(|e| SinkError::Arrow {
                table: self.contract.name,
                context: "sorting",
                source: ArrowError::ExternalError(Box::new(e)),
            })?
    }

    /// [`Self::commit`] of rows [`Self::sort`] prepared.
    pub async fn commit_sorted(
        &self,
        advances: &[Advance],
        sorted: Option<&Sorted>,
    ) -> Result<Outcome, SinkError> {
        let mut files: Option<(Vec<DataFile>, u64)> = None;
        let mut backoff = crate::retry::Backoff::commit_conflict();
        for attempt in 1..=self.max_attempts {
            let table = self.load().await?;
            let mut merged = positions(&table, self.contract.name)?;
            for a in advances {
                let found = merged.get(&a.source).copied();
                // Forgetting a finished source needs no fence: whatever the
                // table holds for it, nothing will read it again.
                if a.to != FORGOTTEN && found != a.from {
                    return Ok(Outcome::Fenced {
                        source: a.source.clone(),
                        expected: a.from,
                        found,
                    });
                }
            }
            for a in advances {
                if a.to == FORGOTTEN {
                    merged.remove(&a.source);
                } else {
                    merged.insert(a.source.clone(), a.to);
                }
            }
            // Data files are written once and reused if the commit is retried.
            if files.is_none() {
                files = Some(self.write_files(&table, sorted).await?);
                failpoint_abort_before_commit();
            }
            let (data_files, rows) = files.clone().unwrap_or_default();
            let json = serde_json::to_string(&merged).map_err(|source| SinkError::Positions {
                table: self.contract.name,
                snapshot: table.metadata().current_snapshot_id().unwrap_or(-1),
                source,
            })?;
            let summary = HashMap::from([
                (POSITIONS_PROPERTY.to_string(), json),
                (WRITER_PROPERTY.to_string(), self.writer_id.clone()),
            ]);
            let n_files = data_files.len();
            let tx = Transaction::new(&table);
            let tx = tx
                .fast_append()
                .with_check_duplicate(false)
                .set_snapshot_properties(summary)
                .add_data_files(data_files)
                .apply(tx)
                .map_err(self.iceberg_err("preparing the append"))?;
            let pinned = PinnedCatalog {
                inner: self.catalog.clone(),
                pinned: table,
            };
            match tx.commit(&pinned).await {
                Ok(t) => {
                    crate::metadata_files::delete_removed_metadata_files(&pinned.pinned, &t).await;
                    let snapshot_id = t.metadata().current_snapshot_id().unwrap_or(-1);
                    return Ok(Outcome::Committed {
                        snapshot_id,
                        data_files: n_files,
                        rows,
                    });
                }
                Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
                    tracing::debug!(
                        table = self.contract.name,
                        attempt,
                        "commit conflict, re-checking positions"
                    );
                    backoff.wait().await;
                }
                Err(e) => return Err(self.iceberg_err("committing")(e)),
            }
        }
        Err(SinkError::Contended {
            table: self.contract.name,
            attempts: self.max_attempts,
        })
    }
}

/// The rows `order` names (numbered across `parts`), in that order. Each
/// column is copied once, straight from the parts, except nested ones (the
/// attributes map): interleaving those goes row by row through Arrow's
/// generic path, so they are concatenated and taken instead.
fn gather(parts: &[&RecordBatch], order: &[u32]) -> Result<RecordBatch, ArrowError> {
    let schema = parts[0].schema();
    let mut located = Vec::with_capacity(order.len());
    for (i, b) in parts.iter().enumerate() {
        located.extend((0..b.num_rows()).map(|row| (i, row)));
    }
    let from_parts: Vec<(usize, usize)> = order.iter().map(|&i| located[i as usize]).collect();
    let indices = UInt32Array::from(order.to_vec());
    // Columns are independent; callers sort in their decoding stage, whose
    // cores are free once the batch is decoded.
    let columns = (0..schema.fields().len())
        .into_par_iter()
        .map(|c| {
            let arrays: Vec<&dyn Array> = parts.iter().map(|b| b.column(c).as_ref()).collect();
            if schema.field(c).data_type().is_nested() {
                take(concat(&arrays)?.as_ref(), &indices, None)
            } else {
                interleave(&arrays, &from_parts)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

/// Row numbers in the order of their keys (compared left to right). When
/// the keys' ranges fit in 128 bits together (the contracts' do: a day, a
/// few ranks, a timestamp), each row's keys are packed into one integer and
/// the sort compares integers; otherwise it compares key by key.
fn sort_order(keys: &[&Vec<Option<i64>>]) -> Vec<u32> {
    let rows = keys.first().map_or(0, |k| k.len());
    // (min, bits): a key is stored as 0 for null, value - min + 1 otherwise.
    let ranges: Vec<(i64, u32)> = keys
        .iter()
        .map(|k| {
            let (lo, hi) = k
                .iter()
                .flatten()
                .fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            let span = if lo > hi {
                0
            } else {
                (hi as i128 - lo as i128 + 1) as u128
            };
            (lo, 128 - span.leading_zeros())
        })
        .collect();
    if ranges.iter().map(|(_, bits)| bits).sum::<u32>() <= 128 {
        let mut packed: Vec<(u128, u32)> = (0..rows)
            .map(|row| {
                let key = keys
                    .iter()
                    .zip(&ranges)
                    .fold(0u128, |acc, (k, (lo, bits))| {
                        let v = k[row].map_or(0, |v| (v as i128 - *lo as i128 + 1) as u128);
                        if *bits == 0 { acc } else { (acc << bits) | v }
                    });
                (key, row as u32)
            })
            .collect();
        packed.sort_unstable();
        return packed.into_iter().map(|(_, row)| row).collect();
    }
    let mut order: Vec<u32> = (0..rows as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        keys.iter()
            .map(|k| k[a as usize].cmp(&k[b as usize]))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    order
}

/// The rows of one day in a sorted batch: (first row, row count).
type DayRun = (usize, usize);

/// Rows in the order of a table's data files, from [`TableSink::sort`].
#[derive(Debug, Clone)]
pub struct Sorted {
    batch: RecordBatch,
    days: Vec<DayRun>,
    /// For each sorted row, its number in the input.
    order: Vec<u32>,
}

impl Sorted {
    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Keeps the rows whose input row number is flagged in `keep` (indexed
    /// in input order); `None` when none are left.
    pub fn retain(self, keep: &[bool]) -> Result<Option<Self>, ArrowError> {
        let mask: Vec<bool> = self.order.iter().map(|&i| keep[i as usize]).collect();
        if mask.iter().all(|k| *k) {
            return Ok(Some(self));
        }
        let mut days = Vec::with_capacity(self.days.len());
        let mut at = 0;
        for &(start, len) in &self.days {
            let kept = mask[start..start + len].iter().filter(|k| **k).count();
            if kept > 0 {
                days.push((at, kept));
                at += kept;
            }
        }
        if at == 0 {
            return Ok(None);
        }
        let order = self
            .order
            .iter()
            .zip(&mask)
            .filter(|(_, k)| **k)
            .map(|(i, _)| *i)
            .collect();
        let batch = filter_record_batch(&self.batch, &BooleanArray::from(mask))?;
        Ok(Some(Self { batch, days, order }))
    }
}

/// One order key per row of `parts` for column `name`: comparing keys
/// compares values, nulls first. Strings become their rank among the
/// column's distinct values (sort columns are low-cardinality names), so
/// sorting compares integers; `as_day` turns a timestamp into its UTC day.
fn order_keys(
    parts: &[&RecordBatch],
    name: &str,
    as_day: bool,
) -> Result<Vec<Option<i64>>, ArrowError> {
    const DAY_MICROS: i64 = 86_400_000_000;
    let columns = parts
        .iter()
        .map(|b| {
            b.column_by_name(name)
                .ok_or_else(|| ArrowError::SchemaError(format!("no column {name} to sort by")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = columns.iter().map(|c| c.len()).sum();
    // Every part has the table's schema: the first column tells the type.
    let data_type = columns.first().map(|c| c.data_type().clone());
    if data_type == Some(DataType::Utf8) && !as_day {
        return Ok(string_ranks(&columns, rows));
    }
    let mut keys = Vec::with_capacity(rows);
    for c in &columns {
        match c.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let values = c.as_primitive::<TimestampMicrosecondType>();
                keys.extend(
                    values
                        .iter()
                        .map(|v| v.map(|v| if as_day { v.div_euclid(DAY_MICROS) } else { v })),
                );
            }
            _ if as_day => {
                return Err(ArrowError::SchemaError(format!(
                    "partition column {name} is not a timestamp"
                )));
            }
            DataType::Int64 => keys.extend(c.as_primitive::<Int64Type>().iter()),
            DataType::Int32 => keys.extend(
                c.as_primitive::<Int32Type>()
                    .iter()
                    .map(|v| v.map(i64::from)),
            ),
            other => {
                return Err(ArrowError::SchemaError(format!(
                    "cannot sort by {name} of type {other}"
                )));
            }
        }
    }
    Ok(keys)
}

/// Each string's rank among the distinct values (nulls stay `None`), with
/// one hash probe per row: first-seen ids, then ids → ranks.
fn string_ranks(columns: &[&ArrayRef], rows: usize) -> Vec<Option<i64>> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut first_seen: Vec<Option<usize>> = Vec::with_capacity(rows);
    for c in columns {
        for v in c.as_string::<i32>().iter() {
            let next = ids.len();
            first_seen.push(v.map(|v| *ids.entry(v).or_insert(next)));
        }
    }
    let mut distinct: Vec<(&str, usize)> = ids.into_iter().collect();
    distinct.sort_unstable();
    let mut rank = vec![0i64; distinct.len()];
    for (r, (_, id)) in distinct.iter().enumerate() {
        rank[*id] = r as i64;
    }
    first_seen
        .into_iter()
        .map(|id| id.map(|id| rank[id]))
        .collect()
}

/// A catalog view whose `load_table` returns the table a commit was checked
/// against, so the transaction's `main`-ref requirement names that snapshot and
/// the real catalog refuses the commit if `main` moved since. Conflicts are
/// made non-retryable: the caller re-checks positions before trying again.
#[derive(Debug)]
pub struct PinnedCatalog {
    inner: Arc<dyn Catalog>,
    pinned: Table,
}

#[async_trait]
impl Catalog for PinnedCatalog {
    async fn load_table(&self, t: &TableIdent) -> iceberg::Result<Table> {
        if t == self.pinned.identifier() {
            Ok(self.pinned.clone())
        } else {
            self.inner.load_table(t).await
        }
    }
    async fn update_table(&self, c: TableCommit) -> iceberg::Result<Table> {
        self.inner.update_table(c).await.map_err(|e| {
            if e.kind() == ErrorKind::CatalogCommitConflicts {
                e.with_retryable(false)
            } else {
                e
            }
        })
    }
    async fn list_namespaces(
        &self,
        p: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(p).await
    }
    async fn create_namespace(
        &self,
        n: &NamespaceIdent,
        p: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        self.inner.create_namespace(n, p).await
    }
    async fn get_namespace(&self, n: &NamespaceIdent) -> iceberg::Result<Namespace> {
        self.inner.get_namespace(n).await
    }
    async fn namespace_exists(&self, n: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(n).await
    }
    async fn update_namespace(
        &self,
        n: &NamespaceIdent,
        p: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(n, p).await
    }
    async fn drop_namespace(&self, n: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(n).await
    }
    async fn list_tables(&self, n: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.inner.list_tables(n).await
    }
    async fn create_table(&self, n: &NamespaceIdent, c: TableCreation) -> iceberg::Result<Table> {
        self.inner.create_table(n, c).await
    }
    async fn drop_table(&self, t: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(t).await
    }
    async fn purge_table(&self, t: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(t).await
    }
    async fn table_exists(&self, t: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(t).await
    }
    async fn rename_table(&self, s: &TableIdent, d: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(s, d).await
    }
    async fn register_table(&self, t: &TableIdent, m: String) -> iceberg::Result<Table> {
        self.inner.register_table(t, m).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_comparison(keys: &[&Vec<Option<i64>>]) -> Vec<Vec<Option<i64>>> {
        let rows = keys[0].len();
        let mut tuples: Vec<Vec<Option<i64>>> = (0..rows)
            .map(|r| keys.iter().map(|k| k[r]).collect())
            .collect();
        tuples.sort();
        tuples
    }

    fn tuples(keys: &[&Vec<Option<i64>>], order: &[u32]) -> Vec<Vec<Option<i64>>> {
        order
            .iter()
            .map(|&r| keys.iter().map(|k| k[r as usize]).collect())
            .collect()
    }

    #[test]
    fn strings_rank_by_value_across_parts_nulls_first() {
        use arrow_array::StringArray;
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("web"), None, Some("api")]));
        let b: ArrayRef = Arc::new(StringArray::from(vec![Some("db"), Some("web")]));
        assert_eq!(
            string_ranks(&[&a, &b], 5),
            vec![Some(2), None, Some(0), Some(1), Some(2)]
        );
    }

    #[test]
    fn packed_and_compared_orders_agree() {
        // Small ranges (packed) and full-range i64 keys (compared), nulls first.
        let day = vec![Some(3), Some(1), Some(3), Some(2), Some(1)];
        let rank = vec![Some(0), None, Some(2), Some(1), Some(0)];
        let ts = vec![Some(50), Some(-7), Some(10), None, Some(-7)];
        let wide = vec![
            Some(i64::MAX),
            Some(i64::MIN),
            None,
            Some(0),
            Some(i64::MIN),
        ];
        for keys in [
            vec![&day, &rank, &ts],
            vec![&day, &wide, &ts],
            vec![&wide, &wide, &rank],
        ] {
            let order = sort_order(&keys);
            assert_eq!(tuples(&keys, &order), by_comparison(&keys));
        }
    }
}
