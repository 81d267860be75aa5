//! Target resolution (what `--dry-run` prints) and fault application per target type.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;

use chaos_agent::host::HostAgent;
use chaos_agent::policy::AgentPolicy;
use chaos_agent::spec::{CountSpec, FaultSpec};
use chaos_proxy_api::client::Client;

use super::error::EngineError;
use super::remote::{PodRef, Remote};
use crate::deadline::DEADLINE_MARGIN;
use crate::experiment::checked::Fault;
use crate::experiment::faults::FaultParams;
use crate::experiment::model::{Count, ProcessSelector};
use crate::experiment::{Checked, CheckedKind, CheckedStep};

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
        /// The processes the selection resolves to now (the run re-resolves when the fault fires).
        chosen: Vec<chaos_agent::process::ProcessId>,
    },
    /// Processes on other hosts (`processes` with `hosts`): looked for on every agent listed, through the
    /// controller; `count` applies on each host.
    RemoteProcesses { selector: ProcessSelector, count: Option<Count>, agents: Vec<String> },
    /// Agents chosen by label (`hosts` alone): host faults apply on each of them, through the controller.
    Hosts { selector: BTreeMap<String, String>, agents: Vec<String> },
    /// Pods on the agents' nodes (`pods`), chosen now with the seed among those the agents listed.
    Pods { selector: chaos_agent::pods::PodSelector, chosen: Vec<ChosenPod> },
}

/// A pod a `pods` target chose: the agent on its node, and the pod as that agent listed it.
#[derive(Clone, Debug)]
pub struct ChosenPod {
    pub agent: String,
    pub pod: chaos_agent::pods::Pod,
}

/// One application of a remote fault: the agent, the container of a pod target if any, the spec it gets.
pub(crate) type RemoteUnit = (String, Option<PodRef>, FaultSpec);

/// Every target of an experiment, resolved.
#[derive(Clone, Default)]
pub struct Plan {
    pub targets: BTreeMap<String, ResolvedTarget>,
    /// The agent that applies host faults (and pauses) on this host; started by [`Plan::start_host`] when the
    /// experiment has any.
    pub host: Option<HostAgent>,
    /// The remote hosts, for targets on other hosts (runs through a controller).
    pub remote: Option<Remote>,
    /// The run's own id: every run-scoped name (toxics, remote fault ids) derives from it, so two runs of the
    /// same experiment at once never collide. The controller's run id, or a fresh one per plan.
    pub run_id: String,
    /// What each agent said it would do, per step (filled by [`Plan::check_remote`]).
    pub remote_plan: Vec<String>,
    /// What the local agent would do, per step (filled by [`Plan::check_local`]).
    pub local_plan: Vec<String>,
    /// Where the run journals proxies it creates on servers that cannot expire them; the agent's default
    /// state directory when `None`.
    pub state_dir: Option<std::path::PathBuf>,
}

/// What stops a run before anything is touched, naming the target or step: the experiment's fault (exit 2: a
/// value, path, device or regex that is wrong, a selector the policy never allows, a proxy name the API does
/// not have, a label selector without a controller) or the environment's (exit 3: an API that is down, no
/// process or agent matching now, a missing capability, a system call that failed). The rule: if running the
/// same file again, unchanged, could succeed once the host changes, it is the environment's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    File(String),
    Environment(String),
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
    pub fn load_policy(&self) -> Result<AgentPolicy, chaos_agent::AgentError> {
        match &self.policy {
            Some(path) => AgentPolicy::load(path),
            None => Ok(AgentPolicy::default()),
        }
    }
}

impl Plan {
    /// Resolves the targets: proxy APIs are reached (and their proxies checked), process selectors are run
    /// through the agent's policy with the run's seed. Nothing is changed.
    pub async fn resolve(exp: &Checked, seed: u64) -> Result<Plan, CheckError> {
        Plan::resolve_with(exp, seed, None).await
    }

    /// [`Plan::resolve`] with a fleet for targets on other hosts (`hosts:` label selectors): the agents are
    /// chosen now, among those connected, with the seed.
    pub async fn resolve_with(exp: &Checked, seed: u64, remote: Option<Remote>) -> Result<Plan, CheckError> {
        let mut targets = BTreeMap::new();
        for (name, target) in &exp.targets {
            if let Some(pods) = &target.pods {
                let Some(remote) = &remote else {
                    return Err(CheckError::File(format!(
                        "target {name} selects pods (`pods`): run it through a controller (`chaos run --controller \
                         URL`) whose agents run on the pods' nodes"
                    )));
                };
                let selector = chaos_agent::pods::PodSelector {
                    namespace: pods.namespace.clone(),
                    labels: pods.labels.clone(),
                    container: pods.container.clone(),
                };
                let chosen = choose_pods(remote, name, target.hosts.as_ref(), &selector, seed, target.count)
                    .await
                    .map_err(CheckError::Environment)?;
                targets.insert(name.clone(), ResolvedTarget::Pods { selector, chosen });
                continue;
            }
            if let Some(labels) = &target.hosts {
                let Some(remote) = &remote else {
                    return Err(CheckError::File(format!(
                        "target {name} selects hosts by label (`hosts`): run it through a controller \
                         (`chaos run --controller URL`)"
                    )));
                };
                let agents = choose_agents(
                    remote,
                    name,
                    labels,
                    seed,
                    target.processes.is_none().then_some(target.count),
                )
                .map_err(CheckError::Environment)?;
                let resolved = match &target.processes {
                    Some(selector) => ResolvedTarget::RemoteProcesses {
                        selector: selector.clone(),
                        count: target.count,
                        agents,
                    },
                    None => ResolvedTarget::Hosts { selector: labels.clone(), agents },
                };
                targets.insert(name.clone(), resolved);
                continue;
            }
            let resolved = if let Some(p) = &target.proxy {
                let client =
                    Client::new(&p.api).map_err(|e| CheckError::File(format!("target {name}: {e}")))?;
                client.version().await.map_err(|e| {
                    CheckError::Environment(format!("target {name}: proxy API {} unreachable: {e}", p.api))
                })?;
                let create = match (&p.listen, &p.upstream) {
                    (Some(listen), Some(upstream)) => Some((listen.clone(), upstream.clone())),
                    _ => {
                        match client.proxy(&p.name).await {
                            Ok(_) => {}
                            // The API answered: a proxy it does not have is a name the file gets wrong.
                            Err(e) if e.is_not_found() => {
                                return Err(CheckError::File(format!(
                                    "target {name}: the proxy API {} has no proxy named {:?} ({}); give \
                                     `listen` and `upstream` for the run to create it",
                                    p.api,
                                    p.name,
                                    known_proxies(&client).await
                                )));
                            }
                            Err(e) => {
                                return Err(CheckError::Environment(format!(
                                    "target {name}: proxy {}: {e}",
                                    p.name
                                )));
                            }
                        }
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
                let chosen =
                    select(selector, target.count, seed).map_err(|e| CheckError::of_target(name, &e))?;
                ResolvedTarget::Processes { selector: selector.clone(), count: target.count, chosen }
            } else {
                return Err(CheckError::File(format!("target {name} names neither a proxy nor processes")));
            };
            targets.insert(name.clone(), resolved);
        }
        let run_id = remote.as_ref().map_or_else(new_run_id, |r| r.run_id.clone());
        Ok(Plan {
            targets,
            host: None,
            remote,
            run_id,
            remote_plan: Vec::new(),
            local_plan: Vec::new(),
            state_dir: None,
        })
    }

    /// Where command probes with `agent` or `hosts` run: the remote hosts, when there are some.
    pub fn probe_agents(&self) -> Option<&dyn crate::probes::Agents> {
        self.remote.as_ref().map(|r| r.hosts.as_ref() as &dyn crate::probes::Agents)
    }

    /// Every pod the plan's `pods` targets chose, as `namespace/name on agent`.
    pub fn pods(&self) -> Vec<String> {
        let mut pods: Vec<String> = self
            .targets
            .values()
            .flat_map(|t| match t {
                ResolvedTarget::Pods { chosen, .. } => chosen
                    .iter()
                    .map(|c| format!("{}/{} on {}", c.pod.namespace, c.pod.name, c.agent))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        pods.sort();
        pods.dedup();
        pods
    }

    /// Every agent the plan would touch, by id.
    pub fn agents(&self) -> Vec<String> {
        let mut agents: Vec<String> = self
            .targets
            .values()
            .flat_map(|t| match t {
                ResolvedTarget::RemoteProcesses { agents, .. } | ResolvedTarget::Hosts { agents, .. } => {
                    agents.clone()
                }
                ResolvedTarget::Pods { chosen, .. } => chosen.iter().map(|c| c.agent.clone()).collect(),
                _ => Vec::new(),
            })
            .collect();
        agents.sort();
        agents.dedup();
        agents
    }

    /// Every proxy the run creates or a step (method or rollbacks) would fault, as `(API URL, proxy name)`,
    /// sorted: what a controller locks, as it locks agents, so two runs never fault the same proxy at once.
    pub fn held_proxies(&self, exp: &Checked) -> Vec<(String, String)> {
        let mut steps = Vec::new();
        collect_steps(exp.method(), "", &mut steps);
        collect_steps(exp.rollbacks(), ROLLBACK, &mut steps);
        let mut proxies: Vec<(String, String)> = steps
            .into_iter()
            .filter_map(|(_, step)| match step.kind() {
                CheckedKind::Fault(fault) => match self.targets.get(fault.target) {
                    Some(ResolvedTarget::Proxy { api, name, .. }) => Some((api.clone(), name.clone())),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        proxies.extend(self.targets.values().filter_map(|target| match target {
            ResolvedTarget::Proxy { api, name, create: Some(_), .. } => Some((api.clone(), name.clone())),
            _ => None,
        }));
        proxies.sort();
        proxies.dedup();
        proxies
    }

    /// Asks every agent a remote step would touch what it would do (its policy and capabilities are checked
    /// there; nothing changes) and keeps the answers for [`Plan::describe`]. The first refusal is the error:
    /// a run must not start when one of its faults would be refused half-way.
    pub async fn check_remote(&mut self, exp: &Checked, seed: u64) -> Result<(), EngineError> {
        let Some(remote) = self.remote.clone() else { return Ok(()) };
        let mut steps = Vec::new();
        collect_steps(exp.method(), "", &mut steps);
        collect_steps(exp.rollbacks(), ROLLBACK, &mut steps);
        let mut lines = Vec::new();
        for (number, step) in steps {
            let CheckedKind::Fault(fault) = step.kind() else { continue };
            let Some(units) = self.remote_spec(&fault) else { continue };
            let duration = fault.duration.map(|d| d.0);
            let mut checks = tokio::task::JoinSet::new();
            for (agent, pod, spec) in units {
                let json = serde_json::to_string(&spec)
                    .map_err(|e| EngineError::Plan { step: step.label(), reason: e.to_string() })?;
                let hosts = remote.hosts.clone();
                checks.spawn(async move {
                    let answer = hosts.plan(&agent, &json, duration, seed, pod.as_ref()).await;
                    (agent, answer)
                });
            }
            let mut answers = checks.join_all().await;
            answers.sort_by(|a, b| a.0.cmp(&b.0));
            for (agent, answer) in answers {
                match answer {
                    Ok(text) => lines.push(format!("{number} {}: on {agent}: {text}", step.label())),
                    Err(e) => return Err(EngineError::Plan { step: step.label(), reason: e.to_string() }),
                }
            }
        }
        self.remote_plan = lines;
        Ok(())
    }

    /// For a fault step on other hosts: each application (the agent, the pod container if the target is a
    /// `pods` one, the spec it gets).
    pub(crate) fn remote_spec(&self, fault: &Fault<'_>) -> Option<Vec<RemoteUnit>> {
        let each = |agents: &[String], spec: FaultSpec| -> Vec<RemoteUnit> {
            agents.iter().map(|a| (a.clone(), None, spec.clone())).collect()
        };
        match (self.targets.get(fault.target)?, &fault.params) {
            (ResolvedTarget::Hosts { agents, .. }, FaultParams::Host(spec)) => {
                Some(each(agents, spec.clone()))
            }
            (ResolvedTarget::RemoteProcesses { selector, count, agents }, FaultParams::Kill { signal }) => {
                let spec = FaultSpec::ProcessKill {
                    target: agent_selector(selector),
                    count: CountSpec(agent_count(*count)),
                    signal: signal.to_string(),
                };
                Some(each(agents, spec))
            }
            (ResolvedTarget::RemoteProcesses { selector, count, agents }, FaultParams::Pause) => {
                let spec = FaultSpec::ProcessPause {
                    target: agent_selector(selector),
                    count: CountSpec(agent_count(*count)),
                };
                Some(each(agents, spec))
            }
            (ResolvedTarget::Pods { chosen, .. }, params) => Some(pod_units(chosen, params)),
            _ => None,
        }
    }

    /// Whether any step (method or rollbacks) needs the local agent: host faults and pauses do.
    pub fn needs_host(exp: &Checked) -> bool {
        fn any(exp: &Checked, steps: &[CheckedStep]) -> bool {
            steps.iter().any(|step| match step.kind() {
                CheckedKind::Fault(f) => is_local_host_fault(exp, &f),
                CheckedKind::Parallel(inner) => any(exp, inner),
                CheckedKind::Wait(_) => false,
            })
        }
        any(exp, exp.method()) || any(exp, exp.rollbacks())
    }

    /// The check pass before the first fault: every step that acts on this host (host faults, pauses and kills
    /// of local processes, in the method and the rollbacks) goes through the agent's plan — spec, policy,
    /// capabilities, devices, paths, targets — and nothing changes. With the local agent started
    /// ([`Plan::start_host`]) its policy and capabilities are used; without (a dry run, which must not replay
    /// the journal) the policy file is read and the capabilities probed. Returns what each step would do, for
    /// [`Plan::describe`]; the first refusal is the error, naming the step.
    pub async fn check_local(
        &mut self,
        exp: &Checked,
        seed: u64,
        options: &HostOptions,
    ) -> Result<(), CheckError> {
        let mut steps = Vec::new();
        collect_steps(exp.method(), "", &mut steps);
        collect_steps(exp.rollbacks(), ROLLBACK, &mut steps);
        let mut specs = Vec::new();
        for (number, step) in steps {
            let CheckedKind::Fault(fault) = step.kind() else { continue };
            if let Some((spec, lease)) = self.local_spec(exp, &fault) {
                specs.push((number, step.label(), spec, lease));
            }
        }
        if specs.is_empty() {
            return Ok(());
        }
        let host = self.host.clone();
        let policy = match &host {
            Some(agent) => agent.policy().clone(),
            None => options.load_policy().map_err(|e| CheckError::File(e.to_string()))?,
        };
        let lines = tokio::task::spawn_blocking(move || {
            // The probe makes a throwaway namespace: only when a network fault needs it.
            let network = specs.iter().any(|(_, _, spec, _)| {
                matches!(
                    spec,
                    FaultSpec::NetworkPartition(_)
                        | FaultSpec::NetworkLoss(_)
                        | FaultSpec::NetworkBandwidth(_)
                        | FaultSpec::NetworkLatency(_)
                )
            });
            let caps = match &host {
                Some(agent) => agent.capabilities().clone(),
                None if network => chaos_agent::net::Capabilities::probe(),
                None => chaos_agent::net::Capabilities::unprobed(),
            };
            let mut lines = Vec::new();
            for (number, label, spec, lease) in specs {
                match chaos_agent::host::plan(&policy, &caps, &spec, lease, seed) {
                    Ok(text) => lines.push(format!("{number} {label}: on this host: {text}")),
                    Err(e) => return Err(CheckError::of(&label, &e)),
                }
            }
            Ok(lines)
        })
        .await
        .map_err(|e| CheckError::Environment(format!("the check task failed: {e}")))??;
        self.local_plan = lines;
        Ok(())
    }

    /// For a fault step on this host: the spec the local agent gets and the lease it is held for (a kill has
    /// none). Faults on proxies and other hosts are checked elsewhere.
    fn local_spec(&self, exp: &Checked, fault: &Fault<'_>) -> Option<(FaultSpec, Option<Duration>)> {
        let lease = fault.duration.map(|d| d.0 + DEADLINE_MARGIN);
        match (&fault.params, self.targets.get(fault.target)) {
            (FaultParams::Host(spec), _) if is_local_host_fault(exp, fault) => Some((spec.clone(), lease)),
            (FaultParams::Pause, Some(ResolvedTarget::Processes { selector, count, .. })) => {
                let spec = FaultSpec::ProcessPause {
                    target: agent_selector(selector),
                    count: CountSpec(agent_count(*count)),
                };
                Some((spec, lease))
            }
            (FaultParams::Kill { signal }, Some(ResolvedTarget::Processes { selector, count, .. })) => {
                let spec = FaultSpec::ProcessKill {
                    target: agent_selector(selector),
                    count: CountSpec(agent_count(*count)),
                    signal: signal.to_string(),
                };
                Some((spec, None))
            }
            _ => None,
        }
    }

    /// Starts the local agent: opens its undo journal under `options.state_dir` and reverts what a previous
    /// process left there. Returns the left-overs it reverted, for the run to report.
    pub async fn start_host(&mut self, options: &HostOptions, seed: u64) -> Result<Vec<String>, EngineError> {
        let policy = options.load_policy().map_err(|e| EngineError::Policy(e.to_string()))?;
        let dir = options.state_dir.clone();
        let (agent, replay) = tokio::task::spawn_blocking(move || HostAgent::start(&dir, policy, seed))
            .await
            .map_err(|e| EngineError::StartHost(e.to_string()))?
            .map_err(|e| EngineError::StartHost(e.to_string()))?;
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
    pub fn describe(&self, exp: &Checked) -> String {
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
                ResolvedTarget::Processes { chosen, .. } => {
                    let plural = if chosen.len() == 1 { "process" } else { "processes" };
                    let _ = writeln!(out, "  target {name}: {} {plural}", chosen.len());
                    for id in chosen {
                        let _ = writeln!(out, "    {}", describe_process(id));
                    }
                }
                ResolvedTarget::RemoteProcesses { agents, .. } => {
                    let _ = writeln!(out, "  target {name}: processes on agents {}", agents.join(", "));
                }
                ResolvedTarget::Hosts { selector, agents } => {
                    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let _ = writeln!(
                        out,
                        "  target {name}: agents {} (labels {})",
                        agents.join(", "),
                        labels.join(",")
                    );
                }
                ResolvedTarget::Pods { selector, chosen } => {
                    let plural = if chosen.len() == 1 { "pod" } else { "pods" };
                    let _ = writeln!(out, "  target {name}: {} {plural} ({selector})", chosen.len());
                    for ChosenPod { agent, pod } in chosen {
                        let netns = pod.netns.as_deref().unwrap_or("the node's network");
                        let _ = writeln!(
                            out,
                            "    pod {}/{} on agent {agent} (sandbox {}, ip {}, netns {netns})",
                            pod.namespace,
                            pod.name,
                            pod.sandbox_id.get(..13).unwrap_or(&pod.sandbox_id),
                            pod.ip
                        );
                        for c in &pod.containers {
                            let _ = writeln!(
                                out,
                                "      container {} (pid {}, cgroup {})",
                                c.name, c.pid, c.cgroup
                            );
                        }
                    }
                }
            }
        }
        for line in self.local_plan.iter().chain(&self.remote_plan) {
            let _ = writeln!(out, "  {line}");
        }
        for load in &exp.load {
            let _ = writeln!(out, "  load {}: {} at {}", load.name, load.http.url, load.rate);
        }
        for line in super::slo_gate::describe(exp) {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "  method:");
        describe_steps(&mut out, exp.method(), "", 2);
        if !exp.rollbacks.is_empty() {
            let _ = writeln!(out, "  rollbacks:");
            describe_steps(&mut out, exp.rollbacks(), ROLLBACK, 2);
        }
        out
    }

    /// Creates the proxies the experiment declares with listen and upstream: leased and renewed on `chaos
    /// proxy`, journaled elsewhere, replacing this experiment's own stale ones (see `run_proxies`). `notes`
    /// receives what was done about stale proxies.
    pub async fn create_proxies(
        &self,
        experiment: &str,
        notes: &mut Vec<String>,
    ) -> Result<super::run_proxies::CreatedProxies, EngineError> {
        let wanted = self
            .targets
            .values()
            .filter_map(|target| match target {
                ResolvedTarget::Proxy { client, api, name, create: Some((listen, upstream)), protocol } => {
                    Some(super::run_proxies::Wanted {
                        client,
                        api,
                        name,
                        listen,
                        upstream,
                        protocol: protocol.clone(),
                    })
                }
                _ => None,
            })
            .collect();
        let state_dir = self.state_dir.clone().unwrap_or_else(chaos_agent::journal::default_state_dir);
        super::run_proxies::create(wanted, experiment, state_dir, notes).await.map_err(EngineError::Proxies)
    }
}

/// A fresh run id for a plan made without a controller (whose runs have their own): six hex digits, enough
/// to tell apart the runs sharing one proxy at a time.
fn new_run_id() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// The proxies an API has, for a message about one it does not have.
async fn known_proxies(client: &Client) -> String {
    match client.proxies().await {
        Ok(proxies) if proxies.is_empty() => "it has none".into(),
        Ok(proxies) => format!("it has {}", proxies.keys().cloned().collect::<Vec<_>>().join(", ")),
        Err(e) => format!("listing its proxies failed: {e}"),
    }
}

// === impl CheckError ===

impl CheckError {
    /// Classifies why target `name`'s process selector did not resolve: a selector that is malformed or that
    /// the policy never allows is the file's (a regex, an unknown user, PID 1); one that matches nothing, or
    /// too few, now is the environment's.
    fn of_target(name: &str, e: &chaos_agent::AgentError) -> CheckError {
        CheckError::classify(format!("target {name}: {e}"), e)
    }

    /// The agent's errors that a change of the file, not of the host, would fix are the file's.
    fn classify(message: String, e: &chaos_agent::AgentError) -> CheckError {
        use chaos_agent::AgentError as E;
        match e {
            E::Invalid { .. } | E::Refused { .. } | E::TooMany { .. } | E::Forbidden { .. } => {
                CheckError::File(message)
            }
            _ => CheckError::Environment(message),
        }
    }

    /// Classifies the agent's refusal of step `label`.
    fn of(label: &str, e: &chaos_agent::AgentError) -> CheckError {
        CheckError::classify(format!("step {label}: {e}"), e)
    }

    /// Whether the experiment file is at fault (exit 2) rather than the environment (exit 3).
    pub fn is_file(&self) -> bool {
        matches!(self, CheckError::File(_))
    }
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::File(message) | CheckError::Environment(message) => f.write_str(message),
        }
    }
}

/// Every step numbered by its place (`2`, and `2.1` for the first step of group 2), its name beside the
/// number when it has one: `2.1 slow shop: latency on shop for 4s`.
fn describe_steps(out: &mut String, steps: &[CheckedStep], parent: &str, depth: usize) {
    for (i, step) in steps.iter().enumerate() {
        let indent = "  ".repeat(depth);
        let number = format!("{parent}{}", i + 1);
        let name = match &step.name {
            Some(name) => format!("{number} {name}:"),
            None => number.clone(),
        };
        match step.kind() {
            CheckedKind::Wait(wait) => {
                let _ = writeln!(out, "{indent}{name} wait {wait}");
            }
            CheckedKind::Parallel(group) => {
                let _ = writeln!(out, "{indent}{name} in parallel:");
                describe_steps(out, group, &format!("{number}."), depth + 1);
            }
            CheckedKind::Fault(f) => {
                let duration = f.duration.map(|d| format!(" for {d}")).unwrap_or_default();
                let with = if step.with.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", serde_json::Value::Object(step.with.clone()))
                };
                let _ = writeln!(
                    out,
                    "{indent}{name} {} on {}{with}{duration}",
                    step.fault.as_deref().unwrap_or("?"),
                    f.target
                );
            }
        }
    }
}

pub(crate) fn agent_count(count: Option<Count>) -> chaos_agent::Count {
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
        cgroup: None,
    }
}

fn select(
    selector: &ProcessSelector,
    count: Option<Count>,
    seed: u64,
) -> Result<Vec<chaos_agent::process::ProcessId>, chaos_agent::AgentError> {
    let policy = chaos_agent::process::Policy::default();
    chaos_agent::process::select(&agent_selector(selector), agent_count(count), seed, &policy)
}

/// The longest command line a dry run shows, in characters: enough for a program and its distinguishing
/// arguments, short enough for one terminal line.
const CMDLINE_SHOWN: usize = 100;

/// One chosen process, for the dry run: `pid 4242 (user www-data): nginx: worker process`.
fn describe_process(id: &chaos_agent::process::ProcessId) -> String {
    match chaos_agent::process::inspect(id) {
        Ok(info) => {
            // Kernel threads and some daemons have no command line: their name stands in, bracketed as ps does.
            let cmdline = if info.cmdline.is_empty() { format!("[{}]", info.comm) } else { info.cmdline };
            format!("pid {} (user {}): {}", id.pid, info.user, truncate(&cmdline, CMDLINE_SHOWN))
        }
        Err(e) => format!("pid {} ({e})", id.pid),
    }
}

/// `text` cut to at most `max` characters, `…` marking the cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Picks the agents a `hosts` target selects: every connected agent whose labels match, then `count` of them
/// (a number, or a percentage rounded up) by a seeded shuffle; `count: None` for processes targets (every
/// matching host), `Some(None)` for a hosts target without `count` (one agent).
fn choose_agents(
    remote: &Remote,
    target: &str,
    labels: &BTreeMap<String, String>,
    seed: u64,
    count: Option<Option<Count>>,
) -> Result<Vec<String>, String> {
    let mut matching = remote.matching(labels);
    matching.sort();
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if matching.is_empty() {
        let mut connected = remote.hosts.connected();
        connected.sort();
        let connected = if connected.is_empty() { "none".to_string() } else { connected.join(", ") };
        return Err(format!(
            "target {target}: no connected agent has the labels {} (connected: {connected})",
            wanted.join(",")
        ));
    }
    let n = match count {
        None => matching.len(),
        Some(None) => 1,
        Some(Some(Count::Exactly(n))) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > matching.len() {
                return Err(format!(
                    "target {target}: count {n} but only {} connected agents have the labels {}",
                    matching.len(),
                    wanted.join(",")
                ));
            }
            n
        }
        Some(Some(Count::Percent(p))) => {
            ((matching.len() as f64 * p.0 / 100.0).ceil() as usize).clamp(1, matching.len())
        }
    };
    // The target's name is mixed into the seed so two targets over the same agents pick independently.
    let mixed = target.bytes().fold(seed, |h, b| h.rotate_left(5) ^ u64::from(b));
    let mut rng = rand::rngs::StdRng::seed_from_u64(mixed);
    matching.shuffle(&mut rng);
    matching.truncate(n);
    matching.sort();
    Ok(matching)
}

/// A fault on each chosen pod: per container for process faults and stress (a kill stops the container's
/// main process, a pause every process of it), once per pod for network faults (a pod has one network
/// namespace).
fn pod_units(chosen: &[ChosenPod], params: &FaultParams) -> Vec<RemoteUnit> {
    let mut units = Vec::new();
    for ChosenPod { agent, pod } in chosen {
        for (i, container) in pod.containers.iter().enumerate() {
            let spec = match params {
                FaultParams::Kill { signal } => FaultSpec::ProcessKill {
                    target: chaos_agent::process::ProcessSelector {
                        pid: Some(container.pid),
                        ..Default::default()
                    },
                    count: CountSpec(chaos_agent::Count::Exactly(1)),
                    signal: signal.to_string(),
                },
                FaultParams::Pause => FaultSpec::ProcessPause {
                    // The cgroup alone (added by the agent) selects every process of the container.
                    target: chaos_agent::process::ProcessSelector::default(),
                    count: CountSpec(chaos_agent::Count::Percent(1.0)),
                },
                FaultParams::Host(spec) if spec.kind().is_network() && i > 0 => continue,
                FaultParams::Host(spec) => spec.clone(),
                _ => continue,
            };
            let pod_ref = PodRef {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                sandbox_id: pod.sandbox_id.clone(),
                container: container.name.clone(),
            };
            units.push((agent.clone(), Some(pod_ref), spec));
        }
    }
    units
}

/// Asks every agent in scope (those with `hosts` labels, or every connected one) for its pods matching
/// `selector`, then chooses `count` of them (all without it) with the seed.
async fn choose_pods(
    remote: &Remote,
    target: &str,
    hosts: Option<&BTreeMap<String, String>>,
    selector: &chaos_agent::pods::PodSelector,
    seed: u64,
    count: Option<Count>,
) -> Result<Vec<ChosenPod>, String> {
    let mut agents = match hosts {
        Some(labels) => remote.matching(labels),
        None => remote.hosts.connected(),
    };
    agents.sort();
    if agents.is_empty() {
        return Err(format!("target {target}: no connected agent to ask for {selector}"));
    }
    let mut asks = tokio::task::JoinSet::new();
    for agent in agents.clone() {
        let (hosts, selector) = (remote.hosts.clone(), selector.clone());
        asks.spawn(async move {
            let found = hosts.pods(&agent, &selector).await;
            (agent, found)
        });
    }
    let mut found = Vec::new();
    for (agent, answer) in asks.join_all().await {
        match answer {
            Ok(pods) => found.extend(pods.into_iter().map(|pod| ChosenPod { agent: agent.clone(), pod })),
            Err(e) => return Err(format!("target {target}: agent {agent} could not list its pods: {e}")),
        }
    }
    found.sort_by(|a, b| {
        (&a.pod.namespace, &a.pod.name, &a.agent).cmp(&(&b.pod.namespace, &b.pod.name, &b.agent))
    });
    if found.is_empty() {
        return Err(format!(
            "target {target}: no running pod matches {selector} on agents {}",
            agents.join(", ")
        ));
    }
    let n = match count {
        None => found.len(),
        Some(Count::Exactly(n)) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > found.len() {
                return Err(format!(
                    "target {target}: count {n} but only {} pods match {selector}",
                    found.len()
                ));
            }
            n
        }
        Some(Count::Percent(p)) => ((found.len() as f64 * p.0 / 100.0).ceil() as usize).clamp(1, found.len()),
    };
    let mixed = target.bytes().fold(seed, |h, b| h.rotate_left(5) ^ u64::from(b));
    let mut rng = rand::rngs::StdRng::seed_from_u64(mixed);
    found.shuffle(&mut rng);
    found.truncate(n);
    found.sort_by(|a, b| {
        (&a.pod.namespace, &a.pod.name, &a.agent).cmp(&(&b.pod.namespace, &b.pod.name, &b.agent))
    });
    Ok(found)
}

/// Whether a fault step acts on this host (through the local agent): host faults without a target, and
/// pauses of local processes.
fn is_local_host_fault(exp: &Checked, f: &Fault<'_>) -> bool {
    match f.params {
        FaultParams::Host(_) => f.target == crate::experiment::HOST_TARGET,
        FaultParams::Pause => {
            exp.targets.get(f.target).is_some_and(|t| t.hosts.is_none() && t.pods.is_none())
        }
        _ => false,
    }
}

/// How the steps of `rollbacks` are numbered, apart from the method's: `rollback 1`, `rollback 2.1`.
const ROLLBACK: &str = "rollback ";

/// Every step that is not a parallel group, with its number as [`Plan::describe`] shows it (`3.1`).
fn collect_steps<'a>(steps: &'a [CheckedStep], prefix: &str, out: &mut Vec<(String, &'a CheckedStep)>) {
    for (i, step) in steps.iter().enumerate() {
        let number = format!("{prefix}{}", i + 1);
        match step.kind() {
            CheckedKind::Parallel(inner) => collect_steps(inner, &format!("{number}."), out),
            _ => out.push((number, step)),
        }
    }
}
