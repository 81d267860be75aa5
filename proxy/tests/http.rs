//! HTTP mode with real sockets, real clients and real servers: hyper HTTP/1.1 and HTTP/2 (prior knowledge)
//! clients through an `http` proxy to a hyper upstream, and a tonic gRPC client to a tonic service. Covers
//! pass-through (method, path, headers, bodies streamed both ways, trailers), the L7 toxics (`http_abort`,
//! `http_delay`, `grpc_abort`) with their match, percentage, `max_active` and TTL, L4 toxics underneath, bad
//! input from clients, upstreams and the API, and the golden signals in the stats and `/metrics`.
//!
//! Timing assertions are lower bounds only: a loaded machine may be slower, never faster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use chaos_proxy::client::{Client as AdminClient, HttpStats, NewToxic, ProxyUpdate, Stats, ToxicUpdate};
use chaos_proxy::model::{ProxyInput, ProxyUpdate as ModelUpdate};
use chaos_proxy::{Server, ServerConfig};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Generous bound for anything that should happen "at once", sized for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(10);

type TestBody = UnsyncBoxBody<Bytes, Infallible>;
type HttpClient = Client<HttpConnector, TestBody>;

// === the proxy server ===

/// A proxy server with its admin API on a real loopback port and a typed client for it.
struct Harness {
    server: Server,
    admin: AdminClient,
}

impl Harness {
    async fn new(seed: u64) -> Harness {
        let server = Server::new(ServerConfig { seed: Some(seed), metrics: true });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(chaos_proxy::serve(listener, server.clone(), std::future::pending()));
        Harness { server, admin: AdminClient::new(&url).unwrap() }
    }

    /// Creates proxy `name` speaking `protocol` to `upstream`; returns its address.
    async fn proxy(&self, name: &str, protocol: &str, upstream: SocketAddr) -> SocketAddr {
        let view = self
            .server
            .create_proxy(ProxyInput {
                name: Some(name.into()),
                listen: Some("127.0.0.1:0".into()),
                upstream: Some(upstream.to_string()),
                protocol: Some(protocol.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        view.listen.parse().unwrap()
    }

    async fn toxic(&self, proxy: &str, name: &str, kind: &str, attributes: Value) {
        let toxic = NewToxic {
            name: Some(name.into()),
            r#type: kind.into(),
            attributes: attributes.as_object().cloned().unwrap_or_default(),
            ..NewToxic::default()
        };
        self.admin.add_toxic(proxy, &toxic).await.unwrap();
    }

    async fn http_stats(&self, proxy: &str) -> HttpStats {
        self.admin.proxy_stats(proxy).await.unwrap().http.expect("an http proxy has http stats")
    }

    async fn metrics(&self) -> String {
        let base = self.admin.base_url().to_string();
        let (status, _, body) = send(&h1(), Method::GET, &format!("{base}/metrics"), &[], "").await;
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body.to_vec()).unwrap()
    }
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after [`DEADLINE`].
async fn wait_until(what: &str, cond: impl AsyncFnMut() -> bool) {
    chaos_test_support::wait::wait_until_async(what, DEADLINE, Duration::from_millis(10), cond).await;
}

// === the upstream ===

/// Requests the test upstream answered, to tell an injected answer from a forwarded one.
#[derive(Clone, Default)]
struct Served(Arc<AtomicU64>);

/// A hyper upstream (HTTP/1.1 and HTTP/2): echoes the request body back frame by frame (request trailers
/// included) and describes the request in headers: `x-method`, `x-path`, `x-version`, `x-echo-<name>` for every
/// `x-*` request header and `x-te`. `/status/NNN` answers NNN; `/slow?ms=N` answers after N ms; a request with
/// `x-want-trailers` gets the trailer `x-upstream-trailer: yes` after the body.
async fn upstream() -> (SocketAddr, Served) {
    let served = Served::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| echo(request, count.clone()));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    (addr, served)
}

async fn echo(request: Request<Incoming>, served: Served) -> Result<Response<EchoBody>, Infallible> {
    served.0.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/".to_string(), ToString::to_string);
    let mut response = Response::builder()
        .header("x-method", parts.method.as_str())
        .header("x-path", &path)
        .header("x-version", format!("{:?}", parts.version));
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("x-") {
            response = response.header(format!("x-echo-{name}"), value);
        }
    }
    if let Some(te) = parts.headers.get("te") {
        response = response.header("x-te", te);
    }
    if let Some(code) = parts.uri.path().strip_prefix("/status/") {
        response = response.status(code.parse::<u16>().unwrap());
    }
    if let Some(ms) = parts.uri.query().and_then(|q| q.strip_prefix("ms=")) {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    let trailers = parts.headers.contains_key("x-want-trailers").then(|| {
        let mut t = HeaderMap::new();
        t.insert("x-upstream-trailer", HeaderValue::from_static("yes"));
        t
    });
    Ok(response.body(EchoBody { request: body, trailers }).unwrap())
}

/// The request's frames as the response body, then the upstream's own trailers if asked for.
struct EchoBody {
    request: Incoming,
    trailers: Option<HeaderMap>,
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match Pin::new(&mut self.request).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t)))),
            // A stream ends with at most one trailers frame: the request's and ours go out together.
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                let mut trailers = frame.into_trailers().unwrap_or_default();
                trailers.extend(self.trailers.take().unwrap_or_default());
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            other => other,
        }
    }
}

/// An upstream that answers every connection with bytes that are not HTTP, then closes.
async fn garbage_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01 not http at all\r\n\r\n").await;
            });
        }
    });
    addr
}

/// A loopback address nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// === the clients ===

fn h1() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2() -> HttpClient {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

fn full(body: &str) -> TestBody {
    Full::new(Bytes::copy_from_slice(body.as_bytes())).boxed_unsync()
}

/// Sends one request and collects the answer.
async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = timeout(DEADLINE, client.request(request.body(full(body)).unwrap()))
        .await
        .expect("an answer within the deadline")
        .expect("an answer");
    let (head, body) = response.into_parts();
    let body = timeout(DEADLINE, body.collect()).await.expect("a whole body").expect("a body").to_bytes();
    (head.status, head.headers, body)
}

/// A request body fed frame by frame from the test, so it can prove nothing waits for the whole body.
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

fn fault_marks(headers: &HeaderMap) -> Vec<&str> {
    headers.get_all("x-chaos-fault").iter().map(|v| v.to_str().unwrap()).collect()
}

/// Streams two chunks through `client` to the echo upstream, sending the second only after the first came back,
/// then checks what the upstream saw. Ends the request body with `trailers` when given. Over HTTP/1.1 it also
/// sends a hop-by-hop header (`x-hop`, listed in `Connection`), which HTTP/2 has no way to say.
async fn stream_through(
    client: &HttpClient,
    url: &str,
    trailers: Option<HeaderMap>,
) -> (HeaderMap, Option<HeaderMap>) {
    let (tx, rx) = mpsc::channel(4);
    let mut request =
        Request::post(url).header("x-custom", "kept").header("te", "trailers").header("x-want-trailers", "1");
    if trailers.is_none() {
        request = request.header("connection", "x-hop").header("x-hop", "dropped");
    }
    let request = request.body(ChannelBody(rx).boxed_unsync()).unwrap();
    let (response, ()) = tokio::join!(async { timeout(DEADLINE, client.request(request)).await }, async {
        tx.send(Frame::data(Bytes::from_static(b"first"))).await.unwrap();
    });
    let response = response.expect("response head within the deadline").expect("a response");
    assert_eq!(response.status(), StatusCode::OK);
    let (head, mut body) = response.into_parts();
    let next_data = async |body: &mut Incoming| loop {
        let frame =
            timeout(DEADLINE, body.frame()).await.expect("a frame in time").expect("a frame").unwrap();
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            return data;
        }
    };
    // The first chunk comes back while the request body is still open: nothing buffers whole bodies.
    assert_eq!(next_data(&mut body).await, "first");
    tx.send(Frame::data(Bytes::from_static(b"second"))).await.unwrap();
    assert_eq!(next_data(&mut body).await, "second");
    if let Some(trailers) = trailers {
        tx.send(Frame::trailers(trailers)).await.unwrap();
    }
    drop(tx);
    let rest = timeout(DEADLINE, body.collect()).await.expect("the end in time").expect("the rest");
    let trailers = rest.trailers().cloned();
    assert!(rest.to_bytes().is_empty());
    (head.headers, trailers)
}

// === pass-through ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_passes_method_path_headers_and_streams_bodies_both_ways() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    let (headers, _) = stream_through(&h1(), &format!("http://{via}/echo/path?q=1"), None).await;
    assert_eq!(header(&headers, "x-method"), Some("POST"));
    assert_eq!(header(&headers, "x-path"), Some("/echo/path?q=1"));
    assert_eq!(header(&headers, "x-version"), Some("HTTP/1.1"));
    assert_eq!(header(&headers, "x-echo-x-custom"), Some("kept"));
    assert_eq!(header(&headers, "x-echo-x-hop"), None, "headers listed in Connection stop at the proxy");
    assert_eq!(header(&headers, "x-te"), Some("trailers"));
    assert!(fault_marks(&headers).is_empty());
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS] {
        let (status, headers, _) = send(&h1(), method.clone(), &format!("http://{via}/m"), &[], "").await;
        assert_eq!((status, header(&headers, "x-method")), (StatusCode::OK, Some(method.as_str())));
    }
    let (status, headers, body) = send(&h1(), Method::HEAD, &format!("http://{via}/h"), &[], "").await;
    assert_eq!((status, header(&headers, "x-method"), body.len()), (StatusCode::OK, Some("HEAD"), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_goes_upstream_as_http2_with_trailers_both_ways() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    let mut request_trailers = HeaderMap::new();
    request_trailers.insert("x-request-trailer", HeaderValue::from_static("sent"));
    let (headers, trailers) =
        stream_through(&h2(), &format!("http://{via}/h2"), Some(request_trailers)).await;
    assert_eq!(header(&headers, "x-version"), Some("HTTP/2.0"));
    assert_eq!(header(&headers, "x-echo-x-custom"), Some("kept"));
    assert_eq!(
        header(&headers, "x-te"),
        Some("trailers"),
        "te: trailers reaches the upstream (gRPC needs it)"
    );
    let trailers = trailers.expect("trailers reach the client");
    assert_eq!(header(&trailers, "x-request-trailer"), Some("sent"), "request trailers reach the upstream");
    assert_eq!(header(&trailers, "x-upstream-trailer"), Some("yes"), "response trailers reach the client");
}

// === L7 toxics ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_abort_answers_only_the_requests_it_matches_and_marks_them() {
    let harness = Harness::new(1).await;
    let (upstream, served) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    let attributes = json!({"status": 503, "method": "post", "path_prefix": "/checkout", "body": "injected\n",
                            "response_headers": {"retry-after": "5"}});
    harness.toxic("p", "checkout_down", "http_abort", attributes).await;
    for client in [h1(), h2()] {
        let before = served.0.load(Ordering::SeqCst);
        let (status, headers, body) =
            send(&client, Method::POST, &format!("http://{via}/checkout/1"), &[], "x").await;
        assert_eq!((status, body.as_ref()), (StatusCode::SERVICE_UNAVAILABLE, b"injected\n".as_ref()));
        assert_eq!(fault_marks(&headers), ["checkout_down"]);
        assert_eq!(header(&headers, "retry-after"), Some("5"));
        assert_eq!(served.0.load(Ordering::SeqCst), before, "an aborted request never reaches the upstream");
        for (method, path) in
            [(Method::GET, "/checkout"), (Method::POST, "/cart"), (Method::PUT, "/checkout")]
        {
            let (status, headers, _) =
                send(&client, method.clone(), &format!("http://{via}{path}"), &[], "").await;
            assert_eq!(status, StatusCode::OK, "{method} {path} passes");
            assert!(fault_marks(&headers).is_empty(), "{method} {path} is not marked");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_apply_to_the_next_request_on_the_same_connection() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    let client = h1();
    let url = format!("http://{via}/x");
    assert_eq!(send(&client, Method::GET, &url, &[], "").await.0, StatusCode::OK);
    harness.toxic("p", "abort", "http_abort", json!({"status": 503})).await;
    assert_eq!(send(&client, Method::GET, &url, &[], "").await.0, StatusCode::SERVICE_UNAVAILABLE);
    let update = ToxicUpdate {
        attributes: json!({"status": 500}).as_object().cloned().unwrap(),
        ..Default::default()
    };
    harness.admin.update_toxic("p", "abort", &update).await.unwrap();
    assert_eq!(send(&client, Method::GET, &url, &[], "").await.0, StatusCode::INTERNAL_SERVER_ERROR);
    harness.admin.remove_toxic("p", "abort").await.unwrap();
    assert_eq!(send(&client, Method::GET, &url, &[], "").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_delay_holds_matching_requests_at_least_its_delay() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    harness.toxic("p", "slow_pay", "http_delay", json!({"delay": 200, "path_prefix": "/charge"})).await;
    for client in [h1(), h2()] {
        let started = Instant::now();
        let (status, headers, body) =
            send(&client, Method::POST, &format!("http://{via}/charge"), &[], "pay").await;
        assert!(started.elapsed() >= Duration::from_millis(200), "delayed only {:?}", started.elapsed());
        assert_eq!((status, body.as_ref()), (StatusCode::OK, b"pay".as_ref()), "then forwarded");
        assert_eq!(fault_marks(&headers), ["slow_pay"]);
        let (_, headers, _) = send(&client, Method::POST, &format!("http://{via}/other"), &[], "").await;
        assert!(fault_marks(&headers).is_empty());
    }
}

/// Which of `n` sequential requests a 30% abort hit, on a fresh server seeded with `seed`.
async fn abort_sequence(seed: u64, n: usize) -> Vec<bool> {
    let harness = Harness::new(seed).await;
    let (upstream, _) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    harness.toxic("p", "some", "http_abort", json!({"status": 503, "percentage": 30})).await;
    let client = h1();
    let mut hits = Vec::with_capacity(n);
    for _ in 0..n {
        hits.push(send(&client, Method::GET, &format!("http://{via}/"), &[], "").await.0 != StatusCode::OK);
    }
    let stats = harness.http_stats("p").await;
    let counted = stats.faults_injected.iter().find(|f| f.name == "some").map_or(0, |f| f.requests);
    assert_eq!(counted as usize, hits.iter().filter(|h| **h).count(), "the stats count each injected abort");
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentage_faults_a_binomial_share_and_the_seed_replays_it() {
    let n = 1000;
    let first = abort_sequence(42, n).await;
    let hits = first.iter().filter(|h| **h).count() as f64;
    // Binomial(1000, 0.3): mean 300, standard deviation 14.5; five of them either way.
    let (mean, sd) = (n as f64 * 0.3, (n as f64 * 0.3 * 0.7).sqrt());
    assert!((hits - mean).abs() <= 5.0 * sd, "{hits} of {n} requests aborted at 30%");
    assert_eq!(abort_sequence(42, n).await, first, "the same --seed faults the same requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_lets_matching_requests_pass_while_the_cap_is_reached() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    harness.toxic("p", "held", "http_delay", json!({"delay": 2500, "max_active": 2})).await;
    let held: Vec<_> = (0..2)
        .map(|i| {
            let url = format!("http://{via}/held/{i}");
            tokio::spawn(async move { send(&h1(), Method::GET, &url, &[], "").await })
        })
        .collect();
    wait_until("two requests are being delayed", async || {
        harness.http_stats("p").await.faults_injected.first().is_some_and(|f| f.requests == 2)
    })
    .await;
    for i in 0..3 {
        let (status, headers, _) = send(&h1(), Method::GET, &format!("http://{via}/free/{i}"), &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(fault_marks(&headers).is_empty(), "request {i} passes unfaulted while 2 delays are active");
    }
    assert_eq!(harness.http_stats("p").await.faults_injected[0].requests, 2);
    for task in held {
        let (status, headers, _) = task.await.unwrap();
        assert_eq!((status, fault_marks(&headers)), (StatusCode::OK, vec!["held"]));
    }
    // Both slots are free again once their responses ended.
    harness.admin.update_toxic("p", "held", &delay_of(1)).await.unwrap();
    let (_, headers, _) = send(&h1(), Method::GET, &format!("http://{via}/again"), &[], "").await;
    assert_eq!(fault_marks(&headers), ["held"]);
}

fn delay_of(ms: u64) -> ToxicUpdate {
    ToxicUpdate { attributes: json!({"delay": ms}).as_object().cloned().unwrap(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l7_toxic_with_a_ttl_removes_itself() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    let toxic = NewToxic {
        name: Some("brief".into()),
        r#type: "grpc_abort".into(),
        attributes: json!({"code": "UNAVAILABLE"}).as_object().cloned().unwrap(),
        ttl: Some(1000),
        ..NewToxic::default()
    };
    let shown = harness.admin.add_toxic("p", &toxic).await.unwrap();
    assert_eq!((shown.ttl, &shown.attributes["code"]), (Some(1000), &json!("UNAVAILABLE")));
    let (status, headers, _) = send(&h1(), Method::GET, &format!("http://{via}/"), &[], "").await;
    assert_eq!((status, header(&headers, "grpc-status")), (StatusCode::OK, Some("14")));
    wait_until("the toxic expired", async || harness.admin.toxics("p").await.unwrap().is_empty()).await;
    let (_, headers, _) = send(&h1(), Method::GET, &format!("http://{via}/"), &[], "").await;
    assert_eq!(header(&headers, "grpc-status"), None, "requests pass once the toxic is gone");
}

// === L4 toxics underneath ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l4_latency_on_an_http_proxy_delays_responses() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    harness.toxic("p", "slow_link", "latency", json!({"latency": 300})).await;
    // A new connection takes the L4 path; the latency toxic delays the response bytes.
    let started = Instant::now();
    let (status, headers, body) = send(&h1(), Method::POST, &format!("http://{via}/l4"), &[], "bytes").await;
    assert!(started.elapsed() >= Duration::from_millis(300), "only {:?}", started.elapsed());
    assert_eq!((status, body.as_ref()), (StatusCode::OK, b"bytes".as_ref()));
    assert!(fault_marks(&headers).is_empty(), "L4 toxics do not mark responses");
    let stats = harness.admin.proxy_stats("p").await.unwrap();
    assert!(stats.downstream.sent_bytes > 0 && stats.upstream.received_bytes > 0, "{stats:?}");
    assert_eq!(stats.toxic_activations[0].name, "slow_link");
    harness.admin.remove_toxic("p", "slow_link").await.unwrap();
    let (status, _, _) = send(&h2(), Method::GET, &format!("http://{via}/direct"), &[], "").await;
    assert_eq!(status, StatusCode::OK, "without L4 toxics connections are served directly");
}

// === bad input ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_proxy_refuses_l7_toxics_with_a_reason() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    harness.proxy("t", "tcp", upstream).await;
    let before = harness.admin.get_json("/proxies").await.unwrap();
    for kind in ["http_abort", "http_delay", "grpc_abort"] {
        let toxic = NewToxic { name: Some("x".into()), r#type: kind.into(), ..NewToxic::default() };
        let err = harness.admin.add_toxic("t", &toxic).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{kind}: {err}");
        assert!(
            err.to_string().contains(r#"needs a proxy with "protocol": "http", found proxy t with "tcp""#),
            "{err}"
        );
    }
    assert_eq!(harness.admin.get_json("/proxies").await.unwrap(), before, "nothing changed");
    let proxy = harness.admin.proxy_json("t").await.unwrap();
    assert!(proxy.get("protocol").is_none(), "a tcp proxy renders exactly as in Toxiproxy: {proxy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_matches_codes_and_protocols_are_refused_with_reasons_and_change_nothing() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    harness.proxy("p", "http", upstream).await;
    harness.toxic("p", "kept", "http_abort", json!({"status": 503, "path_prefix": "/a"})).await;
    let before = harness.admin.get_json("/proxies").await.unwrap();
    let refused = [
        (
            "http_abort",
            json!({"status": 503, "path_regex": "(unclosed"}),
            "attribute path_regex: expected a regular expression, found \"(unclosed\"",
        ),
        (
            "http_abort",
            json!({"status": 700}),
            "attribute status: expected a final http status in 200..=599, found 700",
        ),
        (
            "http_abort",
            json!({"status": 503, "percentage": 101}),
            "attribute percentage: expected a number in 0..=100, found 101",
        ),
        (
            "http_abort",
            json!({"status": 503, "header_regex": {"x-a": "*"}}),
            "attribute header_regex: expected a regular expression",
        ),
        ("http_abort", json!({"body": "no status"}), "attribute status is required"),
        (
            "grpc_abort",
            json!({"code": 17}),
            "attribute code: expected a grpc status code in 0..=16 or its name, such as UNAVAILABLE, found 17",
        ),
        ("http_delay", json!({"delay": -5}), "attribute delay: expected milliseconds ≥ 0, found -5"),
        (
            "http_delay",
            json!({"delay": 5, "distribution": "cauchy"}),
            "attribute distribution: unknown variant",
        ),
    ];
    for (kind, attributes, reason) in refused {
        let toxic = NewToxic {
            name: Some("new".into()),
            r#type: kind.into(),
            attributes: attributes.as_object().cloned().unwrap(),
            ..NewToxic::default()
        };
        let err = harness.admin.add_toxic("p", &toxic).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{kind} {attributes}: {err}");
        assert!(
            err.to_string().starts_with(&format!("bad request body: {reason}")),
            "{kind} {attributes}: {err}"
        );
        let update =
            ToxicUpdate { attributes: attributes.as_object().cloned().unwrap(), ..Default::default() };
        if kind == "http_abort" && attributes.get("status").is_some() {
            let err = harness.admin.update_toxic("p", "kept", &update).await.unwrap_err();
            assert_eq!(err.status(), Some(400), "update {attributes}: {err}");
        }
    }
    let bad_proxies = [
        (
            json!({"name": "q", "upstream": "127.0.0.1:9", "protocol": "udp"}),
            "bad request body: protocol: expected \"tcp\" or \"http\", found \"udp\"",
        ),
        (
            json!({"name": "q", "upstream": "127.0.0.1:9", "latency_buckets_ms": [0]}),
            "bad request body: latency_buckets_ms: expected milliseconds above 0",
        ),
    ];
    let base = harness.admin.base_url().to_string();
    for (body, reason) in bad_proxies {
        let (status, _, answer) =
            send(&h1(), Method::POST, &format!("{base}/proxies"), &[], &body.to_string()).await;
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(answer["error"].as_str().unwrap().starts_with(reason), "{body}: {answer}");
    }
    let update = ProxyUpdate { protocol: Some("tcp".into()), ..ProxyUpdate::default() };
    let err = harness.admin.update_proxy("p", &update).await.unwrap_err();
    assert!(err.to_string().contains("has http toxics (remove them first)"), "{err}");
    let update = ProxyUpdate { latency_buckets_ms: Some(vec![-1.0]), ..ProxyUpdate::default() };
    assert_eq!(harness.admin.update_proxy("p", &update).await.unwrap_err().status(), Some(400));
    assert_eq!(harness.admin.get_json("/proxies").await.unwrap(), before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_bytes_get_a_400_or_a_close_and_the_proxy_keeps_serving() {
    let harness = Harness::new(1).await;
    let (upstream, served) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n",
        b"\x00\xff\x16\x03\x01\r\n\r\n",
    ] {
        let mut socket = TcpStream::connect(via).await.unwrap();
        socket.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        let _ = timeout(DEADLINE, socket.read_to_end(&mut answer))
            .await
            .expect("the proxy closes the connection");
        let text = String::from_utf8_lossy(&answer);
        assert!(answer.is_empty() || text.starts_with("HTTP/1.1 400"), "{garbage:?} got {text:?}");
    }
    assert_eq!(served.0.load(Ordering::SeqCst), 0, "nothing reached the upstream");
    let (status, _, _) = send(&h1(), Method::GET, &format!("http://{via}/still"), &[], "").await;
    assert_eq!(status, StatusCode::OK, "the proxy still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_answers_garbage_is_a_502() {
    let harness = Harness::new(1).await;
    let via = harness.proxy("p", "http", garbage_upstream().await).await;
    let (status, headers, body) = send(&h1(), Method::GET, &format!("http://{via}/"), &[], "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).starts_with("bad gateway: upstream 127.0.0.1:"), "{body:?}");
    assert!(fault_marks(&headers).is_empty(), "a real failure is not marked as injected");
    let stats = harness.http_stats("p").await;
    assert_eq!((stats.upstream_failures, stats.requests["GET"]["5xx"]), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_is_a_502_and_counted() {
    let harness = Harness::new(1).await;
    let via = harness.proxy("p", "http", closed_port().await).await;
    for client in [h1(), h2()] {
        let (status, _, body) = send(&client, Method::POST, &format!("http://{via}/"), &[], "lost").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(
            String::from_utf8_lossy(&body).starts_with("bad gateway: cannot connect to upstream"),
            "{body:?}"
        );
    }
    let stats: Stats = harness.admin.proxy_stats("p").await.unwrap();
    assert_eq!(stats.upstream_connect_failures, 2, "the TCP counter the engine reads counts them too");
    let http = stats.http.unwrap();
    assert_eq!((http.upstream_failures, http.requests["POST"]["5xx"], http.errors()), (2, 2, 2));
}

// === golden signals ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_signals_show_classes_latency_in_flight_and_faults_in_stats_and_metrics() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    let update = ProxyUpdate { latency_buckets_ms: Some(vec![800.0, 40.0]), ..ProxyUpdate::default() };
    let view = harness.admin.update_proxy("p", &update).await.unwrap();
    assert!(view.enabled);
    let shown = harness.admin.proxy_json("p").await.unwrap();
    assert_eq!((&shown["protocol"], &shown["latency_buckets_ms"]), (&json!("http"), &json!([40, 800])));
    harness.toxic("p", "fail", "http_abort", json!({"status": 503, "path_prefix": "/fail"})).await;
    let client = h1();
    let url = |path: &str| format!("http://{via}{path}");
    for _ in 0..3 {
        assert_eq!(send(&client, Method::GET, &url("/ok"), &[], "").await.0, StatusCode::OK);
    }
    assert_eq!(send(&client, Method::POST, &url("/status/404"), &[], "").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&client, Method::DELETE, &url("/status/500"), &[], "").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(send(&client, Method::GET, &url("/fail"), &[], "").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        send(&client, Method::from_bytes(b"PURGE").unwrap(), &url("/x"), &[], "").await.0,
        StatusCode::OK
    );
    // One request held by the upstream, to see it in flight.
    let slow = tokio::spawn(async move {
        send(&h1(), Method::GET, &format!("http://{via}/slow?ms=1500"), &[], "").await
    });
    wait_until("a request is in flight", async || harness.http_stats("p").await.in_flight == 1).await;
    let metrics = harness.metrics().await;
    assert!(metrics.contains("chaos_proxy_http_requests_in_flight{proxy=\"p\"} 1"), "{metrics}");
    assert_eq!(slow.await.unwrap().0, StatusCode::OK);

    let stats = harness.http_stats("p").await;
    assert_eq!(stats.requests_total, 8);
    assert_eq!(stats.requests["GET"], [("2xx".to_string(), 4), ("5xx".to_string(), 1)].into());
    assert_eq!(
        (stats.requests["POST"]["4xx"], stats.requests["DELETE"]["5xx"], stats.requests["OTHER"]["2xx"]),
        (1, 1, 1)
    );
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.errors(), 2);
    assert_eq!(stats.faults_injected.len(), 1);
    assert_eq!(
        (
            stats.faults_injected[0].name.as_str(),
            stats.faults_injected[0].r#type.as_str(),
            stats.faults_injected[0].requests
        ),
        ("fail", "http_abort", 1)
    );
    assert_eq!(stats.latency.count, 8);
    let at_800 = stats.within_ms(800.0).expect("the registered bound is a bucket");
    assert!(at_800 <= 7, "the held request took over 800 ms: {:?}", stats.latency);
    let buckets = &stats.latency.buckets;
    assert!(buckets.windows(2).all(|w| w[0].le_ms < w[1].le_ms && w[0].count <= w[1].count), "{buckets:?}");
    assert!(stats.within_ms(40.0).is_some() && stats.within_ms(1000.0).is_some());
    assert!(stats.latency.sum_ms >= 1500.0, "the held request alone took 1.5 s: {}", stats.latency.sum_ms);

    let metrics = harness.metrics().await;
    for line in [
        "chaos_proxy_http_requests_total{proxy=\"p\",method=\"GET\",status_class=\"2xx\"} 4",
        "chaos_proxy_http_requests_total{proxy=\"p\",method=\"POST\",status_class=\"4xx\"} 1",
        "chaos_proxy_http_requests_in_flight{proxy=\"p\"} 0",
        "chaos_proxy_http_upstream_failures_total{proxy=\"p\"} 0",
        "chaos_proxy_http_faults_injected_total{proxy=\"p\",toxic=\"fail\",type=\"http_abort\"} 1",
        "chaos_proxy_http_request_duration_seconds_bucket{proxy=\"p\",le=\"+Inf\"} 8",
        "chaos_proxy_http_request_duration_seconds_count{proxy=\"p\"} 8",
        "chaos_proxy_grpc_requests_total{proxy=\"p\",code=\"OK\"} 0",
        "toxiproxy_proxy_received_bytes_total{direction=\"upstream\"",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    // Client connections count as the proxy's connections (how many the pooled client opened is its business).
    let connections =
        metrics.lines().find_map(|l| l.strip_prefix("chaos_proxy_connections_total{proxy=\"p\"} "));
    assert!(connections.is_some_and(|n| n.parse::<u64>().unwrap() >= 2), "{metrics}");
    assert!(metrics.contains(&format!(
        "chaos_proxy_http_request_duration_seconds_bucket{{proxy=\"p\",le=\"0.8\"}} {at_800}"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only_servers_render_no_http_families_and_protocol_changes_restart() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    harness.proxy("t", "tcp", upstream).await;
    let metrics = harness.metrics().await;
    assert!(!metrics.contains("chaos_proxy_http"), "{metrics}");
    assert!(harness.admin.proxy_stats("t").await.unwrap().http.is_none());
    let stats = harness.admin.stats("t").await.unwrap();
    assert!(stats.get("http").is_none(), "tcp stats keep their shape: {stats}");
    // tcp → http restarts the proxy as an http one; the API shows the protocol from then on.
    let view = harness
        .server
        .update_proxy("t", ModelUpdate { protocol: Some("HTTP".into()), ..Default::default() })
        .await
        .unwrap();
    let shown = serde_json::to_value(&view).unwrap();
    let keys: Vec<&str> = shown.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["name", "listen", "upstream", "enabled", "protocol", "toxics"]);
    let via = view.listen.clone();
    let (status, _, _) = send(&h1(), Method::GET, &format!("http://{via}/now-http"), &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        harness
            .metrics()
            .await
            .contains("chaos_proxy_http_requests_total{proxy=\"t\",method=\"GET\",status_class=\"2xx\"} 1")
    );
    let view = harness
        .server
        .update_proxy("t", ModelUpdate { protocol: Some("tcp".into()), ..Default::default() })
        .await
        .unwrap();
    assert!(serde_json::to_value(&view).unwrap().get("protocol").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_files_create_http_proxies_with_l7_toxics() {
    let harness = Harness::new(1).await;
    let (upstream, _) = upstream().await;
    let dir = std::env::temp_dir().join(format!("chaos-http-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxies.yaml");
    let yaml = format!(
        "proxies:\n  - name: web\n    listen: 127.0.0.1:0\n    upstream: {upstream}\n    protocol: http\n    latency_buckets_ms: [250]\n    toxics:\n      - {{name: down, type: http_abort, attributes: {{status: 502, path_prefix: /api}}}}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    chaos_proxy::config::load(&harness.server, &path).await.unwrap();
    let via = harness.server.proxy("web").await.unwrap().listen;
    assert_eq!(
        send(&h1(), Method::GET, &format!("http://{via}/api/x"), &[], "").await.0,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(send(&h1(), Method::GET, &format!("http://{via}/web"), &[], "").await.0, StatusCode::OK);
    std::fs::remove_dir_all(&dir).unwrap();
}

// === gRPC with tonic ===

/// Messages as raw bytes: a hand-written codec, so no protobuf compiler is needed.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `/test.Echo/Say` answers its request; `/test.Echo/Fail` answers NOT_FOUND.
struct Say;

impl tonic::server::UnaryService<Bytes> for Say {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(request.into_inner())))
    }
}

struct Fail;

impl tonic::server::UnaryService<Bytes> for Fail {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, _request: tonic::Request<Bytes>) -> Self::Future {
        std::future::ready(Err(tonic::Status::not_found("no such thing")))
    }
}

/// A tonic gRPC service over hyper's HTTP/2 server.
async fn grpc_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let mut grpc = tonic::server::Grpc::new(RawCodec);
                    Ok::<_, Infallible>(match request.uri().path() {
                        "/test.Echo/Say" => grpc.unary(Say, request).await,
                        "/test.Echo/Fail" => grpc.unary(Fail, request).await,
                        _ => tonic::Status::unimplemented("no such method").into_http(),
                    })
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    addr
}

/// One unary call through a fresh tonic channel.
async fn call(
    addr: SocketAddr,
    method: &'static str,
    message: &'static [u8],
) -> Result<tonic::Response<Bytes>, tonic::Status> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(method);
    timeout(DEADLINE, grpc.unary(tonic::Request::new(Bytes::from_static(message)), path, RawCodec))
        .await
        .expect("an answer within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_abort_reaches_a_real_grpc_client_as_its_status() {
    let harness = Harness::new(1).await;
    let via = harness.proxy("g", "http", grpc_upstream().await).await;
    let reply = call(via, "/test.Echo/Say", b"hello").await.expect("a call passes without toxics");
    assert_eq!(reply.into_inner(), "hello");
    let attributes =
        json!({"code": "unavailable", "message": "injected: 100% down, é", "path_prefix": "/test.Echo/Say"});
    harness.toxic("g", "grpc_down", "grpc_abort", attributes).await;
    let status =
        call(via, "/test.Echo/Say", b"hello").await.expect_err("the call fails with the injected status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "injected: 100% down, é", "the client decodes the percent-encoded message");
    assert_eq!(status.metadata().get("x-chaos-fault").map(|v| v.to_str().unwrap()), Some("grpc_down"));
    let status = call(via, "/test.Echo/Fail", b"x").await.expect_err("a real error passes through");
    assert_eq!((status.code(), status.message()), (tonic::Code::NotFound, "no such thing"));
    assert!(status.metadata().get("x-chaos-fault").is_none());
    harness.admin.remove_toxic("g", "grpc_down").await.unwrap();
    assert_eq!(call(via, "/test.Echo/Say", b"again").await.unwrap().into_inner(), "again");

    let stats = harness.http_stats("g").await;
    assert_eq!(
        stats.grpc,
        [("NOT_FOUND".to_string(), 1), ("OK".to_string(), 2), ("UNAVAILABLE".to_string(), 1)].into()
    );
    assert!(stats.requests.is_empty(), "gRPC requests are counted by code, not by HTTP class");
    assert_eq!(stats.errors(), 2);
    let metrics = harness.metrics().await;
    assert!(
        metrics.contains("chaos_proxy_grpc_requests_total{proxy=\"g\",code=\"UNAVAILABLE\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_abort_is_a_trailers_only_http2_response() {
    let harness = Harness::new(1).await;
    let (upstream, served) = upstream().await;
    let via = harness.proxy("g", "http", upstream).await;
    harness.toxic("g", "deny", "grpc_abort", json!({"code": 7, "message": "nope"})).await;
    let headers = [("content-type", "application/grpc"), ("te", "trailers")];
    let (status, headers, body) =
        send(&h2(), Method::POST, &format!("http://{via}/pkg.Svc/M"), &headers, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), Some("application/grpc"));
    assert_eq!(
        (header(&headers, "grpc-status"), header(&headers, "grpc-message")),
        (Some("7"), Some("nope"))
    );
    assert_eq!(fault_marks(&headers), ["deny"]);
    assert!(body.is_empty());
    assert_eq!(served.0.load(Ordering::SeqCst), 0);
    let stats = harness.http_stats("g").await;
    assert_eq!(stats.grpc["PERMISSION_DENIED"], 1);
}

// === per-request records ===

/// Issue 12 item 15: `GET /proxies/{name}/requests?since=N` lists completed requests one by one with how long
/// ago each started and whether it failed, from a cursor; a bad cursor is a 400 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_listed_one_by_one_from_a_cursor() {
    let harness = Harness::new(1).await;
    let (upstream, _served) = upstream().await;
    let via = harness.proxy("p", "http", upstream).await;
    harness.toxic("p", "down", "http_abort", json!({"status": 503, "path_prefix": "/fail"})).await;
    let started = std::time::Instant::now();
    for path in ["/ok", "/fail", "/ok"] {
        send(&h1(), Method::GET, &format!("http://{via}{path}"), &[], "").await;
    }
    let page = harness.admin.proxy_requests("p", 0).await.unwrap();
    let failed: Vec<bool> = page.requests.iter().map(|r| r.failed).collect();
    assert_eq!((page.next, page.lost, page.more, failed), (3, 0, false, vec![false, true, false]));
    let since_start = u64::try_from(started.elapsed().as_micros()).unwrap();
    for r in &page.requests {
        assert!(r.started_us_ago <= since_start && r.started_us_ago >= r.latency_us, "{r:?}");
    }
    assert!(page.requests[0].started_us_ago >= page.requests[2].started_us_ago, "oldest first");
    let rest = harness.admin.proxy_requests("p", 2).await.unwrap();
    assert_eq!((rest.next, rest.requests.len(), rest.requests[0].seq), (3, 1, 2));
    let base = harness.admin.base_url().to_string();
    let (status, _, body) =
        send(&h1(), Method::GET, &format!("{base}/proxies/p/requests?since=x"), &[], "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("since: expected a request number"), "{body:?}");
    let (status, _, _) = send(&h1(), Method::GET, &format!("{base}/proxies/nope/requests"), &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
