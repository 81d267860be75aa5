//! SLO references in experiments (`slos: - use: service/name`): resolved from an SLO file beside the
//! experiment or from a registry catalog into the SLO the engine judges (objective, threshold and signal from
//! the definition; the run's own source, or the definition's PromQL as Prometheus good/total counters), and
//! every way a reference, a budget gate or a burn-rate guardrail can be wrong, each at its file:line:column.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chaos_controller::experiment::model::{PrometheusSource, Signal};
use chaos_controller::experiment::slo_refs::{FILES_REFUSED, counters};
use chaos_controller::experiment::{
    self, NO_REGISTRY, NoRegistry, Percent, SloCatalog, SloFiles, SloSources, json_schema,
};
use chaos_controller::slo_file::{self, SloDef};
use chaos_test_support::TempDir;

const SLOS: &str = r#"apiVersion: chaos/v1
kind: SLO
service: checkout
name: availability
objective: 99.9%
period: 30d
sli:
  events:
    bad: http_requests_total{job="checkout",code=~"5.."}
    total: http_requests_total{job="checkout"}
---
apiVersion: chaos/v1
kind: SLO
service: checkout
name: latency
objective: 99%
period: 7d
sli:
  latency:
    histogram: http_request_duration_seconds
    matchers: '{job="checkout"}'
    threshold: 300ms
    buckets: [0.1, 0.3, 1]
alerting:
  page:
    disabled: true
---
apiVersion: chaos/v1
kind: SLO
service: checkout
name: good
objective: 99%
sli:
  events:
    good: http_requests_total{job="checkout",code!~"5.."}
    total: http_requests_total{job="checkout"}
---
apiVersion: chaos/v1
kind: SLO
service: checkout
name: whole-seconds
objective: 99%
sli:
  latency:
    histogram: h_seconds
    threshold: 1s
    buckets: [0.5, 1, 2]
---
apiVersion: chaos/v1
kind: SLO
service: checkout
name: tickets-only
objective: 99%
sli:
  events: { bad: e_total, total: r_total }
alerting:
  windows:
    - { severity: ticket, long: 1d, short: 2h, burn_rate: 1 }
"#;

/// An experiment file `name` with `slos` (YAML list items, indented by 2) beside `slos.yaml`.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = TempDir::new(&format!("slo-refs-{name}"));
        std::fs::write(dir.path().join("slos.yaml"), SLOS).unwrap();
        Fixture { dir }
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn parse(&self, body: &str) -> Result<experiment::Checked, String> {
        let text = experiment_text(body);
        experiment::parse(&self.file("exp.yaml"), &text, &[]).map_err(|d| d.to_string())
    }
}

fn experiment_text(body: &str) -> String {
    format!(
        "apiVersion: chaos/v1\ntitle: refs\nload:\n  - {{ name: main, http: {{ url: \"http://127.0.0.1:9/\" }}, rate: 1/s }}\n{body}method: []\n"
    )
}

#[test]
fn a_reference_takes_objective_threshold_and_signal_from_the_file() {
    let f = Fixture::new("resolve");
    let exp = f
        .parse(
            "slos:\n  - use: checkout/availability\n    file: slos.yaml\n    source: { load: main }\n  - name: fast\n    use: checkout/latency\n    file: slos.yaml\n    prometheus: http://prometheus.invalid:9090\n",
        )
        .unwrap();
    let availability = &exp.slos[0];
    assert_eq!(availability.name, "checkout/availability", "the id names it by default");
    assert_eq!(availability.signal, Signal::Errors);
    assert_eq!(availability.objective, Some(Percent(0.999)));
    assert_eq!(availability.threshold, None);
    assert_eq!(availability.source.load.as_deref(), Some("main"));
    let fast = &exp.slos[1];
    assert_eq!(fast.name, "fast");
    assert_eq!(fast.signal, Signal::Latency);
    assert_eq!(fast.objective, Some(Percent(0.99)));
    assert_eq!(fast.threshold.map(|t| t.0), Some(std::time::Duration::from_millis(300)));
    assert_eq!(
        fast.source.prometheus,
        Some(PrometheusSource {
            url: "http://prometheus.invalid:9090".into(),
            good: Some(r#"sum(http_request_duration_seconds_bucket{job="checkout",le="0.3"})"#.into()),
            total: Some(r#"sum(http_request_duration_seconds_count{job="checkout"})"#.into()),
            ratio: None,
        })
    );
    // The definitions are part of the checked experiment; the engine never reads the file.
    let ids: Vec<&str> = exp.slo_refs().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["checkout/availability", "checkout/latency"]);
    assert_eq!(exp.slo_refs()[1].name, "fast");
    assert_eq!(exp.slo_refs()[0].def.period, std::time::Duration::from_secs(30 * 86_400));
    assert_eq!(exp.slo_defs(&["checkout/latency".into()]).len(), 1);
    // It serialises as written: the reference, not the resolved values.
    let json = serde_json::to_value(&exp).unwrap();
    assert_eq!(json["slos"][0]["use"], "checkout/availability");
    assert!(json["slos"][0]["objective"].is_null(), "{json}");
    // And the same document checked in memory, from the file's directory, resolves the same.
    let relative = f
        .parse("slos:\n  - use: checkout/availability\n    file: slos.yaml\n    source: { load: main }\n")
        .unwrap();
    assert_eq!(relative.slos[0].objective, Some(Percent(0.999)));
}

#[test]
fn the_counters_polled_for_each_kind_of_sli() {
    let defs = slo_file::parse("slos.yaml", SLOS).unwrap();
    let got: Vec<(String, String)> = defs.iter().map(|d| counters(d).unwrap()).collect();
    assert_eq!(
        got[0],
        (
            r#"sum(http_requests_total{job="checkout"}) - (sum(http_requests_total{job="checkout",code=~"5.."}) or vector(0))"#.into(),
            r#"sum(http_requests_total{job="checkout"})"#.into()
        )
    );
    assert_eq!(got[2].0, r#"sum(http_requests_total{job="checkout",code!~"5.."}) or vector(0)"#);
    assert_eq!(got[3], (r#"sum(h_seconds_bucket{le=~"1(\\.0)?"})"#.into(), "sum(h_seconds_count{})".into()));
}

#[test]
fn bad_references_are_refused_at_their_position() {
    let f = Fixture::new("bad");
    std::fs::write(f.dir.path().join("broken.yaml"), "apiVersion: chaos/v1\nkind: SLO\nservice: s\nname: n\nobjective: 120%\nsli:\n  events: {bad: a, total: b}\n").unwrap();
    std::fs::write(
        f.dir.path().join("template.yaml"),
        "apiVersion: chaos/v1\nkind: SLO\nservice: t\nname: ratio\nobjective: 99%\nsli:\n  events:\n    bad: sum(rate(e[{{.window}}]))\n    total: sum(rate(r[{{.window}}]))\n",
    )
    .unwrap();
    let exp = f.file("exp.yaml");
    let broken = f.file("broken.yaml");
    let cases: &[(&str, String)] = &[
        (
            "slos:\n  - use: checkout/availabilty\n    file: slos.yaml\n    source: { load: main }\n",
            format!(
                "{exp}:6:10: no SLO `checkout/availabilty` in `slos.yaml` (it has checkout/availability, checkout/latency, checkout/good, checkout/whole-seconds, checkout/tickets-only)"
            ),
        ),
        (
            "slos:\n  - use: checkout/availability\n    file: nowhere.yaml\n    source: { load: main }\n",
            format!(
                "{exp}:7:11: cannot read SLO file `nowhere.yaml` ({}): No such file or directory (os error 2)",
                f.file("nowhere.yaml")
            ),
        ),
        (
            "slos:\n  - use: s/n\n    file: broken.yaml\n    source: { load: main }\n",
            format!(
                "{exp}:7:11: SLO file `broken.yaml` is not valid:\n{broken}:5:12: percentage \"120%\" is outside 0%..100%"
            ),
        ),
        (
            "slos:\n  - use: checkout/latency\n    file: slos.yaml\n    threshold: 1s\n    source: { load: main }\n",
            format!(
                "{exp}:8:5: `threshold` comes from the definition of `checkout/latency` ({}:12:1): one definition, so drop it here",
                f.file("slos.yaml")
            ),
        ),
        (
            "slos:\n  - use: checkout/latency\n    file: slos.yaml\n    signal: errors\n    source: { load: main }\n",
            format!("{exp}:8:13: `checkout/latency` is a latency SLO by its SLI, not errors: drop `signal`"),
        ),
        (
            "slos:\n  - use: t/ratio\n    file: template.yaml\n    prometheus: http://prometheus.invalid:9090\n",
            format!(
                "{exp}:8:5: SLO `t/ratio`: its SLI is a query template (`{{{{.window}}}}`), which cannot be polled as a counter: give `source:` to judge it on the run's own signals"
            ),
        ),
        (
            "slos:\n  - use: checkout/availability\n    file: slos.yaml\n",
            format!(
                "{exp}:6:5: SLO `checkout/availability` needs `source:` (judged on the run's own signals, e.g. `{{load: main}}`) or `prometheus: URL` (judged on its PromQL)"
            ),
        ),
        (
            "slos:\n  - use: checkout/availability\n    file: slos.yaml\n    source: { load: main }\n    prometheus: http://prometheus.invalid:9090\n",
            format!(
                "{exp}:9:5: give either `source` (the run's own signals) or `prometheus` (the SLO's PromQL), not both"
            ),
        ),
        (
            "slos:\n  - use: checkout\n    file: slos.yaml\n    source: { load: main }\n",
            format!("{exp}:6:10: `use` takes an SLO id `service/name`, found \"checkout\""),
        ),
        (
            "slos:\n  - use: checkout/availability\n    source: { load: main }\n",
            format!("{exp}:6:10: SLO `checkout/availability` has no `file:`, and {NO_REGISTRY}"),
        ),
        (
            "slos:\n  - name: a\n    file: slos.yaml\n    signal: errors\n    objective: 99%\n    source: { load: main }\n",
            format!("{exp}:7:5: `file` applies to an SLO with `use` only"),
        ),
        (
            "slos:\n  - name: a\n    objective: 99%\n    source: { load: main }\n",
            format!(
                "{exp}:6:5: SLO `a` needs `signal` (latency, errors, traffic or saturation), or `use: service/name` to reference an SLO definition"
            ),
        ),
        (
            "slos:\n  - use: checkout/availability\n    file: slos.yaml\n    source: { load: main }\nbudget_gate: { prometheus: \"http://p:9090\", min_remaining: 25%, slos: [checkout/latency] }\n",
            format!(
                "{exp}:9:72: the budget gate: `checkout/latency` is not referenced in `slos:` (referenced: checkout/availability)"
            ),
        ),
        (
            "budget_gate: { prometheus: \"http://p:9090\", min_remaining: 25% }\n",
            format!(
                "{exp}:5:14: the budget gate needs SLOs from definitions: reference one in `slos:` with `use: service/name`"
            ),
        ),
        (
            "slos:\n  - use: checkout/latency\n    file: slos.yaml\n    source: { load: main }\nguardrails:\n  slo_burn: { prometheus: \"p:9090\", every: 0s }\n",
            [
                format!("{exp}:10:27: `prometheus` must be an http:// or https:// URL, found \"p:9090\""),
                format!("{exp}:10:44: `every` must be above 0"),
            ]
            .join("\n"),
        ),
        (
            "slos:\n  - use: checkout/tickets-only\n    file: slos.yaml\n    source: { load: main }\nguardrails:\n  slo_burn: { prometheus: \"http://p:9090\" }\n",
            format!(
                "{exp}:10:13: the burn-rate guardrail watches page rows, and `checkout/tickets-only` has none"
            ),
        ),
    ];
    let mut wrong = Vec::new();
    for (body, expected) in cases {
        let got = f.parse(body).err().unwrap_or_else(|| "accepted".into());
        if &got != expected {
            wrong.push(format!("-- {body}-- expected:\n{expected}\n-- got:\n{got}\n"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} cases differ:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

/// A registry as the controller's store will be: definitions by id.
struct Catalog(Vec<SloDef>);

impl SloCatalog for Catalog {
    fn slo(&self, id: &str) -> Option<SloDef> {
        self.0.iter().find(|d| d.id() == id).cloned()
    }
    fn ids(&self) -> Vec<String> {
        self.0.iter().map(SloDef::id).collect()
    }
}

#[test]
fn a_controller_reads_references_from_its_registry_and_refuses_files() {
    let catalog = Catalog(slo_file::parse("registered.yaml", SLOS).unwrap());
    let files = SloFiles::Refused(FILES_REFUSED.into());
    let sources = SloSources::new(&files, &catalog);
    let parse = |body: &str| {
        experiment::parse_with_slos("fleet.yaml", &experiment_text(body), &[], &|_| None, sources)
            .map_err(|d| d.to_string())
    };
    let exp = parse("slos:\n  - use: checkout/latency\n    source: { load: main }\n").unwrap();
    assert_eq!(exp.slos[0].objective, Some(Percent(0.99)));
    assert_eq!(exp.slo_refs()[0].def.origin.file, "registered.yaml");
    assert_eq!(
        parse("slos:\n  - use: checkout/latency\n    file: slos.yaml\n    source: { load: main }\n")
            .unwrap_err(),
        format!("fleet.yaml:7:11: {FILES_REFUSED}")
    );
    assert_eq!(
        parse("slos:\n  - use: shop/latency\n    source: { load: main }\n").unwrap_err(),
        "fleet.yaml:6:10: no SLO `shop/latency` in the controller's registry (registered: checkout/availability, \
         checkout/latency, checkout/good, checkout/whole-seconds, checkout/tickets-only)"
    );
    // Without a registry, the message says what to do.
    let none = SloSources::new(&files, &NoRegistry);
    let err = experiment::parse_with_slos(
        "fleet.yaml",
        &experiment_text("slos:\n  - use: shop/latency\n    source: { load: main }\n"),
        &[],
        &|_| None,
        none,
    )
    .unwrap_err()
    .to_string();
    assert!(err.ends_with(NO_REGISTRY), "{err}");
}

#[test]
fn the_schema_describes_references_the_gate_and_the_burn_guardrail() {
    let schema = json_schema();
    let slo = &schema["$defs"]["Slo"]["properties"];
    for key in ["use", "file", "prometheus"] {
        assert!(slo[key]["description"].as_str().is_some_and(|d| !d.is_empty()), "Slo.{key}: {slo}");
    }
    assert_eq!(
        schema["$defs"]["Slo"]["required"],
        serde_json::Value::Null,
        "name, signal and source are optional with `use`"
    );
    assert!(schema["properties"]["budget_gate"].is_object());
    let gate = &schema["$defs"]["BudgetGate"];
    assert_eq!(gate["required"], serde_json::json!(["prometheus", "min_remaining"]));
    let burn = &schema["$defs"]["SloBurn"]["properties"];
    for key in ["prometheus", "slos", "every", "grace"] {
        assert!(burn[key].is_object(), "SloBurn.{key}");
    }
    assert!(schema["$defs"]["Guardrails"]["properties"]["slo_burn"].is_object());
}
