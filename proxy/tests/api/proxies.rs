//! Proxies (§4, §6): the proxy shape in Toxiproxy's key order, create with bound addresses, partial updates and
//! what they restart, disable and enable, delete, and reset.

use std::net::{Ipv4Addr, SocketAddr};

use http::StatusCode;
use serde_json::json;

use crate::common::{
    Api, assert_closed, assert_refused, connect, echo_roundtrip, echo_upstream, greeting_upstream, listen_of,
    proxy_json, read_exactly, toxic_json,
};

/// Adds a pass-through `latency` toxic (latency 0) to `proxy` and returns how Toxiproxy renders it, so tests can
/// check that toxics survive an operation without timing anything.
async fn add_inert_toxic(api: &Api, proxy: &str, stream: &str) -> String {
    let name = format!("inert_{stream}");
    api.add_toxic(proxy, json!({"name": name, "type": "latency", "stream": stream})).await;
    toxic_json(r#"{"latency":0,"jitter":0}"#, &name, "latency", stream, "1")
}

#[tokio::test]
async fn create_answers_201_with_the_bound_address_in_toxiproxy_key_order() {
    let api = Api::new();
    let upstream = echo_upstream().await;
    let body = format!(r#"{{"name":"redis","listen":"127.0.0.1:0","upstream":"{upstream}"}}"#);
    let reply = api.post("/proxies", &body).await;
    let listen = listen_of(&reply.json());
    assert_eq!(listen.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(listen.port(), 0, "port 0 must be reported as the port actually bound");

    let expected = proxy_json("redis", listen, upstream, true, &[]);
    reply.assert_json(StatusCode::CREATED, &expected);
    api.get("/proxies/redis").await.assert_json(StatusCode::OK, &expected);
    api.get("/proxies").await.assert_json(StatusCode::OK, &format!(r#"{{"redis":{expected}}}"#));
    api.get("/proxies/redis/toxics").await.assert_json(StatusCode::OK, "[]");
    echo_roundtrip(&mut connect(listen).await, b"through the proxy").await;
}

#[tokio::test]
async fn localhost_port_0_is_reported_as_the_bound_ipv4_address() {
    let api = Api::new();
    let reply = api.post("/proxies", r#"{"name":"p","listen":"localhost:0","upstream":"127.0.0.1:9"}"#).await;
    reply.assert_status(StatusCode::CREATED);
    let listen = listen_of(&reply.json());
    assert_eq!(
        listen.ip(),
        Ipv4Addr::LOCALHOST,
        "clients split `listen` on ':' so it must stay IPv4 ip:port"
    );
    assert_ne!(listen.port(), 0);
}

#[tokio::test]
async fn an_empty_null_or_absent_listen_binds_all_interfaces_on_a_random_port() {
    let api = Api::new();
    for (i, listen) in [r#","listen":"""#, r#","listen":null"#, ""].into_iter().enumerate() {
        let body = format!(r#"{{"name":"p{i}","upstream":"127.0.0.1:9"{listen}}}"#);
        let reply = api.post("/proxies", &body).await;
        reply.assert_status(StatusCode::CREATED);
        let reported = reply.json()["listen"].as_str().unwrap().to_owned();
        let port: u16 = reported
            .strip_prefix("[::]:")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("{body}: listen {reported:?} is not \"[::]:PORT\""));
        assert_ne!(port, 0, "{body}: the bound port must be reported");
        connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await;
    }
}

#[tokio::test]
async fn a_proxy_created_disabled_does_not_listen_until_enabled() {
    let api = Api::new();
    let body = r#"{"name":"d","listen":"127.0.0.1:0","upstream":"127.0.0.1:9","enabled":false}"#;
    api.post("/proxies", body)
        .await
        .assert_json(StatusCode::CREATED, &proxy_json("d", "127.0.0.1:0", "127.0.0.1:9", false, &[]));

    let reply = api.patch("/proxies/d", r#"{"enabled":true}"#).await;
    let listen = listen_of(&reply.json());
    assert_ne!(listen.port(), 0, "enabling binds and reports the bound port");
    reply.assert_json(StatusCode::OK, &proxy_json("d", listen, "127.0.0.1:9", true, &[]));
    connect(listen).await;
}

#[tokio::test]
async fn null_enabled_on_create_means_enabled() {
    let api = Api::new();
    let reply = api
        .post("/proxies", r#"{"name":"p","listen":"127.0.0.1:0","upstream":"127.0.0.1:9","enabled":null}"#)
        .await;
    let listen = listen_of(&reply.json());
    reply.assert_json(StatusCode::CREATED, &proxy_json("p", listen, "127.0.0.1:9", true, &[]));
    connect(listen).await;
}

#[tokio::test]
async fn create_ignores_unknown_fields_including_toxics() {
    let api = Api::new();
    let body = r#"{"name":"p","listen":"127.0.0.1:0","upstream":"127.0.0.1:9",
        "toxics":[{"name":"x","type":"latency","attributes":{"latency":5}}],"extra":{"nested":[1,2]}}"#;
    let reply = api.post("/proxies", body).await;
    let listen = listen_of(&reply.json());
    reply.assert_json(StatusCode::CREATED, &proxy_json("p", listen, "127.0.0.1:9", true, &[]));
}

#[tokio::test]
async fn the_index_is_an_object_keyed_by_name_in_name_order_and_empty_when_none() {
    let api = Api::new();
    api.get("/proxies").await.assert_json(StatusCode::OK, "{}");
    // Created out of order: Go marshals a map with its keys sorted.
    let b = api.create_proxy("b", "127.0.0.1:9").await;
    let a = api.create_proxy("a", "127.0.0.1:9").await;
    let expected = format!(
        r#"{{"a":{},"b":{}}}"#,
        proxy_json("a", a, "127.0.0.1:9", true, &[]),
        proxy_json("b", b, "127.0.0.1:9", true, &[])
    );
    api.get("/proxies").await.assert_json(StatusCode::OK, &expected);
}

#[tokio::test]
async fn disabling_with_post_or_patch_closes_the_listener_and_live_connections_and_enabling_relistens() {
    for method in ["POST", "PATCH"] {
        let api = Api::new();
        let upstream = echo_upstream().await;
        let listen = api.create_proxy("p", upstream).await;
        let toxic = add_inert_toxic(&api, "p", "downstream").await;
        let mut live = connect(listen).await;
        echo_roundtrip(&mut live, b"ping").await;

        // A partial update: only `enabled` is sent, listen and upstream are kept, and so are the toxics.
        let reply = api.call(method, "/proxies/p", r#"{"enabled":false}"#).await;
        reply.assert_json(
            StatusCode::OK,
            &proxy_json("p", listen, upstream, false, std::slice::from_ref(&toxic)),
        );
        assert_refused(listen).await;
        assert_closed(&mut live).await;

        let reply = api.call(method, "/proxies/p", r#"{"enabled":true}"#).await;
        reply.assert_json(StatusCode::OK, &proxy_json("p", listen, upstream, true, &[toxic]));
        echo_roundtrip(&mut connect(listen).await, b"pong").await;
    }
}

#[tokio::test]
async fn an_update_with_nulls_or_the_current_values_restarts_nothing() {
    let api = Api::new();
    let upstream = echo_upstream().await;
    let listen = api.create_proxy("p", upstream).await;
    let toxic = add_inert_toxic(&api, "p", "upstream").await;
    let mut live = connect(listen).await;
    let expected = proxy_json("p", listen, upstream, true, &[toxic]);

    let bodies = [
        // toxiproxy-ruby sends `null` for what it does not set: null means absent.
        format!(r#"{{"name":"p","listen":null,"upstream":"{upstream}","enabled":null}}"#),
        format!(r#"{{"name":"p","listen":"{listen}","upstream":"{upstream}","enabled":true}}"#),
        "{}".to_owned(),
    ];
    for body in bodies {
        api.patch("/proxies/p", &body).await.assert_json(StatusCode::OK, &expected);
        echo_roundtrip(&mut live, body.as_bytes()).await;
    }
}

#[tokio::test]
async fn changing_the_upstream_restarts_the_proxy_and_keeps_its_toxics() {
    let api = Api::new();
    let (first, second) = (greeting_upstream(b"1").await, greeting_upstream(b"2").await);
    let listen = api.create_proxy("p", first).await;
    let toxic = add_inert_toxic(&api, "p", "downstream").await;
    let mut live = connect(listen).await;
    assert_eq!(read_exactly(&mut live, 1).await, b"1");

    let reply = api.patch("/proxies/p", &format!(r#"{{"upstream":"{second}"}}"#)).await;
    reply.assert_json(StatusCode::OK, &proxy_json("p", listen, second, true, &[toxic]));
    assert_closed(&mut live).await;
    assert_eq!(read_exactly(&mut connect(listen).await, 1).await, b"2");
}

#[tokio::test]
async fn changing_listen_restarts_the_proxy_on_the_new_address_and_keeps_its_toxics() {
    let api = Api::new();
    let upstream = echo_upstream().await;
    let old = api.create_proxy("p", upstream).await;
    let toxic = add_inert_toxic(&api, "p", "upstream").await;
    let mut live = connect(old).await;
    echo_roundtrip(&mut live, b"ping").await;

    let reply = api.patch("/proxies/p", r#"{"listen":"127.0.0.1:0"}"#).await;
    let new = listen_of(&reply.json());
    assert_ne!(new, old, "port 0 is a change of listen and binds a fresh port");
    reply.assert_json(StatusCode::OK, &proxy_json("p", new, upstream, true, &[toxic]));
    assert_closed(&mut live).await;
    assert_refused(old).await;
    echo_roundtrip(&mut connect(new).await, b"pong").await;
}

#[tokio::test]
async fn an_update_ignores_the_name_and_unknown_fields() {
    let api = Api::new();
    let listen = api.create_proxy("p", "127.0.0.1:9").await;
    let body = r#"{"name":"q","toxics":[{"name":"x","type":"latency"}],"extra":1}"#;
    api.patch("/proxies/p", body)
        .await
        .assert_json(StatusCode::OK, &proxy_json("p", listen, "127.0.0.1:9", true, &[]));
    api.get("/proxies/q").await.assert_error(StatusCode::NOT_FOUND, "proxy not found");
}

#[tokio::test]
async fn delete_closes_connections_and_forgets_the_proxy_and_its_toxics() {
    let api = Api::new();
    let upstream = echo_upstream().await;
    let listen = api.create_proxy("p", upstream).await;
    add_inert_toxic(&api, "p", "downstream").await;
    let mut live = connect(listen).await;
    echo_roundtrip(&mut live, b"ping").await;

    api.delete("/proxies/p").await.assert_no_content();
    api.get("/proxies/p").await.assert_error(StatusCode::NOT_FOUND, "proxy not found");
    api.get("/proxies/p/toxics").await.assert_error(StatusCode::NOT_FOUND, "proxy not found");
    api.get("/proxies").await.assert_json(StatusCode::OK, "{}");
    assert_closed(&mut live).await;
    assert_refused(listen).await;

    let listen = api.create_proxy("p", upstream).await;
    api.get("/proxies/p").await.assert_json(StatusCode::OK, &proxy_json("p", listen, upstream, true, &[]));
}

#[tokio::test]
async fn reset_reenables_every_proxy_and_strips_all_toxics_deleting_none() {
    let api = Api::new();
    let upstream = echo_upstream().await;
    let a = api.create_proxy("a", upstream).await;
    add_inert_toxic(&api, "a", "upstream").await;
    add_inert_toxic(&api, "a", "downstream").await;
    api.patch("/proxies/a", r#"{"enabled":false}"#).await.assert_status(StatusCode::OK);
    let b = api.create_proxy("b", upstream).await;
    add_inert_toxic(&api, "b", "downstream").await;
    let mut live = connect(b).await;
    echo_roundtrip(&mut live, b"ping").await;

    api.post("/reset", "").await.assert_no_content();
    let expected = format!(
        r#"{{"a":{},"b":{}}}"#,
        proxy_json("a", a, upstream, true, &[]),
        proxy_json("b", b, upstream, true, &[])
    );
    api.get("/proxies").await.assert_json(StatusCode::OK, &expected);
    echo_roundtrip(&mut connect(a).await, b"a listens again on its address").await;
    // Removing toxics never closes a connection (§10); b was running, so reset leaves it open.
    echo_roundtrip(&mut live, b"still open").await;
}
