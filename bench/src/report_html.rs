//! The HTML run report of a one-hour run with 20 series: 20 load sources at 20 requests/s each (1.44 M
//! events), one SLO each, a 10-minute fault in the middle, built in-process through `chaos-controller` the
//! way `chaos run` does after a run: `engine::journal` (series from the event logs), the journal JSON
//! (`write_journal`'s layout), then `render_html`. Baseline in the same run: `serde_json::to_string` of the
//! same journal (what the controller's store keeps), the cheapest way to put the same data in a file.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chaos_controller::engine::{self, EventKind, Outcome, RunConfig, TimelineEvent, Verdict};
use chaos_controller::report::{self, Journal};
use chaos_controller::signals::{Event, EventLog};
use serde::Serialize;

/// Load sources (and SLOs, one per source).
pub const SOURCES: usize = 20;
/// Requests per second per source.
const RATE: u64 = 20;
/// The run's length.
const RUN: Duration = Duration::from_secs(3600);
/// The fault: from 25 to 35 minutes.
const FAULT: (Duration, Duration) = (Duration::from_secs(1500), Duration::from_secs(2100));

#[derive(Debug, Clone, Serialize)]
pub struct ReportResult {
    pub sources: usize,
    pub events: usize,
    pub run_secs: u64,
    /// Points per series (the journal's step bounds them).
    pub points_per_series: usize,
    pub step_ms: u64,
    pub renders: usize,
    /// Medians, ms.
    pub journal_build_ms: f64,
    pub journal_json_ms: f64,
    pub html_render_ms: f64,
    pub baseline_to_string_ms: f64,
    pub journal_bytes: usize,
    pub html_bytes: usize,
    pub baseline_bytes: usize,
}

/// A deterministic generator (seeded LCG): the same journal every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn experiment() -> Result<chaos_controller::experiment::Checked> {
    let mut yaml = String::from(
        "apiVersion: chaos/v1\ntitle: One hour, 20 sources\nhypothesis: The shop holds for an hour.\n\
         targets:\n  shop:\n    proxy: { api: \"http://127.0.0.1:8474\", name: shop, listen: \"127.0.0.1:18080\", \
         upstream: \"127.0.0.1:8080\" }\nload:\n",
    );
    for s in 0..SOURCES {
        yaml.push_str(&format!(
            "  - {{ name: s{s}, http: {{ url: \"http://127.0.0.1:18080/\" }}, rate: {RATE}/s }}\n"
        ));
    }
    yaml.push_str("slos:\n");
    for s in 0..SOURCES {
        let slo = if s % 2 == 0 {
            format!("  - {{ name: ok{s}, signal: errors, objective: 99%, source: {{ load: s{s} }} }}\n")
        } else {
            format!(
                "  - {{ name: fast{s}, signal: latency, threshold: 300ms, objective: 99%, source: {{ load: s{s} }} }}\n"
            )
        };
        yaml.push_str(&slo);
    }
    yaml.push_str(
        "method:\n  - { name: slow shop, fault: latency, target: shop, with: { latency: 100 }, duration: 600s }\n",
    );
    chaos_controller::experiment::parse("bench.yaml", &yaml, &[]).map_err(|d| anyhow::anyhow!("{d}"))
}

/// The outcome of the hour: every source's events, the fault's timeline, the SLO verdicts as judged.
fn outcome(exp: &chaos_controller::experiment::Checked) -> Outcome {
    let mut rng = Lcg(42);
    let mut logs = BTreeMap::new();
    let mut events = 0;
    for s in 0..SOURCES {
        let log = Arc::new(EventLog::default());
        let n = RUN.as_secs() * RATE;
        for i in 0..n {
            let at = Duration::from_nanos(i * 1_000_000_000 / RATE);
            let faulted = at >= FAULT.0 && at < FAULT.1;
            let base = 2.0 + rng.next() * 3.0 + if rng.next() < 0.01 { 40.0 } else { 0.0 };
            let ms = if faulted { base + 100.0 + rng.next() * 20.0 } else { base };
            let ok = rng.next() >= if faulted { 0.02 } else { 0.001 };
            log.push(Event { at, latency: Duration::from_secs_f64(ms / 1e3), ok });
            events += 1;
        }
        logs.insert(format!("load:s{s}"), log);
    }
    let note = |at: Duration, kind: EventKind, name: &str, ok: Option<bool>| TimelineEvent {
        at,
        kind,
        name: name.to_string(),
        detail: "toxic on proxy shop".to_string(),
        ok,
    };
    let method = (Duration::from_secs(2), Duration::from_millis(2_100_020));
    let mut outcome = Outcome {
        verdict: Verdict::Failed,
        reasons: vec!["ok0: 98.1% of 72,000 requests succeeded during 'method', objective 99%".to_string()],
        timeline: vec![
            note(Duration::ZERO, EventKind::Phase, "baseline", None),
            note(method.0, EventKind::Phase, "method", None),
            note(FAULT.0, EventKind::FaultInjected, "slow shop", Some(true)),
            note(FAULT.1, EventKind::FaultReverted, "slow shop", Some(true)),
            note(method.1, EventKind::Phase, "recovery", None),
        ],
        duration: RUN,
        method_window: Some(method),
        ..Outcome::default()
    };
    for slo in &exp.slos {
        let key = engine::source_key(slo);
        let judged = logs[&key].between(method.0, method.1);
        let window = chaos_controller::slo::Phase::new("method", method.0, method.1);
        let observed = chaos_controller::slo::Observations::events(&judged);
        outcome.slos.push(chaos_controller::slo::evaluate(slo, &observed, &window));
        let after = logs[&key].between(FAULT.1, RUN);
        outcome
            .recovery
            .push((slo.name.clone(), chaos_controller::slo::time_to_recover(slo, &after, FAULT.1)));
    }
    outcome.logs = logs;
    debug_assert_eq!(events, SOURCES * (RUN.as_secs() * RATE) as usize);
    outcome
}

fn median(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = black_box(f());
    (start.elapsed().as_secs_f64() * 1e3, out)
}

pub fn run(quick: bool) -> Result<ReportResult> {
    let exp = experiment()?;
    let outcome = outcome(&exp);
    let config = RunConfig {
        seed: 7,
        file: "bench.yaml".to_string(),
        progress: None,
        stop_rollbacks: Default::default(),
    };
    let renders = if quick { 3 } else { 9 };
    let started = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_600_000);
    let (mut build, mut json_ms, mut html_ms, mut base_ms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut journal, mut json, mut html, mut base) =
        (Journal::default(), String::new(), String::new(), String::new());
    for _ in 0..renders {
        let (ms, j) = time(|| engine::journal(&exp, &config, &outcome, started));
        build.push(ms);
        journal = j;
        let (ms, j) = time(|| report::journal::journal_json(&journal));
        json_ms.push(ms);
        json = j.context("journal JSON")?;
        let (ms, h) = time(|| report::render_html(&journal));
        html_ms.push(ms);
        html = h;
        let (ms, b) = time(|| serde_json::to_string(&journal));
        base_ms.push(ms);
        base = b?;
    }
    Ok(ReportResult {
        sources: SOURCES,
        events: outcome.logs.values().map(|l| l.len()).sum(),
        run_secs: RUN.as_secs(),
        points_per_series: journal.slo_series.first().map_or(0, |s| s.sli.len()),
        step_ms: journal.step_ms,
        renders,
        journal_build_ms: median(build),
        journal_json_ms: median(json_ms),
        html_render_ms: median(html_ms),
        baseline_to_string_ms: median(base_ms),
        journal_bytes: json.len(),
        html_bytes: html.len(),
        baseline_bytes: base.len(),
    })
}

/// The Markdown section.
pub fn render(result: &Result<ReportResult>) -> String {
    let mut out = format!(
        "## HTML run report: a one-hour run with {SOURCES} series\n\nIn-process (chaos-controller): {SOURCES} load \
         sources at {RATE}/s for an hour, one SLO each, a 10-minute latency fault. `engine::journal` builds the \
         series from the event logs, `journal_json` writes the journal, `render_html` the report. Baseline: \
         `serde_json::to_string` of the same journal. Medians.\n\n"
    );
    match result {
        Ok(r) => {
            out.push_str(
                "| events | points per series | step | journal build ms | journal JSON ms | journal bytes | \
                 HTML render ms | HTML bytes | baseline to_string ms | baseline bytes |\n\
                 |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            );
            out.push_str(&format!(
                "| {} | {} | {} ms | {:.1} | {:.1} | {} | {:.1} | {} | {:.1} | {} |\n\n",
                r.events,
                r.points_per_series,
                r.step_ms,
                r.journal_build_ms,
                r.journal_json_ms,
                r.journal_bytes,
                r.html_render_ms,
                r.html_bytes,
                r.baseline_to_string_ms,
                r.baseline_bytes
            ));
        }
        Err(e) => out.push_str(&format!("error: {e:#}\n\n")),
    }
    out
}
