//! The kill fault: one signal to each target. No revert: what is measured is how the system recovers.

use serde::Serialize;

use super::{ActiveFault, Delivery, Fault, FaultId, FaultKind, deliver, pid_list};
use crate::process::ProcessId;
use crate::{AgentError, Signal};

/// Send `signal` to every target still alive with its selected identity.
#[derive(Debug, Clone)]
pub struct Kill {
    pub targets: Vec<ProcessId>,
    pub signal: Signal,
}

/// What a kill did, target by target.
#[derive(Debug, Clone, Serialize)]
pub struct KillReport {
    #[serde(skip)]
    pub id: FaultId,
    #[serde(serialize_with = "signal_name")]
    pub signal: Signal,
    /// Targets the signal was sent to.
    pub signalled: Vec<ProcessId>,
    /// Targets left alone because they were no longer the process selected.
    pub skipped: Vec<(ProcessId, Skip)>,
}

/// Why a target was not signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// It exited (or is a zombie) before the signal.
    Exited,
    /// Its pid now belongs to a process started at `found`.
    Reused { found: u64 },
}

/// Sends `signal` to each target after re-checking its start time. Fails when no target could be signalled, or
/// when `kill(2)` fails for a live target (EPERM); targets signalled before that stay signalled.
pub fn kill(targets: &[ProcessId], signal: Signal) -> Result<KillReport, AgentError> {
    Kill { targets: targets.to_vec(), signal }.apply()
}

// === impl Kill ===

impl Fault for Kill {
    type Applied = KillReport;

    fn kind(&self) -> FaultKind {
        FaultKind::ProcessKill
    }

    fn apply(self) -> Result<KillReport, AgentError> {
        if self.targets.is_empty() {
            return Err(AgentError::Invalid {
                what: "targets",
                reason: "expected at least one, found none".into(),
            });
        }
        let id = FaultId::next();
        let kind = self.kind();
        let mut report = KillReport { id, signal: self.signal, signalled: Vec::new(), skipped: Vec::new() };
        let mut first_error = None;
        for target in &self.targets {
            match deliver(target, self.signal) {
                Ok(Delivery::Sent) => report.signalled.push(*target),
                Ok(Delivery::Gone(skip)) => report.skipped.push((*target, skip)),
                Err(e) => {
                    tracing::warn!(fault_id = %id, %kind, pids = %target, signal = %self.signal, error = %e, "failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        if !report.signalled.is_empty() {
            let pids = pid_list(&report.signalled);
            tracing::info!(fault_id = %id, %kind, %pids, signal = %self.signal, "injected");
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if report.signalled.is_empty() {
            let skipped: Vec<String> = report.skipped.iter().map(|(t, s)| format!("{t} {s:?}")).collect();
            let e = AgentError::NoTargetLeft(skipped.join(", "));
            tracing::warn!(fault_id = %id, %kind, pids = %pid_list(&self.targets), error = %e, "failed");
            return Err(e);
        }
        Ok(report)
    }
}

fn signal_name<S: serde::Serializer>(signal: &Signal, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(signal)
}

// === impl KillReport ===

impl ActiveFault for KillReport {
    fn id(&self) -> FaultId {
        self.id
    }

    fn kind(&self) -> FaultKind {
        FaultKind::ProcessKill
    }

    /// A signal cannot be taken back; the system's own recovery is what the experiment measures.
    fn revert(&self) -> Result<(), AgentError> {
        Ok(())
    }
}
