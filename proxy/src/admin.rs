//! The admin API's HTTP server: serves [`crate::api::router`] on a listener with bounds on what one client can
//! hold, so a slow or hostile client cannot pin the server's connections, memory or registry.
//!
//! - Request headers must arrive within [`Limits::header_timeout`] of the connection being ready for them
//!   (this also ends a keep-alive connection idle that long); a half-sent request is closed, not held.
//! - A body must arrive whole within [`Limits::body_timeout`] (408) and be at most [`Limits::max_body`] bytes
//!   (413); it is read before the router sees the request, so a handler (and the registry lock) never waits on
//!   a client's socket.
//! - At most [`Limits::max_connections`] connections are served at once; past that, new connections are
//!   closed at once (logged), and the ones being served are unaffected.
//!
//! Toxiproxy's own server reads with a 15 s timeout and serves idle connections for 60 s; these bounds are
//! tighter, and no Toxiproxy client waits between the parts of one request.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::server::Server;

/// How long shutdown waits for requests in flight before it closes their connections.
const DRAIN: Duration = Duration::from_secs(5);

/// What one admin client may hold. [`Limits::default`] is what `chaos proxy` serves with.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time for a request's headers to arrive (and for a keep-alive connection to send its next request).
    pub header_timeout: Duration,
    /// Time for a request's whole body to arrive once its headers have.
    pub body_timeout: Duration,
    /// Largest request body, in bytes (a `/populate` of 1,000 proxies is about 100 KB).
    pub max_body: usize,
    /// Connections served at once; more are closed as they are accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_body: 1 << 20,
            max_connections: 512,
        }
    }
}

/// Serves the admin API on `listener` within `limits` until `shutdown` completes, then lets requests in flight
/// finish (at most 5 s) and stops every proxy.
pub async fn serve_with(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    let router = crate::api::router(server.clone());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut last_refusal: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, usually: back off a little rather than spin.
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Logged at most once a second: a flood must not become a flood of log lines too.
            if last_refusal.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                tracing::warn!(%peer, max = limits.max_connections,
                    "admin API: too many connections, closing new ones");
                last_refusal = Some(tokio::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        tracker.spawn(serve_connection(stream, peer, router.clone(), limits, stop.clone(), permit));
    }
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("admin API: requests still running after the drain timeout; stopping anyway");
    }
    server.shutdown().await;
    Ok(())
}

/// Serves one connection until it ends or `stop` asks it to finish its request in flight; holds its slot.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let service = service_fn(move |request| handle(router.clone(), request, limits));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "admin API connection ended");
    }
}

/// Reads the body within the limits, then hands the request to the router.
async fn handle(
    router: Router,
    request: Request<Incoming>,
    limits: Limits,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let collected =
        tokio::time::timeout(limits.body_timeout, Limited::new(body, limits.max_body).collect()).await;
    let bytes = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            let text = format!("request body: expected at most {} bytes, found more", limits.max_body);
            return Ok(refusal(StatusCode::PAYLOAD_TOO_LARGE, &text));
        }
        Ok(Err(e)) => return Ok(refusal(StatusCode::BAD_REQUEST, &format!("request body: {e}"))),
        Err(_) => {
            let text = format!("request body: not received within {} s", limits.body_timeout.as_secs_f64());
            return Ok(refusal(StatusCode::REQUEST_TIMEOUT, &text));
        }
    };
    router.oneshot(Request::from_parts(parts, Body::from(bytes))).await
}

/// A refusal in Toxiproxy's error shape, closing the connection (the rest of its request is not read).
fn refusal(status: StatusCode, text: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": text, "status": status.as_u16() });
    let mut response = Response::new(Body::from(format!("{body}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Ok(id) = HeaderValue::from_str(&crate::api::request_id()) {
        headers.insert(crate::api::REQUEST_ID, id);
    }
    response
}
