//! [`FaultSpec`]: every fault the agent applies, as data (YAML or JSON), tagged by `kind`.
//!
//! ```yaml
//! kind: cpu-stress
//! workers: 2
//! load: 80
//! ```
//!
//! The spec is what `chaos agent inject` reads, what the engine builds from an experiment step, and what the
//! controller will send to a remote agent. Each kind's fields are those of its module's struct
//! ([`crate::stress`], [`crate::net`]); process faults take a [`ProcessSelector`] `target` and a `count`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::faults::FaultKind;
use crate::process::ProcessSelector;
use crate::{AgentError, Count, Signal, net, stress};

/// One fault, tagged by `kind` (`process-kill`, `cpu-stress`, `network-partition`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultSpec {
    /// Sends `signal` (default `KILL`) once to the chosen processes; nothing to revert.
    ProcessKill {
        target: ProcessSelector,
        /// `2` (exactly two; fewer matches is an error) or `"30%"` of the matches (at least one). Default 1.
        #[serde(default = "one")]
        count: CountSpec,
        #[serde(default = "default_signal")]
        signal: String,
    },
    /// SIGSTOP to the chosen processes; SIGCONT on revert.
    ProcessPause {
        target: ProcessSelector,
        #[serde(default = "one")]
        count: CountSpec,
    },
    CpuStress(stress::CpuStress),
    MemoryStress(stress::MemoryStress),
    DiskFill(stress::DiskFill),
    IoStress(stress::IoStress),
    NetworkPartition(net::Partition),
    NetworkLoss(net::Loss),
    NetworkBandwidth(net::Bandwidth),
    NetworkLatency(net::Latency),
}

/// [`Count`] as written in a spec: an integer or a percentage string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountSpec(pub Count);

fn default_signal() -> String {
    "KILL".into()
}

fn one() -> CountSpec {
    CountSpec(Count::Exactly(1))
}

// === impl FaultSpec ===

impl FaultSpec {
    pub fn kind(&self) -> FaultKind {
        match self {
            FaultSpec::ProcessKill { .. } => FaultKind::ProcessKill,
            FaultSpec::ProcessPause { .. } => FaultKind::ProcessPause,
            FaultSpec::CpuStress(_) => FaultKind::CpuStress,
            FaultSpec::MemoryStress(_) => FaultKind::MemoryStress,
            FaultSpec::DiskFill(_) => FaultKind::DiskFill,
            FaultSpec::IoStress(_) => FaultKind::IoStress,
            FaultSpec::NetworkPartition(_) => FaultKind::NetworkPartition,
            FaultSpec::NetworkLoss(_) => FaultKind::NetworkLoss,
            FaultSpec::NetworkBandwidth(_) => FaultKind::NetworkBandwidth,
            FaultSpec::NetworkLatency(_) => FaultKind::NetworkLatency,
        }
    }

    /// Checks every field that can be checked without the policy; changes nothing.
    pub fn validate(&self) -> Result<(), AgentError> {
        match self {
            FaultSpec::ProcessKill { target, count, signal } => {
                Signal::parse(signal)?;
                target.matcher()?;
                count.0.validate()
            }
            FaultSpec::ProcessPause { target, count } => {
                target.matcher()?;
                count.0.validate()
            }
            FaultSpec::CpuStress(s) => s.validate(),
            FaultSpec::MemoryStress(s) => s.validate(),
            FaultSpec::DiskFill(s) => s.validate(),
            FaultSpec::IoStress(s) => s.validate(),
            FaultSpec::NetworkPartition(s) => s.validate(),
            FaultSpec::NetworkLoss(s) => s.validate(),
            FaultSpec::NetworkBandwidth(s) => s.validate(),
            FaultSpec::NetworkLatency(s) => s.validate(),
        }
    }

    /// Reads a spec from YAML or JSON text; errors name the line and column.
    pub fn parse(text: &str) -> Result<FaultSpec, AgentError> {
        serde_saphyr::from_str(text).map_err(|e| AgentError::invalid("fault spec", e.to_string()))
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => f.write_str(&json),
            Err(_) => write!(f, "{}", self.kind()),
        }
    }
}

// === impl CountSpec ===

impl Serialize for CountSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Count::Exactly(n) => s.serialize_u32(n),
            Count::Percent(p) => s.serialize_str(&format!("{}%", p * 100.0)),
        }
    }
}

impl<'de> Deserialize<'de> for CountSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Text(String),
        }
        let count = match Raw::deserialize(d)? {
            Raw::Number(n) => Count::Exactly(n),
            Raw::Text(text) => {
                let percent = text.trim().strip_suffix('%').and_then(|p| p.trim().parse::<f64>().ok());
                match percent {
                    Some(p) => Count::Percent(p / 100.0),
                    None => match text.trim().parse::<u32>() {
                        Ok(n) => Count::Exactly(n),
                        Err(_) => {
                            return Err(serde::de::Error::custom(format!(
                                "invalid count {text:?}: expected a number of processes or a percentage like 30%"
                            )));
                        }
                    },
                }
            }
        };
        count.validate().map_err(serde::de::Error::custom)?;
        Ok(CountSpec(count))
    }
}
