//! The one error body every endpoint answers with: `{"error": kind,
//! "detail": message}` — `kind` a stable word a client can branch on,
//! `detail` a sentence for the person reading it — and the headers its
//! status asks for (`Retry-After` on 429 and 503, `WWW-Authenticate` on 401).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What a 429 or 503 asks the client to wait before it tries again.
pub const RETRY_AFTER_SECS: &str = "2";

/// The error response.
pub fn response(status: StatusCode, kind: &str, detail: impl Into<String>) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"error": kind, "detail": detail.into()})),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// The kind of an error that has no finer one than its status.
pub fn kind_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::TOO_MANY_REQUESTS => "busy",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ if status.is_client_error() => "bad_request",
        _ => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_headers() {
        let r = response(StatusCode::TOO_MANY_REQUESTS, "busy", "retry");
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let r = response(
            StatusCode::UNAUTHORIZED,
            kind_of(StatusCode::UNAUTHORIZED),
            "x",
        );
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(kind_of(StatusCode::IM_A_TEAPOT), "bad_request");
    }
}
