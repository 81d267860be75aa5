//! Raw signal events shared by the sources that produce them (load generator, proxy stats, Prometheus, host)
//! and the SLO evaluation that judges them. Times are offsets from the start of the run, so every source and
//! every window agree on one clock.

use std::sync::Mutex;
use std::time::Duration;

/// One measured request (or one counted event from a source that has no per-request view).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    /// When the request was sent (load generator) or counted, since the run started.
    pub at: Duration,
    /// How long it took (zero when the source does not time requests).
    pub latency: Duration,
    /// False for errors: 5xx, connection failures, resets, timeouts.
    pub ok: bool,
}

/// An append-only, thread-safe log of events, in time order of appending.
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<Vec<Event>>,
}

impl EventLog {
    pub fn push(&self, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    /// Events whose `at` is in `[from, to)`.
    pub fn between(&self, from: Duration, to: Duration) -> Vec<Event> {
        self.events
            .lock()
            .map(|e| e.iter().filter(|ev| ev.at >= from && ev.at < to).copied().collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.events.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
