//! On-call notification (issue 16): what the controller tells people about (incidents opened, updated and
//! resolved, runs failed, guardrails tripped, halt-all and freeze) and the channels it tells them through.
//!
//! [`Notifier::emit`] never waits: it queues the event for each channel's delivery task and returns, so
//! delivery can never delay or block a revert or a halt. A full queue drops the event with a warning (and the
//! drop is logged for `chaos notify log`).
//!
//! - [`config`]: the channels file (`chaos controller --notify FILE`), errors at file:line:column.
//! - [`render`]: each channel kind's payload (webhook JSON and its HMAC-SHA256 signature, Slack, PagerDuty).
//! - [`deliver`]: a worker per channel, timeouts, retries with backoff and jitter, the delivery log.
//! - `transport`: one HTTP(S) POST per attempt, its answer bounded.

pub mod config;
pub mod deliver;
pub mod render;
mod transport;

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

pub use config::{Channel, ChannelKind, EventKind, NotifyConfig, Secret};
pub use deliver::DeliveryOutcome;

/// What happened, in the controller's words. Each channel renders it into its own payload.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An incident was opened, changed (status, severity, people, a note) or resolved.
    Incident {
        change: IncidentChange,
        id: String,
        title: String,
        /// `sev1` .. `sev4`.
        severity: String,
        /// `investigating`, `identified`, `monitoring` or `resolved`.
        status: String,
        services: Vec<String>,
        commander: Option<String>,
        /// One line on what changed.
        summary: String,
    },
    /// A run ended failed (its hypothesis refuted) or inconclusive.
    RunFailed { run_id: String, title: String, verdict: String, reasons: Vec<String> },
    /// A run's guardrail tripped and its faults were reverted.
    GuardrailTripped { run_id: String, title: String, reason: String },
    /// Someone halted everything.
    HaltAll { actor: String, reason: String, runs_halted: usize },
    /// Someone froze (or unfroze) the controller.
    Freeze { actor: String, reason: String, frozen: bool },
    /// `chaos notify test`.
    Test { actor: String, text: String },
}

/// Which change of an incident an [`Event::Incident`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentChange {
    Opened,
    Updated,
    Resolved,
}

/// The sending end of the notification queues. Cheap to clone; a disabled one drops every event.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    /// A plain queue ([`Notifier::new`]): whoever holds the receiver sees every event.
    queue: Option<mpsc::Sender<Event>>,
    /// The channels and their delivery workers ([`Notifier::start`]).
    channels: Option<Arc<deliver::Dispatcher>>,
}

/// A channel as listed (`chaos notify channels`): never its secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    pub name: String,
    /// `webhook`, `slack` or `pagerduty`.
    pub kind: String,
    /// The events it takes.
    pub events: Vec<String>,
    /// Scheme, host and port it sends to (no path: a Slack URL's path is its secret).
    pub target: String,
    pub timeout: std::time::Duration,
    pub retries: u32,
    /// A webhook with a secret: its deliveries carry a signature.
    pub signed: bool,
}

impl Notifier {
    /// A notifier with no channels: [`Notifier::emit`] does nothing.
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// A notifier feeding `queue` (the delivery task holds the receiving end).
    pub fn new(queue: mpsc::Sender<Event>) -> Notifier {
        Notifier { queue: Some(queue), channels: None }
    }

    /// A notifier delivering to `config`'s channels, each through a worker task started here (on the current
    /// tokio runtime), every delivery and attempt recorded in `store`. No channels: a disabled notifier.
    pub fn start(config: NotifyConfig, store: crate::store::StoreHandle) -> Notifier {
        if config.channels.is_empty() {
            return Notifier::disabled();
        }
        Notifier { queue: None, channels: Some(deliver::Dispatcher::start(config, store)) }
    }

    /// Queues `event` for delivery and returns at once, whatever the channels are doing.
    pub fn emit(&self, event: Event) {
        if let Some(channels) = &self.channels {
            channels.dispatch(event.clone());
        }
        let Some(queue) = &self.queue else { return };
        if let Err(e) = queue.try_send(event) {
            tracing::warn!(error = %e, "the notification queue is full or closed: a notification was dropped");
        }
    }

    /// The channels, secrets left out.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let Some(channels) = &self.channels else { return Vec::new() };
        channels
            .channels()
            .map(|c| ChannelInfo {
                name: c.name.clone(),
                kind: c.kind.as_str().to_string(),
                events: c.events.iter().map(|e| e.as_str().to_string()).collect(),
                target: c.target(),
                timeout: c.timeout,
                retries: c.retries,
                signed: matches!(&c.kind, ChannelKind::Webhook { secret: Some(_), .. }),
            })
            .collect()
    }

    /// Sends a test message to the channel named `channel` (every channel when `None`) now: one attempt per
    /// channel, concurrently, recorded in the log like any delivery; waits for the answers (each bounded by
    /// its channel's timeout). `Err` when there is no such channel, or no channel at all.
    pub async fn test(
        &self,
        channel: Option<&str>,
        actor: &str,
        text: &str,
    ) -> Result<Vec<DeliveryOutcome>, String> {
        let Some(channels) = &self.channels else {
            return Err("no notification channels are configured (chaos controller --notify FILE)".into());
        };
        let event = Event::Test { actor: actor.to_string(), text: text.to_string() };
        channels.send_now(channel, event).await
    }
}
