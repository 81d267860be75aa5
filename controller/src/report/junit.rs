//! JUnit XML for CI: one suite named after the experiment, one test case per SLO, per steady-state probe and
//! per expected alert (`detection`, its time the time to detect). A missed SLO, a failed probe or an alert not
//! detected is a `failure` whose message is the reason; an inconclusive SLO or an alert that could not be
//! measured is an `error` (it could not be judged, which is not a pass). Verdict, seed and reasons go in suite properties and
//! `system-out`.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::journal::Journal;
use super::markdown::{DetectionState, detection_line, detection_state, seconds};
use super::{ReportError, write_atomically};

/// The report as a JUnit XML document.
pub fn render_junit(journal: &Journal) -> Result<String, ReportError> {
    let mut suite = TestSuite::new(journal.experiment.title.as_str());
    suite.set_time(Duration::from_millis(journal.duration_ms));
    suite.add_properties([
        Property::new("verdict", journal.verdict.as_str()),
        Property::new("exit_code", journal.verdict.exit_code().to_string()),
        Property::new("seed", journal.seed.to_string()),
        Property::new("started_at", journal.started_at.as_str()),
        Property::new("chaos_version", journal.chaos_version.as_str()),
    ]);
    if let Some(file) = &journal.experiment.file {
        suite.add_property(Property::new("file", file.as_str()));
    }
    let mut out = format!("verdict: {}\n", journal.verdict);
    for reason in &journal.reasons {
        out.push_str(&format!("- {reason}\n"));
    }
    suite.set_system_out(out);

    for slo in &journal.slos {
        let status = match slo.passed {
            Some(true) => TestCaseStatus::success(),
            Some(false) => non_success(NonSuccessKind::Failure, "slo missed", &slo.reason),
            None => non_success(NonSuccessKind::Error, "inconclusive", &slo.reason),
        };
        let mut case = TestCase::new(format!("{} during {}", slo.name, slo.window), status);
        case.set_classname("slo");
        case.set_system_out(slo.reason.as_str());
        suite.add_test_case(case);
    }
    for probe in &journal.probes {
        let status = if probe.ok {
            TestCaseStatus::success()
        } else {
            non_success(NonSuccessKind::Failure, "steady state broken", &probe.detail)
        };
        let mut case = TestCase::new(format!("{} ({})", probe.name, probe.phase.as_str()), status);
        case.set_classname(format!("steady_state.{}", probe.phase.as_str()));
        case.set_time(Duration::from_millis(probe.elapsed_ms));
        if !probe.detail.is_empty() {
            case.set_system_out(probe.detail.as_str());
        }
        suite.add_test_case(case);
    }
    for o in &journal.detection {
        let status = match detection_state(o, &journal.reasons) {
            DetectionState::Detected => TestCaseStatus::success(),
            DetectionState::NotDetected => {
                let reason = journal
                    .reasons
                    .iter()
                    .find(|r| r.starts_with(&format!("not detected: alert {} ", o.alert)))
                    .map_or("not detected", String::as_str);
                non_success(NonSuccessKind::Failure, "not detected", reason)
            }
            DetectionState::NotMeasured => {
                let why: Vec<&str> = journal
                    .reasons
                    .iter()
                    .filter(|r| r.starts_with("detection: "))
                    .map(String::as_str)
                    .collect();
                let why = if why.is_empty() { "not measured".to_string() } else { why.join("; ") };
                non_success(NonSuccessKind::Error, "inconclusive", &why)
            }
        };
        let mut case =
            TestCase::new(format!("alert {} fires within {}", o.alert, seconds(o.within_ms)), status);
        case.set_classname("detection");
        if let Some(ms) = o.detected_after_ms {
            case.set_time(Duration::from_millis(ms));
        }
        case.set_system_out(detection_line(o, &journal.reasons));
        suite.add_test_case(case);
    }

    let mut report = Report::new(format!("chaos: {}", journal.experiment.title));
    report.set_time(Duration::from_millis(journal.duration_ms));
    report.add_test_suite(suite);
    Ok(report.to_string()?)
}

fn non_success(kind: NonSuccessKind, ty: &str, message: &str) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(kind);
    status.set_type(ty).set_message(message);
    status
}

/// Writes [`render_junit`] to `path`.
pub fn write_junit(path: &Path, journal: &Journal) -> Result<(), ReportError> {
    write_atomically(path, render_junit(journal)?.as_bytes())
}
