//! `chaos run`, `chaos validate` and `chaos schema`: the experiment commands. Results on stdout, live
//! progress on stderr, and the exit code is the verdict (0 passed, 1 failed, 2 invalid, 3 inconclusive).

use std::path::PathBuf;
use std::sync::Arc;

use chaos_controller::engine::{self, Plan, RunConfig, Verdict};
use chaos_controller::experiment;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The experiment file (YAML or JSON, `apiVersion: chaos/v1`).
    file: PathBuf,
    /// Override a variable: `--var app=http://127.0.0.1:8080` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Seed for every random choice (target selection; recorded in the journal). Random when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Resolve the targets and print exactly what would be hit, then stop without touching anything.
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
    /// No live progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, found {s:?}"))
}

/// Runs one experiment file; returns the process exit code.
pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let exp = match experiment::load(&args.file, &args.vars) {
        Ok(exp) => exp,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(Verdict::Invalid.exit_code());
        }
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let plan = match Plan::resolve(&exp, seed).await {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("chaos run: {}: cannot resolve targets: {e}", args.file.display());
            return Ok(Verdict::Inconclusive.exit_code());
        }
    };
    if args.dry_run {
        print!("{}", plan.describe(&exp));
        println!("dry run: nothing was touched");
        return Ok(0);
    }
    let interrupt = CancellationToken::new();
    let signals = tokio::spawn(on_signal(interrupt.clone()));
    let config = RunConfig {
        seed,
        file: args.file.display().to_string(),
        progress: if args.quiet { None } else { Some(Arc::new(|line: String| eprintln!("{line}"))) },
    };
    let started = std::time::SystemTime::now();
    let outcome = engine::execute(&exp, plan, &config, interrupt).await;
    signals.abort();
    let journal = engine::journal(&exp, &config, &outcome, started);
    if let Some(path) = &args.journal {
        chaos_controller::report::write_journal(path, &journal)?;
    }
    if let Some(path) = &args.junit {
        chaos_controller::report::write_junit(path, &journal)?;
    }
    if let Some(path) = &args.summary {
        std::fs::write(path, chaos_controller::report::render_markdown(&journal))?;
    }
    println!("{}: {}", exp.title, outcome.verdict.as_str().to_uppercase());
    for reason in &outcome.reasons {
        println!("  - {reason}");
    }
    Ok(outcome.verdict.exit_code())
}

/// Cancels `token` on SIGINT or SIGTERM: the run reverts everything, reports, and exits 3.
async fn on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::warn!("interrupted: reverting every fault, then reporting");
    token.cancel();
}

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Experiment files to check; nothing is touched.
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
        match experiment::load(file, &args.vars) {
            Ok(_) => println!("{}: ok", file.display()),
            Err(diagnostics) => {
                ok = false;
                eprintln!("{diagnostics}");
            }
        }
    }
    if ok { 0 } else { 2 }
}

/// Prints the experiment format's JSON Schema.
pub fn schema() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&experiment::json_schema())?);
    Ok(())
}
