//! `chaos slo status` end to end: the built binary against a real Prometheus (Debian's package) holding a
//! day of backfilled history (a sample every 10 s, so every window of a 1-day SLO — 2m/10s, 12m/1m, 2h24m/12m
//! — starts and ends on a sample and Prometheus 2.42 does not extrapolate): the table, `--json`, and each exit
//! code (0 budget left, 1 exhausted, 2 bad input, 3 no data or unreachable) with what it says on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use chaos_test_support::TempDir;
use chaos_test_support::prometheus::{Prometheus, available};
use chaos_test_support::skip;

const END: u64 = 1_790_000_000;
const DAY: u64 = 86_400;

/// web: 10 requests/s; 0.2 % fail, 10 % over the last hour. The latency histogram's buckets are 0.1, 0.25
/// and 0.5 s.
fn history() -> String {
    let names = [
        r#"http_requests_total{job="web",code="200"}"#,
        r#"http_requests_total{job="web",code="500"}"#,
        r#"http_request_duration_seconds_bucket{job="web",le="0.1"}"#,
        r#"http_request_duration_seconds_bucket{job="web",le="0.25"}"#,
        r#"http_request_duration_seconds_bucket{job="web",le="0.5"}"#,
        r#"http_request_duration_seconds_bucket{job="web",le="+Inf"}"#,
        r#"http_request_duration_seconds_count{job="web"}"#,
    ];
    let rates = |t: u64| {
        let bad = if t >= END - 3_600 { 1.0 } else { 0.02 };
        [10.0 - bad, bad, 9.0, 9.9, 9.99, 10.0, 10.0]
    };
    let mut series: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    let mut counters = [0.0f64; 7];
    for t in (END - DAY..=END).step_by(10) {
        for (i, name) in names.iter().enumerate() {
            series[i].push(format!("{name} {} {t}", counters[i]));
        }
        for (c, rate) in counters.iter_mut().zip(rates(t)) {
            *c += rate * 10.0;
        }
    }
    let mut om = String::from("# TYPE http_requests_total counter\n");
    for (i, lines) in series.iter().enumerate() {
        if i == 2 {
            om.push_str("# TYPE http_request_duration_seconds histogram\n");
        }
        om.push_str(&lines.join("\n"));
        om.push('\n');
    }
    om.push_str("# EOF\n");
    om
}

fn slo(service: &str, name: &str, objective: &str, sli: &str) -> String {
    format!(
        "apiVersion: chaos/v1\nkind: SLO\nservice: {service}\nname: {name}\nobjective: {objective}\nperiod: 1d\nsli:\n{sli}"
    )
}

const EVENTS: &str = "  events:\n    bad: http_requests_total{job=\"web\",code=~\"5..\"}\n    total: http_requests_total{job=\"web\"}\n";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn chaos(args: &[&str]) -> Output {
    Command::new(support::chaos_bin()).args(["slo", "status"]).args(args).output().expect("run chaos")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn status_prints_the_table_and_json_and_exits_by_the_budget() {
    if !skip::require("prometheus", available()) {
        return;
    }
    let server = Prometheus::backfilled(&history(), "global: {scrape_interval: 10s}\n");
    let url = server.url();
    let dir = TempDir::new("slo-status");
    let ok = write(dir.path(), "ok.yaml", &slo("web", "availability", "99%", EVENTS));
    let strict = write(dir.path(), "strict.yaml", &slo("web", "strict", "99.9%", EVENTS));
    let ghost = write(
        dir.path(),
        "ghost.yaml",
        &slo(
            "ghost",
            "availability",
            "99%",
            "  events:\n    bad: ghost_total{code=\"500\"}\n    total: ghost_total\n",
        ),
    );
    let latency = write(
        dir.path(),
        "latency.yaml",
        &slo(
            "web",
            "latency",
            "99%",
            "  latency:\n    histogram: http_request_duration_seconds\n    matchers: '{job=\"web\"}'\n    threshold: 300ms\n",
        ),
    );
    let at = END.to_string();

    // Budget left. Over the day: 864,000 requests, 0.02 × 82,800 + 1.0 × 3,600 = 5,256 bad: error ratio
    // 0.0060833…, 39.1667 % of the 1 % budget left, (0.01 − 0.0060833) × 1,440 = 5.64 minutes. The current
    // burn is the 2 m window's: 10 % errors / 1 % = 10, so the rest lasts 0.391667 × 86,400 / 10 = 3,384 s.
    // 12m/1m burns 10 > 6 (page), 2h24m/12m burns (3,600 + 0.02 × 5,040) / 86,400 / 1 % = 4.28 > 1 (ticket).
    let out = chaos(&[&ok, "--prometheus", &url, "--at", &at]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let header: Vec<&str> = lines[0].split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(
        header,
        [
            "SLO",
            "SLI",
            "OBJECTIVE",
            "PERIOD",
            "SLI NOW",
            "BUDGET LEFT",
            "MINUTES LEFT",
            "BURN NOW",
            "FIRING",
            "EXHAUSTION"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row,
        [
            "web/availability",
            "events",
            "99%",
            "1d",
            "99.3917%",
            "39.17%",
            "5.6",
            "10.00",
            "(2m)",
            "page,ticket",
            "56m24s"
        ],
        "{stdout}"
    );
    // Aligned: text columns start where their header starts, figures end where their header ends.
    let starts = |line: &str, cell: &str| line.find(cell).unwrap();
    assert_eq!(starts(lines[0], "PERIOD"), starts(lines[1], "1d"));
    assert_eq!(starts(lines[0], "FIRING"), starts(lines[1], "page,ticket"));
    let ends = |line: &str, cell: &str| line.find(cell).unwrap() + cell.len();
    assert_eq!(ends(lines[0], "BUDGET LEFT"), ends(lines[1], "39.17%"));

    // The same as JSON, with the time in RFC 3339.
    let out = chaos(&[&ok, "--prometheus", &url, "--at", "2026-09-21T14:13:20Z", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["at"], END as f64);
    assert_eq!(doc["queries"], 1);
    assert_eq!(doc["exit_code"], 0);
    let s = &doc["slos"][0];
    assert_eq!(s["slo"], "web/availability");
    assert_eq!(s["state"], "ok");
    assert_eq!(s["events"], serde_json::json!({"bad": 5256.0, "total": 864000.0}));
    assert_eq!(s["budget"]["total"], serde_json::json!({"events": 8640.0, "minutes": 14.4}));
    assert_eq!(
        s["budget"]["remaining"],
        serde_json::json!({"percent": 39.1667, "events": 3384.0, "minutes": 5.64})
    );
    assert_eq!(s["budget"]["consumed"]["percent"], 60.8333);
    assert_eq!(s["compliant"], true);
    assert_eq!(s["current_burn"], serde_json::json!({"window": "2m", "burn": 10.0}));
    assert_eq!(s["burn_rates"][2]["long"], "2h24m");
    assert_eq!(s["burn_rates"][2]["long_burn"], 4.2833);
    assert_eq!(s["alerts_firing"], serde_json::json!(["page", "ticket"]));
    assert_eq!((s["exhaustion"].as_str(), s["exhaustion_seconds"].as_u64()), (Some("56m24s"), Some(3384)));

    // Exhausted: the same errors against 99.9 %.
    let out = chaos(&[&ok, &strict, "--prometheus", &url, "--at", &at]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let strict_row = stdout.lines().find(|l| l.starts_with("web/strict")).unwrap();
    assert!(strict_row.contains("-508.33%") && strict_row.ends_with("exhausted"), "{strict_row}");

    // No data: exit 3, and stderr says which SLO.
    let out = chaos(&[&ok, &ghost, "--prometheus", &url, "--at", &at]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("ghost/availability: no data: no data over the 1d period"),
        "{}",
        text(&out.stderr)
    );
    // Exhausted wins over no data: the gate's answer is already "no".
    assert_eq!(chaos(&[&strict, &ghost, "--prometheus", &url, "--at", &at]).status.code(), Some(1));

    // A threshold that is not one of the histogram's bucket bounds: exit 2.
    let out = chaos(&[&latency, "--prometheus", &url, "--at", &at]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "web/latency: invalid: threshold 0.3s is not a bucket bound of http_request_duration_seconds (bounds: 0.1, 0.25, 0.5)"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_input_is_exit_2_and_no_prometheus_is_exit_3() {
    let dir = TempDir::new("slo-status");
    let ok = write(dir.path(), "ok.yaml", &slo("web", "availability", "99%", EVENTS));
    let broken = write(dir.path(), "broken.yaml", &slo("web", "availability", "120%", EVENTS));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");

    let out = chaos(&[&broken, "--prometheus", &url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&format!("{broken}:5:")), "{}", text(&out.stderr));
    let out = chaos(&[&ok, "--prometheus", &url, "--at", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--at: \"yesterday\" is not a time"), "{}", text(&out.stderr));
    let out = chaos(&[&ok, "--prometheus", "prometheus:9090"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--prometheus: expected a URL"), "{}", text(&out.stderr));
    let out = chaos(&[&ok, "--prometheus", "https://prometheus:9090"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("https is not supported"), "{}", text(&out.stderr));

    // Nothing listens on the port: exit 3, naming the server.
    let out = chaos(&[&ok, "--prometheus", &url, "--at", "1790000000"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr)
            .contains(&format!("web/availability: unreachable: cannot reach prometheus at {url}")),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("unreachable"), "{}", text(&out.stdout));
}
