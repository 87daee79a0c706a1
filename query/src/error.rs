//! Every failure of the query side, with the HTTP status it answers with.
//! Bodies are `{"error": kind, "detail": message}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use serde_json::json;

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
    #[error("the answer has more than {cap} rows (limit [query] row_cap); add LIMIT or aggregate")]
    RowCap { cap: usize },
    #[error("missing or unknown bearer token")]
    Unauthorized,
    #[error("this token's role may not call {0}")]
    Forbidden(String),
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
            QueryError::Unauthorized => "unauthorized",
            QueryError::Forbidden(_) => "forbidden",
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
            QueryError::MemoryLimit { .. } | QueryError::RowCap { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            QueryError::Unauthorized => StatusCode::UNAUTHORIZED,
            QueryError::Forbidden(_) => StatusCode::FORBIDDEN,
            QueryError::NotFound(_) => StatusCode::NOT_FOUND,
            QueryError::Catalog(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Classifies an engine error: the user's mistakes are 4xx, ours 5xx.
    pub fn from_datafusion(e: DataFusionError, memory_limit_mb: usize) -> Self {
        let message = e.to_string();
        match e.find_root() {
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
        let status = self.status();
        let mut response = (
            status,
            Json(json!({"error": self.kind(), "detail": self.to_string()})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
