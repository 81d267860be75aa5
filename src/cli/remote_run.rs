//! `chaos run --controller`: submit and start an experiment on the controller, print its progress as a local
//! run would, write the reports, and exit with its verdict; SIGINT/SIGTERM halts it on the controller.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use chaos_proto::v1;
use tokio_util::sync::CancellationToken;

use super::client::{Client, ClientArgs, DEFAULT_CONTROLLER, status_error};

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
pub async fn watch(client: &mut Client, id: &str, quiet: bool) -> anyhow::Result<Option<v1::RunEvent>> {
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
