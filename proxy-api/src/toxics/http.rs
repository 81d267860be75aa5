//! L7 toxics of `http` proxies: `http_abort`, `http_delay` and `grpc_abort`, as attribute structs with their
//! validation. They act on whole requests, not on the bytes of a link, so they have no `Behaviour`: the
//! registry leaves them out of the links' chains and publishes them as a rule set (`crate::http::rules`).
//!
//! Every L7 toxic carries the same request match and odds ([`RequestMatch`], flattened into its attributes):
//! `method` (exact, case-insensitive), `path_prefix` and `path_regex` (on the path, without the query),
//! `headers` (name → exact value) and `header_regex` (name → regex, unanchored); every one given must hold.
//! `percentage` (0..=100, default 100) of the matching requests are faulted, rolled per request, and
//! `max_active` (0 = no cap) bounds how many requests the toxic faults at once; past it, matching requests pass
//! unfaulted, as with Envoy's `max_active_faults`. `headers` is the *request* match everywhere; the headers an
//! `http_abort` answers with are `response_headers`.
//!
//! The common toxic fields keep working: `ttl` removes the toxic by itself; `toxicity` multiplies the
//! percentage (a request is faulted with probability `percentage / 100 × toxicity`, so Toxiproxy clients that
//! only know `toxicity` still get a share of requests); `stream` is accepted and shown but means nothing to a
//! request-level fault.
//!
//! Like every toxic type, these decode from all-zero defaults, and a merge shows back exactly the values it was
//! sent (a `percentage` of `30` stays `30`, a `code` of `"UNAVAILABLE"` stays the name). The attributes an L7
//! toxic cannot do without (`status`, `delay`, `code`) are checked when the registry creates or updates one
//! ([`ToxicKind::check_required`](super::ToxicKind::check_required)), not by the merge.

use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderName, HeaderValue, Method};
use regex::{Regex, RegexBuilder};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Number, Value};

use super::{AttributeError, Attributes, Distribution, Field, Unit};

/// The most memory one compiled pattern may take; keeps a hostile regex from exhausting the proxy.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The request match and odds shared by every L7 toxic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestMatch {
    /// Empty matches any method.
    pub method: String,
    pub path_prefix: String,
    pub path_regex: Pattern,
    /// Request headers that must carry exactly this value (any of their values, when repeated).
    pub headers: BTreeMap<String, String>,
    /// Request headers one of whose values must match the regex (unanchored: use `^…$` for a whole value).
    pub header_regex: BTreeMap<String, Pattern>,
    /// Share of matching requests faulted, 0..=100; kept as sent (integer or not) so it shows back unchanged.
    pub percentage: Number,
    /// Requests this toxic may fault at once; 0 means no cap.
    pub max_active: u64,
}

impl Default for RequestMatch {
    fn default() -> Self {
        RequestMatch {
            method: String::new(),
            path_prefix: String::new(),
            path_regex: Pattern::default(),
            headers: BTreeMap::new(),
            header_regex: BTreeMap::new(),
            percentage: Number::from(100),
            max_active: 0,
        }
    }
}

/// The fields of [`RequestMatch`], listed after each type's own in its `FIELDS`.
macro_rules! match_fields {
    ($($field:expr),*) => {
        &[
            $($field,)*
            Field::new("method", Unit::HttpMethod, "only requests with this method (case-insensitive); empty: any"),
            Field::new("path_prefix", Unit::Path, "only requests whose path starts with this"),
            Field::new("path_regex", Unit::Regex, "only requests whose path (without the query) matches"),
            Field::new("headers", Unit::HeaderValues, "only requests carrying these header values"),
            Field::new("header_regex", Unit::HeaderRegexes, "only requests with a header value matching each regex"),
            Field::new("percentage", Unit::Percent, "share of matching requests faulted").range(0.0, 100.0),
            Field::new("max_active", Unit::Count, "requests faulted at once at most; 0: no cap")
                .range(0.0, f64::INFINITY),
        ]
    };
}

impl RequestMatch {
    fn validate(&self) -> Result<(), AttributeError> {
        if !self.method.is_empty() && Method::from_bytes(self.method.as_bytes()).is_err() {
            return Err(invalid("method", "an http method such as POST", &self.method));
        }
        if !self.path_prefix.is_empty() && !self.path_prefix.starts_with('/') {
            return Err(invalid("path_prefix", "a path starting with /", &self.path_prefix));
        }
        for name in self.headers.keys().chain(self.header_regex.keys()) {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                let attribute = if self.headers.contains_key(name) { "headers" } else { "header_regex" };
                return Err(invalid(attribute, "http header names", name));
            }
        }
        if !(0.0..=100.0).contains(&self.share()) {
            return Err(AttributeError::Invalid(format!(
                "attribute percentage: expected a number in 0..=100, found {}",
                self.percentage
            )));
        }
        Ok(())
    }

    /// The percentage as a number (NaN, refused by `validate`, if it is none).
    pub fn share(&self) -> f64 {
        self.percentage.as_f64().unwrap_or(f64::NAN)
    }
}

/// `http_abort`: answers matching requests itself with `status`, `body` and `response_headers`; the upstream
/// never sees them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpAbort {
    /// Required (0 = not set): a final status, 200..=599 (hyper cannot end a request with a 1xx).
    pub status: u16,
    pub body: String,
    pub response_headers: BTreeMap<String, String>,
    #[serde(flatten)]
    pub matching: RequestMatch,
}

impl Attributes for HttpAbort {
    const FIELDS: &'static [Field] = match_fields!(
        Field::new("status", Unit::HttpStatus, "the status matching requests are answered with")
            .range(200.0, 599.0)
            .required(),
        Field::new("body", Unit::Text, "the body of that answer"),
        Field::new("response_headers", Unit::HeaderValues, "the headers of that answer")
    );

    fn validate(&self) -> Result<(), AttributeError> {
        if !matches!(self.status, 0 | 200..=599) {
            return Err(invalid("status", STATUS, self.status));
        }
        for (name, value) in &self.response_headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid("response_headers", "http header names", name));
            }
            if HeaderValue::from_str(value).is_err() {
                return Err(invalid("response_headers", "header values of visible ascii", value));
            }
        }
        self.matching.validate()
    }
}

/// `http_delay`: holds matching requests for `delay` ± `jitter` ms (drawn as the `latency` toxic draws,
/// `distribution` included), then forwards them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpDelay {
    /// Required, milliseconds ≥ 0.
    pub delay: Option<i64>,
    pub jitter: i64,
    #[serde(skip_serializing_if = "Distribution::is_uniform")]
    pub distribution: Distribution,
    #[serde(flatten)]
    pub matching: RequestMatch,
}

impl Attributes for HttpDelay {
    const FIELDS: &'static [Field] = match_fields!(
        Field::new("delay", Unit::Millis, "how long matching requests are held")
            .range(0.0, f64::INFINITY)
            .required(),
        Field::new("jitter", Unit::Millis, "spread of the delay").range(0.0, f64::INFINITY),
        super::latency::DISTRIBUTION
    );

    fn validate(&self) -> Result<(), AttributeError> {
        if let Some(ms) = self.delay.filter(|ms| *ms < 0) {
            return Err(invalid("delay", "milliseconds ≥ 0", ms));
        }
        if self.jitter < 0 {
            return Err(invalid("jitter", "milliseconds ≥ 0", self.jitter));
        }
        self.matching.validate()
    }
}

impl HttpDelay {
    /// The delay as the `latency` toxic would draw it.
    pub fn as_latency(&self) -> super::Latency {
        super::Latency {
            latency: self.delay.unwrap_or(0),
            jitter: self.jitter,
            distribution: self.distribution,
        }
    }
}

/// `grpc_abort`: answers matching requests with a gRPC trailers-only response (HTTP 200,
/// `content-type: application/grpc`, `grpc-status: code`, `grpc-message: message` percent-encoded).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcAbort {
    /// Required: 0..=16, or a name such as `UNAVAILABLE` (shown back as sent).
    pub code: Option<CodeAttribute>,
    pub message: String,
    #[serde(flatten)]
    pub matching: RequestMatch,
}

impl Attributes for GrpcAbort {
    const FIELDS: &'static [Field] = match_fields!(
        Field::new("code", Unit::GrpcCode, "the grpc-status matching requests are answered with").required(),
        Field::new("message", Unit::Text, "the grpc-message of that answer")
    );

    fn validate(&self) -> Result<(), AttributeError> {
        self.matching.validate()
    }
}

/// The attributes each L7 type cannot do without, checked when a toxic is created or updated.
pub(super) fn check_required(kind: &super::ToxicKind) -> Result<(), AttributeError> {
    use super::ToxicKind;
    match kind {
        ToxicKind::HttpAbort(a) if a.status == 0 => Err(required("status", STATUS)),
        ToxicKind::HttpDelay(d) if d.delay.is_none() => Err(required("delay", "milliseconds ≥ 0")),
        ToxicKind::GrpcAbort(g) if g.code.is_none() => Err(required("code", CODE)),
        _ => Ok(()),
    }
}

const STATUS: &str = "a final http status in 200..=599";
const CODE: &str = "a grpc status code in 0..=16 or its name, such as UNAVAILABLE";

// === impl CodeAttribute ===

/// A `grpc_abort` code as the API was sent it (number or name) and as the data path uses it.
#[derive(Clone, Debug)]
pub struct CodeAttribute {
    pub code: GrpcCode,
    sent: Value,
}

impl PartialEq for CodeAttribute {
    fn eq(&self, other: &Self) -> bool {
        self.sent == other.sent
    }
}

impl Serialize for CodeAttribute {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.sent.serialize(s)
    }
}

impl<'de> Deserialize<'de> for CodeAttribute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CodeAttribute, D::Error> {
        let sent = Value::deserialize(d)?;
        let code = match &sent {
            Value::Number(n) => {
                n.as_u64().and_then(|n| u8::try_from(n).ok()).filter(|n| *n <= 16).map(GrpcCode)
            }
            Value::String(name) => GrpcCode::from_name(name),
            _ => None,
        };
        match code {
            Some(code) => Ok(CodeAttribute { code, sent }),
            None => Err(de::Error::custom(format!("expected {CODE}, found {sent}"))),
        }
    }
}

// === impl GrpcCode ===

/// A gRPC status code, 0..=16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcCode(pub u8);

impl GrpcCode {
    /// The canonical names, indexed by code.
    pub const NAMES: [&'static str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES.get(usize::from(self.0)).copied().unwrap_or("UNKNOWN")
    }

    /// The code of a canonical name, case-insensitively.
    pub fn from_name(name: &str) -> Option<GrpcCode> {
        let upper = name.trim().to_ascii_uppercase();
        Self::NAMES.iter().position(|n| *n == upper).and_then(|i| u8::try_from(i).ok()).map(GrpcCode)
    }
}

// === impl Pattern ===

/// A regular expression as the API shows it (its text) and as the data path uses it (compiled once, when the
/// attributes are decoded; an invalid one is refused there with the regex engine's reason). Empty = none.
#[derive(Clone, Debug, Default)]
pub struct Pattern {
    text: String,
    regex: Option<Regex>,
}

impl Pattern {
    /// The compiled expression; `None` when the pattern is empty.
    pub fn regex(&self) -> Option<&Regex> {
        self.regex.as_ref()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(Pattern::default());
        }
        let regex = RegexBuilder::new(&text).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
            // The regex crate draws a multi-line caret diagram; one line reads better in a JSON error.
            let reason = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
            de::Error::custom(format!("expected a regular expression, found {text:?} ({reason})"))
        })?;
        Ok(Pattern { text, regex: Some(regex) })
    }
}

// === helpers ===

fn invalid(attribute: &str, expected: &str, found: impl fmt::Debug) -> AttributeError {
    AttributeError::Invalid(format!("attribute {attribute}: expected {expected}, found {found:?}"))
}

fn required(attribute: &str, expected: &str) -> AttributeError {
    AttributeError::Invalid(format!("attribute {attribute} is required: {expected}"))
}

#[cfg(test)]
mod tests {
    use super::super::ToxicKind;
    use serde_json::{Map, Value, json};

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn create(kind: &str, attributes: Value) -> Result<ToxicKind, String> {
        let kind = ToxicKind::default_for(kind).unwrap();
        kind.merged(Some(&obj(attributes))).map_err(|e| e.to_string())
    }

    #[test]
    fn views_list_every_attribute_in_order_with_whole_numbers() {
        let kind = create("http_abort", json!({"status": 503, "method": "post"})).unwrap();
        assert_eq!(
            serde_json::to_string(&kind.attributes()).unwrap(),
            r#"{"status":503,"body":"","response_headers":{},"method":"post","path_prefix":"","path_regex":"","headers":{},"header_regex":{},"percentage":100,"max_active":0}"#
        );
        let kind = create("grpc_abort", json!({"code": "unavailable", "percentage": 12.5})).unwrap();
        let attributes = kind.attributes();
        assert_eq!((&attributes["code"], &attributes["percentage"]), (&json!("unavailable"), &json!(12.5)));
        let ToxicKind::GrpcAbort(abort) = kind else { panic!("not a grpc abort") };
        assert_eq!(abort.code.map(|c| c.code.name()), Some("UNAVAILABLE"));
        let kind = create("http_delay", json!({"delay": 200, "distribution": "normal"})).unwrap();
        assert_eq!(kind.attributes()["distribution"], json!("normal"));
    }

    #[test]
    fn required_attributes_are_checked_apart_from_the_merge() {
        for (kind, attribute) in [("http_abort", "status"), ("http_delay", "delay"), ("grpc_abort", "code")] {
            let merged = create(kind, json!({"method": "GET"})).expect("a merge without it is fine");
            let err = merged.check_required().unwrap_err().to_string();
            assert!(err.starts_with(&format!("attribute {attribute} is required: ")), "{kind}: {err}");
        }
        let complete = create("http_delay", json!({"delay": 0})).unwrap();
        assert_eq!(complete.check_required(), Ok(()));
        assert_eq!(ToxicKind::default_for("latency").unwrap().check_required(), Ok(()));
    }

    #[test]
    fn out_of_range_values_say_what_was_expected_and_found() {
        let cases = [
            (
                "http_abort",
                json!({"status": 700}),
                "attribute status: expected a final http status in 200..=599, found 700",
            ),
            ("http_abort", json!({"status": 101}), "found 101"),
            (
                "http_abort",
                json!({"status": 503, "percentage": 101}),
                "attribute percentage: expected a number in 0..=100, found 101",
            ),
            (
                "http_abort",
                json!({"status": 503, "path_regex": "(unclosed"}),
                "attribute path_regex: expected a regular expression, found \"(unclosed\"",
            ),
            (
                "http_abort",
                json!({"status": 503, "header_regex": {"x-user": "[z-a]"}}),
                "attribute header_regex: expected a regular expression",
            ),
            (
                "http_abort",
                json!({"status": 503, "headers": {"bad name": "x"}}),
                "attribute headers: expected http header names, found \"bad name\"",
            ),
            (
                "http_abort",
                json!({"status": 503, "response_headers": {"x": "a\nb"}}),
                "attribute response_headers: expected header values",
            ),
            (
                "http_abort",
                json!({"status": 503, "method": "PO ST"}),
                "attribute method: expected an http method",
            ),
            (
                "http_abort",
                json!({"status": 503, "path_prefix": "checkout"}),
                "attribute path_prefix: expected a path starting with /",
            ),
            ("http_abort", json!({"status": 503, "max_active": -1}), "attribute max_active: "),
            (
                "grpc_abort",
                json!({"code": 17}),
                "attribute code: expected a grpc status code in 0..=16 or its name, such as UNAVAILABLE, found 17",
            ),
            ("grpc_abort", json!({"code": "SOMETIMES"}), "found \"SOMETIMES\""),
            ("http_delay", json!({"delay": -1}), "attribute delay: expected milliseconds ≥ 0, found -1"),
            (
                "http_delay",
                json!({"delay": 1, "jitter": -1}),
                "attribute jitter: expected milliseconds ≥ 0, found -1",
            ),
        ];
        for (kind, attributes, expected) in cases {
            let err = create(kind, attributes.clone()).unwrap_err();
            assert!(err.contains(expected), "{kind} {attributes}: {err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn partial_updates_keep_the_match_and_compile_patterns() {
        let kind = create("http_abort", json!({"status": 503, "path_regex": "^/a/[0-9]+$"})).unwrap();
        let kind = kind.merged(Some(&obj(json!({"status": 500})))).unwrap();
        let ToxicKind::HttpAbort(abort) = &kind else { panic!("not an abort") };
        assert_eq!(abort.status, 500);
        let regex = abort.matching.path_regex.regex().unwrap();
        assert!(regex.is_match("/a/12") && !regex.is_match("/a/b"));
        assert!(kind.is_l7());
    }
}
