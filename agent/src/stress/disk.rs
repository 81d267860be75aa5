//! Disk fill: one file in a directory, allocated with `fallocate(2)` (or written with zeros) and fsync'd.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, fallocate};
use serde::{Deserialize, Serialize};

use super::size::{MIB, Size, human};
use super::{Begun, StressHandle, check_dir, free_space};
use crate::AgentError;
use crate::faults::{FaultId, FaultKind};
use crate::journal::{Journal, Undo};

/// Fill `size` of the filesystem holding `path` with one file, `chaos-fill-FAULT-PID.bin`. A percentage is of
/// the free space at apply time. Refused, before anything is created, when it exceeds the free space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFill {
    /// An existing directory.
    pub path: PathBuf,
    pub size: Size,
}

// === impl DiskFill ===

impl DiskFill {
    pub fn kind(&self) -> FaultKind {
        FaultKind::DiskFill
    }

    /// The bytes `apply` allocates: `size`, or its percentage of the free space now.
    pub fn bytes(&self) -> Result<u64, AgentError> {
        self.size.check("size")?;
        match self.size {
            Size::Bytes(bytes) => Ok(bytes),
            percent @ Size::Percent(_) => {
                let free = free_space(&self.path)?;
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

    /// Refuses a size of zero, a percentage outside `(0, 100]` and a path that is not an existing directory.
    pub fn validate(&self) -> Result<(), AgentError> {
        self.size.check("size")?;
        check_dir(&self.path)
    }

    /// Validates, refuses a size above the free space, journals, then creates and allocates the file.
    pub fn apply(&self, journal: &Journal) -> Result<StressHandle, AgentError> {
        self.validate()?;
        let bytes = self.bytes()?;
        let free = free_space(&self.path)?;
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
        let path = self.path.join(format!("chaos-fill-{id}-{}.bin", std::process::id()));
        let entry = journal.begin(id, kind, vec![Undo::RemoveFile { path: path.clone() }])?;
        let begun = Begun { id, kind, entry, files: vec![path.clone()], bytes: Some(bytes) };
        let file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(file) => file,
            Err(e) => {
                let error = AgentError::io(format!("creating {}", path.display()), e);
                return Err(begun.undo_created(0, error));
            }
        };
        match allocate(&file, &path, bytes) {
            Ok(()) => Ok(begun.finish()),
            Err(e) => {
                drop(file);
                Err(begun.undo(e))
            }
        }
    }
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
