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

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::TryStreamExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;
use iceberg_datafusion::IcebergStaticTableProvider;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;

use crate::object_stores::{ObjectStores, Resolve};

fn df_err(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// One table as of the snapshot that was current when it was loaded.
#[derive(Debug)]
pub struct SnapshotTable {
    table: Table,
    schema: SchemaRef,
    stores: Arc<ObjectStores>,
}

impl SnapshotTable {
    pub fn new(table: Table, stores: Arc<ObjectStores>) -> iceberg::Result<Self> {
        let schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema())?);
        Ok(Self {
            table,
            schema,
            stores,
        })
    }

    async fn fallback(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let provider = IcebergStaticTableProvider::try_new_from_table(self.table.clone())
            .await
            .map_err(df_err)?;
        provider.scan(state, projection, filters, limit).await
    }
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
        // Inexact: filters prune files, row groups and pages; DataFusion
        // still applies them to the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
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
        let mut scan = self
            .table
            .scan()
            .snapshot_id(snapshot.snapshot_id())
            .select_all();
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
        let mut files = Vec::with_capacity(tasks.len());
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
                    files.push(PartitionedFile::new(a.path, task.file_size_in_bytes));
                    store = Some(a.store);
                }
                _ => return self.fallback(state, projection, filters, limit).await,
            }
        }
        let Some(store) = store else {
            return Ok(Arc::new(EmptyExec::new(projected)));
        };

        let target = state.config().target_partitions().max(1);
        let groups: Vec<FileGroup> = FileGroup::new(files).split_files(target);
        let mut source = ParquetSource::new(self.schema.clone());
        if let Some(filter) = conjunction(filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(filter, &df_schema)?);
        }
        let config = FileScanConfigBuilder::new(store, Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        // ParquetFormat applies the session's Parquet options and the
        // runtime's footer cache.
        ParquetFormat::default()
            .with_options(state.table_options().parquet.clone())
            .create_physical_plan(state, config)
            .await
    }
}
