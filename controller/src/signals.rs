//! Raw signal events shared by the sources that produce them (load generator, proxy stats, Prometheus, host)
//! and the SLO evaluation that judges them. Times are offsets from the start of the run, so every source and
//! every window agree on one clock.
//!
//! Two kinds of log: a log of **requests** (the load generator registers each request when it is due with
//! [`EventLog::request`] and records its event with [`EventLog::answered`] once the answer is known, so an
//! event's `at` is when it was sent and it was known at `at + latency`), and a log of **counted events**
//! (proxy stats, Prometheus: [`EventLog::push`], known at `at`). The guardrails look at what is known at each
//! tick ([`EventLog::watch`]), the verdicts at everything sent in a window ([`EventLog::between`]).

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

impl Event {
    /// When the event became known: when the answer came (`at + latency`) for a request, `at` for a counted
    /// event (whose latency, if any, is a histogram bucket, not a time on the run's clock).
    pub fn known_at(&self, requests: bool) -> Duration {
        if requests { self.at.saturating_add(self.latency) } else { self.at }
    }
}

/// A request registered with [`EventLog::request`], to be completed with [`EventLog::answered`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId(usize);

/// An append-only, thread-safe log of events, in time order of appending.
#[derive(Debug, Default)]
pub struct EventLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<Event>,
    /// Requests in order of their due time: when each was due, and whether its event is in `events` yet.
    /// Empty for a log of counted events.
    requests: Vec<(Duration, bool)>,
    /// Every request before this index is answered (where [`EventLog::watch`] starts looking).
    open_from: usize,
}

/// What a log holds at one moment, as the guardrails see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Watch {
    /// Events known at or after the `from` given to [`EventLog::watch`] (see [`Event::known_at`]).
    pub events: Vec<Event>,
    /// When each request still waiting for its answer was sent.
    pub unanswered: Vec<Duration>,
    /// Whether this is a log of requests (events are known at `at + latency`).
    pub requests: bool,
}

impl EventLog {
    /// Records a counted event (known at its `at`).
    pub fn push(&self, event: Event) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.events.push(event);
        }
    }

    /// Registers a request that came due at `at` (since the run started), before it is sent: from now on it
    /// counts as sent, and as unanswered until [`EventLog::answered`]. Call in order of due time.
    pub fn request(&self, at: Duration) -> RequestId {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.requests.push((at, false));
        RequestId(inner.requests.len() - 1)
    }

    /// Records the event of request `id` (its answer, failure or timeout is known now).
    pub fn answered(&self, id: RequestId, event: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = inner.requests.get_mut(id.0) {
            slot.1 = true;
        }
        inner.events.push(event);
    }

    /// Events whose `at` is in `[from, to)`.
    pub fn between(&self, from: Duration, to: Duration) -> Vec<Event> {
        self.inner
            .lock()
            .map(|i| i.events.iter().filter(|ev| ev.at >= from && ev.at < to).copied().collect())
            .unwrap_or_default()
    }

    /// Requests sent (due) in `[from, to)`, answered or not; `None` for a log of counted events.
    pub fn sent_between(&self, from: Duration, to: Duration) -> Option<u64> {
        let inner = self.inner.lock().ok()?;
        if inner.requests.is_empty() {
            return None;
        }
        Some(inner.requests.iter().filter(|(at, _)| *at >= from && *at < to).count() as u64)
    }

    /// The events known at or after `from`, and the requests still unanswered: one copy under one lock, so
    /// a request is either an event or unanswered, never both or neither.
    pub fn watch(&self, from: Duration) -> Watch {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let requests = !inner.requests.is_empty();
        let mut open = inner.open_from;
        while inner.requests.get(open).is_some_and(|r| r.1) {
            open += 1;
        }
        inner.open_from = open;
        Watch {
            events: inner.events.iter().filter(|e| e.known_at(requests) >= from).copied().collect(),
            unanswered: inner.requests[open..].iter().filter(|r| !r.1).map(|r| r.0).collect(),
            requests,
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.events.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_request_is_unanswered_until_its_event_and_then_known_at_its_answer() {
        let log = EventLog::default();
        let first = log.request(ms(100));
        let second = log.request(ms(200));
        assert_eq!(log.sent_between(ms(0), ms(150)), Some(1));
        let w = log.watch(ms(0));
        assert_eq!((w.events.len(), w.unanswered.as_slice(), w.requests), (0, &[ms(100), ms(200)][..], true));
        log.answered(second, Event { at: ms(200), latency: ms(50), ok: false });
        let w = log.watch(ms(250));
        assert_eq!(w.unanswered, [ms(100)]);
        assert_eq!(w.events.len(), 1, "known at 250 ms");
        assert!(log.watch(ms(251)).events.is_empty());
        log.answered(first, Event { at: ms(100), latency: ms(400), ok: true });
        assert!(log.watch(ms(0)).unanswered.is_empty());
        assert_eq!(log.sent_between(ms(0), ms(1000)), Some(2));
    }

    #[test]
    fn counted_events_are_known_when_counted() {
        let log = EventLog::default();
        log.push(Event { at: ms(1000), latency: Duration::from_secs(3600), ok: true });
        let w = log.watch(ms(1000));
        assert_eq!((w.events.len(), w.requests), (1, false));
        assert_eq!(log.sent_between(ms(0), ms(2000)), None);
    }
}
