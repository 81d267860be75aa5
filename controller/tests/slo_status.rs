//! `slo_file::status` against a real Prometheus (Debian's package) holding 30 days of backfilled history:
//! every figure of every SLO — availability (bad and good counters), latency (histogram buckets, `1` vs
//! `1.0`), a ratio-only SLI, a query Prometheus refuses, 30-day and 7-day periods, a fully spent budget, no data, a threshold that is not a
//! bucket bound, an unreachable server — compared with values computed by hand below.
//!
//! The history has a sample every 10 minutes for the first 29 days and every 10 seconds for the last day, and
//! every window the SLOs ask for (the periods, 3d, 16h48m, 6h, 1h24m, 1h, 30m, 14m, 7m, 5m, 1m10s) starts and
//! ends on a sample, so Prometheus 2.42 (ranges closed on both ends) does not extrapolate any rate: the figures
//! match the hand-computed ones up to float noise (relative tolerance 1e-6, see [`close`]). Rates change only at
//! `END − 1h`, also a sample time. Backfill and start take about a second (3 blocks: see
//! `chaos_test_support::prometheus::Prometheus::backfilled`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos_controller::slo_file::model::Severity;
use chaos_controller::slo_file::query::Prometheus as Client;
use chaos_controller::slo_file::status::{self, Exhaustion, State, Status};
use chaos_controller::slo_file::{self, SloDef};
use chaos_test_support::prometheus::{Prometheus, available};
use chaos_test_support::skip;

/// The evaluation time: the last sample.
const END: u64 = 1_790_000_000;
const DAY: u64 = 86_400;

/// Per-second rates of every series at time `t` (constant on `[t, next sample)`).
fn rates(t: u64) -> Vec<(&'static str, f64)> {
    let last_hour = t >= END - 3_600;
    // shop: 10 requests/s; 0.05 % fail, 5 % in the last hour.
    let shop_bad = if last_hour { 0.5 } else { 0.005 };
    vec![
        (r#"http_requests_total{job="shop",code="200"}"#, 10.0 - shop_bad),
        (r#"http_requests_total{job="shop",code="500"}"#, shop_bad),
        // legacy: 5 requests/s, 2 % fail all the time.
        (r#"http_requests_total{job="legacy",code="200"}"#, 4.9),
        (r#"http_requests_total{job="legacy",code="500"}"#, 0.1),
        // shop latency: 10 requests/s, 80 % ≤ 100 ms, 99.5 % ≤ 250 ms, 99.9 % ≤ 500 ms, 99.99 % ≤ 1 s; the
        // exporter writes whole bounds as `1.0`.
        (r#"http_request_duration_seconds_bucket{job="shop",le="0.1"}"#, 8.0),
        (r#"http_request_duration_seconds_bucket{job="shop",le="0.25"}"#, 9.95),
        (r#"http_request_duration_seconds_bucket{job="shop",le="0.5"}"#, 9.99),
        (r#"http_request_duration_seconds_bucket{job="shop",le="1.0"}"#, 9.999),
        (r#"http_request_duration_seconds_bucket{job="shop",le="+Inf"}"#, 10.0),
        (r#"http_request_duration_seconds_count{job="shop"}"#, 10.0),
    ]
}

/// Sample times: every 600 s from `END − 30d`, every 10 s over the last day.
fn times() -> Vec<u64> {
    let mut out: Vec<u64> = (0..).map(|i| END - 30 * DAY + i * 600).take_while(|t| *t < END - DAY).collect();
    out.extend((0..=DAY / 10).map(|i| END - DAY + i * 10));
    out
}

/// The history as OpenMetrics: each counter is the integral of its rate from `END − 30d`.
fn history() -> String {
    let times = times();
    let names = rates(0);
    let mut series: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    let mut counters = vec![0.0f64; names.len()];
    let mut previous: Option<u64> = None;
    for &t in &times {
        if let Some(p) = previous {
            for (c, (_, rate)) in counters.iter_mut().zip(rates(p)) {
                *c += rate * (t - p) as f64;
            }
        }
        for (i, (name, _)) in names.iter().enumerate() {
            series[i].push(format!("{name} {} {t}", counters[i]));
        }
        previous = Some(t);
    }
    let mut om = String::new();
    // OpenMetrics wants each metric family's samples together, after its TYPE line.
    for ((name, _), lines) in names.iter().zip(series) {
        if *name == names[0].0 {
            om.push_str("# TYPE http_requests_total counter\n");
        } else if name.starts_with("http_request_duration_seconds_bucket{job=\"shop\",le=\"0.1\"") {
            om.push_str("# TYPE http_request_duration_seconds histogram\n");
        }
        om.push_str(&lines.join("\n"));
        om.push('\n');
    }
    om.push_str("# EOF\n");
    om
}

/// The SLOs, in the native format.
const SLOS: &str = r#"
apiVersion: chaos/v1
kind: SLO
service: shop
name: availability
objective: 99.9%
period: 30d
sli:
  events:
    bad: http_requests_total{job="shop",code=~"5.."}
    total: http_requests_total{job="shop"}
---
apiVersion: chaos/v1
kind: SLO
service: shop
name: availability-good
objective: 99.9%
period: 7d
sli:
  events:
    good: http_requests_total{job="shop",code="200"}
    total: http_requests_total{job="shop"}
---
apiVersion: chaos/v1
kind: SLO
service: shop
name: latency
objective: 99%
period: 7d
sli:
  latency:
    histogram: http_request_duration_seconds
    matchers: '{job="shop"}'
    threshold: 250ms
---
apiVersion: chaos/v1
kind: SLO
service: shop
name: latency-1s
objective: 99.9%
period: 7d
sli:
  latency:
    histogram: http_request_duration_seconds
    matchers: '{job="shop"}'
    threshold: 1s
---
apiVersion: chaos/v1
kind: SLO
service: shop
name: ratio
objective: 99.9%
period: 30d
sli:
  error_ratio: sum(rate(http_requests_total{job="shop",code="500"}[{{.window}}])) / sum(rate(http_requests_total{job="shop"}[{{.window}}]))
---
apiVersion: chaos/v1
kind: SLO
service: legacy
name: availability
objective: 99%
period: 30d
sli:
  events:
    bad: http_requests_total{job="legacy",code=~"5.."}
    total: http_requests_total{job="legacy"}
---
apiVersion: chaos/v1
kind: SLO
service: ghost
name: availability
objective: 99.9%
period: 30d
sli:
  events:
    bad: ghost_requests_total{code=~"5.."}
    total: ghost_requests_total
---
apiVersion: chaos/v1
kind: SLO
service: shop
name: broken
objective: 99%
period: 7d
sli:
  error_ratio: sum(rate(http_requests_total{job="shop"}[{{.window}}])) /
---
apiVersion: chaos/v1
kind: SLO
service: shop
name: latency-300ms
objective: 99%
period: 7d
sli:
  latency:
    histogram: http_request_duration_seconds
    matchers: '{job="shop"}'
    threshold: 300ms
"#;

/// `got` equals `want` up to float noise: relative 1e-6, because a latency SLI's bad events are the
/// difference of two counters near 6·10⁶ whose backfilled values carry the rounding of a month of additions.
fn close(what: &str, got: f64, want: f64) {
    let tolerance = 1e-6 * want.abs().max(1e-9);
    assert!((got - want).abs() <= tolerance, "{what}: got {got}, computed by hand {want}");
}

fn find<'a>(statuses: &'a [Status], id: &str) -> &'a Status {
    statuses.iter().find(|s| s.slo.id() == id).unwrap_or_else(|| panic!("no status for {id}"))
}

/// Every figure of one SLO with event counts: period bad/total events, budget and minutes.
fn check_budget(s: &Status, bad: f64, total: f64) {
    let id = s.slo.id();
    let f = s.figures.as_ref().unwrap_or_else(|| panic!("{id}: no figures: {:?}", s.reason));
    let b = s.slo.budget();
    let minutes = s.slo.period.as_secs_f64() / 60.0;
    let e = bad / total;
    close(&format!("{id} error ratio"), f.error_ratio, e);
    close(&format!("{id} SLI"), s.sli().unwrap(), 1.0 - e);
    close(&format!("{id} consumed"), f.consumed, e / b);
    close(&format!("{id} remaining"), f.remaining, 1.0 - e / b);
    close(&format!("{id} budget minutes"), s.budget_minutes(), b * minutes);
    close(&format!("{id} remaining minutes"), s.remaining_minutes().unwrap(), (b - e) * minutes);
    let counts = f.counts.unwrap_or_else(|| panic!("{id}: no event counts"));
    close(&format!("{id} bad events"), counts.bad, bad);
    close(&format!("{id} all events"), counts.total, total);
    close(&format!("{id} budget events"), s.budget_events().unwrap(), b * total);
    close(&format!("{id} remaining events"), s.remaining_events().unwrap(), b * total - bad);
}

/// The burn rates (long, short) of each alert row, in the file's order.
fn check_burns(s: &Status, want: &[(f64, f64, bool)]) {
    let burns = &s.figures.as_ref().unwrap().burns;
    assert_eq!(burns.len(), want.len(), "{}: {burns:?}", s.slo.id());
    for (burn, &(long, short, holds)) in burns.iter().zip(want) {
        let row = format!("{} {:?}/{:?}", s.slo.id(), burn.row.long, burn.row.short);
        close(&format!("{row} long burn"), burn.long.unwrap(), long);
        close(&format!("{row} short burn"), burn.short.unwrap(), short);
        assert_eq!(burn.holds(), holds, "{row}: {burn:?}");
    }
}

fn exhaustion_secs(s: &Status) -> f64 {
    match s.figures.as_ref().unwrap().exhaustion {
        Exhaustion::In(d) => d.as_secs_f64(),
        other => panic!("{}: exhaustion {other:?}", s.slo.id()),
    }
}

#[tokio::test]
async fn every_figure_matches_the_hand_computed_one() {
    if !skip::require("prometheus", available()) {
        return;
    }
    let started = Instant::now();
    let server = Prometheus::backfilled(&history(), "global: {scrape_interval: 10s}\n");
    let blocks = std::fs::read_dir(server.dir().join("data"))
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().join("meta.json").exists()))
        .count();
    assert!(blocks <= 4, "{blocks} blocks: the backfill should make a few large ones");
    let backfill = started.elapsed();
    let slos = slo_file::parse("slos.yaml", SLOS).unwrap();
    let prom = Arc::new(Client::new(&server.url()));
    let statuses = status::status_all(prom.clone(), &slos, END as f64).await;
    let log = server.log();
    for s in &statuses {
        eprintln!("{}: {:?} {:?}", s.slo.id(), s.state, s.reason);
    }

    // shop/availability, 30 d, 99.9 %: 10 requests/s; 0.005 bad/s except 0.5/s over the last hour.
    let s = find(&statuses, "shop/availability");
    assert_eq!(s.state, State::Ok, "{:?}\n{log}", s.reason);
    let total = 10.0 * 30.0 * DAY as f64;
    let bad = 0.5 * 3_600.0 + 0.005 * (30 * DAY - 3_600) as f64; // 14,742
    check_budget(s, bad, total);
    close("shop/availability remaining", s.figures.as_ref().unwrap().remaining, 0.43125);
    // 1h/5m: 5 % errors → 50; 6h: (1,800 + 0.005 × 18,000) / 216,000 / 0.001 = 8.75; 3d: (1,800 + 0.005 ×
    // 255,600) / 2,592,000 / 0.001 = 1.1875.
    check_burns(s, &[(50.0, 50.0, true), (8.75, 50.0, true), (1.1875, 8.75, true)]);
    assert_eq!(s.firing(), vec![Severity::Page, Severity::Ticket]);
    assert_eq!(s.compliant(), Some(true));
    let current = s.figures.as_ref().unwrap().current.unwrap();
    assert_eq!(current.0, Duration::from_secs(3_600));
    close("current burn", current.1.unwrap(), 50.0);
    // 0.43125 of 30 days at 50 × the sustainable rate: 0.43125 × 2,592,000 / 50 = 22,356 s.
    close("exhaustion", exhaustion_secs(s), 22_356.0);

    // shop/availability-good, 7 d, 99.9 %, counted as good events: bad = all − good.
    let s = find(&statuses, "shop/availability-good");
    assert_eq!(s.state, State::Ok, "{:?}", s.reason);
    let total = 10.0 * 7.0 * DAY as f64;
    let bad = 1_800.0 + 0.005 * (7 * DAY - 3_600) as f64; // 4,806
    check_budget(s, bad, total);
    // 14m/1m10s inside the last hour: 50; 1h24m: (1,800 + 0.005 × 1,440) / 50,400 / 0.001; 7m: 50;
    // 16h48m: (1,800 + 0.005 × 56,880) / 604,800 / 0.001.
    let r1 = (1_800.0 + 0.005 * 1_440.0) / 50_400.0 / 0.001;
    let r2 = (1_800.0 + 0.005 * 56_880.0) / 604_800.0 / 0.001;
    check_burns(s, &[(50.0, 50.0, true), (r1, 50.0, true), (r2, r1, true)]);
    // Remaining 1,242/6,048 of 7 days at burn 50: 124,200 / 50 = 2,484 s.
    close("exhaustion", exhaustion_secs(s), 2_484.0);

    // shop/latency, 7 d, 99 % ≤ 250 ms, buckets asked from Prometheus: 0.05 of 10 requests/s are slower.
    let s = find(&statuses, "shop/latency");
    assert_eq!(s.state, State::Ok, "{:?}", s.reason);
    check_budget(s, 0.05 * (7 * DAY) as f64, 10.0 * (7 * DAY) as f64);
    close("latency remaining", s.figures.as_ref().unwrap().remaining, 0.5);
    check_burns(s, &[(0.5, 0.5, false), (0.5, 0.5, false), (0.5, 0.5, false)]);
    assert!(s.firing().is_empty());
    assert_eq!(s.figures.as_ref().unwrap().exhaustion, Exhaustion::Never, "burn 0.5 ≤ 1");

    // shop/latency-1s: the threshold 1 s is the exporter's `le="1.0"`.
    let s = find(&statuses, "shop/latency-1s");
    assert_eq!(s.state, State::Ok, "{:?}", s.reason);
    check_budget(s, 0.001 * (7 * DAY) as f64, 10.0 * (7 * DAY) as f64);
    close("latency-1s remaining", s.figures.as_ref().unwrap().remaining, 0.9);

    // shop/ratio: the same errors as shop/availability through a ratio-only SLI: no event counts.
    let s = find(&statuses, "shop/ratio");
    assert_eq!(s.state, State::Ok, "{:?}", s.reason);
    let f = s.figures.as_ref().unwrap();
    close("ratio error ratio", f.error_ratio, 14_742.0 / 25_920_000.0);
    close(
        "ratio remaining minutes",
        s.remaining_minutes().unwrap(),
        (0.001 - 14_742.0 / 25_920_000.0) * 43_200.0,
    );
    assert_eq!((f.counts, s.budget_events(), s.remaining_events()), (None, None, None));
    check_burns(s, &[(50.0, 50.0, true), (8.75, 50.0, true), (1.1875, 8.75, true)]);

    // legacy/availability, 30 d, 99 %: 2 % errors all month, twice the budget.
    let s = find(&statuses, "legacy/availability");
    assert_eq!(s.state, State::Exhausted, "{:?}", s.reason);
    check_budget(s, 0.1 * (30 * DAY) as f64, 5.0 * (30 * DAY) as f64);
    close("legacy remaining", s.figures.as_ref().unwrap().remaining, -1.0);
    assert_eq!(s.compliant(), Some(false));
    check_burns(s, &[(2.0, 2.0, false), (2.0, 2.0, false), (2.0, 2.0, true)]);
    assert_eq!(s.firing(), vec![Severity::Ticket]);
    assert_eq!(s.figures.as_ref().unwrap().exhaustion, Exhaustion::Exhausted);

    // ghost: no series at all.
    let s = find(&statuses, "ghost/availability");
    assert_eq!(s.state, State::NoData);
    assert!(s.reason.as_deref().unwrap().contains("no data over the 30d period"), "{:?}", s.reason);

    // 300 ms is not one of the histogram's bounds.
    let s = find(&statuses, "shop/latency-300ms");
    assert_eq!(s.state, State::Invalid);
    let reason = s.reason.as_deref().unwrap();
    assert!(
        reason.contains("threshold 0.3s is not a bucket bound of http_request_duration_seconds (bounds: 0.1, 0.25, 0.5, 1)"),
        "{reason}"
    );

    // A query Prometheus refuses is bad input, with Prometheus's reason.
    let s = find(&statuses, "shop/broken");
    assert_eq!(s.state, State::Invalid);
    let reason = s.reason.as_deref().unwrap();
    assert!(
        reason.starts_with("prometheus refused the SLO's query: bad_data:") && reason.contains("parse error"),
        "{reason}"
    );

    // One query per SLO, plus the `le` values of the three latency SLOs without declared buckets (the
    // 300 ms one stops there).
    assert_eq!(prom.queries_issued(), 9 + 2);

    // Exit codes: the worst state, invalid before exhausted before no data.
    let pick = |ids: &[&str]| -> Vec<Status> { ids.iter().map(|id| find(&statuses, id).clone()).collect() };
    assert_eq!(status::exit_code(&pick(&["shop/availability", "shop/latency"])), 0);
    assert_eq!(status::exit_code(&pick(&["shop/availability", "legacy/availability"])), 1);
    assert_eq!(status::exit_code(&pick(&["shop/availability", "ghost/availability"])), 3);
    assert_eq!(status::exit_code(&pick(&["legacy/availability", "ghost/availability"])), 1);
    assert_eq!(status::exit_code(&statuses), 2);

    // The JSON document: rounded figures, no float noise.
    let doc = status::json(&statuses, END as f64, prom.url(), prom.queries_issued());
    let shop = &doc["slos"][0];
    assert_eq!(shop["slo"], "shop/availability");
    assert_eq!(shop["state"], "ok");
    assert_eq!(shop["error_ratio"], 0.00056875);
    assert_eq!(shop["events"]["bad"], 14_742.0);
    assert_eq!(shop["budget"]["total"]["events"], 25_920.0);
    assert_eq!(shop["budget"]["total"]["minutes"], 43.2);
    assert_eq!(shop["budget"]["consumed"]["minutes"], 24.57);
    assert_eq!(shop["budget"]["remaining"]["percent"], 43.125);
    assert_eq!(shop["budget"]["remaining"]["events"], 11_178.0);
    assert_eq!(shop["burn_rates"][1]["long_burn"], 8.75);
    assert_eq!(shop["alerts_firing"], serde_json::json!(["page", "ticket"]));
    assert_eq!(shop["exhaustion"], "6h12m");
    assert_eq!(shop["exhaustion_seconds"], 22_356);
    assert_eq!(doc["slos"][4]["events"], serde_json::Value::Null);
    assert_eq!(doc["slos"][4]["events_available"], false);
    assert_eq!(doc["slos"][4]["budget"]["remaining"]["events"], serde_json::Value::Null);
    assert_eq!(doc["exit_code"], 2);
    eprintln!("backfill and start {backfill:?}, whole test {:?}", started.elapsed());
}

#[tokio::test]
async fn an_unreachable_prometheus_is_exit_3_and_says_where() {
    // A port that was just bound and released: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let slos: Vec<SloDef> = slo_file::parse("slos.yaml", SLOS).unwrap();
    let prom = Arc::new(Client::new(&url).with_timeout(Duration::from_secs(5)));
    let statuses = status::status_all(prom, &slos[..1], END as f64).await;
    assert_eq!(statuses[0].state, State::Unreachable);
    let reason = statuses[0].reason.as_deref().unwrap();
    assert!(reason.contains(&format!("cannot reach prometheus at {url}")), "{reason}");
    assert_eq!(status::exit_code(&statuses), 3);
}
