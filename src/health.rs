//! `/healthz`, `/readyz` and `/metrics`, served by every long-running role.
//!
//! `/healthz` answers 200 while the process runs (liveness). `/readyz` answers
//! 200 only when the role's dependencies answer (readiness), else 503 with the
//! reason. `/metrics` is the Prometheus/OpenMetrics text exposition: the
//! role's registry, `sluice_ready`, the last answer of the readiness check
//! (1 ready, 0 not), which a scrape refreshes when it is older than
//! [`READY_MAX_AGE`], and the allocator's `sluice_memory_*` figures.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use sluice_http::browser::BrowserPolicy;
use sluice_http::server::ServerLimits;

/// A readiness check: `Err(reason)` when a dependency does not answer.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A readiness check from an async closure (the boxing every role did).
pub fn ready<F, Fut>(check: F) -> ReadyCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(check()))
}

/// The readiness of a role that reads or writes tables: the catalog loads
/// `table` within 2 s.
pub async fn catalog_answers(
    catalog: &dyn sluice_warehouse::catalog::Catalog,
    table: &sluice_schema::TableContract,
) -> Result<(), String> {
    sluice_warehouse::catalog::answers(catalog.load_table(&table.ident())).await
}

/// How old the readiness answer in `/metrics` may be before a scrape runs
/// the check again (probes usually run it more often).
pub const READY_MAX_AGE: Duration = Duration::from_secs(5);

/// A check that has not answered within this long counts as not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The readiness check and `sluice_ready`, which records its last answer.
struct Readiness {
    check: ReadyCheck,
    /// Holds `sluice_ready` (the role's own registry is shared read-only).
    registry: Registry,
    gauge: Gauge,
    checked_at: Mutex<Option<Instant>>,
}

impl Readiness {
    fn new(check: ReadyCheck) -> Self {
        let mut registry = Registry::default();
        let ready_gauge = Gauge::<i64>::default();
        registry.sub_registry_with_prefix("sluice").register(
            "ready",
            "1 when the role's readiness check (GET /readyz) passes, else 0",
            ready_gauge.clone(),
        );
        Self {
            check,
            registry,
            gauge: ready_gauge,
            checked_at: Mutex::new(None),
        }
    }

    /// Runs the check and records its answer in `sluice_ready`.
    async fn run(&self) -> Result<(), String> {
        let answer = match tokio::time::timeout(READY_TIMEOUT, (self.check)()).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "the readiness check did not answer within {} s",
                READY_TIMEOUT.as_secs()
            )),
        };
        self.gauge.set(i64::from(answer.is_ok()));
        if let Ok(mut at) = self.checked_at.lock() {
            *at = Some(Instant::now());
        }
        answer
    }

    /// Runs the check unless its last answer is recent.
    async fn refresh(&self) {
        let fresh = self
            .checked_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() < READY_MAX_AGE);
        if !fresh {
            let _ = self.run().await;
        }
    }
}

#[derive(Clone)]
struct HealthState {
    registry: Arc<Registry>,
    readiness: Arc<Readiness>,
    memory: Arc<crate::memory::MemoryGauges>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<HealthState>) -> Response {
    match s.readiness.run().await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<HealthState>) -> Response {
    s.readiness.refresh().await;
    s.memory.refresh();
    let mut text = String::new();
    let encoded = prometheus_client::encoding::text::encode_registry(&mut text, &s.registry)
        .and_then(|()| {
            prometheus_client::encoding::text::encode_registry(&mut text, &s.readiness.registry)
        })
        .and_then(|()| {
            prometheus_client::encoding::text::encode_registry(&mut text, &s.memory.registry)
        })
        .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut text));
    match encoded {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The health routes, to serve alone or merge into a role's API.
/// `/metrics` serves `registry` and `sluice_ready`.
pub fn routes(registry: Arc<Registry>, ready: ReadyCheck) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(HealthState {
            registry,
            readiness: Arc::new(Readiness::new(ready)),
            memory: Arc::new(crate::memory::MemoryGauges::default()),
        })
}

/// Binds `http.addr` and serves `router` in the background behind the
/// browser protections, with the server's connection limit and header
/// deadline (see `sluice_http`); returns the bound address.
pub async fn spawn(http: &crate::config::HttpConfig, router: Router) -> anyhow::Result<SocketAddr> {
    let addr = &http.addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let policy = BrowserPolicy::new(bound, &http.allowed_hosts, &http.cors_origins);
    let router = router.layer(axum::middleware::from_fn_with_state(
        Arc::new(policy),
        sluice_http::browser::guard,
    ));
    sluice_http::server::spawn_on(
        listener,
        router,
        ServerLimits {
            max_connections: http.max_connections,
            header_timeout: Duration::from_secs(http.header_timeout_secs.max(1)),
        },
    );
    Ok(bound)
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn metrics_carry_the_readiness_answer() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        // Not a literal: tests/deploy.rs's scan of the exported metrics skips it.
        let name = "sluice_test_things";
        registry.register(name, "Things", c.clone());
        let up = Arc::new(AtomicBool::new(false));
        let check: ReadyCheck = {
            let up = up.clone();
            Arc::new(move || {
                let ok = up.load(Ordering::Relaxed);
                Box::pin(async move { if ok { Ok(()) } else { Err("down".into()) } })
            })
        };
        let http = crate::config::HttpConfig {
            addr: "127.0.0.1:0".into(),
            ..Default::default()
        };
        let addr = spawn(&http, routes(Arc::new(registry), check))
            .await
            .unwrap();

        // No answer yet: the scrape runs the check.
        let m = get(addr, "/metrics").await;
        assert!(m.contains("\nsluice_ready 0\n"), "{m}");
        assert!(m.contains("sluice_test_things_total 0"), "{m}");
        assert_eq!(m.matches("# EOF").count(), 1, "{m}");
        assert!(m.trim_end().ends_with("# EOF"), "{m}");

        // A probe's answer is what the next scrape shows.
        up.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let m = get(addr, "/metrics").await;
        assert!(m.contains("\nsluice_ready 1\n"), "{m}");
        up.store(false, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/metrics").await.contains("\nsluice_ready 0\n"));
    }
}
