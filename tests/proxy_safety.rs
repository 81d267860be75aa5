//! Safety invariants of the proxy (DESIGN §7), with SIGKILL: a fault whose creator dies removes itself at its
//! TTL (invariant 1); a killed proxy server leaves no listener, no connection and no toxic behind, and a
//! restarted one starts clean (invariant 3: nothing outlives the process that applied it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    ChaosProxy, Closed, chaos_bin, echo_server, http_json, read_until_closed, round_trip, wait_until,
};

fn create_proxy(api: SocketAddr, name: &str, upstream: SocketAddr) -> SocketAddr {
    let body = format!(r#"{{"name":"{name}","listen":"127.0.0.1:0","upstream":"{upstream}"}}"#);
    let (status, proxy) = http_json(api, "POST", "/proxies", Some(&body));
    assert_eq!(status, 201, "{proxy}");
    proxy["listen"].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_toxic_outlives_its_killed_runner_only_until_its_ttl() {
    let server = ChaosProxy::start(&[]);
    let via = create_proxy(server.api, "db", echo_server());
    // A "runner" that applies a 300 ms latency toxic with a 1.5 s TTL, then would go on working: it is
    // SIGKILLed before it could ever remove the toxic.
    let script = format!(
        "{} proxies --host {} toxic add db -t latency -a latency=300 --ttl 1500 && exec sleep 600",
        chaos_bin().display(),
        server.url()
    );
    let mut runner = Command::new("sh").args(["-c", &script]).stdout(Stdio::null()).spawn().unwrap();
    let toxics = |api| http_json(api, "GET", "/proxies/db/toxics", None).1.as_array().map_or(0, Vec::len);
    wait_until("the runner's toxic", Duration::from_secs(10), || toxics(server.api) == 1);
    let applied = Instant::now();
    runner.kill().unwrap();
    runner.wait().unwrap();

    let mut conn = support::connect(via);
    assert!(round_trip(&mut conn, b"slow") >= Duration::from_millis(290), "the toxic was not in force");
    wait_until("the toxic to expire by itself", Duration::from_secs(10), || toxics(server.api) == 0);
    assert!(applied.elapsed() >= Duration::from_millis(1400), "expired early: {:?}", applied.elapsed());
    // The same live connection is fast again: the revert reached existing links.
    assert!(round_trip(&mut conn, b"fast") < Duration::from_millis(250));
}

#[test]
fn a_killed_proxy_server_leaves_nothing_behind() {
    let upstream = echo_server();
    let mut server = ChaosProxy::start(&[]);
    let api_port = server.api.port();
    let via = create_proxy(server.api, "svc", upstream);
    let body = r#"{"type":"bandwidth","attributes":{"rate":0}}"#;
    assert_eq!(http_json(server.api, "POST", "/proxies/svc/toxics", Some(body)).0, 200);
    let mut stalled = support::connect(via);
    std::io::Write::write_all(&mut stalled, b"held by rate 0").unwrap();

    server.child.kill().unwrap(); // SIGKILL: no shutdown code runs.
    server.child.wait().unwrap();

    // The kernel closed every socket of the dead process: the client sees the end, not a hang.
    let (_, how) = read_until_closed(&mut stalled, Duration::from_secs(10));
    assert!(matches!(how, Closed::Eof | Closed::Reset), "connection left open: {how:?}");
    // The listen ports are free for anyone again.
    TcpListener::bind(via).expect("proxy listen port still held");
    TcpListener::bind(("127.0.0.1", api_port)).expect("admin port still held");
    // Upstream traffic is untouched: a direct connection works as before.
    round_trip(&mut support::connect(upstream), b"direct");

    // A restarted server keeps no state: no proxy, so no toxic, comes back.
    let restarted = ChaosProxy::start(&[]);
    let (status, proxies) = http_json(restarted.api, "GET", "/proxies", None);
    assert_eq!((status, proxies.to_string()), (200, "{}".to_string()));
}
