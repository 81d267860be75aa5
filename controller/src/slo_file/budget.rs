//! Live error-budget figures of one SLO from Prometheus, the pieces `chaos slo status`, the budget gate and the
//! burn-rate guardrail share: the error ratio over the period (hence the budget remaining) and the burn rate
//! over each alert window (hence which alert rows hold now).
//!
//! [`read`] asks for all of one SLO's figures at once — bad and all events over the period and over every
//! alert window — in a single instant query, each part tagged by a label (`label_replace(…) or …`): one
//! request per SLO however many windows it has.

use std::collections::BTreeMap;
use std::time::Duration;

use super::model::{BurnWindow, Counted, Events, Severity, Sli, SloDef};
use super::promql::{error_ratio, event_counts, event_rates};
use super::query::{Prometheus, QueryError};
use super::windows::prom_duration;

/// One alert row's burn rates now: the error ratio over each window divided by the budget. `None` where
/// Prometheus has no data (no traffic in the window, or no series).
#[derive(Clone, Debug, PartialEq)]
pub struct Burn {
    pub row: BurnWindow,
    pub long: Option<f64>,
    pub short: Option<f64>,
}

impl Burn {
    /// Both windows burn faster than the row's threshold: the alert this row belongs to fires by these
    /// numbers.
    pub fn holds(&self) -> bool {
        matches!((self.long, self.short), (Some(l), Some(s)) if l > self.row.burn_rate && s > self.row.burn_rate)
    }
}

/// The error ratio over the whole period at `at` (unix seconds; now when `None`), `None` without data (NaN,
/// no series).
pub async fn period_error_ratio(
    prom: &Prometheus,
    slo: &SloDef,
    at: Option<f64>,
) -> Result<Option<f64>, QueryError> {
    let value = prom.value(&error_ratio(&slo.sli, slo.period), at).await?;
    Ok(value.filter(|v| v.is_finite()))
}

/// The share of the period's error budget left at error ratio `error_ratio`: `1 − ratio / budget`; negative
/// once the budget is overspent.
pub fn remaining(slo: &SloDef, error_ratio: f64) -> f64 {
    1.0 - error_ratio / slo.budget()
}

/// The burn rates of every alert row of `severity` (every row when `None`), one query per distinct window.
pub async fn burn_rates(
    prom: &Prometheus,
    slo: &SloDef,
    severity: Option<Severity>,
    at: Option<f64>,
) -> Result<Vec<Burn>, QueryError> {
    let rows: Vec<&BurnWindow> =
        slo.alerting.windows.iter().filter(|w| severity.is_none_or(|s| w.severity == s)).collect();
    let mut ratios: Vec<(std::time::Duration, Option<f64>)> = Vec::new();
    for window in rows.iter().flat_map(|r| [r.long, r.short]) {
        if ratios.iter().any(|(w, _)| *w == window) {
            continue;
        }
        let value = prom.value(&error_ratio(&slo.sli, window), at).await?;
        ratios.push((window, value.filter(|v| v.is_finite())));
    }
    let budget = slo.budget();
    let burn = |window| ratios.iter().find(|(w, _)| *w == window).and_then(|(_, r)| *r).map(|r| r / budget);
    Ok(rows
        .into_iter()
        .map(|row| Burn { row: row.clone(), long: burn(row.long), short: burn(row.short) })
        .collect())
}

/// Bad events and all events over the period (rates over the period times its length: what `increase`
/// gives, fractional where Prometheus extrapolates to the window's edges).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counts {
    pub bad: f64,
    pub total: f64,
}

/// Everything [`read`] learnt about one SLO at one time.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// The error ratio over the period, `None` without data (no series, or no events at all).
    pub error_ratio: Option<f64>,
    /// Bad and all events over the period; `None` for a ratio-only SLI ([`Sli::ErrorRatio`]) or without data.
    pub counts: Option<Counts>,
    /// The burn rates of every alert row, as [`burn_rates`] gives them.
    pub burns: Vec<Burn>,
}

/// The label [`read`] tags each part of its query with.
pub const PART_LABEL: &str = "chaos_slo_part";

/// The period's figures and every alert row's burn rates of `slo` at `at`, in one query.
///
/// For an SLI with event counts each window is asked as bad and all events (not as their ratio), so that a
/// missing bad-events series next to counted requests reads as zero bad events for a `bad:` counter (a
/// service that never failed has no `code="5xx"` series; the plain ratio would be empty, i.e. no data). A
/// `good:` counter or a latency bucket that is missing stays no data. A window without events has no ratio.
pub async fn read(prom: &Prometheus, slo: &SloDef, at: Option<f64>) -> Result<Reading, QueryError> {
    let (query, _) = reading_query(slo);
    let series = prom.vector(&query, at).await?;
    let mut parts: BTreeMap<String, f64> = BTreeMap::new();
    for (labels, value) in series {
        let Some(part) = labels.get(PART_LABEL) else { continue };
        if parts.insert(part.clone(), value).is_some() {
            return Err(QueryError::Refused {
                query,
                message: format!(
                    "the SLI's query returns several series (labels {labels:?}): aggregate it to one (sum)"
                ),
            });
        }
    }
    let finite = |key: &str| parts.get(key).copied().filter(|v| v.is_finite());
    let zero_when_absent = matches!(slo.sli, Sli::Events(Events { counted: Counted::Bad, .. }));
    // Bad and total events (or rates) of one part: the ratio, and the pair.
    let pair = |name: &str| -> Option<(f64, f64)> {
        let total = finite(&format!("total_{name}"))?;
        let bad = match finite(&format!("bad_{name}")) {
            Some(bad) => bad,
            None if zero_when_absent && !parts.contains_key(&format!("bad_{name}")) => 0.0,
            None => return None,
        };
        Some((bad, total))
    };
    let ratio_of = |name: &str| -> Option<f64> {
        if has_counts(&slo.sli) {
            pair(name).filter(|(_, total)| *total > 0.0).map(|(bad, total)| bad.max(0.0) / total)
        } else {
            finite(&format!("ratio_{name}"))
        }
    };
    let counts = if has_counts(&slo.sli) {
        pair("period").map(|(bad, total)| Counts { bad: bad.max(0.0), total: total.max(0.0) })
    } else {
        None
    };
    let budget = slo.budget();
    let burns = slo
        .alerting
        .windows
        .iter()
        .map(|row| Burn {
            row: row.clone(),
            long: ratio_of(&prom_duration(row.long)).map(|r| r / budget),
            short: ratio_of(&prom_duration(row.short)).map(|r| r / budget),
        })
        .collect();
    Ok(Reading { error_ratio: ratio_of("period"), counts, burns })
}

/// The one query [`read`] sends for `slo`, and the number of parts in it.
pub fn reading_query(slo: &SloDef) -> (String, usize) {
    let mut windows: Vec<Duration> = Vec::new();
    for w in slo.alerting.windows.iter().flat_map(|r| [r.long, r.short]) {
        if !windows.contains(&w) {
            windows.push(w);
        }
    }
    let mut parts: Vec<(String, String)> = Vec::new();
    let mut add = |name: String, window: Duration, period: bool| match (
        period,
        event_counts(&slo.sli, window),
        event_rates(&slo.sli, window),
    ) {
        (true, Some((bad, total)), _) | (false, _, Some((bad, total))) => {
            parts.push((format!("bad_{name}"), bad));
            parts.push((format!("total_{name}"), total));
        }
        _ => parts.push((format!("ratio_{name}"), error_ratio(&slo.sli, window))),
    };
    add("period".to_string(), slo.period, true);
    for w in windows {
        add(prom_duration(w), w, false);
    }
    let count = parts.len();
    let query = parts
        .into_iter()
        .map(|(name, expr)| format!(r#"label_replace({expr}, "{PART_LABEL}", "{name}", "", "")"#))
        .collect::<Vec<_>>()
        .join(" or ");
    (query, count)
}

/// Whether the SLI has event counts (everything but a ratio-only SLI).
pub fn has_counts(sli: &Sli) -> bool {
    !matches!(sli, Sli::ErrorRatio(_))
}
