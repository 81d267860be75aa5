//! `extensions: [{name: chaos, ...}]` in a Chaos Toolkit experiment: native `targets` (proxies), `load`, `slos`
//! and `guardrails` (and `baseline`, `recovery`, `vars`) judged by the native engine around the Chaos Toolkit
//! method, with the usual verdict and a native journal (`chaos report`, `--html`).
//!
//! The extension becomes a native experiment titled as the Chaos Toolkit file, with no method steps of its own
//! ([`NativeExtension::from_experiment`]). The runner calls [`NativeExtension::start`] before the Chaos Toolkit
//! method (the engine creates the proxies, runs the native steady-state probes, starts the load and signal
//! collection and waits the baseline), [`NativeExtension::method_started`] and
//! [`NativeExtension::method_ended`] around the method, watches [`NativeExtension::tripped`] during it (a
//! guardrail trip: the runner interrupts the Chaos Toolkit method, whose status becomes `failed`), and
//! [`NativeExtension::finish`] at the end (recovery window, SLO verdicts, proxies deleted).

use std::path::PathBuf;

use serde_json::{Map, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::model;
use crate::engine::{self, ExecuteOptions, ExternalMethod, Outcome, Plan, RunConfig, Verdict};
use crate::experiment::{self, Checked};
use crate::report::Journal;
use crate::slo::SloResult;

/// The extension's name.
pub const NAME: &str = "chaos";

/// The native fields an `extensions: chaos` entry may carry.
pub const FIELDS: &[&str] =
    &["targets", "load", "slos", "guardrails", "baseline", "recovery", "vars", "steady_state"];

/// The native half of a Chaos Toolkit run.
pub struct NativeExtension {
    /// The native experiment built from the extension.
    pub checked: Checked,
    file: String,
    external: ExternalMethod,
    interrupt: CancellationToken,
    running: Option<(JoinHandle<Outcome>, RunConfig, std::time::SystemTime)>,
}

/// What the native engine judged.
#[derive(Debug)]
pub struct NativeOutcome {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub slos: Vec<SloResult>,
    /// The native journal, for `--journal`-style reports (`chaos report`, HTML, JUnit).
    pub journal: Journal,
}

impl std::fmt::Debug for NativeExtension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeExtension")
            .field("title", &self.checked.title)
            .field("file", &self.file)
            .finish()
    }
}

impl NativeExtension {
    /// The extension named `chaos` of `exp`, as a checked native experiment; `None` without one. `file` names
    /// the Chaos Toolkit file and `source` is its text, for positions: an error reads `file:line:column:
    /// message`, at the extension's field the native check refused (at the extension when unknown).
    pub fn from_experiment(
        exp: &model::Experiment,
        file: &str,
        source: &str,
    ) -> Result<Option<NativeExtension>, String> {
        let mut found = exp.extensions.iter().filter(|e| e.get("name").and_then(Value::as_str) == Some(NAME));
        let Some(extension) = found.next() else { return Ok(None) };
        let at = |key: Option<&str>| position(source, key);
        if found.next().is_some() {
            let (line, column) = at(None);
            return Err(format!("{file}:{line}:{column}: more than one extension is named `{NAME}`"));
        }
        let mut native = Map::new();
        native.insert("apiVersion".into(), Value::String(experiment::API_VERSION.into()));
        native.insert("title".into(), Value::String(exp.title.clone()));
        for (key, value) in extension {
            if key == "name" {
                continue;
            }
            if !FIELDS.contains(&key.as_str()) {
                let (line, column) = at(Some(key));
                return Err(format!(
                    "{file}:{line}:{column}: extensions: {NAME}: unknown field `{key}`, expected one of {}",
                    FIELDS.join(", ")
                ));
            }
            native.insert(key.clone(), value.clone());
        }
        let text =
            serde_json::to_string_pretty(&Value::Object(native)).map_err(|e| format!("{file}: {e}"))?;
        let checked = experiment::parse(&format!("{file}#extensions.{NAME}.json"), &text, &[]).map_err(
            |diagnostics| {
                diagnostics
                    .iter()
                    .map(|d| {
                        let key = top_key_at(&text, d.line);
                        let (line, column) = at(key.as_deref());
                        format!("{file}:{line}:{column}: extensions: {NAME}: {}", d.message)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        )?;
        Ok(Some(NativeExtension {
            checked,
            file: file.to_string(),
            external: ExternalMethod::default(),
            interrupt: CancellationToken::new(),
            running: None,
        }))
    }

    /// Resolves the targets and starts the native run: proxies created, native steady-state probes, load and
    /// signal collection started, baseline waited. Returns when the method window is open; an error (nothing
    /// left in place) when the run stopped before it (its reasons: [`NativeExtension::finish`] still reports).
    pub async fn start(&mut self, seed: u64, state_dir: Option<PathBuf>) -> Result<(), String> {
        let mut plan =
            Plan::resolve(&self.checked, seed).await.map_err(|e| format!("cannot resolve targets: {e}"))?;
        if state_dir.is_some() {
            plan.state_dir = state_dir;
        }
        let config = RunConfig {
            seed,
            file: self.file.clone(),
            progress: None,
            stop_rollbacks: CancellationToken::new(),
        };
        let (exp, run_config, interrupt, external) =
            (self.checked.clone(), config.clone(), self.interrupt.clone(), self.external.clone());
        let handle = tokio::spawn(async move {
            engine::execute_external(
                &exp,
                plan,
                &run_config,
                interrupt,
                ExecuteOptions::default(),
                Some(external),
            )
            .await
        });
        self.running = Some((handle, config, std::time::SystemTime::now()));
        self.external.entered.cancelled().await;
        if self.external.tripped.is_cancelled() {
            return Err("the native run stopped before the method (see its reasons)".into());
        }
        Ok(())
    }

    /// The Chaos Toolkit method starts now (the native method window is already open: it opened when
    /// [`NativeExtension::start`] returned).
    pub fn method_started(&self) {
        tracing::debug!(target: "chaos::ctk::native", "Chaos Toolkit method started");
    }

    /// The Chaos Toolkit method ended: the native run goes on with its recovery window.
    pub fn method_ended(&self) {
        self.external.ended.cancel();
    }

    /// Cancelled when a guardrail trips during the method (or the native run is interrupted): the runner
    /// interrupts the Chaos Toolkit method and sets status `failed`.
    pub fn tripped(&self) -> CancellationToken {
        self.external.tripped.clone()
    }

    /// The window the Chaos Toolkit runner reports its method through ([`super::run::Options::method_window`]):
    /// its end ends the native method window, and a guardrail trip stops the method.
    pub fn method_window(&self) -> super::run::MethodWindow {
        super::run::MethodWindow { ended: self.external.ended.clone(), stop: self.external.tripped.clone() }
    }

    /// Interrupts the native run (SIGINT/SIGTERM of the Chaos Toolkit run): everything is reverted.
    pub fn interrupt(&self) {
        self.interrupt.cancel();
    }

    /// Ends the native run (recovery window, SLO verdicts, proxies deleted) and returns its verdict and journal.
    pub async fn finish(mut self) -> NativeOutcome {
        self.external.ended.cancel();
        let (outcome, config, started) = match self.running.take() {
            Some((handle, config, started)) => {
                let outcome = handle
                    .await
                    .unwrap_or_else(|e| Outcome::inconclusive(format!("the native run failed: {e}")));
                (outcome, config, started)
            }
            None => {
                let config = RunConfig {
                    seed: 0,
                    file: self.file.clone(),
                    progress: None,
                    stop_rollbacks: CancellationToken::new(),
                };
                (
                    Outcome::inconclusive("the native run never started".into()),
                    config,
                    std::time::SystemTime::now(),
                )
            }
        };
        let journal = engine::journal(&self.checked, &config, &outcome, started);
        NativeOutcome { verdict: outcome.verdict, reasons: outcome.reasons, slos: outcome.slos, journal }
    }
}

/// The top-level key of the generated native document whose value spans `line` (1-based).
fn top_key_at(text: &str, line: usize) -> Option<String> {
    text.lines()
        .take(line.max(1))
        .filter_map(|l| {
            l.strip_prefix("  \"").and_then(|rest| rest.split_once('"')).map(|(key, _)| key.to_string())
        })
        .last()
}

/// The 1-based line and column of `key` inside the `chaos` extension of the Chaos Toolkit `source` (JSON or
/// YAML), or of the extension's name when `key` is `None` or not found; `(1, 1)` as the last resort.
fn position(source: &str, key: Option<&str>) -> (usize, usize) {
    let Some(name_at) = find_extension(source) else { return (1, 1) };
    let offset = key
        .and_then(|key| {
            [format!("\"{key}\""), format!("{key}:")]
                .iter()
                .filter_map(|needle| source[name_at..].find(needle.as_str()))
                .min()
                .map(|at| name_at + at)
        })
        .unwrap_or(name_at);
    line_column(source, offset)
}

/// Where the extension's `name: chaos` is written.
fn find_extension(source: &str) -> Option<usize> {
    let re = regex::Regex::new(r#""?name"?\s*:\s*"?chaos"?\s*[,}\n]"#).ok()?;
    let extensions = source.find("extensions")?;
    re.find(&source[extensions..]).map(|m| extensions + m.start())
}

fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_point_at_the_extension_field() {
        let source = "{\n  \"title\": \"t\",\n  \"extensions\": [\n    {\"name\": \"chaos\",\n     \"slos\": []}\n  ]\n}\n";
        assert_eq!(position(source, Some("slos")), (5, 6));
        assert_eq!(position(source, None), (4, 6));
        let yaml = "title: t\nextensions:\n  - name: chaos\n    load: []\n";
        assert_eq!(position(yaml, Some("load")), (4, 5));
    }
}
