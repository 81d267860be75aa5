//! Toxics as data: each type's attributes ([`ToxicKind`]), their table ([`Field`]), and how attributes sent
//! through the admin API are merged and checked.
//!
//! A toxic is configured through the admin API as JSON (`type` + `attributes`, Toxiproxy's shape) and decoded
//! into a [`ToxicKind`] by [`ToxicKind::merged`], the one parser every layer uses: the proxy on create and
//! update, the experiment format at validate time. Each attribute struct lists its attributes once, as data
//! ([`Attributes::FIELDS`]): name, unit, range, whether it is required, a one-line doc. What a toxic *does* to
//! a stream (its running stage) lives in the proxy (`chaos_proxy::toxics`), not here.
//!
//! The L7 types of `http` proxies (`http_abort`, `http_delay`, `grpc_abort`, in `toxics/http.rs`) share the
//! API, the attribute merging and the TTL of the others but act per request.

mod bandwidth;
mod field;
mod http;
mod latency;
mod limit_data;
mod reset_peer;
mod slicer;
mod slow_close;
mod timeout;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use bandwidth::Bandwidth;
pub use field::{Field, Unit};
pub use http::{CodeAttribute, GrpcAbort, GrpcCode, HttpAbort, HttpDelay, Pattern, RequestMatch};
pub use latency::{Distribution, Latency};
pub use limit_data::LimitData;
pub use reset_peer::ResetPeer;
pub use slicer::Slicer;
pub use slow_close::SlowClose;
pub use timeout::Timeout;

/// Which way bytes flow through a link: `upstream` is client → server, `downstream` server → client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Upstream,
    Downstream,
}

impl Direction {
    /// Both directions, upstream first (the order Toxiproxy lists toxics in).
    pub const ALL: [Direction; 2] = [Direction::Upstream, Direction::Downstream];

    /// Parses Toxiproxy's `stream` field, case-insensitively.
    pub fn parse(s: &str) -> Option<Direction> {
        match s.to_ascii_lowercase().as_str() {
            "upstream" => Some(Direction::Upstream),
            "downstream" => Some(Direction::Downstream),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        }
    }

    /// Index into per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Direction::Upstream => 0,
            Direction::Downstream => 1,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A toxic's type and attributes, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum ToxicKind {
    Noop,
    Latency(Latency),
    Bandwidth(Bandwidth),
    SlowClose(SlowClose),
    Timeout(Timeout),
    ResetPeer(ResetPeer),
    Slicer(Slicer),
    LimitData(LimitData),
    HttpAbort(HttpAbort),
    HttpDelay(HttpDelay),
    GrpcAbort(GrpcAbort),
}

/// Why a toxic's attributes were refused; rendered after `bad request body: `.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AttributeError {
    #[error("attribute {name}: {message}")]
    Type { name: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Attributes of one toxic type: a serde struct whose every field has a default of zero (or, for L7 toxics,
/// of "none", which `validate` refuses where a value is required).
pub trait Attributes: Serialize + for<'de> Deserialize<'de> + Default + Clone {
    /// The attributes clients may set, described once (unknown keys are ignored, as Toxiproxy does).
    const FIELDS: &'static [Field];
    /// Checks values that would make the data path misbehave.
    fn validate(&self) -> Result<(), AttributeError> {
        Ok(())
    }
}

/// Decodes `incoming` attributes over `current` ones: keys present replace, keys absent keep their value.
fn merge<A: Attributes>(current: &A, incoming: Option<&Map<String, Value>>) -> Result<A, AttributeError> {
    let Some(incoming) = incoming else {
        // No attributes: the current (or default) values must still be valid (slicer 0/0 is not).
        current.validate()?;
        return Ok(current.clone());
    };
    let Value::Object(mut merged) = serde_json::to_value(current).map_err(invalid)? else {
        return Err(AttributeError::Invalid("attributes are not an object".into()));
    };
    for (key, value) in incoming {
        // JSON null leaves the current value, as decoding null into a Go int does.
        if A::FIELDS.iter().any(|f| f.name == key) && !value.is_null() {
            // Check each value on its own first so the error names the attribute.
            let mut probe = serde_json::to_value(A::default()).map_err(invalid)?;
            if let Value::Object(map) = &mut probe {
                map.insert(key.clone(), value.clone());
            }
            serde_json::from_value::<A>(probe)
                .map_err(|e| AttributeError::Type { name: key.clone(), message: e.to_string() })?;
            merged.insert(key.clone(), value.clone());
        }
    }
    let attrs: A = serde_json::from_value(Value::Object(merged)).map_err(invalid)?;
    attrs.validate()?;
    Ok(attrs)
}

fn invalid(e: serde_json::Error) -> AttributeError {
    AttributeError::Invalid(e.to_string())
}

fn to_map<A: Attributes>(a: &A) -> Map<String, Value> {
    match serde_json::to_value(a) {
        Ok(Value::Object(m)) => m,
        // Attribute structs are plain structs of numbers and strings: serialising them cannot fail.
        _ => Map::new(),
    }
}

impl ToxicKind {
    /// The toxic type names this proxy knows, as used in the API's `type` field.
    pub const TYPES: &'static [&'static str] = &[
        "noop",
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
        "http_abort",
        "http_delay",
        "grpc_abort",
    ];

    /// A toxic of type `type_name` with every attribute zero, or `None` for an unknown type.
    pub fn default_for(type_name: &str) -> Option<ToxicKind> {
        Some(match type_name {
            "noop" => ToxicKind::Noop,
            "latency" => ToxicKind::Latency(Latency::default()),
            "bandwidth" => ToxicKind::Bandwidth(Bandwidth::default()),
            "slow_close" => ToxicKind::SlowClose(SlowClose::default()),
            "timeout" => ToxicKind::Timeout(Timeout::default()),
            "reset_peer" => ToxicKind::ResetPeer(ResetPeer::default()),
            "slicer" => ToxicKind::Slicer(Slicer::default()),
            "limit_data" => ToxicKind::LimitData(LimitData::default()),
            "http_abort" => ToxicKind::HttpAbort(HttpAbort::default()),
            "http_delay" => ToxicKind::HttpDelay(HttpDelay::default()),
            "grpc_abort" => ToxicKind::GrpcAbort(GrpcAbort::default()),
            _ => return None,
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Noop => "noop",
            ToxicKind::Latency(_) => "latency",
            ToxicKind::Bandwidth(_) => "bandwidth",
            ToxicKind::SlowClose(_) => "slow_close",
            ToxicKind::Timeout(_) => "timeout",
            ToxicKind::ResetPeer(_) => "reset_peer",
            ToxicKind::Slicer(_) => "slicer",
            ToxicKind::LimitData(_) => "limit_data",
            ToxicKind::HttpAbort(_) => "http_abort",
            ToxicKind::HttpDelay(_) => "http_delay",
            ToxicKind::GrpcAbort(_) => "grpc_abort",
        }
    }

    /// Refuses a toxic that lacks an attribute its type cannot do without (an L7 toxic's `status`, `delay` or
    /// `code`); the registry checks this on create and update, after the merge.
    pub fn check_required(&self) -> Result<(), AttributeError> {
        http::check_required(self)
    }

    /// Whether this toxic acts on HTTP requests (and so only on `http` proxies) rather than on a link's bytes.
    pub fn is_l7(&self) -> bool {
        matches!(self, ToxicKind::HttpAbort(_) | ToxicKind::HttpDelay(_) | ToxicKind::GrpcAbort(_))
    }

    /// Returns this toxic with `attributes` decoded over its current values (Toxiproxy's partial update).
    pub fn merged(&self, attributes: Option<&Map<String, Value>>) -> Result<ToxicKind, AttributeError> {
        Ok(match self {
            ToxicKind::Noop => ToxicKind::Noop,
            ToxicKind::Latency(a) => ToxicKind::Latency(merge(a, attributes)?),
            ToxicKind::Bandwidth(a) => ToxicKind::Bandwidth(merge(a, attributes)?),
            ToxicKind::SlowClose(a) => ToxicKind::SlowClose(merge(a, attributes)?),
            ToxicKind::Timeout(a) => ToxicKind::Timeout(merge(a, attributes)?),
            ToxicKind::ResetPeer(a) => ToxicKind::ResetPeer(merge(a, attributes)?),
            ToxicKind::Slicer(a) => ToxicKind::Slicer(merge(a, attributes)?),
            ToxicKind::LimitData(a) => ToxicKind::LimitData(merge(a, attributes)?),
            ToxicKind::HttpAbort(a) => ToxicKind::HttpAbort(merge(a, attributes)?),
            ToxicKind::HttpDelay(a) => ToxicKind::HttpDelay(merge(a, attributes)?),
            ToxicKind::GrpcAbort(a) => ToxicKind::GrpcAbort(merge(a, attributes)?),
        })
    }

    /// The attributes as the API shows them: every attribute of the type, in Toxiproxy's order.
    pub fn attributes(&self) -> Map<String, Value> {
        match self {
            ToxicKind::Noop => Map::new(),
            ToxicKind::Latency(a) => to_map(a),
            ToxicKind::Bandwidth(a) => to_map(a),
            ToxicKind::SlowClose(a) => to_map(a),
            ToxicKind::Timeout(a) => to_map(a),
            ToxicKind::ResetPeer(a) => to_map(a),
            ToxicKind::Slicer(a) => to_map(a),
            ToxicKind::LimitData(a) => to_map(a),
            ToxicKind::HttpAbort(a) => to_map(a),
            ToxicKind::HttpDelay(a) => to_map(a),
            ToxicKind::GrpcAbort(a) => to_map(a),
        }
    }

    /// The attributes of type `type_name` as data, in the API's order (`None` for an unknown type).
    pub fn fields(type_name: &str) -> Option<&'static [Field]> {
        Some(match type_name {
            "noop" => &[],
            "latency" => Latency::FIELDS,
            "bandwidth" => Bandwidth::FIELDS,
            "slow_close" => SlowClose::FIELDS,
            "timeout" => Timeout::FIELDS,
            "reset_peer" => ResetPeer::FIELDS,
            "slicer" => Slicer::FIELDS,
            "limit_data" => LimitData::FIELDS,
            "http_abort" => HttpAbort::FIELDS,
            "http_delay" => HttpDelay::FIELDS,
            "grpc_abort" => GrpcAbort::FIELDS,
            _ => return None,
        })
    }

    /// The value attribute `name` of type `type_name` takes when it is not sent (`null`: none, as for a
    /// required L7 attribute; `distribution`, hidden when uniform, is `"uniform"`).
    pub fn default_attribute(type_name: &str, name: &str) -> Option<Value> {
        let shown = ToxicKind::default_for(type_name)?.attributes();
        match shown.get(name) {
            Some(value) => Some(value.clone()),
            None if name == "distribution" => Some(Value::String(Distribution::NAMES[0].into())),
            None => ToxicKind::fields(type_name)?.iter().any(|f| f.name == name).then_some(Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn partial_update_keeps_unmentioned_attributes() {
        let kind = ToxicKind::default_for("latency").unwrap();
        let kind = kind.merged(Some(&obj(json!({"latency": 100, "jitter": 5})))).unwrap();
        let kind = kind.merged(Some(&obj(json!({"jitter": 25})))).unwrap();
        assert_eq!(kind.attributes(), obj(json!({"latency": 100, "jitter": 25})));
    }

    #[test]
    fn unknown_attribute_keys_and_nulls_are_ignored() {
        let kind = ToxicKind::default_for("bandwidth").unwrap();
        let kind = kind.merged(Some(&obj(json!({"rate": 10, "bogus": "x"})))).unwrap();
        let kind = kind.merged(Some(&obj(json!({"rate": null})))).unwrap();
        assert_eq!(kind.attributes(), obj(json!({"rate": 10})));
    }

    #[test]
    fn wrong_attribute_types_name_the_attribute() {
        let kind = ToxicKind::default_for("latency").unwrap();
        let err = kind.merged(Some(&obj(json!({"latency": "abc"})))).unwrap_err();
        assert!(err.to_string().starts_with("attribute latency: invalid type"), "{err}");
        let err = kind.merged(Some(&obj(json!({"latency": 1.5})))).unwrap_err();
        assert!(err.to_string().contains("latency"), "{err}");
    }

    #[test]
    fn every_type_lists_all_attributes_with_zero_defaults() {
        let expected = [
            ("noop", json!({})),
            ("latency", json!({"latency": 0, "jitter": 0})),
            ("bandwidth", json!({"rate": 0})),
            ("slow_close", json!({"delay": 0})),
            ("timeout", json!({"timeout": 0})),
            ("reset_peer", json!({"timeout": 0})),
            ("slicer", json!({"average_size": 0, "size_variation": 0, "delay": 0})),
            ("limit_data", json!({"bytes": 0})),
        ];
        for (name, attrs) in expected {
            let kind = ToxicKind::default_for(name).unwrap();
            assert_eq!(kind.type_name(), name);
            assert_eq!(serde_json::to_string(&kind.attributes()).unwrap(), attrs.to_string(), "{name}");
        }
        assert!(ToxicKind::default_for("packet_loss").is_none());
    }

    /// Each type's table names exactly the attributes its struct shows (`distribution` is shown only when not
    /// uniform), and every entry is taken by the merge: a struct field without a table entry, or the other way
    /// round, fails here.
    #[test]
    fn every_type_s_table_names_exactly_its_attributes() {
        for type_name in ToxicKind::TYPES {
            let fields = ToxicKind::fields(type_name).unwrap();
            let mut listed: Vec<&str> =
                fields.iter().map(|f| f.name).filter(|n| *n != "distribution").collect();
            let shown = ToxicKind::default_for(type_name).unwrap().attributes();
            let mut shown: Vec<&str> = shown.keys().map(String::as_str).collect();
            listed.sort_unstable();
            shown.sort_unstable();
            assert_eq!(listed, shown, "{type_name}");
            for field in fields {
                assert!(
                    ToxicKind::default_attribute(type_name, field.name).is_some(),
                    "{type_name}.{}",
                    field.name
                );
                let probe = obj(json!({ field.name: "not-a-value-of-any-unit" }));
                let err = ToxicKind::default_for(type_name).unwrap().merged(Some(&probe));
                // Free-text attributes take anything; every other attribute's value is read, not ignored.
                if !matches!(field.unit, Unit::Text | Unit::HttpMethod | Unit::Regex) {
                    assert!(err.is_err(), "{type_name}.{} ignored by the merge", field.name);
                }
            }
        }
        assert!(ToxicKind::fields("packet_loss").is_none());
    }

    #[test]
    fn direction_parses_case_insensitively() {
        assert_eq!(Direction::parse("UPSTREAM"), Some(Direction::Upstream));
        assert_eq!(Direction::parse("Downstream"), Some(Direction::Downstream));
        assert_eq!(Direction::parse("sideways"), None);
    }
}
