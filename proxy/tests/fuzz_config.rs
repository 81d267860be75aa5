//! Seeded fuzzing of the proxy's offline parsers: `config::parse` (JSON and YAML config files) and
//! `ToxicKind::merged` (toxic attributes). Runs in the normal `cargo test` suite on the stable toolchain.
//!
//! The rule under test: bad input gets a clear error that says what was wrong and where, and nothing else
//! happens; good input still parses to exactly what was written. Each fuzz loop collects every violation and
//! fails once at the end with counts and the first examples (each with the seed and case that produced it),
//! so one known bug does not hide the others. Change a `SEED` to explore; keep the counts small enough for a
//! debug build on a loaded two-core machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use chaos_proxy::config::parse;
use chaos_proxy::toxics::{Sample, SliceLengths, ToxicKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

const SEED: u64 = 0x00c0_ffee_0f1e_5eed;
/// Mutated documents per format.
const MUTATED_CASES: usize = 2500;
/// Random documents per format that are valid by construction.
const VALID_CASES: usize = 600;
/// Random attribute maps per toxic type.
const ATTRIBUTE_CASES: usize = 1500;

// === violations ===

/// Every broken expectation of one fuzz loop, grouped by kind, reported together at the end.
#[derive(Default)]
struct Violations {
    by_kind: BTreeMap<&'static str, (usize, Vec<String>)>,
}

impl Violations {
    fn add(&mut self, kind: &'static str, example: String) {
        let (count, examples) = self.by_kind.entry(kind).or_default();
        *count += 1;
        if examples.len() < 3 {
            examples.push(example);
        }
    }

    fn assert_none(self, what: &str) {
        if self.by_kind.is_empty() {
            return;
        }
        let mut report = format!("{what}: the parser broke its contract (seed {SEED:#x}):\n");
        for (kind, (count, examples)) in &self.by_kind {
            report.push_str(&format!("- {kind}: {count} case(s), e.g.\n"));
            for example in examples {
                report.push_str(&format!("    {example}\n"));
            }
        }
        panic!("{report}");
    }
}

/// Shows a fuzz input in a failure message without flooding it.
fn shown(text: &str) -> String {
    let mut s: String = text.chars().take(300).collect();
    if s.len() < text.len() {
        s.push_str(&format!("… ({} bytes)", text.len()));
    }
    format!("{s:?}")
}

/// Runs `f`, turning a panic into `Err` without printing it: the fuzz loop reports panics with their input.
fn quietly<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                default(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result
}

// === config files ===

/// A proxy entry of a generated config file, valid by construction.
#[derive(Clone, Debug)]
struct ProxySpec {
    name: String,
    listen: String,
    upstream: String,
    enabled: Option<bool>,
    half_close: Option<bool>,
    toxics: Option<Value>,
}

const NAME_PIECES: &[&str] = &[
    "redis",
    "pg",
    "x",
    "ünïcødé",
    "名前",
    "🦀",
    "quote\"d",
    "back\\slash",
    "a/b",
    "with space",
    "tab\t",
    "nl\n",
    "nul\u{0}",
    "%2F",
    "..",
    "-",
    "#hash",
    ": colon",
    "- dash",
    "&anchor",
    "*alias",
    "!tag",
    "'single'",
    "{brace}",
    "[bracket]",
    "\u{202e}rtl",
    "\u{2028}",
    "\u{85}nel",
    "\u{1}ctl",
    "yes",
    "null",
    "0x1F",
    "1e3",
];

fn random_text(rng: &mut StdRng) -> String {
    let mut s = String::new();
    for _ in 0..rng.random_range(1..4) {
        s.push_str(NAME_PIECES[rng.random_range(0..NAME_PIECES.len())]);
    }
    if rng.random_bool(0.02) {
        s.push_str(&"L".repeat(rng.random_range(1000..20_000)));
    }
    s
}

fn random_toxics(rng: &mut StdRng) -> Value {
    let mut list = Vec::new();
    for _ in 0..rng.random_range(0..3) {
        let kind = ToxicKind::TYPES[rng.random_range(0..ToxicKind::TYPES.len())];
        let mut toxic = json!({"type": kind, "name": random_text(rng)});
        if rng.random_bool(0.5) {
            toxic["stream"] = json!(if rng.random_bool(0.5) { "upstream" } else { "downstream" });
        }
        if rng.random_bool(0.5) {
            toxic["toxicity"] = json!(0.5);
        }
        if rng.random_bool(0.5) {
            toxic["attributes"] = json!({"latency": rng.random_range(0..5000), "label": random_text(rng)});
        }
        list.push(toxic);
    }
    Value::Array(list)
}

fn random_spec(rng: &mut StdRng) -> ProxySpec {
    ProxySpec {
        name: random_text(rng),
        listen: format!("127.0.0.1:{}", rng.random_range(0..65_536)),
        upstream: random_text(rng),
        enabled: rng.random_bool(0.3).then(|| rng.random_bool(0.5)),
        half_close: rng.random_bool(0.3).then(|| rng.random_bool(0.5)),
        toxics: rng.random_bool(0.4).then(|| random_toxics(rng)),
    }
}

fn spec_json(spec: &ProxySpec) -> Value {
    let mut v = json!({"name": spec.name, "listen": spec.listen, "upstream": spec.upstream});
    if let Some(b) = spec.enabled {
        v["enabled"] = json!(b);
    }
    if let Some(b) = spec.half_close {
        v["half_close"] = json!(b);
    }
    if let Some(t) = &spec.toxics {
        v["toxics"] = t.clone();
    }
    v
}

fn json_document(specs: &[ProxySpec], object_form: bool, pretty: bool) -> String {
    let list = Value::Array(specs.iter().map(spec_json).collect());
    let doc = if object_form { json!({ "proxies": list }) } else { list };
    if pretty { serde_json::to_string_pretty(&doc).unwrap() } else { doc.to_string() }
}

/// A YAML double-quoted scalar; everything outside printable ASCII is escaped, so C1 controls, line
/// separators and BOMs survive (YAML forbids some of them raw).
fn yaml_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// A JSON value as YAML flow text, strings always quoted so none is read as a number, bool or null.
fn yaml_flow(v: &Value) -> String {
    match v {
        Value::String(s) => yaml_quote(s),
        Value::Array(items) => format!("[{}]", items.iter().map(yaml_flow).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let entries: Vec<String> =
                map.iter().map(|(k, v)| format!("{}: {}", yaml_quote(k), yaml_flow(v))).collect();
            format!("{{{}}}", entries.join(", "))
        }
        other => other.to_string(),
    }
}

fn yaml_document(specs: &[ProxySpec], object_form: bool, block: bool) -> String {
    let (mut out, indent) =
        if object_form { (String::from("proxies:\n"), "  ") } else { (String::new(), "") };
    if specs.is_empty() {
        out.push_str(if object_form { "  []\n" } else { "[]\n" });
        return out;
    }
    for spec in specs {
        let Value::Object(fields) = spec_json(spec) else { unreachable!("spec_json builds an object") };
        if !block {
            out.push_str(&format!("{indent}- {}\n", yaml_flow(&Value::Object(fields))));
            continue;
        }
        for (i, (key, value)) in fields.iter().enumerate() {
            let lead = if i == 0 { "- " } else { "  " };
            out.push_str(&format!("{indent}{lead}{key}: {}\n", yaml_flow(value)));
        }
    }
    out
}

/// Text that looks like config syntax, spliced in by the mutator.
const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "null",
    "true",
    "1e999",
    "-0",
    "18446744073709551616",
    "\"\\ud800\"",
    "\\u0000",
    "NaN",
    "\u{feff}",
    "\"name\":\"dup\",",
    "\"proxies\":",
    "[[[[[[[[",
    "]]]]",
    "//",
];
const YAML_TOKENS: &[&str] = &[
    "- ",
    ": ",
    "\n",
    "\n  ",
    "\t",
    "#",
    "&a ",
    "*a",
    "!!binary ",
    "!!int ",
    "<<: *a\n",
    "---\n",
    "...\n",
    "? ",
    "%YAML 1.2\n",
    "|\n",
    ">-\n",
    "'",
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    "~",
    "null",
    ".inf",
    "0o17",
    "name: dup\n",
    "proxies:\n",
    "\u{feff}",
    "\\x",
    "\r",
];

/// Applies one to four random edits to `text`: byte flips, deletions, duplications, truncation, line swaps
/// and splices of syntax tokens. The result is made valid UTF-8 (the parser takes `&str`).
fn mutate_text(rng: &mut StdRng, text: &str, tokens: &[&str]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = bytes.len();
        let at = if len == 0 { 0 } else { rng.random_range(0..len) };
        match rng.random_range(0..8) {
            0 if len > 0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => bytes[at] = rng.random(),
            2 if len > 0 => {
                let end = (at + rng.random_range(1..16)).min(len);
                bytes.drain(at..end);
            }
            3 if len > 0 => {
                let end = (at + rng.random_range(1..32)).min(len);
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
            4 => bytes.truncate(at),
            5 => {
                let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
                if lines.len() > 1 {
                    let (a, b) = (rng.random_range(0..lines.len()), rng.random_range(0..lines.len()));
                    lines.swap(a, b);
                }
                bytes = lines.join(&b'\n');
            }
            _ => {
                let token = tokens[rng.random_range(0..tokens.len())].as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn random_garbage(rng: &mut StdRng) -> String {
    let len = rng.random_range(0..512);
    let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether the text is not even well-formed in its format (as opposed to well-formed but the wrong shape).
fn is_syntax_error(yaml: bool, text: &str) -> bool {
    if yaml {
        serde_saphyr::from_str::<serde_json::Value>(text).is_err()
    } else {
        serde_json::from_str::<serde_json::Value>(text).is_err()
    }
}

/// Parses and checks the contract for one document: no panic; an error names the file, says where (`:line:column`)
/// and says what (never serde's bare "did not match any variant" of the untagged file shape).
/// `LINE:COLUMN: rest` → (line, column, rest), both at least 1.
fn position_prefix(text: &str) -> Option<(usize, usize, &str)> {
    let (line, rest) = text.split_once(':')?;
    let (column, rest) = rest.split_once(": ")?;
    let (line, column) = (line.parse().ok()?, column.parse().ok()?);
    (line >= 1 && column >= 1).then_some((line, column, rest))
}

fn check_parse(v: &mut Violations, path: &str, text: &str, case: usize) -> Option<usize> {
    let yaml = path.ends_with(".yaml");
    let result = quietly(|| parse(path, text));
    let example = || format!("case {case}, {path}: {}", shown(text));
    match result {
        Err(_) => {
            v.add("parse panicked", example());
            None
        }
        Ok(Ok(list)) => Some(list.len()),
        Ok(Err(e)) => {
            let message = e.to_string();
            let Some(rest) = message.strip_prefix(&format!("{path}:")) else {
                v.add("error does not start with the file path", format!("{} -> {message:?}", example()));
                return None;
            };
            // `path:line:column: message`, the position first as in experiment errors.
            let positioned = position_prefix(rest);
            let rest = positioned.map_or(rest, |(_, _, rest)| rest);
            if rest.trim().is_empty() {
                v.add("error says nothing after the path", example());
            }
            let kind = match (positioned.is_some(), rest.contains("did not match any variant")) {
                // serde's untagged enum drops the real error: neither what was wrong nor where.
                (_, true) if is_syntax_error(yaml, text) => {
                    "syntax error hidden by the untagged ConfigFile: no line"
                }
                (_, true) => "shape error from the untagged ConfigFile says neither what nor where",
                (false, false) if is_syntax_error(yaml, text) => "syntax error without a line",
                (false, false) => "error without a line",
                (true, false) => return None,
            };
            v.add(kind, format!("{} -> {message:?}", example()));
            None
        }
    }
}

fn fuzz_format(path: &str, tokens: &[&str]) {
    let yaml = path.ends_with(".yaml");
    let mut rng = StdRng::seed_from_u64(SEED ^ u64::from(yaml));
    let mut v = Violations::default();
    let mut parsed = 0;
    for case in 0..MUTATED_CASES {
        let text = if rng.random_bool(0.08) {
            random_garbage(&mut rng)
        } else {
            let specs: Vec<ProxySpec> = (0..rng.random_range(0..4)).map(|_| random_spec(&mut rng)).collect();
            let (object_form, style) = (rng.random_bool(0.5), rng.random_bool(0.5));
            let base = if yaml {
                yaml_document(&specs, object_form, style)
            } else {
                json_document(&specs, object_form, style)
            };
            mutate_text(&mut rng, &base, tokens)
        };
        parsed += usize::from(check_parse(&mut v, path, &text, case).is_some());
    }
    // Some mutations must leave documents valid, or the mutator is too blunt to reach the decoder.
    assert!(parsed > MUTATED_CASES / 50, "only {parsed} of {MUTATED_CASES} mutated documents parsed");
    v.assert_none(&format!("mutated {path} documents"));
}

#[test]
fn mutated_json_configs_never_panic_and_errors_say_what_and_where() {
    fuzz_format("fuzz/config.json", JSON_TOKENS);
}

#[test]
fn mutated_yaml_configs_never_panic_and_errors_say_what_and_where() {
    fuzz_format("fuzz/config.yaml", YAML_TOKENS);
}

#[test]
fn valid_configs_parse_to_exactly_what_was_written() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 0x7a11d);
    for case in 0..VALID_CASES {
        let specs: Vec<ProxySpec> = (0..rng.random_range(0..5)).map(|_| random_spec(&mut rng)).collect();
        let (object_form, style) = (rng.random_bool(0.5), rng.random_bool(0.5));
        for (path, text) in [
            ("valid.json", json_document(&specs, object_form, style)),
            ("valid.yaml", yaml_document(&specs, object_form, style)),
        ] {
            let list = parse(path, &text)
                .unwrap_or_else(|e| panic!("case {case}: valid {path} refused: {e}\n{}", shown(&text)));
            assert_eq!(list.len(), specs.len(), "case {case}: {path}");
            for (got, want) in list.iter().zip(&specs) {
                let at = format!("case {case}, {path}: {}", shown(&text));
                assert_eq!(got.name.as_deref(), Some(want.name.as_str()), "{at}");
                assert_eq!(got.listen.as_deref(), Some(want.listen.as_str()), "{at}");
                assert_eq!(got.upstream.as_deref(), Some(want.upstream.as_str()), "{at}");
                assert_eq!(got.enabled, want.enabled, "{at}");
                assert_eq!(got.half_close, want.half_close, "{at}");
                assert_eq!(got.toxics, want.toxics, "{at}");
            }
        }
    }
}

#[test]
fn config_parser_caps_hold() {
    // An alias bomb (10^9 nodes once expanded) is refused, quickly, with the place it was used.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        let refs = vec![format!("*a{p}"); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    bomb.push_str("proxies: []\n");
    let err = parse("bomb.yaml", &bomb).unwrap_err().to_string();
    let positioned = |path: &str, err: &str| {
        err.strip_prefix(&format!("{path}:")).and_then(position_prefix).is_some_and(|(_, _, m)| !m.is_empty())
    };
    assert!(positioned("bomb.yaml", &err), "{err}");
    // Deep nesting is refused with a position (a type error or the recursion limit), never a stack overflow.
    for (path, text) in [("deep.json", "[".repeat(100_000)), ("deep.yaml", "[".repeat(100_000))] {
        let err = parse(path, &text).unwrap_err().to_string();
        assert!(positioned(path, &err), "{err}");
    }
    // The examples documented in config.rs keep parsing.
    let json = r#"[{"name":"redis","listen":"127.0.0.1:0","upstream":"127.0.0.1:6379"}]"#;
    assert_eq!(parse("c.json", json).unwrap()[0].name.as_deref(), Some("redis"));
    let yaml = "proxies:\n  - name: pg\n    listen: 127.0.0.1:0\n    upstream: 127.0.0.1:5432\n    toxics:\n      - {type: latency, attributes: {latency: 100}}\n";
    assert_eq!(parse("c.yaml", yaml).unwrap()[0].upstream.as_deref(), Some("127.0.0.1:5432"));
}

// === toxic attributes ===

/// Every attribute name any toxic type knows, plus near misses.
const ATTRIBUTE_KEYS: &[&str] = &[
    "latency",
    "jitter",
    "distribution",
    "rate",
    "delay",
    "timeout",
    "average_size",
    "size_variation",
    "bytes",
    "Latency",
    "latency ",
    "",
    "toxicity",
    "ü",
];

fn random_attribute_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..24) {
        0..=5 => json!(rng.random_range(0..10_000)),
        6 => json!(rng.random_range(-100..0)),
        7 => json!(rng.random::<i64>()),
        8 => json!(*[i64::MAX, i64::MIN, i64::MAX / 2 + 1, 0, 1].get(rng.random_range(0..5)).unwrap()),
        9 => json!(u64::MAX),
        10 => json!(1.5),
        11 => json!(2.0),
        12 => json!(1e300),
        13 => json!(-0.0),
        14 => json!(["uniform", "normal", "pareto", "lognormal"][rng.random_range(0..4)]),
        15 => json!(["NORMAL", "gaussian", "", "100"][rng.random_range(0..4)]),
        16 => Value::Null,
        17 => json!(rng.random_bool(0.5)),
        18 => json!([1, 2]),
        19 => json!({"latency": 5}),
        20 => json!("x".repeat(rng.random_range(0..2000))),
        _ => json!(rng.random_range(0..100)),
    }
}

fn random_attributes(rng: &mut StdRng, fields: &[String]) -> Map<String, Value> {
    let mut map = Map::new();
    for _ in 0..rng.random_range(0..5) {
        let key = if rng.random_bool(0.7) && !fields.is_empty() {
            fields[rng.random_range(0..fields.len())].clone()
        } else {
            ATTRIBUTE_KEYS[rng.random_range(0..ATTRIBUTE_KEYS.len())].to_string()
        };
        map.insert(key, random_attribute_value(rng));
    }
    map
}

/// The attribute names a type accepts: what it shows, plus `distribution`, which latency hides when uniform.
fn fields_of(kind: &ToxicKind) -> Vec<String> {
    let mut fields: Vec<String> = kind.attributes().keys().cloned().collect();
    if kind.type_name() == "latency" {
        fields.push("distribution".into());
    }
    fields
}

/// An accepted kind must also be usable: the data path draws delays and cuts slices from these values.
fn exercise(kind: &ToxicKind, rng: &mut StdRng) -> Result<(), String> {
    quietly(|| match kind {
        ToxicKind::Latency(l) => {
            for _ in 0..4 {
                let _ = l.sample(rng);
            }
        }
        ToxicKind::Slicer(s) => {
            for len in [0, 1, 7, 1500] {
                let lengths = s.slice_lengths(len, rng);
                assert_eq!(lengths.iter().sum::<usize>(), len, "slices must add up to the chunk");
                assert!(lengths.iter().all(|l| *l > 0), "no empty slice");
            }
        }
        _ => {}
    })
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

/// Checks an accepted merge: it round-trips, honours every value sent, keeps every value not sent.
fn check_accepted(
    v: &mut Violations,
    current: &ToxicKind,
    incoming: &Map<String, Value>,
    kind: &ToxicKind,
    at: &str,
) {
    let default = ToxicKind::default_for(kind.type_name()).unwrap();
    if kind.type_name() != current.type_name() {
        v.add("merge changed the type", at.to_string());
    }
    if default.merged(Some(&kind.attributes())).as_ref() != Ok(kind)
        || kind.merged(Some(&kind.attributes())).as_ref() != Ok(kind)
        || kind.merged(None).as_ref() != Ok(kind)
    {
        v.add("attributes() does not round-trip through merged()", format!("{at} -> {kind:?}"));
    }
    let (shown, before) = (kind.attributes(), current.attributes());
    for field in fields_of(current) {
        let sent = incoming.get(&field).filter(|v| !v.is_null());
        let expected = match sent {
            Some(value) if field == "distribution" && value == "uniform" => None,
            Some(value) => Some(value),
            None => before.get(&field),
        };
        if shown.get(&field) != expected {
            v.add("a value sent is not the value shown", format!("{at}: {field} -> {:?}", shown.get(&field)));
        }
    }
    if let ToxicKind::Slicer(s) = kind
        && (s.average_size < 0
            || s.size_variation < 0
            || s.delay < 0
            || (s.average_size == 0 && s.size_variation == 0))
    {
        v.add("slicer cap broken (negative or 0/0 accepted)", at.to_string());
    }
}

#[test]
fn random_toxic_attributes_are_merged_or_refused_by_name() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 0xa77);
    let mut v = Violations::default();
    for &type_name in ToxicKind::TYPES {
        let default = ToxicKind::default_for(type_name).unwrap();
        let fields = fields_of(&default);
        let (mut accepted, mut current) = (0, default.clone());
        for case in 0..ATTRIBUTE_CASES {
            // Now and then start over, so no attribute (latency's distribution) stays stuck at one value.
            if rng.random_bool(0.1) {
                current = default.clone();
            }
            let incoming = random_attributes(&mut rng, &fields);
            let at = format!(
                "{type_name} case {case}: {current:?} merged with {}",
                Value::Object(incoming.clone())
            );
            match quietly(|| current.merged(Some(&incoming))) {
                Err(_) => v.add("merged panicked", at),
                Ok(Ok(kind)) => {
                    accepted += 1;
                    check_accepted(&mut v, &current, &incoming, &kind, &at);
                    if let Err(panic) = exercise(&kind, &mut rng) {
                        v.add("accepted attributes panic on the data path", format!("{at}: {panic}"));
                    }
                    // Half the time keep the result, so later cases are partial updates of non-zero values.
                    if rng.random_bool(0.5) {
                        current = kind;
                    }
                }
                Ok(Err(e)) => {
                    let message = e.to_string();
                    let names_sent_key = message
                        .strip_prefix("attribute ")
                        .and_then(|rest| rest.split_once(": "))
                        .is_some_and(|(name, why)| incoming.contains_key(name) && !why.trim().is_empty());
                    let names_field = fields.iter().any(|f| message.contains(f.as_str()));
                    if !names_sent_key && !names_field {
                        v.add("refusal names no attribute", format!("{at} -> {message:?}"));
                    }
                }
            }
        }
        assert!(accepted > ATTRIBUTE_CASES / 10, "{type_name}: only {accepted} merges accepted");
    }
    v.assert_none("toxic attributes");
}

#[test]
fn slicer_zero_zero_is_always_refused() {
    let slicer = ToxicKind::default_for("slicer").unwrap();
    for attrs in [json!({}), json!({"average_size": 0, "size_variation": 0}), json!({"delay": 5})] {
        let Value::Object(map) = attrs else { unreachable!() };
        assert!(slicer.merged(Some(&map)).is_err(), "{map:?}");
    }
    let live = slicer.merged(Some(&serde_json::from_str(r#"{"average_size": 10}"#).unwrap())).unwrap();
    let err = live.merged(Some(&serde_json::from_str(r#"{"average_size": 0}"#).unwrap())).unwrap_err();
    assert!(err.to_string().contains("average_size"), "{err}");
}
