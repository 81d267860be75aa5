//! Chaos Toolkit experiments, run unchanged (issue 17): `chaos run` recognises a Chaos Toolkit file (`title`,
//! `description`, `method`, no `apiVersion`) and runs it with chaostoolkit 1.19 / chaostoolkit-lib 1.44
//! semantics (`../shared/reference/chaostoolkit-format.md`).
//!
//! - [`model`]: the file as written.
//! - [`load`]: reading and validating a file, every problem at its `file:line:column`.
//! - [`config`]: configuration, secrets, `--var`/`--var-file` and `${…}` substitution.
//! - [`tolerance`]: whether a probe's output is within its tolerance.
//! - [`providers`]: the `http` and `process` providers.
//! - [`python`]: python providers, run by the host's Python through a driver this binary ships.
//! - [`controls`]: python controls through the same driver.
//! - [`native`]: `extensions: chaos`, the native engine around the Chaos Toolkit method.
//! - [`convert`]: `chaos convert`, the native equivalent of a Chaos Toolkit experiment.
//! - [`run`]: the runner (strategies, statuses, deviation, rollbacks, dry modes, interrupts).
//! - [`journal`]: the Chaos Toolkit-shaped `journal.json`.

pub mod config;
pub mod controls;
pub mod convert;
pub mod journal;
pub mod load;
pub mod model;
pub mod native;
pub mod providers;
pub mod python;
pub mod run;
pub mod tolerance;

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
