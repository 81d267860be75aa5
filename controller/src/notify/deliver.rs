//! Delivery: one worker task per channel, fed by a bounded queue of its own, so that a receiver that hangs
//! holds only its own channel (in order: a PagerDuty resolve never overtakes its trigger). Each delivery is
//! recorded in the store before its first attempt; each attempt has the channel's timeout, and a failed one
//! (no answer, a timeout, 408, 425, 429 or 5xx) is retried after an exponential backoff with jitter, up to the
//! channel's `retries`. Another status (a 4xx: the receiver refuses the payload) fails at once. Every attempt
//! is stored ([`crate::store::NotifyStore`]) and logged with `tracing`; secrets never are.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Event;
use super::config::{Channel, ChannelKind, NotifyConfig};
use super::render::{self, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::transport::Target;
use crate::store::{AttemptRecord, NewDelivery, StoreHandle};

/// How many notifications may wait per channel; more are dropped (and the drop recorded).
pub const CHANNEL_QUEUE: usize = 256;

/// One notification for one channel.
#[derive(Clone, Debug)]
struct Job {
    notification: String,
    event: Arc<Event>,
    at_ms: i64,
}

/// The channels and their queues.
pub(super) struct Dispatcher {
    channels: Vec<ChannelState>,
    shared: Arc<Shared>,
}

/// What the workers share: the store and the jitter's random numbers.
struct Shared {
    store: StoreHandle,
    rng: Mutex<StdRng>,
}

struct ChannelState {
    channel: Arc<Channel>,
    target: Arc<Target>,
    queue: mpsc::Sender<Job>,
}

/// How one delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryOutcome {
    pub channel: String,
    pub delivered: bool,
    pub attempts: u32,
    /// The last answer's status, if there was one.
    pub status: Option<u16>,
    /// Why it was not delivered.
    pub error: Option<String>,
    pub elapsed: Duration,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.channels.iter().map(|c| c.channel.name.as_str()).collect();
        f.debug_struct("Dispatcher").field("channels", &names).finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Starts a worker per channel (on the current tokio runtime). A channel whose URL does not parse is
    /// skipped with an error (the file's reader refuses such URLs first).
    pub(super) fn start(config: NotifyConfig, store: StoreHandle) -> Arc<Dispatcher> {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let mut channels = Vec::new();
        let mut receivers = Vec::new();
        for channel in config.channels {
            let target = match Target::parse(channel.kind.url().expose()) {
                Ok(t) => Arc::new(t),
                Err(e) => {
                    tracing::error!(channel = %channel.name, error = %e, "notification channel skipped: invalid url");
                    continue;
                }
            };
            let (tx, rx) = mpsc::channel(CHANNEL_QUEUE);
            channels.push(ChannelState { channel: Arc::new(channel), target, queue: tx });
            receivers.push(rx);
        }
        let shared = Arc::new(Shared { store, rng: Mutex::new(rng) });
        for (state, rx) in channels.iter().zip(receivers) {
            // A worker ends once the last notifier is gone and its queue is drained.
            tokio::spawn(worker(shared.clone(), state.channel.clone(), state.target.clone(), rx));
        }
        Arc::new(Dispatcher { channels, shared })
    }

    pub(super) fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.iter().map(|c| c.channel.as_ref())
    }

    /// Queues `event` on every channel that takes it; never waits.
    pub(super) fn dispatch(&self, event: Event) {
        let kind = render::kind_of(&event);
        let at_ms = now_ms();
        let job = Job { notification: notification_id(at_ms), event: Arc::new(event), at_ms };
        for state in &self.channels {
            if !state.channel.takes(kind) {
                continue;
            }
            if let Err(e) = state.queue.try_send(job.clone()) {
                let reason = match e {
                    mpsc::error::TrySendError::Full(_) => "the channel's queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the channel's worker has stopped",
                };
                tracing::warn!(channel = %state.channel.name, event = %kind, reason, "a notification was dropped");
                let dropped = new_delivery(&state.channel, &job, "dropped", Some(reason.to_string()));
                self.shared.store.submit("the notification log", move |s| s.insert_delivery(&dropped));
            }
        }
    }

    /// Sends `event` to the named channel (all when `None`) now, one attempt each, concurrently; records each
    /// delivery like any other. `Err` names a channel that does not exist.
    pub(super) async fn send_now(
        &self,
        channel: Option<&str>,
        event: Event,
    ) -> Result<Vec<DeliveryOutcome>, String> {
        let chosen: Vec<&ChannelState> =
            self.channels.iter().filter(|c| channel.is_none_or(|name| c.channel.name == name)).collect();
        if let (Some(name), true) = (channel, chosen.is_empty()) {
            return Err(format!("no notification channel named {name:?}"));
        }
        let at_ms = now_ms();
        let job = Job { notification: notification_id(at_ms), event: Arc::new(event), at_ms };
        let sends =
            chosen.into_iter().map(|state| deliver(&self.shared, &state.channel, &state.target, &job, 0));
        Ok(futures_join_all(sends).await)
    }
}

fn new_delivery(channel: &Channel, job: &Job, state: &str, error: Option<String>) -> NewDelivery {
    let rendered = render::render(channel, &job.event, &job.notification, job.at_ms);
    NewDelivery {
        id: format!("{}/{}", job.notification, channel.name),
        notification: job.notification.clone(),
        channel: channel.name.clone(),
        channel_kind: channel.kind.as_str().to_string(),
        event: render::kind_of(&job.event).as_str().to_string(),
        summary: render::summary(&job.event),
        created_ms: job.at_ms,
        state: state.to_string(),
        last_error: error,
        payload: rendered.logged,
    }
}

/// Delivers `job` on `channel`: attempts until one is accepted, one is refused, or `retries` retries were
/// made.
async fn deliver(
    shared: &Shared,
    channel: &Channel,
    target: &Target,
    job: &Job,
    retries: u32,
) -> DeliveryOutcome {
    let started = Instant::now();
    let rendered = render::render(channel, &job.event, &job.notification, job.at_ms);
    let record = new_delivery(channel, job, "pending", None);
    let delivery_id = record.id.clone();
    if let Err(e) = shared.store.call(move |s| s.insert_delivery(&record)).await {
        tracing::error!(channel = %channel.name, error = %e, "could not record a notification delivery");
    }
    let body = Bytes::from(rendered.body);
    let event = render::kind_of(&job.event).as_str();
    let mut outcome = DeliveryOutcome {
        channel: channel.name.clone(),
        delivered: false,
        attempts: 0,
        status: None,
        error: None,
        elapsed: Duration::ZERO,
    };
    for attempt in 1..=retries.saturating_add(1) {
        let at_ms = now_ms();
        let headers = headers(channel, &delivery_id, event, &body, at_ms);
        let sent = Instant::now();
        let answer = target.post(&headers, body.clone(), channel.timeout).await;
        let elapsed = sent.elapsed();
        let (status, verdict) = match &answer {
            Ok(a) => (Some(a.status), classify(a.status, &a.body)),
            Err(e) => (None, Verdict::Retry(e.clone())),
        };
        let last = attempt > retries;
        let (state_name, error) = match &verdict {
            Verdict::Delivered => ("delivered", None),
            Verdict::Retry(e) if !last => ("retrying", Some(e.clone())),
            Verdict::Retry(e) | Verdict::Refused(e) => ("failed", Some(e.clone())),
        };
        outcome.attempts = attempt;
        outcome.status = status;
        outcome.error.clone_from(&error);
        outcome.delivered = verdict == Verdict::Delivered;
        match &error {
            None => {
                tracing::info!(channel = %channel.name, event, attempt, status, "notification delivered")
            }
            Some(e) => {
                tracing::warn!(channel = %channel.name, event, attempt, status, error = %e, state = state_name, "notification attempt failed")
            }
        }
        let attempt_record = AttemptRecord {
            attempt,
            at_ms,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            status,
            error,
        };
        let id = delivery_id.clone();
        let state_owned = state_name.to_string();
        if let Err(e) = shared.store.call(move |s| s.record_attempt(&id, &attempt_record, &state_owned)).await
        {
            tracing::error!(channel = %channel.name, error = %e, "could not record a notification attempt");
        }
        if state_name != "retrying" {
            break;
        }
        let wait = {
            let mut rng = shared.rng.lock().unwrap_or_else(PoisonError::into_inner);
            backoff(channel.backoff, channel.max_backoff, attempt, &mut *rng)
        };
        tokio::time::sleep(wait).await;
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// A worker: delivers its channel's jobs one after another, until its queue is closed and drained.
async fn worker(
    shared: Arc<Shared>,
    channel: Arc<Channel>,
    target: Arc<Target>,
    mut rx: mpsc::Receiver<Job>,
) {
    while let Some(job) = rx.recv().await {
        deliver(&shared, &channel, &target, &job, channel.retries).await;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Delivered,
    /// Worth another attempt.
    Retry(String),
    /// The receiver refused the payload: another attempt would be refused too.
    Refused(String),
}

fn classify(status: u16, body: &str) -> Verdict {
    let text = || {
        let body: String = body.chars().filter(|c| !c.is_control()).take(200).collect();
        if body.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {body}") }
    };
    match status {
        200..=299 => Verdict::Delivered,
        408 | 425 | 429 | 500..=599 => Verdict::Retry(text()),
        _ => Verdict::Refused(text()),
    }
}

/// The headers of one attempt: the delivery id and event, and for a webhook with a secret the timestamp and
/// the signature over `TIMESTAMP.BODY` ([`render::sign`]).
fn headers(channel: &Channel, delivery: &str, event: &str, body: &[u8], at_ms: i64) -> Vec<(String, String)> {
    let mut out = vec![
        (DELIVERY_HEADER.to_string(), delivery.to_string()),
        (EVENT_HEADER.to_string(), event.to_string()),
    ];
    if let ChannelKind::Webhook { secret, .. } = &channel.kind {
        let timestamp = (at_ms / 1000).to_string();
        if let Some(secret) = secret {
            out.push((
                SIGNATURE_HEADER.to_string(),
                render::sign(secret.expose().as_bytes(), &timestamp, body),
            ));
        }
        out.push((TIMESTAMP_HEADER.to_string(), timestamp));
    }
    out
}

/// The wait after failed attempt `attempt` (1-based): `backoff × 2^(attempt-1)`, at most `max`, then a
/// random point in its upper half ("equal jitter"), so that retries of many controllers spread out.
pub fn backoff(base: Duration, max: Duration, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
    let full = base.saturating_mul(factor).min(max);
    let half = full / 2;
    half + full.mul_f64(rng.random_range(0.0..=0.5))
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A notification id: the time and a random suffix.
fn notification_id(at_ms: i64) -> String {
    let suffix: u32 = rand::random();
    format!("n-{at_ms:x}-{suffix:08x}")
}

/// Awaits every future, concurrently, in order.
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, future) in out.iter_mut().zip(pinned.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
        let mut rng = StdRng::seed_from_u64(7);
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for attempt in 1..=8 {
            let full = (base * 2u32.pow(attempt - 1)).min(max);
            for _ in 0..50 {
                let wait = backoff(base, max, attempt, &mut rng);
                assert!(
                    wait >= full / 2 && wait <= full,
                    "attempt {attempt}: {wait:?} outside {:?}..={full:?}",
                    full / 2
                );
            }
        }
        // Seeded: the same waits again.
        let waits = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..=5).map(|a| backoff(base, max, a, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(waits(3), waits(3));
        assert!(backoff(base, max, u32::MAX, &mut rng) <= max);
    }

    #[test]
    fn statuses_are_delivered_retried_or_refused() {
        assert_eq!(classify(202, ""), Verdict::Delivered);
        for status in [408, 429, 500, 503] {
            assert!(
                matches!(classify(status, "busy"), Verdict::Retry(e) if e == format!("HTTP {status}: busy"))
            );
        }
        for status in [301, 400, 401, 404] {
            assert!(matches!(classify(status, ""), Verdict::Refused(_)), "{status}");
        }
    }
}
