//! Query isolation: no query can stall the rest of the process.
//!
//! Every query — SQL, the analytics built on it, log search, the Loki API,
//! the CLI's embedded mode — runs on the [`QueryExecutor`], a tokio runtime
//! of its own (as InfluxDB 3 runs DataFusion on a dedicated executor):
//!
//! - **Threads apart.** The HTTP server, `/healthz`, `/metrics`, the
//!   tailer, the writers and the indexer run on the process's main runtime
//!   and threads. Query threads run at a lower scheduling priority
//!   (`nice` + [`QUERY_NICENESS`]), so on a busy machine the pipeline's
//!   threads get the CPU first. Their stacks are [`QUERY_STACK_BYTES`], far
//!   above what the statement depth limits allow.
//! - **Admission** ([`admission`]): at most `max_concurrent` run, at most
//!   `max_queued` wait, each caller within its own limit; the rest get 429.
//! - **Precedence**: a query older than a second gives way to younger ones
//!   (see [`cancel::Precedence`]), so short queries answer beside runaways.
//! - **Time**: past `timeout_secs` the caller gets 408 at once and the
//!   query's token is cancelled; every plan node checks it ([`cancel`]),
//!   so the work stops too. A client that goes away cancels the same way,
//!   and so does shutdown.
//! - **Memory** ([`memory`], [`functions`]): a pool per query inside one
//!   global budget, spilling bounded on disk, and the scalar functions that
//!   build large values refused past a bound before they allocate.

pub mod admission;
pub mod cancel;
pub mod functions;
pub mod memory;
pub mod sql_shape;

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::execution::memory_pool::{MemoryPool, TrackConsumersPool};
use tokio::runtime::{Handle, Runtime};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::error::QueryError;
use crate::metrics::QueryMetrics;
use admission::{Admission, AdmissionLimits, Refusal};
use memory::{GlobalBudget, QueryPool};

/// How much less priority query threads get than the pipeline's.
pub const QUERY_NICENESS: i32 = 10;

/// Stack of each query thread (virtual: only what is touched is resident).
pub const QUERY_STACK_BYTES: usize = 64 << 20;

/// The caller key of requests without a bearer token.
pub const ANONYMOUS: &str = "anonymous";

/// What the executor enforces.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    pub threads: usize,
    pub timeout: Duration,
    pub query_memory: usize,
    pub global_memory: usize,
    pub admission: AdmissionLimits,
}

/// What one running query carries: its cancellation token and its memory
/// pool. Every statement and blocking task of the query uses them.
#[derive(Clone)]
pub struct QueryScope {
    pub token: CancellationToken,
    pub pool: Arc<dyn MemoryPool>,
    /// Its age, against the young queries it gives way to.
    pub precedence: cancel::Precedence,
    /// The tenant the query reads for (`None`: the global view). Every
    /// SQL session, log search and LogQL selector of the query applies it
    /// ([`crate::tenancy`]).
    pub tenant: Option<Arc<crate::tenancy::TenantView>>,
}

tokio::task_local! {
    static SCOPE: QueryScope;
}

/// The scope of the query the current task works for, if any.
pub fn current_scope() -> Option<QueryScope> {
    SCOPE.try_with(Clone::clone).ok()
}

/// Runs `f` on a blocking thread of the executor on behalf of the current
/// query: [`cancel::check`] inside it answers for the query's token.
pub async fn blocking<T, F>(f: F) -> Result<T, QueryError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let token = current_scope().map(|s| s.token);
    tokio::task::spawn_blocking(move || cancel::with_token(token, f))
        .await
        .map_err(|e| QueryError::Internal(format!("a query task failed: {e}")))
}

pub struct QueryExecutor {
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
    /// Cancelled at shutdown; every query's token is a child of it.
    shutdown: CancellationToken,
    admission: Admission,
    budget: Arc<GlobalBudget>,
    /// Running queries younger than [`cancel::YOUNG`].
    young: Arc<AtomicUsize>,
    settings: ExecutorSettings,
    metrics: QueryMetrics,
}

impl QueryExecutor {
    pub fn new(settings: ExecutorSettings, metrics: QueryMetrics) -> Result<Self, QueryError> {
        let threads = settings.threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            // New queries and wake-ups from outside (the HTTP server, the
            // catalog's connections) arrive through the global queue, and
            // timers through the event loop. Tokio looks at both every 61
            // task polls by default; with runaway queries polling for tens
            // of milliseconds each, a cheap query would wait seconds.
            .global_queue_interval(2)
            .event_interval(2)
            .max_blocking_threads(threads.max(4) * 2)
            .thread_name("sluice-query")
            .thread_stack_size(QUERY_STACK_BYTES)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(|e| QueryError::Internal(format!("starting the query threads: {e}")))?;
        let handle = runtime.handle().clone();
        Ok(Self {
            runtime: Mutex::new(Some(runtime)),
            handle,
            shutdown: CancellationToken::new(),
            admission: Admission::new(
                settings.admission.clone(),
                metrics.queued.clone(),
                metrics.running.clone(),
            ),
            budget: Arc::new(GlobalBudget::new(settings.global_memory)),
            young: Arc::new(AtomicUsize::new(0)),
            settings,
            metrics,
        })
    }

    pub fn settings(&self) -> &ExecutorSettings {
        &self.settings
    }

    /// Bytes all running queries hold in their pools now.
    pub fn memory_reserved(&self) -> usize {
        self.budget.used()
    }

    fn new_pool(&self) -> Arc<dyn MemoryPool> {
        Arc::new(TrackConsumersPool::new(
            QueryPool::new(self.settings.query_memory, self.budget.clone()),
            NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        ))
    }

    /// Runs `work` as one query of `caller`: admitted, on the query
    /// threads, within the time limit, cancelled when the returned future
    /// is dropped. Work that is already inside a query runs as part of it.
    pub async fn run<T, F>(&self, caller: &str, work: F) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        self.run_as(caller, None, work).await
    }

    /// [`Self::run`] reading for `tenant` only (`None`: everything).
    pub async fn run_as<T, F>(
        &self,
        caller: &str,
        tenant: Option<Arc<crate::tenancy::TenantView>>,
        work: F,
    ) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        if current_scope().is_some() {
            return work.await;
        }
        if self.shutdown.is_cancelled() {
            return Err(QueryError::ShuttingDown);
        }
        let admitted = self.admission.admit(caller).await.map_err(|refusal| {
            self.metrics.rejected(refusal.reason());
            match refusal {
                Refusal::QueueFull { queued } => QueryError::Busy(format!(
                    "{queued} queries already wait for a slot ([query] max_queued)"
                )),
                Refusal::Waited { secs } => QueryError::Busy(format!(
                    "no query slot freed within {secs} s ([query] queue_timeout_secs)"
                )),
            }
        })?;
        self.metrics
            .queue_wait_seconds
            .observe(admitted.waited.as_secs_f64());

        let scope = QueryScope {
            token: self.shutdown.child_token(),
            pool: self.new_pool(),
            precedence: cancel::Precedence {
                started: std::time::Instant::now(),
                young: self.young.clone(),
            },
            tenant,
        };
        // Young until it ends or ages, whichever comes first.
        let mut young = Some(Young::enter(&self.young));
        let aged = tokio::time::sleep(cancel::YOUNG);
        tokio::pin!(aged);
        let token = scope.token.clone();
        let task = self.handle.spawn(SCOPE.scope(scope, async move {
            // Held until the work really ends, even after its caller gave
            // up: a query that is still stopping keeps its slot.
            let _admitted = admitted;
            work.await
        }));
        let mut guard = Abandon {
            token: token.clone(),
            task: task.abort_handle(),
            metrics: self.metrics.clone(),
            armed: true,
        };
        let timeout = self.settings.timeout;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        tokio::pin!(task);
        let outcome = loop {
            tokio::select! {
                joined = &mut task => break match joined {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => Err(QueryError::Internal(
                        "the query failed unexpectedly (a panic; see the log)".to_string(),
                    )),
                    Err(_) => Err(QueryError::ShuttingDown),
                },
                () = &mut aged, if young.is_some() => young = None,
                () = &mut deadline => {
                    self.metrics.cancelled("timeout");
                    break Err(QueryError::Timeout { secs: timeout.as_secs() });
                }
                () = self.shutdown.cancelled() => {
                    self.metrics.cancelled("shutdown");
                    break Err(QueryError::ShuttingDown);
                }
            }
        };
        drop(young);
        // Ended or given up: in both cases nothing more is to be done.
        token.cancel();
        guard.task.abort();
        guard.armed = false;
        self.metrics
            .memory_reserved_bytes
            .set(i64::try_from(self.budget.used()).unwrap_or(i64::MAX));
        outcome.map_err(|e| match e {
            // A cancellation seen by the work itself is the timeout's or
            // shutdown's doing; name the cause.
            QueryError::Cancelled if self.shutdown.is_cancelled() => QueryError::ShuttingDown,
            QueryError::Cancelled => QueryError::Timeout {
                secs: timeout.as_secs(),
            },
            other => other,
        })
    }

    /// Cancels every query and stops the query threads without waiting for
    /// them (a query stuck in a long computation must not hold shutdown).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

impl Drop for QueryExecutor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Cancels a query whose caller went away (the client disconnected and
/// axum dropped the handler).
struct Abandon {
    token: CancellationToken,
    task: AbortHandle,
    metrics: QueryMetrics,
    armed: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if self.armed {
            self.token.cancel();
            self.task.abort();
            self.metrics.cancelled("disconnect");
        }
    }
}

/// Counts a query as young while it lives.
struct Young(Arc<AtomicUsize>);

impl Young {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Young {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lowers the calling thread's scheduling priority (Linux: nice is per
/// thread). Failure only costs priority, so it is logged, not fatal.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no
        // memory of ours.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, QUERY_NICENESS)
        };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower a query thread's priority"
            );
        }
    }
}

/// The default number of query threads: one per core. Under `sluice up`
/// the pipeline keeps its share through priority, not through fewer query
/// threads: idle pipeline cores stay usable by queries, and a busy
/// pipeline preempts them.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, NonZeroUsize::get)
}
