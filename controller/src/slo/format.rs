//! Numbers in words for reasons and reports: `3,012`, `97.8%`, `800 ms`, `12.5/s`; and the per-SLO lines
//! `chaos run` prints under its verdict.

use std::time::Duration;

use super::stats::{TOLERANCE, micros};

/// An integer with thousands separators: `3012` → `3,012`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A fraction as a percentage with at most `max_decimals` decimals, trailing zeros trimmed: `0.978` → `97.8%`,
/// `0.99` → `99%`. Rounded to nearest.
pub fn percent(fraction: f64, max_decimals: usize) -> String {
    if !fraction.is_finite() {
        return format!("{fraction}");
    }
    format!("{}%", trim_zeros(&format!("{:.*}", max_decimals, fraction * 100.0)))
}

/// `good / total` as a percentage rounded *down* (exactly, in integers), so a ratio below an objective never
/// prints as reaching it: 2,999 of 3,000 is `99.9%`, not `100%`. Uses as many decimals as the objective is
/// written with (at least one), more (up to 4) when needed for the printed value to fall on the same side of
/// the printed objective as the real one.
pub fn ratio_percent(good: u64, total: u64, objective: f64) -> String {
    if total == 0 {
        return "0%".to_string();
    }
    let meets = good as f64 / total as f64 >= objective - TOLERANCE;
    // As many decimals as the objective is written with (99.95% → 2), at least one.
    let written = (1..=4u32).find(|d| {
        let scaled = objective * 10f64.powi(*d as i32 + 2);
        (scaled - scaled.round()).abs() < 1e-6
    });
    let mut shown = String::new();
    for decimals in written.unwrap_or(4).max(1)..=4 {
        let scale = 10u128.pow(decimals + 2);
        let floored = u128::from(good) * scale / u128::from(total);
        let value = floored as f64 / scale as f64;
        shown = trim_zeros(&format!("{:.*}", decimals as usize, value * 100.0));
        let objective_shown = (objective * scale as f64).round() / scale as f64;
        if (value >= objective_shown - 1e-12) == meets {
            break;
        }
    }
    format!("{shown}%")
}

/// The objective the way people write it: `0.995` → `99.5%`, `0.9999` → `99.99%`.
pub fn objective(fraction: f64) -> String {
    percent(fraction, 4)
}

/// A duration the way people write it: `800 ms`, `250 µs`, `1.5 s`, `2 min`, `0 s`.
pub fn duration(d: Duration) -> String {
    let us = micros(d);
    if us == 0 {
        "0 s".to_string()
    } else if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{} ms", trim_zeros(&format!("{:.3}", us as f64 / 1e3)))
    } else if us < 60_000_000 || !us.is_multiple_of(60_000_000) {
        format!("{} s", trim_zeros(&format!("{:.3}", us as f64 / 1e6)))
    } else {
        format!("{} min", us / 60_000_000)
    }
}

/// A rate with one decimal: `12.5/s`.
pub fn rate(per_second: f64) -> String {
    format!("{per_second:.1}/s")
}

/// The lines `chaos run` prints under its verdict, one per SLO judged (`  slo ok: REASON`, `slo FAILED`,
/// `slo inconclusive`), each followed by `    time to recover: 4.37 s` when it was measured for that SLO
/// (`recovery`: per SLO name, as in the journal).
pub fn verdict_lines(slos: &[super::SloResult], recovery: &[(String, Option<Duration>)]) -> Vec<String> {
    let mut lines = Vec::new();
    for slo in slos {
        let mark = match slo.passed {
            Some(true) => "ok",
            Some(false) => "FAILED",
            None => "inconclusive",
        };
        lines.push(format!("  slo {mark}: {}", slo.reason));
        if let Some(ttr) = recovery.iter().find(|(name, _)| *name == slo.name).and_then(|(_, ttr)| *ttr) {
            lines.push(format!("    time to recover: {}", duration(ttr)));
        }
    }
    lines
}

/// `"97.800"` → `"97.8"`, `"99.00"` → `"99"`.
fn trim_zeros(s: &str) -> String {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s.to_string() }
}
