//! A Markdown summary for CI step summaries (`$GITHUB_STEP_SUMMARY` and the like): the verdict as a headline,
//! the hypothesis, the reasons, then tables of SLOs, what each source measured before, during and after the
//! faults (error ratio, p50/p95/p99 latency), steady-state probes, the fault timeline, the expected alerts'
//! time to detect and resolve, and time to recover.
//! Plain GitHub-flavoured Markdown, no HTML.

use std::fmt::Write;
use std::time::Duration;

use super::journal::{DetectionOutcome, Journal, TimelineKind, Verdict};
use crate::experiment::model::Signal;
use crate::slo::{SloResult, format};

/// The summary of one run.
pub fn render_markdown(journal: &Journal) -> String {
    let mut md = String::new();
    let icon = match journal.verdict {
        Verdict::Passed => "✅",
        Verdict::Failed => "❌",
        Verdict::Invalid => "⛔",
        Verdict::Inconclusive => "⚠️",
    };
    // Writing to a String cannot fail, so the `fmt::Result`s below are ignored on purpose.
    let _ = writeln!(md, "## {icon} {}: {}\n", journal.verdict, inline(&journal.experiment.title));
    if let Some(hypothesis) = &journal.experiment.hypothesis {
        let _ = writeln!(md, "> {}\n", inline(hypothesis));
    }
    let _ = writeln!(
        md,
        "Exit code {} · seed {} · {} · started {}{}\n",
        journal.verdict.exit_code(),
        journal.seed,
        format::duration(Duration::from_millis(journal.duration_ms)),
        journal.started_at,
        journal.experiment.file.as_ref().map(|f| format!(" · `{}`", f.replace('`', "'"))).unwrap_or_default(),
    );
    for reason in &journal.reasons {
        let _ = writeln!(md, "- {}", inline(reason));
    }
    if !journal.reasons.is_empty() {
        md.push('\n');
    }

    if !journal.slos.is_empty() {
        md.push_str("### SLOs\n\n| SLO | signal | window | observed | objective | result | reason |\n");
        md.push_str("|---|---|---|---:|---:|---|---|\n");
        for slo in &journal.slos {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                cell(&slo.name),
                signal_name(slo.signal),
                cell(&slo.window),
                observed(slo),
                objective(slo),
                outcome(slo.passed),
                cell(&slo.reason),
            );
        }
        md.push('\n');
    }

    if !journal.measured.is_empty() {
        md.push_str("### Measured\n\n| source | when | requests | error ratio | p50 | p95 | p99 |\n");
        md.push_str("|---|---|---:|---:|---:|---:|---:|\n");
        for source in &journal.measured {
            for (when, w) in
                [("before", &source.before), ("during", &source.during), ("after", &source.after)]
            {
                let _ = writeln!(
                    md,
                    "| {} | {when} ({}–{}) | {} | {} | {} | {} | {} |",
                    cell(&source.source),
                    seconds(w.from_ms),
                    seconds(w.to_ms),
                    format::count(w.requests),
                    w.error_ratio.map_or_else(|| "–".to_string(), |r| format::percent(r, 2)),
                    latency(w.p50_ms),
                    latency(w.p95_ms),
                    latency(w.p99_ms),
                );
            }
        }
        md.push('\n');
    }

    if !journal.probes.is_empty() {
        md.push_str(
            "### Steady state\n\n| probe | when | result | time | detail |\n|---|---|---|---:|---|\n",
        );
        for probe in &journal.probes {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                cell(&probe.name),
                probe.phase.as_str(),
                outcome(Some(probe.ok)),
                format::duration(Duration::from_millis(probe.elapsed_ms)),
                cell(&probe.detail),
            );
        }
        md.push('\n');
    }

    let faults: Vec<_> = journal
        .timeline
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                TimelineKind::FaultInjected | TimelineKind::FaultReverted | TimelineKind::Guardrail
            )
        })
        .collect();
    if !faults.is_empty() {
        md.push_str("### Faults\n\n| at | event | name | detail |\n|---:|---|---|---|\n");
        for entry in faults {
            let event = match (entry.kind, entry.ok) {
                (TimelineKind::FaultInjected, Some(false)) => "injection failed",
                (TimelineKind::FaultInjected, _) => "injected",
                (TimelineKind::FaultReverted, Some(false)) => "revert failed",
                (TimelineKind::FaultReverted, _) => "reverted",
                (_, Some(false)) => "guardrail tripped",
                _ => "guardrail",
            };
            let _ = writeln!(
                md,
                "| {} | {event} | {} | {} |",
                format::duration(Duration::from_millis(entry.at_ms)),
                cell(&entry.name),
                cell(&entry.detail),
            );
        }
        md.push('\n');
    }

    if !journal.detection.is_empty() {
        md.push_str(
            "### Detection\n\n| alert | source | within | time to detect | time to resolve | result |\n\
             |---|---|---:|---:|---:|---|\n",
        );
        for o in &journal.detection {
            let state = detection_state(o, &journal.reasons);
            let result = match state {
                DetectionState::Detected => "✅ detected",
                DetectionState::NotDetected => "❌ not detected",
                DetectionState::NotMeasured => "⚠️ not measured",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {result} |",
                cell(&o.alert),
                cell(&o.source),
                seconds(o.within_ms),
                o.detected_after_ms.map_or_else(|| "–".to_string(), seconds),
                resolved(o),
            );
        }
        md.push('\n');
    }

    if !journal.recovery.is_empty() {
        md.push_str("### Time to recover\n\n| SLO | time to recover |\n|---|---:|\n");
        for r in &journal.recovery {
            let time = r.time_to_recover_ms.map_or_else(
                || "not recovered".to_string(),
                |ms| format::duration(Duration::from_millis(ms)),
            );
            let _ = writeln!(md, "| {} | {time} |", cell(&r.slo));
        }
        md.push('\n');
    }
    md
}

/// What became of one expected alert, for the reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectionState {
    /// It fired within `within` of the fault.
    Detected,
    /// It did not: the verdict failed with its `not detected: alert NAME …` reason.
    NotDetected,
    /// Nothing could be measured (no fault was injected, the source never answered, the run was interrupted):
    /// the reasons say why.
    NotMeasured,
}

/// The state of `o` in a run that gave `reasons`.
pub fn detection_state(o: &DetectionOutcome, reasons: &[String]) -> DetectionState {
    if o.detected_after_ms.is_some() {
        DetectionState::Detected
    } else if reasons.iter().any(|r| r.starts_with(&format!("not detected: alert {} did not fire", o.alert)))
    {
        DetectionState::NotDetected
    } else {
        DetectionState::NotMeasured
    }
}

/// One line per expected alert for terminal summaries: `ShopDown: detected 3.2 s after the fault (within
/// 30 s), resolved after 7 s (http://prometheus:9090)`.
pub fn detection_line(o: &DetectionOutcome, reasons: &[String]) -> String {
    let within = seconds(o.within_ms);
    let what = match (detection_state(o, reasons), o.detected_after_ms) {
        (DetectionState::Detected, Some(ms)) => {
            let resolved = o.resolved_after_ms.map_or_else(
                || "still firing when the run stopped watching".to_string(),
                |r| format!("resolved {} after the fault", seconds(r)),
            );
            format!("detected {} after the fault (within {within}), {resolved}", seconds(ms))
        }
        (DetectionState::NotMeasured, _) => "not measured (see the reasons)".to_string(),
        _ => format!("NOT detected within {within}"),
    };
    format!("{}: {what} ({})", o.alert, o.source)
}

/// Time to resolve, or why there is none.
pub(crate) fn resolved(o: &DetectionOutcome) -> String {
    match (o.detected_after_ms, o.resolved_after_ms) {
        (_, Some(ms)) => seconds(ms),
        (Some(_), None) => "still firing".to_string(),
        (None, None) => "–".to_string(),
    }
}

/// A time since the run started, in seconds: `12.3 s`.
pub(crate) fn seconds(ms: u64) -> String {
    format::duration(Duration::from_millis(ms))
}

/// A measured latency in milliseconds, `–` without requests.
pub(crate) fn latency(ms: Option<f64>) -> String {
    ms.map_or_else(|| "–".to_string(), |ms| format!("{} ms", trim(ms, 1)))
}

/// `x` with at most `decimals` decimals, trailing zeros trimmed.
pub(crate) fn trim(x: f64, decimals: usize) -> String {
    let text = format!("{x:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
}

pub(crate) fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Latency => "latency",
        Signal::Errors => "errors",
        Signal::Traffic => "traffic",
        Signal::Saturation => "saturation",
    }
}

fn observed(slo: &SloResult) -> String {
    if slo.total == 0 {
        return "no data".to_string();
    }
    match slo.signal {
        Signal::Errors | Signal::Latency => format::ratio_percent(slo.good, slo.total, slo.objective),
        Signal::Traffic => format!("{} of baseline", format::percent(slo.observed, 1)),
        Signal::Saturation => format!("peak {}", format::percent(slo.observed, 1)),
    }
}

fn objective(slo: &SloResult) -> String {
    let target = format::objective(slo.objective);
    match slo.signal {
        Signal::Saturation => format!("≤ {target}"),
        _ => format!("≥ {target}"),
    }
}

fn outcome(passed: Option<bool>) -> &'static str {
    match passed {
        Some(true) => "✅ passed",
        Some(false) => "❌ failed",
        None => "⚠️ inconclusive",
    }
}

/// Text on one line (headline, quote, list item).
fn inline(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text inside a table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    inline(text).replace('|', "\\|")
}
