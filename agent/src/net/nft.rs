//! The nftables faults: [`Partition`] (drop every matching packet) and [`Loss`] (drop a share of them).
//!
//! Each applied fault owns one table of family `inet` (IPv4 and IPv6), named [`TABLE_PREFIX`] + the agent's pid
//! namespace, pid and start time + the fault id, so faults never share rules and a revert deletes exactly one
//! table. The table has two base chains, `input` (hook input) and `output` (hook output), policy accept, whose
//! rules only drop.
//!
//! Priority -150 (`mangle`): nftables runs every base chain of a hook and a drop anywhere is final, so the
//! priority does not decide whether a packet is dropped, only where. At -150 the output chain runs before
//! output DNAT (-100, what kube-proxy or Docker use for locally generated traffic), so `hosts` match the address
//! the application connected to, and the packet is dropped before any filter-priority (0) chain counts or logs
//! it. The whole table is loaded by one `nft -f -` script, one transaction: it is applied entirely or not at all.

use std::fmt::Write as _;

use chaos_host_sys::owned::Owner;
use serde::{Deserialize, Serialize};

use super::{Capabilities, Filter, NetHandle, NetTarget, apply_with, validate_netns};
use crate::AgentError;
use crate::faults::{FaultId, FaultKind};
use crate::journal::{Journal, Undo};

/// Every table this crate creates starts with this.
pub const TABLE_PREFIX: &str = "chaos_agent_";

/// The priority of both base chains (`mangle`); see the module documentation.
pub(crate) const CHAIN_PRIORITY: i32 = -150;

/// Drop every packet the filter matches: a blackhole, one way or both.
///
/// A connection attempt whose SYN (or SYN-ACK) is dropped times out; a UDP send dropped on egress fails with
/// `EPERM` (netfilter reports local drops to the sender).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// A named network namespace (`/run/netns/NAME`); `None` is the agent's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Which packets to drop; omitted, every packet (but loopback) both ways.
    #[serde(default)]
    pub filter: Filter,
}

/// Drop `percent` of the packets the filter matches, each packet independently (`numgen random`).
///
/// As with any netfilter drop on the way out, a UDP sender sees a datagram dropped on egress fail with `EPERM`
/// (TCP retransmits without telling the application); ingress drops are silent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default)]
    pub filter: Filter,
    /// The share dropped, above 0 and at most 100, with at most two decimals (`0.05`, `30`, `100`).
    pub percent: f64,
}

// === impl Partition ===

impl Partition {
    pub fn kind(&self) -> FaultKind {
        FaultKind::NetworkPartition
    }

    /// Refuses what could never be applied: bad hosts or ports, a namespace that does not exist.
    pub fn validate(&self) -> Result<(), AgentError> {
        validate_netns(self.netns.as_deref())?;
        self.filter.validate()
    }

    /// What `apply` checks on the host without changing it: `nft` (and `ip` for a namespace) present.
    pub fn check_host(&self, caps: &Capabilities) -> Result<(), AgentError> {
        self.validate()?;
        caps.require(self.kind())?;
        caps.require_netns(self.kind(), self.netns.as_deref())
    }

    /// Loads the fault's table. The journal record is written first; on error nothing is left applied.
    pub fn apply(&self, journal: &Journal, caps: &Capabilities) -> Result<NetHandle, AgentError> {
        self.validate()?;
        apply_table(self.kind(), self.netns.as_deref(), &self.filter, None, journal, caps)
    }
}

// === impl Loss ===

impl Loss {
    pub fn kind(&self) -> FaultKind {
        FaultKind::NetworkLoss
    }

    /// Refuses bad hosts, ports or namespaces, and a percent outside (0, 100] or with more than two decimals.
    pub fn validate(&self) -> Result<(), AgentError> {
        validate_netns(self.netns.as_deref())?;
        self.filter.validate()?;
        per_10000(self.percent).map(|_| ())
    }

    /// What `apply` checks on the host without changing it: `nft` (and `ip` for a namespace) present.
    pub fn check_host(&self, caps: &Capabilities) -> Result<(), AgentError> {
        self.validate()?;
        caps.require(self.kind())?;
        caps.require_netns(self.kind(), self.netns.as_deref())
    }

    /// Loads the fault's table. The journal record is written first; on error nothing is left applied.
    pub fn apply(&self, journal: &Journal, caps: &Capabilities) -> Result<NetHandle, AgentError> {
        self.validate()?;
        let share = per_10000(self.percent)?;
        apply_table(self.kind(), self.netns.as_deref(), &self.filter, Some(share), journal, caps)
    }
}

/// `percent` in units of 0.01 %, the modulus of the `numgen` expression.
fn per_10000(percent: f64) -> Result<u32, AgentError> {
    let invalid = |reason: String| AgentError::invalid("percent", reason);
    if !percent.is_finite() || percent <= 0.0 || percent > 100.0 {
        return Err(invalid(format!("expected above 0 and at most 100, found {percent}")));
    }
    let scaled = percent * 100.0;
    // 0.07 × 100 is 7.000000000000001 in floating point: accept what is within rounding of two decimals.
    if (scaled - scaled.round()).abs() > 1e-6 {
        return Err(invalid(format!("expected at most two decimals (0.01 % steps), found {percent}")));
    }
    Ok(scaled.round() as u32)
}

fn apply_table(
    kind: FaultKind,
    netns: Option<&str>,
    filter: &Filter,
    share: Option<u32>,
    journal: &Journal,
    caps: &Capabilities,
) -> Result<NetHandle, AgentError> {
    caps.require(kind)?;
    caps.require_netns(kind, netns)?;
    let id = FaultId::next();
    let table = table_name(id);
    let script = script(&table, filter, share)?;
    let target = NetTarget::Table { netns: netns.map(str::to_string), table: table.clone() };
    let undo = Undo::DeleteNftTable { netns: netns.map(str::to_string), table };
    apply_with(id, kind, journal, undo, target, || {
        chaos_host_sys::nft::run(netns, &["-f", "-"], Some(&script)).map(drop).map_err(super::nft_error)
    })
}

/// `chaos_agent_<pid ns>_<pid>_<start time>_fault_<n>`: a table owned by this process (`chaos-host-sys`
/// `owned::Owner`), unique across agents and restarts (a reused pid has another start time), so a stale table
/// of a crashed agent is never merged into, and whoever lists the tables can tell whether its owner runs.
fn table_name(id: FaultId) -> String {
    Owner::current().table_name(TABLE_PREFIX, &id.to_string().replace('-', "_"))
}

/// The whole table as one nft script: `create table` fails if the name exists, so nothing is ever merged.
/// With `share`, each rule drops only when `numgen random mod 10000 < share`.
pub(crate) fn script(table: &str, filter: &Filter, share: Option<u32>) -> Result<String, AgentError> {
    let mut out = format!("create table inet {table}\n");
    for (chain, hook) in [("input", "input"), ("output", "output")] {
        let _ = writeln!(
            out,
            "add chain inet {table} {chain} {{ type filter hook {hook} priority {CHAIN_PRIORITY}; policy accept; }}"
        );
    }
    let verdict = match share {
        Some(n) => format!("numgen random mod 10000 < {n} counter drop"),
        None => "counter drop".to_string(),
    };
    for &chain in filter.chains() {
        for matches in filter.matches(chain)? {
            let _ = writeln!(out, "add rule inet {table} {} {matches} {verdict}", chain.name());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Direction, Protocol};

    #[test]
    fn table_names_carry_their_owner_so_a_dead_owners_table_can_be_told() {
        let id = FaultId::next();
        let name = table_name(id);
        assert!(
            name.starts_with(TABLE_PREFIX) && name.ends_with(&id.to_string().replace('-', "_")),
            "{name}"
        );
        let owner = Owner::of(TABLE_PREFIX, &name).unwrap();
        assert_eq!((owner, owner.is_gone()), (Owner::current(), Some(false)));
        assert_ne!(table_name(FaultId::next()), name);
    }

    #[test]
    fn percent_is_checked_and_scaled() {
        assert_eq!(per_10000(30.0).unwrap(), 3000);
        assert_eq!(per_10000(0.07).unwrap(), 7);
        assert_eq!(per_10000(100.0).unwrap(), 10000);
        assert_eq!(per_10000(12.34).unwrap(), 1234);
        for bad in [0.0, -1.0, 101.0, f64::NAN, f64::INFINITY] {
            let err = per_10000(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid percent: expected above 0 and at most 100, found"), "{err}");
        }
        let err = per_10000(1.234).unwrap_err().to_string();
        assert_eq!(err, "invalid percent: expected at most two decimals (0.01 % steps), found 1.234");
    }

    #[test]
    fn the_script_creates_one_table_with_two_chains_and_drop_rules() {
        let filter = Filter {
            direction: Direction::Egress,
            hosts: vec!["10.0.0.2".into()],
            ports: vec![80],
            protocol: Protocol::Tcp,
        };
        let text = script("chaos_agent_1_2_fault_3", &filter, Some(3000)).unwrap();
        assert_eq!(
            text,
            "create table inet chaos_agent_1_2_fault_3\n\
             add chain inet chaos_agent_1_2_fault_3 input { type filter hook input priority -150; policy accept; }\n\
             add chain inet chaos_agent_1_2_fault_3 output { type filter hook output priority -150; policy accept; }\n\
             add rule inet chaos_agent_1_2_fault_3 output oifname != \"lo\" ip daddr { 10.0.0.2 } meta l4proto tcp \
             th dport { 80 } numgen random mod 10000 < 3000 counter drop\n"
        );
        let name = table_name(FaultId::next());
        assert!(name.starts_with(TABLE_PREFIX) && name.contains("_fault_"), "{name}");
    }

    #[test]
    fn specs_read_from_json_strictly() {
        let loss: Loss =
            serde_json::from_str(r#"{"percent": 2.5, "filter": {"hosts": ["10.0.0.0/8"]}}"#).unwrap();
        assert_eq!(loss.netns, None);
        assert_eq!(loss.filter.hosts, ["10.0.0.0/8"]);
        let partition: Partition = serde_json::from_str(r#"{"netns": "a"}"#).unwrap();
        assert_eq!(partition.filter, Filter::default());
        assert!(serde_json::from_str::<Partition>(r#"{"hosts": []}"#).is_err());
        assert!(serde_json::from_str::<Loss>(r#"{}"#).is_err());
    }
}
