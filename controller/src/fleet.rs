//! The agents connected to this controller, and every remote fault in force.
//!
//! Each agent keeps one `AgentService.Connect` stream open (it dials us, so agents behind NAT work). A
//! [`Session`] is that stream: requests go out as `ControllerMessage`s with a request id, answers come back
//! as `FaultStatus`es with the same id and complete the waiting [`Fleet::request`].
//!
//! The dead-man's switch: a remote fault is applied with a short lease (`FleetConfig::lease`, capped by the
//! fault's own duration plus [`FleetConfig::margin`]) and a renewer task renews it every third of that while the
//! fault is wanted. When this controller dies, or cannot reach the agent, renewals stop and the agent reverts
//! the fault by itself when the lease lapses. On reconnect the agent's hello lists what it still holds: what
//! we still want keeps being renewed, the rest is reverted at once.
//!
//! A fault can be **lost** before its run reverts it: the agent reports its lease lapsed (EXPIRED), it no
//! longer holds it when it reconnects, it refuses a renewal, the lease it was last given passes while it is
//! unreachable, or it is disconnected when the run comes to revert. The fleet remembers why, and
//! [`Fleet::revert_checked`] tells the run ([`Reverted::Lost`]) instead of reporting a revert that did not
//! happen.
//!
//! Every apply, revert, expiry and halt is written to the store's append-only audit log, with who asked.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chaos_proto::v1::{
    self, AgentMessage, ControllerMessage, FaultState, FaultStatus, Hello, agent_message, controller_message,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::store::{AgentRecord, NewAudit, StoreError, StoreHandle};

/// Timing of the agent protocol.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// How often agents send heartbeats; an agent is late after one missed and gone after three.
    pub heartbeat: Duration,
    /// The longest lease a remote fault gets at a time; renewed every third of it while wanted. An agent cut
    /// off from the controller reverts within this.
    pub lease: Duration,
    /// How long a request waits for the agent's answer.
    pub request_timeout: Duration,
    /// Added to a fault's duration for its lease cap and its renewal deadline: the engine's deadline margin
    /// (the controller sets it from `engine::DEADLINE_MARGIN`; the fleet does not depend on the engine).
    pub margin: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            heartbeat: Duration::from_secs(1),
            lease: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            margin: Duration::from_secs(10),
        }
    }
}

/// What an agent said about itself in its hello.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentInfo {
    pub id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub version: String,
    pub boot_id: String,
    pub peer: String,
}

/// An agent as listed: what it said, how healthy it is, and its last saturation sample.
#[derive(Clone, Debug)]
pub struct AgentView {
    pub info: AgentInfo,
    pub health: Health,
    pub last_seen_ms: i64,
    pub active_faults: u32,
    pub sample: Option<v1::HostSample>,
}

/// How an agent's session looks from here, judged by its silence (see [`Fleet::reap_silent`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Heard from within one and a half heartbeats.
    Connected,
    /// Silent for more than one and a half heartbeats, at most three: a second hello may replace its session.
    Late,
    /// Silent for more than three heartbeats, or not connected: its stream is (being) closed.
    Gone,
}

impl Health {
    /// The name the API and `chaos agents` show.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Connected => "connected",
            Health::Late => "late",
            Health::Gone => "gone",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The agents and the remote faults in force. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    config: FleetConfig,
    store: StoreHandle,
    sessions: RwLock<BTreeMap<String, Arc<Session>>>,
    faults: Mutex<HashMap<String, Held>>,
    /// Faults lost before their run reverted them, with why and when; taken by [`Fleet::revert_checked`].
    lost: Mutex<HashMap<String, (String, Instant)>>,
    next_request: AtomicU64,
    next_session: AtomicU64,
    /// Silence is counted from here at the earliest: moved to the present when [`Fleet::reap_silent`] finds
    /// that this controller itself was paused, so agents whose heartbeats wait unread in the socket buffers are
    /// not taken for gone.
    grace_from: Mutex<Instant>,
}

/// One agent's open stream.
struct Session {
    info: AgentInfo,
    id: u64,
    /// Sent in the welcome; a hello that carries it back is this agent reconnecting (see [`Fleet::attach`]).
    secret: String,
    tx: mpsc::Sender<Result<ControllerMessage, Status>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    last_seen: Mutex<(Instant, i64)>,
    sample: Mutex<Option<v1::HostSample>>,
    active_faults: AtomicU32,
    closed: CancellationToken,
}

/// An agent's answer to one request.
enum Reply {
    Status(FaultStatus),
    Probe(v1::ProbeResult),
    Pods(v1::PodList),
}

/// A remote fault the controller applied and has not seen reverted.
struct Held {
    agent: String,
    run: String,
    actor: String,
    /// After this, renewals stop: the fault's own duration plus the margin.
    deadline: Instant,
    /// Set once a revert was asked for (even if it could not be delivered): renewals stop, so the agent's
    /// lease reverts it at the latest.
    reverting: bool,
    /// When the lease the agent was last given (apply or renewal) lapses, on this controller's clock.
    granted_until: Instant,
    /// When the agent's stream closed while it held the fault; cleared when it reconnects still holding it.
    disconnected_at: Option<Instant>,
}

/// Why a request to an agent, or a fault on it, did not go as asked. `Display` is the message people read
/// (the engine puts it in a run's timeline); the server's `ApiError` maps each variant to its status code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// No session of this agent is open now.
    #[error("agent {agent} is not connected")]
    NotConnected { agent: String },
    /// The request could not be queued on the agent's stream.
    #[error("agent {agent}: its stream is closed or full")]
    StreamClosed { agent: String },
    /// The stream ended while the request waited for its answer.
    #[error("agent {agent} disconnected before answering")]
    Disconnected { agent: String },
    /// No answer came in time.
    #[error("agent {agent} did not answer within {timeout:?}")]
    Timeout { agent: String, timeout: Duration },
    /// The agent answered with the wrong kind of message (a probe result to a fault request).
    #[error("agent {agent} answered a fault request with a probe result")]
    WrongAnswer { agent: String },
    /// The agent cannot run command probes (an older agent, or one that answers them as a fault request).
    #[error("agent {agent} cannot run probes: {detail}")]
    NoProbes { agent: String, detail: String },
    /// The agent's policy or host refuses the fault (a plan); `detail` is the agent's own reason.
    #[error("agent {agent} refuses: {detail}")]
    Refused { agent: String, detail: String },
    /// The agent did not apply the fault; `detail` is the agent's own reason, shown as it is.
    #[error("{detail}")]
    ApplyFailed { agent: String, detail: String },
    /// The agent answered a revert with a failure.
    #[error("agent {agent}: {detail}")]
    RevertFailed { agent: String, detail: String },
    /// A revert could not be delivered; renewals stopped, so the agent's lease ends the fault within `within`.
    #[error("{cause}; renewals stopped, so its lease on the agent ends it within {:.1} s", within.as_secs_f64())]
    RevertUndelivered { cause: Box<FleetError>, within: Duration },
    /// A hello for an id whose live session it cannot prove it owns (see [`Fleet::attach`]).
    #[error(
        "agent id {agent:?} already has a live session (from {peer}, heard from {} ms ago): a second session is \
         refused; the agent holding it reconnects with its session secret, and another one is accepted once \
         that session misses its heartbeats",
        silent.as_millis()
    )]
    SessionTaken { agent: String, peer: String, silent: Duration },
    /// The store failed (listing the agents ever seen).
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl FleetError {
    /// The agent the error is about, if it is about one.
    pub fn agent(&self) -> Option<&str> {
        match self {
            FleetError::NotConnected { agent }
            | FleetError::StreamClosed { agent }
            | FleetError::Disconnected { agent }
            | FleetError::Timeout { agent, .. }
            | FleetError::WrongAnswer { agent }
            | FleetError::NoProbes { agent, .. }
            | FleetError::Refused { agent, .. }
            | FleetError::ApplyFailed { agent, .. }
            | FleetError::RevertFailed { agent, .. }
            | FleetError::SessionTaken { agent, .. } => Some(agent),
            FleetError::RevertUndelivered { cause, .. } => cause.agent(),
            FleetError::Store(_) => None,
        }
    }
}

pub use crate::remote_fault::{ApplyRequest, PodRef, Reverted};

/// What [`Fleet::halt_all`] got back.
#[derive(Clone, Debug, Default)]
pub struct HaltReport {
    pub acknowledged: Vec<String>,
    pub missing: Vec<String>,
    pub reverted: u32,
    pub failed: u32,
    pub elapsed: Duration,
}

/// Wall-clock milliseconds since the Unix epoch (what the store records).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Locks `m`, taking over a poisoned lock (every holder leaves its data whole).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Checks an agent id (a hello's, or a probe's `agent`); defined with the protocol.
pub use chaos_proto::check_agent_id;

impl Fleet {
    pub fn new(config: FleetConfig, store: StoreHandle) -> Fleet {
        Fleet {
            inner: Arc::new(Inner {
                config,
                store,
                sessions: RwLock::new(BTreeMap::new()),
                faults: Mutex::new(HashMap::new()),
                lost: Mutex::new(HashMap::new()),
                next_request: AtomicU64::new(1),
                next_session: AtomicU64::new(1),
                grace_from: Mutex::new(Instant::now()),
            }),
        }
    }

    pub fn config(&self) -> &FleetConfig {
        &self.inner.config
    }

    fn audit(&self, entry: NewAudit) {
        self.inner.store.submit("the audit log", move |s| s.append_audit(&entry).map(|_| ()));
    }

    fn session(&self, agent: &str) -> Result<Arc<Session>, FleetError> {
        let sessions = self.inner.sessions.read().unwrap_or_else(|p| p.into_inner());
        sessions.get(agent).cloned().ok_or_else(|| FleetError::NotConnected { agent: agent.to_string() })
    }

    /// Registers an agent's stream after its hello (the caller checked its token and id), reconciles the faults
    /// it says it holds, and serves its messages until the stream ends. Returns the stream of messages to send
    /// it, starting with the welcome.
    ///
    /// One live session per agent id: while a session of this id heartbeats, a second hello is refused
    /// (ALREADY_EXISTS) unless it carries the secret of that session's welcome (the same agent process
    /// reconnecting over a half-dead stream). A session that is late (silent for more than one and a half
    /// heartbeats) or closed is replaced, so an agent that restarted is back within two heartbeats.
    pub fn attach<S>(
        &self,
        hello: Hello,
        peer: String,
        inbound: S,
    ) -> Result<tokio_stream::wrappers::ReceiverStream<Result<ControllerMessage, Status>>, FleetError>
    where
        S: Stream<Item = Result<AgentMessage, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(256);
        let info = AgentInfo {
            id: hello.agent_id.clone(),
            hostname: hello.hostname.clone(),
            labels: hello.labels.clone().into_iter().collect(),
            capabilities: hello.capabilities.clone(),
            version: hello.version.clone(),
            boot_id: hello.boot_id.clone(),
            peer,
        };
        let secret = {
            let bytes: [u8; 16] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let session = Arc::new(Session {
            info: info.clone(),
            id: self.inner.next_session.fetch_add(1, Ordering::Relaxed),
            secret: secret.clone(),
            tx: tx.clone(),
            pending: Mutex::new(HashMap::new()),
            last_seen: Mutex::new((Instant::now(), now_ms())),
            sample: Mutex::new(None),
            active_faults: AtomicU32::new(u32::try_from(hello.active_faults.len()).unwrap_or(u32::MAX)),
            closed: CancellationToken::new(),
        });
        let old = {
            let mut sessions = self.inner.sessions.write().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = sessions.get(&info.id) {
                self.may_replace(old, &hello)?;
            }
            sessions.insert(info.id.clone(), session.clone())
        };
        let welcome = ControllerMessage {
            request_id: 0,
            body: Some(controller_message::Body::Welcome(v1::Welcome {
                heartbeat_ms: millis(self.inner.config.heartbeat),
                session_secret: secret,
            })),
        };
        // Fresh channel with room: cannot fail.
        let _ = tx.try_send(Ok(welcome));
        if let Some(old) = old {
            tracing::info!(agent = %info.id, "agent reconnected: the older stream is closed");
            old.closed.cancel();
        }
        let record = AgentRecord {
            id: info.id.clone(),
            hostname: info.hostname.clone(),
            labels: info.labels.clone(),
            capabilities: info.capabilities.clone(),
            version: info.version.clone(),
            boot_id: info.boot_id.clone(),
            first_seen_ms: now_ms(),
            last_seen_ms: now_ms(),
            peer: info.peer.clone(),
        };
        self.inner.store.submit("the agent's record", move |s| s.upsert_agent(&record));
        tracing::info!(agent = %info.id, host = %info.hostname, peer = %info.peer, faults = hello.active_faults.len(), "agent connected");
        self.reconcile(&info.id, &hello.active_faults);
        let fleet = self.clone();
        tokio::spawn(async move { fleet.serve_session(session, inbound).await });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    /// Whether a hello may take over the live session `old` of the same id: it proves it is the same agent
    /// (the old session's secret), or the old session is closed or late.
    fn may_replace(&self, old: &Session, hello: &Hello) -> Result<(), FleetError> {
        if !hello.session_secret.is_empty()
            && chaos_proto::transport::tokens_equal(&hello.session_secret, &old.secret)
        {
            return Ok(());
        }
        let silent = self.silence(old);
        if old.closed.is_cancelled() || silent > self.inner.config.heartbeat * 3 / 2 {
            return Ok(());
        }
        Err(FleetError::SessionTaken {
            agent: hello.agent_id.clone(),
            peer: if old.info.peer.is_empty() { "an unknown peer".into() } else { old.info.peer.clone() },
            silent,
        })
    }

    /// The agent lists what it holds: keep what a live run still wants, revert the rest; forget what we
    /// thought it held but it no longer does (its lease lapsed while we were apart).
    fn reconcile(&self, agent: &str, held: &[v1::ActiveFault]) {
        let mut revert = Vec::new();
        let mut lost = Vec::new();
        {
            let mut faults = lock(&self.inner.faults);
            for fault in held {
                match faults.get_mut(&fault.fault_id) {
                    // Held all along: the disconnect did not interrupt it.
                    Some(h) if h.agent == agent && !h.reverting => h.disconnected_at = None,
                    _ => revert.push(fault.fault_id.clone()),
                }
            }
            faults.retain(|id, h| {
                let keep = h.agent != agent || held.iter().any(|f| &f.fault_id == id);
                if !keep {
                    lost.push((id.clone(), h.run.clone(), h.reverting));
                }
                keep
            });
        }
        for (fault_id, run, reverting) in lost {
            if !reverting {
                let _ = self.mark_lost(
                    &fault_id,
                    format!("agent {agent} no longer held it when it reconnected (its lease lapsed while it was cut off)"),
                );
            }
            self.audit(NewAudit {
                at_ms: now_ms(),
                actor: "agent".into(),
                action: "fault_expired".into(),
                agent_id: Some(agent.to_string()),
                run_id: Some(run),
                fault_id: Some(fault_id),
                detail: "the agent no longer holds it after reconnecting (its lease lapsed)".into(),
            });
        }
        for fault_id in revert {
            let fleet = self.clone();
            let agent = agent.to_string();
            tokio::spawn(async move {
                let body = controller_message::Body::Revert(v1::Revert { fault_id: fault_id.clone() });
                let result = fleet.request(&agent, body).await;
                let detail = match &result {
                    Ok(status) => format!("reconciled: not wanted any more ({})", status.detail),
                    Err(e) => format!("reconcile revert failed: {e} (its lease still reverts it)"),
                };
                fleet.audit(NewAudit {
                    at_ms: now_ms(),
                    actor: "controller".into(),
                    action: "fault_reverted".into(),
                    agent_id: Some(agent.clone()),
                    run_id: None,
                    fault_id: Some(fault_id),
                    detail,
                });
            });
        }
    }

    async fn serve_session<S>(&self, session: Arc<Session>, mut inbound: S)
    where
        S: Stream<Item = Result<AgentMessage, Status>> + Send + Unpin + 'static,
    {
        let agent = session.info.id.clone();
        loop {
            let message = tokio::select! {
                _ = session.closed.cancelled() => break,
                m = inbound.next() => m,
            };
            let message = match message {
                Some(Ok(m)) => m,
                Some(Err(status)) => {
                    tracing::info!(agent = %agent, %status, "agent stream broke");
                    break;
                }
                None => break,
            };
            *lock(&session.last_seen) = (Instant::now(), now_ms());
            match message.body {
                Some(agent_message::Body::Heartbeat(hb)) => {
                    session.active_faults.store(hb.active_faults, Ordering::Relaxed);
                    *lock(&session.sample) = hb.sample;
                }
                Some(agent_message::Body::FaultStatus(status)) => self.on_status(&session, status),
                Some(agent_message::Body::ProbeResult(result)) => {
                    if let Some(waiter) = lock(&session.pending).remove(&result.request_id) {
                        let _ = waiter.send(Reply::Probe(result));
                    }
                }
                Some(agent_message::Body::PodList(list)) => {
                    if let Some(waiter) = lock(&session.pending).remove(&list.request_id) {
                        let _ = waiter.send(Reply::Pods(list));
                    }
                }
                Some(agent_message::Body::Hello(_)) => {
                    tracing::warn!(agent = %agent, "a second hello on one stream is ignored");
                }
                None => {}
            }
        }
        session.closed.cancel();
        // Fail waiting requests now rather than at their timeout.
        lock(&session.pending).clear();
        let mut sessions = self.inner.sessions.write().unwrap_or_else(|p| p.into_inner());
        if sessions.get(&agent).is_some_and(|s| s.id == session.id) {
            sessions.remove(&agent);
            tracing::info!(agent = %agent, "agent disconnected");
            let now = Instant::now();
            for h in lock(&self.inner.faults).values_mut().filter(|h| h.agent == agent) {
                h.disconnected_at.get_or_insert(now);
            }
        }
    }

    /// Forgets a held fault as lost before its run reverted it, remembering why for [`Fleet::revert_checked`].
    /// Returns the fault's run, if it was still held.
    fn mark_lost(&self, fault_id: &str, why: String) -> Option<String> {
        tracing::warn!(fault = %fault_id, reason = %why, "remote fault lost before its planned end");
        let held = lock(&self.inner.faults).remove(fault_id);
        lock(&self.inner.lost).insert(fault_id.to_string(), (why, Instant::now()));
        held.map(|h| h.run)
    }

    /// [`Fleet::mark_lost`] for a loss the controller found itself (no EXPIRED came): written to the audit log
    /// as an expiry, with why.
    fn expired_here(&self, fault_id: &str, agent: &str, why: String) {
        let run = self.mark_lost(fault_id, why.clone());
        self.audit(NewAudit {
            at_ms: now_ms(),
            actor: "controller".into(),
            action: "fault_expired".into(),
            agent_id: Some(agent.to_string()),
            run_id: run,
            fault_id: Some(fault_id.to_string()),
            detail: why,
        });
    }

    fn on_status(&self, session: &Session, status: FaultStatus) {
        if status.request_id != 0 {
            if let Some(waiter) = lock(&session.pending).remove(&status.request_id) {
                let _ = waiter.send(Reply::Status(status));
            }
            return;
        }
        if status.state == FaultState::Expired as i32 {
            let held = lock(&self.inner.faults).remove(&status.fault_id);
            if held.as_ref().is_some_and(|h| !h.reverting) {
                let _ = self.mark_lost(
                    &status.fault_id,
                    format!("agent {} reported its lease lapsed: {}", session.info.id, status.detail),
                );
            }
            self.audit(NewAudit {
                at_ms: now_ms(),
                actor: "agent".into(),
                action: "fault_expired".into(),
                agent_id: Some(session.info.id.clone()),
                run_id: held.map(|h| h.run),
                fault_id: Some(status.fault_id.clone()),
                detail: format!("the lease lapsed on the agent: {}", status.detail),
            });
        }
    }

    /// Sends one request to `agent` and waits for its status.
    pub async fn request(
        &self,
        agent: &str,
        body: controller_message::Body,
    ) -> Result<FaultStatus, FleetError> {
        match self.exchange(agent, body, self.inner.config.request_timeout).await? {
            Reply::Status(status) => Ok(status),
            Reply::Probe(_) | Reply::Pods(_) => Err(FleetError::WrongAnswer { agent: agent.to_string() }),
        }
    }

    /// Asks `agent` to run a command probe (its policy decides whether it may), waiting up to the probe's own
    /// timeout plus the request timeout.
    pub async fn probe(&self, agent: &str, probe: v1::RunProbe) -> Result<v1::ProbeResult, FleetError> {
        let wait = Duration::from_millis(probe.timeout_ms) + self.inner.config.request_timeout;
        match self.exchange(agent, controller_message::Body::RunProbe(probe), wait).await? {
            Reply::Probe(result) => Ok(result),
            Reply::Status(status) => {
                Err(FleetError::NoProbes { agent: agent.to_string(), detail: status.detail })
            }
            Reply::Pods(_) => Err(FleetError::WrongAnswer { agent: agent.to_string() }),
        }
    }

    /// The pods on `agent`'s node that `selector` matches, as the agent finds them through its container
    /// runtime. An agent that cannot ask its runtime answers why, as a refusal.
    pub async fn pods(
        &self,
        agent: &str,
        selector: &chaos_agent::pods::PodSelector,
    ) -> Result<Vec<chaos_agent::pods::Pod>, FleetError> {
        let body = controller_message::Body::ListPods(v1::ListPods {
            namespace: selector.namespace.clone(),
            labels: selector.labels.clone().into_iter().collect(),
            container: selector.container.clone().unwrap_or_default(),
        });
        match self.exchange(agent, body, self.inner.config.request_timeout).await? {
            Reply::Pods(list) if list.error.is_empty() => Ok(list.pods.into_iter().map(pod_from).collect()),
            Reply::Pods(list) => Err(FleetError::Refused { agent: agent.to_string(), detail: list.error }),
            Reply::Status(status) => {
                Err(FleetError::Refused { agent: agent.to_string(), detail: status.detail })
            }
            Reply::Probe(_) => Err(FleetError::WrongAnswer { agent: agent.to_string() }),
        }
    }

    async fn exchange(
        &self,
        agent: &str,
        body: controller_message::Body,
        timeout: Duration,
    ) -> Result<Reply, FleetError> {
        let session = self.session(agent)?;
        let request_id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&session.pending).insert(request_id, tx);
        let message = ControllerMessage { request_id, body: Some(body) };
        let sent =
            tokio::time::timeout(self.inner.config.request_timeout, session.tx.send(Ok(message))).await;
        if !matches!(sent, Ok(Ok(()))) {
            lock(&session.pending).remove(&request_id);
            return Err(FleetError::StreamClosed { agent: agent.to_string() });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(FleetError::Disconnected { agent: agent.to_string() }),
            Err(_) => {
                lock(&session.pending).remove(&request_id);
                Err(FleetError::Timeout { agent: agent.to_string(), timeout })
            }
        }
    }

    /// Applies a fault on an agent; returns the agent's description of what it did. A fault with a duration is
    /// renewed until reverted (or its duration plus the margin passes).
    pub async fn apply(&self, req: ApplyRequest) -> Result<String, FleetError> {
        let lease = match req.duration {
            Some(d) => self.inner.config.lease.min(d + self.inner.config.margin),
            None => self.inner.config.lease,
        };
        let body = controller_message::Body::Apply(v1::Apply {
            fault_id: req.fault_id.clone(),
            run_id: req.run.clone(),
            spec_json: req.spec_json.clone(),
            lease_ms: millis(lease),
            seed: req.seed,
            actor: req.actor.clone(),
            pod: req.pod.as_ref().map(pod_ref),
        });
        let applied_at = Instant::now();
        let result = self.request(&req.agent, body).await;
        let (ok, detail) = match &result {
            Ok(s) if s.state == FaultState::Applied as i32 => (true, s.detail.clone()),
            Ok(s) => (false, s.detail.clone()),
            Err(e) => (false, e.to_string()),
        };
        self.audit(NewAudit {
            at_ms: now_ms(),
            actor: req.actor.clone(),
            action: if ok { "fault_applied" } else { "fault_failed" }.into(),
            agent_id: Some(req.agent.clone()),
            run_id: Some(req.run.clone()),
            fault_id: Some(req.fault_id.clone()),
            detail: format!("{}: {detail}", req.spec_json),
        });
        if !ok {
            // A request that timed out may still have been applied: revert to be sure (idempotent).
            return Err(match result {
                Err(e) => {
                    let fleet = self.clone();
                    let (agent, fault_id) = (req.agent.clone(), req.fault_id.clone());
                    tokio::spawn(async move {
                        let body = controller_message::Body::Revert(v1::Revert { fault_id });
                        let _ = fleet.request(&agent, body).await;
                    });
                    e
                }
                Ok(_) => FleetError::ApplyFailed { agent: req.agent.clone(), detail },
            });
        }
        if let Some(duration) = req.duration {
            let held = Held {
                agent: req.agent.clone(),
                run: req.run.clone(),
                actor: req.actor.clone(),
                deadline: applied_at + duration + self.inner.config.margin,
                reverting: false,
                granted_until: applied_at + lease,
                disconnected_at: None,
            };
            lock(&self.inner.faults).insert(req.fault_id.clone(), held);
            let fleet = self.clone();
            tokio::spawn(async move { fleet.renew_until_reverted(req.fault_id, lease).await });
        }
        Ok(detail)
    }

    async fn renew_until_reverted(&self, fault_id: String, lease: Duration) {
        let period = (lease / 3).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(period).await;
            let (agent, deadline) = {
                let faults = lock(&self.inner.faults);
                match faults.get(&fault_id) {
                    Some(h) if !h.reverting => (h.agent.clone(), h.deadline),
                    _ => return,
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return;
            }
            let ttl = lease.min(remaining);
            let body = controller_message::Body::Renew(v1::Renew {
                fault_id: fault_id.clone(),
                lease_ms: millis(ttl),
            });
            let sent_at = Instant::now();
            match self.request(&agent, body).await {
                Ok(s) if s.state == FaultState::Renewed as i32 => {
                    if let Some(h) = lock(&self.inner.faults).get_mut(&fault_id) {
                        h.granted_until = sent_at + ttl;
                    }
                }
                Ok(s) => {
                    tracing::warn!(fault = %fault_id, agent = %agent, detail = %s.detail, "renewal refused: the fault is gone");
                    if lock(&self.inner.faults).get(&fault_id).is_some_and(|h| !h.reverting) {
                        self.expired_here(
                            &fault_id,
                            &agent,
                            format!("agent {agent} refused to renew it: {}", s.detail),
                        );
                    }
                    return;
                }
                // Not connected now: keep trying while the agent's lease may still hold it; once that lease has
                // passed, the agent has reverted it (or died with it).
                Err(e) => {
                    tracing::debug!(fault = %fault_id, error = %e, "renewal not delivered");
                    let lapsed = lock(&self.inner.faults)
                        .get(&fault_id)
                        .is_some_and(|h| !h.reverting && Instant::now() >= h.granted_until);
                    if lapsed {
                        self.expired_here(
                            &fault_id,
                            &agent,
                            format!(
                                "agent {agent} could not be reached before the lease it held lapsed ({e})"
                            ),
                        );
                        return;
                    }
                }
            }
        }
    }

    /// Reverts a remote fault. Idempotent: a fault that is gone already (reverted, expired, halted) is fine.
    /// When the agent cannot be reached, renewals stop (its lease reverts the fault) and the error says so.
    pub async fn revert(&self, fault_id: &str) -> Result<(), FleetError> {
        self.revert_checked(fault_id).await.map(|_| ())
    }

    /// Why the fault was lost, if the fleet knows it was (without taking it: [`Fleet::revert_checked`] does).
    pub fn lost_reason(&self, fault_id: &str) -> Option<String> {
        lock(&self.inner.lost).get(fault_id).map(|(why, _)| why.clone())
    }

    /// [`Fleet::revert`] that says whether the fault was still held: [`Reverted::Lost`] with what happened
    /// when it expired, was refused or was out of reach before this revert (a run's fault lost mid-run).
    pub async fn revert_checked(&self, fault_id: &str) -> Result<Reverted, FleetError> {
        if let Some((why, at)) = lock(&self.inner.lost).remove(fault_id) {
            return Ok(Reverted::Lost(format!("{why} ({:.1} s ago)", at.elapsed().as_secs_f64())));
        }
        let (agent, run, actor, disconnected_at, granted_until) = {
            let mut faults = lock(&self.inner.faults);
            match faults.get_mut(fault_id) {
                Some(h) => {
                    h.reverting = true;
                    (h.agent.clone(), h.run.clone(), h.actor.clone(), h.disconnected_at, h.granted_until)
                }
                None => return Ok(Reverted::Done),
            }
        };
        if let Some(since) = disconnected_at
            && self.session(&agent).is_err()
        {
            // Nobody can say the agent still holds it: if it still runs, the lease it was given ends it.
            let left = granted_until.saturating_duration_since(Instant::now());
            let why = format!(
                "agent {agent} disconnected {:.1} s ago while holding it and is not back (if it still runs, its \
                 lease ends the fault within {:.1} s)",
                since.elapsed().as_secs_f64(),
                left.as_secs_f64()
            );
            lock(&self.inner.faults).remove(fault_id);
            self.audit(NewAudit {
                at_ms: now_ms(),
                actor,
                action: "fault_lost".into(),
                agent_id: Some(agent),
                run_id: Some(run),
                fault_id: Some(fault_id.to_string()),
                detail: why.clone(),
            });
            return Ok(Reverted::Lost(why));
        }
        let body = controller_message::Body::Revert(v1::Revert { fault_id: fault_id.to_string() });
        let result = self.request(&agent, body).await;
        let outcome = match result {
            Ok(s) if s.state == FaultState::Reverted as i32 => Ok(()),
            Ok(s) => Err(FleetError::RevertFailed { agent: agent.clone(), detail: s.detail }),
            Err(e) => Err(FleetError::RevertUndelivered {
                cause: Box::new(e),
                within: granted_until.saturating_duration_since(Instant::now()),
            }),
        };
        if outcome.is_ok() {
            lock(&self.inner.faults).remove(fault_id);
        }
        self.audit(NewAudit {
            at_ms: now_ms(),
            actor,
            action: if outcome.is_ok() { "fault_reverted" } else { "fault_revert_failed" }.into(),
            agent_id: Some(agent),
            run_id: Some(run),
            fault_id: Some(fault_id.to_string()),
            detail: match &outcome {
                Ok(()) => "reverted".into(),
                Err(e) => e.to_string(),
            },
        });
        outcome.map(|()| Reverted::Done)
    }

    /// Asks `agent` what a fault would do (policy and capabilities checked there), changing nothing.
    pub async fn plan(
        &self,
        agent: &str,
        spec_json: &str,
        duration: Option<Duration>,
        seed: u64,
        pod: Option<&PodRef>,
    ) -> Result<String, FleetError> {
        let lease = duration.map_or(self.inner.config.lease, |d| d + self.inner.config.margin);
        let body = controller_message::Body::Plan(v1::Plan {
            spec_json: spec_json.to_string(),
            lease_ms: millis(lease),
            seed,
            pod: pod.map(pod_ref),
        });
        let status = self.request(agent, body).await?;
        if status.state == FaultState::Planned as i32 {
            Ok(status.detail)
        } else {
            Err(FleetError::Refused { agent: agent.to_string(), detail: status.detail })
        }
    }

    /// Sends halt-all to every connected agent at once and waits (up to `timeout`) for each to acknowledge.
    /// Every remote fault stops being renewed first, so an agent that misses the halt still reverts at its
    /// lease.
    pub async fn halt_all(&self, reason: &str, actor: &str, timeout: Duration) -> HaltReport {
        let started = Instant::now();
        for held in lock(&self.inner.faults).values_mut() {
            held.reverting = true;
        }
        let sessions: Vec<Arc<Session>> =
            self.inner.sessions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut tasks = tokio::task::JoinSet::new();
        for session in sessions {
            let fleet = self.clone();
            let reason = reason.to_string();
            tasks.spawn(async move {
                let body = controller_message::Body::HaltAll(v1::HaltAll { reason });
                let id = session.info.id.clone();
                let answer = tokio::time::timeout(timeout, fleet.request(&id, body)).await;
                (id, answer)
            });
        }
        let mut report = HaltReport::default();
        let mut entries = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((agent, answer)) = joined else { continue };
            let detail = match answer {
                Ok(Ok(s)) if s.state == FaultState::Halted as i32 => {
                    report.reverted += s.reverted;
                    report.failed += s.failed;
                    report.acknowledged.push(agent.clone());
                    lock(&self.inner.faults).retain(|_, h| h.agent != agent);
                    format!("acknowledged: {} reverted, {} failed", s.reverted, s.failed)
                }
                Ok(Ok(s)) => {
                    report.missing.push(agent.clone());
                    format!("unexpected answer: {}", s.detail)
                }
                Ok(Err(e)) => {
                    report.missing.push(agent.clone());
                    e.to_string()
                }
                Err(_) => {
                    report.missing.push(agent.clone());
                    format!("no acknowledgement within {timeout:?}")
                }
            };
            entries.push(NewAudit {
                at_ms: now_ms(),
                actor: actor.to_string(),
                action: "halt_all".into(),
                agent_id: Some(agent),
                run_id: None,
                fault_id: None,
                detail: format!("{reason}: {detail}"),
            });
        }
        report.elapsed = started.elapsed();
        report.acknowledged.sort();
        report.missing.sort();
        // One transaction for all the agents, written before the halt is reported.
        if let Err(e) = self.inner.store.call(move |s| s.append_audit_batch(&entries)).await {
            tracing::error!(error = %e, "could not write the halt to the audit log");
        }
        report
    }

    /// Connected agents whose labels include every pair of `selector`, by id. An agent counts while its stream
    /// is open: [`Fleet::reap_silent`] closes the stream of one silent for three heartbeats.
    pub fn select(&self, selector: &BTreeMap<String, String>) -> Vec<AgentInfo> {
        let sessions = self.inner.sessions.read().unwrap_or_else(|p| p.into_inner());
        sessions
            .values()
            .filter(|s| selector.iter().all(|(k, v)| s.info.labels.get(k) == Some(v)))
            .map(|s| s.info.clone())
            .collect()
    }

    /// The latest saturation sample a connected agent sent with its heartbeat.
    pub fn sample(&self, agent: &str) -> Option<v1::HostSample> {
        let sessions = self.inner.sessions.read().unwrap_or_else(|p| p.into_inner());
        sessions.get(agent).and_then(|s| *lock(&s.sample))
    }

    /// Ids of the connected agents.
    pub fn connected(&self) -> Vec<String> {
        self.inner.sessions.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// Every agent ever seen (from the store), with the health of the connected ones, filtered by `selector`.
    pub async fn list(&self, selector: &BTreeMap<String, String>) -> Result<Vec<AgentView>, FleetError> {
        let heartbeat = self.inner.config.heartbeat;
        let records = self.inner.store.call(|s| s.agents()).await?;
        let sessions = self.inner.sessions.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut views: BTreeMap<String, AgentView> = BTreeMap::new();
        for record in records {
            let info = AgentInfo {
                id: record.id.clone(),
                hostname: record.hostname,
                labels: record.labels,
                capabilities: record.capabilities,
                version: record.version,
                boot_id: record.boot_id,
                peer: record.peer,
            };
            let view = AgentView {
                info,
                health: Health::Gone,
                last_seen_ms: record.last_seen_ms,
                active_faults: 0,
                sample: None,
            };
            views.insert(record.id, view);
        }
        for (id, s) in sessions {
            let seen_ms = lock(&s.last_seen).1;
            let silent = self.silence(&s);
            let health = if silent <= heartbeat * 3 / 2 {
                Health::Connected
            } else if silent <= heartbeat * 3 {
                Health::Late
            } else {
                Health::Gone
            };
            views.insert(
                id,
                AgentView {
                    info: s.info.clone(),
                    health,
                    last_seen_ms: seen_ms,
                    active_faults: s.active_faults.load(Ordering::Relaxed),
                    sample: *lock(&s.sample),
                },
            );
        }
        Ok(views
            .into_values()
            .filter(|v| selector.iter().all(|(k, val)| v.info.labels.get(k) == Some(val)))
            .collect())
    }

    /// How long `session`'s agent has been silent, as far as this controller can judge: since its last message,
    /// or since the end of this controller's last pause if that is later.
    fn silence(&self, session: &Session) -> Duration {
        let seen = lock(&session.last_seen).0;
        seen.max(*lock(&self.inner.grace_from)).elapsed()
    }

    /// Closes the streams of agents silent for three heartbeats (they are gone; their leases revert their
    /// faults). Runs until `stop`.
    ///
    /// Pause-safe: a sweep that runs late by more than half a heartbeat means this controller was not running
    /// (SIGSTOP, a VM pause, a starved host), not that the agents stopped: their heartbeats are waiting unread
    /// in the socket buffers, and this sweep may well run before the sessions read them. So it judges nobody
    /// and gives every agent a fresh grace period of three heartbeats instead; an agent that really stopped is
    /// marked gone three heartbeats after the pause.
    pub async fn reap_silent(&self, stop: CancellationToken) {
        let heartbeat = self.inner.config.heartbeat;
        let mut tick = tokio::time::interval(heartbeat);
        // After a pause, one sweep (not a burst of the missed ones).
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let late = now.saturating_duration_since(last).saturating_sub(heartbeat);
            last = now;
            if late > heartbeat / 2 {
                tracing::warn!(
                    late_ms = u64::try_from(late.as_millis()).unwrap_or(u64::MAX),
                    "this controller was paused: every agent gets a fresh grace period before it is judged"
                );
                *lock(&self.inner.grace_from) = now;
                continue;
            }
            let silent: Vec<Arc<Session>> = self
                .inner
                .sessions
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|s| self.silence(s) > heartbeat * 3)
                .cloned()
                .collect();
            for s in silent {
                tracing::warn!(agent = %s.info.id, "agent missed three heartbeats: marked gone");
                s.closed.cancel();
            }
        }
    }

    /// Ends every agent's stream (the controller is stopping): each agent sees its stream end, keeps its faults
    /// under their leases, and reconnects to whichever controller comes back.
    pub fn close_all(&self) {
        for session in self.inner.sessions.read().unwrap_or_else(|p| p.into_inner()).values() {
            session.closed.cancel();
        }
    }

    /// Remote faults in force: (fault id, agent, run).
    pub fn held(&self) -> Vec<(String, String, String)> {
        let mut held: Vec<_> = lock(&self.inner.faults)
            .iter()
            .map(|(id, h)| (id.clone(), h.agent.clone(), h.run.clone()))
            .collect();
        held.sort();
        held
    }

    /// Remote faults in force with their leases, by fault id (the web console's agents page).
    pub fn held_faults(&self) -> Vec<HeldFault> {
        let now = Instant::now();
        let mut held: Vec<HeldFault> = lock(&self.inner.faults)
            .iter()
            .map(|(id, h)| HeldFault {
                fault_id: id.clone(),
                agent: h.agent.clone(),
                run: h.run.clone(),
                actor: h.actor.clone(),
                lease_left: h.granted_until.saturating_duration_since(now),
                renewed_for: h.deadline.saturating_duration_since(now),
                reverting: h.reverting,
                disconnected: h.disconnected_at.is_some(),
            })
            .collect();
        held.sort_by(|a, b| a.fault_id.cmp(&b.fault_id));
        held
    }
}

/// A remote fault in force, as [`Fleet::held_faults`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldFault {
    pub fault_id: String,
    pub agent: String,
    pub run: String,
    /// Who started the run that applied it.
    pub actor: String,
    /// Until the lease the agent was last given lapses (the agent reverts the fault then unless renewed).
    pub lease_left: Duration,
    /// Until renewals stop (the fault's own duration plus the margin).
    pub renewed_for: Duration,
    /// A revert was asked for.
    pub reverting: bool,
    /// The agent's stream is closed while it holds the fault.
    pub disconnected: bool,
}

// === impl probes::Agents ===

impl crate::probes::Agents for Fleet {
    fn matching(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        let mut ids: Vec<String> = self.select(labels).into_iter().map(|a| a.id).collect();
        ids.sort();
        ids
    }

    fn run_command<'a>(
        &'a self,
        agent: &'a str,
        probe: v1::RunProbe,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<v1::ProbeResult, String>> + Send + 'a>>
    {
        Box::pin(async move { self.probe(agent, probe).await.map_err(|e| e.to_string()) })
    }
}

/// A pod as the agent protocol carries it, back in the agent library's terms.
fn pod_from(p: v1::PodInfo) -> chaos_agent::pods::Pod {
    chaos_agent::pods::Pod {
        namespace: p.namespace,
        name: p.name,
        uid: p.uid,
        sandbox_id: p.sandbox_id,
        labels: Default::default(),
        ip: p.ip,
        netns: (!p.netns.is_empty()).then_some(p.netns),
        containers: p
            .containers
            .into_iter()
            // Volumes are the agent's business: it resolves the pod again when it applies.
            .map(|c| chaos_agent::pods::PodContainer {
                name: c.name,
                id: c.id,
                pid: c.pid,
                cgroup: c.cgroup,
                mounts: Vec::new(),
            })
            .collect(),
    }
}

fn pod_ref(p: &PodRef) -> v1::PodRef {
    v1::PodRef {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        sandbox_id: p.sandbox_id.clone(),
        container: p.container.clone(),
    }
}
