//! `chaos convert`: the native experiment equivalent to a Chaos Toolkit one, where an equivalent exists, and the
//! list of what has none (and why).
//!
//! What converts:
//! - `title` → `title`, `description` → `hypothesis`; literal `configuration` values → `vars` (so `${name}`
//!   keeps working), `{type: env, key}` → `${env:KEY}` (its `default` is dropped: native vars have none).
//! - chaostoolkit-toxiproxy: `create_proxy` → a proxy target (listen, upstream) on the API of the configuration's
//!   `toxiproxy_url` (or `toxiproxy_host`/`toxiproxy_port`, default `http://localhost:8474`); the toxic actions
//!   (`create_latency_toxic`, `create_bandwith_degradation_toxic`, `create_slow_connection_close_toxic`,
//!   `create_timeout_toxic`, `create_slicer_toxic`, `create_limiter_toxic`, `create_toxic`) → proxy faults on
//!   that target lasting the action's `pauses.after` (a native fault needs a duration; the pause is what holds
//!   the toxic in the common pattern); `delete_toxic`, `delete_proxy`, `reset`, `remove_all_proxies` are
//!   folded (native faults revert themselves, proxies a run creates are deleted).
//! - process `kill -SIG PID`, `pkill [-SIG] [-f] PATTERN`, `killall [-SIG] NAME` → a `kill` fault on a
//!   processes target (pid, cmdline regex, or name).
//! - hypothesis probes with an `http` provider and a status tolerance (an int, or a list of one) → steady-state
//!   http probes (`status`, `timeout`).
//! - `pauses` elsewhere → `wait` steps.
//! - `extensions: chaos` → its `targets`, `load`, `slos`, `guardrails`, `baseline`, `recovery`, `vars`,
//!   `steady_state` folded in.
//!
//! Everything else (python providers other than the above, http actions, method probes, other tolerances,
//! rollbacks that are not folded) is listed as having no native equivalent, with the reason.

use serde_json::{Map, Value, json};

use super::model::{self, Activity, ActivityOrRef, Provider};
use super::native;

/// The result of a conversion.
#[derive(Debug, Default)]
pub struct Conversion {
    /// The native experiment (JSON form; [`Conversion::to_yaml`] for YAML).
    pub native: Map<String, Value>,
    /// What converted, one line each (`method[2] slow-db: fault latency on db for 5s`).
    pub converted: Vec<String>,
    /// Activities with nothing left to do in a native run (a toxic's delete: the fault reverts itself).
    pub folded: Vec<String>,
    /// Activities with no native equivalent: where, and why.
    pub unconverted: Vec<String>,
}

impl Conversion {
    /// Whether nothing at all converted (no step, probe, target or extension field).
    pub fn is_empty(&self) -> bool {
        self.converted.is_empty()
    }

    /// The native experiment as YAML.
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_saphyr::to_string(&Value::Object(self.native.clone())).map_err(|e| e.to_string())
    }

    /// The native experiment as JSON.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&Value::Object(self.native.clone())).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Argument → `with:` key renames.
type Renames = &'static [(&'static str, &'static str)];

/// The names of chaostoolkit-toxiproxy's toxic shortcuts and the native fault each becomes, with the
/// argument → `with:` key renames.
const TOXICS: &[(&str, &str, Renames)] = &[
    ("create_latency_toxic", "latency", &[("latency", "latency"), ("jitter", "jitter")]),
    ("create_bandwith_degradation_toxic", "bandwidth", &[("rate", "rate")]),
    ("create_slow_connection_close_toxic", "slow_close", &[("delay", "delay")]),
    ("create_timeout_toxic", "timeout", &[("timeout", "timeout")]),
    (
        "create_slicer_toxic",
        "slicer",
        &[("average_size", "average_size"), ("size_variation", "size_variation"), ("delay", "delay")],
    ),
    ("create_limiter_toxic", "limit_data", &[("bytes_limit", "bytes")]),
];

/// Folded chaostoolkit-toxiproxy functions: nothing to do in a native run.
const FOLDED: &[&str] = &["delete_toxic", "delete_proxy", "reset", "remove_all_proxies", "enable_proxy"];

struct Converter<'a> {
    exp: &'a model::Experiment,
    out: Conversion,
    targets: Map<String, Value>,
    api: String,
}

/// Converts `exp`.
pub fn convert(exp: &model::Experiment) -> Conversion {
    let configuration = exp.configuration.clone().unwrap_or_default();
    let api = toxiproxy_api(&configuration);
    let mut c = Converter { exp, out: Conversion::default(), targets: Map::new(), api };
    let mut native = Map::new();
    native.insert("apiVersion".into(), json!(crate::experiment::API_VERSION));
    native.insert("title".into(), json!(exp.title));
    native.insert("hypothesis".into(), json!(exp.description));
    let vars = c.vars(&configuration);
    if !vars.is_empty() {
        native.insert("vars".into(), Value::Object(vars));
    }
    let steady_state = c.steady_state();
    let method = c.steps(&exp.method, "method");
    if !exp.rollbacks.is_empty() {
        for (i, activity) in exp.rollbacks.iter().enumerate() {
            c.rollback(activity, &format!("rollbacks[{i}]"));
        }
    }
    if !c.targets.is_empty() {
        native.insert("targets".into(), Value::Object(std::mem::take(&mut c.targets)));
    }
    if !steady_state.is_empty() {
        native.insert("steady_state".into(), Value::Array(steady_state));
    }
    native.insert("method".into(), Value::Array(method));
    c.fold_extension(&mut native);
    c.out.native = native;
    c.out
}

/// The Toxiproxy API the configuration names, as chaostoolkit-toxiproxy builds it.
fn toxiproxy_api(configuration: &Map<String, Value>) -> String {
    if let Some(url) = configuration.get("toxiproxy_url").and_then(literal) {
        return url;
    }
    let host = configuration.get("toxiproxy_host").and_then(literal).unwrap_or_else(|| "localhost".into());
    let port = configuration.get("toxiproxy_port").and_then(literal).unwrap_or_else(|| "8474".into());
    format!("http://{host}:{port}")
}

/// A configuration value as a native var's text, when it has one.
fn literal(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("env") => {
            o.get("key").and_then(Value::as_str).map(|key| format!("${{env:{key}}}"))
        }
        _ => None,
    }
}

/// The activity `activity` is or names (`ref`s are looked up in the method, then the hypothesis' probes).
fn resolve<'a>(exp: &'a model::Experiment, activity: &'a ActivityOrRef) -> Option<&'a Activity> {
    match activity {
        ActivityOrRef::Activity(a) => Some(a),
        ActivityOrRef::Ref { name } => {
            let hypothesis = exp.steady_state_hypothesis.iter().flat_map(|h| h.probes.iter());
            exp.method.iter().chain(hypothesis).find_map(|a| match a {
                ActivityOrRef::Activity(a) if &a.name == name => Some(a.as_ref()),
                _ => None,
            })
        }
    }
}

fn activity_name(activity: &ActivityOrRef) -> String {
    match activity {
        ActivityOrRef::Ref { name } => name.clone(),
        ActivityOrRef::Activity(a) => a.name.clone(),
    }
}

/// Seconds of a pause value (a number; `${var}` pauses are not converted).
fn seconds(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64).filter(|s| *s > 0.0)
}

fn duration(seconds: f64) -> String {
    if seconds.fract() == 0.0 {
        format!("{}s", seconds as u64)
    } else {
        format!("{}ms", (seconds * 1000.0).round() as u64)
    }
}

impl<'a> Converter<'a> {
    fn vars(&mut self, configuration: &Map<String, Value>) -> Map<String, Value> {
        let mut vars = Map::new();
        for (key, value) in configuration {
            match literal(value) {
                Some(text) => {
                    vars.insert(key.clone(), Value::String(text));
                }
                None => self.out.unconverted.push(format!(
                    "configuration.{key}: no native equivalent (only literals and env values become vars)"
                )),
            }
        }
        vars
    }

    /// The hypothesis' http probes with status tolerances.
    fn steady_state(&mut self) -> Vec<Value> {
        let Some(hypothesis) = &self.exp.steady_state_hypothesis else { return Vec::new() };
        let mut probes = Vec::new();
        for (i, probe) in hypothesis.probes.iter().enumerate() {
            let at = format!("steady-state-hypothesis.probes[{i}] {}", activity_name(probe));
            let Some(activity) = resolve(self.exp, probe) else {
                self.out.unconverted.push(format!("{at}: its ref names no activity"));
                continue;
            };
            match http_probe(activity) {
                Ok(native) => {
                    self.out.converted.push(format!("{at}: steady-state http probe"));
                    probes.push(native);
                }
                Err(why) => self.out.unconverted.push(format!("{at}: {why}")),
            }
        }
        probes
    }

    fn steps(&mut self, activities: &'a [ActivityOrRef], section: &str) -> Vec<Value> {
        let mut steps = Vec::new();
        for (i, item) in activities.iter().enumerate() {
            let at = format!("{section}[{i}] {}", activity_name(item));
            let Some(activity) = resolve(self.exp, item) else {
                self.out.unconverted.push(format!("{at}: its ref names no activity"));
                continue;
            };
            let pauses = activity.pauses.clone().unwrap_or_default();
            if let Some(before) = seconds(pauses.get("before")) {
                steps.push(json!({"wait": duration(before)}));
                self.out.converted.push(format!("{at}: pauses.before → wait {}", duration(before)));
            }
            let after = seconds(pauses.get("after"));
            let mut held = false;
            match self.step(activity, after) {
                Step::Native { step, what, holds_pause } => {
                    self.out.converted.push(format!("{at}: {what}"));
                    steps.push(step);
                    held = holds_pause;
                }
                Step::Folded(why) => self.out.folded.push(format!("{at}: {why}")),
                Step::Target(what) => self.out.converted.push(format!("{at}: {what}")),
                Step::None(why) => self.out.unconverted.push(format!("{at}: {why}")),
            }
            if let (Some(after), false) = (after, held) {
                steps.push(json!({"wait": duration(after)}));
                self.out.converted.push(format!("{at}: pauses.after → wait {}", duration(after)));
            }
        }
        steps
    }

    fn rollback(&mut self, item: &ActivityOrRef, at: &str) {
        let at = format!("{at} {}", activity_name(item));
        let folded = resolve(self.exp, item).is_some_and(|a| match &a.provider {
            Provider::Python(p) => p.module.starts_with("chaostoxi.") && FOLDED.contains(&p.func.as_str()),
            _ => false,
        });
        if folded {
            self.out
                .folded
                .push(format!("{at}: native faults revert themselves and run-created proxies are deleted"));
        } else {
            self.out.unconverted.push(format!(
                "{at}: native rollbacks are fault steps; this rollback has no native equivalent"
            ));
        }
    }

    fn step(&mut self, activity: &Activity, after: Option<f64>) -> Step {
        match &activity.provider {
            Provider::Python(p) if p.module.starts_with("chaostoxi.") => {
                self.toxiproxy(&p.func, &p.arguments.clone().unwrap_or_default(), after)
            }
            Provider::Python(p) => Step::None(format!(
                "python provider {}.{}: no native equivalent (run the file with `chaos run` to keep it)",
                p.module, p.func
            )),
            Provider::Process(p) => {
                let mut step = kill(p);
                if let Step::Native { step: native, .. } = &mut step
                    && let Some(selector) = native.as_object_mut().and_then(|o| o.remove("processes"))
                {
                    let target = native["target"].as_str().unwrap_or_default().to_string();
                    self.targets.insert(target, json!({"processes": selector}));
                }
                step
            }
            Provider::Http(_) if activity.kind == model::ActivityKind::Probe => Step::None(
                "a method probe: native methods have no probes (steady_state runs before and after)".into(),
            ),
            Provider::Http(_) => Step::None("an http action: no native equivalent".into()),
        }
    }

    fn toxiproxy(&mut self, func: &str, arguments: &Map<String, Value>, after: Option<f64>) -> Step {
        let text = |key: &str| arguments.get(key).and_then(literal);
        if func == "create_proxy" {
            let (Some(name), Some(host), Some(port)) =
                (text("proxy_name"), text("upstream_host"), text("upstream_port"))
            else {
                return Step::None("create_proxy without proxy_name, upstream_host and upstream_port".into());
            };
            let listen = format!(
                "{}:{}",
                text("listen_host").unwrap_or_else(|| "0.0.0.0".into()),
                text("listen_port").unwrap_or_else(|| "0".into())
            );
            let target = json!({"proxy": {"api": self.api, "name": name, "listen": listen, "upstream": format!("{host}:{port}")}});
            self.targets.insert(name.clone(), target);
            return Step::Target(format!("proxy target {name} (listen {listen})"));
        }
        if FOLDED.contains(&func) {
            return Step::Folded(
                "native faults revert themselves and run-created proxies are deleted".into(),
            );
        }
        let (fault, with) = if func == "create_toxic" {
            let Some(kind) = text("toxic_type") else {
                return Step::None("create_toxic without toxic_type".into());
            };
            let kind = match kind.as_str() {
                "bandwidth" | "latency" | "slow_close" | "timeout" | "slicer" | "limit_data" => kind,
                other => return Step::None(format!("toxic type {other:?} has no native fault")),
            };
            let mut with =
                arguments.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default();
            if let Some(stream) = arguments.get("stream") {
                with.insert("stream".into(), stream.clone());
            }
            if let Some(toxicity) = arguments.get("toxicity") {
                with.insert("toxicity".into(), toxicity.clone());
            }
            (kind, with)
        } else if let Some((_, fault, keys)) = TOXICS.iter().find(|(name, _, _)| *name == func) {
            let with: Map<String, Value> = keys
                .iter()
                .filter_map(|(from, to)| arguments.get(*from).map(|v| (to.to_string(), v.clone())))
                .collect();
            (fault.to_string(), with)
        } else {
            return Step::None(format!("chaostoxi function {func}: no native equivalent"));
        };
        let Some(proxy) = text("for_proxy") else { return Step::None(format!("{func} without for_proxy")) };
        let Some(after) = after else {
            return Step::None(format!(
                "{func} without pauses.after: a native fault needs a duration, and nothing says how long the toxic \
                 stays"
            ));
        };
        self.targets
            .entry(proxy.clone())
            .or_insert_with(|| json!({"proxy": {"api": self.api, "name": proxy}}));
        let step = json!({"name": format!("{fault} on {proxy}"), "fault": fault, "target": proxy, "with": with,
                          "duration": duration(after)});
        Step::Native {
            step,
            what: format!("fault {fault} on {proxy} for {}", duration(after)),
            holds_pause: true,
        }
    }

    /// Folds the `chaos` extension's native fields in (they win over what the conversion produced).
    fn fold_extension(&mut self, native: &mut Map<String, Value>) {
        let Some(extension) =
            self.exp.extensions.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(native::NAME))
        else {
            return;
        };
        for (key, value) in extension {
            if key == "name" {
                continue;
            }
            if !native::FIELDS.contains(&key.as_str()) {
                self.out.unconverted.push(format!("extensions.chaos.{key}: not a native field"));
                continue;
            }
            match (native.get_mut(key), value) {
                (Some(Value::Object(mine)), Value::Object(theirs)) => {
                    mine.extend(theirs.clone());
                }
                (Some(Value::Array(mine)), Value::Array(theirs)) => mine.extend(theirs.iter().cloned()),
                _ => {
                    native.insert(key.clone(), value.clone());
                }
            }
            self.out.converted.push(format!("extensions.chaos.{key}: folded in"));
        }
    }
}

enum Step {
    /// A native step; `holds_pause` when it used the activity's `pauses.after` as its duration.
    Native { step: Value, what: String, holds_pause: bool },
    /// Became a target, no step.
    Target(String),
    /// Nothing to do natively.
    Folded(String),
    /// No native equivalent, and why.
    None(String),
}

/// A steady-state http probe from a hypothesis probe with an http provider and a status tolerance.
fn http_probe(activity: &Activity) -> Result<Value, String> {
    let Provider::Http(http) = &activity.provider else {
        return Err("only http probes have a native steady-state equivalent".into());
    };
    let status = match &activity.tolerance {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::Array(list)) if list.len() == 1 => list[0].as_u64(),
        _ => None,
    }
    .filter(|s| (100..=599).contains(s))
    .ok_or_else(|| "its tolerance is not one HTTP status: native http probes check one status".to_string())?;
    let url = http.url.as_str().ok_or("its url is not a string")?;
    let mut probe = json!({"url": url, "status": status});
    if let Some(method) = &http.method {
        probe["method"] = json!(method.to_uppercase());
    }
    match &http.timeout {
        Some(Value::Number(n)) => probe["timeout"] = json!(duration(n.as_f64().unwrap_or(1.0))),
        Some(Value::Array(pair)) => {
            let total: f64 = pair.iter().filter_map(Value::as_f64).sum();
            probe["timeout"] = json!(duration(total));
        }
        _ => {}
    }
    if http.arguments.is_some() || http.headers.is_some() {
        return Err("it sends headers or arguments: native http probes send neither".into());
    }
    Ok(json!({"name": activity.name, "http": probe}))
}

/// `kill -SIG PID`, `pkill [-SIG] [-f] PATTERN`, `killall [-SIG] NAME` → a kill fault on a processes target.
fn kill(process: &model::ProcessProvider) -> Step {
    let program = process.path.rsplit('/').next().unwrap_or_default();
    let words: Vec<String> = match &process.arguments {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(list)) => list.iter().filter_map(literal).filter(|s| !s.is_empty()).collect(),
        None => Vec::new(),
        Some(_) => return Step::None("process arguments given as an object: not converted".into()),
    };
    if !matches!(program, "kill" | "pkill" | "killall") {
        return Step::None(format!(
            "process {}: no native equivalent (only kill, pkill, killall convert)",
            process.path
        ));
    }
    let mut signal = "TERM".to_string();
    let mut full = false;
    let mut operands = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-s" | "--signal" => signal = words.next().unwrap_or_default(),
            "-f" | "--full" if program == "pkill" => full = true,
            w if w.starts_with('-') && w.len() > 1 => signal = w[1..].to_string(),
            _ => operands.push(word),
        }
    }
    let signal = match signal.trim_start_matches("SIG").to_uppercase().as_str() {
        "1" | "HUP" => "HUP",
        "2" | "INT" => "INT",
        "3" | "QUIT" => "QUIT",
        "9" | "KILL" => "KILL",
        "15" | "TERM" => "TERM",
        "10" | "USR1" => "USR1",
        "12" | "USR2" => "USR2",
        other => return Step::None(format!("signal {other}: not converted")),
    };
    let [operand] = operands.as_slice() else {
        return Step::None(format!("{program} with {} targets: only one converts", operands.len()));
    };
    let selector = match program {
        "kill" => match operand.parse::<u32>() {
            Ok(pid) => json!({"pid": pid}),
            Err(_) => return Step::None(format!("kill {operand}: not a literal pid")),
        },
        "pkill" if full => json!({"cmdline": operand}),
        _ => json!({"name": operand}),
    };
    let target =
        format!("{program}-{}", operand.chars().filter(char::is_ascii_alphanumeric).collect::<String>());
    let step = json!({"name": format!("{program} {operand}"), "fault": "kill", "target": target,
                      "with": {"signal": signal}, "processes": selector});
    Step::Native { step, what: format!("fault kill ({signal}) on {program} {operand}"), holds_pause: false }
}

/// The largest Chaos Toolkit file read.
pub const MAX_FILE: u64 = 16 * 1024 * 1024;

/// Reads a Chaos Toolkit experiment file (`.json`, `.yaml`, `.yml`), bounded; `file:line:column: message` when
/// it cannot be read or is not a Chaos Toolkit experiment.
pub fn load(path: &std::path::Path) -> Result<model::Experiment, String> {
    use std::io::Read;
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text).map_err(|e| format!("{name}: cannot read: {e}"))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("{name}: larger than {MAX_FILE} bytes"));
    }
    parse(&name, &text)
}

/// Parses a Chaos Toolkit experiment from `text`, JSON or YAML by `name`'s extension.
pub fn parse(name: &str, text: &str) -> Result<model::Experiment, String> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".json") {
        serde_json::from_str(text).map_err(|e| format!("{name}:{}:{}: {e}", e.line(), e.column()))
    } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        serde_saphyr::from_str(text).map_err(|e| format!("{name}: {e}"))
    } else {
        Err(format!("{name}: a Chaos Toolkit experiment is a .json, .yaml or .yml file"))
    }
}
