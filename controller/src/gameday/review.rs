//! The game-day review: its data ([`Review`], built by the controller from the game day's record, each
//! scenario's run journal and the incidents linked to the run) and its renderings, Markdown
//! ([`render_markdown`]) and a self-contained HTML page ([`render_html`]: no scripts, nothing fetched).
//!
//! The numbers, per scenario:
//! - time to detect, per expected alert (the plan's `expect` and the experiment's `detection:` alerts): the
//!   run journal's `detection` entry, from the first fault's injection to the alert firing; "not detected"
//!   when it did not fire within the experiment's `within`, "not measured" when the experiment watches no such
//!   alert (or the scenario did not run);
//! - time to recover, per SLO: the journal's `recovery` (from the last fault's revert to the first stretch of
//!   events meeting the objective again; "not shown recovered" when the recovery window holds no such stretch,
//!   which needs at least 1 / (1 − objective) events);
//! - SLO budget consumed, per event SLO (errors, latency): the bad events of the judged window over the bad
//!   events the objective allows in that window, `(total − good) / ((1 − objective) × total)`: 100% means the
//!   scenario spent exactly what the objective allows for that many events ([`budget_consumed`]);
//! - incidents: those linked to the scenario's run.
//!
//! Action items are the plan's seed list, then one per scenario that did not pass and one per expected alert
//! that did not fire or was not measured. The wording is blameless: systems and process, not people.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plan::Participant;
use crate::report::journal::{DetectionOutcome, Journal};
use crate::report::svg::escape;
use crate::slo::SloResult;
use crate::slo::format;
use crate::store::{GameDayRecord, IncidentRef, NoteRecord, ScenarioRecord};

/// Everything a review is rendered from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub participants: Vec<Participant>,
    /// The game day's state (`completed`, `stopped`, `halted`, …).
    pub state: String,
    #[serde(default)]
    pub reason: Option<String>,
    pub actor: String,
    pub started_ms: i64,
    #[serde(default)]
    pub finished_ms: Option<i64>,
    pub scenarios: Vec<ScenarioReview>,
    /// In time order.
    #[serde(default)]
    pub notes: Vec<NoteRecord>,
    /// The plan's seed list.
    #[serde(default)]
    pub action_items: Vec<String>,
}

/// One scenario with its run's journal and incidents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReview {
    #[serde(flatten)]
    pub record: ScenarioRecord,
    /// The alerts the plan expects to detect it.
    #[serde(default)]
    pub expect: Vec<String>,
    /// The run's journal, when it ran.
    #[serde(default)]
    pub journal: Option<Journal>,
    #[serde(default)]
    pub incidents: Vec<IncidentInfo>,
}

/// An incident linked to a scenario's run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentInfo {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub started_ms: i64,
}

impl From<IncidentRef> for IncidentInfo {
    fn from(i: IncidentRef) -> IncidentInfo {
        IncidentInfo {
            id: i.id,
            title: i.title,
            severity: i.severity,
            status: i.status,
            started_ms: i.started_ms,
        }
    }
}

/// What the store holds of one scenario's run: its journal (when it ran) and the incidents linked to it.
pub type RunData = (Option<Journal>, Vec<IncidentInfo>);

impl Review {
    /// The review of `g`; `runs` holds, per scenario in order, its run's journal and incidents.
    pub fn new(g: &GameDayRecord, mut runs: Vec<RunData>) -> Review {
        runs.resize_with(g.scenarios.len(), || (None, Vec::new()));
        let scenarios = g
            .scenarios
            .iter()
            .zip(runs)
            .map(|(record, (journal, incidents))| ScenarioReview {
                record: record.clone(),
                expect: g
                    .plan
                    .scenarios
                    .iter()
                    .find(|s| s.name == record.name)
                    .map(|s| s.expect.clone())
                    .unwrap_or_default(),
                journal,
                incidents,
            })
            .collect();
        let mut notes = g.notes.clone();
        notes.sort_by_key(|n| n.at_ms);
        Review {
            id: g.id.clone(),
            title: g.title.clone(),
            description: g.plan.description.clone(),
            participants: g.plan.participants.clone(),
            state: g.state.clone(),
            reason: g.reason.clone(),
            actor: g.actor.clone(),
            started_ms: g.started_ms,
            finished_ms: g.finished_ms,
            scenarios,
            notes,
            action_items: g.plan.action_items.clone(),
        }
    }
}

/// What is known of one expected alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detected {
    /// Fired this long after the first fault's injection (and resolved after, if it did).
    After { ms: u64, resolved_ms: Option<u64> },
    /// Watched, and did not fire within `within_ms`.
    NotDetected { within_ms: u64 },
    /// Not watched: the experiment has no `detection:` for it, or the scenario did not run.
    NotMeasured,
}

impl Detected {
    pub fn text(&self) -> String {
        match self {
            Detected::After { ms, .. } => human(*ms),
            Detected::NotDetected { within_ms } => format!("not detected (within {})", human(*within_ms)),
            Detected::NotMeasured => "not measured".to_string(),
        }
    }
}

/// Per alert the plan expects or the experiment watches (expected first, in their order), what the run
/// measured.
pub fn detections(s: &ScenarioReview) -> Vec<(String, Detected)> {
    let measured: &[DetectionOutcome] = s.journal.as_ref().map_or(&[], |j| j.detection.as_slice());
    let mut alerts: Vec<String> = s.expect.clone();
    for d in measured {
        if !alerts.contains(&d.alert) {
            alerts.push(d.alert.clone());
        }
    }
    alerts
        .into_iter()
        .map(|alert| {
            let found = measured.iter().find(|d| d.alert == alert);
            let detected = match found {
                Some(DetectionOutcome { detected_after_ms: Some(ms), resolved_after_ms, .. }) => {
                    Detected::After { ms: *ms, resolved_ms: *resolved_after_ms }
                }
                Some(d) => Detected::NotDetected { within_ms: d.within_ms },
                None => Detected::NotMeasured,
            };
            (alert, detected)
        })
        .collect()
}

/// The share of its error budget an event SLO (errors, latency) spent in the judged window: bad events over
/// the bad events the objective allows for that many events. `None` for other signals, without events, or
/// for a 100% objective (no budget).
pub fn budget_consumed(slo: &SloResult) -> Option<(u64, f64, f64)> {
    use crate::experiment::Signal;
    if !matches!(slo.signal, Signal::Errors | Signal::Latency) || slo.total == 0 || slo.objective >= 1.0 {
        return None;
    }
    let bad = slo.total.saturating_sub(slo.good);
    let allowed = (1.0 - slo.objective) * slo.total as f64;
    Some((bad, allowed, bad as f64 / allowed))
}

/// The review's action items: the seed list, then what the scenarios showed.
pub fn action_items(r: &Review) -> Vec<String> {
    let mut items = r.action_items.clone();
    for s in &r.scenarios {
        let name = &s.record.name;
        match s.record.verdict.as_deref() {
            Some("passed") => {}
            Some(verdict) => {
                let why = s.record.reasons.first().map(|r| format!(": {r}")).unwrap_or_default();
                items.push(format!(
                    "Scenario \"{name}\" ended {verdict}{why}. Find what in the system let this happen and what \
                     would make it hold."
                ));
            }
            None if s.record.state == "not-started" => {
                let why = s.record.reasons.first().map(|r| format!(": {r}")).unwrap_or_default();
                items.push(format!(
                    "Scenario \"{name}\" could not start{why}. Make it runnable for the next game day."
                ));
            }
            None => {}
        }
        if s.journal.is_none() {
            continue;
        }
        for (alert, detected) in detections(s) {
            match detected {
                Detected::NotDetected { within_ms } => items.push(format!(
                    "Alert {alert} did not fire within {} of scenario \"{name}\"'s fault. Review its rule \
                     (expression, threshold, `for:`) and the evaluation interval.",
                    human(within_ms)
                )),
                Detected::NotMeasured => items.push(format!(
                    "Detection of scenario \"{name}\" by {alert} was not measured: add it to the experiment's \
                     `detection:`."
                )),
                Detected::After { .. } => {}
            }
        }
    }
    items
}

fn human(ms: u64) -> String {
    format::duration(Duration::from_millis(ms))
}

/// A Unix time in ms as UTC: `2026-12-07 05:30:12 UTC`.
fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// `HH:MM:SS` of a Unix time in ms, UTC.
fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%H:%M:%S").to_string())
}

fn span(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) if e >= s => human(u64::try_from(e - s).unwrap_or(0)),
        _ => "–".to_string(),
    }
}

/// A verdict (or state, for a scenario without one) in capitals.
fn outcome(s: &ScenarioRecord) -> String {
    s.verdict.clone().unwrap_or_else(|| s.state.clone()).to_uppercase()
}

/// Time to recover per SLO, in words.
fn recoveries(s: &ScenarioReview) -> Vec<(String, String)> {
    let Some(j) = &s.journal else { return Vec::new() };
    j.recovery
        .iter()
        .map(|r| {
            let text = r
                .time_to_recover_ms
                .map_or_else(|| "not shown recovered within the recovery window".to_string(), human);
            (r.slo.clone(), text)
        })
        .collect()
}

/// One cell of the summary: every expected alert's time to detect, `–` without any.
fn detect_summary(s: &ScenarioReview) -> String {
    let list = detections(s);
    if list.is_empty() {
        return "not measured".to_string();
    }
    list.iter().map(|(a, d)| format!("{a}: {}", d.text())).collect::<Vec<_>>().join("; ")
}

fn recover_summary(s: &ScenarioReview) -> String {
    match &s.journal {
        None => "not measured".to_string(),
        Some(j) if j.recovery.is_empty() => "not measured".to_string(),
        Some(_) => recoveries(s).iter().map(|(slo, t)| format!("{slo}: {t}")).collect::<Vec<_>>().join("; "),
    }
}

/// Markdown table cell text: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

const BLAMELESS: &str = "This review is blameless: it describes what the systems and the process did, and what \
                         to change in them, not who should have done what.";

/// The review as Markdown.
pub fn render_markdown(r: &Review) -> String {
    let mut md = String::with_capacity(8 * 1024);
    let _ = writeln!(md, "# Game-day review: {}\n", r.title);
    if let Some(d) = &r.description {
        let _ = writeln!(md, "{}\n", d.trim());
    }
    let _ = writeln!(
        md,
        "- **Date:** {} (ran for {})",
        utc(r.started_ms),
        span(Some(r.started_ms), r.finished_ms)
    );
    let _ = writeln!(md, "- **Game day:** `{}`, started by {}", r.id, r.actor);
    let _ = writeln!(md, "- **State:** {}", r.state);
    if let Some(reason) = &r.reason {
        let _ = writeln!(md, "- **Ended early:** {reason}");
    }
    let passed = r.scenarios.iter().filter(|s| s.record.verdict.as_deref() == Some("passed")).count();
    let _ = writeln!(md, "- **Scenarios:** {passed} of {} passed\n", r.scenarios.len());

    md.push_str("## Participants\n\n");
    if r.participants.is_empty() {
        md.push_str("None listed in the plan.\n\n");
    } else {
        md.push_str("| Name | Role |\n|---|---|\n");
        for p in &r.participants {
            let _ = writeln!(md, "| {} | {} |", cell(&p.name), p.role.as_str());
        }
        md.push('\n');
    }

    md.push_str("## Summary\n\n| # | Scenario | Verdict | Time to detect | Time to recover | Incidents |\n");
    md.push_str("|---|---|---|---|---|---|\n");
    for (i, s) in r.scenarios.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            i + 1,
            cell(&s.record.name),
            outcome(&s.record),
            cell(&detect_summary(s)),
            cell(&recover_summary(s)),
            s.incidents.len()
        );
    }
    md.push('\n');

    md.push_str("## Scenarios\n\n");
    for (i, s) in r.scenarios.iter().enumerate() {
        scenario_markdown(&mut md, i + 1, s);
    }

    md.push_str("## Notes\n\n");
    if r.notes.is_empty() {
        md.push_str("No notes were added.\n\n");
    } else {
        md.push_str("| Time (UTC) | Author | Note |\n|---|---|---|\n");
        for n in &r.notes {
            let _ = writeln!(md, "| {} | {} | {} |", clock(n.at_ms), cell(&n.author), cell(&n.text));
        }
        md.push('\n');
    }

    md.push_str("## Action items\n\n");
    let items = action_items(r);
    if items.is_empty() {
        md.push_str("None: every scenario passed and every expected alert fired in time.\n\n");
    }
    for item in items {
        let _ = writeln!(md, "- [ ] {}", cell(&item));
    }
    if !md.ends_with("\n\n") {
        md.push('\n');
    }
    let _ = writeln!(md, "_{BLAMELESS}_");
    md
}

fn scenario_markdown(md: &mut String, n: usize, s: &ScenarioReview) {
    let rec = &s.record;
    let _ = writeln!(md, "### {n}. {}: {}\n", rec.name, outcome(rec));
    let run = rec.run_id.as_deref().map_or_else(|| "no run".to_string(), |id| format!("run `{id}`"));
    let _ = writeln!(
        md,
        "Experiment `{}`, {run}, started {}, lasted {}.\n",
        rec.experiment,
        rec.started_ms.map_or_else(|| "–".to_string(), clock),
        span(rec.started_ms, rec.finished_ms)
    );
    if !rec.reasons.is_empty() {
        md.push_str("Why:\n\n");
        for reason in &rec.reasons {
            let _ = writeln!(md, "- {}", reason.replace('\n', " "));
        }
        md.push('\n');
    }
    md.push_str("**Detection**\n\n");
    let list = detections(s);
    if list.is_empty() {
        md.push_str("Not measured: no alert expected, and the experiment watches none (`detection:`).\n\n");
    } else {
        md.push_str("| Alert | Time to detect | Resolved after |\n|---|---|---|\n");
        for (alert, d) in &list {
            let resolved = match d {
                Detected::After { resolved_ms: Some(ms), .. } => human(*ms),
                Detected::After { resolved_ms: None, .. } => "still firing when the run ended".to_string(),
                _ => "–".to_string(),
            };
            let _ = writeln!(md, "| {} | {} | {resolved} |", cell(alert), d.text());
        }
        md.push('\n');
    }
    md.push_str("**Recovery**\n\n");
    let rec_list = recoveries(s);
    if rec_list.is_empty() {
        md.push_str("Not measured.\n\n");
    } else {
        md.push_str("| SLO | Time to recover |\n|---|---|\n");
        for (slo, t) in rec_list {
            let _ = writeln!(md, "| {} | {t} |", cell(&slo));
        }
        md.push('\n');
    }
    md.push_str("**SLO budget consumed**\n\n");
    let slos: &[SloResult] = s.journal.as_ref().map_or(&[], |j| j.slos.as_slice());
    if slos.is_empty() {
        md.push_str("Not measured.\n\n");
    } else {
        md.push_str("| SLO | Window | Bad events | Allowed by the objective | Budget consumed |\n|---|---|---|---|---|\n");
        for slo in slos {
            let (bad, allowed, share) = match budget_consumed(slo) {
                Some((bad, allowed, share)) => {
                    (format::count(bad), format!("{allowed:.1}"), format::percent(share, 1))
                }
                None => ("–".into(), "–".into(), "not an event SLO".into()),
            };
            let _ =
                writeln!(md, "| {} | {} | {bad} | {allowed} | {share} |", cell(&slo.name), cell(&slo.window));
        }
        md.push('\n');
    }
    md.push_str("**Incidents opened**\n\n");
    if s.incidents.is_empty() {
        md.push_str("None.\n\n");
    } else {
        for i in &s.incidents {
            let _ =
                writeln!(md, "- `{}` {} {} ({})", i.id, i.severity.to_uppercase(), cell(&i.title), i.status);
        }
        md.push('\n');
    }
}

/// The review as one self-contained HTML page.
pub fn render_html(r: &Review) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\">\
         <title>Game-day review: {} · chaos</title><style>{CSS}</style></head><body><main>",
        escape(&r.title)
    );
    let _ = write!(
        h,
        "<header><p class=\"state {}\" id=\"state\">{}</p><h1>Game-day review: {}</h1>",
        state_class(&r.state),
        escape(&r.state),
        escape(&r.title)
    );
    if let Some(d) = &r.description {
        let _ = write!(h, "<p class=\"desc\">{}</p>", escape(d.trim()));
    }
    let passed = r.scenarios.iter().filter(|s| s.record.verdict.as_deref() == Some("passed")).count();
    let _ = write!(
        h,
        "<p class=\"meta\">{} · ran for {} · game day <code>{}</code> started by {} · {passed} of {} scenarios passed</p>",
        escape(&utc(r.started_ms)),
        escape(&span(Some(r.started_ms), r.finished_ms)),
        escape(&r.id),
        escape(&r.actor),
        r.scenarios.len()
    );
    if let Some(reason) = &r.reason {
        let _ = write!(h, "<p class=\"warn\">Ended early: {}</p>", escape(reason));
    }
    h.push_str("</header><section id=\"participants\"><h2>Participants</h2>");
    if r.participants.is_empty() {
        h.push_str("<p>None listed in the plan.</p>");
    } else {
        h.push_str("<table><tr><th>Name</th><th>Role</th></tr>");
        for p in &r.participants {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", escape(&p.name), p.role.as_str());
        }
        h.push_str("</table>");
    }
    h.push_str(
        "</section><section id=\"summary\"><h2>Summary</h2><table><tr><th>#</th><th>Scenario</th>\
                <th>Verdict</th><th>Time to detect</th><th>Time to recover</th><th>Incidents</th></tr>",
    );
    for (i, s) in r.scenarios.iter().enumerate() {
        let o = outcome(&s.record);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            i + 1,
            escape(&s.record.name),
            state_class(&o.to_lowercase()),
            escape(&o),
            escape(&detect_summary(s)),
            escape(&recover_summary(s)),
            s.incidents.len()
        );
    }
    h.push_str("</table></section><section id=\"scenarios\"><h2>Scenarios</h2>");
    for (i, s) in r.scenarios.iter().enumerate() {
        scenario_html(&mut h, i + 1, s);
    }
    h.push_str("</section><section id=\"notes\"><h2>Notes</h2>");
    if r.notes.is_empty() {
        h.push_str("<p>No notes were added.</p>");
    } else {
        h.push_str("<table><tr><th>Time (UTC)</th><th>Author</th><th>Note</th></tr>");
        for n in &r.notes {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                clock(n.at_ms),
                escape(&n.author),
                escape(&n.text)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section><section id=\"action-items\"><h2>Action items</h2>");
    let items = action_items(r);
    if items.is_empty() {
        h.push_str("<p>None: every scenario passed and every expected alert fired in time.</p>");
    } else {
        h.push_str("<ul>");
        for item in items {
            let _ = write!(h, "<li>{}</li>", escape(&item));
        }
        h.push_str("</ul>");
    }
    let _ = writeln!(
        h,
        "</section><footer>{BLAMELESS} This file is self-contained: no scripts, nothing fetched.</footer></main></body></html>"
    );
    h
}

fn state_class(state: &str) -> &'static str {
    match state {
        "passed" | "completed" => "ok",
        "failed" | "stopped" | "halted" => "bad",
        _ => "warn",
    }
}

fn scenario_html(h: &mut String, n: usize, s: &ScenarioReview) {
    let rec = &s.record;
    let o = outcome(rec);
    let _ = write!(
        h,
        "<article class=\"scenario\"><h3>{n}. {} <span class=\"{}\">{}</span></h3><p class=\"meta\">experiment \
         <code>{}</code> · {} · started {} · lasted {}</p>",
        escape(&rec.name),
        state_class(&o.to_lowercase()),
        escape(&o),
        escape(&rec.experiment),
        rec.run_id
            .as_deref()
            .map_or_else(|| "no run".to_string(), |id| format!("run <code>{}</code>", escape(id))),
        rec.started_ms.map_or_else(|| "–".to_string(), clock),
        escape(&span(rec.started_ms, rec.finished_ms))
    );
    if !rec.reasons.is_empty() {
        h.push_str("<ul class=\"reasons\">");
        for reason in &rec.reasons {
            let _ = write!(h, "<li>{}</li>", escape(reason));
        }
        h.push_str("</ul>");
    }
    h.push_str("<h4>Detection</h4>");
    let list = detections(s);
    if list.is_empty() {
        h.push_str("<p>Not measured: no alert expected, and the experiment watches none.</p>");
    } else {
        h.push_str("<table><tr><th>Alert</th><th>Time to detect</th><th>Resolved after</th></tr>");
        for (alert, d) in &list {
            let class = match d {
                Detected::After { .. } => "ok",
                Detected::NotDetected { .. } => "bad",
                Detected::NotMeasured => "warn",
            };
            let resolved = match d {
                Detected::After { resolved_ms: Some(ms), .. } => human(*ms),
                Detected::After { resolved_ms: None, .. } => "still firing when the run ended".to_string(),
                _ => "–".to_string(),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td></tr>",
                escape(alert),
                escape(&d.text()),
                escape(&resolved)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h4>Recovery</h4>");
    let rec_list = recoveries(s);
    if rec_list.is_empty() {
        h.push_str("<p>Not measured.</p>");
    } else {
        h.push_str("<table><tr><th>SLO</th><th>Time to recover</th></tr>");
        for (slo, t) in rec_list {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", escape(&slo), escape(&t));
        }
        h.push_str("</table>");
    }
    h.push_str("<h4>SLO budget consumed</h4>");
    let slos: &[SloResult] = s.journal.as_ref().map_or(&[], |j| j.slos.as_slice());
    if slos.is_empty() {
        h.push_str("<p>Not measured.</p>");
    } else {
        h.push_str(
            "<table><tr><th>SLO</th><th>Window</th><th>Bad events</th><th>Allowed by the objective</th>\
                    <th>Budget consumed</th></tr>",
        );
        for slo in slos {
            let (bad, allowed, share) = match budget_consumed(slo) {
                Some((bad, allowed, share)) => {
                    (format::count(bad), format!("{allowed:.1}"), format::percent(share, 1))
                }
                None => ("–".into(), "–".into(), "not an event SLO".into()),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&slo.name),
                escape(&slo.window),
                escape(&bad),
                escape(&allowed),
                escape(&share)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h4>Incidents opened</h4>");
    if s.incidents.is_empty() {
        h.push_str("<p>None.</p>");
    } else {
        h.push_str("<ul>");
        for i in &s.incidents {
            let _ = write!(
                h,
                "<li><code>{}</code> {} {} ({})</li>",
                escape(&i.id),
                escape(&i.severity.to_uppercase()),
                escape(&i.title),
                escape(&i.status)
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</article>");
}

const CSS: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--bg:#fff;--panel:#f6f8fa;--line:#d1d9e0;--ok:#1a7f37;--bad:#cf222e;
--warn:#9a6700;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--panel:#151b23;
--line:#3d444d;--ok:#3fb950;--bad:#f85149;--warn:#d29922}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:.2em 0}h2{border-bottom:1px solid var(--line);padding-bottom:.2em;margin-top:1.6em}
h4{margin:.8em 0 .3em}
code{font-family:ui-monospace,monospace;background:var(--panel);padding:0 .3em;border-radius:4px}
.state{display:inline-block;font-weight:700;font-size:1.1em;text-transform:uppercase;padding:.2em .7em;
border-radius:6px;margin:0;color:#fff}
.state.ok{background:var(--ok)}.state.bad{background:var(--bad)}.state.warn{background:var(--warn)}
.meta,.desc,footer{color:var(--muted)}footer{margin-top:2em;font-size:.85em}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn);font-weight:600}
table{border-collapse:collapse;width:100%;margin:.6em 0;font-size:.92em}
th,td{border:1px solid var(--line);padding:.25em .5em;text-align:left;vertical-align:top}
th{background:var(--panel)}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
article.scenario{margin:1em 0;padding:.2em 1em 1em;border:1px solid var(--line);border-radius:8px}
.state.ok,.state.bad,.state.warn{color:#fff}
"#;
