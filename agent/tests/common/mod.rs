//! Test helpers: real victim processes with distinctive names and argv, and polling with deadlines.

// Helpers panic on setup failure like the tests that call them; not every test binary uses every helper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chaos_agent::process::ProcessId;

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A number unique across this test process and others running at the same time.
pub fn nonce() -> u64 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    u64::from(std::process::id()) * 1000 + u64::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A `sleep` child, killed and reaped when dropped.
#[derive(Debug)]
pub struct Victim {
    pub child: Child,
    /// Regex matching only this victim's (or this group's) cmdline.
    pub marker: String,
    /// Keeps the directory of a renamed `sleep` alive as long as the process.
    dir: Option<TempDir>,
}

impl Victim {
    /// `sleep 600 0.00NONCE`: GNU sleep adds its arguments, so the second one only makes the argv unique.
    pub fn sleep() -> Victim {
        Victim::sleep_with_marker(nonce())
    }

    /// Several victims can share one marker to form a group a cmdline regex selects together.
    pub fn sleep_with_marker(nonce: u64) -> Victim {
        let arg = format!("0.00{nonce}");
        let child = Command::new("sleep").arg("600").arg(&arg).spawn().expect("spawn sleep");
        Victim { child, marker: format!("^sleep 600 0\\.00{nonce}$"), dir: None }
    }

    /// `sleep` run through a symlink called `name`, so its comm is `name`.
    pub fn named(name: &str) -> Victim {
        assert!(name.len() <= 15, "comm holds 15 bytes");
        let dir = TempDir::new();
        let link = dir.path.join(name);
        std::os::unix::fs::symlink(which_sleep(), &link).expect("symlink sleep");
        let child = Command::new(&link).arg("600").spawn().expect("spawn renamed sleep");
        Victim {
            child,
            marker: format!("^{}/{name} 600$", regex::escape(&dir.path.display().to_string())),
            dir: Some(dir),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn id(&self) -> ProcessId {
        ProcessId::of(self.pid()).expect("victim identity")
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which_sleep() -> PathBuf {
    ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("sleep binary")
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("chaos-agent-test-{}", nonce()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The state letter of `/proc/PID/stat` (`S`, `R`, `T`, `Z`, ...), `None` once the process is gone.
pub fn state(pid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

pub fn is_stopped(pid: i32) -> bool {
    state(pid) == Some('T')
}

/// Alive and not stopped: running, sleeping, or briefly in uninterruptible sleep ('D', seen under load).
pub fn is_running(pid: i32) -> bool {
    matches!(state(pid), Some('S' | 'R' | 'D'))
}

/// Polls `condition` until it holds or `DEADLINE` passes; returns whether it held.
pub fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

/// `wait_until` for async tests: yields to the runtime between polls so lease tasks can run.
pub async fn wait_until_async(mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    condition()
}
