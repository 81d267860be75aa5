//! The undo journal: what to do to take each applied fault back, written and fsync'd before the host changes.
//!
//! One JSON file per applied fault in the journal directory, named after its owner and fault id. A record is
//! written (temporary file, fsync, rename, fsync of the directory) before the fault touches anything, rewritten
//! when the fault learns more (the pids of the workers it started), and deleted once the fault is reverted. A
//! process killed with SIGKILL therefore leaves exactly the records of the faults it still held.
//!
//! This module only stores: it writes, reads, lists and deletes records, and never acts on the host. Running
//! their [`Undo`] steps (a fault's own revert, the replay of a dead owner's records at start, `chaos agent
//! revert-all`, the watchdog) is the `undo` module's job, which sits above this one and the faults it calls.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::faults::kind::{FaultId, FaultKind};
use crate::process::ProcessId;
use crate::watchdog::guard::Guard;

/// The default state directory of an agent running as root.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/chaos/agent";

/// Where the state (and so the journal) lives unless told otherwise: `$CHAOS_STATE_DIR`, else
/// [`DEFAULT_STATE_DIR`] for root, else `$XDG_STATE_HOME/chaos/agent` (or `~/.local/state/chaos/agent`).
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHAOS_STATE_DIR") {
        return dir.into();
    }
    if nix::unistd::geteuid().is_root() {
        return DEFAULT_STATE_DIR.into();
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")));
    base.unwrap_or_else(std::env::temp_dir).join("chaos/agent")
}

/// The journal directory of one state directory; records of every process using it live side by side.
///
/// Each [`Journal::open`] is one *instance* (a random id in its records) with its own out-of-process watchdog
/// when the program installed one (the watchdog's owner side, `watchdog/guard.rs`). Clones share the instance;
/// [`Journal::leased`] gives a clone whose new records carry a lease deadline.
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Inner>,
    /// The lease new records get (`deadline_ms` = now + lease); `None`: no deadline but the owner's life.
    lease: Option<Duration>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    owner: ProcessId,
    boot_id: String,
    instance: u64,
    /// The network namespace this process is in (`net:[4026531840]`), written into every record.
    netns: Option<String>,
    next_seq: AtomicU64,
    /// Serialises rewrites of records (renewals and updates), so no write loses another's change.
    writes: Mutex<()>,
    /// Declared last: dropped after everything else, it closes the watchdog's pipe.
    watchdog: Option<Guard>,
}

/// One step that takes (part of) a fault back. Every step is idempotent: undoing what is already undone succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Undo {
    /// SIGCONT to each process that is still the one stopped (same pid and start time).
    Resume { targets: Vec<ProcessId> },
    /// SIGKILL to each worker process that is still the one started.
    KillWorkers { workers: Vec<ProcessId> },
    /// Delete a file this fault created (a fill file, an IO stress file).
    RemoveFile { path: PathBuf },
    /// Truncate and delete a fill file if `path` still holds the very file created (device and inode); see
    /// the disk stress (`stress/disk.rs`, `remove_recorded`) for what is done when it does not.
    RemoveFillFile { path: PathBuf, dev: u64, ino: u64 },
    /// Truncate and delete a fill file in the root filesystem of the container whose task is `task`: `path`
    /// is inside the container, reached through `/proc/PID/root` while the task is still the one recorded;
    /// `file` is its identity once it was created. A task that is gone took the file with its writable layer.
    RemoveContainerFile {
        task: ProcessId,
        path: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<FileIdentity>,
    },
    /// Delete a whole nftables table of family `inet` that this fault created.
    DeleteNftTable {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netns: Option<String>,
        table: String,
    },
    /// Delete the root qdisc of `device` if it is still the one this fault added (same handle).
    DeleteQdisc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netns: Option<String>,
        device: String,
        handle: String,
    },
    /// Delete proxy `name` through the Toxiproxy-compatible admin API at `api` (`http://host:port`): a proxy
    /// a run created on a server that cannot expire it by itself.
    DeleteProxy { api: String, name: String },
}

/// A file by identity: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
}

/// The record of one applied fault, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub version: u32,
    pub fault_id: String,
    pub kind: String,
    /// The process that applied the fault; its records are orphaned once it is gone.
    pub owner: ProcessId,
    /// `/proc/sys/kernel/random/boot_id` when written: after a reboot, pids in the record mean nothing.
    pub boot_id: String,
    /// When the record was first written, in milliseconds since the Unix epoch; replay goes newest first.
    pub written_unix_ms: u64,
    /// Orders records written in the same millisecond by one owner.
    pub seq: u64,
    /// Steps to undo the fault, in the order they were taken; reverting runs them backwards.
    pub undo: Vec<Undo>,
    /// The journal instance that wrote it (one per [`Journal::open`]); its watchdog watches these records.
    #[serde(default)]
    pub instance: u64,
    /// The lease deadline in milliseconds of this boot's clock (`CLOCK_BOOTTIME`, which counts suspended time
    /// and never jumps): past it (plus a grace), the watchdog reverts the fault even while its owner lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The network namespace the owner was in (`net:[INODE]`): network steps without a named `netns` must be
    /// undone there, and a reverter elsewhere refuses and keeps the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

/// A record on disk, held by the fault it belongs to. [`Entry::finish`] deletes it after a complete revert.
#[derive(Debug)]
pub struct Entry {
    journal: Journal,
    path: PathBuf,
    record: std::sync::Mutex<Record>,
}

/// Which records a replay (`undo::replay`, [`Journal::replay`]) reverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayMode {
    /// Only records whose owner is not running (any more, or on this boot): what a starting agent does.
    Orphaned,
    /// Every record, live owner or not: the break-glass `chaos agent revert-all`.
    All,
}

/// The records of a journal directory, oldest first, and the files in it that could not be read (with why).
pub type Listing = (Vec<(PathBuf, Record)>, Vec<(PathBuf, String)>);

/// What a replay found and did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Records reverted completely and deleted.
    pub reverted: Vec<Record>,
    /// Records left alone because their owner is still running (only in [`ReplayMode::Orphaned`]).
    pub live: Vec<Record>,
    /// Records whose revert failed, kept for the next replay, with the first error.
    pub failed: Vec<(Record, AgentError)>,
    /// Files in the journal that could not be read or parsed; kept, and named here.
    pub unreadable: Vec<(PathBuf, String)>,
}

// === impl Journal ===

impl Journal {
    /// Opens (creating, mode 0700) the journal under `state_dir`, as the current process.
    pub fn open(state_dir: impl AsRef<Path>) -> Result<Journal, AgentError> {
        let dir = state_dir.as_ref().join("journal");
        create_private_dir(&dir)?;
        let owner = ProcessId::of(std::process::id() as i32)?;
        let instance = loop {
            let id: u64 = rand::random();
            if id != 0 {
                break id;
            }
        };
        let watchdog = Guard::start(&dir, owner, instance)?;
        Ok(Journal {
            inner: Arc::new(Inner {
                dir,
                owner,
                boot_id: boot_id()?,
                instance,
                netns: current_netns(),
                next_seq: AtomicU64::new(0),
                writes: Mutex::new(()),
                watchdog,
            }),
            lease: None,
        })
    }

    /// A clone whose records [`Journal::begin`] writes with a deadline `lease` from then (none for `None`).
    pub fn leased(&self, lease: Option<Duration>) -> Journal {
        Journal { inner: self.inner.clone(), lease }
    }

    /// The pid of this instance's watchdog process, while one runs.
    pub fn watchdog_pid(&self) -> Option<u32> {
        self.inner.watchdog.as_ref().and_then(Guard::pid)
    }

    /// Moves the deadline of fault `id`'s record to `ttl` from now (fsync'd), so the watchdog does not revert a
    /// renewed fault. A fault without a record (nothing to undo) has nothing to move.
    pub fn renew(&self, id: FaultId, ttl: Duration) -> Result<(), AgentError> {
        self.ensure_watchdog();
        let path = self.path_of(id);
        let _writes = self.inner.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut record = match read_record(&path) {
            Ok(record) => record,
            Err(ReadError::Missing) => return Ok(()),
            Err(ReadError::Bad(reason)) => return Err(AgentError::Journal { path, reason }),
        };
        record.deadline_ms = Some(boot_clock_ms() + ttl.as_millis() as u64);
        write_durably(&path, &record)
    }

    fn path_of(&self, id: FaultId) -> PathBuf {
        let owner = self.inner.owner;
        self.inner.dir.join(format!("{}-{}-{}.json", owner.pid, owner.start_time, id))
    }

    /// Starts the watchdog again if it died (someone killed it): checked at every write.
    fn ensure_watchdog(&self) {
        if let Some(guard) = &self.inner.watchdog
            && let Err(e) = guard.ensure()
        {
            tracing::warn!(error = %e, "the watchdog could not be restarted");
        }
    }

    /// The directory the records live in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The process this instance writes records as.
    pub(crate) fn owner(&self) -> ProcessId {
        self.inner.owner
    }

    /// Writes and fsyncs the record of a fault about to be applied. Call before changing anything; if this fails,
    /// the fault must not be applied.
    pub fn begin(&self, id: FaultId, kind: FaultKind, undo: Vec<Undo>) -> Result<Entry, AgentError> {
        self.begin_as(id, kind.as_str(), undo)
    }

    /// [`Journal::begin`] for a change that is not one of this crate's faults (a proxy a `chaos run` created
    /// on a server without leases, undone by [`Undo::DeleteProxy`]); `kind` names it in listings.
    pub fn begin_external(&self, kind: &str, undo: Vec<Undo>) -> Result<Entry, AgentError> {
        self.begin_as(FaultId::next(), kind, undo)
    }

    fn begin_as(&self, id: FaultId, kind: &str, undo: Vec<Undo>) -> Result<Entry, AgentError> {
        self.ensure_watchdog();
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let record = Record {
            version: 1,
            fault_id: id.to_string(),
            kind: kind.to_string(),
            owner: self.inner.owner,
            boot_id: self.inner.boot_id.clone(),
            written_unix_ms: unix_ms(),
            seq,
            undo,
            instance: self.inner.instance,
            deadline_ms: self.lease.map(|lease| boot_clock_ms() + lease.as_millis() as u64),
            netns: self.inner.netns.clone(),
        };
        let path = self.path_of(id);
        write_durably(&path, &record)?;
        Ok(Entry { journal: self.clone(), path, record: std::sync::Mutex::new(record) })
    }

    /// Every record in the journal, oldest first, and the files that could not be read.
    pub fn records(&self) -> Listing {
        read_all(&self.inner.dir)
    }
}

/// The records under `state_dir` without touching them (for `chaos agent status`).
pub fn list(state_dir: impl AsRef<Path>) -> Listing {
    read_all(&state_dir.as_ref().join("journal"))
}

/// The records of one journal instance of `owner` in the journal directory `dir`, oldest first: what a
/// watchdog watches.
pub fn records_of(dir: &Path, owner: ProcessId, instance: u64) -> Vec<(PathBuf, Record)> {
    let (records, _) = read_all(dir);
    records.into_iter().filter(|(_, r)| r.owner == owner && r.instance == instance).collect()
}

/// This process's network namespace as the kernel names it (`net:[4026531840]`).
pub(crate) fn current_netns() -> Option<String> {
    fs::read_link("/proc/self/ns/net").ok().map(|p| p.to_string_lossy().into_owned())
}

// === impl Entry ===

impl Entry {
    /// Replaces the undo steps (for example once worker pids are known) and fsyncs the record again.
    pub fn update(&self, undo: Vec<Undo>) -> Result<(), AgentError> {
        let _writes = self.journal.inner.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut record = self.lock();
        let mut next = record.clone();
        next.undo = undo;
        // A renewal may have moved the deadline on disk since: keep it.
        if let Ok(on_disk) = read_record(&self.path) {
            next.deadline_ms = on_disk.deadline_ms;
        }
        write_durably(&self.path, &next)?;
        *record = next;
        Ok(())
    }

    /// The undo steps as last written.
    pub fn undo(&self) -> Vec<Undo> {
        self.lock().undo.clone()
    }

    /// Deletes the record: the fault has been reverted by other means.
    pub fn finish(&self) -> Result<(), AgentError> {
        remove_durably(&self.path)
    }

    /// Where the record lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal this entry belongs to.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// === files ===

pub(crate) fn read_all(dir: &Path) -> Listing {
    let (mut records, mut unreadable) = (Vec::new(), Vec::new());
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (records, unreadable),
        Err(e) => {
            unreadable.push((dir.to_path_buf(), e.to_string()));
            return (records, unreadable);
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Temporary files are records whose rename never happened: the change they announce never began.
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        match fs::read(&path).map_err(|e| e.to_string()).and_then(|bytes| {
            serde_json::from_slice::<Record>(&bytes).map_err(|e| format!("not an undo record: {e}"))
        }) {
            Ok(record) => records.push((path, record)),
            Err(reason) => unreadable.push((path, reason)),
        }
    }
    records.sort_by_key(|(_, r)| (r.written_unix_ms, r.owner, r.seq));
    (records, unreadable)
}

enum ReadError {
    Missing,
    Bad(String),
}

fn read_record(path: &Path) -> Result<Record, ReadError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(ReadError::Bad(e.to_string())),
    };
    serde_json::from_slice(&bytes).map_err(|e| ReadError::Bad(format!("not an undo record: {e}")))
}

fn write_durably(path: &Path, record: &Record) -> Result<(), AgentError> {
    let fail = |reason: String| AgentError::Journal { path: path.to_path_buf(), reason };
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| fail(e.to_string()))?;
    let dir = path.parent().ok_or_else(|| fail("no parent directory".into()))?;
    let name = path.file_name().ok_or_else(|| fail("no file name".into()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    // Owner only whatever the umask: a record names processes, paths and rules of this host.
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail(format!("creating {}: {e}", tmp.display())))?;
    file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(|e| fail(format!("writing: {e}")))?;
    fs::rename(&tmp, path).map_err(|e| fail(format!("renaming into place: {e}")))?;
    sync_dir(dir).map_err(|e| fail(format!("syncing the directory: {e}")))
}

pub(crate) fn remove_durably(path: &Path) -> Result<(), AgentError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(AgentError::Journal { path: path.to_path_buf(), reason: format!("deleting: {e}") });
        }
    }
    match path.parent() {
        Some(dir) => sync_dir(dir)
            .map_err(|e| AgentError::Journal { path: path.to_path_buf(), reason: format!("syncing: {e}") }),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn create_private_dir(dir: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| AgentError::Journal {
        path: dir.to_path_buf(),
        reason: format!("creating the directory: {e}"),
    })
}

/// This boot's id; records from another boot have pids that mean nothing now.
pub fn boot_id() -> Result<String, AgentError> {
    let path = "/proc/sys/kernel/random/boot_id";
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| AgentError::Proc { path: path.into(), source: e })
}

/// Milliseconds of `CLOCK_BOOTTIME`: monotonic, counts suspended time, the same for every process of a boot.
pub fn boot_clock_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(t) => t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000,
        Err(_) => 0,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::undo::replay;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chaos-journal-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_record_is_on_disk_until_reverted_and_replay_skips_live_owners() {
        let dir = temp_dir("live");
        let journal = Journal::open(&dir).unwrap();
        let file = dir.join("fill.bin");
        fs::write(&file, b"x").unwrap();
        let entry = journal
            .begin(FaultId::next(), FaultKind::ProcessPause, vec![Undo::RemoveFile { path: file.clone() }])
            .unwrap();
        assert!(entry.path().exists());
        let (records, bad) = journal.records();
        assert_eq!((records.len(), bad.len()), (1, 0));
        // The owner (this process) is alive: an orphan replay leaves it alone.
        let report = journal.replay(ReplayMode::Orphaned);
        assert_eq!((report.live.len(), report.reverted.len()), (1, 0));
        assert!(file.exists());
        entry.revert().unwrap();
        assert!(!file.exists() && !entry.path().exists());
        entry.revert().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replay_all_reverts_and_unreadable_files_are_kept_and_named() {
        let dir = temp_dir("all");
        let journal = Journal::open(&dir).unwrap();
        let file = dir.join("fill.bin");
        fs::write(&file, b"x").unwrap();
        let entry = journal.begin(FaultId::next(), FaultKind::ProcessPause, vec![]).unwrap();
        entry.update(vec![Undo::RemoveFile { path: file.clone() }]).unwrap();
        fs::write(journal.dir().join("garbage.json"), b"{not json").unwrap();
        let report = replay(&dir, ReplayMode::All);
        assert_eq!(report.reverted.len(), 1);
        assert_eq!(report.unreadable.len(), 1);
        assert!(report.unreadable[0].1.contains("not an undo record"), "{:?}", report.unreadable);
        assert!(!file.exists() && !entry.path().exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_of_a_dead_owner_are_orphans() {
        let dir = temp_dir("orphan");
        let journal = Journal::open(&dir).unwrap();
        let file = dir.join("fill.bin");
        fs::write(&file, b"x").unwrap();
        let entry = journal
            .begin(FaultId::next(), FaultKind::ProcessPause, vec![Undo::RemoveFile { path: file.clone() }])
            .unwrap();
        // Rewrite the record as if a process that has exited had written it.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = ProcessId { pid: child.id() as i32, start_time: 1 };
        child.wait().unwrap();
        let mut record = entry.lock().clone();
        record.owner = dead;
        write_durably(entry.path(), &record).unwrap();
        let report = replay(&dir, ReplayMode::Orphaned);
        assert_eq!(report.reverted.len(), 1, "{report:?}");
        assert!(!file.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn undo_steps_are_idempotent_and_serialise_by_name() {
        let step = Undo::DeleteQdisc { netns: None, device: "eth0".into(), handle: "1ca0:".into() };
        let json = serde_json::to_string(&step).unwrap();
        assert_eq!(json, r#"{"undo":"delete-qdisc","device":"eth0","handle":"1ca0:"}"#);
        Undo::RemoveFile { path: "/nonexistent/chaos".into() }.run().unwrap();
        let gone = ProcessId { pid: i32::MAX - 1, start_time: 1 };
        Undo::Resume { targets: vec![gone] }.run().unwrap();
    }
}
