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

// === proxies a run creates (issue 11 item 3) ===

/// The lease `chaos run` gives the proxies it creates on `chaos proxy` (`engine::run_proxies::PROXY_LEASE`).
const RUN_PROXY_LEASE: Duration = Duration::from_secs(6);
/// Slack past the lease for the server's timer and this test's polling, on a loaded 2-core machine.
const LAPSE_SLACK: Duration = Duration::from_millis(1500);

/// `chaos run tests/data/run-proxy.yaml` against `server`, holding its proxy `run-proxy` for `hold`; its
/// journal goes to the returned directory.
fn run_proxy_run(server: &ChaosProxy, hold: &str, name: &str) -> (Command, std::path::PathBuf) {
    let out = support::temp_dir("run-proxy", name);
    let vars = [("api", server.url()), ("hold", hold.to_string())];
    let mut cmd = support::chaos_run(None, &support::repo_path("tests/data/run-proxy.yaml"), &vars, &out);
    cmd.arg("--state-dir").arg(out.join("state"));
    (cmd, out)
}

fn run_proxy(server: &ChaosProxy) -> Option<serde_json::Value> {
    let (status, view) = http_json(server.api, "GET", "/proxies/run-proxy", None);
    (status == 200).then_some(view)
}

/// Starts a run that holds its proxy for a minute and SIGKILLs it once the proxy exists (and has been renewed
/// at least once); returns when it was killed and the proxy's listen address.
fn kill_a_run_holding_its_proxy(server: &ChaosProxy, name: &str) -> (Instant, SocketAddr) {
    let mut runner =
        run_proxy_run(server, "60s", name).0.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until("the run's proxy", Duration::from_secs(15), || run_proxy(server).is_some());
    let view = run_proxy(server).unwrap();
    assert_eq!(view["lease_ms"], 6000, "{view}");
    assert!(view["owner"].as_str().unwrap().starts_with("chaos-run "), "{view}");
    let listen: SocketAddr = view["listen"].as_str().unwrap().parse().unwrap();
    // Past two renewals: the proxy must outlive its first lease while the run lives.
    std::thread::sleep(RUN_PROXY_LEASE + Duration::from_secs(1));
    assert!(run_proxy(server).is_some(), "the live run's proxy lapsed: renewals are not reaching it");
    runner.kill().unwrap(); // SIGKILL: the runner deletes nothing.
    let killed = Instant::now();
    runner.wait().unwrap();
    (killed, listen)
}

#[test]
fn a_proxy_whose_run_was_killed_is_gone_within_its_lease_with_no_manual_step() {
    // A server the run did not start, as in CI where `chaos proxy` is a service.
    let server = ChaosProxy::start(&[]);
    let (killed, listen) = kill_a_run_holding_its_proxy(&server, "lapse");
    wait_until("the dead run's proxy to delete itself", RUN_PROXY_LEASE + LAPSE_SLACK, || {
        run_proxy(&server).is_none()
    });
    let gone = killed.elapsed();
    eprintln!("kill -9 to proxy gone: {gone:?}");
    // Its listener went with it.
    assert!(std::net::TcpStream::connect(listen).is_err(), "the listener outlived the proxy");
}

#[test]
fn an_immediate_rerun_replaces_its_own_stale_proxy_but_never_someone_elses() {
    let server = ChaosProxy::start(&[]);
    let (_, _) = kill_a_run_holding_its_proxy(&server, "rerun-killed");
    assert!(run_proxy(&server).is_some(), "the stale proxy should still be there for this test");
    // The rerun does not wait for the lease: the creator is provably gone, so it replaces the proxy.
    let (mut cmd, out) = run_proxy_run(&server, "1s", "rerun");
    let rerun = support::output_within(&mut cmd, Duration::from_secs(60));
    assert_eq!(rerun.status.code(), Some(0), "{}", support::describe_output(&rerun));
    let timeline = support::read_journal(&out)["timeline"].to_string();
    assert!(timeline.contains("replaced proxy run-proxy left by a previous run"), "{timeline}");
    assert!(run_proxy(&server).is_none(), "the rerun left its proxy behind");

    // A proxy of the same name that no chaos run made is never touched: 409, exit 3, and how to remove it.
    let foreign = r#"{"name":"run-proxy","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}"#;
    assert_eq!(http_json(server.api, "POST", "/proxies", Some(foreign)).0, 201);
    let refused =
        support::output_within(&mut run_proxy_run(&server, "1s", "foreign").0, Duration::from_secs(60));
    assert_eq!(refused.status.code(), Some(3), "{}", support::describe_output(&refused));
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(
        stdout.contains("proxy run-proxy already exists at")
            && stdout.contains("was not created by a chaos run")
            && stdout.contains("delete run-proxy"),
        "{stdout}"
    );
    let kept = run_proxy(&server).expect("the foreign proxy was deleted");
    assert!(kept.get("owner").is_none(), "{kept}");
}
