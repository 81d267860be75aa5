//! The controller is not a root shell: runs through it act only on agents (local command probes and local
//! process targets are refused unless the controller opted in), command probes run on agents under their
//! policies, an agent id is held by one live session and a scoped token's id by that token only, its files are
//! private whatever the umask, and a dry run ends.
//!
//! In process, like `fleet.rs`: a real controller on 127.0.0.1:0 with real in-process agents, and raw protocol
//! streams where a test needs to be an agent that misbehaves. This binary runs with umask 000 (set by
//! [`permissive_umask`] in every test), so every file the controller and the agents create here is checked
//! against the most permissive umask.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;

use std::path::Path;
use std::time::Duration;

use chaos_agent::policy::AgentPolicy;
use chaos_proto::v1::agent_service_client::AgentServiceClient;
use chaos_proto::v1::{
    AgentMessage, ControllerMessage, Heartbeat, Hello, ListAgentsRequest, agent_message, controller_message,
};
use fleet_support::{
    AGENT_TOKEN, Agent, AgentOptions, RunningController, TempDir, Victim, WAIT, WEB1_TOKEN, agents, audit_of,
    config, fleet, get_run, runs, start_run, submit, wait_connected, wait_for, watch,
};
use tokio::sync::mpsc;
use tonic::Code;
use tonic::Streaming;

/// Sets the process umask to 000 (every test of this binary does, first), so a file created without an
/// explicit mode would be world-readable and writable.
fn permissive_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
}

/// A steady-state command probe `run` (YAML flow list) with `extra` fields, around a 100 ms wait.
fn probe_experiment(run: &str, extra: &str) -> String {
    format!(
        "apiVersion: chaos/v1
title: Probe
baseline: 0s
steady_state:
  - {{ name: who, command: {{ run: {run}{extra} }} }}
method:
  - {{ wait: 100ms }}
recovery: 0s
"
    )
}

/// `[/bin/sh, -c, 'id > FILE']`: what a client token holder would love to run as root.
fn id_into(file: &Path) -> String {
    format!("[/bin/sh, -c, 'id > {}']", file.display())
}

fn refusal<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String) {
    let status = result.expect_err("expected a refusal");
    (status.code(), status.message().to_string())
}

/// A policy allowing `/bin/sh -c ...` as a probe command (and every fault, as the default does).
fn sh_allowed() -> AgentPolicy {
    AgentPolicy { probe_commands: vec![vec!["/bin/sh".into(), "-c".into()]], ..AgentPolicy::default() }
}

// === 11. a run through the controller touches only agents ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_command_probe_or_process_target_is_refused_and_runs_nothing_on_the_controllers_host() {
    permissive_umask();
    let dir = TempDir::new("local-refused");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let file = dir.path().join("id.txt");

    let probe = probe_experiment(&id_into(&file), "");
    for dry_run in [false, true] {
        let (code, message) = refusal(start_run(&client, &probe, 1, dry_run).await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        assert!(message.contains("steady_state probe `who`"), "names the probe: {message}");
        assert!(message.contains("--allow-local-effects"), "names the flag: {message}");
        assert!(message.contains("agent: ID"), "says how to run it on an agent: {message}");
    }
    let (code, message) = refusal(client.clone().submit_experiment(submit(&probe)).await);
    assert_eq!(code, Code::FailedPrecondition, "refused at submit too: {message}");

    // A kill of processes without `hosts` would hit the controller's host.
    let victim = Victim::spawn();
    let kill = format!(
        "apiVersion: chaos/v1
title: Kill here
targets:
  victim: {{ processes: {{ pid: {} }} }}
fire_and_forget: true
baseline: 0s
method:
  - {{ name: kill it, fault: kill, target: victim }}
recovery: 0s
",
        victim.pid()
    );
    let (code, message) = refusal(start_run(&client, &kill, 1, false).await);
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("target `victim` selects processes on the controller's host"), "{message}");
    assert!(message.contains("--allow-local-effects"), "{message}");

    // `${env:NAME}` would read the controller's environment (its secrets) into the experiment.
    let env = probe_experiment("[/bin/true, '${env:HOME}']", ", agent: web-1");
    let (code, message) = refusal(start_run(&client, &env, 1, false).await);
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("${env:HOME}") && message.contains("--allow-local-effects"), "{message}");

    assert!(victim.running(), "the victim was not touched");
    assert!(!file.exists(), "`sh -c 'id > file'` did not run");
    assert!(runs(&client).await.is_empty(), "no run stored");
    let stored = client.clone().list_experiments(chaos_proto::v1::ListExperimentsRequest {}).await.unwrap();
    assert!(stored.into_inner().experiments.is_empty(), "no experiment stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_started_with_allow_local_effects_runs_a_local_command_probe() {
    permissive_umask();
    let dir = TempDir::new("local-allowed");
    let mut cfg = config(dir.path(), fleet(200, 2000));
    cfg.limits.allow_local_effects = true;
    let controller = RunningController::start(cfg).await;
    let client = controller.client().await;
    let file = dir.path().join("id.txt");

    let run = start_run(&client, &probe_experiment(&id_into(&file), ""), 1, false).await.unwrap();
    watch(&client, &run.id).await;
    let done = get_run(&client, &run.id).await;
    assert_eq!(done.state, "passed", "{done:#?}");
    assert!(std::fs::read_to_string(&file).unwrap().starts_with("uid="), "the opted-in probe ran here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_probe_runs_on_the_agent_it_names_only_if_that_agents_policy_allows_it() {
    permissive_umask();
    let dir = TempDir::new("agent-probe");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let mut web = AgentOptions::new("web-1", &[("role", "web")]);
    web.token = Some(WEB1_TOKEN.into());
    web.policy = sh_allowed();
    let _web = Agent::start_with(controller.addr, web).await;
    let _db = Agent::start(controller.addr, "db-1", &[("role", "db")]).await;
    wait_connected(&client, &["web-1", "db-1"]).await;

    // Allowed on web-1: it runs there (the same host in this test) and the run passes.
    let on_web = dir.path().join("web.txt");
    let run =
        start_run(&client, &probe_experiment(&id_into(&on_web), ", agent: web-1"), 1, false).await.unwrap();
    watch(&client, &run.id).await;
    let done = get_run(&client, &run.id).await;
    assert_eq!(done.state, "passed", "{done:#?}");
    assert!(std::fs::read_to_string(&on_web).unwrap().starts_with("uid="));

    // By label too, and the output the agent sends back is what `output_contains` checks.
    let echo =
        probe_experiment("[/bin/sh, -c, 'echo ready']", ", hosts: { role: web }, output_contains: ready");
    let run = start_run(&client, &echo, 1, false).await.unwrap();
    watch(&client, &run.id).await;
    assert_eq!(get_run(&client, &run.id).await.state, "passed");

    // db-1's policy (the default) allows no probe command: the run is refused before it starts (dry run too),
    // naming the agent and the rule, and nothing ran.
    let on_db = dir.path().join("db.txt");
    let stored = runs(&client).await.len();
    for dry_run in [false, true] {
        let refused =
            start_run(&client, &probe_experiment(&id_into(&on_db), ", agent: db-1"), 1, dry_run).await;
        let (code, message) = refusal(refused);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        assert!(message.contains("steady_state probe `who`: on db-1"), "{message}");
        assert!(message.contains("'probe-commands'"), "names the rule: {message}");
    }
    assert!(!on_db.exists(), "the refused probe did not run");
    // So is a probe for an agent that is not connected, or for labels no agent has.
    for (extra, expected) in
        [(", agent: gone-1", "gone-1 is not connected"), (", hosts: { role: none }", "no connected agent")]
    {
        let (code, message) =
            refusal(start_run(&client, &probe_experiment("[/bin/true]", extra), 1, false).await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(runs(&client).await.len(), stored, "refused runs are not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_with_both_agent_and_hosts_is_refused_at_its_position() {
    permissive_umask();
    let dir = TempDir::new("probe-invalid");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let both = probe_experiment("[/bin/true]", ", agent: web-1, hosts: { role: web }");
    let (code, message) = refusal(client.clone().submit_experiment(submit(&both)).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("fleet.yaml:5:") && message.contains("either `agent` or `hosts`"), "{message}");
    let bad_id = probe_experiment("[/bin/true]", ", agent: 'web 1'");
    let (code, message) = refusal(client.clone().submit_experiment(submit(&bad_id)).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("fleet.yaml:5:") && message.contains("agent id"), "{message}");
}

// === 12. one live session per agent id ===

/// A raw agent stream: what a hand-written agent (or an impostor) does.
struct RawSession {
    tx: mpsc::Sender<AgentMessage>,
    inbound: Streaming<ControllerMessage>,
    secret: String,
}

async fn raw_session(
    controller: &RunningController,
    id: &str,
    token: &str,
    secret: &str,
) -> Result<RawSession, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(controller.url()).unwrap().connect().await.unwrap();
    let (tx, rx) = mpsc::channel(16);
    let hello = Hello {
        agent_id: id.into(),
        labels: [("owner".to_string(), secret.is_empty().to_string())].into(),
        session_secret: secret.into(),
        ..Hello::default()
    };
    tx.send(AgentMessage { body: Some(agent_message::Body::Hello(hello)) }).await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut inbound = AgentServiceClient::new(channel).connect(request).await?.into_inner();
    let welcome = inbound.message().await?.expect("a welcome");
    let secret = match welcome.body {
        Some(controller_message::Body::Welcome(w)) => w.session_secret,
        other => panic!("expected a welcome, found {other:?}"),
    };
    assert_eq!(secret.len(), 32, "a session secret comes with the welcome");
    Ok(RawSession { tx, inbound, secret })
}

/// Sends a heartbeat every 50 ms on `tx` until the stream is gone.
fn keep_beating(tx: mpsc::Sender<AgentMessage>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for seq in 1.. {
            let beat = Heartbeat { seq, ..Heartbeat::default() };
            if tx.send(AgentMessage { body: Some(agent_message::Body::Heartbeat(beat)) }).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_any_agent_token_cannot_take_an_id_reserved_for_a_scoped_token() {
    permissive_umask();
    let dir = TempDir::new("reserved-id");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let mut web = AgentOptions::new("web-1", &[("role", "web")]);
    web.token = Some(WEB1_TOKEN.into());
    let _web = Agent::start_with(controller.addr, web).await;
    wait_connected(&client, &["web-1"]).await;

    // The token for any agent, claiming web-1: refused, every time, and web-1 keeps its session and labels.
    for _ in 0..5 {
        let (code, message) = refusal(raw_session(&controller, "web-1", AGENT_TOKEN, "").await.map(|_| ()));
        assert_eq!(code, Code::PermissionDenied, "{message}");
        assert!(message.contains("\"web-1\" is reserved"), "{message}");
    }
    let mut impostor = AgentOptions::new("web-1", &[("role", "impostor")]);
    impostor.token = Some(AGENT_TOKEN.into());
    let mut impostor = Agent::start_with(controller.addr, impostor).await;
    let err =
        impostor.finished(Duration::from_secs(5)).await.expect("the impostor gives up at once").unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    let listed = agents(&client).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].labels.get("role").map(String::as_str), Some("web"), "labels not taken over");
    assert_eq!(listed[0].health, "connected");
    let refusals = audit_of(&client, "agent_refused").await;
    assert!(refusals.len() >= 6 && refusals.iter().all(|e| e.detail.contains("reserved")), "{refusals:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_for_a_live_id_is_refused_unless_it_proves_it_is_the_same_agent() {
    permissive_umask();
    // Long enough that the 50 ms heartbeats below never look late on a loaded machine.
    const HEARTBEAT: Duration = Duration::from_millis(400);
    let dir = TempDir::new("second-session");
    let controller =
        RunningController::start(config(dir.path(), fleet(HEARTBEAT.as_millis() as u64, 2000))).await;
    let client = controller.client().await;
    let labels_of = |id: &'static str| {
        let client = client.clone();
        async move {
            let request = ListAgentsRequest::default();
            let listed = client.clone().list_agents(request).await.unwrap().into_inner().agents;
            listed.into_iter().find(|a| a.id == id).map(|a| (a.health, a.labels.get("owner").cloned()))
        }
    };

    // The first session heartbeats: a second hello for its id, without its secret, is refused (not swapped).
    let first = raw_session(&controller, "dup-1", AGENT_TOKEN, "").await.unwrap();
    let beating = keep_beating(first.tx.clone());
    for _ in 0..5 {
        let (code, message) = refusal(raw_session(&controller, "dup-1", AGENT_TOKEN, "").await.map(|_| ()));
        assert_eq!(code, Code::AlreadyExists, "{message}");
        assert!(message.contains("already has a live session"), "{message}");
        tokio::time::sleep(HEARTBEAT / 2).await;
    }
    assert_eq!(labels_of("dup-1").await, Some(("connected".into(), Some("true".into()))), "not swapped");

    // The same agent reconnecting (its old stream half-dead but still heartbeating here) proves it with the
    // secret of its welcome: accepted at once, and the old stream is closed.
    let mut first = first;
    // Taken before the dial: the controller's clock for the new session starts after it.
    let second_at = tokio::time::Instant::now();
    let second = raw_session(&controller, "dup-1", AGENT_TOKEN, &first.secret).await.unwrap();
    let closed = tokio::time::timeout(WAIT, first.inbound.message()).await.expect("the old stream is closed");
    assert!(!matches!(closed, Ok(Some(_))), "{closed:?}");
    beating.abort();
    assert_eq!(labels_of("dup-1").await.map(|(_, owner)| owner), Some(Some("false".into())));

    // An agent whose old session fell silent (a restarted process has no secret): accepted once the old one is
    // late, within two heartbeats.
    let third = wait_for("a new session once the silent one is late", WAIT, || async {
        raw_session(&controller, "dup-1", AGENT_TOKEN, "").await.ok()
    })
    .await;
    let waited = second_at.elapsed();
    assert!(waited >= HEARTBEAT * 3 / 2, "not while the old session was fresh: {waited:?}");
    drop((second, third));
}

// === 15. private files, dry runs that end ===

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_and_agents_files_are_private_whatever_the_umask() {
    permissive_umask();
    let dir = TempDir::new("private");
    let data = dir.path().join("data").join("controller");
    let controller = RunningController::start_creating_tokens(config(&data, fleet(200, 2000))).await;
    let client = fleet_support::client(controller.addr, Some(controller.api_token().trim())).await;
    // A run writes the database and its WAL.
    let run = start_run(&client, &fleet_support_wait(), 1, false).await.unwrap();
    watch(&client, &run.id).await;
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    assert_eq!(mode(data.parent().unwrap()), 0o700, "parents it created too");
    for name in ["controller.db", "controller.db-wal", "controller.db-shm", "api.token", "agent.token"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }

    // An agent's journal: its directory and a record, while a fault is held.
    let mut options = AgentOptions::new("web-1", &[("role", "web")]);
    options.token = Some(std::fs::read_to_string(data.join("agent.token")).unwrap().trim().to_string());
    let agent = Agent::start_with(controller.addr, options).await;
    let record = agent.state_dir.join("journal");
    let victim = Victim::spawn();
    let pause = format!(
        "apiVersion: chaos/v1
title: Pause
targets:
  victim: {{ processes: {{ pid: {} }}, hosts: {{ role: web }} }}
fire_and_forget: true
baseline: 0s
method:
  - {{ name: pause, fault: pause, target: victim, duration: 2s }}
recovery: 0s
",
        victim.pid()
    );
    wait_connected(&client, &["web-1"]).await;
    let run = start_run(&client, &pause, 1, false).await.unwrap();
    let files = wait_for("a journal record", WAIT, || async {
        let files: Vec<_> =
            std::fs::read_dir(&record).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        (!files.is_empty()).then_some(files)
    })
    .await;
    assert_eq!(mode(&record), 0o700, "{}", record.display());
    for file in files.iter().filter(|f| f.exists()) {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    watch(&client, &run.id).await;
}

fn fleet_support_wait() -> String {
    "apiVersion: chaos/v1\ntitle: Wait\nfire_and_forget: true\nbaseline: 0s\nmethod:\n  - { wait: 100ms }\nrecovery: 0s\n".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_ends_at_once_and_a_restarted_controller_does_not_take_it_for_unfinished() {
    permissive_umask();
    let dir = TempDir::new("dry-run-ends");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2000))).await;
    let client = controller.client().await;
    let planned = start_run(&client, &fleet_support_wait(), 1, true).await.unwrap();
    assert_eq!((planned.state.as_str(), planned.exit_code), ("dry-run", 0));
    assert!(planned.finished_unix_ms > 0, "finished when stored: {planned:#?}");
    let events = watch(&client, &planned.id).await;
    assert_eq!(events.last().map(|e| e.kind.as_str()), Some("finished"), "{events:#?}");
    let config = controller.restart_config();
    controller.stop(WAIT).await;
    let controller = RunningController::start(config).await;
    assert!(controller.interrupted.is_empty(), "{:?}", controller.interrupted);
    let client = controller.client().await;
    assert_eq!(get_run(&client, &planned.id).await.state, "dry-run");
}
