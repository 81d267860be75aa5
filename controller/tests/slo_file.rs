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
