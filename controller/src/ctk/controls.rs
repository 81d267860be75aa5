//! Controls: python hooks run before and after loading, the experiment, the hypothesis, the method, the
//! rollbacks and each activity. Exceptions are logged and swallowed, except `InterruptExecution`, which
//! interrupts the run (status `interrupted`), as Chaos Toolkit does.
//!
//! Controls run through the run's python driver ([`super::python`]): the control module's hook function
//! (`before_experiment_control`, `after_activity_control`, ...) is called with `context=` and, when it declares
//! them, `state`, `configuration`, `secrets`, `experiment`, `extensions` and `settings` (always `None`), plus the
//! control's `arguments` (`${}`-substituted), as chaoslib 1.44's `apply_python_control` does. Which controls
//! apply where follows chaoslib's `get_context_controls`: the experiment's own and global (`--control-file`)
//! controls at the experiment level; the experiment's `automatic` ones (default true) at the method and
//! rollbacks; at a hypothesis or activity its own controls, after the experiment's automatic ones it does not
//! override by name (chaoslib repeats a top-level control once per local control there; here it runs once).
//! `scope: before|after` limits a control to one side. A module that does not import is a warning, once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::model;
use super::python::Python;

/// The pseudo-function of [`Controls::call`] that only imports the module.
const IMPORT: &str = "__chaos_import__";

/// The largest control file read.
const MAX_CONTROL_FILE: u64 = 1024 * 1024;

/// Where in the run a control hook is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    BeforeLoading,
    AfterLoading,
    BeforeExperiment,
    AfterExperiment,
    BeforeHypothesis,
    AfterHypothesis,
    BeforeMethod,
    AfterMethod,
    BeforeRollback,
    AfterRollback,
    BeforeActivity,
    AfterActivity,
}

/// The level a hook belongs to (chaoslib's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Loader,
    Experiment,
    Hypothesis,
    Method,
    Rollback,
    Activity,
}

impl Hook {
    /// The python function chaoslib calls for this hook.
    pub fn function(self) -> &'static str {
        match self {
            Hook::BeforeLoading => "before_loading_experiment_control",
            Hook::AfterLoading => "after_loading_experiment_control",
            Hook::BeforeExperiment => "before_experiment_control",
            Hook::AfterExperiment => "after_experiment_control",
            Hook::BeforeHypothesis => "before_hypothesis_control",
            Hook::AfterHypothesis => "after_hypothesis_control",
            Hook::BeforeMethod => "before_method_control",
            Hook::AfterMethod => "after_method_control",
            Hook::BeforeRollback => "before_rollback_control",
            Hook::AfterRollback => "after_rollback_control",
            Hook::BeforeActivity => "before_activity_control",
            Hook::AfterActivity => "after_activity_control",
        }
    }

    fn is_before(self) -> bool {
        matches!(
            self,
            Hook::BeforeLoading
                | Hook::BeforeExperiment
                | Hook::BeforeHypothesis
                | Hook::BeforeMethod
                | Hook::BeforeRollback
                | Hook::BeforeActivity
        )
    }

    fn level(self) -> Level {
        match self {
            Hook::BeforeLoading | Hook::AfterLoading => Level::Loader,
            Hook::BeforeExperiment | Hook::AfterExperiment => Level::Experiment,
            Hook::BeforeHypothesis | Hook::AfterHypothesis => Level::Hypothesis,
            Hook::BeforeMethod | Hook::AfterMethod => Level::Method,
            Hook::BeforeRollback | Hook::AfterRollback => Level::Rollback,
            Hook::BeforeActivity | Hook::AfterActivity => Level::Activity,
        }
    }
}

/// A control raised `InterruptExecution`: the run stops with status `interrupted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interrupt(pub String);

/// An invalid control: where (a JSON pointer into the experiment, e.g. `/method/2/controls/0/provider/type`,
/// or a control file's path and the control's name) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlError {
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

/// The controls in force for a run (the experiment's, the hypothesis', each activity's).
#[derive(Debug, Default)]
pub struct Controls {
    /// None: no controls anywhere (nothing to call).
    python: Option<Python>,
    /// `--control-file` controls (chaoslib's global controls).
    global: Vec<Value>,
    /// The experiment as loaded (its `controls` are the top-level ones), passed as `experiment=`.
    experiment: Value,
    configuration: Map<String, Value>,
    secrets: Map<String, Value>,
    /// Modules already reported missing.
    warned: HashSet<String>,
}

impl Controls {
    /// The controls of `experiment` and of the `control_files` (`--control-file`: JSON or YAML mappings of
    /// name → control, as chaoslib's `load_global_controls` reads them), checked ([`Controls::check`]); they
    /// run through `python`.
    pub fn load(
        python: Python,
        experiment: &model::Experiment,
        control_files: &[PathBuf],
    ) -> Result<Controls, ControlError> {
        check(experiment)?;
        let mut global = Vec::new();
        for file in control_files {
            global.extend(read_control_file(file)?);
        }
        let experiment = serde_json::to_value(experiment).map_err(|e| ControlError {
            pointer: String::new(),
            message: format!("cannot copy the experiment: {e}"),
        })?;
        let any = !global.is_empty() || has_controls(&experiment);
        Ok(Controls {
            python: any.then_some(python),
            global,
            experiment,
            configuration: Map::new(),
            secrets: Map::new(),
            warned: HashSet::new(),
        })
    }

    /// Whether any control is declared (no driver is needed otherwise).
    pub fn is_empty(&self) -> bool {
        self.python.is_none()
    }

    /// The resolved configuration and secrets (scope → key → value) the hooks receive; call again when the
    /// configuration changes during the run.
    pub fn set_configuration(&mut self, configuration: &Map<String, Value>, secrets: &Map<String, Value>) {
        self.configuration = configuration.clone();
        self.secrets = secrets.clone();
    }

    /// Warns about control modules that do not import (Chaos Toolkit's validation does the same and carries on).
    pub async fn validate(&mut self) {
        for control in self.all_controls() {
            let _ = self.call(&control, IMPORT, Value::Null, Value::Null).await;
        }
    }

    /// Calls each control's `configure_control` once per control name (chaoslib's `initialize_controls`);
    /// failures are logged.
    pub async fn initialize(&mut self) {
        for control in self.all_controls() {
            let _ = self.call(&control, "configure_control", Value::Null, Value::Null).await;
        }
    }

    /// Calls each control's `cleanup_control` once per control name; failures are logged.
    pub async fn cleanup(&mut self) {
        for control in self.all_controls() {
            let _ = self.call(&control, "cleanup_control", Value::Null, Value::Null).await;
        }
    }

    /// Calls every control in scope for `hook`; `context` is the experiment, hypothesis or activity the hook
    /// is about, `state` the journal, hypothesis state or activity run record after the fact.
    pub async fn run(&mut self, hook: Hook, context: &Value, state: Option<&Value>) -> Result<(), Interrupt> {
        if self.python.is_none() {
            return Ok(());
        }
        let scope = if hook.is_before() { "before" } else { "after" };
        for control in self.in_scope(hook.level(), context) {
            if control.get("scope").and_then(Value::as_str).is_some_and(|s| s != scope) {
                continue;
            }
            self.call(&control, hook.function(), context.clone(), state.cloned().unwrap_or(Value::Null))
                .await?;
        }
        Ok(())
    }

    /// The controls applying at `level` for `context` (chaoslib's `get_context_controls`, deduplicated).
    fn in_scope(&self, level: Level, context: &Value) -> Vec<Value> {
        let top = controls_of(&self.experiment);
        let automatic =
            || top.iter().filter(|c| c.get("automatic").and_then(Value::as_bool).unwrap_or(true)).cloned();
        match level {
            Level::Loader => self.global.clone(),
            Level::Experiment => self.global.iter().cloned().chain(top.iter().cloned()).collect(),
            Level::Method | Level::Rollback if !top.is_empty() => automatic().collect(),
            Level::Method | Level::Rollback => self.global.clone(),
            Level::Hypothesis | Level::Activity => {
                let own: Vec<Value> = self.global.iter().cloned().chain(controls_of(context)).collect();
                let overridden: HashSet<&str> = own.iter().filter_map(|c| c.get("name")?.as_str()).collect();
                let inherited: Vec<Value> = automatic()
                    .filter(|c| {
                        !c.get("name").and_then(Value::as_str).is_some_and(|n| overridden.contains(n))
                    })
                    .collect();
                inherited.into_iter().chain(own.iter().cloned()).collect()
            }
        }
    }

    /// Every control declared anywhere, once per name (global ones first).
    fn all_controls(&self) -> Vec<Value> {
        let mut all = self.global.clone();
        collect_controls(&self.experiment, &mut all);
        let mut seen = HashSet::new();
        all.retain(|c| seen.insert(c.get("name").and_then(Value::as_str).unwrap_or_default().to_string()));
        all
    }

    /// Calls `func` of `control`'s module: `Err` only for `InterruptExecution`; every other outcome is logged.
    async fn call(
        &mut self,
        control: &Value,
        func: &str,
        context: Value,
        state: Value,
    ) -> Result<(), Interrupt> {
        let Some(python) = self.python.clone() else { return Ok(()) };
        let name = control.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(module) = module_of(control) else { return Ok(()) };
        let arguments = control
            .get("provider")
            .and_then(|p| p.get("arguments"))
            .map(|a| substitute(a, &self.configuration, &self.secrets))
            .unwrap_or_else(|| json!({}));
        let request = if func == IMPORT {
            json!({"op": "import", "module": module})
        } else {
            let mut kwargs = Map::new();
            let mut inject = Map::new();
            inject.insert("configuration".into(), Value::Object(self.configuration.clone()));
            inject.insert("secrets".into(), Value::Object(self.secrets.clone()));
            inject.insert("experiment".into(), self.experiment.clone());
            inject.insert(
                "extensions".into(),
                self.experiment.get("extensions").cloned().unwrap_or(Value::Null),
            );
            inject.insert("settings".into(), Value::Null);
            if func.ends_with("_control") && !matches!(func, "configure_control" | "cleanup_control") {
                inject.insert("state".into(), state);
                kwargs.insert("context".into(), context);
            }
            // chaoslib calls cleanup_control() with no argument at all.
            let arguments = if func == "cleanup_control" {
                inject.clear();
                json!({})
            } else {
                arguments
            };
            json!({"op": "control", "module": module, "func": func, "arguments": arguments, "inject": inject, "kwargs": kwargs})
        };
        let response = match python.request(request, None).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(target: "chaos::ctk::controls", control = %name, func, "control not applied: {e:?}");
                return Ok(());
            }
        };
        if let Some(why) = response.get("missing") {
            if self.warned.insert(module.to_string()) {
                tracing::warn!(
                    target: "chaos::ctk::controls",
                    "Could not find Python module '{module}' in control '{name}' ({}). Did you install the Python \
                     module? The experiment will carry on running nonetheless.",
                    why.as_str().unwrap_or_default()
                );
            }
        } else if let Some(message) = response.get("interrupt") {
            let message = message.as_str().unwrap_or_default().to_string();
            tracing::info!(target: "chaos::ctk::controls", control = %name, func, "control interrupted the execution: {message}");
            return Err(Interrupt(message));
        } else if let Some(lines) = response.get("failed").or_else(|| response.get("exception")) {
            let text: Vec<String> = super::python::lines(lines.clone());
            tracing::warn!(target: "chaos::ctk::controls", control = %name, func, "control failed: {}", text.concat().trim_end());
        }
        Ok(())
    }
}

/// Checks every control of `experiment` as chaoslib's `validate_controls` does, and refuses providers that are
/// not python (Chaos Toolkit ignores them silently).
pub fn check(experiment: &model::Experiment) -> Result<(), ControlError> {
    let check_list = |controls: &[model::Control], at: &str| -> Result<(), ControlError> {
        for (i, control) in controls.iter().enumerate() {
            check_one(control, &format!("{at}/controls/{i}"))?;
        }
        Ok(())
    };
    check_list(&experiment.controls, "")?;
    if let Some(hypothesis) = &experiment.steady_state_hypothesis {
        check_list(&hypothesis.controls, "/steady-state-hypothesis")?;
        check_activities(&hypothesis.probes, "/steady-state-hypothesis/probes", &check_list)?;
    }
    check_activities(&experiment.method, "/method", &check_list)?;
    check_activities(&experiment.rollbacks, "/rollbacks", &check_list)
}

fn check_activities(
    activities: &[model::ActivityOrRef],
    at: &str,
    check_list: &impl Fn(&[model::Control], &str) -> Result<(), ControlError>,
) -> Result<(), ControlError> {
    for (i, activity) in activities.iter().enumerate() {
        if let model::ActivityOrRef::Activity(activity) = activity {
            check_list(&activity.controls, &format!("{at}/{i}"))?;
        }
    }
    Ok(())
}

fn check_one(control: &model::Control, at: &str) -> Result<(), ControlError> {
    let err = |pointer: String, message: String| Err(ControlError { pointer, message });
    if control.name.is_empty() {
        return err(format!("{at}/name"), "a control must have a non-empty `name`".into());
    }
    let name = &control.name;
    if let Some(scope) = control.extra.get("scope")
        && !matches!(scope.as_str(), Some("before" | "after"))
    {
        return err(
            format!("{at}/scope"),
            format!("control '{name}': scope must be 'before' or 'after', not {scope}"),
        );
    }
    if let Some(automatic) = control.extra.get("automatic")
        && !automatic.is_boolean()
    {
        return err(
            format!("{at}/automatic"),
            format!("control '{name}': automatic must be true or false, not {automatic}"),
        );
    }
    let Some(provider) = &control.provider else {
        return err(at.to_string(), format!("control '{name}' must have a `provider`"));
    };
    let Some(provider) = provider.as_object() else {
        return err(format!("{at}/provider"), format!("control '{name}': the provider must be an object"));
    };
    match provider.get("type").and_then(Value::as_str) {
        Some("python") => {}
        Some(other) => {
            return err(
                format!("{at}/provider/type"),
                format!(
                    "control '{name}': provider type '{other}' is not supported; controls run as python only"
                ),
            );
        }
        None => {
            return err(
                format!("{at}/provider/type"),
                format!("control '{name}': the provider needs `type: python`"),
            );
        }
    }
    if provider.get("module").and_then(Value::as_str).is_none_or(str::is_empty) {
        return err(format!("{at}/provider/module"), format!("Control '{name}' must have a module path"));
    }
    if let Some(arguments) = provider.get("arguments")
        && !arguments.is_object()
    {
        return err(
            format!("{at}/provider/arguments"),
            format!("control '{name}': arguments must be an object"),
        );
    }
    Ok(())
}

/// Reads a `--control-file`: a JSON (`.json`) or YAML (`.yaml`, `.yml`) mapping of control name → control.
pub fn read_control_file(path: &Path) -> Result<Vec<Value>, ControlError> {
    let at = |message: String| ControlError { pointer: path.display().to_string(), message };
    let file = std::fs::File::open(path).map_err(|e| at(format!("cannot read the control file: {e}")))?;
    let mut text = String::new();
    use std::io::Read;
    file.take(MAX_CONTROL_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| at(format!("cannot read the control file: {e}")))?;
    if text.len() as u64 > MAX_CONTROL_FILE {
        return Err(at(format!("the control file is larger than {MAX_CONTROL_FILE} bytes")));
    }
    let value: Value = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).map_err(|e| ControlError {
            pointer: format!("{}:{}:{}", path.display(), e.line(), e.column()),
            message: e.to_string(),
        })?,
        Some("yaml" | "yml") => serde_saphyr::from_str(&text).map_err(|e| at(e.to_string()))?,
        _ => return Err(at("a control file must be .json, .yaml or .yml".into())),
    };
    let Value::Object(map) = value else {
        return Err(at("a control file holds a mapping of control name to control".into()));
    };
    let mut controls = Vec::new();
    for (name, control) in map {
        let Value::Object(mut control) = control else {
            return Err(at(format!("control '{name}' must be an object")));
        };
        control.insert("name".into(), Value::String(name.clone()));
        let parsed: model::Control = serde_json::from_value(Value::Object(control.clone()))
            .map_err(|e| at(format!("control '{name}': {e}")))?;
        check_one(&parsed, &format!("{}#{name}", path.display()))?;
        controls.push(Value::Object(control));
    }
    Ok(controls)
}

fn controls_of(value: &Value) -> Vec<Value> {
    value.get("controls").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn module_of(control: &Value) -> Option<&str> {
    control.get("provider")?.get("module")?.as_str()
}

/// Whether the experiment declares a control anywhere.
fn has_controls(experiment: &Value) -> bool {
    let mut all = Vec::new();
    collect_controls(experiment, &mut all);
    !all.is_empty()
}

/// The controls of the experiment, its hypothesis and every activity, in that order.
fn collect_controls(experiment: &Value, into: &mut Vec<Value>) {
    into.extend(controls_of(experiment));
    if let Some(hypothesis) = experiment.get("steady-state-hypothesis") {
        into.extend(controls_of(hypothesis));
        for probe in hypothesis.get("probes").and_then(Value::as_array).into_iter().flatten() {
            into.extend(controls_of(probe));
        }
    }
    for list in ["method", "rollbacks"] {
        for activity in experiment.get(list).and_then(Value::as_array).into_iter().flatten() {
            into.extend(controls_of(activity));
        }
    }
}

/// chaoslib's `substitute`: `${name}` from the configuration, then any secret scope; a string that is exactly
/// one `${name}` keeps the value's type; unknown names stay as written.
fn substitute(value: &Value, configuration: &Map<String, Value>, secrets: &Map<String, Value>) -> Value {
    let lookup = |name: &str| -> Option<Value> {
        configuration.get(name).cloned().or_else(|| {
            secrets.values().filter_map(Value::as_object).find_map(|scope| scope.get(name).cloned())
        })
    };
    match value {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
                && !name.contains(['$', '{', '}'])
                && let Some(found) = lookup(name)
            {
                return found;
            }
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else { break };
                out.push_str(&rest[..start]);
                match lookup(&after[..end]) {
                    Some(Value::String(v)) => out.push_str(&v),
                    Some(v) => out.push_str(&v.to_string()),
                    None => out.push_str(&rest[start..start + end + 3]),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute(v, configuration, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| (k.clone(), substitute(v, configuration, secrets))).collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_keeps_types_of_whole_references_and_leaves_unknown_ones() {
        let configuration: Map<String, Value> =
            serde_json::from_value(json!({"port": 8080, "host": "db"})).unwrap_or_default();
        let secrets: Map<String, Value> =
            serde_json::from_value(json!({"scope": {"token": "s3"}})).unwrap_or_default();
        let value = json!({"a": "${port}", "b": "${host}:${port}/${nope}", "c": ["${token}"], "d": "x${"});
        assert_eq!(
            substitute(&value, &configuration, &secrets),
            json!({"a": 8080, "b": "db:8080/${nope}", "c": ["s3"], "d": "x${"})
        );
    }

    #[test]
    fn hooks_name_chaoslib_functions() {
        assert_eq!(Hook::BeforeLoading.function(), "before_loading_experiment_control");
        assert_eq!(Hook::AfterActivity.function(), "after_activity_control");
        assert!(Hook::BeforeRollback.is_before() && !Hook::AfterRollback.is_before());
    }
}
