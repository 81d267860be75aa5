//! The load generator and the probes against real local servers on port 0: a tiny hyper server stands in
//! for the target, and for Prometheus with canned API answers. The fake Prometheus checks our reading of the
//! API's shapes (values as strings, NaN, empty results, error bodies); the end-to-end test against a real
//! Prometheus server lives with the binary's tests.

// Test helpers outside `#[test]` functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos_controller::experiment::model::{Load, Probe};
use chaos_controller::load::LoadGenerator;
use chaos_controller::probes::{self, ProbeResult};
use chaos_controller::signals::EventLog;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// === test servers ===

/// What the fake server answers: status, body, and how long it waits first.
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply { status, body: body.to_string(), delay: Duration::ZERO }
}

type Handler = dyn Fn(&http::Uri) -> Reply + Send + Sync;

struct Server {
    addr: SocketAddr,
    /// Requests received (counted on arrival, before any delay).
    arrivals: Arc<AtomicUsize>,
    /// The path and query of the last request.
    last_uri: Arc<Mutex<String>>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn server(handler: impl Fn(&http::Uri) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrivals = Arc::new(AtomicUsize::new(0));
    let last_uri = Arc::new(Mutex::new(String::new()));
    let handler: Arc<Handler> = Arc::new(handler);
    let (count, last) = (arrivals.clone(), last_uri.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (handler, count, last) = (handler.clone(), count.clone(), last.clone());
            let service = service_fn(move |request: Request<Incoming>| {
                count.fetch_add(1, Ordering::SeqCst);
                *last.lock().unwrap() = request.uri().to_string();
                let reply = handler(request.uri());
                async move {
                    tokio::time::sleep(reply.delay).await;
                    let mut response = Response::new(reply.body);
                    *response.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Server { addr, arrivals, last_uri }
}

/// An address where nothing listens (bound, then closed).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Waits until `done()` holds, polling, for at most `limit`; returns how long it took.
async fn until(limit: Duration, done: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "condition not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

// === load ===

fn load(url: &str, rate: &str, timeout: Option<&str>) -> Load {
    let mut spec = json!({ "name": "shoppers", "http": { "url": url }, "rate": rate });
    if let Some(t) = timeout {
        spec["timeout"] = json!(t);
    }
    serde_json::from_value(spec).unwrap()
}

#[tokio::test]
async fn load_sends_rate_times_duration_requests_and_records_each() {
    let target = server(|_| reply(200, "ok")).await;
    let log = Arc::new(EventLog::default());
    let start = Instant::now();
    let handle = LoadGenerator::start(
        &load(&target.url("/"), "100/s", None),
        start,
        log.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // the measured window, not a synchronisation
    let totals = handle.stop().await;
    assert!((160..=240).contains(&totals.sent), "sent {} requests in 2 s at 100/s", totals.sent);
    assert_eq!(totals.ok, totals.sent);
    assert_eq!(totals.errors(), 0);
    assert_eq!(log.len() as u64, totals.sent);
    assert_eq!(target.arrivals.load(Ordering::SeqCst) as u64, totals.sent);
    let events = log.between(Duration::ZERO, Duration::from_secs(3));
    assert!(events.iter().all(|e| e.ok && e.at < Duration::from_millis(2100)));
}

#[tokio::test]
async fn load_counts_5xx_answers_as_errors() {
    let target = server(|_| reply(503, "unavailable")).await;
    let log = Arc::new(EventLog::default());
    let handle = LoadGenerator::start(
        &load(&target.url("/checkout"), "50/s", None),
        Instant::now(),
        log.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    until(Duration::from_secs(3), || log.len() >= 10).await;
    let totals = handle.stop().await;
    assert_eq!(totals.status_5xx, totals.sent);
    assert_eq!(totals.ok, 0);
    assert!(log.between(Duration::ZERO, Duration::from_secs(60)).iter().all(|e| !e.ok));
}

#[tokio::test]
async fn load_counts_refused_connections_as_errors() {
    let addr = closed_port().await;
    let log = Arc::new(EventLog::default());
    let cancel = CancellationToken::new();
    let handle = LoadGenerator::start(
        &load(&format!("http://{addr}/"), "50/s", None),
        Instant::now(),
        log.clone(),
        cancel,
    )
    .unwrap();
    until(Duration::from_secs(3), || log.len() >= 10).await;
    let totals = handle.stop().await;
    assert_eq!(totals.transport, totals.sent);
    assert!(log.between(Duration::ZERO, Duration::from_secs(60)).iter().all(|e| !e.ok));
}

#[tokio::test]
async fn load_counts_timeouts_as_errors() {
    let target = server(|_| Reply { delay: Duration::from_secs(2), ..reply(200, "late") }).await;
    let log = Arc::new(EventLog::default());
    let handle = LoadGenerator::start(
        &load(&target.url("/"), "20/s", Some("200ms")),
        Instant::now(),
        log.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    until(Duration::from_secs(3), || log.len() >= 3).await;
    let totals = handle.stop().await;
    assert_eq!(totals.timeouts, totals.sent);
    let events = log.between(Duration::ZERO, Duration::from_secs(60));
    assert!(events.iter().all(|e| !e.ok && e.latency >= Duration::from_millis(200)), "{events:?}");
}

#[tokio::test]
async fn load_latency_includes_the_server_delay() {
    let target = server(|_| Reply { delay: Duration::from_millis(100), ..reply(200, "ok") }).await;
    let log = Arc::new(EventLog::default());
    let handle = LoadGenerator::start(
        &load(&target.url("/"), "20/s", None),
        Instant::now(),
        log.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    until(Duration::from_secs(3), || log.len() >= 5).await;
    let totals = handle.stop().await;
    let events = log.between(Duration::ZERO, Duration::from_secs(60));
    assert_eq!(events.len() as u64, totals.sent);
    assert!(events.iter().all(|e| e.ok && e.latency >= Duration::from_millis(100)), "{events:?}");
}

#[tokio::test]
async fn load_is_open_loop_slow_answers_do_not_slow_the_sender() {
    // Each answer takes 300 ms; a closed-loop sender would manage ~3 requests per second per connection.
    let target = server(|_| Reply { delay: Duration::from_millis(300), ..reply(200, "ok") }).await;
    let log = Arc::new(EventLog::default());
    let handle = LoadGenerator::start(
        &load(&target.url("/"), "50/s", None),
        Instant::now(),
        log.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    // Request 50 is due at 0.98 s: the server must have seen 50 requests shortly after that.
    let took = until(Duration::from_secs(3), || target.arrivals.load(Ordering::SeqCst) >= 50).await;
    assert!(took < Duration::from_millis(1400), "50 requests took {took:?} to arrive at 50/s");
    let totals = handle.stop().await;
    assert_eq!(totals.ok, totals.sent);
    let events = log.between(Duration::ZERO, Duration::from_secs(60));
    assert!(events.iter().all(|e| e.latency >= Duration::from_millis(300)));
}

#[tokio::test]
async fn cancelling_the_run_stops_the_load() {
    let target = server(|_| reply(200, "ok")).await;
    let log = Arc::new(EventLog::default());
    let cancel = CancellationToken::new();
    let handle = LoadGenerator::start(
        &load(&target.url("/"), "200/s", None),
        Instant::now(),
        log.clone(),
        cancel.clone(),
    )
    .unwrap();
    until(Duration::from_secs(3), || log.len() >= 5).await;
    cancel.cancel();
    let totals = handle.stop().await;
    let after = target.arrivals.load(Ordering::SeqCst) as u64;
    assert_eq!(after, totals.sent);
    assert!(totals.sent < 200, "sent {} after cancel", totals.sent);
}

// === probes ===

fn probe(spec: serde_json::Value) -> Probe {
    serde_json::from_value(spec).unwrap()
}

async fn run(spec: serde_json::Value) -> ProbeResult {
    probes::run(&probe(spec)).await
}

fn assert_detail(result: &ProbeResult, ok: bool, text: &str) {
    assert_eq!(result.ok, ok, "{result:?}");
    assert!(result.detail.contains(text), "expected {text:?} in {:?}", result.detail);
}

/// A target with the routes the probes need.
async fn target() -> Server {
    server(|uri| match uri.path() {
        "/health" => reply(200, "ok"),
        "/down" => reply(503, "down"),
        "/slow" => Reply { delay: Duration::from_millis(300), ..reply(200, "slow ok") },
        _ => reply(404, "not found"),
    })
    .await
}

#[tokio::test]
async fn http_probe_passes_on_the_expected_answer() {
    let t = target().await;
    let r =
        run(json!({"name": "health", "http": {"url": t.url("/health"), "status": 200, "body_contains": "ok",
        "max_latency": "2s"}}))
        .await;
    assert_detail(&r, true, "status 200 in");
    assert_eq!(r.name, "health");
    assert_detail(&run(json!({"name": "h", "http": {"url": t.url("/health")}})).await, true, "GET http://");
}

#[tokio::test]
async fn http_probe_fails_with_what_it_expected_and_found() {
    let t = target().await;
    let cases = [
        (json!({"url": t.url("/down")}), "expected status 200..=399, got 503 after"),
        (json!({"url": t.url("/health"), "status": 204}), "expected status 204, got 200"),
        (json!({"url": t.url("/missing")}), "got 404"),
        (
            json!({"url": t.url("/health"), "body_contains": "pong"}),
            r#"expected the body to contain "pong", got 2 bytes: "ok""#,
        ),
        (json!({"url": t.url("/slow"), "max_latency": "50ms"}), "expected an answer within 50 ms, took"),
        (json!({"url": t.url("/slow"), "timeout": "100ms"}), "no answer within 100 ms"),
        (json!({"url": format!("http://{}/", closed_port().await)}), "cannot reach http://127.0.0.1:"),
        (json!({"url": "https://example.com/"}), "https is not supported"),
    ];
    for (spec, text) in cases {
        assert_detail(&run(json!({"name": "h", "http": spec})).await, false, text);
    }
}

#[tokio::test]
async fn tcp_probe_connects_or_says_why_not() {
    let t = target().await;
    assert_detail(
        &run(json!({"name": "t", "tcp": {"address": t.addr.to_string()}})).await,
        true,
        "connected to",
    );
    let closed = closed_port().await;
    let r = run(json!({"name": "t", "tcp": {"address": closed.to_string(), "timeout": "1s"}})).await;
    assert_detail(&r, false, &format!("expected a connection to {closed}, got: "));
    assert_detail(&r, false, "refused");
}

#[tokio::test]
async fn command_probe_checks_exit_code_and_output() {
    let sh = |script: &str| json!(["sh", "-c", script]);
    let pass = [
        json!({"run": ["true"]}),
        json!({"run": sh("echo hello; exit 3"), "exit_code": 3, "output_contains": "hello"}),
        json!({"run": sh("echo on-stderr >&2"), "output_contains": "on-stderr"}),
    ];
    for spec in pass {
        assert_detail(&run(json!({"name": "c", "command": spec})).await, true, "exited");
    }
    let fail = [
        (json!({"run": sh("echo boom; exit 3")}), "expected exit code 0, got 3 after"),
        (json!({"run": sh("echo boom; exit 3")}), r#"output: "boom""#),
        (
            json!({"run": ["echo", "hi"], "output_contains": "bye"}),
            r#"expected the output to contain "bye", got 3 bytes: "hi""#,
        ),
        (json!({"run": ["/nonexistent/program"]}), r#"cannot run "/nonexistent/program""#),
        (json!({"run": []}), "empty `run` list"),
    ];
    for (spec, text) in fail {
        assert_detail(&run(json!({"name": "c", "command": spec})).await, false, text);
    }
}

#[tokio::test]
async fn command_probe_kills_a_command_at_its_timeout() {
    let started = Instant::now();
    let r = run(json!({"name": "c", "command": {"run": ["sleep", "30"], "timeout": "200ms"}})).await;
    assert_detail(&r, false, "`sleep 30` was still running after 200 ms; killed it");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Canned answers of the Prometheus HTTP API, keyed by the encoded query.
async fn fake_prometheus() -> Server {
    let vector = |value: &str| {
        json!({"status": "success", "data": {"resultType": "vector",
            "result": [{"metric": {}, "value": [1795606044.142, value]}]}})
        .to_string()
    };
    server(move |uri| match uri.query().unwrap_or_default() {
        "query=sum%28up%29" => reply(200, &vector("3")),
        "query=ratio" => reply(200, &vector("0.020000000000000004")),
        "query=missing" => reply(200, r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
        "query=idle" => reply(200, &vector("NaN")),
        "query=up" => reply(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"job":"a"},"value":[1,"1"]},{"metric":{"job":"b"},"value":[1,"0"]}]}}"#,
        ),
        "query=scalar%282%29" => {
            reply(200, r#"{"status":"success","data":{"resultType":"scalar","result":[1795606054.618,"2"]}}"#)
        }
        _ => reply(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:4: parse error: unclosed left parenthesis"}"#,
        ),
    })
    .await
}

fn prom(server: &Server, query: &str, op: &str, value: f64) -> serde_json::Value {
    json!({"name": "p", "prometheus": {"url": server.url("/"), "query": query, "op": op, "value": value}})
}

#[tokio::test]
async fn prometheus_probe_compares_the_one_value() {
    let p = fake_prometheus().await;
    assert_detail(&run(prom(&p, "sum(up)", ">=", 3.0)).await, true, "sum(up) = 3 (>= 3)");
    assert_eq!(*p.last_uri.lock().unwrap(), "/api/v1/query?query=sum%28up%29");
    assert_detail(&run(prom(&p, "ratio", "<", 0.05)).await, true, "ratio = 0.020000000000000004 (< 0.05)");
    assert_detail(&run(prom(&p, "ratio", "==", 0.02)).await, true, "(== 0.02)");
    assert_detail(&run(prom(&p, "scalar(2)", "==", 2.0)).await, true, "= 2");
    assert_detail(&run(prom(&p, "sum(up)", "<", 3.0)).await, false, "sum(up): expected a value < 3, got 3");
}

#[tokio::test]
async fn prometheus_probe_never_passes_on_no_data() {
    let p = fake_prometheus().await;
    let cases = [
        (prom(&p, "missing", "<", 1.0), "missing: query returned no data (empty result)"),
        (prom(&p, "idle", "<", 1.0), "idle: expected a value < 1, query returned NaN"),
        (prom(&p, "up", ">", 0.0), "up: query returned 2 series, expected one"),
        (prom(&p, "sum(up", ">", 0.0), "prometheus answered http 400: bad_data: invalid parameter"),
        (prom(&p, "sum(up)", "!=", 0.0), "unknown comparison \"!=\""),
    ];
    for (spec, text) in cases {
        assert_detail(&run(spec).await, false, text);
    }
    let down = json!({"name": "p", "prometheus": {"url": format!("http://{}", closed_port().await),
        "query": "up", "op": ">", "value": 0}});
    assert_detail(&run(down).await, false, "cannot reach");
}
