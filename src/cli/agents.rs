//! `chaos agents`: the agents connected to the controller, as a table or JSON.

use chaos_proto::v1;

use super::args::parse_label;
use super::client::{ClientArgs, status_error, time};

#[derive(clap::Args)]
pub struct AgentsArgs {
    /// Only agents with these labels (`--selector role=web`, repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
    selector: Vec<(String, String)>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn agents(args: AgentsArgs) -> anyhow::Result<u8> {
    let mut client = args.client.connect().await?;
    let agents = client
        .list_agents(v1::ListAgentsRequest { selector: args.selector.into_iter().collect() })
        .await
        .map_err(|s| status_error("listing agents", s))?
        .into_inner()
        .agents;
    if args.json {
        let rows: Vec<serde_json::Value> = agents
            .iter()
            .map(|a| {
                let labels: std::collections::BTreeMap<_, _> = a.labels.iter().collect();
                serde_json::json!({"id": a.id, "hostname": a.hostname, "health": a.health, "labels": labels,
                    "capabilities": a.capabilities, "version": a.version, "boot_id": a.boot_id,
                    "last_seen": a.last_seen_unix_ms, "active_faults": a.active_faults, "peer": a.peer,
                    "cpu": a.sample.as_ref().and_then(|s| s.cpu), "memory": a.sample.as_ref().map(|s| s.memory_used)})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!("{:<20} {:<10} {:<6} {:<6} {:<20} LABELS", "ID", "HEALTH", "FAULTS", "CPU", "LAST SEEN");
    for a in agents {
        let mut labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let cpu = a.sample.as_ref().and_then(|s| s.cpu).map_or("-".into(), |c| format!("{:.0}%", c * 100.0));
        println!(
            "{:<20} {:<10} {:<6} {:<6} {:<20} {}",
            a.id,
            a.health,
            a.active_faults,
            cpu,
            time(a.last_seen_unix_ms),
            labels.join(",")
        );
    }
    Ok(0)
}
