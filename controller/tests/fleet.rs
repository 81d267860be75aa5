//! The controller and its fleet end to end, in one process: a real controller (gRPC on 127.0.0.1:0, SQLite in a
//! temp data directory) on a runtime of its own, real agents (`chaos_agent::remote::serve` with a `HostAgent`
//! on a temp state directory) dialling it, and real `sleep` children as the processes they pause. Timing is
//! short (heartbeats of 200 ms, leases of 1 to 2 s) and every wait is a condition polled with a deadline.
//!
//! Pausing a child needs the same uid as the child (the tests start their own children) or root.

// Test helpers outside `#[test]` functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;

use std::collections::HashMap;
use std::time::Duration;

use chaos_agent::policy::AgentPolicy;
use chaos_agent::remote::RemoteError;
use chaos_controller::server::Limits;
use chaos_proto::v1::agent_service_client::AgentServiceClient;
use chaos_proto::v1::{
    AgentMessage, CreateScheduleRequest, DeleteScheduleRequest, FreezeRequest, GetRunRequest, HaltAllRequest,
    HaltRunRequest, Hello, ListAgentsRequest, ListExperimentsRequest, ListRunsRequest, ListSchedulesRequest,
    StartRunRequest, UnfreezeRequest, WatchRunRequest, agent_message, controller_message, start_run_request,
};
use fleet_support::{
    AGENT_TOKEN, API_NAME, Agent, AgentOptions, Client, Relay, RunningController, TempDir, Victim, WAIT,
    WEB1_TOKEN, agents, audit_of, config, fleet, get_run, holds_for, http_ok, runs, start_run, submit,
    wait_connected, wait_for, wait_state, wait_until, watch,
};
use tokio::time::Instant;
use tonic::Code;

// === experiments ===

/// Pauses process `pid` on every agent whose labels match `hosts` (`{ role: web }`) for `duration`.
fn pause(hosts: &str, pid: u32, duration: &str) -> String {
    format!(
        "apiVersion: chaos/v1
title: \"Pause {pid} on {hosts}\"
targets:
  victim: {{ processes: {{ pid: {pid} }}, hosts: {hosts} }}
fire_and_forget: true
baseline: 0s
method:
  - {{ name: pause the victim, fault: pause, target: victim, duration: {duration} }}
recovery: 0s
"
    )
}

/// A light CPU stress on `count` of the agents whose labels match `hosts`, for `duration`.
fn stress(hosts: &str, count: u32, duration: &str) -> String {
    format!(
        "apiVersion: chaos/v1
title: \"Stress {count} of {hosts}\"
targets:
  burnt: {{ hosts: {hosts}, count: {count} }}
fire_and_forget: true
baseline: 0s
method:
  - {{ name: burn, fault: cpu_stress, target: burnt, with: {{ workers: 1, load: 10 }}, duration: {duration} }}
recovery: 0s
"
    )
}

/// No target at all: the method only waits (a run that needs no agent).
fn wait_only(duration: &str) -> String {
    format!(
        "apiVersion: chaos/v1
title: Wait {duration}
fire_and_forget: true
baseline: 0s
method:
  - {{ wait: {duration} }}
recovery: 0s
"
    )
}

/// A policy file's text, read the way `chaos agent serve --policy` reads it.
fn policy(dir: &TempDir, yaml: &str) -> AgentPolicy {
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, yaml).unwrap();
    AgentPolicy::load(&path).unwrap()
}

fn code_and_message<T>(result: Result<T, tonic::Status>) -> (Code, String) {
    match result {
        Ok(_) => panic!("expected an error status, found success"),
        Err(status) => (status.code(), status.message().to_string()),
    }
}

/// Audit entries of `action` for `agent` in run `run`.
async fn audited(client: &Client, action: &str, agent: &str, run: &str) -> Vec<chaos_proto::v1::AuditEntry> {
    audit_of(client, action).await.into_iter().filter(|e| e.agent_id == agent && e.run_id == run).collect()
}

/// Waits until the controller has the agent's acknowledgement of run `run`'s apply (its audit entry), not only
/// the fault's effect on the host: a link cut between the two loses the acknowledgement, and the controller
/// then rightly takes the apply for failed and reverts it (what made the relay tests flaky, see
/// `server::incoming`).
async fn wait_applied(client: &Client, agent: &str, run: &str) {
    wait_for("the controller to have the apply acknowledged", WAIT, || async {
        audited(client, "fault_applied", agent, run).await.into_iter().next()
    })
    .await;
}

// === 1. a remote run end to end ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_pauses_a_process_on_one_agent_and_stresses_another_then_reverts_both() {
    let dir = TempDir::new("remote-run");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    let db = Agent::start(controller.addr, "db-1", &[("role", "db")]).await;
    wait_connected(&client, &["web-1", "db-1"]).await;
    let victim = Victim::spawn();
    let (shop, requests) = http_ok().await;
    let source = format!(
        "apiVersion: chaos/v1
title: A web process pauses while a database host burns CPU
targets:
  web: {{ processes: {{ pid: {pid} }}, hosts: {{ role: web }} }}
  db: {{ hosts: {{ role: db }}, count: 1 }}
load:
  - {{ name: users, http: {{ url: \"http://{shop}/\" }}, rate: 50/s, timeout: 2s }}
slos:
  - {{ name: availability, signal: errors, objective: 90%, source: {{ load: users }} }}
baseline: 0s
method:
  - parallel:
      - {{ name: pause web, fault: pause, target: web, duration: 1s }}
      - {{ name: burn db, fault: cpu_stress, target: db, with: {{ workers: 1, load: 20 }}, duration: 1s }}
recovery: 0s
",
        pid = victim.pid()
    );

    let run = start_run(&client, &source, 11, false).await.unwrap();
    assert_eq!((run.state.as_str(), run.actor.as_str(), run.seed), ("running", API_NAME, 11));
    let watcher = tokio::spawn({
        let (client, id) = (client.clone(), run.id.clone());
        async move { watch(&client, &id).await }
    });
    wait_until("the remote pause to stop the victim", WAIT, || victim.stopped()).await;
    wait_until("the db agent to hold the cpu stress", WAIT, || db.active() == 1).await;
    assert_eq!(web.active(), 1);

    let events = watcher.await.unwrap();
    let last = events.last().unwrap();
    assert_eq!((last.kind.as_str(), last.name.as_str(), last.ok), ("finished", "passed", Some(true)));
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>(), "events in order, none missing");
    assert!(events.iter().all(|e| e.run_id == run.id));
    wait_until("the victim to run again", WAIT, || victim.running()).await;
    assert_eq!((web.active(), db.active()), (0, 0), "nothing left on the agents");
    assert!(requests.load(std::sync::atomic::Ordering::SeqCst) > 10, "the load reached the shop");

    let done = get_run(&client, &run.id).await;
    assert_eq!((done.state.as_str(), done.verdict.as_str(), done.exit_code), ("passed", "passed", 0));
    assert!(done.finished_unix_ms >= done.started_unix_ms);
    let journal: serde_json::Value = serde_json::from_str(&done.journal_json).unwrap();
    assert_eq!(journal["verdict"], "passed", "{}", journal["reasons"]);
    assert_eq!(journal["seed"], 11);
    let timeline = journal["timeline"].as_array().unwrap();
    let count = |kind: &str| timeline.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!((count("fault_injected"), count("fault_reverted")), (2, 2), "{timeline:#?}");
    assert!(done.plan.contains("web-1") && done.plan.contains("db-1"), "{}", done.plan);

    for agent in ["web-1", "db-1"] {
        for action in ["fault_applied", "fault_reverted"] {
            let entries = audited(&client, action, agent, &run.id).await;
            assert_eq!(entries.len(), 1, "{action} on {agent}: {entries:#?}");
            assert_eq!(entries[0].actor, API_NAME);
            assert!(!entries[0].fault_id.is_empty());
        }
    }
    let started = audit_of(&client, "run_started").await;
    assert!(started.iter().any(|e| e.run_id == run.id && e.actor == API_NAME), "{started:#?}");
}

// === 2. dry runs and policy refusals ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_says_what_each_agent_would_hit_and_a_policy_refusal_stops_the_run_before_anything() {
    let dir = TempDir::new("dry-run");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    let mut db_options = AgentOptions::new("db-1", &[("role", "db")]);
    db_options.policy = policy(&dir, "allowed_faults: [process-pause, process-kill]\n");
    let db = Agent::start_with(controller.addr, db_options).await;
    wait_connected(&client, &["web-1", "db-1"]).await;
    let (web_victim, db_victim) = (Victim::spawn(), Victim::spawn());
    let both = format!(
        "apiVersion: chaos/v1
title: Pause one process on each host
targets:
  web: {{ processes: {{ pid: {web} }}, hosts: {{ role: web }} }}
  db: {{ processes: {{ pid: {db} }}, hosts: {{ role: db }} }}
fire_and_forget: true
baseline: 0s
method:
  - {{ name: pause web, fault: pause, target: web, duration: 1s }}
  - {{ name: pause db, fault: pause, target: db, duration: 1s }}
recovery: 0s
",
        web = web_victim.pid(),
        db = db_victim.pid()
    );

    let planned = start_run(&client, &both, 5, true).await.unwrap();
    assert_eq!((planned.state.as_str(), planned.exit_code), ("dry-run", 0));
    for (agent, victim) in [("web-1", &web_victim), ("db-1", &db_victim)] {
        let line = format!("on {agent}: process-pause on pid {} (sleep)", victim.pid());
        assert!(planned.plan.contains(&line), "{line:?} in the plan:\n{}", planned.plan);
    }
    let nothing_applied = || async {
        assert!(web_victim.running() && db_victim.running(), "the victims run");
        assert_eq!((web.active(), db.active()), (0, 0));
        assert!(audit_of(&client, "fault_applied").await.is_empty());
    };
    nothing_applied().await;

    // The web step alone would be accepted; the db agent's policy refuses the stress, so nothing starts.
    let refused = format!(
        "apiVersion: chaos/v1
title: Pause web, then stress the database host
targets:
  web: {{ processes: {{ pid: {web} }}, hosts: {{ role: web }} }}
  db: {{ hosts: {{ role: db }}, count: 1 }}
fire_and_forget: true
baseline: 0s
method:
  - {{ name: pause web, fault: pause, target: web, duration: 1s }}
  - {{ name: burn db, fault: cpu_stress, target: db, with: {{ workers: 1, load: 10 }}, duration: 1s }}
recovery: 0s
",
        web = web_victim.pid()
    );
    for dry_run in [true, false] {
        let (code, message) = code_and_message(start_run(&client, &refused, 5, dry_run).await);
        assert_eq!(code, Code::FailedPrecondition, "dry run {dry_run}: {message}");
        assert!(message.contains("db-1") && message.contains("cpu-stress"), "{message}");
        assert!(message.contains("allowed-faults"), "names the policy rule: {message}");
    }
    nothing_applied().await;
    let stored = runs(&client).await;
    assert_eq!(stored.len(), 1, "only the dry run is stored: {stored:#?}");
    assert_eq!(stored[0].id, planned.id);
}

// === 3. bad input ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_the_file_gets_wrong_is_bad_input_and_one_the_fleet_lacks_now_is_a_precondition() {
    let dir = TempDir::new("unresolved");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let server = chaos_proxy::Server::new(chaos_proxy::ServerConfig { seed: Some(1), metrics: false });
    tokio::spawn(chaos_proxy::serve(listener, server, std::future::pending()));

    // A proxy name the (reachable) API does not have: the file must change, whatever the fleet does.
    let wrong_name = format!(
        "apiVersion: chaos/v1\ntitle: t\nfire_and_forget: true\ntargets:\n  shop: {{ proxy: {{ api: \"{api}\", \
         name: nope }} }}\nmethod:\n  - {{ fault: latency, target: shop, with: {{ latency: 1 }}, duration: 1s }}\n"
    );
    for dry_run in [true, false] {
        let (code, message) = code_and_message(start_run(&client, &wrong_name, 1, dry_run).await);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.contains("cannot resolve targets: target shop: the proxy API"), "{message}");
        assert!(message.contains("has no proxy named \"nope\""), "{message}");
    }
    // No agent with the labels is connected now: the same file may run later.
    let (code, message) =
        code_and_message(start_run(&client, &stress("{ role: web }", 1, "1s"), 1, true).await);
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("target burnt: no connected agent has the labels role=web"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_code_and_nothing_is_stored() {
    let dir = TempDir::new("bad-input");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;

    // A malformed experiment: every problem located at file:line:column.
    let mut malformed = submit(
        "apiVersion: chaos/v1\ntitle: bad\nmethod:\n  - { fault: pause, target: nowhere, duraton: 1s }\n",
    );
    malformed.file = "bad.yaml".into();
    let (code, message) = code_and_message(client.clone().submit_experiment(malformed).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    let located = regex::Regex::new(r"bad\.yaml:\d+:\d+").unwrap();
    assert!(located.is_match(&message), "file:line:column in {message:?}");

    // Wrong and missing API tokens.
    for token in [Some("not-the-api-token-0123456789"), None] {
        let mut stranger = fleet_support::client(controller.addr, token).await;
        let (code, _) = code_and_message(stranger.list_runs(ListRunsRequest::default()).await);
        assert_eq!(code, Code::Unauthenticated, "token {token:?}");
        let start = StartRunRequest {
            experiment: Some(start_run_request::Experiment::Submit(submit(&wait_only("1s")))),
            seed: None,
            dry_run: false,
        };
        let (code, _) = code_and_message(stranger.start_run(start).await);
        assert_eq!(code, Code::Unauthenticated, "token {token:?}");
    }

    // Agents with a wrong token, with none, and with a token scoped to another agent id.
    for (id, token) in [("web-8", Some("not-an-agent-token-0123456789")), ("web-9", None)] {
        let options = AgentOptions { token: token.map(str::to_string), ..AgentOptions::new(id, &[]) };
        let mut agent = Agent::start_with(controller.addr, options).await;
        let result = agent.finished(Duration::from_secs(5)).await.expect("serve gives up at once");
        let err = result.unwrap_err();
        assert!(matches!(err, RemoteError::Refused { code: Code::Unauthenticated, .. }), "{err:?}");
    }
    let options = AgentOptions { token: Some(WEB1_TOKEN.into()), ..AgentOptions::new("db-9", &[]) };
    let mut impostor = Agent::start_with(controller.addr, options).await;
    let err = impostor.finished(Duration::from_secs(5)).await.expect("serve gives up at once").unwrap_err();
    assert!(matches!(err, RemoteError::Refused { code: Code::PermissionDenied, .. }), "{err:?}");
    assert!(err.to_string().contains("db-9"), "{err}");
    // The scoped token does enrol the agent it names.
    let options = AgentOptions { token: Some(WEB1_TOKEN.into()), ..AgentOptions::new("web-1", &[]) };
    let _web = Agent::start_with(controller.addr, options).await;
    wait_connected(&client, &["web-1"]).await;
    let listed: Vec<String> = agents(&client).await.into_iter().map(|a| a.id).collect();
    assert_eq!(listed, ["web-1"], "refused agents are not listed");
    let refusals = audit_of(&client, "agent_refused").await;
    assert!(refusals.len() >= 3, "{refusals:#?}");
    assert!(refusals.iter().any(|e| e.detail.contains("db-9")), "{refusals:#?}");

    // A message above the limit.
    let huge = format!("{}# {}\n", wait_only("1s"), "x".repeat(5 * 1024 * 1024));
    let (code, message) = code_and_message(client.clone().submit_experiment(submit(&huge)).await);
    assert!(matches!(code, Code::OutOfRange | Code::ResourceExhausted), "{code:?}: {message}");
    let start = StartRunRequest {
        experiment: Some(start_run_request::Experiment::Submit(submit(&huge))),
        seed: None,
        dry_run: false,
    };
    let (code, message) = code_and_message(client.clone().start_run(start).await);
    assert!(matches!(code, Code::OutOfRange | Code::ResourceExhausted), "{code:?}: {message}");
    let experiments = client.clone().list_experiments(ListExperimentsRequest {}).await.unwrap();
    assert!(experiments.into_inner().experiments.is_empty(), "nothing stored");
    assert!(runs(&client).await.is_empty());

    // Unknown ids.
    let mut c = client.clone();
    let nope = || "r-0-0000".to_string();
    assert_eq!(c.get_run(GetRunRequest { id: nope() }).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(c.watch_run(WatchRunRequest { id: nope() }).await.unwrap_err().code(), Code::NotFound);
    let halt = HaltRunRequest { id: nope(), reason: String::new() };
    assert_eq!(c.halt_run(halt).await.unwrap_err().code(), Code::NotFound);
    let delete = DeleteScheduleRequest { id: "s-0-0000".into() };
    assert_eq!(c.delete_schedule(delete).await.unwrap_err().code(), Code::NotFound);
    let start = StartRunRequest {
        experiment: Some(start_run_request::Experiment::ExperimentId("e-0-0000".into())),
        seed: None,
        dry_run: false,
    };
    assert_eq!(c.start_run(start).await.unwrap_err().code(), Code::NotFound);
    let schedule = CreateScheduleRequest {
        name: "orphan".into(),
        experiment_id: "e-0-0000".into(),
        cron: "* * * * *".into(),
        ..CreateScheduleRequest::default()
    };
    assert_eq!(c.create_schedule(schedule).await.unwrap_err().code(), Code::NotFound);
}

// === 4. freeze ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_controller_starts_nothing_until_unfrozen_even_across_a_restart() {
    let dir = TempDir::new("freeze");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let short_pause = pause("{ role: web }", victim.pid(), "300ms");

    let frozen = client.clone().freeze(FreezeRequest { reason: "change freeze".into() }).await.unwrap();
    let frozen = frozen.into_inner();
    assert!(frozen.frozen);
    assert_eq!((frozen.by.as_str(), frozen.reason.as_str()), (API_NAME, "change freeze"));
    let (code, message) = code_and_message(start_run(&client, &short_pause, 1, false).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("frozen"), "{message}");
    assert!(runs(&client).await.is_empty(), "no run stored");
    assert!(victim.running() && web.active() == 0);
    assert!(audit_of(&client, "fault_applied").await.is_empty());

    // A schedule firing while frozen is skipped, and says so.
    let tick = client.clone().submit_experiment(submit(&wait_only("100ms"))).await.unwrap().into_inner();
    let schedule = CreateScheduleRequest {
        name: "frozen-tick".into(),
        experiment_id: tick.id.clone(),
        cron: "* * * * * *".into(),
        ..CreateScheduleRequest::default()
    };
    client.clone().create_schedule(schedule).await.unwrap();
    let skipped = wait_for("a skipped firing", WAIT, || async {
        audit_of(&client, "schedule_fired").await.into_iter().find(|e| e.actor == "schedule:frozen-tick")
    })
    .await;
    assert!(skipped.detail.contains("skipped") && skipped.detail.contains("frozen"), "{skipped:?}");
    client.clone().delete_schedule(DeleteScheduleRequest { id: "frozen-tick".into() }).await.unwrap();
    assert!(runs(&client).await.is_empty(), "the schedule started nothing");

    let thawed = client
        .clone()
        .unfreeze(UnfreezeRequest { reason: "maintenance over".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!thawed.frozen);
    let unfrozen = audit_of(&client, "unfreeze").await;
    assert_eq!(unfrozen.last().map(|e| e.detail.as_str()), Some("maintenance over"), "{unfrozen:?}");
    let run = start_run(&client, &short_pause, 1, false).await.unwrap();
    wait_until("the pause to apply once unfrozen", WAIT, || victim.stopped()).await;
    assert_eq!(watch(&client, &run.id).await.last().unwrap().name, "passed");

    // The freeze is kept in the store: a controller restarted on the same data directory is still frozen.
    client.clone().freeze(FreezeRequest { reason: "overnight".into() }).await.unwrap();
    let restart = controller.restart_config();
    controller.kill().await;
    let controller = RunningController::start(restart).await;
    let client = controller.client().await;
    wait_connected(&client, &["web-1"]).await;
    let (code, message) = code_and_message(start_run(&client, &short_pause, 2, false).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("frozen") && message.contains("overnight"), "{message}");
    assert_eq!(runs(&client).await.len(), 1, "only the run before the restart");
    client.clone().unfreeze(UnfreezeRequest::default()).await.unwrap();
    let run = start_run(&client, &short_pause, 2, false).await.unwrap();
    assert_eq!(watch(&client, &run.id).await.last().unwrap().name, "passed");
    assert!(victim.running());
}

// === 5. halt all ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_all_reverts_every_agent_ends_the_runs_halted_and_can_freeze() {
    let dir = TempDir::new("halt-all");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    let _db = Agent::start(controller.addr, "db-1", &[("role", "db")]).await;
    wait_connected(&client, &["web-1", "db-1"]).await;
    let victim = Victim::spawn();
    let run = start_run(&client, &pause("{ role: web }", victim.pid(), "30s"), 3, false).await.unwrap();
    wait_until("the long pause to apply", WAIT, || victim.stopped()).await;

    let request = HaltAllRequest { reason: "pager went off".into(), freeze: true, timeout_ms: 5000 };
    let halted = client.clone().halt_all(request).await.unwrap().into_inner();
    assert_eq!(halted.agents_acknowledged, ["db-1", "web-1"]);
    assert!(halted.agents_missing.is_empty(), "{:?}", halted.agents_missing);
    assert_eq!(halted.runs_halted, [run.id.as_str()]);
    assert!(halted.frozen);
    wait_until("the victim to resume right after the halt", Duration::from_secs(1), || victim.running())
        .await;
    assert_eq!(web.active(), 0);

    let ended = wait_state(&client, &run.id, "halted").await;
    assert_eq!(ended.verdict, "inconclusive", "{ended:#?}");
    let halts = audit_of(&client, "halt_all").await;
    for agent in ["web-1", "db-1"] {
        assert!(halts.iter().any(|e| e.agent_id == agent && e.actor == API_NAME), "{agent}: {halts:#?}");
    }
    let (code, message) = code_and_message(start_run(&client, &wait_only("100ms"), 1, false).await);
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("frozen"), "{message}");
}

// === 6. halt one run ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halting_one_run_reverts_its_fault_and_ends_it_halted() {
    let dir = TempDir::new("halt-run");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let run = start_run(&client, &pause("{ role: web }", victim.pid(), "30s"), 3, false).await.unwrap();
    wait_until("the long pause to apply", WAIT, || victim.stopped()).await;

    let request = HaltRunRequest { id: run.id.clone(), reason: "enough".into() };
    let halted = client.clone().halt_run(request).await.unwrap().into_inner();
    assert_eq!((halted.state.as_str(), halted.verdict.as_str()), ("halted", "inconclusive"), "{halted:#?}");
    assert!(victim.running(), "reverted before HaltRun returned");
    assert_eq!(web.active(), 0);
    assert_eq!(audited(&client, "fault_reverted", "web-1", &run.id).await.len(), 1);
    let halts = audit_of(&client, "halt_run").await;
    assert!(halts.iter().any(|e| e.run_id == run.id && e.actor == API_NAME && e.detail == "enough"));
    let events = watch(&client, &run.id).await;
    assert!(events.iter().any(|e| e.kind == "halt"), "{events:#?}");
    assert_eq!(events.last().unwrap().kind, "finished");
}

// === 7. locks and blast radius ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_never_share_an_agent_and_stay_within_the_blast_radius() {
    let dir = TempDir::new("locks");
    let mut cfg = config(dir.path(), fleet(200, 2000));
    cfg.limits = Limits { max_agents_per_run: Some(1), ..Limits::default() };
    let controller = RunningController::start(cfg).await;
    let client = controller.client().await;
    let _a = Agent::start(controller.addr, "web-1", &[("role", "web"), ("tier", "a")]).await;
    let _b = Agent::start(controller.addr, "web-2", &[("role", "web"), ("tier", "b")]).await;
    wait_connected(&client, &["web-1", "web-2"]).await;
    let victim = Victim::spawn();

    // `count: 1` over two matching agents picks one, the same one for the same seed, either over seeds.
    let chosen = |plan: &str| -> Vec<&'static str> {
        ["web-1", "web-2"].into_iter().filter(|id| plan.contains(&format!("on {id}: "))).collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let first = start_run(&client, &stress("{ role: web }", 1, "1s"), seed, true).await.unwrap();
        let again = start_run(&client, &stress("{ role: web }", 1, "1s"), seed, true).await.unwrap();
        let picked = chosen(&first.plan);
        assert_eq!(picked.len(), 1, "one agent: {}", first.plan);
        assert_eq!(picked, chosen(&again.plan), "seed {seed} picks the same agent");
        seen.insert(picked[0]);
    }
    assert_eq!(seen.len(), 2, "the seed decides which agent: {seen:?}");

    // Two agents selected, one allowed per run.
    let (code, message) =
        code_and_message(start_run(&client, &pause("{ role: web }", victim.pid(), "1s"), 1, false).await);
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("blast radius") && message.contains("web-1, web-2"), "{message}");

    // A run holding web-1; another that would touch it is refused, naming the holder.
    let holder = start_run(&client, &pause("{ tier: a }", victim.pid(), "30s"), 1, false).await.unwrap();
    wait_until("the holder's pause to apply", WAIT, || victim.stopped()).await;
    let (code, message) =
        code_and_message(start_run(&client, &stress("{ tier: a }", 1, "1s"), 1, false).await);
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains(&format!("held by run {}", holder.id)), "{message}");
    // Another agent is free.
    let other = start_run(&client, &stress("{ tier: b }", 1, "300ms"), 1, false).await.unwrap();
    assert_eq!(watch(&client, &other.id).await.last().unwrap().name, "passed");

    let request = HaltRunRequest { id: holder.id.clone(), reason: "done".into() };
    client.clone().halt_run(request).await.unwrap();
    assert!(victim.running());
    let stored = runs(&client).await;
    assert!(stored.iter().all(|r| r.state != "running"), "{stored:#?}");
    assert_eq!(audit_of(&client, "fault_applied").await.len(), 2, "the holder and the tier-b stress only");
}

// === 8. the dead-man's switch ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_controller_leaves_no_fault_past_its_lease_and_its_successor_marks_the_run_interrupted() {
    const LEASE: Duration = Duration::from_secs(1);
    let dir = TempDir::new("dead-man");
    let controller = RunningController::start(config(dir.path(), fleet(200, LEASE.as_millis() as u64))).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();

    let older = start_run(&client, &pause("{ role: web }", victim.pid(), "200ms"), 1, false).await.unwrap();
    assert_eq!(watch(&client, &older.id).await.last().unwrap().name, "passed");
    let long = start_run(&client, &pause("{ role: web }", victim.pid(), "30s"), 2, false).await.unwrap();
    wait_until("the long pause to apply", WAIT, || victim.stopped()).await;
    // Past a few renewals: the fault is held by the lease alone from here.
    holds_for("the pause, renewed past its first lease", LEASE * 3 / 2, || victim.stopped()).await;

    let restart = controller.restart_config();
    let killed_at = Instant::now();
    controller.kill().await;
    wait_until("the agent to revert at its lease", LEASE + Duration::from_secs(2), || victim.running()).await;
    assert!(killed_at.elapsed() < LEASE + Duration::from_secs(2), "{:?}", killed_at.elapsed());
    wait_until("the agent to forget the fault", WAIT, || web.active() == 0).await;

    let controller = RunningController::start(restart).await;
    assert_eq!(controller.interrupted, [long.id.as_str()]);
    let client = controller.client().await;
    let interrupted = get_run(&client, &long.id).await;
    assert_eq!(interrupted.state, "interrupted", "{interrupted:#?}");
    assert!(interrupted.reasons.iter().any(|r| r.contains("interrupted")), "{:?}", interrupted.reasons);
    let listed = runs(&client).await;
    let state_of = |id: &str| listed.iter().find(|r| r.id == id).map(|r| r.state.clone());
    assert_eq!(state_of(&older.id).as_deref(), Some("passed"), "{listed:#?}");
    assert_eq!(state_of(&long.id).as_deref(), Some("interrupted"));
    // The agent comes back to the new controller holding nothing.
    wait_connected(&client, &["web-1"]).await;
    assert!(victim.running());
}

// === 9. reconnects and reconciliation ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_reverts_at_reconnect_what_an_agent_holds_for_a_run_it_does_not_know() {
    // A lease far longer than the test: only the reconcile can revert the fault in time.
    let dir = TempDir::new("reconcile");
    let controller = RunningController::start(config(dir.path(), fleet(200, 30_000))).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let run = start_run(&client, &pause("{ role: web }", victim.pid(), "30s"), 1, false).await.unwrap();
    wait_until("the pause to apply", WAIT, || victim.stopped()).await;

    let restart = controller.restart_config();
    controller.kill().await;
    assert!(victim.stopped() && web.active() == 1, "the lease holds the fault while no controller runs");
    let restarted_at = Instant::now();
    let controller = RunningController::start(restart).await;
    wait_until("the reconcile to revert the pause", Duration::from_secs(5), || victim.running()).await;
    assert!(restarted_at.elapsed() < Duration::from_secs(5));
    wait_until("the agent to forget the fault", WAIT, || web.active() == 0).await;

    let client = controller.client().await;
    let reverted = wait_for("the reconcile in the audit log", WAIT, || async {
        audit_of(&client, "fault_reverted").await.into_iter().find(|e| e.agent_id == "web-1")
    })
    .await;
    assert!(reverted.detail.contains("reconciled"), "{reverted:?}");
    assert!(reverted.fault_id.starts_with(&run.id), "{reverted:?}");
    assert_eq!(get_run(&client, &run.id).await.state, "interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_reconnects_mid_run_keeps_the_fault_the_run_still_wants() {
    const LEASE: Duration = Duration::from_secs(1);
    let dir = TempDir::new("reconnect");
    let controller = RunningController::start(config(dir.path(), fleet(200, LEASE.as_millis() as u64))).await;
    let client = controller.client().await;
    let relay = Relay::start(controller.addr).await;
    let web = Agent::start(relay.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let peer = agents(&client).await[0].peer.clone();
    let victim = Victim::spawn();
    let run = start_run(&client, &pause("{ role: web }", victim.pid(), "4s"), 1, false).await.unwrap();
    wait_applied(&client, "web-1", &run.id).await;
    wait_until("the pause to apply", WAIT, || victim.stopped()).await;

    let cut_at = Instant::now();
    relay.cut();
    wait_for("the agent to reconnect", WAIT, || async {
        agents(&client).await.into_iter().find(|a| a.health == "connected" && a.peer != peer)
    })
    .await;
    // Past the lease the agent got before the cut: only renewals after the reconnect keep the fault.
    let past_lease = (cut_at + LEASE + LEASE / 2).saturating_duration_since(Instant::now());
    holds_for("the pause across the reconnect", past_lease, || victim.stopped()).await;
    assert_eq!(web.active(), 1);

    assert_eq!(watch(&client, &run.id).await.last().unwrap().name, "passed");
    wait_until("the victim to run after the run", WAIT, || victim.running()).await;
    assert!(audit_of(&client, "fault_expired").await.is_empty(), "the lease never lapsed");
    assert_eq!(audited(&client, "fault_reverted", "web-1", &run.id).await.len(), 1);
}

/// Issue 11 item 5: a fault whose lease lapses while its agent is cut off is not reported as reverted, and the
/// run is inconclusive with what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_whose_lease_lapses_while_its_agent_is_cut_off_makes_the_run_inconclusive() {
    const LEASE: Duration = Duration::from_secs(1);
    let dir = TempDir::new("lost-lease");
    let controller = RunningController::start(config(dir.path(), fleet(200, LEASE.as_millis() as u64))).await;
    let client = controller.client().await;
    let relay = Relay::start(controller.addr).await;
    let _web = Agent::start(relay.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let run = start_run(&client, &pause("{ role: web }", victim.pid(), "5s"), 1, false).await.unwrap();
    wait_applied(&client, "web-1", &run.id).await;
    wait_until("the pause to apply", WAIT, || victim.stopped()).await;

    // Down for longer than the lease: the agent reverts the pause by itself.
    relay.cut_for(LEASE * 3);
    wait_until("the agent's lease to resume the victim", LEASE * 3, || victim.running()).await;

    let events = watch(&client, &run.id).await;
    assert_eq!(events.last().unwrap().name, "inconclusive", "{events:#?}");
    let lines: Vec<&str> = events.iter().map(|e| e.line.as_str()).collect();
    let at = |what: &str| {
        lines.iter().position(|l| l.contains(what)).unwrap_or_else(|| panic!("{what}: {lines:#?}"))
    };
    // Said when it happened (the agent's lease lapsed about 1 s after the cut), not only at the step's end.
    assert!(at("fault lost: ") < at("fault reverted: pause the victim"), "{lines:#?}");
    let revert = lines[at("fault reverted: pause the victim")];
    assert!(revert.contains("lost before its planned end") && revert.ends_with("FAILED"), "{lines:#?}");
    assert!(!revert.contains("its lease reverts it"), "{revert}");
    let finished = get_run(&client, &run.id).await;
    assert!(
        finished
            .reasons
            .iter()
            .any(|r| r.starts_with("fault lost before its planned end: ") && r.contains("web-1")),
        "{:?}",
        finished.reasons
    );
    assert_eq!(finished.exit_code, 3);
    assert!(!audit_of(&client, "fault_expired").await.is_empty(), "the audit log has the expiry");
}

/// Issue 11 item 5: an agent that goes away while holding a fault (its daemon stopped) does not leave the run
/// claiming the fault was held and reverted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_whose_agent_goes_away_mid_run_makes_the_run_inconclusive() {
    let dir = TempDir::new("lost-agent");
    let controller = RunningController::start(config(dir.path(), fleet(200, 10_000))).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let run = start_run(&client, &pause("{ role: web }", victim.pid(), "3s"), 1, false).await.unwrap();
    wait_until("the pause to apply", WAIT, || victim.stopped()).await;
    web.stop().await.unwrap();
    assert!(victim.running(), "a stopping agent reverts what it holds");

    let events = watch(&client, &run.id).await;
    assert_eq!(events.last().unwrap().name, "inconclusive", "{events:#?}");
    let finished = get_run(&client, &run.id).await;
    let reason = finished.reasons.iter().find(|r| r.starts_with("fault lost before its planned end: "));
    assert!(reason.is_some_and(|r| r.contains("agent web-1 disconnected")), "{:?}", finished.reasons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_halts_the_runs_reverts_their_faults_and_returns() {
    // A lease far longer than the test: only the controller's own revert can resume the victim in time.
    let dir = TempDir::new("graceful");
    let controller = RunningController::start(config(dir.path(), fleet(200, 30_000))).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let run = start_run(&client, &pause("{ role: web }", victim.pid(), "30s"), 1, false).await.unwrap();
    wait_until("the pause to apply", WAIT, || victim.stopped()).await;

    let restart = controller.restart_config();
    controller.stop(Duration::from_secs(10)).await;
    assert!(victim.running(), "reverted before the controller stopped");
    wait_until("the agent to forget the fault", WAIT, || web.active() == 0).await;

    let controller = RunningController::start(restart).await;
    assert!(controller.interrupted.is_empty(), "{:?}", controller.interrupted);
    let client = controller.client().await;
    let halted = get_run(&client, &run.id).await;
    assert_eq!(halted.state, "halted", "{halted:#?}");
    assert_eq!(audited(&client, "fault_reverted", "web-1", &run.id).await.len(), 1);
}

// === 10. schedules ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_skips_while_its_run_is_going_and_stops_when_deleted() {
    let dir = TempDir::new("schedule");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let experiment =
        client.clone().submit_experiment(submit(&wait_only("2500ms"))).await.unwrap().into_inner();

    let bad = |cron: &str, timezone: &str| CreateScheduleRequest {
        name: "bad".into(),
        experiment_id: experiment.id.clone(),
        cron: cron.into(),
        timezone: timezone.into(),
        ..CreateScheduleRequest::default()
    };
    let (code, message) = code_and_message(client.clone().create_schedule(bad("every second", "")).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("cron"), "{message}");
    let (code, message) =
        code_and_message(client.clone().create_schedule(bad("* * * * *", "Mars/Base")).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("timezone") && message.contains("Mars/Base"), "{message}");

    let request = CreateScheduleRequest {
        name: "tick".into(),
        experiment_id: experiment.id.clone(),
        cron: "*/1 * * * * *".into(),
        ..CreateScheduleRequest::default()
    };
    let schedule = client.clone().create_schedule(request).await.unwrap().into_inner();
    assert!(schedule.skip_if_running, "skipping is the default");
    assert_eq!(schedule.created_by, API_NAME);
    assert!(schedule.next_fire_unix_ms > 0);

    let first = wait_for("a scheduled run", WAIT, || async {
        runs(&client).await.into_iter().find(|r| r.actor == "schedule:tick")
    })
    .await;
    assert_eq!(first.schedule_id, schedule.id);
    let skipped = wait_for("a firing skipped while the run goes on", WAIT, || async {
        audit_of(&client, "schedule_fired")
            .await
            .into_iter()
            .find(|e| e.detail.contains("skipped") && e.detail.contains("still running"))
    })
    .await;
    assert_eq!(skipped.actor, "schedule:tick");
    let started: Vec<_> = runs(&client).await.into_iter().filter(|r| r.state == "running").collect();
    assert_eq!(started.len(), 1, "never two runs of the schedule at once: {started:#?}");
    assert_eq!(wait_state(&client, &first.id, "passed").await.schedule_id, schedule.id);

    client.clone().delete_schedule(DeleteScheduleRequest { id: "tick".into() }).await.unwrap();
    let listed = client.clone().list_schedules(ListSchedulesRequest {}).await.unwrap().into_inner();
    assert!(listed.schedules.is_empty());
    // A firing under way as the schedule was deleted may still land; nothing after it.
    let fired = audit_of(&client, "schedule_fired").await.len();
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        let now = audit_of(&client, "schedule_fired").await.len();
        assert!(now <= fired + 1, "the deleted schedule keeps firing: {now} firings, {fired} at deletion");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// === 11. the agents' list ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_listed_with_labels_capabilities_and_health_until_they_go() {
    const HEARTBEAT: Duration = Duration::from_millis(200);
    let dir = TempDir::new("agents");
    let controller =
        RunningController::start(config(dir.path(), fleet(HEARTBEAT.as_millis() as u64, 2000))).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web"), ("zone", "a")]).await;
    wait_connected(&client, &["web-1"]).await;

    let listed = wait_for("a heartbeat's host sample", WAIT, || async {
        agents(&client).await.into_iter().find(|a| a.sample.is_some())
    })
    .await;
    let labels: HashMap<String, String> =
        [("role", "web"), ("zone", "a")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    assert_eq!(listed.labels, labels);
    for kind in ["process-pause", "process-kill", "cpu-stress"] {
        assert!(listed.capabilities.iter().any(|c| c == kind), "{kind} in {:?}", listed.capabilities);
    }
    assert_eq!(listed.health, "connected");
    assert!(!listed.hostname.is_empty() && !listed.version.is_empty() && !listed.peer.is_empty());
    assert!(listed.sample.unwrap().cpus > 0);
    let select = |pairs: &[(&str, &str)]| ListAgentsRequest {
        selector: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    let by_zone = client.clone().list_agents(select(&[("zone", "a")])).await.unwrap().into_inner();
    assert_eq!(by_zone.agents.len(), 1);
    let by_role = client.clone().list_agents(select(&[("role", "db")])).await.unwrap().into_inner();
    assert!(by_role.agents.is_empty());

    // An agent that says hello and then falls silent: late, then gone after three heartbeats, its stream
    // closed by the controller.
    let channel = tonic::transport::Endpoint::from_shared(controller.url()).unwrap().connect().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let hello = Hello { agent_id: "silent-1".into(), ..Hello::default() };
    tx.send(AgentMessage { body: Some(agent_message::Body::Hello(hello)) }).await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", format!("Bearer {AGENT_TOKEN}").parse().unwrap());
    let mut inbound = AgentServiceClient::new(channel).connect(request).await.unwrap().into_inner();
    let welcome = inbound.message().await.unwrap().unwrap();
    let welcomed_at = Instant::now();
    match welcome.body {
        Some(controller_message::Body::Welcome(w)) => assert_eq!(w.heartbeat_ms, 200),
        other => panic!("expected a welcome, found {other:?}"),
    }
    let gone = wait_for("the silent agent to be gone", WAIT, || async {
        agents(&client).await.into_iter().find(|a| a.id == "silent-1" && a.health == "gone")
    })
    .await;
    assert!(welcomed_at.elapsed() >= HEARTBEAT * 5 / 2, "not before three heartbeats: {gone:?}");
    let closed = tokio::time::timeout(WAIT, inbound.message()).await.expect("the controller closes it");
    assert!(!matches!(closed, Ok(Some(_))), "the stream ends: {closed:?}");
    drop(tx);

    web.stop().await.unwrap();
    wait_for("the stopped agent to be gone", WAIT, || async {
        agents(&client).await.into_iter().find(|a| a.id == "web-1" && a.health == "gone")
    })
    .await;
    assert_eq!(agents(&client).await.len(), 2, "gone agents stay listed");
}
