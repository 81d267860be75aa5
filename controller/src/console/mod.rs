//! The web console `chaos controller --ui-listen ADDR` serves: server-rendered HTML pages over the same state
//! the gRPC API reads (runs, agents, schedules, the audit log, the freeze flag), with freeze, unfreeze and halt
//! performed through the API's own code paths and audited under the logged-in principal.
//!
//! Layout: [`session`] (log in with an API token, the session cookie, CSRF tokens, the Origin check),
//! [`pages`] (the read-only pages), [`actions`] (confirmation pages and the POSTs that act), [`live`] (a run's
//! server-sent events for its live charts), [`html`] (escaping, the page frame, the static CSS and JS),
//! [`error`] (`ConsoleError`, the one conversion to an HTTP status), [`tls`] (the API's certificate and key for
//! this listener) and [`serve`] here (accept loop, limits, graceful shutdown).
//!
//! It has a listener of its own rather than sharing the gRPC one: the API is often bound to a routable address
//! for agents while people reach the console through loopback (an SSH tunnel) only; the agents' long-lived
//! HTTP/2 streams and the browsers' HTTP/1.1 connections get their own limits; and the gRPC server's graceful
//! shutdown (which halts runs while the agents are still reachable) stays as it is.
//!
//! It does not start runs or edit schedules (the CLI and the API do), and fetches nothing from the network: the
//! CSS and the little JavaScript it needs are served by itself.

pub mod actions;
pub mod error;
pub mod html;
pub mod live;
pub mod pages;
pub mod session;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::server::api::Api;

pub use error::ConsoleError;
pub use session::Sessions;

/// The largest request body the console reads (its forms hold a token, a reason and a CSRF token).
pub const MAX_BODY: usize = 16 * 1024;
/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 512;
/// A client has this long to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections get this long to finish after shutdown before they are dropped.
pub const DRAIN: Duration = Duration::from_secs(5);

/// What every page handler reads: the API's state and the console's sessions.
pub struct Console {
    pub api: Api,
    pub sessions: Sessions,
    /// Served over TLS: cookies are `Secure` and the expected Origin is `https://`.
    pub secure: bool,
    /// Ends server-sent event streams when the controller shuts down.
    pub shutdown: CancellationToken,
}

/// The console's routes over `console`'s state.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/report", get(pages::report))
        .route("/runs/{id}/events", get(live::events))
        .route("/runs/{id}/halt", get(actions::halt_run_confirm).post(actions::halt_run))
        .route("/agents", get(pages::agents))
        .route("/schedules", get(pages::schedules))
        .route("/audit", get(pages::audit))
        .route("/controls", get(actions::controls))
        .route("/controls/halt-all", get(actions::halt_all_confirm).post(actions::halt_all))
        .route("/controls/freeze", get(actions::freeze_confirm).post(actions::freeze))
        .route("/controls/unfreeze", get(actions::unfreeze_confirm).post(actions::unfreeze))
        .route("/static/console.css", get(html::css))
        .route("/static/live.js", get(html::js))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(console.clone(), session::same_origin))
        .layer(axum::middleware::map_response(html::security_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(console)
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`, then lets open requests finish for
/// up to [`DRAIN`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, tls = tls.is_some(), "web console listening");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off a little rather than spin.
                    tracing::warn!(error = %e, "web console: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (router, tls, stop) = (router.clone(), tls.clone(), shutdown.clone());
        tracker.spawn(async move {
            match tls {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => connection(TokioIo::new(stream), router, stop, peer).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "web console: TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "web console: TLS handshake timed out"),
                    }
                }
                None => connection(TokioIo::new(stream), router, stop, peer).await,
            }
            drop(permit);
        });
    }
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("web console: connections still open after the drain; dropping them");
    }
}

/// One connection, HTTP/1.1 or HTTP/2, closed gracefully at `shutdown`.
async fn connection<I>(io: TokioIo<I>, router: Router, shutdown: CancellationToken, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(64 * 1024);
    builder.http2().max_concurrent_streams(64);
    let service = TowerToHyperService::new(router);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "web console: connection ended with an error");
    }
}
