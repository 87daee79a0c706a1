//! The SQL engine: DataFusion over the Iceberg catalog, read-only, run on
//! the query executor (see [`crate::isolation`]) with a time limit, memory
//! limits, bounded functions, a statement shape limit and a row cap.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use sluice_schema::tables::NAMESPACE;

use crate::config::{QueryConfig, Role};
use crate::error::QueryError;
use crate::isolation::admission::AdmissionLimits;
use crate::isolation::sql_shape::{self, ShapeLimits};
use crate::isolation::{
    self, ANONYMOUS, ExecutorSettings, QueryExecutor, QueryScope, cancel, functions,
};
use crate::metrics::QueryMetrics;
use crate::object_stores::ObjectStores;
use crate::scan::SnapshotTable;
use sluice_warehouse::catalog::S3Config;

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

/// Shared by every query of a process: the catalog, the limits, the query
/// executor and the Parquet footer cache.
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Arc<dyn Catalog>,
    config: QueryConfig,
    runtime: Arc<RuntimeEnv>,
    metrics: QueryMetrics,
    stores: Arc<ObjectStores>,
    executor: QueryExecutor,
    /// The value-building functions, bounded; registered in every session
    /// over the built-in ones.
    bounded_functions: Vec<ScalarUDF>,
    tables: Arc<LoadedTables>,
}

impl Engine {
    /// `s3`: how to reach S3 data files (the warehouse's settings).
    /// `config.threads` = 0 starts one query thread per core.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        config: QueryConfig,
        s3: S3Config,
    ) -> Result<Self, QueryError> {
        let spill = (config.spill_limit_mb as u64).saturating_mul(1 << 20);
        let runtime = RuntimeEnvBuilder::new()
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_max_temp_directory_size(spill),
            )
            .build_arc()
            .map_err(|e| QueryError::Internal(format!("starting the query runtime: {e}")))?;
        let metrics = QueryMetrics::default();
        let executor = QueryExecutor::new(executor_settings(&config), metrics.clone())?;
        let builtins: Vec<_> = SessionContext::new()
            .state()
            .scalar_functions()
            .values()
            .cloned()
            .collect();
        let bounded_functions = functions::bounded(
            builtins,
            config.max_function_output_mb.saturating_mul(1 << 20),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                catalog,
                config,
                runtime,
                metrics,
                stores: Arc::new(ObjectStores::new(s3)),
                executor,
                bounded_functions,
                tables: Arc::default(),
            }),
        })
    }

    /// The object stores the engine reads the warehouse through.
    pub fn stores(&self) -> &Arc<ObjectStores> {
        &self.inner.stores
    }

    pub fn metrics(&self) -> &QueryMetrics {
        &self.inner.metrics
    }

    pub fn config(&self) -> &QueryConfig {
        &self.inner.config
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.inner.catalog
    }

    /// Where every query runs (see [`crate::isolation`]).
    pub fn executor(&self) -> &QueryExecutor {
        &self.inner.executor
    }

    /// Runs one read-only statement; `params` fill `$1`, `$2`, … in order.
    /// Outside a request's query it is admitted and runs on the query
    /// executor as a query of its own (the CLI's embedded mode).
    pub async fn sql(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<QueryOutput, QueryError> {
        self.sql_as(sql, params, None).await
    }

    /// [`Engine::sql`] seeing only the tables `role` may read (`None`: all),
    /// `information_schema` included: a user's own SQL.
    pub async fn sql_as(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        role: Option<Role>,
    ) -> Result<QueryOutput, QueryError> {
        let inner = self.inner.clone();
        let sql = sql.to_string();
        let visible = role.and_then(Role::tables);
        self.inner
            .executor
            .run(
                ANONYMOUS,
                async move { inner.sql(&sql, params, visible).await },
            )
            .await
    }

    /// Readiness: the catalog answers within 2 s.
    pub async fn ready(&self) -> Result<(), String> {
        let namespace = NamespaceIdent::new(NAMESPACE.to_string());
        sluice_warehouse::catalog::answers(self.inner.catalog.namespace_exists(&namespace)).await
    }
}

/// The executor's settings from `[query]`.
fn executor_settings(config: &QueryConfig) -> ExecutorSettings {
    let max_concurrent = config.max_concurrent.max(1);
    let per_caller_default = match config.per_token_max_concurrent {
        0 => max_concurrent,
        n => n,
    };
    ExecutorSettings {
        threads: match config.threads {
            0 => isolation::default_threads(),
            n => n,
        },
        timeout: Duration::from_secs(config.timeout_secs.max(1)),
        query_memory: config.memory_limit_mb.saturating_mul(1 << 20),
        global_memory: config
            .global_memory_limit_mb
            .max(config.memory_limit_mb)
            .saturating_mul(1 << 20),
        admission: AdmissionLimits {
            max_concurrent,
            max_queued: config.max_queued,
            queue_timeout: Duration::from_secs(config.queue_timeout_secs),
            per_caller_default,
            per_caller: config
                .tokens
                .iter()
                .filter_map(|t| Some((t.token.clone(), t.max_concurrent?)))
                .collect(),
        },
    }
}

impl Inner {
    /// A session that sees each table as of its latest committed snapshot,
    /// and every table of the namespace, however recently created; its
    /// memory is the query's pool.
    async fn session(
        &self,
        scope: &QueryScope,
        visible: Option<&[&str]>,
    ) -> Result<SessionContext, QueryError> {
        let namespace = NamespaceIdent::new(NAMESPACE.to_string());
        let mut names: Vec<String> = match self.catalog.list_tables(&namespace).await {
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
        self.tables.keep_only(&names);
        if let Some(visible) = visible {
            names.retain(|n| visible.contains(&n.as_str()));
        }
        // A tenant sees its tables only, each through its row filter.
        if let Some(t) = &scope.tenant {
            names.retain(|n| t.sees_table(n));
        }
        let mut runtime = (*self.runtime).clone();
        runtime.memory_pool = scope.pool.clone();
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(DF_CATALOG, NAMESPACE)
            .with_information_schema(true);
        // A grouping that keeps more than one group in ten rows (events per
        // principal per minute: guardrail peaks, the attribution series)
        // gains less from a first, partial aggregation per core than the
        // second hash pass costs it; past this share of new groups the
        // partial step passes rows straight through. DataFusion's default
        // (0.8) kept both passes for peaks: 46 ms instead of 34 ms at 300 k
        // events, 268 ms instead of 216 ms at 3 M (docs/benchmarks.md).
        config
            .options_mut()
            .execution
            .skip_partial_aggregation_probe_ratio_threshold = 0.1;
        let ctx = SessionContext::new_with_config_rt(config, Arc::new(runtime));
        for f in &self.bounded_functions {
            ctx.register_udf(f.clone());
        }
        ctx.register_udaf(crate::quantiles::udaf());
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
                    tables: self.tables.clone(),
                    stores: self.stores.clone(),
                    tenant: scope.tenant.clone(),
                }),
            )
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        Ok(ctx)
    }

    async fn sql(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        visible: Option<&[&str]>,
    ) -> Result<QueryOutput, QueryError> {
        let started = Instant::now();
        let mut output = self.run(sql, params, visible).await?;
        output.elapsed = started.elapsed();
        self.metrics.statements.inc();
        self.metrics.rows_scanned.inc_by(output.rows_scanned);
        Ok(output)
    }

    async fn run(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        visible: Option<&[&str]>,
    ) -> Result<QueryOutput, QueryError> {
        let df_err =
            |e: DataFusionError| QueryError::from_datafusion(e, self.config.memory_limit_mb);
        let scope = isolation::current_scope().ok_or_else(|| {
            QueryError::Internal("a statement ran outside the query executor".to_string())
        })?;
        let shape = ShapeLimits {
            max_bytes: self.config.max_sql_bytes,
            max_depth: self.config.max_expr_depth,
        };
        sql_shape::check_length(sql, shape).map_err(QueryError::BadRequest)?;
        // Where a statement's time goes, phase by phase (debug level): the
        // fixed costs that dominate small queries show here.
        let t0 = Instant::now();
        let ctx = self.session(&scope, visible).await?;
        let session_done = t0.elapsed();
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect).map_err(df_err)?;
        sql_shape::check_depth(&statement, shape).map_err(QueryError::BadRequest)?;
        // Loads the tables the statement names from the catalog.
        let plan = state.statement_to_plan(statement).await.map_err(df_err)?;
        let plan_done = t0.elapsed();
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
        // Optimizes and plans the scans (manifests read, files chosen).
        let physical = df.create_physical_plan().await.map_err(df_err)?;
        let physical_done = t0.elapsed();
        let physical = cancel::cancellable(
            physical,
            &scope.token,
            &scope.precedence,
            self.config.max_nested_loop_rows,
        )
        .map_err(df_err)?;
        let schema = physical.schema();
        let mut stream = execute_stream(physical.clone(), ctx.task_ctx()).map_err(df_err)?;
        // The answer is held until it is sent: it counts against the pool.
        let result = MemoryConsumer::new("query result").register(&scope.pool);
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
            result
                .try_grow(batch.get_array_memory_size())
                .map_err(df_err)?;
            batches.push(batch);
        }
        tracing::debug!(
            session_ms = session_done.as_secs_f64() * 1e3,
            logical_plan_ms = plan_done.saturating_sub(session_done).as_secs_f64() * 1e3,
            physical_plan_ms = physical_done.saturating_sub(plan_done).as_secs_f64() * 1e3,
            execute_ms = t0.elapsed().saturating_sub(physical_done).as_secs_f64() * 1e3,
            rows,
            "statement phases"
        );
        Ok(QueryOutput {
            schema,
            batches,
            rows,
            rows_scanned: rows_scanned(physical.as_ref()),
            elapsed: Duration::ZERO,
        })
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
    tables: Arc<LoadedTables>,
    stores: Arc<ObjectStores>,
    /// Whose rows the tables hold, for this session.
    tenant: Option<Arc<crate::tenancy::TenantView>>,
}

/// `provider` as a view of the rows `tenant` may read: the filter sits in
/// the logical plan under whatever the query does with the table (joins,
/// subqueries, CTEs, UNION, EXPLAIN), so no query shape can widen it.
fn tenant_view(
    name: &str,
    provider: Arc<dyn TableProvider>,
    tenant: &crate::tenancy::TenantView,
) -> DFResult<Arc<dyn TableProvider>> {
    use datafusion::catalog::view::ViewTable;
    use datafusion::datasource::provider_as_source;
    use datafusion::logical_expr::LogicalPlanBuilder;
    let Some(filter) = tenant.sql_filter(name) else {
        return Err(DataFusionError::Plan(format!("table {name} not found")));
    };
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?
        .filter(filter)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
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
            .tables
            .load(self.catalog.as_ref(), &ident)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut provider: Arc<dyn TableProvider> = Arc::new(
            SnapshotTable::new(table, self.stores.clone())
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        );
        if let Some(t) = &self.tenant {
            provider = tenant_view(name, provider, t)?;
        }
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(name.to_string(), provider.clone());
        }
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

/// Each table as last loaded, kept between queries. A table loaded again at
/// the same metadata file (nothing committed since) is the kept one, with
/// the manifest list and manifests its queries parsed (iceberg's object
/// cache lives in the `Table`): planning a query over a quiet table reads
/// no manifest again. One entry per table of the namespace, replaced at
/// each commit, so it holds at most the current snapshots' manifests.
#[derive(Debug, Default)]
struct LoadedTables {
    tables: Mutex<HashMap<TableIdent, Table>>,
}

impl LoadedTables {
    /// The table as the catalog has it now: its metadata is always loaded
    /// (that is how a commit is seen), its manifests only when it changed.
    async fn load(&self, catalog: &dyn Catalog, ident: &TableIdent) -> iceberg::Result<Table> {
        let fresh = catalog.load_table(ident).await?;
        let Ok(mut tables) = self.tables.lock() else {
            return Ok(fresh);
        };
        if let Some(kept) = tables.get(ident)
            && fresh.metadata_location().is_some()
            && kept.metadata_location() == fresh.metadata_location()
        {
            return Ok(kept.clone());
        }
        tables.insert(ident.clone(), fresh.clone());
        Ok(fresh)
    }

    /// Forgets tables no longer in the catalog (`names`: the namespace's).
    fn keep_only(&self, names: &[String]) {
        if let Ok(mut tables) = self.tables.lock() {
            tables.retain(|ident, _| names.contains(&ident.name));
        }
    }
}
