//! End-to-end detection through `chaos run`: `experiments/detection-proxy-down.yaml` against a `chaos proxy
//! --proxy-metrics`, an HTTP demo target and a real Prometheus (Debian's) scraping the proxy every second and
//! evaluating the example's rule `ShopProxyDown` (`chaos_proxy_enabled{proxy="shop-detect"} == 0`, `for: 2s`,
//! evaluation interval 1 s). The run passes with the time to detect in the journal, the JUnit report, the
//! Markdown summary and on the terminal; the same file expecting one more alert that never fires fails "not
//! detected" (exit 1).
//!
//! Needs `prometheus` (Debian: `apt-get install prometheus`); without it the tests fail unless
//! `CHAOS_TEST_SKIP=prometheus` says to skip them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use chaos_test_support::prometheus::{self, Prometheus, encode, get};
use chaos_test_support::{TempDir, skip};
use serde_json::Value;
use support::{
    ChaosProxy, DemoTarget, chaos_run, describe_output, free_port, output_within, repo_path, temp_dir,
    wait_until,
};

/// The example's rule, as its comment gives it.
const RULES: &str = "groups:\n  - name: shop\n    rules:\n      - alert: ShopProxyDown\n        expr: \
                     chaos_proxy_enabled{proxy=\"shop-detect\"} == 0\n        for: 2s\n";

/// The proxy, the target, and a Prometheus scraping the proxy with the example's rule loaded.
fn stack() -> (ChaosProxy, DemoTarget, Prometheus, TempDir) {
    let server = ChaosProxy::start(&["--proxy-metrics"]);
    let target = DemoTarget::start();
    let rules = TempDir::new("run-detection-rules");
    std::fs::write(rules.path().join("rules.yml"), RULES).unwrap();
    let config = format!(
        "global: {{ scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }}\n\
         rule_files: [\"{}\"]\n\
         scrape_configs: [{{ job_name: chaos-proxy, static_configs: [{{ targets: [\"{}\"] }}] }}]\n",
        rules.path().join("rules.yml").display(),
        server.api
    );
    let prometheus = Prometheus::start(&config);
    let query = |expr: &str| -> Value {
        get(prometheus.addr(), &format!("/api/v1/query?query={}", encode(expr)))
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or(Value::Null)
    };
    wait_until("prometheus scrapes the proxy", Duration::from_secs(30), || {
        query("max(up{job=\"chaos-proxy\"})")["data"]["result"][0]["value"][1] == "1"
    });
    wait_until("prometheus loads ShopProxyDown", Duration::from_secs(30), || {
        get(prometheus.addr(), "/api/v1/rules").is_some_and(|(_, body)| body.contains("\"ShopProxyDown\""))
    });
    (server, target, prometheus, rules)
}

fn vars(server: &ChaosProxy, target: &DemoTarget, prometheus: &Prometheus) -> Vec<(&'static str, String)> {
    vec![
        ("api", format!("http://{}", server.api)),
        ("upstream", target.addr.to_string()),
        ("listen", format!("127.0.0.1:{}", free_port())),
        ("prometheus", prometheus.url()),
    ]
}

#[test]
fn the_example_passes_with_its_time_to_detect_in_every_report() {
    if !skip::require("prometheus", prometheus::available()) {
        return;
    }
    let (server, target, prometheus, _rules) = stack();
    let out = temp_dir("run", "detection-pass");
    let mut cmd = chaos_run(
        None,
        &repo_path("experiments/detection-proxy-down.yaml"),
        &vars(&server, &target, &prometheus),
        &out,
    );
    cmd.arg("--junit").arg(out.join("junit.xml")).arg("--summary").arg(out.join("summary.md"));
    let output = output_within(&mut cmd, Duration::from_secs(120));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\nprometheus log:\n{}",
        describe_output(&output),
        prometheus.log()
    );
    let j: Value = serde_json::from_str(&std::fs::read_to_string(out.join("journal.json")).unwrap()).unwrap();
    assert_eq!(j["verdict"], "passed", "{}", j["reasons"]);
    let d = &j["detection"][0];
    assert_eq!(
        (d["alert"].as_str(), d["source"].as_str(), d["within_ms"].as_u64()),
        (Some("ShopProxyDown"), Some(prometheus.url().as_str()), Some(30_000))
    );
    // Not sooner than the rule's `for:` after the fault; within the experiment's 30 s.
    let detected = d["detected_after_ms"].as_u64().unwrap();
    assert!((2_000..=30_000).contains(&detected), "{d}");
    // The proxy is down 5 s: the alert cannot resolve before, and the 8 s recovery window sees it resolve.
    let resolved = d["resolved_after_ms"].as_u64().unwrap_or_else(|| panic!("not resolved: {d}"));
    assert!(resolved >= 5_000 && resolved > detected, "{d}");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = format!(
        "  alert ShopProxyDown: detected {} after the fault (within 30 s), resolved ",
        seconds(detected)
    );
    assert!(stdout.contains(&line), "{stdout}");
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(
        junit.contains("name=\"alert ShopProxyDown fires within 30 s\"")
            && junit.contains("classname=\"detection\""),
        "{junit}"
    );
    assert!(!junit.contains("<failure"), "{junit}");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.contains(&format!("| ShopProxyDown | {} | 30 s | {} |", prometheus.url(), seconds(detected))),
        "{summary}"
    );
}

#[test]
fn an_expected_alert_that_never_fires_fails_the_run_not_detected() {
    if !skip::require("prometheus", prometheus::available()) {
        return;
    }
    let (server, target, prometheus, _rules) = stack();
    let out = temp_dir("run", "detection-missing");
    // The example, expecting one more alert that nothing defines, with a shorter `within`.
    let example = std::fs::read_to_string(repo_path("experiments/detection-proxy-down.yaml")).unwrap();
    let missing = example
        .replace("alerts: [ShopProxyDown]", "alerts: [ShopProxyDown, ShopOnFire]")
        .replace("within: 30s", "within: 10s");
    assert_ne!(missing, example, "the example's detection changed: update this test");
    let file = out.join("detection-missing.yaml");
    std::fs::write(&file, missing).unwrap();
    let mut cmd = chaos_run(None, &file, &vars(&server, &target, &prometheus), &out);
    cmd.arg("--junit").arg(out.join("junit.xml"));
    let output = output_within(&mut cmd, Duration::from_secs(120));
    assert_eq!(output.status.code(), Some(1), "{}", describe_output(&output));
    let j: Value = serde_json::from_str(&std::fs::read_to_string(out.join("journal.json")).unwrap()).unwrap();
    assert_eq!(j["verdict"], "failed");
    let reason =
        format!("not detected: alert ShopOnFire did not fire within 10s of the fault ({})", prometheus.url());
    assert!(j["reasons"].as_array().unwrap().iter().any(|r| r == reason.as_str()), "{}", j["reasons"]);
    assert!(j["detection"][0]["detected_after_ms"].as_u64().is_some(), "{}", j["detection"]);
    assert!(j["detection"][1]["detected_after_ms"].is_null(), "{}", j["detection"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("  alert ShopOnFire: NOT detected within 10 s ({})", prometheus.url())),
        "{stdout}"
    );
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("type=\"not detected\"") && junit.contains(&reason), "{junit}");
}

/// What the reports print for `ms`: `3.2 s`.
fn seconds(ms: u64) -> String {
    chaos_controller::slo::format::duration(Duration::from_millis(ms))
}
