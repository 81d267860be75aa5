//! Reconnect backoff: exponential with jitter, reset after a healthy session.

use std::time::Duration;

use rand::Rng;

// === reconnect backoff ===

/// Exponential backoff with jitter: each delay is drawn from the upper half of a window that doubles from `min`
/// up to `max`.
#[derive(Debug)]
pub(super) struct Backoff {
    pub(super) min: Duration,
    pub(super) max: Duration,
    pub(super) window: Duration,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Backoff { min, max, window: min }
    }

    pub(super) fn reset(&mut self) {
        self.window = self.min;
    }

    pub(super) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let window = self.window;
        self.window = (window * 2).min(self.max);
        // Half fixed, half random: agents that lost the same controller do not all dial again at once.
        window / 2 + window.mul_f64(rng.random_range(0.0..=0.5))
    }
}
