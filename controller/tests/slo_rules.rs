//! `chaos slo rules`: the generated Prometheus rules pass the real `promtool check rules`, the generated
//! unit tests pass `promtool test rules`, a hand-written promtool test checks the reference detection time
//! (slo-math §2), output is byte-stable, and the example's rules match a committed snapshot
//! (`BLESS=1 cargo test -p chaos-controller --test slo_rules` rewrites it; review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use chaos_controller::slo_file::{self, SloDef, promtool::render_tests, rules::render};
use chaos_test_support::dir::TempDir;
use chaos_test_support::prometheus::{available, promtool};
use chaos_test_support::skip;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn example() -> Vec<SloDef> {
    slo_file::load(&repo("experiments/slos/checkout.yaml")).unwrap()
}

/// SLOs covering every shape the generator handles: good events on a 28-day period with the ticket off and
/// a label value holding `"` and `\`; latency with a whole-number and a fractional threshold (7 days); bad
/// events on two metrics with explicit windows, `for` and the alert's own labels (30 days); an error-ratio
/// template (no synthetic test possible).
const COVERAGE: &str = r#"
apiVersion: chaos/v1
kind: SLO
service: api
name: availability
objective: 99.5%
period: 28d
sli:
  events:
    good: 'http_requests_total{job="api",code!~"5.."}'
    total: 'http_requests_total{job="api"}'
labels:
  note: 'say "hi" \ there'
runbook_url: https://runbooks.example.com/api
alerting:
  ticket:
    disabled: true
---
apiVersion: chaos/v1
kind: SLO
service: api
name: latency-1s
objective: 99%
period: 7d
sli:
  latency:
    histogram: http_request_duration_seconds
    matchers: '{job="api",route!="/health"}'
    threshold: 1s
    buckets: [0.25, 0.5, 1, 2.5]
---
apiVersion: chaos/v1
kind: SLO
service: api
name: latency-250ms
objective: 95%
period: 7d
sli:
  latency:
    histogram: rpc_duration_seconds
    matchers: 'service=~"api|gateway"'
    threshold: 250ms
dashboard_url: https://grafana.example.com/d/api
---
apiVersion: chaos/v1
kind: SLO
service: worker
name: jobs
objective: 99.9%
period: 30d
sli:
  events:
    bad: 'jobs_failed_total{queue=~"high|low"}'
    total: jobs_processed_total
alerting:
  page:
    labels: {team: jobs}
    annotations: {playbook: restart the queue}
  ticket:
    name: WorkerJobsSlowBurn
  windows:
    - {severity: page, long: 1h, short: 5m, burn_rate: 14.4, for: 2m}
    - {severity: page, long: 6h, short: 30m, budget: 5%}
    - {severity: ticket, long: 1d, short: 2h, burn_rate: 3, for: 10m}
---
apiVersion: chaos/v1
kind: SLO
service: worker
name: ratio
objective: 99%
period: 30d
sli:
  error_ratio: 'sum(rate(jobs_failed_total[{{.window}}])) / sum(rate(jobs_processed_total[{{.window}}]))'
"#;

fn coverage() -> Vec<SloDef> {
    slo_file::parse("coverage.yaml", COVERAGE).unwrap()
}

/// Writes the rules and their generated tests into a fresh directory.
fn generated(slos: &[SloDef]) -> TempDir {
    let dir = TempDir::new("slo-rules");
    std::fs::write(dir.path().join("rules.yaml"), render(slos)).unwrap();
    std::fs::write(dir.path().join("rules.test.yaml"), render_tests(slos, "rules.yaml")).unwrap();
    dir
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = promtool(dir, args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_every_generated_rule_file() {
    if !skip::require("prometheus", available()) {
        return;
    }
    let imports = ["experiments/slos/sloth-checkout.yaml", "experiments/slos/openslo-checkout.yaml"]
        .map(|file| (file, slo_file::load(&repo(file)).unwrap()));
    let starter = slo_file::parse("init.yaml", &slo_file::init::render("checkout").unwrap()).unwrap();
    for (what, slos) in [("example", example()), ("coverage", coverage()), ("chaos slo init", starter)]
        .into_iter()
        .chain(imports)
    {
        let dir = generated(&slos);
        let out = run(dir.path(), &["check", "rules", "rules.yaml"]);
        assert!(out.contains("SUCCESS"), "{what}: {out}");
    }
}

#[test]
fn generated_tests_pass_for_the_coverage_slos() {
    if !skip::require("prometheus", available()) {
        return;
    }
    let slos = coverage();
    let dir = generated(&slos);
    let tests = std::fs::read_to_string(dir.path().join("rules.test.yaml")).unwrap();
    // Every synthesisable SLO has tests; the template one says why it has none.
    assert!(tests.contains("# worker/ratio: no test: its SLI is an error-ratio template query"), "{tests}");
    for id in ["api/availability", "api/latency-1s", "api/latency-250ms", "worker/jobs"] {
        assert!(
            tests.contains(&format!("# {id}: ")) && tests.contains(&format!("name: \"{id} silent below")),
            "{id}"
        );
    }
    // The split page rules (rows with different `for`) are told apart by burn_window.
    assert!(
        tests.contains("\"burn_window\": \"1h/5m\"") && tests.contains("\"burn_window\": \"6h/30m\""),
        "{tests}"
    );
    assert!(tests.contains(r#""note": "say \"hi\" \\ there""#), "{tests}");
    let out = run(dir.path(), &["test", "rules", "rules.test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn generated_tests_pass_for_the_example() {
    if !skip::require("prometheus", available()) {
        return;
    }
    let dir = generated(&example());
    let tests = std::fs::read_to_string(dir.path().join("rules.test.yaml")).unwrap();
    // Every row fires at the first evaluation after the formula's detection time.
    assert_eq!(
        tests.matches("formula: detection after").count(),
        5,
        "3 rows of availability, 2 of latency:\n{tests}"
    );
    assert!(
        tests.contains("ticket row 3d/6h (burn rate 1, error ratio threshold 0.1%): 1.01% errors from 3d on, after \
                        zero errors; formula: detection after 7h7m43s366ms, so firing at the first evaluation after it, \
                        7h8m after the errors start"),
        "{tests}"
    );
    assert!(!tests.contains("instead"), "every row fires when the formula says:\n{tests}");
    let out = run(dir.path(), &["test", "rules", "rules.test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The reference case of slo-math §2, written by hand: 6,000 requests a minute at 0.1 % errors, then 5 %
/// from minute 60, against 99.9 % over 30 days: the 1 h/5 m page (burn rate 14.4) needs the 1 h ratio above
/// 1.44 %, which the formula puts 14.4 × 0.001 / 0.05 × 60 = 17.28 minutes after the change, so absent at
/// 77 m and firing at 78 m. (The second term of each series repeats the first's last value at minute 61, a
/// minute without requests, exactly as in the measurement the reference quotes.)
#[test]
fn a_hand_written_promtool_test_sees_the_reference_detection_time() {
    if !skip::require("prometheus", available()) {
        return;
    }
    let slos = slo_file::parse(
        "ref.yaml",
        "apiVersion: chaos/v1\nkind: SLO\nservice: ref\nname: availability\nobjective: 99.9%\nperiod: 30d\n\
         sli:\n  events:\n    bad: 'http_requests_total{code=\"500\"}'\n    total: http_requests_total\n\
         alerting:\n  windows:\n    - {severity: page, long: 1h, short: 5m, budget: 2%}\n",
    )
    .unwrap();
    let dir = TempDir::new("slo-rules-ref");
    std::fs::write(dir.path().join("rules.yaml"), render(&slos)).unwrap();
    let test = r#"
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'http_requests_total{code="500"}'
        values: '0+6x60 360+300x30'
      - series: 'http_requests_total{code="200"}'
        values: '0+5994x60 359640+5700x30'
    alert_rule_test:
      - eval_time: 77m
        alertname: RefAvailabilityBudgetBurn
        exp_alerts: []
      - eval_time: 78m
        alertname: RefAvailabilityBudgetBurn
        exp_alerts:
          - exp_labels: {severity: page, service: ref, slo: availability}
            exp_annotations:
              summary: ref/availability (99.9% over 30d) is burning its error budget too fast (page)
              description: >-
                The error ratio of ref/availability is above 1.44% over both 1h and 5m (burn rate 14.4: 2% of
                the budget spent when it fires, the budget gone in 2d2h at that rate). Objective 99.9% of
                events good over 30d, error budget 0.1%.
    promql_expr_test:
      - expr: slo:sli_error:ratio_rate1h
        eval_time: 77m
        exp_samples:
          - labels: 'slo:sli_error:ratio_rate1h{service="ref",slo="availability"}'
            value: 0.014288135593220339
"#;
    std::fs::write(dir.path().join("ref.test.yaml"), test).unwrap();
    let out = run(dir.path(), &["test", "rules", "ref.test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    // The formula's side of the same claim.
    let row = &slos[0].alerting.windows[0];
    let detect = slo_file::windows::detection_time(row, slos[0].budget(), 0.05).unwrap();
    assert!((detect.as_secs_f64() - 17.28 * 60.0).abs() < 1e-6, "{detect:?}");
    assert!(77.0 < 60.0 + detect.as_secs_f64() / 60.0 && 60.0 + detect.as_secs_f64() / 60.0 <= 78.0);
}

/// Sloth and OpenSLO files produce the same rules as their native twins (only the SLOs' origins differ, and
/// the rules do not name origins).
#[test]
fn imported_files_produce_the_native_files_rules() {
    let native = example();
    let sloth = slo_file::load(&repo("experiments/slos/sloth-checkout.yaml")).unwrap();
    assert_eq!(render(&sloth), render(&native[..1]), "sloth-checkout.yaml vs checkout.yaml");
    let openslo = slo_file::load(&repo("experiments/slos/openslo-checkout.yaml")).unwrap();
    assert_eq!(render(&openslo[..1]), render(&native[..1]), "openslo-checkout.yaml vs checkout.yaml");
    assert_eq!(render_tests(&openslo[..1], "r.yaml"), render_tests(&native[..1], "r.yaml"));
}

#[test]
fn rendering_is_byte_stable() {
    for slos in [example(), coverage()] {
        assert_eq!(render(&slos), render(&slos));
        assert_eq!(render_tests(&slos, "rules.yaml"), render_tests(&slos, "rules.yaml"));
        // Parsing the files again gives the same bytes too (no map iteration order leaks in).
        let again = slo_file::parse("coverage.yaml", COVERAGE).unwrap();
        assert_eq!(render(&again), render(&coverage()));
    }
}

#[test]
fn the_example_rules_match_the_snapshot() {
    let path = repo("controller/tests/data/slo_rules_checkout.yaml");
    let generated = render(&example());
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with BLESS=1 to write it", path.display()));
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{} differs from the generated rules at line {} (committed: {:?}, generated: {:?}); run `BLESS=1 cargo \
             test -p chaos-controller --test slo_rules` and review the diff",
            path.display(),
            line + 1,
            committed.lines().nth(line),
            generated.lines().nth(line)
        );
    }
}

#[test]
fn quoting_survives_quotes_backslashes_and_templates() {
    let mut slos = coverage();
    slos[0].labels.insert("path".into(), "C:\\dir \"x\" {{ $labels }}".into());
    slos[0].runbook_url = Some("https://runbooks.example.com/{{ $labels.slo }}".into());
    let text = render(&slos[..1]);
    // YAML double-quoted, PromQL's own quotes escaped inside.
    assert!(text.contains(r#"          "path": "C:\\dir \"x\" {{ $labels }}""#), "{text}");
    assert!(text.contains(r#"          "note": "say \"hi\" \\ there""#), "{text}");
    assert!(text.contains(r#"expr: "((sum(rate(http_requests_total{job=\"api\"}[56m]))) - "#), "{text}");
    // A generated annotation holding `{{` is protected from template expansion.
    assert!(
        text.contains(r#""runbook_url": "https://runbooks.example.com/{{ \"{{\" }} $labels.slo }}""#),
        "{text}"
    );
}
