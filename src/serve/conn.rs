//! The accept loop: every connection is served by hyper with a deadline for its request
//! headers (which also closes a keep-alive connection that stays idle), at most
//! [`MAX_CONNECTIONS`] at once, and every request answered or given up within
//! [`REQUEST_TIMEOUT`] (a body sent slowly, a stuck handler). So idle or half-sent connections
//! cannot use up the process's file descriptors or keep the dashboard from answering.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

/// Most connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 512;
/// Time a client has to send a request's headers, from the connection's start or the end of
/// its previous request: an idle keep-alive connection is closed after it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a request (its body included) has to be answered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Middleware: answers 408 when a request takes longer than [`REQUEST_TIMEOUT`].
pub async fn request_timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long (its body was not sent in time)\n",
        )
            .into_response(),
    }
}

/// Serves `app` on `listener` until `stop` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = &mut stop => return,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: wait a moment instead of spinning.
                    tracing::warn!("dashboard: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // A client that goes away or times out is not an error worth a log line.
            let _ = conn.await;
        });
    }
}
