//! Routes and methods (§3), the headers and guards every answer goes through (§2), and `/version` (§4).

use std::collections::HashSet;

use axum::body::Body;
use http::{Request, StatusCode};

use crate::common::{Api, JSON, check_rows};

/// One request and the status Toxiproxy answers it with, run against [`Api::with_fixture`].
#[derive(Debug)]
struct Row {
    method: &'static str,
    path: &'static str,
    body: &'static str,
    status: StatusCode,
}

const fn row(method: &'static str, path: &'static str, body: &'static str, status: StatusCode) -> Row {
    Row { method, path, body, status }
}

/// Every route of `api.go` `Routes()` with its success status: 201 for proxy create and populate, 200 (not 201)
/// for toxic create, 204 for deletes and reset.
const ROUTES: &[Row] = &[
    row("POST", "/reset", "", StatusCode::NO_CONTENT),
    row("GET", "/proxies", "", StatusCode::OK),
    row(
        "POST",
        "/proxies",
        r#"{"name":"q","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}"#,
        StatusCode::CREATED,
    ),
    row(
        "POST",
        "/populate",
        r#"[{"name":"q","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}]"#,
        StatusCode::CREATED,
    ),
    row("GET", "/proxies/p", "", StatusCode::OK),
    row("POST", "/proxies/p", "{}", StatusCode::OK),
    row("PATCH", "/proxies/p", "{}", StatusCode::OK),
    row("DELETE", "/proxies/p", "", StatusCode::NO_CONTENT),
    row("GET", "/proxies/p/toxics", "", StatusCode::OK),
    row("POST", "/proxies/p/toxics", r#"{"type":"latency"}"#, StatusCode::OK),
    row("GET", "/proxies/p/toxics/t", "", StatusCode::OK),
    row("POST", "/proxies/p/toxics/t", "{}", StatusCode::OK),
    row("PATCH", "/proxies/p/toxics/t", "{}", StatusCode::OK),
    row("DELETE", "/proxies/p/toxics/t", "", StatusCode::NO_CONTENT),
    row("GET", "/version", "", StatusCode::OK),
];

/// Known paths asked with a method they do not serve.
const WRONG_METHODS: &[(&str, &str)] = &[
    ("GET", "/reset"),
    ("PUT", "/reset"),
    ("PUT", "/proxies"),
    ("PATCH", "/proxies"),
    ("DELETE", "/proxies"),
    ("GET", "/populate"),
    ("DELETE", "/populate"),
    ("PUT", "/proxies/p"),
    ("PUT", "/proxies/p/toxics"),
    ("PATCH", "/proxies/p/toxics"),
    ("DELETE", "/proxies/p/toxics"),
    ("PUT", "/proxies/p/toxics/t"),
    ("POST", "/version"),
    ("DELETE", "/version"),
];

/// Paths no route matches, trailing slashes included, and `/metrics` while metrics are off.
const UNKNOWN_PATHS: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/nope"),
    ("PUT", "/nope"),
    ("GET", "/Proxies"),
    ("GET", "/proxies/"),
    ("GET", "/proxies/p/"),
    ("GET", "/proxies/p/nope"),
    ("GET", "/proxies/p/toxics/"),
    ("GET", "/proxies/p/toxics/t/nope"),
    ("GET", "/version/"),
    ("GET", "/metrics"),
    ("POST", "/metrics"),
];

#[tokio::test]
async fn every_route_answers_with_its_documented_success_status() {
    check_rows(ROUTES, |Row { method, path, body, status }| async move {
        let api = Api::with_fixture().await;
        let reply = api.call(method, path, body).await;
        reply.assert_status(*status);
        match *status {
            StatusCode::NO_CONTENT => reply.assert_no_content(),
            _ if *path == "/version" => {
                reply.assert_header("content-type", "application/json;charset=utf-8");
            }
            _ => {
                reply.assert_header("content-type", JSON);
                reply.json();
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_known_path_asked_with_a_wrong_method_is_405_with_an_empty_body() {
    check_rows(WRONG_METHODS, |(method, path)| async move {
        let reply = Api::with_fixture().await.call(method, path, "{}").await;
        reply.assert_status(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.body, "", "{}: a 405 has an empty body", reply.what);
    })
    .await;
}

#[tokio::test]
async fn an_unknown_path_is_gos_text_404() {
    check_rows(UNKNOWN_PATHS, |(method, path)| async move {
        let reply = Api::with_fixture().await.call(method, path, "").await;
        reply.assert_text(StatusCode::NOT_FOUND, "404 page not found\n");
    })
    .await;
}

/// Go's `http.Error` adds `X-Content-Type-Options: nosniff` to every answer it writes: the text 404, the browser
/// 403 and every API error.
#[tokio::test]
async fn every_answer_written_by_gos_http_error_carries_nosniff() {
    let api = Api::with_fixture().await;
    let browser =
        Request::builder().uri("/proxies").header("user-agent", "Mozilla/5.0").body(Body::empty()).unwrap();
    let replies = [
        api.get("/nope").await,
        api.send(browser).await,
        api.get("/proxies/nope").await,
        api.post("/proxies", "{").await,
        api.post("/proxies/p/toxics", r#"{"type":"nope"}"#).await,
    ];
    let missing: Vec<String> = replies
        .iter()
        .filter(|reply| reply.header("x-content-type-options") != Some("nosniff"))
        .map(|reply| format!("{} ({})", reply.what, reply.status))
        .collect();
    assert!(missing.is_empty(), "answers without X-Content-Type-Options: nosniff: {missing:?}");
}

#[tokio::test]
async fn version_is_json_with_a_space_after_the_colon_and_at_least_2_6_0() {
    let reply = Api::new().get("/version").await;
    reply.assert_status(StatusCode::OK).assert_header("content-type", "application/json;charset=utf-8");
    let version = reply
        .body
        .strip_prefix(r#"{"version": ""#)
        .and_then(|rest| rest.strip_suffix("\"}\n"))
        .unwrap_or_else(|| panic!("/version body {:?} is not {{\"version\": \"X\"}}\\n", reply.body));
    let numbers: Vec<u64> = version
        .split(['.', '-', '+'])
        .take(3)
        .map(|part| part.parse().unwrap_or_else(|_| panic!("version {version:?} is not X.Y.Z")))
        .collect();
    assert!(
        numbers.len() == 3 && numbers >= vec![2, 6, 0],
        "version {version} must be >= 2.6.0 so clients PATCH"
    );
}

#[tokio::test]
async fn every_response_carries_its_own_request_id() {
    let api = Api::with_fixture().await;
    let requests = [
        ("GET", "/proxies", "", "Go"),
        ("POST", "/proxies", r#"{"name":"q","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}"#, "Go"),
        ("POST", "/proxies", r#"{"name":"q","upstream":"127.0.0.1:9"}"#, "Go"),
        ("DELETE", "/proxies/p/toxics/u", "", "Go"),
        ("POST", "/proxies", "{", "Go"),
        ("GET", "/proxies/nope", "", "Go"),
        ("GET", "/nope", "", "Go"),
        ("PUT", "/proxies", "", "Go"),
        ("GET", "/proxies", "", "Mozilla/5.0"),
        ("GET", "/version", "", "Go"),
    ];
    let mut seen = HashSet::new();
    for (method, path, body, agent) in requests {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("user-agent", agent)
            .body(Body::from(body))
            .unwrap();
        let reply = api.send(request).await;
        let id = reply.header("x-toxiproxy-request-id").unwrap_or_default().to_owned();
        assert!(!id.is_empty(), "{} ({}): no X-Toxiproxy-Request-Id", reply.what, reply.status);
        assert!(seen.insert(id.clone()), "{}: request id {id} was already used", reply.what);
    }
}

#[tokio::test]
async fn a_browser_user_agent_is_refused_with_403_and_changes_nothing() {
    let api = Api::with_fixture().await;
    let before = api.get("/proxies").await.body;
    let requests = [
        ("GET", "/proxies", ""),
        ("GET", "/version", ""),
        ("POST", "/proxies", r#"{"name":"q","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}"#),
        ("DELETE", "/proxies/p", ""),
        ("POST", "/reset", ""),
    ];
    for (method, path, body) in requests {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
            .body(Body::from(body))
            .unwrap();
        api.send(request).await.assert_text(StatusCode::FORBIDDEN, "User agent not allowed\n");
    }
    assert_eq!(api.get("/proxies").await.body, before, "a refused request must change nothing");
}

#[tokio::test]
async fn only_a_user_agent_starting_with_mozilla_slash_is_refused() {
    let api = Api::new();
    // Go's `strings.HasPrefix(ua, "Mozilla/")` is case-sensitive and needs the slash.
    for agent in [
        "toxiproxy-cli/2.12.0 (linux/amd64)",
        "curl/8.5.0",
        "mozilla/5.0",
        "Mozilla",
        "",
        "Go-http-client/1.1",
    ] {
        let request =
            Request::builder().uri("/proxies").header("user-agent", agent).body(Body::empty()).unwrap();
        api.send(request).await.assert_status(StatusCode::OK);
    }
}

#[tokio::test]
async fn any_request_content_type_is_accepted() {
    let api = Api::new();
    let content_types = [
        None,
        Some("application/json"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("bogus"),
    ];
    for (i, content_type) in content_types.into_iter().enumerate() {
        let body = format!(r#"{{"name":"p{i}","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}}"#);
        let mut request = Request::builder().method("POST").uri("/proxies");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let reply = api.send(request.body(Body::from(body)).unwrap()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "Content-Type {content_type:?}: {}", reply.body);
    }
}

#[tokio::test]
async fn reset_needs_no_body_no_content_length_and_ignores_any_body() {
    let api = Api::with_fixture().await;
    let bare = Request::builder().method("POST").uri("/reset").body(Body::empty()).unwrap();
    assert!(bare.headers().is_empty(), "the request must carry no Content-Length");
    api.send(bare).await.assert_no_content();
    api.post("/reset", "this is not JSON").await.assert_no_content();
}
