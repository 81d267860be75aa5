//! Which packets an nftables fault matches: direction, remote hosts, ports and protocol, rendered as nft
//! match expressions.
//!
//! Semantics, per chain:
//! - `egress` (chain `output`): packets this host sends, matched on their destination: `hosts` are the remote
//!   addresses (`ip daddr` / `ip6 daddr`), `ports` the remote ports (`th dport`).
//! - `ingress` (chain `input`): packets this host receives, matched on their source address (`ip saddr`) and
//!   their destination port, that is the local port (`th dport`).
//! - `both`: the two above.
//!
//! So with `ports`, egress cuts connections this host opens to those remote ports, and ingress cuts connections
//! others open to those local ports; replies are not matched by port. Loopback traffic (device `lo`) is never
//! matched: a network fault simulates the network, not the host's own sockets, and the agent's local control
//! connection keeps working. Hosts are addresses or CIDRs, never names (no DNS lookups).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::AgentError;

/// Packets a network fault applies to. Every field is optional: `Filter::default()` matches every packet this
/// host sends or receives (except on loopback).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// `egress`, `ingress` or `both` (the default).
    pub direction: Direction,
    /// Remote IPv4/IPv6 addresses or CIDRs (`10.0.0.5`, `10.0.0.0/24`, `fd00::/64`); empty matches any host.
    pub hosts: Vec<String>,
    /// Remote ports for egress, local ports for ingress; empty matches any port (and any protocol).
    pub ports: Vec<u16>,
    /// `tcp`, `udp` or `any` (the default). With ports, `any` means TCP and UDP.
    pub protocol: Protocol,
}

/// Which way the matched packets travel, seen from the host the fault is applied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Packets sent (hook `output`).
    Egress,
    /// Packets received (hook `input`).
    Ingress,
    /// Both ways.
    #[default]
    Both,
}

/// The transport protocol matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    /// Any protocol (ICMP included); with ports, TCP and UDP.
    #[default]
    Any,
}

/// An nftables base chain of a fault's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chain {
    Input,
    Output,
}

/// An address or network, host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

// === impl Filter ===

impl Filter {
    /// Refuses hosts that are not addresses or CIDRs (or only loopback) and port 0.
    pub fn validate(&self) -> Result<(), AgentError> {
        self.cidrs().map(|_| ())?;
        if self.ports.contains(&0) {
            return Err(AgentError::invalid("ports", "expected ports from 1 to 65535, found 0"));
        }
        Ok(())
    }

    /// The chains this filter puts rules in.
    pub(crate) fn chains(&self) -> &'static [Chain] {
        match self.direction {
            Direction::Egress => &[Chain::Output],
            Direction::Ingress => &[Chain::Input],
            Direction::Both => &[Chain::Input, Chain::Output],
        }
    }

    /// The match expressions of the rules in `chain`, one per address family used (one when `hosts` is empty);
    /// the caller appends the verdict.
    pub(crate) fn matches(&self, chain: Chain) -> Result<Vec<String>, AgentError> {
        let cidrs = self.cidrs()?;
        let (device, side) = match chain {
            Chain::Output => ("oifname != \"lo\"", "daddr"),
            Chain::Input => ("iifname != \"lo\"", "saddr"),
        };
        let mut ports: Vec<u16> = self.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        let transport = match (self.protocol, ports.is_empty()) {
            (Protocol::Any, true) => String::new(),
            (Protocol::Tcp, true) => " meta l4proto tcp".to_string(),
            (Protocol::Udp, true) => " meta l4proto udp".to_string(),
            (protocol, false) => {
                let l4 = match protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                    Protocol::Any => "{ tcp, udp }",
                };
                format!(" meta l4proto {l4} th dport {}", set(&ports))
            }
        };
        let v4: Vec<Cidr> = cidrs.iter().copied().filter(|c| c.addr.is_ipv4()).collect();
        let v6: Vec<Cidr> = cidrs.iter().copied().filter(|c| c.addr.is_ipv6()).collect();
        let mut rules = Vec::new();
        if cidrs.is_empty() {
            rules.push(format!("{device}{transport}"));
        }
        for (family, list) in [("ip", v4), ("ip6", v6)] {
            if !list.is_empty() {
                rules.push(format!("{device} {family} {side} {}{transport}", set(&list)));
            }
        }
        Ok(rules)
    }

    /// The hosts parsed, sorted and without duplicates.
    fn cidrs(&self) -> Result<Vec<Cidr>, AgentError> {
        let mut cidrs = self.hosts.iter().map(|h| Cidr::parse(h)).collect::<Result<Vec<_>, _>>()?;
        cidrs.sort();
        cidrs.dedup();
        Ok(cidrs)
    }
}

fn set<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(T::to_string).collect();
    format!("{{ {} }}", items.join(", "))
}

// === impl Chain ===

impl Chain {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Chain::Input => "input",
            Chain::Output => "output",
        }
    }
}

// === impl Cidr ===

impl Cidr {
    /// `10.0.0.5`, `10.0.0.0/24`, `fd00::1`, `fd00::/64`; host bits are cleared (`10.0.0.7/24` is `10.0.0.0/24`).
    pub(crate) fn parse(text: &str) -> Result<Cidr, AgentError> {
        let invalid = |reason: String| AgentError::invalid("hosts", reason);
        let trimmed = text.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            invalid(format!(
                "{text:?} is not an IP address or CIDR (expected like 10.0.0.5, 10.0.0.0/24 or fd00::/64; \
                 host names are not resolved)"
            ))
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => {
                    let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
                    return Err(invalid(format!(
                        "{text:?}: prefix length {p:?} is out of range (expected 0 to {max} for {family})"
                    )));
                }
            },
        };
        let cidr = Cidr { addr: mask(addr, prefix), prefix };
        let loopback = match cidr.addr {
            IpAddr::V4(a) => a.is_loopback() && prefix >= 8,
            IpAddr::V6(a) => a.is_loopback() && prefix == 128,
        };
        if loopback {
            return Err(invalid(format!(
                "{text:?} is a loopback address, and loopback traffic is never matched (expected an address \
                 reached over a network device)"
            )));
        }
        Ok(cidr)
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let kept = if prefix == 0 { 0 } else { bits & (u32::MAX << (32 - u32::from(prefix))) };
            IpAddr::V4(kept.into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let kept = if prefix == 0 { 0 } else { bits & (u128::MAX << (128 - u32::from(prefix))) };
            IpAddr::V6(kept.into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(direction: Direction, hosts: &[&str], ports: &[u16], protocol: Protocol) -> Filter {
        Filter {
            direction,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ports: ports.to_vec(),
            protocol,
        }
    }

    #[test]
    fn cidrs_parse_mask_and_print() {
        let show = |t: &str| Cidr::parse(t).map(|c| c.to_string());
        assert_eq!(show("10.0.0.5").unwrap(), "10.0.0.5");
        assert_eq!(show(" 10.1.2.3/16 ").unwrap(), "10.1.0.0/16");
        assert_eq!(show("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert_eq!(show("fd00::1/64").unwrap(), "fd00::/64");
        assert_eq!(show("fd00::1").unwrap(), "fd00::1");
        let err = show("10.0.0.0/33").unwrap_err().to_string();
        assert!(err.contains("prefix length \"33\" is out of range (expected 0 to 32 for IPv4)"), "{err}");
        let err = show("fd00::/129").unwrap_err().to_string();
        assert!(err.contains("expected 0 to 128 for IPv6"), "{err}");
        let err = show("not-an-ip").unwrap_err().to_string();
        assert!(err.starts_with("invalid hosts: \"not-an-ip\" is not an IP address or CIDR"), "{err}");
        assert!(show("10.0.0.0/x").is_err());
        assert!(show("127.0.0.1").unwrap_err().to_string().contains("loopback"));
        assert!(show("::1").unwrap_err().to_string().contains("loopback"));
    }

    #[test]
    fn matches_per_chain_family_and_protocol() {
        let f =
            filter(Direction::Egress, &["10.0.0.2", "fd00::/8", "10.0.0.2"], &[443, 80, 80], Protocol::Any);
        assert_eq!(f.chains(), [Chain::Output]);
        assert_eq!(
            f.matches(Chain::Output).unwrap(),
            [
                "oifname != \"lo\" ip daddr { 10.0.0.2 } meta l4proto { tcp, udp } th dport { 80, 443 }",
                "oifname != \"lo\" ip6 daddr { fd00::/8 } meta l4proto { tcp, udp } th dport { 80, 443 }",
            ]
        );
        let f = filter(Direction::Ingress, &["192.168.0.0/16"], &[], Protocol::Udp);
        assert_eq!(
            f.matches(Chain::Input).unwrap(),
            ["iifname != \"lo\" ip saddr { 192.168.0.0/16 } meta l4proto udp"]
        );
        let f = Filter::default();
        assert_eq!(f.chains(), [Chain::Input, Chain::Output]);
        assert_eq!(f.matches(Chain::Input).unwrap(), ["iifname != \"lo\""]);
        let f = filter(Direction::Both, &[], &[22], Protocol::Tcp);
        assert_eq!(f.matches(Chain::Output).unwrap(), ["oifname != \"lo\" meta l4proto tcp th dport { 22 }"]);
    }

    #[test]
    fn port_zero_is_refused_and_serde_is_strict_with_defaults() {
        let err = filter(Direction::Both, &[], &[0], Protocol::Tcp).validate().unwrap_err().to_string();
        assert_eq!(err, "invalid ports: expected ports from 1 to 65535, found 0");
        let f: Filter = serde_json::from_str(r#"{"direction":"ingress","ports":[80]}"#).unwrap();
        assert_eq!(f, filter(Direction::Ingress, &[], &[80], Protocol::Any));
        assert!(serde_json::from_str::<Filter>(r#"{"port":[80]}"#).is_err());
        assert!(serde_json::from_str::<Filter>(r#"{"protocol":"icmp"}"#).is_err());
    }
}
