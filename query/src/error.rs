//! Every failure of the query side, with the HTTP status it answers with.
//! Bodies are `{"error": kind, "detail": message}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;

/// What a 429 or 503 asks the client to wait before it tries again.
pub use sluice_http::error::RETRY_AFTER_SECS;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter is missing, malformed or out of range.
    #[error("{0}")]
    BadRequest(String),
    /// The statement is valid SQL but not allowed here (DDL, DML, SET, COPY).
    #[error("{0}")]
    Refused(String),
    /// The SQL does not parse or plan: unknown table or column, type error.
    #[error("{0}")]
    Sql(String),
    #[error("the query ran longer than {secs} s and was cancelled (limit [query] timeout_secs)")]
    Timeout { secs: u64 },
    #[error(
        "the query needs more than {limit_mb} MiB of working memory (limit [query] memory_limit_mb): {detail}"
    )]
    MemoryLimit { limit_mb: usize, detail: String },
    /// A scalar function would build a value past `max_function_output_mb`.
    #[error("{0}")]
    ValueLimit(String),
    /// No execution slot: too many queries run or wait (429, Retry-After).
    #[error("the query service is busy: {0}; retry later")]
    Busy(String),
    /// Something the answer needs is not ready yet (503, Retry-After): the
    /// log index being rebuilt.
    #[error("{0}")]
    Unavailable(String),
    /// The process is stopping; queries are cancelled.
    #[error("the query service is shutting down")]
    ShuttingDown,
    /// The query's token was cancelled; the executor turns this into the
    /// cause (timeout, shutdown) before it reaches a caller.
    #[error("the query was cancelled")]
    Cancelled,
    #[error("the answer has more than {cap} rows (limit [query] row_cap); add LIMIT or aggregate")]
    RowCap { cap: usize },
    /// No credentials, or ones that do not hold (401): the message says
    /// which ("missing or unknown bearer token", "token expired", …).
    #[error("{0}")]
    Unauthorized(String),
    #[error("this token's role may not call {0}")]
    Forbidden(String),
    /// Known credentials asking for what they may not have (403): another
    /// tenant, a route tenants do not get.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    NotFound(String),
    /// The catalog or the warehouse does not answer.
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    pub fn kind(&self) -> &'static str {
        match self {
            QueryError::BadRequest(_) => "bad_request",
            QueryError::Refused(_) => "refused",
            QueryError::Sql(_) => "sql",
            QueryError::Timeout { .. } => "timeout",
            QueryError::MemoryLimit { .. } => "memory_limit",
            QueryError::RowCap { .. } => "row_cap",
            QueryError::ValueLimit(_) => "value_limit",
            QueryError::Busy(_) => "busy",
            QueryError::Unavailable(_) => "unavailable",
            QueryError::ShuttingDown => "shutting_down",
            QueryError::Cancelled => "cancelled",
            QueryError::Unauthorized(_) => "unauthorized",
            QueryError::Forbidden(_) | QueryError::Denied(_) => "forbidden",
            QueryError::NotFound(_) => "not_found",
            QueryError::Catalog(_) => "catalog",
            QueryError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            QueryError::BadRequest(_) | QueryError::Refused(_) | QueryError::Sql(_) => {
                StatusCode::BAD_REQUEST
            }
            QueryError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            QueryError::MemoryLimit { .. }
            | QueryError::RowCap { .. }
            | QueryError::ValueLimit(_) => StatusCode::UNPROCESSABLE_ENTITY,
            QueryError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            QueryError::ShuttingDown | QueryError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // Never answered as such (see the variant); a client that
            // sees it was cut off.
            QueryError::Cancelled => StatusCode::REQUEST_TIMEOUT,
            QueryError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            QueryError::Forbidden(_) | QueryError::Denied(_) => StatusCode::FORBIDDEN,
            QueryError::NotFound(_) => StatusCode::NOT_FOUND,
            QueryError::Catalog(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Classifies an engine error: the user's mistakes are 4xx, ours 5xx.
    pub fn from_datafusion(e: DataFusionError, memory_limit_mb: usize) -> Self {
        if crate::isolation::cancel::is_cancelled(&e) {
            return QueryError::Cancelled;
        }
        let message = e.to_string();
        match e.find_root() {
            DataFusionError::External(inner)
                if inner
                    .downcast_ref::<crate::isolation::functions::ValueTooLarge>()
                    .is_some()
                    || inner
                        .downcast_ref::<crate::isolation::cancel::JoinTooLarge>()
                        .is_some() =>
            {
                QueryError::ValueLimit(inner.to_string())
            }
            DataFusionError::ResourcesExhausted(detail) => QueryError::MemoryLimit {
                limit_mb: memory_limit_mb,
                detail: detail.clone(),
            },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::Sql(message),
            // Division by zero, failed casts: the query's fault, not ours.
            DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => {
                QueryError::Sql(message)
            }
            _ => QueryError::Internal(message),
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        sluice_http::error::response(self.status(), self.kind(), self.to_string())
    }
}
