//! The experiment as written: plain serde data (`deny_unknown_fields`), with checked value types
//! ([`Duration`], [`Percent`], [`Rate`]) that refuse bad values while parsing, so errors carry a position.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

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
    /// How many of the matched processes (or, for a `hosts` target, agents) a fault hits: a number (`2`) or a
    /// percentage (`"50%"`).
    #[serde(default)]
    pub count: Option<Count>,
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

/// A number of targets or a percentage of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Count {
    Exactly(u32),
    Percent(Percent),
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

/// A service level objective judged over the run.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub name: String,
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
    pub source: Source,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Latency,
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
#[schemars(transform = super::faults::with_schemas)]
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
    pub(crate) checked: Option<super::checked::CheckedFault>,
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
}

/// Multi-window burn-rate tripwire: abort when both the window and window/12 burn faster than `burn_rate`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tripwire {
    pub window: Duration,
    pub burn_rate: f64,
}

// === checked values ===

/// A duration written `250ms`, `30s`, `5m`, `1h` (or a bare number of seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

/// A percentage written `99.5%` (or a fraction `0.995`), kept as a fraction in 0..=1.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

/// A saturation ceiling written `90%` or `150%` (or a fraction up to 1, `0.9`), kept as a fraction ≥ 0.
/// Unlike a [`Percent`] it may exceed 100%, which `host: load` can reach; above 100% it must be written with
/// `%`, so a bare `90` (meant as 90%) is refused rather than read as 9000%.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Ceiling(pub f64);

/// A rate written `50/s`, `600/m` or `2/ms`, kept as events per second.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Rate(pub f64);

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let value: f64 =
            number.parse().map_err(|_| format!("expected a duration like 250ms, 30s or 5m, found {s:?}"))?;
        let seconds = match unit.trim() {
            // A bare number is seconds to one reader and milliseconds to another (Toxiproxy's attributes are
            // milliseconds): only zero may go without a unit.
            "" if value == 0.0 => 0.0,
            "" => {
                return Err(format!(
                    "a duration needs a unit: write {number}ms or {number}s (ms, s, m or h), found {s:?}"
                ));
            }
            "s" => value,
            "ms" => value / 1000.0,
            "us" | "µs" => value / 1e6,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            other => return Err(format!("unknown duration unit {other:?} in {s:?} (use ms, s, m or h)")),
        };
        if !seconds.is_finite() || !(0.0..=366.0 * 86400.0).contains(&seconds) {
            return Err(format!("duration {s:?} is out of range"));
        }
        Ok(Duration(std::time::Duration::from_secs_f64(seconds)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1000.0;
        if ms < 1000.0 || ms.fract() != 0.0 && ms < 10_000.0 {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000.0)
        }
    }
}

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let fraction = match t.strip_suffix('%') {
            // Shifting the decimal point in the text keeps `99.9%` exactly the double nearest 0.999.
            Some(p) => match shift_decimal(p.trim(), -2) {
                Some(shifted) => shifted.parse::<f64>(),
                None => p.trim().parse::<f64>().map(|v| v / 100.0),
            },
            None => t.parse::<f64>(),
        }
        .map_err(|_| format!("expected a percentage like 99.5%, found {s:?}"))?;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(format!("percentage {s:?} is outside 0%..100%"));
        }
        Ok(Percent(fraction))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_percent(f, self.0)
    }
}

impl FromStr for Ceiling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let Some(p) = t.strip_suffix('%') else {
            // A bare fraction, as for a `Percent`: at most 1.
            return t.parse::<Percent>().map(|p| Ceiling(p.0)).map_err(|_| {
                format!("expected a percentage like 90% (above 100% only with the % sign), found {s:?}")
            });
        };
        let fraction = match shift_decimal(p.trim(), -2) {
            Some(shifted) => shifted.parse::<f64>(),
            None => p.trim().parse::<f64>().map(|v| v / 100.0),
        }
        .map_err(|_| format!("expected a percentage like 90%, found {s:?}"))?;
        if !fraction.is_finite() || fraction < 0.0 {
            return Err(format!("percentage {s:?} must be 0% or more"));
        }
        Ok(Ceiling(fraction))
    }
}

impl fmt::Display for Ceiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_percent(f, self.0)
    }
}

/// `fraction` as a percentage, by shifting the fraction's shortest text, so that the text reads back as the
/// same value.
fn write_percent(f: &mut fmt::Formatter<'_>, fraction: f64) -> fmt::Result {
    let fraction = fraction.to_string();
    match shift_decimal(&fraction, 2) {
        Some(percent) => write!(f, "{percent}%"),
        None => write!(f, "{fraction}"),
    }
}

/// Moves the decimal point of a plain decimal (`99.5`) by `places` (positive: right), in the text.
/// `None` for anything but digits with at most one point.
fn shift_decimal(s: &str, places: i32) -> Option<String> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let point = i32::try_from(int.len()).ok()? + places;
    let len = i32::try_from(digits.len()).ok()?;
    let (int, frac) = if point <= 0 {
        ("0".to_string(), format!("{}{digits}", "0".repeat(usize::try_from(-point).ok()?)))
    } else if point >= len {
        (format!("{digits}{}", "0".repeat(usize::try_from(point - len).ok()?)), String::new())
    } else {
        let at = usize::try_from(point).ok()?;
        (digits[..at].to_string(), digits[at..].to_string())
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    Some(if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") })
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (n, unit) = t.split_once('/').ok_or_else(|| format!("expected a rate like 50/s, found {s:?}"))?;
        let n: f64 = n.trim().parse().map_err(|_| format!("expected a rate like 50/s, found {s:?}"))?;
        let per_second = match unit.trim() {
            "s" => n,
            "m" => n / 60.0,
            "ms" => n * 1000.0,
            other => return Err(format!("unknown rate unit {other:?} in {s:?} (use /s, /m or /ms)")),
        };
        if !per_second.is_finite() || per_second <= 0.0 || per_second > 1_000_000.0 {
            return Err(format!("rate {s:?} must be above 0 and at most 1000000/s"));
        }
        Ok(Rate(per_second))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

/// Serde for the checked types: strings (or numbers) in, the canonical string out.
macro_rules! serde_via_str {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = StrOrNumber::deserialize(d)?;
                raw.0.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}
serde_via_str!(Duration);
serde_via_str!(Percent);
serde_via_str!(Ceiling);
serde_via_str!(Rate);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = StrOrNumber::deserialize(d)?.0;
        if raw.trim().ends_with('%') {
            return raw.parse().map(Count::Percent).map_err(serde::de::Error::custom);
        }
        raw.trim()
            .parse()
            .map(Count::Exactly)
            .map_err(|_| serde::de::Error::custom(format!("expected a count like 2 or 50%, found {raw:?}")))
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Exactly(n) => s.serialize_u32(*n),
            Count::Percent(p) => s.collect_str(p),
        }
    }
}

/// Accepts `30s` or `30` alike.
struct StrOrNumber(String);

impl<'de> Deserialize<'de> for StrOrNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StrOrNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// === JSON Schema of the checked values ===

/// The patterns the checked values are written in (the parsers are the authority; these serve editors).
/// Each also accepts a string holding a `${variable}`, checked once substituted.
pub mod patterns {
    pub const DURATION: &str = r"^\s*([0-9]+(\.[0-9]*)?\s*(us|µs|ms|s|m|h)|0+(\.0*)?)\s*$|\$\{[^}]+\}";
    pub const PERCENT: &str = r"^\s*([0-9]+(\.[0-9]*)?\s*%|0(\.[0-9]*)?|1(\.0*)?)\s*$|\$\{[^}]+\}";
    pub const RATE: &str = r"^\s*[0-9]+(\.[0-9]*)?\s*/\s*(s|m|ms)\s*$|\$\{[^}]+\}";
    pub const COUNT: &str = r"^\s*([0-9]+|[0-9]+(\.[0-9]*)?\s*%)\s*$|\$\{[^}]+\}";
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number with a unit (us, ms, s, m, h); only 0 may go without one.",
            "type": ["string", "integer"],
            "pattern": patterns::DURATION,
            "minimum": 0,
            "maximum": 0,
            "examples": ["250ms", "30s", "5m", "1h"],
        })
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A percentage (`99.5%`) or a fraction from 0 to 1 (`0.995`).",
            "type": ["string", "number"],
            "pattern": patterns::PERCENT,
            "minimum": 0,
            "maximum": 1,
            "examples": ["99.5%", "50%", 0.995],
        })
    }
}

impl JsonSchema for Ceiling {
    fn schema_name() -> Cow<'static, str> {
        "Ceiling".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A saturation ceiling: a percentage (also above 100%) or a fraction up to 1.",
            "type": ["string", "number"],
            "pattern": patterns::PERCENT,
            "minimum": 0,
            "maximum": 1,
            "examples": ["90%", "150%", 0.9],
        })
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Events per unit of time: per second (`/s`), minute (`/m`) or millisecond (`/ms`).",
            "type": "string",
            "pattern": patterns::RATE,
            "examples": ["50/s", "600/m"],
        })
    }
}

impl JsonSchema for Count {
    fn schema_name() -> Cow<'static, str> {
        "Count".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of matched processes (`2`) or a percentage of them (`50%`).",
            "type": ["integer", "string"],
            "minimum": 1,
            "pattern": patterns::COUNT,
            "examples": [1, "50%"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ceiling_may_exceed_100_percent_when_written_as_a_percentage() {
        assert_eq!("90%".parse(), Ok(Ceiling(0.9)));
        assert_eq!("150%".parse(), Ok(Ceiling(1.5)));
        assert_eq!(" 10000 % ".parse(), Ok(Ceiling(100.0)));
        assert_eq!("0.9".parse(), Ok(Ceiling(0.9)));
        assert_eq!("1".parse(), Ok(Ceiling(1.0)));
        for text in ["90%", "150%", "12.5%", "0.390625%", "10000%"] {
            assert_eq!(text.parse::<Ceiling>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn a_bare_number_above_one_or_a_negative_ceiling_is_refused() {
        assert_eq!(
            "90".parse::<Ceiling>(),
            Err("expected a percentage like 90% (above 100% only with the % sign), found \"90\"".into())
        );
        assert_eq!("-5%".parse::<Ceiling>(), Err("percentage \"-5%\" must be 0% or more".into()));
        for bad in ["inf%", "NaN%", "%", "ninety%", "soon"] {
            assert!(bad.parse::<Ceiling>().is_err(), "{bad}");
        }
    }
}
