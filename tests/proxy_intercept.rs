//! End-to-end tests of transparent interception: `chaos proxy --intercept PORT=PROXY` inside a network namespace
//! the test creates, with Debian's curl as the client that knows nothing about the proxy, an HTTP fault it
//! still gets, and the nftables rules gone on exit and, after a SIGKILL, at the next start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::{DemoTarget, NetnsPair, chaos_bin, describe_output, temp_dir, wait_until};

/// Ports inside the test's own namespace (nothing else listens there).
const SERVICE: &str = "127.0.0.1:8080";

/// `chaos proxy` inside `ns`, with an http proxy `shop` on 0.0.0.0:15001 in front of the service, and `extra`
/// flags; returns once its API listens (on a port the kernel picks), with the API's URL.
fn start_proxy(ns: &str, config: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(chaos_bin())
        .args(["proxy", "--port", "0", "--config"])
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let admin =
        line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (child, admin.to_string())
}

/// Adds an `http_abort` toxic (503 on POST /checkout) through the API in `ns`, and checks that curl, which
/// knows nothing of the proxy, gets it with the proxy's `x-chaos-fault` header.
fn abort_checkout(ns: &str, admin: &str) {
    let toxic = r#"{"name":"checkout_down","type":"http_abort","attributes":{"status":503,"method":"POST","path_prefix":"/checkout"}}"#;
    let added = curl(ns, &["-X", "POST", "-d", toxic, &format!("{admin}/proxies/shop/toxics")]);
    assert!(added.status.success(), "{}", describe_output(&added));
    let faulted = curl(ns, &["-i", "-X", "POST", &format!("http://{SERVICE}/checkout")]);
    let text = String::from_utf8_lossy(&faulted.stdout);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_ascii_lowercase().contains("x-chaos-fault: checkout_down"), "{text}");
}

fn curl(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "--max-time", "5"])
        .args(args)
        .output()
        .unwrap()
}

fn tables(net: &NetnsPair) -> Vec<String> {
    support::sh(&["ip", "netns", "exec", &net.a, "nft", "list", "tables"])
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|t| t.starts_with("chaos_intercept_"))
        .map(str::to_string)
        .collect()
}

fn config(name: &str) -> std::path::PathBuf {
    config_with_upstream(name, SERVICE)
}

/// The `shop` http proxy's config with `upstream` (an address, or `original`).
fn config_with_upstream(name: &str, upstream: &str) -> std::path::PathBuf {
    let dir = temp_dir("intercept", name);
    let path = dir.join("proxies.json");
    std::fs::write(
        &path,
        format!(r#"[{{"name":"shop","listen":"0.0.0.0:15001","upstream":"{upstream}","protocol":"http"}}]"#),
    )
    .unwrap();
    path
}

fn terminate(child: &mut Child) -> Output {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut done = None;
    wait_until("chaos proxy to exit after SIGTERM", Duration::from_secs(10), || {
        done = child.try_wait().unwrap();
        done.is_some()
    });
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr);
    Output { status: done.unwrap(), stdout: Vec::new(), stderr: stderr.into_bytes() }
}

#[test]
fn curl_on_an_intercepted_port_gets_the_http_fault_and_the_rules_go_on_exit() {
    let net = NetnsPair::new();
    let _service = DemoTarget::start_in(Some(&net.a), SERVICE);
    let config = config("exit");
    let (mut proxy, admin) = start_proxy(&net.a, &config, &["--intercept", "8080=shop"]);
    assert_eq!(tables(&net).len(), 1, "one interception table");

    // Faults only POST /checkout; curl still talks to 127.0.0.1:8080 as if no proxy existed.
    abort_checkout(&net.a, &admin);
    // Other requests reach the real service through the proxy, whose own dial is not redirected back to it.
    let healthy = curl(&net.a, &["-w", " %{http_code}", &format!("http://{SERVICE}/health")]);
    assert_eq!(String::from_utf8_lossy(&healthy.stdout).trim(), "ok 200", "{}", describe_output(&healthy));
    let stats = curl(&net.a, &[&format!("{admin}/proxies/shop/stats")]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["http"]["requests_total"], 2, "both requests went through the proxy: {stats}");

    let exited = terminate(&mut proxy);
    assert!(exited.status.success(), "{}", describe_output(&exited));
    assert!(tables(&net).is_empty(), "interception left behind: {:?}", tables(&net));
    // With the rule gone, the service answers directly.
    let direct = curl(&net.a, &["-w", " %{http_code}", "-X", "POST", &format!("http://{SERVICE}/checkout")]);
    assert!(String::from_utf8_lossy(&direct.stdout).ends_with(" 200"), "{}", describe_output(&direct));
}

#[test]
fn an_http_proxy_with_upstream_original_reaches_the_intercepted_destination() {
    let net = NetnsPair::new();
    let _service = DemoTarget::start_in(Some(&net.a), SERVICE);
    let config = config_with_upstream("original", "original");
    let (mut proxy, admin) = start_proxy(&net.a, &config, &["--intercept", "8080=shop"]);

    // The proxy knows no address: it reads where curl was going from the redirected connection.
    let healthy = curl(&net.a, &["-w", " %{http_code}", &format!("http://{SERVICE}/health")]);
    assert_eq!(String::from_utf8_lossy(&healthy.stdout).trim(), "ok 200", "{}", describe_output(&healthy));
    // L7 toxics apply to those requests.
    abort_checkout(&net.a, &admin);
    let passed = curl(&net.a, &["-w", " %{http_code}", &format!("http://{SERVICE}/health")]);
    assert_eq!(String::from_utf8_lossy(&passed.stdout).trim(), "ok 200", "{}", describe_output(&passed));

    // With an L4 toxic the connection goes through the loopback hop; the original destination is still known.
    let latency = r#"{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":300}}"#;
    let added = curl(&net.a, &["-X", "POST", "-d", latency, &format!("{admin}/proxies/shop/toxics")]);
    assert!(added.status.success(), "{}", describe_output(&added));
    let started = std::time::Instant::now();
    let slow = curl(&net.a, &["-w", " %{http_code}", &format!("http://{SERVICE}/health")]);
    assert_eq!(String::from_utf8_lossy(&slow.stdout).trim(), "ok 200", "{}", describe_output(&slow));
    assert!(started.elapsed() >= Duration::from_millis(300), "latency not applied: {:?}", started.elapsed());

    let stats = curl(&net.a, &[&format!("{admin}/proxies/shop/stats")]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["http"]["requests_total"], 4, "every request went through the proxy: {stats}");
    assert_eq!(stats["upstream_connect_failures"], 0, "no dial failed: {stats}");
    let exited = terminate(&mut proxy);
    assert!(exited.status.success(), "{}", describe_output(&exited));
}

#[test]
fn after_a_sigkill_the_next_start_removes_the_rules() {
    let net = NetnsPair::new();
    let _service = DemoTarget::start_in(Some(&net.a), SERVICE);
    let config = config("sigkill");
    let (mut proxy, _) = start_proxy(&net.a, &config, &["--intercept", "8080=shop"]);
    assert_eq!(tables(&net).len(), 1);
    proxy.kill().unwrap(); // SIGKILL: no cleanup runs.
    proxy.wait().unwrap();
    assert_eq!(tables(&net).len(), 1, "the table outlives a SIGKILLed proxy");
    // Connections to the port now go nowhere: the redirect points at a dead listener.
    let broken = curl(&net.a, &[&format!("http://{SERVICE}/health")]);
    assert!(!broken.status.success(), "{}", describe_output(&broken));

    // The next start (intercepting or not) removes what the dead process left.
    let (mut next, _) = start_proxy(&net.a, &config, &[]);
    assert!(tables(&net).is_empty(), "stale table not removed: {:?}", tables(&net));
    let healthy = curl(&net.a, &["-w", " %{http_code}", &format!("http://{SERVICE}/health")]);
    assert_eq!(String::from_utf8_lossy(&healthy.stdout).trim(), "ok 200", "{}", describe_output(&healthy));
    let exited = terminate(&mut next);
    assert!(exited.status.success(), "{}", describe_output(&exited));
}

#[test]
fn a_bad_intercept_is_refused_before_anything_is_installed() {
    let net = NetnsPair::new();
    let config = config("bad");
    for (flag, expected) in [
        ("8080=nosuch", "--intercept 8080=nosuch: proxy not found"),
        ("eighty=shop", "expected a port number before `=`"),
        ("8080", "expected PORT=PROXY"),
    ] {
        let output = Command::new("ip")
            .args(["netns", "exec", &net.a])
            .arg(chaos_bin())
            .args(["proxy", "--port", "0", "--config"])
            .arg(&config)
            .args(["--intercept", flag])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flag}: {}", describe_output(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{flag}: {stderr}");
        assert!(tables(&net).is_empty(), "{flag} left a table");
    }
}
