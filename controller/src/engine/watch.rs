//! The engine's watch over a running method: every second the guardrails of each errors or latency SLO are
//! checked on what their source knows now ([`watch_tick`]), the progress line is rendered, and the first trip
//! aborts the method.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Abort, EngineError, EventKind, Logs, MethodContext, lock, source_key};
use crate::experiment::Checked;
use crate::signals::{Event, EventLog};

/// Every second: evaluates the guardrails (and reports progress); a trip aborts the method.
///
/// Each errors or latency SLO is guarded on its own source with its own objective and threshold
/// ([`guards`]); the first to trip aborts the run.
pub(super) async fn guardrails(
    ctx: Arc<MethodContext>,
    exp: Checked,
    logs: Logs,
    baseline: (Duration, Duration),
    method_start: Duration,
    progress: Option<super::Progress>,
) {
    let mut state = Some(guards(&exp, method_start));
    let exp = Arc::new(exp);
    let logs = Arc::new(logs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut baseline_known = false;
    loop {
        tick.tick().await;
        let now = ctx.run_start.elapsed();
        if !baseline_known && let Some(guards) = state.as_mut() {
            // Counted at the first tick rather than at the method's start: by now every request due in the
            // baseline has been registered, answered or not.
            baseline_known = true;
            for guard in guards.iter_mut() {
                let rate = logs.get(&guard.source).and_then(|l| baseline_rate(l, baseline.0, baseline.1));
                guard.state.set_baseline_rate(rate);
            }
        }
        let step = current_step(&ctx);
        // Judging 100 SLOs over a minute of 10k events/s is CPU work: keep it off the runtime's workers, so the
        // load generator's timing (which the SLOs judge) is not disturbed by the judging.
        let (exp, logs, mut taken) = (exp.clone(), logs.clone(), state.take());
        let Ok((returned, trip, line)) = tokio::task::spawn_blocking(move || {
            let (trip, line) = match taken.as_mut() {
                Some(guards) => watch_tick(&exp, &logs, guards, &step, method_start, now),
                None => (None, String::new()),
            };
            (taken, trip, line)
        })
        .await
        else {
            // A judge that cannot judge must not leave the method unguarded.
            ctx.note(EventKind::Guardrail, "guardrail", "guardrail evaluation failed".into(), Some(false));
            ctx.trip(Abort::Error(EngineError::GuardrailFailed));
            return;
        };
        state = returned;
        if ctx.abort.is_cancelled() {
            // Interrupted meanwhile: the interrupt, not a late trip, is the reason.
            return;
        }
        if let Some(trip) = trip {
            ctx.note(EventKind::Guardrail, "guardrail", trip.reason.clone(), Some(false));
            ctx.trip(Abort::Guardrail(trip.reason));
            return;
        }
        if let Some(progress) = &progress {
            progress(line);
        }
    }
}

/// The guardrails of a run: one per errors or latency SLO, on its own source (see [`Guard`]).
pub fn guards(exp: &Checked, method_start: Duration) -> Vec<Guard> {
    let limits = exp.guardrails.clone().unwrap_or_default();
    exp.slos
        .iter()
        .filter_map(|slo| {
            let mut basis = crate::slo::GuardrailBasis::for_slo(slo)?;
            let source = source_key(slo);
            basis.start = method_start;
            basis.planned = Some(planned_length(&exp.method));
            // The source's request timeout, when it is a load (counted sources have no requests waiting).
            basis.request_timeout = exp
                .load
                .iter()
                .find(|l| source == format!("load:{}", l.name))
                .map(|l| l.timeout.map_or(crate::http::DEFAULT_TIMEOUT, |t| t.0));
            Some(Guard { source, state: crate::slo::GuardrailState::new(&limits, basis) })
        })
        .collect()
}

/// The guardrails of one errors or latency SLO, and the key of the source they watch.
#[derive(Clone, Debug)]
pub struct Guard {
    pub source: String,
    pub state: crate::slo::GuardrailState,
}

/// One second of the engine's watch over a running method: each source's events since the method started are
/// copied once (the lock is held only for the copy, however many SLOs read them), each SLO's guardrails are
/// checked on what its source knows now (`EventLog::watch`: answers as they came, requests still waiting; one
/// copy per source), the first trip in SLO order is returned, and the progress line is rendered, e.g.
/// `[  12.0s] slow payments (18s left) | availability 99.80% (objective 99.5%) ok | fast 97.10% (objective 99%) MISS`.
pub fn watch_tick(
    exp: &Checked,
    logs: &Logs,
    guards: &mut [Guard],
    step: &str,
    method_start: Duration,
    now: Duration,
) -> (Option<crate::slo::Trip>, String) {
    let window_events: BTreeMap<&str, Vec<Event>> =
        logs.iter().map(|(key, log)| (key.as_str(), log.between(method_start, now))).collect();
    // The guardrails see what is known now (answers as they come, requests still waiting), not what was sent.
    // One watch per source, its events sorted by when they became known once; one classification and index of
    // them per (source, threshold, wait limit, start), each guard then checking in O(log n): a hundred SLOs on
    // one source must not copy, sort or scan its events a hundred times a second.
    let mut watches: BTreeMap<&str, (crate::signals::Watch, crate::slo::KnownOrder)> = BTreeMap::new();
    type SeenKey<'a> = (&'a str, (Option<Duration>, Option<Duration>, Duration));
    let mut seen: BTreeMap<SeenKey<'_>, crate::slo::SeenIndex> = BTreeMap::new();
    let mut trip = None;
    for guard in guards.iter_mut() {
        let Some(log) = logs.get(&guard.source) else { continue };
        let (watch, order) = watches.entry(guard.source.as_str()).or_insert_with(|| {
            let watch = log.watch(method_start);
            let order = crate::slo::KnownOrder::new(&watch);
            (watch, order)
        });
        let events = seen
            .entry((guard.source.as_str(), guard.state.seen_key()))
            .or_insert_with(|| guard.state.seen_in(now, watch, order));
        trip = guard.state.check_seen(now, watch, events);
        if trip.is_some() {
            break;
        }
    }
    let window = crate::slo::Phase::new("method", method_start, now);
    // Each source's window counted once; each SLO is then judged from the counts (a threshold is a binary
    // search), not by a scan of its own.
    let counts: BTreeMap<&str, WindowCounts> =
        window_events.iter().map(|(key, events)| (*key, WindowCounts::new(events, &window))).collect();
    let slos: Vec<String> = exp
        .slos
        .iter()
        .filter(|s| crate::slo::is_event_ratio(s.signal))
        .map(|slo| {
            let counts = counts.get(source_key(slo).as_str());
            let r = crate::slo::evaluate_counted(slo, &window, |threshold| {
                counts.map_or((0, 0), |c| c.good_total(threshold))
            });
            let mark = match r.passed {
                Some(true) => "ok",
                Some(false) => "MISS",
                None => "…",
            };
            format!("{} {:.2}% (objective {}%) {mark}", slo.name, r.observed * 100.0, r.objective * 100.0)
        })
        .collect();
    (trip, format!("[{:>6.1}s] {step} | {}", now.as_secs_f64(), slos.join(" | ")))
}

/// One source's events in a window, counted for every errors and latency SLO on it at once.
struct WindowCounts {
    total: u64,
    succeeded: u64,
    /// The succeeded events' latencies in whole microseconds, ascending.
    latencies_us: Vec<u64>,
}

impl WindowCounts {
    fn new(events: &[Event], window: &crate::slo::Phase) -> WindowCounts {
        let mut counts = WindowCounts { total: 0, succeeded: 0, latencies_us: Vec::new() };
        for e in events.iter().filter(|e| window.contains(e.at)) {
            counts.total += 1;
            if e.ok {
                counts.succeeded += 1;
                counts.latencies_us.push(crate::slo::stats::micros(e.latency));
            }
        }
        counts.latencies_us.sort_unstable();
        counts
    }

    /// `(good, total)`: good is succeeded, or succeeded within `threshold` (as `slo::stats::is_fast` says).
    fn good_total(&self, threshold: Option<Duration>) -> (u64, u64) {
        let good = match threshold {
            None => self.succeeded,
            Some(t) => {
                let t = crate::slo::stats::micros(t);
                self.latencies_us.partition_point(|l| *l <= t) as u64
            }
        };
        (good, self.total)
    }
}

/// The baseline's rate in events per second: requests sent in `[from, to)` for a log of requests (answered
/// or not: a slow target's answers must not lower it), good events for a log of counted events.
fn baseline_rate(log: &EventLog, from: Duration, to: Duration) -> Option<f64> {
    let len = to.saturating_sub(from).as_secs_f64();
    if len <= 0.0 {
        return None;
    }
    let count = log
        .sent_between(from, to)
        .unwrap_or_else(|| log.between(from, to).iter().filter(|e| e.ok).count() as u64);
    Some(count as f64 / len)
}

/// The step running now, with the time it has left.
fn current_step(ctx: &MethodContext) -> String {
    match lock(&ctx.current).clone() {
        Some((name, started, Some(d))) => {
            format!("{name} ({:.0}s left)", d.saturating_sub(started.elapsed()).as_secs_f64())
        }
        Some((name, _, None)) => name,
        None => "starting".into(),
    }
}

/// The method's planned length: waits and fault durations, parallel groups by their longest branch.
fn planned_length(steps: &[crate::experiment::model::Step]) -> Duration {
    steps
        .iter()
        .map(|s| {
            if let Some(w) = s.wait {
                w.0
            } else if let Some(group) = &s.parallel {
                group.iter().map(|g| planned_length(std::slice::from_ref(g))).max().unwrap_or_default()
            } else {
                s.duration.map(|d| d.0).unwrap_or_default()
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use rand::{Rng as _, SeedableRng as _};

    use super::*;

    /// Judging from the shared counts says exactly what judging each SLO on the events does (seeded events,
    /// latencies on and around the thresholds, failures, events outside the window).
    #[test]
    fn judging_from_counts_matches_judging_the_events() {
        let yaml = "apiVersion: chaos/v1\ntitle: counts\nload:\n  - { name: l, http: { url: \"http://127.0.0.1:9/\" \
                    }, rate: 10/s }\nslos:\n  - { name: avail, signal: errors, objective: 99%, source: { load: l } \
                    }\n  - { name: lax, signal: errors, objective: 50%, source: { load: l } }\n  - { name: fast, \
                    signal: latency, percentile: \"p90 < 20ms\", source: { load: l } }\n  - { name: slow, signal: \
                    latency, percentile: \"p50 < 45ms\", source: { load: l } }\nmethod:\n  - { wait: 1s }\n";
        let exp = crate::experiment::parse("counts.yaml", yaml, &[]).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for n in [0, 3, 50, 2_000] {
            let events: Vec<Event> = (0..n)
                .map(|_| Event {
                    at: Duration::from_millis(rng.random_range(0..12_000)),
                    latency: Duration::from_micros(rng.random_range(0..60_000)),
                    ok: rng.random_bool(0.97),
                })
                .collect();
            let window = crate::slo::Phase::new("method", Duration::from_secs(2), Duration::from_secs(10));
            let counts = WindowCounts::new(&events, &window);
            for slo in &exp.slos {
                let scanned = crate::slo::evaluate_events(slo, &events, &window);
                let counted = crate::slo::evaluate_counted(slo, &window, |t| counts.good_total(t));
                assert_eq!(counted, scanned, "{} over {n} events", slo.name);
            }
        }
    }
}
