//! The fault model end to end: every key a fault's owner describes (a proxy toxic's attributes, an agent fault
//! spec's fields) is accepted from an experiment's `with:` and reaches the owner's own type unchanged, and the
//! two bugs the hand-written copies caused stay fixed (latency `distribution` refused; kill signals the agent
//! cannot send accepted).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use std::process::Command;

use chaos_agent::faults::FaultKind as AgentKind;
use chaos_agent::spec::{FaultSpec, Unit as AgentUnit};
use chaos_controller::experiment::{self, FaultKind, FaultParams, Owner, StepKind, Stream};
use chaos_proxy::client::NewToxic;
use chaos_proxy::toxics::{ToxicKind, Unit};
use serde_json::{Map, Value, json};

const HEAD: &str = "apiVersion: chaos/v1\ntitle: t\ntargets:\n  db: { proxy: { api: \"http://127.0.0.1:1\", name: db } }\n  \
                    web: { processes: { name: nginx } }\nmethod:\n";

/// One step in an experiment; `Err` with the diagnostics when it does not parse.
fn parse_step(step: &str) -> Result<FaultParams, String> {
    let text = format!("{HEAD}  - {step}\n");
    let exp = experiment::parse("walk.yaml", &text, &[]).map_err(|d| d.to_string())?;
    match exp.method[0].kind().map_err(|e| e.to_string())? {
        StepKind::Fault(fault) => Ok(fault.params),
        other => panic!("not a fault step: {other:?}"),
    }
}

fn step(kind: FaultKind, with: &Map<String, Value>) -> String {
    let with = serde_json::to_string(with).unwrap();
    let target = match kind.name() {
        "kill" | "pause" => "target: web, ",
        _ if kind.toxic_type().is_some() => "target: db, ",
        _ => "",
    };
    let duration = if kind.needs_duration() { ", duration: 1s" } else { "" };
    format!("{{ fault: {kind}, {target}with: {with}{duration} }}")
}

/// A non-default value of a toxic attribute's unit, as an experiment writes it and as the proxy holds it.
fn toxic_value(unit: Unit) -> (Value, Value) {
    match unit {
        Unit::Millis => (json!("250ms"), json!(250)),
        Unit::Micros => (json!("2ms"), json!(2000)),
        Unit::KilobytesPerSecond | Unit::Bytes => (json!(77), json!(77)),
        Unit::Count => (json!(3), json!(3)),
        Unit::Percent => (json!("25%"), json!(25.0)),
        Unit::Text => (json!("walked"), json!("walked")),
        Unit::Enum(names) => {
            let last = names.last().copied().unwrap();
            (json!(last), json!(last))
        }
        Unit::HttpStatus => (json!(418), json!(418)),
        Unit::GrpcCode => (json!("UNAVAILABLE"), json!("UNAVAILABLE")),
        Unit::HttpMethod => (json!("POST"), json!("POST")),
        Unit::Path => (json!("/walk"), json!("/walk")),
        Unit::Regex => (json!("^/w"), json!("^/w")),
        Unit::HeaderValues => (json!({"x-walk": "yes"}), json!({"x-walk": "yes"})),
        Unit::HeaderRegexes => (json!({"x-walk": "^y"}), json!({"x-walk": "^y"})),
    }
}

/// Every attribute of every toxic fault, set to a non-default value in YAML, reaches the proxy's `ToxicKind`
/// (through the proxy's own parser) with the value the experiment meant; `stream` and `toxicity` reach the
/// toxic. A field added to a toxic's table is walked here without a change to this test; a new unit fails to
/// compile until it has a value above.
#[test]
fn every_toxic_attribute_reaches_the_proxy_unchanged() {
    let mut walked = 0;
    for kind in FaultKind::ALL.into_iter().filter(|k| k.toxic_type().is_some()) {
        let toxic_type = kind.toxic_type().unwrap();
        let table = kind.params_table();
        // The experiment's keys are the owner's attributes, all of them (plus the toxic's own fields).
        let attributes: Vec<&str> = ToxicKind::fields(toxic_type).unwrap().iter().map(|f| f.name).collect();
        let keys = kind.keys();
        assert!(attributes.iter().all(|a| keys.contains(a)), "{kind}: {keys:?} lacks some of {attributes:?}");
        for param in &table {
            let mut with = Map::new();
            for required in table.iter().filter(|p| p.required) {
                if let Owner::Toxic { unit, .. } = required.owner {
                    with.insert(required.name.into(), toxic_value(unit).0);
                }
            }
            let (written, meant) = match param.owner {
                Owner::Toxic { unit, .. } => toxic_value(unit),
                Owner::Stream => (json!("upstream"), json!("upstream")),
                Owner::Toxicity => (json!("40%"), json!(0.4f32)),
                Owner::Agent { .. } => panic!("{kind}: a toxic with an agent field"),
            };
            let default = ToxicKind::default_attribute(toxic_type, param.name);
            assert_ne!(
                default.as_ref(),
                Some(&meant),
                "{kind}.{}: the walk value is the default",
                param.name
            );
            with.insert(param.name.into(), written);
            let params =
                parse_step(&step(kind, &with)).unwrap_or_else(|e| panic!("{kind}.{}: {e}", param.name));
            let FaultParams::Toxic { toxic_type: got_type, stream, toxicity, attributes } = params else {
                panic!("{kind}: not a toxic")
            };
            assert_eq!(got_type, toxic_type);
            let owner = ToxicKind::default_for(toxic_type).unwrap().merged(Some(&attributes)).unwrap();
            assert_eq!(owner.check_required(), Ok(()), "{kind}");
            let got = match param.owner {
                Owner::Stream => json!(stream.name()),
                Owner::Toxicity => json!(toxicity),
                _ => owner.attributes().get(param.name).cloned().unwrap_or(Value::Null),
            };
            assert_eq!(got, meant, "{kind}.{} did not reach the proxy as written", param.name);
            walked += 1;
        }
    }
    assert!(walked >= 57, "walked only {walked} toxic keys");
}

/// A network namespace for the walk's `netns` fields (the agent checks that it exists), removed on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("chaos-walk-{}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status().expect("run ip");
        assert!(status.success(), "ip netns add {name} (this test needs root and iproute2)");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

/// Every field of every agent fault spec an experiment can set (host faults: all of them; `kill`: all but
/// `target` and `count`, which its target gives) reaches the agent's `FaultSpec` exactly as the agent's own
/// reader reads the table's example value. A field added to a spec's table is walked without a change here.
#[test]
fn every_agent_fault_field_reaches_the_agent_unchanged() {
    let netns = Netns::new();
    let yaml = |example: &str| -> Value { serde_saphyr::from_str(example).unwrap() };
    let mut walked = 0;
    for kind in FaultKind::ALL {
        let agent = match (kind, kind.agent_kind()) {
            (_, Some(agent)) => agent,
            (FaultKind::Kill, None) => AgentKind::ProcessKill,
            _ => continue,
        };
        let table = kind.params_table();
        let value = |param: &experiment::Param| match param.owner {
            Owner::Agent { unit: AgentUnit::Name, .. } if param.name == "netns" => json!(netns.0),
            Owner::Agent { example, .. } => yaml(example),
            _ => panic!("{kind}.{}: an agent fault with a non-agent key", param.name),
        };
        for param in &table {
            let mut with = Map::new();
            for required in table.iter().filter(|p| p.required) {
                with.insert(required.name.into(), value(required));
            }
            with.insert(param.name.into(), value(param));
            let params =
                parse_step(&step(kind, &with)).unwrap_or_else(|e| panic!("{kind}.{}: {e}", param.name));
            // What the agent itself reads from the same values.
            let mut spec = Map::new();
            spec.insert("kind".into(), json!(agent.as_str()));
            if kind == FaultKind::Kill {
                spec.insert("target".into(), json!({"name": "nginx"}));
            }
            spec.extend(with.clone());
            let expected: FaultSpec = serde_json::from_value(Value::Object(spec)).unwrap();
            match (params, expected) {
                (FaultParams::Host(got), expected) => assert_eq!(got, expected, "{kind}.{}", param.name),
                (FaultParams::Kill { signal }, FaultSpec::ProcessKill { signal: expected, .. }) => {
                    assert_eq!(signal, chaos_agent::Signal::parse(&expected).unwrap().number(), "{kind}")
                }
                (other, _) => panic!("{kind}: unexpected {other:?}"),
            }
            walked += 1;
        }
    }
    assert!(walked >= 25, "walked only {walked} agent fields");
}

/// Regression: `fault: latency` with `distribution:` was refused by `chaos validate` although the proxy takes
/// it. It is accepted, and the value reaches a real proxy unchanged.
#[tokio::test]
async fn latency_distribution_is_accepted_and_reaches_the_proxy() {
    let params = parse_step("{ fault: latency, target: db, with: { latency: 100ms, jitter: 20, distribution: pareto }, duration: 1s }")
        .unwrap();
    let FaultParams::Toxic { toxic_type, stream, toxicity, attributes } = params else {
        panic!("not a toxic")
    };
    assert_eq!(
        Value::Object(attributes.clone()),
        json!({"latency": 100, "jitter": 20, "distribution": "pareto"})
    );

    let (_api, client, stop) = proxy_support::proxy_server_with("db", 1).await;
    let stream = match stream {
        Stream::Upstream => chaos_proxy::client::Stream::Upstream,
        Stream::Downstream => chaos_proxy::client::Stream::Downstream,
    };
    let new = NewToxic {
        name: Some("walk".into()),
        r#type: toxic_type.into(),
        stream: Some(stream),
        toxicity: Some(toxicity),
        attributes,
        ttl: None,
    };
    client.add_toxic("db", &new).await.unwrap();
    let toxics = client.toxics("db").await.unwrap();
    assert_eq!(toxics.len(), 1);
    assert_eq!(toxics[0].attributes["distribution"], json!("pareto"));
    assert_eq!(toxics[0].attributes["latency"], json!(100));
    stop.cancel();
}

/// Regression: `fault: kill` with `signal: 40` passed validation (1..=64) and failed mid-run, because the agent
/// sends only the 31 standard signals. It is refused at validate time, at the value's line and column.
#[test]
fn kill_with_a_signal_the_agent_cannot_send_is_refused_where_it_is_written() {
    let text = format!("{HEAD}  - fault: kill\n    target: web\n    with: {{ signal: 40 }}\n");
    let err = experiment::parse("kill.yaml", &text, &[]).unwrap_err().to_string();
    assert_eq!(err, "kill.yaml:9:21: invalid signal: expected a signal number between 1 and 31, found 40");
}

/// What validation accepts as a kill signal is exactly what the agent accepts, by number and by name.
#[test]
fn validation_and_the_agent_agree_on_every_signal() {
    let names = ["KILL", "SIGTERM", "int", "usr1", "RTMIN", "SIGRTMIN+2", "NOPE", "STKFLT", "PWR"];
    let numbers = (0..=70).map(|n| n.to_string());
    for signal in numbers.chain(names.iter().map(|n| n.to_string())) {
        let validated =
            parse_step(&format!("{{ fault: kill, target: web, with: {{ signal: \"{signal}\" }} }}"));
        let agent = chaos_agent::Signal::parse(&signal);
        assert_eq!(
            validated.is_ok(),
            agent.is_ok(),
            "signal {signal}: validate {validated:?}, agent {agent:?}"
        );
        if let (Ok(FaultParams::Kill { signal: n }), Ok(agent)) = (validated, agent) {
            assert_eq!(n, agent.number(), "{signal}");
        }
    }
}

/// The JSON Schema's `with:` for each fault comes from the same tables: an editor accepts every key the
/// parser accepts (latency `distribution` included) and flags a key no owner has.
#[test]
fn the_schema_describes_each_fault_s_with_from_the_tables() {
    let schema = experiment::json_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let doc = |step: Value| {
        json!({
            "apiVersion": "chaos/v1",
            "title": "t",
            "targets": {"db": {"proxy": {"api": "http://127.0.0.1:1", "name": "db"}}},
            "method": [step],
        })
    };
    let good = json!({"fault": "latency", "target": "db", "duration": "1s",
                      "with": {"latency": "100ms", "distribution": "pareto", "toxicity": "50%"}});
    let errors: Vec<String> = validator.iter_errors(&doc(good)).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    for bad in [
        json!({"fault": "latency", "target": "db", "duration": "1s", "with": {"latency": 1, "colour": "red"}}),
        json!({"fault": "latency", "target": "db", "duration": "1s", "with": {"latency": 1, "distribution": "zipf"}}),
        json!({"fault": "latency", "target": "db", "duration": "1s", "with": {"jitter": 1}}),
        json!({"fault": "http_abort", "target": "db", "duration": "1s", "with": {"status": 700}}),
    ] {
        assert!(!validator.is_valid(&doc(bad.clone())), "the schema accepts {bad}");
    }
    for kind in FaultKind::ALL {
        let step = &schema["$defs"]["Step"]["allOf"];
        let case =
            step.as_array().unwrap().iter().find(|c| c["if"]["properties"]["fault"]["const"] == kind.name());
        let with = &case.unwrap_or_else(|| panic!("no schema case for {kind}"))["then"]["properties"]["with"];
        let listed: Vec<&str> = with["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(listed, kind.keys(), "{kind}");
    }
}
