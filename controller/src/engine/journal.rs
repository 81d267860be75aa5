//! The journal of a run ([`journal`]): what the reports (JSON, JUnit, Markdown, HTML) are made from, built
//! from the engine's [`Outcome`]: the timeline, verdicts and, from the run's event logs and samples, the time
//! series (per source, per SLO, per saturation source), the phase and fault windows and what each source
//! measured before, during and after the faults.

use std::time::Duration;

use super::{Outcome, RunConfig, source_key};
use crate::experiment::Checked;
use crate::experiment::model::{Signal, Slo};
use crate::probes::ProbeResult;
use crate::report::series::{
    self, FaultWindow, PhaseWindow, SaturationSeries, SloSeries, SourceSummary, WindowSummary, round_ms,
    round_sig,
};
use crate::report::{RecoveryOutcome, TimelineKind};
use crate::signals::Event;
use crate::slo::SloResult;
use crate::slo::stats::fraction_fast;

/// The journal of a run: what the reports (JSON, JUnit, Markdown, HTML) are made from.
pub fn journal(
    exp: &Checked,
    config: &RunConfig,
    outcome: &Outcome,
    started: std::time::SystemTime,
) -> crate::report::Journal {
    use crate::report::{self, ExperimentInfo, Journal, ProbeOutcome, ProbePhase, TimelineEntry};
    let ms = report::journal::millis;
    let probes = |phase: ProbePhase, list: &[ProbeResult]| -> Vec<ProbeOutcome> {
        list.iter()
            .map(|p| ProbeOutcome {
                name: p.name.clone(),
                phase,
                ok: p.ok,
                detail: p.detail.clone(),
                elapsed_ms: ms(p.elapsed),
            })
            .collect()
    };
    let mut all_probes = probes(ProbePhase::Before, &outcome.probes_before);
    all_probes.extend(probes(ProbePhase::After, &outcome.probes_after));
    let step = series::series_step(outcome.duration);
    let mut signals = Vec::new();
    for (source, log) in &outcome.logs {
        let events = log.between(Duration::ZERO, outcome.duration + Duration::from_secs(1));
        signals.extend(report::signal_samples(source, &events, Duration::ZERO, outcome.duration, step));
    }
    let timeline: Vec<TimelineEntry> = outcome
        .timeline
        .iter()
        .map(|t| TimelineEntry {
            at_ms: ms(t.at),
            kind: t.kind.journal(),
            name: t.name.clone(),
            detail: t.detail.clone(),
            ok: t.ok,
        })
        .collect();
    let duration_ms = ms(outcome.duration);
    let mut phases = report::journal::phase_windows(&timeline, duration_ms);
    // The method ends when its last fault is reverted, exactly: the engine knows it better than the timeline.
    if let (Some((_, end)), Some(method)) =
        (outcome.method_window, phases.iter_mut().find(|p| p.name == "method"))
    {
        method.end_ms = ms(end).max(method.start_ms);
    }
    let faults = report::journal::fault_windows(&timeline);
    let recovery: Vec<RecoveryOutcome> = outcome
        .recovery
        .iter()
        .map(|(slo, ttr)| RecoveryOutcome { slo: slo.clone(), time_to_recover_ms: ttr.map(ms) })
        .collect();
    let context = SeriesContext { outcome, step, phases: &phases, recovery: &recovery, timeline: &timeline };
    Journal {
        chaos_version: env!("CARGO_PKG_VERSION").to_string(),
        experiment: ExperimentInfo {
            title: exp.title.clone(),
            hypothesis: exp.hypothesis.clone(),
            file: Some(config.file.clone()),
        },
        seed: config.seed,
        started_at: report::format_rfc3339(started),
        duration_ms,
        verdict: outcome.verdict,
        reasons: outcome.reasons.clone(),
        probes: all_probes,
        slos: outcome.slos.clone(),
        signals,
        step_ms: ms(step),
        slo_series: exp
            .slos
            .iter()
            .filter_map(|slo| {
                let result = outcome.slos.iter().find(|r| r.name == slo.name)?;
                Some(context.slo_series(slo, result))
            })
            .collect(),
        saturation: context.saturation_series(),
        measured: context.measured(&faults),
        detection: outcome.detection.clone(),
        recovery,
        faults,
        timeline,
        phases,
    }
}

/// What the series of one run are computed from.
struct SeriesContext<'a> {
    outcome: &'a Outcome,
    step: Duration,
    phases: &'a [PhaseWindow],
    recovery: &'a [RecoveryOutcome],
    timeline: &'a [crate::report::TimelineEntry],
}

impl SeriesContext<'_> {
    fn points(&self) -> usize {
        let n = self.outcome.duration.as_nanos().div_ceil(self.step.as_nanos().max(1));
        usize::try_from(n).unwrap_or(0)
    }

    fn phase(&self, name: &str) -> Option<(Duration, Duration)> {
        self.phases
            .iter()
            .find(|p| p.name == name)
            .map(|p| (Duration::from_millis(p.start_ms), Duration::from_millis(p.end_ms)))
    }

    /// The events of `key`'s log, grouped per step.
    fn buckets(&self, key: &str) -> Vec<Vec<Event>> {
        let mut buckets: Vec<Vec<Event>> = vec![Vec::new(); self.points()];
        let Some(log) = self.outcome.logs.get(key) else { return buckets };
        let step = self.step.as_nanos().max(1);
        for e in log.between(Duration::ZERO, self.outcome.duration) {
            if let Some(b) = usize::try_from(e.at.as_nanos() / step).ok().and_then(|i| buckets.get_mut(i)) {
                b.push(e);
            }
        }
        buckets
    }

    /// One SLO's SLI per step, where it broke (if it failed) and when it recovered.
    fn slo_series(&self, slo: &Slo, result: &SloResult) -> SloSeries {
        let key = source_key(slo);
        let step_s = self.step.as_secs_f64();
        let threshold = match slo.signal {
            Signal::Latency => crate::slo::latency_target(slo).ok().map(|(_, t)| t),
            _ => None,
        };
        let sli: Vec<Option<f64>> = match slo.signal {
            Signal::Errors => self
                .buckets(&key)
                .iter()
                .map(|b| (!b.is_empty()).then(|| b.iter().filter(|e| e.ok).count() as f64 / b.len() as f64))
                .collect(),
            Signal::Latency => {
                let t = threshold.unwrap_or(Duration::MAX);
                self.buckets(&key).iter().map(|b| fraction_fast(b, t)).collect()
            }
            Signal::Traffic => {
                // The rate of served requests against the baseline's, as the SLO judges it.
                let baseline =
                    self.phase("baseline").zip(self.outcome.logs.get(&key)).and_then(|((from, to), log)| {
                        let served = log.between(from, to).iter().filter(|e| e.ok).count();
                        let len = to.saturating_sub(from).as_secs_f64();
                        (len > 0.0 && served > 0).then(|| served as f64 / len)
                    });
                self.buckets(&key)
                    .iter()
                    .map(|b| baseline.map(|rate| b.iter().filter(|e| e.ok).count() as f64 / step_s / rate))
                    .collect()
            }
            Signal::Saturation => self.peaks(&key),
        };
        let sli: Vec<Option<f64>> =
            sli.into_iter().map(|v| v.filter(|v| v.is_finite()).map(round_sig)).collect();
        let method = self.outcome.method_window;
        let breach_ms = match (result.passed, method) {
            (Some(false), Some((start, end))) => {
                let step_ms = crate::report::journal::millis(self.step);
                let (start_ms, end_ms) =
                    (crate::report::journal::millis(start), crate::report::journal::millis(end));
                let first = sli.iter().enumerate().find_map(|(i, v)| {
                    let at = i as u64 * step_ms;
                    let inside = at + step_ms > start_ms && at < end_ms;
                    (inside && v.is_some_and(|v| series::misses(slo.signal, v, result.objective)))
                        .then_some(at.max(start_ms))
                });
                // Event ratios: at the first bad event of that step, to the millisecond.
                let first = first.map(|at| {
                    let good = |e: &Event| match threshold {
                        Some(t) => crate::slo::stats::is_fast(e, t),
                        None => e.ok,
                    };
                    let bad = crate::slo::is_event_ratio(slo.signal)
                        .then(|| self.outcome.logs.get(&key))
                        .flatten()
                        .and_then(|log| {
                            let from = Duration::from_millis(at);
                            let to = Duration::from_millis((at / step_ms + 1) * step_ms).min(end);
                            log.between(from, to).iter().filter(|e| !good(e)).map(|e| e.at).min()
                        });
                    bad.map_or(at, crate::report::journal::millis)
                });
                // Failed on too few events: no step missed on its own; the breach is the judged window.
                Some(first.unwrap_or(start_ms))
            }
            _ => None,
        };
        let fault_end_ms = crate::slo::is_event_ratio(slo.signal).then(|| self.fault_end_ms()).flatten();
        let ttr = self.recovery.iter().find(|r| r.slo == slo.name).and_then(|r| r.time_to_recover_ms);
        SloSeries {
            name: slo.name.clone(),
            signal: slo.signal,
            source: key,
            objective: round_sig(result.objective),
            threshold_ms: threshold.map(|t| round_ms(t.as_secs_f64() * 1e3)),
            sli,
            breach_ms,
            fault_end_ms,
            recovered_ms: fault_end_ms.zip(ttr).map(|(end, ttr)| end + ttr),
        }
    }

    /// When the last fault ended, as time to recover counts it: the last successful revert, or injection for
    /// a fault with nothing to revert, no later than the method's end; the method's end without faults.
    fn fault_end_ms(&self) -> Option<u64> {
        let (_, method_end) = self.outcome.method_window?;
        let method_end = crate::report::journal::millis(method_end);
        let last = self
            .timeline
            .iter()
            .rev()
            .find(|e| {
                matches!(e.kind, TimelineKind::FaultReverted | TimelineKind::FaultInjected)
                    && e.ok == Some(true)
            })
            .map_or(method_end, |e| e.at_ms);
        Some(last.min(method_end))
    }

    /// The highest saturation sample of `key` per step.
    fn peaks(&self, key: &str) -> Vec<Option<f64>> {
        let mut peaks: Vec<Option<f64>> = vec![None; self.points()];
        let step = self.step.as_nanos().max(1);
        for s in self.outcome.saturation.get(key).into_iter().flatten() {
            if let Some(p) = usize::try_from(s.at.as_nanos() / step).ok().and_then(|i| peaks.get_mut(i))
                && s.value.is_finite()
            {
                *p = Some(p.map_or(s.value, |v: f64| v.max(s.value)));
            }
        }
        peaks.into_iter().map(|p| p.map(round_sig)).collect()
    }

    fn saturation_series(&self) -> Vec<SaturationSeries> {
        self.outcome
            .saturation
            .iter()
            .map(|(key, samples)| SaturationSeries {
                source: key.clone(),
                samples: samples.len() as u64,
                peak: self.peaks(key),
            })
            .collect()
    }

    /// Every event source before, during and after the faults (see [`SourceSummary`]).
    fn measured(&self, faults: &[FaultWindow]) -> Vec<SourceSummary> {
        let Some((method_start, method_end)) = self.outcome.method_window else { return Vec::new() };
        let before_start = self.phase("baseline").map_or(Duration::ZERO, |(start, _)| start);
        let (during_start, during_end) = match (faults.first(), faults.iter().map(|f| f.end_ms).max()) {
            (Some(first), Some(last)) => (Duration::from_millis(first.start_ms), Duration::from_millis(last)),
            _ => (method_start, method_end),
        };
        let end = self.outcome.duration.max(during_end);
        self.outcome
            .logs
            .iter()
            .map(|(source, log)| {
                let events = log.between(Duration::ZERO, end);
                SourceSummary {
                    source: source.clone(),
                    before: WindowSummary::of(&events, before_start, during_start),
                    during: WindowSummary::of(&events, during_start, during_end),
                    after: WindowSummary::of(&events, during_end, end),
                }
            })
            .collect()
    }
}
