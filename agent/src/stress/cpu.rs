//! CPU stress: worker processes that each keep one CPU busy for `load`% of every 100 ms.

use serde::{Deserialize, Serialize};

use super::{Begun, MAX_WORKERS, Placement, StressHandle, check_workers, spawn};
use crate::AgentError;
use crate::faults::{FaultId, FaultKind};
use crate::journal::{Journal, Undo};

/// Spin `workers` processes, each busy for `load`% of every 100 ms period and asleep for the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuStress {
    /// How many workers, 1 to 1024; one per CPU this process may run on when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// Percent of each period a worker spins, 1 to 100.
    #[serde(default = "full_load")]
    pub load: u8,
}

fn full_load() -> u8 {
    100
}

// === impl CpuStress ===

impl Default for CpuStress {
    /// One worker per CPU, fully loaded.
    fn default() -> Self {
        CpuStress { workers: None, load: full_load() }
    }
}

impl CpuStress {
    pub fn kind(&self) -> FaultKind {
        FaultKind::CpuStress
    }

    /// The workers `apply` starts: `workers`, or the CPUs available to this process (at most 1024).
    pub fn effective_workers(&self) -> u32 {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| u32::try_from(n.get()).unwrap_or(MAX_WORKERS).min(MAX_WORKERS))
        })
    }

    /// Refuses a load outside 1..=100 and a worker count outside 1..=1024.
    pub fn validate(&self) -> Result<(), AgentError> {
        if !(1..=100).contains(&self.load) {
            return Err(AgentError::invalid(
                "load",
                format!("expected a percentage from 1 to 100, found {}", self.load),
            ));
        }
        if let Some(workers) = self.workers {
            check_workers(workers)?;
        }
        Ok(())
    }

    /// Validates, journals, then starts the workers; returns once each one runs.
    pub fn apply(&self, journal: &Journal) -> Result<StressHandle, AgentError> {
        self.apply_in(journal, None)
    }

    /// [`Self::apply`] with every worker in `placement`'s cgroup from its first step, when given.
    pub fn apply_in(
        &self,
        journal: &Journal,
        placement: Option<&Placement>,
    ) -> Result<StressHandle, AgentError> {
        self.validate()?;
        let (id, kind) = (FaultId::next(), self.kind());
        let entry = journal.begin(id, kind, vec![Undo::KillWorkers { workers: Vec::new() }])?;
        let work = (0..self.effective_workers()).map(|_| spawn::Work::Cpu { load: self.load }).collect();
        Begun { id, kind, entry, files: Vec::new(), bytes: None }.start(work, placement)
    }
}
