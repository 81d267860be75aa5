//! The data path with real sockets: live toxic changes lose no byte, the API never waits on a stalled
//! connection, garbage, resets and half-closed peers never take the proxy down, and toxicity is per connection
//! and reproducible. (10,000 concurrent connections: `tests/proxy_scale.rs`, across processes.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use chaos_proxy::model::{ProxyInput, ProxyUpdate, ToxicInput, ToxicUpdate};
use chaos_proxy::{Server, ServerConfig};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

const DEADLINE: Duration = Duration::from_secs(10);

async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn proxy_to(server: &Server, name: &str, upstream: SocketAddr) -> SocketAddr {
    let view = server
        .create_proxy(ProxyInput {
            name: Some(name.into()),
            listen: Some("127.0.0.1:0".into()),
            upstream: Some(upstream.to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    view.listen.parse().unwrap()
}

fn toxic(name: &str, kind: &str, stream: &str, attributes: Value) -> ToxicInput {
    ToxicInput {
        name: Some(name.into()),
        kind: Some(kind.into()),
        stream: Some(stream.into()),
        attributes: attributes.as_object().cloned(),
        ..Default::default()
    }
}

fn attrs(v: Value) -> Option<Map<String, Value>> {
    v.as_object().cloned()
}

/// A deterministic byte pattern, so any loss, duplicate or reordering shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_toxic_changes_lose_no_byte() {
    let server = Server::new(ServerConfig { seed: Some(1), metrics: false });
    let via = proxy_to(&server, "p", echo_upstream().await).await;
    let conn = TcpStream::connect(via).await.unwrap();
    let (mut r, mut w) = conn.into_split();
    let data = pattern(4_000_000);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for piece in sent.chunks(7_919) {
            w.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        w
    });
    let reader = tokio::spawn(async move {
        let mut got = Vec::with_capacity(4_000_000);
        let mut buf = vec![0u8; 65536];
        while got.len() < 4_000_000 {
            let n = timeout(DEADLINE, r.read(&mut buf)).await.expect("stream stalled").unwrap();
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    // Churn both directions' chains while bytes flow: add, update, remove, in various orders.
    for round in 0..30 {
        let stream = if round % 2 == 0 { "upstream" } else { "downstream" };
        server
            .add_toxic("p", toxic("lat", "latency", stream, json!({"latency": 2, "jitter": 1})))
            .await
            .unwrap();
        server.add_toxic("p", toxic("bw", "bandwidth", stream, json!({"rate": 50_000}))).await.unwrap();
        server
            .add_toxic(
                "p",
                toxic("slice", "slicer", stream, json!({"average_size": 500, "size_variation": 100})),
            )
            .await
            .unwrap();
        server.add_toxic("p", toxic("noop", "noop", stream, json!({}))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let update = ToxicUpdate { attributes: attrs(json!({"latency": 1})), ..Default::default() };
        server.update_toxic("p", "lat", update).await.unwrap();
        server.remove_toxic("p", "bw").await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        server.remove_toxic("p", "lat").await.unwrap();
        server.remove_toxic("p", "noop").await.unwrap();
        server.remove_toxic("p", "slice").await.unwrap();
    }
    let got = timeout(Duration::from_secs(60), reader).await.expect("transfer did not finish").unwrap();
    writer.await.unwrap();
    assert!(
        got == data,
        "stream differs from what was sent (first difference at byte {:?})",
        got.iter().zip(&data).position(|(a, b)| a != b)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_at_once_while_a_connection_is_stalled_and_bytes_then_flow() {
    let server = Server::new(ServerConfig::default());
    let via = proxy_to(&server, "p", echo_upstream().await).await;
    server.add_toxic("p", toxic("cut", "bandwidth", "downstream", json!({"rate": 0}))).await.unwrap();
    let mut conn = TcpStream::connect(via).await.unwrap();
    conn.write_all(&pattern(300_000)).await.unwrap();
    let mut buf = [0u8; 16];
    assert!(timeout(Duration::from_millis(300), conn.read(&mut buf)).await.is_err(), "rate 0 must stall");
    // Removing the toxic that holds the stalled bytes answers at once and releases them.
    let started = Instant::now();
    timeout(Duration::from_secs(1), server.remove_toxic("p", "cut")).await.expect("api blocked").unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    let mut got = vec![0u8; 300_000];
    timeout(DEADLINE, conn.read_exact(&mut got)).await.expect("bytes not released").unwrap();
    assert_eq!(got, pattern(300_000));

    // Deleting a proxy under a stalled connection also answers at once, and closes the connection.
    server.add_toxic("p", toxic("cut", "bandwidth", "downstream", json!({"rate": 0}))).await.unwrap();
    conn.write_all(&pattern(100_000)).await.unwrap();
    timeout(Duration::from_secs(1), server.delete_proxy("p")).await.expect("api blocked").unwrap();
    let end = timeout(DEADLINE, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    end.await.expect("connection not closed by delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_resets_and_half_closed_peers_do_not_hurt_the_proxy() {
    let server = Server::new(ServerConfig::default());
    let via = proxy_to(&server, "p", echo_upstream().await).await;
    for i in 0..50u32 {
        let mut conn = TcpStream::connect(via).await.unwrap();
        // Arbitrary bytes, including what looks like protocol noise.
        let garbage: Vec<u8> = (0..1000).map(|j| (j * 31 + i * 7) as u8).collect();
        conn.write_all(&garbage).await.unwrap();
        match i % 3 {
            // Abrupt reset: SO_LINGER 0, then close.
            0 => socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO)).unwrap(),
            // Half-close: FIN our side, keep reading.
            1 => conn.shutdown().await.unwrap(),
            _ => {}
        }
        drop(conn);
    }
    // The proxy still serves a clean round trip, and connections do not leak.
    let mut conn = TcpStream::connect(via).await.unwrap();
    conn.write_all(b"still alive").await.unwrap();
    let mut buf = [0u8; 11];
    timeout(DEADLINE, conn.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"still alive");
    drop(conn);
    let end = Instant::now() + DEADLINE;
    while server.stats("p").await.unwrap().connections_open > 0 {
        assert!(Instant::now() < end, "connections leaked: {:?}", server.stats("p").await.unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_close_by_default_and_half_close_when_asked() {
    // An upstream that answers only after the client has finished sending (reads to EOF, then replies).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                let _ = conn.read_to_end(&mut all).await;
                let _ = conn.write_all(format!("got {}", all.len()).as_bytes()).await;
            });
        }
    });
    let server = Server::new(ServerConfig::default());
    let via = proxy_to(&server, "p", upstream).await;
    let reply = |addr| async move {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"12345").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut out = Vec::new();
        let _ = timeout(DEADLINE, conn.read_to_end(&mut out)).await.expect("never closed");
        String::from_utf8_lossy(&out).into_owned()
    };
    // Toxiproxy semantics: the client's FIN tears the connection down; the late reply is lost.
    assert_eq!(reply(via).await, "");
    let update = ProxyUpdate { half_close: Some(true), ..Default::default() };
    let via = server.update_proxy("p", update).await.unwrap().listen.parse().unwrap();
    assert_eq!(reply(via).await, "got 5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_closes_live_connections_and_refuses_new_ones() {
    let server = Server::new(ServerConfig::default());
    let via = proxy_to(&server, "p", echo_upstream().await).await;
    let mut conn = TcpStream::connect(via).await.unwrap();
    conn.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    conn.read_exact(&mut one).await.unwrap();
    let update = ProxyUpdate { enabled: Some(false), ..Default::default() };
    server.update_proxy("p", update).await.unwrap();
    let mut buf = [0u8; 8];
    let n = timeout(DEADLINE, conn.read(&mut buf)).await.expect("live connection kept open");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(TcpStream::connect(via).await.is_err(), "listener still open");
    server.update_proxy("p", ProxyUpdate { enabled: Some(true), ..Default::default() }).await.unwrap();
    let mut conn = TcpStream::connect(via).await.expect("re-listens on the same address");
    conn.write_all(b"y").await.unwrap();
    conn.read_exact(&mut one).await.unwrap();
    assert_eq!(&one, b"y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_closes_the_client_and_is_counted() {
    let server = Server::new(ServerConfig::default());
    // A port that was just free: nothing listens there.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let via = proxy_to(&server, "p", dead).await;
    let mut conn = TcpStream::connect(via).await.unwrap();
    let mut buf = [0u8; 1];
    let n = timeout(DEADLINE, conn.read(&mut buf)).await.expect("client not closed");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert_eq!(server.stats("p").await.unwrap().upstream_connect_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_active_timeout_toxic_closes_its_connections() {
    let server = Server::new(ServerConfig::default());
    let via = proxy_to(&server, "p", echo_upstream().await).await;
    server.add_toxic("p", toxic("t", "timeout", "downstream", json!({"timeout": 0}))).await.unwrap();
    let mut conn = TcpStream::connect(via).await.unwrap();
    conn.write_all(b"dropped").await.unwrap();
    let mut buf = [0u8; 8];
    assert!(timeout(Duration::from_millis(200), conn.read(&mut buf)).await.is_err(), "data must be dropped");
    server.remove_toxic("p", "t").await.unwrap();
    let n = timeout(DEADLINE, conn.read(&mut buf)).await.expect("connection not closed on removal");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxicity_is_rolled_per_connection_and_reproducible_with_a_seed() {
    async fn affected(seed: u64) -> Vec<bool> {
        let server = Server::new(ServerConfig { seed: Some(seed), metrics: false });
        let via = proxy_to(&server, "p", echo_upstream().await).await;
        // limit_data 0 ends a selected connection on its first byte; an unselected one echoes it.
        let mut t = toxic("cut", "limit_data", "upstream", json!({"bytes": 0}));
        t.toxicity = Some(0.3);
        server.add_toxic("p", t).await.unwrap();
        let mut out = Vec::new();
        for _ in 0..200 {
            let mut conn = TcpStream::connect(via).await.unwrap();
            conn.write_all(b"q").await.unwrap();
            let mut one = [0u8; 1];
            let echoed = timeout(DEADLINE, conn.read(&mut one)).await.expect("neither echo nor close");
            out.push(!matches!(echoed, Ok(1)));
        }
        let links = server.stats("p").await.unwrap().toxic_activations.iter().map(|a| a.links).sum::<u64>();
        assert_eq!(links as usize, out.iter().filter(|&&a| a).count(), "stats count the selected links");
        out
    }
    let first = affected(99).await;
    let hits = first.iter().filter(|&&a| a).count();
    // Binomial(200, 0.3): mean 60, sd ~6.5; 5 sd either way.
    assert!((28..=92).contains(&hits), "{hits} of 200 connections affected at toxicity 0.3");
    assert_eq!(affected(99).await, first, "same seed, same connections affected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transfers_switch_between_zero_copy_and_toxics_without_losing_bytes() {
    // A bulk stream with no toxic goes through splice(2); adding toxics mid-stream hands the bytes still in
    // the kernel pipe back to the toxic chain in order, and removing them returns to zero-copy.
    let server = Server::new(ServerConfig::default());
    let via = proxy_to(&server, "p", echo_upstream().await).await;
    let total = 24_000_000;
    let data = pattern(total);
    let conn = TcpStream::connect(via).await.unwrap();
    let (mut r, mut w) = conn.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move { w.write_all(&sent).await.map(|_| w) });
    let mut got = Vec::with_capacity(total);
    let mut buf = vec![0u8; 1 << 16];
    let mut stage = 0;
    while got.len() < total {
        let n = timeout(DEADLINE, r.read(&mut buf)).await.expect("stream stalled").unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        // Toggle toxics at a few points of the transfer, in both directions.
        let mark = [4_000_000, 8_000_000, 12_000_000, 16_000_000];
        if stage < mark.len() && got.len() >= mark[stage] {
            let (remove, add) = match stage {
                0 => (None, Some(toxic("l", "latency", "downstream", json!({"latency": 1})))),
                1 => (Some("l"), Some(toxic("s", "slicer", "upstream", json!({"average_size": 4096})))),
                2 => (Some("s"), Some(toxic("b", "bandwidth", "downstream", json!({"rate": 200_000})))),
                _ => (Some("b"), None),
            };
            if let Some(name) = remove {
                server.remove_toxic("p", name).await.unwrap();
            }
            if let Some(t) = add {
                server.add_toxic("p", t).await.unwrap();
            }
            stage += 1;
        }
    }
    writer.await.unwrap().unwrap();
    assert_eq!(stage, 4, "not every toggle happened");
    assert!(
        got == data,
        "stream differs (first difference at byte {:?})",
        got.iter().zip(&data).position(|(a, b)| a != b)
    );
    let stats = server.stats("p").await.unwrap();
    assert_eq!(stats.upstream.sent_bytes, total as u64, "{stats:?}");
    assert_eq!(stats.downstream.received_bytes, total as u64, "{stats:?}");
}

/// An upstream that reports when each read arrived (and what it held), so a test can time the one-way trip.
async fn timing_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<(Instant, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = conn.read(&mut buf).await {
                    let _ = tx.send((Instant::now(), buf[..n].to_vec()));
                }
            });
        }
    });
    (addr, rx)
}

/// A latency toxic never delivers early: every chunk reaches the upstream at least `latency` after the client
/// wrote it (the proxy used to release what was due within the next millisecond, up to 1 ms early).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_never_delivers_before_the_configured_delay() {
    let server = Server::new(ServerConfig { seed: Some(7), metrics: false });
    let (upstream, mut arrivals) = timing_upstream().await;
    let via = proxy_to(&server, "p", upstream).await;
    for (latency_ms, rounds) in [(20u64, 200usize), (150, 5)] {
        let attributes = json!({"latency": latency_ms, "jitter": 0});
        server.add_toxic("p", toxic("late", "latency", "upstream", attributes)).await.unwrap();
        let mut conn = TcpStream::connect(via).await.unwrap();
        conn.set_nodelay(true).unwrap();
        let latency = Duration::from_millis(latency_ms);
        let mut shortest = Duration::MAX;
        for round in 0..rounds {
            let payload = [(round % 251) as u8];
            let sent = Instant::now();
            conn.write_all(&payload).await.unwrap();
            let (arrived, data) = timeout(DEADLINE, arrivals.recv()).await.expect("nothing arrived").unwrap();
            assert_eq!(data, payload, "round {round}");
            let took = arrived - sent;
            shortest = shortest.min(took);
            assert!(took >= latency, "{latency_ms} ms toxic, round {round}: delivered after only {took:?}");
        }
        drop(conn);
        server.remove_toxic("p", "late").await.unwrap();
        eprintln!("{latency_ms} ms toxic: shortest of {rounds} deliveries {shortest:?}");
    }
}
