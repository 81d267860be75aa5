//! SLOs as code: the SLO file, written once and used everywhere (DESIGN §10). A file holds one or more SLOs,
//! as YAML documents (`---` between them) or a JSON document or array, in the native format
//! (`apiVersion: chaos/v1`, `kind: SLO`, [`native`]) or an imported one (Sloth `prometheus/v1`, [`sloth`];
//! OpenSLO `openslo/v1`, [`openslo`]); [`init`] renders the starter file of `chaos slo init`. Every SLO is normalised into one [`SloDef`] ([`model`]); from it come the PromQL
//! ([`promql`]), the burn-rate windows ([`windows`]), and the figures read from Prometheus ([`query`],
//! [`budget`]).
//!
//! Reading is all-or-nothing: any problem in a file is reported as `file:line:column: message` and no SLO
//! of that file is returned.

pub mod budget;
pub mod init;
pub mod model;
pub mod native;
pub mod openslo;
pub mod promql;
pub mod promtool;
pub mod query;
pub mod rules;
pub mod sloth;
pub mod status;
pub mod windows;

use std::collections::BTreeMap;
use std::path::Path;

pub use model::*;

use crate::experiment::diagnostic::{Diagnostic, Diagnostics, is_json};
use crate::experiment::node::{self, Node, Pos, Value};

/// Largest SLO file read.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// Most SLOs in one file, and in one set of files.
pub const MAX_SLOS: usize = 10_000;

/// Reads and checks one SLO file.
pub fn load(path: &Path) -> Result<Vec<SloDef>, Diagnostics> {
    let name = path.display().to_string();
    let cannot =
        |message: String| Diagnostics(vec![Diagnostic { file: name.clone(), line: 0, column: 0, message }]);
    let size = std::fs::metadata(path).map_err(|e| cannot(format!("cannot read: {e}")))?.len();
    if size > MAX_FILE_BYTES {
        return Err(cannot(format!(
            "file is {size} bytes, larger than the {MAX_FILE_BYTES} an SLO file may be"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| cannot(format!("cannot read: {e}")))?;
    parse(&name, &text)
}

/// Reads several SLO files; an SLO id (`service/name`) defined twice is an error at its second definition.
pub fn load_all(paths: &[impl AsRef<Path>]) -> Result<Vec<SloDef>, Diagnostics> {
    let mut all: Vec<SloDef> = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match load(path.as_ref()) {
            Ok(slos) => all.extend(slos),
            Err(d) => problems.extend(d.0),
        }
    }
    problems.extend(duplicate_ids(&all));
    if all.len() > MAX_SLOS {
        problems.push(Diagnostic {
            file: "(all files)".into(),
            line: 0,
            column: 0,
            message: format!("{} SLOs given, at most {MAX_SLOS} are read at once", all.len()),
        });
    }
    if problems.is_empty() { Ok(all) } else { Err(Diagnostics(problems)) }
}

/// Reads the SLOs of one file's text; `name` names the file in diagnostics and picks the syntax (`.json` is
/// JSON, `.yaml`/`.yml` YAML, otherwise JSON when it starts with `{` or `[`).
pub fn parse(name: &str, text: &str) -> Result<Vec<SloDef>, Diagnostics> {
    let diagnostic = |pos: Pos, message: String| Diagnostic {
        file: name.to_string(),
        line: pos.line,
        column: pos.column,
        message: message.lines().map(str::trim).collect::<Vec<_>>().join(" "),
    };
    let json = is_json(name, text) || text.trim_start_matches('\u{feff}').trim_start().starts_with('[');
    let docs = if json {
        node::from_json(text).map(|root| match root.value {
            Value::Seq(items) => items,
            _ => vec![root],
        })
    } else {
        node::from_yaml_multi(text)
    }
    .map_err(|e| Diagnostics(vec![diagnostic(e.pos, e.message)]))?;
    if docs.is_empty() {
        return Err(Diagnostics(vec![diagnostic(Pos::START, "no SLO in this file".to_string())]));
    }
    if docs.len() > MAX_SLOS {
        return Err(Diagnostics(vec![diagnostic(
            Pos::START,
            format!("{} documents, at most {MAX_SLOS}", docs.len()),
        )]));
    }
    let mut slos = Vec::new();
    let mut problems = Vec::new();
    // OpenSLO's indicatorRef and metricSourceRef name other documents of the same file.
    let index = openslo::Index::new(&docs);
    for doc in &docs {
        match read_document(name, doc, &index) {
            Ok(mut more) => slos.append(&mut more),
            Err(list) => problems.extend(list.into_iter().map(|(pos, message)| diagnostic(pos, message))),
        }
    }
    if slos.is_empty() && problems.is_empty() {
        problems.push(diagnostic(
            Pos::START,
            "no SLO in this file (its OpenSLO documents are all of kinds that hold none)".to_string(),
        ));
    }
    problems.extend(duplicate_ids(&slos));
    problems.sort_by_key(|d| (d.line, d.column));
    if slos.len() > MAX_SLOS {
        problems.push(diagnostic(Pos::START, format!("{} SLOs, at most {MAX_SLOS} in one file", slos.len())));
    }
    if problems.is_empty() { Ok(slos) } else { Err(Diagnostics(problems)) }
}

/// One document, in whichever format it announces.
fn read_document(
    file: &str,
    doc: &Node,
    index: &openslo::Index<'_>,
) -> Result<Vec<SloDef>, Vec<native::Problem>> {
    if !matches!(doc.value, Value::Map(_)) {
        return Err(vec![(doc.pos, format!("expected an SLO document (a mapping), found {}", doc.kind()))]);
    }
    let text = |key: &str| match doc.get(key).map(|n| &n.value) {
        Some(Value::Str(s)) => Some(s.as_str()),
        _ => None,
    };
    match (text("apiVersion"), text("kind"), text("version")) {
        (Some(native::API_VERSION), Some(native::KIND), _) => native::read(file, doc).map(|slo| vec![slo]),
        (Some(native::API_VERSION), Some(kind), _) => Err(vec![(
            doc.key_pos_at(&[node::Seg::K("kind")]),
            format!("kind {kind:?} is not an SLO (kind: SLO){}", if kind == "Experiment" { "; run experiments with chaos run" } else { "" }),
        )]),
        (Some(native::API_VERSION), None, _) if doc.get("title").is_some() => Err(vec![(
            doc.pos,
            "this looks like an experiment (it has a title): SLO files hold kind: SLO documents".to_string(),
        )]),
        (None, _, Some(sloth::VERSION)) => sloth::read_file(file, doc),
        (None, _, Some(version)) => Err(vec![(
            doc.pos_at(&[node::Seg::K("version")]),
            format!("unknown Sloth version {version:?}: only \"{}\" files are read", sloth::VERSION),
        )]),
        (Some(sloth::K8S_API_VERSION), _, _) => sloth::read_resource(file, doc),
        (Some(api), _, _) if api.starts_with("openslo/") => openslo::read(file, doc, index),
        (Some(api), _, _) => Err(vec![(
            doc.key_pos_at(&[node::Seg::K("apiVersion")]),
            format!("unknown apiVersion {api:?}: expected chaos/v1 (kind: SLO), openslo/v1, or a Sloth file (version: prometheus/v1)"),
        )]),
        (None, _, _) => Err(vec![(
            doc.pos,
            "not an SLO document: expected apiVersion: chaos/v1 with kind: SLO, a Sloth file (version: prometheus/v1) or OpenSLO (apiVersion: openslo/v1)".to_string(),
        )]),
    }
}

/// An SLO id defined twice, at its second definition (in one file, across the files read together, across
/// the files a controller applies at once).
pub fn duplicate_ids<'a>(slos: impl IntoIterator<Item = &'a SloDef>) -> Vec<Diagnostic> {
    let mut seen: BTreeMap<String, &Origin> = BTreeMap::new();
    let mut out = Vec::new();
    for slo in slos {
        let id = slo.id();
        match seen.get(&id) {
            Some(first) => out.push(Diagnostic {
                file: slo.origin.file.clone(),
                line: slo.origin.line,
                column: slo.origin.column,
                message: format!("SLO {id} is defined twice (first at {first})"),
            }),
            None => {
                seen.insert(id, &slo.origin);
            }
        }
    }
    out
}

/// The JSON Schema of the native SLO document.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(native::NativeSlo)).unwrap_or_default()
}
