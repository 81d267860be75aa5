//! Per-request golden signals of an `http` proxy: completed requests by method class and status class (gRPC
//! requests by `grpc-status` instead), a latency histogram, requests in flight, upstream failures, abandoned
//! requests and injected faults by toxic. Counters are relaxed atomics bumped on the data path and read by the
//! stats endpoint and `/metrics`.
//!
//! The latency histogram has fixed bounds ([`DEFAULT_BOUNDS_MS`]) plus any the proxy registered
//! (`latency_buckets_ms`, e.g. an SLO's threshold), so "the share of requests at or under T" is exact for every
//! registered T. A changed set of bounds starts a new histogram from zero: its old counts cannot be split along
//! new bounds, and a counter reset is what Prometheus' `rate()` already understands.
//!
//! Besides the counters, the last [`MAX_RECORDS`] completed requests are kept one by one ([`RequestRecord`]:
//! when each started, how long it took, whether it failed), numbered in order of completion, so a reader that
//! remembers its cursor (`GET /proxies/{name}/requests?since=N`) places every request at its own time rather
//! than at the time it polled.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde::Serialize;

use crate::model::WholeFloat;
use crate::toxics::GrpcCode;

/// Bucket bounds every histogram has, in milliseconds.
pub(crate) const DEFAULT_BOUNDS_MS: [f64; 13] =
    [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];
/// How many extra bounds a proxy may register.
pub(crate) const MAX_EXTRA_BOUNDS: usize = 64;
/// The largest bound a proxy may register: one hour, in milliseconds.
const MAX_BOUND_MS: f64 = 3_600_000.0;

/// How many completed requests are kept one by one (about 40 bytes each): at 200 polls a minute, a reader
/// loses none below 300,000 requests per second.
pub(crate) const MAX_RECORDS: usize = 65_536;
/// The most records one read returns; the reader asks again from the cursor it got.
pub(crate) const MAX_RECORDS_PER_READ: usize = 16_384;

/// Methods counted apart; every other method counts as `OTHER`.
const METHOD_CLASSES: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER"];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`METHOD_CLASSES`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MethodClass(usize);

impl MethodClass {
    pub fn of(method: &Method) -> MethodClass {
        let name = method.as_str();
        MethodClass(METHOD_CLASSES.iter().position(|m| *m == name).unwrap_or(METHOD_CLASSES.len() - 1))
    }
}

/// How a request ended, as the signals count it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// A plain HTTP request whose response was sent whole (or broken off by the upstream).
    Http(MethodClass, StatusCode),
    /// A gRPC request whose response was sent whole, or whose upstream broke mid-response, with the code the
    /// client saw (or will see).
    Grpc(GrpcCode),
    /// The client went away before its response was complete; counted apart, not in any class.
    Abandoned,
}

/// Checks and normalises registered bounds: finite, positive, at most an hour, at most [`MAX_EXTRA_BOUNDS`];
/// returns them sorted without duplicates.
pub(crate) fn checked_bounds(bounds: &[f64]) -> Result<Vec<f64>, String> {
    if bounds.len() > MAX_EXTRA_BOUNDS {
        return Err(format!(
            "latency_buckets_ms: expected at most {MAX_EXTRA_BOUNDS} bounds, found {}",
            bounds.len()
        ));
    }
    if let Some(bad) = bounds.iter().find(|b| !(b.is_finite() && **b > 0.0 && **b <= MAX_BOUND_MS)) {
        return Err(format!(
            "latency_buckets_ms: expected milliseconds above 0 and at most {MAX_BOUND_MS}, found {bad}"
        ));
    }
    let mut sorted = bounds.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    Ok(sorted)
}

// === impl LatencyHistogram ===

/// Request latency with fixed bounds: per-bucket counts (not cumulative), the last one for +Inf.
pub(crate) struct LatencyHistogram {
    /// Upper bounds in nanoseconds, ascending, so an observation compares exactly (no float rounding).
    bounds_ns: Vec<u64>,
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    fn new(extra_ms: &[f64]) -> LatencyHistogram {
        let mut bounds_ns: Vec<u64> =
            DEFAULT_BOUNDS_MS.iter().chain(extra_ms).map(|ms| to_nanos(*ms)).collect();
        bounds_ns.sort_unstable();
        bounds_ns.dedup();
        let counts = (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect();
        LatencyHistogram { bounds_ns, counts, sum_ns: AtomicU64::new(0) }
    }

    fn observe(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_ns.partition_point(|b| *b < ns);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// `(bound in ms, cumulative count)` per bound, then the total count and the sum in nanoseconds.
    fn cumulative(&self) -> (Vec<(f64, u64)>, u64, u64) {
        let mut total = 0;
        let buckets = self
            .bounds_ns
            .iter()
            .zip(&self.counts)
            .map(|(bound, count)| {
                total += count.load(Relaxed);
                (*bound as f64 / 1e6, total)
            })
            .collect();
        total += self.counts[self.bounds_ns.len()].load(Relaxed);
        (buckets, total, self.sum_ns.load(Relaxed))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn to_nanos(ms: f64) -> u64 {
    // Bounds are checked to be at most an hour, far inside u64 nanoseconds.
    (ms * 1e6).round() as u64
}

// === impl HttpStats ===

/// The golden signals of one `http` proxy; lives in its `ProxyStats` and survives restarts like the rest.
pub(crate) struct HttpStats {
    /// Completed plain HTTP requests by method class × status class.
    by_class: [[AtomicU64; STATUS_CLASSES.len()]; METHOD_CLASSES.len()],
    /// Completed gRPC requests by `grpc-status`.
    grpc: [AtomicU64; GrpcCode::NAMES.len()],
    in_flight: AtomicI64,
    upstream_failures: AtomicU64,
    abandoned: AtomicU64,
    /// Swapped whole when the registered bounds change; requests in flight finish in the one they started in.
    latency: RwLock<Arc<LatencyHistogram>>,
    /// The registered extra bounds (ms) the current histogram was built with.
    extra_ms: Mutex<Vec<f64>>,
    /// Faults injected, by toxic name: the toxic's type and the number of requests.
    faults: Mutex<BTreeMap<String, (&'static str, u64)>>,
    /// The last [`MAX_RECORDS`] completed requests.
    records: Mutex<Records>,
}

/// Completed requests one by one, oldest first; `next` numbers the next one.
#[derive(Default)]
struct Records {
    kept: VecDeque<(u64, Instant, Duration, bool)>,
    next: u64,
}

impl Default for HttpStats {
    fn default() -> Self {
        HttpStats {
            by_class: Default::default(),
            grpc: Default::default(),
            in_flight: AtomicI64::new(0),
            upstream_failures: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            latency: RwLock::new(Arc::new(LatencyHistogram::new(&[]))),
            extra_ms: Mutex::new(Vec::new()),
            faults: Mutex::new(BTreeMap::new()),
            records: Mutex::new(Records::default()),
        }
    }
}

impl HttpStats {
    /// Uses `extra_ms` (checked by [`checked_bounds`]) as the extra bounds; a different set than the current one
    /// starts a new, empty histogram.
    pub(crate) fn set_extra_bounds(&self, extra_ms: &[f64]) {
        let Ok(mut current) = self.extra_ms.lock() else { return };
        if current.as_slice() == extra_ms {
            return;
        }
        *current = extra_ms.to_vec();
        if let Ok(mut latency) = self.latency.write() {
            *latency = Arc::new(LatencyHistogram::new(extra_ms));
        }
    }

    /// A request arrived: counts it in flight and returns the histogram its latency goes to.
    pub(crate) fn started(&self) -> Arc<LatencyHistogram> {
        self.in_flight.fetch_add(1, Relaxed);
        self.current()
    }

    /// A request ended (see [`Outcome`]).
    pub(crate) fn finished(&self, histogram: &LatencyHistogram, outcome: Outcome, latency: Duration) {
        self.in_flight.fetch_sub(1, Relaxed);
        let failed = match outcome {
            Outcome::Http(method, status) => {
                // Statuses above 599 (the http crate allows up to 999) count as server errors.
                let class = usize::from(status.as_u16() / 100).clamp(1, STATUS_CLASSES.len()) - 1;
                self.by_class[method.0][class].fetch_add(1, Relaxed);
                class == STATUS_CLASSES.len() - 1
            }
            Outcome::Grpc(code) => {
                self.grpc[usize::from(code.0).min(GrpcCode::NAMES.len() - 1)].fetch_add(1, Relaxed);
                code.0 != 0
            }
            Outcome::Abandoned => {
                self.abandoned.fetch_add(1, Relaxed);
                return;
            }
        };
        histogram.observe(latency);
        let now = Instant::now();
        if let Ok(mut records) = self.records.lock() {
            let seq = records.next;
            records.next += 1;
            if records.kept.len() == MAX_RECORDS {
                records.kept.pop_front();
            }
            records.kept.push_back((seq, now.checked_sub(latency).unwrap_or(now), latency, failed));
        }
    }

    /// The completed requests numbered `since` and later (at most [`MAX_RECORDS_PER_READ`]), each with how long
    /// ago it started, measured now.
    pub(crate) fn records_since(&self, since: u64) -> RecordsSnapshot {
        let now = Instant::now();
        let Ok(records) = self.records.lock() else { return RecordsSnapshot::default() };
        let oldest = records.kept.front().map_or(records.next, |r| r.0);
        let skip = usize::try_from(since.saturating_sub(oldest)).unwrap_or(usize::MAX);
        let requests: Vec<RequestRecord> = records
            .kept
            .iter()
            .skip(skip)
            .take(MAX_RECORDS_PER_READ)
            .map(|&(seq, started, latency, failed)| RequestRecord {
                seq,
                started_us_ago: micros(now.saturating_duration_since(started)),
                latency_us: micros(latency),
                failed,
            })
            .collect();
        let next = requests.last().map_or(records.next, |r| r.seq + 1);
        RecordsSnapshot {
            next,
            // Asked for records no longer kept: how many the reader lost.
            lost: oldest.saturating_sub(since),
            more: next < records.next,
            requests,
        }
    }

    pub(crate) fn upstream_failed(&self) {
        self.upstream_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn fault_injected(&self, toxic: &str, kind: &'static str) {
        if let Ok(mut faults) = self.faults.lock() {
            let entry = faults.entry(toxic.to_string()).or_insert((kind, 0));
            entry.0 = kind;
            entry.1 += 1;
        }
    }

    pub(crate) fn snapshot(&self) -> HttpSnapshot {
        let mut requests: BTreeMap<&'static str, BTreeMap<&'static str, u64>> = BTreeMap::new();
        let mut total = 0;
        for (m, row) in self.by_class.iter().enumerate() {
            for (c, count) in row.iter().enumerate() {
                let n = count.load(Relaxed);
                if n > 0 {
                    requests.entry(METHOD_CLASSES[m]).or_default().insert(STATUS_CLASSES[c], n);
                    total += n;
                }
            }
        }
        let mut grpc = BTreeMap::new();
        for (code, count) in self.grpc.iter().enumerate() {
            let n = count.load(Relaxed);
            if n > 0 {
                grpc.insert(GrpcCode::NAMES[code], n);
                total += n;
            }
        }
        let histogram = self.current();
        let (buckets, count, sum_ns) = histogram.cumulative();
        let faults = self
            .faults
            .lock()
            .map(|f| {
                f.iter()
                    .map(|(name, (kind, n))| FaultCount { name: name.clone(), kind, requests: *n })
                    .collect()
            })
            .unwrap_or_default();
        HttpSnapshot {
            requests_total: total,
            requests,
            grpc,
            in_flight: self.in_flight.load(Relaxed).max(0) as u64,
            upstream_failures: self.upstream_failures.load(Relaxed),
            abandoned: self.abandoned.load(Relaxed),
            latency: LatencySnapshot {
                buckets: buckets
                    .into_iter()
                    .map(|(le, count)| Bucket { le_ms: WholeFloat(le), count })
                    .collect(),
                count,
                sum_ms: WholeFloat(sum_ns as f64 / 1e6),
            },
            faults_injected: faults,
        }
    }

    /// The current histogram, without counting a request.
    fn current(&self) -> Arc<LatencyHistogram> {
        match self.latency.read() {
            Ok(latency) => latency.clone(),
            // A poisoned lock means a panic elsewhere; keep counting into a fresh histogram.
            Err(_) => Arc::new(LatencyHistogram::new(&[])),
        }
    }
}

// === snapshots ===

/// The `http` object of an `http` proxy's stats.
#[derive(Debug, Serialize)]
pub struct HttpSnapshot {
    /// Completed requests, plain HTTP and gRPC.
    pub requests_total: u64,
    /// Completed plain HTTP requests: method class → status class → count; only non-zero entries.
    pub requests: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// Completed gRPC requests (`content-type: application/grpc…`) by status name; only non-zero entries.
    pub grpc: BTreeMap<&'static str, u64>,
    pub in_flight: u64,
    /// Requests the upstream failed: no connection, no valid response, or a response broken off.
    pub upstream_failures: u64,
    /// Requests whose client went away before the response was complete.
    pub abandoned: u64,
    pub latency: LatencySnapshot,
    pub faults_injected: Vec<FaultCount>,
}

/// Latency of completed requests, from the request's head to the end of its response.
#[derive(Debug, Serialize)]
pub struct LatencySnapshot {
    /// Cumulative: requests that took at most `le_ms`; the +Inf bucket is `count`.
    pub buckets: Vec<Bucket>,
    pub count: u64,
    pub sum_ms: WholeFloat,
}

#[derive(Debug, Serialize)]
pub struct Bucket {
    pub le_ms: WholeFloat,
    pub count: u64,
}

/// The body of `GET /proxies/{name}/requests?since=N`: completed requests one by one, from number `N`.
#[derive(Debug, Default, Serialize)]
pub struct RecordsSnapshot {
    /// The cursor to ask from next time.
    pub next: u64,
    /// Requests from `N` on that are no longer kept (the reader came too late for them).
    pub lost: u64,
    /// Whether more records are waiting beyond this read's limit.
    pub more: bool,
    pub requests: Vec<RequestRecord>,
}

/// One completed request (abandoned ones are not recorded).
#[derive(Debug, Serialize)]
pub struct RequestRecord {
    /// Its number, in order of completion.
    pub seq: u64,
    /// How long before the response was built its head arrived: a reader subtracts it from the moment it got
    /// the response to place the request on its own clock, whatever the proxy's clock says.
    pub started_us_ago: u64,
    /// From the request's head to the end of its response.
    pub latency_us: u64,
    /// It answered 5xx, or a gRPC status other than OK.
    pub failed: bool,
}

#[derive(Debug, Serialize)]
pub struct FaultCount {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub requests: u64,
}

// === Prometheus ===

/// Appends the HTTP families for `proxies` (name, stats), in Prometheus text format.
pub(crate) fn render(out: &mut String, proxies: &[(&str, &HttpStats)], escape: fn(&str) -> String) {
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let name = "chaos_proxy_http_requests_total";
    family(out, name, "counter", "Completed HTTP requests (gRPC apart) by method and status class.");
    for (proxy, stats) in proxies {
        for (m, row) in stats.by_class.iter().enumerate() {
            for (c, count) in row.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}{{proxy=\"{}\",method=\"{}\",status_class=\"{}\"}} {}",
                    escape(proxy),
                    METHOD_CLASSES[m],
                    STATUS_CLASSES[c],
                    count.load(Relaxed)
                );
            }
        }
    }
    let name = "chaos_proxy_grpc_requests_total";
    family(out, name, "counter", "Completed gRPC requests by grpc-status.");
    for (proxy, stats) in proxies {
        for (code, count) in stats.grpc.iter().enumerate() {
            let (proxy, code) = (escape(proxy), GrpcCode::NAMES[code]);
            let _ = writeln!(out, "{name}{{proxy=\"{proxy}\",code=\"{code}\"}} {}", count.load(Relaxed));
        }
    }
    type Getter = fn(&HttpStats) -> i64;
    let simple: [(&str, &str, &str, Getter); 3] = [
        ("chaos_proxy_http_requests_in_flight", "gauge", "HTTP requests in progress.", |s| {
            s.in_flight.load(Relaxed).max(0)
        }),
        (
            "chaos_proxy_http_upstream_failures_total",
            "counter",
            "HTTP requests the upstream failed (no connection, no valid response, broken response).",
            |s| s.upstream_failures.load(Relaxed) as i64,
        ),
        (
            "chaos_proxy_http_requests_abandoned_total",
            "counter",
            "HTTP requests whose client left before the response was complete.",
            |s| s.abandoned.load(Relaxed) as i64,
        ),
    ];
    for (name, kind, help, get) in simple {
        family(out, name, kind, help);
        for (proxy, stats) in proxies {
            let _ = writeln!(out, "{name}{{proxy=\"{}\"}} {}", escape(proxy), get(stats));
        }
    }
    let name = "chaos_proxy_http_faults_injected_total";
    family(out, name, "counter", "Requests an L7 toxic faulted.");
    for (proxy, stats) in proxies {
        if let Ok(faults) = stats.faults.lock() {
            for (toxic, (kind, n)) in faults.iter() {
                let (proxy, toxic) = (escape(proxy), escape(toxic));
                let _ = writeln!(out, "{name}{{proxy=\"{proxy}\",toxic=\"{toxic}\",type=\"{kind}\"}} {n}");
            }
        }
    }
    let name = "chaos_proxy_http_request_duration_seconds";
    family(out, name, "histogram", "Time from a request's head to the end of its response.");
    for (proxy, stats) in proxies {
        let proxy = escape(proxy);
        let (buckets, count, sum_ns) = stats.current().cumulative();
        for (le_ms, cumulative) in buckets {
            let le = le_ms / 1000.0;
            let _ = writeln!(out, "{name}_bucket{{proxy=\"{proxy}\",le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{proxy=\"{proxy}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{proxy=\"{proxy}\"}} {}", sum_ns as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{proxy=\"{proxy}\"}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_bounds_are_exact_bucket_edges() {
        let stats = HttpStats::default();
        stats.set_extra_bounds(&checked_bounds(&[800.0, 0.5]).unwrap());
        let histogram = stats.started();
        let get = MethodClass::of(&Method::GET);
        stats.finished(&histogram, Outcome::Http(get, StatusCode::OK), Duration::from_millis(800));
        let histogram = stats.started();
        stats.finished(&histogram, Outcome::Grpc(GrpcCode(14)), Duration::from_nanos(800_000_001));
        let snapshot = stats.snapshot();
        let at = |ms: f64| snapshot.latency.buckets.iter().find(|b| b.le_ms.0 == ms).map(|b| b.count);
        assert_eq!((at(0.5), at(500.0), at(800.0), at(1000.0)), (Some(0), Some(0), Some(1), Some(2)));
        assert_eq!(snapshot.latency.count, 2);
        assert_eq!(snapshot.requests_total, 2);
        assert_eq!(snapshot.requests["GET"]["2xx"], 1);
        assert_eq!(snapshot.grpc["UNAVAILABLE"], 1);
        assert_eq!(snapshot.in_flight, 0);
    }

    #[test]
    fn bounds_are_checked_and_a_new_set_restarts_the_histogram() {
        assert!(checked_bounds(&[0.0]).unwrap_err().contains("found 0"));
        assert!(checked_bounds(&[f64::NAN]).is_err());
        assert!(checked_bounds(&vec![1.0; 65]).unwrap_err().contains("at most 64"));
        assert_eq!(checked_bounds(&[3.0, 1.0, 3.0]).unwrap(), [1.0, 3.0]);
        let stats = HttpStats::default();
        let histogram = stats.started();
        stats.finished(&histogram, Outcome::Grpc(GrpcCode(0)), Duration::from_millis(1));
        stats.set_extra_bounds(&[]);
        assert_eq!(stats.snapshot().latency.count, 1, "the same set keeps the counts");
        stats.set_extra_bounds(&[300.0]);
        assert_eq!(stats.snapshot().latency.count, 0, "a new set starts from zero");
    }

    #[test]
    fn requests_are_kept_one_by_one_with_a_cursor_and_a_bound() {
        let stats = HttpStats::default();
        let get = MethodClass::of(&Method::GET);
        for i in 0..(MAX_RECORDS + 10) {
            let histogram = stats.started();
            let status = if i % 2 == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            stats.finished(&histogram, Outcome::Http(get, status), Duration::from_micros(i as u64));
        }
        let histogram = stats.started();
        stats.finished(&histogram, Outcome::Abandoned, Duration::from_millis(1));
        let histogram = stats.started();
        stats.finished(&histogram, Outcome::Grpc(GrpcCode(14)), Duration::from_millis(2));
        // 65,547 recorded (the abandoned one is not), the oldest 11 dropped.
        let first = stats.records_since(0);
        assert_eq!((first.lost, first.requests.len(), first.more), (11, MAX_RECORDS_PER_READ, true));
        assert_eq!(first.requests[0].seq, 11);
        assert!(!first.requests[0].failed && first.requests[1].failed, "odd numbers answered 200");
        assert_eq!(first.requests[0].latency_us, 11);
        assert!(first.requests[0].started_us_ago >= 11, "it started at least its latency ago");
        let last = stats.records_since(MAX_RECORDS as u64 + 10);
        assert_eq!(
            (last.lost, last.next, last.more, last.requests.len()),
            (0, MAX_RECORDS as u64 + 11, false, 1)
        );
        assert!(last.requests[0].failed, "a gRPC status other than OK failed");
        let none = stats.records_since(last.next);
        assert_eq!((none.next, none.requests.len()), (last.next, 0));
    }

    #[test]
    fn abandoned_requests_count_apart() {
        let stats = HttpStats::default();
        let histogram = stats.started();
        assert_eq!(stats.snapshot().in_flight, 1);
        stats.finished(&histogram, Outcome::Abandoned, Duration::from_millis(5));
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.abandoned, snapshot.requests_total, snapshot.latency.count), (1, 0, 0));
    }
}
