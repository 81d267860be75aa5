//! The owner's side of the watchdog: [`install`] (which program runs a watchdog) and [`Guard`], one watchdog
//! child per journal instance, fed a pipe whose only write end lives in the owner. The journal starts a guard
//! when it is opened; this file depends on nothing that executes undo steps, so the journal stays below the
//! undo executor and the watchdog loop (`watchdog/mod.rs`) that uses it.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::AgentError;
use crate::process::ProcessId;

/// The program (and leading arguments) that runs a watchdog, set once by the binary.
static PROGRAM: OnceLock<(PathBuf, Vec<OsString>)> = OnceLock::new();

/// Declares that `program args... --journal DIR --owner PID@START --instance N` runs [`run`]; journals opened
/// afterwards in this process each start a watchdog. The `chaos` binary calls this at start with itself and
/// `agent watchdog`. Without it (a library user, a unit test) journals have no watchdog and their faults
/// outlive a killed owner until the next start or `chaos agent revert-all`.
pub fn install(program: PathBuf, args: Vec<OsString>) {
    let _ = PROGRAM.set((program, args));
}

/// Whether [`install`] was called.
pub fn installed() -> bool {
    PROGRAM.get().is_some()
}

/// The owner's side of one watchdog: the write end of its pipe and the child process.
#[derive(Debug)]
pub(crate) struct Guard {
    dir: PathBuf,
    owner: ProcessId,
    instance: u64,
    live: Mutex<Live>,
}

#[derive(Debug)]
struct Live {
    /// The only write end of the watchdog's stdin; closed by the kernel when this process dies.
    pipe: Option<OwnedFd>,
    child: Option<Child>,
}

// === impl Guard ===

impl Guard {
    /// Starts a watchdog for the journal instance `instance` of `owner` in `dir`, if a program was installed.
    pub(crate) fn start(dir: &Path, owner: ProcessId, instance: u64) -> Result<Option<Guard>, AgentError> {
        if !installed() {
            return Ok(None);
        }
        let guard = Guard {
            dir: dir.to_path_buf(),
            owner,
            instance,
            live: Mutex::new(Live { pipe: None, child: None }),
        };
        guard.ensure()?;
        Ok(Some(guard))
    }

    /// Starts the watchdog again if it is not running (it was killed, or never started).
    pub(crate) fn ensure(&self) -> Result<(), AgentError> {
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(child) = live.child.as_mut() {
            match child.try_wait() {
                Ok(None) => return Ok(()),
                Ok(Some(status)) => {
                    tracing::warn!(%status, journal = %self.dir.display(), "the watchdog exited; starting another")
                }
                Err(e) => tracing::warn!(error = %e, "checking the watchdog failed; starting another"),
            }
        }
        let (program, args) = PROGRAM.get().ok_or(AgentError::NoWatchdog)?;
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| AgentError::io("creating the watchdog's pipe", e.into()))?;
        let log = log_file(&self.dir)?;
        let child = Command::new(program)
            .args(args)
            .arg("--journal")
            .arg(&self.dir)
            .arg("--owner")
            .arg(self.owner.to_string())
            .arg("--instance")
            .arg(self.instance.to_string())
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            // Its own process group: a Ctrl-C meant for the runner does not reach the watchdog.
            .process_group(0)
            .spawn()
            .map_err(|e| AgentError::io(format!("starting the watchdog {}", program.display()), e))?;
        tracing::debug!(pid = child.id(), journal = %self.dir.display(), "watchdog started");
        live.pipe = Some(write);
        live.child = Some(child);
        Ok(())
    }

    /// The watchdog's pid, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        let live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.child.as_ref().map(Child::id)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let live = self.live.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Closing the pipe tells the watchdog this journal is done: it replays what is left (a revert that failed
        // in-process) and exits. Reap it off this thread so a drop never waits on it.
        live.pipe = None;
        if let Some(mut child) = live.child.take() {
            let _ =
                std::thread::Builder::new().name("chaos-watchdog-reaper".into()).spawn(move || child.wait());
        }
    }
}

fn log_file(journal_dir: &Path) -> Result<File, AgentError> {
    let path = journal_dir.parent().unwrap_or(journal_dir).join("watchdog.log");
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| AgentError::io(format!("opening {}", path.display()), e))
}
