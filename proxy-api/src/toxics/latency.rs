//! `latency` attributes: `latency` ± `jitter` ms per chunk, drawn from `distribution`.
//!
//! Toxiproxy semantics: delays are not cumulative (writes 10 ms apart with 100 ms latency arrive 100 ms after
//! each was sent), order is kept, chained latency toxics add up, and a deep queue keeps throughput uncapped.
//! Beyond Toxiproxy, `distribution` picks how the delay is drawn: `uniform` (Toxiproxy's integer
//! `latency + U[-jitter, jitter)`), `normal` (mean `latency`, standard deviation `jitter`), `pareto` (minimum
//! `latency`, mean `latency + jitter`: a long tail) or `lognormal` (median `latency`, standard deviation `jitter`).
//! The proxy draws the delays (`chaos_proxy::toxics::Sample`).

use serde::{Deserialize, Serialize};

use super::{Attributes, Field, Unit};

/// How a latency toxic draws each chunk's delay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    #[default]
    Uniform,
    Normal,
    Pareto,
    Lognormal,
}

impl Distribution {
    /// The names the API takes, the default first.
    pub const NAMES: &'static [&'static str] = &["uniform", "normal", "pareto", "lognormal"];

    pub fn is_uniform(&self) -> bool {
        *self == Distribution::Uniform
    }
}

/// The `distribution` attribute, shared with `http_delay`.
pub(crate) const DISTRIBUTION: Field = Field::new(
    "distribution",
    Unit::Enum(Distribution::NAMES),
    "how each delay is drawn: uniform ± jitter, normal (sd jitter), pareto (mean latency + jitter), lognormal",
);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub latency: i64,
    pub jitter: i64,
    /// Only shown when not `uniform`, so Toxiproxy clients that read attributes as integers keep working.
    #[serde(default, skip_serializing_if = "Distribution::is_uniform")]
    pub distribution: Distribution,
}

impl Attributes for Latency {
    const FIELDS: &'static [Field] = &[
        Field::new("latency", Unit::Millis, "delay added to every chunk")
            .range(0.0, f64::INFINITY)
            .required(),
        Field::new("jitter", Unit::Millis, "spread of the delay").range(0.0, f64::INFINITY),
        DISTRIBUTION,
    ];
}
