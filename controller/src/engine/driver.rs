//! Applying a fault step: the [`FaultDriver`] trait the method runs faults through, and [`LiveDriver`], the
//! real one (proxies through their API, this host through the local agent, other hosts through
//! [`super::RemoteHosts`]). Tests drive the lifecycle with a fake driver instead.

use std::time::Duration;

use chaos_agent::spec::{CountSpec, FaultSpec};

use super::error::FaultError;
use super::faults::{self, Active, ActiveFault};
use super::plan::{Plan, ResolvedTarget, agent_count, agent_selector};
use super::remote::{ApplyRequest, BoxFuture, PodRef};
use crate::experiment::checked::Fault;
use crate::experiment::faults::FaultParams;

/// What applying a fault step left behind.
pub enum Applied {
    /// A fault in force until it is reverted.
    Active(Box<dyn ActiveFault>),
    /// A fault with nothing to revert (a kill): what it did, for the timeline.
    Instant(String),
}

/// Applies the faults of method and rollback steps.
pub trait FaultDriver: Send + Sync {
    /// Applies `fault` for step `step_name`.
    fn apply<'a>(
        &'a self,
        step_name: &'a str,
        fault: &'a Fault<'_>,
    ) -> BoxFuture<'a, Result<Applied, FaultError>>;
}

/// The real driver: a run's resolved plan, its seed and the deadline margin every fault's own deadline gets
/// beyond its planned duration.
pub struct LiveDriver {
    pub plan: Plan,
    pub seed: u64,
    pub margin: Duration,
}

// === impl LiveDriver ===

impl FaultDriver for LiveDriver {
    fn apply<'a>(
        &'a self,
        step_name: &'a str,
        fault: &'a Fault<'_>,
    ) -> BoxFuture<'a, Result<Applied, FaultError>> {
        Box::pin(self.apply_now(step_name, fault))
    }
}

impl LiveDriver {
    async fn apply_now(&self, step_name: &str, fault: &Fault<'_>) -> Result<Applied, FaultError> {
        let target = fault.target;
        let kind = fault.kind.name();
        let duration = fault.duration.map(|d| d.0);
        if let Some(units) = self.plan.remote_spec(fault) {
            return self.apply_remote(units, duration).await.map_err(|e| e.on(kind, target));
        }
        if let FaultParams::Host(spec) = &fault.params
            && target == crate::experiment::HOST_TARGET
        {
            return self.apply_on_host(spec, duration).await.map_err(|e| e.on(kind, target));
        }
        let resolved =
            self.plan.targets.get(target).ok_or_else(|| FaultError::UnknownTarget(target.to_string()))?;
        let needs_duration =
            |fault: &str| FaultError::NeedsDuration { fault: fault.to_string(), target: target.to_string() };
        match (resolved, &fault.params) {
            (
                ResolvedTarget::Proxy { client, name, .. },
                FaultParams::Toxic { toxic_type, stream, toxicity, attributes },
            ) => {
                let duration = duration.ok_or_else(|| needs_duration(toxic_type))?;
                let stream = match stream {
                    crate::experiment::faults::Stream::Upstream => chaos_proxy_api::client::Stream::Upstream,
                    crate::experiment::faults::Stream::Downstream => {
                        chaos_proxy_api::client::Stream::Downstream
                    }
                };
                let toxic = faults::ToxicFault { toxic_type, stream, toxicity: *toxicity, attributes };
                let toxic_name = faults::toxic_name(step_name, toxic_type, &self.plan.run_id);
                let active =
                    faults::add_toxic(client, name, toxic_name, toxic, duration, self.margin).await?;
                Ok(Applied::Active(Box::new(active)))
            }
            (ResolvedTarget::Proxy { client, name, .. }, FaultParams::Down) => {
                let duration = duration.ok_or_else(|| needs_duration("down"))?;
                let active = faults::take_down(client, name, duration, self.margin).await?;
                Ok(Applied::Active(Box::new(active)))
            }
            (ResolvedTarget::Processes { selector, count, .. }, FaultParams::Kill { signal }) => {
                let (selector, count, seed) = (agent_selector(selector), agent_count(*count), self.seed);
                let signal = signal.to_string();
                let (kind, target_name) = (kind.to_string(), target.to_string());
                // Walking /proc and signalling are blocking work: off the async workers, as a pause is.
                let killed = tokio::task::spawn_blocking(move || {
                    let policy = chaos_agent::process::Policy::default();
                    let ids = chaos_agent::process::select(&selector, count, seed, &policy)
                        .map_err(|e| FaultError::agent(e).on(&kind, &target_name))?;
                    let signal = chaos_agent::Signal::parse(&signal).map_err(FaultError::agent)?;
                    let report = chaos_agent::faults::kill(&ids, signal)
                        .map_err(|e| FaultError::agent(e).on("kill", &target_name))?;
                    let hit: Vec<String> = report.signalled.iter().map(ToString::to_string).collect();
                    Ok(format!("{} sent to {}", report.signal, hit.join(", ")))
                })
                .await
                .map_err(|e| {
                    FaultError::Task { what: "kill", detail: e.to_string() }.on(fault.kind.name(), target)
                })?;
                killed.map(Applied::Instant)
            }
            // Through the agent, so the pause is journaled: a runner killed mid-pause leaves a record that the next
            // start (or `chaos agent revert-all`) replays, resuming the processes.
            (ResolvedTarget::Processes { selector, count, .. }, FaultParams::Pause) => {
                let spec = FaultSpec::ProcessPause {
                    target: agent_selector(selector),
                    count: CountSpec(agent_count(*count)),
                };
                self.apply_on_host(&spec, duration).await.map_err(|e| e.on("pause", target))
            }
            _ => Err(FaultError::NotApplicable { fault: kind.to_string(), target: target.to_string() }),
        }
    }

    /// Applies each unit (an agent, a pod container or none, a spec) at once, through the remote hosts. All or
    /// nothing: when one refuses, the others are reverted and the step fails. A kill has nothing to revert.
    async fn apply_remote(
        &self,
        units: Vec<(String, Option<PodRef>, FaultSpec)>,
        duration: Option<Duration>,
    ) -> Result<Applied, FaultError> {
        let remote = self.plan.remote.clone().ok_or(FaultError::NoController)?;
        let kill = units.iter().all(|(_, _, spec)| matches!(spec, FaultSpec::ProcessKill { .. }));
        if !kill && duration.is_none() {
            return Err(FaultError::NoDuration);
        }
        let mut applies = tokio::task::JoinSet::new();
        for (agent, pod, spec) in units {
            let spec_json = serde_json::to_string(&spec).map_err(|e| FaultError::Encode(e.to_string()))?;
            let request = ApplyRequest {
                fault_id: remote.fault_id(&agent),
                agent,
                run: remote.run_id.clone(),
                spec_json,
                duration: if kill { None } else { duration },
                seed: self.seed,
                actor: remote.actor.clone(),
                pod,
            };
            let hosts = remote.hosts.clone();
            applies.spawn(async move {
                let result = hosts.apply(request.clone()).await;
                (request, result)
            });
        }
        let mut applied = Vec::new();
        let mut failed = Vec::new();
        for (request, result) in applies.join_all().await {
            match result {
                Ok(description) => applied.push((request.agent, request.fault_id, description)),
                Err(e) => failed.push((request.agent, e)),
            }
        }
        applied.sort();
        if !failed.is_empty() {
            for (_, fault_id, _) in &applied {
                let _ = remote.hosts.revert(fault_id).await;
            }
            failed.sort_by(|a, b| a.0.cmp(&b.0));
            return Err(FaultError::Agents(failed));
        }
        let description: Vec<String> = applied.iter().map(|(agent, _, d)| format!("{agent}: {d}")).collect();
        if kill {
            return Ok(Applied::Instant(description.join("; ")));
        }
        Ok(Applied::Active(Box::new(Active::Remote {
            hosts: remote.hosts,
            faults: applied.into_iter().map(|(agent, id, _)| (agent, id)).collect(),
            description: description.join("; "),
        })))
    }

    /// Applies `spec` through the local agent with a lease of `duration` plus the margin, off the async
    /// threads.
    async fn apply_on_host(
        &self,
        spec: &FaultSpec,
        duration: Option<Duration>,
    ) -> Result<Applied, FaultError> {
        let agent = self.plan.host.clone().ok_or(FaultError::NoHostAgent)?;
        let duration = duration.ok_or(FaultError::NoDuration)?;
        let lease = duration + self.margin;
        let (for_apply, spec) = (agent.clone(), spec.clone());
        let applied = tokio::task::spawn_blocking(move || for_apply.apply(&spec, Some(lease)))
            .await
            .map_err(|e| FaultError::Task { what: "apply", detail: e.to_string() })?
            .map_err(FaultError::agent)?;
        let id = applied.id.ok_or(FaultError::NoFaultId)?;
        Ok(Applied::Active(Box::new(Active::Host { agent, id, description: applied.description })))
    }
}
