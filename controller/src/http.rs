//! A small HTTP/1.1 client shared by the load generator and the probes: plain `http://` over a hyper-util
//! connection pool, one deadline per request covering connect, send and the whole answer, and a cap on how
//! much of an answer's body is kept.
//!
//! Not here: TLS, redirects, retries, cookies. A run measures what one request sees, so the client never
//! repeats or follows anything on its own.

use std::time::Duration;

use ::http::header::{HeaderName, HeaderValue, USER_AGENT};
use ::http::uri::Scheme;
use ::http::{HeaderMap, Method, Uri};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

/// Deadline for one request when the experiment does not set one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a body [`Client::new`] keeps; probes look for text in the first MiB, nobody needs more.
pub const DEFAULT_BODY_CAP: usize = 1 << 20;

/// The `User-Agent` sent when the request does not set one, so target logs can tell chaos traffic apart.
const AGENT: &str = concat!("chaos/", env!("CARGO_PKG_VERSION"));

/// Why a request got no answer (an answer with any status, 5xx included, is not an error here).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL is not a usable `http://host[:port]/path`.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A method or header that HTTP does not allow.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No answer: connection refused or reset, DNS failure, malformed HTTP.
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    /// No complete answer within the deadline.
    #[error("no answer from {url} within {} ms", .after.as_millis())]
    Timeout { url: String, after: Duration },
}

/// A request checked once and sent many times (the load generator clones it per request).
#[derive(Clone, Debug)]
pub struct Request {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// An answer: its status, the first bytes of its body, and how long the whole exchange took.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// At most the client's body cap; the rest was read and discarded.
    pub body: Bytes,
    /// True when the body was longer than the cap.
    pub truncated: bool,
    /// From the start of the send to the end of the body.
    pub elapsed: Duration,
}

/// A pooled client: cheap to clone, connections are kept alive and shared between clones.
#[derive(Clone, Debug)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    /// Bytes of each body kept in [`Response::body`]; the rest is drained so the connection can be reused.
    body_cap: usize,
}

// === impl Request ===

impl Request {
    /// A `GET` of `url`.
    pub fn get(url: &str) -> Result<Self, HttpError> {
        Self::new("GET", url)
    }

    /// A request with an empty body; `method` is any HTTP token (`GET`, `post`, `PURGE`…), upper-cased.
    pub fn new(method: &str, url: &str) -> Result<Self, HttpError> {
        let method = Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| HttpError::InvalidRequest(format!("invalid method {method:?}")))?;
        Ok(Request { method, uri: parse_url(url)?, headers: HeaderMap::new(), body: Bytes::new() })
    }

    /// Adds a header (repeated names are all sent).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HttpError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::InvalidRequest(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| HttpError::InvalidRequest(format!("invalid value for header {name}: {value:?}")))?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Sets the body (sent with a `Content-Length`).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn method(&self) -> &str {
        self.method.as_str()
    }

    pub fn url(&self) -> String {
        self.uri.to_string()
    }

    fn to_hyper(&self) -> ::http::Request<Full<Bytes>> {
        let mut request = ::http::Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        if !request.headers().contains_key(USER_AGENT) {
            request.headers_mut().insert(USER_AGENT, HeaderValue::from_static(AGENT));
        }
        request
    }
}

/// Accepts `http://authority[/path][?query]`; a missing path means `/`.
fn parse_url(url: &str) -> Result<Uri, HttpError> {
    let invalid = |reason: &str| HttpError::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
    let uri: Uri = url.trim().parse().map_err(|e: ::http::uri::InvalidUri| invalid(&e.to_string()))?;
    match uri.scheme() {
        Some(s) if *s == Scheme::HTTP => {}
        Some(s) if *s == Scheme::HTTPS => return Err(invalid("https is not supported; use http://")),
        Some(_) => return Err(invalid("expected an http:// url")),
        None => return Err(invalid("expected an absolute url like http://127.0.0.1:8080/health")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("the url has no host"));
    }
    Ok(uri)
}

// === impl Client ===

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A client keeping [`DEFAULT_BODY_CAP`] bytes of each body.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        // Small requests and answers: Nagle's delay would show up as latency the target did not cause.
        connector.set_nodelay(true);
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Client { inner, body_cap: DEFAULT_BODY_CAP }
    }

    /// The same pool, keeping at most `cap` bytes of each body (0 for load, which only needs the status).
    pub fn with_body_cap(mut self, cap: usize) -> Self {
        self.body_cap = cap;
        self
    }

    /// Sends `request` and reads the whole answer within `timeout`.
    pub async fn send(&self, request: &Request, timeout: Duration) -> Result<Response, HttpError> {
        let started = Instant::now();
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(Ok((status, body, truncated))) => {
                Ok(Response { status, body, truncated, elapsed: started.elapsed() })
            }
            Ok(Err(message)) => Err(HttpError::Transport { url: request.url(), message }),
            Err(_) => Err(HttpError::Timeout { url: request.url(), after: timeout }),
        }
    }

    async fn exchange(&self, request: &Request) -> Result<(u16, Bytes, bool), String> {
        let response = self.inner.request(request.to_hyper()).await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut kept = BytesMut::new();
        let mut truncated = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| describe(&e))?;
            if let Ok(data) = frame.into_data() {
                let room = self.body_cap.saturating_sub(kept.len());
                if data.len() > room {
                    truncated = true;
                }
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        Ok((status, kept.freeze(), truncated))
    }
}

/// The error and its causes in one line: hyper-util's own message ("client error (Connect)") says little,
/// the OS error at the bottom of the chain says what happened.
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_plain_http() {
        assert!(Request::get("http://127.0.0.1:8080/health").is_ok());
        assert!(Request::get("http://localhost").is_ok());
        for (url, reason) in [
            ("https://example.com/", "https is not supported"),
            ("/health", "absolute url"),
            ("ftp://x/", "expected an http:// url"),
            ("http://exa mple/", "invalid"),
        ] {
            let err = Request::get(url).unwrap_err().to_string();
            assert!(err.contains(reason), "{url}: {err}");
        }
    }

    #[test]
    fn methods_and_headers_are_checked() {
        let request = Request::new("post", "http://h/").unwrap();
        assert_eq!(request.method(), "POST");
        assert!(Request::new("GE T", "http://h/").is_err());
        assert!(request.clone().header("x-ok", "1").is_ok());
        assert!(request.header("bad name", "1").is_err());
    }

    #[test]
    fn the_user_agent_is_ours_unless_set() {
        let plain = Request::get("http://h/").unwrap().to_hyper();
        assert_eq!(plain.headers()[USER_AGENT], AGENT);
        let custom = Request::get("http://h/").unwrap().header("user-agent", "me").unwrap().to_hyper();
        assert_eq!(custom.headers()[USER_AGENT], "me");
    }
}
