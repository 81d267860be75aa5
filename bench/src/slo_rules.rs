//! `chaos slo rules` for 1,000 SLOs (issue 14): the time to render the Prometheus rule file and the promtool
//! test file, and their sizes, in-process through `chaos-controller`. Baseline in the same run: reading the
//! same 1,000 SLOs from their YAML file (`slo_file::parse`, what the command does before rendering). When
//! `promtool` is installed, `promtool check rules` on the output is timed too (what a CI step adds).
//!
//! The SLOs cycle through the shapes the generator handles: bad events (30 d), good events with a label
//! (28 d), latency with a fractional threshold and matchers (7 d), latency with a whole-number threshold
//! and a disabled ticket (30 d).

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chaos_controller::slo_file::{self, promtool::render_tests, rules::render};
use serde::Serialize;

use crate::stats::percentile;

/// How many SLOs and timed rounds.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub slos: usize,
    pub rounds: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        if quick { Sizes { slos: 100, rounds: 3 } } else { Sizes { slos: 1000, rounds: 5 } }
    }
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct SloRules {
    pub slos: usize,
    pub rounds: usize,
    /// Median wall time of one step, ms.
    pub parse_ms: f64,
    pub rules_ms: f64,
    pub tests_ms: f64,
    pub input_bytes: usize,
    pub rules_bytes: usize,
    pub rules_count: usize,
    pub tests_bytes: usize,
    pub test_groups: usize,
    /// `promtool check rules` on the rule file, ms (None: promtool not installed).
    pub promtool_check_ms: Option<f64>,
}

/// One SLO document of the synthetic set.
fn document(i: usize) -> String {
    let head = format!("apiVersion: chaos/v1\nkind: SLO\nservice: svc{}\nname: slo{i}\n", i / 10);
    let body = match i % 4 {
        0 => "objective: 99.9%\nperiod: 30d\nsli:\n  events:\n    bad: 'http_requests_total{job=\"api\",code=~\"5..\"}'\n    total: 'http_requests_total{job=\"api\"}'\nrunbook_url: https://runbooks.example.com/api\n".to_string(),
        1 => "objective: 99.5%\nperiod: 28d\nsli:\n  events:\n    good: 'rpc_total{code=\"OK\"}'\n    total: rpc_total\nlabels:\n  team: payments\n".to_string(),
        2 => "objective: 99%\nperiod: 7d\nsli:\n  latency:\n    histogram: http_request_duration_seconds\n    matchers: '{job=\"api\",route!=\"/health\"}'\n    threshold: 250ms\n".to_string(),
        _ => "objective: 95%\nperiod: 30d\nsli:\n  latency:\n    histogram: queue_wait_seconds\n    threshold: 1s\nalerting:\n  ticket:\n    disabled: true\n".to_string(),
    };
    format!("{head}{body}")
}

pub fn run(sizes: &Sizes) -> Result<SloRules> {
    let input = (0..sizes.slos).map(document).collect::<Vec<_>>().join("---\n");
    let mut parse = Vec::new();
    let mut rules = Vec::new();
    let mut tests = Vec::new();
    let mut last = (String::new(), String::new());
    for _ in 0..sizes.rounds {
        let start = Instant::now();
        let slos = slo_file::parse("bench.yaml", &input).map_err(|d| anyhow::anyhow!("{d}"))?;
        parse.push(start.elapsed());
        ensure!(slos.len() == sizes.slos, "parsed {} SLOs, expected {}", slos.len(), sizes.slos);
        let start = Instant::now();
        let text = black_box(render(&slos));
        rules.push(start.elapsed());
        let start = Instant::now();
        let test_text = black_box(render_tests(&slos, "rules.yaml"));
        tests.push(start.elapsed());
        last = (text, test_text);
    }
    let (rules_text, tests_text) = last;
    let promtool_check_ms = promtool_check(&rules_text)?;
    Ok(SloRules {
        slos: sizes.slos,
        rounds: sizes.rounds,
        parse_ms: median(parse),
        rules_ms: median(rules),
        tests_ms: median(tests),
        input_bytes: input.len(),
        rules_bytes: rules_text.len(),
        rules_count: rules_text
            .lines()
            .filter(|l| l.starts_with("      - record:") || l.starts_with("      - alert:"))
            .count(),
        tests_bytes: tests_text.len(),
        test_groups: tests_text.lines().filter(|l| l.starts_with("  - name:")).count(),
        promtool_check_ms,
    })
}

fn promtool_check(rules: &str) -> Result<Option<f64>> {
    let dir = std::env::temp_dir().join(format!("chaos-bench-slo-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("rules.yaml");
    std::fs::write(&path, rules).with_context(|| format!("write {}", path.display()))?;
    let start = Instant::now();
    let out = std::process::Command::new("promtool").arg("check").arg("rules").arg(&path).output();
    let elapsed = ms(start.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("run promtool"),
        Ok(out) => {
            ensure!(
                out.status.success(),
                "promtool check rules failed on the generated file: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(Some(elapsed))
        }
    }
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    if times.is_empty() { 0.0 } else { ms(percentile(&times, 50.0)) }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The Markdown section.
pub fn render_section(r: &Result<SloRules>) -> String {
    let mut out = String::from("\n## `chaos slo rules`: rules and promtool tests for many SLOs\n\n");
    match r {
        Err(e) => out.push_str(&format!("error: {e:#}\n")),
        Ok(r) => {
            out.push_str(&format!(
                "{} SLOs (4 shapes, 30d/28d/7d), median of {} rounds, in-process.\n\n\
                 | step | time | output |\n|---|---|---|\n\
                 | read the SLO file (baseline) | {:.1} ms | {} bytes in |\n\
                 | `render` (rule file) | {:.1} ms | {} bytes, {} rules |\n\
                 | `render_tests` (promtool tests) | {:.1} ms | {} bytes, {} test groups |\n",
                r.slos,
                r.rounds,
                r.parse_ms,
                r.input_bytes,
                r.rules_ms,
                r.rules_bytes,
                r.rules_count,
                r.tests_ms,
                r.tests_bytes,
                r.test_groups,
            ));
            match r.promtool_check_ms {
                Some(t) => out.push_str(&format!("| `promtool check rules` on the output | {t:.0} ms | |\n")),
                None => out.push_str("\n(promtool not installed: `promtool check rules` not timed)\n"),
            }
        }
    }
    out
}
