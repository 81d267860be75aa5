//! The built-in load generator: traffic at a fixed arrival rate, every request measured into an [`EventLog`].
//!
//! It is **open loop**: request *i* is due at `origin + i / rate` whatever happened to earlier requests,
//! and its latency is measured from that due time, not from when it actually left (so it includes the timer's
//! lateness, about a millisecond). A slow or stalled target therefore shows up as latency and errors instead
//! of as fewer requests ("coordinated omission"). Each request runs in its own task; when [`MAX_IN_FLIGHT`]
//! requests are already waiting, a due request is not sent and counts as an error (overload) rather than
//! delaying the schedule.
//!
//! What counts as good: an answer with a status below 500. 5xx answers, transport errors (refused, reset,
//! malformed HTTP), timeouts and overload are errors. 4xx answers are good: the target answered as designed,
//! and an experiment that wants them to be errors should load a URL that does not return them.
//!
//! Not here: ramps, several URLs per load, closed-loop (concurrency-driven) traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::experiment::model::Load;
use crate::http::{self, Client, HttpError, Request};
use crate::signals::{Event, EventLog, RequestId};

/// Requests waiting for an answer at once, per load, before due requests count as overload. Each holds a
/// socket, so this also bounds the descriptors a stalled target can make the engine hold.
pub const MAX_IN_FLIGHT: usize = 10_000;

/// How much longer than the request timeout [`LoadHandle::stop`] waits for answers before giving up on them.
const STOP_MARGIN: Duration = Duration::from_millis(500);

/// A load entry that cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("load {name:?}: {source}")]
    Request {
        name: String,
        #[source]
        source: HttpError,
    },
    #[error("load {name:?}: the rate must be a finite number above 0 per second, found {rate}")]
    Rate { name: String, rate: f64 },
}

/// Counts since the load started. `scheduled = sent + overload`; every sent request ends as exactly one of
/// `ok`, `status_5xx`, `transport`, `timeouts` or `abandoned`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadTotals {
    /// Requests whose due time came.
    pub scheduled: u64,
    /// Requests handed to the client.
    pub sent: u64,
    /// Answers with a status below 500.
    pub ok: u64,
    pub status_5xx: u64,
    /// Refused, reset, malformed answers.
    pub transport: u64,
    pub timeouts: u64,
    /// Due requests not sent because [`MAX_IN_FLIGHT`] requests were waiting.
    pub overload: u64,
    /// Requests still waiting when [`LoadHandle::stop`] gave up on them; not recorded as events.
    pub abandoned: u64,
}

impl LoadTotals {
    /// Requests recorded as errors: 5xx, transport errors, timeouts and overload.
    pub fn errors(&self) -> u64 {
        self.status_5xx + self.transport + self.timeouts + self.overload
    }
}

/// A checked load entry, ready to start.
#[derive(Debug)]
pub struct LoadGenerator {
    name: String,
    request: Request,
    /// Requests per second.
    rate: f64,
    timeout: Duration,
    max_in_flight: usize,
    client: Client,
}

/// A running load. Dropping it stops the schedule and abandons what is in flight; [`LoadHandle::stop`] lets
/// in-flight requests finish first.
#[derive(Debug)]
pub struct LoadHandle {
    name: String,
    counters: Arc<Counters>,
    /// Ends the schedule (a child of the run's token, so cancelling the run stops sending too).
    stop: CancellationToken,
    /// Ends in-flight requests without recording them.
    abort: CancellationToken,
    /// The scheduler and every request task.
    tracker: TaskTracker,
    /// How long `stop` waits for in-flight requests.
    grace: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    scheduled: AtomicU64,
    sent: AtomicU64,
    ok: AtomicU64,
    status_5xx: AtomicU64,
    transport: AtomicU64,
    timeouts: AtomicU64,
    overload: AtomicU64,
    abandoned: AtomicU64,
}

/// What every request task of one load shares.
#[derive(Debug)]
struct Shared {
    request: Request,
    timeout: Duration,
    client: Client,
    counters: Arc<Counters>,
    log: Arc<EventLog>,
    run_start: Instant,
    abort: CancellationToken,
}

// === impl LoadGenerator ===

impl LoadGenerator {
    /// Checks `spec` and starts sending: [`LoadGenerator::new`] then [`LoadGenerator::spawn`].
    /// Must be called inside a tokio runtime.
    pub fn start(
        spec: &Load,
        run_start: Instant,
        log: Arc<EventLog>,
        cancel: CancellationToken,
    ) -> Result<LoadHandle, LoadError> {
        Ok(Self::new(spec)?.spawn(run_start, log, cancel))
    }

    /// Checks the URL, method, headers and rate; binds nothing and sends nothing (usable by a dry run).
    pub fn new(spec: &Load) -> Result<Self, LoadError> {
        let name = spec.name.clone();
        let rate = spec.rate.0;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(LoadError::Rate { name, rate });
        }
        let request =
            build_request(spec).map_err(|source| LoadError::Request { name: name.clone(), source })?;
        Ok(LoadGenerator {
            name,
            request,
            rate,
            timeout: spec.timeout.map_or(http::DEFAULT_TIMEOUT, |t| t.0),
            max_in_flight: MAX_IN_FLIGHT,
            // The generator only needs statuses; bodies are drained, not kept.
            client: Client::new().with_body_cap(0),
        })
    }

    /// Overrides [`MAX_IN_FLIGHT`].
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Starts the schedule. The first request is due at `run_start` or now, whichever is later; events are
    /// stamped with their due time since `run_start`. Sending stops when `cancel` is cancelled or the handle
    /// is stopped.
    pub fn spawn(self, run_start: Instant, log: Arc<EventLog>, cancel: CancellationToken) -> LoadHandle {
        let counters = Arc::new(Counters::default());
        let stop = cancel.child_token();
        let abort = CancellationToken::new();
        let tracker = TaskTracker::new();
        let origin = run_start.max(Instant::now());
        tracing::info!(load = %self.name, rate = self.rate, method = self.request.method(),
            url = %self.request.url(), "load started");
        let shared = Arc::new(Shared {
            request: self.request,
            timeout: self.timeout,
            client: self.client,
            counters: counters.clone(),
            log,
            run_start,
            abort: abort.clone(),
        });
        let limit = Arc::new(Semaphore::new(self.max_in_flight));
        tracker.spawn(schedule(shared, origin, self.rate, limit, stop.clone(), tracker.clone()));
        LoadHandle { name: self.name, counters, stop, abort, tracker, grace: self.timeout + STOP_MARGIN }
    }
}

fn build_request(spec: &Load) -> Result<Request, HttpError> {
    let mut request = Request::new(spec.http.method.as_deref().unwrap_or("GET"), &spec.http.url)?;
    for (name, value) in &spec.http.headers {
        request = request.header(name, value)?;
    }
    if let Some(body) = &spec.http.body {
        request = request.body(body.clone());
    }
    Ok(request)
}

/// When request `index` is due, counted from the schedule's origin. Computed from the index (not by adding
/// periods) so rounding never drifts the schedule.
fn due_offset(index: u64, rate: f64) -> Duration {
    Duration::try_from_secs_f64(index as f64 / rate).unwrap_or(Duration::MAX)
}

async fn schedule(
    shared: Arc<Shared>,
    origin: Instant,
    rate: f64,
    limit: Arc<Semaphore>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    for index in 0u64.. {
        let Some(due) = origin.checked_add(due_offset(index, rate)) else { break };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(due) => {}
        }
        shared.counters.scheduled.fetch_add(1, Ordering::Relaxed);
        // Registered before it is sent: from now on the guardrails see it as sent and, until its answer,
        // as unanswered.
        let at = due.saturating_duration_since(shared.run_start);
        let request = shared.log.request(at);
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                tracker.spawn(send_one(shared.clone(), due, request, permit));
            }
            Err(_) => {
                shared.counters.overload.fetch_add(1, Ordering::Relaxed);
                shared.log.answered(request, Event { at, latency: Duration::ZERO, ok: false });
            }
        }
    }
}

/// One request, measured from its due time; `_permit` holds its place under the in-flight cap.
async fn send_one(shared: Arc<Shared>, due: Instant, request: RequestId, _permit: OwnedSemaphorePermit) {
    let answer = tokio::select! {
        answer = shared.client.send(&shared.request, shared.timeout) => answer,
        () = shared.abort.cancelled() => {
            shared.counters.abandoned.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let latency = Instant::now().saturating_duration_since(due);
    let counters = &shared.counters;
    let ok = match &answer {
        Ok(response) if response.status < 500 => {
            counters.ok.fetch_add(1, Ordering::Relaxed);
            true
        }
        Ok(_) => {
            counters.status_5xx.fetch_add(1, Ordering::Relaxed);
            false
        }
        Err(HttpError::Timeout { .. }) => {
            counters.timeouts.fetch_add(1, Ordering::Relaxed);
            false
        }
        Err(_) => {
            counters.transport.fetch_add(1, Ordering::Relaxed);
            false
        }
    };
    if let Err(error) = &answer {
        tracing::trace!(%error, "load request failed");
    }
    shared.log.answered(request, Event { at: due.saturating_duration_since(shared.run_start), latency, ok });
}

// === impl LoadHandle ===

impl LoadHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts so far.
    pub fn totals(&self) -> LoadTotals {
        self.counters.snapshot()
    }

    /// Stops sending, waits for in-flight requests (at most the request timeout plus a margin, since each
    /// request ends by its own timeout), and returns the final counts.
    pub async fn stop(self) -> LoadTotals {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait()).await.is_err() {
            self.abort.cancel();
            self.tracker.wait().await;
        }
        let totals = self.totals();
        tracing::info!(load = %self.name, sent = totals.sent, ok = totals.ok, errors = totals.errors(),
            "load stopped");
        totals
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.stop.cancel();
        self.abort.cancel();
    }
}

impl Counters {
    fn snapshot(&self) -> LoadTotals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LoadTotals {
            scheduled: get(&self.scheduled),
            sent: get(&self.sent),
            ok: get(&self.ok),
            status_5xx: get(&self.status_5xx),
            transport: get(&self.transport),
            timeouts: get(&self.timeouts),
            overload: get(&self.overload),
            abandoned: get(&self.abandoned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::model::{HttpRequest, Rate};

    fn spec(url: &str, rate: f64) -> Load {
        Load {
            name: "shoppers".into(),
            http: HttpRequest { url: url.into(), method: None, headers: Default::default(), body: None },
            rate: Rate(rate),
            timeout: None,
        }
    }

    #[test]
    fn the_schedule_is_computed_from_the_index() {
        assert_eq!(due_offset(0, 50.0), Duration::ZERO);
        assert_eq!(due_offset(50, 50.0), Duration::from_secs(1));
        assert_eq!(due_offset(3, 1000.0), Duration::from_millis(3));
    }

    #[test]
    fn bad_entries_are_refused_before_anything_is_sent() {
        let err = LoadGenerator::new(&spec("https://x/", 10.0)).unwrap_err().to_string();
        assert!(err.starts_with("load \"shoppers\": invalid url"), "{err}");
        let err = LoadGenerator::new(&spec("http://x/", 0.0)).unwrap_err().to_string();
        assert!(err.contains("above 0"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn overload_is_an_error_and_does_not_delay_the_schedule() {
        // A listener that accepts nothing: every request waits until its timeout (virtual time).
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", silent.local_addr().unwrap());
        let log = Arc::new(EventLog::default());
        let start = Instant::now();
        let handle = LoadGenerator::new(&spec(&url, 100.0)).unwrap().with_max_in_flight(5).spawn(
            start,
            log.clone(),
            CancellationToken::new(),
        );
        tokio::time::sleep(Duration::from_millis(995)).await;
        let totals = handle.totals();
        assert_eq!(totals.scheduled, 100);
        assert_eq!(totals.sent, 5);
        assert_eq!(totals.overload, 95);
        drop(handle);
    }
}
