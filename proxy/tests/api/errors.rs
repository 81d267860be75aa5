//! The error catalogue of §5, data-driven: exact texts and statuses, the order in which checks run (§6), and that a
//! refused request changes nothing. Bind failures (500 with the OS text) on create, update, enable, reset, populate.

use http::StatusCode;

use crate::common::{Api, assert_populate_failure, check_rows, proxy_json};

/// What the `error` field of the answer must be.
#[derive(Debug)]
enum Expect {
    Exactly(&'static str),
    /// Decoder texts are Go's in Toxiproxy; only the prefix is part of the contract.
    StartsWith(&'static str),
}
use Expect::{Exactly, StartsWith};

const BAD_BODY: Expect = StartsWith("bad request body: ");
const PROXY_NOT_FOUND: Expect = Exactly("proxy not found");
const TOXIC_NOT_FOUND: Expect = Exactly("toxic not found");
const INVALID_STREAM: Expect = Exactly("stream was invalid, can be either upstream or downstream");
const INVALID_TYPE: Expect = Exactly("invalid toxic type");
const TOXIC_EXISTS: Expect = Exactly("toxic already exists");
const MISSING_NAME: Expect = Exactly("missing required field: name");
const MISSING_UPSTREAM: Expect = Exactly("missing required field: upstream");
const PROXY_EXISTS: Expect = Exactly("proxy already exists");

/// `(method, path, body, status, error)`, each run against a fresh [`Api::with_fixture`]: proxy `p` with the
/// downstream toxic `t` and the upstream toxic `u`.
const CATALOGUE: &[(&str, &str, &str, u16, Expect)] = &[
    // Proxy create: decode, then name, then upstream, then the duplicate check.
    ("POST", "/proxies", r#"{"name":"#, 400, BAD_BODY),
    ("POST", "/proxies", "", 400, BAD_BODY),
    ("POST", "/proxies", "[]", 400, BAD_BODY),
    ("POST", "/proxies", r#"{"name":5,"upstream":"x"}"#, 400, BAD_BODY),
    ("POST", "/proxies", r#"{"name":"x","upstream":"y","enabled":"yes"}"#, 400, BAD_BODY),
    ("POST", "/proxies", r#"{"name":"x","upstream":"y","listen":80}"#, 400, BAD_BODY),
    ("POST", "/proxies", "{}", 400, MISSING_NAME),
    ("POST", "/proxies", r#"{"name":"","upstream":"x"}"#, 400, MISSING_NAME),
    ("POST", "/proxies", r#"{"upstream":"x"}"#, 400, MISSING_NAME),
    ("POST", "/proxies", r#"{"name":"x"}"#, 400, MISSING_UPSTREAM),
    ("POST", "/proxies", r#"{"name":"x","upstream":""}"#, 400, MISSING_UPSTREAM),
    ("POST", "/proxies", r#"{"name":"p","upstream":"x"}"#, 409, PROXY_EXISTS),
    // Unknown proxy: the lookup comes before decoding the body.
    ("GET", "/proxies/nope", "", 404, PROXY_NOT_FOUND),
    ("POST", "/proxies/nope", "{}", 404, PROXY_NOT_FOUND),
    ("PATCH", "/proxies/nope", "{}", 404, PROXY_NOT_FOUND),
    ("PATCH", "/proxies/nope", "not json", 404, PROXY_NOT_FOUND),
    ("DELETE", "/proxies/nope", "", 404, PROXY_NOT_FOUND),
    ("GET", "/proxies/nope/toxics", "", 404, PROXY_NOT_FOUND),
    ("POST", "/proxies/nope/toxics", r#"{"type":"latency"}"#, 404, PROXY_NOT_FOUND),
    ("POST", "/proxies/nope/toxics", "not json", 404, PROXY_NOT_FOUND),
    ("GET", "/proxies/nope/toxics/t", "", 404, PROXY_NOT_FOUND),
    ("PATCH", "/proxies/nope/toxics/t", "{}", 404, PROXY_NOT_FOUND),
    ("POST", "/proxies/nope/toxics/t", "{}", 404, PROXY_NOT_FOUND),
    ("DELETE", "/proxies/nope/toxics/t", "", 404, PROXY_NOT_FOUND),
    // Proxy update: a body that does not decode.
    ("PATCH", "/proxies/p", r#"{"enabled":"#, 400, BAD_BODY),
    ("PATCH", "/proxies/p", "", 400, BAD_BODY),
    ("POST", "/proxies/p", r#"{"listen":5}"#, 400, BAD_BODY),
    ("PATCH", "/proxies/p", r#"{"enabled":"false"}"#, 400, BAD_BODY),
    // Unknown toxic: the lookup comes before decoding the body.
    ("GET", "/proxies/p/toxics/nope", "", 404, TOXIC_NOT_FOUND),
    ("PATCH", "/proxies/p/toxics/nope", "{}", 404, TOXIC_NOT_FOUND),
    ("POST", "/proxies/p/toxics/nope", "not json", 404, TOXIC_NOT_FOUND),
    ("DELETE", "/proxies/p/toxics/nope", "", 404, TOXIC_NOT_FOUND),
    // Toxic create, in the order of §6: decode, stream, default name, type, duplicate (either direction), attributes.
    ("POST", "/proxies/p/toxics", r#"{"type":"#, 400, BAD_BODY),
    ("POST", "/proxies/p/toxics", "", 400, BAD_BODY),
    ("POST", "/proxies/p/toxics", r#"{"type":"latency","toxicity":"high"}"#, 400, BAD_BODY),
    ("POST", "/proxies/p/toxics", r#"{"type":"latency","stream":"sideways"}"#, 400, INVALID_STREAM),
    ("POST", "/proxies/p/toxics", r#"{"type":"latency","stream":""}"#, 400, INVALID_STREAM),
    ("POST", "/proxies/p/toxics", r#"{"type":"nope","stream":"sideways","name":"t"}"#, 400, INVALID_STREAM),
    ("POST", "/proxies/p/toxics", r#"{"type":"nope"}"#, 400, INVALID_TYPE),
    ("POST", "/proxies/p/toxics", "{}", 400, INVALID_TYPE),
    ("POST", "/proxies/p/toxics", r#"{"type":"Latency"}"#, 400, INVALID_TYPE),
    ("POST", "/proxies/p/toxics", r#"{"type":"nope","name":"t"}"#, 400, INVALID_TYPE),
    ("POST", "/proxies/p/toxics", r#"{"type":"timeout","name":"t"}"#, 409, TOXIC_EXISTS),
    ("POST", "/proxies/p/toxics", r#"{"type":"latency","name":"t","stream":"upstream"}"#, 409, TOXIC_EXISTS),
    ("POST", "/proxies/p/toxics", r#"{"type":"latency","name":"u"}"#, 409, TOXIC_EXISTS),
    (
        "POST",
        "/proxies/p/toxics",
        r#"{"type":"latency","name":"t","attributes":{"latency":"abc"}}"#,
        409,
        TOXIC_EXISTS,
    ),
    ("POST", "/proxies/p/toxics", r#"{"type":"latency","attributes":{"latency":"abc"}}"#, 400, BAD_BODY),
    ("POST", "/proxies/p/toxics", r#"{"type":"latency","attributes":{"latency":1.5}}"#, 400, BAD_BODY),
    ("POST", "/proxies/p/toxics", r#"{"type":"latency","attributes":{"jitter":1.0}}"#, 400, BAD_BODY),
    ("POST", "/proxies/p/toxics", r#"{"type":"bandwidth","attributes":{"rate":"fast"}}"#, 400, BAD_BODY),
    (
        "POST",
        "/proxies/p/toxics",
        r#"{"type":"slicer","attributes":{"average_size":0,"size_variation":0}}"#,
        400,
        BAD_BODY,
    ),
    // Toxic update: only `attributes` and `toxicity` are read, and they must decode.
    ("PATCH", "/proxies/p/toxics/t", r#"{"attributes":{"latency":"abc"}}"#, 400, BAD_BODY),
    ("POST", "/proxies/p/toxics/t", r#"{"attributes":{"latency":1.5}}"#, 400, BAD_BODY),
    ("PATCH", "/proxies/p/toxics/t", r#"{"toxicity":"x"}"#, 400, BAD_BODY),
    ("PATCH", "/proxies/p/toxics/t", "", 400, BAD_BODY),
];

#[tokio::test]
async fn every_error_of_the_catalogue_has_its_exact_text_status_and_headers_and_changes_nothing() {
    check_rows(CATALOGUE, |(method, path, body, status, expect)| async move {
        let api = Api::with_fixture().await;
        let before = api.get("/proxies").await.body;
        let reply = api.call(method, path, body).await;
        let status = StatusCode::from_u16(*status).unwrap();
        match expect {
            Exactly(message) => reply.assert_error(status, message),
            StartsWith(prefix) => {
                reply.assert_error_starting_with(status, prefix);
            }
        }
        assert_eq!(
            api.get("/proxies").await.body,
            before,
            "{method} {path} {body:?} failed but changed state"
        );
    })
    .await;
}

#[tokio::test]
async fn a_bind_failure_on_create_is_a_500_with_the_os_text_and_creates_nothing() {
    let api = Api::new();
    let taken = crate::common::occupied_port();
    let body =
        format!(r#"{{"name":"p","listen":"{}","upstream":"127.0.0.1:9"}}"#, taken.local_addr().unwrap());
    api.post("/proxies", &body).await.assert_bind_failure();
    api.get("/proxies").await.assert_json(StatusCode::OK, "{}");
}

#[tokio::test]
async fn a_bind_failure_on_a_listen_update_is_a_500_with_the_os_text() {
    let api = Api::new();
    api.create_proxy("p", "127.0.0.1:9").await;
    let taken = crate::common::occupied_port();
    let body = format!(r#"{{"listen":"{}"}}"#, taken.local_addr().unwrap());
    api.patch("/proxies/p", &body).await.assert_bind_failure();
}

#[tokio::test]
async fn a_bind_failure_when_enabling_is_a_500_with_the_os_text() {
    let api = Api::new();
    let listen = api.create_proxy("p", "127.0.0.1:9").await;
    api.patch("/proxies/p", r#"{"enabled":false}"#).await.assert_status(StatusCode::OK);
    let _taken = std::net::TcpListener::bind(listen).expect("take over the disabled proxy's port");
    api.patch("/proxies/p", r#"{"enabled":true}"#).await.assert_bind_failure();
}

#[tokio::test]
async fn a_bind_failure_on_reset_is_a_500_with_the_os_text() {
    let api = Api::new();
    let listen = api.create_proxy("p", "127.0.0.1:9").await;
    api.patch("/proxies/p", r#"{"enabled":false}"#).await.assert_status(StatusCode::OK);
    let _taken = std::net::TcpListener::bind(listen).expect("take over the disabled proxy's port");
    api.post("/reset", "").await.assert_bind_failure();
    let disabled = proxy_json("p", listen, "127.0.0.1:9", false, &[]);
    api.get("/proxies/p").await.assert_json(StatusCode::OK, &disabled);
}

#[tokio::test]
async fn a_bind_failure_on_populate_is_a_500_in_the_populate_shape() {
    let api = Api::new();
    let taken = crate::common::occupied_port();
    let body =
        format!(r#"[{{"name":"p","listen":"{}","upstream":"127.0.0.1:9"}}]"#, taken.local_addr().unwrap());
    let reply = api.post("/populate", &body).await;
    api.get("/proxies").await.assert_json(StatusCode::OK, "{}");
    let message = assert_populate_failure(&reply, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(message.to_lowercase().contains("address already in use"), "populate bind failure: {message:?}");
}
