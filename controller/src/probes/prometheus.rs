//! The prometheus probe: an instant query (`GET {url}/api/v1/query?query=…`) whose one value is compared
//! with a bound.
//!
//! Prometheus answers "nothing" in ways that must never pass (reference/slo-math.md §7): an empty result
//! (unknown metric, filtered away, 0/0 on missing series), `NaN` (0/0 on series with no traffic), ±Inf, an
//! error status or body, or several series when one was meant. Each of those fails the probe with its own
//! detail, e.g. `query returned no data`.

use serde_json::Value;

use super::{Check, snippet};
use crate::experiment::model::PrometheusProbe;
use crate::http::{Client, DEFAULT_TIMEOUT, Request};

/// Characters of a non-JSON or unexpected answer quoted in a failure.
const QUOTED: usize = 200;

/// Relative tolerance of `==`: PromQL arithmetic leaves float noise (`19.999999999999982`).
const EQ_TOLERANCE: f64 = 1e-9;

/// A comparison a probe may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    /// `<`, `<=`, `>`, `>=`, `==`.
    pub fn parse(op: &str) -> Option<Op> {
        Some(match op.trim() {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            _ => return None,
        })
    }

    pub fn holds(self, found: f64, bound: f64) -> bool {
        match self {
            Op::Lt => found < bound,
            Op::Le => found <= bound,
            Op::Gt => found > bound,
            Op::Ge => found >= bound,
            Op::Eq => (found - bound).abs() <= EQ_TOLERANCE * found.abs().max(bound.abs()).max(1.0),
        }
    }
}

pub async fn check(spec: &PrometheusProbe) -> Check {
    let op = Op::parse(&spec.op)
        .ok_or_else(|| format!("unknown comparison {:?}: expected one of <, <=, >, >=, ==", spec.op))?;
    let url = query_url(&spec.url, &spec.query);
    let request = Request::get(&url).map_err(|e| e.to_string())?;
    let response = Client::new().send(&request, DEFAULT_TIMEOUT).await.map_err(|e| e.to_string())?;
    let found = instant_value(response.status, &response.body).map_err(|e| format!("{}: {e}", spec.query))?;
    let (query, op_text, bound) = (&spec.query, spec.op.trim(), spec.value);
    if !found.is_finite() {
        let why =
            if found.is_nan() { "NaN (0/0: no traffic?)" } else { "an infinite value (division by 0?)" };
        return Err(format!("{query}: expected a value {op_text} {bound}, query returned {why}"));
    }
    if op.holds(found, bound) {
        Ok(format!("{query} = {found} ({op_text} {bound})"))
    } else {
        Err(format!("{query}: expected a value {op_text} {bound}, got {found}"))
    }
}

/// `{base}/api/v1/query?query={encoded}`, tolerating a trailing slash on the base.
pub fn query_url(base: &str, query: &str) -> String {
    format!("{}/api/v1/query?query={}", base.trim().trim_end_matches('/'), encode(query))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (so `+`, `&`, `=`, `{`, `"` are safe).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The single number an instant query answered (NaN and ±Inf included), or why there is none.
fn instant_value(status: u16, body: &[u8]) -> Result<f64, String> {
    match instant_sample(status, body)? {
        Some(sample) => Ok(sample.value),
        None => Err("query returned no data (empty result)".to_string()),
    }
}

/// One sample of an instant query's answer: the evaluation time Prometheus used and the value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sample {
    /// Unix seconds, fractional, as Prometheus wrote them (passed back as `time=`, a query is evaluated at the
    /// same instant).
    pub time: f64,
    /// NaN and ±Inf included.
    pub value: f64,
}

/// The single sample an instant query answered, `None` for an empty result, or why the answer is unusable
/// (an error status or body, non-JSON, several series, a matrix). Shared by the probe and the SLO source.
pub(crate) fn instant_sample(status: u16, body: &[u8]) -> Result<Option<Sample>, String> {
    let text = String::from_utf8_lossy(body);
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let api_error = json.as_ref().filter(|j| j["status"] == "error").map(|j| {
        format!(
            "{}: {}",
            j["errorType"].as_str().unwrap_or("error"),
            j["error"].as_str().unwrap_or("(no message)")
        )
    });
    if !(200..300).contains(&status) {
        let said = api_error.unwrap_or_else(|| snippet(text.trim(), QUOTED));
        return Err(format!("prometheus answered http {status}: {said}"));
    }
    if let Some(error) = api_error {
        return Err(format!("query failed: {error}"));
    }
    let Some(json) = json else {
        return Err(format!("expected prometheus JSON, got {}", snippet(text.trim(), QUOTED)));
    };
    if json["status"] != "success" {
        return Err(format!(
            "expected status \"success\", got {}",
            snippet(&json["status"].to_string(), QUOTED)
        ));
    }
    let data = &json["data"];
    match data["resultType"].as_str() {
        Some("vector") => {
            let series = data["result"].as_array().map(Vec::as_slice).unwrap_or_default();
            match series {
                [] => Ok(None),
                [one] => sample_value(&one["value"]).map(Some),
                many => Err(format!(
                    "query returned {} series, expected one (aggregate it, e.g. with sum): {}",
                    many.len(),
                    snippet(&labels(many), QUOTED)
                )),
            }
        }
        Some("scalar") => sample_value(&data["result"]).map(Some),
        Some(other) => Err(format!("query returned a {other}, expected an instant vector or a scalar")),
        None => Err(format!("expected data.resultType in the answer, got {}", snippet(text.trim(), QUOTED))),
    }
}

/// `[timestamp, "value"]`: values are JSON strings, `"NaN"`, `"+Inf"` and `"-Inf"` included.
fn sample_value(sample: &Value) -> Result<Sample, String> {
    let time = sample[0].as_f64();
    let value = sample[1].as_str().and_then(|v| v.parse::<f64>().ok());
    match (time, value) {
        (Some(time), Some(value)) => Ok(Sample { time, value }),
        _ => {
            Err(format!("expected a sample [time, \"value\"], got {}", snippet(&sample.to_string(), QUOTED)))
        }
    }
}

/// The series' label sets, to say which ones came back.
fn labels(series: &[Value]) -> String {
    series.iter().map(|s| s["metric"].to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            query_url("http://p:9090/", r#"sum(rate(x{job="a"}[1m])) > bool 0.5"#),
            "http://p:9090/api/v1/query?query=sum%28rate%28x%7Bjob%3D%22a%22%7D%5B1m%5D%29%29%20%3E%20bool%200.5"
        );
        assert_eq!(encode("a+b&c=é"), "a%2Bb%26c%3D%C3%A9");
    }

    #[test]
    fn comparisons_tolerate_float_noise_only_for_equality() {
        assert!(Op::Eq.holds(19.999999999999982, 20.0));
        assert!(!Op::Eq.holds(19.99, 20.0));
        assert!(Op::Lt.holds(0.02, 0.05) && !Op::Lt.holds(0.05, 0.05) && Op::Le.holds(0.05, 0.05));
        assert!(Op::Gt.holds(2.0, 1.0) && Op::Ge.holds(1.0, 1.0));
        assert_eq!(Op::parse("!="), None);
    }

    #[test]
    fn answers_are_read_like_prometheus_writes_them() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1795606044.142,"0.02"]}]}}"#;
        assert_eq!(instant_value(200, ok), Ok(0.02));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1795606054.618,"2"]}}"#;
        assert_eq!(instant_value(200, scalar), Ok(2.0));
        let nan = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert!(instant_value(200, nan).unwrap().is_nan());
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(instant_sample(200, empty), Ok(None));
        assert_eq!(instant_sample(200, ok), Ok(Some(Sample { time: 1795606044.142, value: 0.02 })));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(instant_value(200, matrix).unwrap_err().contains("returned a matrix"));
        let html = b"<html>bad gateway</html>";
        assert!(instant_value(502, html).unwrap_err().contains("http 502: \"<html>bad gateway</html>\""));
        assert!(instant_value(200, html).unwrap_err().contains("expected prometheus JSON"));
    }
}
