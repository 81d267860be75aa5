//! IO stress: workers that each rewrite a file of their own, block by block, with `fdatasync` after each
//! block.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::size::{KIB, MIB, Size, human};
use super::{Begun, Placement, StressHandle, check_dir, check_workers, free_space, spawn};
use crate::AgentError;
use crate::faults::{FaultId, FaultKind};
use crate::journal::{Journal, Undo};

/// The largest block a worker writes at once (each worker holds one in memory).
pub const MAX_BLOCK_SIZE: u64 = 64 * MIB;

/// Keep the disk holding `path` busy: each of `workers` loops over its own file `chaos-io-FAULT-PID-N.bin`,
/// writing `block_size` of random bytes with `pwrite` then `fdatasync`, and wraps around at `file_size`.
/// Sizes are bytes, not percentages. Refused when `workers × file_size` exceeds the free space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoStress {
    /// An existing directory.
    pub path: PathBuf,
    /// 1 to 1024; default 1.
    #[serde(default = "one_worker")]
    pub workers: u32,
    /// At most `file_size` and 64 MiB; default 64 KiB.
    #[serde(default = "default_block_size")]
    pub block_size: Size,
    /// Default 64 MiB.
    #[serde(default = "default_file_size")]
    pub file_size: Size,
}

fn one_worker() -> u32 {
    1
}

fn default_block_size() -> Size {
    Size::Bytes(64 * KIB)
}

fn default_file_size() -> Size {
    Size::Bytes(64 * MIB)
}

// === impl IoStress ===

impl IoStress {
    /// One worker writing 64 KiB blocks over a 64 MiB file in `path`.
    pub fn in_dir(path: impl Into<PathBuf>) -> IoStress {
        IoStress {
            path: path.into(),
            workers: one_worker(),
            block_size: default_block_size(),
            file_size: default_file_size(),
        }
    }

    pub fn kind(&self) -> FaultKind {
        FaultKind::IoStress
    }

    /// `block_size` in bytes (refused if a percentage or zero).
    pub fn block_bytes(&self) -> Result<u64, AgentError> {
        self.block_size.bytes_only("block_size")
    }

    /// `file_size` in bytes (refused if a percentage or zero).
    pub fn file_bytes(&self) -> Result<u64, AgentError> {
        self.file_size.bytes_only("file_size")
    }

    /// The disk space the files take once written: `workers × file_size`.
    pub fn total_bytes(&self) -> Result<u64, AgentError> {
        Ok(u64::from(self.workers).saturating_mul(self.file_bytes()?))
    }

    /// Refuses a worker count outside 1..=1024, sizes that are zero or percentages, a block above 64 MiB or
    /// above the file size, and a path that is not an existing directory.
    pub fn validate(&self) -> Result<(), AgentError> {
        self.validate_shape()?;
        check_dir(&self.path)
    }

    /// [`Self::validate`] without what depends on the host it runs on (the directory existing there).
    pub fn validate_shape(&self) -> Result<(), AgentError> {
        check_workers(self.workers)?;
        let (block, file) = (self.block_bytes()?, self.file_bytes()?);
        if block > MAX_BLOCK_SIZE {
            return Err(AgentError::invalid(
                "block_size",
                format!("expected at most {}, found {}", human(MAX_BLOCK_SIZE), self.block_size),
            ));
        }
        if block > file {
            return Err(AgentError::invalid(
                "block_size",
                format!("expected at most file_size ({}), found {}", self.file_size, self.block_size),
            ));
        }
        Ok(())
    }

    /// Validates, refuses files larger than the free space, journals, creates the files, then starts the
    /// workers; returns once each has written and synced its first block.
    pub fn apply(&self, journal: &Journal) -> Result<StressHandle, AgentError> {
        self.apply_in(journal, None)
    }

    /// [`Self::apply`] with every worker in `placement`'s cgroup from its first step, when given.
    pub fn apply_in(
        &self,
        journal: &Journal,
        placement: Option<&Placement>,
    ) -> Result<StressHandle, AgentError> {
        self.validate()?;
        let (block, file_size, total) = (self.block_bytes()?, self.file_bytes()?, self.total_bytes()?);
        let free = free_space(&self.path)?;
        if total > free {
            return Err(AgentError::invalid(
                "file_size",
                format!(
                    "expected {} workers × file_size to fit in the {} free in {}, found {}",
                    self.workers,
                    human(free),
                    self.path.display(),
                    human(total)
                ),
            ));
        }
        let (id, kind) = (FaultId::next(), self.kind());
        let pid = std::process::id();
        let files: Vec<PathBuf> =
            (0..self.workers).map(|n| self.path.join(format!("chaos-io-{id}-{pid}-{n}.bin"))).collect();
        let mut steps: Vec<Undo> = files.iter().map(|path| Undo::RemoveFile { path: path.clone() }).collect();
        steps.push(Undo::KillWorkers { workers: Vec::new() });
        let entry = journal.begin(id, kind, steps)?;
        let mut opened: Vec<OwnedFd> = Vec::with_capacity(files.len());
        for (n_created, path) in files.iter().enumerate() {
            match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
                Ok(file) => opened.push(file.into()),
                Err(e) => {
                    let error = AgentError::io(format!("creating {}", path.display()), e);
                    drop(opened);
                    return Err(Begun { id, kind, entry, files, bytes: None }.undo_created(n_created, error));
                }
            }
        }
        let mut buffer = vec![0u8; block as usize];
        // Random bytes: a compressing or deduplicating filesystem must still write every block.
        rand::rng().fill_bytes(&mut buffer);
        let block: Arc<[u8]> = buffer.into();
        let work = files
            .iter()
            .zip(opened)
            .map(|(path, file)| spawn::Work::Io { file, path: path.clone(), block: block.clone(), file_size })
            .collect();
        Begun { id, kind, entry, files, bytes: Some(total) }.start(work, placement)
    }
}
