//! End-to-end tests of `chaos run` with process faults and host signals: `experiments/process-kill.yaml`
//! against a demo target under a shell-loop supervisor (the kill really happens, the supervisor restarts the
//! target, the time to recover is reported), a selector that matches nothing (inconclusive, nothing touched),
//! and saturation SLOs on this host's CPU, memory and load.
//!
//! Only processes these tests start are ever signalled: the experiment's selector names a free port nobody
//! else uses, and the supervisor runs in its own process group, killed whole on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{
    chaos_bin, chaos_run, describe_output, free_port, output_within, read_journal, repo_path, temp_dir,
    wait_until,
};

/// How long one `chaos run` may take before the test gives up on it (the experiments take about 9 s).
const RUN_DEADLINE: Duration = Duration::from_secs(25);

/// `sh -c 'while true; do chaos demo-target --http --listen ADDR; done'` in its own process group, which is
/// killed whole (the loop and the target it runs) on drop.
struct Supervised {
    shell: Child,
    addr: SocketAddr,
}

impl Supervised {
    fn start() -> Supervised {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        // `$0` is the binary's path, passed as the script's first argument so no quoting is needed.
        let script = format!("while true; do \"$0\" demo-target --http --listen {addr}; done");
        let shell = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(chaos_bin())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // The shell reports each killed target ("Terminated"); that is the test working, not noise to show.
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let supervised = Supervised { shell, addr };
        wait_until("the supervised target to listen", Duration::from_secs(10), || {
            supervised.target().is_some() && TcpStream::connect(addr).is_ok()
        });
        supervised
    }

    /// The command line the experiment's selector matches (arguments joined by single spaces).
    fn cmdline_suffix(&self) -> String {
        format!("demo-target --http --listen {}", self.addr)
    }

    /// The pid of the demo target the loop runs now, if one is running.
    fn target(&self) -> Option<u32> {
        children(self.shell.id())
            .into_iter()
            .find(|(_, cmdline)| cmdline.ends_with(&self.cmdline_suffix()))
            .map(|c| c.0)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // The group id is the shell's pid (process_group(0)); the negative pid signals the whole group.
        let group = format!("-{}", self.shell.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.shell.wait();
    }
}

/// Live children of `parent` with their command lines, read from /proc.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the parenthesised name: state, ppid, ...
        let mut after = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace()).into_iter().flatten();
        let (state, ppid) = (after.next(), after.next().and_then(|p| p.parse::<u32>().ok()));
        if ppid != Some(parent) || state == Some("Z") {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        found.push((pid, args.join(" ")));
    }
    found
}

#[test]
fn a_killed_target_is_restarted_by_its_supervisor_and_its_recovery_is_measured() {
    let shop = Supervised::start();
    let before = shop.target().unwrap();
    let out = temp_dir("kill", "restart");
    let output = output_within(
        &mut chaos_run(
            None,
            &repo_path("experiments/process-kill.yaml"),
            &[("listen", shop.addr.to_string())],
            &out,
        ),
        RUN_DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));

    // The kill really happened, and the supervisor started a new target in its place.
    let mut after = None;
    wait_until("the supervisor to restart the target", Duration::from_secs(5), || {
        after = shop.target();
        after.is_some_and(|pid| pid != before)
    });
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "passed", "{}", j["reasons"]);
    let kill = j["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "fault_injected" && e["name"] == "kill the shop")
        .unwrap_or_else(|| panic!("no kill in the timeline: {}", j["timeline"]));
    let detail = kill["detail"].as_str().unwrap();
    assert!(detail.starts_with("SIGTERM sent to ") && detail.contains(&format!(" {before}@")), "{detail}");
    assert_eq!(kill["ok"], true);

    // The error ratio came back within objective inside the recovery window, and the run says when.
    let recovery = j["recovery"].as_array().unwrap();
    assert_eq!(recovery.len(), 1, "{recovery:?}");
    assert_eq!(recovery[0]["slo"], "availability");
    let ttr = recovery[0]["time_to_recover_ms"].as_u64();
    assert!(ttr.is_some_and(|ms| ms <= 2_000), "time to recover: {}", recovery[0]);
}

#[test]
fn a_selector_that_matches_nothing_is_inconclusive_and_touches_nothing() {
    // A port nobody listens on: no process has it on its command line.
    let out = temp_dir("kill", "no-match");
    let listen = format!("127.0.0.1:{}", free_port());
    let output = output_within(
        &mut chaos_run(
            None,
            &repo_path("experiments/process-kill.yaml"),
            &[("listen", listen.clone())],
            &out,
        ),
        RUN_DEADLINE,
    );
    assert_eq!(output.status.code(), Some(3), "{}", describe_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot resolve targets: target shop: selector")
            && stderr.contains(&format!("--listen {listen}$/}} matched no process")),
        "{stderr}"
    );
}

#[test]
fn host_saturation_slos_are_judged_on_cpu_and_memory_samples() {
    let out = temp_dir("kill", "saturation");
    let output = output_within(
        &mut chaos_run(None, &repo_path("tests/data/host-saturation.yaml"), &[], &out),
        RUN_DEADLINE,
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "passed", "{}", j["reasons"]);
    let slos = j["slos"].as_array().unwrap();
    assert_eq!(slos.len(), 3, "{slos:?}");
    for slo in slos {
        assert_eq!(slo["signal"], "saturation");
        assert_eq!(slo["passed"], true, "{slo}");
        // A 3 s method sampled once a second: at least 2 samples, all within the ceiling.
        assert!(slo["total"].as_u64().unwrap() >= 2, "{slo}");
        assert_eq!(slo["good"], slo["total"], "{slo}");
        assert!(slo["reason"].as_str().unwrap().contains("peak "), "{slo}");
    }
    for name in ["cpu", "memory"] {
        let slo = slos.iter().find(|s| s["name"] == name).unwrap();
        let peak = slo["observed"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&peak), "{slo}");
    }
    // Memory in use is never zero on a running host; an idle CPU may read 0.
    let memory = slos.iter().find(|s| s["name"] == "memory").unwrap();
    assert!(memory["observed"].as_f64().unwrap() > 0.0, "{memory}");
    // The load per CPU may exceed 100% (a busy host), never go below 0; the ceiling is read above 100%.
    let load = slos.iter().find(|s| s["name"] == "load").unwrap();
    assert!(load["observed"].as_f64().unwrap() >= 0.0, "{load}");
    assert_eq!(load["objective"], 100.0, "{load}");
}
