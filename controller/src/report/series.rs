//! The journal's time series and windows: per SLO its SLI per step, per source a summary before, during and
//! after the faults, host and process saturation peaks per step, and the run's phases and fault windows with
//! their exact start and end (the journal module finds those in the timeline). Also the rounding every series
//! number goes through ([`round_sig`], [`round_ms`]) and the bound on a series' length ([`series_step`]).
//!
//! Series are columnar: point `i` of a series covers `[i × step_ms, (i + 1) × step_ms)` since the run started,
//! so a one-hour run with 20 series stays a few megabytes of JSON (see [`MAX_POINTS`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::experiment::model::Signal;
use crate::signals::Event;
use crate::slo::stats::{WindowStats, latency_summary};

/// The most points a series holds: one per second up to 20 minutes, then one per `ceil(duration / 1,200)`
/// whole seconds (3 s for a one-hour run). A series point is at most ~100 bytes of JSON, so a series stays
/// under ~120 KB whatever the run's length.
pub const MAX_POINTS: u64 = 1200;

/// The step of a run's series: 1 s, or the whole number of seconds that keeps a series of a run of `duration`
/// within [`MAX_POINTS`].
pub fn series_step(duration: Duration) -> Duration {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    Duration::from_secs(secs.div_ceil(MAX_POINTS).max(1))
}

/// `x` to 6 significant digits (ratios, rates, utilisations): `0.99123456` → `0.991235`. Non-finite values
/// stay as they are (the caller keeps them out of series).
pub fn round_sig(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // The shortest decimal `{:e}` parses back to is the nearest f64: it serialises as those 6 digits.
    format!("{x:.5e}").parse().unwrap_or(x)
}

/// Milliseconds to the microsecond (0.001 ms): `9.351999999999999` → `9.352`.
pub fn round_ms(ms: f64) -> f64 {
    if !ms.is_finite() {
        return ms;
    }
    (ms * 1000.0).round() / 1000.0
}

/// A lifecycle phase (preflight, baseline, method, recovery, steady state, rollbacks) from its start to the
/// next phase's start, or to the end of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseWindow {
    pub name: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// A fault, from its injection to its revert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// The step's name.
    pub name: String,
    /// What was applied, in words.
    pub detail: String,
    pub start_ms: u64,
    /// When it was reverted (or found lost); equal to `start_ms` for an instant fault (a kill).
    pub end_ms: u64,
    /// Nothing to revert: the fault happened at `start_ms` (a kill).
    pub instant: bool,
    /// Reverted as planned; false when the revert failed or the fault was lost before its planned end.
    pub reverted: bool,
}

/// One SLO's SLI over the run, with its objective, where it broke and when it came back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloSeries {
    pub name: String,
    pub signal: Signal,
    /// The source key: `load:NAME`, `proxy:NAME`, `host:METRIC`, …
    pub source: String,
    /// Errors and latency: the good fraction to reach; traffic: the fraction of the baseline rate to reach;
    /// saturation: the utilisation not to exceed.
    pub objective: f64,
    /// Latency SLOs: the threshold a request must meet to be good.
    pub threshold_ms: Option<f64>,
    /// Per step: errors, the fraction of requests that succeeded; latency, the fraction that were fast;
    /// traffic, the rate as a fraction of the baseline rate; saturation, the peak utilisation. `null` for a
    /// step without data.
    pub sli: Vec<Option<f64>>,
    /// The SLO failed: the first moment of its judged window when the step's SLI missed the objective. `None`
    /// when the SLO did not fail.
    pub breach_ms: Option<u64>,
    /// When the last fault ended (what time to recover counts from); event-ratio SLOs only.
    pub fault_end_ms: Option<u64>,
    /// When the SLO held again (`fault_end_ms` + time to recover); `None` when not recovered or not measured.
    pub recovered_ms: Option<u64>,
}

impl SloSeries {
    /// Whether `value` misses `objective` for this SLO's signal (saturation is a ceiling, the rest floors).
    pub fn misses(&self, value: f64) -> bool {
        misses(self.signal, value, self.objective)
    }
}

/// Whether `value` misses `objective` for `signal` (saturation is a ceiling, the rest floors).
pub fn misses(signal: Signal, value: f64, objective: f64) -> bool {
    const SLACK: f64 = 1e-9;
    match signal {
        Signal::Saturation => value > objective + SLACK,
        _ => value < objective - SLACK,
    }
}

/// Utilisation samples of one host or process source, as the peak per step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaturationSeries {
    /// The source key: `host:cpu`, `processes:TARGET:METRIC`, `agents:TARGET:METRIC`.
    pub source: String,
    /// Samples taken.
    pub samples: u64,
    /// Per step, the highest sample (a fraction of the capacity); `null` for a step without one.
    pub peak: Vec<Option<f64>>,
}

/// What one source measured over one stretch of the run: counts, error ratio and exact latency percentiles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub from_ms: u64,
    pub to_ms: u64,
    pub requests: u64,
    pub errors: u64,
    /// `None` without requests.
    pub error_ratio: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests per second over the stretch.
    pub rate: f64,
}

impl WindowSummary {
    /// Summarises the events sent in `[from, to)`.
    pub fn of(events: &[Event], from: Duration, to: Duration) -> WindowSummary {
        let inside: Vec<Event> = events.iter().filter(|e| e.at >= from && e.at < to).copied().collect();
        let stats = WindowStats::of(&inside);
        let latency = latency_summary(&inside);
        let ms = |d: Duration| round_ms(d.as_secs_f64() * 1e3);
        WindowSummary {
            from_ms: u64::try_from(from.as_millis()).unwrap_or(u64::MAX),
            to_ms: u64::try_from(to.as_millis()).unwrap_or(u64::MAX),
            requests: stats.total,
            errors: stats.bad,
            error_ratio: stats.error_ratio().map(round_sig),
            p50_ms: latency.map(|l| ms(l.p50)),
            p95_ms: latency.map(|l| ms(l.p95)),
            p99_ms: latency.map(|l| ms(l.p99)),
            rate: round_sig(stats.rate(to.saturating_sub(from))),
        }
    }
}

/// One source measured before, during and after the faults: before is the baseline (up to the first
/// fault), during from the first fault's injection to the last one's end, after from there to the end of the
/// recovery window. Without fault windows, during is the method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceSummary {
    pub source: String,
    pub before: WindowSummary,
    pub during: WindowSummary,
    pub after: WindowSummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_sensible_digits() {
        assert_eq!(round_ms(9.351999999999999), 9.352);
        assert_eq!(serde_json::to_string(&round_ms(9.351999999999999)).unwrap(), "9.352");
        assert_eq!(round_sig(0.991234567), 0.991235);
        assert_eq!(serde_json::to_string(&round_sig(1.0 / 0.6)).unwrap(), "1.66667");
        assert_eq!(round_sig(0.0), 0.0);
        assert_eq!(round_sig(123456789.0), 123457000.0);
    }

    #[test]
    fn the_step_bounds_every_series() {
        assert_eq!(series_step(Duration::from_secs(30)), Duration::from_secs(1));
        assert_eq!(series_step(Duration::from_secs(1200)), Duration::from_secs(1));
        assert_eq!(series_step(Duration::from_millis(1_200_001)), Duration::from_secs(2));
        assert_eq!(series_step(Duration::from_secs(3600)), Duration::from_secs(3));
        for secs in [1u64, 59, 1201, 3600, 86_400, 7 * 86_400] {
            let step = series_step(Duration::from_secs(secs));
            assert!(secs.div_ceil(step.as_secs()) <= MAX_POINTS, "{secs} s in steps of {step:?}");
        }
    }
}
