//! `chaos schedule add|list|rm`: experiments on a cron, with windows and blackout dates.

use std::path::PathBuf;

use anyhow::Context;
use chaos_proto::v1;

use super::args::parse_label;
use super::client::{ClientArgs, status_error, time};

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
        /// A file holding this schedule's own `on_failure:` block (YAML or JSON, as in an experiment, e.g.
        /// `incident: {severity: sev2, services: [checkout]}`); it replaces the experiment's for its runs.
        #[arg(long, value_name = "FILE")]
        on_failure: Option<PathBuf>,
    },
    /// Schedules with their next firing.
    List,
    /// Delete a schedule by id or name.
    Rm { id: String },
}

pub async fn schedule(args: ScheduleArgs) -> anyhow::Result<u8> {
    let mut client = args.client.connect().await?;
    match args.command {
        ScheduleCommand::Add {
            name,
            file,
            cron,
            timezone,
            window,
            blackout,
            allow_overlap,
            seed,
            vars,
            on_failure,
        } => {
            let on_failure = match on_failure {
                Some(path) => {
                    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
                }
                None => String::new(),
            };
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
                on_failure,
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
