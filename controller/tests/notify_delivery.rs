//! Notification delivery against real HTTP receivers on 127.0.0.1:0: each channel kind's payload as the
//! receiver gets it (generic webhook JSON with its HMAC-SHA256 signature verified the documented way, Slack's
//! text and blocks, PagerDuty's trigger and resolve with one dedup key), a retry after a 500 and after a hang
//! (timeout) with every attempt in the delivery log, a refused payload not retried, a hung channel not
//! holding another, a full queue dropping (and logging) instead of waiting, and the test message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod notify_support;

use std::time::Duration;

use chaos_controller::notify::{
    ChannelKind, Event, EventKind, IncidentChange, Notifier, NotifyConfig, Secret,
};
use notify_support::{Behave, Receiver, channel, deliveries, store, verify, wait_state, webhook};

fn run_failed() -> Event {
    Event::RunFailed {
        run_id: "r-42".into(),
        title: "checkout survives <loss> & latency".into(),
        verdict: "failed".into(),
        reasons: vec!["slo checkout/availability: 97.1% < 99.9%".into()],
    }
}

fn incident(change: IncidentChange, status: &str) -> Event {
    Event::Incident {
        change,
        id: "inc-7".into(),
        title: "checkout errors".into(),
        severity: "sev2".into(),
        status: status.into(),
        services: vec!["checkout".into(), "payments".into()],
        commander: Some("ana".into()),
        summary: "opened from run r-42".into(),
    }
}

fn now_s() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
        .unwrap()
}

#[tokio::test]
async fn a_webhook_is_json_signed_over_timestamp_and_body_and_a_tampered_body_fails_verification() {
    let receiver = Receiver::start(&[], Behave::Status(204)).await;
    let (_dir, store) = store();
    let config = NotifyConfig {
        channels: vec![channel("hook", webhook(receiver.url("/hooks/chaos"), Some("s3cret")))],
        seed: Some(1),
    };
    let notifier = Notifier::start(config, store.clone());
    notifier.emit(run_failed());

    let got = receiver.wait_for(1).await;
    let request = &got[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/hooks/chaos"));
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("x-chaos-event"), "run_failed");
    let timestamp = request.header("x-chaos-timestamp");
    let signed_at: i64 = timestamp.parse().unwrap();
    assert!((signed_at - now_s()).abs() <= 60, "timestamp {signed_at} is not now");
    let signature = request.header("x-chaos-signature");
    assert!(
        verify(b"s3cret", timestamp, &request.body, signature),
        "the signature does not verify: {signature}"
    );
    // A changed byte, another timestamp (a replay re-dated) or another key: refused.
    let mut tampered = request.body.to_vec();
    let at = tampered.iter().position(|&b| b == b'4').unwrap();
    tampered[at] = b'5';
    assert!(!verify(b"s3cret", timestamp, &tampered, signature));
    assert!(!verify(b"s3cret", &(signed_at + 1).to_string(), &request.body, signature));
    assert!(!verify(b"other", timestamp, &request.body, signature));

    let body = request.json();
    assert_eq!(body["kind"], "run_failed");
    assert_eq!(body["severity"], "error");
    assert!(body["id"].as_str().unwrap().starts_with("n-"));
    assert_eq!(request.header("x-chaos-delivery"), format!("{}/hook", body["id"].as_str().unwrap()));
    assert!(body["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["summary"],
        "run r-42 failed: checkout survives <loss> & latency: slo checkout/availability: 97.1% < 99.9%"
    );
    assert_eq!(body["details"]["event"], "run_failed");
    assert_eq!(body["details"]["run_id"], "r-42");
    assert_eq!(body["details"]["reasons"][0], "slo checkout/availability: 97.1% < 99.9%");

    let delivered = wait_state(&store, "hook", "delivered").await;
    assert_eq!(delivered.attempts.len(), 1);
    assert_eq!(delivered.attempts[0].status, Some(204));
    assert_eq!(delivered.delivery.payload.as_bytes(), &request.body[..], "the log keeps the body as sent");
}

#[tokio::test]
async fn an_unsigned_webhook_has_a_timestamp_but_no_signature() {
    let receiver = Receiver::start(&[], Behave::Status(200)).await;
    let (_dir, store) = store();
    let config =
        NotifyConfig { channels: vec![channel("plain", webhook(receiver.url("/"), None))], seed: Some(1) };
    Notifier::start(config, store.clone()).emit(run_failed());
    let request = &receiver.wait_for(1).await[0];
    assert_eq!(request.header("x-chaos-signature"), "");
    assert!(!request.header("x-chaos-timestamp").is_empty());
}

#[tokio::test]
async fn slack_gets_text_and_blocks_with_people_text_escaped() {
    let receiver = Receiver::start(&[], Behave::Status(200)).await;
    let (_dir, store) = store();
    let slack = ChannelKind::Slack { url: Secret::new(receiver.url("/services/T000/B000/XXXX")) };
    let config = NotifyConfig { channels: vec![channel("slack", slack)], seed: Some(1) };
    let notifier = Notifier::start(config, store.clone());
    notifier.emit(run_failed());
    let body = receiver.wait_for(1).await[0].json();
    assert_eq!(
        body["text"],
        "run r-42 failed: checkout survives &lt;loss&gt; &amp; latency: slo checkout/availability: 97.1% &lt; 99.9%"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(
        blocks.iter().map(|b| b["type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["header", "section", "context"]
    );
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[0]["text"]["text"], "Chaos run failed: checkout survives <loss> & latency");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    let section = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(
        section.starts_with("*Run* r-42 ended *failed*: checkout survives &lt;loss&gt; &amp; latency\n"),
        "{section}"
    );
    assert!(section.contains("• slo checkout/availability: 97.1% &lt; 99.9%"), "{section}");
    assert!(blocks[2]["elements"][0]["text"].as_str().unwrap().starts_with("chaos · run_failed · n-"));
    let request = &receiver.requests()[0];
    assert_eq!(request.header("x-chaos-signature"), "", "Slack deliveries are not signed");
}

#[tokio::test]
async fn pagerduty_triggers_acknowledges_and_resolves_an_incident_with_one_dedup_key() {
    let receiver = Receiver::start(&[], Behave::Status(202)).await;
    let (_dir, store) = store();
    let pd = ChannelKind::PagerDuty {
        url: Secret::new(receiver.url("/v2/enqueue")),
        routing_key: Secret::new("R0UTINGKEY0123456789abcdef012345"),
        source: "chaos-controller-test".into(),
        component: None,
    };
    let config = NotifyConfig { channels: vec![channel("pd", pd)], seed: Some(1) };
    let notifier = Notifier::start(config, store.clone());
    notifier.emit(incident(IncidentChange::Opened, "investigating"));
    notifier.emit(incident(IncidentChange::Updated, "identified"));
    notifier.emit(incident(IncidentChange::Resolved, "resolved"));
    notifier.emit(run_failed());

    let got = receiver.wait_for(4).await;
    let bodies: Vec<serde_json::Value> = got.iter().map(|r| r.json()).collect();
    assert!(got.iter().all(|r| r.path == "/v2/enqueue"));
    let actions: Vec<&str> = bodies.iter().map(|b| b["event_action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["trigger", "acknowledge", "resolve", "trigger"], "in order on one channel");
    for b in &bodies {
        assert_eq!(b["routing_key"], "R0UTINGKEY0123456789abcdef012345");
    }
    assert_eq!(bodies[0]["dedup_key"], "chaos-incident-inc-7");
    assert_eq!(bodies[1]["dedup_key"], bodies[0]["dedup_key"]);
    assert_eq!(bodies[2]["dedup_key"], bodies[0]["dedup_key"]);
    assert_eq!(bodies[3]["dedup_key"], "chaos-run-r-42");

    let trigger = &bodies[0];
    assert_eq!(trigger["client"], "chaos");
    let payload = &trigger["payload"];
    assert_eq!(
        payload["summary"],
        "[SEV2] incident inc-7 opened (investigating): checkout errors: opened from run r-42"
    );
    assert_eq!(payload["severity"], "error", "sev2 is error");
    assert_eq!(payload["source"], "chaos-controller-test");
    assert_eq!(payload["component"], "checkout");
    assert_eq!(payload["class"], "incident_opened");
    assert!(payload["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(payload["custom_details"]["services"], serde_json::json!(["checkout", "payments"]));
    assert_eq!(payload["custom_details"]["commander"], "ana");
    // Acknowledge and resolve carry only what PagerDuty reads for them.
    let keys = |b: &serde_json::Value| b.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&bodies[2]), ["routing_key", "event_action", "dedup_key"]);
    assert_eq!(bodies[3]["payload"]["severity"], "error");

    // The routing key is a secret: the log keeps the payloads without it.
    wait_state(&store, "pd", "delivered").await;
    let logged = deliveries(&store).await;
    assert_eq!(logged.len(), 4);
    for d in &logged {
        assert!(!d.delivery.payload.contains("R0UTINGKEY"), "{}", d.delivery.payload);
        assert!(d.delivery.payload.contains("<redacted>"));
    }
}

#[tokio::test]
async fn a_500_and_a_hang_are_retried_with_the_same_delivery_id_and_the_log_shows_every_attempt() {
    let receiver = Receiver::start(&[Behave::Status(500), Behave::Hang], Behave::Status(200)).await;
    let (_dir, store) = store();
    let mut hook = channel("hook", webhook(receiver.url("/"), Some("k")));
    hook.timeout = Duration::from_millis(400);
    let config = NotifyConfig { channels: vec![hook], seed: Some(9) };
    let notifier = Notifier::start(config, store.clone());
    notifier.emit(Event::HaltAll { actor: "ci".into(), reason: "game over".into(), runs_halted: 2 });

    let got = receiver.wait_for(3).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("x-chaos-delivery")).collect();
    assert!(ids[0] == ids[1] && ids[1] == ids[2], "one delivery, three attempts: {ids:?}");
    assert!(got.iter().all(|r| r.body == got[0].body), "every attempt sends the same body");
    for r in &got {
        assert!(verify(b"k", r.header("x-chaos-timestamp"), &r.body, r.header("x-chaos-signature")));
    }

    let d = wait_state(&store, "hook", "delivered").await;
    assert_eq!(d.delivery.event, "halt_all");
    let attempts: Vec<(u32, Option<u16>, Option<&str>)> =
        d.attempts.iter().map(|a| (a.attempt, a.status, a.error.as_deref())).collect();
    assert_eq!(
        attempts,
        [
            (1, Some(500), Some("HTTP 500: {\"status\":\"answer 500\"}")),
            (2, None, Some("no answer within 400 ms")),
            (3, Some(200), None),
        ]
    );
    assert!(d.attempts[1].elapsed_ms >= 400, "the hung attempt ended at its timeout: {:?}", d.attempts[1]);
    assert!(d.attempts.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(d.delivered_ms.is_some());
}

#[tokio::test]
async fn a_refused_payload_is_not_retried_and_retries_end_failed() {
    let refusing = Receiver::start(&[], Behave::Status(400)).await;
    let failing = Receiver::start(&[], Behave::Status(503)).await;
    let (_dir, store) = store();
    let mut failing_channel = channel("down", webhook(failing.url("/"), None));
    failing_channel.retries = 2;
    let config = NotifyConfig {
        channels: vec![channel("refuses", webhook(refusing.url("/"), None)), failing_channel],
        seed: Some(3),
    };
    let notifier = Notifier::start(config, store.clone());
    notifier.emit(run_failed());
    let refused = wait_state(&store, "refuses", "failed").await;
    assert_eq!(refused.attempts.len(), 1, "a 400 is not retried");
    assert_eq!(refused.last_status, Some(400));
    let down = wait_state(&store, "down", "failed").await;
    assert_eq!(down.attempts.iter().map(|a| a.status).collect::<Vec<_>>(), [Some(503); 3], "1 + 2 retries");
    assert_eq!(failing.requests().len(), 3);
    assert_eq!(refusing.requests().len(), 1);
}

#[tokio::test]
async fn a_hung_receiver_holds_only_its_own_channel() {
    let hung = Receiver::start(&[], Behave::Hang).await;
    let fine = Receiver::start(&[], Behave::Status(200)).await;
    let (_dir, store) = store();
    let mut stuck = channel("stuck", webhook(hung.url("/"), None));
    stuck.timeout = Duration::from_secs(60);
    let config =
        NotifyConfig { channels: vec![stuck, channel("fine", webhook(fine.url("/"), None))], seed: Some(1) };
    let notifier = Notifier::start(config, store.clone());
    notifier.emit(run_failed());
    notifier.emit(Event::Freeze { actor: "ci".into(), reason: "release".into(), frozen: true });
    // Both reach the healthy channel, in order, while the hung one is still on its first attempt.
    let got = fine.wait_for(2).await;
    assert_eq!(got.iter().map(|r| r.header("x-chaos-event")).collect::<Vec<_>>(), ["run_failed", "freeze"]);
    hung.wait_for(1).await;
    let fine_done = wait_state(&store, "fine", "delivered").await;
    assert_eq!(fine_done.delivery.event, "freeze");
    let stuck_now: Vec<_> =
        deliveries(&store).await.into_iter().filter(|d| d.delivery.channel == "stuck").collect();
    assert_eq!(stuck_now.len(), 1, "the second event waits behind the first on the hung channel");
    assert_eq!((stuck_now[0].state.as_str(), stuck_now[0].attempts.len()), ("pending", 0));
}

#[tokio::test]
async fn emit_never_waits_a_full_queue_drops_and_the_drop_is_logged() {
    let hung = Receiver::start(&[], Behave::Hang).await;
    let (_dir, store) = store();
    let mut stuck = channel("stuck", webhook(hung.url("/"), None));
    stuck.timeout = Duration::from_secs(60);
    stuck.events = [EventKind::RunFailed].into_iter().collect();
    let notifier = Notifier::start(NotifyConfig { channels: vec![stuck], seed: Some(1) }, store.clone());
    let total = chaos_controller::notify::deliver::CHANNEL_QUEUE + 40;
    for _ in 0..total {
        notifier.emit(run_failed());
    }
    // Events the channel does not take are not queued at all.
    notifier.emit(Event::HaltAll { actor: "ci".into(), reason: "x".into(), runs_halted: 0 });
    hung.wait_for(1).await;
    // At most one job is in flight and CHANNEL_QUEUE wait: at least 39 were dropped, each recorded.
    let dropped =
        chaos_test_support::wait::wait_for("the drops to be logged", notify_support::WAIT, || async {
            let all = deliveries(&store).await;
            let dropped: Vec<_> = all.into_iter().filter(|d| d.state == "dropped").collect();
            (dropped.len() >= 39).then_some(dropped)
        })
        .await;
    assert!(dropped.len() <= 40, "{} dropped", dropped.len());
    assert!(
        dropped
            .iter()
            .all(|d| d.attempts.is_empty() && d.last_error.as_deref() == Some("the channel's queue is full"))
    );
    assert!(deliveries(&store).await.iter().all(|d| d.delivery.event == "run_failed"));
}

#[tokio::test]
async fn a_test_message_makes_one_attempt_per_channel_and_reports_each() {
    let ok = Receiver::start(&[], Behave::Status(200)).await;
    let broken = Receiver::start(&[], Behave::Status(500)).await;
    let (_dir, store) = store();
    let config = NotifyConfig {
        channels: vec![
            channel("ok", webhook(ok.url("/"), Some("k"))),
            channel("broken", webhook(broken.url("/"), None)),
        ],
        seed: Some(1),
    };
    let notifier = Notifier::start(config, store.clone());
    let results = notifier.test(None, "ci", "hello on-call").await.unwrap();
    let summary: Vec<(&str, bool, u32, Option<u16>)> =
        results.iter().map(|r| (r.channel.as_str(), r.delivered, r.attempts, r.status)).collect();
    assert_eq!(summary, [("ok", true, 1, Some(200)), ("broken", false, 1, Some(500))]);
    let body = ok.requests()[0].json();
    assert_eq!(
        (body["kind"].as_str(), body["details"]["text"].as_str()),
        (Some("test"), Some("hello on-call"))
    );
    assert_eq!(broken.requests().len(), 1, "a test is one attempt");

    let only = notifier.test(Some("ok"), "ci", "again").await.unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(ok.requests().len(), 2);
    assert_eq!(
        notifier.test(Some("nope"), "ci", "x").await.unwrap_err(),
        "no notification channel named \"nope\""
    );
    assert!(Notifier::disabled().test(None, "ci", "x").await.is_err());
    let logged = deliveries(&store).await;
    assert_eq!(logged.iter().filter(|d| d.delivery.event == "test").count(), 3);
}
