//! Chaos Toolkit tolerances (`hypothesis.py: within_tolerance`, reference §8): whether a probe's output is
//! within its tolerance, with Python's equality and ordering. A probe used as a tolerance needs a provider
//! run and is handled by [`super::run`]; everything else is decided here.

use std::cmp::Ordering;

use serde_json::Value;

use super::config::{Resolved, py_repr};

/// Why a tolerance could not be judged (Chaos Toolkit raises there; the probe's tolerance is not met).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToleranceError(pub String);

impl std::fmt::Display for ToleranceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `type` of an object tolerance, when it is a probe (run by the runner, not here).
pub fn is_probe(tolerance: &Value) -> bool {
    tolerance.get("type").and_then(Value::as_str) == Some("probe")
}

/// Whether `value` is within `tolerance` (every kind but `probe`). `resolved` substitutes string
/// tolerances, regex patterns and jsonpath paths and expectations.
pub fn within(tolerance: &Value, value: &Value, resolved: &Resolved) -> Result<bool, ToleranceError> {
    match tolerance {
        Value::Bool(_) => Ok(py_eq(value, tolerance)),
        Value::Number(n) if !n.is_f64() => match status(value) {
            Some(status) => Ok(py_eq(status, tolerance)),
            None => Ok(py_eq(value, tolerance)),
        },
        Value::Number(_) => Err(ToleranceError("a scalar float tolerance is not supported".into())),
        Value::String(_) => Ok(py_eq(value, &resolved.substitute(tolerance))),
        Value::Array(items) => match status(value) {
            Some(status) => Ok(items.iter().any(|i| py_eq(status, i))),
            None if items.len() == 2 => {
                let low = py_cmp(&items[0], value)?;
                let high = py_cmp(value, &items[1])?;
                Ok(low != Ordering::Greater && high != Ordering::Greater)
            }
            None => Ok(items.iter().any(|i| py_eq(value, i))),
        },
        Value::Object(spec) => match spec.get("type").and_then(Value::as_str) {
            Some("regex") => regex(spec, value, resolved),
            Some("jsonpath") => jsonpath(spec, value, resolved),
            Some("range") => range(spec, value),
            Some("probe") => Err(ToleranceError("a probe tolerance is run by the runner".into())),
            other => Err(ToleranceError(format!("unknown tolerance type {other:?}"))),
        },
        Value::Null => Err(ToleranceError("the probe has no tolerance".into())),
    }
}

/// `status` of an http or process output (an object with that key).
fn status(value: &Value) -> Option<&Value> {
    value.as_object().and_then(|o| o.get("status"))
}

/// The value a `target` names (`value.get(target)`): the whole value without a target.
fn targeted<'a>(
    spec: &serde_json::Map<String, Value>,
    value: &'a Value,
) -> Result<&'a Value, ToleranceError> {
    match spec.get("target").and_then(Value::as_str) {
        None => Ok(value),
        Some(target) => match value {
            Value::Object(o) => Ok(o.get(target).unwrap_or(&Value::Null)),
            other => Err(ToleranceError(format!(
                "target {target:?}: the probe's output is not a mapping ({})",
                py_repr(other)
            ))),
        },
    }
}

fn regex(
    spec: &serde_json::Map<String, Value>,
    value: &Value,
    resolved: &Resolved,
) -> Result<bool, ToleranceError> {
    let pattern = resolved.substitute(spec.get("pattern").unwrap_or(&Value::Null));
    let Value::String(pattern) = pattern else {
        return Err(ToleranceError("a regex tolerance needs a string pattern".into()));
    };
    let rx = regex::Regex::new(&pattern)
        .map_err(|e| ToleranceError(format!("invalid regex pattern {pattern:?}: {e}")))?;
    match targeted(spec, value)? {
        // Python's `$` also matches just before a final newline (`^ok$` finds "ok\n").
        Value::String(text) => {
            Ok(rx.is_match(text) || text.strip_suffix('\n').is_some_and(|t| rx.is_match(t)))
        }
        other => Err(ToleranceError(format!(
            "expected string or bytes-like object, got {} ({})",
            py_type(other),
            py_repr(other)
        ))),
    }
}

fn jsonpath(
    spec: &serde_json::Map<String, Value>,
    value: &Value,
    resolved: &Resolved,
) -> Result<bool, ToleranceError> {
    let path = resolved.substitute(spec.get("path").unwrap_or(&Value::Null));
    let Value::String(path) = path else {
        return Err(ToleranceError("a jsonpath tolerance needs a string path".into()));
    };
    let mut value = targeted(spec, value)?.clone();
    if let Value::String(text) = &value
        && let Ok(parsed) = serde_json::from_str::<Value>(text)
    {
        value = parsed;
    }
    let parsed = parse_jsonpath(&path)?;
    let found = parsed.query(&value);
    if let Some(expect) = spec.get("expect") {
        let expect = resolved.substitute(expect);
        let expected = match expect {
            Value::Array(items) => items,
            one => vec![one],
        };
        let equal = found.len() == expected.len() && found.iter().zip(&expected).all(|(a, b)| py_eq(a, b));
        if !equal {
            return Ok(false);
        }
    }
    match spec.get("count") {
        Some(Value::Number(n)) => Ok(n.as_u64().is_some_and(|n| found.len() as u64 == n)),
        Some(other) if !other.is_null() => {
            Err(ToleranceError(format!("a jsonpath count must be an integer, found {}", py_repr(other))))
        }
        _ if spec.contains_key("expect") => Ok(true),
        _ => Ok(!found.is_empty()),
    }
}

/// A JSONPath in the jsonpath2 dialect Chaos Toolkit uses, checked: [`JsonPath2::query`] evaluates it.
#[derive(Debug)]
pub struct JsonPath2 {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    /// An RFC 9535 path from the current nodes (`$` standing for each).
    Path(serde_json_path::JsonPath),
    /// A jsonpath2 filter `[?(expr)]`: keeps the current nodes (not their children) for which `expr`, with
    /// `@` the node, holds.
    Filter(serde_json_path::JsonPath),
}

impl JsonPath2 {
    /// Every value the path matches in `value`, in document order.
    pub fn query(&self, value: &Value) -> Vec<Value> {
        let mut nodes = vec![value.clone()];
        for part in &self.parts {
            let mut next = Vec::new();
            for node in &nodes {
                match part {
                    Part::Path(path) => next.extend(path.query(node).all().into_iter().cloned()),
                    Part::Filter(filter) => {
                        let one = Value::Array(vec![node.clone()]);
                        next.extend(filter.query(&one).all().into_iter().cloned());
                    }
                }
            }
            nodes = next;
        }
        nodes
    }
}

/// Parses a JSONPath in the jsonpath2 dialect Chaos Toolkit uses (`$.data.result.*[?(@.value[1]!="0")]`):
/// a filter applies to the node it follows (jsonpath2), not to that node's children (RFC 9535); `=` in a
/// filter is equality and `and`/`or`/`not` are the logical operators. The rest is RFC 9535
/// (serde_json_path).
pub fn parse_jsonpath(path: &str) -> Result<JsonPath2, ToleranceError> {
    let invalid = |why: String| ToleranceError(format!("invalid jsonpath {path:?}: {why}"));
    let Some(rest) = path.trim().strip_prefix('$') else {
        return Err(invalid("a path starts with `$`".into()));
    };
    let chars: Vec<char> = rest.chars().collect();
    let mut parts = Vec::new();
    let mut plain = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' && chars.get(i + 1) == Some(&'?') {
            // The filter runs to its matching `]`, quotes and nested brackets skipped.
            let mut depth = 0;
            let mut quote: Option<char> = None;
            let mut end = None;
            for (j, &c) in chars.iter().enumerate().skip(i) {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '"' | '\'') => quote = Some(c),
                    (None, '[') => depth += 1,
                    (None, ']') => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else { return Err(invalid("a filter `[?` is not closed".into())) };
            if !plain.is_empty() {
                let p = format!("${plain}");
                parts.push(Part::Path(
                    serde_json_path::JsonPath::parse(&p).map_err(|e| invalid(e.to_string()))?,
                ));
                plain.clear();
            }
            let expr: String = chars[i + 2..end].iter().collect();
            let filter = format!("$[?{}]", rfc_filter(&expr));
            parts.push(Part::Filter(
                serde_json_path::JsonPath::parse(&filter).map_err(|e| invalid(e.to_string()))?,
            ));
            i = end + 1;
        } else {
            plain.push(chars[i]);
            i += 1;
        }
    }
    if !plain.is_empty() || parts.is_empty() {
        let p = format!("${plain}");
        parts.push(Part::Path(serde_json_path::JsonPath::parse(&p).map_err(|e| invalid(e.to_string()))?));
    }
    Ok(JsonPath2 { parts })
}

/// A jsonpath2 filter expression in RFC 9535 syntax: `=` → `==`, `and`/`or`/`not` → `&&`/`||`/`!`
/// (outside quotes).
fn rfc_filter(expr: &str) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '"' | '\'' => {
                quote = Some(c);
                out.push(c);
            }
            '=' => {
                let prev = i.checked_sub(1).map(|p| chars[p]);
                let next = chars.get(i + 1).copied();
                if matches!(prev, Some('!' | '<' | '>' | '=')) || next == Some('=') {
                    out.push('=');
                } else {
                    out.push_str("==");
                }
            }
            c if c.is_ascii_alphabetic() => {
                let word: String =
                    chars[i..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').collect();
                let boundary = i == 0
                    || !(chars[i - 1].is_ascii_alphanumeric()
                        || matches!(chars[i - 1], '_' | '.' | '@' | '$'));
                let replaced = match word.as_str() {
                    "and" if boundary => " && ",
                    "or" if boundary => " || ",
                    "not" if boundary => "!",
                    _ => "",
                };
                if replaced.is_empty() {
                    out.push_str(&word);
                } else {
                    out.push_str(replaced);
                }
                i += word.len();
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn range(spec: &serde_json::Map<String, Value>, value: &Value) -> Result<bool, ToleranceError> {
    let bounds = match spec.get("range") {
        Some(Value::Array(b)) if b.len() == 2 => b,
        _ => return Err(ToleranceError("a range tolerance needs `range: [low, high]`".into())),
    };
    let value = targeted(spec, value)?;
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        // Decimal(str): numeric text is a number, anything else is not in range.
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| !f.is_nan()),
        other => {
            return Err(ToleranceError(format!(
                "conversion from {} to Decimal is not supported ({})",
                py_type(other),
                py_repr(other)
            )));
        }
    };
    let Some(number) = number else { return Ok(false) };
    let (Some(low), Some(high)) = (decimal(&bounds[0]), decimal(&bounds[1])) else {
        return Err(ToleranceError("range bounds must be numbers".into()));
    };
    Ok(low <= number && number <= high)
}

fn decimal(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Python's truth value of a JSON value.
pub fn py_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's type name, for messages.
fn py_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// A number as Python sees it: booleans are 0 and 1.
fn py_number(value: &Value) -> Option<f64> {
    match value {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i as f64)
            } else {
                n.as_f64()
            }
        }
        _ => None,
    }
}

/// Python's `==` on JSON values: numbers and booleans compare numerically (`True == 1`, `1 == 1.0`).
pub fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if !x.is_f64() && !y.is_f64() => {
            x.as_i64().zip(y.as_i64()).map_or_else(|| x.as_u64() == y.as_u64(), |(x, y)| x == y)
        }
        (Value::Bool(_) | Value::Number(_), Value::Bool(_) | Value::Number(_)) => {
            py_number(a) == py_number(b)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| py_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Python's ordering of two values: numbers with numbers, strings with strings; anything else raises.
fn py_cmp(a: &Value, b: &Value) -> Result<Ordering, ToleranceError> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => match (py_number(a), py_number(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).ok_or_else(|| ToleranceError("NaN compared".into())),
            _ => Err(ToleranceError(format!(
                "'<=' not supported between instances of '{}' and '{}'",
                py_type(a),
                py_type(b)
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn w(t: Value, v: Value) -> Result<bool, ToleranceError> {
        within(&t, &v, &Resolved::default())
    }

    #[test]
    fn prometheus_filter_dialect() {
        let body = json!({"data": {"result": [{"value": [1, "0"]}, {"value": [2, "3"]}]}});
        let t = json!({"type": "jsonpath", "path": "$.data.result.*[?(@.value[1]!=\"0\")]", "count": 1});
        assert_eq!(w(t, body.clone()), Ok(true));
        let t = json!({"type": "jsonpath", "path": "$.data.result.*[?(@.value[1]!=\"0\")]", "count": 0});
        assert_eq!(w(t, body.clone()), Ok(false));
        let t = json!({"type": "jsonpath", "path": "$.data.result.*[?(@.value[1] = \"3\")].value[0]", "expect": 2});
        assert_eq!(w(t, body.clone()), Ok(true));
        let t = json!({"type": "jsonpath", "path": "$.data.result[*].value[1]", "expect": ["0", "3"]});
        assert_eq!(w(t, body), Ok(true));
    }

    #[test]
    fn scalars_and_lists() {
        assert_eq!(w(json!(true), json!(1)), Ok(true));
        assert_eq!(w(json!(200), json!({"status": 200, "body": ""})), Ok(true));
        assert_eq!(w(json!([200, 503]), json!({"status": 404})), Ok(false));
        assert_eq!(w(json!([1, 5]), json!(3)), Ok(true));
        assert_eq!(w(json!([1, 5, 9]), json!(3)), Ok(false));
        assert!(w(json!([1, 5]), json!("x")).is_err());
        assert_eq!(w(json!({"type": "range", "range": [1, 2]}), json!("1.5")), Ok(true));
        assert_eq!(w(json!({"type": "range", "range": [1, 2]}), json!("abc")), Ok(false));
        assert!(w(json!({"type": "range", "range": [1, 2]}), json!({"a": 1})).is_err());
    }
}
