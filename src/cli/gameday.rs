//! `chaos gameday run|note|show|list|review|halt|check|schema`: game days through the controller. `run`
//! reads a plan and every experiment it names, starts the game day (the controller runs the scenarios),
//! streams its progress and writes the review (Markdown, HTML) at the end.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chaos_controller::gameday::plan;
use chaos_controller::gameday::review::{self, Review};
use chaos_proto::transport::WithToken;
use chaos_proto::v1::{self, game_day_service_client::GameDayServiceClient};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::client::{ClientArgs, status_error, time};

#[derive(clap::Args)]
pub struct GameDayArgs {
    #[command(subcommand)]
    command: GameDayCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Subcommand)]
enum GameDayCommand {
    /// Run a game-day plan through the controller: checks the plan and its experiments, starts it, follows
    /// its progress and writes the review. Exit 0 when every scenario passed, 1 when one did not (or the game
    /// day stopped on it), 2 for a bad plan, 3 when it was halted or interrupted.
    Run {
        plan: PathBuf,
        /// Write the review as Markdown here.
        #[arg(long, value_name = "FILE")]
        review: Option<PathBuf>,
        /// Write the review as a self-contained HTML page here.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Set a variable in every scenario (over the plan's `vars`); each experiment must define or use it.
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_override)]
        vars: Vec<(String, String)>,
    },
    /// Add a note to the running game day (or to --gameday ID); notes are kept in time order, append-only.
    Note {
        text: String,
        #[arg(long, value_name = "ID")]
        gameday: Option<String>,
        /// Who writes it (default: the API token's name).
        #[arg(long)]
        author: Option<String>,
    },
    /// One game day: state, scenarios with their runs and verdicts, notes.
    Show { id: String },
    /// Game days, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a game day's review: Markdown on stdout, or to --review FILE and/or --html FILE.
    Review {
        id: String,
        #[arg(long, value_name = "FILE")]
        review: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Halt a game day: its current run's faults are reverted and the scenarios left are skipped.
    Halt {
        id: String,
        #[arg(long, default_value = "halted from the command line")]
        reason: String,
    },
    /// Check a plan and every experiment it names, touching nothing (exit 0 valid, 2 invalid).
    Check {
        plan: PathBuf,
        /// As for `run`.
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_override)]
        vars: Vec<(String, String)>,
    },
    /// Print the JSON Schema of the game-day plan.
    Schema,
}

fn parse_override(arg: &str) -> Result<(String, String), String> {
    chaos_controller::experiment::parse_override(arg)
}

type Client = GameDayServiceClient<InterceptedService<Channel, WithToken>>;

async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    let (channel, interceptor) = args.channel().await?;
    Ok(GameDayServiceClient::with_interceptor(channel, interceptor)
        .max_decoding_message_size(super::client::MAX_REPLY)
        .max_encoding_message_size(super::client::MAX_REPLY))
}

pub async fn gameday(args: GameDayArgs) -> anyhow::Result<u8> {
    match args.command {
        GameDayCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&plan::json_schema())?);
            Ok(0)
        }
        GameDayCommand::Check { plan: path, vars } => match plan::load(&path, &vars) {
            Ok(loaded) => {
                println!(
                    "{}: ok ({} scenarios, {} experiments)",
                    path.display(),
                    loaded.plan.scenarios.len(),
                    loaded.experiments.len()
                );
                Ok(0)
            }
            Err(d) => {
                eprintln!("{d}");
                Ok(2)
            }
        },
        GameDayCommand::Run { plan: path, review, html, vars } => {
            run(&args.client, &path, &vars, review, html).await
        }
        GameDayCommand::Note { text, gameday, author } => {
            let mut client = connect(&args.client).await?;
            let request = v1::GameDayNoteRequest {
                gameday_id: gameday.unwrap_or_default(),
                author: author.unwrap_or_default(),
                text,
            };
            let r = client.game_day_note(request).await.map_err(|s| status_error("adding the note", s))?;
            let r = r.into_inner();
            let at = r.note.map_or(0, |n| n.at_unix_ms);
            println!("note added to {} at {}", r.gameday_id, time(at));
            Ok(0)
        }
        GameDayCommand::Show { id } => {
            let mut client = connect(&args.client).await?;
            let g = client
                .get_game_day(v1::GetGameDayRequest { id })
                .await
                .map_err(|s| status_error("reading the game day", s))?
                .into_inner();
            show(&g);
            Ok(0)
        }
        GameDayCommand::List { limit, json } => {
            let mut client = connect(&args.client).await?;
            let list = client
                .list_game_days(v1::ListGameDaysRequest { limit })
                .await
                .map_err(|s| status_error("listing game days", s))?
                .into_inner()
                .gamedays;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|g| {
                        serde_json::json!({"id": g.id, "title": g.title, "state": g.state,
                            "started": g.started_unix_ms, "finished": g.finished_unix_ms, "actor": g.actor,
                            "reason": g.reason, "scenarios": g.scenarios.iter().map(|s| serde_json::json!({
                                "name": s.name, "state": s.state, "run": s.run_id, "verdict": s.verdict})).collect::<Vec<_>>()})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<22} {:<12} {:<19} {:<9} TITLE", "ID", "STATE", "STARTED", "PASSED");
                for g in list {
                    let passed = g.scenarios.iter().filter(|s| s.verdict == "passed").count();
                    println!(
                        "{:<22} {:<12} {:<19} {:<9} {}",
                        g.id,
                        g.state,
                        time(g.started_unix_ms),
                        format!("{passed}/{}", g.scenarios.len()),
                        g.title
                    );
                }
            }
            Ok(0)
        }
        GameDayCommand::Review { id, review, html } => {
            let mut client = connect(&args.client).await?;
            let r = fetch_review(&mut client, &id).await?;
            write_review(&r, review.as_deref(), html.as_deref(), true)?;
            Ok(0)
        }
        GameDayCommand::Halt { id, reason } => {
            let mut client = connect(&args.client).await?;
            let g = client
                .halt_game_day(v1::HaltGameDayRequest { id, reason })
                .await
                .map_err(|s| status_error("halting the game day", s))?
                .into_inner();
            println!("game day {}: {}{}", g.id, g.state, reason_suffix(&g.reason));
            Ok(0)
        }
    }
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() { String::new() } else { format!(" ({reason})") }
}

fn show(g: &v1::GameDay) {
    println!("game day: {}\ntitle: {}\nstate: {}{}", g.id, g.title, g.state, reason_suffix(&g.reason));
    println!("started: {} by {}\nfinished: {}", time(g.started_unix_ms), g.actor, time(g.finished_unix_ms));
    println!("scenarios:");
    for (i, s) in g.scenarios.iter().enumerate() {
        let run = if s.run_id.is_empty() { "-" } else { s.run_id.as_str() };
        println!("  {}. {:<30} {:<12} {:<13} run {run}", i + 1, s.name, s.state, s.verdict);
        for reason in &s.reasons {
            println!("       {reason}");
        }
    }
    if !g.notes.is_empty() {
        println!("notes:");
        for n in &g.notes {
            println!("  {} {}: {}", time(n.at_unix_ms), n.author, n.text);
        }
    }
}

async fn fetch_review(client: &mut Client, id: &str) -> anyhow::Result<Review> {
    let g = client
        .get_game_day(v1::GetGameDayRequest { id: id.to_string() })
        .await
        .map_err(|s| status_error("reading the game day", s))?
        .into_inner();
    serde_json::from_str(&g.review_json).context("reading the game day's review data")
}

/// Writes the review where asked; Markdown on stdout when nowhere is asked and `stdout_default`.
fn write_review(
    r: &Review,
    md: Option<&Path>,
    html: Option<&Path>,
    stdout_default: bool,
) -> anyhow::Result<()> {
    if let Some(path) = md {
        std::fs::write(path, review::render_markdown(r))
            .with_context(|| format!("writing the review to {}", path.display()))?;
        eprintln!("review: {}", path.display());
    }
    if let Some(path) = html {
        std::fs::write(path, review::render_html(r))
            .with_context(|| format!("writing the HTML review to {}", path.display()))?;
        eprintln!("HTML review: {}", path.display());
    }
    if md.is_none() && html.is_none() && stdout_default {
        print!("{}", review::render_markdown(r));
    }
    Ok(())
}

async fn run(
    args: &ClientArgs,
    path: &Path,
    vars: &[(String, String)],
    md: Option<PathBuf>,
    html: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let loaded = match plan::load(path, vars) {
        Ok(loaded) => loaded,
        Err(d) => {
            eprintln!("{d}");
            return Ok(2);
        }
    };
    let mut client = connect(args).await?;
    let request = v1::StartGameDayRequest {
        file: loaded.file.clone(),
        plan: loaded.source.clone(),
        experiments: loaded
            .experiments
            .iter()
            .map(|e| v1::GameDayExperiment {
                path: e.path.clone(),
                file: e.file.clone(),
                source: e.source.clone(),
            })
            .collect(),
        vars: vars.iter().cloned().collect(),
    };
    let started = match client.start_game_day(request).await {
        Ok(g) => g.into_inner(),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            eprintln!("{}", s.message());
            return Ok(2);
        }
        Err(s) => return Err(status_error("starting the game day", s)),
    };
    println!("game day {} started: {}", started.id, started.title);
    let mut stream = client
        .watch_game_day(v1::WatchGameDayRequest { id: started.id.clone() })
        .await
        .map_err(|s| status_error("watching the game day", s))?
        .into_inner();
    let mut last: Option<v1::GameDay> = None;
    while let Some(event) = stream.message().await.map_err(|s| status_error("watching the game day", s))? {
        println!("[{}] {}", time(event.at_unix_ms), event.line);
        if event.kind == "finished" {
            last = event.gameday;
            break;
        }
    }
    let Some(g) = last else {
        eprintln!("the controller stopped sending the game day's progress before it ended");
        return Ok(3);
    };
    for (i, s) in g.scenarios.iter().enumerate() {
        println!("  {}. {}: {}", i + 1, s.name, if s.verdict.is_empty() { &s.state } else { &s.verdict });
    }
    let r = fetch_review(&mut client, &g.id).await?;
    write_review(&r, md.as_deref(), html.as_deref(), false)?;
    let all_passed = g.scenarios.iter().all(|s| s.verdict == "passed");
    Ok(match g.state.as_str() {
        "completed" if all_passed => 0,
        "completed" | "stopped" => 1,
        _ => 3,
    })
}
