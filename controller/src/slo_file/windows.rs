//! Periods and alert windows: reading `30d`/`4w`/`6h`, writing Prometheus durations (`2d19h12m`), and the
//! multi-window multi-burn-rate table (reference/slo-math.md §2) recomputed for an SLO's period.
//!
//! # The default table
//! The SRE workbook's rows for a 30-day SLO: page when 2 % of the budget goes in 1 h (short window 5 m), page
//! when 5 % goes in 6 h (30 m), ticket when 10 % goes in 3 d (6 h); burn-rate thresholds 14.4, 6 and 1. For
//! another period the budget fractions are kept and every window is scaled by `period / 30d` (so a 7-day SLO
//! pages on 2 % in 14 m with a 70 s short window): the thresholds stay 14.4, 6 and 1 for every period, and
//! no row ever alerts on a burn rate below 1 (which keeping the 30-day windows would do for short periods:
//! 10 % of a 7-day budget in 3 days is a burn rate of 0.23). A 30-day SLO gets exactly the workbook's table.

use std::time::Duration;

use super::model::{BurnWindow, Severity};

/// The period the workbook's table was written for.
pub const WORKBOOK_PERIOD: Duration = Duration::from_secs(30 * DAY);

/// Shortest and longest periods accepted.
pub const MIN_PERIOD: Duration = Duration::from_secs(DAY);
pub const MAX_PERIOD: Duration = Duration::from_secs(400 * DAY);

const DAY: u64 = 86_400;

/// One row of the table: severity, budget fraction, long window, short window (for a 30-day period).
const WORKBOOK: [(Severity, f64, u64, u64); 3] = [
    (Severity::Page, 0.02, 3_600, 300),
    (Severity::Page, 0.05, 6 * 3_600, 1_800),
    (Severity::Ticket, 0.10, 3 * DAY, 6 * 3_600),
];

/// The default burn-rate windows for `period`: the workbook's rows scaled by `period / 30d`, each window
/// rounded to whole seconds.
pub fn default_windows(period: Duration) -> Vec<BurnWindow> {
    let scale = period.as_secs_f64() / WORKBOOK_PERIOD.as_secs_f64();
    WORKBOOK
        .iter()
        .map(|&(severity, spent, long, short)| {
            let long = Duration::from_secs_f64((long as f64 * scale).round().max(1.0));
            let short = Duration::from_secs_f64((short as f64 * scale).round().max(1.0));
            window(severity, spent, long, short, period)
        })
        .collect()
}

/// A row from its budget fraction: the burn rate is `spent × period / long`.
pub fn window(
    severity: Severity,
    spent: f64,
    long: Duration,
    short: Duration,
    period: Duration,
) -> BurnWindow {
    BurnWindow {
        severity,
        long,
        short,
        burn_rate: burn_rate_for(spent, period, long),
        budget_spent: spent,
        for_duration: None,
    }
}

/// A row from its burn rate: the budget fraction spent when it fires is `burn_rate × long / period`.
pub fn window_with_rate(
    severity: Severity,
    burn_rate: f64,
    long: Duration,
    short: Duration,
    period: Duration,
) -> BurnWindow {
    let spent = round12(burn_rate * long.as_secs_f64() / period.as_secs_f64());
    BurnWindow { severity, long, short, burn_rate, budget_spent: spent, for_duration: None }
}

/// `spent × period / long`, rounded to 12 decimals (14.4, not 14.399999999999999).
pub fn burn_rate_for(spent: f64, period: Duration, long: Duration) -> f64 {
    round12(spent * period.as_secs_f64() / long.as_secs_f64())
}

/// When an alert row first holds at a constant error ratio `error_ratio` that started from zero errors:
/// `burn_rate × budget / error_ratio × long` (slo-math §1), or `None` when that ratio never reaches the
/// threshold.
pub fn detection_time(row: &BurnWindow, budget: f64, error_ratio: f64) -> Option<Duration> {
    let threshold = row.burn_rate * budget;
    if error_ratio <= threshold || error_ratio <= 0.0 {
        return None;
    }
    let long = threshold / error_ratio * row.long.as_secs_f64();
    let short = threshold / error_ratio * row.short.as_secs_f64();
    Some(Duration::from_secs_f64(long.max(short)))
}

fn round12(x: f64) -> f64 {
    (x * 1e12).round() / 1e12
}

/// Reads a period: a whole number of days (`30d`), weeks (`4w`) or hours (`36h`), between one day and 400
/// days.
pub fn parse_period(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let unit_at = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(unit_at);
    let n: u64 =
        number.parse().map_err(|_| format!("expected a period like 30d, 28d, 4w or 7d, found {text:?}"))?;
    let seconds = match unit {
        "d" => n.checked_mul(DAY),
        "w" => n.checked_mul(7 * DAY),
        "h" => n.checked_mul(3_600),
        "M" | "mo" => {
            return Err(format!("write months as days ({n}M is ambiguous: 28 to 31 days): e.g. {}d", n * 30));
        }
        "" => return Err(format!("a period needs a unit: {n}d, {n}w or {n}h, found {text:?}")),
        other => return Err(format!("unknown period unit {other:?} in {text:?} (use d, w or h)")),
    }
    .ok_or_else(|| format!("period {text:?} is out of range"))?;
    let period = Duration::from_secs(seconds);
    if !(MIN_PERIOD..=MAX_PERIOD).contains(&period) {
        return Err(format!("period {text:?} must be between 1d and 400d"));
    }
    Ok(period)
}

/// Reads a Prometheus-style duration: one or more `<n><unit>` with units `w`, `d`, `h`, `m`, `s`, `ms`
/// (`1h30m`, `5m`, `70s`).
pub fn parse_prom_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("expected a duration like 5m, 1h or 1h30m, found {text:?}");
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t;
    let mut ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next() {
                Some('w') => (7 * DAY * 1000, 1),
                Some('d') => (DAY * 1000, 1),
                Some('h') => (3_600_000, 1),
                Some('m') => (60_000, 1),
                Some('s') => (1000, 1),
                _ => return Err(bad()),
            }
        };
        rest = &rest[len..];
        ms = n.checked_mul(unit_ms).and_then(|v| ms.checked_add(v)).ok_or_else(bad)?;
    }
    if ms == 0 {
        return Err(format!("duration {text:?} must be above zero"));
    }
    Ok(Duration::from_millis(ms))
}

/// A duration as Prometheus writes one, largest units first: `1h`, `5m`, `2d19h12m`, `1m10s`, `1500ms`.
/// Whole milliseconds (anything finer is dropped).
pub fn prom_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("d", DAY * 1000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// A period as people write one: `30d`, `4w` stays `28d`, `36h`.
pub fn period_text(period: Duration) -> String {
    let s = period.as_secs();
    if s.is_multiple_of(DAY) { format!("{}d", s / DAY) } else { prom_duration(period) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_30_day_period_gets_the_workbook_table() {
        let rows = default_windows(Duration::from_secs(30 * DAY));
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.severity, prom_duration(r.long), prom_duration(r.short), r.burn_rate))
            .collect();
        assert_eq!(
            got,
            vec![
                (Severity::Page, "1h".into(), "5m".into(), 14.4),
                (Severity::Page, "6h".into(), "30m".into(), 6.0),
                (Severity::Ticket, "3d".into(), "6h".into(), 1.0),
            ]
        );
    }

    #[test]
    fn other_periods_scale_the_windows_and_keep_the_rates() {
        let rows = default_windows(Duration::from_secs(7 * DAY));
        assert_eq!(prom_duration(rows[0].long), "14m");
        assert_eq!(prom_duration(rows[0].short), "1m10s");
        assert_eq!(prom_duration(rows[2].long), "16h48m");
        assert!(rows.iter().zip([14.4, 6.0, 1.0]).all(|(r, want)| (r.burn_rate - want).abs() < 1e-9));
        let rows = default_windows(Duration::from_secs(28 * DAY));
        assert_eq!(prom_duration(rows[0].long), "56m");
        assert_eq!(prom_duration(rows[2].long), "2d19h12m");
    }

    #[test]
    fn detection_time_matches_the_reference() {
        // slo-math §2: 5 % errors against 99.9 %: the 1 h/5 m page after 17.28 minutes.
        let row = &default_windows(WORKBOOK_PERIOD)[0];
        let t = detection_time(row, 0.001, 0.05).unwrap();
        assert!((t.as_secs_f64() - 17.28 * 60.0).abs() < 1e-6, "{t:?}");
        assert_eq!(detection_time(row, 0.001, 0.0144), None);
    }

    #[test]
    fn periods_and_durations_read_and_write() {
        assert_eq!(parse_period("30d"), Ok(Duration::from_secs(30 * DAY)));
        assert_eq!(parse_period("4w"), Ok(Duration::from_secs(28 * DAY)));
        assert!(parse_period("1M").unwrap_err().contains("write months as days"));
        assert!(parse_period("30").unwrap_err().contains("needs a unit"));
        assert!(parse_period("2h").unwrap_err().contains("between 1d and 400d"));
        assert_eq!(parse_prom_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_prom_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_prom_duration("5 m").is_err() && parse_prom_duration("m").is_err());
        assert_eq!(prom_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(period_text(Duration::from_secs(28 * DAY)), "28d");
    }
}
