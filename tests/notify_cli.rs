//! `chaos notify channels|test|log` through the built binary against a real `chaos controller --notify FILE`
//! (its own process on 127.0.0.1:0, its own data directory, a secret from its environment) and a real HTTP
//! receiver on 127.0.0.1:0 in the test: what each command prints and its exit code, the test message as the
//! receiver got it (signature verified), and a bad channels file refused at FILE:LINE:COLUMN with exit 2
//! before the controller binds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{chaos_bin, describe_output, output_within, temp_dir};

/// One request as the receiver read it: its headers (lower-case names) and body.
#[derive(Clone, Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 receiver answering every request with `status`, one connection at a time, on a thread.
fn receiver(status: u16) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            let length: usize =
                headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            seen.lock().unwrap().push(Received { headers, body });
            let _ = write!(stream, "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, got)
}

/// `chaos controller --notify FILE` on 127.0.0.1:0 with `env`, killed when dropped.
struct Controller {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Controller {
    fn start(dir: &Path, notify: &Path, env: &[(&str, &str)]) -> Controller {
        let mut command = Command::new(chaos_bin());
        command
            .args(["controller", "--listen", "127.0.0.1:0", "--notify"])
            .arg(notify)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env_remove("CHAOS_CONTROLLER_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("controller.log")).unwrap());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let line = BufReader::new(child.stdout.take().unwrap()).lines().next();
        let line = line.expect("the controller printed nothing").unwrap();
        let addr =
            line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Controller { child, url: format!("http://{addr}"), dir: dir.to_path_buf() }
    }

    fn notify(&self, args: &[&str]) -> Output {
        let mut command = Command::new(chaos_bin());
        command
            .arg("notify")
            .args(args)
            .args(["--controller", &self.url, "--token-file"])
            .arg(self.dir.join("data").join("api.token"))
            .env_remove("CHAOS_TOKEN")
            .env_remove("CHAOS_CONTROLLER");
        output_within(&mut command, Duration::from_secs(30))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HMAC-SHA256 of `TIMESTAMP.BODY` with `key`, in hex, the way a receiver checks `X-Chaos-Signature`.
fn expected_signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut text = timestamp.as_bytes().to_vec();
    text.push(b'.');
    text.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &text);
    format!("sha256={}", tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[test]
fn notify_channels_test_and_log_against_a_real_controller_and_receiver() {
    let dir = temp_dir("notify-cli", "flow");
    let (ok_url, ok_got) = receiver(200);
    let (bad_url, _bad_got) = receiver(500);
    let file = dir.join("notify.yaml");
    std::fs::write(
        &file,
        format!(
            "channels:\n  - name: ops\n    kind: webhook\n    url: {ok_url}\n    secret_env: OPS_HOOK_SECRET\n  - name: broken\n    kind: slack\n    url: {bad_url}\n    retries: 0\n"
        ),
    )
    .unwrap();
    let controller = Controller::start(&dir, &file, &[("OPS_HOOK_SECRET", "hunter2")]);

    let out = controller.notify(&["channels"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "KIND", "TARGET", "TIMEOUT", "RETRIES", "EVENTS"]);
    let host = ok_url.trim_end_matches("/hook");
    assert_eq!(rows[1][..5], ["ops", "webhook+hmac", host, "5000ms", "3"]);
    assert_eq!(rows[2][..5], ["broken", "slack", bad_url.trim_end_matches("/hook"), "5000ms", "0"]);
    assert!(!table.contains("hunter2"));

    let out = controller.notify(&["test", "--text", "pager check"]);
    assert_eq!(out.status.code(), Some(1), "one channel failed: {}", describe_output(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ops: delivered (HTTP 200) in "), "{stdout}");
    assert_eq!(lines[1], "broken: NOT delivered (HTTP 500): HTTP 500: ok");
    let got = ok_got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let request = &got[0];
    assert_eq!(request.header("x-chaos-event"), "test");
    assert_eq!(
        request.header("x-chaos-signature"),
        expected_signature(b"hunter2", request.header("x-chaos-timestamp"), &request.body)
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["details"]["text"], "pager check");

    let out = controller.notify(&["test", "--channel", "ops"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let out = controller.notify(&["test", "--channel", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "chaos: sending a test notification: no notification channel named \"nope\"\n"
    );

    let out = controller.notify(&["log", "--attempts"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let log = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines[0].starts_with("CREATED (UTC)"), "{log}");
    // Newest first: the second test (ops), then the first (ops and broken), each with its attempt.
    let deliveries: Vec<Vec<&str>> = lines
        .iter()
        .filter(|l| !l.starts_with(' '))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(deliveries.len(), 3, "{log}");
    assert_eq!(
        deliveries.iter().map(|d| (d[2], d[4])).collect::<Vec<_>>(),
        [("ops", "delivered"), ("broken", "failed"), ("ops", "delivered")],
        "{log}"
    );
    assert!(lines.iter().any(|l| l.trim_start().starts_with("#1 ") && l.ends_with("HTTP 500: ok")), "{log}");

    let out = controller.notify(&["log", "--channel", "broken", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["state"], "failed");
    assert_eq!(json[0]["attempts"][0]["status"], 500);
    assert_eq!(json[0]["payload"]["blocks"][0]["type"], "header");
}

#[test]
fn a_bad_channels_file_is_refused_at_file_line_column_before_the_controller_starts() {
    let dir = temp_dir("notify-cli", "bad");
    let file = dir.join("notify.yaml");
    std::fs::write(
        &file,
        "channels:\n  - name: ops\n    kind: webhook\n    url: http://127.0.0.1:9/\n    secret_env: UNSET_NOTIFY_SECRET_VAR\n    colour: red\n",
    )
    .unwrap();
    let mut command = Command::new(chaos_bin());
    command
        .args(["controller", "--listen", "127.0.0.1:0", "--notify"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("CHAOS_CONTROLLER_DIR")
        .env_remove("UNSET_NOTIFY_SECRET_VAR");
    let out = output_within(&mut command, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    assert_eq!(out.stdout, b"", "nothing was bound");
    let name = file.display();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{name}:5:17: environment variable UNSET_NOTIFY_SECRET_VAR (`secret_env`) is not set\n{name}:6:5: unknown key `colour` in a webhook channel: expected one of name, kind, events, timeout, retries, backoff, max_backoff, url, url_env, secret, secret_env\n"
        )
    );
}
