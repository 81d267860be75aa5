//! The engine's errors: [`FaultError`] (applying or reverting one fault), [`EngineError`] (why a run stopped
//! short of its plan). Their messages are what users read in verdict reasons and journals, so they stay worded
//! as they always were; foreign errors (the agent library's, the proxy client's, a remote host's) are carried
//! as their messages, since the engine only shows them.

use super::remote::RemoteError;

/// Applying or reverting one fault failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// Any of the below, naming the fault kind and its target: `latency on shop: …`.
    #[error("{fault} on {target}: {source}")]
    OnTarget { fault: String, target: String, source: Box<FaultError> },
    #[error("unknown target {0:?}")]
    UnknownTarget(String),
    #[error("{fault} on {target} needs a duration")]
    NeedsDuration { fault: String, target: String },
    #[error("a duration is needed")]
    NoDuration,
    #[error("fault {fault} does not apply to target {target}")]
    NotApplicable { fault: String, target: String },
    #[error("no controller to reach other hosts")]
    NoController,
    #[error("the host agent was not started")]
    NoHostAgent,
    #[error("the agent returned no fault id")]
    NoFaultId,
    /// The agent library refused or failed (its message).
    #[error("{0}")]
    Agent(String),
    /// A blocking task (a signal, a revert through the agent library) panicked or was cancelled.
    #[error("the {what} task failed: {detail}")]
    Task { what: &'static str, detail: String },
    /// The proxy API refused or could not be reached (`adding latency toxic to proxy shop: …`).
    #[error("{action}: {detail}")]
    Proxy { action: String, detail: String },
    /// Some agents refused or failed, each named: `web-1: …; web-2: …`.
    #[error("{}", join_agents(.0))]
    Agents(Vec<(String, RemoteError)>),
    /// Remote reverts failed, each message naming its agent: `agent web-1: …; agent web-2: …`.
    #[error("{}", join(.0))]
    Remote(Vec<RemoteError>),
    #[error("encoding the fault: {0}")]
    Encode(String),
    /// Reverting a fault through the local agent failed.
    #[error("reverting {description}: {source}")]
    Revert { description: String, source: Box<FaultError> },
    /// A fault's apply did not finish within its deadline.
    #[error("applying the fault did not finish within {0:?}")]
    TimedOut(std::time::Duration),
}

fn join(errors: &[RemoteError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn join_agents(failed: &[(String, RemoteError)]) -> String {
    failed.iter().map(|(agent, e)| format!("{agent}: {e}")).collect::<Vec<_>>().join("; ")
}

impl FaultError {
    /// This error, naming the fault kind and target it happened on.
    pub fn on(self, fault: &str, target: &str) -> FaultError {
        FaultError::OnTarget { fault: fault.to_string(), target: target.to_string(), source: Box::new(self) }
    }

    pub(crate) fn agent(e: impl std::fmt::Display) -> FaultError {
        FaultError::Agent(e.to_string())
    }

    pub(crate) fn proxy(action: String, e: impl std::fmt::Display) -> FaultError {
        FaultError::Proxy { action, detail: e.to_string() }
    }
}

/// Why a run's method (or rollbacks) stopped short of its plan for a reason of the infrastructure, not of the
/// hypothesis: the verdict is inconclusive and the reason is `infrastructure: {this}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A fault could not be applied.
    #[error(transparent)]
    Fault(#[from] FaultError),
    /// A step panicked or its task was cancelled.
    #[error("a method step failed unexpectedly: {0}")]
    StepPanicked(String),
    #[error("guardrail evaluation failed")]
    GuardrailFailed,
    /// Asking the agents what a step would do failed (`{step}: {reason}`).
    #[error("{step}: {reason}")]
    Plan { step: String, reason: String },
    /// The local agent's policy file could not be read (its message names the file).
    #[error("{0}")]
    Policy(String),
    #[error("starting the host agent: {0}")]
    StartHost(String),
    /// Creating the proxies the experiment declares failed.
    #[error("{0}")]
    Proxies(String),
}
