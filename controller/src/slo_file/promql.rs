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

/// A plain series selector split into its metric name and its matchers (trimmed, in order, split at the commas
/// outside quoted strings): a metric name, optionally followed by one `{…}` whose braces are the only ones
/// outside quotes, and nothing after it. `None` for anything else (an expression, a range, two selectors).
pub fn split_selector(text: &str) -> Option<(&str, Vec<String>)> {
    let name_end = text.find('{').unwrap_or(text.len());
    let (name, rest) = text.split_at(name_end);
    if !is_metric_name(name) {
        return None;
    }
    if rest.is_empty() {
        return Some((name, Vec::new()));
    }
    let mut matchers = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in rest.char_indices().skip(1) {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                current.push(c);
            }
            None => match c {
                '"' | '\'' | '`' => {
                    quote = Some(c);
                    current.push(c);
                }
                ',' => matchers.push(std::mem::take(&mut current)),
                '}' if i + 1 == rest.len() => {
                    matchers.push(current);
                    let matchers =
                        matchers.into_iter().map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
                    return Some((name, matchers.collect()));
                }
                '{' | '}' | '[' | ']' | '(' | ')' => return None,
                _ => current.push(c),
            },
        }
    }
    None
}

/// Prometheus metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
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
    fn selectors_split_at_commas_outside_quotes() {
        assert_eq!(split_selector("http_requests_total"), Some(("http_requests_total", vec![])));
        assert_eq!(
            split_selector(r#"x{a="1,2", b!~"x\"y}", c=~'5..'}"#),
            Some(("x", vec![r#"a="1,2""#.to_string(), r#"b!~"x\"y}""#.to_string(), "c=~'5..'".to_string()]))
        );
        for not in
            [r#"x{a="1"}[5m])) + sum(rate(y{b="2"}"#, "rate(x)", r#"x{a="1"} or y"#, "x{", "{a=\"1\"}", ""]
        {
            assert_eq!(split_selector(not), None, "{not}");
        }
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
