//! Shared helpers for the end-to-end tests of the `chaos` binary: start real processes on port 0 and find the
//! addresses they bound, kill them on drop, and wait on conditions with deadlines instead of sleeping. The
//! generic fixtures (namespaces, victims, waits, free ports) come from `chaos-test-support`, re-exported here.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

// The generic fixtures live in the workspace's test-support crate; the ones below are about the `chaos` binary.
pub use chaos_test_support::net::connects_from;
pub use chaos_test_support::process::{children_named, process_state, processes_mentioning};
pub use chaos_test_support::{
    KillRng, Lan, Netns, NetnsPair, Victim, clean_within, free_port, sh, wait_until,
};

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

/// `chaos agent inject SPEC --state-dir DIR EXTRA…` held until the test signals it (SIGKILLed on drop); its stdout
/// lines are collected as they come.
pub struct Injector {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Injector {
    pub fn start(spec: &std::path::Path, state: &std::path::Path, extra: &[&str]) -> Injector {
        let mut child = Command::new(chaos_bin())
            .args(["agent", "inject"])
            .arg(spec)
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .env_remove("CHAOS_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Injector { child, lines }
    }

    /// Waits (up to 60 s) for `n` lines starting with `prefix`; returns them.
    pub fn expect(&self, prefix: &str, n: usize) -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(60);
        let mut found = Vec::new();
        while found.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => found.push(line),
                Ok(_) => {}
                Err(_) => panic!("expected {n} lines starting with {prefix:?}, got {found:?}"),
            }
        }
        found
    }

    /// Waits (up to 60 s) for the process to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "chaos agent inject did not exit within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chaos controller --listen 127.0.0.1:0 --data-dir DIR/data EXTRA…` (its log in DIR/controller.log), once it
/// listens; SIGKILLed on drop.
pub struct LocalController {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as the controller printed it.
    pub url: String,
    /// Its data directory (tokens, store).
    pub data: PathBuf,
}

impl LocalController {
    pub fn start(dir: &std::path::Path, extra: &[&str]) -> LocalController {
        let data = dir.join("data");
        let mut child = Command::new(chaos_bin())
            .args(["controller", "--listen", "127.0.0.1:0"])
            .args(extra)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("CHAOS_CONTROLLER_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("controller.log")).unwrap())
            .spawn()
            .unwrap();
        // The controller prints `listening on ADDR` once bound, and nothing else on stdout.
        let line = BufReader::new(child.stdout.take().unwrap()).lines().next();
        let line = line.expect("the controller printed nothing").unwrap();
        let addr =
            line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        LocalController { child, url: format!("http://{addr}"), data }
    }

    /// The API token it wrote.
    pub fn api_token(&self) -> String {
        std::fs::read_to_string(self.data.join("api.token")).unwrap().trim().to_string()
    }
}

impl Drop for LocalController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
