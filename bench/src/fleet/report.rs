//! The Markdown section of the fleet benchmark, with its verdict against DESIGN.md §9.

use std::fmt::Write as _;

use crate::stats::ratio;

use super::{
    ApplyAck, BUDGET_MS, Fanout, FleetResult, MUX, REAL_WARMUP, ROUND_GAP, RealOutcome, SETTLE, Sizes,
    Spread, Step, TRIVIAL_PER_ROUND,
};

fn ms(us: f64) -> String {
    format!("{:.1}", us / 1e3)
}

fn times(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.2}×"))
}

/// The Markdown section, with its verdict line.
pub fn render(r: &FleetResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## 10. Controller fan-out: halt-all to {} agents, apply→ack, memory\n",
        r.sizes.agents
    );
    let _ = writeln!(
        out,
        "The agents are **protocol clients** in this process, not `chaos agent serve`: each holds a real \
         `AgentService.Connect` stream (hello with labels and capabilities, a heartbeat with a host sample \
         every second) and acknowledges every request at once **without touching the host**, so these \
         figures are the controller's fan-out and bookkeeping plus loopback gRPC. RLIMIT_NOFILE {}.\n",
        r.fd_limit
    );
    match &r.fanout {
        Ok(f) => fanout_tables(&mut out, f, &r.sizes),
        Err(e) => {
            let _ = writeln!(out, "Halt-all fan-out: error: {e}\n");
        }
    }
    match &r.apply {
        Ok(a) => apply_table(&mut out, a),
        Err(e) => {
            let _ = writeln!(out, "Apply→ack: error: {e}\n");
        }
    }
    real_table(&mut out, &r.real, r.sizes.real_rounds);
    let _ = writeln!(out, "{}\n", verdict_line(r));
    out
}

/// The budget check: at the largest step, one connection per agent, every round all acknowledged and the
/// slowest round within 1 s.
pub fn verdict(r: &FleetResult) -> Option<bool> {
    let step = r.fanout.as_ref().ok()?.steps.last()?;
    Some(
        step.agents == r.sizes.agents
            && step.acknowledged_min == step.agents
            && step.halt.max_us / 1e3 <= BUDGET_MS,
    )
}

fn verdict_line(r: &FleetResult) -> String {
    let step = r.fanout.as_ref().ok().and_then(|f| f.steps.last());
    match (verdict(r), step) {
        (Some(pass), Some(s)) => format!(
            "**Verdict: {}** — halt-all to {} connected agents: every one of {} rounds all acknowledged = \
             {}, slowest {} ms, p50 {} ms (budget ≤ {BUDGET_MS:.0} ms, DESIGN.md §9).",
            if pass { "PASS" } else { "FAIL" },
            s.agents,
            s.halt.samples,
            s.acknowledged_min == s.agents,
            ms(s.halt.max_us),
            ms(s.halt.p50_us)
        ),
        _ => "**Verdict: not measured** (the fan-out part failed).".to_string(),
    }
}

fn fanout_tables(out: &mut String, f: &Fanout, sizes: &Sizes) {
    let _ = writeln!(
        out,
        "### Halt-all fan-out (`{}` controller, alone in a child process)\n\n`ControllerService.HaltAll` \
         through a gRPC client with the API token, {} rounds per step, {} ms apart; the clock runs from the \
         call to the response, which lists every agent that acknowledged. The agents join in steps on one \
         controller, one TCP connection each; the last rows are a fresh controller with {MUX} agent streams \
         per connection (HTTP/2). Baseline in the same rounds: {} `ListSchedules` calls (an empty table) \
         after each halt-all; and the halt-all with 1 agent.\n\n| agents | per connection | halt-all p50 ms \
         | p90 ms | max ms | fewest acked | missing | ListSchedules p50 ms | p50 vs ListSchedules | p50 vs 1 \
         agent | budget | verdict |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        f.binary,
        sizes.halt_rounds,
        ROUND_GAP.as_millis(),
        TRIVIAL_PER_ROUND
    );
    let one = f.steps.iter().find(|s| s.agents == 1).map(|s| s.halt.p50_us);
    let multiplexed: &[Step] = f.multiplexed.as_deref().unwrap_or(&[]);
    let all: Vec<&Step> = f.steps.iter().chain(multiplexed.iter().filter(|s| s.agents > 0)).collect();
    for s in &all {
        let vs_one = if s.agents == 1 && s.per_connection == 1 {
            "baseline".to_string()
        } else {
            times(one.and_then(|o| ratio(s.halt.p50_us, o)))
        };
        let (budget, verdict_cell) = if s.agents == sizes.agents && s.per_connection == 1 {
            let pass = s.acknowledged_min == s.agents && s.halt.max_us / 1e3 <= BUDGET_MS;
            ("all acknowledged, ≤ 1 s", if pass { "PASS" } else { "FAIL" })
        } else {
            ("", "")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {vs_one} | {budget} | {verdict_cell} |",
            s.agents,
            s.per_connection,
            ms(s.halt.p50_us),
            ms(s.halt.p90_us),
            ms(s.halt.max_us),
            s.acknowledged_min,
            s.missing_total,
            s.trivial.p50_us / 1e3,
            times(ratio(s.halt.p50_us, s.trivial.p50_us)),
        );
    }
    if let Err(e) = &f.multiplexed {
        let _ = writeln!(
            out,
            "| {} | {MUX} | error: {} | | | | | | | | | |",
            sizes.agents,
            e.replace('|', "\\|")
        );
    }
    let _ = writeln!(
        out,
        "\nWhere the time goes. \"Reached\" is when the `halt_all` message arrived at the first and at the \
         last protocol client, from the call; \"controller\" is the response's `elapsed_ms` (the \
         controller's clock from the start of its fan-out to the last ack, whole ms); the rest of the call \
         is the audit write of one row per agent (one SQLite transaction) and the RPC. CPU is utime + stime \
         (10 ms ticks) over all the rounds, net of the rate measured over {:.1} s of heartbeats alone just \
         before, per round; \"clients\" is this process (the protocol clients and the API client), on the \
         same {} cores.\n\n| agents | per connection | reached first / last p50 ms | controller p50 ms | \
         call − controller p50 ms | controller CPU ms per halt-all | clients CPU ms per halt-all | \
         heartbeats alone: controller / clients CPU % | ListAgents (selector matching none) p50 ms |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        SETTLE.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    for s in &all {
        let reached = match (&s.first_reached, &s.last_reached) {
            (Some(a), Some(b)) => format!("{} / {}", ms(a.p50_us), ms(b.p50_us)),
            _ => "–".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {reached} | {} | {} | {:.1} | {:.1} | {:.1} / {:.1} | {:.2} |",
            s.agents,
            s.per_connection,
            ms(s.controller_elapsed.p50_us),
            ms(s.halt.p50_us - s.controller_elapsed.p50_us),
            s.cpu.controller_ms_per_round,
            s.cpu.clients_ms_per_round,
            s.cpu.controller_idle_pct,
            s.cpu.clients_idle_pct,
            s.list_none.p50_us / 1e3
        );
    }
    let _ = writeln!(
        out,
        "\n### Controller memory per connected agent (VmRSS of the controller process)\n\nRead once every \
         agent of the step is connected and has sent heartbeats for {:.1} s (before that step's halt-alls); \
         Δ is against the same controller with no agent.\n\n| agents | per connection | joined in ms | VmRSS \
         KiB | Δ vs 0 agents KiB | Δ per agent KiB | open fds |\n|---:|---:|---:|---:|---:|---:|---:|",
        SETTLE.as_secs_f64()
    );
    for steps in [f.steps.as_slice(), multiplexed] {
        let base = steps.first().filter(|s| s.agents == 0).map(|s| s.rss_kib);
        for s in steps.iter().filter(|s| s.agents > 0 || s.per_connection == 1) {
            let delta = base.map(|b| s.rss_kib as f64 - b as f64);
            let per = delta.filter(|_| s.agents > 0).map(|d| d / s.agents as f64);
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} | {} |",
                s.agents,
                s.per_connection,
                s.join_ms,
                s.rss_kib,
                delta.map_or_else(|| "–".into(), |d| format!("{d:+.0}")),
                per.map_or_else(|| "–".into(), |p| format!("{p:.1}")),
                s.fds
            );
        }
    }
    out.push('\n');
}

fn apply_table(out: &mut String, a: &ApplyAck) {
    let _ = writeln!(
        out,
        "### Apply→ack through the controller's `Fleet` (controller in this process, {} protocol clients)\n\n\
         The controller runs in the benchmark's process (its `Fleet` is public: \
         `Controller::bind(..).api.fleet`); the clients connect to it over loopback as in the fan-out part. \
         Each agent is picked at random; a `Fleet::apply` returns once the agent's APPLIED came back and the \
         audit entry is written, a `Fleet::revert` once REVERTED came back and its audit entry is written. \
         `Fleet::request(plan)` is the bare request→answer path. The baseline is a `ListSchedules` call \
         through the API client on the same loopback, timed the same way. {} each, after one warm-up in the \
         sequential mode and {} warm-up baseline calls in the concurrent one; the concurrent mode times each \
         operation from its start (once in flight) and the batch as a whole (per second).\n\n| mode | \
         operation | p50 µs | p90 µs | p99 µs | max µs | per s | p50 vs baseline | p99 vs baseline |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|",
        a.agents,
        a.sequential.first().map_or(0, |t| t.spread.samples),
        a.in_flight
    );
    let groups =
        [("one at a time".to_string(), &a.sequential), (format!("{} in flight", a.in_flight), &a.concurrent)];
    for (mode, rows) in groups {
        let base = rows.first().map(|t| t.spread);
        for (i, t) in rows.iter().enumerate() {
            let (r50, r99) = match base {
                Some(_) if i == 0 => ("baseline".to_string(), "baseline".to_string()),
                Some(b) => (times(ratio(t.spread.p50_us, b.p50_us)), times(ratio(t.spread.p99_us, b.p99_us))),
                None => ("–".into(), "–".into()),
            };
            let _ = writeln!(
                out,
                "| {mode} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {r50} | {r99} |",
                t.what,
                t.spread.p50_us,
                t.spread.p90_us,
                t.spread.p99_us,
                t.spread.max_us,
                t.per_sec.map_or_else(|| "–".to_string(), |r| format!("{r:.0}"))
            );
        }
    }
    out.push('\n');
}

fn real_table(out: &mut String, real: &RealOutcome, rounds: usize) {
    let _ = writeln!(out, "### Apply→ack against one real agent (`process-pause` of a `sleep` child)\n");
    let r = match real {
        RealOutcome::Measured(r) => r,
        RealOutcome::Skipped(why) => {
            let _ = writeln!(out, "Skipped: {why}.\n");
            return;
        }
        RealOutcome::Error(e) => {
            let _ = writeln!(out, "Error: {e}\n");
            return;
        }
    };
    let _ = writeln!(
        out,
        "`chaos_agent::remote::serve` around a `HostAgent` (temporary state directory, started in {:.0} ms) \
         connected alone to the in-process controller above (its protocol clients gone); {rounds} rounds \
         after {REAL_WARMUP} warm-up. Each round: `Fleet::apply` of \
         `{{\"kind\":\"process-pause\",\"target\":{{\"pid\":P}}}}` until APPLIED (checked stopped on \
         `/proc/P/stat`, untimed), a `renew` of it through `Fleet::request` (the agent answers it without a \
         blocking call: the bare round trip), then `Fleet::revert` until REVERTED (checked running); then \
         the same spec through the same `HostAgent` locally (`apply`, `revert`, on a blocking thread, \
         journal record written and fsynced as the agent does); then raw `kill(SIGSTOP)` and \
         `kill(SIGCONT)`.\n\n| operation | p50 µs | p90 µs | p99 µs | max µs | p50 vs local | p99 vs local | \
         p50 vs raw signal |\n|---|---:|---:|---:|---:|---:|---:|---:|",
        r.start_ms
    );
    let rows = [
        ("apply→ack via controller and agent", &r.remote_apply, Some(&r.local_apply), Some(&r.raw_stop)),
        ("revert→ack via controller and agent", &r.remote_revert, Some(&r.local_revert), Some(&r.raw_cont)),
        ("`Fleet::request(renew)` → RENEWED (bare round trip)", &r.remote_renew, None, None),
        ("`HostAgent::apply` locally (baseline)", &r.local_apply, None, Some(&r.raw_stop)),
        ("`HostAgent::revert` locally (baseline)", &r.local_revert, None, Some(&r.raw_cont)),
        ("raw `kill(SIGSTOP)` (baseline)", &r.raw_stop, None, None),
        ("raw `kill(SIGCONT)` (baseline)", &r.raw_cont, None, None),
    ];
    for (what, s, local, raw) in rows {
        let vs_local =
            |f: fn(&Spread) -> f64| local.map_or_else(|| "–".to_string(), |l| times(ratio(f(s), f(l))));
        let _ = writeln!(
            out,
            "| {what} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
            s.p50_us,
            s.p90_us,
            s.p99_us,
            s.max_us,
            vs_local(|s| s.p50_us),
            vs_local(|s| s.p99_us),
            raw.map_or_else(|| "–".to_string(), |b| times(ratio(s.p50_us, b.p50_us)))
        );
    }
    out.push('\n');
}
