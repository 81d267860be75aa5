//! SLO verdicts over a window, and time to recover after a fault. The rules are listed in the module docs of
//! [`crate::slo`].

use std::time::Duration;

use super::format;
use super::stats::{TOLERANCE, is_fast, rate_per_second};
use super::{Observations, Phase, SloResult};
use crate::experiment::model::{Signal, Slo};
use crate::signals::Event;

/// A fraction read from a percentage without binary noise: `99.9% / 100` is `0.9990000000000001`; this makes
/// it `0.999` (slo-math §7.4: compute budgets in decimal).
pub(crate) fn decimal(fraction: f64) -> f64 {
    (fraction * 1e12).round() / 1e12
}

/// Whether the signal is a ratio of good to total events, with an objective, a budget and a time to recover
/// (errors, latency), rather than a threshold on a level (traffic, saturation).
pub fn is_event_ratio(signal: Signal) -> bool {
    matches!(signal, Signal::Errors | Signal::Latency)
}

/// The events needed to judge objective `objective`: `ceil(1 / (1 − objective))`, the count below which a single
/// bad event alone would decide the verdict (`reference/slo-math.md` §3 with burn threshold 1). `1` for a 100 %
/// objective, where any bad event fails whatever the count.
pub fn min_events(objective: f64) -> u64 {
    let budget = 1.0 - objective;
    if budget <= TOLERANCE {
        return 1;
    }
    // The small slack keeps 1 / 0.01 = 100.000…01 from asking for 101 events.
    ((1.0 / budget) - 1e-6).ceil().max(1.0) as u64
}

/// The objective and threshold of a latency SLO: `objective` + `threshold`, or `percentile` written `p99`
/// (with `threshold`) or `p99 < 800ms` / `p99.9 <= 1s`.
pub fn latency_target(slo: &Slo) -> Result<(f64, Duration), String> {
    let mut objective = slo.objective.map(|p| decimal(p.0));
    let mut threshold = slo.threshold.map(|d| d.0);
    if let Some(text) = &slo.percentile {
        let (q, bound) = parse_percentile(text)?;
        objective = objective.or(Some(q));
        threshold = threshold.or(bound);
    }
    match (objective, threshold) {
        (Some(o), Some(t)) => Ok((decimal(o), t)),
        (None, _) => {
            Err("a latency SLO needs an objective (e.g. 99%) or a percentile (e.g. p99)".to_string())
        }
        (_, None) => Err("a latency SLO needs a threshold (e.g. 800ms)".to_string()),
    }
}

/// `p99` → (0.99, None); `p99.9 < 800ms` → (0.999, Some(800 ms)).
fn parse_percentile(text: &str) -> Result<(f64, Option<Duration>), String> {
    let bad = || format!("expected a percentile like p99 or \"p99 < 800ms\", found {text:?}");
    let t = text.trim();
    let rest = t.strip_prefix('p').or_else(|| t.strip_prefix('P')).ok_or_else(bad)?;
    let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, bound) = rest.split_at(split);
    let q: f64 = number.parse().map_err(|_| bad())?;
    if !(0.0..=100.0).contains(&q) {
        return Err(bad());
    }
    let bound = bound.trim();
    if bound.is_empty() {
        return Ok((decimal(q / 100.0), None));
    }
    let value = bound.strip_prefix("<=").or_else(|| bound.strip_prefix('<')).ok_or_else(bad)?;
    let d: crate::experiment::model::Duration = value.trim().parse()?;
    Ok((decimal(q / 100.0), Some(d.0)))
}

/// Judges one SLO over `window`. Only events (and samples) whose `at` lies in the window count.
pub fn evaluate(slo: &Slo, observed: &Observations<'_>, window: &Phase) -> SloResult {
    judge(slo, observed, window, |threshold| {
        let is_good = |e: &Event| match threshold {
            Some(t) => is_fast(e, t),
            None => e.ok,
        };
        let (mut good, mut total) = (0u64, 0u64);
        for e in observed.events.iter().filter(|e| window.contains(e.at)) {
            total += 1;
            good += u64::from(is_good(e));
        }
        (good, total)
    })
}

/// [`evaluate`] for the SLOs that need only events (errors, latency).
pub fn evaluate_events(slo: &Slo, events: &[Event], window: &Phase) -> SloResult {
    evaluate(slo, &Observations::events(events), window)
}

/// [`evaluate`] of an errors or latency SLO from counts made already: `good_total(None)` is (succeeded, all)
/// among the window's events, `good_total(Some(t))` (succeeded within `t`, all). A caller judging many SLOs
/// over one source counts once and answers each threshold cheaply; the verdict and its words are the same.
pub fn evaluate_counted(
    slo: &Slo,
    window: &Phase,
    good_total: impl Fn(Option<Duration>) -> (u64, u64),
) -> SloResult {
    judge(slo, &Observations::events(&[]), window, good_total)
}

fn judge(
    slo: &Slo,
    observed: &Observations<'_>,
    window: &Phase,
    good_total: impl Fn(Option<Duration>) -> (u64, u64),
) -> SloResult {
    let during = format!("during '{}'", window.name);
    let mut result = SloResult {
        name: slo.name.clone(),
        signal: slo.signal,
        window: window.name.clone(),
        passed: None,
        observed: 0.0,
        objective: 0.0,
        good: 0,
        total: 0,
        reason: String::new(),
    };
    let outcome = match slo.signal {
        Signal::Errors => match slo.objective {
            Some(o) => {
                ratio(&mut result, decimal(o.0), good_total(None), "succeeded", &during);
                Ok(())
            }
            None => Err("an errors SLO needs an objective (e.g. 99.5%)".to_string()),
        },
        Signal::Latency => latency_target(slo).map(|(objective, threshold)| {
            // Says what counts: a failed request is not fast, however quickly it failed.
            let fast = format!("succeeded in ≤ {}", format::duration(threshold));
            ratio(&mut result, objective, good_total(Some(threshold)), &fast, &during);
        }),
        Signal::Traffic => traffic(&mut result, slo, observed, window, &during),
        Signal::Saturation => saturation(&mut result, slo, observed, window, &during),
    };
    if let Err(why) = outcome {
        result.passed = None;
        result.reason = format!("{}: cannot judge {during}: {why}", slo.name);
    }
    result
}

/// Errors and latency: `good / total ≥ objective`, with the minimum-events rule.
fn ratio(result: &mut SloResult, objective: f64, (good, total): (u64, u64), what: &str, during: &str) {
    let needed = min_events(objective);
    result.objective = objective;
    result.good = good;
    result.total = total;
    result.observed = if total > 0 { good as f64 / total as f64 } else { 0.0 };
    let name = &result.name;
    let target = format::objective(objective);
    if total < needed {
        // Pad the window to the minimum with good events: if it still misses, more data could not save it.
        let padded = (good + (needed - total)) as f64 / needed as f64;
        if padded < objective - TOLERANCE {
            result.passed = Some(false);
            result.reason = format!(
                "{name}: {} of {} requests {what} {during}, objective {target} ({} bad: more than {} \
                 requests would allow)",
                format::ratio_percent(good, total, objective),
                format::count(total),
                format::count(total - good),
                format::count(needed),
            );
        } else {
            result.passed = None;
            let seen = if total == 0 { "no requests".to_string() } else { format!("only {}", plural(total)) };
            result.reason = format!(
                "{name}: {seen} {during}, at least {} needed to judge objective {target}",
                format::count(needed)
            );
        }
        return;
    }
    result.passed = Some(result.observed >= objective - TOLERANCE);
    result.reason = format!(
        "{name}: {} of {} requests {what} {during}, objective {target}",
        format::ratio_percent(good, total, objective),
        format::count(total),
    );
}

fn plural(n: u64) -> String {
    if n == 1 { "1 request".to_string() } else { format!("{} requests", format::count(n)) }
}

/// Traffic: the window's rate of served (good) events against the baseline rate.
fn traffic(
    result: &mut SloResult,
    slo: &Slo,
    observed: &Observations<'_>,
    window: &Phase,
    during: &str,
) -> Result<(), String> {
    let min = slo.min.or(slo.objective).map(|p| decimal(p.0)).ok_or("a traffic SLO needs min (e.g. 50%)")?;
    let baseline = observed.baseline_rate.ok_or("no baseline rate to compare with")?;
    if !(baseline.is_finite() && baseline > 0.0) {
        return Err("the baseline had no traffic to compare with".to_string());
    }
    if window.is_empty() {
        return Err("the window is empty".to_string());
    }
    // Traffic is what was served: an open-loop load generator logs every request it schedules, failed or not,
    // so counting all events would make a fault that stops service look like steady traffic.
    let total = observed.events.iter().filter(|e| window.contains(e.at) && e.ok).count() as u64;
    let rate = rate_per_second(total, window.len());
    let share = rate / baseline;
    result.objective = min;
    result.good = total;
    result.total = total;
    result.observed = share;
    result.passed = Some(share >= min - TOLERANCE);
    result.reason = format!(
        "{}: {} {during} is {} of the baseline {}, minimum {}",
        result.name,
        format::rate(rate),
        format::percent(share, 1),
        format::rate(baseline),
        format::objective(min),
    );
    Ok(())
}

/// Saturation: the peak utilisation against a ceiling (either may be above 100%).
fn saturation(
    result: &mut SloResult,
    slo: &Slo,
    observed: &Observations<'_>,
    window: &Phase,
    during: &str,
) -> Result<(), String> {
    // Samples may exceed 1 (`host: load` does), and so may the ceiling: both are compared as they are.
    let ceiling = slo
        .max
        .map(|c| c.0)
        .or(slo.objective.map(|p| p.0))
        .map(decimal)
        .ok_or("a saturation SLO needs max (e.g. 90%)")?;
    result.objective = ceiling;
    let samples = observed.saturation.iter().filter(|s| window.contains(s.at) && s.value.is_finite());
    let (mut peak, mut within, mut total) = (f64::NEG_INFINITY, 0u64, 0u64);
    for s in samples {
        total += 1;
        within += u64::from(s.value <= ceiling + TOLERANCE);
        peak = peak.max(s.value);
    }
    result.good = within;
    result.total = total;
    if total == 0 {
        result.reason = format!(
            "{}: no saturation samples {during}, ceiling {}",
            result.name,
            format::objective(ceiling)
        );
        return Ok(());
    }
    result.observed = peak;
    result.passed = Some(within == total);
    result.reason = format!(
        "{}: peak {} over {} samples {during}, ceiling {}",
        result.name,
        format::percent(peak, 1),
        format::count(total),
        format::objective(ceiling),
    );
    Ok(())
}

/// Time from `fault_end` until the SLO holds again, at the precision of the events' own times: the events sent
/// at or after `fault_end`, in order of `at`, are judged one by one. The SLO **holds again from event `e`** when
/// `e` is good and every stretch of events that starts at `e` and is long enough to judge the objective
/// (at least [`min_events`], as a verdict needs) meets the objective, up to the last event given; at least one
/// such stretch must exist. The result is `e.at − fault_end` for the first such `e` (`Some(0)` when the first
/// event after the fault already starts one). `None` when it never recovered within the events given, when
/// fewer than [`min_events`] events follow the last candidate, or when the SLO is not an event ratio (traffic,
/// saturation) or has no objective. Linear in the number of events.
pub fn time_to_recover(slo: &Slo, events: &[Event], fault_end: Duration) -> Option<Duration> {
    let (objective, threshold) = match slo.signal {
        Signal::Errors => (decimal(slo.objective?.0), None),
        Signal::Latency => {
            let (o, t) = latency_target(slo).ok()?;
            (o, Some(t))
        }
        Signal::Traffic | Signal::Saturation => return None,
    };
    let mut after: Vec<&Event> = events.iter().filter(|e| e.at >= fault_end).collect();
    after.sort_by_key(|e| e.at);
    let good: Vec<bool> = after
        .iter()
        .map(|e| match threshold {
            Some(t) => is_fast(e, t),
            None => e.ok,
        })
        .collect();
    let n = good.len();
    let needed = usize::try_from(min_events(objective)).ok()?;
    if n < needed {
        return None;
    }
    // A stretch [i, j) meets the objective when bad(i..j) ≤ b × (j − i), b = 1 − objective: with
    // f(k) = bad(0..k) − b × k, when f(j) ≤ f(i). So `i` starts a recovery when f(i) is at least the largest
    // f(j) for j ≥ i + needed.
    let allowed = 1.0 - objective + TOLERANCE;
    let mut f = Vec::with_capacity(n + 1);
    let mut bad = 0u64;
    f.push(0.0);
    for (k, g) in good.iter().enumerate() {
        bad += u64::from(!g);
        f.push(bad as f64 - allowed * (k + 1) as f64);
    }
    // most[k] = max f(j) for j in k..=n.
    let mut most = f.clone();
    for k in (0..n).rev() {
        most[k] = most[k].max(most[k + 1]);
    }
    (0..=n - needed)
        .find(|&i| good[i] && most[i + needed] <= f[i] + 1e-9)
        .map(|i| after[i].at.saturating_sub(fault_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_events_follows_one_over_budget() {
        for (objective, needed) in
            [(0.99, 100), (0.995, 200), (0.999, 1000), (0.9999, 10_000), (0.5, 2), (1.0, 1)]
        {
            assert_eq!(min_events(objective), needed, "objective {objective}");
        }
    }

    #[test]
    fn percentiles_parse() {
        assert_eq!(parse_percentile("p99"), Ok((0.99, None)));
        assert_eq!(parse_percentile("p99 < 800ms"), Ok((0.99, Some(Duration::from_millis(800)))));
        assert_eq!(parse_percentile("p99.9<=1s"), Ok((0.999, Some(Duration::from_secs(1)))));
        assert!(parse_percentile("99").is_err());
        assert!(parse_percentile("p99 > 1s").is_err());
        assert!(parse_percentile("p101").is_err());
    }
}
