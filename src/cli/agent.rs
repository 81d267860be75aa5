//! `chaos agent`: host faults on this machine without a server: inject faults from a spec file and hold them,
//! list what the undo journal holds, revert everything from it (break glass), show capabilities.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chaos_agent::host::HostAgent;
use chaos_agent::journal::{self, ReplayMode, ReplayReport};
use chaos_agent::pods::{self, PodSelector};
use chaos_agent::policy::{AgentPolicy, parse_duration};
use chaos_agent::spec::FaultSpec;
use chaos_agent::undo;

#[derive(clap::Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: AgentCommand,
}

impl AgentArgs {
    /// Whether this is the long-running daemon (which logs its work).
    pub fn is_daemon(&self) -> bool {
        matches!(self.command, AgentCommand::Serve(_) | AgentCommand::Watchdog(_) | AgentCommand::Guard(_))
    }

    /// The watchdog's arguments when this is `chaos agent watchdog` (run before any runtime is built).
    pub fn watchdog(&self) -> Option<&WatchdogArgs> {
        match &self.command {
            AgentCommand::Watchdog(args) => Some(args),
            _ => None,
        }
    }
}

/// `chaos agent watchdog`: started by `chaos` itself, never by hand (see `chaos_agent::watchdog`).
#[derive(clap::Args)]
pub struct WatchdogArgs {
    /// The journal directory to watch.
    #[arg(long)]
    journal: PathBuf,
    /// The owner, as `PID@START_TIME`.
    #[arg(long, value_parser = parse_owner)]
    owner: chaos_agent::process::ProcessId,
    /// The journal instance of the owner whose records to watch.
    #[arg(long)]
    instance: u64,
}

fn parse_owner(text: &str) -> Result<chaos_agent::process::ProcessId, String> {
    let (pid, start) =
        text.split_once('@').ok_or_else(|| format!("expected PID@START_TIME, found {text:?}"))?;
    let pid = pid.parse().map_err(|_| format!("expected a pid before `@`, found {pid:?}"))?;
    let start_time =
        start.parse().map_err(|_| format!("expected a start time after `@`, found {start:?}"))?;
    Ok(chaos_agent::process::ProcessId { pid, start_time })
}

/// Runs the watchdog until its owner is gone and its records are reverted: exit 0, or 1 when some could not be.
pub fn watchdog(args: &WatchdogArgs) -> u8 {
    let watch = chaos_agent::watchdog::Watch {
        journal: args.journal.clone(),
        owner: args.owner,
        instance: args.instance,
    };
    match chaos_agent::watchdog::run(&watch, std::io::stdin()) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "watchdog");
            1
        }
    }
}

#[derive(clap::Subcommand)]
enum AgentCommand {
    /// Apply the faults in FILE (one spec, or a list) on this host, hold them for --duration (or until
    /// interrupted), then revert them newest first. Each is journaled before it is applied.
    Inject(InjectArgs),
    /// Revert every fault recorded in the undo journal, whoever applied it and whether or not it is still
    /// running: the break-glass command. Exit 0 when nothing is left, 1 when a revert failed.
    RevertAll(StateArgs),
    /// List the undo journal: faults applied on this host and not yet reverted, with their owner.
    Status {
        #[command(flatten)]
        state: StateArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The agent daemon: dial a controller, keep the stream open (reconnecting with backoff), apply and revert
    /// the faults it asks for. Faults are leased: cut off from the controller, the agent reverts them when
    /// their leases lapse. SIGINT/SIGTERM reverts everything held, then exits.
    Serve(ServeArgs),
    /// Internal: the process that reverts the faults of a `chaos` process that died (started by chaos itself).
    #[command(hide = true)]
    Watchdog(WatchdogArgs),
    /// Guard the undo journal for every agent that writes it, until stopped: revert at once each fault whose
    /// owner is gone, and each fault past its lease deadline (plus 2 s of grace). For an agent in a container,
    /// whose own watchdog dies with the container: run it as a second container of the agent's pod (same
    /// journal, host PID namespace). It applies and holds nothing; SIGTERM ends it.
    Guard(StateArgs),
    /// List the pods on this node that a selector matches, through the container runtime's CRI socket: each
    /// pod's sandbox, IP and network namespace, and each running container's task pid and cgroup.
    Pods(PodsArgs),
    /// Probe which network fault kinds this host's kernel and tools support (in a throwaway namespace).
    Capabilities {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The controller's URL (`https://` for TLS).
    #[arg(long, env = "CHAOS_CONTROLLER", value_name = "URL", default_value = "http://127.0.0.1:7400")]
    controller: String,
    /// Agent enrolment token (else --token-file).
    #[arg(long, env = "CHAOS_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the enrolment token (its first token), e.g. the controller's agent.token.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// This agent's id in the fleet (default: the hostname).
    #[arg(long)]
    id: Option<String>,
    /// A label for selectors, `KEY=VALUE` (repeatable): `--label role=web --label zone=a`.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::args::parse_label)]
    labels: Vec<(String, String)>,
    /// CA bundle (PEM) to verify the controller's certificate.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; with --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Name to verify in the controller's certificate when it differs from the URL's host.
    #[arg(long, value_name = "NAME")]
    tls_domain: Option<String>,
    /// Agent policy file limiting what the controller may ask for (kinds, protected processes, ceilings, and
    /// `probe_commands`: the command probes it may run here; none without the file).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    #[command(flatten)]
    state: StateArgs,
    /// Where the controller's `pods` targets are found on this node.
    #[command(flatten)]
    cri: CriArgs,
}

#[derive(clap::Args)]
struct StateArgs {
    /// Where the undo journal lives.
    #[arg(long, env = "CHAOS_STATE_DIR", value_name = "DIR", default_value_os_t = journal::default_state_dir())]
    state_dir: PathBuf,
}

/// Where pods are found: the node's container runtime.
#[derive(clap::Args)]
struct CriArgs {
    /// The container runtime's CRI socket (containerd's; CRI-O's is /var/run/crio/crio.sock).
    #[arg(long, env = "CHAOS_CRI_SOCKET", value_name = "PATH", default_value = chaos_proto::cri::DEFAULT_SOCKET)]
    cri_socket: PathBuf,
}

#[derive(clap::Args)]
struct PodsArgs {
    /// Which pods: `NAMESPACE` or `NAMESPACE/KEY=VALUE,…` (every label given must be on the pod).
    #[arg(long, value_name = "NAMESPACE[/LABELS]")]
    pod: String,
    /// Only this container of each pod.
    #[arg(long, value_name = "NAME")]
    container: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cri: CriArgs,
}

#[derive(clap::Args)]
struct InjectArgs {
    /// Fault spec file (YAML or JSON): one mapping with `kind:`, or a list of them. `-` reads stdin.
    file: PathBuf,
    /// How long to hold the faults; each also gets a lease of this length, so it reverts on time even if this
    /// process hangs. Without it, hold until SIGINT/SIGTERM (leases then last the policy's max_duration).
    #[arg(long, value_parser = duration_arg)]
    duration: Option<Duration>,
    /// Check everything (spec, policy, capabilities, devices and paths, which processes) and print the plan;
    /// change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Policy file limiting what may be injected (see docs/agent.md); default: the built-in policy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Seed for choosing among matching processes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Apply each fault inside the pods of this node that match, instead of on the host: `NAMESPACE` or
    /// `NAMESPACE/KEY=VALUE,…`. Process faults reach only the container's processes, network faults the pod's
    /// network namespace, stress workers join the container's cgroup. See `chaos agent pods`.
    #[arg(long, value_name = "NAMESPACE[/LABELS]")]
    pod: Option<String>,
    /// With --pod: only this container of each pod (default: every running container).
    #[arg(long, value_name = "NAME", requires = "pod")]
    container: Option<String>,
    #[command(flatten)]
    cri: CriArgs,
    #[command(flatten)]
    state: StateArgs,
}

/// One spec, or a list of them; the error of whichever shape the document has (with its line and column).
fn parse_specs(text: &str) -> Result<Vec<FaultSpec>, String> {
    if serde_saphyr::from_str::<Vec<serde::de::IgnoredAny>>(text).is_ok() {
        return serde_saphyr::from_str::<Vec<FaultSpec>>(text)
            .map_err(|e| format!("invalid fault spec list: {e}"));
    }
    FaultSpec::parse(text).map(|spec| vec![spec]).map_err(|e| e.to_string())
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration like 30s, 5m or 250ms"))
}

pub async fn run(args: AgentArgs) -> anyhow::Result<u8> {
    match args.command {
        AgentCommand::Inject(args) => inject(args).await,
        AgentCommand::Pods(args) => list_pods(args).await,
        AgentCommand::RevertAll(state) => {
            let report = tokio::task::spawn_blocking(move || undo::replay(&state.state_dir, ReplayMode::All))
                .await
                .context("the revert task panicked")?;
            print_replay(&report, "reverted");
            if report.reverted.is_empty() && report.failed.is_empty() && report.unreadable.is_empty() {
                println!("nothing to revert");
            }
            Ok(if report.failed.is_empty() && report.unreadable.is_empty() { 0 } else { 1 })
        }
        AgentCommand::Guard(state) => {
            tokio::task::spawn_blocking(move || chaos_agent::watchdog::guard(&state.state_dir))
                .await
                .context("the guard panicked")?
        }
        AgentCommand::Status { state, json } => {
            let (records, unreadable) = journal::list(&state.state_dir);
            if json {
                let records: Vec<_> = records.iter().map(|(_, r)| r).collect();
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else if records.is_empty() {
                println!("no fault in the undo journal at {}", state.state_dir.display());
            } else {
                println!("{:<10} {:<18} {:<22} {:<6} undo", "fault", "kind", "owner", "alive");
                for (_, r) in &records {
                    let alive = if r.owner.check().is_ok() { "yes" } else { "no" };
                    let steps: Vec<String> =
                        r.undo.iter().map(|u| serde_json::to_string(u).unwrap_or_default()).collect();
                    println!(
                        "{:<10} {:<18} {:<22} {:<6} {}",
                        r.fault_id,
                        r.kind,
                        r.owner.to_string(),
                        alive,
                        steps.join(" ")
                    );
                }
            }
            for (path, reason) in &unreadable {
                eprintln!("chaos: unreadable journal file {}: {reason}", path.display());
            }
            Ok(0)
        }
        AgentCommand::Serve(args) => serve(args).await,
        AgentCommand::Watchdog(args) => Ok(watchdog(&args)),
        AgentCommand::Capabilities { json } => {
            let caps = tokio::task::spawn_blocking(chaos_agent::net::Capabilities::probe).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&caps)?);
            } else {
                let rows = [
                    ("ip", "iproute2, to enter named network namespaces", &caps.ip),
                    ("nft", "nftables: network-partition, network-loss", &caps.nft),
                    ("tc", "iproute2 tc: network-bandwidth, network-latency", &caps.tc),
                    ("tbf", "tbf qdisc: network-bandwidth", &caps.tbf),
                    ("netem", "netem qdisc: network-latency", &caps.netem),
                ];
                for (name, what, support) in rows {
                    match support.reason() {
                        None => println!("{name:<6} ok       {what}"),
                        Some(why) => println!("{name:<6} missing  {what}: {why}"),
                    }
                }
            }
            Ok(0)
        }
    }
}

async fn inject(args: InjectArgs) -> anyhow::Result<u8> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the spec from stdin")?
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?
    };
    let specs = match parse_specs(&text) {
        Ok(specs) => specs,
        Err(e) => {
            eprintln!("chaos: {}: {e}", args.file.display());
            return Ok(2);
        }
    };
    if specs.is_empty() {
        eprintln!("chaos: {}: no fault in the file", args.file.display());
        return Ok(2);
    }
    let policy = match &args.policy {
        Some(path) => AgentPolicy::load(path)?,
        None => AgentPolicy::default(),
    };
    let lease = match args.duration {
        Some(d) => d,
        None => policy.max_duration()?,
    };
    // Pods are found before anything starts: a selector matching nothing changes nothing.
    let targets = match &args.pod {
        None => vec![Target::Host],
        Some(text) => {
            let selector = match PodSelector::parse(text, args.container.clone()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("chaos: --pod {text}: {e}");
                    return Ok(2);
                }
            };
            let found = pods::find(&args.cri.cri_socket, &selector).await?;
            if found.is_empty() {
                eprintln!("chaos: no running pod on this node matches {selector}");
                return Ok(1);
            }
            found
                .into_iter()
                .flat_map(|pod| {
                    pod.containers.clone().into_iter().map(move |c| Target::Pod(Box::new((pod.clone(), c))))
                })
                .collect()
        }
    };
    let state_dir = args.state.state_dir.clone();
    let seed = args.seed;
    let (agent, replay) = tokio::task::spawn_blocking(move || HostAgent::start(state_dir, policy, seed))
        .await
        .context("the agent start panicked")??;
    print_replay(&replay, "reverted, left by a previous process");

    // One application per spec and target; a network fault is pod-wide, so once per pod.
    let mut work = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut pods_done = std::collections::BTreeSet::new();
        for target in &targets {
            if let Target::Pod(p) = target
                && spec.kind().is_network()
                && !pods_done.insert(p.0.sandbox_id.clone())
            {
                continue;
            }
            work.push((i, spec.clone(), target.clone()));
        }
    }
    // Check every spec before applying any, so a bad second fault does not leave the first applied.
    for (i, spec, target) in &work {
        let planned = match target {
            Target::Host => {
                let (agent, spec) = (agent.clone(), spec.clone());
                tokio::task::spawn_blocking(move || agent.plan(&spec, Some(lease))).await?
            }
            Target::Pod(p) => {
                let (agent, spec, p) = (agent.clone(), spec.clone(), p.clone());
                tokio::task::spawn_blocking(move || agent.plan_in_pod(&spec, &p.0, &p.1, Some(lease), seed))
                    .await?
            }
        };
        match planned {
            Ok(plan) if args.dry_run => println!("would apply fault {}: {plan}", i + 1),
            Ok(_) => {}
            Err(e) => {
                eprintln!("chaos: {}: fault {}: {e}", args.file.display(), i + 1);
                return Ok(2);
            }
        }
    }
    if args.dry_run {
        return Ok(0);
    }
    for (_, spec, target) in work {
        let for_apply = agent.clone();
        let applied = tokio::task::spawn_blocking(move || match &target {
            Target::Host => for_apply.apply(&spec, Some(lease)),
            Target::Pod(p) => for_apply.apply_in_pod(&spec, &p.0, &p.1, Some(lease), seed),
        })
        .await?;
        match applied {
            Ok(applied) => {
                let id = applied.id.map_or_else(|| "-".to_string(), |id| id.to_string());
                println!("injected {id} {}: {}", applied.kind, applied.description)
            }
            Err(e) => {
                eprintln!("chaos: applying a fault failed: {e}; reverting what was applied");
                revert_all(&agent).await;
                return Ok(1);
            }
        }
    }
    let hold = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let interrupted = tokio::select! {
        () = hold => false,
        () = crate::shutdown_signal() => true,
    };
    let ok = revert_all(&agent).await;
    if interrupted {
        println!("interrupted: every fault reverted");
    }
    if !ok {
        bail!("some faults could not be reverted; `chaos agent revert-all` retries from the journal");
    }
    Ok(0)
}

/// Where `chaos agent inject` applies a fault.
#[derive(Clone)]
enum Target {
    Host,
    Pod(Box<(pods::Pod, pods::PodContainer)>),
}

/// The first 13 characters of a runtime id, as `crictl` shows them.
fn short(id: &str) -> &str {
    id.get(..13).unwrap_or(id)
}

async fn list_pods(args: PodsArgs) -> anyhow::Result<u8> {
    let selector = match PodSelector::parse(&args.pod, args.container.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chaos: --pod {}: {e}", args.pod);
            return Ok(2);
        }
    };
    let found = pods::find(&args.cri.cri_socket, &selector).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(0);
    }
    if found.is_empty() {
        println!("no running pod on this node matches {selector}");
        return Ok(0);
    }
    println!(
        "{:<24} {:<14} {:<16} {:<18} {:<16} {:>8}  CGROUP",
        "POD", "SANDBOX", "IP", "NETNS", "CONTAINER", "PID"
    );
    for pod in &found {
        for c in &pod.containers {
            println!(
                "{:<24} {:<14} {:<16} {:<18} {:<16} {:>8}  {}",
                format!("{}/{}", pod.namespace, pod.name),
                short(&pod.sandbox_id),
                pod.ip,
                pod.netns.as_deref().unwrap_or("(node)"),
                c.name,
                c.pid,
                c.cgroup
            );
        }
    }
    Ok(0)
}

async fn revert_all(agent: &HostAgent) -> bool {
    let agent = agent.clone();
    let report = match tokio::task::spawn_blocking(move || agent.revert_all()).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("chaos: the revert task failed: {e}");
            return false;
        }
    };
    for id in &report.reverted {
        println!("reverted {id}");
    }
    for (id, e) in &report.failed {
        eprintln!("chaos: reverting {id} failed: {e}");
    }
    report.failed.is_empty()
}

fn print_replay(report: &ReplayReport, verb: &str) {
    for r in &report.reverted {
        println!("{verb}: {} {} (applied by pid {})", r.fault_id, r.kind, r.owner.pid);
    }
    for (r, e) in &report.failed {
        eprintln!("chaos: could not revert {} {} from the journal: {e}", r.fault_id, r.kind);
    }
    for (path, reason) in &report.unreadable {
        eprintln!("chaos: unreadable journal file {}: {reason}", path.display());
    }
}

/// `chaos agent serve`: replays the journal, then keeps a stream to the controller until SIGINT/SIGTERM, when
/// every fault held is reverted. Exit 1 when the controller refuses the token, or a revert at exit fails.
async fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let token = match (args.token, &args.token_file) {
        (Some(t), _) => Some(t),
        (None, Some(file)) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let token = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| l.split_whitespace().last().unwrap_or(l).to_string());
            Some(token.with_context(|| format!("{}: no token in the file", file.display()))?)
        }
        (None, None) => None,
    };
    let agent_id = match args.id {
        Some(id) => id,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .context("cannot read the hostname: give --id")?,
    };
    let config = chaos_proto::transport::ClientConfig {
        url: args.controller.clone(),
        ca: args.ca,
        cert: args.cert,
        key: args.key,
        domain: args.tls_domain,
    };
    let endpoint = chaos_proto::transport::endpoint(&config)?;
    let policy = match &args.policy {
        Some(path) => AgentPolicy::load(path)?,
        None => AgentPolicy::default(),
    };
    let state_dir = args.state.state_dir.clone();
    let (agent, replay) =
        tokio::task::spawn_blocking(move || HostAgent::start(state_dir, policy, rand::random()))
            .await
            .context("the agent start panicked")??;
    print_replay(&replay, "reverted, left by a previous process");
    let options = chaos_agent::remote::ServeOptions {
        endpoint,
        token,
        agent_id: agent_id.clone(),
        labels: args.labels.into_iter().collect(),
        backoff_min: chaos_agent::remote::DEFAULT_BACKOFF_MIN,
        backoff_max: chaos_agent::remote::DEFAULT_BACKOFF_MAX,
        cri_socket: args.cri.cri_socket.clone(),
    };
    tracing::info!(agent = %agent_id, controller = %args.controller, "agent starting");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signal = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            crate::shutdown_signal().await;
            tracing::info!("shutting down: reverting every fault held");
            shutdown.cancel();
        }
    });
    let result = chaos_agent::remote::serve(options, agent, shutdown).await;
    signal.abort();
    match result {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("chaos agent serve: {e}");
            Ok(1)
        }
    }
}
