//! What tests/ctk_differential.rs and tests/ctk_invalid.rs share: the test venv with the real Chaos Toolkit
//! (target/ctk-venv, built once, under a lock, reused), the corpus' paths, and (from chaos_test_support::venv)
//! running a command to completion within a deadline, optionally sending SIGINT once a marker file appears.
//!
//! Chaos Toolkit's CLI is also named `chaos`: it is always called by path (target/ctk-venv/bin/chaos), with
//! `--no-version-check` (no network) and `--no-log-file`.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use chaos_test_support::venv::{Finished, Venv, run_interrupting, run_within as run};

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

/// Chaos Toolkit's `chaos` in `venv`.
pub fn ctk(venv: &Venv) -> PathBuf {
    venv.script("chaos")
}

/// Whether `venv` has the pinned Chaos Toolkit: its `chaos --version` and the extensions' imports.
fn works(venv: &Venv) -> bool {
    if !ctk(venv).is_file() || !venv.python().is_file() {
        return false;
    }
    let version =
        run(Command::new(ctk(venv)).args(["--no-version-check", "--version"]), Duration::from_secs(60));
    version.success()
        && version.stdout.trim() == CTK_VERSION
        && venv.runs("import jsonpath2, chaostoxi.proxy.actions, chaoslib")
}

/// Returns target/ctk-venv with the pinned Chaos Toolkit, creating it when missing or broken (once, under a
/// lock: see `chaos_test_support::venv`). The caller checks CHAOS_TEST_SKIP=python3 first.
pub fn venv() -> Venv {
    chaos_test_support::venv::ensure(&target_dir(), "ctk-venv", PACKAGES, works)
}
