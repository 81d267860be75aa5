//! The verdict of a run that judges nothing (`engine::execute`): with no SLO and no steady-state probe a run
//! cannot pass, since nothing checked its hypothesis; `fire_and_forget: true` opts in to such a run, which then
//! passes on its faults alone. Each run applies a real latency toxic on an in-process `chaos proxy` bound to
//! port 0, so "every fault applied and reverted" is checked against the proxy itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use chaos_controller::engine::{self, FIRE_AND_FORGET, NOTHING_JUDGED, Outcome, Plan, RunConfig, Verdict};
use chaos_controller::experiment;
use proxy_support::proxy_server;
use tokio_util::sync::CancellationToken;

/// A 300 ms latency toxic on `shop`, nothing else; `extra` goes at the top level.
fn latency_only(api: &str, extra: &str) -> String {
    format!(
        "apiVersion: chaos/v1\ntitle: latency, judged by nothing\n{extra}targets:\n  shop: {{ proxy: {{ api: \
         \"{api}\", name: shop }} }}\nbaseline: 0s\nmethod:\n  - {{ name: slow shop, fault: latency, target: shop, \
         with: {{ latency: 100 }}, duration: 300ms }}\nrecovery: 0s\n"
    )
}

/// Parses, resolves and runs `yaml` (with the plan's proxy checks done before `before_run`).
async fn run(yaml: &str, before_run: impl AsyncFnOnce()) -> Outcome {
    let exp = experiment::parse("verdict.yaml", yaml, &[]).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let plan = Plan::resolve(&exp, 1).await.unwrap();
    before_run().await;
    let config = RunConfig {
        seed: 1,
        file: "verdict.yaml".into(),
        progress: None,
        stop_rollbacks: CancellationToken::new(),
    };
    engine::execute(&exp, plan, &config, CancellationToken::new()).await
}

/// Whether the timeline shows the step's toxic injected and then reverted, both successfully.
fn applied_and_reverted(outcome: &Outcome) -> bool {
    let done = |kind: &str| {
        outcome.timeline.iter().any(|e| e.kind == kind && e.name == "slow shop" && e.ok == Some(true))
    };
    done("fault_injected") && done("fault_reverted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_no_slo_and_no_probe_is_inconclusive_and_says_nothing_was_judged() {
    let (api, client, stop) = proxy_server().await;
    let outcome = run(&latency_only(&api, ""), async || {}).await;
    assert_eq!(outcome.verdict, Verdict::Inconclusive, "{:?}", outcome.reasons);
    assert_eq!(outcome.reasons, vec![NOTHING_JUDGED.to_string()]);
    assert_eq!(NOTHING_JUDGED, "nothing was judged: no SLO and no steady-state probe");
    assert_eq!(outcome.verdict.exit_code(), 3);
    // The faults themselves ran as planned: it is the judging that is missing, not the method.
    assert!(applied_and_reverted(&outcome), "{:#?}", outcome.timeline);
    assert!(client.toxics("shop").await.unwrap().is_empty(), "the toxic was left behind");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_and_forget_run_passes_when_its_faults_applied_and_reverted() {
    let (api, client, stop) = proxy_server().await;
    let outcome = run(&latency_only(&api, "fire_and_forget: true\n"), async || {}).await;
    assert_eq!(outcome.verdict, Verdict::Passed, "{:?}", outcome.reasons);
    assert_eq!(outcome.reasons, vec![FIRE_AND_FORGET.to_string()]);
    assert_eq!(FIRE_AND_FORGET, "fire and forget: nothing judged");
    assert!(applied_and_reverted(&outcome), "{:#?}", outcome.timeline);
    assert!(client.toxics("shop").await.unwrap().is_empty(), "the toxic was left behind");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_and_forget_run_whose_fault_could_not_be_applied_does_not_pass() {
    let (api, client, stop) = proxy_server().await;
    // The proxy goes away between the plan and the method: the toxic cannot be added.
    let outcome = run(&latency_only(&api, "fire_and_forget: true\n"), async || {
        client.delete_proxy("shop").await.unwrap()
    })
    .await;
    assert_eq!(outcome.verdict, Verdict::Inconclusive, "{:?}", outcome.reasons);
    assert!(outcome.reasons.iter().any(|r| r.starts_with("infrastructure: ")), "{:?}", outcome.reasons);
    assert!(outcome.reasons.contains(&FIRE_AND_FORGET.to_string()), "{:?}", outcome.reasons);
    stop.cancel();
}
