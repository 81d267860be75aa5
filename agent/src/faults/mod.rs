//! Faults as values with a revert: each kind is a [`Fault`] whose `apply` returns an [`ActiveFault`].
//!
//! Process faults only for now: [`kill`] (no revert: the system's own recovery is what is measured) and [`pause`]
//! (SIGSTOP, reverted by SIGCONT to exactly the processes stopped). A [`Lease`] reverts at a deadline; a
//! [`FaultRegistry`] reverts everything still active, newest first.
//!
//! Every fault emits the same `tracing` events: `injected`, `reverted`, `failed`, each with the fields
//! `fault_id`, `kind` and `pids` (`failed` adds `error`, `reverted` adds `by`: `call`, `lease` or `drop`).

mod kill;
pub(crate) mod kind;
mod lease;
mod pause;
mod registry;

pub use kill::{Kill, KillReport, Skip, kill};
pub use kind::{FaultId, FaultKind};
pub use lease::Lease;
pub use pause::{Pause, PauseHandle, pause, pause_journaled};
pub use registry::{FaultRegistry, RevertAllReport};

use crate::process::ProcessId;
use crate::{AgentError, Signal};

/// A fault described as data; `apply` is the only place it touches the host.
pub trait Fault {
    /// What `apply` returns: the handle that reverts it.
    type Applied: ActiveFault;

    fn kind(&self) -> FaultKind;

    /// Injects the fault. On error nothing is left applied (what was done is undone before returning).
    fn apply(self) -> Result<Self::Applied, AgentError>;
}

/// An applied fault. `revert` is idempotent: the second call does nothing and succeeds.
pub trait ActiveFault: Send + Sync + 'static {
    fn id(&self) -> FaultId;
    fn kind(&self) -> FaultKind;
    fn revert(&self) -> Result<(), AgentError>;
}

// === signalling, shared by kill and pause ===

/// What happened when a signal was meant for one target.
#[derive(Debug)]
pub(crate) enum Delivery {
    Sent,
    /// The target has exited or its pid belongs to another process now: nothing was sent.
    Gone(Skip),
}

/// Sends `signal` to `target` only after checking that the pid still has the selected start time.
///
/// The check and `kill(2)` are two syscalls, so a pid could in theory be reused between them; that needs the
/// target to exit and the pid space to wrap within microseconds. A pidfd would close the gap (agent issue).
pub(crate) fn deliver(target: &ProcessId, signal: Signal) -> Result<Delivery, AgentError> {
    match target.live_stat() {
        Ok(_) => {}
        Err(AgentError::Exited(_)) => return Ok(Delivery::Gone(Skip::Exited)),
        Err(AgentError::PidReused { found, .. }) => return Ok(Delivery::Gone(Skip::Reused { found })),
        Err(other) => return Err(other),
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(target.pid), signal.as_nix()) {
        Ok(()) => Ok(Delivery::Sent),
        Err(nix::errno::Errno::ESRCH) => Ok(Delivery::Gone(Skip::Exited)),
        Err(source) => Err(AgentError::Signal { signal, pid: target.pid, source }),
    }
}

/// `pids` as one event field: `123@4567,124@4570`.
pub(crate) fn pid_list(ids: &[ProcessId]) -> String {
    ids.iter().map(ProcessId::to_string).collect::<Vec<_>>().join(",")
}
