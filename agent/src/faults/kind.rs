//! [`FaultId`] and [`FaultKind`]: what names an applied fault in events, registries and journal records. A leaf:
//! the journal names its records with these without depending on the faults themselves.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::AgentError;

/// Identifies one applied fault in events and registries; unique within this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(u64);

/// The kinds of fault this crate applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    ProcessKill,
    ProcessPause,
    CpuStress,
    MemoryStress,
    DiskFill,
    IoStress,
    NetworkPartition,
    NetworkLoss,
    NetworkBandwidth,
    NetworkLatency,
}

// === impl FaultId ===

impl FaultId {
    pub(crate) fn next() -> FaultId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        FaultId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for FaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fault-{}", self.0)
    }
}

// === impl FaultKind ===

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::ProcessKill,
        FaultKind::ProcessPause,
        FaultKind::CpuStress,
        FaultKind::MemoryStress,
        FaultKind::DiskFill,
        FaultKind::IoStress,
        FaultKind::NetworkPartition,
        FaultKind::NetworkLoss,
        FaultKind::NetworkBandwidth,
        FaultKind::NetworkLatency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::ProcessKill => "process-kill",
            FaultKind::ProcessPause => "process-pause",
            FaultKind::CpuStress => "cpu-stress",
            FaultKind::MemoryStress => "memory-stress",
            FaultKind::DiskFill => "disk-fill",
            FaultKind::IoStress => "io-stress",
            FaultKind::NetworkPartition => "network-partition",
            FaultKind::NetworkLoss => "network-loss",
            FaultKind::NetworkBandwidth => "network-bandwidth",
            FaultKind::NetworkLatency => "network-latency",
        }
    }

    /// The kind named `name` (as [`FaultKind::as_str`] writes it).
    /// A network fault: it acts on a whole network namespace (a pod's, when in a pod).
    pub fn is_network(self) -> bool {
        matches!(
            self,
            FaultKind::NetworkPartition
                | FaultKind::NetworkLoss
                | FaultKind::NetworkBandwidth
                | FaultKind::NetworkLatency
        )
    }

    pub fn parse(name: &str) -> Result<FaultKind, AgentError> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.as_str()).collect();
            AgentError::invalid(
                "fault kind",
                format!("unknown kind {name:?} (expected one of {})", names.join(", ")),
            )
        })
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
