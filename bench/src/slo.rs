//! SLO evaluation cost per engine tick: 100 SLOs over synthetic event logs at 10k events/s, timed the way
//! `chaos run` evaluates them once a second (the guardrails, then the progress line), in-process through
//! `chaos-controller`. Baseline in the same run: copying the same events out of the logs (`EventLog::between`,
//! the reads a tick makes) without judging them.
//!
//! The tick mirrors `controller/src/engine/run.rs` (`guardrails()` and `progress_line()`, both private):
//! per errors/latency SLO, `GuardrailState::check_watch` on its source (one `watch` per source), then
//! `between(method_start, now)` on its source + `evaluate_events` + the progress text.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chaos_controller::engine::{Guard, guards, source_key, watch_tick};
use chaos_controller::experiment::{self, Experiment};
use chaos_controller::signals::{Event, EventLog};
use chaos_controller::slo;
use serde::Serialize;

use crate::profile::Profile;

/// SLOs evaluated per tick.
pub const SLOS: usize = 100;
/// Events per second over all sources.
pub const EVENTS_PER_SEC: u64 = 10_000;
/// Baseline before the method (the engine's default), seconds of events.
const BASELINE: Duration = Duration::from_secs(2);

/// One layout of the same load: how many sources the 10k events/s are split over.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Load sources (each SLO reads one; SLOs spread round-robin).
    pub sources: usize,
    /// Seconds of method before the measured tick (events since the method started).
    pub method_secs: u64,
    /// Events in all logs (baseline included).
    pub events_total: usize,
    /// Events one tick copies out of the logs (guardrail + every SLO).
    pub events_read_per_tick: usize,
    pub ticks: usize,
    /// Median and p90 of one full tick, µs.
    pub tick_p50_us: f64,
    pub tick_p90_us: f64,
    /// Median of the copies alone (the same `between` calls), µs.
    pub copy_p50_us: f64,
}

impl Row {
    /// Tick cost as a fraction of the engine's 1 s tick interval.
    pub fn tick_fraction(&self) -> f64 {
        self.tick_p50_us / 1e6
    }
}

/// One measured layout: (sources, seconds into the method) and its row or error.
pub type Measured = ((usize, u64), Result<Row, String>);

/// Measures the profile's layouts (e.g. 10 sources × 1k events/s, all SLOs on 1 source × 10k events/s).
pub fn run(profile: &Profile) -> Vec<Measured> {
    let mut rows = Vec::new();
    for &(sources, method_secs, ticks) in &profile.slo_layouts {
        eprintln!(
            "slo: {SLOS} SLOs, {EVENTS_PER_SEC} events/s over {sources} source(s), {method_secs} s of method, \
             {ticks} ticks"
        );
        let r = measure(sources, method_secs, ticks);
        match &r {
            Ok(row) => eprintln!(
                "  tick p50 {:.0} µs, p90 {:.0} µs; copies alone p50 {:.0} µs",
                row.tick_p50_us, row.tick_p90_us, row.copy_p50_us
            ),
            Err(e) => eprintln!("  error: {e:#}"),
        }
        rows.push(((sources, method_secs), r.map_err(|e| format!("{e:#}"))));
    }
    rows
}

/// The experiment: `sources` loads, 100 SLOs (errors and latency alternating) and every guardrail.
fn experiment_text(sources: usize) -> String {
    let mut text = String::from("apiVersion: chaos/v1\ntitle: slo tick benchmark\nload:\n");
    let per_source = EVENTS_PER_SEC / sources as u64;
    for s in 0..sources {
        text.push_str(&format!(
            "  - {{ name: l{s}, http: {{ url: \"http://127.0.0.1:9/\" }}, rate: {per_source}/s }}\n"
        ));
    }
    text.push_str("slos:\n");
    for i in 0..SLOS {
        let source = i % sources;
        if i % 2 == 0 {
            text.push_str(&format!(
                "  - {{ name: avail{i}, signal: errors, objective: 99%, source: {{ load: l{source} }} }}\n"
            ));
        } else {
            let ms = 200 + 10 * i;
            text.push_str(&format!(
                "  - {{ name: fast{i}, signal: latency, percentile: \"p99 < {ms}ms\", source: {{ load: l{source} }} }}\n"
            ));
        }
    }
    text.push_str(
        "guardrails:\n  budget: 5%\n  tripwire: { window: 10s, burn_rate: 14.4 }\n  min_traffic: 50%\n  no_data: 5s\n",
    );
    text.push_str("baseline: 2s\nmethod:\n  - { wait: 60s }\nrecovery: 0s\n");
    text
}

/// Fills one log per source: baseline + `method_secs` at the source's rate, 0.1% errors, latencies 1–50 ms.
fn fill_logs(exp: &Experiment, sources: usize, method_secs: u64) -> BTreeMap<String, Arc<EventLog>> {
    let mut logs = BTreeMap::new();
    let per_source = EVENTS_PER_SEC / sources as u64;
    let span = BASELINE + Duration::from_secs(method_secs);
    let count = per_source * span.as_secs();
    let step = Duration::from_nanos(1_000_000_000 / per_source);
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    for load in &exp.load {
        let log = Arc::new(EventLog::default());
        for n in 0..count {
            // xorshift64: deterministic, no dependency.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let latency = Duration::from_micros(1_000 + rng % 49_000);
            let ok = !rng.is_multiple_of(1000);
            log.push(Event { at: step * n as u32, latency, ok });
        }
        logs.insert(format!("load:{}", load.name), log);
    }
    logs
}

fn measure(sources: usize, method_secs: u64, ticks: usize) -> Result<Row> {
    let text = experiment_text(sources);
    let exp = experiment::parse("slo-bench.yaml", &text, &[])
        .map_err(|d| anyhow::anyhow!("the benchmark's experiment does not validate:\n{d}"))?;
    let logs = fill_logs(&exp, sources, method_secs);
    let method_start = BASELINE;
    let now = method_start + Duration::from_secs(method_secs);

    // As `guardrails()` sets them up, once per run: one guard per errors/latency SLO, on its own source.
    let mut state = guards(&exp, method_start);
    for guard in &mut state {
        let log = logs.get(&guard.source).context("no log for a guarded source")?;
        let baseline_rate = log.between(Duration::ZERO, method_start).len() as f64 / BASELINE.as_secs_f64();
        guard.state.set_baseline_rate(Some(baseline_rate));
    }
    let ratio_slos: Vec<_> = exp.slos.iter().filter(|s| slo::is_event_ratio(s.signal)).collect();
    if ratio_slos.len() != SLOS {
        bail!("expected {SLOS} errors/latency SLOs, the experiment has {}", ratio_slos.len());
    }
    for s in &ratio_slos {
        logs.get(&source_key(s)).context("SLO without a log")?;
    }

    // The engine's own per-second work, as `chaos run` does it.
    // Each source's events since the method started are read once per tick.
    let read_per_tick: usize = logs.values().map(|l| l.between(method_start, now).len()).sum();
    let tick = |state: &mut [Guard]| -> (Option<slo::Trip>, String, usize) {
        let (trip, line) = watch_tick(&exp, &logs, state, "wait", method_start, now);
        (trip, line, read_per_tick)
    };
    // Baseline: only copying each source's events since the method started, once.
    let copy = || -> usize { logs.values().map(|log| black_box(log.between(method_start, now)).len()).sum() };

    // Warm-up tick; a healthy stream must not trip (a trip would make later checks free).
    let (trip, line, read) = tick(&mut state);
    if let Some(trip) = trip {
        bail!("the synthetic stream tripped a guardrail: {}", trip.reason);
    }
    if line.contains("MISS") {
        bail!("the synthetic stream misses an SLO: {line}");
    }
    let mut tick_samples = Vec::with_capacity(ticks);
    let mut copy_samples = Vec::with_capacity(ticks);
    for _ in 0..ticks {
        let t = Instant::now();
        black_box(tick(&mut state));
        tick_samples.push(t.elapsed());
        let t = Instant::now();
        black_box(copy());
        copy_samples.push(t.elapsed());
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    tick_samples.sort_unstable();
    copy_samples.sort_unstable();
    Ok(Row {
        sources,
        method_secs,
        events_total: logs.values().map(|l| l.len()).sum(),
        events_read_per_tick: read,
        ticks,
        tick_p50_us: us(crate::stats::percentile(&tick_samples, 50.0)),
        tick_p90_us: us(crate::stats::percentile(&tick_samples, 90.0)),
        copy_p50_us: us(crate::stats::percentile(&copy_samples, 50.0)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn experiment_validates_and_a_short_run_measures() {
        for sources in [1, 10] {
            let exp = experiment::parse("t.yaml", &experiment_text(sources), &[]).unwrap();
            assert_eq!(exp.slos.len(), SLOS);
            assert_eq!(exp.load.len(), sources);
        }
        let row = measure(10, 1, 2).unwrap();
        assert_eq!(row.events_total, 30_000);
        // Each source read once per tick: 1 s of the method at 10k events/s in all.
        assert_eq!(row.events_read_per_tick, 10_000);
        assert!(row.tick_p50_us > 0.0);
    }
}
