//! The controller's fleet as the engine's [`RemoteHosts`]: the one place where the engine's terms (remote
//! faults, reverts, samples) meet the fleet's, each fleet error carried over as its message.

use std::time::Duration;

use crate::engine::{AgentSample, BoxFuture, RemoteError, RemoteFault, RemoteHosts, Reverted};
use crate::fleet::{self, ApplyRequest, Fleet};

// === impl RemoteHosts ===

impl RemoteHosts for Fleet {
    fn connected(&self) -> Vec<String> {
        Fleet::connected(self)
    }

    fn apply(&self, fault: RemoteFault) -> BoxFuture<'_, Result<String, RemoteError>> {
        let request = ApplyRequest {
            agent: fault.agent,
            run: fault.run,
            fault_id: fault.fault_id,
            spec_json: fault.spec_json,
            duration: fault.duration,
            seed: fault.seed,
            actor: fault.actor,
        };
        Box::pin(async move { Fleet::apply(self, request).await.map_err(remote_error) })
    }

    fn revert(&self, fault_id: &str) -> BoxFuture<'_, Result<Reverted, RemoteError>> {
        let fault_id = fault_id.to_string();
        Box::pin(async move {
            match self.revert_checked(&fault_id).await {
                Ok(fleet::Reverted::Done) => Ok(Reverted::Done),
                Ok(fleet::Reverted::Lost(why)) => Ok(Reverted::Lost(why)),
                Err(e) => Err(remote_error(e)),
            }
        })
    }

    fn lost_reason(&self, fault_id: &str) -> Option<String> {
        Fleet::lost_reason(self, fault_id)
    }

    fn plan(
        &self,
        agent: &str,
        spec_json: &str,
        duration: Option<Duration>,
        seed: u64,
    ) -> BoxFuture<'_, Result<String, RemoteError>> {
        let (agent, spec_json) = (agent.to_string(), spec_json.to_string());
        Box::pin(
            async move { Fleet::plan(self, &agent, &spec_json, duration, seed).await.map_err(remote_error) },
        )
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
