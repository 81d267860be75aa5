//! Local processes: discovery from `/proc`, identity (pid + start time), seeded choice and the blast-radius policy.
//!
//! `select` is the one entry point: it resolves a [`ProcessSelector`], checks every match against the [`Policy`],
//! then chooses [`Count`] of them with a seeded RNG. Nothing here sends a signal; the faults (`faults/`) do.

mod choose;
mod policy;
pub(crate) mod procfs;
mod selector;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use choose::Count;
pub use policy::{
    DEFAULT_PROTECTED_CMDLINES, DEFAULT_PROTECTED_NAMES, Policy, PolicyRule, default_pidfile_dirs,
};
pub use selector::{MAX_PIDFILE_BYTES, ProcessSelector};

use crate::AgentError;
use procfs::Stat;

/// A process as the agent targets it: a pid is reused after exit, a pid with its start time is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`: clock ticks after boot when the process started.
    pub start_time: u64,
}

/// What a dry run shows about a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub id: ProcessId,
    pub comm: String,
    pub cmdline: String,
    /// One letter from `/proc/PID/stat`: `S` sleeping, `R` running, `T` stopped, ...
    pub state: char,
    /// The effective user: its name, or the numeric uid when it has none (`selector.user` matches the same).
    pub user: String,
}

// === impl ProcessId ===

impl ProcessId {
    /// The identity of the process that has `pid` now.
    pub fn of(pid: i32) -> Result<ProcessId, AgentError> {
        match procfs::stat(pid)? {
            Some(stat) => Ok(ProcessId { pid, start_time: stat.start_time }),
            None => Err(AgentError::Invalid { what: "pid", reason: format!("no process has pid {pid}") }),
        }
    }

    /// Succeeds only when this very process is still alive: same pid, same start time, not a zombie.
    pub fn check(&self) -> Result<(), AgentError> {
        self.live_stat().map(|_| ())
    }

    /// The current stat of this process, or why it is no longer this process.
    pub(crate) fn live_stat(&self) -> Result<Stat, AgentError> {
        match procfs::stat(self.pid)? {
            None => Err(AgentError::Exited(*self)),
            Some(stat) if stat.start_time != self.start_time => {
                Err(AgentError::PidReused { expected: *self, found: stat.start_time })
            }
            Some(stat) if stat.has_exited() => Err(AgentError::Exited(*self)),
            Some(stat) => Ok(stat),
        }
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.pid, self.start_time)
    }
}

/// Name, cmdline and state of a target, for `--dry-run` and reports.
pub fn inspect(id: &ProcessId) -> Result<ProcessInfo, AgentError> {
    let stat = id.live_stat()?;
    let cmdline = procfs::cmdline(id.pid)?.ok_or(AgentError::Exited(*id))?;
    let uid = procfs::effective_uid(id.pid)?.ok_or(AgentError::Exited(*id))?;
    Ok(ProcessInfo { id: *id, comm: stat.comm, cmdline, state: stat.state, user: user_name(uid) })
}

/// The name of user `uid` (through NSS, as `selector.user` is looked up), or the number when it has none.
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

/// Resolves `selector`, refuses it if any match breaks `policy`, and chooses `count` of the matches with `seed`.
///
/// The result is sorted by pid and is the same for the same seed and the same set of matches. Zombies are not
/// matches (they have exited). Nothing is signalled.
pub fn select(
    selector: &ProcessSelector,
    count: Count,
    seed: u64,
    policy: &Policy,
) -> Result<Vec<ProcessId>, AgentError> {
    count.validate()?;
    let matcher = selector.matcher(&policy.pidfile_dirs)?;
    let mut matched = Vec::new();
    for pid in matcher.candidate_pids()? {
        let Some(stat) = procfs::stat(pid)? else { continue };
        if !stat.has_exited() && matcher.matches(&stat)? {
            matched.push(stat);
        }
    }
    if matched.is_empty() {
        return Err(AgentError::NoMatch { selector: selector.to_string() });
    }
    policy.check_all(&matched)?;
    let wanted = count.of(matched.len()).ok_or_else(|| AgentError::NotEnough {
        selector: selector.to_string(),
        wanted: match count {
            Count::Exactly(n) => n,
            Count::Percent(_) => 1,
        },
        found: matched.len(),
    })?;
    policy.check_count(wanted)?;
    let ids: Vec<ProcessId> =
        matched.iter().map(|stat| ProcessId { pid: stat.pid, start_time: stat.start_time }).collect();
    Ok(choose::choose(&ids, wanted, seed))
}
