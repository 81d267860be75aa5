//! The watchdog loop ([`chaos_agent::watchdog::run`]) against real processes and files: the records of an owner
//! that dies are reverted at once, a record whose lease deadline passed is reverted while its owner lives (a hung
//! owner), a renewed deadline is respected, and records of other owners or instances are left alone.
//!
//! The owner is a real `sleep` process; the watchdog runs on a thread here with the read end of a pipe whose write
//! end the test holds, exactly as the `chaos` binary runs it in its own process (`chaos agent watchdog`; the
//! end-to-end proof with SIGKILL is tests/kill_matrix.rs at the workspace root).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chaos_agent::journal::{self, Record, Undo};
use chaos_agent::process::ProcessId;
use chaos_agent::watchdog::{self, Watch};
use common::{TempDir, Victim, is_running, is_stopped, wait_until};

/// A record as a journal writes it, for `owner` and `instance`, undoing with `undo`.
fn record(owner: ProcessId, instance: u64, n: u64, deadline_ms: Option<u64>, undo: Vec<Undo>) -> Record {
    Record {
        version: 1,
        fault_id: format!("fault-{n}"),
        kind: "process-pause".into(),
        owner,
        boot_id: journal::boot_id().unwrap(),
        written_unix_ms: n,
        seq: n,
        undo,
        instance,
        deadline_ms,
        netns: None,
    }
}

fn write(dir: &Path, r: &Record) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{}-{}-{}.json", r.owner.pid, r.owner.start_time, r.fault_id));
    std::fs::write(&path, serde_json::to_vec(r).unwrap()).unwrap();
    path
}

/// Starts the watchdog loop on a thread; returns the write end of its pipe (drop it to say "owner gone") and
/// the thread.
fn start(watch: Watch) -> (File, std::thread::JoinHandle<Result<(), chaos_agent::AgentError>>) {
    let (read, write) = nix::unistd::pipe().unwrap();
    let thread = std::thread::spawn(move || watchdog::run(&watch, File::from(read)));
    (File::from(write), thread)
}

fn stop(victim: &Victim) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim.pid()), nix::sys::signal::Signal::SIGSTOP)
        .unwrap();
    // SIGSTOP takes effect when the target is next scheduled, a moment after kill(2) returns.
    assert!(wait_until(|| is_stopped(victim.pid())));
}

#[test]
fn a_dead_owner_s_records_are_reverted_at_once_and_others_are_left_alone() {
    let dir = TempDir::new();
    let journal_dir = dir.path.join("journal");
    let owner = Victim::sleep();
    let (mine, other_instance, other_owner) = (Victim::sleep(), Victim::sleep(), Victim::sleep());
    let neighbour = Victim::sleep();
    for v in [&mine, &other_instance, &other_owner] {
        stop(v);
    }
    let far = Some(journal::boot_clock_ms() + 600_000);
    let resume = |v: &Victim| vec![Undo::Resume { targets: vec![v.id()] }];
    let mine_path = write(&journal_dir, &record(owner.id(), 7, 1, far, resume(&mine)));
    let other_instance_path = write(&journal_dir, &record(owner.id(), 8, 2, far, resume(&other_instance)));
    let other_owner_path = write(&journal_dir, &record(neighbour.id(), 7, 3, far, resume(&other_owner)));

    let (pipe, thread) = start(Watch { journal: journal_dir.clone(), owner: owner.id(), instance: 7 });
    // The owner lives and the deadline is far: nothing happens.
    std::thread::sleep(Duration::from_millis(300));
    assert!(is_stopped(mine.pid()) && mine_path.exists());

    // The owner dies: the kernel would close its end of the pipe; here the test does.
    let killed = Instant::now();
    drop(owner);
    drop(pipe);
    assert!(wait_until(|| is_running(mine.pid()) && !mine_path.exists()), "the dead owner's fault stayed");
    let took = killed.elapsed();
    thread.join().unwrap().unwrap();
    assert!(took < Duration::from_secs(2), "reverting took {took:?}");
    assert!(is_stopped(other_instance.pid()) && other_instance_path.exists(), "another instance was touched");
    assert!(is_stopped(other_owner.pid()) && other_owner_path.exists(), "another owner's record was touched");
    for v in [&other_instance, &other_owner] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(v.pid()), nix::sys::signal::Signal::SIGCONT)
            .unwrap();
    }
}

#[test]
fn the_owner_s_death_is_seen_even_if_its_pipe_stays_open() {
    let dir = TempDir::new();
    let journal_dir = dir.path.join("journal");
    let owner = Victim::sleep();
    let paused = Victim::sleep();
    stop(&paused);
    let path = write(
        &journal_dir,
        &record(owner.id(), 1, 1, None, vec![Undo::Resume { targets: vec![paused.id()] }]),
    );
    // The write end leaked into a process that lives on: the owner's identity check still catches its death.
    let (_pipe, thread) = start(Watch { journal: journal_dir, owner: owner.id(), instance: 1 });
    drop(owner);
    assert!(wait_until(|| is_running(paused.pid()) && !path.exists()));
    thread.join().unwrap().unwrap();
}

#[test]
fn a_passed_deadline_is_enforced_while_the_owner_lives_and_a_renewal_moves_it() {
    let dir = TempDir::new();
    let journal_dir = dir.path.join("journal");
    let owner = Victim::sleep();
    let (expired, renewed) = (Victim::sleep(), Victim::sleep());
    stop(&expired);
    stop(&renewed);
    let now = journal::boot_clock_ms();
    // Past its deadline by more than the grace: the owner hung, the watchdog reverts it.
    let grace = watchdog::GRACE.as_millis() as u64;
    let expired_path = write(
        &journal_dir,
        &record(owner.id(), 3, 1, Some(now - grace - 10), vec![Undo::Resume { targets: vec![expired.id()] }]),
    );
    // Its deadline comes later (a renewal moved it): left alone until then.
    let renewed_record =
        record(owner.id(), 3, 2, Some(now + 60_000), vec![Undo::Resume { targets: vec![renewed.id()] }]);
    let renewed_path = write(&journal_dir, &renewed_record);

    let (pipe, thread) = start(Watch { journal: journal_dir.clone(), owner: owner.id(), instance: 3 });
    assert!(wait_until(|| is_running(expired.pid()) && !expired_path.exists()), "the expired lease was kept");
    assert!(is_stopped(renewed.pid()) && renewed_path.exists(), "a lease that has time left was reverted");

    // Moved to the past, as a renewal would move it to the future: the watchdog reads the deadline every tick.
    let mut moved = renewed_record.clone();
    moved.deadline_ms = Some(journal::boot_clock_ms() - grace);
    write(&journal_dir, &moved);
    assert!(wait_until(|| is_running(renewed.pid()) && !renewed_path.exists()));
    // The owner drops the journal (closes the pipe) with nothing left: the watchdog exits.
    drop(pipe);
    thread.join().unwrap().unwrap();
}

/// The journal guard (`chaos agent guard`) watches every owner of a journal: a pass reverts the records of an
/// owner that is gone, of a live owner past its deadline plus the grace, and of another boot, and leaves a live
/// owner's record before its deadline (naming that deadline as the next to watch).
#[test]
fn a_guard_pass_reverts_every_owner_s_orphaned_or_overdue_records_and_leaves_the_rest() {
    let dir = TempDir::new();
    let journal_dir = dir.path.join("journal");
    let (live, dead) = (Victim::sleep(), Victim::sleep());
    let dead_id = dead.id();
    drop(dead);
    let paused: Vec<Victim> = (0..4).map(|_| Victim::sleep()).collect();
    for v in &paused {
        stop(v);
    }
    let now = journal::boot_clock_ms();
    let (far, overdue) = (now + 600_000, now.saturating_sub(watchdog::GRACE.as_millis() as u64 + 1_000));
    let resume = |v: &Victim| vec![Undo::Resume { targets: vec![v.id()] }];
    let orphan = write(&journal_dir, &record(dead_id, 1, 1, Some(far), resume(&paused[0])));
    let late = write(&journal_dir, &record(live.id(), 1, 2, Some(overdue), resume(&paused[1])));
    let kept = write(&journal_dir, &record(live.id(), 1, 3, Some(far), resume(&paused[2])));
    let mut old = record(live.id(), 1, 4, Some(far), resume(&paused[3]));
    old.boot_id = "another-boot".into();
    let old = write(&journal_dir, &old);

    let pass = watchdog::guard_pass(&dir.path);
    assert!(pass.failed.is_empty(), "{:?}", pass.failed);
    let mut why: Vec<(&str, &str)> = pass.reverted.iter().map(|(r, w)| (r.fault_id.as_str(), *w)).collect();
    why.sort();
    assert_eq!(
        why,
        [
            ("fault-1", "its owner is gone"),
            ("fault-2", "its lease deadline passed"),
            ("fault-4", "it is from another boot")
        ]
    );
    assert_eq!(pass.next_deadline_ms, Some(far));
    assert!(is_running(paused[0].pid()) && !orphan.exists(), "the dead owner's fault stayed");
    assert!(is_running(paused[1].pid()) && !late.exists(), "the overdue fault stayed");
    assert!(
        is_stopped(paused[2].pid()) && kept.exists(),
        "a live owner's fault was reverted before its deadline"
    );
    // Another boot's pids mean nothing: its process steps are skipped, the record goes.
    assert!(is_stopped(paused[3].pid()) && !old.exists());
    for v in [&paused[2], &paused[3]] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(v.pid()), nix::sys::signal::Signal::SIGCONT)
            .unwrap();
    }
    // Nothing left to do: a second pass reverts nothing.
    assert!(watchdog::guard_pass(&dir.path).reverted.is_empty());
}
