//! One proxy's data plane: the listener's accept loop and each accepted connection: for a `tcp` proxy, dial
//! the upstream, then run the two links ([`run_links`]); for an `http` proxy, hand the connection to
//! `crate::http`. The registry in `server.rs` owns the configuration; this module only runs what it is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::{Error, listen_error};
use crate::http::Plane;
use crate::link::run_links;
use crate::model::Protocol;
use crate::shared::ProxyShared;

/// How long a client waits for the upstream dial before the proxy gives up and closes it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Listen backlog; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 65_535;

/// How a running proxy serves its connections, fixed for as long as it runs.
pub(crate) struct Route<'a> {
    pub upstream: &'a str,
    pub half_close: bool,
    pub protocol: Protocol,
}

/// What each connection of a running proxy is given.
struct Plan {
    upstream: Arc<str>,
    half_close: bool,
    /// Set for `http` proxies: their request forwarder.
    http: Option<Arc<Plane>>,
}

/// A bound, accepting proxy.
pub(crate) struct Running {
    pub bound: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Binds `listen` and starts accepting. Errors carry the OS text, as Toxiproxy reports them (HTTP 500).
    pub async fn start(
        listen: &str,
        route: Route<'_>,
        shared: Arc<ProxyShared>,
        parent: &CancellationToken,
    ) -> Result<Running, Error> {
        let listener = bind(listen).await?;
        let bound = listener.local_addr().map_err(|e| listen_error(listen, &e))?;
        let stop = parent.child_token();
        let upstream: Arc<str> = route.upstream.into();
        let http = (route.protocol == Protocol::Http).then(|| Arc::new(Plane::new(upstream.clone())));
        let plan = Arc::new(Plan { upstream, half_close: route.half_close, http });
        let task = tokio::spawn(accept_loop(listener, plan, shared, stop.clone()));
        Ok(Running { bound, stop, task })
    }

    /// Closes the listener and every live connection. Waits only for the accept loop, which never blocks on
    /// the data path, so the port is free when this returns.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Resolves a listen address, preferring IPv4 (clients split `listen` on `:` to connect), and binds it.
/// An empty address binds all interfaces on a random port, as Toxiproxy does.
pub(crate) async fn resolve_listen(listen: &str) -> Result<Vec<SocketAddr>, Error> {
    let listen = if listen.is_empty() { "[::]:0" } else { listen };
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host(listen).await.map_err(|e| listen_error(listen, &e))?.collect();
    let (mut v4, v6): (Vec<_>, Vec<_>) = addrs.into_iter().partition(SocketAddr::is_ipv4);
    v4.extend(v6);
    Ok(v4)
}

async fn bind(listen: &str) -> Result<TcpListener, Error> {
    let mut last = None;
    let mut addrs = resolve_listen(listen).await?;
    if listen.is_empty() {
        // Hosts without IPv6 fall back to all IPv4 interfaces.
        addrs.push(SocketAddr::from(([0, 0, 0, 0], 0)));
    }
    for addr in addrs {
        match listen_on(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(listen_error(&addr.to_string(), &e)),
        }
    }
    Err(last.unwrap_or_else(|| Error::Listen(format!("listen tcp {listen}: no addresses"))))
}

/// Binds with the kernel's maximum backlog (as Go does), so a burst of connects is not dropped and retried
/// a second later while the accept loop catches up.
fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn accept_loop(
    listener: TcpListener,
    plan: Arc<Plan>,
    shared: Arc<ProxyShared>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    debug!(proxy = %shared.name, %peer, "accepted");
                    spawn_connection(client, &plan, shared.clone(), stop.child_token());
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    warn!(proxy = %shared.name, error = %e, "accept failed");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            }
        }
    }
}

/// Serves one accepted connection in its own task: bytes and links for `tcp`, hyper for `http`.
fn spawn_connection(client: TcpStream, plan: &Plan, shared: Arc<ProxyShared>, close: CancellationToken) {
    match &plan.http {
        Some(http) => {
            tokio::spawn(crate::http::serve_connection(client, http.clone(), shared, plan.half_close, close));
        }
        None => {
            tokio::spawn(connection(client, plan.upstream.clone(), plan.half_close, shared, close));
        }
    }
}

async fn connection(
    client: TcpStream,
    upstream: Arc<str>,
    half_close: bool,
    shared: Arc<ProxyShared>,
    close: CancellationToken,
) {
    let started = Instant::now();
    let dialed = tokio::select! {
        _ = close.cancelled() => return,
        dialed = tokio::time::timeout(CONNECT_TIMEOUT, crate::intercept::dial_for(&client, &upstream)) => dialed,
    };
    let server = match dialed {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => {
            shared.stats.upstream_failed();
            debug!(proxy = %shared.name, %upstream, error = %e, "upstream dial failed; closing client");
            return;
        }
        Err(_) => {
            shared.stats.upstream_failed();
            debug!(proxy = %shared.name, %upstream, "upstream dial timed out; closing client");
            return;
        }
    };
    // Go (and so Toxiproxy) sets TCP_NODELAY on every connection; small writes must not wait for Nagle.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    shared.stats.connection_opened(started.elapsed());
    run_links(client, server, half_close, shared.clone(), close).await;
    shared.stats.connection_closed();
}
