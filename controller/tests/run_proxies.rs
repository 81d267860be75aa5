//! Proxies a run creates on a server that cannot expire them (a real Toxiproxy ignores `lease_ms`): the run
//! journals each one before creating it, deletes it and its record at the end, and a runner that never gets
//! there leaves a record whose replay (`chaos agent revert-all`, the next start) deletes the proxy.
//!
//! The server is a small fake of Toxiproxy's proxy routes over a real socket: it keeps names and answers with
//! Toxiproxy's view, which has no `lease_ms`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chaos_agent::journal::{self, ReplayMode, Undo};
use chaos_agent::undo;
use chaos_controller::engine::run_proxies::{self, Wanted};
use chaos_proxy::client::Client;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;

type Names = Arc<Mutex<BTreeSet<String>>>;

/// A Toxiproxy stand-in on a loopback port: `/version` and the proxy routes, no leases.
async fn fake_toxiproxy() -> (String, Names) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let names: Names = Arc::default();
    let state = names.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let state = state.clone();
            let service = service_fn(move |request| answer(request, state.clone()));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, names)
}

async fn answer(request: Request<Incoming>, names: Names) -> Result<Response<Full<Bytes>>, Infallible> {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let reply = |status: u16, body: String| {
        Ok(Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap())
    };
    let view = |name: &str, listen: &str, upstream: &str| {
        format!(
            r#"{{"name":"{name}","listen":"{listen}","upstream":"{upstream}","enabled":true,"toxics":[]}}"#
        )
    };
    let not_found = r#"{"error":"proxy not found","status":404}"#.to_string();
    match (method, path.strip_prefix("/proxies/")) {
        (Method::GET, None) if path == "/version" => reply(200, r#"{"version": "2.12.0"}"#.into()),
        (Method::POST, None) if path == "/proxies" => {
            let input: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let name = input["name"].as_str().unwrap().to_string();
            if !names.lock().unwrap().insert(name.clone()) {
                return reply(409, r#"{"error":"proxy already exists","status":409}"#.into());
            }
            reply(201, view(&name, "127.0.0.1:40000", input["upstream"].as_str().unwrap()))
        }
        (Method::GET, Some(name)) if names.lock().unwrap().contains(name) => {
            reply(200, view(name, "127.0.0.1:40000", "127.0.0.1:9"))
        }
        (Method::DELETE, Some(name)) if names.lock().unwrap().remove(name) => reply(204, String::new()),
        _ => reply(404, not_found),
    }
}

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-run-proxies-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn records(state: &PathBuf) -> Vec<journal::Record> {
    journal::list(state).0.into_iter().map(|(_, record)| record).collect()
}

#[tokio::test]
async fn without_leases_the_proxy_is_journaled_and_a_replay_deletes_it() {
    let (api, names) = fake_toxiproxy().await;
    let client = Client::new(&api).unwrap();
    let state = state_dir("replay");
    let wanted = || {
        vec![Wanted {
            client: &client,
            api: &api,
            name: "db",
            listen: "127.0.0.1:0",
            upstream: "127.0.0.1:9",
            protocol: None,
        }]
    };
    let mut notes = Vec::new();
    let created = run_proxies::create(wanted(), "exp", state.clone(), &mut notes).await.unwrap();
    assert!(names.lock().unwrap().contains("db"));
    let journaled = records(&state);
    assert_eq!(journaled.len(), 1, "{journaled:?}");
    assert_eq!(journaled[0].kind, "run-proxy");
    assert_eq!(journaled[0].undo, [Undo::DeleteProxy { api: api.clone(), name: "db".into() }]);

    // The runner never deletes it (as if killed): the break-glass replay does, through the API.
    drop(created);
    let replay_dir = state.clone();
    let report =
        tokio::task::spawn_blocking(move || undo::replay(&replay_dir, ReplayMode::All)).await.unwrap();
    assert_eq!(report.reverted.len(), 1, "{:?}", report.failed);
    assert!(names.lock().unwrap().is_empty(), "the replay left the proxy");
    assert!(records(&state).is_empty());

    // A run that ends normally deletes the proxy and its record.
    let created = run_proxies::create(wanted(), "exp", state.clone(), &mut notes).await.unwrap();
    assert_eq!(records(&state).len(), 1);
    assert!(created.delete().await.is_empty());
    assert!(names.lock().unwrap().is_empty());
    assert!(records(&state).is_empty(), "the record outlived the proxy");

    // A foreign proxy of the same name is refused, and no record is left that could delete it later.
    names.lock().unwrap().insert("db".into());
    let refused = run_proxies::create(wanted(), "exp", state.clone(), &mut notes).await.err().unwrap();
    assert!(refused.contains("was not created by a chaos run"), "{refused}");
    assert!(names.lock().unwrap().contains("db"));
    assert!(records(&state).is_empty(), "a record for someone else's proxy");
}
