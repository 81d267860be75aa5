//! The controller's `Fleet` and a real agent (`chaos_agent::remote::serve_over` around a `HostAgent`) over
//! in-memory streams (`tokio::io::duplex` under tonic on both ends), in tokio's paused time: no socket, no
//! port, and leases of seconds that pass in milliseconds. The fault is a real pause of a `sleep` child
//! (pausing it needs the same uid as the child, which the test has, or root).

// Test helpers outside `#[test]` functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chaos_agent::host::HostAgent;
use chaos_agent::policy::AgentPolicy;
use chaos_agent::remote::{Connector, ServeOptions, serve_over};
use chaos_controller::fleet::{ApplyRequest, Fleet, FleetConfig, Reverted};
use chaos_controller::store::{SqliteStore, StoreHandle};
use chaos_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use chaos_proto::v1::{AgentMessage, ControllerMessage, agent_message, controller_message};
use fleet_support::{TempDir, Victim};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

const HEARTBEAT: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(3);

/// The agents' service with no token check: the hello, then `Fleet::attach` (what the controller's does).
struct Direct(Fleet);

#[tonic::async_trait]
impl AgentService for Direct {
    type ConnectStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send + 'static>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(AgentMessage { body: Some(agent_message::Body::Hello(hello)) })) => hello,
            other => return Err(Status::invalid_argument(format!("expected a hello, found {other:?}"))),
        };
        let outbound =
            self.0.attach(hello, "memory".into(), inbound).map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(Box::pin(outbound)))
    }
}

/// A fleet served over in-memory connections, one real agent connected to it, and a victim to pause.
struct Rig {
    fleet: Fleet,
    store: StoreHandle,
    agent: HostAgent,
    victim: Victim,
    stop: CancellationToken,
    _dir: TempDir,
}

impl Rig {
    async fn start(name: &str) -> Rig {
        let store = StoreHandle::new(Arc::new(SqliteStore::in_memory().unwrap()));
        let config = FleetConfig { heartbeat: HEARTBEAT, lease: LEASE, ..FleetConfig::default() };
        let fleet = Fleet::new(config, store.clone());
        let stop = CancellationToken::new();
        tokio::spawn({
            let (fleet, stop) = (fleet.clone(), stop.clone());
            async move { fleet.reap_silent(stop).await }
        });
        let (connections, incoming) = mpsc::channel::<std::io::Result<tokio::io::DuplexStream>>(8);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(Direct(fleet.clone())))
                .serve_with_incoming_shutdown(ReceiverStream::new(incoming), stop.clone().cancelled_owned()),
        );
        let connect: Connector = Arc::new(move || {
            let connections = connections.clone();
            Box::pin(async move {
                let (agent_end, controller_end) = tokio::io::duplex(64 * 1024);
                connections
                    .send(Ok(controller_end))
                    .await
                    .map_err(|_| std::io::Error::other("the server is gone"))?;
                Ok(agent_end)
            })
        });

        let dir = TempDir::new(name);
        let state = dir.path().join("agent");
        let agent = tokio::task::spawn_blocking(move || {
            HostAgent::start(state, AgentPolicy::default(), 7).unwrap().0
        })
        .await
        .unwrap();
        let endpoint = tonic::transport::Endpoint::from_static("http://in-memory");
        tokio::spawn({
            let (agent, stop) = (agent.clone(), stop.clone());
            async move { serve_over(ServeOptions::new(endpoint, "web-1"), connect, agent, stop).await }
        });
        let rig = Rig { fleet, store, agent, victim: Victim::spawn(), stop, _dir: dir };
        rig.until("the agent to connect", || rig.fleet.connected() == ["web-1"]).await;
        rig
    }

    /// Waits (in paused time, 10 ms steps) until `condition` holds; panics after 30 s of it.
    async fn until(&self, what: &str, mut condition: impl FnMut() -> bool) {
        for _ in 0..3000 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// Waits until the victim is stopped (`true`) or running (`false`) on a blocking thread, polling `/proc`
    /// in real time for up to 10 s: a signal's effect is the kernel's business, and tokio's paused clock does
    /// not move while a blocking task runs, so no lease passes meanwhile.
    async fn victim(&self, stopped: bool) {
        let stat = format!("/proc/{}/stat", self.victim.pid());
        let reached = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                let text = std::fs::read_to_string(&stat).unwrap_or_default();
                let state = text.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
                if (state == Some("T")) == stopped {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            false
        });
        assert!(
            reached.await.unwrap(),
            "the victim is not {} after 10 s",
            if stopped { "stopped" } else { "running" }
        );
    }

    fn pause(&self, fault_id: &str) -> ApplyRequest {
        ApplyRequest {
            agent: "web-1".into(),
            run: "r-1".into(),
            fault_id: fault_id.into(),
            spec_json: format!(r#"{{"kind":"process-pause","target":{{"pid":{}}}}}"#, self.victim.pid()),
            duration: Some(Duration::from_secs(60)),
            seed: 7,
            actor: "test".into(),
            pod: None,
        }
    }

    async fn audit_actions(&self) -> Vec<String> {
        let entries = self.store.call(|s| s.audit(1000, None)).await.unwrap();
        entries.into_iter().map(|a| a.entry.action).collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[tokio::test(start_paused = true)]
async fn a_leased_pause_is_renewed_past_its_lease_kept_across_a_reconnect_and_halted() {
    let rig = Rig::start("memory-agent").await;
    rig.fleet.apply(rig.pause("f-1")).await.unwrap();
    rig.victim(true).await;

    // Three leases long: only the renewals keep the pause.
    tokio::time::sleep(LEASE * 3).await;
    assert!(rig.victim.stopped() && rig.agent.active().len() == 1, "renewed past its first lease");
    assert_eq!(rig.fleet.connected(), ["web-1"], "the agent's heartbeats keep it connected");

    // The stream ends; the agent dials again with the fault in its hello; renewals go on over the new stream.
    rig.fleet.close_all();
    rig.until("the agent to reconnect", || rig.fleet.connected() == ["web-1"]).await;
    tokio::time::sleep(LEASE * 3).await;
    assert!(rig.victim.stopped(), "kept under its lease across the reconnect");
    assert_eq!(rig.fleet.held().len(), 1);
    assert_eq!(rig.fleet.lost_reason("f-1"), None);

    let report = rig.fleet.halt_all("test", "tester", Duration::from_secs(5)).await;
    assert_eq!((report.acknowledged, report.reverted), (vec!["web-1".to_string()], 1));
    rig.victim(false).await;
    assert!(rig.agent.active().is_empty() && rig.fleet.held().is_empty());
    assert_eq!(rig.fleet.revert_checked("f-1").await, Ok(Reverted::Done), "a halted fault is gone, not lost");
}

#[tokio::test(start_paused = true)]
async fn a_pause_reverted_by_the_run_ends_at_once_and_is_not_renewed() {
    let rig = Rig::start("memory-revert").await;
    rig.fleet.apply(rig.pause("f-1")).await.unwrap();
    rig.victim(true).await;
    assert_eq!(rig.fleet.revert_checked("f-1").await, Ok(Reverted::Done));
    rig.victim(false).await;
    assert!(rig.agent.active().is_empty());
    tokio::time::sleep(LEASE * 2).await;
    assert!(rig.victim.running());
    let actions = rig.audit_actions().await;
    assert!(
        actions.contains(&"fault_applied".to_string()) && actions.contains(&"fault_reverted".to_string()),
        "{actions:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_left_to_lapse_is_reverted_by_the_agent_and_reported_expired() {
    let rig = Rig::start("memory-expiry").await;
    // Applied with a 1 s lease and no renewer (a request of its own, not `Fleet::apply`): the agent's lease
    // is all that ends it.
    let apply = controller_message::Body::Apply(chaos_proto::v1::Apply {
        fault_id: "f-1".into(),
        run_id: "r-1".into(),
        spec_json: rig.pause("f-1").spec_json,
        lease_ms: 1000,
        seed: 7,
        actor: "test".into(),
        pod: None,
    });
    rig.fleet.request("web-1", apply).await.unwrap();
    rig.victim(true).await;

    // The agent's lease resumes it (1 s of paused time: the until loop moves the clock).
    rig.until("the agent's lease to lapse", || rig.agent.active().is_empty()).await;
    rig.victim(false).await;
    for _ in 0..300 {
        if rig.audit_actions().await.contains(&"fault_expired".to_string()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no expiry reported: {:?}", rig.audit_actions().await);
}
