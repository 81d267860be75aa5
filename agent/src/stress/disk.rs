//! Disk fill: one file in a directory, allocated with `fallocate(2)` (or written with zeros) and fsync'd.
//!
//! The file is created beneath an allowed directory without following any symlink (`openat2`), and
//! reverted through the descriptors held since: truncated through the file, deleted through its directory only
//! while the name still holds that file. A file that is not where it was put is an error, not a clean revert.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, FallocateFlags, OFlag, OpenHow, ResolveFlag, fallocate, openat2};
use nix::sys::stat::{Mode, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::{Deserialize, Serialize};

use super::size::{MIB, Size, human};
use super::{Begun, StressHandle, check_dir, free_space};
use crate::AgentError;
use crate::beneath::Beneath;
use crate::faults::{FaultId, FaultKind};
use crate::journal::{FileIdentity, Journal, Undo};
use crate::process::ProcessId;

/// Fill `size` of the filesystem holding `path` with one file, `chaos-fill-FAULT-PID.bin`. A percentage is of
/// the free space at apply time. Refused, before anything is created, when it exceeds the free space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFill {
    /// An existing directory.
    pub path: PathBuf,
    pub size: Size,
    /// Set when the fill is confined to a pod's container (`pods::in_pod`); never read from a file.
    #[serde(skip)]
    pub within: Option<FillRoot>,
}

/// Where a disk fill inside a pod writes.
#[derive(Debug, Clone, PartialEq)]
pub enum FillRoot {
    /// A volume of the container: [`DiskFill::path`] is already the node's path for it, beneath `host_root` (the
    /// volume's node path, the only directory the fill may reach); `container_path` is where the container
    /// sees that path. The record names the node's path, so the file is reverted even after the container
    /// is gone (the volume may outlive it).
    /// `task` is the container's: the node's directory must be the very one the container sees at
    /// `container_path` (same device and inode), else the fill is refused.
    Volume { host_root: PathBuf, container_path: PathBuf, task: ProcessId },
    /// The container's own root filesystem: [`DiskFill::path`] is a path inside the container, reached through
    /// its task's `/proc/PID/root` with symlinks resolved inside that root (`RESOLVE_IN_ROOT`). The file lives
    /// in the container's writable layer and goes with it: a directory on another filesystem (a volume the agent
    /// does not see at its node path, a tmpfs) is refused, since a file there could outlive its record.
    Container { task: ProcessId },
}

// === impl DiskFill ===

impl DiskFill {
    /// A fill of `size` in the directory `path` on this host.
    pub fn new(path: impl Into<PathBuf>, size: Size) -> DiskFill {
        DiskFill { path: path.into(), size, within: None }
    }

    pub fn kind(&self) -> FaultKind {
        FaultKind::DiskFill
    }

    /// The free space of the filesystem holding `path` (inside the container for a container's root).
    pub fn free_space(&self) -> Result<u64, AgentError> {
        match &self.within {
            Some(FillRoot::Container { task }) => {
                let dir = open_in_container(task, &self.path)?;
                free_space_of(&dir, &self.path)
            }
            Some(FillRoot::Volume { .. }) | None => free_space(&self.path),
        }
    }

    /// The bytes `apply` allocates: `size`, or its percentage of the free space now.
    pub fn bytes(&self) -> Result<u64, AgentError> {
        self.size.check("size")?;
        match self.size {
            Size::Bytes(bytes) => Ok(bytes),
            percent @ Size::Percent(_) => {
                let free = self.free_space()?;
                match percent.of(free) {
                    0 => Err(AgentError::invalid(
                        "size",
                        format!("expected more than 0 bytes, found {percent} of {} free", human(free)),
                    )),
                    bytes => Ok(bytes),
                }
            }
        }
    }

    /// Refuses a size of zero, a percentage outside `(0, 100]` and a path that is not an existing directory
    /// (for a container's root: an absolute path, checked as a directory when it is opened).
    pub fn validate(&self) -> Result<(), AgentError> {
        self.size.check("size")?;
        match &self.within {
            Some(FillRoot::Container { .. }) => check_container_path(&self.path),
            Some(FillRoot::Volume { .. }) | None => check_dir(&self.path),
        }
    }

    /// [`Self::validate`] without what depends on the host it runs on (the directory existing there).
    pub fn validate_shape(&self) -> Result<(), AgentError> {
        self.size.check("size")
    }

    /// Where the fill writes, for plans: the container's path and the node's when they differ.
    pub fn location(&self) -> String {
        match &self.within {
            None => self.path.display().to_string(),
            Some(FillRoot::Volume { host_root, container_path, .. }) => format!(
                "{} in the container (its volume at {} on the node: {})",
                container_path.display(),
                host_root.display(),
                self.path.display()
            ),
            Some(FillRoot::Container { task }) => format!(
                "{} in the container's root filesystem (through /proc/{}/root)",
                self.path.display(),
                task.pid
            ),
        }
    }

    /// Validates, refuses a size above the free space, journals, then creates and allocates the file beneath
    /// `path` itself: [`DiskFill::apply_within`] with `path` as the only allowed directory.
    pub fn apply(&self, journal: &Journal) -> Result<StressHandle, AgentError> {
        self.apply_within(journal, std::slice::from_ref(&self.path))
    }

    /// Validates, refuses a size above the free space, journals, then creates and allocates the file in `path`,
    /// which must lie beneath one of `allowed` (the policy's `fill_paths`).
    ///
    /// Nothing is checked and then used by name: the allowed directory is opened once, `path` is opened
    /// relative to it with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, and the file is created relative
    /// to that with `O_CREAT | O_EXCL | O_NOFOLLOW`. A directory swapped for a symlink at any moment makes the
    /// apply fail; no byte is written outside the allowed directory. The undo record names the file by
    /// device and inode too, so a revert deletes only this very file.
    ///
    /// A fill inside a pod ([`DiskFill::within`]) ignores `allowed`: a volume's fill stays beneath that volume's
    /// node path, a root filesystem's beneath the container's root.
    pub fn apply_within(&self, journal: &Journal, allowed: &[PathBuf]) -> Result<StressHandle, AgentError> {
        self.validate()?;
        let bytes = self.bytes()?;
        let (dir, dir_path) = match &self.within {
            None => self.open_beneath(allowed)?,
            Some(FillRoot::Volume { host_root, container_path, task }) => {
                let (dir, dir_path) = self.open_beneath(std::slice::from_ref(host_root))?;
                let seen = open_in_container(task, container_path)?;
                if identity(&dir, &self.path)? != identity(&seen, container_path)? {
                    return Err(AgentError::invalid(
                        "path",
                        format!(
                            "expected {} on the node to be the directory the container sees at {}, found another \
                             (is the volume mounted into the agent with HostToContainer propagation?)",
                            self.path.display(),
                            container_path.display()
                        ),
                    ));
                }
                (dir, dir_path)
            }
            Some(FillRoot::Container { task }) => {
                let (root, dir) = open_in_container_root(task, &self.path)?;
                if identity(&root, Path::new("/"))?.dev != identity(&dir, &self.path)?.dev {
                    return Err(AgentError::invalid(
                        "path",
                        format!(
                            "expected {} on the container's root filesystem, found another filesystem (a volume \
                             whose node path this agent does not see, or a tmpfs): a fill there could outlive its \
                             record; mount the kubelet's pods directory into the agent to fill volumes",
                            self.path.display()
                        ),
                    ));
                }
                return self.fill(journal, bytes, dir, self.path.clone(), |path, id| {
                    Undo::RemoveContainerFile { task: *task, path: path.to_path_buf(), file: id }
                });
            }
        };
        self.fill(journal, bytes, dir, dir_path, |path, id| match id {
            None => Undo::RemoveFile { path: path.to_path_buf() },
            Some(FileIdentity { dev, ino }) => Undo::RemoveFillFile { path: path.to_path_buf(), dev, ino },
        })
    }

    /// `path` opened beneath one of `allowed`, with its path as found there.
    fn open_beneath(&self, allowed: &[PathBuf]) -> Result<(OwnedFd, PathBuf), AgentError> {
        let beneath = Beneath::find(&self.path, allowed, "fill-paths")?;
        let dir = beneath.open(OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty(), &self.path)?;
        Ok((dir, beneath.path()))
    }

    /// Creates and allocates the fill file in the opened `dir` (shown as `dir_path`), journaled with the undo
    /// step `record` makes of the file's path and, once it exists, its identity.
    fn fill(
        &self,
        journal: &Journal,
        bytes: u64,
        dir: OwnedFd,
        dir_path: PathBuf,
        record: impl Fn(&Path, Option<FileIdentity>) -> Undo,
    ) -> Result<StressHandle, AgentError> {
        let free = free_space_of(&dir, &self.path)?;
        if bytes > free {
            return Err(AgentError::invalid(
                "size",
                format!(
                    "expected at most the {} free in {}, found {} ({bytes} bytes)",
                    human(free),
                    self.path.display(),
                    self.size
                ),
            ));
        }
        let (id, kind) = (FaultId::next(), self.kind());
        let name = format!("chaos-fill-{id}-{}.bin", std::process::id());
        let path = dir_path.join(&name);
        let entry = journal.begin(id, kind, vec![record(&path, None)])?;
        let begun = Begun { id, kind, entry, files: vec![path.clone()], bytes: Some(bytes) };
        let how = OpenHow::new()
            .flags(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .mode(Mode::from_bits_truncate(0o600))
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let file = match openat2(&dir, name.as_str(), how) {
            Ok(fd) => File::from(fd),
            Err(e) => {
                let error = AgentError::io(format!("creating {}", path.display()), e.into());
                return Err(begun.undo_created(0, error));
            }
        };
        let (dev, ino) = match fstat(&file) {
            Ok(stat) => (stat.st_dev, stat.st_ino),
            Err(e) => {
                let error = AgentError::io(format!("reading {}", path.display()), e.into());
                drop(file);
                return Err(begun.undo(error));
            }
        };
        // From here on the record names the file by identity: a replay deletes it only if it is still this one.
        if let Err(e) = begun.entry.update(vec![record(&path, Some(FileIdentity { dev, ino }))]) {
            drop(file);
            return Err(begun.undo(e));
        }
        if let Err(e) = allocate(&file, &path, bytes) {
            // Through the descriptor, so the space is freed even if the name was moved meanwhile.
            let _ = file.set_len(0);
            drop(file);
            return Err(begun.undo(e));
        }
        Ok(begun.finish_fill(FillFile { dir, name, path, file, dev, ino }))
    }
}

/// The file a disk fill created, held open with its directory so the revert can free and delete this very
/// file even if a name on the way was swapped.
#[derive(Debug)]
pub(super) struct FillFile {
    dir: OwnedFd,
    name: String,
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
}

/// Why a fill file could not be reverted as it was created.
#[derive(Debug)]
pub(super) enum RemoveError {
    /// A system call failed; trying again may work.
    Io(AgentError),
    /// The space was freed through the open file, but its name is gone or now holds another file: nothing
    /// more can be done, and this must be reported, not counted as a clean revert.
    Moved(AgentError),
}

// === impl FillFile ===

impl FillFile {
    /// Frees the space through the open file (wherever its name is now), then deletes the name if it still
    /// holds this file (same device and inode), through the directory opened at apply time.
    pub(super) fn remove(&self) -> Result<(), RemoveError> {
        self.file.set_len(0).map_err(|e| {
            RemoveError::Io(AgentError::io(format!("truncating fill file {}", self.path.display()), e))
        })?;
        match fstatat(&self.dir, self.name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) if (stat.st_dev, stat.st_ino) == (self.dev, self.ino) => {
                match unlinkat(&self.dir, self.name.as_str(), UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => Ok(()),
                    Err(e) => Err(RemoveError::Io(AgentError::io(
                        format!("removing fill file {}", self.path.display()),
                        e.into(),
                    ))),
                }
            }
            Ok(_) => Err(RemoveError::Moved(moved(&self.path, "another file has its name now (left alone)"))),
            Err(Errno::ENOENT) => Err(RemoveError::Moved(moved(&self.path, "it was moved or deleted"))),
            Err(e) => Err(RemoveError::Io(AgentError::io(
                format!("looking up fill file {}", self.path.display()),
                e.into(),
            ))),
        }
    }
}

fn moved(path: &Path, what: &str) -> AgentError {
    AgentError::Moved {
        path: path.to_path_buf(),
        detail: format!("{what}; its space was freed through the file the agent held open"),
    }
}

/// The undo step of a fill file after a crash, when no descriptor is held: the file at `path` is truncated
/// and deleted only if it is still the one created (`dev`, `ino`), through its directory opened without
/// following symlinks. A name that is gone or that holds another file is logged as a `failed` event and the
/// step counts as done: no later replay could find the file either, and a record that can never succeed would
/// make every `revert-all` fail.
pub(crate) fn remove_recorded(path: &Path, dev: u64, ino: u64) -> Result<(), AgentError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(AgentError::invalid("path", format!("expected a file path, found {}", path.display())));
    };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let dir = match openat2(AT_FDCWD, parent, how) {
        Ok(dir) => dir,
        Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => {
            tracing::warn!(path = %path.display(), "failed: fill file's directory is gone or was replaced");
            return Ok(());
        }
        Err(e) => return Err(AgentError::io(format!("opening {}", parent.display()), e.into())),
    };
    remove_in(&dir, name, path, Some(FileIdentity { dev, ino }))
}

/// The undo step of a fill file in a container's root filesystem after a crash: through the container's task
/// (`/proc/PID/root`, the task checked by start time before and after), its directory resolved inside that
/// root, then as [`remove_recorded`]; without an identity (the agent died between creating the record and the
/// file) the uniquely named file is deleted by name. A task that is gone took its writable layer with it (or
/// the runtime removes it with the exited container): logged, and the step counts as done.
pub(crate) fn remove_in_container(
    task: &ProcessId,
    path: &Path,
    file: Option<FileIdentity>,
) -> Result<(), AgentError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(AgentError::invalid("path", format!("expected a file path, found {}", path.display())));
    };
    let dir = match open_in_container(task, parent) {
        Ok(dir) => dir,
        Err(AgentError::Exited(_)) => {
            tracing::warn!(path = %path.display(), pid = task.pid,
                "failed: the container's task is gone; its fill file went with its writable layer");
            return Ok(());
        }
        Err(AgentError::Invalid { reason, .. }) => {
            tracing::warn!(path = %path.display(), pid = task.pid, %reason,
                "failed: fill file's directory is gone or was replaced");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    remove_in(&dir, name, path, file)
}

/// Truncates and deletes `name` in `dir` if it is the file `file` (any regular file of that name when
/// `None`); see [`remove_recorded`] for what is logged instead.
fn remove_in(
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    path: &Path,
    file: Option<FileIdentity>,
) -> Result<(), AgentError> {
    let how = OpenHow::new()
        .flags(OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let opened = match openat2(dir, name, how) {
        Ok(fd) => File::from(fd),
        Err(Errno::ENOENT) => {
            tracing::warn!(path = %path.display(), "failed: fill file is not where it was created");
            return Ok(());
        }
        Err(Errno::ELOOP | Errno::ENXIO | Errno::EISDIR) => {
            tracing::warn!(path = %path.display(), "failed: fill file was replaced (left alone)");
            return Ok(());
        }
        Err(e) => return Err(AgentError::io(format!("opening {}", path.display()), e.into())),
    };
    let stat = fstat(&opened).map_err(|e| AgentError::io(format!("reading {}", path.display()), e.into()))?;
    let same = match file {
        Some(FileIdentity { dev, ino }) => (stat.st_dev, stat.st_ino) == (dev, ino),
        None => (stat.st_mode & libc::S_IFMT) == libc::S_IFREG,
    };
    if !same {
        tracing::warn!(path = %path.display(), "failed: fill file was replaced (left alone)");
        return Ok(());
    }
    opened.set_len(0).map_err(|e| AgentError::io(format!("truncating {}", path.display()), e))?;
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(AgentError::io(format!("removing {}", path.display()), e.into())),
    }
}

/// Refuses a container path that is not absolute or that names `..`.
fn check_container_path(path: &Path) -> Result<(), AgentError> {
    let plain = path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if path.is_absolute() && plain {
        Ok(())
    } else {
        Err(AgentError::invalid(
            "path",
            format!("expected an absolute path inside the container without `..`, found {}", path.display()),
        ))
    }
}

/// The directory `path` of the container whose task is `task`, opened through `/proc/PID/root` with every
/// symlink resolved inside that root (`RESOLVE_IN_ROOT`, no magic links), so nothing the container holds can
/// lead out of it. The task is checked (pid and start time) before and after the root is opened: a pid reused
/// meanwhile is refused ([`AgentError::Exited`] when the task is gone).
fn open_in_container(task: &ProcessId, path: &Path) -> Result<OwnedFd, AgentError> {
    open_in_container_root(task, path).map(|(_, dir)| dir)
}

/// [`open_in_container`], with the container's root directory opened too.
fn open_in_container_root(task: &ProcessId, path: &Path) -> Result<(OwnedFd, OwnedFd), AgentError> {
    check_container_path(path)?;
    let gone = || AgentError::Exited(*task);
    let same_task = || -> Result<(), AgentError> {
        match crate::process::procfs::stat(task.pid)? {
            Some(stat) if stat.start_time == task.start_time => Ok(()),
            _ => Err(gone()),
        }
    };
    same_task()?;
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC);
    let root = match openat2(AT_FDCWD, format!("/proc/{}/root", task.pid).as_str(), how) {
        Ok(root) => root,
        Err(Errno::ENOENT | Errno::ESRCH) => return Err(gone()),
        Err(e) => return Err(AgentError::io(format!("opening /proc/{}/root", task.pid), e.into())),
    };
    same_task()?;
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let dir = openat2(&root, relative, how).map_err(|e| match e {
        Errno::ENOENT | Errno::ENOTDIR => AgentError::invalid(
            "path",
            format!("expected an existing directory in the container, found none at {}", path.display()),
        ),
        // What the container holds may be a symlink loop or a magic link: refused, as anything it controls.
        Errno::ELOOP | Errno::EXDEV => AgentError::invalid(
            "path",
            format!(
                "expected a directory in the container, found {} leading through a link ({e})",
                path.display()
            ),
        ),
        e => AgentError::io(
            format!("opening {} in the container of pid {}", path.display(), task.pid),
            e.into(),
        ),
    })?;
    Ok((root, dir))
}

/// A descriptor's file identity.
fn identity(fd: &OwnedFd, path: &Path) -> Result<FileIdentity, AgentError> {
    let stat = fstat(fd).map_err(|e| AgentError::io(format!("reading {}", path.display()), e.into()))?;
    Ok(FileIdentity { dev: stat.st_dev, ino: stat.st_ino })
}

/// The free space of the filesystem holding the opened directory.
fn free_space_of(dir: &OwnedFd, path: &Path) -> Result<u64, AgentError> {
    let stat = nix::sys::statvfs::fstatvfs(dir)
        .map_err(|e| AgentError::io(format!("statvfs {}", path.display()), e.into()))?;
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

/// Allocates `bytes` to `file`: `fallocate(2)`, or zeros written 1 MiB at a time where that is unsupported;
/// then fsync.
fn allocate(file: &File, path: &Path, bytes: u64) -> Result<(), AgentError> {
    let what = || format!("allocating {} in {}", human(bytes), path.display());
    let len = i64::try_from(bytes).map_err(|_| {
        AgentError::invalid("size", format!("expected at most {} bytes, found {bytes}", i64::MAX))
    })?;
    match fallocate(file, FallocateFlags::empty(), 0, len) {
        Ok(()) => {}
        Err(Errno::EOPNOTSUPP | Errno::ENOSYS) => {
            let zeros = vec![0u8; MIB as usize];
            let mut left = bytes;
            let mut writer = file;
            while left > 0 {
                let chunk = left.min(MIB) as usize;
                writer.write_all(&zeros[..chunk]).map_err(|e| AgentError::io(what(), e))?;
                left -= chunk as u64;
            }
        }
        Err(e) => return Err(AgentError::io(what(), e.into())),
    }
    file.sync_all().map_err(|e| AgentError::io(format!("syncing {}", path.display()), e))
}
