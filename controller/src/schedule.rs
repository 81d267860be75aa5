//! When a scheduled game day fires: a cron expression read in an IANA time zone, narrowed by allowed windows and
//! blackout dates. Pure computation on instants handed in by the caller; nothing here reads the clock or sleeps.
//!
//! # Cron expression
//!
//! Five fields `minute hour day-of-month month day-of-week`, or six with a seconds field first
//! (`*/10 * * * * *`). Fields take `*`, numbers, ranges `1-5`, lists `1,15`, steps `*/5`, month names `JAN`-`DEC`
//! and day names `SUN`-`SAT`; day-of-month also takes `L` (last day) and `15W` (nearest weekday), day-of-week
//! `5L` (last Friday) and `1#2` (second Monday). When both day fields are restricted, a day matching either one
//! fires, as in classic cron. The nicknames `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily` and `@hourly`
//! stand for whole expressions. The syntax is that of the `croner` crate, which parses it.
//!
//! # Time zone
//!
//! An IANA name such as `Europe/Paris`; an empty string means UTC. Cron fields, windows and blackout dates are
//! all read on the wall clock of this zone. Across daylight saving changes:
//! - a wall time that a spring-forward skips does not exist, so nothing fires at it that day (a daily `30 2 * * *`
//!   in `Europe/Paris` does not fire on the day the clocks go from 02:00 to 03:00);
//! - a wall time that a fall-back repeats fires once, at its first occurrence.
//!
//! # Allowed windows
//!
//! Each window is written `[DAYS ]HH:MM-HH:MM`:
//! - `DAYS` is a day (`Mon`), a range (`Mon-Fri`; a range may wrap round the week, `Fri-Mon` is Friday, Saturday,
//!   Sunday and Monday) or a comma list of days and ranges (`Mon,Wed,Fri-Sat`). Days are `Mon`, `Tue`, `Wed`,
//!   `Thu`, `Fri`, `Sat` and `Sun`, in any letter case. Without `DAYS` the window applies every day.
//! - The start is included and the end is not: `09:00-17:00` allows 16:59:59 but not 17:00.
//! - An end earlier than the start crosses midnight, and the day names the day the window starts:
//!   `Fri 22:00-02:00` allows Friday 22:00 until Saturday 02:00.
//! - `00:00-24:00` is the whole day; `24:00` is accepted only as an end. A start equal to its end is refused.
//!
//! With no windows every time is allowed; with several, a time inside any one of them is allowed.
//!
//! # Blackout dates
//!
//! `YYYY-MM-DD` dates on which nothing fires, whatever the windows say. The whole calendar day in the schedule's
//! time zone is blacked out (in `Asia/Tokyo`, `2026-01-15` runs from 2026-01-14 15:00 to 2026-01-15 15:00 UTC).
//!
//! # Search limits
//!
//! [`Timing::next_after`] looks at most [`HORIZON_DAYS`] ahead and examines at most [`MAX_OCCURRENCES_EXAMINED`]
//! cron occurrences. It walks cron occurrences, never seconds, and when an occurrence is refused it resumes at the
//! next window opening or the end of the blackout, so even a cron that fires every second costs a few steps per
//! refused stretch.

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone,
};
use chrono::{Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

/// How far [`Timing::next_after`] looks ahead, in days.
pub const HORIZON_DAYS: u64 = 366;

/// How many cron occurrences [`Timing::next_after`] examines at most before giving up, so that a schedule whose
/// occurrences keep being refused cannot keep the caller busy for long.
pub const MAX_OCCURRENCES_EXAMINED: usize = 100_000;

const SECONDS_PER_DAY: u32 = 24 * 60 * 60;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

const NICKNAMES: [&str; 6] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"];

/// A checked schedule: when it fires.
#[derive(Clone, Debug)]
pub struct Timing {
    /// The compiled cron expression; its fields are matched against the wall clock of `zone`.
    cron: Cron,
    /// The zone whose wall clock the cron fields, windows and blackout dates are read on.
    zone: Tz,
    /// Where firings are allowed; empty means everywhere.
    windows: Vec<Window>,
    /// Local calendar dates on which nothing fires.
    blackout_dates: BTreeSet<NaiveDate>,
}

// === impl Timing ===

impl Timing {
    /// Checks and compiles a schedule. Every error names the field and the offending text and says why it was
    /// refused, e.g. `timezone "Mars/Base": not an IANA time zone name`.
    pub fn parse(
        cron: &str,
        timezone: &str,
        windows: &[String],
        blackout_dates: &[String],
    ) -> Result<Timing, String> {
        let cron = parse_cron(cron).map_err(|why| format!("cron {cron:?}: {why}"))?;
        let zone = if timezone.is_empty() {
            Tz::UTC
        } else {
            timezone
                .parse::<Tz>()
                .map_err(|_| format!("timezone {timezone:?}: not an IANA time zone name"))?
        };
        let windows = windows
            .iter()
            .map(|text| Window::parse(text).map_err(|why| format!("window {text:?}: {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        let blackout_dates = blackout_dates
            .iter()
            .map(|text| parse_date(text).map_err(|why| format!("blackout date {text:?}: {why}")))
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Timing { cron, zone, windows, blackout_dates })
    }

    /// The first firing strictly after `after` that falls inside an allowed window (if any windows are given) and
    /// not on a blackout date (dates are read in the schedule's time zone). `None` when there is none within the
    /// next [`HORIZON_DAYS`] days (e.g. a cron that only fires on blackout dates, or on February 30), or when
    /// [`MAX_OCCURRENCES_EXAMINED`] occurrences were refused before one was allowed.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let horizon = after.checked_add_days(Days::new(HORIZON_DAYS))?;
        let mut cursor = after.with_timezone(&self.zone);
        for _ in 0..MAX_OCCURRENCES_EXAMINED {
            // croner gives up (an error) on patterns that never match, such as February 30.
            let occurrence = self.cron.find_next_occurrence(&cursor, false).ok()?;
            let instant = occurrence.with_timezone(&Utc);
            if instant > horizon {
                return None;
            }
            if !self.fires_at(&occurrence) {
                cursor = occurrence;
                continue;
            }
            let wall = occurrence.naive_local();
            if self.allows_wall(wall) {
                return Some(instant);
            }
            // Every instant between this occurrence and the next opening is refused, so the search may jump
            // there; it never jumps backwards, which keeps it moving through a repeated fall-back hour.
            let resume = self.next_opening(wall).and_then(|opening| self.just_before(opening));
            cursor = match resume {
                Some(resume) if resume > occurrence => resume,
                _ => occurrence,
            };
        }
        None
    }

    /// Whether `at` is inside the allowed windows and not on a blackout date (a firing computed earlier may be
    /// re-checked right before it runs). The cron expression itself is not consulted.
    pub fn allows(&self, at: DateTime<Utc>) -> bool {
        self.allows_wall(at.with_timezone(&self.zone).naive_local())
    }

    /// Whether a wall clock time of the schedule's zone is outside the blackout dates and inside a window.
    fn allows_wall(&self, wall: NaiveDateTime) -> bool {
        !self.blackout_dates.contains(&wall.date())
            && (self.windows.is_empty() || self.windows.iter().any(|window| window.contains(wall)))
    }

    /// Whether a cron occurrence found by croner is a firing of this schedule. croner moves a fixed-time firing
    /// that falls into a spring-forward gap to the first instant after the gap, and fires interval patterns on
    /// both passes of a repeated fall-back hour. This schedule drops the moved firing, and fires a repeated wall
    /// time on its first pass only.
    fn fires_at(&self, occurrence: &DateTime<Tz>) -> bool {
        // A firing moved out of a gap carries a wall time the pattern does not match.
        if !self.cron.is_time_matching(occurrence).unwrap_or(false) {
            return false;
        }
        match self.zone.from_local_datetime(&occurrence.naive_local()) {
            LocalResult::Ambiguous(first, _) => first == *occurrence,
            LocalResult::Single(_) | LocalResult::None => true,
        }
    }

    /// The earliest wall time after `wall` at which a refused `wall` may give way to an allowed one: the midnight
    /// that ends a run of blackout dates, or else the nearest window opening. `None` only at the end of the
    /// calendar.
    fn next_opening(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut date = wall.date();
        if self.blackout_dates.contains(&date) {
            while self.blackout_dates.contains(&date) {
                date = date.succ_opt()?;
            }
            return Some(date.and_time(NaiveTime::MIN));
        }
        self.windows.iter().filter_map(|window| window.next_opening(wall)).min()
    }

    /// An instant one second before the first instant whose wall time is `wall` or later, in the stretch of time
    /// around `wall`. When `wall` falls into a spring-forward gap it is the last instant before the gap.
    fn just_before(&self, wall: NaiveDateTime) -> Option<DateTime<Tz>> {
        match self.zone.from_local_datetime(&wall) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => {
                at.checked_sub_signed(TimeDelta::seconds(1))
            }
            LocalResult::None => {
                // Gaps last an hour or so, but a zone has skipped a whole day (Pacific/Apia, 2011-12-30); two
                // days of quarter-hour steps covers every gap in the database.
                let mut earlier = wall;
                for _ in 0..(2 * 24 * 4) {
                    earlier = earlier.checked_sub_signed(TimeDelta::minutes(15))?;
                    match self.zone.from_local_datetime(&earlier) {
                        LocalResult::Single(at) | LocalResult::Ambiguous(_, at) => return Some(at),
                        LocalResult::None => {}
                    }
                }
                None
            }
        }
    }
}

/// Parses a cron expression with croner, turning its errors into messages that say which field is wrong.
fn parse_cron(text: &str) -> Result<Cron, String> {
    let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
    let trimmed = text.trim();
    if trimmed.starts_with('@') {
        return parser
            .parse(trimmed)
            .map_err(|_| format!("unknown nickname (expected {})", NICKNAMES.join(", ")));
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    let names = field_names(fields.len()).ok_or_else(|| {
        format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, \
             or a nickname such as @hourly; found {} fields",
            fields.len()
        )
    })?;
    // croner accepts `,5` or `1,,5` but then matches nothing (its search runs on and on): refuse them here.
    if let Some(i) = fields.iter().position(|f| f.split(',').any(str::is_empty)) {
        return Err(format!("{} field {:?}: an empty element in a list", names[i], fields[i]));
    }
    parser.parse(trimmed).map_err(|error| {
        let why = croner_reason(&error);
        // croner does not say which field it choked on: parse each field alone, the others left as `*`, to
        // find the first one it refuses.
        let culprit = (0..fields.len()).find(|&i| {
            let alone: Vec<&str> = (0..fields.len()).map(|j| if i == j { fields[j] } else { "*" }).collect();
            parser.parse(&alone.join(" ")).is_err()
        });
        match culprit {
            Some(i) => format!("{} field {:?}: {why}", names[i], fields[i]),
            None => why,
        }
    })
}

/// The names (with their ranges) of the fields of a cron expression with `count` fields, if that count is valid.
fn field_names(count: usize) -> Option<&'static [&'static str]> {
    const SIX: [&str; 6] = [
        "second (0-59)",
        "minute (0-59)",
        "hour (0-23)",
        "day-of-month (1-31)",
        "month (1-12 or JAN-DEC)",
        "day-of-week (0-7 or SUN-SAT)",
    ];
    match count {
        6 => Some(&SIX),
        5 => Some(&SIX[1..]),
        _ => None,
    }
}

/// croner's own explanation, lowercased and without its type-name prefixes, to fit into this crate's messages.
fn croner_reason(error: &CronError) -> String {
    let text = match error {
        CronError::InvalidPattern(text)
        | CronError::IllegalCharacters(text)
        | CronError::ComponentError(text) => text.clone(),
        other => other.to_string(),
    };
    let text = text.strip_prefix("CronPattern ").unwrap_or(&text).trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Parses a strict `YYYY-MM-DD` date.
fn parse_date(text: &str) -> Result<NaiveDate, String> {
    const EXPECTED: &str = "expected YYYY-MM-DD";
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 10
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| if i == 4 || i == 7 { *b == b'-' } else { b.is_ascii_digit() });
    if !shaped {
        return Err(EXPECTED.to_string());
    }
    let number =
        |range: std::ops::Range<usize>| text.get(range).and_then(|digits| digits.parse::<u32>().ok());
    let date = match (number(0..4), number(5..7), number(8..10)) {
        (Some(year), Some(month), Some(day)) => {
            i32::try_from(year).ok().and_then(|year| NaiveDate::from_ymd_opt(year, month, day))
        }
        _ => None,
    };
    date.ok_or_else(|| format!("{EXPECTED} (there is no such date)"))
}

/// One allowed window: a daily stretch of wall clock time, on some days of the week.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Window {
    /// The days the window starts on, indexed from Monday (0) to Sunday (6).
    days: [bool; 7],
    /// Seconds after midnight at which the window opens (included); below [`SECONDS_PER_DAY`].
    start: u32,
    /// Seconds after midnight at which the window closes (excluded). When below `start`, the window closes on
    /// the next day; it is never equal to `start`.
    end: u32,
}

// === impl Window ===

impl Window {
    /// Parses `[DAYS ]HH:MM-HH:MM`; the error does not repeat the window's text.
    fn parse(text: &str) -> Result<Window, String> {
        const EXPECTED: &str = r#"expected "[DAYS ]HH:MM-HH:MM", e.g. "Mon-Fri 09:00-17:00""#;
        let parts: Vec<&str> = text.split_whitespace().collect();
        let (days, times) = match parts.as_slice() {
            [times] => ([true; 7], *times),
            [days, times] => (parse_days(days)?, *times),
            _ => return Err(EXPECTED.to_string()),
        };
        let (start, end) = times.split_once('-').ok_or_else(|| EXPECTED.to_string())?;
        let (start, end) = (parse_clock(start)?, parse_clock(end)?);
        if start == SECONDS_PER_DAY {
            return Err("a window cannot start at 24:00 (use 00:00)".to_string());
        }
        if start == end {
            return Err("start and end are equal (use 00:00-24:00 for a whole day)".to_string());
        }
        Ok(Window { days, start, end })
    }

    /// Whether the wall clock time `wall` is inside the window.
    fn contains(&self, wall: NaiveDateTime) -> bool {
        let day = weekday_index(wall.date());
        let second = wall.num_seconds_from_midnight();
        if self.start < self.end {
            self.days[day] && self.start <= second && second < self.end
        } else {
            // Crossing midnight: the evening part belongs to today, the morning part to yesterday's window.
            (self.days[day] && self.start <= second) || (self.days[(day + 6) % 7] && second < self.end)
        }
    }

    /// The first opening of the window strictly after `wall`. `None` only at the end of the calendar.
    fn next_opening(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        let start = NaiveTime::from_num_seconds_from_midnight_opt(self.start, 0)?;
        // Every window opens on at least one day a week, so eight days ahead always finds an opening.
        (0..8).find_map(|ahead| {
            let date = wall.date().checked_add_days(Days::new(ahead))?;
            let opening = date.and_time(start);
            (self.days[weekday_index(date)] && opening > wall).then_some(opening)
        })
    }
}

/// Parses a comma list of days and day ranges into a set indexed from Monday.
fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for item in text.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (parse_day(first)?, parse_day(last)?),
            None => (parse_day(item)?, parse_day(item)?),
        };
        // Walk forwards from the first day, wrapping round the week (`Fri-Mon`).
        let mut day = first;
        loop {
            days[day] = true;
            if day == last {
                break;
            }
            day = (day + 1) % 7;
        }
    }
    Ok(days)
}

/// Parses a three-letter day name, in any letter case, into its index from Monday.
fn parse_day(text: &str) -> Result<usize, String> {
    DAY_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .ok_or_else(|| format!("unknown day {text:?} (expected {})", DAY_NAMES.join(", ")))
}

/// Parses `HH:MM` (or `H:MM`) from 00:00 to 24:00 into seconds after midnight.
fn parse_clock(text: &str) -> Result<u32, String> {
    let malformed = || format!("time {text:?} is not HH:MM");
    let (hours, minutes) = text.split_once(':').ok_or_else(malformed)?;
    let digits = |part: &str, widths: std::ops::RangeInclusive<usize>| {
        widths.contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(hours, 1..=2) || !digits(minutes, 2..=2) {
        return Err(malformed());
    }
    let (hours, minutes): (u32, u32) =
        (hours.parse().map_err(|_| malformed())?, minutes.parse().map_err(|_| malformed())?);
    if minutes > 59 || hours > 24 || (hours == 24 && minutes != 0) {
        return Err(format!("time {text:?} is out of range (expected 00:00 to 24:00)"));
    }
    Ok(hours * 3600 + minutes * 60)
}

/// The day of the week of `date`, from Monday (0) to Sunday (6).
fn weekday_index(date: NaiveDate) -> usize {
    date.weekday().num_days_from_monday() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, hour, minute, 0).unwrap()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    fn timing(cron: &str, zone: &str, windows: &[&str], blackout_dates: &[&str]) -> Timing {
        Timing::parse(cron, zone, &strings(windows), &strings(blackout_dates)).unwrap()
    }

    fn error(cron: &str, zone: &str, windows: &[&str], blackout_dates: &[&str]) -> String {
        Timing::parse(cron, zone, &strings(windows), &strings(blackout_dates)).unwrap_err()
    }

    /// The next `count` firings after `after`, each found from the previous one.
    fn firings(timing: &Timing, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(timing.next_after(after), |at| timing.next_after(*at)).take(count).collect()
    }

    #[test]
    fn cron_errors_name_the_field_and_use_croner_reason() {
        let cases = [
            ("61 * * * *", r#"cron "61 * * * *": minute (0-59) field "61": number out of bounds"#),
            ("0 0 25 * * *", r#"cron "0 0 25 * * *": hour (0-23) field "25": number out of bounds"#),
            ("*/0 * * * *", r#"cron "*/0 * * * *": minute (0-59) field "*/0": step cannot be zero"#),
            (
                "* * * * Fry",
                "cron \"* * * * Fry\": day-of-week (0-7 or SUN-SAT) field \"Fry\": \
                 contains illegal character 'F' in part 'FRY'",
            ),
            (
                "* * * *",
                "cron \"* * * *\": expected 5 fields (minute hour day-of-month month day-of-week), \
                 6 with seconds first, or a nickname such as @hourly; found 4 fields",
            ),
            (
                "",
                "cron \"\": expected 5 fields (minute hour day-of-month month day-of-week), \
                 6 with seconds first, or a nickname such as @hourly; found 0 fields",
            ),
            (
                "@fortnightly",
                "cron \"@fortnightly\": unknown nickname \
                 (expected @yearly, @annually, @monthly, @weekly, @daily, @hourly)",
            ),
        ];
        for (cron, expected) in cases {
            assert_eq!(error(cron, "", &[], &[]), expected);
        }
    }

    #[test]
    fn timezone_error() {
        assert_eq!(
            error("0 * * * *", "Mars/Base", &[], &[]),
            r#"timezone "Mars/Base": not an IANA time zone name"#
        );
        assert_eq!(
            error("0 * * * *", "europe/paris", &[], &[]),
            r#"timezone "europe/paris": not an IANA time zone name"#
        );
    }

    #[test]
    fn window_errors_say_what_was_expected() {
        let cases = [
            (
                "Mon-Fry 09:00-17:00",
                r#"window "Mon-Fry 09:00-17:00": unknown day "Fry" (expected Mon, Tue, Wed, Thu, Fri, Sat, Sun)"#,
            ),
            (
                "Mon,,Fri 09:00-17:00",
                r#"window "Mon,,Fri 09:00-17:00": unknown day "" (expected Mon, Tue, Wed, Thu, Fri, Sat, Sun)"#,
            ),
            ("Mon 09:00", r#"window "Mon 09:00": expected "[DAYS ]HH:MM-HH:MM", e.g. "Mon-Fri 09:00-17:00""#),
            (
                "Mon Tue 09:00-10:00",
                r#"window "Mon Tue 09:00-10:00": expected "[DAYS ]HH:MM-HH:MM", e.g. "Mon-Fri 09:00-17:00""#,
            ),
            ("", r#"window "": expected "[DAYS ]HH:MM-HH:MM", e.g. "Mon-Fri 09:00-17:00""#),
            ("9am-5pm", r#"window "9am-5pm": time "9am" is not HH:MM"#),
            (
                "09:00-25:00",
                r#"window "09:00-25:00": time "25:00" is out of range (expected 00:00 to 24:00)"#,
            ),
            (
                "09:60-10:00",
                r#"window "09:60-10:00": time "09:60" is out of range (expected 00:00 to 24:00)"#,
            ),
            ("24:00-02:00", r#"window "24:00-02:00": a window cannot start at 24:00 (use 00:00)"#),
            (
                "Mon 09:00-09:00",
                r#"window "Mon 09:00-09:00": start and end are equal (use 00:00-24:00 for a whole day)"#,
            ),
        ];
        for (window, expected) in cases {
            assert_eq!(error("0 * * * *", "", &[window], &[]), expected);
        }
    }

    #[test]
    fn blackout_date_errors() {
        let cases = [
            ("2026-13-01", r#"blackout date "2026-13-01": expected YYYY-MM-DD (there is no such date)"#),
            ("2026-02-30", r#"blackout date "2026-02-30": expected YYYY-MM-DD (there is no such date)"#),
            ("2026-1-5", r#"blackout date "2026-1-5": expected YYYY-MM-DD"#),
            ("05/01/2026", r#"blackout date "05/01/2026": expected YYYY-MM-DD"#),
        ];
        for (date, expected) in cases {
            assert_eq!(error("0 * * * *", "", &[], &[date]), expected);
        }
    }

    #[test]
    fn accepts_every_documented_form() {
        timing("*/10 * * * * *", "", &[], &[]);
        timing("0 9 * * MON-FRI", "Europe/Paris", &[], &[]);
        timing("0 0 L * *", "", &[], &[]);
        timing("0 0 * * 5L", "", &[], &[]);
        timing("0 0 * * 1#2", "", &[], &[]);
        for nickname in NICKNAMES {
            timing(nickname, "", &[], &[]);
        }
        timing(
            "0 * * * *",
            "",
            &["09:00-17:00", "Mon 22:00-02:00", "mon,WED,fri-sat 00:00-24:00", "Sat-Mon 9:30-10:00"],
            &["2026-12-25"],
        );
    }

    #[test]
    fn every_five_minutes_in_utc() {
        let timing = timing("*/5 * * * *", "", &[], &[]);
        let after = Utc.with_ymd_and_hms(2026, 1, 15, 10, 2, 30).unwrap();
        assert_eq!(
            firings(&timing, after, 3),
            [utc(2026, 1, 15, 10, 5), utc(2026, 1, 15, 10, 10), utc(2026, 1, 15, 10, 15)]
        );
        // Strictly after: a firing instant itself is not returned again.
        assert_eq!(timing.next_after(utc(2026, 1, 15, 10, 5)), Some(utc(2026, 1, 15, 10, 10)));
        // Sub-second instants round forwards, never back.
        let between = utc(2026, 1, 15, 10, 5) + TimeDelta::milliseconds(500);
        assert_eq!(timing.next_after(between), Some(utc(2026, 1, 15, 10, 10)));
    }

    #[test]
    fn seconds_field_and_nicknames() {
        let every_ten_seconds = timing("*/10 * * * * *", "", &[], &[]);
        let after = Utc.with_ymd_and_hms(2026, 1, 15, 10, 0, 5).unwrap();
        assert_eq!(
            every_ten_seconds.next_after(after),
            Some(Utc.with_ymd_and_hms(2026, 1, 15, 10, 0, 10).unwrap())
        );
        let hourly = timing("@hourly", "", &[], &[]);
        assert_eq!(hourly.next_after(utc(2026, 1, 15, 10, 5)), Some(utc(2026, 1, 15, 11, 0)));
    }

    #[test]
    fn cron_fields_are_read_in_the_time_zone() {
        let timing = timing("0 9 * * *", "America/New_York", &[], &[]);
        // Winter: EST is UTC-5.
        assert_eq!(timing.next_after(utc(2026, 1, 15, 0, 0)), Some(utc(2026, 1, 15, 14, 0)));
        // Summer: EDT is UTC-4.
        assert_eq!(timing.next_after(utc(2026, 7, 15, 0, 0)), Some(utc(2026, 7, 15, 13, 0)));
        // 15:00 UTC is 10:00 in New York: today's 09:00 has passed.
        assert_eq!(timing.next_after(utc(2026, 1, 15, 15, 0)), Some(utc(2026, 1, 16, 14, 0)));
    }

    #[test]
    fn weekday_window_skips_the_weekend() {
        let timing = timing("0 * * * *", "", &["Mon-Fri 09:00-17:00"], &[]);
        // 2026-01-10 is a Saturday.
        assert_eq!(timing.next_after(utc(2026, 1, 10, 12, 0)), Some(utc(2026, 1, 12, 9, 0)));
        assert_eq!(timing.next_after(utc(2026, 1, 12, 9, 0)), Some(utc(2026, 1, 12, 10, 0)));
    }

    #[test]
    fn window_end_is_exclusive() {
        let timing = timing("0 * * * *", "", &["Mon-Fri 09:00-17:00"], &[]);
        // Friday 16:30: the 17:00 firing is refused, the next one is Monday's opening.
        assert_eq!(timing.next_after(utc(2026, 1, 9, 16, 30)), Some(utc(2026, 1, 12, 9, 0)));
        assert!(timing.allows(Utc.with_ymd_and_hms(2026, 1, 9, 16, 59, 59).unwrap()));
        assert!(!timing.allows(utc(2026, 1, 9, 17, 0)));
        assert!(timing.allows(utc(2026, 1, 9, 9, 0)));
        assert!(!timing.allows(Utc.with_ymd_and_hms(2026, 1, 9, 8, 59, 59).unwrap()));
    }

    #[test]
    fn window_crossing_midnight_belongs_to_its_start_day() {
        let timing = timing("0 * * * *", "", &["Fri 22:00-02:00"], &[]);
        // 2026-01-09 is a Friday.
        assert_eq!(timing.next_after(utc(2026, 1, 9, 12, 0)), Some(utc(2026, 1, 9, 22, 0)));
        assert_eq!(timing.next_after(utc(2026, 1, 9, 23, 30)), Some(utc(2026, 1, 10, 0, 0)));
        // Saturday 01:30: 02:00 is the exclusive end, so the next firing is a week later.
        assert_eq!(timing.next_after(utc(2026, 1, 10, 1, 30)), Some(utc(2026, 1, 16, 22, 0)));
        assert!(timing.allows(Utc.with_ymd_and_hms(2026, 1, 10, 1, 59, 59).unwrap()));
        assert!(!timing.allows(utc(2026, 1, 10, 2, 0)));
        // Saturday evening is not Friday evening, and Friday's small hours belong to Thursday.
        assert!(!timing.allows(utc(2026, 1, 10, 23, 0)));
        assert!(!timing.allows(utc(2026, 1, 9, 1, 0)));
    }

    #[test]
    fn whole_day_window() {
        let timing = timing("0 12 * * *", "", &["Sun 00:00-24:00"], &[]);
        // From Monday 2026-01-12, the next Sunday is 2026-01-18.
        assert_eq!(timing.next_after(utc(2026, 1, 12, 0, 0)), Some(utc(2026, 1, 18, 12, 0)));
        assert!(timing.allows(utc(2026, 1, 18, 0, 0)));
        assert!(timing.allows(Utc.with_ymd_and_hms(2026, 1, 18, 23, 59, 59).unwrap()));
        assert!(!timing.allows(utc(2026, 1, 19, 0, 0)));
    }

    #[test]
    fn comma_day_lists_and_wrapping_ranges() {
        let timing = timing("0 10 * * *", "", &["Mon,Wed,Fri-Sat 10:00-11:00"], &[]);
        // From Monday 2026-01-12 after its firing: Wednesday, Friday, Saturday, then Monday again.
        let expected = [
            utc(2026, 1, 14, 10, 0),
            utc(2026, 1, 16, 10, 0),
            utc(2026, 1, 17, 10, 0),
            utc(2026, 1, 19, 10, 0),
        ];
        assert_eq!(firings(&timing, utc(2026, 1, 12, 11, 0), 4), expected);

        let wrapping = super::Window::parse("Sat-Mon 10:00-11:00").unwrap();
        assert_eq!(wrapping.days, [true, false, false, false, false, true, true]);
        let single = super::Window::parse("Wed-Wed 10:00-11:00").unwrap();
        assert_eq!(single.days, [false, false, true, false, false, false, false]);
    }

    #[test]
    fn any_of_several_windows_allows() {
        let timing = timing("0 * * * *", "", &["Mon 09:00-10:00", "Tue 15:00-16:00"], &[]);
        assert_eq!(
            firings(&timing, utc(2026, 1, 12, 0, 0), 2),
            [utc(2026, 1, 12, 9, 0), utc(2026, 1, 13, 15, 0)]
        );
    }

    #[test]
    fn blackout_dates_are_read_in_the_schedule_zone() {
        // 08:00 in Tokyo is 23:00 UTC the day before, so the UTC date and the local date differ.
        let timing = timing("0 8 * * *", "Asia/Tokyo", &[], &["2026-01-15"]);
        // After 2026-01-14 00:00 UTC (09:00 in Tokyo) the next firing would be Tokyo's 2026-01-15 08:00, which
        // is 2026-01-14 23:00 UTC: not a blackout date in UTC, but one in Tokyo.
        assert_eq!(timing.next_after(utc(2026, 1, 14, 0, 0)), Some(utc(2026, 1, 15, 23, 0)));
        assert!(!timing.allows(utc(2026, 1, 14, 23, 0)));
        assert!(!timing.allows(utc(2026, 1, 14, 15, 0)));
        assert!(timing.allows(Utc.with_ymd_and_hms(2026, 1, 14, 14, 59, 59).unwrap()));
        assert!(timing.allows(utc(2026, 1, 15, 15, 0)));
    }

    #[test]
    fn consecutive_blackout_dates_are_jumped_over() {
        let timing = timing("* * * * * *", "", &[], &["2026-12-24", "2026-12-25", "2026-12-26"]);
        assert_eq!(
            timing.next_after(utc(2026, 12, 23, 23, 59)),
            Some(Utc.with_ymd_and_hms(2026, 12, 23, 23, 59, 1).unwrap())
        );
        assert_eq!(timing.next_after(utc(2026, 12, 24, 0, 0)), Some(utc(2026, 12, 27, 0, 0)));
    }

    #[test]
    fn none_when_nothing_fires_within_the_horizon() {
        // The only firing within a year falls on a blackout date; the one after is past the horizon.
        let new_year = timing("0 12 1 1 *", "", &[], &["2027-01-01"]);
        assert_eq!(new_year.next_after(utc(2026, 6, 1, 0, 0)), None);
        assert_eq!(new_year.next_after(utc(2025, 6, 1, 0, 0)), Some(utc(2026, 1, 1, 12, 0)));
        // February 30 never comes.
        assert_eq!(timing("0 0 30 2 *", "", &[], &[]).next_after(utc(2026, 1, 1, 0, 0)), None);
        // The next leap day is more than 366 days away.
        assert_eq!(timing("0 0 29 2 *", "", &[], &[]).next_after(utc(2026, 3, 1, 0, 0)), None);
        assert_eq!(
            timing("0 0 29 2 *", "", &[], &[]).next_after(utc(2027, 3, 1, 0, 0)),
            Some(utc(2028, 2, 29, 0, 0))
        );
    }

    #[test]
    fn refused_stretches_are_jumped_over_not_walked() {
        // Every second, allowed one minute a week: from a Tuesday, walking seconds would pass the occurrence cap
        // long before next Monday.
        let timing = timing("* * * * * *", "", &["Mon 09:00-09:01"], &[]);
        assert_eq!(timing.next_after(utc(2026, 1, 13, 0, 0)), Some(utc(2026, 1, 19, 9, 0)));
        // Every second of the 03:00 hour, with a window that never meets it: gives up with `None`.
        let never = self::timing("* * 3 * * *", "", &["09:00-17:00"], &[]);
        assert_eq!(never.next_after(utc(2026, 1, 13, 0, 0)), None);
    }

    #[test]
    fn spring_forward_gap_does_not_fire() {
        // In Paris on 2026-03-29 the clocks go from 02:00 to 03:00: 02:30 does not exist that day.
        let daily = timing("30 2 * * *", "Europe/Paris", &[], &[]);
        // 2026-03-28 02:30 CET is 01:30 UTC; 2026-03-30 02:30 CEST is 00:30 UTC.
        assert_eq!(
            firings(&daily, utc(2026, 3, 28, 0, 0), 2),
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 30, 0, 30)]
        );
        // An interval pattern loses the skipped wall times and resumes at 03:00 CEST (01:00 UTC).
        let half_hourly = timing("*/30 * * * *", "Europe/Paris", &[], &[]);
        assert_eq!(
            firings(&half_hourly, utc(2026, 3, 29, 0, 10), 3),
            [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)]
        );
        // The wall time right after the gap still fires.
        let three = timing("0 3 * * *", "Europe/Paris", &[], &[]);
        assert_eq!(three.next_after(utc(2026, 3, 28, 12, 0)), Some(utc(2026, 3, 29, 1, 0)));
    }

    #[test]
    fn window_opening_inside_the_gap_opens_after_it() {
        // 2026-03-29 is a Sunday; its 02:30 does not exist, so the window opens at 03:00 CEST (01:00 UTC).
        let timing = timing("*/15 * * * *", "Europe/Paris", &["Sun 02:30-04:00"], &[]);
        assert_eq!(timing.next_after(utc(2026, 3, 28, 12, 0)), Some(utc(2026, 3, 29, 1, 0)));
    }

    #[test]
    fn fall_back_overlap_fires_once() {
        // In Paris on 2026-10-25 the clocks go from 03:00 CEST back to 02:00 CET: 02:30 happens twice.
        let daily = timing("30 2 * * *", "Europe/Paris", &[], &[]);
        // The first 02:30 (CEST) is 00:30 UTC; the next firing is the following day's 02:30 CET, 01:30 UTC.
        assert_eq!(
            firings(&daily, utc(2026, 10, 24, 12, 0), 2),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
        );
        // An interval pattern fires the repeated wall times once: 02:00 and 02:30 CEST, not again in CET.
        let half_hourly = timing("*/30 * * * *", "Europe/Paris", &[], &[]);
        let expected = [
            utc(2026, 10, 24, 23, 30), // 01:30 CEST
            utc(2026, 10, 25, 0, 0),   // 02:00 CEST
            utc(2026, 10, 25, 0, 30),  // 02:30 CEST
            utc(2026, 10, 25, 2, 0),   // 03:00 CET
        ];
        assert_eq!(firings(&half_hourly, utc(2026, 10, 24, 23, 0), 4), expected);
        // Asked from inside the second pass, the search moves on rather than going back.
        assert_eq!(half_hourly.next_after(utc(2026, 10, 25, 1, 10)), Some(utc(2026, 10, 25, 2, 0)));
    }

    #[test]
    fn windows_in_the_repeated_hour_use_the_wall_clock() {
        // 2026-10-25 is a Sunday. Every instant of both passes of 02:00-03:00 reads as inside the window.
        let timing = timing("*/30 * * * *", "Europe/Paris", &["Sun 02:00-03:00"], &[]);
        assert!(timing.allows(utc(2026, 10, 25, 0, 15)));
        assert!(timing.allows(utc(2026, 10, 25, 1, 15)));
        assert!(!timing.allows(utc(2026, 10, 25, 2, 0)));
        assert_eq!(
            firings(&timing, utc(2026, 10, 24, 12, 0), 3),
            [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30), utc(2026, 11, 1, 1, 0)]
        );
    }

    #[test]
    fn allows_without_windows_refuses_only_blackout_dates() {
        let timing = timing("0 * * * *", "Europe/Paris", &[], &["2026-05-01"]);
        assert!(timing.allows(utc(2026, 4, 30, 21, 59)));
        // 22:00 UTC on April 30 is already May 1 in Paris (CEST, UTC+2).
        assert!(!timing.allows(utc(2026, 4, 30, 22, 0)));
        assert!(!timing.allows(utc(2026, 5, 1, 21, 59)));
        assert!(timing.allows(utc(2026, 5, 1, 22, 0)));
    }

    #[test]
    fn allows_ignores_the_cron_expression() {
        let timing = timing("0 0 1 1 *", "", &["Mon-Fri 09:00-17:00"], &[]);
        assert!(timing.allows(Utc.with_ymd_and_hms(2026, 1, 12, 13, 17, 42).unwrap()));
        assert!(!timing.allows(utc(2026, 1, 10, 13, 0)));
    }
}
