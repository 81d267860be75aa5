//! `Undo::DeleteProxy`: a journaled proxy is deleted through a real admin API socket when the record is
//! replayed; 204 and 404 are done (the record goes), anything else keeps the record and names the status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use chaos_agent::journal::{Journal, ReplayMode, Undo};
use chaos_agent::undo;

/// A one-connection admin API on port 0 answering `status`; sends the request line it received.
fn api_answering(status: &'static str) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
        }
        let body = r#"{"error":"boom","status":500}"#;
        let mut conn = conn;
        let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        tx.send(first.trim_end().to_string()).unwrap();
    });
    (url, rx)
}

fn state_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-undo-proxy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_replayed_proxy_record_deletes_the_proxy_and_then_the_record() {
    for status in ["204 No Content", "404 Not Found"] {
        let (api, requests) = api_answering(status);
        let state = state_dir(&status[..3]);
        let journal = Journal::open(&state).unwrap();
        let undo = Undo::DeleteProxy { api: api.clone(), name: "run db/1".into() };
        let _entry = journal.begin_external("proxy", vec![undo]).unwrap();
        assert_eq!(journal.records().0.len(), 1);

        let report = undo::replay(&state, ReplayMode::All);
        assert_eq!(report.reverted.len(), 1, "{status}: {:?}", report.failed);
        let line = requests.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(line, "DELETE /proxies/run%20db%2F1 HTTP/1.1");
        assert!(journal.records().0.is_empty(), "{status}: the record outlived its revert");
    }
}

#[test]
fn a_failed_delete_keeps_the_record_and_says_which_status() {
    let (api, requests) = api_answering("500 Internal Server Error");
    let state = state_dir("500");
    let journal = Journal::open(&state).unwrap();
    let _entry = journal
        .begin_external("proxy", vec![Undo::DeleteProxy { api: api.clone(), name: "db".into() }])
        .unwrap();
    let report = undo::replay(&state, ReplayMode::All);
    assert!(report.reverted.is_empty());
    let (record, error) = &report.failed[0];
    assert_eq!(record.kind, "proxy");
    let error = error.to_string();
    assert!(error.contains(&format!("DELETE {api}/proxies/db")) && error.contains("status 500"), "{error}");
    assert_eq!(requests.recv_timeout(Duration::from_secs(5)).unwrap(), "DELETE /proxies/db HTTP/1.1");
    assert_eq!(journal.records().0.len(), 1, "the record must stay for the next replay");

    // A server that is gone is an error too, never a silent success.
    drop(requests);
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let e = Undo::DeleteProxy { api: url, name: "db".into() }.run().unwrap_err().to_string();
    assert!(e.contains("connecting to"), "{e}");
}
