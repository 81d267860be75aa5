//! `chaos proxy --config FILE` refuses a bad file before anything listens, saying where and what: the file's
//! `path:line:column`, the offending key or value, and what is allowed, for JSON (Toxiproxy's format) and
//! YAML alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{chaos_bin, describe_output, temp_dir, wait_until};

/// Runs `chaos proxy --port 0 --config FILE` on `text` written to `name`; returns the file's path and stderr.
fn refused(name: &str, text: &str) -> (String, String) {
    let path = temp_dir("proxy-config", name).join(name);
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(chaos_bin())
        .args(["proxy", "--port", "0", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    wait_until("chaos proxy to refuse the config", Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{name}: bad input exits 2: {}", describe_output(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("listening on"), "{name}: the API started before the config was checked");
    assert!(started.elapsed() < Duration::from_secs(20));
    (path.display().to_string(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_bad_toxic_type_is_named_with_its_position_and_the_known_types() {
    let json = "[\n  {\"name\": \"redis\", \"listen\": \"127.0.0.1:0\", \"upstream\": \"127.0.0.1:6379\",\n   \"toxics\": [{\"type\": \"latncy\"}]}\n]\n";
    let yaml =
        "- name: redis\n  listen: 127.0.0.1:0\n  upstream: 127.0.0.1:6379\n  toxics:\n    - type: latncy\n";
    for (name, text, pos) in [("bad-type.json", json, "3:24"), ("bad-type.yaml", yaml, "5:13")] {
        let (path, stderr) = refused(name, text);
        let expected = format!(
            "{path}:{pos}: proxy redis: toxic 1: invalid toxic type `latncy`, expected one of noop, latency, \
             bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, http_abort, http_delay, grpc_abort"
        );
        assert!(stderr.contains(&expected), "{name}: {stderr}\nexpected: {expected}");
    }
}

#[test]
fn a_mistyped_key_is_named_with_its_position_and_the_allowed_keys() {
    let json =
        "[\n  {\"name\": \"redis\", \"listen\": \"127.0.0.1:0\",\n   \"upstrem\": \"127.0.0.1:6379\"}\n]\n";
    let yaml = "proxies:\n  - name: redis\n    listen: 127.0.0.1:0\n    upstrem: 127.0.0.1:6379\n";
    for (name, text, entry, key) in [("typo.json", json, "2:3", "3:4"), ("typo.yaml", yaml, "2:5", "4:5")] {
        let (path, stderr) = refused(name, text);
        let expected = format!(
            "{path}:{entry}: proxy redis: missing required key `upstream`; unknown key `upstrem` at {key} \
             (expected one of name, listen, upstream, enabled, half_close, toxics, protocol, latency_buckets_ms, lease_ms, owner)"
        );
        assert!(stderr.contains(&expected), "{name}: {stderr}\nexpected: {expected}");
    }
}

#[test]
fn a_syntax_error_names_the_file_not_input() {
    let json = "[\n  {\"name\": \"redis\", \"upstream\": }\n]\n";
    let yaml = "- name: redis\n  upstream: [127.0.0.1:6379\n";
    for (name, text) in [("syntax.json", json), ("syntax.yaml", yaml)] {
        let (path, stderr) = refused(name, text);
        assert!(!stderr.contains("<input>"), "{name}: {stderr}");
        let line = stderr.lines().find(|l| l.contains(&path)).unwrap_or_else(|| panic!("{name}: {stderr}"));
        let rest = &line[line.find(&path).unwrap() + path.len()..];
        let mut parts = rest.splitn(4, ':');
        let (_, row, column) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        assert!(
            row.parse::<u32>().is_ok_and(|r| r >= 1) && column.parse::<u32>().is_ok_and(|c| c >= 1),
            "{name}: no line:column after the path: {line}"
        );
    }
}
