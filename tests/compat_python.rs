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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chaos_test_support::{skip, venv};
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

/// Runs `cmd` to completion within `deadline`, killing it if it overruns; stdout and stderr together.
fn run(cmd: &mut Command, deadline: Duration) -> Finished {
    let done = venv::run_within(cmd, deadline);
    Finished { success: done.success(), output: done.stdout + &done.stderr }
}

/// Returns the venv's Python (`target/py-venv`) with toxiproxy-python importable, built once under a lock.
fn venv_python() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir");
    venv::ensure(target, "py-venv", &[PACKAGE], |v| v.runs("import toxiproxy")).python()
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
