//! Reports from one journal: JSON round trip, JUnit structure (parsed back), Markdown summary, per-second
//! signal samples.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use chaos_controller::experiment::model::Signal;
use chaos_controller::report::{
    ExperimentInfo, Journal, ProbeOutcome, ProbePhase, RecoveryOutcome, SignalSample, TimelineEntry,
    TimelineKind, Verdict, render_junit, render_markdown, signal_samples, write_journal, write_junit,
};
use chaos_controller::signals::Event;
use chaos_controller::slo::SloResult;
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};

fn entry(at_ms: u64, kind: TimelineKind, name: &str, detail: &str, ok: Option<bool>) -> TimelineEntry {
    TimelineEntry { at_ms, kind, name: name.to_string(), detail: detail.to_string(), ok }
}

fn journal() -> Journal {
    Journal {
        chaos_version: "0.1.0".to_string(),
        experiment: ExperimentInfo {
            title: "Checkout survives slow payments".to_string(),
            hypothesis: Some("Checkout keeps its SLOs while payments answer 300 ms slower.".to_string()),
            file: Some("experiments/checkout.yaml".to_string()),
        },
        seed: 42,
        started_at: "2026-11-25T12:00:00.000Z".to_string(),
        duration_ms: 52_340,
        verdict: Verdict::Failed,
        reasons: vec![
            "fast: 97.8% of 3,012 requests ≤ 800 ms during 'slow payments', objective 99%".to_string(),
        ],
        timeline: vec![
            entry(0, TimelineKind::Phase, "baseline", "", None),
            entry(10_000, TimelineKind::StepStarted, "slow payments", "", None),
            entry(
                10_004,
                TimelineKind::FaultInjected,
                "slow payments",
                "latency 300 ms ± 50 ms on payments",
                Some(true),
            ),
            entry(40_001, TimelineKind::FaultReverted, "slow payments", "toxic removed", Some(true)),
            entry(41_000, TimelineKind::Guardrail, "budget", "12 bad of 3,100, allowance 60", Some(true)),
            entry(45_000, TimelineKind::Note, "operator", "a | pipe", None),
        ],
        probes: vec![
            ProbeOutcome {
                name: "health".to_string(),
                phase: ProbePhase::Before,
                ok: true,
                detail: "200 in 3 ms".to_string(),
                elapsed_ms: 3,
            },
            ProbeOutcome {
                name: "health".to_string(),
                phase: ProbePhase::After,
                ok: false,
                detail: "expected status 200, found 503".to_string(),
                elapsed_ms: 12,
            },
        ],
        slos: vec![
            SloResult {
                name: "availability".to_string(),
                signal: Signal::Errors,
                window: "slow payments".to_string(),
                passed: Some(true),
                observed: 0.999,
                objective: 0.995,
                good: 3009,
                total: 3012,
                reason: "availability: 99.9% of 3,012 requests succeeded during 'slow payments', objective \
                                 99.5%"
                    .to_string(),
            },
            SloResult {
                name: "fast".to_string(),
                signal: Signal::Latency,
                window: "slow payments".to_string(),
                passed: Some(false),
                observed: 2946.0 / 3012.0,
                objective: 0.99,
                good: 2946,
                total: 3012,
                reason: "fast: 97.8% of 3,012 requests ≤ 800 ms during 'slow payments', objective 99%"
                    .to_string(),
            },
            SloResult {
                name: "traffic".to_string(),
                signal: Signal::Traffic,
                window: "slow payments".to_string(),
                passed: None,
                observed: 0.0,
                objective: 0.5,
                good: 0,
                total: 0,
                reason: "traffic: cannot judge during 'slow payments': no baseline rate to compare with"
                    .to_string(),
            },
        ],
        recovery: vec![
            RecoveryOutcome { slo: "availability".to_string(), time_to_recover_ms: Some(0) },
            RecoveryOutcome { slo: "fast".to_string(), time_to_recover_ms: None },
        ],
        signals: vec![SignalSample {
            at_ms: 0,
            source: "shoppers".to_string(),
            requests: 50,
            errors: 0,
            p50_ms: Some(12.5),
            p99_ms: Some(40.0),
            rate: 50.0,
            p95_ms: Some(31.25),
            error_ratio: Some(0.0),
        }],
        ..Journal::default()
    }
}

/// A path in a temporary directory of this test process (each test removes its own file).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-report-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn verdict_exit_codes() {
    for (verdict, code, text) in [
        (Verdict::Passed, 0, "passed"),
        (Verdict::Failed, 1, "failed"),
        (Verdict::Invalid, 2, "invalid"),
        (Verdict::Inconclusive, 3, "inconclusive"),
    ] {
        assert_eq!(verdict.exit_code(), code);
        assert_eq!(serde_json::to_value(verdict).unwrap(), serde_json::json!(text));
        assert_eq!(verdict.to_string(), text);
    }
}

#[test]
fn journal_round_trips_through_json() {
    let original = journal();
    let text = serde_json::to_string_pretty(&original).unwrap();
    let back: Journal = serde_json::from_str(&text).unwrap();
    assert_eq!(back, original);

    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["verdict"], "failed");
    assert_eq!(value["experiment"]["title"], "Checkout survives slow payments");
    assert_eq!(value["timeline"][2]["kind"], "fault_injected");
    assert_eq!(value["timeline"][0]["ok"], serde_json::Value::Null);
    assert_eq!(value["probes"][1]["phase"], "after");
    assert_eq!(value["slos"][1]["signal"], "latency");
    assert_eq!(value["slos"][2]["passed"], serde_json::Value::Null);
    assert_eq!(value["recovery"][1]["time_to_recover_ms"], serde_json::Value::Null);
    assert_eq!(value["signals"][0]["p99_ms"], 40.0);

    let path = scratch("journal.json");
    write_journal(&path, &original).unwrap();
    let read: Journal = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(read, original);
    assert!(!path.with_extension("json.tmp").exists(), "no temporary file left behind");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn writing_into_a_missing_directory_says_where() {
    let path = std::env::temp_dir().join("chaos-no-such-dir-for-reports").join("j.json");
    let err = write_journal(&path, &journal()).unwrap_err();
    assert!(err.to_string().starts_with("cannot write "), "{err}");
    assert!(err.to_string().contains("chaos-no-such-dir-for-reports"), "{err}");
}

#[test]
fn junit_has_one_case_per_slo_and_probe() {
    let original = journal();
    let xml = render_junit(&original).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains(r#"<testsuite name="Checkout survives slow payments""#), "{xml}");

    let report = Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(report.test_suites.len(), 1);
    let suite = &report.test_suites[0];
    assert_eq!(suite.name.as_str(), "Checkout survives slow payments");
    assert_eq!((suite.tests, suite.failures, suite.errors), (5, 2, 1));
    let names: Vec<&str> = suite.test_cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "availability during slow payments",
            "fast during slow payments",
            "traffic during slow payments",
            "health (before)",
            "health (after)",
        ]
    );
    let message = |i: usize| match &suite.test_cases[i].status {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            Some((*kind, message.as_ref().map(|m| m.as_str().to_string()).unwrap_or_default()))
        }
        _ => None,
    };
    assert_eq!(message(0), None);
    assert_eq!(message(1), Some((NonSuccessKind::Failure, original.slos[1].reason.clone())));
    assert_eq!(message(2), Some((NonSuccessKind::Error, original.slos[2].reason.clone())));
    assert_eq!(message(3), None);
    assert_eq!(message(4), Some((NonSuccessKind::Failure, "expected status 200, found 503".to_string())));
    let verdict = suite.properties.iter().find(|p| p.name.as_str() == "verdict").unwrap();
    assert_eq!(verdict.value.as_str(), "failed");

    let path = scratch("junit.xml");
    write_junit(&path, &original).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), xml);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn junit_escapes_markup_in_names_and_reasons() {
    let mut tricky = journal();
    tricky.experiment.title = r#"<kill> & "restart" 'it'"#.to_string();
    tricky.slos[1].reason = "fast: 1 < 2 && \"quotes\" ]]> done".to_string();
    let xml = render_junit(&tricky).unwrap();
    let report = Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(report.test_suites[0].name.as_str(), tricky.experiment.title);
    match &report.test_suites[0].test_cases[1].status {
        TestCaseStatus::NonSuccess { message, .. } => {
            assert_eq!(message.as_ref().map(|m| m.as_str()), Some(tricky.slos[1].reason.as_str()))
        }
        other => panic!("expected a failure, found {other:?}"),
    }
}

#[test]
fn markdown_summary() {
    let md = render_markdown(&journal());
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines[0], "## ❌ failed: Checkout survives slow payments");
    assert!(md.contains("> Checkout keeps its SLOs while payments answer 300 ms slower.\n"), "{md}");
    assert!(md.contains("Exit code 1 · seed 42 · 52.34 s · started 2026-11-25T12:00:00.000Z"), "{md}");
    assert!(md.contains("- fast: 97.8% of 3,012 requests ≤ 800 ms during 'slow payments', objective 99%\n"));
    for row in [
        "| availability | errors | slow payments | 99.9% | ≥ 99.5% | ✅ passed |",
        "| fast | latency | slow payments | 97.8% | ≥ 99% | ❌ failed |",
        "| traffic | traffic | slow payments | no data | ≥ 50% | ⚠️ inconclusive |",
        "| health | before | ✅ passed | 3 ms | 200 in 3 ms |",
        "| health | after | ❌ failed | 12 ms | expected status 200, found 503 |",
        "| 10.004 s | injected | slow payments | latency 300 ms ± 50 ms on payments |",
        "| 40.001 s | reverted | slow payments | toxic removed |",
        "| 41 s | guardrail | budget | 12 bad of 3,100, allowance 60 |",
        "| availability | 0 s |",
        "| fast | not recovered |",
    ] {
        assert!(md.contains(row), "missing {row:?} in\n{md}");
    }
    assert!(!md.contains("operator"), "notes are not faults");
    // Every table row has the same number of unescaped pipes as its header.
    let mut tricky = journal();
    tricky.slos[0].reason = "a | b\nc".to_string();
    let md = render_markdown(&tricky);
    assert!(md.contains("| a \\| b c |"), "{md}");
}

#[test]
fn per_second_signal_samples() {
    let ms = Duration::from_millis;
    let mut events = Vec::new();
    for i in 0..100u64 {
        events.push(Event { at: ms(i * 10), latency: ms(i + 1), ok: i % 10 != 0 });
    }
    events.push(Event { at: ms(2_500), latency: ms(7), ok: true });
    let samples = signal_samples("shoppers", &events, Duration::ZERO, ms(2_600), Duration::from_secs(1));
    assert_eq!(samples.len(), 3);
    assert_eq!(
        samples[0],
        SignalSample {
            at_ms: 0,
            source: "shoppers".to_string(),
            requests: 100,
            errors: 10,
            p50_ms: Some(50.0),
            p99_ms: Some(99.0),
            rate: 100.0,
            p95_ms: Some(95.0),
            error_ratio: Some(0.1),
        }
    );
    assert_eq!(
        (samples[1].at_ms, samples[1].requests, samples[1].p50_ms, samples[1].rate),
        (1000, 0, None, 0.0)
    );
    assert_eq!((samples[2].at_ms, samples[2].requests), (2000, 1));
    assert_eq!(samples[2].rate, 1.66667, "the last bucket is 600 ms long; 6 significant digits");
    assert!(signal_samples("x", &events, ms(10), ms(10), Duration::from_secs(1)).is_empty());
}
