//! Resource faults: CPU and memory stress, disk fill, IO stress; each journalled before the host changes.
//!
//! - [`CpuStress`]: worker processes that spin for `load`% of every 100 ms.
//! - [`MemoryStress`]: one worker that maps and touches `size` of memory, so RSS really grows.
//! - [`DiskFill`]: one file allocated with `fallocate(2)` in a directory.
//! - [`IoStress`]: workers that rewrite a file each, block by block, with `fdatasync` after every block.
//!
//! Each spec resolves its numbers without applying anything ([`CpuStress::effective_workers`],
//! [`MemoryStress::bytes`], [`DiskFill::bytes`], [`IoStress::total_bytes`]), so policy can be checked first,
//! and `validate`s before `apply` touches the host. `apply` writes the undo record first
//! ([`crate::journal::Journal::begin`]), then changes the host, then records the worker pids; it returns a
//! [`StressHandle`] once every worker is doing its work, or an error with nothing left behind.
//!
//! Workers are processes forked from the agent (see `spawn`): they die with it (`PR_SET_PDEATHSIG`), are
//! named `chaos-cpu`, `chaos-mem` and `chaos-io`, and are SIGKILLed and reaped on revert. Files are named
//! `chaos-fill-FAULT-PID.bin` and `chaos-io-FAULT-PID-N.bin`. After a crash, the replay (`undo::replay`) kills
//! what is left of the workers and deletes the files.
//!
//! Events are those of [`crate::faults`]: `injected`, `reverted`, `failed`, with `fault_id`, `kind` and
//! `pids` (`injected` adds `files`).

mod cpu;
mod disk;
mod io;
mod memory;
mod placement;
mod size;
mod spawn;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub use cpu::CpuStress;
pub use disk::{DiskFill, FillRoot};
pub(crate) use disk::{remove_in_container as remove_container_file, remove_recorded as remove_fill_file};
pub use io::IoStress;
pub use memory::{MemoryStress, mem_total};
pub use placement::Placement;
pub use size::{GIB, KIB, MIB, Size, TIB};

use crate::AgentError;
use crate::faults::{ActiveFault, FaultId, FaultKind, pid_list};
use crate::journal::{Entry, Undo};
use crate::process::ProcessId;

/// The most workers one fault may start.
pub const MAX_WORKERS: u32 = 1024;

/// How long `apply` waits for every worker to report that it is doing its work (touching gigabytes of memory
/// takes a while).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// An applied resource fault: its workers and files, reverted synchronously and idempotently.
///
/// Reverting SIGKILLs the workers (checked by pid + start time), reaps them so no zombie stays behind,
/// deletes the files and then the journal record. Dropping the handle reverts too. Forgetting it (or the
/// agent being killed) leaves the record for the replay (`undo::replay`).
#[derive(Debug)]
pub struct StressHandle {
    id: FaultId,
    kind: FaultKind,
    workers: Vec<ProcessId>,
    files: Vec<PathBuf>,
    bytes: Option<u64>,
    /// A disk fill's file, held open since it was created so the revert frees and deletes this very file.
    fill: Option<disk::FillFile>,
    /// What is left to revert; `None` once a revert has finished.
    pending: Mutex<Option<Pending>>,
    /// Set when the revert found the fill file moved or replaced: every later revert returns this error again,
    /// so a retry cannot turn it into a success.
    moved: Mutex<Option<(PathBuf, String)>>,
}

#[derive(Debug)]
struct Pending {
    entry: Entry,
    /// Workers not killed and reaped yet.
    workers: Vec<ProcessId>,
}

// === impl StressHandle ===

impl StressHandle {
    pub fn id(&self) -> FaultId {
        self.id
    }

    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    /// The worker processes started (none for a disk fill).
    pub fn workers(&self) -> &[ProcessId] {
        &self.workers
    }

    /// The files created (the fill file, the IO stress files).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The bytes resolved at apply time: memory mapped, disk filled, or written to IO stress files in all.
    pub fn bytes(&self) -> Option<u64> {
        self.bytes
    }

    /// Kills and reaps the workers, deletes the files and the journal record. Synchronous and idempotent; on
    /// error what is left stays pending, so the next call retries it. A fill file found moved or replaced is
    /// final: its space is freed, the record deleted, and this and every later call return that error.
    pub fn revert(&self) -> Result<(), AgentError> {
        self.revert_by("call")
    }

    /// Whether a revert (by call or drop) has completed.
    pub fn is_reverted(&self) -> bool {
        self.lock().is_none()
    }

    fn revert_by(&self, by: &'static str) -> Result<(), AgentError> {
        let mut pending = self.lock();
        let Some(left) = pending.as_mut() else {
            let moved = self.moved.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            return match &*moved {
                Some((path, detail)) => Err(AgentError::Moved { path: path.clone(), detail: detail.clone() }),
                None => Ok(()),
            };
        };
        let (id, kind) = (self.id, self.kind);
        let mut first_error = None;
        let mut alive = Vec::new();
        for worker in std::mem::take(&mut left.workers) {
            if let Err(e) = spawn::kill_and_reap(&worker) {
                alive.push(worker);
                first_error.get_or_insert(e);
            }
        }
        // A fill file that is not where it was put is final: its space is freed through the held file, and no
        // later attempt (nor a replay) could find it, so the record goes and the error is returned once.
        let fill_removed = match &self.fill {
            None => false,
            Some(fill) => match fill.remove() {
                Ok(()) => true,
                Err(disk::RemoveError::Io(e)) => {
                    tracing::warn!(fault_id = %id, %kind, pids = "", by, error = %e, "failed");
                    return Err(e);
                }
                Err(disk::RemoveError::Moved(e)) => {
                    tracing::warn!(fault_id = %id, %kind, pids = "", by, error = %e, "failed");
                    if let AgentError::Moved { path, detail } = &e {
                        *self.moved.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                            Some((path.clone(), detail.clone()));
                    }
                    if let Err(journal_error) = left.entry.finish() {
                        tracing::warn!(fault_id = %id, %kind, pids = "", by, error = %journal_error, "failed");
                    }
                    *pending = None;
                    return Err(e);
                }
            },
        };
        // The record goes only once every worker is reaped: a worker still exiting keeps its file busy. A fill
        // file removed above leaves only the record to delete (its undo step would find the file gone).
        if first_error.is_none() {
            let record = if fill_removed { left.entry.finish() } else { left.entry.revert() };
            if let Err(e) = record {
                first_error = Some(e);
            }
        }
        match first_error {
            None => {
                tracing::info!(fault_id = %id, %kind, pids = %pid_list(&self.workers), by, "reverted");
                *pending = None;
                Ok(())
            }
            Some(e) => {
                tracing::warn!(fault_id = %id, %kind, pids = %pid_list(&alive), by, error = %e, "failed");
                left.workers = alive;
                Err(e)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Pending>> {
        // The state is taken and put back whole, so a poisoned lock is still sound.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ActiveFault for StressHandle {
    fn id(&self) -> FaultId {
        self.id
    }

    fn kind(&self) -> FaultKind {
        self.kind
    }

    fn revert(&self) -> Result<(), AgentError> {
        StressHandle::revert(self)
    }
}

impl Drop for StressHandle {
    fn drop(&mut self) {
        // The event records a failure; a destructor has no one to return it to.
        let _ = self.revert_by("drop");
    }
}

// === applying, shared by the four kinds ===

/// What a fault has done so far, for [`Begun::start`]: its journal entry (already written) and the files it
/// created.
struct Begun {
    id: FaultId,
    kind: FaultKind,
    entry: Entry,
    files: Vec<PathBuf>,
    bytes: Option<u64>,
}

impl Begun {
    /// The handle of a disk fill (no workers), once its file is in place.
    fn finish_fill(self, fill: disk::FillFile) -> StressHandle {
        self.handle(Vec::new(), Some(fill))
    }

    /// Forks one worker per item of `work` (each joins `placement`'s cgroup first, when given), records their
    /// pids after the `RemoveFile` steps of `files` (so a revert kills them before deleting the files), and
    /// waits until every worker is at work. On error, the workers are killed and reaped and the files deleted
    /// before returning.
    fn start(
        self,
        work: Vec<spawn::Work>,
        placement: Option<&Placement>,
    ) -> Result<StressHandle, AgentError> {
        let spawned = match spawn::spawn(work, placement) {
            Ok(spawned) => spawned,
            Err(e) => return Err(self.undo(e)),
        };
        let ids: Result<Vec<ProcessId>, AgentError> =
            spawned.iter().map(|worker| ProcessId::of(worker.pid)).collect();
        let started = ids.and_then(|ids| {
            let mut steps: Vec<Undo> =
                self.files.iter().map(|path| Undo::RemoveFile { path: path.clone() }).collect();
            steps.push(Undo::KillWorkers { workers: ids.clone() });
            self.entry.update(steps)?;
            spawn::wait_ready(&spawned, READY_TIMEOUT)?;
            Ok(ids)
        });
        match started {
            Ok(ids) => Ok(self.handle(ids, None)),
            Err(e) => {
                spawn::abandon(&spawned);
                Err(self.undo(e))
            }
        }
    }

    fn handle(self, workers: Vec<ProcessId>, fill: Option<disk::FillFile>) -> StressHandle {
        let Begun { id, kind, entry, files, bytes } = self;
        let shown: Vec<String> = files.iter().map(|path| path.display().to_string()).collect();
        let (pids, files_shown) = (pid_list(&workers), shown.join(","));
        tracing::info!(fault_id = %id, %kind, %pids, files = %files_shown, "injected");
        StressHandle {
            id,
            kind,
            pending: Mutex::new(Some(Pending { entry, workers: workers.clone() })),
            workers,
            files,
            bytes,
            fill,
            moved: Mutex::new(None),
        }
    }

    /// Takes back what was done (workers already killed) and returns `error` for the caller to return. If
    /// that fails too, the record stays for a replay.
    fn undo(self, error: AgentError) -> AgentError {
        let (id, kind) = (self.id, self.kind);
        tracing::warn!(fault_id = %id, %kind, pids = "", error = %error, "failed");
        if let Err(e) = self.entry.revert() {
            tracing::warn!(fault_id = %id, %kind, pids = "", error = %e, "failed");
        }
        error
    }

    /// Takes back an apply that created the first `created` of its files and failed to create the next: that
    /// one may belong to someone else (`O_EXCL` found it there), so the record is narrowed to the files this
    /// apply created before they are deleted. Returns `error`.
    fn undo_created(self, created: usize, error: AgentError) -> AgentError {
        let ours: Vec<PathBuf> = self.files.iter().take(created).cloned().collect();
        match self.entry.update(ours.iter().map(|path| Undo::RemoveFile { path: path.clone() }).collect()) {
            Ok(()) => self.undo(error),
            Err(e) => {
                // The record still names the other file: delete ours by hand, then the record.
                let (id, kind) = (self.id, self.kind);
                tracing::warn!(fault_id = %id, %kind, pids = "", error = %error, "failed");
                tracing::warn!(fault_id = %id, %kind, pids = "", error = %e, "failed");
                for path in &ours {
                    let _ = std::fs::remove_file(path);
                }
                let _ = self.entry.finish();
                error
            }
        }
    }
}

// === checks shared by the specs ===

fn check_workers(workers: u32) -> Result<(), AgentError> {
    if (1..=MAX_WORKERS).contains(&workers) {
        Ok(())
    } else {
        Err(AgentError::invalid("workers", format!("expected 1 to {MAX_WORKERS}, found {workers}")))
    }
}

/// Refuses a path that is not an existing directory.
fn check_dir(path: &Path) -> Result<(), AgentError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(AgentError::invalid(
            "path",
            format!("expected an existing directory, found a file at {}", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(AgentError::invalid(
            "path",
            format!("expected an existing directory, found nothing at {}", path.display()),
        )),
        Err(e) => Err(AgentError::io(format!("reading {}", path.display()), e)),
    }
}

/// The bytes an unprivileged user may still allocate on the filesystem of `path` (`f_bavail × f_frsize`).
pub fn free_space(path: &Path) -> Result<u64, AgentError> {
    let stat = nix::sys::statvfs::statvfs(path)
        .map_err(|e| AgentError::io(format!("statvfs {}", path.display()), e.into()))?;
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}
