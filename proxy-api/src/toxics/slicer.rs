//! `slicer` attributes: slices of about `average_size` bytes (± `size_variation`), `delay` µs apart.
//!
//! `average_size` and `size_variation` both 0 (which crashes Toxiproxy) is refused.

use serde::{Deserialize, Serialize};

use super::{AttributeError, Attributes, Field, Unit};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slicer {
    pub average_size: i64,
    pub size_variation: i64,
    /// Microseconds to wait after each slice.
    pub delay: i64,
}

impl Attributes for Slicer {
    const FIELDS: &'static [Field] = &[
        Field::new("average_size", Unit::Bytes, "mean size of a slice").range(0.0, f64::INFINITY).required(),
        Field::new("size_variation", Unit::Bytes, "spread of the slice size").range(0.0, f64::INFINITY),
        Field::new("delay", Unit::Micros, "pause after each slice").range(0.0, f64::INFINITY),
    ];

    fn validate(&self) -> Result<(), AttributeError> {
        if self.average_size < 0 || self.size_variation < 0 || self.delay < 0 {
            return Err(AttributeError::Invalid(
                "slicer attributes average_size, size_variation and delay must not be negative".into(),
            ));
        }
        if self.average_size == 0 && self.size_variation == 0 {
            return Err(AttributeError::Invalid(
                "slicer needs average_size or size_variation above 0 (both 0 would split forever)".into(),
            ));
        }
        Ok(())
    }
}
