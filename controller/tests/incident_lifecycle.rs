//! Incidents through a real controller (gRPC on 127.0.0.1:0, SQLite in a temp dir): the lifecycle's
//! transitions allowed and refused with their reason (FAILED_PRECONDITION) and bad input refused
//! (INVALID_ARGUMENT), the timeline in order, times to detect/acknowledge/recover from the recorded times,
//! stats over a period by service and severity (nearest-rank p50/p90 checked against hand-computed values),
//! an audit entry for every change, every call needing a token, and everything kept across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;

use std::net::SocketAddr;
use std::time::Duration;

use chaos_proto::transport::{ClientConfig, WithToken};
use chaos_proto::v1::incident_service_client::IncidentServiceClient;
use chaos_proto::v1::{
    AckIncidentRequest, AddIncidentNoteRequest, GetIncidentRequest, Incident, IncidentActionItem,
    IncidentStatsRequest, ListIncidentsRequest, OpenIncidentRequest, ResolveIncidentRequest,
    SetIncidentStatusRequest, UpdateIncidentRequest,
};
use fleet_support::{API_NAME, API_TOKEN, RunningController, TempDir, audit_of, config, fleet};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Incidents = IncidentServiceClient<InterceptedService<Channel, WithToken>>;

async fn incidents(addr: SocketAddr, token: Option<&str>) -> Incidents {
    let config = ClientConfig { url: format!("http://{addr}"), ..ClientConfig::default() };
    let channel = chaos_proto::transport::channel(&config).await.unwrap();
    IncidentServiceClient::with_interceptor(channel, WithToken::new(token).unwrap())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn open(title: &str, severity: &str, services: &[&str], started: i64, detected: i64) -> OpenIncidentRequest {
    OpenIncidentRequest {
        title: title.into(),
        severity: severity.into(),
        started_unix_ms: started,
        detected_unix_ms: detected,
        services: services.iter().map(|s| s.to_string()).collect(),
        ..OpenIncidentRequest::default()
    }
}

async fn get(client: &Incidents, id: &str) -> Incident {
    client.clone().get_incident(GetIncidentRequest { id: id.into() }).await.unwrap().into_inner()
}

async fn status(client: &Incidents, id: &str, to: &str, reopen: bool) -> Result<Incident, tonic::Status> {
    let request = SetIncidentStatusRequest { id: id.into(), status: to.into(), reopen, note: String::new() };
    client.clone().set_incident_status(request).await.map(tonic::Response::into_inner)
}

fn kinds(i: &Incident) -> Vec<&str> {
    i.timeline.iter().map(|e| e.kind.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_refuses_with_reasons_keeps_its_timeline_audits_and_survives_a_restart() {
    let dir = TempDir::new("incident-lifecycle");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2_000))).await;
    let api = controller.client().await;
    let client = incidents(controller.addr, Some(API_TOKEN)).await;

    // Without a token, nothing happens.
    let anonymous = incidents(controller.addr, None).await;
    let refused = anonymous.clone().open_incident(open("x", "sev3", &[], 0, 0)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = anonymous.clone().list_incidents(ListIncidentsRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Bad input: INVALID_ARGUMENT saying what.
    let bad = client.clone().open_incident(open("x", "sev5", &[], 0, 0)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(bad.message(), "unknown severity \"sev5\": expected sev1 (worst), sev2, sev3 or sev4");
    let bad = client.clone().open_incident(open("  ", "sev3", &[], 0, 0)).await.unwrap_err();
    assert_eq!((bad.code(), bad.message()), (Code::InvalidArgument, "the title must not be empty"));
    let mut linked = open("x", "sev3", &[], 0, 0);
    linked.run_ids = vec!["r-missing".into()];
    let missing = client.clone().open_incident(linked).await.unwrap_err();
    assert_eq!((missing.code(), missing.message()), (Code::NotFound, "run r-missing not found"));

    // Opened as SEV2 (any case), 5 minutes after it started, noticed 2 minutes in.
    let t0 = now_ms() - 300_000;
    let mut request = open("checkout errors", "SEV2", &["checkout"], t0, t0 + 120_000);
    request.commander = "ana".into();
    request.summary = "5xx on /checkout".into();
    let opened = client.clone().open_incident(request).await.unwrap().into_inner();
    let id = opened.id.clone();
    assert_eq!((opened.severity.as_str(), opened.status.as_str()), ("sev2", "investigating"));
    assert_eq!(opened.opened_by, API_NAME);
    assert_eq!(opened.time_to_detect_ms, 120_000);
    assert_eq!((opened.time_to_acknowledge_ms, opened.time_to_recover_ms), (-1, -1));

    // Acknowledged once; a second acknowledgement is refused with who and when.
    let acked = client.clone().ack_incident(AckIncidentRequest { id: id.clone(), note: String::new() }).await;
    let acked = acked.unwrap().into_inner();
    assert_eq!(acked.acknowledged_by, API_NAME);
    assert_eq!(acked.time_to_acknowledge_ms, acked.acknowledged_unix_ms - (t0 + 120_000));
    let again = client.clone().ack_incident(AckIncidentRequest { id: id.clone(), note: String::new() }).await;
    let again = again.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.message().starts_with("the incident was already acknowledged by ci at "), "{again:?}");

    // Forward, then a refused move back, then monitoring → identified (a regression) is allowed.
    assert_eq!(status(&client, &id, "identified", false).await.unwrap().status, "identified");
    let back = status(&client, &id, "investigating", false).await.unwrap_err();
    assert_eq!(back.code(), Code::FailedPrecondition);
    assert_eq!(
        back.message(),
        "an incident may not go back from identified to investigating: only monitoring may return to \
         investigating or identified, when the fix does not hold"
    );
    let same = status(&client, &id, "identified", false).await.unwrap_err();
    assert_eq!(
        (same.code(), same.message()),
        (Code::FailedPrecondition, "the incident is already identified")
    );
    let unknown = status(&client, &id, "fixed", false).await.unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(status(&client, &id, "Monitoring", false).await.unwrap().status, "monitoring");
    assert_eq!(status(&client, &id, "identified", false).await.unwrap().status, "identified");

    let note = AddIncidentNoteRequest { id: id.clone(), text: "pool exhausted at 14:02".into() };
    client.clone().add_incident_note(note).await.unwrap();
    let empty = AddIncidentNoteRequest { id: id.clone(), text: " ".into() };
    let empty = client.clone().add_incident_note(empty).await.unwrap_err();
    assert_eq!((empty.code(), empty.message()), (Code::InvalidArgument, "the note must not be empty"));

    let update = UpdateIncidentRequest {
        id: id.clone(),
        severity: Some("sev1".into()),
        add_responders: vec!["bo".into()],
        add_services: vec!["payments".into()],
        add_action_items: vec![IncidentActionItem {
            text: "alert on pool saturation".into(),
            owner: "bo".into(),
            done: false,
        }],
        ..UpdateIncidentRequest::default()
    };
    let updated = client.clone().update_incident(update).await.unwrap().into_inner();
    assert_eq!(updated.severity, "sev1");
    assert_eq!(updated.services, ["checkout", "payments"]);
    let nothing = UpdateIncidentRequest { id: id.clone(), ..Default::default() };
    let nothing = client.clone().update_incident(nothing).await.unwrap_err();
    assert_eq!(nothing.code(), Code::InvalidArgument);
    let missing = UpdateIncidentRequest {
        id: "inc-missing".into(),
        severity: Some("sev1".into()),
        ..Default::default()
    };
    let missing = client.clone().update_incident(missing).await;
    let missing = missing.unwrap_err();
    assert_eq!((missing.code(), missing.message()), (Code::NotFound, "incident inc-missing not found"));

    let resolve = ResolveIncidentRequest {
        id: id.clone(),
        root_cause: "pool of 4 connections".into(),
        note: String::new(),
    };
    let resolved = client.clone().resolve_incident(resolve).await.unwrap().into_inner();
    assert_eq!(resolved.status, "resolved");
    assert_eq!(resolved.time_to_recover_ms, resolved.resolved_unix_ms - t0);
    assert!(resolved.time_to_recover_ms >= 300_000);
    let after = status(&client, &id, "monitoring", false).await.unwrap_err();
    assert_eq!(after.code(), Code::FailedPrecondition);
    assert!(after.message().contains("nothing leaves resolved except a reopen"), "{after:?}");

    // The timeline: every change, in order, by the token's name.
    let full = get(&client, &id).await;
    assert_eq!(
        kinds(&full),
        [
            "opened",
            "note",
            "ack",
            "status",
            "status",
            "status",
            "note",
            "severity",
            "responder",
            "service",
            "action_item",
            "root_cause",
            "resolved"
        ]
    );
    assert!(full.timeline.windows(2).all(|w| w[0].at_unix_ms <= w[1].at_unix_ms));
    assert!(full.timeline.iter().all(|e| e.author == API_NAME));
    assert_eq!(full.timeline[3].text, "investigating → identified");

    // Reopened (audited as such), and resolved again.
    let reopened = status(&client, &id, "investigating", true).await.unwrap();
    assert_eq!((reopened.status.as_str(), reopened.resolved_unix_ms), ("investigating", 0));
    client
        .clone()
        .resolve_incident(ResolveIncidentRequest { id: id.clone(), ..Default::default() })
        .await
        .unwrap();

    // Every change audited, by the token's name, naming the incident.
    for (action, count) in [
        ("incident_opened", 1),
        ("incident_acknowledged", 1),
        ("incident_status", 3),
        ("incident_note", 1),
        ("incident_updated", 1),
        ("incident_resolved", 2),
        ("incident_reopened", 1),
    ] {
        let entries = audit_of(&api, action).await;
        assert_eq!(entries.len(), count, "{action}: {entries:#?}");
        assert!(entries.iter().all(|e| e.actor == API_NAME && e.detail.starts_with(&id)), "{entries:#?}");
    }

    // A restart on the same data directory: the same incident, timeline and all.
    let before = get(&client, &id).await;
    drop((client, api));
    let restart = controller.restart_config();
    controller.stop(Duration::from_secs(10)).await;
    let controller = RunningController::start(restart).await;
    let client = incidents(controller.addr, Some(API_TOKEN)).await;
    assert_eq!(get(&client, &id).await, before);
    let listed = client.clone().list_incidents(ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.incidents.len(), 1);
    assert!(listed.incidents[0].timeline.is_empty(), "listings carry no timeline");
    controller.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_over_a_period_give_nearest_rank_percentiles_by_service_and_severity() {
    let dir = TempDir::new("incident-stats");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2_000))).await;
    let client = incidents(controller.addr, Some(API_TOKEN)).await;
    let day = 86_400_000;
    let now = now_ms();
    // (severity, services, started days ago, time to detect in minutes)
    let table: [(&str, &[&str], i64, i64); 6] = [
        ("sev2", &["checkout"], 10, 1),
        ("sev2", &["checkout", "payments"], 20, 4),
        ("sev3", &["checkout"], 30, 2),
        ("sev3", &["payments"], 40, 8),
        ("sev1", &["checkout"], 50, 16),
        // Outside a 90-day period.
        ("sev1", &["checkout"], 100, 60),
    ];
    let mut ids = Vec::new();
    for (n, (sev, services, ago, ttd)) in table.iter().enumerate() {
        let started = now - ago * day;
        let request = open(&format!("incident {n}"), sev, services, started, started + ttd * 60_000);
        ids.push(client.clone().open_incident(request).await.unwrap().into_inner().id);
    }
    // Two resolved: their time to recover is what the controller recorded.
    let mut ttr = Vec::new();
    for id in &ids[..2] {
        let resolve = ResolveIncidentRequest { id: id.clone(), ..Default::default() };
        ttr.push(client.clone().resolve_incident(resolve).await.unwrap().into_inner().time_to_recover_ms);
    }

    let stats = |service: &str, severity: &str| {
        let request = IncidentStatsRequest {
            since_unix_ms: now - 90 * day,
            until_unix_ms: 0,
            service: service.into(),
            severity: severity.into(),
        };
        let client = client.clone();
        async move { client.clone().incident_stats(request).await.map(tonic::Response::into_inner) }
    };
    let all = stats("", "").await.unwrap();
    let overall = all.overall.unwrap();
    assert_eq!((overall.incidents, overall.open), (5, 3));
    // TTD over the 5 in the period, sorted 1 2 4 8 16 min: mean 6.2 min; p50 rank ceil(2.5) = 3 → 4 min;
    // p90 rank ceil(4.5) = 5 → 16 min.
    let ttd = overall.time_to_detect.unwrap();
    assert_eq!((ttd.count, ttd.mean_ms, ttd.p50_ms, ttd.p90_ms), (5, 372_000.0, 240_000, 960_000));
    let recover = overall.time_to_recover.unwrap();
    assert_eq!(recover.count, 2);
    assert_eq!(recover.mean_ms, (ttr[0] + ttr[1]) as f64 / 2.0);
    assert_eq!((recover.p50_ms, recover.p90_ms), (ttr[0].min(ttr[1]), ttr[0].max(ttr[1])));
    assert_eq!(overall.time_to_acknowledge.unwrap().count, 0);

    // Per service: checkout has 1, 4, 2, 16 min (p50 rank 2 → 2 min, p90 rank 4 → 16 min); payments 4, 8.
    let names: Vec<&str> = all.by_service.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["checkout", "payments"]);
    let checkout = all.by_service[0].time_to_detect.unwrap();
    assert_eq!((all.by_service[0].incidents, checkout.p50_ms, checkout.p90_ms), (4, 120_000, 960_000));
    let payments = all.by_service[1].time_to_detect.unwrap();
    assert_eq!(
        (payments.count, payments.mean_ms, payments.p50_ms, payments.p90_ms),
        (2, 360_000.0, 240_000, 480_000)
    );
    // Per severity: sev1 16; sev2 1, 4; sev3 2, 8.
    let by_sev: Vec<(&str, u32, i64, i64)> = all
        .by_severity
        .iter()
        .map(|g| {
            let f = g.time_to_detect.unwrap();
            (g.name.as_str(), g.incidents, f.p50_ms, f.p90_ms)
        })
        .collect();
    assert_eq!(
        by_sev,
        [("sev1", 1, 960_000, 960_000), ("sev2", 2, 60_000, 240_000), ("sev3", 2, 120_000, 480_000)]
    );

    // Filters narrow the incidents counted.
    let sev3 = stats("", "SEV3").await.unwrap().overall.unwrap();
    assert_eq!(sev3.incidents, 2);
    let payments_only = stats("payments", "").await.unwrap().overall.unwrap();
    assert_eq!(payments_only.incidents, 2);
    let bad = stats("", "sev9").await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // The list filters as the stats do.
    let listed = client
        .clone()
        .list_incidents(ListIncidentsRequest { service: "payments".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let titles: Vec<&str> = listed.incidents.iter().map(|i| i.title.as_str()).collect();
    assert_eq!(titles, ["incident 1", "incident 3"], "newest start first");
    let resolved = client
        .clone()
        .list_incidents(ListIncidentsRequest { status: "resolved".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.incidents.len(), 2);
    controller.stop(Duration::from_secs(10)).await;
}
