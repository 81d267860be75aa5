//! On-call notification (issue 16): what the controller tells people about (incidents opened, updated and
//! resolved, runs failed, guardrails tripped, halt-all and freeze) and the channels it tells them through.
//!
//! [`Notifier::emit`] never waits: it queues the event for a delivery task of its own and returns, so
//! delivery can never delay or block a revert or a halt. A full queue drops the event with a warning (and the
//! drop is logged for `chaos notify log`).

use serde::Serialize;
use tokio::sync::mpsc;

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

/// The sending end of the notification queue. Cheap to clone; a disabled one drops every event.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    queue: Option<mpsc::Sender<Event>>,
}

impl Notifier {
    /// A notifier with no channels: [`Notifier::emit`] does nothing.
    pub fn disabled() -> Notifier {
        Notifier { queue: None }
    }

    /// A notifier feeding `queue` (the delivery task holds the receiving end).
    pub fn new(queue: mpsc::Sender<Event>) -> Notifier {
        Notifier { queue: Some(queue) }
    }

    /// Queues `event` for delivery and returns at once, whatever the channels are doing.
    pub fn emit(&self, event: Event) {
        let Some(queue) = &self.queue else { return };
        if let Err(e) = queue.try_send(event) {
            tracing::warn!(error = %e, "the notification queue is full or closed: a notification was dropped");
        }
    }
}
