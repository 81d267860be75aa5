//! The protocol clients (see the parent module: they acknowledge without touching the host), and the API
//! client.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use chaos_agent::faults::FaultKind;
use chaos_proto::transport::{ClientConfig, WithToken};
use chaos_proto::v1::agent_service_client::AgentServiceClient;
use chaos_proto::v1::controller_message::Body;
use chaos_proto::v1::controller_service_client::ControllerServiceClient;
use chaos_proto::v1::{
    self, AgentMessage, ControllerMessage, FaultState, FaultStatus, Heartbeat, Hello, HostSample,
    agent_message,
};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::{ACK_DETAIL, DIAL_PARALLEL, JOIN_DEADLINE};

/// What the protocol clients of one swarm share with the benchmark.
pub(super) struct Board {
    epoch: Instant,
    /// Per agent: when it last received a `halt_all`, ns after `epoch` (0: never).
    halted_at: Vec<AtomicU64>,
    welcomed: AtomicUsize,
    /// The first failures (a client that could not connect, or whose stream broke).
    failures: Mutex<Vec<String>>,
}

impl Board {
    fn halted(&self, index: usize) {
        let ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if let Some(slot) = self.halted_at.get(index) {
            slot.store(ns, Ordering::Relaxed);
        }
    }

    /// Of agents `0..n`: how many received a halt after `since`, and how long after it the first and the
    /// last did. `None` when none did.
    pub(super) fn reached_since(&self, since: Instant, n: usize) -> Option<(usize, Duration, Duration)> {
        let since = since.duration_since(self.epoch);
        let after: Vec<Duration> = self.halted_at[..n]
            .iter()
            .map(|ns| Duration::from_nanos(ns.load(Ordering::Relaxed)))
            .filter(|at| *at >= since)
            .map(|at| at - since)
            .collect();
        Some((after.len(), *after.iter().min()?, *after.iter().max()?))
    }

    fn fail(&self, what: String) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() < 5 {
            failures.push(what);
        }
    }
}

/// The protocol clients: `grow` starts more, `stop` ends them all.
pub(super) struct Swarm {
    endpoint: Endpoint,
    token: MetadataValue<Ascii>,
    pub(super) board: Arc<Board>,
    pub(super) per_connection: usize,
    /// The connection the next agents share (multiplexed mode).
    shared: Option<Channel>,
    started: usize,
    dialling: Arc<Semaphore>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// How a protocol client reaches the controller.
enum Dial {
    /// Its own TCP connection.
    Own(Box<Endpoint>),
    /// A connection it shares with other agents (one HTTP/2 stream each).
    Shared(Channel),
}

impl Swarm {
    pub(super) fn new(
        endpoint: Endpoint,
        token: MetadataValue<Ascii>,
        capacity: usize,
        per_connection: usize,
    ) -> Swarm {
        let board = Board {
            epoch: Instant::now(),
            halted_at: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            welcomed: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
        };
        Swarm {
            endpoint,
            token,
            board: Arc::new(board),
            per_connection,
            shared: None,
            started: 0,
            dialling: Arc::new(Semaphore::new(DIAL_PARALLEL)),
            stop: CancellationToken::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Starts agents until `n` have been started.
    pub(super) async fn grow(&mut self, n: usize) -> Result<()> {
        ensure!(n <= self.board.halted_at.len(), "{n} agents asked, room for {}", self.board.halted_at.len());
        for index in self.started..n {
            let dial = if self.per_connection <= 1 {
                Dial::Own(Box::new(self.endpoint.clone()))
            } else {
                if index % self.per_connection == 0 || self.shared.is_none() {
                    self.shared = Some(self.endpoint.connect().await.context("connecting a shared channel")?);
                }
                Dial::Shared(self.shared.clone().context("a shared channel")?)
            };
            let client = ProtocolClient {
                index,
                dial,
                token: self.token.clone(),
                board: self.board.clone(),
                dialling: self.dialling.clone(),
                stop: self.stop.clone(),
            };
            self.tasks.spawn(client.run());
        }
        self.started = self.started.max(n);
        Ok(())
    }

    pub(super) async fn wait_welcomed(&self, n: usize) -> Result<()> {
        let deadline = Instant::now() + JOIN_DEADLINE;
        while self.board.welcomed.load(Ordering::Relaxed) < n {
            self.check()?;
            ensure!(
                Instant::now() < deadline,
                "expected {n} agents welcomed within {JOIN_DEADLINE:?}, found {}",
                self.board.welcomed.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Fails with the first failures of the clients, if any.
    pub(super) fn check(&self) -> Result<()> {
        let failures = self.board.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.is_empty() { Ok(()) } else { bail!("protocol clients failed: {}", failures.join("; ")) }
    }

    /// Ends every client (their streams and connections close) and waits for them.
    pub(super) async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// One protocol client: connects, says hello, heartbeats, and acknowledges every request at once without
/// doing anything (see the module docs).
struct ProtocolClient {
    index: usize,
    dial: Dial,
    token: MetadataValue<Ascii>,
    board: Arc<Board>,
    dialling: Arc<Semaphore>,
    stop: CancellationToken,
}

impl ProtocolClient {
    async fn run(self) {
        let (board, stop, index) = (self.board.clone(), self.stop.clone(), self.index);
        if let Err(e) = self.serve().await
            && !stop.is_cancelled()
        {
            board.fail(format!("{}: {e:#}", agent_id(index)));
        }
    }

    async fn serve(self) -> Result<()> {
        let (tx, rx) = mpsc::channel(64);
        let (mut inbound, every) = {
            let _permit = self.dialling.acquire().await?;
            let channel = match &self.dial {
                Dial::Own(endpoint) => endpoint.connect().await.context("connecting")?,
                Dial::Shared(channel) => channel.clone(),
            };
            tx.send(hello(self.index)).await.map_err(|_| anyhow!("the outbound queue closed"))?;
            let mut request = tonic::Request::new(ReceiverStream::new(rx));
            request.metadata_mut().insert("authorization", self.token.clone());
            let mut inbound =
                AgentServiceClient::new(channel).connect(request).await.context("Connect")?.into_inner();
            let every = match inbound.message().await.context("waiting for the welcome")? {
                Some(ControllerMessage { body: Some(Body::Welcome(w)), .. }) => {
                    Duration::from_millis(w.heartbeat_ms)
                }
                other => bail!("expected a welcome, found {other:?}"),
            };
            (inbound, every)
        };
        self.board.welcomed.fetch_add(1, Ordering::Relaxed);
        let mut ticker = tokio::time::interval(every.max(Duration::from_millis(50)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0;
        loop {
            let outgoing = tokio::select! {
                () = self.stop.cancelled() => return Ok(()),
                message = inbound.message() => match message.context("the stream broke")? {
                    Some(message) => self.answer(message),
                    None => bail!("the controller ended the stream"),
                },
                _ = ticker.tick() => {
                    seq += 1;
                    Some(heartbeat(seq))
                }
            };
            if let Some(message) = outgoing {
                tx.send(message).await.map_err(|_| anyhow!("the outbound queue closed"))?;
            }
        }
    }

    /// The matching status for a request, at once; nothing on this host is touched.
    fn answer(&self, message: ControllerMessage) -> Option<AgentMessage> {
        let (fault_id, state) = match message.body? {
            // Bench agents allow no probe command and have no pods: they never answer either.
            Body::Welcome(_) | Body::RunProbe(_) | Body::ListPods(_) => return None,
            Body::Apply(apply) => (apply.fault_id, FaultState::Applied),
            Body::Renew(renew) => (renew.fault_id, FaultState::Renewed),
            Body::Revert(revert) => (revert.fault_id, FaultState::Reverted),
            Body::Plan(_) => (String::new(), FaultState::Planned),
            Body::HaltAll(_) => {
                self.board.halted(self.index);
                (String::new(), FaultState::Halted)
            }
        };
        let status = FaultStatus {
            request_id: message.request_id,
            fault_id,
            state: state.into(),
            detail: ACK_DETAIL.into(),
            reverted: 0,
            failed: 0,
        };
        Some(AgentMessage { body: Some(agent_message::Body::FaultStatus(status)) })
    }
}

pub(super) fn agent_id(index: usize) -> String {
    format!("agent-{index:04}")
}

/// What a real agent says: its id, a hostname, `role=bench`, every fault kind, a version and a boot id.
fn hello(index: usize) -> AgentMessage {
    let hello = Hello {
        agent_id: agent_id(index),
        hostname: format!("bench-host-{index:04}"),
        labels: HashMap::from([("role".to_string(), "bench".to_string())]),
        capabilities: FaultKind::ALL.iter().map(|k| k.as_str().to_string()).collect(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        boot_id: format!("00000000-0000-4000-8000-{index:012}"),
        active_faults: Vec::new(),
        session_secret: String::new(),
    };
    AgentMessage { body: Some(agent_message::Body::Hello(hello)) }
}

/// A heartbeat with a host sample, as a real agent sends.
fn heartbeat(seq: u64) -> AgentMessage {
    let sample =
        HostSample { cpu: Some(0.1), memory_used: 0.3, load: 0.2, cpus: 2, memory_total_bytes: 8 << 30 };
    AgentMessage {
        body: Some(agent_message::Body::Heartbeat(Heartbeat { seq, sample: Some(sample), active_faults: 0 })),
    }
}

// === the API client ===

pub(super) type Api = ControllerServiceClient<InterceptedService<Channel, WithToken>>;

pub(super) async fn api_client(url: &str, token: &str) -> Result<Api> {
    let channel =
        chaos_proto::transport::channel(&ClientConfig { url: url.to_string(), ..Default::default() })
            .await
            .context("connecting the API client")?;
    Ok(ControllerServiceClient::with_interceptor(channel, WithToken::new(Some(token))?))
}

/// Waits until `ListAgents` (selector `role=bench`) shows exactly `n` agents connected.
pub(super) async fn wait_connected(api: &mut Api, n: usize) -> Result<()> {
    let deadline = Instant::now() + JOIN_DEADLINE;
    loop {
        let selector = HashMap::from([("role".to_string(), "bench".to_string())]);
        let agents = api.list_agents(v1::ListAgentsRequest { selector }).await?.into_inner().agents;
        let connected = agents.iter().filter(|a| a.health == "connected").count();
        if connected == n {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "expected {n} agents connected within {JOIN_DEADLINE:?}, ListAgents shows {connected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first token of a token file the controller wrote (`TOKEN` or `NAME TOKEN` lines).
pub(super) fn first_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .and_then(|line| line.split_whitespace().last())
        .map(str::to_string)
        .with_context(|| format!("no token in {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_first_token_of_either_line_form() {
        let dir = std::env::temp_dir().join(format!("chaos-bench-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let named = dir.join("api.token");
        std::fs::write(&named, "# who may call\n\nbench 0123456789abcdef0123\nci fedcba9876543210fedc\n")
            .unwrap();
        assert_eq!(first_token(&named).unwrap(), "0123456789abcdef0123");
        let bare = dir.join("agent.token");
        std::fs::write(&bare, "aaaaaaaaaaaaaaaaaaaa\n").unwrap();
        assert_eq!(first_token(&bare).unwrap(), "aaaaaaaaaaaaaaaaaaaa");
        std::fs::write(&bare, "# nothing\n").unwrap();
        assert!(first_token(&bare).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_halt_counts_only_for_the_agents_it_reached_after_the_call() {
        let board = Board {
            epoch: Instant::now(),
            halted_at: (0..3).map(|_| AtomicU64::new(0)).collect(),
            welcomed: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
        };
        board.halted(0);
        std::thread::sleep(Duration::from_millis(2));
        let call = Instant::now();
        assert_eq!(board.reached_since(call, 3), None, "the earlier halt is not this one's");
        board.halted(2);
        board.halted(1);
        let (reached, first, last) = board.reached_since(call, 3).unwrap();
        assert_eq!(reached, 2);
        assert!(first <= last);
        assert_eq!(board.reached_since(call, 1), None, "agent 0 only");
    }
}
