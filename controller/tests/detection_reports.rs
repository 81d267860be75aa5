//! The expected alerts of a run (the journal's `detection`) in every report: the journal's JSON shape, a JUnit
//! test case per alert (parsed back: success when detected, a failure with the "not detected" reason, an error
//! when nothing could be measured), a Markdown table and an HTML table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chaos_controller::report::journal::DetectionOutcome;
use chaos_controller::report::markdown::{DetectionState, detection_line, detection_state};
use chaos_controller::report::{Journal, Verdict, render_html, render_junit, render_markdown};
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};

const PROM: &str = "http://prometheus.example:9090";

fn outcome(alert: &str, detected: Option<u64>, resolved: Option<u64>) -> DetectionOutcome {
    DetectionOutcome {
        alert: alert.into(),
        source: PROM.into(),
        within_ms: 30_000,
        detected_after_ms: detected,
        resolved_after_ms: resolved,
    }
}

/// A failed run: ShopDown fired after 3.2 s and resolved after 9.5 s, ShopOnFire never fired.
fn journal() -> Journal {
    Journal {
        verdict: Verdict::Failed,
        reasons: vec![
            format!("detected: alert ShopDown fired 3.2s after the fault (within 30s; {PROM})"),
            format!("not detected: alert ShopOnFire did not fire within 30s of the fault ({PROM})"),
        ],
        detection: vec![outcome("ShopDown", Some(3_200), Some(9_500)), outcome("ShopOnFire", None, None)],
        ..Journal::default()
    }
}

#[test]
fn the_journal_records_each_alert_with_its_times() {
    let j = journal();
    let value = serde_json::to_value(&j).unwrap();
    assert_eq!(
        value["detection"],
        serde_json::json!([
            { "alert": "ShopDown", "source": PROM, "within_ms": 30000, "detected_after_ms": 3200,
              "resolved_after_ms": 9500 },
            { "alert": "ShopOnFire", "source": PROM, "within_ms": 30000, "detected_after_ms": null,
              "resolved_after_ms": null },
        ])
    );
    let back: Journal = serde_json::from_value(value).unwrap();
    assert_eq!(back.detection, j.detection);
    // A run without `detection` writes no key at all.
    let none = serde_json::to_value(Journal::default()).unwrap();
    assert!(none.get("detection").is_none(), "{none}");
}

#[test]
fn junit_has_a_case_per_expected_alert() {
    let mut j = journal();
    j.detection.push(outcome("Unmeasured", None, None));
    j.reasons.push(format!("detection: {PROM} never answered: connection refused"));
    let report = Report::deserialize_from_str(&render_junit(&j).unwrap()).unwrap();
    let suite = &report.test_suites[0];
    assert_eq!((suite.tests, suite.failures, suite.errors), (3, 1, 1));
    let cases: Vec<(&str, &str)> =
        suite.test_cases.iter().map(|c| (c.name.as_str(), c.classname.as_ref().unwrap().as_str())).collect();
    assert_eq!(
        cases,
        [
            ("alert ShopDown fires within 30 s", "detection"),
            ("alert ShopOnFire fires within 30 s", "detection"),
            ("alert Unmeasured fires within 30 s", "detection"),
        ]
    );
    assert!(matches!(suite.test_cases[0].status, TestCaseStatus::Success { .. }));
    assert_eq!(suite.test_cases[0].time.unwrap().as_millis(), 3_200, "the time to detect is the case's time");
    let status = |i: usize| match &suite.test_cases[i].status {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            (*kind, message.as_ref().unwrap().as_str().to_string())
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(status(1), (NonSuccessKind::Failure, j.reasons[1].clone()));
    assert_eq!(status(2), (NonSuccessKind::Error, j.reasons[2].clone()));
}

#[test]
fn markdown_and_html_show_a_detection_table() {
    let j = journal();
    let md = render_markdown(&j);
    assert!(
        md.contains(
            "### Detection\n\n| alert | source | within | time to detect | time to resolve | result |"
        ),
        "{md}"
    );
    assert!(md.contains(&format!("| ShopDown | {PROM} | 30 s | 3.2 s | 9.5 s | ✅ detected |")), "{md}");
    assert!(md.contains(&format!("| ShopOnFire | {PROM} | 30 s | – | – | ❌ not detected |")), "{md}");
    let html = render_html(&j);
    assert!(html.contains("<h2>Detection</h2>"), "{html}");
    assert!(
        html.contains("<td>ShopDown</td><td>http://prometheus.example:9090</td><td class=\"num\">30 s</td><td class=\"num\">3.2 s</td><td class=\"num\">9.5 s</td><td><span class=\"ok\">detected</span></td>"),
        "{html}"
    );
    assert!(html.contains("<span class=\"bad\">not detected</span>"));
    // Names are escaped like every other string.
    let mut tricky = journal();
    tricky.detection[0].alert = "<b>Shop</b>".into();
    assert!(render_html(&tricky).contains("&lt;b&gt;Shop&lt;/b&gt;"));
}

#[test]
fn the_terminal_line_says_what_became_of_each_alert() {
    let j = journal();
    assert_eq!(
        detection_line(&j.detection[0], &j.reasons),
        format!(
            "ShopDown: detected 3.2 s after the fault (within 30 s), resolved 9.5 s after the fault ({PROM})"
        )
    );
    assert_eq!(
        detection_line(&j.detection[1], &j.reasons),
        format!("ShopOnFire: NOT detected within 30 s ({PROM})")
    );
    let still = outcome("ShopDown", Some(3_200), None);
    assert!(detection_line(&still, &[]).contains("still firing when the run stopped watching"));
    // Without its "not detected" reason (no fault, no answer), an alert that did not fire was not measured.
    assert_eq!(detection_state(&j.detection[1], &[]), DetectionState::NotMeasured);
    assert_eq!(detection_state(&j.detection[1], &j.reasons), DetectionState::NotDetected);
}
