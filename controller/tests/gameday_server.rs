//! `GameDayService` end to end in one process: a real controller (gRPC on 127.0.0.1:0, SQLite in a temp
//! directory), a real in-process agent and `sleep` children as the processes its scenarios pause. Scenarios
//! run in order; one the controller refuses is recorded and skipped over (`on_failure: continue`); notes go to
//! the running game day; a halt reverts the current run's faults and ends the game day; a freeze stops it
//! before its next scenario; bad requests are refused with positions; a game day its controller left running
//! is interrupted at restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;

use std::time::Duration;

use chaos_controller::gameday::review::Review;
use chaos_proto::transport::{ClientConfig, WithToken};
use chaos_proto::v1::game_day_service_client::GameDayServiceClient;
use chaos_proto::v1::{
    FreezeRequest, GameDay, GameDayEvent, GameDayExperiment, GameDayNoteRequest, GetGameDayRequest,
    HaltAllRequest, HaltGameDayRequest, ListGameDaysRequest, StartGameDayRequest, WatchGameDayRequest,
};
use fleet_support::{
    API_TOKEN, Agent, RunningController, TempDir, Victim, WAIT, audit_of, config, fleet, wait_connected,
    wait_until,
};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Days = GameDayServiceClient<InterceptedService<Channel, WithToken>>;

async fn days(controller: &RunningController) -> Days {
    let config = ClientConfig { url: controller.url(), ..ClientConfig::default() };
    let channel = chaos_proto::transport::channel(&config).await.unwrap();
    GameDayServiceClient::with_interceptor(channel, WithToken::new(Some(API_TOKEN)).unwrap())
}

/// Pauses process `pid` on the web agents for `duration` (no load, no SLO: it passes once reverted).
fn pause(pid: u32, duration: &str) -> String {
    format!(
        "apiVersion: chaos/v1\ntitle: \"Pause {pid}\"\ntargets:\n  victim: {{ processes: {{ pid: {pid} }}, hosts: {{ role: web }} }}\n\
         fire_and_forget: true\nbaseline: 0s\nmethod:\n  - {{ name: pause, fault: pause, target: victim, duration: {duration} }}\nrecovery: 0s\n"
    )
}

fn start(plan: &str, experiments: &[(&str, String)]) -> StartGameDayRequest {
    StartGameDayRequest {
        file: "plan.yaml".into(),
        plan: plan.into(),
        experiments: experiments
            .iter()
            .map(|(path, source)| GameDayExperiment {
                path: (*path).into(),
                file: (*path).into(),
                source: source.clone(),
            })
            .collect(),
        vars: Default::default(),
    }
}

/// Every event of game day `id` up to `finished`.
async fn watch(client: &Days, id: &str) -> Vec<GameDayEvent> {
    let mut stream =
        client.clone().watch_game_day(WatchGameDayRequest { id: id.into() }).await.unwrap().into_inner();
    let mut events = Vec::new();
    let read = async {
        while let Some(event) = stream.message().await.unwrap() {
            let end = event.kind == "finished";
            events.push(event);
            if end {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("the game day ends in time");
    events
}

async fn get(client: &Days, id: &str) -> GameDay {
    client.clone().get_game_day(GetGameDayRequest { id: id.into() }).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_run_in_order_a_refused_one_is_passed_over_notes_go_to_it_and_a_halt_reverts_and_ends_it() {
    let dir = TempDir::new("gameday-halt");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let days = days(&controller).await;
    let _web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let (first, last) = (Victim::spawn(), Victim::spawn());
    let nowhere = "apiVersion: chaos/v1\ntitle: nowhere\ntargets:\n  t: { hosts: { role: nosuch }, count: 1 }\n\
                   fire_and_forget: true\nmethod:\n  - { fault: cpu_stress, target: t, with: { workers: 1, load: 10 }, duration: 1s }\n";
    let plan = "apiVersion: chaos/v1\nkind: GameDay\ntitle: halting\nparticipants: [{ name: Ada, role: scribe }]\nscenarios:\n\
                - { name: short pause, experiment: short.yaml, expect: [Stalled] }\n\
                - { name: no such hosts, experiment: nowhere.yaml }\n\
                - { name: long pause, experiment: long.yaml }\n";
    let g = days
        .clone()
        .start_game_day(start(
            plan,
            &[
                ("short.yaml", pause(first.pid(), "300ms")),
                ("nowhere.yaml", nowhere.into()),
                ("long.yaml", pause(last.pid(), "60s")),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.state, "running");
    let watcher = tokio::spawn({
        let (days, id) = (days.clone(), g.id.clone());
        async move { watch(&days, &id).await }
    });

    wait_until("the last scenario's victim paused", WAIT, || last.stopped()).await;
    let note = days
        .clone()
        .game_day_note(GameDayNoteRequest {
            gameday_id: String::new(),
            author: "Ada".into(),
            text: "latency graphs flat".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(note.gameday_id, g.id, "a note without an id goes to the running game day");
    let halted = days
        .clone()
        .halt_game_day(HaltGameDayRequest { id: g.id.clone(), reason: "enough".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(last.running(), "the halted run's pause was reverted before HaltGameDay answered");
    assert_eq!(halted.state, "halted");
    assert_eq!(halted.reason, "halted by ci: enough");
    let states: Vec<&str> = halted.scenarios.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["passed", "not-started", "halted"]);
    assert!(
        halted.scenarios[1].reasons[0].contains("no connected agent has the labels role=nosuch"),
        "{:?}",
        halted.scenarios[1]
    );

    // The watcher saw every step in order, then the final record.
    let events = watcher.await.unwrap();
    let lines: Vec<&str> = events.iter().map(|e| e.line.as_str()).collect();
    let order = [
        "game day started",
        "scenario 1: \"short pause\"",
        "ended passed",
        "could not start",
        "scenario 3: \"long pause\"",
        "note by Ada: latency graphs flat",
        "ended halted",
        "game day halted: halted by ci: enough",
    ];
    let mut at = 0;
    for wanted in order {
        at += lines[at..]
            .iter()
            .position(|l| l.contains(wanted))
            .unwrap_or_else(|| panic!("{wanted:?} missing (in order) from {lines:#?}"));
    }
    let last_event = events.last().unwrap();
    assert_eq!(
        (last_event.kind.as_str(), last_event.gameday.as_ref().unwrap().state.as_str()),
        ("finished", "halted")
    );

    // The record: the note, and the review's data with each run's journal.
    let stored = get(&days, &g.id).await;
    assert_eq!(stored.notes.len(), 1);
    assert_eq!(
        (stored.notes[0].author.as_str(), stored.notes[0].text.as_str()),
        ("Ada", "latency graphs flat")
    );
    let review: Review = serde_json::from_str(&stored.review_json).unwrap();
    assert!(review.scenarios[0].journal.is_some() && review.scenarios[2].journal.is_some());
    assert!(review.scenarios[1].journal.is_none());
    assert_eq!(review.scenarios[0].expect, ["Stalled"]);
    assert_eq!(review.notes.len(), 1);
    for action in ["gameday_started", "gameday_note", "gameday_halted"] {
        assert_eq!(audit_of(&client, action).await.len(), 1, "{action} audited");
    }
    // Finished: a note without an id has nowhere to go; with the id it is still added.
    let err = days
        .clone()
        .game_day_note(GameDayNoteRequest { text: "late".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    days.clone()
        .game_day_note(GameDayNoteRequest {
            gameday_id: g.id.clone(),
            text: "retro at 3pm".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let stored = get(&days, &g.id).await;
    assert_eq!(
        stored.notes.iter().map(|n| n.author.as_str()).collect::<Vec<_>>(),
        ["Ada", "ci"],
        "the author defaults to the token's name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_stops_the_game_day_before_its_next_scenario_and_a_frozen_controller_starts_none() {
    let dir = TempDir::new("gameday-freeze");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let days = days(&controller).await;
    let _web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let plan = "apiVersion: chaos/v1\nkind: GameDay\ntitle: freezing\nscenarios:\n\
                - { name: one, experiment: p.yaml, pause_after: 10m }\n- { name: two, experiment: p.yaml }\n";
    let request = start(plan, &[("p.yaml", pause(victim.pid(), "100ms"))]);
    let g = days.clone().start_game_day(request.clone()).await.unwrap().into_inner();
    let mut stream =
        days.clone().watch_game_day(WatchGameDayRequest { id: g.id.clone() }).await.unwrap().into_inner();
    let pausing = async {
        while let Some(e) = stream.message().await.unwrap() {
            if e.line.starts_with("pausing 600s after") {
                return;
            }
        }
        panic!("the game day ended before its pause");
    };
    tokio::time::timeout(Duration::from_secs(30), pausing).await.unwrap();
    client.clone().freeze(FreezeRequest { reason: "incident in progress".into() }).await.unwrap();
    let end = async {
        while let Some(e) = stream.message().await.unwrap() {
            if e.kind == "finished" {
                return e.gameday.unwrap();
            }
        }
        panic!("no finished event");
    };
    let ended = tokio::time::timeout(WAIT, end).await.expect("the freeze ends the pause, not its 10 minutes");
    assert_eq!(ended.state, "halted");
    assert!(ended.reason.contains("frozen (by ci: incident in progress)"), "{}", ended.reason);
    let states: Vec<&str> = ended.scenarios.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["passed", "skipped"]);
    let err = days.clone().start_game_day(request).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("the controller is frozen"), "{err}");
}

/// A halt-all that comes while the game day pauses between scenarios (no run to halt) ends it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_all_during_a_pause_halts_the_game_day() {
    let dir = TempDir::new("gameday-halt-all");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let days = days(&controller).await;
    let _web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let plan = "apiVersion: chaos/v1\nkind: GameDay\ntitle: halting\nscenarios:\n\
                - { name: one, experiment: p.yaml, pause_after: 10m }\n- { name: two, experiment: p.yaml }\n";
    let request = start(plan, &[("p.yaml", pause(victim.pid(), "100ms"))]);
    let g = days.clone().start_game_day(request).await.unwrap().into_inner();
    let mut stream =
        days.clone().watch_game_day(WatchGameDayRequest { id: g.id.clone() }).await.unwrap().into_inner();
    let pausing = async {
        while let Some(e) = stream.message().await.unwrap() {
            if e.line.starts_with("pausing 600s after") {
                return;
            }
        }
        panic!("the game day ended before its pause");
    };
    tokio::time::timeout(Duration::from_secs(30), pausing).await.unwrap();
    let halt = HaltAllRequest { reason: "stop everything".into(), ..HaltAllRequest::default() };
    client.clone().halt_all(halt).await.unwrap();
    let end = async {
        while let Some(e) = stream.message().await.unwrap() {
            if e.kind == "finished" {
                return e.gameday.unwrap();
            }
        }
        panic!("no finished event");
    };
    let ended =
        tokio::time::timeout(WAIT, end).await.expect("the halt-all ends the pause, not its 10 minutes");
    assert_eq!(ended.state, "halted");
    assert!(ended.reason.contains("stop everything"), "{}", ended.reason);
    let states: Vec<&str> = ended.scenarios.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["passed", "skipped"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_positions_and_nothing_is_stored() {
    let dir = TempDir::new("gameday-bad");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let days = days(&controller).await;
    let good =
        "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios:\n- { name: a, experiment: a.yaml }\n";
    let exp = "apiVersion: chaos/v1\ntitle: a\nvars: { d: 1s }\nfire_and_forget: true\nmethod:\n  - { name: w, wait: \"${d}\" }\n";
    let cases = [
        (
            start(&good.replace("title: t", "title: t\ntitel: x"), &[("a.yaml", exp.into())]),
            "plan.yaml:4:1: unknown field `titel`",
        ),
        (start(good, &[]), "scenario \"a\": experiment \"a.yaml\" was not sent with the plan"),
        (start(good, &[("a.yaml", exp.replace("wait:", "wiat:"))]), "a.yaml:6:16: unknown field `wiat`"),
        (
            StartGameDayRequest {
                vars: [("e".to_string(), "1".to_string())].into(),
                ..start(good, &[("a.yaml", exp.into())])
            },
            "e: no experiment of the plan declares it",
        ),
    ];
    for (request, expected) in cases {
        let err = days.clone().start_game_day(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains(expected), "expected {expected:?} in {:?}", err.message());
    }
    assert!(
        days.clone()
            .list_game_days(ListGameDaysRequest::default())
            .await
            .unwrap()
            .into_inner()
            .gamedays
            .is_empty()
    );
    let note = |id: &str, text: &str| GameDayNoteRequest {
        gameday_id: id.into(),
        text: text.into(),
        ..Default::default()
    };
    let err = days.clone().game_day_note(note("", "x")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("no game day is running"), "{err}");
    assert_eq!(days.clone().game_day_note(note("g-nope", "x")).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        days.clone().game_day_note(note("g-nope", "  ")).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        days.clone().game_day_note(note("g-nope", &"x".repeat(5000))).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        days.clone().get_game_day(GetGameDayRequest { id: "g-nope".into() }).await.unwrap_err().code(),
        Code::NotFound
    );
    let unauthenticated = {
        let config = ClientConfig { url: controller.url(), ..ClientConfig::default() };
        let channel = chaos_proto::transport::channel(&config).await.unwrap();
        GameDayServiceClient::with_interceptor(channel, WithToken::new(None).unwrap())
    };
    let err = unauthenticated.clone().list_game_days(ListGameDaysRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_day_left_running_by_a_killed_controller_is_interrupted_at_restart() {
    let dir = TempDir::new("gameday-restart");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let days_client = days(&controller).await;
    let plan = "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios:\n- { name: a, experiment: a.yaml, pause_before: 10m }\n";
    let exp = "apiVersion: chaos/v1\ntitle: a\nfire_and_forget: true\nmethod:\n  - { name: w, wait: 1s }\n";
    let g = days_client
        .clone()
        .start_game_day(start(plan, &[("a.yaml", exp.into())]))
        .await
        .unwrap()
        .into_inner();
    days_client
        .clone()
        .game_day_note(GameDayNoteRequest { text: "before the crash".into(), ..Default::default() })
        .await
        .unwrap();
    let restart = controller.restart_config();
    controller.kill().await;
    let controller = RunningController::start(restart).await;
    let days_client = days(&controller).await;
    let g = get(&days_client, &g.id).await;
    assert_eq!(g.state, "interrupted");
    assert!(g.finished_unix_ms > 0);
    assert_eq!(g.notes[0].text, "before the crash", "notes survive the restart");
    let events = watch(&days_client, &g.id).await;
    assert_eq!(events.last().unwrap().line, "game day interrupted");
}
