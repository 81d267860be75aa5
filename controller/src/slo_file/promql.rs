//! The PromQL of an SLO: its error ratio over any window, its event rates, and its events over the period,
//! as self-contained expressions (no recording rule needs to exist), so rules, `chaos slo status`, budget
//! gates and burn-rate guardrails all ask Prometheus the same question.
//!
//! Numerators and denominators are summed separately before dividing (slo-math §4: never average ratios).
//! A latency SLI counts `bucket{le="threshold"}` as good and `_count` as all; the `le` matcher accepts both
//! spellings of a whole number (`1` and `1.0`, Prometheus 2 and 3: slo-math §6).

use std::time::Duration;

use super::model::{Counted, Events, LatencySli, Query, Sli};
use super::windows::prom_duration;

/// The placeholder a template query carries where the window goes (Sloth's spelling).
pub const WINDOW_PLACEHOLDER: &str = "{{.window}}";

/// The error ratio of `sli` over `window`: bad events / all events, between 0 and 1 (NaN without traffic).
pub fn error_ratio(sli: &Sli, window: Duration) -> String {
    match sli {
        Sli::Events(Events { counted: Counted::Bad, query, total }) => {
            format!("({}) / ({})", bad_rate(query, window), rate(total, window))
        }
        Sli::Events(Events { counted: Counted::Good, query, total }) => {
            let total = rate(total, window);
            format!("(({total}) - ({})) / ({total})", rate(query, window))
        }
        Sli::Latency(latency) => {
            let total = latency_total(latency, window);
            format!("(({total}) - ({})) / ({total})", latency_good(latency, window))
        }
        Sli::ErrorRatio(query) => rate(query, window),
    }
}

/// Bad events per second and all events per second over `window`, or `None` for an SLI that is only a
/// ratio (it has no counts).
pub fn event_rates(sli: &Sli, window: Duration) -> Option<(String, String)> {
    match sli {
        Sli::Events(Events { counted: Counted::Bad, query, total }) => {
            Some((rate(query, window), rate(total, window)))
        }
        Sli::Events(Events { counted: Counted::Good, query, total }) => {
            let total = rate(total, window);
            Some((format!("({total}) - ({})", rate(query, window)), total))
        }
        Sli::Latency(latency) => {
            let total = latency_total(latency, window);
            Some((format!("({total}) - ({})", latency_good(latency, window)), total))
        }
        Sli::ErrorRatio(_) => None,
    }
}

/// Bad events and all events over `window` (a rate over the window times its length in seconds, which is
/// what `increase` computes), or `None` for a ratio-only SLI.
pub fn event_counts(sli: &Sli, window: Duration) -> Option<(String, String)> {
    let seconds = window.as_secs_f64();
    event_rates(sli, window)
        .map(|(bad, total)| (format!("({bad}) * {seconds}"), format!("({total}) * {seconds}")))
}

/// The bad events' rate, zero when the counter has no series at all: a service that never failed has no
/// `code="5xx"` series, and its error ratio is 0, not "no data" (without traffic the ratio stays empty, since
/// the total is).
fn bad_rate(query: &Query, window: Duration) -> String {
    match query {
        Query::Counter(_) => format!("({}) or vector(0)", rate(query, window)),
        Query::Template(_) => rate(query, window),
    }
}

/// A query's rate over `window`.
pub fn rate(query: &Query, window: Duration) -> String {
    match query {
        Query::Counter(selector) => format!("sum(rate({}[{}]))", selector.trim(), prom_duration(window)),
        Query::Template(template) => fill_window(template, window),
    }
}

/// `template` with every `{{.window}}` (spaces inside the braces allowed) replaced by `window`.
pub fn fill_window(template: &str, window: Duration) -> String {
    let window = prom_duration(window);
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else { break };
        let inner = &rest[start + 2..start + len];
        out.push_str(&rest[..start]);
        if inner.trim() == ".window" {
            out.push_str(&window);
        } else {
            out.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Whether `template` has a `{{.window}}` placeholder.
pub fn has_window(template: &str) -> bool {
    fill_window(template, Duration::from_secs(1)) != template
}

/// Requests at or under the threshold per second.
fn latency_good(latency: &LatencySli, window: Duration) -> String {
    let le = le_matcher(latency.threshold);
    let matchers =
        if latency.matchers.trim().is_empty() { le } else { format!("{},{le}", latency.matchers.trim()) };
    format!("sum(rate({}_bucket{{{matchers}}}[{}]))", latency.histogram, prom_duration(window))
}

/// All requests per second.
fn latency_total(latency: &LatencySli, window: Duration) -> String {
    format!(
        "sum(rate({}_count{{{}}}[{}]))",
        latency.histogram,
        latency.matchers.trim(),
        prom_duration(window)
    )
}

/// The `le` matcher of a bucket bound: `le="0.25"`, or `le=~"1(\.0)?"` for a whole number, which Prometheus 2
/// exporters write either way and Prometheus 3 normalises to `1.0`.
pub fn le_matcher(threshold: f64) -> String {
    let text = le_text(threshold);
    if threshold.fract() == 0.0 { format!(r#"le=~"{text}(\\.0)?""#) } else { format!(r#"le="{text}""#) }
}

/// A bound as the shortest text that reads back as the same number (`0.25`, `1`).
pub fn le_text(threshold: f64) -> String {
    format!("{threshold}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(counted: Counted) -> Sli {
        Sli::Events(Events {
            counted,
            query: Query::Counter(r#"http_requests_total{code=~"5.."}"#.into()),
            total: Query::Counter("http_requests_total".into()),
        })
    }

    #[test]
    fn error_ratios_sum_before_dividing() {
        assert_eq!(
            error_ratio(&events(Counted::Bad), Duration::from_secs(300)),
            r#"((sum(rate(http_requests_total{code=~"5.."}[5m]))) or vector(0)) / (sum(rate(http_requests_total[5m])))"#
        );
        let good = error_ratio(&events(Counted::Good), Duration::from_secs(3600));
        assert!(good.starts_with("((sum(rate(http_requests_total[1h]))) - ("), "{good}");
    }

    #[test]
    fn latency_reads_the_threshold_bucket() {
        let sli = Sli::Latency(LatencySli {
            histogram: "http_request_duration_seconds".into(),
            matchers: r#"job="api""#.into(),
            threshold: 0.25,
            buckets: None,
        });
        let ratio = error_ratio(&sli, Duration::from_secs(300));
        assert!(
            ratio.contains(r#"http_request_duration_seconds_bucket{job="api",le="0.25"}[5m]"#),
            "{ratio}"
        );
        assert!(ratio.contains(r#"http_request_duration_seconds_count{job="api"}[5m]"#), "{ratio}");
        assert_eq!(le_matcher(1.0), r#"le=~"1(\\.0)?""#);
    }

    #[test]
    fn templates_get_the_window() {
        let t = "sum(rate(x[{{.window}}])) / sum(rate(y[{{ .window }}])) {{.other}}";
        assert_eq!(
            fill_window(t, Duration::from_secs(1800)),
            "sum(rate(x[30m])) / sum(rate(y[30m])) {{.other}}"
        );
        assert!(has_window(t) && !has_window("sum(rate(x[5m]))"));
    }
}
