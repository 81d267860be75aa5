//! The notification channels file (`chaos controller --notify FILE`): YAML or JSON, read into a
//! [`NotifyConfig`]. Every problem is reported at `file:line:column` and the whole file is refused; unknown keys
//! are refused. Secrets (a webhook's HMAC key, a PagerDuty routing key, a Slack or webhook URL) may be written
//! inline or read from the controller's environment (`secret_env:`, `routing_key_env:`, `url_env:`); they are
//! held in [`Secret`], whose `Debug` never shows them, and are never logged or stored.
//!
//! ```yaml
//! channels:
//!   - name: ops-hook
//!     kind: webhook            # webhook | slack | pagerduty
//!     url: https://hooks.example.com/chaos
//!     secret_env: CHAOS_HOOK_SECRET
//!     events: [run_failed, guardrail_tripped, halt_all, incident]   # default: all
//!     timeout: 5s
//!     retries: 3
//!     backoff: 1s
//!     max_backoff: 30s
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::experiment::node::{self, Node, Pos, Value};
use crate::experiment::{Diagnostic, Diagnostics, is_json};

/// The largest channels file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The most channels one controller sends to.
pub const MAX_CHANNELS: usize = 64;
/// The most retries a channel may ask for (attempts are one more).
pub const MAX_RETRIES: u32 = 20;
/// PagerDuty's Events API v2 endpoint, unless a channel says otherwise.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Every channel of a controller. The default has none: nothing is sent.
#[derive(Clone, Debug, Default)]
pub struct NotifyConfig {
    pub channels: Vec<Channel>,
    /// Seeds the retry jitter, so a test can replay it; `None` seeds from the system.
    pub seed: Option<u64>,
}

/// One channel: where it sends, which events, and how hard it tries.
#[derive(Clone, Debug)]
pub struct Channel {
    /// Unique within the file: `[A-Za-z0-9_.-]`, 1 to 64 characters.
    pub name: String,
    pub kind: ChannelKind,
    /// The events it takes; all when the file does not say.
    pub events: BTreeSet<EventKind>,
    /// One attempt's deadline: connect, send and the whole answer.
    pub timeout: Duration,
    /// How many times a failed attempt is repeated (0: one attempt only).
    pub retries: u32,
    /// The wait before the first retry; doubled for each next one, up to `max_backoff`, with jitter.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

/// A channel's kind and its own settings.
#[derive(Clone, Debug)]
pub enum ChannelKind {
    /// A JSON POST of the event, signed with HMAC-SHA256 when `secret` is set.
    Webhook { url: Secret, secret: Option<Secret> },
    /// A Slack incoming webhook (`text` plus blocks).
    Slack { url: Secret },
    /// PagerDuty Events API v2.
    PagerDuty { url: Secret, routing_key: Secret, source: String, component: Option<String> },
}

impl ChannelKind {
    /// `webhook`, `slack` or `pagerduty`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::PagerDuty { .. } => "pagerduty",
        }
    }

    /// The URL deliveries are POSTed to.
    pub fn url(&self) -> &Secret {
        match self {
            ChannelKind::Webhook { url, .. }
            | ChannelKind::Slack { url }
            | ChannelKind::PagerDuty { url, .. } => url,
        }
    }
}

impl Channel {
    /// Whether this channel takes events of `kind` (a test message goes to every channel asked).
    pub fn takes(&self, kind: EventKind) -> bool {
        kind == EventKind::Test || self.events.contains(&kind)
    }

    /// Where it sends, for listings: scheme, host and port only (a Slack URL's path is its secret).
    pub fn target(&self) -> String {
        let url = self.kind.url().expose();
        match url.parse::<::http::Uri>() {
            Ok(uri) => format!(
                "{}://{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""))
            ),
            Err(_) => "(invalid url)".to_string(),
        }
    }
}

/// A value never shown: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The kinds of events a channel can take (its `events:` list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    IncidentOpened,
    IncidentUpdated,
    IncidentResolved,
    RunFailed,
    GuardrailTripped,
    HaltAll,
    Freeze,
    Unfreeze,
    Test,
}

impl EventKind {
    /// Every kind a channel may list (`test` is always taken).
    pub const LISTABLE: [EventKind; 8] = [
        EventKind::IncidentOpened,
        EventKind::IncidentUpdated,
        EventKind::IncidentResolved,
        EventKind::RunFailed,
        EventKind::GuardrailTripped,
        EventKind::HaltAll,
        EventKind::Freeze,
        EventKind::Unfreeze,
    ];

    /// Its name in the file, the payloads and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::IncidentOpened => "incident_opened",
            EventKind::IncidentUpdated => "incident_updated",
            EventKind::IncidentResolved => "incident_resolved",
            EventKind::RunFailed => "run_failed",
            EventKind::GuardrailTripped => "guardrail_tripped",
            EventKind::HaltAll => "halt_all",
            EventKind::Freeze => "freeze",
            EventKind::Unfreeze => "unfreeze",
            EventKind::Test => "test",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Reads and checks a channels file, secrets from the process environment.
pub fn load(path: &Path) -> Result<NotifyConfig, Diagnostics> {
    let name = path.display().to_string();
    let cannot =
        |message: String| Diagnostics(vec![Diagnostic { file: name.clone(), line: 0, column: 0, message }]);
    let size = std::fs::metadata(path).map_err(|e| cannot(format!("cannot read: {e}")))?.len();
    if size > MAX_FILE_BYTES {
        return Err(cannot(format!(
            "file is {size} bytes, larger than the {MAX_FILE_BYTES} a channels file may be"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| cannot(format!("cannot read: {e}")))?;
    parse(&name, &text, &|var| std::env::var(var).ok())
}

/// Reads the channels file `text`; `name` names it in diagnostics; `env` looks up the `*_env:` variables.
pub fn parse(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<NotifyConfig, Diagnostics> {
    let diagnostic = |(pos, message): (Pos, String)| Diagnostic {
        file: name.to_string(),
        line: pos.line,
        column: pos.column,
        message,
    };
    let root = if is_json(name, text) { node::from_json(text) } else { node::from_yaml(text) }
        .map_err(|e| Diagnostics(vec![diagnostic((e.pos, e.message))]))?;
    let mut problems = Vec::new();
    let channels = read_root(&root, env, &mut problems);
    if problems.is_empty() {
        Ok(NotifyConfig { channels, seed: None })
    } else {
        problems.sort_by_key(|(pos, _)| *pos);
        Err(Diagnostics(problems.into_iter().map(diagnostic).collect()))
    }
}

type Problems = Vec<(Pos, String)>;

fn read_root(root: &Node, env: &dyn Fn(&str) -> Option<String>, problems: &mut Problems) -> Vec<Channel> {
    let Some(entries) = map_of(root, "the channels file", problems) else { return Vec::new() };
    check_keys(entries, &["channels"], "the channels file", problems);
    let Some(list) = root.get("channels") else {
        problems.push((root.pos, "missing `channels:` (a list of channels)".into()));
        return Vec::new();
    };
    let Value::Seq(items) = &list.value else {
        problems.push((list.pos, format!("`channels` must be a list of channels, found {}", list.kind())));
        return Vec::new();
    };
    if items.len() > MAX_CHANNELS {
        problems.push((list.pos, format!("{} channels, at most {MAX_CHANNELS}", items.len())));
        return Vec::new();
    }
    let mut channels: Vec<Channel> = Vec::new();
    for item in items {
        if let Some(channel) = read_channel(item, env, problems) {
            if channels.iter().any(|c| c.name == channel.name) {
                let pos = item.get("name").map_or(item.pos, |n| n.pos);
                problems.push((pos, format!("channel name {:?} is used twice", channel.name)));
            }
            channels.push(channel);
        }
    }
    channels
}

const COMMON_KEYS: [&str; 7] = ["name", "kind", "events", "timeout", "retries", "backoff", "max_backoff"];
const WEBHOOK_KEYS: [&str; 4] = ["url", "url_env", "secret", "secret_env"];
const SLACK_KEYS: [&str; 2] = ["url", "url_env"];
const PAGERDUTY_KEYS: [&str; 6] = ["url", "url_env", "routing_key", "routing_key_env", "source", "component"];

fn read_channel(
    item: &Node,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<Channel> {
    let entries = map_of(item, "a channel", problems)?;
    let before = problems.len();
    let name = match string(item, "name", problems) {
        Some((name, pos)) => {
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                problems.push((
                    pos,
                    format!("channel name {name:?}: use 1 to 64 letters, digits, '-', '_' and '.'"),
                ));
            }
            name
        }
        None => {
            problems.push((item.pos, "a channel needs a `name:`".into()));
            String::new()
        }
    };
    let (kind, kind_pos) = match string(item, "kind", problems) {
        Some(k) => k,
        None => {
            problems
                .push((item.pos, format!("channel {name:?} needs a `kind:` (webhook, slack or pagerduty)")));
            return None;
        }
    };
    let own: &[&str] = match kind.as_str() {
        "webhook" => &WEBHOOK_KEYS,
        "slack" => &SLACK_KEYS,
        "pagerduty" => &PAGERDUTY_KEYS,
        other => {
            problems.push((
                kind_pos,
                format!("unknown channel kind {other:?}: expected webhook, slack or pagerduty"),
            ));
            return None;
        }
    };
    let allowed: Vec<&str> = COMMON_KEYS.iter().chain(own).copied().collect();
    check_keys(entries, &allowed, &format!("a {kind} channel"), problems);
    let url = secret(item, "url", env, problems);
    let kind = match kind.as_str() {
        "webhook" => {
            let secret = secret(item, "secret", env, problems);
            ChannelKind::Webhook { url: required(item, url, "url", &kind, problems), secret }
        }
        "slack" => ChannelKind::Slack { url: required(item, url, "url", &kind, problems) },
        _ => {
            let routing_key = secret(item, "routing_key", env, problems);
            let routing_key = required(item, routing_key, "routing_key", &kind, problems);
            let source =
                string(item, "source", problems).map_or_else(|| "chaos-controller".to_string(), |s| s.0);
            let component = string(item, "component", problems).map(|s| s.0);
            let url = url.unwrap_or_else(|| Secret::new(PAGERDUTY_URL));
            ChannelKind::PagerDuty { url, routing_key, source, component }
        }
    };
    if let Some(node) = item.get("url").or_else(|| item.get("url_env")) {
        check_url(kind.url().expose(), node.pos, problems);
    }
    let events = events(item, problems);
    let timeout = duration(item, "timeout", problems).unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        problems
            .push((item.get("timeout").map_or(item.pos, |n| n.pos), "`timeout` must be more than 0".into()));
    }
    let backoff = duration(item, "backoff", problems).unwrap_or(DEFAULT_BACKOFF);
    let max_backoff = duration(item, "max_backoff", problems).unwrap_or(DEFAULT_MAX_BACKOFF.max(backoff));
    if max_backoff < backoff {
        problems.push((
            item.get("max_backoff").map_or(item.pos, |n| n.pos),
            "`max_backoff` is shorter than `backoff`".into(),
        ));
    }
    let retries = match item.get("retries") {
        None => DEFAULT_RETRIES,
        Some(node) => match node.value {
            Value::Int(n) if (0..=i64::from(MAX_RETRIES)).contains(&n) => u32::try_from(n).unwrap_or(0),
            Value::UInt(n) if n <= u64::from(MAX_RETRIES) => u32::try_from(n).unwrap_or(0),
            _ => {
                problems
                    .push((node.pos, format!("`retries` must be a whole number from 0 to {MAX_RETRIES}")));
                0
            }
        },
    };
    (problems.len() == before).then_some(Channel {
        name,
        kind,
        events,
        timeout,
        retries,
        backoff,
        max_backoff,
    })
}

fn map_of<'a>(node: &'a Node, what: &str, problems: &mut Problems) -> Option<&'a [(node::Key, Node)]> {
    match &node.value {
        Value::Map(entries) => Some(entries),
        _ => {
            problems.push((node.pos, format!("expected {what} (a mapping), found {}", node.kind())));
            None
        }
    }
}

fn check_keys(entries: &[(node::Key, Node)], allowed: &[&str], what: &str, problems: &mut Problems) {
    for (key, _) in entries {
        if !allowed.contains(&key.name.as_str()) {
            problems.push((
                key.pos,
                format!("unknown key `{}` in {what}: expected one of {}", key.name, allowed.join(", ")),
            ));
        }
    }
}

fn string(item: &Node, key: &str, problems: &mut Problems) -> Option<(String, Pos)> {
    let node = item.get(key)?;
    match &node.value {
        Value::Str(s) => Some((s.trim().to_string(), node.pos)),
        _ => {
            problems.push((node.pos, format!("`{key}` must be a string, found {}", node.kind())));
            None
        }
    }
}

/// `key:` inline or `key_env:` naming an environment variable; both is an error.
fn secret(
    item: &Node,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<Secret> {
    let env_key = format!("{key}_env");
    let inline = string(item, key, problems);
    let from_env = string(item, &env_key, problems);
    match (inline, from_env) {
        (Some(_), Some((_, pos))) => {
            problems.push((pos, format!("give `{key}` or `{env_key}`, not both")));
            None
        }
        (Some((value, pos)), None) => {
            if value.is_empty() {
                problems.push((pos, format!("`{key}` is empty")));
            }
            Some(Secret::new(value))
        }
        (None, Some((var, pos))) => match env(&var) {
            Some(value) if !value.trim().is_empty() => Some(Secret::new(value.trim())),
            Some(_) => {
                problems.push((pos, format!("environment variable {var} (`{env_key}`) is empty")));
                None
            }
            None => {
                problems.push((pos, format!("environment variable {var} (`{env_key}`) is not set")));
                None
            }
        },
        (None, None) => None,
    }
}

fn required(item: &Node, value: Option<Secret>, key: &str, kind: &str, problems: &mut Problems) -> Secret {
    value.unwrap_or_else(|| {
        if item.get(key).is_none() && item.get(&format!("{key}_env")).is_none() {
            problems.push((item.pos, format!("a {kind} channel needs `{key}:` (or `{key}_env:`)")));
        }
        Secret::new("")
    })
}

fn check_url(url: &str, pos: Pos, problems: &mut Problems) {
    if url.is_empty() {
        return;
    }
    match super::transport::Target::parse(url) {
        Ok(_) => {}
        // The URL may be a secret (Slack's is): say what is wrong, not what it is.
        Err(reason) => problems.push((pos, format!("invalid url: {reason}"))),
    }
}

fn events(item: &Node, problems: &mut Problems) -> BTreeSet<EventKind> {
    let all = || EventKind::LISTABLE.into_iter().collect::<BTreeSet<_>>();
    let Some(node) = item.get("events") else { return all() };
    let Value::Seq(names) = &node.value else {
        problems.push((node.pos, format!("`events` must be a list of event names, found {}", node.kind())));
        return all();
    };
    let mut events = BTreeSet::new();
    for name in names {
        let Value::Str(text) = &name.value else {
            problems.push((name.pos, format!("an event name must be a string, found {}", name.kind())));
            continue;
        };
        match text.trim() {
            "all" => events.extend(EventKind::LISTABLE),
            "incident" => events.extend([
                EventKind::IncidentOpened,
                EventKind::IncidentUpdated,
                EventKind::IncidentResolved,
            ]),
            other => match EventKind::LISTABLE.into_iter().find(|k| k.as_str() == other) {
                Some(kind) => {
                    events.insert(kind);
                }
                None => problems.push((
                    name.pos,
                    format!(
                        "unknown event {other:?}: expected all, incident, {}",
                        EventKind::LISTABLE.map(EventKind::as_str).join(", ")
                    ),
                )),
            },
        }
    }
    if events.is_empty() && problems.is_empty() {
        problems.push((node.pos, "`events` is empty: leave it out to take every event".into()));
    }
    events
}

fn duration(item: &Node, key: &str, problems: &mut Problems) -> Option<Duration> {
    let node = item.get(key)?;
    let text = match &node.value {
        Value::Str(text) => text.clone(),
        // A bare number: parsed so that the message asks for a unit.
        Value::Int(n) => n.to_string(),
        Value::UInt(n) => n.to_string(),
        Value::Float(n) => n.to_string(),
        _ => {
            problems.push((
                node.pos,
                format!("`{key}` must be a duration like 500ms, 5s or 1m, found {}", node.kind()),
            ));
            return None;
        }
    };
    match text.parse::<crate::experiment::Duration>() {
        Ok(d) if d.0 <= Duration::from_secs(3600) => Some(d.0),
        Ok(_) => {
            problems.push((node.pos, format!("`{key}` is longer than an hour")));
            None
        }
        Err(e) => {
            problems.push((node.pos, format!("`{key}`: {e}")));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_full_file_reads_with_defaults_and_secrets_from_the_environment() {
        let text = "channels:\n  - name: hook\n    kind: webhook\n    url: http://127.0.0.1:9/x\n    secret_env: HOOK_KEY\n    events: [run_failed, incident]\n    retries: 0\n  - name: pd\n    kind: pagerduty\n    routing_key: abc\n";
        let env = |var: &str| (var == "HOOK_KEY").then(|| "s3cret".to_string());
        let config = parse("n.yaml", text, &env).unwrap();
        assert_eq!(config.channels.len(), 2);
        let hook = &config.channels[0];
        assert!(matches!(&hook.kind, ChannelKind::Webhook { secret: Some(s), .. } if s.expose() == "s3cret"));
        assert!(hook.takes(EventKind::IncidentResolved) && hook.takes(EventKind::RunFailed));
        assert!(!hook.takes(EventKind::HaltAll) && hook.takes(EventKind::Test));
        assert_eq!((hook.retries, hook.timeout), (0, DEFAULT_TIMEOUT));
        let pd = &config.channels[1];
        assert_eq!(pd.kind.url().expose(), PAGERDUTY_URL);
        assert_eq!(pd.events.len(), EventKind::LISTABLE.len());
        assert_eq!(pd.target(), "https://events.pagerduty.com");
        assert!(!format!("{config:?}").contains("s3cret"), "a secret shows in Debug");
        assert!(!format!("{config:?}").contains("abc"), "a routing key shows in Debug");
    }

    #[test]
    fn problems_are_reported_where_they_are() {
        let text = "channels:\n  - name: a\n    kind: webhok\n  - name: b\n    kind: slack\n    url: http://h/\n    colour: red\n  - name: c\n    kind: webhook\n    url: ftp://h/\n    secret_env: NOPE\n    timeout: 5\n    events: [run_failed, nope]\n";
        let err = parse("n.yaml", text, &no_env).unwrap_err().to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines[0].starts_with("n.yaml:3:11: unknown channel kind \"webhok\""), "{err}");
        assert!(lines[1].starts_with("n.yaml:7:5: unknown key `colour` in a slack channel"), "{err}");
        assert!(lines[2].starts_with("n.yaml:10:10: invalid url"), "{err}");
        assert!(
            lines[3].starts_with("n.yaml:11:17: environment variable NOPE (`secret_env`) is not set"),
            "{err}"
        );
        assert!(lines[4].starts_with("n.yaml:12:14: `timeout`: a duration needs a unit"), "{err}");
        assert!(lines[5].starts_with("n.yaml:13:26: unknown event \"nope\""), "{err}");
        assert_eq!(lines.len(), 6, "{err}");
    }
}
