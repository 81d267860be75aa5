//! [`HostAgent`]: the one entry point that applies any [`FaultSpec`] on this host with a lease, an undo record and
//! the policy checked first; what `chaos run` and `chaos agent` use.
//!
//! Starting one replays the undo journal (reverting what a dead predecessor left) and probes the network
//! capabilities once. Every applied fault is held until it is reverted by [`HostAgent::revert`],
//! [`HostAgent::revert_all`], its lease, or the agent being dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::faults::{ActiveFault, FaultId, FaultKind, Lease};
use crate::journal::{Journal, ReplayMode, ReplayReport};
use crate::net::Capabilities;
use crate::policy::AgentPolicy;
use crate::process::{self, ProcessId};
use crate::spec::FaultSpec;
use crate::stress::Placement;
use crate::{AgentError, Signal, faults, pods};

/// How many times a lease tries to revert its fault before leaving it to `revert_all` and the journal.
const LEASE_REVERT_ATTEMPTS: u32 = 5;

/// Applies faults on this host. Cheap to clone (shared state).
#[derive(Clone)]
pub struct HostAgent {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    state_dir: PathBuf,
    policy: AgentPolicy,
    capabilities: Capabilities,
    seed: u64,
    /// Active faults, oldest first.
    active: Mutex<Vec<Held>>,
}

struct Held {
    id: FaultId,
    kind: FaultKind,
    description: String,
    fault: Arc<dyn ActiveFault>,
    lease: Option<Lease>,
}

/// What [`HostAgent::apply`] did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// `None` for a fault with nothing to revert (a kill).
    pub id: Option<FaultId>,
    pub kind: String,
    /// Processes hit, workers started, files written, rules added: one line for people.
    pub description: String,
}

/// One fault still active, for status listings.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveInfo {
    pub id: String,
    pub kind: String,
    pub description: String,
}

/// What [`HostAgent::revert_all`] did: reverted ids newest first, and failures (kept for a retry).
#[derive(Debug, Default)]
pub struct RevertReport {
    pub reverted: Vec<FaultId>,
    pub failed: Vec<(FaultId, AgentError)>,
}

// === impl HostAgent ===

impl HostAgent {
    /// Opens the journal under `state_dir`, replays what dead owners left there, and probes capabilities.
    pub fn start(
        state_dir: impl AsRef<Path>,
        policy: AgentPolicy,
        seed: u64,
    ) -> Result<(HostAgent, ReplayReport), AgentError> {
        policy.validate()?;
        let journal = Journal::open(state_dir.as_ref())?;
        let replay = journal.replay(ReplayMode::Orphaned);
        let capabilities = Capabilities::probe();
        let inner = Inner {
            journal,
            state_dir: state_dir.as_ref().to_path_buf(),
            policy,
            capabilities,
            seed,
            active: Mutex::new(Vec::new()),
        };
        Ok((HostAgent { inner: Arc::new(inner) }, replay))
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    pub fn policy(&self) -> &AgentPolicy {
        &self.inner.policy
    }

    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The pid of the watchdog process that enforces this agent's leases if it dies, while one runs.
    pub fn watchdog_pid(&self) -> Option<u32> {
        self.inner.journal.watchdog_pid()
    }

    /// Everything `apply` would check, without changing anything: spec, policy, capabilities, what the fault
    /// needs of the host (a network device that exists with its default qdisc, a directory under `fill_paths`),
    /// and for process faults the processes that would be hit. Returns one line saying what `apply` would do
    /// (the processes by pid and name, or the spec).
    pub fn plan(&self, spec: &FaultSpec, duration: Option<Duration>) -> Result<String, AgentError> {
        self.plan_seeded(spec, duration, self.inner.seed)
    }

    /// [`HostAgent::plan`] with process selection seeded by `seed` instead of the agent's own seed.
    pub fn plan_seeded(
        &self,
        spec: &FaultSpec,
        duration: Option<Duration>,
        seed: u64,
    ) -> Result<String, AgentError> {
        plan(&self.inner.policy, &self.inner.capabilities, spec, duration, seed)
    }

    /// Applies `spec` for `duration`, reverted at the deadline by a lease; `None` means the policy's
    /// `max_duration`, so every fault has a deadline. Needs a tokio runtime for the lease; makes blocking system
    /// calls and runs `nft`/`tc`, so call it from a blocking context in async code. On error nothing is left
    /// applied.
    pub fn apply(&self, spec: &FaultSpec, duration: Option<Duration>) -> Result<Applied, AgentError> {
        self.apply_seeded(spec, duration, self.inner.seed)
    }

    /// [`HostAgent::apply`] with process selection seeded by `seed` (a controller's run seed) instead of the
    /// agent's own seed.
    pub fn apply_seeded(
        &self,
        spec: &FaultSpec,
        duration: Option<Duration>,
        seed: u64,
    ) -> Result<Applied, AgentError> {
        self.apply_placed(spec, duration, seed, None)
    }

    /// `spec` inside `container` of `pod` (found by [`pods::find`]): confined there by [`pods::in_pod`] (the
    /// container's processes, the pod's network namespace), stress workers in the container's cgroup from their first step,
    /// with the policy's pod rules checked first. Leased, journaled and reverted like any host fault.
    pub fn apply_in_pod(
        &self,
        spec: &FaultSpec,
        pod: &pods::Pod,
        container: &pods::PodContainer,
        duration: Option<Duration>,
        seed: u64,
    ) -> Result<Applied, AgentError> {
        let confined = self.confined(spec, pod, container)?;
        let mut applied = self.apply_placed(&confined, duration, seed, Some(&container.cgroup))?;
        applied.description = format!(
            "{} (pod {}/{}, container {})",
            applied.description, pod.namespace, pod.name, container.name
        );
        Ok(applied)
    }

    /// [`HostAgent::plan_seeded`] of `spec` inside `container` of `pod`: the pod rules, the confinement, then
    /// the plan of the confined fault, naming the pod.
    pub fn plan_in_pod(
        &self,
        spec: &FaultSpec,
        pod: &pods::Pod,
        container: &pods::PodContainer,
        duration: Option<Duration>,
        seed: u64,
    ) -> Result<String, AgentError> {
        let confined = self.confined(spec, pod, container)?;
        let mut plan = self.plan_seeded(&confined, duration, seed)?;
        if let FaultSpec::DiskFill(fill) = &confined {
            plan = format!("{plan}, filling {}", fill.location());
        }
        Ok(format!(
            "{plan} in pod {}/{}, container {} (pid {}, cgroup {}), netns {}",
            pod.namespace,
            pod.name,
            container.name,
            container.pid,
            container.cgroup,
            pod.netns.as_deref().unwrap_or("the node's")
        ))
    }

    /// `spec` confined to `container` of `pod`, once the policy's pod rules allow the pod's namespace.
    fn confined(
        &self,
        spec: &FaultSpec,
        pod: &pods::Pod,
        container: &pods::PodContainer,
    ) -> Result<FaultSpec, AgentError> {
        self.inner.policy.check_pod_namespace(&pod.namespace)?;
        pods::in_pod(spec, pod, container)
    }

    /// [`HostAgent::apply_seeded`], with stress workers in the cgroup `place` (from their first step) when given.
    fn apply_placed(
        &self,
        spec: &FaultSpec,
        duration: Option<Duration>,
        seed: u64,
        place: Option<&str>,
    ) -> Result<Applied, AgentError> {
        self.check(spec, duration)?;
        // A kill has nothing to revert, so no lease: it needs no runtime.
        let duration = match spec {
            FaultSpec::ProcessKill { .. } => None,
            _ => Some(duration.map_or_else(|| self.inner.policy.max_duration(), Ok)?),
        };
        let leased = duration.is_some();
        if leased && tokio::runtime::Handle::try_current().is_err() {
            return Err(AgentError::NoRuntime);
        }
        // The record carries the same deadline as the in-process lease (armed below for what is left of it), so
        // the watchdog enforces it if this process is killed or stalls.
        let started = std::time::Instant::now();
        let journal = &self.inner.journal.leased(duration);
        let caps = &self.inner.capabilities;
        let kind = spec.kind();
        // Opened before any worker starts: each joins the cgroup as its first step.
        let placement = match place {
            Some(cgroup)
                if matches!(
                    spec,
                    FaultSpec::CpuStress(_) | FaultSpec::MemoryStress(_) | FaultSpec::IoStress(_)
                ) =>
            {
                Some(Placement::open(cgroup)?)
            }
            _ => None,
        };
        let (fault, description): (Arc<dyn ActiveFault>, String) = match spec {
            FaultSpec::ProcessKill { signal, .. } => {
                let targets = self.select(spec, seed)?;
                let report = faults::kill(&targets, Signal::parse(signal)?)?;
                // The signal displays with its prefix already (`SIGKILL`).
                let mut description = format!("{} sent to {}", report.signal, workers(&report.signalled));
                let gone: Vec<ProcessId> = report.skipped.iter().map(|(id, _)| *id).collect();
                if !gone.is_empty() {
                    description.push_str(&format!("; {} gone already", workers(&gone)));
                }
                return Ok(Applied { id: None, kind: kind.to_string(), description });
            }
            FaultSpec::ProcessPause { .. } => {
                let targets = self.select(spec, seed)?;
                let handle = faults::pause_journaled(&targets, None, journal)?;
                // Every part that is not empty: a target stopped by someone else is left stopped on revert.
                let gone: Vec<ProcessId> = handle.skipped().iter().map(|(id, _)| *id).collect();
                let parts = [
                    (handle.stopped(), "stopped "),
                    (handle.already_stopped(), "already stopped (left so on revert): "),
                    (gone.as_slice(), "gone already: "),
                ];
                let description: Vec<String> = parts
                    .iter()
                    .filter(|(ids, _)| !ids.is_empty())
                    .map(|(ids, what)| format!("{what}{}", workers(ids)))
                    .collect();
                let description = description.join("; ");
                (Arc::new(handle), description)
            }
            FaultSpec::CpuStress(s) => {
                let handle = s.apply_in(journal, placement.as_ref())?;
                let description = format!(
                    "{} cpu workers at {}% ({})",
                    s.effective_workers(),
                    s.load,
                    workers(handle.workers())
                );
                (Arc::new(handle), description)
            }
            FaultSpec::MemoryStress(s) => {
                let handle = s.apply_in(journal, placement.as_ref())?;
                let description = format!("{} bytes held by {}", s.bytes()?, workers(handle.workers()));
                (Arc::new(handle), description)
            }
            FaultSpec::DiskFill(s) => {
                let handle = s.apply_within(journal, &self.inner.policy.stress.fill_paths)?;
                let files: Vec<String> = handle.files().iter().map(|p| p.display().to_string()).collect();
                (Arc::new(handle), format!("filled {}", files.join(", ")))
            }
            FaultSpec::IoStress(s) => {
                let handle = s.apply_in(journal, placement.as_ref())?;
                let description = format!(
                    "{} io workers ({}) writing in {}",
                    s.workers,
                    workers(handle.workers()),
                    s.path.display()
                );
                (Arc::new(handle), description)
            }
            FaultSpec::NetworkPartition(s) => net(s.apply(journal, caps)?),
            FaultSpec::NetworkLoss(s) => net(s.apply(journal, caps)?),
            FaultSpec::NetworkBandwidth(s) => net(s.apply(journal, caps)?),
            FaultSpec::NetworkLatency(s) => net(s.apply(journal, caps)?),
        };
        let id = fault.id();
        // Held while the lease is armed and until the fault is listed: a lease that expires at once (a short
        // duration on a busy host) then finds the fault in the list. Without the lock its revert could run first,
        // find nothing, and leave the fault applied with no lease.
        let mut active = self.lock();
        let lease = match duration {
            Some(ttl) => {
                let ttl = ttl.saturating_sub(started.elapsed());
                // Weak: a lease must not keep a dropped agent alive (its drop reverts everything at once).
                let agent = Arc::downgrade(&self.inner);
                Some(Lease::arm(ttl, move || {
                    let Some(inner) = agent.upgrade() else { return };
                    let agent = HostAgent { inner };
                    // The revert may run `nft`/`tc` or reap workers: keep it off the async worker threads.
                    // A failed revert (a busy `nft`, EPERM) is retried a few times a second apart; what
                    // still fails stays listed for `revert_all` and in the journal for the next start.
                    tokio::task::spawn_blocking(move || {
                        for attempt in 1..=LEASE_REVERT_ATTEMPTS {
                            match agent.revert(id) {
                                Ok(()) => return,
                                Err(e) => {
                                    tracing::warn!(fault_id = %id, attempt, error = %e,
                                        "revert at the lease deadline failed");
                                    std::thread::sleep(Duration::from_secs(1));
                                }
                            }
                        }
                    });
                })?)
            }
            None => None,
        };
        let applied = Applied { id: Some(id), kind: kind.to_string(), description: description.clone() };
        active.push(Held { id, kind, description, fault, lease });
        Ok(applied)
    }

    /// Moves the deadline of fault `id` to `ttl` from now. Refused, changing nothing, when `ttl` is longer than
    /// the policy's `max_duration`, when the fault has no lease, and once its lease has expired (the revert is
    /// then under way).
    pub fn renew(&self, id: FaultId, ttl: Duration) -> Result<(), AgentError> {
        let active = self.lock();
        let held = active.iter().find(|h| h.id == id).ok_or_else(|| unknown(id))?;
        let Some(lease) = &held.lease else {
            return Err(AgentError::invalid("renew", format!("{id} has no lease to renew")));
        };
        self.inner.policy.check_duration(held.kind, ttl)?;
        if lease.is_finished() {
            return Err(AgentError::invalid(
                "renew",
                format!("{id} has a lease that has expired already; it is being reverted"),
            ));
        }
        // The record first: a renewal the watchdog does not know of would be reverted at the old deadline.
        self.inner.journal.renew(id, ttl)?;
        lease.renew(ttl);
        Ok(())
    }

    /// Reverts fault `id` (synchronously). Reverting a fault that is no longer active succeeds.
    pub fn revert(&self, id: FaultId) -> Result<(), AgentError> {
        let fault = {
            let active = self.lock();
            match active.iter().find(|h| h.id == id) {
                Some(held) => held.fault.clone(),
                None => return Ok(()),
            }
        };
        fault.revert()?;
        let mut active = self.lock();
        if let Some(pos) = active.iter().position(|h| h.id == id) {
            let held = active.remove(pos);
            if let Some(lease) = held.lease {
                lease.cancel();
            }
        }
        Ok(())
    }

    /// Reverts every active fault, newest first, attempting each; failures stay active for a retry.
    pub fn revert_all(&self) -> RevertReport {
        let ids: Vec<FaultId> = self.lock().iter().rev().map(|h| h.id).collect();
        let mut report = RevertReport::default();
        for id in ids {
            match self.revert(id) {
                Ok(()) => report.reverted.push(id),
                Err(e) => report.failed.push((id, e)),
            }
        }
        report
    }

    /// The faults still active, oldest first.
    pub fn active(&self) -> Vec<ActiveInfo> {
        self.lock()
            .iter()
            .map(|h| ActiveInfo {
                id: h.id.to_string(),
                kind: h.kind.to_string(),
                description: h.description.clone(),
            })
            .collect()
    }

    fn check(&self, spec: &FaultSpec, duration: Option<Duration>) -> Result<(), AgentError> {
        check(&self.inner.policy, &self.inner.capabilities, spec, duration)
    }

    fn select(&self, spec: &FaultSpec, seed: u64) -> Result<Vec<ProcessId>, AgentError> {
        select(&self.inner.policy, spec, seed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        // Entries are pushed and removed whole; a panic elsewhere cannot leave one half-written.
        self.inner.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// [`HostAgent::plan`] for a caller with no agent started (a dry run must not replay the journal): the same
/// checks under `policy` and `capabilities` (from [`Capabilities::probe`]), changing nothing.
pub fn plan(
    policy: &AgentPolicy,
    capabilities: &Capabilities,
    spec: &FaultSpec,
    duration: Option<Duration>,
    seed: u64,
) -> Result<String, AgentError> {
    check(policy, capabilities, spec, duration)?;
    Ok(match spec {
        FaultSpec::ProcessKill { .. } | FaultSpec::ProcessPause { .. } => {
            let targets = select(policy, spec, seed)?;
            let shown: Vec<String> = targets
                .iter()
                .map(|id| match process::inspect(id) {
                    Ok(info) => format!("{} ({})", id.pid, info.comm),
                    Err(_) => id.pid.to_string(),
                })
                .collect();
            format!("{} on pid {}", spec.kind(), shown.join(", "))
        }
        other => format!("{other}"),
    })
}

/// Spec, policy, capabilities, and what the fault needs of the host now; changes nothing.
fn check(
    policy: &AgentPolicy,
    capabilities: &Capabilities,
    spec: &FaultSpec,
    duration: Option<Duration>,
) -> Result<(), AgentError> {
    spec.validate()?;
    policy.check(spec, duration)?;
    capabilities.require(spec.kind())?;
    match spec {
        FaultSpec::NetworkPartition(s) => s.check_host(capabilities),
        FaultSpec::NetworkLoss(s) => s.check_host(capabilities),
        FaultSpec::NetworkBandwidth(s) => s.check_host(capabilities),
        FaultSpec::NetworkLatency(s) => s.check_host(capabilities),
        // Directories exist (`validate`) and are under `fill_paths` (the policy); processes are selected by
        // the caller, under the policy.
        FaultSpec::ProcessKill { .. }
        | FaultSpec::ProcessPause { .. }
        | FaultSpec::CpuStress(_)
        | FaultSpec::MemoryStress(_)
        | FaultSpec::DiskFill(_)
        | FaultSpec::IoStress(_) => Ok(()),
    }
}

fn select(policy: &AgentPolicy, spec: &FaultSpec, seed: u64) -> Result<Vec<ProcessId>, AgentError> {
    let (target, count) = match spec {
        FaultSpec::ProcessKill { target, count, .. } | FaultSpec::ProcessPause { target, count } => {
            (target, count)
        }
        _ => return Ok(Vec::new()),
    };
    process::select(target, count.0, seed, &policy.process_policy())
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: nobody can revert these any more, so revert them now, newest first.
        let held = std::mem::take(self.active.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()));
        for h in held.into_iter().rev() {
            if let Some(lease) = &h.lease {
                lease.cancel();
            }
            if let Err(e) = h.fault.revert() {
                tracing::warn!(fault_id = %h.id, kind = %h.kind, error = %e, "revert on drop failed");
            }
        }
    }
}

fn net(handle: crate::net::NetHandle) -> (Arc<dyn ActiveFault>, String) {
    let description = handle.target().to_string();
    (Arc::new(handle), description)
}

/// `pid 1, 2`.
fn workers(ids: &[ProcessId]) -> String {
    let pids: Vec<String> = ids.iter().map(|p| p.pid.to_string()).collect();
    format!("pid {}", pids.join(", "))
}

fn unknown(id: FaultId) -> AgentError {
    AgentError::invalid("fault id", format!("{id} is not active here"))
}
