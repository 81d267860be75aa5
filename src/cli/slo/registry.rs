//! `chaos slo apply|list|history|rm`: the controller's SLO registry. `apply` checks the files locally first
//! (the same messages and exit 2 as `chaos slo check`), then sends them whole; the controller keeps every
//! change of an SLO as a new version, with the file it came from.

use std::path::PathBuf;

use anyhow::Context as _;
use chaos_controller::slo_file;
use chaos_proto::v1;

use super::trim_float;
use crate::cli::client::{ClientArgs, status_error, time};

#[derive(clap::Subcommand)]
pub enum RegistryCommand {
    /// Register SLO files with the controller, all or nothing: each SLO whose definition changed becomes a
    /// new version ("created v1", "updated v3"), an identical one stays ("unchanged"). Exit 2 with
    /// FILE:LINE:COLUMN for each problem when a file is invalid (nothing is sent).
    Apply {
        /// SLO files (YAML or JSON; native `kind: SLO`, Sloth `prometheus/v1` or OpenSLO `openslo/v1`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The SLOs registered with the controller (their current versions).
    List {
        /// JSON instead of a table (with each SLO's normalised definition).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every version of one SLO (`service/name`), oldest first, deletions included.
    History {
        /// The SLO's id, `service/name`.
        id: String,
        /// Print the file version VERSION was applied from, exactly as it was applied.
        #[arg(long, value_name = "VERSION")]
        source: Option<u32>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete an SLO from the registry (a new version marks it deleted; its history stays).
    Rm {
        /// The SLO's id, `service/name`.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn registry(command: RegistryCommand) -> anyhow::Result<u8> {
    match command {
        RegistryCommand::Apply { files, client } => apply(&files, &client).await,
        RegistryCommand::List { json, client } => list(json, &client).await,
        RegistryCommand::History { id, source, json, client } => history(id, source, json, &client).await,
        RegistryCommand::Rm { id, client } => {
            let deleted = client
                .connect()
                .await?
                .delete_slo(v1::DeleteSloRequest { id: id.clone() })
                .await
                .map_err(|s| status_error("deleting the SLO", s))?
                .into_inner()
                .deleted
                .unwrap_or_default();
            println!("{id}: deleted (v{}; its history is kept: chaos slo history {id})", deleted.version);
            Ok(0)
        }
    }
}

/// Checks the files locally, then applies them; prints what happened to each SLO.
async fn apply(files: &[PathBuf], client: &ClientArgs) -> anyhow::Result<u8> {
    // The same reading as `chaos slo check` (size bound included): bad input never reaches the controller.
    if let Err(diagnostics) = slo_file::load_all(files) {
        eprintln!("{diagnostics}");
        return Ok(2);
    }
    let mut sent = Vec::with_capacity(files.len());
    for path in files {
        let source = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        sent.push(v1::SloFile { file: path.display().to_string(), source });
    }
    let answer = match client.connect().await?.apply_slos(v1::ApplySlosRequest { files: sent }).await {
        Ok(answer) => answer.into_inner(),
        // Checked here already; a controller of another version may still read a file differently.
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            eprintln!("{}", status.message());
            return Ok(2);
        }
        Err(status) => return Err(status_error("applying the SLOs", status)),
    };
    for slo in answer.slos {
        match slo.outcome.as_str() {
            "unchanged" => println!("{}: unchanged (v{})", slo.id, slo.version),
            outcome => println!("{}: {outcome} v{}", slo.id, slo.version),
        }
    }
    Ok(0)
}

async fn list(json: bool, client: &ClientArgs) -> anyhow::Result<u8> {
    let slos = client
        .connect()
        .await?
        .list_slos(v1::ListSlosRequest { with_definitions: json })
        .await
        .map_err(|s| status_error("listing the SLOs", s))?
        .into_inner()
        .slos;
    if json {
        let rows = slos.iter().map(version_json).collect::<anyhow::Result<Vec<_>>>()?;
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<40} {:>7} {:>9} {:<7} {:<11} {:<19} {:<12} FILE",
        "ID", "VERSION", "OBJECTIVE", "PERIOD", "SLI", "APPLIED (UTC)", "BY"
    );
    for s in slos {
        println!(
            "{:<40} {:>7} {:>9} {:<7} {:<11} {:<19} {:<12} {}",
            s.id,
            format!("v{}", s.version),
            percent(s.objective),
            s.period,
            s.sli_kind,
            time(s.applied_unix_ms),
            s.applied_by,
            s.file
        );
    }
    Ok(0)
}

async fn history(id: String, source: Option<u32>, json: bool, client: &ClientArgs) -> anyhow::Result<u8> {
    let versions = client
        .connect()
        .await?
        .slo_history(v1::SloHistoryRequest { id, version: source })
        .await
        .map_err(|s| status_error("reading the SLO's history", s))?
        .into_inner()
        .versions;
    if source.is_some() {
        // The file's text as applied, nothing added.
        for v in versions {
            print!("{}", v.source);
        }
        return Ok(0);
    }
    if json {
        let rows = versions.iter().map(version_json).collect::<anyhow::Result<Vec<_>>>()?;
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:>7} {:<8} {:>9} {:<7} {:<11} {:<19} {:<12} FILE",
        "VERSION", "CHANGE", "OBJECTIVE", "PERIOD", "SLI", "AT (UTC)", "BY"
    );
    for v in versions {
        let (change, objective) =
            if v.deleted { ("deleted", "-".to_string()) } else { ("applied", percent(v.objective)) };
        println!(
            "{:>7} {:<8} {:>9} {:<7} {:<11} {:<19} {:<12} {}",
            format!("v{}", v.version),
            change,
            objective,
            dash(&v.period),
            dash(&v.sli_kind),
            time(v.applied_unix_ms),
            v.applied_by,
            dash(&v.file)
        );
    }
    Ok(0)
}

/// One version for `--json`: the listing's fields and the normalised definition as JSON (null when deleted).
fn version_json(v: &v1::SloVersion) -> anyhow::Result<serde_json::Value> {
    let definition = if v.definition_json.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&v.definition_json)
            .with_context(|| format!("the controller sent a definition of {} that is not JSON", v.id))?
    };
    Ok(serde_json::json!({
        "id": v.id,
        "version": v.version,
        "deleted": v.deleted,
        "objective": v.objective,
        "period": v.period,
        "sli": v.sli_kind,
        "file": v.file,
        "source_sha256": v.source_sha256,
        "applied_unix_ms": v.applied_unix_ms,
        "applied_by": v.applied_by,
        "definition": definition,
    }))
}

fn percent(fraction: f64) -> String {
    format!("{}%", trim_float(fraction * 100.0))
}

fn dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}
