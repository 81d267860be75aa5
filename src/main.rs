//! `chaos`: the command-line entry point. Parses flags and calls into the crates; no logic of its own lives
//! here beyond wiring (see ARCHITECTURE.md).

#![allow(clippy::print_stdout)] // The CLI prints its results on stdout.

mod cli;
mod color;
mod demo;
mod demo_target;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Chaos engineering in one binary: experiments judged on SLOs, a Toxiproxy-compatible fault-injection proxy,
/// host faults, and a controller with agents for fleets and game days.
#[derive(Parser)]
#[command(name = "chaos", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Color the verdict and log lines: auto (only on a terminal, and not when NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = color::ColorChoice::Auto)]
    color: color::ColorChoice,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment: faults against a hypothesis, judged on SLOs (exit 0 passed, 1 failed, 2 invalid,
    /// 3 inconclusive: also when a fault was lost before its planned end, or `--controller` lost the
    /// controller).
    Run(cli::run::RunArgs),
    /// Check experiment files without touching anything (exit 0 valid, 2 invalid).
    Validate(cli::run::ValidateArgs),
    /// Write the native experiment equivalent to a Chaos Toolkit experiment, listing what has no equivalent.
    Convert(cli::convert::ConvertArgs),
    /// Render a run's reports from its journal (`chaos run --journal FILE`): a self-contained HTML report with
    /// charts, the Markdown summary, JUnit XML. Exit 0 when written, 2 for a journal that cannot be read.
    Report(cli::report::ReportArgs),
    /// Print the JSON Schema of the experiment format.
    Schema,
    /// Print the fault reference as Markdown: every `fault:` kind, its target, and its `with:` keys with their
    /// units, ranges and defaults.
    ///
    /// Generated from the tables the faults' owners keep (the proxy's toxic attributes, the agent's fault
    /// fields), the same tables `chaos validate` and `chaos schema` read; docs/experiments.md holds this
    /// output.
    Faults,
    /// Run the fault-injection proxy server (Toxiproxy-compatible admin API on loopback by default).
    ///
    /// The admin API closes a connection whose request headers take more than 10 s, answers 408 to a body
    /// not received within 10 s and 413 to one over 1 MiB or to a populate of more than 1,000 proxies, and
    /// serves at most 512 connections at once. A proxy created with `"lease_ms": N` deletes itself unless an
    /// update renews the lease within N ms (`chaos run` leases the proxies it creates this way).
    Proxy(ProxyArgs),
    /// Manage proxies and toxics on any Toxiproxy-compatible server (like toxiproxy-cli).
    #[command(visible_alias = "tp")]
    Proxies(cli::proxies::ProxiesArgs),
    /// Run the demo: the example experiment against a built-in HTTP target behind a built-in proxy.
    Demo(demo::DemoArgs),
    /// Run the demo target on its own: a TCP echo service, or with --http a small HTTP service (`/health`,
    /// `/checkout`, `/slow?ms=N`, `/status/CODE`), to put behind proxies. Prints its address first.
    DemoTarget {
        /// Address to listen on; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Serve HTTP instead of echoing bytes.
        #[arg(long)]
        http: bool,
    },
    /// Host faults on this machine: inject from a spec file, journal status, break-glass revert-all, and
    /// `serve`: the daemon that connects to a controller.
    Agent(cli::agent::AgentArgs),
    /// Run the controller: the gRPC API for runs, schedules and halts, and the endpoint agents dial.
    Controller(cli::controller::ControllerArgs),
    /// Runs on a controller: list, show, watch, halt, and the audit log.
    Runs(cli::runs::RunsArgs),
    /// The agents connected to a controller, with labels and health.
    Agents(cli::agents::AgentsArgs),
    /// Schedules on a controller (game days): add, list, rm.
    Schedule(cli::schedule::ScheduleArgs),
    /// Halt every run and revert every fault on every agent (`chaos halt --all [--freeze]`).
    Halt(cli::halt::HaltArgs),
    /// Stop new runs (by hand or by schedule) from starting until `chaos unfreeze`.
    Freeze(cli::halt::FreezeArgs),
    /// Let runs start again after `chaos freeze` or `chaos halt --all --freeze`.
    Unfreeze(cli::halt::UnfreezeArgs),
    /// SLOs as code: check SLO files, generate Prometheus rules, report error budgets, register SLOs with a
    /// controller.
    Slo(cli::slo::SloArgs),
    /// Generate a development CA and TLS certificates for a controller, its agents and clients.
    Certs(cli::certs::CertsArgs),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell to generate completions for.
        shell: clap_complete::Shell,
    },
    /// Print the man page chaos(1) (roff, generated from these --help texts): `chaos man | man -l -`. With --dir,
    /// write chaos.1 and one page per command (chaos-run.1, chaos-agent-inject.1, ...) there instead.
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Address the admin API listens on (loopback by default: the API can reconfigure traffic).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Admin API port; 0 picks a free one (the chosen address is printed on the first stdout line).
    #[arg(long, default_value_t = 8474)]
    port: u16,
    /// Proxies (and their toxics) to create at start: Toxiproxy's JSON array, or YAML (.yaml/.yml). A bad file
    /// is refused before anything starts, at FILE:LINE:COLUMN with the offending key and the allowed ones.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Seed for every random choice (toxicity rolls, jitter, slicer sizes), so runs are reproducible.
    #[arg(long)]
    seed: Option<u64>,
    /// Serve Prometheus metrics at /metrics (as Toxiproxy's -proxy-metrics).
    #[arg(long, visible_alias = "metrics")]
    proxy_metrics: bool,
    /// Take over a port on this host: `PORT=PROXY` redirects every TCP connection to PORT (from this host and
    /// through it) to proxy PROXY's listener with an nftables rule in a table of its own, removed on exit (and
    /// by the next start after a crash). PROXY comes from --config, listens on 0.0.0.0 or [::], and dials its
    /// upstream (`original` = the destination the client asked for, tcp and http proxies) unredirected. Needs
    /// root. Repeatable.
    #[arg(long, value_name = "PORT=PROXY", value_parser = parse_intercept)]
    intercept: Vec<(u16, String)>,
    /// With --intercept: only connections from these source addresses or CIDRs (repeatable; default any).
    #[arg(long, value_name = "CIDR")]
    intercept_source: Vec<String>,
    /// With --intercept: only connections made by processes in this cgroup v2 (e.g.
    /// `/system.slice/shop.service`); connections passing through the host are then not intercepted.
    #[arg(long, value_name = "PATH")]
    intercept_cgroup: Option<String>,
}

fn parse_intercept(s: &str) -> Result<(u16, String), String> {
    let (port, proxy) = s.split_once('=').ok_or_else(|| format!("expected PORT=PROXY, found {s:?}"))?;
    let port: u16 =
        port.trim().parse().map_err(|_| format!("expected a port number before `=`, found {port:?}"))?;
    if proxy.trim().is_empty() {
        return Err(format!("expected a proxy name after `=`, found {s:?}"));
    }
    Ok((port, proxy.trim().to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Servers log their work; one-shot commands print results and progress, and log only problems.
    let server = match &cli.command {
        Command::Proxy(_) | Command::Controller(_) => true,
        Command::Agent(args) => args.is_daemon(),
        _ => false,
    };
    let stderr_color = cli.color.init();
    init_tracing(if server { "info" } else { "warn" }, stderr_color);
    if let Command::Agent(args) = &cli.command
        && let Some(watchdog) = args.watchdog()
    {
        return ExitCode::from(cli::agent::watchdog(watchdog));
    }
    quiet_on_closed_stdout();
    // Every undo journal this process opens gets a watchdog process (this binary, `chaos agent watchdog`) that
    // reverts its faults if this process dies or stalls past a lease.
    match std::env::current_exe() {
        Ok(exe) => chaos_agent::watchdog::install(exe, vec!["agent".into(), "watchdog".into()]),
        Err(e) => tracing::warn!(error = %e, "no watchdog: cannot find this program's path"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chaos: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Proxy(args) => run_proxy(args).await,
            Command::Proxies(args) => cli::proxies::run(args).await,
            Command::Demo(args) => return demo::run(args).await.map(ExitCode::from),
            Command::DemoTarget { listen, http: false } => demo::serve_target(&listen).await,
            Command::DemoTarget { listen, http: true } => demo_target::serve(&listen).await,
            Command::Run(args) => return cli::run::run(args).await.map(ExitCode::from),
            Command::Agent(args) => return cli::agent::run(args).await.map(ExitCode::from),
            Command::Controller(args) => cli::controller::controller(args).await,
            Command::Runs(args) => return cli::runs::runs(args).await.map(ExitCode::from),
            Command::Agents(args) => return cli::agents::agents(args).await.map(ExitCode::from),
            Command::Schedule(args) => return cli::schedule::schedule(args).await.map(ExitCode::from),
            Command::Halt(args) => return cli::halt::halt(args).await.map(ExitCode::from),
            Command::Freeze(args) => return cli::halt::freeze(args).await.map(ExitCode::from),
            Command::Unfreeze(args) => return cli::halt::unfreeze(args).await.map(ExitCode::from),
            Command::Slo(args) => return cli::slo::slo(args).await.map(ExitCode::from),
            Command::Certs(args) => cli::certs::certs(args),
            Command::Validate(args) => return Ok(ExitCode::from(cli::run::validate(args))),
            Command::Convert(args) => return Ok(ExitCode::from(cli::convert::convert(args))),
            Command::Report(args) => return Ok(ExitCode::from(cli::report::report(args))),
            Command::Schema => cli::run::schema(),
            Command::Faults => cli::run::faults(),
            Command::Man { dir } => man_pages(dir.as_deref()),
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "chaos", &mut std::io::stdout());
                Ok(())
            }
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        // The reader of stdout went away: quiet, as in `quiet_on_closed_stdout`.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(141)
        }
        // A config file that is wrong is bad input (exit 2, as for experiments); one that cannot be read or
        // applied is an operational failure (exit 1).
        Err(e)
            if matches!(
                e.downcast_ref::<chaos_proxy::config::ConfigError>(),
                Some(chaos_proxy::config::ConfigError::Parse { .. })
            ) =>
        {
            eprintln!("chaos: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr; `RUST_LOG` or Toxiproxy's `LOG_LEVEL` pick the level.
/// `chaos man`: chaos(1) on stdout, or every page (one per command, hidden ones left out) into `dir`.
fn man_pages(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let command = Cli::command();
    let Some(dir) = dir else {
        clap_mangen::Man::new(command).render(&mut std::io::stdout()).context("writing the man page")?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fn write_all(dir: &std::path::Path, command: clap::Command, name: &str) -> anyhow::Result<usize> {
        let path = dir.join(format!("{name}.1"));
        let mut file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        clap_mangen::Man::new(
            command.clone().display_name(name.to_string()).bin_name(name.replace('-', " ")),
        )
        .title(name.to_uppercase())
        .render(&mut file)
        .with_context(|| format!("writing {}", path.display()))?;
        let mut written = 1;
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            written += write_all(dir, sub.clone(), &format!("{name}-{}", sub.get_name()))?;
        }
        Ok(written)
    }
    let written = write_all(dir, command, "chaos")?;
    println!("wrote {written} man pages to {}", dir.display());
    Ok(())
}

/// Ends the process quietly when stdout's reader went away (`chaos runs audit | head -1`), as `cat` or `ls` end,
/// instead of the panic `println!` raises on a closed pipe. SIGPIPE stays ignored (a network client writing to a
/// closed socket must get an error, not die), so the closed pipe shows up as that panic, caught here; the exit
/// status is the shell's for a SIGPIPE death (141).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if payload.contains("Broken pipe") || payload.contains("BrokenPipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn init_tracing(default: &str, color: bool) {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| {
            std::env::var("LOG_LEVEL")
                .map(|l| l.to_lowercase().replace("panic", "error").replace("fatal", "error"))
        })
        .unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
}

async fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    // Each proxied connection holds two sockets; the default soft limit of 1024 would cap us near 500.
    // Raise the hard limit too where we may (CAP_SYS_RESOURCE), else the soft one up to the hard one.
    let _ = rlimit::Resource::NOFILE.set(1 << 20, 1 << 20);
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let server =
        chaos_proxy::Server::new(chaos_proxy::ServerConfig { seed: args.seed, metrics: args.proxy_metrics });
    if let Some(path) = &args.config {
        let count = chaos_proxy::config::load(&server, path).await?;
        tracing::info!(config = %path.display(), proxies = count, "config loaded");
    }
    // Interception tables a crashed predecessor left behind go first, whether or not this run intercepts.
    match chaos_proxy::intercept::remove_stale(None) {
        Ok(removed) => {
            for table in removed {
                tracing::warn!(%table, "removed an interception table left by a process that is gone");
            }
        }
        Err(e) => tracing::debug!(error = %e, "no stale interception check (nftables unavailable)"),
    }
    let interceptions = intercept(&server, &args).await?;
    let addr = format!("{}:{}", args.host, args.port);
    let listener =
        tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound: SocketAddr = listener.local_addr()?;
    // The first stdout line is the contract tests and scripts use to find a port-0 server.
    println!("listening on http://{bound}");
    tracing::info!(api = %bound, "chaos proxy API listening");
    chaos_proxy::serve(listener, server, shutdown_signal()).await?;
    for interception in &interceptions {
        if let Err(e) = interception.remove() {
            tracing::warn!(table = interception.table(), error = %e, "removing the interception failed");
        }
    }
    tracing::info!("chaos proxy stopped; every proxy closed, every toxic and interception gone");
    Ok(())
}

/// Installs the `--intercept` redirects (after marking this process's upstream dials, so no proxy ever catches
/// its own traffic). On error, those already installed are removed as they drop.
async fn intercept(
    server: &chaos_proxy::Server,
    args: &ProxyArgs,
) -> anyhow::Result<Vec<chaos_proxy::intercept::Interception>> {
    use chaos_proxy::intercept::{InterceptSpec, Interception, check, mark_upstream_dials};
    if args.intercept.is_empty() {
        return Ok(Vec::new());
    }
    check().context("--intercept")?;
    mark_upstream_dials();
    let mut installed = Vec::new();
    for (port, name) in &args.intercept {
        let view = server
            .proxy(name)
            .await
            .map_err(|e| anyhow::anyhow!("--intercept {port}={name}: {e} (declare the proxy in --config)"))?;
        let listen: SocketAddr = view
            .listen
            .parse()
            .with_context(|| format!("--intercept {port}={name}: listen address {:?}", view.listen))?;
        let spec = InterceptSpec {
            sources: args.intercept_source.clone(),
            cgroup: args.intercept_cgroup.clone(),
            // A cgroup only matches sockets of this host: forwarded connections have none.
            forwarded: args.intercept_cgroup.is_none(),
            ..InterceptSpec::new(*port, listen.port())
        };
        let interception = tokio::task::spawn_blocking(move || Interception::apply(&spec))
            .await?
            .with_context(|| format!("--intercept {port}={name}"))?;
        tracing::info!(port, proxy = %name, table = interception.table(), "intercepting");
        installed.push(interception);
    }
    Ok(installed)
}

/// Completes on SIGINT, SIGTERM, SIGHUP (the terminal went away) or SIGQUIT: every fault is then reverted.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut streams = Vec::new();
    for kind in [SignalKind::terminate(), SignalKind::hangup(), SignalKind::quit()] {
        if let Ok(stream) = signal(kind) {
            streams.push(stream);
        }
    }
    let any = async {
        let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
        let _ = futures_select_any(waits.collect()).await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = any => {}
    }
}

/// Completes when the first of `futures` does.
async fn futures_select_any<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Option<F::Output> {
    if futures.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for f in futures.iter_mut() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(Some(v));
            }
        }
        std::task::Poll::Pending
    })
    .await
}
