//! Startup configuration files for `chaos proxy --config FILE`: Toxiproxy's JSON array of proxies (the same
//! code path as `/populate`), or the same in YAML. Beyond Toxiproxy, each proxy may list `toxics` (the API's
//! toxic JSON), applied right after the proxies are up; and the file may be an object `{proxies: [...]}`.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use tracing::warn;

use crate::model::{ProxyInput, ToxicInput};
use crate::server::Server;
use crate::toxics::ToxicKind;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The file is not a valid config: `at` is `path:line:column` (just `path` where no position is known).
    #[error("{at}: {message}")]
    Parse { at: String, message: String },
    #[error("{at}: {message}")]
    Apply { at: String, message: String },
}

/// The keys a proxy entry must have (as Toxiproxy's populate requires).
const REQUIRED_KEYS: &[&str] = &["name", "upstream"];

/// The keys a proxy entry may have: the fields [`ProxyInput`] decodes (Toxiproxy's `name`, `listen`,
/// `upstream`, `enabled`; the rest ours), read from serde's derive so the list cannot drift from the type.
pub fn proxy_keys() -> &'static [&'static str] {
    fields_of::<ProxyInput>()
}

/// The keys a toxic entry may have: the fields [`ToxicInput`] decodes (`direction` is noxious-client's name
/// for `stream`).
pub fn toxic_keys() -> &'static [&'static str] {
    fields_of::<ToxicInput>()
}

/// The field names serde's derive passes to `deserialize_struct` for `T`: a deserializer that only records
/// them and then refuses.
fn fields_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The object form of a config file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigObject {
    proxies: Vec<ProxyInput>,
}

/// One proxy of a parsed config file with where it and its toxics are written.
#[derive(Debug)]
pub struct ConfigEntry {
    pub input: ProxyInput,
    /// `path:line:column` of the entry (`path` alone when unknown).
    pub at: String,
    /// The entry's toxics, decoded, each with its `path:line:column`.
    pub toxics: Vec<(ToxicInput, String)>,
}

/// Parses a config file's text; `path` decides the format (`.yaml`/`.yml` → YAML, else JSON) and names
/// the file in errors, which start with `path:line:column`.
pub fn parse(path: &str, text: &str) -> Result<Vec<ProxyInput>, ConfigError> {
    Ok(parse_entries(path, text)?.into_iter().map(|e| e.input).collect())
}

/// Parses and checks a config file: syntax and types (serde's own messages), then every proxy's keys (unknown
/// ones named with the allowed ones, required ones present) and every toxic (its keys, a known `type`, a
/// valid `stream`), each error at the line and column of what is wrong.
///
/// Toxiproxy ignores unknown keys in its JSON, so a JSON proxy entry with one still loads (a warning names
/// it); YAML, this project's own format, refuses it.
pub fn parse_entries(path: &str, text: &str) -> Result<Vec<ConfigEntry>, ConfigError> {
    let yaml = path.ends_with(".yaml") || path.ends_with(".yml");
    // Decide the shape from the document's first significant token and decode that type directly, so serde's
    // own message (what was wrong, at which line and column) reaches the user.
    let object = if yaml { yaml_is_mapping(text) } else { text.trim_start().starts_with('{') };
    let inputs: Vec<ProxyInput> = if yaml {
        let parsed = if object {
            serde_saphyr::from_str::<ConfigObject>(text).map(|o| o.proxies)
        } else {
            serde_saphyr::from_str::<Vec<ProxyInput>>(text)
        };
        parsed.map_err(|e| yaml_error(path, &e))?
    } else {
        let parsed = if object {
            serde_json::from_str::<ConfigObject>(text).map(|o| o.proxies)
        } else {
            serde_json::from_str::<Vec<ProxyInput>>(text)
        };
        parsed.map_err(|e| json_error(path, &e))?
    };
    // Where each key is: JSON is YAML too, so one positioned reading serves both. Should it fail on some
    // JSON serde_json accepted, messages fall back to the entry's number.
    let shape = if yaml {
        serde_saphyr::from_str::<Shape>(text).ok()
    } else {
        // JSON keeps the last of duplicate keys (serde_json does so inside `toxics`); YAML refuses them.
        let mut options = serde_saphyr::Options::default();
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
        serde_saphyr::from_str_with_options::<Shape>(&yaml_printable(text), options).ok()
    };
    let list = shape.as_ref().and_then(|s| match &s.kind {
        ShapeKind::Seq(items) => Some(items.as_slice()),
        ShapeKind::Map(entries) => entries.iter().find(|(k, _, _)| k == "proxies").and_then(|(_, _, v)| {
            if let ShapeKind::Seq(items) = &v.kind { Some(items.as_slice()) } else { None }
        }),
        ShapeKind::Scalar => None,
    });
    let at = |pos: Option<Pos>| match pos {
        Some(p) => format!("{path}:{}:{}", p.line, p.column),
        None => path.to_string(),
    };
    let mut entries = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let shape = list.and_then(|l| l.get(i));
        let keys: &[(String, Pos, Shape)] = match shape.map(|s| &s.kind) {
            Some(ShapeKind::Map(keys)) => keys,
            _ => &[],
        };
        let who = match &input.name {
            Some(name) => format!("proxy {name}"),
            None => format!("proxy {}", i + 1),
        };
        let unknown: Vec<&(String, Pos, Shape)> =
            keys.iter().filter(|(k, _, _)| !proxy_keys().contains(&k.as_str())).collect();
        let allowed = proxy_keys().join(", ");
        let missing = REQUIRED_KEYS.iter().find(|k| match **k {
            "name" => input.name.is_none(),
            _ => input.upstream.is_none(),
        });
        if let Some(missing) = missing {
            let mut message = format!("{who}: missing required key `{missing}`");
            for (key, pos, _) in &unknown {
                message.push_str(&format!(
                    "; unknown key `{key}` at {}:{} (expected one of {allowed})",
                    pos.line, pos.column
                ));
            }
            return Err(ConfigError::Parse { at: at(shape.map(|s| s.pos)), message });
        }
        for (key, pos, _) in &unknown {
            let message = format!("{who}: unknown key `{key}`, expected one of {allowed}");
            if yaml {
                return Err(ConfigError::Parse { at: at(Some(*pos)), message });
            }
            warn!(at = %at(Some(*pos)), "{message}; ignored, as Toxiproxy does");
        }
        let toxic_shapes = keys.iter().find(|(k, _, _)| k == "toxics").and_then(|(_, _, v)| match &v.kind {
            ShapeKind::Seq(items) => Some(items.as_slice()),
            _ => None,
        });
        let toxics = match &input.toxics {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(list)) => {
                let mut toxics = Vec::with_capacity(list.len());
                for (j, value) in list.iter().enumerate() {
                    let shape = toxic_shapes.and_then(|t| t.get(j));
                    let who = format!("{who}: toxic {}", j + 1);
                    let toxic = toxic(value, shape, &who, &at)?;
                    toxics.push((toxic, at(shape.map(|s| s.pos))));
                }
                toxics
            }
            Some(other) => {
                let pos = keys.iter().find(|(k, _, _)| k == "toxics").map(|(_, _, v)| v.pos);
                let message = format!("{who}: toxics: expected a list of toxics, found {}", json_kind(other));
                return Err(ConfigError::Parse { at: at(pos), message });
            }
        };
        entries.push(ConfigEntry { input, at: at(shape.map(|s| s.pos)), toxics });
    }
    Ok(entries)
}

/// Checks and decodes one toxic of a proxy entry; `who` says which, `at` renders a position.
fn toxic(
    value: &serde_json::Value,
    shape: Option<&Shape>,
    who: &str,
    at: &dyn Fn(Option<Pos>) -> String,
) -> Result<ToxicInput, ConfigError> {
    let here = shape.map(|s| s.pos);
    let keys: &[(String, Pos, Shape)] = match shape.map(|s| &s.kind) {
        Some(ShapeKind::Map(keys)) => keys,
        _ => &[],
    };
    let key_pos = |key: &str| keys.iter().find(|(k, _, _)| k == key).map(|(_, p, _)| *p).or(here);
    let value_pos = |key: &str| keys.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v.pos).or(here);
    let serde_json::Value::Object(map) = value else {
        let message = format!("{who}: expected a mapping, found {}", json_kind(value));
        return Err(ConfigError::Parse { at: at(here), message });
    };
    if let Some(key) = map.keys().find(|k| !toxic_keys().contains(&k.as_str())) {
        let message = format!("{who}: unknown key `{key}`, expected one of {}", toxic_keys().join(", "));
        return Err(ConfigError::Parse { at: at(key_pos(key)), message });
    }
    let types = ToxicKind::TYPES.join(", ");
    match map.get("type") {
        None | Some(serde_json::Value::Null) => {
            let message = format!("{who}: missing required key `type` (one of {types})");
            return Err(ConfigError::Parse { at: at(here), message });
        }
        Some(serde_json::Value::String(t)) if ToxicKind::TYPES.contains(&t.as_str()) => {}
        Some(other) => {
            let shown = other.as_str().map_or_else(|| other.to_string(), |s| format!("`{s}`"));
            let message = format!("{who}: invalid toxic type {shown}, expected one of {types}");
            return Err(ConfigError::Parse { at: at(value_pos("type")), message });
        }
    }
    for key in ["stream", "direction"] {
        if let Some(stream) = map.get(key).and_then(|v| v.as_str())
            && !["upstream", "downstream"].contains(&stream.to_ascii_lowercase().as_str())
        {
            let message = format!("{who}: invalid {key} `{stream}`, expected upstream or downstream");
            return Err(ConfigError::Parse { at: at(value_pos(key)), message });
        }
    }
    serde_json::from_value::<ToxicInput>(value.clone()).map_err(|e| {
        // serde names no field in a type error here, so find the key whose value alone fails.
        let culprit = map.iter().find(|(k, v)| {
            let single = serde_json::Value::Object([((*k).clone(), (*v).clone())].into_iter().collect());
            serde_json::from_value::<ToxicInput>(single).is_err()
        });
        match culprit {
            Some((key, _)) => {
                ConfigError::Parse { at: at(value_pos(key)), message: format!("{who}: {key}: {e}") }
            }
            None => ConfigError::Parse { at: at(here), message: format!("{who}: {e}") },
        }
    })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

fn json_error(path: &str, err: &serde_json::Error) -> ConfigError {
    let full = err.to_string();
    let message = full.rfind(" at line ").map_or(full.as_str(), |i| &full[..i]).to_string();
    ConfigError::Parse { at: format!("{path}:{}:{}", err.line().max(1), err.column().max(1)), message }
}

fn yaml_error(path: &str, err: &serde_saphyr::Error) -> ConfigError {
    let inner = err.without_snippet();
    let rendered = inner.to_string();
    // serde-saphyr renders "message at line L, column C" (sometimes over several lines): keep the message.
    let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid YAML").trim();
    let message = first.find(" at line ").map_or(first, |i| &first[..i]);
    let message = message.strip_prefix("error: ").unwrap_or(message).trim_end_matches(['.', ':', ',']);
    let at = match inner.location() {
        Some(l) => format!("{path}:{}:{}", l.line().max(1), l.column().max(1)),
        None => format!("{path}:1:1"),
    };
    ConfigError::Parse { at, message: message.to_string() }
}

/// A 1-based line and column in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    line: u64,
    column: u64,
}

impl Pos {
    fn of(location: &serde_saphyr::Location) -> Pos {
        Pos { line: location.line().max(1), column: location.column().max(1) }
    }
}

/// The document's structure with the position of every value and key, and nothing else: values themselves
/// are decoded by serde into the typed inputs, this only says where things are.
#[derive(Debug)]
struct Shape {
    pos: Pos,
    kind: ShapeKind,
}

#[derive(Debug)]
enum ShapeKind {
    Scalar,
    Seq(Vec<Shape>),
    /// Each key with its own position and its value.
    Map(Vec<(String, Pos, Shape)>),
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<ShapeOf>::deserialize(d)?;
        Ok(Shape { pos: Pos::of(&spanned.referenced), kind: spanned.value.0 })
    }
}

struct ShapeOf(ShapeKind);

impl<'de> Deserialize<'de> for ShapeOf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor).map(ShapeOf)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = ShapeKind;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<ShapeKind, E> {
        Ok(ShapeKind::Scalar)
    }
    fn visit_none<E: de::Error>(self) -> Result<ShapeKind, E> {
        Ok(ShapeKind::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ShapeKind, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<ShapeKind, E> {
        Ok(ShapeKind::Scalar)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<ShapeKind, E> {
        Ok(ShapeKind::Scalar)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<ShapeKind, E> {
        Ok(ShapeKind::Scalar)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<ShapeKind, E> {
        Ok(ShapeKind::Scalar)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<ShapeKind, E> {
        Ok(ShapeKind::Scalar)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<ShapeKind, E> {
        Ok(ShapeKind::Scalar)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<ShapeKind, E> {
        Ok(ShapeKind::Scalar)
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<ShapeKind, E> {
        Ok(ShapeKind::Scalar)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ShapeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Shape>()? {
            items.push(item);
        }
        Ok(ShapeKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ShapeKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value: Shape = map.next_value()?;
            entries.push((key.value.0, Pos::of(&key.referenced), value));
        }
        Ok(ShapeKind::Map(entries))
    }
}

/// A mapping key as text (keys of a config are strings; any other scalar is shown as written).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_unit<E: de::Error>(self) -> Result<String, E> {
                Ok("null".to_string())
            }
        }
        d.deserialize_any(V).map(KeyText)
    }
}

/// JSON text with every character YAML does not take as printable (C0 and C1 controls, line and paragraph
/// separators, noncharacters) replaced by one `x`. serde_json has accepted the text, so such characters can
/// only be inside strings, whose content the positioned reading ignores; columns stay where they were.
fn yaml_printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{fffe}' | '\u{ffff}' => {
                'x'
            }
            _ => c,
        })
        .collect()
}

/// Whether a YAML document's top level is a mapping (`proxies: ...`) rather than a sequence (`- name: ...`).
fn yaml_is_mapping(text: &str) -> bool {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---" && !l.starts_with('%'));
    first.is_some_and(|l| !l.starts_with('-') && !l.starts_with('['))
}

/// Loads a config file into the server: populate, then each proxy's toxics. The whole file is checked first,
/// so a bad file changes nothing.
pub async fn load(server: &Server, path: &Path) -> Result<usize, ConfigError> {
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
    let entries = parse_entries(&shown, &text)?;
    let count = entries.len();
    let mut toxics: Vec<(String, Vec<(ToxicInput, String)>)> = Vec::new();
    let mut inputs = Vec::with_capacity(count);
    for entry in entries {
        toxics.push((entry.input.name.clone().unwrap_or_default(), entry.toxics));
        inputs.push(entry.input);
    }
    server
        .populate(inputs)
        .await
        .map_err(|(e, _)| ConfigError::Apply { at: shown.clone(), message: e.to_string() })?;
    for (proxy, list) in toxics {
        for (toxic, at) in list {
            // The name the server gives a toxic without one (`type_stream`), so messages never show it empty.
            let name = toxic.name.clone().unwrap_or_else(|| {
                let stream = toxic.stream.as_deref().or(toxic.direction.as_deref()).unwrap_or("downstream");
                format!("{}_{}", toxic.kind.as_deref().unwrap_or_default(), stream.to_ascii_lowercase())
            });
            // A toxic already there from an earlier load is replaced, so loading twice is idempotent.
            let _ = server.remove_toxic(&proxy, &name).await;
            server.add_toxic(&proxy, toxic).await.map_err(|e| ConfigError::Apply {
                at,
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
    fn the_allowed_keys_are_the_fields_serde_decodes() {
        let proxy = ["name", "listen", "upstream", "enabled", "half_close", "toxics", "protocol"];
        assert_eq!(proxy_keys()[..proxy.len()], proxy);
        assert_eq!(toxic_keys(), ["name", "type", "stream", "direction", "toxicity", "attributes", "ttl"]);
    }

    #[test]
    fn errors_name_the_file_and_position() {
        let err = parse("bad.json", "[{\"name\": }]").unwrap_err().to_string();
        assert!(err.starts_with("bad.json:1:11: "), "{err}");
        let err = parse("bad.yaml", "proxies: [\n  {name: x, upstream: [}\n").unwrap_err().to_string();
        assert!(err.starts_with("bad.yaml:2:"), "{err}");
    }

    /// The three mistakes new users make, in both formats: each error names the file, line and column, the
    /// offending key or value, and what is allowed.
    #[test]
    fn mistakes_are_named_at_their_position() {
        let cases = [
            (
                "c.json",
                "[\n  {\"name\": \"redis\", \"listen\": \"127.0.0.1:0\", \"upstream\": \"127.0.0.1:6379\",\n   \"toxics\": [{\"type\": \"latncy\"}]}\n]",
                "c.json:3:24: proxy redis: toxic 1: invalid toxic type `latncy`, expected one of noop, latency,",
            ),
            (
                "c.yaml",
                "- name: redis\n  listen: 127.0.0.1:0\n  upstream: 127.0.0.1:6379\n  toxics:\n    - type: latncy\n",
                "c.yaml:5:13: proxy redis: toxic 1: invalid toxic type `latncy`, expected one of noop, latency,",
            ),
            (
                "c.json",
                "[{\"name\": \"redis\",\n  \"upstrem\": \"127.0.0.1:6379\"}]",
                "c.json:1:2: proxy redis: missing required key `upstream`; unknown key `upstrem` at 2:3 (expected one of name, listen, upstream,",
            ),
            (
                "c.yaml",
                "- name: redis\n  upstrem: 127.0.0.1:6379\n",
                "c.yaml:1:3: proxy redis: missing required key `upstream`; unknown key `upstrem` at 2:3 (expected one of name, listen, upstream,",
            ),
        ];
        for (path, text, expected) in cases {
            let err = parse(path, text).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{path}: {err}\nexpected: {expected}");
        }
        // YAML refuses an unknown key even when nothing is missing; JSON ignores it as Toxiproxy does.
        let err = parse("c.yaml", "- {name: r, upstream: u, protocl: http}\n").unwrap_err().to_string();
        assert!(
            err.starts_with("c.yaml:1:26: proxy r: unknown key `protocl`, expected one of name,"),
            "{err}"
        );
        assert!(parse("c.json", r#"[{"name": "r", "upstream": "u", "Logger": {}}]"#).is_ok());
        // A toxic's unknown key and bad stream are named too.
        let err =
            parse("c.yaml", "- {name: r, upstream: u, toxics: [{type: latency, strem: up}]}\n").unwrap_err();
        assert!(err.to_string().starts_with("c.yaml:1:51: proxy r: toxic 1: unknown key `strem`"), "{err}");
        let err = parse(
            "c.json",
            r#"[{"name": "r", "upstream": "u", "toxics": [{"type": "latency", "stream": "up"}]}]"#,
        );
        let err = err.unwrap_err().to_string();
        assert!(err.starts_with("c.json:1:74: proxy r: toxic 1: invalid stream `up`"), "{err}");
    }
}
