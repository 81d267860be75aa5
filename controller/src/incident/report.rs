//! The blameless incident review (`chaos incident report ID`), in Markdown ([`markdown`]) or as one
//! self-contained HTML page ([`html`]: the run report's stylesheet, no script, nothing fetched, every string
//! escaped). Sections: summary (severity, status, services, people, times), impact (per linked run its verdict
//! and SLO numbers from its journal), time to detect / acknowledge / recover, timeline, root cause, action
//! items, responders. It names what happened and what to change, never who is to blame.

use std::fmt::Write;

use crate::report::journal::{Journal, format_rfc3339};
use crate::report::svg::escape;

use super::{Incident, human_ms, ms_to_time};

/// A run linked to the incident, with its journal when the controller has one.
#[derive(Clone, Debug)]
pub struct LinkedRun {
    pub id: String,
    pub journal: Option<Journal>,
}

fn when(ms: i64) -> String {
    format_rfc3339(ms_to_time(ms))
}

fn opt_when(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".into(), when)
}

fn opt_span(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".into(), human_ms)
}

fn percent(f: f64) -> String {
    format!("{:.2}%", f * 100.0)
}

/// The rows of the summary table: (label, value).
fn summary_rows(i: &Incident) -> Vec<(&'static str, String)> {
    let list = |l: &[String]| if l.is_empty() { "—".to_string() } else { l.join(", ") };
    vec![
        ("Severity", i.severity.to_string()),
        ("Status", i.status.to_string()),
        ("Services", list(&i.services)),
        ("Commander", i.commander.clone().unwrap_or_else(|| "—".into())),
        ("Opened by", i.opened_by.clone()),
        ("Started", when(i.started_ms)),
        ("Detected", opt_when(i.detected_ms)),
        (
            "Acknowledged",
            match (&i.acknowledged_ms, &i.acknowledged_by) {
                (Some(ms), Some(by)) => format!("{} by {by}", when(*ms)),
                (ms, _) => opt_when(*ms),
            },
        ),
        ("Resolved", opt_when(i.resolved_ms)),
    ]
}

/// The rows of the times table: (what, from → to, value).
fn time_rows(i: &Incident) -> [(&'static str, &'static str, String); 3] {
    [
        ("Time to detect", "started → detected", opt_span(i.time_to_detect_ms())),
        ("Time to acknowledge", "detected → acknowledged", opt_span(i.time_to_acknowledge_ms())),
        ("Time to recover", "started → resolved", opt_span(i.time_to_recover_ms())),
    ]
}

/// The review in Markdown.
pub fn markdown(i: &Incident, runs: &[LinkedRun]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Incident review: {}\n", i.title);
    let _ = writeln!(md, "`{}` · {} · {}\n", i.id, i.severity, i.status);
    md.push_str("*A blameless review: what happened, how it was found and fixed, and what to change.*\n\n");
    md.push_str("## Summary\n\n| | |\n|---|---|\n");
    for (k, v) in summary_rows(i) {
        let _ = writeln!(md, "| {k} | {} |", cell(&v));
    }
    md.push_str("\n## Impact\n\n");
    if runs.is_empty() {
        md.push_str("No run is linked to this incident.\n");
    }
    for run in runs {
        let Some(j) = &run.journal else {
            let _ = writeln!(md, "- run `{}`: no journal stored (the run did not finish)", run.id);
            continue;
        };
        let _ = writeln!(md, "### Run `{}`: {} — {}\n", run.id, j.experiment.title, j.verdict);
        for r in &j.reasons {
            let _ = writeln!(md, "- {r}");
        }
        if !j.slos.is_empty() {
            md.push_str("\n| SLO | window | observed | objective | good / total | result |\n|---|---|---|---|---|---|\n");
            for s in &j.slos {
                let result = match s.passed {
                    Some(true) => "met",
                    Some(false) => "missed",
                    None => "inconclusive",
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} / {} | {result} |",
                    cell(&s.name),
                    cell(&s.window),
                    percent(s.observed),
                    percent(s.objective),
                    s.good,
                    s.total
                );
            }
        }
        let recovered: Vec<String> = j
            .recovery
            .iter()
            .map(|r| match r.time_to_recover_ms {
                Some(ms) => format!("{} recovered {} after the faults", r.slo, human_ms(ms as i64)),
                None => format!("{} did not recover within the recovery window", r.slo),
            })
            .collect();
        if !recovered.is_empty() {
            let _ = writeln!(md, "\nRecovery: {}.", recovered.join("; "));
        }
        md.push('\n');
    }
    md.push_str("\n## Time to detect, acknowledge and recover\n\n| | measured | |\n|---|---|---|\n");
    for (what, span, value) in time_rows(i) {
        let _ = writeln!(md, "| {what} | {span} | {value} |");
    }
    md.push_str("\n## Timeline\n\n| time (UTC) | kind | by | what |\n|---|---|---|---|\n");
    for e in &i.timeline {
        let _ = writeln!(md, "| {} | {} | {} | {} |", when(e.at_ms), e.kind, cell(&e.author), cell(&e.text));
    }
    md.push_str("\n## Root cause\n\n");
    md.push_str(i.root_cause.as_deref().unwrap_or("Not recorded yet."));
    md.push_str("\n\n## Action items\n\n");
    if i.action_items.is_empty() {
        md.push_str("None recorded yet.\n");
    }
    for a in &i.action_items {
        let owner = a.owner.as_ref().map(|o| format!(" (owner: {o})")).unwrap_or_default();
        let _ = writeln!(md, "- [{}] {}{owner}", if a.done { "x" } else { " " }, a.text);
    }
    md.push_str("\n## Responders\n\n");
    if i.commander.is_none() && i.responders.is_empty() {
        md.push_str("None recorded.\n");
    }
    if let Some(c) = &i.commander {
        let _ = writeln!(md, "- {c} (commander)");
    }
    for r in &i.responders {
        let _ = writeln!(md, "- {r}");
    }
    md
}

/// A table cell: no pipes or line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The review as one self-contained HTML page.
pub fn html(i: &Incident, runs: &[LinkedRun]) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let title = escape(&i.title);
    let state = if i.status == super::Status::Resolved { "passed" } else { "failed" };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\">\
         <title>{sev}: {title} · incident review</title><style>{css}</style></head><body><main><header>\
         <p class=\"verdict {state}\" id=\"status\">{sev} · {status}</p><h1>{title}</h1>\
         <p class=\"meta\"><code>{id}</code> · a blameless review: what happened, how it was found and fixed, \
         and what to change</p></header>",
        sev = i.severity,
        status = i.status,
        id = escape(&i.id),
        css = crate::report::html::CSS,
    );
    h.push_str("<section id=\"summary\"><h2>Summary</h2><table>");
    for (k, v) in summary_rows(i) {
        let _ = write!(h, "<tr><th scope=\"row\">{k}</th><td>{}</td></tr>", escape(&v));
    }
    h.push_str("</table></section><section id=\"impact\"><h2>Impact</h2>");
    if runs.is_empty() {
        h.push_str("<p>No run is linked to this incident.</p>");
    }
    for run in runs {
        let Some(j) = &run.journal else {
            let _ = write!(h, "<p>Run <code>{}</code>: no journal stored.</p>", escape(&run.id));
            continue;
        };
        let _ = write!(
            h,
            "<h3>Run <code>{}</code>: {} — <span class=\"{}\">{}</span></h3><ul class=\"reasons\">",
            escape(&run.id),
            escape(&j.experiment.title),
            if j.verdict == crate::report::journal::Verdict::Passed { "ok" } else { "bad" },
            j.verdict
        );
        for r in &j.reasons {
            let _ = write!(h, "<li>{}</li>", escape(r));
        }
        h.push_str("</ul>");
        if !j.slos.is_empty() {
            h.push_str(
                "<table class=\"slos\"><tr><th>SLO</th><th>window</th><th>observed</th><th>objective</th>\
                 <th>good / total</th><th>result</th></tr>",
            );
            for s in &j.slos {
                let (class, result) = match s.passed {
                    Some(true) => ("ok", "met"),
                    Some(false) => ("bad", "missed"),
                    None => ("warn", "inconclusive"),
                };
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{} / {}</td><td class=\"{class}\">{result}</td></tr>",
                    escape(&s.name),
                    escape(&s.window),
                    percent(s.observed),
                    percent(s.objective),
                    s.good,
                    s.total
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str("</section><section id=\"times\"><h2>Time to detect, acknowledge and recover</h2><table>");
    for (what, span, value) in time_rows(i) {
        let _ = write!(
            h,
            "<tr><th scope=\"row\">{what}</th><td>{span}</td><td class=\"num\">{}</td></tr>",
            escape(&value)
        );
    }
    h.push_str(
        "</table></section><section id=\"timeline\"><h2>Timeline</h2><table><tr><th>time (UTC)</th><th>kind</th>\
         <th>by</th><th>what</th></tr>",
    );
    for e in &i.timeline {
        let _ = write!(
            h,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&when(e.at_ms)),
            e.kind,
            escape(&e.author),
            escape(&e.text)
        );
    }
    let _ = write!(
        h,
        "</table></section><section id=\"root-cause\"><h2>Root cause</h2><p>{}</p></section>\
         <section id=\"action-items\"><h2>Action items</h2><ul>",
        escape(i.root_cause.as_deref().unwrap_or("Not recorded yet."))
    );
    if i.action_items.is_empty() {
        h.push_str("<li>None recorded yet.</li>");
    }
    for a in &i.action_items {
        let owner = a.owner.as_ref().map(|o| format!(" (owner: {})", escape(o))).unwrap_or_default();
        let _ = write!(h, "<li>{} {}{owner}</li>", if a.done { "☑" } else { "☐" }, escape(&a.text));
    }
    h.push_str("</ul></section><section id=\"responders\"><h2>Responders</h2><ul>");
    if let Some(c) = &i.commander {
        let _ = write!(h, "<li>{} (commander)</li>", escape(c));
    }
    for r in &i.responders {
        let _ = write!(h, "<li>{}</li>", escape(r));
    }
    h.push_str(
        "</ul></section><footer>chaos incident review · this file is self-contained: no scripts, nothing \
         fetched</footer></main></body></html>\n",
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{ActionItem, Change, Opening, Severity, Update};

    fn incident() -> Incident {
        let o = Opening {
            title: "checkout <errors> & timeouts".into(),
            severity: Severity::Sev2,
            started_ms: 1_796_619_600_000,
            detected_ms: Some(1_796_619_660_000),
            commander: Some("ana".into()),
            responders: vec!["bo".into()],
            services: vec!["checkout".into()],
            summary: None,
        };
        let mut i = Incident::open("inc-1".into(), o, 1_796_619_700_000, "ana").unwrap();
        let u = Update {
            add_action_items: vec![ActionItem {
                text: "page on pool saturation".into(),
                owner: Some("bo".into()),
                done: false,
            }],
            ..Update::default()
        };
        i.apply(&Change::Update(u), 1_796_619_710_000, "ana").unwrap();
        let resolve = Change::Resolve { root_cause: Some("connection pool of 4".into()), note: None };
        i.apply(&resolve, 1_796_623_200_000, "ana").unwrap();
        i
    }

    #[test]
    fn the_markdown_review_has_every_section_and_the_times() {
        let md = markdown(&incident(), &[]);
        for heading in
            ["## Summary", "## Impact", "## Timeline", "## Root cause", "## Action items", "## Responders"]
        {
            assert!(md.contains(heading), "{heading} missing:\n{md}");
        }
        assert!(md.contains("| Time to detect | started → detected | 1 min 0 s |"), "{md}");
        assert!(md.contains("| Time to recover | started → resolved | 1 h 0 min |"), "{md}");
        assert!(md.contains("- [ ] page on pool saturation (owner: bo)"), "{md}");
        assert!(md.contains("- ana (commander)"), "{md}");
        assert!(md.contains("connection pool of 4"));
    }

    #[test]
    fn the_html_review_escapes_and_fetches_nothing() {
        let page = html(&incident(), &[LinkedRun { id: "r-1".into(), journal: None }]);
        assert!(page.contains("checkout &lt;errors&gt; &amp; timeouts"));
        assert!(!page.contains("<errors>"));
        for external in ["src=", "href=", "@import", "url(", "<script"] {
            assert!(!page.contains(external), "{external} in the page");
        }
        assert!(page.contains("id=\"timeline\""));
    }
}
