//! Detection, measured: the watch over the alerts an experiment's `detection:` expects. Started with the
//! method, it polls the alert source every second — Prometheus (`ALERTS{alertstate="firing",alertname=~"…"}`
//! through `/api/v1/query`) or Alertmanager (`GET /api/v2/alerts?active=true`) — and records, per expected
//! alert, the time from the first fault's injection (the timeline's first applied `fault_injected`) to the
//! first poll that saw it firing (time to detect) and to the first poll after that where it no longer fired
//! (time to resolve).
//!
//! An alert counts only when it fires after the fault: one already firing at the last poll before the
//! injection is detected only once it has been seen resolved and firing again. An alert first seen firing
//! later than `within` after the injection is not detected. A failed poll is logged (once per distinct
//! error) and polling goes on; only a source that never answered makes the outcome unusable.
//!
//! The run waits for the watch ([`Watch::settled`]) after its recovery window, only as long as some expected
//! alert has not fired and `within` has not elapsed; the reverts never wait for it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{EventKind, MethodContext, lock};
use crate::experiment::model::Detection;
use crate::http::{Client, Request};
use crate::probes::prometheus::encode;
use crate::report::journal::DetectionOutcome;

/// How often the source is polled (the finest evaluation interval Prometheus is run with).
pub const POLL: Duration = Duration::from_secs(1);

/// Deadline of one poll: an answer later than this is older than the next poll anyway.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// Most bytes of an answer read: the Prometheus query and the Alertmanager filter select only the expected
/// alerts, so even a large installation's answer stays far below this.
const BODY_CAP: usize = 1 << 20;

/// Where the firing alerts are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Prometheus(String),
    Alertmanager(String),
}

/// What the watch found, for the verdict and the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detected {
    /// Per expected alert, in the experiment's order.
    pub outcomes: Vec<DetectionOutcome>,
    /// No fault was injected: the watch never started measuring, nothing could be detected.
    pub no_fault: bool,
    /// The source never answered a poll: why the last one failed.
    pub unanswered: Option<String>,
    /// Expected alerts already firing at the last poll before the injection (and not detected since).
    pub already_firing: Vec<String>,
}

/// The running watch of one experiment's `detection`.
pub(crate) struct Watch {
    state: Arc<Mutex<State>>,
    settled: watch::Receiver<bool>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What the polls have seen so far.
#[derive(Debug)]
struct State {
    source: Source,
    alerts: Vec<String>,
    within: Duration,
    /// When the first fault was injected (`None` until it is).
    injected: Option<Instant>,
    /// Per alert: firing at the last poll before the injection (or since, until seen resolved).
    stale: Vec<bool>,
    detected: Vec<Option<Duration>>,
    resolved: Vec<Option<Duration>>,
    answered: bool,
    last_error: Option<String>,
}

impl Source {
    pub fn of(detection: &Detection) -> Option<Source> {
        match (&detection.prometheus, &detection.alertmanager) {
            (Some(url), _) => Some(Source::Prometheus(url.clone())),
            (None, Some(url)) => Some(Source::Alertmanager(url.clone())),
            (None, None) => None,
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Source::Prometheus(url) | Source::Alertmanager(url) => url,
        }
    }

    /// The request that reads the firing ones among `alerts`.
    fn request_url(&self, alerts: &[String]) -> String {
        match self {
            Source::Prometheus(base) => crate::probes::prometheus::query_url(base, &firing_query(alerts)),
            Source::Alertmanager(base) => format!(
                "{}/api/v2/alerts?active=true&filter={}",
                base.trim().trim_end_matches('/'),
                encode(&format!("alertname=~\"{}\"", promql_string(&alternation(alerts))))
            ),
        }
    }

    /// The names among `alerts` an answer says are firing.
    fn firing(&self, status: u16, body: &[u8], alerts: &[String]) -> Result<BTreeSet<String>, String> {
        let text = String::from_utf8_lossy(body);
        if !(200..300).contains(&status) {
            return Err(format!("answered http {status}: {}", snippet(text.trim())));
        }
        let json: Value = serde_json::from_slice(body)
            .map_err(|_| format!("expected JSON, got {}", snippet(text.trim())))?;
        let names: Vec<&str> = match self {
            Source::Prometheus(_) => {
                if json["status"] != "success" {
                    return Err(format!(
                        "query failed: {}: {}",
                        json["errorType"].as_str().unwrap_or("error"),
                        json["error"].as_str().unwrap_or("(no message)")
                    ));
                }
                let result = json["data"]["result"]
                    .as_array()
                    .ok_or_else(|| "expected a vector result (data.result)".to_string())?;
                result
                    .iter()
                    .filter(|s| s["metric"]["alertstate"] == "firing")
                    .filter_map(|s| s["metric"]["alertname"].as_str())
                    .collect()
            }
            Source::Alertmanager(_) => json
                .as_array()
                .ok_or_else(|| "expected a JSON array of alerts".to_string())?
                .iter()
                .filter(|a| a["status"]["state"] == "active")
                .filter_map(|a| a["labels"]["alertname"].as_str())
                .collect(),
        };
        Ok(names.into_iter().filter(|n| alerts.iter().any(|a| a == n)).map(str::to_string).collect())
    }
}

/// `ALERTS{alertstate="firing",alertname=~"A|B"}`, names escaped for the regex and the string.
pub fn firing_query(alerts: &[String]) -> String {
    format!("ALERTS{{alertstate=\"firing\",alertname=~\"{}\"}}", promql_string(&alternation(alerts)))
}

/// `A|B` with every regex metacharacter of each name escaped.
fn alternation(alerts: &[String]) -> String {
    alerts.iter().map(|a| regex::escape(a)).collect::<Vec<_>>().join("|")
}

/// The body of a double-quoted PromQL (and Alertmanager matcher) string: backslashes and quotes escaped.
fn promql_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn snippet(text: &str) -> String {
    let mut s: String = text.chars().take(120).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    format!("{s:?}")
}

// === impl Watch ===

impl Watch {
    /// Starts watching `detection` for the run of `ctx`: polls from now on, measures from the first fault.
    pub fn start(detection: &Detection, ctx: Arc<MethodContext>) -> Option<Watch> {
        let source = Source::of(detection)?;
        let n = detection.alerts.len();
        let state = Arc::new(Mutex::new(State {
            source,
            alerts: detection.alerts.clone(),
            within: detection.within.0,
            injected: None,
            stale: vec![false; n],
            detected: vec![None; n],
            resolved: vec![None; n],
            answered: false,
            last_error: None,
        }));
        let (tx, settled) = watch::channel(false);
        let stop = CancellationToken::new();
        let task = tokio::spawn(poll_loop(state.clone(), ctx, tx, stop.clone()));
        Some(Watch { state, settled, stop, task })
    }

    /// Returns once every expected alert has fired or `within` has elapsed since the injection, or at once
    /// when no fault was injected; `interrupt` cuts it short.
    pub async fn settled(&mut self, ctx: &MethodContext, interrupt: &CancellationToken) {
        if first_injection(ctx).is_none() {
            return;
        }
        let pending = self.pending();
        if !pending.is_empty() {
            ctx.note(
                EventKind::Phase,
                "detection",
                format!("waiting for {} to fire", pending.join(", ")),
                None,
            );
        }
        tokio::select! {
            _ = interrupt.cancelled() => {}
            _ = self.settled.wait_for(|settled| *settled) => {}
        }
    }

    /// Expected alerts not yet detected.
    fn pending(&self) -> Vec<String> {
        let state = lock(&self.state);
        state
            .alerts
            .iter()
            .zip(&state.detected)
            .filter(|(_, d)| d.is_none())
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Stops polling; what was seen until now.
    pub async fn finish(self, ctx: &MethodContext) -> Detected {
        self.stop.cancel();
        let _ = self.task.await;
        let mut state = lock(&self.state);
        // A fault injected after the last poll still counts as injected (its alerts were not seen firing).
        if state.injected.is_none() {
            state.injected = first_injection(ctx);
        }
        state.detected()
    }
}

/// The instant of the run's first applied fault, if any.
fn first_injection(ctx: &MethodContext) -> Option<Instant> {
    lock(&ctx.timeline)
        .iter()
        .find(|e| e.kind == EventKind::FaultInjected && e.ok == Some(true))
        .map(|e| ctx.run_start + e.at)
}

async fn poll_loop(
    state: Arc<Mutex<State>>,
    ctx: Arc<MethodContext>,
    settled: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let client = Client::new().with_body_cap(BODY_CAP);
    let (source, alerts) = {
        let s = lock(&state);
        (s.source.clone(), s.alerts.clone())
    };
    let url = source.request_url(&alerts);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // The deadline wakes the loop even between polls, so `within` is honoured to the millisecond.
        let deadline = lock(&state).deadline();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            _ = sleep_until(deadline) => {
                // `within` has elapsed: nothing more is detected (resolutions still are).
                let _ = settled.send(true);
                continue;
            }
        }
        if lock(&state).injected.is_none()
            && let Some(at) = first_injection(&ctx)
        {
            lock(&state).injected = Some(at);
        }
        let sent = Instant::now();
        let answer = tokio::select! {
            _ = stop.cancelled() => return,
            answer = poll(&client, &source, &url, &alerts) => answer,
        };
        let notes = lock(&state).observe(sent, answer);
        for (name, detail) in notes {
            ctx.note(EventKind::Note, &name, detail, None);
        }
        if lock(&state).settled(Instant::now()) {
            let _ = settled.send(true);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One poll: the expected alerts firing now, or why the answer is unusable.
async fn poll(
    client: &Client,
    source: &Source,
    url: &str,
    alerts: &[String],
) -> Result<BTreeSet<String>, String> {
    let request = Request::get(url).map_err(|e| e.to_string())?;
    let response = client.send(&request, POLL_TIMEOUT).await.map_err(|e| e.to_string())?;
    if response.truncated {
        return Err(format!("the answer is larger than {BODY_CAP} bytes"));
    }
    source.firing(response.status, &response.body, alerts)
}

// === impl State ===

impl State {
    /// When the undetected alerts stop being looked for: `within` after the injection, while some is pending.
    fn deadline(&self) -> Option<Instant> {
        let injected = self.injected?;
        let deadline = injected + self.within;
        (self.detected.iter().any(Option::is_none) && Instant::now() < deadline).then_some(deadline)
    }

    /// Every expected alert has fired, or `within` has elapsed since the injection.
    fn settled(&self, now: Instant) -> bool {
        let Some(injected) = self.injected else { return false };
        self.detected.iter().all(Option::is_some) || now.duration_since(injected) >= self.within
    }

    /// Takes one poll's answer (its request sent at `sent`); returns the timeline notes it makes.
    fn observe(&mut self, sent: Instant, answer: Result<BTreeSet<String>, String>) -> Vec<(String, String)> {
        let firing = match answer {
            Ok(firing) => firing,
            Err(error) => {
                if self.last_error.as_ref() != Some(&error) {
                    tracing::warn!(url = %self.source.url(), %error, "detection: poll failed");
                }
                self.last_error = Some(error);
                return Vec::new();
            }
        };
        self.answered = true;
        self.last_error = None;
        let mut notes = Vec::new();
        for (i, alert) in self.alerts.iter().enumerate() {
            let is_firing = firing.contains(alert);
            let Some(injected) = self.injected.filter(|i| sent >= *i) else {
                // Before the fault: remember what fires already, so it is not taken for a detection.
                self.stale[i] = is_firing;
                continue;
            };
            let after = sent.duration_since(injected);
            match self.detected[i] {
                None if is_firing && !self.stale[i] && after <= self.within => {
                    self.detected[i] = Some(after);
                    notes.push((
                        alert.clone(),
                        format!("alert fired {} after the fault (detected)", human(after)),
                    ));
                }
                None if !is_firing => self.stale[i] = false,
                Some(_) if !is_firing && self.resolved[i].is_none() => {
                    self.resolved[i] = Some(after);
                    notes.push((alert.clone(), format!("alert resolved {} after the fault", human(after))));
                }
                _ => {}
            }
        }
        notes
    }

    fn detected(&self) -> Detected {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let outcomes = self
            .alerts
            .iter()
            .enumerate()
            .map(|(i, alert)| DetectionOutcome {
                alert: alert.clone(),
                source: self.source.url().to_string(),
                within_ms: ms(self.within),
                detected_after_ms: self.detected[i].map(ms),
                resolved_after_ms: self.resolved[i].map(ms),
            })
            .collect();
        let already_firing = self
            .alerts
            .iter()
            .enumerate()
            .filter(|(i, _)| self.stale[*i] && self.detected[*i].is_none())
            .map(|(_, a)| a.clone())
            .collect();
        let unanswered = if self.answered {
            None
        } else {
            Some(self.last_error.clone().unwrap_or_else(|| "no poll completed".to_string()))
        };
        Detected { outcomes, no_fault: self.injected.is_none(), unanswered, already_firing }
    }
}

/// `3.2 s`, `850 ms`.
fn human(d: Duration) -> String {
    crate::slo::format::duration(Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn state(alerts: &[&str], within: Duration) -> State {
        let n = alerts.len();
        State {
            source: Source::Prometheus("http://prom:9090".into()),
            alerts: names(alerts),
            within,
            injected: None,
            stale: vec![false; n],
            detected: vec![None; n],
            resolved: vec![None; n],
            answered: false,
            last_error: None,
        }
    }

    #[test]
    fn the_query_escapes_names_for_the_regex_and_the_string() {
        assert_eq!(
            firing_query(&names(&["ShopDown", "Checkout:slo_burn"])),
            r#"ALERTS{alertstate="firing",alertname=~"ShopDown|Checkout:slo_burn"}"#
        );
        // A dot or a pipe is literal; a quote and a backslash cannot end the string.
        assert_eq!(
            firing_query(&names(&["a.b|c", "say \"hi\\"])),
            r#"ALERTS{alertstate="firing",alertname=~"a\\.b\\|c|say \"hi\\\\"}"#
        );
        let am = Source::Alertmanager("http://am:9093/".into()).request_url(&names(&["A", "B"]));
        assert_eq!(am, "http://am:9093/api/v2/alerts?active=true&filter=alertname%3D~%22A%7CB%22");
    }

    #[test]
    fn answers_are_read_for_the_expected_alerts_only() {
        let alerts = names(&["ShopDown", "Slow"]);
        let prom = Source::Prometheus("http://p".into());
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"ALERTS","alertname":"ShopDown","alertstate":"firing","proxy":"a"},"value":[1,"1"]},
            {"metric":{"__name__":"ALERTS","alertname":"ShopDown","alertstate":"firing","proxy":"b"},"value":[1,"1"]},
            {"metric":{"__name__":"ALERTS","alertname":"Other","alertstate":"firing"},"value":[1,"1"]},
            {"metric":{"__name__":"ALERTS","alertname":"Slow","alertstate":"pending"},"value":[1,"1"]}]}}"#;
        assert_eq!(prom.firing(200, body, &alerts), Ok(set(&["ShopDown"])));
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            prom.firing(400, error, &alerts).unwrap_err(),
            format!("answered http 400: {:?}", String::from_utf8_lossy(error))
        );
        assert_eq!(prom.firing(200, error, &alerts).unwrap_err(), "query failed: bad_data: parse error");
        assert!(prom.firing(200, b"<html>", &alerts).unwrap_err().starts_with("expected JSON, got"));

        let am = Source::Alertmanager("http://a".into());
        let body = br#"[
            {"labels":{"alertname":"Slow","severity":"page"},"status":{"state":"active","silencedBy":[],"inhibitedBy":[]}},
            {"labels":{"alertname":"ShopDown"},"status":{"state":"suppressed","silencedBy":["x"],"inhibitedBy":[]}},
            {"labels":{"alertname":"Other"},"status":{"state":"active"}}]"#;
        assert_eq!(am.firing(200, body, &alerts), Ok(set(&["Slow"])));
        assert_eq!(am.firing(200, b"{}", &alerts).unwrap_err(), "expected a JSON array of alerts");
    }

    #[tokio::test(start_paused = true)]
    async fn times_are_measured_from_the_injection_to_the_polls_that_saw_a_change() {
        let mut s = state(&["A", "B", "C"], Duration::from_secs(10));
        let start = Instant::now();
        // Before the fault: C already fires, so its firing is not a detection.
        assert!(s.observe(start, Ok(set(&["C"]))).is_empty());
        s.injected = Some(start + Duration::from_millis(500));
        assert!(!s.settled(Instant::now()));
        let at = |ms: u64| start + Duration::from_millis(500 + ms);
        assert!(s.observe(at(1000), Err("connection refused".into())).is_empty());
        let notes = s.observe(at(2300), Ok(set(&["A", "C"])));
        assert_eq!(
            notes,
            vec![("A".to_string(), "alert fired 2.3 s after the fault (detected)".to_string())]
        );
        // A resolves; C, seen not firing, fires again: now that is a detection.
        let notes = s.observe(at(3000), Ok(set(&[])));
        assert_eq!(notes, vec![("A".to_string(), "alert resolved 3 s after the fault".to_string())]);
        let notes = s.observe(at(4000), Ok(set(&["C"])));
        assert_eq!(notes, vec![("C".to_string(), "alert fired 4 s after the fault (detected)".to_string())]);
        assert_eq!(s.resolved[0], Some(Duration::from_millis(3000)));
        // B first fires after `within`: not detected.
        s.observe(at(10_500), Ok(set(&["B"])));
        assert_eq!(s.detected[1], None);
        assert!(s.settled(at(10_000)), "within elapsed");
        let d = s.detected();
        assert!(!d.no_fault && d.unanswered.is_none() && d.already_firing.is_empty(), "{d:?}");
        assert_eq!(
            d.outcomes[0],
            DetectionOutcome {
                alert: "A".into(),
                source: "http://prom:9090".into(),
                within_ms: 10_000,
                detected_after_ms: Some(2300),
                resolved_after_ms: Some(3000),
            }
        );
        assert_eq!((d.outcomes[1].detected_after_ms, d.outcomes[1].resolved_after_ms), (None, None));
        assert_eq!(
            (d.outcomes[2].detected_after_ms, d.outcomes[2].resolved_after_ms),
            (Some(4000), Some(10_500))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_settles_when_every_alert_fired_and_reports_what_never_could_be_seen() {
        let mut s = state(&["A"], Duration::from_secs(30));
        let start = Instant::now();
        s.observe(start, Ok(set(&["A"])));
        s.injected = Some(start + Duration::from_millis(10));
        s.observe(start + Duration::from_secs(1), Ok(set(&["A"])));
        assert!(!s.settled(start + Duration::from_secs(1)), "still firing from before: not a detection");
        assert_eq!(s.detected().already_firing, ["A"]);
        s.observe(start + Duration::from_secs(2), Ok(set(&[])));
        s.observe(start + Duration::from_secs(3), Ok(set(&["A"])));
        assert!(s.settled(start + Duration::from_secs(3)));
        assert!(s.detected().already_firing.is_empty());

        let mut never = state(&["A"], Duration::from_secs(30));
        never.observe(start, Err("connection refused".into()));
        let d = never.detected();
        assert!(d.no_fault);
        assert_eq!(d.unanswered.as_deref(), Some("connection refused"));
    }
}
