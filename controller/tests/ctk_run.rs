//! The Chaos Toolkit runner against a real local HTTP service and real processes: every row of the
//! reference's §12 table (status, deviation, rollbacks, exit code), the hypothesis and rollback strategies,
//! dry modes, background activities, pauses, refs, failing activities, interruption and the journal's shape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ctk_support;

use std::time::Duration;

use chaos_controller::ctk::config::Overrides;
use chaos_controller::ctk::run::{Dry, HypothesisStrategy, Options};
use ctk_support::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn heal(service: &Service) -> Value {
    http_action("heal", &format!("{}/heal", service.url()))
}

fn rollback_marker(dir: &TempDir) -> (std::path::PathBuf, Value) {
    let file = dir.path().join("rolled-back");
    (file.clone(), touch("mark-rollback", &file))
}

#[tokio::test]
async fn all_met_completes_with_rollbacks_and_the_journal_shape() {
    let dir = TempDir::new("ctk-ok");
    let service = Service::start(dir.path()).await;
    let (marker, rollback) = rollback_marker(&dir);
    let mut exp = experiment(&service, vec![], vec![rollback]);
    exp["configuration"] = json!({"base": service.url(), "what": "the service"});
    exp["title"] = json!("${what} holds");
    exp["method"] = json!([
        {"type": "action", "name": "say", "provider": {"type": "process", "path": "echo", "arguments": ["${what}"]}},
        {"ref": "health"}
    ]);
    exp["steady-state-hypothesis"]["probes"][0]["provider"]["url"] = json!("${base}/health");
    let ran = run_default(&exp).await;
    assert_eq!(ran.exit(), 0);
    let j = &ran.json;
    assert_eq!(j["status"], "completed");
    assert_eq!(j["deviated"], false);
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "chaoslib-version",
            "chaos-version",
            "platform",
            "node",
            "experiment",
            "start",
            "status",
            "deviated",
            "steady_states",
            "run",
            "rollbacks",
            "end",
            "duration"
        ]
    );
    assert_eq!(j["chaoslib-version"], "1.44.0");
    assert!(j["duration"].is_f64());
    // ISO 8601 UTC with microseconds (Python drops them only when they are exactly zero).
    let start = j["start"].as_str().unwrap();
    assert!(start.ends_with("+00:00") && (start.len() == 32 || start.len() == 25), "{start}");
    // The experiment as loaded: title substituted, dry null, refs and `${}` kept.
    assert_eq!(j["experiment"]["title"], "the service holds");
    assert_eq!(j["experiment"]["dry"], Value::Null);
    assert_eq!(j["experiment"]["method"][1], json!({"ref": "health"}));
    // The run: the ref resolved, activities unsubstituted, outputs as providers give them.
    assert_eq!(ran.run_names(), ["say", "health"]);
    let say = &j["run"][0];
    assert_eq!(say["activity"]["provider"]["arguments"], json!(["${what}"]));
    assert_eq!(say["output"], json!({"status": 0, "stdout": "the service\n", "stderr": ""}));
    assert_eq!(say["status"], "succeeded");
    let record_keys: Vec<&str> = say.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(record_keys, ["activity", "output", "start", "status", "end", "duration"]);
    let health = &j["run"][1];
    assert_eq!(health["activity"]["provider"]["url"], "${base}/health");
    assert_eq!(health["output"]["status"], 200);
    assert_eq!(health["output"]["body"], "ok\n");
    assert_eq!(health["output"]["headers"]["Content-Type"], "text/plain");
    assert!(health.get("tolerance_met").is_none(), "method probes have no tolerance_met");
    for when in ["before", "after"] {
        let state = &j["steady_states"][when];
        assert_eq!(state["steady_state_met"], true, "{when}");
        assert_eq!(state["probes"][0]["tolerance_met"], true);
    }
    assert_eq!(j["steady_states"]["during"], json!([]));
    assert_eq!(ran.rollback_names(), ["mark-rollback"]);
    assert!(marker.exists());
}

#[tokio::test]
async fn before_miss_skips_the_method_completes_and_plays_rollbacks() {
    let dir = TempDir::new("ctk-before-miss");
    let service = Service::start(dir.path()).await;
    service.set(BAD);
    let (marker, rollback) = rollback_marker(&dir);
    let exp = experiment(&service, vec![heal(&service)], vec![rollback]);
    let ran = run_default(&exp).await;
    assert_eq!(
        (ran.json["status"].as_str(), ran.json["deviated"].as_bool(), ran.exit()),
        (Some("completed"), Some(false), 0)
    );
    assert_eq!(ran.json["steady_states"]["before"]["steady_state_met"], false);
    assert_eq!(ran.json["steady_states"]["before"]["probes"][0]["tolerance_met"], false);
    assert_eq!(ran.json["run"], json!([]), "the method is skipped");
    assert_eq!(ran.json["steady_states"]["after"], Value::Null);
    assert!(marker.exists(), "rollbacks are played");
}

#[tokio::test]
async fn before_error_fails_without_rollbacks() {
    let dir = TempDir::new("ctk-before-error");
    let service = Service::start(dir.path()).await;
    service.set(DEAD);
    let (marker, rollback) = rollback_marker(&dir);
    let exp = experiment(&service, vec![heal(&service)], vec![rollback]);
    let ran = run_default(&exp).await;
    assert_eq!(
        (ran.json["status"].as_str(), ran.json["deviated"].as_bool(), ran.exit()),
        (Some("failed"), Some(false), 1)
    );
    let probe = &ran.json["steady_states"]["before"]["probes"][0];
    assert_eq!(probe["status"], "failed");
    assert_eq!(probe["output"], Value::Null);
    assert_eq!(probe["tolerance_met"], false);
    let exception = probe["exception"][0].as_str().unwrap();
    assert!(exception.starts_with("chaoslib.exceptions.ActivityFailed: failed to connect to"), "{exception}");
    assert_eq!(ran.json["run"], json!([]));
    assert_eq!(ran.json["rollbacks"], json!([]));
    assert!(!marker.exists());
}

#[tokio::test]
async fn after_miss_deviates_and_plays_rollbacks() {
    let dir = TempDir::new("ctk-after-miss");
    let service = Service::start(dir.path()).await;
    let exp = experiment(
        &service,
        vec![http_action("break", &format!("{}/break", service.url()))],
        vec![heal(&service)],
    );
    let ran = run_default(&exp).await;
    assert_eq!(
        (ran.json["status"].as_str(), ran.json["deviated"].as_bool(), ran.exit()),
        (Some("completed"), Some(true), 1)
    );
    assert_eq!(ran.json["steady_states"]["after"]["steady_state_met"], false);
    assert_eq!(ran.rollback_names(), ["heal"]);
    assert_eq!(service.state.load(std::sync::atomic::Ordering::SeqCst), OK);
}

#[tokio::test]
async fn after_error_fails_deviated_and_leaves_the_fault() {
    let dir = TempDir::new("ctk-after-error");
    let service = Service::start(dir.path()).await;
    let exp = experiment(
        &service,
        vec![http_action("kill", &format!("{}/kill", service.url()))],
        vec![heal(&service)],
    );
    let ran = run_default(&exp).await;
    assert_eq!(
        (ran.json["status"].as_str(), ran.json["deviated"].as_bool(), ran.exit()),
        (Some("failed"), Some(true), 1)
    );
    assert_eq!(ran.json["rollbacks"], json!([]), "not played: the fault stays");
    assert_eq!(service.state.load(std::sync::atomic::Ordering::SeqCst), DEAD);
}

#[tokio::test]
async fn a_failing_method_activity_and_a_method_probe_miss_do_not_fail_the_run() {
    let dir = TempDir::new("ctk-method-fail");
    let service = Service::start(dir.path()).await;
    let refused = format!("http://127.0.0.1:{}/x", chaos_test_support::free_port());
    let exp = experiment(
        &service,
        vec![
            json!({"type": "action", "name": "unreachable", "provider": {"type": "http", "url": refused, "timeout": 2}}),
            json!({"type": "action", "name": "too-slow", "provider": {"type": "process", "path": "sleep", "arguments": ["10"], "timeout": 0.2}}),
            json!({"type": "action", "name": "exit-3", "provider": {"type": "process", "path": "sh", "arguments": "-c 'echo out; echo err >&2; exit 3'"}}),
            http_probe("teapot", &format!("{}/status/418", service.url()), json!(200)),
        ],
        vec![],
    );
    let ran = run_default(&exp).await;
    assert_eq!(
        (ran.json["status"].as_str(), ran.json["deviated"].as_bool(), ran.exit()),
        (Some("completed"), Some(false), 0)
    );
    let run = ran.json["run"].as_array().unwrap();
    assert_eq!(run.len(), 4, "every activity ran");
    assert_eq!(run[0]["status"], "failed");
    assert_eq!(run[1]["status"], "failed");
    assert_eq!(
        run[1]["exception"],
        json!(["chaoslib.exceptions.ActivityFailed: process activity took too long\n"])
    );
    assert_eq!(run[2]["status"], "succeeded", "a non-zero exit is an output");
    assert_eq!(run[2]["output"], json!({"status": 3, "stdout": "out\n", "stderr": "err\n"}));
    assert_eq!(run[3]["status"], "succeeded", "a 4xx answer is an output");
    assert_eq!(run[3]["output"]["status"], 418);
}

/// A method that breaks the service until a during-method hypothesis has seen it broken, then heals it.
fn break_until_seen(service: &Service) -> Vec<Value> {
    vec![
        http_action("break", &format!("{}/break", service.url())),
        wait_for_file("until-seen", &service.marker),
        heal(service),
    ]
}

#[tokio::test]
async fn continuous_misses_without_fail_fast_do_not_deviate() {
    let dir = TempDir::new("ctk-continuous");
    let service = Service::start(dir.path()).await;
    let (marker, rollback) = rollback_marker(&dir);
    let exp = experiment(&service, break_until_seen(&service), vec![rollback]);
    let options = Options {
        hypothesis_strategy: Some(HypothesisStrategy::Continuously),
        hypothesis_frequency: Some(0.01),
        ..Options::default()
    };
    let ran = run_with(&exp, options, Overrides::default()).await;
    assert_eq!(
        (ran.json["status"].as_str(), ran.json["deviated"].as_bool(), ran.exit()),
        (Some("completed"), Some(false), 0)
    );
    let during = ran.json["steady_states"]["during"].as_array().unwrap();
    assert!(during.iter().any(|s| s["steady_state_met"] == false), "{during:?}");
    assert_eq!(ran.run_names(), ["break", "until-seen", "heal"]);
    assert_eq!(ran.json["steady_states"]["before"]["steady_state_met"], true);
    assert_eq!(ran.json["steady_states"]["after"]["steady_state_met"], true);
    assert!(marker.exists());
}

#[tokio::test]
async fn continuous_miss_with_fail_fast_deviates_and_plays_rollbacks() {
    let dir = TempDir::new("ctk-fail-fast");
    let service = Service::start(dir.path()).await;
    let mut method = break_until_seen(&service);
    // Never reached: fail-fast stops the method after its current activity.
    method.push(json!({"type": "action", "name": "long", "provider": {"type": "process", "path": "sleep", "arguments": ["0"]}, "pauses": {"before": 30}}));
    let (marker, rollback) = rollback_marker(&dir);
    let exp = experiment(&service, method, vec![rollback, heal(&service)]);
    let options = Options {
        hypothesis_strategy: Some(HypothesisStrategy::Continuously),
        hypothesis_frequency: Some(0.01),
        fail_fast: true,
        ..Options::default()
    };
    let ran = tokio::time::timeout(Duration::from_secs(25), run_with(&exp, options, Overrides::default()))
        .await
        .expect("fail-fast stops the method before its 30 s pause");
    assert_eq!(
        (ran.json["status"].as_str(), ran.json["deviated"].as_bool(), ran.exit()),
        (Some("completed"), Some(true), 1)
    );
    let during = ran.json["steady_states"]["during"].as_array().unwrap();
    assert_eq!(during.last().unwrap()["steady_state_met"], false, "the loop ended at its first miss");
    assert!(!ran.run_names().contains(&"long".to_string()), "{:?}", ran.run_names());
    assert!(marker.exists(), "rollbacks played");
}

#[tokio::test]
async fn hypothesis_strategies_pick_before_during_after() {
    let dir = TempDir::new("ctk-strategies");
    let service = Service::start(dir.path()).await;
    let exp = experiment(&service, vec![touch("step", &dir.path().join("step"))], vec![]);
    for (strategy, before, during, after) in [
        (HypothesisStrategy::Default, true, false, true),
        (HypothesisStrategy::BeforeMethodOnly, true, false, false),
        (HypothesisStrategy::AfterMethodOnly, false, false, true),
        (HypothesisStrategy::DuringMethodOnly, false, true, false),
        (HypothesisStrategy::Continuously, true, true, true),
    ] {
        let options = Options {
            hypothesis_strategy: Some(strategy),
            hypothesis_frequency: Some(0.0),
            ..Options::default()
        };
        let ran = run_with(&exp, options, Overrides::default()).await;
        let states = &ran.json["steady_states"];
        assert_eq!(!states["before"].is_null(), before, "{strategy:?}");
        assert_eq!(!states["after"].is_null(), after, "{strategy:?}");
        assert_eq!(!states["during"].as_array().unwrap().is_empty(), during, "{strategy:?}");
        assert_eq!(ran.exit(), 0, "{strategy:?}");
    }
    assert_eq!(HypothesisStrategy::parse("continously"), Some(HypothesisStrategy::Continuously));
    // The experiment's runtime block applies when the command line says nothing.
    let mut from_file = exp.clone();
    from_file["runtime"] =
        json!({"hypothesis": {"strategy": "after-method-only"}, "rollbacks": {"strategy": "never"}});
    let ran = run_default(&from_file).await;
    assert!(ran.json["steady_states"]["before"].is_null());
    assert!(!ran.json["steady_states"]["after"].is_null());
}

#[tokio::test]
async fn rollback_strategies_follow_status_and_deviation() {
    let dir = TempDir::new("ctk-rollbacks");
    let service = Service::start(dir.path()).await;
    let marker = dir.path().join("rb");
    let rb = touch("rb", &marker);
    // (scenario, strategy) → played?
    let completed = experiment(&service, vec![], vec![rb.clone()]);
    let deviated = experiment(
        &service,
        vec![http_action("break", &format!("{}/break", service.url()))],
        vec![rb.clone(), heal(&service)],
    );
    let failed = experiment(
        &service,
        vec![http_action("kill", &format!("{}/kill", service.url()))],
        vec![rb.clone(), heal(&service)],
    );
    for (name, exp, strategy, played) in [
        ("completed", &completed, "default", true),
        ("completed", &completed, "always", true),
        ("completed", &completed, "never", false),
        ("completed", &completed, "deviated", false),
        ("completed", &completed, "bogus", false),
        ("deviated", &deviated, "default", true),
        ("deviated", &deviated, "deviated", true),
        ("deviated", &deviated, "never", false),
        ("failed", &failed, "default", false),
        ("failed", &failed, "always", true),
        ("failed", &failed, "deviated", true),
    ] {
        let _ = std::fs::remove_file(&marker);
        service.set(OK);
        let options = Options { rollback_strategy: Some(strategy.into()), ..Options::default() };
        let ran = run_with(exp, options, Overrides::default()).await;
        assert_eq!(marker.exists(), played, "{name} with {strategy}");
        assert_eq!(!ran.json["rollbacks"].as_array().unwrap().is_empty(), played, "{name} with {strategy}");
    }
}

#[tokio::test]
async fn dry_modes_skip_what_they_say() {
    let dir = TempDir::new("ctk-dry");
    let service = Service::start(dir.path()).await;
    let made = dir.path().join("made");
    let mut exp = experiment(
        &service,
        vec![touch("make", &made), http_probe("look", &format!("{}/health", service.url()), json!(200))],
        vec![],
    );
    // A 60 s pause on the action: skipped with the dry action (activities, actions) and by `pause`; the
    // test's timeout would catch a wait. With `probes` the action is not dry, so it keeps a short pause.
    let mut probes_only = exp.clone();
    probes_only["method"][0]["pauses"] = json!({"before": 0.01});
    exp["method"][0]["pauses"] = json!({"before": 60});
    service.set(OK);
    for (dry, action_runs, probe_runs) in [
        (Dry::Activities, false, false),
        (Dry::Actions, false, true),
        (Dry::Probes, true, false),
        (Dry::Pause, true, true),
    ] {
        let _ = std::fs::remove_file(&made);
        let requests = service.seen().len();
        let options = Options { dry: Some(dry), ..Options::default() };
        let exp = if dry == Dry::Probes { &probes_only } else { &exp };
        let ran = tokio::time::timeout(Duration::from_secs(30), run_with(exp, options, Overrides::default()))
            .await
            .unwrap_or_else(|_| panic!("{dry:?}: the pause was not skipped"));
        assert_eq!(ran.json["experiment"]["dry"], dry.as_str());
        assert_eq!(made.exists(), action_runs, "{dry:?}");
        let probes_seen = service.seen().len() - requests;
        assert_eq!(probes_seen > 0, probe_runs, "{dry:?}");
        assert_eq!(ran.json["run"][0]["output"].is_null(), !action_runs, "{dry:?}");
        assert_eq!(ran.json["run"][1]["output"].is_null(), !probe_runs, "{dry:?}");
        // Tolerances of dry probes are skipped: the hypothesis passes.
        assert_eq!(ran.json["steady_states"]["before"]["steady_state_met"], true, "{dry:?}");
        assert_eq!(ran.exit(), 0, "{dry:?}");
    }
}

#[tokio::test]
async fn background_activities_are_waited_for_at_the_method_end() {
    let dir = TempDir::new("ctk-background");
    let service = Service::start(dir.path()).await;
    let go = dir.path().join("go");
    let done = dir.path().join("done");
    // The background action waits for a file the next (foreground) action creates: it can only finish
    // because the method goes on without it, and the method waits for it before the after-hypothesis.
    let mut bg = wait_for_file("bg", &go);
    bg["background"] = json!(true);
    let exp = experiment(
        &service,
        vec![
            bg,
            touch("go", &go),
            json!({"type": "action", "name": "after-bg", "provider": {"type": "process", "path": "touch", "arguments": [done.display().to_string()]}}),
        ],
        vec![],
    );
    let ran = run_default(&exp).await;
    assert_eq!(ran.exit(), 0);
    assert_eq!(ran.run_names(), ["bg", "go", "after-bg"], "background records where they started");
    let bg = &ran.json["run"][0];
    assert_eq!(bg["status"], "succeeded");
    assert_eq!(bg["output"]["status"], 0, "the file appeared while it waited");
    let bg_end = bg["end"].as_str().unwrap();
    let after_start = ran.json["steady_states"]["after"]["probes"][0]["start"].as_str().unwrap();
    assert!(bg_end <= after_start, "the after-hypothesis starts once the background activity ended");
}

#[tokio::test]
async fn pauses_take_numbers_and_variables_and_refs_resolve() {
    let dir = TempDir::new("ctk-pauses");
    let service = Service::start(dir.path()).await;
    let mut exp = experiment(
        &service,
        vec![
            json!({"type": "action", "name": "first", "provider": {"type": "process", "path": "true"}, "pauses": {"after": "${gap}"}}),
            json!({"ref": "health"}),
            json!({"type": "action", "name": "third", "provider": {"type": "process", "path": "true"}, "pauses": {"before": 0.1}}),
        ],
        vec![json!({"ref": "first"})],
    );
    exp["configuration"] = json!({"gap": 0.2});
    let ran = run_default(&exp).await;
    assert_eq!(ran.exit(), 0);
    assert_eq!(ran.run_names(), ["first", "health", "third"]);
    assert_eq!(ran.rollback_names(), ["first"]);
    let t = |i: usize, key: &str| {
        chrono::DateTime::parse_from_rfc3339(ran.json["run"][i][key].as_str().unwrap()).unwrap()
    };
    assert!((t(1, "start") - t(0, "end")).num_milliseconds() >= 200, "the after pause of ${{gap}}");
    assert!((t(2, "start") - t(1, "end")).num_milliseconds() >= 100, "the before pause");
    // The record's own duration does not include its pauses.
    assert!(ran.json["run"][0]["duration"].as_f64().unwrap() < 0.2 + 5.0);
}

#[tokio::test]
async fn an_interrupt_cuts_the_running_activity_and_skips_rollbacks_by_default() {
    let dir = TempDir::new("ctk-interrupt");
    let service = Service::start(dir.path()).await;
    let started = dir.path().join("started");
    let (marker, rollback) = rollback_marker(&dir);
    let long = json!({"type": "action", "name": "long", "provider": {"type": "process", "path": "sh", "arguments": ["-c", format!("touch '{}'; sleep 60", started.display())]}});
    let exp = experiment(&service, vec![long, heal(&service)], vec![rollback]);
    for (strategy, played) in [("default", false), ("always", true)] {
        let _ = std::fs::remove_file(&started);
        let _ = std::fs::remove_file(&marker);
        let interrupt = CancellationToken::new();
        let trigger = interrupt.clone();
        let file = started.clone();
        let signal = tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while !file.exists() {
                assert!(tokio::time::Instant::now() < deadline, "the long action did not start within 20 s");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            trigger.cancel();
        });
        let options = Options { rollback_strategy: Some(strategy.into()), ..Options::default() };
        let ran = tokio::time::timeout(
            Duration::from_secs(30),
            run_cancellable(&exp, options, Overrides::default(), interrupt),
        )
        .await
        .expect("the interrupt ends the run");
        signal.await.unwrap();
        assert_eq!(
            (ran.json["status"].as_str(), ran.json["deviated"].as_bool(), ran.exit()),
            (Some("interrupted"), Some(false), 3)
        );
        assert_eq!(ran.run_names(), ["long"], "nothing after the cut activity");
        assert!(ran.json["run"][0].get("status").is_none(), "a cut activity has no status");
        assert!(ran.json["steady_states"]["after"].is_null());
        assert_eq!(marker.exists(), played, "{strategy}");
    }
}
