//! Loopback backend server that every benchmark talks to, either directly or through a proxy.
//!
//! Protocol: the first byte a client sends picks the mode of its connection.
//! - [`MODE_ECHO`]: every byte received afterwards is echoed back.
//! - [`MODE_GENERATE`] followed by a big-endian `u64` N: the server sends N bytes (`u64::MAX` = until the
//!   peer goes away), then discards whatever it receives until EOF. The server never closes first, so the
//!   Toxiproxy rule "a FIN tears the whole connection down" never cuts a measurement short.
//!
//! A connection that sends nothing stays idle (the memory benchmark relies on that).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

/// First byte of an echo connection.
pub const MODE_ECHO: u8 = b'E';
/// First byte of a generator connection, followed by the byte count as a big-endian `u64`.
pub const MODE_GENERATE: u8 = b'G';

/// Size of the generator's write buffer and of the echo buffer.
const BUF_SIZE: usize = 64 * 1024;

/// The 9-byte request that asks the backend to send `len` bytes.
pub fn generate_request(len: u64) -> [u8; 9] {
    let mut req = [0u8; 9];
    req[0] = MODE_GENERATE;
    req[1..].copy_from_slice(&len.to_be_bytes());
    req
}

/// Hidden command-line flag that turns this executable into the backend server process.
pub const SERVE_FLAG: &str = "--serve-backend";
/// Prefix of the backend process's first stdout line, followed by its address.
const READY_PREFIX: &str = "backend listening on ";

/// The backend, running in a child process of its own (so that the bench process and the backend each need
/// only one file descriptor per connection, and the three parties of a proxied connection are three
/// processes). Its stdin/stdout form a tiny control channel: each line sent is answered with the number of
/// open connections; stdin EOF ends the process. Killed on drop.
pub struct Backend {
    addr: SocketAddr,
    /// Held for `kill_on_drop`.
    _child: Child,
    control: Mutex<(ChildStdin, Lines<BufReader<ChildStdout>>)>,
}

impl Backend {
    /// Spawns `<this exe> --serve-backend` and waits (bounded) for its address.
    pub async fn start() -> Result<Self> {
        let exe = std::env::current_exe().context("locate own executable")?;
        let mut child = Command::new(exe)
            .arg(SERVE_FLAG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn backend process")?;
        let stdin = child.stdin.take().context("backend stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("backend stdout")?).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("backend process did not start within 10 s")??
            .context("backend process exited at start-up")?;
        let addr = first
            .strip_prefix(READY_PREFIX)
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("unexpected backend line {first:?}"))?;
        Ok(Self { addr, _child: child, control: Mutex::new((stdin, lines)) })
    }

    /// Where clients (or proxies) connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of connections currently open on the backend side.
    pub async fn active(&self) -> Result<usize> {
        let mut guard = self.control.lock().await;
        let (stdin, lines) = &mut *guard;
        let ask = async {
            stdin.write_all(b"?\n").await?;
            stdin.flush().await?;
            let line = lines.next_line().await?.context("backend process exited")?;
            line.trim().parse::<usize>().with_context(|| format!("bad backend count {line:?}"))
        };
        tokio::time::timeout(Duration::from_secs(5), ask).await.context("backend control timed out")?
    }

    /// Waits, at most `limit`, until `pred(active)` holds; returns whether it did.
    pub async fn wait_until(&self, limit: Duration, pred: impl Fn(usize) -> bool) -> Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            if pred(self.active().await?) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (bounded) until every connection of the previous measurement has gone away, so that one
    /// measurement does not steal CPU from the next. Reports on stderr if some linger.
    pub async fn settle(&self) {
        match self.wait_until(Duration::from_secs(5), |n| n == 0).await {
            Ok(true) => {}
            Ok(false) => {
                let n = self.active().await.map_or_else(|e| e.to_string(), |n| n.to_string());
                eprintln!("  note: {n} backend connections still open after 5 s");
            }
            Err(e) => eprintln!("  note: backend control: {e:#}"),
        }
    }
}

/// Body of the backend process: binds 127.0.0.1 on a free port, prints its address, serves connections
/// and answers count queries on stdin until stdin closes.
pub async fn serve_process() -> Result<()> {
    let socket = TcpSocket::new_v4().context("backend socket")?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).context("backend bind")?;
    let listener = socket.listen(4096).context("backend listen")?;
    let addr = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    let counter = active.clone();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let guard = ActiveGuard::new(counter.clone());
                    tokio::spawn(async move {
                        let _guard = guard;
                        // Errors only mean that the peer went away, which ends the connection anyway.
                        let _ = serve(stream).await;
                    });
                }
                Err(_) => {
                    // Typically EMFILE; back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    });
    let mut stdout = tokio::io::stdout();
    stdout.write_all(format!("{READY_PREFIX}{addr}\n").as_bytes()).await?;
    stdout.flush().await?;
    let mut queries = BufReader::new(tokio::io::stdin()).lines();
    while queries.next_line().await?.is_some() {
        stdout.write_all(format!("{}\n", active.load(Ordering::Relaxed)).as_bytes()).await?;
        stdout.flush().await?;
    }
    Ok(())
}

/// Decrements the active-connection count when a connection task ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut mode = [0u8; 1];
    if stream.read(&mut mode).await? == 0 {
        return Ok(());
    }
    match mode[0] {
        MODE_ECHO => echo(stream).await,
        MODE_GENERATE => generate(stream).await,
        _ => Ok(()),
    }
}

async fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn generate(mut stream: TcpStream) -> std::io::Result<()> {
    let mut len = [0u8; 8];
    stream.read_exact(&mut len).await?;
    let mut remaining = u64::from_be_bytes(len);
    let chunk: Vec<u8> = (0..BUF_SIZE).map(|i| (i % 251) as u8).collect();
    let (mut reader, mut writer) = stream.split();
    let drain = async {
        let mut sink = vec![0u8; 4096];
        while reader.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let send = async {
        while remaining > 0 {
            let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(chunk.len());
            writer.write_all(&chunk[..n]).await?;
            remaining -= n as u64;
        }
        Ok::<(), std::io::Error>(())
    };
    // Whichever ends first: the peer closing (drain) ends everything; a finished send waits for the close.
    tokio::pin!(drain);
    tokio::select! {
        r = &mut drain => r,
        r = send => { r?; drain.await }
    }
}

/// Connects to `addr` with a timeout and TCP_NODELAY, as every benchmark client does.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .with_context(|| format!("connect to {addr} timed out"))?
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
