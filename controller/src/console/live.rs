//! A run's events as server-sent events (`GET /runs/{id}/events`), for the run page's live charts: every
//! stored event, then the live ones, ending after `finished` (the same stream `WatchRun` serves). Each event
//! is JSON; the engine's progress lines are parsed here ([`parse_line`]) into numbers the page draws — each
//! SLO's observed ratio against its objective once a second, and fault windows — so the JavaScript only draws.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio_stream::Stream;

use super::Console;
use super::error::ConsoleError;
use super::pages::bounded;
use super::session::Authed;
use crate::store::EventRecord;

/// One SLO's reading in a progress line: `availability 99.80% (objective 99.5%) ok`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Reading {
    pub slo: String,
    /// Percent.
    pub observed: f64,
    /// Percent.
    pub objective: f64,
    /// `ok`, `MISS`, or none yet (`…`).
    pub ok: Option<bool>,
}

/// A fault's edge in a progress line: `fault injected: NAME: …` / `fault reverted: NAME: …`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FaultEdge {
    pub fault: String,
    /// `injected` or `reverted`.
    pub edge: &'static str,
}

/// What a progress line says, as numbers.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Parsed {
    /// Seconds since the run started (`[  12.0s]`).
    pub at_s: Option<f64>,
    /// The step running, from a guardrail tick.
    pub step: Option<String>,
    pub readings: Vec<Reading>,
    pub fault: Option<FaultEdge>,
}

/// Parses one of the engine's progress lines (`engine::watch::watch_tick` and `MethodContext::note` write
/// them); text it does not recognise gives an empty [`Parsed`] apart from the time.
pub fn parse_line(line: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let Some(rest) = line.strip_prefix('[') else { return parsed };
    let Some((at, rest)) = rest.split_once("s]") else { return parsed };
    parsed.at_s = at.trim().parse::<f64>().ok().filter(|t| t.is_finite());
    let rest = rest.trim_start();
    for (prefix, edge) in [("fault injected: ", "injected"), ("fault reverted: ", "reverted")] {
        if let Some(what) = rest.strip_prefix(prefix) {
            let fault = what.split_once(": ").map_or(what, |(name, _)| name);
            parsed.fault = Some(FaultEdge { fault: fault.to_string(), edge });
            return parsed;
        }
    }
    // A guardrail tick: `STEP | NAME P% (objective O%) MARK | ...`.
    let mut parts = rest.split(" | ");
    let step = parts.next().unwrap_or("");
    for part in parts {
        if let Some(reading) = parse_reading(part) {
            parsed.readings.push(reading);
        }
    }
    // A tick of a run without SLOs is `STEP | ` alone.
    if !parsed.readings.is_empty() || rest.trim_end().ends_with(" |") {
        parsed.step = Some(step.trim().to_string());
    }
    parsed
}

/// `NAME 99.80% (objective 99.5%) ok`
fn parse_reading(part: &str) -> Option<Reading> {
    let (head, tail) = part.rsplit_once(" (objective ")?;
    let (objective, mark) = tail.split_once("%) ")?;
    let (slo, observed) = head.rsplit_once(' ')?;
    let observed: f64 = observed.strip_suffix('%')?.parse().ok()?;
    let objective: f64 = objective.parse().ok()?;
    if !observed.is_finite() || !objective.is_finite() {
        return None;
    }
    let ok = match mark.trim() {
        "ok" => Some(true),
        "MISS" => Some(false),
        _ => None,
    };
    Some(Reading { slo: slo.to_string(), observed, objective, ok })
}

/// An event as the page reads it.
#[derive(serde::Serialize)]
struct LiveEvent<'a> {
    seq: u64,
    at_ms: u64,
    kind: &'a str,
    name: &'a str,
    line: &'a str,
    detail: &'a str,
    ok: Option<bool>,
    #[serde(flatten)]
    parsed: Parsed,
}

fn sse_event(e: &EventRecord) -> Event {
    let live = LiveEvent {
        seq: e.seq,
        at_ms: e.at_ms,
        kind: &e.kind,
        name: &e.name,
        line: &e.line,
        detail: &e.detail,
        ok: e.ok,
        parsed: parse_line(&e.line),
    };
    let json = serde_json::to_string(&live).unwrap_or_else(|_| "{}".to_string());
    Event::default().event("run").id(e.seq.to_string()).data(json)
}

/// `GET /runs/{id}/events`: the run's events as server-sent events (`event: run`, JSON data), stored then
/// live, ending after `finished` or when the controller shuts down.
pub async fn events(
    State(console): State<Arc<Console>>,
    _authed: Authed,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    bounded("the run id", &id)?;
    let mut watched = console.api.runs.watch(&id).await?;
    let stop = console.shutdown.clone();
    // Forwarded until the run's stream ends, the browser goes away (the send fails) or the controller stops.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => break,
                next = watched.recv() => next,
            };
            let Some(Ok(event)) = next else { break };
            if tx.send(Ok(sse_event(&event))).await.is_err() {
                break;
            }
        }
    });
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guardrail_tick_gives_each_slos_reading() {
        let line = "[  12.0s] slow payments (18s left) | availability 99.80% (objective 99.5%) ok | fast p99 \
                    97.10% (objective 99%) MISS | new 0.00% (objective 90%) …";
        let p = parse_line(line);
        assert_eq!(p.at_s, Some(12.0));
        assert_eq!(p.step.as_deref(), Some("slow payments (18s left)"));
        assert_eq!(
            p.readings,
            [
                Reading { slo: "availability".into(), observed: 99.8, objective: 99.5, ok: Some(true) },
                Reading { slo: "fast p99".into(), observed: 97.1, objective: 99.0, ok: Some(false) },
                Reading { slo: "new".into(), observed: 0.0, objective: 90.0, ok: None },
            ]
        );
    }

    #[test]
    fn fault_edges_and_other_lines() {
        let p = parse_line("[   3.5s] fault injected: pause web: on web-1: process-pause on pid 7 ok");
        assert_eq!(p.at_s, Some(3.5));
        assert_eq!(p.fault, Some(FaultEdge { fault: "pause web".into(), edge: "injected" }));
        let p = parse_line("[  33.5s] fault reverted: pause web: reverted ok");
        assert_eq!(p.fault.unwrap().edge, "reverted");
        let p = parse_line("[   1.0s] phase: baseline: 5s");
        assert_eq!((p.at_s, p.readings.len(), p.fault, p.step), (Some(1.0), 0, None, None));
        assert_eq!(parse_line("[   2.0s] wait | ").step.as_deref(), Some("wait"));
        assert_eq!(parse_line("chaos run: t (seed 1)"), Parsed::default());
        assert_eq!(parse_line("[NaNs] x").at_s, None);
    }
}
