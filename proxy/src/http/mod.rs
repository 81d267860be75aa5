//! The data plane of `http` proxies: each accepted connection is served by hyper (HTTP/1.1, or HTTP/2 with
//! prior knowledge, which is how gRPC speaks over cleartext), and each request is forwarded to the upstream —
//! HTTP/1.1 on an upstream connection of the client connection's own, HTTP/2 by a pooled client — with the
//! proxy's L7 toxics applied per request and its golden signals recorded.
//!
//! ```text
//!  client ─TCP─▶ hyper server ─request─▶ forward::handle ─pinned h1 / pooled h2─▶ upstream
//!                                          │ rules (watch channel): delay, abort, grpc abort
//!                                          └ signals: classes, histogram, in flight, faults
//! ```
//!
//! L4 toxics keep their meaning underneath: when either of the proxy's L4 chains holds a toxic at accept time,
//! the connection is routed through the usual pair of links to a private loopback hop that hyper serves, so
//! `latency`, `bandwidth`, `timeout`, … act on the client's bytes exactly as on a TCP proxy (`upstream` = the
//! requests, `downstream` = the responses). Otherwise hyper serves the client socket directly (no extra hop).
//! The choice is made once per connection: a connection accepted before an L4 toxic was added keeps the
//! direct path, and one accepted while an L4 toxic existed keeps its hop (and so follows later L4 changes) for
//! its life. L7 toxics apply to every request of every connection from the next request on.
//!
//! Layout: `forward` (one request: faults, forwarding, hop-by-hop rules, 502s), `rules` (L7 toxics compiled and
//! decided per request), `body` (the response body that records the signals when it ends), `signals` (the
//! counters, histogram and their rendering).

pub(crate) mod body;
pub(crate) mod forward;
pub(crate) mod rules;
pub(crate) mod signals;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::intercept::ORIGINAL_DESTINATION;
use crate::link::run_links;
use crate::shared::ProxyShared;
use crate::stats::ProxyStats;
use crate::toxics::Direction;

/// How long a client may take to send a request head before hyper closes the connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the pooled client waits for a connection to the upstream.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// How long setting up the loopback hop of an L4-toxic connection may take.
const HOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection of one running `http` proxy shares: the upstream, the pooled clients and hyper's
/// server settings. Built when the proxy starts; dropping it closes the pooled upstream connections.
pub(crate) struct Plane {
    /// The upstream as configured, for messages.
    pub upstream: Arc<str>,
    /// The upstream as a URI authority; `None` when it is not `host:port` (every request then gets a 502).
    authority: Option<Authority>,
    /// The upstream is [`ORIGINAL_DESTINATION`]: each connection goes where its client meant to go.
    original: bool,
    /// HTTP/2 with prior knowledge, for requests that came in over HTTP/2 (gRPC).
    h2: Client<Dialer, Incoming>,
    server: auto::Builder<TokioExecutor>,
}

impl Plane {
    pub fn new(upstream: Arc<str>) -> Plane {
        let original = &*upstream == ORIGINAL_DESTINATION;
        // HTTP/1.1 requests go on a connection of their client connection's own (`forward::Pinned`).
        let client = |h2: bool| {
            let mut builder = Client::builder(TokioExecutor::new());
            builder.pool_idle_timeout(POOL_IDLE).pool_timer(TokioTimer::new()).http2_only(h2);
            builder.build(Dialer { original })
        };
        let mut server = auto::Builder::new(TokioExecutor::new());
        server.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        server.http2().timer(TokioTimer::new());
        let authority = if original { None } else { upstream.parse().ok() };
        Plane { authority, original, upstream, h2: client(true), server }
    }

    /// Where the requests of one accepted client connection go: the configured upstream, or for
    /// [`ORIGINAL_DESTINATION`] the address the client connected to before interception redirected it (read
    /// from the accepted socket, as a `tcp` proxy does).
    fn destination(&self, client: &TcpStream) -> forward::Destination {
        if !self.original {
            return forward::Destination {
                label: self.upstream.clone(),
                authority: self
                    .authority
                    .clone()
                    .ok_or_else(|| format!("upstream {:?} is not host:port", self.upstream)),
                original: None,
            };
        }
        let refused = |why: String| forward::Destination {
            label: self.upstream.clone(),
            authority: Err(why),
            original: None,
        };
        match crate::intercept::intercepted_destination(client) {
            Ok(Some(addr)) => match addr.to_string().parse::<Authority>() {
                Ok(authority) => forward::Destination {
                    label: format!("{addr} (original destination)").into(),
                    authority: Ok(authority),
                    original: Some(addr),
                },
                Err(e) => refused(format!("original destination {addr} is not an authority: {e}")),
            },
            Ok(None) => refused(
                "upstream \"original\" needs an intercepted connection, and this one was not redirected"
                    .into(),
            ),
            Err(e) => refused(format!("cannot read the original destination of the connection: {e}")),
        }
    }
}

/// Dials upstream connections for the pooled clients through [`crate::intercept::dial`], so that in a process
/// that intercepts ports they are marked like every other upstream dial (never redirected back to a proxy).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dialer {
    /// The URI's authority is an intercepted connection's original destination (an address): always dial it
    /// marked, as a `tcp` proxy does, so the interception never catches the proxy's own connection.
    original: bool,
}

impl tower::Service<http::Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let original = self.original;
        Box::pin(async move {
            let invalid =
                |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
            let host = uri.host().ok_or_else(|| invalid("the upstream URI has no host"))?;
            let port = uri.port_u16().unwrap_or(80);
            // An IPv6 literal keeps its brackets in the URI host; `lookup_host` wants them too.
            let address = format!("{host}:{port}");
            let dial = async {
                if original {
                    let addr: SocketAddr =
                        address.parse().map_err(|_| invalid("the original destination is not an address"))?;
                    crate::intercept::connect_marked(addr).await
                } else {
                    crate::intercept::dial(&address).await
                }
            };
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, dial).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting to the upstream")
            })??;
            let _ = stream.set_nodelay(true);
            Ok(TokioIo::new(stream))
        })
    }
}

/// Serves one accepted client connection until it ends or `close` is cancelled (proxy stopped).
pub(crate) async fn serve_connection(
    client: TcpStream,
    plane: Arc<Plane>,
    shared: Arc<ProxyShared>,
    half_close: bool,
    close: CancellationToken,
) {
    // Go (and so Toxiproxy) sets TCP_NODELAY on every connection; so do we.
    let _ = client.set_nodelay(true);
    shared.stats.client_connected();
    // Read before the client socket is handed to the links of an L4 hop: only it knows where it was going.
    let destination = plane.destination(&client);
    let l4 = Direction::ALL.iter().any(|d| !shared.chains[d.index()].borrow().is_empty());
    if l4 {
        match tokio::time::timeout(HOP_TIMEOUT, loopback_hop()).await {
            Ok(Ok((outer, inner))) => {
                let links = run_links(client, outer, half_close, shared.clone(), close.clone());
                let links = tokio::spawn(links);
                serve(inner, &plane, destination, &shared, &close).await;
                let _ = links.await;
            }
            Ok(Err(e)) => debug!(proxy = %shared.name, error = %e, "no loopback hop for l4 toxics; closing"),
            Err(_) => debug!(proxy = %shared.name, "loopback hop for l4 toxics timed out; closing"),
        }
    } else {
        let client = Counted { inner: client, stats: shared.stats.clone() };
        serve(client, &plane, destination, &shared, &close).await;
    }
    shared.stats.connection_closed();
}

async fn serve<I>(
    io: I,
    plane: &Arc<Plane>,
    destination: forward::Destination,
    shared: &Arc<ProxyShared>,
    close: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let (plane, shared) = (plane.clone(), shared.clone());
        let pinned = Arc::new(forward::Pinned::new(destination));
        service_fn(move |request| forward::handle(request, plane.clone(), shared.clone(), pinned.clone()))
    };
    let connection = plane.server.serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = close.cancelled() => {}
        served = connection => {
            // Malformed requests end here too: hyper has answered 400 (or closed) and the proxy goes on.
            if let Err(e) = served {
                debug!(proxy = %shared.name, error = %e, "http connection ended with an error");
            }
        }
    }
}

/// A connected pair of loopback sockets private to one connection: the links write to `outer`, hyper serves
/// `inner`. A stranger connecting to the short-lived listener first is turned away by its address.
async fn loopback_hop() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let outer = TcpStream::connect(listener.local_addr()?).await?;
    let ours = outer.local_addr()?;
    loop {
        let (inner, peer) = listener.accept().await?;
        if peer == ours {
            let _ = inner.set_nodelay(true);
            let _ = outer.set_nodelay(true);
            return Ok((outer, inner));
        }
    }
}

/// The client socket of a direct-path connection, counting its bytes as the links count a TCP proxy's:
/// reads are the upstream direction's received bytes, writes the downstream direction's sent bytes.
struct Counted {
    inner: TcpStream,
    stats: Arc<ProxyStats>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.stats.received(Direction::Upstream, n);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            self.stats.sent(Direction::Downstream, n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.stats.sent(Direction::Downstream, n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
