//! Network faults: nftables rules in a table of the fault's own, and tc qdiscs, optionally inside a named network
//! namespace (`/run/netns/NAME`, as `ip netns` makes them).
//!
//! - [`Partition`] drops every packet its [`Filter`] matches, [`Loss`] a share of them. Each fault owns one
//!   `inet` table, named [`TABLE_PREFIX`] + the agent's pid namespace, pid and start time + the fault id (a
//!   `chaos-host-sys` owned table), with base chains `input` and `output` at priority -150 (before output DNAT,
//!   so hosts match the address the application used), policy accept, rules that only drop. It is loaded by
//!   one `nft -f -` transaction and reverted by deleting the table. Loopback traffic is never matched; a UDP
//!   send dropped on egress fails with `EPERM`.
//! - [`Bandwidth`] (`tbf`) and [`Latency`] (`netem`) are a device's root qdisc with the handle
//!   [`QDISC_HANDLE`], added only over the kernel's default qdisc and deleted only while still ours.
//! - [`Capabilities`] says what this host supports, probed in a throwaway namespace; every `apply` checks it.
//!
//! Each `apply` validates the spec, writes the undo journal record ([`Undo::DeleteNftTable`] or
//! [`Undo::DeleteQdisc`]) and only then changes the host; on error it runs the undo and deletes the record, so
//! nothing is left halfway. The [`NetHandle`] it returns reverts by call (idempotent) or on drop; a process that
//! dies holding one leaves the record, which the replay (`undo::replay`) reverts.
//!
//! Events are those of every fault: `injected`, `reverted`, `failed`, with the fields `fault_id`, `kind` and
//! `target` (the table or the device's qdisc) instead of `pids`.
//!
//! The programs `nft`, `tc` and `ip` are run, not linked: they are what an operator would use to inspect or undo
//! by hand, and their messages name the missing kernel feature when something is unsupported.
//!
//! Not covered: forwarded traffic (containers behind a bridge are faulted inside their own namespace), ingress
//! shaping, several shaping faults on one device.

mod caps;
mod filter;
mod nft;
mod tc;

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

pub use caps::{Capabilities, Support};
pub use filter::{Direction, Filter, Protocol};
pub use nft::{Loss, Partition, TABLE_PREFIX};
pub use tc::{Bandwidth, Latency, QDISC_HANDLE, parse_rate};

use chaos_host_sys::nft::NftError;

use crate::AgentError;
use crate::faults::{ActiveFault, FaultId, FaultKind};
use crate::journal::{Entry, Journal, Undo};

/// Where the named network namespaces live.
pub const NETNS_DIR: &str = chaos_host_sys::nft::NETNS_DIR;

/// An applied network fault. Reverting is synchronous (one `nft` or `tc` command) and idempotent.
///
/// The fault ends at the first of [`NetHandle::revert`] or the handle being dropped (so a step that panics
/// reverts while unwinding); a handle that is leaked, or a process that dies, leaves the journal record for
/// the replay (`undo::replay`).
#[derive(Debug)]
pub struct NetHandle {
    id: FaultId,
    kind: FaultKind,
    target: NetTarget,
    entry: Entry,
    /// Whether a revert has completed.
    reverted: Mutex<bool>,
}

/// What an applied network fault changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetTarget {
    /// An nftables table of family `inet`.
    Table { netns: Option<String>, table: String },
    /// The root qdisc of a device, with its handle.
    Qdisc { netns: Option<String>, device: String, handle: String },
}

// === impl NetHandle ===

impl NetHandle {
    pub fn id(&self) -> FaultId {
        self.id
    }

    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    /// The table or qdisc this fault added.
    pub fn target(&self) -> &NetTarget {
        &self.target
    }

    /// The nftables table (partition, loss).
    pub fn table(&self) -> Option<&str> {
        match &self.target {
            NetTarget::Table { table, .. } => Some(table),
            NetTarget::Qdisc { .. } => None,
        }
    }

    /// The device whose root qdisc this fault set (bandwidth, latency).
    pub fn device(&self) -> Option<&str> {
        match &self.target {
            NetTarget::Qdisc { device, .. } => Some(device),
            NetTarget::Table { .. } => None,
        }
    }

    /// The named namespace the fault lives in, `None` for the agent's own.
    pub fn netns(&self) -> Option<&str> {
        match &self.target {
            NetTarget::Table { netns, .. } | NetTarget::Qdisc { netns, .. } => netns.as_deref(),
        }
    }

    /// The journal record of this fault, deleted once it is reverted.
    pub fn journal_entry(&self) -> &Entry {
        &self.entry
    }

    /// Deletes the table or qdisc (only while it is still ours) and the journal record. Synchronous and
    /// idempotent; on error the fault stays pending, so the next call retries.
    pub fn revert(&self) -> Result<(), AgentError> {
        self.revert_by("call")
    }

    /// Whether a revert (by call or drop) has completed.
    pub fn is_reverted(&self) -> bool {
        *self.reverted.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn revert_by(&self, by: &'static str) -> Result<(), AgentError> {
        let mut reverted = self.reverted.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *reverted {
            return Ok(());
        }
        let (id, kind, target) = (self.id, self.kind, &self.target);
        match self.entry.revert() {
            Ok(()) => {
                *reverted = true;
                tracing::info!(fault_id = %id, %kind, %target, by, "reverted");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(fault_id = %id, %kind, %target, by, error = %e, "failed");
                Err(e)
            }
        }
    }
}

impl ActiveFault for NetHandle {
    fn id(&self) -> FaultId {
        self.id
    }

    fn kind(&self) -> FaultKind {
        self.kind
    }

    fn revert(&self) -> Result<(), AgentError> {
        NetHandle::revert(self)
    }
}

impl Drop for NetHandle {
    fn drop(&mut self) {
        // The event records a failure; a destructor has no one to return it to. The record stays for replay.
        let _ = self.revert_by("drop");
    }
}

// === impl NetTarget ===

impl fmt::Display for NetTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, netns) = match self {
            NetTarget::Table { netns, table } => (format!("table inet {table}"), netns),
            NetTarget::Qdisc { netns, device, handle } => (format!("qdisc {handle} on dev {device}"), netns),
        };
        match netns {
            Some(ns) => write!(f, "{what} in netns {ns}"),
            None => f.write_str(&what),
        }
    }
}

/// Writes the journal record, runs `change`, and returns the handle; if `change` fails, runs the undo and deletes
/// the record (kept only if the undo itself fails, for replay), so nothing is left halfway.
fn apply_with(
    id: FaultId,
    kind: FaultKind,
    journal: &Journal,
    undo: Undo,
    target: NetTarget,
    change: impl FnOnce() -> Result<(), AgentError>,
) -> Result<NetHandle, AgentError> {
    let entry = match journal.begin(id, kind, vec![undo]) {
        Ok(entry) => entry,
        Err(e) => {
            tracing::warn!(fault_id = %id, %kind, %target, error = %e, "failed");
            return Err(e);
        }
    };
    if let Err(e) = change() {
        tracing::warn!(fault_id = %id, %kind, %target, error = %e, "failed");
        if let Err(undo_error) = entry.revert() {
            tracing::warn!(fault_id = %id, %kind, %target, error = %undo_error, "failed");
        }
        return Err(e);
    }
    tracing::info!(fault_id = %id, %kind, %target, "injected");
    Ok(NetHandle { id, kind, target, entry, reverted: Mutex::new(false) })
}

/// Refuses a namespace name `ip netns` could not have made, or one that does not exist under `/run/netns`.
pub(crate) fn validate_netns(netns: Option<&str>) -> Result<(), AgentError> {
    match netns {
        Some(ns) => {
            chaos_host_sys::nft::check_netns(ns).map_err(|reason| AgentError::invalid("netns", reason))
        }
        None => Ok(()),
    }
}

/// A named namespace that no longer exists: whatever a fault put in it went with it.
fn netns_gone(netns: Option<&str>) -> bool {
    netns.is_some_and(|ns| !Path::new(NETNS_DIR).join(ns).exists())
}

/// Runs `program args...` (inside `netns` when given) with `stdin`, returning stdout, or an error that carries
/// the command line, the exit status and stderr.
pub(crate) fn run(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, AgentError> {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let shown = show(netns, program, args);
    let mut child = command.spawn().map_err(|e| AgentError::Command {
        command: shown.clone(),
        detail: if e.kind() == std::io::ErrorKind::NotFound {
            format!("{} is not installed (not found on PATH)", if netns.is_some() { "ip" } else { program })
        } else {
            e.to_string()
        },
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The pipe closes at the end of this block, so the program sees the end of its input.
        if let Err(e) = pipe.write_all(text.as_bytes()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(AgentError::Command { command: shown, detail: format!("writing stdin: {e}") });
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| AgentError::Command { command: shown.clone(), detail: e.to_string() })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(AgentError::Command { command: shown, detail: format!("{}: {stderr}", output.status) })
    }
}

fn show(netns: Option<&str>, program: &str, args: &[&str]) -> String {
    let mut words = Vec::new();
    if let Some(ns) = netns {
        words.extend(["ip", "netns", "exec", ns]);
    }
    words.push(program);
    words.extend(args);
    words.join(" ")
}

/// Deletes the `inet` table `table`; succeeds when it does not exist, or its namespace does not any more.
pub(crate) fn delete_table(netns: Option<&str>, table: &str) -> Result<(), AgentError> {
    chaos_host_sys::nft::delete_table(netns, table).map_err(nft_error)
}

/// An nft failure as the agent reports every command's.
pub(crate) fn nft_error(error: NftError) -> AgentError {
    match error {
        NftError::Command { command, detail } => AgentError::Command { command, detail },
        NftError::Unsupported(detail) => AgentError::Command { command: "nft".into(), detail },
    }
}

/// Deletes the root qdisc of `device` if its handle is still `handle`; succeeds when it is gone or replaced, or
/// the device or its namespace is gone.
pub(crate) fn delete_qdisc(netns: Option<&str>, device: &str, handle: &str) -> Result<(), AgentError> {
    if netns_gone(netns) {
        return Ok(());
    }
    let root = match tc::root_qdisc(netns, device) {
        Ok(root) => root,
        // The device is gone (a veth whose peer namespace was deleted, say): so is its qdisc.
        Err(AgentError::Invalid { what: "device", .. }) => return Ok(()),
        Err(_) if netns_gone(netns) => return Ok(()),
        Err(e) => return Err(e),
    };
    if root.is_none_or(|q| q.handle != handle) {
        return Ok(());
    }
    // With the handle, the kernel deletes the root qdisc only if it still has it ("Invalid handle" otherwise).
    match run(netns, "tc", &["qdisc", "del", "dev", device, "root", "handle", handle], None) {
        Ok(_) => Ok(()),
        Err(_) if tc::root_qdisc(netns, device).is_ok_and(|q| q.is_none_or(|q| q.handle != handle)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The way a spec enum tagged by `kind` embeds these faults (named as the kinds are).
    #[allow(clippy::enum_variant_names)]
    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
    enum Spec {
        NetworkPartition(Partition),
        NetworkLoss(Loss),
        NetworkBandwidth(Bandwidth),
        NetworkLatency(Latency),
    }

    #[test]
    fn specs_read_from_yaml_inside_a_tagged_enum() {
        let partition = "kind: network-partition\nnetns: blue\nfilter:\n  direction: egress\n  hosts: [10.0.0.2, \
                         \"fd00::/64\"]\n  ports: [5432]\n  protocol: tcp\n";
        let Spec::NetworkPartition(p) = serde_saphyr::from_str(partition).unwrap() else { panic!() };
        assert_eq!(p.netns.as_deref(), Some("blue"));
        assert_eq!(p.filter.hosts, ["10.0.0.2", "fd00::/64"]);
        assert_eq!(
            (p.filter.direction, p.filter.protocol, p.filter.ports),
            (Direction::Egress, Protocol::Tcp, vec![5432])
        );

        let loss =
            "kind: network-loss\npercent: 30\nfilter: { hosts: [10.0.0.0/24], ports: [53], protocol: udp }\n";
        let Spec::NetworkLoss(l) = serde_saphyr::from_str(loss).unwrap() else { panic!() };
        assert_eq!((l.percent, l.filter.direction), (30.0, Direction::Both));

        let bandwidth =
            "kind: network-bandwidth\ndevice: eth0\nrate: 8000000\nburst_bytes: 32768\nlatency_ms: 100\n";
        let Spec::NetworkBandwidth(b) = serde_saphyr::from_str(bandwidth).unwrap() else { panic!() };
        assert_eq!((b.rate.as_str(), b.burst_bytes, b.latency_ms), ("8000000", Some(32768), Some(100)));
        let Spec::NetworkBandwidth(b) =
            serde_saphyr::from_str("kind: network-bandwidth\ndevice: eth0\nrate: 1mbit\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(b.rate_bits().unwrap(), 1_000_000);

        let latency = "kind: network-latency\ndevice: eth0\ndelay_ms: 100\njitter_ms: 10\ncorrelation: 25\n";
        let Spec::NetworkLatency(l) = serde_saphyr::from_str(latency).unwrap() else { panic!() };
        assert_eq!((l.delay_ms, l.jitter_ms, l.correlation), (100, 10, 25.0));

        for bad in [
            "kind: network-partition\nhosts: [10.0.0.2]\n",
            "kind: network-loss\npercent: 5\nfilter: { host: [10.0.0.2] }\n",
            "kind: network-latency\ndevice: eth0\ndelay: 100\n",
        ] {
            assert!(serde_saphyr::from_str::<Spec>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_read_as_an_operator_would_type_them() {
        let table = NetTarget::Table { netns: Some("blue".into()), table: "chaos_agent_1_2_fault_3".into() };
        assert_eq!(table.to_string(), "table inet chaos_agent_1_2_fault_3 in netns blue");
        let qdisc = NetTarget::Qdisc { netns: None, device: "eth0".into(), handle: QDISC_HANDLE.into() };
        assert_eq!(qdisc.to_string(), "qdisc cafe: on dev eth0");
        let json = serde_json::to_string(&Partition { netns: None, filter: Filter::default() }).unwrap();
        assert_eq!(json, r#"{"filter":{"direction":"both","hosts":[],"ports":[],"protocol":"any"}}"#);
    }

    #[test]
    fn undo_of_a_namespace_that_is_gone_succeeds() {
        delete_table(Some("chaos-no-such-netns"), "chaos_agent_x").unwrap();
        delete_qdisc(Some("chaos-no-such-netns"), "eth0", QDISC_HANDLE).unwrap();
        let err = validate_netns(Some("a/b")).unwrap_err().to_string();
        assert!(err.starts_with("invalid netns: expected the name of a namespace"), "{err}");
    }
}
