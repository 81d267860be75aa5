//! What a run leaves behind: the journal JSON (the whole timeline and its time series), JUnit XML (one test
//! case per SLO and per steady-state probe), a Markdown summary for CI step summaries and a self-contained
//! HTML report with charts. All are rendered from one [`Journal`]; nothing here runs anything.

pub mod html;
pub mod journal;
pub mod junit;
pub mod markdown;
pub mod series;
pub mod svg;

use std::path::{Path, PathBuf};

pub use html::{render_html, write_html};
pub use journal::{
    ExperimentInfo, Journal, ProbeOutcome, ProbePhase, RecoveryOutcome, SignalSample, TimelineEntry,
    TimelineKind, Verdict, format_rfc3339, read_journal, signal_samples, write_journal,
};
pub use junit::{render_junit, write_junit};
pub use markdown::render_markdown;
pub use series::{FaultWindow, PhaseWindow, SaturationSeries, SloSeries, SourceSummary, WindowSummary};

/// A report that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// A journal that cannot be read; `path` may end in `:LINE:COLUMN`.
    #[error("{}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("cannot encode the journal as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot encode the JUnit report: {0}")]
    Junit(#[from] quick_junit::SerializeError),
}

/// Writes `contents` to `path` through a temporary file in the same directory and a rename, so a reader (or
/// a run killed halfway) never sees half a report.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), ReportError> {
    let fail = |source| ReportError::Write { path: path.to_path_buf(), source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}
