//! `chaos runs list|show|watch|halt|audit`: the controller's runs and its audit log.

use chaos_proto::v1;

use super::client::{ClientArgs, status_error, time};
use super::remote_run::watch;

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
