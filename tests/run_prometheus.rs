//! End-to-end tests of SLOs judged by a real Prometheus: a `chaos proxy --proxy-metrics`, an HTTP demo
//! target, a `prometheus` process scraping the proxy's /metrics every second (loopback only, its own
//! temporary directory), and `chaos run` reading good/total counters from it. One hypothesis holds, one is
//! refuted; both verdicts quote the counted numbers.
//!
//! Needs the `prometheus` binary (Debian: `apt-get install prometheus`; .ci/run installs it). Without it the
//! tests fail unless `CHAOS_TEST_SKIP=prometheus` says to skip them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chaos_test_support::skip;
use serde_json::Value;
use support::{ChaosProxy, DemoTarget, chaos_run, describe_output, free_port, repo_path, temp_dir};

/// A `prometheus` process on a free loopback port that scrapes one target every second under the job
/// `chaos-proxy`; killed and its directory removed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(name: &str, scrape: SocketAddr) -> Prometheus {
        let dir = temp_dir("run", &format!("prometheus-{name}"));
        // Nothing but the one loopback target: no alertmanager, no remote write, no self-scrape.
        let config = format!(
            "global: {{ scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }}\n\
             scrape_configs: [{{ job_name: chaos-proxy, static_configs: [{{ targets: [\"{scrape}\"] }}] }}]"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `prometheus` ({e}): install it with `apt-get install prometheus`")
            });
        Prometheus { child, addr, dir }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until Prometheus has scraped its target (`up == 1`), failing with its log if it exits.
    fn wait_scraped(&mut self, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            let answer = get(self.addr, "/api/v1/query?query=up").unwrap_or(Value::Null);
            if answer["data"]["result"][0]["value"][1] == "1" {
                return;
            }
            assert!(
                Instant::now() < end,
                "prometheus did not scrape the proxy within {deadline:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP GET with a JSON answer; `None` while nothing listens or the answer is not JSON.
fn get(addr: SocketAddr, path: &str) -> Option<Value> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(conn, "GET {path} HTTP/1.1\r\nHost: prometheus\r\nConnection: close\r\n\r\n").ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    serde_json::from_str(reply.split_once("\r\n\r\n")?.1).ok()
}

/// The proxy, the target and Prometheus, up and scraping.
fn stack(name: &str) -> (ChaosProxy, DemoTarget, Prometheus) {
    let server = ChaosProxy::start(&["--proxy-metrics"]);
    let target = DemoTarget::start();
    let mut prometheus = Prometheus::start(name, server.api);
    prometheus.wait_scraped(Duration::from_secs(15));
    (server, target, prometheus)
}

/// The journal's `availability` SLO, checked to have judged enough counted events.
fn availability(journal: &Value) -> &Value {
    let slo = &journal["slos"][0];
    assert_eq!(slo["name"], "availability", "{slo}");
    let total = slo["total"].as_u64().unwrap();
    assert!(total >= 100, "too few events counted from prometheus: {slo}");
    slo
}

#[test]
fn an_slo_on_prometheus_counters_passes_with_the_counted_numbers() {
    if !skip::require("prometheus", skip::program("prometheus")) {
        return;
    }
    let (server, target, prometheus) = stack("pass");
    let out = temp_dir("run", "journal-pass");
    let vars = [
        ("api", server.url()),
        ("upstream", target.addr.to_string()),
        ("listen", format!("127.0.0.1:{}", free_port())),
        ("prometheus", prometheus.url()),
    ];
    let output =
        chaos_run(None, &repo_path("experiments/prometheus-slo.yaml"), &vars, &out).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\nprometheus log:\n{}",
        describe_output(&output),
        prometheus.log()
    );
    let j: Value = serde_json::from_str(&std::fs::read_to_string(out.join("journal.json")).unwrap()).unwrap();
    assert_eq!(j["verdict"], "passed", "{}", j["reasons"]);
    let slo = availability(&j);
    assert_eq!(slo["passed"], true);
    assert_eq!(slo["good"], slo["total"], "no connection failed, so every counted event is good: {slo}");
    // The reason quotes what Prometheus counted: "availability: 100% of 262 requests succeeded …".
    let reason = slo["reason"].as_str().unwrap();
    let total = slo["total"].to_string();
    assert!(
        reason.starts_with("availability: ") && reason.contains(&format!("of {total} requests")),
        "{reason}"
    );
    assert!(j["reasons"].as_array().unwrap().iter().any(|r| r == reason), "{}", j["reasons"]);
    assert!(
        j["probes"].as_array().unwrap().iter().any(|p| p["name"] == "scraped" && p["ok"] == true),
        "{}",
        j["probes"]
    );
}

#[test]
fn an_slo_on_prometheus_counters_is_refuted_by_upstream_failures() {
    if !skip::require("prometheus", skip::program("prometheus")) {
        return;
    }
    let (server, target, prometheus) = stack("refuted");
    let out = temp_dir("run", "journal-refuted");
    let vars = [
        ("api", server.url()),
        ("upstream", target.addr.to_string()),
        ("listen", format!("127.0.0.1:{}", free_port())),
        ("hop", format!("127.0.0.1:{}", free_port())),
        ("prometheus", prometheus.url()),
    ];
    let output =
        chaos_run(None, &repo_path("tests/data/prometheus-refuted.yaml"), &vars, &out).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}\nprometheus log:\n{}",
        describe_output(&output),
        prometheus.log()
    );
    let j: Value = serde_json::from_str(&std::fs::read_to_string(out.join("journal.json")).unwrap()).unwrap();
    assert_eq!(j["verdict"], "failed");
    let slo = availability(&j);
    assert_eq!(slo["passed"], false);
    let (good, total) = (slo["good"].as_u64().unwrap(), slo["total"].as_u64().unwrap());
    // 3 s of failed dials at 50/s: far more than the 1% the objective allows.
    assert!(total - good >= 50, "{slo}");
    let reason = slo["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("availability: ")
            && reason.contains(&format!("of {total} requests"))
            && reason.contains("objective 99%"),
        "{reason}"
    );
    assert!(j["reasons"].as_array().unwrap().iter().any(|r| r == reason), "{}", j["reasons"]);
}
