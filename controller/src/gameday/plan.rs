//! The game-day plan (`apiVersion: chaos/v1`, `kind: GameDay`): its serde model ([`Plan`], also the JSON
//! Schema), read with the experiment format's positioned YAML/JSON readers so that every problem is reported
//! at `file:line:column`, unknown keys refused. [`load`] reads a plan file and every experiment it names
//! (relative to the plan's directory) and checks them all before anything runs.
//!
//! ```yaml
//! apiVersion: chaos/v1
//! kind: GameDay
//! title: Checkout resilience, Q3
//! participants:
//!   - { name: Ada, role: facilitator }
//!   - { name: Grace, role: on-call }
//! scenarios:
//!   - name: a web worker dies
//!     experiment: kill-worker.yaml
//!     vars: { shop: "http://10.0.0.2:8080" }
//!     expect: [CheckoutErrorBudgetBurn]
//!     pause_after: 30s
//!     on_failure: stop
//! action_items:
//!   - Check the runbook links of the checkout alerts
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::experiment::de::from_node;
use crate::experiment::node::{self, Node, Pos, Seg, Value};
use crate::experiment::{Diagnostic, Diagnostics, Duration, is_json};

/// The `apiVersion` of a plan.
pub const API_VERSION: &str = "chaos/v1";
/// Its `kind`.
pub const KIND: &str = "GameDay";
/// Largest plan or experiment file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most scenarios in one plan.
pub const MAX_SCENARIOS: usize = 100;
/// Most participants, and most seed action items.
pub const MAX_ENTRIES: usize = 200;
/// The longest pause before or after a scenario.
pub const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One game-day plan.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[schemars(title = "chaos game-day plan (apiVersion chaos/v1, kind GameDay)")]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Must be `chaos/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Must be `GameDay`.
    pub kind: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who takes part, and in which role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<Participant>,
    /// The experiments to run, in this order.
    pub scenarios: Vec<Scenario>,
    /// Action items known before the game day (the review adds one per failed scenario and missed detection).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub action_items: Vec<String>,
}

/// Someone taking part.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    pub name: String,
    pub role: Role,
}

/// A participant's role.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs the game day: starts scenarios, keeps time.
    Facilitator,
    /// Leads the response to whatever the scenarios break.
    Commander,
    /// Responds as on-call would.
    OnCall,
    /// Helps the responders.
    Responder,
    /// Writes down what happens (notes).
    Scribe,
    /// Watches and learns.
    Observer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Facilitator => "facilitator",
            Role::Commander => "commander",
            Role::OnCall => "on-call",
            Role::Responder => "responder",
            Role::Scribe => "scribe",
            Role::Observer => "observer",
        }
    }
}

/// One scenario: an experiment run through the controller.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Unique within the plan.
    pub name: String,
    /// The experiment file, relative to the plan file.
    pub experiment: String,
    /// `--var name=value` for the experiment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// The alerts expected to detect this scenario's faults. Informational in the review (their time to
    /// detect comes from the experiment's own `detection:`, which enforces them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<String>,
    /// Wait this long before starting the scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_before: Option<Duration>,
    /// Wait this long after the scenario ends (before the next one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after: Option<Duration>,
    /// When the scenario's run does not pass: go on with the next scenario (`continue`, the default) or end
    /// the game day (`stop`).
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// What a scenario that does not pass does to the game day.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Continue,
    Stop,
}

/// One experiment a plan names, read for sending to the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExperimentFile {
    /// As the scenario's `experiment:` writes it.
    pub path: String,
    /// Where it was read (the plan's directory joined with `path`), for diagnostics.
    pub file: String,
    pub source: String,
}

/// A plan file with every experiment it names, read and checked.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub plan: Plan,
    /// The plan file's name, as given.
    pub file: String,
    pub source: String,
    /// One per distinct `experiment:` path, in the order first named.
    pub experiments: Vec<ExperimentFile>,
}

/// Reads a bounded text file; a problem is a diagnostic naming `file`.
fn read_bounded(path: &Path, file: &str) -> Result<String, Diagnostic> {
    let cannot = |message: String| Diagnostic { file: file.to_string(), line: 0, column: 0, message };
    let size = std::fs::metadata(path).map_err(|e| cannot(format!("cannot read: {e}")))?.len();
    if size > MAX_FILE_BYTES {
        return Err(cannot(format!("file is {size} bytes, larger than the {MAX_FILE_BYTES} read")));
    }
    std::fs::read_to_string(path).map_err(|e| cannot(format!("cannot read: {e}")))
}

/// Reads the plan at `path` and every experiment it names, each checked as `chaos validate` checks it (with
/// the scenario's `vars`, then `overrides` over them: `chaos gameday run --var`). Every problem of the plan
/// and of its experiments is returned, at file:line:column (an experiment that cannot be read, at its
/// scenario's `experiment:`).
pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<Loaded, Diagnostics> {
    let name = path.display().to_string();
    let source = read_bounded(path, &name).map_err(|d| Diagnostics(vec![d]))?;
    let (plan, root) = parse_tree(&name, &source)?;
    let dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let mut problems = Vec::new();
    let mut experiments: Vec<ExperimentFile> = Vec::new();
    let mut all_declared = Vec::new();
    for (index, scenario) in plan.scenarios.iter().enumerate() {
        let file_path = dir.join(&scenario.experiment);
        let file = file_path.display().to_string();
        let text = match experiments.iter().find(|e| e.path == scenario.experiment) {
            Some(known) => known.source.clone(),
            None => match read_bounded(&file_path, &file) {
                Ok(text) => {
                    experiments.push(ExperimentFile {
                        path: scenario.experiment.clone(),
                        file: file.clone(),
                        source: text.clone(),
                    });
                    text
                }
                Err(d) => {
                    let pos = root.pos_at(&[Seg::K("scenarios"), Seg::I(index), Seg::K("experiment")]);
                    problems.push(Diagnostic {
                        file: name.clone(),
                        line: pos.line,
                        column: pos.column,
                        message: format!("scenario {:?}: experiment {}: {}", scenario.name, file, d.message),
                    });
                    continue;
                }
            },
        };
        let declared = declared_vars(&file, &text);
        let vars = scenario_vars(scenario, &declared, overrides);
        all_declared.push(declared);
        if let Err(d) = crate::experiment::parse(&file, &text, &vars) {
            problems.extend(d.0);
        }
    }
    for name in unused_overrides(overrides, &all_declared) {
        problems.push(Diagnostic {
            file: "--var".into(),
            line: 0,
            column: 0,
            message: format!("{name}: no experiment of the plan declares it in its `vars:`"),
        });
    }
    if problems.is_empty() {
        Ok(Loaded { plan, file: name, source, experiments })
    } else {
        Err(Diagnostics(problems))
    }
}

/// The variable names an experiment's text declares in its `vars:` (none when it cannot be read: checking
/// it reports why).
pub fn declared_vars(name: &str, text: &str) -> BTreeSet<String> {
    let parsed = if is_json(name, text) { node::from_json(text) } else { node::from_yaml(text) };
    match parsed.ok().as_ref().and_then(|root| root.get("vars")).map(|v| &v.value) {
        Some(Value::Map(entries)) => entries.iter().map(|(k, _)| k.name.clone()).collect(),
        _ => BTreeSet::new(),
    }
}

/// A scenario's variables: the plan's `vars`, then each of `overrides` (`--var name=value`) that its
/// experiment declares (`declared`), over them.
pub fn scenario_vars(
    scenario: &Scenario,
    declared: &BTreeSet<String>,
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut vars = scenario.vars.clone();
    for (name, value) in overrides {
        if declared.contains(name) {
            vars.insert(name.clone(), value.clone());
        }
    }
    vars.into_iter().collect()
}

/// The overrides no experiment of the plan declares (`declared`, one set per experiment): a mistyped
/// `--var` is an error, not ignored.
pub fn unused_overrides<'a>(
    overrides: &'a [(String, String)],
    declared: &[BTreeSet<String>],
) -> Vec<&'a str> {
    overrides
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !declared.iter().any(|d| d.contains(*name)))
        .collect()
}

/// Parses and checks a plan's text (not its experiments); `name` names the file in diagnostics and picks the
/// syntax (`.json` is JSON, otherwise YAML unless it starts with `{`).
pub fn parse(name: &str, text: &str) -> Result<Plan, Diagnostics> {
    parse_tree(name, text).map(|(plan, _)| plan)
}

fn parse_tree(name: &str, text: &str) -> Result<(Plan, Node), Diagnostics> {
    let diagnostic = |pos: Pos, message: String| Diagnostic {
        file: name.to_string(),
        line: pos.line,
        column: pos.column,
        message: message.lines().map(str::trim).collect::<Vec<_>>().join(" "),
    };
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Diagnostics(vec![Diagnostic {
            file: name.to_string(),
            line: 0,
            column: 0,
            message: format!("plan is {} bytes, larger than the {MAX_FILE_BYTES} read", text.len()),
        }]));
    }
    let parsed = if is_json(name, text) { node::from_json(text) } else { node::from_yaml(text) };
    let root = parsed.map_err(|e| Diagnostics(vec![diagnostic(e.pos, e.message)]))?;
    if !matches!(root.value, Value::Map(_)) {
        let message = format!(
            "expected a game-day plan (a mapping with apiVersion: chaos/v1, kind: GameDay, …), found {}",
            root.kind()
        );
        return Err(Diagnostics(vec![diagnostic(root.pos, message)]));
    }
    let plan: Plan =
        from_node(&root).map_err(|e| Diagnostics(vec![diagnostic(e.pos.unwrap_or(root.pos), e.message)]))?;
    let mut problems: Vec<Diagnostic> =
        check(&plan, &root).into_iter().map(|(pos, message)| diagnostic(pos, message)).collect();
    problems.sort_by_key(|d| (d.line, d.column));
    if problems.is_empty() { Ok((plan, root)) } else { Err(Diagnostics(problems)) }
}

/// The checks typing cannot make, each at its node.
fn check(plan: &Plan, root: &Node) -> Vec<(Pos, String)> {
    let mut problems = Vec::new();
    let at = |path: &[Seg<'_>]| root.pos_at(path);
    if plan.api_version != API_VERSION {
        problems.push((
            at(&[Seg::K("apiVersion")]),
            format!("apiVersion must be {API_VERSION}, found {:?}", plan.api_version),
        ));
    }
    if plan.kind != KIND {
        let hint = if plan.kind == "Experiment" { "; run experiments with chaos run" } else { "" };
        problems.push((at(&[Seg::K("kind")]), format!("kind must be {KIND}, found {:?}{hint}", plan.kind)));
    }
    if plan.title.trim().is_empty() {
        problems.push((at(&[Seg::K("title")]), "title is empty".to_string()));
    }
    if plan.participants.len() > MAX_ENTRIES {
        problems.push((
            at(&[Seg::K("participants")]),
            format!("{} participants, at most {MAX_ENTRIES}", plan.participants.len()),
        ));
    }
    let mut people = BTreeSet::new();
    for (i, p) in plan.participants.iter().enumerate() {
        let pos = at(&[Seg::K("participants"), Seg::I(i), Seg::K("name")]);
        if p.name.trim().is_empty() {
            problems.push((pos, "a participant's name is empty".to_string()));
        } else if !people.insert(p.name.as_str()) {
            problems.push((pos, format!("participant {:?} is listed twice", p.name)));
        }
    }
    if plan.action_items.len() > MAX_ENTRIES {
        problems.push((
            at(&[Seg::K("action_items")]),
            format!("{} action items, at most {MAX_ENTRIES}", plan.action_items.len()),
        ));
    }
    for (i, item) in plan.action_items.iter().enumerate() {
        if item.trim().is_empty() {
            problems.push((at(&[Seg::K("action_items"), Seg::I(i)]), "an action item is empty".to_string()));
        }
    }
    if plan.scenarios.is_empty() {
        problems.push((at(&[Seg::K("scenarios")]), "a game day needs at least one scenario".to_string()));
    }
    if plan.scenarios.len() > MAX_SCENARIOS {
        problems.push((
            at(&[Seg::K("scenarios")]),
            format!("{} scenarios, at most {MAX_SCENARIOS}", plan.scenarios.len()),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, s) in plan.scenarios.iter().enumerate() {
        let here = |key: &'static str| at(&[Seg::K("scenarios"), Seg::I(i), Seg::K(key)]);
        if s.name.trim().is_empty() {
            problems.push((here("name"), "a scenario's name is empty".to_string()));
        } else if !names.insert(s.name.as_str()) {
            problems.push((here("name"), format!("scenario {:?} is named twice", s.name)));
        }
        if s.experiment.trim().is_empty() {
            problems.push((here("experiment"), format!("scenario {:?}: experiment is empty", s.name)));
        } else if Path::new(&s.experiment).is_absolute() {
            problems.push((
                here("experiment"),
                format!(
                    "scenario {:?}: experiment {:?} is absolute: write it relative to the plan file",
                    s.name, s.experiment
                ),
            ));
        }
        for (key, pause) in [("pause_before", s.pause_before), ("pause_after", s.pause_after)] {
            if let Some(pause) = pause
                && pause.0 > MAX_PAUSE
            {
                problems.push((here(key), format!("{key} is {pause}, at most 24h")));
            }
        }
        for (j, alert) in s.expect.iter().enumerate() {
            if alert.trim().is_empty() {
                problems.push((
                    at(&[Seg::K("scenarios"), Seg::I(i), Seg::K("expect"), Seg::I(j)]),
                    "an expected alert's name is empty".to_string(),
                ));
            }
        }
    }
    problems
}

/// The JSON Schema of the plan, for editors; `chaos gameday schema` prints it.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(Plan).to_value()
}
