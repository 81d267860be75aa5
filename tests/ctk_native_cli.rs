//! `chaos run` of a Chaos Toolkit experiment with `extensions: [{name: chaos, ...}]`: the native half (load
//! through a real `chaos proxy`, a latency SLO) judges the window of the Chaos Toolkit method, whose actions
//! (curl against the proxy's admin API, as a team's existing experiment would) are run by the Chaos Toolkit
//! runner. The native verdict decides the exit code and is written into the Chaos Toolkit journal, with the
//! native journal and HTML report beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{ChaosProxy, DemoTarget, chaos_bin, describe_output, http_json, output_within, temp_dir};

/// A proxy `shop` in front of a demo target; (proxy server, target, the proxy's listen address).
fn shop() -> (ChaosProxy, DemoTarget, String) {
    let target = DemoTarget::start();
    let proxy = ChaosProxy::start(&[]);
    let body =
        json!({"name": "shop", "listen": "127.0.0.1:0", "upstream": target.addr.to_string()}).to_string();
    let (status, created) = http_json(proxy.api, "POST", "/proxies", Some(&body));
    assert_eq!(status, 201, "{created}");
    let listen = created["listen"].as_str().unwrap().to_string();
    (proxy, target, listen)
}

/// The experiment: the method adds `toxic` (none: the method only waits) to the proxy and keeps it 2 s; the
/// rollback removes it; the extension loads the shop through the proxy and asks 90% of answers within 150 ms.
fn experiment(api: &str, listen: &str, toxic: bool) -> Value {
    experiment_with(api, listen, toxic, 2, Value::Null)
}

fn experiment_with(api: &str, listen: &str, toxic: bool, hold: u64, guardrails: Value) -> Value {
    let add =
        json!({"name": "lag", "type": "latency", "stream": "downstream", "attributes": {"latency": 400}});
    let method = if toxic {
        json!([{"type": "action", "name": "slow-shop", "pauses": {"after": hold},
                "provider": {"type": "process", "path": "curl",
                             "arguments": ["-sf", "-X", "POST", "-d", add.to_string(),
                                           format!("{api}/proxies/shop/toxics")]}}])
    } else {
        json!([{"type": "action", "name": "wait", "pauses": {"after": 2},
                "provider": {"type": "process", "path": "true"}}])
    };
    let mut doc = json!({
        "title": "Checkout stays fast",
        "description": "a Chaos Toolkit method judged on a native SLO",
        "method": method,
        "rollbacks": [{"type": "action", "name": "heal-shop",
                       "provider": {"type": "process", "path": "curl",
                                    "arguments": ["-s", "-X", "DELETE", format!("{api}/proxies/shop/toxics/lag")]}}],
        "extensions": [{
            "name": "chaos",
            "targets": {"shop": {"proxy": {"api": api, "name": "shop"}}},
            "load": [{"name": "shoppers", "http": {"url": format!("http://{listen}/")}, "rate": "40/s"}],
            "slos": [{"name": "fast", "signal": "latency", "threshold": "150ms", "objective": "90%",
                      "source": {"load": "shoppers"}}],
            "baseline": "1s",
            "recovery": "1s"
        }]
    });
    if !guardrails.is_null() {
        doc["extensions"][0]["guardrails"] = guardrails;
    }
    doc
}

fn run(name: &str, toxic: bool) -> (std::process::Output, std::path::PathBuf) {
    run_with(name, |api, listen| experiment(api, listen, toxic))
}

fn run_with(name: &str, make: impl Fn(&str, &str) -> Value) -> (std::process::Output, std::path::PathBuf) {
    let (proxy, _target, listen) = shop();
    let dir = temp_dir("ctk-native", name);
    let file = dir.join("experiment.json");
    std::fs::write(&file, serde_json::to_string_pretty(&make(&proxy.url(), &listen)).unwrap()).unwrap();
    let mut cmd = std::process::Command::new(chaos_bin());
    cmd.arg("run")
        .arg(&file)
        .arg("--journal-path")
        .arg(dir.join("journal.json"))
        .arg("--html")
        .arg(dir.join("report.html"))
        .args(["--seed", "7", "--state-dir"])
        .arg(dir.join("state"));
    let output = output_within(&mut cmd, Duration::from_secs(60));
    (output, dir)
}

fn journal(dir: &std::path::Path, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

#[test]
fn a_method_that_breaks_the_native_slo_completes_for_chaos_toolkit_and_fails_on_the_slo() {
    let (output, dir) = run("slow", true);
    assert_eq!(output.status.code(), Some(1), "{}", describe_output(&output));
    let ctk = journal(&dir, "journal.json");
    assert_eq!(ctk["status"], "completed", "{ctk:#}");
    assert_eq!(ctk["deviated"], false);
    assert_eq!(ctk["run"][0]["status"], "succeeded", "the toxic was added: {ctk:#}");
    assert_eq!(ctk["rollbacks"][0]["status"], "succeeded");
    assert_eq!(ctk["chaos"]["verdict"], "failed", "{:#}", ctk["chaos"]);
    assert!(ctk["chaos"]["reasons"].to_string().contains("fast"), "{:#}", ctk["chaos"]);
    let native = journal(&dir, "journal.chaos.json");
    assert_eq!(native["verdict"], "failed");
    assert_eq!(native["slos"][0]["name"], "fast");
    assert_eq!(ctk["chaos"]["journal"], dir.join("journal.chaos.json").display().to_string());
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("Checkout stays fast"), "the HTML report is the native run's");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("native verdict (extensions: chaos): failed"), "{stdout}");
}

/// The native guardrail (a 5% error budget, spent by the slow answers) trips while the method pauses for
/// 60 s: the method is cut there, the rollbacks still run, the run ends `failed`, and long before 60 s.
#[test]
fn a_native_guardrail_trip_stops_the_method_and_fails_the_run() {
    let started = std::time::Instant::now();
    let (output, dir) =
        run_with("trip", |api, listen| experiment_with(api, listen, true, 60, json!({"budget": "5%"})));
    assert_eq!(output.status.code(), Some(1), "{}", describe_output(&output));
    assert!(started.elapsed() < Duration::from_secs(45), "the trip cut the 60 s pause");
    let ctk = journal(&dir, "journal.json");
    assert_eq!(ctk["status"], "failed", "{ctk:#}");
    assert_eq!(ctk["rollbacks"][0]["status"], "succeeded", "rollbacks run after a trip: {ctk:#}");
    assert_eq!(ctk["chaos"]["verdict"], "failed", "{:#}", ctk["chaos"]);
    assert!(ctk["chaos"]["reasons"].to_string().contains("guardrail"), "{:#}", ctk["chaos"]);
}

#[test]
fn a_method_that_keeps_the_slo_passes() {
    let (output, dir) = run("calm", false);
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let ctk = journal(&dir, "journal.json");
    assert_eq!(ctk["status"], "completed");
    assert_eq!(ctk["chaos"]["verdict"], "passed", "{:#}", ctk["chaos"]);
    assert_eq!(journal(&dir, "journal.chaos.json")["verdict"], "passed");
}

#[test]
fn native_report_flags_need_the_extension() {
    let dir = temp_dir("ctk-native", "no-extension");
    let file = dir.join("plain.json");
    let plain = json!({"title": "t", "description": "d", "method": []});
    std::fs::write(&file, plain.to_string()).unwrap();
    let mut cmd = std::process::Command::new(chaos_bin());
    cmd.current_dir(&dir).arg("run").arg(&file).arg("--html").arg(dir.join("r.html"));
    let output = output_within(&mut cmd, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--html applies to the native half"));
    assert!(!dir.join("r.html").exists());
}
