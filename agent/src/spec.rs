//! [`FaultSpec`]: every fault the agent applies, as data (YAML or JSON), tagged by `kind`.
//!
//! ```yaml
//! kind: cpu-stress
//! workers: 2
//! load: 80
//! ```
//!
//! The spec is what `chaos agent inject` reads, what the engine builds from an experiment step, and what the
//! controller will send to a remote agent. Each kind's fields are those of its module's struct
//! ([`crate::stress`], [`crate::net`]); process faults take a [`ProcessSelector`] `target` and a `count`.
//!
//! [`FaultKind::fields`] describes every kind's fields once, as data ([`Field`]: name, unit, range, default,
//! one-line doc, an example value): the experiment format, its JSON Schema and the fault reference read it, and
//! a test proves each field reaches [`FaultSpec`] from an experiment.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::faults::FaultKind;
use crate::process::ProcessSelector;
use crate::{AgentError, Count, Signal, net, stress};

/// One fault, tagged by `kind` (`process-kill`, `cpu-stress`, `network-partition`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultSpec {
    /// Sends `signal` (default `KILL`) once to the chosen processes; nothing to revert.
    ProcessKill {
        target: ProcessSelector,
        /// `2` (exactly two; fewer matches is an error) or `"30%"` of the matches (at least one). Default 1.
        #[serde(default = "one")]
        count: CountSpec,
        #[serde(default = "default_signal")]
        signal: String,
    },
    /// SIGSTOP to the chosen processes; SIGCONT on revert.
    ProcessPause {
        target: ProcessSelector,
        #[serde(default = "one")]
        count: CountSpec,
    },
    CpuStress(stress::CpuStress),
    MemoryStress(stress::MemoryStress),
    DiskFill(stress::DiskFill),
    IoStress(stress::IoStress),
    NetworkPartition(net::Partition),
    NetworkLoss(net::Loss),
    NetworkBandwidth(net::Bandwidth),
    NetworkLatency(net::Latency),
}

/// One field of a fault spec, described as data for the layers that read specs from other formats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Field {
    /// The field's name in the spec (and in an experiment's `with:`).
    pub name: &'static str,
    pub unit: Unit,
    /// Inclusive bounds the agent accepts, for numbers.
    pub range: Option<(f64, f64)>,
    /// What an absent field means; `None` when the field is required.
    pub default: Option<&'static str>,
    /// One line for the fault reference.
    pub doc: &'static str,
    /// A valid value other than the default, as YAML: the reference shows it and a test sends it end to end.
    pub example: &'static str,
}

/// The unit or shape of a spec field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// An integer count (workers).
    Count,
    /// A number of percent, 0 to 100.
    Percent,
    /// Bytes as an integer or with a unit (`512MiB`), or a percentage (`10%`) of what the fault measures.
    Size,
    /// An integer number of bytes.
    Bytes,
    /// Integer milliseconds.
    Millis,
    /// A bit rate in tc's syntax (`1mbit`, `500kbit`) or an integer of bits per second.
    BitRate,
    /// A filesystem path.
    Path,
    /// A name (a network device, a network namespace).
    Name,
    /// A signal name or number the agent can send ([`Signal::parse`]).
    Signal,
    /// A process selector (`name`, `cmdline`, `pid`, `pidfile`, `user`).
    Processes,
    /// How many of the selected processes: an integer or a percentage.
    ProcessCount,
    /// A packet filter (`direction`, `hosts`, `ports`, `protocol`).
    Filter,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Count => "count",
            Unit::Percent => "percent",
            Unit::Size => "size (512MiB, 10%)",
            Unit::Bytes => "bytes",
            Unit::Millis => "ms",
            Unit::BitRate => "bit rate (1mbit)",
            Unit::Path => "path",
            Unit::Name => "name",
            Unit::Signal => "signal (KILL, TERM, 1..=31)",
            Unit::Processes => "process selector",
            Unit::ProcessCount => "count or percentage",
            Unit::Filter => "packet filter",
        })
    }
}

impl Field {
    const fn new(name: &'static str, unit: Unit, doc: &'static str, example: &'static str) -> Field {
        Field { name, unit, range: None, default: None, doc, example }
    }

    const fn range(self, min: f64, max: f64) -> Field {
        Field { range: Some((min, max)), ..self }
    }

    const fn default(self, default: &'static str) -> Field {
        Field { default: Some(default), ..self }
    }

    /// Whether a spec must set this field.
    pub fn required(&self) -> bool {
        self.default.is_none()
    }
}

const TARGET: Field = Field::new(
    "target",
    Unit::Processes,
    "which processes (name, cmdline, pid, pidfile, user)",
    "{ name: sleep }",
);
const COUNT: Field = Field::new(
    "count",
    Unit::ProcessCount,
    "how many of the matches: exactly N (fewer is an error) or a percentage (at least one)",
    "\"50%\"",
)
.default("1");
const NETNS: Field =
    Field::new("netns", Unit::Name, "a named network namespace (/run/netns/NAME)", "chaos-walk")
        .default("the agent's own");
const FILTER: Field = Field::new(
    "filter",
    Unit::Filter,
    "which packets: direction (egress, ingress, both), hosts (addresses, CIDRs), ports, protocol (tcp, udp, any)",
    "{ direction: egress, hosts: [10.9.9.9], ports: [9], protocol: udp }",
)
.default("every packet but loopback, both ways");
const DEVICE: Field = Field::new("device", Unit::Name, "the network device whose egress is shaped", "lo");

/// A `&'static [Field]` of constant entries (a `const` item, since calls to `const fn` are not promoted).
macro_rules! table {
    ($($field:expr),* $(,)?) => {{
        const FIELDS: &[Field] = &[$($field),*];
        FIELDS
    }};
}

impl FaultKind {
    /// The fields of this kind's spec (besides `kind`), as data, in the order the reference lists them.
    pub fn fields(self) -> &'static [Field] {
        match self {
            FaultKind::ProcessKill => table![
                TARGET,
                COUNT,
                Field::new(
                    "signal",
                    Unit::Signal,
                    "the signal sent once: a name (KILL, SIGTERM, int) or a standard signal number 1..=31",
                    "TERM",
                )
                .default("KILL"),
            ],
            FaultKind::ProcessPause => table![TARGET, COUNT],
            FaultKind::CpuStress => table![
                Field::new("workers", Unit::Count, "spinning workers", "2")
                    .range(1.0, 1024.0)
                    .default("one per CPU this process may run on"),
                Field::new("load", Unit::Percent, "percent of each period a worker spins", "40")
                    .range(1.0, 100.0)
                    .default("100"),
            ],
            FaultKind::MemoryStress => table![Field::new(
                "size",
                Unit::Size,
                "memory mapped and touched; a percentage is of MemTotal",
                "1MiB",
            )],
            FaultKind::DiskFill => table![
                Field::new(
                    "path",
                    Unit::Path,
                    "an existing directory the fill file is created in (in a pod: the container's path, on one of its volumes or in its root filesystem)",
                    "/tmp"
                ),
                Field::new("size", Unit::Size, "bytes allocated; a percentage is of the free space", "1MiB"),
            ],
            FaultKind::IoStress => table![
                Field::new(
                    "path",
                    Unit::Path,
                    "an existing directory the workers write in (the node's, also for a pod)",
                    "/tmp"
                ),
                Field::new("workers", Unit::Count, "writing workers", "2").range(1.0, 1024.0).default("1"),
                Field::new("block_size", Unit::Size, "bytes per write, at most file_size and 64 MiB", "4KiB")
                    .default("64KiB"),
                Field::new("file_size", Unit::Size, "bytes of each worker's file", "1MiB").default("64MiB"),
            ],
            FaultKind::NetworkPartition => table![NETNS, FILTER],
            FaultKind::NetworkLoss => table![
                NETNS,
                FILTER,
                Field::new(
                    "percent",
                    Unit::Percent,
                    "share of matching packets dropped, at most two decimals",
                    "30"
                )
                .range(0.01, 100.0),
            ],
            FaultKind::NetworkBandwidth => table![
                NETNS,
                DEVICE,
                Field::new("rate", Unit::BitRate, "egress rate, 8kbit to 100gbit", "1mbit"),
                Field::new(
                    "burst_bytes",
                    Unit::Bytes,
                    "bytes sent at full speed before the rate applies",
                    "65536"
                )
                .default("10 ms worth of the rate, at least 16 KiB"),
                Field::new(
                    "latency_ms",
                    Unit::Millis,
                    "longest a packet may queue before it is dropped",
                    "100"
                )
                .default("50"),
            ],
            FaultKind::NetworkLatency => table![
                NETNS,
                DEVICE,
                Field::new("delay_ms", Unit::Millis, "delay added to every packet sent", "100")
                    .range(1.0, 60000.0),
                Field::new(
                    "jitter_ms",
                    Unit::Millis,
                    "uniform variation, at most delay_ms (reorders packets)",
                    "10"
                )
                .default("0"),
                Field::new(
                    "correlation",
                    Unit::Percent,
                    "how much a packet's jitter follows the previous one's",
                    "25"
                )
                .range(0.0, 100.0)
                .default("0"),
            ],
        }
    }
}

/// [`Count`] as written in a spec: an integer or a percentage string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountSpec(pub Count);

fn default_signal() -> String {
    "KILL".into()
}

fn one() -> CountSpec {
    CountSpec(Count::Exactly(1))
}

// === impl FaultSpec ===

impl FaultSpec {
    pub fn kind(&self) -> FaultKind {
        match self {
            FaultSpec::ProcessKill { .. } => FaultKind::ProcessKill,
            FaultSpec::ProcessPause { .. } => FaultKind::ProcessPause,
            FaultSpec::CpuStress(_) => FaultKind::CpuStress,
            FaultSpec::MemoryStress(_) => FaultKind::MemoryStress,
            FaultSpec::DiskFill(_) => FaultKind::DiskFill,
            FaultSpec::IoStress(_) => FaultKind::IoStress,
            FaultSpec::NetworkPartition(_) => FaultKind::NetworkPartition,
            FaultSpec::NetworkLoss(_) => FaultKind::NetworkLoss,
            FaultSpec::NetworkBandwidth(_) => FaultKind::NetworkBandwidth,
            FaultSpec::NetworkLatency(_) => FaultKind::NetworkLatency,
        }
    }

    /// Checks every field that can be checked without the policy; changes nothing.
    pub fn validate(&self) -> Result<(), AgentError> {
        match self {
            FaultSpec::ProcessKill { target, count, signal } => {
                Signal::parse(signal)?;
                target.validate()?;
                count.0.validate()
            }
            FaultSpec::ProcessPause { target, count } => {
                target.validate()?;
                count.0.validate()
            }
            FaultSpec::CpuStress(s) => s.validate(),
            FaultSpec::MemoryStress(s) => s.validate(),
            FaultSpec::DiskFill(s) => s.validate(),
            FaultSpec::IoStress(s) => s.validate(),
            FaultSpec::NetworkPartition(s) => s.validate(),
            FaultSpec::NetworkLoss(s) => s.validate(),
            FaultSpec::NetworkBandwidth(s) => s.validate(),
            FaultSpec::NetworkLatency(s) => s.validate(),
        }
    }

    /// [`Self::validate`] without what depends on the host that applies the fault (a fill or IO stress
    /// directory existing there): what a controller can check of a fault another machine, or a container, will
    /// apply.
    pub fn validate_shape(&self) -> Result<(), AgentError> {
        match self {
            FaultSpec::DiskFill(s) => s.validate_shape(),
            FaultSpec::IoStress(s) => s.validate_shape(),
            other => other.validate(),
        }
    }

    /// Reads a spec from YAML or JSON text; errors name the line and column of what is wrong.
    pub fn parse(text: &str) -> Result<FaultSpec, AgentError> {
        serde_saphyr::from_str::<FaultSpec>(text).map_err(|first| {
            // The derived reader buffers the whole map to find `kind` first, and a buffered value has lost its
            // position: an unknown field or a bad count would be reported without a line. So read the fields of
            // the kind again from the text itself, only for an error that has one; else keep the first error.
            let located = kind_of(text).and_then(|kind| {
                serde_saphyr::with_deserializer_from_str(text, |d| {
                    serde::de::DeserializeSeed::deserialize(located::Fields(kind), d)
                })
                .err()
            });
            AgentError::invalid("fault spec", located.unwrap_or(first).to_string())
        })
    }
}

/// The `kind` of a spec as written, `None` when it is missing or unknown (the derived reader's error then says
/// so, with its position and the kinds there are).
fn kind_of(text: &str) -> Option<FaultKind> {
    #[derive(Deserialize)]
    struct KindOnly {
        kind: String,
    }
    let KindOnly { kind } = serde_saphyr::from_str::<KindOnly>(text).ok()?;
    FaultKind::parse(&kind).ok()
}

/// The fields of one kind, read in place from a map that also holds `kind` (wherever it is), so each error
/// carries the position of what it is about. The values are dropped: see [`FaultSpec::parse`].
mod located {
    use std::fmt;

    use serde::de::value::MapAccessDeserializer;
    use serde::de::{DeserializeSeed, Error, IgnoredAny, IntoDeserializer, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    use super::{CountSpec, default_signal, one};
    use crate::faults::FaultKind;
    use crate::process::ProcessSelector;
    use crate::{net, stress};

    /// The fields of [`super::FaultSpec::ProcessKill`], as the derive reads them there (keep in step).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct KillFields {
        #[serde(rename = "target")]
        _target: ProcessSelector,
        #[serde(rename = "count", default = "one")]
        _count: CountSpec,
        #[serde(rename = "signal", default = "default_signal")]
        _signal: String,
    }

    /// The fields of [`super::FaultSpec::ProcessPause`] (keep in step).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PauseFields {
        #[serde(rename = "target")]
        _target: ProcessSelector,
        #[serde(rename = "count", default = "one")]
        _count: CountSpec,
    }

    /// Reads the fields of kind `.0` from a map.
    pub(super) struct Fields(pub(super) FaultKind);

    impl<'de> DeserializeSeed<'de> for Fields {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Fields {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "the fields of a {} fault", self.0)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            let rest = MapAccessDeserializer::new(WithoutKind(map));
            match self.0 {
                FaultKind::ProcessKill => KillFields::deserialize(rest).map(drop),
                FaultKind::ProcessPause => PauseFields::deserialize(rest).map(drop),
                FaultKind::CpuStress => stress::CpuStress::deserialize(rest).map(drop),
                FaultKind::MemoryStress => stress::MemoryStress::deserialize(rest).map(drop),
                FaultKind::DiskFill => stress::DiskFill::deserialize(rest).map(drop),
                FaultKind::IoStress => stress::IoStress::deserialize(rest).map(drop),
                FaultKind::NetworkPartition => net::Partition::deserialize(rest).map(drop),
                FaultKind::NetworkLoss => net::Loss::deserialize(rest).map(drop),
                FaultKind::NetworkBandwidth => net::Bandwidth::deserialize(rest).map(drop),
                FaultKind::NetworkLatency => net::Latency::deserialize(rest).map(drop),
            }
        }
    }

    /// A map with its `kind` entry skipped.
    struct WithoutKind<A>(A);

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutKind<A> {
        type Error = A::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
            let mut seed = Some(seed);
            loop {
                match self.0.next_key_seed(Key(&mut seed))? {
                    None => return Ok(None),
                    Some(Some(key)) => return Ok(Some(key)),
                    Some(None) => {
                        self.0.next_value::<IgnoredAny>()?;
                    }
                }
            }
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
            self.0.next_value_seed(seed)
        }
    }

    /// Reads one key; `None` for `kind`. The field's own seed reads the others inside the format's key, so an
    /// unknown field is reported where it is written.
    struct Key<'a, K>(&'a mut Option<K>);

    impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for Key<'_, K> {
        type Value = Option<K::Value>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<K::Value>, D::Error> {
            let key = String::deserialize(d)?;
            if key == "kind" {
                return Ok(None);
            }
            let seed = self.0.take().ok_or_else(|| D::Error::custom("a key was read twice"))?;
            seed.deserialize(key.into_deserializer()).map(Some)
        }
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => f.write_str(&json),
            Err(_) => write!(f, "{}", self.kind()),
        }
    }
}

// === impl CountSpec ===

impl CountSpec {
    /// Reads `2`, `"2"` or `"30%"`; refuses zero, a percentage outside `(0%, 100%]`, and anything else, with a
    /// message that quotes what was written.
    fn parse(text: &str) -> Result<CountSpec, AgentError> {
        let trimmed = text.trim();
        let count = if let Some(number) = trimmed.strip_suffix('%') {
            match number.trim().parse::<f64>() {
                Ok(percent) if percent > 0.0 && percent <= 100.0 => Count::Percent(percent / 100.0),
                Ok(_) => {
                    return Err(AgentError::invalid(
                        "count",
                        format!("expected a percentage above 0% and at most 100%, found {text:?}"),
                    ));
                }
                Err(_) => return Err(bad_count(text)),
            }
        } else {
            match trimmed.parse::<u32>() {
                Ok(0) => {
                    return Err(AgentError::invalid("count", "expected at least 1 process, found 0"));
                }
                Ok(n) => Count::Exactly(n),
                Err(_) => return Err(bad_count(text)),
            }
        };
        count.validate()?;
        Ok(CountSpec(count))
    }
}

fn bad_count(found: &str) -> AgentError {
    AgentError::invalid(
        "count",
        format!("expected a number of processes or a percentage like \"30%\", found {found:?}"),
    )
}

impl Serialize for CountSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Count::Exactly(n) => s.serialize_u32(n),
            // 0.07 × 100 is 7.000000000000001: round off the floating-point noise so "7%" reads back as written.
            Count::Percent(p) => s.serialize_str(&format!("{}%", (p * 100.0 * 1e9).round() / 1e9)),
        }
    }
}

impl<'de> Deserialize<'de> for CountSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CountVisitor)
    }
}

/// Accepts an integer or a string; a negative or fractional number gets the same message as any bad count.
struct CountVisitor;

impl serde::de::Visitor<'_> for CountVisitor {
    type Value = CountSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of processes or a percentage like \"30%\"")
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<CountSpec, E> {
        CountSpec::parse(&n.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<CountSpec, E> {
        CountSpec::parse(&n.to_string()).map_err(E::custom)
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<CountSpec, E> {
        CountSpec::parse(&n.to_string()).map_err(E::custom)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<CountSpec, E> {
        CountSpec::parse(text).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeSeed;
    use serde_json::json;

    use super::*;

    /// The table and the spec agree: every field the table lists parses into the spec with its example, and
    /// every field the spec shows back is in the table (so a field added to a struct without a table entry, or
    /// the other way round, fails here).
    #[test]
    fn every_kind_s_table_names_exactly_the_spec_s_fields() {
        for kind in FaultKind::ALL {
            let mut text = format!("kind: {kind}\n");
            for field in kind.fields() {
                text.push_str(&format!("{}: {}\n", field.name, field.example));
            }
            let spec = FaultSpec::parse(&text).unwrap_or_else(|e| panic!("{kind}: {e}\n{text}"));
            // The reader's own list of fields (serde names them when it refuses an unknown one), so a field the
            // spec hides when unset cannot be missing from the table unnoticed.
            let probe = json!({"kind": kind.as_str(), "no-such-field": 1});
            let refused = serde_json::from_value::<FaultSpec>(probe).unwrap_err().to_string();
            let mut expected: Vec<&str> =
                refused.split("expected").nth(1).unwrap_or("").split('`').skip(1).step_by(2).collect();
            let mut table: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
            expected.sort_unstable();
            table.sort_unstable();
            assert_eq!(expected, table, "{kind}: {refused}");
            let shown = serde_json::to_value(&spec).unwrap();
            let mut shown: Vec<&str> =
                shown.as_object().unwrap().keys().map(String::as_str).filter(|k| *k != "kind").collect();
            let mut listed: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
            shown.sort_unstable();
            listed.sort_unstable();
            assert_eq!(shown, listed, "{kind}");
            for field in kind.fields() {
                if let (Some((min, max)), Ok(n)) = (field.range, field.example.parse::<f64>()) {
                    assert!((min..=max).contains(&n), "{kind}.{}: example {n} outside its range", field.name);
                }
            }
        }
    }

    /// The kill signal's range is the agent's: the 31 standard signals, by number or name; real-time signals
    /// (32..=64) are refused, because the agent sends a `nix::sys::signal::Signal`, which has none.
    #[test]
    fn kill_accepts_the_standard_signals_only() {
        let spec = |signal: &str| FaultSpec::ProcessKill {
            target: ProcessSelector { pid: Some(5), ..ProcessSelector::default() },
            count: CountSpec(Count::Exactly(1)),
            signal: signal.into(),
        };
        for n in 1..=31 {
            assert!(spec(&n.to_string()).validate().is_ok(), "{n}");
        }
        for n in [0, 32, 34, 40, 64, 65] {
            let err = spec(&n.to_string()).validate().unwrap_err().to_string();
            assert!(err.contains("between 1 and 31"), "{n}: {err}");
        }
    }

    /// The mirrors `located` reads the process kinds with accept every field the spec has.
    #[test]
    fn located_fields_accept_every_field_of_the_process_kinds() {
        let target = ProcessSelector { pid: Some(5), ..ProcessSelector::default() };
        let specs = [
            FaultSpec::ProcessKill {
                target: target.clone(),
                count: CountSpec(Count::Exactly(2)),
                signal: "TERM".into(),
            },
            FaultSpec::ProcessPause { target, count: CountSpec(Count::Percent(0.3)) },
        ];
        for spec in specs {
            let text = spec.to_string();
            assert_eq!(FaultSpec::parse(&text).unwrap(), spec);
            serde_saphyr::with_deserializer_from_str(&text, |d| located::Fields(spec.kind()).deserialize(d))
                .unwrap();
        }
    }
}
