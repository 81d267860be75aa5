//! The game-day review rendered from a hand-built game day: per scenario the verdict, time to detect per
//! expected alert (measured, not detected, not measured), time to recover, SLO budget consumed (hand-computed),
//! incidents; notes in time order; action items (the seed list, then one per failed scenario and per missed or
//! unmeasured detection); the HTML page escapes what it shows and fetches nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chaos_controller::experiment::Signal;
use chaos_controller::gameday::plan;
use chaos_controller::gameday::review::{self, Detected, IncidentInfo, Review, RunData};
use chaos_controller::report::journal::{DetectionOutcome, Journal, RecoveryOutcome, Verdict};
use chaos_controller::slo::SloResult;
use chaos_controller::store::{GameDayRecord, NoteRecord, ScenarioRecord};

const PLAN: &str = "apiVersion: chaos/v1
kind: GameDay
title: Checkout <game> day
description: Worker loss and a slow database.
participants:
  - { name: Ada, role: facilitator }
  - { name: Linus, role: on-call }
scenarios:
  - { name: worker dies, experiment: a.yaml, expect: [CheckoutErrors, CheckoutPage] }
  - { name: slow database, experiment: b.yaml, expect: [DbLatency] }
  - { name: region loss, experiment: c.yaml }
action_items:
  - Link the runbooks
";

fn slo(name: &str, signal: Signal, objective: f64, good: u64, total: u64) -> SloResult {
    SloResult {
        name: name.into(),
        signal,
        window: "method".into(),
        passed: Some(true),
        observed: good as f64 / total.max(1) as f64,
        objective,
        good,
        total,
        reason: String::new(),
    }
}

fn game_day() -> (GameDayRecord, Vec<RunData>) {
    let plan = plan::parse("plan.yaml", PLAN).unwrap();
    let scenario =
        |name: &str, exp: &str, state: &str, verdict: Option<&str>, run: Option<&str>| ScenarioRecord {
            name: name.into(),
            experiment: exp.into(),
            state: state.into(),
            run_id: run.map(Into::into),
            verdict: verdict.map(Into::into),
            reasons: match verdict {
                Some("failed") => vec!["latency: 91% of 2,000 requests ≤ 300 ms, objective 99%".into()],
                _ => Vec::new(),
            },
            started_ms: run.map(|_| 1_765_000_000_000),
            finished_ms: run.map(|_| 1_765_000_030_000),
        };
    let g = GameDayRecord {
        id: "g-1".into(),
        title: plan.title.clone(),
        state: "stopped".into(),
        started_ms: 1_765_000_000_000,
        finished_ms: Some(1_765_000_090_000),
        actor: "ci".into(),
        reason: Some("scenario \"slow database\" ended failed (on_failure: stop)".into()),
        plan_file: "plan.yaml".into(),
        scenarios: vec![
            scenario("worker dies", "a.yaml", "passed", Some("passed"), Some("r-1")),
            scenario("slow database", "b.yaml", "failed", Some("failed"), Some("r-2")),
            scenario("region loss", "c.yaml", "skipped", None, None),
        ],
        plan,
        log: Vec::new(),
        notes: vec![
            NoteRecord { at_ms: 1_765_000_050_000, author: "Linus".into(), text: "paged | acked".into() },
            NoteRecord {
                at_ms: 1_765_000_010_000,
                author: "Ada".into(),
                text: "<b>worker</b> killed".into(),
            },
        ],
    };
    let first = Journal {
        verdict: Verdict::Passed,
        // 10 bad of 1,000 at 99%: exactly the 10 the objective allows, 100% of the budget.
        slos: vec![
            slo("availability", Signal::Errors, 0.99, 990, 1_000),
            slo("db memory", Signal::Saturation, 0.9, 10, 10),
        ],
        recovery: vec![RecoveryOutcome { slo: "availability".into(), time_to_recover_ms: Some(1_500) }],
        detection: vec![DetectionOutcome {
            alert: "CheckoutErrors".into(),
            source: "http://prometheus:9090".into(),
            within_ms: 60_000,
            detected_after_ms: Some(12_500),
            resolved_after_ms: Some(40_000),
        }],
        ..Journal::default()
    };
    let second = Journal {
        verdict: Verdict::Failed,
        // 180 bad of 2,000 at 99%: 20 allowed, 900%.
        slos: vec![slo("latency", Signal::Latency, 0.99, 1_820, 2_000)],
        recovery: vec![RecoveryOutcome { slo: "latency".into(), time_to_recover_ms: None }],
        detection: vec![DetectionOutcome {
            alert: "DbLatency".into(),
            source: "http://prometheus:9090".into(),
            within_ms: 30_000,
            detected_after_ms: None,
            resolved_after_ms: None,
        }],
        ..Journal::default()
    };
    let incident = IncidentInfo {
        id: "inc-7".into(),
        title: "Checkout latency".into(),
        severity: "sev3".into(),
        status: "investigating".into(),
        started_ms: 1_765_000_020_000,
    };
    (g, vec![(Some(first), Vec::new()), (Some(second), vec![incident]), (None, Vec::new())])
}

#[test]
fn budget_consumed_is_bad_events_over_what_the_objective_allows() {
    let (bad, allowed, share) = review::budget_consumed(&slo("a", Signal::Errors, 0.99, 990, 1_000)).unwrap();
    assert_eq!(bad, 10);
    assert!((allowed - 10.0).abs() < 1e-9 && (share - 1.0).abs() < 1e-9, "{allowed} {share}");
    let (_, allowed, share) =
        review::budget_consumed(&slo("b", Signal::Latency, 0.999, 9_995, 10_000)).unwrap();
    assert!((allowed - 10.0).abs() < 1e-6 && (share - 0.5).abs() < 1e-6, "{allowed} {share}");
    assert_eq!(review::budget_consumed(&slo("c", Signal::Saturation, 0.9, 5, 10)), None, "not an event SLO");
    assert_eq!(review::budget_consumed(&slo("d", Signal::Errors, 0.99, 0, 0)), None, "no events");
    assert_eq!(review::budget_consumed(&slo("e", Signal::Errors, 1.0, 9, 10)), None, "no budget at 100%");
}

#[test]
fn detections_say_measured_not_detected_or_not_measured() {
    let (g, runs) = game_day();
    let r = Review::new(&g, runs);
    assert_eq!(
        review::detections(&r.scenarios[0]),
        [
            ("CheckoutErrors".to_string(), Detected::After { ms: 12_500, resolved_ms: Some(40_000) }),
            ("CheckoutPage".to_string(), Detected::NotMeasured),
        ]
    );
    assert_eq!(
        review::detections(&r.scenarios[1]),
        [("DbLatency".to_string(), Detected::NotDetected { within_ms: 30_000 })]
    );
    assert_eq!(review::detections(&r.scenarios[2]), [], "nothing expected, nothing run");
}

#[test]
fn the_markdown_review_has_every_section_with_hand_computed_numbers() {
    let (g, runs) = game_day();
    let r = Review::new(&g, runs);
    let md = review::render_markdown(&r);
    let expected = [
        "# Game-day review: Checkout <game> day\n\nWorker loss and a slow database.\n",
        "- **Date:** 2025-12-06 05:46:40 UTC (ran for 90 s)",
        "- **State:** stopped",
        "- **Ended early:** scenario \"slow database\" ended failed (on_failure: stop)",
        "- **Scenarios:** 1 of 3 passed",
        "## Participants\n\n| Name | Role |\n|---|---|\n| Ada | facilitator |\n| Linus | on-call |\n",
        "| 1 | worker dies | PASSED | CheckoutErrors: 12.5 s; CheckoutPage: not measured | availability: 1.5 s | 0 |",
        "| 2 | slow database | FAILED | DbLatency: not detected (within 30 s) | latency: not shown recovered within the recovery window | 1 |",
        "| 3 | region loss | SKIPPED | not measured | not measured | 0 |",
        "### 1. worker dies: PASSED",
        "| CheckoutErrors | 12.5 s | 40 s |\n| CheckoutPage | not measured | – |",
        "| availability | 1.5 s |",
        "| availability | method | 10 | 10.0 | 100% |\n| db memory | method | – | – | not an event SLO |",
        "### 2. slow database: FAILED",
        "- latency: 91% of 2,000 requests ≤ 300 ms, objective 99%",
        "| DbLatency | not detected (within 30 s) | – |",
        "| latency | method | 180 | 20.0 | 900% |",
        "- `inc-7` SEV3 Checkout latency (investigating)",
        "### 3. region loss: SKIPPED\n\nExperiment `c.yaml`, no run, started –, lasted –.",
        "## Notes\n\n| Time (UTC) | Author | Note |\n|---|---|---|\n| 05:46:50 | Ada | <b>worker</b> killed |\n| 05:47:30 | Linus | paged \\| acked |",
        "## Action items\n\n- [ ] Link the runbooks\n",
        "- [ ] Detection of scenario \"worker dies\" by CheckoutPage was not measured",
        "- [ ] Scenario \"slow database\" ended failed: latency: 91% of 2,000 requests ≤ 300 ms, objective 99%.",
        "- [ ] Alert DbLatency did not fire within 30 s of scenario \"slow database\"'s fault.",
        "_This review is blameless",
    ];
    let mut from = 0;
    for part in expected {
        let at = md[from..].find(part).unwrap_or_else(|| panic!("{part:?} missing (in order) from:\n{md}"));
        from += at + part.len();
    }
    assert_eq!(review::action_items(&r).len(), 4, "{:#?}", review::action_items(&r));
}

#[test]
fn the_html_review_is_escaped_self_contained_and_has_every_section() {
    let (g, runs) = game_day();
    let r = Review::new(&g, runs);
    let page = review::render_html(&r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<h1>Game-day review: Checkout &lt;game&gt; day</h1>"), "the title is escaped");
    assert!(page.contains("&lt;b&gt;worker&lt;/b&gt; killed"), "notes are escaped");
    assert!(!page.contains("<b>worker"), "no markup from a note");
    for id in ["participants", "summary", "scenarios", "notes", "action-items"] {
        assert!(page.contains(&format!("<section id=\"{id}\">")), "section {id} missing");
    }
    assert!(page.contains("<td class=\"bad\">not detected (within 30 s)</td>"));
    assert!(page.contains("<td class=\"ok\">12.5 s</td>"));
    assert!(page.contains("<td class=\"num\">900%</td>"));
    for fetch in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(!page.contains(fetch), "the page fetches or runs something: {fetch}");
    }
    // The notes in time order here too.
    assert!(page.find("killed").unwrap() < page.find("paged").unwrap());
}

#[test]
fn the_review_round_trips_as_json_for_the_api() {
    let (g, runs) = game_day();
    let r = Review::new(&g, runs);
    let back: Review = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    assert_eq!(review::render_markdown(&back), review::render_markdown(&r));
}
