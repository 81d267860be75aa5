//! `chaos halt --all`, `chaos freeze`, `chaos unfreeze`: the big red button and the switch that keeps runs
//! from starting.

use std::time::Duration;

use anyhow::bail;
use chaos_proto::v1;

use super::args::parse_duration;
use super::client::{ClientArgs, status_error};

#[derive(clap::Args)]
pub struct HaltArgs {
    /// Halt every run and revert every fault on every agent (the only mode: say it explicitly).
    #[arg(long, required = true)]
    all: bool,
    /// Also freeze: no run starts (by hand or schedule) until `chaos unfreeze`.
    #[arg(long)]
    freeze: bool,
    #[arg(long, default_value = "halted from the command line")]
    reason: String,
    /// How long to wait for the agents' acknowledgements.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    client: ClientArgs,
}

/// Exit 0 when every agent acknowledged, 1 when some did not (their leases still revert their faults).
pub async fn halt(args: HaltArgs) -> anyhow::Result<u8> {
    if !args.all {
        bail!("give --all (to halt one run: chaos runs halt ID)");
    }
    let mut client = args.client.connect().await?;
    let request = v1::HaltAllRequest {
        reason: args.reason,
        freeze: args.freeze,
        timeout_ms: u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let r = client.halt_all(request).await.map_err(|s| status_error("halting", s))?.into_inner();
    println!(
        "halted {} runs; {} agents acknowledged in {} ms{}",
        r.runs_halted.len(),
        r.agents_acknowledged.len(),
        r.elapsed_ms,
        if r.frozen { "; frozen" } else { "" }
    );
    if !r.agents_missing.is_empty() {
        println!("not acknowledged (their leases revert their faults): {}", r.agents_missing.join(", "));
        return Ok(1);
    }
    Ok(0)
}

#[derive(clap::Args)]
pub struct FreezeArgs {
    /// Why (recorded in the audit log and shown to whoever tries to start a run).
    #[arg(long, default_value = "frozen from the command line")]
    reason: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct UnfreezeArgs {
    /// Why runs may start again (recorded in the audit log).
    #[arg(long, default_value = "unfrozen from the command line")]
    reason: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn freeze(args: FreezeArgs) -> anyhow::Result<u8> {
    let mut client = args.client.connect().await?;
    let state = client.freeze(v1::FreezeRequest { reason: args.reason }).await;
    show_freeze(state)
}

pub async fn unfreeze(args: UnfreezeArgs) -> anyhow::Result<u8> {
    let mut client = args.client.connect().await?;
    let state = client.unfreeze(v1::UnfreezeRequest { reason: args.reason }).await;
    show_freeze(state)
}

fn show_freeze(state: Result<tonic::Response<v1::FreezeState>, tonic::Status>) -> anyhow::Result<u8> {
    let state = state.map_err(|s| status_error("changing the freeze", s))?.into_inner();
    if state.frozen {
        println!("frozen by {}: {} (no run starts until `chaos unfreeze`)", state.by, state.reason);
    } else {
        println!("not frozen: runs may start");
    }
    Ok(0)
}
