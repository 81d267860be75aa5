//! Notifications through a real controller (gRPC on 127.0.0.1:0, its own store): `HaltAll` returns within its
//! deadline while a receiver hangs, and the halt, freeze and unfreeze reach a healthy channel in order;
//! `NotifyService` lists channels without their secrets, sends a test message per channel (audited), shows the
//! delivery log with its attempts and filters, and refuses calls without a token; a controller without
//! channels refuses `NotifyTest` with FAILED_PRECONDITION.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;
mod notify_support;

use std::time::Duration;

use chaos_controller::notify::{ChannelKind, EventKind, NotifyConfig, Secret};
use chaos_proto::transport::{ClientConfig, WithToken};
use chaos_proto::v1::notify_service_client::NotifyServiceClient;
use chaos_proto::v1::{
    FreezeRequest, HaltAllRequest, ListChannelsRequest, NotifyLogRequest, NotifyTestRequest, UnfreezeRequest,
};
use fleet_support::{API_TOKEN, RunningController, TempDir, audit_of, config, fleet};
use notify_support::{Behave, Receiver, channel, webhook};
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type NotifyClient = NotifyServiceClient<InterceptedService<Channel, WithToken>>;

async fn notify_client(controller: &RunningController, token: Option<&str>) -> NotifyClient {
    let config = ClientConfig { url: controller.url(), ..ClientConfig::default() };
    let channel = chaos_proto::transport::channel(&config).await.unwrap();
    NotifyServiceClient::with_interceptor(channel, WithToken::new(token).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_all_returns_on_time_while_a_receiver_hangs_and_every_event_reaches_a_healthy_channel() {
    let dir = TempDir::new("notify-halt");
    let hung = Receiver::start(&[], Behave::Hang).await;
    let fine = Receiver::start(&[], Behave::Status(200)).await;
    let mut stuck = channel("stuck", webhook(hung.url("/"), Some("k")));
    stuck.timeout = Duration::from_secs(60);
    let mut cfg = config(dir.path(), fleet(200, 2000));
    cfg.notify =
        NotifyConfig { channels: vec![stuck, channel("fine", webhook(fine.url("/"), None))], seed: Some(5) };
    let controller = RunningController::start(cfg).await;
    let client = controller.client().await;

    let started = Instant::now();
    let halted = client
        .clone()
        .halt_all(HaltAllRequest { reason: "stop the game day".into(), freeze: true, timeout_ms: 1000 })
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    assert!(halted.frozen);
    // No agent is connected: the halt has nothing to wait for. Its own deadline is 1 s; the bound is generous.
    assert!(took < Duration::from_secs(5), "HaltAll took {took:?} while a notification receiver hangs");
    // The hung receiver was sent the freeze (the halt's first step) and holds it: the halt did not wait for it.
    let stuck_request = &hung.wait_for(1).await[0];
    assert_eq!(stuck_request.header("x-chaos-event"), "freeze");

    client.clone().unfreeze(UnfreezeRequest { reason: "done".into() }).await.unwrap();
    client.clone().freeze(FreezeRequest { reason: "release week".into() }).await.unwrap();
    let got = fine.wait_for(4).await;
    let events: Vec<&str> = got.iter().map(|r| r.header("x-chaos-event")).collect();
    assert_eq!(events, ["freeze", "halt_all", "unfreeze", "freeze"]);
    let halt = got[1].json();
    assert_eq!(halt["details"]["actor"], fleet_support::API_NAME);
    assert_eq!(halt["details"]["reason"], "stop the game day");
    assert_eq!(halt["details"]["runs_halted"], 0);
    assert_eq!(got[2].json()["details"]["frozen"], false);
    assert_eq!(hung.requests().len(), 1, "the hung channel is still on its first delivery");
    controller.stop(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_service_lists_tests_and_logs_without_showing_secrets() {
    let dir = TempDir::new("notify-service");
    let ok = Receiver::start(&[], Behave::Status(200)).await;
    let broken = Receiver::start(&[], Behave::Status(500)).await;
    let pd = ChannelKind::PagerDuty {
        url: Secret::new(broken.url("/v2/enqueue")),
        routing_key: Secret::new("PDROUTINGSECRET"),
        source: "ctl".into(),
        component: Some("checkout".into()),
    };
    let mut pager = channel("pager", pd);
    pager.events = [EventKind::IncidentOpened, EventKind::IncidentResolved].into_iter().collect();
    let mut cfg = config(dir.path(), fleet(200, 2000));
    cfg.notify = NotifyConfig {
        channels: vec![
            channel("hook", webhook(ok.url("/secret/path?token=HOOKSECRET"), Some("HMACSECRET"))),
            pager,
        ],
        seed: Some(5),
    };
    let controller = RunningController::start(cfg).await;
    let mut client = notify_client(&controller, Some(API_TOKEN)).await;

    let channels = client.list_channels(ListChannelsRequest {}).await.unwrap().into_inner().channels;
    let listed = format!("{channels:?}");
    for secret in ["HOOKSECRET", "HMACSECRET", "PDROUTINGSECRET", "/secret/path"] {
        assert!(!listed.contains(secret), "{secret} is listed: {listed}");
    }
    assert_eq!(
        channels.iter().map(|c| (c.name.as_str(), c.kind.as_str())).collect::<Vec<_>>(),
        [("hook", "webhook"), ("pager", "pagerduty")]
    );
    assert_eq!(channels[0].target, format!("http://{}", ok.addr));
    assert!(channels[0].signed && !channels[1].signed);
    assert_eq!(channels[1].events, ["incident_opened", "incident_resolved"]);
    assert_eq!((channels[0].timeout_ms, channels[0].retries), (5000, 3));

    let results = client
        .notify_test(NotifyTestRequest { channel: String::new(), text: "is anyone there?".into() })
        .await
        .unwrap()
        .into_inner()
        .results;
    let summary: Vec<(&str, bool, u32, u32)> =
        results.iter().map(|r| (r.channel.as_str(), r.delivered, r.attempts, r.status)).collect();
    assert_eq!(summary, [("hook", true, 1, 200), ("pager", false, 1, 500)]);
    assert!(results[1].error.starts_with("HTTP 500"), "{:?}", results[1]);
    let test_body = ok.requests()[0].json();
    assert_eq!(test_body["details"]["actor"], fleet_support::API_NAME);
    assert_eq!(test_body["details"]["text"], "is anyone there?");
    assert_eq!(broken.requests()[0].json()["event_action"], "trigger");

    let missing = client.notify_test(NotifyTestRequest { channel: "nope".into(), text: String::new() }).await;
    assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);

    let log = client
        .notify_log(NotifyLogRequest { limit: 10, ..NotifyLogRequest::default() })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|d| d.event == "test" && d.notification_id == log[0].notification_id));
    let pager_log = log.iter().find(|d| d.channel == "pager").unwrap();
    assert_eq!((pager_log.state.as_str(), pager_log.attempts.len()), ("failed", 1));
    assert_eq!(pager_log.attempts[0].status, 500);
    assert!(!pager_log.payload.contains("PDROUTINGSECRET") && pager_log.payload.contains("<redacted>"));
    let delivered = client
        .notify_log(NotifyLogRequest { state: "delivered".into(), ..NotifyLogRequest::default() })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(delivered.iter().map(|d| d.channel.as_str()).collect::<Vec<_>>(), ["hook"]);
    assert!(delivered[0].delivered_unix_ms > 0);
    let bad =
        client.notify_log(NotifyLogRequest { state: "lost".into(), ..NotifyLogRequest::default() }).await;
    assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);

    let audited = audit_of(&controller.client().await, "notify_test").await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].actor, fleet_support::API_NAME);
    assert!(audited[0].detail.contains("hook: delivered") && audited[0].detail.contains("pager: failed"));

    let mut anonymous = notify_client(&controller, None).await;
    let refused = anonymous.list_channels(ListChannelsRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = anonymous.notify_test(NotifyTestRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(ok.requests().len(), 1, "an unauthenticated test sends nothing");
    controller.stop(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_without_channels_refuses_a_test_and_lists_none() {
    let dir = TempDir::new("notify-none");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let mut client = notify_client(&controller, Some(API_TOKEN)).await;
    let refused = client.notify_test(NotifyTestRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("--notify FILE"), "{}", refused.message());
    assert!(client.list_channels(ListChannelsRequest {}).await.unwrap().into_inner().channels.is_empty());
    assert!(client.notify_log(NotifyLogRequest::default()).await.unwrap().into_inner().deliveries.is_empty());
    controller.stop(Duration::from_secs(30)).await;
}

/// A run with one steady-state probe of `url` and a one-second wait: inconclusive when the probe fails.
fn probed_run(url: &str) -> String {
    format!(
        "apiVersion: chaos/v1
title: checkout stays up
steady_state:
  - {{ name: health, http: {{ url: \"{url}\", status: 200, timeout: 2s }} }}
baseline: 0s
method:
  - {{ wait: 100ms }}
recovery: 0s
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_does_not_pass_is_notified_and_one_that_passes_is_not() {
    let dir = TempDir::new("notify-runs");
    let hook = Receiver::start(&[], Behave::Status(200)).await;
    let healthy = Receiver::start(&[], Behave::Status(200)).await;
    let sick = Receiver::start(&[], Behave::Status(503)).await;
    let mut runs_only = channel("runs", webhook(hook.url("/"), None));
    runs_only.events = [EventKind::RunFailed, EventKind::GuardrailTripped].into_iter().collect();
    let mut cfg = config(dir.path(), fleet(200, 2000));
    cfg.notify = NotifyConfig { channels: vec![runs_only], seed: Some(5) };
    let controller = RunningController::start(cfg).await;
    let client = controller.client().await;

    let passed =
        fleet_support::start_run(&client, &probed_run(&healthy.url("/health")), 1, false).await.unwrap();
    fleet_support::watch(&client, &passed.id).await;
    assert_eq!(fleet_support::get_run(&client, &passed.id).await.verdict, "passed");
    let failed =
        fleet_support::start_run(&client, &probed_run(&sick.url("/health")), 2, false).await.unwrap();
    fleet_support::watch(&client, &failed.id).await;
    let failed_run = fleet_support::get_run(&client, &failed.id).await;
    assert_eq!(failed_run.verdict, "inconclusive");

    let got = hook.wait_for(1).await;
    let body = got[0].json();
    assert_eq!(body["kind"], "run_failed");
    assert_eq!(body["details"]["run_id"], failed.id.as_str());
    assert_eq!(body["details"]["verdict"], "inconclusive");
    assert_eq!(body["details"]["title"], "checkout stays up");
    assert_eq!(body["details"]["reasons"], serde_json::json!(failed_run.reasons));
    // Only the run that did not pass: its notification came after the passing run had finished.
    assert_eq!(hook.requests().len(), 1);
    controller.stop(Duration::from_secs(30)).await;
}
