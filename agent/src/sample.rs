//! Saturation sampling: how busy the host is (CPU, memory, load) and what each target process uses (CPU, RSS).
//!
//! A [`Sampler`] keeps its previous readings, so CPU figures are rates over the interval since its previous
//! call: the first call has no reference and reports `None`. Targets are identified by pid + start time like
//! every fault: a target whose pid now belongs to another process is reported not alive, never with the other
//! process's figures.
//!
//! Backed by `sysinfo`, refreshing only the target pids: sampling 1,000 targets reads their `/proc` files, not
//! every process on the host. Units: CPU as a share (of all CPUs for the host, of one CPU for a process),
//! memory in bytes.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::process::ProcessId;

/// Host CPU is a rate over the time between two reads of `/proc/stat`, and `sysinfo` re-reads it at most this
/// often: a [`Sampler::sample_host`] call sooner than this after the previous one repeats the previous figure.
pub const MIN_HOST_CPU_INTERVAL: Duration = sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;

/// `sysinfo` keeps an entry (and an open `/proc/PID/stat`) for every pid it was asked about; entries for pids
/// no longer targeted are dropped once they outnumber the targets by more than this.
const STALE_SLACK: usize = 64;

/// How saturated the host is at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSample {
    /// Share of all CPUs' time spent busy (user, nice, system, irq, softirq, steal; not idle or iowait) since the
    /// previous sample, `0.0..=1.0`. `None` on a sampler's first call (no reference yet), and until a call comes
    /// at least [`MIN_HOST_CPU_INTERVAL`] after it.
    pub cpu: Option<f64>,
    /// `1 − MemAvailable / MemTotal`, `0.0..=1.0` (`0.0` if `/proc/meminfo` could not be read).
    pub memory_used: f64,
    /// `MemTotal`, bytes.
    pub memory_total_bytes: u64,
    /// `MemAvailable`: what could be allocated without swapping, bytes.
    pub memory_available_bytes: u64,
    /// Load averages over 1, 5 and 15 minutes: runnable plus uninterruptible tasks, not divided by `cpus`.
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    /// Logical CPUs the kernel reports online.
    pub cpus: usize,
}

/// What one target process uses at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessSample {
    pub id: ProcessId,
    /// CPU time (user + system, all threads) over wall time since the previous call that sampled this target, as
    /// a share of one CPU: `1.0` is one core busy, `2.0` two. Resolution is one clock tick (10 ms at the usual
    /// 100 Hz) per interval. `None` the first time a target is seen (or if it was not among the previous call's
    /// targets), and whenever `alive` is false.
    pub cpu: Option<f64>,
    /// Resident set size, bytes (`0` when not alive).
    pub rss_bytes: u64,
    /// False when the process has exited, is a zombie, or its pid now belongs to another process (start time
    /// differs): nothing else in the sample is then about it.
    pub alive: bool,
}

/// Samples the host and target processes; keeps the previous readings CPU rates are computed against.
///
/// Through `sysinfo`, which keeps each target's `/proc/PID/stat` open between calls (at most half the open-file
/// limit; on first use it raises this process's soft limit to the hard one) and also reads `/proc/PID/status`.
pub struct Sampler {
    /// Host CPU and memory. Kept apart from `procs`: refreshing processes also re-reads `/proc/stat`, which would
    /// shorten the host CPU window.
    host: System,
    /// When the host CPU times were last re-read (after the read, so never earlier than `sysinfo`'s own stamp).
    host_read_at: Option<Instant>,
    host_cpu: Option<f64>,
    /// Target processes only.
    procs: System,
    /// CPU time (ms) of each target of the previous call, and when it was read.
    previous: HashMap<ProcessId, u64>,
    previous_at: Option<Instant>,
}

// === impl Sampler ===

impl Sampler {
    /// A sampler with no reference yet: the first host and process samples report `cpu: None`.
    pub fn new() -> Sampler {
        Sampler {
            host: System::new(),
            host_read_at: None,
            host_cpu: None,
            procs: System::new(),
            previous: HashMap::new(),
            previous_at: None,
        }
    }

    /// CPU since the previous call, memory, load averages and CPU count of this host.
    pub fn sample_host(&mut self) -> HostSample {
        match self.host_read_at {
            // Too soon: `sysinfo` would not re-read the CPU times and the figure would not be a fresh rate.
            Some(at) if at.elapsed() < MIN_HOST_CPU_INTERVAL => {}
            previous => {
                self.host.refresh_cpu_usage();
                self.host_read_at = Some(Instant::now());
                self.host_cpu = previous
                    .is_some()
                    .then(|| (f64::from(self.host.global_cpu_usage()) / 100.0).clamp(0.0, 1.0));
            }
        }
        self.host.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let total = self.host.total_memory();
        let available = self.host.available_memory();
        let memory_used =
            if total > 0 { (1.0 - available as f64 / total as f64).clamp(0.0, 1.0) } else { 0.0 };
        let load = System::load_average();
        HostSample {
            cpu: self.host_cpu,
            memory_used,
            memory_total_bytes: total,
            memory_available_bytes: available,
            load1: load.one,
            load5: load.five,
            load15: load.fifteen,
            cpus: self.host.cpus().len(),
        }
    }

    /// One sample per target, in the order given. Only the targets' `/proc` entries are read.
    ///
    /// Each target's start time is checked after its figures are read: a process that is still the target then
    /// was the target while they were read, so a reused pid is never reported as the target.
    pub fn sample_processes(&mut self, targets: &[ProcessId]) -> Vec<ProcessSample> {
        let mut pids: Vec<Pid> = targets
            .iter()
            .filter_map(|t| u32::try_from(t.pid).ok().filter(|p| *p > 0))
            .map(Pid::from_u32)
            .collect();
        // Once per pid: `sysinfo` drops a pid listed twice as if it had died (the second visit finds it seen).
        pids.sort_unstable();
        pids.dedup();
        self.procs.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let now = Instant::now();
        let elapsed = self.previous_at.map(|at| now.duration_since(at).as_secs_f64() * 1000.0);
        let mut current = HashMap::with_capacity(targets.len());
        let samples = targets
            .iter()
            .map(|target| {
                let gone = ProcessSample { id: *target, cpu: None, rss_bytes: 0, alive: false };
                if let Err(e) = target.check() {
                    tracing::debug!(pid = %target, error = %e, "target not sampled");
                    return gone;
                }
                let Some(process) =
                    u32::try_from(target.pid).ok().and_then(|p| self.procs.process(Pid::from_u32(p)))
                else {
                    // Alive, but `sysinfo` could not read it this time: no figures, no reference for next time.
                    return ProcessSample { alive: true, ..gone };
                };
                let cpu_ms = process.accumulated_cpu_time();
                current.insert(*target, cpu_ms);
                let cpu = match (self.previous.get(target), elapsed) {
                    (Some(before), Some(ms)) if ms > 0.0 => Some(cpu_ms.saturating_sub(*before) as f64 / ms),
                    _ => None,
                };
                ProcessSample { id: *target, cpu, rss_bytes: process.memory(), alive: true }
            })
            .collect();
        self.previous = current;
        self.previous_at = Some(now);
        if self.procs.processes().len() > 2 * targets.len() + STALE_SLACK {
            // Pids from earlier calls: drop them (and their open files). CPU references live in `previous`.
            self.procs = System::new();
        }
        samples
    }
}

impl Default for Sampler {
    fn default() -> Sampler {
        Sampler::new()
    }
}

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler")
            .field("host_cpu", &self.host_cpu)
            .field("tracked", &self.previous.len())
            .finish_non_exhaustive()
    }
}
