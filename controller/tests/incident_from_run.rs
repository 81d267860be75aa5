//! Incidents from experiments, through a real controller started with local effects allowed: a run whose
//! connection resets (a real `chaos proxy` in front of a real HTTP service) refute its errors SLO opens the
//! incident its `on_failure` describes, linked to the run, its timeline and times taken from the run's
//! journal in wall clock, visible as soon as the run's `finished` event is; the same run without `on_failure`
//! opens none; a schedule's own `on_failure` replaces the experiment's. The review renders the run's SLO
//! numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;

use std::net::SocketAddr;
use std::time::Duration;

use chaos_controller::incident::report::{self, LinkedRun};
use chaos_controller::report::journal::Journal;
use chaos_proto::transport::{ClientConfig, WithToken};
use chaos_proto::v1::incident_service_client::IncidentServiceClient;
use chaos_proto::v1::{
    CreateScheduleRequest, DeleteScheduleRequest, GetIncidentRequest, ListIncidentsRequest,
};
use chaos_proxy::client::{Client as ProxyClient, NewProxy};
use fleet_support::{
    API_TOKEN, RunningController, TempDir, WAIT, audit_of, config, fleet, get_run, http_ok, runs, start_run,
    submit, wait_for, watch,
};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Incidents = IncidentServiceClient<InterceptedService<Channel, WithToken>>;

async fn incidents(addr: SocketAddr) -> Incidents {
    let config = ClientConfig { url: format!("http://{addr}"), ..ClientConfig::default() };
    let channel = chaos_proto::transport::channel(&config).await.unwrap();
    IncidentServiceClient::with_interceptor(channel, WithToken::new(Some(API_TOKEN)).unwrap())
}

/// A `chaos proxy` admin API on 127.0.0.1:0 with the proxy `shop` in front of `upstream`: the API URL, the
/// proxy's listen address, and the token that stops the server.
async fn proxy_in_front_of(upstream: SocketAddr) -> (String, String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = chaos_proxy::Server::new(chaos_proxy::ServerConfig { seed: Some(3), metrics: false });
    let stop = CancellationToken::new();
    tokio::spawn(chaos_proxy::serve(listener, server, stop.clone().cancelled_owned()));
    let client = ProxyClient::new(&url).unwrap();
    let proxy = NewProxy {
        name: "shop".into(),
        listen: Some("127.0.0.1:0".into()),
        upstream: upstream.to_string(),
        enabled: None,
        half_close: None,
    };
    let created = client.create_proxy(&proxy).await.unwrap();
    (url, created.listen, stop)
}

/// Every connection through the proxy reset for 2 s while 50 requests a second go through it: the errors
/// SLO (99%) is refuted. `on_failure` is appended as given.
fn resets(api: &str, listen: &str, on_failure: &str) -> String {
    format!(
        "apiVersion: chaos/v1\ntitle: checkout survives connection resets\n\
         targets:\n  shop: {{ proxy: {{ api: \"{api}\", name: shop }} }}\n\
         load:\n  - {{ name: shoppers, http: {{ url: \"http://{listen}/checkout\" }}, rate: 50/s }}\n\
         slos:\n  - {{ name: availability, signal: errors, objective: 99%, source: {{ load: shoppers }} }}\n\
         baseline: 1s\nmethod:\n  - {{ wait: 500ms }}\n\
         \x20 - {{ name: reset every connection, fault: reset_peer, target: shop, with: {{ timeout: 0, stream: upstream }}, duration: 2s }}\n\
         \x20 - {{ wait: 500ms }}\nrecovery: 2s\n{on_failure}"
    )
}

const ON_FAILURE: &str = "on_failure:\n  incident:\n    severity: SEV2\n    services: [checkout]\n    \
                          commander: ana\n    responders: [bo, cy]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_with_on_failure_opens_a_linked_incident_with_the_runs_timeline() {
    let dir = TempDir::new("incident-from-run");
    let mut cfg = config(dir.path(), fleet(200, 2_000));
    cfg.limits.allow_local_effects = true;
    let controller = RunningController::start(cfg).await;
    let api = controller.client().await;
    let client = incidents(controller.addr).await;
    let (upstream, _count) = http_ok().await;
    let (proxy_api, listen, stop) = proxy_in_front_of(upstream).await;

    let run = start_run(&api, &resets(&proxy_api, &listen, ON_FAILURE), 5, false).await.unwrap();
    watch(&api, &run.id).await;
    // Read right after the finished event, without waiting: the incident is there.
    let listed = client.clone().list_incidents(ListIncidentsRequest::default()).await.unwrap().into_inner();
    let done = get_run(&api, &run.id).await;
    assert_eq!(done.verdict, "failed", "{done:#?}");
    assert_eq!(listed.incidents.len(), 1, "{listed:#?}");
    let id = listed.incidents[0].id.clone();
    let incident =
        client.clone().get_incident(GetIncidentRequest { id: id.clone() }).await.unwrap().into_inner();

    assert_eq!(incident.title, "checkout survives connection resets: failed");
    assert_eq!((incident.severity.as_str(), incident.status.as_str()), ("sev2", "investigating"));
    assert_eq!(incident.services, ["checkout"]);
    assert_eq!(
        (incident.commander.as_str(), incident.responders.clone()),
        ("ana", vec!["bo".to_string(), "cy".into()])
    );
    assert_eq!(incident.run_ids, vec![run.id.clone()]);
    assert_eq!(incident.opened_by, format!("run:{}", run.id));

    // Times in wall clock: the journal's start plus its offsets.
    let journal: Journal = serde_json::from_str(&done.journal_json).unwrap();
    let base = chrono::DateTime::parse_from_rfc3339(&journal.started_at).unwrap().timestamp_millis();
    let fault = &journal.faults[0];
    assert_eq!(incident.started_unix_ms, base + fault.start_ms as i64, "started at the fault's injection");
    let breach = journal.slo_series.iter().filter_map(|s| s.breach_ms).min().expect("the SLO breached");
    assert_eq!(incident.detected_unix_ms, base + breach as i64, "detected at the first breach");
    assert!(
        (0..3_000).contains(&incident.time_to_detect_ms),
        "time to detect {} ms for a 2 s fault",
        incident.time_to_detect_ms
    );

    // The timeline: the run's moments in order, then the opening and the link.
    let kinds: Vec<&str> = incident.timeline.iter().map(|e| e.kind.as_str()).collect();
    let position =
        |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("no {kind}: {kinds:?}"));
    assert_eq!(kinds[0], "fault_injected", "{kinds:?}");
    assert!(position("fault_injected") < position("slo_breach"));
    assert!(position("slo_breach") < position("faults_reverted"));
    assert!(position("faults_reverted") < position("opened"));
    assert_eq!(kinds.last(), Some(&"linked_run"), "{kinds:?}");
    assert!(
        incident.timeline.windows(2).all(|w| w[0].at_unix_ms <= w[1].at_unix_ms),
        "{:#?}",
        incident.timeline
    );
    let injected = &incident.timeline[0];
    assert_eq!((injected.at_unix_ms, injected.author.as_str()), (base + fault.start_ms as i64, "chaos"));
    assert!(injected.text.starts_with("fault `reset every connection` injected"), "{}", injected.text);
    let reverted = &incident.timeline[position("faults_reverted")];
    assert_eq!(reverted.at_unix_ms, base + fault.end_ms as i64);
    let breached = &incident.timeline[position("slo_breach")];
    assert!(breached.text.starts_with("SLO `availability` breached: "), "{}", breached.text);
    let recovery = incident.timeline.iter().position(|e| {
        e.kind == "recovered" || e.text.starts_with("not recovered within the recovery window")
    });
    assert!(recovery.is_some_and(|p| p > position("faults_reverted")), "{:#?}", incident.timeline);

    // Audited as opened by the run.
    let audited = audit_of(&api, "incident_opened").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(
        (audited[0].actor.clone(), audited[0].run_id.clone()),
        (format!("run:{}", run.id), run.id.clone())
    );
    assert!(audited[0].detail.starts_with(&id));

    // The review carries the run's SLO numbers.
    let library_incident = chaos_controller::incident::Incident {
        id: incident.id.clone(),
        title: incident.title.clone(),
        severity: incident.severity.parse().unwrap(),
        status: incident.status.parse().unwrap(),
        started_ms: incident.started_unix_ms,
        detected_ms: Some(incident.detected_unix_ms),
        acknowledged_ms: None,
        acknowledged_by: None,
        resolved_ms: None,
        commander: Some(incident.commander.clone()),
        responders: incident.responders.clone(),
        services: incident.services.clone(),
        root_cause: None,
        action_items: vec![],
        opened_by: incident.opened_by.clone(),
        runs: incident.run_ids.clone(),
        timeline: vec![],
    };
    let md = report::markdown(&library_incident, &[LinkedRun { id: run.id.clone(), journal: Some(journal) }]);
    assert!(
        md.contains(&format!("### Run `{}`: checkout survives connection resets — failed", run.id)),
        "{md}"
    );
    assert!(md.contains("| availability | "), "{md}");
    assert!(md.contains("| missed |"), "{md}");

    // The same failing run without `on_failure` opens nothing.
    let plain = start_run(&api, &resets(&proxy_api, &listen, ""), 5, false).await.unwrap();
    watch(&api, &plain.id).await;
    assert_eq!(get_run(&api, &plain.id).await.verdict, "failed");
    let listed = client.clone().list_incidents(ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.incidents.len(), 1, "a run without on_failure opened an incident");
    stop.cancel();
    controller.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedules_own_on_failure_replaces_the_experiments() {
    let dir = TempDir::new("incident-schedule");
    let mut cfg = config(dir.path(), fleet(200, 2_000));
    cfg.limits.allow_local_effects = true;
    let controller = RunningController::start(cfg).await;
    let api = controller.client().await;
    let client = incidents(controller.addr).await;
    let (upstream, _count) = http_ok().await;
    let (proxy_api, listen, stop) = proxy_in_front_of(upstream).await;
    let stored = api
        .clone()
        .submit_experiment(submit(&resets(&proxy_api, &listen, ON_FAILURE)))
        .await
        .unwrap()
        .into_inner();

    // A bad block is refused, saying where.
    let bad = CreateScheduleRequest {
        name: "bad".into(),
        experiment_id: stored.id.clone(),
        cron: "* * * * * *".into(),
        on_failure: "incident: {severity: sev9}".into(),
        ..CreateScheduleRequest::default()
    };
    let bad = api.clone().create_schedule(bad).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("on_failure.incident.severity: unknown severity \"sev9\""), "{bad:?}");

    let schedule = CreateScheduleRequest {
        name: "nightly".into(),
        experiment_id: stored.id.clone(),
        cron: "* * * * * *".into(),
        on_failure: "incident:\n  severity: sev1\n  title: nightly resets\n  services: [payments]\n".into(),
        ..CreateScheduleRequest::default()
    };
    api.clone().create_schedule(schedule).await.unwrap();
    let fired = wait_for("the schedule's first run", WAIT, || async {
        runs(&api).await.into_iter().find(|r| r.actor == "schedule:nightly")
    })
    .await;
    api.clone().delete_schedule(DeleteScheduleRequest { id: "nightly".into() }).await.unwrap();
    watch(&api, &fired.id).await;
    assert_eq!(get_run(&api, &fired.id).await.verdict, "failed");
    let listed = client.clone().list_incidents(ListIncidentsRequest::default()).await.unwrap().into_inner();
    let opened: Vec<_> = listed.incidents.iter().filter(|i| i.run_ids.contains(&fired.id)).collect();
    assert_eq!(opened.len(), 1, "{listed:#?}");
    let incident = opened[0];
    assert_eq!(
        (incident.title.as_str(), incident.severity.as_str(), incident.services.clone()),
        ("nightly resets", "sev1", vec!["payments".to_string()]),
        "the schedule's on_failure, not the experiment's"
    );
    assert_eq!(incident.commander, "", "nothing of the experiment's template is merged in");
    stop.cancel();
    controller.stop(Duration::from_secs(10)).await;
}
