//! The HTML run report ([`render_html`]): one self-contained document (inline CSS and SVG drawn by
//! [`super::svg`], no script, nothing fetched) with the verdict and hypothesis on top, per SLO its SLI against
//! the objective over time with fault windows shaded, breach and recovery marked; per source latency
//! percentiles, error ratio and traffic; saturation; the steady-state probes; the expected alerts' time to
//! detect and resolve; the fault table; the seed and the command that reruns it. Light and dark
//! (`prefers-color-scheme`), printable (`@media print`), and every chart has a title, a description and a data
//! table. Every string from the experiment or the run is escaped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use super::journal::{Journal, SignalSample, Verdict};
use super::markdown::{latency, seconds, signal_name, trim};
use super::series::{SloSeries, WindowSummary};
pub use super::svg::escape;
use super::svg::{Chart, Line, TimeScale, Unit};
use super::{ReportError, write_atomically};
use crate::experiment::model::Signal;
use crate::slo::format;

/// Writes the HTML report of `journal` to `path` (atomically).
pub fn write_html(path: &Path, journal: &Journal) -> Result<(), ReportError> {
    write_atomically(path, render_html(journal).as_bytes())
}

/// The whole report of one run as a self-contained HTML document.
pub fn render_html(journal: &Journal) -> String {
    let mut html = String::with_capacity(64 * 1024);
    let title = escape(&journal.experiment.title);
    let verdict = journal.verdict.as_str();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\">\
         <title>{verdict}: {title} · chaos report</title><style>{CSS}</style></head><body><main>"
    );
    header(&mut html, journal);
    slos(&mut html, journal);
    sources(&mut html, journal);
    saturation(&mut html, journal);
    probes(&mut html, journal);
    detection(&mut html, journal);
    faults(&mut html, journal);
    let _ = writeln!(
        html,
        "<footer>chaos {} · started {} · this file is self-contained: no scripts, nothing fetched</footer>\
         </main></body></html>",
        escape(&journal.chaos_version),
        escape(&journal.started_at),
    );
    html
}

fn header(html: &mut String, j: &Journal) {
    let icon = match j.verdict {
        Verdict::Passed => "✔",
        Verdict::Failed => "✘",
        Verdict::Invalid => "⛔",
        Verdict::Inconclusive => "⚠",
    };
    let _ = write!(
        html,
        "<header><p class=\"verdict {v}\" id=\"verdict\"><span aria-hidden=\"true\">{icon}</span> {v}</p>\
         <h1>{}</h1>",
        escape(&j.experiment.title),
        v = j.verdict.as_str(),
    );
    if let Some(h) = &j.experiment.hypothesis {
        let _ = write!(
            html,
            "<blockquote class=\"hypothesis\"><strong>Hypothesis:</strong> {}</blockquote>",
            escape(h)
        );
    }
    let _ = write!(
        html,
        "<p class=\"meta\">exit code {} · duration {} · seed <code>{}</code> · started {}{}</p>",
        j.verdict.exit_code(),
        escape(&seconds(j.duration_ms)),
        j.seed,
        escape(&j.started_at),
        j.experiment.file.as_ref().map(|f| format!(" · <code>{}</code>", escape(f))).unwrap_or_default(),
    );
    if !j.reasons.is_empty() {
        html.push_str("<ul class=\"reasons\">");
        for r in &j.reasons {
            let _ = write!(html, "<li>{}</li>", escape(r));
        }
        html.push_str("</ul>");
    }
    let file = j.experiment.file.as_deref().unwrap_or("EXPERIMENT.yaml");
    let _ = write!(
        html,
        "<p class=\"rerun\">Rerun with the same random choices (and the same <code>--var</code> values, if any): <code>chaos run {} --seed {}</code></p></header>",
        escape(&shell_quote(file)),
        j.seed,
    );
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A short, document-unique id from a kind and an index.
fn chart_id(kind: &str, i: usize) -> String {
    format!("{kind}-{i}")
}

/// A series' values with the start of their step.
fn step_points(j: &Journal, values: &[Option<f64>]) -> Vec<(u64, Option<f64>)> {
    let step = j.step_ms.max(1);
    values.iter().enumerate().map(|(i, v)| (i as u64 * step, *v)).collect()
}

fn slos(html: &mut String, j: &Journal) {
    if j.slos.is_empty() {
        return;
    }
    html.push_str("<section><h2>SLOs</h2><table><thead><tr><th>SLO</th><th>signal</th><th>window</th>\
                   <th>observed</th><th>objective</th><th>result</th><th>time to recover</th><th>reason</th></tr>\
                   </thead><tbody>");
    for slo in &j.slos {
        let result = match slo.passed {
            Some(true) => "<span class=\"ok\">passed</span>",
            Some(false) => "<span class=\"bad\">failed</span>",
            None => "<span class=\"warn\">inconclusive</span>",
        };
        let ttr = j.recovery.iter().find(|r| r.slo == slo.name).map_or_else(String::new, |r| {
            r.time_to_recover_ms.map_or_else(|| "not recovered".to_string(), seconds)
        });
        let observed = if slo.total == 0 {
            "no data".to_string()
        } else {
            match slo.signal {
                Signal::Errors | Signal::Latency => format::ratio_percent(slo.good, slo.total, slo.objective),
                Signal::Traffic => format!("{} of baseline", format::percent(slo.observed, 1)),
                Signal::Saturation => format!("peak {}", format::percent(slo.observed, 1)),
            }
        };
        let bound = if slo.signal == Signal::Saturation { "≤" } else { "≥" };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{bound} {}</td>\
             <td>{result}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&slo.name),
            signal_name(slo.signal),
            escape(&slo.window),
            escape(&observed),
            escape(&format::objective(slo.objective)),
            escape(&ttr),
            escape(&slo.reason),
        );
    }
    html.push_str("</tbody></table>");
    for (i, s) in j.slo_series.iter().enumerate() {
        slo_chart(html, j, s, i);
    }
    html.push_str("</section>");
}

fn slo_chart(html: &mut String, j: &Journal, s: &SloSeries, i: usize) {
    let what = match s.signal {
        Signal::Errors => "share of requests that succeeded".to_string(),
        Signal::Latency => format!(
            "share of requests faster than {}",
            s.threshold_ms.map_or_else(|| "the threshold".to_string(), |t| format!("{} ms", trim(t, 3)))
        ),
        Signal::Traffic => "served rate as a share of the baseline rate".to_string(),
        Signal::Saturation => "peak utilisation".to_string(),
    };
    let bound = if s.signal == Signal::Saturation { "ceiling" } else { "objective" };
    let objective = format::objective(s.objective);
    let recovered = s
        .recovered_ms
        .zip(s.fault_end_ms)
        .map(|(at, end)| (at, format!("recovered in {}", seconds(at.saturating_sub(end)))));
    let mut desc = format!(
        "{} ({}) per {} over the run, against its {bound} of {objective}",
        s.name,
        what,
        seconds(j.step_ms)
    );
    let shaded = j.faults.len();
    if shaded > 0 {
        let _ = write!(desc, "; {shaded} fault window(s) shaded");
    }
    match s.breach_ms {
        Some(at) => {
            let _ = write!(desc, "; the SLO broke at {}", seconds(at));
        }
        None => desc.push_str("; the SLO did not break"),
    }
    if let Some((_, text)) = &recovered {
        let _ = write!(desc, "; {text} after the last fault");
    }
    let chart = Chart {
        id: chart_id("slo", i),
        title: format!("SLO {}: {what}", s.name),
        desc: desc.clone(),
        unit: Unit::Fraction,
        scale: TimeScale { duration_ms: j.duration_ms },
        lines: vec![Line {
            label: s.name.clone(),
            class: "s1",
            points: step_points(j, &s.sli),
            step_ms: j.step_ms,
        }],
        objective: Some((s.objective, format!("{bound} {objective}"))),
        faults: &j.faults,
        breach_ms: s.breach_ms,
        recovered,
    };
    let rows = fraction_rows(&s.sli, j.step_ms);
    figure(html, &chart, &[("sli", &s.name)], &["time", "SLI"], &rows);
}

/// The data table of a per-step series of fractions: the step's start and its value (`–` without data).
fn fraction_rows(values: &[Option<f64>], step_ms: u64) -> Vec<Vec<String>> {
    values
        .iter()
        .enumerate()
        .map(|(k, v)| {
            vec![seconds(k as u64 * step_ms), v.map_or_else(|| "–".to_string(), |v| Unit::Fraction.format(v))]
        })
        .collect()
}

/// A chart in a figure with its legend, caption and data table.
fn figure(
    html: &mut String,
    chart: &Chart<'_>,
    legend: &[(&str, &str)],
    columns: &[&str],
    rows: &[Vec<String>],
) {
    let _ = write!(html, "<figure><figcaption>{}</figcaption>", escape(&chart.title));
    html.push_str("<ul class=\"legend\">");
    for (line, label) in chart.lines.iter().zip(legend) {
        let _ = write!(html, "<li><span class=\"swatch {}\"></span>{}</li>", line.class, escape(label.1));
    }
    if !chart.faults.is_empty() {
        html.push_str("<li><span class=\"swatch fault\"></span>fault in force</li>");
    }
    if chart.objective.is_some() {
        html.push_str("<li><span class=\"swatch objective\"></span>objective</li>");
    }
    html.push_str("</ul>");
    html.push_str(&chart.render());
    let _ = write!(html, "<p class=\"desc\">{}</p>", escape(&chart.desc));
    if rows.is_empty() {
        html.push_str("</figure>");
        return;
    }
    let _ = write!(
        html,
        "<details><summary>Data table: {}</summary><table class=\"data\"><thead><tr>",
        escape(&chart.title)
    );
    for c in columns {
        let _ = write!(html, "<th>{}</th>", escape(c));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{}</td>", escape(cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table></details></figure>");
}

fn sources(html: &mut String, j: &Journal) {
    let mut by_source: BTreeMap<&str, Vec<&SignalSample>> = BTreeMap::new();
    for s in &j.signals {
        by_source.entry(s.source.as_str()).or_default().push(s);
    }
    if by_source.is_empty() && j.measured.is_empty() {
        return;
    }
    html.push_str("<section><h2>Signals</h2>");
    if !j.measured.is_empty() {
        html.push_str("<h3>Before, during and after the faults</h3><table><thead><tr><th>source</th><th>when</th>\
                       <th>requests</th><th>error ratio</th><th>p50</th><th>p95</th><th>p99</th></tr></thead><tbody>");
        for m in &j.measured {
            for (when, w) in [("before", &m.before), ("during", &m.during), ("after", &m.after)] {
                measured_row(html, &m.source, when, w);
            }
        }
        html.push_str("</tbody></table>");
    }
    let scale = TimeScale { duration_ms: j.duration_ms };
    for (i, (source, samples)) in by_source.iter().enumerate() {
        let _ = write!(html, "<h3>{}</h3>", escape(source));
        let line = |label: &str, class: &'static str, f: &dyn Fn(&SignalSample) -> Option<f64>| Line {
            label: label.to_string(),
            class,
            points: samples.iter().map(|s| (s.at_ms, f(s))).collect(),
            step_ms: j.step_ms,
        };
        let peak = |f: &dyn Fn(&SignalSample) -> Option<f64>| {
            samples.iter().filter_map(|s| f(s)).fold(0.0_f64, f64::max)
        };
        let p99_peak = peak(&|s| s.p99_ms);
        let latency_chart = Chart {
            id: chart_id("latency", i),
            title: format!("{source}: latency p50, p95, p99"),
            desc: format!(
                "Latency percentiles of {source} per {}; highest p99 {}",
                seconds(j.step_ms),
                Unit::Millis.format(p99_peak)
            ),
            unit: Unit::Millis,
            scale,
            lines: vec![
                line("p50", "s1", &|s| s.p50_ms),
                line("p95", "s2", &|s| s.p95_ms),
                line("p99", "s3", &|s| s.p99_ms),
            ],
            objective: None,
            faults: &j.faults,
            breach_ms: None,
            recovered: None,
        };
        let error_ratio = |s: &SignalSample| {
            s.error_ratio.or_else(|| (s.requests > 0).then(|| s.errors as f64 / s.requests as f64))
        };
        let errors_chart = Chart {
            id: chart_id("errors", i),
            title: format!("{source}: error ratio"),
            desc: format!(
                "Share of failed requests of {source} per {}; highest {}",
                seconds(j.step_ms),
                Unit::Fraction.format(peak(&error_ratio))
            ),
            unit: Unit::Fraction,
            scale,
            lines: vec![line("error ratio", "s4", &error_ratio)],
            objective: None,
            faults: &j.faults,
            breach_ms: None,
            recovered: None,
        };
        let traffic_chart = Chart {
            id: chart_id("traffic", i),
            title: format!("{source}: requests per second"),
            desc: format!(
                "Requests per second of {source}; highest {}",
                Unit::PerSecond.format(peak(&|s| Some(s.rate)))
            ),
            unit: Unit::PerSecond,
            scale,
            lines: vec![line("requests/s", "s5", &|s| Some(s.rate))],
            objective: None,
            faults: &j.faults,
            breach_ms: None,
            recovered: None,
        };
        html.push_str("<div class=\"grid\">");
        let none: &[Vec<String>] = &[];
        figure(html, &latency_chart, &[("p50", "p50"), ("p95", "p95"), ("p99", "p99")], &[], none);
        figure(html, &errors_chart, &[("e", "error ratio")], &[], none);
        figure(html, &traffic_chart, &[("r", "requests/s")], &[], none);
        html.push_str("</div>");
        // One data table for the three charts.
        let _ = write!(
            html,
            "<details><summary>Data table: {}</summary><table class=\"data\"><thead><tr><th>time</th>\
             <th>requests</th>\
             <th>requests/s</th><th>error ratio</th><th>p50</th><th>p95</th><th>p99</th></tr></thead><tbody>",
            escape(source)
        );
        for s in samples {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                seconds(s.at_ms),
                s.requests,
                trim(s.rate, 1),
                error_ratio(s).map_or_else(|| "–".to_string(), |r| Unit::Fraction.format(r)),
                latency(s.p50_ms),
                latency(s.p95_ms),
                latency(s.p99_ms),
            );
        }
        html.push_str("</tbody></table></details>");
    }
    html.push_str("</section>");
}

fn measured_row(html: &mut String, source: &str, when: &str, w: &WindowSummary) {
    let _ = write!(
        html,
        "<tr><td>{}</td><td>{when} ({} – {})</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        escape(source),
        seconds(w.from_ms),
        seconds(w.to_ms),
        format::count(w.requests),
        w.error_ratio.map_or_else(|| "–".to_string(), |r| format::percent(r, 2)),
        latency(w.p50_ms),
        latency(w.p95_ms),
        latency(w.p99_ms),
    );
}

fn saturation(html: &mut String, j: &Journal) {
    if j.saturation.is_empty() {
        return;
    }
    html.push_str("<section><h2>Saturation</h2>");
    for (i, s) in j.saturation.iter().enumerate() {
        let peak = s.peak.iter().flatten().fold(0.0_f64, |a, b| a.max(*b));
        let chart = Chart {
            id: chart_id("saturation", i),
            title: format!("{}: peak utilisation", s.source),
            desc: format!(
                "Highest utilisation sample of {} per {} ({} samples); highest {}",
                s.source,
                seconds(j.step_ms),
                s.samples,
                Unit::Fraction.format(peak)
            ),
            unit: Unit::Fraction,
            scale: TimeScale { duration_ms: j.duration_ms },
            lines: vec![Line {
                label: s.source.clone(),
                class: "s2",
                points: step_points(j, &s.peak),
                step_ms: j.step_ms,
            }],
            objective: None,
            faults: &j.faults,
            breach_ms: None,
            recovered: None,
        };
        let rows = fraction_rows(&s.peak, j.step_ms);
        figure(html, &chart, &[("peak", &s.source)], &["time", "peak"], &rows);
    }
    html.push_str("</section>");
}

/// The expected alerts: time to detect and to resolve, each against its `within`.
fn detection(html: &mut String, j: &Journal) {
    if j.detection.is_empty() {
        return;
    }
    html.push_str(
        "<section><h2>Detection</h2><table><thead><tr><th>alert</th><th>source</th><th>within</th>\
         <th>time to detect</th><th>time to resolve</th><th>result</th></tr></thead><tbody>",
    );
    for o in &j.detection {
        let result = match super::markdown::detection_state(o, &j.reasons) {
            super::markdown::DetectionState::Detected => "<span class=\"ok\">detected</span>",
            super::markdown::DetectionState::NotDetected => "<span class=\"bad\">not detected</span>",
            super::markdown::DetectionState::NotMeasured => "<span class=\"warn\">not measured</span>",
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{result}</td></tr>",
            escape(&o.alert),
            escape(&o.source),
            escape(&seconds(o.within_ms)),
            escape(&o.detected_after_ms.map_or_else(|| "–".to_string(), seconds)),
            escape(&super::markdown::resolved(o)),
        );
    }
    html.push_str("</tbody></table></section>");
}

fn probes(html: &mut String, j: &Journal) {
    if j.probes.is_empty() {
        return;
    }
    html.push_str(
        "<section><h2>Steady state</h2><table><thead><tr><th>probe</th><th>when</th><th>result</th>\
                   <th>time</th><th>detail</th></tr></thead><tbody>",
    );
    for p in &j.probes {
        let result =
            if p.ok { "<span class=\"ok\">passed</span>" } else { "<span class=\"bad\">failed</span>" };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{result}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&p.name),
            p.phase.as_str(),
            escape(&format::duration(Duration::from_millis(p.elapsed_ms))),
            escape(&p.detail),
        );
    }
    html.push_str("</tbody></table></section>");
}

fn faults(html: &mut String, j: &Journal) {
    html.push_str("<section><h2>Faults</h2>");
    if j.faults.is_empty() {
        html.push_str("<p>No fault was in force.</p>");
    } else {
        html.push_str(
            "<table class=\"faults\"><thead><tr><th>step</th><th>fault</th><th>from</th><th>to</th>\
                       <th>length</th><th>revert</th></tr></thead><tbody>",
        );
        for f in &j.faults {
            let revert = match (f.instant, f.reverted) {
                (true, _) => "<span>instant, nothing to revert</span>",
                (false, true) => "<span class=\"ok\">reverted</span>",
                (false, false) => "<span class=\"bad\">revert failed or fault lost</span>",
            };
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{revert}</td></tr>",
                escape(&f.name),
                escape(&f.detail),
                seconds(f.start_ms),
                seconds(f.end_ms),
                seconds(f.end_ms.saturating_sub(f.start_ms)),
            );
        }
        html.push_str("</tbody></table>");
    }
    if !j.phases.is_empty() {
        html.push_str(
            "<h3>Phases</h3><table><thead><tr><th>phase</th><th>from</th><th>to</th></tr></thead><tbody>",
        );
        for p in &j.phases {
            let _ = write!(
                html,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&p.name),
                seconds(p.start_ms),
                seconds(p.end_ms)
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</section>");
}

/// The report's stylesheet: light by default, dark with the system's preference, plain on paper.
pub(crate) const CSS: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--bg:#fff;--panel:#f6f8fa;--line:#d1d9e0;--ok:#1a7f37;--bad:#cf222e;
--warn:#9a6700;--fault:rgba(207,34,46,.13);--s1:#0969da;--s2:#8250df;--s3:#bf3989;--s4:#cf222e;--s5:#1a7f37;
--objective:#9a6700;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--panel:#151b23;
--line:#3d444d;--ok:#3fb950;--bad:#f85149;--warn:#d29922;--fault:rgba(248,81,73,.18);--s1:#4493f8;
--s2:#ab7df8;--s3:#f778ba;--s4:#f85149;--s5:#3fb950;--objective:#d29922}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:.2em 0}h2{border-bottom:1px solid var(--line);padding-bottom:.2em;margin-top:1.6em}
code{font-family:ui-monospace,monospace;background:var(--panel);padding:0 .3em;border-radius:4px}
.verdict{display:inline-block;font-weight:700;font-size:1.1em;text-transform:uppercase;padding:.2em .7em;
border-radius:6px;margin:0;color:#fff}
.verdict.passed{background:var(--ok)}.verdict.failed{background:var(--bad)}
.verdict.inconclusive,.verdict.invalid{background:var(--warn)}
.hypothesis{margin:.6em 0;padding:.4em 1em;border-left:4px solid var(--line);background:var(--panel)}
.meta,.desc,footer{color:var(--muted)}footer{margin-top:2em;font-size:.85em}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn);font-weight:600}
table{border-collapse:collapse;width:100%;margin:.6em 0;font-size:.92em}
th,td{border:1px solid var(--line);padding:.25em .5em;text-align:left;vertical-align:top}
th{background:var(--panel)}
td.num,table.data td{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure{margin:1em 0;padding:.6em;border:1px solid var(--line);border-radius:8px;break-inside:avoid}
figcaption{font-weight:600}
.legend{list-style:none;padding:0;margin:.3em 0;display:flex;gap:1em;flex-wrap:wrap;font-size:.85em}
.swatch{display:inline-block;width:1.4em;height:.6em;margin-right:.35em;vertical-align:middle;border-radius:2px}
.swatch.s1{background:var(--s1)}.swatch.s2{background:var(--s2)}.swatch.s3{background:var(--s3)}
.swatch.s4{background:var(--s4)}.swatch.s5{background:var(--s5)}.swatch.fault{background:var(--fault)}
.swatch.objective{background:var(--objective);height:2px}
svg.chart{width:100%;height:auto;display:block}
svg.chart text{fill:var(--muted);font-size:11px}
svg.chart .plot{fill:none;stroke:var(--line)}svg.chart .grid{stroke:var(--line);stroke-dasharray:2 3}
svg.chart .tick{stroke:var(--line)}
svg.chart .fault{fill:var(--fault)}
svg.chart .line{fill:none;stroke-width:1.8;stroke-linejoin:round}
svg.chart .line.s1{stroke:var(--s1)}svg.chart .line.s2{stroke:var(--s2)}svg.chart .line.s3{stroke:var(--s3)}
svg.chart .line.s4{stroke:var(--s4)}svg.chart .line.s5{stroke:var(--s5)}
svg.chart .objective line{stroke:var(--objective);stroke-dasharray:6 4;stroke-width:1.5}
svg.chart .objective text{fill:var(--objective)}
svg.chart .breach line{stroke:var(--bad);stroke-width:1.5}svg.chart .breach path{fill:var(--bad)}
svg.chart .breach text{fill:var(--bad);font-weight:600}
svg.chart .recovered line{stroke:var(--ok);stroke-width:1.5;stroke-dasharray:3 2}
svg.chart .recovered circle{fill:var(--ok)}svg.chart .recovered text{fill:var(--ok);font-weight:600}
.grid{display:grid;grid-template-columns:1fr;gap:0}
details{margin:.3em 0}summary{cursor:pointer;color:var(--muted)}
@media print{:root{--fg:#000;--muted:#333;--bg:#fff;--panel:#f2f2f2;--line:#999}
body{font-size:11pt}main{max-width:none;padding:0}.verdict{border:2px solid #000;color:#000;background:none!important}
details{display:none}figure,table{break-inside:avoid}h2{break-after:avoid}.grid{grid-template-columns:1fr}}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn rerun_commands_quote_their_file() {
        assert_eq!(shell_quote("experiments/a.yaml"), "experiments/a.yaml");
        assert_eq!(shell_quote("my file's.yaml"), r"'my file'\''s.yaml'");
    }
}
