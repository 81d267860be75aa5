//! `chaos slo`: SLOs as code. `check` reads SLO files (native, Sloth, OpenSLO) and says what they define or
//! where they are wrong; `schema` prints the native format's JSON Schema. Each other subcommand lives in a
//! file of its own.

use std::path::PathBuf;

use chaos_controller::slo_file::{self, SloDef, windows};

mod init;
mod registry;
mod rules;
mod status;

#[derive(clap::Args)]
pub struct SloArgs {
    #[command(subcommand)]
    command: SloCommand,
}

#[derive(clap::Subcommand)]
enum SloCommand {
    /// Check SLO files without touching anything: prints each SLO with its objective, period and alert
    /// windows (exit 0 valid, 2 invalid, with FILE:LINE:COLUMN for each problem).
    Check {
        /// SLO files (YAML or JSON; native `kind: SLO`, Sloth `prometheus/v1` or OpenSLO `openslo/v1`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the native SLO document (`apiVersion: chaos/v1`, `kind: SLO`).
    Schema,
    /// Write a commented starter SLO file (an availability and a latency SLO over the usual HTTP metrics).
    Init(init::InitArgs),
    #[command(flatten)]
    Registry(registry::RegistryCommand),
    /// The live error budget of each SLO from Prometheus: SLI, budget remaining, burn rates, alerts firing,
    /// time to exhaustion (exit 0 budget left, 1 exhausted, 2 bad input, 3 no data or unreachable).
    Status(status::StatusArgs),
    /// Prometheus recording and burn-rate alerting rules for SLO files, and with --tests their promtool unit
    /// tests (exit 0 written, 2 invalid input: nothing written).
    Rules(rules::RulesArgs),
}

pub async fn slo(args: SloArgs) -> anyhow::Result<u8> {
    match args.command {
        SloCommand::Check { files } => Ok(check(&files)),
        SloCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&slo_file::json_schema())?);
            Ok(0)
        }
        SloCommand::Init(args) => Ok(init::run(args)),
        SloCommand::Registry(command) => registry::registry(command).await,
        SloCommand::Status(args) => status::run(args).await,
        SloCommand::Rules(args) => rules::rules(args),
    }
}

/// Reads the files; prints the SLOs (exit 0) or the problems (exit 2).
fn check(files: &[PathBuf]) -> u8 {
    match slo_file::load_all(files) {
        Ok(slos) => {
            for slo in &slos {
                println!("{}", describe(slo));
            }
            0
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            2
        }
    }
}

/// `checkout/availability: 99.9% over 30d (budget 0.1%), page 1h/5m ×14.4, …`
fn describe(slo: &SloDef) -> String {
    let rows: Vec<String> = slo
        .alerting
        .windows
        .iter()
        .map(|w| {
            format!(
                "{} {}/{} ×{}",
                w.severity,
                windows::prom_duration(w.long),
                windows::prom_duration(w.short),
                w.burn_rate
            )
        })
        .collect();
    format!(
        "{}: {}% over {} (error budget {}%), alerts: {}",
        slo.id(),
        trim_float(slo.objective * 100.0),
        windows::period_text(slo.period),
        trim_float(slo.budget() * 100.0),
        rows.join(", ")
    )
}

/// A float without binary noise: 12 significant decimals at most.
pub fn trim_float(x: f64) -> String {
    let rounded = (x * 1e9).round() / 1e9;
    format!("{rounded}")
}
