//! `timeout` attributes: drops all data and closes the connection after `timeout` ms idle; `0` never closes.

use serde::{Deserialize, Serialize};

use super::{Attributes, Field, Unit};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeout {
    pub timeout: i64,
}

impl Attributes for Timeout {
    const FIELDS: &'static [Field] = &[Field::new(
        "timeout",
        Unit::Millis,
        "idle time after which the connection is closed (data is dropped meanwhile); 0 never closes",
    )
    .range(0.0, f64::INFINITY)];
}
