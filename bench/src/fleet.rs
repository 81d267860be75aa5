//! The controller and its fleet: halt-all fan-out to 1,000 connected agents (DESIGN.md §9: "halt reaches
//! 1,000 connected agents, all acknowledged, ≤ 1 s"), the controller's memory per connected agent, and the
//! apply→ack latency of remote faults, each against a baseline measured in the same run.
//!
//! The 1,000 agents are **protocol clients**, not `chaos agent serve`: each opens its own
//! `AgentService.Connect` stream (on its own TCP connection, as agents on separate hosts do), sends a real
//! `Hello` (id `agent-0000`.., label `role=bench`, every fault kind as a capability), a heartbeat with a host
//! sample every second, and answers every request at once with the matching `FaultStatus` (`apply` →
//! APPLIED, `renew` → RENEWED, `revert` → REVERTED, `plan` → PLANNED, `halt_all` → HALTED) **without
//! touching this host**. 1,000 real agents on one host would each start a `HostAgent` (journal replay, a
//! capability probe in a throwaway network namespace) and then share one machine's processes, blocking
//! threads and journal fsyncs, which no fleet does; so the fan-out figures are the controller's own work plus
//! loopback gRPC, not the agents'. Part 4 measures one real agent.
//!
//! Parts:
//! 1. Halt-all fan-out: `chaos controller` (the release binary) alone in a child process, as deployed; the
//!    agents join in steps of 0, 1, 10, 100 and 1,000; at each step `ControllerService.HaltAll` is called
//!    through a gRPC client with the API token, and the clock runs from the call to its response, which
//!    comes once every connected agent has acknowledged (or timed out). Each protocol client notes when the
//!    halt reached it and the controller's CPU time is read around the rounds, which splits the time into
//!    delivery, acknowledgements and the audit write. Baselines at the same step: a trivial unary call
//!    (`ListSchedules` on an empty table) and the halt-all with 1 agent. Then, on a fresh controller, the
//!    same 1,000 agents 50 streams to a connection (HTTP/2), to show what sharing connections changes.
//! 2. Memory: the child's VmRSS at each step, so (RSS at 1,000 − RSS at 0) / 1,000 is the controller's cost
//!    per connected agent, with no client in its process.
//! 3. Apply→ack: an in-process controller (`Controller::bind`, then its public `api.fleet`) with 1,000
//!    protocol clients: `Fleet::apply` then `Fleet::revert` on agents picked at random, one at a time and 100
//!    in flight, and `Fleet::request` of a `plan` (the bare request→answer path, no audit write); baseline:
//!    as many `ListSchedules` calls through the API on the same loopback, the same way.
//! 4. One real agent (`chaos_agent::remote::serve` around a `HostAgent` with a temporary state directory) on
//!    that controller: a `process-pause` of a `sleep` child by pid through `Fleet::apply`, a renew, then
//!    `Fleet::revert`, each checked on `/proc`; baselines in the same rounds: `HostAgent::apply`/`revert` of
//!    the same spec called locally, and raw `kill(SIGSTOP)`/`kill(SIGCONT)`. Runs as root, as an agent is
//!    deployed (skipped, and said so, otherwise).
//!
//! Layout: this file holds the sizes, the results and [`run`]; `fanout` parts 1 and 2, `apply` parts 3 and
//! 4, `clients` the protocol clients and the API client, `report` the Markdown section.

mod apply;
mod clients;
mod fanout;
mod report;

pub use report::render;

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use serde::Serialize;

use crate::stats::percentile;

/// Agents connected at each step of the fan-out part (those above `Sizes::agents` are left out).
const STEPS: [usize; 5] = [0, 1, 10, 100, 1000];
/// Agent streams per connection in the multiplexed variant.
const MUX: usize = 50;
/// Agents dialling at once while a step joins (a burst of 1,000 SYNs would only measure the listen backlog).
const DIAL_PARALLEL: usize = 64;
/// The halt-all timeout sent with each call (the API's default).
const HALT_TIMEOUT_MS: u64 = 5000;
/// DESIGN.md §9: halt-all reaches 1,000 connected agents, all acknowledged, within this.
const BUDGET_MS: f64 = 1000.0;
/// Longest wait for a step's agents to be welcomed and listed as connected, or to be gone.
const JOIN_DEADLINE: Duration = Duration::from_secs(60);
/// After a step joins: long enough for every agent to send a heartbeat (1 s) before RSS is read.
const SETTLE: Duration = Duration::from_millis(1500);
/// Between two halt-all rounds.
const ROUND_GAP: Duration = Duration::from_millis(50);
/// Trivial calls timed after each halt-all round (the in-run baseline).
const TRIVIAL_PER_ROUND: usize = 5;
/// What the protocol clients put in every answer.
const ACK_DETAIL: &str = "chaos-bench protocol client: acknowledged without touching the host";
/// Duration of the remote faults applied: long enough never to lapse during a round.
const FAULT_DURATION: Duration = Duration::from_secs(60);
/// The agent id of the real agent in part 4.
const REAL_AGENT: &str = "real-agent";
/// Real-agent rounds discarded first (first journal writes, first `/proc` reads).
const REAL_WARMUP: usize = 5;
/// Longest a fault may take to show on `/proc` or to go.
const EFFECT_DEADLINE: Duration = Duration::from_secs(5);

/// How big the fleet benchmark runs.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Protocol clients at the last step (the budget is for 1,000).
    pub agents: usize,
    /// Halt-all calls per step.
    pub halt_rounds: usize,
    /// Applies (and reverts, and plans, and baseline calls) per mode in part 3.
    pub applies: usize,
    /// Requests in flight in the concurrent mode of part 3.
    pub in_flight: usize,
    /// Measured apply/revert rounds against the real agent.
    pub real_rounds: usize,
}

impl Sizes {
    /// About 25 s in full on 2 cores, 20 s with `--quick`.
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes { agents: 1000, halt_rounds: 10, applies: 300, in_flight: 100, real_rounds: 50 }
        } else {
            Sizes { agents: 1000, halt_rounds: 20, applies: 1000, in_flight: 100, real_rounds: 200 }
        }
    }
}

/// Percentiles of latency samples, µs (nearest rank).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub samples: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Spread {
    fn of(samples: &mut [Duration]) -> Result<Spread> {
        ensure!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        Ok(Spread {
            samples: samples.len(),
            p50_us: us(percentile(samples, 50.0)),
            p90_us: us(percentile(samples, 90.0)),
            p99_us: us(percentile(samples, 99.0)),
            max_us: us(samples[samples.len() - 1]),
        })
    }
}

/// Everything the fleet benchmark measured; a part that failed is an error string, the others still run.
#[derive(Debug, Serialize)]
pub struct FleetResult {
    pub sizes: Sizes,
    /// This process's RLIMIT_NOFILE (the child inherits it).
    pub fd_limit: u64,
    pub fanout: Result<Fanout, String>,
    pub apply: Result<ApplyAck, String>,
    pub real: RealOutcome,
}

/// Part 1 and 2: `chaos controller` in its own process.
#[derive(Debug, Serialize)]
pub struct Fanout {
    pub binary: String,
    /// One TCP connection per agent, by step.
    pub steps: Vec<Step>,
    /// On a fresh controller: no agent, then all of them with [`MUX`] agent streams per connection.
    pub multiplexed: Result<Vec<Step>, String>,
}

/// One step: `agents` connected, halt-all timed `halt.samples` times.
#[derive(Debug, Serialize)]
pub struct Step {
    pub agents: usize,
    pub per_connection: usize,
    /// From starting the step's new agents to all of them welcomed and listed as connected, ms.
    pub join_ms: f64,
    /// The controller's VmRSS once the step's agents have sent a heartbeat, KiB.
    pub rss_kib: u64,
    /// Descriptors the controller has open then (`/proc/PID/fd`).
    pub fds: usize,
    /// HaltAll, call → response.
    pub halt: Spread,
    /// Each round's HaltAll, ms, in order.
    pub rounds_ms: Vec<f64>,
    /// The fewest agents acknowledged in one response, and agents reported missing over all rounds.
    pub acknowledged_min: usize,
    pub missing_total: usize,
    /// `HaltAllResponse.elapsed_ms` (the controller's own clock, start of the fan-out to the last ack).
    pub controller_elapsed: Spread,
    /// When the halt reached the first and the last agent, from the call (none with no agent).
    pub first_reached: Option<Spread>,
    pub last_reached: Option<Spread>,
    /// Baseline at this step: `ListSchedules` (empty), call → response.
    pub trivial: Spread,
    /// `ListAgents` with a selector matching no agent, call → response.
    pub list_none: Spread,
    pub cpu: Cpu,
}

/// CPU time (utime + stime from `/proc/PID/stat`, 10 ms ticks) of the controller and of this process (the
/// protocol clients and the API client).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cpu {
    /// While the step's agents only sent heartbeats ([`SETTLE`]), % of one core.
    pub controller_idle_pct: f64,
    pub clients_idle_pct: f64,
    /// Per halt-all round (with its baseline calls), net of the idle rate over the same wall time, ms.
    pub controller_ms_per_round: f64,
    pub clients_ms_per_round: f64,
}

/// Part 3: apply→ack through the in-process `Fleet`.
#[derive(Debug, Serialize)]
pub struct ApplyAck {
    pub agents: usize,
    /// One request at a time: the baseline first.
    pub sequential: Vec<Timed>,
    /// `in_flight` at a time: the baseline first.
    pub concurrent: Vec<Timed>,
    pub in_flight: usize,
}

/// One timed operation.
#[derive(Debug, Serialize)]
pub struct Timed {
    pub what: &'static str,
    pub spread: Spread,
    /// In the concurrent mode: operations per second over the whole batch.
    pub per_sec: Option<f64>,
}

/// Part 4.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RealOutcome {
    Measured(Box<RealAgent>),
    Skipped(String),
    Error(String),
}

/// Part 4: a `process-pause` through the real agent, against the same fault applied locally and raw signals.
#[derive(Debug, Serialize)]
pub struct RealAgent {
    /// `HostAgent::start` (journal replay and the capability probe), ms.
    pub start_ms: f64,
    pub remote_apply: Spread,
    pub remote_revert: Spread,
    /// `Fleet::request(renew)` of the held pause → RENEWED: the bare round trip to the real agent (its answer
    /// needs no blocking call).
    pub remote_renew: Spread,
    pub local_apply: Spread,
    pub local_revert: Spread,
    pub raw_stop: Spread,
    pub raw_cont: Spread,
}

/// Runs the four parts. `chaos_bin` is the release `chaos` binary (the controller child).
pub async fn run(chaos_bin: &Path, sizes: &Sizes) -> FleetResult {
    let fd_limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
    let dir = match crate::agent::TempDir::new("chaos-bench-fleet") {
        Ok(dir) => dir,
        Err(e) => {
            let e = format!("{e:#}");
            return FleetResult {
                sizes: sizes.clone(),
                fd_limit,
                fanout: Err(e.clone()),
                apply: Err(e.clone()),
                real: RealOutcome::Error(e),
            };
        }
    };
    // One TCP connection per agent (as deployed) needs 1 descriptor each here, and 2 each in part 3 where
    // both ends live in this process.
    let per_connection = if fd_limit >= 2 * sizes.agents as u64 + 512 { 1 } else { MUX };
    if per_connection > 1 {
        eprintln!(
            "fleet: note: RLIMIT_NOFILE is {fd_limit}, too low for one connection per agent: {MUX} agents \
             share each connection"
        );
    }
    eprintln!("fleet: part 1+2, halt-all fan-out and memory, `chaos controller` as a child process");
    let fanout = fanout::fanout(chaos_bin, &dir.0.join("child"), sizes, per_connection).await;
    if let Err(e) = &fanout {
        eprintln!("  error: {e:#}");
    }
    eprintln!("fleet: part 3+4, apply→ack through an in-process controller");
    let (apply, real) = apply::in_process(&dir.0.join("in-process"), sizes, per_connection).await;
    FleetResult { sizes: sizes.clone(), fd_limit, fanout: fanout.map_err(|e| format!("{e:#}")), apply, real }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_nearest_rank_over_the_samples() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let s = Spread::of(&mut samples).unwrap();
        assert_eq!(s.samples, 100);
        assert_eq!((s.p50_us, s.p90_us, s.p99_us, s.max_us), (50.0, 90.0, 99.0, 100.0));
        assert!(Spread::of(&mut []).is_err());
    }
}
