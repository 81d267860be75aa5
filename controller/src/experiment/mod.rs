//! The native experiment format (`apiVersion: chaos/v1`, YAML or JSON): read, substitute, type, validate.
//!
//! # Pipeline
//! 1. [`node`]: the text becomes a tree of positioned nodes (YAML through serde-saphyr's spans; JSON checked
//!    by serde_json, then read by a small positioned reader). Syntax errors stop here.
//! 2. [`vars`]: `${name}`, `${env:NAME}` and `$${` are substituted in string values of the tree, so
//!    positions stay those of the original file.
//! 3. [`de`]: the typed [`model`] is deserialised from the tree; unknown fields, wrong types and bad
//!    durations, percentages or rates are reported at the offending node.
//! 4. [`validate`](validate::validate): semantic checks, all collected, each at its node.
//!
//! 5. [`checked`]: the steps' faults are checked once; the result is a [`Checked`] experiment, the only
//!    type the engine takes ([`check`] reaches it from a document built in memory).
//!
//! Every problem is a [`Diagnostic`] `file:line:column: message`. [`checked`] also adds accessors that read
//! the validated model as enums ([`Step::kind`], [`Slo::objective`], …); [`json_schema`] describes the format
//! and [`fault_reference`] the faults, both from the fault owners' tables ([`faults`]).

pub mod checked;
pub(crate) mod de;
pub mod diagnostic;
pub mod faults;
pub mod model;
pub(crate) mod node;
mod reference;
pub mod slo_refs;
mod validate;
mod values;
mod vars;

use std::path::{Path, PathBuf};

pub use checked::{
    Checked, CheckedKind, CheckedStep, Comparison, Fault, HOST_TARGET, HostMetric, Objective, ProbeKind,
    ProcessMetric, PrometheusQuery, SourceKind, StepKind, TargetKind, parse_percentile,
};
pub(crate) use diagnostic::is_json;
pub use diagnostic::{Diagnostic, Diagnostics};
pub use faults::{FaultKind, FaultParams, Owner, Param, Stream, TargetType};
pub use model::*;
pub use reference::fault_reference;
pub use slo_refs::{NO_REGISTRY, NoRegistry, SloCatalog, SloFiles, SloRef, SloSources};
pub use validate::API_VERSION;
pub use vars::{MAX_DEPTH, MAX_EXPANDED_BYTES};

/// Reads and validates an experiment file. `overrides` are `--var name=value` pairs; they take precedence
/// over `vars:` and are used literally.
pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<Checked, Diagnostics> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&name, &text, overrides),
        Err(e) => Err(Diagnostics(vec![Diagnostic {
            file: name,
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        }])),
    }
}

/// Parses and validates an experiment from text; `name` is the file name used in diagnostics and to choose
/// the syntax. `${env:NAME}` reads the process environment.
pub fn parse(name: &str, text: &str, overrides: &[(String, String)]) -> Result<Checked, Diagnostics> {
    parse_with_env(name, text, overrides, &|var| std::env::var(var).ok())
}

/// [`parse`] with `${env:NAME}` answered by `env` instead of the process environment.
pub fn parse_with_env(
    name: &str,
    text: &str,
    overrides: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Checked, Diagnostics> {
    let files = slo_refs::files_beside(name);
    parse_with_slos(name, text, overrides, env, SloSources::new(&files, &NoRegistry))
}

/// [`parse_with_env`] with SLO references (`slos: - use:`) resolved from `slos`: `file:` as it says (beside
/// the experiment file for [`parse`], refused by a controller), registry references from its catalog
/// ([`NoRegistry`] for [`parse`]).
pub fn parse_with_slos(
    name: &str,
    text: &str,
    overrides: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
    slos: SloSources<'_>,
) -> Result<Checked, Diagnostics> {
    let diagnostic = |pos: node::Pos, message: String| Diagnostic {
        file: name.to_string(),
        line: pos.line,
        column: pos.column,
        message: one_line(&message),
    };
    let parsed = if is_json(name, text) { node::from_json(text) } else { node::from_yaml(text) };
    let mut root = parsed.map_err(|e| Diagnostics(vec![diagnostic(e.pos, e.message)]))?;
    if !matches!(root.value, node::Value::Map(_)) {
        let message =
            format!("expected an experiment (a mapping with apiVersion, title, …), found {}", root.kind());
        return Err(Diagnostics(vec![diagnostic(root.pos, message)]));
    }
    let var_errors = vars::substitute(&mut root, text, overrides, &FnEnv(env));
    if !var_errors.is_empty() {
        return Err(Diagnostics(var_errors.into_iter().map(|e| diagnostic(e.pos, e.message)).collect()));
    }
    finish(name, &root, slos)
}

/// The file name [`check`] gives its diagnostics.
pub const IN_MEMORY: &str = "<experiment>";

/// Checks an experiment built in memory (deserialised with serde, or written in code) as [`parse`] checks a
/// file: the same typing and validation, then its steps' faults; the only other way to a [`Checked`].
/// Diagnostics name [`IN_MEMORY`] and the positions in the experiment's JSON form. `${…}` is not
/// substituted again. SLO references keep the definitions they were resolved to when the document comes from
/// a checked experiment ([`Checked::as_ref`]); others read `file:` relative to the working directory, and
/// registry references are refused ([`NoRegistry`]).
pub fn check(experiment: &Experiment) -> Result<Checked, Diagnostics> {
    let at_start = |message: String| {
        Diagnostics(vec![Diagnostic { file: IN_MEMORY.into(), line: 0, column: 0, message }])
    };
    let text =
        serde_json::to_string_pretty(experiment).map_err(|e| at_start(format!("cannot serialise: {e}")))?;
    let root = node::from_json(&text).map_err(|e| at_start(e.message))?;
    let files = SloFiles::Relative(PathBuf::new());
    let carried: Vec<_> = experiment.slos.iter().map(|s| s.definition.clone()).collect();
    finish(IN_MEMORY, &root, SloSources { carried: &carried, ..SloSources::new(&files, &NoRegistry) })
}

/// Types, resolves the SLO references of, validates and checks a substituted tree.
fn finish(name: &str, root: &node::Node, slos: SloSources<'_>) -> Result<Checked, Diagnostics> {
    let diagnostic = |pos: node::Pos, message: String| Diagnostic {
        file: name.to_string(),
        line: pos.line,
        column: pos.column,
        message: one_line(&message),
    };
    let written: Experiment = de::from_node(root).map_err(|e| {
        let pos = e.pos.unwrap_or(root.pos);
        Diagnostics(vec![diagnostic(pos, e.message)])
    })?;
    let mut experiment = written.clone();
    let (refs, mut problems) = match slo_refs::resolve(name, &mut experiment, root, slos) {
        Ok(refs) => (refs, Vec::new()),
        Err(d) => (Vec::new(), d.0),
    };
    if problems.is_empty() {
        problems.extend(slo_refs::check_gates(name, &experiment, root, &refs));
    }
    problems.extend(
        validate::validate(&experiment, root).into_iter().map(|(pos, message)| diagnostic(pos, message)),
    );
    if problems.is_empty() {
        // The document as written carries the definitions too, so checking it again reads no file.
        let mut written = written;
        // Its signal (defaulted, for a reference) is the definition's, so it serialises as what it is.
        for (slo, resolved) in written.slos.iter_mut().zip(&experiment.slos) {
            slo.definition.clone_from(&resolved.definition);
            if slo.uses.is_some() {
                slo.signal = resolved.signal;
            }
        }
        Checked::new(experiment, written, refs)
            .map_err(|message| Diagnostics(vec![diagnostic(root.pos, message)]))
    } else {
        // In file order; an SLO file's own diagnostics stay right after the reference that read it.
        Err(Diagnostics(sort_stable_by_file(name, problems)))
    }
}

/// Diagnostics of the experiment file sorted by position, each followed by the other files' diagnostics that
/// came after it.
fn sort_stable_by_file(name: &str, problems: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut groups: Vec<Vec<Diagnostic>> = Vec::new();
    for d in problems {
        match groups.last_mut() {
            Some(group) if d.file != name => group.push(d),
            _ => groups.push(vec![d]),
        }
    }
    groups.sort_by_key(|g| g.first().map(|d| (d.file != name, d.line, d.column)));
    groups.into_iter().flatten().collect()
}

/// Control characters (from keys or values quoted in a message) escaped, so a diagnostic is one line.
fn one_line(message: &str) -> String {
    if !message.chars().any(char::is_control) {
        return message.to_string();
    }
    message
        .chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

struct FnEnv<'a>(&'a dyn Fn(&str) -> Option<String>);

impl vars::Env for FnEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }
}

/// Splits a `--var name=value` argument.
pub fn parse_override(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, value)) if vars::valid_name(name) => Ok((name.to_string(), value.to_string())),
        Some((name, _)) => Err(format!("invalid variable name {name:?} in --var {arg:?}")),
        None => Err(format!("expected --var name=value, found {arg:?}")),
    }
}

/// `chaos validate`: checks each file; the report has `FILE: ok` or the file's diagnostics, one per line,
/// and the flag says whether all files are valid (exit 0) or not (exit 2).
pub fn validate_files(paths: &[PathBuf], overrides: &[(String, String)]) -> (String, bool) {
    let mut report = String::new();
    let mut all_ok = true;
    for path in paths {
        match load(path, overrides) {
            Ok(_) => report.push_str(&format!("{}: ok\n", path.display())),
            Err(diagnostics) => {
                all_ok = false;
                report.push_str(&format!("{diagnostics}\n"));
            }
        }
    }
    (report, all_ok)
}

/// The JSON Schema (draft 2020-12) of the format, for editors; `chaos schema` prints it.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(Experiment).to_value()
}
