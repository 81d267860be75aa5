//! Semantic validation of a typed experiment: everything serde cannot see (exactly-one-of choices, references
//! between sections, fault kinds per target type, unique names). Every problem is collected, each at the
//! position of the node it is about, looked up in the positioned tree by path.

use std::collections::HashSet;

use super::checked::{
    HostMetric, ProcessMetric, PrometheusQuery, SourceKind, TargetKind, parse_percentile, signal_name,
};
use super::faults::{self, FaultKind, TargetType};
use super::model::{Count, Detection, Experiment, HttpRequest, Probe, Signal, Slo, Step, Target};
use super::node::{Node, Pos, Seg};

/// The API version this format is.
pub const API_VERSION: &str = "chaos/v1";

/// The longest `detection.within`: the run waits up to that long after the first fault for the alerts.
pub const MAX_DETECTION_WITHIN: std::time::Duration = std::time::Duration::from_secs(3600);
/// The most alerts one experiment's `detection` may expect.
const MAX_DETECTION_ALERTS: usize = 100;
/// The longest alert name accepted (Prometheus itself has no limit; no real alert name comes close).
const MAX_ALERT_NAME: usize = 256;

/// Returns every problem found, in file order.
pub fn validate(exp: &Experiment, root: &Node) -> Vec<(Pos, String)> {
    let mut v = Validator { root, errors: Vec::new(), step_names: HashSet::new() };
    if exp.api_version != API_VERSION {
        v.at(
            &[Seg::K("apiVersion")],
            format!("unsupported apiVersion {:?} (expected {API_VERSION})", exp.api_version),
        );
    }
    if exp.title.trim().is_empty() {
        v.at(&[Seg::K("title")], "`title` must not be empty".into());
    }
    v.on_failure(exp);
    for (name, target) in &exp.targets {
        v.target(name, target);
    }
    v.loads(exp);
    let mut names = HashSet::new();
    for (i, slo) in exp.slos.iter().enumerate() {
        let path = [Seg::K("slos"), Seg::I(i)];
        if !names.insert(slo.name.as_str()) {
            v.at(&[path[0], path[1], Seg::K("name")], format!("duplicate SLO name `{}`", slo.name));
        }
        // A reference the resolver could not fill in has its problems reported there already.
        let unresolved = slo.uses.is_some() && (slo.objective.is_none() || slo.source == Default::default());
        if !unresolved {
            v.slo(exp, slo, &path);
        }
    }
    let mut names = HashSet::new();
    for (i, probe) in exp.steady_state.iter().enumerate() {
        let path = [Seg::K("steady_state"), Seg::I(i)];
        if !names.insert(probe.name.as_str()) {
            v.at(&[path[0], path[1], Seg::K("name")], format!("duplicate probe name `{}`", probe.name));
        }
        v.probe(probe, &path);
    }
    for (section, steps) in [("method", &exp.method), ("rollbacks", &exp.rollbacks)] {
        for (i, step) in steps.iter().enumerate() {
            v.step(exp, step, &[Seg::K(section), Seg::I(i)]);
        }
    }
    if let Some(g) = &exp.guardrails {
        if let Some(t) = &g.tripwire {
            if !(t.burn_rate.is_finite() && t.burn_rate > 0.0) {
                v.at(
                    &[Seg::K("guardrails"), Seg::K("tripwire"), Seg::K("burn_rate")],
                    "`burn_rate` must be above 0".into(),
                );
            }
            if t.window.0.is_zero() {
                v.at(
                    &[Seg::K("guardrails"), Seg::K("tripwire"), Seg::K("window")],
                    "`window` must be above 0".into(),
                );
            }
        }
        if g.no_data.is_some_and(|d| d.0.is_zero()) {
            v.at(&[Seg::K("guardrails"), Seg::K("no_data")], "`no_data` must be above 0".into());
        }
    }
    if let Some(detection) = &exp.detection {
        v.detection(detection);
    }
    if exp.fire_and_forget && (!exp.slos.is_empty() || !exp.steady_state.is_empty()) {
        let judged = match (exp.slos.is_empty(), exp.steady_state.is_empty()) {
            (false, false) => "`slos` and `steady_state`",
            (false, true) => "`slos`",
            _ => "`steady_state`",
        };
        v.at(
            &[Seg::K("fire_and_forget")],
            format!(
                "`fire_and_forget: true` says the run judges nothing, but it has {judged}: remove one or the other"
            ),
        );
    }
    v.errors.sort_by_key(|(pos, _)| *pos);
    v.errors
}

struct Validator<'a> {
    root: &'a Node,
    errors: Vec<(Pos, String)>,
    step_names: HashSet<String>,
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

fn join<'a>(path: &[Seg<'a>], more: &[Seg<'a>]) -> Vec<Seg<'a>> {
    path.iter().chain(more).copied().collect()
}

fn declared<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() { "none is declared".into() } else { format!("declared: {}", names.join(", ")) }
}

impl Validator<'_> {
    /// An error at the value at `path`.
    fn at(&mut self, path: &[Seg<'_>], message: String) {
        self.errors.push((self.root.pos_at(path), message));
    }

    /// An error at the key that ends `path` (for "this key should not be here").
    fn at_key(&mut self, path: &[Seg<'_>], message: String) {
        self.errors.push((self.root.key_pos_at(path), message));
    }

    fn target(&mut self, name: &str, target: &Target) {
        let path = [Seg::K("targets"), Seg::K(name)];
        match target.kind() {
            Err(e) => self.at(&path, format!("target `{name}`: {e}")),
            Ok(TargetKind::Proxy(proxy)) => {
                for (field, present) in [("count", target.count.is_some()), ("hosts", target.hosts.is_some())]
                {
                    if present {
                        self.at_key(
                            &join(&path, &[Seg::K(field)]),
                            format!("target `{name}`: `{field}` applies to process targets only"),
                        );
                    }
                }
                let p = join(&path, &[Seg::K("proxy")]);
                self.http_url(&join(&p, &[Seg::K("api")]), &proxy.api, "`api`");
                if let Some(protocol) = &proxy.protocol
                    && !matches!(protocol.as_str(), "tcp" | "http")
                {
                    self.at(
                        &join(&p, &[Seg::K("protocol")]),
                        format!("`protocol` must be tcp or http, found {protocol:?}"),
                    );
                }
                if proxy.name.trim().is_empty() {
                    self.at(&join(&p, &[Seg::K("name")]), "the proxy `name` must not be empty".into());
                }
                match (&proxy.listen, &proxy.upstream) {
                    (Some(_), None) | (None, Some(_)) => {
                        self.at(&p, format!("target `{name}`: `listen` and `upstream` go together (both to create the proxy, neither to use an existing one)"));
                    }
                    _ => {}
                }
                for (field, value) in [("listen", &proxy.listen), ("upstream", &proxy.upstream)] {
                    if let Some(address) = value {
                        self.address(&join(&p, &[Seg::K(field)]), field, address);
                    }
                }
            }
            Ok(TargetKind::Processes(selector)) => {
                let p = join(&path, &[Seg::K("processes")]);
                if selector.is_empty() {
                    self.at(&p, format!("target `{name}`: the process selector is empty (give name, cmdline, pid, pidfile or user)"));
                }
                if let Some(cmdline) = &selector.cmdline
                    && let Err(e) = regex::Regex::new(cmdline)
                {
                    let detail = e.to_string();
                    let detail = detail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid");
                    let detail = detail.trim().trim_start_matches("error: ");
                    self.at(
                        &join(&p, &[Seg::K("cmdline")]),
                        format!("`cmdline` is not a valid regular expression: {detail}"),
                    );
                }
                // The kernel keeps at most 15 bytes of a process name: a longer `name` can never match.
                if let Some(comm) = &selector.name
                    && comm.len() > 15
                {
                    self.at(
                        &join(&p, &[Seg::K("name")]),
                        format!(
                            "`name` {comm:?} can never match: process names (`comm`) are at most 15 bytes; \
                             match the command line with `cmdline` instead"
                        ),
                    );
                }
                self.count(&path, target.count);
                if target.hosts.as_ref().is_some_and(|h| h.is_empty()) {
                    self.at(&join(&path, &[Seg::K("hosts")]), "`hosts` must name at least one label".into());
                }
            }
            Ok(TargetKind::Hosts(hosts)) => {
                if hosts.is_empty() {
                    self.at(&join(&path, &[Seg::K("hosts")]), "`hosts` must name at least one label".into());
                }
                self.count(&path, target.count);
            }
            Ok(TargetKind::Pods(pods)) => {
                let p = join(&path, &[Seg::K("pods")]);
                let selector = chaos_agent::pods::PodSelector {
                    namespace: pods.namespace.clone(),
                    labels: pods.labels.clone(),
                    container: pods.container.clone(),
                };
                if let Err(e) = selector.validate() {
                    self.at(&p, format!("target `{name}`: {e}"));
                }
                if target.hosts.as_ref().is_some_and(|h| h.is_empty()) {
                    self.at(&join(&path, &[Seg::K("hosts")]), "`hosts` must name at least one label".into());
                }
                self.count(&path, target.count);
            }
        }
    }

    fn count(&mut self, path: &[Seg<'_>], count: Option<Count>) {
        match count {
            Some(Count::Exactly(0)) => {
                self.at(&join(path, &[Seg::K("count")]), "`count` must be at least 1".into())
            }
            Some(Count::Percent(p)) if p.0 <= 0.0 => {
                self.at(&join(path, &[Seg::K("count")]), "`count` must be above 0%".into());
            }
            _ => {}
        }
    }

    fn http_url(&mut self, path: &[Seg<'_>], url: &str, what: &str) {
        let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            self.at(path, format!("{what} must be an http:// or https:// URL, found {url:?}"));
        }
    }

    fn address(&mut self, path: &[Seg<'_>], field: &str, address: &str) {
        let ok = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            self.at(path, format!("`{field}` must be an address like 127.0.0.1:8080, found {address:?}"));
        }
    }

    fn request(&mut self, path: &[Seg<'_>], http: &HttpRequest) {
        self.http_url(&join(path, &[Seg::K("url")]), &http.url, "`url`");
        if let Some(method) = &http.method {
            self.method(&join(path, &[Seg::K("method")]), method);
        }
    }

    fn method(&mut self, path: &[Seg<'_>], method: &str) {
        if method.is_empty() || http::Method::from_bytes(method.as_bytes()).is_err() {
            self.at(path, format!("invalid HTTP method {method:?}"));
        }
    }

    /// `detection:`: one source with a usable base URL, at least one alert name, a positive bounded `within`.
    fn detection(&mut self, d: &Detection) {
        let path = [Seg::K("detection")];
        match (&d.prometheus, &d.alertmanager) {
            (None, None) => self.at(
                &path,
                "`detection` needs `prometheus` or `alertmanager`: the URL firing alerts are read from"
                    .into(),
            ),
            (Some(_), Some(_)) => self.at_key(
                &join(&path, &[Seg::K("alertmanager")]),
                "`detection` takes `prometheus` or `alertmanager`, not both: name the one whose alerts count"
                    .into(),
            ),
            _ => {}
        }
        for (field, url) in [("prometheus", &d.prometheus), ("alertmanager", &d.alertmanager)] {
            let Some(url) = url else { continue };
            let problem = match crate::http::Request::get(url) {
                Err(crate::http::HttpError::InvalidUrl { reason, .. }) => Some(reason),
                Err(e) => Some(e.to_string()),
                Ok(_) if url.contains(['?', '#']) => Some("a base URL takes no query or fragment".into()),
                Ok(_) => None,
            };
            if let Some(reason) = problem {
                self.at(
                    &join(&path, &[Seg::K(field)]),
                    format!("`{field}` must be an http:// base URL, found {url:?}: {reason}"),
                );
            }
        }
        if d.alerts.is_empty() {
            self.at(&join(&path, &[Seg::K("alerts")]), "`alerts` must name at least one alert".into());
        }
        if d.alerts.len() > MAX_DETECTION_ALERTS {
            self.at(
                &join(&path, &[Seg::K("alerts")]),
                format!(
                    "`alerts` names {} alerts, at most {MAX_DETECTION_ALERTS} are watched",
                    d.alerts.len()
                ),
            );
        }
        let mut seen = HashSet::new();
        for (i, alert) in d.alerts.iter().enumerate() {
            let at = join(&path, &[Seg::K("alerts"), Seg::I(i)]);
            if alert.trim().is_empty() || alert.trim() != alert {
                self.at(&at, format!("alert name {alert:?} must not be empty or start or end with spaces"));
            } else if alert.chars().any(char::is_control) || alert.len() > MAX_ALERT_NAME {
                self.at(
                    &at,
                    format!(
                        "alert name {alert:?} is not a usable `alertname` label value (no control characters, \
                         at most {MAX_ALERT_NAME} bytes)"
                    ),
                );
            } else if !seen.insert(alert.as_str()) {
                self.at(&at, format!("duplicate alert `{alert}`"));
            }
        }
        let within = join(&path, &[Seg::K("within")]);
        if d.within.0.is_zero() {
            self.at(&within, "`within` must be above 0".into());
        } else if d.within.0 > MAX_DETECTION_WITHIN {
            self.at(
                &within,
                format!(
                    "`within` is {}, at most 1h: the run waits that long after the fault for the alerts",
                    d.within
                ),
            );
        }
    }

    fn loads(&mut self, exp: &Experiment) {
        let mut names = HashSet::new();
        for (i, load) in exp.load.iter().enumerate() {
            let path = [Seg::K("load"), Seg::I(i)];
            if !names.insert(load.name.as_str()) {
                self.at(&join(&path, &[Seg::K("name")]), format!("duplicate load name `{}`", load.name));
            }
            self.request(&join(&path, &[Seg::K("http")]), &load.http);
            if load.timeout.is_some_and(|t| t.0.is_zero()) {
                self.at(&join(&path, &[Seg::K("timeout")]), "`timeout` must be above 0".into());
            }
        }
    }

    fn slo(&mut self, exp: &Experiment, slo: &Slo, path: &[Seg<'_>]) {
        let signal = signal_name(slo.signal);
        let fields = [
            ("objective", slo.objective.is_some()),
            ("threshold", slo.threshold.is_some()),
            ("percentile", slo.percentile.is_some()),
            ("min", slo.min.is_some()),
            ("max", slo.max.is_some()),
        ];
        let allowed: &[&str] = match slo.signal {
            Signal::Latency => &["objective", "threshold", "percentile"],
            Signal::Errors => &["objective"],
            Signal::Traffic => &["min"],
            Signal::Saturation => &["max"],
        };
        for (field, present) in fields {
            if present && !allowed.contains(&field) {
                self.at_key(
                    &join(path, &[Seg::K(field)]),
                    format!("`{field}` does not apply to {} {signal} SLO", article(signal)),
                );
            }
        }
        let name = &slo.name;
        match slo.signal {
            Signal::Latency => match &slo.percentile {
                Some(p) => {
                    if slo.objective.is_some() || slo.threshold.is_some() {
                        self.at(&join(path, &[Seg::K("percentile")]), "write either `percentile` or `objective` with `threshold`, not both".into());
                    } else if let Err(e) = parse_percentile(p) {
                        self.at(&join(path, &[Seg::K("percentile")]), e);
                    }
                }
                None if slo.objective.is_none() || slo.threshold.is_none() => self.at(
                    path,
                    format!("SLO `{name}`: a latency SLO needs `threshold` and `objective` (or `percentile` like `p99 < 800ms`)"),
                ),
                None => {}
            },
            Signal::Errors if slo.objective.is_none() => {
                self.at(path, format!("SLO `{name}`: an errors SLO needs `objective` (like 99.5%)"));
            }
            Signal::Traffic if slo.min.is_none() => {
                self.at(path, format!("SLO `{name}`: a traffic SLO needs `min` (a fraction of the baseline rate, like 50%)"));
            }
            Signal::Saturation if slo.max.is_none() => {
                self.at(path, format!("SLO `{name}`: a saturation SLO needs `max` (like 90%)"));
            }
            _ => {}
        }
        self.source(exp, slo, &join(path, &[Seg::K("source")]));
    }

    fn source(&mut self, exp: &Experiment, slo: &Slo, path: &[Seg<'_>]) {
        let source = &slo.source;
        if let Some(host) = &source.host
            && let Err(e) = host.parse::<HostMetric>()
        {
            return self.at(&join(path, &[Seg::K("host")]), e);
        }
        match (&source.processes, &source.metric) {
            (None, Some(_)) => {
                return self.at_key(
                    &join(path, &[Seg::K("metric")]),
                    "`metric` applies to a `processes` source only".into(),
                );
            }
            (Some(_), None) => {
                return self.at(path, "a `processes` source needs `metric` (cpu or memory)".into());
            }
            (Some(_), Some(metric)) => {
                if let Err(e) = metric.parse::<ProcessMetric>() {
                    return self.at(&join(path, &[Seg::K("metric")]), e);
                }
            }
            (None, None) => {}
        }
        let kind = match source.kind() {
            Ok(kind) => kind,
            Err(e) => return self.at(path, e),
        };
        // Saturation is sampled (host, processes); the other signals count events (load, proxy, prometheus).
        let sampled = match kind {
            SourceKind::Host(_) | SourceKind::Agents { .. } => Some("host"),
            SourceKind::Processes { .. } => Some("processes"),
            _ => None,
        };
        match (slo.signal == Signal::Saturation, sampled) {
            (true, None) => self.at(
                path,
                "a saturation SLO needs a `host` source (cpu, memory or load) or a `processes` source".into(),
            ),
            (false, Some(field)) => self.at_key(
                &join(path, &[Seg::K(field)]),
                format!("a `{field}` source is for saturation SLOs only"),
            ),
            _ => {}
        }
        match kind {
            SourceKind::Load(load) if !exp.load.iter().any(|l| l.name == load) => {
                let names = declared(exp.load.iter().map(|l| l.name.as_str()));
                self.at(&join(path, &[Seg::K("load")]), format!("unknown load `{load}` ({names})"));
            }
            SourceKind::Proxy(proxy) => match exp.targets.get(proxy).map(Target::target_type) {
                Some(Some(TargetType::Proxy)) | Some(None) => {}
                Some(Some(TargetType::Processes | TargetType::Host | TargetType::Pods)) => {
                    self.at(
                        &join(path, &[Seg::K("proxy")]),
                        format!("target `{proxy}` is a process target, not a proxy"),
                    );
                }
                None => {
                    let names = declared(
                        exp.targets.iter().filter(|(_, t)| t.proxy.is_some()).map(|(n, _)| n.as_str()),
                    );
                    self.at(
                        &join(path, &[Seg::K("proxy")]),
                        format!("unknown proxy target `{proxy}` ({names})"),
                    );
                }
            },
            SourceKind::Processes { target, .. } => {
                let p = join(path, &[Seg::K("processes")]);
                match exp.targets.get(target) {
                    Some(t) if t.target_type() == Some(TargetType::Processes) => {
                        // The sampler reads this host's /proc: processes on other agents are out of sight.
                        if t.hosts.is_some() {
                            let e = format!(
                                "target `{target}` has `hosts`: a `processes` source samples this host only"
                            );
                            self.at(&p, e);
                        }
                    }
                    // A target that is itself invalid is reported where it is declared.
                    Some(t) if t.target_type().is_none() => {}
                    Some(_) => self.at(&p, format!("target `{target}` is a proxy, not a process target")),
                    None => {
                        let names = declared(
                            exp.targets
                                .iter()
                                .filter(|(_, t)| t.processes.is_some())
                                .map(|(n, _)| n.as_str()),
                        );
                        self.at(&p, format!("unknown process target `{target}` ({names})"));
                    }
                }
            }
            SourceKind::Agents { target, .. } => {
                let p = join(path, &[Seg::K("target")]);
                match exp.targets.get(target) {
                    Some(t) if t.target_type() == Some(TargetType::Host) => {}
                    Some(t) if t.target_type().is_none() => {}
                    Some(_) => self.at(&p, format!("target `{target}` is not a `hosts` target")),
                    None => {
                        let names = declared(
                            exp.targets
                                .iter()
                                .filter(|(_, t)| t.target_type() == Some(TargetType::Host))
                                .map(|(n, _)| n.as_str()),
                        );
                        self.at(&p, format!("unknown hosts target `{target}` ({names})"));
                    }
                }
            }
            SourceKind::Prometheus(prometheus) => {
                let p = join(path, &[Seg::K("prometheus")]);
                self.http_url(&join(&p, &[Seg::K("url")]), &prometheus.url, "`url`");
                match prometheus.query() {
                    Ok(PrometheusQuery::Counters { .. }) => {}
                    // A ratio has no event counts to add across windows or to feed the guardrails.
                    Ok(PrometheusQuery::Ratio(_)) => self.at(
                        &join(&p, &[Seg::K("ratio")]),
                        "ratio queries are not supported as an SLO source yet: use good/total counters, which add \
                         across windows"
                            .into(),
                    ),
                    Err(_) => self.at(
                        &p,
                        "a prometheus source needs `good` and `total` (PromQL counters, like \
                         `sum(http_requests_total{code!~\"5..\"})` and `sum(http_requests_total)`)"
                            .into(),
                    ),
                }
            }
            _ => {}
        }
    }

    fn probe(&mut self, probe: &Probe, path: &[Seg<'_>]) {
        use super::checked::ProbeKind;
        let kind = match probe.kind() {
            Ok(kind) => kind,
            Err(e) => return self.at(path, format!("probe `{}`: {e}", probe.name)),
        };
        match kind {
            ProbeKind::Http(http) => {
                let p = join(path, &[Seg::K("http")]);
                self.http_url(&join(&p, &[Seg::K("url")]), &http.url, "`url`");
                if let Some(method) = &http.method {
                    self.method(&join(&p, &[Seg::K("method")]), method);
                }
                if http.status.is_some_and(|s| !(100..=599).contains(&s)) {
                    self.at(
                        &join(&p, &[Seg::K("status")]),
                        "`status` must be an HTTP status code (100..599)".into(),
                    );
                }
            }
            ProbeKind::Tcp(tcp) => {
                self.address(&join(path, &[Seg::K("tcp"), Seg::K("address")]), "address", &tcp.address)
            }
            ProbeKind::Command(command) => {
                if command.run.first().is_none_or(|p| p.is_empty()) {
                    self.at(
                        &join(path, &[Seg::K("command"), Seg::K("run")]),
                        "`run` needs a program (and its arguments)".into(),
                    );
                }
                let p = join(path, &[Seg::K("command")]);
                match (&command.agent, &command.hosts) {
                    (Some(_), Some(_)) => self.at_key(
                        &join(&p, &[Seg::K("hosts")]),
                        format!("probe `{}`: give either `agent` or `hosts`, not both", probe.name),
                    ),
                    (Some(agent), None) => {
                        if let Err(e) = chaos_proto::check_agent_id(agent) {
                            self.at(&join(&p, &[Seg::K("agent")]), e);
                        }
                    }
                    (None, Some(hosts)) if hosts.is_empty() => {
                        self.at(&join(&p, &[Seg::K("hosts")]), "`hosts` must name at least one label".into())
                    }
                    _ => {}
                }
            }
            ProbeKind::Prometheus(prometheus) => {
                let p = join(path, &[Seg::K("prometheus")]);
                self.http_url(&join(&p, &[Seg::K("url")]), &prometheus.url, "`url`");
                if let Err(e) = prometheus.comparison() {
                    self.at(&join(&p, &[Seg::K("op")]), e);
                }
                if !prometheus.value.is_finite() {
                    self.at(&join(&p, &[Seg::K("value")]), "`value` must be a finite number".into());
                }
            }
        }
    }

    fn step(&mut self, exp: &Experiment, step: &Step, path: &[Seg<'_>]) {
        if let Some(name) = &step.name
            && !self.step_names.insert(name.clone())
        {
            self.at(&join(path, &[Seg::K("name")]), format!("duplicate step name `{name}`"));
        }
        let chosen: Vec<&str> = [
            ("fault", step.fault.is_some()),
            ("wait", step.wait.is_some()),
            ("parallel", step.parallel.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        match chosen.as_slice() {
            [] => self.at(path, "a step needs one of `fault`, `wait` or `parallel`".into()),
            ["fault"] => self.fault(exp, step, path),
            [other] => {
                let stray = [
                    ("target", step.target.is_some()),
                    ("with", !step.with.is_empty()),
                    ("duration", step.duration.is_some()),
                ];
                for (field, present) in stray {
                    if present {
                        self.at_key(
                            &join(path, &[Seg::K(field)]),
                            format!("`{field}` does not apply to a {other} step"),
                        );
                    }
                }
                if let Some(steps) = &step.parallel {
                    if steps.is_empty() {
                        self.at(
                            &join(path, &[Seg::K("parallel")]),
                            "`parallel` needs at least one step".into(),
                        );
                    }
                    for (i, inner) in steps.iter().enumerate() {
                        self.step(exp, inner, &join(path, &[Seg::K("parallel"), Seg::I(i)]));
                    }
                }
            }
            several => self.at(
                path,
                format!(
                    "a step takes exactly one of `fault`, `wait` or `parallel`, found {}",
                    several.join(" and ")
                ),
            ),
        }
    }

    fn fault(&mut self, exp: &Experiment, step: &Step, path: &[Seg<'_>]) {
        let Some(fault) = &step.fault else { return };
        let kind: FaultKind = match fault.parse() {
            Ok(kind) => kind,
            Err(e) => return self.at(&join(path, &[Seg::K("fault")]), e),
        };
        match &step.target {
            None if kind.target_type() == TargetType::Host => {}
            None => self.at(path, format!("fault `{kind}` needs a `target`")),
            Some(target) => match exp.targets.get(target).map(Target::target_type) {
                None => {
                    let names = declared(exp.targets.keys().map(String::as_str));
                    self.at(&join(path, &[Seg::K("target")]), format!("unknown target `{target}` ({names})"));
                }
                // Inside a pod the path is the container's: absolute, and no `..` to climb out of a volume.
                Some(Some(TargetType::Pods)) if kind == FaultKind::DiskFill => {
                    let inside =
                        step.with.get("path").and_then(serde_json::Value::as_str).map(std::path::Path::new);
                    if let Some(inside) = inside.filter(|p| {
                        !p.is_absolute()
                            || p.components().any(|c| matches!(c, std::path::Component::ParentDir))
                    }) {
                        self.at(
                            &join(path, &[Seg::K("with"), Seg::K("path")]),
                            format!(
                                "expected an absolute path inside the containers of `{target}` without `..`, found {}",
                                inside.display()
                            ),
                        );
                    }
                }
                Some(Some(actual)) if !actual.takes(kind) => self.at(
                    &join(path, &[Seg::K("fault")]),
                    format!(
                        "fault `{kind}` applies to {} targets, but `{target}` is a {actual} target",
                        kind.target_type()
                    ),
                ),
                Some(_) => {}
            },
        }
        // L7 faults need an http proxy; when the run creates the proxy, the file says which it is.
        if matches!(kind, FaultKind::HttpAbort | FaultKind::HttpDelay | FaultKind::GrpcAbort)
            && let Some(proxy) =
                step.target.as_ref().and_then(|t| exp.targets.get(t)).and_then(|t| t.proxy.as_ref())
            && proxy.listen.is_some()
            && proxy.protocol.as_deref() != Some("http")
        {
            self.at(
                &join(path, &[Seg::K("target")]),
                format!("fault `{kind}` needs a proxy with `protocol: http`, and `{}` is tcp", proxy.name),
            );
        }
        if let Err(errors) = faults::params(kind, &step.with) {
            for e in errors {
                match e.key {
                    Some(key) => self.at(&join(path, &[Seg::K("with"), Seg::K(&key)]), e.message),
                    None => self.at(&join(path, &[Seg::K("with")]), e.message),
                }
            }
        }
        match step.duration {
            None if kind.needs_duration() => self.at(path, format!("fault `{kind}` needs a `duration`")),
            Some(_) if !kind.needs_duration() => {
                self.at_key(
                    &join(path, &[Seg::K("duration")]),
                    format!("fault `{kind}` takes no `duration` (there is nothing to revert)"),
                );
            }
            Some(d) if d.0.is_zero() => {
                self.at(&join(path, &[Seg::K("duration")]), "`duration` must be above 0".into())
            }
            _ => {}
        }
    }
}

// === on_failure (issue 16: incidents from experiments) ===

impl Validator<'_> {
    /// `on_failure.incident`: a known severity, and each text within the incident's bounds.
    fn on_failure(&mut self, exp: &Experiment) {
        use crate::incident::{MAX_TITLE, check_name, check_names, check_text};
        let Some(t) = exp.on_failure.as_ref().and_then(|f| f.incident.as_ref()) else { return };
        let base = [Seg::K("on_failure"), Seg::K("incident")];
        let at = |field: &'static str| join(&base, &[Seg::K(field)]);
        if let Err(e) = t.severity.parse::<crate::incident::Severity>() {
            self.at(&at("severity"), format!("on_failure.incident: {e}"));
        }
        if let Some(title) = &t.title {
            let checked = check_text("`title`", title, MAX_TITLE).and_then(|()| {
                if title.contains('\n') { Err("`title` must be one line".into()) } else { Ok(()) }
            });
            if let Err(e) = checked {
                self.at(&at("title"), format!("on_failure.incident: {e}"));
            }
        }
        if let Some(Err(e)) = t.commander.as_ref().map(|c| check_name("`commander`", c)) {
            self.at(&at("commander"), format!("on_failure.incident: {e}"));
        }
        for (field, list) in [("services", &t.services), ("responders", &t.responders)] {
            let what = if field == "services" { "service" } else { "responder" };
            if let Err(e) = check_names(what, list) {
                let bad = list.iter().position(|n| check_name(what, n).is_err());
                let path = match bad {
                    Some(i) => join(&at(field), &[Seg::I(i)]),
                    None => at(field),
                };
                self.at(&path, format!("on_failure.incident: {e}"));
            }
        }
    }
}
