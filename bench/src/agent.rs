//! The agent, in-process through `chaos-agent`: the cost of sampling 1,000 target processes, and the revert
//! latency of each fault kind, each against baselines measured in the same run.
//!
//! - Sampling: `Sampler::sample_processes` over 1,000 `sleep 600` children, against (a) reading
//!   `/proc/PID/stat` and `/proc/PID/statm` of the same pids with `std::fs` (the least any sampler reads) and
//!   (b) one `ps -o pid=,rss=,pcpu= -p LIST` (what a script would run). Rounds interleave the three, after a
//!   warm-up round.
//! - Revert latency: time from the revert request to the fault being gone, against the raw undo of the same
//!   effect (for a pause, `kill(pid, SIGCONT)`; for a stress worker, `kill(SIGKILL)` + `waitpid` of a child
//!   doing the same work; for a file, `remove_file`; for a table or qdisc, `nft delete table` or
//!   `tc qdisc del` by hand) followed by the same "gone" check. Faults through the agent are journalled in a
//!   temporary state directory, as an agent would; network faults live in a network namespace made for the
//!   case (`ip netns add`) and deleted with it, so the host's own network is never touched.
//!
//! # Adding a revert-latency case
//! Write a constructor `fn my_case(env: &Env) -> Result<RevertCase>` and add it with its name and [`Cost`]
//! (which sets its rounds) to [`CASES`]. [`Env`] has the journal, the probed network capabilities and a
//! temporary directory for files. The case keeps what it needs in `_owned` (victim processes, a namespace:
//! released when the case drops) and gives three closures: `apply` injects the fault through `chaos_agent` and
//! returns its handle (any [`ActiveFault`]); `apply_raw` injects the same effect without the agent (a syscall,
//! `tc`, `nft`) and returns the raw undo, which should own what it undoes so that dropping it unrun (a round
//! that failed half-way) still cleans up; `gone` says whether the effect is absent right now (it is polled
//! without sleeping). Each round applies, polls until `gone` is false, then times from the revert request
//! until `gone` is true, for the agent and the raw way alternately, then times one more `gone` (the check's
//! own cost, reported beside). A constructor that cannot run here returns `Err`: a [`NotSupported`] error
//! makes the row "not supported here: why", any other an error row; the other cases still run.

use std::any::Any;
use std::cell::RefCell;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use chaos_agent::AgentError;
use chaos_agent::faults::{ActiveFault, FaultKind, pause};
use chaos_agent::journal::Journal;
use chaos_agent::net::{Bandwidth, Capabilities, Filter, Latency, Loss, Partition, QDISC_HANDLE};
use chaos_agent::process::ProcessId;
use chaos_agent::sample::Sampler;
use chaos_agent::stress::{CpuStress, DiskFill, IoStress, MemoryStress, Size, StressHandle};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use crate::stats::{Summary, percentile};

/// The revert-latency cases, in report order: the fault kind, how costly a round is, its constructor.
const CASES: &[(&str, Cost, Constructor)] = &[
    ("process-pause", Cost::Signal, pause_case),
    ("cpu-stress", Cost::Process, cpu_case),
    ("memory-stress", Cost::Process, memory_case),
    ("disk-fill", Cost::Process, disk_fill_case),
    ("io-stress", Cost::Process, io_case),
    ("network-partition", Cost::Command, partition_case),
    ("network-loss", Cost::Command, loss_case),
    ("network-bandwidth", Cost::Command, bandwidth_case),
    ("network-latency", Cost::Command, latency_case),
];

/// Fault kinds with no revert to time, and why (for the report).
pub const NOT_REVERTED: &[(&str, &str)] =
    &[("process-kill", "a kill has no revert: the system's own recovery is what an experiment measures")];

/// Longest a fault may take to show or to go before the case fails.
const DEADLINE: Duration = Duration::from_secs(5);

/// Memory held by the memory-stress fault and its baseline child.
const MEMORY_BYTES: u64 = 64 << 20;
/// Size of the disk-fill file and of its baseline file.
const FILL_BYTES: u64 = 16 << 20;
/// IO stress (and its baseline child): 64 KiB blocks, each `fdatasync`ed, over a 1 MiB file.
const IO_BLOCK: u64 = 64 << 10;
const IO_FILE: u64 = 1 << 20;
/// A TEST-NET-3 address (RFC 5737): the nftables faults match only it, inside their own namespace anyway.
pub const TEST_NET_HOST: &str = "203.0.113.1";
/// The table of the raw nftables baseline.
const RAW_TABLE: &str = "chaos_bench_raw";

/// How big the agent benchmark runs.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Target processes sampled per sweep.
    pub processes: usize,
    /// Measured sweeps per method (after one warm-up round).
    pub sample_rounds: usize,
    /// Measured reverts per case, agent and raw each, by [`Cost`].
    pub revert_rounds: RevertRounds,
}

/// Measured reverts per case, agent and raw each, by how costly a round is.
#[derive(Debug, Clone, Serialize)]
pub struct RevertRounds {
    pub signal: usize,
    pub process: usize,
    pub command: usize,
}

/// How costly one revert round of a case is, which sets how many rounds it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cost {
    /// A signal and a `/proc` read: tens of µs.
    Signal,
    /// Forked workers, files, journal fsyncs: milliseconds.
    Process,
    /// `ip netns exec` + `nft` or `tc` processes: tens of milliseconds.
    Command,
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
    pub cost: Cost,
    pub outcome: Outcome,
}

/// What became of one revert-latency case.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Measured(RevertTimes),
    /// This host lacks what the fault needs (a kernel feature, a program); why.
    NotSupported(String),
    Error(String),
}

/// Time from the revert request to the fault being gone, µs.
#[derive(Debug, Clone, Serialize)]
pub struct RevertTimes {
    pub agent_how: &'static str,
    pub raw_how: &'static str,
    pub gone_when: &'static str,
    /// Rounds discarded before the measured ones.
    pub warmup: usize,
    pub agent: Summary,
    pub raw: Summary,
    /// One "gone" check alone, timed right after each measured revert (every figure includes at least one).
    pub check: Summary,
}

/// The whole agent benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct AgentResult {
    pub sizes: Sizes,
    pub sampling: Result<Sampling, String>,
    pub revert: Vec<RevertRow>,
    /// Versions of the programs the network faults and their baselines run (`nft`, `ip`).
    pub tools: Vec<(String, String)>,
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
    /// Whatever the closures act on (victims, a namespace), released when the case is dropped.
    _owned: Box<dyn Any>,
}

/// What every case may use: the journal the agent's faults are recorded in, the network capabilities, and a
/// temporary directory (the journal's state directory and the files of disk faults), deleted on drop.
pub struct Env {
    journal: Journal,
    caps: Capabilities,
    /// Where disk-fill and io-stress put their files (and the baselines theirs).
    files: PathBuf,
    /// The bench binary, run as the baseline's worker child (`--hold-memory`, `--write-loop`).
    exe: PathBuf,
    /// Last field: deleted after the journal is let go.
    _dir: TempDir,
}

/// A case that cannot run on this host, and why: reported as "not supported here", not as an error.
#[derive(Debug)]
pub struct NotSupported(String);

/// Sets up a case: spawns its victims, checks what it needs.
type Constructor = fn(&Env) -> Result<RevertCase>;
/// Injects the fault through the agent.
type Apply = Box<dyn FnMut() -> Result<Box<dyn ActiveFault>>>;
/// Injects the same effect without the agent; returns its undo.
type ApplyRaw = Box<dyn FnMut() -> Result<Undo>>;
type Undo = Box<dyn FnOnce() -> Result<()>>;
/// Whether the effect is absent now.
type Gone = Box<dyn Fn() -> Result<bool>>;

// === impl Sizes ===

impl Sizes {
    /// About 20 s in full, 7 s with `--quick` on 2 cores (spawning and reaping 1,000 processes takes 1–2 s; a
    /// network round runs four to six `ip netns exec` commands, ~60 ms).
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                processes: 1000,
                sample_rounds: 10,
                revert_rounds: RevertRounds { signal: 200, process: 10, command: 10 },
            }
        } else {
            Sizes {
                processes: 1000,
                sample_rounds: 40,
                revert_rounds: RevertRounds { signal: 1000, process: 50, command: 30 },
            }
        }
    }

    fn rounds(&self, cost: Cost) -> usize {
        match cost {
            Cost::Signal => self.revert_rounds.signal,
            Cost::Process => self.revert_rounds.process,
            Cost::Command => self.revert_rounds.command,
        }
    }
}

// === impl Cost ===

impl Cost {
    /// Rounds discarded first (first `/proc` reads, first forks, page cache of the programs run).
    pub fn warmup(self) -> usize {
        match self {
            Cost::Signal => 5,
            Cost::Process | Cost::Command => 2,
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

// === impl NotSupported ===

impl std::fmt::Display for NotSupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotSupported {}

/// Runs both parts; a failing part or case is reported as an error and the others still run.
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
    let env = Env::new();
    if let Err(e) = &env {
        eprintln!("agent: cannot set up the revert-latency cases: {e:#}");
    }
    let mut revert = Vec::new();
    for &(name, cost, constructor) in CASES {
        let rounds = sizes.rounds(cost);
        eprintln!("agent: revert latency of {name}, {rounds} rounds");
        let started = Instant::now();
        let measured = match &env {
            Ok(env) => {
                constructor(env).and_then(|mut case| revert_times(&mut case, env, rounds, cost.warmup()))
            }
            Err(e) => Err(anyhow!("setting up: {e:#}")),
        };
        let outcome = match measured {
            Ok(t) => {
                eprintln!(
                    "  agent p50 {:.1} µs, p99 {:.1} µs; raw p50 {:.1} µs, p99 {:.1} µs; one check p50 {:.1} µs ({:.1} s)",
                    t.agent.p50_us,
                    t.agent.p99_us,
                    t.raw.p50_us,
                    t.raw.p99_us,
                    t.check.p50_us,
                    started.elapsed().as_secs_f64()
                );
                Outcome::Measured(t)
            }
            Err(e) => match e.downcast_ref::<NotSupported>() {
                Some(why) => {
                    eprintln!("  not supported here: {why}");
                    Outcome::NotSupported(why.0.clone())
                }
                None => {
                    eprintln!("  error: {e:#}");
                    Outcome::Error(format!("{e:#}"))
                }
            },
        };
        revert.push(RevertRow { case: name, cost, outcome });
    }
    drop(env);
    AgentResult {
        sizes: sizes.clone(),
        sampling: sampling.map_err(|e| format!("{e:#}")),
        revert,
        tools: tool_versions(),
    }
}

/// The first line of `nft --version` and `ip -V`, for the report; absent programs are left out.
fn tool_versions() -> Vec<(String, String)> {
    [("nft", "--version"), ("ip", "-V")]
        .into_iter()
        .filter_map(|(program, flag)| {
            let out = Command::new(program).arg(flag).stdin(Stdio::null()).output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            Some((program.to_string(), text.lines().next()?.trim().to_string()))
        })
        .collect()
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

// === revert latency: the environment ===

/// A temporary directory, deleted with everything in it on drop (also used by the fleet group).
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        // A leftover of an earlier run that had this pid and was killed: ours now.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not delete {}: {e}", self.0.display());
        }
    }
}

impl Env {
    fn new() -> Result<Env> {
        sweep_leftovers();
        let dir = TempDir::new("chaos-bench-agent")?;
        let files = dir.0.join("files");
        std::fs::create_dir(&files).with_context(|| format!("creating {}", files.display()))?;
        let journal = Journal::open(dir.0.join("state")).context("opening the journal")?;
        let exe = std::env::current_exe().context("finding the chaos-bench binary")?;
        Ok(Env { journal, caps: Capabilities::probe(), files, exe, _dir: dir })
    }

    /// `Err(NotSupported)` when this host lacks what `kind` needs in a named namespace.
    fn require(&self, kind: FaultKind) -> Result<()> {
        match self.caps.require(kind) {
            Ok(()) => {}
            Err(AgentError::Unsupported { missing, .. }) => return Err(NotSupported(missing).into()),
            Err(e) => return Err(e.into()),
        }
        match self.caps.ip.reason() {
            Some(why) => Err(NotSupported(format!("the namespace needs `ip netns`: {why}")).into()),
            None => Ok(()),
        }
    }
}

/// Deletes what earlier runs that were killed (not failed: those clean up) left behind: namespaces
/// `chaos-bench-PID-N` and directories `chaos-bench-agent-PID` whose PID no longer runs.
fn sweep_leftovers() {
    let dead = |pid: &str| pid.parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    for name in names(Path::new("/run/netns")) {
        let pid = name.strip_prefix("chaos-bench-").and_then(|rest| rest.split_once('-')).map(|(pid, _)| pid);
        if pid.is_some_and(dead) {
            eprintln!("agent: deleting network namespace {name}, left by a run that was killed");
            if let Err(e) = command("ip", &["netns", "delete", &name], None) {
                eprintln!("warning: {e:#}");
            }
        }
    }
    let tmp = std::env::temp_dir();
    for name in names(&tmp) {
        if name.strip_prefix("chaos-bench-agent-").is_some_and(dead) {
            eprintln!("agent: deleting {}, left by a run that was killed", tmp.join(&name).display());
            let _ = std::fs::remove_dir_all(tmp.join(&name));
        }
    }
}

/// A network namespace made for one case (`ip netns add`, loopback up), deleted on drop with everything in it
/// (tables, qdiscs).
struct Netns(String);

impl Netns {
    fn add() -> Result<Netns> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("chaos-bench-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        command("ip", &["netns", "add", &name], None)?;
        let ns = Netns(name);
        command("ip", &["-n", &ns.0, "link", "set", "lo", "up"], None)?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = command("ip", &["netns", "delete", &self.0], None) {
            eprintln!("warning: could not delete network namespace {}: {e:#}", self.0);
        }
    }
}

/// Runs `program args` (with `stdin`), returning stdout, or an error with the command, status and stderr.
fn command(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let shown = || format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", shown()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).with_context(|| format!("writing to {}", shown()))?;
    }
    let out = child.wait_with_output().with_context(|| format!("running {}", shown()))?;
    if !out.status.success() {
        bail!("{} exited with {}: {}", shown(), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args` inside the named namespace, as the agent does (`ip netns exec NS program args`).
fn in_netns(ns: &str, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    command("ip", &all, stdin)
}

// === revert latency: the cases ===

/// Pause: one `sleep` child stopped with SIGSTOP; gone once `/proc/PID/stat` no longer shows state `T`.
fn pause_case(_env: &Env) -> Result<RevertCase> {
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

const STRESS_REVERT: &str = "`StressHandle::revert()`: start-time check, SIGKILL, `waitpid` polled (sleeps from \
                             200 µs), then the journal record deleted and its directory fsynced";

/// CPU stress, 1 worker at 100%; baseline: a `sh` busy loop.
fn cpu_case(env: &Env) -> Result<RevertCase> {
    let (journal, spec) = (env.journal.clone(), CpuStress { workers: Some(1), load: 100 });
    Ok(stress_case(
        STRESS_REVERT,
        "`kill(SIGKILL)` + `waitpid` of a `sh -c 'while :; do :; done'` child",
        "the worker's pid is not in `/proc` (reaped; pid + start time compared)",
        (1, 0),
        move || spec.apply(&journal),
        || {
            let child = Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawning sh")?;
            RawChild::adopt(child, None)
        },
    ))
}

/// Memory stress, 64 MiB; baseline: a child (this binary, `--hold-memory`) holding 64 MiB it has touched.
fn memory_case(env: &Env) -> Result<RevertCase> {
    let (journal, spec) = (env.journal.clone(), MemoryStress { size: Size::Bytes(MEMORY_BYTES) });
    let exe = env.exe.clone();
    Ok(stress_case(
        STRESS_REVERT,
        "`kill(SIGKILL)` + `waitpid` of a child holding 64 MiB it has touched (`chaos-bench --hold-memory`)",
        "the worker's pid is not in `/proc` (reaped)",
        (1, 0),
        move || spec.apply(&journal),
        move || RawChild::helper(&exe, &["--hold-memory", &MEMORY_BYTES.to_string()], None),
    ))
}

/// Disk fill, 16 MiB in the temporary directory; baseline: `remove_file` of a 16 MiB fallocated file.
fn disk_fill_case(env: &Env) -> Result<RevertCase> {
    let journal = env.journal.clone();
    let spec = DiskFill::new(env.files.clone(), Size::Bytes(FILL_BYTES));
    let raw_path = env.files.join("raw-fill.bin");
    Ok(stress_case(
        "`StressHandle::revert()`: `remove_file`, then the journal record deleted and its directory fsynced",
        "`std::fs::remove_file` of a 16 MiB file made the same way (`fallocate`, fsync)",
        "the file does not exist",
        (0, 1),
        move || spec.apply(&journal),
        move || {
            let guard = RawFile(Some(raw_path.clone()));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&raw_path)
                .with_context(|| format!("creating {}", raw_path.display()))?;
            nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, FILL_BYTES as i64)
                .with_context(|| format!("fallocate {}", raw_path.display()))?;
            file.sync_all().with_context(|| format!("fsync {}", raw_path.display()))?;
            let traces = Traces { workers: Vec::new(), files: vec![raw_path.clone()] };
            Ok((traces, Box::new(move || guard.undo()) as Undo))
        },
    ))
}

/// IO stress, 1 worker writing 64 KiB blocks over a 1 MiB file; baseline: a child (this binary, `--write-loop`)
/// doing the same, killed and its file deleted.
fn io_case(env: &Env) -> Result<RevertCase> {
    let journal = env.journal.clone();
    let spec = IoStress {
        path: env.files.clone(),
        workers: 1,
        block_size: Size::Bytes(IO_BLOCK),
        file_size: Size::Bytes(IO_FILE),
    };
    let (exe, raw_path) = (env.exe.clone(), env.files.join("raw-io.bin"));
    Ok(stress_case(
        STRESS_REVERT,
        "`kill(SIGKILL)` + `waitpid` of a child writing 64 KiB blocks + `fdatasync` over a 1 MiB file \
         (`chaos-bench --write-loop`), then `remove_file`",
        "the worker is reaped and its file does not exist",
        (1, 1),
        move || spec.apply(&journal),
        move || {
            let path = raw_path.to_string_lossy().into_owned();
            RawChild::helper(&exe, &["--write-loop", &path], Some(raw_path.clone()))
        },
    ))
}

/// Network partition (nftables table dropping a TEST-NET address both ways) in a namespace of its own.
fn partition_case(env: &Env) -> Result<RevertCase> {
    env.require(FaultKind::NetworkPartition)?;
    let ns = Netns::add()?;
    let spec = Partition { netns: Some(ns.0.clone()), filter: test_net_filter() };
    let (journal, caps) = (env.journal.clone(), env.caps.clone());
    Ok(nft_case(ns, None, move || spec.apply(&journal, &caps)))
}

/// Network loss (30%, nftables `numgen`), otherwise as the partition.
fn loss_case(env: &Env) -> Result<RevertCase> {
    env.require(FaultKind::NetworkLoss)?;
    let ns = Netns::add()?;
    let spec = Loss { netns: Some(ns.0.clone()), filter: test_net_filter(), percent: 30.0 };
    let (journal, caps) = (env.journal.clone(), env.caps.clone());
    Ok(nft_case(ns, Some(3000), move || spec.apply(&journal, &caps)))
}

/// Network bandwidth (tbf 1 mbit) on the loopback of a namespace of its own.
fn bandwidth_case(env: &Env) -> Result<RevertCase> {
    env.require(FaultKind::NetworkBandwidth)?;
    let ns = Netns::add()?;
    let spec = Bandwidth {
        netns: Some(ns.0.clone()),
        device: "lo".into(),
        rate: "1mbit".into(),
        burst_bytes: None,
        latency_ms: None,
    };
    let (journal, caps) = (env.journal.clone(), env.caps.clone());
    // What the agent runs for this spec (default burst: 10 ms of the rate, at least 16 KiB; latency 50 ms).
    let raw = ["tbf", "rate", "1000000bit", "burst", "16384", "latency", "50ms"];
    Ok(qdisc_case(ns, &raw, move || spec.apply(&journal, &caps)))
}

/// Network latency (netem 100 ms) on the loopback of a namespace of its own, where the kernel has netem.
fn latency_case(env: &Env) -> Result<RevertCase> {
    env.require(FaultKind::NetworkLatency)?;
    let ns = Netns::add()?;
    let spec = Latency {
        netns: Some(ns.0.clone()),
        device: "lo".into(),
        delay_ms: 100,
        jitter_ms: 0,
        correlation: 0.0,
    };
    let (journal, caps) = (env.journal.clone(), env.caps.clone());
    let raw = ["netem", "limit", "100000", "delay", "100ms"];
    Ok(qdisc_case(ns, &raw, move || spec.apply(&journal, &caps)))
}

fn test_net_filter() -> Filter {
    Filter { hosts: vec![TEST_NET_HOST.into()], ..Filter::default() }
}

/// An nftables case: the agent's table against one loaded by hand from the same script (`share` in 0.01 %
/// for loss), each deleted by `nft delete table`; gone once the namespace lists no table.
fn nft_case(
    ns: Netns,
    share: Option<u32>,
    mut apply: impl FnMut() -> Result<chaos_agent::net::NetHandle, AgentError> + 'static,
) -> RevertCase {
    let name = ns.0.clone();
    let raw_name = name.clone();
    let script = raw_nft_script(share);
    RevertCase {
        agent_how: "`NetHandle::revert()`: `ip netns exec NS nft delete table inet T`, then the journal record \
                    deleted and its directory fsynced",
        raw_how: "`ip netns exec NS nft delete table inet T` on a table loaded by hand from the same script",
        gone_when: "`ip netns exec NS nft list tables` lists no table",
        apply: Box::new(move || Ok(Box::new(apply()?) as Box<dyn ActiveFault>)),
        apply_raw: Box::new(move || {
            in_netns(&raw_name, "nft", &["-f", "-"], Some(&script))?;
            let ns = raw_name.clone();
            Ok(
                Box::new(move || {
                    in_netns(&ns, "nft", &["delete", "table", "inet", RAW_TABLE], None).map(drop)
                }) as Undo,
            )
        }),
        gone: Box::new(move || {
            let tables = in_netns(&name, "nft", &["list", "tables"], None)?;
            Ok(!tables.lines().any(|line| line.trim_start().starts_with("table ")))
        }),
        _owned: Box::new(ns),
    }
}

/// The script the agent loads for [`test_net_filter`] (both directions), under the raw table's name.
fn raw_nft_script(share: Option<u32>) -> String {
    let verdict = match share {
        Some(n) => format!("numgen random mod 10000 < {n} counter drop"),
        None => "counter drop".to_string(),
    };
    let mut script = format!("create table inet {RAW_TABLE}\n");
    for chain in ["input", "output"] {
        script.push_str(&format!(
            "add chain inet {RAW_TABLE} {chain} {{ type filter hook {chain} priority -150; policy accept; }}\n"
        ));
    }
    script.push_str(&format!(
        "add rule inet {RAW_TABLE} input iifname != \"lo\" ip saddr {{ {TEST_NET_HOST} }} {verdict}\n"
    ));
    script.push_str(&format!(
        "add rule inet {RAW_TABLE} output oifname != \"lo\" ip daddr {{ {TEST_NET_HOST} }} {verdict}\n"
    ));
    script
}

/// A qdisc case on the namespace's `lo`: the agent's root qdisc against the same one added by hand (handle
/// `cafe:` both), deleted by `tc qdisc del`; gone once `tc qdisc show` no longer shows the handle.
fn qdisc_case(
    ns: Netns,
    qdisc: &[&str],
    mut apply: impl FnMut() -> Result<chaos_agent::net::NetHandle, AgentError> + 'static,
) -> RevertCase {
    let name = ns.0.clone();
    let raw_name = name.clone();
    let mut add = vec!["qdisc", "add", "dev", "lo", "root", "handle", QDISC_HANDLE];
    add.extend_from_slice(qdisc);
    let add: Vec<String> = add.into_iter().map(str::to_string).collect();
    RevertCase {
        agent_how: "`NetHandle::revert()`: `tc qdisc show` (still ours?), `tc qdisc del ... handle cafe:`, both \
                    through `ip netns exec NS`, then the journal record deleted and its directory fsynced",
        raw_how: "`ip netns exec NS tc qdisc del dev lo root` on the same qdisc added by hand",
        gone_when: "`ip netns exec NS tc qdisc show dev lo root` shows no `cafe:`",
        apply: Box::new(move || Ok(Box::new(apply()?) as Box<dyn ActiveFault>)),
        apply_raw: Box::new(move || {
            let args: Vec<&str> = add.iter().map(String::as_str).collect();
            in_netns(&raw_name, "tc", &args, None)?;
            let ns = raw_name.clone();
            Ok(Box::new(move || in_netns(&ns, "tc", &["qdisc", "del", "dev", "lo", "root"], None).map(drop))
                as Undo)
        }),
        gone: Box::new(move || {
            let shown = in_netns(&name, "tc", &["qdisc", "show", "dev", "lo", "root"], None)?;
            Ok(!shown.contains(QDISC_HANDLE))
        }),
        _owned: Box::new(ns),
    }
}

// === revert latency: stress faults and their baselines ===

/// What a stress fault (or its baseline) put on the host: worker processes and files.
#[derive(Debug, Clone, Default)]
struct Traces {
    workers: Vec<ProcessId>,
    files: Vec<PathBuf>,
}

impl Traces {
    /// Every worker reaped (its pid gone from `/proc`, or someone else's now) and every file gone.
    fn gone(&self) -> Result<bool> {
        for worker in &self.workers {
            if proc_start_time(worker.pid) == Some(worker.start_time) {
                return Ok(false);
            }
        }
        for file in &self.files {
            match std::fs::symlink_metadata(file) {
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("checking {}", file.display())),
            }
        }
        Ok(true)
    }
}

/// A stress case: the closures share what the last apply left, for `gone`. `expect` is the number of workers
/// and files the agent's fault must have, so that `gone` checks something.
fn stress_case(
    agent_how: &'static str,
    raw_how: &'static str,
    gone_when: &'static str,
    expect: (usize, usize),
    mut apply: impl FnMut() -> Result<StressHandle, AgentError> + 'static,
    mut apply_raw: impl FnMut() -> Result<(Traces, Undo)> + 'static,
) -> RevertCase {
    let current = Rc::new(RefCell::new(Traces::default()));
    let (for_agent, for_raw, for_gone) = (current.clone(), current.clone(), current);
    RevertCase {
        agent_how,
        raw_how,
        gone_when,
        apply: Box::new(move || {
            let handle = apply()?;
            let traces = Traces { workers: handle.workers().to_vec(), files: handle.files().to_vec() };
            if (traces.workers.len(), traces.files.len()) != expect {
                bail!(
                    "expected {} worker(s) and {} file(s), the fault has {} and {}",
                    expect.0,
                    expect.1,
                    traces.workers.len(),
                    traces.files.len()
                );
            }
            *for_agent.borrow_mut() = traces;
            Ok(Box::new(handle) as Box<dyn ActiveFault>)
        }),
        apply_raw: Box::new(move || {
            let (traces, undo) = apply_raw()?;
            *for_raw.borrow_mut() = traces;
            Ok(undo)
        }),
        gone: Box::new(move || for_gone.borrow().gone()),
        _owned: Box::new(()),
    }
}

/// A baseline worker child: SIGKILLed and reaped (and its file deleted) by `undo`, or on drop when a round
/// failed before its undo ran.
struct RawChild {
    child: Child,
    reaped: bool,
    file: RawFile,
}

impl RawChild {
    fn adopt(child: Child, file: Option<PathBuf>) -> Result<(Traces, Undo)> {
        let raw = RawChild { child, reaped: false, file: RawFile(file) };
        let pid = i32::try_from(raw.child.id()).context("pid out of range")?;
        let id = ProcessId::of(pid)?;
        let traces = Traces { workers: vec![id], files: raw.file.0.iter().cloned().collect() };
        Ok((traces, Box::new(move || raw.undo())))
    }

    /// This binary as a worker (`args` one of the hidden child modes), once it says it is at work.
    fn helper(exe: &Path, args: &[&str], file: Option<PathBuf>) -> Result<(Traces, Undo)> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {} {}", exe.display(), args.join(" ")))?;
        let stdout = child.stdout.take();
        // Owned before the wait: if the child never gets ready, dropping this kills it and deletes the file.
        let (traces, undo) = RawChild::adopt(child, file)?;
        let mut line = String::new();
        if let Some(stdout) = stdout {
            BufReader::new(stdout).read_line(&mut line).context("waiting for the baseline child")?;
        }
        if line.trim() != "ready" {
            bail!("the baseline child ({}) exited before it was ready", args.join(" "));
        }
        Ok((traces, undo))
    }

    fn undo(mut self) -> Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).context("pid out of range")?);
        kill(pid, Signal::SIGKILL).context("kill(SIGKILL)")?;
        self.child.wait().context("waitpid")?;
        self.reaped = true;
        std::mem::take(&mut self.file).undo()
    }
}

impl Drop for RawChild {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A baseline file, deleted by `undo`, or on drop.
#[derive(Default)]
struct RawFile(Option<PathBuf>);

impl RawFile {
    fn undo(mut self) -> Result<()> {
        match self.0.take() {
            Some(path) => std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display())),
            None => Ok(()),
        }
    }
}

impl Drop for RawFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Hidden child mode `--hold-memory BYTES`: touch `bytes` of memory, say `ready`, hold it until stdin closes.
pub fn hold_memory(bytes: usize) -> Result<()> {
    exit_when_stdin_closes()?;
    let mut held = vec![0u8; bytes];
    for byte in held.iter_mut().step_by(4096) {
        *byte = 1;
    }
    black_box(&mut held);
    say_ready()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
        black_box(&held);
    }
}

/// Hidden child mode `--write-loop FILE`: what an IO stress worker does (64 KiB blocks of random bytes with
/// `pwrite` + `fdatasync`, wrapping at 1 MiB); says `ready` after the first block, stops when stdin closes.
pub fn write_loop(path: &Path) -> Result<()> {
    exit_when_stdin_closes()?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // xorshift: bytes no filesystem can compress, without a dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let block: Vec<u8> = (0..IO_BLOCK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut offset = 0;
    let mut ready = false;
    loop {
        file.write_all_at(&block, offset).with_context(|| format!("writing {}", path.display()))?;
        file.sync_data().with_context(|| format!("fdatasync {}", path.display()))?;
        if !ready {
            say_ready()?;
            ready = true;
        }
        offset += IO_BLOCK;
        if offset + IO_BLOCK > IO_FILE {
            offset = 0;
        }
    }
}

/// Exits the process once stdin reaches its end: the benchmark closed it, or died.
fn exit_when_stdin_closes() -> Result<()> {
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(|| {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            std::process::exit(0);
        })
        .context("starting the stdin watch")?;
    Ok(())
}

fn say_ready() -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(b"ready\n")?;
    stdout.flush()?;
    Ok(())
}

// === revert latency: measuring ===

/// The state letter of `/proc/PID/stat`; `None` once the process is gone.
fn proc_state(pid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

/// Field 22 of `/proc/PID/stat` (start time); `None` once the process is reaped.
fn proc_start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the last ')', index 0 is field 3.
    text.rsplit_once(')')?.1.split_whitespace().nth(22 - 3)?.parse().ok()
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

/// Applies and reverts `rounds` times each way (after `warmup` rounds), alternating which goes first; then
/// checks that the journal holds no record of the case any more.
fn revert_times(case: &mut RevertCase, env: &Env, rounds: usize, warmup: usize) -> Result<RevertTimes> {
    let records_before = env.journal.records().0.len();
    let (mut agent, mut raw) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let mut checks = Vec::with_capacity(2 * rounds);
    for round in 0..warmup + rounds {
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
            let t = Instant::now();
            if !(case.gone)()? {
                bail!("the fault came back after it was gone");
            }
            let check = t.elapsed();
            if round >= warmup {
                if through_agent {
                    agent.push(elapsed)
                } else {
                    raw.push(elapsed)
                }
                checks.push(check);
            }
        }
    }
    let left = env.journal.records().0.len().saturating_sub(records_before);
    if left > 0 {
        bail!("the journal still holds {left} record(s) of this case after every fault was reverted");
    }
    Ok(RevertTimes {
        agent_how: case.agent_how,
        raw_how: case.raw_how,
        gone_when: case.gone_when,
        warmup,
        agent: Summary::from_samples(&mut agent).context("no revert measured")?,
        raw: Summary::from_samples(&mut raw).context("no raw revert measured")?,
        check: Summary::from_samples(&mut checks).context("no check measured")?,
    })
}
