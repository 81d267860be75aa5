//! The agent daemon's end of `AgentService.Connect` (`proto/chaos/v1/agent.proto`): [`serve`] dials the
//! controller, says hello, sends heartbeats, applies, renews, reverts, halts and plans what the controller asks
//! on this host through [`HostAgent`], and dials again with backoff whenever the stream breaks.
//!
//! Faults outlive a broken stream: each was applied with the controller's lease, so an agent that has lost its
//! controller reverts each one when its lease lapses, on its own (the dead-man's switch); the faults still held
//! are listed in the next hello. Shutdown reverts everything, newest first.
//!
//! Command probes (`run_probe`) run only when the policy's `probe_commands` allows them ([`probe`]).
//!
//! Requests run concurrently, each on a task of its own, so a slow apply never delays a `halt_all`; requests
//! about the same fault id run in the order they arrived (a revert waits for the apply before it).
//!
//! Not here: TLS, keepalive and the address (the caller builds the [`Endpoint`]), flags (the CLI maps them onto
//! [`ServeOptions`]).

pub mod probe;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chaos_agent::faults::{FaultId, FaultKind};
use chaos_agent::host::HostAgent;
use chaos_agent::sample::{self, Sampler};
use chaos_agent::spec::FaultSpec;
use chaos_proto::v1::agent_service_client::AgentServiceClient;
use chaos_proto::v1::controller_message::Body;
use chaos_proto::v1::{
    ActiveFault, AgentMessage, Apply, ControllerMessage, FaultState, FaultStatus, Heartbeat, Hello,
    HostSample, Plan, Renew, agent_message,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;
use tonic::{Code, Request, Status};

/// The first reconnect delay by default.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest reconnect delay by default.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long a dial may take to be welcomed before it is abandoned and tried again.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest heartbeat interval accepted from a welcome: a controller asking for less gets this.
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);

/// A session that lasted this long was healthy: the next reconnect starts from the first delay again.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Messages queued for the controller before senders wait.
const OUTBOUND_CAPACITY: usize = 256;

/// Kills (nothing to revert, nothing held) remembered by fault id, so a retried apply does not kill again.
const KILLS_REMEMBERED: usize = 256;

/// How long shutdown waits for requests in flight (an apply under way) before reverting everything.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";

/// How [`serve`] reaches the controller and introduces itself; what the `chaos agent serve` flags map onto.
#[derive(Clone)]
pub struct ServeOptions {
    /// Endpoint of the controller (TLS and keepalive already configured on it by the caller), e.g. from
    /// `tonic::transport::Endpoint::from_shared("http://127.0.0.1:7400")`.
    pub endpoint: Endpoint,
    /// Agent enrolment token, sent as `authorization: Bearer <token>` on the Connect call.
    pub token: Option<String>,
    /// Stable id of this agent in the fleet; the CLI defaults it to the hostname.
    pub agent_id: String,
    /// Labels the controller's selectors match (`role=web`, `zone=a`).
    pub labels: BTreeMap<String, String>,
    /// The first reconnect delay ([`DEFAULT_BACKOFF_MIN`]); doubled after each failed attempt, with jitter.
    pub backoff_min: Duration,
    /// The longest reconnect delay ([`DEFAULT_BACKOFF_MAX`]).
    pub backoff_max: Duration,
}

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The controller refused this agent (UNAUTHENTICATED or PERMISSION_DENIED) before it was ever welcomed:
    /// a wrong or missing token, which retrying cannot fix.
    #[error("the controller refused this agent: {message} (check --token)")]
    Refused { code: Code, message: String },

    /// The token cannot be sent as an HTTP header value.
    #[error("invalid agent token: {reason}")]
    Token { reason: String },

    /// Faults that could not be reverted at shutdown; their undo records stay in the journal, so the next
    /// start of the agent reverts them.
    #[error("{failed} fault(s) could not be reverted at shutdown: {detail}")]
    Revert { failed: usize, detail: String },
}

/// Runs until `shutdown` is cancelled: dial, hello, heartbeats, serve the controller's requests, reconnect with
/// backoff when the stream breaks. Faults survive a broken stream (their leases keep running: the dead-man's
/// switch) and are listed in the next hello. On shutdown: revert everything the agent holds (newest first), then
/// return.
///
/// Returns [`RemoteError::Refused`] without retrying when the controller refuses the agent as UNAUTHENTICATED
/// or PERMISSION_DENIED before any session was welcomed (a misconfigured token); refusals after a successful
/// session are logged and retried. Returns [`RemoteError::Revert`] when some fault could not be reverted at
/// shutdown.
pub async fn serve(
    options: ServeOptions,
    agent: HostAgent,
    shutdown: CancellationToken,
) -> Result<(), RemoteError> {
    let token = options
        .token
        .as_deref()
        .map(chaos_proto::transport::bearer)
        .transpose()
        .map_err(|e| RemoteError::Token { reason: e.to_string() })?;
    let identity = Identity::of(&options, &agent);
    let shared = Arc::new(Shared::new(agent, shutdown.clone()));
    let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
    let mut rng = StdRng::from_os_rng();
    let mut welcomed_once = false;
    let outcome = loop {
        let started = Instant::now();
        let ended = tokio::select! {
            ended = session(&shared, &identity, &options.endpoint, token.as_ref()) => ended,
            () = shutdown.cancelled() => break Ok(()),
        };
        let welcomed = match ended {
            Ended::Refused(status) if !welcomed_once => {
                break Err(RemoteError::Refused {
                    code: status.code(),
                    message: status.message().to_string(),
                });
            }
            Ended::Refused(status) => {
                tracing::warn!(code = ?status.code(), error = status.message(), "the controller refused this agent");
                false
            }
            Ended::Broken { welcomed, reason } => {
                tracing::warn!(welcomed, error = %reason, "no stream to the controller");
                welcomed
            }
        };
        welcomed_once |= welcomed;
        if welcomed || started.elapsed() > STABLE_SESSION {
            backoff.reset();
        }
        let delay = backoff.next_delay(&mut rng);
        tracing::debug!(delay_ms = delay.as_millis() as u64, "reconnecting");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => break Ok(()),
        }
    };
    let reverted = shared.shut_down().await;
    outcome.and(reverted)
}

// === impl ServeOptions ===

impl ServeOptions {
    /// Options with no token, no labels and the default backoff.
    pub fn new(endpoint: Endpoint, agent_id: impl Into<String>) -> ServeOptions {
        ServeOptions {
            endpoint,
            token: None,
            agent_id: agent_id.into(),
            labels: BTreeMap::new(),
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token itself: options end up in logs.
        f.debug_struct("ServeOptions")
            .field("endpoint", &self.endpoint.uri())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("agent_id", &self.agent_id)
            .field("labels", &self.labels)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

// === one session ===

/// How one session ended.
enum Ended {
    /// Refused (UNAUTHENTICATED or PERMISSION_DENIED) before a welcome.
    Refused(Status),
    /// The dial failed, no welcome came, or the stream broke; `welcomed` says whether the session had begun.
    Broken { welcomed: bool, reason: String },
}

/// Dials, says hello, waits for the welcome, then serves requests until the stream breaks.
async fn session(
    shared: &Arc<Shared>,
    identity: &Identity,
    endpoint: &Endpoint,
    token: Option<&MetadataValue<Ascii>>,
) -> Ended {
    let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let opening = async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("cannot connect: {}", chain(&e))))?;
        // Built after the dial, so it lists what is held now, not before a slow connect.
        let hello = identity.hello(shared.still_held(), lock(&shared.session_secret).clone());
        let message = AgentMessage { body: Some(agent_message::Body::Hello(hello)) };
        tx.send(message).await.map_err(|_| Status::internal("the outbound queue closed before the hello"))?;
        let mut request = Request::new(ReceiverStream::new(rx));
        if let Some(token) = token {
            request.metadata_mut().insert("authorization", token.clone());
        }
        let mut client = AgentServiceClient::new(channel)
            .max_decoding_message_size(chaos_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(chaos_proto::MAX_MESSAGE_BYTES);
        let mut inbound = client.connect(request).await?.into_inner();
        let first = inbound.message().await?;
        Ok::<_, Status>((inbound, first))
    };
    let broken = |reason: String| Ended::Broken { welcomed: false, reason };
    let (mut inbound, first) = match tokio::time::timeout(WELCOME_TIMEOUT, opening).await {
        Err(_) => return broken(format!("no welcome within {} s", WELCOME_TIMEOUT.as_secs())),
        Ok(Err(status)) if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) => {
            return Ended::Refused(status);
        }
        Ok(Err(status)) => return broken(describe(&status)),
        Ok(Ok(opened)) => opened,
    };
    let welcome = match first {
        Some(ControllerMessage { body: Some(Body::Welcome(welcome)), .. }) => welcome,
        Some(other) => return broken(format!("expected a welcome first, found {}", name(&other))),
        None => return broken("the controller ended the stream before its welcome".into()),
    };
    // Proves, at the next dial, that this is the agent of this session (its old stream may be half-dead).
    *lock(&shared.session_secret) = welcome.session_secret.clone();
    let every = Duration::from_millis(welcome.heartbeat_ms).max(MIN_HEARTBEAT);
    tracing::info!(heartbeat_ms = every.as_millis() as u64, "connected to the controller");
    let _heartbeats = AbortOnDropHandle::new(tokio::spawn(heartbeats(shared.clone(), tx.clone(), every)));
    let reason = loop {
        match inbound.message().await {
            Ok(Some(message)) => shared.dispatch(message, &tx),
            Ok(None) => break "the controller ended the stream".to_string(),
            Err(status) => break describe(&status),
        }
    };
    Ended::Broken { welcomed: true, reason }
}

/// Sends a heartbeat every `every`, preceded by an EXPIRED status for each fault whose lease lapsed since the
/// previous one; returns when the stream is gone.
async fn heartbeats(shared: Arc<Shared>, tx: mpsc::Sender<AgentMessage>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0;
    loop {
        ticker.tick().await;
        let (expired, active) = shared.expired();
        for fault_id in expired {
            let detail = "the lease lapsed and the agent reverted the fault".to_string();
            let message = status_message(FaultStatus {
                fault_id,
                state: FaultState::Expired.into(),
                detail,
                ..FaultStatus::default()
            });
            if tx.send(message).await.is_err() {
                return;
            }
        }
        let sampler = shared.clone();
        let sample = tokio::task::spawn_blocking(move || lock(&sampler.sampler).sample_host()).await.ok();
        seq += 1;
        let heartbeat = Heartbeat {
            seq,
            sample: sample.map(host_sample),
            active_faults: u32::try_from(active).unwrap_or(u32::MAX),
        };
        if tx.send(AgentMessage { body: Some(agent_message::Body::Heartbeat(heartbeat)) }).await.is_err() {
            return;
        }
    }
}

fn host_sample(sample: sample::HostSample) -> HostSample {
    let load = if sample.cpus > 0 { sample.load1 / sample.cpus as f64 } else { sample.load1 };
    HostSample {
        cpu: sample.cpu,
        memory_used: sample.memory_used,
        load,
        cpus: u32::try_from(sample.cpus).unwrap_or(u32::MAX),
        memory_total_bytes: sample.memory_total_bytes,
    }
}

// === what the agent says about itself ===

/// The fixed part of every hello.
struct Identity {
    agent_id: String,
    hostname: String,
    labels: HashMap<String, String>,
    capabilities: Vec<String>,
    boot_id: String,
}

impl Identity {
    fn of(options: &ServeOptions, agent: &HostAgent) -> Identity {
        Identity {
            agent_id: options.agent_id.clone(),
            hostname: hostname(),
            labels: options.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            capabilities: capabilities(agent),
            boot_id: read_trimmed(BOOT_ID_PATH).unwrap_or_default(),
        }
    }

    fn hello(&self, active_faults: Vec<ActiveFault>, session_secret: String) -> Hello {
        Hello {
            agent_id: self.agent_id.clone(),
            hostname: self.hostname.clone(),
            labels: self.labels.clone(),
            capabilities: self.capabilities.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            boot_id: self.boot_id.clone(),
            active_faults,
            session_secret,
        }
    }
}

/// The kinds this host can apply: those the probe found support for and the policy allows.
fn capabilities(agent: &HostAgent) -> Vec<String> {
    let allowed = agent.policy().allowed_faults.as_ref();
    FaultKind::ALL
        .into_iter()
        .filter(|kind| agent.capabilities().require(*kind).is_ok())
        .filter(|kind| allowed.is_none_or(|names| names.iter().any(|name| name == kind.as_str())))
        .map(|kind| kind.as_str().to_string())
        .collect()
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .or_else(|| read_trimmed(HOSTNAME_PATH))
        .unwrap_or_default()
}

fn read_trimmed(path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text.trim().to_string()),
        Err(e) => {
            tracing::warn!(path, error = %e, "cannot read; sent empty in the hello");
            None
        }
    }
}

// === the faults held for the controller ===

/// State shared by the sessions and their request tasks; outlives every session.
struct Shared {
    agent: HostAgent,
    faults: Mutex<Faults>,
    /// Per controller fault id, the last request queued on it: each request waits for the one before.
    queues: Mutex<HashMap<String, Turn>>,
    next_turn: AtomicU64,
    /// Bumped by every `halt_all` (under the `faults` lock): an apply that began before a halt and finished
    /// after it is reverted at once instead of being left applied.
    halts: AtomicU64,
    sampler: Mutex<Sampler>,
    /// Every request task, so shutdown can wait for an apply under way before reverting everything.
    tasks: TaskTracker,
    /// Cancelled at shutdown: a request task stops waiting to send its answer.
    shutdown: CancellationToken,
    /// The secret of the last welcome, sent back in the next hello (empty before the first).
    session_secret: Mutex<String>,
}

/// The controller's faults, by the controller's fault id.
#[derive(Default)]
struct Faults {
    held: HashMap<String, Held>,
    /// Kills done, oldest first (fault id, description): nothing to hold, but a retry must not kill again.
    kills: VecDeque<(String, String)>,
}

/// A fault applied for the controller and not yet reverted.
struct Held {
    id: FaultId,
    run_id: String,
    kind: String,
    description: String,
    /// A revert is under way: the fault leaving `HostAgent::active` is not its lease lapsing.
    reverting: bool,
}

/// The last request queued on one fault id: its number, and the signal that it has finished.
struct Turn {
    number: u64,
    done: oneshot::Receiver<()>,
}

/// A request's outcome: a state and a detail for people.
type Outcome = (FaultState, String);

impl Shared {
    fn new(agent: HostAgent, shutdown: CancellationToken) -> Shared {
        Shared {
            agent,
            faults: Mutex::new(Faults::default()),
            queues: Mutex::new(HashMap::new()),
            next_turn: AtomicU64::new(0),
            halts: AtomicU64::new(0),
            sampler: Mutex::new(Sampler::new()),
            tasks: TaskTracker::new(),
            shutdown,
            session_secret: Mutex::new(String::new()),
        }
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// Starts the task answering one controller request.
    fn dispatch(self: &Arc<Self>, message: ControllerMessage, tx: &mpsc::Sender<AgentMessage>) {
        let request_id = message.request_id;
        let shared = self.clone();
        match message.body {
            None => {
                let outcome =
                    (FaultState::Failed, "invalid request: expected a body, found none".to_string());
                self.spawn(self.answer(tx, request_id, String::new(), async move { outcome }));
            }
            Some(Body::Welcome(_)) => tracing::warn!("a second welcome on the same stream; ignored"),
            Some(Body::Apply(apply)) => {
                // The halts seen on receipt: one after this is one this apply must not survive.
                let halts = self.halts.load(Ordering::SeqCst);
                let fault_id = apply.fault_id.clone();
                let work = async move { shared.apply(apply, halts).await };
                self.spawn_in_order(fault_id.clone(), self.answer(tx, request_id, fault_id, work));
            }
            Some(Body::Renew(renew)) => {
                let fault_id = renew.fault_id.clone();
                let work = async move { shared.renew(renew) };
                self.spawn_in_order(fault_id.clone(), self.answer(tx, request_id, fault_id, work));
            }
            Some(Body::Revert(revert)) => {
                let fault_id = revert.fault_id;
                let id = fault_id.clone();
                let work = async move { shared.revert(&id).await };
                self.spawn_in_order(fault_id.clone(), self.answer(tx, request_id, fault_id, work));
            }
            Some(Body::HaltAll(halt)) => {
                // Not queued behind anything: a halt is answered as soon as the reverts are done.
                let work = async move { shared.halt_all(&halt.reason).await };
                self.spawn(self.answer(tx, request_id, String::new(), work));
            }
            Some(Body::Plan(plan)) => {
                let work = async move { shared.plan(plan).await };
                self.spawn(self.answer(tx, request_id, String::new(), work));
            }
            Some(Body::RunProbe(probe)) => {
                let (tx, stop) = (tx.clone(), self.shutdown.clone());
                self.spawn(async move {
                    let mut result = probe::run(shared.agent.policy(), &probe).await;
                    result.request_id = request_id;
                    let message = AgentMessage { body: Some(agent_message::Body::ProbeResult(result)) };
                    tokio::select! {
                        _ = tx.send(message) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        }
    }

    /// Runs `work` and sends its outcome as the answer to `request_id`.
    fn answer<W, O>(
        self: &Arc<Self>,
        tx: &mpsc::Sender<AgentMessage>,
        request_id: u64,
        fault_id: String,
        work: W,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        W: Future<Output = O> + Send + 'static,
        O: Into<Answer>,
    {
        let tx = tx.clone();
        let shutdown = self.shutdown.clone();
        async move {
            let Answer { state, detail, reverted, failed } = work.await.into();
            let status = FaultStatus { request_id, fault_id, state: state.into(), detail, reverted, failed };
            // A stream that broke meanwhile loses the answer; the next hello says what is held.
            tokio::select! {
                _ = tx.send(status_message(status)) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Spawns `task` to run once every request queued before it on `fault_id` has finished.
    fn spawn_in_order(self: &Arc<Self>, fault_id: String, task: impl Future<Output = ()> + Send + 'static) {
        let number = self.next_turn.fetch_add(1, Ordering::Relaxed);
        let (finished, done) = oneshot::channel();
        let before = lock(&self.queues).insert(fault_id.clone(), Turn { number, done });
        let shared = self.clone();
        self.tasks.spawn(async move {
            if let Some(before) = before {
                // An error means the task before was dropped: its turn is over all the same.
                let _ = before.done.await;
            }
            task.await;
            let mut queues = lock(&shared.queues);
            if queues.get(&fault_id).is_some_and(|turn| turn.number == number) {
                queues.remove(&fault_id);
            }
            drop(queues);
            let _ = finished.send(());
        });
    }

    async fn apply(self: Arc<Self>, apply: Apply, halts_on_receipt: u64) -> Outcome {
        let Apply { fault_id, run_id, spec_json, lease_ms, seed, actor } = apply;
        if fault_id.is_empty() {
            return (FaultState::Failed, "invalid apply: expected a fault id, found none".into());
        }
        let lease = match lease(lease_ms) {
            Ok(lease) => lease,
            Err(why) => return (FaultState::Failed, why),
        };
        if let Some(description) = self.applied_already(&fault_id, lease) {
            return (FaultState::Applied, description);
        }
        let spec = match FaultSpec::parse(&spec_json) {
            Ok(spec) => spec,
            Err(e) => return (FaultState::Failed, e.to_string()),
        };
        if self.halts.load(Ordering::SeqCst) != halts_on_receipt {
            return (FaultState::Failed, "halted before it was applied; nothing was applied".into());
        }
        let agent = self.agent.clone();
        let applied =
            match tokio::task::spawn_blocking(move || agent.apply_seeded(&spec, Some(lease), seed)).await {
                Ok(Ok(applied)) => applied,
                Ok(Err(e)) => {
                    tracing::warn!(fault_id, run_id, actor, error = %e, "apply refused");
                    return (FaultState::Failed, e.to_string());
                }
                Err(e) => return (FaultState::Failed, format!("the apply task failed: {e}")),
            };
        let local_id = applied.id.map(|id| id.to_string());
        tracing::info!(
            fault_id,
            run_id,
            actor,
            kind = applied.kind,
            local_id,
            detail = applied.description,
            "applied"
        );
        let Some(id) = applied.id else {
            self.faults().remember_kill(fault_id, applied.description.clone());
            return (FaultState::Applied, applied.description);
        };
        let halted = {
            let mut faults = self.faults();
            let halted = self.halts.load(Ordering::SeqCst) != halts_on_receipt;
            let held = Held {
                id,
                run_id,
                kind: applied.kind,
                description: applied.description.clone(),
                reverting: halted,
            };
            faults.held.insert(fault_id.clone(), held);
            halted
        };
        if !halted {
            return (FaultState::Applied, applied.description);
        }
        // A halt came while this was being applied and could not see it: undo it now.
        match self.revert_held(&fault_id).await {
            Some(Err(e)) => {
                (FaultState::Failed, format!("halted while it was being applied; revert failed: {e}"))
            }
            _ => (FaultState::Failed, "halted while it was being applied; reverted".into()),
        }
    }

    /// The description of `fault_id` if it is held (its lease renewed to `lease`, as the retry asks) or was a
    /// kill already done: a retried apply answers again instead of applying twice.
    fn applied_already(&self, fault_id: &str, lease: Duration) -> Option<String> {
        let faults = self.faults();
        if let Some(held) = faults.held.get(fault_id).filter(|held| !held.reverting) {
            if let Err(e) = self.agent.renew(held.id, lease) {
                tracing::debug!(fault_id, error = %e, "renewing on a repeated apply failed");
            }
            return Some(held.description.clone());
        }
        faults.kills.iter().find(|(id, _)| id == fault_id).map(|(_, description)| description.clone())
    }

    fn renew(&self, renew: Renew) -> Outcome {
        let lease = match lease(renew.lease_ms) {
            Ok(lease) => lease,
            Err(why) => return (FaultState::Failed, why),
        };
        let held = self.faults().held.get(&renew.fault_id).filter(|held| !held.reverting).map(|held| held.id);
        let Some(id) = held else {
            let why = format!(
                "{} is not held here: it was reverted, its lease lapsed, or it was never applied",
                renew.fault_id
            );
            return (FaultState::Failed, why);
        };
        match self.agent.renew(id, lease) {
            Ok(()) => (FaultState::Renewed, String::new()),
            Err(e) => (FaultState::Failed, e.to_string()),
        }
    }

    async fn revert(&self, fault_id: &str) -> Outcome {
        match self.revert_held(fault_id).await {
            None => {
                (FaultState::Reverted, format!("{fault_id} is not held here (reverted already or lapsed)"))
            }
            Some(Ok(description)) => (FaultState::Reverted, format!("reverted: {description}")),
            Some(Err(e)) => (FaultState::Failed, format!("revert failed: {e}")),
        }
    }

    /// Reverts the fault held as `fault_id` and forgets it (kept, for a retry, if the revert fails); `None` when
    /// nothing is held under that id.
    async fn revert_held(&self, fault_id: &str) -> Option<Result<String, String>> {
        let (id, description) = {
            let mut faults = self.faults();
            let held = faults.held.get_mut(fault_id)?;
            // Reverting twice (a halt and a revert at once) is harmless: a revert is idempotent.
            held.reverting = true;
            (held.id, held.description.clone())
        };
        let agent = self.agent.clone();
        let result = match tokio::task::spawn_blocking(move || agent.revert(id)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the revert task failed: {e}")),
        };
        let mut faults = self.faults();
        let still = faults.held.get_mut(fault_id).filter(|held| held.id == id);
        match (&result, still) {
            (Ok(()), Some(_)) => {
                faults.held.remove(fault_id);
            }
            (Err(_), Some(held)) => held.reverting = false,
            (_, None) => {}
        }
        drop(faults);
        match &result {
            Ok(()) => tracing::info!(fault_id, local_id = %id, "reverted"),
            Err(e) => tracing::warn!(fault_id, local_id = %id, error = %e, "revert failed"),
        }
        Some(result.map(|()| description))
    }

    async fn halt_all(&self, reason: &str) -> Answer {
        {
            let mut faults = self.faults();
            self.halts.fetch_add(1, Ordering::SeqCst);
            faults.held.values_mut().for_each(|held| held.reverting = true);
        }
        tracing::warn!(reason, "halting: reverting every fault");
        let agent = self.agent.clone();
        let report = match tokio::task::spawn_blocking(move || agent.revert_all()).await {
            Ok(report) => report,
            Err(e) => {
                self.faults().held.values_mut().for_each(|held| held.reverting = false);
                return Answer::from((FaultState::Failed, format!("the halt task failed: {e}")));
            }
        };
        let reverted: HashSet<FaultId> = report.reverted.iter().copied().collect();
        let failed: HashSet<FaultId> = report.failed.iter().map(|(id, _)| *id).collect();
        {
            let mut faults = self.faults();
            let active = active_ids(&self.agent);
            // Gone either way: reverted by the halt, or by a revert or lease meanwhile.
            faults
                .held
                .retain(|_, held| !reverted.contains(&held.id) && active.contains(&held.id.to_string()));
            for held in faults.held.values_mut().filter(|held| failed.contains(&held.id)) {
                held.reverting = false;
            }
        }
        let detail = if report.failed.is_empty() {
            format!("reverted {} fault(s)", report.reverted.len())
        } else {
            let failures: Vec<String> = report.failed.iter().map(|(id, e)| format!("{id}: {e}")).collect();
            format!("reverted {}; could not revert {}", report.reverted.len(), failures.join("; "))
        };
        Answer {
            state: FaultState::Halted,
            detail,
            reverted: u32::try_from(report.reverted.len()).unwrap_or(u32::MAX),
            failed: u32::try_from(report.failed.len()).unwrap_or(u32::MAX),
        }
    }

    async fn plan(&self, plan: Plan) -> Outcome {
        let spec = match FaultSpec::parse(&plan.spec_json) {
            Ok(spec) => spec,
            Err(e) => return (FaultState::Failed, e.to_string()),
        };
        // No lease means the policy's longest, as for a local plan.
        let duration = (plan.lease_ms > 0).then(|| Duration::from_millis(plan.lease_ms));
        let agent = self.agent.clone();
        match tokio::task::spawn_blocking(move || agent.plan_seeded(&spec, duration, plan.seed)).await {
            Ok(Ok(text)) => (FaultState::Planned, text),
            Ok(Err(e)) => (FaultState::Failed, e.to_string()),
            Err(e) => (FaultState::Failed, format!("the plan task failed: {e}")),
        }
    }

    /// Forgets the faults whose lease lapsed (gone from the agent with no revert under way) and returns their
    /// ids, with how many faults the agent holds.
    fn expired(&self) -> (Vec<String>, usize) {
        // The agent's list is read under the `faults` lock: an apply that finished but is not listed here yet
        // cannot be taken for a lapsed one.
        let mut faults = self.faults();
        let active = active_ids(&self.agent);
        let lapsed: Vec<String> = faults
            .held
            .iter()
            .filter(|(_, held)| !held.reverting && !active.contains(&held.id.to_string()))
            .map(|(fault_id, _)| fault_id.clone())
            .collect();
        for fault_id in &lapsed {
            if let Some(held) = faults.held.remove(fault_id) {
                tracing::info!(fault_id, run_id = held.run_id, local_id = %held.id, "lease lapsed; the fault was reverted");
            }
        }
        (lapsed, active.len())
    }

    /// The faults held for the controller, oldest first, after forgetting those whose lease lapsed.
    fn still_held(&self) -> Vec<ActiveFault> {
        let mut faults = self.faults();
        let active = active_ids(&self.agent);
        faults.held.retain(|fault_id, held| {
            let kept = active.contains(&held.id.to_string());
            if !kept {
                tracing::info!(
                    fault_id,
                    run_id = held.run_id,
                    "lease lapsed while disconnected; not in the hello"
                );
            }
            kept
        });
        let mut held: Vec<(&String, &Held)> = faults.held.iter().collect();
        held.sort_by_key(|(_, held)| held.id);
        held.into_iter()
            .map(|(fault_id, held)| ActiveFault {
                fault_id: fault_id.clone(),
                run_id: held.run_id.clone(),
                kind: held.kind.clone(),
                description: held.description.clone(),
            })
            .collect()
    }

    /// Waits (a while) for requests in flight, then reverts everything the agent holds, newest first.
    async fn shut_down(&self) -> Result<(), RemoteError> {
        self.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait()).await.is_err() {
            tracing::warn!("requests still in flight at shutdown; reverting without waiting for them");
        }
        let agent = self.agent.clone();
        let report = tokio::task::spawn_blocking(move || agent.revert_all())
            .await
            .map_err(|e| RemoteError::Revert { failed: 0, detail: format!("the revert task failed: {e}") })?;
        self.faults().held.clear();
        tracing::info!(reverted = report.reverted.len(), failed = report.failed.len(), "shut down");
        if report.failed.is_empty() {
            return Ok(());
        }
        let failures: Vec<String> = report.failed.iter().map(|(id, e)| format!("{id}: {e}")).collect();
        Err(RemoteError::Revert { failed: report.failed.len(), detail: failures.join("; ") })
    }
}

impl Faults {
    fn remember_kill(&mut self, fault_id: String, description: String) {
        if self.kills.len() == KILLS_REMEMBERED {
            self.kills.pop_front();
        }
        self.kills.push_back((fault_id, description));
    }
}

/// What a request task answers with; the counts are for `halt_all`.
struct Answer {
    state: FaultState,
    detail: String,
    reverted: u32,
    failed: u32,
}

impl From<Outcome> for Answer {
    fn from((state, detail): Outcome) -> Answer {
        Answer { state, detail, reverted: 0, failed: 0 }
    }
}

/// The lease of an apply or renew; refused when zero, as every fault must have a deadline.
fn lease(lease_ms: u64) -> Result<Duration, String> {
    match lease_ms {
        0 => Err("invalid lease: expected lease_ms above 0, found 0".into()),
        ms => Ok(Duration::from_millis(ms)),
    }
}

fn active_ids(agent: &HostAgent) -> HashSet<String> {
    agent.active().into_iter().map(|info| info.id).collect()
}

fn status_message(status: FaultStatus) -> AgentMessage {
    AgentMessage { body: Some(agent_message::Body::FaultStatus(status)) }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data whole (inserts and removes of whole entries).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// `e` and its sources, joined: a transport error's own message says little (`transport error`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The kind of a controller message, for errors.
fn name(message: &ControllerMessage) -> &'static str {
    match &message.body {
        None => "an empty message",
        Some(Body::Welcome(_)) => "welcome",
        Some(Body::Apply(_)) => "apply",
        Some(Body::Renew(_)) => "renew",
        Some(Body::Revert(_)) => "revert",
        Some(Body::HaltAll(_)) => "halt_all",
        Some(Body::Plan(_)) => "plan",
        Some(Body::RunProbe(_)) => "run_probe",
    }
}

// === reconnect backoff ===

/// Exponential backoff with jitter: each delay is drawn from the upper half of a window that doubles from `min`
/// up to `max`.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    window: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Backoff { min, max, window: min }
    }

    fn reset(&mut self) {
        self.window = self.min;
    }

    fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let window = self.window;
        self.window = (window * 2).min(self.max);
        // Half fixed, half random: agents that lost the same controller do not all dial again at once.
        window / 2 + window.mul_f64(rng.random_range(0.0..=0.5))
    }
}

#[cfg(test)]
mod tests;
