//! `Size`: an amount of bytes, or a percentage of something measured when the fault is applied.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::AgentError;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

/// Units a size may carry, case-insensitively: decimal (`KB` = 1000) and binary (`KiB` = 1024).
const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KB", 1_000),
    ("KiB", KIB),
    ("MB", 1_000_000),
    ("MiB", MIB),
    ("GB", 1_000_000_000),
    ("GiB", GIB),
    ("TB", 1_000_000_000_000),
    ("TiB", TIB),
];

/// A size as written in a spec: `"512MiB"`, `"1.5GiB"`, `"100MB"`, `"4096"` (or the integer `4096`) are
/// bytes; `"10%"` is a percentage, in `(0, 100]`, of a total the fault measures when it resolves the size
/// (MemTotal for memory stress, the free space for a disk fill).
///
/// Serialises back to a string that parses to the same value (`"64MiB"`, `"10%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    Bytes(u64),
    Percent(f64),
}

// === impl Size ===

impl Size {
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Size {
        Size::Bytes(n * MIB)
    }

    /// `n` kibibytes.
    pub const fn kib(n: u64) -> Size {
        Size::Bytes(n * KIB)
    }

    /// Parses `"512MiB"`, `"1.5GiB"`, `"4096"`, `"10%"`, ... Zero and percentages outside `(0, 100]` are
    /// refused.
    pub fn parse(text: &str) -> Result<Size, AgentError> {
        let trimmed = text.trim();
        if let Some(number) = trimmed.strip_suffix('%') {
            let percent: f64 = number.trim().parse().map_err(|_| malformed(text))?;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(AgentError::invalid(
                    "size",
                    format!("expected a percentage above 0% and at most 100%, found {text:?}"),
                ));
            }
            return Ok(Size::Percent(percent));
        }
        let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let unit = unit.trim();
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .map(|(_, multiplier)| *multiplier)
                .ok_or_else(|| malformed(text))?
        };
        let bytes = scale(number, multiplier).ok_or_else(|| malformed(text))?;
        let bytes = u64::try_from(bytes).map_err(|_| {
            AgentError::invalid("size", format!("expected at most {} bytes, found {text:?}", u64::MAX))
        })?;
        if bytes == 0 {
            return Err(AgentError::invalid("size", format!("expected more than 0 bytes, found {text:?}")));
        }
        Ok(Size::Bytes(bytes))
    }

    /// The number of bytes: itself, or `percent` of `total` rounded down.
    pub fn of(&self, total: u64) -> u64 {
        match *self {
            Size::Bytes(bytes) => bytes,
            Size::Percent(percent) => (total as f64 * percent / 100.0).floor() as u64,
        }
    }

    /// The number of bytes, or `None` for a percentage.
    pub fn as_bytes(&self) -> Option<u64> {
        match *self {
            Size::Bytes(bytes) => Some(bytes),
            Size::Percent(_) => None,
        }
    }

    /// Refuses zero bytes and percentages outside `(0, 100]`, for sizes built in code rather than parsed.
    pub(crate) fn check(&self, what: &'static str) -> Result<(), AgentError> {
        match *self {
            Size::Bytes(0) => Err(AgentError::invalid(what, "expected more than 0 bytes, found 0")),
            Size::Percent(p) if !(p > 0.0 && p <= 100.0) => Err(AgentError::invalid(
                what,
                format!("expected a percentage above 0% and at most 100%, found {p}%"),
            )),
            _ => Ok(()),
        }
    }

    /// The number of bytes of a size that must not be a percentage (block and file sizes).
    pub(crate) fn bytes_only(&self, what: &'static str) -> Result<u64, AgentError> {
        self.check(what)?;
        self.as_bytes().ok_or_else(|| AgentError::invalid(what, format!("expected bytes, found {self}")))
    }
}

/// `number` (digits with at most one `.`) times `multiplier`, exactly, rounded down to whole bytes. A
/// fraction of a byte (`"1.5"`, `"1.5B"`) is refused.
fn scale(number: &str, multiplier: u64) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') || fraction.len() > 18 {
        return None;
    }
    if multiplier == 1 && !fraction.is_empty() {
        return None;
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut total = whole.checked_mul(u128::from(multiplier))?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        let denominator = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        total = total.checked_add(digits.checked_mul(u128::from(multiplier))? / denominator)?;
    }
    Some(total)
}

fn malformed(text: &str) -> AgentError {
    let units: Vec<&str> = UNITS.iter().map(|(name, _)| *name).collect();
    AgentError::invalid(
        "size",
        format!("{text:?}: expected a number with a unit ({}) or a percentage like 10%", units.join(", ")),
    )
}

/// `bytes` for people: `1.5GiB`, `512MiB`, `100B` (one decimal, binary units). Not for parsing back.
pub(crate) fn human(bytes: u64) -> String {
    for (name, unit) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if bytes >= unit {
            let value = bytes as f64 / unit as f64;
            let shown = format!("{value:.1}");
            return format!("{}{name}", shown.strip_suffix(".0").unwrap_or(&shown));
        }
    }
    format!("{bytes}B")
}

impl fmt::Display for Size {
    /// The exact value: the largest unit that divides it (binary before decimal), or bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Size::Percent(percent) => write!(f, "{percent}%"),
            Size::Bytes(0) => f.write_str("0B"),
            Size::Bytes(bytes) => {
                let (name, unit) = UNITS
                    .iter()
                    .rev()
                    .find(|(_, unit)| *unit > 1 && bytes % unit == 0)
                    .copied()
                    .unwrap_or(("B", 1));
                write!(f, "{}{name}", bytes / unit)
            }
        }
    }
}

impl FromStr for Size {
    type Err = AgentError;

    fn from_str(text: &str) -> Result<Size, AgentError> {
        Size::parse(text)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Size, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Accepts a string (`"64MiB"`, `"10%"`) or a non-negative integer of bytes.
struct SizeVisitor;

impl serde::de::Visitor<'_> for SizeVisitor {
    type Value = Size;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size like \"512MiB\", \"1.5GiB\", \"4096\" or \"10%\"")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Size, E> {
        Size::parse(text).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<Size, E> {
        Size::parse(&bytes.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<Size, E> {
        Size::parse(&bytes.to_string()).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_fractions_and_percentages() {
        let cases = [
            ("512MiB", Size::Bytes(512 * MIB)),
            ("1.5GiB", Size::Bytes(3 * GIB / 2)),
            ("100MB", Size::Bytes(100_000_000)),
            ("4096", Size::Bytes(4096)),
            (" 8 kib ", Size::Bytes(8 * KIB)),
            ("2TiB", Size::Bytes(2 * TIB)),
            ("1B", Size::Bytes(1)),
            ("0.5KB", Size::Bytes(500)),
            ("10%", Size::Percent(10.0)),
            ("0.5%", Size::Percent(0.5)),
            ("100%", Size::Percent(100.0)),
        ];
        for (text, expected) in cases {
            assert_eq!(Size::parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        for text in ["12XB", "", "MiB", "1.2.3GiB", "-5MiB", "1.5", "1.5B", "ten%", "5 MiBs"] {
            let err = Size::parse(text).unwrap_err().to_string();
            assert!(err.contains("expected a number with a unit (B, KB, KiB"), "{text}: {err}");
        }
        let err = Size::parse("12XB").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid size: \"12XB\": expected a number with a unit (B, KB, KiB, MB, MiB, GB, GiB, TB, \
             TiB) or a percentage like 10%"
        );
        for text in ["0", "0MiB", "0.0GiB"] {
            let err = Size::parse(text).unwrap_err().to_string();
            assert!(err.contains("expected more than 0 bytes"), "{text}: {err}");
        }
        for text in ["0%", "150%", "-1%", "NaN%"] {
            let err = Size::parse(text).unwrap_err().to_string();
            assert!(err.contains("expected a percentage above 0% and at most 100%"), "{text}: {err}");
        }
        assert!(Size::parse("99999999TiB").unwrap_err().to_string().contains("expected at most"));
    }

    #[test]
    fn prints_exactly_and_round_trips_through_serde() {
        for (size, shown) in [
            (Size::Bytes(64 * MIB), "64MiB"),
            (Size::Bytes(100_000_000), "100MB"),
            (Size::Bytes(1536 * MIB), "1536MiB"),
            (Size::Bytes(4095), "4095B"),
            (Size::Percent(12.5), "12.5%"),
        ] {
            assert_eq!(size.to_string(), shown);
            let json = serde_json::to_string(&size).unwrap();
            assert_eq!(serde_json::from_str::<Size>(&json).unwrap(), size);
        }
        assert_eq!(serde_json::from_str::<Size>("4096").unwrap(), Size::Bytes(4096));
        let err = serde_json::from_str::<Size>("\"12XB\"").unwrap_err().to_string();
        assert!(err.contains("expected a number with a unit"), "{err}");
        assert!(serde_json::from_str::<Size>("-1").is_err());
        assert_eq!(human(3 * GIB / 2), "1.5GiB");
        assert_eq!(human(512 * MIB), "512MiB");
        assert_eq!(human(100), "100B");
    }

    #[test]
    fn percentages_resolve_against_a_total() {
        assert_eq!(Size::Percent(10.0).of(1000), 100);
        assert_eq!(Size::Percent(1.0).of(150), 1);
        assert_eq!(Size::Bytes(7).of(1000), 7);
    }
}
