//! `chaos controller` (the service) and its clients: `chaos run --controller`, `chaos runs`, `chaos agents`,
//! `chaos schedule`, `chaos halt --all`, `chaos freeze|unfreeze`, `chaos certs`.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chaos_controller::fleet::FleetConfig;
use chaos_controller::server::{Controller, ControllerConfig, Limits, default_data_dir};
use chaos_proto::transport::{ClientConfig, ServerTls, WithToken};
use chaos_proto::v1;
use chaos_proto::v1::controller_service_client::ControllerServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<chaos_controller::experiment::model::Duration>().map(|d| d.0)
}

#[derive(clap::Args)]
pub struct ControllerArgs {
    /// Address to serve the API and the agents' streams on (loopback by default; agents on other hosts need
    /// a routable address, and then TLS).
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
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
    /// RISK: let runs act on this controller's own host. Without it, runs act only on agents, and experiments
    /// with command probes lacking `agent`/`hosts`, process targets lacking `hosts`, host faults without a
    /// target, or `${env:NAME}` (this host's environment) are refused. With it, anyone holding an API token
    /// can run any program, signal any process and read the environment here as the controller's user (often
    /// root).
    #[arg(long)]
    allow_local_effects: bool,
}

/// Runs the controller until SIGINT/SIGTERM; the first line on stdout is `listening on ADDR`.
pub async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    // One descriptor per connected agent: a systemd default of 1,024 would cap the fleet near 1,000.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTls { cert, key, client_ca: args.client_ca }),
        _ => None,
    };
    let config = ControllerConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        api_token_file: args.api_token_file,
        agent_token_file: args.agent_token_file,
        tls,
        fleet: FleetConfig { heartbeat: args.heartbeat, lease: args.lease, ..FleetConfig::default() },
        limits: Limits {
            max_agents_per_run: args.max_agents_per_run,
            max_fleet_percent: args.max_fleet_percent,
            allow_local_effects: args.allow_local_effects,
        },
        ..ControllerConfig::default()
    };
    if config.limits.allow_local_effects {
        tracing::warn!(
            "--allow-local-effects: runs may run programs and signal processes on this host for any API token"
        );
    }
    let controller = Controller::bind(config).await.map_err(anyhow::Error::msg)?;
    println!("listening on {}", controller.local_addr);
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

/// How a client reaches the controller.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    /// The controller's URL (`https://` for TLS).
    #[arg(long, env = "CHAOS_CONTROLLER", value_name = "URL", global = true)]
    pub controller: Option<String>,
    /// API token (else --token-file, else the local controller's DIR/api.token when readable).
    #[arg(long, env = "CHAOS_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the API token (its first token).
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// CA bundle (PEM) to verify the controller's certificate.
    #[arg(long, value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; with --key.
    #[arg(long, value_name = "FILE", requires = "key", global = true)]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert", global = true)]
    pub key: Option<PathBuf>,
    /// Name to verify in the controller's certificate when it differs from the URL's host.
    #[arg(long, value_name = "NAME", global = true)]
    pub tls_domain: Option<String>,
}

const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:7400";

type Client = ControllerServiceClient<InterceptedService<Channel, WithToken>>;

impl ClientArgs {
    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        let (file, explicit) = match &self.token_file {
            Some(f) => (f.clone(), true),
            None => (default_data_dir().join("api.token"), false),
        };
        match std::fs::read_to_string(&file) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| l.split_whitespace().last().unwrap_or(l).to_string())),
            Err(e) if explicit => Err(e).with_context(|| format!("reading token file {}", file.display())),
            Err(_) => Ok(None),
        }
    }

    /// A connected client (one attempt).
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let url = self.controller.clone().unwrap_or_else(|| DEFAULT_CONTROLLER.to_string());
        let config = ClientConfig {
            url: url.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            domain: self.tls_domain.clone(),
        };
        let channel = chaos_proto::transport::channel(&config)
            .await
            .with_context(|| format!("connecting to the controller at {url}"))?;
        let token = self.token()?;
        let interceptor = WithToken::new(token.as_deref())?;
        Ok(ControllerServiceClient::with_interceptor(channel, interceptor)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024))
    }
}

/// A gRPC error for people: the status message, with what to do for the usual ones.
pub fn status_error(what: &str, status: tonic::Status) -> anyhow::Error {
    let hint = match status.code() {
        tonic::Code::Unauthenticated => " (check --token / CHAOS_TOKEN)",
        tonic::Code::PermissionDenied => " (this token may not do that)",
        tonic::Code::Unavailable => " (is the controller running, and is the URL right?)",
        _ => "",
    };
    anyhow::anyhow!("{what}: {}{hint}", status.message())
}

fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

// === chaos run --controller ===

/// What `chaos run --controller` needs from the run flags.
pub struct RemoteRun {
    pub file: PathBuf,
    pub vars: Vec<(String, String)>,
    pub seed: Option<u64>,
    pub dry_run: bool,
    pub quiet: bool,
    pub journal: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub summary: Option<PathBuf>,
}

/// Submits and starts the experiment on the controller, prints its progress as a local run would, writes the
/// reports, and returns the verdict's exit code. SIGINT/SIGTERM halts the run (its faults are reverted) and
/// still reports (exit 3).
pub async fn run_remote(client_args: &ClientArgs, run: RemoteRun) -> anyhow::Result<u8> {
    let source =
        std::fs::read_to_string(&run.file).with_context(|| format!("reading {}", run.file.display()))?;
    let mut client = client_args.connect().await?;
    let submit = v1::SubmitExperimentRequest {
        source,
        file: run.file.display().to_string(),
        vars: run.vars.iter().cloned().collect::<HashMap<_, _>>(),
    };
    let request = v1::StartRunRequest {
        experiment: Some(v1::start_run_request::Experiment::Submit(submit)),
        seed: run.seed,
        dry_run: run.dry_run,
    };
    let started = match client.start_run(request).await {
        Ok(r) => r.into_inner(),
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            eprintln!("{}", status.message());
            return Ok(2);
        }
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            eprintln!("chaos run: {}: {}", run.file.display(), status.message());
            return Ok(3);
        }
        Err(status) => return Err(status_error("starting the run", status)),
    };
    if run.dry_run {
        print!("{}", started.plan);
        println!("dry run: nothing was touched");
        return Ok(0);
    }
    if !run.quiet {
        eprintln!(
            "chaos run: run {} on {}",
            started.id,
            client_args.controller.as_deref().unwrap_or(DEFAULT_CONTROLLER)
        );
    }
    let interrupted = CancellationToken::new();
    let on_signal = tokio::spawn({
        let (interrupted, mut client, id) = (interrupted.clone(), client.clone(), started.id.clone());
        async move {
            crate::shutdown_signal().await;
            interrupted.cancel();
            tracing::warn!("interrupted: halting the run on the controller (its faults are reverted)");
            let _ =
                client.halt_run(v1::HaltRunRequest { id, reason: "interrupted by the client".into() }).await;
        }
    });
    let last = match watch(&mut client, &started.id, run.quiet).await {
        Ok(last) => last,
        Err(e) => {
            on_signal.abort();
            return Ok(lost_controller(&started, &e.to_string()));
        }
    };
    on_signal.abort();
    let finished = match client.get_run(v1::GetRunRequest { id: started.id.clone() }).await {
        Ok(r) => r.into_inner(),
        // The controller may be gone by now (shutting down ends its runs first): the finished event says it all
        // but the journal.
        Err(status) => match last {
            Some(event) => {
                tracing::warn!(%status, "the run's record is not reachable; reporting from its finished event");
                let exit_code = match event.name.as_str() {
                    "passed" => 0,
                    "failed" => 1,
                    "invalid" => 2,
                    _ => 3,
                };
                v1::Run {
                    title: started.title.clone(),
                    verdict: event.name,
                    reasons: event.detail.lines().map(str::to_string).collect(),
                    exit_code,
                    ..v1::Run::default()
                }
            }
            None => {
                return Ok(lost_controller(&started, &status_error("reading the run", status).to_string()));
            }
        },
    };
    if !finished.journal_json.is_empty() {
        let journal: chaos_controller::report::Journal =
            serde_json::from_str(&finished.journal_json).context("the controller's journal")?;
        if let Some(path) = &run.journal {
            chaos_controller::report::write_journal(path, &journal)?;
        }
        if let Some(path) = &run.junit {
            chaos_controller::report::write_junit(path, &journal)?;
        }
        if let Some(path) = &run.summary {
            std::fs::write(path, chaos_controller::report::render_markdown(&journal))?;
        }
    }
    println!("{}: {}", finished.title, crate::color::verdict(&finished.verdict));
    for reason in &finished.reasons {
        println!("  - {reason}");
    }
    let code = u8::try_from(finished.exit_code).unwrap_or(3);
    Ok(if interrupted.is_cancelled() { code.max(3) } else { code })
}

/// The controller went away before saying how the run ended: the verdict is unknown, so inconclusive (exit
/// 3), like a local run that cannot finish. The faults it held end with their leases on the agents.
fn lost_controller(started: &v1::Run, why: &str) -> u8 {
    tracing::warn!(run = %started.id, error = %why, "lost the controller mid-run");
    println!("{}: INCONCLUSIVE", started.title);
    println!(
        "  - lost the controller before run {} finished ({why}): its verdict is unknown; the faults it held end \
         with their leases on the agents",
        started.id
    );
    3
}

/// Prints a run's events (stderr) until it finishes; returns the `finished` event if it came.
async fn watch(client: &mut Client, id: &str, quiet: bool) -> anyhow::Result<Option<v1::RunEvent>> {
    let mut stream = client
        .watch_run(v1::WatchRunRequest { id: id.to_string() })
        .await
        .map_err(|s| status_error("watching the run", s))?
        .into_inner();
    while let Some(event) = stream.message().await.map_err(|s| status_error("watching the run", s))? {
        if event.kind == "finished" {
            return Ok(Some(event));
        }
        if !quiet {
            eprintln!("{}", event.line);
        }
    }
    Ok(None)
}

// === chaos runs ===

#[derive(clap::Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Subcommand)]
enum RunsCommand {
    /// Runs, newest first.
    List {
        /// Only runs in this state (running, passed, failed, inconclusive, halted, interrupted, dry-run).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One run: state, verdict, reasons, plan (and the journal with --journal).
    Show {
        id: String,
        /// Print the journal JSON.
        #[arg(long)]
        journal: bool,
    },
    /// Follow a run's progress until it finishes; exits with its verdict's code.
    Watch { id: String },
    /// Halt a run: its faults are reverted and it ends as halted (inconclusive).
    Halt {
        id: String,
        #[arg(long, default_value = "halted from the command line")]
        reason: String,
    },
    /// The audit log: every fault applied and reverted, halts, freezes, schedules, and by whom.
    Audit {
        /// Only entries of this run.
        #[arg(long)]
        run: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

pub async fn runs(args: RunsArgs) -> anyhow::Result<u8> {
    let mut client = args.client.connect().await?;
    match args.command {
        RunsCommand::List { state, limit, json } => {
            let runs = client
                .list_runs(v1::ListRunsRequest { limit, state: state.unwrap_or_default() })
                .await
                .map_err(|s| status_error("listing runs", s))?
                .into_inner()
                .runs;
            if json {
                let rows: Vec<serde_json::Value> = runs
                    .iter()
                    .map(|r| {
                        serde_json::json!({"id": r.id, "title": r.title, "state": r.state, "verdict": r.verdict,
                            "started": r.started_unix_ms, "finished": r.finished_unix_ms, "actor": r.actor,
                            "schedule": r.schedule_id, "reasons": r.reasons})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<22} {:<12} {:<13} {:<19} {:<16} TITLE",
                    "ID", "STATE", "VERDICT", "STARTED", "BY"
                );
                for r in runs {
                    println!(
                        "{:<22} {:<12} {:<13} {:<19} {:<16} {}",
                        r.id,
                        r.state,
                        if r.verdict.is_empty() { "-" } else { &r.verdict },
                        time(r.started_unix_ms),
                        r.actor,
                        r.title
                    );
                }
            }
        }
        RunsCommand::Show { id, journal } => {
            let r = client
                .get_run(v1::GetRunRequest { id })
                .await
                .map_err(|s| status_error("reading the run", s))?
                .into_inner();
            if journal {
                println!("{}", r.journal_json);
                return Ok(0);
            }
            println!("run {}: {}", r.id, r.title);
            println!(
                "  state: {}{}",
                r.state,
                if r.verdict.is_empty() { String::new() } else { format!(" (verdict {})", r.verdict) }
            );
            println!(
                "  started: {} by {}, finished: {}, seed {}",
                time(r.started_unix_ms),
                r.actor,
                time(r.finished_unix_ms),
                r.seed
            );
            for reason in &r.reasons {
                println!("  - {reason}");
            }
            print!("{}", r.plan);
        }
        RunsCommand::Watch { id } => {
            watch(&mut client, &id, false).await?;
            let r = client
                .get_run(v1::GetRunRequest { id })
                .await
                .map_err(|s| status_error("reading the run", s))?
                .into_inner();
            println!("{}: {}", r.title, r.verdict.to_uppercase());
            for reason in &r.reasons {
                println!("  - {reason}");
            }
            return Ok(u8::try_from(r.exit_code).unwrap_or(3));
        }
        RunsCommand::Halt { id, reason } => {
            let r = client
                .halt_run(v1::HaltRunRequest { id, reason })
                .await
                .map_err(|s| status_error("halting the run", s))?
                .into_inner();
            println!("run {}: {}", r.id, r.state);
        }
        RunsCommand::Audit { run, limit } => {
            let entries = client
                .list_audit(v1::ListAuditRequest { limit, run_id: run.unwrap_or_default() })
                .await
                .map_err(|s| status_error("reading the audit log", s))?
                .into_inner()
                .entries;
            for a in entries.iter().rev() {
                let mut scope = Vec::new();
                for (k, v) in [("run", &a.run_id), ("agent", &a.agent_id), ("fault", &a.fault_id)] {
                    if !v.is_empty() {
                        scope.push(format!("{k}={v}"));
                    }
                }
                println!(
                    "{:>6} {} {:<16} {:<18} {} {}",
                    a.seq,
                    time(a.at_unix_ms),
                    a.actor,
                    a.action,
                    scope.join(" "),
                    a.detail
                );
            }
        }
    }
    Ok(0)
}

// === chaos agents ===

#[derive(clap::Args)]
pub struct AgentsArgs {
    /// Only agents with these labels (`--selector role=web`, repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
    selector: Vec<(String, String)>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, found {s:?}"))?;
    if k.trim().is_empty() {
        return Err(format!("expected a label name before `=`, found {s:?}"));
    }
    Ok((k.trim().to_string(), v.trim().to_string()))
}

pub async fn agents(args: AgentsArgs) -> anyhow::Result<u8> {
    let mut client = args.client.connect().await?;
    let agents = client
        .list_agents(v1::ListAgentsRequest { selector: args.selector.into_iter().collect() })
        .await
        .map_err(|s| status_error("listing agents", s))?
        .into_inner()
        .agents;
    if args.json {
        let rows: Vec<serde_json::Value> = agents
            .iter()
            .map(|a| {
                let labels: std::collections::BTreeMap<_, _> = a.labels.iter().collect();
                serde_json::json!({"id": a.id, "hostname": a.hostname, "health": a.health, "labels": labels,
                    "capabilities": a.capabilities, "version": a.version, "boot_id": a.boot_id,
                    "last_seen": a.last_seen_unix_ms, "active_faults": a.active_faults, "peer": a.peer,
                    "cpu": a.sample.as_ref().and_then(|s| s.cpu), "memory": a.sample.as_ref().map(|s| s.memory_used)})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!("{:<20} {:<10} {:<6} {:<6} {:<20} LABELS", "ID", "HEALTH", "FAULTS", "CPU", "LAST SEEN");
    for a in agents {
        let mut labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let cpu = a.sample.as_ref().and_then(|s| s.cpu).map_or("-".into(), |c| format!("{:.0}%", c * 100.0));
        println!(
            "{:<20} {:<10} {:<6} {:<6} {:<20} {}",
            a.id,
            a.health,
            a.active_faults,
            cpu,
            time(a.last_seen_unix_ms),
            labels.join(",")
        );
    }
    Ok(0)
}

// === chaos schedule ===

#[derive(clap::Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    command: ScheduleCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Subcommand)]
enum ScheduleCommand {
    /// Schedule an experiment file (submitted now) on a cron.
    Add {
        /// A name people recognise; unique.
        name: String,
        /// The experiment file.
        file: PathBuf,
        /// Cron: `min hour day-of-month month day-of-week`, or 6 fields with seconds first, or @hourly etc.
        #[arg(long)]
        cron: String,
        /// IANA time zone for the cron, windows and blackout dates (default UTC).
        #[arg(long, default_value = "")]
        timezone: String,
        /// Only fire inside this window, e.g. `Mon-Fri 09:00-17:00` (repeatable; any one allows).
        #[arg(long)]
        window: Vec<String>,
        /// Never fire on this date, YYYY-MM-DD (repeatable).
        #[arg(long)]
        blackout: Vec<String>,
        /// Fire even while the previous run of this schedule is still running.
        #[arg(long)]
        allow_overlap: bool,
        /// Seed for every run (random per run when absent).
        #[arg(long)]
        seed: Option<u64>,
        /// Variables for the experiment.
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_label)]
        vars: Vec<(String, String)>,
    },
    /// Schedules with their next firing.
    List,
    /// Delete a schedule by id or name.
    Rm { id: String },
}

pub async fn schedule(args: ScheduleArgs) -> anyhow::Result<u8> {
    let mut client = args.client.connect().await?;
    match args.command {
        ScheduleCommand::Add { name, file, cron, timezone, window, blackout, allow_overlap, seed, vars } => {
            let source =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let submit = v1::SubmitExperimentRequest {
                source,
                file: file.display().to_string(),
                vars: vars.into_iter().collect(),
            };
            let experiment = match client.submit_experiment(submit).await {
                Ok(e) => e.into_inner(),
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    eprintln!("{}", status.message());
                    return Ok(2);
                }
                Err(status) => return Err(status_error("submitting the experiment", status)),
            };
            let request = v1::CreateScheduleRequest {
                name,
                experiment_id: experiment.id,
                cron,
                timezone,
                windows: window,
                skip_if_running: Some(!allow_overlap),
                blackout_dates: blackout,
                seed,
            };
            let s = match client.create_schedule(request).await {
                Ok(s) => s.into_inner(),
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    eprintln!("chaos schedule add: {}", status.message());
                    return Ok(2);
                }
                Err(status) => return Err(status_error("creating the schedule", status)),
            };
            println!("schedule {} ({}): next at {} UTC", s.name, s.id, time(s.next_fire_unix_ms));
        }
        ScheduleCommand::List => {
            let schedules = client
                .list_schedules(v1::ListSchedulesRequest {})
                .await
                .map_err(|s| status_error("listing schedules", s))?
                .into_inner()
                .schedules;
            println!(
                "{:<20} {:<18} {:<16} {:<19} {:<19} LAST RUN",
                "NAME", "CRON", "TIMEZONE", "NEXT (UTC)", "LAST"
            );
            for s in schedules {
                println!(
                    "{:<20} {:<18} {:<16} {:<19} {:<19} {}",
                    s.name,
                    s.cron,
                    if s.timezone.is_empty() { "UTC" } else { &s.timezone },
                    time(s.next_fire_unix_ms),
                    time(s.last_fire_unix_ms),
                    if s.last_run_id.is_empty() { "-" } else { &s.last_run_id }
                );
            }
        }
        ScheduleCommand::Rm { id } => {
            client
                .delete_schedule(v1::DeleteScheduleRequest { id: id.clone() })
                .await
                .map_err(|s| status_error("deleting the schedule", s))?;
            println!("schedule {id} deleted");
        }
    }
    Ok(0)
}

// === chaos halt / freeze / unfreeze ===

#[derive(clap::Args)]
pub struct HaltArgs {
    /// Halt every run and revert every fault on every agent (the only mode: say it explicitly).
    #[arg(long, required = true)]
    all: bool,
    /// Also freeze: no run starts (by hand or schedule) until `chaos unfreeze`.
    #[arg(long)]
    freeze: bool,
    #[arg(long, default_value = "halted from the command line")]
    reason: String,
    /// How long to wait for the agents' acknowledgements.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    client: ClientArgs,
}

/// Exit 0 when every agent acknowledged, 1 when some did not (their leases still revert their faults).
pub async fn halt(args: HaltArgs) -> anyhow::Result<u8> {
    if !args.all {
        bail!("give --all (to halt one run: chaos runs halt ID)");
    }
    let mut client = args.client.connect().await?;
    let request = v1::HaltAllRequest {
        reason: args.reason,
        freeze: args.freeze,
        timeout_ms: u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let r = client.halt_all(request).await.map_err(|s| status_error("halting", s))?.into_inner();
    println!(
        "halted {} runs; {} agents acknowledged in {} ms{}",
        r.runs_halted.len(),
        r.agents_acknowledged.len(),
        r.elapsed_ms,
        if r.frozen { "; frozen" } else { "" }
    );
    if !r.agents_missing.is_empty() {
        println!("not acknowledged (their leases revert their faults): {}", r.agents_missing.join(", "));
        return Ok(1);
    }
    Ok(0)
}

#[derive(clap::Args)]
pub struct FreezeArgs {
    /// Why (recorded in the audit log and shown to whoever tries to start a run).
    #[arg(long, default_value = "frozen from the command line")]
    reason: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct UnfreezeArgs {
    /// Why runs may start again (recorded in the audit log).
    #[arg(long, default_value = "unfrozen from the command line")]
    reason: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn freeze(args: FreezeArgs) -> anyhow::Result<u8> {
    let mut client = args.client.connect().await?;
    let state = client.freeze(v1::FreezeRequest { reason: args.reason }).await;
    show_freeze(state)
}

pub async fn unfreeze(args: UnfreezeArgs) -> anyhow::Result<u8> {
    let mut client = args.client.connect().await?;
    let state = client.unfreeze(v1::UnfreezeRequest { reason: args.reason }).await;
    show_freeze(state)
}

fn show_freeze(state: Result<tonic::Response<v1::FreezeState>, tonic::Status>) -> anyhow::Result<u8> {
    let state = state.map_err(|s| status_error("changing the freeze", s))?.into_inner();
    if state.frozen {
        println!("frozen by {}: {} (no run starts until `chaos unfreeze`)", state.by, state.reason);
    } else {
        println!("not frozen: runs may start");
    }
    Ok(0)
}

// === chaos certs ===

#[derive(clap::Args)]
pub struct CertsArgs {
    /// Directory to write ca.pem, controller.pem/.key, agent.pem/.key and client.pem/.key into.
    #[arg(long, default_value = "chaos-certs")]
    out: PathBuf,
    /// DNS names and IP addresses for the controller's certificate (repeatable).
    #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
    hosts: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// Generates a development CA and certificates (for tests and trials; use your own PKI in production).
pub fn certs(args: CertsArgs) -> anyhow::Result<()> {
    let certs = chaos_proto::certs::generate(&args.out, &args.hosts, args.days, args.force)?;
    println!("wrote a development CA and certificates to {}", certs.dir.display());
    println!(
        "  controller: --tls-cert {} --tls-key {} [--client-ca {}]",
        certs.controller_cert.display(),
        certs.controller_key.display(),
        certs.ca.display()
    );
    println!(
        "  agent:      --ca {} --cert {} --key {}",
        certs.ca.display(),
        certs.agent_cert.display(),
        certs.agent_key.display()
    );
    println!(
        "  client:     --ca {} --cert {} --key {}",
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    Ok(())
}
