//! Valid experiments: the documents under `tests/data/experiments/valid/` and the workspace's `experiments/`
//! parse and validate; the typed result round-trips through JSON and YAML; the checked accessors read it;
//! `validate_files` reports; the JSON Schema describes the checked types.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use chaos_controller::experiment::model::patterns;
use chaos_controller::experiment::*;
use serde_json::{Value, json};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/experiments/valid").join(name)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    files.retain(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")));
    files.sort();
    files
}

/// Every document people are given (the workspace's `experiments/`, this crate's valid documents) is valid
/// against `chaos schema` as a real JSON Schema validator reads it, so an editor never marks a valid file red.
#[test]
fn every_shipped_example_is_valid_against_the_json_schema() {
    let schema = json_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema itself is valid");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
    let mut files = files_in(&examples);
    assert!(files.len() >= 7, "{files:?}");
    files.extend(files_in(&data("")));
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let doc: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let errors: Vec<String> =
            validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{} is refused by the schema: {errors:#?}", file.display());
        // And `chaos validate` agrees.
        if let Err(d) = load(&file, &[]) {
            panic!("{d}");
        }
    }
    // A duration without its unit is refused by both.
    let bare: Value = json!({"apiVersion": "chaos/v1", "title": "t", "baseline": 250, "method": []});
    assert!(!validator.is_valid(&bare), "the schema accepts a bare 250 as a duration");
}

fn ms(n: u64) -> Duration {
    Duration(StdDuration::from_millis(n))
}

#[test]
fn every_valid_document_parses() {
    let files = files_in(&data(""));
    assert!(files.len() >= 4);
    for file in files {
        if let Err(d) = load(&file, &[]) {
            panic!("{d}");
        }
    }
}

#[test]
fn every_workspace_experiment_parses_and_validates() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../experiments"));
    let files = files_in(dir);
    let (report, ok) = validate_files(&files, &[]);
    assert!(ok, "{report}");
}

/// Writes `$${` for every literal `${` so a serialised experiment reads back as itself.
fn escape(value: &mut Value) {
    match value {
        Value::String(s) => *s = s.replace("${", "$${"),
        Value::Array(items) => items.iter_mut().for_each(escape),
        Value::Object(map) => map.values_mut().for_each(escape),
        _ => {}
    }
}

#[test]
fn valid_documents_round_trip_through_json_and_yaml() {
    for file in files_in(&data("")) {
        let first = load(&file, &[]).unwrap();
        let mut value = serde_json::to_value(&first).unwrap();
        escape(&mut value);
        let json = serde_json::to_string_pretty(&value).unwrap();
        let again =
            parse("again.json", &json, &[]).unwrap_or_else(|d| panic!("{}: {d}\n{json}", file.display()));
        assert_eq!(first, again, "{} via JSON", file.display());
        let yaml = serde_saphyr::to_string(&value).unwrap();
        let again =
            parse("again.yaml", &yaml, &[]).unwrap_or_else(|d| panic!("{}: {d}\n{yaml}", file.display()));
        assert_eq!(first, again, "{} via YAML", file.display());
    }
}

#[test]
fn the_issue_example_reads_as_expected() {
    let exp = load(&data("checkout.yaml"), &[]).unwrap();
    assert_eq!(exp.api_version, API_VERSION);
    assert_eq!(exp.load[0].http.url, "http://127.0.0.1:8080/checkout");
    assert_eq!(exp.load[0].rate, Rate(50.0));
    assert_eq!(exp.targets["web"].count, Some(Count::Exactly(1)));
    assert_eq!(exp.targets["payments"].target_type(), Some(TargetType::Proxy));
    assert!(
        matches!(exp.targets["web"].kind(), Ok(TargetKind::Processes(p)) if p.name.as_deref() == Some("nginx"))
    );

    assert_eq!(exp.slos[0].objective(), Ok(Objective::Errors { objective: Percent(0.995) }));
    assert_eq!(exp.slos[1].objective_and_threshold(), Some((Percent(0.99), Some(ms(800)))));
    assert_eq!(exp.slos[1].source.kind(), Ok(SourceKind::Load("shoppers")));

    let StepKind::Fault(fault) = exp.method[0].kind().unwrap() else { panic!("not a fault") };
    assert_eq!(
        (fault.kind, fault.target, fault.duration),
        (FaultKind::Latency, "payments", Some(ms(30_000)))
    );
    let FaultParams::Toxic { toxic_type, stream, toxicity, attributes } = fault.params else {
        panic!("not a toxic")
    };
    assert_eq!((toxic_type, stream, toxicity), ("latency", Stream::Downstream, 1.0));
    assert_eq!(Value::Object(attributes), json!({"latency": 300, "jitter": 50}));
    assert_eq!(exp.method[1].kind(), Ok(StepKind::Wait(ms(10_000))));
    assert_eq!(exp.method[1].label(), "wait 10s");
    let StepKind::Fault(kill) = exp.method[2].kind().unwrap() else { panic!("not a fault") };
    assert_eq!((kill.params, kill.duration), (FaultParams::Kill { signal: 9 }, None));

    let g = exp.guardrails.clone().unwrap();
    assert_eq!(g.tripwire.unwrap().window, ms(60_000));
    assert_eq!(g.budget, Some(Percent(0.02)));
}

#[test]
fn the_design_sketch_reads_with_durations_in_with_and_hosts() {
    let exp = load(&data("design.yaml"), &[]).unwrap();
    assert_eq!(exp.targets["web"].hosts.as_ref().unwrap()["role"], "web");
    let StepKind::Fault(fault) = exp.method[0].kind().unwrap() else { panic!("not a fault") };
    let FaultParams::Toxic { attributes, .. } = fault.params else { panic!("not a toxic") };
    assert_eq!(Value::Object(attributes), json!({"latency": 300, "jitter": 50}));
}

#[test]
fn every_variant_is_readable_through_the_accessors() {
    let exp = load(&data("everything.yaml"), &[]).unwrap();
    assert_eq!(exp.vars["app"], "http://127.0.0.1:8080");
    assert_eq!(exp.vars["literal"], "${not a var}");
    assert_eq!(exp.targets["workers"].count, Some(Count::Percent(Percent(0.5))));
    assert_eq!(exp.load[0].rate, Rate(10.0));
    for slo in &exp.slos {
        slo.objective().unwrap();
        slo.source.kind().unwrap();
    }
    assert_eq!(
        exp.slos[0].objective(),
        Ok(Objective::Latency { objective: Percent(0.99), threshold: ms(800) })
    );
    assert_eq!(exp.slos[4].source.kind(), Ok(SourceKind::Host(HostMetric::Cpu)));
    assert!(matches!(
        exp.slos[1].source.prometheus.as_ref().unwrap().query(),
        Ok(PrometheusQuery::Counters { .. })
    ));
    let kinds: Vec<&str> = exp
        .steady_state
        .iter()
        .map(|p| match p.kind().unwrap() {
            ProbeKind::Http(_) => "http",
            ProbeKind::Tcp(_) => "tcp",
            ProbeKind::Command(c) => c.run[0].as_str(),
            ProbeKind::Prometheus(p) => {
                assert_eq!(p.comparison(), Ok(Comparison::Ge));
                "prometheus"
            }
        })
        .collect();
    assert_eq!(kinds, ["http", "tcp", "pg_isready", "prometheus"]);
    assert_eq!(exp.steady_state[2].command.as_ref().unwrap().run[2], "127.0.0.1");

    let StepKind::Parallel(group) = exp.method[0].kind().unwrap() else { panic!("not parallel") };
    assert_eq!(group.len(), 3);
    let mut seen = Vec::new();
    for step in exp.method_steps() {
        if let Ok(StepKind::Fault(f)) = step.kind() {
            seen.push(f.kind);
            match (f.kind, &f.params) {
                (FaultKind::SlowClose, FaultParams::Toxic { attributes, .. }) => {
                    assert_eq!(attributes["delay"], json!(1000))
                }
                (FaultKind::LimitData, FaultParams::Toxic { toxicity, .. }) => assert_eq!(*toxicity, 0.25),
                (FaultKind::Latency, FaultParams::Toxic { stream, .. }) => {
                    assert_eq!(*stream, Stream::Upstream)
                }
                (FaultKind::Kill, FaultParams::Kill { signal }) => assert!(*signal == 15 || *signal == 9),
                (kind, FaultParams::Host(spec)) => {
                    assert_eq!(f.target, HOST_TARGET);
                    assert_eq!(Some(spec.kind()), kind.agent_kind(), "{kind}");
                }
                _ => {}
            }
        }
    }
    let mut all = FaultKind::ALL.to_vec();
    all.retain(|k| !seen.contains(k));
    assert!(all.is_empty(), "faults not covered: {all:?}");
    assert_eq!(exp.method_steps().len(), exp.method.len() + 3);
}

#[test]
fn validate_files_reports_each_file() {
    let good = data("minimal.json");
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/experiments/invalid/api_version.yaml");
    let missing = data("no-such-file.yaml");
    let (report, ok) = validate_files(std::slice::from_ref(&good), &[]);
    assert!(ok);
    assert_eq!(report, format!("{}: ok\n", good.display()));
    let (report, ok) = validate_files(&[good.clone(), bad.clone(), missing.clone()], &[]);
    assert!(!ok);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 3, "{report}");
    assert_eq!(lines[0], format!("{}: ok", good.display()));
    assert_eq!(
        lines[1],
        format!("{}:1:13: unsupported apiVersion \"chaos/v2\" (expected chaos/v1)", bad.display())
    );
    assert!(lines[2].starts_with(&format!("{}: cannot read: ", missing.display())), "{}", lines[2]);
}

#[test]
fn overrides_parse_from_the_command_line_form() {
    assert_eq!(parse_override("app=http://x:1/?a=b"), Ok(("app".into(), "http://x:1/?a=b".into())));
    assert!(parse_override("novalue").is_err());
    assert!(parse_override("bad name=1").is_err());
}

fn def<'a>(schema: &'a Value, name: &str) -> &'a Value {
    &schema["$defs"][name]
}

#[test]
fn the_schema_describes_the_format_and_the_checked_types() {
    let schema = json_schema();
    assert!(schema["$schema"].as_str().unwrap().contains("json-schema.org"));
    assert_eq!(schema["additionalProperties"], json!(false));
    let required: Vec<&str> =
        schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(required, ["apiVersion", "title"]);
    for name in
        ["Target", "ProxyTarget", "ProcessSelector", "Load", "Slo", "Source", "Probe", "Step", "Guardrails"]
    {
        assert!(def(&schema, name).is_object(), "no definition for {name}");
    }
    assert!(def(&schema, "Target")["properties"]["hosts"].is_object());
    // A command probe may name the agent (or the agents, by label) it runs on.
    assert!(def(&schema, "CommandProbe")["properties"]["agent"].is_object());
    assert!(def(&schema, "CommandProbe")["properties"]["hosts"].is_object());
    let signals = &def(&schema, "Signal");
    assert!(signals.to_string().contains("saturation"), "{signals}");

    let checks: [(&str, &str, &[&str], &[&str]); 4] = [
        (
            "Duration",
            patterns::DURATION,
            &["250ms", "30s", "5m", "1h", "1.5s", "0", "500us", "${duration}"],
            &["5 q", "soon", "-1s", "1d", "30", "250"],
        ),
        ("Percent", patterns::PERCENT, &["99.5%", "50%", "0.995", "1", "0"], &["99.5", "%", "2", "ninety%"]),
        ("Rate", patterns::RATE, &["50/s", "600/m", "2/ms", "0.5/s"], &["50", "50/h", "/s"]),
        ("Count", patterns::COUNT, &["2", "50%"], &["two", "-1"]),
    ];
    for (name, pattern, good, bad) in checks {
        let d = def(&schema, name);
        assert_eq!(d["pattern"], json!(pattern), "{name}");
        assert!(d["examples"].as_array().is_some_and(|e| !e.is_empty()), "{name}");
        assert!(d["type"].to_string().contains("string"), "{name}");
        let re = regex::Regex::new(pattern).unwrap();
        for text in good {
            assert!(re.is_match(text), "{name} pattern refuses {text}");
        }
        for text in bad {
            assert!(!re.is_match(text), "{name} pattern accepts {text}");
        }
        for example in d["examples"].as_array().unwrap() {
            let text = match example {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let parses = match name {
                "Duration" => text.parse::<Duration>().is_ok(),
                "Percent" => text.parse::<Percent>().is_ok(),
                "Rate" => text.parse::<Rate>().is_ok(),
                _ => true,
            };
            assert!(parses, "{name} example {text} does not parse");
        }
    }
    // The parsers and the patterns agree on what they accept.
    let duration = regex::Regex::new(patterns::DURATION).unwrap();
    let rate = regex::Regex::new(patterns::RATE).unwrap();
    for text in ["250ms", "30s", "5m", "1h", "1.5s", "30", "0", "500us", "5 q", "soon", "1d"] {
        assert_eq!(text.parse::<Duration>().is_ok(), duration.is_match(text), "{text}");
    }
    for text in ["50/s", "600/m", "2/ms", "50", "50/h"] {
        assert_eq!(text.parse::<Rate>().is_ok(), rate.is_match(text), "{text}");
    }
}

#[test]
fn checked_values_read_back_from_their_text() {
    for text in ["99.9%", "99.5%", "0.1%", "12.3456789%", "100%", "0%", "0.999", "33.333333333333336%"] {
        let p: Percent = text.parse().unwrap();
        assert_eq!(p.to_string().parse::<Percent>(), Ok(p), "{text} shown as {p}");
    }
    assert_eq!("99.9%".parse::<Percent>(), Ok(Percent(0.999)));
    assert_eq!(Percent(0.995).to_string(), "99.5%");
    for text in ["250ms", "1.5s", "5m", "1h", "30s", "0.25s", "1500us"] {
        let d: Duration = text.parse().unwrap();
        assert_eq!(d.to_string().parse::<Duration>(), Ok(d), "{text} shown as {d}");
    }
    for text in ["50/s", "600/m", "2/ms", "0.5/s"] {
        let r: Rate = text.parse().unwrap();
        assert_eq!(r.to_string().parse::<Rate>(), Ok(r), "{text} shown as {r}");
    }
}
