//! Checked views of the model: the [`Checked`] experiment the engine accepts (its steps' kinds infallible,
//! [`CheckedStep`]), and which variant a step, target, source or probe is, an SLO's objective, a Prometheus
//! comparison. Those accessors on the serde model return `Err` with a message only for a document that did
//! not pass validation; for the experiment inside a [`Checked`] they always succeed.

use std::fmt;
use std::str::FromStr;

use super::faults::{self, CheckedFault, FaultKind, FaultParams, TargetType};
use super::model::{
    Ceiling, CommandProbe, Duration, Experiment, HttpProbe, Percent, ProcessSelector, PrometheusProbe,
    PrometheusSource, ProxyTarget, Signal, Slo, Source, Step, Target, TcpProbe,
};

// === steps ===

/// What a step is.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind<'a> {
    Fault(Fault<'a>),
    Wait(Duration),
    /// Steps that start together; the group ends when all have ended.
    Parallel(&'a [Step]),
}

/// What [`Fault::target`] says for host faults, which act on the host running the experiment.
pub const HOST_TARGET: &str = "this host";

/// A fault step, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault<'a> {
    pub kind: FaultKind,
    /// The name of the target in `targets:`.
    pub target: &'a str,
    /// How long the fault lasts (`None` only for `kill`).
    pub duration: Option<Duration>,
    pub params: FaultParams,
}

/// Checks every fault step of a validated experiment once and keeps the result on the step (for
/// [`Step::kind`]); validation has already reported every problem at its place. Then builds the checked
/// steps the engine reads ([`CheckedStep`]); `Err` names a step that still fails (a validation gap).
pub(super) fn check_steps(steps: &mut [Step]) -> Result<Vec<CheckedStep>, String> {
    for step in steps.iter_mut() {
        if let Some(inner) = &mut step.parallel {
            check_steps(inner)?;
        }
        step.checked = step.fault.as_deref().and_then(|fault| {
            let kind: FaultKind = fault.parse().ok()?;
            let params = faults::params(kind, &step.with).ok()?;
            Some(CheckedFault { kind, params })
        });
    }
    steps.iter().map(CheckedStep::new).collect()
}

/// A step of a [`Checked`] experiment: the step as written (its fields through `Deref`) and its kind,
/// checked once. Only checking an experiment makes one, so [`CheckedStep::kind`] cannot fail.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedStep {
    step: Step,
    kind: Resolved,
}

/// What a checked step is, owned.
#[derive(Clone, Debug, PartialEq)]
enum Resolved {
    Fault { kind: FaultKind, target: String, params: FaultParams },
    Wait(Duration),
    Parallel(Vec<CheckedStep>),
}

/// What a [`CheckedStep`] is.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckedKind<'a> {
    Fault(Fault<'a>),
    Wait(Duration),
    /// Steps that start together; the group ends when all have ended.
    Parallel(&'a [CheckedStep]),
}

impl CheckedStep {
    fn new(step: &Step) -> Result<CheckedStep, String> {
        let kind = match step.kind().map_err(|e| format!("step `{}`: {e}", step.label()))? {
            StepKind::Fault(Fault { kind, target, params, .. }) => {
                Resolved::Fault { kind, target: target.to_string(), params }
            }
            StepKind::Wait(wait) => Resolved::Wait(wait),
            StepKind::Parallel(inner) => {
                Resolved::Parallel(inner.iter().map(CheckedStep::new).collect::<Result<_, _>>()?)
            }
        };
        Ok(CheckedStep { step: step.clone(), kind })
    }

    /// Which kind of step this is, with the fault's parameters as checked when the experiment was.
    pub fn kind(&self) -> CheckedKind<'_> {
        match &self.kind {
            Resolved::Fault { kind, target, params } => CheckedKind::Fault(Fault {
                kind: *kind,
                target,
                duration: self.step.duration,
                params: params.clone(),
            }),
            Resolved::Wait(wait) => CheckedKind::Wait(*wait),
            Resolved::Parallel(steps) => CheckedKind::Parallel(steps),
        }
    }

    /// The step as written.
    pub fn step(&self) -> &Step {
        &self.step
    }
}

impl std::ops::Deref for CheckedStep {
    type Target = Step;
    fn deref(&self) -> &Step {
        &self.step
    }
}

/// An experiment that passed validation, its steps checked: what [`super::parse`], [`super::load`],
/// [`super::parse_with_env`] and [`super::check`] return, and the only experiment the engine and the server
/// accept. Its fields read through `Deref` (no `DerefMut`: it cannot change once checked); its steps'
/// kinds through [`Checked::method`] and [`Checked::rollbacks`].
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// With its SLO references resolved (signal, objective, threshold, source filled in).
    experiment: Experiment,
    /// As written, what it serialises as.
    written: Experiment,
    method: Vec<CheckedStep>,
    rollbacks: Vec<CheckedStep>,
    /// The SLO definitions its `use:` entries reference, in `slos:` order.
    slo_refs: Vec<super::SloRef>,
}

impl Checked {
    /// Checks the steps of a validated experiment (`Err`: a step that did not check, which validation let
    /// through).
    pub(super) fn new(
        mut experiment: Experiment,
        mut written: Experiment,
        slo_refs: Vec<super::SloRef>,
    ) -> Result<Checked, String> {
        let method = check_steps(&mut experiment.method)?;
        let rollbacks = check_steps(&mut experiment.rollbacks)?;
        // The document as written carries the same checked steps (`into_inner` hands it out).
        check_steps(&mut written.method)?;
        check_steps(&mut written.rollbacks)?;
        Ok(Checked { experiment, written, method, rollbacks, slo_refs })
    }

    /// The SLO definitions the experiment's `use:` entries reference, resolved when it was checked.
    pub fn slo_refs(&self) -> &[super::SloRef] {
        &self.slo_refs
    }

    /// The referenced definitions `ids` names, every referenced one when `ids` is empty (what `budget_gate`
    /// and `guardrails.slo_burn` watch).
    pub fn slo_defs(&self, ids: &[String]) -> Vec<&crate::slo_file::model::SloDef> {
        let mut seen = std::collections::BTreeSet::new();
        self.slo_refs
            .iter()
            .filter(|r| ids.is_empty() || ids.contains(&r.id))
            .filter(|r| seen.insert(r.id.clone()))
            .map(|r| &r.def)
            .collect()
    }

    /// The method's steps, checked.
    pub fn method(&self) -> &[CheckedStep] {
        &self.method
    }

    /// The rollbacks' steps, checked.
    pub fn rollbacks(&self) -> &[CheckedStep] {
        &self.rollbacks
    }

    /// The experiment as written (a serde document again; SLO references unresolved).
    pub fn into_inner(self) -> Experiment {
        self.written
    }
}

impl std::ops::Deref for Checked {
    type Target = Experiment;
    fn deref(&self) -> &Experiment {
        &self.experiment
    }
}

/// A checked experiment serialises as the document it was checked from.
impl serde::Serialize for Checked {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.written.serialize(serializer)
    }
}

/// The document as written (SLO references unresolved, their definitions carried): what it serialises as and
/// what [`super::check`] takes back to the same checked experiment. `Deref` reads the resolved one.
impl AsRef<Experiment> for Checked {
    fn as_ref(&self) -> &Experiment {
        &self.written
    }
}

impl Step {
    /// Which kind of step this is, with the fault's parameters as checked when the experiment was parsed
    /// (nothing is parsed again here). `Err` only for a step that did not come from [`super::parse`]; the engine
    /// reads [`CheckedStep::kind`], which cannot fail.
    pub fn kind(&self) -> Result<StepKind<'_>, String> {
        match (&self.fault, self.wait, &self.parallel) {
            (Some(fault), None, None) => {
                let Some(CheckedFault { kind, params }) = &self.checked else {
                    return Err(format!("fault `{fault}` was not checked (experiments come from `parse`)"));
                };
                let kind = *kind;
                let target = match (self.target.as_deref(), kind.target_type()) {
                    (None, TargetType::Host) => HOST_TARGET,
                    // A `hosts` target: the agents it selects, through a controller.
                    (Some(target), _) => target,
                    (None, _) => return Err(format!("fault `{kind}` needs a `target`")),
                };
                Ok(StepKind::Fault(Fault { kind, target, duration: self.duration, params: params.clone() }))
            }
            (None, Some(wait), None) => Ok(StepKind::Wait(wait)),
            (None, None, Some(steps)) => Ok(StepKind::Parallel(steps)),
            (None, None, None) => Err("a step needs one of `fault`, `wait` or `parallel`".into()),
            _ => Err("a step takes exactly one of `fault`, `wait` or `parallel`".into()),
        }
    }

    /// The step's name, or a description of it for reports (`latency on payments`, `wait 10s`).
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match (&self.fault, &self.target, self.wait, &self.parallel) {
            (Some(fault), Some(target), _, _) => format!("{fault} on {target}"),
            (Some(fault), None, _, _) => fault.clone(),
            (None, _, Some(wait), _) => format!("wait {wait}"),
            (None, _, None, Some(steps)) => format!("parallel ({} steps)", steps.len()),
            _ => "step".into(),
        }
    }
}

// === targets ===

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TargetKind<'a> {
    Proxy(&'a ProxyTarget),
    Processes(&'a ProcessSelector),
    /// Agents selected by their labels (`hosts: { role: web }` alone): host faults apply on each of them,
    /// through a controller.
    Hosts(&'a std::collections::BTreeMap<String, String>),
    /// Pods on the agents' nodes, through a controller.
    Pods(&'a super::model::PodsTarget),
}

impl Target {
    pub fn kind(&self) -> Result<TargetKind<'_>, String> {
        if let Some(pods) = &self.pods {
            return match (&self.proxy, &self.processes) {
                (None, None) => Ok(TargetKind::Pods(pods)),
                _ => Err("a `pods` target takes no `proxy` or `processes`".into()),
            };
        }
        match (&self.proxy, &self.processes) {
            (Some(proxy), None) => Ok(TargetKind::Proxy(proxy)),
            (None, Some(processes)) => Ok(TargetKind::Processes(processes)),
            (None, None) => match &self.hosts {
                Some(hosts) => Ok(TargetKind::Hosts(hosts)),
                None => Err("a target needs one of `proxy`, `processes`, `hosts` or `pods`".into()),
            },
            (Some(_), Some(_)) => {
                Err("a target takes exactly one of `proxy` or `processes`, found both".into())
            }
        }
    }

    pub fn target_type(&self) -> Option<TargetType> {
        match self.kind() {
            Ok(TargetKind::Proxy(_)) => Some(TargetType::Proxy),
            Ok(TargetKind::Processes(_)) => Some(TargetType::Processes),
            Ok(TargetKind::Hosts(_)) => Some(TargetType::Host),
            Ok(TargetKind::Pods(_)) => Some(TargetType::Pods),
            Err(_) => None,
        }
    }
}

impl ProcessSelector {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.cmdline.is_none()
            && self.pid.is_none()
            && self.pidfile.is_none()
            && self.user.is_none()
    }
}

// === SLO sources ===

/// A host resource, for saturation SLOs (`source: { host: ... }`). Every value is a fraction of the host's
/// capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostMetric {
    /// Busy share of all CPUs' time between two samples, `0..=1`.
    Cpu,
    /// `1 − MemAvailable/MemTotal`, `0..=1`.
    Memory,
    /// The 1-minute load average divided by the number of CPUs: above 1 (100%) when more tasks are runnable
    /// or waiting on I/O than there are CPUs.
    Load,
}

impl FromStr for HostMetric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(HostMetric::Cpu),
            "memory" => Ok(HostMetric::Memory),
            "load" => Ok(HostMetric::Load),
            other => Err(format!("unknown host metric {other:?} (expected cpu, memory or load)")),
        }
    }
}

/// What the processes of a target use, for saturation SLOs (`source: { processes: TARGET, metric: ... }`),
/// summed over every matching process and taken as a fraction of the whole host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessMetric {
    /// CPU time over wall time, as a share of all the host's CPUs: `1` is every CPU busy with them.
    Cpu,
    /// Resident set size over MemTotal.
    Memory,
}

impl FromStr for ProcessMetric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(ProcessMetric::Cpu),
            "memory" => Ok(ProcessMetric::Memory),
            other => Err(format!("unknown process metric {other:?} (expected cpu or memory)")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SourceKind<'a> {
    /// A `load:` entry by name.
    Load(&'a str),
    /// A proxy target by name.
    Proxy(&'a str),
    Prometheus(&'a PrometheusSource),
    Host(HostMetric),
    /// `host` with `target`: the agents of a `hosts` target, from their heartbeats.
    Agents {
        target: &'a str,
        metric: HostMetric,
    },
    /// A `processes` target by name, and what of its processes is sampled.
    Processes {
        target: &'a str,
        metric: ProcessMetric,
    },
}

/// What [`Source::kind`] says when a source has none or several of its kinds.
const SOURCE_KINDS: &str = "`load`, `proxy`, `prometheus`, `host` or `processes`";

impl Source {
    pub fn kind(&self) -> Result<SourceKind<'_>, String> {
        let mut found = Vec::new();
        if let Some(load) = &self.load {
            found.push(SourceKind::Load(load));
        }
        if let Some(proxy) = &self.proxy {
            found.push(SourceKind::Proxy(proxy));
        }
        if let Some(prometheus) = &self.prometheus {
            found.push(SourceKind::Prometheus(prometheus));
        }
        match (&self.host, &self.target) {
            (Some(host), None) => found.push(SourceKind::Host(host.parse()?)),
            (Some(host), Some(target)) => found.push(SourceKind::Agents { target, metric: host.parse()? }),
            (None, Some(_)) => {
                return Err(
                    "`target` applies to a `host` source only (the agents of a `hosts` target)".into()
                );
            }
            (None, None) => {}
        }
        match (&self.processes, &self.metric) {
            (Some(target), Some(metric)) => {
                found.push(SourceKind::Processes { target, metric: metric.parse()? });
            }
            (Some(_), None) => return Err("a `processes` source needs `metric` (cpu or memory)".into()),
            (None, Some(_)) => return Err("`metric` applies to a `processes` source only".into()),
            (None, None) => {}
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!("a source needs one of {SOURCE_KINDS}")),
            _ => Err(format!("a source takes exactly one of {SOURCE_KINDS}")),
        }
    }
}

/// How a Prometheus source counts good and total events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PrometheusQuery<'a> {
    /// Two counters (PromQL), good and total.
    Counters { good: &'a str, total: &'a str },
    /// One PromQL expression giving the good/total ratio.
    Ratio(&'a str),
}

impl PrometheusSource {
    pub fn query(&self) -> Result<PrometheusQuery<'_>, String> {
        match (&self.good, &self.total, &self.ratio) {
            (Some(good), Some(total), None) => Ok(PrometheusQuery::Counters { good, total }),
            (None, None, Some(ratio)) => Ok(PrometheusQuery::Ratio(ratio)),
            _ => Err("a prometheus source needs either `good` and `total`, or `ratio`".into()),
        }
    }
}

// === SLOs ===

/// What an SLO requires, by signal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// At least `objective` of requests answer within `threshold`.
    Latency { objective: Percent, threshold: Duration },
    /// At least `objective` of requests succeed.
    Errors { objective: Percent },
    /// The rate stays at or above `min` of the baseline rate.
    Traffic { min: Percent },
    /// The resource stays at or below `max` (which may exceed 100%).
    Saturation { max: Ceiling },
}

impl Slo {
    /// The SLO's objective, reading `percentile: p99 < 800ms` as objective 99% with threshold 800 ms.
    pub fn objective(&self) -> Result<Objective, String> {
        let signal = self.signal;
        let extra = |fields: &[(&str, bool)]| -> Result<(), String> {
            match fields.iter().find(|(_, present)| *present) {
                Some((name, _)) => {
                    let signal = signal_name(signal);
                    let article = if signal.starts_with('e') { "an" } else { "a" };
                    Err(format!("`{name}` does not apply to {article} {signal} SLO"))
                }
                None => Ok(()),
            }
        };
        match signal {
            Signal::Latency => {
                extra(&[("min", self.min.is_some()), ("max", self.max.is_some())])?;
                match (&self.percentile, self.objective, self.threshold) {
                    (Some(p), None, None) => {
                        let (objective, threshold) = parse_percentile(p)?;
                        Ok(Objective::Latency { objective, threshold })
                    }
                    (Some(_), _, _) => Err("write either `percentile` or `objective` with `threshold`, not both".into()),
                    (None, Some(objective), Some(threshold)) => Ok(Objective::Latency { objective, threshold }),
                    (None, _, _) => Err(
                        "a latency SLO needs `threshold` and `objective` (or `percentile` like `p99 < 800ms`)".into(),
                    ),
                }
            }
            Signal::Errors => {
                extra(&[
                    ("threshold", self.threshold.is_some()),
                    ("percentile", self.percentile.is_some()),
                    ("min", self.min.is_some()),
                    ("max", self.max.is_some()),
                ])?;
                let objective = self.objective.ok_or("an errors SLO needs `objective` (like 99.5%)")?;
                Ok(Objective::Errors { objective })
            }
            Signal::Traffic => {
                extra(&[
                    ("objective", self.objective.is_some()),
                    ("threshold", self.threshold.is_some()),
                    ("percentile", self.percentile.is_some()),
                    ("max", self.max.is_some()),
                ])?;
                let min = self
                    .min
                    .ok_or("a traffic SLO needs `min` (a fraction of the baseline rate, like 50%)")?;
                Ok(Objective::Traffic { min })
            }
            Signal::Saturation => {
                extra(&[
                    ("objective", self.objective.is_some()),
                    ("threshold", self.threshold.is_some()),
                    ("percentile", self.percentile.is_some()),
                    ("min", self.min.is_some()),
                ])?;
                let max = self.max.ok_or("a saturation SLO needs `max` (like 90%)")?;
                Ok(Objective::Saturation { max })
            }
        }
    }

    /// The fraction of good events required and, for latency, the threshold of a good event; `None` for
    /// traffic and saturation SLOs (see [`Slo::objective`]).
    pub fn objective_and_threshold(&self) -> Option<(Percent, Option<Duration>)> {
        match self.objective().ok()? {
            Objective::Latency { objective, threshold } => Some((objective, Some(threshold))),
            Objective::Errors { objective } => Some((objective, None)),
            Objective::Traffic { .. } | Objective::Saturation { .. } => None,
        }
    }
}

pub(crate) fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Latency => "latency",
        Signal::Errors => "errors",
        Signal::Traffic => "traffic",
        Signal::Saturation => "saturation",
    }
}

/// Reads `p99 < 800ms` (also `p99.9 <= 1s`, `P50<200ms`) as objective 99% and threshold 800 ms.
pub fn parse_percentile(text: &str) -> Result<(Percent, Duration), String> {
    let bad = || format!("expected a percentile like `p99 < 800ms`, found {text:?}");
    let t = text.trim();
    let rest = t.strip_prefix(['p', 'P']).ok_or_else(bad)?;
    let op = rest.find('<').ok_or_else(bad)?;
    let number = rest[..op].trim();
    let threshold = rest[op + 1..].strip_prefix('=').unwrap_or(&rest[op + 1..]).trim();
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let objective: Percent = format!("{number}%").parse().map_err(|_| bad())?;
    if objective.0 <= 0.0 {
        return Err(format!("percentile p{number} must be above 0 and at most 100"));
    }
    let threshold: Duration =
        threshold.parse().map_err(|e: String| format!("in percentile {text:?}: {e}"))?;
    Ok((objective, threshold))
}

// === probes ===

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ProbeKind<'a> {
    Http(&'a HttpProbe),
    Tcp(&'a TcpProbe),
    Command(&'a CommandProbe),
    Prometheus(&'a PrometheusProbe),
}

impl super::model::Probe {
    pub fn kind(&self) -> Result<ProbeKind<'_>, String> {
        let mut found = Vec::new();
        if let Some(p) = &self.http {
            found.push(ProbeKind::Http(p));
        }
        if let Some(p) = &self.tcp {
            found.push(ProbeKind::Tcp(p));
        }
        if let Some(p) = &self.command {
            found.push(ProbeKind::Command(p));
        }
        if let Some(p) = &self.prometheus {
            found.push(ProbeKind::Prometheus(p));
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err("a probe needs one of `http`, `tcp`, `command` or `prometheus`".into()),
            _ => Err("a probe takes exactly one of `http`, `tcp`, `command` or `prometheus`".into()),
        }
    }
}

/// A Prometheus probe's comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Comparison {
    /// Whether `value op bound` holds.
    pub fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Comparison::Lt => value < bound,
            Comparison::Le => value <= bound,
            Comparison::Gt => value > bound,
            Comparison::Ge => value >= bound,
            Comparison::Eq => value == bound,
        }
    }
}

impl FromStr for Comparison {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "<" => Ok(Comparison::Lt),
            "<=" => Ok(Comparison::Le),
            ">" => Ok(Comparison::Gt),
            ">=" => Ok(Comparison::Ge),
            "==" => Ok(Comparison::Eq),
            other => Err(format!("unknown comparison {other:?} (expected one of <, <=, >, >=, ==)")),
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Eq => "==",
        })
    }
}

impl PrometheusProbe {
    pub fn comparison(&self) -> Result<Comparison, String> {
        self.op.parse()
    }
}

// === experiment ===

impl Experiment {
    /// Every step of the method, depth first (parallel groups, then their members).
    pub fn method_steps(&self) -> Vec<&Step> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for step in steps {
                out.push(step);
                if let Some(inner) = &step.parallel {
                    walk(inner, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.method, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let ms = |n| Duration(std::time::Duration::from_millis(n));
        assert_eq!(parse_percentile("p99 < 800ms"), Ok((Percent(0.99), ms(800))));
        assert_eq!(parse_percentile("P50<=200ms"), Ok((Percent(0.5), ms(200))));
        assert_eq!(parse_percentile(" p99.9 < 1s ").map(|(_, d)| d), Ok(ms(1000)));
        for bad in ["99 < 800ms", "p99 > 800ms", "p0 < 1s", "p101 < 1s", "p99 < soon", "p < 1s", "p-1 < 1s"] {
            assert!(parse_percentile(bad).is_err(), "{bad}");
        }
    }
}
