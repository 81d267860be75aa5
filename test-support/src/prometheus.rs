//! A real Prometheus server for tests (Debian's `prometheus` package, with its `promtool`): started on a
//! kernel-chosen loopback port (`127.0.0.1:0`, the port read back from its log), in a fresh directory, killed
//! and removed on drop. [`Prometheus::backfilled`] loads history written as OpenMetrics with explicit
//! timestamps through `promtool tsdb create-blocks-from openmetrics` (reference/slo-math.md §10), so SLO
//! figures can be compared with values computed by hand at a fixed evaluation time.
//!
//! Tests call [`available`] through [`crate::skip::require`] with the part `prometheus` first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::dir::TempDir;

/// Whether `prometheus` and `promtool` can be run here.
pub fn available() -> Result<(), String> {
    for program in ["prometheus", "promtool"] {
        let ok = Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !matches!(ok, Ok(status) if status.success()) {
            return Err(format!("`{program}` cannot be run (Debian: apt-get install prometheus)"));
        }
    }
    Ok(())
}

/// Runs `promtool` with `args` in `dir`, panicking only when it cannot be started.
pub fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): apt-get install prometheus"))
}

/// A running `prometheus`.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    /// Starts a server with `config` (prometheus.yml text) on an empty database.
    pub fn start(config: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        Prometheus::spawn(dir, config, &[])
    }

    /// Starts a server whose database holds `openmetrics` (samples with explicit timestamps in seconds,
    /// ending with `# EOF`), with retention long enough that old samples stay, and rule files `rules` loaded
    /// (each a path) with `config`'s global settings.
    pub fn backfilled(openmetrics: &str, config: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let om = dir.path().join("history.om");
        std::fs::write(&om, openmetrics).unwrap_or_else(|e| panic!("write {}: {e}", om.display()));
        let data = dir.path().join("data");
        let out = promtool(
            dir.path(),
            &[
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                // Hidden flag of promtool 2.42: a few large blocks instead of one per 2 h (30 days of history
                // would make 360 and take ~30 s to write and open).
                "--max-block-duration=8760h",
                "history.om",
                "data",
            ],
        );
        assert!(
            out.status.success(),
            "promtool tsdb create-blocks-from openmetrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(data.exists(), "promtool wrote no blocks");
        Prometheus::spawn(dir, config, &["--storage.tsdb.retention.time=100y"])
    }

    fn spawn(dir: TempDir, config: &str, extra: &[&str]) -> Prometheus {
        std::fs::write(dir.path().join("prometheus.yml"), config)
            .unwrap_or_else(|e| panic!("write prometheus.yml: {e}"));
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .unwrap_or_else(|e| panic!("create prometheus.log: {e}"));
        let child = Command::new("prometheus")
            .arg("--config.file=prometheus.yml")
            .arg("--storage.tsdb.path=data")
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=info")
            .args(extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `prometheus` ({e}): apt-get install prometheus"));
        let mut server = Prometheus { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), dir };
        server.addr = server.wait_listening(Duration::from_secs(20));
        server.wait_ready(Duration::from_secs(20));
        server
    }

    /// The port comes from the log line `msg="Listening on" address=127.0.0.1:PORT`.
    fn wait_listening(&mut self, within: Duration) -> SocketAddr {
        let end = Instant::now() + within;
        loop {
            if let Some(addr) =
                self.log().lines().filter(|l| l.contains("msg=\"Listening on\"")).find_map(|l| {
                    l.split_whitespace().find_map(|w| w.strip_prefix("address=")).and_then(|a| a.parse().ok())
                })
            {
                return addr;
            }
            self.check_alive();
            assert!(
                Instant::now() < end,
                "prometheus did not say where it listens within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&mut self, within: Duration) {
        let end = Instant::now() + within;
        while get(self.addr, "/-/ready").is_none_or(|(status, _)| status != 200) {
            self.check_alive();
            assert!(Instant::now() < end, "prometheus was not ready within {within:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's directory (config, data, log).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query evaluated at `time` (unix seconds): the answer's JSON text, whatever the status.
    pub fn query(&self, expr: &str, time: f64) -> String {
        let path = format!("/api/v1/query?query={}&time={time}", encode(expr));
        get(self.addr, &path).map(|(_, body)| body).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET: status and body, `None` while nothing answers.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(conn, "GET {path} HTTP/1.1\r\nHost: prometheus\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a query parameter.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
