//! [`Field`]: one toxic attribute described as data (name, unit, range, doc), the table every other layer reads.
//!
//! Each attribute struct lists its fields once, in [`Attributes::FIELDS`](super::Attributes::FIELDS), next to the
//! struct itself. The merge accepts exactly those names; the experiment format, its JSON Schema, `chaos validate`,
//! the dry-run plan and the fault reference read the same entries, so a new attribute reaches all of them or a
//! test fails. Defaults are not written here: they are what the struct's `Default` shows
//! ([`ToxicKind::default_attribute`](super::ToxicKind::default_attribute)).

use std::fmt;

/// One attribute of a toxic type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Field {
    /// The attribute's name in the API's `attributes` map (and in an experiment's `with:`).
    pub name: &'static str,
    /// What the value means; decides how other formats (durations like `300ms`, `5%`) convert to it.
    pub unit: Unit,
    /// Inclusive bounds of the meaningful values. The proxy itself clamps a negative time or size to 0 as
    /// Toxiproxy does; experiments refuse values outside.
    pub range: Option<(f64, f64)>,
    /// Whether the toxic does nothing, or is refused by the proxy, without this attribute: an experiment must
    /// set it.
    pub required: bool,
    /// One line for the fault reference.
    pub doc: &'static str,
}

/// The unit or shape of an attribute's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Integer milliseconds.
    Millis,
    /// Integer microseconds.
    Micros,
    /// Integer kilobytes per second (KB = 1000 bytes).
    KilobytesPerSecond,
    /// An integer number of bytes.
    Bytes,
    /// A number from 0 to 100.
    Percent,
    /// A non-negative integer count.
    Count,
    /// Free text.
    Text,
    /// One of these names.
    Enum(&'static [&'static str]),
    /// An HTTP status code.
    HttpStatus,
    /// A gRPC status code: a number or its name.
    GrpcCode,
    /// An HTTP method name.
    HttpMethod,
    /// A URL path starting with `/`.
    Path,
    /// A regular expression.
    Regex,
    /// A map of HTTP header name to exact value.
    HeaderValues,
    /// A map of HTTP header name to regular expression.
    HeaderRegexes,
}

impl Unit {
    /// Whether values are integers (times, sizes, rates, counts, statuses).
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            Unit::Millis
                | Unit::Micros
                | Unit::KilobytesPerSecond
                | Unit::Bytes
                | Unit::Count
                | Unit::HttpStatus
        )
    }

    /// The JSON type of the value: `integer`, `number`, `string` or `object` (a gRPC code is either of two).
    pub fn json_type(self) -> &'static str {
        match self {
            _ if self.is_integer() => "integer",
            Unit::Percent => "number",
            Unit::HeaderValues | Unit::HeaderRegexes => "object",
            Unit::GrpcCode => "integer or string",
            _ => "string",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Millis => f.write_str("ms"),
            Unit::Micros => f.write_str("µs"),
            Unit::KilobytesPerSecond => f.write_str("KB/s"),
            Unit::Bytes => f.write_str("bytes"),
            Unit::Percent => f.write_str("percent"),
            Unit::Count => f.write_str("count"),
            Unit::Text => f.write_str("text"),
            Unit::Enum(names) => write!(f, "one of {}", names.join(", ")),
            Unit::HttpStatus => f.write_str("http status"),
            Unit::GrpcCode => f.write_str("grpc code (0..=16 or a name)"),
            Unit::HttpMethod => f.write_str("http method"),
            Unit::Path => f.write_str("path"),
            Unit::Regex => f.write_str("regex"),
            Unit::HeaderValues => f.write_str("header → value"),
            Unit::HeaderRegexes => f.write_str("header → regex"),
        }
    }
}

impl Field {
    /// An optional attribute with no bounds beyond its unit's.
    pub const fn new(name: &'static str, unit: Unit, doc: &'static str) -> Field {
        Field { name, unit, range: None, required: false, doc }
    }

    /// This field with inclusive bounds.
    pub const fn range(self, min: f64, max: f64) -> Field {
        Field { range: Some((min, max)), ..self }
    }

    /// This field, required.
    pub const fn required(self) -> Field {
        Field { required: true, ..self }
    }
}
