//! The SQL engine: DataFusion over the Iceberg catalog, read-only, with a
//! time limit, a memory limit and a row cap per query.

use std::any::Any;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use sluice_schema::tables::NAMESPACE;
use tokio::sync::Semaphore;

use crate::config::QueryConfig;
use crate::error::QueryError;
use crate::metrics::QueryMetrics;
use crate::object_stores::ObjectStores;
use crate::scan::SnapshotTable;
use sluice_ingest::catalog::S3Config;

/// The catalog DataFusion resolves names in; tables answer to
/// `platform_event_logs`, `platform.platform_event_logs` and
/// `sluice.platform.platform_event_logs`.
const DF_CATALOG: &str = "sluice";

/// One query's answer.
#[derive(Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// Rows read from the tables' data files (after file and row-group
    /// pruning).
    pub rows_scanned: u64,
    pub elapsed: Duration,
}

/// Shared by every query of a process: the catalog, the limits and the
/// Parquet footer cache.
pub struct Engine {
    catalog: Arc<dyn Catalog>,
    config: QueryConfig,
    runtime: Arc<RuntimeEnv>,
    permits: Semaphore,
    metrics: QueryMetrics,
    stores: Arc<ObjectStores>,
}

impl Engine {
    /// `s3`: how to reach S3 data files (the warehouse's settings).
    pub fn new(
        catalog: Arc<dyn Catalog>,
        config: QueryConfig,
        s3: S3Config,
    ) -> Result<Self, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .build_arc()
            .map_err(|e| QueryError::Internal(format!("starting the query runtime: {e}")))?;
        let permits = Semaphore::new(config.max_concurrent.max(1));
        Ok(Self {
            catalog,
            config,
            runtime,
            permits,
            metrics: QueryMetrics::default(),
            stores: Arc::new(ObjectStores::new(s3)),
        })
    }

    /// The object stores the engine reads the warehouse through.
    pub fn stores(&self) -> &Arc<ObjectStores> {
        &self.stores
    }

    pub fn metrics(&self) -> &QueryMetrics {
        &self.metrics
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// A session that sees each table as of its latest committed snapshot,
    /// and every table of the namespace, however recently created.
    pub async fn session(&self) -> Result<SessionContext, QueryError> {
        let namespace = NamespaceIdent::new(NAMESPACE.to_string());
        let names = match self.catalog.list_tables(&namespace).await {
            Ok(idents) => idents.into_iter().map(|t| t.name).collect(),
            // A catalog nothing was written to yet: no tables, not an error.
            Err(_)
                if !self
                    .catalog
                    .namespace_exists(&namespace)
                    .await
                    .unwrap_or(true) =>
            {
                Vec::new()
            }
            Err(e) => return Err(QueryError::Catalog(e.to_string())),
        };
        let mut runtime = (*self.runtime).clone();
        let limit = self.config.memory_limit_mb.saturating_mul(1 << 20);
        runtime.memory_pool = Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(limit),
            NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        ));
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(DF_CATALOG, NAMESPACE)
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config_rt(config, Arc::new(runtime));
        let catalog = ctx.catalog(DF_CATALOG).ok_or_else(|| {
            QueryError::Internal("the session has no default catalog".to_string())
        })?;
        catalog
            .register_schema(
                NAMESPACE,
                Arc::new(IcebergSchema {
                    catalog: self.catalog.clone(),
                    namespace,
                    names,
                    loaded: Mutex::new(HashMap::new()),
                    stores: self.stores.clone(),
                }),
            )
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        Ok(ctx)
    }

    /// Runs one read-only statement; `params` fill `$1`, `$2`, … in order.
    pub async fn sql(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<QueryOutput, QueryError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| QueryError::Internal("the engine is shutting down".to_string()))?;
        let started = Instant::now();
        let secs = self.config.timeout_secs.max(1);
        let run = self.run(sql, params);
        let mut output = tokio::time::timeout(Duration::from_secs(secs), run)
            .await
            .map_err(|_| QueryError::Timeout { secs })??;
        output.elapsed = started.elapsed();
        self.metrics.statements.inc();
        self.metrics.rows_scanned.inc_by(output.rows_scanned);
        Ok(output)
    }

    async fn run(&self, sql: &str, params: Vec<ScalarValue>) -> Result<QueryOutput, QueryError> {
        let df_err =
            |e: DataFusionError| QueryError::from_datafusion(e, self.config.memory_limit_mb);
        let ctx = self.session().await?;
        let plan = ctx.state().create_logical_plan(sql).await.map_err(df_err)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| {
                QueryError::Refused(format!(
                    "only read-only queries are allowed here ({})",
                    e.strip_backtrace()
                ))
            })?;
        let mut df = ctx.execute_logical_plan(plan).await.map_err(df_err)?;
        if !params.is_empty() {
            df = df.with_param_values(params).map_err(df_err)?;
        }
        let physical = df.create_physical_plan().await.map_err(df_err)?;
        let schema = physical.schema();
        let mut stream = execute_stream(physical.clone(), ctx.task_ctx()).map_err(df_err)?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_err)?;
            rows += batch.num_rows();
            if rows > self.config.row_cap {
                return Err(QueryError::RowCap {
                    cap: self.config.row_cap,
                });
            }
            batches.push(batch);
        }
        Ok(QueryOutput {
            schema,
            batches,
            rows,
            rows_scanned: rows_scanned(physical.as_ref()),
            elapsed: Duration::ZERO,
        })
    }

    /// Readiness: the catalog answers within 2 s.
    pub async fn ready(&self) -> Result<(), String> {
        let namespace = NamespaceIdent::new(NAMESPACE.to_string());
        match tokio::time::timeout(
            Duration::from_secs(2),
            self.catalog.namespace_exists(&namespace),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("catalog: {e}")),
            Err(_) => Err("catalog did not answer within 2 s".to_string()),
        }
    }
}

/// Rows that came out of the leaf scans of an executed plan.
fn rows_scanned(plan: &dyn ExecutionPlan) -> u64 {
    let children = plan.children();
    if children.is_empty() {
        return plan.metrics().and_then(|m| m.output_rows()).unwrap_or(0) as u64;
    }
    children.iter().map(|c| rows_scanned(c.as_ref())).sum()
}

/// The `platform` namespace of the Iceberg catalog as a DataFusion schema.
/// Table names are listed when the session starts; a table is loaded, at
/// its current snapshot, the first time the session's query names it.
#[derive(Debug)]
struct IcebergSchema {
    catalog: Arc<dyn Catalog>,
    namespace: NamespaceIdent,
    names: Vec<String>,
    loaded: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
    stores: Arc<ObjectStores>,
}

#[async_trait]
impl SchemaProvider for IcebergSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.names.clone()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if !self.table_exist(name) {
            return Ok(None);
        }
        if let Some(t) = self.loaded.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(Some(t));
        }
        let ident = TableIdent::new(self.namespace.clone(), name.to_string());
        let table = self
            .catalog
            .load_table(&ident)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let provider: Arc<dyn TableProvider> = Arc::new(
            SnapshotTable::new(table, self.stores.clone())
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        );
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(name.to_string(), provider.clone());
        }
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}
