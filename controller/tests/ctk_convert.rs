//! `chaos convert` (controller/src/ctk/convert.rs): Chaos Toolkit experiments become native ones where an
//! equivalent exists. Every output, in YAML and in JSON, must pass the native parser and validation
//! (`experiment::parse`, what `chaos validate` runs), and say what converted and what has no equivalent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chaos_controller::ctk::convert::{self, Conversion};
use chaos_controller::experiment::{self, CheckedKind};
use serde_json::{Value, json};

fn convert(doc: Value) -> Conversion {
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let exp = convert::parse("ctk.json", &text).unwrap();
    convert::convert(&exp)
}

/// Both serialisations validate as native experiments (`SHOP_URL` set in their environment); the checked
/// experiment (from the YAML).
fn validated(conversion: &Conversion) -> experiment::Checked {
    let env = |var: &str| (var == "SHOP_URL").then(|| "http://192.0.2.10:8080".to_string());
    let json = conversion.to_json();
    experiment::parse_with_env("out.json", &json, &[], &env).unwrap_or_else(|e| panic!("{e}\n{json}"));
    let yaml = conversion.to_yaml().unwrap();
    experiment::parse_with_env("out.yaml", &yaml, &[], &env).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

#[test]
fn toxiproxy_actions_become_proxy_faults_on_a_proxy_target() {
    let conversion = convert(json!({
        "title": "Checkout survives a slow database",
        "description": "Latency on the database proxy.",
        "configuration": {"toxiproxy_url": "http://192.0.2.10:8474", "base": {"type": "env", "key": "SHOP_URL"}},
        "steady-state-hypothesis": {"title": "healthy", "probes": [
            {"type": "probe", "name": "health", "tolerance": 200,
             "provider": {"type": "http", "url": "http://192.0.2.10:8080/health", "timeout": [1, 2]}}]},
        "method": [
            {"type": "action", "name": "proxy-db", "provider": {"type": "python", "module": "chaostoxi.proxy.actions",
             "func": "create_proxy", "arguments": {"proxy_name": "db", "upstream_host": "192.0.2.10",
             "upstream_port": 5432, "listen_host": "192.0.2.10", "listen_port": 15432}}},
            {"type": "action", "name": "slow-db", "pauses": {"after": 5},
             "provider": {"type": "python", "module": "chaostoxi.toxic.actions", "func": "create_latency_toxic",
                          "arguments": {"for_proxy": "db", "toxic_name": "lag", "latency": 300, "jitter": 20}}},
            {"type": "action", "name": "cut-bandwidth", "pauses": {"before": 1, "after": 2.5},
             "provider": {"type": "python", "module": "chaostoxi.toxic.actions", "func": "create_toxic",
                          "arguments": {"for_proxy": "db", "toxic_name": "slow", "toxic_type": "bandwidth",
                                        "attributes": {"rate": 100}}}},
            {"type": "action", "name": "unslow", "provider": {"type": "python", "module": "chaostoxi.toxic.actions",
             "func": "delete_toxic", "arguments": {"for_proxy": "db", "toxic_name": "lag"}}}
        ],
        "rollbacks": [{"type": "action", "name": "drop", "provider": {"type": "python",
            "module": "chaostoxi.proxy.actions", "func": "delete_proxy", "arguments": {"proxy_name": "db"}}}]
    }));
    assert!(conversion.unconverted.is_empty(), "{:#?}", conversion.unconverted);
    let checked = validated(&conversion);
    assert_eq!(checked.title, "Checkout survives a slow database");
    let db = &conversion.native["targets"]["db"]["proxy"];
    assert_eq!(
        db,
        &json!({"api": "http://192.0.2.10:8474", "name": "db", "listen": "192.0.2.10:15432",
                           "upstream": "192.0.2.10:5432"})
    );
    assert_eq!(conversion.native["vars"]["base"], json!("${env:SHOP_URL}"));
    let method = conversion.native["method"].as_array().unwrap();
    assert_eq!(method.len(), 3, "{method:#?}");
    assert_eq!(method[0]["fault"], json!("latency"));
    assert_eq!(method[0]["with"], json!({"latency": 300, "jitter": 20}));
    assert_eq!(method[0]["duration"], json!("5s"));
    assert_eq!(method[1], json!({"wait": "1s"}));
    assert_eq!(method[2]["fault"], json!("bandwidth"));
    assert_eq!(method[2]["duration"], json!("2500ms"));
    assert!(checked.method().iter().any(|s| matches!(s.kind(), CheckedKind::Fault(_))));
    assert_eq!(checked.steady_state.len(), 1);
    assert_eq!(conversion.native["steady_state"][0]["http"]["timeout"], json!("3s"));
    assert_eq!(conversion.folded.len(), 2, "{:#?}", conversion.folded);
}

#[test]
fn process_kills_become_kill_faults_and_the_rest_is_listed() {
    let conversion = convert(json!({
        "title": "The worker restarts", "description": "Kill it.",
        "steady-state-hypothesis": {"title": "up", "probes": [
            {"type": "probe", "name": "range", "tolerance": {"type": "range", "range": [0, 1]},
             "provider": {"type": "process", "path": "echo", "arguments": "0"}},
            {"type": "probe", "name": "two-statuses", "tolerance": [200, 503],
             "provider": {"type": "http", "url": "http://192.0.2.10:8080/"}}]},
        "method": [
            {"type": "action", "name": "kill-worker", "pauses": {"after": 1},
             "provider": {"type": "process", "path": "/bin/kill", "arguments": ["-9", "4242"]}},
            {"type": "action", "name": "pkill-shop",
             "provider": {"type": "process", "path": "pkill", "arguments": "-TERM -f demo-target --http"}},
            {"type": "action", "name": "killall-shop",
             "provider": {"type": "process", "path": "killall", "arguments": ["-s", "HUP", "shop"]}},
            {"type": "action", "name": "py", "provider": {"type": "python", "module": "os", "func": "rename",
             "arguments": {"src": "a", "dst": "b"}}},
            {"type": "probe", "name": "look", "provider": {"type": "http", "url": "http://192.0.2.10:8080/"}}
        ]
    }));
    let checked = validated(&conversion);
    let method = conversion.native["method"].as_array().unwrap();
    assert_eq!(method[0]["fault"], json!("kill"));
    assert_eq!(method[0]["with"], json!({"signal": "KILL"}));
    assert_eq!(method[1], json!({"wait": "1s"}));
    assert_eq!(method[2]["with"], json!({"signal": "HUP"}), "{method:#?}");
    let targets = &conversion.native["targets"];
    assert_eq!(targets["kill-4242"], json!({"processes": {"pid": 4242}}));
    assert_eq!(targets["killall-shop"], json!({"processes": {"name": "shop"}}));
    assert_eq!(checked.targets.len(), 2);
    // The pkill has two operands once split by the shell: not converted, and said so.
    let listed = conversion.unconverted.join("\n");
    for what in
        ["pkill-shop", "py: python provider os.rename", "look: a method probe", "range", "two-statuses"]
    {
        assert!(listed.contains(what), "{what} missing from:\n{listed}");
    }
}

#[test]
fn the_chaos_extension_is_folded_in() {
    let conversion = convert(json!({
        "title": "Judged on SLOs", "description": "d",
        "method": [{"type": "action", "name": "slow", "pauses": {"after": 3},
                    "provider": {"type": "python", "module": "chaostoxi.toxic.actions",
                                 "func": "create_latency_toxic",
                                 "arguments": {"for_proxy": "shop", "toxic_name": "l", "latency": 100}}}],
        "extensions": [{"name": "chaos",
            "targets": {"shop": {"proxy": {"api": "http://192.0.2.10:9999", "name": "shop"}}},
            "load": [{"name": "shoppers", "http": {"url": "http://192.0.2.10:18080/"}, "rate": "20/s"}],
            "slos": [{"name": "ok", "signal": "errors", "objective": "99%", "source": {"load": "shoppers"}}],
            "guardrails": {"budget": "5%"}}]
    }));
    let checked = validated(&conversion);
    assert_eq!(checked.slos.len(), 1);
    // The extension's target wins over the one the toxic implied (same name).
    assert_eq!(conversion.native["targets"]["shop"]["proxy"]["api"], json!("http://192.0.2.10:9999"));
    assert!(conversion.converted.iter().any(|l| l.starts_with("extensions.chaos.slos")));
}

#[test]
fn a_toxic_without_a_pause_has_no_duration_and_nothing_may_convert() {
    let conversion = convert(json!({
        "title": "t", "description": "d",
        "method": [
            {"type": "action", "name": "lag", "provider": {"type": "python", "module": "chaostoxi.toxic.actions",
             "func": "create_latency_toxic", "arguments": {"for_proxy": "p", "toxic_name": "l", "latency": 1}}},
            {"type": "action", "name": "call", "provider": {"type": "http", "url": "http://x/"}}
        ]
    }));
    assert!(conversion.is_empty());
    assert_eq!(conversion.unconverted.len(), 2, "{:#?}", conversion.unconverted);
    assert!(conversion.unconverted[0].contains("without pauses.after"), "{}", conversion.unconverted[0]);

    let err = convert::parse("bad.json", "{\n  \"title\": \"t\",\n  \"method\": 3\n}").unwrap_err();
    assert!(err.starts_with("bad.json:"), "{err}");
    assert!(convert::parse("bad.txt", "{}").unwrap_err().contains(".json, .yaml or .yml"));
}
