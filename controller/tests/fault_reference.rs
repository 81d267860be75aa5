//! The fault reference in docs/experiments.md is the generator's output, byte for byte: the block between
//! `<!-- fault-reference:begin -->` and `<!-- fault-reference:end -->` must equal
//! `chaos_controller::experiment::fault_reference()` (what `chaos faults` prints), so the docs cannot drift from
//! the owners' tables. `BLESS=1 cargo test -p chaos-controller --test fault_reference` rewrites the block
//! (review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;

use chaos_controller::experiment::fault_reference;

const BEGIN: &str = "<!-- fault-reference:begin -->\n";
const END: &str = "<!-- fault-reference:end -->";

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/experiments.md")
}

/// The text before the block (through the begin marker), the block, and the rest (from the end marker on).
fn split(text: &str) -> (&str, &str, &str) {
    let begin = text.find(BEGIN).expect("docs/experiments.md has no `<!-- fault-reference:begin -->` line");
    let start = begin + BEGIN.len();
    let end = start
        + text[start..]
            .find(END)
            .expect("docs/experiments.md has no `<!-- fault-reference:end -->` after its begin");
    assert!(!text[end + END.len()..].contains(BEGIN), "docs/experiments.md has two fault reference blocks");
    (&text[..start], &text[start..end], &text[end..])
}

#[test]
fn the_docs_fault_reference_is_the_generated_one() {
    let path = docs();
    let text = fs::read_to_string(&path).unwrap();
    let (before, block, after) = split(&text);
    let generated = fault_reference();
    if std::env::var_os("BLESS").is_some() {
        fs::write(&path, format!("{before}{generated}{after}")).unwrap();
        return;
    }
    if block != generated {
        let first = block.lines().zip(generated.lines()).position(|(a, b)| a != b);
        let line = first.unwrap_or_else(|| block.lines().count().min(generated.lines().count()));
        let in_file = before.lines().count() + line + 1;
        panic!(
            "docs/experiments.md:{in_file}: the fault reference differs from the owners' tables \
             (docs: {:?}, generated: {:?}); run `BLESS=1 cargo test -p chaos-controller --test fault_reference` \
             and review the diff",
            block.lines().nth(line).unwrap_or("<end of block>"),
            generated.lines().nth(line).unwrap_or("<end of reference>"),
        );
    }
}

#[test]
fn the_reference_names_every_fault_kind() {
    let generated = fault_reference();
    for kind in chaos_controller::experiment::FaultKind::ALL {
        assert!(generated.contains(&format!("### `{kind}`")), "no section for {kind}");
    }
}
