//! `chaos slo status`: the live error budget of each SLO at one time, read from Prometheus — the SLI over the
//! period, compliance, the budget (total, consumed, remaining: as a share of the budget, as bad events and as
//! minutes of full outage), the burn rate over every alert window, the alerts those numbers fire, and the time
//! to exhaustion at the current burn — plus the exit code a deploy or CI gate reads ([`exit_code`]) and the
//! JSON document machines read ([`json`]).
//!
//! # Definitions
//! With objective `S`, budget `B = 1 − S`, period `T`, `bad`/`total` the events over the period and
//! `e = bad / total` the period's error ratio (reference/slo-math.md §1):
//! - SLI = `1 − e`; compliant when `e ≤ B`.
//! - budget total: `B × total` bad events, `B × T` minutes of full outage.
//! - consumed: `e / B` of the budget, `bad` events, `e × T` minutes; remaining: `1 − e / B`, `B × total − bad`
//!   events, `(B − e) × T` minutes (negative once overspent).
//! - **current burn**: the burn rate over the long window of the SLO's first page row (the first row when it
//!   has no page row): 1 h for a 30-day SLO with the default table, 14 m for a 7-day one.
//! - **time to exhaustion**: `remaining × T / burn` when the current burn is above 1; "never" at a burn of 1 or
//!   less (at that rate the rolling period's error ratio settles at `burn × B ≤ B`: the budget is never spent);
//!   "exhausted" once nothing remains; unknown when the current window has no data.
//!
//! One query per SLO ([`budget::read`]) plus, for a latency SLI whose file does not list its buckets, one
//! `le` label-values request to check the threshold is a bucket bound. SLOs are read concurrently, at most
//! [`CONCURRENCY`] at a time, all at the same instant.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::budget::{self, Burn, Counts};
use super::model::{Severity, Sli, SloDef};
use super::native::{is_bound, not_a_bound};
use super::query::{Prometheus, QueryError};
use super::windows::{period_text, prom_duration};

/// SLOs read from Prometheus at the same time.
pub const CONCURRENCY: usize = 8;

/// Relative slack for float noise when comparing a ratio with the budget.
const NOISE: f64 = 1e-9;

/// What the figures say about one SLO, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Budget left.
    Ok,
    /// Nothing left of the budget (remaining ≤ 0).
    Exhausted,
    /// Prometheus has no data for the SLO over the period (no series, no events, NaN).
    NoData,
    /// Prometheus cannot be reached.
    Unreachable,
    /// The SLO cannot be judged as written: a latency threshold that is not a bucket bound, a query
    /// Prometheus refuses.
    Invalid,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Exhausted => "exhausted",
            State::NoData => "no_data",
            State::Unreachable => "unreachable",
            State::Invalid => "invalid",
        }
    }

    /// 0 budget left, 1 exhausted, 2 bad input, 3 no data or Prometheus unreachable.
    pub fn exit_code(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Exhausted => 1,
            State::Invalid => 2,
            State::NoData | State::Unreachable => 3,
        }
    }
}

/// When the budget runs out at the current burn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Exhaustion {
    /// Already spent.
    Exhausted,
    /// The current burn is 1 or less.
    Never,
    /// At the current burn, after this long.
    In(Duration),
    /// The current burn's window has no data.
    Unknown,
}

/// The budget of one SLO over its period.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// The period's error ratio `e`.
    pub error_ratio: f64,
    /// Bad and all events over the period; `None` for a ratio-only SLI.
    pub counts: Option<Counts>,
    /// Consumed share of the budget, `e / B` (above 1 once overspent).
    pub consumed: f64,
    /// Remaining share of the budget, `1 − e / B` (negative once overspent).
    pub remaining: f64,
    /// Every alert row's burn rates.
    pub burns: Vec<Burn>,
    /// The row whose long window is the current burn, and that burn (`None` without data).
    pub current: Option<(Duration, Option<f64>)>,
    pub exhaustion: Exhaustion,
}

/// One SLO's status.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub slo: SloDef,
    pub state: State,
    /// Why the state is no data, unreachable or invalid.
    pub reason: Option<String>,
    /// `None` unless the state is ok or exhausted.
    pub figures: Option<Figures>,
}

impl Status {
    /// The period's SLI, the fraction of good events.
    pub fn sli(&self) -> Option<f64> {
        self.figures.as_ref().map(|f| 1.0 - f.error_ratio)
    }

    /// The SLI reaches the objective (`e ≤ B`).
    pub fn compliant(&self) -> Option<bool> {
        self.figures.as_ref().map(|f| f.error_ratio <= self.slo.budget() * (1.0 + NOISE))
    }

    /// Minutes of full outage the whole budget allows: `B × T`.
    pub fn budget_minutes(&self) -> f64 {
        self.slo.budget() * self.slo.period.as_secs_f64() / 60.0
    }

    /// Minutes of full outage spent: `e × T`.
    pub fn consumed_minutes(&self) -> Option<f64> {
        self.figures.as_ref().map(|f| f.error_ratio * self.slo.period.as_secs_f64() / 60.0)
    }

    /// Minutes of full outage left: `(B − e) × T`.
    pub fn remaining_minutes(&self) -> Option<f64> {
        self.consumed_minutes().map(|c| self.budget_minutes() - c)
    }

    /// Bad events the whole budget allows: `B × total`.
    pub fn budget_events(&self) -> Option<f64> {
        self.counts().map(|c| self.slo.budget() * c.total)
    }

    /// Bad events left: `B × total − bad`.
    pub fn remaining_events(&self) -> Option<f64> {
        self.counts().map(|c| self.slo.budget() * c.total - c.bad)
    }

    fn counts(&self) -> Option<Counts> {
        self.figures.as_ref().and_then(|f| f.counts)
    }

    /// The severities whose alert fires by these numbers (any of its rows holds).
    pub fn firing(&self) -> Vec<Severity> {
        let mut out = Vec::new();
        for burn in self.figures.iter().flat_map(|f| &f.burns) {
            if burn.holds() && !out.contains(&burn.row.severity) {
                out.push(burn.row.severity);
            }
        }
        out
    }
}

/// The status of every SLO at `at` (unix seconds), in the order given, [`CONCURRENCY`] at a time.
pub async fn status_all(prom: Arc<Prometheus>, slos: &[SloDef], at: f64) -> Vec<Status> {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    // Once one SLO finds the server unreachable the others say so without waiting for their own timeouts.
    let down: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, slo) in slos.iter().enumerate() {
        let (prom, slo, permits, down) = (prom.clone(), slo.clone(), permits.clone(), down.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let known = down.lock().ok().and_then(|d| d.clone());
            if let Some(reason) = known {
                return (i, invalid(&slo, State::Unreachable, reason));
            }
            let s = status(&prom, &slo, at).await;
            if s.state == State::Unreachable
                && let Ok(mut d) = down.lock()
            {
                *d = s.reason.clone();
            }
            (i, s)
        });
    }
    let mut out: Vec<Option<Status>> = vec![None; slos.len()];
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, s)) => out[i] = Some(s),
            Err(e) => tracing::error!("an slo status task failed: {e}"),
        }
    }
    out.into_iter()
        .zip(slos)
        .map(|(s, slo)| {
            s.unwrap_or_else(|| invalid(slo, State::Invalid, "reading its status failed".to_string()))
        })
        .collect()
}

/// The status of one SLO at `at` (unix seconds).
pub async fn status(prom: &Prometheus, slo: &SloDef, at: f64) -> Status {
    match judge(prom, slo, at).await {
        Ok(status) => status,
        Err(QueryError::Unreachable { url, message }) => {
            // The client's message repeats the whole query URL: keep only its cause.
            let cause = match message.strip_prefix("cannot reach ") {
                Some(rest) => rest.split_once(": ").map_or(rest, |(_, cause)| cause),
                None => &message,
            };
            invalid(slo, State::Unreachable, format!("cannot reach prometheus at {url}: {cause}"))
        }
        Err(QueryError::Refused { message, .. }) => {
            invalid(slo, State::Invalid, format!("prometheus refused the SLO's query: {message}"))
        }
    }
}

fn invalid(slo: &SloDef, state: State, reason: String) -> Status {
    Status { slo: slo.clone(), state, reason: Some(reason), figures: None }
}

async fn judge(prom: &Prometheus, slo: &SloDef, at: f64) -> Result<Status, QueryError> {
    if let Sli::Latency(latency) = &slo.sli
        && latency.buckets.is_none()
    {
        let selector = match latency.matchers.trim() {
            "" => format!("{}_bucket", latency.histogram),
            matchers => format!("{}_bucket{{{matchers}}}", latency.histogram),
        };
        let values = prom.label_values("le", &selector).await?;
        if values.is_empty() {
            return Ok(invalid(slo, State::NoData, format!("prometheus has no series {selector}")));
        }
        // `1` and `1.0` are the same bound; `+Inf` is no threshold.
        let mut bounds: Vec<f64> =
            values.iter().filter_map(|v| v.trim().parse::<f64>().ok()).filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        if !is_bound(latency.threshold, &bounds) {
            return Ok(invalid(
                slo,
                State::Invalid,
                not_a_bound(&latency.histogram, latency.threshold, &bounds),
            ));
        }
    }
    let reading = budget::read(prom, slo, Some(at)).await?;
    let Some(error_ratio) = reading.error_ratio else {
        let why = match reading.counts {
            Some(c) if c.total <= 0.0 => "no events",
            _ => "no series, or NaN",
        };
        return Ok(invalid(
            slo,
            State::NoData,
            format!("no data over the {} period ({why})", period_text(slo.period)),
        ));
    };
    let b = slo.budget();
    let consumed = error_ratio / b;
    let mut remaining = budget::remaining(slo, error_ratio);
    if remaining.abs() < NOISE {
        remaining = 0.0;
    }
    let current_row = reading
        .burns
        .iter()
        .find(|burn| burn.row.severity == Severity::Page)
        .or_else(|| reading.burns.first());
    let current = current_row.map(|burn| (burn.row.long, burn.long));
    let exhaustion = match current.and_then(|(_, rate)| rate) {
        _ if remaining <= 0.0 => Exhaustion::Exhausted,
        None => Exhaustion::Unknown,
        Some(rate) if rate <= 1.0 => Exhaustion::Never,
        Some(rate) => {
            Exhaustion::In(Duration::from_secs_f64((remaining * slo.period.as_secs_f64() / rate).min(1e12)))
        }
    };
    let state = if remaining <= 0.0 { State::Exhausted } else { State::Ok };
    Ok(Status {
        slo: slo.clone(),
        state,
        reason: None,
        figures: Some(Figures {
            error_ratio,
            counts: reading.counts,
            consumed,
            remaining,
            burns: reading.burns,
            current,
            exhaustion,
        }),
    })
}

/// The exit code of a set of statuses: 2 when any SLO is invalid, else 1 when any budget is exhausted (a
/// definite "no" even if another SLO cannot be read), else 3 when any has no data or Prometheus cannot be
/// reached, else 0.
pub fn exit_code(statuses: &[Status]) -> u8 {
    let has = |s: State| statuses.iter().any(|x| x.state == s);
    if has(State::Invalid) {
        2
    } else if has(State::Exhausted) {
        1
    } else if has(State::NoData) || has(State::Unreachable) {
        3
    } else {
        0
    }
}

/// The SLI kind: `events`, `latency` or `error_ratio`.
pub fn sli_kind(sli: &Sli) -> &'static str {
    match sli {
        Sli::Events(_) => "events",
        Sli::Latency(_) => "latency",
        Sli::ErrorRatio(_) => "error_ratio",
    }
}

/// A duration as people read one: `2d3h`, `17m`, `45s` (two units at most).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut parts = Vec::new();
    let mut rest = s;
    for (unit, size) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join("")
}

/// `x` rounded to `digits` decimals (no binary noise in the JSON).
pub fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    let r = (x * scale).round() / scale;
    if r == 0.0 { 0.0 } else { r }
}

/// The machine-readable document (`chaos slo status --json`); its fields are described in the docs.
pub fn json(statuses: &[Status], at: f64, prometheus: &str, queries: u64) -> Value {
    json!({
        "at": round(at, 3),
        "prometheus": prometheus,
        "queries": queries,
        "exit_code": exit_code(statuses),
        "slos": statuses.iter().map(status_json).collect::<Vec<_>>(),
    })
}

fn status_json(s: &Status) -> Value {
    let slo = &s.slo;
    let mut out = json!({
        "slo": slo.id(),
        "service": slo.service,
        "name": slo.name,
        "origin": slo.origin.to_string(),
        "sli_kind": sli_kind(&slo.sli),
        "objective": round(slo.objective, 9),
        "period": period_text(slo.period),
        "period_seconds": slo.period.as_secs(),
        "state": s.state.as_str(),
        "reason": s.reason,
    });
    let Some(f) = &s.figures else { return out };
    let pct = |x: f64| round(x * 100.0, 4);
    let events = |x: Option<f64>| x.map(|v| round(v, 3));
    let burns: Vec<Value> = f
        .burns
        .iter()
        .map(|b| {
            json!({
                "severity": b.row.severity.as_str(),
                "long": prom_duration(b.row.long),
                "short": prom_duration(b.row.short),
                "threshold": round(b.row.burn_rate, 6),
                "long_burn": b.long.map(|r| round(r, 4)),
                "short_burn": b.short.map(|r| round(r, 4)),
                "holds": b.holds(),
            })
        })
        .collect();
    let (exhaustion, seconds) = match f.exhaustion {
        Exhaustion::Exhausted => ("exhausted".to_string(), Some(0)),
        Exhaustion::Never => ("never".to_string(), None),
        Exhaustion::Unknown => ("unknown".to_string(), None),
        Exhaustion::In(d) => (human_duration(d), Some(d.as_secs())),
    };
    let extra = json!({
        "sli": round(1.0 - f.error_ratio, 9),
        "error_ratio": round(f.error_ratio, 9),
        "compliant": s.compliant(),
        "events_available": f.counts.is_some(),
        "events": f.counts.map(|c| json!({"bad": round(c.bad, 3), "total": round(c.total, 3)})),
        "budget": {
            "fraction": round(slo.budget(), 12),
            "total": {"events": events(s.budget_events()), "minutes": round(s.budget_minutes(), 3)},
            "consumed": {
                "percent": pct(f.consumed),
                "events": events(f.counts.map(|c| c.bad)),
                "minutes": s.consumed_minutes().map(|m| round(m, 3)),
            },
            "remaining": {
                "percent": pct(f.remaining),
                "events": events(s.remaining_events()),
                "minutes": s.remaining_minutes().map(|m| round(m, 3)),
            },
        },
        "burn_rates": burns,
        "alerts_firing": s.firing().iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "current_burn": f.current.map(|(w, r)| json!({"window": prom_duration(w), "burn": r.map(|r| round(r, 4))})),
        "exhaustion": exhaustion,
        "exhaustion_seconds": seconds,
    });
    if let (Some(o), Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(Duration::from_secs(0)), "0s");
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(17 * 60 + 5)), "17m5s");
        assert_eq!(human_duration(Duration::from_secs(2 * 86_400 + 3 * 3_600 + 59)), "2d3h");
        assert_eq!(round(0.1 + 0.2, 9), 0.3);
        assert_eq!(round(-0.0000001, 3), 0.0);
    }
}
