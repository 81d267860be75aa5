//! Live error-budget figures of one SLO from Prometheus, the pieces `chaos slo status`, the budget gate and the
//! burn-rate guardrail share: the error ratio over the period (hence the budget remaining) and the burn rate
//! over each alert window (hence which alert rows hold now).

use super::model::{BurnWindow, Severity, SloDef};
use super::promql::error_ratio;
use super::query::{Prometheus, QueryError};

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
