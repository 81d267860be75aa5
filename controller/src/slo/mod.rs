//! Judging signals: window statistics, SLO verdicts with reasons in words and numbers, time to recover, and
//! the guardrails the engine checks every second.
//!
//! Everything here is pure: events and the current time are passed in, nothing sleeps or reads a clock, so
//! tests drive it with synthetic event streams.
//!
//! # Rules
//! - **Errors**: good = `ok` events; pass when `good / total ≥ objective`.
//! - **Latency** is a ratio: good = `ok && latency ≤ threshold` (a failed request is not fast, however quickly
//!   it failed: it served no one), compared in integer microseconds; `p99 < 800ms` reads as objective 99 %,
//!   threshold 800 ms, and `<` means `≤` like a histogram's `le` bound (so proxy and Prometheus histograms
//!   judge it exactly). It is not the statistical percentile of the latencies.
//! - **Time to recover**: per event, at the events' own times (see [`time_to_recover`]).
//! - **Traffic**: the rate during the window against the baseline rate; pass when `rate ≥ min × baseline`, so a
//!   fault that stops traffic does not look healthy.
//! - **Saturation**: samples of a utilisation, a fraction of a capacity (usually 0..1; the load per CPU can
//!   exceed 1); pass when the peak is `≤ max`, which may be above 100% too.
//! - **Minimum events** (`reference/slo-math.md` §3 with burn threshold 1): judging objective `S` needs
//!   `N_min = ceil(1 / (1 − S))` events, the count below which one bad event alone decides the verdict. With
//!   fewer, the result is *failed* only if it would miss the objective even had the window held `N_min`
//!   events with all the missing ones good; otherwise it is *inconclusive*, never a pass.
//!
//! The guardrail rules are documented on [`GuardrailState`].

mod evaluate;
pub mod format;
mod guardrails;
pub mod stats;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::experiment::model::Signal;
use crate::signals::Event;

pub use evaluate::{
    evaluate, evaluate_counted, evaluate_events, is_event_ratio, latency_target, min_events, time_to_recover,
};
pub use guardrails::{GuardrailBasis, GuardrailState, KnownOrder, SeenIndex, TRAFFIC_WINDOW, Trip, TripKind};

/// A named stretch of the run that an SLO is judged over (a fault step, the whole method, recovery).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    /// Shown in reasons: `during 'slow payments'`.
    pub name: String,
    /// Inclusive, since the run started.
    pub start: Duration,
    /// Exclusive, since the run started.
    pub end: Duration,
}

impl Phase {
    pub fn new(name: impl Into<String>, start: Duration, end: Duration) -> Self {
        Phase { name: name.into(), start, end }
    }

    /// Whether `at` falls in `[start, end)`.
    pub fn contains(&self, at: Duration) -> bool {
        at >= self.start && at < self.end
    }

    pub fn len(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len().is_zero()
    }
}

/// One sample of a utilisation (CPU, memory, in-flight against a limit), for saturation SLOs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaturationSample {
    /// When it was measured, since the run started.
    pub at: Duration,
    /// Utilisation as a fraction of the capacity: in 0..=1 for CPU and memory, above 1 for a host whose load
    /// average exceeds its CPU count.
    pub value: f64,
}

/// What the evaluation of one SLO sees besides the SLO itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observations<'a> {
    /// The SLO's source events, at any times: evaluation keeps those inside the window.
    pub events: &'a [Event],
    /// Utilisation samples, for saturation SLOs.
    pub saturation: &'a [SaturationSample],
    /// Events per second during the baseline window, for traffic SLOs.
    pub baseline_rate: Option<f64>,
}

impl<'a> Observations<'a> {
    pub fn events(events: &'a [Event]) -> Self {
        Observations { events, ..Observations::default() }
    }

    pub fn with_baseline_rate(mut self, rate: f64) -> Self {
        self.baseline_rate = Some(rate);
        self
    }

    pub fn with_saturation(mut self, samples: &'a [SaturationSample]) -> Self {
        self.saturation = samples;
        self
    }
}

/// The verdict on one SLO over one window, as reported in the journal, JUnit and Markdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloResult {
    pub name: String,
    pub signal: Signal,
    /// The phase it was judged over.
    pub window: String,
    /// `Some(true)` passed, `Some(false)` failed, `None` inconclusive (too little data to judge).
    pub passed: Option<bool>,
    /// Errors/latency: the good fraction; traffic: the rate as a fraction of the baseline; saturation: the peak
    /// utilisation. `0` when nothing was observed.
    pub observed: f64,
    /// The fraction to reach (errors, latency, traffic) or not to exceed (saturation).
    pub objective: f64,
    /// Good events (errors/latency) or events seen in the window (traffic); saturation: samples within the
    /// ceiling.
    pub good: u64,
    /// Events (errors/latency/traffic) or samples (saturation) in the window.
    pub total: u64,
    /// The verdict in words and numbers, e.g. `fast: 97.8% of 3,012 requests ≤ 800 ms during 'slow payments',
    /// objective 99%`.
    pub reason: String,
}

impl SloResult {
    pub fn is_inconclusive(&self) -> bool {
        self.passed.is_none()
    }
}
