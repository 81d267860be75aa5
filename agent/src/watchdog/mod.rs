//! The out-of-process watchdog: the deadline of every journaled fault, enforced by a process that outlives the
//! one that applied it.
//!
//! A lease ([`crate::faults::Lease`]) is a task inside the process that holds the fault: `kill -9` of that process
//! takes the lease with it. So every [`Journal`](crate::journal::Journal) opened by a program that
//! [`install`]ed a watchdog program starts one watchdog process per journal instance (`chaos agent watchdog`, the
//! same binary), in a process group of its own, that:
//! - holds the read end of a pipe whose only write end lives in the owner: when the owner dies (any signal,
//!   SIGKILL included) or drops the journal, the kernel closes it and the watchdog sees end-of-file at once; it
//!   also checks the owner's identity (pid + start time) every tick in case the write end leaked;
//! - then replays every record of that journal instance (newest first), retrying failures for
//!   [`GIVE_UP_AFTER`], and exits; what still fails stays in the journal for the next start or `chaos agent
//!   revert-all`;
//! - while the owner lives, reverts any record whose lease deadline (`deadline_ms`, on the boot clock, moved by
//!   every renewal) passed more than [`GRACE`] ago: an owner that hangs or whose runtime stalls still loses its
//!   faults on time.
//!
//! The owner starts a new watchdog if it finds its watchdog gone ([`Guard::ensure`](guard::Guard::ensure), at
//! each journal write), so a killed watchdog is replaced at the next apply or renewal; if both die, the records
//! stay on disk for the next start's replay. The watchdog logs to `watchdog.log` beside the journal directory.
//!
//! Layout: this file is the watchdog process (its loop reverts through `crate::undo`); `guard.rs` is the
//! owner's side, which the journal starts and which executes nothing; `node.rs` is the journal guard, the
//! watchdog of every owner of a journal for agents whose own watchdog can die with them (in a container).

pub(crate) mod guard;
mod node;

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use guard::{install, installed};
pub use node::{GuardPass, guard, guard_pass};

use crate::AgentError;
use crate::journal::{self, Record};
use crate::process::ProcessId;

/// How long past a record's lease deadline the watchdog waits before reverting it while the owner is alive: the
/// owner's own lease normally reverts first (and retries for a few seconds); the watchdog is the backstop.
pub const GRACE: Duration = Duration::from_secs(2);

/// How long a watchdog whose owner is gone keeps retrying reverts that fail before it leaves them to the next
/// start or `chaos agent revert-all`.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// The longest the watchdog sleeps between two looks at the owner and the journal.
const TICK: Duration = Duration::from_millis(250);

// === the watchdog process ===

/// What the watchdog watches: one journal instance of one owner.
#[derive(Debug, Clone)]
pub struct Watch {
    pub journal: PathBuf,
    pub owner: ProcessId,
    pub instance: u64,
}

/// The watchdog's main loop; `input` is the read end of the owner's pipe (the process's stdin). Returns once the
/// owner is gone (or dropped the journal) and every record of the instance is reverted (`Ok`), or reverts kept
/// failing for [`GIVE_UP_AFTER`] (`Err` naming them; the records stay for the next start).
pub fn run(watch: &Watch, input: impl AsFd + Read) -> Result<(), AgentError> {
    let mut input = input;
    let mut owner_gone_at: Option<Instant> = None;
    tracing::info!(owner = %watch.owner, instance = watch.instance, journal = %watch.journal.display(),
        "watchdog watching");
    loop {
        if owner_gone_at.is_none() && watch.owner.check().is_err() {
            tracing::info!(owner = %watch.owner, "the owner is gone");
            owner_gone_at = Some(Instant::now());
        }
        let now = journal::boot_clock_ms();
        let records = journal::records_of(&watch.journal, watch.owner, watch.instance);
        let mut pending = 0;
        let mut next_deadline: Option<u64> = None;
        for (path, record) in records.iter().rev() {
            let due = owner_gone_at.is_some() || record.deadline_ms.is_some_and(|d| d + grace_ms() <= now);
            if !due {
                if let Some(d) = record.deadline_ms {
                    next_deadline = Some(next_deadline.map_or(d, |n| n.min(d)));
                }
                continue;
            }
            if let Err(e) = revert(path, record, owner_gone_at.is_some()) {
                pending += 1;
                tracing::warn!(fault_id = %record.fault_id, kind = %record.kind, error = %e,
                    "watchdog revert failed; retrying");
            }
        }
        if let Some(at) = owner_gone_at {
            if pending == 0 {
                tracing::info!(owner = %watch.owner, "every record reverted; watchdog exiting");
                return Ok(());
            }
            if at.elapsed() >= GIVE_UP_AFTER {
                return Err(AgentError::invalid(
                    "watchdog",
                    format!(
                        "{pending} record(s) could not be reverted in {GIVE_UP_AFTER:?}; left for the next start"
                    ),
                ));
            }
        }
        let mut wait = TICK;
        if let Some(d) = next_deadline {
            let due_in = Duration::from_millis((d + grace_ms()).saturating_sub(now));
            wait = wait.min(due_in.max(Duration::from_millis(5)));
        }
        if owner_gone_at.is_none() && closed_within(&mut input, wait) {
            tracing::info!(owner = %watch.owner, "the owner closed the watchdog's pipe");
            owner_gone_at = Some(Instant::now());
        } else if owner_gone_at.is_some() {
            std::thread::sleep(wait);
        }
    }
}

fn grace_ms() -> u64 {
    GRACE.as_millis() as u64
}

/// Waits up to `wait` for `input` to reach end-of-file; true when it did.
fn closed_within(input: &mut (impl AsFd + Read), wait: Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    let ready = {
        let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => false,
            Ok(_) => fds[0].revents().is_some_and(|r| !r.is_empty()),
            Err(nix::errno::Errno::EINTR) => false,
            Err(_) => true,
        }
    };
    if !ready {
        return false;
    }
    let mut buf = [0u8; 64];
    match input.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::Interrupted,
    }
}

fn revert(path: &Path, record: &Record, owner_gone: bool) -> Result<(), AgentError> {
    crate::undo::revert_record(path, record)?;
    let why = if owner_gone { "its owner is gone" } else { "its lease deadline passed" };
    tracing::info!(fault_id = %record.fault_id, kind = %record.kind, owner = %record.owner,
        "watchdog reverted the fault: {why}");
    Ok(())
}
