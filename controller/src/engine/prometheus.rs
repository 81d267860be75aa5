//! A Prometheus SLO source: every second, the `good` and `total` counters (PromQL instant queries) are read
//! and their increments become events in the SLO's log: `good` increments are good events, the rest of
//! `total`'s bad ones (slo-math §4: counters add across windows, so the SLO and guardrail code judge them
//! like requests).
//!
//! What Prometheus answers is read as it is (slo-math §7): an empty result or `NaN` means no data (no events
//! that second, which the no-data guardrail sees), an error or an unusable answer is logged and polling goes
//! on, a counter that goes down was reset (its new value is the increase). Raw counters are whole numbers,
//! but rate extrapolation or scaling can make them fractional: whole events are counted and the remainder is
//! carried to the next reading.
//!
//! Not here: `ratio` queries (a ratio has no event counts; validation refuses them as a source).
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::experiment::checked::PrometheusQuery;
use crate::experiment::model::PrometheusSource;
use crate::http::{Client, Request};
use crate::probes::prometheus::{Sample, instant_sample, query_url};
use crate::signals::{Event, EventLog};

/// How often the counters are read (a 1 s scrape interval is the finest Prometheus is run with).
const POLL: Duration = Duration::from_secs(1);

/// Deadline of one query: an answer later than this is older than the next reading anyway.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Most events one reading may add. A `total` that grows faster than this is almost certainly not a request
/// counter (bytes, say); the increments are scaled down to it, keeping their good/bad proportion, so a wrong
/// query cannot exhaust memory.
const MAX_EVENTS_PER_READING: u64 = 100_000;

/// The key of a Prometheus source's event log: two SLOs share a log only if they query the same thing.
pub fn key(source: &PrometheusSource) -> String {
    match source.query() {
        Ok(PrometheusQuery::Counters { good, total }) => format!("prometheus:{}|{good}|{total}", source.url),
        Ok(PrometheusQuery::Ratio(ratio)) => format!("prometheus:{}|{ratio}", source.url),
        Err(_) => format!("prometheus:{}", source.url),
    }
}

/// Reads `source`'s counters every second until `stop`, appending their increments to `log`.
pub async fn poll_prometheus(
    source: &PrometheusSource,
    run_start: Instant,
    log: Arc<EventLog>,
    stop: CancellationToken,
) {
    poll_every(source, POLL, run_start, log, stop).await;
}

async fn poll_every(
    source: &PrometheusSource,
    every: Duration,
    run_start: Instant,
    log: Arc<EventLog>,
    stop: CancellationToken,
) {
    let (good, total) = match source.query() {
        Ok(PrometheusQuery::Counters { good, total }) => (good, total),
        Ok(PrometheusQuery::Ratio(_)) | Err(_) => {
            // Validation refuses these; a source that got here anyway yields no events (the guardrail sees
            // it).
            tracing::warn!(url = %source.url, "prometheus source without good/total counters: not polled");
            return;
        }
    };
    let client = Client::new();
    let mut counters = Counters::default();
    let mut last_error: Option<String> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let reading = tokio::select! {
            _ = stop.cancelled() => return,
            reading = read(&client, &source.url, good, total) => reading,
        };
        match reading {
            Ok(Some((good, total))) => {
                last_error = None;
                let (good, bad) = cap(counters.observe(good, total), &source.url);
                let at = run_start.elapsed();
                for ok in
                    std::iter::repeat_n(true, to_usize(good)).chain(std::iter::repeat_n(false, to_usize(bad)))
                {
                    log.push(Event { at, latency: Duration::ZERO, ok });
                }
            }
            Ok(None) => tracing::debug!(url = %source.url, "prometheus counters: no data this second"),
            Err(error) => {
                // Once per distinct error: a Prometheus that stays down would otherwise warn every second.
                if last_error.as_ref() != Some(&error) {
                    tracing::warn!(url = %source.url, %error, "prometheus SLO source: query failed");
                }
                last_error = Some(error);
            }
        }
    }
}

/// Both counters, `None` when either has no data (empty result, `NaN`).
///
/// `total` is read first and `good` is evaluated at the very instant Prometheus evaluated `total` (`time=`),
/// so both come from the same scrapes: otherwise a scrape landing between the two queries would count its new
/// requests in `good` but not in `total`, or the other way round.
async fn read(client: &Client, url: &str, good: &str, total: &str) -> Result<Option<(f64, f64)>, String> {
    let Some(total_sample) = query(client, &query_url(url, total), total).await? else { return Ok(None) };
    let at = format!("{}&time={}", query_url(url, good), total_sample.time);
    let Some(good_sample) = query(client, &at, good).await? else { return Ok(None) };
    Ok(Some((good_sample.value, total_sample.value)))
}

/// One instant query: its sample, `None` for no data, or why the answer is unusable.
async fn query(client: &Client, url: &str, promql: &str) -> Result<Option<Sample>, String> {
    let request = Request::get(url).map_err(|e| e.to_string())?;
    let response = client.send(&request, QUERY_TIMEOUT).await.map_err(|e| e.to_string())?;
    let sample = instant_sample(response.status, &response.body).map_err(|e| format!("{promql}: {e}"))?;
    match sample {
        Some(s) if s.value.is_nan() => Ok(None),
        Some(s) if s.value.is_infinite() || s.value < 0.0 => {
            Err(format!("{promql}: expected a counter (a finite number ≥ 0), got {}", s.value))
        }
        other => Ok(other),
    }
}

/// `(good, bad)` scaled down to [`MAX_EVENTS_PER_READING`] in total, with a warning, when above it.
fn cap((good, bad): (u64, u64), url: &str) -> (u64, u64) {
    let total = good.saturating_add(bad);
    if total <= MAX_EVENTS_PER_READING {
        return (good, bad);
    }
    tracing::warn!(
        url,
        increase = total,
        kept = MAX_EVENTS_PER_READING,
        "prometheus `total` grew faster than a request counter would: events scaled down (is it one?)"
    );
    let good = (u128::from(good) * u128::from(MAX_EVENTS_PER_READING) / u128::from(total)) as u64;
    (good, MAX_EVENTS_PER_READING - good)
}

/// Event counts are capped by [`MAX_EVENTS_PER_READING`], far below `usize::MAX` on any platform.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

// === impl Counters ===

/// Turns successive readings of two counters into whole good and bad events.
#[derive(Debug, Default)]
struct Counters {
    /// The previous reading `(good, total)`; `None` before the first, which is only the starting point (what
    /// the counters counted before the run is not the run's).
    last: Option<(f64, f64)>,
    /// Increases seen but not yet counted as whole events `(good, total)`: fractions, and good events beyond
    /// the total (kept until the total catches up, never counted as more good events than events).
    pending: (f64, f64),
}

impl Counters {
    /// Adds a reading; returns the `(good, bad)` events it completes.
    fn observe(&mut self, good: f64, total: f64) -> (u64, u64) {
        let Some((last_good, last_total)) = self.last.replace((good, total)) else { return (0, 0) };
        self.pending.0 += increase(last_good, good);
        self.pending.1 += increase(last_total, total);
        let total_events = self.pending.1.floor();
        let good_events = self.pending.0.floor().min(total_events);
        self.pending.0 -= good_events;
        self.pending.1 -= total_events;
        // Both are whole, non-negative and bounded by one reading's increase: the casts are exact.
        (good_events as u64, (total_events - good_events) as u64)
    }
}

/// A counter's increase between two readings; a decrease is a reset (the process restarted and counted from 0
/// since), so the new value is the increase, as Prometheus's own `increase()` reads it.
fn increase(last: f64, now: f64) -> f64 {
    if now >= last { now - last } else { now }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_first_reading_is_the_starting_point() {
        let mut c = Counters::default();
        assert_eq!(c.observe(1000.0, 1010.0), (0, 0));
        assert_eq!(c.observe(1095.0, 1110.0), (95, 5));
        assert_eq!(c.observe(1095.0, 1110.0), (0, 0));
    }

    #[test]
    fn fractions_are_carried_until_they_make_whole_events() {
        let mut c = Counters::default();
        c.observe(0.0, 0.0);
        assert_eq!(c.observe(1.5, 2.7), (1, 1));
        assert_eq!(c.observe(3.0, 4.0), (2, 0)); // pending good 0.5 + 1.5, total 0.7 + 1.3
        assert_eq!(c.observe(3.25, 4.25), (0, 0));
        assert_eq!(c.observe(4.0, 5.0), (1, 0));
    }

    #[test]
    fn a_decrease_is_a_reset_and_the_new_value_is_the_increase() {
        let mut c = Counters::default();
        c.observe(100.0, 100.0);
        assert_eq!(c.observe(8.0, 10.0), (8, 2));
        assert_eq!(c.observe(18.0, 20.0), (10, 0));
    }

    #[test]
    fn good_never_exceeds_total_and_the_surplus_waits() {
        let mut c = Counters::default();
        c.observe(0.0, 0.0);
        assert_eq!(c.observe(5.0, 3.0), (3, 0));
        assert_eq!(c.observe(6.0, 6.0), (3, 0));
    }

    #[test]
    fn huge_increases_are_scaled_down_keeping_the_proportion() {
        assert_eq!(cap((3, 1), "u"), (3, 1));
        let (good, bad) = cap((3_000_000, 1_000_000), "u");
        assert_eq!((good, bad), (75_000, 25_000));
    }

    #[test]
    fn keys_tell_sources_apart() {
        let source = |good: &str| PrometheusSource {
            url: "http://p:9090".into(),
            good: Some(good.into()),
            total: Some("t".into()),
            ratio: None,
        };
        assert_eq!(key(&source("g")), "prometheus:http://p:9090|g|t");
        assert_ne!(key(&source("g")), key(&source("h")));
    }

    /// A fake Prometheus: each query string gets its scripted values in turn (the last one repeats); an entry
    /// is a JSON `value` string, `""` for an empty result, `"!"` for an error answer.
    async fn fake_prometheus(
        script: Vec<(&'static str, Vec<&'static str>)>,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let queues: Vec<(String, VecDeque<&str>)> = script
            .into_iter()
            .map(|(q, v)| (crate::probes::prometheus::query_url("", q), v.into()))
            .collect();
        let queues = Arc::new(Mutex::new(queues));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let path = text.split_whitespace().nth(1).unwrap_or_default().to_string();
                log.lock().unwrap().push(path.clone());
                let value = {
                    let mut queues = queues.lock().unwrap();
                    let queue = queues.iter_mut().find(|(q, _)| path.starts_with(q.as_str())).map(|(_, v)| v);
                    match queue {
                        Some(v) if v.len() > 1 => v.pop_front().unwrap(),
                        Some(v) => v.front().copied().unwrap_or(""),
                        None => "!",
                    }
                };
                let (status, body) = match value {
                    "!" => (
                        400,
                        r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#.to_string(),
                    ),
                    "" => (
                        200,
                        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_string(),
                    ),
                    v => {
                        let sample = format!(r#"{{"metric":{{}},"value":[1795606044.142,"{v}"]}}"#);
                        let data = format!(r#"{{"resultType":"vector","result":[{sample}]}}"#);
                        (200, format!(r#"{{"status":"success","data":{data}}}"#))
                    }
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn increments_become_events_through_gaps_errors_and_resets() {
        // Readings of total: 10 (start) → 20 → no data → NaN → error → 25 → 3 (reset) → 3 …
        let (url, seen) = fake_prometheus(vec![
            ("total", vec!["10", "20", "", "NaN", "!", "25", "3"]),
            ("good", vec!["10", "18", "23", "2"]),
        ])
        .await;
        let source =
            PrometheusSource { url, good: Some("good".into()), total: Some("total".into()), ratio: None };
        let log = Arc::new(EventLog::default());
        let stop = CancellationToken::new();
        let poller = tokio::spawn({
            let (log, stop) = (log.clone(), stop.clone());
            async move { poll_every(&source, Duration::from_millis(5), Instant::now(), log, stop).await }
        });
        // The script is 7 readings; 40 requests are well past it, into the repeated last values.
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 40 {
            assert!(Instant::now() < deadline, "the poller stopped querying: {:?}", seen.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        poller.await.unwrap();
        // 10 → 20: 8 good, 2 bad; 20 → 25: 5 good; reset to 3: 2 good, 1 bad; nothing for the gaps.
        let events = log.between(Duration::ZERO, Duration::from_secs(60));
        let good = events.iter().filter(|e| e.ok).count();
        assert_eq!((good, events.len() - good), (15, 3));
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter().filter(|p| p.contains("query=good")).all(|p| p.ends_with("&time=1795606044.142")),
            "good is evaluated at total's instant: {seen:?}"
        );
    }
}
