//! Per-run identity (issue 13): two runs of the same experiment at once against one `chaos proxy` (in-process,
//! port 0) name their toxics after their own run, so neither collides with nor deletes the other's; and a
//! controller locks the proxies a run faults as it locks agents, refusing a second run on the same proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chaos_controller::engine::{self, Outcome, Plan, RunConfig, Verdict};
use chaos_controller::experiment;
use chaos_controller::fleet::{Fleet, FleetConfig};
use chaos_controller::server::runs::{Runs, StartRequest};
use chaos_controller::store::{ExperimentRecord, SqliteStore, Store, StoreHandle};
use chaos_proxy::client::Client;
use proxy_support::proxy_server;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One latency toxic on `shop` for `duration`, judged by nothing (fire and forget).
fn latency(api: &str, duration: &str) -> String {
    format!(
        "apiVersion: chaos/v1\ntitle: shared proxy\nfire_and_forget: true\ntargets:\n  shop: {{ proxy: {{ api: \
         \"{api}\", name: shop }} }}\nbaseline: 0s\nmethod:\n  - {{ name: slow shop, fault: latency, target: shop, \
         with: {{ latency: 100 }}, duration: {duration} }}\nrecovery: 0s\n"
    )
}

/// Parses, resolves and runs `yaml` with seed 1 (both runs use the same seed: the run id alone tells them apart).
async fn run(yaml: String) -> Outcome {
    let exp = experiment::parse("shared.yaml", &yaml, &[]).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let plan = Plan::resolve(&exp, 1).await.unwrap();
    let config = RunConfig {
        seed: 1,
        file: "shared.yaml".into(),
        progress: None,
        stop_rollbacks: CancellationToken::new(),
    };
    engine::execute(&exp, plan, &config, CancellationToken::new()).await
}

async fn toxic_names(client: &Client) -> BTreeSet<String> {
    client.proxy("shop").await.unwrap().toxics.into_iter().map(|t| t.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_experiment_on_one_proxy_keep_their_own_toxics() {
    let (api, client, _stop) = proxy_server().await;
    let short = tokio::spawn(run(latency(&api, "500ms")));
    let long = tokio::spawn(run(latency(&api, "30s")));

    // Both toxics are in force at once, under different names.
    let deadline = Instant::now() + Duration::from_secs(20);
    let both = loop {
        let names = toxic_names(&client).await;
        if names.len() == 2 {
            break names;
        }
        assert!(Instant::now() < deadline, "never two toxics at once: {names:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(both.iter().all(|n| n.starts_with("chaos-slow-shop-latency-")), "{both:?}");

    // The short run ends, reverting its own toxic only: the long run's is still there.
    let outcome = short.await.unwrap();
    assert_eq!(outcome.verdict, Verdict::Passed, "{:?}", outcome.reasons);
    let left = toxic_names(&client).await;
    assert_eq!(left.len(), 1, "the short run removed the other run's toxic too: {left:?}");
    assert!(both.is_superset(&left));

    long.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_refuses_a_second_run_on_a_proxy_a_run_is_faulting() {
    let (api, _client, _stop) = proxy_server().await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let store = StoreHandle::new(store);
    let fleet = Fleet::new(FleetConfig::default(), store.clone());
    let runs = Runs::new(store, fleet, Default::default()).await.unwrap();
    let request = StartRequest {
        experiment: ExperimentRecord {
            id: "e-1".into(),
            title: "shared proxy".into(),
            file: "shared.yaml".into(),
            source: latency(&api, "30s"),
            vars: Default::default(),
            created_ms: 0,
        },
        seed: Some(1),
        dry_run: false,
        actor: "test".into(),
        schedule_id: None,
    };
    let first = runs.start(request.clone()).await.unwrap();
    let refused = runs.start(request.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let expected = format!("proxy shop at {api} is held by run {}", first.id);
    assert!(refused.message().contains(&expected), "{}", refused.message());
    // A dry run touches nothing and takes no lock.
    let planned = runs.start(StartRequest { dry_run: true, ..request }).await;
    assert!(planned.is_ok(), "{planned:?}");
}
