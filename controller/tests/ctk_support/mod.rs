//! Helpers for the Chaos Toolkit runner's tests: a real HTTP/1.1 service on 127.0.0.1:0 whose health the
//! experiments change (`/health` answers 200, 503 or drops the connection; `/break`, `/heal`, `/kill` switch
//! it; `/json` answers a Prometheus-shaped document; `/echo` returns what it was sent), and `run`, which
//! loads an experiment from JSON text and runs it with `chaos_controller::ctk` as `chaos run` does.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chaos_controller::ctk::config::Overrides;
use chaos_controller::ctk::controls::Controls;
use chaos_controller::ctk::journal::Journal;
use chaos_controller::ctk::load;
use chaos_controller::ctk::python::Python;
use chaos_controller::ctk::run::{self, Options};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use chaos_test_support::TempDir;

/// Health states of the [`Service`].
pub const OK: u8 = 0;
pub const BAD: u8 = 1;
pub const DEAD: u8 = 2;

/// A local HTTP service.
pub struct Service {
    pub addr: SocketAddr,
    pub state: Arc<AtomicU8>,
    /// `/health` requests answered 503 so far.
    pub bad_answers: Arc<AtomicUsize>,
    /// Every request line seen (`GET /health`).
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Created when `/health` first answers 503 (a process activity can wait for it).
    pub marker: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Service {
    pub async fn start(dir: &Path) -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(AtomicU8::new(OK));
        let bad_answers = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let marker = dir.join(format!("served-503-{}", addr.port()));
        let (s, b, v, m) = (state.clone(), bad_answers.clone(), seen.clone(), marker.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (s, b, v, m) = (s.clone(), b.clone(), v.clone(), m.clone());
                tokio::spawn(async move { serve(stream, s, b, v, m).await });
            }
        });
        Service { addr, state, bad_answers, seen, marker, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, state: u8) {
        self.state.store(state, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    state: Arc<AtomicU8>,
    bad: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
    marker: PathBuf,
) {
    // One request per connection, read whole (head and Content-Length body), at most 1 MiB.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 1 << 20 {
            return;
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let Ok(n) = stream.read(&mut chunk).await else { return };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            break (head, String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string());
        }
    };
    let request_line = head.lines().next().unwrap_or_default().to_string();
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let target = words.next().unwrap_or_default().to_string();
    let path = target.split('?').next().unwrap_or_default().to_string();
    seen.lock().unwrap().push(format!("{method} {path}"));
    let (status, content_type, text) = match path.as_str() {
        "/health" => match state.load(Ordering::SeqCst) {
            OK => (200, "text/plain", "ok\n".to_string()),
            BAD => {
                bad.fetch_add(1, Ordering::SeqCst);
                let _ = std::fs::write(&marker, b"503");
                (503, "text/plain", "unavailable\n".to_string())
            }
            _ => return, // dropped without an answer: a connection error
        },
        "/break" => {
            state.store(BAD, Ordering::SeqCst);
            (200, "text/plain", "broken\n".into())
        }
        "/heal" => {
            state.store(OK, Ordering::SeqCst);
            (200, "text/plain", "healed\n".into())
        }
        "/kill" => {
            state.store(DEAD, Ordering::SeqCst);
            (200, "text/plain", "killed\n".into())
        }
        "/json" => (
            200,
            "application/json",
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"job": "a"}, "value": [1700000000.0, "0"]},
                {"metric": {"job": "b"}, "value": [1700000000.0, "3"]}
            ]}})
            .to_string(),
        ),
        "/json-text" => (200, "application/json; charset=utf-8", "{\"a\": 1}".to_string()),
        "/echo" => {
            let headers: serde_json::Map<String, Value> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), Value::String(v.trim().to_string())))
                .collect();
            (
                200,
                "application/json",
                json!({"method": method, "target": target, "headers": headers, "body": body}).to_string(),
            )
        }
        "/status/418" => (418, "text/plain", "teapot\n".into()),
        _ => (404, "text/plain", "not found\n".into()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        418 => "I'm a teapot",
        _ => "Service Unavailable",
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// What a test run gives back.
pub struct Ran {
    pub journal: Journal,
    pub json: Value,
}

impl Ran {
    pub fn exit(&self) -> u8 {
        self.journal.exit_code()
    }
    /// Names of the method's run records, in order.
    pub fn run_names(&self) -> Vec<String> {
        names(&self.json["run"])
    }
    pub fn rollback_names(&self) -> Vec<String> {
        names(&self.json["rollbacks"])
    }
}

pub fn names(records: &Value) -> Vec<String> {
    records.as_array().unwrap().iter().map(|r| r["activity"]["name"].as_str().unwrap().to_string()).collect()
}

/// Loads `experiment` (validated, as `file.json`) and runs it with `options` and `overrides`.
pub async fn run_with(experiment: &Value, options: Options, overrides: Overrides) -> Ran {
    run_cancellable(experiment, options, overrides, CancellationToken::new()).await
}

pub async fn run_cancellable(
    experiment: &Value,
    options: Options,
    overrides: Overrides,
    interrupt: CancellationToken,
) -> Ran {
    let text = serde_json::to_string_pretty(experiment).unwrap();
    let loaded = load::parse("experiment.json", &text, true).unwrap_or_else(|d| panic!("invalid:\n{d}"));
    let resolved = loaded.resolve(&overrides).unwrap_or_else(|d| panic!("unresolved:\n{d}"));
    let options = Options { env: overrides.env.clone(), ..options };
    let journal = run::run(
        &loaded,
        resolved,
        Python::default(),
        Controls::default(),
        options,
        interrupt,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let json = journal.to_json();
    Ran { journal, json }
}

pub async fn run_default(experiment: &Value) -> Ran {
    run_with(experiment, Options::default(), Overrides::default()).await
}

/// An http probe of `url` with `tolerance`.
pub fn http_probe(name: &str, url: &str, tolerance: Value) -> Value {
    json!({"type": "probe", "name": name, "tolerance": tolerance,
           "provider": {"type": "http", "url": url, "timeout": 5}})
}

/// An http action (GET `url`).
pub fn http_action(name: &str, url: &str) -> Value {
    json!({"type": "action", "name": name, "provider": {"type": "http", "url": url, "timeout": 5}})
}

/// A process action that waits (at most 20 s) for `file` to exist.
pub fn wait_for_file(name: &str, file: &Path) -> Value {
    json!({"type": "action", "name": name, "provider": {"type": "process", "path": "sh", "arguments": [
        "-c", format!("i=0; while [ ! -e '{}' ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done; [ -e '{}' ]",
                      file.display(), file.display())
    ]}})
}

/// A process action that creates `file`.
pub fn touch(name: &str, file: &Path) -> Value {
    json!({"type": "action", "name": name,
           "provider": {"type": "process", "path": "touch", "arguments": [file.display().to_string()]}})
}

/// The usual experiment: `/health` must answer 200 before and after; `method` and `rollbacks` given.
pub fn experiment(service: &Service, method: Vec<Value>, rollbacks: Vec<Value>) -> Value {
    json!({
        "title": "health holds",
        "description": "a test experiment",
        "steady-state-hypothesis": {
            "title": "the service answers 200",
            "probes": [http_probe("health", &format!("{}/health", service.url()), json!(200))]
        },
        "method": method,
        "rollbacks": rollbacks,
    })
}
