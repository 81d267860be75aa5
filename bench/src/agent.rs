//! The agent, in-process through `chaos-agent`: the cost of sampling 1,000 target processes, and the revert
//! latency of each fault kind, each against baselines measured in the same run.
//!
//! - Sampling: `Sampler::sample_processes` over 1,000 `sleep 600` children, against (a) reading
//!   `/proc/PID/stat` and `/proc/PID/statm` of the same pids with `std::fs` (the least any sampler reads) and
//!   (b) one `ps -o pid=,rss=,pcpu= -p LIST` (what a script would run). Rounds interleave the three, after a
//!   warm-up round.
//! - Revert latency: time from the revert request to the fault being gone, against the raw undo of the same
//!   effect (for a pause, `kill(pid, SIGCONT)`) followed by the same "gone" check.
//!
//! # Adding a revert-latency case
//! Write a constructor `fn my_case() -> Result<RevertCase>` and add it with its name to [`CASES`]. The case keeps
//! what it needs in `_owned` (victim processes, files, a veth pair: released when the case drops) and gives three
//! closures: `apply` injects the fault through `chaos_agent` and returns its handle (any [`ActiveFault`]);
//! `apply_raw` injects the same effect without the agent (a syscall, `tc`, `nft`) and returns the raw undo;
//! `gone` says whether the effect is absent right now (it is polled without sleeping, so keep it cheap). Each
//! round applies, polls until `gone` is false, then times from the revert request until `gone` is true, for the
//! agent and the raw way alternately. A constructor that cannot run here (a program missing, not root) returns
//! `Err`: the row shows why and the other cases still run.

use std::any::Any;
use std::fmt::Write as _;
use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chaos_agent::faults::{ActiveFault, pause};
use chaos_agent::process::ProcessId;
use chaos_agent::sample::Sampler;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use crate::stats::{Summary, percentile, ratio};

/// The revert-latency cases, in report order: a name and the constructor of its [`RevertCase`].
const CASES: &[(&str, Constructor)] = &[("process pause", pause_case)];

/// Longest a fault may take to show or to go before the case fails.
const DEADLINE: Duration = Duration::from_secs(5);
/// Revert rounds discarded before the measured ones (first `/proc` reads, first tracing callsites).
const REVERT_WARMUP: usize = 5;

/// How big the agent benchmark runs.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Target processes sampled per sweep.
    pub processes: usize,
    /// Measured sweeps per method (after one warm-up round).
    pub sample_rounds: usize,
    /// Measured reverts per case, agent and raw each.
    pub revert_rounds: usize,
}

/// How one sweep over all targets was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `chaos_agent::sample::Sampler::sample_processes`.
    Agent,
    /// `/proc/PID/stat` + `/proc/PID/statm` per pid with `std::fs` (baseline).
    ProcFiles,
    /// One `ps -o pid=,rss=,pcpu= -p LIST` (baseline).
    Ps,
}

/// Sweep times of one method.
#[derive(Debug, Clone, Serialize)]
pub struct SampleRow {
    pub method: Method,
    pub rounds: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    /// Median sweep over the number of targets, µs.
    pub us_per_process: f64,
}

/// The sampling benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Sampling {
    pub processes: usize,
    /// The agent's first sweep (every target new to `sysinfo`), ms.
    pub first_sweep_ms: f64,
    pub rows: Vec<SampleRow>,
    pub ps_version: String,
}

impl Sampling {
    pub fn row(&self, method: Method) -> Option<&SampleRow> {
        self.rows.iter().find(|r| r.method == method)
    }
}

/// Revert latency of one fault kind, through the agent and the raw way.
#[derive(Debug, Clone, Serialize)]
pub struct RevertRow {
    pub case: &'static str,
    pub result: Result<RevertTimes, String>,
}

/// Time from the revert request to the fault being gone, µs.
#[derive(Debug, Clone, Serialize)]
pub struct RevertTimes {
    pub agent_how: &'static str,
    pub raw_how: &'static str,
    pub gone_when: &'static str,
    pub agent: Summary,
    pub raw: Summary,
}

/// The whole agent benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct AgentResult {
    pub sizes: Sizes,
    pub sampling: Result<Sampling, String>,
    pub revert: Vec<RevertRow>,
}

/// A fault kind whose revert latency is measured (see the module docs for how to add one).
pub struct RevertCase {
    /// How the agent reverts it, and the raw way (the baseline), for the report.
    agent_how: &'static str,
    raw_how: &'static str,
    /// What `gone` checks, for the report.
    gone_when: &'static str,
    apply: Apply,
    apply_raw: ApplyRaw,
    gone: Gone,
    /// Whatever the closures act on (victims, files), released when the case is dropped.
    _owned: Box<dyn Any>,
}

/// Sets up a case: spawns its victims, checks what it needs.
type Constructor = fn() -> Result<RevertCase>;
/// Injects the fault through the agent.
type Apply = Box<dyn FnMut() -> Result<Box<dyn ActiveFault>>>;
/// Injects the same effect without the agent; returns its undo.
type ApplyRaw = Box<dyn FnMut() -> Result<Undo>>;
type Undo = Box<dyn FnOnce() -> Result<()>>;
/// Whether the effect is absent now.
type Gone = Box<dyn Fn() -> Result<bool>>;

// === impl Sizes ===

impl Sizes {
    /// About 10 s in full, 3 s with `--quick` on 2 cores (spawning and reaping 1,000 processes takes 1–2 s).
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes { processes: 1000, sample_rounds: 10, revert_rounds: 200 }
        } else {
            Sizes { processes: 1000, sample_rounds: 40, revert_rounds: 1000 }
        }
    }
}

// === impl Method ===

impl Method {
    const ALL: [Method; 3] = [Method::Agent, Method::ProcFiles, Method::Ps];

    pub fn label(self) -> &'static str {
        match self {
            Method::Agent => "chaos-agent `Sampler::sample_processes`",
            Method::ProcFiles => "`/proc/PID/stat` + `statm` via std::fs (baseline)",
            Method::Ps => "`ps -o pid=,rss=,pcpu= -p LIST` (baseline)",
        }
    }
}

/// Runs both parts; a failing part is reported as an error and the other still runs.
pub fn run(sizes: &Sizes) -> AgentResult {
    eprintln!("agent: sampling {} processes, {} rounds", sizes.processes, sizes.sample_rounds);
    let sampling = sampling(sizes);
    match &sampling {
        Ok(s) => {
            for row in &s.rows {
                eprintln!("  {:?}: p50 {:.2} ms, p90 {:.2} ms per sweep", row.method, row.p50_ms, row.p90_ms);
            }
        }
        Err(e) => eprintln!("  error: {e:#}"),
    }
    let mut revert = Vec::new();
    for (name, case) in CASES {
        eprintln!("agent: revert latency of {name}, {} rounds", sizes.revert_rounds);
        let r = case().and_then(|mut case| revert_times(&mut case, sizes.revert_rounds));
        match &r {
            Ok(t) => eprintln!(
                "  agent p50 {:.1} µs, p99 {:.1} µs; raw p50 {:.1} µs, p99 {:.1} µs",
                t.agent.p50_us, t.agent.p99_us, t.raw.p50_us, t.raw.p99_us
            ),
            Err(e) => eprintln!("  error: {e:#}"),
        }
        revert.push(RevertRow { case: name, result: r.map_err(|e| format!("{e:#}")) });
    }
    AgentResult { sizes: sizes.clone(), sampling: sampling.map_err(|e| format!("{e:#}")), revert }
}

// === sampling ===

/// `sleep 600` children without pipes, killed and reaped on drop (also when the benchmark fails half-way).
struct Sleepers(Vec<Child>);

impl Sleepers {
    fn spawn(n: usize) -> Result<Sleepers> {
        let mut sleepers = Sleepers(Vec::with_capacity(n));
        for i in 0..n {
            let child = Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("spawning sleep child {} of {n}", i + 1))?;
            sleepers.0.push(child);
        }
        Ok(sleepers)
    }

    fn ids(&self) -> Result<Vec<ProcessId>> {
        self.0
            .iter()
            .map(|c| {
                let pid = i32::try_from(c.id()).context("pid out of range")?;
                ProcessId::of(pid).map_err(anyhow::Error::from)
            })
            .collect()
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        // Signal all before reaping any, so they exit in parallel.
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn sampling(sizes: &Sizes) -> Result<Sampling> {
    let ps_version = Command::new("ps")
        .arg("--version")
        .output()
        .context("running `ps --version` (the ps baseline needs procps)")?;
    let ps_version = String::from_utf8_lossy(&ps_version.stdout).trim().to_string();
    let n = sizes.processes;
    let spawn_start = Instant::now();
    let sleepers = Sleepers::spawn(n)?;
    let ids = sleepers.ids()?;
    eprintln!("  spawned {n} sleep children in {:.1} s", spawn_start.elapsed().as_secs_f64());
    let pid_list = ids.iter().map(|id| id.pid.to_string()).collect::<Vec<_>>().join(",");

    let mut sampler = Sampler::new();
    let t = Instant::now();
    let first = sampler.sample_processes(&ids);
    let first_sweep = t.elapsed();
    let first_alive = first.iter().filter(|s| s.alive).count();
    if first_alive != n {
        bail!("expected {n} live targets in the first sweep, found {first_alive}");
    }
    let mut sweep = |method: Method| -> Result<usize> {
        match method {
            Method::Agent => Ok(black_box(sampler.sample_processes(&ids)).iter().filter(|s| s.alive).count()),
            Method::ProcFiles => read_proc_files(&ids),
            Method::Ps => run_ps(&pid_list),
        }
    };
    let mut times: [Vec<Duration>; 3] = Default::default();
    // Round 0 is the warm-up; each round rotates which method goes first.
    for round in 0..=sizes.sample_rounds {
        for k in 0..Method::ALL.len() {
            let i = (round + k) % Method::ALL.len();
            let method = Method::ALL[i];
            let t = Instant::now();
            let seen = sweep(method)?;
            let elapsed = t.elapsed();
            if seen != n {
                bail!("{method:?} sweep: expected {n} live targets, found {seen}");
            }
            if round > 0 {
                times[i].push(elapsed);
            }
        }
    }
    drop(sleepers);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rows = Method::ALL
        .iter()
        .zip(times.iter_mut())
        .map(|(method, samples)| {
            samples.sort_unstable();
            let p50_ms = ms(percentile(samples, 50.0));
            SampleRow {
                method: *method,
                rounds: samples.len(),
                p50_ms,
                p90_ms: ms(percentile(samples, 90.0)),
                us_per_process: p50_ms * 1e3 / n as f64,
            }
        })
        .collect();
    Ok(Sampling { processes: n, first_sweep_ms: ms(first_sweep), rows, ps_version })
}

/// The least a sampler reads: CPU times and start time from `stat`, RSS from `statm`; counts live targets.
fn read_proc_files(ids: &[ProcessId]) -> Result<usize> {
    let mut alive = 0;
    for id in ids {
        let (Ok(stat), Ok(statm)) = (
            std::fs::read_to_string(format!("/proc/{}/stat", id.pid)),
            std::fs::read_to_string(format!("/proc/{}/statm", id.pid)),
        ) else {
            continue;
        };
        // Fields after the last ')': index 0 is field 3 (state), so field N is at N - 3.
        let fields: Vec<&str> =
            stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let (Some(utime), Some(stime), Some(start)) = (field(14), field(15), field(22)) else { continue };
        let rss_pages = statm.split_whitespace().nth(1).and_then(|f| f.parse::<u64>().ok());
        if start == id.start_time && rss_pages.is_some() {
            black_box((utime + stime, rss_pages));
            alive += 1;
        }
    }
    Ok(alive)
}

/// One `ps` over all targets; counts the processes it listed.
fn run_ps(pid_list: &str) -> Result<usize> {
    let out = Command::new("ps")
        .args(["-o", "pid=,rss=,pcpu=", "-p", pid_list])
        .stdin(Stdio::null())
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!("ps exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout.split(|b| *b == b'\n').filter(|line| !line.is_empty()).count())
}

// === revert latency ===

/// Pause: one `sleep` child stopped with SIGSTOP; gone once `/proc/PID/stat` no longer shows state `T`.
fn pause_case() -> Result<RevertCase> {
    let victim = Sleepers::spawn(1)?;
    let id = *victim.ids()?.first().context("no victim")?;
    let pid = Pid::from_raw(id.pid);
    Ok(RevertCase {
        agent_how: "`PauseHandle::revert()` (start-time check, then SIGCONT)",
        raw_how: "`kill(pid, SIGCONT)`",
        gone_when: "`/proc/PID/stat` state is not `T`",
        apply: Box::new(move || Ok(Box::new(pause(&[id], None)?) as Box<dyn ActiveFault>)),
        apply_raw: Box::new(move || {
            kill(pid, Signal::SIGSTOP).context("kill(SIGSTOP)")?;
            Ok(Box::new(move || kill(pid, Signal::SIGCONT).context("kill(SIGCONT)")) as Undo)
        }),
        gone: Box::new(move || Ok(proc_state(id.pid).context("the pause victim has gone")? != 'T')),
        _owned: Box::new(victim),
    })
}

/// The state letter of `/proc/PID/stat`; `None` once the process is gone.
fn proc_state(pid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

/// Polls `condition` without sleeping until it holds; fails after [`DEADLINE`].
fn spin_until(what: &str, mut condition: impl FnMut() -> Result<bool>) -> Result<()> {
    let end = Instant::now() + DEADLINE;
    while !condition()? {
        if Instant::now() >= end {
            bail!("{what}: expected within {} s, not seen", DEADLINE.as_secs());
        }
        std::hint::spin_loop();
    }
    Ok(())
}

/// Applies and reverts `rounds` times each way (after a warm-up), alternating which goes first.
fn revert_times(case: &mut RevertCase, rounds: usize) -> Result<RevertTimes> {
    let (mut agent, mut raw) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..REVERT_WARMUP + rounds {
        let agent_first = round % 2 == 0;
        for through_agent in [agent_first, !agent_first] {
            let elapsed = if through_agent {
                let handle = (case.apply)()?;
                spin_until("the fault to take effect", || Ok(!(case.gone)()?))?;
                let t = Instant::now();
                handle.revert()?;
                spin_until("the fault to be gone after the revert", &case.gone)?;
                t.elapsed()
            } else {
                let undo = (case.apply_raw)()?;
                spin_until("the raw fault to take effect", || Ok(!(case.gone)()?))?;
                let t = Instant::now();
                undo()?;
                spin_until("the raw fault to be gone after its undo", &case.gone)?;
                t.elapsed()
            };
            if round >= REVERT_WARMUP {
                if through_agent { agent.push(elapsed) } else { raw.push(elapsed) }
            }
        }
    }
    Ok(RevertTimes {
        agent_how: case.agent_how,
        raw_how: case.raw_how,
        gone_when: case.gone_when,
        agent: Summary::from_samples(&mut agent).context("no revert measured")?,
        raw: Summary::from_samples(&mut raw).context("no raw revert measured")?,
    })
}

// === report ===

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

/// The report section (Markdown), numbered after the others.
pub fn render(r: &AgentResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## 8. Agent: sampling {} processes, revert latency\n", r.sizes.processes);
    let _ = writeln!(out, "### Sampling target processes (CPU time and RSS of each)\n");
    match &r.sampling {
        Ok(s) => sampling_table(&mut out, s),
        Err(e) => {
            let _ = writeln!(out, "error: {e}\n");
        }
    }
    let _ = writeln!(out, "### Revert latency (revert request → fault gone)\n");
    let _ = writeln!(
        out,
        "One fault applied and reverted per round, through chaos-agent and the raw way alternately ({} warm-up \
         rounds discarded); after each revert request the \"gone\" check is polled without sleeping, so the \
         figures include one check (a `/proc` read).\n\n\
         | fault kind | reverted by | fault gone when | rounds | p50 µs | p99 µs | max µs | p50 ratio vs raw | \
         p99 ratio vs raw |\n|---|---|---|---:|---:|---:|---:|---:|---:|",
        REVERT_WARMUP
    );
    for row in &r.revert {
        match &row.result {
            Ok(t) => {
                let _ = writeln!(
                    out,
                    "| {} | chaos-agent: {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} |",
                    row.case,
                    t.agent_how,
                    t.gone_when,
                    t.agent.samples,
                    t.agent.p50_us,
                    t.agent.p99_us,
                    t.agent.max_us,
                    opt(ratio(t.agent.p50_us, t.raw.p50_us), 2),
                    opt(ratio(t.agent.p99_us, t.raw.p99_us), 2)
                );
                let _ = writeln!(
                    out,
                    "| {} | raw: {} | {} | {} | {:.1} | {:.1} | {:.1} | baseline | baseline |",
                    row.case, t.raw_how, t.gone_when, t.raw.samples, t.raw.p50_us, t.raw.p99_us, t.raw.max_us
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| {} | error: {e} | | | | | | | |", row.case);
            }
        }
    }
    out.push('\n');
    out
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
