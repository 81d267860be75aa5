//! Every Chaos Toolkit tolerance kind and its exact rule (reference §8), judged on real provider outputs
//! (a local HTTP service, real processes) in a hypothesis, plus the rules' corners on plain values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ctk_support;

use chaos_controller::ctk::config::Resolved;
use chaos_controller::ctk::tolerance::within;
use ctk_support::*;
use serde_json::{Map, Value, json};

fn w(tolerance: Value, value: Value) -> Result<bool, String> {
    within(&tolerance, &value, &Resolved::default()).map_err(|e| e.0)
}

/// Runs a hypothesis of one probe per (provider, tolerance) pair, each on its own (the hypothesis stops at
/// the first miss), and returns each probe's `tolerance_met`.
async fn judged(cases: &[(Value, Value)]) -> Vec<bool> {
    let mut out = Vec::new();
    for (provider, tolerance) in cases {
        let exp = json!({
            "title": "t", "description": "d", "method": [],
            "configuration": {"word": "ok"},
            "steady-state-hypothesis": {"title": "h", "probes": [
                {"type": "probe", "name": "p", "provider": provider, "tolerance": tolerance}
            ]},
        });
        let ran = run_with(
            &exp,
            chaos_controller::ctk::run::Options {
                hypothesis_strategy: Some(chaos_controller::ctk::run::HypothesisStrategy::BeforeMethodOnly),
                ..Default::default()
            },
            Default::default(),
        )
        .await;
        let probe = &ran.json["steady_states"]["before"]["probes"][0];
        assert_eq!(probe["status"], "succeeded", "{provider}");
        out.push(probe["tolerance_met"].as_bool().unwrap());
    }
    out
}

fn process(args: &[&str]) -> Value {
    let argv: Vec<&str> = ["-c"].iter().chain(args).copied().collect();
    json!({"type": "process", "path": "sh", "arguments": argv})
}

#[tokio::test]
async fn each_kind_on_real_outputs() {
    let dir = TempDir::new("ctk-tolerance");
    let service = Service::start(dir.path()).await;
    let http = |path: &str| json!({"type": "http", "url": format!("{}{path}", service.url()), "timeout": 5});
    let refused = format!("http://127.0.0.1:{}/", chaos_test_support::free_port());
    let cases = [
        // int: the status of an http or process output.
        (http("/health"), json!(200), true),
        (http("/health"), json!(503), false),
        (process(&["exit 3"]), json!(3), true),
        (process(&["exit 0"]), json!(0), true),
        // list: membership of the status, even with two items.
        (http("/status/418"), json!([200, 418]), true),
        (http("/status/418"), json!([200, 503]), false),
        // regex with a target, and `${}` in the pattern.
        (http("/health"), json!({"type": "regex", "target": "body", "pattern": "^${word}$"}), true),
        (process(&["echo hello"]), json!({"type": "regex", "target": "stdout", "pattern": "h.l+o"}), true),
        (process(&["echo hello"]), json!({"type": "regex", "target": "stderr", "pattern": "."}), false),
        // regex on a non-string (no target on an object): an error, so not met.
        (http("/health"), json!({"type": "regex", "pattern": "ok"}), false),
        // jsonpath: ≥ 1 match, count, expect; Prometheus' filter dialect; JSON text parsed first.
        (
            http("/json"),
            json!({"type": "jsonpath", "target": "body", "path": "$.data.result.*[?(@.value[1]!=\"0\")]"}),
            true,
        ),
        (
            http("/json"),
            json!({"type": "jsonpath", "target": "body", "path": "$.data.result.*[?(@.value[1]!=\"0\")]", "count": 1}),
            true,
        ),
        (
            http("/json"),
            json!({"type": "jsonpath", "target": "body", "path": "$.data.result.*[?(@.value[1]!=\"0\")]", "count": 0}),
            false,
        ),
        (
            http("/json"),
            json!({"type": "jsonpath", "target": "body", "path": "$.data.result[*].metric.job", "expect": ["a", "b"]}),
            true,
        ),
        (
            http("/json"),
            json!({"type": "jsonpath", "target": "body", "path": "$.status", "expect": "success"}),
            true,
        ),
        (
            process(&["echo '{\"up\": [1, 1]}'"]),
            json!({"type": "jsonpath", "target": "stdout", "path": "$.up[*]", "expect": [1, 1]}),
            true,
        ),
        (http("/json"), json!({"type": "jsonpath", "target": "body", "path": "$.nothing"}), false),
        // range: Decimal comparison of numbers and numeric text; non-numbers are out.
        (process(&["printf 2.5"]), json!({"type": "range", "target": "stdout", "range": [2, 3]}), true),
        (process(&["printf 3.01"]), json!({"type": "range", "target": "stdout", "range": [2, 3]}), false),
        (process(&["exit 4"]), json!({"type": "range", "target": "status", "range": [1, 4]}), true),
        (process(&["printf abc"]), json!({"type": "range", "target": "stdout", "range": [2, 3]}), false),
        // A probe as the tolerance: run with `arguments.value`; an output → met, a failure → not met.
        (
            http("/health"),
            json!({"type": "probe", "name": "t", "provider": {"type": "http", "url": format!("{}/echo", service.url())}}),
            true,
        ),
        (
            http("/health"),
            json!({"type": "probe", "name": "t", "provider": {"type": "http", "url": refused}}),
            false,
        ),
    ];
    let pairs: Vec<(Value, Value)> = cases.iter().map(|(p, t, _)| (p.clone(), t.clone())).collect();
    let got = judged(&pairs).await;
    for ((provider, tolerance, expected), got) in cases.iter().zip(got) {
        assert_eq!(got, *expected, "{tolerance} on {provider}");
    }
    // The probe tolerance received the output as `value` (a query argument of a GET).
    assert!(service.seen().iter().any(|s| s == "GET /echo"));
}

#[test]
fn scalar_rules_follow_python() {
    assert_eq!(w(json!(true), json!(true)), Ok(true));
    assert_eq!(w(json!(false), json!(0)), Ok(true), "False == 0 in Python");
    assert_eq!(w(json!(true), json!("true")), Ok(false));
    assert_eq!(w(json!(1), json!(1.0)), Ok(true));
    assert_eq!(w(json!("ok"), json!("ok")), Ok(true));
    assert_eq!(w(json!("ok"), json!("ok\n")), Ok(false));
    // Lists without a status: 2 items are an inclusive range, other lengths membership.
    assert_eq!(w(json!([1, 3]), json!(3)), Ok(true));
    assert_eq!(w(json!([1, 3]), json!(2)), Ok(true));
    assert_eq!(w(json!([1, 3, 5]), json!(2)), Ok(false));
    assert_eq!(w(json!([1, 3, 5]), json!(5)), Ok(true));
    assert_eq!(w(json!(["a", "c"]), json!("b")), Ok(true), "strings compare as Python does");
    assert!(w(json!([1, 3]), json!("2")).is_err(), "'<=' between str and int raises");
    // Range: the target picks a key; an object without one cannot be converted.
    assert_eq!(w(json!({"type": "range", "range": [0, 1], "target": "x"}), json!({"x": 0.5})), Ok(true));
    assert!(w(json!({"type": "range", "range": [0, 1]}), json!({"x": 0.5})).is_err());
    assert_eq!(w(json!({"type": "range", "range": [0, 1]}), json!("nan")), Ok(false));
    // Substitution in string tolerances.
    let mut config = Map::new();
    config.insert("expected".into(), json!("yes"));
    let resolved = Resolved { configuration: config, secrets: Map::new() };
    assert_eq!(within(&json!("${expected}"), &json!("yes"), &resolved).map_err(|e| e.0), Ok(true));
}
