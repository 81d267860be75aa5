//! A real Alertmanager for tests (Debian's `prometheus-alertmanager` package, `/usr/bin/prometheus-alertmanager`):
//! started on a kernel-chosen loopback port (`127.0.0.1:0`, the port read back from its log), in a fresh
//! directory with its own data, without clustering (`--cluster.listen-address=` empty: no gossip port), with a
//! configuration whose one receiver sends nothing. Killed and removed on drop.
//!
//! Tests call [`available`] through [`crate::skip::require`] with the part `alertmanager` first; a Prometheus
//! sends it alerts through `alerting: { alertmanagers: [{ static_configs: [{ targets: [ADDR] }] }] }`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::dir::TempDir;
use crate::prometheus::get;

/// Debian's path of the Alertmanager binary.
pub const PROGRAM: &str = "/usr/bin/prometheus-alertmanager";

/// One route to a receiver with no integrations: alerts are kept (and listed by the API), never sent.
const CONFIG: &str =
    "route: { receiver: \"null\", group_wait: 0s, group_interval: 1s }\nreceivers: [ { name: \"null\" } ]\n";

/// Whether Alertmanager can be run here.
pub fn available() -> Result<(), String> {
    let ok = Command::new(PROGRAM).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if matches!(ok, Ok(status) if status.success()) {
        Ok(())
    } else {
        Err(format!("`{PROGRAM}` cannot be run (Debian: apt-get install prometheus-alertmanager)"))
    }
}

/// A running Alertmanager.
pub struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Alertmanager {
    /// Starts one with the default configuration (a receiver that sends nothing).
    pub fn start() -> Alertmanager {
        Alertmanager::with_config(CONFIG)
    }

    /// Starts one with `config` (alertmanager.yml text).
    pub fn with_config(config: &str) -> Alertmanager {
        let dir = TempDir::new("alertmanager");
        std::fs::write(dir.path().join("alertmanager.yml"), config)
            .unwrap_or_else(|e| panic!("write alertmanager.yml: {e}"));
        let log = std::fs::File::create(dir.path().join("alertmanager.log"))
            .unwrap_or_else(|e| panic!("create alertmanager.log: {e}"));
        let child = Command::new(PROGRAM)
            .arg("--config.file=alertmanager.yml")
            .arg("--storage.path=data")
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--cluster.listen-address=")
            .arg("--log.level=info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{PROGRAM}` ({e}): apt-get install prometheus-alertmanager")
            });
        let mut server = Alertmanager { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), dir };
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
                "alertmanager did not say where it listens within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&mut self, within: Duration) {
        let end = Instant::now() + within;
        while get(self.addr, "/-/ready").is_none_or(|(status, _)| status != 200) {
            self.check_alive();
            assert!(Instant::now() < end, "alertmanager was not ready within {within:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("alertmanager exited ({status}):\n{}", self.log());
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`, for a Prometheus `alertmanagers` target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's directory (config, data, log).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// `GET /api/v2/alerts?active=true`: the JSON text of the alerts it holds now, empty while it does not answer.
    pub fn active_alerts(&self) -> String {
        get(self.addr, "/api/v2/alerts?active=true").map(|(_, body)| body).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
