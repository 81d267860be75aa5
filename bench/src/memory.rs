//! Memory per proxied connection: proxy RSS before and after opening many idle connections through it,
//! then a one-byte echo on every connection to prove they all hold.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::backend::{self, MODE_ECHO};
use crate::targets::{TargetKind, Targets};

/// Connections opened (or echoed on) concurrently: below the 128-entry accept queue of std's listeners.
const BATCH: usize = 100;
/// How long a batch may take to reach the backend through the proxy before it counts as lagging.
const BATCH_WAIT: Duration = Duration::from_secs(2);
/// File descriptors kept free for everything else in a process (listeners, runtime, logs).
const FD_MARGIN: u64 = 128;

/// One memory measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: TargetKind,
    pub conns: usize,
    pub rss_before_kib: u64,
    /// After all connections are open and idle.
    pub rss_idle_kib: u64,
    /// After one byte has been echoed on every connection.
    pub rss_active_kib: u64,
    /// Connections that echoed their byte.
    pub echoed: usize,
    /// Connections the backend still saw open at the end.
    pub backend_open: usize,
    /// Seconds to open every connection and see it reach the backend.
    pub open_secs: f64,
    /// Batches whose connections had not all reached the backend `BATCH_WAIT` after being opened.
    pub lagging_batches: usize,
    /// Growth of the kernel's `TcpExt ListenOverflows` counter while opening (system-wide).
    pub listen_overflows: Option<u64>,
}

impl Row {
    pub fn kib_per_conn_idle(&self) -> f64 {
        self.rss_idle_kib.saturating_sub(self.rss_before_kib) as f64 / self.conns.max(1) as f64
    }

    pub fn kib_per_conn_active(&self) -> f64 {
        self.rss_active_kib.saturating_sub(self.rss_before_kib) as f64 / self.conns.max(1) as f64
    }

    /// Every connection echoed and stayed open.
    pub fn all_held(&self) -> bool {
        self.echoed == self.conns && self.backend_open >= self.conns
    }
}

/// Raises this process's soft open-file limit to its hard limit (children, the proxies under test and the
/// backend, inherit it) and returns (connections that fit, the limit). The binding constraint is the proxy
/// process, which needs two descriptors per proxied connection.
pub fn raise_fd_limit(conns: usize) -> Result<(usize, u64)> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).context("getrlimit NOFILE")?;
    let wanted = (conns as u64 * 2 + FD_MARGIN).max(hard);
    // Raising the hard limit needs CAP_SYS_RESOURCE; without it, settle for soft = hard.
    if rlimit::setrlimit(rlimit::Resource::NOFILE, wanted, wanted).is_err() {
        rlimit::increase_nofile_limit(wanted).context("raise RLIMIT_NOFILE")?;
    }
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    Ok((conns_within(soft).min(conns), soft))
}

/// Proxied connections a process with `limit` descriptors can hold (2 each, plus a margin).
pub fn conns_within(limit: u64) -> usize {
    (limit.saturating_sub(FD_MARGIN) / 2) as usize
}

/// Measures the proxy process of `kind` with `conns` connections.
pub async fn measure(targets: &mut Targets, kind: TargetKind, conns: usize) -> Result<Row> {
    let (addr, pid) = match kind {
        TargetKind::Chaos => (targets.addr(kind), targets.chaos.as_ref().map(|(s, _)| s.pid())),
        TargetKind::Haproxy => (targets.addr(kind), targets.haproxy.as_ref().map(|h| h.pid())),
        TargetKind::Noxious => (targets.addr(kind), targets.noxious.as_ref().and_then(|n| n.pid())),
        TargetKind::Direct => bail!("memory is measured for proxies only"),
    };
    let (Some(addr), Some(pid)) = (addr, pid) else { bail!("target {kind} not started") };
    targets.backend.settle().await;
    let rss_before_kib = rss_kib(pid)?;
    eprintln!("memory: {kind}, RSS {rss_before_kib} KiB, opening {conns} idle connections");
    let overflows_before = listen_overflows();
    let opening = Instant::now();
    let (mut streams, lagging_batches) = open_all(targets, addr, conns).await?;
    if !targets.backend.wait_until(Duration::from_secs(30), |n| n >= conns).await? {
        let seen = targets.backend.active().await?;
        eprintln!("  note: backend saw only {seen} of {conns} upstream connections after 30 s");
    }
    let open_secs = opening.elapsed().as_secs_f64();
    let listen_overflows = listen_overflows().zip(overflows_before).map(|(a, b)| a.saturating_sub(b));
    if lagging_batches > 0 {
        eprintln!(
            "  note: {lagging_batches} batches of {BATCH} connections were not all proxied upstream within \
             {BATCH_WAIT:?} (kernel listen-queue overflows meanwhile: {listen_overflows:?})"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kib = rss_kib(pid)?;
    eprintln!("  idle RSS {rss_idle_kib} KiB; echoing one byte on every connection");
    let echoed = echo_all(&mut streams).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_active_kib = rss_kib(pid)?;
    let backend_open = targets.backend.active().await?;
    eprintln!("  active RSS {rss_active_kib} KiB, {echoed}/{conns} echoed, backend sees {backend_open} open");
    drop(streams);
    if !targets.backend.wait_until(Duration::from_secs(20), |n| n == 0).await? {
        let left = targets.backend.active().await?;
        eprintln!("  note: {left} backend connections still open 20 s after closing");
    }
    targets.check_chaos_alive()?;
    Ok(Row {
        target: kind,
        conns,
        rss_before_kib,
        rss_idle_kib,
        rss_active_kib,
        echoed,
        backend_open,
        open_secs,
        lagging_batches,
        listen_overflows,
    })
}

/// Opens `conns` connections, `BATCH` at a time; after each batch waits (at most `BATCH_WAIT`) until the
/// backend has seen them all, so that the proxy's accept queue is not flooded. Returns the streams and the
/// number of batches that were still incomplete after that wait. Fails on the first connection that cannot
/// be opened.
async fn open_all(targets: &Targets, addr: SocketAddr, conns: usize) -> Result<(Vec<TcpStream>, usize)> {
    let mut streams = Vec::with_capacity(conns);
    let mut lagging = 0;
    while streams.len() < conns {
        let n = BATCH.min(conns - streams.len());
        let mut set = JoinSet::new();
        for _ in 0..n {
            set.spawn(backend::connect(addr));
        }
        while let Some(joined) = set.join_next().await {
            let opened = streams.len();
            streams.push(
                joined.context("connect task")?.with_context(|| format!("after {opened} connections"))?,
            );
        }
        let opened = streams.len();
        if !targets.backend.wait_until(BATCH_WAIT, |seen| seen >= opened).await? {
            lagging += 1;
        }
    }
    Ok((streams, lagging))
}

/// The kernel's `TcpExt: ListenOverflows` counter (accept queue full: the handshake's last ACK was dropped
/// and the connection waits in SYN-RECV for SYN-ACK retransmits, up to tens of seconds).
fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut tcp_ext = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = tcp_ext.next()?;
    let values = tcp_ext.next()?;
    let idx = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

/// Sends the echo mode byte plus one byte on each connection and counts those that echo it back.
async fn echo_all(streams: &mut Vec<TcpStream>) -> usize {
    let mut ok = 0;
    let mut rest = std::mem::take(streams);
    let mut kept = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().saturating_sub(BATCH));
        let mut set = JoinSet::new();
        for mut s in tail {
            set.spawn(async move {
                let trip = async {
                    s.write_all(&[MODE_ECHO, b'x']).await?;
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await?;
                    Ok::<bool, std::io::Error>(b[0] == b'x')
                };
                let good = matches!(tokio::time::timeout(Duration::from_secs(5), trip).await, Ok(Ok(true)));
                (s, good)
            });
        }
        while let Some(joined) = set.join_next().await {
            if let Ok((s, good)) = joined {
                ok += usize::from(good);
                kept.push(s);
            }
        }
    }
    *streams = kept;
    ok
}

/// VmRSS of `pid` in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}
