//! What the engine asks of "other hosts": the [`RemoteHosts`] trait (select agents, apply, revert and watch
//! their faults, ask what a fault would do, read their saturation samples) and [`Remote`], a run's handle on
//! them. The controller's fleet implements the trait (in `fleet_hosts.rs`); the engine never names the fleet,
//! so `chaos run` compiles and runs without the controller's server code.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::probes::Agents;

/// A boxed future, so the trait stays object-safe (`Arc<dyn RemoteHosts>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A remote host's error as its implementation words it (the fleet's message, unchanged).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

pub use crate::remote_fault::{ApplyRequest, PodRef, Reverted};

/// The latest saturation figures an agent reported, as fractions of its host.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AgentSample {
    /// Busy share of all CPUs since its previous sample; `None` for its first.
    pub cpu: Option<f64>,
    pub memory_used: f64,
    /// The 1-minute load average over the number of CPUs.
    pub load: f64,
}

/// Hosts reached through something else (the controller's fleet): the narrow surface the engine uses. Command
/// probes on agents come with it ([`Agents`]).
pub trait RemoteHosts: Agents {
    /// Ids of the connected agents, in any order.
    fn connected(&self) -> Vec<String>;

    /// Applies `fault`; returns what the agent says it did.
    fn apply(&self, fault: ApplyRequest) -> BoxFuture<'_, Result<String, RemoteError>>;

    /// Reverts fault `fault_id`, saying whether it was still held. Idempotent.
    fn revert(&self, fault_id: &str) -> BoxFuture<'_, Result<Reverted, RemoteError>>;

    /// Why fault `fault_id` is known lost already, if it is (without taking it: [`RemoteHosts::revert`] does).
    fn lost_reason(&self, fault_id: &str) -> Option<String>;

    /// Asks `agent` what a fault would do (inside `pod` when given), changing nothing.
    fn plan<'a>(
        &'a self,
        agent: &'a str,
        spec_json: &'a str,
        duration: Option<Duration>,
        seed: u64,
        pod: Option<&'a PodRef>,
    ) -> BoxFuture<'a, Result<String, RemoteError>>;

    /// The pods on `agent`'s node that `selector` matches, through its container runtime.
    fn pods<'a>(
        &'a self,
        agent: &'a str,
        selector: &'a chaos_agent::pods::PodSelector,
    ) -> BoxFuture<'a, Result<Vec<chaos_agent::pods::Pod>, RemoteError>>;

    /// The latest saturation sample `agent` reported, if it is connected and has sent one.
    fn sample(&self, agent: &str) -> Option<AgentSample>;
}

/// How a run reaches other hosts, and whose run it is.
#[derive(Clone)]
pub struct Remote {
    pub hosts: Arc<dyn RemoteHosts>,
    pub run_id: String,
    /// Who started the run (audit).
    pub actor: String,
    next_fault: Arc<AtomicU64>,
}

impl Remote {
    pub fn new(hosts: Arc<dyn RemoteHosts>, run_id: String, actor: String) -> Remote {
        Remote { hosts, run_id, actor, next_fault: Arc::new(AtomicU64::new(1)) }
    }

    /// A fault id unique to this controller: run id, a counter, the agent.
    pub(crate) fn fault_id(&self, agent: &str) -> String {
        format!("{}.{}.{agent}", self.run_id, self.next_fault.fetch_add(1, Ordering::Relaxed))
    }

    /// Connected agents whose labels include every pair of `labels`, sorted.
    pub(crate) fn matching(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        self.hosts.matching(labels)
    }
}
