//! The native SLO file: what it reads into, and the problems it refuses at file:line:column.

use std::time::Duration;

use chaos_controller::slo_file::{self, Counted, Query, Severity, Sli};

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn errors(text: &str) -> Vec<String> {
    match slo_file::parse("slos.yaml", text) {
        Ok(slos) => panic!("accepted: {slos:?}"),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

const MINIMAL: &str = "apiVersion: chaos/v1\nkind: SLO\nservice: api\nname: avail\nobjective: 99.5%\n\
sli:\n  events:\n    good: 'req_total{code!~\"5..\"}'\n    total: req_total\n";

#[test]
fn the_example_file_reads_into_two_slos() {
    let slos = slo_file::load(&repo("experiments/slos/checkout.yaml")).unwrap();
    assert_eq!(
        slos.iter().map(|s| s.id()).collect::<Vec<_>>(),
        ["checkout/availability", "checkout/latency"]
    );
    let availability = &slos[0];
    assert_eq!(availability.objective, 0.999);
    assert_eq!(availability.budget(), 0.001);
    assert_eq!(availability.period, Duration::from_secs(30 * 86_400));
    assert_eq!(availability.labels["team"], "payments");
    assert_eq!(availability.alerting.page.name, "CheckoutAvailabilityBudgetBurn");
    assert_eq!(availability.origin.line, 4, "{:?}", availability.origin);
    let Sli::Events(events) = &availability.sli else { panic!("{:?}", availability.sli) };
    assert_eq!(events.counted, Counted::Bad);
    assert_eq!(events.total, Query::Counter(r#"http_requests_total{job="checkout"}"#.into()));
    let latency = &slos[1];
    let Sli::Latency(sli) = &latency.sli else { panic!("{:?}", latency.sli) };
    assert_eq!(
        (sli.histogram.as_str(), sli.matchers.as_str(), sli.threshold),
        ("http_request_duration_seconds", r#"job="checkout""#, 0.3)
    );
    assert!(!latency.alerting.ticket.enabled && latency.alerting.page.enabled);
    assert_eq!(latency.alerting.windows[0].long, Duration::from_secs(14 * 60), "7d scales the 1h window");
}

#[test]
fn defaults_fill_period_and_windows() {
    let slo = &slo_file::parse("s.yaml", MINIMAL).unwrap()[0];
    assert_eq!(slo.period, Duration::from_secs(30 * 86_400));
    let rates: Vec<_> = slo.alerting.windows.iter().map(|w| (w.severity, w.burn_rate)).collect();
    assert_eq!(rates, [(Severity::Page, 14.4), (Severity::Page, 6.0), (Severity::Ticket, 1.0)]);
}

#[test]
fn explicit_windows_take_a_budget_or_a_rate() {
    let text = format!(
        "{MINIMAL}alerting:\n  windows:\n    - {{severity: page, long: 1h, short: 5m, burn_rate: 10}}\n    - {{severity: ticket, long: 1d, short: 2h, budget: 10%}}\n"
    );
    let slo = &slo_file::parse("s.yaml", &text).unwrap()[0];
    assert_eq!(slo.alerting.windows.len(), 2);
    assert!((slo.alerting.windows[0].budget_spent - 10.0 / 720.0).abs() < 1e-9);
    assert!((slo.alerting.windows[1].burn_rate - 3.0).abs() < 1e-9);
}

#[test]
fn problems_are_reported_where_they_are() {
    let text = "apiVersion: chaos/v1\nkind: SLO\nservice: api\nname: avail\nobjective: 100%\nperiod: 30\n\
sli:\n  events:\n    bad: 'sum(rate(x[5m]))'\n    total: req_total\nlabels:\n  __x: y\nrunbook_url: runbooks/x\n";
    let got = errors(text);
    assert_eq!(
        got,
        [
            "slos.yaml:5:12: objective must be above 0% and below 100% (100% leaves no error budget), found 100%",
            "slos.yaml:6:9: a period needs a unit: 30d, 30w or 30h, found \"30\"",
            "slos.yaml:9:10: bad: \"sum(rate(x[5m]))\" is neither a counter selector (metric{labels}) nor an expression with {{.window}} where the range goes",
            "slos.yaml:12:3: label name \"__x\" must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __",
            "slos.yaml:13:14: runbook_url must be an http:// or https:// URL, found \"runbooks/x\"",
        ]
    );
}

#[test]
fn unknown_keys_syntax_and_kinds_are_refused() {
    assert_eq!(errors(&format!("{MINIMAL}objectve: 99%\n")).len(), 1);
    assert!(
        errors(&format!("{MINIMAL}objectve: 99%\n"))[0]
            .starts_with("slos.yaml:10:1: unknown field `objectve`")
    );
    assert!(errors("apiVersion: chaos/v1\ntitle: x\n")[0].contains("looks like an experiment"));
    assert!(errors("a: [\n")[0].starts_with("slos.yaml:"));
    assert!(errors("apiVersion: chaos/v1\nkind: Experiment\n")[0].contains("run experiments with chaos run"));
    assert!(errors("foo: 1\n")[0].contains("not an SLO document"));
}

#[test]
fn a_duplicate_id_is_refused_at_its_second_definition() {
    let got = errors(&format!("{MINIMAL}---\n{MINIMAL}"));
    assert_eq!(got, ["slos.yaml:11:1: SLO api/avail is defined twice (first at slos.yaml:1:1)"]);
}

#[test]
fn json_files_hold_one_slo_or_an_array() {
    let one = r#"{"apiVersion":"chaos/v1","kind":"SLO","service":"a","name":"b","objective":"99%","sli":{"error_ratio":"sum(rate(e[{{.window}}]))/sum(rate(t[{{.window}}]))"}}"#;
    assert_eq!(slo_file::parse("s.json", one).unwrap().len(), 1);
    let two = format!("[{one}, {}]", one.replace(r#""name":"b""#, r#""name":"c""#));
    assert_eq!(slo_file::parse("s.json", &two).unwrap().len(), 2);
}

mod live {
    //! The budget figures against a real Prometheus holding a day of backfilled history.

    use chaos_controller::slo_file::{self, budget, query::Prometheus as Client};
    use chaos_test_support::prometheus::{Prometheus, available};
    use chaos_test_support::skip;

    const END: u64 = 1_790_000_000;

    /// A day of `http_requests_total` every 10 s: 10 requests/s, 0.5 % of them 5xx, then 100 % 5xx for the
    /// last 10 minutes.
    fn history() -> String {
        let mut om =
            String::from("# HELP http_requests_total requests\n# TYPE http_requests_total counter\n");
        let (mut ok, mut bad) = (0.0f64, 0.0f64);
        let mut lines_ok = Vec::new();
        let mut lines_bad = Vec::new();
        for step in 0..=8640u64 {
            let t = END - 86_400 + step * 10;
            lines_ok.push(format!("http_requests_total{{code=\"200\",job=\"api\"}} {ok} {t}"));
            lines_bad.push(format!("http_requests_total{{code=\"500\",job=\"api\"}} {bad} {t}"));
            if t >= END - 600 {
                bad += 100.0;
            } else {
                ok += 99.5;
                bad += 0.5;
            }
        }
        om.push_str(&lines_ok.join("\n"));
        om.push('\n');
        om.push_str(&lines_bad.join("\n"));
        om.push_str("\n# EOF\n");
        om
    }

    #[tokio::test]
    async fn period_ratio_and_burn_rates_match_the_hand_computed_figures() {
        if !skip::require("prometheus", available()) {
            return;
        }
        let server = Prometheus::backfilled(&history(), "global: {scrape_interval: 10s}\n");
        let slo = &slo_file::parse(
            "s.yaml",
            "apiVersion: chaos/v1\nkind: SLO\nservice: api\nname: avail\nobjective: 99%\nperiod: 1d\n\
             sli:\n  events:\n    bad: 'http_requests_total{job=\"api\",code=~\"5..\"}'\n    total: http_requests_total{job=\"api\"}\n\
             alerting:\n  windows:\n    - {severity: page, long: 10m, short: 1m, burn_rate: 14.4}\n    - {severity: ticket, long: 6h, short: 30m, burn_rate: 1}\n",
        )
        .unwrap()[0];
        let prom = Client::new(&server.url());
        let at = Some(END as f64);
        // Bad: 0.05/s for 86,400 − 600 s and 10/s for 600 s; total 10/s all day.
        let want = (0.05 * 85_800.0 + 10.0 * 600.0) / 864_000.0;
        let got = budget::period_error_ratio(&prom, slo, at).await.unwrap().unwrap();
        assert!((got - want).abs() / want < 0.01, "period ratio {got}, by hand {want}\n{}", server.log());
        assert!((budget::remaining(slo, got) - (1.0 - want / 0.01)).abs() < 0.02);
        let burns = budget::burn_rates(&prom, slo, None, at).await.unwrap();
        let page = &burns[0];
        assert!(
            (page.long.unwrap() - 100.0).abs() < 1.0 && (page.short.unwrap() - 100.0).abs() < 1.0,
            "{page:?}"
        );
        assert!(page.holds());
        // 6 h: 600 s at 100 % and 20,999... s at 0.5 %: (0.05 × 21,000 + 10 × 600) / (10 × 21,600).
        let ticket = &burns[1];
        let want = (0.05 * 21_000.0 + 6_000.0) / 216_000.0 / 0.01;
        assert!((ticket.long.unwrap() - want).abs() / want < 0.02, "{ticket:?} want {want}");
        assert!(ticket.holds(), "the 30 m window burns at (10 × 600 + 0.05 × 1200) / 18,000 / 1%");
        // A bad counter with no series at all (a service that never failed) is an error ratio of 0, not "no data".
        let never_failed = &slo_file::parse(
            "s.yaml",
            "apiVersion: chaos/v1\nkind: SLO\nservice: api\nname: clean\nobjective: 99%\nperiod: 1d\n\
             sli:\n  events:\n    bad: 'http_requests_total{job=\"api\",code=\"404\"}'\n    total: http_requests_total{job=\"api\"}\n",
        )
        .unwrap()[0];
        assert_eq!(budget::period_error_ratio(&prom, never_failed, at).await.unwrap(), Some(0.0));
        let no_traffic = &slo_file::parse(
            "s.yaml",
            "apiVersion: chaos/v1\nkind: SLO\nservice: api\nname: none\nobjective: 99%\nperiod: 1d\n\
             sli:\n  events:\n    bad: 'http_requests_total{job=\"gone\",code=\"500\"}'\n    total: http_requests_total{job=\"gone\"}\n",
        )
        .unwrap()[0];
        assert_eq!(
            budget::period_error_ratio(&prom, no_traffic, at).await.unwrap(),
            None,
            "no total is no data"
        );
        // An hour earlier nothing was burning fast.
        let calm = budget::burn_rates(&prom, slo, None, Some((END - 3600) as f64)).await.unwrap();
        assert!(!calm[0].holds() && (calm[0].long.unwrap() - 0.5).abs() < 0.01, "{calm:?}");
    }
}
