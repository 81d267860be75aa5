//! Configuration, secrets and `${…}` substitution of a Chaos Toolkit experiment, as chaostoolkit-lib 1.44
//! does them (reference §3–§5): literal and `type: env` configuration with `env_var_type`, inline and env
//! secrets (vault refused), `--var key[:type]=value` and `--var-file` overrides, and Python
//! `string.Template` substitution where a string that is exactly one `${x}` keeps the value's type.
//!
//! Dynamic configuration (a probe as a value) needs the providers and runs in [`super::run`].

use serde_json::{Map, Value};

/// Resolved configuration and secrets: what `${…}` substitution reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolved {
    pub configuration: Map<String, Value>,
    /// Scope → key → value.
    pub secrets: Map<String, Value>,
}

impl Resolved {
    /// `${…}`-substitutes `data` (configuration first, then every secret scope in order).
    pub fn substitute(&self, data: &Value) -> Value {
        substitute(data, &self.configuration, &self.secrets)
    }

    /// The secrets of the scopes named, merged (what a python provider receives as `secrets=`).
    pub fn scoped_secrets(&self, scopes: &[String]) -> Map<String, Value> {
        let mut merged = Map::new();
        for scope in scopes {
            if let Some(Value::Object(keys)) = self.secrets.get(scope) {
                for (k, v) in keys {
                    merged.insert(k.clone(), v.clone());
                }
            }
        }
        merged
    }
}

/// Overrides from the command line: `--var` (configuration only) and `--var-file` blocks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub configuration: Map<String, Value>,
    /// Scope → key → value.
    pub secrets: Map<String, Value>,
    /// Variables of `.env` var files: read before the process environment, and given to every process
    /// activity (Chaos Toolkit injects them into its own environment).
    pub env: Vec<(String, String)>,
}

impl Overrides {
    /// An environment variable: the var files' first, then the process'.
    pub fn env_var(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    }
}

/// A configuration or secret problem: the path of the offending value in the experiment (`configuration`,
/// key, …) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: Vec<String>,
    pub message: String,
}

fn error(path: &[&str], message: String) -> ConfigError {
    ConfigError { path: path.iter().map(|s| s.to_string()).collect(), message }
}

/// Whether a configuration value is a dynamic one (a probe evaluated before the run).
pub fn is_dynamic(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("probe")
}

/// The static configuration (`load_configuration`): literals, `type: env` values read from `env`, overrides
/// winning. Dynamic values are left as written (they are probes, run later). Override keys the experiment
/// does not declare are added.
pub fn load_configuration(
    config: Option<&Map<String, Value>>,
    overrides: &Map<String, Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Map<String, Value>, ConfigError> {
    let mut resolved = Map::new();
    for (key, value) in config.into_iter().flatten() {
        let env_ref = value.as_object().filter(|o| o.get("type").and_then(Value::as_str) == Some("env"));
        let Some(spec) = env_ref else {
            resolved.insert(key.clone(), overrides.get(key).unwrap_or(value).clone());
            continue;
        };
        let Some(env_key) = spec.get("key").and_then(Value::as_str) else {
            return Err(error(&["configuration", key], "an env configuration needs a string `key`".into()));
        };
        let default = spec.get("default").filter(|d| !d.is_null());
        if let Some(over) = overrides.get(key) {
            resolved.insert(key.clone(), over.clone());
            continue;
        }
        let raw = match (env(env_key), default) {
            (Some(text), _) => Value::String(text),
            (None, Some(default)) => default.clone(),
            (None, None) => {
                return Err(error(
                    &["configuration", key, "key"],
                    format!(
                        "configuration makes reference to an environment key that does not exist: {env_key}"
                    ),
                ));
            }
        };
        let typed = match spec.get("env_var_type") {
            None | Some(Value::Null) => raw,
            Some(Value::String(kind)) => convert_to_type(kind, &raw)
                .map_err(|m| error(&["configuration", key, "env_var_type"], format!("{env_key}: {m}")))?,
            Some(other) => {
                return Err(error(
                    &["configuration", key, "env_var_type"],
                    format!("env_var_type must be a string, found {other}"),
                ));
            }
        };
        resolved.insert(key.clone(), typed);
    }
    for (key, value) in overrides {
        if !resolved.contains_key(key) {
            resolved.insert(key.clone(), value.clone());
        }
    }
    Ok(resolved)
}

/// `env_var_type` conversion (`convert_to_type`): str/string, int/integer, float/number, bytes (kept as
/// text), bool (false only for "false", "0", "no"), json.
pub fn convert_to_type(kind: &str, value: &Value) -> Result<Value, String> {
    let text = py_str(value);
    match kind {
        "str" | "string" | "bytes" => Ok(Value::String(text)),
        "int" | "integer" => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            _ => text
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("invalid literal for int() with base 10: {text:?}")),
        },
        "float" | "number" => match value {
            Value::Number(n) => Ok(n.as_f64().map_or(value.clone(), Value::from)),
            _ => text
                .trim()
                .parse::<f64>()
                .map(Value::from)
                .map_err(|_| format!("could not convert string to float: {text:?}")),
        },
        "bool" => Ok(Value::Bool(!matches!(text.to_lowercase().as_str(), "false" | "0" | "no"))),
        "json" => match value {
            Value::String(s) => serde_json::from_str(s).map_err(|e| format!("not JSON: {e}")),
            other => Ok(other.clone()),
        },
        other => Err(format!(
            "unknown env_var_type {other:?} (expected str, string, int, integer, float, number, bytes, bool \
             or json)"
        )),
    }
}

/// The secrets (`load_secrets`): inline values, `type: env` read from `env`, overrides per scope and key
/// winning; `vault` is refused (this runner has no Vault client).
pub fn load_secrets(
    secrets: Option<&Map<String, Value>>,
    overrides: &Map<String, Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Map<String, Value>, ConfigError> {
    let mut resolved = Map::new();
    for (scope, keys) in secrets.into_iter().flatten() {
        let Some(keys) = keys.as_object() else {
            return Err(error(
                &["secrets", scope],
                format!("a secret scope is a mapping of keys to values, found {}", kind(keys)),
            ));
        };
        let scope_overrides = overrides.get(scope).and_then(Value::as_object);
        let mut out = Map::new();
        for (key, value) in keys {
            if let Some(over) = scope_overrides.and_then(|o| o.get(key)) {
                out.insert(key.clone(), over.clone());
                continue;
            }
            let typed = value.as_object().and_then(|o| o.get("type")).and_then(Value::as_str);
            let secret = match typed {
                Some("env") => {
                    let Some(env_key) = value.get("key").and_then(Value::as_str) else {
                        return Err(error(
                            &["secrets", scope, key],
                            "an env secret needs a string `key`".into(),
                        ));
                    };
                    match env(env_key) {
                        Some(text) => Value::String(text),
                        None => {
                            return Err(error(
                                &["secrets", scope, key, "key"],
                                format!(
                                    "secrets make reference to an environment key that does not exist: {env_key}"
                                ),
                            ));
                        }
                    }
                }
                Some("vault") => {
                    return Err(error(
                        &["secrets", scope, key, "type"],
                        "vault secrets are not supported by chaos run (no Vault client here): put the value \
                         in an environment variable and use `type: env`, or pass it with --var-file"
                            .into(),
                    ));
                }
                _ => value.clone(),
            };
            out.insert(key.clone(), secret);
        }
        if let Some(extra) = scope_overrides {
            for (k, v) in extra {
                out.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        resolved.insert(scope.clone(), Value::Object(out));
    }
    for (scope, keys) in overrides {
        if !resolved.contains_key(scope) {
            resolved.insert(scope.clone(), keys.clone());
        }
    }
    Ok(resolved)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Parses one `--var key[:type]=value` already split at `=`: the key and the typed value. Types are
/// Chaos Toolkit's: `str` (default), `int`, `float`, `bytes` (kept as text).
pub fn parse_var(name: &str, value: &str) -> Result<(String, Value), String> {
    let Some((key, kind)) = name.rsplit_once(':') else {
        return Ok((name.to_string(), Value::String(value.to_string())));
    };
    let typed = match kind {
        "str" | "bytes" => Value::String(value.to_string()),
        "int" => value
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("--var {name}={value}: {value:?} is not an int"))?,
        "float" => value
            .trim()
            .parse::<f64>()
            .map(Value::from)
            .map_err(|_| format!("--var {name}={value}: {value:?} is not a float"))?,
        other => {
            return Err(format!(
                "--var {name}={value}: invalid var type {other:?} (expected str, int, float or bytes)"
            ));
        }
    };
    Ok((key.to_string(), typed))
}

/// Reads a `--var-file`: a `.env` file (`KEY=value` lines, set in this process' environment, as Chaos
/// Toolkit does) or a JSON/YAML document with `configuration:` and `secrets:` blocks.
pub fn read_var_file(path: &std::path::Path, overrides: &mut Overrides) -> Result<(), String> {
    const MAX: u64 = 4 << 20;
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| format!("--var-file {name}: cannot read: {e}"))?;
    if meta.len() > MAX {
        return Err(format!("--var-file {name}: more than {MAX} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("--var-file {name}: cannot read: {e}"))?;
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".env") {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("{name}:{}:1: expected KEY=value, found {line:?}", n + 1));
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            overrides.env.push((k.trim().to_string(), v.to_string()));
        }
        return Ok(());
    }
    let parsed = if lower.ends_with(".json") {
        crate::experiment::node::from_json(&text)
    } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        crate::experiment::node::from_yaml(&text)
    } else {
        return Err(format!("--var-file {name}: expected a .json, .yaml, .yml or .env file"));
    };
    let root = parsed.map_err(|e| format!("{name}:{}:{}: {}", e.pos.line, e.pos.column, e.message))?;
    let doc = super::load::to_json(&root);
    let Value::Object(doc) = doc else {
        return Err(format!(
            "{name}:{}:{}: expected a mapping with configuration and secrets",
            root.pos.line, root.pos.column
        ));
    };
    for (key, value) in doc {
        match (key.as_str(), value) {
            ("configuration", Value::Object(c)) => overrides.configuration.extend(c),
            ("secrets", Value::Object(s)) => {
                for (scope, keys) in s {
                    match (overrides.secrets.get_mut(&scope), keys) {
                        (Some(Value::Object(have)), Value::Object(new)) => have.extend(new),
                        (_, keys) => {
                            overrides.secrets.insert(scope, keys);
                        }
                    }
                }
            }
            ("configuration" | "secrets", other) => {
                return Err(format!("--var-file {name}: `{key}` must be a mapping, found {}", kind(&other)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// chaostoolkit-lib's `substitute`: nothing happens without configuration and secrets; otherwise objects
/// and lists are walked (values only, never keys) and strings substituted by [`substitute_str`].
pub fn substitute(data: &Value, configuration: &Map<String, Value>, secrets: &Map<String, Value>) -> Value {
    if configuration.is_empty() && secrets.is_empty() {
        return data.clone();
    }
    let lookup = |name: &str| -> Option<&Value> {
        configuration
            .get(name)
            .or_else(|| secrets.values().filter_map(Value::as_object).find_map(|scope| scope.get(name)))
    };
    walk(data, &lookup)
}

fn walk<'a>(data: &Value, lookup: &dyn Fn(&str) -> Option<&'a Value>) -> Value {
    match data {
        Value::String(s) => substitute_str(s, lookup),
        Value::Array(items) => Value::Array(items.iter().map(|v| walk(v, lookup)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), walk(v, lookup))).collect()),
        other => other.clone(),
    }
}

/// One string: exactly `${name}` with `name` known → the value itself (its type kept); otherwise Python
/// `string.Template(s).safe_substitute(mapping)`: `$$` → `$`, `$name` and `${name}` replaced by the value's
/// `str()`, unknown names and anything else left as written.
pub fn substitute_str<'a>(s: &str, lookup: &dyn Fn(&str) -> Option<&'a Value>) -> Value {
    if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && is_identifier(name)
        && let Some(value) = lookup(name)
    {
        return value.clone();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            let len = identifier_len(inner);
            if len > 0 && inner[len..].starts_with('}') { (&inner[..len], len + 2) } else { ("", 0) }
        } else {
            let len = identifier_len(after);
            (&after[..len], len)
        };
        match (consumed, lookup(name)) {
            (n, Some(value)) if n > 0 => {
                out.push_str(&py_str(value));
                rest = &after[consumed..];
            }
            (n, None) if n > 0 => {
                out.push('$');
                out.push_str(&after[..consumed]);
                rest = &after[consumed..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Value::String(out)
}

/// Length of the Python `string.Template` identifier (`[_a-z][_a-z0-9]*`, ASCII, any case) at the start.
fn identifier_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && identifier_len(s) == s.len()
}

/// Python's `str()` of a JSON value: `True`/`False`/`None`, floats as `repr` (`1.0`), lists and dicts as
/// Python literals (`{'a': 1}`).
pub fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a JSON value.
pub fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => {
            if n.is_f64() {
                n.as_f64().map_or_else(|| n.to_string(), py_float)
            } else {
                n.to_string()
            }
        }
        Value::String(s) => {
            let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
            let mut out = String::new();
            out.push(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
            out
        }
        Value::Array(items) => format!("[{}]", items.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::String(k.clone())), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `repr(float)`: shortest round trip, always with a `.0` or an exponent; `inf`, `nan`.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let s = format!("{f:e}");
        // Rust: 1e16, 1.5e-5; Python: 1e+16, 1.5e-05.
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    let s = format!("{f}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(data: Value, config: Value) -> Value {
        let Value::Object(config) = config else { panic!("config") };
        substitute(&data, &config, &Map::new())
    }

    #[test]
    fn template_rules() {
        let c = json!({"n": 3, "s": "x", "f": 1.0, "b": true, "o": {"a": 1}});
        assert_eq!(sub(json!("${n}"), c.clone()), json!(3));
        assert_eq!(sub(json!("${o}"), c.clone()), json!({"a": 1}));
        assert_eq!(sub(json!("n=${n}"), c.clone()), json!("n=3"));
        assert_eq!(sub(json!("$n-$s"), c.clone()), json!("3-x"));
        assert_eq!(sub(json!("${f} ${b} ${o}"), c.clone()), json!("1.0 True {'a': 1}"));
        assert_eq!(sub(json!("${nope} $nope $(cat f) $$ $"), c.clone()), json!("${nope} $nope $(cat f) $ $"));
        assert_eq!(sub(json!({"k": ["${n}", "${s}y"]}), c.clone()), json!({"k": [3, "xy"]}));
        // Nothing to substitute with: strings stay exactly as written, `$$` included.
        assert_eq!(sub(json!("$$ ${n}"), json!({})), json!("$$ ${n}"));
    }

    #[test]
    fn py_float_repr() {
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.5), "0.5");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(1.5e-5), "1.5e-05");
    }
}
