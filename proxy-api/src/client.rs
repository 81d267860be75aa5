//! Typed async client for a Toxiproxy-compatible admin API: our `chaos proxy` or a real Toxiproxy 2.x.
//!
//! [`Client`] speaks plain `http://` over a hyper-util connection pool. Every call has a deadline (10 s by
//! default, see [`Client::with_timeout`]) so a dead or wedged server cannot hang the caller, and every request
//! carries `User-Agent: chaos/<version>`. Non-2xx answers become [`ClientError::Api`] with the server's
//! `{"error": "...", "status": N}` text. The wire types ([`Proxy`], [`Toxic`], [`NewProxy`], [`ProxyUpdate`],
//! [`NewToxic`], [`ToxicUpdate`]) follow the Toxiproxy JSON shapes; toxic attributes stay a JSON map because
//! each toxic type has its own. Beyond Toxiproxy: [`ProxyOptions`] creates `http` proxies (our server only),
//! and [`Stats`] reads the stats endpoint typed, HTTP golden signals included ([`HttpStats`]); every field of
//! it has a serde default, so an older server's answer still decodes.
//!
//! Not here: TLS, retries (the caller decides whether an operation is safe to repeat), and any knowledge of
//! toxic types or their attributes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Deadline for one request (connect, send, and read the whole answer) unless [`Client::with_timeout`] says
/// otherwise. Toxiproxy's own handler timeout is 25 s; 10 s keeps a CLI responsive while leaving room for a
/// loaded server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` sent with every request. Toxiproxy refuses only `Mozilla/...` agents, so any other is fine.
const AGENT: &str = concat!("chaos/", env!("CARGO_PKG_VERSION"));

/// Why a call to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL given to [`Client::new`] is not a usable `http://host:port`.
    #[error("invalid server url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The request did not get an answer: connection refused, reset, DNS failure, malformed HTTP.
    #[error("cannot reach {url}: {message}")]
    Http { url: String, message: String },
    /// No complete answer arrived within the client's timeout.
    #[error("no answer from {url} within {} ms", .after.as_millis())]
    Timeout { url: String, after: Duration },
    /// The server answered with a non-2xx status; `message` is its `error` text, or the raw body when the body
    /// is not Toxiproxy's JSON error shape, or the status reason when the body is empty.
    #[error("{message} (http {status})")]
    Api { status: u16, message: String },
    /// A 2xx answer whose body is not the JSON the endpoint should return.
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
}

impl ClientError {
    /// The HTTP status of an [`ClientError::Api`] error, `None` for every other kind.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the server said the proxy or toxic does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A proxy as the server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proxy {
    pub name: String,
    /// The address the proxy listens on; for a requested port 0 this is the port actually bound.
    pub listen: String,
    pub upstream: String,
    /// `false` means the listener is closed and no connection is accepted ("down" in Toxiproxy terms).
    pub enabled: bool,
    /// Our extension: a FIN is passed one way while the other direction stays open. Real Toxiproxy never
    /// sends it and always closes both directions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub half_close: bool,
    /// Our extension: the lease (ms) the proxy was created or last renewed with; it deletes itself unless
    /// renewed within that time. Real Toxiproxy never sends it, which is how a client tells the servers apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Our extension: who created the proxy, as they said at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Upstream toxics first, then downstream, each in the order they were added.
    #[serde(default)]
    pub toxics: Vec<Toxic>,
}

/// Direction of the data a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client to upstream server.
    Upstream,
    /// Upstream server back to the client (Toxiproxy's default).
    Downstream,
}

impl Stream {
    /// The wire name, `upstream` or `downstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A toxic as the server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Toxic {
    pub name: String,
    /// The toxic type, e.g. `latency` or `bandwidth`.
    #[serde(rename = "type")]
    pub r#type: String,
    pub stream: Stream,
    /// Probability that the toxic applies to a connection, rolled per connection and direction.
    pub toxicity: f32,
    /// Type-specific settings, e.g. `{"latency": 100, "jitter": 10}`; numbers are usually integers.
    #[serde(default)]
    pub attributes: Map<String, Value>,
    /// Our extension: milliseconds until the server removes the toxic by itself. Real Toxiproxy never sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// Body of `POST /proxies` and one entry of `POST /populate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewProxy {
    pub name: String,
    /// `None` lets the server choose (Toxiproxy binds every interface on a random port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    pub upstream: String,
    /// `None` means enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Our extension (see [`Proxy::half_close`]); real Toxiproxy ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_close: Option<bool>,
}

/// Body of `PATCH /proxies/{name}`: only the fields that are `Some` are sent and changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Our extension (see [`Proxy::half_close`]); real Toxiproxy ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_close: Option<bool>,
    /// Our extension: with `enabled: Some(false)`, the server re-enables the proxy after this many ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Our extension: `tcp` or `http`; a change restarts the proxy. Real Toxiproxy ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Our extension: extra latency histogram bounds (ms), e.g. an SLO's thresholds; replaces the previous set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_buckets_ms: Option<Vec<f64>>,
    /// Our extension: renews the proxy's lease (see [`Proxy::lease_ms`]) from now. Real Toxiproxy ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// Our extensions to a new proxy, sent along with a [`NewProxy`] by [`Client::create_proxy_with`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyOptions {
    /// `tcp` (the default) or `http`: HTTP/1.1 and HTTP/2 requests, L7 toxics, per-request stats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Extra latency histogram bounds (ms), so "the share of requests within T" is exact for each T.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_buckets_ms: Option<Vec<f64>>,
    /// A lease (ms): the proxy deletes itself unless renewed ([`ProxyUpdate::lease_ms`]) within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Who creates the proxy, shown back in its view ([`Proxy::owner`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `GET /proxies/{name}/stats` of our server, typed. Every field defaults, so older answers decode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub connections_open: u64,
    pub connections_total: u64,
    pub upstream_connect_failures: u64,
    /// Client → server bytes.
    pub upstream: DirectionStats,
    /// Server → client bytes.
    pub downstream: DirectionStats,
    pub toxic_activations: Vec<ToxicActivation>,
    /// Per-request golden signals; `None` for TCP proxies and for servers without HTTP mode.
    pub http: Option<HttpStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DirectionStats {
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToxicActivation {
    pub name: String,
    pub stream: String,
    /// Links (connection × direction) the toxic was applied to.
    pub links: u64,
}

/// The golden signals of an `http` proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpStats {
    /// Completed requests, plain HTTP and gRPC.
    pub requests_total: u64,
    /// Completed plain HTTP requests: method class (`GET`, `HEAD`, `POST`, `PUT`, `DELETE`, `PATCH`, `OPTIONS`,
    /// `OTHER`) → status class (`1xx`…`5xx`) → count.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Completed gRPC requests by status name (`OK`, `UNAVAILABLE`, …).
    pub grpc: BTreeMap<String, u64>,
    pub in_flight: u64,
    /// Requests the upstream failed (no connection, no valid response, a response broken off).
    pub upstream_failures: u64,
    /// Requests whose client left before the response was complete (in no class).
    pub abandoned: u64,
    pub latency: LatencyStats,
    pub faults_injected: Vec<FaultCount>,
}

impl HttpStats {
    /// Completed requests that failed: HTTP 5xx and gRPC statuses other than `OK`.
    pub fn errors(&self) -> u64 {
        let http: u64 = self.requests.values().filter_map(|classes| classes.get("5xx")).sum();
        let grpc: u64 = self.grpc.iter().filter(|(code, _)| *code != "OK").map(|(_, n)| n).sum();
        http + grpc
    }

    /// Completed requests that took at most `ms`, when `ms` is one of the histogram's bounds.
    pub fn within_ms(&self, ms: f64) -> Option<u64> {
        self.latency.buckets.iter().find(|b| b.le_ms == ms).map(|b| b.count)
    }
}

/// `GET /proxies/{name}/requests?since=N`, typed: an `http` proxy's completed requests one by one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Requests {
    /// The cursor to ask from next time.
    pub next: u64,
    /// Requests from `N` on that the proxy no longer keeps.
    pub lost: u64,
    /// More records wait beyond this read's limit: ask again from `next`.
    pub more: bool,
    pub requests: Vec<RequestRecord>,
}

/// One completed request of an `http` proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestRecord {
    pub seq: u64,
    /// How long before the proxy built its answer the request's head arrived.
    pub started_us_ago: u64,
    pub latency_us: u64,
    /// 5xx, or a gRPC status other than OK.
    pub failed: bool,
}

/// Latency from a request's head to the end of its response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyStats {
    /// Cumulative, ascending: requests that took at most `le_ms`; the +Inf bucket is `count`.
    pub buckets: Vec<LatencyBucket>,
    pub count: u64,
    pub sum_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyBucket {
    pub le_ms: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultCount {
    /// The toxic's name.
    pub name: String,
    /// The toxic's type (`http_abort`, `http_delay`, `grpc_abort`).
    #[serde(rename = "type")]
    pub r#type: String,
    /// Requests it faulted.
    pub requests: u64,
}

/// Body of `POST /proxies/{name}/toxics`. Unset fields take the server's defaults: name `<type>_<stream>`,
/// stream downstream, toxicity 1, attributes 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewToxic {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<f32>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    /// Our extension: remove the toxic after this many milliseconds. Real Toxiproxy ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// Body of `PATCH /proxies/{name}/toxics/{toxic}`. The server merges `attributes` into the current ones and
/// keeps the current toxicity when `toxicity` is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToxicUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<f32>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    /// Our extension: remove the toxic this many milliseconds from now (any update re-arms the deadline on our
    /// server). Real Toxiproxy ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// `/populate` answers `{"proxies": [...]}` (Toxiproxy); older or alternative servers answer a bare array.
#[derive(Deserialize)]
#[serde(untagged)]
enum PopulateAnswer {
    Wrapped { proxies: Vec<Proxy> },
    Bare(Vec<Proxy>),
}

/// Toxiproxy's error body, `{"error": "proxy not found", "status": 404}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// A client for one admin API. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    /// `http://host:port` plus an optional path prefix, never ending in `/`.
    base: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base).field("timeout", &self.timeout).finish()
    }
}

/// How long an idle pooled connection is kept: less than the 10 s `chaos proxy` allows between requests.
const POOL_IDLE: Duration = Duration::from_secs(5);

// === impl Client ===

impl Client {
    /// A client for the admin API at `base_url`: `http://host:port`, `host:port`, or either with a path prefix
    /// (for a server behind a reverse proxy). Without a port, `http://` means port 80 as in any URL.
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        let base = parse_base_url(base_url)?;
        // Idle connections are dropped before `chaos proxy` closes them (it allows 10 s between requests), so
        // a request never races the server's close of a pooled connection.
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build_http();
        Ok(Client { base, http, timeout: DEFAULT_TIMEOUT })
    }

    /// The same client with another per-request deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The normalised base URL, e.g. `http://localhost:8474`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /version`: the server's version string, e.g. `2.12.0`. Accepts both the JSON answer of Toxiproxy
    /// ≥ 2.7 and the plain text of older servers.
    pub async fn version(&self) -> Result<String, ClientError> {
        let body = self.call(Method::GET, "/version", None).await?;
        #[derive(Deserialize)]
        struct Version {
            version: String,
        }
        match serde_json::from_slice::<Version>(&body) {
            Ok(v) => Ok(v.version),
            Err(_) => Ok(String::from_utf8_lossy(&body).trim().to_owned()),
        }
    }

    /// `GET /proxies`: every proxy, keyed by name.
    pub async fn proxies(&self) -> Result<BTreeMap<String, Proxy>, ClientError> {
        self.json(Method::GET, "/proxies", None).await
    }

    /// `GET /proxies/{name}`.
    pub async fn proxy(&self, name: &str) -> Result<Proxy, ClientError> {
        self.json(Method::GET, &proxy_path(name), None).await
    }

    /// `GET /proxies/{name}` as the server sent it, unknown fields included, for printing or forwarding.
    pub async fn proxy_json(&self, name: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, &proxy_path(name), None).await
    }

    /// `POST /proxies`: creates a proxy and returns it as created (with the bound listen address).
    pub async fn create_proxy(&self, proxy: &NewProxy) -> Result<Proxy, ClientError> {
        self.json(Method::POST, "/proxies", Some(encode(proxy)?)).await
    }

    /// `POST /proxies` with our extensions (an `http` proxy, latency bounds); only our server knows them.
    pub async fn create_proxy_with(
        &self,
        proxy: &NewProxy,
        options: &ProxyOptions,
    ) -> Result<Proxy, ClientError> {
        let mut body = serde_json::to_value(proxy).map_err(|e| ClientError::Decode {
            url: String::from("(request body)"),
            message: format!("cannot encode the request: {e}"),
        })?;
        if let (Value::Object(body), Ok(Value::Object(extra))) = (&mut body, serde_json::to_value(options)) {
            body.extend(extra);
        }
        self.json(Method::POST, "/proxies", Some(encode(&body)?)).await
    }

    /// `PATCH /proxies/{name}`: changes only the fields set in `update`.
    pub async fn update_proxy(&self, name: &str, update: &ProxyUpdate) -> Result<Proxy, ClientError> {
        self.json(Method::PATCH, &proxy_path(name), Some(encode(update)?)).await
    }

    /// `DELETE /proxies/{name}`: closes its connections and removes it with its toxics.
    pub async fn delete_proxy(&self, name: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &proxy_path(name), None).await.map(drop)
    }

    /// `POST /populate`: creates or replaces the given proxies (identical ones are kept as they are).
    pub async fn populate(&self, proxies: &[NewProxy]) -> Result<Vec<Proxy>, ClientError> {
        let answer: PopulateAnswer = self.json(Method::POST, "/populate", Some(encode(proxies)?)).await?;
        Ok(match answer {
            PopulateAnswer::Wrapped { proxies } | PopulateAnswer::Bare(proxies) => proxies,
        })
    }

    /// `POST /reset`: re-enables every proxy and removes every toxic.
    pub async fn reset(&self) -> Result<(), ClientError> {
        self.call(Method::POST, "/reset", None).await.map(drop)
    }

    /// `GET /proxies/{proxy}/toxics`.
    pub async fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, ClientError> {
        self.json(Method::GET, &toxics_path(proxy), None).await
    }

    /// `GET /proxies/{proxy}/toxics/{name}`.
    pub async fn toxic(&self, proxy: &str, name: &str) -> Result<Toxic, ClientError> {
        self.json(Method::GET, &toxic_path(proxy, name), None).await
    }

    /// `POST /proxies/{proxy}/toxics`: adds a toxic and returns it with the server's defaults filled in.
    pub async fn add_toxic(&self, proxy: &str, toxic: &NewToxic) -> Result<Toxic, ClientError> {
        self.json(Method::POST, &toxics_path(proxy), Some(encode(toxic)?)).await
    }

    /// `PATCH /proxies/{proxy}/toxics/{name}`: merges `update` into the toxic.
    pub async fn update_toxic(
        &self,
        proxy: &str,
        name: &str,
        update: &ToxicUpdate,
    ) -> Result<Toxic, ClientError> {
        self.json(Method::PATCH, &toxic_path(proxy, name), Some(encode(update)?)).await
    }

    /// `DELETE /proxies/{proxy}/toxics/{name}`.
    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &toxic_path(proxy, name), None).await.map(drop)
    }

    /// `GET /proxies/{name}/stats`: our extension with live counters; the shape is the server's to define.
    pub async fn stats(&self, proxy: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, &format!("{}/stats", proxy_path(proxy)), None).await
    }

    /// `GET /proxies/{name}/stats`, typed (HTTP golden signals in [`Stats::http`]).
    pub async fn proxy_stats(&self, proxy: &str) -> Result<Stats, ClientError> {
        self.json(Method::GET, &format!("{}/stats", proxy_path(proxy)), None).await
    }

    /// `GET /proxies/{name}/requests?since=N`, typed: an `http` proxy's completed requests from number `since`.
    pub async fn proxy_requests(&self, proxy: &str, since: u64) -> Result<Requests, ClientError> {
        self.json(Method::GET, &format!("{}/requests?since={since}", proxy_path(proxy)), None).await
    }

    /// `GET /stats`, typed: every proxy's stats, keyed by name.
    pub async fn all_proxy_stats(&self) -> Result<BTreeMap<String, Stats>, ClientError> {
        self.json(Method::GET, "/stats", None).await
    }

    /// `GET /stats`: our extension, the live counters of every proxy.
    pub async fn all_stats(&self) -> Result<Value, ClientError> {
        self.json(Method::GET, "/stats", None).await
    }

    /// `GET` any path (starting with `/`) and return the JSON as sent, for callers that print or forward it.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, path, None).await
    }

    /// Sends a request and decodes a 2xx JSON answer into `T`.
    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let answer = self.call(method, path, body).await?;
        serde_json::from_slice(&answer).map_err(|e| ClientError::Decode {
            url: self.url(path),
            message: format!("{e}, body {:?}", truncate(&answer)),
        })
    }

    /// Sends a request under the client's deadline; returns the body of a 2xx answer, or the API error.
    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes, ClientError> {
        let url = self.url(path);
        match tokio::time::timeout(self.timeout, self.exchange(method, &url, body)).await {
            Ok(Ok((status, bytes))) if status.is_success() => Ok(bytes),
            Ok(Ok((status, bytes))) => Err(api_error(status, &bytes)),
            Ok(Err(message)) => Err(ClientError::Http { url, message }),
            Err(_elapsed) => Err(ClientError::Timeout { url, after: self.timeout }),
        }
    }

    /// One HTTP exchange without a deadline; transport failures come back as a readable message.
    async fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), String> {
        let uri: Uri = url.parse().map_err(|e| format!("bad request url: {e}"))?;
        let mut request = Request::builder().method(method).uri(uri).header(USER_AGENT, AGENT);
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
            .map_err(|e| format!("cannot build request: {e}"))?;
        let response = self.http.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| error_chain(&e))?.to_bytes();
        Ok((status, bytes))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// Normalises a user-given server address into `http://authority[/prefix]` without a trailing `/`.
fn parse_base_url(input: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl { url: input.to_owned(), reason: reason.to_owned() };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(invalid("expected http://host:port, found an empty string"));
    }
    let with_scheme = match trimmed.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => trimmed.to_owned(),
        Some((scheme, _)) => {
            return Err(invalid(&format!("only http:// is supported, found {scheme}://")));
        }
        None => format!("http://{trimmed}"),
    };
    let uri: Uri = with_scheme.parse().map_err(|e| invalid(&format!("expected http://host:port ({e})")))?;
    let authority = uri.authority().ok_or_else(|| invalid("expected a host"))?;
    if authority.host().is_empty() {
        return Err(invalid("expected a host"));
    }
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the url are not supported"));
    }
    if uri.query().is_some() {
        return Err(invalid("expected no query string"));
    }
    let prefix = uri.path().trim_end_matches('/');
    Ok(format!("http://{authority}{prefix}"))
}

/// Maps a non-2xx answer to [`ClientError::Api`], preferring Toxiproxy's JSON `error` text.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                // Toxiproxy's handler timeout answers 503 with an empty body; the reason phrase still says
                // something.
                status.canonical_reason().unwrap_or("no error text").to_lowercase()
            } else {
                text
            }
        }
    };
    ClientError::Api { status: status.as_u16(), message }
}

/// `err: its source: ...` without the outermost layer's bare kind when a cause explains it better.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    // hyper-util's outer error reads "client error (Connect)"; the causes below it say what happened.
    if parts.len() > 1 {
        parts.remove(0);
    }
    parts.join(": ")
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(value).map_err(|e| ClientError::Decode {
        url: String::from("(request body)"),
        message: format!("cannot encode the request: {e}"),
    })
}

/// The first 200 characters of a body, for error messages.
fn truncate(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

fn proxy_path(name: &str) -> String {
    format!("/proxies/{}", escape_segment(name))
}

fn toxics_path(proxy: &str) -> String {
    format!("{}/toxics", proxy_path(proxy))
}

fn toxic_path(proxy: &str, toxic: &str) -> String {
    format!("{}/{}", toxics_path(proxy), escape_segment(toxic))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so any name is one path segment.
fn escape_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn base_url_accepts_the_usual_spellings() {
        let cases = [
            ("http://localhost:8474", "http://localhost:8474"),
            ("localhost:8474", "http://localhost:8474"),
            ("  127.0.0.1:8474/ ", "http://127.0.0.1:8474"),
            ("HTTP://127.0.0.1:8474", "http://127.0.0.1:8474"),
            ("http://[::1]:8474", "http://[::1]:8474"),
            ("[::1]:8474", "http://[::1]:8474"),
            ("http://example.com", "http://example.com"),
            ("http://example.com/toxiproxy/", "http://example.com/toxiproxy"),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_base_url(input).unwrap(), expected, "input {input:?}");
        }
    }

    #[test]
    fn base_url_rejects_what_we_cannot_speak() {
        for (input, reason) in [
            ("", "empty"),
            ("https://localhost:8474", "only http://"),
            ("ftp://x:1", "only http://"),
            ("http://", "host"),
            ("http://user:pw@localhost:8474", "credentials"),
            ("http://localhost:8474/?a=b", "query"),
            ("local host:80", ""),
        ] {
            let err = parse_base_url(input).unwrap_err();
            assert!(matches!(err, ClientError::InvalidUrl { .. }), "{input:?}: {err:?}");
            assert!(err.to_string().contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn api_error_prefers_the_json_error_text() {
        let err = api_error(StatusCode::NOT_FOUND, b"{\"error\":\"proxy not found\",\"status\":404}\n");
        assert!(matches!(&err, ClientError::Api { status: 404, message } if message == "proxy not found"));
        assert_eq!(err.to_string(), "proxy not found (http 404)");
        assert!(err.is_not_found());
    }

    #[test]
    fn api_error_falls_back_to_the_raw_body_then_the_reason() {
        let err = api_error(StatusCode::NOT_FOUND, b"404 page not found\n");
        assert!(matches!(&err, ClientError::Api { status: 404, message } if message == "404 page not found"));
        let err = api_error(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert!(
            matches!(&err, ClientError::Api { status: 503, message } if message == "service unavailable")
        );
        let err = api_error(StatusCode::BAD_REQUEST, b"{\"status\":400}");
        assert!(matches!(&err, ClientError::Api { message, .. } if message == "{\"status\":400}"));
    }

    #[test]
    fn names_are_single_path_segments() {
        assert_eq!(toxic_path("redis", "latency_downstream"), "/proxies/redis/toxics/latency_downstream");
        assert_eq!(proxy_path("a b/c?"), "/proxies/a%20b%2Fc%3F");
        assert_eq!(escape_segment("é"), "%C3%A9");
    }

    #[test]
    fn wire_shapes_match_toxiproxy() {
        let toxic: Toxic = serde_json::from_value(json!({
            "attributes": {"latency": 1000, "jitter": 0},
            "name": "latency_downstream", "type": "latency", "stream": "downstream", "toxicity": 1
        }))
        .unwrap();
        assert_eq!(toxic.stream, Stream::Downstream);
        assert_eq!(toxic.ttl, None);
        assert_eq!(serde_json::to_value(&toxic).unwrap().get("ttl"), None);

        let proxy: Proxy = serde_json::from_value(json!({
            "name": "redis", "listen": "127.0.0.1:26379", "upstream": "localhost:6379",
            "enabled": true, "Logger": {}, "toxics": [toxic]
        }))
        .unwrap();
        assert_eq!(proxy.toxics.len(), 1);
        assert!(!proxy.half_close);
        assert_eq!(serde_json::to_value(&proxy).unwrap().get("half_close"), None);

        let update = ProxyUpdate { enabled: Some(false), ..ProxyUpdate::default() };
        assert_eq!(serde_json::to_value(update).unwrap(), json!({"enabled": false}));
        let new = NewToxic { r#type: "latency".into(), ..NewToxic::default() };
        assert_eq!(serde_json::to_value(new).unwrap(), json!({"type": "latency"}));
        let update = ToxicUpdate::default();
        assert_eq!(serde_json::to_value(update).unwrap(), json!({}));
    }

    #[test]
    fn stats_decode_from_older_and_newer_servers() {
        let old: Stats =
            serde_json::from_value(json!({"connections_total": 3, "upstream": {"sent_bytes": 5}})).unwrap();
        assert_eq!((old.connections_total, old.upstream.sent_bytes, old.http), (3, 5, None));
        let new: Stats = serde_json::from_value(json!({
            "http": {
                "requests_total": 4,
                "requests": {"GET": {"2xx": 2, "5xx": 1}},
                "grpc": {"OK": 0, "UNAVAILABLE": 1},
                "latency": {"buckets": [{"le_ms": 800, "count": 3}], "count": 4, "sum_ms": 12.5},
                "faults_injected": [{"name": "abort", "type": "http_abort", "requests": 1}],
                "something_new": true
            }
        }))
        .unwrap();
        let http = new.http.unwrap();
        assert_eq!((http.errors(), http.within_ms(800.0), http.within_ms(1.0)), (2, Some(3), None));
        assert_eq!(http.faults_injected[0].r#type, "http_abort");
        let update = ProxyUpdate { latency_buckets_ms: Some(vec![800.0]), ..ProxyUpdate::default() };
        assert_eq!(serde_json::to_value(update).unwrap(), json!({"latency_buckets_ms": [800.0]}));
    }

    /// Serves one canned HTTP answer on a loopback port and hands back the raw request it received.
    async fn one_shot_server(status: &str, body: &str) -> (String, tokio::task::JoinHandle<String>) {
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read until the end of the head plus the declared body.
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned)
                        })
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if request.len() >= head_end + 4 + length {
                        break;
                    }
                }
                assert!(n > 0, "client closed before sending a whole request");
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn requests_carry_our_user_agent_and_decode_answers() {
        let (url, server) = one_shot_server("200 OK", "{\"version\": \"2.12.0\"}\n").await;
        let client = Client::new(&url).unwrap();
        assert_eq!(client.version().await.unwrap(), "2.12.0");
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /version HTTP/1.1\r\n"), "{request}");
        let agent = format!("user-agent: chaos/{}\r\n", env!("CARGO_PKG_VERSION"));
        assert!(request.to_ascii_lowercase().contains(&agent), "{request}");
    }

    #[tokio::test]
    async fn plain_text_versions_are_accepted() {
        let (url, _server) = one_shot_server("200 OK", "2.5.0\n").await;
        assert_eq!(Client::new(&url).unwrap().version().await.unwrap(), "2.5.0");
    }

    #[tokio::test]
    async fn partial_updates_send_only_the_set_fields() {
        let body = r#"{"name":"r","listen":"127.0.0.1:1","upstream":"127.0.0.1:2","enabled":false}"#;
        let (url, server) = one_shot_server("200 OK", body).await;
        let client = Client::new(&url).unwrap();
        let update = ProxyUpdate { enabled: Some(false), ..ProxyUpdate::default() };
        let proxy = client.update_proxy("r", &update).await.unwrap();
        assert!(!proxy.enabled);
        assert!(proxy.toxics.is_empty());
        let request = server.await.unwrap();
        assert!(request.starts_with("PATCH /proxies/r HTTP/1.1\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\n{\"enabled\":false}"), "{request}");
    }

    #[tokio::test]
    async fn populate_accepts_wrapped_and_bare_answers() {
        let proxy =
            r#"{"name":"r","listen":"127.0.0.1:1","upstream":"127.0.0.1:2","enabled":true,"toxics":[]}"#;
        for body in [format!("{{\"proxies\":[{proxy}]}}"), format!("[{proxy}]")] {
            let (url, server) = one_shot_server("201 Created", &body).await;
            let new = NewProxy {
                name: "r".into(),
                listen: Some("127.0.0.1:1".into()),
                upstream: "127.0.0.1:2".into(),
                enabled: None,
                half_close: None,
            };
            let created = Client::new(&url).unwrap().populate(&[new]).await.unwrap();
            assert_eq!(created.len(), 1);
            let request = server.await.unwrap();
            assert!(request.starts_with("POST /populate HTTP/1.1\r\n"), "{request}");
            assert!(request.ends_with(r#"[{"name":"r","listen":"127.0.0.1:1","upstream":"127.0.0.1:2"}]"#));
        }
    }

    #[tokio::test]
    async fn api_errors_carry_status_and_text() {
        let body = "{\"error\":\"proxy not found\",\"status\":404}\n";
        let (url, server) = one_shot_server("404 Not Found", body).await;
        let err = Client::new(&url).unwrap().proxy("nope").await.unwrap_err();
        assert!(matches!(&err, ClientError::Api { status: 404, message } if message == "proxy not found"));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_non_json_success_is_a_decode_error() {
        let (url, _server) = one_shot_server("200 OK", "hello").await;
        let err = Client::new(&url).unwrap().proxies().await.unwrap_err();
        assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("\"hello\""), "{err}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // Accept and hold the connection without ever answering.
        let _hold = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        let client = Client::new(&url).unwrap().with_timeout(Duration::from_millis(200));
        let err = client.proxies().await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("no answer from {url}/proxies within 200 ms")));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transport_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = Client::new(&url).unwrap().proxies().await.unwrap_err();
        assert!(matches!(err, ClientError::Http { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("cannot reach {url}/proxies: ")), "{err}");
    }
}
