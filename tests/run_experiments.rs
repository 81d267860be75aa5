//! End-to-end tests of `chaos run` with real processes: a `chaos proxy`, an HTTP demo target, and the
//! runner itself. A passing experiment, one refuted by an SLO, one aborted by the tripwire (fault verified
//! removed), one interrupted by SIGTERM (fault removed, report written, exit 3), an invalid file (exit 2 with
//! file:line:column, nothing touched), and `--dry-run`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    ChaosProxy, DemoTarget, Victim, chaos_bin, describe_output, free_port, http_json, process_state,
    read_journal, repo_path, temp_dir, wait_until,
};

fn run(file: &Path, vars: &[(&str, String)], out: &Path) -> Command {
    let mut cmd = support::chaos_run(None, file, vars, out);
    cmd.arg("--junit").arg(out.join("junit.xml"));
    cmd.arg("--summary").arg(out.join("summary.md"));
    cmd
}

/// A proxy that exists before the run (so the test can look at its toxics after the run).
fn existing_proxy(server: &ChaosProxy, name: &str, upstream: SocketAddr) -> String {
    let listen = format!("127.0.0.1:{}", free_port());
    let body = format!(r#"{{"name":"{name}","listen":"{listen}","upstream":"{upstream}"}}"#);
    let (status, answer) = http_json(server.api, "POST", "/proxies", Some(&body));
    assert_eq!(status, 201, "{answer}");
    answer["listen"].as_str().unwrap().to_string()
}

fn toxics(server: &ChaosProxy, proxy: &str) -> usize {
    http_json(server.api, "GET", &format!("/proxies/{proxy}/toxics"), None)
        .1
        .as_array()
        .map_or(usize::MAX, Vec::len)
}

#[test]
fn a_hypothesis_that_holds_passes_with_reports() {
    let server = ChaosProxy::start(&[]);
    let target = DemoTarget::start();
    let out = temp_dir("run", "pass");
    let listen = format!("127.0.0.1:{}", free_port());
    let vars = [("api", server.url()), ("upstream", target.addr.to_string()), ("listen", listen)];
    let output = run(&repo_path("experiments/latency-on-dependency.yaml"), &vars, &out).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "passed");
    assert_eq!(j["seed"], 7);
    let kinds: Vec<&str> =
        j["timeline"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"fault_injected") && kinds.contains(&"fault_reverted"), "{kinds:?}");
    assert!(j["slos"].as_array().unwrap().iter().all(|s| s["passed"] == true), "{}", j["slos"]);
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase").count(), 4, "2 SLOs + the probe before and after:\n{junit}");
    assert!(std::fs::read_to_string(out.join("summary.md")).unwrap().contains("passed"));
    // The proxy the run created is gone, and with it every toxic.
    let (_, proxies) = http_json(server.api, "GET", "/proxies", None);
    assert_eq!(proxies, serde_json::json!({}));
}

#[test]
fn a_refuted_hypothesis_fails_with_numbers() {
    let server = ChaosProxy::start(&[]);
    let target = DemoTarget::start();
    let out = temp_dir("run", "refuted");
    let listen = format!("127.0.0.1:{}", free_port());
    let vars = [("api", server.url()), ("upstream", target.addr.to_string()), ("listen", listen)];
    let output = run(&repo_path("experiments/error-burst.yaml"), &vars, &out).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe_output(&output));
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "failed");
    let reason = j["reasons"][0].as_str().unwrap();
    assert!(
        reason.starts_with("availability: ")
            && reason.contains("requests")
            && reason.contains("objective 99%"),
        "{reason}"
    );
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
}

#[test]
fn the_tripwire_aborts_and_the_fault_is_removed() {
    let server = ChaosProxy::start(&[]);
    let target = DemoTarget::start();
    let listen = existing_proxy(&server, "existing", target.addr);
    let out = temp_dir("run", "tripwire");
    let vars = [("api", server.url()), ("listen", listen)];
    let started = Instant::now();
    let output = run(&repo_path("tests/data/tripwire.yaml"), &vars, &out).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe_output(&output));
    assert!(started.elapsed() < Duration::from_secs(45), "the 60 s fault was not cut short");
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "failed");
    assert!(
        j["reasons"][0].as_str().unwrap().starts_with("guardrail aborted the run: tripwire"),
        "{}",
        j["reasons"]
    );
    assert_eq!(toxics(&server, "existing"), 0, "the fault outlived the abort");
}

#[test]
fn sigterm_reverts_reports_and_exits_3() {
    let server = ChaosProxy::start(&[]);
    let target = DemoTarget::start();
    let listen = existing_proxy(&server, "existing", target.addr);
    let out = temp_dir("run", "sigterm");
    let vars = [("api", server.url()), ("listen", listen)];
    let mut child = run(&repo_path("tests/data/long-fault.yaml"), &vars, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the fault to be injected", Duration::from_secs(20), || toxics(&server, "existing") == 1);
    let status = exit_after_sigterm(&mut child);
    assert_eq!(status.code(), Some(3));
    assert_eq!(toxics(&server, "existing"), 0, "the fault outlived SIGTERM");
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "inconclusive");
    assert!(j["reasons"][0].as_str().unwrap().starts_with("interrupted"), "{}", j["reasons"]);
}

#[test]
fn an_invalid_file_exits_2_with_its_position_and_touches_nothing() {
    let server = ChaosProxy::start(&[]);
    let output = Command::new(chaos_bin())
        .args(["run", "tests/data/invalid.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tests/data/invalid.yaml:6:43: unknown target `shoop`"), "{stderr}");
    let validate = Command::new(chaos_bin())
        .args(["validate", "tests/data/invalid.yaml", "experiments/latency-on-dependency.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&validate.stdout).contains("experiments/latency-on-dependency.yaml: ok"));
    assert_eq!(http_json(server.api, "GET", "/proxies", None).1, serde_json::json!({}));
}

#[test]
fn dry_run_prints_the_plan_and_touches_nothing() {
    let server = ChaosProxy::start(&[]);
    let output = Command::new(chaos_bin())
        .args([
            "run",
            "--dry-run",
            "experiments/latency-on-dependency.yaml",
            "--var",
            &format!("api={}", server.url()),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("target shop: proxy shop-latency") && stdout.contains("slow shop: latency on shop"),
        "{stdout}"
    );
    assert_eq!(http_json(server.api, "GET", "/proxies", None).1, serde_json::json!({}));
}

/// `chaos run --dry-run FILE` for an experiment written to `out/dry.yaml`.
fn dry_run(out: &Path, yaml: &str) -> std::process::Output {
    let file = out.join("dry.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut cmd = Command::new(chaos_bin());
    cmd.args(["run", "--dry-run", "--quiet"]).arg(&file).arg("--state-dir").arg(out.join("state"));
    support::output_within(&mut cmd, Duration::from_secs(30))
}

#[test]
fn a_dry_run_numbers_every_step_and_shows_each_process_command_line_and_user() {
    let server = ChaosProxy::start(&[]);
    let target = DemoTarget::start();
    existing_proxy(&server, "existing", target.addr);
    // A long but unique argument: its command line is cut, and the cut says so.
    let victim = Victim::start(&"0".repeat(120));
    let out = temp_dir("run", "dry-run-detail");
    let yaml = format!(
        r#"apiVersion: chaos/v1
title: every step numbered
fire_and_forget: true
targets:
  shop: {{ proxy: {{ api: "{api}", name: existing }} }}
  victims: {{ processes: {{ cmdline: "{marker}" }} }}
method:
  - {{ name: slow shop, fault: latency, target: shop, with: {{ latency: 100 }}, duration: 2s }}
  - {{ wait: 1s }}
  - parallel:
      - {{ fault: reset_peer, target: shop, duration: 1s }}
      - {{ name: stop the victim, fault: pause, target: victims, duration: 1s }}
      - parallel:
          - {{ wait: 500ms }}
rollbacks:
  - {{ name: last word, wait: 100ms }}
"#,
        api = server.url(),
        marker = victim.marker.replace('\\', "\\\\"),
    );
    let output = dry_run(&out, &yaml);
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", victim.pid())).unwrap();
    let cmdline = String::from_utf8(cmdline).unwrap().trim_end_matches('\0').replace('\0', " ");
    assert!(cmdline.chars().count() > 100, "{cmdline}");
    let shown: String = cmdline.chars().take(99).collect();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let process_line = format!("    pid {} (user {}): {shown}…\n", victim.pid(), user.trim());
    assert!(stdout.contains("  target victims: 1 process\n"), "{stdout}");
    assert!(stdout.contains(&process_line), "{process_line:?} in:\n{stdout}");
    // What the agent would do, under the same number as the step.
    let agent_line =
        format!("  3.2 stop the victim: on this host: process-pause on pid {} (sleep)\n", victim.pid());
    for line in [
        "  method:\n",
        "    1 slow shop: latency on shop with {\"latency\":100} for 2s\n",
        "    2 wait 1s\n",
        "    3 in parallel:\n",
        "      3.1 reset_peer on shop for 1s\n",
        "      3.2 stop the victim: pause on victims for 1s\n",
        "      3.3 in parallel:\n",
        "        3.3.1 wait 500ms\n",
        "  rollbacks:\n",
        "    rollback 1 last word: wait 100ms\n",
        &agent_line,
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
    assert_eq!(process_state(victim.pid()), Some('S'), "the dry run touched the victim");
    assert_eq!(toxics(&server, "existing"), 0);
}

#[test]
fn a_dry_run_that_cannot_resolve_a_target_names_it_and_exits_2_for_the_files_fault_3_for_the_hosts() {
    let server = ChaosProxy::start(&[]);
    let out = temp_dir("run", "dry-run-unresolved");
    let down = format!("http://127.0.0.1:{}", free_port());
    let proxy = |api: &str, name: &str| {
        format!(
            "apiVersion: chaos/v1\ntitle: t\nfire_and_forget: true\ntargets:\n  shop: {{ proxy: {{ api: \"{api}\", \
             name: {name} }} }}\nmethod:\n  - {{ fault: latency, target: shop, with: {{ latency: 1 }}, duration: 1s }}\n"
        )
    };
    let processes = |selector: &str| {
        format!(
            "apiVersion: chaos/v1\ntitle: t\nfire_and_forget: true\ntargets:\n  victims: {{ processes: {selector} }}\n\
             method:\n  - {{ fault: kill, target: victims }}\n"
        )
    };
    let cases = [
        // The file's fault: it must change before it can ever run.
        (
            proxy(&server.url(), "no-such-proxy"),
            2,
            format!("target shop: the proxy API {} has no proxy named \"no-such-proxy\" (it has none)", server.url()),
        ),
        (processes("{ pid: 1 }"), 2, "target victims: policy rule 'pid-1' refused".to_string()),
        (
            "apiVersion: chaos/v1\ntitle: t\nfire_and_forget: true\ntargets:\n  web: { hosts: { role: web } }\n\
             method:\n  - { fault: cpu_stress, target: web, with: { workers: 1 }, duration: 1s }\n"
                .to_string(),
            2,
            "target web selects hosts by label (`hosts`): run it through a controller".to_string(),
        ),
        // The host's: the same file may run once the API is up or the process exists.
        (proxy(&down, "shop"), 3, format!("target shop: proxy API {down} unreachable")),
        (
            processes(&format!("{{ cmdline: \"^sleep 600 0\\\\.00{}424242$\" }}", std::process::id())),
            3,
            "target victims: selector".to_string(),
        ),
    ];
    for (yaml, code, message) in cases {
        let output = dry_run(&out, &yaml);
        assert_eq!(output.status.code(), Some(code), "{yaml}\n{}", describe_output(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("cannot resolve targets: {message}")), "{message:?} in:\n{stderr}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("dry run: nothing was touched"));
    }
}

#[test]
fn a_run_that_judges_nothing_exits_3_and_says_so() {
    let server = ChaosProxy::start(&[]);
    let target = DemoTarget::start();
    existing_proxy(&server, "existing", target.addr);
    let out = temp_dir("run", "judges-nothing");
    let output = support::output_within(
        &mut run(&repo_path("tests/data/judges-nothing.yaml"), &[("api", server.url())], &out),
        Duration::from_secs(60),
    );
    assert_eq!(output.status.code(), Some(3), "{}", describe_output(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("  - nothing was judged: no SLO and no steady-state probe"), "{stdout}");
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "inconclusive", "{}", j["reasons"]);
    // The fault itself ran and was removed: only the judging is missing.
    let timeline = j["timeline"].to_string();
    assert!(timeline.contains("fault_reverted"), "{timeline}");
    assert_eq!(toxics(&server, "existing"), 0);
}

#[test]
fn schema_is_json_schema() {
    let output = Command::new(chaos_bin()).arg("schema").output().unwrap();
    assert!(output.status.success());
    let schema: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(schema["$schema"].as_str().unwrap().contains("json-schema.org"));
}

#[test]
fn the_quick_start_demo_runs_the_example_end_to_end() {
    let out = temp_dir("run", "demo");
    let output = Command::new(chaos_bin()).args(["demo", "--reports"]).arg(&out).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("fault injected: slow shop") && stderr.contains("fault reverted: slow shop"),
        "{stderr}"
    );
    assert_eq!(read_journal(&out)["verdict"], "passed");
    assert!(out.join("junit.xml").exists() && out.join("summary.md").exists());
    // Issue 12 item 14: stdout has a line per SLO and, under each, its time to recover.
    let stdout = String::from_utf8_lossy(&output.stdout);
    for slo in ["availability", "fast"] {
        let line = stdout.lines().position(|l| l.starts_with(&format!("  slo ok: {slo}: "))).expect(&stdout);
        let next = stdout.lines().nth(line + 1).unwrap_or_default();
        assert!(next.starts_with("    time to recover: "), "{slo}: {stdout}");
    }
}

/// Issue 12 item 14: the tour claims every L4 fault, and shows each one measured (the proxy's own list of
/// toxic types, less the L7 ones and `noop`).
#[test]
fn the_tour_shows_every_l4_fault_measured() {
    let output = Command::new(chaos_bin()).args(["demo", "--tour", "--samples", "20"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let l4 = chaos_proxy::toxics::ToxicKind::TYPES
        .iter()
        .filter(|t| **t != "noop" && !t.starts_with("http_") && !t.starts_with("grpc_"));
    for kind in l4 {
        let line =
            stdout.lines().find(|l| l.starts_with(kind)).unwrap_or_else(|| panic!("no {kind}: {stdout}"));
        assert!(line.contains(" ok "), "{kind} not measured as expected: {line}");
    }
}

#[test]
fn a_sigkilled_runner_leaves_no_fault_past_its_deadline() {
    // SIGKILL runs no revert code: the toxic's TTL on the proxy (duration + 10 s) is what removes it.
    let server = ChaosProxy::start(&[]);
    let target = DemoTarget::start();
    existing_proxy(&server, "existing", target.addr);
    let out = temp_dir("run", "sigkill");
    let vars = [("api", server.url())];
    let mut child = run(&repo_path("tests/data/short-fault.yaml"), &vars, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the fault to be injected", Duration::from_secs(20), || toxics(&server, "existing") == 1);
    let killed = Instant::now();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (_, list) = http_json(server.api, "GET", "/proxies/existing/toxics", None);
    assert_eq!(list[0]["ttl"], 11_000, "the toxic carries its deadline: {list}");
    wait_until("the toxic to expire by itself", Duration::from_secs(20), || toxics(&server, "existing") == 0);
    assert!(killed.elapsed() < Duration::from_secs(12), "removed only after {:?}", killed.elapsed());
}

#[test]
fn sigterm_during_recovery_is_still_inconclusive() {
    let server = ChaosProxy::start(&[]);
    let target = DemoTarget::start();
    let listen = existing_proxy(&server, "existing", target.addr);
    let out = temp_dir("run", "sigterm-recovery");
    let vars = [("api", server.url()), ("listen", listen)];
    let mut child = run(&repo_path("tests/data/long-recovery.yaml"), &vars, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the fault to be injected", Duration::from_secs(20), || toxics(&server, "existing") == 1);
    wait_until("the fault to be reverted", Duration::from_secs(20), || toxics(&server, "existing") == 0);
    let status = exit_after_sigterm(&mut child);
    assert_eq!(status.code(), Some(3), "an interrupted run is inconclusive even after its faults ended");
    assert_eq!(read_journal(&out)["verdict"], "inconclusive");
}

/// Sends SIGTERM to a running `chaos run` and waits (with a deadline) for it to exit.
fn exit_after_sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < end, "chaos run did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn validate_refuses_variables_that_multiply_each_other_quickly() {
    // 704 bytes whose variables would expand to 16 GiB: refused at the reference that passes the limit.
    let started = Instant::now();
    let output = support::output_within(
        Command::new(chaos_bin())
            .args(["validate", "tests/data/multiplying-vars.yaml"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(
        report.contains("tests/data/multiplying-vars.yaml:11:8: variables expand to more than 1048576 bytes"),
        "{report}"
    );
}
