//! Fault kinds and their `with:` parameters, checked: which kinds go with which target type, which keys each
//! kind takes, and the normalised values (Toxiproxy's integer attributes, a signal number).

use std::fmt;
use std::str::FromStr;

use chaos_proxy_api::toxics::{AttributeError, ToxicKind};
use serde_json::{Map, Number, Value};

use super::model::{Duration, Percent};

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
}

impl fmt::Display for TargetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetType::Proxy => "proxy",
            TargetType::Processes => "process",
            TargetType::Host => "host",
        })
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
    pub fn agent_kind(self) -> Option<chaos_agent::faults::FaultKind> {
        use chaos_agent::faults::FaultKind as A;
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

    /// The `with:` keys this kind takes (host faults: none here; the agent's spec decides and names them).
    pub fn keys(self) -> Vec<&'static str> {
        let own: &[&str] = match self {
            FaultKind::Latency => &["latency", "jitter", "stream", "toxicity"],
            FaultKind::Bandwidth => &["rate", "stream", "toxicity"],
            FaultKind::SlowClose => &["delay", "stream", "toxicity"],
            FaultKind::Timeout | FaultKind::ResetPeer => &["timeout", "stream", "toxicity"],
            FaultKind::Slicer => &["average_size", "size_variation", "delay", "stream", "toxicity"],
            FaultKind::LimitData => &["bytes", "stream", "toxicity"],
            FaultKind::Kill => &["signal"],
            FaultKind::HttpAbort => &["status", "body", "response_headers"],
            FaultKind::HttpDelay => &["delay", "jitter", "distribution"],
            FaultKind::GrpcAbort => &["code", "message"],
            _ => &[],
        };
        let shared: &[&str] =
            if matches!(self, FaultKind::HttpAbort | FaultKind::HttpDelay | FaultKind::GrpcAbort) {
                &L7_SHARED_KEYS
            } else {
                &[]
            };
        [own, shared].concat()
    }

    /// Keys without which the fault would do nothing.
    fn required(self) -> &'static [&'static str] {
        match self {
            FaultKind::Latency => &["latency"],
            FaultKind::Bandwidth => &["rate"],
            FaultKind::SlowClose => &["delay"],
            FaultKind::Slicer => &["average_size"],
            FaultKind::LimitData => &["bytes"],
            FaultKind::HttpAbort => &["status"],
            FaultKind::HttpDelay => &["delay"],
            FaultKind::GrpcAbort => &["code"],
            _ => &[],
        }
    }

    /// How an attribute's value is read.
    fn unit(self, key: &str) -> Unit {
        match (self, key) {
            (FaultKind::Slicer, "delay") => Unit::Micros,
            (_, "latency" | "jitter" | "delay" | "timeout") => Unit::Millis,
            _ => Unit::Integer,
        }
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

/// The request match and odds every L7 fault takes after its own keys (the proxy's attribute names).
const L7_SHARED_KEYS: [&str; 8] = [
    "method",
    "path_prefix",
    "path_regex",
    "headers",
    "header_regex",
    "percentage",
    "max_active",
    "toxicity",
];

#[derive(Clone, Copy)]
enum Unit {
    /// Toxiproxy milliseconds: an integer, or a duration like `300ms`.
    Millis,
    /// Toxiproxy microseconds (slicer `delay`): an integer, or a duration like `500us`.
    Micros,
    /// A non-negative integer (bytes, KB/s).
    Integer,
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

/// A fault's parameters, checked and normalised.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultParams {
    /// A Toxiproxy toxic: `attributes` are Toxiproxy's integer attributes (ms, µs for slicer `delay`,
    /// KB/s, bytes), ready for the admin API.
    Toxic {
        toxic_type: &'static str,
        stream: Stream,
        toxicity: f32,
        attributes: Map<String, Value>,
    },
    Down,
    Kill {
        signal: i32,
    },
    Pause,
    /// A host fault as the agent applies it.
    Host(chaos_agent::spec::FaultSpec),
}

/// A problem with one `with:` key (`None`: with the whole map).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamError {
    pub key: Option<String>,
    pub message: String,
}

/// Checks and normalises `with:` for `kind`; returns every problem found.
pub fn params(kind: FaultKind, with: &Map<String, Value>) -> Result<FaultParams, Vec<ParamError>> {
    if let Some(agent_kind) = kind.agent_kind() {
        return host_params(agent_kind, with).map(FaultParams::Host).map_err(|e| vec![e]);
    }
    let mut errors = Vec::new();
    let allowed = kind.keys();
    for key in with.keys() {
        if !allowed.contains(&key.as_str()) {
            let message = if allowed.is_empty() {
                format!("fault `{kind}` takes no `with` parameters, found `{key}`")
            } else {
                format!(
                    "unknown parameter `{key}` for fault `{kind}` (expected one of {})",
                    allowed.join(", ")
                )
            };
            errors.push(ParamError { key: Some(key.clone()), message });
        }
    }
    for key in kind.required() {
        if !with.contains_key(*key) {
            errors.push(ParamError {
                key: None,
                message: format!("fault `{kind}` needs `with: {{ {key}: ... }}`"),
            });
        }
    }
    let mut err =
        |key: &str, message: String| errors.push(ParamError { key: Some(key.to_string()), message });

    let params = match kind {
        FaultKind::Down => FaultParams::Down,
        FaultKind::Pause => FaultParams::Pause,
        FaultKind::Kill => {
            let signal = match with.get("signal") {
                None => 9,
                Some(v) => signal_number(v).unwrap_or_else(|m| {
                    err("signal", m);
                    9
                }),
            };
            FaultParams::Kill { signal }
        }
        FaultKind::HttpAbort | FaultKind::HttpDelay | FaultKind::GrpcAbort => {
            // Values go to the proxy as written (it checks them: status range, regexes, code names); times may
            // be durations like `300ms`, sent as Toxiproxy milliseconds.
            let mut toxicity = 1.0f32;
            let mut attributes = Map::new();
            for (key, value) in with {
                match key.as_str() {
                    "toxicity" => match toxicity_of(value) {
                        Ok(t) => toxicity = t,
                        Err(m) => err(key, m),
                    },
                    "delay" | "jitter" => match integer(Unit::Millis, value) {
                        Ok(n) => {
                            attributes.insert(key.clone(), Value::Number(Number::from(n)));
                        }
                        Err(m) => err(key, format!("`{key}`: {m}")),
                    },
                    "percentage" => match value.as_f64().or_else(|| {
                        value
                            .as_str()
                            .and_then(|s| s.trim().strip_suffix('%'))
                            .and_then(|p| p.trim().parse().ok())
                    }) {
                        Some(p) if (0.0..=100.0).contains(&p) => {
                            attributes.insert(key.clone(), serde_json::json!(p));
                        }
                        _ => err(
                            key,
                            format!("`percentage` must be 0 to 100 (or like `5%`), found {}", show(value)),
                        ),
                    },
                    k if allowed.contains(&k) => {
                        attributes.insert(key.clone(), value.clone());
                    }
                    _ => {}
                }
            }
            let toxic_type = kind.toxic_type().unwrap_or("noop");
            // The proxy's own checks (status range, regexes, code names, required values), here, so a bad value
            // is an error at its place in the file rather than a fault that fails to apply mid-run.
            if errors.is_empty()
                && let Some(default) = ToxicKind::default_for(toxic_type)
                && let Err(e) = default.merged(Some(&attributes)).and_then(|k| k.check_required().map(|()| k))
            {
                let key = match &e {
                    AttributeError::Type { name, .. } if with.contains_key(name) => Some(name.clone()),
                    _ => None,
                };
                errors.push(ParamError { key, message: format!("fault `{kind}`: {e}") });
            }
            FaultParams::Toxic { toxic_type, stream: Stream::Downstream, toxicity, attributes }
        }
        _ => {
            let mut stream = Stream::Downstream;
            let mut toxicity = 1.0f32;
            let mut attributes = Map::new();
            for (key, value) in with {
                match key.as_str() {
                    "stream" => match value.as_str() {
                        Some("upstream") => stream = Stream::Upstream,
                        Some("downstream") => stream = Stream::Downstream,
                        _ => err(
                            key,
                            format!("`stream` must be upstream or downstream, found {}", show(value)),
                        ),
                    },
                    "toxicity" => match toxicity_of(value) {
                        Ok(t) => toxicity = t,
                        Err(m) => err(key, m),
                    },
                    k if allowed.contains(&k) => match integer(kind.unit(k), value) {
                        Ok(n) => {
                            attributes.insert(k.to_string(), Value::Number(Number::from(n)));
                        }
                        Err(m) => err(key, format!("`{key}`: {m}")),
                    },
                    _ => {}
                }
            }
            if kind == FaultKind::Slicer {
                let zero = |k: &str| attributes.get(k).and_then(Value::as_i64).unwrap_or(0) == 0;
                if zero("average_size") && zero("size_variation") && with.contains_key("average_size") {
                    errors.push(ParamError {
                        key: Some("average_size".into()),
                        message: "`average_size` and `size_variation` cannot both be 0".into(),
                    });
                }
            }
            let toxic_type = kind.toxic_type().unwrap_or("noop");
            FaultParams::Toxic { toxic_type, stream, toxicity, attributes }
        }
    };
    if errors.is_empty() { Ok(params) } else { Err(errors) }
}

/// `with:` read as the agent's spec of `kind`, then checked by the agent (ranges, syntax; nothing applied).
fn host_params(
    kind: chaos_agent::faults::FaultKind,
    with: &Map<String, Value>,
) -> Result<chaos_agent::spec::FaultSpec, ParamError> {
    if with.contains_key("kind") {
        return Err(ParamError {
            key: Some("kind".into()),
            message: "the fault kind comes from `fault:`; `with` takes its parameters only".into(),
        });
    }
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(kind.as_str().into()));
    object.extend(with.clone());
    let spec: chaos_agent::spec::FaultSpec = serde_json::from_value(Value::Object(object)).map_err(|e| {
        let message = e.to_string();
        // serde names the offending field in backquotes: point at it when it is one of ours.
        let key = message.split('`').nth(1).filter(|k| with.contains_key(*k)).map(str::to_string);
        ParamError { key, message: format!("`with`: {message}") }
    })?;
    spec.validate().map_err(|e| {
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

/// A non-negative integer in Toxiproxy's unit, from a number or (for times) a duration string.
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

/// Linux signal numbers by name (without `SIG`).
const SIGNALS: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// A signal from a name (`KILL`, `SIGTERM`, `int`) or a number (1..=64).
pub fn signal_number(value: &Value) -> Result<i32, String> {
    let found = match value {
        Value::Number(n) => n.as_i64().filter(|n| (1..=64).contains(n)).and_then(|n| i32::try_from(n).ok()),
        Value::String(s) => {
            let upper = s.trim().to_ascii_uppercase();
            let name = upper.strip_prefix("SIG").unwrap_or(&upper);
            SIGNALS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, number)| *number)
                .or_else(|| name.parse::<i32>().ok().filter(|n| (1..=64).contains(n)))
        }
        _ => None,
    };
    found.ok_or_else(|| {
        format!("unknown signal {} (expected a name like KILL, TERM, SIGINT or a number 1..64)", show(value))
    })
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
        for v in [json!("NOPE"), json!(0), json!(65), json!(true)] {
            assert!(signal_number(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let errors =
            params(FaultKind::Latency, &with(json!({"jitter": -1, "colour": 1, "stream": "sideways"})))
                .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
    }
}
