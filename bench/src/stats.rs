//! Latency sample summaries (nearest-rank percentiles) and small number helpers.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of latency samples, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

impl Summary {
    /// Summarises `samples` (sorted in place). `None` when empty.
    pub fn from_samples(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let total: f64 = samples.iter().copied().map(us).sum();
        Some(Self {
            samples: samples.len(),
            p50_us: us(percentile(samples, 50.0)),
            p99_us: us(percentile(samples, 99.0)),
            mean_us: total / samples.len() as f64,
            max_us: us(samples[samples.len() - 1]),
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `value / base`, or `None` when the base is not positive.
pub fn ratio(value: f64, base: f64) -> Option<f64> {
    (base > 0.0).then(|| value / base)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let s = Summary::from_samples(&mut v).unwrap();
        assert_eq!(s.samples, 100);
        assert!((s.p50_us - 50.0).abs() < 1e-9);
        assert!((s.p99_us - 99.0).abs() < 1e-9);
        assert!((s.max_us - 100.0).abs() < 1e-9);
        assert!(Summary::from_samples(&mut []).is_none());
        let mut one = vec![Duration::from_micros(7)];
        assert!((Summary::from_samples(&mut one).unwrap().p99_us - 7.0).abs() < 1e-9);
    }
}
