//! The native SLO format (`apiVersion: chaos/v1`, `kind: SLO`): its serde model ([`NativeSlo`], also the
//! JSON Schema), and its checks and normalisation into a [`SloDef`], each problem at its node.
//!
//! ```yaml
//! apiVersion: chaos/v1
//! kind: SLO
//! service: checkout
//! name: availability
//! objective: 99.9%
//! period: 30d
//! sli:
//!   events:
//!     bad: http_requests_total{job="checkout",code=~"5.."}
//!     total: http_requests_total{job="checkout"}
//! runbook_url: https://runbooks.example.com/checkout/availability
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{
    AlertSpec, Alerting, BurnWindow, Counted, Events, LatencySli, Origin, Query, Severity, Sli, SloDef,
};
pub use super::promql::is_metric_name;
use super::promql::{has_window, split_selector};
use super::windows::{self, default_windows, parse_period, parse_prom_duration};
use crate::experiment::de::from_node;
use crate::experiment::model::{Duration as ExpDuration, Percent};
use crate::experiment::node::{Node, Pos, Seg};

/// The `apiVersion` of a native SLO document.
pub const API_VERSION: &str = "chaos/v1";
/// Its `kind`.
pub const KIND: &str = "SLO";
/// The period when the file gives none.
pub const DEFAULT_PERIOD: &str = "30d";

/// One native SLO document.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[schemars(title = "chaos SLO (apiVersion chaos/v1, kind SLO)")]
#[serde(deny_unknown_fields)]
pub struct NativeSlo {
    /// Must be `chaos/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Must be `SLO`.
    pub kind: String,
    /// The service it belongs to (letters, digits, `_`, `.`, `-`).
    pub service: String,
    /// Unique within the service (letters, digits, `_`, `.`, `-`).
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub sli: NativeSli,
    /// The fraction of good events to reach over the period: `99.9%` (or `0.999`).
    pub objective: Percent,
    /// The rolling period: whole days, weeks or hours (`30d`, `28d`, `4w`, `7d`); default 30d.
    #[serde(default)]
    pub period: Option<String>,
    /// Labels added to every generated rule and alert.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where the people paged go first; put on every alert as the `runbook_url` annotation.
    #[serde(default)]
    pub runbook_url: Option<String>,
    #[serde(default)]
    pub dashboard_url: Option<String>,
    #[serde(default)]
    pub alerting: Option<NativeAlerting>,
}

/// Exactly one of `events`, `latency` or `error_ratio`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NativeSli {
    #[serde(default)]
    pub events: Option<NativeEvents>,
    #[serde(default)]
    pub latency: Option<NativeLatency>,
    /// A PromQL expression that is the error ratio over `{{.window}}` (no event counts: budgets in events and
    /// outage minutes are then not reported).
    #[serde(default)]
    pub error_ratio: Option<String>,
}

/// Counters: `bad` or `good` events (one of them) and `total`. Each is a counter selector
/// (`http_requests_total{code=~"5.."}`, summed as `sum(rate(…[window]))`) or an expression with `{{.window}}`
/// where the range goes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NativeEvents {
    #[serde(default)]
    pub bad: Option<String>,
    #[serde(default)]
    pub good: Option<String>,
    pub total: String,
}

/// "Requests at or under `threshold`" from a Prometheus histogram.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NativeLatency {
    /// The histogram's name without `_bucket` (`http_request_duration_seconds`).
    pub histogram: String,
    /// Label matchers, with or without braces: `{job="checkout"}`.
    #[serde(default)]
    pub matchers: Option<String>,
    /// A bucket bound of the histogram: `300ms`, `1s`.
    pub threshold: ExpDuration,
    /// The histogram's bucket bounds in seconds, when known: the threshold is then checked against them here
    /// (otherwise `chaos slo status` checks it against Prometheus).
    #[serde(default)]
    pub buckets: Option<Vec<f64>>,
}

/// Alerting choices; everything is optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NativeAlerting {
    #[serde(default)]
    pub page: Option<NativeAlert>,
    #[serde(default)]
    pub ticket: Option<NativeAlert>,
    /// Replaces the default multi-window multi-burn-rate table (the SRE workbook's, scaled to the period).
    #[serde(default)]
    pub windows: Option<Vec<NativeWindow>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NativeAlert {
    /// The alert name; default `<Service><Name>BudgetBurn`.
    #[serde(default)]
    pub name: Option<String>,
    /// No alert of this severity.
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// One burn-rate row: both windows must exceed the threshold. Give `budget` (the share of the period's
/// budget spent when it fires) or `burn_rate`, not both.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NativeWindow {
    pub severity: Severity,
    /// `1h`, `6h`, `3d`.
    pub long: String,
    /// `5m`, `30m`, `6h`: shorter than `long` (conventionally long/12).
    pub short: String,
    #[serde(default)]
    pub budget: Option<Percent>,
    #[serde(default)]
    pub burn_rate: Option<f64>,
    /// How long the condition must hold before firing.
    #[serde(default, rename = "for")]
    pub for_duration: Option<String>,
}

/// A problem at a position in the document.
pub type Problem = (Pos, String);

/// Reads one native document into an SLO, or every problem in it.
pub fn read(file: &str, doc: &Node) -> Result<SloDef, Vec<Problem>> {
    let slo: NativeSlo = from_node(doc).map_err(|e| vec![(e.pos.unwrap_or(doc.pos), e.message)])?;
    let mut problems = Vec::new();
    let at = |path: &[Seg<'_>]| doc.pos_at(path);
    if slo.api_version != API_VERSION {
        problems.push((
            at(&[Seg::K("apiVersion")]),
            format!("apiVersion must be {API_VERSION}, found {:?}", slo.api_version),
        ));
    }
    if slo.kind != KIND {
        problems.push((at(&[Seg::K("kind")]), format!("kind must be {KIND}, found {:?}", slo.kind)));
    }
    for (key, value) in [("service", &slo.service), ("name", &slo.name)] {
        if let Err(why) = check_name(value) {
            problems.push((at(&[Seg::K(key)]), format!("{key}: {why}")));
        }
    }
    let objective = slo.objective.0;
    if !(objective > 0.0 && objective < 1.0) {
        problems.push((
            at(&[Seg::K("objective")]),
            format!(
                "objective must be above 0% and below 100% (100% leaves no error budget), found {}",
                slo.objective
            ),
        ));
    }
    let period = match parse_period(slo.period.as_deref().unwrap_or(DEFAULT_PERIOD)) {
        Ok(period) => period,
        Err(why) => {
            problems.push((at(&[Seg::K("period")]), why));
            windows::WORKBOOK_PERIOD
        }
    };
    for (key, label) in &slo.labels {
        if let Err(why) = check_label_name(key) {
            problems.push((doc.key_pos_at(&[Seg::K("labels"), Seg::K(key)]), why));
        }
        let _ = label;
    }
    for (key, url) in [("runbook_url", &slo.runbook_url), ("dashboard_url", &slo.dashboard_url)] {
        if let Some(url) = url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            problems.push((
                at(&[Seg::K(key)]),
                format!("{key} must be an http:// or https:// URL, found {url:?}"),
            ));
        }
    }
    let sli = sli(&slo.sli, doc, &mut problems);
    let alerting = alerting(&slo, period, doc, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let (Some(sli), Some(alerting)) = (sli, alerting) else {
        return Err(vec![(doc.pos, "invalid SLO".to_string())]);
    };
    Ok(SloDef {
        service: slo.service,
        name: slo.name,
        description: slo.description,
        sli,
        objective,
        period,
        labels: slo.labels,
        runbook_url: slo.runbook_url,
        dashboard_url: slo.dashboard_url,
        alerting,
        origin: Origin {
            file: file.to_string(),
            line: doc.pos.line,
            column: doc.pos.column,
            ..Origin::default()
        },
    })
}

fn sli(sli: &NativeSli, doc: &Node, problems: &mut Vec<Problem>) -> Option<Sli> {
    let base = [Seg::K("sli")];
    let given = [sli.events.is_some(), sli.latency.is_some(), sli.error_ratio.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given != 1 {
        problems
            .push((doc.pos_at(&base), "sli needs exactly one of events, latency or error_ratio".to_string()));
        return None;
    }
    if let Some(events) = &sli.events {
        let path = |k| doc.pos_at(&[Seg::K("sli"), Seg::K("events"), Seg::K(k)]);
        let (counted, key, query) = match (&events.bad, &events.good) {
            (Some(bad), None) => (Counted::Bad, "bad", bad),
            (None, Some(good)) => (Counted::Good, "good", good),
            _ => {
                problems.push((
                    doc.pos_at(&[Seg::K("sli"), Seg::K("events")]),
                    "events needs exactly one of bad or good, with total".to_string(),
                ));
                return None;
            }
        };
        let query = rate_query(query).map_err(|why| problems.push((path(key), format!("{key}: {why}")))).ok();
        let total = rate_query(&events.total)
            .map_err(|why| problems.push((path("total"), format!("total: {why}"))))
            .ok();
        return Some(Sli::Events(Events { counted, query: query?, total: total? }));
    }
    if let Some(latency) = &sli.latency {
        let path = |k| doc.pos_at(&[Seg::K("sli"), Seg::K("latency"), Seg::K(k)]);
        let histogram = latency.histogram.trim();
        if let Some(base) = histogram.strip_suffix("_bucket").or_else(|| histogram.strip_suffix("_count")) {
            problems.push((
                path("histogram"),
                format!("histogram: write the histogram's name without the suffix: {base}"),
            ));
        } else if !is_metric_name(histogram) {
            problems.push((path("histogram"), format!("histogram: {histogram:?} is not a metric name")));
        }
        let matchers = latency.matchers.as_deref().unwrap_or("").trim();
        let matchers =
            matchers.strip_prefix('{').and_then(|m| m.strip_suffix('}')).unwrap_or(matchers).trim();
        let threshold = latency.threshold.0.as_secs_f64();
        if threshold <= 0.0 {
            problems.push((path("threshold"), "threshold must be above zero".to_string()));
        }
        if let Some(buckets) = &latency.buckets
            && !is_bound(threshold, buckets)
        {
            problems.push((path("threshold"), not_a_bound(histogram, threshold, buckets)));
        }
        return Some(Sli::Latency(LatencySli {
            histogram: histogram.to_string(),
            matchers: matchers.to_string(),
            threshold,
            buckets: latency.buckets.clone(),
        }));
    }
    let ratio = sli.error_ratio.as_deref().unwrap_or_default();
    if !has_window(ratio) {
        problems.push((
            doc.pos_at(&[Seg::K("sli"), Seg::K("error_ratio")]),
            "error_ratio: write the expression with {{.window}} where the range goes, e.g. sum(rate(errors[{{.window}}])) / sum(rate(requests[{{.window}}]))".to_string(),
        ));
        return None;
    }
    Some(Sli::ErrorRatio(Query::Template(ratio.trim().to_string())))
}

/// Whether `threshold` (seconds) is one of `buckets`.
pub fn is_bound(threshold: f64, buckets: &[f64]) -> bool {
    // `+Inf` (written `.inf` in YAML) bounds nothing: `inf - x` is within any tolerance scaled by `inf`.
    buckets.iter().filter(|b| b.is_finite()).any(|b| (b - threshold).abs() <= 1e-9 * b.abs().max(1.0))
}

/// The message for a latency threshold that is not a bucket bound.
pub fn not_a_bound(histogram: &str, threshold: f64, buckets: &[f64]) -> String {
    let list = buckets.iter().map(|b| format!("{b}")).collect::<Vec<_>>().join(", ");
    format!(
        "threshold {threshold}s is not a bucket bound of {histogram} (bounds: {list}): the fraction under it would be \
         interpolated, not counted; use one of the bounds or add a bucket at {threshold}"
    )
}

/// A counter selector or a `{{.window}}` expression.
pub fn rate_query(text: &str) -> Result<Query, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty query".to_string());
    }
    if has_window(t) {
        return Ok(Query::Template(t.to_string()));
    }
    // A metric with matchers, or matchers alone (`{__name__="x",job="a"}`).
    let selector =
        split_selector(t).is_some() || t.starts_with('{') && split_selector(&format!("x{t}")).is_some();
    if selector {
        Ok(Query::Counter(t.to_string()))
    } else {
        Err(format!(
            "{t:?} is neither a counter selector (metric{{labels}}) nor an expression with {{{{.window}}}} where the range goes"
        ))
    }
}

fn alerting(slo: &NativeSlo, period: Duration, doc: &Node, problems: &mut Vec<Problem>) -> Option<Alerting> {
    let given = slo.alerting.clone().unwrap_or_default();
    let default_name = default_alert_name(&slo.service, &slo.name);
    let spec = |alert: Option<NativeAlert>, key: &str, problems: &mut Vec<Problem>| {
        let alert = alert.unwrap_or_default();
        let name = alert.name.clone().unwrap_or_else(|| default_name.clone());
        if !is_metric_name(&name) {
            problems.push((
                doc.pos_at(&[Seg::K("alerting"), Seg::K(key), Seg::K("name")]),
                format!("alert name {name:?} must be a metric-style name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
            ));
        }
        AlertSpec { enabled: !alert.disabled, name, labels: alert.labels, annotations: alert.annotations }
    };
    let page = spec(given.page, "page", problems);
    let ticket = spec(given.ticket, "ticket", problems);
    let windows = match &given.windows {
        None => default_windows(period),
        Some(rows) => {
            let mut out = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                let at = |k| doc.pos_at(&[Seg::K("alerting"), Seg::K("windows"), Seg::I(i), Seg::K(k)]);
                match window_row(row, period) {
                    Ok(w) => out.push(w),
                    Err((key, why)) => problems.push((at(key), why)),
                }
            }
            if rows.is_empty() {
                problems.push((
                    doc.pos_at(&[Seg::K("alerting"), Seg::K("windows")]),
                    "windows: give at least one row, or leave windows out for the default table".to_string(),
                ));
            }
            out
        }
    };
    Some(Alerting { page, ticket, windows })
}

fn window_row(row: &NativeWindow, period: Duration) -> Result<BurnWindow, (&'static str, String)> {
    let long = parse_prom_duration(&row.long).map_err(|e| ("long", e))?;
    let short = parse_prom_duration(&row.short).map_err(|e| ("short", e))?;
    if short >= long {
        return Err((
            "short",
            format!("short window {} must be shorter than the long one {}", row.short, row.long),
        ));
    }
    if long > period {
        return Err(("long", format!("long window {} is longer than the period", row.long)));
    }
    let mut window = match (row.budget, row.burn_rate) {
        (Some(budget), None) if budget.0 > 0.0 => {
            windows::window(row.severity, budget.0, long, short, period)
        }
        (None, Some(rate)) if rate.is_finite() && rate > 0.0 => {
            windows::window_with_rate(row.severity, rate, long, short, period)
        }
        (Some(_), Some(_)) => return Err(("burn_rate", "give budget or burn_rate, not both".to_string())),
        (None, None) => {
            return Err(("severity", "a window needs budget (e.g. 2%) or burn_rate (e.g. 14.4)".to_string()));
        }
        (Some(_), None) => return Err(("budget", "budget must be above 0%".to_string())),
        (None, Some(_)) => return Err(("burn_rate", "burn_rate must be a number above 0".to_string())),
    };
    if let Some(text) = &row.for_duration {
        window.for_duration = Some(parse_prom_duration(text).map_err(|e| ("for", e))?);
    }
    Ok(window)
}

/// `<Service><Name>BudgetBurn` in UpperCamelCase, from the letters and digits of both (prefixed `Slo` when
/// it would start with a digit).
pub fn default_alert_name(service: &str, name: &str) -> String {
    let mut out = String::new();
    for word in service
        .split(|c: char| !c.is_ascii_alphanumeric())
        .chain(name.split(|c: char| !c.is_ascii_alphanumeric()))
    {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.insert_str(0, "Slo");
    }
    out.push_str("BudgetBurn");
    out
}

/// Service and SLO names: `[A-Za-z0-9_.-]+`, at most 128 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("must be 1 to 128 characters, found {} ", name.len()));
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c))) {
        Some(c) => Err(format!("{name:?} may only hold letters, digits, '_', '.' and '-' (found {c:?})")),
        None => Ok(()),
    }
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
pub fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__");
    if ok {
        Ok(())
    } else {
        Err(format!("label name {name:?} must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_default_to_camel_case() {
        assert_eq!(default_alert_name("checkout", "availability"), "CheckoutAvailabilityBudgetBurn");
        assert_eq!(default_alert_name("api-gw", "p99.latency"), "ApiGwP99LatencyBudgetBurn");
        assert_eq!(default_alert_name("9s", "x"), "Slo9sXBudgetBurn");
    }

    #[test]
    fn queries_are_selectors_or_window_templates() {
        assert_eq!(
            rate_query(r#"http_requests_total{code=~"5.."}"#),
            Ok(Query::Counter(r#"http_requests_total{code=~"5.."}"#.into()))
        );
        assert!(matches!(rate_query("sum(rate(x[{{.window}}]))"), Ok(Query::Template(_))));
        assert!(rate_query("sum(rate(x[5m]))").unwrap_err().contains("{{.window}}"));
        assert!(rate_query(r#"x{a="1"} or y{b="2"}"#).is_err(), "two selectors are an expression");
        assert!(matches!(rate_query(r#"{__name__="x",job="a"}"#), Ok(Query::Counter(_))));
        assert!(rate_query("").is_err());
    }

    #[test]
    fn thresholds_are_checked_against_declared_buckets() {
        assert!(is_bound(0.25, &[0.1, 0.25, 0.5]));
        assert!(!is_bound(0.3, &[0.1, 0.25, 0.5]));
        assert!(!is_bound(0.3, &[0.1, f64::INFINITY]), "+Inf is not a bound of every threshold");
        assert!(not_a_bound("h", 0.3, &[0.1, 0.25]).contains("not a bucket bound of h (bounds: 0.1, 0.25)"));
    }
}
