//! The experiment as written: plain serde data (`deny_unknown_fields`), with the checked value types of
//! `values.rs` ([`Duration`], [`Percent`], [`Rate`], re-exported here) that refuse bad values while parsing.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use super::values::*;

/// A whole experiment file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[schemars(title = "chaos experiment (apiVersion chaos/v1)")]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Must be `chaos/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub title: String,
    /// What the experiment expects to stay true while the faults run.
    #[serde(default)]
    pub hypothesis: Option<String>,
    /// `${name}` substitutions; `--var name=value` overrides; `${env:NAME}` reads the environment.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub targets: BTreeMap<String, Target>,
    #[serde(default)]
    pub load: Vec<Load>,
    #[serde(default)]
    pub slos: Vec<Slo>,
    #[serde(default)]
    pub steady_state: Vec<Probe>,
    #[serde(default)]
    pub method: Vec<Step>,
    #[serde(default)]
    pub guardrails: Option<Guardrails>,
    /// Refuse to start (inconclusive, exit 3) unless each gated SLO has at least `min_remaining` of its
    /// production error budget left, read from Prometheus before anything is touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_gate: Option<BudgetGate>,
    /// Extra steps run at the end, whatever happened; faults revert themselves regardless.
    #[serde(default)]
    pub rollbacks: Vec<Step>,
    /// Seconds of signal before the method starts, for the baseline.
    #[serde(default)]
    pub baseline: Option<Duration>,
    /// How long after the last fault the signals may take to come back within SLO.
    #[serde(default)]
    pub recovery: Option<Duration>,
    /// Opt-in for a run that judges nothing (no `slos`, no `steady_state`): it passes when every fault
    /// applied and reverted. Without it such a run is inconclusive, since nothing checked the hypothesis;
    /// with SLOs or probes it is a contradiction, refused by validation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fire_and_forget: bool,
    /// The alerts that should catch this experiment's faults: each must fire within `within` of the first
    /// fault's injection, or the verdict fails "not detected".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
    /// What a failure means (a refuted hypothesis or a guardrail trip), for runs through a controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
}

/// Where firing alerts are read, and which ones are expected.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Detection {
    /// Prometheus base URL: firing alerts are read from its `ALERTS{alertstate="firing"}` series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// Alertmanager base URL: firing alerts are read from its API v2 (`/api/v2/alerts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<String>,
    /// The alert names (`alertname`) expected to fire.
    pub alerts: Vec<String>,
    /// How long after the first fault's injection each may take to fire.
    pub within: Duration,
}

/// What a failed run through the controller does besides failing.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnFailure {
    /// Open an incident, its timeline filled from the run and linked to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentTemplate>,
}

/// The incident a failed run opens.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentTemplate {
    /// `sev1` (worst) to `sev4`.
    pub severity: String,
    /// The incident's title; default: the experiment's title and the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The services affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Who leads the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commander: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responders: Vec<String>,
}

/// Something faults are applied to.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default)]
    pub proxy: Option<ProxyTarget>,
    #[serde(default)]
    pub processes: Option<ProcessSelector>,
    /// Agent label selector (`{ role: web }`), for runs through a controller (`chaos run --controller`). With
    /// `processes`: the processes are looked for on every connected agent whose labels all match (`count`
    /// then applies on each of those hosts); without it, on this host. Alone: the target is those agents
    /// themselves, for host faults (`cpu_stress`, `network_partition`, ...), and `count` picks how many of
    /// them (seeded).
    #[serde(default)]
    pub hosts: Option<BTreeMap<String, String>>,
    /// Kubernetes pods on the agents' nodes (`pods: { namespace: shop, labels: { app: cart } }`), found by each
    /// agent through its container runtime, for runs through a controller. With `hosts`, only those agents are
    /// asked; without, every connected agent. `count` picks how many of the matching pods (seeded); without
    /// it, every one. Host faults act inside the chosen pods' containers; `kill` stops each chosen container's
    /// main process, `pause` stops every process of the container.
    #[serde(default)]
    pub pods: Option<PodsTarget>,
    /// How many of the matched processes (or, for a `hosts` target, agents; for a `pods` target, pods) a fault
    /// hits: a number (`2`) or a percentage (`"50%"`).
    #[serde(default)]
    pub count: Option<Count>,
}

/// Which pods a `pods` target selects.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodsTarget {
    /// The pods' Kubernetes namespace.
    pub namespace: String,
    /// Labels every chosen pod has (as on the pod; the kubelet copies them onto its sandbox).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// One container of each pod by name; without it, every running container.
    #[serde(default)]
    pub container: Option<String>,
}

/// A proxy behind any Toxiproxy-compatible admin API. With `listen` and `upstream`, the run creates it and
/// deletes it at the end; without, it must exist.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyTarget {
    /// Admin API, e.g. `http://127.0.0.1:8474`.
    pub api: String,
    pub name: String,
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default)]
    pub upstream: Option<String>,
    /// With `listen`/`upstream`: `tcp` (default) or `http` (HTTP/1.1 and HTTP/2, L7 faults, per-request
    /// signals). Our proxy only; a real Toxiproxy ignores it.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// Local processes, by any combination of criteria (all must match).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessSelector {
    /// Exact process name (`comm`).
    #[serde(default)]
    pub name: Option<String>,
    /// Regular expression over the full command line.
    #[serde(default)]
    pub cmdline: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub pidfile: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// Traffic the run generates itself, so CI runs have signal.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Load {
    pub name: String,
    pub http: HttpRequest,
    /// Fixed arrival rate, e.g. `50/s` (open loop: slow answers do not slow the sender).
    pub rate: Rate,
    /// Per-request timeout (default 5s); a timeout counts as an error.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    pub url: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
}

/// A service level objective judged over the run: spelled out (`name`, `signal`, objective, `source`), or a
/// reference to an SLO definition (`use: service/name`, from `file:` or the controller's SLO registry) whose
/// objective, latency threshold and signal come from that definition.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Required unless `use` (then it defaults to the referenced id, `service/name`).
    #[serde(default)]
    pub name: String,
    /// Required unless `use` (then it comes from the referenced SLI: events are `errors`, a latency SLI is
    /// `latency`).
    #[serde(default)]
    pub signal: Signal,
    /// Fraction of good events required, e.g. `99.5%`. Percentile syntax `p99` is accepted for latency.
    #[serde(default)]
    pub objective: Option<Percent>,
    /// Latency threshold (`signal: latency`), e.g. `800ms`.
    #[serde(default)]
    pub threshold: Option<Duration>,
    /// `p99 < 800ms` style: read as objective 99% with threshold 800ms.
    #[serde(default)]
    pub percentile: Option<String>,
    /// Traffic: minimum rate as a fraction of the baseline (`50%`).
    #[serde(default)]
    pub min: Option<Percent>,
    /// Saturation: the ceiling the peak sample must stay at or below (`90%`; above 100% for `host: load`).
    #[serde(default)]
    pub max: Option<Ceiling>,
    /// Where the events come from. Required unless `use` with `prometheus`.
    #[serde(default)]
    pub source: Source,
    /// An SLO definition by id (`service/name`): its objective and latency threshold judge this run (an
    /// `objective`, `threshold` or `percentile` here is refused: one definition).
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// With `use`: the SLO file holding it, relative to the experiment file. Without `file`, the id is looked
    /// up in the controller's SLO registry (`chaos slo apply`), for runs through a controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// With `use`, instead of `source`: judge the run on the SLO's own PromQL, polled from this Prometheus
    /// (`http://prometheus:9090`) as good and total counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// With `use`: the definition resolved when the experiment was checked (never read from or written to a
    /// file), so checking the document again does not read the SLO file again.
    #[serde(skip)]
    pub(crate) definition: Option<crate::slo_file::model::SloDef>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Latency,
    /// What an SLO without `signal` deserialises as; validation refuses a spelled-out SLO without `signal`.
    #[default]
    Errors,
    Traffic,
    Saturation,
}

/// Where an SLO's events or samples come from: exactly one of `load`, `proxy`, `prometheus`, `host` or
/// `processes` (the last with `metric`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A `load` entry by name.
    #[serde(default)]
    pub load: Option<String>,
    /// A proxy target by name (its live stats).
    #[serde(default)]
    pub proxy: Option<String>,
    #[serde(default)]
    pub prometheus: Option<PrometheusSource>,
    /// This host, sampled every second, for saturation: `cpu` (busy share of all CPUs), `memory`
    /// (`1 − MemAvailable/MemTotal`) or `load` (1-minute load average per CPU, above 100% when more tasks are
    /// runnable than there are CPUs).
    #[serde(default)]
    pub host: Option<String>,
    /// With `host`, through a controller: a `hosts` target by name. The metric is then read from the
    /// heartbeats of that target's agents (once a second), and each sample is the highest among them (the
    /// most saturated host).
    #[serde(default)]
    pub target: Option<String>,
    /// A `processes` target by name, for saturation: every second its selector is re-resolved on this host
    /// and `metric` is summed over all the processes it matches.
    #[serde(default)]
    pub processes: Option<String>,
    /// With `processes`: `cpu` (their CPU summed, as a share of all this host's CPUs: 100% is the whole
    /// machine busy) or `memory` (their resident memory summed, as a share of MemTotal).
    #[serde(default)]
    pub metric: Option<String>,
}

/// PromQL good/total counters, or a ratio query.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSource {
    pub url: String,
    #[serde(default)]
    pub good: Option<String>,
    #[serde(default)]
    pub total: Option<String>,
    #[serde(default)]
    pub ratio: Option<String>,
}

/// A check that must pass before and after the method.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub name: String,
    #[serde(default)]
    pub http: Option<HttpProbe>,
    #[serde(default)]
    pub tcp: Option<TcpProbe>,
    #[serde(default)]
    pub command: Option<CommandProbe>,
    #[serde(default)]
    pub prometheus: Option<PrometheusProbe>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    pub url: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    /// The body must contain this text.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// The answer must come within this long (else the probe fails).
    #[serde(default)]
    pub max_latency: Option<Duration>,
    #[serde(default)]
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    pub address: String,
    #[serde(default)]
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandProbe {
    /// Program and arguments (no shell).
    pub run: Vec<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub output_contains: Option<String>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Run it on this agent (by id) instead of the host running the experiment: through a controller
    /// (`chaos run --controller`), under that agent's policy (`probe_commands` must allow the command).
    #[serde(default)]
    pub agent: Option<String>,
    /// Run it on every connected agent whose labels all match (`{ role: web }`); it passes only if it passes on
    /// each of them. Through a controller, under each agent's policy, like `agent`.
    #[serde(default)]
    pub hosts: Option<BTreeMap<String, String>>,
}

impl CommandProbe {
    /// Whether it runs on the host running the experiment (neither `agent` nor `hosts`).
    pub fn is_local(&self) -> bool {
        self.agent.is_none() && self.hosts.is_none()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusProbe {
    pub url: String,
    pub query: String,
    /// The instant result compared with a bound: one of `<`, `<=`, `>`, `>=`, `==`, with `value`.
    pub op: String,
    pub value: f64,
}

/// One method or rollback step: a fault, a wait, or a parallel group (exactly one).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::reference::with_schemas)]
pub struct Step {
    #[serde(default)]
    pub name: Option<String>,
    /// The fault kind (the schema lists them, from the fault tables).
    #[serde(default)]
    pub fault: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    /// Fault parameters: the owner's fields of the fault kind (a toxic's attributes plus `stream` and
    /// `toxicity`, an agent fault spec's fields, kill's `signal`).
    #[serde(default, rename = "with")]
    pub with: Map<String, Value>,
    /// How long the fault stays; it is reverted after (and its lease expires by then regardless).
    #[serde(default)]
    pub duration: Option<Duration>,
    #[serde(default)]
    pub wait: Option<Duration>,
    #[serde(default)]
    pub parallel: Option<Vec<Step>>,
    /// The fault's kind and parameters, checked once by [`super::parse`] (never read from or written to a file):
    /// [`Step::kind`] hands them out without parsing `fault:` and `with:` again.
    #[serde(skip)]
    pub(crate) checked: Option<super::faults::CheckedFault>,
}

/// Limits that abort the run before real damage.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// Fraction of events allowed to be bad during the whole run before aborting (error budget allowance).
    #[serde(default)]
    pub budget: Option<Percent>,
    #[serde(default)]
    pub tripwire: Option<Tripwire>,
    /// Abort when traffic falls below this fraction of the baseline rate.
    #[serde(default)]
    pub min_traffic: Option<Percent>,
    /// Abort when a source gives no data for this long.
    #[serde(default)]
    pub no_data: Option<Duration>,
    /// Abort when a referenced SLO's fast-burn page condition holds in production (both windows of a page
    /// row of its alerting table above the row's burn rate), read from Prometheus while the method runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_burn: Option<SloBurn>,
}

/// The budget gate: each gated SLO's error budget left over its period, read before preflight.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetGate {
    /// The Prometheus holding the SLOs' production series, e.g. `http://prometheus:9090`.
    pub prometheus: String,
    /// The least share of the error budget that must be left, e.g. `25%`.
    pub min_remaining: Percent,
    /// SLO ids (`service/name`) among the experiment's `use:` references; every referenced SLO when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slos: Vec<String>,
}

/// The production burn-rate guardrail: the page rows of each watched SLO, read every `every` while the
/// method runs; the first row whose long and short windows both burn above its threshold aborts the run.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SloBurn {
    /// The Prometheus holding the SLOs' production series.
    pub prometheus: String,
    /// SLO ids (`service/name`) among the experiment's `use:` references; every referenced SLO when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slos: Vec<String>,
    /// How often the burn rates are read (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// How long Prometheus may fail to answer before the guardrail fails closed and aborts (default 15s;
    /// windows without data are not an error: no traffic burns no budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<Duration>,
}

/// Multi-window burn-rate tripwire: abort when both the window and window/12 burn faster than `burn_rate`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tripwire {
    pub window: Duration,
    pub burn_rate: f64,
}
