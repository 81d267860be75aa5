//! The SLO as the rest of the program sees it, whatever file format it was written in: [`SloDef`] (service,
//! name, SLI, objective, period, labels, links, alerting), normalised from the native format
//! or an imported one. Rules, status, experiments and the controller's registry read only this.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One SLO, normalised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloDef {
    /// The service it belongs to: `[a-zA-Z0-9_.-]+`.
    pub service: String,
    /// Unique within the service: `[a-zA-Z0-9_.-]+`.
    pub name: String,
    pub description: Option<String>,
    pub sli: Sli,
    /// The fraction of good events to reach, in (0, 1), e.g. 0.999.
    pub objective: f64,
    /// The rolling period the objective and the error budget are over (30 days, 28, 7…).
    pub period: Duration,
    /// Extra labels put on every recording rule and alert generated for this SLO.
    pub labels: BTreeMap<String, String>,
    pub runbook_url: Option<String>,
    pub dashboard_url: Option<String>,
    pub alerting: Alerting,
    /// Where it was read from, for messages.
    pub origin: Origin,
}

impl SloDef {
    /// `service/name`, how experiments and the registry refer to it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.service, self.name)
    }

    /// The error budget `1 − objective` as a fraction of events, with the float noise of the subtraction
    /// removed (`1 − 0.999` is `0.0010000000000000009` in binary; reference/slo-math.md §7.4 "compute B in
    /// decimal").
    pub fn budget(&self) -> f64 {
        budget_of(self.objective)
    }
}

/// `1 − objective` rounded to 12 decimal places: objectives are written with at most a few decimals, so this
/// is the decimal value the author meant.
pub fn budget_of(objective: f64) -> f64 {
    ((1.0 - objective) * 1e12).round() / 1e12
}

/// Where an SLO was read from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
    pub format: Format,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// The file format an SLO came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `apiVersion: chaos/v1`, `kind: SLO`.
    #[default]
    Native,
    /// Sloth `version: prometheus/v1` (or its `sloth.slok.dev/v1` `PrometheusServiceLevel` resource).
    Sloth,
    /// OpenSLO `apiVersion: openslo/v1`, `kind: SLO`.
    OpenSlo,
}

/// What counts as a good or bad event, in PromQL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sli {
    /// Counters of bad (or good) events and of all events.
    Events(Events),
    /// The fraction of requests at or under a latency threshold, from a Prometheus histogram.
    Latency(LatencySli),
    /// A query that is already the error ratio over a window (Sloth's `raw.error_ratio_query`). It has no
    /// event counts, so budget figures in events are not available for it.
    ErrorRatio(Query),
}

/// Bad or good events, and all events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Events {
    pub counted: Counted,
    /// The events counted, as a rate over a window.
    pub query: Query,
    /// All events, as a rate over a window.
    pub total: Query,
}

/// Which events [`Events::query`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Counted {
    Bad,
    Good,
}

/// A PromQL query for a per-second rate over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// A counter selector (`http_requests_total{code=~"5.."}`), summed as `sum(rate(SELECTOR[WINDOW]))`.
    Counter(String),
    /// A whole expression with `{{.window}}` where the window goes (Sloth's form), e.g.
    /// `sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))`.
    Template(String),
}

/// "Requests at or under `threshold`" from a histogram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySli {
    /// The histogram's name without the `_bucket`/`_count` suffix, e.g. `http_request_duration_seconds`.
    pub histogram: String,
    /// Label matchers without braces, e.g. `job="checkout",route!="/health"`; empty for none.
    pub matchers: String,
    /// In seconds; must be one of the histogram's bucket bounds.
    pub threshold: f64,
    /// The histogram's bucket bounds (seconds) when the file declares them, so the threshold is checked
    /// without asking Prometheus.
    pub buckets: Option<Vec<f64>>,
}

/// How the SLO pages and files tickets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alerting {
    pub page: AlertSpec,
    pub ticket: AlertSpec,
    /// Multi-window multi-burn-rate conditions; an alert of a severity fires when any of its rows holds.
    pub windows: Vec<BurnWindow>,
}

/// One alert (the page or the ticket) of an SLO.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertSpec {
    /// False: no alert of this severity is generated.
    pub enabled: bool,
    /// The alert's name (`alertname`).
    pub name: String,
    /// Extra labels on the alert (besides `severity`, `slo`, `service` and the SLO's labels).
    pub labels: BTreeMap<String, String>,
    /// Extra annotations (besides the generated `summary`, `description`, `runbook_url`).
    pub annotations: BTreeMap<String, String>,
}

/// Page (someone is woken) or ticket (someone looks during working hours).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One multi-window burn-rate condition: the error ratio over both `long` and `short` is above
/// `burn_rate × budget`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BurnWindow {
    pub severity: Severity,
    pub long: Duration,
    pub short: Duration,
    /// The burn-rate threshold: how many times faster than "exactly the budget over the period".
    pub burn_rate: f64,
    /// The fraction of the period's budget spent by the time the alert fires at that rate
    /// (`burn_rate × long / period`).
    pub budget_spent: f64,
    /// How long the condition must hold before the alert fires (`for:`); none by default, the short window
    /// already filters blips.
    pub for_duration: Option<Duration>,
}
