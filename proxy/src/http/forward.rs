//! One request through an `http` proxy: decide its faults, hold it for its delays, answer it (an injected
//! abort) or forward it to the upstream with the pooled client and stream the answer back.
//!
//! Forwarding keeps the hop-by-hop rules of RFC 9110 §7.6.1: `Connection` and every header it lists,
//! `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding` (hyper frames bodies itself) and `Upgrade` stop here,
//! both ways; `TE` goes on only as `trailers` (gRPC needs it). Trailers pass through as frames. A request that
//! came in over HTTP/2 goes out over HTTP/2 with prior knowledge (what gRPC over h2c speaks), any other over
//! HTTP/1.1; upgrades (WebSocket) and `CONNECT` are not proxied.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::debug;

use super::Plane;
use super::body::{ProxyBody, Source, Tracker};
use super::rules::{self, Action, grpc_percent_encode};
use super::signals::MethodClass;
use crate::shared::ProxyShared;

/// The response header that marks what the proxy injected, one value per fault applied to the request.
pub(crate) const FAULT_HEADER: &str = "x-chaos-fault";

/// Serves one request (hyper's service function for an `http` proxy's connections).
pub(crate) async fn handle(
    request: Request<Incoming>,
    plane: Arc<Plane>,
    shared: Arc<ProxyShared>,
    pinned: Arc<Pinned>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let grpc = is_grpc(&parts.headers);
    let mut tracker = Tracker::start(&shared.stats, started, MethodClass::of(&parts.method), grpc);
    let number = shared.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Cloned out at once: the watch guard must not be held across an await.
    let rules = shared.rules.borrow().clone();
    let decision = if rules.is_empty() {
        rules::Decision::default()
    } else {
        rules::decide(&rules, &parts, shared.seed, number)
    };
    let marks: Vec<HeaderValue> = decision.faults.iter().filter_map(|f| fault_mark(&f.name)).collect();
    for fault in &decision.faults {
        shared.stats.http.fault_injected(&fault.name, fault.type_name);
        let (toxic, kind, path) = (&fault.name, fault.type_name, parts.uri.path());
        debug!(proxy = %shared.name, %toxic, kind, path, "injected");
    }
    tracker.hold(decision.faults);
    if !decision.delay.is_zero() {
        // A client that goes away meanwhile drops this future, and the tracker records it as abandoned.
        tokio::time::sleep(decision.delay).await;
    }
    let (mut head, source) = match decision.abort {
        Some(action) => injected(action),
        None if parts.method == Method::CONNECT => {
            made(StatusCode::NOT_IMPLEMENTED, "connect is not proxied\n")
        }
        None => match forward(&plane, &pinned, parts, body).await {
            Ok(response) => {
                let (mut head, body) = response.into_parts();
                strip_hop_by_hop(&mut head.headers);
                (head, Source::Upstream(body))
            }
            Err(failure) => {
                shared.stats.http.upstream_failed();
                if failure.connect {
                    shared.stats.upstream_failed();
                }
                let (upstream, error) = (&pinned.destination.label, &failure.reason);
                debug!(proxy = %shared.name, %upstream, %error, "upstream failed");
                made(StatusCode::BAD_GATEWAY, &format!("bad gateway: {}\n", failure.reason))
            }
        },
    };
    for mark in marks {
        head.headers.append(FAULT_HEADER, mark);
    }
    tracker.responded(head.status, &head.headers);
    Ok(Response::from_parts(head, ProxyBody::new(source, tracker)))
}

/// Whether a request is gRPC (`application/grpc`, `application/grpc+proto`, …; not gRPC-Web, whose status
/// travels in the body).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with("application/grpc") && !ct.starts_with("application/grpc-web")
    })
}

/// The `x-chaos-fault` value for a toxic: its name, percent-encoded where a header value cannot hold it.
fn fault_mark(name: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(name).or_else(|_| HeaderValue::from_str(&grpc_percent_encode(name))).ok()
}

/// The answer of an injected abort.
fn injected(action: Action) -> (http::response::Parts, Source) {
    match action {
        Action::Abort { status, body, headers } => {
            let text = !body.is_empty();
            let (mut head, source) = parts_with(status, body);
            for (name, value) in headers {
                head.headers.append(name, value);
            }
            if text && !head.headers.contains_key(CONTENT_TYPE) {
                head.headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            }
            (head, source)
        }
        Action::GrpcAbort { code, message } => {
            // Trailers-only: the status rides in the headers of a response with no body at all, which hyper
            // sends as one HEADERS frame with END_STREAM, as gRPC servers do for an immediate error.
            let (mut head, source) = parts_with(StatusCode::OK, Bytes::new());
            head.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            head.headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
            if let Some(message) = message {
                head.headers.insert("grpc-message", message);
            }
            (head, source)
        }
        // Delays never end up here; forwarding is their answer.
        Action::Delay(_) => made(StatusCode::INTERNAL_SERVER_ERROR, "unexpected delay action\n"),
    }
}

fn made(status: StatusCode, text: &str) -> (http::response::Parts, Source) {
    let (mut head, source) = parts_with(status, Bytes::copy_from_slice(text.as_bytes()));
    head.headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    (head, source)
}

fn parts_with(status: StatusCode, body: Bytes) -> (http::response::Parts, Source) {
    let (mut head, ()) = Response::new(()).into_parts();
    head.status = status;
    let data = if body.is_empty() { None } else { Some(body) };
    (head, Source::Made(data))
}

/// Why a request could not be forwarded.
struct Failure {
    /// No connection to the upstream could be made (also counted as an upstream connect failure).
    connect: bool,
    reason: String,
}

/// Where the requests of one client connection go, decided when it was accepted.
pub(crate) struct Destination {
    /// What messages call the upstream: as configured, or an intercepted connection's original destination.
    pub label: Arc<str>,
    /// The upstream as a URI authority, or why no request of this connection can be forwarded (answered 502).
    pub authority: Result<Authority, String>,
    /// An intercepted connection's original destination: dialed from a marked socket, never resolved.
    pub original: Option<SocketAddr>,
}

/// The upstream side of one client connection: its destination and its HTTP/1.1 connection. HTTP/1 requests
/// on a connection come one after the other, so each client connection gets its own upstream connection,
/// dialed at its first request and redialed when the upstream closes it: no pool checkout per request (the
/// pooled client serves HTTP/2).
pub(crate) struct Pinned {
    destination: Destination,
    sender: tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Incoming>>>,
}

impl Pinned {
    pub fn new(destination: Destination) -> Pinned {
        Pinned { destination, sender: tokio::sync::Mutex::new(None) }
    }
}

async fn forward(
    plane: &Plane,
    pinned: &Pinned,
    mut parts: http::request::Parts,
    body: Incoming,
) -> Result<Response<Incoming>, Failure> {
    let authority = match &pinned.destination.authority {
        Ok(authority) => authority.clone(),
        Err(reason) => return Err(Failure { connect: true, reason: reason.clone() }),
    };
    let upstream = &pinned.destination.label;
    let h2 = parts.version == Version::HTTP_2;
    parts.uri = upstream_uri(&parts.uri, authority);
    parts.version = if h2 { Version::HTTP_2 } else { Version::HTTP_11 };
    strip_hop_by_hop(&mut parts.headers);
    if h2 {
        // The upstream request's :authority is the upstream; a Host header would contradict it.
        parts.headers.remove(HOST);
    }
    if !h2 {
        // Origin form on a connection of our own; the client's Host header goes along as it was.
        parts.uri =
            Uri::from(parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
        return forward_pinned(pinned, Request::from_parts(parts, body)).await;
    }
    let request = Request::from_parts(parts, body);
    let client = &plane.h2;
    client.request(request).await.map_err(|e| {
        let connect = e.is_connect();
        let reason = if connect {
            format!("cannot connect to upstream {upstream}")
        } else {
            format!("upstream {upstream} sent no valid response")
        };
        debug!(error = ?e, "upstream request failed");
        Failure { connect, reason }
    })
}

/// Sends an HTTP/1.1 request on the client connection's own upstream connection, (re)dialing it first when
/// there is none or the upstream has closed it.
async fn forward_pinned(pinned: &Pinned, request: Request<Incoming>) -> Result<Response<Incoming>, Failure> {
    let upstream = &pinned.destination.label;
    let mut slot = pinned.sender.lock().await;
    let usable = match slot.as_mut() {
        Some(sender) => sender.ready().await.is_ok(),
        None => false,
    };
    if !usable {
        *slot = Some(dial_http1(&pinned.destination).await?);
    }
    let Some(sender) = slot.as_mut() else {
        return Err(Failure { connect: true, reason: format!("cannot connect to upstream {upstream}") });
    };
    sender.send_request(request).await.map_err(|e| {
        debug!(error = ?e, "upstream request failed");
        // A connection that failed mid-request is not reused.
        *slot = None;
        Failure { connect: false, reason: format!("upstream {upstream} sent no valid response") }
    })
}

async fn dial_http1(
    destination: &Destination,
) -> Result<hyper::client::conn::http1::SendRequest<Incoming>, Failure> {
    let upstream = &destination.label;
    let refused = |detail: String| {
        debug!(%upstream, error = %detail, "upstream dial failed");
        Failure { connect: true, reason: format!("cannot connect to upstream {upstream}") }
    };
    let dial = async {
        match destination.original {
            Some(addr) => crate::intercept::connect_marked(addr).await,
            None => crate::intercept::dial(upstream).await,
        }
    };
    let stream = tokio::time::timeout(super::CONNECT_TIMEOUT, dial)
        .await
        .map_err(|_| refused("timed out".into()))?
        .map_err(|e| refused(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| refused(e.to_string()))?;
    // Drives the connection; it ends when the sender is dropped (the client connection is gone) or the
    // upstream closes.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// `http://<upstream><path and query>`: the pooled client dials the URI's authority.
fn upstream_uri(uri: &Uri, authority: Authority) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query =
        Some(uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
    // Every part is already valid on its own; the fallback only satisfies the type.
    Uri::from_parts(parts).unwrap_or_default()
}

/// Removes the headers that belong to one hop (RFC 9110 §7.6.1); `TE` stays only as `trailers`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    let trailers = headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers")));
    headers.remove(TE);
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_stop_here_and_te_trailers_goes_on() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "close"),
            ("te", "gzip, trailers;q=1"),
            ("x-end-to-end", "kept"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<(&str, &str)> =
            headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(left, [("x-end-to-end", "kept"), ("te", "trailers")]);
        let mut headers = HeaderMap::new();
        headers.insert(TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn grpc_is_told_by_content_type() {
        let with = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            is_grpc(&h)
        };
        assert!(with("application/grpc") && with("application/grpc+proto") && with("Application/GRPC"));
        assert!(!with("application/grpc-web") && !with("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn upstream_uris_keep_path_and_query() {
        let authority: Authority = "127.0.0.1:9".parse().unwrap();
        let uri: Uri = "http://proxy:1/a/b?c=d".parse().unwrap();
        assert_eq!(upstream_uri(&uri, authority.clone()).to_string(), "http://127.0.0.1:9/a/b?c=d");
        let uri: Uri = "/x".parse().unwrap();
        assert_eq!(upstream_uri(&uri, authority).to_string(), "http://127.0.0.1:9/x");
    }
}
