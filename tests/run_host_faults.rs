//! End-to-end tests of host faults in `chaos run` and of `chaos agent`: real stress workers, real files, real
//! nftables rules inside network namespaces the tests create, and SIGKILL of the process holding the faults
//! followed by the journal replay (by the next start, or by the break-glass `chaos agent revert-all`).
//!
//! Every test uses its own state directory and scratch directory, and only signals processes it started.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{
    DemoTarget, NetnsPair, Victim, chaos_bin, children_named, describe_output, process_state, read_journal,
    repo_path, temp_dir, wait_until,
};

/// How long one `chaos run` may take before the test gives up on it.
const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// `chaos run FILE --seed 3 --quiet --journal OUT/journal.json --state-dir OUT/state --var ...`, optionally
/// inside a network namespace.
fn run_command(netns: Option<&str>, file: &Path, vars: &[(&str, String)], out: &Path) -> Command {
    let mut cmd = support::chaos_run(netns, file, vars, out);
    cmd.arg("--state-dir").arg(out.join("state"));
    cmd
}

/// A fresh scratch directory under the system temp dir, which the default agent policy allows disk faults in.
fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-host-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chaos(args: &[&str]) -> Output {
    Command::new(chaos_bin()).args(args).output().unwrap()
}

/// Files in `dir` whose names start with `prefix`.
fn files(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn journal_records(state: &Path) -> usize {
    std::fs::read_dir(state.join("journal"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
        .unwrap_or(0)
}

fn timeline_details(j: &serde_json::Value, kind: &str) -> Vec<String> {
    j["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| format!("{}: {}", e["name"].as_str().unwrap_or(""), e["detail"].as_str().unwrap_or("")))
        .collect()
}

#[test]
fn the_host_pressure_example_applies_real_stress_and_leaves_nothing_behind() {
    let shop = DemoTarget::start();
    let out = temp_dir("host", "pressure");
    let scratch = scratch_dir("pressure");
    let vars = [
        ("listen", shop.addr.to_string()),
        ("scratch", scratch.display().to_string()),
        ("duration", "3s".to_string()),
    ];
    let child = run_command(None, &repo_path("experiments/host-pressure.yaml"), &vars, &out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runner = child.id();

    // While the method runs: the fill file, the IO file and the workers are really there.
    wait_until("the disk fill and IO files to appear", Duration::from_secs(15), || {
        files(&scratch, "chaos-fill-").len() == 1 && files(&scratch, "chaos-io-").len() == 1
    });
    wait_until("the stress workers to run", Duration::from_secs(5), || {
        !children_named(runner, "chaos-cpu").is_empty()
            && children_named(runner, "chaos-mem").len() == 1
            && children_named(runner, "chaos-io").len() == 1
    });
    let fill = scratch.join(&files(&scratch, "chaos-fill-")[0]);
    let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&fill).unwrap());
    assert!(blocks * 512 >= 64 << 20, "the fill file holds {} bytes on disk", blocks * 512);
    // The worker is listed as soon as it is forked; it reports ready once every page is touched.
    let mem_worker = children_named(runner, "chaos-mem")[0];
    let rss_kib = || -> u64 {
        std::fs::read_to_string(format!("/proc/{mem_worker}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    wait_until("the memory worker to hold 128 MiB", Duration::from_secs(5), || rss_kib() >= 126 * 1024);

    let output = support::wait_within(child, RUN_DEADLINE);
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "passed", "{}", j["reasons"]);
    let injected = timeline_details(&j, "fault_injected");
    let reverted = timeline_details(&j, "fault_reverted");
    assert_eq!(injected.len(), 4, "{injected:?}");
    assert_eq!(reverted.len(), 4, "{reverted:?}");
    for name in ["burn the CPUs", "squeeze memory", "fill the disk", "hammer the disk"] {
        assert!(injected.iter().any(|d| d.starts_with(name)), "{name} not injected: {injected:?}");
    }

    // Nothing left: no files, no workers, no undo records.
    assert!(files(&scratch, "chaos-").is_empty(), "{:?}", files(&scratch, "chaos-"));
    for comm in ["chaos-cpu", "chaos-mem", "chaos-io"] {
        assert!(children_named(runner, comm).is_empty(), "{comm} workers left");
    }
    assert_eq!(journal_records(&out.join("state")), 0);
}

#[test]
fn a_network_partition_refutes_the_hypothesis_and_its_rules_are_gone_after() {
    let net = NetnsPair::new();
    let listen = format!("{}:8080", net.addr_b);
    let _shop = DemoTarget::start_in(Some(&net.b), &listen);
    let out = temp_dir("host", "partition");
    let vars = [("shop", net.addr_b.to_string()), ("port", "8080".to_string())];
    let child = run_command(Some(&net.a), &repo_path("tests/data/host-partition.yaml"), &vars, &out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = false;
    wait_until("the partition's table to appear in the runner's namespace", Duration::from_secs(15), || {
        seen = net.chaos_tables(&net.a).len() == 1;
        seen
    });
    let output = support::wait_within(child, RUN_DEADLINE);
    assert_eq!(output.status.code(), Some(1), "{}", describe_output(&output));
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "failed", "{}", j["reasons"]);
    let slo = &j["slos"][0];
    assert_eq!(slo["name"], "availability");
    assert_eq!(slo["passed"], false, "{slo}");
    let injected = timeline_details(&j, "fault_injected");
    assert!(injected.iter().any(|d| d.contains("table inet chaos_agent_")), "{injected:?}");
    assert!(net.chaos_tables(&net.a).is_empty(), "rules left: {:?}", net.chaos_tables(&net.a));
    assert_eq!(journal_records(&out.join("state")), 0);
    // The shop is reachable again from the runner's namespace.
    let shop = std::net::SocketAddr::from((net.addr_b, 8080));
    assert!(support::connects_from(&net.a, shop), "the shop is still unreachable after the run");
}

/// Starts `chaos run tests/data/long-pause.yaml`, waits until the pause, the fill and the CPU worker are all in
/// place, then SIGKILLs the runner. Returns the scratch directory.
fn kill_a_run_holding_faults(victim: &Victim, net: &NetnsPair, out: &Path, name: &str) -> std::path::PathBuf {
    let scratch = scratch_dir(name);
    let vars = [
        ("victim", victim.marker.clone()),
        ("scratch", scratch.display().to_string()),
        ("netns", net.a.clone()),
    ];
    let mut child = run_command(None, &repo_path("tests/data/long-pause.yaml"), &vars, out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runner = child.id();
    wait_until("the pause, the fill and the worker", Duration::from_secs(15), || {
        process_state(victim.pid()) == Some('T')
            && files(&scratch, "chaos-fill-").len() == 1
            && children_named(runner, "chaos-cpu").len() == 1
            && net.chaos_tables(&net.a).len() == 1
    });
    let worker = children_named(runner, "chaos-cpu")[0];
    // The watchdog would revert everything the moment the runner dies (tests/kill_matrix.rs proves it); killed
    // first, it leaves what a runner and its watchdog both dying (or a reboot) leaves: records to replay.
    let watchdogs = support::watchdogs_of(runner);
    assert_eq!(watchdogs.len(), 1, "the runner should have one watchdog");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watchdogs[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.kill().unwrap(); // SIGKILL: no revert path runs in the runner.
    child.wait().unwrap();
    // The worker dies with its parent (parent-death signal); the pause and the file outlive it.
    wait_until("the stress worker to die with the runner", Duration::from_secs(5), || {
        process_state(worker).is_none_or(|s| s == 'Z')
    });
    assert_eq!(process_state(victim.pid()), Some('T'), "the pause should outlive a SIGKILLed runner");
    assert_eq!(files(&scratch, "chaos-fill-").len(), 1);
    assert_eq!(net.chaos_tables(&net.a).len(), 1, "the table should outlive a SIGKILLed runner");
    assert_eq!(journal_records(&out.join("state")), 4, "one undo record per fault");
    scratch
}

#[test]
fn after_a_sigkill_the_break_glass_revert_all_puts_everything_back() {
    let victim = Victim::start("1");
    let net = NetnsPair::new();
    let out = temp_dir("host", "sigkill-revert-all");
    let scratch = kill_a_run_holding_faults(&victim, &net, &out, &format!("kill-{}", victim.pid()));
    let state = out.join("state");
    let state_arg = state.display().to_string();

    let status = chaos(&["agent", "status", "--state-dir", &state_arg, "--json"]);
    assert!(status.status.success(), "{}", describe_output(&status));
    let records: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let kinds: Vec<&str> = records.as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    for kind in ["process-pause", "disk-fill", "cpu-stress", "network-partition"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }

    let revert = chaos(&["agent", "revert-all", "--state-dir", &state_arg]);
    assert_eq!(revert.status.code(), Some(0), "{}", describe_output(&revert));
    let stdout = String::from_utf8_lossy(&revert.stdout);
    assert_eq!(stdout.matches("reverted: fault-").count(), 4, "{stdout}");
    assert_ne!(process_state(victim.pid()), Some('T'), "the victim is still stopped");
    assert!(files(&scratch, "chaos-").is_empty());
    assert!(net.chaos_tables(&net.a).is_empty(), "the table is still there");
    assert_eq!(journal_records(&state), 0);

    // Nothing left: a second break-glass run finds nothing and succeeds.
    let again = chaos(&["agent", "revert-all", "--state-dir", &state_arg]);
    assert_eq!(again.status.code(), Some(0), "{}", describe_output(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to revert"));
}

#[test]
fn after_a_sigkill_the_next_run_replays_the_journal_first() {
    let victim = Victim::start("2");
    let net = NetnsPair::new();
    let out = temp_dir("host", "sigkill-next-run");
    let scratch = kill_a_run_holding_faults(&victim, &net, &out, &format!("kill-{}", victim.pid()));

    // The next run that needs the host agent replays the orphaned records before anything else.
    let spec = out.join("short.yaml");
    std::fs::write(&spec, "kind: cpu-stress\nworkers: 1\nload: 10\n").unwrap();
    let state = out.join("state").display().to_string();
    let next =
        chaos(&["agent", "inject", spec.to_str().unwrap(), "--duration", "100ms", "--state-dir", &state]);
    assert_eq!(next.status.code(), Some(0), "{}", describe_output(&next));
    let stdout = String::from_utf8_lossy(&next.stdout);
    assert_eq!(stdout.matches("reverted, left by a previous process").count(), 4, "{stdout}");
    assert_ne!(process_state(victim.pid()), Some('T'), "the victim is still stopped");
    assert!(files(&scratch, "chaos-").is_empty());
    assert!(net.chaos_tables(&net.a).is_empty(), "the table is still there");
    assert_eq!(journal_records(&out.join("state")), 0);
}

#[test]
fn agent_inject_holds_faults_and_sigterm_reverts_them_all() {
    let victim = Victim::start("3");
    let net = NetnsPair::new();
    let out = temp_dir("host", "inject-sigterm");
    let scratch = scratch_dir("inject-sigterm");
    let spec = out.join("faults.yaml");
    std::fs::write(
        &spec,
        format!(
            "- {{ kind: process-pause, target: {{ pid: {pid} }} }}\n\
             - {{ kind: disk-fill, path: {dir}, size: 2MiB }}\n\
             - {{ kind: io-stress, path: {dir}, file_size: 1MiB, block_size: 64KiB }}\n\
             - {{ kind: network-partition, netns: {ns}, filter: {{ hosts: [{peer}] }} }}\n\
             - {{ kind: network-bandwidth, netns: {ns}, device: veth-a, rate: 1mbit }}\n",
            pid = victim.pid(),
            dir = scratch.display(),
            ns = net.a,
            peer = net.addr_b,
        ),
    )
    .unwrap();
    let state = out.join("state");
    let injector = support::Injector::start(&spec, &state, &[]);
    let injected = injector.expect("injected fault-", 5);
    assert!(injected[0].contains(&format!("stopped pid {}", victim.pid())), "{injected:?}");
    // SIGSTOP takes effect when the target is next scheduled, a moment after kill(2) returns.
    wait_until("the victim to stop", Duration::from_secs(5), || process_state(victim.pid()) == Some('T'));
    assert_eq!(files(&scratch, "chaos-fill-").len(), 1);
    assert_eq!(net.chaos_tables(&net.a).len(), 1);
    let qdisc = support::sh(&["ip", "netns", "exec", &net.a, "tc", "qdisc", "show", "dev", "veth-a", "root"]);
    assert!(qdisc.contains("tbf") && qdisc.contains("cafe:"), "{qdisc}");
    assert_eq!(journal_records(&state), 5);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(injector.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let reverted = injector.expect("reverted fault-", 5);
    // Newest first.
    assert!(
        reverted[0].starts_with("reverted fault-5") && reverted[4].starts_with("reverted fault-1"),
        "{reverted:?}"
    );
    injector.expect("interrupted: every fault reverted", 1);
    assert_ne!(process_state(victim.pid()), Some('T'));
    assert!(files(&scratch, "chaos-").is_empty(), "{:?}", files(&scratch, "chaos-"));
    assert!(net.chaos_tables(&net.a).is_empty());
    let qdisc = support::sh(&["ip", "netns", "exec", &net.a, "tc", "qdisc", "show", "dev", "veth-a", "root"]);
    assert!(!qdisc.contains("cafe:"), "{qdisc}");
    assert_eq!(journal_records(&state), 0);
}

#[test]
fn break_glass_reverts_even_while_the_owner_is_alive() {
    let victim = Victim::start("4");
    let out = temp_dir("host", "break-glass-live");
    let spec = out.join("pause.yaml");
    std::fs::write(&spec, format!("kind: process-pause\ntarget: {{ pid: {} }}\n", victim.pid())).unwrap();
    let state = out.join("state");
    let injector = support::Injector::start(&spec, &state, &["--duration", "60s"]);
    injector.expect("injected fault-1", 1);
    // SIGSTOP takes effect when the target is next scheduled, a moment after kill(2) returns.
    wait_until("the victim to stop", Duration::from_secs(5), || process_state(victim.pid()) == Some('T'));
    let revert = chaos(&["agent", "revert-all", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(revert.status.code(), Some(0), "{}", describe_output(&revert));
    assert_ne!(process_state(victim.pid()), Some('T'));
    assert_eq!(journal_records(&state), 0);
}

#[test]
fn bad_fault_specs_are_refused_with_where_and_why_and_nothing_changes() {
    let victim = Victim::start("5");
    let out = temp_dir("host", "bad-specs");
    let state = out.join("state");
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown-kind.yaml", "kind: explode\n".into(), "unknown variant `explode`"),
        ("out-of-range.yaml", "kind: cpu-stress\nload: 150\n".into(), "expected a percentage from 1 to 100"),
        ("loss.yaml", "kind: network-loss\npercent: 0\n".into(), "percent"),
        ("pid1.yaml", "kind: process-pause\ntarget: { pid: 1 }\n".into(), "policy rule 'pid-1' refused"),
        (
            "unknown-field.yaml",
            "kind: disk-fill\npath: /tmp\nsize: 1MiB\ncolour: red\n".into(),
            "unknown field `colour`",
        ),
        (
            "second-bad.yaml",
            format!(
                "- {{ kind: process-pause, target: {{ pid: {} }} }}\n- {{ kind: memory-stress, size: 101% }}\n",
                victim.pid()
            ),
            "line 2",
        ),
    ];
    for (name, text, expected) in cases {
        let path = out.join(name);
        std::fs::write(&path, text).unwrap();
        let output =
            chaos(&["agent", "inject", path.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{name}: {}", describe_output(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name) && stderr.contains(expected), "{name}: {stderr}");
        assert_eq!(journal_records(&state), 0, "{name} left a record");
        assert_ne!(process_state(victim.pid()), Some('T'), "{name} touched the victim");
    }
    // A policy file that forbids a kind refuses it by rule name, in a dry run too.
    let policy = out.join("policy.yaml");
    std::fs::write(&policy, "allowed_faults: [cpu-stress]\n").unwrap();
    let spec = out.join("pause.yaml");
    std::fs::write(&spec, format!("kind: process-pause\ntarget: {{ pid: {} }}\n", victim.pid())).unwrap();
    let output = chaos(&[
        "agent",
        "inject",
        spec.to_str().unwrap(),
        "--dry-run",
        "--policy",
        policy.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("policy rule 'allowed-faults' refused"));
    assert_ne!(process_state(victim.pid()), Some('T'));
}

#[test]
fn a_dry_run_shows_the_host_faults_and_checks_the_policy() {
    let out = temp_dir("host", "dry-run");
    let output = Command::new(chaos_bin())
        .args(["run", "experiments/host-pressure.yaml", "--dry-run", "--state-dir"])
        .arg(out.join("state"))
        .current_dir(repo_path("."))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("burn the CPUs: cpu_stress on this host"), "{stdout}");
    assert!(stdout.contains("dry run: nothing was touched"), "{stdout}");
    assert!(!out.join("state").exists(), "a dry run must not even create the state directory");

    let policy = out.join("policy.yaml");
    std::fs::write(&policy, "stress: { max_memory: 64MiB }\n").unwrap();
    let output = Command::new(chaos_bin())
        .args(["run", "experiments/host-pressure.yaml", "--dry-run", "--agent-policy"])
        .arg(&policy)
        .current_dir(repo_path("."))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("squeeze memory: policy rule 'max-memory' refused"), "{stderr}");
}

#[test]
fn revert_all_from_another_network_namespace_keeps_the_records_and_says_where_to_run_it() {
    let net = NetnsPair::new();
    let out = temp_dir("host", "netns-revert-all");
    let state = out.join("state");
    let spec = out.join("cut.yaml");
    // No `netns:` in the spec: the table goes into the namespace the injector runs in (namespace a).
    std::fs::write(&spec, "kind: network-partition\nfilter: { hosts: [203.0.113.1] }\n").unwrap();
    let mut injector = Command::new("ip")
        .args(["netns", "exec", &net.a])
        .arg(chaos_bin())
        .args(["agent", "inject"])
        .arg(&spec)
        .args(["--duration", "60s", "--state-dir"])
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the table in namespace a", Duration::from_secs(10), || net.chaos_tables(&net.a).len() == 1);
    // The injector and its watchdog both die (as in a reboot-less crash of both): the record stays behind.
    for pid in support::watchdogs_of(injector.id()) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)
            .unwrap();
    }
    injector.kill().unwrap();
    injector.wait().unwrap();
    assert_eq!(journal_records(&state), 1);
    let state_arg = state.display().to_string();

    // From the host's namespace the table is invisible: "No such table" there must not count as reverted.
    let wrong = chaos(&["agent", "revert-all", "--state-dir", &state_arg]);
    assert_eq!(wrong.status.code(), Some(1), "{}", describe_output(&wrong));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("was applied in network namespace net:["), "{stderr}");
    assert!(stderr.contains(&format!("nsenter --net=/run/netns/{}", net.a)), "{stderr}");
    assert_eq!(net.chaos_tables(&net.a).len(), 1, "the table must still be there");
    assert_eq!(journal_records(&state), 1, "the record of a fault not removed must be kept");

    // Run where it was applied, the same command cleans.
    let right = Command::new("ip")
        .args(["netns", "exec", &net.a])
        .arg(chaos_bin())
        .args(["agent", "revert-all", "--state-dir", &state_arg])
        .output()
        .unwrap();
    assert_eq!(right.status.code(), Some(0), "{}", describe_output(&right));
    assert!(net.chaos_tables(&net.a).is_empty(), "the table is still there");
    assert_eq!(journal_records(&state), 0);
}

#[test]
fn every_host_step_is_checked_before_the_first_is_applied_in_dry_runs_too() {
    // Pause, then fill, then a bandwidth limit on a device that does not exist: the run must fail on the
    // device before the pause (the victim never stops) and before the fill (no file).
    let victim = Victim::start("7");
    let out = temp_dir("host", "check-first");
    let scratch = scratch_dir("check-first");
    let vars = [("victim", victim.marker.clone()), ("scratch", scratch.display().to_string())];
    let file = repo_path("tests/data/missing-device.yaml");

    let mut dry = run_command(None, &file, &vars, &out);
    let output = support::output_within(dry.arg("--dry-run"), RUN_DEADLINE);
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("step throttle: invalid device: expected an existing network device, found no device \"chaos-nodev0\""),
        "{stderr}"
    );

    let mut child =
        run_command(None, &file, &vars, &out).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Watch the victim for the whole run: it must never be stopped, not even for a moment.
    let mut stopped = false;
    let end = Instant::now() + RUN_DEADLINE;
    while child.try_wait().unwrap().is_none() {
        stopped |= process_state(victim.pid()) == Some('T');
        std::thread::yield_now();
        assert!(files(&scratch, "chaos-fill-").is_empty(), "a fill file was created");
        assert!(Instant::now() < end, "the run took more than {RUN_DEADLINE:?}");
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nothing was applied: step throttle: invalid device"), "{stderr}");
    assert!(!stopped, "the victim was paused before the check failed");
    assert!(files(&scratch, "chaos-fill-").is_empty());
    assert_eq!(journal_records(&out.join("state")), 0);
}

#[test]
fn a_fill_file_moved_away_during_the_run_makes_the_revert_fail_and_the_run_inconclusive() {
    let out = temp_dir("host", "moved-fill");
    let scratch = scratch_dir("moved-fill");
    let vars = [("scratch", scratch.display().to_string())];
    let child = run_command(None, &repo_path("tests/data/short-fill.yaml"), &vars, &out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the fill file to appear", Duration::from_secs(15), || {
        files(&scratch, "chaos-fill-").len() == 1
    });
    let name = files(&scratch, "chaos-fill-").remove(0);
    let away = scratch.join("moved-away.bin");
    std::fs::rename(scratch.join(&name), &away).unwrap();

    let output = support::wait_within(child, RUN_DEADLINE);
    assert_eq!(output.status.code(), Some(3), "{}", describe_output(&output));
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "inconclusive", "{}", j["reasons"]);
    let reasons = j["reasons"].to_string();
    assert!(reasons.contains("is not where the agent created it"), "{reasons}");
    // The space was freed through the descriptor the agent held; the moved name is left to whoever moved it.
    assert_eq!(std::fs::metadata(&away).unwrap().len(), 0);
    assert!(files(&scratch, "chaos-fill-").is_empty());
    assert_eq!(journal_records(&out.join("state")), 0);
}
