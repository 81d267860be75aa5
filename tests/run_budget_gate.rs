//! `chaos run` with SLOs from SLO files, against a real Prometheus: the budget gate refuses a run whose
//! production error budget (backfilled history, ending just before now) is below its threshold, before
//! anything is touched (exit 3, the figures in the journal), and lets the shipped example
//! (`experiments/slo-budget-gate.yaml`, the checkout SLO file) run when there is budget; the burn-rate
//! guardrail aborts a run (its fault verified reverted) when the run's own fault drives the real SLO's error
//! ratio up, as a Prometheus scraping the proxy's `/metrics` sees it.
//!
//! Needs `prometheus` and `promtool` (Debian: `apt-get install prometheus`); without them the tests fail
//! unless `CHAOS_TEST_SKIP=prometheus` says to skip them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chaos_test_support::prometheus::{Prometheus, available};
use chaos_test_support::skip;
use serde_json::Value;
use support::{
    ChaosProxy, DemoTarget, chaos_run, describe_output, free_port, http_json, output_within, read_journal,
    repo_path, temp_dir,
};

/// A day of history, a sample a minute, ending two minutes before now (so a run's "now" queries see all of
/// it): per minute 1000 requests of `job`, `bad` of them 5xx; and a latency histogram where 995 of 1000
/// answer within 300 ms.
fn history(jobs: &[(&str, f64)]) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let end = now - now % 60 - 120;
    let mut om = String::from("# HELP http_requests_total requests\n# TYPE http_requests_total counter\n");
    for (job, bad) in jobs {
        for (code, per_minute) in [("200", 1000.0 - bad), ("500", *bad)] {
            for step in 0..=1440u64 {
                let t = end - 86_400 + step * 60;
                let value = per_minute * step as f64;
                om.push_str(&format!("http_requests_total{{code=\"{code}\",job=\"{job}\"}} {value} {t}\n"));
            }
        }
    }
    om.push_str(
        "# HELP http_request_duration_seconds latency\n# TYPE http_request_duration_seconds histogram\n",
    );
    for (suffix, per_minute) in [
        ("_bucket{job=\"checkout\",le=\"0.3\"}", 995.0),
        ("_bucket{job=\"checkout\",le=\"+Inf\"}", 1000.0),
        ("_count{job=\"checkout\"}", 1000.0),
        ("_sum{job=\"checkout\"}", 100.0),
    ] {
        for step in 0..=1440u64 {
            let t = end - 86_400 + step * 60;
            let value = per_minute * step as f64;
            om.push_str(&format!("http_request_duration_seconds{suffix} {value} {t}\n"));
        }
    }
    om.push_str("# EOF\n");
    om
}

fn timeline_details(journal: &Value, name: &str) -> Vec<String> {
    journal["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == name)
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn kinds(journal: &Value) -> Vec<String> {
    journal["timeline"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
}

#[test]
fn the_budget_gate_refuses_a_run_below_its_threshold_and_lets_the_example_run_above_it() {
    if !skip::require("prometheus", available()) {
        return;
    }
    // checkout: 0.2 bad per 1000 against 99.9% → 80% of the budget left; latency 0.5% slow against 99% → 50%
    // left. payments: 0.877 per 1000 against 99.9% → 12.3% left.
    let prometheus = Prometheus::backfilled(
        &history(&[("checkout", 0.2), ("payments", 0.877)]),
        "global: {scrape_interval: 1m}\n",
    );
    let server = ChaosProxy::start(&[]);
    let target = DemoTarget::start();

    // Below: nothing is touched, inconclusive (exit 3) with the figures.
    let dir = temp_dir("gate", "refused");
    std::fs::write(
        dir.join("payments.yaml"),
        "apiVersion: chaos/v1\nkind: SLO\nservice: payments\nname: availability\nobjective: 99.9%\nperiod: 1d\n\
         sli:\n  events:\n    bad: http_requests_total{job=\"payments\",code=~\"5..\"}\n    total: http_requests_total{job=\"payments\"}\n",
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let experiment = format!(
        "apiVersion: chaos/v1\ntitle: gated\n\
         targets:\n  shop: {{ proxy: {{ api: \"{api}\", name: gated, listen: \"{listen}\", upstream: \"{upstream}\" }} }}\n\
         load:\n  - {{ name: main, http: {{ url: \"http://{listen}/\" }}, rate: 10/s }}\n\
         slos:\n  - {{ use: payments/availability, file: payments.yaml, source: {{ load: main }} }}\n\
         budget_gate: {{ prometheus: \"{prom}\", min_remaining: 25% }}\n\
         steady_state:\n  - {{ name: never, command: {{ run: [\"touch\", \"{marker}\"] }} }}\n\
         method:\n  - {{ fault: latency, target: shop, with: {{ latency: 100 }}, duration: 2s }}\n",
        api = server.url(),
        upstream = target.addr,
        prom = prometheus.url(),
        marker = dir.join("probed").display(),
    );
    let file = dir.join("gated.yaml");
    std::fs::write(&file, experiment).unwrap();
    let started = Instant::now();
    let mut cmd = chaos_run(None, &file, &[], &dir);
    cmd.arg("--summary").arg(dir.join("summary.md"));
    let output = output_within(&mut cmd, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(3), "{}\n{}", describe_output(&output), prometheus.log());
    let journal = read_journal(&dir);
    assert_eq!(journal["verdict"], "inconclusive");
    let reason =
        "budget gate: payments/availability has 12.3% of its 1d error budget left, the gate needs 25%";
    assert_eq!(journal["reasons"], serde_json::json!([reason]), "{journal}");
    assert_eq!(timeline_details(&journal, "budget gate"), [reason]);
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains(&format!("| guardrail tripped | budget gate | {reason} |")), "{summary}");
    let kinds = kinds(&journal);
    assert!(!kinds.iter().any(|k| k == "fault_injected" || k == "probe"), "touched something: {kinds:?}");
    assert!(!dir.join("probed").exists(), "the steady-state probe ran");
    let (_, proxies) = http_json(server.api, "GET", "/proxies", None);
    assert_eq!(proxies, serde_json::json!({}), "the run created its proxy");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Above: the shipped example runs, and its journal keeps the gate's figures.
    let out = temp_dir("gate", "example");
    let vars = [
        ("api", server.url()),
        ("upstream", target.addr.to_string()),
        ("listen", format!("127.0.0.1:{}", free_port())),
        ("prometheus", prometheus.url()),
    ];
    let example = repo_path("experiments/slo-budget-gate.yaml");
    let output = output_within(&mut chaos_run(None, &example, &vars, &out), Duration::from_secs(90));
    assert_eq!(output.status.code(), Some(0), "{}\n{}", describe_output(&output), prometheus.log());
    let journal = read_journal(&out);
    assert_eq!(journal["verdict"], "passed", "{journal}");
    assert_eq!(
        timeline_details(&journal, "budget gate"),
        [
            "budget gate: checkout/availability has 80% of its 30d error budget left (the gate needs 25%)",
            "budget gate: checkout/latency has 50% of its 7d error budget left (the gate needs 25%)",
        ]
    );
    let slos: Vec<&str> =
        journal["slos"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(slos, ["checkout/availability", "checkout/latency"]);
    // The burn guardrail watched (the history's last hour burns at 0.2× its budget: far from paging).
    let watching = timeline_details(&journal, "slo_burn");
    assert_eq!(watching, ["watching the page burn rates of checkout/availability every 5s"]);
    // --dry-run shows the gate.
    let mut dry = chaos_run(None, &example, &vars, &out);
    let output = output_within(dry.arg("--dry-run"), Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("budget gate: before anything, checkout/availability, checkout/latency must each have at least 25% of their error budget left"),
        "{}",
        describe_output(&output)
    );
}

/// Waits until `check` holds, failing after `within`.
fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < end, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_burn_rate_guardrail_aborts_a_run_whose_fault_burns_the_real_slo() {
    if !skip::require("prometheus", available()) {
        return;
    }
    let server = ChaosProxy::start(&["--proxy-metrics"]);
    let target = DemoTarget::start();
    // An existing http proxy, so its faults can be looked at after the run.
    let listen = format!("127.0.0.1:{}", free_port());
    let body = format!(
        r#"{{"name":"shop-burn","listen":"{listen}","upstream":"{}","protocol":"http"}}"#,
        target.addr
    );
    let (status, answer) = http_json(server.api, "POST", "/proxies", Some(&body));
    assert_eq!(status, 201, "{answer}");
    let prometheus = Prometheus::start(&format!(
        "global: {{ scrape_interval: 1s, scrape_timeout: 1s }}\n\
         scrape_configs: [{{ job_name: chaos-proxy, static_configs: [{{ targets: [\"{}\"] }}] }}]\n",
        server.api
    ));
    wait_until("the first scrape", Duration::from_secs(20), || {
        prometheus
            .query(
                "max(up{job=\"chaos-proxy\"})",
                SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64(),
            )
            .contains("\"1\"")
    });

    // The SLO production pages on, with windows short enough for a test: 30 s and 5 s at 14.4×.
    let dir = temp_dir("burn", "abort");
    std::fs::write(
        dir.join("shop.yaml"),
        "apiVersion: chaos/v1\nkind: SLO\nservice: shop\nname: availability\nobjective: 99%\nperiod: 1d\n\
         sli:\n  events:\n    bad: chaos_proxy_http_requests_total{proxy=\"shop-burn\",status_class=\"5xx\"}\n\
         \x20   total: chaos_proxy_http_requests_total{proxy=\"shop-burn\"}\n\
         alerting:\n  windows:\n    - { severity: page, long: 30s, short: 5s, burn_rate: 14.4 }\n",
    )
    .unwrap();
    let experiment = format!(
        "apiVersion: chaos/v1\ntitle: burning\n\
         targets:\n  shop: {{ proxy: {{ api: \"{api}\", name: shop-burn }} }}\n\
         load:\n  - {{ name: main, http: {{ url: \"http://{listen}/checkout\", method: POST }}, rate: 50/s }}\n\
         slos:\n  - {{ use: shop/availability, file: shop.yaml, source: {{ load: main }} }}\n\
         \x20 - {{ name: production, use: shop/availability, file: shop.yaml, prometheus: \"{prom}\" }}\n\
         baseline: 3s\n\
         method:\n  - {{ name: failing checkouts, fault: http_abort, target: shop, with: {{ status: 503, percentage: 100 }}, duration: 60s }}\n\
         guardrails:\n  slo_burn: {{ prometheus: \"{prom}\", every: 1s }}\n",
        api = server.url(),
        prom = prometheus.url(),
    );
    let file = dir.join("burning.yaml");
    std::fs::write(&file, experiment).unwrap();
    let started = Instant::now();
    let output = output_within(&mut chaos_run(None, &file, &[], &dir), Duration::from_secs(90));
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}\n{}", describe_output(&output), prometheus.log());
    let journal = read_journal(&dir);
    assert_eq!(journal["verdict"], "failed");
    let reasons = journal["reasons"].to_string();
    assert!(
        reasons.contains("slo_burn: shop/availability burning")
            && reasons.contains("over 30s and")
            && reasons.contains("over 5s (page threshold 14.4×)"),
        "{reasons}"
    );
    assert!(took < Duration::from_secs(45), "the 60 s fault was not cut short: {took:?}");
    // The same SLO judged on its own PromQL (polled as good/total counters) counted the failing requests.
    let production = &journal["slos"][1];
    assert_eq!(production["name"], "production", "{production}");
    assert!(production["total"].as_u64().unwrap() > 0, "{production}");
    assert!(production["good"].as_u64().unwrap() < production["total"].as_u64().unwrap(), "{production}");
    // The fault was reverted: the run's journal says so and the proxy has no fault left.
    let kinds = kinds(&journal);
    assert!(kinds.iter().any(|k| k == "fault_reverted"), "{kinds:?}");
    let (_, toxics) = http_json(server.api, "GET", "/proxies/shop-burn/toxics", None);
    assert_eq!(toxics, serde_json::json!([]), "a fault is left on the proxy");
    let _ = Path::new("");
}
