//! Each channel kind's payload for an [`Event`]: the generic webhook's JSON (and its HMAC-SHA256 signature,
//! [`sign`]), Slack's incoming-webhook message (`text` plus Block Kit blocks) and PagerDuty's Events API v2
//! event (trigger, acknowledge or resolve, with a `dedup_key` stable per incident, per run, and for the freeze).
//! Pure functions: no I/O, no clock (the time is given).

use ring::hmac;
use serde_json::{Value, json};

use super::config::{Channel, ChannelKind, EventKind};
use super::{Event, IncidentChange};

/// The header carrying a webhook's signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Chaos-Signature";
/// The header carrying the Unix time (seconds) the signature was made at; part of the signed text.
pub const TIMESTAMP_HEADER: &str = "X-Chaos-Timestamp";
/// The header naming the delivery (the same on every attempt of it), so a receiver can drop repeats.
pub const DELIVERY_HEADER: &str = "X-Chaos-Delivery";
/// The header naming the event kind (`run_failed`, ...).
pub const EVENT_HEADER: &str = "X-Chaos-Event";

/// Slack's limits: a header block's text, a section's text.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 3000;
/// PagerDuty's limits: `payload.summary`, `dedup_key`.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;
const PAGERDUTY_DEDUP_MAX: usize = 255;

/// The kind of `event`, as channels filter on it.
pub fn kind_of(event: &Event) -> EventKind {
    match event {
        Event::Incident { change: IncidentChange::Opened, .. } => EventKind::IncidentOpened,
        Event::Incident { change: IncidentChange::Updated, .. } => EventKind::IncidentUpdated,
        Event::Incident { change: IncidentChange::Resolved, .. } => EventKind::IncidentResolved,
        Event::RunFailed { .. } => EventKind::RunFailed,
        Event::GuardrailTripped { .. } => EventKind::GuardrailTripped,
        Event::HaltAll { .. } => EventKind::HaltAll,
        Event::Freeze { frozen: true, .. } => EventKind::Freeze,
        Event::Freeze { frozen: false, .. } => EventKind::Unfreeze,
        Event::Test { .. } => EventKind::Test,
    }
}

/// One line saying what happened (the webhook's `summary`, Slack's `text`, PagerDuty's `payload.summary`).
pub fn summary(event: &Event) -> String {
    match event {
        Event::Incident { change, id, title, severity, status, summary, .. } => {
            let what = match change {
                IncidentChange::Opened => "opened",
                IncidentChange::Updated => "updated",
                IncidentChange::Resolved => "resolved",
            };
            let sev = severity.to_uppercase();
            let tail = if summary.is_empty() { String::new() } else { format!(": {summary}") };
            format!("[{sev}] incident {id} {what} ({status}): {title}{tail}")
        }
        Event::RunFailed { run_id, title, verdict, reasons } => {
            let first = reasons.first().map_or(String::new(), |r| format!(": {r}"));
            format!("run {run_id} {verdict}: {title}{first}")
        }
        Event::GuardrailTripped { run_id, title, reason } => {
            format!("guardrail tripped in run {run_id} ({title}): {reason}; its faults were reverted")
        }
        Event::HaltAll { actor, reason, runs_halted } => {
            format!("{actor} halted everything ({runs_halted} runs halted): {reason}")
        }
        Event::Freeze { actor, reason, frozen: true } => format!("{actor} froze the controller: {reason}"),
        Event::Freeze { actor, reason, frozen: false } => format!("{actor} unfroze the controller: {reason}"),
        Event::Test { actor, text } => format!("test notification from {actor}: {text}"),
    }
}

/// PagerDuty's severity for `event`: an incident's sev1..sev4 are critical, error, warning, info.
pub fn severity(event: &Event) -> &'static str {
    match event {
        Event::Incident { severity, .. } => match severity.to_ascii_lowercase().as_str() {
            "sev1" => "critical",
            "sev2" => "error",
            "sev3" => "warning",
            _ => "info",
        },
        Event::RunFailed { verdict, .. } if verdict == "failed" => "error",
        Event::RunFailed { .. } | Event::HaltAll { .. } => "warning",
        Event::GuardrailTripped { .. } => "critical",
        Event::Freeze { .. } | Event::Test { .. } => "info",
    }
}

/// A payload ready to send: the body, and the same body with secrets replaced for the delivery log.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub body: Vec<u8>,
    pub logged: String,
}

/// `event` as `channel` sends it. `id` names the notification (the same on every channel and attempt);
/// `at_ms` is when it happened.
pub fn render(channel: &Channel, event: &Event, id: &str, at_ms: i64) -> Rendered {
    let (value, logged) = match &channel.kind {
        ChannelKind::Webhook { .. } => {
            let v = webhook(event, id, at_ms);
            (v.clone(), v)
        }
        ChannelKind::Slack { .. } => {
            let v = slack(event, id);
            (v.clone(), v)
        }
        ChannelKind::PagerDuty { routing_key, source, component, .. } => {
            let v = pagerduty(event, id, at_ms, routing_key.expose(), source, component.as_deref());
            let mut logged = v.clone();
            logged["routing_key"] = json!("<redacted>");
            (v, logged)
        }
    };
    Rendered { body: value.to_string().into_bytes(), logged: logged.to_string() }
}

/// The generic webhook's body: `{id, kind, at, at_ms, summary, severity, details}`; `details` is the event
/// itself (its `event` field names the variant).
pub fn webhook(event: &Event, id: &str, at_ms: i64) -> Value {
    json!({
        "id": id,
        "kind": kind_of(event).as_str(),
        "at": rfc3339(at_ms),
        "at_ms": at_ms,
        "summary": summary(event),
        "severity": severity(event),
        "details": serde_json::to_value(event).unwrap_or(Value::Null),
    })
}

/// `sha256=` and the hex HMAC-SHA256, keyed with `secret`, of `TIMESTAMP.BODY` (the timestamp header's value,
/// a full stop, then the exact body bytes).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in tag.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Slack's incoming-webhook message: `text` (the notification's fallback) plus a header, a section with the
/// details and a context line. Text from people and experiments is escaped (`&`, `<`, `>`), so it cannot ping
/// a channel or forge a link.
pub fn slack(event: &Event, id: &str) -> Value {
    let kind = kind_of(event);
    let (header, lines): (String, Vec<String>) = match event {
        Event::Incident { id: incident, title, severity, status, services, commander, summary, change } => {
            let what = match change {
                IncidentChange::Opened => "opened",
                IncidentChange::Updated => "updated",
                IncidentChange::Resolved => "resolved",
            };
            let mut lines = vec![
                format!("*Incident* {} {what}: {}", esc(incident), esc(title)),
                format!("*Severity:* {}   *Status:* {}", esc(&severity.to_uppercase()), esc(status)),
            ];
            if !services.is_empty() {
                lines.push(format!("*Services:* {}", esc(&services.join(", "))));
            }
            if let Some(c) = commander {
                lines.push(format!("*Commander:* {}", esc(c)));
            }
            if !summary.is_empty() {
                lines.push(esc(summary));
            }
            (format!("{} incident {what}: {title}", severity.to_uppercase()), lines)
        }
        Event::RunFailed { run_id, title, verdict, reasons } => {
            let mut lines = vec![format!("*Run* {} ended *{}*: {}", esc(run_id), esc(verdict), esc(title))];
            lines.extend(reasons.iter().map(|r| format!("• {}", esc(r))));
            (format!("Chaos run {verdict}: {title}"), lines)
        }
        Event::GuardrailTripped { run_id, title, reason } => (
            format!("Guardrail tripped: {title}"),
            vec![
                format!("*Run* {}: {}", esc(run_id), esc(title)),
                format!("*Guardrail:* {}", esc(reason)),
                "Its faults were reverted.".to_string(),
            ],
        ),
        Event::HaltAll { actor, reason, runs_halted } => (
            "Halt-all: every run halted, every fault reverted".to_string(),
            vec![
                format!("*By:* {}   *Runs halted:* {runs_halted}", esc(actor)),
                format!("*Reason:* {}", esc(reason)),
            ],
        ),
        Event::Freeze { actor, reason, frozen } => (
            if *frozen { "Chaos frozen: no run starts" } else { "Chaos unfrozen: runs may start" }
                .to_string(),
            vec![format!("*By:* {}", esc(actor)), format!("*Reason:* {}", esc(reason))],
        ),
        Event::Test { actor, text } => {
            ("Chaos test notification".to_string(), vec![format!("*From:* {}", esc(actor)), esc(text)])
        }
    };
    json!({
        "text": esc(&summary(event)),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": cut(&header, SLACK_HEADER_MAX), "emoji": true}},
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(&lines.join("\n"), SLACK_SECTION_MAX)}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("chaos · {} · {}", kind.as_str(), esc(id))}
            ]},
        ],
    })
}

/// What PagerDuty is asked to do with an event.
pub fn pagerduty_action(event: &Event) -> &'static str {
    match event {
        Event::Incident { change: IncidentChange::Resolved, .. } => "resolve",
        Event::Incident { status, .. } if status == "resolved" => "resolve",
        Event::Incident { change: IncidentChange::Updated, status, .. } if status != "investigating" => {
            "acknowledge"
        }
        Event::Freeze { frozen: false, .. } => "resolve",
        _ => "trigger",
    }
}

/// The `dedup_key`: per incident, per run (its failure and its guardrail trip are one alert), one for the
/// freeze (frozen triggers it, unfrozen resolves it), one per halt-all and per test.
pub fn dedup_key(event: &Event, id: &str) -> String {
    let key = match event {
        Event::Incident { id, .. } => format!("chaos-incident-{id}"),
        Event::RunFailed { run_id, .. } | Event::GuardrailTripped { run_id, .. } => {
            format!("chaos-run-{run_id}")
        }
        Event::Freeze { .. } => "chaos-freeze".to_string(),
        Event::HaltAll { .. } => format!("chaos-halt-all-{id}"),
        Event::Test { .. } => format!("chaos-test-{id}"),
    };
    cut(&key, PAGERDUTY_DEDUP_MAX)
}

/// PagerDuty Events API v2: a trigger carries the payload (summary, source, severity, timestamp, component,
/// class, custom_details); acknowledge and resolve carry only the routing key, action and dedup key.
pub fn pagerduty(
    event: &Event,
    id: &str,
    at_ms: i64,
    routing_key: &str,
    source: &str,
    component: Option<&str>,
) -> Value {
    let action = pagerduty_action(event);
    let dedup = dedup_key(event, id);
    if action != "trigger" {
        return json!({"routing_key": routing_key, "event_action": action, "dedup_key": dedup});
    }
    let mut payload = json!({
        "summary": cut(&summary(event), PAGERDUTY_SUMMARY_MAX),
        "source": source,
        "severity": severity(event),
        "timestamp": rfc3339(at_ms),
        "class": kind_of(event).as_str(),
        "custom_details": serde_json::to_value(event).unwrap_or(Value::Null),
    });
    let component = component.map(str::to_string).or_else(|| match event {
        Event::Incident { services, .. } => services.first().cloned(),
        _ => None,
    });
    if let Some(component) = component {
        payload["component"] = json!(component);
    }
    json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup,
        "client": "chaos",
        "payload": payload,
    })
}

fn rfc3339(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map_or_else(String::new, |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Slack's control characters as entities.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// At most `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(change: IncidentChange, status: &str, severity: &str) -> Event {
        Event::Incident {
            change,
            id: "inc-1".into(),
            title: "checkout <down> & out".into(),
            severity: severity.into(),
            status: status.into(),
            services: vec!["checkout".into()],
            commander: Some("ana".into()),
            summary: String::new(),
        }
    }

    #[test]
    fn pagerduty_follows_an_incident_with_one_dedup_key() {
        let opened = incident(IncidentChange::Opened, "investigating", "sev2");
        let acked = incident(IncidentChange::Updated, "identified", "sev2");
        let resolved = incident(IncidentChange::Resolved, "resolved", "sev2");
        let [t, a, r] = [&opened, &acked, &resolved].map(|e| pagerduty(e, "n-1", 0, "key", "ctl", None));
        assert_eq!(
            [&t["event_action"], &a["event_action"], &r["event_action"]],
            ["trigger", "acknowledge", "resolve"]
        );
        assert!(
            t["dedup_key"] == "chaos-incident-inc-1"
                && a["dedup_key"] == t["dedup_key"]
                && r["dedup_key"] == t["dedup_key"]
        );
        assert_eq!(t["payload"]["severity"], "error");
        assert_eq!(t["payload"]["component"], "checkout");
        assert_eq!(r.as_object().map(|o| o.len()), Some(3), "a resolve carries no payload: {r}");
    }

    #[test]
    fn severities_map_from_sev1_to_sev4() {
        let map = ["sev1", "sev2", "sev3", "sev4"]
            .map(|s| severity(&incident(IncidentChange::Opened, "investigating", s)));
        assert_eq!(map, ["critical", "error", "warning", "info"]);
    }

    #[test]
    fn slack_text_is_escaped_and_cut_to_slacks_limits() {
        let v = slack(&incident(IncidentChange::Opened, "investigating", "sev1"), "n-1");
        let section = v["blocks"][1]["text"]["text"].as_str().unwrap_or_default();
        assert!(section.contains("checkout &lt;down&gt; &amp; out"), "{section}");
        let long = Event::Test { actor: "a".into(), text: "x".repeat(5000) };
        let v = slack(&long, "n-2");
        assert_eq!(
            v["blocks"][1]["text"]["text"].as_str().map(|s| s.chars().count()),
            Some(SLACK_SECTION_MAX)
        );
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_exact_body() {
        let a = sign(b"key", "1700000000", b"{\"a\":1}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, sign(b"key", "1700000001", b"{\"a\":1}"));
        assert_ne!(a, sign(b"key", "1700000000", b"{\"a\": 1}"));
        assert_ne!(a, sign(b"kex", "1700000000", b"{\"a\":1}"));
    }
}
