//! `reset_peer` attributes: on the first chunk, waits `timeout` ms and then resets the connection (TCP RST).

use serde::{Deserialize, Serialize};

use super::{Attributes, Field, Unit};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResetPeer {
    pub timeout: i64,
}

impl Attributes for ResetPeer {
    const FIELDS: &'static [Field] = &[Field::new(
        "timeout",
        Unit::Millis,
        "wait after the first chunk before the reset; 0 resets at once",
    )
    .range(0.0, f64::INFINITY)];
}
