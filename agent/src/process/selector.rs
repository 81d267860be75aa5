//! `ProcessSelector`: which processes a fault may target, by name, cmdline, pid, pidfile and user.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag, fstat};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::procfs::{self, Stat};
use crate::AgentError;
use crate::beneath::Beneath;

/// The most bytes a pidfile may hold: a pid and a newline, with room for whitespace.
pub const MAX_PIDFILE_BYTES: usize = 64;

/// Criteria a process must meet; every criterion given must match, and at least one must be given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSelector {
    /// Exact executable name as in `/proc/PID/comm` (at most 15 bytes, as the kernel truncates it).
    pub name: Option<String>,
    /// Regex searched in the command line, arguments joined by single spaces.
    pub cmdline: Option<String>,
    /// One pid.
    pub pid: Option<i32>,
    /// A file holding one pid (read when selecting, so a restarted daemon's new pid is found). Only a regular
    /// file of at most [`MAX_PIDFILE_BYTES`] under the policy's `pidfile_dirs` is read, and its content is
    /// never quoted in an error.
    pub pidfile: Option<PathBuf>,
    /// Owner: a user name or a numeric uid, matched against the effective uid.
    pub user: Option<String>,
    /// A cgroup path as `/proc/PID/cgroup` shows it (a container's, `/k8s.io/ID`): the process must be in it
    /// or beneath it, in any hierarchy. A pod target sets it to the chosen container's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// A selector resolved against the current host: regex compiled, pidfile read, user looked up.
#[derive(Debug)]
pub(crate) struct Matcher {
    name: Option<String>,
    cmdline: Option<Regex>,
    /// Pids named by `pid` and `pidfile`; both must agree when both are given.
    pids: Vec<i32>,
    uid: Option<u32>,
    cgroup: Option<String>,
}

// === impl ProcessSelector ===

impl ProcessSelector {
    /// Checks what can be checked without looking at the host: some criterion given, regex valid, pid positive.
    pub fn validate(&self) -> Result<(), AgentError> {
        let invalid = |reason: String| AgentError::Invalid { what: "process selector", reason };
        if self.name.is_none()
            && self.cmdline.is_none()
            && self.pid.is_none()
            && self.pidfile.is_none()
            && self.user.is_none()
            && self.cgroup.is_none()
        {
            return Err(invalid(
                "expected at least one of name, cmdline, pid, pidfile, user, cgroup; found none".into(),
            ));
        }
        if let Some(cgroup) = &self.cgroup
            && (!cgroup.starts_with('/')
                || cgroup.split('/').any(|c| c == ".." || c == ".")
                || cgroup.len() > 4096)
        {
            return Err(invalid(format!(
                "expected an absolute cgroup path without . or .., found '{cgroup}'"
            )));
        }
        if let Some(pattern) = &self.cmdline {
            Regex::new(pattern).map_err(|e| invalid(format!("cmdline regex /{pattern}/: {e}")))?;
        }
        if let Some(pid) = self.pid
            && pid <= 0
        {
            return Err(invalid(format!("expected a positive pid, found {pid}")));
        }
        if let Some(name) = &self.name
            && (name.is_empty() || name.len() > 15)
        {
            return Err(invalid(format!(
                "expected a process name of 1 to 15 bytes (the kernel truncates comm), found '{name}'"
            )));
        }
        Ok(())
    }

    /// Resolves the parts that depend on the host right now; a pidfile is read only from `pidfile_dirs`.
    pub(crate) fn matcher(&self, pidfile_dirs: &[PathBuf]) -> Result<Matcher, AgentError> {
        self.validate()?;
        let cmdline = match &self.cmdline {
            Some(pattern) => Some(Regex::new(pattern).map_err(|e| AgentError::Invalid {
                what: "process selector",
                reason: format!("cmdline regex /{pattern}/: {e}"),
            })?),
            None => None,
        };
        let mut pids: Vec<i32> = self.pid.into_iter().collect();
        if let Some(path) = &self.pidfile {
            pids.push(read_pidfile(path, pidfile_dirs)?);
        }
        let uid = self.user.as_deref().map(resolve_user).transpose()?;
        let cgroup = self.cgroup.as_ref().map(|c| c.trim_end_matches('/').to_string());
        Ok(Matcher { name: self.name.clone(), cmdline, pids, uid, cgroup })
    }
}

impl fmt::Display for ProcessSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(name) = &self.name {
            parts.push(format!("name={name}"));
        }
        if let Some(re) = &self.cmdline {
            parts.push(format!("cmdline=/{re}/"));
        }
        if let Some(pid) = self.pid {
            parts.push(format!("pid={pid}"));
        }
        if let Some(path) = &self.pidfile {
            parts.push(format!("pidfile={}", path.display()));
        }
        if let Some(user) = &self.user {
            parts.push(format!("user={user}"));
        }
        if let Some(cgroup) = &self.cgroup {
            parts.push(format!("cgroup={cgroup}"));
        }
        write!(f, "{{{}}}", parts.join(", "))
    }
}

// === impl Matcher ===

impl Matcher {
    /// The pids worth reading: the named one, or every pid on the host. Disagreeing pid and pidfile give none.
    pub fn candidate_pids(&self) -> Result<Vec<i32>, AgentError> {
        match self.pids.as_slice() {
            [] => procfs::pids(),
            [first, rest @ ..] if rest.iter().all(|p| p == first) => Ok(vec![*first]),
            _ => Ok(Vec::new()),
        }
    }

    /// Whether a live process meets every criterion; `Ok(false)` too when it vanished while being read.
    pub fn matches(&self, stat: &Stat) -> Result<bool, AgentError> {
        if !self.pids.is_empty() && !self.pids.contains(&stat.pid) {
            return Ok(false);
        }
        if let Some(name) = &self.name
            && *name != stat.comm
        {
            return Ok(false);
        }
        if let Some(uid) = self.uid
            && procfs::effective_uid(stat.pid)? != Some(uid)
        {
            return Ok(false);
        }
        if let Some(cgroup) = &self.cgroup {
            let inside = |path: &str| {
                path == cgroup || (path.starts_with(cgroup.as_str()) && path[cgroup.len()..].starts_with('/'))
            };
            if !procfs::cgroups(stat.pid)?.is_some_and(|paths| paths.iter().any(|p| inside(p))) {
                return Ok(false);
            }
        }
        if let Some(re) = &self.cmdline {
            return Ok(procfs::cmdline(stat.pid)?.is_some_and(|line| re.is_match(&line)));
        }
        Ok(true)
    }
}

/// Reads the pid in `path`: a regular file beneath one of `dirs`, reached without symlinks, opened without
/// blocking (a FIFO is refused, not waited on), of at most [`MAX_PIDFILE_BYTES`]. Errors never quote the
/// content: the file may be anything the agent (often root) can read.
fn read_pidfile(path: &Path, dirs: &[PathBuf]) -> Result<i32, AgentError> {
    let error = |reason: String| AgentError::Pidfile { path: path.to_path_buf(), reason };
    let beneath = Beneath::find(path, dirs, "pidfile-dirs")?;
    let fd = beneath.open(OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty(), path)?;
    let stat = fstat(&fd).map_err(|e| error(format!("cannot be read: {e}")))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(error("is not a regular file".into()));
    }
    let mut bytes = Vec::with_capacity(MAX_PIDFILE_BYTES + 1);
    // One byte more than allowed, to tell a full file from a longer one; the file may grow after `fstat`.
    std::fs::File::from(fd)
        .take(MAX_PIDFILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(format!("cannot be read: {e}")))?;
    if bytes.len() > MAX_PIDFILE_BYTES {
        return Err(error(format!("is larger than the {MAX_PIDFILE_BYTES} bytes a pidfile may hold")));
    }
    match std::str::from_utf8(&bytes).ok().and_then(|text| text.trim().parse::<i32>().ok()) {
        Some(pid) if pid > 0 => Ok(pid),
        _ => Err(error("does not hold a pid (expected one positive decimal number)".into())),
    }
}

fn resolve_user(user: &str) -> Result<u32, AgentError> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    let invalid = |reason: String| AgentError::Invalid { what: "process selector", reason };
    match nix::unistd::User::from_name(user) {
        Ok(Some(found)) => Ok(found.uid.as_raw()),
        Ok(None) => Err(invalid(format!("expected a user name or uid, found unknown user '{user}'"))),
        Err(e) => Err(invalid(format!("looking up user '{user}': {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_selector_is_refused() {
        let err = ProcessSelector::default().validate().unwrap_err().to_string();
        assert!(err.contains("at least one of name, cmdline, pid, pidfile, user"), "{err}");
    }

    #[test]
    fn bad_regex_pid_and_name_are_refused() {
        let bad_re = ProcessSelector { cmdline: Some("(".into()), ..Default::default() };
        assert!(bad_re.validate().unwrap_err().to_string().contains("cmdline regex /(/"));
        let bad_pid = ProcessSelector { pid: Some(0), ..Default::default() };
        assert!(bad_pid.validate().unwrap_err().to_string().contains("found 0"));
        let long = ProcessSelector { name: Some("a-very-long-process-name".into()), ..Default::default() };
        assert!(long.validate().unwrap_err().to_string().contains("1 to 15 bytes"));
    }

    #[test]
    fn display_names_every_criterion() {
        let sel = ProcessSelector {
            name: Some("sleep".into()),
            cmdline: Some("x.*y".into()),
            pid: Some(7),
            pidfile: Some("/run/x.pid".into()),
            user: Some("root".into()),
            cgroup: Some("/k8s.io/abc".into()),
        };
        assert_eq!(
            sel.to_string(),
            "{name=sleep, cmdline=/x.*y/, pid=7, pidfile=/run/x.pid, user=root, cgroup=/k8s.io/abc}"
        );
    }

    #[test]
    fn a_cgroup_must_be_absolute_and_plain() {
        for bad in ["k8s.io/x", "/a/../b", "/a/./b"] {
            let sel = ProcessSelector { cgroup: Some(bad.into()), ..Default::default() };
            assert!(sel.validate().unwrap_err().to_string().contains("cgroup path"), "{bad}");
        }
        let only = ProcessSelector { cgroup: Some("/k8s.io/x".into()), ..Default::default() };
        only.validate().unwrap();
    }

    #[test]
    fn the_cgroup_criterion_matches_the_cgroup_and_beneath_it_only() {
        // This test process's own cgroup (whatever hierarchy): it matches itself, and a sibling prefix does not.
        let me = std::process::id() as i32;
        let paths = procfs::cgroups(me).unwrap().unwrap();
        let own = paths.iter().find(|p| p.as_str() != "/").cloned().unwrap_or_else(|| "/".into());
        let stat = procfs::stat(me).unwrap().unwrap();
        let matches = |cgroup: &str| {
            ProcessSelector { cgroup: Some(cgroup.into()), ..Default::default() }
                .matcher(&[])
                .unwrap()
                .matches(&stat)
                .unwrap()
        };
        assert!(matches(&own), "{own} in {paths:?}");
        if own != "/" {
            assert!(!matches(&format!("{own}x")), "a prefix that is not a parent matched");
            assert!(!matches("/no-such-cgroup"));
        }
    }

    #[test]
    fn users_resolve_by_name_or_number() {
        assert_eq!(resolve_user("root").unwrap(), 0);
        assert_eq!(resolve_user("1234").unwrap(), 1234);
        assert!(resolve_user("no-such-user-xyz").unwrap_err().to_string().contains("unknown user"));
    }
}
