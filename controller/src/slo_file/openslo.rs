//! OpenSLO `apiVersion: openslo/v1` files read unchanged: each `kind: SLO` document with a ratio metric
//! over Prometheus counters becomes one [`SloDef`] per objective; every problem is reported at its node.
//!
//! - The indicator is inline (`spec.indicator`) or `spec.indicatorRef`, the `metadata.name` of a `kind: SLI`
//!   document **in the same file**: a file is read on its own (all-or-nothing), so an SLO never means
//!   something else depending on which other files were named with it. A `metricSourceRef` without a `type`
//!   takes the `spec.type` of the `kind: DataSource` of that name in the same file.
//! - `ratioMetric` with `counter: true`: `good` or `bad`, and `total`, each a `metricSource` of `type:
//!   Prometheus` whose `spec.query` is a counter selector (wrapped as `sum(rate(SELECTOR[window]))`) or an
//!   expression with `{{.window}}`. `good: H_bucket{…,le="T"}` over `total: H_count{…}` (the same other
//!   matchers) is read as the latency SLI "requests at or under T seconds" of histogram `H`, which also
//!   matches Prometheus 3's `le="1.0"` spelling of whole bounds. `counter: false` is refused: the spec defines it as "a single number that
//!   can arbitrarily go up or down", a gauge, and the error ratio over an arbitrary window (5 minutes for the
//!   page alert, 30 days for the budget) can only be computed from counters.
//! - Refused with the reason: `thresholdMetric`, `ratioMetric.raw`, other metric source types,
//!   `budgetingMethod` `Timeslices`/`RatioTimeslices` (chaos budgets count events: Occurrences), calendar
//!   windows (chaos periods are rolling), `op`/`value`/`timeSlice*` objective fields, composite objectives,
//!   durations in `m` (minutes) `M` (months) `Q` `Y`, and `openslo/v1alpha` (or any version but v1).
//! - `alertPolicies` are not read: the SLO gets the default multi-window multi-burn-rate alerts for its
//!   period (an OpenSLO burn-rate condition has one window, which cannot express a window pair).
//! - Other kinds (`Service`, `DataSource`, `SLI`, `AlertPolicy`, `AlertCondition`,
//!   `AlertNotificationTarget`) are skipped.
//!
//! `metadata.name` is the SLO's name (`<name>-<displayName or 1-based index>` when there are several
//! objectives), `spec.service` its service, `spec.description` its description, `metadata.labels` its
//! labels (a list value joined with `,`; names must be Prometheus label names, since they label the
//! generated rules), and the annotations `runbook_url` and `dashboard_url` its links; other annotations are
//! other tools' metadata and are not read. Both alerts get the default name `<Service><Name>BudgetBurn`.
//!
//! Unknown keys are refused in the documents read (as `oslo validate` does), except under `metadata.labels`,
//! `metadata.annotations` and a metric source's free-form `spec` (only `query` is read there).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::model::{AlertSpec, Alerting, Counted, Events, Format, LatencySli, Origin, Query, Sli, SloDef};
use super::native::{Problem, check_label_name, check_name, default_alert_name, rate_query};
use super::windows::{WORKBOOK_PERIOD, default_windows, parse_period};
use crate::experiment::de::from_node;
use crate::experiment::model::Percent;
use crate::experiment::node::{Node, Seg, Value};

/// The only OpenSLO version read.
pub const API_VERSION: &str = "openslo/v1";

/// The kinds of `openslo/v1` that hold no SLO and are skipped.
pub const OTHER_KINDS: &[&str] =
    &["SLI", "Service", "DataSource", "AlertPolicy", "AlertCondition", "AlertNotificationTarget"];

/// The `kind: SLI` and `kind: DataSource` documents of a file, by `metadata.name`, for references.
#[derive(Debug, Default)]
pub struct Index<'a> {
    slis: BTreeMap<String, &'a Node>,
    sources: BTreeMap<String, &'a Node>,
}

impl<'a> Index<'a> {
    /// Indexes the OpenSLO documents of one file (the first of a name wins; a second is reported when read).
    pub fn new(docs: &'a [Node]) -> Index<'a> {
        let mut index = Index::default();
        for doc in docs {
            if text(doc, &["apiVersion"]) != Some(API_VERSION) {
                continue;
            }
            let Some(name) = text(doc, &["metadata", "name"]) else { continue };
            let map = match text(doc, &["kind"]) {
                Some("SLI") => &mut index.slis,
                Some("DataSource") => &mut index.sources,
                _ => continue,
            };
            map.entry(name.to_string()).or_insert(doc);
        }
        index
    }
}

/// The string at `path`, if there is one.
fn text<'n>(node: &'n Node, path: &[&str]) -> Option<&'n str> {
    let mut node = node;
    for key in path {
        node = node.get(key)?;
    }
    match &node.value {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OsloSlo {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    metadata: Metadata,
    spec: SloSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
    #[serde(default, rename = "displayName")]
    _display_name: Option<String>,
    /// A string or a list of strings per key.
    #[serde(default)]
    labels: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SloSpec {
    #[serde(default)]
    description: Option<String>,
    service: String,
    #[serde(default)]
    indicator: Option<Indicator>,
    #[serde(default, rename = "indicatorRef")]
    indicator_ref: Option<String>,
    #[serde(default, rename = "timeWindow")]
    time_window: Option<Vec<TimeWindow>>,
    #[serde(rename = "budgetingMethod")]
    budgeting_method: String,
    objectives: Vec<Objective>,
    /// Noted, not read: the default alert windows are used.
    #[serde(default, rename = "alertPolicies")]
    _alert_policies: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Indicator {
    #[serde(default, rename = "metadata")]
    _metadata: Option<IgnoredAny>,
    spec: SliSpec,
}

/// A `kind: SLI` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OsloSli {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(rename = "metadata")]
    _metadata: Metadata,
    spec: SliSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SliSpec {
    #[serde(default, rename = "description")]
    _description: Option<String>,
    #[serde(default, rename = "thresholdMetric")]
    threshold_metric: Option<IgnoredAny>,
    #[serde(default, rename = "ratioMetric")]
    ratio_metric: Option<RatioMetric>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatioMetric {
    #[serde(default)]
    counter: Option<bool>,
    #[serde(default)]
    good: Option<MetricSpec>,
    #[serde(default)]
    bad: Option<MetricSpec>,
    #[serde(default)]
    total: Option<MetricSpec>,
    #[serde(default, rename = "rawType")]
    raw_type: Option<IgnoredAny>,
    #[serde(default)]
    raw: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricSpec {
    #[serde(rename = "metricSource")]
    metric_source: MetricSource,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricSource {
    #[serde(default, rename = "metricSourceRef")]
    metric_source_ref: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// Free-form per data source; `query` is read.
    #[serde(default, rename = "spec")]
    _spec: BTreeMap<String, IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeWindow {
    duration: String,
    #[serde(default, rename = "isRolling")]
    is_rolling: Option<bool>,
    #[serde(default)]
    calendar: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Objective {
    #[serde(default, rename = "displayName")]
    display_name: Option<String>,
    #[serde(default)]
    op: Option<IgnoredAny>,
    #[serde(default)]
    value: Option<IgnoredAny>,
    #[serde(default)]
    target: Option<f64>,
    #[serde(default, rename = "targetPercent")]
    target_percent: Option<f64>,
    #[serde(default, rename = "timeSliceTarget")]
    time_slice_target: Option<IgnoredAny>,
    #[serde(default, rename = "timeSliceWindow")]
    time_slice_window: Option<IgnoredAny>,
    #[serde(default)]
    indicator: Option<IgnoredAny>,
    #[serde(default, rename = "indicatorRef")]
    indicator_ref: Option<IgnoredAny>,
    #[serde(default, rename = "compositeWeight")]
    composite_weight: Option<IgnoredAny>,
}

/// Reads one `openslo/…` document: the SLOs of a `kind: SLO`, nothing for the other kinds.
pub fn read(file: &str, doc: &Node, index: &Index<'_>) -> Result<Vec<SloDef>, Vec<Problem>> {
    let api = text(doc, &["apiVersion"]).unwrap_or_default();
    if api != API_VERSION {
        let hint = if api == "openslo/v1alpha" {
            " (v1alpha predates v1's indicator, timeWindow and objectives layout: rewrite the file as openslo/v1)"
        } else {
            ""
        };
        return Err(vec![(
            doc.pos_at(&[Seg::K("apiVersion")]),
            format!("OpenSLO {api} is not read, only {API_VERSION}{hint}"),
        )]);
    }
    match text(doc, &["kind"]) {
        Some("SLO") => read_slo(file, doc, index),
        Some("SLI") => {
            let name = text(doc, &["metadata", "name"]).unwrap_or_default();
            match index.slis.get(name) {
                Some(first) if !std::ptr::eq(*first, doc) => Err(vec![(
                    doc.pos_at(&[Seg::K("metadata"), Seg::K("name")]),
                    format!("SLI {name:?} is defined twice in this file (first at line {})", first.pos.line),
                )]),
                _ => Ok(Vec::new()),
            }
        }
        Some(kind) if OTHER_KINDS.contains(&kind) => Ok(Vec::new()),
        other => Err(vec![(
            doc.pos_at(&[Seg::K("kind")]),
            format!(
                "unknown OpenSLO kind {:?}: expected SLO (read) or one of {} (skipped)",
                other.unwrap_or(""),
                OTHER_KINDS.join(", ")
            ),
        )]),
    }
}

fn read_slo(file: &str, doc: &Node, index: &Index<'_>) -> Result<Vec<SloDef>, Vec<Problem>> {
    let slo: OsloSlo = from_node(doc).map_err(|e| vec![(e.pos.unwrap_or(doc.pos), e.message)])?;
    let mut problems = Vec::new();
    let at = |path: &[Seg<'_>]| doc.pos_at(path);
    let spec = &slo.spec;
    if let Err(why) = check_name(&slo.metadata.name) {
        problems.push((at(&[Seg::K("metadata"), Seg::K("name")]), format!("metadata.name: {why}")));
    }
    if let Err(why) = check_name(&spec.service) {
        problems.push((at(&[Seg::K("spec"), Seg::K("service")]), format!("service: {why}")));
    }
    let labels = labels(&slo.metadata, doc, &mut problems);
    // Annotations are other tools' implementation metadata (`openslo.com/key1`); only the two links are read.
    let annotations = &slo.metadata.annotations;
    let mut url = |key: &str| {
        let url = annotations.get(key)?.clone();
        if url.starts_with("https://") || url.starts_with("http://") {
            Some(url)
        } else {
            problems.push((
                doc.pos_at(&[Seg::K("metadata"), Seg::K("annotations"), Seg::K(key)]),
                format!("annotation {key} must be an http:// or https:// URL, found {url:?}"),
            ));
            None
        }
    };
    let runbook_url = url("runbook_url");
    let dashboard_url = url("dashboard_url");
    match spec.budgeting_method.as_str() {
        "Occurrences" => {}
        "Timeslices" | "RatioTimeslices" => problems.push((
            at(&[Seg::K("spec"), Seg::K("budgetingMethod")]),
            format!(
                "budgetingMethod {} is not read: chaos budgets count events (Occurrences), and burn-rate alerts, budget gates and guardrails are defined on event ratios, not on good time slices",
                spec.budgeting_method
            ),
        )),
        other => problems.push((
            at(&[Seg::K("spec"), Seg::K("budgetingMethod")]),
            format!("budgetingMethod must be Occurrences (Timeslices and RatioTimeslices are not read), found {other:?}"),
        )),
    }
    let period = period(spec, doc, &mut problems);
    let sli = indicator(spec, doc, index, &mut problems);
    if spec.objectives.is_empty() {
        problems.push((
            at(&[Seg::K("spec"), Seg::K("objectives")]),
            "objectives needs at least one objective".to_string(),
        ));
    }
    let several = spec.objectives.len() > 1;
    let mut slos = Vec::new();
    for (i, objective) in spec.objectives.iter().enumerate() {
        let path = |key: &'static str| [Seg::K("spec"), Seg::K("objectives"), Seg::I(i), Seg::K(key)];
        let node_pos = at(&[Seg::K("spec"), Seg::K("objectives"), Seg::I(i)]);
        let refuse = |key: &'static str, why: &str, problems: &mut Vec<Problem>| {
            problems.push((doc.key_pos_at(&path(key)), format!("objectives[{i}].{key} is not read: {why}")));
        };
        for (given, key) in [(objective.op.is_some(), "op"), (objective.value.is_some(), "value")] {
            if given {
                refuse(
                    key,
                    "op and value compare a thresholdMetric, and only ratioMetric SLIs are read",
                    &mut problems,
                );
            }
        }
        for (given, key) in [
            (objective.time_slice_target.is_some(), "timeSliceTarget"),
            (objective.time_slice_window.is_some(), "timeSliceWindow"),
        ] {
            if given {
                refuse(
                    key,
                    "time slices belong to the Timeslices budgeting method; chaos budgets count events (Occurrences)",
                    &mut problems,
                );
            }
        }
        for (given, key) in [
            (objective.indicator.is_some(), "indicator"),
            (objective.indicator_ref.is_some(), "indicatorRef"),
            (objective.composite_weight.is_some(), "compositeWeight"),
        ] {
            if given {
                refuse(
                    key,
                    "composite SLOs (an indicator per objective) are not read; give the SLO one indicator in spec",
                    &mut problems,
                );
            }
        }
        let target = match (objective.target, objective.target_percent) {
            (Some(t), None) if t > 0.0 && t < 1.0 => format!("{t}").parse::<Percent>().map(|p| p.0).ok(),
            (None, Some(p)) if p > 0.0 && p < 100.0 => format!("{p}%").parse::<Percent>().map(|p| p.0).ok(),
            (Some(t), None) => {
                problems.push((
                    at(&path("target")),
                    format!("target is a fraction above 0 and below 1 (1 leaves no error budget), found {t}"),
                ));
                None
            }
            (None, Some(p)) => {
                problems.push((
                    at(&path("targetPercent")),
                    format!("targetPercent is above 0 and below 100 (100 leaves no error budget), found {p}"),
                ));
                None
            }
            (Some(_), Some(_)) => {
                problems.push((
                    doc.key_pos_at(&path("targetPercent")),
                    "give target or targetPercent, not both".to_string(),
                ));
                None
            }
            (None, None) => {
                problems.push((
                    node_pos,
                    "an objective needs target (e.g. 0.999) or targetPercent (e.g. 99.9)".to_string(),
                ));
                None
            }
        };
        let name = if several {
            let suffix = objective
                .display_name
                .as_deref()
                .map(slug)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| (i + 1).to_string());
            format!("{}-{suffix}", slo.metadata.name)
        } else {
            slo.metadata.name.clone()
        };
        if several && let Err(why) = check_name(&name) {
            problems.push((node_pos, format!("the SLO name of this objective, {name:?}: {why}")));
        }
        let (Some(target), Some(sli)) = (target, sli.clone()) else { continue };
        let alert = AlertSpec {
            enabled: true,
            name: default_alert_name(&spec.service, &name),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        let origin = if several { node_pos } else { doc.pos };
        slos.push(SloDef {
            service: spec.service.clone(),
            name,
            description: spec.description.clone(),
            sli,
            objective: target,
            period,
            labels: labels.clone(),
            runbook_url: runbook_url.clone(),
            dashboard_url: dashboard_url.clone(),
            alerting: Alerting { page: alert.clone(), ticket: alert, windows: default_windows(period) },
            origin: Origin {
                file: file.to_string(),
                line: origin.line,
                column: origin.column,
                format: Format::OpenSlo,
            },
        });
    }
    if problems.is_empty() { Ok(slos) } else { Err(problems) }
}

/// `metadata.labels`: each value a string, or a list of strings joined with `,` (a Prometheus label holds
/// one value); the names must be Prometheus label names, since they label the generated rules.
fn labels(metadata: &Metadata, doc: &Node, problems: &mut Vec<Problem>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value) in &metadata.labels {
        let path = [Seg::K("metadata"), Seg::K("labels"), Seg::K(key)];
        if let Err(why) = check_label_name(key) {
            problems
                .push((doc.key_pos_at(&path), format!("{why} (metadata.labels label the generated rules)")));
            continue;
        }
        let text = match value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            _ => None,
        };
        match text {
            Some(text) => {
                out.insert(key.clone(), text);
            }
            None => problems
                .push((doc.pos_at(&path), format!("label {key}: expected a string or a list of strings"))),
        }
    }
    out
}

/// `spec.timeWindow`: exactly one rolling window; default 30 days.
fn period(spec: &SloSpec, doc: &Node, problems: &mut Vec<Problem>) -> std::time::Duration {
    let Some(windows) = &spec.time_window else { return WORKBOOK_PERIOD };
    let base = [Seg::K("spec"), Seg::K("timeWindow")];
    let [window] = windows.as_slice() else {
        problems.push((
            doc.pos_at(&base),
            format!("timeWindow holds exactly one window, found {}", windows.len()),
        ));
        return WORKBOOK_PERIOD;
    };
    let at = |key| doc.pos_at(&[Seg::K("spec"), Seg::K("timeWindow"), Seg::I(0), Seg::K(key)]);
    if window.calendar.is_some() || window.is_rolling == Some(false) {
        problems.push((
            at(if window.calendar.is_some() { "calendar" } else { "isRolling" }),
            "calendar-aligned time windows are not read: chaos SLO periods are rolling (isRolling: true)"
                .to_string(),
        ));
        return WORKBOOK_PERIOD;
    }
    let d = window.duration.trim();
    let unit = d.trim_start_matches(|c: char| c.is_ascii_digit());
    let hint = match unit {
        "m" => Some(format!(
            "{d} is minutes in OpenSLO (m is minutes, M months): an SLO period is whole days, weeks or hours, e.g. 30d"
        )),
        "M" => Some(format!(
            "{d} is months in OpenSLO, which last 28 to 31 days: write the period in days, e.g. 30d or 28d"
        )),
        "Q" | "Y" => Some(format!(
            "{d}: quarters and years are calendar units; write the rolling period in days, e.g. 90d"
        )),
        _ => None,
    };
    match hint.map_or_else(|| parse_period(d), Err) {
        Ok(period) => period,
        Err(why) => {
            problems.push((at("duration"), format!("timeWindow duration: {why}")));
            WORKBOOK_PERIOD
        }
    }
}

/// The SLI: inline, or the `kind: SLI` named by `indicatorRef` in the same file.
fn indicator(spec: &SloSpec, doc: &Node, index: &Index<'_>, problems: &mut Vec<Problem>) -> Option<Sli> {
    match (&spec.indicator, &spec.indicator_ref) {
        (Some(indicator), None) => {
            let node = doc.get("spec")?.get("indicator")?.get("spec")?;
            ratio(&indicator.spec, node, index, problems)
        }
        (None, Some(name)) => {
            let Some(sli_doc) = index.slis.get(name.as_str()) else {
                problems.push((
                    doc.pos_at(&[Seg::K("spec"), Seg::K("indicatorRef")]),
                    format!(
                        "indicatorRef {name:?}: no kind: SLI with that metadata.name in this file (references are resolved within one file)"
                    ),
                ));
                return None;
            };
            match from_node::<OsloSli>(sli_doc) {
                Ok(sli) => ratio(&sli.spec, sli_doc.get("spec")?, index, problems),
                Err(e) => {
                    problems.push((e.pos.unwrap_or(sli_doc.pos), e.message));
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            problems.push((
                doc.key_pos_at(&[Seg::K("spec"), Seg::K("indicatorRef")]),
                "give indicator or indicatorRef, not both".to_string(),
            ));
            None
        }
        (None, None) => {
            problems.push((
                doc.pos_at(&[Seg::K("spec")]),
                "an SLO needs indicator (inline) or indicatorRef (the name of a kind: SLI in this file)"
                    .to_string(),
            ));
            None
        }
    }
}

/// A ratio metric over Prometheus counters; `node` is the SLI's `spec`.
fn ratio(spec: &SliSpec, node: &Node, index: &Index<'_>, problems: &mut Vec<Problem>) -> Option<Sli> {
    if spec.threshold_metric.is_some() {
        problems.push((
            node.key_pos_at(&[Seg::K("thresholdMetric")]),
            "thresholdMetric is not read: it compares a raw value with a threshold and yields no good and total events; use ratioMetric with counters".to_string(),
        ));
        return None;
    }
    let Some(ratio) = &spec.ratio_metric else {
        problems.push((node.pos, "the SLI needs a ratioMetric (good or bad, and total)".to_string()));
        return None;
    };
    let at = |path: &[Seg<'_>]| {
        let mut full = vec![Seg::K("ratioMetric")];
        full.extend_from_slice(path);
        node.pos_at(&full)
    };
    if ratio.raw.is_some() || ratio.raw_type.is_some() {
        let key = if ratio.raw.is_some() { "raw" } else { "rawType" };
        problems.push((
            node.key_pos_at(&[Seg::K("ratioMetric"), Seg::K(key)]),
            "ratioMetric.raw is not read: a precomputed ratio has no event counts and cannot be recomputed over other windows; give good or bad, and total".to_string(),
        ));
        return None;
    }
    match ratio.counter {
        Some(true) => {}
        Some(false) => {
            problems.push((
                at(&[Seg::K("counter")]),
                "counter: false (a gauge that goes up and down) is not read: the error ratio over each alert window and the period needs counters of events; give counter selectors with counter: true".to_string(),
            ));
            return None;
        }
        None => {
            problems.push((
                at(&[]),
                "ratioMetric needs counter: true (its queries are counters of events)".to_string(),
            ));
            return None;
        }
    }
    let (counted, key, counted_spec) = match (&ratio.good, &ratio.bad) {
        (Some(good), None) => (Counted::Good, "good", good),
        (None, Some(bad)) => (Counted::Bad, "bad", bad),
        _ => {
            problems.push((at(&[]), "ratioMetric needs exactly one of good or bad, with total".to_string()));
            return None;
        }
    };
    let Some(total) = &ratio.total else {
        problems.push((at(&[]), "ratioMetric needs total".to_string()));
        return None;
    };
    let query = metric(counted_spec, key, node, index, problems);
    let total = metric(total, "total", node, index, problems);
    let (query, total) = (query?, total?);
    if let (Counted::Good, Query::Counter(good), Query::Counter(all)) = (counted, &query, &total)
        && let Some(latency) = latency(good, all)
    {
        return Some(Sli::Latency(latency));
    }
    Some(Sli::Events(Events { counted, query, total }))
}

/// `good: H_bucket{M…,le="T"}` over `total: H_count{M…}` (the same other matchers) is the latency SLI
/// "requests at or under T seconds" of histogram `H`: read as one, it gets the `le` matcher that also
/// matches Prometheus 3's spelling of whole bounds (`1.0`).
fn latency(good: &str, total: &str) -> Option<LatencySli> {
    let (good_name, good_matchers) = super::promql::split_selector(good)?;
    let (total_name, total_matchers) = super::promql::split_selector(total)?;
    let histogram = good_name.strip_suffix("_bucket")?;
    if total_name.strip_suffix("_count")? != histogram {
        return None;
    }
    let mut threshold = None;
    let mut others = Vec::new();
    for matcher in good_matchers {
        match matcher.strip_prefix("le=\"").and_then(|v| v.strip_suffix('"')) {
            Some(bound) => threshold = Some(bound.parse::<f64>().ok().filter(|t| t.is_finite() && *t > 0.0)?),
            None => others.push(matcher),
        }
    }
    if others != total_matchers {
        return None;
    }
    Some(LatencySli {
        histogram: histogram.to_string(),
        matchers: others.join(","),
        threshold: threshold?,
        buckets: None,
    })
}

/// One metric source: Prometheus, with `spec.query` a counter selector or a `{{.window}}` expression.
fn metric(
    given: &MetricSpec,
    key: &'static str,
    node: &Node,
    index: &Index<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Query> {
    let source = &given.metric_source;
    let path = |more: &[Seg<'static>]| {
        let mut full = vec![Seg::K("ratioMetric"), Seg::K(key), Seg::K("metricSource")];
        full.extend_from_slice(more);
        full
    };
    let kind = match (&source.kind, &source.metric_source_ref) {
        (Some(kind), _) => Some(kind.clone()),
        (None, Some(name)) => {
            index.sources.get(name.as_str()).and_then(|d| text(d, &["spec", "type"])).map(str::to_string)
        }
        (None, None) => None,
    };
    match kind {
        Some(kind) if kind.eq_ignore_ascii_case("prometheus") => {}
        Some(kind) => {
            problems.push((
                node.pos_at(&path(&[Seg::K("type")])),
                format!("metric source type {kind:?} is not read: only Prometheus sources (PromQL queries)"),
            ));
            return None;
        }
        None => {
            problems.push((
                node.pos_at(&path(&[])),
                "metricSource needs type: Prometheus (or a metricSourceRef to a kind: DataSource of type Prometheus in this file)".to_string(),
            ));
            return None;
        }
    }
    let query_node =
        node.get("ratioMetric")?.get(key)?.get("metricSource")?.get("spec").and_then(|s| s.get("query"));
    let query_pos = node.pos_at(&path(&[Seg::K("spec"), Seg::K("query")]));
    let query = match query_node.map(|n| &n.value) {
        Some(Value::Str(q)) => q,
        _ => {
            problems.push((query_pos, format!("{key}: metricSource.spec.query must be a PromQL string")));
            return None;
        }
    };
    match rate_query(query) {
        Ok(q) => Some(q),
        Err(why) => {
            problems.push((
                query_pos,
                format!("{key}: {why} (counter: true queries are counters, wrapped as sum(rate(SELECTOR[window])))"),
            ));
            None
        }
    }
}

/// A display name as an SLO name suffix: lowercase letters, digits, `_`, `.`, and `-` for anything else.
fn slug(display: &str) -> String {
    let mut out = String::new();
    for c in display.trim().chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_become_name_suffixes() {
        assert_eq!(slug("Foo Total Errors"), "foo-total-errors");
        assert_eq!(slug("  p99 / 300ms "), "p99-300ms");
        assert_eq!(slug("!!"), "");
    }

    #[test]
    fn a_bucket_over_its_count_is_a_latency_sli() {
        let got = latency(r#"h_bucket{job="a", le="0.3"}"#, r#"h_count{job="a"}"#).unwrap();
        assert_eq!((got.histogram.as_str(), got.matchers.as_str(), got.threshold), ("h", r#"job="a""#, 0.3));
        assert_eq!(latency(r#"h_bucket{le="1"}"#, "h_count").unwrap().matchers, "");
        assert!(latency(r#"h_bucket{job="b",le="0.3"}"#, r#"h_count{job="a"}"#).is_none());
        assert!(latency(r#"h_bucket{le=~"0.3"}"#, "h_count").is_none());
        assert!(latency(r#"g_bucket{le="0.3"}"#, "h_count").is_none());
        assert_eq!(
            crate::slo_file::promql::split_selector(r#"x{a="1,2", b!~"x\"y"}"#).unwrap().1,
            [r#"a="1,2""#, r#"b!~"x\"y""#]
        );
    }
}
