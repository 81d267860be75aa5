//! The one reader of `/proc/PID/stat`: the fields the agent and the proxy use, "the process has gone" kept
//! apart from real errors, and the start time that makes a pid an identity.

use std::io;

/// `PF_KTHREAD` from `include/linux/sched.h`: set in the flags of every kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/PID/stat` this workspace uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
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

/// Reads `/proc/PID/stat`; `Ok(None)` when the process does not exist (or vanished while being read). A
/// line that cannot be parsed is an `InvalidData` error saying which field.
pub fn stat(pid: i32) -> io::Result<Option<Stat>> {
    let path = format!("/proc/{pid}/stat");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    parse(pid, &text)
        .map(Some)
        .map_err(|reason| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {reason}")))
}

/// The start time (field 22, clock ticks after boot) of a running process; `Ok(None)` when it does not
/// exist or has exited (a zombie): what an owner check wants.
pub fn start_time(pid: i32) -> io::Result<Option<u64>> {
    Ok(stat(pid)?.filter(|s| !s.has_exited()).map(|s| s.start_time))
}

/// Parses a stat line. `comm` may hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse(pid: i32, text: &str) -> Result<Stat, String> {
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

/// A process that exits between `readdir` and `read` gives ENOENT, or ESRCH once its files are open.
pub fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::errno::Errno::ESRCH as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm_parses() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3";
        let stat = parse(4242, line).unwrap();
        assert_eq!(stat.comm, "a (b) c");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.start_time, 987654);
        assert!(!stat.is_kernel_thread());
    }

    #[test]
    fn truncated_stat_is_an_error_naming_the_field() {
        assert!(parse(1, "1 (x) S 0 1").unwrap_err().contains("field 9"));
    }

    #[test]
    fn a_live_process_has_a_start_time_and_a_zombie_or_reaped_one_has_none() {
        let me = std::process::id() as i32;
        let own = stat(me).unwrap().unwrap();
        assert_eq!((own.pid, start_time(me).unwrap()), (me, Some(own.start_time)));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: the child becomes a zombie, which has exited for an owner check.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !stat(pid).unwrap().is_some_and(|s| s.has_exited()) {
            assert!(std::time::Instant::now() < deadline, "the child never exited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(start_time(pid).unwrap(), None);
        child.wait().unwrap();
        assert_eq!((stat(pid).unwrap(), start_time(pid).unwrap()), (None, None));
    }
}
