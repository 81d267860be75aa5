//! The Chaos Toolkit runner (`run.py: Runner._run`, reference §10–§14): dynamic configuration, the title's
//! substitution, the before-hypothesis gate, the method (background activities waited for at its end), a
//! hypothesis during the method, the after-hypothesis, the rollbacks per strategy, with statuses,
//! deviation and dry modes exactly as chaostoolkit-lib 1.44 (the table of §12). Controls are called at
//! every hook. An interrupt cuts the running activity (recorded without a status) and ends the run
//! `interrupted`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::ActivityFailure;
use super::config::{Resolved, is_dynamic};
use super::controls::{Controls, Hook};
use super::journal::{Journal, RunRecord, State, Status, now};
use super::load::Loaded;
use super::providers::{self, HttpCall, ProcessCall, activity_failed};
use super::python::{Python, PythonCall};
use super::tolerance;
use crate::engine::lock;

/// `--dry`: what is not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dry {
    /// Nothing runs; outputs `null`, tolerances skipped.
    Activities,
    /// Probes run, actions do not.
    Actions,
    /// Actions run, probes do not (their tolerances are skipped, so the hypothesis passes).
    Probes,
    /// Everything runs but pauses.
    Pause,
}

impl Dry {
    pub fn parse(s: &str) -> Option<Dry> {
        match s {
            "activities" => Some(Dry::Activities),
            "actions" => Some(Dry::Actions),
            "probes" => Some(Dry::Probes),
            "pause" => Some(Dry::Pause),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Dry::Activities => "activities",
            Dry::Actions => "actions",
            Dry::Probes => "probes",
            Dry::Pause => "pause",
        }
    }
}

/// `--hypothesis-strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypothesisStrategy {
    Default,
    BeforeMethodOnly,
    AfterMethodOnly,
    DuringMethodOnly,
    Continuously,
}

impl HypothesisStrategy {
    /// The strategy named `s` (`continously`, Chaos Toolkit's misspelling, accepted too).
    pub fn parse(s: &str) -> Option<HypothesisStrategy> {
        match s {
            "default" => Some(HypothesisStrategy::Default),
            "before-method-only" => Some(HypothesisStrategy::BeforeMethodOnly),
            "after-method-only" => Some(HypothesisStrategy::AfterMethodOnly),
            "during-method-only" => Some(HypothesisStrategy::DuringMethodOnly),
            "continuously" | "continously" => Some(HypothesisStrategy::Continuously),
            _ => None,
        }
    }
    fn before(self) -> bool {
        matches!(self, Self::Default | Self::BeforeMethodOnly | Self::Continuously)
    }
    fn during(self) -> bool {
        matches!(self, Self::DuringMethodOnly | Self::Continuously)
    }
    fn after(self) -> bool {
        matches!(self, Self::Default | Self::AfterMethodOnly | Self::Continuously)
    }
}

/// A progress callback: one line per activity.
pub type Progress = Arc<dyn Fn(String) + Send + Sync>;

/// How a run goes (the CLI's flags).
#[derive(Clone, Default)]
pub struct Options {
    pub dry: Option<Dry>,
    /// `--hypothesis-strategy`; the experiment's `runtime` when absent, else `default`.
    pub hypothesis_strategy: Option<HypothesisStrategy>,
    /// `--rollback-strategy` (default, always, never, deviated; anything else plays nothing, as Chaos
    /// Toolkit does); the experiment's `runtime` when absent.
    pub rollback_strategy: Option<String>,
    /// Seconds between two during-method hypotheses (default 1).
    pub hypothesis_frequency: Option<f64>,
    pub fail_fast: bool,
    /// Variables of `.env` var files, given to process activities.
    pub env: Vec<(String, String)>,
    pub progress: Option<Progress>,
    /// The method's window, for `extensions: chaos` (`ctk/native.rs`): told when the method ends, and
    /// stopping it when cancelled (a native guardrail trip).
    pub method_window: Option<MethodWindow>,
}

/// Around the Chaos Toolkit method: `ended` is cancelled when the method has ended (background activities
/// included); cancelling `stop` during the method cuts it like an interrupt, but the run goes on (after
/// hypothesis, rollbacks) and ends `failed`.
#[derive(Clone, Debug, Default)]
pub struct MethodWindow {
    pub ended: CancellationToken,
    pub stop: CancellationToken,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("dry", &self.dry)
            .field("hypothesis_strategy", &self.hypothesis_strategy)
            .field("rollback_strategy", &self.rollback_strategy)
            .field("hypothesis_frequency", &self.hypothesis_frequency)
            .field("fail_fast", &self.fail_fast)
            .finish_non_exhaustive()
    }
}

/// Why a run could not start (Chaos Toolkit crashes there: exit 1, no journal).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// What every part of a run shares.
struct Shared {
    resolved: Mutex<Resolved>,
    python: Python,
    controls: tokio::sync::Mutex<Controls>,
    dry: Option<Dry>,
    env: Vec<(String, String)>,
    progress: Option<Progress>,
    started: Instant,
    /// Activities a `ref` may name: method and hypothesis probes.
    named: Vec<Value>,
    /// A status set during the run (fail-fast, a control's interrupt).
    status: Mutex<Option<Status>>,
    deviated: AtomicBool,
}

/// One phase of the run, for progress lines.
#[derive(Clone, Copy)]
enum Phase {
    Before,
    During,
    After,
    Method,
    Rollback,
    Tolerance,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "steady state before",
            Phase::During => "steady state during",
            Phase::After => "steady state after",
            Phase::Method => "method",
            Phase::Rollback => "rollback",
            Phase::Tolerance => "tolerance probe",
        }
    }
}

/// Runs a loaded experiment with its resolved configuration and secrets. `interrupt` ends the run
/// (`interrupted`, the running activity cut short); `stop_rollbacks` cuts rollbacks short (a second
/// interrupt).
pub async fn run(
    loaded: &Loaded,
    resolved: Resolved,
    python: Python,
    controls: Controls,
    options: Options,
    interrupt: CancellationToken,
    stop_rollbacks: CancellationToken,
) -> Result<Journal, StartError> {
    let runtime = loaded.raw.get("runtime");
    let hypothesis_strategy = match options.hypothesis_strategy {
        Some(s) => s,
        None => match runtime.and_then(|r| r.get("hypothesis")).and_then(|h| h.get("strategy")) {
            None | Some(Value::Null) => HypothesisStrategy::Default,
            Some(Value::String(s)) => HypothesisStrategy::parse(s).ok_or_else(|| {
                StartError(format!(
                    "{}: runtime.hypothesis.strategy {s:?} is not a hypothesis strategy (default, \
                     before-method-only, after-method-only, during-method-only, continuously)",
                    loaded.file
                ))
            })?,
            Some(other) => {
                return Err(StartError(format!(
                    "{}: runtime.hypothesis.strategy must be a string, found {other}",
                    loaded.file
                )));
            }
        },
    };
    let rollback_strategy = options
        .rollback_strategy
        .clone()
        .or_else(|| {
            runtime
                .and_then(|r| r.get("rollbacks"))
                .and_then(|r| r.get("strategy"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "default".into());
    let frequency = options.hypothesis_frequency.unwrap_or(1.0).max(0.0);

    let mut named = Vec::new();
    let probes = loaded.raw.get("steady-state-hypothesis").and_then(|h| h.get("probes"));
    for list in [probes, loaded.raw.get("method")].into_iter().flatten() {
        for a in list.as_array().into_iter().flatten() {
            if a.get("ref").is_none() {
                named.push(a.clone());
            }
        }
    }
    let shared = Arc::new(Shared {
        resolved: Mutex::new(resolved),
        python,
        controls: tokio::sync::Mutex::new(controls),
        dry: options.dry,
        env: options.env.clone(),
        progress: options.progress.clone(),
        started: Instant::now(),
        named,
        status: Mutex::new(None),
        deviated: AtomicBool::new(false),
    });

    shared.dynamic_configuration(loaded).await;

    let mut experiment = loaded.raw.clone();
    if let Value::Object(m) = &mut experiment {
        if let Some(title) = m.get("title").cloned() {
            let substituted = lock(&shared.resolved).substitute(&title);
            m.insert("title".into(), substituted);
        }
        m.insert("dry".into(), options.dry.map_or(Value::Null, |d| Value::String(d.as_str().into())));
    }
    let mut journal = Journal {
        experiment: experiment.clone(),
        start: now(),
        end: now(),
        status: Status::Completed,
        deviated: false,
        before: None,
        after: None,
        during: Vec::new(),
        run: Vec::new(),
        rollbacks: Vec::new(),
        chaos: None,
    };
    let hypothesis = loaded.raw.get("steady-state-hypothesis").cloned();
    let method: Vec<Value> = loaded.raw.get("method").and_then(Value::as_array).cloned().unwrap_or_default();
    let rollbacks: Vec<Value> =
        loaded.raw.get("rollbacks").and_then(Value::as_array).cloned().unwrap_or_default();

    if let Err(i) = shared.control(Hook::BeforeExperiment, &experiment, None).await {
        shared.interrupted(&interrupt, &i.0);
    }
    let interrupted = |s: &Shared| interrupt.is_cancelled() || s.status() == Some(Status::Interrupted);

    let mut method_runs = true;
    // A native guardrail (`extensions: chaos`) stopped the method: the run ends `failed`, once its rollbacks
    // (which a failed status would skip under the default strategy) have undone what the method did.
    let mut tripped = false;
    if !interrupted(&shared) && hypothesis_strategy.before() {
        let state = shared.hypothesis(hypothesis.as_ref(), Phase::Before, &interrupt).await;
        if let Some(state) = &state {
            if state.errored {
                shared.set_status(Status::Failed);
                method_runs = false;
            } else if state.met == Some(false) {
                shared.note(Phase::Before, "hypothesis", "not met: the method is skipped", Some(false));
                method_runs = false;
            }
        }
        journal.before = state;
    }
    if method_runs && !interrupted(&shared) {
        let stop_during = CancellationToken::new();
        let during = if hypothesis_strategy.during() {
            let shared = shared.clone();
            let hypothesis = hypothesis.clone();
            let stop = stop_during.clone();
            let interrupt = interrupt.clone();
            let fail_fast = options.fail_fast;
            Some(tokio::spawn(async move {
                let mut states = Vec::new();
                while !stop.is_cancelled() && !interrupt.is_cancelled() {
                    let Some(state) = shared.hypothesis(hypothesis.as_ref(), Phase::During, &interrupt).await
                    else {
                        break;
                    };
                    let missed = state.met == Some(false);
                    states.push(state);
                    if missed && fail_fast {
                        shared.set_status(Status::Failed);
                        shared.deviated.store(true, Ordering::SeqCst);
                        shared.note(Phase::During, "hypothesis", "not met: failing fast", Some(false));
                        break;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = interrupt.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs_f64(frequency)) => {}
                    }
                }
                states
            }))
        } else {
            None
        };
        let method_json = Value::Array(method.clone());
        if let Err(i) = shared.control(Hook::BeforeMethod, &method_json, None).await {
            shared.interrupted(&interrupt, &i.0);
        }
        if !interrupted(&shared) {
            // A native guardrail trip (`extensions: chaos`) cuts the method as an interrupt would.
            let method_cancel = interrupt.child_token();
            let stopper = options.method_window.as_ref().map(|w| {
                let (stop, cancel) = (w.stop.clone(), method_cancel.clone());
                tokio::spawn(async move {
                    stop.cancelled().await;
                    cancel.cancel();
                })
            });
            journal.run = shared.method(&method, &method_cancel).await;
            if let Some(stopper) = stopper {
                stopper.abort();
            }
        }
        tripped = options.method_window.as_ref().is_some_and(|w| w.stop.is_cancelled())
            && !interrupt.is_cancelled();
        if tripped {
            shared.note(
                Phase::Method,
                "guardrail",
                "a native guardrail tripped: the method was stopped",
                Some(false),
            );
        }
        if let Some(window) = &options.method_window {
            window.ended.cancel();
        }
        let runs = Value::Array(journal.run.iter().map(RunRecord::to_json).collect());
        if let Err(i) = shared.control(Hook::AfterMethod, &method_json, Some(&runs)).await {
            shared.interrupted(&interrupt, &i.0);
        }
        stop_during.cancel();
        if let Some(task) = during {
            match task.await {
                Ok(states) => journal.during = states,
                Err(e) => tracing::error!("the during-method hypothesis ended abnormally: {e}"),
            }
        }
        let stopped = matches!(shared.status(), Some(Status::Aborted | Status::Interrupted));
        if !stopped && !interrupted(&shared) && hypothesis_strategy.after() {
            let state = shared.hypothesis(hypothesis.as_ref(), Phase::After, &interrupt).await;
            if let Some(state) = &state
                && !interrupted(&shared)
            {
                if state.errored {
                    shared.set_status(Status::Failed);
                    shared.deviated.store(true, Ordering::SeqCst);
                } else {
                    // A fail-fast `failed` is rewritten by a hypothesis that could be judged.
                    let mut status = lock(&shared.status);
                    if *status == Some(Status::Failed) {
                        *status = None;
                    }
                    if state.met == Some(false) {
                        shared.deviated.store(true, Ordering::SeqCst);
                    }
                }
            }
            journal.after = state;
        }
    }
    if interrupt.is_cancelled() {
        shared.set_status(Status::Interrupted);
    }
    let status = shared.status();
    let deviated = shared.deviated.load(Ordering::SeqCst);
    let play = match rollback_strategy.as_str() {
        "default" => !matches!(status, Some(Status::Failed | Status::Interrupted)),
        "always" => true,
        "never" => false,
        "deviated" => deviated,
        other => {
            tracing::warn!(
                "rollback strategy {other:?} is not one Chaos Toolkit knows: no rollbacks are played"
            );
            false
        }
    };
    if play {
        let rollbacks_json = Value::Array(rollbacks.clone());
        if shared.control(Hook::BeforeRollback, &rollbacks_json, None).await.is_err() {
            tracing::warn!(
                "a control interrupted before the rollbacks; they are played anyway, as Chaos Toolkit does"
            );
        }
        for activity in &rollbacks {
            if stop_rollbacks.is_cancelled() {
                break;
            }
            let Some(activity) = shared.resolve_ref(activity) else { continue };
            let record = shared.execute(&activity, Phase::Rollback, &stop_rollbacks).await;
            journal.rollbacks.push(record);
        }
        let done = Value::Array(journal.rollbacks.iter().map(RunRecord::to_json).collect());
        let _ = shared.control(Hook::AfterRollback, &rollbacks_json, Some(&done)).await;
    } else {
        shared.note(
            Phase::Rollback,
            "rollbacks",
            &format!("not played (strategy {rollback_strategy})"),
            None,
        );
    }
    if tripped {
        shared.set_status(Status::Failed);
    }
    journal.end = now();
    journal.status = shared.status().unwrap_or(Status::Completed);
    journal.deviated = shared.deviated.load(Ordering::SeqCst);
    let json = journal.to_json();
    let _ = shared.control(Hook::AfterExperiment, &experiment, Some(&json)).await;
    Ok(journal)
}

impl Shared {
    fn status(&self) -> Option<Status> {
        *lock(&self.status)
    }

    /// Sets the status unless the run is already interrupted (an interrupt is final).
    fn set_status(&self, status: Status) {
        let mut s = lock(&self.status);
        if *s != Some(Status::Interrupted) {
            *s = Some(status);
        }
    }

    fn interrupted(&self, interrupt: &CancellationToken, reason: &str) {
        tracing::error!("interrupted by a control: {reason}");
        self.set_status(Status::Interrupted);
        interrupt.cancel();
    }

    async fn control(
        &self,
        hook: Hook,
        context: &Value,
        state: Option<&Value>,
    ) -> Result<(), super::controls::Interrupt> {
        self.controls.lock().await.run(hook, context, state).await
    }

    fn note(&self, phase: Phase, name: &str, detail: &str, ok: Option<bool>) {
        if let Some(progress) = &self.progress {
            let mark = match ok {
                Some(true) => " ok",
                Some(false) => " FAILED",
                None => "",
            };
            progress(format!(
                "[{:>6.1}s] {}: {name}: {detail}{mark}",
                self.started.elapsed().as_secs_f64(),
                phase.as_str()
            ));
        }
    }

    /// Evaluates dynamic configuration values (probes) in order, each seeing the ones before; a failure
    /// logs a warning and leaves the key out, as Chaos Toolkit does.
    async fn dynamic_configuration(&self, loaded: &Loaded) {
        let Some(Value::Object(config)) = loaded.raw.get("configuration") else { return };
        for (key, value) in config {
            if !is_dynamic(value) {
                continue;
            }
            let resolved = lock(&self.resolved).clone();
            let overridden = resolved.configuration.get(key).is_some_and(|v| v != value);
            if overridden {
                continue;
            }
            let result = match value.get("provider") {
                Some(provider) => self.provide(provider, &resolved, false).await,
                None => Err(activity_failed("a dynamic configuration probe has no provider")),
            };
            let result =
                result.and_then(|output| match value.pointer("/provider/type").and_then(Value::as_str) {
                    Some("process") => {
                        if output.get("status").and_then(Value::as_i64) != Some(0) {
                            Err(activity_failed(format!(
                                "the process exited with {}",
                                output.get("status").cloned().unwrap_or(Value::Null)
                            )))
                        } else {
                            Ok(Value::String(
                                output
                                    .get("stdout")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .trim()
                                    .to_string(),
                            ))
                        }
                    }
                    Some("http") => Ok(output.get("body").cloned().unwrap_or(Value::Null)),
                    _ => Ok(output),
                });
            let mut resolved = lock(&self.resolved);
            match result {
                Ok(v) => {
                    resolved.configuration.insert(key.clone(), v);
                }
                Err(e) => {
                    tracing::warn!("dynamic configuration {key}: {e}; the key is left out");
                    resolved.configuration.remove(key);
                }
            }
        }
    }

    fn resolve_ref(&self, activity: &Value) -> Option<Value> {
        match activity.get("ref").and_then(Value::as_str) {
            None => Some(activity.clone()),
            Some(name) => {
                let found =
                    self.named.iter().find(|a| a.get("name").and_then(Value::as_str) == Some(name)).cloned();
                if found.is_none() {
                    tracing::error!("referenced activity {name:?} could not be found");
                }
                found
            }
        }
    }

    fn is_dry(&self, activity: &Value) -> bool {
        let probe = activity.get("type").and_then(Value::as_str) == Some("probe");
        match self.dry {
            Some(Dry::Activities) => true,
            Some(Dry::Actions) => !probe,
            Some(Dry::Probes) => probe,
            Some(Dry::Pause) | None => false,
        }
    }

    /// Runs a provider with `resolved` (substituting its fields): its output or the failure.
    async fn provide(
        &self,
        provider: &Value,
        resolved: &Resolved,
        verbose: bool,
    ) -> Result<Value, ActivityFailure> {
        let _ = verbose;
        match provider.get("type").and_then(Value::as_str) {
            Some("http") => {
                let url = resolved.substitute(provider.get("url").unwrap_or(&Value::Null));
                let headers = provider.get("headers").map(|h| resolved.substitute(h));
                let arguments = provider.get("arguments").map(|a| resolved.substitute(a));
                let timeout = provider.get("timeout").map(|t| resolved.substitute(t));
                providers::http(HttpCall {
                    url: &url,
                    method: provider.get("method").and_then(Value::as_str),
                    headers: headers.as_ref(),
                    arguments: arguments.as_ref(),
                    timeout: timeout.as_ref(),
                    verify_tls: provider.get("verify_tls").and_then(Value::as_bool).unwrap_or(true),
                    max_retries: provider.get("max_retries").and_then(Value::as_u64).unwrap_or(0) as u32,
                })
                .await
            }
            Some("process") => {
                let arguments = provider.get("arguments").map(|a| resolved.substitute(a));
                providers::process(ProcessCall {
                    path: provider.get("path").and_then(Value::as_str).unwrap_or_default(),
                    arguments: arguments.as_ref(),
                    timeout: provider.get("timeout"),
                    env: &self.env,
                })
                .await
            }
            Some("python") => {
                let arguments = match provider.get("arguments").map(|a| resolved.substitute(a)) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                let scopes: Vec<String> = provider
                    .get("secrets")
                    .and_then(Value::as_array)
                    .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default();
                let before = resolved.configuration.clone();
                let mut configuration = before.clone();
                let result = self
                    .python
                    .call(PythonCall {
                        module: provider.get("module").and_then(Value::as_str).unwrap_or_default(),
                        func: provider.get("func").and_then(Value::as_str).unwrap_or_default(),
                        arguments,
                        configuration: &mut configuration,
                        secrets: resolved.scoped_secrets(&scopes),
                        timeout: None,
                    })
                    .await;
                // What the function changed in the configuration (toxiproxy's `<name>_PORT`) is kept.
                if configuration != before {
                    let mut shared = lock(&self.resolved);
                    for (k, v) in configuration {
                        if before.get(&k) != Some(&v) {
                            shared.configuration.insert(k, v);
                        }
                    }
                }
                result
            }
            other => Err(activity_failed(format!("unknown provider type {other:?}"))),
        }
    }

    /// One activity (`execute_activity`): controls, pauses, the provider, the record. Cut short by
    /// `cancel`, the record has no status.
    async fn execute(&self, activity: &Value, phase: Phase, cancel: &CancellationToken) -> RunRecord {
        let name = activity.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Err(i) = self.control(Hook::BeforeActivity, activity, None).await {
            tracing::error!("interrupted by a control: {}", i.0);
            self.set_status(Status::Interrupted);
        }
        let dry = self.is_dry(activity);
        let skip_pauses = dry || self.dry == Some(Dry::Pause);
        let pauses = activity.get("pauses").map(|p| lock(&self.resolved).substitute(p));
        let pause = |which: &str| -> Option<Duration> {
            if skip_pauses {
                return None;
            }
            pauses
                .as_ref()
                .and_then(|p| p.get(which))
                .and_then(|v| match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                })
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64)
        };
        if let Some(before) = pause("before") {
            self.note(phase, &name, &format!("pausing {} s before", before.as_secs_f64()), None);
            tokio::select! {
                _ = tokio::time::sleep(before) => {}
                _ = cancel.cancelled() => {}
            }
        }
        let start = now();
        let mut record = RunRecord {
            activity: activity.clone(),
            output: Value::Null,
            start,
            succeeded: None,
            exception: None,
            end: start,
            tolerance_met: None,
        };
        if cancel.is_cancelled() {
            record.end = now();
            return record;
        }
        let background = activity.get("background").and_then(Value::as_bool) == Some(true);
        let kind = activity.get("type").and_then(Value::as_str).unwrap_or("activity");
        if dry {
            record.succeeded = Some(true);
            self.note(phase, &name, &format!("{kind} (dry)"), None);
        } else {
            let resolved = lock(&self.resolved).clone();
            let provider = activity.get("provider").cloned().unwrap_or(Value::Null);
            let result = tokio::select! {
                r = self.provide(&provider, &resolved, true) => Some(r),
                _ = cancel.cancelled() => None,
            };
            match result {
                None => {
                    self.note(phase, &name, &format!("{kind} cut short by the interrupt"), None);
                    record.end = now();
                    return record;
                }
                Some(Ok(output)) => {
                    record.output = output;
                    record.succeeded = Some(true);
                    let bg = if background { " (in background)" } else { "" };
                    self.note(phase, &name, &format!("{kind}{bg} {}", summary(&record.output)), Some(true));
                }
                Some(Err(failure)) => {
                    record.succeeded = Some(false);
                    self.note(phase, &name, &format!("{kind} failed: {failure}"), Some(false));
                    tracing::error!("activity {name}: {failure}");
                    record.exception = Some(failure.exception);
                }
            }
        }
        record.end = now();
        if let Some(after) = pause("after") {
            self.note(phase, &name, &format!("pausing {} s after", after.as_secs_f64()), None);
            tokio::select! {
                _ = tokio::time::sleep(after) => {}
                _ = cancel.cancelled() => {}
            }
        }
        let state = record.to_json();
        if let Err(i) = self.control(Hook::AfterActivity, activity, Some(&state)).await {
            tracing::error!("interrupted by a control: {}", i.0);
            self.set_status(Status::Interrupted);
        }
        record
    }

    /// The steady-state hypothesis (`run_steady_state_hypothesis`): `None` without one; stops at the first
    /// probe that fails or misses its tolerance.
    async fn hypothesis(
        &self,
        hypothesis: Option<&Value>,
        phase: Phase,
        cancel: &CancellationToken,
    ) -> Option<State> {
        let hypothesis = hypothesis?;
        let mut state = State::default();
        if let Err(i) = self.control(Hook::BeforeHypothesis, hypothesis, None).await {
            tracing::error!("interrupted by a control: {}", i.0);
            self.set_status(Status::Interrupted);
            cancel.cancel();
            return Some(state);
        }
        let probes = hypothesis.get("probes").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut met = Some(true);
        for probe in &probes {
            let Some(probe) = self.resolve_ref(probe) else {
                met = Some(false);
                state.errored = true;
                break;
            };
            let mut record = self.execute(&probe, phase, cancel).await;
            if record.succeeded.is_none() {
                state.probes.push(record);
                met = None;
                break;
            }
            if record.succeeded == Some(false) {
                record.tolerance_met = Some(false);
                state.probes.push(record);
                state.errored = true;
                met = Some(false);
                break;
            }
            if self.is_dry(&probe) {
                record.tolerance_met = Some(true);
                state.probes.push(record);
                continue;
            }
            let tol = probe.get("tolerance").cloned().unwrap_or(Value::Null);
            let name = probe.get("name").and_then(Value::as_str).unwrap_or_default();
            let within = self.within(&tol, &record.output, cancel).await;
            let ok = match within {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::error!("probe {name}: the tolerance could not be checked: {e}");
                    false
                }
            };
            self.note(phase, name, if ok { "within tolerance" } else { "not within tolerance" }, Some(ok));
            record.tolerance_met = Some(ok);
            state.probes.push(record);
            if !ok {
                met = Some(false);
                break;
            }
        }
        state.met = met;
        let json = state.to_json();
        if let Err(i) = self.control(Hook::AfterHypothesis, hypothesis, Some(&json)).await {
            tracing::error!("interrupted by a control: {}", i.0);
            self.set_status(Status::Interrupted);
            cancel.cancel();
        }
        Some(state)
    }

    /// Whether `output` is within `tol`; a probe tolerance runs its provider with `arguments.value`.
    async fn within(&self, tol: &Value, output: &Value, cancel: &CancellationToken) -> Result<bool, String> {
        if !tolerance::is_probe(tol) {
            let resolved = lock(&self.resolved).clone();
            return tolerance::within(tol, output, &resolved).map_err(|e| e.0);
        }
        let mut provider = tol.get("provider").cloned().unwrap_or(Value::Null);
        if let Value::Object(p) = &mut provider {
            match p.entry("arguments").or_insert_with(|| Value::Object(Map::new())) {
                Value::Object(args) => {
                    args.insert("value".into(), output.clone());
                }
                Value::Null => {
                    let mut args = Map::new();
                    args.insert("value".into(), output.clone());
                    p.insert("arguments".into(), Value::Object(args));
                }
                _ => return Err("a probe tolerance's provider arguments must be a mapping".into()),
            }
        }
        let resolved = lock(&self.resolved).clone();
        let name = tol.get("name").and_then(Value::as_str).unwrap_or_default();
        let result = tokio::select! {
            r = self.provide(&provider, &resolved, false) => r,
            _ = cancel.cancelled() => return Ok(false),
        };
        match result {
            Ok(v) => Ok(tolerance::py_truthy(&v)),
            Err(e) => {
                self.note(Phase::Tolerance, name, &format!("failed: {e}"), Some(false));
                Ok(false)
            }
        }
    }

    /// The method (`apply_activities`): in order, background ones started and waited for at the end; stops
    /// after an activity when the status became failed, aborted or interrupted.
    async fn method(self: &Arc<Self>, method: &[Value], interrupt: &CancellationToken) -> Vec<RunRecord> {
        let mut runs: Vec<Option<RunRecord>> = Vec::new();
        let mut background = Vec::new();
        for activity in method {
            if interrupt.is_cancelled() {
                break;
            }
            let Some(activity) = self.resolve_ref(activity) else {
                self.set_status(Status::Aborted);
                break;
            };
            if activity.get("background").and_then(Value::as_bool) == Some(true) {
                let slot = runs.len();
                runs.push(None);
                let shared = self.clone();
                let cancel = interrupt.clone();
                background.push((
                    slot,
                    tokio::spawn(async move { shared.execute(&activity, Phase::Method, &cancel).await }),
                ));
                continue;
            }
            let record = self.execute(&activity, Phase::Method, interrupt).await;
            runs.push(Some(record));
            if matches!(self.status(), Some(Status::Failed | Status::Aborted | Status::Interrupted)) {
                break;
            }
        }
        for (slot, task) in background {
            match task.await {
                Ok(record) => runs[slot] = Some(record),
                Err(e) => {
                    tracing::error!("a background activity ended abnormally: {e}");
                    self.set_status(Status::Aborted);
                }
            }
        }
        runs.into_iter().flatten().collect()
    }
}

/// A short view of an output for the progress line.
fn summary(output: &Value) -> String {
    match output {
        Value::Object(o) if o.contains_key("status") => {
            format!("status {}", o.get("status").cloned().unwrap_or(Value::Null))
        }
        Value::Null => String::new(),
        other => {
            let text = other.to_string();
            if text.chars().count() > 60 {
                format!("{}…", text.chars().take(60).collect::<String>())
            } else {
                text
            }
        }
    }
}
