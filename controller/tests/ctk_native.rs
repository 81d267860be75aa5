//! `extensions: chaos` in a Chaos Toolkit experiment (controller/src/ctk/native.rs): the native engine runs load
//! through a real `chaos proxy` (in process, port 0) in front of an HTTP target on port 0, judges an SLO over
//! the window of the Chaos Toolkit method, and its guardrail interrupts that method. The Chaos Toolkit method
//! itself is played by the test the way chaostoolkit-toxiproxy would: a latency toxic on the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use chaos_controller::ctk::model;
use chaos_controller::ctk::native::NativeExtension;
use chaos_controller::engine::Verdict;
use chaos_proxy::client::{Client, NewProxy, NewToxic};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// An HTTP target on port 0 answering 200 at once.
async fn target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(String::from("ok")))
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    addr
}

/// A `chaos proxy` admin API on port 0 with a (TCP) proxy `shop` in front of `upstream`: (api, client, listen).
async fn proxy(upstream: SocketAddr) -> (String, Client, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let server = chaos_proxy::Server::new(chaos_proxy::ServerConfig::default());
    tokio::spawn(chaos_proxy::serve(listener, server, std::future::pending()));
    let client = Client::new(&api).unwrap();
    let proxy = NewProxy {
        name: "shop".into(),
        listen: Some("127.0.0.1:0".into()),
        upstream: upstream.to_string(),
        enabled: None,
        half_close: None,
    };
    let created = client.create_proxy(&proxy).await.unwrap();
    (api, client, created.listen)
}

/// A Chaos Toolkit experiment whose `chaos` extension adds load through the proxy and a latency SLO.
fn experiment(api: &str, listen: &str, guardrails: Value) -> (model::Experiment, String) {
    let mut extension = json!({
        "name": "chaos",
        "targets": {"shop": {"proxy": {"api": api, "name": "shop"}}},
        "load": [{"name": "shoppers", "http": {"url": format!("http://{listen}/")}, "rate": "40/s"}],
        "slos": [{"name": "fast", "signal": "latency", "threshold": "150ms", "objective": "90%",
                  "source": {"load": "shoppers"}}],
        "baseline": "1s",
        "recovery": "1s"
    });
    if !guardrails.is_null() {
        extension["guardrails"] = guardrails;
    }
    let doc = json!({
        "title": "Checkout stays fast", "description": "a CTK method judged on a native SLO",
        "method": [{"type": "action", "name": "slow-shop",
                    "provider": {"type": "python", "module": "chaostoxi.toxic.actions", "func": "create_latency_toxic",
                                 "arguments": {"for_proxy": "shop", "toxic_name": "lag", "latency": 400}}}],
        "extensions": [extension]
    });
    let source = serde_json::to_string_pretty(&doc).unwrap();
    (serde_json::from_value(doc).unwrap(), source)
}

async fn add_latency(client: &Client, ms: u64) {
    let toxic = NewToxic {
        name: Some("lag".into()),
        r#type: "latency".into(),
        attributes: json!({"latency": ms}).as_object().unwrap().clone(),
        ..Default::default()
    };
    client.add_toxic("shop", &toxic).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_slo_judges_the_chaos_toolkit_method_window() {
    let (api, client, listen) = proxy(target().await).await;
    let (exp, source) = experiment(&api, &listen, Value::Null);
    let mut native =
        NativeExtension::from_experiment(&exp, "exp.json", &source).unwrap().expect("an extension");
    assert_eq!(native.checked.title, "Checkout stays fast");
    native.start(7, None).await.unwrap();
    native.method_started();
    // The Chaos Toolkit method: a latency toxic above the SLO's threshold for 2 s, then removed.
    add_latency(&client, 400).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    client.remove_toxic("shop", "lag").await.unwrap();
    native.method_ended();
    assert!(!native.tripped().is_cancelled(), "no guardrail, no trip");
    let outcome = native.finish().await;
    assert_eq!(outcome.verdict, Verdict::Failed, "{:#?}", outcome.reasons);
    let fast = outcome.slos.iter().find(|s| s.name == "fast").expect("the SLO's result");
    assert_eq!(fast.passed, Some(false), "{fast:?}");
    // The native journal carries the run for `chaos report` and `--html`.
    assert_eq!(outcome.journal.experiment.title, "Checkout stays fast");
    assert_eq!(outcome.journal.slos.len(), 1);
    assert!(outcome.journal.phases.iter().any(|p| p.name == "method"), "{:?}", outcome.journal.phases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_method_passes() {
    let (api, _client, listen) = proxy(target().await).await;
    let (exp, source) = experiment(&api, &listen, Value::Null);
    let mut native = NativeExtension::from_experiment(&exp, "exp.json", &source).unwrap().unwrap();
    native.start(7, None).await.unwrap();
    native.method_started();
    tokio::time::sleep(Duration::from_secs(1)).await;
    native.method_ended();
    let outcome = native.finish().await;
    assert_eq!(outcome.verdict, Verdict::Passed, "{:#?}", outcome.reasons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_trip_interrupts_the_chaos_toolkit_method() {
    let (api, client, listen) = proxy(target().await).await;
    let (exp, source) = experiment(&api, &listen, json!({"budget": "5%"}));
    let mut native = NativeExtension::from_experiment(&exp, "exp.json", &source).unwrap().unwrap();
    native.start(7, None).await.unwrap();
    native.method_started();
    add_latency(&client, 400).await;
    // The runner waits on the trip token while its method runs; every request is now slow: the budget goes.
    let tripped = tokio::time::timeout(Duration::from_secs(30), native.tripped().cancelled()).await;
    assert!(tripped.is_ok(), "the guardrail never tripped");
    client.remove_toxic("shop", "lag").await.unwrap();
    native.method_ended();
    let outcome = native.finish().await;
    assert_eq!(outcome.verdict, Verdict::Failed, "{:#?}", outcome.reasons);
    assert!(outcome.reasons[0].starts_with("guardrail aborted the run"), "{:#?}", outcome.reasons);
}

#[test]
fn bad_extensions_are_refused_with_positions() {
    let doc = |extension: Value| {
        let doc = json!({"title": "t", "description": "d", "method": [], "extensions": [{"name": "other"}, extension]});
        let source = serde_json::to_string_pretty(&doc).unwrap();
        (serde_json::from_value::<model::Experiment>(doc).unwrap(), source)
    };
    let (exp, source) = doc(json!({"name": "chaos", "loads": []}));
    let err = NativeExtension::from_experiment(&exp, "exp.json", &source).unwrap_err();
    let line = source.lines().position(|l| l.contains("\"loads\"")).unwrap() + 1;
    assert!(err.starts_with(&format!("exp.json:{line}:")), "{err}");
    assert!(err.contains("unknown field `loads`"), "{err}");

    let (exp, source) =
        doc(json!({"name": "chaos", "slos": [{"name": "x", "signal": "errors", "objective": "250%",
                                                              "source": {"load": "nobody"}}]}));
    let err = NativeExtension::from_experiment(&exp, "exp.json", &source).unwrap_err();
    let line = source.lines().position(|l| l.contains("\"slos\"")).unwrap() + 1;
    assert!(err.starts_with(&format!("exp.json:{line}:")), "{err}");
    assert!(err.contains("extensions: chaos: "), "{err}");

    let (exp, source) = doc(json!({"name": "not-chaos"}));
    assert!(NativeExtension::from_experiment(&exp, "exp.json", &source).unwrap().is_none());
}
