//! Shared helpers for the end-to-end tests of the `chaos` binary: start real processes on port 0 and find the
//! addresses they bound, kill them on drop, and wait on conditions with deadlines instead of sleeping.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the `chaos` binary cargo built for this test run.
pub fn chaos_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chaos"))
}

/// A running `chaos proxy` server, killed (SIGKILL) when dropped.
pub struct ChaosProxy {
    pub child: Child,
    /// The admin API address, e.g. `127.0.0.1:43123`.
    pub api: SocketAddr,
}

impl ChaosProxy {
    /// Starts `chaos proxy --port 0` plus `extra` flags and waits for its "listening on" line.
    pub fn start(extra: &[&str]) -> ChaosProxy {
        Self::start_in(None, "0", extra)
    }

    /// Starts the server on `port`, inside network namespace `netns` when given: a fixed port (clients such as
    /// toxiproxy-python hard-code 8474) only ever in a namespace of the test's own, never on the host's loopback.
    pub fn start_in(netns: Option<&str>, port: &str, extra: &[&str]) -> ChaosProxy {
        let mut child = chaos_in(netns)
            .args(["proxy", "--host", "127.0.0.1", "--port", port])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chaos proxy");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().expect("chaos proxy printed nothing").expect("read stdout");
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line from chaos proxy: {line:?}"));
        let api: SocketAddr = addr.trim().parse().expect("admin address");
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ChaosProxy { child, api }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released; fine for tests that must pass a port to a client).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `cond` every 10 ms until it holds or `deadline` passes; panics with `what` on timeout.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

/// A threaded TCP echo server on a free loopback port; runs until the test process exits.
pub fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = conn.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut conn);
            });
        }
    });
    addr
}

/// Connects with a deadline, retrying while the listener comes up.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(e) if Instant::now() > end => panic!("connect {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

// === Helpers for the Toxiproxy client compatibility tests (compat_*.rs) ===

/// Parses a proxy's reported `listen` as the `ip:port` that clients connect to (they split it on `:`).
pub fn listen_addr(listen: &str) -> SocketAddr {
    listen.parse().unwrap_or_else(|e| panic!("reported listen {listen:?} is not an ip:port ({e})"))
}

/// Writes `payload` and reads the same number of bytes back, as from an echo upstream, within 10 s; asserts they are
/// unchanged and returns the round-trip time.
pub fn round_trip(stream: &mut TcpStream, payload: &[u8]) -> Duration {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    stream.write_all(payload).expect("write through the proxy");
    let mut got = vec![0; payload.len()];
    stream.read_exact(&mut got).expect("read the echo through the proxy");
    let elapsed = start.elapsed();
    assert!(got == payload, "the echo through the proxy changed the bytes");
    elapsed
}

/// How a connection ended, as seen by [`read_until_closed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// An orderly FIN.
    Eof,
    /// `ECONNRESET`: the peer sent an RST.
    Reset,
    /// Any other read error.
    Error(std::io::ErrorKind),
}

/// Reads until the peer closes the connection and returns what arrived and how it ended; panics if the connection is
/// still open after `deadline`.
pub fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> (Vec<u8>, Closed) {
    use std::io::{ErrorKind, Read};
    let end = Instant::now() + deadline;
    let mut data = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!("connection still open after {deadline:?} ({} bytes received)", data.len());
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (data, Closed::Eof),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (data, Closed::Reset),
            Err(e) => return (data, Closed::Error(e.kind())),
        }
    }
}

/// Asserts that nothing accepts connections on `addr` (a disabled or deleted proxy).
pub fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("connect {addr}: expected connection refused, got {e}"),
        Ok(_) => panic!("connect {addr}: expected connection refused, but it was accepted"),
    }
}

/// A TCP server on a free loopback port that writes `greeting` to every client and then closes the connection.
pub fn closing_server(greeting: &'static [u8]) -> SocketAddr {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(greeting);
        }
    });
    addr
}

/// One HTTP/1.1 request to an admin API over a plain socket: returns the status code and the body.
pub fn http(api: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = TcpStream::connect(api).expect("connect to the admin API");
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: chaos\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("read the API's answer");
    let status =
        reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad reply {reply:?}"));
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// `http` for JSON answers.
pub fn http_json(api: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let (status, text) = http(api, method, path, body);
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// `chaos demo-target --http` on a free loopback port, killed on drop.
pub struct DemoTarget {
    pub child: Child,
    pub addr: SocketAddr,
}

impl DemoTarget {
    pub fn start() -> DemoTarget {
        Self::start_in(None, "127.0.0.1:0")
    }

    /// The target listening on `listen`, inside network namespace `netns` when given (`ip netns exec`).
    pub fn start_in(netns: Option<&str>, listen: &str) -> DemoTarget {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(chaos_bin());
                c
            }
            None => Command::new(chaos_bin()),
        };
        let mut child =
            cmd.args(["demo-target", "--http", "--listen", listen]).stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on http://").unwrap().parse().unwrap();
        DemoTarget { child, addr }
    }
}

impl Drop for DemoTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path in the repository.
pub fn repo_path(path: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A fresh directory for one test's outputs.
pub fn temp_dir(prefix: &str, name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{prefix}-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The journal a `chaos run --journal OUT/journal.json` wrote.
pub fn read_journal(out: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("journal.json")).unwrap()).unwrap()
}

/// Exit code, stdout and stderr of a finished command, for assertion messages.
pub fn describe_output(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Two fresh network namespaces joined by a veth pair, `a` at 10.X.Y.1/30 and `b` at 10.X.Y.2/30, links up;
/// deleted on drop. X and Y come from the pid and a counter so parallel tests never share a subnet.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub addr_a: std::net::Ipv4Addr,
    pub addr_b: std::net::Ipv4Addr,
}

impl NetnsPair {
    pub fn new() -> NetnsPair {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let (x, y) = (192 + (pid % 48) as u8, (n % 64) as u8);
        let pair = NetnsPair {
            a: format!("chaos-e2e-{pid}-{n}-a"),
            b: format!("chaos-e2e-{pid}-{n}-b"),
            addr_a: std::net::Ipv4Addr::new(10, x, y * 4, 1),
            addr_b: std::net::Ipv4Addr::new(10, x, y * 4, 2),
        };
        let (a, b) = (pair.a.as_str(), pair.b.as_str());
        sh(&["ip", "netns", "add", a]);
        sh(&["ip", "netns", "add", b]);
        sh(&["ip", "-n", a, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b", "netns", b]);
        sh(&["ip", "-n", a, "addr", "add", &format!("{}/30", pair.addr_a), "dev", "veth-a"]);
        sh(&["ip", "-n", b, "addr", "add", &format!("{}/30", pair.addr_b), "dev", "veth-b"]);
        for (ns, dev) in [(a, "veth-a"), (a, "lo"), (b, "veth-b"), (b, "lo")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    /// The nftables tables in namespace `ns` whose names the agent uses.
    pub fn chaos_tables(&self, ns: &str) -> Vec<String> {
        sh(&["ip", "netns", "exec", ns, "nft", "list", "tables"])
            .lines()
            .filter_map(|l| l.strip_prefix("table inet "))
            .filter(|t| t.starts_with("chaos_agent_"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs a command that must succeed; returns its stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A `sleep 600 0.00PIDTAG` (a unique argument that is still a number `sleep` accepts), killed on drop.
pub struct Victim {
    pub child: Child,
    /// A `cmdline` regex that matches this process only.
    pub marker: String,
}

impl Victim {
    /// `tag` (digits) makes the argument unique among the victims of one test process.
    pub fn start(tag: &str) -> Victim {
        let arg = format!("0.00{}{tag}", std::process::id());
        let child = Command::new("sleep").arg("600").arg(&arg).spawn().unwrap();
        Victim { child, marker: format!("^sleep 600 {}$", arg.replace('.', "\\.")) }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The state letter of `pid` in /proc (`S`, `R`, `T`, ...), `None` once it is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

/// Pids of live (not zombie) processes whose comm is `comm` and whose parent is `parent`.
pub fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let name = head.split_once('(').map(|(_, n)| n).unwrap_or("");
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next().and_then(|p| p.parse::<u32>().ok()));
        if name == comm && ppid == Some(parent) && state != Some("Z") {
            found.push(pid);
        }
    }
    found
}

/// Pids of the watchdog processes (`chaos agent watchdog`) that `parent` started, while they run.
pub fn watchdogs_of(parent: u32) -> Vec<u32> {
    children_named(parent, "chaos")
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|w| w == b"watchdog"))
        })
        .collect()
}

/// Pids of live (not zombie) processes whose command line contains `needle` (a unique path of one test): a
/// runner, the stress workers it forked (same command line) and its watchdog.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).contains(needle) && process_state(pid).is_some_and(|s| s != 'Z')
        {
            found.push(pid);
        }
    }
    found
}

/// A network namespace of the test's own with loopback up, deleted when dropped: its 127.0.0.1 ports are free
/// whatever the host runs (a user's Toxiproxy on 8474, say).
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("chaos-{tag}-{}-{n}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Whether a TCP connection to `addr` succeeds within a second from inside network namespace `ns`.
pub fn connects_from(ns: &str, addr: SocketAddr) -> bool {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        // The namespace applies to this thread only, and the thread ends right after.
        let file = std::fs::File::open(path).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    })
    .join()
    .unwrap()
}

/// `chaos run FILE --seed 7 --quiet --journal OUT/journal.json --var K=V...`, inside network namespace `netns`
/// when given; the caller adds flags and spawns it.
pub fn chaos_run(
    netns: Option<&str>,
    file: &std::path::Path,
    vars: &[(&str, String)],
    out: &std::path::Path,
) -> Command {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(chaos_bin());
            c
        }
        None => Command::new(chaos_bin()),
    };
    cmd.arg("run").arg(file).args(["--seed", "7", "--quiet"]);
    for (k, v) in vars {
        cmd.arg("--var").arg(format!("{k}={v}"));
    }
    cmd.arg("--journal").arg(out.join("journal.json"));
    cmd
}

/// Runs `cmd` with stdout and stderr captured, killing it (and failing the test) after `deadline`.
pub fn output_within(cmd: &mut Command, deadline: Duration) -> std::process::Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_within(child, deadline)
}

/// Waits for `child` (spawned with piped outputs) for at most `deadline`; kills it and fails the test after.
pub fn wait_within(mut child: Child, deadline: Duration) -> std::process::Output {
    let end = Instant::now() + deadline;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the command took more than {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Hosts on one LAN: a network namespace per host, each with a veth into a bridge in a switch namespace,
/// addresses 10.X.Y.(i+1)/24 in order. Deleted on drop.
pub struct Lan {
    pub switch: String,
    pub hosts: Vec<(String, std::net::Ipv4Addr)>,
}

impl Lan {
    pub fn new(names: &[&str]) -> Lan {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let (x, y) = (64 + (pid % 64) as u8, (n % 200) as u8);
        let switch = format!("chaos-lan-{pid}-{n}-sw");
        sh(&["ip", "netns", "add", &switch]);
        sh(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &switch, "link", "set", "br0", "up"]);
        let mut lan = Lan { switch: switch.clone(), hosts: Vec::new() };
        for (i, name) in names.iter().enumerate() {
            let ns = format!("chaos-lan-{pid}-{n}-{name}");
            let addr = std::net::Ipv4Addr::new(10, x, y, i as u8 + 1);
            sh(&["ip", "netns", "add", &ns]);
            let port = format!("p{i}");
            sh(&[
                "ip", "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &switch,
            ]);
            sh(&["ip", "-n", &switch, "link", "set", &port, "master", "br0"]);
            sh(&["ip", "-n", &switch, "link", "set", &port, "up"]);
            sh(&["ip", "-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            lan.hosts.push((ns, addr));
        }
        lan
    }

    /// The namespace and address of host `i` (in the order given to `new`).
    pub fn host(&self, i: usize) -> (&str, std::net::Ipv4Addr) {
        (&self.hosts[i].0, self.hosts[i].1)
    }

    /// The agent's nftables tables in host `i`'s namespace.
    pub fn chaos_tables(&self, i: usize) -> Vec<String> {
        sh(&["ip", "netns", "exec", &self.hosts[i].0, "nft", "list", "tables"])
            .lines()
            .filter_map(|l| l.strip_prefix("table inet "))
            .filter(|t| t.starts_with("chaos_agent_"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for (ns, _) in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.switch]).status();
    }
}

/// `ip netns exec NS chaos ARGS...` (or plain `chaos ARGS...` without a namespace).
pub fn chaos_in(netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(chaos_bin());
            c
        }
        None => Command::new(chaos_bin()),
    }
}

/// A seeded generator (xorshift64*) for the kill matrices' moments: `CHAOS_KILL_SEED=N` replays a failing
/// sequence; the seed is printed.
pub struct KillRng {
    pub seed: u64,
    state: u64,
}

impl KillRng {
    pub fn new() -> KillRng {
        let seed = std::env::var("CHAOS_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x6b6d_6174);
        eprintln!("kill matrix seed {seed} (CHAOS_KILL_SEED={seed} replays it)");
        KillRng { seed, state: seed | 1 }
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Polls `check` (what is still left, as text) until it reports nothing, for at most `bound` after `since`,
/// failing the test with what is left after that; returns how long it took.
pub fn clean_within(
    since: Instant,
    bound: Duration,
    what: &str,
    check: impl Fn() -> Vec<String>,
) -> Duration {
    let mut left = check();
    while !left.is_empty() && since.elapsed() < bound {
        std::thread::sleep(Duration::from_millis(5));
        left = check();
    }
    assert!(left.is_empty(), "{:?} after SIGKILL of {what}, still left: {left:?}", since.elapsed());
    since.elapsed()
}
