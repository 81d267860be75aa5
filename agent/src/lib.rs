//! `chaos-agent`: faults on the local host, each with a deadline (lease), a revert, and an undo record written
//! before anything changes.
//!
//! `chaos run` and `chaos agent` link this crate to inject faults on the machine they run on; the controller
//! issue wraps [`host::HostAgent`] in a daemon (gRPC, leases renewed by the controller).
//!
//! # Layout
//! - [`host`]: [`host::HostAgent`], the entry point: policy, capabilities, journal replay at start, leases.
//! - [`spec`]: [`spec::FaultSpec`], every fault as data; [`policy`]: the policy file ([`policy::AgentPolicy`]).
//! - [`journal`]: the fsync'd undo journal (storage only: write, read, list, delete records);
//!   [`undo`]: running those records' steps, a fault's own revert and the replay (orphans at start, everything
//!   for break glass); [`undo_proxy`]: its one step that is not on this host, deleting a run's proxy through an
//!   admin API.
//! - [`process`]: discovery from `/proc` ([`process::ProcessSelector`]), identity by pid + start time
//!   ([`process::ProcessId`]), seeded choice ([`Count`]) and the blast-radius [`process::Policy`], all behind
//!   [`process::select`].
//! - [`faults`]: the [`faults::Fault`] / [`faults::ActiveFault`] traits, [`faults::kill`] and [`faults::pause`],
//!   the [`faults::Lease`] that reverts at a deadline, and the [`faults::FaultRegistry`] that reverts everything.
//! - [`stress`]: CPU, memory, disk fill and IO stress with forked workers; [`net`]: nftables and tc faults and
//!   the capability probe; [`sample`]: host and per-process saturation via sysinfo.
//! - [`pods`]: pods as targets through the node's container runtime (CRI): finding them, and a host fault
//!   confined to one container (its cgroup, its pod's network namespace).
//! - [`watchdog`]: the process that reverts a dead (or hung) owner's journaled faults, outside it (through
//!   [`undo`]); its owner side (`watchdog/guard.rs`) is what a journal starts.
//! - [`Signal`]: signal names and numbers; [`AgentError`]: every refusal and failure.
//! - `beneath` (private): paths opened beneath an allowed directory without following symlinks (fill files,
//!   pidfiles).
//!
//! # Architecture invariants
//! - No signal is sent before the target's start time is re-checked: a reused pid is never hit.
//! - The policy is checked against every matched process before anything is touched.
//! - The undo record is on disk (fsync'd) before the host changes; it is deleted only after a complete revert.
//! - A failed apply leaves nothing applied; a revert is idempotent.
//!
//! # Not yet
//! No pidfd (a microsecond window remains between the start-time
//! check and `kill(2)`), no disk fill inside a pod, no forwarded-traffic (router) network faults.

extern crate self as chaos_agent;

mod beneath;
mod error;
pub mod faults;
pub mod host;
pub mod journal;
pub mod net;
pub mod pods;
pub mod policy;
pub mod process;
pub mod remote;
pub mod sample;
mod signal;
pub mod spec;
pub mod stress;
pub mod undo;
pub mod undo_proxy;
pub mod watchdog;

pub use error::AgentError;
pub use process::Count;
pub use signal::Signal;
