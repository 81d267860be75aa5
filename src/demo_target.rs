//! `chaos demo-target --http`: a small HTTP/1.1 service for the examples and the quick start, something to
//! put behind a proxy and to load and probe. It prints `listening on http://ADDR` first on stdout (scripts
//! read the port from it), then serves until interrupted.
//!
//! Routes: `GET /health` → `ok`; `GET /` → a JSON index; `GET|POST /checkout` → a JSON order;
//! `GET /slow?ms=N` → the same after N ms (at most 60 s); `GET /status/{code}` → that status (200–599).
//! Anything else is 404, a known path with another method 405.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use hyper::body::{Body, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The longest `/slow` waits, so a typo cannot park a connection for hours.
const MAX_SLOW: Duration = Duration::from_secs(60);

/// How long connections may take to finish their current request once shutdown starts.
const GRACE: Duration = Duration::from_secs(5);

/// Binds `listen` (port 0 picks a free one), prints the address, and serves until Ctrl-C.
#[allow(clippy::print_stdout)] // the "listening on" line is this command's stdout contract
pub async fn serve(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    run(listener, async {
        // Without a signal handler we simply serve until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await;
    Ok(())
}

/// Serves on `listener` until `shutdown` completes, then lets open requests finish (at most [`GRACE`]).
pub async fn run(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let state = Arc::new(State::default());
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors: wait for some to close rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (state, stop) = (state.clone(), stop.clone());
        connections.spawn(async move {
            let service = service_fn(move |request| handle(state.clone(), request));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    stop.cancel();
    connections.close();
    let _ = tokio::time::timeout(GRACE, connections.wait()).await;
}

#[derive(Debug, Default)]
struct State {
    /// Numbers the orders `/checkout` confirms.
    orders: AtomicU64,
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let (parts, body) = request.into_parts();
    // Reading the whole body keeps the connection reusable; a handler that drops it makes hyper close it.
    drain(body).await;
    let path = parts.uri.path();
    let get = parts.method == Method::GET;
    let response = match path {
        "/health" if get => text(StatusCode::OK, "ok"),
        "/" if get => json(
            StatusCode::OK,
            r#"{"service":"chaos demo target","routes":["/health","/checkout","/slow?ms=N","/status/{code}"]}"#
                .to_string(),
        ),
        "/checkout" if get || parts.method == Method::POST => {
            let order = state.orders.fetch_add(1, Ordering::Relaxed) + 1;
            json(StatusCode::OK, format!(r#"{{"order":{order},"status":"confirmed"}}"#))
        }
        "/slow" if get => match slow_ms(parts.uri.query()) {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                json(StatusCode::OK, format!(r#"{{"slept_ms":{ms}}}"#))
            }
            Err(message) => text(StatusCode::BAD_REQUEST, &message),
        },
        _ if get && path.starts_with("/status/") => match status_code(&path["/status/".len()..]) {
            Some(status) => text(status, &format!("status {}", status.as_u16())),
            None => text(StatusCode::BAD_REQUEST, "expected /status/{code} with a code from 200 to 599"),
        },
        "/health" | "/" | "/slow" => not_allowed("GET"),
        "/checkout" => not_allowed("GET, POST"),
        _ if path.starts_with("/status/") => not_allowed("GET"),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

/// `ms=N` from the query (0 when absent), capped at [`MAX_SLOW`].
fn slow_ms(query: Option<&str>) -> Result<u64, String> {
    let value = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("ms="));
    match value {
        None => Ok(0),
        Some(v) => v
            .parse::<u64>()
            .map(|ms| ms.min(MAX_SLOW.as_millis() as u64))
            .map_err(|_| format!("expected ms=N with N a whole number of milliseconds, found {v:?}")),
    }
}

/// A final status a client can be sent (informational 1xx codes are not final answers).
fn status_code(text: &str) -> Option<StatusCode> {
    text.parse::<u16>().ok().filter(|c| (200..=599).contains(c)).and_then(|c| StatusCode::from_u16(c).ok())
}

async fn drain(mut body: Incoming) {
    while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        if frame.is_err() {
            break;
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<String> {
    with_type(status, body.to_string(), "text/plain; charset=utf-8")
}

fn json(status: StatusCode, body: String) -> Response<String> {
    with_type(status, body, "application/json")
}

fn not_allowed(allow: &'static str) -> Response<String> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn with_type(status: StatusCode, body: String, content_type: &'static str) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one raw request on a fresh connection and returns the whole answer.
    async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        exchange(addr, &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")).await
    }

    #[tokio::test]
    async fn routes_answer_as_documented() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(run(listener, stop.clone().cancelled_owned()));

        let health = get(addr, "/health").await;
        assert!(health.starts_with("HTTP/1.1 200 OK") && health.ends_with("\r\n\r\nok"), "{health}");
        assert!(get(addr, "/").await.contains(r#""service":"chaos demo target""#));
        assert!(get(addr, "/checkout").await.contains(r#"{"order":1,"status":"confirmed"}"#));
        let post = exchange(
            addr,
            "POST /checkout HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
        )
        .await;
        assert!(post.contains(r#"{"order":2,"status":"confirmed"}"#), "{post}");
        let started = std::time::Instant::now();
        assert!(get(addr, "/slow?ms=120").await.contains(r#"{"slept_ms":120}"#));
        assert!(started.elapsed() >= Duration::from_millis(120));
        assert!(get(addr, "/slow?ms=abc").await.starts_with("HTTP/1.1 400"));
        assert!(get(addr, "/status/503").await.starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/status/204").await.starts_with("HTTP/1.1 204"));
        assert!(get(addr, "/status/42").await.starts_with("HTTP/1.1 400"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        let delete =
            exchange(addr, "DELETE /checkout HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        assert!(delete.starts_with("HTTP/1.1 405") && delete.contains("allow: GET, POST"), "{delete}");

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), server).await.unwrap().unwrap();
    }

    #[test]
    fn slow_takes_ms_from_the_query() {
        assert_eq!(slow_ms(None), Ok(0));
        assert_eq!(slow_ms(Some("x=1&ms=250")), Ok(250));
        assert_eq!(slow_ms(Some("ms=999999999")), Ok(60_000));
        assert!(slow_ms(Some("ms=-1")).is_err());
    }
}
