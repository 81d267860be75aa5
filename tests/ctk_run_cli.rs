//! `chaos run` of Chaos Toolkit experiments, end to end through the binary: dispatch, the journal at
//! `--journal-path` (default `./journal.json`), exit codes (0, 1, 2 with file:line:column, 3 after a real
//! SIGINT, SIGTERM or SIGUSR2 with the journal still written), `--var key:type=value`, flags refused on the wrong kind of file,
//! `chaos validate` of a Chaos Toolkit file, and https providers against a python3 TLS server (`verify_tls`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{chaos_bin, describe_output, output_within, repo_path, temp_dir};

fn write(dir: &Path, name: &str, doc: &Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    path
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn echo_experiment(rollback_file: &Path) -> Value {
    json!({
        "title": "echo ${word}",
        "description": "a process probe",
        "configuration": {"word": "hello", "count": 1},
        "steady-state-hypothesis": {"title": "echo works", "probes": [
            {"type": "probe", "name": "echo", "tolerance": 0,
             "provider": {"type": "process", "path": "echo", "arguments": ["${word}", "${count}"]}}
        ]},
        "method": [{"ref": "echo"}],
        "rollbacks": [{"type": "action", "name": "mark", "provider": {"type": "process", "path": "touch",
                       "arguments": [rollback_file.display().to_string()]}}]
    })
}

#[test]
fn a_chaos_toolkit_file_runs_and_writes_its_journal() {
    let dir = temp_dir("ctk-cli", "ok");
    let marker = dir.join("rolled-back");
    let file = write(&dir, "experiment.json", &echo_experiment(&marker));
    // Default journal path: ./journal.json in the working directory.
    let output = output_within(
        Command::new(chaos_bin()).current_dir(&dir).arg("run").arg(&file).args(["--var", "count:int=42"]),
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let journal = read(&dir.join("journal.json"));
    assert_eq!(journal["status"], "completed");
    assert_eq!(journal["experiment"]["title"], "echo hello");
    assert_eq!(journal["experiment"]["configuration"]["count"], 1, "overrides are not written back");
    assert_eq!(journal["run"][0]["output"]["stdout"], "hello 42\n");
    assert!(marker.exists());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("method: echo: probe status 0 ok"), "a progress line per activity:\n{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("echo hello: completed"), "{stdout}");

    // Deviated: exit 1, journal at --journal-path.
    let mut deviating = echo_experiment(&marker);
    deviating["method"] = json!([]);
    deviating["steady-state-hypothesis"]["probes"][0]["tolerance"] =
        json!({"type": "regex", "target": "stdout", "pattern": "^bye"});
    deviating["runtime"] = json!({"hypothesis": {"strategy": "after-method-only"}});
    let file = write(&dir, "deviating.yaml", &deviating);
    let journal_path = dir.join("out/deviated.json");
    let output = output_within(
        Command::new(chaos_bin())
            .arg("run")
            .arg(&file)
            .arg("--journal-path")
            .arg(&journal_path)
            .arg("--quiet"),
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe_output(&output));
    let journal = read(&journal_path);
    assert_eq!((journal["status"].as_str(), journal["deviated"].as_bool()), (Some("completed"), Some(true)));
}

#[test]
fn invalid_files_and_bad_usage_exit_2() {
    let dir = temp_dir("ctk-cli", "invalid");
    let file = dir.join("bad.json");
    std::fs::write(
        &file,
        "{\"title\": \"t\", \"description\": \"d\", \"method\": [\n  {\"ref\": \"nowhere\"}\n]}",
    )
    .unwrap();
    let output = output_within(Command::new(chaos_bin()).arg("run").arg(&file), Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}:2:11: referenced activity 'nowhere'", file.display())), "{stderr}");
    let validate =
        output_within(Command::new(chaos_bin()).arg("validate").arg(&file), Duration::from_secs(60));
    assert_eq!(validate.status.code(), Some(2), "{}", describe_output(&validate));

    let good = write(&dir, "good.json", &echo_experiment(&dir.join("m")));
    let validate =
        output_within(Command::new(chaos_bin()).arg("validate").arg(&good), Duration::from_secs(60));
    assert_eq!(validate.status.code(), Some(0), "{}", describe_output(&validate));
    for args in [
        vec!["--var", "x:foo=1"],
        vec!["--dry", "bogus"],
        vec!["--junit", "j.xml"],
        vec!["--hypothesis-strategy", "sometimes"],
    ] {
        let output = output_within(
            Command::new(chaos_bin()).current_dir(&dir).arg("run").arg(&good).args(&args),
            Duration::from_secs(60),
        );
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", describe_output(&output));
    }
    assert!(!dir.join("journal.json").exists(), "nothing ran");
    // A Chaos Toolkit flag on a native experiment is refused too.
    let native = repo_path("experiments/latency-on-dependency.yaml");
    let output = output_within(
        Command::new(chaos_bin()).arg("run").arg(&native).args(["--fail-fast"]),
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--fail-fast is a flag for Chaos Toolkit experiments")
    );
}

#[test]
fn signals_interrupt_with_exit_3_and_a_journal() {
    // (signal, --rollback-strategy, rollbacks played?)
    for (sig, strategy, played) in
        [("INT", "default", false), ("TERM", "always", true), ("USR2", "always", false)]
    {
        let dir = temp_dir("ctk-cli", &format!("sig{sig}"));
        let started = dir.join("started");
        let marker = dir.join("rolled-back");
        let exp = json!({
            "title": "long", "description": "d",
            "method": [{"type": "action", "name": "long", "provider": {"type": "process", "path": "sh",
                        "arguments": ["-c", format!("touch '{}'; exec sleep 60", started.display())]}}],
            "rollbacks": [{"type": "action", "name": "mark", "provider": {"type": "process", "path": "touch",
                           "arguments": [marker.display().to_string()]}}]
        });
        let file = write(&dir, "long.json", &exp);
        let journal_path = dir.join("journal.json");
        let mut child = Command::new(chaos_bin())
            .arg("run")
            .arg(&file)
            .arg("--journal-path")
            .arg(&journal_path)
            .args(["--rollback-strategy", strategy])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        support::wait_until("the long action started", Duration::from_secs(30), || started.exists());
        Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "chaos run did not stop after SIG{sig}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(3), "SIG{sig}: {}", describe_output(&output));
        let journal = read(&journal_path);
        assert_eq!(journal["status"], "interrupted", "SIG{sig}");
        assert!(journal["run"][0].get("status").is_none(), "SIG{sig}: the cut activity has no status");
        assert_eq!(!journal["rollbacks"].as_array().unwrap().is_empty(), played, "SIG{sig} with {strategy}");
        assert_eq!(marker.exists(), played, "SIG{sig} with {strategy}");
    }
}

/// A python3 HTTPS server on 127.0.0.1:0 with `chaos certs`' development certificate (a CA this host does
/// not trust), killed on drop.
struct HttpsServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn https_server(dir: &Path) -> HttpsServer {
    let certs = dir.join("certs");
    let made = output_within(
        Command::new(chaos_bin()).arg("certs").arg("--out").arg(&certs),
        Duration::from_secs(60),
    );
    assert!(made.status.success(), "{}", describe_output(&made));
    let script = format!(
        "import http.server, ssl, sys\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       body = b'secure'\n\
         \x20       self.send_response(200); self.send_header('Content-Type', 'text/plain')\n\
         \x20       self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n\
         \x20   def log_message(self, *a): pass\n\
         s = http.server.HTTPServer(('127.0.0.1', 0), H)\n\
         c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain('{cert}', '{key}')\n\
         s.socket = c.wrap_socket(s.socket, server_side=True)\n\
         print(s.server_address[1], flush=True)\n\
         s.serve_forever()\n",
        cert = certs.join("controller.pem").display(),
        key = certs.join("controller.key").display(),
    );
    let mut child = Command::new("python3").args(["-c", &script]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("the HTTPS server printed {line:?}"));
    HttpsServer { child, port }
}

#[test]
fn https_providers_verify_certificates_unless_told_not_to() {
    if !chaos_test_support::skip::require("python3", chaos_test_support::skip::program("python3")) {
        return;
    }
    let dir = temp_dir("ctk-cli", "https");
    let server = https_server(&dir);
    let url = format!("https://localhost:{}/", server.port);
    let exp = json!({
        "title": "https", "description": "d",
        "method": [
            {"type": "probe", "name": "unverified", "provider": {"type": "http", "url": url, "verify_tls": false, "timeout": 10}},
            {"type": "probe", "name": "verified", "provider": {"type": "http", "url": url, "timeout": 10}}
        ]
    });
    let file = write(&dir, "https.json", &exp);
    let journal_path = dir.join("journal.json");
    let output = output_within(
        Command::new(chaos_bin()).arg("run").arg(&file).arg("--journal-path").arg(&journal_path),
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let journal = read(&journal_path);
    assert_eq!(journal["run"][0]["status"], "succeeded", "{:#}", journal["run"][0]);
    assert_eq!(journal["run"][0]["output"]["body"], "secure");
    assert_eq!(journal["run"][1]["status"], "failed", "an unknown CA is refused by default");
    let exception = journal["run"][1]["exception"][0].as_str().unwrap();
    assert!(exception.contains("TLS"), "{exception}");
}
