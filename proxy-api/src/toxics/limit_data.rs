//! `limit_data` attributes: forwards `bytes` bytes in its direction, then closes the connection.

use serde::{Deserialize, Serialize};

use super::{Attributes, Field, Unit};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitData {
    pub bytes: i64,
}

impl Attributes for LimitData {
    const FIELDS: &'static [Field] = &[Field::new(
        "bytes",
        Unit::Bytes,
        "bytes forwarded per connection and direction before it is closed",
    )
    .range(0.0, f64::INFINITY)
    .required()];
}
