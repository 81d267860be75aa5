//! HAProxy baseline: a `mode tcp` (or, for the `http` benchmark, `mode http`) HAProxy process with a
//! generated config, killed on drop.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ports::free_port;

/// Candidate locations when `haproxy` is not on `PATH` (Debian installs it in /usr/sbin).
const FALLBACK_PATHS: [&str; 2] = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"];

/// A running HAProxy forwarding 127.0.0.1:`listen` to the upstream in TCP or HTTP mode.
pub struct Haproxy {
    child: Child,
    listen: SocketAddr,
    log: PathBuf,
}

/// Finds the haproxy executable or explains how to install it.
pub fn find_binary() -> Result<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("haproxy")).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(FALLBACK_PATHS.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .context("haproxy not found (needed as a baseline): install it with `apt-get install -y haproxy`")
}

/// `haproxy -v` first line, for the report header (best effort).
pub fn version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("-v").output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_string)
}

impl Haproxy {
    /// Writes a TCP-mode config into `dir`, starts HAProxy in the foreground and waits (bounded) until it
    /// accepts.
    pub async fn start(bin: &Path, dir: &Path, upstream: SocketAddr, maxconn: usize) -> Result<Self> {
        Self::launch(bin, dir, "haproxy", |listen| config(listen, upstream, maxconn)).await
    }

    /// Same in HTTP mode (keep-alive on both sides, server connections reused across clients), for the
    /// `http` benchmark; its config and log are `haproxy-http.cfg` and `haproxy-http.log` in `dir`.
    pub async fn start_http(bin: &Path, dir: &Path, upstream: SocketAddr) -> Result<Self> {
        Self::launch(bin, dir, "haproxy-http", |listen| http_config(listen, upstream)).await
    }

    /// Writes `config(listen)` to `dir/{name}.cfg`, starts HAProxy in the foreground with its output in
    /// `dir/{name}.log` and waits (bounded) until it accepts.
    async fn launch(
        bin: &Path,
        dir: &Path,
        name: &str,
        config: impl FnOnce(SocketAddr) -> String,
    ) -> Result<Self> {
        let port = free_port()?;
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let cfg_path = dir.join(format!("{name}.cfg"));
        std::fs::write(&cfg_path, config(listen)).with_context(|| format!("write {}", cfg_path.display()))?;
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .arg("-db") // stay in the foreground so that the child is HAProxy itself
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut haproxy = Self { child, listen, log };
        haproxy.wait_ready().await?;
        Ok(haproxy)
    }

    /// Address clients connect to.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Process id, for reading its RSS.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!("haproxy exited at start-up ({status}): {log}");
            }
            if tokio::net::TcpStream::connect(self.listen).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("haproxy did not accept on {} within 10 s; log in {}", self.listen, self.log.display())
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal TCP-mode configuration; long timeouts so the idle connections of the memory benchmark stay up.
fn config(listen: SocketAddr, upstream: SocketAddr, maxconn: usize) -> String {
    format!(
        "global\n\
         \x20   maxconn {maxconn}\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   maxconn {maxconn}\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 10m\n\
         \x20   timeout server 10m\n\
         frontend bench_in\n\
         \x20   bind {listen}\n\
         \x20   default_backend bench_out\n\
         backend bench_out\n\
         \x20   server upstream {upstream} maxconn {maxconn}\n"
    )
}

/// Connections the HTTP-mode config admits (the `http` benchmark opens 50 at a time).
const HTTP_MAXCONN: usize = 1024;

/// An HTTP-mode configuration: keep-alive with the client, server connections kept and shared by every
/// client (`http-reuse always`), so a request costs HAProxy a parse and a forward, not a connect.
pub fn http_config(listen: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        "global\n\
         \x20   maxconn {HTTP_MAXCONN}\n\
         defaults\n\
         \x20   mode http\n\
         \x20   option http-keep-alive\n\
         \x20   http-reuse always\n\
         \x20   maxconn {HTTP_MAXCONN}\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 30s\n\
         \x20   timeout server 30s\n\
         \x20   timeout http-request 10s\n\
         \x20   timeout http-keep-alive 30s\n\
         frontend bench_http_in\n\
         \x20   bind {listen}\n\
         \x20   default_backend bench_http_out\n\
         backend bench_http_out\n\
         \x20   server upstream {upstream} maxconn {HTTP_MAXCONN}\n"
    )
}
