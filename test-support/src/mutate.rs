//! Seeded mutation of documents for the parsers' fuzz tests: up to three edits of a text (a character
//! replaced or inserted from `interesting`, a run deleted, the rest cut off, a line duplicated — duplicate keys,
//! repeated steps —, or the value after a `:` swapped for one of `values`, another type), and the check every
//! parser's diagnostics on them must pass ([`assert_placed`]).

use rand::Rng;

/// `text` with one to three random edits drawn by `rng`.
pub fn mutate(rng: &mut impl Rng, text: &str, interesting: &[char], values: &[&str]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let rounds = rng.random_range(1..=3);
    for _ in 0..rounds {
        if chars.is_empty() {
            break;
        }
        let at = rng.random_range(0..chars.len());
        match rng.random_range(0..6) {
            0 if !interesting.is_empty() => chars[at] = interesting[rng.random_range(0..interesting.len())],
            1 => {
                let end = (at + rng.random_range(1..8)).min(chars.len());
                chars.drain(at..end);
            }
            2 => chars.truncate(at),
            3 => {
                let start = chars[..at].iter().rposition(|c| *c == '\n').map_or(0, |i| i + 1);
                let end = chars[at..].iter().position(|c| *c == '\n').map_or(chars.len(), |i| at + i + 1);
                let line: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, line);
            }
            4 if !interesting.is_empty() => {
                chars.insert(at, interesting[rng.random_range(0..interesting.len())])
            }
            5 if !values.is_empty() => {
                if let Some(colon) = chars[at..].iter().position(|c| *c == ':').map(|i| at + i + 1) {
                    let end = chars[colon..]
                        .iter()
                        .position(|c| matches!(c, ',' | '\n' | '}'))
                        .map_or(chars.len(), |i| colon + i);
                    let value = format!(" {}", values[rng.random_range(0..values.len())]);
                    chars.splice(colon..end, value.chars());
                }
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// Checks one diagnostic of a mutated document: placed inside the document (1-based line and column, at most
/// one line past its last), with a one-line message. `context` names the document and round in failures.
#[track_caller]
pub fn assert_placed(context: &str, text: &str, line: usize, column: usize, message: &str) {
    let lines = text.split('\n').count();
    assert!(line >= 1 && column >= 1, "{context}: {line}:{column}: {message}\n{text}");
    assert!(line <= lines + 1, "{context}: {line}:{column}: {message} beyond {lines} lines\n{text}");
    assert!(!message.is_empty() && !message.contains('\n'), "{context}: {line}:{column}: {message:?}");
}
