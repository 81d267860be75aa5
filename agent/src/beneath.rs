//! Opening a path beneath one of a list of allowed directories with no check-then-use: the allowed directory is
//! opened once, and the rest of the path is opened relative to it with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so a component swapped for a symlink (or `..`) at any moment makes the open fail
//! instead of leaving the directory. Disk fill creates its file this way, and pidfiles are read this way.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use crate::AgentError;

/// A path found beneath an allowed directory, with that directory open.
#[derive(Debug)]
pub(crate) struct Beneath {
    /// The allowed directory, resolved.
    root: PathBuf,
    root_fd: OwnedFd,
    /// The rest of the path, relative to `root` (empty for `root` itself).
    relative: PathBuf,
}

impl Beneath {
    /// Finds which of `allowed` holds `path` and opens that directory. `path` is resolved once, only to find
    /// its allowed directory: if it resolved through a symlink that is swapped later, [`Beneath::open`]
    /// refuses it. A path under none of them is refused by policy rule `rule`.
    pub(crate) fn find(path: &Path, allowed: &[PathBuf], rule: &str) -> Result<Beneath, AgentError> {
        let real =
            path.canonicalize().map_err(|e| AgentError::io(format!("resolving {}", path.display()), e))?;
        let found = allowed.iter().filter_map(|root| root.canonicalize().ok()).find_map(|root| {
            let relative = real.strip_prefix(&root).ok()?.to_path_buf();
            Some((root, relative))
        });
        let Some((root, relative)) = found else {
            let list: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
            return Err(AgentError::Forbidden {
                rule: rule.into(),
                detail: format!("{} is not under any allowed path ({})", path.display(), list.join(", ")),
            });
        };
        // The allowed directory is the policy's own (trusted) path, resolved: no symlink is left in it.
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
        let root_fd = openat2(AT_FDCWD, &root, how).map_err(|e| refused(&root, e))?;
        Ok(Beneath { root, root_fd, relative })
    }

    /// The path as found: the allowed directory joined with the rest.
    pub(crate) fn path(&self) -> PathBuf {
        self.root.join(&self.relative)
    }

    /// Opens the path with `flags` (and `O_NOFOLLOW | O_CLOEXEC`) beneath its allowed directory, following no
    /// symlink. `what` names the path in errors.
    pub(crate) fn open(&self, flags: OFlag, mode: Mode, what: &Path) -> Result<OwnedFd, AgentError> {
        let relative: &Path =
            if self.relative.as_os_str().is_empty() { Path::new(".") } else { &self.relative };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        openat2(&self.root_fd, relative, how).map_err(|e| refused(what, e))
    }
}

/// An open that met a symlink or left its directory says so; others are plain IO errors.
fn refused(path: &Path, e: Errno) -> AgentError {
    match e {
        Errno::ELOOP | Errno::EXDEV => AgentError::invalid(
            "path",
            format!(
                "expected a path reached without symlinks, found {} changed or holding a symlink ({e})",
                path.display()
            ),
        ),
        e => AgentError::io(format!("opening {}", path.display()), e.into()),
    }
}
