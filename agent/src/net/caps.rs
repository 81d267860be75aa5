//! What this host supports for network faults, probed once (at agent start) inside a throwaway network
//! namespace, so probing never touches the host's own network.
//!
//! The probe runs on a thread of its own that moves into a new, empty network namespace (`unshare(2)` with
//! `CLONE_NEWNET` affects only the calling thread); the programs it starts inherit that namespace, and the kernel
//! frees it once the thread and they are gone. It loads a table shaped like a real fault's (same expressions),
//! adds a `tbf` and a `netem` root qdisc to the namespace's `lo`, and records for each feature `Ok` or why not.
//! Four short commands, nft's in parallel with tc's: 10 to 30 ms. The caller keeps the value.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::{Direction, Filter, Protocol, nft};
use crate::AgentError;
use crate::faults::FaultKind;

/// Whether one feature is usable, and if not, why (the missing program, or the kernel feature with tc's or
/// nft's own message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    Ok,
    Missing(String),
}

/// The network features of this host, from [`Capabilities::probe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// `ip` (iproute2), needed only to enter a named namespace (`ip netns exec`).
    pub ip: Support,
    /// `nft` and nf_tables with the expressions partition and loss use (inet tables, sets, `th`, `numgen`).
    pub nft: Support,
    /// The `tc` program.
    pub tc: Support,
    /// The `tbf` qdisc (bandwidth).
    pub tbf: Support,
    /// The `netem` qdisc (latency).
    pub netem: Support,
}

// === impl Support ===

impl Support {
    pub fn is_ok(&self) -> bool {
        matches!(self, Support::Ok)
    }

    /// Why the feature is missing, `None` when it is usable.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Support::Ok => None,
            Support::Missing(why) => Some(why),
        }
    }
}

// === impl Capabilities ===

impl Capabilities {
    /// Probes every feature inside a throwaway network namespace. Never fails: what cannot be probed is
    /// reported missing, with why.
    pub fn probe() -> Capabilities {
        let started = Instant::now();
        let caps = std::thread::Builder::new()
            .name("chaos-net-probe".into())
            .spawn(probe_in_throwaway_netns)
            .map_err(|e| format!("cannot start the probe thread: {e}"))
            .and_then(|thread| thread.join().map_err(|_| "the probe thread panicked".to_string()))
            .unwrap_or_else(|why| Capabilities::none(&why));
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(elapsed_ms, ?caps, "probed network capabilities");
        caps
    }

    /// Every feature reported missing as not probed: for checking faults that need none of them (a process or
    /// resource fault) without the probe's throwaway namespace.
    pub fn unprobed() -> Capabilities {
        Capabilities::none("not probed")
    }

    /// Every feature missing for the same reason.
    fn none(why: &str) -> Capabilities {
        let missing = Support::Missing(why.to_string());
        Capabilities {
            ip: missing.clone(),
            nft: missing.clone(),
            tc: missing.clone(),
            tbf: missing.clone(),
            netem: missing,
        }
    }

    /// Refuses (unsupported, naming what is missing) a kind whose features this host lacks. Kinds that are not
    /// network faults need nothing from here.
    pub fn require(&self, kind: FaultKind) -> Result<(), AgentError> {
        let needed: &[&Support] = match kind {
            FaultKind::NetworkPartition | FaultKind::NetworkLoss => &[&self.nft],
            FaultKind::NetworkBandwidth => &[&self.tc, &self.tbf],
            FaultKind::NetworkLatency => &[&self.tc, &self.netem],
            _ => &[],
        };
        match needed.iter().find_map(|s| s.reason()) {
            None => Ok(()),
            Some(why) => Err(AgentError::Unsupported { fault: kind.to_string(), missing: why.to_string() }),
        }
    }

    /// Refuses a fault in a named namespace when `ip` is missing.
    pub(crate) fn require_netns(&self, kind: FaultKind, netns: Option<&str>) -> Result<(), AgentError> {
        match (netns, self.ip.reason()) {
            (Some(ns), Some(why)) => Err(AgentError::Unsupported {
                fault: kind.to_string(),
                missing: format!("entering netns {ns} needs `ip netns exec`: {why}"),
            }),
            _ => Ok(()),
        }
    }
}

fn probe_in_throwaway_netns() -> Capabilities {
    let ip = program("ip");
    // Only this thread moves; nothing else in the process sees the new namespace.
    if let Err(errno) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        let why = format!(
            "cannot create a network namespace to probe in ({errno}); network faults need root (CAP_SYS_ADMIN and \
             CAP_NET_ADMIN)"
        );
        return Capabilities { ip, ..Capabilities::none(&why) };
    }
    // nft and tc in parallel: a thread started from this one shares its namespaces.
    std::thread::scope(|scope| {
        let nft = scope.spawn(|| match program("nft") {
            Support::Ok => probe_nft(),
            missing => missing,
        });
        let tc = program("tc");
        let (tbf, netem) = match &tc {
            Support::Ok => {
                let tbf = ["tbf", "rate", "1mbit", "burst", "32kb", "latency", "50ms"];
                let tbf = probe_qdisc("tbf", "sch_tbf / CONFIG_NET_SCH_TBF", &tbf);
                if tbf.is_ok() {
                    let _ = super::run(None, "tc", &["qdisc", "del", "dev", "lo", "root"], None);
                }
                let netem =
                    probe_qdisc("netem", "sch_netem / CONFIG_NET_SCH_NETEM", &["netem", "delay", "1ms"]);
                (tbf, netem)
            }
            missing => (missing.clone(), missing.clone()),
        };
        let nft = nft.join().unwrap_or_else(|_| Support::Missing("the nft probe panicked".into()));
        Capabilities { ip, nft, tc, tbf, netem }
    })
}

/// A table like a real loss fault's, both families, both chains: every expression the faults use.
fn probe_nft() -> Support {
    let filter = Filter {
        direction: Direction::Both,
        hosts: vec!["192.0.2.0/24".into(), "2001:db8::/32".into()],
        ports: vec![9],
        protocol: Protocol::Any,
    };
    let script = match nft::script("chaos_probe", &filter, Some(1)) {
        Ok(script) => script,
        Err(e) => return Support::Missing(format!("cannot build the probe table: {e}")),
    };
    match chaos_host_sys::nft::run(None, &["-f", "-"], Some(&script)).map_err(super::nft_error) {
        Ok(_) => Support::Ok,
        Err(e) => Support::Missing(format!(
            "nftables rules cannot be loaded (nf_tables with inet tables, sets, th, numgen and counter needed): {}",
            errors_of(&e)
        )),
    }
}

fn probe_qdisc(name: &str, kernel: &str, qdisc: &[&str]) -> Support {
    let mut args = vec!["qdisc", "add", "dev", "lo", "root", "handle", "1:"];
    args.extend(qdisc);
    match super::run(None, "tc", &args, None) {
        Ok(_) => Support::Ok,
        Err(e) => {
            let detail = errors_of(&e);
            if detail.contains("unknown") {
                Support::Missing(format!("the kernel has no {name} qdisc ({kernel}): {detail}"))
            } else {
                Support::Missing(format!("a {name} qdisc cannot be added: {detail}"))
            }
        }
    }
}

/// `Ok` when `name` is an executable file on `PATH`.
fn program(name: &str) -> Support {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name)));
    if found {
        Support::Ok
    } else {
        Support::Missing(format!(
            "{name} is not installed (not found on PATH; Debian package iproute2 or nftables)"
        ))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The lines of a failed command's output that say what went wrong (nft repeats the script and marks it).
fn errors_of(error: &AgentError) -> String {
    let text = match error {
        // `exit status: 2: Error: ...`: the status says nothing the message does not.
        AgentError::Command { detail, .. } => match detail.strip_prefix("exit status: ") {
            Some(rest) => rest.split_once(": ").map_or(rest, |(_, message)| message).to_string(),
            None => detail.clone(),
        },
        other => other.to_string(),
    };
    chaos_host_sys::nft::error_lines(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_names_the_missing_feature() {
        let caps = Capabilities {
            netem: Support::Missing(
                "the kernel has no netem qdisc (sch_netem / CONFIG_NET_SCH_NETEM)".into(),
            ),
            ..Capabilities::none("x")
        };
        let caps =
            Capabilities { nft: Support::Ok, tc: Support::Ok, tbf: Support::Ok, ip: Support::Ok, ..caps };
        caps.require(FaultKind::NetworkPartition).unwrap();
        caps.require(FaultKind::NetworkBandwidth).unwrap();
        caps.require(FaultKind::ProcessKill).unwrap();
        let err = caps.require(FaultKind::NetworkLatency).unwrap_err();
        assert!(matches!(err, AgentError::Unsupported { .. }));
        assert_eq!(
            err.to_string(),
            "network-latency is not supported on this host: the kernel has no netem qdisc (sch_netem / \
             CONFIG_NET_SCH_NETEM)"
        );
        let no_ip = Capabilities { ip: Support::Missing("ip is not installed".into()), ..caps };
        no_ip.require_netns(FaultKind::NetworkLoss, None).unwrap();
        let err = no_ip.require_netns(FaultKind::NetworkLoss, Some("a")).unwrap_err().to_string();
        assert!(err.contains("ip netns exec"), "{err}");
    }

    #[test]
    fn errors_keep_what_went_wrong() {
        let tc = AgentError::Command {
            command: "tc qdisc add".into(),
            detail: "exit status: 2: Error: Specified qdisc kind is unknown.".into(),
        };
        assert_eq!(errors_of(&tc), "Error: Specified qdisc kind is unknown.");
        let nft = AgentError::Command {
            command: "nft -f -".into(),
            detail: "exit status: 1: /dev/stdin:3:1-40: Error: Could not process rule: Not supported\nadd rule x\n^^^"
                .into(),
        };
        assert_eq!(errors_of(&nft), "/dev/stdin:3:1-40: Error: Could not process rule: Not supported");
    }

    #[test]
    fn support_serialises_by_name() {
        assert_eq!(serde_json::to_string(&Support::Ok).unwrap(), r#""ok""#);
        assert_eq!(serde_json::to_string(&Support::Missing("x".into())).unwrap(), r#"{"missing":"x"}"#);
        assert!(program("sh").is_ok());
        assert!(!program("chaos-no-such-program").is_ok());
    }
}
