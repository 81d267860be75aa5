//! Variables and percentiles: `${name}` from `vars:`, `--var` overrides, `${env:NAME}`, `$${` escapes,
//! errors at the reference's own position; `percentile: p99 < 800ms` read as objective and threshold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration as StdDuration;

use chaos_controller::experiment::*;

const HEAD: &str = "apiVersion: chaos/v1\ntitle: t\n";

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("s3cret".into()),
        "PORT" => Some("9090".into()),
        _ => None,
    }
}

fn ok(doc: &str, overrides: &[(&str, &str)]) -> Checked {
    let overrides: Vec<(String, String)> =
        overrides.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    parse_with_env("t.yaml", &format!("{HEAD}{doc}"), &overrides, &env).unwrap_or_else(|d| panic!("{d}"))
}

fn errors(name: &str, text: &str, overrides: &[(&str, &str)]) -> String {
    let overrides: Vec<(String, String)> =
        overrides.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    match parse_with_env(name, text, &overrides, &env) {
        Ok(_) => panic!("{name} parsed"),
        Err(d) => d.to_string(),
    }
}

#[test]
fn references_are_replaced_in_string_values() {
    let exp = ok("vars: { host: db.local, port: 5432 }\nhypothesis: \"${host}:${port} and ${host}\"\n", &[]);
    assert_eq!(exp.hypothesis.as_deref(), Some("db.local:5432 and db.local"));
    assert_eq!(exp.vars["port"], "5432");
}

#[test]
fn variables_may_use_other_variables_and_the_environment() {
    let exp = ok(
        "vars:\n  url: \"${base}/api?t=${env:TOKEN}\"\n  base: \"http://x:${env:PORT}\"\nhypothesis: ${url}\n",
        &[],
    );
    assert_eq!(exp.hypothesis.as_deref(), Some("http://x:9090/api?t=s3cret"));
    assert_eq!(exp.vars["url"], "http://x:9090/api?t=s3cret");
}

#[test]
fn overrides_win_are_literal_and_may_add_variables() {
    let doc = "vars: { app: \"http://a\" }\nhypothesis: \"${app} ${extra}\"\n";
    let exp = ok(doc, &[("app", "http://b/${x}"), ("extra", "more")]);
    assert_eq!(exp.hypothesis.as_deref(), Some("http://b/${x} more"));
    assert_eq!(exp.vars["extra"], "more");
}

#[test]
fn the_process_environment_is_read_by_parse() {
    // Cargo sets CARGO_PKG_NAME for test processes; tests cannot set variables (set_var is unsafe).
    let exp = parse("t.yaml", &format!("{HEAD}hypothesis: \"${{env:CARGO_PKG_NAME}}\"\n"), &[]).unwrap();
    assert_eq!(exp.hypothesis.as_deref(), Some("chaos-controller"));
}

#[test]
fn a_double_dollar_escapes_a_literal_reference() {
    let exp = ok("hypothesis: \"cost $${price} and $${env:HOME}, $5 $$\"\n", &[]);
    assert_eq!(exp.hypothesis.as_deref(), Some("cost ${price} and ${env:HOME}, $5 $$"));
    let exp = ok("hypothesis: \"$${a}\"\n", &[]);
    assert_eq!(exp.hypothesis.as_deref(), Some("${a}"));
}

#[test]
fn keys_are_not_substituted() {
    let exp = ok("vars: { k: v }\ntargets:\n  \"${k}\": { processes: { name: \"${k}\" } }\n", &[]);
    assert_eq!(exp.targets["${k}"].processes.as_ref().unwrap().name.as_deref(), Some("v"));
}

#[test]
fn a_substituted_number_is_read_as_a_number() {
    let doc = "vars: { code: \"204\", every: 2s, lat: \"150\" }\n\
               targets: { db: { proxy: { api: \"http://h:1\", name: db } } }\n\
               steady_state: [ { name: h, http: { url: \"http://h/\", status: \"${code}\", timeout: \"${every}\" } } ]\n\
               method: [ { fault: latency, target: db, with: { latency: \"${lat}\" }, duration: \"${every}\" } ]\n";
    let exp = ok(doc, &[]);
    assert_eq!(exp.steady_state[0].http.as_ref().unwrap().status, Some(204));
    assert_eq!(exp.method[0].duration, Some(Duration(StdDuration::from_secs(2))));
    let Ok(StepKind::Fault(f)) = exp.method[0].kind() else { panic!() };
    let FaultParams::Toxic { attributes, .. } = f.params else { panic!() };
    assert_eq!(attributes["latency"], serde_json::json!(150));
    // In JSON too, where every string is quoted.
    let json = r#"{"apiVersion": "chaos/v1", "title": "t", "vars": {"n": "3"},
        "steady_state": [{"name": "c", "command": {"run": ["true"], "exit_code": "${n}"}}]}"#;
    let exp = parse_with_env("t.json", json, &[], &env).unwrap();
    assert_eq!(exp.steady_state[0].command.as_ref().unwrap().exit_code, Some(3));
}

#[test]
fn errors_point_at_the_reference_itself() {
    let yaml = "apiVersion: chaos/v1\ntitle: t\nhypothesis: \"one ${nope} two ${env:NOT_SET_HERE}\"\n";
    assert_eq!(
        errors("a.yaml", yaml, &[]),
        "a.yaml:3:18: unknown variable `nope`\na.yaml:3:30: environment variable `NOT_SET_HERE` is not set"
    );
    let json = "{\n  \"apiVersion\": \"chaos/v1\",\n  \"title\": \"x ${missing}\"\n}\n";
    assert_eq!(errors("a.json", json, &[]), "a.json:3:15: unknown variable `missing`");
    let multi = "apiVersion: chaos/v1\ntitle: t\nhypothesis: >\n  folded text\n  then ${gone}\n";
    assert_eq!(errors("m.yaml", multi, &[]), "m.yaml:5:8: unknown variable `gone`");
}

#[test]
fn malformed_references_and_cycles_are_errors() {
    let text = "apiVersion: chaos/v1\ntitle: \"${open\"\n";
    assert_eq!(
        errors("u.yaml", text, &[]),
        "u.yaml:2:9: unterminated `${`: close it with `}` or write `$${` for a literal"
    );
    let text = "apiVersion: chaos/v1\ntitle: \"${two words}\"\n";
    assert_eq!(errors("n.yaml", text, &[]), "n.yaml:2:9: invalid variable name \"two words\"");
    let text = "apiVersion: chaos/v1\ntitle: t\nvars:\n  a: \"${b}\"\n  b: \"${a}\"\n";
    let got = errors("c.yaml", text, &[]);
    assert!(got.starts_with("c.yaml:4:6: variable `a` refers to itself"), "{got}");
    let text = "apiVersion: chaos/v1\ntitle: t\nvars: { \"bad name\": 1 }\n";
    assert_eq!(
        errors("k.yaml", text, &[]),
        "k.yaml:3:9: invalid variable name \"bad name\" (use letters, digits, `_`, `-`, `.`)"
    );
}

#[test]
fn an_override_fixes_an_unknown_variable() {
    let text = "apiVersion: chaos/v1\ntitle: \"${who}\"\n";
    assert!(parse_with_env("t.yaml", text, &[], &env).is_err());
    let exp = parse_with_env("t.yaml", text, &[("who".into(), "me".into())], &env).unwrap();
    assert_eq!(exp.title, "me");
}

fn slo(percentile: &str) -> Result<Checked, Diagnostics> {
    let text = format!(
        "{HEAD}targets: {{ p: {{ proxy: {{ api: \"http://h:1\", name: p }} }} }}\n\
         slos: [ {{ name: s, signal: latency, percentile: \"{percentile}\", source: {{ proxy: p }} }} ]\n"
    );
    parse("p.yaml", &text, &[])
}

#[test]
fn percentiles_read_as_objective_and_threshold() {
    let ms = |n| Duration(StdDuration::from_millis(n));
    for (text, objective, threshold) in [
        ("p99 < 800ms", 0.99, ms(800)),
        ("p99.9 <= 1s", 0.999, ms(1000)),
        ("P50<250ms", 0.5, ms(250)),
        ("p100 < 2m", 1.0, ms(120_000)),
    ] {
        let exp = slo(text).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(
            exp.slos[0].objective(),
            Ok(Objective::Latency { objective: Percent(objective), threshold }),
            "{text}"
        );
        assert_eq!(parse_percentile(text), Ok((Percent(objective), threshold)));
    }
    for text in ["99 < 800ms", "p99 > 800ms", "p0 < 1s", "p101 < 1s", "p99 < fast", "p99", "pp99 < 1s"] {
        let d = slo(text).unwrap_err().to_string();
        assert!(d.starts_with("p.yaml:4:49: "), "{text}: {d}");
    }
}

#[test]
fn variables_that_multiply_each_other_stop_at_the_size_limit() {
    // 704 bytes that would expand to 16 GiB: each variable repeats the one before eight times.
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/multiplying-vars.yaml"))
            .unwrap();
    let started = std::time::Instant::now();
    let got = errors("m.yaml", &text, &[]);
    assert!(started.elapsed() < StdDuration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(
        got,
        format!(
            "m.yaml:11:8: variables expand to more than {MAX_EXPANDED_BYTES} bytes of text here (the limit for a \
             whole experiment): does a variable repeat another one many times?"
        )
    );
    // The same limit holds for the document's own strings, not only for `vars:`.
    let big = "x".repeat(600_000);
    let text = format!("{HEAD}vars: {{ big: \"{big}\" }}\nhypothesis: \"${{big}}${{big}}\"\n");
    let got = errors("h.yaml", &text, &[]);
    assert!(got.starts_with("h.yaml:4:"), "{}", &got[..got.len().min(200)]);
    assert!(got.contains("variables expand to more than"), "{}", &got[..got.len().min(200)]);
}

#[test]
fn variables_nest_at_most_max_depth_deep() {
    let chain = |levels: usize| {
        let mut doc = String::from("vars:\n  a0: x\n");
        for k in 1..=levels {
            doc.push_str(&format!("  a{k}: \"${{a{}}}\"\n", k - 1));
        }
        doc.push_str(&format!("hypothesis: \"${{a{levels}}}\"\n"));
        doc
    };
    // `a15` uses a14 … uses a0: 16 variables in one chain is the most allowed.
    assert_eq!(ok(&chain(MAX_DEPTH - 1), &[]).hypothesis.as_deref(), Some("x"));
    let got = errors("d.yaml", &format!("{HEAD}{}", chain(MAX_DEPTH)), &[]);
    assert_eq!(got.lines().count(), 1, "{got}");
    assert!(got.contains(&format!("variables nest more than {MAX_DEPTH} deep")), "{got}");
    // A chain far deeper than the limit (which without it would recurse until the stack overflows) is the
    // same single error.
    let got = errors("d.yaml", &format!("{HEAD}{}", chain(2_000)), &[]);
    assert!(
        got.contains(&format!("variables nest more than {MAX_DEPTH} deep")),
        "{}",
        &got[..got.len().min(300)]
    );
}
