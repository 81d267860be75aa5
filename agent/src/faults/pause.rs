//! The pause fault: SIGSTOP to each target, reverted by SIGCONT to exactly the processes this fault stopped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ActiveFault, Delivery, Fault, FaultId, FaultKind, Lease, Skip, deliver, pid_list};
use crate::journal::{Entry, Journal, Undo};
use crate::process::ProcessId;
use crate::{AgentError, Signal};

/// Stop every target; resume them on revert, at the lease deadline if one is given, or when the handle drops.
#[derive(Debug, Clone)]
pub struct Pause {
    pub targets: Vec<ProcessId>,
    pub lease: Option<Duration>,
    /// Where the undo record goes before the first SIGSTOP, so a successor resumes the targets if this process
    /// dies holding the pause. `None`: no record (the pause then lasts at most as long as this process).
    pub journal: Option<Journal>,
}

/// An applied pause. Reverting is synchronous (a few syscalls) and idempotent.
///
/// The pause ends at the first of: [`PauseHandle::revert`], the lease deadline, or the handle being dropped (so a
/// step that panics resumes its targets while unwinding). A process that exits meanwhile is not an error.
#[derive(Debug)]
pub struct PauseHandle {
    state: Arc<PauseState>,
    lease: Option<Lease>,
}

/// Shared by the handle and the lease task, so whichever comes first reverts and the other finds nothing to do.
#[derive(Debug)]
struct PauseState {
    id: FaultId,
    /// Targets this fault stopped, for reports.
    stopped: Vec<ProcessId>,
    /// Targets already stopped by someone else: not ours to resume.
    already_stopped: Vec<ProcessId>,
    skipped: Vec<(ProcessId, Skip)>,
    /// Targets still to resume; `None` once a revert has finished.
    pending: Mutex<Option<Vec<ProcessId>>>,
    /// The undo record, deleted once every target is resumed.
    entry: Option<Entry>,
}

/// Stops `targets`, re-checking each start time first. With `lease`, they resume at the deadline even if nobody
/// calls [`PauseHandle::revert`] (a lease needs a tokio runtime). On error nothing is left stopped.
pub fn pause(targets: &[ProcessId], lease: Option<Duration>) -> Result<PauseHandle, AgentError> {
    Pause { targets: targets.to_vec(), lease, journal: None }.apply()
}

/// [`pause`] with an undo record in `journal`, written and fsync'd before the first SIGSTOP.
pub fn pause_journaled(
    targets: &[ProcessId],
    lease: Option<Duration>,
    journal: &Journal,
) -> Result<PauseHandle, AgentError> {
    Pause { targets: targets.to_vec(), lease, journal: Some(journal.clone()) }.apply()
}

// === impl Pause ===

impl Fault for Pause {
    type Applied = PauseHandle;

    fn kind(&self) -> FaultKind {
        FaultKind::ProcessPause
    }

    fn apply(self) -> Result<PauseHandle, AgentError> {
        if self.targets.is_empty() {
            return Err(AgentError::Invalid {
                what: "targets",
                reason: "expected at least one, found none".into(),
            });
        }
        // Refuse before stopping anything if the lease could not be armed.
        if self.lease.is_some() && tokio::runtime::Handle::try_current().is_err() {
            return Err(AgentError::NoRuntime);
        }
        let id = FaultId::next();
        let kind = self.kind();
        let (mut stopped, mut already_stopped, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
        let mut to_stop = Vec::new();
        for target in &self.targets {
            match target.live_stat() {
                Ok(stat) if matches!(stat.state, 'T' | 't') => already_stopped.push(*target),
                _ => to_stop.push(*target),
            }
        }
        // The record names every target about to be stopped before the first signal: resuming one that in the
        // end was not stopped (it exited) is harmless, missing one that was is not.
        let entry = match &self.journal {
            Some(journal) => {
                Some(journal.begin(id, kind, vec![Undo::Resume { targets: to_stop.clone() }])?)
            }
            None => None,
        };
        for target in &to_stop {
            let outcome = deliver(target, Signal::STOP);
            match outcome {
                Ok(Delivery::Sent) => stopped.push(*target),
                Ok(Delivery::Gone(skip)) => skipped.push((*target, skip)),
                Err(e) => {
                    tracing::warn!(fault_id = %id, %kind, pids = %target, error = %e, "failed");
                    // Undo what this apply did, so a failed apply leaves nothing stopped.
                    for done in &stopped {
                        let _ = deliver(done, Signal::CONT);
                    }
                    if let Some(entry) = &entry {
                        let _ = entry.finish();
                    }
                    return Err(e);
                }
            }
        }
        if stopped.is_empty() && already_stopped.is_empty() {
            let list: Vec<String> = skipped.iter().map(|(t, s)| format!("{t} {s:?}")).collect();
            let e = AgentError::NoTargetLeft(list.join(", "));
            tracing::warn!(fault_id = %id, %kind, pids = %pid_list(&self.targets), error = %e, "failed");
            if let Some(entry) = &entry {
                let _ = entry.finish();
            }
            return Err(e);
        }
        tracing::info!(fault_id = %id, %kind, pids = %pid_list(&stopped), "injected");
        let state = Arc::new(PauseState {
            id,
            pending: Mutex::new(Some(stopped.clone())),
            entry,
            stopped,
            already_stopped,
            skipped,
        });
        let lease = match self.lease {
            Some(ttl) => {
                let for_lease = state.clone();
                Some(Lease::arm(ttl, move || {
                    let _ = for_lease.revert_by("lease");
                })?)
            }
            None => None,
        };
        Ok(PauseHandle { state, lease })
    }
}

// === impl PauseHandle ===

impl PauseHandle {
    pub fn id(&self) -> FaultId {
        self.state.id
    }

    /// The processes this fault stopped, and will resume.
    pub fn stopped(&self) -> &[ProcessId] {
        &self.state.stopped
    }

    /// Targets that were already stopped (by someone else) and will be left stopped.
    pub fn already_stopped(&self) -> &[ProcessId] {
        &self.state.already_stopped
    }

    /// Targets not stopped because they had exited or their pid had been reused.
    pub fn skipped(&self) -> &[(ProcessId, Skip)] {
        &self.state.skipped
    }

    /// The lease, to read or renew its deadline.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// Resumes exactly the processes this fault stopped (checked by pid + start time). Synchronous and
    /// idempotent: after a successful revert, further calls do nothing. On error (EPERM) the targets not resumed
    /// stay pending, so the next call retries them.
    pub fn revert(&self) -> Result<(), AgentError> {
        self.state.revert_by("call")?;
        if let Some(lease) = &self.lease {
            lease.cancel();
        }
        Ok(())
    }

    /// Whether a revert (by call, lease or drop) has completed.
    pub fn is_reverted(&self) -> bool {
        self.state
            .pending
            .lock()
            .map(|p| p.is_none())
            .unwrap_or_else(|poisoned| poisoned.into_inner().is_none())
    }
}

impl ActiveFault for PauseHandle {
    fn id(&self) -> FaultId {
        self.state.id
    }

    fn kind(&self) -> FaultKind {
        FaultKind::ProcessPause
    }

    fn revert(&self) -> Result<(), AgentError> {
        PauseHandle::revert(self)
    }
}

impl Drop for PauseHandle {
    fn drop(&mut self) {
        // The event records a failure; a destructor has no one to return it to.
        if self.state.revert_by("drop").is_ok()
            && let Some(lease) = &self.lease
        {
            lease.cancel();
        }
    }
}

// === impl PauseState ===

impl PauseState {
    fn revert_by(&self, by: &'static str) -> Result<(), AgentError> {
        // A panic while holding this lock cannot leave the list half-edited (it is taken and put back whole).
        let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(targets) = pending.take() else { return Ok(()) };
        let kind = FaultKind::ProcessPause;
        let (mut resumed, mut left, mut first_error) = (Vec::new(), Vec::new(), None);
        for target in targets {
            match deliver(&target, Signal::CONT) {
                Ok(Delivery::Sent) => resumed.push(target),
                // Exited or reused: there is nothing of ours left to resume.
                Ok(Delivery::Gone(_)) => {}
                Err(e) => {
                    left.push(target);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => {
                tracing::info!(fault_id = %self.id, %kind, pids = %pid_list(&resumed), by, "reverted");
                if let Some(entry) = &self.entry
                    && let Err(e) = entry.finish()
                {
                    // Every target runs again; a record left behind only makes a later replay resume them again.
                    tracing::warn!(fault_id = %self.id, %kind, error = %e, "undo record not deleted");
                }
                Ok(())
            }
            Some(e) => {
                tracing::warn!(fault_id = %self.id, %kind, pids = %pid_list(&left), by, error = %e, "failed");
                *pending = Some(left);
                Err(e)
            }
        }
    }
}
