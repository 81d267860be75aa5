//! The words the engine and the fleet share about a fault on another host: one fault to apply on one agent
//! ([`ApplyRequest`]) and how its revert ended ([`Reverted`]). A leaf below both, so the engine's
//! `RemoteHosts` and the fleet speak the same types without importing each other.

use std::time::Duration;

/// How a revert ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reverted {
    /// Reverted now (or reverted already by an earlier call).
    Done,
    /// Gone before the revert: lost mid-run; says what happened.
    Lost(String),
}

/// One fault to apply on one agent.
#[derive(Clone, Debug)]
pub struct ApplyRequest {
    pub agent: String,
    /// The run it belongs to (leases, audit).
    pub run: String,
    /// Unique to the run and the agent: what later reverts name.
    pub fault_id: String,
    /// The agent's `FaultSpec` as JSON.
    pub spec_json: String,
    /// The fault's planned duration (`None` for a kill, which has nothing to revert).
    pub duration: Option<Duration>,
    pub seed: u64,
    /// Who started the run (audit).
    pub actor: String,
    /// Inside this pod's container instead of on the agent's host (a `pods` target).
    pub pod: Option<PodRef>,
}

/// One container of one pod on an agent's node, as the agent listed it: the agent refuses a fault on it when
/// the pod's sandbox has changed since (the pod was recreated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub sandbox_id: String,
    pub container: String,
}
