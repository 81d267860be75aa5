//! Invalid experiments, data-driven: each `tests/data/experiments/invalid/NAME.{yaml,json}` is parsed under its
//! file name and its diagnostics must be exactly the lines of `NAME.EXT.expected` (`file:line:column: message`).
//! `BLESS=1 cargo test --test experiment_invalid` rewrites the expectations (review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use chaos_controller::experiment::parse;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/experiments/invalid");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "json")))
        .collect();
    files.sort();
    files
}

#[test]
fn every_invalid_document_gives_exactly_its_diagnostics() {
    let bless = std::env::var_os("BLESS").is_some();
    let files = cases();
    assert!(files.len() >= 25, "only {} invalid cases", files.len());
    let mut failures = Vec::new();
    let mut diagnostics_seen = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let text = fs::read_to_string(file).unwrap();
        let got = match parse(name, &text, &[]) {
            Ok(_) => String::from("(valid)\n"),
            Err(d) => {
                diagnostics_seen += d.len();
                for diagnostic in d.iter() {
                    assert!(diagnostic.line >= 1 && diagnostic.column >= 1, "{diagnostic}");
                    assert_eq!(diagnostic.file, name);
                }
                format!("{d}\n")
            }
        };
        let expected_path = file.with_file_name(format!("{name}.expected"));
        if bless {
            fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!("== {name}\n-- expected:\n{expected}-- got:\n{got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert!(diagnostics_seen >= 60, "expected many diagnostics across the table, saw {diagnostics_seen}");
}

#[test]
fn semantic_errors_are_all_collected_in_file_order() {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/experiments/invalid/probes.yaml"),
    )
    .unwrap();
    let d = parse("probes.yaml", &text, &[]).unwrap_err();
    assert_eq!(d.len(), 6, "{d}");
    let positions: Vec<(usize, usize)> = d.iter().map(|x| (x.line, x.column)).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
}
