//! Target resolution (what `--dry-run` prints) and fault application per target type.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chaos_agent::host::HostAgent;
use chaos_agent::policy::AgentPolicy;
use chaos_agent::spec::{CountSpec, FaultSpec};
use chaos_proxy::client::{Client, NewProxy};

use super::MethodContext;
use super::faults::{self, Active, DEADLINE_MARGIN};
use crate::experiment::checked::{Fault, StepKind};
use crate::experiment::faults::FaultParams;
use crate::experiment::model::{Count, Experiment, ProcessSelector, Step};

/// A target as resolved before anything runs.
#[derive(Clone)]
pub enum ResolvedTarget {
    Proxy {
        /// Boxed: a client (with its connection pool) is much larger than the other variant.
        client: Box<Client>,
        api: String,
        name: String,
        /// Whether this run created the proxy (and so deletes it at the end).
        create: Option<(String, String)>,
        /// The protocol to create it with (`tcp` when `None`).
        protocol: Option<String>,
    },
    Processes {
        selector: ProcessSelector,
        count: Option<Count>,
        /// Pids the selection resolves to now (the run re-resolves when the fault fires).
        pids: Vec<u32>,
    },
}

/// Every target of an experiment, resolved.
#[derive(Clone, Default)]
pub struct Plan {
    pub targets: BTreeMap<String, ResolvedTarget>,
    /// The agent that applies host faults (and pauses) on this host; started by [`Plan::start_host`] when the
    /// experiment has any.
    pub host: Option<HostAgent>,
}

/// Where the local agent keeps its undo journal, and the policy file limiting what it may do.
#[derive(Clone, Debug)]
pub struct HostOptions {
    pub state_dir: std::path::PathBuf,
    pub policy: Option<std::path::PathBuf>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions { state_dir: chaos_agent::journal::default_state_dir(), policy: None }
    }
}

impl HostOptions {
    /// The policy file's policy, or the built-in one.
    pub fn load_policy(&self) -> Result<AgentPolicy, String> {
        match &self.policy {
            Some(path) => AgentPolicy::load(path).map_err(|e| e.to_string()),
            None => Ok(AgentPolicy::default()),
        }
    }
}

impl Plan {
    /// Resolves the targets: proxy APIs are reached (and their proxies checked), process selectors are run
    /// through the agent's policy with the run's seed. Nothing is changed.
    pub async fn resolve(exp: &Experiment, seed: u64) -> Result<Plan, String> {
        let mut targets = BTreeMap::new();
        for (name, target) in &exp.targets {
            let resolved = if let Some(p) = &target.proxy {
                let client = Client::new(&p.api).map_err(|e| format!("target {name}: {e}"))?;
                client
                    .version()
                    .await
                    .map_err(|e| format!("target {name}: proxy API {} unreachable: {e}", p.api))?;
                let create = match (&p.listen, &p.upstream) {
                    (Some(listen), Some(upstream)) => Some((listen.clone(), upstream.clone())),
                    _ => {
                        client
                            .proxy(&p.name)
                            .await
                            .map_err(|e| format!("target {name}: proxy {}: {e}", p.name))?;
                        None
                    }
                };
                ResolvedTarget::Proxy {
                    client: Box::new(client),
                    api: p.api.clone(),
                    name: p.name.clone(),
                    protocol: p.protocol.clone(),
                    create,
                }
            } else if let Some(selector) = &target.processes {
                let pids = select(selector, target.count, seed).map_err(|e| format!("target {name}: {e}"))?;
                ResolvedTarget::Processes { selector: selector.clone(), count: target.count, pids }
            } else {
                return Err(format!("target {name} names neither a proxy nor processes"));
            };
            targets.insert(name.clone(), resolved);
        }
        Ok(Plan { targets, host: None })
    }

    /// Whether any step (method or rollbacks) needs the local agent: host faults and pauses do.
    pub fn needs_host(exp: &Experiment) -> bool {
        fn any(steps: &[Step]) -> bool {
            steps.iter().any(|step| match step.kind() {
                Ok(StepKind::Fault(f)) => matches!(f.params, FaultParams::Host(_) | FaultParams::Pause),
                Ok(StepKind::Parallel(inner)) => any(inner),
                _ => false,
            })
        }
        any(&exp.method) || any(&exp.rollbacks)
    }

    /// Checks every host fault against the agent policy (what `--dry-run` does instead of starting the agent).
    pub fn check_host_faults(exp: &Experiment, options: &HostOptions) -> Result<(), String> {
        let policy = options.load_policy()?;
        fn each(steps: &[Step], policy: &AgentPolicy) -> Result<(), String> {
            for step in steps {
                match step.kind() {
                    Ok(StepKind::Fault(f)) => {
                        if let FaultParams::Host(spec) = &f.params {
                            let lease = f.duration.map(|d| d.0 + DEADLINE_MARGIN);
                            policy.check(spec, lease).map_err(|e| format!("{}: {e}", step.label()))?;
                        }
                    }
                    Ok(StepKind::Parallel(inner)) => each(inner, policy)?,
                    _ => {}
                }
            }
            Ok(())
        }
        each(&exp.method, &policy)?;
        each(&exp.rollbacks, &policy)
    }

    /// Starts the local agent: opens its undo journal under `options.state_dir` and reverts what a previous
    /// process left there. Returns the left-overs it reverted, for the run to report.
    pub async fn start_host(&mut self, options: &HostOptions, seed: u64) -> Result<Vec<String>, String> {
        let policy = options.load_policy()?;
        let dir = options.state_dir.clone();
        let (agent, replay) = tokio::task::spawn_blocking(move || HostAgent::start(&dir, policy, seed))
            .await
            .map_err(|e| format!("starting the host agent: {e}"))?
            .map_err(|e| format!("starting the host agent: {e}"))?;
        let mut notes: Vec<String> = replay
            .reverted
            .iter()
            .map(|r| format!("reverted {} {} left by pid {}", r.fault_id, r.kind, r.owner.pid))
            .collect();
        notes.extend(
            replay.failed.iter().map(|(r, e)| format!("could not revert {} {}: {e}", r.fault_id, r.kind)),
        );
        self.host = Some(agent);
        Ok(notes)
    }

    /// The plan in words, for `--dry-run`: exactly what would be hit.
    pub fn describe(&self, exp: &Experiment) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "plan for {:?}", exp.title);
        for (name, target) in &self.targets {
            match target {
                ResolvedTarget::Proxy { api, name: proxy, create, .. } => {
                    let how = match create {
                        Some((listen, upstream)) => format!("created by the run: {listen} -> {upstream}"),
                        None => "existing".to_string(),
                    };
                    let _ = writeln!(out, "  target {name}: proxy {proxy} at {api} ({how})");
                }
                ResolvedTarget::Processes { pids, .. } => {
                    let _ = writeln!(out, "  target {name}: processes {pids:?}");
                }
            }
        }
        for load in &exp.load {
            let _ = writeln!(out, "  load {}: {} at {}", load.name, load.http.url, load.rate);
        }
        describe_steps(&mut out, &exp.method, 1);
        out
    }

    /// Creates the proxies the experiment declares with listen and upstream.
    pub async fn create_proxies(&self) -> Result<Vec<(Client, String)>, String> {
        let mut created = Vec::new();
        for target in self.targets.values() {
            if let ResolvedTarget::Proxy {
                client, name, create: Some((listen, upstream)), protocol, ..
            } = target
            {
                let proxy = NewProxy {
                    name: name.clone(),
                    listen: Some(listen.clone()),
                    upstream: upstream.clone(),
                    enabled: None,
                    half_close: None,
                };
                let options =
                    chaos_proxy::client::ProxyOptions { protocol: protocol.clone(), ..Default::default() };
                match client.create_proxy_with(&proxy, &options).await {
                    Ok(_) => created.push(((**client).clone(), name.clone())),
                    Err(e) => {
                        for (c, n) in &created {
                            let _ = c.delete_proxy(n).await;
                        }
                        return Err(format!("creating proxy {name}: {e}"));
                    }
                }
            }
        }
        Ok(created)
    }
}

fn describe_steps(out: &mut String, steps: &[Step], depth: usize) {
    for (i, step) in steps.iter().enumerate() {
        let indent = "  ".repeat(depth);
        let name = step.name.clone().unwrap_or_else(|| format!("step {}", i + 1));
        if let Some(wait) = step.wait {
            let _ = writeln!(out, "{indent}{name}: wait {wait}");
        } else if let Some(group) = &step.parallel {
            let _ = writeln!(out, "{indent}{name}: in parallel:");
            describe_steps(out, group, depth + 1);
        } else {
            let duration = step.duration.map(|d| format!(" for {d}")).unwrap_or_default();
            let with = if step.with.is_empty() {
                String::new()
            } else {
                format!(" with {}", serde_json::Value::Object(step.with.clone()))
            };
            let target = match step.kind() {
                Ok(StepKind::Fault(f)) => f.target.to_string(),
                _ => step.target.clone().unwrap_or_else(|| "?".into()),
            };
            let _ = writeln!(
                out,
                "{indent}{name}: {} on {target}{with}{duration}",
                step.fault.as_deref().unwrap_or("?")
            );
        }
    }
}

fn agent_count(count: Option<Count>) -> chaos_agent::Count {
    match count {
        None => chaos_agent::Count::Exactly(1),
        Some(Count::Exactly(n)) => chaos_agent::Count::Exactly(n),
        Some(Count::Percent(p)) => chaos_agent::Count::Percent(p.0),
    }
}

pub(crate) fn agent_selector(s: &ProcessSelector) -> chaos_agent::process::ProcessSelector {
    chaos_agent::process::ProcessSelector {
        name: s.name.clone(),
        cmdline: s.cmdline.clone(),
        pid: s.pid.and_then(|p| i32::try_from(p).ok()),
        pidfile: s.pidfile.clone().map(Into::into),
        user: s.user.clone(),
    }
}

fn select(selector: &ProcessSelector, count: Option<Count>, seed: u64) -> Result<Vec<u32>, String> {
    let policy = chaos_agent::process::Policy::default();
    chaos_agent::process::select(&agent_selector(selector), agent_count(count), seed, &policy)
        .map(|ids| ids.iter().filter_map(|id| u32::try_from(id.pid).ok()).collect())
        .map_err(|e| e.to_string())
}

/// Applies one fault step; returns what must be reverted (None for faults with no revert, like kill).
pub(crate) async fn apply(
    ctx: &MethodContext,
    step_name: &str,
    fault: &Fault<'_>,
) -> Result<Option<Active>, String> {
    let target = fault.target;
    let duration = fault.duration.map(|d| d.0);
    if let FaultParams::Host(spec) = &fault.params {
        return apply_on_host(ctx, spec, duration)
            .await
            .map(Some)
            .map_err(|e| format!("{} on {target}: {e}", fault.kind.name()));
    }
    let resolved = ctx.plan.targets.get(target).ok_or_else(|| format!("unknown target {target:?}"))?;
    match (resolved, &fault.params) {
        (
            ResolvedTarget::Proxy { client, name, .. },
            FaultParams::Toxic { toxic_type, stream, toxicity, attributes },
        ) => {
            let duration = duration.ok_or_else(|| format!("{toxic_type} on {target} needs a duration"))?;
            let stream = match stream {
                crate::experiment::faults::Stream::Upstream => chaos_proxy::client::Stream::Upstream,
                crate::experiment::faults::Stream::Downstream => chaos_proxy::client::Stream::Downstream,
            };
            let toxic = faults::ToxicFault { toxic_type, stream, toxicity: *toxicity, attributes };
            faults::add_toxic(client, name, step_name, toxic, duration).await.map(Some)
        }
        (ResolvedTarget::Proxy { client, name, .. }, FaultParams::Down) => {
            let duration = duration.ok_or_else(|| format!("down on {target} needs a duration"))?;
            faults::take_down(client, name, duration).await.map(Some)
        }
        (ResolvedTarget::Processes { selector, count, .. }, FaultParams::Kill { signal }) => {
            let policy = chaos_agent::process::Policy::default();
            let ids = chaos_agent::process::select(
                &agent_selector(selector),
                agent_count(*count),
                ctx.seed,
                &policy,
            )
            .map_err(|e| format!("{} on {target}: {e}", fault.kind.name()))?;
            let signal = chaos_agent::Signal::parse(&signal.to_string()).map_err(|e| e.to_string())?;
            let report =
                chaos_agent::faults::kill(&ids, signal).map_err(|e| format!("kill on {target}: {e}"))?;
            let hit: Vec<String> = report.signalled.iter().map(ToString::to_string).collect();
            ctx.note(
                "fault_injected",
                step_name,
                format!("{} sent to {}", report.signal, hit.join(", ")),
                Some(true),
            );
            Ok(None)
        }
        // Through the agent, so the pause is journaled: a runner killed mid-pause leaves a record that the next
        // start (or `chaos agent revert-all`) replays, resuming the processes.
        (ResolvedTarget::Processes { selector, count, .. }, FaultParams::Pause) => {
            let spec = FaultSpec::ProcessPause {
                target: agent_selector(selector),
                count: CountSpec(agent_count(*count)),
            };
            apply_on_host(ctx, &spec, duration).await.map(Some).map_err(|e| format!("pause on {target}: {e}"))
        }
        _ => Err(format!("fault {} does not apply to target {target}", fault.kind.name())),
    }
}

/// Applies `spec` through the local agent with a lease of `duration` plus the margin, off the async threads.
async fn apply_on_host(
    ctx: &MethodContext,
    spec: &FaultSpec,
    duration: Option<std::time::Duration>,
) -> Result<Active, String> {
    let agent = ctx.plan.host.clone().ok_or("the host agent was not started")?;
    let duration = duration.ok_or("a duration is needed")?;
    let lease = duration + DEADLINE_MARGIN;
    let (for_apply, spec) = (agent.clone(), spec.clone());
    let applied = tokio::task::spawn_blocking(move || for_apply.apply(&spec, Some(lease)))
        .await
        .map_err(|e| format!("the apply task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    let id = applied.id.ok_or("the agent returned no fault id")?;
    Ok(Active::Host { agent, id, description: applied.description })
}
