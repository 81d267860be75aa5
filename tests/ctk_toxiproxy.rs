//! chaostoolkit-toxiproxy, the published Chaos Toolkit extension, driving a real `chaos proxy` through the python
//! providers of a Chaos Toolkit experiment (controller/src/ctk/python.rs and its driver): `create_proxy` (which
//! stores `<name>_PORT` in the configuration), `create_latency_toxic`, the `proxy_exist` probe, `delete_toxic` and
//! `delete_proxy`, validated first as `chaos run` validates them, against a server on port 0 named by the
//! configuration's `toxiproxy_url`.
//!
//! Needs python3 with the venv module and PyPI the first time: the extension comes from the Chaos Toolkit tests'
//! venv (`target/ctk-venv`, tests/ctk/harness.rs: chaostoolkit-toxiproxy 0.3.1 with chaostoolkit-lib 1.44.0),
//! built once under a lock and reused afterwards. A failed install fails the test; only `CHAOS_TEST_SKIP=python3`
//! skips it when python3 is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "ctk/harness.rs"]
mod harness;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chaos_controller::ctk::python::{Python, PythonCall};
use chaos_test_support::skip;
use serde_json::{Map, Value, json};
use support::{ChaosProxy, connect, echo_server, http_json, round_trip};

/// The venv's Python, with chaostoolkit-toxiproxy importable.
fn venv_python() -> PathBuf {
    harness::venv().python()
}

/// Runs one step of the method as `chaos run` would: the configuration is the run's, changes written back.
async fn call(python: &Python, step: &(&str, &str, Value), configuration: &mut Map<String, Value>) -> Value {
    let (module, func, arguments) = step;
    python
        .call(PythonCall {
            module,
            func,
            arguments: args(arguments.clone()),
            configuration,
            secrets: Map::new(),
            timeout: Some(Duration::from_secs(30)),
        })
        .await
        .unwrap_or_else(|e| panic!("{func}: {e:?}"))
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaostoolkit_toxiproxy_drives_chaos_proxy() {
    if !skip::require("python3", skip::program("python3")) {
        return;
    }
    let python = Python::new(tokio::task::spawn_blocking(venv_python).await.unwrap());
    let upstream = echo_server();
    let server = ChaosProxy::start(&[]);
    let mut configuration = args(json!({"toxiproxy_url": server.url()}));

    // The experiment's method, as `chaos run` would run it: each activity validated, then called.
    let create = json!({"proxy_name": "ctkpy", "upstream_host": "127.0.0.1", "upstream_port": upstream.port(),
                        "listen_host": "127.0.0.1"});
    let latency = json!({"for_proxy": "ctkpy", "toxic_name": "lag", "latency": 300});
    let steps = [
        ("chaostoxi.proxy.actions", "create_proxy", create),
        ("chaostoxi.toxic.actions", "create_latency_toxic", latency),
        ("chaostoxi.proxy.probes", "proxy_exist", json!({"proxy_name": "ctkpy"})),
        ("chaostoxi.toxic.actions", "delete_toxic", json!({"for_proxy": "ctkpy", "toxic_name": "lag"})),
        ("chaostoxi.proxy.actions", "delete_proxy", json!({"proxy_name": "ctkpy"})),
    ];
    for (module, func, arguments) in &steps {
        python
            .validate(module, func, &args(arguments.clone()))
            .await
            .unwrap_or_else(|e| panic!("{func}: {e}"));
    }
    let refused = python
        .validate("chaostoxi.toxic.actions", "create_latency_toxic", &args(json!({"for_proxy": "x"})))
        .await;
    assert_eq!(
        refused,
        Err("required argument 'toxic_name' is missing from activity 'create_latency_toxic'".into())
    );

    // create_proxy: the proxy exists on the server and its port is in the configuration, as chaostoxi stores it.
    assert_eq!(call(&python, &steps[0], &mut configuration).await, json!(true));
    let (status, proxy) = http_json(server.api, "GET", "/proxies/ctkpy", None);
    assert_eq!(status, 200, "{proxy}");
    let port =
        configuration.get("ctkpy_PORT").and_then(Value::as_str).expect("ctkpy_PORT in the configuration");
    assert_eq!(proxy["listen"].as_str().unwrap().rsplit(':').next().unwrap(), port);
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut stream = connect(listen);
    round_trip(&mut stream, b"before");

    // The latency toxic is on the proxy and delays the echo by at least its latency.
    let toxic = call(&python, &steps[1], &mut configuration).await;
    assert_eq!(toxic, json!(true), "create_latency_toxic returns whether the toxic was created");
    let (_, toxics) = http_json(server.api, "GET", "/proxies/ctkpy/toxics", None);
    assert_eq!(toxics[0]["name"], json!("lag"), "{toxics}");
    assert_eq!(toxics[0]["attributes"]["latency"], json!(300), "{toxics}");
    let mut slowed = connect(listen);
    let took = tokio::task::spawn_blocking(move || round_trip(&mut slowed, b"during")).await.unwrap();
    assert!(took >= Duration::from_millis(300), "the latency toxic did not delay the echo: {took:?}");

    assert_eq!(call(&python, &steps[2], &mut configuration).await, json!(true));
    call(&python, &steps[3], &mut configuration).await;
    let (_, toxics) = http_json(server.api, "GET", "/proxies/ctkpy/toxics", None);
    assert_eq!(toxics, json!([]));
    call(&python, &steps[4], &mut configuration).await;
    let (status, _) = http_json(server.api, "GET", "/proxies/ctkpy", None);
    assert_eq!(status, 404);
    assert_eq!(
        call(&python, &steps[2], &mut configuration).await,
        json!(false),
        "proxy_exist after delete_proxy"
    );
    python.shutdown().await;
}

/// The same extension through `chaos run` of a Chaos Toolkit file (the runner picks the venv's Python from
/// `CHAOS_PYTHON`): create the proxy, a latency toxic, probes that see both, the toxic deleted, the proxy deleted
/// by the rollback; the port `create_proxy` stored in the configuration reaches a later activity's `${…}`.
#[test]
fn chaos_run_of_a_chaos_toolkit_file_drives_chaos_proxy() {
    if !skip::require("python3", skip::program("python3")) {
        return;
    }
    let python = venv_python();
    let upstream = echo_server();
    let server = ChaosProxy::start(&[]);
    let dir = support::temp_dir("ctk-toxiproxy", "run");
    let python_step = |kind: &str, name: &str, module: &str, func: &str, arguments: Value| {
        json!({"type": kind, "name": name,
               "provider": {"type": "python", "module": module, "func": func, "arguments": arguments}})
    };
    let experiment = json!({
        "title": "chaostoolkit-toxiproxy drives chaos proxy",
        "description": "Unchanged Chaos Toolkit actions against chaos proxy.",
        "configuration": {"toxiproxy_url": server.url()},
        "method": [
            python_step("action", "create", "chaostoxi.proxy.actions", "create_proxy",
                json!({"proxy_name": "ctkrun", "upstream_host": "127.0.0.1", "upstream_port": upstream.port(),
                       "listen_host": "127.0.0.1"})),
            python_step("action", "lag", "chaostoxi.toxic.actions", "create_latency_toxic",
                json!({"for_proxy": "ctkrun", "toxic_name": "lag", "latency": 50})),
            python_step("probe", "exists", "chaostoxi.proxy.probes", "proxy_exist", json!({"proxy_name": "ctkrun"})),
            python_step("probe", "toxics", "chaostoxi.proxy.probes", "get_proxy_attribute",
                json!({"proxy_name": "ctkrun", "attribute": "toxics"})),
            {"type": "probe", "name": "port", "provider": {"type": "process", "path": "echo",
                                                             "arguments": ["${ctkrun_PORT}"]}},
            python_step("action", "unlag", "chaostoxi.toxic.actions", "delete_toxic",
                json!({"for_proxy": "ctkrun", "toxic_name": "lag"}))
        ],
        "rollbacks": [python_step("action", "drop", "chaostoxi.proxy.actions", "delete_proxy",
                                  json!({"proxy_name": "ctkrun"}))]
    });
    let file = dir.join("experiment.json");
    std::fs::write(&file, serde_json::to_string_pretty(&experiment).unwrap()).unwrap();
    let journal_path = dir.join("journal.json");
    let done = harness::run(
        Command::new(support::chaos_bin())
            .arg("run")
            .arg("--journal-path")
            .arg(&journal_path)
            .arg(&file)
            .env("CHAOS_PYTHON", &python)
            .env("NO_PROXY", "127.0.0.1,localhost"),
        Duration::from_secs(120),
    );
    assert!(done.success(), "chaos run failed:\n{}", done.text());
    let journal: Value = serde_json::from_str(&std::fs::read_to_string(&journal_path).unwrap()).unwrap();
    assert_eq!(journal["status"], json!("completed"), "{journal:#}");
    assert_eq!(journal["deviated"], json!(false));
    let runs = journal["run"].as_array().unwrap();
    assert!(runs.iter().all(|r| r["status"] == json!("succeeded")), "{runs:#?}");
    assert_eq!(runs[0]["output"], json!(true));
    assert_eq!(runs[2]["output"], json!(true), "proxy_exist");
    let toxics = runs[3]["output"].as_array().expect("the proxy's toxics");
    assert_eq!(toxics[0]["name"], json!("lag"), "{toxics:?}");
    assert_eq!(toxics[0]["attributes"]["latency"], json!(50));
    let port = runs[4]["output"]["stdout"].as_str().unwrap().trim();
    assert!(
        port.parse::<u16>().is_ok(),
        "create_proxy's <name>_PORT did not reach ${{ctkrun_PORT}}: {port:?}"
    );
    assert_eq!(journal["rollbacks"][0]["status"], json!("succeeded"));
    let (status, _) = http_json(server.api, "GET", "/proxies/ctkrun", None);
    assert_eq!(status, 404, "the rollback deleted the proxy");
}
