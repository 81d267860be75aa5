//! Value parsers the command groups' flags share: durations (`500ms`, `10s`) and `KEY=VALUE` labels; and the
//! check that report files can be written, which `run`, `report` and Chaos Toolkit runs share.

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

/// Makes sure every report can be written before anything is touched: creates missing parent directories (as
/// `chaos demo --reports` does) and opens each file for writing. A path that cannot be written is bad usage
/// (exit 2), found before the run, not after the faults came and went.
pub(crate) fn check_outputs(outputs: &[(&str, &Option<std::path::PathBuf>)]) -> Result<(), String> {
    for (flag, path) in outputs {
        let Some(path) = path else { continue };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!("--{flag} {}: cannot create the directory {}: {e}", path.display(), dir.display())
            })?;
        }
        if path.is_dir() {
            return Err(format!("--{flag} {}: is a directory, expected a file name", path.display()));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| format!("--{flag} {}: cannot write there: {e}", path.display()))?;
    }
    Ok(())
}
