//! [`HostAgent`] against real processes, files and workers: leases that revert with nobody calling, renewals,
//! `revert_all` and the last handle's drop reverting everything, the undo journal replayed after a killed
//! owner, policy refusals that leave nothing behind, the policy file and fault specs as people write them, and
//! a missing network capability refused by name.

// Helpers panic on setup failure like the tests that call them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chaos_agent::faults::FaultKind;
use chaos_agent::host::HostAgent;
use chaos_agent::journal;
use chaos_agent::net::{Bandwidth, Direction, Filter, Latency, Loss, Partition, Protocol};
use chaos_agent::policy::{AgentPolicy, PodRules, ProcessRules, StressLimits};
use chaos_agent::process::ProcessSelector;
use chaos_agent::spec::{CountSpec, FaultSpec};
use chaos_agent::stress::{CpuStress, DiskFill, IoStress, MIB, MemoryStress, Size};
use chaos_agent::{AgentError, Count};
use common::{TempDir, Victim, is_running, is_stopped, wait_until, wait_until_async};

/// Every agent here chooses with the same seed (the selections are by pid, so it does not matter which).
const SEED: u64 = 7;

/// A lease long enough that it never expires during a test.
const LONG: Duration = Duration::from_secs(30);

/// A state directory and a data directory (under the temp dir, so inside the default `fill_paths`) of their
/// own, removed when dropped.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new();
        std::fs::create_dir(dir.path.join("data")).unwrap();
        Fixture { dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.path.join("state")
    }

    fn data(&self) -> PathBuf {
        self.dir.path.join("data")
    }

    /// An agent on this state directory, which has nothing to replay.
    fn start(&self, policy: AgentPolicy) -> HostAgent {
        let (agent, replay) = HostAgent::start(self.state(), policy, SEED).unwrap();
        assert!(
            replay.reverted.is_empty() && replay.failed.is_empty() && replay.live.is_empty(),
            "a fresh state directory has nothing to replay: {replay:?}"
        );
        agent
    }

    /// How many undo records the journal holds.
    fn records(&self) -> usize {
        let (records, unreadable) = journal::list(self.state());
        assert!(unreadable.is_empty(), "{unreadable:?}");
        records.len()
    }

    fn data_files(&self) -> Vec<String> {
        files_in(&self.data())
    }
}

/// The names of the files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Tests that start stress workers hold this, so a test counting this process's workers sees only its own. A
/// tokio mutex: async tests hold it across awaits, the others take it with `blocking_lock`.
static WORKERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The live stress workers (`chaos-cpu`, `chaos-mem`, `chaos-io`) this test process has started.
fn own_workers() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut workers = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let mut rest = stat[close + 1..].split_whitespace();
        let (state, ppid) = (rest.next(), rest.next().and_then(|p| p.parse::<i32>().ok()));
        if ["chaos-cpu", "chaos-mem", "chaos-io"].contains(&comm) && ppid == Some(me) && state != Some("Z") {
            workers.push(pid);
        }
    }
    workers
}

fn pause(pid: i32) -> FaultSpec {
    FaultSpec::ProcessPause {
        target: ProcessSelector { pid: Some(pid), ..ProcessSelector::default() },
        count: CountSpec(Count::Exactly(1)),
    }
}

fn fill(path: impl Into<PathBuf>, size: Size) -> FaultSpec {
    FaultSpec::DiskFill(DiskFill::new(path, size))
}

fn cpu(workers: u32, load: u8) -> FaultSpec {
    FaultSpec::CpuStress(CpuStress { workers: Some(workers), load })
}

/// The fill file an applied disk fill names in its description (`filled /path`).
fn filled(description: &str) -> PathBuf {
    PathBuf::from(description.strip_prefix("filled ").unwrap_or_else(|| panic!("a fill: {description}")))
}

fn active_ids(agent: &HostAgent) -> Vec<String> {
    agent.active().into_iter().map(|info| info.id).collect()
}

// === leases ===

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_reverts_a_pause_and_a_fill_with_no_call() {
    let fixture = Fixture::new();
    let agent = fixture.start(AgentPolicy::default());
    let victim = Victim::sleep();
    let lease = Duration::from_millis(300);

    let paused = agent.apply(&pause(victim.pid()), Some(lease)).unwrap();
    assert_eq!(paused.kind, "process-pause");
    assert!(paused.id.is_some());
    // The description comes from the processes SIGSTOP was sent to: proof the pause happened, whenever the
    // lease reverts it.
    assert_eq!(paused.description, format!("stopped pid {}", victim.pid()));
    let reverted =
        wait_until_async(|| is_running(victim.pid()) && agent.active().is_empty() && fixture.records() == 0)
            .await;
    assert!(
        reverted,
        "the lease resumed pid {} (state {:?}), active {:?}, {} records",
        victim.pid(),
        common::state(victim.pid()),
        agent.active(),
        fixture.records()
    );

    let applied = agent.apply(&fill(fixture.data(), Size::mib(1)), Some(lease)).unwrap();
    assert_eq!(applied.kind, "disk-fill");
    let file = filled(&applied.description);
    assert_eq!(file.parent(), Some(fixture.data().as_path()));
    let removed =
        wait_until_async(|| !file.exists() && agent.active().is_empty() && fixture.records() == 0).await;
    assert!(removed, "the lease removed {} ({:?} left)", file.display(), fixture.data_files());
    assert!(fixture.data_files().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_of_zero_still_reverts() {
    // The lease task may run before `apply` has listed the fault; its revert must still find it.
    let fixture = Fixture::new();
    let agent = fixture.start(AgentPolicy::default());
    for _ in 0..50 {
        agent.apply(&fill(fixture.data(), Size::kib(4)), Some(Duration::ZERO)).unwrap();
    }
    let reverted = wait_until_async(|| agent.active().is_empty() && fixture.data_files().is_empty()).await;
    assert!(reverted, "active {:?}, files {:?}", agent.active(), fixture.data_files());
    assert_eq!(fixture.records(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn renew_extends_a_lease_until_reverted() {
    let fixture = Fixture::new();
    let agent = fixture.start(AgentPolicy::default());
    let victim = Victim::sleep();
    let id = agent.apply(&pause(victim.pid()), Some(Duration::from_millis(300))).unwrap().id.unwrap();
    agent.renew(id, LONG).unwrap();

    // A renewal above the policy's longest lease is refused and leaves the deadline where it was.
    let err = agent.renew(id, Duration::from_secs(2 * 3600)).unwrap_err().to_string();
    assert_eq!(
        err,
        "policy rule 'max-duration' refused: process-pause for 7200s is longer than the 1h allowed"
    );

    // Well past the first deadline: a bounded wait, since what is checked is that nothing happened.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(wait_until_async(|| is_stopped(victim.pid())).await, "state {:?}", common::state(victim.pid()));
    assert_eq!(active_ids(&agent), [id.to_string()]);
    assert_eq!(fixture.records(), 1);

    agent.revert(id).unwrap();
    assert!(wait_until_async(|| is_running(victim.pid())).await, "state {:?}", common::state(victim.pid()));
    assert!(agent.active().is_empty());
    assert_eq!(fixture.records(), 0);
    agent.revert(id).unwrap();

    let err = agent.renew(id, LONG).unwrap_err().to_string();
    assert_eq!(err, format!("invalid fault id: {id} is not active here"));
    // Without a duration the lease is the policy's max_duration: every fault has a deadline.
    let default = agent.apply(&fill(fixture.data(), Size::kib(4)), None).unwrap().id.unwrap();
    agent.renew(default, LONG).unwrap();
    agent.revert(default).unwrap();
    assert!(fixture.data_files().is_empty());
}

#[test]
fn a_lease_without_a_runtime_is_refused_before_anything_changes() {
    let fixture = Fixture::new();
    let agent = fixture.start(AgentPolicy::default());
    let victim = Victim::sleep();
    for spec in [pause(victim.pid()), fill(fixture.data(), Size::kib(4))] {
        let err = agent.apply(&spec, Some(LONG)).unwrap_err();
        assert!(matches!(err, AgentError::NoRuntime), "{spec}: {err}");
    }
    assert!(!is_stopped(victim.pid()));
    assert!(fixture.data_files().is_empty());
    assert_eq!(fixture.records(), 0);
    assert!(agent.active().is_empty());
}

// === faults with nothing, or not everything, to revert ===

#[test]
fn a_kill_has_nothing_to_revert_and_needs_no_lease() {
    let fixture = Fixture::new();
    let agent = fixture.start(AgentPolicy::default());
    let mut victim = Victim::sleep();
    let spec = FaultSpec::ProcessKill {
        target: ProcessSelector { pid: Some(victim.pid()), ..ProcessSelector::default() },
        count: CountSpec(Count::Exactly(1)),
        signal: "term".into(),
    };
    let planned = agent.plan(&spec, Some(LONG)).unwrap();
    assert_eq!(planned, format!("process-kill on pid {} (sleep)", victim.pid()));
    // A duration but no runtime: a kill has no lease, so that is no reason to refuse it.
    let applied = agent.apply(&spec, Some(LONG)).unwrap();
    assert_eq!((applied.id, applied.kind.as_str()), (None, "process-kill"));
    assert_eq!(applied.description, format!("SIGTERM sent to pid {}", victim.pid()));
    let status = wait_until(|| victim.child.try_wait().unwrap().is_some());
    assert!(status, "pid {} exited", victim.pid());
    assert!(agent.active().is_empty());
    assert_eq!(fixture.records(), 0);
}

// A runtime for the leases (every applied fault has one).
#[tokio::test(flavor = "multi_thread")]
async fn a_process_stopped_by_someone_else_is_left_stopped() {
    use nix::sys::signal::{Signal as NixSignal, kill};
    use nix::unistd::Pid;

    let fixture = Fixture::new();
    let agent = fixture.start(AgentPolicy::default());
    let group = common::nonce();
    let (ours, theirs) = (Victim::sleep_with_marker(group), Victim::sleep_with_marker(group));
    kill(Pid::from_raw(theirs.pid()), NixSignal::SIGSTOP).unwrap();
    assert!(wait_until(|| is_stopped(theirs.pid())));

    let both = FaultSpec::ProcessPause {
        target: ProcessSelector { cmdline: Some(ours.marker.clone()), ..ProcessSelector::default() },
        count: CountSpec(Count::Percent(1.0)),
    };
    let applied = agent.apply(&both, None).unwrap();
    assert_eq!(
        applied.description,
        format!("stopped pid {}; already stopped (left so on revert): pid {}", ours.pid(), theirs.pid())
    );
    assert!(wait_until(|| is_stopped(ours.pid())));
    agent.revert(applied.id.unwrap()).unwrap();
    assert!(wait_until(|| is_running(ours.pid())), "state {:?}", common::state(ours.pid()));
    assert!(is_stopped(theirs.pid()), "whoever stopped pid {} resumes it", theirs.pid());
    assert_eq!(fixture.records(), 0);
    kill(Pid::from_raw(theirs.pid()), NixSignal::SIGCONT).unwrap();
}

// === reverting everything ===

#[tokio::test(flavor = "multi_thread")]
async fn revert_all_reverts_everything_newest_first() {
    let _workers = WORKERS.lock().await;
    let fixture = Fixture::new();
    let agent = fixture.start(AgentPolicy::default());
    let victim = Victim::sleep();
    let paused = agent.apply(&pause(victim.pid()), Some(LONG)).unwrap().id.unwrap();
    let filled = agent.apply(&fill(fixture.data(), Size::mib(1)), Some(LONG)).unwrap().id.unwrap();
    let stressed = agent.apply(&cpu(1, 10), Some(LONG)).unwrap().id.unwrap();
    assert_eq!(active_ids(&agent), [paused, filled, stressed].map(|id| id.to_string()));
    assert_eq!(fixture.records(), 3);
    assert_eq!(fixture.data_files().len(), 1);
    assert_eq!(own_workers().len(), 1, "one cpu worker");
    assert!(wait_until_async(|| is_stopped(victim.pid())).await);

    let report = agent.revert_all();
    assert_eq!(report.reverted, [stressed, filled, paused]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(wait_until_async(|| is_running(victim.pid())).await, "state {:?}", common::state(victim.pid()));
    assert!(fixture.data_files().is_empty(), "{:?}", fixture.data_files());
    assert!(own_workers().is_empty(), "workers left: {:?}", own_workers());
    assert_eq!(fixture.records(), 0);
    assert!(agent.active().is_empty());

    let again = agent.revert_all();
    assert!(again.reverted.is_empty() && again.failed.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_last_handle_reverts_everything_at_once() {
    let _workers = WORKERS.lock().await;
    let fixture = Fixture::new();
    let agent = fixture.start(AgentPolicy::default());
    let clone = agent.clone();
    let victim = Victim::sleep();
    agent.apply(&pause(victim.pid()), Some(LONG)).unwrap();
    let file = filled(&clone.apply(&fill(fixture.data(), Size::mib(1)), Some(LONG)).unwrap().description);
    agent.apply(&cpu(1, 10), Some(LONG)).unwrap();
    assert!(wait_until_async(|| is_stopped(victim.pid())).await);
    let workers = own_workers();
    assert_eq!(workers.len(), 1, "one cpu worker");

    // Another handle remains: nothing is reverted.
    drop(clone);
    assert_eq!(agent.active().len(), 3);
    assert!(is_stopped(victim.pid()) && file.exists());
    assert_eq!(own_workers(), workers);
    assert_eq!(fixture.records(), 3);

    // The last handle goes with its leases still pending: everything is reverted before `drop` returns.
    drop(agent);
    assert!(!file.exists());
    assert!(own_workers().is_empty(), "workers left: {:?}", own_workers());
    assert_eq!(fixture.records(), 0);
    // SIGCONT was sent before `drop` returned; the state letter changes once the victim is scheduled.
    assert!(wait_until_async(|| is_running(victim.pid())).await, "state {:?}", common::state(victim.pid()));
}

// === the undo journal after a killed owner ===

/// Turns `helper_host_apply_then_sleep` into the owner process of the replay test; the value is the test
/// directory.
const CHILD_ENV: &str = "CHAOS_HOST_CHILD";

/// The pid the helper pauses.
const VICTIM_ENV: &str = "CHAOS_HOST_VICTIM";

/// In a normal run this does nothing. Re-run by `start_replays_what_a_killed_owner_left` with `CHILD_ENV` set,
/// it fills the disk and pauses the victim through a `HostAgent`, prints what it did, and sleeps until killed.
// A runtime for the leases (every applied fault has one).
#[tokio::test(flavor = "multi_thread")]
async fn helper_host_apply_then_sleep() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    let victim: i32 = std::env::var(VICTIM_ENV).unwrap().parse().unwrap();
    let (agent, _) = HostAgent::start(dir.join("state"), AgentPolicy::default(), SEED).unwrap();
    let fill = agent.apply(&fill(dir.join("data"), Size::mib(1)), None).unwrap();
    agent.apply(&pause(victim), None).unwrap();
    println!("\napplied {}", fill.description);
    println!("ready");
    std::thread::sleep(Duration::from_secs(120));
}

/// The helper process, SIGKILLed and reaped when dropped (so a failing test does not leave it sleeping).
struct Owner(Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn start_replays_what_a_killed_owner_left() {
    let fixture = Fixture::new();
    let victim = Victim::sleep();
    let mut owner = Owner(
        Command::new(std::env::current_exe().unwrap())
            .args(["helper_host_apply_then_sleep", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &fixture.dir.path)
            .env(VICTIM_ENV, victim.pid().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut file = None;
    for line in BufReader::new(owner.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some((_, description)) = line.split_once("applied ") {
            file = Some(filled(description));
        } else if line == "ready" {
            break;
        }
    }
    let file = file.expect("the owner filled the disk");
    assert!(file.exists());
    assert!(wait_until(|| is_stopped(victim.pid())), "state {:?}", common::state(victim.pid()));
    assert_eq!(fixture.records(), 2);

    owner.0.kill().unwrap();
    owner.0.wait().unwrap();
    // Nobody resumes the victim or deletes the file when the owner dies: that is what the journal is for.
    assert!(is_stopped(victim.pid()), "state {:?}", common::state(victim.pid()));
    assert!(file.exists());
    assert_eq!(fixture.records(), 2);

    let (agent, replay) = HostAgent::start(fixture.state(), AgentPolicy::default(), SEED).unwrap();
    let kinds: BTreeSet<&str> = replay.reverted.iter().map(|record| record.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["disk-fill", "process-pause"]), "{replay:?}");
    assert!(replay.failed.is_empty() && replay.live.is_empty() && replay.unreadable.is_empty(), "{replay:?}");
    assert!(!file.exists());
    assert!(wait_until(|| is_running(victim.pid())), "state {:?}", common::state(victim.pid()));
    assert_eq!(fixture.records(), 0);
    assert!(agent.active().is_empty());
}

// === policy refusals ===

/// A `sleep` whose argv[0] is `argv0`, killed and reaped when dropped.
struct Renamed(Child);

impl Renamed {
    fn spawn(argv0: &str) -> Renamed {
        Renamed(Command::new("sleep").arg0(argv0).arg("600").spawn().unwrap())
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Renamed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Checks that `plan` and `apply` both refuse `spec` by `rule`, with `detail` in the message, and that nothing
/// changed: no record, no active fault, no file in `dirs` but those in `keep`, no worker, no victim stopped.
struct Refusals<'a> {
    fixture: &'a Fixture,
    dirs: Vec<PathBuf>,
    keep: Vec<&'static str>,
    victims: Vec<i32>,
}

impl Refusals<'_> {
    fn check(
        &self,
        agent: &HostAgent,
        spec: &FaultSpec,
        duration: Option<Duration>,
        rule: &str,
        detail: &str,
    ) {
        let planned = agent.plan(spec, duration).map(drop);
        let applied = agent.apply(spec, duration).map(drop);
        for (how, result) in [("plan", planned), ("apply", applied)] {
            let err = match result {
                Ok(()) => panic!("{how} of {spec}: expected a refusal by {rule}, found it accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.starts_with(&format!("policy rule '{rule}' refused")), "{how}: {rule}: {err}");
            assert!(err.contains(detail), "{how}: expected {detail:?} in {err:?}");
        }
        assert_eq!(self.fixture.records(), 0, "no record for {rule}");
        assert!(agent.active().is_empty(), "{rule}: {:?}", agent.active());
        for dir in &self.dirs {
            let created: Vec<String> =
                files_in(dir).into_iter().filter(|name| !self.keep.contains(&name.as_str())).collect();
            assert!(created.is_empty(), "{rule}: created in {}: {created:?}", dir.display());
        }
        assert!(own_workers().is_empty(), "{rule}: workers {:?}", own_workers());
        for pid in &self.victims {
            assert!(!is_stopped(*pid), "{rule}: pid {pid} stopped");
        }
    }
}

#[test]
fn policy_refusals_name_the_rule_and_change_nothing() {
    let _workers = WORKERS.blocking_lock();
    // A runtime for the leases (every applied fault has one), entered after the lock is taken.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let fixture = Fixture::new();
    let allowed = fixture.data();
    let outside = fixture.dir.path.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();

    let protected = Victim::named("sshd");
    let agent_like = Renamed::spawn("/opt/bin/chaos agent");
    let denied = Victim::sleep();
    let plain = Victim::sleep();
    let refusals = Refusals {
        fixture: &fixture,
        dirs: vec![allowed.clone(), outside.clone()],
        keep: vec!["link"],
        victims: vec![protected.pid(), agent_like.pid(), denied.pid(), plain.pid()],
    };

    let strict = AgentPolicy {
        max_duration: "1s".into(),
        processes: ProcessRules { deny_cmdlines: vec![denied.marker.clone()], ..ProcessRules::default() },
        stress: StressLimits {
            max_cpu_workers: Some(2),
            max_cpu_load: 50,
            max_memory: Size::mib(1),
            max_disk_fill: Size::mib(1),
            fill_paths: vec![allowed.clone()],
            max_io_workers: 2,
        },
        ..AgentPolicy::default()
    };
    let agent = fixture.start(strict);
    let io = |path: PathBuf, workers: u32| {
        FaultSpec::IoStress(IoStress { path, workers, block_size: Size::kib(4), file_size: Size::kib(64) })
    };
    let cases: Vec<(FaultSpec, Option<Duration>, &str, String)> = vec![
        (
            pause(plain.pid()),
            Some(Duration::from_secs(2)),
            "max-duration",
            "process-pause for 2s is longer than the 1s allowed".into(),
        ),
        (cpu(3, 10), None, "max-cpu-workers", "3 workers asked, at most 2 allowed".into()),
        (cpu(1, 60), None, "max-cpu-load", "load 60% asked, at most 50% allowed".into()),
        (
            FaultSpec::MemoryStress(MemoryStress { size: Size::mib(2) }),
            None,
            "max-memory",
            format!("{} bytes asked, at most {} allowed", 2 * MIB, MIB),
        ),
        (
            fill(&allowed, Size::mib(2)),
            None,
            "max-disk-fill",
            format!("{} bytes asked, at most {} allowed", 2 * MIB, MIB),
        ),
        (
            fill(&outside, Size::kib(4)),
            None,
            "fill-paths",
            format!("{} is not under any allowed path ({})", outside.display(), allowed.display()),
        ),
        (
            fill(allowed.join("../outside"), Size::kib(4)),
            None,
            "fill-paths",
            "/../outside is not under".into(),
        ),
        (fill(allowed.join("link"), Size::kib(4)), None, "fill-paths", "/link is not under".into()),
        (io(outside.clone(), 1), None, "fill-paths", "is not under any allowed path".into()),
        (io(allowed.clone(), 3), None, "max-io-workers", "3 workers asked, at most 2 allowed".into()),
        (
            pause(protected.pid()),
            None,
            "protected-name",
            format!("pid {} (sshd): the name is in the protected list", protected.pid()),
        ),
        (
            pause(agent_like.pid()),
            None,
            "protected-cmdline",
            format!("pid {} (sleep): the command line matches the protected pattern", agent_like.pid()),
        ),
        (
            pause(denied.pid()),
            None,
            "process-deny",
            format!("pid {} (sleep): the command line matches the deny pattern", denied.pid()),
        ),
        (pause(1), None, "pid-1", "pid 1 is never a target".into()),
        (
            pause(std::process::id() as i32),
            None,
            "self-or-ancestor",
            "the agent's own process is never a target".into(),
        ),
    ];
    for (spec, duration, rule, detail) in &cases {
        refusals.check(&agent, spec, *duration, rule, detail);
    }
    // Within every limit, the same agent applies (and this checker sees what a success leaves).
    let id = agent.apply(&fill(&allowed, Size::kib(4)), None).unwrap().id.unwrap();
    assert_eq!(fixture.records(), 1);
    agent.revert(id).unwrap();
    drop(agent);

    let only_kills =
        AgentPolicy { allowed_faults: Some(vec!["process-kill".into()]), ..AgentPolicy::default() };
    let agent = fixture.start(only_kills);
    let detail = "cpu-stress is not in the allowed faults (process-kill)";
    refusals.check(&agent, &cpu(1, 10), None, "allowed-faults", detail);
    refusals.check(
        &agent,
        &pause(plain.pid()),
        None,
        "allowed-faults",
        "process-pause is not in the allowed",
    );
    drop(agent);

    let only_allowed = AgentPolicy {
        processes: ProcessRules {
            allow_cmdlines: vec!["^no-such-program ".into()],
            ..ProcessRules::default()
        },
        ..AgentPolicy::default()
    };
    let agent = fixture.start(only_allowed);
    let detail = format!("pid {} (sleep): the command line matches no allow pattern", plain.pid());
    refusals.check(&agent, &pause(plain.pid()), None, "process-allow", &detail);
    drop(agent);

    let group = common::nonce();
    let (first, second) = (Victim::sleep_with_marker(group), Victim::sleep_with_marker(group));
    let at_most_one = AgentPolicy {
        processes: ProcessRules { max_count: Some(1), ..ProcessRules::default() },
        ..AgentPolicy::default()
    };
    let agent = fixture.start(at_most_one);
    let both = FaultSpec::ProcessPause {
        target: ProcessSelector { cmdline: Some(first.marker.clone()), ..ProcessSelector::default() },
        count: CountSpec(Count::Exactly(2)),
    };
    let refusals = Refusals { victims: vec![first.pid(), second.pid()], ..refusals };
    refusals.check(&agent, &both, None, "max-count", "2 processes chosen, at most 1 allowed");
}

// === the policy file ===

/// The example of the `policy` module's documentation.
const FULL_POLICY: &str = "\
allowed_faults: [process-pause, cpu-stress, network-partition]   # default: every kind
max_duration: 30m                                                 # longest lease; default 1h
processes:
  protected_names: [sshd, systemd, init, postgres]                # default: sshd, systemd, init
  protected_cmdlines: ['(^|/)chaos (controller|agent)( |$)']      # the default
  allow_cmdlines: ['^/srv/shop/']                                 # empty (the default): any
  deny_cmdlines: ['--prod']
  max_count: 5
  pidfile_dirs: [/run, /var/run, /tmp, /var/tmp]                  # where pidfile targets may be read; the default
stress:
  max_cpu_workers: 8          # default: 4 × CPUs
  max_cpu_load: 90            # percent per worker; default 100
  max_memory: 50%             # of MemTotal, or bytes like 2GiB; default 80%
  max_disk_fill: 10GiB        # bytes, or percent of the free space; default 95%
  fill_paths: [/tmp, /var/tmp]  # where disk fill and IO stress may write; the default
  max_io_workers: 4           # default 16
pods:                         # pod targets (through the node's container runtime)
  protected_namespaces: [kube-system]   # never targeted; the default
  allowed_namespaces: [shop, staging]   # empty (the default): any namespace not protected
";

#[test]
fn a_policy_file_loads_and_its_errors_point_at_the_line() {
    let dir = TempDir::new();
    let path = dir.path.join("policy.yaml");
    std::fs::write(&path, FULL_POLICY).unwrap();
    let policy = AgentPolicy::load(&path).unwrap();
    let expected = AgentPolicy {
        allowed_faults: Some(vec!["process-pause".into(), "cpu-stress".into(), "network-partition".into()]),
        max_duration: "30m".into(),
        processes: ProcessRules {
            protected_names: ["sshd", "systemd", "init", "postgres"].map(String::from).to_vec(),
            protected_cmdlines: vec!["(^|/)chaos (controller|agent)( |$)".into()],
            allow_cmdlines: vec!["^/srv/shop/".into()],
            deny_cmdlines: vec!["--prod".into()],
            max_count: Some(5),
            pidfile_dirs: ["/run", "/var/run", "/tmp", "/var/tmp"].map(PathBuf::from).to_vec(),
        },
        stress: StressLimits {
            max_cpu_workers: Some(8),
            max_cpu_load: 90,
            max_memory: Size::Percent(50.0),
            max_disk_fill: Size::Bytes(10 << 30),
            fill_paths: vec!["/tmp".into(), "/var/tmp".into()],
            max_io_workers: 4,
        },
        pods: PodRules {
            protected_namespaces: vec!["kube-system".into()],
            allowed_namespaces: vec!["shop".into(), "staging".into()],
            volume_paths: vec!["/var/lib/kubelet/pods".into()],
        },
        probe_commands: Vec::new(),
    };
    assert_eq!(policy, expected);
    policy.check_pod_namespace("shop").unwrap();
    for (namespace, rule) in [("kube-system", "protected-namespaces"), ("prod", "allowed-namespaces")] {
        let refused = policy.check_pod_namespace(namespace).unwrap_err().to_string();
        assert!(refused.contains(&format!("policy rule '{rule}'")), "{namespace}: {refused}");
    }
    AgentPolicy::default().check_pod_namespace("prod").unwrap();
    assert!(
        AgentPolicy::default().check_pod_namespace("kube-system").is_err(),
        "kube-system is protected by default"
    );
    assert_eq!(policy.max_duration().unwrap(), Duration::from_secs(1800));
    // An empty map is the default policy.
    std::fs::write(&path, "{}\n").unwrap();
    assert_eq!(AgentPolicy::load(&path).unwrap(), AgentPolicy::default());

    let cases = [
        ("max_duration: 1h\nbogus: 1\n", (2, 1), "unknown field `bogus`, expected one of allowed_faults"),
        (
            "allowed_faults: [cpu-stress]\nmax_duration: 5d\n",
            (2, 15),
            r#"invalid max_duration: "5d" is not a"#,
        ),
        (
            "max_duration: 99999999999999999999h\n",
            (1, 15),
            r#"invalid max_duration: "99999999999999999999h" is not a duration like 30m, 90s or 1h"#,
        ),
        (
            "allowed_faults:\n  - cpu-stress\n  - cpu-stres\n",
            (3, 5),
            r#"invalid fault kind: unknown kind "cpu-stres" (expected one of process-kill, process-pause"#,
        ),
        (
            "stress:\n  max_io_workers: 3\n  max_cpu_load: 0\n",
            (3, 17),
            "invalid max_cpu_load: expected 1 to 100, found 0",
        ),
        ("stress:\n  max_cpu_load: 300\n", (2, 17), "invalid max_cpu_load: expected 1 to 100, found 300"),
        (
            "processes:\n  deny_cmdlines:\n    - '--prod'\n    - '(x'\n",
            (4, 7),
            r#"invalid deny_cmdlines: pattern 1 ("(x"): regex parse error"#,
        ),
        ("stress:\n  max_memory: 10XB\n", (2, 15), r#"invalid size: "10XB": expected a number with a unit"#),
    ];
    for (text, (line, column), expected) in cases {
        std::fs::write(&path, text).unwrap();
        let err = AgentPolicy::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("invalid policy file: {}: ", path.display())), "{err}");
        assert!(
            err.contains(&format!("line {line} column {column}: ")),
            "{text:?}: at {line}:{column}: {err}"
        );
        assert!(err.contains(expected), "{text:?}: expected {expected:?} in {err}");
    }

    let missing = dir.path.join("missing.yaml");
    let err = AgentPolicy::load(&missing).unwrap_err().to_string();
    assert!(err.starts_with(&format!("reading policy file {}: ", missing.display())), "{err}");
}

// === fault specs ===

#[test]
fn every_kind_reads_from_yaml_and_back() {
    let filter = Filter {
        direction: Direction::Egress,
        hosts: vec!["10.0.0.2".into(), "fd00::/64".into()],
        ports: vec![5432],
        protocol: Protocol::Tcp,
    };
    let cases = [
        (
            "kind: process-kill\ntarget: {name: nginx, user: www-data}\ncount: 2\nsignal: TERM\n",
            FaultSpec::ProcessKill {
                target: ProcessSelector {
                    name: Some("nginx".into()),
                    user: Some("www-data".into()),
                    ..ProcessSelector::default()
                },
                count: CountSpec(Count::Exactly(2)),
                signal: "TERM".into(),
            },
        ),
        (
            "kind: process-kill\ntarget: {pidfile: /run/x.pid}\n",
            FaultSpec::ProcessKill {
                target: ProcessSelector { pidfile: Some("/run/x.pid".into()), ..ProcessSelector::default() },
                count: CountSpec(Count::Exactly(1)),
                signal: "KILL".into(),
            },
        ),
        (
            "kind: process-pause\ntarget:\n  cmdline: '^java .*shop'\ncount: 30%\n",
            FaultSpec::ProcessPause {
                target: ProcessSelector {
                    cmdline: Some("^java .*shop".into()),
                    ..ProcessSelector::default()
                },
                count: CountSpec(Count::Percent(0.3)),
            },
        ),
        ("kind: process-pause\ntarget: {pid: 42}\n", pause(42)),
        ("kind: cpu-stress\nworkers: 2\nload: 80\n", cpu(2, 80)),
        ("kind: cpu-stress\n", FaultSpec::CpuStress(CpuStress { workers: None, load: 100 })),
        ("kind: memory-stress\nsize: 64MiB\n", FaultSpec::MemoryStress(MemoryStress { size: Size::mib(64) })),
        ("kind: disk-fill\npath: /tmp\nsize: 10%\n", fill("/tmp", Size::Percent(10.0))),
        (
            "kind: io-stress\npath: /var/tmp\nworkers: 2\nblock_size: 4KiB\nfile_size: 1MiB\n",
            FaultSpec::IoStress(IoStress {
                path: "/var/tmp".into(),
                workers: 2,
                block_size: Size::kib(4),
                file_size: Size::mib(1),
            }),
        ),
        ("kind: io-stress\npath: /tmp\n", FaultSpec::IoStress(IoStress::in_dir("/tmp"))),
        (
            "kind: network-partition\nnetns: blue\nfilter:\n  direction: egress\n  hosts: [10.0.0.2, \"fd00::/64\"]\n  \
             ports: [5432]\n  protocol: tcp\n",
            FaultSpec::NetworkPartition(Partition { netns: Some("blue".into()), filter: filter.clone() }),
        ),
        (
            "kind: network-loss\npercent: 30\nfilter: {hosts: [10.0.0.2, \"fd00::/64\"], ports: [5432], protocol: \
             tcp, direction: egress}\n",
            FaultSpec::NetworkLoss(Loss { netns: None, filter, percent: 30.0 }),
        ),
        (
            "kind: network-bandwidth\ndevice: eth0\nrate: 1mbit\nburst_bytes: 32768\nlatency_ms: 100\n",
            FaultSpec::NetworkBandwidth(Bandwidth {
                netns: None,
                device: "eth0".into(),
                rate: "1mbit".into(),
                burst_bytes: Some(32768),
                latency_ms: Some(100),
            }),
        ),
        (
            "kind: network-latency\nnetns: red\ndevice: veth0\ndelay_ms: 100\njitter_ms: 10\ncorrelation: 25\n",
            FaultSpec::NetworkLatency(Latency {
                netns: Some("red".into()),
                device: "veth0".into(),
                delay_ms: 100,
                jitter_ms: 10,
                correlation: 25.0,
            }),
        ),
    ];
    let mut kinds = BTreeSet::new();
    for (text, expected) in cases {
        let spec = FaultSpec::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(spec, expected, "{text:?}");
        kinds.insert(spec.kind());
        // Displayed as JSON, which reads back (YAML is a superset) to the same spec.
        let shown = spec.to_string();
        assert_eq!(FaultSpec::parse(&shown).unwrap(), spec, "{shown}");
        assert_eq!(serde_json::from_str::<FaultSpec>(&shown).unwrap(), spec, "{shown}");
    }
    assert_eq!(kinds, BTreeSet::from(FaultKind::ALL), "every kind has a case");
}

#[test]
fn bad_specs_are_refused_with_what_was_expected_and_where() {
    let err = FaultSpec::parse("kind: cpu-stres\nworkers: 2\n").unwrap_err().to_string();
    assert!(err.starts_with("invalid fault spec: ") && err.contains("line 1 column 1"), "{err}");
    assert!(err.contains("unknown variant `cpu-stres`, expected one of"), "{err}");
    for kind in FaultKind::ALL {
        assert!(err.contains(kind.as_str()), "{kind} listed in {err}");
    }

    let cases = [
        (
            "kind: cpu-stress\nworkers: 2\ncores: 2\n",
            (3, 1),
            "unknown field `cores`, expected one of workers, load",
        ),
        ("cores: 2\nkind: cpu-stress\n", (1, 1), "unknown field `cores`"),
        (
            "kind: process-pause\ntarget:\n  pod: 5\n",
            (3, 3),
            "unknown field `pod`, expected one of name, cmdline",
        ),
        ("kind: process-kill\ncount: 2\n", (2, 1), "missing field `target`"),
        (
            "kind: network-loss\npercent: 5\nfilter: {host: [10.0.0.2]}\n",
            (3, 10),
            "unknown field `host`, expected one of direction, hosts, ports, protocol",
        ),
        ("kind: disk-fill\npath: /tmp\nsize: 12XB\n", (3, 7), r#"invalid size: "12XB""#),
    ];
    for (text, (line, column), expected) in cases {
        let err = FaultSpec::parse(text).unwrap_err().to_string();
        assert!(err.starts_with("invalid fault spec: "), "{err}");
        assert!(
            err.contains(&format!("line {line} column {column}: ")),
            "{text:?}: at {line}:{column}: {err}"
        );
        assert!(err.contains(expected), "{text:?}: expected {expected:?} in {err}");
    }
}

#[test]
fn counts_read_as_numbers_or_percentages() {
    let count = |written: &str| {
        FaultSpec::parse(&format!("kind: process-pause\ntarget: {{pid: 42}}\ncount: {written}\n")).map(
            |spec| match spec {
                FaultSpec::ProcessPause { count, .. } => count.0,
                other => panic!("a pause: {other:?}"),
            },
        )
    };
    assert_eq!(count("2").unwrap(), Count::Exactly(2));
    assert_eq!(count("\"2\"").unwrap(), Count::Exactly(2));
    assert_eq!(count("\"30%\"").unwrap(), Count::Percent(0.3));
    assert_eq!(count("100%").unwrap(), Count::Percent(1.0));

    let refused = [
        ("\"0\"", (3, 8), "invalid count: expected at least 1 process, found 0"),
        ("0", (3, 8), "invalid count: expected at least 1 process, found 0"),
        (
            "\"150%\"",
            (3, 8),
            r#"invalid count: expected a percentage above 0% and at most 100%, found "150%""#,
        ),
        ("0%", (3, 8), r#"expected a percentage above 0% and at most 100%, found "0%""#),
        (
            "x",
            (3, 8),
            r#"invalid count: expected a number of processes or a percentage like "30%", found "x""#,
        ),
        ("-1", (3, 8), r#"like "30%", found "-1""#),
        ("2.5", (3, 8), r#"like "30%", found "2.5""#),
    ];
    for (written, (line, column), expected) in refused {
        let err = count(written).unwrap_err().to_string();
        assert!(
            err.contains(&format!("line {line} column {column}: ")),
            "{written}: at {line}:{column}: {err}"
        );
        assert!(err.contains(expected), "{written}: expected {expected:?} in {err}");
    }

    // Percentages are written back as they were read, without floating-point noise (0.07 × 100 is not 7).
    for percent in [7, 14, 28, 29, 30, 55, 57, 100] {
        let spec = FaultSpec::ProcessPause {
            target: ProcessSelector { pid: Some(42), ..ProcessSelector::default() },
            count: CountSpec(Count::Percent(f64::from(percent) / 100.0)),
        };
        let json = spec.to_string();
        assert!(json.ends_with(&format!(r#""count":"{percent}%"}}"#)), "{json}");
        assert_eq!(FaultSpec::parse(&json).unwrap(), spec);
    }
}

// === capabilities ===

#[test]
fn a_network_fault_the_host_cannot_do_is_refused_by_name() {
    let fixture = Fixture::new();
    let agent = fixture.start(AgentPolicy::default());
    let caps = agent.capabilities().clone();
    let spec = FaultSpec::NetworkLatency(Latency {
        netns: None,
        device: "lo".into(),
        delay_ms: 100,
        jitter_ms: 0,
        correlation: 0.0,
    });
    // A host with tc and netem (CI's) checks the other side of the rule: the kind is not refused as unsupported.
    let Some(missing) = caps.tc.reason().or(caps.netem.reason()) else {
        let planned = agent.plan(&spec, Some(LONG));
        assert!(
            !matches!(planned, Err(AgentError::Unsupported { .. })),
            "tc and netem are here: {planned:?}"
        );
        assert_eq!(fixture.records(), 0);
        return;
    };
    let planned = agent.plan(&spec, Some(LONG)).map(drop);
    let applied = agent.apply(&spec, None).map(drop);
    for (how, result) in [("plan", planned), ("apply", applied)] {
        match result {
            Err(AgentError::Unsupported { fault, missing: why }) => {
                assert_eq!(fault, "network-latency", "{how}");
                assert_eq!(why, missing, "{how}");
                if caps.tc.is_ok() {
                    assert!(why.contains("netem"), "{how}: {why}");
                }
            }
            other => panic!("{how}: expected unsupported, found {other:?}"),
        }
    }
    let err = agent.plan(&spec, None).unwrap_err().to_string();
    assert_eq!(err, format!("network-latency is not supported on this host: {missing}"));
    assert_eq!(fixture.records(), 0);
    assert!(agent.active().is_empty());
}

#[test]
fn disk_fill_never_writes_outside_fill_paths_while_a_directory_is_swapped_for_a_symlink() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let fixture = Fixture::new();
    let allowed = fixture.data();
    let outside = fixture.dir.path.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let sub = allowed.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let policy = AgentPolicy {
        stress: StressLimits { fill_paths: vec![allowed.clone()], ..StressLimits::default() },
        ..AgentPolicy::default()
    };
    let agent = fixture.start(policy);

    // Swaps `sub` for a symlink to `outside` and back, as fast as it can with seeded pauses in between, so
    // every step of an apply (policy check, directory open, file creation) meets both states.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, sub, outside) = (stop.clone(), sub.clone(), outside.clone());
        let real = allowed.join("sub.real");
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(SEED);
            let mut swaps = 0u32;
            // Mostly short, sometimes long enough for a whole apply to run in one state.
            // (Jitter for the race, not synchronisation: nothing waits on it.)
            let pause = |rng: &mut StdRng| {
                if rng.random_bool(0.2) {
                    std::thread::sleep(Duration::from_micros(rng.random_range(0..3_000)));
                } else {
                    for _ in 0..rng.random_range(0..2_000) {
                        std::hint::spin_loop();
                    }
                }
            };
            while !stop.load(Ordering::Relaxed) {
                std::fs::rename(&sub, &real).unwrap();
                std::os::unix::fs::symlink(&outside, &sub).unwrap();
                pause(&mut rng);
                std::fs::remove_file(&sub).unwrap();
                std::fs::rename(&real, &sub).unwrap();
                pause(&mut rng);
                swaps += 1;
            }
            swaps
        })
    };
    let (mut applied, mut refused) = (0, 0);
    // At least 200 attempts, and on until both outcomes were seen often (bounded).
    for attempt in 0..2000 {
        if attempt >= 200 && applied >= 10 && refused >= 10 {
            break;
        }
        match agent.apply(&fill(&sub, Size::kib(64)), Some(LONG)) {
            Ok(done) => {
                applied += 1;
                agent.revert(done.id.unwrap()).unwrap();
            }
            Err(_) => refused += 1,
        }
        assert_eq!(files_in(&outside), Vec::<String>::new(), "attempt {attempt} wrote outside fill_paths");
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 20, "only {swaps} swaps: the race was not exercised");
    // Both states were met: applies found the real directory, others met the symlink and were refused.
    assert!(applied >= 10 && refused >= 10, "applied {applied}, refused {refused}");
    assert_eq!(files_in(&outside), Vec::<String>::new());
    assert_eq!(files_in(&sub), Vec::<String>::new());
    assert_eq!(fixture.records(), 0);
}

#[test]
fn plan_checks_devices_and_paths_without_changing_anything() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let fixture = Fixture::new();
    let agent = fixture.start(AgentPolicy::default());
    let missing_device = FaultSpec::NetworkBandwidth(Bandwidth {
        netns: None,
        device: "chaos-nodev1".into(),
        rate: "1mbit".into(),
        burst_bytes: None,
        latency_ms: None,
    });
    let err = agent.plan(&missing_device, Some(LONG)).unwrap_err().to_string();
    assert_eq!(err, "invalid device: expected an existing network device, found no device \"chaos-nodev1\"");
    // The same checks without an agent (what a dry run uses: no journal replayed, nothing started).
    let caps = agent.capabilities().clone();
    let err = chaos_agent::host::plan(&AgentPolicy::default(), &caps, &missing_device, Some(LONG), SEED)
        .unwrap_err()
        .to_string();
    assert!(err.contains("found no device \"chaos-nodev1\""), "{err}");
    let missing_dir = fill(fixture.data().join("absent"), Size::mib(1));
    let err = agent.plan(&missing_dir, Some(LONG)).unwrap_err().to_string();
    assert!(err.contains("absent"), "{err}");
    assert!(agent.plan(&fill(fixture.data(), Size::mib(1)), Some(LONG)).is_ok());
    assert!(fixture.data_files().is_empty());
    assert_eq!(fixture.records(), 0);
}

/// A disk fill on a pod's volume reaches the volume's node path only under the policy's `pods.volume_paths`
/// (the kubelet's volumes) or `stress.fill_paths`: a hostPath volume elsewhere is the node's own disk.
#[test]
fn a_pod_volume_fill_is_refused_outside_the_volume_paths_and_fill_paths() {
    use chaos_agent::process::ProcessId;
    use chaos_agent::stress::FillRoot;
    let dir = TempDir::new();
    let allowed = dir.path.join("kubelet-pods");
    let elsewhere = dir.path.join("node-disk");
    for d in [&allowed, &elsewhere] {
        std::fs::create_dir_all(d.join("vol")).unwrap();
    }
    let policy = AgentPolicy {
        pods: PodRules { volume_paths: vec![allowed.clone()], ..PodRules::default() },
        stress: StressLimits { fill_paths: Vec::new(), ..StressLimits::default() },
        ..AgentPolicy::default()
    };
    let task = ProcessId::of(std::process::id() as i32).unwrap();
    let on_volume = |root: &Path| {
        let mut fill = DiskFill::new(root.join("vol"), Size::mib(1));
        fill.within =
            Some(FillRoot::Volume { host_root: root.join("vol"), container_path: "/data".into(), task });
        FaultSpec::DiskFill(fill)
    };
    policy.check(&on_volume(&allowed), Some(Duration::from_secs(1))).unwrap();
    let e = policy.check(&on_volume(&elsewhere), Some(Duration::from_secs(1))).unwrap_err().to_string();
    assert!(e.contains("volume-paths") && e.contains("not under any allowed path"), "{e}");
}
