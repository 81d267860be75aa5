//! Seeded fuzzing of variable expansion against a model: random `vars:` that refer to each other (chains,
//! fan-out that multiplies sizes, cycles, unknown names) are parsed, and the outcome must be what the model
//! predicts from lengths and depths alone. Expansion within [`MAX_EXPANDED_BYTES`] and [`MAX_DEPTH`] gives
//! exactly the model's values; past either gives the matching error with a real position, quickly, and never
//! a panic or an allocation the size of what the file asks for.
//!
//! `FUZZ_SEED` and `FUZZ_SCALE` explore further by hand; CI runs the fixed seed at scale 1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use chaos_controller::experiment::{MAX_DEPTH, MAX_EXPANDED_BYTES, parse_with_env};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 400;

/// One variable's value: literal text and references to other variables (by index; `None`: an unknown name).
#[derive(Debug, Clone)]
enum Piece {
    Text(usize),
    Ref(Option<usize>),
}

/// What the model expects of a document.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Every variable expands; their lengths.
    Ok(Vec<u64>),
    /// A cycle or an unknown name: some error, message not checked.
    Broken,
    TooDeep,
    TooBig,
}

fn random_vars(rng: &mut StdRng) -> Vec<Vec<Piece>> {
    let count = rng.random_range(1..=24);
    let mut vars = Vec::with_capacity(count);
    if rng.random_bool(0.25) {
        // A chain, each variable using the one before: depth without much size.
        for index in 0..count {
            let mut value = vec![Piece::Text(rng.random_range(1..=16))];
            if index > 0 {
                value.push(Piece::Ref(Some(index - 1)));
            }
            vars.push(value);
        }
        return vars;
    }
    for index in 0..count {
        let pieces = rng.random_range(1..=8);
        let mut value = Vec::with_capacity(pieces);
        for _ in 0..pieces {
            value.push(match rng.random_range(0..200) {
                // Mostly references to earlier variables (chains and fan-out), sometimes to any (cycles).
                0..=109 if index > 0 => Piece::Ref(Some(rng.random_range(0..index))),
                110..=111 => Piece::Ref(Some(rng.random_range(0..count))),
                112 => Piece::Ref(None),
                _ => Piece::Text(rng.random_range(1..=4096)),
            });
        }
        vars.push(value);
    }
    vars
}

fn document(vars: &[Vec<Piece>], hypothesis: usize) -> String {
    let mut doc = String::from("apiVersion: chaos/v1\ntitle: t\nvars:\n");
    for (index, value) in vars.iter().enumerate() {
        let mut text = String::new();
        for piece in value {
            match piece {
                Piece::Text(n) => text.push_str(&"x".repeat(*n)),
                Piece::Ref(Some(other)) => text.push_str(&format!("${{v{other}}}")),
                Piece::Ref(None) => text.push_str("${nowhere}"),
            }
        }
        doc.push_str(&format!("  v{index}: \"{text}\"\n"));
    }
    doc.push_str(&format!("hypothesis: \"${{v{hypothesis}}}\"\n"));
    doc
}

/// Lengths (saturating), depths and brokenness by plain recursion with memoisation.
fn model(vars: &[Vec<Piece>], hypothesis: usize) -> Expect {
    #[derive(Clone, Copy)]
    enum State {
        Todo,
        Busy,
        Done(u64, usize),
        Broken,
    }
    fn visit(vars: &[Vec<Piece>], index: usize, states: &mut [State]) -> State {
        match states[index] {
            State::Todo => {}
            State::Busy => return State::Broken,
            done => return done,
        }
        states[index] = State::Busy;
        let (mut len, mut depth, mut broken) = (0u64, 0usize, false);
        for piece in &vars[index] {
            match piece {
                Piece::Text(n) => len = len.saturating_add(*n as u64),
                Piece::Ref(None) => broken = true,
                Piece::Ref(Some(other)) => match visit(vars, *other, states) {
                    State::Done(l, d) => {
                        len = len.saturating_add(l);
                        depth = depth.max(d);
                    }
                    _ => broken = true,
                },
            }
        }
        states[index] = if broken { State::Broken } else { State::Done(len, depth + 1) };
        states[index]
    }
    let mut states = vec![State::Todo; vars.len()];
    let mut lengths = Vec::new();
    let (mut total, mut deepest) = (0u64, 0usize);
    for index in 0..vars.len() {
        match visit(vars, index, &mut states) {
            State::Done(len, depth) => {
                lengths.push(len);
                total = total.saturating_add(len);
                deepest = deepest.max(depth);
            }
            _ => return Expect::Broken,
        }
    }
    // The hypothesis is expanded too, after every variable.
    total = total.saturating_add(lengths[hypothesis]);
    if deepest > MAX_DEPTH {
        Expect::TooDeep
    } else if total > MAX_EXPANDED_BYTES as u64 {
        Expect::TooBig
    } else {
        Expect::Ok(lengths)
    }
}

#[test]
fn variable_expansion_matches_the_model_and_stays_bounded() {
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_7a25);
    let scale: usize = std::env::var("FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let no_env = |_: &str| None;
    for round in 0..ROUNDS * scale {
        let vars = random_vars(&mut rng);
        let hypothesis = rng.random_range(0..vars.len());
        let text = document(&vars, hypothesis);
        let expect = model(&vars, hypothesis);
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| parse_with_env("f.yaml", &text, &[], &no_env)))
            .unwrap_or_else(|_| panic!("seed {seed:#x} round {round} panicked"));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "seed {seed:#x} round {round} took {took:?}");
        let context = || format!("seed {seed:#x} round {round}, expected {expect:?}");
        match (&expect, result) {
            (Expect::Ok(lengths), Ok(exp)) => {
                *seen.entry("ok").or_default() += 1;
                for (index, len) in lengths.iter().enumerate() {
                    assert_eq!(exp.vars[&format!("v{index}")].len() as u64, *len, "{}", context());
                }
                assert_eq!(
                    exp.hypothesis.as_ref().map(|h| h.len() as u64),
                    Some(lengths[hypothesis]),
                    "{}",
                    context()
                );
            }
            (Expect::Ok(_), Err(d)) => panic!("{}: {d}", context()),
            (_, Ok(_)) => panic!("{}: parsed", context()),
            (expect, Err(diagnostics)) => {
                let lines = text.lines().count();
                for d in diagnostics.iter() {
                    assert!(d.line >= 1 && d.line <= lines && d.column >= 1, "{}: {d}", context());
                }
                let all = diagnostics.to_string();
                let (key, wanted) = match expect {
                    Expect::TooDeep => ("too deep", "variables nest more than"),
                    Expect::TooBig => ("too big", "variables expand to more than"),
                    _ => ("broken", ""),
                };
                *seen.entry(key).or_default() += 1;
                // A document both too deep and too big may stop at either limit first.
                let either =
                    all.contains("variables nest more than") || all.contains("variables expand to more than");
                assert!(
                    all.contains(wanted) || (*expect == Expect::TooDeep && either),
                    "{}: {}",
                    context(),
                    &all[..all.len().min(400)]
                );
            }
        }
    }
    // Every outcome occurs, so the generator explores each side of both limits.
    for key in ["ok", "too deep", "too big", "broken"] {
        assert!(seen.get(key).copied().unwrap_or(0) >= 10, "{key} seen too rarely: {seen:?}");
    }
}
