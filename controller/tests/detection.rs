//! Detection, measured (`detection:` in an experiment), against real parts: an in-process `chaos proxy` whose
//! admin API serves `/metrics` (`chaos_proxy_enabled{proxy="shop"}` drops to 0 while the proxy is down), a real
//! Prometheus (Debian's) scraping it every second and evaluating the rule `ShopDown` (`chaos_proxy_enabled == 0`,
//! `for: 2s`, evaluation interval 1 s), and for the Alertmanager cases a real Alertmanager (Debian's
//! `prometheus-alertmanager`) that Prometheus sends its alerts to. The experiment's fault is a real `down` on
//! the proxy.
//!
//! What is checked: a fault that trips the expected alert passes with its time to detect recorded, at least the
//! rule's `for:` after the injection and within `within`; an expected alert that never fires fails the run
//! "not detected" after the run waited `within`; a run with no fault, or whose source never answers, is
//! inconclusive; an interrupt ends the wait for the alerts at once.
//!
//! Needs `prometheus` (and `prometheus-alertmanager` for the Alertmanager cases); without them the tests fail
//! unless `CHAOS_TEST_SKIP=prometheus` (`,alertmanager`) says to skip them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos_controller::engine::{self, Outcome, Plan, RunConfig, Verdict};
use chaos_controller::experiment;
use chaos_proxy::client::{Client, NewProxy};
use chaos_test_support::alertmanager::{self, Alertmanager};
use chaos_test_support::prometheus::{self, Prometheus, encode, get};
use chaos_test_support::{TempDir, skip, wait_until};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The rule's `for:`: no detection can come sooner after the fault.
const FOR: Duration = Duration::from_secs(2);

/// The rule file: the shop proxy is down for [`FOR`].
const RULES: &str = "groups:\n  - name: detection-test\n    rules:\n      - alert: ShopDown\n        expr: \
                     chaos_proxy_enabled{proxy=\"shop\"} == 0\n        for: 2s\n        labels: { severity: page }\n";

/// A `chaos proxy` (admin API with `/metrics`) holding the proxy `shop`, and the Prometheus that scrapes it.
struct Stack {
    api: String,
    client: Client,
    stop: CancellationToken,
    prometheus: Prometheus,
    _rules: TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the proxy and a Prometheus scraping it and evaluating [`RULES`] every second, sending its alerts to
/// `alertmanager` when given; returns once Prometheus has scraped the proxy and loaded the rule.
async fn stack(alertmanager: Option<std::net::SocketAddr>) -> Stack {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    let api = format!("http://{admin}");
    let server = chaos_proxy::Server::new(chaos_proxy::ServerConfig { seed: Some(7), metrics: true });
    let stop = CancellationToken::new();
    tokio::spawn(chaos_proxy::serve(listener, server, stop.clone().cancelled_owned()));
    let client = Client::new(&api).unwrap();
    let shop = NewProxy {
        name: "shop".into(),
        listen: Some("127.0.0.1:0".into()),
        upstream: "127.0.0.1:9".into(),
        enabled: None,
        half_close: None,
    };
    client.create_proxy(&shop).await.unwrap();

    let rules = TempDir::new("detection-rules");
    let rule_file = rules.path().join("rules.yml");
    std::fs::write(&rule_file, RULES).unwrap();
    let alerting = alertmanager.map_or_else(String::new, |am| {
        format!("alerting: {{ alertmanagers: [{{ static_configs: [{{ targets: [\"{am}\"] }}] }}] }}\n")
    });
    let config = format!(
        "global: {{ scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }}\n\
         rule_files: [\"{}\"]\n{alerting}\
         scrape_configs: [{{ job_name: chaos-proxy, static_configs: [{{ targets: [\"{admin}\"] }}] }}]\n",
        rule_file.display()
    );
    let prometheus = tokio::task::spawn_blocking(move || {
        let prometheus = Prometheus::start(&config);
        let query = |expr: &str| -> Value {
            get(prometheus.addr(), &format!("/api/v1/query?query={}", encode(expr)))
                .and_then(|(_, body)| serde_json::from_str(&body).ok())
                .unwrap_or(Value::Null)
        };
        wait_until("prometheus scrapes the proxy with the shop up", Duration::from_secs(30), || {
            query("chaos_proxy_enabled{proxy=\"shop\"}")["data"]["result"][0]["value"][1] == "1"
        });
        wait_until("prometheus loads the ShopDown rule", Duration::from_secs(30), || {
            get(prometheus.addr(), "/api/v1/rules").is_some_and(|(_, body)| body.contains("\"ShopDown\""))
        });
        prometheus
    })
    .await
    .unwrap();
    Stack { api, client, stop, prometheus, _rules: rules }
}

/// The experiment: the shop proxy down for `down`, then `recovery`, watched by `detection` (YAML flow map).
fn experiment(api: &str, down: &str, recovery: &str, detection: &str) -> String {
    format!(
        "apiVersion: chaos/v1\ntitle: the shop going down pages someone\ntargets:\n  shop: {{ proxy: {{ api: \
         \"{api}\", name: shop }} }}\nbaseline: 0s\nmethod:\n  - {{ name: shop down, fault: down, target: shop, \
         duration: {down} }}\nrecovery: {recovery}\ndetection: {detection}\n"
    )
}

/// Parses, resolves and runs `yaml`, cancelling the interrupt when a progress line contains `interrupt_on`.
async fn run(yaml: &str, interrupt_on: Option<&'static str>) -> Outcome {
    let exp = experiment::parse("detection.yaml", yaml, &[]).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let plan = Plan::resolve(&exp, 1).await.unwrap();
    let interrupt = CancellationToken::new();
    let progress: Option<engine::Progress> = interrupt_on.map(|needle| {
        let interrupt = interrupt.clone();
        Arc::new(move |line: String| {
            if line.contains(needle) {
                interrupt.cancel();
            }
        }) as engine::Progress
    });
    let config = RunConfig {
        seed: 1,
        file: "detection.yaml".into(),
        progress,
        stop_rollbacks: CancellationToken::new(),
    };
    engine::execute(&exp, plan, &config, interrupt).await
}

/// When the run injected its fault, on the run's clock.
fn injected_at(outcome: &Outcome) -> Duration {
    outcome
        .timeline
        .iter()
        .find(|e| e.kind == "fault_injected" && e.ok == Some(true))
        .unwrap_or_else(|| panic!("no fault injected: {:#?}", outcome.timeline))
        .at
}

/// The proxy is up again (the run reverted its fault).
async fn shop_is_up(client: &Client) -> bool {
    client.proxy("shop").await.unwrap().enabled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_that_trips_the_expected_alert_passes_with_its_time_to_detect() {
    if !skip::require("prometheus", prometheus::available()) {
        return;
    }
    let stack = stack(None).await;
    let url = stack.prometheus.url();
    let yaml = experiment(
        &stack.api,
        "5s",
        "8s",
        &format!("{{ prometheus: \"{url}\", alerts: [ShopDown], within: 30s }}"),
    );
    let outcome = run(&yaml, None).await;
    assert_eq!(outcome.verdict, Verdict::Passed, "{:?}\n{}", outcome.reasons, stack.prometheus.log());
    let [shop] = outcome.detection.as_slice() else { panic!("{:?}", outcome.detection) };
    assert_eq!(
        (shop.alert.as_str(), shop.source.as_str(), shop.within_ms),
        ("ShopDown", url.as_str(), 30_000)
    );
    let detected = shop.detected_after_ms.expect("detected");
    // Not before the rule's `for:`; the bound above is `within`, what a pass means (a scrape, an evaluation
    // and a poll, a second each, normally make it 2-5 s).
    assert!(detected >= FOR.as_millis() as u64 && detected <= 30_000, "detected after {detected} ms");
    // It cannot resolve while the proxy is down (5 s), and resolves within the 8 s recovery window after.
    let resolved = shop.resolved_after_ms.expect("resolved during the recovery window");
    assert!(
        resolved >= 5_000 && resolved > detected,
        "resolved after {resolved} ms, detected after {detected}"
    );
    let took = experiment::model::Duration(Duration::from_millis(detected));
    let reason = format!("detected: alert ShopDown fired {took} after the fault (within 30s; {url})");
    assert!(outcome.reasons.contains(&reason), "{:?}", outcome.reasons);
    // The timeline says when, in the alert's own name.
    assert!(
        outcome
            .timeline
            .iter()
            .any(|e| e.name == "ShopDown" && e.detail.contains("after the fault (detected)")),
        "{:#?}",
        outcome.timeline
    );
    // Prometheus agrees it fired: its ALERTS series holds a firing sample for ShopDown.
    let answer = get(
        stack.prometheus.addr(),
        &format!(
            "/api/v1/query?query={}",
            encode("max_over_time(ALERTS{alertname=\"ShopDown\",alertstate=\"firing\"}[1m])")
        ),
    )
    .unwrap();
    assert!(answer.1.contains("\"ShopDown\""), "{}", answer.1);
    assert!(shop_is_up(&stack.client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expected_alert_that_never_fires_fails_the_run_not_detected() {
    if !skip::require("prometheus", prometheus::available()) {
        return;
    }
    let stack = stack(None).await;
    let url = stack.prometheus.url();
    let yaml = experiment(
        &stack.api,
        "3s",
        "0s",
        &format!("{{ prometheus: \"{url}/\", alerts: [ShopDown, ShopOnFire], within: 8s }}"),
    );
    let outcome = run(&yaml, None).await;
    assert_eq!(outcome.verdict, Verdict::Failed, "{:?}", outcome.reasons);
    let missing = format!("not detected: alert ShopOnFire did not fire within 8s of the fault ({url}/)");
    assert!(outcome.reasons.contains(&missing), "{:?}", outcome.reasons);
    assert!(
        !outcome.reasons.iter().any(|r| r.contains("alert ShopDown did not fire")),
        "{:?}",
        outcome.reasons
    );
    let [down, fire] = outcome.detection.as_slice() else { panic!("{:?}", outcome.detection) };
    assert!(down.detected_after_ms.is_some_and(|ms| ms >= FOR.as_millis() as u64), "{down:?}");
    assert_eq!(
        (fire.alert.as_str(), fire.detected_after_ms, fire.resolved_after_ms),
        ("ShopOnFire", None, None)
    );
    // The run waited the whole `within` for it (past a 3 s method and no recovery window), and not much more.
    let waited = outcome.duration.saturating_sub(injected_at(&outcome));
    assert!(waited >= Duration::from_secs(8), "the run stopped watching {waited:?} after the fault");
    assert!(shop_is_up(&stack.client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_through_alertmanager_measures_the_alert_prometheus_sent_it() {
    if !skip::require("prometheus", prometheus::available())
        || !skip::require("alertmanager", alertmanager::available())
    {
        return;
    }
    let am = tokio::task::spawn_blocking(Alertmanager::start).await.unwrap();
    let stack = stack(Some(am.addr())).await;
    let yaml = experiment(
        &stack.api,
        "4s",
        "0s",
        &format!("{{ alertmanager: \"{}\", alerts: [ShopDown, ShopOnFire], within: 15s }}", am.url()),
    );
    let started = Instant::now();
    let outcome = run(&yaml, None).await;
    assert_eq!(outcome.verdict, Verdict::Failed, "{:?}\n{}", outcome.reasons, am.log());
    let [down, fire] = outcome.detection.as_slice() else { panic!("{:?}", outcome.detection) };
    assert_eq!(down.source, am.url());
    let detected = down.detected_after_ms.unwrap_or_else(|| panic!("{:?}\n{}", outcome.reasons, am.log()));
    assert!(detected >= FOR.as_millis() as u64 && detected <= 15_000, "detected after {detected} ms");
    assert_eq!(fire.detected_after_ms, None);
    assert!(
        outcome.reasons.contains(&format!(
            "not detected: alert ShopOnFire did not fire within 15s of the fault ({})",
            am.url()
        )),
        "{:?}",
        outcome.reasons
    );
    assert!(started.elapsed() >= Duration::from_secs(15), "the run did not wait `within` for ShopOnFire");
    // Alertmanager itself holds the alert Prometheus sent (active, or resolved and gone by now).
    assert!(shop_is_up(&stack.client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_alert_that_fires_passes() {
    if !skip::require("prometheus", prometheus::available())
        || !skip::require("alertmanager", alertmanager::available())
    {
        return;
    }
    let am = tokio::task::spawn_blocking(Alertmanager::start).await.unwrap();
    let stack = stack(Some(am.addr())).await;
    let yaml = experiment(
        &stack.api,
        "4s",
        "0s",
        &format!("{{ alertmanager: \"{}\", alerts: [ShopDown], within: 30s }}", am.url()),
    );
    let outcome = run(&yaml, None).await;
    assert_eq!(outcome.verdict, Verdict::Passed, "{:?}\n{}", outcome.reasons, am.log());
    let detected = outcome.detection[0].detected_after_ms.unwrap();
    assert!(detected >= FOR.as_millis() as u64 && detected <= 30_000, "detected after {detected} ms");
    // Once detected the run does not wait for the rest of `within`: the recovery window is 0 s.
    let waited = outcome.duration.saturating_sub(injected_at(&outcome));
    assert!(waited < Duration::from_secs(30), "waited {waited:?} after the fault");
    assert!(am.active_alerts().contains("\"ShopDown\""), "{}", am.active_alerts());
}

/// A loopback URL nothing answers on: a port the kernel gave and that was closed again.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// A proxy with metrics off (nothing scrapes it in these tests): `(api, client, stop)`.
async fn bare_proxy() -> (String, Client, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let server = chaos_proxy::Server::new(chaos_proxy::ServerConfig { seed: Some(7), metrics: false });
    let stop = CancellationToken::new();
    tokio::spawn(chaos_proxy::serve(listener, server, stop.clone().cancelled_owned()));
    let client = Client::new(&api).unwrap();
    let shop = NewProxy {
        name: "shop".into(),
        listen: Some("127.0.0.1:0".into()),
        upstream: "127.0.0.1:9".into(),
        enabled: None,
        half_close: None,
    };
    client.create_proxy(&shop).await.unwrap();
    (api, client, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_a_fault_is_inconclusive_and_does_not_wait() {
    let (api, _client, stop) = bare_proxy().await;
    let yaml = format!(
        "apiVersion: chaos/v1\ntitle: nothing to detect\ntargets:\n  shop: {{ proxy: {{ api: \"{api}\", name: shop \
         }} }}\nbaseline: 0s\nmethod:\n  - {{ wait: 500ms }}\nrecovery: 0s\ndetection: {{ prometheus: \"{}\", \
         alerts: [ShopDown], within: 1h }}\n",
        dead_url()
    );
    let started = Instant::now();
    let outcome = run(&yaml, None).await;
    assert_eq!(outcome.verdict, Verdict::Inconclusive, "{:?}", outcome.reasons);
    assert_eq!(outcome.reasons, [engine::NO_FAULT_TO_DETECT]);
    assert!(started.elapsed() < Duration::from_secs(60), "waited {:?} with no fault", started.elapsed());
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_never_answers_makes_the_run_inconclusive() {
    let (api, client, stop) = bare_proxy().await;
    let dead = dead_url();
    let yaml = experiment(
        &api,
        "1s",
        "0s",
        &format!("{{ prometheus: \"{dead}\", alerts: [ShopDown], within: 3s }}"),
    );
    let outcome = run(&yaml, None).await;
    assert_eq!(outcome.verdict, Verdict::Inconclusive, "{:?}", outcome.reasons);
    let [reason] = outcome.reasons.as_slice() else { panic!("{:?}", outcome.reasons) };
    assert!(
        reason.starts_with(&format!("detection: {dead} never answered: cannot reach {dead}")),
        "{reason}"
    );
    assert!(shop_is_up(&client).await);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_ends_the_wait_for_the_alerts() {
    let (api, client, stop) = bare_proxy().await;
    let yaml = experiment(
        &api,
        "300ms",
        "0s",
        &format!("{{ prometheus: \"{}\", alerts: [ShopDown], within: 1h }}", dead_url()),
    );
    let started = Instant::now();
    // Interrupted once the run says it waits for the alert: past the method, reverts done.
    let outcome = run(&yaml, Some("waiting for ShopDown to fire")).await;
    assert_eq!(outcome.verdict, Verdict::Inconclusive, "{:?}", outcome.reasons);
    assert_eq!(outcome.reasons[0], "interrupted: every fault in force was reverted");
    assert!(started.elapsed() < Duration::from_secs(60), "the wait went on {:?}", started.elapsed());
    assert!(outcome.timeline.iter().any(|e| e.kind == "fault_reverted" && e.ok == Some(true)));
    assert!(shop_is_up(&client).await);
    stop.cancel();
}
