//! Window statistics over a slice of events: counts, error ratio, rate, exact latency percentiles and the
//! fraction of fast requests. Latencies are compared in integer microseconds, so a threshold on a bucket
//! boundary means the same thing here as in a Prometheus histogram.

use std::time::Duration;

use crate::signals::Event;

/// Float slack for comparing ratios with objectives (`0.99 × 3000` is not exactly `2970` in binary). Here, below
/// both the evaluation and the formatting that read it.
pub(crate) const TOLERANCE: f64 = 1e-9;

/// A duration in whole microseconds (saturating: no real latency reaches `u64::MAX` µs).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Whether an event counts as fast: it succeeded (a failed request is not fast) and took at most `threshold`.
pub fn is_fast(event: &Event, threshold: Duration) -> bool {
    event.ok && micros(event.latency) <= micros(threshold)
}

/// Counts over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    pub total: u64,
    /// Failed events (`ok == false`).
    pub bad: u64,
}

impl WindowStats {
    /// Counts every event in `events`.
    pub fn of(events: &[Event]) -> Self {
        Self::of_iter(events.iter())
    }

    /// Counts the events whose `at` is in `[from, to)`.
    pub fn between(events: &[Event], from: Duration, to: Duration) -> Self {
        Self::of_iter(events.iter().filter(|e| e.at >= from && e.at < to))
    }

    fn of_iter<'a>(events: impl Iterator<Item = &'a Event>) -> Self {
        let mut stats = WindowStats::default();
        for e in events {
            stats.total += 1;
            stats.bad += u64::from(!e.ok);
        }
        stats
    }

    pub fn good(&self) -> u64 {
        self.total - self.bad
    }

    /// `bad / total`; `None` without events (no data is not a zero error ratio).
    pub fn error_ratio(&self) -> Option<f64> {
        (self.total > 0).then(|| self.bad as f64 / self.total as f64)
    }

    /// Events per second over a window of length `window`; `0` for an empty window.
    pub fn rate(&self, window: Duration) -> f64 {
        rate_per_second(self.total, window)
    }
}

/// `count` events over `window`, per second; `0` for an empty window.
pub fn rate_per_second(count: u64, window: Duration) -> f64 {
    let seconds = window.as_secs_f64();
    if seconds > 0.0 { count as f64 / seconds } else { 0.0 }
}

/// Exact latency percentiles (nearest rank) of a set of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencySummary {
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Exact p50/p95/p99/max over every event's latency, failed ones included (a timeout's latency is part of
/// what users saw); `None` without events.
pub fn latency_summary(events: &[Event]) -> Option<LatencySummary> {
    let mut us: Vec<u64> = events.iter().map(|e| micros(e.latency)).collect();
    us.sort_unstable();
    let at = |q: f64| percentile_of_sorted(&us, q).map(Duration::from_micros);
    Some(LatencySummary { p50: at(0.50)?, p95: at(0.95)?, p99: at(0.99)?, max: at(1.0)? })
}

/// Nearest-rank percentile of ascending `sorted` values: the smallest value with at least `q` of the values at
/// or below it. `None` when empty.
pub fn percentile_of_sorted(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // Rank in 1..=n; the small epsilon keeps 0.95 × 100 from becoming rank 96 through float noise.
    let rank = (q.clamp(0.0, 1.0) * n as f64 - 1e-9).ceil().max(1.0) as usize;
    sorted.get(rank.min(n) - 1).copied()
}

/// How many events are fast (see [`is_fast`]).
pub fn count_fast(events: &[Event], threshold: Duration) -> u64 {
    let limit = micros(threshold);
    events.iter().filter(|e| e.ok && micros(e.latency) <= limit).count() as u64
}

/// The fraction of events that are fast; `None` without events.
pub fn fraction_fast(events: &[Event], threshold: Duration) -> Option<f64> {
    (!events.is_empty()).then(|| count_fast(events, threshold) as f64 / events.len() as f64)
}
