//! A real HTTP receiver for the notification tests: hyper's HTTP/1.1 server on 127.0.0.1:0 that records every
//! request (path, headers, exact body bytes) and answers as scripted: a status, or a hang (the request is read
//! and never answered). After the script it answers its default. Also: the webhook signature check a receiver
//! would write from the documented scheme (with `ring`, independently of the controller's signer), a store in a
//! temp dir, and channel builders.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chaos_controller::notify::{Channel, ChannelKind, EventKind, Secret};
use chaos_controller::store::{DeliveryFilter, DeliveryRecord, SqliteStore, StoreHandle};
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long a test waits for anything before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// What the receiver does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behave {
    Status(u16),
    /// Read the request, never answer.
    Hang,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(&name.to_ascii_lowercase()).map_or("", String::as_str)
    }
}

struct State {
    requests: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Behave>>,
    default: Behave,
    changed: Notify,
}

/// The receiver; stops serving when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Serves `script` in order, then `default` for every further request.
    pub async fn start(script: &[Behave], default: Behave) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(script.iter().copied().collect()),
            default,
            changed: Notify::new(),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = serving.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let headers = parts
                                .headers
                                .iter()
                                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            state.requests.lock().unwrap().push(Received {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_string(),
                                headers,
                                body,
                            });
                            state.changed.notify_waiters();
                            let behave = state.script.lock().unwrap().pop_front().unwrap_or(state.default);
                            match behave {
                                Behave::Status(code) => {
                                    let mut response = hyper::Response::new(Full::new(Bytes::from(format!(
                                        "{{\"status\":\"answer {code}\"}}"
                                    ))));
                                    *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
                                    Ok::<_, Infallible>(response)
                                }
                                Behave::Hang => std::future::pending().await,
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests came, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let changed = self.state.changed.notified();
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {n} requests; got {}: {requests:?}",
                requests.len()
            );
            let _ = tokio::time::timeout(left, changed).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a receiver does with a signed webhook: HMAC-SHA256 keyed with the shared secret over
/// `X-Chaos-Timestamp` + "." + the exact body, compared (in constant time) with `X-Chaos-Signature`'s hex.
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else { return false };
    if hex.len() != 64 {
        return false;
    }
    let Ok(tag) =
        (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)).collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    ring::hmac::verify(&key, &signed, &tag).is_ok()
}

/// A store in a fresh temp dir (kept while the returned dir lives).
pub fn store() -> (chaos_test_support::TempDir, StoreHandle) {
    let dir = chaos_test_support::TempDir::new("notify");
    let store = SqliteStore::open(&dir.path().join("controller.db")).unwrap();
    (dir, StoreHandle::new(Arc::new(store)))
}

/// A channel taking every event, with short retries for tests.
pub fn channel(name: &str, kind: ChannelKind) -> Channel {
    Channel {
        name: name.to_string(),
        kind,
        events: EventKind::LISTABLE.into_iter().collect::<BTreeSet<_>>(),
        timeout: Duration::from_secs(5),
        retries: 3,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    }
}

pub fn webhook(url: String, secret: Option<&str>) -> ChannelKind {
    ChannelKind::Webhook { url: Secret::new(url), secret: secret.map(Secret::new) }
}

/// Every delivery in the store, newest first.
pub async fn deliveries(store: &StoreHandle) -> Vec<DeliveryRecord> {
    store.call(|s| s.deliveries(&DeliveryFilter { limit: 1000, ..DeliveryFilter::default() })).await.unwrap()
}

/// Waits until `channel`'s newest delivery is in `state`, and returns it.
pub async fn wait_state(store: &StoreHandle, channel: &str, state: &str) -> DeliveryRecord {
    let what = format!("{channel}'s newest delivery to be {state}");
    chaos_test_support::wait::wait_for(&what, WAIT, || async {
        deliveries(store)
            .await
            .into_iter()
            .find(|d| d.delivery.channel == channel)
            .filter(|d| d.state == state)
    })
    .await
}
