//! The journal: the whole run as JSON (experiment, verdict with reasons, every step, fault, probe, guardrail,
//! SLO result, time to recover, per-second signal summaries and the time series of [`super::series`]). Stable
//! field names: other tools read it. Fields added later default when absent, so older journals still read.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::series::{
    FaultWindow, PhaseWindow, SaturationSeries, SloSeries, SourceSummary, round_ms, round_sig,
};
use super::{ReportError, write_atomically};
use crate::signals::Event;
use crate::slo::SloResult;
use crate::slo::stats::{WindowStats, latency_summary};

/// The outcome of a run, with its exit code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The hypothesis held: every SLO met, steady state before and after.
    #[default]
    Passed,
    /// The hypothesis was refuted: an SLO missed, steady state broken after the method, or a guardrail aborted.
    Failed,
    /// Bad file or usage; nothing was touched.
    Invalid,
    /// Could not judge: not steady before, a probe or source erred, infrastructure failed, interrupted, too few
    /// events.
    Inconclusive,
}

impl Verdict {
    /// `passed` 0, `failed` 1, `invalid` 2, `inconclusive` 3.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Failed => 1,
            Verdict::Invalid => 2,
            Verdict::Inconclusive => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Invalid => "invalid",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// The version of chaos that ran it.
    pub chaos_version: String,
    pub experiment: ExperimentInfo,
    /// Every random choice of the run came from this seed; `--seed` with it reproduces the run.
    pub seed: u64,
    /// RFC 3339, UTC, milliseconds ([`format_rfc3339`]).
    pub started_at: String,
    pub duration_ms: u64,
    pub verdict: Verdict,
    /// Why, in words and numbers, most important first.
    pub reasons: Vec<String>,
    pub timeline: Vec<TimelineEntry>,
    pub probes: Vec<ProbeOutcome>,
    pub slos: Vec<SloResult>,
    pub recovery: Vec<RecoveryOutcome>,
    /// Per-second (per-[`Journal::step_ms`]) summaries of each source: load generators, proxies, Prometheus.
    pub signals: Vec<SignalSample>,
    /// The length of one point of `signals`, `slo_series` and `saturation`: 1,000, or more for runs longer
    /// than [`super::series::MAX_POINTS`] seconds.
    #[serde(default = "default_step_ms")]
    pub step_ms: u64,
    /// The lifecycle phases with their start and end.
    #[serde(default)]
    pub phases: Vec<PhaseWindow>,
    /// Every fault that was in force, from injection to revert.
    #[serde(default)]
    pub faults: Vec<FaultWindow>,
    /// Per SLO, its SLI per step against its objective, with breach and recovery.
    #[serde(default)]
    pub slo_series: Vec<SloSeries>,
    /// Host and process utilisation per step (the sources saturation SLOs watch).
    #[serde(default)]
    pub saturation: Vec<SaturationSeries>,
    /// Per source, what was measured before, during and after the faults.
    #[serde(default)]
    pub measured: Vec<SourceSummary>,
    /// Per expected alert (the experiment's `detection`): when it fired and resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detection: Vec<DetectionOutcome>,
}

/// One expected alert of a run: time to detect (injection to firing) and to resolve.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectionOutcome {
    /// The alert's name (`alertname`).
    pub alert: String,
    /// Where it was watched: the Prometheus or Alertmanager URL.
    pub source: String,
    /// How long it was allowed to take to fire.
    pub within_ms: u64,
    /// From the first fault's injection to the alert firing; `None` when it did not fire in time.
    pub detected_after_ms: Option<u64>,
    /// From the first fault's injection to the alert resolving; `None` when it was still firing when the
    /// run stopped watching, or never fired.
    pub resolved_after_ms: Option<u64>,
}

fn default_step_ms() -> u64 {
    1000
}

/// Which experiment ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentInfo {
    pub title: String,
    pub hypothesis: Option<String>,
    /// The file it was read from, as given on the command line; `None` for stdin or an API submission.
    pub file: Option<String>,
}

/// One thing that happened, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Since the run started.
    pub at_ms: u64,
    pub kind: TimelineKind,
    /// The phase, step, fault, probe, guardrail or signal it is about.
    pub name: String,
    /// In words; empty when the kind and name say it all.
    pub detail: String,
    /// Whether it went well, where that applies (probes, reverts, guardrails).
    pub ok: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    /// A lifecycle phase began: preflight, baseline, method, recovery, steady state, rollbacks.
    Phase,
    StepStarted,
    FaultInjected,
    FaultReverted,
    Probe,
    Guardrail,
    Signal,
    Note,
}

/// A steady-state probe, before or after the method.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    pub name: String,
    pub phase: ProbePhase,
    pub ok: bool,
    /// What was expected and what was found.
    pub detail: String,
    pub elapsed_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbePhase {
    Before,
    After,
}

impl ProbePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbePhase::Before => "before",
            ProbePhase::After => "after",
        }
    }
}

/// How long an SLO took to come back after the last fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryOutcome {
    pub slo: String,
    /// `None`: not back within the recovery window.
    pub time_to_recover_ms: Option<u64>,
}

/// One second (or one step) of one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalSample {
    /// Start of the bucket, since the run started.
    pub at_ms: u64,
    pub source: String,
    pub requests: u64,
    pub errors: u64,
    /// `None` without requests.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests per second over the bucket.
    pub rate: f64,
    /// `None` without requests (absent from older journals).
    #[serde(default)]
    pub p95_ms: Option<f64>,
    /// `errors / requests`; `None` without requests (absent from older journals).
    #[serde(default)]
    pub error_ratio: Option<f64>,
}

/// Per-`step` summaries of `events` from `from` to `to` (the last bucket may be shorter), for the journal's
/// `signals` and the report charts. Buckets without events are kept, with zero requests: a gap is a finding.
/// Latencies are rounded to 0.001 ms, rates and ratios to 6 significant digits.
pub fn signal_samples(
    source: &str,
    events: &[Event],
    from: Duration,
    to: Duration,
    step: Duration,
) -> Vec<SignalSample> {
    if step.is_zero() || to <= from {
        return Vec::new();
    }
    let step_ns = step.as_nanos();
    let buckets = (to - from).as_nanos().div_ceil(step_ns);
    let mut grouped: Vec<Vec<Event>> = (0..buckets).map(|_| Vec::new()).collect();
    for e in events.iter().filter(|e| e.at >= from && e.at < to) {
        let i = (e.at - from).as_nanos() / step_ns;
        if let Some(bucket) = usize::try_from(i).ok().and_then(|i| grouped.get_mut(i)) {
            bucket.push(*e);
        }
    }
    grouped
        .iter()
        .enumerate()
        .map(|(i, bucket)| {
            let start = from + step * u32::try_from(i).unwrap_or(u32::MAX);
            let end = (start + step).min(to);
            let stats = WindowStats::of(bucket);
            let latency = latency_summary(bucket);
            let ms = |d: Duration| round_ms(d.as_secs_f64() * 1e3);
            SignalSample {
                at_ms: millis(start),
                source: source.to_string(),
                requests: stats.total,
                errors: stats.bad,
                p50_ms: latency.map(|l| ms(l.p50)),
                p99_ms: latency.map(|l| ms(l.p99)),
                rate: round_sig(stats.rate(end - start)),
                p95_ms: latency.map(|l| ms(l.p95)),
                error_ratio: stats.error_ratio().map(round_sig),
            }
        })
        .collect()
}

/// A duration in whole milliseconds, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `SystemTime` as RFC 3339 in UTC with milliseconds: `2026-11-25T12:52:29.123Z`. Times before 1970 print as
/// the epoch. Hand-written (days to civil date, H. Hinnant's algorithm) to keep chrono out of the engine for one
/// timestamp.
pub fn format_rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The phases of a run from its timeline: each `phase` entry lasts until the next one, the last until
/// `duration_ms`.
pub fn phase_windows(timeline: &[TimelineEntry], duration_ms: u64) -> Vec<PhaseWindow> {
    let starts: Vec<&TimelineEntry> = timeline.iter().filter(|e| e.kind == TimelineKind::Phase).collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let end = starts.get(i + 1).map_or(duration_ms.max(e.at_ms), |next| next.at_ms);
            PhaseWindow { name: e.name.clone(), start_ms: e.at_ms, end_ms: end.max(e.at_ms) }
        })
        .collect()
}

/// The fault windows of a run from its timeline: each successful injection, ended by the first later revert
/// entry naming its step or what it applied (the engine's final revert names the fault by what it applied).
/// An injection never reverted had nothing to revert (a kill): an instant window. Failed injections are not
/// windows: nothing was in force.
pub fn fault_windows(timeline: &[TimelineEntry]) -> Vec<FaultWindow> {
    let mut used = vec![false; timeline.len()];
    let mut windows = Vec::new();
    for (i, e) in timeline.iter().enumerate() {
        if e.kind != TimelineKind::FaultInjected || e.ok != Some(true) {
            continue;
        }
        let revert = timeline.iter().enumerate().skip(i + 1).find(|(j, r)| {
            !used[*j] && r.kind == TimelineKind::FaultReverted && (r.name == e.name || r.name == e.detail)
        });
        let window = match revert {
            Some((j, r)) => {
                used[j] = true;
                FaultWindow {
                    name: e.name.clone(),
                    detail: e.detail.clone(),
                    start_ms: e.at_ms,
                    end_ms: r.at_ms.max(e.at_ms),
                    instant: false,
                    reverted: r.ok == Some(true),
                }
            }
            None => FaultWindow {
                name: e.name.clone(),
                detail: e.detail.clone(),
                start_ms: e.at_ms,
                end_ms: e.at_ms,
                instant: true,
                reverted: true,
            },
        };
        windows.push(window);
    }
    windows
}

/// The most [`read_journal`] reads: a one-hour run with 20 series is a few megabytes.
pub const MAX_JOURNAL_BYTES: u64 = 256 << 20;

/// Reads a journal file (`chaos run --journal`), at most [`MAX_JOURNAL_BYTES`]; JSON that is not a journal
/// is reported at `FILE:LINE:COLUMN`.
pub fn read_journal(path: &Path) -> Result<Journal, ReportError> {
    use std::io::Read as _;
    let fail = |reason: String| ReportError::Read { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open the journal: {e}")))?;
    let mut text = String::new();
    file.take(MAX_JOURNAL_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(format!("cannot read the journal as UTF-8 text: {e}")))?;
    if text.len() as u64 > MAX_JOURNAL_BYTES {
        return Err(fail(format!("more than {MAX_JOURNAL_BYTES} bytes; not a chaos journal")));
    }
    serde_json::from_str(&text).map_err(|e| ReportError::Read {
        path: PathBuf::from(format!("{}:{}:{}", path.display(), e.line(), e.column())),
        reason: format!("not a chaos journal: {e}"),
    })
}

/// Writes the journal as JSON ([`journal_json`]).
pub fn write_journal(path: &Path, journal: &Journal) -> Result<(), ReportError> {
    write_atomically(path, journal_json(journal)?.as_bytes())
}

/// The journal as indented JSON with a final newline, where an object or array holding only numbers, strings,
/// booleans and nulls stays on one line: a signal sample is one line, a series one line, so a long run's
/// journal stays readable and small (pretty printing puts every number of a series on its own line).
pub fn journal_json(journal: &Journal) -> Result<String, ReportError> {
    let value = serde_json::to_value(journal)?;
    let mut out = String::new();
    write_value(&mut out, &value, 0)?;
    out.push('\n');
    Ok(out)
}

fn write_value(out: &mut String, value: &serde_json::Value, depth: usize) -> Result<(), ReportError> {
    use serde_json::Value;
    let flat = |v: &Value| !matches!(v, Value::Array(_) | Value::Object(_));
    let indent = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    match value {
        Value::Array(items) if !items.is_empty() && !items.iter().all(flat) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write_value(out, item, depth + 1)?;
            }
            indent(out, depth);
            out.push(']');
        }
        Value::Object(fields) if !fields.is_empty() && !fields.values().all(flat) => {
            out.push('{');
            for (i, (key, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                out.push_str(&serde_json::to_string(key)?);
                out.push_str(": ");
                write_value(out, item, depth + 1)?;
            }
            indent(out, depth);
            out.push('}');
        }
        _ => out.push_str(&serde_json::to_string(value)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: u64, kind: TimelineKind, name: &str, detail: &str, ok: Option<bool>) -> TimelineEntry {
        TimelineEntry { at_ms, kind, name: name.into(), detail: detail.into(), ok }
    }

    #[test]
    fn fault_windows_pair_injections_with_reverts() {
        let timeline = vec![
            entry(100, TimelineKind::Phase, "method", "", None),
            entry(1_000, TimelineKind::FaultInjected, "slow", "latency 100 ms on shop", Some(true)),
            entry(1_500, TimelineKind::FaultInjected, "broken", "cannot apply", Some(false)),
            entry(2_000, TimelineKind::FaultInjected, "kill", "killed pid 42", Some(true)),
            entry(3_000, TimelineKind::FaultInjected, "forever", "reset on shop", Some(true)),
            entry(5_000, TimelineKind::FaultReverted, "slow", "latency 100 ms on shop", Some(true)),
            entry(6_000, TimelineKind::FaultReverted, "reset on shop", "revert failed: gone", Some(false)),
        ];
        let w = fault_windows(&timeline);
        assert_eq!(w.len(), 3);
        assert_eq!(
            (w[0].name.as_str(), w[0].start_ms, w[0].end_ms, w[0].instant),
            ("slow", 1_000, 5_000, false)
        );
        assert_eq!(
            (w[1].name.as_str(), w[1].start_ms, w[1].end_ms, w[1].instant),
            ("kill", 2_000, 2_000, true)
        );
        assert_eq!((w[2].start_ms, w[2].end_ms, w[2].reverted), (3_000, 6_000, false));
        let p = phase_windows(&timeline, 9_000);
        assert_eq!(p, vec![PhaseWindow { name: "method".into(), start_ms: 100, end_ms: 9_000 }]);
    }

    #[test]
    fn rfc3339_known_instants() {
        let at = |secs: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms);
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(format_rfc3339(at(1_795_606_044, 142)), "2026-11-25T11:27:24.142Z");
        assert_eq!(format_rfc3339(at(4_107_542_399, 999)), "2100-02-28T23:59:59.999Z");
        assert_eq!(format_rfc3339(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00.000Z");
    }
}
