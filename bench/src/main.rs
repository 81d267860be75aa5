//! `chaos-bench`: measures `chaos proxy` against baselines (direct, HAProxy, noxious; over HTTP, direct and
//! HAProxy in HTTP mode under wrk), `chaos run` against Chaos Toolkit, the engine's SLO tick against copying
//! its data, and the agent's process sampling and fault reverts against `/proc` reads, `ps` and raw syscalls,
//! in the same run, and prints a Markdown report (DESIGN.md §9).

mod agent;
mod backend;
mod chaos;
mod chaos_run;
mod console;
mod ctk;
mod fleet;
mod haproxy;
mod http;
mod memory;
mod noxious;
mod ports;
mod profile;
mod report;
mod report_html;
mod rtt;
mod slo;
mod slo_rules;
mod slo_status;
mod stats;
mod targets;
mod throughput;
mod toxics;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};

use crate::profile::Profile;
use crate::report::Results;
use crate::targets::{TargetKind, Targets, Wanted};

/// Benchmarks of `chaos proxy` against a direct connection, HAProxy (TCP mode) and noxious, of its HTTP mode
/// against a direct connection and HAProxy (HTTP mode) under wrk, of `chaos run` against Chaos Toolkit, of the
/// engine's SLO evaluation tick, and of the agent's process sampling and fault reverts; all on 127.0.0.1 and
/// this host.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Reduced run (< 60 s).
    #[arg(long)]
    quick: bool,
    /// Run only these benchmarks (default: all).
    #[arg(long, value_enum, num_args = 1.., value_delimiter = ',')]
    only: Vec<Bench>,
    /// Targets for the throughput and round-trip benchmarks (default: all). The toxic benchmarks need chaos.
    #[arg(long, value_enum, num_args = 1.., value_delimiter = ',')]
    targets: Vec<TargetKind>,
    /// The `chaos` binary (default: target/release/chaos; build it with `cargo build --release -p chaos`).
    #[arg(long, value_name = "PATH")]
    chaos_bin: Option<PathBuf>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Internal: run as the backend server process.
    #[arg(long = "serve-backend", hide = true)]
    serve_backend: bool,
    /// Internal: run as a noxious proxy process in front of this upstream.
    #[arg(long = "serve-noxious", hide = true, value_name = "UPSTREAM")]
    serve_noxious: Option<String>,
    /// Internal: hold this many bytes of touched memory until stdin closes (the agent benchmark's baseline for
    /// memory stress).
    #[arg(long = "hold-memory", hide = true, value_name = "BYTES")]
    hold_memory: Option<usize>,
    /// Internal: rewrite FILE block by block with fdatasync until stdin closes (the agent benchmark's baseline
    /// for IO stress).
    #[arg(long = "write-loop", hide = true, value_name = "FILE")]
    write_loop: Option<PathBuf>,
}

/// The benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    /// L4 bulk throughput, no toxics.
    Throughput,
    /// 64-byte request/response round trip, no toxics.
    Rtt,
    /// 100 ms latency toxic accuracy.
    Latency,
    /// Bandwidth toxic accuracy, 10 KB/s .. 100 MB/s.
    Bandwidth,
    /// Proxy RSS per idle connection.
    Memory,
    /// `chaos run` wall time of a trivial experiment vs Chaos Toolkit.
    Run,
    /// SLO evaluation cost per engine tick (100 SLOs, 10k events/s).
    Slo,
    /// Agent: sampling 1,000 processes vs `/proc` reads and `ps`; revert latency of each fault kind vs its raw
    /// undo (signal, kill + waitpid, remove_file, nft, tc).
    Agent,
    /// HTTP/1.1 keep-alive requests/s and p50/p99 under wrk: direct, `chaos proxy` in http mode (no toxics, and
    /// an `http_abort` matching 0% of requests), HAProxy in mode http (whatever --targets says).
    Http,
    /// Controller: halt-all fan-out to 1,000 connected protocol-client agents, memory per agent, apply→ack.
    Fleet,
    /// `chaos slo status` for 100 SLOs against a backfilled Prometheus: queries issued and wall time.
    SloStatus,
    /// The HTML run report of a one-hour run with 20 series: render time and file size.
    ReportHtml,
    /// Controller: web console page time with 1,000 agents and 10,000 runs in the store.
    Console,
    /// `chaos slo rules`: rule file and promtool tests for 1,000 SLOs (time, size) vs reading the SLO file.
    SloRules,
    /// The Chaos Toolkit corpus (tests/ctk/corpus) under Chaos Toolkit and under `chaos run`: wall time, ratio.
    Ctk,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.serve_backend {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return runtime.block_on(backend::serve_process());
    }
    if let Some(upstream) = &cli.serve_noxious {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return runtime.block_on(noxious::serve_process(upstream));
    }
    if let Some(bytes) = cli.hold_memory {
        return agent::hold_memory(bytes);
    }
    if let Some(path) = &cli.write_loop {
        return agent::write_loop(path);
    }
    let profile = if cli.quick { Profile::quick() } else { Profile::full() };
    let benches: Vec<Bench> =
        if cli.only.is_empty() { Bench::value_variants().to_vec() } else { cli.only.clone() };
    let kinds: Vec<TargetKind> = if cli.targets.is_empty() {
        TargetKind::ALL.to_vec()
    } else {
        let mut k = cli.targets.clone();
        if !k.contains(&TargetKind::Direct) {
            k.insert(0, TargetKind::Direct); // every ratio needs the baseline
        }
        k
    };
    let has = |b: Bench| benches.contains(&b);
    let needs_chaos_target = has(Bench::Latency) || has(Bench::Bandwidth);
    if needs_chaos_target && !kinds.contains(&TargetKind::Chaos) {
        bail!("the latency and bandwidth benchmarks need the chaos target (drop --targets or add chaos)");
    }
    // Before any child is spawned: the backend and the proxies inherit the raised limit.
    let (mem_conns, fd_limit) = memory::raise_fd_limit(profile.mem_conns)?;
    if has(Bench::Memory) && mem_conns < profile.mem_conns {
        eprintln!(
            "note: RLIMIT_NOFILE is {fd_limit} and cannot be raised here, so the memory benchmark opens \
             {mem_conns} connections instead of {} (a proxy needs 2 descriptors per connection)",
            profile.mem_conns
        );
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    let limits = Limits { mem_conns, fd_limit };
    let mut results = runtime.block_on(run(&cli, &profile, &benches, &kinds, limits))?;
    let fleet = has(Bench::Fleet).then(|| {
        let chaos_bin = cli.chaos_bin.clone().unwrap_or_else(targets::default_chaos_bin);
        runtime.block_on(fleet::run(&chaos_bin, &fleet::Sizes::new(cli.quick)))
    });
    let slo_status = has(Bench::SloStatus).then(|| {
        runtime.block_on(slo_status::run(&slo_status::Sizes::new(cli.quick))).map_err(|e| format!("{e:#}"))
    });
    let console =
        has(Bench::Console).then(|| runtime.block_on(console::run(&console::Sizes::new(cli.quick))));
    // In-process and synchronous, after the targets are gone: nothing else runs meanwhile.
    if has(Bench::Agent) {
        results.agent = Some(agent::run(&agent::Sizes::new(cli.quick)));
    }
    let report_html = has(Bench::ReportHtml).then(|| report_html::run(cli.quick));
    let slo_rules = has(Bench::SloRules).then(|| slo_rules::run(&slo_rules::Sizes::new(cli.quick)));
    let ctk = has(Bench::Ctk).then(|| {
        let chaos_bin = cli.chaos_bin.clone().unwrap_or_else(targets::default_chaos_bin);
        ctk::run(&chaos_bin, &ctk::Sizes::new(cli.quick))
    });
    let mut markdown = report::render(&mut results);
    if let Some(f) = &fleet {
        markdown.push_str(&fleet::render(f));
    }
    if let Some(r) = &slo_status {
        markdown.push_str(&slo_status::render(r));
    }
    if let Some(r) = &report_html {
        markdown.push_str(&report_html::render(r));
    }
    if let Some(c) = &console {
        markdown.push_str(&console::render(c));
    }
    if let Some(r) = &slo_rules {
        markdown.push_str(&slo_rules::render_section(r));
    }
    if let Some(r) = &ctk {
        markdown.push_str(&ctk::render(r));
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(markdown.as_bytes())?;
    stdout.flush()?;
    if let Some(path) = &cli.json {
        let mut json = serde_json::to_value(&results)?;
        if let (Some(f), Some(object)) = (&fleet, json.as_object_mut()) {
            object.insert("fleet".to_string(), serde_json::to_value(f)?);
        }
        if let (Some(r), Some(object)) = (&slo_status, json.as_object_mut()) {
            let value = match r {
                Ok(r) => serde_json::to_value(r)?,
                Err(e) => serde_json::json!({ "error": e }),
            };
            object.insert("slo_status".to_string(), value);
        }
        if let (Some(Ok(r)), Some(object)) = (&report_html, json.as_object_mut()) {
            object.insert("report_html".to_string(), serde_json::to_value(r)?);
        }
        if let (Some(Ok(c)), Some(object)) = (&console, json.as_object_mut()) {
            object.insert("console".to_string(), serde_json::to_value(c)?);
        }
        if let (Some(Ok(r)), Some(object)) = (&slo_rules, json.as_object_mut()) {
            object.insert("slo_rules".to_string(), serde_json::to_value(r)?);
        }
        if let (Some(Ok(r)), Some(object)) = (&ctk, json.as_object_mut()) {
            object.insert("ctk".to_string(), serde_json::to_value(r)?);
        }
        let json = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    // Let the runtime's tasks go without waiting on idle sockets.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// What the open-file limit allows.
#[derive(Debug, Clone, Copy)]
struct Limits {
    mem_conns: usize,
    fd_limit: u64,
}

async fn run(
    cli: &Cli,
    profile: &Profile,
    benches: &[Bench],
    kinds: &[TargetKind],
    limits: Limits,
) -> Result<Results> {
    let has = |b: Bench| benches.contains(&b);
    let l4 = has(Bench::Throughput) || has(Bench::Rtt);
    let needs_proxy = l4 || has(Bench::Latency) || has(Bench::Bandwidth) || has(Bench::Memory);
    let work_dir = std::env::temp_dir().join(format!("chaos-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).with_context(|| format!("create {}", work_dir.display()))?;
    let chaos_bin = cli.chaos_bin.clone().unwrap_or_else(targets::default_chaos_bin);
    let wants_chaos = kinds.contains(&TargetKind::Chaos);
    let wanted = Wanted {
        chaos_bin: (wants_chaos && needs_proxy).then_some(chaos_bin.as_path()),
        haproxy: kinds.contains(&TargetKind::Haproxy) && (l4 || has(Bench::Memory)),
        noxious: kinds.contains(&TargetKind::Noxious) && (l4 || has(Bench::Memory)),
        haproxy_maxconn: memory::conns_within(limits.fd_limit),
        work_dir: &work_dir,
    };
    let mut targets = Targets::start(wanted)
        .await
        .with_context(|| format!("starting the targets (logs kept in {})", work_dir.display()))?;
    let mut results = Results { profile: Some(profile.clone()), ..Results::default() };
    results.environment = environment(&targets);
    results.environment.push(("RLIMIT_NOFILE".to_string(), limits.fd_limit.to_string()));

    if has(Bench::Throughput) {
        results.throughput = Some(throughput::run(&mut targets, kinds, profile).await);
    }
    if has(Bench::Rtt) {
        results.rtt = Some(rtt::run(&mut targets, kinds, profile).await);
    }
    if has(Bench::Latency) {
        let r = toxics::latency(&mut targets, profile).await;
        results.latency = Some(r.map_err(|e| format!("{e:#}")));
    }
    if has(Bench::Bandwidth) {
        let r = toxics::bandwidth(&mut targets, profile).await;
        results.bandwidth = Some(r.map_err(|e| format!("{e:#}")));
    }
    if has(Bench::Memory) {
        let mut rows = Vec::new();
        for kind in [TargetKind::Chaos, TargetKind::Haproxy, TargetKind::Noxious] {
            if kinds.contains(&kind) {
                let r = memory::measure(&mut targets, kind, limits.mem_conns).await;
                if let Err(e) = &r {
                    eprintln!("  error: {e:#}");
                }
                rows.push((kind, r.map_err(|e| format!("{e:#}"))));
            }
        }
        results.memory = Some(rows);
    }
    if has(Bench::Run) {
        let (bin, dir, p) = (chaos_bin.clone(), work_dir.clone(), profile.clone());
        let r = tokio::task::spawn_blocking(move || chaos_run::run(&bin, &dir, &p))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        if let Err(e) = &r {
            eprintln!("  error: {e:#}");
        }
        if let Ok(r) = &r {
            results
                .environment
                .push(("chaos run".to_string(), format!("{} (the `run` benchmark)", chaos_bin.display())));
            results.environment.push((
                "Chaos Toolkit".to_string(),
                format!("{} (pip, venv under target/bench-venv)", r.chaostoolkit_version),
            ));
        }
        results.run = Some(r.map_err(|e| format!("{e:#}")));
    }
    if has(Bench::Slo) {
        let p = profile.clone();
        results.slo = Some(tokio::task::spawn_blocking(move || slo::run(&p)).await?);
    }
    let mut http_chaos_died = false;
    if has(Bench::Http) {
        let r = http::run(&chaos_bin, &work_dir, profile).await;
        match &r {
            Ok(r) => {
                for (k, v) in &r.versions {
                    if !results.environment.iter().any(|(have, _)| have == k) {
                        results.environment.push((k.clone(), v.clone()));
                    }
                }
                http_chaos_died = r.chaos_died;
            }
            Err(e) => eprintln!("  error: {e:#}"),
        }
        results.http = Some(r.map_err(|e| format!("{e:#}")));
    }

    let chaos_log = targets.chaos.as_ref().map(|(s, _)| s.log().to_path_buf());
    let chaos_died = targets.check_chaos_alive().is_err();
    drop(targets);
    if http_chaos_died {
        let log = work_dir.join("http/chaos-proxy.stderr.log");
        eprintln!("the http benchmark's chaos proxy died; its stderr is kept in {}", log.display());
    }
    if chaos_died {
        if let Some(log) = chaos_log {
            eprintln!("chaos proxy died during the run; its stderr is kept in {}", log.display());
        }
    } else if !http_chaos_died {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    Ok(results)
}

/// Report header: machine and versions, so that numbers from different runs can be compared.
fn environment(targets: &Targets) -> Vec<(String, String)> {
    let read =
        |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mut env = vec![
        ("cores".to_string(), cores.to_string()),
        ("kernel".to_string(), read("/proc/sys/kernel/osrelease")),
        ("load average at start".to_string(), read("/proc/loadavg")),
    ];
    env.extend(targets.versions.iter().cloned());
    env
}
