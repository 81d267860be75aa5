//! `chaos proxies` (alias `chaos tp`): a toxiproxy-cli work-alike for any Toxiproxy-compatible admin API.
//!
//! Commands, aliases, flags and output lines follow toxiproxy-cli 2.x so scripts written for it keep working;
//! `--json` on `list` and `inspect` prints the server's JSON for scripts that would rather parse that. Results
//! go to stdout, hints to stderr; every failure is an error naming the server and the API's own error text.
//!
//! Deliberate deviations from toxiproxy-cli: `--host` has no `-h` short form (clap keeps `-h` for help);
//! `toxic update` without `--toxicity` keeps the current toxicity instead of resetting it to 1; toxic update
//! and remove require `--toxicName`; `key=value` attributes without `=` are an error instead of being skipped;
//! inspect prints large attribute values as plain integers (`1000000`, not Go's `1e+06`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};

use anyhow::anyhow;
use chaos_proxy::client::{
    Client, ClientError, NewProxy, NewToxic, Proxy, ProxyUpdate, Stream, Toxic, ToxicUpdate,
};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Number, Value};

/// Talk to a Toxiproxy-compatible admin API (`chaos proxy` or a real Toxiproxy).
#[derive(Debug, Args)]
pub struct ProxiesArgs {
    /// Admin API of the server, as `http://host:port` or `host:port` (no `-h` short form: that is help).
    #[arg(
        long,
        global = true,
        env = "TOXIPROXY_URL",
        default_value = "http://localhost:8474",
        value_name = "URL"
    )]
    pub host: String,

    #[command(subcommand)]
    pub command: ProxiesCommand,
}

/// The toxiproxy-cli commands.
#[derive(Debug, Subcommand)]
pub enum ProxiesCommand {
    /// List all proxies: name, listen, upstream, enabled|disabled, number of toxics.
    #[command(visible_aliases = ["l", "li", "ls"])]
    List {
        /// Print the server's JSON (an object keyed by proxy name) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Show one proxy and its toxics, one toxic per line.
    #[command(visible_aliases = ["i", "ins"])]
    Inspect {
        /// Name of the proxy.
        proxy: String,
        /// Print the server's JSON for the proxy instead of the text form.
        #[arg(long)]
        json: bool,
    },
    /// Create a new proxy.
    #[command(visible_aliases = ["c", "new"])]
    Create {
        /// Name of the new proxy.
        proxy: String,
        /// Address the proxy listens on, e.g. `127.0.0.1:26379` (port 0 lets the server pick one).
        #[arg(short, long, value_name = "ADDR")]
        listen: String,
        /// Address the proxy forwards to, e.g. `localhost:6379`.
        #[arg(short, long, value_name = "ADDR")]
        upstream: String,
    },
    /// Enable a disabled proxy or disable an enabled one (disabling closes its listener and connections).
    #[command(visible_alias = "tog")]
    Toggle {
        /// Name of the proxy.
        proxy: String,
    },
    /// Delete a proxy, closing its connections and dropping its toxics.
    #[command(visible_alias = "d")]
    Delete {
        /// Name of the proxy.
        proxy: String,
    },
    /// Add, update or remove a toxic.
    #[command(visible_alias = "t", subcommand)]
    Toxic(ToxicCommand),
}

/// `toxic` subcommands.
#[derive(Debug, Subcommand)]
pub enum ToxicCommand {
    /// Add a toxic to a proxy, e.g. `toxic add -t latency -a latency=100 -a jitter=10 redis`.
    #[command(visible_alias = "a")]
    Add(AddToxicArgs),
    /// Change a toxic's attributes and/or toxicity, e.g. `toxic update -n latency_downstream -a jitter=25 redis`.
    ///
    /// Attributes not given keep their values. Unlike toxiproxy-cli, which resets an omitted toxicity to 1.0,
    /// an omitted --toxicity keeps the toxic's current toxicity.
    #[command(visible_alias = "u")]
    #[command(group = ArgGroup::new("change").required(true).multiple(true).args(["toxicity", "attributes", "ttl"]))]
    Update(UpdateToxicArgs),
    /// Remove a toxic from a proxy.
    #[command(visible_aliases = ["r", "delete", "d"])]
    Remove(RemoveToxicArgs),
}

/// Flags of `toxic add`.
#[derive(Debug, Args)]
pub struct AddToxicArgs {
    /// Name of the proxy.
    pub proxy: String,
    /// Toxic type: latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, noop (or any type
    /// the server knows).
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub toxic_type: String,
    /// Name of the toxic [default: <type>_<stream>, chosen by the server].
    #[arg(short = 'n', long = "toxicName", visible_alias = "name", value_name = "NAME")]
    pub name: Option<String>,
    /// Probability between 0 and 1 that the toxic applies to a connection [default: 1].
    #[arg(long = "toxicity", visible_alias = "tox", value_name = "P", value_parser = parse_toxicity)]
    pub toxicity: Option<f32>,
    /// Toxic attribute as key=value, repeatable (`-a latency=100 -a jitter=10`); numbers are sent as JSON
    /// numbers, anything else as a string.
    #[arg(short = 'a', long = "attribute", value_name = "KEY=VALUE", value_parser = parse_attribute)]
    pub attributes: Vec<(String, Value)>,
    /// Apply the toxic to data from the client to the upstream.
    #[arg(short = 'u', long, conflicts_with = "downstream")]
    pub upstream: bool,
    /// Apply the toxic to data from the upstream back to the client (the default).
    #[arg(short = 'd', long)]
    pub downstream: bool,
    /// Remove the toxic by itself after this many milliseconds (chaos extension: a real Toxiproxy ignores it).
    #[arg(long, value_name = "MS")]
    pub ttl: Option<u64>,
}

/// Flags of `toxic update`.
#[derive(Debug, Args)]
pub struct UpdateToxicArgs {
    /// Name of the proxy.
    pub proxy: String,
    /// Name of the toxic to change.
    #[arg(short = 'n', long = "toxicName", visible_alias = "name", value_name = "NAME")]
    pub name: String,
    /// New probability between 0 and 1; when omitted the current toxicity is kept (toxiproxy-cli resets it to 1).
    #[arg(long = "toxicity", visible_alias = "tox", value_name = "P", value_parser = parse_toxicity)]
    pub toxicity: Option<f32>,
    /// Attribute to change as key=value, repeatable; attributes not given keep their values.
    #[arg(short = 'a', long = "attribute", value_name = "KEY=VALUE", value_parser = parse_attribute)]
    pub attributes: Vec<(String, Value)>,
    /// Remove the toxic by itself this many milliseconds from now (chaos extension: a real Toxiproxy ignores
    /// it).
    #[arg(long, value_name = "MS")]
    pub ttl: Option<u64>,
}

/// Flags of `toxic remove`.
#[derive(Debug, Args)]
pub struct RemoveToxicArgs {
    /// Name of the proxy.
    pub proxy: String,
    /// Name of the toxic to remove.
    #[arg(short = 'n', long = "toxicName", visible_alias = "name", value_name = "NAME")]
    pub name: String,
}

/// Runs one `chaos proxies` command against the server named by `--host`.
pub async fn run(args: ProxiesArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.host).map_err(|e| anyhow!("{e} (set by --host or TOXIPROXY_URL)"))?;
    let tty = std::io::stdout().is_terminal();
    let output = execute(&client, args.command, tty).await?;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(output.text.as_bytes()).and_then(|()| stdout.flush()) {
        // A reader that stopped early (`| head`) is not a failure of the command.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(anyhow!("cannot write to stdout: {e}")),
        Ok(()) => {}
    }
    drop(stdout);
    if let Some(hint) = output.hint.filter(|_| tty) {
        eprintln!("\nHint: {hint}");
    }
    Ok(())
}

/// What a command prints: results for stdout, and a hint for stderr that only a terminal user sees.
struct Printed {
    text: String,
    hint: Option<&'static str>,
}

impl From<String> for Printed {
    fn from(text: String) -> Printed {
        Printed { text, hint: None }
    }
}

/// Performs the command and returns what to print on stdout.
async fn execute(client: &Client, command: ProxiesCommand, tty: bool) -> anyhow::Result<Printed> {
    let server = client.base_url();
    let fail = |action: String| move |err: ClientError| failure(&action, server, err);
    match command {
        ProxiesCommand::List { json: true } => {
            let value = client.get_json("/proxies").await.map_err(fail("cannot list proxies".into()))?;
            Ok(pretty(&value).into())
        }
        ProxiesCommand::List { json: false } => {
            let proxies = client.proxies().await.map_err(fail("cannot list proxies".into()))?;
            let hint = if proxies.is_empty() {
                "create a proxy with `chaos proxies create`"
            } else {
                "inspect toxics with `chaos proxies inspect <proxy>`"
            };
            Ok(Printed { text: render_list(&proxies, tty), hint: Some(hint) })
        }
        ProxiesCommand::Inspect { proxy, json } => {
            let action = format!("cannot inspect proxy '{proxy}'");
            if json {
                let value = client.proxy_json(&proxy).await.map_err(fail(action))?;
                return Ok(pretty(&value).into());
            }
            let found = client.proxy(&proxy).await.map_err(fail(action))?;
            Ok(Printed {
                text: render_inspect(&found, tty),
                hint: Some("add a toxic with `chaos proxies toxic add`"),
            })
        }
        ProxiesCommand::Create { proxy, listen, upstream } => {
            let new = NewProxy {
                name: proxy.clone(),
                listen: Some(listen),
                upstream,
                enabled: None,
                half_close: None,
            };
            client.create_proxy(&new).await.map_err(fail(format!("cannot create proxy '{proxy}'")))?;
            Ok(Printed::from(format!("Created new proxy {proxy}\n")))
        }
        ProxiesCommand::Toggle { proxy } => {
            let action = format!("cannot toggle proxy '{proxy}'");
            let current = client.proxy(&proxy).await.map_err(fail(action.clone()))?;
            let update = ProxyUpdate { enabled: Some(!current.enabled), ..ProxyUpdate::default() };
            let updated = client.update_proxy(&proxy, &update).await.map_err(fail(action))?;
            Ok(Printed::from(format!("Proxy {proxy} is now {}\n", enabled_text(updated.enabled))))
        }
        ProxiesCommand::Delete { proxy } => {
            client.delete_proxy(&proxy).await.map_err(fail(format!("cannot delete proxy '{proxy}'")))?;
            Ok(Printed::from(format!("Deleted proxy {proxy}\n")))
        }
        ProxiesCommand::Toxic(ToxicCommand::Add(add)) => {
            let new = NewToxic {
                name: add.name,
                r#type: add.toxic_type,
                stream: Some(if add.upstream { Stream::Upstream } else { Stream::Downstream }),
                toxicity: add.toxicity,
                attributes: add.attributes.into_iter().collect(),
                ttl: add.ttl,
            };
            let action = format!("cannot add {} toxic to proxy '{}'", new.r#type, add.proxy);
            let toxic = client.add_toxic(&add.proxy, &new).await.map_err(fail(action))?;
            Ok(Printed::from(format!(
                "Added {} {} toxic '{}' on proxy '{}'\n",
                toxic.stream, toxic.r#type, toxic.name, add.proxy
            )))
        }
        ProxiesCommand::Toxic(ToxicCommand::Update(update)) => {
            let change = ToxicUpdate {
                toxicity: update.toxicity,
                attributes: update.attributes.into_iter().collect(),
                ttl: update.ttl,
            };
            let action = format!("cannot update toxic '{}' on proxy '{}'", update.name, update.proxy);
            let toxic =
                client.update_toxic(&update.proxy, &update.name, &change).await.map_err(fail(action))?;
            Ok(Printed::from(format!("Updated toxic '{}' on proxy '{}'\n", toxic.name, update.proxy)))
        }
        ProxiesCommand::Toxic(ToxicCommand::Remove(remove)) => {
            let action = format!("cannot remove toxic '{}' from proxy '{}'", remove.name, remove.proxy);
            client.remove_toxic(&remove.proxy, &remove.name).await.map_err(fail(action))?;
            Ok(Printed::from(format!("Removed toxic '{}' on proxy '{}'\n", remove.name, remove.proxy)))
        }
    }
}

/// One error line: what failed, on which server, and why (the API's own text when it answered).
fn failure(action: &str, server: &str, err: ClientError) -> anyhow::Error {
    match err {
        ClientError::Http { .. } | ClientError::Timeout { .. } => anyhow!(
            "{action} on {server}: {err} (is the server running? set its address with --host or TOXIPROXY_URL)"
        ),
        _ => anyhow!("{action} on {server}: {err}"),
    }
}

/// `list`: toxiproxy-cli's tab-separated lines when piped, an aligned table with a header on a terminal.
fn render_list(proxies: &BTreeMap<String, Proxy>, tty: bool) -> String {
    let rows: Vec<[String; 5]> = proxies
        .values()
        .map(|p| {
            let toxics = match (p.toxics.len(), tty) {
                (0, true) => String::from("None"),
                (n, _) => n.to_string(),
            };
            [p.name.clone(), p.listen.clone(), p.upstream.clone(), enabled_text(p.enabled).into(), toxics]
        })
        .collect();
    if !tty {
        return rows.iter().map(|row| format!("{}\n", row.join("\t"))).collect();
    }
    let header = ["Name", "Listen", "Upstream", "Enabled", "Toxics"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: &[String; 5]| {
        let mut text = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}   ");
            }
        }
        text.push('\n');
        text
    };
    let mut out = line(&header);
    out.push_str(&"=".repeat(widths.iter().sum::<usize>() + 3 * (widths.len() - 1)));
    out.push('\n');
    if rows.is_empty() {
        out.push_str("no proxies\n");
    }
    out.extend(rows.iter().map(line));
    out
}

/// `inspect`: one line per toxic when piped (toxiproxy-cli's format); grouped by stream on a terminal.
fn render_inspect(proxy: &Proxy, tty: bool) -> String {
    if !tty {
        return proxy.toxics.iter().map(|t| toxic_line(t, false)).collect();
    }
    let mut out = format!(
        "Name: {}\tListen: {}\tUpstream: {}\tEnabled: {}\n{}\n",
        proxy.name,
        proxy.listen,
        proxy.upstream,
        enabled_text(proxy.enabled),
        "=".repeat(70)
    );
    if proxy.toxics.is_empty() {
        out.push_str("Proxy has no toxics enabled.\n");
        return out;
    }
    for (i, (stream, title)) in
        [(Stream::Upstream, "Upstream"), (Stream::Downstream, "Downstream")].into_iter().enumerate()
    {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{title} toxics:");
        let mut any = false;
        for toxic in proxy.toxics.iter().filter(|t| t.stream == stream) {
            out.push_str(&toxic_line(toxic, true));
            any = true;
        }
        if !any {
            let _ = writeln!(out, "Proxy has no {title} toxics enabled.");
        }
    }
    out
}

/// `name\ttype=..\tstream=..\ttoxicity=0.50\tattributes=[\tk=v\t]`, attributes sorted by key.
fn toxic_line(toxic: &Toxic, tty: bool) -> String {
    let mut line = if tty { format!("{}:\t", toxic.name) } else { format!("{}\t", toxic.name) };
    let _ = write!(
        line,
        "type={}\tstream={}\ttoxicity={:.2}\tattributes=[",
        toxic.r#type, toxic.stream, toxic.toxicity
    );
    let sorted: BTreeMap<&String, &Value> = toxic.attributes.iter().collect();
    for (key, value) in sorted {
        let _ = write!(line, "\t{key}={}", attribute_text(value));
    }
    line.push_str("\t]");
    if let (true, Some(ttl)) = (tty, toxic.ttl) {
        let _ = write!(line, "\tttl={ttl}ms");
    }
    line.push('\n');
    line
}

/// Strings bare, everything else as JSON.
fn attribute_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn enabled_text(enabled: bool) -> &'static str {
    if enabled { "enabled" } else { "disabled" }
}

fn pretty(value: &Value) -> String {
    // Serialising a `Value` cannot fail: its keys are strings and its numbers finite.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

/// `--toxicity`: a float in [0, 1], as toxiproxy-cli checks.
fn parse_toxicity(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("toxicity should be a float between 0 and 1, found {text:?}")),
    }
}

/// `--attribute key=value`: integers stay integers (toxic attributes are integers on the server), other
/// finite numbers become JSON floats, anything else a string.
fn parse_attribute(text: &str) -> Result<(String, Value), String> {
    let Some((key, raw)) = text.split_once('=') else {
        return Err(format!("expected key=value, found {text:?}"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("expected a key before '=', found {text:?}"));
    }
    Ok((key.to_owned(), attribute_value(raw.trim())))
}

fn attribute_value(raw: &str) -> Value {
    if let Ok(n) = raw.parse::<i64>() {
        return Value::Number(n.into());
    }
    if let Ok(n) = raw.parse::<u64>() {
        return Value::Number(n.into());
    }
    match raw.parse::<f64>() {
        // `1e3` means the integer 1000, as toxiproxy-cli (Go floats marshal without a fraction) sends it.
        // The bound keeps the conversion exact.
        Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
            #[allow(clippy::cast_possible_truncation)]
            let n = f as i64;
            Value::Number(n.into())
        }
        Ok(f) => Number::from_f64(f).map_or_else(|| Value::String(raw.to_owned()), Value::Number),
        Err(_) => Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};
    use serde_json::json;

    /// A stand-in for the root binary's parser, so the tests see the flags as `chaos proxies` users do.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProxiesArgs,
    }

    fn parse(argv: &[&str]) -> Result<ProxiesArgs, clap::Error> {
        let matches =
            Cli::command().try_get_matches_from(std::iter::once("tp").chain(argv.iter().copied()))?;
        Cli::from_arg_matches(&matches).map(|cli| cli.args)
    }

    fn proxy(name: &str, enabled: bool, toxics: Vec<Toxic>) -> Proxy {
        Proxy {
            name: name.into(),
            listen: "127.0.0.1:26379".into(),
            upstream: "localhost:6379".into(),
            enabled,
            half_close: false,
            lease_ms: None,
            owner: None,
            toxics,
        }
    }

    fn latency(stream: Stream) -> Toxic {
        Toxic {
            name: format!("latency_{stream}"),
            r#type: "latency".into(),
            stream,
            toxicity: 0.5,
            attributes: json!({"latency": 1000, "jitter": 0}).as_object().unwrap().clone(),
            ttl: None,
        }
    }

    #[test]
    fn the_command_tree_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn aliases_and_flags_follow_toxiproxy_cli() {
        let args = parse(&["--host", "h:1", "t", "a", "-t", "latency", "-n", "x", "--tox", "0.5", "-u", "p"])
            .unwrap();
        assert_eq!(args.host, "h:1");
        let ProxiesCommand::Toxic(ToxicCommand::Add(add)) = args.command else { panic!("{args:?}") };
        assert_eq!(
            (add.toxic_type.as_str(), add.name.as_deref(), add.toxicity),
            ("latency", Some("x"), Some(0.5))
        );
        assert!(add.upstream && !add.downstream);

        for alias in ["l", "li", "ls", "list"] {
            assert!(matches!(parse(&[alias]).unwrap().command, ProxiesCommand::List { json: false }));
        }
        // --host is global: it may follow the subcommand too.
        assert_eq!(parse(&["ls", "--host", "h:2"]).unwrap().host, "h:2");
        let remove = parse(&["toxic", "d", "--toxicName", "x", "p"]).unwrap();
        assert!(matches!(remove.command, ProxiesCommand::Toxic(ToxicCommand::Remove(_))));
        assert!(parse(&["new", "p", "-l", "127.0.0.1:0", "-u", "127.0.0.1:1"]).is_ok());
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&["toxic", "add", "-t", "latency", "-u", "-d", "p"]).is_err());
        assert!(parse(&["toxic", "add", "-t", "latency", "--tox", "1.5", "p"]).is_err());
        assert!(parse(&["toxic", "add", "-t", "latency", "-a", "latency", "p"]).is_err());
        // An update must change something.
        assert!(parse(&["toxic", "update", "-n", "x", "p"]).is_err());
        assert!(parse(&["toxic", "update", "-n", "x", "--tox", "0", "p"]).is_ok());
        assert!(parse(&["create", "p", "-l", "127.0.0.1:0"]).is_err());
    }

    #[test]
    fn attributes_become_typed_json() {
        let cases = [
            ("latency=100", json!(100)),
            ("rate=-1", json!(-1)),
            ("bytes=1e3", json!(1000)),
            ("x=0.25", json!(0.25)),
            ("mode=fast", json!("fast")),
            ("nan=NaN", json!("NaN")),
            ("empty=", json!("")),
            ("big=18446744073709551615", json!(18_446_744_073_709_551_615u64)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_attribute(text).unwrap().1, expected, "{text}");
        }
        assert!(parse_attribute("=1").is_err());
        assert!(parse_attribute("latency").is_err());
    }

    #[test]
    fn piped_list_is_tab_separated_like_toxiproxy_cli() {
        let proxies = BTreeMap::from([
            ("b".to_owned(), proxy("b", false, vec![])),
            ("a".to_owned(), proxy("a", true, vec![latency(Stream::Downstream)])),
        ]);
        assert_eq!(
            render_list(&proxies, false),
            "a\t127.0.0.1:26379\tlocalhost:6379\tenabled\t1\nb\t127.0.0.1:26379\tlocalhost:6379\tdisabled\t0\n"
        );
        assert_eq!(render_list(&BTreeMap::new(), false), "");
    }

    #[test]
    fn terminal_list_is_an_aligned_table() {
        let proxies = BTreeMap::from([("redis".to_owned(), proxy("redis", true, vec![]))]);
        let table = render_list(&proxies, true);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "Name    Listen            Upstream         Enabled   Toxics");
        assert_eq!(lines[2], "redis   127.0.0.1:26379   localhost:6379   enabled   None");
        assert!(lines[1].chars().all(|c| c == '=') && lines[1].len() == lines[0].len());
        assert!(render_list(&BTreeMap::new(), true).ends_with("no proxies\n"));
    }

    #[test]
    fn piped_inspect_prints_one_line_per_toxic() {
        let p = proxy("redis", true, vec![latency(Stream::Upstream), latency(Stream::Downstream)]);
        assert_eq!(
            render_inspect(&p, false),
            "latency_upstream\ttype=latency\tstream=upstream\ttoxicity=0.50\tattributes=[\tjitter=0\tlatency=1000\t]\n\
             latency_downstream\ttype=latency\tstream=downstream\ttoxicity=0.50\tattributes=[\tjitter=0\tlatency=1000\t]\n"
        );
        assert_eq!(render_inspect(&proxy("redis", true, vec![]), false), "");
    }

    #[test]
    fn terminal_inspect_groups_toxics_by_stream() {
        let text = render_inspect(&proxy("redis", true, vec![latency(Stream::Downstream)]), true);
        assert!(text.starts_with(
            "Name: redis\tListen: 127.0.0.1:26379\tUpstream: localhost:6379\tEnabled: enabled\n"
        ));
        assert!(
            text.contains("Upstream toxics:\nProxy has no Upstream toxics enabled.\n\nDownstream toxics:\n")
        );
        assert!(text.contains("latency_downstream:\ttype=latency"));
        assert!(
            render_inspect(&proxy("redis", true, vec![]), true).ends_with("Proxy has no toxics enabled.\n")
        );
    }

    #[test]
    fn errors_name_the_server_and_the_api_text() {
        let err = failure(
            "cannot inspect proxy 'x'",
            "http://127.0.0.1:8474",
            ClientError::Api { status: 404, message: "proxy not found".into() },
        );
        assert_eq!(
            err.to_string(),
            "cannot inspect proxy 'x' on http://127.0.0.1:8474: proxy not found (http 404)"
        );
    }
}
