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
//! Layout: `spec` (what to intercept, checked, as an nft script), `table` (the applied table's lifecycle, stale
//! removal, the host check), `destination` (`SO_ORIGINAL_DST`), `dial` (marked upstream dials). Table names,
//! nft and `/proc/PID/stat` come from `chaos-host-sys`, shared with the agent.
//!
//! Not covered: UDP, bridged traffic without `br_netfilter`, and a process that has its own pid namespace and
//! shares the network namespace with another owner: [`remove_stale`] leaves tables of owners in other pid
//! namespaces alone, since it cannot tell whether they live.

mod destination;
mod dial;
mod spec;
mod table;

pub use destination::{intercepted_destination, original_destination};
pub use dial::{ORIGINAL_DESTINATION, connect_marked, dial, dial_for, mark_socket, mark_upstream_dials};
pub use spec::{InterceptSpec, cgroup2_root};
pub use table::{Interception, check, remove_stale};

use chaos_host_sys::nft::NftError;

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
pub const NETNS_DIR: &str = chaos_host_sys::nft::NETNS_DIR;

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

impl From<NftError> for InterceptError {
    fn from(error: NftError) -> InterceptError {
        match error {
            NftError::Unsupported(why) => InterceptError::Unsupported(why),
            NftError::Command { command, detail } => InterceptError::Command { command, detail },
        }
    }
}

fn invalid(what: &'static str, reason: String) -> InterceptError {
    InterceptError::Invalid { what, reason }
}

/// Refuses a namespace name `ip netns` could not have made, or one that does not exist under `/run/netns`.
fn validate_netns(netns: Option<&str>) -> Result<(), InterceptError> {
    match netns {
        Some(ns) => chaos_host_sys::nft::check_netns(ns).map_err(|reason| invalid("netns", reason)),
        None => Ok(()),
    }
}
