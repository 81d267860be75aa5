//! The `chaos proxy` server under test: spawning the process and driving its Toxiproxy-compatible admin API.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Prefix of the first stdout line of `chaos proxy`.
const LISTENING_PREFIX: &str = "listening on http://";

/// A running `chaos proxy` process, killed on drop.
pub struct ChaosServer {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl ChaosServer {
    /// Spawns `BIN proxy --host 127.0.0.1 --port 0` and waits (bounded) for its listening line.
    /// Its stderr goes to `log_dir/chaos-proxy.stderr.log`; stdout is drained by a thread.
    pub fn spawn(bin: &Path, log_dir: &Path) -> Result<Self> {
        if !bin.is_file() {
            bail!(
                "chaos binary not found at {}: build it with `cargo build --release -p chaos` or pass --chaos-bin PATH",
                bin.display()
            );
        }
        let log = log_dir.join("chaos-proxy.stderr.log");
        let stderr = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut child = Command::new(bin)
            .args(["proxy", "--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("spawn {} proxy", bin.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
        let rx = first_line(stdout);
        let mut server = Self { child, admin: SocketAddr::from(([127, 0, 0, 1], 0)), log };
        let first = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(line) => line,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                bail!(
                    "`chaos proxy` printed no listening line within 15 s (exit status: {status:?}); stderr in {}",
                    server.log.display()
                );
            }
        };
        let addr = first
            .trim()
            .strip_prefix(LISTENING_PREFIX)
            .ok_or_else(|| anyhow!("unexpected first stdout line from chaos proxy: {first:?}"))?;
        server.admin =
            addr.trim_end_matches('/').parse().with_context(|| format!("bad admin address in {first:?}"))?;
        Ok(server)
    }

    /// Process id, for reading its RSS.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Admin API address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// Where the server's stderr goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails if the process has exited (e.g. crashed during a measurement).
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("chaos proxy exited: {status}; stderr in {}", self.log.display()),
        }
    }

    /// `POST /proxies`; returns the bound listen address from the response.
    pub async fn create_proxy(&self, name: &str, upstream: SocketAddr) -> Result<SocketAddr> {
        let body =
            serde_json::json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream.to_string()});
        self.create(&body).await
    }

    /// `POST /proxies` with `"protocol": "http"` (requests parsed and forwarded, L7 toxics); returns the bound
    /// listen address.
    pub async fn create_http_proxy(&self, name: &str, upstream: SocketAddr) -> Result<SocketAddr> {
        let body = serde_json::json!({
            "name": name, "listen": "127.0.0.1:0", "upstream": upstream.to_string(), "protocol": "http"
        });
        self.create(&body).await
    }

    /// `POST /proxies` with `body`; the bound listen address from the response.
    async fn create(&self, body: &Value) -> Result<SocketAddr> {
        let (status, resp) = http(self.admin, "POST", "/proxies", Some(&body.to_string())).await?;
        if status != 201 {
            bail!("POST /proxies returned {status}, expected 201: {resp}");
        }
        let json: Value =
            serde_json::from_str(&resp).with_context(|| format!("POST /proxies body: {resp}"))?;
        let listen = json
            .get("listen")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("POST /proxies response has no string `listen`: {resp}"))?;
        let addr: SocketAddr = listen.parse().with_context(|| format!("bad listen {listen:?}"))?;
        if addr.port() == 0 {
            bail!("POST /proxies returned listen {listen:?}: the bound port is expected, not :0");
        }
        Ok(addr)
    }

    /// `POST /proxies/{proxy}/toxics` with the given toxic JSON (must carry a `name`).
    pub async fn add_toxic(&self, proxy: &str, toxic: &Value) -> Result<()> {
        let path = format!("/proxies/{proxy}/toxics");
        let (status, resp) = http(self.admin, "POST", &path, Some(&toxic.to_string())).await?;
        if status != 200 {
            bail!("POST {path} returned {status}, expected 200: {resp}");
        }
        Ok(())
    }

    /// `DELETE /proxies/{proxy}/toxics/{toxic}`.
    pub async fn delete_toxic(&self, proxy: &str, toxic: &str) -> Result<()> {
        let path = format!("/proxies/{proxy}/toxics/{toxic}");
        let (status, resp) = http(self.admin, "DELETE", &path, None).await?;
        if status != 204 {
            bail!("DELETE {path} returned {status}, expected 204: {resp}");
        }
        Ok(())
    }

    /// `GET /version` body, for the report header (best effort).
    pub async fn version(&self) -> Option<String> {
        match http(self.admin, "GET", "/version", None).await {
            Ok((200, body)) => Some(body.trim().to_string()),
            _ => None,
        }
    }
}

impl Drop for ChaosServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body. Bounded by a 10 s timeout.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let fut = async {
        let mut stream = TcpStream::connect(addr).await.with_context(|| format!("connect admin {addr}"))?;
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: chaos-bench\r\nAccept: application/json\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_response(&raw)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .with_context(|| format!("{method} {path}: admin API did not answer within 10 s"))?
}

/// Sends the first line a child prints on `stdout` (its "listening on" contract), then keeps draining the
/// pipe so the child never blocks on it.
pub fn first_line(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines.map_while(Result::ok) {}
    });
    rx
}

fn parse_response(raw: &[u8]) -> Result<(u16, String)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response: {}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    // Bounded: each iteration consumes at least the size line.
    for _ in 0..100_000 {
        let line_end =
            data.windows(2).position(|w| w == b"\r\n").ok_or_else(|| anyhow!("truncated chunked body"))?;
        let size_str = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_str.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_hex, 16).with_context(|| format!("bad chunk size {size_hex:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
    bail!("too many chunks")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (201, "{}".to_string()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, "abcde".to_string()));
    }
}
