//! Value parsers the command groups' flags share: durations (`500ms`, `10s`) and `KEY=VALUE` labels.

use std::time::Duration;

/// A duration as experiments write it (`500ms`, `10s`, `2m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<chaos_controller::experiment::model::Duration>().map(|d| d.0)
}

pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, found {s:?}"))?;
    if k.trim().is_empty() {
        return Err(format!("expected a label name before `=`, found {s:?}"));
    }
    Ok((k.trim().to_string(), v.trim().to_string()))
}
