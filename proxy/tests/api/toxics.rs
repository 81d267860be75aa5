//! Toxics (§4, §6, §8): the toxic shape with every attribute of its type, chain order, stream and name defaults,
//! toxicity, partial updates, delete, and an admin API that answers while a `bandwidth` toxic stalls a connection.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::common::{
    Api, DEADLINE, check_rows, connect, echo_roundtrip, echo_upstream, read_exactly, toxic_json,
};

/// `(type, attributes sent, attributes rendered)`: every type of §8 with all its attributes in Go field order, zeros
/// included. The slicer needs a non-zero size because `0, 0` is rejected.
const TYPES: &[(&str, &str, &str)] = &[
    ("latency", "{}", r#"{"latency":0,"jitter":0}"#),
    ("bandwidth", "{}", r#"{"rate":0}"#),
    ("slow_close", "{}", r#"{"delay":0}"#),
    ("timeout", "{}", r#"{"timeout":0}"#),
    ("reset_peer", "{}", r#"{"timeout":0}"#),
    ("slicer", r#"{"average_size":1}"#, r#"{"average_size":1,"size_variation":0,"delay":0}"#),
    ("limit_data", "{}", r#"{"bytes":0}"#),
    ("noop", "{}", "{}"),
];

#[tokio::test]
async fn every_toxic_type_renders_all_its_attributes_in_toxiproxy_key_order() {
    check_rows(TYPES, |(kind, sent, rendered)| async move {
        let api = Api::new();
        api.create_proxy("p", "127.0.0.1:9").await;
        let expected = toxic_json(rendered, &format!("{kind}_downstream"), kind, "downstream", "1");
        let body = format!(r#"{{"type":"{kind}","attributes":{sent}}}"#);
        api.post("/proxies/p/toxics", &body).await.assert_json(StatusCode::OK, &expected);
        api.get(&format!("/proxies/p/toxics/{kind}_downstream")).await.assert_json(StatusCode::OK, &expected);
        api.get("/proxies/p/toxics").await.assert_json(StatusCode::OK, &format!("[{expected}]"));
    })
    .await;
}

#[tokio::test]
async fn attributes_default_to_zero_and_unknown_ones_are_ignored() {
    let api = Api::new();
    api.create_proxy("p", "127.0.0.1:9").await;
    let reply =
        api.post("/proxies/p/toxics", r#"{"type":"latency","attributes":{"jitter":5,"bogus":1}}"#).await;
    reply.assert_json(
        StatusCode::OK,
        &toxic_json(r#"{"latency":0,"jitter":5}"#, "latency_downstream", "latency", "downstream", "1"),
    );
    let reply = api.post("/proxies/p/toxics", r#"{"type":"bandwidth","stream":"upstream"}"#).await;
    reply.assert_json(
        StatusCode::OK,
        &toxic_json(r#"{"rate":0}"#, "bandwidth_upstream", "bandwidth", "upstream", "1"),
    );
}

#[tokio::test]
async fn toxics_list_the_upstream_chain_first_then_downstream_each_in_insertion_order() {
    let api = Api::new();
    let listen = api.create_proxy("p", "127.0.0.1:9").await;
    api.get("/proxies/p/toxics").await.assert_json(StatusCode::OK, "[]");
    for (name, stream) in [("d1", "downstream"), ("u1", "upstream"), ("d2", "downstream"), ("u2", "upstream")]
    {
        api.add_toxic("p", json!({"name": name, "type": "timeout", "stream": stream})).await;
    }
    let rendered: Vec<String> =
        [("u1", "upstream"), ("u2", "upstream"), ("d1", "downstream"), ("d2", "downstream")]
            .iter()
            .map(|(name, stream)| toxic_json(r#"{"timeout":0}"#, name, "timeout", stream, "1"))
            .collect();
    api.get("/proxies/p/toxics").await.assert_json(StatusCode::OK, &format!("[{}]", rendered.join(",")));
    let proxy = crate::common::proxy_json("p", listen, "127.0.0.1:9", true, &rendered);
    api.get("/proxies/p").await.assert_json(StatusCode::OK, &proxy);
}

#[tokio::test]
async fn stream_defaults_to_downstream_is_case_insensitive_and_names_default_to_type_stream() {
    let api = Api::new();
    api.create_proxy("p", "127.0.0.1:9").await;
    let reply = api.post("/proxies/p/toxics", r#"{"type":"latency"}"#).await;
    let downstream =
        toxic_json(r#"{"latency":0,"jitter":0}"#, "latency_downstream", "latency", "downstream", "1");
    reply.assert_json(StatusCode::OK, &downstream);

    // Toxiproxy parses the stream case-insensitively but keeps the text it was sent, in the default name too.
    let reply = api.post("/proxies/p/toxics", r#"{"type":"latency","stream":"UPSTREAM"}"#).await;
    let upstream = toxic_json(r#"{"latency":0,"jitter":0}"#, "latency_UPSTREAM", "latency", "UPSTREAM", "1");
    reply.assert_json(StatusCode::OK, &upstream);
    let reply =
        api.post("/proxies/p/toxics", r#"{"type":"timeout","stream":"DownStream","name":"mixed"}"#).await;
    let mixed = toxic_json(r#"{"timeout":0}"#, "mixed", "timeout", "DownStream", "1");
    reply.assert_json(StatusCode::OK, &mixed);

    // `UPSTREAM` went to the upstream chain, which is listed first; `DownStream` to the end of the downstream one.
    let list = format!("[{upstream},{downstream},{mixed}]");
    api.get("/proxies/p/toxics").await.assert_json(StatusCode::OK, &list);
    // The default name is taken: a second unnamed latency downstream toxic is a duplicate.
    api.post("/proxies/p/toxics", r#"{"type":"latency","stream":"downstream"}"#)
        .await
        .assert_error(StatusCode::CONFLICT, "toxic already exists");
}

#[tokio::test]
async fn toxicity_defaults_to_1_renders_like_a_go_float32_and_is_not_range_checked() {
    let cases = [
        ("", "1"),
        (r#","toxicity":1.0"#, "1"),
        (r#","toxicity":0.5"#, "0.5"),
        (r#","toxicity":0.1"#, "0.1"),
    ];
    let unchecked = [(r#","toxicity":0"#, "0"), (r#","toxicity":2"#, "2"), (r#","toxicity":-1"#, "-1")];
    for (field, rendered) in cases.into_iter().chain(unchecked) {
        let api = Api::new();
        api.create_proxy("p", "127.0.0.1:9").await;
        let reply = api.post("/proxies/p/toxics", &format!(r#"{{"type":"noop"{field}}}"#)).await;
        reply.assert_json(
            StatusCode::OK,
            &toxic_json("{}", "noop_downstream", "noop", "downstream", rendered),
        );
    }
}

#[tokio::test]
async fn an_update_with_post_or_patch_merges_attributes_into_the_current_values() {
    for method in ["POST", "PATCH"] {
        let api = Api::new();
        api.create_proxy("p", "127.0.0.1:9").await;
        let toxic =
            json!({"name": "slow", "type": "latency", "toxicity": 0.5, "attributes": {"latency": 100}});
        api.add_toxic("p", toxic).await;

        let reply = api.call(method, "/proxies/p/toxics/slow", r#"{"attributes":{"jitter":25}}"#).await;
        let merged = toxic_json(r#"{"latency":100,"jitter":25}"#, "slow", "latency", "downstream", "0.5");
        reply.assert_json(StatusCode::OK, &merged);
        api.get("/proxies/p/toxics/slow").await.assert_json(StatusCode::OK, &merged);

        let reply = api.call(method, "/proxies/p/toxics/slow", r#"{"toxicity":0.75}"#).await;
        let retoxified =
            toxic_json(r#"{"latency":100,"jitter":25}"#, "slow", "latency", "downstream", "0.75");
        reply.assert_json(StatusCode::OK, &retoxified);
        api.get("/proxies/p/toxics/slow").await.assert_json(StatusCode::OK, &retoxified);
    }
}

#[tokio::test]
async fn an_update_cannot_change_type_stream_or_name() {
    let api = Api::new();
    api.create_proxy("p", "127.0.0.1:9").await;
    api.add_toxic("p", json!({"name": "t", "type": "latency"})).await;
    let body =
        r#"{"name":"renamed","type":"bandwidth","stream":"upstream","attributes":{"latency":7,"rate":9}}"#;
    let expected = toxic_json(r#"{"latency":7,"jitter":0}"#, "t", "latency", "downstream", "1");
    api.patch("/proxies/p/toxics/t", body).await.assert_json(StatusCode::OK, &expected);
    api.get("/proxies/p/toxics").await.assert_json(StatusCode::OK, &format!("[{expected}]"));
    api.get("/proxies/p/toxics/renamed").await.assert_error(StatusCode::NOT_FOUND, "toxic not found");
}

#[tokio::test]
async fn delete_removes_the_toxic_from_its_chain() {
    let api = Api::new();
    api.create_proxy("p", "127.0.0.1:9").await;
    api.add_toxic("p", json!({"name": "gone", "type": "latency", "stream": "upstream"})).await;
    api.add_toxic("p", json!({"name": "stays", "type": "timeout"})).await;

    api.delete("/proxies/p/toxics/gone").await.assert_no_content();
    api.get("/proxies/p/toxics/gone").await.assert_error(StatusCode::NOT_FOUND, "toxic not found");
    api.delete("/proxies/p/toxics/gone").await.assert_error(StatusCode::NOT_FOUND, "toxic not found");
    assert_eq!(api.toxic_names("p").await, ["stays"]);
    // The name is free again, in either direction.
    api.add_toxic("p", json!({"name": "gone", "type": "latency"})).await;
}

/// The top bug class of Toxiproxy (§10): the admin API hanging while a toxic holds data. `rate: 0` stalls forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_at_once_while_bandwidth_rate_0_stalls_a_connection() {
    const AT_ONCE: Duration = Duration::from_secs(1);
    let api = Api::new();
    let listen = api.create_proxy("p", echo_upstream().await).await;
    let mut client = connect(listen).await;
    echo_roundtrip(&mut client, b"before").await;

    // Added to the live connection: bytes sent after the answer are held.
    let add = api.post("/proxies/p/toxics", r#"{"name":"cut","type":"bandwidth","attributes":{"rate":0}}"#);
    timeout(AT_ONCE, add).await.expect("adding the toxic answers at once").assert_status(StatusCode::OK);
    client.write_all(b"stalled").await.unwrap();
    let mut buf = [0; 16];
    let early = timeout(Duration::from_millis(300), client.read(&mut buf)).await;
    assert!(early.is_err(), "bytes passed a rate 0 bandwidth toxic: {early:?}");

    let calls = [
        ("GET", "/proxies", "", StatusCode::OK),
        ("GET", "/proxies/p/toxics", "", StatusCode::OK),
        ("PATCH", "/proxies/p/toxics/cut", r#"{"attributes":{"rate":0}}"#, StatusCode::OK),
        (
            "POST",
            "/proxies/p/toxics",
            r#"{"name":"more","type":"latency","stream":"upstream"}"#,
            StatusCode::OK,
        ),
        ("DELETE", "/proxies/p/toxics/cut", "", StatusCode::NO_CONTENT),
    ];
    for (method, path, body, status) in calls {
        let reply = timeout(AT_ONCE, api.call(method, path, body)).await.unwrap_or_else(|_| {
            panic!("{method} {path} blocked behind the stalled connection for {AT_ONCE:?}")
        });
        reply.assert_status(status);
    }
    // Removing the toxic flushes what it held, and the connection is still usable.
    assert_eq!(read_exactly(&mut client, 7).await, b"stalled", "held bytes arrive within {DEADLINE:?}");
    echo_roundtrip(&mut client, b"after").await;
}
