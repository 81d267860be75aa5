//! Wall time of the whole Chaos Toolkit corpus (tests/ctk/corpus, every case of tests/ctk/cases.json but the
//! interrupted ones) under Chaos Toolkit 1.19.0 and under `chaos run`: same files, same flags, same environment,
//! the same live HTTP service (tests/ctk/service.rs, included here) and system programs, as a ratio (issue 17).
//! Rounds interleave the two runners (Chaos Toolkit's corpus, then chaos's); the first round is a discarded
//! warm-up. Every run must end with the status its case expects, so an early exit is never timed.
//!
//! The corpus sleeps on purpose (pauses, provider timeouts, a continuous hypothesis), the same for both, so
//! the whole-corpus ratio understates the per-activity difference; the per-case rows show where each runner
//! spends its time.
//!
//! Chaos Toolkit comes from target/ctk-venv (the venv tests/ctk_differential.rs builds, same pins), created here
//! if missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use serde_json::Value;

#[allow(dead_code)]
#[path = "../../tests/ctk/service.rs"]
mod service;

/// The test venv's pins (tests/ctk/harness.rs).
const PACKAGES: &[&str] = &[
    "chaostoolkit==1.19.0",
    "chaostoolkit-lib==1.44.0",
    "chaostoolkit-toxiproxy==0.3.1",
    "jsonpath2==0.4.5",
];
/// Longest one run of one case may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// The cases, as the differential test reads them.
const CASES: &str = include_str!("../../tests/ctk/cases.json");

/// How many rounds.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub rounds: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        Sizes { rounds: if quick { 1 } else { 5 } }
    }
}

/// One case's median wall time under each runner.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRow {
    pub case: String,
    pub chaostoolkit_ms: f64,
    pub chaos_ms: f64,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct Ctk {
    pub cases: usize,
    pub rounds: usize,
    /// Median over rounds of the whole corpus' wall time.
    pub chaostoolkit_ms: f64,
    pub chaos_ms: f64,
    /// chaos / Chaos Toolkit.
    pub ratio: f64,
    pub chaostoolkit_version: String,
    pub chaos_bin: String,
    pub per_case: Vec<CaseRow>,
}

struct Case {
    id: String,
    file: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    expect_status: String,
}

fn cases() -> Result<Vec<Case>> {
    let doc: Value = serde_json::from_str(CASES).context("tests/ctk/cases.json")?;
    let list = doc["cases"].as_array().context("tests/ctk/cases.json: no cases")?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for c in list {
        if c.get("interrupt").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let file = c["file"].as_str().context("a case without file")?.to_string();
        let id = match c.get("label").and_then(Value::as_str) {
            Some(l) => format!("{file} [{l}]"),
            None => file.clone(),
        };
        let env = c
            .get("env")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        let expect_status = c["expect"][0].as_str().context("a case without expect")?.to_string();
        out.push(Case { id, file, args: strings(&c["args"]), env, expect_status });
    }
    Ok(out)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the benchmark with `chaos_bin` as `chaos run`.
pub fn run(chaos_bin: &Path, sizes: &Sizes) -> Result<Ctk> {
    ensure!(
        chaos_bin.is_file(),
        "chaos binary not found at {}: build it or pass --chaos-bin PATH",
        chaos_bin.display()
    );
    // Each run's working directory is its own: a relative --chaos-bin must not depend on it.
    let chaos_bin = &std::fs::canonicalize(chaos_bin).with_context(|| format!("{}", chaos_bin.display()))?;
    let venv = venv().context("Chaos Toolkit (the baseline of the ctk benchmark)")?;
    let ctk = venv.join("bin/chaos");
    let version = Command::new(&ctk)
        .args(["--no-version-check", "--version"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cases = cases()?;
    let service = service::Service::start().context("start the corpus' HTTP service")?;
    let closed = service::refused_url().context("a refused URL")?;
    let tmp = std::env::temp_dir().join(format!("chaos-bench-ctk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    eprintln!("ctk: {} cases, {} vs Chaos Toolkit {version}", cases.len(), chaos_bin.display());

    let env = RunEnv { venv: venv.clone(), base: service.url(), closed };
    // [runner][case] → samples.
    let mut samples = vec![vec![Vec::new(); cases.len()]; 2];
    let mut totals: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..=sizes.rounds {
        for (r, runner) in [Runner::ChaosToolkit, Runner::Chaos].into_iter().enumerate() {
            let mut total = Duration::ZERO;
            for (i, case) in cases.iter().enumerate() {
                service.reset();
                let work = tmp.join(format!("{round}-{r}-{i}"));
                std::fs::create_dir_all(&work)?;
                let bin = match runner {
                    Runner::ChaosToolkit => ctk.as_path(),
                    Runner::Chaos => chaos_bin,
                };
                let wall = run_case(&env, runner, bin, case, &work)
                    .with_context(|| format!("{} under {runner:?} (round {round})", case.id))?;
                total += wall;
                if round > 0 {
                    samples[r][i].push(wall);
                }
            }
            if round > 0 {
                totals[r].push(total);
            }
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)?;
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let ms = |v: &mut Vec<Duration>| median(v).as_secs_f64() * 1e3;
    let (k, c) = (ms(&mut totals[0]), ms(&mut totals[1]));
    let per_case = cases
        .iter()
        .enumerate()
        .map(|(i, case)| CaseRow {
            case: case.id.clone(),
            chaostoolkit_ms: ms(&mut samples[0][i].clone()),
            chaos_ms: ms(&mut samples[1][i].clone()),
        })
        .collect();
    eprintln!("  Chaos Toolkit {k:.0} ms, chaos run {c:.0} ms");
    Ok(Ctk {
        cases: cases.len(),
        rounds: sizes.rounds,
        chaostoolkit_ms: k,
        chaos_ms: c,
        ratio: if k > 0.0 { c / k } else { f64::NAN },
        chaostoolkit_version: version,
        chaos_bin: chaos_bin.display().to_string(),
        per_case,
    })
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
enum Runner {
    ChaosToolkit,
    Chaos,
}

struct RunEnv {
    venv: PathBuf,
    base: String,
    closed: String,
}

/// One run of one case: its wall time, after checking the journal's status is the expected one.
fn run_case(env: &RunEnv, runner: Runner, bin: &Path, case: &Case, work: &Path) -> Result<Duration> {
    let ctk_dir = workspace().join("tests/ctk");
    let fill = |s: &str| {
        s.replace("{base}", &env.base)
            .replace("{closed}", &env.closed)
            .replace("{work}", &work.display().to_string())
            .replace("{vars}", &ctk_dir.join("vars").display().to_string())
    };
    let journal = work.join("journal.json");
    let mut cmd = Command::new(bin);
    if let Runner::ChaosToolkit = runner {
        cmd.args(["--no-version-check", "--no-log-file"]);
    }
    cmd.arg("run").arg("--journal-path").arg(&journal);
    for a in &case.args {
        cmd.arg(fill(a));
    }
    cmd.arg(ctk_dir.join("corpus").join(&case.file));
    let path = format!("{}:{}", env.venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    cmd.current_dir(work)
        .env("PATH", path)
        .env("CHAOS_PYTHON", env.venv.join("bin/python"))
        .env("PYTHONPATH", ctk_dir.join("modules"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("CTK_BASE_URL", &env.base)
        .env("CTK_CLOSED_URL", &env.closed)
        .env("CTK_WORK", work)
        .env_remove("CTK_FROM_DOTENV")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in &case.env {
        cmd.env(k, fill(v));
    }
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawn {}", bin.display()))?;
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            use std::io::Read as _;
            let _ = (&mut e).take(1 << 20).read_to_string(&mut text);
        }
        text
    });
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not finish within {} s (killed)", RUN_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall = start.elapsed();
    let stderr = reader.join().unwrap_or_default();
    let got = std::fs::read_to_string(&journal)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|j| j["status"].as_str().map(str::to_string));
    if got.as_deref() != Some(case.expect_status.as_str()) {
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        bail!(
            "exit {status}, journal status {got:?} where {:?} is expected; stderr ends:\n{}",
            case.expect_status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(wall)
}

/// target/ctk-venv with the pinned Chaos Toolkit; created with python3 and pip when missing or broken.
fn venv() -> Result<PathBuf> {
    let venv = workspace().join("target/ctk-venv");
    let works = |v: &Path| {
        v.join("bin/chaos").is_file()
            && Command::new(v.join("bin/chaos"))
                .args(["--no-version-check", "--version"])
                .output()
                .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("1.19.0"))
    };
    if works(&venv) {
        return Ok(venv);
    }
    eprintln!("ctk: creating {} with {} (reused later)", venv.display(), PACKAGES.join(" "));
    let _ = std::fs::remove_dir_all(&venv);
    let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).output().context("python3 -m venv")?;
    ensure!(made.status.success(), "python3 -m venv failed: {}", String::from_utf8_lossy(&made.stderr));
    let pip = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
        .args(PACKAGES)
        .env("PIP_NO_INPUT", "1")
        .output()
        .context("pip install")?;
    if !pip.status.success() {
        let _ = std::fs::remove_dir_all(&venv);
        bail!("pip install {} failed: {}", PACKAGES.join(" "), String::from_utf8_lossy(&pip.stderr));
    }
    ensure!(works(&venv), "Chaos Toolkit installed in {} but `chaos --version` fails", venv.display());
    Ok(venv)
}

/// The Markdown section.
pub fn render(r: &Result<Ctk>) -> String {
    let mut out = String::from("\n## Chaos Toolkit corpus: Chaos Toolkit vs `chaos run`\n\n");
    match r {
        Err(e) => out.push_str(&format!("error: {e:#}\n")),
        Ok(r) => {
            out.push_str(&format!(
                "{} cases of tests/ctk/cases.json (interrupted ones left out), whole processes run one after \
                 another, median of {} rounds after a warm-up. {}; chaos run is {}.\n\n\
                 | runner | corpus wall time | ratio |\n|---|---|---|\n\
                 | Chaos Toolkit (baseline) | {:.0} ms | 1 |\n| `chaos run` | {:.0} ms | {:.2} |\n",
                r.cases,
                r.rounds,
                r.chaostoolkit_version,
                r.chaos_bin,
                r.chaostoolkit_ms,
                r.chaos_ms,
                r.ratio
            ));
            out.push_str("\n| case | Chaos Toolkit | chaos run |\n|---|---|---|\n");
            for c in &r.per_case {
                out.push_str(&format!(
                    "| {} | {:.0} ms | {:.0} ms |\n",
                    c.case, c.chaostoolkit_ms, c.chaos_ms
                ));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_cases_parse_and_leave_out_interruptions() {
        let all: Value = serde_json::from_str(CASES).unwrap();
        let total = all["cases"].as_array().unwrap().len();
        let cases = cases().unwrap();
        assert!(cases.len() >= 25 && cases.len() < total, "{} of {total}", cases.len());
        assert!(cases.iter().all(|c| c.file != "interrupt.json"));
    }

    #[test]
    fn median_is_the_middle_sample() {
        let mut v: Vec<Duration> = [5, 1, 3].iter().map(|&m| Duration::from_millis(m)).collect();
        assert_eq!(median(&mut v), Duration::from_millis(3));
        assert_eq!(median(&mut []), Duration::ZERO);
    }
}
