//! The verdict, as a pure function of what a run observed ([`judge`]): how the method ended, the SLOs, the
//! steady-state probes after it, faults lost mid-run and reverts that failed. No clock, no I/O: unit-tested
//! on its own.

use super::Abort;
use super::detection::Detected;
use crate::probes::ProbeResult;
use crate::report::Verdict;
use crate::slo::SloResult;

/// The reason of a run that judged nothing without opting in to it.
pub const NOTHING_JUDGED: &str = "nothing was judged: no SLO and no steady-state probe";
/// The reason of a fire-and-forget run (`fire_and_forget: true`).
pub const FIRE_AND_FORGET: &str = "fire and forget: nothing judged";

/// Everything the verdict depends on.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// How the method ended (an interrupt or a late guardrail trip in the recovery window counts here).
    pub method: &'a Result<(), Abort>,
    /// Every SLO, judged over the method window.
    pub slos: &'a [SloResult],
    /// The steady-state probes after the method (none after an interrupt).
    pub probes_after: &'a [ProbeResult],
    /// Faults found gone before their planned end (expired, their agent lost).
    pub lost: &'a [String],
    /// Faults whose revert failed even after retries.
    pub revert_failures: &'a [String],
    /// Whether the experiment has an SLO or a steady-state probe: something to judge its hypothesis by.
    pub judges_something: bool,
    /// `fire_and_forget: true`: the file opted in to a run that judges nothing.
    pub fire_and_forget: bool,
    /// What the watch of the experiment's `detection` saw, when it has one.
    pub detection: Option<&'a Detected>,
}

/// The reason of a run with `detection` whose method injected no fault: there was nothing to detect.
pub const NO_FAULT_TO_DETECT: &str = "detection: no fault was injected, so no alert could detect one";

/// The verdict and its reasons, in the order a reader needs them: losses first, then why the method stopped,
/// the SLOs and probes, and failed reverts.
pub fn judge(observed: &Observed<'_>) -> (Verdict, Vec<String>) {
    let mut verdict = Verdict::Passed;
    let mut reasons = Vec::new();
    match observed.method {
        Err(Abort::Interrupted) => {
            verdict = Verdict::Inconclusive;
            reasons.push("interrupted: every fault in force was reverted".into());
        }
        Err(Abort::Error(e)) => {
            verdict = Verdict::Inconclusive;
            reasons.push(format!("infrastructure: {e}"));
        }
        Err(Abort::Guardrail(reason)) => {
            verdict = Verdict::Failed;
            reasons.push(format!("guardrail aborted the run: {reason}"));
        }
        Ok(()) => {}
    }
    if matches!(observed.method, Ok(()) | Err(Abort::Guardrail(_))) {
        for slo in observed.slos {
            match slo.passed {
                Some(true) => {}
                Some(false) => {
                    verdict = Verdict::Failed;
                    reasons.push(slo.reason.clone());
                }
                None => {
                    if verdict == Verdict::Passed {
                        verdict = Verdict::Inconclusive;
                    }
                    reasons.push(slo.reason.clone());
                }
            }
        }
        for probe in observed.probes_after.iter().filter(|p| !p.ok) {
            verdict = Verdict::Failed;
            reasons.push(format!(
                "steady state broken after the method: probe {}: {}",
                probe.name, probe.detail
            ));
        }
        if let Some(detected) = observed.detection {
            judge_detection(detected, &mut verdict, &mut reasons);
        }
    }
    // A fault lost mid-run (expired, its agent gone) means the method did not run as planned: neither a pass
    // nor a failure can be pinned on it (DESIGN §7.7). The SLO reasons above stay, after the loss.
    if !observed.lost.is_empty() {
        verdict = Verdict::Inconclusive;
        reasons.splice(0..0, observed.lost.iter().cloned());
    }
    if !observed.revert_failures.is_empty() {
        if verdict == Verdict::Passed {
            verdict = Verdict::Inconclusive;
        }
        reasons.extend(observed.revert_failures.iter().map(|f| format!("infrastructure: {f}")));
    }
    if verdict == Verdict::Passed {
        reasons.extend(observed.slos.iter().map(|slo| slo.reason.clone()));
    }
    // A run with no SLO and no steady-state probe checked nothing of its hypothesis: it cannot pass, unless
    // the file opted in to a fire-and-forget run (which then passes on its faults alone: every one applied
    // and reverted, or the verdict is already inconclusive).
    if !observed.judges_something {
        if observed.fire_and_forget {
            reasons.push(FIRE_AND_FORGET.into());
        } else if verdict == Verdict::Passed {
            verdict = Verdict::Inconclusive;
            reasons.push(NOTHING_JUDGED.into());
        }
    }
    (verdict, reasons)
}

/// Detection: an expected alert that did not fire within its `within` fails the run; one that did says how
/// fast. Without a fault, or without a single answer from the source, nothing was measured (inconclusive).
fn judge_detection(detected: &Detected, verdict: &mut Verdict, reasons: &mut Vec<String>) {
    let unsure = |verdict: &mut Verdict, reasons: &mut Vec<String>, reason: String| {
        if *verdict == Verdict::Passed {
            *verdict = Verdict::Inconclusive;
        }
        reasons.push(reason);
    };
    if detected.no_fault {
        return unsure(verdict, reasons, NO_FAULT_TO_DETECT.into());
    }
    if let Some(error) = &detected.unanswered {
        let source = detected.outcomes.first().map_or("", |o| o.source.as_str());
        return unsure(verdict, reasons, format!("detection: {source} never answered: {error}"));
    }
    for o in &detected.outcomes {
        let within = ms(o.within_ms);
        match o.detected_after_ms {
            Some(after) => reasons.push(format!(
                "detected: alert {} fired {} after the fault (within {within}; {})",
                o.alert,
                ms(after),
                o.source
            )),
            None => {
                *verdict = Verdict::Failed;
                let stale = if detected.already_firing.contains(&o.alert) {
                    " (it was already firing before the fault)"
                } else {
                    ""
                };
                reasons.push(format!(
                    "not detected: alert {} did not fire within {within} of the fault ({}){stale}",
                    o.alert, o.source
                ));
            }
        }
    }
}

/// A duration in milliseconds as experiments write it: `30s`, `1.5s`, `800ms`.
fn ms(ms: u64) -> String {
    crate::experiment::model::Duration(std::time::Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::{EngineError, FaultError};
    use crate::experiment::model::Signal;

    fn slo(name: &str, passed: Option<bool>) -> SloResult {
        SloResult {
            name: name.into(),
            signal: Signal::Errors,
            window: "method".into(),
            passed,
            observed: 0.0,
            objective: 0.99,
            good: 0,
            total: 0,
            reason: format!("{name}: {passed:?}"),
        }
    }

    fn probe(name: &str, ok: bool) -> ProbeResult {
        ProbeResult { name: name.into(), ok, detail: "detail".into(), elapsed: Duration::ZERO }
    }

    /// A run with one SLO, nothing lost or failed: only `method` and `slos` vary.
    fn observed<'a>(method: &'a Result<(), Abort>, slos: &'a [SloResult]) -> Observed<'a> {
        Observed {
            method,
            slos,
            probes_after: &[],
            lost: &[],
            revert_failures: &[],
            judges_something: true,
            fire_and_forget: false,
            detection: None,
        }
    }

    #[test]
    fn a_method_that_ran_is_judged_by_its_slos() {
        let ok = Ok(());
        let passed = [slo("a", Some(true))];
        assert_eq!(judge(&observed(&ok, &passed)), (Verdict::Passed, vec!["a: Some(true)".into()]));
        let failed = [slo("a", Some(true)), slo("b", Some(false)), slo("c", None)];
        let (verdict, reasons) = judge(&observed(&ok, &failed));
        assert_eq!(verdict, Verdict::Failed, "a failed SLO outweighs an inconclusive one");
        assert_eq!(reasons, ["b: Some(false)", "c: None"]);
        let unsure = [slo("c", None)];
        assert_eq!(judge(&observed(&ok, &unsure)).0, Verdict::Inconclusive);
    }

    #[test]
    fn an_interrupt_or_an_error_is_inconclusive_whatever_the_slos_say() {
        let failed = [slo("b", Some(false))];
        let interrupted = Err(Abort::Interrupted);
        assert_eq!(
            judge(&observed(&interrupted, &failed)),
            (Verdict::Inconclusive, vec!["interrupted: every fault in force was reverted".into()])
        );
        let error = Err(Abort::Error(EngineError::Fault(FaultError::NoHostAgent)));
        assert_eq!(
            judge(&observed(&error, &failed)),
            (Verdict::Inconclusive, vec!["infrastructure: the host agent was not started".into()])
        );
    }

    #[test]
    fn a_guardrail_trip_fails_the_run_and_the_slos_still_speak() {
        let tripped = Err(Abort::Guardrail("errors budget spent".into()));
        let slos = [slo("a", None)];
        let (verdict, reasons) = judge(&observed(&tripped, &slos));
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(reasons, ["guardrail aborted the run: errors budget spent", "a: None"]);
    }

    #[test]
    fn a_broken_steady_state_after_the_method_fails_the_run() {
        let ok = Ok(());
        let slos = [slo("a", Some(true))];
        let after = [probe("up", true), probe("health", false)];
        let (verdict, reasons) = judge(&Observed { probes_after: &after, ..observed(&ok, &slos) });
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(reasons, ["steady state broken after the method: probe health: detail"]);
    }

    #[test]
    fn a_lost_fault_makes_any_verdict_inconclusive_and_comes_first() {
        let ok = Ok(());
        let slos = [slo("b", Some(false))];
        let lost = ["fault lost before its planned end: x: gone".to_string()];
        let (verdict, reasons) = judge(&Observed { lost: &lost, ..observed(&ok, &slos) });
        assert_eq!(verdict, Verdict::Inconclusive);
        assert_eq!(reasons, [lost[0].as_str(), "b: Some(false)"]);
    }

    #[test]
    fn a_failed_revert_spoils_a_pass_but_not_a_failure() {
        let ok = Ok(());
        let failures = ["x could not be reverted: boom".to_string()];
        let passed = [slo("a", Some(true))];
        let (verdict, reasons) = judge(&Observed { revert_failures: &failures, ..observed(&ok, &passed) });
        assert_eq!(verdict, Verdict::Inconclusive);
        assert_eq!(reasons, ["infrastructure: x could not be reverted: boom"]);
        let failed = [slo("b", Some(false))];
        let (verdict, _) = judge(&Observed { revert_failures: &failures, ..observed(&ok, &failed) });
        assert_eq!(verdict, Verdict::Failed);
    }

    #[test]
    fn a_run_that_judges_nothing_cannot_pass_unless_it_opted_in() {
        let ok = Ok(());
        let nothing = Observed { judges_something: false, ..observed(&ok, &[]) };
        assert_eq!(judge(&nothing), (Verdict::Inconclusive, vec![NOTHING_JUDGED.into()]));
        let opted_in = Observed { fire_and_forget: true, ..nothing };
        assert_eq!(judge(&opted_in), (Verdict::Passed, vec![FIRE_AND_FORGET.into()]));
        let interrupted = Err(Abort::Interrupted);
        let (verdict, reasons) = judge(&Observed { method: &interrupted, ..opted_in });
        assert_eq!(verdict, Verdict::Inconclusive);
        assert_eq!(reasons.last().map(String::as_str), Some(FIRE_AND_FORGET));
    }

    fn detected(outcomes: &[(&str, Option<u64>)]) -> Detected {
        Detected {
            outcomes: outcomes
                .iter()
                .map(|(alert, after)| crate::report::journal::DetectionOutcome {
                    alert: alert.to_string(),
                    source: "http://prom:9090".into(),
                    within_ms: 30_000,
                    detected_after_ms: *after,
                    resolved_after_ms: None,
                })
                .collect(),
            ..Detected::default()
        }
    }

    #[test]
    fn an_expected_alert_that_did_not_fire_fails_the_run_and_detected_ones_say_how_fast() {
        let ok = Ok(());
        let passed = [slo("a", Some(true))];
        let seen = detected(&[("ShopDown", Some(3200))]);
        let (verdict, reasons) = judge(&Observed { detection: Some(&seen), ..observed(&ok, &passed) });
        assert_eq!(verdict, Verdict::Passed);
        assert_eq!(
            reasons,
            [
                "detected: alert ShopDown fired 3.2s after the fault (within 30s; http://prom:9090)",
                "a: Some(true)"
            ]
        );
        let mut missed = detected(&[("ShopDown", Some(3200)), ("Never", None)]);
        missed.already_firing = vec!["Never".into()];
        let (verdict, reasons) = judge(&Observed { detection: Some(&missed), ..observed(&ok, &passed) });
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(
            reasons[1],
            "not detected: alert Never did not fire within 30s of the fault (http://prom:9090) (it was already \
             firing before the fault)"
        );
        // An interrupted run is not judged on detection.
        let interrupted = Err(Abort::Interrupted);
        let (verdict, reasons) =
            judge(&Observed { detection: Some(&missed), ..observed(&interrupted, &passed) });
        assert_eq!(verdict, Verdict::Inconclusive);
        assert!(!reasons.iter().any(|r| r.contains("detected")), "{reasons:?}");
    }

    #[test]
    fn detection_without_a_fault_or_an_answer_is_inconclusive() {
        let ok = Ok(());
        let passed = [slo("a", Some(true))];
        let no_fault = Detected { no_fault: true, ..detected(&[("A", None)]) };
        let (verdict, reasons) = judge(&Observed { detection: Some(&no_fault), ..observed(&ok, &passed) });
        assert_eq!((verdict, reasons[0].as_str()), (Verdict::Inconclusive, NO_FAULT_TO_DETECT));
        let silent = Detected { unanswered: Some("connection refused".into()), ..detected(&[("A", None)]) };
        let (verdict, reasons) = judge(&Observed { detection: Some(&silent), ..observed(&ok, &passed) });
        assert_eq!(verdict, Verdict::Inconclusive);
        assert_eq!(reasons[0], "detection: http://prom:9090 never answered: connection refused");
        // A failure stays a failure.
        let failed = [slo("b", Some(false))];
        assert_eq!(
            judge(&Observed { detection: Some(&no_fault), ..observed(&ok, &failed) }).0,
            Verdict::Failed
        );
    }
}
