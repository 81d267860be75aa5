//! Reading `/proc`: the few fields the agent needs, with "the process has gone" kept apart from real errors.

use std::io;
use std::path::{Path, PathBuf};

use crate::AgentError;

/// `PF_KTHREAD` from `include/linux/sched.h`: set in the flags of every kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/PID/stat` the agent uses.
#[derive(Debug, Clone)]
pub(crate) struct Stat {
    pub pid: i32,
    /// Executable name, at most 15 bytes (`comm`).
    pub comm: String,
    /// One letter: `R`, `S`, `D`, `T` (stopped), `t` (traced), `Z` (zombie), `X` (dead), ...
    pub state: char,
    pub ppid: i32,
    /// Kernel `task->flags`, used to recognise kernel threads.
    pub flags: u64,
    /// Field 22: clock ticks after boot; with the pid, the identity of the process.
    pub start_time: u64,
}

impl Stat {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0 || self.pid == 2 || self.ppid == 2
    }

    /// Zombies and dead tasks have exited: nothing can be done to them.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads `/proc/PID/stat`; `Ok(None)` when the process does not exist (or vanished while being read).
pub(crate) fn stat(pid: i32) -> Result<Option<Stat>, AgentError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let Some(text) = read_if_alive(&path)? else { return Ok(None) };
    parse_stat(pid, &text).map(Some).map_err(|reason| AgentError::Proc {
        path,
        source: io::Error::new(io::ErrorKind::InvalidData, reason),
    })
}

/// Parses a stat line. `comm` may hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(pid: i32, text: &str) -> Result<Stat, String> {
    let open = text.find('(').ok_or("no '(' before comm")?;
    let close = text.rfind(')').ok_or("no ')' after comm")?;
    let comm = text.get(open + 1..close).ok_or("comm out of bounds")?.to_string();
    let rest: Vec<&str> = text.get(close + 1..).unwrap_or_default().split_whitespace().collect();
    // `rest[0]` is field 3 (state), so field N is `rest[N - 3]`.
    let field = |n: usize| rest.get(n - 3).copied().ok_or_else(|| format!("field {n} missing"));
    let number = |n: usize| field(n)?.parse::<u64>().map_err(|e| format!("field {n}: {e}"));
    Ok(Stat {
        pid,
        comm,
        state: field(3)?.chars().next().ok_or("empty state")?,
        ppid: field(4)?.parse().map_err(|e| format!("field 4: {e}"))?,
        flags: number(9)?,
        start_time: number(22)?,
    })
}

/// The command line with its NUL separators turned into spaces; `Ok(None)` when the process has gone.
pub(crate) fn cmdline(pid: i32) -> Result<Option<String>, AgentError> {
    let path = PathBuf::from(format!("/proc/{pid}/cmdline"));
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(source) => return Err(AgentError::Proc { path, source }),
    };
    let args: Vec<String> = bytes
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    Ok(Some(args.join(" ")))
}

/// The effective uid (second number of the `Uid:` line, as `pgrep -u` matches); `Ok(None)` when gone.
pub(crate) fn effective_uid(pid: i32) -> Result<Option<u32>, AgentError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let Some(text) = read_if_alive(&path)? else { return Ok(None) };
    text.lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .map(Some)
        .ok_or_else(|| AgentError::Proc {
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, "no effective uid on the Uid: line"),
        })
}

/// Every pid listed in `/proc` (thread group leaders only; threads live under `/proc/PID/task`).
pub(crate) fn pids() -> Result<Vec<i32>, AgentError> {
    let path = Path::new("/proc");
    let proc_error = |source| AgentError::Proc { path: path.to_path_buf(), source };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(path).map_err(proc_error)? {
        let entry = entry.map_err(proc_error)?;
        if let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

fn read_if_alive(path: &Path) -> Result<Option<String>, AgentError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if is_gone(&e) => Ok(None),
        Err(source) => Err(AgentError::Proc { path: path.to_path_buf(), source }),
    }
}

/// A process that exits between `readdir` and `read` gives ENOENT, or ESRCH once its files are open.
fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm_parses() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3";
        let stat = parse_stat(4242, line).unwrap();
        assert_eq!(stat.comm, "a (b) c");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.start_time, 987654);
        assert!(!stat.is_kernel_thread());
    }

    #[test]
    fn truncated_stat_is_an_error_naming_the_field() {
        assert!(parse_stat(1, "1 (x) S 0 1").unwrap_err().contains("field 9"));
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id() as i32;
        let stat = stat(me).unwrap().unwrap();
        assert_eq!(stat.pid, me);
        assert!(stat.start_time > 0);
        assert!(!cmdline(me).unwrap().unwrap().is_empty());
        assert_eq!(effective_uid(me).unwrap(), Some(nix::unistd::geteuid().as_raw()));
        assert!(pids().unwrap().contains(&me));
    }
}
