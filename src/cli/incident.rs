//! `chaos incident open|ack|status|note|resolve|update|list|show|report|stats`: the controller's incidents
//! (`IncidentService`). Exit codes: 0 done; 1 refused by the incident's state (the reason is printed), not
//! found, or the controller unreachable; 2 bad input (an unknown severity or status, an empty text).

use std::path::PathBuf;

use anyhow::Context;
use chaos_controller::incident::report::{self, LinkedRun};
use chaos_controller::incident::{self, ActionItem, Entry, Incident, human_ms, parse_age};
use chaos_controller::report::journal::Journal;
use chaos_proto::transport::WithToken;
use chaos_proto::v1;
use chaos_proto::v1::incident_service_client::IncidentServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::client::{ClientArgs, status_error, time};

#[derive(clap::Args)]
pub struct IncidentArgs {
    #[command(subcommand)]
    command: IncidentCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Subcommand)]
enum IncidentCommand {
    /// Open an incident (status investigating). Prints its id.
    Open {
        /// What is wrong, in one line.
        title: String,
        /// sev1 (worst), sev2, sev3 or sev4 (any case).
        #[arg(long)]
        severity: String,
        /// An affected service (repeatable).
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
        /// Who leads the response.
        #[arg(long, value_name = "NAME")]
        commander: Option<String>,
        /// Someone working on it (repeatable).
        #[arg(long = "responder", value_name = "NAME")]
        responders: Vec<String>,
        /// When the failure began: RFC 3339 (`2026-12-07T05:00:00Z`) or an age (`20m`: 20 minutes ago).
        /// Default: now.
        #[arg(long, value_name = "WHEN", value_parser = parse_when)]
        started: Option<When>,
        /// When it was noticed, as --started. Default: now.
        #[arg(long, value_name = "WHEN", value_parser = parse_when)]
        detected: Option<When>,
        /// The first note: what was seen.
        #[arg(long)]
        summary: Option<String>,
        /// Link a run of this controller (repeatable).
        #[arg(long = "run", value_name = "RUN_ID")]
        runs: Vec<String>,
    },
    /// Acknowledge: you are on it (records when, once).
    Ack {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Move the status: investigating → identified → monitoring → resolved (monitoring may go back).
    Status {
        id: String,
        /// investigating, identified, monitoring or resolved.
        status: String,
        /// Reopen a resolved incident (back to investigating).
        #[arg(long)]
        reopen: bool,
        #[arg(long)]
        note: Option<String>,
    },
    /// Add a note to the timeline.
    Note { id: String, text: String },
    /// Resolve the incident (records when: its time to recover).
    Resolve {
        id: String,
        #[arg(long, value_name = "TEXT")]
        root_cause: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Change severity, title, people, services, root cause, action items or linked runs.
    Update {
        id: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        /// The new commander; an empty string clears it.
        #[arg(long, value_name = "NAME")]
        commander: Option<String>,
        #[arg(long = "add-responder", value_name = "NAME")]
        add_responders: Vec<String>,
        #[arg(long = "remove-responder", value_name = "NAME")]
        remove_responders: Vec<String>,
        #[arg(long = "add-service", value_name = "NAME")]
        add_services: Vec<String>,
        #[arg(long = "remove-service", value_name = "NAME")]
        remove_services: Vec<String>,
        #[arg(long, value_name = "TEXT")]
        root_cause: Option<String>,
        /// A new action item, `TEXT` or `TEXT @OWNER` (repeatable).
        #[arg(long = "action-item", value_name = "TEXT")]
        action_items: Vec<String>,
        /// Mark action item N (1-based, as `show` numbers them) done (repeatable).
        #[arg(long = "done", value_name = "N")]
        done: Vec<u32>,
        /// Link a run of this controller (repeatable).
        #[arg(long = "link-run", value_name = "RUN_ID")]
        link_runs: Vec<String>,
    },
    /// Incidents, newest first.
    List {
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// Only this severity.
        #[arg(long)]
        severity: Option<String>,
        /// Only incidents affecting this service.
        #[arg(long)]
        service: Option<String>,
        /// Only incidents started within this age (`90d`, `2w`, `12h`).
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        since: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One incident: fields, times to detect/acknowledge/recover, action items and the timeline.
    Show {
        id: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The blameless incident review (Markdown, or HTML with --html), with the linked runs' SLO numbers.
    Report {
        id: String,
        /// Write it here instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// A self-contained HTML page instead of Markdown.
        #[arg(long)]
        html: bool,
    },
    /// Count, mean, p50 and p90 (nearest rank) of time to detect (started → detected), acknowledge
    /// (detected → acknowledged) and recover (started → resolved), overall, per service and per severity,
    /// over the incidents started in the period.
    Stats {
        /// The period: incidents started within this age (`90d`, `2w`, `12h`).
        #[arg(long, value_name = "AGE", default_value = "90d", value_parser = age_arg)]
        since: (i64, String),
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

type Client = IncidentServiceClient<InterceptedService<Channel, WithToken>>;

async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    let (channel, interceptor) = args.channel().await?;
    Ok(IncidentServiceClient::with_interceptor(channel, interceptor)
        .max_decoding_message_size(super::client::MAX_REPLY)
        .max_encoding_message_size(super::client::MAX_REPLY))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An age with the text it was written as (for the stats' heading).
fn age_arg(s: &str) -> Result<(i64, String), String> {
    parse_age(s).map(|ms| (ms, s.to_string()))
}

/// `--started`/`--detected`: RFC 3339 (a time), or an age (that long before `now`).
#[derive(Clone, Copy, Debug)]
enum When {
    At(i64),
    Ago(i64),
}

impl When {
    fn at(self, now: i64) -> i64 {
        match self {
            When::At(ms) => ms,
            When::Ago(age) => now - age,
        }
    }
}

fn parse_when(s: &str) -> Result<When, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(When::At(t.timestamp_millis()));
    }
    parse_age(s)
        .map(When::Ago)
        .map_err(|e| format!("expected RFC 3339 (2026-12-07T05:00:00Z) or an age (20m, 2h): {e}"))
}

/// Bad input, refused by the controller as INVALID_ARGUMENT: printed, exit 2.
fn refused(what: &str, status: tonic::Status) -> anyhow::Result<u8> {
    if status.code() == tonic::Code::InvalidArgument {
        eprintln!("chaos: {what}: {}", status.message());
        return Ok(2);
    }
    Err(status_error(what, status))
}

/// Runs `call`; an INVALID_ARGUMENT answer returns exit code 2 from the caller.
macro_rules! call {
    ($what:expr, $call:expr) => {
        match $call.await {
            Ok(r) => r.into_inner(),
            Err(status) => return refused($what, status),
        }
    };
}

pub async fn incident(args: IncidentArgs) -> anyhow::Result<u8> {
    let mut client = connect(&args.client).await?;
    match args.command {
        IncidentCommand::Open {
            title,
            severity,
            services,
            commander,
            responders,
            started,
            detected,
            summary,
            runs,
        } => {
            // One `now` for both, so `--started 10m --detected 8m` is exactly 2 minutes apart.
            let now = now_ms();
            let request = v1::OpenIncidentRequest {
                title,
                severity,
                started_unix_ms: started.map_or(0, |w| w.at(now)),
                detected_unix_ms: detected.map_or(0, |w| w.at(now)),
                commander: commander.unwrap_or_default(),
                responders,
                services,
                summary: summary.unwrap_or_default(),
                run_ids: runs,
            };
            let i = call!("opening the incident", client.open_incident(request));
            println!("incident {} opened ({}, {}): {}", i.id, i.severity, i.status, i.title);
        }
        IncidentCommand::Ack { id, note } => {
            let i = call!(
                "acknowledging the incident",
                client.ack_incident(v1::AckIncidentRequest { id, note: note.unwrap_or_default() })
            );
            println!("incident {} acknowledged by {} ({})", i.id, i.acknowledged_by, i.status);
        }
        IncidentCommand::Status { id, status, reopen, note } => {
            let request = v1::SetIncidentStatusRequest { id, status, reopen, note: note.unwrap_or_default() };
            let i = call!("changing the incident's status", client.set_incident_status(request));
            println!("incident {}: {}", i.id, i.status);
        }
        IncidentCommand::Note { id, text } => {
            let i =
                call!("adding the note", client.add_incident_note(v1::AddIncidentNoteRequest { id, text }));
            println!("incident {}: note added ({} timeline entries)", i.id, i.timeline.len());
        }
        IncidentCommand::Resolve { id, root_cause, note } => {
            let request = v1::ResolveIncidentRequest {
                id,
                root_cause: root_cause.unwrap_or_default(),
                note: note.unwrap_or_default(),
            };
            let i = call!("resolving the incident", client.resolve_incident(request));
            println!("incident {} resolved; time to recover {}", i.id, span(i.time_to_recover_ms));
        }
        IncidentCommand::Update {
            id,
            title,
            severity,
            commander,
            add_responders,
            remove_responders,
            add_services,
            remove_services,
            root_cause,
            action_items,
            done,
            link_runs,
        } => {
            let request = v1::UpdateIncidentRequest {
                id,
                title,
                severity,
                commander,
                add_responders,
                remove_responders,
                add_services,
                remove_services,
                root_cause,
                add_action_items: action_items.iter().map(|a| action_item(a)).collect(),
                done_action_items: done,
                link_run_ids: link_runs,
            };
            let i = call!("updating the incident", client.update_incident(request));
            println!("incident {} updated ({}, {})", i.id, i.severity, i.status);
        }
        IncidentCommand::List { status, severity, service, since, limit, json } => {
            let since_unix_ms = since.map_or(0, |age| now_ms() - age);
            let request = v1::ListIncidentsRequest {
                status: status.unwrap_or_default(),
                severity: severity.unwrap_or_default(),
                service: service.unwrap_or_default(),
                since_unix_ms,
                until_unix_ms: 0,
                limit,
            };
            let list = call!("listing incidents", client.list_incidents(request)).incidents;
            if json {
                let rows: Vec<Incident> = list.into_iter().map(incident_in).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<22} {:<5} {:<13} {:<19} {:>10} {:>10} {:<16} TITLE",
                    "ID", "SEV", "STATUS", "STARTED", "TTD", "TTR", "SERVICES"
                );
                for i in list {
                    println!(
                        "{:<22} {:<5} {:<13} {:<19} {:>10} {:>10} {:<16} {}",
                        i.id,
                        i.severity,
                        i.status,
                        time(i.started_unix_ms),
                        span(i.time_to_detect_ms),
                        span(i.time_to_recover_ms),
                        if i.services.is_empty() { "-".into() } else { i.services.join(",") },
                        i.title
                    );
                }
            }
        }
        IncidentCommand::Show { id, json } => {
            let i = incident_in(call!(
                "reading the incident",
                client.get_incident(v1::GetIncidentRequest { id })
            ));
            if json {
                println!("{}", serde_json::to_string_pretty(&i)?);
            } else {
                show(&i);
            }
        }
        IncidentCommand::Report { id, output, html } => {
            let i = incident_in(call!(
                "reading the incident",
                client.get_incident(v1::GetIncidentRequest { id })
            ));
            let runs = linked_runs(&args.client, &i).await?;
            let text = if html { report::html(&i, &runs) } else { report::markdown(&i, &runs) };
            match output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("incident review written to {}", path.display());
                }
                None => print!("{text}"),
            }
        }
        IncidentCommand::Stats { since, service, severity, json } => {
            let (age, since) = since;
            let request = v1::IncidentStatsRequest {
                since_unix_ms: now_ms() - age,
                until_unix_ms: 0,
                service: service.unwrap_or_default(),
                severity: severity.unwrap_or_default(),
            };
            let s = call!("reading incident stats", client.incident_stats(request));
            if json {
                println!("{}", serde_json::to_string_pretty(&stats_json(&s))?);
            } else {
                print_stats(&s, &since);
            }
        }
    }
    Ok(0)
}

/// `TEXT` or `TEXT @OWNER`.
fn action_item(arg: &str) -> v1::IncidentActionItem {
    match arg.rsplit_once(" @") {
        Some((text, owner)) if !owner.trim().is_empty() && !owner.contains(' ') => {
            v1::IncidentActionItem { text: text.trim().into(), owner: owner.trim().into(), done: false }
        }
        _ => v1::IncidentActionItem { text: arg.into(), owner: String::new(), done: false },
    }
}

fn span(ms: i64) -> String {
    if ms < 0 { "-".into() } else { human_ms(ms) }
}

/// The API's incident as the library's (for the review and JSON output).
fn incident_in(i: v1::Incident) -> Incident {
    let opt = |ms: i64| (ms != 0).then_some(ms);
    let text = |s: String| (!s.is_empty()).then_some(s);
    Incident {
        id: i.id,
        title: i.title,
        severity: i.severity.parse().unwrap_or(incident::Severity::Sev4),
        status: i.status.parse().unwrap_or(incident::Status::Investigating),
        started_ms: i.started_unix_ms,
        detected_ms: opt(i.detected_unix_ms),
        acknowledged_ms: opt(i.acknowledged_unix_ms),
        acknowledged_by: text(i.acknowledged_by),
        resolved_ms: opt(i.resolved_unix_ms),
        commander: text(i.commander),
        responders: i.responders,
        services: i.services,
        root_cause: text(i.root_cause),
        action_items: i
            .action_items
            .into_iter()
            .map(|a| ActionItem { text: a.text, owner: text(a.owner), done: a.done })
            .collect(),
        opened_by: i.opened_by,
        runs: i.run_ids,
        timeline: i
            .timeline
            .into_iter()
            .filter_map(|e| {
                Some(Entry {
                    at_ms: e.at_unix_ms,
                    author: e.author,
                    kind: e.kind.parse().ok()?,
                    text: e.text,
                })
            })
            .collect(),
    }
}

fn show(i: &Incident) {
    let opt_span = |ms: Option<i64>| ms.map_or_else(|| "-".to_string(), human_ms);
    println!("incident {}: {}", i.id, i.title);
    println!("  severity {}, status {}, opened by {}", i.severity, i.status, i.opened_by);
    let list = |l: &[String]| if l.is_empty() { "-".to_string() } else { l.join(", ") };
    println!("  services: {}", list(&i.services));
    println!("  commander: {}, responders: {}", i.commander.as_deref().unwrap_or("-"), list(&i.responders));
    let t = |ms: Option<i64>| time(ms.unwrap_or(0));
    println!(
        "  started {}, detected {}, acknowledged {}{}, resolved {}",
        time(i.started_ms),
        t(i.detected_ms),
        t(i.acknowledged_ms),
        i.acknowledged_by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default(),
        t(i.resolved_ms)
    );
    println!(
        "  time to detect {} (started → detected), to acknowledge {} (detected → acknowledged), to recover {} \
         (started → resolved)",
        opt_span(i.time_to_detect_ms()),
        opt_span(i.time_to_acknowledge_ms()),
        opt_span(i.time_to_recover_ms())
    );
    if !i.runs.is_empty() {
        println!("  runs: {}", i.runs.join(", "));
    }
    if let Some(rc) = &i.root_cause {
        println!("  root cause: {rc}");
    }
    for (n, a) in i.action_items.iter().enumerate() {
        let owner = a.owner.as_ref().map(|o| format!(" (owner {o})")).unwrap_or_default();
        println!("  action item {}: [{}] {}{owner}", n + 1, if a.done { "x" } else { " " }, a.text);
    }
    println!("timeline:");
    for e in &i.timeline {
        println!("  {}  {:<15} {:<16} {}", time(e.at_ms), e.kind.as_str(), e.author, e.text);
    }
}

/// The journals of the incident's runs, read from the controller (a run without one is listed without).
async fn linked_runs(args: &ClientArgs, i: &Incident) -> anyhow::Result<Vec<LinkedRun>> {
    if i.runs.is_empty() {
        return Ok(Vec::new());
    }
    let mut runs_client = args.connect().await?;
    let mut out = Vec::with_capacity(i.runs.len());
    for id in &i.runs {
        let journal = match runs_client.get_run(v1::GetRunRequest { id: id.clone() }).await {
            Ok(run) => {
                let json = run.into_inner().journal_json;
                if json.is_empty() {
                    None
                } else {
                    Some(
                        serde_json::from_str::<Journal>(&json)
                            .with_context(|| format!("reading the journal of run {id}"))?,
                    )
                }
            }
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => return Err(status_error(&format!("reading run {id}"), status)),
        };
        out.push(LinkedRun { id: id.clone(), journal });
    }
    Ok(out)
}

fn figure_json(f: Option<&v1::IncidentFigure>) -> serde_json::Value {
    let f = f.cloned().unwrap_or_default();
    if f.count == 0 {
        return serde_json::json!({"count": 0, "mean_ms": null, "p50_ms": null, "p90_ms": null});
    }
    serde_json::json!({"count": f.count, "mean_ms": f.mean_ms, "p50_ms": f.p50_ms, "p90_ms": f.p90_ms})
}

fn group_json(g: &v1::IncidentGroupStats) -> serde_json::Value {
    serde_json::json!({
        "name": g.name, "incidents": g.incidents, "open": g.open,
        "time_to_detect": figure_json(g.time_to_detect.as_ref()),
        "time_to_acknowledge": figure_json(g.time_to_acknowledge.as_ref()),
        "time_to_recover": figure_json(g.time_to_recover.as_ref()),
    })
}

fn stats_json(s: &v1::IncidentStatsResponse) -> serde_json::Value {
    serde_json::json!({
        "since_unix_ms": s.since_unix_ms,
        "until_unix_ms": s.until_unix_ms,
        "overall": s.overall.as_ref().map(group_json),
        "by_service": s.by_service.iter().map(group_json).collect::<Vec<_>>(),
        "by_severity": s.by_severity.iter().map(group_json).collect::<Vec<_>>(),
    })
}

fn print_stats(s: &v1::IncidentStatsResponse, since: &str) {
    println!("incidents started {} .. {} (last {since})", time(s.since_unix_ms), time(s.until_unix_ms));
    println!(
        "times: detect = started → detected, ack = detected → acknowledged, recover = started → resolved;"
    );
    println!("n = incidents with that time, p50/p90 by nearest rank");
    let fig = |f: &Option<v1::IncidentFigure>| match f {
        Some(f) if f.count > 0 => format!(
            "{:>3} {:>11} {:>11} {:>11}",
            f.count,
            human_ms(f.mean_ms.round() as i64),
            human_ms(f.p50_ms),
            human_ms(f.p90_ms)
        ),
        _ => format!("{:>3} {:>11} {:>11} {:>11}", 0, "-", "-", "-"),
    };
    let header = format!("{:>3} {:>11} {:>11} {:>11}", "n", "mean", "p50", "p90");
    println!(
        "{:<24} {:>5} {:>5} | detect {header} | ack {header} | recover {header}",
        "GROUP", "COUNT", "OPEN"
    );
    let row = |label: String, g: &v1::IncidentGroupStats| {
        println!(
            "{label:<24} {:>5} {:>5} |        {} |     {} |         {}",
            g.incidents,
            g.open,
            fig(&g.time_to_detect),
            fig(&g.time_to_acknowledge),
            fig(&g.time_to_recover)
        );
    };
    if let Some(all) = &s.overall {
        row("all".into(), all);
    }
    for g in &s.by_service {
        row(format!("service {}", g.name), g);
    }
    for g in &s.by_severity {
        row(format!("severity {}", g.name), g);
    }
}
