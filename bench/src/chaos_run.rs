//! Wall time of `chaos run` on a trivial experiment (one HTTP steady-state probe before and after, one
//! `wait: 0s` step, `baseline: 0s`, `recovery: 0s`) against Chaos Toolkit running the equivalent experiment
//! (HTTP steady-state probe before and after, one `sleep 0` process action), both against a local
//! `chaos demo-target --http`. Hyperfine-like: whole processes, interleaved, warm-ups discarded.
//!
//! Chaos Toolkit is installed with pip into a venv under the target directory, created once and reused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use crate::profile::Profile;
use crate::stats::percentile;

/// Prefix of `chaos demo-target`'s first stdout line.
const LISTENING_PREFIX: &str = "listening on http://";
/// Longest a single measured process may run (a hung run fails the benchmark instead of the whole bench).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `pip install chaostoolkit` may take.
const PIP_TIMEOUT: Duration = Duration::from_secs(600);

/// What was timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    /// `chaos run FILE` on the trivial experiment.
    ChaosRun,
    /// `chaos run` of the equivalent Chaos Toolkit experiment.
    Chaostoolkit,
    /// `chaos --version`: process start and exit only (the floor under `chaos run`).
    ChaosVersion,
    /// Chaos Toolkit's `chaos --version`: interpreter start and imports only.
    ChaostoolkitVersion,
}

impl Tool {
    pub fn label(self) -> &'static str {
        match self {
            Self::ChaosRun => "chaos run (trivial experiment)",
            Self::Chaostoolkit => "Chaos Toolkit run (equivalent experiment)",
            Self::ChaosVersion => "chaos --version (process start floor)",
            Self::ChaostoolkitVersion => "Chaos Toolkit --version (interpreter + imports floor)",
        }
    }
}

/// Wall-time summary of one command.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub tool: Tool,
    pub runs: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

/// The whole `run` benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub rows: Vec<Row>,
    /// `chaos run`'s median over Chaos Toolkit's.
    pub ratio: Option<f64>,
    /// Versions, for the report.
    pub chaostoolkit_version: String,
}

impl RunResult {
    pub fn row(&self, tool: Tool) -> Option<&Row> {
        self.rows.iter().find(|r| r.tool == tool)
    }
}

/// A child process killed (and reaped) on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the benchmark: `chaos_bin` is the binary under test, `work_dir` holds the experiment files.
pub fn run(chaos_bin: &Path, work_dir: &Path, profile: &Profile) -> Result<RunResult> {
    if !chaos_bin.is_file() {
        bail!(
            "chaos binary not found at {}: build it with `cargo build --release -p chaos` or pass --chaos-bin PATH",
            chaos_bin.display()
        );
    }
    let ctk = chaostoolkit_venv().context("Chaos Toolkit (the baseline of the run benchmark)")?;
    let ctk_version = version_line(&ctk, &["--no-version-check", "--version"]);
    eprintln!("run: {} vs Chaos Toolkit {ctk_version} ({})", chaos_bin.display(), ctk.display());

    let (_target, url) = demo_target(chaos_bin)?;
    let dir = work_dir.join("run-bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let chaos_file = dir.join("trivial.yaml");
    std::fs::write(&chaos_file, chaos_experiment(&url))?;
    let ctk_file = dir.join("trivial-chaostoolkit.json");
    std::fs::write(&ctk_file, chaostoolkit_experiment(&url))?;
    let journal = dir.join("chaostoolkit-journal.json");

    let mut chaos_run = Command::new(chaos_bin);
    chaos_run.arg("run").arg(&chaos_file).current_dir(&dir);
    let mut ctk_run = Command::new(&ctk);
    ctk_run
        .args(["--no-version-check", "--no-log-file", "run", "--journal-path"])
        .arg(&journal)
        .arg(&ctk_file)
        .current_dir(&dir);
    let mut chaos_version = Command::new(chaos_bin);
    chaos_version.arg("--version");
    let mut ctk_version_cmd = Command::new(&ctk);
    ctk_version_cmd.args(["--no-version-check", "--version"]);

    // Each command must succeed before it is timed: a failing experiment would time an early exit.
    let first = timed(&mut chaos_run)?;
    if !first.1.stdout.windows(6).any(|w| w == b"PASSED") {
        bail!("`chaos run` of the trivial experiment did not pass:\n{}", output_text(&first.1));
    }
    timed(&mut ctk_run)?;
    let status = std::fs::read_to_string(&journal)
        .ok()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        .and_then(|j| j.get("status").and_then(|s| s.as_str()).map(str::to_string));
    if status.as_deref() != Some("completed") {
        bail!("the Chaos Toolkit experiment did not complete (journal status {status:?})");
    }

    let mut commands: Vec<(Tool, &mut Command, Vec<Duration>)> = vec![
        (Tool::ChaosRun, &mut chaos_run, Vec::new()),
        (Tool::Chaostoolkit, &mut ctk_run, Vec::new()),
        (Tool::ChaosVersion, &mut chaos_version, Vec::new()),
        (Tool::ChaostoolkitVersion, &mut ctk_version_cmd, Vec::new()),
    ];
    for round in 0..profile.run_warmup + profile.run_runs {
        for (tool, cmd, samples) in &mut commands {
            let (wall, _) = timed(cmd).with_context(|| format!("{} (round {round})", tool.label()))?;
            if round >= profile.run_warmup {
                samples.push(wall);
            }
        }
    }
    let rows: Vec<Row> =
        commands.into_iter().filter_map(|(tool, _, mut s)| summarise(tool, &mut s)).collect();
    for r in &rows {
        eprintln!("  {}: median {:.1} ms, p90 {:.1} ms", r.tool.label(), r.median_ms, r.p90_ms);
    }
    let median = |t: Tool| rows.iter().find(|r| r.tool == t).map(|r| r.median_ms);
    let ratio = match (median(Tool::ChaosRun), median(Tool::Chaostoolkit)) {
        (Some(c), Some(k)) => crate::stats::ratio(c, k),
        _ => None,
    };
    Ok(RunResult { rows, ratio, chaostoolkit_version: ctk_version })
}

fn summarise(tool: Tool, samples: &mut [Duration]) -> Option<Row> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Some(Row {
        tool,
        runs: samples.len(),
        median_ms: ms(percentile(samples, 50.0)),
        p90_ms: ms(percentile(samples, 90.0)),
        min_ms: ms(samples[0]),
        max_ms: ms(samples[samples.len() - 1]),
    })
}

/// The minimal real `chaos/v1` experiment: probe before and after, one step, no baseline or recovery wait.
fn chaos_experiment(url: &str) -> String {
    format!(
        "apiVersion: chaos/v1\n\
         title: trivial\n\
         steady_state:\n  - {{ name: health, http: {{ url: \"{url}/health\", status: 200, timeout: 2s }} }}\n\
         baseline: 0s\n\
         method:\n  - {{ wait: 0s }}\n\
         recovery: 0s\n"
    )
}

/// The Chaos Toolkit equivalent: the same probe as the steady-state hypothesis, one no-op process action.
fn chaostoolkit_experiment(url: &str) -> String {
    let exp = serde_json::json!({
        "version": "1.0.0",
        "title": "trivial",
        "description": "one HTTP steady-state probe before and after, one sleep-0 process action",
        "steady-state-hypothesis": {
            "title": "healthy",
            "probes": [{
                "type": "probe", "name": "health", "tolerance": 200,
                "provider": {"type": "http", "url": format!("{url}/health"), "timeout": 2}
            }]
        },
        "method": [{
            "type": "action", "name": "noop",
            "provider": {"type": "process", "path": "sleep", "arguments": ["0"]}
        }],
        "rollbacks": []
    });
    exp.to_string()
}

/// Runs `cmd` to completion (bounded by [`RUN_TIMEOUT`]); wall time from spawn to exit. Fails on a non-zero
/// exit, with its output.
fn timed(cmd: &mut Command) -> Result<(Duration, Output)> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let output = wait_bounded(child, RUN_TIMEOUT)?;
    let wall = start.elapsed();
    if !output.status.success() {
        bail!("{cmd:?} exited with {}:\n{}", output.status, output_text(&output));
    }
    Ok((wall, output))
}

/// Waits for `child` with a deadline; kills it when the deadline passes. Output is read by a thread so a
/// chatty child never blocks on a full pipe.
fn wait_bounded(child: Child, limit: Duration) -> Result<Output> {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.context("wait for child"),
        Err(_) => {
            // The thread owns the child; kill it by pid (ours, still unreaped, so the pid is not reused).
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            bail!("process {pid} did not exit within {} s (killed)", limit.as_secs())
        }
    }
}

fn output_text(out: &Output) -> String {
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    format!("stdout:\n{}\nstderr:\n{}", tail(&out.stdout), tail(&out.stderr))
}

fn version_line(bin: &Path, args: &[&str]) -> String {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "?".to_string())
}

/// Starts `chaos demo-target --http` on 127.0.0.1 and returns it with its base URL.
fn demo_target(chaos_bin: &Path) -> Result<(Guard, String)> {
    let mut child = Command::new(chaos_bin)
        .args(["demo-target", "--http", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawn {} demo-target --http", chaos_bin.display()))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
    let guard = Guard(child);
    let first = crate::chaos::first_line(stdout)
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("`chaos demo-target --http` printed no listening line within 10 s"))?;
    let addr = first
        .trim()
        .strip_prefix(LISTENING_PREFIX)
        .ok_or_else(|| anyhow!("unexpected first line from chaos demo-target: {first:?}"))?
        .trim_end_matches('/');
    if !addr.starts_with("127.0.0.1:") {
        bail!("demo target listens on {addr}, expected 127.0.0.1");
    }
    Ok((guard, format!("http://{addr}")))
}

/// Where the venv lives: `<workspace>/target/bench-venv/chaostoolkit`.
fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-venv/chaostoolkit")
}

/// Chaos Toolkit's `chaos` executable in the cached venv; creates the venv and installs it with pip if needed.
fn chaostoolkit_venv() -> Result<PathBuf> {
    let venv = venv_dir();
    let bin = venv.join("bin/chaos");
    let works = |bin: &Path| {
        Command::new(bin)
            .args(["--no-version-check", "--version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if bin.is_file() && works(&bin) {
        return Ok(bin);
    }
    eprintln!("run: creating a venv with Chaos Toolkit in {} (cached for later runs)", venv.display());
    let _ = std::fs::remove_dir_all(&venv);
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let out = wait_bounded(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn `python3 -m venv` (is python3 installed?)")?,
        Duration::from_secs(120),
    )?;
    if !out.status.success() {
        bail!("`python3 -m venv {}` failed ({}):\n{}", venv.display(), out.status, output_text(&out));
    }
    let out = wait_bounded(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "chaostoolkit"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn pip in the venv")?,
        PIP_TIMEOUT,
    )?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&venv);
        bail!(
            "`pip install chaostoolkit` failed ({}), so the run benchmark has no baseline; fix pip access \
             (index, proxy, or PIP_FIND_LINKS) or skip it with --only:\n{}",
            out.status,
            output_text(&out)
        );
    }
    if !works(&bin) {
        bail!("Chaos Toolkit installed in {} but `chaos --version` fails", venv.display());
    }
    Ok(bin)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn experiments_are_well_formed() {
        let ctk: serde_json::Value =
            serde_json::from_str(&chaostoolkit_experiment("http://127.0.0.1:1")).unwrap();
        assert_eq!(
            ctk["steady-state-hypothesis"]["probes"][0]["provider"]["url"],
            "http://127.0.0.1:1/health"
        );
        let exp = chaos_controller::experiment::parse("t.yaml", &chaos_experiment("http://127.0.0.1:1"), &[])
            .unwrap();
        assert_eq!(exp.steady_state.len(), 1);
        assert_eq!(exp.method.len(), 1);
    }

    #[test]
    fn summary_is_nearest_rank() {
        let mut s: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        let r = summarise(Tool::ChaosRun, &mut s).unwrap();
        assert!((r.median_ms - 5.0).abs() < 1e-9);
        assert!((r.p90_ms - 9.0).abs() < 1e-9);
        assert!(summarise(Tool::ChaosRun, &mut []).is_none());
    }
}
