//! Loading Chaos Toolkit experiments: recognition (`title`, `description`, `method`, no `apiVersion`),
//! JSON/YAML parity, and every validation Chaos Toolkit does, each error at its file:line:column.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chaos_controller::ctk::load::{self, is_ctk};

/// The diagnostics of an invalid file, as printed.
fn errors(name: &str, text: &str) -> String {
    match load::parse(name, text, true) {
        Ok(_) => panic!("{name} should be invalid:\n{text}"),
        Err(d) => d.to_string(),
    }
}

/// One line of JSON per key, so positions are easy to read: line 1 is `{`.
const BASE: &str = r#"{
"title": "t",
"description": "d",
"method": [
  {"type": "action", "name": "a", "provider": {"type": "process", "path": "true"}}
]
}"#;

#[test]
fn recognition_needs_title_description_method_and_no_api_version() {
    assert!(is_ctk("e.json", BASE));
    assert!(is_ctk("e.yaml", "title: t\ndescription: d\nmethod: []\n"));
    assert!(!is_ctk("e.yaml", "apiVersion: chaos/v1\ntitle: t\ndescription: d\nmethod: []\n"));
    assert!(!is_ctk("e.yaml", "title: t\ndescription: d\n"));
    assert!(!is_ctk("e.json", "{not json"));
}

#[test]
fn json_and_yaml_load_the_same_experiment() {
    let yaml = "title: t\ndescription: d\nmethod:\n  - type: action\n    name: a\n    provider:\n      type: process\n      path: \"true\"\n";
    let a = load::parse("e.json", BASE, true).unwrap();
    let b = load::parse("e.yml", yaml, true).unwrap();
    assert_eq!(a.raw, b.raw);
    assert_eq!(a.experiment, b.experiment);
    let e = errors("e.txt", BASE);
    assert!(e.contains("must be a .json, .yaml or .yml file"), "{e}");
}

#[test]
fn syntax_errors_have_positions() {
    let e = errors("bad.json", "{\n\"title\": \"t\",\n\"description\": \n}");
    assert!(e.starts_with("bad.json:4:1: "), "{e}");
    let e = errors("bad.yaml", "title: t\ndescription: d\nmethod: [\n");
    assert!(e.starts_with("bad.yaml:"), "{e}");
    assert!(!e.starts_with("bad.yaml:0"), "{e}");
}

/// `line:column` (1-based, in characters) of the first occurrence of `needle` in `text`.
fn position_of(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in {text}"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
    format!("{line}:{column}")
}

#[test]
fn each_validation_error_is_at_its_node() {
    let cases: &[(&str, &str, &str)] = &[
        // (file text, where the error must point (the first occurrence of this text), words of the message)
        (r#"{"description": "d", "method": []}"#, "{", "experiment requires a title"),
        ("{\n\"title\": \"\",\n\"description\": \"d\",\n\"method\": []\n}", "\"\",", "non-empty title"),
        ("{\n\"title\": \"t\",\n\"description\": \"d\"\n}", "{", "requires a method"),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [\n  {\"type\": \"task\", \"name\": \"a\", \"provider\": {\"type\": \"process\", \"path\": \"true\"}}\n]}",
            "\"task\"",
            "'task' is not a supported activity type",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [\n  {\"type\": \"action\", \"name\": \"\", \"provider\": {\"type\": \"process\", \"path\": \"true\"}}\n]}",
            "\"\", \"provider",
            "must have a name",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [\n  {\"type\": \"action\", \"name\": \"a\", \"provider\": {\"type\": \"ruby\"}}\n]}",
            "\"ruby\"",
            "unknown provider type 'ruby'",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [\n  {\"ref\": \"nowhere\"}\n]}",
            "\"nowhere\"",
            "referenced activity 'nowhere' could not be found",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [\n  {\"type\": \"action\", \"name\": \"a\", \"provider\": {\"type\": \"process\", \"path\": \"no-such-program-xyz\"}}\n]}",
            "\"no-such-program-xyz\"",
            "path 'no-such-program-xyz' cannot be found",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [\n  {\"type\": \"action\", \"name\": \"a\", \"pauses\": {\"after\": \"5s\"}, \"provider\": {\"type\": \"process\", \"path\": \"true\"}}\n]}",
            "\"5s\"",
            "the after pause must be a number of seconds or exactly \"${var}\"",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [\n  {\"type\": \"action\", \"name\": \"a\", \"timeout\": \"x\", \"provider\": {\"type\": \"process\", \"path\": \"true\"}}\n]}",
            "\"x\"",
            "timeout must be a number",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [],\n\"steady-state-hypothesis\": {\"title\": \"h\", \"probes\": [\n  {\"type\": \"probe\", \"name\": \"p\", \"provider\": {\"type\": \"process\", \"path\": \"true\"}}\n]}}",
            "{\"type\": \"probe\"",
            "must have a tolerance entry",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [],\n\"steady-state-hypothesis\": {\"title\": \"h\", \"probes\": [\n  {\"type\": \"probe\", \"name\": \"p\", \"tolerance\": 0.5, \"provider\": {\"type\": \"process\", \"path\": \"true\"}}\n]}}",
            "0.5",
            "the tolerance must either be an integer",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [],\n\"steady-state-hypothesis\": {\"title\": \"h\", \"probes\": [\n  {\"type\": \"probe\", \"name\": \"p\", \"tolerance\": {\"type\": \"regex\", \"pattern\": \"(\"}, \"provider\": {\"type\": \"process\", \"path\": \"true\"}}\n]}}",
            "\"(\"",
            "invalid regex pattern",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [],\n\"steady-state-hypothesis\": {\"title\": \"h\", \"probes\": [\n  {\"type\": \"probe\", \"name\": \"p\", \"tolerance\": {\"type\": \"range\", \"range\": [1]}, \"provider\": {\"type\": \"process\", \"path\": \"true\"}}\n]}}",
            "[1]",
            "a range must be a sequence of two numbers",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [],\n\"secrets\": {\"s\": {\"k\": {\"type\": \"vault\", \"path\": \"p\"}}}\n}",
            "\"type\": \"vault\"",
            "vault secrets are not supported",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [],\n\"configuration\": {\"k\": {\"type\": \"env\", \"key\": \"K\", \"env_var_type\": \"uuid\"}}\n}",
            "\"uuid\"",
            "unknown env_var_type 'uuid'",
        ),
        (
            "{\"title\": \"t\", \"description\": \"d\", \"method\": [\n  {\"type\": \"action\", \"name\": \"a\", \"provider\": {\"type\": \"http\", \"timeout\": \"slow\", \"url\": \"http://x\"}}\n]}",
            "\"slow\"",
            "the http timeout must be a number or [connect, read]",
        ),
    ];
    for (text, needle, words) in cases {
        let pos = position_of(text, needle);
        let e = errors("e.json", text);
        assert!(
            e.starts_with(&format!("e.json:{pos}: ")),
            "expected e.json:{pos}: …{words}…, got:\n{e}\nfor:\n{text}"
        );
        assert!(e.contains(words), "expected …{words}…, got:\n{e}");
    }
}

#[test]
fn yaml_errors_point_into_the_yaml() {
    let text = "title: t\ndescription: d\nmethod:\n  - type: action\n    name: a\n    provider:\n      type: process\n      path: no-such-program-xyz\n  - ref: missing\n";
    let e = errors("e.yaml", text);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 2, "{e}");
    assert!(lines[0].starts_with("e.yaml:8:13: path 'no-such-program-xyz' cannot be found"), "{e}");
    assert!(lines[1].starts_with("e.yaml:9:10: referenced activity 'missing'"), "{e}");
}

#[test]
fn refs_reach_method_and_hypothesis_but_not_rollbacks() {
    let ok = r#"{"title": "t", "description": "d",
      "steady-state-hypothesis": {"title": "h", "probes": [
        {"type": "probe", "name": "p", "tolerance": 0, "provider": {"type": "process", "path": "true"}}]},
      "method": [{"ref": "p"}, {"type": "action", "name": "m", "provider": {"type": "process", "path": "true"}}],
      "rollbacks": [{"ref": "m"}, {"ref": "p"}]}"#;
    load::parse("e.json", ok, true).unwrap();
    let bad = r#"{"title": "t", "description": "d", "method": [{"ref": "r"}],
      "rollbacks": [{"type": "action", "name": "r", "provider": {"type": "process", "path": "true"}}]}"#;
    let e = errors("e.json", bad);
    assert!(e.contains("referenced activity 'r' could not be found"), "{e}");
}

#[test]
fn no_validation_still_needs_the_parts() {
    let unknown_path = r#"{"title": "t", "description": "d", "method": [
        {"type": "action", "name": "a", "provider": {"type": "process", "path": "no-such-program-xyz"}}]}"#;
    assert!(load::parse("e.json", unknown_path, false).is_ok());
    let e = match load::parse("e.json", r#"{"title": "t", "description": "d"}"#, false) {
        Ok(_) => panic!("a file without a method cannot run"),
        Err(d) => d.to_string(),
    };
    assert!(e.contains("`method`"), "{e}");
}
