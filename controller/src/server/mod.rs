//! `chaos controller`: the engine as a service. One gRPC server carries both the `ControllerService` (people
//! and CI) and the `AgentService` (agents dial in), over TLS (optionally mutual) when configured, bound to
//! loopback by default. State lives in an embedded SQLite store; a scheduler fires schedules.
//!
//! A run through the controller acts only on agents: experiments that would act on the controller's own host
//! are refused unless it was started with `--allow-local-effects` ([`local`]).
//!
//! At start, runs the previous controller left `running` are marked `interrupted` (their faults were reverted
//! by the agents' leases when renewals stopped). On shutdown every run in progress is halted and reverted
//! before the server stops.

pub mod api;
pub mod auth;
pub mod error;
pub mod gameday;
pub mod incidents;
pub mod local;
pub mod notify;
pub mod runs;
pub mod scheduler;
pub mod slo_catalog;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chaos_proto::v1::agent_service_server::AgentServiceServer;
use chaos_proto::v1::controller_service_server::ControllerServiceServer;
use chaos_proto::v1::notify_service_server::NotifyServiceServer;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::fleet::{Fleet, FleetConfig};
use crate::store::{SqliteStore, StoreError, StoreHandle};

pub use error::{ApiError, FileError, ServerError};
pub use runs::Limits;

/// The largest message an agent may send (a hello lists its faults; heartbeats are small).
pub const MAX_AGENT_MESSAGE: usize = 256 * 1024;

/// Where the controller keeps its database and token files unless told otherwise.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("CHAOS_CONTROLLER_DIR")
        .map_or_else(|| PathBuf::from("/var/lib/chaos/controller"), PathBuf::from)
}

/// How a controller is set up.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub listen: SocketAddr,
    /// Holds `controller.db` and, unless given elsewhere, `api.token` and `agent.token`.
    pub data_dir: PathBuf,
    pub api_token_file: Option<PathBuf>,
    pub agent_token_file: Option<PathBuf>,
    pub tls: Option<chaos_proto::transport::ServerTls>,
    pub fleet: FleetConfig,
    pub limits: Limits,
    /// The largest API message (an experiment submitted inline).
    pub max_message_bytes: usize,
    /// Where the web console listens (`--ui-listen`), if anywhere: a listener of its own, with the API's
    /// tokens and TLS ([`crate::console`]).
    pub ui_listen: Option<SocketAddr>,
    /// On-call notification channels (`--notify FILE`, [`crate::notify::config`]); none by default.
    pub notify: crate::notify::NotifyConfig,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            data_dir: default_data_dir(),
            api_token_file: None,
            agent_token_file: None,
            tls: None,
            fleet: FleetConfig::default(),
            limits: Limits::default(),
            max_message_bytes: chaos_proto::MAX_MESSAGE_BYTES,
            ui_listen: None,
            notify: crate::notify::NotifyConfig::default(),
        }
    }
}

/// The listen backlog asked for: room for a whole fleet reconnecting at once (1,000 agents overflowed the
/// default 128). The kernel caps it at `net.core.somaxconn` (4096 by default since Linux 5.4), silently.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with a backlog of [`LISTEN_BACKLOG`] (`SO_REUSEADDR` as `TcpListener::bind` sets it).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The accepted connections of `listener`, each with `TCP_NODELAY` (`Server::tcp_nodelay` only applies to
/// a listener tonic binds itself): without it a reply written after its request was read waits for the
/// client's delayed ACK (~40 ms on Linux) whenever the previous segment is still unacknowledged.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A controller that has opened its store and bound its port, ready to serve.
pub struct Controller {
    pub api: api::Api,
    pub local_addr: SocketAddr,
    listener: TcpListener,
    /// The web console's address and listener, when `ui_listen` was given.
    pub ui_addr: Option<SocketAddr>,
    ui_listener: Option<TcpListener>,
    config: ControllerConfig,
    /// Runs the previous controller left unfinished, marked interrupted now.
    pub interrupted: Vec<String>,
}

impl Controller {
    /// Opens the store (marking unfinished runs interrupted), loads or creates the token files, and binds.
    /// Experiments' SLO references without `file:` are looked up in the store's SLO registry.
    pub async fn bind(config: ControllerConfig) -> Result<Controller, ServerError> {
        // Owner only, whatever the umask: it holds the tokens and every run's record.
        auth::create_private_dir(&config.data_dir)?;
        let db = config.data_dir.join("controller.db");
        let opened = tokio::task::spawn_blocking(move || SqliteStore::open(&db)).await;
        let opened = opened.map_err(|e| StoreError::Backend(format!("opening the store: {e}")))??;
        let opened: Arc<dyn crate::store::Store> = Arc::new(opened);
        let slo_catalog = Arc::new(slo_catalog::RegistryCatalog::new(opened.clone()));
        let store = StoreHandle::new(opened);
        let interrupted = store
            .call(|s| {
                s.interrupt_unfinished(
                    runs::now_ms(),
                    "interrupted: the controller stopped during the run; the agents' leases reverted its faults",
                )
            })
            .await?;
        for id in &interrupted {
            tracing::warn!(run = %id, "a run the previous controller left unfinished is marked interrupted");
        }
        let api_file = config.api_token_file.clone().unwrap_or_else(|| config.data_dir.join("api.token"));
        let agent_file =
            config.agent_token_file.clone().unwrap_or_else(|| config.data_dir.join("agent.token"));
        let tokens = Arc::new(auth::Tokens::load_or_create(&api_file, &agent_file)?);
        // The fleet's lease margin is the engine's, so a remote fault's lease ends where the run's deadline does.
        let fleet_config = FleetConfig { margin: crate::engine::DEADLINE_MARGIN, ..config.fleet.clone() };
        let fleet = Fleet::new(fleet_config, store.clone());
        let runs =
            runs::Runs::with_slo_catalog(store.clone(), fleet.clone(), config.limits.clone(), slo_catalog)
                .await?;
        let bind_error = |source| ServerError::Bind { addr: config.listen, source };
        let listener = listen(config.listen).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let (ui_listener, ui_addr) = match config.ui_listen {
            Some(addr) => {
                let ui_error = |source| ServerError::Bind { addr, source };
                let ui = listen(addr).map_err(ui_error)?;
                let bound = ui.local_addr().map_err(ui_error)?;
                (Some(ui), Some(bound))
            }
            None => (None, None),
        };
        let notifier = crate::notify::Notifier::start(config.notify.clone(), store.clone());
        runs.listen(Arc::new(notify::RunEvents(notifier.clone())));
        let api =
            api::Api { store, fleet, runs, tokens, schedules_changed: Arc::new(Notify::new()), notifier };
        api.runs.listen(incidents::IncidentsFromRuns::new(api.store.clone(), api.notifier.clone()));
        Ok(Controller { api, local_addr, listener, ui_addr, ui_listener, config, interrupted })
    }

    /// Serves until `shutdown`; then halts every run in progress (reverting its faults) and returns.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Controller { api, listener, ui_listener, config, .. } = self;
        let background = CancellationToken::new();
        // Built (its TLS files read) before anything starts; spawned once the gRPC server is configured too.
        let console = ui_listener.map(|ui| console_task(&api, &config, ui, shutdown.clone())).transpose()?;
        let reaper = tokio::spawn({
            let (fleet, stop) = (api.fleet.clone(), background.clone());
            async move { fleet.reap_silent(stop).await }
        });
        let scheduler = tokio::spawn(scheduler::run(
            api.store.clone(),
            api.runs.clone(),
            api.schedules_changed.clone(),
            background.clone(),
        ));
        let mut builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)));
        if let Some(tls) = &config.tls {
            let config = tls.config().map_err(|e| ServerError::Tls(e.to_string()))?;
            builder = builder.tls_config(config).map_err(|e| ServerError::Tls(e.to_string()))?;
        }
        let console = console.map(tokio::spawn);
        let controller = ControllerServiceServer::new(api.clone())
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes * 4);
        let agents = AgentServiceServer::new(api::Agents { api: api.clone() })
            .max_decoding_message_size(MAX_AGENT_MESSAGE);
        let incoming = incoming(listener);
        let runs = api.runs.clone();
        let fleet = api.fleet.clone();
        let stopping = shutdown.clone();
        let served = builder
            .add_service(controller)
            .add_service(agents)
            .add_service(NotifyServiceServer::new(api.clone()))
            .add_service(gameday::service(api.clone(), config.max_message_bytes))
            .add_service(incidents::service(&api, config.max_message_bytes))
            .serve_with_incoming_shutdown(incoming, async move {
                stopping.cancelled().await;
                // Halt and revert before the streams close: the agents are still reachable now.
                let halted = runs.halt_all_runs("controller", "the controller is shutting down");
                if !halted.is_empty() {
                    tracing::warn!(runs = ?halted, "shutting down: halting the runs in progress");
                    runs.drain(Duration::from_secs(60)).await;
                }
                // The agents' streams never end by themselves; graceful shutdown waits for them.
                fleet.close_all();
            })
            .await;
        background.cancel();
        let _ = reaper.await;
        let _ = scheduler.await;
        if let Some(console) = console {
            let _ = console.await;
        }
        Ok(served?)
    }
}

/// The web console on `listener` with the API's state and TLS, until `shutdown`.
fn console_task(
    api: &api::Api,
    config: &ControllerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<impl Future<Output = ()> + use<>, ServerError> {
    let tls = config.tls.as_ref().map(crate::console::tls::acceptor).transpose().map_err(ServerError::Tls)?;
    let console = crate::console::Console {
        api: api.clone(),
        sessions: crate::console::Sessions::default(),
        secure: tls.is_some(),
        shutdown: shutdown.clone(),
    };
    let router = crate::console::router(Arc::new(console));
    Ok(crate::console::serve(listener, router, tls, shutdown))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_stream::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn every_accepted_socket_has_tcp_nodelay() {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = incoming(listener);
        for _ in 0..3 {
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let accepted = incoming.next().await.unwrap().unwrap();
            assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is off on an accepted socket");
        }
    }

    /// 600 clients dial at once while nothing accepts (a fleet reconnecting to a controller busy elsewhere):
    /// every handshake completes in the kernel's queue. With the default backlog of 128 the rest wait for SYN
    /// retransmits (1 s, then 3 s) and fail the 2 s deadline.
    #[tokio::test]
    async fn the_listen_backlog_holds_a_fleet_dialling_at_once() {
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
        let cap: usize = somaxconn.trim().parse().unwrap();
        assert!(cap > 600, "net.core.somaxconn is {cap}: the backlog is capped below the test's 600 clients");
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut dials = tokio::task::JoinSet::new();
        for _ in 0..600 {
            dials.spawn(async move {
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
            });
        }
        let mut connected = Vec::new();
        while let Some(dial) = dials.join_next().await {
            if let Ok(Ok(stream)) = dial.unwrap() {
                connected.push(stream);
            }
        }
        assert_eq!(connected.len(), 600, "dials that completed within 2 s while nothing accepted");
        drop(listener);
    }
}
