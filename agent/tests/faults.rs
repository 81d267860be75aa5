//! Kill and pause against real processes: signals, identity re-checks, reverts, leases, registries, crashes.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use chaos_agent::faults::{FaultRegistry, Skip, kill, pause};
use chaos_agent::process::ProcessId;
use chaos_agent::{AgentError, Signal};
use common::{Victim, is_running, is_stopped, state, wait_until, wait_until_async};

#[test]
fn kill_sends_the_signal_asked_for() {
    for (name, number) in [("TERM", 15), ("SIGKILL", 9), ("int", 2)] {
        let mut victim = Victim::sleep();
        let report = kill(&[victim.id()], Signal::parse(name).unwrap()).unwrap();
        assert_eq!(report.signalled, [victim.id()]);
        let status = victim.child.wait().unwrap();
        assert_eq!(status.signal(), Some(number), "{name}");
    }
}

#[test]
fn a_reused_pid_is_never_signalled() {
    let victim = Victim::sleep();
    let real = victim.id();
    let reused = ProcessId { start_time: real.start_time + 1, ..real };
    let err = kill(&[reused], Signal::KILL).unwrap_err();
    assert!(matches!(err, AgentError::NoTargetLeft(_)), "{err}");
    assert!(err.to_string().contains("Reused"), "{err}");
    let err = pause(&[reused], None).unwrap_err();
    assert!(matches!(err, AgentError::NoTargetLeft(_)), "{err}");
    assert!(is_running(victim.pid()), "still alive and not stopped: {:?}", state(victim.pid()));

    // Mixed with a live target, the reused one is reported as skipped.
    let live = Victim::sleep();
    let report = kill(&[reused, live.id()], Signal::TERM).unwrap();
    assert_eq!(report.signalled, [live.id()]);
    assert_eq!(report.skipped, [(reused, Skip::Reused { found: real.start_time })]);
    assert!(is_running(victim.pid()));
}

#[test]
fn pause_stops_and_revert_resumes_exactly_once() {
    let victims = [Victim::sleep(), Victim::sleep()];
    let ids: Vec<ProcessId> = victims.iter().map(Victim::id).collect();
    let handle = pause(&ids, None).unwrap();
    assert_eq!(handle.stopped(), ids.as_slice());
    assert!(wait_until(|| victims.iter().all(|v| is_stopped(v.pid()))), "stopped");

    handle.revert().unwrap();
    assert!(handle.is_reverted());
    assert!(wait_until(|| victims.iter().all(|v| is_running(v.pid()))), "resumed");

    // Idempotent: a process stopped by someone else after the revert is not resumed by a second revert.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victims[0].pid()), nix::sys::signal::SIGSTOP).unwrap();
    assert!(wait_until(|| is_stopped(victims[0].pid())));
    handle.revert().unwrap();
    assert!(is_stopped(victims[0].pid()), "second revert sent nothing");
}

#[test]
fn pause_leaves_processes_stopped_by_others_alone() {
    let victim = Victim::sleep();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim.pid()), nix::sys::signal::SIGSTOP).unwrap();
    assert!(wait_until(|| is_stopped(victim.pid())));
    let handle = pause(&[victim.id()], None).unwrap();
    assert_eq!(handle.already_stopped(), [victim.id()]);
    assert!(handle.stopped().is_empty());
    handle.revert().unwrap();
    assert!(is_stopped(victim.pid()), "not ours to resume");
}

#[test]
fn revert_after_the_target_died_is_fine() {
    let mut victim = Victim::sleep();
    let handle = pause(&[victim.id()], None).unwrap();
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    handle.revert().unwrap();
    assert!(handle.is_reverted());
}

#[test]
fn dropping_the_handle_resumes() {
    let victim = Victim::sleep();
    let handle = pause(&[victim.id()], None).unwrap();
    assert!(wait_until(|| is_stopped(victim.pid())));
    drop(handle);
    assert!(wait_until(|| is_running(victim.pid())));
}

#[tokio::test]
async fn lease_expiry_resumes_without_any_call() {
    let victim = Victim::sleep();
    let handle = pause(&[victim.id()], Some(Duration::from_millis(200))).unwrap();
    assert!(handle.lease().is_some());
    assert!(wait_until_async(|| is_stopped(victim.pid())).await, "stopped");
    assert!(
        wait_until_async(|| handle.is_reverted() && is_running(victim.pid())).await,
        "resumed by the lease"
    );
    // The handle still reverts idempotently after the lease did.
    handle.revert().unwrap();
}

#[tokio::test]
async fn revert_before_the_lease_cancels_it() {
    let victim = Victim::sleep();
    let handle = pause(&[victim.id()], Some(Duration::from_secs(60))).unwrap();
    handle.revert().unwrap();
    let lease = handle.lease().unwrap();
    assert!(wait_until_async(|| lease.is_finished()).await, "lease task cancelled");
    assert!(is_running(victim.pid()));
}

#[test]
fn a_lease_without_a_runtime_is_refused_before_stopping_anything() {
    let victim = Victim::sleep();
    let err = pause(&[victim.id()], Some(Duration::from_secs(1))).unwrap_err();
    assert!(matches!(err, AgentError::NoRuntime), "{err}");
    assert!(is_running(victim.pid()));
}

#[test]
fn registry_reverts_everything_newest_first() {
    let (a, b, c) = (Victim::sleep(), Victim::sleep(), Victim::sleep());
    let registry = FaultRegistry::new();
    let first = registry.insert(pause(&[a.id()], None).unwrap());
    let second = registry.insert(kill(&[c.id()], Signal::TERM).unwrap());
    let third = registry.insert(pause(&[b.id()], None).unwrap());
    assert!(wait_until(|| is_stopped(a.pid()) && is_stopped(b.pid())));
    let report = registry.revert_all();
    assert_eq!(report.reverted, [third, second, first]);
    assert!(report.failed.is_empty());
    assert!(registry.is_empty());
    assert!(wait_until(|| is_running(a.pid()) && is_running(b.pid())));
}

/// Environment variable that turns `helper_pause_then_panic` into the helper process of the crash test.
const HELPER_ENV: &str = "CHAOS_AGENT_TEST_HELPER_VICTIM";

/// In a normal run this does nothing. Re-run by `a_runner_that_panics_leaves_nothing_stopped` with `HELPER_ENV`
/// set to `PID START_TIME`, it pauses that victim under a long lease and panics, as a faulty step would.
#[test]
fn helper_pause_then_panic() {
    let Ok(victim) = std::env::var(HELPER_ENV) else { return };
    let (pid, start) = victim.split_once(' ').unwrap();
    let id = ProcessId { pid: pid.parse().unwrap(), start_time: start.parse().unwrap() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let _handle = pause(&[id], Some(Duration::from_secs(600))).unwrap();
        assert!(wait_until_async(|| is_stopped(id.pid)).await);
        println!("paused {id}");
        panic!("a step failed while its fault was active");
    });
}

#[test]
fn a_runner_that_panics_leaves_nothing_stopped() {
    let victim = Victim::sleep();
    let id = victim.id();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["helper_pause_then_panic", "--exact", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, format!("{} {}", id.pid, id.start_time))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("paused {id}")), "helper paused the victim: {stdout}");
    assert!(!output.status.success(), "helper panicked");
    assert!(wait_until(|| is_running(victim.pid())), "victim resumed: {:?}", state(victim.pid()));
}
