//! `bandwidth` attributes: paces a direction to `rate` KB/s (KB = 1000 bytes); `0` stalls it.

use serde::{Deserialize, Serialize};

use super::{Attributes, Field, Unit};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// KB/s, KB = 1000 bytes.
    pub rate: i64,
}

impl Attributes for Bandwidth {
    const FIELDS: &'static [Field] = &[Field::new(
        "rate",
        Unit::KilobytesPerSecond,
        "throughput per connection and direction; 0 stalls the direction",
    )
    .range(0.0, f64::INFINITY)
    .required()];
}
