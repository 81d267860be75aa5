//! What is said about faults to people and editors, generated from the owners' tables: the fault reference as
//! Markdown ([`fault_reference`]) and each fault's `with:` in the JSON Schema ([`with_schemas`]).

use std::fmt::Write as _;

use chaos_agent::spec::Unit as AgentUnit;
use chaos_proxy_api::toxics::Unit as ToxicUnit;
use serde_json::{Map, Value};

use super::faults::{FaultKind, Owner, Param, Stream, TargetType};

/// One section per fault kind, in [`FaultKind::ALL`] order: a line on the target and duration, then a table
/// of its `with:` keys (or a note that it takes none).
pub fn fault_reference() -> String {
    let mut out = String::new();
    for kind in FaultKind::ALL {
        let target = match kind.target_type() {
            TargetType::Proxy
                if matches!(kind, FaultKind::HttpAbort | FaultKind::HttpDelay | FaultKind::GrpcAbort) =>
            {
                "a `proxy` target created with `protocol: http`"
            }
            TargetType::Proxy => "a `proxy` target",
            TargetType::Processes => "a `processes` target, or the containers of a `pods` target",
            TargetType::Host => {
                "this host, the agents of a `hosts` target, or the containers of a `pods` target"
            }
            TargetType::Pods => "a `pods` target",
        };
        let duration = if kind.needs_duration() { "needs a `duration`" } else { "takes no `duration`" };
        let _ = writeln!(out, "### `{kind}`\n\nActs on {target}; {duration}.\n");
        let table = kind.params_table();
        if table.is_empty() {
            out.push_str("Takes no `with:` keys.\n\n");
            continue;
        }
        out.push_str("| key | unit | range | default | meaning |\n|---|---|---|---|---|\n");
        for p in &table {
            let range = match p.range {
                Some((lo, hi)) if hi.is_finite() => format!("{lo}..={hi}"),
                Some((lo, _)) => format!("≥ {lo}"),
                None => String::new(),
            };
            let default = if p.required { "required".to_string() } else { p.default_text() };
            let _ = writeln!(out, "| `{}` | {} | {range} | {default} | {} |", p.name, p.unit(), p.doc);
        }
        out.push('\n');
    }
    out
}

// === JSON Schema ===

/// A string that is only a `${variable}` (checked once substituted).
const VARIABLE: &str = r"^\s*\$\{[^}]+\}\s*$";
/// A number of percent with its sign, or a variable.
const PERCENT_TEXT: &str = r"^\s*[0-9]+(\.[0-9]*)?\s*%\s*$|\$\{[^}]+\}";

impl Param {
    /// This key's JSON Schema, from the owner's unit and range; strings that hold a `${variable}` pass.
    pub fn json_schema(&self) -> Value {
        use super::values::patterns::{DURATION, PERCENT};
        use serde_json::json;
        let (lo, hi) = self.range.map_or((None, None), |(lo, hi)| (Some(lo), hi.is_finite().then_some(hi)));
        let integer = |pattern: &str| json!({"type": ["integer", "string"], "pattern": pattern});
        let number = |pattern: &str| json!({"type": ["number", "string"], "pattern": pattern});
        let names = |names: &[&str]| json!({"type": "string", "pattern": format!("^({})$|\\$\\{{[^}}]+\\}}", names.join("|"))});
        let mut schema = match self.owner {
            Owner::Toxic { unit, .. } => match unit {
                ToxicUnit::Millis | ToxicUnit::Micros => integer(DURATION),
                ToxicUnit::KilobytesPerSecond
                | ToxicUnit::Bytes
                | ToxicUnit::Count
                | ToxicUnit::HttpStatus => integer(VARIABLE),
                ToxicUnit::Percent => number(PERCENT_TEXT),
                ToxicUnit::Enum(values) => names(values),
                ToxicUnit::GrpcCode => json!({"type": ["integer", "string"]}),
                ToxicUnit::HeaderValues | ToxicUnit::HeaderRegexes => {
                    json!({"type": "object", "additionalProperties": {"type": "string"}})
                }
                ToxicUnit::Text | ToxicUnit::HttpMethod | ToxicUnit::Path | ToxicUnit::Regex => {
                    json!({"type": "string"})
                }
            },
            Owner::Agent { unit, .. } => match unit {
                AgentUnit::Millis => integer(DURATION),
                AgentUnit::Count | AgentUnit::Bytes => integer(VARIABLE),
                AgentUnit::Percent => number(PERCENT_TEXT),
                AgentUnit::Size | AgentUnit::BitRate | AgentUnit::Signal | AgentUnit::ProcessCount => {
                    json!({"type": ["integer", "string"]})
                }
                AgentUnit::Path | AgentUnit::Name => json!({"type": "string"}),
                AgentUnit::Processes | AgentUnit::Filter => json!({"type": "object"}),
            },
            Owner::Stream => names(&[Stream::Upstream.name(), Stream::Downstream.name()]),
            Owner::Toxicity => number(PERCENT),
        };
        if let Value::Object(map) = &mut schema {
            if let Some(lo) = lo {
                map.insert("minimum".into(), json!(lo));
            }
            if let Some(hi) = hi {
                map.insert("maximum".into(), json!(hi));
            }
            let description = format!("{} ({}; default {})", self.doc, self.unit(), self.default_text());
            map.insert("description".into(), Value::String(description));
        }
        schema
    }
}

/// Adds to a step's schema what each fault's `with:` takes (`if fault is X then with has these keys`), from
/// the owners' tables.
pub(crate) fn with_schemas(schema: &mut schemars::Schema) {
    use serde_json::json;
    let cases: Vec<Value> = FaultKind::ALL
        .iter()
        .map(|kind| {
            let table = kind.params_table();
            let properties: Map<String, Value> =
                table.iter().map(|p| (p.name.to_string(), p.json_schema())).collect();
            let required: Vec<&str> = table.iter().filter(|p| p.required).map(|p| p.name).collect();
            json!({
                "if": {"properties": {"fault": {"const": kind.name()}}, "required": ["fault"]},
                "then": {"properties": {"with": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false,
                }}},
            })
        })
        .collect();
    schema.insert("allOf".into(), Value::Array(cases));
    if let Some(Value::Object(fault)) = schema.get_mut("properties").and_then(|p| p.get_mut("fault")) {
        let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
        fault.insert(
            "description".into(),
            Value::String(format!("The fault kind: {} (`chaos faults` lists their keys).", names.join(", "))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_lists_every_kind_and_key() {
        let text = fault_reference();
        for kind in FaultKind::ALL {
            assert!(text.contains(&format!("### `{kind}`")), "{kind}");
            for key in kind.keys() {
                assert!(text.contains(&format!("| `{key}` |")), "{kind}.{key}");
            }
        }
        assert!(text.contains("| `distribution` | one of uniform, normal, pareto, lognormal |"), "{text}");
    }
}
