//! What the agent says about itself in every hello: id, hostname, labels, the fault kinds it can apply, boot id.

use std::collections::HashMap;

use chaos_agent::faults::FaultKind;
use chaos_agent::host::HostAgent;
use chaos_proto::v1::{ActiveFault, Hello};

use super::ServeOptions;

pub(super) const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
pub(super) const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";

// === what the agent says about itself ===

/// The fixed part of every hello.
pub(super) struct Identity {
    pub(super) agent_id: String,
    pub(super) hostname: String,
    pub(super) labels: HashMap<String, String>,
    pub(super) capabilities: Vec<String>,
    pub(super) boot_id: String,
}

impl Identity {
    pub(super) fn of(options: &ServeOptions, agent: &HostAgent) -> Identity {
        Identity {
            agent_id: options.agent_id.clone(),
            hostname: hostname(),
            labels: options.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            capabilities: capabilities(agent),
            boot_id: read_trimmed(BOOT_ID_PATH).unwrap_or_default(),
        }
    }

    pub(super) fn hello(&self, active_faults: Vec<ActiveFault>, session_secret: String) -> Hello {
        Hello {
            agent_id: self.agent_id.clone(),
            hostname: self.hostname.clone(),
            labels: self.labels.clone(),
            capabilities: self.capabilities.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            boot_id: self.boot_id.clone(),
            active_faults,
            session_secret,
        }
    }
}

/// The kinds this host can apply: those the probe found support for and the policy allows.
pub(super) fn capabilities(agent: &HostAgent) -> Vec<String> {
    let allowed = agent.policy().allowed_faults.as_ref();
    FaultKind::ALL
        .into_iter()
        .filter(|kind| agent.capabilities().require(*kind).is_ok())
        .filter(|kind| allowed.is_none_or(|names| names.iter().any(|name| name == kind.as_str())))
        .map(|kind| kind.as_str().to_string())
        .collect()
}

pub(super) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .or_else(|| read_trimmed(HOSTNAME_PATH))
        .unwrap_or_default()
}

pub(super) fn read_trimmed(path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text.trim().to_string()),
        Err(e) => {
            tracing::warn!(path, error = %e, "cannot read; sent empty in the hello");
            None
        }
    }
}
