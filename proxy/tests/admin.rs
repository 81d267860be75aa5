//! The admin API's HTTP server under slow and hostile clients, over real loopback sockets: half-sent headers
//! and bodies are closed at their deadlines while good clients are served, bodies and populates are bounded,
//! and connections past the cap are closed without disturbing those being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use chaos_proxy::admin::{Limits, serve_with};
use chaos_proxy::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Generous bound for "at once" on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(5);

/// An admin API on a fresh loopback port, served within `limits` until dropped.
struct Admin {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Admin {
    async fn start(limits: Limits) -> Admin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = Server::new(ServerConfig::default());
        tokio::spawn(serve_with(listener, server, stop.clone().cancelled_owned(), limits));
        Admin { addr, stop }
    }

    /// Starts with the defaults `chaos proxy` serves with.
    async fn start_default() -> Admin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = Server::new(ServerConfig::default());
        tokio::spawn(chaos_proxy::serve(listener, server, stop.clone().cancelled_owned()));
        Admin { addr, stop }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn short(max_connections: usize) -> Limits {
    Limits {
        header_timeout: Duration::from_millis(800),
        body_timeout: Duration::from_millis(800),
        max_body: 64 * 1024,
        max_connections,
    }
}

/// One whole request on a new connection; the status and body of the answer.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: chaos\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body.as_bytes()).await.unwrap();
    let reply = read_all(&mut conn).await;
    parse(&reply)
}

fn parse(reply: &str) -> (u16, String) {
    let status =
        reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad reply {reply:?}"));
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Everything the server sends until it closes the connection (bounded by [`DEADLINE`] past any server bound).
async fn read_all(conn: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), conn.read_to_end(&mut bytes)).await;
    assert!(read.is_ok(), "the server held the connection open");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A connection that sent the start of a request's headers and nothing more.
async fn half_request(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /version HTTP/1.1\r\nHost: chaos\r\nX-Slow: ").await.unwrap();
    conn
}

/// Waits until the server closes `conn`; returns how long after `since` that was.
async fn closed_after(mut conn: TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), conn.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the half-sent request was held for 20 s"),
        }
    }
}

#[tokio::test]
async fn half_sent_headers_are_closed_at_the_default_ten_seconds_while_good_clients_are_served() {
    let admin = Admin::start_default().await;
    let started = Instant::now();
    let slow: Vec<TcpStream> = futures_join(|| half_request(admin.addr), 50).await;
    // Good clients are served at once while the slow ones hold their connections.
    for _ in 0..5 {
        let asked = Instant::now();
        let (status, body) = request(admin.addr, "GET", "/version", "").await;
        assert_eq!((status, body.as_str()), (200, "{\"version\": \"2.12.0\"}\n"));
        assert!(asked.elapsed() < DEADLINE, "a good client waited {:?}", asked.elapsed());
    }
    let mut closes = Vec::new();
    for conn in slow {
        closes.push(tokio::spawn(closed_after(conn, started)));
    }
    for close in closes {
        let after = close.await.unwrap();
        assert!(after >= Duration::from_millis(9500), "closed before the 10 s bound: {after:?}");
        assert!(after < Duration::from_secs(10) + DEADLINE, "closed long after the 10 s bound: {after:?}");
    }
}

/// `n` results of `make`, made one after the other.
async fn futures_join<T, F: Future<Output = T>>(mut make: impl FnMut() -> F, n: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(make().await);
    }
    out
}

#[tokio::test]
async fn a_half_sent_body_gets_408_at_its_deadline_and_a_whole_one_is_served() {
    let admin = Admin::start(short(64)).await;
    let mut conn = TcpStream::connect(admin.addr).await.unwrap();
    let sent = Instant::now();
    conn.write_all(b"POST /proxies HTTP/1.1\r\nHost: chaos\r\nContent-Length: 200\r\n\r\n{\"name\":")
        .await
        .unwrap();
    let reply = read_all(&mut conn).await;
    let (status, body) = parse(&reply);
    assert_eq!(status, 408, "{reply}");
    assert!(body.contains("request body: not received within 0.8 s"), "{body}");
    assert!(
        sent.elapsed() >= Duration::from_millis(750) && sent.elapsed() < DEADLINE,
        "{:?}",
        sent.elapsed()
    );
    // Nothing was created from the half body; a whole request is served.
    let (status, body) = request(admin.addr, "GET", "/proxies", "").await;
    assert_eq!((status, body.as_str()), (200, "{}"));
}

#[tokio::test]
async fn an_oversized_body_and_an_oversized_populate_get_413_with_a_reason() {
    let admin = Admin::start(Limits { max_body: 4096, ..short(64) }).await;
    let big = format!(r#"{{"name":"p","upstream":"127.0.0.1:9","pad":"{}"}}"#, "x".repeat(8192));
    let (status, body) = request(admin.addr, "POST", "/proxies", &big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("request body: expected at most 4096 bytes, found more"), "{body}");

    // Populate holds the registry lock, so its count is bounded too (within the default body size).
    let admin = Admin::start(Limits::default()).await;
    let entries: Vec<String> =
        (0..1001).map(|i| format!(r#"{{"name":"p{i}","upstream":"127.0.0.1:9","enabled":false}}"#)).collect();
    let (status, body) = request(admin.addr, "POST", "/populate", &format!("[{}]", entries.join(","))).await;
    assert_eq!(status, 413, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"], "populate: expected at most 1000 proxies, found 1001");
    assert_eq!(answer["proxies"], serde_json::Value::Null, "nothing was created");
    let (status, body) = request(admin.addr, "GET", "/proxies", "").await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    // The bound itself is accepted.
    let (status, _) =
        request(admin.addr, "POST", "/populate", &format!("[{}]", entries[..1000].join(","))).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_served_again_once_slots_free() {
    // Headers get 3 s here, so a refusal at accept is told apart from a close at the header deadline.
    let admin = Admin::start(Limits { header_timeout: Duration::from_secs(3), ..short(4) }).await;
    let held = futures_join(|| half_request(admin.addr), 4).await;
    // The server accepts in order, so the fifth connection finds the four slots taken.
    let refused_at = Instant::now();
    let mut extra = TcpStream::connect(admin.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, extra.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "a fifth connection was kept: {read:?}");
    assert!(refused_at.elapsed() < Duration::from_secs(2), "refused only at the header deadline");
    // Once the held ones are closed at their deadline, good clients are served again.
    for conn in held {
        closed_after(conn, refused_at).await;
    }
    let (status, _) = request(admin.addr, "GET", "/version", "").await;
    assert_eq!(status, 200);
}
