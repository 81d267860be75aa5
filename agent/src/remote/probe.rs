//! Command probes the controller asks this agent to run (`RunProbe`): refused unless the policy's
//! `probe_commands` allows the argv (rule `probe-commands`), run without a shell with stdin from /dev/null in a
//! process group of its own, killed (the whole group) at the timeout, output bounded. The agent only runs and
//! reports; the controller judges the exit code and the output.

use std::process::Stdio;
use std::time::Duration;

use chaos_proto::v1::{ProbeResult, RunProbe};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;
use tokio::time::Instant;

use crate::policy::AgentPolicy;

/// The timeout when the controller gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest timeout accepted: a probe is a check, not a job.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The most output sent back, whatever the controller asks.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// Checks `probe` against `policy` and runs it; every way it goes wrong is in the result.
pub async fn run(policy: &AgentPolicy, probe: &RunProbe) -> ProbeResult {
    let refused = |error: String| ProbeResult { error, ..ProbeResult::default() };
    if let Err(e) = policy.check_probe(&probe.argv) {
        tracing::warn!(probe = probe.name, run_id = probe.run_id, argv = ?probe.argv, error = %e, "probe refused");
        return refused(e.to_string());
    }
    let Some((program, args)) = probe.argv.split_first() else {
        return refused("invalid probe: expected a program and its arguments, found none".into());
    };
    if probe.check_only {
        return ProbeResult::default();
    }
    let timeout = match probe.timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms).min(MAX_TIMEOUT),
    };
    let bound = match probe.max_output_bytes {
        0 => MAX_OUTPUT,
        n => usize::try_from(n).unwrap_or(MAX_OUTPUT).min(MAX_OUTPUT),
    };
    let started = Instant::now();
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so the timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return refused(format!("cannot run {program:?}: {e}")),
    };
    let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let finished = async {
        let (out, err) = tokio::join!(read_bounded(stdout, bound), read_bounded(stderr, bound));
        (child.wait().await, out, err)
    };
    let mut result = match tokio::time::timeout(timeout, finished).await {
        Ok((Ok(status), (mut output, out_cut), (err, err_cut))) => {
            use std::os::unix::process::ExitStatusExt as _;
            output.extend_from_slice(&err);
            let truncated = out_cut || err_cut || output.len() > bound;
            output.truncate(bound);
            ProbeResult {
                exit_code: status.code(),
                signal: status.signal(),
                output,
                truncated,
                ..ProbeResult::default()
            }
        }
        Ok((Err(e), _, _)) => refused(format!("waiting for {program:?}: {e}")),
        Err(_) => {
            if let Some(group) = group {
                // Gone already is fine: the group died between the timeout and here.
                let _ = killpg(group, Signal::SIGKILL);
            }
            // Reaped here rather than left to the runtime, so no zombie outlives the probe.
            let _ = child.wait().await;
            ProbeResult { timed_out: true, ..ProbeResult::default() }
        }
    };
    result.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        probe = probe.name,
        run_id = probe.run_id,
        argv = ?probe.argv,
        exit_code = result.exit_code,
        timed_out = result.timed_out,
        elapsed_ms = result.elapsed_ms,
        "probe ran"
    );
    result
}

/// Reads `pipe` to its end, keeping the first `bound` bytes; says whether more came.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>, bound: usize) -> (Vec<u8>, bool) {
    let Some(mut pipe) = pipe else { return (Vec::new(), false) };
    let mut kept = Vec::new();
    let mut more = false;
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return (kept, more),
            Ok(n) => {
                let room = bound.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
                more |= n > room;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(argv: &[&str], timeout_ms: u64, max_output_bytes: u32) -> RunProbe {
        RunProbe {
            name: "p".into(),
            run_id: "r".into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            timeout_ms,
            max_output_bytes,
            check_only: false,
        }
    }

    fn allowing(prefixes: &[&[&str]]) -> AgentPolicy {
        AgentPolicy {
            probe_commands: prefixes.iter().map(|p| p.iter().map(|w| w.to_string()).collect()).collect(),
            ..AgentPolicy::default()
        }
    }

    #[tokio::test]
    async fn a_command_outside_the_policy_never_runs() {
        let dir = std::env::temp_dir().join(format!("chaos-probe-refused-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("id");
        let script = format!("id > {}", file.display());
        for policy in [AgentPolicy::default(), allowing(&[&["/bin/true"]])] {
            let result = run(&policy, &probe(&["/bin/sh", "-c", &script], 0, 0)).await;
            assert!(result.error.contains("'probe-commands'"), "{result:?}");
            assert_eq!(result.exit_code, None);
        }
        assert!(!file.exists(), "the refused command did not run");
        // Checking only runs nothing, even when allowed.
        let check = RunProbe { check_only: true, ..probe(&["/bin/sh", "-c", &script], 0, 0) };
        let result = run(&allowing(&[&["/bin/sh", "-c"]]), &check).await;
        assert_eq!(result, ProbeResult::default());
        assert!(!file.exists(), "a check runs nothing");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_allowed_command_reports_its_exit_code_and_bounded_output() {
        let policy = allowing(&[&["/bin/sh", "-c"]]);
        let result = run(&policy, &probe(&["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], 0, 0)).await;
        assert_eq!((result.error.as_str(), result.exit_code), ("", Some(3)));
        assert_eq!(String::from_utf8_lossy(&result.output), "out\nerr\n");
        assert!(!result.truncated);
        let result = run(&policy, &probe(&["/bin/sh", "-c", "head -c 1000000 /dev/zero"], 0, 100)).await;
        assert_eq!((result.exit_code, result.output.len(), result.truncated), (Some(0), 100, true));
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_what_it_started() {
        let policy = allowing(&[&["/bin/sh", "-c"]]);
        let started = Instant::now();
        // The grandchild keeps the pipes open: only killing the group ends the read.
        let result = run(&policy, &probe(&["/bin/sh", "-c", "sleep 30 & sleep 30"], 300, 0)).await;
        assert!(result.timed_out && result.exit_code.is_none(), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
