//! Memory stress: one worker process that maps `size` of anonymous memory and touches every page.

use serde::{Deserialize, Serialize};

use super::size::{Size, human};
use super::{Begun, Placement, StressHandle, spawn};
use crate::AgentError;
use crate::faults::{FaultId, FaultKind};
use crate::journal::{Journal, Undo};

/// Hold `size` of memory resident: a worker maps it, writes one byte per page, and touches every page again
/// every few seconds. A percentage is of MemTotal. The worker asks to be the OOM killer's first choice
/// (`oom_score_adj` 1000), so under real pressure the stress dies before a service does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryStress {
    pub size: Size,
}

// === impl MemoryStress ===

impl MemoryStress {
    pub fn kind(&self) -> FaultKind {
        FaultKind::MemoryStress
    }

    /// The bytes `apply` maps: `size`, or its percentage of MemTotal now.
    pub fn bytes(&self) -> Result<u64, AgentError> {
        self.size.check("size")?;
        let bytes = match self.size {
            Size::Bytes(bytes) => bytes,
            percent @ Size::Percent(_) => percent.of(mem_total()?),
        };
        if bytes == 0 {
            return Err(AgentError::invalid(
                "size",
                format!("expected more than 0 bytes, found {}", self.size),
            ));
        }
        Ok(bytes)
    }

    /// Refuses a size of zero or a percentage outside `(0, 100]`.
    pub fn validate(&self) -> Result<(), AgentError> {
        self.size.check("size")
    }

    /// Validates, refuses more than MemTotal, journals, then starts the worker; returns once every page has
    /// been touched.
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
        let bytes = self.bytes()?;
        let total = mem_total()?;
        if bytes > total {
            return Err(AgentError::invalid(
                "size",
                format!("expected at most MemTotal ({}), found {}", human(total), self.size),
            ));
        }
        let len = usize::try_from(bytes).map_err(|_| {
            AgentError::invalid("size", format!("expected at most {} bytes, found {}", usize::MAX, self.size))
        })?;
        let (id, kind) = (FaultId::next(), self.kind());
        let entry = journal.begin(id, kind, vec![Undo::KillWorkers { workers: Vec::new() }])?;
        let work = vec![spawn::Work::Memory { bytes: len, page: spawn::page_size() }];
        Begun { id, kind, entry, files: Vec::new(), bytes: Some(bytes) }.start(work, placement)
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn mem_total() -> Result<u64, AgentError> {
    let path = "/proc/meminfo";
    let text =
        std::fs::read_to_string(path).map_err(|source| AgentError::Proc { path: path.into(), source })?;
    text.lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib.saturating_mul(1024))
        .ok_or_else(|| AgentError::Proc {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "expected a line `MemTotal: N kB`"),
        })
}
