//! Fault kinds and their `with:` parameters, checked: which kinds go with which target type, which keys each
//! kind takes, and the normalised values (Toxiproxy's integer attributes, a signal number).
//!
//! Nothing about a key is written here: the keys a `with:` takes, their units, ranges, defaults and docs come
//! from the owners' tables (the proxy's [`ToxicKind::fields`], the agent's [`AgentKind::fields`]) through
//! [`FaultKind::params_table`]; this module converts experiment units (`300ms`, `5%`) into the owner's, and the
//! owner's own parser ([`ToxicKind::merged`], the agent spec's reader and `validate`) has the final word.

use std::fmt;
use std::str::FromStr;

use chaos_agent::faults::FaultKind as AgentKind;
use chaos_agent::spec::{Field as AgentField, Unit as AgentUnit};
use chaos_proxy_api::toxics::{AttributeError, Field as ToxicField, ToxicKind, Unit as ToxicUnit};
use serde_json::{Map, Number, Value};

use super::values::{Duration, Percent};

/// What a fault step does. The first eight act on a proxy target, `kill` and `pause` on process targets, the
/// rest on the host that runs the experiment (no target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Latency,
    Bandwidth,
    SlowClose,
    Timeout,
    ResetPeer,
    Slicer,
    LimitData,
    /// Disables the proxy (connections refused and cut) for the duration.
    Down,
    /// L7 faults on a proxy created with `protocol: http`: an HTTP status, a delay, a gRPC status, for the
    /// requests that match, with a percentage.
    HttpAbort,
    HttpDelay,
    GrpcAbort,
    /// Sends a signal once (default `KILL`); there is nothing to revert.
    Kill,
    /// `SIGSTOP` for the duration, then `SIGCONT`.
    Pause,
    /// Host faults, applied by the agent library on this host with an undo journal; `with:` holds the fields
    /// of the agent's fault spec of the same kind.
    CpuStress,
    MemoryStress,
    DiskFill,
    IoStress,
    NetworkPartition,
    NetworkLoss,
    NetworkBandwidth,
    NetworkLatency,
}

/// Which kind of target a fault acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetType {
    Proxy,
    Processes,
    /// The host that runs the experiment: these faults take no `target`.
    Host,
    /// Pods on the agents' nodes: host faults act inside their containers, and `kill` and `pause` on their
    /// processes.
    Pods,
}

impl fmt::Display for TargetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetType::Proxy => "proxy",
            TargetType::Processes => "process",
            TargetType::Host => "host",
            TargetType::Pods => "pods",
        })
    }
}

impl TargetType {
    /// Whether a fault of `kind` may name a target of this type.
    pub fn takes(self, kind: FaultKind) -> bool {
        match self {
            TargetType::Pods => matches!(kind.target_type(), TargetType::Processes | TargetType::Host),
            other => other == kind.target_type(),
        }
    }
}

impl FaultKind {
    pub const ALL: [FaultKind; 21] = [
        FaultKind::Latency,
        FaultKind::Bandwidth,
        FaultKind::SlowClose,
        FaultKind::Timeout,
        FaultKind::ResetPeer,
        FaultKind::Slicer,
        FaultKind::LimitData,
        FaultKind::Down,
        FaultKind::HttpAbort,
        FaultKind::HttpDelay,
        FaultKind::GrpcAbort,
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::CpuStress,
        FaultKind::MemoryStress,
        FaultKind::DiskFill,
        FaultKind::IoStress,
        FaultKind::NetworkPartition,
        FaultKind::NetworkLoss,
        FaultKind::NetworkBandwidth,
        FaultKind::NetworkLatency,
    ];

    /// The name written in `fault:` (for toxics, also the Toxiproxy toxic type).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Latency => "latency",
            FaultKind::Bandwidth => "bandwidth",
            FaultKind::SlowClose => "slow_close",
            FaultKind::Timeout => "timeout",
            FaultKind::ResetPeer => "reset_peer",
            FaultKind::Slicer => "slicer",
            FaultKind::LimitData => "limit_data",
            FaultKind::Down => "down",
            FaultKind::HttpAbort => "http_abort",
            FaultKind::HttpDelay => "http_delay",
            FaultKind::GrpcAbort => "grpc_abort",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::CpuStress => "cpu_stress",
            FaultKind::MemoryStress => "memory_stress",
            FaultKind::DiskFill => "disk_fill",
            FaultKind::IoStress => "io_stress",
            FaultKind::NetworkPartition => "network_partition",
            FaultKind::NetworkLoss => "network_loss",
            FaultKind::NetworkBandwidth => "network_bandwidth",
            FaultKind::NetworkLatency => "network_latency",
        }
    }

    pub fn target_type(self) -> TargetType {
        match self {
            FaultKind::Kill | FaultKind::Pause => TargetType::Processes,
            k if k.agent_kind().is_some() => TargetType::Host,
            _ => TargetType::Proxy,
        }
    }

    /// The agent's fault kind, for the host faults.
    pub fn agent_kind(self) -> Option<AgentKind> {
        use AgentKind as A;
        Some(match self {
            FaultKind::CpuStress => A::CpuStress,
            FaultKind::MemoryStress => A::MemoryStress,
            FaultKind::DiskFill => A::DiskFill,
            FaultKind::IoStress => A::IoStress,
            FaultKind::NetworkPartition => A::NetworkPartition,
            FaultKind::NetworkLoss => A::NetworkLoss,
            FaultKind::NetworkBandwidth => A::NetworkBandwidth,
            FaultKind::NetworkLatency => A::NetworkLatency,
            _ => return None,
        })
    }

    /// The Toxiproxy toxic type, for the kinds that are toxics.
    pub fn toxic_type(self) -> Option<&'static str> {
        match self.target_type() {
            TargetType::Proxy if self != FaultKind::Down => Some(self.name()),
            _ => None,
        }
    }

    /// Whether the fault lasts (and so needs a `duration`): all but `kill`.
    pub fn needs_duration(self) -> bool {
        self != FaultKind::Kill
    }

    /// What `with:` takes for this kind, read from the owners' tables: a toxic's attributes
    /// ([`ToxicKind::fields`]) with `stream` and `toxicity`, an agent spec's fields ([`AgentKind::fields`]; for
    /// `kill` and `pause` less `target` and `count`, which the target gives).
    pub fn params_table(self) -> Vec<Param> {
        if let Some(toxic) = self.toxic_type() {
            let own = ToxicKind::fields(toxic).unwrap_or_default().iter().map(|f| Param::toxic(toxic, f));
            let l7 = matches!(self, FaultKind::HttpAbort | FaultKind::HttpDelay | FaultKind::GrpcAbort);
            // An L7 toxic acts per request: a stream direction means nothing to it.
            let extra = if l7 { &[TOXICITY][..] } else { &[STREAM, TOXICITY][..] };
            return own.chain(extra.iter().copied()).collect();
        }
        let agent = match self {
            FaultKind::Kill => AgentKind::ProcessKill,
            FaultKind::Pause => AgentKind::ProcessPause,
            other => match other.agent_kind() {
                Some(kind) => kind,
                None => return Vec::new(),
            },
        };
        let from_target =
            |f: &&AgentField| self.agent_kind().is_some() || !matches!(f.name, "target" | "count");
        agent.fields().iter().filter(from_target).map(Param::agent).collect()
    }

    /// The `with:` keys this kind takes, in the owner's order.
    pub fn keys(self) -> Vec<&'static str> {
        self.params_table().iter().map(|p| p.name).collect()
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown fault {s:?} (expected one of {})", names.join(", "))
        })
    }
}

// === impl Param ===

/// One `with:` key of a fault kind, as its owner describes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Param {
    pub name: &'static str,
    pub owner: Owner,
    /// Inclusive bounds experiments accept.
    pub range: Option<(f64, f64)>,
    /// Whether an experiment must set it (without it the fault would do nothing, or its owner refuses it).
    pub required: bool,
    pub doc: &'static str,
}

/// Whose table a `with:` key comes from, with its unit there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Owner {
    /// A proxy toxic's attribute.
    Toxic { toxic_type: &'static str, unit: ToxicUnit },
    /// A field of the agent's fault spec.
    Agent { unit: AgentUnit, default: Option<&'static str>, example: &'static str },
    /// `stream`: which direction a toxic acts on (the toxic's own field, not an attribute).
    Stream,
    /// `toxicity`: the share of connections a toxic applies to (the toxic's own field, not an attribute).
    Toxicity,
}

const STREAM: Param = Param {
    name: "stream",
    owner: Owner::Stream,
    range: None,
    required: false,
    doc: "the direction the toxic acts on: upstream (client → server) or downstream",
};

const TOXICITY: Param = Param {
    name: "toxicity",
    owner: Owner::Toxicity,
    range: Some((0.0, 1.0)),
    required: false,
    doc: "the probability a connection (or request) is affected, 0 to 1 or a percentage",
};

impl Param {
    fn toxic(toxic_type: &'static str, f: &'static ToxicField) -> Param {
        Param {
            name: f.name,
            owner: Owner::Toxic { toxic_type, unit: f.unit },
            range: f.range,
            required: f.required,
            doc: f.doc,
        }
    }

    fn agent(f: &'static AgentField) -> Param {
        Param {
            name: f.name,
            owner: Owner::Agent { unit: f.unit, default: f.default, example: f.example },
            range: f.range,
            required: f.required(),
            doc: f.doc,
        }
    }

    /// The unit as the reference writes it.
    pub fn unit(&self) -> String {
        match self.owner {
            Owner::Toxic { unit, .. } => unit.to_string(),
            Owner::Agent { unit, .. } => unit.to_string(),
            Owner::Stream => "upstream or downstream".into(),
            Owner::Toxicity => "probability".into(),
        }
    }

    /// What an absent key means, as the reference writes it.
    pub fn default_text(&self) -> String {
        match self.owner {
            Owner::Toxic { toxic_type, .. } => match ToxicKind::default_attribute(toxic_type, self.name) {
                Some(Value::Null) | None => "none".into(),
                Some(Value::String(s)) if s.is_empty() => "none".into(),
                Some(Value::Object(m)) if m.is_empty() => "none".into(),
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
            },
            Owner::Agent { default, .. } => default.unwrap_or("none").into(),
            Owner::Stream => Stream::default().name().into(),
            Owner::Toxicity => "1".into(),
        }
    }

    /// Converts a value as an experiment writes it (`300ms`, `5%`) into the owner's unit, checking the range.
    fn convert(&self, value: &Value) -> Result<Value, String> {
        let key = self.name;
        let number = |n: i64| Value::Number(Number::from(n));
        match self.owner {
            Owner::Toxic { unit, .. } => match unit {
                ToxicUnit::Millis => {
                    integer(Unit::Millis, value).map(number).map_err(|m| format!("`{key}`: {m}"))
                }
                ToxicUnit::Micros => {
                    integer(Unit::Micros, value).map(number).map_err(|m| format!("`{key}`: {m}"))
                }
                ToxicUnit::KilobytesPerSecond | ToxicUnit::Bytes | ToxicUnit::Count => {
                    integer(Unit::Integer, value).map(number).map_err(|m| format!("`{key}`: {m}"))
                }
                ToxicUnit::Percent => {
                    let (min, max) = self.range.unwrap_or((0.0, 100.0));
                    match percent_number(value) {
                        Some(p) if (min..=max).contains(&p) => Ok(serde_json::json!(p)),
                        _ => Err(format!(
                            "`{key}` must be {min} to {max} (or like `5%`), found {}",
                            show(value)
                        )),
                    }
                }
                // Names, texts, regexes, statuses and codes go to the proxy as written: its parser checks them.
                _ => Ok(value.clone()),
            },
            Owner::Agent { unit, .. } => match (unit, value) {
                (AgentUnit::Millis, Value::String(_)) => {
                    integer(Unit::Millis, value).map(number).map_err(|m| format!("`{key}`: {m}"))
                }
                (AgentUnit::Percent, Value::String(_)) => {
                    percent_number(value).map(|p| serde_json::json!(p)).ok_or_else(|| {
                        format!("`{key}`: expected a number of percent or like `5%`, found {}", show(value))
                    })
                }
                (AgentUnit::Signal, _) => signal_number(value).map(|n| Value::String(n.to_string())),
                // Everything else is the agent spec's own syntax; its reader checks it.
                _ => Ok(value.clone()),
            },
            Owner::Stream => match value.as_str() {
                Some("upstream") | Some("downstream") => Ok(value.clone()),
                _ => Err(format!("`stream` must be upstream or downstream, found {}", show(value))),
            },
            Owner::Toxicity => toxicity_of(value).map(|t| serde_json::json!(t)),
        }
    }
}

/// The direction a toxic acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Stream {
    Upstream,
    #[default]
    Downstream,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// A fault's parameters, checked by their owner and normalised, computed once when the experiment is parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultParams {
    /// A Toxiproxy toxic: `attributes` are the toxic's attributes in the proxy's units (ms, µs for slicer
    /// `delay`, KB/s, bytes), accepted by the proxy's own parser ([`ToxicKind::merged`]), ready for the API.
    Toxic {
        toxic_type: &'static str,
        stream: Stream,
        toxicity: f32,
        attributes: Map<String, Value>,
    },
    Down,
    Kill {
        /// A signal number the agent accepts ([`chaos_agent::Signal::parse`]).
        signal: i32,
    },
    Pause,
    /// A host fault as the agent applies it.
    Host(chaos_agent::spec::FaultSpec),
}

/// A fault step's kind and parameters as the experiment's parser checked them, kept on the step so no later
/// reader parses `fault:` and `with:` again.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedFault {
    pub(super) kind: FaultKind,
    pub(super) params: FaultParams,
}

/// A problem with one `with:` key (`None`: with the whole map).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamError {
    pub key: Option<String>,
    pub message: String,
}

/// Checks and normalises `with:` for `kind` against the owner's table, then has the owner's parser check the
/// result; returns every problem found.
pub fn params(kind: FaultKind, with: &Map<String, Value>) -> Result<FaultParams, Vec<ParamError>> {
    if let Some(agent_kind) = kind.agent_kind() {
        return host_params(kind, agent_kind, with).map(FaultParams::Host).map_err(|e| vec![e]);
    }
    let table = kind.params_table();
    let mut errors = Vec::new();
    for key in with.keys() {
        if !table.iter().any(|p| p.name == key) {
            let message = if table.is_empty() {
                format!("fault `{kind}` takes no `with` parameters, found `{key}`")
            } else {
                let names: Vec<&str> = table.iter().map(|p| p.name).collect();
                format!("unknown parameter `{key}` for fault `{kind}` (expected one of {})", names.join(", "))
            };
            errors.push(ParamError { key: Some(key.clone()), message });
        }
    }
    for param in table.iter().filter(|p| p.required) {
        if !with.contains_key(param.name) {
            errors.push(ParamError {
                key: None,
                message: format!("fault `{kind}` needs `with: {{ {}: ... }}`", param.name),
            });
        }
    }
    let mut converted = Map::new();
    for (key, value) in with {
        let Some(param) = table.iter().find(|p| p.name == key) else { continue };
        match param.convert(value) {
            Ok(value) => {
                converted.insert(key.clone(), value);
            }
            Err(message) => errors.push(ParamError { key: Some(key.clone()), message }),
        }
    }
    let params = match kind {
        FaultKind::Down => FaultParams::Down,
        FaultKind::Pause => FaultParams::Pause,
        FaultKind::Kill => {
            let signal = converted.get("signal").and_then(Value::as_str).and_then(|s| s.parse().ok());
            FaultParams::Kill { signal: signal.unwrap_or(chaos_agent::Signal::KILL.number()) }
        }
        _ => {
            let stream = match converted.remove("stream").as_ref().and_then(Value::as_str) {
                Some("upstream") => Stream::Upstream,
                _ => Stream::Downstream,
            };
            let toxicity = converted.remove("toxicity").and_then(|t| t.as_f64()).unwrap_or(1.0) as f32;
            let toxic_type = kind.toxic_type().unwrap_or("noop");
            // The proxy's own parser and checks (ranges, regexes, code names, required values) are the final
            // word, here, so a bad value is an error at its place in the file rather than a fault that fails to
            // apply mid-run.
            if errors.is_empty()
                && let Some(default) = ToxicKind::default_for(toxic_type)
                && let Err(e) = default.merged(Some(&converted)).and_then(|k| k.check_required().map(|()| k))
            {
                let key = match &e {
                    AttributeError::Type { name, .. } if with.contains_key(name) => Some(name.clone()),
                    _ => None,
                };
                errors.push(ParamError { key, message: format!("fault `{kind}`: {e}") });
            }
            FaultParams::Toxic { toxic_type, stream, toxicity, attributes: converted }
        }
    };
    if errors.is_empty() { Ok(params) } else { Err(errors) }
}

/// `with:` read as the agent's spec of `kind` (values converted by the agent's table), then checked by the
/// agent (ranges, syntax; nothing applied).
fn host_params(
    fault: FaultKind,
    kind: AgentKind,
    with: &Map<String, Value>,
) -> Result<chaos_agent::spec::FaultSpec, ParamError> {
    if with.contains_key("kind") {
        return Err(ParamError {
            key: Some("kind".into()),
            message: "the fault kind comes from `fault:`; `with` takes its parameters only".into(),
        });
    }
    let table = fault.params_table();
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(kind.as_str().into()));
    for (key, value) in with {
        let value = match table.iter().find(|p| p.name == key) {
            Some(param) => {
                param.convert(value).map_err(|message| ParamError { key: Some(key.clone()), message })?
            }
            // Unknown keys reach the spec's reader, which names them and the fields there are.
            None => value.clone(),
        };
        object.insert(key.clone(), value);
    }
    let spec: chaos_agent::spec::FaultSpec = serde_json::from_value(Value::Object(object)).map_err(|e| {
        let message = e.to_string();
        // serde names the offending field in backquotes: point at it when it is one of ours.
        let key = message.split('`').nth(1).filter(|k| with.contains_key(*k)).map(str::to_string);
        ParamError { key, message: format!("`with`: {message}") }
    })?;
    // The directories a fill or IO stress names are the applying agent's (or a container's): it checks them.
    spec.validate_shape().map_err(|e| {
        let key = match &e {
            chaos_agent::AgentError::Invalid { what, .. } if with.contains_key(*what) => {
                Some((*what).to_string())
            }
            _ => None,
        };
        ParamError { key, message: e.to_string() }
    })?;
    Ok(spec)
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[derive(Clone, Copy)]
enum Unit {
    /// Milliseconds: an integer, or a duration like `300ms`.
    Millis,
    /// Microseconds: an integer, or a duration like `500us`.
    Micros,
    /// A non-negative integer (bytes, KB/s).
    Integer,
}

/// A non-negative integer in the owner's unit, from a number or (for times) a duration string.
fn integer(unit: Unit, value: &Value) -> Result<i64, String> {
    let expected = match unit {
        Unit::Millis => "milliseconds (an integer) or a duration like 300ms",
        Unit::Micros => "microseconds (an integer) or a duration like 500us",
        Unit::Integer => "a non-negative integer",
    };
    let n = match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e18).map(|f| f as i64))
        }
        Value::String(s)
            if !matches!(unit, Unit::Integer) && s.trim().ends_with(|c: char| c.is_ascii_alphabetic()) =>
        {
            let d: Duration = s.parse().map_err(|e: String| e)?;
            let scaled = match unit {
                Unit::Micros => d.0.as_micros(),
                _ => d.0.as_millis(),
            };
            Some(i64::try_from(scaled).map_err(|_| format!("{s:?} is too large"))?)
        }
        _ => None,
    };
    match n {
        Some(n) if n >= 0 => Ok(n),
        Some(n) => Err(format!("expected {expected}, found {n} (negative)")),
        None => Err(format!("expected {expected}, found {}", show(value))),
    }
}

/// A number of percent from a number or a string like `5%`.
fn percent_number(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| {
        value.as_str().and_then(|s| s.trim().strip_suffix('%')).and_then(|p| p.trim().parse().ok())
    })
}

fn toxicity_of(value: &Value) -> Result<f32, String> {
    let fraction = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.trim().ends_with('%') => s.parse::<Percent>().ok().map(|p| p.0),
        _ => None,
    };
    match fraction {
        Some(f) if (0.0..=1.0).contains(&f) => Ok(f as f32),
        _ => Err(format!("`toxicity` must be a number from 0 to 1 (or a percentage), found {}", show(value))),
    }
}

/// A signal from a name (`KILL`, `SIGTERM`, `int`) or a number, as the agent reads it ([`chaos_agent::Signal`]):
/// what validates here is what the agent sends.
pub fn signal_number(value: &Value) -> Result<i32, String> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(format!("expected a signal name like KILL or a number, found {}", show(value))),
    };
    chaos_agent::Signal::parse(&text).map(chaos_agent::Signal::number).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn toxic_attributes_are_normalised() {
        let p = params(
            FaultKind::Latency,
            &with(json!({"latency": "300ms", "jitter": 50, "stream": "upstream", "toxicity": "50%"})),
        );
        let FaultParams::Toxic { toxic_type, stream, toxicity, attributes } = p.unwrap() else { panic!() };
        assert_eq!((toxic_type, stream, toxicity), ("latency", Stream::Upstream, 0.5));
        assert_eq!(Value::Object(attributes), json!({"latency": 300, "jitter": 50}));
        let FaultParams::Toxic { attributes, .. } =
            params(FaultKind::Slicer, &with(json!({"average_size": 64, "delay": "1ms"}))).unwrap()
        else {
            panic!()
        };
        assert_eq!(attributes["delay"], json!(1000));
    }

    #[test]
    fn signals_by_name_or_number() {
        for (v, n) in
            [(json!("KILL"), 9), (json!("SIGTERM"), 15), (json!("int"), 2), (json!(1), 1), (json!("9"), 9)]
        {
            assert_eq!(signal_number(&v), Ok(n), "{v}");
        }
        for v in [json!("NOPE"), json!(0), json!(32), json!(40), json!(65), json!(true)] {
            assert!(signal_number(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn latency_takes_its_distribution_as_the_proxy_does() {
        let p =
            params(FaultKind::Latency, &with(json!({"latency": 100, "distribution": "lognormal"}))).unwrap();
        let FaultParams::Toxic { attributes, .. } = p else { panic!() };
        assert_eq!(attributes["distribution"], json!("lognormal"));
        let errors =
            params(FaultKind::Latency, &with(json!({"latency": 1, "distribution": "zipf"}))).unwrap_err();
        assert!(errors[0].message.starts_with("fault `latency`: attribute distribution:"), "{errors:?}");
    }

    #[test]
    fn agent_times_and_percentages_convert_from_experiment_units() {
        let with = with(json!({"device": "lo", "delay_ms": "1500ms", "correlation": "25%"}));
        let FaultParams::Host(spec) = params(FaultKind::NetworkLatency, &with).unwrap() else { panic!() };
        let chaos_agent::spec::FaultSpec::NetworkLatency(latency) = spec else { panic!("{spec:?}") };
        assert_eq!((latency.delay_ms, latency.correlation), (1500, 25.0));
    }

    #[test]
    fn keys_come_from_the_owners_tables() {
        assert_eq!(FaultKind::Latency.keys(), ["latency", "jitter", "distribution", "stream", "toxicity"]);
        assert_eq!(FaultKind::Kill.keys(), ["signal"]);
        assert!(FaultKind::Pause.keys().is_empty() && FaultKind::Down.keys().is_empty());
        let agent: Vec<&str> = AgentKind::IoStress.fields().iter().map(|f| f.name).collect();
        assert_eq!(FaultKind::IoStress.keys(), agent);
    }

    #[test]
    fn every_problem_is_reported() {
        let errors =
            params(FaultKind::Latency, &with(json!({"jitter": -1, "colour": 1, "stream": "sideways"})))
                .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
    }
}
