//! The checked value types of the experiment format ([`Duration`], [`Percent`], [`Ceiling`], [`Rate`], [`Count`]):
//! they refuse bad values while parsing, so errors carry a position, and describe themselves to the JSON Schema.
//! A leaf: the fault layer reads durations and percentages with them without importing the model.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written `250ms`, `30s`, `5m`, `1h` (or a bare number of seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

/// A percentage written `99.5%` (or a fraction `0.995`), kept as a fraction in 0..=1.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

/// A saturation ceiling written `90%` or `150%` (or a fraction up to 1, `0.9`), kept as a fraction ≥ 0.
/// Unlike a [`Percent`] it may exceed 100%, which `host: load` can reach; above 100% it must be written with
/// `%`, so a bare `90` (meant as 90%) is refused rather than read as 9000%.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Ceiling(pub f64);

/// A number of targets or a percentage of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Count {
    Exactly(u32),
    Percent(Percent),
}

/// A rate written `50/s`, `600/m` or `2/ms`, kept as events per second.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Rate(pub f64);

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let value: f64 =
            number.parse().map_err(|_| format!("expected a duration like 250ms, 30s or 5m, found {s:?}"))?;
        let seconds = match unit.trim() {
            // A bare number is seconds to one reader and milliseconds to another (Toxiproxy's attributes are
            // milliseconds): only zero may go without a unit.
            "" if value == 0.0 => 0.0,
            "" => {
                return Err(format!(
                    "a duration needs a unit: write {number}ms or {number}s (ms, s, m or h), found {s:?}"
                ));
            }
            "s" => value,
            "ms" => value / 1000.0,
            "us" | "µs" => value / 1e6,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            other => return Err(format!("unknown duration unit {other:?} in {s:?} (use ms, s, m or h)")),
        };
        if !seconds.is_finite() || !(0.0..=366.0 * 86400.0).contains(&seconds) {
            return Err(format!("duration {s:?} is out of range"));
        }
        Ok(Duration(std::time::Duration::from_secs_f64(seconds)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1000.0;
        if ms < 1000.0 || ms.fract() != 0.0 && ms < 10_000.0 {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000.0)
        }
    }
}

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let fraction = match t.strip_suffix('%') {
            // Shifting the decimal point in the text keeps `99.9%` exactly the double nearest 0.999.
            Some(p) => match shift_decimal(p.trim(), -2) {
                Some(shifted) => shifted.parse::<f64>(),
                None => p.trim().parse::<f64>().map(|v| v / 100.0),
            },
            None => t.parse::<f64>(),
        }
        .map_err(|_| format!("expected a percentage like 99.5%, found {s:?}"))?;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(format!("percentage {s:?} is outside 0%..100%"));
        }
        Ok(Percent(fraction))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_percent(f, self.0)
    }
}

impl FromStr for Ceiling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let Some(p) = t.strip_suffix('%') else {
            // A bare fraction, as for a `Percent`: at most 1.
            return t.parse::<Percent>().map(|p| Ceiling(p.0)).map_err(|_| {
                format!("expected a percentage like 90% (above 100% only with the % sign), found {s:?}")
            });
        };
        let fraction = match shift_decimal(p.trim(), -2) {
            Some(shifted) => shifted.parse::<f64>(),
            None => p.trim().parse::<f64>().map(|v| v / 100.0),
        }
        .map_err(|_| format!("expected a percentage like 90%, found {s:?}"))?;
        if !fraction.is_finite() || fraction < 0.0 {
            return Err(format!("percentage {s:?} must be 0% or more"));
        }
        Ok(Ceiling(fraction))
    }
}

impl fmt::Display for Ceiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_percent(f, self.0)
    }
}

/// `fraction` as a percentage, by shifting the fraction's shortest text, so that the text reads back as the
/// same value.
fn write_percent(f: &mut fmt::Formatter<'_>, fraction: f64) -> fmt::Result {
    let fraction = fraction.to_string();
    match shift_decimal(&fraction, 2) {
        Some(percent) => write!(f, "{percent}%"),
        None => write!(f, "{fraction}"),
    }
}

/// Moves the decimal point of a plain decimal (`99.5`) by `places` (positive: right), in the text.
/// `None` for anything but digits with at most one point.
fn shift_decimal(s: &str, places: i32) -> Option<String> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let point = i32::try_from(int.len()).ok()? + places;
    let len = i32::try_from(digits.len()).ok()?;
    let (int, frac) = if point <= 0 {
        ("0".to_string(), format!("{}{digits}", "0".repeat(usize::try_from(-point).ok()?)))
    } else if point >= len {
        (format!("{digits}{}", "0".repeat(usize::try_from(point - len).ok()?)), String::new())
    } else {
        let at = usize::try_from(point).ok()?;
        (digits[..at].to_string(), digits[at..].to_string())
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    Some(if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") })
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (n, unit) = t.split_once('/').ok_or_else(|| format!("expected a rate like 50/s, found {s:?}"))?;
        let n: f64 = n.trim().parse().map_err(|_| format!("expected a rate like 50/s, found {s:?}"))?;
        let per_second = match unit.trim() {
            "s" => n,
            "m" => n / 60.0,
            "ms" => n * 1000.0,
            other => return Err(format!("unknown rate unit {other:?} in {s:?} (use /s, /m or /ms)")),
        };
        if !per_second.is_finite() || per_second <= 0.0 || per_second > 1_000_000.0 {
            return Err(format!("rate {s:?} must be above 0 and at most 1000000/s"));
        }
        Ok(Rate(per_second))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

/// Serde for the checked types: strings (or numbers) in, the canonical string out.
macro_rules! serde_via_str {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = StrOrNumber::deserialize(d)?;
                raw.0.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}
serde_via_str!(Duration);
serde_via_str!(Percent);
serde_via_str!(Ceiling);
serde_via_str!(Rate);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = StrOrNumber::deserialize(d)?.0;
        if raw.trim().ends_with('%') {
            return raw.parse().map(Count::Percent).map_err(serde::de::Error::custom);
        }
        raw.trim()
            .parse()
            .map(Count::Exactly)
            .map_err(|_| serde::de::Error::custom(format!("expected a count like 2 or 50%, found {raw:?}")))
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Exactly(n) => s.serialize_u32(*n),
            Count::Percent(p) => s.collect_str(p),
        }
    }
}

/// Accepts `30s` or `30` alike.
struct StrOrNumber(String);

impl<'de> Deserialize<'de> for StrOrNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StrOrNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// === JSON Schema of the checked values ===

/// The patterns the checked values are written in (the parsers are the authority; these serve editors).
/// Each also accepts a string holding a `${variable}`, checked once substituted.
pub mod patterns {
    pub const DURATION: &str = r"^\s*([0-9]+(\.[0-9]*)?\s*(us|µs|ms|s|m|h)|0+(\.0*)?)\s*$|\$\{[^}]+\}";
    pub const PERCENT: &str = r"^\s*([0-9]+(\.[0-9]*)?\s*%|0(\.[0-9]*)?|1(\.0*)?)\s*$|\$\{[^}]+\}";
    pub const RATE: &str = r"^\s*[0-9]+(\.[0-9]*)?\s*/\s*(s|m|ms)\s*$|\$\{[^}]+\}";
    pub const COUNT: &str = r"^\s*([0-9]+|[0-9]+(\.[0-9]*)?\s*%)\s*$|\$\{[^}]+\}";
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number with a unit (us, ms, s, m, h); only 0 may go without one.",
            "type": ["string", "integer"],
            "pattern": patterns::DURATION,
            "minimum": 0,
            "maximum": 0,
            "examples": ["250ms", "30s", "5m", "1h"],
        })
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A percentage (`99.5%`) or a fraction from 0 to 1 (`0.995`).",
            "type": ["string", "number"],
            "pattern": patterns::PERCENT,
            "minimum": 0,
            "maximum": 1,
            "examples": ["99.5%", "50%", 0.995],
        })
    }
}

impl JsonSchema for Ceiling {
    fn schema_name() -> Cow<'static, str> {
        "Ceiling".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A saturation ceiling: a percentage (also above 100%) or a fraction up to 1.",
            "type": ["string", "number"],
            "pattern": patterns::PERCENT,
            "minimum": 0,
            "maximum": 1,
            "examples": ["90%", "150%", 0.9],
        })
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Events per unit of time: per second (`/s`), minute (`/m`) or millisecond (`/ms`).",
            "type": "string",
            "pattern": patterns::RATE,
            "examples": ["50/s", "600/m"],
        })
    }
}

impl JsonSchema for Count {
    fn schema_name() -> Cow<'static, str> {
        "Count".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of matched processes (`2`) or a percentage of them (`50%`).",
            "type": ["integer", "string"],
            "minimum": 1,
            "pattern": patterns::COUNT,
            "examples": [1, "50%"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ceiling_may_exceed_100_percent_when_written_as_a_percentage() {
        assert_eq!("90%".parse(), Ok(Ceiling(0.9)));
        assert_eq!("150%".parse(), Ok(Ceiling(1.5)));
        assert_eq!(" 10000 % ".parse(), Ok(Ceiling(100.0)));
        assert_eq!("0.9".parse(), Ok(Ceiling(0.9)));
        assert_eq!("1".parse(), Ok(Ceiling(1.0)));
        for text in ["90%", "150%", "12.5%", "0.390625%", "10000%"] {
            assert_eq!(text.parse::<Ceiling>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn a_bare_number_above_one_or_a_negative_ceiling_is_refused() {
        assert_eq!(
            "90".parse::<Ceiling>(),
            Err("expected a percentage like 90% (above 100% only with the % sign), found \"90\"".into())
        );
        assert_eq!("-5%".parse::<Ceiling>(), Err("percentage \"-5%\" must be 0% or more".into()));
        for bad in ["inf%", "NaN%", "%", "ninety%", "soon"] {
            assert!(bad.parse::<Ceiling>().is_err(), "{bad}");
        }
    }
}
