//! Seeded fuzzing of the experiment reader: valid documents mutated by character flips, deletions,
//! truncations, duplicated lines and value type swaps must never panic, and every diagnostic must carry a
//! real position (line ≥ 1, column ≥ 1, within the file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use chaos_controller::experiment::parse;
use chaos_test_support::mutate::assert_placed;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// serde-saphyr takes a few milliseconds per document in debug builds, JSON a tenth of one: these keep the
/// test within a few seconds.
const YAML_ROUNDS: usize = 200;
const JSON_ROUNDS: usize = 1500;

/// Characters that matter to YAML, JSON and our own syntax.
const INTERESTING: &[char] = &[
    '{', '}', '[', ']', ':', ',', '"', '\'', '-', '#', '&', '*', '!', '|', '>', '%', '$', '\n', '\t', ' ',
    '\\', '0', '9', 'a', 'é', '\u{0}', '\u{feff}', '/', '.', '<', '=', '@', '?',
];

/// Values swapped in where a value stood.
const VALUES: &[&str] = &[
    "[]",
    "{}",
    "null",
    "~",
    "-1",
    "0",
    "1e999",
    "\"x\"",
    "true",
    "18446744073709551616",
    "-9223372036854775809",
    "0.5",
    "\"${x}\"",
    "\"$${\"",
    "\"${env:NOPE}\"",
    "[1, [2, [3]]]",
    "{a: {b: {c: 1}}}",
    "\"p99 < 1ms\"",
    "&a x",
    "*a",
    "!!binary aGVsbG8=",
    "\"\\ud800\"",
    "1ms",
    "100%",
    "5/s",
    "kill",
    "\"\"",
];

fn mutate(rng: &mut StdRng, text: &str) -> String {
    chaos_test_support::mutate::mutate(rng, text, INTERESTING, VALUES)
}

#[test]
fn mutated_documents_never_panic_and_always_have_positions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/experiments/valid");
    let mut files: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    // FUZZ_SEED and FUZZ_SCALE explore further by hand; CI runs the fixed seed at scale 1.
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x0c4a_05e5);
    let scale: usize = std::env::var("FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut valid, mut invalid) = (0usize, 0usize);
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let original = fs::read_to_string(file).unwrap();
        let rounds = scale * if name.ends_with(".json") { JSON_ROUNDS } else { YAML_ROUNDS };
        for round in 0..rounds {
            let text = mutate(&mut rng, &original);
            let result = catch_unwind(AssertUnwindSafe(|| parse(&name, &text, &[])));
            match result {
                Err(_) => panic!("{name} round {round} panicked on:\n{text}"),
                Ok(Ok(_)) => valid += 1,
                Ok(Err(diagnostics)) => {
                    invalid += 1;
                    assert!(!diagnostics.is_empty(), "{name} round {round}: an error without diagnostics");
                    for d in diagnostics.iter() {
                        let context = format!("{name} round {round}");
                        assert_placed(&context, &text, d.line, d.column, &d.message);
                    }
                }
            }
        }
    }
    // Both outcomes occur, so the mutations neither always break nor never touch the documents.
    assert!(valid > 50 && invalid > 500, "valid {valid}, invalid {invalid}");
}
