//! Cancellation that reaches operators which never yield on their own.
//!
//! DataFusion stops a query when its stream is dropped, but only at the
//! next point where the task yields, and several operators never yield while
//! their input keeps producing: a cross join feeding an aggregate, `range`
//! over 10¹² rows feeding a count. A `tokio::time::timeout` around such a
//! query never fires, and the worker thread stays busy forever.
//!
//! [`cancellable`] therefore wraps *every* node of an executed plan in
//! [`CancelExec`], whose stream checks the query's token each time its
//! parent pulls a batch: after a timeout, a client disconnect or shutdown
//! the next pull anywhere in the tree fails with [`Cancelled`]. It also
//! spends tokio's cooperative budget, so a busy query yields its thread to
//! the other queries on the executor every few batches.
//!
//! Work outside DataFusion (the log index, LogQL) runs on blocking threads;
//! it calls [`check`] between units of work (a split, a series).
//!
//! The same streams give young queries the CPU first ([`Precedence`]): a
//! query that has run longer than [`YOUNG`] waits a millisecond before each
//! batch while a younger query runs, as multilevel schedulers demote long
//! jobs. A dashboard's query then answers in about its idle time beside
//! runaway analytics, which lose little: they were going to run long.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::joins::NestedLoopJoinExec;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::Stream;
use tokio_util::sync::CancellationToken;

/// The error a cancelled query's streams end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the query was cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// How long a query counts as young.
pub const YOUNG: Duration = Duration::from_secs(1);

/// What an old query waits per batch while a young one runs.
const DEMOTED_WAIT: Duration = Duration::from_millis(1);

/// A query's age and the executor's count of young queries.
#[derive(Debug, Clone)]
pub struct Precedence {
    pub started: Instant,
    /// Queries running that started less than [`YOUNG`] ago.
    pub young: Arc<AtomicUsize>,
}

impl Precedence {
    fn demoted(&self) -> bool {
        self.started.elapsed() > YOUNG && self.young.load(Ordering::Relaxed) > 0
    }
}

/// Wraps every node of `plan` so that its streams stop once `token` is
/// cancelled, and give way to young queries once this one is old.
///
/// A nested-loop join is the one operator that can run for minutes inside a
/// single poll: it joins each probe batch against its whole build side
/// before it looks at its input again, and with a filter that matches
/// nothing it returns nothing until then. Its build side is therefore
/// limited to `nested_loop_rows` rows (refused with [`JoinTooLarge`] past
/// it), which keeps one poll around a second.
pub fn cancellable(
    plan: Arc<dyn ExecutionPlan>,
    token: &CancellationToken,
    precedence: &Precedence,
    nested_loop_rows: usize,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let wrap = |node: Arc<dyn ExecutionPlan>, row_limit: Option<usize>| -> Arc<dyn ExecutionPlan> {
        let mut wrapped = CancelExec::new(node, token.clone(), precedence.clone());
        wrapped.row_limit = row_limit;
        Arc::new(wrapped)
    };
    let wrapped = plan.transform_up(|node| {
        let node = if node.as_any().is::<NestedLoopJoinExec>() {
            let mut children: Vec<_> = node.children().into_iter().cloned().collect();
            if let Some(build) = children.first_mut() {
                *build = wrap(build.clone(), Some(nested_loop_rows));
            }
            node.with_new_children(children)?
        } else {
            node
        };
        Ok(Transformed::yes(wrap(node, None)))
    })?;
    Ok(wrapped.data)
}

/// A nested-loop join's build side passed its row limit.
#[derive(Debug)]
pub struct JoinTooLarge {
    pub limit: usize,
}

impl fmt::Display for JoinTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a join without an equality condition would compare every row of a side of more \
             than {} rows with every row of the other ([query] max_nested_loop_rows); join on \
             equal columns, or filter the sides first",
            self.limit
        )
    }
}

impl std::error::Error for JoinTooLarge {}

/// A pass-through node whose stream checks a cancellation token.
#[derive(Debug)]
pub struct CancelExec {
    inner: Arc<dyn ExecutionPlan>,
    token: CancellationToken,
    precedence: Precedence,
    /// Rows the stream may pass in all (a nested-loop join's build side).
    row_limit: Option<usize>,
}

impl CancelExec {
    pub fn new(
        inner: Arc<dyn ExecutionPlan>,
        token: CancellationToken,
        precedence: Precedence,
    ) -> Self {
        Self {
            inner,
            token,
            precedence,
            row_limit: None,
        }
    }
}

impl DisplayAs for CancelExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("CancelExec")
    }
}

impl ExecutionPlan for CancelExec {
    fn name(&self) -> &str {
        "CancelExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(inner), true) => {
                let mut wrapped =
                    CancelExec::new(inner, self.token.clone(), self.precedence.clone());
                wrapped.row_limit = self.row_limit;
                Ok(Arc::new(wrapped))
            }
            _ => Err(DataFusionError::Internal(
                "CancelExec takes exactly one child".to_string(),
            )),
        }
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        if self.token.is_cancelled() {
            return Err(cancelled_error());
        }
        let inner = self.inner.execute(partition, context)?;
        Ok(Box::pin(CancelStream {
            inner,
            token: self.token.clone(),
            precedence: self.precedence.clone(),
            wait: None,
            row_limit: self.row_limit,
            rows: 0,
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        None
    }
}

/// The error DataFusion carries up from a cancelled stream.
pub fn cancelled_error() -> DataFusionError {
    DataFusionError::External(Box::new(Cancelled))
}

/// Whether a DataFusion error (or one it wraps) is a cancellation.
pub fn is_cancelled(e: &DataFusionError) -> bool {
    match e.find_root() {
        DataFusionError::External(inner) => inner.downcast_ref::<Cancelled>().is_some(),
        _ => false,
    }
}

struct CancelStream {
    inner: SendableRecordBatchStream,
    token: CancellationToken,
    precedence: Precedence,
    /// The wait of a demoted query before its next batch.
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Rows it may pass in all, when limited, and has passed.
    row_limit: Option<usize>,
    rows: usize,
}

impl Stream for CancelStream {
    type Item = DFResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.token.is_cancelled() {
            return Poll::Ready(Some(Err(cancelled_error())));
        }
        if self.wait.is_none() && self.precedence.demoted() {
            self.wait = Some(Box::pin(tokio::time::sleep(DEMOTED_WAIT)));
        }
        if let Some(wait) = self.wait.as_mut() {
            ready!(wait.as_mut().poll(cx));
            self.wait = None;
        }
        // Spend the task's budget: a query that always has a batch ready
        // still yields its thread now and then.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let polled = self.inner.as_mut().poll_next(cx);
        if polled.is_ready() {
            coop.made_progress();
        }
        if let (Poll::Ready(Some(Ok(batch))), Some(limit)) = (&polled, self.row_limit) {
            self.rows += batch.num_rows();
            if self.rows > limit {
                return Poll::Ready(Some(Err(DataFusionError::External(Box::new(
                    JoinTooLarge { limit },
                )))));
            }
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl RecordBatchStream for CancelStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

thread_local! {
    /// The token of the query a blocking thread works for.
    static BLOCKING_TOKEN: RefCell<Option<CancellationToken>> = const { RefCell::new(None) };
}

/// Runs `f` on the current query's behalf on a blocking thread: [`check`]
/// inside it answers for `token`.
pub fn with_token<T>(token: Option<CancellationToken>, f: impl FnOnce() -> T) -> T {
    let previous = BLOCKING_TOKEN.with(|t| t.replace(token));
    let out = f();
    BLOCKING_TOKEN.with(|t| t.replace(previous));
    out
}

/// `Err(Cancelled)` once the query this blocking work runs for was
/// cancelled; cheap enough to call per split or per series.
pub fn check() -> Result<(), Cancelled> {
    BLOCKING_TOKEN.with(|t| match t.borrow().as_ref() {
        Some(token) if token.is_cancelled() => Err(Cancelled),
        _ => Ok(()),
    })
}
