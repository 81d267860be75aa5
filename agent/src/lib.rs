//! `chaos-agent`: faults on the local host, each a value with a revert and, optionally, a lease.
//!
//! `chaos run` links this crate to inject process faults on the machine it runs on. A later issue wraps the same
//! types in a daemon (gRPC, leases renewed by the controller, an undo journal).
//!
//! # Layout
//! - [`process`]: discovery from `/proc` ([`process::ProcessSelector`]), identity by pid + start time
//!   ([`process::ProcessId`]), seeded choice ([`Count`]) and the blast-radius [`process::Policy`], all behind
//!   [`process::select`].
//! - [`faults`]: the [`faults::Fault`] / [`faults::ActiveFault`] traits, [`faults::kill`] and [`faults::pause`],
//!   the [`faults::Lease`] that reverts at a deadline, and the [`faults::FaultRegistry`] that reverts everything.
//! - [`Signal`]: signal names and numbers; [`AgentError`]: every refusal and failure.
//!
//! # Architecture invariants
//! - No signal is sent before the target's start time is re-checked: a reused pid is never hit.
//! - The policy is checked against every matched process before anything is touched.
//! - A failed apply leaves nothing applied; a revert is idempotent.
//!
//! # Not yet
//! No daemon or gRPC, no undo journal (so a runner killed with SIGKILL leaves a pause in place until someone sends
//! SIGCONT), no resource (CPU, memory, disk, IO) or network faults, no pidfd (a microsecond window remains between
//! the start-time check and `kill(2)`), no namespaces or containers.

mod error;
pub mod faults;
pub mod host;
pub mod journal;
pub mod net;
pub mod policy;
pub mod process;
pub mod sample;
mod signal;
pub mod spec;
pub mod stress;

pub use error::AgentError;
pub use process::Count;
pub use signal::Signal;
