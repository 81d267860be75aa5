//! `chaos controller`: the service's flags, turned into a `ControllerConfig`, served until SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chaos_controller::fleet::FleetConfig;
use chaos_controller::server::{Controller, ControllerConfig, Limits, default_data_dir};
use chaos_proto::transport::ServerTls;
use tokio_util::sync::CancellationToken;

use super::args::parse_duration;

#[derive(clap::Args)]
pub struct ControllerArgs {
    /// Address to serve the API and the agents' streams on (loopback by default; agents on other hosts need
    /// a routable address, and then TLS).
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Serve the web console on this address too (off unless given; `--ui-listen` alone is loopback,
    /// 127.0.0.1:7401: reach it through an SSH tunnel). Log in with an API token; with --tls-cert it is served
    /// over the same TLS.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:7401")]
    ui_listen: Option<SocketAddr>,
    /// Holds controller.db (SQLite) and the token files api.token and agent.token (created with random tokens
    /// when missing).
    #[arg(long, env = "CHAOS_CONTROLLER_DIR", value_name = "DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// API tokens, one per line: `NAME TOKEN` or `TOKEN` (default DIR/api.token).
    #[arg(long, value_name = "FILE")]
    api_token_file: Option<PathBuf>,
    /// Agent enrolment tokens, one per line: `TOKEN` (any agent) or `AGENT_ID TOKEN` (only that agent; the id is
    /// then reserved for that token) (default DIR/agent.token).
    #[arg(long, value_name = "FILE")]
    agent_token_file: Option<PathBuf>,
    /// TLS certificate (PEM) to serve with; with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS) from agents and API clients.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// How often agents send heartbeats; an agent is gone after three missed.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// The lease of a remote fault, renewed while wanted: an agent cut off from the controller reverts its
    /// faults within this.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    lease: Duration,
    /// Refuse runs that would touch more agents than this.
    #[arg(long, value_name = "N")]
    max_agents_per_run: Option<usize>,
    /// Refuse runs that would touch more than this share of the connected agents (percent).
    #[arg(long, value_name = "PERCENT")]
    max_fleet_percent: Option<f64>,
    /// Refuse runs whose `pods` targets would choose more pods than this, all targets together.
    #[arg(long, value_name = "N")]
    max_pods_per_run: Option<usize>,
    /// RISK: let runs act on this controller's own host. Without it, runs act only on agents, and experiments
    /// with command probes lacking `agent`/`hosts`, process targets lacking `hosts`, host faults without a
    /// target, or `${env:NAME}` (this host's environment) are refused. With it, anyone holding an API token
    /// can run any program, signal any process and read the environment here as the controller's user (often
    /// root).
    #[arg(long)]
    allow_local_effects: bool,
    /// On-call notification channels (YAML or JSON: webhook, slack, pagerduty; see "Notifications" in the
    /// docs). A bad file is refused before anything starts, at FILE:LINE:COLUMN.
    #[arg(long, value_name = "FILE")]
    notify: Option<PathBuf>,
}

/// Runs the controller until SIGINT/SIGTERM; the first line on stdout is `listening on ADDR`, then
/// `web console on URL` with --ui-listen.
pub async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    // One descriptor per connected agent: a systemd default of 1,024 would cap the fleet near 1,000.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTls { cert, key, client_ca: args.client_ca }),
        _ => None,
    };
    let notify = match &args.notify {
        Some(path) => chaos_controller::notify::config::load(path)?,
        None => chaos_controller::notify::NotifyConfig::default(),
    };
    for channel in &notify.channels {
        tracing::info!(channel = %channel.name, kind = channel.kind.as_str(), target = %channel.target(), "notification channel");
    }
    let config = ControllerConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        api_token_file: args.api_token_file,
        agent_token_file: args.agent_token_file,
        tls,
        ui_listen: args.ui_listen,
        fleet: FleetConfig { heartbeat: args.heartbeat, lease: args.lease, ..FleetConfig::default() },
        limits: Limits {
            max_agents_per_run: args.max_agents_per_run,
            max_fleet_percent: args.max_fleet_percent,
            max_pods_per_run: args.max_pods_per_run,
            allow_local_effects: args.allow_local_effects,
        },
        notify,
        ..ControllerConfig::default()
    };
    if config.limits.allow_local_effects {
        tracing::warn!(
            "--allow-local-effects: runs may run programs and signal processes on this host for any API token"
        );
    }
    let tls_on = config.tls.is_some();
    let controller = Controller::bind(config).await.map_err(anyhow::Error::msg)?;
    println!("listening on {}", controller.local_addr);
    if let Some(ui) = controller.ui_addr {
        let scheme = if tls_on { "https" } else { "http" };
        println!("web console on {scheme}://{ui}");
    }
    let _ = std::io::stdout().flush();
    for id in &controller.interrupted {
        tracing::warn!(run = %id, "marked interrupted (left running by the previous controller)");
    }
    let shutdown = CancellationToken::new();
    let signal = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            crate::shutdown_signal().await;
            tracing::info!("shutting down: halting runs, then closing the agents' streams");
            shutdown.cancel();
        }
    });
    controller.serve(shutdown).await.map_err(anyhow::Error::msg)?;
    signal.abort();
    Ok(())
}
