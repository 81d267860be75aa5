//! `chaos slo status` for 100 SLOs against a real Prometheus (Debian's package) holding 30 days of backfilled
//! history: queries issued and wall time of `slo_file::status::status_all` (one tagged query per SLO, plus
//! one `le` label-values request per latency SLO whose file lists no buckets; 8 SLOs at a time), in-process
//! through `chaos-controller`, exactly what the command runs.
//!
//! Baseline in the same run, on the same server and SLOs: the figures asked one expression at a time with
//! the per-figure functions of `slo_file::budget` (`period_error_ratio`, then `burn_rates`: one query per
//! distinct window), one SLO after the other — what status would cost without the combined query.
//!
//! The history: 10 services, each with `http_requests_total{job, code}` (10 requests/s, 0.05 % errors) and an
//! `http_request_duration_seconds` histogram (buckets 0.05 … 1 s), a sample every 10 minutes for 29 days and
//! every minute over the last day. The SLOs: half availability over 30 days (objectives 99, 99.5 and 99.9 %), half
//! latency over 7 days (thresholds on the buckets; half of them list their buckets, half ask Prometheus).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chaos_controller::slo_file::query::Prometheus as Client;
use chaos_controller::slo_file::status::{self, State};
use chaos_controller::slo_file::{self, SloDef, budget};
use chaos_test_support::prometheus::{self, Prometheus};
use serde::Serialize;

/// The evaluation time: the last sample.
const END: u64 = 1_790_000_000;
const DAY: u64 = 86_400;
const SERVICES: usize = 10;
const BUCKETS: [f64; 6] = [0.05, 0.1, 0.25, 0.5, 1.0, f64::INFINITY];

/// How much to measure.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// SLOs read per round.
    pub slos: usize,
    /// Measured rounds of each variant (after one warm-up round).
    pub rounds: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        if quick { Sizes { slos: 20, rounds: 3 } } else { Sizes { slos: 100, rounds: 10 } }
    }
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct SloStatus {
    pub sizes: Sizes,
    /// Samples backfilled, TSDB blocks, and the seconds `promtool` plus the server start took.
    pub samples: usize,
    pub blocks: usize,
    pub backfill_secs: f64,
    /// `status_all`: HTTP requests per round, and wall time per round (median, max), ms.
    pub queries: u64,
    pub wall_p50_ms: f64,
    pub wall_max_ms: f64,
    /// Baseline: the per-figure functions, sequentially.
    pub baseline_queries: u64,
    pub baseline_p50_ms: f64,
    pub baseline_max_ms: f64,
}

/// Runs the benchmark; an error when Prometheus cannot be run here.
pub async fn run(sizes: &Sizes) -> Result<SloStatus> {
    if let Err(why) = prometheus::available() {
        bail!("{why}");
    }
    let slos = slos(sizes.slos)?;
    let (om, samples) = history();
    let started = Instant::now();
    let server =
        tokio::task::spawn_blocking(move || Prometheus::backfilled(&om, "global: {scrape_interval: 60s}\n"))
            .await
            .context("starting prometheus")?;
    let backfill_secs = started.elapsed().as_secs_f64();
    let blocks = std::fs::read_dir(server.dir().join("data"))?
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().join("meta.json").exists()))
        .count();
    let url = server.url();

    let mut walls = Vec::new();
    let mut queries = 0;
    for round in 0..=sizes.rounds {
        let prom = Arc::new(Client::new(&url));
        let t = Instant::now();
        let statuses = status::status_all(prom.clone(), &slos, END as f64).await;
        let wall = t.elapsed();
        let bad: Vec<String> = statuses
            .iter()
            .filter(|s| s.state != State::Ok)
            .map(|s| format!("{}: {:?} {:?}", s.slo.id(), s.state, s.reason))
            .collect();
        ensure!(bad.is_empty(), "every SLO of the benchmark has budget left, but:\n{}", bad.join("\n"));
        if round > 0 {
            walls.push(wall);
            queries = prom.queries_issued();
        }
    }

    let mut baseline = Vec::new();
    let mut baseline_queries = 0;
    for round in 0..=sizes.rounds {
        let prom = Client::new(&url);
        let t = Instant::now();
        for slo in &slos {
            let ratio = budget::period_error_ratio(&prom, slo, Some(END as f64)).await?;
            ensure!(ratio.is_some(), "{}: no data in the baseline", slo.id());
            let burns = budget::burn_rates(&prom, slo, None, Some(END as f64)).await?;
            std::hint::black_box((ratio, burns));
        }
        if round > 0 {
            baseline.push(t.elapsed());
            baseline_queries = prom.queries_issued();
        }
    }
    drop(server);
    let (wall_p50_ms, wall_max_ms) = summary(&mut walls);
    let (baseline_p50_ms, baseline_max_ms) = summary(&mut baseline);
    Ok(SloStatus {
        sizes: sizes.clone(),
        samples,
        blocks,
        backfill_secs,
        queries,
        wall_p50_ms,
        wall_max_ms,
        baseline_queries,
        baseline_p50_ms,
        baseline_max_ms,
    })
}

/// Median and maximum, in ms.
fn summary(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (times.get(times.len() / 2).map_or(0.0, |d| ms(*d)), times.last().map_or(0.0, |d| ms(*d)))
}

/// `n` SLOs over the [`SERVICES`] services: availability (30 d) and latency (7 d) in turn.
fn slos(n: usize) -> Result<Vec<SloDef>> {
    let objectives = ["99%", "99.5%", "99.9%", "99.95%", "99.99%"];
    let mut docs = Vec::new();
    for i in 0..n {
        let job = format!("svc{}", i % SERVICES);
        let doc = if i % 2 == 0 {
            format!(
                "apiVersion: chaos/v1\nkind: SLO\nservice: {job}\nname: availability-{i}\nobjective: '{}'\nperiod: 30d\n\
                 sli:\n  events:\n    bad: http_requests_total{{job=\"{job}\",code=~\"5..\"}}\n    total: http_requests_total{{job=\"{job}\"}}\n",
                objectives[(i / 2) % 3]
            )
        } else {
            let threshold = ["250ms", "500ms", "1s"][(i / 2) % 3];
            let buckets = if (i / 2) % 2 == 0 { "    buckets: [0.05, 0.1, 0.25, 0.5, 1]\n" } else { "" };
            format!(
                "apiVersion: chaos/v1\nkind: SLO\nservice: {job}\nname: latency-{i}\nobjective: 95%\nperiod: 7d\n\
                 sli:\n  latency:\n    histogram: http_request_duration_seconds\n    matchers: '{{job=\"{job}\"}}'\n    threshold: {threshold}\n{buckets}"
            )
        };
        docs.push(doc);
    }
    slo_file::parse("bench-slos.yaml", &docs.join("---\n")).map_err(|d| anyhow::anyhow!("{d}"))
}

/// The OpenMetrics history and its sample count.
fn history() -> (String, usize) {
    let mut times: Vec<u64> =
        (0..).map(|i| END - 30 * DAY + i * 600).take_while(|t| *t < END - DAY).collect();
    times.extend((0..=DAY / 60).map(|i| END - DAY + i * 60));
    let mut om = String::from("# TYPE http_requests_total counter\n");
    let mut samples = 0;
    let mut series = |om: &mut String, name: String, rate: f64| {
        for &t in &times {
            let value = rate * (t - times[0]) as f64;
            om.push_str(&format!("{name} {value} {t}\n"));
            samples += 1;
        }
    };
    for s in 0..SERVICES {
        series(&mut om, format!("http_requests_total{{job=\"svc{s}\",code=\"200\"}}"), 9.995);
        series(&mut om, format!("http_requests_total{{job=\"svc{s}\",code=\"500\"}}"), 0.005);
    }
    om.push_str("# TYPE http_request_duration_seconds histogram\n");
    for s in 0..SERVICES {
        // 90 % ≤ 50 ms, then 99 %, 99.5 %, 99.9 %, 99.99 %, all.
        for (bound, share) in BUCKETS.iter().zip([0.9, 0.99, 0.995, 0.999, 0.9999, 1.0]) {
            let le = if bound.is_finite() { format!("{bound:?}") } else { "+Inf".to_string() };
            series(
                &mut om,
                format!("http_request_duration_seconds_bucket{{job=\"svc{s}\",le=\"{le}\"}}"),
                10.0 * share,
            );
        }
        series(&mut om, format!("http_request_duration_seconds_count{{job=\"svc{s}\"}}"), 10.0);
    }
    om.push_str("# EOF\n");
    (om, samples)
}

/// The Markdown section.
pub fn render(r: &Result<SloStatus, String>) -> String {
    let mut out = String::from("\n## `chaos slo status`\n\n");
    match r {
        Err(e) => out.push_str(&format!("not run: {e}\n")),
        Ok(r) => {
            out.push_str(&format!(
                "{} SLOs (half availability over 30 d, half latency over 7 d) against a real Prometheus holding \
                 30 days of backfilled history ({} samples, {} blocks, backfill and start {:.1} s); {} rounds \
                 after a warm-up.\n\n",
                r.sizes.slos, r.samples, r.blocks, r.backfill_secs, r.sizes.rounds
            ));
            out.push_str("| variant | queries | wall p50 | wall max |\n|---|---:|---:|---:|\n");
            out.push_str(&format!(
                "| `slo status` (one tagged query per SLO, 8 at a time) | {} | {:.1} ms | {:.1} ms |\n",
                r.queries, r.wall_p50_ms, r.wall_max_ms
            ));
            out.push_str(&format!(
                "| baseline: `budget::period_error_ratio` + `burn_rates`, one SLO at a time | {} | {:.1} ms | {:.1} ms |\n",
                r.baseline_queries, r.baseline_p50_ms, r.baseline_max_ms
            ));
        }
    }
    out
}
