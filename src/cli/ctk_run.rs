//! `chaos run FILE` for a Chaos Toolkit experiment (`title`, `description`, `method`, no `apiVersion`):
//! Chaos Toolkit's flags, the run by `chaos_controller::ctk`, `journal.json`, one progress line per
//! activity on stderr and the exit code (0 completed and not deviated, 1 deviated, failed or aborted,
//! 2 invalid, 3 interrupted).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chaos_controller::ctk::config::{self, Overrides};
use chaos_controller::ctk::controls::Controls;
use chaos_controller::ctk::load;
use chaos_controller::ctk::native::{NativeExtension, NativeOutcome};
use chaos_controller::ctk::python::Python;
use chaos_controller::ctk::run::{self, Dry, HypothesisStrategy, Options};
use tokio_util::sync::CancellationToken;

/// Exit code of an invalid experiment or bad usage.
const INVALID: u8 = 2;

/// Chaos Toolkit's `chaos run` flags (only for Chaos Toolkit experiments).
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "Chaos Toolkit experiments")]
pub struct CtkArgs {
    /// Where to write the Chaos Toolkit journal [default: ./journal.json].
    #[arg(long, value_name = "FILE")]
    pub journal_path: Option<PathBuf>,
    /// Dry mode: `activities` (run nothing), `actions` (probes only), `probes` (actions only), `pause`
    /// (no pauses).
    #[arg(long, value_name = "MODE", value_parser = ["activities", "actions", "probes", "pause"])]
    pub dry: Option<String>,
    /// Skip the experiment's validation (the file must still have its parts in shape).
    #[arg(long)]
    pub no_validation: bool,
    /// Accepted for compatibility: Chaos Toolkit applies it to downloading the experiment only, and this
    /// command reads local files (each http provider keeps its own `verify_tls`).
    #[arg(long)]
    pub no_verify_tls: bool,
    /// When rollbacks are played: `default` (unless failed or interrupted), `always`, `never`, `deviated`.
    /// Any other value plays none, as Chaos Toolkit does. Beats the experiment's `runtime`.
    #[arg(long, value_name = "STRATEGY")]
    pub rollback_strategy: Option<String>,
    /// When the steady-state hypothesis is checked: `default` (before and after the method),
    /// `before-method-only`, `after-method-only`, `during-method-only`, `continuously` (before, during and
    /// after). Beats the experiment's `runtime`.
    #[arg(long, value_name = "STRATEGY", value_parser = [
        "default", "before-method-only", "after-method-only", "during-method-only", "continuously", "continously",
    ])]
    pub hypothesis_strategy: Option<String>,
    /// Seconds slept between two hypotheses during the method [default: 1].
    #[arg(long, value_name = "SECONDS")]
    pub hypothesis_frequency: Option<f64>,
    /// End the during-method hypothesis at its first miss and fail the run.
    #[arg(long)]
    pub fail_fast: bool,
    /// Overrides from a file: JSON or YAML with `configuration:` and `secrets:` blocks, or a `.env` file
    /// (repeatable; later files win, `--var` beats them all).
    #[arg(long, value_name = "FILE")]
    pub var_file: Vec<PathBuf>,
    /// Global controls from a file (Chaos Toolkit's `--control-file`: a JSON or YAML mapping of name →
    /// control), run beside the experiment's own (repeatable).
    #[arg(long, value_name = "FILE")]
    pub control_file: Vec<PathBuf>,
    /// The Python that runs `python` providers and controls (through the driver this binary ships)
    /// [default: $CHAOS_PYTHON, else python3].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

impl CtkArgs {
    /// The flags given, by name: they only apply to Chaos Toolkit experiments.
    pub fn given(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        let mut note = |on: bool, name| {
            if on {
                flags.push(name);
            }
        };
        note(self.journal_path.is_some(), "--journal-path");
        note(self.dry.is_some(), "--dry");
        note(self.no_validation, "--no-validation");
        note(self.no_verify_tls, "--no-verify-tls");
        note(self.rollback_strategy.is_some(), "--rollback-strategy");
        note(self.hypothesis_strategy.is_some(), "--hypothesis-strategy");
        note(self.hypothesis_frequency.is_some(), "--hypothesis-frequency");
        note(self.fail_fast, "--fail-fast");
        note(!self.var_file.is_empty(), "--var-file");
        note(!self.control_file.is_empty(), "--control-file");
        note(self.python.is_some(), "--python");
        flags
    }
}

/// What `chaos run` passes on for a Chaos Toolkit file.
pub struct CtkRun<'a> {
    pub file: &'a Path,
    /// `--var key[:type]=value`, split at the first `=`.
    pub vars: &'a [(String, String)],
    pub args: CtkArgs,
    /// `--journal`, accepted as `--journal-path`.
    pub journal: Option<PathBuf>,
    pub quiet: bool,
    /// The native half's options (`extensions: chaos` only).
    pub native: NativeReports,
}

/// `chaos run`'s native options that apply to the native half of a Chaos Toolkit experiment with
/// `extensions: chaos`: its seed and its reports (the native journal is always written, next to the Chaos
/// Toolkit one: `journal.chaos.json` beside `journal.json`).
#[derive(Debug, Default)]
pub struct NativeReports {
    pub seed: Option<u64>,
    pub junit: Option<PathBuf>,
    pub summary: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub state_dir: PathBuf,
}

impl NativeReports {
    fn given(&self) -> Option<&'static str> {
        [
            ("--seed", self.seed.is_some()),
            ("--junit", self.junit.is_some()),
            ("--summary", self.summary.is_some()),
            ("--html", self.html.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, given)| given.then_some(flag))
    }
}

/// Where the native journal of `extensions: chaos` goes: beside the Chaos Toolkit journal, `.chaos` before
/// its extension (`journal.json` → `journal.chaos.json`).
pub fn native_journal_path(journal: &Path) -> PathBuf {
    let stem = journal.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = journal.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    journal.with_file_name(format!("{stem}.chaos{ext}"))
}

/// Runs a Chaos Toolkit experiment; the exit code.
pub async fn run(ctk: CtkRun<'_>) -> anyhow::Result<u8> {
    let CtkRun { file, vars, args, journal, quiet, native: native_reports } = ctk;
    let journal_path = args.journal_path.or(journal).unwrap_or_else(|| PathBuf::from("journal.json"));
    let mut overrides = Overrides::default();
    for path in &args.var_file {
        if let Err(e) = config::read_var_file(path, &mut overrides) {
            eprintln!("chaos run: {e}");
            return Ok(INVALID);
        }
    }
    for (name, value) in vars {
        match config::parse_var(name, value) {
            Ok((key, value)) => {
                overrides.configuration.insert(key, value);
            }
            Err(e) => {
                eprintln!("chaos run: {e}");
                return Ok(INVALID);
            }
        }
    }
    let frequency = match args.hypothesis_frequency {
        Some(f) if !f.is_finite() || f < 0.0 => {
            eprintln!("chaos run: --hypothesis-frequency {f}: expected a number of seconds, 0 or more");
            return Ok(INVALID);
        }
        other => other,
    };
    let loaded = match load::load(file, !args.no_validation) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(INVALID);
        }
    };
    let python = Python::from_option(args.python.as_deref());
    if !args.no_validation
        && let Err(diagnostics) = load::validate_python(&loaded, &python).await
    {
        eprintln!("{diagnostics}");
        return Ok(INVALID);
    }
    let mut controls = match Controls::load(python.clone(), &loaded.experiment, &args.control_file) {
        Ok(controls) => controls,
        Err(e) => {
            match e.pointer.strip_prefix('/') {
                Some(pointer) => {
                    let path: Vec<String> =
                        pointer.split('/').map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
                    eprintln!("{}", loaded.diagnostic(&path, e.message));
                }
                None => eprintln!("chaos run: {e}"),
            }
            return Ok(INVALID);
        }
    };
    let source = std::fs::read_to_string(file).unwrap_or_default();
    let mut native = match NativeExtension::from_experiment(&loaded.experiment, &loaded.file, &source) {
        Ok(native) => native,
        Err(e) => {
            eprintln!("{e}");
            return Ok(INVALID);
        }
    };
    if native.is_none()
        && let Some(flag) = native_reports.given()
    {
        eprintln!(
            "chaos run: {flag} applies to the native half of a Chaos Toolkit experiment (`extensions: [{{name: \
             chaos, ...}}]`), which {} does not have; nothing was run",
            file.display()
        );
        return Ok(INVALID);
    }
    if let Err(e) = super::args::check_outputs(&[
        ("junit", &native_reports.junit),
        ("summary", &native_reports.summary),
        ("html", &native_reports.html),
    ]) {
        eprintln!("chaos run: {e}; nothing was run");
        return Ok(INVALID);
    }
    let resolved = match loaded.resolve(&overrides) {
        Ok(resolved) => resolved,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(INVALID);
        }
    };
    // Checked (and created) only once everything else is known to be right.
    if let Err(e) = check_journal_path(&journal_path) {
        eprintln!("chaos run: {e}; nothing was run");
        return Ok(INVALID);
    }
    let progress: Option<run::Progress> = if quiet {
        None
    } else {
        Some(Arc::new(|line: String| {
            let _ = writeln!(std::io::stderr(), "{line}");
        }))
    };
    controls.set_configuration(&resolved.configuration, &resolved.secrets);
    let options = Options {
        method_window: native.as_ref().map(NativeExtension::method_window),
        dry: args.dry.as_deref().and_then(Dry::parse),
        hypothesis_strategy: args.hypothesis_strategy.as_deref().and_then(HypothesisStrategy::parse),
        rollback_strategy: args.rollback_strategy,
        hypothesis_frequency: frequency,
        fail_fast: args.fail_fast,
        env: overrides.env.clone(),
        progress,
    };
    if !quiet {
        let title = resolved.substitute(&serde_json::Value::String(loaded.experiment.title.clone()));
        eprintln!("chaos run: {} (Chaos Toolkit experiment)", title.as_str().unwrap_or_default());
    }
    let interrupt = CancellationToken::new();
    let stop_rollbacks = CancellationToken::new();
    let signals = tokio::spawn(on_signal(interrupt.clone(), stop_rollbacks.clone()));
    let seed = native_reports.seed.unwrap_or_else(rand::random);
    let mut start_error = None;
    if let Some(native) = native.as_mut() {
        if !quiet {
            eprintln!(
                "chaos run: the native half (extensions: chaos): baseline, load and signals (seed {seed})"
            );
        }
        let started = tokio::select! {
            started = native.start(seed, Some(native_reports.state_dir.clone())) => started,
            () = interrupt.cancelled() => Err("interrupted before the method".to_string()),
        };
        start_error = started.err();
    }
    if let Some(e) = start_error
        && let Some(half) = native.take()
    {
        // Nothing of the Chaos Toolkit experiment ran: the native half is ended and reported alone.
        half.interrupt();
        signals.abort();
        let outcome = half.finish().await;
        eprintln!(
            "chaos run: the native half stopped before the Chaos Toolkit method: {e}; nothing else was run"
        );
        print_native(&outcome);
        write_native(&outcome, &journal_path, &native_reports)?;
        return Ok(if interrupt.is_cancelled() { 3 } else { 1 });
    }
    let result =
        run::run(&loaded, resolved, python.clone(), controls, options, interrupt.clone(), stop_rollbacks)
            .await;
    signals.abort();
    python.shutdown().await;
    if interrupt.is_cancelled()
        && let Some(native) = &native
    {
        native.interrupt();
    }
    let native = match native {
        Some(native) => Some(native.finish().await),
        None => None,
    };
    let mut journal = match result {
        Ok(journal) => journal,
        Err(e) => {
            eprintln!("chaos run: {e}");
            return Ok(1);
        }
    };
    if let Some(native) = &native {
        let native_path = native_journal_path(&journal_path);
        journal.chaos = Some(serde_json::json!({
            "verdict": native.verdict.as_str(),
            "reasons": native.reasons,
            "slos": serde_json::to_value(&native.slos).unwrap_or_default(),
            "journal": native_path.display().to_string(),
        }));
        write_native(native, &journal_path, &native_reports)?;
    }
    use anyhow::Context as _;
    journal
        .write(&journal_path)
        .with_context(|| format!("writing the journal {}", journal_path.display()))?;
    let deviated = if journal.deviated { ", deviated" } else { "" };
    println!("{}: {}{deviated}", title(&journal.experiment), journal.status.as_str());
    println!("  journal: {}", journal_path.display());
    if let Some(native) = &native {
        print_native(native);
    }
    Ok(journal.exit_code())
}

/// Prints the native half's verdict and reasons.
fn print_native(native: &NativeOutcome) {
    println!("  native verdict (extensions: chaos): {}", native.verdict.as_str());
    for reason in &native.reasons {
        println!("    - {reason}");
    }
}

/// Writes the native half's journal beside the Chaos Toolkit one, and the reports asked for.
fn write_native(native: &NativeOutcome, journal_path: &Path, reports: &NativeReports) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let path = native_journal_path(journal_path);
    chaos_controller::report::write_journal(&path, &native.journal)
        .with_context(|| format!("writing the native journal {}", path.display()))?;
    if let Some(path) = &reports.junit {
        chaos_controller::report::write_junit(path, &native.journal)
            .with_context(|| format!("writing the JUnit report {}", path.display()))?;
    }
    if let Some(path) = &reports.summary {
        std::fs::write(path, chaos_controller::report::render_markdown(&native.journal))
            .with_context(|| format!("writing the summary {}", path.display()))?;
    }
    if let Some(path) = &reports.html {
        chaos_controller::report::write_html(path, &native.journal)
            .with_context(|| format!("writing the HTML report {}", path.display()))?;
    }
    Ok(())
}

/// Makes sure the journal can be written before anything is touched (missing directories are created):
/// bad usage otherwise.
fn check_journal_path(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!("--journal-path {}: cannot create the directory {}: {e}", path.display(), dir.display())
        })?;
    }
    if path.is_dir() {
        return Err(format!("--journal-path {}: is a directory, expected a file name", path.display()));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map(drop)
        .map_err(|e| format!("--journal-path {}: cannot write there: {e}", path.display()))
}

fn title(experiment: &serde_json::Value) -> String {
    match experiment.get("title") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Cancels `interrupt` on SIGINT, SIGTERM or SIGUSR1 (the run ends `interrupted`, rollbacks per
/// strategy), and `stop_rollbacks` on a second one; SIGUSR2 cancels both at once (no rollbacks even with
/// `always`), as Chaos Toolkit's signal handlers do.
async fn on_signal(interrupt: CancellationToken, stop_rollbacks: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1()).ok();
    let mut usr2 = signal(SignalKind::user_defined2()).ok();
    let mut interrupted = false;
    loop {
        let leave_now = tokio::select! {
            _ = crate::shutdown_signal() => false,
            Some(()) = async { usr1.as_mut()?.recv().await } => false,
            Some(()) = async { usr2.as_mut()?.recv().await } => true,
        };
        if leave_now {
            tracing::warn!("SIGUSR2: leaving now, without rollbacks");
            // Rollbacks first: the run may reach its rollbacks the moment `interrupt` is cancelled.
            stop_rollbacks.cancel();
            interrupt.cancel();
            return;
        }
        if interrupted {
            tracing::warn!("interrupted again: stopping the rollbacks");
            stop_rollbacks.cancel();
            return;
        }
        tracing::warn!("interrupted: the run stops (interrupt again to stop the rollbacks too)");
        interrupt.cancel();
        interrupted = true;
    }
}

/// `chaos validate` of a Chaos Toolkit file: `None` when the file is not one. Python providers are
/// checked with the host's Python, as Chaos Toolkit's `validate` imports their modules.
pub fn validate(file: &Path) -> Option<Result<(), String>> {
    if !load::is_ctk_file(file) {
        return None;
    }
    let loaded = match load::load(file, true) {
        Ok(l) => l,
        Err(d) => return Some(Err(d.to_string())),
    };
    let python = Python::default();
    let check = load::validate_python(&loaded, &python);
    let checked = match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(check)),
        Err(_) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(check),
            Err(e) => return Some(Err(format!("cannot start the async runtime: {e}"))),
        },
    };
    Some(checked.map_err(|d| d.to_string()))
}
