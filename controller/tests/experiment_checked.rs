//! The checked experiment: `parse`, `load` and `check` are the only ways to an [`experiment::Checked`], the
//! type the engine takes. A document deserialised with serde alone is a `model::Experiment` whose fault steps
//! are not checked; `check` runs the same typing and validation as `parse` and hands it to the engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use chaos_controller::engine::Plan;
use chaos_controller::experiment::{self, CheckedKind, Experiment, FaultKind, FaultParams, StepKind};

const DOC: &str = r#"apiVersion: chaos/v1
title: checked once ${still literal}
targets:
  shop: { proxy: { api: "http://127.0.0.1:1", name: shop } }
  web: { processes: { name: nginx } }
method:
  - fault: latency
    target: shop
    with: { latency: 250ms, jitter: 10ms }
    duration: 4s
  - wait: 1s
  - parallel:
      - fault: kill
        target: web
      - wait: 2s
"#;

fn valid_documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [root.join("../experiments"), root.join("tests/data/experiments/valid")] {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A raw serde document has no checked faults (`Step::kind` says so); `check` gives the same checked
/// experiment `parse` gives, whose step kinds cannot fail.
#[test]
fn a_serde_document_reaches_the_checked_type_only_through_check() {
    let escaped = DOC.replace("${still", "$${still");
    let parsed = experiment::parse("doc.yaml", &escaped, &[]).unwrap_or_else(|d| panic!("{d}"));
    let json = serde_json::to_string(&parsed).unwrap();
    let raw: Experiment = serde_json::from_str(&json).unwrap();
    let err = raw.method[0].kind().unwrap_err();
    assert!(err.contains("was not checked"), "{err}");

    let checked = experiment::check(&raw).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(checked, parsed);
    assert_eq!(checked.title, "checked once ${still literal}", "check substitutes nothing again");
    let CheckedKind::Fault(fault) = checked.method()[0].kind() else { panic!("not a fault") };
    assert_eq!((fault.kind, fault.target), (FaultKind::Latency, "shop"));
    assert!(matches!(fault.params, FaultParams::Toxic { .. }), "{:?}", fault.params);
    assert!(matches!(checked.method()[1].kind(), CheckedKind::Wait(_)));
    let CheckedKind::Parallel(group) = checked.method()[2].kind() else { panic!("not parallel") };
    let CheckedKind::Fault(kill) = group[0].kind() else { panic!("not a fault") };
    assert_eq!(kill.params, FaultParams::Kill { signal: 9 });
    // The serde view inside agrees with the checked one.
    assert!(matches!(checked.method[0].kind(), Ok(StepKind::Fault(f)) if f == fault));
    assert_eq!(checked.clone().into_inner(), *checked.as_ref());
}

/// `check` validates as `parse` does: the same messages, at the in-memory document's name.
#[test]
fn check_refuses_what_parse_refuses() {
    let parsed = experiment::parse("doc.yaml", &DOC.replace("${still", "$${still"), &[]).unwrap();
    let mut raw = parsed.into_inner();
    raw.method[0].with.insert("latency".into(), serde_json::json!("fast"));
    raw.method[2].parallel.as_mut().unwrap()[0].with.insert("signal".into(), serde_json::json!(40));
    // `parse` substitutes `${…}`; the title's literal one is escaped for it.
    let text = serde_json::to_string_pretty(&raw).unwrap().replace("${", "$${");
    let from_parse = experiment::parse("doc.json", &text, &[]).unwrap_err();
    let from_check = experiment::check(&raw).unwrap_err();
    assert_eq!(from_check.len(), 2, "{from_check}");
    assert!(from_check.iter().all(|d| d.file == experiment::IN_MEMORY && d.line > 0), "{from_check}");
    let messages = |d: &experiment::Diagnostics| d.iter().map(|d| d.message.clone()).collect::<Vec<_>>();
    assert_eq!(messages(&from_check), messages(&from_parse));
}

/// Every shipped and test document checks back to itself: `check` is the same pipeline as `load`.
#[test]
fn every_valid_document_checks_back_to_itself() {
    let files = valid_documents();
    assert!(files.len() >= 7, "{files:?}");
    for file in files {
        let loaded = experiment::load(&file, &[]).unwrap_or_else(|d| panic!("{d}"));
        let again = experiment::check(loaded.as_ref()).unwrap_or_else(|d| panic!("{}: {d}", file.display()));
        assert_eq!(again, loaded, "{}", file.display());
    }
}

/// The engine takes the checked experiment: a document checked in memory is planned and described.
#[tokio::test]
async fn the_engine_plans_a_checked_document() {
    let doc = "apiVersion: chaos/v1\ntitle: waits\nmethod:\n  - wait: 1s\n  - parallel: [ { wait: 2s } ]\n";
    let raw: Experiment = serde_json::from_value(
        serde_json::to_value(experiment::parse("w.yaml", doc, &[]).unwrap().into_inner()).unwrap(),
    )
    .unwrap();
    let checked = experiment::check(&raw).unwrap_or_else(|d| panic!("{d}"));
    let plan = Plan::resolve(&checked, 7).await.unwrap_or_else(|e| panic!("{e}"));
    let described = plan.describe(&checked);
    assert!(described.contains("1 wait 1s") && described.contains("2.1 wait 2s"), "{described}");
}
