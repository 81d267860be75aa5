//! `chaos convert FILE [-o OUT]`: writes the native experiment equivalent to a Chaos Toolkit experiment
//! (chaos_controller::ctk::convert) and lists, on stderr, what converted, what was folded and each activity
//! with no native equivalent. Exit 0 when the native experiment was written (even with activities left out),
//! 1 when nothing converts (nothing written), 2 when the file is not a readable Chaos Toolkit experiment.

use std::path::PathBuf;

use chaos_controller::ctk::convert;
use chaos_controller::experiment;

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The Chaos Toolkit experiment (.json, .yaml or .yml).
    file: PathBuf,
    /// Where to write the native experiment: JSON when it ends in `.json`, YAML otherwise. Standard output
    /// when absent.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
}

/// Converts one file; returns the exit code.
pub fn convert(args: ConvertArgs) -> u8 {
    let exp = match convert::load(&args.file) {
        Ok(exp) => exp,
        Err(e) => {
            eprintln!("chaos convert: {e}");
            return 2;
        }
    };
    let conversion = convert::convert(&exp);
    for line in &conversion.converted {
        eprintln!("converted: {line}");
    }
    for line in &conversion.folded {
        eprintln!("folded: {line}");
    }
    for line in &conversion.unconverted {
        eprintln!("no native equivalent: {line}");
    }
    if conversion.is_empty() {
        eprintln!("chaos convert: {}: nothing converts; nothing written", args.file.display());
        return 1;
    }
    let json =
        args.output.as_ref().is_some_and(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")));
    let text = if json {
        conversion.to_json()
    } else {
        match conversion.to_yaml() {
            Ok(text) => text,
            Err(e) => {
                eprintln!("chaos convert: cannot write YAML: {e}");
                return 1;
            }
        }
    };
    // What is written must be a valid native experiment.
    let name = if json { "converted.json" } else { "converted.yaml" };
    if let Err(diagnostics) = experiment::parse(name, &text, &[]) {
        eprintln!(
            "chaos convert: {}: the native equivalent does not validate:\n{diagnostics}",
            args.file.display()
        );
        return 1;
    }
    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                eprintln!("chaos convert: cannot write {}: {e}", path.display());
                return 1;
            }
            eprintln!("chaos convert: wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    0
}
