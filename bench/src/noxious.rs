//! noxious baseline: the noxious 1.0.4 library's proxy runner, run in a child process of this executable
//! (like chaos and HAProxy, it gets a process of its own, whose RSS can be read).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use noxious::proxy::{ProxyConfig, ProxyRunner, Runner, Toxics};
use noxious::signal::{Close, Stop};
use noxious::socket::TcpListener as NoxiousListener;
use noxious::toxic::{ToxicEvent, ToxicEventResult};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::ports::free_port;

/// Hidden command-line flag that turns this executable into a noxious proxy process; takes the upstream.
pub const SERVE_FLAG: &str = "--serve-noxious";
/// Prefix of the child's first stdout line, followed by the proxy's listen address.
const READY_PREFIX: &str = "noxious listening on ";

/// A noxious proxy in a child process; killed on drop.
pub struct Noxious {
    listen: SocketAddr,
    child: Child,
}

impl Noxious {
    /// Spawns `<this exe> --serve-noxious UPSTREAM` and waits (bounded) until the proxy accepts.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let exe = std::env::current_exe().context("locate own executable")?;
        let mut child = Command::new(exe)
            .arg(SERVE_FLAG)
            .arg(upstream.to_string())
            .stdin(Stdio::piped()) // its EOF tells the child to exit
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn noxious process")?;
        let stdout = child.stdout.take().context("noxious stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("noxious process did not start within 10 s")??
            .context("noxious process exited at start-up")?;
        let listen = first
            .strip_prefix(READY_PREFIX)
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("unexpected noxious line {first:?}"))?;
        let noxious = Self { listen, child };
        noxious.wait_ready().await?;
        Ok(noxious)
    }

    /// Address clients connect to.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Process id, for reading its RSS.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(self.listen).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(anyhow!("noxious did not accept on {} within 10 s", self.listen))
    }
}

/// Body of the noxious process: a proxy from 127.0.0.1:free port to `upstream`, no toxics, until stdin closes.
pub async fn serve_process(upstream: &str) -> Result<()> {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let config = ProxyConfig {
        name: "bench".to_string(),
        listen: listen.to_string(),
        upstream: upstream.to_string(),
        enabled: true,
        rand_seed: None,
    };
    let (stop, stopper) = Stop::new();
    // The toxic-event sender stays alive (and unused) for the proxy's whole life.
    let (_events, receiver) = bmrng::channel::<ToxicEvent, ToxicEventResult>(1);
    let (_close, closer) = Close::new();
    let (listener, info) =
        <ProxyRunner as Runner>::initialize_proxy::<NoxiousListener>(config, Toxics::empty())
            .await
            .context("noxious bind")?;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(format!("{READY_PREFIX}{listen}\n").as_bytes()).await?;
    stdout.flush().await?;
    tokio::spawn(async move {
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = stdin.next_line().await {}
        stopper.stop();
    });
    <ProxyRunner as Runner>::run_proxy(listener, info, receiver, stop, closer).await.context("noxious proxy")
}
