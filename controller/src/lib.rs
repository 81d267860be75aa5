//! `chaos-controller`: the engine behind `chaos run` and `chaos controller`.
//!
//! # Layout
//! - [`experiment`]: the native experiment format: model, parser with file:line:column errors, variables,
//!   validation into checked types, JSON Schema.
//! - [`load`]: the built-in open-loop load generator, measuring every request.
//! - [`probes`]: steady-state probes: http, tcp, command, prometheus.
//! - [`slo`]: signals, SLO evaluation (latency as a ratio), guardrails (budget, burn-rate tripwire, traffic
//!   floor, no data).
//! - [`report`]: journal JSON, JUnit XML, Markdown summary.
//! - [`engine`]: the run lifecycle: plan, preflight, baseline, method, recovery, steady state, rollbacks, verdict.
//! - [`fleet`]: the agents connected to a controller, their leased faults, halt-all; `fleet_hosts` makes it the
//!   engine's `RemoteHosts`.
//! - [`deadline`]: the margin a fault's own deadline allows, shared by the engine and the fleet.
//! - [`incident`]: incidents as data and rules: severity, lifecycle, timeline, times to detect/acknowledge/
//!   recover, stats over a period, the incident a failed run opens, the blameless review.
//! - [`server`]: `chaos controller`: the gRPC services, runs through the engine, tokens, the scheduler.
//! - [`console`]: the controller's web console (`--ui-listen`): pages, login sessions, live run charts.
//! - [`store`]: the `Store` trait and its SQLite implementation; [`schedule`]: cron timing with windows.

pub mod console;
pub mod ctk;
pub mod deadline;
pub mod engine;
pub mod experiment;
pub mod fleet;
mod fleet_hosts;
pub mod gameday;
pub mod http;
pub mod incident;
pub mod load;
pub mod notify;
pub mod probes;
pub mod remote_fault;
pub mod report;
pub mod schedule;
pub mod server;
pub mod signals;
pub mod slo;
pub mod slo_file;
pub mod store;
