//! A real loopback gRPC controller written for the test, a real [`HostAgent`] (temp state dir, default
//! policy) and real `sleep` children to pause. Pausing needs root (or the same uid, which the children have).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use chaos_agent::policy::AgentPolicy;
use chaos_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use chaos_proto::v1::{HaltAll, Revert, Welcome};
use chaos_test_support::wait::poll_until_async as eventually;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Response, Streaming};

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chaos_proto::v1::controller_message::Body;
use chaos_proto::v1::{
    ActiveFault, AgentMessage, Apply, ControllerMessage, FaultState, FaultStatus, Hello, Plan, Renew,
    agent_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

use super::identity::BOOT_ID_PATH;
use super::*;

const TOKEN: &str = "s3cret-agent-token";
/// How long any awaited event may take before a test fails.
const WAIT: Duration = Duration::from_secs(5);
/// A lease that never lapses during a test.
const LONG_LEASE_MS: u64 = 30_000;

// === the test's controller ===

/// One stream the controller accepted: what the agent sends, and a sender of what the test says to it.
struct Session {
    inbound: Streaming<AgentMessage>,
    /// Dropping it ends the controller's half of the stream.
    outbound: Option<mpsc::Sender<ControllerMessage>>,
    next_request: u64,
}

#[derive(Clone)]
struct Service {
    sessions: mpsc::Sender<Session>,
    stop: CancellationToken,
    /// Refuse every agent, whatever its token.
    refuse: Arc<AtomicBool>,
    refusals: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl AgentService for Service {
    type ConnectStream = ReceiverStream<Result<ControllerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let presented = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if presented != Some(format!("Bearer {TOKEN}").as_str()) || self.refuse.load(Ordering::SeqCst) {
            self.refusals.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unauthenticated("unknown agent token"));
        }
        let (to_agent, mut from_test) = mpsc::channel::<ControllerMessage>(64);
        let (out, stream) = mpsc::channel(64);
        let stop = self.stop.clone();
        // Forwards what the test says until it drops its sender or the server stops: either ends the stream.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    message = from_test.recv() => match message {
                        Some(message) => if out.send(Ok(message)).await.is_err() { return },
                        None => return,
                    },
                }
            }
        });
        let session = Session { inbound: request.into_inner(), outbound: Some(to_agent), next_request: 1 };
        self.sessions.send(session).await.map_err(|_| Status::unavailable("the test is over"))?;
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}

struct Controller {
    addr: SocketAddr,
    sessions: mpsc::Receiver<Session>,
    stop: CancellationToken,
    server: JoinHandle<()>,
    refuse: Arc<AtomicBool>,
    refusals: Arc<AtomicUsize>,
}

impl Controller {
    async fn start() -> Controller {
        Controller::on("127.0.0.1:0".parse().unwrap()).await
    }

    async fn on(addr: SocketAddr) -> Controller {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (sessions_tx, sessions) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let service = Service {
            sessions: sessions_tx,
            stop: stop.clone(),
            refuse: Arc::new(AtomicBool::new(false)),
            refusals: Arc::new(AtomicUsize::new(0)),
        };
        let (refuse, refusals) = (service.refuse.clone(), service.refusals.clone());
        let server = tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(service))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.clone().cancelled_owned());
        let server = tokio::spawn(async move { server.await.unwrap() });
        Controller { addr, sessions, stop, server, refuse, refusals }
    }

    /// The next stream an agent opens.
    async fn accept(&mut self) -> Session {
        tokio::time::timeout(WAIT, self.sessions.recv()).await.expect("the agent connects in time").unwrap()
    }

    /// Ends every stream and stops listening; returns the address, free to bind again.
    async fn stop(self) -> SocketAddr {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.server).await.expect("the server stops in time").unwrap();
        self.addr
    }
}

impl Session {
    async fn next(&mut self) -> agent_message::Body {
        let message = tokio::time::timeout(WAIT, self.inbound.message()).await.expect("a message in time");
        message.expect("the stream is healthy").expect("the stream is open").body.expect("a body")
    }

    async fn hello(&mut self) -> Hello {
        match self.next().await {
            agent_message::Body::Hello(hello) => hello,
            other => panic!("expected a hello first, found {other:?}"),
        }
    }

    async fn welcome(&mut self, heartbeat_ms: u64) {
        self.send(0, Body::Welcome(Welcome { heartbeat_ms, ..Welcome::default() })).await;
    }

    async fn send(&mut self, request_id: u64, body: Body) {
        let message = ControllerMessage { request_id, body: Some(body) };
        self.outbound.as_ref().expect("the stream is open").send(message).await.unwrap();
    }

    /// Sends `body` as a new request and returns its id.
    async fn request(&mut self, body: Body) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.send(id, body).await;
        id
    }

    /// The answer to `request_id`, skipping heartbeats and other statuses.
    async fn status(&mut self, request_id: u64) -> FaultStatus {
        loop {
            if let agent_message::Body::FaultStatus(status) = self.next().await
                && status.request_id == request_id
            {
                return status;
            }
        }
    }

    /// Sends `body` and waits for its answer.
    async fn ask(&mut self, body: Body) -> FaultStatus {
        let id = self.request(body).await;
        self.status(id).await
    }

    /// Ends the controller's half of the stream, as a controller that drops an agent does.
    fn end(&mut self) {
        self.outbound = None;
    }
}

// === the agent side ===

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("chaos-remote-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(path.join("data")).unwrap();
        TempDir(path)
    }

    /// Inside the temp dir, so inside the default policy's `fill_paths`.
    fn data(&self) -> PathBuf {
        self.0.join("data")
    }

    fn data_files(&self) -> usize {
        std::fs::read_dir(self.data()).unwrap().count()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `sleep` child, killed and reaped when dropped ([`chaos_test_support::Victim`] with the agent's pid type).
struct Victim(chaos_test_support::Victim);

impl Victim {
    fn sleep() -> Victim {
        Victim(chaos_test_support::Victim::sleep())
    }

    fn pid(&self) -> i32 {
        self.0.pid() as i32
    }

    fn stopped(&self) -> bool {
        self.0.stopped()
    }

    fn running(&self) -> bool {
        self.0.running()
    }
}

fn start_agent(dir: &TempDir) -> HostAgent {
    HostAgent::start(dir.0.join("state"), AgentPolicy::default(), 7).unwrap().0
}

/// A running [`serve`] and the token that stops it.
struct Daemon {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), RemoteError>>,
}

impl Daemon {
    fn spawn(agent: &HostAgent, addr: SocketAddr, token: Option<&str>) -> Daemon {
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).unwrap();
        let mut options = ServeOptions::new(endpoint, "agent-1");
        options.token = token.map(str::to_string);
        options.labels = BTreeMap::from([("role".to_string(), "web".to_string())]);
        options.backoff_min = Duration::from_millis(10);
        options.backoff_max = Duration::from_millis(100);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(options, agent.clone(), shutdown.clone()));
        Daemon { shutdown, task }
    }

    async fn stop(self) -> Result<(), RemoteError> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task).await.expect("serve returns in time").unwrap()
    }
}

/// An agent connected to a controller: hello read, welcome sent.
struct Rig {
    dir: TempDir,
    agent: HostAgent,
    controller: Controller,
    session: Session,
    daemon: Daemon,
}

impl Rig {
    async fn start(heartbeat_ms: u64) -> Rig {
        let dir = TempDir::new();
        let agent = start_agent(&dir);
        let mut controller = Controller::start().await;
        let daemon = Daemon::spawn(&agent, controller.addr, Some(TOKEN));
        let mut session = controller.accept().await;
        session.hello().await;
        session.welcome(heartbeat_ms).await;
        Rig { dir, agent, controller, session, daemon }
    }
}

fn pause(pid: i32) -> String {
    format!(r#"{{"kind":"process-pause","target":{{"pid":{pid}}}}}"#)
}

fn apply(fault_id: &str, spec_json: String, lease_ms: u64) -> Body {
    Body::Apply(Apply {
        fault_id: fault_id.into(),
        run_id: "run-1".into(),
        spec_json,
        lease_ms,
        seed: 1,
        actor: "test".into(),
        pod: None,
    })
}

fn revert(fault_id: &str) -> Body {
    Body::Revert(Revert { fault_id: fault_id.into() })
}

fn renew(fault_id: &str, lease_ms: u64) -> Body {
    Body::Renew(Renew { fault_id: fault_id.into(), lease_ms })
}

fn state(status: &FaultStatus) -> FaultState {
    FaultState::try_from(status.state).unwrap()
}

// === the tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_says_who_the_agent_is_then_heartbeats_follow_the_welcome() {
    let dir = TempDir::new();
    let agent = start_agent(&dir);
    let mut controller = Controller::start().await;
    let daemon = Daemon::spawn(&agent, controller.addr, Some(TOKEN));
    let mut session = controller.accept().await;

    let hello = session.hello().await;
    assert_eq!(hello.agent_id, "agent-1");
    assert!(!hello.hostname.is_empty());
    assert_eq!(hello.labels, HashMap::from([("role".to_string(), "web".to_string())]));
    for kind in ["process-kill", "process-pause", "cpu-stress", "disk-fill"] {
        assert!(hello.capabilities.iter().any(|c| c == kind), "{kind} in {:?}", hello.capabilities);
    }
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    let boot_id = std::fs::read_to_string(BOOT_ID_PATH).unwrap();
    assert_eq!(hello.boot_id, boot_id.trim());
    assert_eq!(hello.boot_id.len(), 36, "a uuid: {}", hello.boot_id);
    assert!(hello.active_faults.is_empty());

    session.welcome(50).await;
    let mut beats = Vec::new();
    while beats.len() < 4 {
        if let agent_message::Body::Heartbeat(beat) = session.next().await {
            beats.push((Instant::now(), beat));
        }
    }
    let seqs: Vec<u64> = beats.iter().map(|(_, beat)| beat.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    // From the second on: the first follows the welcome at once, whatever its sample took.
    let spread = beats[3].0 - beats[1].0;
    assert!(spread >= Duration::from_millis(70), "two 50 ms intervals, found {spread:?}");
    assert!(spread < Duration::from_secs(2), "{spread:?}");
    let sample = beats[0].1.sample.unwrap();
    assert!(sample.cpus > 0 && sample.memory_total_bytes > 0, "{sample:?}");
    assert!((0.0..=1.0).contains(&sample.memory_used));
    assert_eq!(beats[0].1.active_faults, 0);
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_renew_and_revert_a_real_pause() {
    let mut rig = Rig::start(1000).await;
    let victim = Victim::sleep();

    let applied = rig.session.ask(apply("f-1", pause(victim.pid()), LONG_LEASE_MS)).await;
    assert_eq!((state(&applied), applied.fault_id.as_str()), (FaultState::Applied, "f-1"), "{applied:?}");
    assert!(applied.detail.contains(&victim.pid().to_string()), "{}", applied.detail);
    assert!(eventually(WAIT, || victim.stopped()).await, "the child is stopped");

    // A retried apply answers the same and applies nothing more.
    let again = rig.session.ask(apply("f-1", pause(victim.pid()), LONG_LEASE_MS)).await;
    assert_eq!((state(&again), again.detail.as_str()), (FaultState::Applied, applied.detail.as_str()));
    assert_eq!(rig.agent.active().len(), 1);

    let renewed = rig.session.ask(renew("f-1", LONG_LEASE_MS)).await;
    assert_eq!(state(&renewed), FaultState::Renewed, "{renewed:?}");
    let unknown = rig.session.ask(renew("f-none", LONG_LEASE_MS)).await;
    assert_eq!(state(&unknown), FaultState::Failed);
    assert!(unknown.detail.contains("not held"), "{}", unknown.detail);

    let reverted = rig.session.ask(revert("f-1")).await;
    assert_eq!((state(&reverted), reverted.fault_id.as_str()), (FaultState::Reverted, "f-1"));
    assert!(eventually(WAIT, || victim.running()).await, "the child runs again");
    assert!(rig.agent.active().is_empty());
    // Revert is idempotent; a renew after it is refused.
    assert_eq!(state(&rig.session.ask(revert("f-1")).await), FaultState::Reverted);
    assert_eq!(state(&rig.session.ask(renew("f-1", LONG_LEASE_MS)).await), FaultState::Failed);
    rig.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_sent_right_behind_its_apply_waits_for_it() {
    let mut rig = Rig::start(1000).await;
    let victim = Victim::sleep();
    let applying = rig.session.request(apply("f-1", pause(victim.pid()), LONG_LEASE_MS)).await;
    let reverting = rig.session.request(revert("f-1")).await;
    let mut answers = HashMap::new();
    while answers.len() < 2 {
        if let agent_message::Body::FaultStatus(status) = rig.session.next().await {
            answers.insert(status.request_id, state(&status));
        }
    }
    assert_eq!(answers[&applying], FaultState::Applied);
    assert_eq!(answers[&reverting], FaultState::Reverted);
    assert!(eventually(WAIT, || victim.running()).await, "the child runs again");
    assert!(rig.agent.active().is_empty());
    rig.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_all_reverts_every_fault_and_counts_them() {
    let mut rig = Rig::start(1000).await;
    let victim = Victim::sleep();
    let fill = format!(r#"{{"kind":"disk-fill","path":{:?},"size":"1MiB"}}"#, rig.dir.data());
    for (fault_id, spec) in [("f-pause", pause(victim.pid())), ("f-fill", fill)] {
        let applied = rig.session.ask(apply(fault_id, spec, LONG_LEASE_MS)).await;
        assert_eq!(state(&applied), FaultState::Applied, "{applied:?}");
    }
    assert!(eventually(WAIT, || victim.stopped()).await);
    assert_eq!(rig.dir.data_files(), 1);

    let halted = rig.session.ask(Body::HaltAll(HaltAll { reason: "test".into() })).await;
    assert_eq!((state(&halted), halted.reverted, halted.failed), (FaultState::Halted, 2, 0), "{halted:?}");
    assert!(victim.running(), "the child runs again once halted is answered");
    assert_eq!(rig.dir.data_files(), 0, "the fill file is gone");
    assert!(rig.agent.active().is_empty());
    // Nothing is left to renew.
    assert_eq!(state(&rig.session.ask(renew("f-pause", LONG_LEASE_MS)).await), FaultState::Failed);
    rig.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_fail_with_the_reason_and_change_nothing() {
    let mut rig = Rig::start(1000).await;
    let victim = Victim::sleep();

    let bad = rig.session.ask(apply("f-1", r#"{"kind":"process-pause","targte":{}}"#.into(), 1000)).await;
    assert_eq!((state(&bad), bad.fault_id.as_str()), (FaultState::Failed, "f-1"));
    assert!(bad.detail.contains("targte"), "names the unknown field: {}", bad.detail);
    let unknown_kind = rig.session.ask(apply("f-2", r#"{"kind":"melt-cpu"}"#.into(), 1000)).await;
    assert_eq!(state(&unknown_kind), FaultState::Failed);
    assert!(unknown_kind.detail.contains("melt-cpu"), "{}", unknown_kind.detail);
    let no_lease = rig.session.ask(apply("f-3", pause(victim.pid()), 0)).await;
    assert_eq!(state(&no_lease), FaultState::Failed);
    assert!(no_lease.detail.contains("lease"), "{}", no_lease.detail);
    let too_long = rig.session.ask(apply("f-4", pause(victim.pid()), 2 * 3600 * 1000)).await;
    assert_eq!(state(&too_long), FaultState::Failed);
    assert!(too_long.detail.contains("policy"), "{}", too_long.detail);
    assert!(rig.agent.active().is_empty());
    assert!(victim.running());

    // A plan says what would be hit and changes nothing.
    let plan = Plan { spec_json: pause(victim.pid()), lease_ms: 1000, seed: 1, pod: None };
    let planned = rig.session.ask(Body::Plan(plan)).await;
    assert_eq!(state(&planned), FaultState::Planned, "{planned:?}");
    assert!(planned.detail.contains(&format!("process-pause on pid {}", victim.pid())), "{}", planned.detail);
    let plan = Plan { spec_json: "{".into(), lease_ms: 0, seed: 1, pod: None };
    assert_eq!(state(&rig.session.ask(Body::Plan(plan)).await), FaultState::Failed);
    // A pod this node's runtime does not have (or no runtime at all): refused, nothing applied.
    let pod = chaos_proto::v1::PodRef {
        namespace: "shop".into(),
        name: "cart-1".into(),
        sandbox_id: "sb-1".into(),
        container: "cart".into(),
    };
    let mut in_pod = apply("f-5", r#"{"kind":"network-partition"}"#.into(), 1000);
    if let Body::Apply(a) = &mut in_pod {
        a.pod = Some(pod);
    }
    let refused = rig.session.ask(in_pod).await;
    assert_eq!(state(&refused), FaultState::Failed, "{refused:?}");
    assert!(refused.detail.contains("CRI") || refused.detail.contains("shop/cart-1"), "{}", refused.detail);
    assert!(rig.agent.active().is_empty());
    assert!(victim.running());
    rig.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_controller_cannot_leave_a_fault_past_its_lease() {
    let mut rig = Rig::start(1000).await;
    let victim = Victim::sleep();
    let sent_at = Instant::now();
    let applied = rig.session.ask(apply("f-1", pause(victim.pid()), 300)).await;
    assert_eq!(state(&applied), FaultState::Applied, "{applied:?}");
    assert!(eventually(WAIT, || victim.stopped()).await);

    // The controller goes away: no renewal comes, and nobody can revert the fault but the agent itself.
    let addr = rig.controller.stop().await;
    let reverted = || victim.running() && rig.agent.active().is_empty();
    assert!(eventually(Duration::from_secs(2), reverted).await, "the lease reverts the pause");
    // The lease counts from receipt, after the send: the revert cannot come sooner.
    assert!(sent_at.elapsed() >= Duration::from_millis(300), "not before the lease lapsed");

    // A controller back on the same address hears that nothing is held.
    let mut controller = Controller::on(addr).await;
    let mut session = controller.accept().await;
    let hello = session.hello().await;
    assert!(hello.active_faults.is_empty(), "{:?}", hello.active_faults);
    session.welcome(1000).await;
    rig.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_held_across_a_broken_stream_are_listed_in_the_next_hello() {
    let mut rig = Rig::start(1000).await;
    let victim = Victim::sleep();
    let applied = rig.session.ask(apply("f-7", pause(victim.pid()), LONG_LEASE_MS)).await;
    assert_eq!(state(&applied), FaultState::Applied);

    rig.session.end();
    let mut session = rig.controller.accept().await;
    let hello = session.hello().await;
    let listed = ActiveFault {
        fault_id: "f-7".into(),
        run_id: "run-1".into(),
        kind: "process-pause".into(),
        description: applied.detail.clone(),
    };
    assert_eq!(hello.active_faults, [listed]);
    assert!(victim.stopped(), "the fault survived the broken stream");

    // The new session serves the fault the old one applied.
    session.welcome(1000).await;
    assert_eq!(state(&session.ask(renew("f-7", LONG_LEASE_MS)).await), FaultState::Renewed);
    assert_eq!(state(&session.ask(revert("f-7")).await), FaultState::Reverted);
    assert!(eventually(WAIT, || victim.running()).await);
    rig.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_is_reported_expired_once() {
    let mut rig = Rig::start(50).await;
    let victim = Victim::sleep();
    let applied = rig.session.ask(apply("f-1", pause(victim.pid()), 200)).await;
    assert_eq!(state(&applied), FaultState::Applied);

    let expired = rig.session.status(0).await;
    assert_eq!((state(&expired), expired.fault_id.as_str()), (FaultState::Expired, "f-1"), "{expired:?}");
    assert!(victim.running(), "reverted before it is reported");
    // Later heartbeats count nothing held and no second EXPIRED comes.
    for _ in 0..4 {
        match rig.session.next().await {
            agent_message::Body::Heartbeat(beat) => assert_eq!(beat.active_faults, 0),
            other => panic!("expected heartbeats only, found {other:?}"),
        }
    }
    rig.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_on_the_first_attempt_stops_serve() {
    let dir = TempDir::new();
    let agent = start_agent(&dir);
    let controller = Controller::start().await;
    for token in [Some("wrong"), None] {
        let daemon = Daemon::spawn(&agent, controller.addr, token);
        let result = tokio::time::timeout(WAIT, daemon.task).await.expect("serve gives up at once").unwrap();
        let err = result.unwrap_err();
        assert!(matches!(err, RemoteError::Refused { code: Code::Unauthenticated, .. }), "{err:?}");
        assert_eq!(err.to_string(), "the controller refused this agent: unknown agent token (check --token)");
    }
    let err = serve(
        ServeOptions {
            token: Some("new\nline".into()),
            ..ServeOptions::new(Endpoint::from_static("http://x"), "a")
        },
        agent.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RemoteError::Token { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_after_a_welcome_are_retried() {
    let mut rig = Rig::start(1000).await;
    rig.controller.refuse.store(true, Ordering::SeqCst);
    rig.session.end();
    assert!(eventually(WAIT, || rig.controller.refusals.load(Ordering::SeqCst) >= 2).await);
    assert!(!rig.daemon.task.is_finished(), "serve keeps trying");
    rig.controller.refuse.store(false, Ordering::SeqCst);
    let mut session = rig.controller.accept().await;
    session.hello().await;
    rig.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reverts_what_the_agent_holds() {
    let mut rig = Rig::start(1000).await;
    let victim = Victim::sleep();
    let applied = rig.session.ask(apply("f-1", pause(victim.pid()), LONG_LEASE_MS)).await;
    assert_eq!(state(&applied), FaultState::Applied);
    assert!(eventually(WAIT, || victim.stopped()).await);

    rig.daemon.stop().await.unwrap();
    assert!(victim.running(), "reverted before serve returned");
    assert!(rig.agent.active().is_empty());
}

#[test]
fn backoff_doubles_up_to_its_cap_with_jitter_and_resets() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let windows = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
    for window in windows {
        let delay = backoff.next_delay(&mut rng);
        let window = Duration::from_millis(window);
        assert!(delay >= window / 2 && delay <= window, "{delay:?} in the upper half of {window:?}");
    }
    backoff.reset();
    assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_hello_carries_the_secret_of_the_last_welcome() {
    let dir = TempDir::new();
    let agent = start_agent(&dir);
    let mut controller = Controller::start().await;
    let daemon = Daemon::spawn(&agent, controller.addr, Some(TOKEN));
    let mut session = controller.accept().await;
    assert_eq!(session.hello().await.session_secret, "", "nothing to prove on the first dial");
    let welcome = Welcome { heartbeat_ms: 1000, session_secret: "s3cr3t-of-session-1".into() };
    session.send(0, Body::Welcome(welcome)).await;
    // The stream breaks (half-dead on the controller's side, say): the agent dials again and proves who it is.
    session.end();
    let mut again = controller.accept().await;
    assert_eq!(again.hello().await.session_secret, "s3cr3t-of-session-1");
    again.welcome(1000).await;
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_runs_only_if_the_policy_allows_it_and_its_result_answers_the_request() {
    let mut rig = Rig::start(1000).await;
    // The rig's agent has the default policy: no probe command at all.
    let marker = rig.dir.0.join("probe-ran");
    let probe = |argv: Vec<String>| {
        Body::RunProbe(chaos_proto::v1::RunProbe {
            name: "who".into(),
            run_id: "run-1".into(),
            argv,
            timeout_ms: 2000,
            max_output_bytes: 0,
            check_only: false,
        })
    };
    let touch = vec!["/usr/bin/touch".to_string(), marker.display().to_string()];
    let id = rig.session.request(probe(touch)).await;
    let result = loop {
        if let agent_message::Body::ProbeResult(result) = rig.session.next().await
            && result.request_id == id
        {
            break result;
        }
    };
    assert!(result.error.contains("'probe-commands'"), "{result:?}");
    assert!(!marker.exists(), "the refused probe did not run");
    rig.daemon.stop().await.unwrap();
}
