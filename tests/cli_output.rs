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

#[test]
fn report_paths_are_checked_before_anything_runs() {
    let dir = support::temp_dir("cli", "outputs");
    let marker = dir.join("probe-ran");
    let file = dir.join("touch.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: chaos/v1\ntitle: touches a marker\nsteady_state:\n  - {{ name: touch, command: {{ run: [touch, \
             \"{}\"], timeout: 5s }} }}\nbaseline: 0s\nrecovery: 0s\nmethod: []\n",
            marker.display()
        ),
    )
    .unwrap();
    // A parent that is a file: the summary cannot be written. Exit 2, named, and the probe never ran.
    let not_a_dir = dir.join("plain-file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let summary = not_a_dir.join("summary.md");
    let out = Command::new(chaos_bin())
        .args(["run", file.to_str().unwrap(), "--quiet", "--summary"])
        .arg(&summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", support::describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("--summary {}", summary.display())), "{stderr}");
    assert_eq!(stderr.matches("os error").count(), 1, "the cause once: {stderr}");
    assert!(!marker.exists(), "the experiment ran before its report path was checked");

    // A missing directory is created, as `chaos demo --reports` does, and the run writes there.
    let journal = dir.join("out/nested/journal.json");
    let out = Command::new(chaos_bin())
        .args(["run", file.to_str().unwrap(), "--quiet", "--journal"])
        .arg(&journal)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", support::describe_output(&out));
    assert!(std::fs::read_to_string(&journal).unwrap().contains("\"verdict\""));
}

#[test]
fn a_mistyped_var_is_an_error_naming_the_known_ones() {
    let file = support::repo_path("experiments/latency-on-dependency.yaml");
    let out = Command::new(chaos_bin())
        .args(["validate", file.to_str().unwrap(), "--var", "apii=http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", support::describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--var apii=…: this file neither defines nor uses a variable `apii`"),
        "{stderr}"
    );
    assert!(stderr.contains("its variables: "), "{stderr}");
    // A variable the file defines is fine.
    let text = std::fs::read_to_string(&file).unwrap();
    let known = text.lines().find_map(|l| l.trim().strip_prefix("api:")).map(|_| "api");
    if let Some(name) = known {
        let out = Command::new(chaos_bin())
            .args(["validate", file.to_str().unwrap(), "--var", &format!("{name}=http://127.0.0.1:1")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", support::describe_output(&out));
    }
}

#[test]
fn validate_reads_standard_input_for_a_dash() {
    use std::io::Write as _;
    let run = |text: &str| {
        let mut child = Command::new(chaos_bin())
            .args(["validate", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let good = std::fs::read_to_string(support::repo_path("tests/data/probe-only.yaml")).unwrap();
    let out = run(&good);
    assert_eq!(out.status.code(), Some(0), "{}", support::describe_output(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "-: ok");
    let out = run("apiVersion: chaos/v1\ntitle: bad\nbaseline: soon\nmethod: []\n");
    assert_eq!(out.status.code(), Some(2), "{}", support::describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("<stdin>:3:11: "),
        "{}",
        support::describe_output(&out)
    );
}
