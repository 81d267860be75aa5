//! The binary's output as a shell user meets it: a reader that goes away early (`| head -1`) ends a printing
//! command quietly instead of a panic, and the man pages generated from the clap tree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use support::chaos_bin;

/// Runs `chaos ARGS`, reads one line of its stdout, closes the pipe, and returns (exit status, stderr).
fn head_1(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child =
        Command::new(chaos_bin()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "chaos {args:?} printed nothing");
    // The reader is gone (as `head -1` exits): the next writes hit a closed pipe.
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (child.wait().unwrap(), stderr)
}

#[test]
fn a_reader_that_goes_away_ends_printing_commands_quietly() {
    for args in [&["completions", "zsh"][..], &["schema"], &["man"], &["completions", "bash"]] {
        let (status, stderr) = head_1(args);
        assert!(!stderr.contains("panicked"), "chaos {args:?} panicked on a closed pipe: {stderr}");
        assert_ne!(status.code(), Some(101), "chaos {args:?}: {status:?} {stderr}");
        // Either it finished before noticing, or it ended as a SIGPIPE ends `cat` or `ls` (status 141).
        assert!(status.success() || status.code() == Some(141), "chaos {args:?}: {status:?} {stderr}");
        assert!(stderr.is_empty(), "chaos {args:?} said something about it: {stderr}");
    }
}

#[test]
fn man_pages_come_from_the_command_tree() {
    let out = Command::new(chaos_bin()).arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH chaos 1"), "{page}");
    assert!(page.contains("Run an experiment"), "the subcommands are listed: {page}");

    let dir = support::temp_dir("cli", "man");
    let out = Command::new(chaos_bin()).args(["man", "--dir"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", support::describe_output(&out));
    for name in ["chaos.1", "chaos-run.1", "chaos-agent-inject.1", "chaos-proxies-toxic-add.1"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
    let run = std::fs::read_to_string(dir.join("chaos-run.1")).unwrap();
    assert!(run.contains("\\-\\-dry\\-run"), "chaos-run.1 documents its flags");
    // The internal watchdog is not a command people run: no page.
    assert!(!dir.join("chaos-agent-watchdog.1").exists());
}

/// `chaos ARGS` on a pseudo-terminal (util-linux `script`), with `env`; returns what the terminal showed.
fn on_a_terminal(args: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{} {args}", chaos_bin().display()), "/dev/null"]);
    cmd.env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("script(1) from util-linux runs the terminal tests");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_verdict_is_colored_on_a_terminal_only_and_no_color_is_honoured() {
    let file = support::repo_path("tests/data/probe-only.yaml");
    let run = format!("run {} --quiet", file.display());
    let green = "\x1b[1;32mPASSED\x1b[0m";

    let shown = on_a_terminal(&run, &[]);
    assert!(shown.contains(green), "no color on a terminal: {shown:?}");
    let shown = on_a_terminal(&run, &[("NO_COLOR", "1")]);
    assert!(shown.contains("PASSED") && !shown.contains('\x1b'), "NO_COLOR ignored: {shown:?}");
    let shown = on_a_terminal(&format!("{run} --color never"), &[]);
    assert!(shown.contains("PASSED") && !shown.contains('\x1b'), "--color never ignored: {shown:?}");

    // Into a pipe and a log file: plain text, unless asked for.
    let log = support::temp_dir("cli", "color").join("stderr.log");
    let out = Command::new(chaos_bin())
        .args(["run", file.to_str().unwrap()])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("PASSED") && !stdout.contains('\x1b'), "{stdout:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("DEBUG") || logged.contains("INFO"), "no log lines to look at: {logged}");
    assert!(!logged.contains('\x1b'), "ANSI codes in a log file: {logged}");
    let out = Command::new(chaos_bin())
        .args(["run", file.to_str().unwrap(), "--color", "always"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(green));
}
