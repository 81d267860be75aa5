//! The fleet's liveness judgement in tokio's paused time, with no socket: agents are the test speaking the
//! protocol over in-memory channels straight into [`Fleet::attach`], so a clock jump (a SIGSTOP or VM pause of
//! the controller) happens exactly where the test says and each test runs in milliseconds.

// Test helpers outside `#[test]` functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chaos_controller::fleet::{Fleet, FleetConfig, Health};
use chaos_controller::store::{SqliteStore, StoreHandle};
use chaos_proto::v1::{AgentMessage, ControllerMessage, Heartbeat, Hello, agent_message};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

const HEARTBEAT: Duration = Duration::from_secs(1);

/// One agent as the controller sees it: what it sends, and the stream the controller answers on.
struct FakeAgent {
    id: String,
    tx: mpsc::Sender<Result<AgentMessage, Status>>,
    outbound: ReceiverStream<Result<ControllerMessage, Status>>,
    seq: u64,
}

impl FakeAgent {
    fn attach(fleet: &Fleet, id: &str) -> FakeAgent {
        let (tx, rx) = mpsc::channel(64);
        let hello = Hello { agent_id: id.to_string(), hostname: format!("{id}.test"), ..Hello::default() };
        let outbound = fleet.attach(hello, "memory".into(), ReceiverStream::new(rx)).expect("attached");
        FakeAgent { id: id.to_string(), tx, outbound, seq: 0 }
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

fn fleet() -> (Fleet, CancellationToken) {
    let store = StoreHandle::new(Arc::new(SqliteStore::in_memory().expect("an in-memory store")));
    let config = FleetConfig { heartbeat: HEARTBEAT, ..FleetConfig::default() };
    let fleet = Fleet::new(config, store);
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
