//! The HTML report of real runs: `chaos demo` (the passing example, with its built-in target and proxy) and
//! `chaos run experiments/error-burst.yaml --html` (refuted) against a real `chaos proxy` and HTTP target. The
//! SVG is checked against the journal: every fault window rectangle's x positions are the journal's
//! injection and revert times through the chart's scale, a breach marker exists exactly when an SLO failed,
//! recovery is annotated. `chaos report JOURNAL` renders the same file again. Then a real headless chromium,
//! with the network off, loads the report from a file:// URL, takes a screenshot and dumps the DOM
//! (`CHAOS_TEST_SKIP=chromium` to skip; `UPDATE_SCREENSHOTS=1` writes docs/img/report.png).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chaos_controller::report::svg::{PLOT_LEFT, PLOT_RIGHT};
use chaos_test_support::skip;
use serde_json::Value;
use support::{
    ChaosProxy, DemoTarget, chaos_bin, describe_output, free_port, output_within, repo_path, temp_dir,
};

/// The refuted example's outputs (journal.json, report.html), run once for the tests that read them.
fn refuted_run() -> &'static PathBuf {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let server = ChaosProxy::start(&[]);
        let target = DemoTarget::start();
        let out = temp_dir("report", "refuted");
        let listen = format!("127.0.0.1:{}", free_port());
        let vars = [("api", server.url()), ("upstream", target.addr.to_string()), ("listen", listen)];
        // Relative, as a person types it: the report's rerun command shows it so.
        let mut cmd = support::chaos_run(None, Path::new("experiments/error-burst.yaml"), &vars, &out);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR")).arg("--html").arg(out.join("report.html"));
        let output = output_within(&mut cmd, Duration::from_secs(60));
        assert_eq!(output.status.code(), Some(1), "{}", describe_output(&output));
        out
    })
}

/// `chaos demo --reports DIR`: the passing example, with report.html.
fn demo_run() -> &'static (PathBuf, String) {
    static RUN: OnceLock<(PathBuf, String)> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = temp_dir("report", "demo");
        let mut cmd = Command::new(chaos_bin());
        cmd.args(["demo", "--reports"]).arg(&out);
        let output = output_within(&mut cmd, Duration::from_secs(60));
        assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
        (out, String::from_utf8_lossy(&output.stdout).into_owned())
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn journal(out: &Path) -> Value {
    serde_json::from_str(&read(&out.join("journal.json"))).unwrap()
}

/// The start tags `<NAME class="CLASS"…>` in `html`.
fn tags<'a>(html: &'a str, name: &str, class: &str) -> Vec<&'a str> {
    let open = format!("<{name} class=\"{class}\"");
    html.match_indices(&open).map(|(i, _)| &html[i..i + html[i..].find('>').unwrap()]).collect()
}

fn attr(tag: &str, name: &str) -> f64 {
    let key = format!(" {name}=\"");
    let start = tag.find(&key).unwrap_or_else(|| panic!("no {name} in {tag}")) + key.len();
    tag[start..start + tag[start..].find('"').unwrap()].parse().unwrap()
}

/// The fault windows the journal's timeline records: (injected, reverted) times of each fault step.
fn timeline_windows(j: &Value) -> Vec<(u64, u64)> {
    let timeline = j["timeline"].as_array().unwrap();
    let at = |kind: &str| -> Vec<u64> {
        timeline
            .iter()
            .filter(|e| e["kind"] == kind && e["ok"] == true)
            .map(|e| e["at_ms"].as_u64().unwrap())
            .collect()
    };
    at("fault_injected").into_iter().zip(at("fault_reverted")).collect()
}

/// Checks every chart of `html` against journal `j`: fault rectangles on the scale at the timeline's times,
/// breach markers exactly for the failed SLOs, recovery annotated for each SLO that recovered.
fn check_against_journal(html: &str, j: &Value) {
    let duration = j["duration_ms"].as_f64().unwrap();
    let x = |ms: u64| PLOT_LEFT + ms as f64 / duration * (PLOT_RIGHT - PLOT_LEFT);
    let windows = timeline_windows(j);
    assert_eq!(windows.len(), 1, "one fault step in the example: {}", j["timeline"]);
    let charts = html.matches("<svg ").count();
    let rects = tags(html, "rect", "fault");
    assert_eq!(rects.len(), charts * windows.len(), "every chart shades every fault window");
    for rect in &rects {
        let (start, end) = windows[0];
        assert!((attr(rect, "x") - x(start)).abs() <= 0.05, "x of {rect} is not {start} ms on the scale");
        let right = attr(rect, "x") + attr(rect, "width");
        assert!((right - x(end)).abs() <= 0.1, "the right edge of {rect} is not {end} ms on the scale");
    }
    let failed: Vec<&Value> = j["slos"].as_array().unwrap().iter().filter(|s| s["passed"] == false).collect();
    let breaches = tags(html, "g", "breach");
    assert_eq!(breaches.len(), failed.len(), "a breach marker per failed SLO, none for the others");
    for breach in breaches {
        let at = attr(breach, "data-at-ms") as u64;
        let method = j["phases"].as_array().unwrap().iter().find(|p| p["name"] == "method").unwrap();
        assert!(
            at >= method["start_ms"].as_u64().unwrap() && at <= method["end_ms"].as_u64().unwrap(),
            "the breach at {at} ms is outside the judged window {method}"
        );
        let marker = format!(r#"data-at-ms="{at}"><line x1="{:.1}""#, x(at));
        assert!(html.contains(&marker), "the breach line is not at {at} ms on the scale: {breach}");
    }
    let recovered =
        j["recovery"].as_array().unwrap().iter().filter(|r| !r["time_to_recover_ms"].is_null()).count();
    assert_eq!(tags(html, "g", "recovered").len(), recovered, "recovery annotated per SLO that recovered");
    assert!(html.matches(">recovered in ").count() == recovered);
}

#[test]
fn a_refuted_run_report_marks_the_breach_on_the_journal_times() {
    let out = refuted_run();
    let j = journal(out);
    assert_eq!(j["verdict"], "failed");
    let html = read(&out.join("report.html"));
    assert!(html.contains(r#"<p class="verdict failed" id="verdict">"#));
    assert!(html.contains("Checkout survives a 2-second burst of connection resets"));
    assert!(
        html.contains("<code>chaos run experiments/error-burst.yaml --seed 7</code>"),
        "the rerun command"
    );
    check_against_journal(&html, &j);
    // The journal's own series agree with the timeline and the verdict.
    let (start, end) = timeline_windows(&j)[0];
    assert_eq!(
        (j["faults"][0]["start_ms"].as_u64(), j["faults"][0]["end_ms"].as_u64()),
        (Some(start), Some(end))
    );
    let sli = j["slo_series"][0]["sli"].as_array().unwrap();
    let during = (start / 1000 + 1) as usize;
    assert!(sli[during].as_f64().unwrap() < 0.5, "every connection reset: {sli:?}");
    assert_eq!(sli[0], 1.0, "steady before the fault: {sli:?}");
    assert!(j["measured"][0]["during"]["error_ratio"].as_f64().unwrap() > 0.5, "{}", j["measured"]);
    assert_eq!(j["measured"][0]["before"]["error_ratio"], 0.0, "{}", j["measured"]);
}

#[test]
fn the_demo_writes_a_passing_report_without_a_breach() {
    let (out, stdout) = demo_run();
    let report = out.join("report.html");
    assert!(
        stdout.contains(&format!("HTML report: {}", std::path::absolute(&report).unwrap().display())),
        "the demo says where the report is: {stdout}"
    );
    let j = journal(out);
    assert_eq!(j["verdict"], "passed");
    let html = read(&report);
    check_against_journal(&html, &j);
    assert!(tags(&html, "g", "breach").is_empty());
    // Latency percentiles before, during and after the 100 ms fault.
    let summary = read(&out.join("summary.md"));
    let during = summary.lines().find(|l| l.starts_with("| load:shoppers | during")).expect(&summary);
    let p50: f64 = during.split('|').nth(5).unwrap().trim().trim_end_matches(" ms").parse().unwrap();
    assert!(p50 >= 90.0, "100 ms ± 10 ms added: {during}");
}

#[test]
fn chaos_report_renders_the_same_reports_from_the_journal() {
    let out = refuted_run();
    let again = temp_dir("report", "again");
    let output = output_within(
        Command::new(chaos_bin())
            .arg("report")
            .arg(out.join("journal.json"))
            .arg("--html")
            .arg(again.join("report.html"))
            .arg("--summary")
            .arg(again.join("summary.md"))
            .arg("--junit")
            .arg(again.join("sub/junit.xml")),
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    assert_eq!(read(&again.join("report.html")), read(&out.join("report.html")), "the same report");
    assert!(read(&again.join("summary.md")).contains("### Measured"));
    assert!(read(&again.join("sub/junit.xml")).contains("<failure"));

    // A journal that is not one: exit 2, named at line and column.
    let bad = again.join("bad.json");
    std::fs::write(&bad, "{\n  \"chaos_version\": 3\n}\n").unwrap();
    let output = output_within(
        Command::new(chaos_bin()).arg("report").arg(&bad).arg("--html").arg(again.join("x.html")),
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", bad.display())) && stderr.contains("not a chaos journal"),
        "{stderr}"
    );
    assert!(!again.join("x.html").exists());
    // No output asked for: a usage error.
    let output = output_within(Command::new(chaos_bin()).arg("report").arg(&bad), Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
}

#[test]
fn host_saturation_samples_are_series_and_charts() {
    let out = temp_dir("report", "saturation");
    let mut cmd = support::chaos_run(None, &repo_path("tests/data/host-saturation.yaml"), &[], &out);
    cmd.arg("--html").arg(out.join("report.html"));
    let output = output_within(&mut cmd, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let j = journal(&out);
    let sources: Vec<&str> =
        j["saturation"].as_array().unwrap().iter().map(|s| s["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["host:cpu", "host:load", "host:memory"]);
    let points = j["duration_ms"].as_u64().unwrap().div_ceil(j["step_ms"].as_u64().unwrap()) as usize;
    for s in j["saturation"].as_array().unwrap() {
        assert!(s["samples"].as_u64().unwrap() >= 3, "{s}");
        let peak = s["peak"].as_array().unwrap();
        assert_eq!(peak.len(), points, "{s}");
        assert!(peak.iter().filter_map(Value::as_f64).all(|v| v >= 0.0), "{s}");
        assert!(peak.iter().any(Value::is_f64), "{s}");
    }
    // Each SLO's series is the peak of its source, against its ceiling.
    for slo in j["slo_series"].as_array().unwrap() {
        let source =
            j["saturation"].as_array().unwrap().iter().find(|s| s["source"] == slo["source"]).unwrap();
        assert_eq!(slo["sli"], source["peak"], "{slo}");
    }
    let html = read(&out.join("report.html"));
    assert!(html.contains("<h2>Saturation</h2>"));
    assert_eq!(html.matches("<svg ").count(), 6, "3 SLO charts and 3 saturation charts");
    assert!(tags(&html, "g", "breach").is_empty(), "every ceiling held");
    assert!(tags(&html, "rect", "fault").is_empty(), "no fault in this run");
}

/// Kills and reaps a child process when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_run_through_a_controller_writes_the_html_report_here() {
    use std::io::BufRead as _;
    let server = ChaosProxy::start(&[]);
    let target = DemoTarget::start();
    let dir = temp_dir("report", "controller");
    let port = free_port();
    let mut controller = Command::new(chaos_bin())
        .args(["controller", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = std::io::BufReader::new(controller.stdout.take().unwrap()).lines().next();
    let _controller = Reaped(controller);
    assert_eq!(first.unwrap().unwrap(), format!("listening on 127.0.0.1:{port}"));
    let out = dir.join("out");
    let listen = format!("127.0.0.1:{}", free_port());
    let output = output_within(
        Command::new(chaos_bin())
            .args(["run", "--controller", &format!("http://127.0.0.1:{port}"), "--token-file"])
            .arg(dir.join("api.token"))
            .arg("experiments/error-burst.yaml")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["--quiet", "--seed", "7", "--var", &format!("api={}", server.url())])
            .args(["--var", &format!("upstream={}", target.addr), "--var", &format!("listen={listen}")])
            .arg("--html")
            .arg(out.join("report.html")),
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe_output(&output));
    let html = read(&out.join("report.html"));
    assert!(html.contains(r#"<p class="verdict failed" id="verdict">"#));
    assert_eq!(tags(&html, "g", "breach").len(), 1, "the controller's journal carries the series");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["report.html"], "the journal fetched for the report is not left behind");
}

/// Hosts chromium itself calls at start (time, component updates, accounts), whatever the page: what a proxy
/// sees from a blank page. Any other host in a proxied request came from the page.
const CHROMIUM_OWN_HOSTS: &[&str] = &[".google.com", ".googleapis.com", ".gstatic.com", ".gvt1.com"];

/// Runs chromium headless with the network off (every host unresolvable but the loopback proxy, every request
/// sent to that proxy: a listener of this test's that reads the request line and closes the connection) and a
/// fresh profile; stdout goes to `stdout` (a file: a DOM dump is larger than a pipe holds). Fails when the page
/// fetched anything: a proxied request for a host other than chromium's own services.
fn chromium(profile: &Path, args: &[String], stdout: &Path) -> std::process::ExitStatus {
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let mut requests: Vec<String> = Vec::new();
    let take = |requests: &mut Vec<String>| {
        while let Ok((mut conn, _)) = proxy.accept() {
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut head = [0u8; 512];
            let n = std::io::Read::read(&mut conn, &mut head).unwrap_or(0);
            let text = String::from_utf8_lossy(&head[..n]);
            requests.push(text.lines().next().unwrap_or("(nothing read)").to_string());
        }
    };
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--proxy-server={}", proxy.local_addr().unwrap()))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        take(&mut requests);
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took more than 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    take(&mut requests);
    let from_page: Vec<&String> = requests
        .iter()
        .filter(|line| {
            let target = line.split_whitespace().nth(1).unwrap_or("");
            let host = target.trim_start_matches("http://").trim_start_matches("https://");
            let host = host.split(['/', ':']).next().unwrap_or("");
            !CHROMIUM_OWN_HOSTS.iter().any(|own| host.ends_with(own))
        })
        .collect();
    assert!(from_page.is_empty(), "the page fetched something through the proxy: {from_page:?}");
    status
}

/// The proxy check can fail: a page with one remote image is caught.
#[test]
fn the_offline_check_catches_a_page_that_fetches() {
    if !skip::require("chromium", skip::program("chromium")) {
        return;
    }
    let work = temp_dir("report", "chromium-fetch");
    let page = work.join("fetch.html");
    std::fs::write(&page, r#"<html><body><img src="http://example.com/x.png">x</body></html>"#).unwrap();
    let url = format!("file://{}", std::path::absolute(&page).unwrap().display());
    let caught = std::panic::catch_unwind(|| {
        chromium(&work.join("profile"), &["--dump-dom".to_string(), url], &work.join("dom.html"))
    });
    let message = caught.expect_err("a fetching page passed the offline check");
    let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("example.com"), "{message}");
}

#[test]
fn chromium_renders_the_report_offline() {
    if !skip::require("chromium", skip::program("chromium")) {
        return;
    }
    let out = refuted_run();
    let report = std::path::absolute(out.join("report.html")).unwrap();
    let url = format!("file://{}", report.display());
    let work = temp_dir("report", "chromium");
    let shot = if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        repo_path("docs/img/report.png")
    } else {
        work.join("report.png")
    };
    let _ = std::fs::remove_file(&shot);
    let status = chromium(
        &work.join("profile-shot"),
        &[format!("--screenshot={}", shot.display()), "--window-size=1200,2000".to_string(), url.clone()],
        &work.join("shot.out"),
    );
    assert!(status.success(), "chromium --screenshot: {status}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1200, 2000));
    assert!(png.len() > 20_000, "a blank page compresses to a few kilobytes; this is {} bytes", png.len());

    let dom = work.join("dom.html");
    let status = chromium(&work.join("profile-dom"), &["--dump-dom".to_string(), url], &dom);
    assert!(status.success(), "chromium --dump-dom: {status}");
    let dom = read(&dom);
    assert!(
        dom.contains(
            r#"<p class="verdict failed" id="verdict"><span aria-hidden="true">✘</span> failed</p>"#
        ),
        "{dom}"
    );
    assert!(dom.contains("<svg class=\"chart\""), "the charts are in the DOM");
    assert!(!dom.contains("ERR_"), "an error page instead of the report");
}
