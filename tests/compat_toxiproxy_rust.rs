//! Proves that the published `toxiproxy_rust` 0.1.6 client works unchanged against `chaos proxy`: proxies, every
//! toxic type the client can express, its scoped helpers (`with_down`, `apply`), reset and the errors it surfaces,
//! each checked with real traffic through the proxy.
//!
//! The client ignores HTTP status codes (a 409 or 404 only shows up when it fails to parse the body), so every effect
//! is checked by reading the server's state back and by sending bytes through the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use support::{
    ChaosProxy, Closed, assert_refused, closing_server, connect, echo_server, listen_addr, read_until_closed,
    round_trip,
};
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::{Proxy, ProxyPack};
use toxiproxy_rust::toxic::ToxicPack;

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
    let client = Client::new(server.api);
    Fixture { _server: server, client, echo: echo_server() }
}

impl Fixture {
    /// Creates one proxy to the echo server on a kernel-chosen port (the client's only way to create is populate).
    fn proxy(&self, name: &str) -> Proxy {
        let mut created = self
            .client
            .populate(vec![ProxyPack::new(name.into(), "127.0.0.1:0".into(), self.echo.to_string())])
            .expect("populate");
        assert_eq!(created.len(), 1, "populate of one proxy returned {created:?}");
        created.remove(0)
    }
}

fn addr(proxy: &Proxy) -> SocketAddr {
    listen_addr(&proxy.proxy_pack.listen)
}

fn attrs(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Asserts the full wire shape of a toxic as the client decoded it.
fn assert_toxic(
    toxic: &ToxicPack,
    name: &str,
    kind: &str,
    stream: &str,
    toxicity: f32,
    attributes: &[(&str, u32)],
) {
    assert_eq!(toxic.name, name, "toxic name in {toxic:?}");
    assert_eq!(toxic.r#type, kind, "toxic type in {toxic:?}");
    assert_eq!(toxic.stream, stream, "toxic stream in {toxic:?}");
    assert_eq!(toxic.toxicity, toxicity, "toxicity in {toxic:?}");
    assert_eq!(
        toxic.attributes,
        attrs(attributes),
        "all attributes of the type, zeros included, in {toxic:?}"
    );
}

fn toxic_names(proxy: &Proxy) -> Vec<String> {
    proxy.toxics().expect("list toxics").into_iter().map(|t| t.name).collect()
}

/// Smallest of a few round trips on a fresh connection: the no-toxic baseline.
fn baseline(addr: SocketAddr) -> Duration {
    let mut conn = connect(addr);
    (0..5).map(|_| round_trip(&mut conn, b"baseline")).min().unwrap()
}

fn at_least(elapsed: Duration, injected_ms: u64, what: &str) {
    // 90 % of the injected delay: timers may fire a hair early relative to our clock reads, never much more.
    let floor = Duration::from_millis(injected_ms * 9 / 10);
    assert!(
        elapsed >= floor,
        "{what}: took {elapsed:?}, expected at least {floor:?} ({injected_ms} ms injected)"
    );
}

#[test]
fn version_and_health_check() {
    let f = fixture();
    assert!(f.client.is_running(), "is_running() should see the admin port");
    let body = f.client.version().expect("version");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/version is not JSON ({e}): {body:?}"));
    let version = json["version"].as_str().unwrap_or_else(|| panic!("no \"version\" string in {body:?}"));
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(parts.len() == 3 && (parts[0], parts[1]) >= (2, 6), "version {version} should be >= 2.6.0");
}

#[test]
fn populate_reports_bound_address_and_carries_traffic() {
    let f = fixture();
    let proxy = f.proxy("echo");
    let pack = &proxy.proxy_pack;
    assert_eq!(pack.name, "echo");
    assert_eq!(pack.upstream, f.echo.to_string());
    assert!(pack.enabled, "a new proxy is enabled");
    assert!(pack.toxics.is_empty(), "a new proxy has no toxics");
    let listen = addr(&proxy);
    assert_eq!(listen.ip(), Ipv4Addr::LOCALHOST, "listen {listen} should keep the requested IPv4 loopback");
    assert_ne!(listen.port(), 0, "port 0 must be reported as the bound port");

    let found = f.client.find_proxy("echo").expect("find_proxy");
    assert_eq!(found.proxy_pack.listen, pack.listen, "GET /proxies/echo reports the same bound address");
    let all = f.client.all().expect("all");
    assert_eq!(all.keys().collect::<Vec<_>>(), ["echo"]);
    assert_eq!(all["echo"].proxy_pack.listen, pack.listen);

    let mut conn = connect(listen);
    round_trip(&mut conn, b"hello through chaos");
    round_trip(&mut conn, &vec![7u8; 256 * 1024]);
}

#[test]
fn populate_creates_several_proxies_on_distinct_ports() {
    let f = fixture();
    let packs = ["a", "b", "c"]
        .map(|name| ProxyPack::new(name.into(), "127.0.0.1:0".into(), f.echo.to_string()))
        .into_iter()
        .collect();
    let created = f.client.populate(packs).expect("populate");
    let names: Vec<_> = created.iter().map(|p| p.proxy_pack.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "populate answers the proxies in input order");
    let mut ports: Vec<_> = created.iter().map(|p| addr(p).port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "each proxy bound its own port: {created:?}");
    let mut all: Vec<_> = f.client.all().expect("all").into_keys().collect();
    all.sort();
    assert_eq!(all, ["a", "b", "c"]);
    for proxy in &created {
        round_trip(&mut connect(addr(proxy)), proxy.proxy_pack.name.as_bytes());
    }
}

#[test]
fn populate_keeps_an_identical_proxy_and_replaces_a_changed_one() {
    let f = fixture();
    let proxy = f.proxy("db");
    let listen = proxy.proxy_pack.listen.clone();
    proxy.with_latency("downstream".into(), 50, 0, 1.0);
    assert_eq!(toxic_names(&proxy), ["latency_downstream"]);

    // Same name, listen and upstream: the running proxy is kept untouched, toxics included.
    f.client
        .populate(vec![ProxyPack::new("db".into(), listen.clone(), f.echo.to_string())])
        .expect("populate again");
    let kept = f.client.find_proxy("db").expect("find_proxy");
    assert_eq!(kept.proxy_pack.listen, listen);
    assert_eq!(toxic_names(&kept), ["latency_downstream"], "an identical populate must keep the toxics");

    // A different upstream replaces it with a fresh proxy without toxics.
    let other_echo = echo_server();
    f.client
        .populate(vec![ProxyPack::new("db".into(), "127.0.0.1:0".into(), other_echo.to_string())])
        .expect("populate with a new upstream");
    let replaced = f.client.find_proxy("db").expect("find_proxy");
    assert_eq!(replaced.proxy_pack.upstream, other_echo.to_string());
    assert!(replaced.proxy_pack.toxics.is_empty(), "a replaced proxy starts without toxics: {replaced:?}");
    round_trip(&mut connect(addr(&replaced)), b"to the new upstream");
}

#[test]
fn find_proxy_surfaces_an_error_for_a_missing_proxy() {
    let f = fixture();
    // The client does not look at the status: the 404 body does not decode as a proxy, and that is the error.
    let err = f.client.find_proxy("missing").expect_err("find_proxy of a missing proxy must fail");
    assert!(err.contains("json"), "unexpected error text: {err}");
    assert!(
        f.client.find_and_reset_proxy("missing").is_err(),
        "find_and_reset_proxy of a missing proxy must fail"
    );
}

#[test]
fn latency_toxics_delay_live_and_new_connections_in_both_directions() {
    let f = fixture();
    let proxy = f.proxy("lat");
    let listen = addr(&proxy);
    let base = baseline(listen);
    let mut live = connect(listen);
    round_trip(&mut live, b"before");

    proxy.with_latency("downstream".into(), 200, 0, 1.0);
    let toxics = proxy.toxics().expect("toxics");
    assert_eq!(toxics.len(), 1, "{toxics:?}");
    assert_toxic(
        &toxics[0],
        "latency_downstream",
        "latency",
        "downstream",
        1.0,
        &[("latency", 200), ("jitter", 0)],
    );
    at_least(round_trip(&mut live, b"live"), 200, "round trip on a connection opened before the toxic");
    at_least(round_trip(&mut connect(listen), b"new"), 200, "round trip on a new connection");

    proxy.with_latency("upstream".into(), 100, 0, 1.0);
    assert_eq!(
        toxic_names(&proxy),
        ["latency_upstream", "latency_downstream"],
        "upstream chain is listed first"
    );
    at_least(
        round_trip(&mut connect(listen), b"both"),
        300,
        "round trip through upstream and downstream latency",
    );

    proxy.delete_all_toxics().expect("delete_all_toxics");
    assert!(toxic_names(&proxy).is_empty());
    round_trip(&mut live, b"after");
    assert!(base < Duration::from_secs(1), "baseline round trip {base:?}");
}

#[test]
fn zero_toxicity_latency_never_applies() {
    let f = fixture();
    let proxy = f.proxy("never");
    proxy.with_latency("downstream".into(), 3000, 0, 0.0);
    let toxics = proxy.toxics().expect("toxics");
    assert_toxic(
        &toxics[0],
        "latency_downstream",
        "latency",
        "downstream",
        0.0,
        &[("latency", 3000), ("jitter", 0)],
    );
    let elapsed = round_trip(&mut connect(addr(&proxy)), b"unaffected");
    assert!(
        elapsed < Duration::from_millis(1500),
        "toxicity 0 must never apply, round trip took {elapsed:?}"
    );
}

#[test]
fn bandwidth_toxic_paces_bytes() {
    let f = fixture();
    let proxy = f.proxy("bw");
    proxy.with_bandwidth("downstream".into(), 10, 1.0);
    assert_toxic(
        &proxy.toxics().unwrap()[0],
        "bandwidth_downstream",
        "bandwidth",
        "downstream",
        1.0,
        &[("rate", 10)],
    );
    // 3000 bytes at 10 KB/s (KB = 1000 B) take 300 ms.
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    at_least(round_trip(&mut connect(addr(&proxy)), &payload), 300, "3000 bytes at 10 KB/s");
}

#[test]
fn slow_close_toxic_delays_the_close() {
    let f = fixture();
    let upstream = closing_server(b"bye");
    let proxy = f
        .client
        .populate(vec![ProxyPack::new("sc".into(), "127.0.0.1:0".into(), upstream.to_string())])
        .expect("populate")
        .remove(0);
    proxy.with_slow_close("downstream".into(), 300, 1.0);
    assert_toxic(
        &proxy.toxics().unwrap()[0],
        "slow_close_downstream",
        "slow_close",
        "downstream",
        1.0,
        &[("delay", 300)],
    );
    // The upstream closes right after its greeting, so after the connection is opened; the close reaches us 300 ms
    // after that at the earliest.
    let start = Instant::now();
    let mut conn = connect(addr(&proxy));
    let (data, how) = read_until_closed(&mut conn, CLOSE_DEADLINE);
    assert_eq!(data, b"bye");
    assert_eq!(how, Closed::Eof);
    at_least(start.elapsed(), 300, "close through slow_close");
}

#[test]
fn timeout_toxic_drops_data_then_closes_when_idle() {
    let f = fixture();
    let proxy = f.proxy("to");
    proxy.with_timeout("downstream".into(), 200, 1.0);
    assert_toxic(
        &proxy.toxics().unwrap()[0],
        "timeout_downstream",
        "timeout",
        "downstream",
        1.0,
        &[("timeout", 200)],
    );
    let mut conn = connect(addr(&proxy));
    let start = Instant::now();
    conn.write_all(b"dropped").unwrap();
    let (data, _) = read_until_closed(&mut conn, CLOSE_DEADLINE);
    assert!(data.is_empty(), "the timeout toxic must drop data, got {data:?}");
    at_least(start.elapsed(), 200, "close by an idle timeout of 200 ms");
}

#[test]
fn apply_removes_toxics_and_removing_a_timeout_closes_its_connections() {
    let f = fixture();
    let proxy = f.proxy("scoped");
    let mut conn = connect(addr(&proxy));
    round_trip(&mut conn, b"before");

    // `timeout: 0` drops data and never closes by itself; `apply` deletes every toxic after the closure.
    proxy
        .with_timeout("downstream".into(), 0, 1.0)
        .with_latency("upstream".into(), 10, 0, 1.0)
        .apply(|| {
            assert_eq!(toxic_names(&proxy), ["latency_upstream", "timeout_downstream"]);
            conn.write_all(b"dropped").unwrap();
            conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            let mut buf = [0u8; 16];
            let got = std::io::Read::read(&mut conn, &mut buf);
            assert!(
                got.as_ref().is_err_and(|e| matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )),
                "timeout 0 must hold the connection open and deliver nothing, read gave {got:?}"
            );
        })
        .expect("apply");

    assert!(toxic_names(&proxy).is_empty(), "apply must remove the toxics after the closure");
    // Data was dropped, so removing the timeout toxic closes the connections it was on (Toxiproxy PR #168).
    let (data, _) = read_until_closed(&mut conn, CLOSE_DEADLINE);
    assert!(data.is_empty(), "nothing may arrive after the timeout toxic dropped data, got {data:?}");
    round_trip(&mut connect(addr(&proxy)), b"new connections are clean");
}

#[test]
fn slicer_toxic_delivers_every_byte_in_delayed_slices() {
    let f = fixture();
    let proxy = f.proxy("slice");
    proxy.with_slicer("downstream".into(), 10, 0, 5000, 1.0);
    assert_toxic(
        &proxy.toxics().unwrap()[0],
        "slicer_downstream",
        "slicer",
        "downstream",
        1.0,
        &[("average_size", 10), ("size_variation", 0), ("delay", 5000)],
    );
    // 100 bytes in slices of at most 10 bytes, 5 ms (5000 µs) after each: at least 10 x 5 ms.
    let payload: Vec<u8> = (0..100u8).collect();
    at_least(round_trip(&mut connect(addr(&proxy)), &payload), 50, "100 bytes sliced by 10 with 5 ms delays");
}

#[test]
fn limit_data_toxic_truncates_then_closes() {
    let f = fixture();
    let proxy = f.proxy("limit");
    proxy.with_limit_data("downstream".into(), 5, 1.0);
    assert_toxic(
        &proxy.toxics().unwrap()[0],
        "limit_data_downstream",
        "limit_data",
        "downstream",
        1.0,
        &[("bytes", 5)],
    );
    let mut conn = connect(addr(&proxy));
    conn.write_all(b"0123456789").unwrap();
    let (data, _) = read_until_closed(&mut conn, CLOSE_DEADLINE);
    assert_eq!(data, b"01234", "limit_data must forward exactly 5 bytes and then close");
}

#[test]
fn duplicate_toxic_is_refused_and_the_first_kept() {
    let f = fixture();
    let proxy = f.proxy("dup");
    proxy.with_latency("downstream".into(), 100, 0, 1.0);
    // Same default name `latency_downstream`: the server answers 409, which this client does not report.
    proxy.with_latency("downstream".into(), 900, 0, 1.0);
    let toxics = proxy.toxics().expect("toxics");
    assert_eq!(toxics.len(), 1, "a duplicate toxic name must be refused: {toxics:?}");
    assert_eq!(toxics[0].attributes["latency"], 100, "the first toxic must be kept unchanged");
}

#[test]
fn disable_refuses_connections_and_enable_restores_them() {
    let f = fixture();
    let proxy = f.proxy("toggle");
    let listen = addr(&proxy);
    let mut live = connect(listen);
    round_trip(&mut live, b"up");

    proxy.disable().expect("disable");
    assert!(!f.client.find_proxy("toggle").unwrap().proxy_pack.enabled, "disable must report enabled:false");
    assert_refused(listen);
    // Disabling closes live connections (read_until_closed panics if this one stays open).
    read_until_closed(&mut live, CLOSE_DEADLINE);

    proxy.enable().expect("enable");
    let found = f.client.find_proxy("toggle").unwrap();
    assert!(found.proxy_pack.enabled);
    assert_eq!(addr(&found), listen, "enable re-listens on the same address");
    round_trip(&mut connect(listen), b"up again");
}

#[test]
fn with_down_runs_the_closure_while_disabled_then_enables() {
    let f = fixture();
    let proxy = f.proxy("down");
    let listen = addr(&proxy);
    proxy.with_latency("upstream".into(), 20, 0, 1.0);
    let mut live = connect(listen);
    round_trip(&mut live, b"up");

    let mut ran = false;
    proxy
        .with_down(|| {
            ran = true;
            assert_refused(listen);
            read_until_closed(&mut live, CLOSE_DEADLINE);
            assert!(!f.client.find_proxy("down").unwrap().proxy_pack.enabled);
        })
        .expect("with_down");
    assert!(ran);

    let found = f.client.find_proxy("down").unwrap();
    assert!(found.proxy_pack.enabled, "with_down must enable the proxy after the closure");
    assert_eq!(toxic_names(&found), ["latency_upstream"], "toxics survive disable/enable");
    round_trip(&mut connect(listen), b"up again");
}

#[test]
fn find_and_reset_proxy_removes_toxics_and_enables() {
    let f = fixture();
    let proxy = f.proxy("fr");
    proxy.with_latency("downstream".into(), 10, 0, 1.0).with_limit_data("upstream".into(), 100, 1.0);
    proxy.disable().unwrap();

    let reset = f.client.find_and_reset_proxy("fr").expect("find_and_reset_proxy");
    assert!(toxic_names(&reset).is_empty());
    let found = f.client.find_proxy("fr").unwrap();
    assert!(found.proxy_pack.enabled && found.proxy_pack.toxics.is_empty(), "{found:?}");
    round_trip(&mut connect(addr(&found)), b"clean");
}

#[test]
fn reset_removes_all_toxics_in_both_directions_and_enables_every_proxy() {
    let f = fixture();
    let packs = ["r1", "r2"]
        .map(|name| ProxyPack::new(name.into(), "127.0.0.1:0".into(), f.echo.to_string()))
        .into_iter()
        .collect();
    let proxies = f.client.populate(packs).expect("populate");
    for proxy in &proxies {
        proxy
            .with_latency("upstream".into(), 3000, 0, 1.0)
            .with_timeout("downstream".into(), 0, 1.0)
            .with_bandwidth("upstream".into(), 1, 1.0);
        assert_eq!(toxic_names(proxy).len(), 3);
    }
    proxies[1].disable().unwrap();

    f.client.reset().expect("reset");

    let all = f.client.all().expect("all");
    assert_eq!(all.len(), 2, "reset must not delete proxies");
    for proxy in &proxies {
        let now = &all[&proxy.proxy_pack.name].proxy_pack;
        assert!(now.enabled, "reset must re-enable {}", now.name);
        assert!(now.toxics.is_empty(), "reset must remove every toxic of {}: {:?}", now.name, now.toxics);
        assert_eq!(now.listen, proxy.proxy_pack.listen, "reset keeps the listen address");
        let elapsed = round_trip(&mut connect(addr(proxy)), b"after reset");
        assert!(elapsed < Duration::from_millis(1500), "no 3000 ms latency may be left, took {elapsed:?}");
    }
}

#[test]
fn delete_removes_the_proxy_and_closes_its_listener_and_connections() {
    let f = fixture();
    let proxy = f.proxy("gone");
    let keep = f
        .client
        .populate(vec![ProxyPack::new("kept".into(), "127.0.0.1:0".into(), f.echo.to_string())])
        .unwrap()
        .remove(0);
    let listen = addr(&proxy);
    let mut live = connect(listen);
    round_trip(&mut live, b"alive");

    proxy.delete().expect("delete");
    assert!(f.client.find_proxy("gone").is_err(), "a deleted proxy is not found");
    assert_eq!(f.client.all().unwrap().into_keys().collect::<Vec<_>>(), ["kept"]);
    assert_refused(listen);
    read_until_closed(&mut live, CLOSE_DEADLINE);
    round_trip(&mut connect(addr(&keep)), b"the other proxy is untouched");
}
