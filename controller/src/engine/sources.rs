//! Signal sources the engine runs during an experiment besides the load generator: a proxy's live stats,
//! turned into events (per request on an `http` proxy, at the time the request reached the proxy; per
//! connection and failed dial on a `tcp` one).

use std::sync::Arc;
use std::time::Duration;

use chaos_proxy_api::client::{Client, ProxyUpdate, Stats};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::signals::{Event, EventLog};

/// How often a proxy's stats are read.
const POLL: Duration = Duration::from_millis(200);

/// A latency given to requests slower than the histogram's last bound (they only ever count as slow).
const BEYOND_LAST_BUCKET: Duration = Duration::from_secs(3600);

/// Polls the proxy until `stop`, appending its requests (or connections) to `log`.
///
/// An `http` proxy gives one event per completed request, read one by one from
/// `/proxies/{name}/requests?since=N`: stamped with the moment the request reached the proxy (the proxy says
/// how long ago, measured when it answered the poll; that is subtracted from the poll's midpoint on the run's
/// clock, so the proxy's own clock does not matter and the error is half a poll's round trip), with its exact
/// latency, bad when it answered 5xx (or a gRPC status other than OK). Requests that reached the proxy before
/// the run started are left out. A proxy without that endpoint (an older `chaos proxy`) falls back to its
/// stats' counters, stamped when polled: `thresholds` (the latency SLOs judged on this proxy) are registered
/// as histogram bounds so "fraction of requests ≤ threshold" is exact, and failed requests are given the
/// fastest latencies of their poll. A `tcp` proxy gives one good event per new connection and one bad one per
/// failed upstream dial, stamped when polled.
pub async fn poll_proxy(
    client: Client,
    proxy: String,
    thresholds: Vec<Duration>,
    run_start: Instant,
    log: Arc<EventLog>,
    stop: CancellationToken,
) {
    let mut last: Option<Stats> = None;
    // Per-request records: the cursor, `None` until an `http` proxy proved it has them.
    let mut cursor: Option<u64> = None;
    let mut records = true;
    let mut registered = thresholds.is_empty();
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(since) = cursor.as_mut() {
            if let Err(e) = read_records(&client, &proxy, since, run_start, &log).await {
                tracing::debug!(%proxy, error = %e, "could not read the proxy's requests");
            }
            continue;
        }
        let Ok(stats) = client.proxy_stats(&proxy).await else { continue };
        if stats.http.is_some() && records {
            let mut since = 0;
            match read_records(&client, &proxy, &mut since, run_start, &log).await {
                Ok(()) => {
                    cursor = Some(since);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%proxy, error = %e, "the proxy does not list its requests: events are \
                                   stamped when its counters are polled, up to {POLL:?} late");
                    records = false;
                }
            }
        }
        if stats.http.is_some() && !registered {
            registered = true;
            let bounds = thresholds.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
            let update = ProxyUpdate { latency_buckets_ms: Some(bounds), ..ProxyUpdate::default() };
            if let Err(e) = client.update_proxy(&proxy, &update).await {
                tracing::warn!(%proxy, error = %e, "could not register the SLO thresholds as latency buckets");
            }
            // New bounds restart the histogram: the next read is the reference.
            continue;
        }
        if let Some(previous) = &last {
            push_increments(previous, &stats, run_start.elapsed(), &log);
        }
        last = Some(stats);
    }
}

/// Reads the proxy's completed requests from `since` on (as many reads as it takes), appends them to `log`
/// at the time each reached the proxy, and moves `since` past them.
async fn read_records(
    client: &Client,
    proxy: &str,
    since: &mut u64,
    run_start: Instant,
    log: &EventLog,
) -> Result<(), chaos_proxy_api::client::ClientError> {
    loop {
        let asked = run_start.elapsed();
        let page = client.proxy_requests(proxy, *since).await?;
        let answered = run_start.elapsed();
        push_records(&page, asked + (answered - asked) / 2, log);
        if page.lost > 0 {
            tracing::warn!(%proxy, lost = page.lost, "the proxy no longer kept some requests: polled too late");
        }
        *since = page.next;
        if !page.more {
            return Ok(());
        }
    }
}

/// Appends the records of one read, answered at `now` on the run's clock: each at `now − started_us_ago`,
/// none from before the run.
fn push_records(page: &chaos_proxy_api::client::Requests, now: Duration, log: &EventLog) {
    for r in &page.requests {
        let Some(at) = now.checked_sub(Duration::from_micros(r.started_us_ago)) else { continue };
        log.push(Event { at, latency: Duration::from_micros(r.latency_us), ok: !r.failed });
    }
}

fn push_increments(previous: &Stats, now: &Stats, at: Duration, log: &EventLog) {
    if let (Some(before), Some(after)) = (&previous.http, &now.http) {
        let bounds_before: Vec<f64> = before.latency.buckets.iter().map(|b| b.le_ms).collect();
        let bounds_after: Vec<f64> = after.latency.buckets.iter().map(|b| b.le_ms).collect();
        if bounds_before != bounds_after {
            return; // the histogram was reset with other bounds: skip one poll
        }
        let mut bad = after.errors().saturating_sub(before.errors());
        let mut below_before = 0;
        let mut below_after = 0;
        let mut push = |latency: Duration, count: u64| {
            for _ in 0..count {
                let ok = bad == 0;
                bad = bad.saturating_sub(1);
                log.push(Event { at, latency, ok });
            }
        };
        for (b, a) in before.latency.buckets.iter().zip(&after.latency.buckets) {
            let in_bucket =
                (a.count - below_after.min(a.count)).saturating_sub(b.count - below_before.min(b.count));
            push(Duration::from_secs_f64(a.le_ms / 1000.0), in_bucket);
            below_before = b.count;
            below_after = a.count;
        }
        let beyond = (after.latency.count - below_after.min(after.latency.count))
            .saturating_sub(before.latency.count - below_before.min(before.latency.count));
        push(BEYOND_LAST_BUCKET, beyond);
        return;
    }
    let opened = now.connections_total.saturating_sub(previous.connections_total);
    let failed = now.upstream_connect_failures.saturating_sub(previous.upstream_connect_failures);
    for _ in 0..opened {
        log.push(Event { at, latency: Duration::ZERO, ok: true });
    }
    for _ in 0..failed {
        log.push(Event { at, latency: Duration::ZERO, ok: false });
    }
}

#[cfg(test)]
mod tests {
    use chaos_proxy_api::client::{HttpStats, LatencyBucket, LatencyStats};

    use super::*;

    fn http(buckets: &[(f64, u64)], count: u64, errors: u64) -> Stats {
        let mut requests = std::collections::BTreeMap::new();
        let mut classes = std::collections::BTreeMap::new();
        classes.insert("2xx".to_string(), count - errors);
        classes.insert("5xx".to_string(), errors);
        requests.insert("GET".to_string(), classes);
        let latency = LatencyStats {
            buckets: buckets.iter().map(|&(le_ms, count)| LatencyBucket { le_ms, count }).collect(),
            count,
            sum_ms: 0.0,
        };
        Stats {
            http: Some(HttpStats { requests_total: count, requests, latency, ..HttpStats::default() }),
            ..Stats::default()
        }
    }

    #[test]
    fn http_requests_become_events_with_bucket_latencies_and_the_errors_first() {
        let log = EventLog::default();
        let before = http(&[(100.0, 1), (300.0, 2)], 2, 0);
        // +3 requests ≤ 100 ms, +1 in (100, 300], +2 beyond 300 ms; 2 of the 6 failed.
        let after = http(&[(100.0, 4), (300.0, 6)], 8, 2);
        push_increments(&before, &after, Duration::from_secs(1), &log);
        let events = log.between(Duration::ZERO, Duration::from_secs(10));
        let shape: Vec<(u128, bool)> = events.iter().map(|e| (e.latency.as_millis(), e.ok)).collect();
        assert_eq!(
            shape,
            [(100, false), (100, false), (100, true), (300, true), (3_600_000, true), (3_600_000, true)]
        );
    }

    #[test]
    fn records_are_stamped_when_they_reached_the_proxy_and_none_before_the_run() {
        use chaos_proxy_api::client::{RequestRecord, Requests};
        let log = EventLog::default();
        let record = |seq, started_us_ago, latency_us, failed| RequestRecord {
            seq,
            started_us_ago,
            latency_us,
            failed,
        };
        let page = Requests {
            next: 3,
            lost: 0,
            more: false,
            requests: vec![
                record(0, 5_000_000, 1_000, false),
                record(1, 750_000, 2_500, true),
                record(2, 10, 3, false),
            ],
        };
        push_records(&page, Duration::from_secs(2), &log);
        let events = log.between(Duration::ZERO, Duration::from_secs(10));
        let ms = Duration::from_micros;
        assert_eq!(
            events,
            [
                Event { at: ms(1_250_000), latency: ms(2_500), ok: false },
                Event { at: ms(1_999_990), latency: ms(3), ok: true },
            ],
            "the request from 3 s before the run is left out"
        );
    }

    #[test]
    fn tcp_proxies_count_connections_and_failed_dials() {
        let log = EventLog::default();
        let before = Stats { connections_total: 3, upstream_connect_failures: 1, ..Stats::default() };
        let after = Stats { connections_total: 5, upstream_connect_failures: 2, ..Stats::default() };
        push_increments(&before, &after, Duration::from_secs(1), &log);
        let oks: Vec<bool> =
            log.between(Duration::ZERO, Duration::from_secs(10)).iter().map(|e| e.ok).collect();
        assert_eq!(oks, [true, true, false]);
    }
}
