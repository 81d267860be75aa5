//! Collected results and their Markdown rendering (tables of value, ratio vs baseline, budget, verdict).

use std::fmt::Write as _;

use serde::Serialize;

use crate::agent::{self, AgentResult, Method, Outcome, Sampling};
use crate::chaos_run::{self, Tool};
use crate::http::{self, Case, HttpResult};
use crate::memory;
use crate::profile::Profile;
use crate::rtt::{self, PING};
use crate::slo;
use crate::stats::ratio;
use crate::targets::TargetKind;
use crate::throughput;
use crate::toxics::{BandwidthRow, LATENCY_MS, LatencyResult};

/// Throughput budget: chaos ≥ this × direct (and ahead of noxious).
const TPUT_MIN_RATIO: f64 = 0.8;
/// Round-trip budgets over direct, µs.
const RTT_P50_BUDGET_US: f64 = 30.0;
const RTT_P99_BUDGET_US: f64 = 150.0;
/// Latency-toxic budget, ms either side of the injected latency.
const LATENCY_BUDGET_MS: f64 = 2.0;
/// Bandwidth-toxic budget, percent either side.
const BANDWIDTH_BUDGET_PCT: f64 = 5.0;
/// Memory budget, KiB per idle proxied connection.
const MEMORY_BUDGET_KIB: f64 = 64.0;
/// `chaos run` of a trivial experiment, median wall ms.
const RUN_BUDGET_MS: f64 = 50.0;
/// The engine evaluates guardrails and progress once per this interval.
const TICK_INTERVAL_US: f64 = 1e6;
/// HTTP keep-alive budget: chaos ≥ this × HAProxy's requests/s.
const HTTP_MIN_RATIO: f64 = 0.8;

/// Everything one run measured; `None` sections were not selected.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub profile: Option<Profile>,
    pub environment: Vec<(String, String)>,
    pub throughput: Option<Vec<throughput::Row>>,
    pub rtt: Option<Vec<rtt::Row>>,
    pub latency: Option<Result<LatencyResult, String>>,
    pub bandwidth: Option<Result<Vec<BandwidthRow>, String>>,
    pub memory: Option<Vec<(TargetKind, Result<memory::Row, String>)>>,
    pub run: Option<Result<chaos_run::RunResult, String>>,
    /// SLO tick, per layout (number of sources, seconds into the method).
    pub slo: Option<Vec<slo::Measured>>,
    /// The agent: process sampling and the revert latency of each fault kind.
    pub agent: Option<AgentResult>,
    /// HTTP/1.1 keep-alive requests/s and latency: direct, chaos (http mode), HAProxy (mode http).
    pub http: Option<Result<HttpResult, String>>,
    /// Budget verdicts: (what, passed).
    pub verdicts: Vec<(String, bool)>,
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

fn signed(v: f64, digits: usize) -> String {
    format!("{v:+.digits$}")
}

/// Renders the whole report as Markdown, recording budget verdicts into `results.verdicts`.
pub fn render(results: &mut Results) -> String {
    let mut out = String::new();
    let mut verdicts = Vec::new();
    let profile = results.profile.as_ref().map_or("?", |p| p.name);
    let _ = writeln!(out, "# chaos benchmark ({profile} profile)\n");
    for (k, v) in &results.environment {
        let _ = writeln!(out, "- {k}: {v}");
    }
    out.push('\n');
    if let Some(rows) = &results.throughput {
        throughput_section(&mut out, rows, &mut verdicts);
    }
    if let Some(rows) = &results.rtt {
        rtt_section(&mut out, rows, &mut verdicts);
    }
    if let Some(res) = &results.latency {
        latency_section(&mut out, res, &mut verdicts);
    }
    if let Some(res) = &results.bandwidth {
        bandwidth_section(&mut out, res, &mut verdicts);
    }
    if let Some(rows) = &results.memory {
        let wanted = results.profile.as_ref().map_or(0, |p| p.mem_conns);
        memory_section(&mut out, rows, wanted, &mut verdicts);
    }
    if let Some(res) = &results.run {
        run_section(&mut out, res, &mut verdicts);
    }
    if let Some(rows) = &results.slo {
        slo_section(&mut out, rows, &mut verdicts);
    }
    if let Some(r) = &results.agent {
        agent_section(&mut out, r);
    }
    if let Some(res) = &results.http {
        http_section(&mut out, res, results.profile.as_ref(), &mut verdicts);
    }
    let passed = verdicts.iter().filter(|(_, ok)| *ok).count();
    let _ = writeln!(out, "## Summary: {passed} of {} budget checks passed\n", verdicts.len());
    let _ = writeln!(out, "| check | verdict |\n|---|---|");
    for (what, ok) in &verdicts {
        let _ = writeln!(out, "| {what} | {} |", verdict(*ok));
    }
    results.verdicts = verdicts;
    out
}

fn throughput_section(out: &mut String, rows: &[throughput::Row], verdicts: &mut Vec<(String, bool)>) {
    let _ = writeln!(out, "## 1. L4 bulk throughput, no toxics (backend → client over loopback)\n");
    let _ = writeln!(
        out,
        "MB = 10^6 bytes; aggregate over all connections, counted at the receiving client; median of the \
         interleaved rounds (each round's value listed).\n\n\
         | target | conns | MB/s | rounds | ratio vs direct | budget | verdict |\n|---|---:|---:|---|---:|---|---|"
    );
    let value = |kind: TargetKind, conns: usize| {
        rows.iter()
            .find(|r| r.target == kind && r.conns == conns)
            .and_then(|r| r.mb_per_s.as_ref().ok().copied())
    };
    for row in rows {
        let direct = value(TargetKind::Direct, row.conns);
        let (val, r) = match &row.mb_per_s {
            Ok(v) => (format!("{v:.0}"), opt(direct.and_then(|d| ratio(*v, d)), 2)),
            Err(e) => (format!("error: {e}"), "–".to_string()),
        };
        let (budget, verdict_cell) = match row.target {
            TargetKind::Direct => ("baseline".to_string(), String::new()),
            TargetKind::Chaos => {
                let noxious = value(TargetKind::Noxious, row.conns);
                let ok = match (&row.mb_per_s, direct) {
                    (Ok(v), Some(d)) => *v >= TPUT_MIN_RATIO * d && noxious.is_none_or(|n| *v > n),
                    _ => false,
                };
                verdicts.push((
                    format!("throughput, {} conn(s): chaos ≥ 0.8× direct and > noxious", row.conns),
                    ok,
                ));
                (format!("≥ {TPUT_MIN_RATIO:.1}× direct, > noxious"), verdict(ok).to_string())
            }
            _ => ("reference".to_string(), String::new()),
        };
        let rounds = row.rounds.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            out,
            "| {} | {} | {val} | {rounds} | {r} | {budget} | {verdict_cell} |",
            row.target, row.conns
        );
    }
    out.push('\n');
}

fn rtt_section(out: &mut String, rows: &[rtt::Row], verdicts: &mut Vec<(String, bool)>) {
    let _ = writeln!(out, "## 2. Small request/response round trip ({PING}-byte ping echoed), no toxics\n");
    let _ = writeln!(
        out,
        "Closed loop per connection; Δ is the difference with direct at the same connection count.\n\n\
         | target | conns | samples | p50 µs | p99 µs | Δp50 µs | Δp99 µs | p50 ratio | p99 ratio | budget | verdict |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    let direct = |conns: usize| {
        rows.iter()
            .find(|r| r.target == TargetKind::Direct && r.conns == conns)
            .and_then(|r| r.summary.as_ref().ok().copied())
    };
    for row in rows {
        let base = direct(row.conns);
        let cells = match (&row.summary, base) {
            (Ok(s), Some(d)) => format!(
                "{} | {:.1} | {:.1} | {} | {} | {} | {}",
                s.samples,
                s.p50_us,
                s.p99_us,
                signed(s.p50_us - d.p50_us, 1),
                signed(s.p99_us - d.p99_us, 1),
                opt(ratio(s.p50_us, d.p50_us), 2),
                opt(ratio(s.p99_us, d.p99_us), 2)
            ),
            (Ok(s), None) => format!("{} | {:.1} | {:.1} | – | – | – | –", s.samples, s.p50_us, s.p99_us),
            (Err(e), _) => format!("error: {e} | | | | | |"),
        };
        let (budget, verdict_cell) = match row.target {
            TargetKind::Direct => ("baseline".to_string(), String::new()),
            TargetKind::Chaos => {
                let ok = match (&row.summary, base) {
                    (Ok(s), Some(d)) => {
                        s.p50_us - d.p50_us <= RTT_P50_BUDGET_US && s.p99_us - d.p99_us <= RTT_P99_BUDGET_US
                    }
                    _ => false,
                };
                verdicts.push((
                    format!("round trip, {} conn(s): chaos ≤ +30 µs p50, ≤ +150 µs p99", row.conns),
                    ok,
                ));
                (
                    format!("≤ +{RTT_P50_BUDGET_US:.0} p50, ≤ +{RTT_P99_BUDGET_US:.0} p99"),
                    verdict(ok).to_string(),
                )
            }
            _ => ("reference".to_string(), String::new()),
        };
        let _ = writeln!(out, "| {} | {} | {cells} | {budget} | {verdict_cell} |", row.target, row.conns);
    }
    let _ = writeln!(
        out,
        "\nAt many connections the load generator, the backend and the proxy share the same cores, so Δ there \
         mostly measures the proxy's CPU cost under saturation; compare chaos's Δ with HAProxy's and noxious's.\n"
    );
}

fn latency_section(
    out: &mut String,
    res: &Result<LatencyResult, String>,
    verdicts: &mut Vec<(String, bool)>,
) {
    let _ = writeln!(out, "## 3. Latency toxic accuracy (latency {LATENCY_MS} ms, jitter 0, downstream)\n");
    let r = match res {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "error: {e}\n");
            verdicts.push(("latency toxic".to_string(), false));
            return;
        }
    };
    let _ = writeln!(
        out,
        "{} round trips through chaos with the toxic, {} direct; in both runs every connection sends one \
         ping per 100 ms, start times spread over the period. Added = chaos+toxic − direct; error = added − \
         {LATENCY_MS} ms.\n\n\
         | percentile | direct µs | chaos + toxic µs | added ms | error ms | budget | verdict |\n\
         |---|---:|---:|---:|---:|---|---|",
        r.toxic.samples, r.direct.samples
    );
    let line =
        |out: &mut String, name: &str, d: f64, t: f64, err: f64, verdicts: &mut Vec<(String, bool)>| {
            let ok = err.abs() <= LATENCY_BUDGET_MS;
            verdicts.push((format!("latency toxic {name}: within ±2 ms of 100 ms"), ok));
            let _ = writeln!(
                out,
                "| {name} | {d:.1} | {t:.1} | {:.3} | {} | ±{LATENCY_BUDGET_MS:.0} ms | {} |",
                (t - d) / 1000.0,
                signed(err, 3),
                verdict(ok)
            );
        };
    line(out, "p50", r.direct.p50_us, r.toxic.p50_us, r.p50_error_ms(), verdicts);
    line(out, "p99", r.direct.p99_us, r.toxic.p99_us, r.p99_error_ms(), verdicts);
    out.push('\n');
}

fn bandwidth_section(
    out: &mut String,
    res: &Result<Vec<BandwidthRow>, String>,
    verdicts: &mut Vec<(String, bool)>,
) {
    let _ = writeln!(out, "## 4. Bandwidth toxic accuracy (downstream, KB = 1000 bytes)\n");
    let rows = match res {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "error: {e}\n");
            verdicts.push(("bandwidth toxic".to_string(), false));
            return;
        }
    };
    let _ = writeln!(
        out,
        "One connection per rate; time from request sent to last byte received.\n\n\
         | rate KB/s | bytes | seconds | achieved KB/s | error % | budget | verdict |\n|---:|---:|---:|---:|---:|---|---|"
    );
    for row in rows {
        let ok = row.error_pct().is_some_and(|e| e.abs() <= BANDWIDTH_BUDGET_PCT);
        verdicts.push((format!("bandwidth toxic {} KB/s: within ±5%", row.rate_kbps), ok));
        let cells = match (&row.measured, row.error_pct()) {
            (Ok((secs, kbps)), Some(err)) => format!("{secs:.3} | {kbps:.1} | {}", signed(err, 2)),
            (Err(e), _) => format!("error: {e} | | "),
            _ => " | | ".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {cells} | ±{BANDWIDTH_BUDGET_PCT:.0}% | {} |",
            row.rate_kbps,
            row.bytes,
            verdict(ok)
        );
    }
    out.push('\n');
}

fn memory_section(
    out: &mut String,
    rows: &[(TargetKind, Result<memory::Row, String>)],
    wanted_conns: usize,
    verdicts: &mut Vec<(String, bool)>,
) {
    let _ = writeln!(out, "## 5. Memory per proxied connection (proxy process VmRSS)\n");
    let _ = writeln!(
        out,
        "Idle = connections open, nothing sent; after echo = one byte echoed on every connection.\n\n\
         | target | conns | RSS before KiB | RSS idle KiB | KiB/conn idle | RSS after echo KiB | KiB/conn after echo | \
         held | opening | budget | verdict |\n|---|---:|---:|---:|---:|---:|---:|---|---|---|---|"
    );
    for (kind, res) in rows {
        let (cells, ok) = match res {
            Ok(r) => {
                let ok = r.kib_per_conn_idle() <= MEMORY_BUDGET_KIB && r.all_held();
                let held = format!("{}/{} echoed, {} open", r.echoed, r.conns, r.backend_open);
                let overflows = r.listen_overflows.map_or_else(|| "?".to_string(), |n| n.to_string());
                let opening = format!("{:.1} s, {} lagging, {overflows}", r.open_secs, r.lagging_batches);
                (
                    format!(
                        "{} | {} | {} | {:.1} | {} | {:.1} | {held} | {opening}",
                        r.conns,
                        r.rss_before_kib,
                        r.rss_idle_kib,
                        r.kib_per_conn_idle(),
                        r.rss_active_kib,
                        r.kib_per_conn_active()
                    ),
                    ok,
                )
            }
            Err(e) => (format!("error: {e} | | | | | | |"), false),
        };
        let (budget, v) = if *kind == TargetKind::Chaos {
            verdicts.push(("memory: ≤ 64 KiB per idle connection, all held".to_string(), ok));
            (format!("≤ {MEMORY_BUDGET_KIB:.0} KiB/conn, all held"), verdict(ok))
        } else {
            ("reference".to_string(), "")
        };
        let _ = writeln!(out, "| {kind} | {cells} | {budget} | {v} |");
    }
    let _ = writeln!(
        out,
        "\nOpening: time to open all connections (100 at a time, each batch waiting up to 2 s to reach the \
         backend), batches that had not reached it by then, and the growth of the kernel's ListenOverflows \
         counter (system-wide: connections whose handshake was dropped because the accept queue was full).\n"
    );
    if let Some(opened) = rows.iter().find_map(|(_, r)| r.as_ref().ok().map(|r| r.conns))
        && opened < wanted_conns
    {
        let _ = writeln!(
            out,
            "Only {opened} of the {wanted_conns} connections of the budget were opened: RLIMIT_NOFILE (see above) \
             cannot be raised on this machine and a proxy needs 2 descriptors per connection.\n"
        );
    }
}

fn run_section(
    out: &mut String,
    res: &Result<chaos_run::RunResult, String>,
    verdicts: &mut Vec<(String, bool)>,
) {
    let _ = writeln!(out, "## 6. `chaos run` of a trivial experiment vs Chaos Toolkit (process wall time)\n");
    let r = match res {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "error: {e}\n");
            verdicts.push(("chaos run: trivial experiment ≤ 50 ms wall".to_string(), false));
            return;
        }
    };
    let _ = writeln!(
        out,
        "Both experiments: one HTTP steady-state probe against a local `chaos demo-target --http`, before and after \
         one no-op step (chaos: `wait: 0s`, `baseline: 0s`, `recovery: 0s`; Chaos Toolkit: a `sleep 0` process \
         action, run with `--no-version-check --no-log-file`). Spawn to exit, output captured; commands \
         interleaved, warm-up rounds discarded. The `--version` rows are each tool's process-start floor.\n\n\
         | command | runs | median ms | p90 ms | min ms | max ms | ratio vs Chaos Toolkit | budget | verdict |\n\
         |---|---:|---:|---:|---:|---:|---:|---|---|"
    );
    let ctk = r.row(Tool::Chaostoolkit).map(|k| k.median_ms);
    for row in &r.rows {
        let ratio_cell = match row.tool {
            Tool::ChaosRun => opt(ctk.and_then(|k| ratio(row.median_ms, k)), 3),
            Tool::Chaostoolkit => "baseline".to_string(),
            _ => String::new(),
        };
        let (budget, v) = if row.tool == Tool::ChaosRun {
            let ok = row.median_ms <= RUN_BUDGET_MS;
            verdicts.push(("chaos run: trivial experiment ≤ 50 ms wall (median)".to_string(), ok));
            (format!("≤ {RUN_BUDGET_MS:.0} ms wall (Chaos Toolkit ~150–200 ms)"), verdict(ok))
        } else {
            (String::new(), "")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {ratio_cell} | {budget} | {v} |",
            row.tool.label(),
            row.runs,
            row.median_ms,
            row.p90_ms,
            row.min_ms,
            row.max_ms
        );
    }
    out.push('\n');
}

fn slo_section(out: &mut String, rows: &[slo::Measured], verdicts: &mut Vec<(String, bool)>) {
    let _ = writeln!(
        out,
        "## 7. SLO evaluation per engine tick ({} SLOs, {} events/s)\n",
        slo::SLOS,
        slo::EVENTS_PER_SEC
    );
    let _ = writeln!(
        out,
        "In-process (chaos-controller): one tick as `chaos run` does it each second, at the given seconds into \
         the method: the guardrails (`EventLog::between` + `GuardrailState::check`: budget, tripwire, traffic \
         floor, no data) on the main source, then per SLO `between` + `evaluate_events` + the progress text. \
         50 errors and 50 latency SLOs, spread over the sources; 2 s of baseline events precede the method. \
         Baseline: the same `between` calls alone (copying the events a tick reads). Median of the ticks.\n\n\
         | sources | method s | events in logs | events read per tick | ticks | tick p50 µs | tick p90 µs | \
         copy only p50 µs | tick / copy | share of the 1 s tick | budget | verdict |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    for ((sources, secs), res) in rows {
        let what = format!("SLO tick, {sources} source(s), {secs} s into the method");
        match res {
            Ok(r) => {
                let ok = r.tick_p50_us < TICK_INTERVAL_US;
                verdicts.push((format!("{what}: fits in the 1 s tick interval"), ok));
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {:.2}% | < 1 s per tick | {} |",
                    r.sources,
                    r.method_secs,
                    r.events_total,
                    r.events_read_per_tick,
                    r.ticks,
                    r.tick_p50_us,
                    r.tick_p90_us,
                    r.copy_p50_us,
                    opt(ratio(r.tick_p50_us, r.copy_p50_us), 2),
                    r.tick_fraction() * 100.0,
                    verdict(ok)
                );
            }
            Err(e) => {
                verdicts.push((what, false));
                let _ = writeln!(out, "| {sources} | {secs} | error: {e} | | | | | | | | | |");
            }
        }
    }
    let _ = writeln!(
        out,
        "\nEvery tick re-reads all events since the method started, once per SLO, so its cost grows with the \
         method's length and with the number of SLOs sharing a source.\n"
    );
}

/// The verdict line of a chaos case of the `http` benchmark.
fn http_check(case: Case) -> String {
    format!("HTTP keep-alive, {}: ≥ 0.8× HAProxy's requests/s, no errors", case.label())
}

fn http_section(
    out: &mut String,
    res: &Result<HttpResult, String>,
    profile: Option<&Profile>,
    verdicts: &mut Vec<(String, bool)>,
) {
    let _ = writeln!(
        out,
        "## 9. HTTP/1.1 keep-alive requests/s and latency (wrk, {} connections)\n",
        http::WRK_CONNS
    );
    let r = match res {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "error: {e}\n");
            for case in [Case::Chaos, Case::ChaosFault] {
                verdicts.push((http_check(case), false));
            }
            return;
        }
    };
    let secs = |f: fn(&Profile) -> std::time::Duration| profile.map_or(0, |p| f(p).as_secs());
    let rounds = profile.map_or(0, |p| p.http_rounds);
    let _ = writeln!(
        out,
        "`wrk --latency -t{} -c{} -d{}s http://ADDR/` after a {} s wrk warm-up, against `GET /` of an in-process \
         hyper HTTP/1.1 server (keep-alive, {}-byte body, one runtime thread of its own). chaos: one `chaos \
         proxy` with two `protocol: http` proxies, the second holding an `http_abort` toxic (status 503) with \
         `percentage: 0`, so every request is matched and none faulted. HAProxy: `mode http`, `option \
         http-keep-alive`, `http-reuse always`, default threads. The cases interleave over {rounds} round(s); \
         the run with the median req/s is shown with its p50/p99 (wrk's latency distribution), every round's \
         req/s listed; errors (responses ≥ 400, socket errors) are summed over all runs.\n\n\
         | case | req/s | p50 µs | p99 µs | rounds req/s | errors | ratio vs HAProxy | ratio vs direct | budget \
         | verdict |\n|---|---:|---:|---:|---|---|---:|---:|---|---|",
        http::WRK_THREADS,
        http::WRK_CONNS,
        secs(|p| p.http_duration),
        secs(|p| p.http_warmup),
        http::BODY.len()
    );
    let rps = |case: Case| r.row(case).and_then(http::Row::requests_per_sec);
    let clean = |case: Case| r.row(case).is_some_and(|row| row.median.is_ok() && row.error_count() == 0);
    let (haproxy, direct) = (rps(Case::Haproxy), rps(Case::Direct));
    for row in &r.rows {
        let cells = match &row.median {
            Ok(m) => {
                let (non_2xx, socket) = row.errors();
                format!(
                    "{:.0} | {:.0} | {:.0} | {} | {} | {} | {}",
                    m.requests_per_sec,
                    m.p50_us,
                    m.p99_us,
                    row.runs
                        .iter()
                        .map(|run| format!("{:.0}", run.requests_per_sec))
                        .collect::<Vec<_>>()
                        .join(", "),
                    http::errors_text(non_2xx, socket),
                    opt(haproxy.and_then(|h| ratio(m.requests_per_sec, h)), 2),
                    opt(direct.and_then(|d| ratio(m.requests_per_sec, d)), 2)
                )
            }
            Err(e) => format!("error: {} | | | | | |", cell(e)),
        };
        let (budget, verdict_cell) = match row.case {
            Case::Haproxy => ("baseline".to_string(), String::new()),
            Case::Direct => ("reference".to_string(), String::new()),
            Case::Chaos | Case::ChaosFault => {
                let ok = match (rps(row.case), haproxy) {
                    (Some(v), Some(h)) => v >= HTTP_MIN_RATIO * h && clean(row.case) && clean(Case::Haproxy),
                    _ => false,
                };
                verdicts.push((http_check(row.case), ok));
                (format!("≥ {HTTP_MIN_RATIO:.1}× HAProxy req/s, no errors"), verdict(ok).to_string())
            }
        };
        let _ = writeln!(out, "| {} | {cells} | {budget} | {verdict_cell} |", row.case.label());
    }
    let _ = writeln!(
        out,
        "\nwrk, the backend and the proxy share this machine's cores, so a proxied case also pays for the CPU the \
         proxy takes from the other two; ratio vs direct is the cost of the extra hop, the budget is against \
         HAProxy doing the same hop.\n"
    );
}

/// A table cell: no `|` or line break to split the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn agent_section(out: &mut String, r: &AgentResult) {
    let _ = writeln!(
        out,
        "## 8. Agent: sampling {} processes, revert latency of each fault kind\n",
        r.sizes.processes
    );
    let _ = writeln!(out, "### Sampling target processes (CPU time and RSS of each)\n");
    match &r.sampling {
        Ok(s) => sampling_table(out, s),
        Err(e) => {
            let _ = writeln!(out, "error: {e}\n");
        }
    }
    let rounds = &r.sizes.revert_rounds;
    let tools: Vec<String> = r.tools.iter().map(|(_, version)| version.clone()).collect();
    let _ = writeln!(out, "### Revert latency (revert request → fault gone)\n");
    let _ = writeln!(
        out,
        "One fault applied and reverted per round, through chaos-agent and the raw way alternately, the first \
         rounds discarded as warm-up ({} for signals, {} otherwise). The clock starts at the revert request and \
         stops when the \"gone\" check, polled without sleeping, first sees the effect absent, so every figure \
         includes at least one check; \"one check\" is a check alone, timed once more after each measured \
         revert. Rounds: {} for signals, {} for faults with worker processes or files, {} for nftables and tc \
         faults (with fewer than 100 rounds, p99 is the max). The agent's resource and network faults are \
         journalled in a temporary state directory, as an agent does: their revert includes deleting the record \
         and fsyncing its directory. Network faults each run in a network namespace made for the case (`ip \
         netns add`, deleted afterwards); the nftables faults match only {} (TEST-NET-3), and the agent and \
         the baseline both run their commands through `ip netns exec` ({}).\n\n\
         | fault kind | reverted by | fault gone when | rounds | p50 µs | p99 µs | max µs | one check p50 µs | \
         p50 ratio vs raw | p99 ratio vs raw |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        agent::Cost::Signal.warmup(),
        agent::Cost::Process.warmup(),
        rounds.signal,
        rounds.process,
        rounds.command,
        agent::TEST_NET_HOST,
        if tools.is_empty() { "versions unknown".to_string() } else { tools.join("; ") }
    );
    for row in &r.revert {
        match &row.outcome {
            Outcome::Measured(t) => {
                let _ = writeln!(
                    out,
                    "| {} | chaos-agent: {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
                    row.case,
                    t.agent_how,
                    t.gone_when,
                    t.agent.samples,
                    t.agent.p50_us,
                    t.agent.p99_us,
                    t.agent.max_us,
                    t.check.p50_us,
                    opt(ratio(t.agent.p50_us, t.raw.p50_us), 2),
                    opt(ratio(t.agent.p99_us, t.raw.p99_us), 2)
                );
                let _ = writeln!(
                    out,
                    "| {} | raw: {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | baseline | baseline |",
                    row.case,
                    t.raw_how,
                    t.gone_when,
                    t.raw.samples,
                    t.raw.p50_us,
                    t.raw.p99_us,
                    t.raw.max_us,
                    t.check.p50_us
                );
            }
            Outcome::NotSupported(why) => {
                let _ = writeln!(out, "| {} | not supported here: {} | | | | | | | | |", row.case, cell(why));
            }
            Outcome::Error(e) => {
                let _ = writeln!(out, "| {} | error: {} | | | | | | | | |", row.case, cell(e));
            }
        }
    }
    out.push('\n');
    for (kind, why) in agent::NOT_REVERTED {
        let _ = writeln!(out, "Not measured: {kind} ({why}).\n");
    }
}

fn sampling_table(out: &mut String, s: &Sampling) {
    let _ = writeln!(
        out,
        "{} `sleep 600` children; one sweep reads every target's CPU time and RSS. chaos-agent refreshes only the \
         target pids through sysinfo, then checks each one's start time; the `/proc` baseline reads `stat` + \
         `statm` per pid (parsed, start time compared), the least a sampler reads; the ps baseline ({}) is one \
         process, spawn to exit. The three interleave, one warm-up round discarded; the agent's first sweep \
         (every target new) took {:.1} ms.\n\n\
         | method | processes | rounds | median ms/sweep | p90 ms/sweep | µs/process | ratio vs /proc reads | \
         ratio vs ps |\n|---|---:|---:|---:|---:|---:|---:|---:|",
        s.processes, s.ps_version, s.first_sweep_ms
    );
    let base = |m: Method| s.row(m).map(|r| r.p50_ms);
    for row in &s.rows {
        let vs = |m: Method| {
            if row.method == m {
                "baseline".to_string()
            } else {
                opt(base(m).and_then(|b| ratio(row.p50_ms, b)), 2)
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.2} | {:.1} | {} | {} |",
            row.method.label(),
            s.processes,
            row.rounds,
            row.p50_ms,
            row.p90_ms,
            row.us_per_process,
            vs(Method::ProcFiles),
            vs(Method::Ps)
        );
    }
    out.push('\n');
}
