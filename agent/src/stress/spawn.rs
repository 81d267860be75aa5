//! Worker processes: forked (no exec) from one long-lived spawner thread, killed with their parent, reaped on
//! revert.
//!
//! The library is linked into test binaries and the `chaos` binary, so there is no worker executable to exec:
//! a worker is a `fork(2)` of the agent that runs a loop of raw system calls. After `fork` in a multithreaded
//! process the child may only make async-signal-safe calls, so everything it needs (buffers, descriptors,
//! names) is prepared before forking and the child never allocates, locks, logs or returns.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, not the process; tokio blocking threads and
//! test threads come and go, so every fork happens on one dedicated thread that lives as long as the process.
//! A worker therefore dies with the agent, however the agent dies.
//!
//! Each worker reports over a socket once it is doing its work (its memory touched, its first block written
//! and synced) or why it could not; a worker that exits first closes the socket. `apply` waits for every
//! report, so a fault that could not start is an error rather than a fault that does nothing.

// fork(2) and the worker loops are raw libc calls; nothing else in the crate needs `unsafe`.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal as NixSignal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::placement::{MAX_HIERARCHIES, Placement};
use super::size::human;
use crate::process::{ProcessId, procfs};
use crate::{AgentError, Signal};

/// How long a SIGKILLed worker may take to exit (one in uninterruptible IO finishes its request first).
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// One byte of status then the errno, little-endian: what a worker sends once.
const REPORT_LEN: usize = 5;
const READY: u8 = 0;
const FAILED_MAP: u8 = 1;
const FAILED_WRITE: u8 = 2;
const FAILED_SYNC: u8 = 3;
const FAILED_CGROUP: u8 = 4;

/// Exit status of a worker whose parent died between `fork` and `PR_SET_PDEATHSIG`.
const EXIT_ORPHANED: i32 = 70;
/// Exit status of a worker that reported a failure.
const EXIT_FAILED: i32 = 71;

/// A CPU worker's duty cycle period.
const CPU_PERIOD_NS: u64 = 100_000_000;
/// How often a memory worker touches its pages again (so they stay resident, or come back from swap).
const RETOUCH_NS: u64 = 5_000_000_000;
/// How long an IO worker waits after a failed write or sync before trying again.
const IO_RETRY_NS: u64 = 100_000_000;

/// What one worker does; everything in it is ready before the fork.
#[derive(Debug)]
pub(super) enum Work {
    /// Spin for `load`% of every 100 ms, sleep the rest.
    Cpu { load: u8 },
    /// Map `bytes` of anonymous memory, write one byte per page, keep it resident.
    Memory { bytes: usize, page: usize },
    /// Rewrite `file` circularly with `block`, `fdatasync` after each write, wrapping at `file_size`.
    Io { file: OwnedFd, path: PathBuf, block: Arc<[u8]>, file_size: u64 },
}

/// A worker just forked, with the socket it reports on.
#[derive(Debug)]
pub(super) struct Spawned {
    pub pid: i32,
    ready: UnixStream,
    /// `cpu`, `memory` or `io`, for messages.
    label: &'static str,
    /// What a failure report is about (`writing /path`), for messages.
    context: String,
    /// Set once [`wait_ready`] has collected the worker's exit: its pid may belong to another process now.
    reaped: Cell<bool>,
}

/// A batch of work for the spawner thread and where to send the pids.
struct Request {
    work: Vec<Work>,
    /// `cgroup.procs` descriptors every worker writes itself into first (`-1` for none).
    cgroups: [RawFd; MAX_HIERARCHIES],
    reply: mpsc::SyncSender<io::Result<Vec<Spawned>>>,
}

/// What the child needs besides its `Work`, prepared before the fork.
struct Setup {
    parent: libc::pid_t,
    /// NUL-terminated process name (at most 15 bytes before the NUL).
    name: &'static [u8],
    ready: RawFd,
    devnull: RawFd,
    /// `cgroup.procs` descriptors the child writes itself into before it starts its work (`-1` for none).
    cgroups: [RawFd; MAX_HIERARCHIES],
    /// Descriptors the child keeps besides 0-2 (`-1` for none): the report socket, the work's file, `cgroups`.
    keep: [RawFd; KEEP],
}

/// How many descriptors a child keeps: its report socket, its work's file and the cgroups it joins.
const KEEP: usize = 2 + MAX_HIERARCHIES;

// === impl Work ===

impl Work {
    fn name(&self) -> &'static [u8] {
        match self {
            Work::Cpu { .. } => b"chaos-cpu\0",
            Work::Memory { .. } => b"chaos-mem\0",
            Work::Io { .. } => b"chaos-io\0",
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Work::Cpu { .. } => "cpu",
            Work::Memory { .. } => "memory",
            Work::Io { .. } => "io",
        }
    }

    fn context(&self) -> String {
        match self {
            Work::Cpu { load } => format!("spinning at {load}%"),
            Work::Memory { bytes, .. } => format!("mapping {}", human(*bytes as u64)),
            Work::Io { path, .. } => format!("writing {}", path.display()),
        }
    }

    fn fd(&self) -> RawFd {
        match self {
            Work::Io { file, .. } => file.as_raw_fd(),
            Work::Cpu { .. } | Work::Memory { .. } => -1,
        }
    }
}

// === the spawner thread ===

/// Forks one worker per item of `work` on the spawner thread and returns them in order; each joins
/// `placement`'s cgroup (when given) before it does anything else. Either every worker is started or none is
/// (those already forked are killed and reaped). Descriptors in `work` are closed in this process once forked.
pub(super) fn spawn(work: Vec<Work>, placement: Option<&Placement>) -> Result<Vec<Spawned>, AgentError> {
    let mut cgroups = [-1; MAX_HIERARCHIES];
    if let Some(placement) = placement {
        for (slot, fd) in cgroups.iter_mut().zip(placement.fds()) {
            *slot = fd;
        }
    }
    let (reply, replies) = mpsc::sync_channel(1);
    // `placement` outlives the request: the reply is awaited below.
    submit(Request { work, cgroups, reply })?;
    let spawned = replies.recv().map_err(|_| {
        AgentError::io("starting stress workers", io::Error::other("the spawner thread stopped"))
    })?;
    spawned.map_err(|e| AgentError::io("forking a stress worker", e))
}

/// Hands `request` to the spawner thread, starting it the first time (or again if it ever stopped).
fn submit(request: Request) -> Result<(), AgentError> {
    static SPAWNER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);
    // Replacing a whole sender cannot leave it half-edited, so a poisoned lock is still sound.
    let mut spawner = SPAWNER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let request = match spawner.as_ref() {
        Some(sender) => match sender.send(request) {
            Ok(()) => return Ok(()),
            Err(mpsc::SendError(request)) => request,
        },
        None => request,
    };
    let (sender, requests) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("chaos-stress-spawner".into())
        .spawn(move || {
            for request in requests {
                let result = fork_all(&request.work, request.cgroups);
                // A caller that stopped waiting cannot revert what it never learnt of: take it back here.
                if let Err(mpsc::SendError(Ok(orphans))) = request.reply.send(result) {
                    abandon(&orphans);
                }
            }
        })
        .map_err(|e| AgentError::io("starting the stress spawner thread", e))?;
    sender.send(request).map_err(|_| {
        AgentError::io("starting stress workers", io::Error::other("the spawner thread stopped"))
    })?;
    *spawner = Some(sender);
    Ok(())
}

/// Runs on the spawner thread: forks one worker per item, or none.
fn fork_all(work: &[Work], cgroups: [RawFd; MAX_HIERARCHIES]) -> io::Result<Vec<Spawned>> {
    let devnull = OpenOptions::new().read(true).write(true).open("/dev/null")?;
    let parent = std::process::id() as libc::pid_t;
    let mut spawned: Vec<Spawned> = Vec::with_capacity(work.len());
    for item in work {
        let forked = UnixStream::pair().and_then(|(ours, theirs)| {
            let mut keep = [-1; KEEP];
            keep[0] = theirs.as_raw_fd();
            keep[1] = item.fd();
            keep[2..].copy_from_slice(&cgroups);
            let setup = Setup {
                parent,
                name: item.name(),
                ready: theirs.as_raw_fd(),
                devnull: devnull.as_raw_fd(),
                cgroups,
                keep,
            };
            // SAFETY: the child runs `worker`, which makes only async-signal-safe calls on memory prepared
            // before the fork and never returns; the parent only reads the result.
            match unsafe { libc::fork() } {
                -1 => Err(io::Error::last_os_error()),
                0 => worker(&setup, item),
                pid => Ok(Spawned {
                    pid,
                    ready: ours,
                    label: item.label(),
                    context: item.context(),
                    reaped: Cell::new(false),
                }),
            }
        });
        match forked {
            Ok(worker) => spawned.push(worker),
            Err(e) => {
                abandon(&spawned);
                return Err(e);
            }
        }
    }
    Ok(spawned)
}

// === in the parent ===

/// Waits until every worker reports that it is doing its work, for at most `timeout` in all. A worker that
/// reports a failure, exits first or stays silent makes this an error (the caller then kills them all).
pub(super) fn wait_ready(spawned: &[Spawned], timeout: Duration) -> Result<(), AgentError> {
    let deadline = Instant::now() + timeout;
    for worker in spawned {
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let what = || format!("{} worker {} {}", worker.label, worker.pid, worker.context);
        worker.ready.set_read_timeout(Some(remaining)).map_err(|e| AgentError::io(what(), e))?;
        let mut report = [0u8; REPORT_LEN];
        match (&worker.ready).read_exact(&mut report) {
            Ok(()) if report[0] == READY => {}
            Ok(()) => {
                let errno = i32::from_le_bytes([report[1], report[2], report[3], report[4]]);
                let step = match report[0] {
                    FAILED_MAP => "mmap",
                    FAILED_WRITE => "pwrite",
                    FAILED_SYNC => "fdatasync",
                    FAILED_CGROUP => "joining the cgroup (cgroup.procs)",
                    _ => "an unknown step",
                };
                return Err(AgentError::io(
                    format!("{}: {step} failed", what()),
                    io::Error::from_raw_os_error(errno),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let status = reap(worker.pid)?;
                worker.reaped.set(true);
                return Err(AgentError::io(
                    format!("{}: exited before it was ready", what()),
                    io::Error::other(describe(status)),
                ));
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(AgentError::io(
                    format!("{}: not ready within {}s", what(), timeout.as_secs()),
                    io::ErrorKind::TimedOut.into(),
                ));
            }
            Err(e) => return Err(AgentError::io(what(), e)),
        }
    }
    Ok(())
}

/// Kills and reaps workers not handed out yet. Their pids cannot have been reused: they are this process's
/// children and only [`wait_ready`] may have waited for one (and marked it).
pub(super) fn abandon(spawned: &[Spawned]) {
    let unreaped = || spawned.iter().filter(|worker| !worker.reaped.get());
    for worker in unreaped() {
        let _ = kill(Pid::from_raw(worker.pid), NixSignal::SIGKILL);
    }
    for worker in unreaped() {
        let _ = reap(worker.pid);
        worker.reaped.set(true);
    }
}

/// SIGKILLs `worker` if it is still the process started (same pid and start time, zombie or not) and waits
/// for it, so no zombie stays behind. Succeeds when it is already gone.
pub(super) fn kill_and_reap(worker: &ProcessId) -> Result<(), AgentError> {
    match procfs::stat(worker.pid)? {
        Some(stat) if stat.start_time == worker.start_time => {}
        // Reaped already (by an earlier revert), and perhaps the pid reused since: nothing of ours is left.
        _ => return Ok(()),
    }
    match kill(Pid::from_raw(worker.pid), NixSignal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(source) => return Err(AgentError::Signal { signal: Signal::KILL, pid: worker.pid, source }),
    }
    reap(worker.pid).map(|_| ())
}

/// Waits (at most [`REAP_TIMEOUT`]) for the child `pid` to exit and collects it; `None` when it is not a
/// child of this process (any more).
fn reap(pid: i32) -> Result<Option<WaitStatus>, AgentError> {
    let deadline = Instant::now() + REAP_TIMEOUT;
    // A SIGKILLed worker is gone within microseconds (an idle one) to a few ms (one unmapping a large
    // region): poll finely, capped at 1 ms, so a revert is not slower than the exit itself by much.
    let mut pause = Duration::from_micros(50);
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(Some(status)),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => return Ok(None),
            Err(e) => return Err(AgentError::io(format!("waiting for worker {pid}"), e.into())),
        }
        if Instant::now() >= deadline {
            return Err(AgentError::io(
                format!("waiting for worker {pid}: still running {}s after SIGKILL", REAP_TIMEOUT.as_secs()),
                io::ErrorKind::TimedOut.into(),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

fn describe(status: Option<WaitStatus>) -> String {
    match status {
        Some(WaitStatus::Exited(_, EXIT_ORPHANED)) => "its parent had gone".into(),
        Some(WaitStatus::Exited(_, code)) => format!("exit status {code}"),
        Some(WaitStatus::Signaled(_, NixSignal::SIGKILL, _)) => "killed by SIGKILL (the OOM killer?)".into(),
        Some(WaitStatus::Signaled(_, signal, _)) => format!("killed by {signal}"),
        _ => "reaped by someone else".into(),
    }
}

/// The size of a memory page.
pub(super) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096)
}

// === in the child: async-signal-safe calls only ===

/// The child's whole life. No allocation, no locks, no formatting: raw system calls on prepared memory.
fn worker(setup: &Setup, work: &Work) -> ! {
    // SAFETY: every call below is an async-signal-safe system call wrapper on memory owned by this process.
    unsafe {
        let zero: libc::c_ulong = 0;
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, zero, zero, zero);
        // The parent may have died before PDEATHSIG was armed: then nobody would ever kill this worker.
        if libc::getppid() != setup.parent {
            libc::_exit(EXIT_ORPHANED);
        }
        libc::prctl(libc::PR_SET_NAME, setup.name.as_ptr() as libc::c_ulong, zero, zero, zero);
        // Handlers inherited from the agent (tokio's) must not run here: default actions, nothing blocked.
        for signal in 1..32 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // Copies of the agent's descriptors (sockets, pipes of commands being run) would keep them open.
        for fd in 0..3 {
            // An agent started with 0-2 closed may have been given a kept descriptor there.
            if !setup.keep.contains(&fd) {
                libc::dup2(setup.devnull, fd);
            }
        }
        close_all_but(setup.keep);
        // Into the target's cgroup before the first page is touched or cycle spent, so its limits and its
        // accounting see all of it (memory charged elsewhere first would stay charged there).
        for fd in setup.cgroups {
            if fd >= 0 {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    report(setup.ready, FAILED_CGROUP, errno());
                    libc::_exit(EXIT_FAILED);
                }
                libc::close(fd);
            }
        }
    }
    match work {
        Work::Cpu { load } => cpu(setup.ready, *load),
        Work::Memory { bytes, page } => memory(setup.ready, *bytes, *page),
        Work::Io { file, block, file_size, .. } => disk_io(setup.ready, file.as_raw_fd(), block, *file_size),
    }
}

fn cpu(ready: RawFd, load: u8) -> ! {
    report(ready, READY, 0);
    let busy = CPU_PERIOD_NS * u64::from(load) / 100;
    loop {
        let start = now_ns();
        while now_ns().wrapping_sub(start) < busy {
            std::hint::spin_loop();
        }
        if busy < CPU_PERIOD_NS {
            sleep_ns(CPU_PERIOD_NS.saturating_sub(now_ns().wrapping_sub(start)));
        }
    }
}

fn memory(ready: RawFd, bytes: usize, page: usize) -> ! {
    // SAFETY: async-signal-safe calls; the mapping is written only within its length.
    unsafe {
        // Under memory pressure the stress, not a real service, is the OOM killer's first choice.
        let path = b"/proc/self/oom_score_adj\0";
        let fd = libc::open(path.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"1000".as_ptr().cast(), 4);
            libc::close(fd);
        }
        let region = libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if region == libc::MAP_FAILED {
            report(ready, FAILED_MAP, errno());
            libc::_exit(EXIT_FAILED);
        }
        let base = region.cast::<u8>();
        let mut round: u8 = 1;
        loop {
            let mut offset = 0;
            while offset < bytes {
                std::ptr::write_volatile(base.add(offset), round);
                offset += page;
            }
            if round == 1 {
                report(ready, READY, 0);
            }
            round = round.wrapping_add(1).max(2);
            sleep_ns(RETOUCH_NS);
        }
    }
}

fn disk_io(ready: RawFd, fd: RawFd, block: &[u8], file_size: u64) -> ! {
    let len = block.len() as u64;
    let mut offset: u64 = 0;
    let mut started = false;
    loop {
        // SAFETY: `block` is valid for `block.len()` bytes; `fd` is open for writing.
        let failed = unsafe {
            if libc::pwrite(fd, block.as_ptr().cast(), block.len(), offset as libc::off_t) < 0 {
                Some(FAILED_WRITE)
            } else if libc::fdatasync(fd) < 0 {
                Some(FAILED_SYNC)
            } else {
                None
            }
        };
        match failed {
            // Before the first block is on disk, a failure means the fault cannot work: say so and exit.
            Some(step) if !started => {
                report(ready, step, errno());
                // SAFETY: `_exit` is async-signal-safe and skips everything the parent's atexit would do.
                unsafe { libc::_exit(EXIT_FAILED) }
            }
            // Later (the disk filled up meanwhile, say), keep trying: the fault lasts until it is reverted.
            Some(_) => sleep_ns(IO_RETRY_NS),
            None => {
                if !started {
                    report(ready, READY, 0);
                    started = true;
                }
                offset += len;
                if offset + len > file_size {
                    offset = 0;
                }
            }
        }
    }
}

/// Sends the one report and closes the socket; errors are ignored (the parent sees EOF or a timeout).
fn report(ready: RawFd, status: u8, errno: i32) {
    let e = errno.to_le_bytes();
    let message = [status, e[0], e[1], e[2], e[3]];
    // SAFETY: `message` is a local array of REPORT_LEN bytes; send and close are async-signal-safe.
    unsafe {
        libc::send(ready, message.as_ptr().cast(), REPORT_LEN, libc::MSG_NOSIGNAL);
        libc::close(ready);
    }
}

/// Closes every descriptor from 3 up except those in `keep` (`-1` entries are ignored).
///
/// # Safety
/// Only in the forked child, where no other code uses the descriptors closed.
unsafe fn close_all_but(mut keep: [RawFd; KEEP]) {
    // An insertion sort on the stack: no allocation after fork.
    for i in 1..KEEP {
        let mut j = i;
        while j > 0 && keep[j - 1] > keep[j] {
            keep.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut next: RawFd = 3;
    for fd in keep {
        if fd >= next {
            if fd > next {
                // SAFETY: forwarded from the caller.
                unsafe { close_range(next, fd - 1) };
            }
            next = fd + 1;
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { close_range(next, RawFd::MAX) };
}

/// `close_range(2)` (Linux 5.9), or a loop of `close` up to the descriptor limit on older kernels.
///
/// # Safety
/// As [`close_all_but`].
unsafe fn close_range(first: RawFd, last: RawFd) {
    // SAFETY: plain system calls on integers.
    unsafe {
        let (low, high) = (first as libc::c_uint, last as libc::c_uint);
        if libc::syscall(libc::SYS_close_range, low, high, 0 as libc::c_uint) == 0 {
            return;
        }
        let mut limit: libc::rlimit = std::mem::zeroed();
        let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur.min(1 << 20) as RawFd
        } else {
            1 << 16
        };
        let mut fd = first;
        while fd <= last && fd < top {
            libc::close(fd);
            fd += 1;
        }
    }
}

fn errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

fn now_ns() -> u64 {
    // SAFETY: `now` is a valid timespec to write into.
    unsafe {
        let mut now: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
        (now.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(now.tv_nsec as u64)
    }
}

fn sleep_ns(ns: u64) {
    // SAFETY: `period` is a valid timespec; a null remainder is allowed.
    unsafe {
        let mut period: libc::timespec = std::mem::zeroed();
        period.tv_sec = (ns / 1_000_000_000) as libc::time_t;
        period.tv_nsec = (ns % 1_000_000_000) as libc::c_long;
        libc::nanosleep(&period, std::ptr::null_mut());
    }
}
