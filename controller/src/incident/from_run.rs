//! The incident a failed run opens (the experiment's `on_failure.incident`): its title, severity and people
//! from the template, its times and timeline from the run's journal, in wall clock (the journal's
//! `started_at` plus each offset).
//!
//! Which runs: a `failed` verdict only (a refuted hypothesis, or a guardrail that tripped and aborted the
//! run). `inconclusive` runs (halted, interrupted, not steady before the method, a source that erred) open
//! none: they say nothing about the system under test.
//!
//! The timeline: one `fault_injected` per fault, the first SLO breach (`slo_breach`), every guardrail trip
//! (`guardrail`), `faults_reverted` when the last fault ended, `recovered` when every breached SLO held again
//! (or a note that one did not within the recovery window), then `opened` and `linked_run`. The incident
//! started at the first fault's injection (the run's start without faults) and was detected at the earlier
//! of the first guardrail trip and the first breach (the run's end when neither was seen).

use crate::experiment::model::{IncidentTemplate, OnFailure};
use crate::report::journal::{Journal, TimelineKind, Verdict};

use super::{
    Entry, EntryKind, Incident, MAX_TITLE, Opening, Refused, Severity, check_name, check_names, check_text,
    human_ms,
};

/// The largest `on_failure` block a schedule may carry.
pub const MAX_ON_FAILURE: usize = 64 * 1024;

/// A schedule's own `on_failure` block (YAML or JSON, the experiment's `on_failure:` syntax), checked as an
/// experiment's is; errors say where (the parser's line and column, or the field).
pub fn parse_on_failure(text: &str) -> Result<OnFailure, String> {
    if text.len() > MAX_ON_FAILURE {
        return Err(format!("on_failure is {} bytes long; at most {MAX_ON_FAILURE} are allowed", text.len()));
    }
    let parsed: OnFailure = serde_saphyr::from_str(text).map_err(|e| format!("on_failure: {e}"))?;
    if let Some(t) = &parsed.incident {
        check_template(t).map_err(|e| format!("on_failure.incident.{e}"))?;
    }
    Ok(parsed)
}

/// `CreateScheduleRequest.on_failure`: `None` when empty (the experiment's applies).
pub fn parse_on_failure_field(text: &str) -> Result<Option<OnFailure>, String> {
    if text.trim().is_empty() { Ok(None) } else { parse_on_failure(text).map(Some) }
}

/// The checks of an `on_failure.incident` template; the error starts with the field's name.
pub fn check_template(t: &IncidentTemplate) -> Result<(), String> {
    t.severity.parse::<Severity>().map_err(|e| format!("severity: {e}"))?;
    if let Some(title) = &t.title {
        check_text("the title", title, MAX_TITLE).map_err(|e| format!("title: {e}"))?;
        if title.contains('\n') {
            return Err("title: the title must be one line".into());
        }
    }
    if let Some(c) = &t.commander {
        check_name("the commander", c).map_err(|e| format!("commander: {e}"))?;
    }
    check_names("service", &t.services).map_err(|e| format!("services: {e}"))?;
    check_names("responder", &t.responders).map_err(|e| format!("responders: {e}"))
}

/// Who the run-derived entries are by.
pub const AUTHOR: &str = "chaos";

/// Whether a run with `verdict` opens an incident (when its experiment asks for one).
pub fn opens_incident(verdict: Verdict) -> bool {
    verdict == Verdict::Failed
}

/// The run's start in wall clock (ms), from the journal's `started_at`; `None` when it does not parse.
pub fn journal_start_ms(journal: &Journal) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(&journal.started_at).ok().map(|t| t.timestamp_millis())
}

/// The incident `id` for run `run_id` (its journal `journal`), opened at `now_ms` by `run:RUN_ID`.
/// `fallback_start_ms` is used when the journal's start does not parse.
pub fn incident_from_run(
    id: String,
    template: &IncidentTemplate,
    run_id: &str,
    journal: &Journal,
    fallback_start_ms: i64,
    now_ms: i64,
) -> Result<Incident, Refused> {
    let severity = template.severity.parse().map_err(Refused::Invalid)?;
    let base = journal_start_ms(journal).unwrap_or(fallback_start_ms);
    let at = |offset: u64| base.saturating_add(i64::try_from(offset).unwrap_or(i64::MAX));
    let mut entries = Vec::new();
    let mut entry = |at_ms: i64, kind: EntryKind, text: String| {
        entries.push(Entry { at_ms, author: AUTHOR.to_string(), kind, text });
    };
    for f in &journal.faults {
        let detail = if f.detail.is_empty() { String::new() } else { format!(": {}", f.detail) };
        entry(at(f.start_ms), EntryKind::FaultInjected, format!("fault `{}` injected{detail}", f.name));
    }
    let first_breach =
        journal.slo_series.iter().filter_map(|s| s.breach_ms.map(|b| (b, s))).min_by_key(|(b, _)| *b);
    if let Some((b, series)) = first_breach {
        let reason = journal
            .slos
            .iter()
            .find(|r| r.name == series.name)
            .map(|r| format!(": {}", r.reason))
            .unwrap_or_default();
        entry(at(b), EntryKind::SloBreach, format!("SLO `{}` breached{reason}", series.name));
    }
    let trips: Vec<_> = journal
        .timeline
        .iter()
        .filter(|t| t.kind == TimelineKind::Guardrail && t.ok == Some(false))
        .collect();
    for t in &trips {
        let what = if t.detail.is_empty() { t.name.clone() } else { t.detail.clone() };
        entry(at(t.at_ms), EntryKind::Guardrail, format!("guardrail tripped: {what}"));
    }
    if let Some(last) = journal.faults.iter().map(|f| f.end_ms).max() {
        let failed: Vec<&str> =
            journal.faults.iter().filter(|f| !f.reverted && !f.instant).map(|f| f.name.as_str()).collect();
        let text = if failed.is_empty() {
            format!("{} fault(s) reverted", journal.faults.len())
        } else {
            format!("faults ended; not reverted as planned: {}", failed.join(", "))
        };
        entry(at(last), EntryKind::FaultsReverted, text);
    }
    let breached: Vec<_> = journal.slo_series.iter().filter(|s| s.breach_ms.is_some()).collect();
    let measured: Vec<_> = breached.iter().filter(|s| s.fault_end_ms.is_some()).collect();
    let unrecovered: Vec<&str> =
        measured.iter().filter(|s| s.recovered_ms.is_none()).map(|s| s.name.as_str()).collect();
    if !measured.is_empty() {
        if unrecovered.is_empty() {
            let last = measured.iter().filter_map(|s| s.recovered_ms).max().unwrap_or_default();
            let slowest =
                journal.recovery.iter().filter_map(|r| r.time_to_recover_ms).max().unwrap_or_default();
            let ttr = i64::try_from(slowest).unwrap_or(i64::MAX);
            entry(
                at(last),
                EntryKind::Recovered,
                format!("every breached SLO held again ({} after the faults)", human_ms(ttr)),
            );
        } else {
            let end = at(journal.duration_ms);
            entry(
                end,
                EntryKind::Note,
                format!("not recovered within the recovery window: {}", unrecovered.join(", ")),
            );
        }
    }
    let breach_at = first_breach.map(|(b, _)| at(b));
    let trip_at = trips.first().map(|t| at(t.at_ms));
    let finished = at(journal.duration_ms).min(now_ms);
    let detected = [breach_at, trip_at].into_iter().flatten().min().unwrap_or(finished);
    let started = journal.faults.iter().map(|f| at(f.start_ms)).min().unwrap_or(base).min(detected);
    let verdict = journal.verdict.as_str();
    let title = template.title.clone().unwrap_or_else(|| format!("{}: {verdict}", journal.experiment.title));
    let title: String = truncate(&title, MAX_TITLE);
    let summary = if journal.reasons.is_empty() {
        None
    } else {
        Some(truncate(&format!("run {run_id} {verdict}: {}", journal.reasons.join("; ")), super::MAX_TEXT))
    };
    let opening = Opening {
        title,
        severity,
        started_ms: started.min(now_ms),
        detected_ms: Some(detected.min(now_ms)),
        commander: template.commander.clone(),
        responders: template.responders.clone(),
        services: template.services.clone(),
        summary,
    };
    let mut incident = Incident::open(id, opening, now_ms, &format!("run:{run_id}"))?;
    let mut timeline = entries;
    timeline.append(&mut incident.timeline);
    timeline.push(Entry {
        at_ms: now_ms,
        author: AUTHOR.into(),
        kind: EntryKind::LinkedRun,
        text: format!("run {run_id} linked: the run that found it"),
    });
    // Stable: entries at the same moment keep the order they were made in.
    timeline.sort_by_key(|e| e.at_ms);
    incident.timeline = timeline;
    incident.runs.push(run_id.to_string());
    Ok(incident)
}

/// At most `max` bytes of `text`, cut at a character boundary (with `…` when cut).
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::journal::{ExperimentInfo, RecoveryOutcome, TimelineEntry};
    use crate::report::series::{FaultWindow, SloSeries};

    fn journal() -> Journal {
        Journal {
            experiment: ExperimentInfo {
                title: "checkout under latency".into(),
                ..ExperimentInfo::default()
            },
            started_at: "2026-12-07T05:00:00.000Z".into(),
            duration_ms: 60_000,
            verdict: Verdict::Failed,
            reasons: vec!["errors: 91% good, objective 99%".into()],
            faults: vec![FaultWindow {
                name: "slow db".into(),
                detail: "latency 800ms".into(),
                start_ms: 10_000,
                end_ms: 40_000,
                instant: false,
                reverted: true,
            }],
            timeline: vec![TimelineEntry {
                at_ms: 25_000,
                kind: TimelineKind::Guardrail,
                name: "guardrail".into(),
                detail: "errors burn rate 20x".into(),
                ok: Some(false),
            }],
            slo_series: vec![SloSeries {
                name: "errors".into(),
                signal: crate::experiment::model::Signal::Errors,
                source: "load:web".into(),
                objective: 0.99,
                threshold_ms: None,
                sli: vec![],
                breach_ms: Some(13_000),
                fault_end_ms: Some(40_000),
                recovered_ms: Some(44_000),
            }],
            recovery: vec![RecoveryOutcome { slo: "errors".into(), time_to_recover_ms: Some(4_000) }],
            ..Journal::default()
        }
    }

    #[test]
    fn the_timeline_and_times_come_from_the_journal_in_wall_clock() {
        let t = IncidentTemplate {
            severity: "SEV2".into(),
            title: None,
            services: vec!["checkout".into()],
            commander: Some("ana".into()),
            responders: vec![],
        };
        let base = 1_796_619_600_000; // 2026-12-07T05:00:00Z
        let now = base + 70_000;
        let inc = incident_from_run("inc-1".into(), &t, "r-1", &journal(), 0, now).unwrap();
        assert_eq!(inc.title, "checkout under latency: failed");
        assert_eq!(inc.started_ms, base + 10_000, "the first fault's injection");
        assert_eq!(inc.detected_ms, Some(base + 13_000), "the first breach, before the guardrail trip");
        assert_eq!(inc.time_to_detect_ms(), Some(3_000));
        assert_eq!(inc.runs, ["r-1"]);
        use EntryKind::*;
        let got: Vec<(i64, EntryKind)> = inc.timeline.iter().map(|e| (e.at_ms - base, e.kind)).collect();
        assert_eq!(
            got,
            [
                (10_000, FaultInjected),
                (13_000, SloBreach),
                (25_000, Guardrail),
                (40_000, FaultsReverted),
                (44_000, Recovered),
                (70_000, Opened),
                (70_000, Note),
                (70_000, LinkedRun),
            ]
        );
        assert_eq!(inc.timeline[2].text, "guardrail tripped: errors burn rate 20x");
        assert_eq!(inc.timeline[4].text, "every breached SLO held again (4 s after the faults)");
        assert_eq!(inc.opened_by, "run:r-1");
    }

    #[test]
    fn a_schedules_on_failure_is_parsed_and_checked() {
        let parsed = parse_on_failure("incident: {severity: SEV1, services: [checkout]}").unwrap();
        assert_eq!(parsed.incident.unwrap().services, ["checkout"]);
        assert_eq!(parse_on_failure("{}").unwrap(), OnFailure { incident: None });
        let bad = parse_on_failure("incident: {severity: sev7}").unwrap_err();
        assert!(bad.starts_with("on_failure.incident.severity: unknown severity \"sev7\""), "{bad}");
        let unknown = parse_on_failure("incident: {severity: sev1, pager: x}").unwrap_err();
        assert!(unknown.contains("pager"), "{unknown}");
        let empty = parse_on_failure("incident: {severity: sev1, services: [\"\"]}").unwrap_err();
        assert_eq!(empty, "on_failure.incident.services: service must not be empty");
    }

    #[test]
    fn only_failed_runs_open_incidents() {
        assert!(opens_incident(Verdict::Failed));
        for v in [Verdict::Passed, Verdict::Inconclusive, Verdict::Invalid] {
            assert!(!opens_incident(v), "{v}");
        }
    }

    #[test]
    fn long_titles_are_cut_at_a_character_boundary() {
        let cut = truncate(&"é".repeat(200), 11);
        assert_eq!(cut, "éééé…");
        assert!(cut.len() <= 11);
    }
}
