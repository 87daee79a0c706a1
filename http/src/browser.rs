//! Protections against requests a web page makes through a user's browser.
//!
//! Listening on loopback keeps other machines out, not the web pages open
//! in the user's browser: a page can `POST` a `text/plain` body (no CORS
//! preflight) to `http://127.0.0.1:7878/v1/sql`, load `/v1/logs/search?q=…`
//! as an image, or rebind its own DNS name to 127.0.0.1 and read the
//! answers. [`guard`] refuses, before any handler runs:
//!
//! - a `Host` this server does not answer to (DNS rebinding): on loopback,
//!   only loopback names and addresses, plus `[http] allowed_hosts`;
//!   elsewhere, `allowed_hosts` when set;
//! - a request from another origin (`Origin` not this server's own, nor in
//!   `[http] cors_origins`), and a cross-site request without `Origin`
//!   (`Sec-Fetch-Site`; an `<img>`, a `<script>`), except a plain navigation
//!   to the console;
//! - a state-changing request with a body type a form or `text/plain` fetch
//!   can send without a preflight (send `application/json` or NDJSON).
//!
//! Origins in `cors_origins` get an explicit CORS policy (preflight answered,
//! `Access-Control-Allow-Origin` on the answer); by default there is none.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Who may reach the server through a browser.
#[derive(Debug, Clone)]
pub struct BrowserPolicy {
    /// Accepted `Host` names (no port), lowercase; `None`: any.
    hosts: Option<Vec<String>>,
    /// Loopback addresses are accepted as `Host` too.
    loopback: bool,
    /// Origins (`scheme://host[:port]`) allowed cross-origin.
    cors_origins: Vec<String>,
}

impl BrowserPolicy {
    /// The policy of a server bound to `bound`.
    pub fn new(bound: SocketAddr, allowed_hosts: &[String], cors_origins: &[String]) -> Self {
        let extra: Vec<String> = allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let loopback = bound.ip().is_loopback();
        let hosts = if loopback {
            let mut h = vec!["localhost".to_string()];
            h.extend(extra);
            Some(h)
        } else if extra.is_empty() {
            None
        } else {
            Some(extra)
        };
        Self {
            hosts,
            loopback,
            cors_origins: cors_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some(allowed) = &self.hosts else {
            return true;
        };
        let name = strip_port(host).to_ascii_lowercase();
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            && self.loopback
            && ip.is_loopback()
        {
            return true;
        }
        // `*.localhost` resolves to loopback by definition (RFC 6761).
        allowed
            .iter()
            .any(|a| *a == name || (a == "localhost" && name.ends_with(".localhost")))
    }
}

/// `host[:port]` or `[v6]:port` without the port.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 2]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

fn refuse(status: StatusCode, kind: &str, detail: String) -> Response {
    crate::error::response(status, kind, detail)
}

/// The `Origin` of a request when it is another site's: `Some(origin)`.
fn foreign_origin(headers: &HeaderMap) -> Option<String> {
    let origin = headers
        .get(header::ORIGIN)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let authority = origin.split_once("://").map_or(origin.as_str(), |(_, a)| a);
    (authority != host).then_some(origin)
}

fn is_api(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/loki/")
}

/// Body types a page can send cross-origin without a CORS preflight.
fn simple_body_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        media.as_str(),
        "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
    )
    .then_some(media)
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn guard(
    State(policy): State<Arc<BrowserPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !policy.host_allowed(host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            format!(
                "this server does not answer to Host {host:?} (a protection against DNS \
                 rebinding); add the name to [http] allowed_hosts"
            ),
        );
    }
    let origin = foreign_origin(headers);
    let cors = origin
        .as_ref()
        .filter(|o| policy.cors_origins.iter().any(|a| a == *o))
        .cloned();
    if let Some(o) = &origin
        && cors.is_none()
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!(
                "requests from {o} are refused; to let that site's pages call this server, \
                 add it to [http] cors_origins"
            ),
        );
    }
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| {
            s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site")
        });
    let navigation = request.method() == Method::GET
        && headers
            .get("sec-fetch-mode")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.eq_ignore_ascii_case("navigate"));
    // A plain navigation to the console (a link from a wiki) still opens it.
    let console_link = navigation && !is_api(request.uri().path());
    if cross_site && cors.is_none() && !console_link {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a request another site's page made is refused (Sec-Fetch-Site); add the site \
             to [http] cors_origins to allow it"
                .to_string(),
        );
    }
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if writes && let Some(media) = simple_body_type(headers) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {media} is not accepted: send application/json (or \
                 application/x-ndjson where the endpoint takes NDJSON)"
            ),
        );
    }
    let Some(origin) = cors else {
        return next.run(request).await;
    };
    let allow = HeaderValue::from_str(&origin).ok();
    if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        if let Some(a) = allow {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, a);
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, content-encoding"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        return response;
    }
    let mut response = next.run(request).await;
    if let Some(a) = allow {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, a);
    }
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;

    fn app(bound: &str, hosts: &[&str], origins: &[&str]) -> Router {
        let policy = BrowserPolicy::new(
            bound.parse().unwrap(),
            &hosts.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &origins.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        Router::new()
            .route("/", get(|| async { "console" }))
            .route("/v1/sql", post(|| async { "ran" }))
            .route("/v1/logs/search", get(|| async { "found" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(policy),
                guard,
            ))
    }

    async fn status(app: &Router, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
        let mut r = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let response = app
            .clone()
            .oneshot(r.body(Body::empty()).unwrap())
            .await
            .unwrap();
        response.status().as_u16()
    }

    #[tokio::test]
    async fn loopback_refuses_rebinding_cross_origin_and_simple_bodies() {
        let app = app("127.0.0.1:7878", &[], &[]);
        let json = ("content-type", "application/json");
        // Local callers: curl, the CLI, the console itself.
        for host in [
            "127.0.0.1:7878",
            "localhost:7878",
            "[::1]:7878",
            "127.0.0.2",
        ] {
            assert_eq!(
                status(&app, "POST", "/v1/sql", &[("host", host), json]).await,
                200,
                "{host}"
            );
        }
        let same = [
            ("host", "127.0.0.1:7878"),
            ("origin", "http://127.0.0.1:7878"),
            json,
        ];
        assert_eq!(status(&app, "POST", "/v1/sql", &same).await, 200);
        // DNS rebinding: the attacker's name resolved to 127.0.0.1.
        let rebound = [("host", "evil.example:7878"), json];
        assert_eq!(status(&app, "POST", "/v1/sql", &rebound).await, 421);
        // Another site's page.
        let foreign = [
            ("host", "127.0.0.1:7878"),
            ("origin", "https://evil.example"),
            json,
        ];
        assert_eq!(status(&app, "POST", "/v1/sql", &foreign).await, 403);
        // An <img> of another site: no Origin, but Sec-Fetch-Site.
        let img = [
            ("host", "127.0.0.1:7878"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "no-cors"),
        ];
        assert_eq!(status(&app, "GET", "/v1/logs/search", &img).await, 403);
        // A link from another site to the console still opens it.
        let link = [
            ("host", "127.0.0.1:7878"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
        ];
        assert_eq!(status(&app, "GET", "/", &link).await, 200);
        // A body a form or text/plain fetch sends without a preflight.
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let h = [("host", "127.0.0.1:7878"), ("content-type", ct)];
            assert_eq!(status(&app, "POST", "/v1/sql", &h).await, 415, "{ct}");
        }
    }

    #[tokio::test]
    async fn configured_hosts_and_cors_origins() {
        let app = app(
            "0.0.0.0:7878",
            &["sluice.example"],
            &["https://grafana.example"],
        );
        let json = ("content-type", "application/json");
        assert_eq!(
            status(&app, "POST", "/v1/sql", &[("host", "sluice.example"), json]).await,
            200
        );
        assert_eq!(
            status(&app, "POST", "/v1/sql", &[("host", "other.example"), json]).await,
            421
        );
        let grafana = [
            ("host", "sluice.example"),
            ("origin", "https://grafana.example"),
            ("access-control-request-method", "POST"),
        ];
        assert_eq!(status(&app, "OPTIONS", "/v1/sql", &grafana).await, 204);
        assert_eq!(
            status(&app, "POST", "/v1/sql", &[grafana[0], grafana[1], json]).await,
            200
        );
        // No allowed hosts configured on a non-loopback address: any Host.
        let open = super::tests::app("0.0.0.0:7878", &[], &[]);
        assert_eq!(
            status(&open, "POST", "/v1/sql", &[("host", "anything"), json]).await,
            200
        );
    }
}
