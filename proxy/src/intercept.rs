//! Transparent interception: take over a TCP port on this host so that clients keep their configuration and
//! still go through a proxy.
//!
//! - [`Interception::apply`] loads one nftables table of family `inet` (IPv4 and IPv6), named
//!   [`TABLE_PREFIX`] + the owner's pid namespace, pid and start time + a counter. Its `nat` chains REDIRECT
//!   new connections for [`InterceptSpec::port`] to the proxy's listener port [`InterceptSpec::to`]:
//!   `prerouting` for connections from other hosts or namespaces, `output` for locally originated ones. The
//!   whole table is one `nft -f -` script, one transaction: applied entirely or not at all.
//!   [`Interception::remove`] and `Drop` delete it.
//! - The proxy reads where the client meant to go with [`original_destination`] (`SO_ORIGINAL_DST`, from
//!   conntrack) and dials it with [`connect_marked`]: its socket carries [`UPSTREAM_MARK`] (`SO_MARK`) before
//!   `connect()`, and every rule skips marked packets, so the proxy's own upstream connection is never caught
//!   (nat only looks at the first packet of a connection, so the mark must be set before the SYN leaves).
//! - [`remove_stale`] deletes, at start, the tables of owners that died without removing theirs (SIGKILL, a
//!   crash): the owner is encoded in the table name and checked against `/proc/PID/stat`.
//! - [`check`] says what this host lacks (the `nft` program, `CAP_NET_ADMIN`, nf_tables nat with `redirect`).
//!
//! Every nft command can run inside a named network namespace (`/run/netns/NAME`, as `ip netns` makes them):
//! on a thread of its own that entered it with `setns(2)`, so nft sees the host's mount namespace (`ip netns
//! exec` remounts `/sys`, which hides `/sys/fs/cgroup` from nft's cgroup path lookup).
//!
//! REDIRECT rewrites the destination to the primary address of the incoming interface (`prerouting`) or to
//! the loopback address (`output`): the proxy must listen on all addresses (`0.0.0.0` or dual-stack `[::]`)
//! on the `to` port. Both chains have priority -101, just before the usual DNAT chains (Docker, kube-proxy at
//! -100), so the interception wins over a port published by a container.
//!
//! Not covered: UDP, bridged traffic without `br_netfilter`, and a process that has its own pid namespace and
//! shares the network namespace with another owner: [`remove_stale`] leaves tables of owners in other pid
//! namespaces alone, since it cannot tell whether they live.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};

/// Every table this module creates starts with this.
pub const TABLE_PREFIX: &str = "chaos_intercept_";

/// The `SO_MARK` of the proxy's upstream sockets; the rules skip packets that carry exactly this mark.
///
/// Chosen in the low byte, clear of the bits others give a meaning: Kubernetes (0x4000 masquerade, 0x8000
/// drop), Calico (0xffff0000), Cilium (0x0f00), Istio (1337 = 0x539), Tailscale (0xff0000). A socket mark
/// also selects `ip rule fwmark` routing rules: on a host that routes by mark 0xc4, the proxy's upstream
/// connections would follow that route.
pub const UPSTREAM_MARK: u32 = 0xc4;

/// Where the named network namespaces live.
pub const NETNS_DIR: &str = "/run/netns";

/// The priority of both nat chains: before the usual DNAT chains at -100 (`dstnat`).
const CHAIN_PRIORITY: i32 = -101;

/// Where nft looks cgroup v2 paths up (`socket cgroupv2 level N "PATH"` stats `/sys/fs/cgroup/PATH`).
const NFT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// `CAP_NET_ADMIN` from `include/uapi/linux/capability.h`: a bit of `CapEff` in `/proc/self/status`.
const CAP_NET_ADMIN: u32 = 12;

/// What to intercept and where to send it. Reads from a config file (`serde`), defaults as documented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptSpec {
    /// The TCP destination port taken over: new connections to it (any address) are redirected.
    pub port: u16,
    /// The local port of the proxy listener connections are redirected to.
    pub to: u16,
    /// Only connections from these source addresses or networks (`10.0.0.2`, `10.0.0.0/8`, `fd00::/64`);
    /// empty, any source. With only IPv4 entries, IPv6 connections are not intercepted, and the reverse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Only locally originated connections whose socket was made by a process in this cgroup v2 or below it,
    /// as `/proc/PID/cgroup` shows it (`/system.slice/app.service`), or as a path under the cgroup2 mount.
    /// Needs `forwarded: false`: a connection from another host has no local socket to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Intercept connections opened on this host (hook `output`). Default true.
    #[serde(default = "yes")]
    pub local: bool,
    /// Intercept connections arriving from other hosts or namespaces (hook `prerouting`). Default true.
    #[serde(default = "yes")]
    pub forwarded: bool,
    /// A named network namespace (`/run/netns/NAME`); `None` is this process's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

fn yes() -> bool {
    true
}

/// An applied interception: one nftables table, deleted by [`Interception::remove`] or on drop.
#[derive(Debug)]
pub struct Interception {
    spec: InterceptSpec,
    table: String,
    /// Whether the table has been deleted.
    removed: Mutex<bool>,
}

/// Why an interception could not be applied, removed or checked.
///
/// Messages are lowercase and say what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    /// A spec that can never be applied; nothing was touched.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// This host lacks something interception needs (a program, a capability, a kernel feature).
    #[error("transparent interception is not supported here: {0}")]
    Unsupported(String),
    /// An nft command failed; `detail` holds its exit status and stderr.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
}

// === impl InterceptSpec ===

impl InterceptSpec {
    /// Intercepts every connection to `port`, local and forwarded, in this network namespace, sending it to
    /// the listener on local port `to`.
    pub fn new(port: u16, to: u16) -> InterceptSpec {
        InterceptSpec {
            port,
            to,
            sources: Vec::new(),
            cgroup: None,
            local: true,
            forwarded: true,
            netns: None,
        }
    }

    /// Refuses what could never be applied: port 0, no hook, bad sources, a cgroup that does not exist or
    /// that cannot match forwarded traffic, a namespace that does not exist.
    pub fn validate(&self) -> Result<(), InterceptError> {
        self.rules().map(drop)
    }

    /// The whole table `table` as one nft script (what [`Interception::apply`] loads, for a dry run).
    pub fn script(&self, table: &str) -> Result<String, InterceptError> {
        let rules = self.rules()?;
        let mut out = format!("create table inet {table}\n");
        for (chain, _) in &rules {
            let hook = format!("type nat hook {chain} priority {CHAIN_PRIORITY}; policy accept;");
            let _ = writeln!(out, "add chain inet {table} {chain} {{ {hook} }}");
        }
        let verdict = format!("meta mark != {UPSTREAM_MARK:#010x} counter redirect to :{}", self.to);
        for (chain, matches) in rules.iter().flat_map(|(chain, rules)| rules.iter().map(move |r| (chain, r)))
        {
            let _ = writeln!(out, "add rule inet {table} {chain} {matches} {verdict}");
        }
        Ok(out)
    }

    /// Validates and returns each chain with the match part of its rules.
    fn rules(&self) -> Result<Vec<(&'static str, Vec<String>)>, InterceptError> {
        if self.port == 0 {
            return Err(invalid("port", "expected a TCP port from 1 to 65535, found 0".into()));
        }
        if self.to == 0 {
            return Err(invalid("to", "expected the proxy listener's port (1 to 65535), found 0".into()));
        }
        if !self.local && !self.forwarded {
            return Err(invalid(
                "hooks",
                "expected local or forwarded (or both) to be true, found both false (nothing to intercept)"
                    .into(),
            ));
        }
        validate_netns(self.netns.as_deref())?;
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for source in &self.sources {
            match parse_network(source)? {
                IpAddr::V4(_) => v4.push(source.trim()),
                IpAddr::V6(_) => v6.push(source.trim()),
            }
        }
        let port = format!("tcp dport {}", self.port);
        let mut by_source = Vec::new();
        if self.sources.is_empty() {
            by_source.push(port);
        } else {
            if !v4.is_empty() {
                by_source.push(format!("{port} ip saddr {{ {} }}", v4.join(", ")));
            }
            if !v6.is_empty() {
                by_source.push(format!("{port} ip6 saddr {{ {} }}", v6.join(", ")));
            }
        }
        let mut chains = Vec::new();
        if self.forwarded {
            if let Some(cgroup) = &self.cgroup {
                return Err(invalid(
                    "cgroup",
                    format!(
                        "expected forwarded: false with a cgroup (connections from other hosts have no local \
                         socket to match), found forwarded: true and cgroup {cgroup:?}"
                    ),
                ));
            }
            chains.push(("prerouting", by_source.clone()));
        }
        if self.local {
            let rules = match &self.cgroup {
                Some(cgroup) => {
                    let (level, path) = resolve_cgroup(cgroup)?;
                    let socket = format!(" socket cgroupv2 level {level} \"{path}\"");
                    by_source.into_iter().map(|r| r + &socket).collect()
                }
                None => by_source,
            };
            chains.push(("output", rules));
        }
        Ok(chains)
    }
}

fn invalid(what: &'static str, reason: String) -> InterceptError {
    InterceptError::Invalid { what, reason }
}

/// `10.0.0.2`, `10.0.0.0/8`, `fd00::/64`: the address, or why it is not one.
fn parse_network(source: &str) -> Result<IpAddr, InterceptError> {
    let text = source.trim();
    let expected = || {
        invalid(
            "sources",
            format!("expected an IP address or network (10.0.0.0/8, fd00::/64), found {source:?}"),
        )
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| expected())?;
    if let Some(prefix) = prefix {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(bits) if bits <= max => {}
            _ => return Err(expected()),
        }
    }
    Ok(addr)
}

/// The cgroup's level (its depth below the cgroup2 root) and its path as nft looks it up (relative to
/// `/sys/fs/cgroup`); refuses a cgroup that does not exist.
fn resolve_cgroup(cgroup: &str) -> Result<(usize, String), InterceptError> {
    let bad = |reason: String| invalid("cgroup", reason);
    if cgroup.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(bad(format!(
            "expected a cgroup path without quotes, backslashes or control characters, found {cgroup:?}"
        )));
    }
    let root = cgroup2_root()?;
    let relative = Path::new(cgroup).strip_prefix(&root).unwrap_or(Path::new(cgroup));
    let parts: Vec<&str> =
        relative.to_str().unwrap_or_default().split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(bad(format!(
            "expected a cgroup below the root, without '.' or '..' (/system.slice/app.service), \
             found {cgroup:?}"
        )));
    }
    let dir = parts.iter().fold(root.clone(), |dir, part| dir.join(part));
    if !dir.is_dir() {
        return Err(bad(format!("expected an existing cgroup v2 directory, found no {}", dir.display())));
    }
    let Ok(under_nft_root) = dir.strip_prefix(NFT_CGROUP_ROOT) else {
        return Err(InterceptError::Unsupported(format!(
            "nft looks cgroup paths up under {NFT_CGROUP_ROOT}, found cgroup2 mounted at {}",
            root.display()
        )));
    };
    Ok((parts.len(), under_nft_root.to_string_lossy().into_owned()))
}

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hosts with both
/// hierarchies (`/proc/self/mountinfo`).
pub fn cgroup2_root() -> Result<PathBuf, InterceptError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
        InterceptError::Unsupported(format!(
            "expected /proc/self/mountinfo to list the cgroup2 mount, found {e}"
        ))
    })?;
    let mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| {
            let (fields, fs) = line.split_once(" - ")?;
            let mount_point = fields.split(' ').nth(4)?;
            (fs.split(' ').next() == Some("cgroup2"))
                .then(|| PathBuf::from(mount_point.replace("\\040", " ")))
        })
        .collect();
    let preferred = mounts.iter().find(|m| *m == Path::new(NFT_CGROUP_ROOT));
    let under = || mounts.iter().find(|m| m.starts_with(NFT_CGROUP_ROOT));
    preferred
        .or_else(under)
        .or(mounts.first())
        .cloned()
        .ok_or_else(|| InterceptError::Unsupported("expected a cgroup2 mount, found none".into()))
}

// === impl Interception ===

impl Interception {
    /// Validates `spec` and loads its table in one transaction; on error nothing is applied.
    ///
    /// Runs nft synchronously (a few milliseconds). Needs `nft` and `CAP_NET_ADMIN`.
    pub fn apply(spec: &InterceptSpec) -> Result<Interception, InterceptError> {
        let table = table_name();
        let script = spec.script(&table)?;
        require_basics()?;
        let netns = spec.netns.as_deref();
        if let Err(e) = nft(netns, &["-f", "-"], Some(&script)) {
            tracing::warn!(%table, ?netns, port = spec.port, to = spec.to, error = %e, "interception failed");
            return Err(explain(e));
        }
        tracing::info!(%table, ?netns, port = spec.port, to = spec.to, "interception applied");
        Ok(Interception { spec: spec.clone(), table, removed: Mutex::new(false) })
    }

    /// The nftables table (family `inet`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The named namespace the table lives in, `None` for this process's own.
    pub fn netns(&self) -> Option<&str> {
        self.spec.netns.as_deref()
    }

    pub fn spec(&self) -> &InterceptSpec {
        &self.spec
    }

    /// Deletes the table. Synchronous and idempotent; succeeds when the table or its namespace is already
    /// gone. On error the interception stays applied, so the next call retries.
    pub fn remove(&self) -> Result<(), InterceptError> {
        self.remove_by("call")
    }

    /// Whether a removal (by call or drop) has completed.
    pub fn is_removed(&self) -> bool {
        *self.removed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remove_by(&self, by: &'static str) -> Result<(), InterceptError> {
        let mut removed = self.removed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *removed {
            return Ok(());
        }
        let (table, netns) = (&self.table, self.netns());
        match delete_table(netns, table) {
            Ok(()) => {
                *removed = true;
                tracing::info!(%table, ?netns, by, "interception removed");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(%table, ?netns, by, error = %e, "interception removal failed");
                Err(e)
            }
        }
    }
}

impl Drop for Interception {
    fn drop(&mut self) {
        // Logged; a destructor has no one to return it to. `remove_stale` at the next start retries.
        let _ = self.remove_by("drop");
    }
}

/// `chaos_intercept_<pid ns>_<pid>_<start time>_<n>`: unique across processes and restarts (a reused pid has
/// another start time), and enough for [`remove_stale`] to tell whether the owner still runs.
fn table_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static OWNER: OnceLock<String> = OnceLock::new();
    let owner = OWNER.get_or_init(|| {
        let pid = std::process::id();
        let start = start_time(pid).ok().flatten().unwrap_or(0);
        format!("{}_{pid}_{start}", pid_namespace())
    });
    format!("{TABLE_PREFIX}{owner}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The owner encoded in a table name: pid namespace inode, pid, start time.
fn owner_of(table: &str) -> Option<(u64, u32, u64)> {
    let mut parts = table.strip_prefix(TABLE_PREFIX)?.split('_');
    let mut next = || parts.next()?.parse::<u64>().ok();
    let (pidns, pid, start, _n) = (next()?, next()?, next()?, next()?);
    Some((pidns, u32::try_from(pid).ok()?, start))
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid` reads `pid:[4026531836]`); 0 if unknown.
fn pid_namespace() -> u64 {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| {
            let text = link.to_string_lossy().into_owned();
            text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
        })
        .unwrap_or(0)
}

/// Field 22 of `/proc/PID/stat` (clock ticks after boot), `Ok(None)` when the process does not exist or has
/// exited (a zombie).
fn start_time(pid: u32) -> io::Result<Option<u64>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(Errno::ESRCH as i32) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // `comm` may hold spaces and parentheses: count fields after the last `)`; field 3 is the state.
    let rest: Vec<&str> =
        text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    if matches!(rest.first(), Some(&("Z" | "X" | "x"))) {
        return Ok(None);
    }
    rest.get(22 - 3).and_then(|field| field.parse().ok()).map(Some).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected 22 fields in /proc/{pid}/stat, found {text:?}"),
        )
    })
}

/// Whether the owner of `table` is gone: `None` when that cannot be told (another pid namespace, or not one
/// of ours).
fn owner_gone(table: &str) -> Option<bool> {
    let (pidns, pid, start) = owner_of(table)?;
    let ours = pid_namespace();
    if pidns != ours && pidns != 0 && ours != 0 {
        return None;
    }
    match start_time(pid) {
        // Start time 0: the owner could not read its own; only a missing process is surely gone.
        Ok(Some(now)) => Some(start != 0 && now != start),
        Ok(None) => Some(true),
        Err(_) => None,
    }
}

/// Deletes every interception table in `netns` (`None`: this process's own) whose owner no longer runs, and
/// returns their names. Tables of live owners, of owners in another pid namespace, and names this module
/// would not have made are left alone.
pub fn remove_stale(netns: Option<&str>) -> Result<Vec<String>, InterceptError> {
    validate_netns(netns)?;
    require_basics()?;
    let listed = nft(netns, &["list", "tables"], None).map_err(explain)?;
    let mut removed = Vec::new();
    for table in listed.lines().filter_map(|l| l.trim().strip_prefix("table inet ")) {
        if !table.starts_with(TABLE_PREFIX) {
            continue;
        }
        match owner_gone(table) {
            Some(true) => {
                delete_table(netns, table)?;
                tracing::info!(%table, ?netns, "stale interception removed");
                removed.push(table.to_string());
            }
            Some(false) => {}
            None => {
                tracing::debug!(%table, ?netns, "interception of an owner this process cannot check kept")
            }
        }
    }
    Ok(removed)
}

/// Refuses (naming what is missing) a host that cannot intercept: no `nft`, no `CAP_NET_ADMIN`, or a kernel
/// whose nf_tables cannot load nat chains with `redirect`. The kernel is probed by loading a table shaped
/// like a real one in a throwaway network namespace, so the host's ruleset is never touched; without the
/// right to create one (`CAP_SYS_ADMIN`), that part is skipped and [`Interception::apply`] reports what nft
/// says. Takes 10 to 30 ms: call it once, at start.
pub fn check() -> Result<(), InterceptError> {
    require_basics()?;
    std::thread::scope(|scope| {
        let probe = scope.spawn(probe_in_throwaway_netns);
        probe.join().unwrap_or_else(|_| Err(InterceptError::Unsupported("the probe thread panicked".into())))
    })
}

/// Loads a table with every expression a real one uses (both hooks, both source families) in a new network
/// namespace of this thread's own, which the kernel frees once the thread and nft are gone.
fn probe_in_throwaway_netns() -> Result<(), InterceptError> {
    // Only this thread moves; nft, started from it, inherits its namespace.
    if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
        return Ok(());
    }
    let sources = vec!["192.0.2.0/24".into(), "2001:db8::/32".into()];
    let script = InterceptSpec { sources, ..InterceptSpec::new(9, 10) }.script("chaos_intercept_probe")?;
    nft(None, &["-f", "-"], Some(&script)).map(drop).map_err(|e| {
        InterceptError::Unsupported(format!(
            "expected nf_tables to load inet nat chains with redirect (kernel modules nft_chain_nat, \
             nft_redir), found: {}",
            nft_errors(&e)
        ))
    })
}

/// The cheap part of [`check`]: the `nft` program and `CAP_NET_ADMIN`.
fn require_basics() -> Result<(), InterceptError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|dir| dir.join("nft").is_file()) {
        return Err(InterceptError::Unsupported(
            "expected the nft program, found none on PATH (Debian package nftables)".into(),
        ));
    }
    if !has_net_admin() {
        return Err(InterceptError::Unsupported(
            "expected CAP_NET_ADMIN (run as root), found it missing from the effective capabilities".into(),
        ));
    }
    Ok(())
}

/// Whether `CAP_NET_ADMIN` is in `CapEff` of `/proc/self/status`; true when that cannot be read (nft then
/// says what is wrong).
fn has_net_admin() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return true };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_none_or(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// A failed nft command, with "operation not permitted" turned into what is missing.
fn explain(error: InterceptError) -> InterceptError {
    match &error {
        InterceptError::Command { detail, .. } if detail.contains("Operation not permitted") => {
            InterceptError::Unsupported(format!(
                "expected the right to change nftables (CAP_NET_ADMIN, run as root), found: {}",
                nft_errors(&error)
            ))
        }
        _ => error,
    }
}

/// The lines of a failed nft command that say what went wrong (nft repeats the script and marks it).
fn nft_errors(error: &InterceptError) -> String {
    let text = match error {
        InterceptError::Command { detail, .. } => detail.clone(),
        other => other.to_string(),
    };
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| l.contains("Error")).collect();
    if lines.is_empty() { text.lines().next().unwrap_or_default().to_string() } else { lines.join("; ") }
}

/// Refuses a namespace name `ip netns` could not have made, or one that does not exist under `/run/netns`.
fn validate_netns(netns: Option<&str>) -> Result<(), InterceptError> {
    let Some(ns) = netns else { return Ok(()) };
    if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." || ns.chars().any(char::is_whitespace) {
        return Err(invalid(
            "netns",
            format!("expected the name of a namespace under {NETNS_DIR} (no '/' or spaces), found {ns:?}"),
        ));
    }
    if !Path::new(NETNS_DIR).join(ns).exists() {
        return Err(invalid(
            "netns",
            format!(
                "expected an existing network namespace, found no {NETNS_DIR}/{ns} (`ip netns add {ns}` \
                 makes one)"
            ),
        ));
    }
    Ok(())
}

/// A named namespace that no longer exists: whatever was loaded in it went with it.
fn netns_gone(netns: Option<&str>) -> bool {
    netns.is_some_and(|ns| !Path::new(NETNS_DIR).join(ns).exists())
}

/// Deletes the `inet` table `table`; succeeds when it does not exist, or its namespace does not any more.
fn delete_table(netns: Option<&str>, table: &str) -> Result<(), InterceptError> {
    if netns_gone(netns) {
        return Ok(());
    }
    match nft(netns, &["delete", "table", "inet", table], None) {
        Ok(_) => Ok(()),
        // ENOENT from the kernel: the table is already gone.
        Err(InterceptError::Command { detail, .. }) if detail.contains("No such file or directory") => Ok(()),
        Err(_) if netns_gone(netns) => Ok(()),
        Err(e) => Err(explain(e)),
    }
}

/// Runs `nft args...` with `stdin` inside `netns` (entered by a thread of its own), returning stdout, or an
/// error that carries the command line, the exit status and stderr.
fn nft(netns: Option<&str>, args: &[&str], stdin: Option<&str>) -> Result<String, InterceptError> {
    let shown = match netns {
        Some(ns) => format!("nft {} (in netns {ns})", args.join(" ")),
        None => format!("nft {}", args.join(" ")),
    };
    let Some(ns) = netns else { return run_nft(&shown, args, stdin) };
    let path = Path::new(NETNS_DIR).join(ns);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let failed = |detail: String| InterceptError::Command { command: shown.clone(), detail };
                let file =
                    File::open(&path).map_err(|e| failed(format!("opening {}: {e}", path.display())))?;
                // Only this thread moves; the nft it starts inherits the namespace.
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    InterceptError::Unsupported(format!(
                        "expected to enter netns {ns} (CAP_SYS_ADMIN, run as root), found setns failing: {e}"
                    ))
                })?;
                run_nft(&shown, args, stdin)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(InterceptError::Command { command: shown.clone(), detail: "panicked".into() })
            })
    })
}

fn run_nft(shown: &str, args: &[&str], stdin: Option<&str>) -> Result<String, InterceptError> {
    let failed = |detail: String| InterceptError::Command { command: shown.to_string(), detail };
    let mut command = Command::new("nft");
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            InterceptError::Unsupported(
                "expected the nft program, found none on PATH (Debian package nftables)".into(),
            )
        } else {
            failed(e.to_string())
        }
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The pipe closes at the end of this block, so nft sees the end of its input.
        if let Err(e) = pipe.write_all(text.as_bytes()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!("writing stdin: {e}")));
        }
    }
    let output = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(failed(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim())))
    }
}

/// Where the client of an intercepted connection meant to go: the destination before the REDIRECT, from
/// conntrack (`SO_ORIGINAL_DST` for IPv4, also on a dual-stack socket; `IP6T_SO_ORIGINAL_DST` for IPv6).
///
/// A connection that was not redirected has its own local address as original destination, and one conntrack
/// does not know about (`nf_conntrack` not loaded, or no NAT at all) fails with `NotFound`: see
/// [`intercepted_destination`].
pub fn original_destination(stream: &TcpStream) -> io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    let v4 = match local {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(addr) => addr.ip().to_ipv4_mapped().is_some(),
    };
    let no_entry = |e: Errno| {
        if e == Errno::ENOENT {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "expected a conntrack entry for the connection to {local}, found none (not redirected)"
                ),
            )
        } else {
            io::Error::from(e)
        }
    };
    if v4 {
        let raw = getsockopt(stream, sockopt::OriginalDst).map_err(no_entry)?;
        let ip = Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr));
        Ok(SocketAddr::from((ip, u16::from_be(raw.sin_port))))
    } else {
        let raw = getsockopt(stream, sockopt::Ip6tOriginalDst).map_err(no_entry)?;
        let ip = Ipv6Addr::from(raw.sin6_addr.s6_addr);
        let port = u16::from_be(raw.sin6_port);
        Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, raw.sin6_flowinfo, raw.sin6_scope_id)))
    }
}

/// The original destination of a redirected connection, `None` when the connection was not redirected (it
/// came straight to the listener): dialing that would connect the proxy to itself.
pub fn intercepted_destination(stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
    let local = stream.local_addr()?;
    match original_destination(stream) {
        Ok(original) if canonical(original) == canonical(local) => Ok(None),
        Ok(original) => Ok(Some(original)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Sets [`UPSTREAM_MARK`] on a socket (`SO_MARK`, needs `CAP_NET_ADMIN`), so interception rules skip its
/// connections. Set it before `connect()`: nat decides on the first packet.
pub fn mark_socket<S: AsFd>(socket: &S) -> io::Result<()> {
    setsockopt(socket, sockopt::Mark, &UPSTREAM_MARK).map_err(|e| {
        if e == Errno::EPERM {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "expected CAP_NET_ADMIN to set SO_MARK on the upstream socket (run as root), found EPERM",
            )
        } else {
            io::Error::from(e)
        }
    })
}

/// The upstream value that means "dial where the client meant to go" (read with SO_ORIGINAL_DST): what an
/// intercepting proxy in front of many destinations uses.
pub const ORIGINAL_DESTINATION: &str = "original";

/// Set once an interception is installed in this process: from then on every upstream dial is marked, so no
/// proxy's own traffic is ever redirected back to a proxy (a loop), whichever proxy dials and wherever to.
static MARK_DIALS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks every upstream dial of this process from now on (see [`dial`]).
pub fn mark_upstream_dials() {
    MARK_DIALS.store(true, Ordering::Relaxed);
}

/// Dials an upstream `host:port` the way every proxy in this process does: resolved, each address tried in
/// turn, and marked with [`UPSTREAM_MARK`] once an interception exists.
pub async fn dial(upstream: &str) -> io::Result<TcpStream> {
    if !MARK_DIALS.load(Ordering::Relaxed) {
        return TcpStream::connect(upstream).await;
    }
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, format!("{upstream}: no address"));
    for addr in tokio::net::lookup_host(upstream).await? {
        match connect_marked(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The upstream a client connection goes to: its original destination when `upstream` is
/// [`ORIGINAL_DESTINATION`] (an error when the connection was not redirected: dialing would connect the proxy to
/// itself), else `upstream` itself.
pub async fn dial_for(client: &TcpStream, upstream: &str) -> io::Result<TcpStream> {
    if upstream != ORIGINAL_DESTINATION {
        return dial(upstream).await;
    }
    match intercepted_destination(client)? {
        Some(addr) => connect_marked(addr).await,
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "upstream \"original\" needs an intercepted connection, and this one was not redirected",
        )),
    }
}

/// Connects to `addr` from a socket marked with [`UPSTREAM_MARK`]: the connection interception never catches.
pub async fn connect_marked(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    mark_socket(&socket)?;
    socket.connect(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_loads_one_table_with_a_redirect_per_hook_and_source_family() {
        let spec = InterceptSpec {
            sources: vec!["10.0.0.0/8".into(), " 192.0.2.7".into(), "fd00::/64".into()],
            ..InterceptSpec::new(8080, 15001)
        };
        assert_eq!(
            spec.script("t").unwrap(),
            "create table inet t\n\
             add chain inet t prerouting { type nat hook prerouting priority -101; policy accept; }\n\
             add chain inet t output { type nat hook output priority -101; policy accept; }\n\
             add rule inet t prerouting tcp dport 8080 ip saddr { 10.0.0.0/8, 192.0.2.7 } \
             meta mark != 0x000000c4 counter redirect to :15001\n\
             add rule inet t prerouting tcp dport 8080 ip6 saddr { fd00::/64 } \
             meta mark != 0x000000c4 counter redirect to :15001\n\
             add rule inet t output tcp dport 8080 ip saddr { 10.0.0.0/8, 192.0.2.7 } \
             meta mark != 0x000000c4 counter redirect to :15001\n\
             add rule inet t output tcp dport 8080 ip6 saddr { fd00::/64 } \
             meta mark != 0x000000c4 counter redirect to :15001\n"
        );
        let local_only = InterceptSpec { forwarded: false, ..InterceptSpec::new(80, 8080) };
        let script = local_only.script("t").unwrap();
        assert!(
            !script.contains("prerouting") && script.contains("output tcp dport 80 meta mark"),
            "{script}"
        );
    }

    #[test]
    fn specs_that_cannot_apply_are_refused_saying_what_was_expected() {
        let error = |spec: InterceptSpec| spec.validate().unwrap_err().to_string();
        assert_eq!(
            error(InterceptSpec::new(0, 1)),
            "invalid port: expected a TCP port from 1 to 65535, found 0"
        );
        assert!(error(InterceptSpec::new(1, 0)).starts_with("invalid to: expected"));
        let none = InterceptSpec { local: false, forwarded: false, ..InterceptSpec::new(1, 2) };
        assert!(error(none).contains("found both false"));
        for bad in ["10.0.0.0/33", "fd00::/129", "host.example", "10.0.0.0/", ""] {
            let spec = InterceptSpec { sources: vec![bad.into()], ..InterceptSpec::new(1, 2) };
            assert!(error(spec).starts_with("invalid sources: expected an IP address or network"), "{bad}");
        }
        let cgroup = InterceptSpec { cgroup: Some("/x".into()), ..InterceptSpec::new(1, 2) };
        assert!(error(cgroup).starts_with("invalid cgroup: expected forwarded: false"));
        let quoted =
            InterceptSpec { cgroup: Some("a\"b".into()), forwarded: false, ..InterceptSpec::new(1, 2) };
        assert!(error(quoted).starts_with("invalid cgroup: expected a cgroup path without quotes"));
        let netns = InterceptSpec { netns: Some("a/b".into()), ..InterceptSpec::new(1, 2) };
        assert!(error(netns).starts_with("invalid netns: expected the name of a namespace"));
        let missing = InterceptSpec { netns: Some("chaos-no-such-netns".into()), ..InterceptSpec::new(1, 2) };
        assert!(error(missing).contains("found no /run/netns/chaos-no-such-netns"));
    }

    #[test]
    fn specs_read_from_config_with_defaults() {
        let spec: InterceptSpec = serde_json::from_str(r#"{"port": 5432, "to": 15432}"#).unwrap();
        assert_eq!(spec, InterceptSpec::new(5432, 15432));
        let spec: InterceptSpec =
            serde_saphyr::from_str("port: 80\nto: 8080\nsources: [10.0.0.0/8]\nlocal: false\nnetns: blue\n")
                .unwrap();
        assert_eq!((spec.local, spec.forwarded, spec.netns.as_deref()), (false, true, Some("blue")));
        assert!(serde_json::from_str::<InterceptSpec>(r#"{"port": 80, "to": 1, "source": []}"#).is_err());
        assert_eq!(
            serde_json::to_string(&InterceptSpec::new(80, 8080)).unwrap(),
            r#"{"port":80,"to":8080,"local":true,"forwarded":true}"#
        );
    }

    #[test]
    fn table_names_carry_their_owner() {
        let name = table_name();
        let (pidns, pid, start) = owner_of(&name).unwrap();
        assert_eq!((pidns, pid), (pid_namespace(), std::process::id()));
        assert_eq!(Some(start), start_time(pid).unwrap());
        assert_eq!(owner_gone(&name), Some(false));
        assert_ne!(table_name(), name, "a counter tells tables of one process apart");
        // A pid that cannot exist (above pid_max), and a start time that is not the live process's.
        assert_eq!(owner_gone(&format!("{TABLE_PREFIX}{pidns}_4194305_1_0")), Some(true));
        assert_eq!(owner_gone(&format!("{TABLE_PREFIX}{pidns}_{pid}_{}_0", start + 1)), Some(true));
        assert_eq!(owner_gone(&format!("{TABLE_PREFIX}{}_4194305_1_0", pidns + 1)), None);
        assert_eq!(owner_gone("chaos_intercept_probe"), None);
        assert_eq!(owner_of("chaos_agent_1_2_fault_3"), None);
    }
}
