//! Reading `/proc`: the few fields the agent needs, with "the process has gone" kept apart from real errors.
//! `/proc/PID/stat` itself is parsed by `chaos-host-sys` (`proc_stat`), the workspace's one reader.

use std::io;
use std::path::{Path, PathBuf};

use chaos_host_sys::proc_stat;

use crate::AgentError;

/// The fields of `/proc/PID/stat` the agent uses, read by the workspace's one reader.
pub(crate) use chaos_host_sys::proc_stat::Stat;

/// Reads `/proc/PID/stat`; `Ok(None)` when the process does not exist (or vanished while being read).
pub(crate) fn stat(pid: i32) -> Result<Option<Stat>, AgentError> {
    proc_stat::stat(pid)
        .map_err(|source| AgentError::Proc { path: PathBuf::from(format!("/proc/{pid}/stat")), source })
}

/// The command line with its NUL separators turned into spaces; `Ok(None)` when the process has gone.
pub(crate) fn cmdline(pid: i32) -> Result<Option<String>, AgentError> {
    let path = PathBuf::from(format!("/proc/{pid}/cmdline"));
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if proc_stat::is_gone(&e) => return Ok(None),
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

/// The cgroup paths of a process, one per hierarchy line of `/proc/PID/cgroup` (`ID:CONTROLLERS:PATH`);
/// `Ok(None)` when the process has gone.
pub(crate) fn cgroups(pid: i32) -> Result<Option<Vec<String>>, AgentError> {
    let Some(text) = read_if_alive(Path::new(&format!("/proc/{pid}/cgroup")))? else { return Ok(None) };
    Ok(Some(text.lines().filter_map(|line| line.splitn(3, ':').nth(2)).map(str::to_string).collect()))
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
        Err(e) if proc_stat::is_gone(&e) => Ok(None),
        Err(source) => Err(AgentError::Proc { path: path.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
