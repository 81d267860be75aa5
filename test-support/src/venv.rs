//! Python virtual environments for the tests that drive real Python clients (toxiproxy-python, Chaos Toolkit,
//! kubernetes-validate), and running a command to completion within a deadline.
//!
//! A venv lives in the build directory under a name of its own (`target/ctk-venv`...), is built once and reused
//! while its readiness check passes. Building it holds an exclusive `flock` on `target/NAME.lock`, so parallel
//! tests of one binary and parallel test binaries never build the same venv at once: one builds it, the others
//! wait and reuse it. A venv is built in place (console scripts record its path in their `#!` line, so it
//! cannot be renamed); a half-built one from an interrupted run fails the check and is rebuilt.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// A command that ran to completion.
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

/// Runs `cmd` to completion within `deadline` (killing it if it overruns, which fails the test), stdin closed,
/// stdout and stderr collected (at most 4 MiB each).
pub fn run_within(cmd: &mut Command, deadline: Duration) -> Finished {
    run_interrupting(cmd, deadline, None)
}

/// Like [`run_within`]; with `marker`, sends the process SIGINT once that file exists (it must appear within
/// the deadline unless the process exits first, which [`Finished::marker_missed`] reports).
pub fn run_interrupting(cmd: &mut Command, deadline: Duration, marker: Option<&Path>) -> Finished {
    let what = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = drain(child.stdout.take().unwrap_or_else(|| panic!("{what}: no stdout pipe")));
    let stderr = drain(child.stderr.take().unwrap_or_else(|| panic!("{what}: no stderr pipe")));
    let end = start + deadline;
    let mut pending = marker;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("wait for {what}: {e}")) {
            break status;
        }
        if let Some(m) = pending
            && m.exists()
        {
            let pid = nix::unistd::Pid::from_raw(
                i32::try_from(child.id()).unwrap_or_else(|e| panic!("pid of {what}: {e}")),
            );
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)
                .unwrap_or_else(|e| panic!("SIGINT to {what}: {e}"));
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
    let stdout = stdout.join().unwrap_or_else(|_| panic!("the stdout reader of {what} panicked"));
    let stderr = stderr.join().unwrap_or_else(|_| panic!("the stderr reader of {what} panicked"));
    Finished { status, stdout, stderr, wall, marker_missed: pending.is_some() }
}

/// Reads a pipe to the end (at most 4 MiB kept) on its own thread, so the child writing it never blocks on a
/// full pipe.
pub fn drain(pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.take(4 << 20).read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A virtual environment in the build directory.
#[derive(Debug, Clone)]
pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin/python")
    }

    /// A console script of the venv (`bin/NAME`).
    pub fn script(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// `PATH` with the venv's bin first, so `python3` is the venv's.
    pub fn path_var(&self) -> String {
        let rest = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_string());
        format!("{}:{rest}", self.dir.join("bin").display())
    }

    /// Whether `python -c CODE` succeeds in this venv (an import check, typically).
    pub fn runs(&self, code: &str) -> bool {
        self.python().is_file()
            && run_within(Command::new(self.python()).args(["-c", code]), Duration::from_secs(60)).success()
    }
}

/// Returns the venv `target/NAME` with `packages` pip-installed, building it (under `target/NAME.lock`) when
/// `ready` says it is missing or broken. `target` is the build directory (`CARGO_TARGET_TMPDIR`'s parent).
///
/// A missing python3 (or its venv module) or a failing `pip install` (PyPI unreachable) fails the test with
/// the command's output; callers check `CHAOS_TEST_SKIP=python3` first.
pub fn ensure(target: &Path, name: &str, packages: &[&str], ready: impl Fn(&Venv) -> bool) -> Venv {
    std::fs::create_dir_all(target).unwrap_or_else(|e| panic!("create {}: {e}", target.display()));
    let lock_path = target.join(format!("{name}.lock"));
    let lock_file =
        File::create(&lock_path).unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("lock {}: {e}", lock_path.display()));
    let venv = Venv { dir: target.join(name) };
    if ready(&venv) {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv.dir);
    let made =
        run_within(Command::new("python3").arg("-m").arg("venv").arg(&venv.dir), Duration::from_secs(120));
    if !made.success() {
        let _ = std::fs::remove_dir_all(&venv.dir);
        panic!(
            "`python3 -m venv {}` failed (python3 with its venv module is required):\n{}",
            venv.dir.display(),
            made.text()
        );
    }
    let pip = run_within(
        Command::new(venv.python())
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
            .args(packages)
            .env("PIP_NO_INPUT", "1"),
        Duration::from_secs(600),
    );
    if !pip.success() {
        let _ = std::fs::remove_dir_all(&venv.dir);
        panic!("`pip install {}` failed (PyPI must be reachable):\n{}", packages.join(" "), pip.text());
    }
    assert!(
        ready(&venv),
        "{} installed {} but its readiness check still fails",
        venv.dir.display(),
        packages.join(" ")
    );
    venv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_overruns_its_deadline_fails_naming_it() {
        let caught = std::panic::catch_unwind(|| {
            run_within(Command::new("sleep").arg("30"), Duration::from_millis(200));
        });
        let Err(message) = caught else { panic!("an overrun must fail") };
        let message = message.downcast_ref::<String>().map_or("", String::as_str);
        assert!(message.contains("did not finish within"), "{message}");
    }

    #[test]
    fn output_and_exit_codes_are_collected() {
        let done = run_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!((done.code(), done.stdout.as_str(), done.stderr.as_str()), (3, "out\n", "err\n"));
        let killed = run_within(Command::new("sh").args(["-c", "kill -9 $$"]), Duration::from_secs(10));
        assert_eq!(killed.code(), 137);
    }
}
