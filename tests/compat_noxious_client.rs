//! Proves that the published async `noxious-client` 1.0.4 works unchanged against `chaos proxy`: proxy create, find,
//! list, update, delete, every toxic kind it can express (sent with its `direction` key), reset, and the API errors it
//! decodes, each checked with real traffic through the proxy.
//!
//! Known incompatibilities of this client with real Toxiproxy, which we reproduce rather than paper over:
//! - `populate` expects a bare array, while Toxiproxy (and we) answer `{"proxies":[...]}`: the client reports a decode
//!   error although the proxies were created.
//! - `noop` toxics: it cannot decode their `"attributes":{}`, so adding one reports an error although it was added.
//! - `create_proxy` returns its *request* (`listen` still `…:0`); a later `save`/`disable` on that object would send
//!   the `:0` address back and move the proxy to a new port. Tests therefore re-fetch proxies with `Client::proxy`,
//!   which reports the bound address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use noxious_client::error::{ApiErrorResponse, ClientError};
use noxious_client::{Client, Proxy, ProxyConfig, StreamDirection, Toxic, ToxicKind};
use support::{
    ChaosProxy, Closed, assert_refused, closing_server, connect, echo_server, listen_addr, read_until_closed,
    round_trip,
};

/// How long a connection may take to close where a test expects it to.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// One server instance, a client for it and an echo upstream.
struct Fixture {
    /// Kept so the server lives as long as the test.
    _server: ChaosProxy,
    client: Client,
    echo: SocketAddr,
}

fn fixture() -> Fixture {
    let server = ChaosProxy::start(&[]);
    let client = Client::new(&server.url());
    Fixture { _server: server, client, echo: echo_server() }
}

impl Fixture {
    /// Creates a proxy to `upstream` on a kernel-chosen port and returns it as the server reports it.
    async fn proxy_to(&self, name: &str, upstream: SocketAddr) -> Proxy {
        self.client.create_proxy(name, "127.0.0.1:0", &upstream.to_string()).await.expect("create_proxy");
        self.client.proxy(name).await.expect("get the created proxy")
    }

    async fn proxy(&self, name: &str) -> Proxy {
        self.proxy_to(name, self.echo).await
    }
}

fn addr(proxy: &Proxy) -> SocketAddr {
    listen_addr(&proxy.config.listen)
}

fn toxic(name: &str, direction: StreamDirection, kind: ToxicKind) -> Toxic {
    Toxic { kind, name: name.to_owned(), toxicity: 1.0, direction }
}

/// Asserts every field, since `Toxic`'s `PartialEq` compares names only.
fn assert_same_toxic(got: &Toxic, want: &Toxic) {
    assert_eq!(got.name, want.name, "name of {got:?}");
    assert_eq!(got.kind, want.kind, "type and attributes of {got:?}");
    assert_eq!(got.direction, want.direction, "stream of {got:?}");
    assert_eq!(got.toxicity, want.toxicity, "toxicity of {got:?}");
}

fn api_error(result: Result<impl std::fmt::Debug, ClientError>, status: u16, message: &str) {
    let want = ClientError::ApiError(ApiErrorResponse { message: message.to_owned(), status_code: status });
    assert_eq!(result.expect_err("expected an API error"), want);
}

fn at_least(elapsed: Duration, injected_ms: u64, what: &str) {
    // 90 % of the injected delay: timers may fire a hair early relative to our clock reads, never much more.
    let floor = Duration::from_millis(injected_ms * 9 / 10);
    assert!(
        elapsed >= floor,
        "{what}: took {elapsed:?}, expected at least {floor:?} ({injected_ms} ms injected)"
    );
}

// Socket I/O below is blocking std I/O on the test thread; the multi-threaded runtime keeps reqwest's connection
// tasks on worker threads, so nothing waits on a blocked thread.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_find_and_list_report_the_bound_address() {
    let f = fixture();
    let created =
        f.client.create_proxy("echo", "127.0.0.1:0", &f.echo.to_string()).await.expect("create_proxy");
    assert!(created.is_enabled());

    let proxy = f.client.proxy("echo").await.expect("proxy");
    assert_eq!(proxy.config.name, "echo");
    assert_eq!(proxy.config.upstream, f.echo.to_string());
    assert!(proxy.is_enabled());
    let listen = addr(&proxy);
    assert_eq!(listen.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(listen.port(), 0, "port 0 must be reported as the bound port");
    assert!(proxy.toxics().await.expect("toxics").is_empty());

    let all = f.client.proxies().await.expect("proxies");
    assert_eq!(all.keys().collect::<Vec<_>>(), ["echo"]);
    assert_eq!(all["echo"].config.listen, proxy.config.listen);

    let mut conn = connect(listen);
    round_trip(&mut conn, b"hello through chaos");
    round_trip(&mut conn, &vec![9u8; 256 * 1024]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_port_zero_is_reported_as_ipv4_ip_and_port() {
    let f = fixture();
    f.client.create_proxy("lh", "localhost:0", &f.echo.to_string()).await.expect("create_proxy");
    let proxy = f.client.proxy("lh").await.unwrap();
    let listen = addr(&proxy);
    assert_eq!(listen.ip(), Ipv4Addr::LOCALHOST, "clients split `listen` on ':', so it must be IPv4 ip:port");
    assert_ne!(listen.port(), 0);
    round_trip(&mut connect(listen), b"via localhost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_decoded() {
    let f = fixture();
    let proxy = f.proxy("p").await;
    let upstream = f.echo.to_string();

    api_error(f.client.create_proxy("p", "127.0.0.1:0", &upstream).await, 409, "proxy already exists");
    api_error(f.client.proxy("missing").await, 404, "proxy not found");
    api_error(f.client.create_proxy("", "127.0.0.1:0", &upstream).await, 400, "missing required field: name");
    api_error(f.client.create_proxy("u", "127.0.0.1:0", "").await, 400, "missing required field: upstream");

    let latency = ToxicKind::Latency { latency: 10, jitter: 0 };
    proxy.add_toxic(&toxic("t", StreamDirection::Upstream, latency)).await.expect("add_toxic");
    // Toxic names are unique across both directions.
    api_error(
        proxy.add_toxic(&toxic("t", StreamDirection::Downstream, latency)).await,
        409,
        "toxic already exists",
    );
    api_error(proxy.remove_toxic("nope").await, 404, "toxic not found");
    api_error(
        proxy.update_toxic("nope", 1.0, latency, StreamDirection::Downstream).await,
        404,
        "toxic not found",
    );

    // Binding an address that is in use is an OS error, reported as 500 with the OS text.
    let err =
        f.client.create_proxy("busy", &f.echo.to_string(), &upstream).await.expect_err("bind must fail");
    match err {
        ClientError::ApiError(e) => {
            assert_eq!(e.status_code, 500, "{e:?}");
            assert!(e.message.to_lowercase().contains("address already in use"), "{e:?}");
        }
        other => panic!("expected a 500 API error, got {other:?}"),
    }

    let gone = f.client.proxy("p").await.unwrap();
    gone.delete().await.expect("delete");
    api_error(
        proxy.add_toxic(&toxic("t2", StreamDirection::Upstream, latency)).await,
        404,
        "proxy not found",
    );
    api_error(proxy.toxics().await, 404, "proxy not found");
    api_error(proxy.clone().delete().await, 404, "proxy not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_expressible_toxic_kind_round_trips_with_the_direction_key() {
    let f = fixture();
    let proxy = f.proxy("kinds").await;
    use StreamDirection::{Downstream, Upstream};
    let wanted = [
        toxic("lat", Downstream, ToxicKind::Latency { latency: 1, jitter: 1 }),
        toxic("bw", Upstream, ToxicKind::Bandwidth { rate: 100_000 }),
        toxic("sc", Downstream, ToxicKind::SlowClose { delay: 1 }),
        toxic("to", Upstream, ToxicKind::Timeout { timeout: 5000 }),
        toxic("sl", Downstream, ToxicKind::Slicer { average_size: 64, size_variation: 8, delay: 10 }),
        toxic("ld", Upstream, ToxicKind::LimitData { bytes: 1 << 20 }),
        Toxic { toxicity: 0.5, ..toxic("half", Downstream, ToxicKind::Latency { latency: 2, jitter: 0 }) },
    ];
    for want in &wanted {
        let got = proxy.add_toxic(want).await.unwrap_or_else(|e| panic!("add_toxic {want:?}: {e}"));
        assert_same_toxic(&got, want);
    }
    // Upstream chain first, then downstream, each in insertion order.
    let listed = proxy.toxics().await.expect("toxics");
    let names: Vec<_> = listed.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["bw", "to", "ld", "lat", "sc", "sl", "half"]);
    for got in &listed {
        assert_same_toxic(got, wanted.iter().find(|w| w.name == got.name).unwrap());
    }
    let fetched = f.client.proxy("kinds").await.unwrap().toxics().await.unwrap();
    assert_eq!(fetched.len(), wanted.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_toxic_is_created_though_the_client_cannot_decode_it() {
    let f = fixture();
    let proxy = f.proxy("nop").await;
    // noxious-client models `noop` as a unit variant and cannot decode the `"attributes":{}` that Toxiproxy (and we)
    // send with it, so it reports a decode error for a toxic that was created.
    let result = proxy.add_toxic(&toxic("nop", StreamDirection::Upstream, ToxicKind::Noop)).await;
    assert!(matches!(result, Err(ClientError::IoError(_))), "expected a decode error, got {result:?}");
    round_trip(&mut connect(addr(&proxy)), b"noop passes bytes through");
    proxy.remove_toxic("nop").await.expect("the noop toxic exists and can be removed");
    assert!(proxy.toxics().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_and_downstream_latency_delay_live_connections_and_update_applies_live() {
    let f = fixture();
    let proxy = f.proxy("lat").await;
    let mut live = connect(addr(&proxy));
    round_trip(&mut live, b"before");

    let up = ToxicKind::Latency { latency: 150, jitter: 0 };
    proxy.add_toxic(&toxic("up", StreamDirection::Upstream, up)).await.expect("add upstream latency");
    at_least(round_trip(&mut live, b"up"), 150, "upstream latency on a live connection");

    let down = ToxicKind::Latency { latency: 100, jitter: 0 };
    proxy.add_toxic(&toxic("down", StreamDirection::Downstream, down)).await.expect("add downstream latency");
    at_least(round_trip(&mut live, b"both"), 250, "upstream plus downstream latency");

    let slower = ToxicKind::Latency { latency: 400, jitter: 0 };
    let updated =
        proxy.update_toxic("down", 1.0, slower, StreamDirection::Downstream).await.expect("update_toxic");
    assert_same_toxic(&updated, &toxic("down", StreamDirection::Downstream, slower));
    at_least(round_trip(&mut live, b"updated"), 550, "updated latency on a live connection");

    proxy.remove_toxic("up").await.expect("remove_toxic");
    proxy.remove_toxic("down").await.expect("remove_toxic");
    assert!(proxy.toxics().await.unwrap().is_empty());
    round_trip(&mut live, b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_paces_bytes() {
    let f = fixture();
    let proxy = f.proxy("bw").await;
    let bw = toxic("bw", StreamDirection::Upstream, ToxicKind::Bandwidth { rate: 10 });
    proxy.add_toxic(&bw).await.expect("add_toxic");
    // 3000 bytes at 10 KB/s (KB = 1000 B) take 300 ms.
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    at_least(round_trip(&mut connect(addr(&proxy)), &payload), 300, "3000 bytes at 10 KB/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_delivers_every_byte_in_delayed_slices() {
    let f = fixture();
    let proxy = f.proxy("sl").await;
    let kind = ToxicKind::Slicer { average_size: 10, size_variation: 0, delay: 5000 };
    proxy.add_toxic(&toxic("sl", StreamDirection::Upstream, kind)).await.expect("add_toxic");
    // 100 bytes in slices of at most 10 bytes, 5 ms (5000 µs) after each: at least 10 x 5 ms.
    let payload: Vec<u8> = (100..200u8).collect();
    at_least(round_trip(&mut connect(addr(&proxy)), &payload), 50, "100 bytes sliced by 10 with 5 ms delays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close_delays_the_close() {
    let f = fixture();
    let proxy = f.proxy_to("sc", closing_server(b"bye")).await;
    let kind = ToxicKind::SlowClose { delay: 300 };
    proxy.add_toxic(&toxic("sc", StreamDirection::Downstream, kind)).await.expect("add_toxic");
    // The upstream closes right after its greeting, so after we connect; the close reaches us 300 ms later at least.
    let start = Instant::now();
    let (data, how) = read_until_closed(&mut connect(addr(&proxy)), CLOSE_DEADLINE);
    assert_eq!(data, b"bye");
    assert_eq!(how, Closed::Eof);
    at_least(start.elapsed(), 300, "close through slow_close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_drops_data_then_closes_when_idle() {
    let f = fixture();
    let proxy = f.proxy("to").await;
    let kind = ToxicKind::Timeout { timeout: 200 };
    proxy.add_toxic(&toxic("to", StreamDirection::Upstream, kind)).await.expect("add_toxic");
    let mut conn = connect(addr(&proxy));
    let start = Instant::now();
    conn.write_all(b"dropped").unwrap();
    let (data, _) = read_until_closed(&mut conn, CLOSE_DEADLINE);
    assert!(data.is_empty(), "the timeout toxic must drop data, got {data:?}");
    at_least(start.elapsed(), 200, "close by an idle timeout of 200 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_truncates_then_closes() {
    let f = fixture();
    let proxy = f.proxy("ld").await;
    // Downstream: an upstream limit would close the upstream socket before the echo's reply could come back.
    proxy
        .add_toxic(&toxic("ld", StreamDirection::Downstream, ToxicKind::LimitData { bytes: 4 }))
        .await
        .unwrap();
    let mut conn = connect(addr(&proxy));
    conn.write_all(b"abcdefgh").unwrap();
    let (data, _) = read_until_closed(&mut conn, CLOSE_DEADLINE);
    assert_eq!(data, b"abcd", "limit_data must forward exactly 4 bytes and then close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_refuses_connections_and_enable_restores_them() {
    let f = fixture();
    let mut proxy = f.proxy("toggle").await;
    let listen = addr(&proxy);
    let latency = ToxicKind::Latency { latency: 5, jitter: 0 };
    proxy.add_toxic(&toxic("lat", StreamDirection::Downstream, latency)).await.unwrap();
    let mut live = connect(listen);
    round_trip(&mut live, b"up");

    proxy.disable().await.expect("disable");
    assert!(!f.client.proxy("toggle").await.unwrap().is_enabled(), "the server must report enabled:false");
    assert_refused(listen);
    // Disabling closes live connections (read_until_closed panics if this one stays open).
    read_until_closed(&mut live, CLOSE_DEADLINE);

    proxy.enable().await.expect("enable");
    let found = f.client.proxy("toggle").await.unwrap();
    assert!(found.is_enabled());
    assert_eq!(addr(&found), listen, "enable re-listens on the same address");
    assert_eq!(found.toxics().await.unwrap().len(), 1, "toxics survive disable/enable");
    round_trip(&mut connect(listen), b"up again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_name_leaves_the_name_unchanged() {
    let f = fixture();
    let mut proxy = f.proxy("fixed").await;
    // The client posts the new name to the old path; names are immutable, and the other fields are unchanged.
    proxy.change_name("renamed").await.expect("update with another name");
    api_error(f.client.proxy("renamed").await, 404, "proxy not found");
    let found = f.client.proxy("fixed").await.expect("the proxy keeps its name");
    assert_eq!(found.config.listen, proxy.config.listen);
    round_trip(&mut connect(addr(&found)), b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_proxy_and_closes_its_listener_and_connections() {
    let f = fixture();
    let proxy = f.proxy("gone").await;
    let kept = f.proxy("kept").await;
    let listen = addr(&proxy);
    let mut live = connect(listen);
    round_trip(&mut live, b"alive");

    proxy.delete().await.expect("delete");
    api_error(f.client.proxy("gone").await, 404, "proxy not found");
    assert_eq!(f.client.proxies().await.unwrap().into_keys().collect::<Vec<_>>(), ["kept"]);
    assert_refused(listen);
    read_until_closed(&mut live, CLOSE_DEADLINE);
    round_trip(&mut connect(addr(&kept)), b"the other proxy is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_state_removes_all_toxics_and_enables_every_proxy() {
    let f = fixture();
    let mut names = Vec::new();
    for name in ["r1", "r2"] {
        let proxy = f.proxy(name).await;
        let slow = ToxicKind::Latency { latency: 3000, jitter: 0 };
        proxy.add_toxic(&toxic("up", StreamDirection::Upstream, slow)).await.unwrap();
        proxy
            .add_toxic(&toxic("down", StreamDirection::Downstream, ToxicKind::Timeout { timeout: 0 }))
            .await
            .unwrap();
        names.push((name, proxy.config.listen.clone()));
    }
    f.client.proxy("r2").await.unwrap().disable().await.unwrap();

    f.client.reset_state().await.expect("reset_state");

    let all = f.client.proxies().await.unwrap();
    assert_eq!(all.len(), 2, "reset must not delete proxies");
    for (name, listen) in names {
        let proxy = &all[name];
        assert!(proxy.is_enabled(), "reset must re-enable {name}");
        assert_eq!(proxy.config.listen, listen, "reset keeps the listen address of {name}");
        assert!(proxy.toxics().await.unwrap().is_empty(), "reset must remove every toxic of {name}");
        let elapsed = round_trip(&mut connect(addr(proxy)), b"after reset");
        assert!(elapsed < Duration::from_millis(1500), "no 3000 ms latency may be left, took {elapsed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populate_creates_the_proxies_but_the_client_cannot_decode_the_reply() {
    let f = fixture();
    let configs: Vec<ProxyConfig> = ["pa", "pb"]
        .map(|name| ProxyConfig {
            name: name.to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            upstream: f.echo.to_string(),
            enabled: true,
            rand_seed: None,
        })
        .into();
    // noxious-client expects a bare array; Toxiproxy answers `{"proxies":[...]}` (201) and so do we, so the client
    // fails to decode a successful reply. The proxies exist all the same.
    let result = f.client.populate(&configs).await;
    assert!(matches!(result, Err(ClientError::IoError(_))), "expected a decode error, got {result:?}");

    let all = f.client.proxies().await.expect("proxies");
    let mut names: Vec<_> = all.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["pa", "pb"]);
    for proxy in all.values() {
        assert!(proxy.is_enabled());
        round_trip(&mut connect(addr(proxy)), proxy.config.name.as_bytes());
    }
}
