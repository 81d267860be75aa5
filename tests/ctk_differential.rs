//! The differential test of issue 17: every case of tests/ctk/cases.json (a file of the corpus
//! tests/ctk/corpus, its flags and environment) is run by the real Chaos Toolkit 1.19.0 / chaostoolkit-lib 1.44.0
//! (target/ctk-venv, see tests/ctk/harness.rs) and by `chaos run`, against the same live HTTP service
//! (tests/ctk/service.rs, 127.0.0.1:0), the same system programs and the same python module
//! (tests/ctk/modules), and the two journals are compared normalised: status, deviated, and for every activity
//! record of steady_states.before/after/during, run and rollbacks its activity, name, status, output and
//! tolerance_met; the exit codes follow the mapping in [`exit_codes`]. Every mismatch of every case is
//! reported, not the first.
//!
//! Chaos Toolkit's own result is also checked against the status and deviated the case expects, so a corpus
//! file that stops proving what it is named for fails too.
//!
//! `CTK_ONLY=text` runs only the cases whose id (file, or `file [label]`) contains text; `CTK_KEEP=1` keeps
//! both runners' directories and journals and prints where.
//!
//! Needs python3 with the venv module and PyPI the first time (CHAOS_TEST_SKIP=python3 skips when python3 is
//! missing; a failing pip fails).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "ctk/harness.rs"]
mod harness;
#[path = "ctk/service.rs"]
mod service;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chaos_test_support::dir::TempDir;
use chaos_test_support::skip;
use serde_json::{Map, Value, json};

use harness::{Finished, Venv};
use service::Service;

/// Longest one run may take (the slowest case takes about 4 s).
const RUN_DEADLINE: Duration = Duration::from_secs(90);

/// Response headers that differ between two answers of the same route whatever the client: dropped before
/// comparing (the service sends none of them today; a proxy in between might).
const VOLATILE_HEADERS: &[&str] = &["date", "server", "keep-alive"];

/// Where `chaos run` is allowed to differ from Chaos Toolkit: (case id, journal path prefix, the reason, from
/// the reference or the issue). A listed divergence that does not happen fails the test, so the list stays
/// true.
const DIVERGENCES: &[(&str, &str, &str)] = &[
    (
        "tolerance-probe.json",
        ".steady_states.before.probes[0:health-checked-by-probe].activity",
        PROBE_TOLERANCE_VALUE,
    ),
    (
        "tolerance-probe.json",
        ".steady_states.before.probes[1:number-above-threshold].activity",
        PROBE_TOLERANCE_VALUE,
    ),
    (
        "tolerance-probe.json",
        ".steady_states.after.probes[0:health-checked-by-probe].activity",
        PROBE_TOLERANCE_VALUE,
    ),
];

/// Why a probe-tolerance's record differs.
const PROBE_TOLERANCE_VALUE: &str = "Chaos Toolkit writes the checked output into the experiment's own activity \
     (hypothesis.py: tolerance[\"provider\"][\"arguments\"][\"value\"] = value) and every record shares that \
     object, so each shows the last value checked (the before-record shows the after-hypothesis output); chaos \
     run journals the activity as written (reference §15: the record's activity is the activity, unsubstituted)";

/// One run of one corpus file, from tests/ctk/cases.json.
#[derive(Debug, Clone)]
struct Case {
    file: String,
    label: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    interrupt: bool,
    expect_status: String,
    expect_deviated: bool,
}

impl Case {
    fn id(&self) -> String {
        match &self.label {
            Some(l) => format!("{} [{l}]", self.file),
            None => self.file.clone(),
        }
    }
}

fn cases() -> Vec<Case> {
    let text =
        std::fs::read_to_string(harness::ctk_dir().join("cases.json")).expect("read tests/ctk/cases.json");
    let doc: Value = serde_json::from_str(&text).expect("tests/ctk/cases.json is JSON");
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().map(|s| s.as_str().expect("string").to_string()).collect())
            .unwrap_or_default()
    };
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            file: c["file"].as_str().expect("file").to_string(),
            label: c.get("label").and_then(Value::as_str).map(str::to_string),
            args: strings(c.get("args")),
            env: c
                .get("env")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter().map(|(k, v)| (k.clone(), v.as_str().expect("env value").to_string())).collect()
                })
                .unwrap_or_default(),
            interrupt: c.get("interrupt").and_then(Value::as_bool).unwrap_or(false),
            expect_status: c["expect"][0].as_str().expect("expect[0]").to_string(),
            expect_deviated: c["expect"][1].as_bool().expect("expect[1]"),
        })
        .collect()
}

/// Exit codes by the reference run's status and deviated: (status, deviated, Chaos Toolkit's, chaos run's).
/// Chaos Toolkit: 0 completed and not deviated, 1 otherwise; ours adds 3 for interrupted (issue 17); 2 is for
/// invalid files (tests/ctk_invalid.rs).
const EXIT_CODES: &[(&str, bool, i32, i32)] = &[
    ("completed", false, 0, 0),
    ("completed", true, 1, 1),
    ("failed", false, 1, 1),
    ("failed", true, 1, 1),
    ("aborted", false, 1, 1),
    ("aborted", true, 1, 1),
    ("interrupted", false, 1, 3),
    ("interrupted", true, 1, 3),
];

fn exit_codes(status: &str, deviated: bool) -> Option<(i32, i32)> {
    EXIT_CODES.iter().find(|(s, d, _, _)| *s == status && *d == deviated).map(|(_, _, k, c)| (*k, *c))
}

/// What both runners get: the live service, a refused URL, the run's own directory, the python module.
struct Env<'a> {
    venv: &'a Venv,
    base: String,
    closed: String,
}

impl Env<'_> {
    fn fill(&self, s: &str, work: &Path) -> String {
        s.replace("{base}", &self.base)
            .replace("{closed}", &self.closed)
            .replace("{work}", &work.display().to_string())
            .replace("{vars}", &harness::ctk_dir().join("vars").display().to_string())
    }

    fn apply(&self, cmd: &mut Command, case: &Case, work: &Path) {
        cmd.current_dir(work)
            .env("PATH", self.venv.path_var())
            .env("CHAOS_PYTHON", self.venv.python())
            .env("PYTHONPATH", harness::ctk_dir().join("modules"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("CTK_BASE_URL", &self.base)
            .env("CTK_CLOSED_URL", &self.closed)
            .env("CTK_WORK", work)
            .env_remove("CTK_FROM_DOTENV");
        for (k, v) in &case.env {
            cmd.env(k, self.fill(v, work));
        }
    }
}

/// Which runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runner {
    ChaosToolkit,
    Chaos,
}

/// Runs `case` with `runner` in a fresh directory under `root`: the process and its journal.
fn run_case(
    env: &Env,
    service: &Service,
    case: &Case,
    runner: Runner,
    root: &Path,
) -> (Finished, Option<Value>, PathBuf) {
    let work = root.join(match runner {
        Runner::ChaosToolkit => "ctk",
        Runner::Chaos => "chaos",
    });
    std::fs::create_dir_all(&work).unwrap();
    let journal = work.join("journal.json");
    let file = harness::ctk_dir().join("corpus").join(&case.file);
    let mut cmd = match runner {
        Runner::ChaosToolkit => {
            let mut c = Command::new(harness::ctk(env.venv));
            c.args(["--no-version-check", "--no-log-file", "run"]);
            c
        }
        Runner::Chaos => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_chaos"));
            c.arg("run");
            c
        }
    };
    cmd.arg("--journal-path").arg(&journal);
    for a in &case.args {
        cmd.arg(env.fill(a, &work));
    }
    cmd.arg(&file);
    env.apply(&mut cmd, case, &work);
    service.reset();
    let marker = work.join("interrupt.marker");
    let done = harness::run_interrupting(&mut cmd, RUN_DEADLINE, case.interrupt.then_some(marker.as_path()));
    let parsed = std::fs::read_to_string(&journal).ok().and_then(|t| serde_json::from_str(&t).ok());
    (done, parsed, work)
}

/// The comparable part of a journal: status, deviated, steady states (the `during` ones as a set of distinct
/// states: how many iterations fit in the method is timing), run and rollbacks.
fn normalise(journal: &Value, work: &Path) -> Value {
    let work = work.display().to_string();
    let state = |s: &Value| -> Value {
        if s.is_null() {
            return Value::Null;
        }
        json!({
            "steady_state_met": s.get("steady_state_met").cloned().unwrap_or(Value::Null),
            "probes": records(s.get("probes"), &work),
        })
    };
    let ss = &journal["steady_states"];
    let during: BTreeSet<String> =
        ss["during"].as_array().map(|a| a.iter().map(|s| state(s).to_string()).collect()).unwrap_or_default();
    json!({
        "status": journal.get("status").cloned().unwrap_or(Value::Null),
        "deviated": journal.get("deviated").cloned().unwrap_or(Value::Null),
        "steady_states": {
            "before": state(&ss["before"]),
            "after": state(&ss["after"]),
            "during (distinct states)": during.into_iter().map(|s| serde_json::from_str::<Value>(&s).unwrap()).collect::<Vec<_>>(),
        },
        "run": records(journal.get("run"), &work),
        "rollbacks": records(journal.get("rollbacks"), &work),
    })
}

fn records(list: Option<&Value>, work: &str) -> Value {
    let Some(list) = list.and_then(Value::as_array) else {
        return list.cloned().unwrap_or(Value::Null);
    };
    Value::Array(
        list.iter()
            .map(|r| {
                let mut out = Map::new();
                out.insert("name".into(), r["activity"].get("name").cloned().unwrap_or(Value::Null));
                out.insert("activity".into(), r.get("activity").cloned().unwrap_or(Value::Null));
                // An activity cut short by an interruption is journaled without a status.
                out.insert("status".into(), r.get("status").cloned().unwrap_or_else(|| json!("<absent>")));
                out.insert("output".into(), output(r.get("output").unwrap_or(&Value::Null), work));
                if let Some(t) = r.get("tolerance_met") {
                    out.insert("tolerance_met".into(), t.clone());
                }
                Value::Object(out)
            })
            .collect(),
    )
}

/// An output with the run's directory written `<work>` and an HTTP answer's headers lower-cased without the
/// volatile ones.
fn output(v: &Value, work: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace(work, "<work>")),
        Value::Array(a) => Value::Array(a.iter().map(|x| output(x, work)).collect()),
        Value::Object(m) => {
            let http = m.contains_key("status") && m.contains_key("headers") && m.contains_key("body");
            Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        if http && k == "headers" {
                            let headers = x
                                .as_object()
                                .map(|h| {
                                    h.iter()
                                        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                                        .filter(|(n, _)| !VOLATILE_HEADERS.contains(&n.as_str()))
                                        .collect::<Map<_, _>>()
                                })
                                .map_or_else(|| x.clone(), Value::Object);
                            (k.clone(), headers)
                        } else {
                            (k.clone(), output(x, work))
                        }
                    })
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// Every difference between `ctk` (the reference) and `ours`, by JSON path.
fn diff(path: &str, ctk: &Value, ours: &Value, out: &mut Vec<(String, String)>) {
    match (ctk, ours) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(w) => diff(&p, v, w, out),
                    None => out.push((p, format!("Chaos Toolkit has {v}, chaos run has no such key"))),
                }
            }
            for (k, w) in b {
                if !a.contains_key(k) {
                    out.push((
                        format!("{path}.{k}"),
                        format!("chaos run has {w}, Chaos Toolkit has no such key"),
                    ));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                let names = |l: &[Value]| -> Vec<String> {
                    l.iter().map(|r| r.get("name").map_or_else(|| r.to_string(), Value::to_string)).collect()
                };
                out.push((
                    path.to_string(),
                    format!(
                        "Chaos Toolkit has {} entries {:?}, chaos run {} {:?}",
                        a.len(),
                        names(a),
                        b.len(),
                        names(b)
                    ),
                ));
            }
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                let label = v.get("name").and_then(Value::as_str).map(|n| format!("[{i}:{n}]"));
                diff(&format!("{path}{}", label.unwrap_or_else(|| format!("[{i}]"))), v, w, out);
            }
        }
        // 1 and 1.0 are the same number to a journal consumer.
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => out.push((path.to_string(), format!("Chaos Toolkit {a} ≠ chaos run {b}"))),
    }
}

/// Runs one case under both runners; the problems found (empty when they agree).
fn compare_case(
    env: &Env,
    service: &Service,
    case: &Case,
    tmp: &Path,
    n: usize,
) -> (Vec<String>, Vec<String>) {
    let id = case.id();
    let root = tmp.join(format!("{n:02}"));
    let (ctk, ctk_journal, ctk_work) = run_case(env, service, case, Runner::ChaosToolkit, &root);
    let (ours, our_journal, our_work) = run_case(env, service, case, Runner::Chaos, &root);
    let mut problems = Vec::new();
    let mut expected = Vec::new();
    for (who, run) in [("Chaos Toolkit", &ctk), ("chaos run", &ours)] {
        if run.marker_missed {
            problems.push(format!(
                "{id}: {who} exited before the interrupt marker appeared (no SIGINT sent):\n{}",
                run.text()
            ));
        }
    }
    let Some(ctk_journal) = ctk_journal else {
        problems.push(format!("{id}: Chaos Toolkit wrote no journal (exit {}):\n{}", ctk.code(), ctk.text()));
        return (problems, expected);
    };
    let status = ctk_journal["status"].as_str().unwrap_or("?").to_string();
    let deviated = ctk_journal["deviated"].as_bool().unwrap_or(false);
    if status != case.expect_status || deviated != case.expect_deviated {
        problems.push(format!(
            "{id}: the corpus expects Chaos Toolkit to give ({}, deviated {}), it gave ({status}, deviated \
             {deviated}):\n{}",
            case.expect_status,
            case.expect_deviated,
            ctk.text()
        ));
    }
    let Some((ctk_code, our_code)) = exit_codes(&status, deviated) else {
        problems.push(format!("{id}: no exit code mapping for status {status:?}, deviated {deviated}"));
        return (problems, expected);
    };
    if ctk.code() != ctk_code {
        problems.push(format!("{id}: Chaos Toolkit exited {} where the table says {ctk_code}", ctk.code()));
    }
    if ours.code() != our_code {
        problems.push(format!(
            "{id}: chaos run exited {} where Chaos Toolkit's ({status}, deviated {deviated}) maps to {our_code}:\n{}",
            ours.code(),
            ours.text()
        ));
    }
    let Some(our_journal) = our_journal else {
        problems.push(format!("{id}: chaos run wrote no journal (exit {}):\n{}", ours.code(), ours.text()));
        return (problems, expected);
    };
    let mut diffs = Vec::new();
    diff("", &normalise(&ctk_journal, &ctk_work), &normalise(&our_journal, &our_work), &mut diffs);
    let allowed: Vec<&(&str, &str, &str)> = DIVERGENCES.iter().filter(|(c, _, _)| *c == id).collect();
    for (path, what) in diffs.iter() {
        match allowed.iter().find(|(_, prefix, _)| path.starts_with(prefix)) {
            Some((_, _, why)) => expected.push(format!("{id}: {path}: {what} (expected: {why})")),
            None => problems.push(format!("{id}: {path}: {what}")),
        }
    }
    for (_, prefix, why) in &allowed {
        if !diffs.iter().any(|(p, _)| p.starts_with(prefix)) {
            problems.push(format!(
                "{id}: the divergence at {prefix} ({why}) is listed but the journals agree there: drop it"
            ));
        }
    }
    (problems, expected)
}

#[test]
fn corpus_runs_the_same_under_chaos_toolkit_and_chaos_run() {
    if !skip::require("python3", skip::program("python3")) {
        return;
    }
    let venv = harness::venv();
    let service = Service::start().expect("start the corpus' HTTP service");
    let env = Env { venv: &venv, base: service.url(), closed: service::refused_url().unwrap() };
    let tmp = TempDir::new("ctk-diff");
    // CTK_KEEP=1 keeps both runners' directories and journals (printed) for a look after the run.
    let keep = std::env::var_os("CTK_KEEP").is_some();
    // CTK_ONLY=substring runs the matching cases only (while working on one file).
    let only = std::env::var("CTK_ONLY").ok();
    let mut problems = Vec::new();
    let mut expected = Vec::new();
    let mut ran = 0;
    for (n, case) in cases().iter().enumerate() {
        if only.as_deref().is_some_and(|o| !case.id().contains(o)) {
            continue;
        }
        let (p, e) = compare_case(&env, &service, case, tmp.path(), n);
        eprintln!("{}: {}", case.id(), if p.is_empty() { "same" } else { "DIFFERENT" });
        problems.extend(p);
        expected.extend(e);
        ran += 1;
    }
    assert!(ran > 0, "CTK_ONLY={only:?} matches no case");
    if keep {
        eprintln!("journals kept under {}", tmp.path().display());
        std::mem::forget(tmp);
    }
    let mut report = String::new();
    for e in &expected {
        let _ = writeln!(report, "  expected divergence: {e}");
    }
    if !report.is_empty() {
        eprintln!("{report}");
    }
    let mut text = String::new();
    for p in &problems {
        let _ = writeln!(text, "- {p}");
    }
    assert!(
        problems.is_empty(),
        "{} mismatches between Chaos Toolkit and chaos run:\n{text}",
        problems.len()
    );
}

#[test]
fn corpus_and_cases_cover_each_other() {
    let corpus = harness::ctk_dir().join("corpus");
    let files: BTreeSet<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let cases = cases();
    let used: BTreeSet<String> = cases.iter().map(|c| c.file.clone()).collect();
    assert!(files.len() >= 25, "the corpus has {} files, issue 17 asks for at least 25", files.len());
    assert!(files.iter().any(|f| f.ends_with(".json")) && files.iter().any(|f| f.ends_with(".yaml")));
    let unused: Vec<_> = files.difference(&used).collect();
    assert!(unused.is_empty(), "corpus files no case runs: {unused:?}");
    let missing: Vec<_> = used.difference(&files).collect();
    assert!(missing.is_empty(), "cases of files not in the corpus: {missing:?}");
    let ids: BTreeSet<String> = cases.iter().map(Case::id).collect();
    assert_eq!(ids.len(), cases.len(), "two cases share an id (file + label)");
    for (id, _, _) in DIVERGENCES {
        assert!(ids.contains(*id), "DIVERGENCES names {id:?}, which is no case");
    }
    for c in &cases {
        assert!(exit_codes(&c.expect_status, c.expect_deviated).is_some(), "{}: unknown expectation", c.id());
    }
}

/// The comparison can fail: a journal differing in status, an output, a tolerance result and a record count
/// gives one mismatch for each; headers differing only in case and in `Date` give none.
#[test]
fn the_comparison_reports_every_difference() {
    let work = Path::new("/tmp/w");
    let record = |out: Value, met: bool| {
        json!({"activity": {"name": "p", "type": "probe"}, "output": out,
        "status": "succeeded", "tolerance_met": met, "start": "x", "duration": 0.1})
    };
    let http = |date: &str| json!({"status": 200, "headers": {"Content-Type": "text/plain", "Date": date}, "body": "ok"});
    let a = json!({"status": "completed", "deviated": false, "steady_states": {"before": {"steady_state_met": true,
        "probes": [record(http("Mon"), true)]}, "after": null, "during": []},
        "run": [record(json!({"status": 0, "stdout": "/tmp/w/x\n", "stderr": ""}), true)], "rollbacks": []});
    let mut b = a.clone();
    b["steady_states"]["before"]["probes"][0]["output"]["headers"] =
        json!({"content-type": "text/plain", "date": "Tue"});
    let mut d = Vec::new();
    diff("", &normalise(&a, work), &normalise(&b, Path::new("/tmp/other")), &mut d);
    assert_eq!(d.len(), 1, "only the work directory differs in run[0]'s stdout: {d:?}");
    b["run"][0]["output"]["stdout"] = json!("/tmp/other/x\n");
    let mut d = Vec::new();
    diff("", &normalise(&a, work), &normalise(&b, Path::new("/tmp/other")), &mut d);
    assert!(d.is_empty(), "{d:?}");
    b["status"] = json!("failed");
    b["run"][0]["output"]["stdout"] = json!("/tmp/other/y\n");
    b["steady_states"]["before"]["probes"][0]["tolerance_met"] = json!(false);
    b["rollbacks"] = json!([record(Value::Null, false)]);
    let mut d = Vec::new();
    diff("", &normalise(&a, work), &normalise(&b, Path::new("/tmp/other")), &mut d);
    let paths: Vec<&str> = d.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".status",
            ".steady_states.before.probes[0:p].tolerance_met",
            ".run[0:p].output.stdout",
            ".rollbacks"
        ],
        "{d:?}"
    );
}
