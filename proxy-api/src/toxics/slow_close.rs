//! `slow_close` attributes: when the source ends, waits `delay` ms before the destination is closed.

use serde::{Deserialize, Serialize};

use super::{Attributes, Field, Unit};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowClose {
    pub delay: i64,
}

impl Attributes for SlowClose {
    const FIELDS: &'static [Field] =
        &[Field::new("delay", Unit::Millis, "wait before the close is passed on")
            .range(0.0, f64::INFINITY)
            .required()];
}
