//! `Policy`: the blast-radius rules every selection passes before any process is touched.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use regex::Regex;

use super::procfs::{self, Stat};
use crate::AgentError;

/// Names never targeted unless the caller builds a policy without them on purpose.
pub const DEFAULT_PROTECTED_NAMES: [&str; 3] = ["sshd", "systemd", "init"];

/// Command lines never targeted by default: chaos's own controller and agent daemons (on any host, not only the
/// agent's own process, which the self-or-ancestor rule covers).
pub const DEFAULT_PROTECTED_CMDLINES: [&str; 1] = [r"(^|/)chaos (controller|agent)( |$)"];

/// Directories pidfiles are read from unless the policy says otherwise: where daemons write them, and the temp
/// directories (the process's own temp dir too, when it is another).
pub fn default_pidfile_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/run", "/var/run", "/tmp", "/var/tmp"].map(PathBuf::from).to_vec();
    let temp = std::env::temp_dir();
    if !dirs.contains(&temp) {
        dirs.push(temp);
    }
    dirs
}

/// Agent-side limits on what a selection may hit. Checked against every matched process, not only the ones
/// chosen, so whether a selection is allowed does not depend on the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Exact `comm` names that are never targeted (`sshd`, `systemd`, `init` by default).
    pub protected_names: Vec<String>,
    /// Regexes over the command line (arguments joined by spaces) of processes never targeted.
    pub protected_cmdlines: Vec<String>,
    /// When not empty, a target's command line must match one of these regexes.
    pub allow_cmdlines: Vec<String>,
    /// A target whose command line matches one of these regexes is refused.
    pub deny_cmdlines: Vec<String>,
    /// Most processes one selection may choose; `None` means no limit beyond the other rules.
    pub max_count: Option<usize>,
    /// Directories (and everything under them) a `pidfile` selector may read from; see
    /// [`default_pidfile_dirs`].
    pub pidfile_dirs: Vec<PathBuf>,
}

/// The rule that refused a selection, named in every refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRule {
    /// PID 1 is never a target: killing or stopping it takes the host (or container) down.
    Pid1,
    /// The agent's own process and its ancestors (the runner, its shell, its terminal) are never targets.
    SelfOrAncestor,
    /// The process's name is in `Policy::protected_names`.
    ProtectedName,
    /// Kernel threads ignore most signals and are never what an experiment means.
    KernelThread,
    /// More processes chosen than `Policy::max_count`.
    MaxCount,
    /// The command line matches one of `Policy::protected_cmdlines`.
    ProtectedCmdline,
    /// `Policy::allow_cmdlines` is set and the command line matches none of it.
    NotAllowed,
    /// The command line matches one of `Policy::deny_cmdlines`.
    Denied,
}

// === impl Policy ===

impl Default for Policy {
    fn default() -> Self {
        Policy {
            protected_names: DEFAULT_PROTECTED_NAMES.map(String::from).to_vec(),
            protected_cmdlines: DEFAULT_PROTECTED_CMDLINES.map(String::from).to_vec(),
            allow_cmdlines: Vec::new(),
            deny_cmdlines: Vec::new(),
            max_count: None,
            pidfile_dirs: default_pidfile_dirs(),
        }
    }
}

impl Policy {
    /// Adds a name to the protected list.
    pub fn protect(mut self, name: impl Into<String>) -> Self {
        self.protected_names.push(name.into());
        self
    }

    /// Limits how many processes one selection may choose.
    pub fn with_max_count(mut self, max: usize) -> Self {
        self.max_count = Some(max);
        self
    }

    /// Compiles the command-line patterns; an invalid one is refused with its list and position.
    pub fn validate(&self) -> Result<(), AgentError> {
        self.patterns().map(|_| ())
    }

    fn patterns(&self) -> Result<Patterns, AgentError> {
        let compile = |list: &[String], what: &'static str| -> Result<Vec<Regex>, AgentError> {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    Regex::new(p).map_err(|e| AgentError::invalid(what, format!("pattern {i} ({p:?}): {e}")))
                })
                .collect()
        };
        Ok(Patterns {
            protected: compile(&self.protected_cmdlines, "protected_cmdlines")?,
            allow: compile(&self.allow_cmdlines, "allow_cmdlines")?,
            deny: compile(&self.deny_cmdlines, "deny_cmdlines")?,
        })
    }

    /// Refuses the first matched process that breaks a rule.
    pub(crate) fn check_all(&self, matched: &[Stat]) -> Result<(), AgentError> {
        let protected_lineage = own_lineage()?;
        let patterns = self.patterns()?;
        matched.iter().try_for_each(|stat| {
            self.check(stat, &protected_lineage)?;
            if patterns.is_empty() {
                return Ok(());
            }
            // A process that exited since it was matched has no command line; the signal step skips it.
            let cmdline = procfs::cmdline(stat.pid)?.unwrap_or_default();
            patterns.check(stat, &cmdline)
        })
    }

    fn check(&self, stat: &Stat, lineage: &HashSet<i32>) -> Result<(), AgentError> {
        let refuse = |rule: PolicyRule, detail: &str| AgentError::Refused {
            rule,
            pid: stat.pid,
            comm: stat.comm.clone(),
            detail: detail.to_string(),
        };
        if stat.pid == 1 {
            return Err(refuse(PolicyRule::Pid1, "pid 1 is never a target"));
        }
        if lineage.contains(&stat.pid) {
            let detail = if stat.pid == std::process::id() as i32 {
                "the agent's own process is never a target"
            } else {
                "an ancestor of the agent (its runner or shell) is never a target"
            };
            return Err(refuse(PolicyRule::SelfOrAncestor, detail));
        }
        if self.protected_names.contains(&stat.comm) {
            return Err(refuse(PolicyRule::ProtectedName, "the name is in the protected list"));
        }
        if stat.is_kernel_thread() {
            return Err(refuse(PolicyRule::KernelThread, "kernel threads are never targets"));
        }
        Ok(())
    }

    pub(crate) fn check_count(&self, chosen: usize) -> Result<(), AgentError> {
        match self.max_count {
            Some(max) if chosen > max => Err(AgentError::TooMany { chosen, max }),
            _ => Ok(()),
        }
    }
}

/// The compiled command-line rules of a [`Policy`].
struct Patterns {
    protected: Vec<Regex>,
    allow: Vec<Regex>,
    deny: Vec<Regex>,
}

impl Patterns {
    fn is_empty(&self) -> bool {
        self.protected.is_empty() && self.allow.is_empty() && self.deny.is_empty()
    }

    fn check(&self, stat: &Stat, cmdline: &str) -> Result<(), AgentError> {
        let refuse = |rule: PolicyRule, detail: String| AgentError::Refused {
            rule,
            pid: stat.pid,
            comm: stat.comm.clone(),
            detail,
        };
        if let Some(p) = self.protected.iter().find(|p| p.is_match(cmdline)) {
            let detail = format!("the command line matches the protected pattern {:?}", p.as_str());
            return Err(refuse(PolicyRule::ProtectedCmdline, detail));
        }
        if let Some(p) = self.deny.iter().find(|p| p.is_match(cmdline)) {
            return Err(refuse(
                PolicyRule::Denied,
                format!("the command line matches the deny pattern {:?}", p.as_str()),
            ));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| p.is_match(cmdline)) {
            return Err(refuse(PolicyRule::NotAllowed, "the command line matches no allow pattern".into()));
        }
        Ok(())
    }
}

/// The current process and every ancestor up to (not including) pid 1, read fresh for each selection.
fn own_lineage() -> Result<HashSet<i32>, AgentError> {
    let mut lineage = HashSet::new();
    let mut pid = std::process::id() as i32;
    // The walk ends at pid 1 or 0; the set also stops a cycle, which /proc should never show.
    while pid > 1 && lineage.insert(pid) {
        match procfs::stat(pid)? {
            Some(stat) => pid = stat.ppid,
            None => break,
        }
    }
    Ok(lineage)
}

// === impl PolicyRule ===

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyRule::Pid1 => "pid-1",
            PolicyRule::SelfOrAncestor => "self-or-ancestor",
            PolicyRule::ProtectedName => "protected-name",
            PolicyRule::KernelThread => "kernel-thread",
            PolicyRule::MaxCount => "max-count",
            PolicyRule::ProtectedCmdline => "protected-cmdline",
            PolicyRule::NotAllowed => "process-allow",
            PolicyRule::Denied => "process-deny",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: i32, comm: &str, ppid: i32, flags: u64) -> Stat {
        Stat { pid, comm: comm.into(), state: 'S', ppid, flags, start_time: 1 }
    }

    #[test]
    fn default_protects_sshd_systemd_init() {
        assert_eq!(Policy::default().protected_names, ["sshd", "systemd", "init"]);
    }

    #[test]
    fn each_rule_names_itself() {
        let policy = Policy::default().protect("postgres");
        let lineage = HashSet::from([4000]);
        let cases = [
            (stat(1, "anything", 0, 0), "pid-1"),
            (stat(4000, "bash", 3999, 0), "self-or-ancestor"),
            (stat(5000, "sshd", 1, 0), "protected-name"),
            (stat(5001, "postgres", 1, 0), "protected-name"),
            (stat(5002, "kworker/0:1", 2, 0x0020_0000), "kernel-thread"),
        ];
        for (stat, rule) in cases {
            let err = policy.check(&stat, &lineage).unwrap_err().to_string();
            assert!(err.starts_with(&format!("policy rule '{rule}' refused pid {}", stat.pid)), "{err}");
        }
        assert!(policy.check(&stat(5003, "sleep", 1, 0), &lineage).is_ok());
    }

    #[test]
    fn cmdline_rules_name_themselves() {
        let patterns = Policy {
            allow_cmdlines: vec!["^sleep ".into(), "^python3 ".into()],
            deny_cmdlines: vec!["--prod".into()],
            ..Policy::default()
        }
        .patterns()
        .unwrap();
        let s = stat(5000, "x", 1, 0);
        let cases = [
            ("/usr/bin/chaos agent --state-dir /x", Some("protected-cmdline")),
            ("chaos controller", Some("protected-cmdline")),
            ("sleep 10 --prod", Some("process-deny")),
            ("nginx -g daemon off;", Some("process-allow")),
            ("sleep 10", None),
            ("chaos run x.yaml", Some("process-allow")),
        ];
        for (cmdline, rule) in cases {
            let got = patterns.check(&s, cmdline).err().map(|e| e.to_string());
            match rule {
                None => assert!(got.is_none(), "{cmdline}: {got:?}"),
                Some(rule) => {
                    let got = got.unwrap_or_default();
                    assert!(got.starts_with(&format!("policy rule '{rule}'")), "{cmdline}: {got}");
                }
            }
        }
        let bad = Policy { deny_cmdlines: vec!["(".into()], ..Policy::default() };
        assert!(bad.validate().unwrap_err().to_string().starts_with("invalid deny_cmdlines: pattern 0"));
    }

    #[test]
    fn max_count_refuses_more_than_allowed() {
        let policy = Policy::default().with_max_count(2);
        assert!(policy.check_count(2).is_ok());
        let err = policy.check_count(3).unwrap_err().to_string();
        assert_eq!(err, "policy rule 'max-count' refused: 3 processes chosen, at most 2 allowed");
    }

    #[test]
    fn lineage_holds_self_and_parent() {
        let lineage = own_lineage().unwrap();
        assert!(lineage.contains(&(std::process::id() as i32)));
        assert!(lineage.contains(&(nix::unistd::getppid().as_raw())) || nix::unistd::getppid().as_raw() <= 1);
    }
}
