//! Live counters of one proxy, updated on the data path with relaxed atomics, read by the JSON stats endpoint
//! and rendered as Prometheus text by [`render_prometheus`].
//!
//! Toxiproxy adds byte counts only when a link finishes; here every read and write counts at once, so a
//! scrape during a long transfer sees it. Metric names and labels of Toxiproxy are kept where they exist
//! (`toxiproxy_proxy_received_bytes_total`, `toxiproxy_proxy_sent_bytes_total`); the rest are `chaos_proxy_*`.
//! `http` proxies add per-request families (`chaos_proxy_http_*`, `chaos_proxy_grpc_*`; see `http::signals`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

use crate::http::signals::{self, HttpSnapshot, HttpStats};
use crate::model::Protocol;
use crate::toxics::Direction;

/// Upper bounds (seconds) of the upstream connect-time histogram.
const CONNECT_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

#[derive(Default)]
struct DirectionCounters {
    /// Bytes read from this direction's source.
    received: AtomicU64,
    /// Bytes written to this direction's destination.
    sent: AtomicU64,
}

/// Counters of one proxy. Survive disable/enable and toxic changes; reset only when the proxy is replaced.
#[derive(Default)]
pub struct ProxyStats {
    connections_open: AtomicI64,
    connections_total: AtomicU64,
    upstream_connect_failures: AtomicU64,
    directions: [DirectionCounters; 2],
    /// Upstream connect time histogram: per-bucket counts (not cumulative), then +Inf.
    connect_buckets: [AtomicU64; CONNECT_BUCKETS.len() + 1],
    connect_sum_nanos: AtomicU64,
    /// How many links each toxic was applied to (its toxicity roll came up), by direction and name.
    activations: Mutex<BTreeMap<(Direction, String), u64>>,
    /// Per-request signals; only `http` proxies count any.
    pub(crate) http: HttpStats,
}

impl ProxyStats {
    pub(crate) fn received(&self, d: Direction, n: usize) {
        self.directions[d.index()].received.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn sent(&self, d: Direction, n: usize) {
        self.directions[d.index()].sent.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn connection_opened(&self, connect_time: Duration) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
        let secs = connect_time.as_secs_f64();
        let bucket = CONNECT_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(CONNECT_BUCKETS.len());
        self.connect_buckets[bucket].fetch_add(1, Relaxed);
        self.connect_sum_nanos.fetch_add(u64::try_from(connect_time.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// A client connection of an `http` proxy: open and total count it; it has no upstream dial of its own.
    pub(crate) fn client_connected(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    pub(crate) fn upstream_failed(&self) {
        self.upstream_connect_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn toxic_activated(&self, d: Direction, name: &str) {
        if let Ok(mut map) = self.activations.lock() {
            *map.entry((d, name.to_string())).or_default() += 1;
        }
    }

    /// A point-in-time copy for the JSON stats endpoint, with the `http` object for an `http` proxy.
    pub(crate) fn snapshot_for(&self, protocol: Protocol) -> StatsSnapshot {
        let mut snapshot = self.snapshot();
        if protocol == Protocol::Http {
            snapshot.http = Some(self.http.snapshot());
        }
        snapshot
    }

    /// A point-in-time copy for the JSON stats endpoint.
    pub fn snapshot(&self) -> StatsSnapshot {
        let dir = |d: Direction| DirectionSnapshot {
            received_bytes: self.directions[d.index()].received.load(Relaxed),
            sent_bytes: self.directions[d.index()].sent.load(Relaxed),
        };
        let activations = self
            .activations
            .lock()
            .map(|m| {
                m.iter()
                    .map(|((d, name), n)| ToxicActivations {
                        name: name.clone(),
                        stream: d.as_str(),
                        links: *n,
                    })
                    .collect()
            })
            .unwrap_or_default();
        StatsSnapshot {
            connections_open: self.connections_open.load(Relaxed).max(0) as u64,
            connections_total: self.connections_total.load(Relaxed),
            upstream_connect_failures: self.upstream_connect_failures.load(Relaxed),
            upstream: dir(Direction::Upstream),
            downstream: dir(Direction::Downstream),
            toxic_activations: activations,
            http: None,
        }
    }
}

/// The JSON body of `GET /proxies/{name}/stats`.
#[derive(Debug, Serialize)]
pub struct StatsSnapshot {
    pub connections_open: u64,
    pub connections_total: u64,
    pub upstream_connect_failures: u64,
    /// Client → server bytes.
    pub upstream: DirectionSnapshot,
    /// Server → client bytes.
    pub downstream: DirectionSnapshot,
    pub toxic_activations: Vec<ToxicActivations>,
    /// Per-request golden signals; present for `http` proxies only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSnapshot>,
}

#[derive(Debug, Serialize)]
pub struct DirectionSnapshot {
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ToxicActivations {
    pub name: String,
    pub stream: &'static str,
    /// Links (connection × direction) the toxic was applied to.
    pub links: u64,
}

/// What [`render_prometheus`] needs to know of one proxy.
pub(crate) struct MetricsSource<'a> {
    pub name: &'a str,
    pub listen: &'a str,
    pub upstream: &'a str,
    pub enabled: bool,
    pub stats: &'a ProxyStats,
    /// Whether the proxy is an `http` one, whose request families are rendered.
    pub http: bool,
}

/// Prometheus text exposition format 0.0.4 for all proxies.
pub(crate) fn render_prometheus(proxies: &[MetricsSource<'_>]) -> String {
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(&mut out, "toxiproxy_proxy_received_bytes_total", "counter", "Bytes read from a link's source.");
    for p in proxies {
        for d in Direction::ALL {
            let v = p.stats.directions[d.index()].received.load(Relaxed);
            let _ = writeln!(out, "toxiproxy_proxy_received_bytes_total{} {v}", link_labels(p, d));
        }
    }
    family(&mut out, "toxiproxy_proxy_sent_bytes_total", "counter", "Bytes written to a link's destination.");
    for p in proxies {
        for d in Direction::ALL {
            let v = p.stats.directions[d.index()].sent.load(Relaxed);
            let _ = writeln!(out, "toxiproxy_proxy_sent_bytes_total{} {v}", link_labels(p, d));
        }
    }
    type Getter = fn(&ProxyStats) -> i64;
    let simple: [(&str, &str, &str, Getter); 4] = [
        ("chaos_proxy_enabled", "gauge", "1 when the proxy is listening.", |_| 0),
        ("chaos_proxy_connections_open", "gauge", "Client connections open now.", |s| {
            s.connections_open.load(Relaxed).max(0)
        }),
        (
            "chaos_proxy_connections_total",
            "counter",
            "Client connections accepted and connected upstream.",
            |s| s.connections_total.load(Relaxed) as i64,
        ),
        ("chaos_proxy_upstream_connect_failures_total", "counter", "Upstream dials that failed.", |s| {
            s.upstream_connect_failures.load(Relaxed) as i64
        }),
    ];
    for (name, kind, help, get) in simple {
        family(&mut out, name, kind, help);
        for p in proxies {
            let v = if name == "chaos_proxy_enabled" { i64::from(p.enabled) } else { get(p.stats) };
            let _ = writeln!(out, "{name}{{proxy=\"{}\"}} {v}", escape(p.name));
        }
    }
    family(&mut out, "chaos_proxy_toxic_activations_total", "counter", "Links a toxic was applied to.");
    for p in proxies {
        if let Ok(map) = p.stats.activations.lock() {
            for ((d, toxic), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "chaos_proxy_toxic_activations_total{{proxy=\"{}\",stream=\"{d}\",toxic=\"{}\"}} {n}",
                    escape(p.name),
                    escape(toxic)
                );
            }
        }
    }
    let name = "chaos_proxy_upstream_connect_seconds";
    family(&mut out, name, "histogram", "Time to connect to the upstream for each client connection.");
    for p in proxies {
        let proxy = escape(p.name);
        let mut cumulative = 0u64;
        for (i, bound) in CONNECT_BUCKETS.iter().enumerate() {
            cumulative += p.stats.connect_buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{proxy=\"{proxy}\",le=\"{bound}\"}} {cumulative}");
        }
        cumulative += p.stats.connect_buckets[CONNECT_BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{proxy=\"{proxy}\",le=\"+Inf\"}} {cumulative}");
        let sum = p.stats.connect_sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{proxy=\"{proxy}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{proxy=\"{proxy}\"}} {cumulative}");
    }
    // The request families appear only once some proxy is an `http` one, so a server of TCP proxies renders
    // exactly what it did before HTTP mode existed.
    let http: Vec<(&str, &HttpStats)> =
        proxies.iter().filter(|p| p.http).map(|p| (p.name, &p.stats.http)).collect();
    if !http.is_empty() {
        signals::render(&mut out, &http, escape);
    }
    out
}

fn link_labels(p: &MetricsSource<'_>, d: Direction) -> String {
    format!(
        "{{direction=\"{d}\",listener=\"{}\",proxy=\"{}\",upstream=\"{}\"}}",
        escape(p.listen),
        escape(p.name),
        escape(p.upstream)
    )
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_toxiproxy_names_and_labels_live() {
        let stats = ProxyStats::default();
        stats.received(Direction::Upstream, 10);
        stats.sent(Direction::Downstream, 7);
        stats.connection_opened(Duration::from_micros(300));
        stats.toxic_activated(Direction::Downstream, "lat\"ency");
        let text = render_prometheus(&[MetricsSource {
            name: "redis",
            listen: "127.0.0.1:26379",
            upstream: "localhost:6379",
            enabled: true,
            stats: &stats,
            http: false,
        }]);
        assert!(text.contains(
            "toxiproxy_proxy_received_bytes_total{direction=\"upstream\",listener=\"127.0.0.1:26379\",proxy=\"redis\",upstream=\"localhost:6379\"} 10"
        ), "{text}");
        assert!(text.contains("toxiproxy_proxy_sent_bytes_total{direction=\"downstream\",listener=\"127.0.0.1:26379\",proxy=\"redis\",upstream=\"localhost:6379\"} 7"));
        assert!(text.contains("chaos_proxy_connections_open{proxy=\"redis\"} 1"));
        assert!(
            text.contains("chaos_proxy_upstream_connect_seconds_bucket{proxy=\"redis\",le=\"0.0005\"} 1")
        );
        assert!(text.contains("toxic=\"lat\\\"ency\"} 1"));
    }
}
