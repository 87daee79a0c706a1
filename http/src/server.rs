//! The HTTP server every role runs: axum's router on hyper, with what
//! `axum::serve` leaves out — a limit on open connections and a deadline
//! for a request's headers — so a slow or idle client (slowloris) cannot
//! hold the server's sockets and memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How the server bounds its clients.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections open at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Binds `addr` and serves `router` in the background; returns the bound
/// address.
pub async fn spawn(
    addr: &str,
    router: Router,
    limits: ServerLimits,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener, router, limits));
    Ok(bound)
}

/// Serves `router` on a bound listener in the background.
pub fn spawn_on(listener: TcpListener, router: Router, limits: ServerLimits) {
    tokio::spawn(serve(listener, router, limits));
}

async fn serve(listener: TcpListener, router: Router, limits: ServerLimits) {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(
                %peer,
                limit = limits.max_connections,
                "connection refused: too many open connections"
            );
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            // HTTP/1.1 only: its header deadline runs from the connection's
            // first read, so a client that connects and sends nothing is cut
            // off too (the auto-detecting builder waits for a first byte).
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn slow_headers_are_cut_and_connections_limited() {
        let router = Router::new().route("/healthz", get(|| async { "ok" }));
        let limits = ServerLimits {
            max_connections: 2,
            header_timeout: Duration::from_millis(300),
        };
        let addr = spawn("127.0.0.1:0", router, limits).await.unwrap();

        // A client that never finishes its headers is cut off.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );

        // Two idle connections fill the server; a third is closed at once.
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut buf))
            .await
            .map(|r| r.unwrap_or(0))
            .unwrap_or(0);
        assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf));

        // Once the idle ones are cut off by the header deadline, it serves.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut d = tokio::net::TcpStream::connect(addr).await.unwrap();
        d.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        d.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
}
