//! Reading an Iceberg table's snapshot with DataFusion's own Parquet scan.
//!
//! iceberg-datafusion's scan reads every file of a query as one stream, on
//! one core. Here Iceberg only plans — manifests pruned by partition and
//! column bounds for the query's filters — and DataFusion reads the planned
//! data files itself: split across cores by byte range, row groups and pages
//! pruned by the same filters, footers cached between queries. Files with
//! delete files (written by an engine other than sluice, which only appends)
//! and files in stores DataFusion cannot reach here (neither local nor S3)
//! go through iceberg-datafusion's reader instead, which applies deletes.
//!
//! Bounds on the time partition's column are answered exactly (see
//! [`crate::partition_filters`]): files whose partition lies inside them
//! are read unfiltered, the others under a row filter.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::union::UnionExec;
use futures::TryStreamExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;
use iceberg_datafusion::IcebergStaticTableProvider;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;

use crate::object_stores::{ObjectStores, Resolve};
use crate::partition_filters::TimePartition;

fn df_err(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// One table as of the snapshot that was current when it was loaded.
#[derive(Debug)]
pub struct SnapshotTable {
    table: Table,
    schema: SchemaRef,
    stores: Arc<ObjectStores>,
    /// The day (or hour) partition of the time column, when the table has
    /// one spec with one.
    time_partition: Option<TimePartition>,
}

impl SnapshotTable {
    pub fn new(table: Table, stores: Arc<ObjectStores>) -> iceberg::Result<Self> {
        let schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema())?);
        let time_partition = TimePartition::of(table.metadata(), &schema);
        Ok(Self {
            table,
            schema,
            stores,
            time_partition,
        })
    }

    /// Whether this scan answers `filter` exactly (see [`TimePartition`]).
    fn answers(&self, filter: &Expr) -> bool {
        self.time_partition
            .as_ref()
            .is_some_and(|p| p.answers(filter))
    }

    /// Iceberg's own reader, for files DataFusion's scan cannot read here;
    /// the exact filters applied over it.
    async fn fallback(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        exact: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let provider = IcebergStaticTableProvider::try_new_from_table(self.table.clone())
            .await
            .map_err(df_err)?;
        if exact.is_empty() {
            return provider.scan(state, projection, filters, limit).await;
        }
        let (read, keep) = self.with_filter_columns(projection, exact)?;
        let scan = provider.scan(state, read.as_ref(), filters, None).await?;
        filtered(state, scan, exact, keep, limit)
    }

    /// DataFusion's Parquet scan of `files`, pruned by `filters`.
    fn parquet_scan(
        &self,
        state: &dyn Session,
        store: ObjectStoreUrl,
        files: Vec<PartitionedFile>,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<FileScanConfigBuilder> {
        let target = state.config().target_partitions().max(1);
        let groups: Vec<FileGroup> = FileGroup::new(files).split_files(target);
        let mut source = ParquetSource::new(self.schema.clone());
        if let Some(filter) = conjunction(filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(filter, &df_schema)?);
        }
        Ok(FileScanConfigBuilder::new(store, Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit))
    }

    /// The columns to read for `projection` and the `exact` filters over
    /// it, and which of them to keep after filtering (`None`: all).
    #[allow(clippy::type_complexity)]
    fn with_filter_columns(
        &self,
        projection: Option<&Vec<usize>>,
        exact: &[Expr],
    ) -> DFResult<(Option<Vec<usize>>, Option<Vec<usize>>)> {
        let Some(projection) = projection else {
            return Ok((None, None));
        };
        let mut read = projection.clone();
        for e in exact {
            for c in e.column_refs() {
                let i = self.schema.index_of(&c.name)?;
                if !read.contains(&i) {
                    read.push(i);
                }
            }
        }
        let keep = (read.len() > projection.len()).then(|| (0..projection.len()).collect());
        Ok((Some(read), keep))
    }
}

/// `input` under the conjunction of `exact`, then cut to the columns in
/// `keep` and to `limit` rows.
fn filtered(
    state: &dyn Session,
    input: Arc<dyn ExecutionPlan>,
    exact: &[Expr],
    keep: Option<Vec<usize>>,
    limit: Option<usize>,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let Some(predicate) = conjunction(exact.iter().cloned()) else {
        return Ok(input);
    };
    let df_schema = DFSchema::try_from(input.schema().as_ref().clone())?;
    let predicate = state.create_physical_expr(predicate, &df_schema)?;
    Ok(Arc::new(
        FilterExecBuilder::new(predicate, input)
            .apply_projection(keep)?
            .with_fetch(limit)
            .build()?,
    ))
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // Filters prune files, row groups and pages; DataFusion still
        // applies them to the rows, except bounds on the time partition's
        // column, which the scan applies where a file's partition does not
        // settle them.
        Ok(filters
            .iter()
            .map(|f| {
                if self.answers(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let Some(snapshot) = self.table.metadata().current_snapshot() else {
            return Ok(Arc::new(EmptyExec::new(projected)));
        };
        // Iceberg only lists the files here (DataFusion reads them, with
        // its own projection): no columns selected, none looked up.
        let mut scan = self
            .table
            .scan()
            .snapshot_id(snapshot.snapshot_id())
            .select_empty();
        if let Some(predicate) = convert_filters_to_predicate(filters) {
            scan = scan.with_filter(predicate);
        }
        let tasks: Vec<FileScanTask> = scan
            .build()
            .map_err(df_err)?
            .plan_files()
            .await
            .map_err(df_err)?
            .try_collect()
            .await
            .map_err(df_err)?;
        if tasks.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let exact: Vec<Expr> = filters
            .iter()
            .filter(|f| self.answers(f))
            .cloned()
            .collect();
        // Files whose partition settles the exact filters, and the others.
        let mut whole = Vec::with_capacity(tasks.len());
        let mut residual = Vec::new();
        let mut store = None;
        for task in &tasks {
            let address = self
                .stores
                .resolve(state.runtime_env(), &task.data_file_path);
            match address {
                // One scan reads from one store; files elsewhere (a table
                // moved between buckets) go through Iceberg's reader.
                Some(a)
                    if task.deletes.is_empty() && store.as_ref().is_none_or(|s| *s == a.store) =>
                {
                    let file = PartitionedFile::new(a.path, task.file_size_in_bytes);
                    match &self.time_partition {
                        Some(p) if !p.file_passes(task.partition.as_ref(), &exact) => {
                            residual.push(file)
                        }
                        _ => whole.push(file),
                    }
                    store = Some(a.store);
                }
                _ => {
                    return self
                        .fallback(state, projection, filters, &exact, limit)
                        .await;
                }
            }
        }
        let Some(store) = store else {
            return Ok(Arc::new(EmptyExec::new(projected)));
        };

        // ParquetFormat applies the session's Parquet options and the
        // runtime's footer cache.
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let mut plans = Vec::with_capacity(2);
        if !whole.is_empty() {
            let config = self
                .parquet_scan(state, store.clone(), whole, projection, filters, limit)?
                .build();
            plans.push(format.create_physical_plan(state, config).await?);
        }
        if !residual.is_empty() {
            let (read, keep) = self.with_filter_columns(projection, &exact)?;
            let config = self
                .parquet_scan(state, store, residual, read.as_ref(), filters, None)?
                .build();
            let scan = format.create_physical_plan(state, config).await?;
            plans.push(filtered(state, scan, &exact, keep, limit)?);
        }
        UnionExec::try_new(plans)
    }
}
