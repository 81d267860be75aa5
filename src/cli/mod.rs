//! The command groups of the `chaos` binary, one module each: flags (clap `Args`), the calls they make, and
//! what they print. `main.rs` holds the command tree and dispatches here.
//!
//! - `run`: `chaos run` (local), `validate`, `schema`, `faults`; `remote_run`: `chaos run --controller`;
//!   `ctk_run`: `chaos run` of a Chaos Toolkit experiment.
//! - `convert`: `chaos convert`, the native equivalent of a Chaos Toolkit experiment.
//! - `report`: `chaos report JOURNAL`, the reports (HTML, Markdown, JUnit) rendered again from a journal.
//! - `proxies`: `chaos proxies` / `tp`, the toxiproxy-cli work-alike.
//! - `agent`: `chaos agent inject|status|revert-all|capabilities|serve`.
//! - `controller`: `chaos controller`, the service.
//! - The controller's clients: `runs`, `agents`, `schedule`, `halt` (`halt --all`, `freeze`, `unfreeze`), over
//!   `client` (how to reach the controller); `certs` makes development certificates.
//! - `slo`: `chaos slo`, SLOs as code (SLO files: check, rules, status, the controller's registry).
//! - `args`: value parsers the groups' flags share.

pub mod agent;
pub mod agents;
pub mod args;
pub mod certs;
pub mod client;
pub mod controller;
pub mod convert;
pub mod ctk_run;
pub mod halt;
pub mod proxies;
pub mod remote_run;
pub mod report;
pub mod run;
pub mod runs;
pub mod schedule;
pub mod slo;
