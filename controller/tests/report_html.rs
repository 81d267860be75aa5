//! The HTML report and the journal's series from journals built here: hostile strings are escaped, nothing
//! outside the file is referenced, every chart is accessible, the breach marker follows the SLO's result both
//! ways, fault windows sit on the chart's time scale, older journals still render, and a one-hour run with 20
//! series stays within its size bound. Real runs' reports are checked in tests/report_html.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chaos_controller::experiment::model::Signal;
use chaos_controller::report::series::{MAX_POINTS, round_ms, round_sig};
use chaos_controller::report::svg::{PLOT_LEFT, PLOT_RIGHT};
use chaos_controller::report::{
    ExperimentInfo, FaultWindow, Journal, PhaseWindow, SignalSample, SloSeries, SourceSummary, TimelineEntry,
    TimelineKind, Verdict, WindowSummary, journal::journal_json, render_html, render_markdown,
};
use chaos_controller::slo::SloResult;

const HOSTILE: &str = r#"<script>alert("x")</script> & <img src=x onerror='y'>"#;

fn slo_result(name: &str, passed: Option<bool>) -> SloResult {
    SloResult {
        name: name.to_string(),
        signal: Signal::Errors,
        window: "method".to_string(),
        passed,
        observed: 0.9,
        objective: 0.99,
        good: 90,
        total: 100,
        reason: format!("{name}: 90% of 100 requests succeeded during 'method', objective 99%"),
    }
}

/// A 20-second run: a fault from 5 s to 12.5 s, one SLO whose SLI dips during it.
fn journal(passed: bool) -> Journal {
    let duration_ms = 20_000;
    let sli: Vec<Option<f64>> =
        (0..20).map(|s| Some(if (5..13).contains(&s) && !passed { 0.5 } else { 1.0 })).collect();
    Journal {
        chaos_version: "0.1.0".to_string(),
        experiment: ExperimentInfo {
            title: "Checkout survives".to_string(),
            hypothesis: Some("It does.".to_string()),
            file: Some("experiments/checkout.yaml".to_string()),
        },
        seed: 42,
        started_at: "2026-11-25T12:00:00.000Z".to_string(),
        duration_ms,
        verdict: if passed { Verdict::Passed } else { Verdict::Failed },
        reasons: vec!["availability: 90% of 100 requests".to_string()],
        timeline: vec![
            TimelineEntry {
                at_ms: 5_000,
                kind: TimelineKind::FaultInjected,
                name: "slow".into(),
                detail: "latency".into(),
                ok: Some(true),
            },
            TimelineEntry {
                at_ms: 12_500,
                kind: TimelineKind::FaultReverted,
                name: "slow".into(),
                detail: "latency".into(),
                ok: Some(true),
            },
        ],
        slos: vec![slo_result("availability", Some(passed))],
        signals: (0..20)
            .map(|s| SignalSample {
                at_ms: s * 1000,
                source: "load:shoppers".to_string(),
                requests: 50,
                errors: 0,
                p50_ms: Some(2.0),
                p99_ms: Some(9.0),
                rate: 50.0,
                p95_ms: Some(5.0),
                error_ratio: Some(0.0),
            })
            .collect(),
        step_ms: 1000,
        phases: vec![PhaseWindow { name: "method".into(), start_ms: 2_000, end_ms: 12_500 }],
        faults: vec![FaultWindow {
            name: "slow".into(),
            detail: "latency".into(),
            start_ms: 5_000,
            end_ms: 12_500,
            instant: false,
            reverted: true,
        }],
        slo_series: vec![SloSeries {
            name: "availability".into(),
            signal: Signal::Errors,
            source: "load:shoppers".into(),
            objective: 0.99,
            threshold_ms: None,
            sli,
            breach_ms: (!passed).then_some(5_010),
            fault_end_ms: Some(12_500),
            recovered_ms: Some(13_700),
        }],
        measured: vec![SourceSummary {
            source: "load:shoppers".into(),
            before: WindowSummary {
                from_ms: 0,
                to_ms: 5_000,
                requests: 250,
                p99_ms: Some(9.0),
                ..Default::default()
            },
            during: WindowSummary {
                from_ms: 5_000,
                to_ms: 12_500,
                requests: 375,
                errors: 30,
                error_ratio: Some(0.08),
                p50_ms: Some(101.5),
                p95_ms: Some(120.26),
                p99_ms: Some(130.125),
                rate: 50.0,
            },
            after: WindowSummary { from_ms: 12_500, to_ms: 20_000, requests: 375, ..Default::default() },
        }],
        ..Journal::default()
    }
}

/// Every start tag `<NAME ` in `html` whose attribute `class` is `class`, as the tag text.
fn tags<'a>(html: &'a str, name: &str, class: &str) -> Vec<&'a str> {
    let open = format!("<{name} class=\"{class}\"");
    html.match_indices(&open).map(|(i, _)| &html[i..i + html[i..].find('>').unwrap()]).collect()
}

fn attr(tag: &str, name: &str) -> f64 {
    let key = format!(" {name}=\"");
    let start = tag.find(&key).unwrap_or_else(|| panic!("no {name} in {tag}")) + key.len();
    tag[start..start + tag[start..].find('"').unwrap()].parse().unwrap()
}

#[test]
fn hostile_strings_are_escaped_everywhere() {
    let mut j = journal(false);
    j.experiment.title = HOSTILE.to_string();
    j.experiment.hypothesis = Some(HOSTILE.to_string());
    j.experiment.file = Some(format!("{HOSTILE}.yaml"));
    j.reasons = vec![HOSTILE.to_string()];
    j.slos[0].name = HOSTILE.to_string();
    j.slos[0].reason = HOSTILE.to_string();
    j.slo_series[0].name = HOSTILE.to_string();
    j.faults[0].name = HOSTILE.to_string();
    j.faults[0].detail = HOSTILE.to_string();
    j.measured[0].source = HOSTILE.to_string();
    for s in &mut j.signals {
        s.source = HOSTILE.to_string();
    }
    let html = render_html(&j);
    assert!(!html.contains("<script"), "a script tag got through");
    assert!(!html.contains("<img"), "an img tag got through");
    assert!(!html.contains("onerror='"), "an attribute got through");
    assert!(html.contains(
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img src=x onerror=&#39;y&#39;&gt;"
    ));
    assert!(html.contains("<title>failed: &lt;script&gt;"), "the document title is escaped too");
    // The rerun command quotes the file for the shell, then escapes it for HTML.
    assert!(html.contains("<code>chaos run &#39;&lt;script&gt;"), "{html}");
}

#[test]
fn the_report_is_self_contained_and_accessible() {
    let html = render_html(&journal(false));
    assert!(html.starts_with("<!DOCTYPE html>"));
    for outside in ["<script", "<link", "src=", "href=", "url(", "@import", "https://"] {
        assert!(!html.contains(outside), "{outside:?} in a self-contained report");
    }
    // The only URL is the SVG namespace, which is a name, never fetched.
    assert_eq!(html.matches("http://").count(), html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());
    assert!(html.contains("@media (prefers-color-scheme:dark)") && html.contains("@media print"));
    let charts = html.matches("<svg ").count();
    assert_eq!(charts, 4, "one SLO chart, then latency, errors and traffic of the one source");
    assert_eq!(html.matches(r#"role="img""#).count(), charts);
    let mut ids = Vec::new();
    for (i, _) in html.match_indices("<svg ") {
        let svg = &html[i..i + html[i..].find("</svg>").unwrap()];
        let labelled = svg.split("aria-labelledby=\"").nth(1).unwrap().split('"').next().unwrap();
        for id in labelled.split(' ') {
            assert!(svg.contains(&format!(" id=\"{id}\">")), "{id} labels nothing in {svg}");
            ids.push(id.to_string());
        }
        assert!(svg.contains("<title id=") && svg.contains("<desc id="), "{svg}");
    }
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "chart ids repeat: {ids:?}");
    // A data table stands in for the SLO chart.
    assert!(html.contains("<summary>Data table: SLO availability"), "{html}");
    assert!(html.contains(r#"<p class="verdict failed" id="verdict">"#));
}

#[test]
fn the_breach_marker_follows_the_result_both_ways() {
    let failed = render_html(&journal(false));
    let breaches = tags(&failed, "g", "breach");
    assert_eq!(breaches.len(), 1, "one failed SLO, one breach marker");
    assert_eq!(attr(breaches[0], "data-at-ms"), 5_010.0);
    let passed = render_html(&journal(true));
    assert!(tags(&passed, "g", "breach").is_empty(), "a passing SLO has no breach marker");
    // Recovery is annotated either way, with its time.
    for html in [&failed, &passed] {
        assert_eq!(tags(html, "g", "recovered").len(), 1);
        assert!(html.contains(">recovered in 1.2 s</text>"), "{html}");
    }
}

#[test]
fn fault_windows_sit_on_the_time_scale() {
    let j = journal(false);
    let html = render_html(&j);
    let rects = tags(&html, "rect", "fault");
    assert_eq!(rects.len(), 4, "the fault is shaded on every chart");
    let x = |ms: f64| PLOT_LEFT + ms / j.duration_ms as f64 * (PLOT_RIGHT - PLOT_LEFT);
    for rect in rects {
        assert!((attr(rect, "x") - x(5_000.0)).abs() <= 0.05, "{rect}");
        assert!((attr(rect, "x") + attr(rect, "width") - x(12_500.0)).abs() <= 0.1, "{rect}");
    }
}

#[test]
fn a_journal_without_series_still_reads_and_renders() {
    // A journal as chaos wrote it before series existed.
    let old = r#"{"chaos_version":"0.1.0","experiment":{"title":"t","hypothesis":null,"file":null},"seed":1,
        "started_at":"2026-01-01T00:00:00.000Z","duration_ms":1000,"verdict":"passed","reasons":[],"timeline":[],
        "probes":[],"slos":[],"recovery":[],"signals":[{"at_ms":0,"source":"load:a","requests":3,"errors":1,
        "p50_ms":1.5,"p99_ms":2.5,"rate":3.0}]}"#;
    let j: Journal = serde_json::from_str(old).unwrap();
    assert_eq!((j.step_ms, j.signals[0].p95_ms, j.slo_series.len()), (1000, None, 0));
    let html = render_html(&j);
    assert!(html.contains("load:a: latency p50, p95, p99"), "{html}");
    assert!(html.contains("33.3%"), "the error ratio is derived from the counts: {html}");
}

#[test]
fn the_summary_has_latency_and_errors_before_during_and_after() {
    let md = render_markdown(&journal(false));
    for row in [
        "| load:shoppers | before (0 s–5 s) | 250 | – | – | – | 9 ms |",
        "| load:shoppers | during (5 s–12.5 s) | 375 | 8% | 101.5 ms | 120.3 ms | 130.1 ms |",
        "| load:shoppers | after (12.5 s–20 s) | 375 | – | – | – | – |",
    ] {
        assert!(md.contains(row), "missing {row:?} in\n{md}");
    }
}

/// The bound: a one-hour run with 20 sources and 20 SLOs at the step the journal uses for it.
#[test]
fn a_one_hour_run_with_20_series_stays_small() {
    let duration_ms = 3_600_000u64;
    let step_ms = chaos_controller::report::series::series_step(std::time::Duration::from_millis(duration_ms))
        .as_millis() as u64;
    let points = duration_ms.div_ceil(step_ms);
    assert!(points <= MAX_POINTS);
    let mut j = journal(false);
    j.duration_ms = duration_ms;
    j.step_ms = step_ms;
    j.signals.clear();
    j.slo_series.clear();
    let mut seed = 7u64;
    let mut noise = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    for s in 0..20 {
        let source = format!("load:source-{s}");
        for i in 0..points {
            let requests = 140 + (noise() * 20.0) as u64;
            let errors = (noise() * 3.0) as u64;
            j.signals.push(SignalSample {
                at_ms: i * step_ms,
                source: source.clone(),
                requests,
                errors,
                p50_ms: Some(round_ms(2.0 + noise() * 3.0)),
                p99_ms: Some(round_ms(20.0 + noise() * 80.0)),
                rate: round_sig(requests as f64 / (step_ms as f64 / 1000.0)),
                p95_ms: Some(round_ms(10.0 + noise() * 20.0)),
                error_ratio: Some(round_sig(errors as f64 / requests as f64)),
            });
        }
        let mut slo = journal(false).slo_series.remove(0);
        slo.name = format!("slo-{s}");
        slo.sli = (0..points).map(|_| Some(round_sig(0.98 + noise() * 0.02))).collect();
        j.slo_series.push(slo);
    }
    let json = journal_json(&j).unwrap();
    let html = render_html(&j);
    // 20 × 1,200 samples: ~200 bytes each in the journal; the report draws each series once more.
    assert!(json.len() < 6 << 20, "journal {} bytes", json.len());
    assert!(html.len() < 12 << 20, "report {} bytes", html.len());
    let back: Journal = serde_json::from_str(&json).unwrap();
    assert_eq!(back, j, "the compact layout reads back exactly");
    // One line per sample and per series, not per number.
    assert!(json.lines().count() < 20 * points as usize + 500, "{} lines", json.lines().count());
}
