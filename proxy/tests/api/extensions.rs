//! Extensions beyond Toxiproxy: per-proxy stats, live Prometheus metrics under Toxiproxy's names and labels, toxics
//! that delete themselves after a `ttl`, latency `distribution`, `direction` as an alias of `stream`, and the slicer
//! sizes that would make Toxiproxy recurse forever.

use std::time::Duration;

use chaos_proxy::ServerConfig;
use http::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    Api, DEADLINE, connect, echo_roundtrip, echo_upstream, proxy_json, toxic_json, wait_until,
};

// === stats ===

/// `GET /proxies/{proxy}/stats` as JSON, asserting a 200 JSON answer.
async fn stats(api: &Api, proxy: &str) -> Value {
    let reply = api.get(&format!("/proxies/{proxy}/stats")).await;
    reply.assert_status(StatusCode::OK).assert_header("content-type", crate::common::JSON);
    reply.json()
}

/// The counters at `pointers` (JSON pointers) in `stats`, `None` where one is missing or not a number.
fn counters(stats: &Value, pointers: &[&str]) -> Vec<Option<u64>> {
    pointers.iter().map(|pointer| stats.pointer(pointer).and_then(Value::as_u64)).collect()
}

#[tokio::test]
async fn stats_count_connections_and_bytes_each_way_while_a_connection_is_open() {
    const POINTERS: [&str; 6] = [
        "/connections_open",
        "/connections_total",
        "/upstream/received_bytes",
        "/upstream/sent_bytes",
        "/downstream/received_bytes",
        "/downstream/sent_bytes",
    ];
    let api = Api::new();
    let listen = api.create_proxy("p", echo_upstream().await).await;
    assert_eq!(counters(&stats(&api, "p").await, &POINTERS), [Some(0); 6], "a new proxy counts nothing");
    let mut client = connect(listen).await;
    echo_roundtrip(&mut client, b"hello").await;

    let live = [Some(1), Some(1), Some(5), Some(5), Some(5), Some(5)];
    wait_until("stats show the open connection and its bytes", DEADLINE, async || {
        counters(&stats(&api, "p").await, &POINTERS) == live
    })
    .await;

    drop(client);
    let closed = [Some(0), Some(1), Some(5), Some(5), Some(5), Some(5)];
    wait_until("stats show the connection closed", DEADLINE, async || {
        counters(&stats(&api, "p").await, &POINTERS) == closed
    })
    .await;
    api.get("/proxies/nope/stats").await.assert_error(StatusCode::NOT_FOUND, "proxy not found");
}

// === metrics ===

/// The value of the sample `name{labels}` in Prometheus or OpenMetrics text whose label set is exactly `labels`,
/// in any order.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<String> = labels.iter().map(|(key, value)| format!("{key}=\"{value}\"")).collect();
    wanted.sort();
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (label_text, value) = line.strip_prefix(name)?.strip_prefix('{')?.split_once("} ")?;
        let mut found: Vec<String> = label_text.split(',').map(str::to_owned).collect();
        found.sort();
        if found != wanted {
            return None;
        }
        value.split(' ').next()?.parse().ok()
    })
}

#[tokio::test]
async fn metrics_are_served_only_when_enabled() {
    for method in ["GET", "POST"] {
        let reply = Api::with_config(ServerConfig { metrics: true, ..ServerConfig::default() })
            .call(method, "/metrics", "")
            .await;
        reply.assert_status(StatusCode::OK);
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("text/plain")
                || content_type.starts_with("application/openmetrics-text"),
            "{method} /metrics content type {content_type:?}"
        );
        Api::new()
            .call(method, "/metrics", "")
            .await
            .assert_text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
}

#[tokio::test]
async fn metrics_count_bytes_under_toxiproxy_names_and_labels_while_the_connection_is_open() {
    let api = Api::with_config(ServerConfig { metrics: true, ..ServerConfig::default() });
    let upstream = echo_upstream().await;
    let listen = api.create_proxy("m", upstream).await;
    let mut client = connect(listen).await;
    echo_roundtrip(&mut client, b"hello").await;

    let (listener, upstream) = (listen.to_string(), upstream.to_string());
    wait_until("the four byte counters read 5 while the connection is open", DEADLINE, async || {
        let text = api.get("/metrics").await.body;
        ["received", "sent"].iter().all(|counter| {
            ["upstream", "downstream"].iter().all(|direction| {
                let labels = [
                    ("direction", *direction),
                    ("proxy", "m"),
                    ("listener", &listener),
                    ("upstream", &upstream),
                ];
                sample(&text, &format!("toxiproxy_proxy_{counter}_bytes_total"), &labels) == Some(5.0)
            })
        })
    })
    .await;
    // Still open: the counters above were read live, not when the link finished as Toxiproxy does.
    echo_roundtrip(&mut client, b"!").await;
}

// === ttl ===

#[tokio::test(start_paused = true)]
async fn a_toxic_with_a_ttl_deletes_itself_at_its_deadline_and_only_it() {
    let api = Api::new();
    api.create_proxy("p", "127.0.0.1:9").await;
    let reply = api.post("/proxies/p/toxics", r#"{"name":"brief","type":"latency","ttl":60000}"#).await;
    reply.assert_status(StatusCode::OK);
    api.add_toxic("p", json!({"name": "lasting", "type": "latency", "stream": "upstream"})).await;

    tokio::time::sleep(Duration::from_secs(59)).await;
    api.get("/proxies/p/toxics/brief").await.assert_status(StatusCode::OK);
    wait_until("the ttl toxic is gone", Duration::from_secs(5), async || {
        api.get("/proxies/p/toxics/brief").await.status == StatusCode::NOT_FOUND
    })
    .await;
    api.get("/proxies/p/toxics/brief").await.assert_error(StatusCode::NOT_FOUND, "toxic not found");

    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(api.toxic_names("p").await, ["lasting"]);
}

// === proxy lease ===

#[tokio::test(start_paused = true)]
async fn a_leased_proxy_deletes_itself_when_not_renewed_closing_listener_and_connections() {
    let api = Api::new();
    let upstream = echo_upstream().await;
    let body = format!(
        r#"{{"name":"run","listen":"127.0.0.1:0","upstream":"{upstream}","lease_ms":6000,"owner":"chaos-run test"}}"#
    );
    let reply = api.post("/proxies", &body).await;
    reply.assert_status(StatusCode::CREATED);
    let view = reply.json();
    // The extensions show in the view of a leased proxy only, after Toxiproxy's fields.
    assert_eq!(view["lease_ms"], 6000);
    assert_eq!(view["owner"], "chaos-run test");
    let listen: std::net::SocketAddr = view["listen"].as_str().unwrap().parse().unwrap();
    let mut client = connect(listen).await;
    echo_roundtrip(&mut client, b"live").await;

    tokio::time::sleep(Duration::from_millis(5900)).await;
    api.get("/proxies/run").await.assert_status(StatusCode::OK);
    wait_until("the lapsed proxy is gone", Duration::from_secs(2), async || {
        api.get("/proxies/run").await.status == StatusCode::NOT_FOUND
    })
    .await;
    // Its listener is closed and its connection ended.
    assert!(tokio::net::TcpStream::connect(listen).await.is_err(), "the listener outlived the lease");
    let mut rest = Vec::new();
    let read =
        tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read_to_end(&mut client, &mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the connection outlived the lease: {read:?}");
}

#[tokio::test(start_paused = true)]
async fn renewing_a_lease_restarts_it_from_now_and_other_proxies_never_lapse() {
    let api = Api::new();
    api.create_proxy("plain", "127.0.0.1:9").await;
    let body = r#"{"name":"run","listen":"127.0.0.1:0","upstream":"127.0.0.1:9","lease_ms":3000}"#;
    api.post("/proxies", body).await.assert_status(StatusCode::CREATED);
    // Renewed every second for ten seconds (three leases' worth): it stays.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let reply = api.patch("/proxies/run", r#"{"lease_ms":3000}"#).await;
        reply.assert_status(StatusCode::OK);
        assert_eq!(reply.json()["lease_ms"], 3000);
    }
    tokio::time::sleep(Duration::from_millis(2900)).await;
    api.get("/proxies/run").await.assert_status(StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_until("the lapsed proxy is gone", Duration::from_secs(2), async || {
        api.get("/proxies/run").await.status == StatusCode::NOT_FOUND
    })
    .await;
    // A proxy without a lease shows no lease field and lives on; a zero lease is refused.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let plain = api.get("/proxies/plain").await;
    plain.assert_status(StatusCode::OK);
    assert!(plain.json().get("lease_ms").is_none() && plain.json().get("owner").is_none(), "{}", plain.body);
    api.patch("/proxies/plain", r#"{"lease_ms":0}"#).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad request body: lease_ms: expected a positive number of milliseconds, found 0",
    );
}

#[tokio::test(start_paused = true)]
async fn a_deleted_and_recreated_proxy_is_not_deleted_by_the_old_lease() {
    let api = Api::new();
    let leased = r#"{"name":"run","listen":"127.0.0.1:0","upstream":"127.0.0.1:9","lease_ms":2000}"#;
    api.post("/proxies", leased).await.assert_status(StatusCode::CREATED);
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.delete("/proxies/run").await.assert_no_content();
    api.create_proxy("run", "127.0.0.1:9").await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    api.get("/proxies/run").await.assert_status(StatusCode::OK);
}

// === latency distribution ===

#[tokio::test]
async fn latency_accepts_a_distribution_shown_only_when_not_the_uniform_default() {
    let rows = [
        ("uniform", r#"{"latency":100,"jitter":10}"#),
        ("normal", r#"{"latency":100,"jitter":10,"distribution":"normal"}"#),
        ("pareto", r#"{"latency":100,"jitter":10,"distribution":"pareto"}"#),
        ("lognormal", r#"{"latency":100,"jitter":10,"distribution":"lognormal"}"#),
    ];
    for (distribution, rendered) in rows {
        let api = Api::new();
        api.create_proxy("p", "127.0.0.1:9").await;
        let body = format!(
            r#"{{"type":"latency","attributes":{{"latency":100,"jitter":10,"distribution":"{distribution}"}}}}"#
        );
        let expected = toxic_json(rendered, "latency_downstream", "latency", "downstream", "1");
        api.post("/proxies/p/toxics", &body).await.assert_json(StatusCode::OK, &expected);
        // An update that does not name the distribution keeps it.
        let reply =
            api.patch("/proxies/p/toxics/latency_downstream", r#"{"attributes":{"latency":100}}"#).await;
        reply.assert_json(StatusCode::OK, &expected);
    }
}

#[tokio::test]
async fn latency_rejects_an_unknown_distribution() {
    for wrong in [r#""bogus""#, "5", r#""""#] {
        let api = Api::new();
        api.create_proxy("p", "127.0.0.1:9").await;
        let body = format!(r#"{{"type":"latency","attributes":{{"latency":100,"distribution":{wrong}}}}}"#);
        api.post("/proxies/p/toxics", &body)
            .await
            .assert_error_starting_with(StatusCode::BAD_REQUEST, "bad request body: ");
        api.get("/proxies/p/toxics").await.assert_json(StatusCode::OK, "[]");
    }
}

// === direction alias ===

#[tokio::test]
async fn direction_is_accepted_as_an_alias_of_stream_and_rendered_as_stream() {
    let api = Api::new();
    let listen = api.create_proxy("p", "127.0.0.1:9").await;
    let reply = api.post("/proxies/p/toxics", r#"{"type":"timeout","direction":"upstream"}"#).await;
    let expected = toxic_json(r#"{"timeout":0}"#, "timeout_upstream", "timeout", "upstream", "1");
    reply.assert_json(StatusCode::OK, &expected);
    let proxy = proxy_json("p", listen, "127.0.0.1:9", true, &[expected]);
    api.get("/proxies/p").await.assert_json(StatusCode::OK, &proxy);
}

// === slicer sizes ===

#[tokio::test]
async fn a_slicer_with_zero_average_size_and_variation_is_rejected_on_create_and_update() {
    let api = Api::new();
    api.create_proxy("p", "127.0.0.1:9").await;
    let body = r#"{"type":"slicer","attributes":{"average_size":0,"size_variation":0,"delay":10}}"#;
    api.post("/proxies/p/toxics", body)
        .await
        .assert_error_starting_with(StatusCode::BAD_REQUEST, "bad request body: ");
    api.get("/proxies/p/toxics").await.assert_json(StatusCode::OK, "[]");

    let sane = r#"{"type":"slicer","attributes":{"average_size":64,"size_variation":0,"delay":10}}"#;
    api.post("/proxies/p/toxics", sane).await.assert_status(StatusCode::OK);
    api.patch("/proxies/p/toxics/slicer_downstream", r#"{"attributes":{"average_size":0}}"#)
        .await
        .assert_error_starting_with(StatusCode::BAD_REQUEST, "bad request body: ");
    let unchanged = toxic_json(
        r#"{"average_size":64,"size_variation":0,"delay":10}"#,
        "slicer_downstream",
        "slicer",
        "downstream",
        "1",
    );
    api.get("/proxies/p/toxics/slicer_downstream").await.assert_json(StatusCode::OK, &unchanged);
}
