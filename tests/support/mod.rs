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
        Self::start_on("0", extra)
    }

    /// Starts the server on a fixed port (clients such as toxiproxy-python hard-code 8474).
    pub fn start_on(port: &str, extra: &[&str]) -> ChaosProxy {
        let mut child = Command::new(chaos_bin())
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
