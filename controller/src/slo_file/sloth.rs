//! Sloth SLO files read unchanged: the `version: "prometheus/v1"` file and the Kubernetes resource
//! `apiVersion: sloth.slok.dev/v1`, `kind: PrometheusServiceLevel` (the same content under `spec`, with
//! camelCase keys), each SLO normalised into a [`SloDef`] with every problem at its node.
//!
//! Like Sloth's own strict reading, unknown keys are refused (a misspelt `ticket_alert` would otherwise
//! silently page). Two keys of newer Sloth versions are read and ignored, with the reason: `infoLabels`
//! (labels of Sloth's `sloth_slo_info` metric, which chaos does not generate) and `interval` (rule group
//! evaluation intervals: the rule generator chooses its own). `sli.plugin` is refused: plugins are Go code
//! that only Sloth can run.
//!
//! Mapping (see also the "Importing Sloth and OpenSLO" docs section):
//! - `service`, `slos[].name`, `slos[].description` → `service`, `name`, `description`;
//! - `slos[].objective` (percent, `99.9`) → `objective` as a fraction, exactly as `99.9%` reads (`0.999`);
//! - the period is Sloth's default, 30 days (a Sloth file cannot name another), with the alert windows of
//!   the default table for it;
//! - `labels` (file) merged with `slos[].labels` (the SLO's win) → `labels`;
//! - `sli.events.error_query` / `total_query` → bad events / all events; `sli.raw.error_ratio_query` → an
//!   error-ratio SLI. Each must hold `{{.window}}` as Sloth requires; the exact shape
//!   `sum(rate(SELECTOR[{{.window}}]))` is read as the counter `SELECTOR`, which yields the same PromQL;
//! - `alerting.name` → both alerts' name (default `<Service><Name>BudgetBurn`), the page and the ticket told
//!   apart by their `severity` label; `alerting.labels`/`annotations` merged under each of
//!   `page_alert`/`ticket_alert`'s (the specific ones win); `disable: true` → that alert disabled;
//!   `alerting.annotations.runbook_url` / `dashboard_url` (http(s) URLs) → `runbook_url` / `dashboard_url`,
//!   which the rule generator puts back on both alerts.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::model::{AlertSpec, Alerting, Counted, Events, Format, Origin, Query, Sli, SloDef};
use super::native::{Problem, check_label_name, check_name, default_alert_name, is_metric_name, rate_query};
use super::promql::has_window;
use super::windows::{WORKBOOK_PERIOD, default_windows};
use crate::experiment::de::from_node;
use crate::experiment::model::Percent;
use crate::experiment::node::{Key, Node, Pos, Seg, Value};

/// The `version` of a Sloth file.
pub const VERSION: &str = "prometheus/v1";
/// The `apiVersion` of Sloth's Kubernetes resource.
pub const K8S_API_VERSION: &str = "sloth.slok.dev/v1";
/// Its `kind`.
pub const K8S_KIND: &str = "PrometheusServiceLevel";

/// The content shared by both forms (the file's top level without `version`, the resource's `spec`), with
/// the file's snake_case keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlothSpec {
    service: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    slos: Vec<SlothSlo>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlothSlo {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// Percent, (0, 100).
    objective: f64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Labels of Sloth's `sloth_slo_info` metric: read and ignored.
    #[serde(default, rename = "infoLabels")]
    _info_labels: Option<IgnoredAny>,
    sli: SlothSli,
    #[serde(default)]
    alerting: SlothAlerting,
    /// Sloth's rule group intervals: read and ignored.
    #[serde(default, rename = "interval")]
    _interval: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlothSli {
    #[serde(default)]
    events: Option<SlothEvents>,
    #[serde(default)]
    raw: Option<SlothRaw>,
    #[serde(default)]
    plugin: Option<SlothPlugin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlothEvents {
    error_query: String,
    total_query: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlothRaw {
    error_ratio_query: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlothPlugin {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "options")]
    _options: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlothAlerting {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    page_alert: SlothAlert,
    #[serde(default)]
    ticket_alert: SlothAlert,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlothAlert {
    #[serde(default)]
    disable: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The resource's camelCase keys and the file's spelling of each.
const CAMEL: &[(&str, &str)] = &[
    ("errorQuery", "error_query"),
    ("totalQuery", "total_query"),
    ("errorRatioQuery", "error_ratio_query"),
    ("pageAlert", "page_alert"),
    ("ticketAlert", "ticket_alert"),
];

/// Mappings whose keys are the author's own (label and annotation names, plugin options): never renamed.
const FREE_MAPS: &[&str] = &["labels", "annotations", "options", "infoLabels", "interval"];

/// Reads a `version: "prometheus/v1"` document.
pub fn read_file(file: &str, doc: &Node) -> Result<Vec<SloDef>, Vec<Problem>> {
    let mut problems = Vec::new();
    let Value::Map(entries) = &doc.value else {
        return Err(vec![(doc.pos, format!("expected a Sloth file (a mapping), found {}", doc.kind()))]);
    };
    match doc.get("version").map(|n| &n.value) {
        Some(Value::Str(v)) if v == VERSION => {}
        _ => problems.push((doc.pos_at(&[Seg::K("version")]), format!("version must be \"{VERSION}\""))),
    }
    // Everything but `version` is the spec.
    let spec = Node::new(
        Value::Map(entries.iter().filter(|(k, _)| k.name != "version").cloned().collect()),
        doc.pos,
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    read_spec(file, &spec)
}

/// Reads an `apiVersion: sloth.slok.dev/v1`, `kind: PrometheusServiceLevel` resource.
pub fn read_resource(file: &str, doc: &Node) -> Result<Vec<SloDef>, Vec<Problem>> {
    let Value::Map(entries) = &doc.value else {
        return Err(vec![(
            doc.pos,
            format!("expected a Kubernetes resource (a mapping), found {}", doc.kind()),
        )]);
    };
    let mut problems = Vec::new();
    for (key, value) in entries {
        match key.name.as_str() {
            "apiVersion" | "metadata" | "status" | "spec" => {}
            "kind" => match &value.value {
                Value::Str(kind) if kind == K8S_KIND => {}
                _ => problems.push((
                    value.pos,
                    format!("kind must be {K8S_KIND} (the only kind of {K8S_API_VERSION} that holds SLOs)"),
                )),
            },
            other => problems.push((
                key.pos,
                format!("unknown field `{other}`, expected one of `apiVersion`, `kind`, `metadata`, `spec`, `status`"),
            )),
        }
    }
    let Some(spec) = doc.get("spec") else {
        problems.push((doc.pos, format!("a {K8S_KIND} needs a spec with the service and its slos")));
        return Err(problems);
    };
    let mut snake = Vec::new();
    let spec = rename(spec, &mut snake);
    problems.extend(snake.into_iter().map(|(pos, found, want)| {
        (pos, format!("unknown field `{found}` (the {K8S_KIND} resource spells it `{want}`)"))
    }));
    if !problems.is_empty() {
        return Err(problems);
    }
    read_spec(file, &spec)
}

/// The resource's `spec` with its camelCase keys in the file's snake_case; snake_case spellings of those keys
/// (which the resource does not accept) are collected as `(position, found, expected)`.
fn rename(node: &Node, snake: &mut Vec<(Pos, String, String)>) -> Node {
    let value = match &node.value {
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(key, value)| {
                    if let Some((camel, _)) = CAMEL.iter().find(|(_, s)| *s == key.name) {
                        snake.push((key.pos, key.name.clone(), (*camel).to_string()));
                    }
                    let name = CAMEL
                        .iter()
                        .find(|(c, _)| *c == key.name)
                        .map_or_else(|| key.name.clone(), |(_, s)| (*s).to_string());
                    let value = if FREE_MAPS.contains(&key.name.as_str()) {
                        value.clone()
                    } else {
                        rename(value, snake)
                    };
                    (Key { name, pos: key.pos }, value)
                })
                .collect(),
        ),
        Value::Seq(items) => Value::Seq(items.iter().map(|item| rename(item, snake)).collect()),
        other => other.clone(),
    };
    Node { value, pos: node.pos, substituted: node.substituted }
}

/// Reads the shared content (`spec` holds snake_case keys).
fn read_spec(file: &str, spec: &Node) -> Result<Vec<SloDef>, Vec<Problem>> {
    let parsed: SlothSpec = from_node(spec).map_err(|e| vec![(e.pos.unwrap_or(spec.pos), e.message)])?;
    let mut problems = Vec::new();
    if let Err(why) = check_name(&parsed.service) {
        problems.push((spec.pos_at(&[Seg::K("service")]), format!("service: {why}")));
    }
    check_labels(&parsed.labels, spec, &[Seg::K("labels")], &mut problems);
    if parsed.slos.is_empty() {
        problems.push((
            spec.key_pos_at(&[Seg::K("slos")]),
            "a Sloth file needs at least one SLO under slos".to_string(),
        ));
    }
    let mut slos = Vec::new();
    for (i, slo) in parsed.slos.iter().enumerate() {
        let node = spec.get("slos").and_then(|n| match &n.value {
            Value::Seq(items) => items.get(i),
            _ => None,
        });
        let Some(node) = node else { continue };
        if let Some(slo) = read_slo(file, &parsed, slo, node, &mut problems) {
            slos.push(slo);
        }
    }
    if problems.is_empty() { Ok(slos) } else { Err(problems) }
}

fn read_slo(
    file: &str,
    spec: &SlothSpec,
    slo: &SlothSlo,
    node: &Node,
    problems: &mut Vec<Problem>,
) -> Option<SloDef> {
    let before = problems.len();
    let at = |path: &[Seg<'_>]| node.pos_at(path);
    if let Err(why) = check_name(&slo.name) {
        problems.push((at(&[Seg::K("name")]), format!("name: {why}")));
    }
    let objective =
        objective(slo.objective).map_err(|why| problems.push((at(&[Seg::K("objective")]), why))).ok();
    check_labels(&slo.labels, node, &[Seg::K("labels")], problems);
    let mut labels = spec.labels.clone();
    labels.extend(slo.labels.clone());
    let sli = sli(&slo.sli, node, problems);

    let alerting = &slo.alerting;
    let name = alerting.name.clone().unwrap_or_else(|| default_alert_name(&spec.service, &slo.name));
    if !is_metric_name(&name) {
        problems.push((
            at(&[Seg::K("alerting"), Seg::K("name")]),
            format!("alert name {name:?} must be a metric-style name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
        ));
    }
    let mut shared = alerting.annotations.clone();
    let mut url = |key: &str| match shared.get(key) {
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => shared.remove(key),
        _ => None,
    };
    let runbook_url = url("runbook_url");
    let dashboard_url = url("dashboard_url");
    check_labels(&alerting.labels, node, &[Seg::K("alerting"), Seg::K("labels")], problems);
    check_labels(&alerting.annotations, node, &[Seg::K("alerting"), Seg::K("annotations")], problems);
    let mut alert = |given: &SlothAlert, key: &str| {
        for (what, map) in [("labels", &given.labels), ("annotations", &given.annotations)] {
            check_labels(map, node, &[Seg::K("alerting"), Seg::K(key), Seg::K(what)], problems);
        }
        let mut labels = alerting.labels.clone();
        labels.extend(given.labels.clone());
        let mut annotations = shared.clone();
        annotations.extend(given.annotations.clone());
        AlertSpec { enabled: !given.disable, name: name.clone(), labels, annotations }
    };
    let page = alert(&alerting.page_alert, "page_alert");
    let ticket = alert(&alerting.ticket_alert, "ticket_alert");
    if problems.len() > before {
        return None;
    }
    Some(SloDef {
        service: spec.service.clone(),
        name: slo.name.clone(),
        description: slo.description.clone(),
        sli: sli?,
        objective: objective?,
        period: WORKBOOK_PERIOD,
        labels,
        runbook_url,
        dashboard_url,
        alerting: Alerting { page, ticket, windows: default_windows(WORKBOOK_PERIOD) },
        origin: Origin {
            file: file.to_string(),
            line: node.pos.line,
            column: node.pos.column,
            format: Format::Sloth,
        },
    })
}

/// Sloth's objective in percent as a fraction, without binary noise: `99.9` reads as `99.9%` does.
fn objective(percent: f64) -> Result<f64, String> {
    if !(percent.is_finite() && percent > 0.0 && percent < 100.0) {
        return Err(format!(
            "objective is a percentage above 0 and below 100 (100 leaves no error budget), found {percent}"
        ));
    }
    format!("{percent}%").parse::<Percent>().map(|p| p.0)
}

fn sli(sli: &SlothSli, node: &Node, problems: &mut Vec<Problem>) -> Option<Sli> {
    let path = |keys: &[&'static str]| {
        let mut segs = vec![Seg::K("sli")];
        segs.extend(keys.iter().map(|k| Seg::K(k)));
        node.pos_at(&segs)
    };
    if let Some(plugin) = &sli.plugin {
        problems.push((
            node.key_pos_at(&[Seg::K("sli"), Seg::K("plugin")]),
            format!(
                "sli.plugin ({:?}) is not read: Sloth SLI plugins are Go code only Sloth runs; write the SLI as events (error_query, total_query) or raw (error_ratio_query)",
                plugin.id
            ),
        ));
        return None;
    }
    match (&sli.events, &sli.raw) {
        (Some(events), None) => {
            let query = template(&events.error_query)
                .map_err(|why| {
                    problems.push((path(&["events", "error_query"]), format!("error_query: {why}")))
                })
                .ok();
            let total = template(&events.total_query)
                .map_err(|why| {
                    problems.push((path(&["events", "total_query"]), format!("total_query: {why}")))
                })
                .ok();
            Some(Sli::Events(Events { counted: Counted::Bad, query: query?, total: total? }))
        }
        (None, Some(raw)) => {
            let text = raw.error_ratio_query.trim();
            if has_window(text) {
                Some(Sli::ErrorRatio(Query::Template(text.to_string())))
            } else {
                problems.push((
                    path(&["raw", "error_ratio_query"]),
                    format!("error_ratio_query: {}", no_window(text)),
                ));
                None
            }
        }
        _ => {
            problems.push((path(&[]), "sli needs exactly one of events, raw or plugin".to_string()));
            None
        }
    }
}

/// A Sloth query: it must hold `{{.window}}`. `sum(rate(SELECTOR[{{.window}}]))` is the counter `SELECTOR`
/// (the same PromQL for every window); anything else stays a template.
fn template(text: &str) -> Result<Query, String> {
    let t = text.trim();
    if !has_window(t) {
        return Err(no_window(t));
    }
    let compact = t.replace("{{ .window }}", "{{.window}}");
    if let Some(inner) = compact.strip_prefix("sum(rate(").and_then(|s| s.strip_suffix("[{{.window}}]))"))
        && is_selector(inner)
        && let Ok(Query::Counter(selector)) = rate_query(inner)
    {
        return Ok(Query::Counter(selector));
    }
    Ok(Query::Template(t.to_string()))
}

fn no_window(text: &str) -> String {
    format!(
        "{text:?} has no {{{{.window}}}}: Sloth queries put {{{{.window}}}} where the range goes, e.g. sum(rate(http_requests_total[{{{{.window}}}}]))"
    )
}

/// A plain series selector ([`super::promql::split_selector`]).
pub fn is_selector(text: &str) -> bool {
    super::promql::split_selector(text).is_some()
}

/// Label (and annotation) names at `path` of `node`.
fn check_labels(map: &BTreeMap<String, String>, node: &Node, path: &[Seg<'_>], problems: &mut Vec<Problem>) {
    for key in map.keys() {
        if let Err(why) = check_label_name(key) {
            let mut full = path.to_vec();
            full.push(Seg::K(key));
            problems.push((node.key_pos_at(&full), why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_told_from_expressions() {
        assert!(is_selector("http_requests_total"));
        assert!(is_selector(r#"http_requests_total{job="a",code=~"5..|}"}"#));
        assert!(!is_selector(r#"x{a="1"}[5m])) + sum(rate(y{b="2"}"#));
        assert!(!is_selector("rate(x)"));
        assert!(!is_selector(r#"x{a="1"} or y"#));
    }

    #[test]
    fn the_plain_rate_shape_is_a_counter() {
        assert_eq!(
            template(r#"sum(rate(http_requests_total{code=~"5.."}[{{ .window }}]))"#),
            Ok(Query::Counter(r#"http_requests_total{code=~"5.."}"#.into()))
        );
        assert!(matches!(
            template("sum(rate(x[{{.window}}])) - sum(rate(y[{{.window}}]))"),
            Ok(Query::Template(_))
        ));
        assert!(template("sum(rate(x[5m]))").unwrap_err().contains("has no {{.window}}"));
    }

    #[test]
    fn objectives_are_exact_fractions() {
        assert_eq!(objective(99.9), Ok(0.999));
        assert_eq!(objective(99.95), Ok(0.9995));
        assert_eq!(objective(99.0), Ok(0.99));
        assert!(objective(100.0).is_err() && objective(0.0).is_err());
    }
}
