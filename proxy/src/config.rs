//! Startup configuration files for `chaos proxy --config FILE`: Toxiproxy's JSON array of proxies (the same
//! code path as `/populate`), or the same in YAML. Beyond Toxiproxy, each proxy may list `toxics` (the API's
//! toxic JSON), applied right after the proxies are up; and the file may be an object `{proxies: [...]}`.

use std::path::Path;

use serde::Deserialize;

use crate::model::{ProxyInput, ToxicInput};
use crate::server::Server;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Apply { path: String, message: String },
}

/// The object form of a config file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigObject {
    proxies: Vec<ProxyInput>,
}

/// Parses a config file's text; `path` decides the format (`.yaml`/`.yml` → YAML, else JSON) and names
/// the file in errors, which carry line and column.
pub fn parse(path: &str, text: &str) -> Result<Vec<ProxyInput>, ConfigError> {
    let yaml = path.ends_with(".yaml") || path.ends_with(".yml");
    // Decide the shape from the document's first significant token and decode that type directly, so serde's
    // own message (what was wrong, at which line and column) reaches the user.
    let object = if yaml { yaml_is_mapping(text) } else { text.trim_start().starts_with('{') };
    let parsed: Result<Vec<ProxyInput>, String> = match (yaml, object) {
        (true, true) => {
            serde_saphyr::from_str::<ConfigObject>(text).map(|o| o.proxies).map_err(|e| e.to_string())
        }
        (true, false) => serde_saphyr::from_str::<Vec<ProxyInput>>(text).map_err(|e| e.to_string()),
        (false, true) => {
            serde_json::from_str::<ConfigObject>(text).map(|o| o.proxies).map_err(|e| e.to_string())
        }
        (false, false) => serde_json::from_str::<Vec<ProxyInput>>(text).map_err(|e| e.to_string()),
    };
    parsed.map_err(|message| ConfigError::Parse { path: path.to_string(), message })
}

/// Whether a YAML document's top level is a mapping (`proxies: ...`) rather than a sequence (`- name: ...`).
fn yaml_is_mapping(text: &str) -> bool {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---" && !l.starts_with('%'));
    first.is_some_and(|l| !l.starts_with('-') && !l.starts_with('['))
}

/// Loads a config file into the server: populate, then each proxy's toxics.
pub async fn load(server: &Server, path: &Path) -> Result<usize, ConfigError> {
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
    let inputs = parse(&shown, &text)?;
    // Decode every toxic before anything is created, so a bad file changes nothing.
    let mut toxics: Vec<(String, Vec<ToxicInput>)> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if let Some(value) = &input.toxics {
            let list: Vec<ToxicInput> = serde_json::from_value(value.clone()).map_err(|e| {
                ConfigError::Parse { path: shown.clone(), message: format!("proxy {}: toxics: {e}", i + 1) }
            })?;
            toxics.push((input.name.clone().unwrap_or_default(), list));
        }
    }
    let count = inputs.len();
    server
        .populate(inputs)
        .await
        .map_err(|(e, _)| ConfigError::Apply { path: shown.clone(), message: e.to_string() })?;
    for (proxy, list) in toxics {
        for toxic in list {
            let name = toxic.name.clone().unwrap_or_default();
            // A toxic already there from an earlier load is replaced, so loading twice is idempotent.
            let _ = server.remove_toxic(&proxy, &name).await;
            server.add_toxic(&proxy, toxic).await.map_err(|e| ConfigError::Apply {
                path: shown.clone(),
                message: format!("proxy {proxy}: toxic {name}: {e}"),
            })?;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_array_and_yaml_object_both_parse() {
        let json = r#"[{"name":"redis","listen":"127.0.0.1:0","upstream":"127.0.0.1:6379"}]"#;
        assert_eq!(parse("c.json", json).unwrap()[0].name.as_deref(), Some("redis"));
        let yaml = "proxies:\n  - name: pg\n    listen: 127.0.0.1:0\n    upstream: 127.0.0.1:5432\n    toxics:\n      - {type: latency, attributes: {latency: 100}}\n";
        let parsed = parse("c.yaml", yaml).unwrap();
        assert_eq!(parsed[0].upstream.as_deref(), Some("127.0.0.1:5432"));
        assert!(parsed[0].toxics.is_some());
    }

    #[test]
    fn errors_name_the_file_and_position() {
        let err = parse("bad.json", "[{\"name\": }]").unwrap_err().to_string();
        assert!(err.starts_with("bad.json: ") && err.contains("line 1"), "{err}");
        let err = parse("bad.yaml", "proxies: [\n  {name: x, upstream: [}\n").unwrap_err().to_string();
        assert!(err.starts_with("bad.yaml: "), "{err}");
    }
}
