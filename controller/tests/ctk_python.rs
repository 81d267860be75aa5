//! Python providers and controls of Chaos Toolkit experiments, run by the host's `python3` through the driver
//! the binary ships (controller/src/ctk/{python,controls}.rs, driver.py): plain modules this test writes into a
//! temp dir put on the driver's `PYTHONPATH` (no chaoslib, no network). Return values, tracebacks as chaoslib
//! journals them, signature binding, configuration and secrets injection and write-back, timeouts and the
//! restart of a hung driver, a dying driver, concurrency, and the controls' hooks, order, scopes and interrupt.
//!
//! Needs python3; `CHAOS_TEST_SKIP=python3` skips it when python3 is missing (else it fails).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use chaos_controller::ctk::ActivityFailure;
use chaos_controller::ctk::controls::{Controls, Hook, Interrupt};
use chaos_controller::ctk::model;
use chaos_controller::ctk::python::{Python, PythonCall};
use chaos_test_support::dir::TempDir;
use chaos_test_support::skip;
use serde_json::{Map, Value, json};

const PROVIDERS: &str = r#"
import datetime, decimal, os, sys, time, threading

CALLS = 0

def values(kind):
    global CALLS
    CALLS += 1
    return {
        "int": 42, "float": 2.5, "str": "héllo", "none": None, "bool": True, "list": [1, "a", None],
        "dict": {"a": {"b": [1, 2]}, 3: "three"}, "tuple": (1, 2), "set": {7},
        "date": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "decimal": decimal.Decimal("1.10"), "bytes": b"raw", "nan": float("nan"), "object": Opaque(),
    }[kind]

class Opaque:
    def __repr__(self):
        return "<opaque>"

def calls():
    return CALLS

def boom(x=1):
    raise ValueError("bad %s" % x)

def needs(a, b=2):
    return [a, b]

def with_config(name, configuration=None, secrets=None):
    return {"name": name, "configuration": configuration, "secrets": secrets}

def without_config(name):
    return name

def store_port(proxy_name, configuration):
    configuration[proxy_name + "_PORT"] = 4321
    return None

def sleepy(seconds):
    time.sleep(seconds)
    return "slept"

def hang_holding_the_gil(seconds):
    import ctypes
    ctypes.PyDLL(None).sleep(seconds)   # PyDLL keeps the GIL: the driver cannot answer anything meanwhile

def die():
    os._exit(3)

def noisy():
    print("this goes to stderr, not the protocol")
    sys.stdout.write("{not json\n")
    return "quiet"

BARRIER = threading.Barrier(2, timeout=20)

def rendezvous(n):
    BARRIER.wait()      # returns only when two calls run at the same time
    return n

def interrupting():
    from chaoslib_stub import InterruptExecution
    raise InterruptExecution("stop")
"#;

const CONTROL: &str = r#"
CALLS = []

class InterruptExecution(Exception):
    pass

def configure_control(configuration=None, secrets=None, label="x"):
    CALLS.append(["configure", label, sorted((configuration or {}).keys())])

def cleanup_control():
    CALLS.append(["cleanup"])

def _record(hook, context, state, label):
    CALLS.append([hook, label, context.get("name") or context.get("title"), state is not None])

def before_experiment_control(context, label="x", configuration=None, experiment=None, **kwargs):
    _record("before_experiment", context, None, label)
    CALLS.append(["configuration", label, configuration.get("where"), experiment["title"]])

def after_experiment_control(context, state, label="x", **kwargs):
    _record("after_experiment", context, state, label)

def before_hypothesis_control(context, label="x", **kwargs):
    _record("before_hypothesis", context, None, label)

def after_hypothesis_control(context, state, label="x", **kwargs):
    _record("after_hypothesis", context, state, label)

def before_method_control(context, label="x", **kwargs):
    _record("before_method", context, None, label)

def after_method_control(context, state=None, label="x", **kwargs):
    _record("after_method", context, state, label)

def before_activity_control(context, label="x", **kwargs):
    _record("before_activity", context, None, label)
    if context.get("name") == "explode" and label == "top":
        raise RuntimeError("a control bug, logged and swallowed")
    if context.get("name") == "halt" and label == "top":
        raise InterruptExecution("halted by control " + label)

def after_activity_control(context, state, label="x", **kwargs):
    _record("after_activity", context, state, label)

def recorded():
    return CALLS
"#;

const STUB: &str = r#"
class InterruptExecution(Exception):
    pass
InterruptExecution.__module__ = "chaoslib.exceptions"
"#;

/// A python3 driver with the test's modules on PYTHONPATH, or None when python3 is missing and skipped.
fn python(dir: &TempDir) -> Option<Python> {
    if !skip::require("python3", skip::program("python3")) {
        return None;
    }
    write(dir.path(), "ctkpy_providers.py", PROVIDERS);
    write(dir.path(), "ctkpy_control.py", CONTROL);
    write(dir.path(), "chaoslib_stub.py", STUB);
    Some(Python::new("python3").with_env("PYTHONPATH", dir.path()))
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

async fn call(python: &Python, func: &str, arguments: Value) -> Result<Value, ActivityFailure> {
    let mut configuration = Map::new();
    call_with(python, func, arguments, &mut configuration, Map::new(), None).await
}

async fn call_with(
    python: &Python,
    func: &str,
    arguments: Value,
    configuration: &mut Map<String, Value>,
    secrets: Map<String, Value>,
    timeout: Option<Duration>,
) -> Result<Value, ActivityFailure> {
    python
        .call(PythonCall {
            module: "ctkpy_providers",
            func,
            arguments: args(arguments),
            configuration,
            secrets,
            timeout,
        })
        .await
}

#[tokio::test]
async fn return_values_come_back_as_json() {
    let dir = TempDir::new("ctkpy-values");
    let Some(python) = python(&dir) else { return };
    python.start().await.unwrap();
    let cases = [
        ("int", json!(42)),
        ("float", json!(2.5)),
        ("str", json!("héllo")),
        ("none", Value::Null),
        ("bool", json!(true)),
        ("list", json!([1, "a", null])),
        ("dict", json!({"a": {"b": [1, 2]}, "3": "three"})),
        ("tuple", json!([1, 2])),
        ("set", json!([7])),
        ("date", json!("2026-01-02T03:04:05+00:00")),
        ("decimal", json!("1.10")),
        ("bytes", json!("raw")),
        ("nan", Value::Null),
        ("object", json!("<opaque>")),
    ];
    let count = cases.len();
    for (kind, expected) in cases {
        assert_eq!(call(&python, "values", json!({"kind": kind})).await.unwrap(), expected, "{kind}");
    }
    // One driver for all of them: module state persists between calls.
    assert_eq!(call(&python, "calls", json!({})).await.unwrap(), json!(count));

    // A standard-library function, as experiments in the wild call it.
    let mut configuration = Map::new();
    let exists = python
        .call(PythonCall {
            module: "os.path",
            func: "exists",
            arguments: args(json!({"path": dir.path()})),
            configuration: &mut configuration,
            secrets: Map::new(),
            timeout: None,
        })
        .await;
    assert_eq!(exists.unwrap(), json!(true));

    // What user code prints does not disturb the protocol.
    assert_eq!(call(&python, "noisy", json!({})).await.unwrap(), json!("quiet"));
    python.shutdown().await;
}

#[tokio::test]
async fn exceptions_fail_with_chaoslib_tracebacks() {
    let dir = TempDir::new("ctkpy-exc");
    let Some(python) = python(&dir) else { return };
    let failure = call(&python, "boom", json!({"x": 2})).await.unwrap_err();
    let lines = &failure.exception;
    assert_eq!(lines[0], "Traceback (most recent call last):\n", "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("ctkpy_providers.py") && l.contains("in boom")), "{lines:#?}");
    assert!(lines.contains(&"ValueError: bad 2\n".to_string()), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("During handling of the above exception")), "{lines:#?}");
    assert_eq!(lines.last().unwrap(), "chaoslib.exceptions.ActivityFailed: ValueError: bad 2\n");
    assert_eq!(failure.to_string(), "chaoslib.exceptions.ActivityFailed: ValueError: bad 2");

    // chaoslib 1.44 turns every exception of a provider into ActivityFailed, InterruptExecution included.
    let failure = call(&python, "interrupting", json!({})).await.unwrap_err();
    assert_eq!(
        failure.exception.last().unwrap(),
        "chaoslib.exceptions.ActivityFailed: chaoslib.exceptions.InterruptExecution: stop\n"
    );

    // A call that does not bind fails the same way (validation would have refused it).
    let failure = call(&python, "needs", json!({"zzz": 1})).await.unwrap_err();
    assert!(failure.exception.last().unwrap().contains("TypeError"), "{failure:?}");
}

#[tokio::test]
async fn validation_binds_arguments_to_the_signature() {
    let dir = TempDir::new("ctkpy-validate");
    let Some(python) = python(&dir) else { return };
    let v = |func: &'static str, arguments: Value| {
        let python = python.clone();
        async move { python.validate_activity("ctkpy_providers", func, &args(arguments), "probe", "p1").await }
    };
    assert_eq!(v("needs", json!({"a": 1})).await, Ok(()));
    assert_eq!(
        v("needs", json!({})).await,
        Err("required argument 'a' is missing from activity 'needs'".into())
    );
    assert_eq!(
        v("needs", json!({"a": 1, "c": 3})).await,
        Err("argument 'c' is not part of the function signature in activity 'needs'".into())
    );
    // configuration and secrets are provided out of band: never missing, never unknown.
    assert_eq!(v("store_port", json!({"proxy_name": "db"})).await, Ok(()));
    assert_eq!(v("with_config", json!({"name": "n"})).await, Ok(()));
    assert_eq!(
        v("no_such_function", json!({})).await,
        Err("The python module 'ctkpy_providers' does not expose a function called 'no_such_function' in probe 'p1'"
            .into())
    );
    let missing = python.validate("ctkpy_no_such_module", "f", &Map::new()).await.unwrap_err();
    assert!(missing.starts_with("could not find Python module 'ctkpy_no_such_module'"), "{missing}");
    // Builtins validate too (os.rename has a signature; arguments bind).
    assert_eq!(python.validate("os", "rename", &args(json!({"src": "a", "dst": "b"}))).await, Ok(()));
}

#[tokio::test]
async fn configuration_and_secrets_are_injected_and_changes_written_back() {
    let dir = TempDir::new("ctkpy-config");
    let Some(python) = python(&dir) else { return };
    let mut configuration = args(json!({"toxiproxy_url": "http://127.0.0.1:1", "n": 3}));
    let secrets = args(json!({"token": "s3cr3t"}));
    let out =
        call_with(&python, "with_config", json!({"name": "a"}), &mut configuration, secrets.clone(), None)
            .await
            .unwrap();
    assert_eq!(
        out,
        json!({"name": "a", "configuration": {"toxiproxy_url": "http://127.0.0.1:1", "n": 3}, "secrets": {"token": "s3cr3t"}})
    );
    // No secrets for the provider: the function's default stays.
    let out = call_with(&python, "with_config", json!({"name": "b"}), &mut configuration, Map::new(), None)
        .await
        .unwrap();
    assert_eq!(out["secrets"], Value::Null);
    // A function that does not declare them gets neither.
    let out =
        call_with(&python, "without_config", json!({"name": "c"}), &mut configuration, secrets, None).await;
    assert_eq!(out.unwrap(), json!("c"));

    // chaostoolkit-toxiproxy's create_proxy stores <name>_PORT: the run sees it afterwards.
    call_with(&python, "store_port", json!({"proxy_name": "db"}), &mut configuration, Map::new(), None)
        .await
        .unwrap();
    assert_eq!(configuration.get("db_PORT"), Some(&json!(4321)));
    assert_eq!(configuration.get("n"), Some(&json!(3)));
}

#[tokio::test]
async fn timeouts_fail_the_call_and_a_hung_driver_is_restarted() {
    let dir = TempDir::new("ctkpy-timeout");
    let Some(python) = python(&dir) else { return };
    let mut configuration = Map::new();
    call(&python, "values", json!({"kind": "int"})).await.unwrap();
    assert_eq!(call(&python, "calls", json!({})).await.unwrap(), json!(1));

    // A sleeping call times out; the driver still answers, so it is kept (its module state too).
    let short = Some(Duration::from_millis(300));
    let failure = call_with(&python, "sleepy", json!({"seconds": 60}), &mut configuration, Map::new(), short)
        .await
        .unwrap_err();
    assert_eq!(
        failure.exception,
        vec![
            "chaoslib.exceptions.ActivityFailed: python activity ctkpy_providers.sleepy took too long (more than 0.3s)\n"
        ]
    );
    assert_eq!(call(&python, "calls", json!({})).await.unwrap(), json!(1));

    // A call holding the interpreter hangs the driver: it is killed and the next call starts a fresh one.
    let failure = call_with(
        &python,
        "hang_holding_the_gil",
        json!({"seconds": 60}),
        &mut configuration,
        Map::new(),
        short,
    )
    .await
    .unwrap_err();
    assert!(failure.exception[0].contains("took too long"), "{failure:?}");
    assert_eq!(
        call(&python, "calls", json!({})).await.unwrap(),
        json!(0),
        "a new driver, fresh module state"
    );
}

#[tokio::test]
async fn a_dying_driver_fails_its_call_and_the_next_one_restarts_it() {
    let dir = TempDir::new("ctkpy-die");
    let Some(python) = python(&dir) else { return };
    let failure = call(&python, "die", json!({})).await.unwrap_err();
    assert!(failure.exception[0].contains("the python driver exited"), "{failure:?}");
    assert_eq!(call(&python, "needs", json!({"a": 5})).await.unwrap(), json!([5, 2]));

    let missing = Python::new(dir.path().join("no-python-here"));
    let failure = missing.start().await.unwrap_err();
    assert!(failure.contains("cannot start the python driver"), "{failure}");
}

#[tokio::test]
async fn background_calls_run_side_by_side() {
    let dir = TempDir::new("ctkpy-concurrent");
    let Some(python) = python(&dir) else { return };
    // Each call waits at a two-party barrier: both return only if the driver runs them at the same time.
    let (a, b) = tokio::join!(
        call(&python, "rendezvous", json!({"n": 1})),
        call(&python, "rendezvous", json!({"n": 2}))
    );
    assert_eq!((a.unwrap(), b.unwrap()), (json!(1), json!(2)));
}

fn experiment(value: Value) -> model::Experiment {
    serde_json::from_value(value).unwrap()
}

fn control(label: &str, extra: Value) -> Value {
    let mut c = json!({"name": label, "provider": {"type": "python", "module": "ctkpy_control", "arguments": {"label": label}}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[tokio::test]
async fn controls_run_their_hooks_in_order_with_scopes_and_interrupt() {
    let dir = TempDir::new("ctkpy-controls");
    let Some(python) = python(&dir) else { return };
    let file = dir.path().join("controls.yaml");
    std::fs::write(
        &file,
        "global:\n  provider:\n    type: python\n    module: ctkpy_control\n    arguments:\n      label: global\n",
    )
    .unwrap();
    let doc = json!({
        "title": "t", "description": "d",
        "controls": [
            control("top", json!({})),
            control("manual", json!({"automatic": false})),
            control("gone", json!({"provider": {"type": "python", "module": "ctkpy_not_installed"}})),
        ],
        "steady-state-hypothesis": {"title": "hyp", "probes": [], "controls": [control("after-only", json!({"scope": "after"}))]},
        "method": [
            {"type": "action", "name": "a1", "provider": {"type": "python", "module": "m", "func": "f"},
             "controls": [control("top", json!({"provider": {"type": "python", "module": "ctkpy_control", "arguments": {"label": "override"}}}))]},
            {"type": "action", "name": "explode", "provider": {"type": "python", "module": "m", "func": "f"}},
            {"type": "action", "name": "halt", "provider": {"type": "python", "module": "m", "func": "f"}}
        ]
    });
    let exp = experiment(doc.clone());
    let mut controls = Controls::load(python.clone(), &exp, &[file]).unwrap();
    controls.set_configuration(&args(json!({"where": "here"})), &Map::new());
    controls.validate().await;
    controls.initialize().await;
    let method = doc["method"].as_array().unwrap().clone();
    let hypothesis = &doc["steady-state-hypothesis"];
    let state = json!({"status": "succeeded"});

    controls.run(Hook::BeforeExperiment, &doc, None).await.unwrap();
    controls.run(Hook::BeforeHypothesis, hypothesis, None).await.unwrap();
    controls.run(Hook::AfterHypothesis, hypothesis, Some(&json!({"steady_state_met": true}))).await.unwrap();
    controls.run(Hook::BeforeMethod, &doc, None).await.unwrap();
    controls.run(Hook::BeforeActivity, &method[0], None).await.unwrap();
    controls.run(Hook::AfterActivity, &method[0], Some(&state)).await.unwrap();
    // A control that raises is logged and the run carries on.
    controls.run(Hook::BeforeActivity, &method[1], None).await.unwrap();
    // InterruptExecution from a control interrupts.
    let interrupted = controls.run(Hook::BeforeActivity, &method[2], None).await;
    assert_eq!(interrupted, Err(Interrupt("halted by control top".into())));
    controls.run(Hook::AfterMethod, &doc, Some(&json!([]))).await.unwrap();
    controls.run(Hook::AfterExperiment, &doc, Some(&json!({"status": "interrupted"}))).await.unwrap();
    controls.cleanup().await;

    let mut configuration = Map::new();
    let recorded = python
        .call(PythonCall {
            module: "ctkpy_control",
            func: "recorded",
            arguments: Map::new(),
            configuration: &mut configuration,
            secrets: Map::new(),
            timeout: None,
        })
        .await
        .unwrap();
    let expected = json!([
        // configure_control once per control name (the activity's `top` shares the experiment's name).
        ["configure", "global", ["where"]],
        ["configure", "top", ["where"]],
        ["configure", "manual", ["where"]],
        ["configure", "after-only", ["where"]],
        // Experiment level: global, then every experiment control (automatic or not).
        ["before_experiment", "global", "t", false],
        ["configuration", "global", "here", "t"],
        ["before_experiment", "top", "t", false],
        ["configuration", "top", "here", "t"],
        ["before_experiment", "manual", "t", false],
        ["configuration", "manual", "here", "t"],
        // Hypothesis: the automatic top-level control, the global one, its own (scope after: not before).
        ["before_hypothesis", "top", "hyp", false],
        ["before_hypothesis", "global", "hyp", false],
        ["after_hypothesis", "top", "hyp", true],
        ["after_hypothesis", "global", "hyp", true],
        ["after_hypothesis", "after-only", "hyp", true],
        // Method: the experiment's automatic controls.
        ["before_method", "top", "t", false],
        // a1 overrides `top` with its own control of that name.
        ["before_activity", "global", "a1", false],
        ["before_activity", "override", "a1", false],
        ["after_activity", "global", "a1", true],
        ["after_activity", "override", "a1", true],
        ["before_activity", "top", "explode", false],
        ["before_activity", "global", "explode", false],
        ["before_activity", "top", "halt", false],
        ["after_method", "top", "t", true],
        ["after_experiment", "global", "t", true],
        ["after_experiment", "top", "t", true],
        ["after_experiment", "manual", "t", true],
        ["cleanup"],
        ["cleanup"],
        ["cleanup"],
        ["cleanup"]
    ]);
    assert_eq!(recorded, expected, "{}", serde_json::to_string_pretty(&recorded).unwrap());
}

#[tokio::test]
async fn controls_that_are_not_python_are_refused() {
    let exp = experiment(json!({
        "title": "t", "description": "d",
        "method": [{"type": "action", "name": "a", "provider": {"type": "python", "module": "m", "func": "f"},
                    "controls": [{"name": "web", "provider": {"type": "http", "url": "http://x"}}]}]
    }));
    let err = Controls::load(Python::new("python3"), &exp, &[]).unwrap_err();
    assert_eq!(err.pointer, "/method/0/controls/0/provider/type");
    assert_eq!(
        err.message,
        "control 'web': provider type 'http' is not supported; controls run as python only"
    );

    let exp = experiment(json!({
        "title": "t", "description": "d", "method": [],
        "controls": [{"name": "s", "scope": "during", "provider": {"type": "python", "module": "m"}}]
    }));
    let err = Controls::load(Python::new("python3"), &exp, &[]).unwrap_err();
    assert_eq!(err.pointer, "/controls/0/scope");

    // No control anywhere: nothing to run, no driver needed.
    let exp = experiment(json!({"title": "t", "description": "d", "method": []}));
    let mut controls = Controls::load(Python::new("/nonexistent/python"), &exp, &[]).unwrap();
    assert!(controls.is_empty());
    controls.run(Hook::BeforeExperiment, &json!({}), None).await.unwrap();
}
