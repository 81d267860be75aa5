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
//!
//! Layout: [`session`] (one dial: hello, welcome, heartbeats, the inbound loop), [`serving`] (the faults held
//! for the controller and each request's task), [`identity`] (what the hello says about this host), [`backoff`]
//! (the reconnect delays), [`probe`] (command probes).

mod backoff;
mod identity;
pub mod probe;
mod serving;
mod session;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chaos_agent::host::HostAgent;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::DuplexStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Endpoint;

use backoff::Backoff;
use identity::Identity;
use serving::Shared;
use session::{Ended, session};

/// The first reconnect delay by default.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest reconnect delay by default.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A session that lasted this long was healthy: the next reconnect starts from the first delay again.
const STABLE_SESSION: Duration = Duration::from_secs(10);

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
    /// The node's container runtime (CRI) socket, where pod targets are found
    /// ([`chaos_proto::cri::DEFAULT_SOCKET`]).
    pub cri_socket: std::path::PathBuf,
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
    serve_with(options, None, agent, shutdown).await
}

/// Opens one connection to the controller in place of a dial: what [`serve_over`] takes.
pub type Connector =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = std::io::Result<DuplexStream>> + Send>> + Send + Sync>;

/// [`serve`] over the connections `connect` opens (in-memory streams: tests of the controller's fleet and this
/// agent together, with no socket) instead of dialling `options.endpoint`, whose other settings still apply.
pub async fn serve_over(
    options: ServeOptions,
    connect: Connector,
    agent: HostAgent,
    shutdown: CancellationToken,
) -> Result<(), RemoteError> {
    serve_with(options, Some(connect), agent, shutdown).await
}

async fn serve_with(
    options: ServeOptions,
    connect: Option<Connector>,
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
    let shared = Arc::new(Shared::new(agent, shutdown.clone(), options.cri_socket.clone()));
    let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
    let mut rng = StdRng::from_os_rng();
    let mut welcomed_once = false;
    let outcome = loop {
        let started = Instant::now();
        let ended = tokio::select! {
            ended = session(&shared, &identity, &options.endpoint, connect.as_ref(), token.as_ref()) => ended,
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
            cri_socket: chaos_proto::cri::DEFAULT_SOCKET.into(),
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data whole (inserts and removes of whole entries).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
