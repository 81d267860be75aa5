//! Proves that the published PyPI client `toxiproxy-python` 0.1.1 works unchanged against `chaos proxy`: runs
//! tests/python/toxiproxy_python_compat.py with a venv's Python against a server on 127.0.0.1:8474, the address that
//! client hard-codes — inside a network namespace the test makes, so a Toxiproxy (or anything) the user runs on
//! the host's 127.0.0.1:8474 neither breaks the test nor is touched by it.
//!
//! Needs root (the namespace), `python3` with the `venv` module and access to PyPI the first time: the venv is
//! made under the target directory (`target/py-venv`) and reused. A missing Python or a failed `pip install`
//! fails the test; only `CHAOS_TEST_SKIP=python3` skips it when python3 is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chaos_test_support::skip;
use support::{ChaosProxy, Netns};

/// The client version these checks were written against (its source was read to write them).
const PACKAGE: &str = "toxiproxy-python==0.1.1";
/// The port toxiproxy-python hard-codes (`toxiproxy.api.APIConsumer.port`).
const TOXIPROXY_PORT: u16 = 8474;

/// A command's exit status and combined output.
struct Finished {
    success: bool,
    output: String,
}

/// Runs `cmd` to completion within `deadline`, killing it if it overruns, and collects stdout and stderr.
fn run(cmd: &mut Command, deadline: Duration) -> Finished {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = stdout.join().unwrap() + &stderr.join().unwrap();
    Finished { success: status.success(), output }
}

/// Reads a child's pipe to the end on its own thread, so the child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn imports_toxiproxy(python: &Path) -> bool {
    python.exists()
        && run(Command::new(python).args(["-c", "import toxiproxy"]), Duration::from_secs(60)).success
}

/// Returns the venv's Python with toxiproxy-python importable, creating the venv and installing it when needed.
fn venv_python() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`; the venv sits beside it as `<target dir>/py-venv`.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").to_path_buf();
    let venv = target.join("py-venv");
    let python = venv.join("bin").join("python");
    if imports_toxiproxy(&python) {
        return python;
    }
    if !python.exists() {
        // Build it under a private name and rename it into place, so a concurrent run never sees half a venv; if
        // another run got there first the rename fails and its venv is used.
        let scratch = target.join(format!("py-venv.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let made = run(Command::new("python3").arg("-m").arg("venv").arg(&scratch), Duration::from_secs(120));
        assert!(
            made.success,
            "`python3 -m venv {}` failed (python3 with venv is required):\n{}",
            scratch.display(),
            made.output
        );
        if std::fs::rename(&scratch, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    let pip = run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", PACKAGE])
            .env("PIP_NO_INPUT", "1"),
        Duration::from_secs(300),
    );
    assert!(
        pip.success,
        "`pip install {PACKAGE}` into {} failed (PyPI must be reachable):\n{}",
        venv.display(),
        pip.output
    );
    assert!(
        imports_toxiproxy(&python),
        "`import toxiproxy` still fails in {} after pip install",
        venv.display()
    );
    python
}

#[test]
fn toxiproxy_python_client_works_unchanged() {
    if !skip::require("python3", skip::program("python3")) {
        return;
    }
    let python = venv_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/toxiproxy_python_compat.py");

    // The client can only reach 127.0.0.1:8474: that address in a namespace of this test's own, so whatever
    // holds the host's 8474 (a user's Toxiproxy) makes no difference and is never touched.
    let netns = Netns::new("py");
    let server = ChaosProxy::start_in(Some(&netns.0), &TOXIPROXY_PORT.to_string(), &[]);
    assert_eq!(server.api.port(), TOXIPROXY_PORT);

    let result = run(
        Command::new("ip")
            .args(["netns", "exec", &netns.0])
            .arg(&python)
            .arg(&script)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_PROXY", "127.0.0.1,localhost"),
        Duration::from_secs(120),
    );
    assert!(result.success, "{} failed against chaos proxy:\n{}", script.display(), result.output);
    // Shown with `cargo test -- --nocapture`.
    eprintln!("{}", result.output);
}
