//! The API's JSON: what clients send (`*Input`, decoded leniently as Toxiproxy does: unknown fields ignored,
//! `null` = absent) and what they get back (`*View`, with Toxiproxy's field order).
//!
//! Beyond Toxiproxy, a proxy has a `protocol` (`tcp`, the default, or `http`) and optional extra latency
//! histogram bounds (`latency_buckets_ms`), and may be leased (`lease_ms`: the proxy deletes itself unless the
//! lease is renewed in time) and marked with who created it (`owner`). Toxiproxy clients never send them, and a
//! view shows them only when they differ from the default, so every answer about a plain TCP proxy stays exactly
//! Toxiproxy's.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// A proxy to create (`POST /proxies`, `/populate`, config files).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProxyInput {
    pub name: Option<String>,
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub enabled: Option<bool>,
    /// Beyond Toxiproxy: pass a FIN one way and keep the other direction open (Toxiproxy closes both).
    pub half_close: Option<bool>,
    /// Toxics to add with the proxy. Honoured in config files only; the API ignores it, as Toxiproxy does.
    pub toxics: Option<Value>,
    /// Beyond Toxiproxy: `tcp` (default) or `http` (requests are parsed, L7 toxics apply, golden signals).
    pub protocol: Option<String>,
    /// Beyond Toxiproxy: request latency thresholds (ms) the HTTP latency histogram must have as bucket bounds.
    pub latency_buckets_ms: Option<Vec<f64>>,
    /// Beyond Toxiproxy: milliseconds after which the proxy deletes itself (listener closed, connections
    /// ended) unless an update renews the lease first. Not the `ttl` of an update, which re-enables a proxy.
    pub lease_ms: Option<u64>,
    /// Beyond Toxiproxy: who created the proxy, opaque to the server and shown back (a `chaos run` marks
    /// the proxies it creates so its next run can recognise a stale one).
    pub owner: Option<String>,
}

/// A partial proxy update (`POST`/`PATCH /proxies/{name}`): only the fields sent change.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProxyUpdate {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub enabled: Option<bool>,
    pub half_close: Option<bool>,
    /// Beyond Toxiproxy: with `"enabled": false`, re-enable the proxy by itself after this many milliseconds,
    /// so "down" is a fault with a deadline like any toxic.
    pub ttl: Option<u64>,
    /// Beyond Toxiproxy: a new protocol restarts the proxy (its connections close); `tcp` is refused while
    /// the proxy has L7 toxics.
    pub protocol: Option<String>,
    /// Beyond Toxiproxy: replaces the extra histogram bounds; a changed set restarts the histogram from zero.
    pub latency_buckets_ms: Option<Vec<f64>>,
    /// Beyond Toxiproxy: renews (or sets) the proxy's lease: it now deletes itself this many milliseconds
    /// from now unless renewed again.
    pub lease_ms: Option<u64>,
}

/// What a proxy speaks: plain TCP (bytes, L4 toxics only) or HTTP/1.1 and HTTP/2 (requests, L7 toxics too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Http,
}

impl Protocol {
    /// Parses the API's `protocol` field, case-insensitively; the error says what was expected and found.
    pub fn parse(text: &str) -> Result<Protocol, String> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "http" => Ok(Protocol::Http),
            _ => Err(format!("protocol: expected \"tcp\" or \"http\", found {text:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Http => "http",
        }
    }

    fn is_tcp(&self) -> bool {
        *self == Protocol::Tcp
    }
}

/// A toxic to add (`POST /proxies/{name}/toxics`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ToxicInput {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub stream: Option<String>,
    /// noxious-client sends `direction`; taken when `stream` is absent.
    pub direction: Option<String>,
    pub toxicity: Option<f32>,
    pub attributes: Option<Map<String, Value>>,
    /// Beyond Toxiproxy: milliseconds after which the toxic removes itself.
    pub ttl: Option<u64>,
}

/// A toxic update (`POST`/`PATCH /proxies/{name}/toxics/{toxic}`): attributes merge over the current ones.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ToxicUpdate {
    pub toxicity: Option<f32>,
    pub attributes: Option<Map<String, Value>>,
    /// Re-arms the self-removal deadline from now.
    pub ttl: Option<u64>,
}

/// A proxy as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProxyView {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub half_close: bool,
    /// Shown only for `http` proxies, so TCP proxies render exactly as in Toxiproxy.
    #[serde(skip_serializing_if = "Protocol::is_tcp")]
    pub protocol: Protocol,
    /// The extra latency bounds (ms), sorted; shown only when some were registered.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "whole_floats")]
    pub latency_buckets_ms: Vec<f64>,
    /// The lease (ms) the proxy was created or last renewed with; shown only for a leased proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Who created the proxy, as they said; shown only when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Upstream chain first, then downstream, each in insertion order.
    pub toxics: Vec<ToxicView>,
}

/// A toxic as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ToxicView {
    pub attributes: Map<String, Value>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub stream: String,
    #[serde(serialize_with = "go_float32")]
    pub toxicity: f32,
    /// Milliseconds the toxic lives after its last create or update; absent when it lives until removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// Writes whole numbers without a fraction (`800`, not `800.0`), as clients that read integers expect.
fn whole_floats<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for v in values {
        seq.serialize_element(&WholeFloat(*v))?;
    }
    seq.end()
}

/// A float that serialises as an integer when it has no fraction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WholeFloat(pub f64);

impl Serialize for WholeFloat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
            return s.serialize_i64(v as i64);
        }
        s.serialize_f64(v)
    }
}

/// Writes a float32 as Go does: `1` for 1.0, `0.5`, `0.1` (shortest float32 form, not `0.10000000149011612`).
fn go_float32<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        return s.serialize_i64(*v as i64);
    }
    match format!("{v}").parse::<f64>() {
        Ok(f) => s.serialize_f64(f),
        Err(_) => s.serialize_f64(f64::from(*v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxicity_renders_like_go() {
        let mut t = ToxicView {
            attributes: Map::new(),
            name: "n".into(),
            kind: "noop".into(),
            stream: "downstream".into(),
            toxicity: 1.0,
            ttl: None,
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"attributes":{},"name":"n","type":"noop","stream":"downstream","toxicity":1}"#
        );
        t.toxicity = 0.1;
        assert!(serde_json::to_string(&t).unwrap().ends_with(r#""toxicity":0.1}"#));
    }
}
