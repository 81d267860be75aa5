//! Helpers for the web console's tests: a controller with its console on 127.0.0.1:0 (the fleet fixtures'
//! [`RunningController`]), a small HTTP/1.1 client that keeps no cookies unless told (so every refusal is the
//! server's), logging in and reading a session's CSRF token from a page, and a minimal W3C WebDriver client
//! over the same HTTP client, driving Debian's `chromedriver` and headless `chromium`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

use crate::fleet_support::{API_TOKEN, RunningController, TempDir, WAIT, config, fleet};

/// A controller with its web console on loopback port 0.
pub async fn controller(dir: &TempDir) -> RunningController {
    let mut cfg = config(dir.path(), fleet(200, 2000));
    cfg.ui_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    RunningController::start(cfg).await
}

/// One HTTP response, body read whole.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// An HTTP client of the console at `base` (`http://127.0.0.1:PORT`).
#[derive(Clone)]
pub struct Http {
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        Http { base: format!("http://{addr}"), client: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// Sends `method path` with `headers` and `body`; the response within [`WAIT`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let response = tokio::time::timeout(WAIT, self.client.request(request)).await.unwrap().unwrap();
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(WAIT, body.collect()).await.unwrap().unwrap().to_bytes();
        Response { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into() }
    }

    /// GET `path`, with the session cookie when given.
    pub async fn get(&self, path: &str, session: Option<&Session>) -> Response {
        let cookie = session.map(|s| format!("chaos_session={}", s.cookie));
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
        self.send(Method::GET, path, &headers, Vec::new()).await
    }

    /// POST `fields` form-encoded to `path`, with the session cookie when given and the extra `headers`.
    pub async fn post(
        &self,
        path: &str,
        session: Option<&Session>,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Response {
        let cookie = session.map(|s| format!("chaos_session={}", s.cookie));
        let mut all: Vec<(&str, &str)> = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend(cookie.iter().map(|c| ("cookie", c.as_str())));
        all.extend_from_slice(headers);
        self.send(Method::POST, path, &all, form(fields).into_bytes()).await
    }

    /// Logs in with `token`: the session cookie and the CSRF token the pages carry.
    pub async fn login(&self, token: &str) -> Session {
        let response = self.post("/login", None, &[("token", token)], &[]).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{response:?}");
        let set = response.header("set-cookie");
        let cookie = set.strip_prefix("chaos_session=").unwrap().split(';').next().unwrap().to_string();
        let mut session = Session { cookie, csrf: String::new() };
        let page = self.get("/runs", Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        session.csrf = csrf_of(&page.body);
        session
    }

    /// Logs in with the fleet fixtures' API token (named `ci`).
    pub async fn login_ci(&self) -> Session {
        self.login(API_TOKEN).await
    }
}

/// A logged-in browser's cookie and CSRF token.
#[derive(Clone, Debug)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// The CSRF token in a page's forms.
pub fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = page.find(marker).expect("a form with a CSRF token on the page") + marker.len();
    page[at..].split('"').next().unwrap().to_string()
}

/// `fields` as `application/x-www-form-urlencoded`.
pub fn form(fields: &[(&str, &str)]) -> String {
    let enc = chaos_controller::console::html::url_part;
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

// === WebDriver ===

/// The W3C WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether chromium and chromedriver are installed (`Ok`), or why not.
pub fn browser_available() -> Result<(), String> {
    for program in ["chromium", "chromedriver"] {
        chaos_test_support::skip::program(program)?;
    }
    Ok(())
}

/// A `chromedriver --port=0` child (killed on drop) and one headless chromium session through it, with a
/// fresh profile directory.
pub struct Browser {
    driver: tokio::process::Child,
    http: Http,
    session: String,
    _profile: TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let mut driver = tokio::process::Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut lines = tokio::io::BufReader::new(driver.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').parse::<u16>().unwrap();
                }
            }
            panic!("chromedriver ended without saying its port");
        })
        .await
        .expect("chromedriver says its port in time");
        // The rest of its output is not read: drain it so chromedriver never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = Http::new(SocketAddr::from(([127, 0, 0, 1], port)));
        let profile = TempDir::new("chromium-profile");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1400,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        }}});
        let mut browser = Browser { driver, http, session: String::new(), _profile: profile };
        let created = browser.call(Method::POST, "/session", Some(capabilities)).await;
        browser.session = created["sessionId"].as_str().expect("a WebDriver session id").to_string();
        browser
    }

    /// One WebDriver command; its `value`, or a panic with the driver's error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let headers = [("content-type", "application/json")];
        let response = self.http.send(method, path, &headers, body).await;
        let value: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
        assert!(response.status.is_success(), "WebDriver {path}: {} {}", response.status, response.body);
        value["value"].clone()
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.call(Method::POST, &self.path("/url"), Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.call(Method::GET, &self.path("/url"), None).await.as_str().unwrap().to_string()
    }

    /// The page's HTML now.
    pub async fn source(&self) -> String {
        self.call(Method::GET, &self.path("/source"), None).await.as_str().unwrap_or("").to_string()
    }

    /// The elements matching `css` now.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                Method::POST,
                &self.path("/elements"),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found.as_array().unwrap().iter().map(|e| e[ELEMENT].as_str().unwrap().to_string()).collect()
    }

    /// The first element matching `css`, waiting for it up to [`WAIT`].
    pub async fn find(&self, css: &str) -> String {
        let what = format!("an element matching {css:?}");
        chaos_test_support::wait::wait_for(&what, WAIT, || async {
            self.find_all(css).await.into_iter().next()
        })
        .await
    }

    pub async fn click(&self, element: &str) {
        self.call(Method::POST, &self.path(&format!("/element/{element}/click")), Some(json!({}))).await;
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        let body = json!({ "text": text });
        self.call(Method::POST, &self.path(&format!("/element/{element}/value")), Some(body)).await;
    }

    pub async fn text(&self, element: &str) -> String {
        let text = self.call(Method::GET, &self.path(&format!("/element/{element}/text")), None).await;
        text.as_str().unwrap_or("").to_string()
    }

    pub async fn attribute(&self, element: &str, name: &str) -> Option<String> {
        let value =
            self.call(Method::GET, &self.path(&format!("/element/{element}/attribute/{name}")), None).await;
        value.as_str().map(str::to_string)
    }

    /// Runs `script` in the page and returns what it returns.
    pub async fn execute(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.call(Method::POST, &self.path("/execute/sync"), Some(body)).await
    }

    /// The HTML of the document inside `frame` (an iframe element), then back to the top document.
    pub async fn frame_source(&self, frame: &str) -> String {
        let id = json!({ "id": { ELEMENT: frame } });
        self.call(Method::POST, &self.path("/frame"), Some(id)).await;
        let source = self.source().await;
        self.call(Method::POST, &self.path("/frame/parent"), Some(json!({}))).await;
        source
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let encoded = self.call(Method::GET, &self.path("/screenshot"), None).await;
        base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap()).unwrap()
    }

    /// Ends the session (chromium exits) and stops chromedriver.
    pub async fn quit(mut self) {
        self.call(Method::DELETE, &self.path(""), None).await;
        let _ = self.driver.start_kill();
        let _ = tokio::time::timeout(WAIT, self.driver.wait()).await;
    }
}

/// Where the screenshots the documentation shows live: `docs/img/` in the repository.
pub fn docs_img(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("docs").join("img").join(name)
}

/// Waits until `what` holds for the page, checking every 100 ms up to `within`.
pub async fn wait_page(browser: &Browser, what: &str, within: Duration, script: &str) -> Value {
    chaos_test_support::wait::wait_for(what, within, || async {
        let value = browser.execute(script).await;
        (!value.is_null() && value != Value::Bool(false)).then_some(value)
    })
    .await
}
