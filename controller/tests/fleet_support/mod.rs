//! Helpers for the fleet tests: a real controller on 127.0.0.1:0 with its own data directory, run on a runtime
//! of its own so that a test can stop it gracefully or kill it (every task dropped at once: no revert, no
//! renewal is sent any more, as when the process dies); in-process agents (`chaos_agent::remote::serve` with a
//! real `HostAgent` and its own state directory); `sleep` children as fault targets; a TCP relay whose
//! connections a test can cut; API clients; and waits on conditions with deadlines. Temp dirs, victims and
//! waits are `chaos-test-support`'s.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos_agent::host::HostAgent;
use chaos_agent::policy::AgentPolicy;
use chaos_agent::remote::{RemoteError, ServeOptions};
use chaos_controller::fleet::FleetConfig;
use chaos_controller::server::{Controller, ControllerConfig, Limits};
use chaos_proto::transport::{ClientConfig, WithToken};
use chaos_proto::v1::controller_service_client::ControllerServiceClient;
use chaos_proto::v1::{
    Agent as AgentView, AuditEntry, ListAgentsRequest, ListAuditRequest, ListRunsRequest, Run, RunEvent,
    StartRunRequest, SubmitExperimentRequest, WatchRunRequest, start_run_request,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The API token the controllers accept, named `ci` (the actor the audit log shows).
pub const API_TOKEN: &str = "ci-api-token-0123456789abcdef";
/// The name of [`API_TOKEN`].
pub const API_NAME: &str = "ci";
/// An enrolment token any agent id may use.
pub const AGENT_TOKEN: &str = "agent-token-0123456789abcdef";
/// An enrolment token only the agent `web-1` may use.
pub const WEB1_TOKEN: &str = "web-1-only-token-0123456789abcdef";
/// How long anything a test waits for may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

// === directories ===

/// A fresh directory under the system temp dir (so inside the default agent policy's fill paths), removed on
/// drop.
pub struct TempDir(chaos_test_support::TempDir);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        TempDir(chaos_test_support::TempDir::new(&format!("fleet-{name}")))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

// === the controller ===

/// Fleet timing for tests: short heartbeats and leases, so lapses and reaping happen within a second or two.
pub fn fleet(heartbeat_ms: u64, lease_ms: u64) -> FleetConfig {
    FleetConfig {
        heartbeat: Duration::from_millis(heartbeat_ms),
        lease: Duration::from_millis(lease_ms),
        request_timeout: Duration::from_secs(3),
        ..FleetConfig::default()
    }
}

/// A controller configuration on 127.0.0.1:0 with its data (database and token files) in `data_dir`.
pub fn config(data_dir: &Path, fleet: FleetConfig) -> ControllerConfig {
    ControllerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        api_token_file: None,
        agent_token_file: None,
        tls: None,
        fleet,
        limits: Limits::default(),
        max_message_bytes: chaos_proto::MAX_MESSAGE_BYTES,
        ui_listen: None,
        notify: chaos_controller::notify::NotifyConfig::default(),
    }
}

/// Writes the token files a controller reads from its data directory, unless they exist already (a restart):
/// [`API_TOKEN`] as `ci`; [`AGENT_TOKEN`] for any agent and [`WEB1_TOKEN`] for `web-1` only.
fn write_tokens(data_dir: &Path) {
    std::fs::create_dir_all(data_dir).unwrap();
    let api = data_dir.join("api.token");
    if !api.exists() {
        std::fs::write(&api, format!("{API_NAME} {API_TOKEN}\n")).unwrap();
    }
    let agents = data_dir.join("agent.token");
    if !agents.exists() {
        std::fs::write(&agents, format!("{AGENT_TOKEN}\nweb-1 {WEB1_TOKEN}\n")).unwrap();
    }
}

/// A controller serving on a thread and runtime of its own.
pub struct RunningController {
    pub addr: SocketAddr,
    /// The web console's address, when the configuration asked for one (`ui_listen`).
    pub ui_addr: Option<SocketAddr>,
    pub config: ControllerConfig,
    /// The runs it marked interrupted when it opened its store (left `running` by a predecessor).
    pub interrupted: Vec<String>,
    shutdown: CancellationToken,
    /// Dropping or sending it kills the controller.
    kill: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningController {
    /// Binds (retrying for a while if the port is still taken, as after a restart on the same address) and
    /// serves.
    pub async fn start(config: ControllerConfig) -> RunningController {
        write_tokens(&config.data_dir);
        RunningController::start_as_is(config).await
    }

    /// Like [`RunningController::start`] but without writing the token files first: the controller creates its
    /// data directory and token files itself (read the API token with [`RunningController::api_token`]).
    pub async fn start_creating_tokens(config: ControllerConfig) -> RunningController {
        RunningController::start_as_is(config).await
    }

    /// The first API token in the data directory's `api.token`.
    pub fn api_token(&self) -> String {
        let text = std::fs::read_to_string(self.config.data_dir.join("api.token")).unwrap();
        text.split_whitespace().last().unwrap().to_string()
    }

    async fn start_as_is(config: ControllerConfig) -> RunningController {
        let (ready_tx, ready) = oneshot::channel();
        let (kill, killed) = oneshot::channel::<()>();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let bind_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("controller".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async move {
                    let (controller, interrupted) = match bind(bind_config).await {
                        Ok(bound) => bound,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok((controller.local_addr, controller.ui_addr, interrupted)));
                    tokio::select! {
                        served = controller.serve(stop) => served.unwrap(),
                        _ = killed => {}
                    }
                });
                // Every task of the controller is dropped here, none runs again: what a dead process does.
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .unwrap();
        let (addr, ui_addr, interrupted) = tokio::time::timeout(WAIT, ready)
            .await
            .expect("the controller binds in time")
            .unwrap()
            .unwrap_or_else(|e| panic!("the controller could not start: {e}"));
        let mut config = config;
        config.listen = addr;
        config.ui_listen = ui_addr;
        RunningController {
            addr,
            ui_addr,
            config,
            interrupted,
            shutdown,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client with the valid API token.
    pub async fn client(&self) -> Client {
        client(self.addr, Some(API_TOKEN)).await
    }

    /// Stops gracefully: runs in progress are halted and reverted before the server stops. Panics if `serve`
    /// has not returned within `within` (the controller is then killed as it is dropped).
    pub async fn stop(mut self, within: Duration) {
        self.shutdown.cancel();
        let thread = self.thread.take().unwrap();
        let joined = tokio::task::spawn_blocking(move || thread.join());
        // A thread that never ends is left to the kill below (dropping `self` drops the kill sender).
        let joined = tokio::time::timeout(within, joined).await;
        assert!(joined.is_ok(), "the controller's serve did not return within {within:?} of its shutdown");
        joined.unwrap().unwrap().expect("the controller thread did not panic");
    }

    /// Kills the controller: every one of its tasks is dropped at once, so nothing is reverted, renewed or
    /// answered any more and its connections close.
    pub async fn kill(mut self) {
        drop(self.kill.take());
        let thread = self.thread.take().unwrap();
        join(thread).await;
    }

    /// The same configuration again (same data directory, same address): for a restart.
    pub fn restart_config(&self) -> ControllerConfig {
        self.config.clone()
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        drop(self.kill.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn join(thread: std::thread::JoinHandle<()>) {
    let joined = tokio::task::spawn_blocking(move || thread.join());
    tokio::time::timeout(WAIT, joined)
        .await
        .expect("the controller thread ends in time")
        .unwrap()
        .expect("the controller thread did not panic");
}

/// `Controller::bind`, retried while the address is in use; the runs marked interrupted over every attempt.
async fn bind(config: ControllerConfig) -> Result<(Controller, Vec<String>), String> {
    let deadline = Instant::now() + WAIT;
    let mut interrupted = Vec::new();
    loop {
        match Controller::bind(config.clone()).await {
            Ok(controller) => {
                interrupted.extend(controller.interrupted.iter().cloned());
                return Ok((controller, interrupted));
            }
            Err(e) if e.to_string().contains("in use") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

// === API clients ===

pub type Client = ControllerServiceClient<InterceptedService<Channel, WithToken>>;

/// A client of the controller at `addr` sending `token` (none with `None`).
pub async fn client(addr: SocketAddr, token: Option<&str>) -> Client {
    let config = ClientConfig { url: format!("http://{addr}"), ..ClientConfig::default() };
    let channel = chaos_proto::transport::channel(&config).await.unwrap();
    ControllerServiceClient::with_interceptor(channel, WithToken::new(token).unwrap())
}

/// An experiment to submit inline.
pub fn submit(source: &str) -> SubmitExperimentRequest {
    SubmitExperimentRequest { source: source.to_string(), file: "fleet.yaml".into(), vars: HashMap::new() }
}

/// StartRun of an experiment submitted inline.
pub async fn start_run(client: &Client, source: &str, seed: u64, dry_run: bool) -> Result<Run, Status> {
    let request = StartRunRequest {
        experiment: Some(start_run_request::Experiment::Submit(submit(source))),
        seed: Some(seed),
        dry_run,
    };
    client.clone().start_run(request).await.map(tonic::Response::into_inner)
}

/// Every event of run `id` up to its `finished` event.
pub async fn watch(client: &Client, id: &str) -> Vec<RunEvent> {
    let mut stream =
        client.clone().watch_run(WatchRunRequest { id: id.to_string() }).await.unwrap().into_inner();
    let mut events = Vec::new();
    let read = async {
        while let Some(event) = stream.message().await.unwrap() {
            let finished = event.kind == "finished";
            events.push(event);
            if finished {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("the run finishes in time");
    events
}

pub async fn get_run(client: &Client, id: &str) -> Run {
    let request = chaos_proto::v1::GetRunRequest { id: id.to_string() };
    client.clone().get_run(request).await.unwrap().into_inner()
}

pub async fn runs(client: &Client) -> Vec<Run> {
    client.clone().list_runs(ListRunsRequest::default()).await.unwrap().into_inner().runs
}

/// The audit log, up to 1000 entries.
pub async fn audit(client: &Client) -> Vec<AuditEntry> {
    let request = ListAuditRequest { limit: 1000, run_id: String::new() };
    client.clone().list_audit(request).await.unwrap().into_inner().entries
}

/// Audit entries with `action`.
pub async fn audit_of(client: &Client, action: &str) -> Vec<AuditEntry> {
    audit(client).await.into_iter().filter(|e| e.action == action).collect()
}

pub async fn agents(client: &Client) -> Vec<AgentView> {
    client.clone().list_agents(ListAgentsRequest::default()).await.unwrap().into_inner().agents
}

/// Waits until every agent in `ids` is listed as connected.
pub async fn wait_connected(client: &Client, ids: &[&str]) {
    let what = format!("agents {ids:?} connected");
    wait_for(&what, WAIT, || async {
        let listed = agents(client).await;
        ids.iter().all(|id| listed.iter().any(|a| a.id == *id && a.health == "connected")).then_some(())
    })
    .await;
}

/// Waits until run `id` has state `state`.
pub async fn wait_state(client: &Client, id: &str, state: &str) -> Run {
    let what = format!("run {id} in state {state}");
    wait_for(&what, WAIT, || async {
        let run = get_run(client, id).await;
        (run.state == state).then_some(run)
    })
    .await
}

// === agents ===

/// An in-process agent: `remote::serve` with a real `HostAgent` on a state directory of its own.
pub struct Agent {
    pub id: String,
    pub host: HostAgent,
    /// The host agent's state directory (its undo journal is `journal/` in it).
    pub state_dir: PathBuf,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), RemoteError>>>,
    _state: TempDir,
}

/// How an agent is started.
pub struct AgentOptions {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub token: Option<String>,
    pub policy: AgentPolicy,
}

impl AgentOptions {
    /// Id `id`, labels `labels`, the token that enrols it ([`WEB1_TOKEN`] for `web-1`, whose id that token
    /// reserves; [`AGENT_TOKEN`] for any other), the default policy.
    pub fn new(id: &str, labels: &[(&str, &str)]) -> AgentOptions {
        let token = if id == "web-1" { WEB1_TOKEN } else { AGENT_TOKEN };
        AgentOptions {
            id: id.to_string(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            token: Some(token.to_string()),
            policy: AgentPolicy::default(),
        }
    }
}

impl Agent {
    /// An agent `id` with `labels` and the default policy, dialling `addr` with its token
    /// ([`AgentOptions::new`]).
    pub async fn start(addr: SocketAddr, id: &str, labels: &[(&str, &str)]) -> Agent {
        Agent::start_with(addr, AgentOptions::new(id, labels)).await
    }

    pub async fn start_with(addr: SocketAddr, options: AgentOptions) -> Agent {
        let state = TempDir::new(&format!("agent-{}", options.id));
        let dir = state.path().join("state");
        let state_dir = dir.clone();
        let policy = options.policy.clone();
        let host =
            tokio::task::spawn_blocking(move || HostAgent::start(dir, policy, 7).unwrap().0).await.unwrap();
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).unwrap();
        let mut serve = ServeOptions::new(endpoint, options.id.clone());
        serve.token = options.token;
        serve.labels = options.labels;
        serve.backoff_min = Duration::from_millis(50);
        serve.backoff_max = Duration::from_millis(200);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(chaos_agent::remote::serve(serve, host.clone(), shutdown.clone()));
        Agent { id: options.id, host, state_dir, shutdown, task: Some(task), _state: state }
    }

    /// Stops `serve` (it reverts what the agent holds) and returns its result.
    pub async fn stop(mut self) -> Result<(), RemoteError> {
        self.shutdown.cancel();
        self.finished(WAIT).await.expect("serve returns once stopped")
    }

    /// What `serve` returned, if it returns within `within` by itself.
    pub async fn finished(&mut self, within: Duration) -> Option<Result<(), RemoteError>> {
        let task = self.task.as_mut()?;
        let result = tokio::time::timeout(within, task).await.ok()?.unwrap();
        self.task = None;
        Some(result)
    }

    /// How many faults the agent's host agent holds.
    pub fn active(&self) -> usize {
        self.host.active().len()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

// === fault targets ===

/// A `sleep` child with a command line no other process has, killed and reaped on drop
/// ([`chaos_test_support::Victim`]: `state`, `stopped`, `running`).
pub struct Victim {
    inner: chaos_test_support::Victim,
    /// A regex matching exactly this child's command line.
    pub cmdline: String,
}

impl Victim {
    pub fn spawn() -> Victim {
        let inner = chaos_test_support::Victim::sleep();
        Victim { cmdline: inner.marker.clone(), inner }
    }
}

impl std::ops::Deref for Victim {
    type Target = chaos_test_support::Victim;

    fn deref(&self) -> &chaos_test_support::Victim {
        &self.inner
    }
}

// === waiting ===

pub use chaos_test_support::wait::{holds_for, wait_for};

/// Polls `condition` every 5 ms until it holds, or panics naming `what` once `within` has passed.
pub async fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let every = Duration::from_millis(5);
    chaos_test_support::wait::wait_until_async(what, within, every, async || condition()).await;
}

// === other servers ===

/// A TCP relay to `target` whose open connections [`Relay::cut`] closes at once (new ones are relayed again):
/// a network cut between an agent and its controller that both ends notice.
pub struct Relay {
    pub addr: SocketAddr,
    cut: Arc<Mutex<CancellationToken>>,
    /// New connections are closed at once until then ([`Relay::cut_for`]).
    blocked_until: Arc<Mutex<Option<Instant>>>,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let blocked_until: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (current, blocked) = (cut.clone(), blocked_until.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if blocked.lock().unwrap().is_some_and(|until| Instant::now() < until) {
                    continue; // dropped: the link is down
                }
                let cancelled = current.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cancelled.cancelled() => {}
                    }
                });
            }
        });
        Relay { addr, cut, blocked_until, task }
    }

    /// Closes every connection open now and refuses new ones for `down`: an outage both ends notice, longer
    /// than a reconnect.
    pub fn cut_for(&self, down: Duration) {
        *self.blocked_until.lock().unwrap() = Some(Instant::now() + down);
        self.cut();
    }

    /// Closes every connection open now.
    pub fn cut(&self) {
        let mut current = self.cut.lock().unwrap();
        current.cancel();
        *current = CancellationToken::new();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.lock().unwrap().cancel();
    }
}

/// A tiny HTTP server answering 200 `ok` to everything, for load; returns its address and the request count.
pub async fn http_ok() -> (SocketAddr, Arc<AtomicUsize>) {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = counted.clone();
            let service = service_fn(move |_request: hyper::Request<hyper::body::Incoming>| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(hyper::Response::new("ok".to_string())) }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    (addr, count)
}
