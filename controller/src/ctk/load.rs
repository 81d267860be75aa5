//! Loading and validating a Chaos Toolkit experiment file (reference §1–§7): JSON or YAML by extension,
//! read through the project's positioned readers so every problem is a `file:line:column` [`Diagnostic`],
//! and checked as chaostoolkit-lib's `ensure_experiment_is_valid` does (required keys, activity types,
//! names and providers, refs, tolerances, pauses, timeouts, process paths on `PATH`, secrets kinds).
//! Python providers are checked by [`super::python::Python::validate`] in [`validate_python`].

use std::path::Path;

use serde_json::{Map, Value};

use super::config::{self, Overrides, Resolved};
use super::model::Experiment;
use super::providers::which;
use crate::experiment::node::{self, Node, Pos, Seg, Value as N};
use crate::experiment::{Diagnostic, Diagnostics};

/// The largest experiment file read (an experiment is a few kilobytes).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// A Chaos Toolkit experiment as loaded: the typed model, the document as written (what the journal
/// embeds) and the positioned tree (for diagnostics).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub file: String,
    pub experiment: Experiment,
    /// The document as loaded, keys in file order.
    pub raw: Value,
    root: Node,
}

impl Loaded {
    /// A diagnostic at the node `path` leads to (or the deepest node on the way).
    pub fn diagnostic(&self, path: &[String], message: impl Into<String>) -> Diagnostic {
        let segs: Vec<Seg<'_>> = path
            .iter()
            .map(|s| match s.parse::<usize>() {
                Ok(i) if s.chars().all(|c| c.is_ascii_digit()) => Seg::I(i),
                _ => Seg::K(s),
            })
            .collect();
        let pos = self.root.pos_at(&segs);
        at(&self.file, pos, message.into())
    }

    /// Resolves configuration (static values) and secrets with the overrides; a problem is a diagnostic at
    /// the value at fault. Dynamic configuration values are still probes (the runner evaluates them).
    pub fn resolve(&self, overrides: &Overrides) -> Result<Resolved, Diagnostics> {
        let env = |name: &str| overrides.env_var(name);
        let configuration = config::load_configuration(
            self.experiment.configuration.as_ref(),
            &overrides.configuration,
            &env,
        )
        .map_err(|e| Diagnostics(vec![self.diagnostic(&e.path, e.message)]))?;
        let secrets = config::load_secrets(self.experiment.secrets.as_ref(), &overrides.secrets, &env)
            .map_err(|e| Diagnostics(vec![self.diagnostic(&e.path, e.message)]))?;
        Ok(Resolved { configuration, secrets })
    }
}

fn at(file: &str, pos: Pos, message: String) -> Diagnostic {
    Diagnostic { file: file.to_string(), line: pos.line, column: pos.column, message }
}

pub use super::config::to_json;

/// Whether `text` (named `name`) is a Chaos Toolkit experiment: a mapping with `title`, `description` and
/// `method`, and no `apiVersion`. Unreadable text is not (the native reader reports it).
pub fn is_ctk(name: &str, text: &str) -> bool {
    let parsed =
        if crate::experiment::is_json(name, text) { node::from_json(text) } else { node::from_yaml(text) };
    parsed.is_ok_and(|root| {
        ["title", "description", "method"].iter().all(|k| root.get(k).is_some())
            && root.get("apiVersion").is_none()
    })
}

/// Whether the file at `path` is meant as a Chaos Toolkit experiment though [`is_ctk`] says no: a mapping
/// without `apiVersion` with a key only Chaos Toolkit has (`description`, `steady-state-hypothesis`). `chaos
/// run` reads it as one, so a file missing its title or method gets Chaos Toolkit's reason at its position
/// instead of the native reader's "unknown field `description`".
pub fn is_ctk_shaped_file(path: &Path) -> bool {
    if std::fs::metadata(path).map_or(true, |m| m.len() > MAX_FILE_BYTES) {
        return false;
    }
    std::fs::read_to_string(path).is_ok_and(|text| {
        let parsed = if crate::experiment::is_json(&path.display().to_string(), &text) {
            node::from_json(&text)
        } else {
            node::from_yaml(&text)
        };
        parsed.is_ok_and(|root| {
            root.get("apiVersion").is_none()
                && ["description", "steady-state-hypothesis"].iter().any(|k| root.get(k).is_some())
        })
    })
}

/// Whether the file at `path` is readable but not JSON/YAML at all: with Chaos Toolkit flags it is read as a
/// Chaos Toolkit file, so its syntax error is reported with its position.
pub fn is_unparsable_file(path: &Path) -> bool {
    if std::fs::metadata(path).map_or(true, |m| m.len() > MAX_FILE_BYTES) {
        return false;
    }
    std::fs::read_to_string(path).is_ok_and(|text| {
        let name = path.display().to_string();
        if crate::experiment::is_json(&name, &text) {
            node::from_json(&text).is_err()
        } else {
            node::from_yaml(&text).is_err()
        }
    })
}

/// Whether the file at `path` is a Chaos Toolkit experiment ([`is_ctk`]); false when it cannot be read.
pub fn is_ctk_file(path: &Path) -> bool {
    if std::fs::metadata(path).map_or(true, |m| m.len() > MAX_FILE_BYTES) {
        return false;
    }
    std::fs::read_to_string(path).is_ok_and(|text| is_ctk(&path.display().to_string(), &text))
}

/// Reads and (unless `validate` is false) validates a Chaos Toolkit experiment file.
pub fn load(path: &Path, validate: bool) -> Result<Loaded, Diagnostics> {
    let name = path.display().to_string();
    let fail =
        |message: String| Diagnostics(vec![Diagnostic { file: name.clone(), line: 0, column: 0, message }]);
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(format!("more than {MAX_FILE_BYTES} bytes; an experiment is much smaller")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    parse(&name, &text, validate)
}

/// Parses and validates a Chaos Toolkit experiment from text; `name` picks the syntax by its extension
/// (`.json`, `.yaml`, `.yml`; others refused, as Chaos Toolkit does).
pub fn parse(name: &str, text: &str, validate: bool) -> Result<Loaded, Diagnostics> {
    let lower = name.to_ascii_lowercase();
    let json = if lower.ends_with(".json") {
        true
    } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        false
    } else {
        return Err(Diagnostics(vec![Diagnostic {
            file: name.into(),
            line: 0,
            column: 0,
            message: "a Chaos Toolkit experiment must be a .json, .yaml or .yml file".into(),
        }]));
    };
    let parsed = if json { node::from_json(text) } else { node::from_yaml(text) };
    let mut root = parsed.map_err(|e| Diagnostics(vec![at(name, e.pos, e.message)]))?;
    if !json {
        pyyaml_booleans(&mut root, text);
    }
    if !matches!(root.value, N::Map(_)) {
        return Err(Diagnostics(vec![at(
            name,
            root.pos,
            format!(
                "expected an experiment (a mapping with title, description and method), found {}",
                root.kind()
            ),
        )]));
    }
    let mut problems = Vec::new();
    if validate {
        Checker { file: name, root: &root, problems: &mut problems }.experiment();
    } else {
        // Even unvalidated, the run needs its parts in shape.
        Checker { file: name, root: &root, problems: &mut problems }.required_only();
    }
    if !problems.is_empty() {
        problems.sort_by_key(|d: &Diagnostic| (d.line, d.column));
        return Err(Diagnostics(problems));
    }
    let raw = to_json(&root);
    let experiment: Experiment = serde_json::from_value(raw.clone())
        .map_err(|e| Diagnostics(vec![at(name, root.pos, format!("not a Chaos Toolkit experiment: {e}"))]))?;
    Ok(Loaded { file: name.to_string(), experiment, raw, root })
}

/// Checks every python provider (method, hypothesis, rollbacks, tolerance probes, dynamic configuration)
/// with the host's Python: the module imports and the function binds its arguments.
pub async fn validate_python(loaded: &Loaded, python: &super::python::Python) -> Result<(), Diagnostics> {
    let mut found = Vec::new();
    collect_python(&loaded.raw, &mut Vec::new(), &mut found);
    let mut problems = Vec::new();
    for (path, provider) in found {
        let module = provider.get("module").and_then(Value::as_str).unwrap_or_default();
        let func = provider.get("func").and_then(Value::as_str).unwrap_or_default();
        let arguments = provider.get("arguments").and_then(Value::as_object).cloned().unwrap_or_default();
        if let Err(reason) = python.validate(module, func, &arguments).await {
            problems.push(loaded.diagnostic(&path, reason));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(Diagnostics(problems)) }
}

/// Python providers (`provider: {type: python}`) under `value`, with their paths. Controls are not
/// providers of activities and are left to [`super::controls`].
fn collect_python<'a>(
    value: &'a Value,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, &'a Map<String, Value>)>,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "controls" {
                    continue;
                }
                path.push(k.clone());
                if k == "provider"
                    && let Value::Object(p) = v
                    && p.get("type").and_then(Value::as_str) == Some("python")
                {
                    out.push((path.clone(), p));
                } else {
                    collect_python(v, path, out);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                collect_python(v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

struct Checker<'a> {
    file: &'a str,
    root: &'a Node,
    problems: &'a mut Vec<Diagnostic>,
}

fn str_of(node: &Node) -> Option<&str> {
    match &node.value {
        N::Str(s) => Some(s),
        _ => None,
    }
}

fn is_number(node: &Node) -> bool {
    matches!(node.value, N::Int(_) | N::UInt(_) | N::Float(_))
}

fn entries(node: &Node) -> &[(node::Key, Node)] {
    match &node.value {
        N::Map(e) => e,
        _ => &[],
    }
}

fn items(node: &Node) -> &[Node] {
    match &node.value {
        N::Seq(i) => i,
        _ => &[],
    }
}

/// Where an activity is: what is allowed and required there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Hypothesis,
    Method,
    Rollbacks,
    /// A probe used as a tolerance or as a dynamic configuration value.
    Embedded,
}

impl Checker<'_> {
    fn report(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push(at(self.file, pos, message.into()));
    }

    /// The key's position when the mapping has it, else the mapping's.
    fn key_pos(node: &Node, key: &str) -> Pos {
        node.entry(key).map_or(node.pos, |(k, _)| k.pos)
    }

    fn required_only(&mut self) {
        let root = self.root;
        for key in ["title", "description", "method"] {
            if root.get(key).is_none() {
                self.report(root.pos, format!("the experiment requires a `{key}`"));
            }
        }
    }

    fn experiment(&mut self) {
        let root = self.root;
        for key in ["title", "description"] {
            match root.get(key) {
                None => self.report(root.pos, format!("experiment requires a {key}")),
                Some(n) if str_of(n).is_none_or(str::is_empty) => {
                    self.report(n.pos, format!("experiment requires a non-empty {key} (a string)"));
                }
                _ => {}
            }
        }
        if let Some(tags) = root.get("tags") {
            match &tags.value {
                N::Seq(list) => {
                    for t in list {
                        if str_of(t).is_none_or(str::is_empty) {
                            self.report(t.pos, "experiment tags must be a non-empty string");
                        }
                    }
                }
                _ => self.report(
                    tags.pos,
                    format!("experiment tags must be a list of strings, found {}", tags.kind()),
                ),
            }
        }
        if let Some(ext) = root.get("extensions") {
            match &ext.value {
                N::Seq(list) => {
                    for e in list {
                        if e.get("name").and_then(str_of).is_none_or(str::is_empty) {
                            self.report(e.pos, "an extension must have a non-empty name");
                        }
                    }
                }
                _ => self.report(ext.pos, format!("extensions must be a list, found {}", ext.kind())),
            }
        }
        if let Some(config) = root.get("configuration") {
            self.configuration(config);
        }
        if let Some(secrets) = root.get("secrets") {
            self.secrets(secrets);
        }
        let names = self.activity_names();
        if let Some(hypo) = root.get("steady-state-hypothesis") {
            match &hypo.value {
                N::Map(_) => {
                    if hypo.get("title").and_then(str_of).is_none_or(str::is_empty) {
                        self.report(Self::key_pos(hypo, "title"), "hypothesis requires a title");
                    }
                    match hypo.get("probes") {
                        None => {}
                        Some(p) if matches!(p.value, N::Seq(_)) => {
                            for probe in items(p) {
                                self.activity(probe, Place::Hypothesis, &names);
                            }
                        }
                        Some(p) => self
                            .report(p.pos, format!("hypothesis probes must be a list, found {}", p.kind())),
                    }
                    if let Some(c) = hypo.get("controls") {
                        self.controls(c);
                    }
                }
                _ => self.report(
                    hypo.pos,
                    format!("the steady-state-hypothesis must be a mapping, found {}", hypo.kind()),
                ),
            }
        }
        match root.get("method") {
            None => self.report(
                root.pos,
                "an experiment requires a method, which can be empty for only checking steady state hypothesis",
            ),
            Some(m) if matches!(m.value, N::Seq(_)) => {
                for a in items(m) {
                    self.activity(a, Place::Method, &names);
                }
            }
            Some(m) => self.report(m.pos, format!("the method must be a list of activities, found {}", m.kind())),
        }
        if let Some(r) = root.get("rollbacks") {
            match &r.value {
                N::Seq(list) => {
                    for a in list {
                        self.activity(a, Place::Rollbacks, &names);
                    }
                }
                _ => {
                    self.report(r.pos, format!("rollbacks must be a list of activities, found {}", r.kind()))
                }
            }
        }
        if let Some(c) = root.get("controls") {
            self.controls(c);
        }
    }

    /// Names of the activities a `ref` may point at: method and hypothesis probes (not rollbacks).
    fn activity_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let probes = self.root.get("steady-state-hypothesis").and_then(|h| h.get("probes"));
        for list in [probes, self.root.get("method")].into_iter().flatten() {
            for a in items(list) {
                if a.get("ref").is_none()
                    && let Some(name) = a.get("name").and_then(str_of)
                {
                    names.push(name.to_string());
                }
            }
        }
        names
    }

    fn activity(&mut self, a: &Node, place: Place, names: &[String]) {
        if !matches!(a.value, N::Map(_)) {
            self.report(a.pos, format!("an activity must be a mapping, found {}", a.kind()));
            return;
        }
        if let Some(r) = a.get("ref") {
            match str_of(r) {
                Some(name) if place != Place::Embedded && names.iter().any(|n| n == name) => {}
                Some(name) => self.report(
                    r.pos,
                    format!(
                        "referenced activity '{name}' could not be found in the method or the steady-state \
                         hypothesis probes"
                    ),
                ),
                None => self.report(r.pos, format!("a ref names an activity (a string), found {}", r.kind())),
            }
            return;
        }
        let name = a.get("name").and_then(str_of).unwrap_or("");
        match a.get("type") {
            None => self.report(a.pos, "an activity must have a type"),
            Some(t) => match str_of(t) {
                Some("probe" | "action") => {}
                _ => self.report(
                    t.pos,
                    format!("'{}' is not a supported activity type (probe or action)", show(t)),
                ),
            },
        }
        match a.get("name") {
            Some(n) if str_of(n).is_some_and(|s| !s.is_empty()) => {}
            Some(n) => self.report(n.pos, "an activity must have a name (cannot be empty)"),
            None => self.report(a.pos, "an activity must have a name"),
        }
        if let Some(t) = a.get("timeout")
            && !is_number(t)
        {
            self.report(t.pos, format!("activity '{name}': timeout must be a number, found {}", t.kind()));
        }
        if let Some(p) = a.get("pauses") {
            match &p.value {
                N::Map(list) => {
                    for (k, v) in list {
                        if k.name != "before" && k.name != "after" {
                            continue;
                        }
                        let var = str_of(v).is_some_and(|s| {
                            s.strip_prefix("${").and_then(|r| r.strip_suffix('}')).is_some_and(|n| {
                                !n.is_empty() && n.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
                            })
                        });
                        if !is_number(v) && !var {
                            self.report(
                                v.pos,
                                format!(
                                    "activity '{name}': the {} pause must be a number of seconds or exactly \"${{var}}\"",
                                    k.name
                                ),
                            );
                        }
                    }
                }
                _ => {
                    self.report(p.pos, format!("activity '{name}': pauses must be a mapping (before, after)"))
                }
            }
        }
        if let Some(b) = a.get("background")
            && !matches!(b.value, N::Bool(_))
        {
            self.report(b.pos, format!("activity '{name}': background must be true or false"));
        }
        match a.get("provider") {
            None => self.report(a.pos, format!("activity '{name}' requires a provider")),
            Some(p) => self.provider(p, name),
        }
        if place == Place::Hypothesis {
            match a.get("tolerance") {
                None => self.report(a.pos, format!("hypothesis probe '{name}' must have a tolerance entry")),
                Some(t) => self.tolerance(t, name),
            }
        }
        if let Some(c) = a.get("controls") {
            self.controls(c);
        }
    }

    fn provider(&mut self, p: &Node, name: &str) {
        if !matches!(p.value, N::Map(_)) {
            self.report(
                p.pos,
                format!("activity '{name}': a provider must be a mapping, found {}", p.kind()),
            );
            return;
        }
        let Some(kind) = p.get("type") else {
            self.report(p.pos, format!("activity '{name}': a provider must have a type"));
            return;
        };
        match str_of(kind) {
            Some("python") => {
                for (key, what) in [("module", "a module path"), ("func", "a function name")] {
                    match p.get(key) {
                        Some(v) if str_of(v).is_some_and(|s| !s.is_empty()) => {}
                        Some(v) => self
                            .report(v.pos, format!("activity '{name}': a Python activity must have {what}")),
                        None => self
                            .report(p.pos, format!("activity '{name}': a Python activity must have {what}")),
                    }
                }
                if let Some(args) = p.get("arguments")
                    && !matches!(args.value, N::Map(_) | N::Null)
                {
                    self.report(args.pos, format!("activity '{name}': python arguments must be a mapping"));
                }
                if let Some(s) = p.get("secrets")
                    && !matches!(s.value, N::Seq(_))
                {
                    self.report(
                        s.pos,
                        format!("activity '{name}': provider secrets must be a list of scope names"),
                    );
                }
            }
            Some("process") => match p.get("path") {
                None => self.report(p.pos, format!("activity '{name}': a process activity must have a path")),
                Some(path) => match str_of(path) {
                    Some(s) if which(s).is_some() => {}
                    Some(s) => self.report(
                        path.pos,
                        format!(
                            "path '{s}' cannot be found, in activity '{name}' (looked up on this host's PATH)"
                        ),
                    ),
                    None => {
                        self.report(path.pos, format!("activity '{name}': the process path must be a string"))
                    }
                },
            },
            Some("http") => {
                match p.get("url") {
                    Some(u) if str_of(u).is_some_and(|s| !s.is_empty()) => {}
                    Some(u) => self.report(
                        u.pos,
                        format!("activity '{name}': a HTTP activity must have a URL (a string)"),
                    ),
                    None => self.report(p.pos, format!("activity '{name}': a HTTP activity must have a URL")),
                }
                if let Some(t) = p.get("timeout") {
                    let var = str_of(t).is_some_and(|s| s.starts_with("${") && s.ends_with('}'));
                    let ok = is_number(t)
                        || var
                        || matches!(&t.value, N::Seq(l) if l.len() == 2 && l.iter().all(is_number));
                    if !ok {
                        self.report(
                            t.pos,
                            format!(
                                "activity '{name}': the http timeout must be a number or [connect, read]"
                            ),
                        );
                    }
                }
                if let Some(h) = p.get("headers")
                    && !matches!(h.value, N::Map(_) | N::Null)
                {
                    self.report(h.pos, format!("activity '{name}': http headers must be a mapping"));
                }
                if let Some(v) = p.get("verify_tls")
                    && !matches!(v.value, N::Bool(_))
                {
                    self.report(v.pos, format!("activity '{name}': verify_tls must be true or false"));
                }
                if let Some(v) = p.get("max_retries")
                    && !matches!(v.value, N::Int(0..) | N::UInt(_))
                {
                    self.report(
                        v.pos,
                        format!("activity '{name}': max_retries must be a non-negative integer"),
                    );
                }
                if let Some(v) = p.get("method")
                    && str_of(v).is_none()
                {
                    self.report(v.pos, format!("activity '{name}': the http method must be a string"));
                }
            }
            _ => self.report(
                kind.pos,
                format!("unknown provider type '{}' (python, process or http)", show(kind)),
            ),
        }
    }

    fn tolerance(&mut self, t: &Node, name: &str) {
        let of = format!("tolerance of '{name}'");
        match &t.value {
            N::Bool(_) | N::Int(_) | N::UInt(_) | N::Str(_) | N::Seq(_) => {}
            N::Float(_) | N::Null => self.report(
                t.pos,
                format!(
                    "hypothesis probe '{name}': the tolerance must either be an integer, a string, a boolean or \
                     a pair of values for boundaries, or a mapping (regex, jsonpath, range or a probe); found {}",
                    t.kind()
                ),
            ),
            N::Map(_) => match t.get("type").and_then(str_of) {
                Some("regex") => match t.get("pattern") {
                    Some(p) => match str_of(p) {
                        Some(s) if s.contains("${") => {}
                        Some(s) => {
                            if let Err(e) = regex::Regex::new(s) {
                                self.report(p.pos, format!("{of}: invalid regex pattern: {}", one_line(&e.to_string())));
                            }
                        }
                        None => self.report(p.pos, format!("{of}: the regex pattern must be a string")),
                    },
                    None => self.report(t.pos, format!("{of}: a regex tolerance must have a pattern")),
                },
                Some("jsonpath") => {
                    match t.get("path") {
                        Some(p) => match str_of(p) {
                            Some(s) if s.contains("${") => {}
                            Some(s) => {
                                if let Err(e) = super::tolerance::parse_jsonpath(s) {
                                    self.report(p.pos, format!("{of}: {}", one_line(&e.0)));
                                }
                            }
                            None => self.report(p.pos, format!("{of}: the jsonpath path must be a string")),
                        },
                        None => self.report(t.pos, format!("{of}: a jsonpath tolerance must have a path")),
                    }
                    if let Some(c) = t.get("count")
                        && !matches!(c.value, N::Int(0..) | N::UInt(_))
                    {
                        self.report(c.pos, format!("{of}: count must be a non-negative integer"));
                    }
                }
                Some("range") => match t.get("range") {
                    Some(r) if matches!(&r.value, N::Seq(l) if l.len() == 2 && l.iter().all(is_number)) => {}
                    Some(r) => self.report(r.pos, format!("{of}: a range must be a sequence of two numbers")),
                    None => self.report(t.pos, format!("{of}: a range tolerance must have a range")),
                },
                Some("probe") => self.activity(t, Place::Embedded, &[]),
                Some(other) => self.report(
                    Self::key_pos(t, "type"),
                    format!("{of}: unknown tolerance type '{other}' (regex, jsonpath, range or probe)"),
                ),
                None => self.report(t.pos, format!("{of}: a tolerance mapping must have a type")),
            },
        }
    }

    fn configuration(&mut self, c: &Node) {
        if !matches!(c.value, N::Map(_)) {
            self.report(c.pos, format!("configuration must be a mapping, found {}", c.kind()));
            return;
        }
        for (key, value) in entries(c) {
            match value.get("type").and_then(str_of) {
                Some("env") if matches!(value.value, N::Map(_)) => {
                    if value.get("key").and_then(str_of).is_none_or(str::is_empty) {
                        self.report(
                            value.pos,
                            format!(
                                "configuration '{}': an env value needs a `key` (the variable)",
                                key.name
                            ),
                        );
                    }
                    if let Some(t) = value.get("env_var_type") {
                        let known =
                            ["str", "string", "int", "integer", "float", "number", "bytes", "bool", "json"];
                        if !str_of(t).is_some_and(|s| known.contains(&s)) {
                            self.report(
                                t.pos,
                                format!(
                                    "configuration '{}': unknown env_var_type '{}' (str, string, int, integer, float, number, bytes, bool or json)",
                                    key.name,
                                    show(t)
                                ),
                            );
                        }
                    }
                }
                Some("probe") => self.activity(value, Place::Embedded, &[]),
                _ => {}
            }
        }
    }

    fn secrets(&mut self, s: &Node) {
        if !matches!(s.value, N::Map(_)) {
            self.report(s.pos, format!("secrets must be a mapping of scopes, found {}", s.kind()));
            return;
        }
        for (scope, keys) in entries(s) {
            if !matches!(keys.value, N::Map(_)) {
                self.report(
                    keys.pos,
                    format!("secret scope '{}' must be a mapping of keys, found {}", scope.name, keys.kind()),
                );
                continue;
            }
            for (key, value) in entries(keys) {
                match value.get("type").and_then(str_of) {
                    Some("env") if value.get("key").and_then(str_of).is_none_or(str::is_empty) => {
                        self.report(value.pos, format!("secret '{}': an env secret needs a `key` (the variable)", key.name));
                    }
                    Some("vault") => self.report(
                        Self::key_pos(value, "type"),
                        format!(
                            "secret '{}': vault secrets are not supported by chaos run (no Vault client here); \
                             use `type: env` or --var-file",
                            key.name
                        ),
                    ),
                    _ => {}
                }
            }
        }
    }

    fn controls(&mut self, c: &Node) {
        let N::Seq(list) = &c.value else {
            self.report(c.pos, format!("controls must be a list, found {}", c.kind()));
            return;
        };
        for control in list {
            if control.get("name").and_then(str_of).is_none_or(str::is_empty) {
                self.report(control.pos, "a control must have a non-empty name");
            }
            match control.get("provider") {
                None => self.report(control.pos, "a control must have a provider"),
                Some(p) => {
                    if p.get("type").and_then(str_of) != Some("python") {
                        self.report(
                            Self::key_pos(p, "type"),
                            "a control provider must be of type python (the only kind Chaos Toolkit runs)",
                        );
                    }
                    if p.get("module").and_then(str_of).is_none_or(str::is_empty) {
                        self.report(p.pos, "a control provider must have a module");
                    }
                }
            }
        }
    }
}

fn show(node: &Node) -> String {
    match &node.value {
        N::Str(s) => s.clone(),
        _ => config::py_repr(&to_json(node)),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The plain scalars PyYAML (Chaos Toolkit's YAML reader) reads as booleans: YAML 1.1's set without `y`
/// and `n`, in lower, title and upper case only.
const PYYAML_BOOLEANS: [&str; 18] = [
    "true", "True", "TRUE", "false", "False", "FALSE", "yes", "Yes", "YES", "no", "No", "NO", "on", "On",
    "ON", "off", "Off", "OFF",
];

/// Turns back into strings the booleans our YAML reader found where PyYAML sees text (`y`, `N`, `yEs`...):
/// a Chaos Toolkit file must mean what it means to Chaos Toolkit.
fn pyyaml_booleans(node: &mut Node, text: &str) {
    match &mut node.value {
        N::Bool(_) => {
            if let Some(token) = plain_scalar_at(text, node.pos.line, node.pos.column)
                && !PYYAML_BOOLEANS.contains(&token)
            {
                node.value = N::Str(token.to_string());
            }
        }
        N::Seq(items) => items.iter_mut().for_each(|n| pyyaml_booleans(n, text)),
        N::Map(entries) => entries.iter_mut().for_each(|(_, n)| pyyaml_booleans(n, text)),
        _ => {}
    }
}

/// The plain scalar written at 1-based `line` and `column` of `text`: up to a flow indicator, a comment
/// or the end of the line.
fn plain_scalar_at(text: &str, line: usize, column: usize) -> Option<&str> {
    let line = text.lines().nth(line.checked_sub(1)?)?;
    let start = line.char_indices().nth(column.checked_sub(1)?).map(|(i, _)| i)?;
    let rest = &line[start..];
    let end = rest.find([',', ']', '}', '#']).unwrap_or(rest.len());
    let token = rest[..end].trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod pyyaml_tests {
    use super::*;

    /// `y`, `N` and friends stay text, as PyYAML reads them; PyYAML's own booleans stay booleans.
    #[test]
    fn only_pyyaml_booleans_are_booleans() {
        let text = "title: t\ndescription: d\nmethod: []\nflow: [y, N, yes, Off]\nblock:\n  a: n\n  b: TRUE  # c\n  c: Y\n";
        let loaded = parse("e.yaml", text, false).unwrap();
        assert_eq!(loaded.raw["flow"], serde_json::json!(["y", "N", true, false]));
        assert_eq!(loaded.raw["block"], serde_json::json!({"a": "n", "b": true, "c": "Y"}));
    }
}
