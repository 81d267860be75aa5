//! The budget gate through a real controller: experiments reference SLOs from the controller's registry
//! (applied with `ApplySlos`, as `chaos slo apply` does; `file:` is refused there), a run the gate refuses is
//! recorded inconclusive with the gate's reason (in the run list) and refused as FAILED_PRECONDITION, and a
//! scheduled firing it refuses is skipped with that reason in the audit log, against a real Prometheus whose
//! backfilled history leaves 12.3% of the budget.
//!
//! Needs `prometheus` and `promtool`; without them the test fails unless `CHAOS_TEST_SKIP=prometheus`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chaos_controller::server::Controller;
use chaos_proto::v1::{ApplySlosRequest, CreateScheduleRequest, DeleteScheduleRequest, SloFile};
use chaos_test_support::prometheus::{Prometheus, available};
use chaos_test_support::skip;
use fleet_support::{
    API_NAME, API_TOKEN, TempDir, WAIT, audit_of, client, config, fleet, runs, start_run, submit, wait_for,
};
use tokio_util::sync::CancellationToken;
use tonic::Code;

const SLO: &str = "apiVersion: chaos/v1\nkind: SLO\nservice: payments\nname: availability\nobjective: 99.9%\n\
                   period: 1d\nsli:\n  events:\n    bad: http_requests_total{job=\"payments\",code=~\"5..\"}\n\
                   \x20   total: http_requests_total{job=\"payments\"}\n";

/// A day of `payments` requests, a sample a minute ending two minutes ago: 1000 a minute, 0.877 of them 5xx
/// (12.3% of a 99.9% budget left).
fn history() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let end = now - now % 60 - 120;
    let mut om = String::from("# HELP http_requests_total requests\n# TYPE http_requests_total counter\n");
    for (code, per_minute) in [("200", 999.123), ("500", 0.877)] {
        for step in 0..=1440u64 {
            let value = per_minute * step as f64;
            let t = end - 86_400 + step * 60;
            om.push_str(&format!("http_requests_total{{code=\"{code}\",job=\"payments\"}} {value} {t}\n"));
        }
    }
    om.push_str("# EOF\n");
    om
}

fn experiment(prometheus: &str, reference: &str) -> String {
    format!(
        "apiVersion: chaos/v1\ntitle: gated in the fleet\n\
         load:\n  - {{ name: main, http: {{ url: \"http://127.0.0.1:9/\" }}, rate: 1/s }}\n\
         slos:\n  - {{ {reference}, source: {{ load: main }} }}\n\
         budget_gate: {{ prometheus: \"{prometheus}\", min_remaining: 25% }}\n\
         method:\n  - {{ wait: 100ms }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_run_and_a_gated_firing_are_refused_with_the_reason_in_the_run_list_and_audit_log() {
    if !skip::require("prometheus", available()) {
        return;
    }
    let prometheus = Prometheus::backfilled(&history(), "global: {scrape_interval: 1m}\n");
    let dir = TempDir::new("slo-gate");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("api.token"), format!("{API_NAME} {API_TOKEN}\n")).unwrap();
    let controller = Controller::bind(config(dir.path(), fleet(200, 2000))).await.unwrap();
    let addr = controller.local_addr;
    let stop = CancellationToken::new();
    let serving = tokio::spawn(controller.serve(stop.clone()));
    let client = client(addr, Some(API_TOKEN)).await;
    let files = vec![SloFile { file: "payments.yaml".into(), source: SLO.into() }];
    client.clone().apply_slos(ApplySlosRequest { files }).await.unwrap();
    let reason =
        "budget gate: payments/availability has 12.3% of its 1d error budget left, the gate needs 25%";

    // A controller cannot read the client's files.
    let with_file = experiment(&prometheus.url(), "use: payments/availability, file: slos.yaml");
    let refused = client.clone().submit_experiment(submit(&with_file)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("register it with `chaos slo apply` and drop `file:`"), "{refused:?}");

    // A run started by hand: refused (the client exits 3), recorded inconclusive with the reason.
    let source = experiment(&prometheus.url(), "use: payments/availability");
    let refused = start_run(&client, &source, 1, false).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().starts_with(reason), "{}", refused.message());
    let listed = runs(&client).await;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!((listed[0].state.as_str(), listed[0].verdict.as_str()), ("inconclusive", "inconclusive"));
    assert_eq!(listed[0].reasons, [reason]);
    assert_eq!(listed[0].exit_code, 3);
    assert!(listed[0].plan.contains(reason), "the gate's figures: {}", listed[0].plan);
    let refusal = audit_of(&client, "run_refused").await;
    assert_eq!(refusal.len(), 1);
    assert_eq!(refusal[0].run_id, listed[0].id);
    // A dry run only plans: it shows the gate and reads nothing.
    let dry = start_run(&client, &source, 1, true).await.unwrap();
    assert!(
        dry.plan.contains("budget gate: before anything, payments/availability must each have at least 25%"),
        "{}",
        dry.plan
    );

    // A scheduled firing: skipped, with the reason in the audit log and its run in the list.
    let stored = client.clone().submit_experiment(submit(&source)).await.unwrap().into_inner();
    let schedule = CreateScheduleRequest {
        name: "gated".into(),
        experiment_id: stored.id.clone(),
        cron: "* * * * * *".into(),
        ..CreateScheduleRequest::default()
    };
    client.clone().create_schedule(schedule).await.unwrap();
    let skipped = wait_for("a firing the gate skipped", WAIT, || async {
        audit_of(&client, "schedule_fired").await.into_iter().find(|e| e.actor == "schedule:gated")
    })
    .await;
    client.clone().delete_schedule(DeleteScheduleRequest { id: "gated".into() }).await.unwrap();
    assert_eq!(skipped.detail, format!("skipped: {reason}"));
    let run =
        runs(&client).await.into_iter().find(|r| r.id == skipped.run_id).expect("the skipped run is listed");
    assert_eq!((run.state.as_str(), run.actor.as_str()), ("inconclusive", "schedule:gated"));
    assert_eq!(run.reasons, [reason]);
    assert!(run.journal_json.is_empty(), "nothing ran");
    // Nothing ran for any of them.
    assert!(audit_of(&client, "run_started").await.is_empty());

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), serving).await.unwrap().unwrap().unwrap();
}
