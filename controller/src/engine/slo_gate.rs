//! The run's production SLO checks, from the SLO definitions its `use:` entries reference: the budget gate
//! ([`budget_gate`]: each gated SLO's error budget left over its period, read from Prometheus before anything
//! is touched; too little, no data or no answer and the run does not start) and the burn-rate guardrail
//! ([`burn_guardrail`]: the page rows of each watched SLO read every `every` while the method runs; a row
//! whose two windows both burn above its threshold aborts the run, and so does Prometheus failing to answer
//! for longer than `grace`: fail closed). The decisions are plain functions ([`gate_decision`],
//! [`BurnWatch`]) tested without Prometheus.

use std::sync::Arc;
use std::time::Duration;

use super::{Abort, EventKind, MethodContext};
use crate::experiment::Checked;
use crate::slo_file::SloDef;
use crate::slo_file::budget::{self, Burn};
use crate::slo_file::model::Severity;
use crate::slo_file::query::Prometheus;
use crate::slo_file::windows::{period_text, prom_duration};

/// How often the burn-rate guardrail reads Prometheus unless `every` says.
pub const DEFAULT_BURN_EVERY: Duration = Duration::from_secs(5);
/// How long Prometheus may fail to answer the burn-rate guardrail before it aborts the run, unless `grace`
/// says.
pub const DEFAULT_BURN_GRACE: Duration = Duration::from_secs(15);

/// What the budget gate found: one line per gated SLO (passed or not) and, when the run must not start,
/// why.
#[derive(Clone, Debug, PartialEq)]
pub struct GateReport {
    pub lines: Vec<(bool, String)>,
    /// Every refusing SLO's reason, joined; `None` when the gate lets the run start.
    pub refusal: Option<String>,
}

/// The budget gate's decision for one SLO given what Prometheus said about its period's error ratio: passed
/// or not, and the line saying why with the figures.
pub fn gate_decision(def: &SloDef, min_remaining: f64, ratio: Result<Option<f64>, String>) -> (bool, String) {
    let (id, period) = (def.id(), period_text(def.period));
    let needs = percent(min_remaining);
    match ratio {
        Err(e) => (false, format!("budget gate: cannot read the error budget of {id}: {e}")),
        Ok(None) => (
            false,
            format!(
                "budget gate: no data for {id} over its {period} period, so its error budget is unknown \
                 (the gate needs {needs} left)"
            ),
        ),
        Ok(Some(ratio)) => {
            let left = budget::remaining(def, ratio);
            if left + 1e-12 >= min_remaining {
                (
                    true,
                    format!(
                        "budget gate: {id} has {} of its {period} error budget left (the gate needs {needs})",
                        percent(left)
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "budget gate: {id} has {} of its {period} error budget left, the gate needs {needs}",
                        percent(left)
                    ),
                )
            }
        }
    }
}

/// Reads the budget gate of `exp`, if it has one.
pub async fn budget_gate(exp: &Checked) -> Option<GateReport> {
    let gate = exp.budget_gate.as_ref()?;
    let prom = Prometheus::new(&gate.prometheus);
    let mut report = GateReport { lines: Vec::new(), refusal: None };
    let mut refusals = Vec::new();
    for def in exp.slo_defs(&gate.slos) {
        let ratio = budget::period_error_ratio(&prom, def, None).await.map_err(|e| e.to_string());
        let (ok, line) = gate_decision(def, gate.min_remaining.0, ratio);
        if !ok {
            refusals.push(line.clone());
        }
        report.lines.push((ok, line));
    }
    if !refusals.is_empty() {
        report.refusal = Some(refusals.join("; "));
    }
    Some(report)
}

/// Records the gate's figures on the run's timeline (they go into the journal whether it passed or not).
pub(super) fn note_gate(ctx: &MethodContext, report: &GateReport) {
    for (ok, line) in &report.lines {
        ctx.note(EventKind::Guardrail, "budget gate", line.clone(), Some(*ok));
    }
}

/// The burn-rate guardrail's state: when Prometheus began failing to answer.
#[derive(Clone, Debug)]
pub struct BurnWatch {
    grace: Duration,
    failing_since: Option<Duration>,
}

impl BurnWatch {
    pub fn new(grace: Duration) -> BurnWatch {
        BurnWatch { grace, failing_since: None }
    }

    /// One reading at `now` (the run's clock): each watched SLO's page rows, or why Prometheus did not
    /// answer. Returns the reason to abort: the first row that holds, or Prometheus failing for `grace`.
    pub fn observe(
        &mut self,
        now: Duration,
        reading: Result<Vec<(String, Vec<Burn>)>, String>,
    ) -> Option<String> {
        match reading {
            Ok(slos) => {
                self.failing_since = None;
                slos.iter().find_map(|(id, rows)| rows.iter().find(|r| r.holds()).map(|r| burning(id, r)))
            }
            Err(e) => {
                let since = *self.failing_since.get_or_insert(now);
                let failing = now.saturating_sub(since);
                (failing >= self.grace).then(|| {
                    format!(
                        "slo_burn: no answer from Prometheus for {} (the guardrail fails closed after {}): {e}",
                        seconds(failing),
                        seconds(self.grace)
                    )
                })
            }
        }
    }
}

/// `checkout/availability burning 100× its budget over 30s and 100× over 5s (page threshold 14.4×)`.
fn burning(id: &str, row: &Burn) -> String {
    format!(
        "slo_burn: {id} burning {}× its budget over {} and {}× over {} (page threshold {}×)",
        rate(row.long.unwrap_or_default()),
        prom_duration(row.row.long),
        rate(row.short.unwrap_or_default()),
        prom_duration(row.row.short),
        rate(row.row.burn_rate)
    )
}

/// Reads the page rows of every watched SLO.
async fn read_burns(prom: &Prometheus, defs: &[SloDef]) -> Result<Vec<(String, Vec<Burn>)>, String> {
    let mut out = Vec::with_capacity(defs.len());
    for def in defs {
        let rows =
            budget::burn_rates(prom, def, Some(Severity::Page), None).await.map_err(|e| e.to_string())?;
        out.push((def.id(), rows));
    }
    Ok(out)
}

/// The burn-rate guardrail of a running method (nothing without `guardrails.slo_burn`): reads at once, then
/// every `every`, until a trip (which aborts the run through [`MethodContext::trip`]) or the method's end
/// (the caller aborts this task).
pub(super) async fn burn_guardrail(ctx: Arc<MethodContext>, exp: Checked) {
    let Some(config) = exp.guardrails.as_ref().and_then(|g| g.slo_burn.clone()) else { return };
    let defs: Vec<SloDef> = exp.slo_defs(&config.slos).into_iter().cloned().collect();
    let every = config.every.map_or(DEFAULT_BURN_EVERY, |d| d.0);
    let mut watch = BurnWatch::new(config.grace.map_or(DEFAULT_BURN_GRACE, |d| d.0));
    // A read slower than `every` counts as a failure, so a hung Prometheus is noticed within the grace.
    let prom = Prometheus::new(&config.prometheus).with_timeout(every.max(Duration::from_secs(1)));
    ctx.note(
        EventKind::Guardrail,
        "slo_burn",
        format!("watching the page burn rates of {} every {}", ids(&defs), seconds(every)),
        None,
    );
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let reading = read_burns(&prom, &defs).await;
        if ctx.abort.is_cancelled() {
            return;
        }
        if let Err(e) = &reading {
            tracing::warn!(error = %e, "the burn-rate guardrail cannot read Prometheus");
        }
        if let Some(reason) = watch.observe(ctx.run_start.elapsed(), reading) {
            ctx.note(EventKind::Guardrail, "guardrail", reason.clone(), Some(false));
            ctx.trip(Abort::Guardrail(reason));
            return;
        }
    }
}

/// One line each for `chaos run --dry-run`: the gate and the burn-rate guardrail as configured.
pub fn describe(exp: &Checked) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(gate) = &exp.budget_gate {
        let defs: Vec<SloDef> = exp.slo_defs(&gate.slos).into_iter().cloned().collect();
        lines.push(format!(
            "budget gate: before anything, {} must each have at least {} of their error budget left \
             (read from {})",
            ids(&defs),
            percent(gate.min_remaining.0),
            gate.prometheus
        ));
    }
    if let Some(burn) = exp.guardrails.as_ref().and_then(|g| g.slo_burn.as_ref()) {
        let defs: Vec<SloDef> = exp.slo_defs(&burn.slos).into_iter().cloned().collect();
        lines.push(format!(
            "burn-rate guardrail: every {} the page rows of {} (from {}) abort the run when both windows burn \
             above their threshold",
            seconds(burn.every.map_or(DEFAULT_BURN_EVERY, |d| d.0)),
            ids(&defs),
            burn.prometheus
        ));
    }
    lines
}

fn ids(defs: &[SloDef]) -> String {
    defs.iter().map(SloDef::id).collect::<Vec<_>>().join(", ")
}

/// A share as a percentage with one decimal (`12.3%`, `-50%`), trailing `.0` dropped.
fn percent(fraction: f64) -> String {
    format!("{}%", trim(fraction * 100.0))
}

/// A burn rate: one decimal, trailing `.0` dropped (`100`, `14.4`).
fn rate(value: f64) -> String {
    trim(value)
}

fn trim(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_string)
}

fn seconds(d: Duration) -> String {
    format!("{}s", trim(d.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo_file::model::BurnWindow;

    fn slo() -> SloDef {
        let text = "apiVersion: chaos/v1\nkind: SLO\nservice: checkout\nname: availability\nobjective: 99.9%\n\
                    period: 30d\nsli:\n  events:\n    bad: e_total\n    total: r_total\n";
        crate::slo_file::parse("s.yaml", text).unwrap_or_default().remove(0)
    }

    #[test]
    fn the_gate_refuses_below_the_threshold_with_the_figures_and_passes_at_or_above() {
        let def = slo();
        // 0.000877 errors of a 0.1% budget: 12.3% left.
        let (ok, line) = gate_decision(&def, 0.25, Ok(Some(0.000877)));
        assert!(!ok);
        assert_eq!(
            line,
            "budget gate: checkout/availability has 12.3% of its 30d error budget left, the gate needs 25%"
        );
        let (ok, line) = gate_decision(&def, 0.25, Ok(Some(0.00075)));
        assert!(ok, "{line}");
        assert!(line.contains("has 25% of its 30d error budget left"), "{line}");
        let (ok, line) = gate_decision(&def, 0.25, Ok(Some(0.002)));
        assert!(!ok && line.contains("has -100% of its"), "{line}");
        let (ok, line) = gate_decision(&def, 0.25, Ok(None));
        assert!(!ok && line.contains("no data for checkout/availability over its 30d period"), "{line}");
        let (ok, line) = gate_decision(&def, 0.25, Err("cannot reach prometheus".into()));
        assert!(!ok && line.contains("cannot read the error budget of checkout/availability"), "{line}");
    }

    fn row(long: Option<f64>, short: Option<f64>) -> Burn {
        let row = BurnWindow {
            severity: Severity::Page,
            long: Duration::from_secs(30),
            short: Duration::from_secs(5),
            burn_rate: 14.4,
            budget_spent: 0.02,
            for_duration: None,
        };
        Burn { row, long, short }
    }

    #[test]
    fn the_burn_watch_trips_when_both_windows_burn_and_fails_closed_after_the_grace() {
        let id = "checkout/availability".to_string();
        let mut watch = BurnWatch::new(Duration::from_secs(15));
        let s = Duration::from_secs;
        // One window only, or no data: no trip.
        assert_eq!(watch.observe(s(0), Ok(vec![(id.clone(), vec![row(Some(100.0), Some(1.0))])])), None);
        assert_eq!(watch.observe(s(5), Ok(vec![(id.clone(), vec![row(None, None)])])), None);
        // Errors within the grace are tolerated, an answer resets the count.
        assert_eq!(watch.observe(s(10), Err("down".into())), None);
        assert_eq!(watch.observe(s(20), Err("down".into())), None);
        assert_eq!(watch.observe(s(21), Ok(vec![])), None);
        assert_eq!(watch.observe(s(30), Err("down".into())), None);
        let failed = watch.observe(s(45), Err("down".into())).unwrap_or_default();
        assert_eq!(
            failed,
            "slo_burn: no answer from Prometheus for 15s (the guardrail fails closed after 15s): down"
        );
        let mut watch = BurnWatch::new(Duration::from_secs(15));
        let trip = watch.observe(s(50), Ok(vec![(id, vec![row(Some(100.0), Some(99.96))])]));
        assert_eq!(
            trip.as_deref(),
            Some(
                "slo_burn: checkout/availability burning 100× its budget over 30s and 100× over 5s (page threshold 14.4×)"
            )
        );
    }
}
