//! SLO references in an experiment (`slos: - use: service/name`, with `file:` or from the controller's
//! registry): each is resolved once, while the experiment is checked, into the spelled-out SLO the engine
//! judges (signal, objective and threshold from the definition; `source:` as written, or the definition's
//! PromQL as a Prometheus good/total source with `prometheus:`), and the definitions themselves are kept on
//! the [`super::Checked`] experiment for the budget gate and the burn-rate guardrail, so the engine never
//! reads a file. Also the checks of `budget_gate` and `guardrails.slo_burn`, which name referenced SLOs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::diagnostic::{Diagnostic, Diagnostics};
use super::model::{Experiment, Percent, PrometheusSource, Signal, Slo, Source};
use super::node::{Node, Pos, Seg};
use crate::slo_file::model::{Counted, Events, Query, Severity, Sli, SloDef};
use crate::slo_file::promql::le_matcher;

/// SLO definitions by id, for references without `file:` (the controller's registry). The lead wires the
/// store's SLO table in; [`NoRegistry`] is the default.
pub trait SloCatalog: Send + Sync {
    /// The definition registered as `id` (`service/name`), if any.
    fn slo(&self, id: &str) -> Option<SloDef>;
    /// Every registered id, listed when a reference names none of them.
    fn ids(&self) -> Vec<String>;
    /// Why this catalog cannot answer at all; `None` for a real registry.
    fn unavailable(&self) -> Option<String> {
        None
    }
}

/// No registry: what `chaos run` without a controller has.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRegistry;

/// What [`NoRegistry`] answers a registry reference with.
pub const NO_REGISTRY: &str =
    "no SLO registry here: give `file:`, or run through a controller after `chaos slo apply`";

impl SloCatalog for NoRegistry {
    fn slo(&self, _: &str) -> Option<SloDef> {
        None
    }
    fn ids(&self) -> Vec<String> {
        Vec::new()
    }
    fn unavailable(&self) -> Option<String> {
        Some(NO_REGISTRY.into())
    }
}

/// How `file:` references are read.
#[derive(Clone, Debug)]
pub enum SloFiles {
    /// Relative to this directory (the experiment file's).
    Relative(PathBuf),
    /// Refused with this message (a controller cannot read its client's files).
    Refused(String),
}

/// What a controller says to a `file:` reference.
pub const FILES_REFUSED: &str = "a controller cannot read the client's SLO files: register it with `chaos slo apply` \
     and drop `file:`";

/// Where the SLO references of an experiment are resolved from.
#[derive(Clone, Copy)]
pub struct SloSources<'a> {
    pub files: &'a SloFiles,
    pub catalog: &'a dyn SloCatalog,
    /// Definitions an experiment checked before already carries, by `slos:` index (what [`super::check`]
    /// passes for a document that came from a checked experiment); empty otherwise.
    pub carried: &'a [Option<SloDef>],
}

impl<'a> SloSources<'a> {
    /// Files as `files` says, registry references from `catalog`, nothing carried.
    pub fn new(files: &'a SloFiles, catalog: &'a dyn SloCatalog) -> SloSources<'a> {
        SloSources { files, catalog, carried: &[] }
    }
}

/// One resolved reference: the experiment SLO's name and the definition it judges by.
#[derive(Clone, Debug, PartialEq)]
pub struct SloRef {
    /// The `slos:` entry's name (the id unless the entry names itself).
    pub name: String,
    /// `service/name`.
    pub id: String,
    pub def: SloDef,
}

/// The default directory `file:` is relative to: the experiment file's.
pub fn files_beside(experiment_file: &str) -> SloFiles {
    SloFiles::Relative(Path::new(experiment_file).parent().map(Path::to_path_buf).unwrap_or_default())
}

struct Resolver<'a> {
    name: &'a str,
    root: &'a Node,
    sources: SloSources<'a>,
    errors: Vec<Diagnostic>,
    /// Files read so far, by the path as resolved (a file referenced twice is read once).
    files: BTreeMap<PathBuf, Result<Vec<SloDef>, ()>>,
}

/// Resolves every `use:` entry of `exp` in place (see the module doc) and returns the definitions; every
/// problem is reported at its node. `name` is the experiment file's name, for diagnostics.
pub(super) fn resolve(
    name: &str,
    exp: &mut Experiment,
    root: &Node,
    sources: SloSources<'_>,
) -> Result<Vec<SloRef>, Diagnostics> {
    let mut r = Resolver { name, root, sources, errors: Vec::new(), files: BTreeMap::new() };
    let mut refs = Vec::new();
    for (i, slo) in exp.slos.iter_mut().enumerate() {
        let path = [Seg::K("slos"), Seg::I(i)];
        let Some(id) = slo.uses.clone() else {
            if slo.file.is_some() || slo.prometheus.is_some() {
                let key = if slo.file.is_some() { "file" } else { "prometheus" };
                r.at_key(
                    &[path[0], path[1], Seg::K(key)],
                    format!("`{key}` applies to an SLO with `use` only"),
                );
            } else {
                r.spelled_out(slo, &path);
            }
            continue;
        };
        if slo.name.is_empty() {
            slo.name = id.clone();
        }
        let carried = r.sources.carried.get(i).cloned().flatten().filter(|d| d.id() == id);
        if let Some(def) = carried.or_else(|| r.definition(slo, &id, &path)) {
            r.apply(slo, &def, &path);
            slo.definition = Some(def.clone());
            refs.push(SloRef { name: slo.name.clone(), id, def });
        }
    }
    if r.errors.is_empty() { Ok(refs) } else { Err(Diagnostics(r.errors)) }
}

impl Resolver<'_> {
    fn at(&mut self, path: &[Seg<'_>], message: String) {
        let pos = self.root.pos_at(path);
        self.push(pos, message);
    }

    fn at_key(&mut self, path: &[Seg<'_>], message: String) {
        let pos = self.root.key_pos_at(path);
        self.push(pos, message);
    }

    fn push(&mut self, pos: Pos, message: String) {
        self.errors.push(Diagnostic {
            file: self.name.to_string(),
            line: pos.line,
            column: pos.column,
            message: super::one_line(&message),
        });
    }

    fn has(&self, path: &[Seg<'_>], key: &str) -> bool {
        let mut node = Some(self.root);
        for seg in path {
            node = node.and_then(|n| match (seg, &n.value) {
                (Seg::K(k), _) => n.get(k),
                (Seg::I(i), super::node::Value::Seq(items)) => items.get(*i),
                _ => None,
            });
        }
        node.and_then(|n| n.get(key)).is_some_and(|n| !matches!(n.value, super::node::Value::Null))
    }

    /// A spelled-out SLO names itself and its signal (the model defaults them, for `use` entries).
    fn spelled_out(&mut self, slo: &Slo, path: &[Seg<'_>]) {
        if slo.name.is_empty() && !self.has(path, "name") {
            self.at(
                path,
                "an SLO needs `name` (or `use: service/name` to reference an SLO definition)".into(),
            );
        }
        if !self.has(path, "signal") {
            self.at(
                path,
                format!(
                    "SLO `{}` needs `signal` (latency, errors, traffic or saturation), or `use: service/name` to \
                     reference an SLO definition",
                    slo.name
                ),
            );
        }
    }

    /// The definition `id` names, from its file or the registry.
    fn definition(&mut self, slo: &Slo, id: &str, path: &[Seg<'_>]) -> Option<SloDef> {
        let use_path = [path[0], path[1], Seg::K("use")];
        if !id.split_once('/').is_some_and(|(s, n)| !s.is_empty() && !n.is_empty() && !n.contains('/')) {
            self.at(&use_path, format!("`use` takes an SLO id `service/name`, found {id:?}"));
            return None;
        }
        let Some(file) = &slo.file else {
            let catalog = self.sources.catalog;
            if let Some(why) = catalog.unavailable() {
                self.at(&use_path, format!("SLO `{id}` has no `file:`, and {why}"));
                return None;
            }
            return catalog.slo(id).or_else(|| {
                let ids = catalog.ids();
                let known = if ids.is_empty() { "none is registered".to_string() } else { ids.join(", ") };
                self.at(
                    &use_path,
                    format!("no SLO `{id}` in the controller's registry (registered: {known})"),
                );
                None
            });
        };
        let file_path = [path[0], path[1], Seg::K("file")];
        let resolved = match self.sources.files {
            SloFiles::Refused(why) => {
                let why = why.clone();
                self.at(&file_path, why);
                return None;
            }
            SloFiles::Relative(dir) => dir.join(file),
        };
        if !self.files.contains_key(&resolved) {
            let read = if resolved.is_file() {
                crate::slo_file::load(&resolved).map_err(|d| {
                    let pos = self.root.pos_at(&file_path);
                    self.push(pos, format!("SLO file `{file}` is not valid:"));
                    self.errors.extend(d.0);
                })
            } else {
                let why = match std::fs::metadata(&resolved) {
                    Ok(_) => "not a file".to_string(),
                    Err(e) => e.to_string(),
                };
                self.at(&file_path, format!("cannot read SLO file `{file}` ({}): {why}", resolved.display()));
                Err(())
            };
            self.files.insert(resolved.clone(), read);
        }
        let Some(Ok(defs)) = self.files.get(&resolved) else { return None };
        if let Some(def) = defs.iter().find(|d| d.id() == id) {
            return Some(def.clone());
        }
        let ids: Vec<String> = defs.iter().map(SloDef::id).collect();
        self.at(&use_path, format!("no SLO `{id}` in `{file}` (it has {})", ids.join(", ")));
        None
    }

    /// Fills `slo` in from `def`: name (unless given), signal, objective, threshold, and the source.
    fn apply(&mut self, slo: &mut Slo, def: &SloDef, path: &[Seg<'_>]) {
        let id = def.id();
        let key = |k| [path[0], path[1], Seg::K(k)];
        for (field, present) in [
            ("objective", slo.objective.is_some()),
            ("threshold", slo.threshold.is_some()),
            ("percentile", slo.percentile.is_some()),
            ("min", slo.min.is_some()),
            ("max", slo.max.is_some()),
        ] {
            if present {
                let why = if matches!(field, "min" | "max") {
                    format!("`{field}` does not apply to an SLO from a definition (errors or latency)")
                } else {
                    format!(
                        "`{field}` comes from the definition of `{id}` ({}): one definition, so drop it here",
                        def.origin
                    )
                };
                self.at_key(&key(field), why);
            }
        }
        let (signal, threshold) = match &def.sli {
            Sli::Latency(l) => (
                Signal::Latency,
                Some(super::model::Duration(std::time::Duration::from_secs_f64(l.threshold))),
            ),
            Sli::Events(_) | Sli::ErrorRatio(_) => (Signal::Errors, None),
        };
        if self.has(&[path[0], path[1]], "signal") && slo.signal != signal {
            let (written, derived) =
                (super::checked::signal_name(slo.signal), super::checked::signal_name(signal));
            self.at(
                &key("signal"),
                format!("`{id}` is a {derived} SLO by its SLI, not {written}: drop `signal`"),
            );
        }
        slo.signal = signal;
        slo.objective = Some(Percent(def.objective));
        slo.threshold = threshold;
        let has_source = slo.source != Source::default();
        match (&slo.prometheus, has_source) {
            (Some(_), true) => self.at_key(
                &key("prometheus"),
                "give either `source` (the run's own signals) or `prometheus` (the SLO's PromQL), not both"
                    .into(),
            ),
            (None, false) => self.at(
                path,
                format!(
                    "SLO `{id}` needs `source:` (judged on the run's own signals, e.g. `{{load: main}}`) or \
                     `prometheus: URL` (judged on its PromQL)"
                ),
            ),
            (None, true) => {}
            (Some(url), false) => match counters(def) {
                Ok((good, total)) => {
                    slo.source.prometheus = Some(PrometheusSource {
                        url: url.clone(),
                        good: Some(good),
                        total: Some(total),
                        ratio: None,
                    });
                }
                Err(why) => self.at_key(&key("prometheus"), format!("SLO `{id}`: {why}")),
            },
        }
    }
}

/// The good and total event counters of a definition's SLI, as the Prometheus source polls them.
pub fn counters(def: &SloDef) -> Result<(String, String), String> {
    let hint = "give `source:` to judge it on the run's own signals";
    let selector = |q: &Query| match q {
        Query::Counter(s) => Ok(s.trim().to_string()),
        Query::Template(_) => Err(format!(
            "its SLI is a query template (`{{{{.window}}}}`), which cannot be polled as a counter: {hint}"
        )),
    };
    match &def.sli {
        Sli::Events(Events { counted, query, total }) => {
            let (counted_sel, total_sel) = (selector(query)?, selector(total)?);
            let total = format!("sum({total_sel})");
            let good = match counted {
                // No bad series yet (no error so far) must read as zero bad, not as no data.
                Counted::Bad => format!("sum({total_sel}) - (sum({counted_sel}) or vector(0))"),
                Counted::Good => format!("sum({counted_sel}) or vector(0)"),
            };
            Ok((good, total))
        }
        Sli::Latency(l) => {
            let matchers = l.matchers.trim();
            let le = le_matcher(l.threshold);
            let bucket = if matchers.is_empty() { le } else { format!("{matchers},{le}") };
            Ok((
                format!("sum({}_bucket{{{bucket}}})", l.histogram),
                format!("sum({}_count{{{matchers}}})", l.histogram),
            ))
        }
        Sli::ErrorRatio(_) => {
            Err(format!("its SLI is an error-ratio query, which has no event counters to poll: {hint}"))
        }
    }
}

/// Checks `budget_gate` and `guardrails.slo_burn` against the resolved references.
pub(super) fn check_gates(name: &str, exp: &Experiment, root: &Node, refs: &[SloRef]) -> Vec<Diagnostic> {
    let no_files = SloFiles::Refused(String::new());
    let mut r = Resolver {
        name,
        root,
        sources: SloSources::new(&no_files, &NoRegistry),
        errors: Vec::new(),
        files: BTreeMap::new(),
    };
    let known: Vec<&str> = refs.iter().map(|r| r.id.as_str()).collect();
    let check = |r: &mut Resolver<'_>, path: &[Seg<'_>], what: &str, url: &str, ids: &[String]| {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            r.at(
                &[path, &[Seg::K("prometheus")]].concat(),
                format!("`prometheus` must be an http:// or https:// URL, found {url:?}"),
            );
        }
        if known.is_empty() {
            r.at(
                path,
                format!(
                    "{what} needs SLOs from definitions: reference one in `slos:` with `use: service/name`"
                ),
            );
        }
        for (i, id) in ids.iter().enumerate() {
            if !known.contains(&id.as_str()) {
                let listed = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                r.at(
                    &[path, &[Seg::K("slos"), Seg::I(i)]].concat(),
                    format!("{what}: `{id}` is not referenced in `slos:` (referenced: {listed})"),
                );
            }
        }
    };
    if let Some(gate) = &exp.budget_gate {
        check(&mut r, &[Seg::K("budget_gate")], "the budget gate", &gate.prometheus, &gate.slos);
    }
    if let Some(burn) = exp.guardrails.as_ref().and_then(|g| g.slo_burn.as_ref()) {
        let path = [Seg::K("guardrails"), Seg::K("slo_burn")];
        check(&mut r, &path, "the burn-rate guardrail", &burn.prometheus, &burn.slos);
        for (field, d) in [("every", burn.every), ("grace", burn.grace)] {
            if d.is_some_and(|d| d.0.is_zero()) {
                r.at(&[path[0], path[1], Seg::K(field)], format!("`{field}` must be above 0"));
            }
        }
        for sref in refs.iter().filter(|s| burn.slos.is_empty() || burn.slos.contains(&s.id)) {
            if !sref.def.alerting.windows.iter().any(|w| w.severity == Severity::Page) {
                r.at(&path, format!("the burn-rate guardrail watches page rows, and `{}` has none", sref.id));
            }
        }
    }
    r.errors
}
