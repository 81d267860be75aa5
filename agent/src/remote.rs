//! The agent daemon's end of `AgentService.Connect` (`proto/chaos/v1/agent.proto`): [`serve`] dials the
//! controller, says hello, sends heartbeats, applies, renews, reverts, halts and plans what the controller asks
//! on this host through [`HostAgent`], and dials again with backoff whenever the stream breaks.
//!
//! Faults outlive a broken stream: each was applied with the controller's lease, so an agent that has lost its
//! controller reverts each one when its lease lapses, on its own (the dead-man's switch); the faults still held
//! are listed in the next hello. Shutdown reverts everything, newest first.
//!
//! Requests run concurrently, each on a task of its own, so a slow apply never delays a `halt_all`; requests
//! about the same fault id run in the order they arrived (a revert waits for the apply before it).
//!
//! Not here: TLS, keepalive and the address (the caller builds the [`Endpoint`]), flags (the CLI maps them onto
//! [`ServeOptions`]).

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
    let token = options.token.as_deref().map(bearer).transpose()?;
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

/// The `authorization` value for `token`, refused when it is empty or not visible ASCII.
fn bearer(token: &str) -> Result<MetadataValue<Ascii>, RemoteError> {
    if token.is_empty() {
        return Err(RemoteError::Token { reason: "expected a token, found an empty one".into() });
    }
    let mut value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| RemoteError::Token {
        reason: "expected visible ASCII characters, found a control or non-ASCII character".into(),
    })?;
    // Kept out of debug output and HTTP/2 header compression tables.
    value.set_sensitive(true);
    Ok(value)
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
        let hello = identity.hello(shared.still_held());
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

    fn hello(&self, active_faults: Vec<ActiveFault>) -> Hello {
        Hello {
            agent_id: self.agent_id.clone(),
            hostname: self.hostname.clone(),
            labels: self.labels.clone(),
            capabilities: self.capabilities.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            boot_id: self.boot_id.clone(),
            active_faults,
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
mod tests {
    //! A real loopback gRPC controller written for the test, a real [`HostAgent`] (temp state dir, default
    //! policy) and real `sleep` children to pause. Pausing needs root (or the same uid, which the children have).

    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use chaos_agent::policy::AgentPolicy;
    use chaos_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
    use chaos_proto::v1::{HaltAll, Revert, Welcome};
    use tokio::task::JoinHandle;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Response, Streaming};

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
            let session =
                Session { inbound: request.into_inner(), outbound: Some(to_agent), next_request: 1 };
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
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                );
            let server = tokio::spawn(async move { server.await.unwrap() });
            Controller { addr, sessions, stop, server, refuse, refusals }
        }

        /// The next stream an agent opens.
        async fn accept(&mut self) -> Session {
            tokio::time::timeout(WAIT, self.sessions.recv())
                .await
                .expect("the agent connects in time")
                .unwrap()
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
            let message =
                tokio::time::timeout(WAIT, self.inbound.message()).await.expect("a message in time");
            message.expect("the stream is healthy").expect("the stream is open").body.expect("a body")
        }

        async fn hello(&mut self) -> Hello {
            match self.next().await {
                agent_message::Body::Hello(hello) => hello,
                other => panic!("expected a hello first, found {other:?}"),
            }
        }

        async fn welcome(&mut self, heartbeat_ms: u64) {
            self.send(0, Body::Welcome(Welcome { heartbeat_ms })).await;
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

    /// A `sleep 30` child, killed and reaped when dropped.
    struct Victim(Child);

    impl Victim {
        fn sleep() -> Victim {
            Victim(Command::new("sleep").arg("30").spawn().unwrap())
        }

        fn pid(&self) -> i32 {
            self.0.id() as i32
        }

        /// The state letter of `/proc/PID/stat`: `T` when stopped.
        fn state(&self) -> Option<char> {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
            stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
        }

        fn stopped(&self) -> bool {
            self.state() == Some('T')
        }

        fn running(&self) -> bool {
            matches!(self.state(), Some('S' | 'R' | 'D'))
        }
    }

    impl Drop for Victim {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Polls `condition` until it holds or `within` passes; returns whether it held.
    async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        condition()
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
        assert_eq!(
            (state(&halted), halted.reverted, halted.failed),
            (FaultState::Halted, 2, 0),
            "{halted:?}"
        );
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
        let plan = Plan { spec_json: pause(victim.pid()), lease_ms: 1000, seed: 1 };
        let planned = rig.session.ask(Body::Plan(plan)).await;
        assert_eq!(state(&planned), FaultState::Planned, "{planned:?}");
        assert!(
            planned.detail.contains(&format!("process-pause on pid {}", victim.pid())),
            "{}",
            planned.detail
        );
        let plan = Plan { spec_json: "{".into(), lease_ms: 0, seed: 1 };
        assert_eq!(state(&rig.session.ask(Body::Plan(plan)).await), FaultState::Failed);
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
            let result =
                tokio::time::timeout(WAIT, daemon.task).await.expect("serve gives up at once").unwrap();
            let err = result.unwrap_err();
            assert!(matches!(err, RemoteError::Refused { code: Code::Unauthenticated, .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                "the controller refused this agent: unknown agent token (check --token)"
            );
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
}
