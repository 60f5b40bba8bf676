//! The HTTP server: connections accepted and served by hyper, with the
//! limits that keep a client from holding the process's file descriptors
//! (issue 15): a connection that sends no request head, or half of one, is
//! closed after [`HttpLimits::header_read_timeout`] (hyper's header-read
//! timer, which also runs while a keep-alive connection waits for its next
//! request, so it bounds idle connections too); a request body from which no
//! bytes arrive for [`HttpLimits::body_read_timeout`] fails (tower-http's
//! `RequestBodyTimeout`, reset at each chunk, so a slow but steady upload
//! goes on); at most [`HttpLimits::max_connections`] connections are open at
//! once — the next waits in the listen backlog until one closes.
//!
//! Shutdown stops accepting, lets every connection finish its request in
//! flight (hyper's graceful shutdown) and returns once all are closed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::{App, router};

/// Limits on clients' connections.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Longest wait for a request's head (a new connection's first, or a
    /// kept-alive connection's next).
    pub header_read_timeout: Duration,
    /// Longest wait for the next bytes of a request body.
    pub body_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Serve until `shutdown` completes, then finish in-flight requests.
pub async fn serve(
    app: App,
    listener: TcpListener,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .service(router(app));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: pause, then go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
