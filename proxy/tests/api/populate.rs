//! `POST /populate` (§4, §6): 201 with `{"proxies":[...]}`, every entry validated before any is created, identical
//! entries kept untouched, differing ones replaced, toxics in the input ignored, failures in the populate shape.

use http::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    Api, assert_closed, assert_populate_failure, check_rows, connect, echo_roundtrip, echo_upstream,
    greeting_upstream, listen_of, proxy_json, read_exactly, toxic_json,
};

/// The `proxies` array of a successful populate, asserting 201 and the `{"proxies":[...]}` envelope.
#[track_caller]
fn populated(reply: &crate::common::Reply) -> Vec<Value> {
    reply.assert_status(StatusCode::CREATED).assert_header("content-type", crate::common::JSON);
    let envelope = reply.json();
    let keys: Vec<&String> = envelope.as_object().expect("populate answers an object").keys().collect();
    assert_eq!(keys, ["proxies"], "populate answers {{\"proxies\":[...]}} only: {}", reply.body);
    envelope["proxies"].as_array().expect("proxies is an array").clone()
}

#[tokio::test]
async fn populate_creates_every_entry_in_order_and_answers_201() {
    let api = Api::new();
    let upstream = echo_upstream().await;
    let body = format!(
        r#"[{{"name":"b","listen":"127.0.0.1:0","upstream":"{upstream}"}},
            {{"name":"a","listen":"127.0.0.1:0","upstream":"{upstream}","enabled":true}}]"#
    );
    let reply = api.post("/populate", &body).await;
    let proxies = populated(&reply);
    let (b, a) = (listen_of(&proxies[0]), listen_of(&proxies[1]));
    let expected = format!(
        r#"{{"proxies":[{},{}]}}"#,
        proxy_json("b", b, upstream, true, &[]),
        proxy_json("a", a, upstream, true, &[])
    );
    reply.assert_json(StatusCode::CREATED, &expected);
    echo_roundtrip(&mut connect(a).await, b"a").await;
    echo_roundtrip(&mut connect(b).await, b"b").await;
}

#[tokio::test]
async fn populate_with_nothing_answers_201_with_null_proxies() {
    Api::new().post("/populate", "[]").await.assert_json(StatusCode::CREATED, r#"{"proxies":null}"#);
}

#[tokio::test]
async fn populate_validates_every_entry_before_creating_any() {
    let ok = r#"{"name":"ok","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}"#;
    let cases = [
        (format!(r#"[{ok},{{"name":"x"}}]"#), "missing required field: upstream at proxy 2"),
        (format!(r#"[{ok},{{"name":"x","upstream":""}}]"#), "missing required field: upstream at proxy 2"),
        (format!(r#"[{ok},{{"upstream":"x"}}]"#), "missing required field: name at proxy 2"),
        (r#"[{"upstream":"x"}]"#.to_owned(), "missing required field: name at proxy 1"),
        (format!(r#"[{{"name":"","upstream":"x"}},{ok}]"#), "missing required field: name at proxy 1"),
    ];
    check_rows(cases, |(body, message)| async move {
        let api = Api::new();
        let reply = api.post("/populate", &body).await;
        api.get("/proxies").await.assert_json(StatusCode::OK, "{}");
        assert_eq!(assert_populate_failure(&reply, StatusCode::BAD_REQUEST), message, "{body}");
    })
    .await;
}

#[tokio::test]
async fn populate_rejects_a_body_that_does_not_decode_in_the_populate_shape() {
    let bodies = ["", "not json", r#"{"name":"a","upstream":"b"}"#, r#"[{"name":5,"upstream":"b"}]"#];
    check_rows(bodies, |body| async move {
        let api = Api::new();
        let reply = api.post("/populate", body).await;
        api.get("/proxies").await.assert_json(StatusCode::OK, "{}");
        let message = assert_populate_failure(&reply, StatusCode::BAD_REQUEST);
        assert!(message.starts_with("bad request body: "), "{body:?}: error {message:?}");
    })
    .await;
}

#[tokio::test]
async fn populate_keeps_an_identical_entry_untouched_with_its_toxics_connections_and_state() {
    let api = Api::new();
    let upstream = echo_upstream().await;
    let running = api.create_proxy("running", upstream).await;
    api.add_toxic("running", json!({"name": "kept", "type": "latency"})).await;
    let mut live = connect(running).await;
    echo_roundtrip(&mut live, b"ping").await;
    let stopped = api.create_proxy("stopped", upstream).await;
    api.patch("/proxies/stopped", r#"{"enabled":false}"#).await.assert_status(StatusCode::OK);

    // Same name, listen and upstream: the existing proxy stays as it is, whatever `enabled` the input says.
    let body = format!(
        r#"[{{"name":"running","listen":"{running}","upstream":"{upstream}","enabled":false}},
            {{"name":"stopped","listen":"{stopped}","upstream":"{upstream}","enabled":true}}]"#
    );
    let kept = toxic_json(r#"{"latency":0,"jitter":0}"#, "kept", "latency", "downstream", "1");
    let expected = format!(
        r#"{{"proxies":[{},{}]}}"#,
        proxy_json("running", running, upstream, true, std::slice::from_ref(&kept)),
        proxy_json("stopped", stopped, upstream, false, &[])
    );
    api.post("/populate", &body).await.assert_json(StatusCode::CREATED, &expected);
    api.get("/proxies/running")
        .await
        .assert_json(StatusCode::OK, &proxy_json("running", running, upstream, true, &[kept]));
    echo_roundtrip(&mut live, b"still open").await;
}

#[tokio::test]
async fn populate_replaces_a_differing_entry_with_a_fresh_proxy_without_toxics() {
    let api = Api::new();
    let (first, second) = (greeting_upstream(b"1").await, greeting_upstream(b"2").await);
    let listen = api.create_proxy("p", first).await;
    api.add_toxic("p", json!({"name": "dropped", "type": "latency"})).await;
    let mut live = connect(listen).await;
    assert_eq!(read_exactly(&mut live, 1).await, b"1");

    let body = format!(r#"[{{"name":"p","listen":"{listen}","upstream":"{second}"}}]"#);
    let expected = format!(r#"{{"proxies":[{}]}}"#, proxy_json("p", listen, second, true, &[]));
    api.post("/populate", &body).await.assert_json(StatusCode::CREATED, &expected);
    api.get("/proxies/p/toxics").await.assert_json(StatusCode::OK, "[]");
    assert_closed(&mut live).await;
    assert_eq!(read_exactly(&mut connect(listen).await, 1).await, b"2");
}

#[tokio::test]
async fn populate_ignores_toxics_in_the_input() {
    let api = Api::new();
    let body = r#"[{"name":"p","listen":"127.0.0.1:0","upstream":"127.0.0.1:9",
        "toxics":[{"name":"x","type":"latency","stream":"upstream","attributes":{"latency":5}}]}]"#;
    let reply = api.post("/populate", body).await;
    let listen = listen_of(&populated(&reply)[0]);
    let expected = format!(r#"{{"proxies":[{}]}}"#, proxy_json("p", listen, "127.0.0.1:9", true, &[]));
    reply.assert_json(StatusCode::CREATED, &expected);
    api.get("/proxies/p/toxics").await.assert_json(StatusCode::OK, "[]");
}

#[tokio::test]
async fn populate_honours_enabled_false_and_reads_null_as_true() {
    let api = Api::new();
    let body = r#"[{"name":"off","listen":"127.0.0.1:0","upstream":"127.0.0.1:9","enabled":false},
        {"name":"on","listen":"127.0.0.1:0","upstream":"127.0.0.1:9","enabled":null}]"#;
    let reply = api.post("/populate", body).await;
    let on = listen_of(&populated(&reply)[1]);
    assert_ne!(on.port(), 0);
    let expected = format!(
        r#"{{"proxies":[{},{}]}}"#,
        proxy_json("off", "127.0.0.1:0", "127.0.0.1:9", false, &[]),
        proxy_json("on", on, "127.0.0.1:9", true, &[])
    );
    reply.assert_json(StatusCode::CREATED, &expected);
    connect(on).await;
}
