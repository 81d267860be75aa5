//! Chaos Toolkit experiments, run unchanged (issue 17): `chaos run` recognises a Chaos Toolkit file (`title`,
//! `description`, `method`, no `apiVersion`) and runs it with chaostoolkit 1.19 / chaostoolkit-lib 1.44
//! semantics (`../shared/reference/chaostoolkit-format.md`).
//!
//! - [`model`]: the file as written.
//! - [`python`]: python providers, run by the host's Python through a driver this binary ships.
//! - [`controls`]: python controls through the same driver.

pub mod controls;
pub mod convert;
pub mod model;
pub mod native;
pub mod python;

/// Why an activity failed, as Chaos Toolkit journals it: the `exception` lines (a traceback, or one line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityFailure {
    pub exception: Vec<String>,
}

impl ActivityFailure {
    /// A failure described by one line.
    pub fn new(line: impl Into<String>) -> ActivityFailure {
        ActivityFailure { exception: vec![line.into()] }
    }
}

impl std::fmt::Display for ActivityFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.exception.last().map_or("activity failed", |l| l.trim_end()))
    }
}
