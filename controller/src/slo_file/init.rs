//! The starter SLO file `chaos slo init --service NAME` writes: a native file with an availability SLO
//! (`http_requests_total`, 5xx as bad events) and a latency SLO (`http_request_duration_seconds`, 250 ms on a
//! default Prometheus bucket bound) for the service, every key explained in a comment.

use super::native::check_name;

/// The default bucket bounds of the Prometheus client libraries (`DefBuckets`), in seconds.
pub const DEFAULT_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The starter file for `service`, or why the name cannot be a service name.
pub fn render(service: &str) -> Result<String, String> {
    check_name(service).map_err(|why| format!("--service: {why}"))?;
    let buckets = DEFAULT_BUCKETS.iter().map(|b| format!("{b}")).collect::<Vec<_>>().join(", ");
    Ok(TEMPLATE.replace("{service}", service).replace("{buckets}", &buckets))
}

const TEMPLATE: &str = r#"# SLOs of the "{service}" service, written by `chaos slo init`. Edit, then:
#   chaos slo check FILE                      what is wrong, at file:line:column
#   chaos slo rules FILE -o rules.yml         Prometheus recording rules and burn-rate alerts
#   chaos slo status FILE --prometheus URL    the error budget left
# Experiments reference these SLOs by file and name (`slos:` in an experiment). The JSON Schema of this
# format: chaos slo schema. Each document (between `---`) is one SLO.
apiVersion: chaos/v1
kind: SLO
# The service and the SLO's name (letters, digits, _ . -); service/name identifies the SLO everywhere.
service: "{service}"
name: availability
description: Requests to {service} that do not fail with a 5xx.
# The share of good events to reach over the period: 99.9% leaves an error budget of 0.1% of requests
# (43 minutes of full outage in 30 days).
objective: 99.9%
# The rolling period the objective is measured over: days (30d, 28d), weeks (4w) or hours. The default
# alert windows (page: 2% of the budget in 1h, 5% in 6h; ticket: 10% in 3d) are scaled to it.
period: 30d
sli:
  # Events: counters of bad (or good) events and of all events. Each is a counter selector, summed as
  # sum(rate(SELECTOR[window])), or a PromQL expression with {{.window}} where the range goes. The `job`
  # matcher must name the scrape job of the service.
  events:
    bad: http_requests_total{job="{service}",code=~"5.."}
    total: http_requests_total{job="{service}"}
# Labels put on every generated recording rule and alert (route alerts with them).
labels:
  team: "{service}-owners"
# Where the person paged goes first; put on every alert as the runbook_url annotation. Set it:
# runbook_url: https://runbooks.example.com/{service}/availability
# dashboard_url: https://grafana.example.com/d/{service}
# Alerting is optional: by default a page and a ticket alert named <Service><Name>BudgetBurn, told apart
# by their severity label. To rename or silence one, or to replace the window table:
# alerting:
#   page: {name: MyServiceErrorBudgetBurn, labels: {team: payments}}
#   ticket: {disabled: true}
#   windows:
#     - {severity: page, long: 1h, short: 5m, budget: 2%}
#     - {severity: ticket, long: 3d, short: 6h, burn_rate: 1}
---
apiVersion: chaos/v1
kind: SLO
service: "{service}"
name: latency
description: Requests to {service} answered within 250 ms.
# 99% of requests at or under the threshold.
objective: 99%
period: 30d
sli:
  # Latency: the share of requests at or under `threshold`, counted from a Prometheus histogram as
  # bucket{le="0.25"} / count, so it adds up across instances and windows like the events above.
  latency:
    # The histogram's name without _bucket/_count.
    histogram: http_request_duration_seconds
    # Label matchers selecting the service's series.
    matchers: '{job="{service}"}'
    # Must be one of the histogram's bucket bounds, or the share under it would be guessed, not counted.
    threshold: 250ms
    # The histogram's bucket bounds in seconds (here the client libraries' defaults), so the threshold is
    # checked now; without them `chaos slo status` checks it against Prometheus.
    buckets: [{buckets}]
labels:
  team: "{service}-owners"
# runbook_url: https://runbooks.example.com/{service}/latency
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_service_names_are_refused() {
        assert!(render("check out").unwrap_err().starts_with("--service: "));
        assert!(render("checkout").unwrap().contains("service: \"checkout\""));
    }
}
