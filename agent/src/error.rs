//! The agent's error type: one enum, so callers can branch on what went wrong.

use std::path::PathBuf;

use crate::process::{PolicyRule, ProcessId};

/// Everything the agent can refuse or fail at.
///
/// Messages are lowercase and say what was expected and what was found, so the engine can show them as they are.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A selector, count or signal that can never be valid, refused before anything is looked at.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// The selector matched no process (the engine decides whether that is fatal).
    #[error("selector {selector} matched no process")]
    NoMatch { selector: String },

    /// `Count::Exactly(n)` asked for more processes than matched.
    #[error("selector {selector} matched {found} processes, {wanted} wanted")]
    NotEnough { selector: String, wanted: u32, found: usize },

    /// The blast-radius policy refused the selection; nothing was touched.
    #[error("policy rule '{rule}' refused pid {pid} ({comm}): {detail}")]
    Refused { rule: PolicyRule, pid: i32, comm: String, detail: String },

    /// The chosen processes exceed the policy's maximum count; nothing was touched.
    #[error("policy rule 'max-count' refused: {chosen} processes chosen, at most {max} allowed")]
    TooMany { chosen: usize, max: usize },

    /// A pidfile could not be read or did not hold a pid.
    #[error("pidfile {path}: {reason}")]
    Pidfile { path: PathBuf, reason: String },

    /// The pid now belongs to another process (or none): its start time is not the one selected.
    #[error("pid {} was reused: start time {} expected, found {found}", .expected.pid, .expected.start_time)]
    PidReused { expected: ProcessId, found: u64 },

    /// The process selected has exited.
    #[error("pid {} (start time {}) has exited", .0.pid, .0.start_time)]
    Exited(ProcessId),

    /// Reading `/proc` failed for a reason other than the process having gone.
    #[error("reading {path}: {source}")]
    Proc { path: PathBuf, source: std::io::Error },

    /// `kill(2)` failed for a reason other than the process having gone (typically EPERM).
    #[error("sending {signal} to pid {pid}: {source}")]
    Signal { signal: crate::Signal, pid: i32, source: nix::errno::Errno },

    /// Every target had exited or had its pid reused, so the fault touched nothing.
    #[error("no target left to signal: {0}")]
    NoTargetLeft(String),

    /// A lease needs a tokio runtime to run its deadline task, and none is current.
    #[error("a lease needs a tokio runtime; none is running on this thread")]
    NoRuntime,

    /// A watchdog was asked for but no watchdog program was installed ([`crate::watchdog::install`]).
    #[error("no watchdog program is installed in this process")]
    NoWatchdog,

    /// A network fault's undo must run in the namespace it was applied in, and this process is elsewhere.
    #[error("{0}")]
    WrongNetns(String),

    /// The fault needs something this host does not have (a kernel feature, a program); nothing was applied.
    #[error("{fault} is not supported on this host: {missing}")]
    Unsupported { fault: String, missing: String },

    /// An external program (`nft`, `tc`, `ip`) failed; `detail` holds its exit status and stderr.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },

    /// A file or system call failed while applying or reverting.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },

    /// A file the agent created is not where it put it (moved, deleted or replaced by someone else), so a revert
    /// could not delete it: reported, never counted as a clean revert.
    #[error("file {} is not where the agent created it: {detail}", .path.display())]
    Moved { path: PathBuf, detail: String },

    /// The undo journal could not be written, read or parsed.
    #[error("undo journal {}: {reason}", .path.display())]
    Journal { path: PathBuf, reason: String },

    /// A policy rule other than the per-process ones refused the fault; nothing was touched.
    #[error("policy rule '{rule}' refused: {detail}")]
    Forbidden { rule: String, detail: String },
}

impl AgentError {
    /// An [`AgentError::Io`] saying what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> AgentError {
        AgentError::Io { what: what.into(), source }
    }

    /// An [`AgentError::Invalid`] for a spec field.
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> AgentError {
        AgentError::Invalid { what, reason: reason.into() }
    }
}
