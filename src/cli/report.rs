//! `chaos report JOURNAL`: the reports of a finished run rendered again from its journal (`chaos run
//! --journal`, or a controller's): the self-contained HTML report, the Markdown summary and JUnit XML. Nothing
//! is run; a journal that cannot be read is named with where it went wrong (exit 2).

use std::path::PathBuf;

use anyhow::Context as _;
use chaos_controller::report::{self, Journal};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("outputs").required(true).multiple(true).args(["html", "summary", "junit"])))]
pub struct ReportArgs {
    /// The journal of a run (JSON, as `chaos run --journal FILE` writes it).
    journal: PathBuf,
    /// Write the HTML report here: one self-contained file with charts (no scripts, nothing fetched).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write the Markdown summary here (for CI step summaries, e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Write a JUnit XML report here (one test case per SLO and per steady-state probe).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

/// Renders the reports asked for; returns the exit code: 0 written, 2 when the journal cannot be read or an
/// output cannot be written.
pub fn report(args: ReportArgs) -> u8 {
    let journal = match report::read_journal(&args.journal) {
        Ok(journal) => journal,
        Err(e) => {
            eprintln!("chaos report: {e:#}");
            return 2;
        }
    };
    let outputs = [("html", &args.html), ("summary", &args.summary), ("junit", &args.junit)];
    if let Err(e) = super::args::check_outputs(&outputs) {
        eprintln!("chaos report: {e}; nothing was written");
        return 2;
    }
    match write(&args, &journal) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("chaos report: {e:#}");
            2
        }
    }
}

fn write(args: &ReportArgs, journal: &Journal) -> anyhow::Result<()> {
    if let Some(path) = &args.html {
        report::write_html(path, journal)
            .with_context(|| format!("writing the HTML report {}", path.display()))?;
        println!("HTML report: {}", path.display());
    }
    if let Some(path) = &args.summary {
        std::fs::write(path, report::render_markdown(journal))
            .with_context(|| format!("writing the summary {}", path.display()))?;
        println!("summary: {}", path.display());
    }
    if let Some(path) = &args.junit {
        report::write_junit(path, journal)
            .with_context(|| format!("writing the JUnit report {}", path.display()))?;
        println!("JUnit report: {}", path.display());
    }
    Ok(())
}
