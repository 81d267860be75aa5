//! `chaos notify log|test|channels`: the controller's on-call notifications — the delivery log with every
//! attempt, a test message to one channel or all, and the configured channels (never their secrets).

use chaos_proto::transport::WithToken;
use chaos_proto::v1;
use chaos_proto::v1::notify_service_client::NotifyServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::client::{ClientArgs, status_error, time};

#[derive(clap::Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    command: NotifyCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Subcommand)]
enum NotifyCommand {
    /// Recent deliveries (one per notification and channel), newest first, with their attempts.
    Log {
        /// At most this many deliveries (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only this channel's.
        #[arg(long)]
        channel: Option<String>,
        /// Only this event kind's (run_failed, guardrail_tripped, halt_all, freeze, unfreeze, incident_opened,
        /// incident_updated, incident_resolved, test).
        #[arg(long)]
        event: Option<String>,
        /// Only those in this state (pending, retrying, delivered, failed, dropped).
        #[arg(long)]
        state: Option<String>,
        /// Show every attempt under its delivery.
        #[arg(long)]
        attempts: bool,
        /// JSON instead of a table (attempts and payloads included).
        #[arg(long)]
        json: bool,
    },
    /// Send a test message now (one attempt per channel) and say how each channel took it. Exit 1 when one
    /// was not delivered.
    Test {
        /// Only this channel (default: every channel).
        #[arg(long)]
        channel: Option<String>,
        /// The message.
        #[arg(long, default_value = "test notification from chaos")]
        text: String,
    },
    /// The configured channels: name, kind, where they send (scheme, host, port), events, retries.
    Channels {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

type Client = NotifyServiceClient<InterceptedService<Channel, WithToken>>;

async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    let (channel, interceptor) = args.channel().await?;
    Ok(NotifyServiceClient::with_interceptor(channel, interceptor))
}

pub async fn notify(args: NotifyArgs) -> anyhow::Result<u8> {
    let mut client = connect(&args.client).await?;
    match args.command {
        NotifyCommand::Log { limit, channel, event, state, attempts, json } => {
            let request = v1::NotifyLogRequest {
                limit,
                channel: channel.unwrap_or_default(),
                event: event.unwrap_or_default(),
                state: state.unwrap_or_default(),
            };
            let log = client
                .notify_log(request)
                .await
                .map_err(|s| status_error("reading the notification log", s))?;
            show_log(log.into_inner().deliveries, attempts, json)
        }
        NotifyCommand::Test { channel, text } => {
            let request = v1::NotifyTestRequest { channel: channel.unwrap_or_default(), text };
            let results = client
                .notify_test(request)
                .await
                .map_err(|s| status_error("sending a test notification", s))?
                .into_inner()
                .results;
            let mut code = 0;
            for r in results {
                let status = if r.status == 0 { String::new() } else { format!(" (HTTP {})", r.status) };
                if r.delivered {
                    println!("{}: delivered{status} in {} ms", r.channel, r.elapsed_ms);
                } else {
                    println!("{}: NOT delivered{status}: {}", r.channel, r.error);
                    code = 1;
                }
            }
            Ok(code)
        }
        NotifyCommand::Channels { json } => {
            let channels = client
                .list_channels(v1::ListChannelsRequest {})
                .await
                .map_err(|s| status_error("listing notification channels", s))?
                .into_inner()
                .channels;
            if json {
                let rows: Vec<serde_json::Value> = channels
                    .iter()
                    .map(|c| {
                        serde_json::json!({"name": c.name, "kind": c.kind, "target": c.target, "events": c.events,
                            "timeout_ms": c.timeout_ms, "retries": c.retries, "signed": c.signed})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            if channels.is_empty() {
                println!("no notification channels (start the controller with --notify FILE)");
                return Ok(0);
            }
            println!(
                "{:<20} {:<10} {:<36} {:<8} {:<7} EVENTS",
                "NAME", "KIND", "TARGET", "TIMEOUT", "RETRIES"
            );
            for c in channels {
                let kind = if c.signed { format!("{}+hmac", c.kind) } else { c.kind };
                println!(
                    "{:<20} {:<10} {:<36} {:<8} {:<7} {}",
                    c.name,
                    kind,
                    c.target,
                    format!("{}ms", c.timeout_ms),
                    c.retries,
                    c.events.join(",")
                );
            }
            Ok(0)
        }
    }
}

fn show_log(deliveries: Vec<v1::NotifyDelivery>, attempts: bool, json: bool) -> anyhow::Result<u8> {
    if json {
        let rows: Vec<serde_json::Value> = deliveries
            .iter()
            .map(|d| {
                let tries: Vec<serde_json::Value> = d
                    .attempts
                    .iter()
                    .map(|a| {
                        serde_json::json!({"attempt": a.attempt, "at": a.at_unix_ms, "elapsed_ms": a.elapsed_ms,
                            "status": (a.status != 0).then_some(a.status), "error": (!a.error.is_empty()).then_some(&a.error)})
                    })
                    .collect();
                let payload: serde_json::Value =
                    serde_json::from_str(&d.payload).unwrap_or_else(|_| serde_json::Value::String(d.payload.clone()));
                serde_json::json!({"id": d.id, "notification": d.notification_id, "channel": d.channel,
                    "kind": d.channel_kind, "event": d.event, "summary": d.summary, "created": d.created_unix_ms,
                    "state": d.state, "delivered": (d.delivered_unix_ms != 0).then_some(d.delivered_unix_ms),
                    "last_error": (!d.last_error.is_empty()).then_some(&d.last_error), "attempts": tries,
                    "payload": payload})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<20} {:<16} {:<18} {:<10} {:<8} SUMMARY / LAST ERROR",
        "CREATED (UTC)", "CHANNEL", "EVENT", "STATE", "ATTEMPTS"
    );
    for d in deliveries {
        let tail = if d.last_error.is_empty() {
            d.summary.clone()
        } else {
            format!("{} — {}", d.summary, d.last_error)
        };
        println!(
            "{:<20} {:<16} {:<18} {:<10} {:<8} {}",
            time(d.created_unix_ms),
            d.channel,
            d.event,
            d.state,
            d.attempts.len(),
            tail
        );
        if attempts {
            for a in &d.attempts {
                let what = match (a.status, a.error.is_empty()) {
                    (0, _) => a.error.clone(),
                    (s, true) => format!("HTTP {s}"),
                    (_, false) => a.error.clone(),
                };
                println!("    #{} {} {} ms: {}", a.attempt, time(a.at_unix_ms), a.elapsed_ms, what);
            }
        }
    }
    Ok(0)
}
