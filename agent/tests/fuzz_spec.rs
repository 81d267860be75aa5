//! Seeded fuzzing of the agent's parsers: fault specs (`FaultSpec::parse`, what `chaos agent inject` and the
//! engine read) and policy files (`AgentPolicy::load`). Runs in the normal `cargo test` suite.
//!
//! The rule under test: bad input gets an error that says what was wrong (and, for files, where), never a panic,
//! and nothing on the host changes (parsing and `validate` are pure: no file, process or rule is touched; the
//! test checks that the scratch directory the specs point at stays empty). Input that parses round-trips:
//! written back as JSON, it parses to the same spec. Violations are collected and reported together with the
//! seed and case that produced them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use chaos_agent::policy::AgentPolicy;
use chaos_agent::spec::FaultSpec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x5eed_a9e7_0f00_d5ec;
/// Mutated documents per corpus entry.
const CASES_PER_DOCUMENT: usize = 300;

/// Valid specs of every kind; `SCRATCH` is replaced by an empty directory the test watches.
const SPECS: [&str; 10] = [
    "kind: process-kill\ntarget: { name: no-such-process-name }\ncount: 1\nsignal: TERM\n",
    "kind: process-pause\ntarget: { cmdline: \"^no such$\", user: root }\ncount: \"50%\"\n",
    "kind: cpu-stress\nworkers: 2\nload: 80\n",
    "kind: memory-stress\nsize: 512MiB\n",
    "kind: disk-fill\npath: SCRATCH\nsize: 10%\n",
    "kind: io-stress\npath: SCRATCH\nworkers: 2\nblock_size: 64KiB\nfile_size: 64MiB\n",
    "kind: network-partition\nfilter: { direction: egress, hosts: [10.0.0.5, \"10.1.0.0/16\"], ports: [5432], protocol: tcp }\n",
    "kind: network-loss\npercent: 30\nfilter: { hosts: [10.0.0.0/24], protocol: udp, ports: [53] }\n",
    "kind: network-bandwidth\ndevice: eth0\nrate: 1mbit\nburst_bytes: 32768\nlatency_ms: 100\n",
    "kind: network-latency\ndevice: eth0\ndelay_ms: 100\njitter_ms: 10\ncorrelation: 25\n",
];

const POLICY: &str = concat!(
    "allowed_faults: [process-pause, cpu-stress, network-partition]\n",
    "max_duration: 30m\n",
    "processes:\n",
    "  protected_names: [sshd, postgres]\n",
    "  deny_cmdlines: ['--prod']\n",
    "  max_count: 5\n",
    "stress:\n",
    "  max_cpu_workers: 8\n",
    "  max_cpu_load: 90\n",
    "  max_memory: 50%\n",
    "  max_disk_fill: 10GiB\n",
    "  fill_paths: [/tmp, /var/tmp]\n",
    "  max_io_workers: 4\n",
);

/// Characters mutations insert: YAML structure, digits, units, signs, and a few multi-byte ones.
const ALPHABET: &[&str] = &[
    ":",
    "{",
    "}",
    "[",
    "]",
    "-",
    ",",
    "%",
    "\"",
    "'",
    "\n",
    " ",
    "0",
    "1",
    "9",
    "99999999999999999999",
    ".",
    "e",
    "x",
    "MiB",
    "GiB",
    "%%",
    "-1",
    "/",
    "#",
    "&a",
    "*a",
    "!!int",
    "é",
    "\u{0}",
    "kind: ",
    "\t",
    "~",
];

#[derive(Default)]
struct Violations {
    by_kind: BTreeMap<&'static str, (usize, Vec<String>)>,
}

impl Violations {
    fn add(&mut self, kind: &'static str, example: String) {
        let entry = self.by_kind.entry(kind).or_default();
        entry.0 += 1;
        if entry.1.len() < 3 {
            entry.1.push(example);
        }
    }

    fn assert_none(self) {
        if self.by_kind.is_empty() {
            return;
        }
        let mut report = String::new();
        for (kind, (count, examples)) in &self.by_kind {
            report.push_str(&format!("{kind}: {count} cases, e.g.\n"));
            for e in examples {
                report.push_str(&format!("  {e}\n"));
            }
        }
        panic!("{report}");
    }
}

fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=chars.len());
        match rng.random_range(0..4) {
            0 if !chars.is_empty() => {
                let end = (at + rng.random_range(1..=6)).min(chars.len());
                let start = at.min(end);
                chars.drain(start..end);
            }
            1 => {
                let piece = ALPHABET[rng.random_range(0..ALPHABET.len())];
                for (i, c) in piece.chars().enumerate() {
                    chars.insert((at + i).min(chars.len()), c);
                }
            }
            2 if !chars.is_empty() => {
                // Duplicate a slice somewhere else (repeated keys, nested structure).
                let end = (at + rng.random_range(1..=12)).min(chars.len());
                let slice: Vec<char> = chars[at.min(end)..end].to_vec();
                let to = rng.random_range(0..=chars.len());
                for (i, c) in slice.into_iter().enumerate() {
                    chars.insert((to + i).min(chars.len()), c);
                }
            }
            _ => {
                // Replace a digit run with an extreme number.
                if let Some(pos) = chars.iter().position(|c| c.is_ascii_digit()) {
                    let extreme = ["0", "-5", "101", "4294967296", "1e309", "0.001"][rng.random_range(0..6)];
                    chars.splice(pos..pos + 1, extreme.chars());
                }
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn fault_specs_never_panic_and_what_parses_round_trips() {
    let scratch = std::env::temp_dir().join(format!("chaos-fuzz-spec-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let scratch_text = scratch.display().to_string();
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut violations = Violations::default();
    let (mut parsed, mut refused) = (0, 0);
    for (doc, template) in SPECS.iter().enumerate() {
        let base = template.replace("SCRATCH", &scratch_text);
        FaultSpec::parse(&base).unwrap_or_else(|e| panic!("corpus entry {doc} does not parse: {e}"));
        for case in 0..CASES_PER_DOCUMENT {
            let text = mutate(&mut rng, &base);
            let tag = format!("seed {SEED:#x} doc {doc} case {case}: {text:?}");
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                FaultSpec::parse(&text).map(|spec| {
                    let valid = spec.validate().map_err(|e| e.to_string());
                    (spec, valid)
                })
            }));
            match outcome {
                Err(_) => violations.add("panic", tag),
                Ok(Err(e)) => {
                    refused += 1;
                    if e.to_string().trim().is_empty() {
                        violations.add("empty error", tag);
                    }
                }
                Ok(Ok((spec, valid))) => {
                    parsed += 1;
                    if let Err(e) = &valid
                        && e.trim().is_empty()
                    {
                        violations.add("empty validation error", tag.clone());
                    }
                    let json = serde_json::to_string(&spec).unwrap();
                    match FaultSpec::parse(&json) {
                        Ok(again) if again == spec => {}
                        Ok(again) => violations.add("round trip changed", format!("{tag} -> {again:?}")),
                        Err(e) => violations.add("round trip refused", format!("{tag} -> {json}: {e}")),
                    }
                }
            }
        }
    }
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().flatten().map(|e| e.file_name()).collect();
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(left.is_empty(), "parsing or validating created files: {left:?}");
    // Both outcomes must be exercised, or the mutations are too weak (or too strong) to test anything.
    assert!(parsed > 100 && refused > 100, "parsed {parsed}, refused {refused}");
    violations.assert_none();
}

#[test]
fn policy_files_never_panic_and_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("chaos-fuzz-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.yaml");
    std::fs::write(&path, POLICY).unwrap();
    AgentPolicy::load(&path).unwrap();
    let mut rng = StdRng::seed_from_u64(SEED ^ 1);
    let mut violations = Violations::default();
    let (mut loaded, mut refused) = (0, 0);
    for case in 0..CASES_PER_DOCUMENT * 4 {
        let text = mutate(&mut rng, POLICY);
        std::fs::write(&path, &text).unwrap();
        let tag = format!("seed {:#x} case {case}: {text:?}", SEED ^ 1);
        match catch_unwind(AssertUnwindSafe(|| AgentPolicy::load(&path).map(|p| p.validate().map(|()| p)))) {
            Err(_) => violations.add("panic", tag),
            Ok(Err(e)) => {
                refused += 1;
                if !e.to_string().contains(&path.display().to_string()) {
                    violations.add("error without the file name", format!("{tag} -> {e}"));
                }
            }
            Ok(Ok(Err(e))) => violations.add("loaded, then invalid", format!("{tag} -> {e}")),
            Ok(Ok(Ok(_))) => loaded += 1,
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(loaded > 50 && refused > 50, "loaded {loaded}, refused {refused}");
    violations.assert_none();
}
