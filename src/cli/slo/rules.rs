//! `chaos slo rules FILE... [-o FILE] [--tests FILE]`: the Prometheus recording and alerting rules of SLO files
//! (to stdout, or to a file), and with `--tests` the `promtool test rules` file that proves them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chaos_controller::slo_file::{self, promtool, rules};

#[derive(clap::Args)]
pub struct RulesArgs {
    /// SLO files (YAML or JSON; native `kind: SLO`, Sloth `prometheus/v1` or OpenSLO `openslo/v1`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Write the rule file here instead of stdout (load it with `rule_files:` in prometheus.yml).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also write `promtool test rules` unit tests here, reading the `-o` file by its name (keep both in one
    /// directory); needs `-o`.
    #[arg(long, value_name = "FILE")]
    tests: Option<PathBuf>,
}

/// Exit 0 written, 2 bad input (diagnostics on stderr, nothing written).
pub fn rules(args: RulesArgs) -> anyhow::Result<u8> {
    if args.tests.is_some() && args.output.is_none() {
        eprintln!("--tests needs -o FILE: the tests refer to the rule file by its name");
        return Ok(2);
    }
    let slos = match slo_file::load_all(&args.files) {
        Ok(slos) => slos,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(2);
        }
    };
    let text = rules::render(&slos);
    let Some(output) = &args.output else {
        print!("{text}");
        return Ok(0);
    };
    write(output, &text)?;
    if let Some(tests) = &args.tests {
        let name = relative_name(output, tests);
        write(tests, &promtool::render_tests(&slos, &name))?;
    }
    Ok(0)
}

/// How the test file names the rule file: its path relative to the test file's directory when both share
/// one, else the path as given (promtool resolves `rule_files` against the test file's directory).
fn relative_name(rules: &Path, tests: &Path) -> String {
    let dir = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir(rules) == dir(tests) {
        rules.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    } else {
        std::path::absolute(rules).unwrap_or_else(|_| rules.to_path_buf()).display().to_string()
    }
}

/// Writes through a temporary file in the same directory and a rename, so a reader never sees half a file.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
}
