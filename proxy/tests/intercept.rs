//! Transparent interception against real kernel networking: two namespaces per test joined by a veth pair.
//! In namespace b, HTTP-ish servers on ports 8080 and 8081 and a small proxy on 15001 that reads each
//! connection's original destination, dials it with a marked socket and relays; interceptions are applied
//! inside b, so the host's own ruleset is never touched. Needs root and nft, curl for the curl test and a cgroup v2
//! directory for the cgroup test (`CHAOS_TEST_SKIP=curl,cgroup` excuses those two, see chaos-test-support).

// Helpers panic on setup failure like the tests that call them; the helper processes report on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use chaos_proxy::intercept::{
    InterceptError, InterceptSpec, Interception, TABLE_PREFIX, UPSTREAM_MARK, cgroup2_root, check,
    connect_marked, intercepted_destination, remove_stale,
};
use chaos_test_support::net::in_netns as in_ns;
use chaos_test_support::{NetnsPair, sh, skip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER_PORT: u16 = 8080;
const OTHER_PORT: u16 = 8081;
const PROXY_PORT: u16 = 15001;

/// Two fresh namespaces `a` (client) and `b` (server and proxy) joined by `veth-a` (10.X.Y.1/30, in a) and
/// `veth-b` (10.X.Y.2/30, in b), links and loopbacks up ([`NetnsPair`], its fields through `Deref`); deleted on
/// drop.
struct Pair(NetnsPair);

impl Pair {
    fn new() -> Pair {
        Pair(NetnsPair::tagged("i"))
    }

    /// Intercepts `port` in namespace b, for the proxy's port.
    fn spec(&self, port: u16) -> InterceptSpec {
        InterceptSpec { netns: Some(self.b.clone()), ..InterceptSpec::new(port, PROXY_PORT) }
    }
}

impl std::ops::Deref for Pair {
    type Target = NetnsPair;

    fn deref(&self) -> &NetnsPair {
        &self.0
    }
}

/// Everything `nft list tables` shows in namespace `ns`.
fn tables(ns: &str) -> String {
    sh(&["ip", "netns", "exec", ns, "nft", "list", "tables"])
}

/// The interception tables in namespace `ns`.
fn interceptions(ns: &str) -> Vec<String> {
    tables(ns)
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|t| t.starts_with(TABLE_PREFIX))
        .map(str::to_string)
        .collect()
}

/// Sends a request from namespace `ns` to `addr` and returns everything that came back (or why nothing did).
fn ask(ns: &str, addr: SocketAddr) -> String {
    in_ns(ns, move || {
        let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(stream) => stream,
            Err(e) => return format!("connect failed: {e}"),
        };
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
        let mut answer = String::new();
        match stream.read_to_string(&mut answer) {
            Ok(_) => answer,
            Err(e) => format!("{answer}read failed: {e}"),
        }
    })
    .join()
    .unwrap()
}

/// What the server on `port` answers a connection from `peer`.
fn served(port: u16, peer: IpAddr) -> String {
    let body = format!("server {port} saw {peer}");
    format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

/// Asserts that the connection from `ns` to `addr` went through the proxy, which dialed `addr` itself from
/// `proxy_source` (the server saw the proxy, not the client).
fn assert_intercepted(ns: &str, addr: SocketAddr, proxy_source: IpAddr) {
    let answer = ask(ns, addr);
    let expected = format!("intercepted:{addr}\n{}", served(addr.port(), proxy_source));
    assert_eq!(answer, expected, "from {ns} to {addr}");
}

/// Asserts that the connection from `ns` (address `client`) to `addr` reached the server directly.
fn assert_direct(ns: &str, addr: SocketAddr, client: IpAddr) {
    assert_eq!(ask(ns, addr), served(addr.port(), client), "from {ns} to {addr}");
}

/// Servers on 8080 and 8081 and the test proxy on 15001, all dual-stack (`[::]`), in one namespace, on a
/// thread of their own running a current-thread runtime; stopped on drop.
struct Services {
    /// Connections the proxy relayed.
    proxied: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Services {
    /// With `marker`, the proxy writes `intercepted:ORIGINAL\n` before relaying.
    fn start(ns: &str, marker: bool) -> Services {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let proxied = Arc::new(AtomicUsize::new(0));
        let counter = proxied.clone();
        let thread = in_ns(ns, move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                for port in [SERVER_PORT, OTHER_PORT] {
                    let listener = tokio::net::TcpListener::bind(("::", port)).await.unwrap();
                    tokio::spawn(async move {
                        while let Ok((stream, peer)) = listener.accept().await {
                            tokio::spawn(serve(stream, port, peer.ip().to_canonical()));
                        }
                    });
                }
                let listener = tokio::net::TcpListener::bind(("::", PROXY_PORT)).await.unwrap();
                tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(relay(stream, marker, counter.clone()));
                    }
                });
                ready_tx.send(()).unwrap();
                let _ = stopped.await;
            });
        });
        ready_rx.recv().expect("the servers and the proxy started");
        Services { proxied, stop: Some(stop), thread: Some(thread) }
    }

    fn proxied(&self) -> usize {
        self.proxied.load(Ordering::SeqCst)
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the request head, answers who connected, closes.
async fn serve(mut stream: tokio::net::TcpStream, port: u16, peer: IpAddr) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let _ = stream.write_all(served(port, peer).as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The test proxy: dials where the client meant to go, from a marked socket, and relays both ways.
async fn relay(mut client: tokio::net::TcpStream, marker: bool, proxied: Arc<AtomicUsize>) {
    let original = match intercepted_destination(&client) {
        Ok(Some(original)) => original,
        Ok(None) => return refuse(client, "not intercepted\n".into()).await,
        Err(e) => return refuse(client, format!("no original destination: {e}\n")).await,
    };
    proxied.fetch_add(1, Ordering::SeqCst);
    if marker {
        let _ = client.write_all(format!("intercepted:{original}\n").as_bytes()).await;
    }
    match connect_marked(original).await {
        Ok(mut upstream) => {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        Err(e) => refuse(client, format!("dial failed: {e}\n")).await,
    }
}

/// Says why and closes, after the client's request: closing with unread bytes would reset the connection
/// before the client reads the reason.
async fn refuse(mut client: tokio::net::TcpStream, why: String) {
    let _ = client.write_all(why.as_bytes()).await;
    let _ = client.shutdown().await;
    let mut sink = [0u8; 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), client.read(&mut sink)).await {
        if n == 0 {
            break;
        }
    }
}

#[test]
fn the_host_supports_interception() {
    check().unwrap();
    let err = remove_stale(Some("chaos-no-such-netns")).unwrap_err();
    assert!(matches!(err, InterceptError::Invalid { what: "netns", .. }), "{err}");
}

#[test]
fn forwarded_connections_reach_the_original_destination_through_the_proxy() {
    let pair = Pair::new();
    let services = Services::start(&pair.b, true);
    let (from_a, from_b) = (IpAddr::V4(pair.addr_a), IpAddr::V4(pair.addr_b));
    assert_direct(&pair.a, pair.b_on(SERVER_PORT), from_a);

    let interception =
        Interception::apply(&InterceptSpec { local: false, ..pair.spec(SERVER_PORT) }).unwrap();
    let table = interception.table().to_string();
    assert!(table.starts_with(TABLE_PREFIX), "{table}");
    assert_eq!(interception.netns(), Some(pair.b.as_str()));
    assert_eq!(interceptions(&pair.b), std::slice::from_ref(&table));
    assert!(tables(&pair.a).is_empty(), "namespace a is untouched");
    let listed = sh(&["ip", "netns", "exec", &pair.b, "nft", "list", "table", "inet", &table]);
    let verdict = format!("counter packets 0 bytes 0 redirect to :{PROXY_PORT}");
    let rule = format!("tcp dport {SERVER_PORT} meta mark != {UPSTREAM_MARK:#010x} {verdict}");
    assert!(
        listed.contains("hook prerouting") && listed.contains(&rule) && !listed.contains("hook output"),
        "{listed}"
    );

    // The client knew nothing about the proxy; the proxy's own dial to b:8080 was not redirected again.
    assert_intercepted(&pair.a, pair.b_on(SERVER_PORT), from_b);
    assert_intercepted(&pair.a, pair.b_on(SERVER_PORT), from_b);
    assert_eq!(services.proxied(), 2);
    assert_direct(&pair.a, pair.b_on(OTHER_PORT), from_a);
    // Connections opened in b are not forwarded ones.
    assert_direct(&pair.b, pair.b_on(SERVER_PORT), from_b);
    // A connection straight to the proxy's port was not redirected: no original destination to dial.
    assert_eq!(ask(&pair.a, pair.b_on(PROXY_PORT)), "not intercepted\n");
    assert_eq!(services.proxied(), 2);

    interception.remove().unwrap();
    assert_direct(&pair.a, pair.b_on(SERVER_PORT), from_a);
    assert!(tables(&pair.b).is_empty());
}

#[test]
fn locally_originated_connections_are_redirected_through_the_output_hook() {
    let pair = Pair::new();
    let services = Services::start(&pair.b, true);
    let spec = InterceptSpec { forwarded: false, ..pair.spec(SERVER_PORT) };
    let _interception = Interception::apply(&spec).unwrap();

    let from_b = IpAddr::V4(pair.addr_b);
    assert_intercepted(&pair.b, pair.b_on(SERVER_PORT), from_b);
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_intercepted(&pair.b, SocketAddr::new(loopback, SERVER_PORT), loopback);
    // IPv6: the original destination comes from IP6T_SO_ORIGINAL_DST.
    let loopback6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_intercepted(&pair.b, SocketAddr::new(loopback6, SERVER_PORT), loopback6);
    assert_eq!(services.proxied(), 3);

    assert_direct(&pair.b, pair.b_on(OTHER_PORT), from_b);
    assert_direct(&pair.a, pair.b_on(SERVER_PORT), IpAddr::V4(pair.addr_a));
    assert_eq!(services.proxied(), 3);
}

#[test]
fn sources_and_ports_scope_the_interception() {
    let pair = Pair::new();
    let _services = Services::start(&pair.b, true);
    let (from_a, from_b) = (IpAddr::V4(pair.addr_a), IpAddr::V4(pair.addr_b));

    // Only a's address: a is caught on 8080 only; b's own connections (source b) are not.
    let spec = InterceptSpec { sources: vec![format!("{}/32", pair.addr_a)], ..pair.spec(SERVER_PORT) };
    let interception = Interception::apply(&spec).unwrap();
    assert_intercepted(&pair.a, pair.b_on(SERVER_PORT), from_b);
    assert_direct(&pair.a, pair.b_on(OTHER_PORT), from_a);
    assert_direct(&pair.b, pair.b_on(SERVER_PORT), from_b);
    interception.remove().unwrap();

    // Networks that exclude a, of either family.
    for sources in [vec!["10.250.0.0/16".to_string()], vec!["fd00::/8".to_string()]] {
        let spec = InterceptSpec { sources, ..pair.spec(SERVER_PORT) };
        let _interception = Interception::apply(&spec).unwrap();
        assert_direct(&pair.a, pair.b_on(SERVER_PORT), from_a);
        assert_direct(&pair.b, pair.b_on(SERVER_PORT), from_b);
    }

    // Another port taken over: 8080 is left alone.
    let _interception = Interception::apply(&pair.spec(OTHER_PORT)).unwrap();
    assert_direct(&pair.a, pair.b_on(SERVER_PORT), from_a);
    assert_intercepted(&pair.a, pair.b_on(OTHER_PORT), from_b);
}

#[test]
fn remove_and_drop_delete_the_table() {
    let pair = Pair::new();
    let _services = Services::start(&pair.b, true);
    let (from_a, from_b) = (IpAddr::V4(pair.addr_a), IpAddr::V4(pair.addr_b));

    let interception = Interception::apply(&pair.spec(SERVER_PORT)).unwrap();
    assert_intercepted(&pair.a, pair.b_on(SERVER_PORT), from_b);
    interception.remove().unwrap();
    interception.remove().unwrap();
    assert!(interception.is_removed());
    assert!(tables(&pair.b).is_empty(), "{}", tables(&pair.b));
    assert_direct(&pair.a, pair.b_on(SERVER_PORT), from_a);
    drop(interception);

    let interception = Interception::apply(&pair.spec(SERVER_PORT)).unwrap();
    assert_eq!(interceptions(&pair.b).len(), 1);
    drop(interception);
    assert!(tables(&pair.b).is_empty(), "{}", tables(&pair.b));
    assert_direct(&pair.a, pair.b_on(SERVER_PORT), from_a);
    assert_direct(&pair.b, pair.b_on(SERVER_PORT), from_b);

    // A table whose namespace is gone went with it: removal succeeds.
    let interception = Interception::apply(&pair.spec(SERVER_PORT)).unwrap();
    sh(&["ip", "netns", "del", &pair.b]);
    interception.remove().unwrap();
}

/// Turns `helper_intercept_then_sleep` into the owner process of the crash test; the value is the namespace.
const CHILD_ENV: &str = "CHAOS_INTERCEPT_CHILD";

/// In a normal run this does nothing. Re-run by `a_killed_owner_leaves_its_table_for_remove_stale` with
/// `CHILD_ENV` set, it applies an interception in that namespace, prints its table, and sleeps until killed.
#[test]
fn helper_intercept_then_sleep() {
    let Ok(netns) = std::env::var(CHILD_ENV) else { return };
    let spec = InterceptSpec { netns: Some(netns), ..InterceptSpec::new(9090, PROXY_PORT) };
    let interception = Interception::apply(&spec).unwrap();
    println!("table {}", interception.table());
    println!("ready");
    std::thread::sleep(Duration::from_secs(120));
}

/// A helper process, SIGKILLed and reaped when dropped (so a failing test does not leave it sleeping).
struct Owner(Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_killed_owner_leaves_its_table_for_remove_stale() {
    let pair = Pair::new();
    let mut child = Owner(
        Command::new(std::env::current_exe().unwrap())
            .args(["helper_intercept_then_sleep", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &pair.b)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut table = None;
    // The harness prints `test NAME ... ` before the helper's first line: look for the words anywhere.
    for line in BufReader::new(child.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some((_, name)) = line.split_once("table ") {
            table = Some(name.to_string());
        } else if line == "ready" {
            break;
        }
    }
    let table = table.expect("the child applied an interception");
    let ns = Some(pair.b.as_str());

    // Ours and the child's, both alive: nothing is stale.
    let ours = Interception::apply(&pair.spec(SERVER_PORT)).unwrap();
    assert_eq!(remove_stale(ns).unwrap(), Vec::<String>::new());
    assert_eq!(interceptions(&pair.b).len(), 2);

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(interceptions(&pair.b).contains(&table), "a SIGKILLed owner removes nothing");
    assert_eq!(remove_stale(ns).unwrap(), [table]);
    assert_eq!(interceptions(&pair.b), [ours.table()]);
    assert_eq!(remove_stale(ns).unwrap(), Vec::<String>::new());
    ours.remove().unwrap();
    assert!(tables(&pair.b).is_empty());
}

#[test]
fn curl_through_an_intercepted_port_gets_the_real_servers_answer() {
    if !skip::require("curl", skip::program("curl")) {
        return;
    }
    let pair = Pair::new();
    let services = Services::start(&pair.b, false);
    let _interception = Interception::apply(&pair.spec(SERVER_PORT)).unwrap();
    let url = format!("http://{}/", pair.b_on(SERVER_PORT));
    let body = sh(&["ip", "netns", "exec", &pair.a, "curl", "-sS", "--max-time", "5", &url]);
    // The server saw the proxy's connection (from b itself), not a's.
    assert_eq!(body, format!("server {SERVER_PORT} saw {}", pair.addr_b));
    assert_eq!(services.proxied(), 1);
}

/// Turns `helper_ask_from_cgroup` into a client process; the value is `NETNS ADDR`.
const ASK_ENV: &str = "CHAOS_INTERCEPT_ASK";

/// In a normal run this does nothing. Started inside a cgroup by `a_cgroup_scopes_local_interception`, it
/// connects from a namespace and prints the first line of the answer.
#[test]
fn helper_ask_from_cgroup() {
    let Ok(args) = std::env::var(ASK_ENV) else { return };
    let (ns, addr) = args.split_once(' ').unwrap();
    let answer = ask(ns, addr.parse().unwrap());
    println!("answer {}", answer.lines().next().unwrap_or_default());
}

/// A cgroup v2 directory for one test, removed on drop (once its processes have exited).
struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_cgroup_scopes_local_interception() {
    let root = cgroup2_root().unwrap();
    let name = format!("chaos-intercept-test-{}", std::process::id());
    let cgroup = Cgroup(root.join(&name));
    if let Err(e) = std::fs::create_dir(&cgroup.0) {
        skip::missing("cgroup", &format!("cannot create a cgroup under {}: {e}", root.display()));
        return;
    }
    let pair = Pair::new();
    let services = Services::start(&pair.b, true);
    let spec = InterceptSpec { cgroup: Some(format!("/{name}")), forwarded: false, ..pair.spec(SERVER_PORT) };
    let interception = Interception::apply(&spec).unwrap();
    let listed = sh(&["ip", "netns", "exec", &pair.b, "nft", "list", "table", "inet", interception.table()]);
    assert!(listed.contains("socket cgroupv2 level 1"), "{listed}");

    // This process is not in the cgroup: not intercepted.
    let from_b = IpAddr::V4(pair.addr_b);
    assert_direct(&pair.b, pair.b_on(SERVER_PORT), from_b);
    // A process that joined the cgroup before making its socket is.
    let procs = cgroup.0.join("cgroup.procs");
    let script = format!("echo $$ > '{}' && exec \"$0\" \"$@\"", procs.display());
    let output = Command::new("sh")
        .args(["-c", &script])
        .arg(std::env::current_exe().unwrap())
        .args(["helper_ask_from_cgroup", "--exact", "--nocapture", "--test-threads=1"])
        .env(ASK_ENV, format!("{} {}", pair.b, pair.b_on(SERVER_PORT)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("answer intercepted:{}", pair.b_on(SERVER_PORT))), "{stdout}");
    assert_eq!(services.proxied(), 1);
}
