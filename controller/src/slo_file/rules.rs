//! Prometheus rules for SLOs (`chaos slo rules`): per SLO, recording rules for its error ratio over every
//! window its enabled alerts need and over its period, a few meta series (objective, error budget, budget
//! remaining, current burn rate), and its page and ticket multi-window multi-burn-rate alerts
//! (reference/slo-math.md §2). The YAML is written by hand in a fixed order with every string double-quoted,
//! so the same SLOs always give the same bytes.
//!
//! # Naming (Sloth's scheme)
//! - `slo:sli_error:ratio_rate<window>` (`ratio_rate5m`, `ratio_rate1h`, `ratio_rate2d19h12m`, `ratio_rate30d`):
//!   the error ratio over that window, from [`promql::error_ratio`].
//! - `slo:objective:ratio`, `slo:error_budget:ratio`, `slo:time_period:days`: constants of the SLO.
//! - `slo:period_error_budget_remaining:ratio`: `1 − ratio over the period / budget`.
//! - `slo:current_burn_rate:ratio`: the error ratio over the shortest alert window / budget.
//!
//! Every series carries `service` and `slo` (the SLO's service and name) and the SLO's labels; the identifying
//! two win over an SLO label of the same name.
//!
//! # Groups
//! Two groups per SLO. `chaos-slo:<service>/<name>:burn-rate` holds the window ratios, the current burn rate
//! and the alerts, in that order, so an alert always reads ratios of the same evaluation (rules of a group run
//! in sequence); it has no `interval`: the server's `evaluation_interval` decides how soon an alert can fire,
//! as for every other alert the team has. `chaos-slo:<service>/<name>:period` holds the period ratio and the
//! meta series at `interval: 2m`: a rate over 30 days hardly moves in minutes and is the costliest rule; 2m is
//! well inside the default 5m lookback, so an instant read of these series always finds a sample, and a whole
//! number of the usual 15s/30s/1m evaluation intervals (promtool slows down by orders of magnitude on a group
//! interval that is not: measured with 2m30s against a 1m evaluation interval).
//!
//! # Alerts
//! One alert rule per enabled severity: the OR over its rows of "ratio over the long window > burn rate ×
//! budget AND ratio over the short window > the same" ([`alert_rules`]). A row's `for:` becomes the rule's
//! `for:`; when the rows of one severity disagree on it, each distinct `for:` gets its own rule, told apart by
//! a `burn_window` label (`1h/5m`). Labels: `severity`, `slo`, `service`, the alert's own; the SLO's labels
//! come with the recording rules. Annotations: `summary`, `description` with the numbers, `runbook_url`,
//! `dashboard_url` when set, and the alert's own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::model::{AlertSpec, BurnWindow, Severity, SloDef};
use super::promql;
use super::windows::{period_text, prom_duration};

/// The recording rule prefix of the error ratio over a window.
pub const SLI_ERROR: &str = "slo:sli_error:ratio_rate";
/// The label holding the SLO's service.
pub const SERVICE_LABEL: &str = "service";
/// The label holding the SLO's name.
pub const SLO_LABEL: &str = "slo";
/// The label telling apart the rules of one severity whose rows have different `for:`.
pub const BURN_WINDOW_LABEL: &str = "burn_window";
/// The evaluation interval of the period group.
pub const PERIOD_GROUP_INTERVAL: &str = "2m";

/// The name of the recording rule of the error ratio over `window`: `slo:sli_error:ratio_rate5m`.
pub fn ratio_record(window: Duration) -> String {
    format!("{SLI_ERROR}{}", prom_duration(window))
}

/// A selector of one of the SLO's recorded series: `slo:sli_error:ratio_rate5m{service="checkout",slo="availability"}`.
pub fn selector(slo: &SloDef, metric: &str) -> String {
    format!(
        "{metric}{{{SERVICE_LABEL}={},{SLO_LABEL}={}}}",
        promql_string(&slo.service),
        promql_string(&slo.name)
    )
}

/// One alerting rule of an SLO: the rows of one severity that share a `for:`.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRule<'a> {
    pub severity: Severity,
    pub spec: &'a AlertSpec,
    pub rows: Vec<&'a BurnWindow>,
    pub for_duration: Option<Duration>,
    /// `Some("1h/5m")` when the severity needed several rules (rows with different `for:`).
    pub burn_window: Option<String>,
}

/// The alerting rules of an SLO, page first: one per enabled severity, or one per distinct `for:` of that
/// severity's rows. Severities without rows produce none.
pub fn alert_rules(slo: &SloDef) -> Vec<AlertRule<'_>> {
    let mut out = Vec::new();
    for (severity, spec) in [(Severity::Page, &slo.alerting.page), (Severity::Ticket, &slo.alerting.ticket)] {
        if !spec.enabled {
            continue;
        }
        let rows: Vec<&BurnWindow> = slo.alerting.windows.iter().filter(|w| w.severity == severity).collect();
        let mut by_for: Vec<(Option<Duration>, Vec<&BurnWindow>)> = Vec::new();
        for row in rows {
            match by_for.iter_mut().find(|(f, _)| *f == row.for_duration) {
                Some((_, list)) => list.push(row),
                None => by_for.push((row.for_duration, vec![row])),
            }
        }
        let split = by_for.len() > 1;
        for (for_duration, rows) in by_for {
            let burn_window = split.then(|| {
                rows.iter()
                    .map(|r| format!("{}/{}", prom_duration(r.long), prom_duration(r.short)))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            out.push(AlertRule { severity, spec, rows, for_duration, burn_window });
        }
    }
    out
}

/// The windows the enabled alerts read, shortest first, without repeats.
pub fn alert_windows(slo: &SloDef) -> Vec<Duration> {
    let mut windows: Vec<Duration> =
        alert_rules(slo).iter().flat_map(|r| r.rows.iter().flat_map(|w| [w.long, w.short])).collect();
    windows.sort();
    windows.dedup();
    windows
}

/// The error-ratio threshold of a row, `burn_rate × budget`, without float noise.
pub fn threshold(row: &BurnWindow, budget: f64) -> f64 {
    round_significant(row.burn_rate * budget)
}

/// The labels of the series the recording rules write (and so of the alerts' expressions): `service`,
/// `slo`, then the SLO's own labels.
pub fn series_labels(slo: &SloDef) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = slo
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != SERVICE_LABEL && k.as_str() != SLO_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(SERVICE_LABEL.to_string(), slo.service.clone());
    labels.insert(SLO_LABEL.to_string(), slo.name.clone());
    labels
}

/// The labels an alerting rule sets: `severity`, `slo`, `service`, `burn_window` when split, then the
/// alert's own (which may not replace those).
pub fn rule_labels(slo: &SloDef, rule: &AlertRule<'_>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = rule
        .spec
        .labels
        .iter()
        .filter(|(k, _)| !["severity", SERVICE_LABEL, SLO_LABEL, BURN_WINDOW_LABEL].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert("severity".to_string(), rule.severity.as_str().to_string());
    labels.insert(SERVICE_LABEL.to_string(), slo.service.clone());
    labels.insert(SLO_LABEL.to_string(), slo.name.clone());
    if let Some(window) = &rule.burn_window {
        labels.insert(BURN_WINDOW_LABEL.to_string(), window.clone());
    }
    labels
}

/// The labels of a firing alert of `rule` (without `alertname`): the expression's labels with the rule's
/// on top.
pub fn alert_labels(slo: &SloDef, rule: &AlertRule<'_>) -> BTreeMap<String, String> {
    let mut labels = series_labels(slo);
    labels.extend(rule_labels(slo, rule));
    labels
}

/// The annotations of `rule` as the alert shows them: generated `summary` and `description`, the links,
/// then the alert's own (which may not replace the generated ones). Values here are the text people read;
/// [`render`] protects generated text from Prometheus' template expansion.
pub fn annotations(slo: &SloDef, rule: &AlertRule<'_>) -> BTreeMap<String, String> {
    let budget = slo.budget();
    let period = period_text(slo.period);
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    out.insert(
        "summary".to_string(),
        format!(
            "{} ({} over {period}) is burning its error budget too fast ({})",
            slo.id(),
            pct(slo.objective),
            rule.severity
        ),
    );
    let rows: Vec<String> = rule
        .rows
        .iter()
        .map(|row| {
            format!(
                "above {} over both {} and {} (burn rate {}: {} of the budget spent when it fires, the budget gone in {} at that rate)",
                pct(threshold(row, budget)),
                prom_duration(row.long),
                prom_duration(row.short),
                num(row.burn_rate),
                pct(row.budget_spent),
                exhaustion(slo.period, row.burn_rate),
            )
        })
        .collect();
    let held = rule.for_duration.map(|d| format!(", held for {}", prom_duration(d))).unwrap_or_default();
    out.insert(
        "description".to_string(),
        format!(
            "The error ratio of {} is {}{held}. Objective {} of events good over {period}, error budget {}.",
            slo.id(),
            rows.join("; or "),
            pct(slo.objective),
            pct(budget),
        ),
    );
    if let Some(url) = &slo.runbook_url {
        out.insert("runbook_url".to_string(), url.clone());
    }
    if let Some(url) = &slo.dashboard_url {
        out.insert("dashboard_url".to_string(), url.clone());
    }
    for (key, value) in &rule.spec.annotations {
        out.entry(key.clone()).or_insert_with(|| value.clone());
    }
    out
}

/// `period / burn_rate`, to the minute: `2d2h` for 30 days at 14.4.
pub fn exhaustion(period: Duration, burn_rate: f64) -> String {
    if !(burn_rate.is_finite() && burn_rate > 0.0) {
        return "never".to_string();
    }
    let seconds = period.as_secs_f64() / burn_rate;
    let rounded = if seconds >= 60.0 { (seconds / 60.0).round() * 60.0 } else { seconds.round().max(1.0) };
    prom_duration(Duration::from_secs_f64(rounded))
}

/// The expression of an alerting rule: `(long > t and short > t) or (…)`.
pub fn alert_expr(slo: &SloDef, rule: &AlertRule<'_>) -> String {
    let budget = slo.budget();
    rule.rows
        .iter()
        .map(|row| {
            let t = num(threshold(row, budget));
            format!(
                "({} > {t} and {} > {t})",
                selector(slo, &ratio_record(row.long)),
                selector(slo, &ratio_record(row.short))
            )
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The rule file for `slos` (ids unique, as [`super::load_all`] guarantees).
pub fn render(slos: &[SloDef]) -> String {
    let mut out = String::new();
    out.push_str(
        "# Generated by `chaos slo rules`: Prometheus recording and alerting rules for SLOs. Do not edit;\n\
         # change the SLO files and generate again. Recording rules: slo:sli_error:ratio_rate<window> (error\n\
         # ratio), slo:objective:ratio, slo:error_budget:ratio, slo:time_period:days,\n\
         # slo:period_error_budget_remaining:ratio, slo:current_burn_rate:ratio; labels service and slo.\n",
    );
    if slos.is_empty() {
        out.push_str("groups: []\n");
        return out;
    }
    out.push_str("groups:\n");
    for slo in slos {
        render_slo(&mut out, slo);
    }
    out
}

fn render_slo(out: &mut String, slo: &SloDef) {
    let labels = series_labels(slo);
    let budget = slo.budget();
    let _ = writeln!(
        out,
        "  # {}: {} of events good over {} (error budget {}){}",
        slo.id(),
        pct(slo.objective),
        period_text(slo.period),
        pct(budget),
        slo.description.as_deref().map(|d| format!(". {}", one_line(d))).unwrap_or_default()
    );
    let windows = alert_windows(slo);
    let rules = alert_rules(slo);
    if !windows.is_empty() {
        let _ = writeln!(out, "  - name: {}", quote(&format!("chaos-slo:{}:burn-rate", slo.id())));
        out.push_str("    rules:\n");
        for &window in &windows {
            record(out, &ratio_record(window), &promql::error_ratio(&slo.sli, window), &labels);
        }
        if let Some(&shortest) = windows.first() {
            let expr = format!("{} / {}", selector(slo, &ratio_record(shortest)), num(budget));
            record(out, "slo:current_burn_rate:ratio", &expr, &labels);
        }
        for rule in &rules {
            alert(out, slo, rule);
        }
    }
    let _ = writeln!(out, "  - name: {}", quote(&format!("chaos-slo:{}:period", slo.id())));
    let _ = writeln!(out, "    interval: {}", quote(PERIOD_GROUP_INTERVAL));
    out.push_str("    rules:\n");
    if !windows.contains(&slo.period) {
        record(out, &ratio_record(slo.period), &promql::error_ratio(&slo.sli, slo.period), &labels);
    }
    record(out, "slo:objective:ratio", &format!("vector({})", num(slo.objective)), &labels);
    record(out, "slo:error_budget:ratio", &format!("vector({})", num(budget)), &labels);
    let days = slo.period.as_secs_f64() / 86_400.0;
    record(out, "slo:time_period:days", &format!("vector({})", num(days)), &labels);
    let remaining = format!("1 - {} / {}", selector(slo, &ratio_record(slo.period)), num(budget));
    record(out, "slo:period_error_budget_remaining:ratio", &remaining, &labels);
}

fn record(out: &mut String, name: &str, expr: &str, labels: &BTreeMap<String, String>) {
    let _ = writeln!(out, "      - record: {}", quote(name));
    let _ = writeln!(out, "        expr: {}", quote(expr));
    map(out, "labels", labels.iter().map(|(k, v)| (k.as_str(), v.clone())));
}

fn alert(out: &mut String, slo: &SloDef, rule: &AlertRule<'_>) {
    let _ = writeln!(out, "      - alert: {}", quote(&rule.spec.name));
    let _ = writeln!(out, "        expr: {}", quote(&alert_expr(slo, rule)));
    if let Some(d) = rule.for_duration {
        let _ = writeln!(out, "        for: {}", quote(&prom_duration(d)));
    }
    let labels = rule_labels(slo, rule);
    map(
        out,
        "labels",
        labels.iter().map(|(k, v)| {
            // The alert's own labels may be templates on purpose; generated ones are literal.
            let own = rule.spec.labels.get(k) == Some(v);
            (k.as_str(), if own { v.clone() } else { template_literal(v) })
        }),
    );
    let annotations = annotations(slo, rule);
    map(
        out,
        "annotations",
        annotations.iter().map(|(k, v)| {
            let own = rule.spec.annotations.get(k) == Some(v);
            (k.as_str(), if own { v.clone() } else { template_literal(v) })
        }),
    );
}

fn map<'a>(out: &mut String, key: &str, entries: impl Iterator<Item = (&'a str, String)>) {
    let entries: Vec<_> = entries.collect();
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "        {key}:");
    for (k, v) in entries {
        let _ = writeln!(out, "          {}: {}", quote(k), quote(&v));
    }
}

/// A YAML double-quoted scalar: `\` and `"` escaped, control characters as escapes, everything else as is
/// (YAML is UTF-8). Safe for any text, including PromQL with `"` and Go templates with `{{`.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A PromQL string literal: double-quoted, `\` and `"` escaped, newlines as `\n`.
pub fn promql_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text Prometheus' Go-template expansion of labels and annotations leaves as is: every `{{` is written as
/// the template `{{ "{{" }}`, which expands to `{{`.
pub fn template_literal(text: &str) -> String {
    text.replace("{{", "{{ \"{{\" }}")
}

/// A number without binary noise: 12 significant digits, trailing zeros dropped (`0.0144`, `14.4`, `6`).
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let x = round_significant(x);
    if x == 0.0 {
        return "0".to_string();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = usize::try_from((11 - magnitude).max(0)).unwrap_or(0);
    let text = format!("{x:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
}

/// A fraction as a percentage: `99.9%`, `1.44%`.
pub fn pct(fraction: f64) -> String {
    format!("{}%", num(fraction * 100.0))
}

/// `x` rounded to 12 significant digits.
pub fn round_significant(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let scale = 10f64.powi(11 - magnitude);
    (x * scale).round() / scale
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_quotes_backslashes_and_controls() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny\u{1}"), r#""x\ny\u0001""#);
        assert_eq!(quote("{{.window}} é"), "\"{{.window}} é\"");
        assert_eq!(promql_string(r#"q"u\o"#), r#""q\"u\\o""#);
        assert_eq!(template_literal("a {{ b"), "a {{ \"{{\" }} b");
    }

    #[test]
    fn numbers_have_no_float_noise() {
        assert_eq!(num(14.4 * 0.001), "0.0144");
        assert_eq!(num(0.014400000000000001), "0.0144");
        assert_eq!(num(6.0), "6");
        assert_eq!(num(1.0 - 0.999), "0.001");
        assert_eq!(num(13.44), "13.44");
        assert_eq!(num(0.99 * 0.00001), "0.0000099");
        assert_eq!(pct(0.999), "99.9%");
        assert_eq!(pct(0.1 * 0.1), "1%");
        assert_eq!(exhaustion(Duration::from_secs(30 * 86_400), 14.4), "2d2h");
        assert_eq!(exhaustion(Duration::from_secs(30 * 86_400), 6.0), "5d");
    }
}
