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
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_schema::{ArrowError, DataType, TimeUnit};
use arrow_select::interleave::interleave_record_batch;
use async_trait::async_trait;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat, PartitionKey, Transform};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
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
use sluice_schema::tables::TableContract;

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

/// How far each source has been written: source key → next position.
pub type Positions = BTreeMap<String, i64>;

/// Source key of a Kafka partition.
pub fn kafka_source(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}:{partition}")
}

/// Source key of an imported file.
pub fn file_source(key: &str) -> String {
    format!("file:{key}")
}

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
    contract: &'static TableContract,
    writer_id: String,
    properties: WriterProperties,
    target_file_size: usize,
    max_attempts: u32,
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
        }
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
    /// first), gathered in one copy. Also returns the row ranges of each day.
    fn sorted(
        &self,
        batches: &[RecordBatch],
    ) -> Result<Option<(RecordBatch, Vec<DayRun>)>, SinkError> {
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
        let mut order: Vec<u32> = (0..days.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            days[a].cmp(&days[b]).then_with(|| {
                keys.iter()
                    .map(|k| k[a].cmp(&k[b]))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
        });
        let mut located = Vec::with_capacity(days.len());
        for (i, b) in parts.iter().enumerate() {
            located.extend((0..b.num_rows()).map(|row| (i, row)));
        }
        let indices: Vec<(usize, usize)> = order.iter().map(|&i| located[i as usize]).collect();
        let mut runs: Vec<DayRun> = Vec::new();
        for (pos, &i) in order.iter().enumerate() {
            match runs.last_mut() {
                Some((start, len)) if days[order[*start] as usize] == days[i as usize] => *len += 1,
                _ => runs.push((pos, 1)),
            }
        }
        let sorted = interleave_record_batch(&parts, &indices).map_err(&sort_err)?;
        Ok(Some((sorted, runs)))
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

    /// Writes `batches` as Parquet data files of `table`, partitioned by day and
    /// sorted within each file. Files are named `<writer>-<commit uuid>-NNNNN`,
    /// unique across writers and commits.
    pub async fn write_files(
        &self,
        table: &Table,
        batches: &[RecordBatch],
    ) -> Result<(Vec<DataFile>, u64), SinkError> {
        let Some((batch, days)) = self.sorted(batches)? else {
            return Ok((Vec::new(), 0));
        };
        let rows = batch.num_rows() as u64;
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let batch = self.in_table_schema(&batch, &schema)?;
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
            ParquetWriterBuilder::new(self.properties.clone(), schema.clone()),
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
            for (start, len) in days {
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
        let mut files: Option<(Vec<DataFile>, u64)> = None;
        let mut backoff = Duration::from_millis(20);
        for attempt in 1..=self.max_attempts {
            let table = self.load().await?;
            let mut merged = positions(&table, self.contract.name)?;
            for a in advances {
                let found = merged.get(&a.source).copied();
                if found != a.from {
                    return Ok(Outcome::Fenced {
                        source: a.source.clone(),
                        expected: a.from,
                        found,
                    });
                }
            }
            for a in advances {
                merged.insert(a.source.clone(), a.to);
            }
            // Data files are written once and reused if the commit is retried.
            if files.is_none() {
                files = Some(self.write_files(&table, batches).await?);
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
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
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

/// The rows of one day in a sorted batch: (first row, row count).
type DayRun = (usize, usize);

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
            DataType::Utf8 => {}
            other => {
                return Err(ArrowError::SchemaError(format!(
                    "cannot sort by {name} of type {other}"
                )));
            }
        }
    }
    if keys.len() == rows {
        return Ok(keys);
    }
    let mut distinct: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in &columns {
        for v in c.as_string::<i32>().iter().flatten() {
            if seen.insert(v) {
                distinct.push(v);
            }
        }
    }
    distinct.sort_unstable();
    let rank: HashMap<&str, i64> = distinct
        .into_iter()
        .enumerate()
        .map(|(i, v)| (v, i as i64))
        .collect();
    for c in &columns {
        keys.extend(
            c.as_string::<i32>()
                .iter()
                .map(|v| v.and_then(|v| rank.get(v).copied())),
        );
    }
    Ok(keys)
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
