//! The four ways a client reaches the backend: direct, through `chaos proxy`, HAProxy or noxious.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::backend::Backend;
use crate::chaos::ChaosServer;
use crate::haproxy::{self, Haproxy};
use crate::noxious::Noxious;

/// Name of the proxy the bench creates on the chaos server.
pub const CHAOS_PROXY: &str = "bench";

/// Which path the traffic takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Straight to the backend: the baseline.
    Direct,
    /// Through `chaos proxy`.
    Chaos,
    /// Through HAProxy in TCP mode.
    Haproxy,
    /// Through the noxious library (in a child process).
    Noxious,
}

impl TargetKind {
    /// All targets, baseline first.
    pub const ALL: [TargetKind; 4] = [Self::Direct, Self::Chaos, Self::Haproxy, Self::Noxious];
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Direct => "direct",
            Self::Chaos => "chaos",
            Self::Haproxy => "haproxy",
            Self::Noxious => "noxious",
        })
    }
}

/// Everything the run set up; each process or thread is stopped when this is dropped.
pub struct Targets {
    pub backend: Backend,
    pub chaos: Option<(ChaosServer, SocketAddr)>,
    pub haproxy: Option<Haproxy>,
    pub noxious: Option<Noxious>,
    /// Versions of the baselines, for the report header.
    pub versions: Vec<(String, String)>,
}

/// What to start.
pub struct Wanted<'a> {
    pub chaos_bin: Option<&'a Path>,
    pub haproxy: bool,
    pub noxious: bool,
    /// HAProxy `maxconn`: the memory benchmark's connection count, within the open-file limit.
    pub haproxy_maxconn: usize,
    pub work_dir: &'a Path,
}

impl Targets {
    /// Starts the backend and the wanted proxies in front of it.
    pub async fn start(wanted: Wanted<'_>) -> Result<Self> {
        let backend = Backend::start().await?;
        let mut versions = Vec::new();
        let chaos = match wanted.chaos_bin {
            Some(bin) => {
                eprintln!("starting {} proxy", bin.display());
                let server = ChaosServer::spawn(bin, wanted.work_dir)?;
                let listen = server.create_proxy(CHAOS_PROXY, backend.addr()).await?;
                eprintln!("  admin http://{} , proxy {listen} -> {}", server.admin(), backend.addr());
                let v = server.version().await.unwrap_or_else(|| "?".to_string());
                versions.push(("chaos".to_string(), format!("{} (`GET /version`: {v})", bin.display())));
                Some((server, listen))
            }
            None => None,
        };
        let haproxy = if wanted.haproxy {
            let bin = haproxy::find_binary()?;
            let h = Haproxy::start(&bin, wanted.work_dir, backend.addr(), wanted.haproxy_maxconn).await?;
            eprintln!("started haproxy on {}", h.listen());
            let v = haproxy::version(&bin).unwrap_or_else(|| "?".to_string());
            versions.push(("haproxy".to_string(), format!("{v} (mode tcp, default buffers and threads)")));
            Some(h)
        } else {
            None
        };
        let noxious = if wanted.noxious {
            let n = Noxious::start(backend.addr()).await?;
            eprintln!("started noxious on {}", n.listen());
            versions.push((
                "noxious".to_string(),
                "noxious 1.0.4 (library crate, run in a child process of chaos-bench)".to_string(),
            ));
            Some(n)
        } else {
            None
        };
        Ok(Self { backend, chaos, haproxy, noxious, versions })
    }

    /// The address a client dials for `kind`, if that target was started.
    pub fn addr(&self, kind: TargetKind) -> Option<SocketAddr> {
        match kind {
            TargetKind::Direct => Some(self.backend.addr()),
            TargetKind::Chaos => self.chaos.as_ref().map(|(_, listen)| *listen),
            TargetKind::Haproxy => self.haproxy.as_ref().map(Haproxy::listen),
            TargetKind::Noxious => self.noxious.as_ref().map(Noxious::listen),
        }
    }

    /// The chaos server, or an error explaining that this benchmark needs it.
    pub fn chaos(&self) -> Result<&ChaosServer> {
        self.chaos.as_ref().map(|(s, _)| s).context("this benchmark needs the chaos target")
    }

    /// Fails if the chaos process died (checked between measurements).
    pub fn check_chaos_alive(&mut self) -> Result<()> {
        match self.chaos.as_mut() {
            Some((server, _)) => server.check_alive(),
            None => Ok(()),
        }
    }
}

/// Default chaos binary: the release `chaos` of the target dir this executable was built in
/// (`<target>/release/chaos`), else `<workspace>/target/release/chaos`.
pub fn default_chaos_bin() -> PathBuf {
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(|target| target.join("release/chaos")));
    match from_exe {
        Some(p) if p.is_file() => p,
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/chaos"),
    }
}
