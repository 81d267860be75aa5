//! End-to-end tests of `chaos run` with process saturation sources (`source: { processes: TARGET, metric }`):
//! a busy shell loop started by the test is the target, its CPU (a share of all this host's CPUs) refutes a
//! ceiling below one core, and its memory (RSS over MemTotal) is judged too.
//!
//! Nothing is signalled by the experiment: the target is only sampled. The loop is killed on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{chaos_run, describe_output, output_within, read_journal, repo_path, temp_dir, wait_until};

/// How long one `chaos run` may take before the test gives up on it (the experiment takes about 4 s).
const RUN_DEADLINE: Duration = Duration::from_secs(25);

/// `sh -c 'while :; do :; done' MARKER`: one core kept busy, `MARKER` (its `$0`) ending its command line.
struct Busy {
    child: Child,
    marker: String,
}

impl Busy {
    fn start() -> Busy {
        let marker = format!("chaos-busy-{}", std::process::id());
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .arg(&marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let busy = Busy { child, marker };
        let path = format!("/proc/{}/cmdline", busy.child.id());
        wait_until("the busy loop to run", Duration::from_secs(5), || {
            std::fs::read(&path).is_ok_and(|c| c.ends_with(format!("{}\0", busy.marker).as_bytes()))
        });
        busy
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Online CPUs as the sampler counts them: the `cpuN` lines of /proc/stat.
fn cpus() -> usize {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    stat.lines()
        .filter(|l| l.strip_prefix("cpu").is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())))
        .count()
}

#[test]
fn a_busy_process_refutes_a_cpu_ceiling_and_its_memory_is_sampled() {
    let busy = Busy::start();
    // A quarter of one core, as a share of all the CPUs: the loop burns about a whole one, four times that.
    let cpus = cpus();
    assert!(cpus > 0, "no cpuN line in /proc/stat");
    let max = 0.25 / cpus as f64;
    let out = temp_dir("saturation", "busy");
    let vars = [("marker", busy.marker.clone()), ("max", format!("{:.6}%", max * 100.0))];
    let output = output_within(
        &mut chaos_run(None, &repo_path("tests/data/process-saturation.yaml"), &vars, &out),
        RUN_DEADLINE,
    );
    // Exit 1: the hypothesis was refuted.
    assert_eq!(output.status.code(), Some(1), "{}", describe_output(&output));

    let j = read_journal(&out);
    assert_eq!(j["verdict"], "failed", "{}", j["reasons"]);
    let slos = j["slos"].as_array().unwrap();
    assert_eq!(slos.len(), 2, "{slos:?}");
    for slo in slos {
        assert_eq!(slo["signal"], "saturation");
        // A 3 s method sampled once a second (CPU from the second sample on): at least 2 samples.
        assert!(slo["total"].as_u64().unwrap() >= 2, "{slo}");
    }

    let cpu = slos.iter().find(|s| s["name"] == "busy cpu").unwrap();
    assert_eq!(cpu["passed"], false, "{cpu}");
    let observed = cpu["observed"].as_f64().unwrap();
    assert!((cpu["objective"].as_f64().unwrap() - max).abs() < 1e-6, "{cpu}");
    assert!(observed > max, "{cpu}");
    // A share of the whole host: one single-threaded loop never exceeds one CPU's worth.
    assert!(observed <= 1.0 / cpus as f64 + 0.05, "{cpu}");
    assert!(cpu["reason"].as_str().unwrap().starts_with("busy cpu: peak "), "{cpu}");

    let memory = slos.iter().find(|s| s["name"] == "busy memory").unwrap();
    assert_eq!(memory["passed"], true, "{memory}");
    let observed = memory["observed"].as_f64().unwrap();
    assert!(observed > 0.0 && observed < 0.5, "{memory}");
}
