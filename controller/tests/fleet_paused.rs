//! The fleet in tokio's paused time, with no socket: agents are the test speaking the protocol over in-memory
//! channels straight into [`Fleet::attach`] (the session layer below tonic), so a clock jump (a SIGSTOP or VM
//! pause of the controller) happens exactly where the test says and each test runs in milliseconds. Covers
//! liveness across a controller pause, and the fault protocol: lease and renewals, reconnect keeping faults
//! under their leases, halt-all, and an expiry the agent reports.

// Test helpers outside `#[test]` functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chaos_controller::fleet::{ApplyRequest, Fleet, FleetConfig, Health, Reverted};
use chaos_controller::store::{SqliteStore, StoreHandle};
use chaos_proto::v1::controller_message::Body;
use chaos_proto::v1::{
    ActiveFault, AgentMessage, ControllerMessage, FaultState, FaultStatus, Heartbeat, Hello, agent_message,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

const HEARTBEAT: Duration = Duration::from_secs(1);
/// The longest lease a fault gets at a time; renewed every third of it.
const LEASE: Duration = Duration::from_secs(3);

/// One agent as the controller sees it: what it sends, and the stream the controller answers on.
struct FakeAgent {
    id: String,
    tx: mpsc::Sender<Result<AgentMessage, Status>>,
    outbound: ReceiverStream<Result<ControllerMessage, Status>>,
    seq: u64,
}

impl FakeAgent {
    fn attach(fleet: &Fleet, id: &str) -> FakeAgent {
        let hello = Hello { agent_id: id.to_string(), hostname: format!("{id}.test"), ..Hello::default() };
        FakeAgent::attach_with(fleet, hello)
    }

    fn attach_with(fleet: &Fleet, hello: Hello) -> FakeAgent {
        let (tx, rx) = mpsc::channel(64);
        let id = hello.agent_id.clone();
        let outbound = fleet.attach(hello, "memory".into(), ReceiverStream::new(rx)).expect("attached");
        FakeAgent { id, tx, outbound, seq: 0 }
    }

    /// Reads the welcome; returns its session secret.
    async fn welcome(&mut self) -> String {
        match self.outbound.next().await {
            Some(Ok(ControllerMessage { body: Some(Body::Welcome(welcome)), .. })) => welcome.session_secret,
            other => panic!("expected a welcome, found {other:?}"),
        }
    }

    /// The controller's next request, waiting for it in (paused) time.
    async fn request(&mut self) -> (u64, Body) {
        match self.outbound.next().await {
            Some(Ok(ControllerMessage { request_id, body: Some(body) })) => (request_id, body),
            other => panic!("{}: expected a request, found {other:?}", self.id),
        }
    }

    /// The next request within `within`, or `None`.
    async fn request_within(&mut self, within: Duration) -> Option<(u64, Body)> {
        tokio::time::timeout(within, self.request()).await.ok()
    }

    async fn answer(&mut self, request_id: u64, fault_id: &str, state: FaultState) {
        let status = FaultStatus {
            request_id,
            fault_id: fault_id.to_string(),
            state: state.into(),
            detail: format!("{state:?}"),
            ..FaultStatus::default()
        };
        self.send_status(status).await;
    }

    async fn send_status(&mut self, status: FaultStatus) {
        let message = AgentMessage { body: Some(agent_message::Body::FaultStatus(status)) };
        self.tx.send(Ok(message)).await.expect("the controller reads the stream");
    }

    /// Queues a heartbeat on the stream (the controller reads it when its session task runs).
    async fn beat(&mut self) {
        self.seq += 1;
        let heartbeat = Heartbeat { seq: self.seq, ..Heartbeat::default() };
        let message = AgentMessage { body: Some(agent_message::Body::Heartbeat(heartbeat)) };
        self.tx.send(Ok(message)).await.expect("the controller reads the stream");
    }

    /// Whether the controller has closed this agent's stream (marked it gone).
    async fn closed(&mut self) -> bool {
        // The welcome and anything else sent are drained; a closed stream ends.
        loop {
            match tokio::time::timeout(Duration::from_millis(1), self.outbound.next()).await {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// A fleet with no reaper: the fault protocol alone.
fn quiet_fleet() -> Fleet {
    let store = StoreHandle::new(Arc::new(SqliteStore::in_memory().expect("an in-memory store")));
    let config = FleetConfig { heartbeat: HEARTBEAT, lease: LEASE, ..FleetConfig::default() };
    Fleet::new(config, store)
}

fn fleet() -> (Fleet, CancellationToken) {
    let fleet = quiet_fleet();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (fleet, stop) = (fleet.clone(), stop.clone());
        async move { fleet.reap_silent(stop).await }
    });
    (fleet, stop)
}

async fn health(fleet: &Fleet) -> HashMap<String, Health> {
    let listed = fleet.list(&BTreeMap::new()).await.expect("listed");
    listed.into_iter().map(|a| (a.info.id, a.health)).collect()
}

/// Heartbeats from every agent in `agents`, one heartbeat apart, `beats` times.
async fn beat_for(agents: &mut [&mut FakeAgent], beats: u32) {
    for _ in 0..beats {
        tokio::time::sleep(HEARTBEAT).await;
        for agent in agents.iter_mut() {
            agent.beat().await;
        }
    }
}

/// The controller is stopped for four heartbeats in one jump. The sweep runs before the session tasks have
/// read the heartbeats that arrived meanwhile (they are sent only after it had its turn): it must not take
/// the agents for gone.
async fn pause_controller(agents: &mut [&mut FakeAgent]) {
    tokio::time::advance(HEARTBEAT * 4).await;
    // The sweep's timer fired in the jump: let it run before anything is read.
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    for agent in agents.iter_mut() {
        for _ in 0..4 {
            agent.beat().await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_controller_paused_past_three_heartbeats_marks_no_heartbeating_agent_gone() {
    let (fleet, stop) = fleet();
    let mut agents: Vec<FakeAgent> =
        (1..=3).map(|n| FakeAgent::attach(&fleet, &format!("web-{n}"))).collect();
    let mut all: Vec<&mut FakeAgent> = agents.iter_mut().collect();
    beat_for(&mut all, 2).await;

    pause_controller(&mut all).await;
    beat_for(&mut all, 5).await;

    for agent in all.iter_mut() {
        assert!(!agent.closed().await, "{}'s stream was closed", agent.id);
    }
    assert_eq!(fleet.connected(), ["web-1", "web-2", "web-3"]);
    let health = health(&fleet).await;
    assert!(health.values().all(|h| *h == Health::Connected), "{health:?}");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_really_stopped_is_gone_three_heartbeats_after_the_controllers_pause() {
    let (fleet, stop) = fleet();
    let mut alive = FakeAgent::attach(&fleet, "alive");
    let mut stopped = FakeAgent::attach(&fleet, "stopped");
    beat_for(&mut [&mut alive, &mut stopped], 2).await;

    // Only `alive` sent heartbeats while the controller was stopped, and only it keeps sending them.
    pause_controller(&mut [&mut alive]).await;
    assert_eq!(
        fleet.connected(),
        ["alive", "stopped"],
        "nobody is judged on the sweep right after the pause"
    );
    beat_for(&mut [&mut alive], 2).await;
    assert!(!stopped.closed().await, "still within its grace period");
    beat_for(&mut [&mut alive], 3).await;

    assert!(stopped.closed().await, "three heartbeats of silence after the pause: gone");
    assert!(!alive.closed().await);
    assert_eq!(fleet.connected(), ["alive"]);
    let health = health(&fleet).await;
    assert_eq!((health["alive"], health["stopped"]), (Health::Connected, Health::Gone));
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn without_a_pause_an_agent_silent_for_three_heartbeats_is_gone() {
    let (fleet, stop) = fleet();
    let mut alive = FakeAgent::attach(&fleet, "alive");
    let mut silent = FakeAgent::attach(&fleet, "silent");
    beat_for(&mut [&mut alive, &mut silent], 2).await;

    beat_for(&mut [&mut alive], 3).await;
    assert!(!silent.closed().await, "three heartbeats of silence at most");
    beat_for(&mut [&mut alive], 1).await;

    assert!(silent.closed().await, "more than three heartbeats of silence: gone");
    assert_eq!(fleet.connected(), ["alive"]);
    stop.cancel();
}

// === the fault protocol ===

fn pause_request(agent: &str, fault_id: &str, duration: Duration) -> ApplyRequest {
    ApplyRequest {
        agent: agent.to_string(),
        run: "r-1".into(),
        fault_id: fault_id.to_string(),
        spec_json: r#"{"kind":"process-pause"}"#.into(),
        duration: Some(duration),
        seed: 7,
        actor: "test".into(),
        pod: None,
    }
}

/// Applies `fault_id` on `agent` through `fleet`, answering the apply as the agent.
async fn apply(fleet: &Fleet, agent: &mut FakeAgent, fault_id: &str, duration: Duration) -> u64 {
    let applying = tokio::spawn({
        let (fleet, request) = (fleet.clone(), pause_request(&agent.id, fault_id, duration));
        async move { fleet.apply(request).await }
    });
    let (request_id, body) = agent.request().await;
    let Body::Apply(apply) = body else { panic!("expected an apply, found {body:?}") };
    assert_eq!((apply.fault_id.as_str(), apply.run_id.as_str(), apply.seed), (fault_id, "r-1", 7));
    agent.answer(request_id, fault_id, FaultState::Applied).await;
    applying.await.unwrap().expect("applied");
    apply.lease_ms
}

/// Answers every renewal of `fault_id` for `within`; returns their leases and when they came.
async fn renewals(agent: &mut FakeAgent, fault_id: &str, within: Duration) -> Vec<(Duration, u64)> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while let Some((request_id, body)) = agent.request_within(within.saturating_sub(start.elapsed())).await {
        let Body::Renew(renew) = body else { panic!("expected a renewal, found {body:?}") };
        assert_eq!(renew.fault_id, fault_id);
        seen.push((start.elapsed(), renew.lease_ms));
        agent.answer(request_id, fault_id, FaultState::Renewed).await;
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn a_fault_is_leased_renewed_every_third_of_its_lease_and_reverted() {
    let fleet = quiet_fleet();
    let mut agent = FakeAgent::attach(&fleet, "web-1");
    agent.welcome().await;

    let lease_ms = apply(&fleet, &mut agent, "f-1", Duration::from_secs(60)).await;
    assert_eq!(lease_ms, 3000, "the fleet's lease, shorter than the fault");
    let renewed = renewals(&mut agent, "f-1", Duration::from_millis(4500)).await;
    let at: Vec<u128> = renewed.iter().map(|(at, _)| at.as_millis()).collect();
    assert_eq!(at, [1000, 2000, 3000, 4000], "every third of the lease");
    assert!(renewed.iter().all(|(_, lease)| *lease == 3000));

    let reverting = tokio::spawn({
        let fleet = fleet.clone();
        async move { fleet.revert_checked("f-1").await }
    });
    let (request_id, body) = agent.request().await;
    assert!(matches!(body, Body::Revert(ref r) if r.fault_id == "f-1"), "{body:?}");
    agent.answer(request_id, "f-1", FaultState::Reverted).await;
    assert_eq!(reverting.await.unwrap(), Ok(Reverted::Done));
    assert_eq!(agent.request_within(LEASE * 2).await, None, "no renewal after the revert");
    assert!(fleet.held().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_short_fault_is_leased_for_its_duration_plus_the_margin_and_renewals_stop_at_its_deadline() {
    let store = StoreHandle::new(Arc::new(SqliteStore::in_memory().unwrap()));
    let config = FleetConfig {
        lease: Duration::from_secs(30),
        margin: Duration::from_secs(2),
        ..FleetConfig::default()
    };
    let fleet = Fleet::new(config, store);
    let mut agent = FakeAgent::attach(&fleet, "web-1");
    agent.welcome().await;

    let lease_ms = apply(&fleet, &mut agent, "f-1", Duration::from_secs(1)).await;
    assert_eq!(lease_ms, 3000, "1 s of fault plus the 2 s margin");
    let renewed = renewals(&mut agent, "f-1", Duration::from_secs(10)).await;
    // Renewed at 1 s and 2 s (for what is left before the deadline at 3 s), then never.
    assert_eq!(
        renewed.iter().map(|(at, lease)| (at.as_millis(), *lease)).collect::<Vec<_>>(),
        [(1000, 2000), (2000, 1000)]
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_reconnects_holding_the_fault_keeps_it_under_renewal() {
    let fleet = quiet_fleet();
    let mut first = FakeAgent::attach(&fleet, "web-1");
    let secret = first.welcome().await;
    apply(&fleet, &mut first, "f-1", Duration::from_secs(60)).await;

    // The stream breaks; the agent dials again within the lease, listing the fault and its session secret.
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fleet.connected().is_empty());
    let hello = Hello {
        agent_id: "web-1".into(),
        active_faults: vec![ActiveFault {
            fault_id: "f-1".into(),
            run_id: "r-1".into(),
            ..ActiveFault::default()
        }],
        session_secret: secret,
        ..Hello::default()
    };
    let mut again = FakeAgent::attach_with(&fleet, hello);
    again.welcome().await;
    let renewed = renewals(&mut again, "f-1", LEASE * 2).await;
    assert!(renewed.len() >= 5, "renewals carry on over the new stream: {renewed:?}");
    assert_eq!(fleet.held(), [("f-1".to_string(), "web-1".to_string(), "r-1".to_string())]);
    assert_eq!(fleet.lost_reason("f-1"), None);
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_reconnects_without_the_fault_makes_its_revert_report_it_lost() {
    let fleet = quiet_fleet();
    let mut first = FakeAgent::attach(&fleet, "web-1");
    first.welcome().await;
    apply(&fleet, &mut first, "f-1", Duration::from_secs(60)).await;
    drop(first);
    // Back within the lease but without the fault (the agent restarted, or its lease ran out on its clock).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut again = FakeAgent::attach(&fleet, "web-1");
    again.welcome().await;

    match fleet.revert_checked("f-1").await {
        Ok(Reverted::Lost(why)) => assert!(why.contains("no longer held it when it reconnected"), "{why}"),
        other => panic!("expected the fault lost, found {other:?}"),
    }
    assert_eq!(again.request_within(LEASE).await, None, "nothing to renew or revert");
}

#[tokio::test(start_paused = true)]
async fn halt_all_reaches_every_agent_and_ends_every_renewal() {
    let fleet = quiet_fleet();
    let mut web = FakeAgent::attach(&fleet, "web-1");
    let mut db = FakeAgent::attach(&fleet, "db-1");
    web.welcome().await;
    db.welcome().await;
    apply(&fleet, &mut web, "f-web", Duration::from_secs(60)).await;
    apply(&fleet, &mut db, "f-db", Duration::from_secs(60)).await;

    let halting = tokio::spawn({
        let fleet = fleet.clone();
        async move { fleet.halt_all("test", "tester", Duration::from_secs(5)).await }
    });
    for agent in [&mut web, &mut db] {
        let (request_id, body) = agent.request().await;
        assert!(matches!(body, Body::HaltAll(ref h) if h.reason == "test"), "{body:?}");
        let status = FaultStatus {
            request_id,
            state: FaultState::Halted.into(),
            reverted: 1,
            ..FaultStatus::default()
        };
        agent.send_status(status).await;
    }
    let report = halting.await.unwrap();
    assert_eq!(
        (report.acknowledged, report.missing, report.reverted),
        (vec!["db-1".to_string(), "web-1".to_string()], vec![], 2)
    );
    assert!(fleet.held().is_empty());
    for agent in [&mut web, &mut db] {
        assert_eq!(agent.request_within(LEASE * 2).await, None, "{}: no renewal after the halt", agent.id);
    }
}

#[tokio::test(start_paused = true)]
async fn an_expiry_the_agent_reports_makes_the_revert_report_the_fault_lost() {
    let fleet = quiet_fleet();
    let mut agent = FakeAgent::attach(&fleet, "web-1");
    agent.welcome().await;
    apply(&fleet, &mut agent, "f-1", Duration::from_secs(60)).await;

    let expired = FaultStatus {
        fault_id: "f-1".into(),
        state: FaultState::Expired.into(),
        detail: "the lease lapsed and the agent reverted the fault".into(),
        ..FaultStatus::default()
    };
    agent.send_status(expired).await;
    tokio::time::sleep(Duration::from_millis(10)).await;

    assert!(fleet.lost_reason("f-1").is_some_and(|why| why.contains("reported its lease lapsed")));
    match fleet.revert_checked("f-1").await {
        Ok(Reverted::Lost(why)) => assert!(why.contains("reported its lease lapsed"), "{why}"),
        other => panic!("expected the fault lost, found {other:?}"),
    }
    assert_eq!(agent.request_within(LEASE).await, None, "no renewal of an expired fault");
}

#[tokio::test(start_paused = true)]
async fn a_fault_whose_agent_stays_away_past_its_lease_is_lost() {
    let fleet = quiet_fleet();
    let mut agent = FakeAgent::attach(&fleet, "web-1");
    agent.welcome().await;
    apply(&fleet, &mut agent, "f-1", Duration::from_secs(60)).await;
    drop(agent);
    tokio::time::sleep(LEASE * 2).await;

    match fleet.revert_checked("f-1").await {
        Ok(Reverted::Lost(why)) => {
            assert!(why.contains("could not be reached before the lease it held lapsed"), "{why}")
        }
        other => panic!("expected the fault lost, found {other:?}"),
    }
}
