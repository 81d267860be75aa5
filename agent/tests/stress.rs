//! Resource faults against real resources: CPU time, resident memory, disk blocks, writes; reverts, the undo
//! journal after a forgotten handle and after a killed owner, and refusals that leave nothing behind.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use chaos_agent::faults::{ActiveFault, FaultKind};
use chaos_agent::journal::{self, Journal, ReplayMode, Undo};
use chaos_agent::process::ProcessId;
use chaos_agent::stress::{
    CpuStress, DiskFill, FillRoot, GIB, IoStress, MIB, MemoryStress, Size, StressHandle, free_space,
};
use chaos_agent::undo;
use chaos_test_support::process::stat_fields;
use common::{TempDir, wait_until};

/// A journal and a data directory of their own, removed when dropped.
struct Fixture {
    dir: TempDir,
    journal: Journal,
}

// Helpers panic on setup failure like the tests that call them.
#[allow(clippy::unwrap_used)]
impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new();
        std::fs::create_dir(dir.path.join("data")).unwrap();
        let journal = Journal::open(dir.path.join("state")).unwrap();
        Fixture { dir, journal }
    }

    fn state(&self) -> PathBuf {
        self.dir.path.join("state")
    }

    fn data(&self) -> PathBuf {
        self.dir.path.join("data")
    }

    /// How many undo records the journal holds.
    fn records(&self) -> usize {
        let (records, unreadable) = journal::list(self.state());
        assert!(unreadable.is_empty(), "{unreadable:?}");
        records.len()
    }

    /// The names of the files in the data directory.
    fn data_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.data())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// utime + stime in clock ticks (fields 14 and 15).
fn cpu_ticks(pid: i32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    Some(fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?)
}

/// True once the worker is gone from `/proc` (reaped) or its pid belongs to another process.
fn reaped(worker: &ProcessId) -> bool {
    match stat_fields(worker.pid) {
        None => true,
        Some(fields) => fields[19].parse::<u64>().ok() != Some(worker.start_time),
    }
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// A line of `/proc/PID/FILE` like `VmRSS:  1234 kB` or `wchar: 5678`, as its first number.
fn proc_number(pid: i32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines().find_map(|line| line.strip_prefix(key))?.split_whitespace().next()?.parse().ok()
}

fn rss_bytes(pid: i32) -> Option<u64> {
    proc_number(pid, "status", "VmRSS:").map(|kib| kib * 1024)
}

fn written_bytes(pid: i32) -> Option<u64> {
    proc_number(pid, "io", "wchar:")
}

/// Checks the revert contract: workers SIGKILLed and reaped, files gone, record gone, second revert a no-op.
#[allow(clippy::unwrap_used)]
fn assert_reverts(fixture: &Fixture, handle: &StressHandle) {
    let (workers, files) = (handle.workers().to_vec(), handle.files().to_vec());
    handle.revert().unwrap();
    assert!(handle.is_reverted());
    for worker in &workers {
        assert!(reaped(worker), "worker {worker} still in /proc: {:?}", stat_fields(worker.pid));
    }
    for file in &files {
        assert!(!file.exists(), "{} still exists", file.display());
    }
    assert_eq!(fixture.records(), 0);
    handle.revert().unwrap();
}

#[test]
fn cpu_stress_burns_cpu_until_reverted() {
    let fixture = Fixture::new();
    let handle = CpuStress { workers: Some(1), load: 100 }.apply(&fixture.journal).unwrap();
    assert_eq!(ActiveFault::kind(&handle), FaultKind::CpuStress);
    let [worker] = handle.workers() else { panic!("one worker expected: {:?}", handle.workers()) };
    assert_eq!(comm(worker.pid), "chaos-cpu");
    let (records, _) = fixture.journal.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.undo, [Undo::KillWorkers { workers: vec![*worker] }]);

    let start = cpu_ticks(worker.pid).unwrap();
    // 20 ticks is 0.2 s of CPU: a spinning worker gets that quickly even on a busy machine.
    assert!(
        wait_until(|| cpu_ticks(worker.pid).is_some_and(|ticks| ticks >= start + 20)),
        "cpu time grew from {start} to {:?}",
        cpu_ticks(worker.pid)
    );
    assert_reverts(&fixture, &handle);
}

#[test]
fn cpu_stress_at_partial_load_accumulates_cpu_and_dropping_reverts() {
    let fixture = Fixture::new();
    let stress = CpuStress { workers: Some(1), load: 30 };
    assert_eq!(stress.effective_workers(), 1);
    let handle = stress.apply(&fixture.journal).unwrap();
    let worker = handle.workers()[0];
    let start = cpu_ticks(worker.pid).unwrap();
    assert!(wait_until(|| cpu_ticks(worker.pid).is_some_and(|ticks| ticks >= start + 5)), "cpu time grew");
    drop(handle);
    assert!(reaped(&worker), "dropping the handle reaped the worker");
    assert_eq!(fixture.records(), 0);
}

#[test]
fn memory_stress_grows_rss_until_reverted() {
    let fixture = Fixture::new();
    let handle = MemoryStress { size: Size::mib(64) }.apply(&fixture.journal).unwrap();
    assert_eq!(handle.bytes(), Some(64 * MIB));
    let worker = handle.workers()[0];
    assert_eq!(comm(worker.pid), "chaos-mem");
    assert!(
        wait_until(|| rss_bytes(worker.pid).is_some_and(|rss| rss >= 60 * MIB)),
        "rss {:?}",
        rss_bytes(worker.pid)
    );
    assert_reverts(&fixture, &handle);
}

#[test]
fn memory_stress_percent_is_of_mem_total() {
    let stress = MemoryStress { size: Size::Percent(10.0) };
    let total = chaos_agent::stress::mem_total().unwrap();
    assert_eq!(stress.bytes().unwrap(), total / 10);
}

#[test]
fn disk_fill_allocates_the_file_until_reverted() {
    use std::os::unix::fs::MetadataExt;
    let fixture = Fixture::new();
    let handle = DiskFill::new(fixture.data(), Size::mib(8)).apply(&fixture.journal).unwrap();
    assert_eq!(handle.bytes(), Some(8 * MIB));
    assert!(handle.workers().is_empty());
    let [file] = handle.files() else { panic!("one file expected: {:?}", handle.files()) };
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("chaos-fill-{}-", handle.id())) && name.ends_with(".bin"), "{name}");
    assert_eq!(fixture.data_files(), [name]);
    let meta = std::fs::metadata(file).unwrap();
    assert_eq!(meta.len(), 8 * MIB);
    assert!(meta.blocks() * 512 >= 8 * MIB, "{} blocks", meta.blocks());
    assert_eq!(fixture.records(), 1);
    assert_reverts(&fixture, &handle);
    assert!(fixture.data_files().is_empty());
}

#[test]
fn disk_fill_percent_resolves_and_more_than_free_is_refused() {
    let fixture = Fixture::new();
    let free = free_space(&fixture.data()).unwrap();
    let one_percent = DiskFill::new(fixture.data(), "1%".parse().unwrap()).bytes().unwrap();
    // Others write to this disk meanwhile: the two readings of the free space may differ a little.
    assert!(one_percent > 0 && one_percent.abs_diff(free / 100) <= free / 1000, "{one_percent} of {free}");

    let too_much = DiskFill::new(fixture.data(), Size::Bytes(free + 1024 * 1024 * MIB));
    assert_eq!(too_much.bytes().unwrap(), free + 1024 * 1024 * MIB);
    let err = too_much.apply(&fixture.journal).unwrap_err().to_string();
    assert!(err.starts_with("invalid size: expected at most the ") && err.contains(" free in "), "{err}");
    assert!(fixture.data_files().is_empty());
    assert_eq!(fixture.records(), 0);
}

#[test]
fn io_stress_writes_until_reverted() {
    let fixture = Fixture::new();
    let stress =
        IoStress { path: fixture.data(), workers: 2, block_size: Size::kib(4), file_size: Size::kib(64) };
    assert_eq!(stress.total_bytes().unwrap(), 128 * 1024);
    let handle = stress.apply(&fixture.journal).unwrap();
    assert_eq!(handle.workers().len(), 2);
    assert_eq!(handle.files().len(), 2);
    assert_eq!(fixture.data_files().len(), 2);
    let (records, _) = fixture.journal.records();
    let undo = &records[0].1.undo;
    // Run backwards, the steps kill the workers first, then delete the files.
    assert_eq!(undo.last(), Some(&Undo::KillWorkers { workers: handle.workers().to_vec() }));
    assert_eq!(undo.len(), 3);
    for worker in handle.workers() {
        assert_eq!(comm(worker.pid), "chaos-io");
        let start = written_bytes(worker.pid).unwrap();
        // Twice the file size: the worker has wrapped around its file at least once.
        assert!(
            wait_until(|| written_bytes(worker.pid).is_some_and(|w| w >= start + 128 * 1024)),
            "wchar grew from {start} to {:?}",
            written_bytes(worker.pid)
        );
    }
    for file in handle.files() {
        assert_eq!(std::fs::metadata(file).unwrap().len(), 64 * 1024);
    }
    assert_reverts(&fixture, &handle);
    assert!(fixture.data_files().is_empty());
}

#[test]
fn a_forgotten_handle_is_reverted_by_replay() {
    let fixture = Fixture::new();
    let cpu = CpuStress { workers: Some(1), load: 10 }.apply(&fixture.journal).unwrap();
    let io =
        IoStress { path: fixture.data(), workers: 1, block_size: Size::kib(4), file_size: Size::kib(16) }
            .apply(&fixture.journal)
            .unwrap();
    let fill = DiskFill::new(fixture.data(), Size::mib(1)).apply(&fixture.journal).unwrap();
    let workers: Vec<ProcessId> = cpu.workers().iter().chain(io.workers()).copied().collect();
    let files: Vec<PathBuf> = io.files().iter().chain(fill.files()).cloned().collect();
    // As if the owner had crashed: nobody will revert these handles.
    std::mem::forget((cpu, io, fill));
    assert_eq!(fixture.records(), 3);

    // The owner (this process) is alive: an orphan replay leaves its records alone.
    let report = undo::replay(fixture.state(), ReplayMode::Orphaned);
    assert_eq!((report.live.len(), report.reverted.len()), (3, 0));
    assert!(workers.iter().all(|w| w.check().is_ok()));

    let report = undo::replay(fixture.state(), ReplayMode::All);
    assert_eq!(report.reverted.len(), 3, "{report:?}");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    for worker in &workers {
        assert!(wait_until(|| worker.check().is_err()), "worker {worker} killed");
        // The replay is not their parent: reap them here so no zombie outlives the test.
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(worker.pid), None).unwrap();
    }
    for file in &files {
        assert!(!file.exists(), "{} removed", file.display());
    }
    assert_eq!(fixture.records(), 0);
}

/// Turns `helper_stress_then_sleep` into the owner process of the crash test; the value is the test
/// directory.
const CHILD_ENV: &str = "CHAOS_STRESS_CHILD";

/// In a normal run this does nothing. Re-run by `a_killed_owner_leaves_no_workers_and_replay_cleans_up` with
/// `CHILD_ENV` set, it applies a CPU stress and a disk fill, prints what it started, and sleeps until killed.
#[test]
fn helper_stress_then_sleep() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    let journal = Journal::open(dir.join("state")).unwrap();
    let cpu = CpuStress { workers: Some(1), load: 20 }.apply(&journal).unwrap();
    let fill = DiskFill::new(dir.join("data"), Size::mib(1)).apply(&journal).unwrap();
    println!("worker {} {}", cpu.workers()[0].pid, cpu.workers()[0].start_time);
    println!("fill {}", fill.files()[0].display());
    println!("ready");
    std::thread::sleep(Duration::from_secs(120));
}

/// The helper process, SIGKILLed and reaped when dropped (so a failing test does not leave it sleeping).
struct Owner(std::process::Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_killed_owner_leaves_no_workers_and_replay_cleans_up() {
    let fixture = Fixture::new();
    let mut child = Owner(
        Command::new(std::env::current_exe().unwrap())
            .args(["helper_stress_then_sleep", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &fixture.dir.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (mut worker, mut fill) = (None, None);
    // The harness prints `test NAME ... ` before the helper's first line: look for the words anywhere.
    for line in BufReader::new(child.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some((_, rest)) = line.split_once("worker ") {
            let (pid, start) = rest.split_once(' ').unwrap();
            worker = Some(ProcessId { pid: pid.parse().unwrap(), start_time: start.parse().unwrap() });
        } else if let Some((_, path)) = line.split_once("fill ") {
            fill = Some(PathBuf::from(path));
        } else if line == "ready" {
            break;
        }
    }
    let (worker, fill) = (worker.expect("the child started a worker"), fill.expect("the child filled"));
    assert!(worker.check().is_ok() && fill.exists());
    assert_eq!(fixture.records(), 2);

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // PR_SET_PDEATHSIG: the worker dies with the process that started it.
    assert!(wait_until(|| worker.check().is_err()), "worker {worker} died with its owner");

    // The fill file stays until someone replays the owner's records.
    assert!(fill.exists());
    let report = undo::replay(fixture.state(), ReplayMode::Orphaned);
    assert_eq!(report.reverted.len(), 2, "{report:?}");
    assert!(!fill.exists());
    assert_eq!(fixture.records(), 0);
}

/// Turns `helper_memory_stress_that_cannot_map` into a process whose address space is too small for the
/// stress; the value is the test directory.
const SMALL_CHILD_ENV: &str = "CHAOS_STRESS_SMALL_CHILD";

/// In a normal run this does nothing. Run by `a_worker_that_cannot_start_is_an_error_and_leaves_nothing`
/// under `ulimit -v` (768 MiB), it asks for 1 GiB of memory stress and prints the error.
#[test]
fn helper_memory_stress_that_cannot_map() {
    let Some(dir) = std::env::var_os(SMALL_CHILD_ENV) else { return };
    let journal = Journal::open(PathBuf::from(dir).join("state")).unwrap();
    let err = MemoryStress { size: Size::Bytes(GIB) }.apply(&journal).unwrap_err();
    println!("\nrefused: {err}");
}

#[test]
fn a_worker_that_cannot_start_is_an_error_and_leaves_nothing() {
    let fixture = Fixture::new();
    let output = Command::new("sh")
        .args(["-c", "ulimit -v 786432 && exec \"$0\" \"$@\""])
        .arg(std::env::current_exe().unwrap())
        .args(["helper_memory_stress_that_cannot_map", "--exact", "--nocapture", "--test-threads=1"])
        .env(SMALL_CHILD_ENV, &fixture.dir.path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.lines().find(|line| line.starts_with("refused: ")).expect("the helper was refused");
    assert!(
        line.starts_with("refused: memory worker ") && line.contains("mapping 1GiB: mmap failed"),
        "{line}"
    );
    assert_eq!(fixture.records(), 0);
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let fixture = Fixture::new();
    let data = fixture.data();
    let missing = fixture.dir.path.join("missing");
    let not_a_dir = fixture.dir.path.join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let io = |workers: u32, block_size: Size, file_size: Size| IoStress {
        path: data.clone(),
        workers,
        block_size,
        file_size,
    };
    type Apply<'a> = Box<dyn Fn(&Journal) -> Result<StressHandle, chaos_agent::AgentError> + 'a>;
    let cases: Vec<(Apply, &str)> = vec![
        (
            Box::new(|j| CpuStress { workers: Some(1), load: 0 }.apply(j)),
            "invalid load: expected a percentage from 1 to 100, found 0",
        ),
        (
            Box::new(|j| CpuStress { workers: None, load: 101 }.apply(j)),
            "invalid load: expected a percentage from 1 to 100, found 101",
        ),
        (
            Box::new(|j| CpuStress { workers: Some(0), load: 50 }.apply(j)),
            "invalid workers: expected 1 to 1024, found 0",
        ),
        (
            Box::new(|j| CpuStress { workers: Some(1025), load: 50 }.apply(j)),
            "invalid workers: expected 1 to 1024, found 1025",
        ),
        (
            Box::new(|j| MemoryStress { size: Size::Bytes(0) }.apply(j)),
            "invalid size: expected more than 0 bytes, found 0",
        ),
        (
            Box::new(|j| MemoryStress { size: Size::Percent(150.0) }.apply(j)),
            "invalid size: expected a percentage above 0% and at most 100%, found 150%",
        ),
        (
            Box::new(|j| MemoryStress { size: Size::Bytes(u64::MAX / 2) }.apply(j)),
            "invalid size: expected at most MemTotal",
        ),
        (
            Box::new(|j| DiskFill::new(missing.clone(), Size::mib(1)).apply(j)),
            "invalid path: expected an existing directory, found nothing at",
        ),
        (
            Box::new(|j| DiskFill::new(not_a_dir.clone(), Size::mib(1)).apply(j)),
            "invalid path: expected an existing directory, found a file at",
        ),
        (
            Box::new(|j| DiskFill::new(data.clone(), Size::Percent(0.0)).apply(j)),
            "invalid size: expected a percentage above 0% and at most 100%, found 0%",
        ),
        (
            Box::new(|j| io(1, Size::mib(2), Size::mib(1)).apply(j)),
            "invalid block_size: expected at most file_size (1MiB), found 2MiB",
        ),
        (
            Box::new(|j| io(1, Size::kib(4), Size::Percent(10.0)).apply(j)),
            "invalid file_size: expected bytes",
        ),
        (Box::new(|j| io(0, Size::kib(4), Size::mib(1)).apply(j)), "invalid workers: expected 1 to 1024"),
        (
            Box::new(|j| io(1, Size::mib(128), Size::mib(256)).apply(j)),
            "invalid block_size: expected at most 64MiB, found 128MiB",
        ),
        (
            Box::new(|j| io(1024, Size::kib(64), Size::Bytes(free_space(&data).unwrap())).apply(j)),
            "workers × file_size to fit in the",
        ),
        (
            Box::new(|j| IoStress { path: missing.clone(), ..io(1, Size::kib(4), Size::mib(1)) }.apply(j)),
            "invalid path: expected an existing directory, found nothing at",
        ),
    ];
    for (apply, expected) in cases {
        let err = apply(&fixture.journal).unwrap_err().to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        assert!(fixture.data_files().is_empty(), "nothing created: {:?}", fixture.data_files());
        assert_eq!(fixture.records(), 0, "no record left for {expected:?}");
    }
    assert!(!missing.exists());

    // Specs that cannot even be read.
    let parse_cases = [
        (r#"{"size": "12XB"}"#, r#"invalid size: "12XB": expected a number with a unit (B, KB, KiB"#),
        (r#"{"size": "0"}"#, "invalid size: expected more than 0 bytes, found \"0\""),
        (r#"{"size": 0}"#, "invalid size: expected more than 0 bytes"),
        (r#"{"size": "150%"}"#, "expected a percentage above 0% and at most 100%, found \"150%\""),
        (r#"{"size": "1MiB", "bytes": 5}"#, "unknown field `bytes`"),
    ];
    for (json, expected) in parse_cases {
        let err = serde_json::from_str::<MemoryStress>(json).unwrap_err().to_string();
        assert!(err.contains(expected), "{json}: expected {expected:?} in {err:?}");
    }
    let err = serde_json::from_str::<CpuStress>(r#"{"load": 50, "cores": 2}"#).unwrap_err().to_string();
    assert!(err.contains("unknown field `cores`"), "{err}");
}

#[test]
fn specs_read_with_defaults_and_round_trip() {
    let cpu: CpuStress = serde_json::from_str("{}").unwrap();
    assert_eq!(cpu, CpuStress { workers: None, load: 100 });
    assert!(cpu.effective_workers() >= 1);
    let io: IoStress = serde_json::from_str(r#"{"path": "/tmp"}"#).unwrap();
    assert_eq!(io, IoStress::in_dir("/tmp"));
    assert_eq!((io.workers, io.block_bytes().unwrap(), io.file_bytes().unwrap()), (1, 64 * 1024, 64 * MIB));
    let fill: DiskFill = serde_json::from_str(r#"{"path": "/tmp", "size": "1.5GiB"}"#).unwrap();
    assert_eq!(fill.size, Size::Bytes(1536 * MIB));
    let memory: MemoryStress = serde_json::from_str(r#"{"size": 4096}"#).unwrap();
    assert_eq!(memory.size, Size::Bytes(4096));
    for json in [
        serde_json::to_string(&cpu).unwrap(),
        serde_json::to_string(&io).unwrap(),
        serde_json::to_string(&fill).unwrap(),
    ] {
        assert!(!json.is_empty());
    }
    assert_eq!(serde_json::from_str::<IoStress>(&serde_json::to_string(&io).unwrap()).unwrap(), io);
    assert_eq!(serde_json::from_str::<DiskFill>(&serde_json::to_string(&fill).unwrap()).unwrap(), fill);
    assert_eq!(serde_json::to_string(&fill).unwrap(), r#"{"path":"/tmp","size":"1536MiB"}"#);
}

#[test]
fn a_fill_file_moved_away_is_an_error_on_revert_and_its_space_is_freed() {
    use std::os::unix::fs::MetadataExt;
    let fixture = Fixture::new();
    let handle = DiskFill::new(fixture.data(), Size::mib(4)).apply(&fixture.journal).unwrap();
    let file = handle.files()[0].clone();
    let moved = fixture.dir.path.join("moved.bin");
    std::fs::rename(&file, &moved).unwrap();

    let err = handle.revert().unwrap_err();
    assert!(matches!(err, chaos_agent::AgentError::Moved { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("moved or deleted"),
        "{message}"
    );
    // The space is freed through the descriptor held since apply, wherever the name went.
    let meta = std::fs::metadata(&moved).unwrap();
    assert_eq!((meta.len(), meta.blocks()), (0, 0));
    // Nothing more can be done by anyone: the record is gone, and a retry gives the same error, never success.
    assert_eq!(fixture.records(), 0);
    assert!(handle.is_reverted());
    assert_eq!(handle.revert().unwrap_err().to_string(), message);
}

#[test]
fn a_fill_file_replaced_by_another_is_left_alone_and_reported() {
    let fixture = Fixture::new();
    let handle = DiskFill::new(fixture.data(), Size::mib(1)).apply(&fixture.journal).unwrap();
    let file = handle.files()[0].clone();
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, b"someone else's").unwrap();

    let err = handle.revert().unwrap_err().to_string();
    assert!(err.contains("another file has its name now"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"someone else's");
    assert_eq!(fixture.records(), 0);
}

#[test]
fn replay_frees_a_fill_file_by_identity_and_drops_a_record_whose_file_is_gone() {
    use std::os::unix::fs::MetadataExt;
    let fixture = Fixture::new();
    // Three forgotten fills: one in place, one moved away, one whose name now holds another file.
    let apply = || DiskFill::new(fixture.data(), Size::mib(1)).apply(&fixture.journal).unwrap();
    let (kept, moved, replaced) = (apply(), apply(), apply());
    let undo = fixture.journal.records().0.iter().flat_map(|(_, r)| r.undo.clone()).collect::<Vec<_>>();
    assert!(undo.iter().all(|step| matches!(step, Undo::RemoveFillFile { .. })), "{undo:?}");
    let (kept_file, moved_file, replaced_file) =
        (kept.files()[0].clone(), moved.files()[0].clone(), replaced.files()[0].clone());
    std::mem::forget((kept, moved, replaced));
    let away = fixture.dir.path.join("away.bin");
    std::fs::rename(&moved_file, &away).unwrap();
    std::fs::remove_file(&replaced_file).unwrap();
    std::fs::write(&replaced_file, b"not ours").unwrap();

    let report = undo::replay(fixture.state(), ReplayMode::All);
    // A record whose file cannot be found any more is dropped (with a `failed` event): keeping it would make
    // every later replay and `revert-all` fail for a file nobody can find by name.
    assert_eq!(report.reverted.len(), 3, "{report:?}");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(fixture.records(), 0);
    assert!(!kept_file.exists());
    assert_eq!(std::fs::read(&replaced_file).unwrap(), b"not ours");
    // Moved away, it is out of reach: not deleted, not truncated (only the owner's descriptor could).
    assert_eq!(std::fs::metadata(&away).unwrap().size(), MIB);
}

/// A fill in a container's root filesystem goes through the container's task (`/proc/PID/root`); here the
/// task is a plain child process, whose root is this host's, so the paths are this host's too (the
/// confinement inside a real container's root is tested with containerd in `tests/pods_cri.rs`).
#[test]
fn a_fill_in_a_containers_root_replays_through_its_task_and_a_gone_task_ends_the_record() {
    use std::os::unix::fs::MetadataExt;
    let fixture = Fixture::new();
    let mut sleeper = Owner(Command::new("sleep").arg("60").spawn().unwrap());
    let task = ProcessId::of(sleeper.0.id() as i32).unwrap();
    // The task's root is this host's `/`: the fill must stay on that filesystem, like a container's on its
    // writable layer. The fixture's directory when it is there, else one in the build directory.
    let root_dev = std::fs::metadata("/").unwrap().dev();
    let data = [
        fixture.data(),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fill-{}", std::process::id())),
    ]
    .into_iter()
    .find(|dir| {
        let _ = std::fs::create_dir_all(dir);
        std::fs::metadata(dir).is_ok_and(|m| m.dev() == root_dev)
    })
    .expect("a writable directory on the root filesystem (the fixture's, or the build directory)");
    let fill = |size: u64| {
        let mut fill = DiskFill::new(data.clone(), Size::mib(size));
        fill.within = Some(FillRoot::Container { task });
        fill
    };
    assert!(fill(1).location().contains(&format!("root filesystem (through /proc/{}/root)", task.pid)));

    // Applied and forgotten: the record names the task, the path inside its root and the file's identity.
    let handle = fill(1).apply_within(&fixture.journal, &[]).unwrap();
    let file = handle.files()[0].clone();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), MIB);
    std::mem::forget(handle);
    let undo = fixture.journal.records().0.iter().flat_map(|(_, r)| r.undo.clone()).collect::<Vec<_>>();
    assert!(
        matches!(&undo[..], [Undo::RemoveContainerFile { task: t, file: Some(_), .. }] if *t == task),
        "{undo:?}"
    );
    let report = undo::replay(fixture.state(), ReplayMode::All);
    assert_eq!((report.reverted.len(), report.failed.len()), (1, 0), "{report:?}");
    assert!(!file.exists(), "the replay did not delete {}", file.display());

    // A directory on another filesystem than the task's root (a volume, a tmpfs) is refused: a file there
    // could outlive its record when the container goes.
    let mut elsewhere = fill(1);
    elsewhere.path = PathBuf::from("/proc");
    let e = elsewhere.apply_within(&fixture.journal, &[]).unwrap_err().to_string();
    assert!(e.contains("found another filesystem"), "{e}");
    assert_eq!(fixture.records(), 0);

    // A task that is gone took a real container's writable layer with it: the record ends, nothing is
    // touched (here the host's file stays, which shows the replay did not reach it by the host's path).
    let handle = fill(1).apply_within(&fixture.journal, &[]).unwrap();
    let file = handle.files()[0].clone();
    std::mem::forget(handle);
    sleeper.0.kill().unwrap();
    sleeper.0.wait().unwrap();
    let report = undo::replay(fixture.state(), ReplayMode::All);
    assert_eq!((report.reverted.len(), report.failed.len()), (1, 0), "{report:?}");
    assert_eq!(fixture.records(), 0);
    assert!(file.exists());
    std::fs::remove_file(&file).unwrap();

    // Bad container paths are refused before anything is written.
    for bad in ["data", "/tmp/../etc"] {
        let mut fill = fill(1);
        fill.path = PathBuf::from(bad);
        let e = fill.apply_within(&fixture.journal, &[]).unwrap_err().to_string();
        assert!(e.contains("absolute path inside the container"), "{bad}: {e}");
    }
    if data != fixture.data() {
        let _ = std::fs::remove_dir_all(&data);
    }
}
