//! Where stress workers run: a cgroup they join before they start their work.
//!
//! A worker moved into a cgroup after it touched its memory leaves that memory charged where it was (cgroup v1
//! never moves charges by default, v2 never does), so the target's memory limit would not see it. A
//! [`Placement`] opens `cgroup.procs` of the target cgroup in every hierarchy that has it, before the fork;
//! each worker writes `0` (itself) to each of them as its first step, then maps, writes or spins. Pod faults
//! use it to put their workers in the container's cgroup, so the container's own CPU, memory and IO limits
//! apply from the first page.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::AgentError;

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The most hierarchies a placement writes a worker into (cgroup v1 mounts one per controller, about a dozen;
/// v2 has one).
pub(crate) const MAX_HIERARCHIES: usize = 16;

/// `cgroup.procs` of one cgroup in every hierarchy that has it, open for writing.
#[derive(Debug)]
pub struct Placement {
    cgroup: String,
    procs: Vec<(PathBuf, OwnedFd)>,
}

impl Placement {
    /// Opens `cgroup.procs` of the cgroup at `path` (as in `/proc/PID/cgroup`, e.g. `/kubepods/pod…/abc`) in
    /// the unified hierarchy and in every hierarchy mounted under `/sys/fs/cgroup` that has it (each mount once,
    /// however many names point at it). Fails when none has it, or when one that has it cannot be opened.
    pub fn open(path: &str) -> Result<Placement, AgentError> {
        Self::open_under(Path::new(CGROUP_ROOT), path)
    }

    pub(crate) fn open_under(root: &Path, path: &str) -> Result<Placement, AgentError> {
        let refuse = |reason: String| AgentError::Invalid { what: "cgroup", reason };
        let relative = path.trim_start_matches('/');
        if relative.is_empty() || relative.split('/').any(|part| part == ".." || part == ".") {
            return Err(refuse(format!("expected a cgroup path below the root, found {path:?}")));
        }
        let mut hierarchies = vec![root.to_path_buf()];
        if let Ok(entries) = std::fs::read_dir(root) {
            let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            hierarchies.extend(names);
        }
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut procs = Vec::new();
        for hierarchy in hierarchies {
            let file = hierarchy.join(relative).join("cgroup.procs");
            // `cpu` and `cpuacct` are often links to `cpu,cpuacct`: one hierarchy, written once.
            let Ok(real) = file.canonicalize() else { continue };
            if seen.contains(&real) {
                continue;
            }
            if procs.len() == MAX_HIERARCHIES {
                return Err(refuse(format!("{path} is in more than {MAX_HIERARCHIES} cgroup hierarchies")));
            }
            let fd = OpenOptions::new()
                .write(true)
                .open(&real)
                .map_err(|e| AgentError::io(format!("opening {}", real.display()), e))?;
            seen.push(real.clone());
            procs.push((real, OwnedFd::from(fd)));
        }
        if procs.is_empty() {
            return Err(refuse(format!("no cgroup hierarchy under {} has {path}", root.display())));
        }
        Ok(Placement { cgroup: path.to_string(), procs })
    }

    /// The cgroup, as given.
    pub fn cgroup(&self) -> &str {
        &self.cgroup
    }

    /// The `cgroup.procs` files a worker writes itself into.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.procs.iter().map(|(path, _)| path.as_path())
    }

    pub(super) fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.procs.iter().map(|(_, fd)| fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_in_no_hierarchy_or_above_the_root_is_refused() {
        let root = chaos_test_support::TempDir::new("placement");
        std::fs::create_dir_all(root.path().join("memory/pods/a")).unwrap();
        std::fs::write(root.path().join("memory/pods/a/cgroup.procs"), "").unwrap();
        for bad in ["/", "", "/pods/../..", "/pods/./a"] {
            let e = Placement::open_under(root.path(), bad).unwrap_err();
            assert!(e.to_string().contains("below the root"), "{bad}: {e}");
        }
        let e = Placement::open_under(root.path(), "/pods/b").unwrap_err();
        assert!(e.to_string().contains("no cgroup hierarchy"), "{e}");
    }

    #[test]
    fn each_hierarchy_is_opened_once_however_many_names_it_has() {
        let root = chaos_test_support::TempDir::new("placement");
        for hierarchy in ["cpu,cpuacct", "memory"] {
            let dir = root.path().join(hierarchy).join("pods/a");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpuacct")).unwrap();
        let placement = Placement::open_under(root.path(), "/pods/a").unwrap();
        let names: Vec<String> = placement
            .files()
            .map(|p| p.strip_prefix(root.path().canonicalize().unwrap()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["cpu,cpuacct/pods/a/cgroup.procs", "memory/pods/a/cgroup.procs"]);
        assert_eq!(placement.cgroup(), "/pods/a");
    }
}
