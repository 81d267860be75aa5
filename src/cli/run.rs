//! `chaos run`, `chaos validate`, `chaos schema` and `chaos faults`: the experiment commands. Results on
//! stdout, live progress on stderr, and the exit code is the verdict (0 passed, 1 failed, 2 invalid,
//! 3 inconclusive). A Chaos Toolkit experiment goes to [`super::ctk_run`] instead.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use chaos_controller::engine::{self, CheckError, HostOptions, Plan, RunConfig, Verdict};
use chaos_controller::experiment;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The experiment file (YAML or JSON, `apiVersion: chaos/v1`), or a Chaos Toolkit experiment (`.json`,
    /// `.yaml`, `.yml` with `title`, `description` and `method`), run with Chaos Toolkit's semantics: exit 0
    /// completed and not deviated, 1 deviated, failed or aborted, 2 invalid, 3 interrupted.
    file: PathBuf,
    /// Override a variable: `--var app=http://127.0.0.1:8080` (repeatable). For a Chaos Toolkit experiment,
    /// a configuration value: `--var key[:type]=value`, type `str` (default), `int`, `float` or `bytes`.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Seed for every random choice (target selection; recorded in the journal). Random when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Resolve the targets, check every step on this host as a real run does before its first fault (spec,
    /// policy, capabilities, devices, paths, processes), and print exactly what would be hit (each process
    /// with its pid, user and command line; every step numbered, nested ones as 3.1, with its name), then
    /// stop without touching anything. A target or step that cannot be resolved is named with why: exit 2
    /// when the file is at fault (a proxy name the API does not have, a selector the policy never allows, a
    /// device that does not exist), 3 when the host is (an API that is down, no process matching now).
    #[arg(long)]
    dry_run: bool,
    /// Write the journal (JSON: every step, fault, probe, signal sample and verdict reason) here.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Write a JUnit XML report here (one test case per SLO and per steady-state probe).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a Markdown summary here (for CI step summaries, e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Write the HTML report here: one self-contained file (charts of every SLO, latency, errors and traffic
    /// with the fault windows; no scripts, nothing fetched), to open in a browser or attach to a CI job.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// No live progress on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Where host faults (pause, stress, network), and proxies the run creates on a server without leases (a
    /// real Toxiproxy), keep their undo journal; at start, what a killed run left there is reverted.
    #[arg(long, env = "CHAOS_STATE_DIR", value_name = "DIR", default_value_os_t = chaos_agent::journal::default_state_dir())]
    state_dir: PathBuf,
    /// Agent policy file limiting host faults (allowed kinds, protected processes, stress ceilings, fill paths).
    #[arg(long, value_name = "FILE")]
    agent_policy: Option<PathBuf>,
    /// Run through a controller (`--controller URL`, or CHAOS_CONTROLLER): the experiment is submitted, runs
    /// there (reaching other hosts through its agents), and its progress, verdict, reports and exit code come
    /// back here as for a local run.
    #[command(flatten)]
    remote: super::client::ClientArgs,
    #[command(flatten)]
    ctk: super::ctk_run::CtkArgs,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, found {s:?}"))
}

/// Where a run writes its reports.
#[derive(Default)]
pub struct Reports {
    pub journal: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub summary: Option<PathBuf>,
    pub html: Option<PathBuf>,
    /// The local agent's state directory and policy, for host faults.
    pub host: HostOptions,
}

/// `chaos run --controller`: the controller sends the journal back; the HTML report is rendered from it here
/// (through a journal file next to the report when `--journal` was not asked for, removed afterwards).
async fn run_remote_with_html(args: RunArgs) -> anyhow::Result<u8> {
    let scratch = match (&args.html, &args.journal) {
        (Some(html), None) => {
            let mut name = html.as_os_str().to_owned();
            name.push(".journal.json");
            Some(PathBuf::from(name))
        }
        _ => None,
    };
    let journal = args.journal.clone().or_else(|| scratch.clone());
    let remote = super::remote_run::RemoteRun {
        file: args.file,
        vars: args.vars,
        seed: args.seed,
        dry_run: args.dry_run,
        quiet: args.quiet,
        journal: if args.html.is_some() { journal.clone() } else { args.journal },
        junit: args.junit,
        summary: args.summary,
    };
    let code = super::remote_run::run_remote(&args.remote, remote).await;
    if let (Some(html), Some(journal)) = (&args.html, &journal)
        && journal.exists()
    {
        let rendered = chaos_controller::report::read_journal(journal)
            .and_then(|j| chaos_controller::report::write_html(html, &j));
        if let Some(scratch) = &scratch {
            let _ = std::fs::remove_file(scratch);
        }
        anyhow::Context::with_context(rendered, || format!("writing the HTML report {}", html.display()))?;
    }
    code
}

/// Runs one experiment file; returns the process exit code.
pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let ctk_flags = !args.ctk.given().is_empty();
    if chaos_controller::ctk::load::is_ctk_file(&args.file)
        || chaos_controller::ctk::load::is_ctk_shaped_file(&args.file)
        || (ctk_flags && chaos_controller::ctk::load::is_unparsable_file(&args.file))
    {
        return run_ctk(args).await;
    }
    if let Some(flag) = args.ctk.given().first() {
        eprintln!(
            "chaos run: {flag} is a flag for Chaos Toolkit experiments; {} is a chaos experiment; nothing was run",
            args.file.display()
        );
        return Ok(Verdict::Invalid.exit_code());
    }
    if let Err(e) = super::args::check_outputs(&[
        ("journal", &args.journal),
        ("junit", &args.junit),
        ("summary", &args.summary),
        ("html", &args.html),
    ]) {
        eprintln!("chaos run: {e}; nothing was run");
        return Ok(Verdict::Invalid.exit_code());
    }
    if args.remote.controller.is_some() {
        return run_remote_with_html(args).await;
    }
    let exp = match experiment::load(&args.file, &args.vars) {
        Ok(exp) => exp,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(Verdict::Invalid.exit_code());
        }
    };
    let host = HostOptions { state_dir: args.state_dir, policy: args.agent_policy };
    let reports =
        Reports { journal: args.journal, junit: args.junit, summary: args.summary, html: args.html, host };
    let seed = args.seed.unwrap_or_else(rand::random);
    run_experiment(&exp, &args.file.display().to_string(), seed, args.dry_run, &reports, !args.quiet).await
}

/// `chaos run` of a Chaos Toolkit experiment; the native-only flags are refused.
async fn run_ctk(args: RunArgs) -> anyhow::Result<u8> {
    // `--seed`, `--junit`, `--summary` and `--html` are the native half's (`extensions: chaos`): checked there.
    let native = [
        ("--controller", args.remote.controller.is_some()),
        ("--dry-run", args.dry_run),
        ("--agent-policy", args.agent_policy.is_some()),
    ];
    if let Some((flag, _)) = native.iter().find(|(_, given)| *given) {
        eprintln!(
            "chaos run: {flag} is not available for Chaos Toolkit experiments ({}); nothing was run",
            args.file.display()
        );
        return Ok(Verdict::Invalid.exit_code());
    }
    super::ctk_run::run(super::ctk_run::CtkRun {
        file: &args.file,
        vars: &args.vars,
        args: args.ctk,
        journal: args.journal,
        quiet: args.quiet,
        native: super::ctk_run::NativeReports {
            seed: args.seed,
            junit: args.junit,
            summary: args.summary,
            html: args.html,
            state_dir: args.state_dir,
        },
    })
    .await
}

/// Resolves, runs and reports a validated experiment; returns the exit code (the verdict's).
pub async fn run_experiment(
    exp: &experiment::Checked,
    file: &str,
    seed: u64,
    dry_run: bool,
    reports: &Reports,
    progress: bool,
) -> anyhow::Result<u8> {
    let started = std::time::SystemTime::now();
    let stop_rollbacks = CancellationToken::new();
    let config = RunConfig {
        stop_rollbacks: stop_rollbacks.clone(),
        seed,
        file: file.to_string(),
        // A closed stderr (e.g. `| head`) must not panic the run mid-fault: write errors are ignored.
        progress: if progress {
            Some(Arc::new(|line: String| {
                let _ = writeln!(std::io::stderr(), "{line}");
            }))
        } else {
            None
        },
    };
    let mut plan = match Plan::resolve(exp, seed).await {
        Ok(plan) => Plan { state_dir: Some(reports.host.state_dir.clone()), ..plan },
        Err(e) => {
            eprintln!("chaos run: {file}: cannot resolve targets: {e}");
            if e.is_file() {
                // The file must change: invalid, like a file that does not validate (nothing was touched).
                return Ok(check_exit_code(&e));
            }
            // Nothing was touched, but CI still gets its reports, saying why.
            let outcome =
                engine::Outcome::inconclusive(format!("infrastructure: cannot resolve targets: {e}"));
            return report(exp, &config, &outcome, started, reports);
        }
    };
    let needs_host = Plan::needs_host(exp);
    if dry_run {
        // The same check pass a real run makes before its first fault.
        if let Err(e) = plan.check_local(exp, seed, &reports.host).await {
            eprintln!("chaos run: {file}: {e}");
            return Ok(check_exit_code(&e));
        }
        print!("{}", plan.describe(exp));
        println!("dry run: nothing was touched");
        return Ok(0);
    }
    if needs_host {
        match plan.start_host(&reports.host, seed).await {
            Ok(notes) => {
                for note in notes {
                    eprintln!("chaos run: {note}");
                }
            }
            Err(e) => {
                eprintln!("chaos run: {file}: {e}");
                let outcome = engine::Outcome::inconclusive(format!("infrastructure: {e}"));
                return report(exp, &config, &outcome, started, reports);
            }
        }
    }
    // Every step on this host is checked before the first one is applied: a fault that would be refused
    // half-way must not leave the earlier ones (a paused victim, a full disk) in place until then.
    if let Err(e) = plan.check_local(exp, seed, &reports.host).await {
        eprintln!("chaos run: {file}: nothing was applied: {e}");
        if e.is_file() {
            return Ok(check_exit_code(&e));
        }
        let outcome = engine::Outcome::inconclusive(format!("infrastructure: {e}"));
        return report(exp, &config, &outcome, started, reports);
    }
    let interrupt = CancellationToken::new();
    let signals = tokio::spawn(on_signal(interrupt.clone(), stop_rollbacks));
    if progress {
        eprintln!("chaos run: {} (seed {seed})", exp.title);
    }
    let outcome = engine::execute(exp, plan, &config, interrupt).await;
    signals.abort();
    report(exp, &config, &outcome, started, reports)
}

/// The exit code of a step refused by the check pass: 2 when the experiment is at fault, 3 when the host is.
fn check_exit_code(e: &CheckError) -> u8 {
    if e.is_file() { Verdict::Invalid.exit_code() } else { Verdict::Inconclusive.exit_code() }
}

/// Writes the reports asked for and prints the verdict with its reasons; returns the exit code.
fn report(
    exp: &experiment::Checked,
    config: &RunConfig,
    outcome: &engine::Outcome,
    started: std::time::SystemTime,
    reports: &Reports,
) -> anyhow::Result<u8> {
    let journal = engine::journal(exp, config, outcome, started);
    // Checked writable before the run; a failure now still names the file, once.
    use anyhow::Context as _;
    if let Some(path) = &reports.journal {
        chaos_controller::report::write_journal(path, &journal)
            .with_context(|| format!("writing the journal {}", path.display()))?;
    }
    if let Some(path) = &reports.junit {
        chaos_controller::report::write_junit(path, &journal)
            .with_context(|| format!("writing the JUnit report {}", path.display()))?;
    }
    if let Some(path) = &reports.summary {
        std::fs::write(path, chaos_controller::report::render_markdown(&journal))
            .with_context(|| format!("writing the summary {}", path.display()))?;
    }
    if let Some(path) = &reports.html {
        chaos_controller::report::write_html(path, &journal)
            .with_context(|| format!("writing the HTML report {}", path.display()))?;
    }
    println!("{}: {}", exp.title, crate::color::verdict(outcome.verdict.as_str()));
    // Each SLO's reason is printed once, on its own `slo` line with its time to recover; the other reasons
    // (guardrails, lost faults, probes, nothing judged) as a list first.
    // The detection reasons too are printed once, on their alert's own `alert` line.
    let per_alert = |r: &str| {
        outcome.detection.iter().any(|o| {
            r.starts_with(&format!("detected: alert {} fired", o.alert))
                || r.starts_with(&format!("not detected: alert {} did not fire", o.alert))
        })
    };
    for reason in
        outcome.reasons.iter().filter(|r| !outcome.slos.iter().any(|slo| &slo.reason == *r) && !per_alert(r))
    {
        println!("  - {reason}");
    }
    for line in chaos_controller::slo::format::verdict_lines(&outcome.slos, &outcome.recovery) {
        println!("{line}");
    }
    for o in &outcome.detection {
        println!("  alert {}", chaos_controller::report::markdown::detection_line(o, &outcome.reasons));
    }
    Ok(outcome.verdict.exit_code())
}

/// Cancels `token` on SIGINT or SIGTERM: the run reverts everything, reports, and exits 3.
async fn on_signal(token: CancellationToken, stop_rollbacks: CancellationToken) {
    crate::shutdown_signal().await;
    tracing::warn!(
        "interrupted: reverting every fault, then reporting (interrupt again to skip the rollbacks)"
    );
    token.cancel();
    crate::shutdown_signal().await;
    tracing::warn!("interrupted again: stopping the rollbacks");
    stop_rollbacks.cancel();
}

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Experiment files to check; nothing is touched. `-` reads one from standard input (YAML or JSON).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Variables, as for `chaos run`.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
}

/// Checks files; exit 0 when all are valid, 2 otherwise.
pub fn validate(args: ValidateArgs) -> u8 {
    let mut ok = true;
    for file in &args.files {
        if let Some(checked) = super::ctk_run::validate(file) {
            match checked {
                Ok(()) => println!("{}: ok", file.display()),
                Err(diagnostics) => {
                    ok = false;
                    eprintln!("{diagnostics}");
                }
            }
            continue;
        }
        let loaded = if file.as_os_str() == "-" {
            read_stdin()
                .and_then(|text| experiment::parse("<stdin>", &text, &args.vars).map_err(|d| d.to_string()))
        } else {
            experiment::load(file, &args.vars).map_err(|d| d.to_string())
        };
        match loaded {
            Ok(_) => println!("{}: ok", file.display()),
            Err(diagnostics) => {
                ok = false;
                eprintln!("{diagnostics}");
            }
        }
    }
    if ok { 0 } else { 2 }
}

/// The most `chaos validate -` reads from standard input (an experiment is a few kilobytes).
const MAX_STDIN_BYTES: u64 = 4 << 20;

/// Standard input as text, at most [`MAX_STDIN_BYTES`].
fn read_stdin() -> Result<String, String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_STDIN_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("<stdin>: cannot read: {e}"))?;
    if text.len() as u64 > MAX_STDIN_BYTES {
        return Err(format!("<stdin>: more than {MAX_STDIN_BYTES} bytes; an experiment is much smaller"));
    }
    Ok(text)
}

/// Prints the experiment format's JSON Schema.
pub fn schema() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&experiment::json_schema())?);
    Ok(())
}

/// Prints the fault reference (Markdown), generated from the faults' owners' tables.
pub fn faults() -> anyhow::Result<()> {
    print!("{}", experiment::fault_reference());
    Ok(())
}
