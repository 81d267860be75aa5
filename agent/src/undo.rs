//! Undo execution: runs the steps the journal stores ([`Undo::run`]), reverts a record found on disk
//! ([`revert_record`]) or a live fault's own record ([`Entry::revert`]), and [`replay`]s a journal directory.
//!
//! The journal (`journal.rs`) only writes, reads and deletes records; this module is what acts on the host
//! with them, through the fault modules' idempotent primitives (`net`, `stress`, process signals,
//! `undo_proxy`). The watchdog reverts through this module, and nothing here starts a watchdog.
//!
//! At start an agent (or `chaos run`) replays the records whose owner is no longer running
//! ([`ReplayMode::Orphaned`]); `chaos agent revert-all` replays every record ([`ReplayMode::All`]), the
//! break-glass path that needs no server and no live owner. Each [`Undo`] step is idempotent, so a record
//! replayed twice, or replayed while its owner also reverts, does no harm.

use std::fs;
use std::path::Path;

use crate::faults::{Delivery, deliver};
use crate::journal::{
    Entry, Journal, Record, ReplayMode, ReplayReport, Undo, boot_id, current_netns, read_all, remove_durably,
};
use crate::process::ProcessId;
use crate::{AgentError, Signal};

/// Reverts the records under `state_dir` that `mode` selects, newest first, without opening the journal as an
/// owner: what `chaos agent revert-all` runs. A missing directory means there is nothing to do.
pub fn replay(state_dir: impl AsRef<Path>, mode: ReplayMode) -> ReplayReport {
    replay_dir(&state_dir.as_ref().join("journal"), mode, None)
}

fn replay_dir(dir: &Path, mode: ReplayMode, me: Option<ProcessId>) -> ReplayReport {
    let mut report = ReplayReport::default();
    let (mut records, unreadable) = read_all(dir);
    report.unreadable = unreadable;
    records.reverse();
    let boot = boot_id().ok();
    for (path, record) in records {
        // An unreadable boot id is taken as this boot's: the owner check and each step's identity checks still
        // hold, whereas "another boot" would skip the process and namespace steps and drop the record.
        let same_boot = boot.as_deref().is_none_or(|b| b == record.boot_id);
        let mine = me == Some(record.owner);
        if mode == ReplayMode::Orphaned && same_boot && (mine || record.owner.check().is_ok()) {
            report.live.push(record);
            continue;
        }
        match revert_record(&path, &record) {
            Ok(()) => {
                tracing::info!(fault_id = %record.fault_id, kind = %record.kind, owner = %record.owner,
                    "reverted from the undo journal");
                report.reverted.push(record);
            }
            Err(e) => {
                tracing::warn!(fault_id = %record.fault_id, kind = %record.kind, error = %e,
                    "revert from the undo journal failed");
                report.failed.push((record, e));
            }
        }
    }
    report
}

/// Reverts one record found on disk and deletes it once every step succeeded: process steps are skipped for
/// a record of another boot; network steps that must run in the owner's network namespace are refused (and
/// the record kept) from any other namespace that still exists.
pub fn revert_record(path: &Path, record: &Record) -> Result<(), AgentError> {
    // Unreadable, the boot id is taken as this boot's (see `replay_dir`).
    let same_boot = boot_id().map_or(true, |b| b == record.boot_id);
    let netns_gone = check_netns(record, same_boot)?;
    run_steps(&record.undo, same_boot, netns_gone)?;
    remove_durably(path)
}

/// Whether the record's network steps can run here: `Ok(false)` when this process is in the record's network
/// namespace (or it has no steps that care), `Ok(true)` when that namespace no longer exists (and everything in
/// it is gone), and an error naming where to run the revert when it exists elsewhere.
fn check_netns(record: &Record, same_boot: bool) -> Result<bool, AgentError> {
    let needs_owner_ns = record.undo.iter().any(|step| {
        matches!(step, Undo::DeleteNftTable { netns: None, .. } | Undo::DeleteQdisc { netns: None, .. })
    });
    let Some(recorded) = record.netns.as_deref().filter(|_| needs_owner_ns) else { return Ok(false) };
    if !same_boot {
        // Every namespace of the previous boot is gone, with its rules.
        return Ok(true);
    }
    let here = current_netns();
    if here.as_deref() == Some(recorded) {
        return Ok(false);
    }
    match find_netns(recorded) {
        None => Ok(true),
        Some(holder) => Err(AgentError::WrongNetns(format!(
            "fault {} ({}) was applied in network namespace {recorded}, and this process is in {}: its rules \
             are there, so the record is kept; run the revert in that namespace, e.g. `nsenter --net={holder} \
             chaos agent revert-all`",
            record.fault_id,
            record.kind,
            here.as_deref().unwrap_or("an unknown namespace"),
        ))),
    }
}

/// A path that enters the network namespace named `id` (`net:[INODE]`): a named namespace under `/run/netns`
/// or a process in it; `None` when nothing holds it any more (so it no longer exists).
fn find_netns(id: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let inode: u64 = id.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()?;
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            if fs::metadata(entry.path()).is_ok_and(|m| m.ino() == inode) {
                return Some(entry.path().display().to_string());
            }
        }
    }
    let procs = fs::read_dir("/proc").ok()?;
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let link = format!("/proc/{pid}/ns/net");
        if fs::read_link(&link).is_ok_and(|l| l.as_os_str() == id) {
            return Some(link);
        }
    }
    None
}

/// Runs `steps` backwards, attempting every one; returns the first error. Process steps (and a container's
/// file, reached through its task) are skipped when the record comes from another boot (its pids belong to
/// other processes now); network steps of the owner's
/// namespace are skipped when that namespace is gone.
fn run_steps(steps: &[Undo], same_boot: bool, netns_gone: bool) -> Result<(), AgentError> {
    let mut first_error = None;
    for step in steps.iter().rev() {
        // A container's file is reached through its task's pid too.
        let process_step =
            matches!(step, Undo::Resume { .. } | Undo::KillWorkers { .. } | Undo::RemoveContainerFile { .. });
        if process_step && !same_boot {
            continue;
        }
        let owner_ns_step =
            matches!(step, Undo::DeleteNftTable { netns: None, .. } | Undo::DeleteQdisc { netns: None, .. });
        if owner_ns_step && netns_gone {
            continue;
        }
        if let Err(e) = step.run() {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

// === impl Journal, Entry and Undo: the executing half ===

impl Journal {
    /// Reverts the records `mode` selects, newest first; see [`replay`].
    pub fn replay(&self, mode: ReplayMode) -> ReplayReport {
        replay_dir(self.dir(), mode, Some(self.owner()))
    }
}

impl Entry {
    /// Runs the undo steps backwards and, if all succeeded, deletes the record. Idempotent: after a complete
    /// revert the record is gone and further calls do nothing.
    pub fn revert(&self) -> Result<(), AgentError> {
        if !self.path().exists() {
            return Ok(());
        }
        run_steps(&self.undo(), true, false)?;
        self.finish()
    }
}

impl Undo {
    /// Takes this step. Succeeds when there is nothing (left) to undo.
    pub fn run(&self) -> Result<(), AgentError> {
        match self {
            Undo::Resume { targets } => signal_each(targets, Signal::CONT),
            Undo::KillWorkers { workers } => signal_each(workers, Signal::KILL),
            Undo::RemoveFile { path } => match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(AgentError::io(format!("removing {}", path.display()), e)),
            },
            Undo::RemoveFillFile { path, dev, ino } => crate::stress::remove_fill_file(path, *dev, *ino),
            Undo::RemoveContainerFile { task, path, file } => {
                crate::stress::remove_container_file(task, path, *file)
            }
            Undo::DeleteNftTable { netns, table } => crate::net::delete_table(netns.as_deref(), table),
            Undo::DeleteQdisc { netns, device, handle } => {
                crate::net::delete_qdisc(netns.as_deref(), device, handle)
            }
            Undo::DeleteProxy { api, name } => crate::undo_proxy::delete_proxy(api, name),
        }
    }
}

fn signal_each(targets: &[ProcessId], signal: Signal) -> Result<(), AgentError> {
    let mut first_error = None;
    for target in targets {
        match deliver(target, signal) {
            Ok(Delivery::Sent | Delivery::Gone(_)) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
