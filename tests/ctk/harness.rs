//! What tests/ctk_differential.rs and tests/ctk_invalid.rs share: the test venv with the real Chaos Toolkit
//! (target/ctk-venv, built once, under a lock, reused), the corpus' paths, and running a command to completion
//! within a deadline, optionally sending SIGINT once a marker file appears.
//!
//! Chaos Toolkit's CLI is also named `chaos`: it is always called by path (target/ctk-venv/bin/chaos), with
//! `--no-version-check` (no network) and `--no-log-file`.
#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// What the venv holds, pinned: the reference versions of ../shared/reference/chaostoolkit-format.md.
pub const PACKAGES: &[&str] = &[
    "chaostoolkit==1.19.0",
    "chaostoolkit-lib==1.44.0",
    "chaostoolkit-toxiproxy==0.3.1",
    "jsonpath2==0.4.5",
];
/// What `chaos --version` of the venv must say.
pub const CTK_VERSION: &str = "chaos, version 1.19.0";

/// The workspace root (the `chaos` package's directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// tests/ctk.
pub fn ctk_dir() -> PathBuf {
    root().join("tests/ctk")
}

/// The target directory (CARGO_TARGET_TMPDIR is `<target dir>/tmp`).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").to_path_buf()
}

/// The venv with Chaos Toolkit.
#[derive(Debug, Clone)]
pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    /// Chaos Toolkit's `chaos`.
    pub fn ctk(&self) -> PathBuf {
        self.dir.join("bin/chaos")
    }

    pub fn python(&self) -> PathBuf {
        self.dir.join("bin/python")
    }

    /// `PATH` with the venv's bin first, so `python3` is the venv's for both runners.
    pub fn path_var(&self) -> String {
        let rest = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_string());
        format!("{}:{rest}", self.dir.join("bin").display())
    }

    fn works(&self) -> bool {
        if !self.ctk().is_file() || !self.python().is_file() {
            return false;
        }
        let version =
            run(Command::new(self.ctk()).args(["--no-version-check", "--version"]), Duration::from_secs(60));
        let imports = run(
            Command::new(self.python()).args(["-c", "import jsonpath2, chaostoxi, chaoslib"]),
            Duration::from_secs(60),
        );
        version.success() && version.stdout.trim() == CTK_VERSION && imports.success()
    }
}

/// Returns target/ctk-venv with the pinned Chaos Toolkit, creating it when missing or broken. Parallel test
/// binaries serialise on target/ctk-venv.lock, so one builds it and the others reuse it. A missing python3 (or
/// its venv module) or a failing `pip install` fails the test; the caller checks CHAOS_TEST_SKIP=python3 first.
pub fn venv() -> Venv {
    let target = target_dir();
    std::fs::create_dir_all(&target).expect("target dir");
    let lock_file = File::create(target.join("ctk-venv.lock")).expect("create target/ctk-venv.lock");
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("lock target/ctk-venv.lock: {e}"));
    let venv = Venv { dir: target.join("ctk-venv") };
    if venv.works() {
        return venv;
    }
    // Built in place (console scripts record the venv's path in their #! line, so it cannot be renamed), under
    // the lock; a half-built one from an interrupted run is removed first.
    let _ = std::fs::remove_dir_all(&venv.dir);
    let made = run(Command::new("python3").arg("-m").arg("venv").arg(&venv.dir), Duration::from_secs(120));
    assert!(
        made.success(),
        "`python3 -m venv {}` failed (python3 with venv is required):\n{}",
        venv.dir.display(),
        made.text()
    );
    let pip = run(
        Command::new(venv.python())
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
            .args(PACKAGES)
            .env("PIP_NO_INPUT", "1"),
        Duration::from_secs(600),
    );
    if !pip.success() {
        let _ = std::fs::remove_dir_all(&venv.dir);
        panic!("`pip install {}` failed (PyPI must be reachable):\n{}", PACKAGES.join(" "), pip.text());
    }
    assert!(venv.works(), "Chaos Toolkit installed in {} but `chaos --version` fails", venv.dir.display());
    venv
}

/// A finished command.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub wall: Duration,
    /// An interrupt marker was asked for and the process exited before it appeared (no SIGINT was sent).
    pub marker_missed: bool,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code; a death by signal is 128 + the signal, as a shell says.
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.status.code().unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }

    /// stdout and stderr, for failure messages.
    pub fn text(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion within `deadline` (killing it if it overruns, which fails the test).
pub fn run(cmd: &mut Command, deadline: Duration) -> Finished {
    run_interrupting(cmd, deadline, None)
}

/// Like [`run`]; with `marker`, sends the process SIGINT once that file exists (it must appear within the
/// deadline).
pub fn run_interrupting(cmd: &mut Command, deadline: Duration, marker: Option<&Path>) -> Finished {
    let what = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let end = start + deadline;
    let mut pending = marker;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if let Some(m) = pending
            && m.exists()
        {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("send SIGINT");
            pending = None;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {deadline:?}{}",
                if pending.is_some() { " (its interrupt marker never appeared)" } else { "" }
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let wall = start.elapsed();
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    Finished { status, stdout, stderr, wall, marker_missed: pending.is_some() }
}

/// Reads a child's pipe to the end (at most 4 MiB kept) on its own thread.
fn drain(pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.take(4 << 20).read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
