//! The controller's fleet as the engine's [`RemoteHosts`]: the one place where the engine's terms (remote
//! faults, reverts, samples) meet the fleet's, each fleet error carried over as its message.

use std::time::Duration;

use chaos_agent::pods::{Pod, PodSelector};

use crate::engine::{AgentSample, ApplyRequest, BoxFuture, PodRef, RemoteError, RemoteHosts, Reverted};
use crate::fleet::Fleet;

// === impl RemoteHosts ===

impl RemoteHosts for Fleet {
    fn connected(&self) -> Vec<String> {
        Fleet::connected(self)
    }

    fn apply(&self, request: ApplyRequest) -> BoxFuture<'_, Result<String, RemoteError>> {
        Box::pin(async move { Fleet::apply(self, request).await.map_err(remote_error) })
    }

    fn revert(&self, fault_id: &str) -> BoxFuture<'_, Result<Reverted, RemoteError>> {
        let fault_id = fault_id.to_string();
        Box::pin(async move { self.revert_checked(&fault_id).await.map_err(remote_error) })
    }

    fn lost_reason(&self, fault_id: &str) -> Option<String> {
        Fleet::lost_reason(self, fault_id)
    }

    fn plan<'a>(
        &'a self,
        agent: &'a str,
        spec_json: &'a str,
        duration: Option<Duration>,
        seed: u64,
        pod: Option<&'a PodRef>,
    ) -> BoxFuture<'a, Result<String, RemoteError>> {
        Box::pin(async move {
            Fleet::plan(self, agent, spec_json, duration, seed, pod).await.map_err(remote_error)
        })
    }

    fn pods<'a>(
        &'a self,
        agent: &'a str,
        selector: &'a PodSelector,
    ) -> BoxFuture<'a, Result<Vec<Pod>, RemoteError>> {
        Box::pin(async move { Fleet::pods(self, agent, selector).await.map_err(remote_error) })
    }

    fn sample(&self, agent: &str) -> Option<AgentSample> {
        Fleet::sample(self, agent).map(|s| AgentSample {
            cpu: s.cpu,
            memory_used: s.memory_used,
            load: s.load,
        })
    }
}

/// The fleet's error (a message today, an enum with a `Display` soon) as the engine's.
fn remote_error(e: impl std::fmt::Display) -> RemoteError {
    RemoteError(e.to_string())
}
