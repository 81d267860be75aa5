//! `FaultRegistry`: the faults still active in this process, reverted newest first.

use std::sync::Mutex;

use super::{ActiveFault, FaultId};
use crate::AgentError;

/// Active faults in the order they were applied. `revert_all` is what a runner calls on success, failure, abort,
/// halt and signal alike.
#[derive(Default)]
pub struct FaultRegistry {
    active: Mutex<Vec<Box<dyn ActiveFault>>>,
}

/// What `revert_all` did.
#[derive(Debug, Default)]
pub struct RevertAllReport {
    /// Reverted, newest first.
    pub reverted: Vec<FaultId>,
    /// Still active after a failed revert; they stay in the registry so the next `revert_all` retries them.
    pub failed: Vec<(FaultId, AgentError)>,
}

// === impl FaultRegistry ===

impl FaultRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `fault` until it is reverted; returns its id.
    pub fn insert(&self, fault: impl ActiveFault) -> FaultId {
        let id = fault.id();
        self.lock().push(Box::new(fault));
        id
    }

    /// How many faults are still active.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Reverts every active fault, newest first, attempting each even when an earlier one fails.
    pub fn revert_all(&self) -> RevertAllReport {
        let faults = std::mem::take(&mut *self.lock());
        let mut report = RevertAllReport::default();
        let mut kept = Vec::new();
        for fault in faults.into_iter().rev() {
            match fault.revert() {
                Ok(()) => report.reverted.push(fault.id()),
                Err(e) => {
                    report.failed.push((fault.id(), e));
                    kept.push(fault);
                }
            }
        }
        // Faults inserted while reverting stay newer than the ones kept for a retry.
        kept.reverse();
        let mut active = self.lock();
        kept.append(&mut active);
        *active = kept;
        report
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn ActiveFault>>> {
        // Pushing and taking whole vectors cannot leave the list half-edited, so a poisoned lock is still sound.
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for FaultRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<FaultId> = self.lock().iter().map(|fault| fault.id()).collect();
        f.debug_struct("FaultRegistry").field("active", &ids).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::FaultKind;
    use super::*;

    /// A fault that records its revert order and can be told to fail once.
    struct Recorder {
        id: FaultId,
        log: Arc<Mutex<Vec<FaultId>>>,
        fail_once: Mutex<bool>,
    }

    impl ActiveFault for Recorder {
        fn id(&self) -> FaultId {
            self.id
        }
        fn kind(&self) -> FaultKind {
            FaultKind::ProcessPause
        }
        fn revert(&self) -> Result<(), AgentError> {
            let mut fail = self.fail_once.lock().unwrap();
            if std::mem::take(&mut *fail) {
                return Err(AgentError::NoTargetLeft("told to fail".into()));
            }
            self.log.lock().unwrap().push(self.id);
            Ok(())
        }
    }

    #[test]
    fn reverts_newest_first_and_retries_failures() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let registry = FaultRegistry::new();
        let ids: Vec<FaultId> = (0..3)
            .map(|i| {
                let fault = Recorder { id: FaultId::next(), log: log.clone(), fail_once: Mutex::new(i == 1) };
                registry.insert(fault)
            })
            .collect();
        let first = registry.revert_all();
        assert_eq!(first.reverted, [ids[2], ids[0]]);
        assert_eq!(first.failed.len(), 1);
        assert_eq!(registry.len(), 1);
        let second = registry.revert_all();
        assert_eq!(second.reverted, [ids[1]]);
        assert!(registry.is_empty());
        assert_eq!(*log.lock().unwrap(), [ids[2], ids[0], ids[1]]);
    }
}
