//! Where an experiment (or an SLO file, which shares the readers) is wrong: [`Diagnostic`] `file:line:column:
//! message` and the list of them, [`Diagnostics`]; and [`is_json`], which syntax a document is. A leaf the
//! SLO file reader imports without importing the whole experiment module.

use std::fmt;

/// One problem in an experiment file. `line` and `column` are 1-based (column in characters); both are 0
/// only when the file could not be read at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

/// Every problem found in one file, in file order; displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

fn render(list: &[Diagnostic]) -> String {
    list.iter().map(Diagnostic::to_string).collect::<Vec<_>>().join("\n")
}

impl Diagnostics {
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The document's syntax, from the file name (`.json` is JSON, `.yaml`/`.yml` YAML); other names are JSON
/// when the text starts with `{`, else YAML.
pub(crate) fn is_json(name: &str, text: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".json") {
        true
    } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        false
    } else {
        text.trim_start_matches('\u{feff}').trim_start().starts_with('{')
    }
}
