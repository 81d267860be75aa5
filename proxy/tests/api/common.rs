//! Helpers for the admin API conformance tests: an in-process client for `chaos_proxy::api::router`, the expected
//! Toxiproxy wire shapes, TCP upstreams and clients on port 0, and waiting on a condition with a deadline.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use chaos_proxy::{Server, ServerConfig};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tower::ServiceExt;

/// Generous bound for anything that should happen "at once", sized for a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// An upstream that is never dialled: Toxiproxy neither resolves nor dials an upstream when a proxy is created, only
/// when a client connects, so API-only tests can name any address.
pub const UNDIALLED: &str = "127.0.0.1:9";

/// The content type Toxiproxy sets on every successful JSON answer.
pub const JSON: &str = "application/json";

/// The content type Go's `http.Error` forces on error answers (§4).
pub const TEXT: &str = "text/plain; charset=utf-8";

// === impl Api ===

/// One server and its admin router, called in-process with `oneshot`: no socket for the API itself.
pub struct Api {
    router: Router,
}

impl Api {
    pub fn new() -> Api {
        Api::with_config(ServerConfig::default())
    }

    pub fn with_config(config: ServerConfig) -> Api {
        Api { router: chaos_proxy::api::router(Server::new(config)) }
    }

    /// A server holding proxy `p` (listening on a fresh loopback port, upstream never dialled) with a downstream
    /// latency toxic `t` (latency 100) and an upstream latency toxic `u`: the state the route and error tables run
    /// against.
    pub async fn with_fixture() -> Api {
        let api = Api::new();
        api.create_proxy("p", UNDIALLED).await;
        api.add_toxic("p", json!({"name": "t", "type": "latency", "attributes": {"latency": 100}})).await;
        api.add_toxic("p", json!({"name": "u", "type": "latency", "stream": "upstream"})).await;
        api
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let what = format!("{} {}", request.method(), request.uri());
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("read response body").to_bytes();
        let body = String::from_utf8(bytes.to_vec()).expect("response body is UTF-8");
        Reply { what, status, headers, body }
    }

    /// Sends `body` as is, with no `Content-Type`: Toxiproxy never looks at it (§3).
    pub async fn call(&self, method: &str, path: &str, body: &str) -> Reply {
        let request = Request::builder().method(method).uri(path).body(Body::from(body.to_owned())).unwrap();
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.call("POST", path, body).await
    }

    pub async fn patch(&self, path: &str, body: &str) -> Reply {
        self.call("PATCH", path, body).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, "").await
    }

    /// Creates an enabled proxy on a fresh loopback port and returns the address it reports listening on.
    pub async fn create_proxy(&self, name: &str, upstream: impl Display) -> SocketAddr {
        let body = json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream.to_string()});
        let reply = self.post("/proxies", &body.to_string()).await;
        reply.assert_status(StatusCode::CREATED);
        listen_of(&reply.json())
    }

    /// Adds a toxic, asserting Toxiproxy's 200 (not 201), and returns it as JSON.
    pub async fn add_toxic(&self, proxy: &str, toxic: Value) -> Value {
        let reply = self.post(&format!("/proxies/{proxy}/toxics"), &toxic.to_string()).await;
        reply.assert_status(StatusCode::OK);
        reply.json()
    }

    /// Names of the toxics of `proxy`, in the order `GET /proxies/{proxy}/toxics` lists them.
    pub async fn toxic_names(&self, proxy: &str) -> Vec<String> {
        let reply = self.get(&format!("/proxies/{proxy}/toxics")).await;
        reply.assert_status(StatusCode::OK);
        let list = reply.json();
        let list = list.as_array().unwrap_or_else(|| panic!("toxics of {proxy} are not an array: {list}"));
        list.iter().map(|toxic| toxic["name"].as_str().expect("toxic name").to_owned()).collect()
    }
}

// === impl Reply ===

/// A collected response.
pub struct Reply {
    /// `METHOD /path` of the request, for assertion messages.
    pub what: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().expect("header value is ASCII"))
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("{}: body is not JSON ({err}): {:?}", self.what, self.body))
    }

    /// The body without the `"Logger":{}` that Toxiproxy leaks from an untagged Go field: §4 makes emitting it
    /// optional, so the shape comparisons accept both.
    pub fn canonical_body(&self) -> String {
        self.body.replace(r#","Logger":{}"#, "")
    }

    #[track_caller]
    pub fn assert_status(&self, status: StatusCode) -> &Reply {
        assert_eq!(self.status, status, "{}: unexpected status; body {:?}", self.what, self.body);
        self
    }

    #[track_caller]
    pub fn assert_header(&self, name: &str, value: &str) -> &Reply {
        assert_eq!(self.header(name), Some(value), "{}: header {name}", self.what);
        self
    }

    /// A success answer: `status`, `Content-Type: application/json` and exactly `expected` (key order included).
    #[track_caller]
    pub fn assert_json(&self, status: StatusCode, expected: &str) {
        self.assert_status(status).assert_header("content-type", JSON);
        assert_eq!(self.canonical_body(), expected, "{}: body", self.what);
    }

    /// A 204: no body at all.
    #[track_caller]
    pub fn assert_no_content(&self) {
        self.assert_status(StatusCode::NO_CONTENT);
        assert_eq!(self.body, "", "{}: a 204 has no body", self.what);
    }

    /// A plain-text answer (Go's `http.NotFound`, the browser guard): `status`, `text/plain; charset=utf-8` and
    /// exactly `body`. The `nosniff` header that `http.Error` adds is checked on its own in `routes`.
    #[track_caller]
    pub fn assert_text(&self, status: StatusCode, body: &str) {
        self.assert_status(status).assert_header("content-type", TEXT);
        assert_eq!(self.body, body, "{}: body", self.what);
    }

    /// An API error of §4/§5: exactly `{"error":"<message>","status":N}` + `\n`, sent through `http.Error`
    /// (hence `text/plain; charset=utf-8` and `X-Content-Type-Options: nosniff`).
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, message: &str) {
        self.assert_text(status, &format!("{}\n", error_json(message, status)));
        self.assert_header("x-content-type-options", "nosniff");
    }

    /// An API error whose message embeds a decoder or OS text we cannot match byte for byte: the shape and headers
    /// of [`Reply::assert_error`], with a message that starts with `prefix`. Returns the message.
    #[track_caller]
    pub fn assert_error_starting_with(&self, status: StatusCode, prefix: &str) -> String {
        self.assert_status(status)
            .assert_header("content-type", TEXT)
            .assert_header("x-content-type-options", "nosniff");
        let message = error_message(self, &format!(",\"status\":{}}}\n", status.as_u16()));
        assert!(
            message.starts_with(prefix),
            "{}: error {message:?} does not start with {prefix:?}",
            self.what
        );
        message
    }

    /// A bind failure (§5): 500 with the OS text, e.g. `listen tcp 127.0.0.1:26379: bind: address already in use`.
    #[track_caller]
    pub fn assert_bind_failure(&self) {
        let message = self.assert_error_starting_with(StatusCode::INTERNAL_SERVER_ERROR, "");
        assert!(
            message.to_lowercase().contains("address already in use"),
            "{}: error {message:?} does not carry the OS text",
            self.what
        );
    }
}

/// `{"error":"<message>","status":N}` with Toxiproxy's key order.
pub fn error_json(message: &str, status: StatusCode) -> String {
    json!({"error": message, "status": status.as_u16()}).to_string()
}

/// Checks the raw `{"error":"…"<suffix>` framing of an error body and returns the message.
#[track_caller]
fn error_message(reply: &Reply, suffix: &str) -> String {
    assert!(
        reply.body.starts_with(r#"{"error":""#),
        "{}: error body {:?} must start with \"error\"",
        reply.what,
        reply.body
    );
    assert!(
        reply.body.ends_with(suffix),
        "{}: error body {:?} must end with {suffix:?}",
        reply.what,
        reply.body
    );
    let value: Value = serde_json::from_str(&reply.body).expect("error body is JSON");
    value["error"].as_str().expect("error is a string").to_owned()
}

/// A populate failure (§4): `{"error":"…","status":N,"proxies":null}`. Toxiproxy writes this body itself rather
/// than through `http.Error`, so it is `application/json` with no trailing newline; that framing is checked last,
/// after the content. Returns the message.
#[track_caller]
pub fn assert_populate_failure(reply: &Reply, status: StatusCode) -> String {
    reply.assert_status(status);
    let value = reply.json();
    let message =
        value["error"].as_str().unwrap_or_else(|| panic!("{}: no error in {}", reply.what, reply.body));
    let expected = json!({"error": message, "status": status.as_u16(), "proxies": null});
    assert_eq!(value, expected, "{}: populate failure body", reply.what);
    reply.assert_header("content-type", JSON);
    assert_eq!(reply.body, expected.to_string(), "{}: populate failure framing", reply.what);
    message.to_owned()
}

// === expected shapes (§4) ===

/// A proxy exactly as Toxiproxy renders it (minus the optional `Logger`); `toxics` are already-rendered toxics.
pub fn proxy_json(
    name: &str,
    listen: impl Display,
    upstream: impl Display,
    enabled: bool,
    toxics: &[String],
) -> String {
    let toxics = toxics.join(",");
    format!(
        r#"{{"name":"{name}","listen":"{listen}","upstream":"{upstream}","enabled":{enabled},"toxics":[{toxics}]}}"#
    )
}

/// A toxic exactly as Toxiproxy renders it; `attributes` and `toxicity` are raw JSON text.
pub fn toxic_json(attributes: &str, name: &str, kind: &str, stream: &str, toxicity: &str) -> String {
    format!(
        r#"{{"attributes":{attributes},"name":"{name}","type":"{kind}","stream":"{stream}","toxicity":{toxicity}}}"#
    )
}

/// The `listen` address of a proxy answer, as a client would split it to connect.
#[track_caller]
pub fn listen_of(proxy: &Value) -> SocketAddr {
    let listen = proxy["listen"].as_str().unwrap_or_else(|| panic!("proxy without listen: {proxy}"));
    listen.parse().unwrap_or_else(|err| panic!("listen {listen:?} is not ip:port ({err})"))
}

// === TCP upstreams and clients ===

/// Starts an echo server on a fresh loopback port; it runs until the test's runtime stops.
pub async fn echo_upstream() -> SocketAddr {
    greeting_upstream(b"").await
}

/// Starts a server that sends `greeting` to every client it accepts and then echoes, so a test can tell which
/// upstream a proxied connection reached.
pub async fn greeting_upstream(greeting: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                if socket.write_all(greeting).await.is_ok() {
                    let (mut reader, mut writer) = socket.split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                }
            });
        }
    });
    addr
}

/// A listener holding a fresh loopback port, so that binding it again fails with "address already in use".
pub fn occupied_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy")
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    match timeout(DEADLINE, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => panic!("connect to {addr}: {err}"),
        Err(_) => panic!("connect to {addr} took over {DEADLINE:?}"),
    }
}

/// Reads exactly `len` bytes within [`DEADLINE`].
pub async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    match timeout(DEADLINE, stream.read_exact(&mut buf)).await {
        Ok(Ok(_)) => buf,
        Ok(Err(err)) => panic!("reading {len} bytes: {err}"),
        Err(_) => panic!("{len} bytes did not arrive within {DEADLINE:?}"),
    }
}

/// Sends `data` through an echoing path and checks it comes back unchanged.
pub async fn echo_roundtrip(stream: &mut TcpStream, data: &[u8]) {
    stream.write_all(data).await.expect("write to proxy");
    assert_eq!(read_exactly(stream, data.len()).await, data, "echo through the proxy");
}

/// The peer closed the connection (EOF or reset) within [`DEADLINE`], without sending anything more.
pub async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0; 64];
    match timeout(DEADLINE, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("expected the connection to close, got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(_) => panic!("the connection is still open after {DEADLINE:?}"),
    }
}

/// Nothing listens on `addr` any more: a connection attempt is refused.
pub async fn assert_refused(addr: SocketAddr) {
    match timeout(DEADLINE, TcpStream::connect(addr)).await {
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {}
        Ok(Err(err)) => panic!("connect to {addr}: expected refusal, got {err}"),
        Ok(Ok(_)) => panic!("{addr} still accepts connections"),
        Err(_) => panic!("connect to {addr} neither succeeded nor failed within {DEADLINE:?}"),
    }
}

/// Runs `check` on every row of a table, each in its own task, and fails once at the end listing every row that
/// failed with its panic message, so one run shows every deviation of a table instead of the first.
pub async fn check_rows<R, F, Fut>(rows: impl IntoIterator<Item = R>, check: F)
where
    R: std::fmt::Debug,
    F: Fn(R) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut failures = Vec::new();
    for row in rows {
        let what = format!("{row:?}");
        if let Err(err) = tokio::spawn(check(row)).await {
            let message = match err.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default(),
                Err(err) => err.to_string(),
            };
            failures.push(format!("{what}\n    {}", message.replace('\n', "\n    ")));
        }
    }
    assert!(failures.is_empty(), "{} row(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// Polls `cond` every 10 ms of tokio time until it holds; panics naming `what` after `deadline`. Works on paused
/// time too, where the sleeps advance the clock.
pub async fn wait_until(what: &str, deadline: Duration, cond: impl AsyncFnMut() -> bool) {
    chaos_test_support::wait::wait_until_async(what, deadline, Duration::from_millis(10), cond).await;
}
