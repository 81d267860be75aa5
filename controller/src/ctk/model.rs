//! A Chaos Toolkit experiment as written (chaostoolkit-lib 1.44 semantics, `../shared/reference/
//! chaostoolkit-format.md`): plain serde data, as loose as Chaos Toolkit is where it is loose (a value that
//! may be `${var}` is a [`Value`]). Unknown keys are kept (`extra`) so the journal's copy of the experiment is
//! the experiment as loaded.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A whole Chaos Toolkit experiment.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Experiment {
    pub title: String,
    pub description: String,
    /// Required key; `[]` allowed (a hypothesis-only run).
    pub method: Vec<ActivityOrRef>,
    #[serde(rename = "steady-state-hypothesis", default, skip_serializing_if = "Option::is_none")]
    pub steady_state_hypothesis: Option<Hypothesis>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollbacks: Vec<ActivityOrRef>,
    /// Name → literal, `{type: env, key, default?, env_var_type?}`, or a dynamic probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Map<String, Value>>,
    /// Scope → key → literal, `{type: env, key}` (or `vault`, refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<Control>,
    /// `{rollbacks: {strategy}, hypothesis: {strategy}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Value>,
    /// Objects with a non-empty `name`; the one named `chaos` carries native additions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<Map<String, Value>>,
    /// `version`, `tags`, `contributions`, `dry` and anything else, kept as loaded.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The steady-state hypothesis.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Hypothesis {
    pub title: String,
    #[serde(default)]
    pub probes: Vec<ActivityOrRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<Control>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An activity, or `{ref: name}` standing for one defined in the method or the hypothesis.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ActivityOrRef {
    Ref {
        #[serde(rename = "ref")]
        name: String,
    },
    Activity(Box<Activity>),
}

/// A probe or an action.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Activity {
    #[serde(rename = "type")]
    pub kind: ActivityKind,
    pub name: String,
    pub provider: Provider,
    /// `{before, after}`: seconds, or exactly `"${var}"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pauses: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
    /// Required on hypothesis probes, ignored on method probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<Control>,
    /// `timeout` (validated, never used), and anything else, kept as loaded.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivityKind {
    Probe,
    Action,
}

/// What an activity runs.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Provider {
    Http(HttpProvider),
    Process(ProcessProvider),
    Python(PythonProvider),
}

/// An HTTP request.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct HttpProvider {
    pub url: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// Seconds, or `[connect, read]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_tls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// `expected_status` (ignored, as Chaos Toolkit does) and anything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A process run on this host.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct ProcessProvider {
    pub path: String,
    /// A list (argv, no shell), a string (run through the shell) or an object (`k v k v`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A Python function, run by the host's Python through the driver this binary ships ([`super::python`]).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct PythonProvider {
    pub module: String,
    pub func: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Map<String, Value>>,
    /// Secret scopes passed as the `secrets` keyword argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A control: `{name, provider: {type: python, module, arguments?}, scope?, automatic?}`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Control {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
