//! Victim processes and the tests' readers of `/proc`: a process's state, start time and parent, and lookups of
//! live processes by parent and name or by command line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::dir::{TempDir, nonce};

/// A `sleep` child with a command line no other process has, killed and reaped when dropped.
#[derive(Debug)]
pub struct Victim {
    pub child: Child,
    /// A `cmdline` regex that matches this process only (or the group sharing its marker).
    pub marker: String,
    /// Keeps the directory of a renamed `sleep` ([`Victim::named`]) as long as the process.
    _dir: Option<TempDir>,
}

impl Victim {
    /// `sleep 600 0.00PIDTAG`: GNU sleep adds its arguments, so the second one (a number, made unique by the
    /// pid and `tag`, digits) only makes the command line unique.
    pub fn start(tag: &str) -> Victim {
        Victim::sleep_with_arg(format!("0.00{}{tag}", std::process::id()))
    }

    /// A victim with a fresh unique command line.
    pub fn sleep() -> Victim {
        Victim::sleep_with_marker(nonce())
    }

    /// `sleep 600 0.00NONCE`: several victims can share one nonce to form a group one regex selects.
    pub fn sleep_with_marker(nonce: u64) -> Victim {
        Victim::sleep_with_arg(format!("0.00{nonce}"))
    }

    fn sleep_with_arg(arg: String) -> Victim {
        let child = Command::new("sleep")
            .arg("600")
            .arg(&arg)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the victim `sleep 600 {arg}`: {e}"));
        Victim { child, marker: format!("^sleep 600 {}$", arg.replace('.', "\\.")), _dir: None }
    }

    /// `sleep 600` run through a symlink called `name`, so its comm is `name` (at most 15 bytes).
    pub fn named(name: &str) -> Victim {
        assert!(name.len() <= 15, "comm holds 15 bytes, {name:?} has {}", name.len());
        let dir = TempDir::new("victim");
        let link = dir.path().join(name);
        std::os::unix::fs::symlink(which_sleep(), &link)
            .unwrap_or_else(|e| panic!("cannot link {} to sleep: {e}", link.display()));
        let child = Command::new(&link)
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", link.display()));
        let marker = format!("^{}/{name} 600$", regex_escape(&dir.path().display().to_string()));
        Victim { child, marker, _dir: Some(dir) }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The state letter of `/proc/PID/stat`: `T` when stopped, `None` once reaped.
    pub fn state(&self) -> Option<char> {
        process_state(self.pid())
    }

    pub fn stopped(&self) -> bool {
        self.state() == Some('T')
    }

    /// Alive and not stopped: running, sleeping, or briefly in uninterruptible sleep ('D', seen under load).
    pub fn running(&self) -> bool {
        matches!(self.state(), Some('S' | 'R' | 'D'))
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
        .unwrap_or_else(|| panic!("no sleep binary in /usr/bin or /bin"))
}

/// `text` with every regex metacharacter escaped.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

// === /proc ===

/// The fields of `/proc/PID/stat` after the command name, starting with the state (field 3); `None` once the
/// process is gone.
pub fn stat_fields(pid: impl Into<i64>) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{}/stat", pid.into())).ok()?;
    Some(text.rsplit_once(')')?.1.split_whitespace().map(str::to_string).collect())
}

/// `/proc/PID/stat` through the workspace's one reader (`chaos_host_sys::proc_stat`); `None` once it is gone.
fn stat(pid: impl Into<i64>) -> Option<chaos_host_sys::proc_stat::Stat> {
    let pid = i32::try_from(pid.into()).ok()?;
    chaos_host_sys::proc_stat::stat(pid).ok().flatten()
}

/// The state letter of `pid` in /proc (`S`, `R`, `T`, `Z`...), `None` once it is gone.
pub fn process_state(pid: impl Into<i64>) -> Option<char> {
    stat(pid).map(|s| s.state)
}

/// The start time of `pid` in clock ticks since boot (field 22), what identifies a process with its pid (a
/// zombie's included, unlike `chaos_host_sys::proc_stat::start_time`).
pub fn start_time(pid: impl Into<i64>) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// Pids of live (not zombie) processes whose comm is `comm` and whose parent is `parent`.
pub fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    live_pids()
        .filter(|&pid| {
            stat(pid).is_some_and(|s| {
                s.comm == comm && u32::try_from(s.ppid).ok() == Some(parent) && s.state != 'Z'
            })
        })
        .collect()
}

/// Pids of live (not zombie) processes whose command line contains `needle` (a unique path of one test).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    live_pids()
        .filter(|&pid| {
            std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// Every pid in /proc that is not a zombie, at the moment each is read.
fn live_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .unwrap_or_else(|e| panic!("cannot list /proc: {e}"))
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| process_state(pid).is_some_and(|s| s != 'Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_victim_is_found_by_its_marker_and_gone_after_drop() {
        let victim = Victim::sleep();
        let pid = victim.pid();
        assert!(start_time(pid).is_some());
        assert!(matches!(process_state(pid), Some('S' | 'R' | 'D')));
        let needle = victim.marker.trim_start_matches("^sleep 600 ").trim_end_matches('$').replace('\\', "");
        assert_eq!(processes_mentioning(&needle), [pid]);
        assert_eq!(children_named(std::process::id(), "sleep").iter().filter(|&&p| p == pid).count(), 1);
        drop(victim);
        assert_eq!(process_state(pid), None, "a dropped victim is reaped");
    }

    #[test]
    fn a_named_victim_has_that_comm() {
        let victim = Victim::named("chaos-victim");
        let comm = || std::fs::read_to_string(format!("/proc/{}/comm", victim.pid())).unwrap_or_default();
        // The comm changes at exec, a moment after the spawn returns.
        crate::wait_until("the exec of the renamed sleep", std::time::Duration::from_secs(5), || {
            comm().trim() == "chaos-victim"
        });
    }
}
