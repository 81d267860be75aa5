//! Test helpers: real victim processes with distinctive names and argv, and polling with deadlines, built on
//! `chaos-test-support` with the agent's types (`i32` pids, `ProcessId`) and its fixed [`DEADLINE`].

// Helpers panic on setup failure like the tests that call them; not every test binary uses every helper.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use chaos_agent::process::ProcessId;
pub use chaos_test_support::nonce;
use chaos_test_support::wait::{poll_until, poll_until_async};

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A `sleep` child, killed and reaped when dropped ([`chaos_test_support::Victim`] with the agent's pid type).
#[derive(Debug)]
pub struct Victim(chaos_test_support::Victim);

impl Victim {
    /// `sleep 600 0.00NONCE`: GNU sleep adds its arguments, so the second one only makes the argv unique.
    pub fn sleep() -> Victim {
        Victim(chaos_test_support::Victim::sleep())
    }

    /// Several victims can share one marker to form a group a cmdline regex selects together.
    pub fn sleep_with_marker(nonce: u64) -> Victim {
        Victim(chaos_test_support::Victim::sleep_with_marker(nonce))
    }

    /// `sleep` run through a symlink called `name`, so its comm is `name`.
    pub fn named(name: &str) -> Victim {
        Victim(chaos_test_support::Victim::named(name))
    }

    pub fn pid(&self) -> i32 {
        self.0.pid() as i32
    }

    pub fn id(&self) -> ProcessId {
        ProcessId::of(self.pid()).expect("victim identity")
    }
}

impl Deref for Victim {
    type Target = chaos_test_support::Victim;

    fn deref(&self) -> &chaos_test_support::Victim {
        &self.0
    }
}

impl DerefMut for Victim {
    fn deref_mut(&mut self) -> &mut chaos_test_support::Victim {
        &mut self.0
    }
}

/// A directory removed when dropped (`dir.path` through [`Deref`]).
#[derive(Debug)]
pub struct TempDir(chaos_test_support::TempDir);

impl TempDir {
    pub fn new() -> TempDir {
        TempDir(chaos_test_support::TempDir::new("agent-test"))
    }
}

impl Deref for TempDir {
    type Target = chaos_test_support::TempDir;

    fn deref(&self) -> &chaos_test_support::TempDir {
        &self.0
    }
}

/// The state letter of `/proc/PID/stat` (`S`, `R`, `T`, `Z`, ...), `None` once the process is gone.
pub fn state(pid: i32) -> Option<char> {
    chaos_test_support::process_state(pid)
}

pub fn is_stopped(pid: i32) -> bool {
    state(pid) == Some('T')
}

/// Alive and not stopped: running, sleeping, or briefly in uninterruptible sleep ('D', seen under load).
pub fn is_running(pid: i32) -> bool {
    matches!(state(pid), Some('S' | 'R' | 'D'))
}

/// Polls `condition` until it holds or `DEADLINE` passes; returns whether it held.
pub fn wait_until(condition: impl FnMut() -> bool) -> bool {
    poll_until(DEADLINE, condition)
}

/// `wait_until` for async tests: yields to the runtime between polls so lease tasks can run.
pub async fn wait_until_async(condition: impl FnMut() -> bool) -> bool {
    poll_until_async(DEADLINE, condition).await
}
