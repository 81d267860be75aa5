//! The journal guard: a watchdog for every owner of a journal, run as a process of its own that does not share
//! the agents' fate (`chaos agent guard`).
//!
//! Each journal instance's own watchdog ([`super::run`]) is a child of the process that applied the faults. On a
//! node that is enough; in a container it is not: killing the agent's container kills every process in it, its
//! watchdog too, and the faults would stay until a restarted agent replays the journal (seconds, or minutes
//! under the kubelet's crash back-off). The guard runs beside the agent, in a container of its own in the same
//! pod (same host PID namespace, same journal on the node), and every [`TICK`](super::TICK) reverts:
//! - each record whose owner is gone (its pid no longer has the recorded start time) or from another boot, at
//!   once;
//! - each record whose lease deadline passed more than [`GRACE`](super::GRACE) ago, owner alive or not.
//!
//! It applies nothing and holds nothing: SIGTERM or SIGKILL simply ends it (the agent reverts its own faults on
//! SIGTERM). A revert that fails is retried at the next tick and logged once per record until it succeeds. Each
//! undo step is idempotent, so the guard, an instance's own watchdog, the owner's lease and a restarted agent's
//! replay may all revert the same record.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use crate::journal::{self, Record};

/// What one look at the journal did.
#[derive(Debug, Default)]
pub struct GuardPass {
    /// Records reverted (and deleted), with why.
    pub reverted: Vec<(Record, &'static str)>,
    /// Records whose revert failed, with the error; they stay for the next pass.
    pub failed: Vec<(Record, crate::AgentError)>,
    /// The earliest lease deadline (boot clock, ms) of a record left alone, if any.
    pub next_deadline_ms: Option<u64>,
}

/// One pass over the journal in `state_dir` (its `journal/` directory): reverts, newest first, every record
/// that is orphaned or past its deadline plus the grace.
pub fn guard_pass(state_dir: &Path) -> GuardPass {
    let mut pass = GuardPass::default();
    // Without this boot's id every record would look like another boot's, and another boot's records skip their
    // process and namespace steps: a live fault's record would go with its fault still applied. Wait instead.
    let boot = match journal::boot_id() {
        Ok(boot) => boot,
        Err(e) => {
            tracing::warn!(error = %e, "guard cannot read this boot's id; nothing reverted this tick");
            return pass;
        }
    };
    let (records, _unreadable) = journal::read_all(&state_dir.join("journal"));
    let now = journal::boot_clock_ms();
    for (path, record) in records.into_iter().rev() {
        let why = if boot != record.boot_id {
            "it is from another boot"
        } else if record.owner.check().is_err() {
            "its owner is gone"
        } else if record.deadline_ms.is_some_and(|d| d + super::grace_ms() <= now) {
            "its lease deadline passed"
        } else {
            if let Some(d) = record.deadline_ms {
                pass.next_deadline_ms = Some(pass.next_deadline_ms.map_or(d, |n| n.min(d)));
            }
            continue;
        };
        match crate::undo::revert_record(&path, &record) {
            Ok(()) => pass.reverted.push((record, why)),
            Err(e) => pass.failed.push((record, e)),
        }
    }
    pass
}

/// Guards the journal in `state_dir` until the process is stopped: a [`guard_pass`] every tick (sooner when
/// a deadline falls due), each revert logged as `guard reverted the fault`, each failure once per record.
pub fn guard(state_dir: &Path) -> ! {
    tracing::info!(state_dir = %state_dir.display(), "guard watching the journal");
    // Failing records already logged, by fault id and owner.
    let mut reported: HashSet<String> = HashSet::new();
    let key = |r: &Record| format!("{}@{}", r.fault_id, r.owner);
    loop {
        let pass = guard_pass(state_dir);
        for (record, why) in &pass.reverted {
            tracing::info!(fault_id = %record.fault_id, kind = %record.kind, owner = %record.owner,
                "guard reverted the fault: {why}");
        }
        let failing: HashSet<String> = pass.failed.iter().map(|(r, _)| key(r)).collect();
        for (record, e) in &pass.failed {
            if !reported.contains(&key(record)) {
                tracing::warn!(fault_id = %record.fault_id, kind = %record.kind, error = %e,
                    "guard revert failed; retrying every tick");
            }
        }
        reported = failing;
        let mut wait = super::TICK;
        if let Some(d) = pass.next_deadline_ms {
            let due = (d + super::grace_ms()).saturating_sub(journal::boot_clock_ms());
            wait = wait.min(Duration::from_millis(due).max(Duration::from_millis(5)));
        }
        std::thread::sleep(wait);
    }
}
