//! The admin HTTP API, compatible with Toxiproxy 2.x: routes, status codes, JSON shapes, error bodies and
//! quirks as in `reference/toxiproxy-compat.md`, plus `/proxies/{name}/stats`, `/stats` and `/metrics`.
//!
//! Bodies are read as bytes and decoded here, so any Content-Type is accepted and decode errors read
//! `bad request body: ...` as in Toxiproxy. Handlers only touch the registry; none waits on the data path.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::Error;
use crate::model::{ProxyInput, ProxyUpdate, ToxicInput, ToxicUpdate};
use crate::server::Server;

/// The version reported by `/version`: the Toxiproxy API level this server implements. Clients sniff it
/// (toxiproxy-ruby uses PATCH only from 2.6.0 on).
pub const TOXIPROXY_API_VERSION: &str = "2.12.0";
/// Toxiproxy answers 503 with an empty body when a handler runs longer than this.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(25);
pub(crate) const REQUEST_ID: &str = "x-toxiproxy-request-id";

/// The admin API as an axum router (test it with `tower::ServiceExt::oneshot`, serve it with [`crate::serve`]).
pub fn router(server: Server) -> Router {
    let mut router = Router::new()
        .route("/reset", post(reset))
        .route("/proxies", get(list_proxies).post(create_proxy))
        .route("/populate", post(populate))
        .route("/proxies/{proxy}", get(get_proxy).post(update_proxy).patch(update_proxy).delete(delete_proxy))
        .route("/proxies/{proxy}/toxics", get(list_toxics).post(create_toxic))
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(get_toxic).post(update_toxic).patch(update_toxic).delete(delete_toxic),
        )
        .route("/proxies/{proxy}/stats", get(proxy_stats))
        .route("/proxies/{proxy}/requests", get(proxy_requests))
        .route("/stats", get(all_stats))
        .route("/version", get(version));
    if server.config().metrics {
        router = router.route("/metrics", any(metrics));
    }
    router.fallback(not_found).layer(middleware::from_fn_with_state(server.clone(), guard)).with_state(server)
}

// === handlers: proxies ===

async fn list_proxies(State(server): State<Server>) -> Response {
    ok_json(StatusCode::OK, &server.proxies().await)
}

async fn create_proxy(State(server): State<Server>, body: Bytes) -> Response {
    let input: ProxyInput = match decode(&body) {
        Ok(input) => input,
        Err(e) => return error(&e),
    };
    match server.create_proxy(input).await {
        Ok(view) => ok_json(StatusCode::CREATED, &view),
        Err(e) => error(&e),
    }
}

async fn populate(State(server): State<Server>, body: Bytes) -> Response {
    let inputs: Vec<ProxyInput> = match decode(&body) {
        Ok(inputs) => inputs,
        Err(e) => return populate_error(&e, None),
    };
    match server.populate(inputs).await {
        // Go marshals an empty slice of proxies as null.
        Ok(views) if views.is_empty() => ok_json(StatusCode::CREATED, &json!({ "proxies": null })),
        Ok(views) => ok_json(StatusCode::CREATED, &json!({ "proxies": views })),
        Err((e, done)) => populate_error(&e, if done.is_empty() { None } else { Some(done) }),
    }
}

async fn get_proxy(State(server): State<Server>, Path(name): Path<String>) -> Response {
    respond(server.proxy(&name).await, StatusCode::OK)
}

async fn update_proxy(State(server): State<Server>, Path(name): Path<String>, body: Bytes) -> Response {
    // Toxiproxy looks the proxy up before it reads the body.
    if let Err(e) = server.proxy(&name).await {
        return error(&e);
    }
    let update: ProxyUpdate = match decode(&body) {
        Ok(update) => update,
        Err(e) => return error(&e),
    };
    respond(server.update_proxy(&name, update).await, StatusCode::OK)
}

async fn delete_proxy(State(server): State<Server>, Path(name): Path<String>) -> Response {
    no_content(server.delete_proxy(&name).await)
}

async fn reset(State(server): State<Server>) -> Response {
    no_content(server.reset().await)
}

// === handlers: toxics ===

async fn list_toxics(State(server): State<Server>, Path(proxy): Path<String>) -> Response {
    respond(server.toxics(&proxy).await, StatusCode::OK)
}

async fn create_toxic(State(server): State<Server>, Path(proxy): Path<String>, body: Bytes) -> Response {
    if let Err(e) = server.proxy(&proxy).await {
        return error(&e);
    }
    let input: ToxicInput = match decode(&body) {
        Ok(input) => input,
        Err(e) => return error(&e),
    };
    // Toxiproxy answers 200, not 201, for a new toxic.
    respond(server.add_toxic(&proxy, input).await, StatusCode::OK)
}

async fn get_toxic(State(server): State<Server>, Path((proxy, toxic)): Path<(String, String)>) -> Response {
    respond(server.toxic(&proxy, &toxic).await, StatusCode::OK)
}

async fn update_toxic(
    State(server): State<Server>,
    Path((proxy, toxic)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(e) = server.toxic(&proxy, &toxic).await {
        return error(&e);
    }
    let update: ToxicUpdate = match decode(&body) {
        Ok(update) => update,
        Err(e) => return error(&e),
    };
    respond(server.update_toxic(&proxy, &toxic, update).await, StatusCode::OK)
}

async fn delete_toxic(
    State(server): State<Server>,
    Path((proxy, toxic)): Path<(String, String)>,
) -> Response {
    no_content(server.remove_toxic(&proxy, &toxic).await)
}

// === handlers: beyond Toxiproxy ===

async fn proxy_stats(State(server): State<Server>, Path(proxy): Path<String>) -> Response {
    respond(server.stats(&proxy).await, StatusCode::OK)
}

/// `GET /proxies/{name}/requests?since=N`: an `http` proxy's completed requests one by one, from number `N`
/// (0 when absent).
async fn proxy_requests(
    State(server): State<Server>,
    Path(proxy): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut since = 0;
    for pair in query.as_deref().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("since", n)) => match n.parse() {
                Ok(n) => since = n,
                Err(_) => {
                    let why = format!("since: expected a request number (0 or more), found {n:?}");
                    return error(&Error::BadRequest(why));
                }
            },
            _ => {
                return error(&Error::BadRequest(format!(
                    "unknown query parameter {pair:?}: expected since=N"
                )));
            }
        }
    }
    respond(server.requests(&proxy, since).await, StatusCode::OK)
}

async fn all_stats(State(server): State<Server>) -> Response {
    ok_json(StatusCode::OK, &server.all_stats().await)
}

async fn metrics(State(server): State<Server>) -> Response {
    let text = server.prometheus().await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn version() -> Response {
    // Toxiproxy writes this by hand: a space after the colon and a trailing newline.
    let body = format!("{{\"version\": \"{TOXIPROXY_API_VERSION}\"}}\n");
    ([(header::CONTENT_TYPE, "application/json;charset=utf-8")], body).into_response()
}

async fn not_found() -> Response {
    text_error(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// A plain-text error as Go's `http.Error` writes it.
fn text_error(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        text,
    )
        .into_response()
}

// === middleware ===

/// Every response gets a request id; browsers are refused (a CSRF guard since Toxiproxy 2.1.2); a handler
/// that overruns gets Toxiproxy's empty 503.
async fn guard(State(server): State<Server>, request: Request, next: Next) -> Response {
    let id = request_id();
    // HEAD is served by the GET routes, so it must be spared the router's own 400 for such names too.
    let head = request.method() == axum::http::Method::HEAD;
    let routed = head || matches!(request.method().as_str(), "GET" | "POST" | "PATCH" | "DELETE");
    let undecodable = if routed { undecodable_name(&server, request.uri().path()).await } else { None };
    let browser = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .is_some_and(|ua| ua.starts_with("Mozilla/"));
    let mut response = if browser {
        text_error(StatusCode::FORBIDDEN, "User agent not allowed\n")
    } else if let Some(mut response) = undecodable {
        if head {
            // A HEAD answer has no body, as the router gives the answers of the GET handlers.
            *response.body_mut() = Body::empty();
        }
        response
    } else {
        match tokio::time::timeout(HANDLER_TIMEOUT, next.run(request)).await {
            Ok(response) => response,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// A proxy or toxic name in the path that is not UTF-8 once percent-decoded names nothing that can exist:
/// answer as Toxiproxy does for an unknown name, not with the router's text error.
async fn undecodable_name(server: &Server, path: &str) -> Option<Response> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.get(1) != Some(&"proxies") {
        return None;
    }
    let valid = |i: usize| segments.get(i).is_none_or(|s| String::from_utf8(percent_decode(s)).is_ok());
    if !valid(2) {
        return Some(error(&Error::ProxyNotFound));
    }
    if !valid(4) {
        let proxy = String::from_utf8(percent_decode(segments[2])).unwrap_or_default();
        return Some(match server.proxy(&proxy).await {
            Ok(_) => error(&Error::ToxicNotFound),
            Err(e) => error(&e),
        });
    }
    None
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// 20 characters of base32, like the xid Toxiproxy uses.
pub(crate) fn request_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    (0..20).map(|_| ALPHABET[usize::from(rand::random::<u8>() % 32)] as char).collect()
}

// === responses ===

fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        // Go's decoder reports EOF on an empty body.
        return Err(Error::BadRequest("EOF".into()));
    }
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(e.to_string()))
}

fn ok_json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(&Error::BadRequest(e.to_string())),
    }
}

fn respond<T: Serialize>(result: Result<T, Error>, status: StatusCode) -> Response {
    match result {
        Ok(value) => ok_json(status, &value),
        Err(e) => error(&e),
    }
}

fn no_content(result: Result<(), Error>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(&e),
    }
}

/// Toxiproxy's error body, written through Go's `http.Error` (hence text/plain and nosniff).
fn error(e: &Error) -> Response {
    error_body(e.status(), json!({ "error": e.to_string(), "status": e.status() }))
}

/// Toxiproxy writes populate failures itself (not through `http.Error`): JSON content type, no newline.
fn populate_error(e: &Error, done: Option<Vec<crate::model::ProxyView>>) -> Response {
    let body = json!({ "error": e.to_string(), "status": e.status(), "proxies": done });
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error_body(status: u16, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut text = body.to_string();
    text.push('\n');
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
