//! Guardrails: the limits the engine checks every second while the method runs, aborting the run before real
//! damage (`reference/slo-math.md` §5). Pure: the engine passes the current time and what the source's log
//! holds (events and requests still unanswered); tests use synthetic streams.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::evaluate::{decimal, latency_target};
use super::format;
use super::stats::TOLERANCE;
use super::stats::{is_fast, rate_per_second};
use crate::experiment::model::{Guardrails, Signal, Slo};
use crate::signals::{Event, Watch};

/// How far back the traffic floor looks.
pub const TRAFFIC_WINDOW: Duration = Duration::from_secs(5);

/// The shortest short window of the tripwire (`window / 12` otherwise).
const MIN_SHORT_WINDOW: Duration = Duration::from_secs(1);

/// Which guardrail tripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripKind {
    Budget,
    Tripwire,
    TrafficFloor,
    NoData,
}

/// A guardrail that tripped: the run must abort (verdict failed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    pub kind: TripKind,
    /// When it tripped, since the run started.
    pub at: Duration,
    /// In words and numbers, e.g. `budget: 71 bad of 1,200 events since the method started, allowance 60`.
    pub reason: String,
}

/// What the guardrails measure against, besides the limits themselves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuardrailBasis {
    /// The SLO guarded, named at the end of a trip's reason.
    pub slo: Option<String>,
    /// When the method started: guardrails count events from here (the baseline is not the experiment's to
    /// spend).
    pub start: Duration,
    /// Objective `S` for burn rates (`B = 1 − S`): the guarded SLO's. Without one the tripwire is off.
    pub objective: Option<f64>,
    /// Events slower than this count as bad too: the guarded latency SLO's threshold. A request still waiting
    /// for its answer this long is bad already.
    pub latency_threshold: Option<Duration>,
    /// Requests per second sent during the baseline window (traffic floor; budget allowance with `planned`).
    pub baseline_rate: Option<f64>,
    /// How long the method is planned to last; with `baseline_rate` it fixes the expected event count.
    pub planned: Option<Duration>,
    /// The load generator's request timeout: a request still unanswered this long has failed, whenever the
    /// generator gets to record it.
    pub request_timeout: Option<Duration>,
}

impl GuardrailBasis {
    /// The basis of the guardrails of one errors or latency SLO: its own objective, and its threshold for a
    /// latency SLO; `None` for traffic and saturation SLOs, which guard nothing. The rest default to zero /
    /// unknown.
    pub fn for_slo(slo: &Slo) -> Option<Self> {
        let (objective, latency_threshold) = match slo.signal {
            Signal::Errors => (slo.objective.map(|p| decimal(p.0)), None),
            Signal::Latency => match latency_target(slo) {
                Ok((o, t)) => (Some(o), Some(t)),
                Err(_) => (None, None),
            },
            Signal::Traffic | Signal::Saturation => return None,
        };
        Some(GuardrailBasis {
            slo: Some(slo.name.clone()),
            objective,
            latency_threshold,
            ..GuardrailBasis::default()
        })
    }

    /// How long a request may stay unanswered before it counts as bad: the latency threshold or the request
    /// timeout, whichever is shorter.
    fn unanswered_limit(&self) -> Option<Duration> {
        match (self.latency_threshold, self.request_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The guardrails of one errors or latency SLO, checked every second by the engine with
/// [`GuardrailState::check_watch`] on that SLO's own source. The engine keeps one per such SLO, each with the
/// SLO's own objective and threshold ([`GuardrailBasis::for_slo`]): the run aborts when any of them trips, and
/// the reason ends with the SLO it guards (`…, guarding SLO availability`). One SLO's strict objective never
/// judges another SLO's events.
///
/// Everything is counted **as soon as it is known**, never later: a request when its answer comes (sent at
/// `at`, known at `at + latency`), a counted event (proxy stats, Prometheus) when it is counted, and a request
/// still waiting for its answer as soon as it has waited longer than the latency threshold or the request
/// timeout (it is bad whatever the answer will be). An event is **bad** when it failed, or when it is slower
/// than [`GuardrailBasis::latency_threshold`]. "The method's requests" are those sent since `start`.
///
/// In the order checked (the first that holds is reported):
/// 1. **No data** (`no_data: D`): nothing was answered or counted for `D` or more (counting from `start` if
///    nothing came since). Fails closed: a source that went silent, or a target that stopped answering, aborts.
/// 2. **Budget** (`budget: f`): the run may spend `allowance = f × max(expected, total, ceil(1/f))` bad events,
///    where `expected = baseline_rate × planned` (0 when unknown) and `total` the method's requests known so
///    far. Trips when `bad > allowance`. `expected` fixes the allowance up front (slo-math §5.2 with the planned
///    run as the period); `total` lets it grow with more traffic than planned; the `ceil(1/f)` floor keeps a
///    single early failure from aborting.
/// 3. **Tripwire** (`window: W`, `burn_rate: th`, objective `S`, `B = 1 − S`): burn over a window is
///    `(bad / total) / B` among the method's requests that became known in it; trips when the burn over the
///    last `W` and over the last `max(W/12, 1 s)` are both above `th` (slo-math §2, §5.3), with at least
///    `ceil(1 / (th × B))` events in the long window so one failure cannot trip it (§3) and at least one in the
///    short. Windows are clipped to the method.
/// 4. **Traffic floor** (`min_traffic: p`): once [`TRAFFIC_WINDOW`] of the method has passed, the rate of good
///    answers that came over the last [`TRAFFIC_WINDOW`] is below `p × baseline_rate`. Off without a positive
///    baseline rate.
///
/// The engine checks once a second, so each rule trips within one second of the moment its condition first
/// holds.
#[derive(Clone, Debug)]
pub struct GuardrailState {
    limits: Guardrails,
    basis: GuardrailBasis,
    /// The first trip, repeated by later checks: once aborted, a run stays aborted.
    tripped: Option<Trip>,
}

/// One request or counted event as the guardrails see it at one check.
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// When it was sent (or counted).
    sent: Duration,
    /// When it became known: answered, counted, or bad by waiting too long.
    known: Duration,
    bad: bool,
    /// False for a request still waiting (counted bad by its wait).
    answered: bool,
}

/// A watch's events in the order they became known: sorted once per source and tick, shared by every
/// [`GuardrailState::seen_in`] over that watch.
#[derive(Clone, Debug, Default)]
pub struct KnownOrder {
    order: Vec<usize>,
}

impl KnownOrder {
    pub fn new(watch: &Watch) -> KnownOrder {
        let mut order: Vec<usize> = (0..watch.events.len()).collect();
        // Stable, so events known at the same time keep the log's order.
        order.sort_by_key(|&i| watch.events[i].known_at(watch.requests));
        KnownOrder { order }
    }
}

/// Two sequences each in known order, merged into one.
fn merge_by_known(a: impl Iterator<Item = Seen>, b: Vec<Seen>) -> impl Iterator<Item = Seen> {
    let mut a = a.peekable();
    let mut b = b.into_iter().peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.known < x.known => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// What the guards over one source see at one check, sorted by the time each event became known, with prefix
/// counts: every windowed count a guard needs (budget, tripwire, traffic floor) is two binary searches and two
/// subtractions, so a check costs O(log n) however many events the source has. Built once per tick for every
/// guard with the same [`GuardrailState::seen_key`] ([`GuardrailState::seen`]).
#[derive(Clone, Debug, Default)]
pub struct SeenIndex {
    /// When each event became known, ascending.
    known: Vec<Duration>,
    /// `method[i]`: how many of the first `i` events were sent since the method started (`basis.start`).
    method: Vec<u64>,
    /// `method_bad[i]`: how many of those were bad.
    method_bad: Vec<u64>,
    /// `served[i]`: how many of the first `i` events were good answers (whenever sent).
    served: Vec<u64>,
    /// When the last answer (or counted event) became known.
    last_answered: Option<Duration>,
}

impl SeenIndex {
    #[cfg(test)]
    fn new(start: Duration, mut seen: Vec<Seen>) -> SeenIndex {
        seen.sort_by_key(|s| s.known);
        SeenIndex::from_sorted(start, seen.into_iter())
    }

    /// Indexes `seen`, which comes in the order its events became known.
    fn from_sorted(start: Duration, seen: impl Iterator<Item = Seen>) -> SeenIndex {
        let mut index = SeenIndex {
            known: Vec::new(),
            method: vec![0],
            method_bad: vec![0],
            served: vec![0],
            last_answered: None,
        };
        let (mut method, mut bad, mut served) = (0, 0, 0);
        for s in seen {
            let in_method = s.sent >= start;
            method += u64::from(in_method);
            bad += u64::from(in_method && s.bad);
            served += u64::from(s.answered && !s.bad);
            if s.answered {
                index.last_answered = Some(s.known);
            }
            index.known.push(s.known);
            index.method.push(method);
            index.method_bad.push(bad);
            index.served.push(served);
        }
        index
    }

    /// The positions of the events known in `[from, to)`.
    fn range(&self, from: Duration, to: Duration) -> (usize, usize) {
        let lo = self.known.partition_point(|k| *k < from);
        let hi = self.known.partition_point(|k| *k < to).max(lo);
        (lo, hi)
    }
}

impl GuardrailState {
    pub fn new(guardrails: &Guardrails, basis: GuardrailBasis) -> Self {
        GuardrailState { limits: guardrails.clone(), basis, tripped: None }
    }

    pub fn basis(&self) -> &GuardrailBasis {
        &self.basis
    }

    /// Sets the baseline rate once it is known (the engine counts the baseline's requests after the method
    /// started, when every one of them has been registered).
    pub fn set_baseline_rate(&mut self, rate: Option<f64>) {
        self.basis.baseline_rate = rate;
    }

    /// Checks every guardrail at `now` (since the run started) over counted `events` (each known at its `at`;
    /// any order, any times: those not yet known at `now` are ignored). Returns the trip, if any; after a trip
    /// every later check returns that same trip.
    pub fn check(&mut self, now: Duration, events: &[Event]) -> Option<Trip> {
        self.check_watch(now, &Watch { events: events.to_vec(), unanswered: Vec::new(), requests: false })
    }

    /// [`GuardrailState::check`] over what a log holds (events known at `at + latency` in a log of requests,
    /// and the requests still waiting for their answer).
    pub fn check_watch(&mut self, now: Duration, watch: &Watch) -> Option<Trip> {
        if let Some(trip) = &self.tripped {
            return Some(trip.clone());
        }
        let seen = self.seen(now, watch);
        self.check_seen(now, watch, &seen)
    }

    /// What [`GuardrailState::seen`] depends on besides the watch and the time: guards with equal keys over one
    /// source see the same events the same way, so a tick computes them once ([`GuardrailState::seen`]).
    pub fn seen_key(&self) -> (Option<Duration>, Option<Duration>, Duration) {
        (self.basis.latency_threshold, self.basis.unanswered_limit(), self.basis.start)
    }

    /// [`GuardrailState::check_watch`] with `seen` computed already (by a guard with the same
    /// [`GuardrailState::seen_key`] over the same watch at the same `now`).
    pub fn check_seen(&mut self, now: Duration, watch: &Watch, seen: &SeenIndex) -> Option<Trip> {
        if let Some(trip) = &self.tripped {
            return Some(trip.clone());
        }
        let unanswered = watch.unanswered.len();
        let trip = self
            .no_data(now, seen, watch.requests, unanswered)
            .map(|r| (TripKind::NoData, r))
            .or_else(|| self.budget(seen).map(|r| (TripKind::Budget, r)))
            .or_else(|| self.tripwire(now, seen).map(|r| (TripKind::Tripwire, r)))
            .or_else(|| self.traffic_floor(now, seen).map(|r| (TripKind::TrafficFloor, r)))
            .map(|(kind, reason)| match &self.basis.slo {
                Some(slo) => Trip { kind, at: now, reason: format!("{reason}, guarding SLO {slo}") },
                None => Trip { kind, at: now, reason },
            });
        self.tripped.clone_from(&trip);
        trip
    }

    /// Everything known before `now`: answered and counted events, and the requests that waited too long,
    /// indexed for the checks.
    pub fn seen(&self, now: Duration, watch: &Watch) -> SeenIndex {
        self.seen_in(now, watch, &KnownOrder::new(watch))
    }

    /// [`GuardrailState::seen`] with the watch's events already put in the order they became known (shared by
    /// every key over one watch: only what counts as bad differs between keys).
    pub fn seen_in(&self, now: Duration, watch: &Watch, order: &KnownOrder) -> SeenIndex {
        let answered = order.order.iter().map(|&i| &watch.events[i]).map(|e| Seen {
            sent: e.at,
            known: e.known_at(watch.requests),
            bad: self.is_bad(e),
            answered: true,
        });
        let mut waited: Vec<Seen> = match self.basis.unanswered_limit() {
            Some(limit) => watch
                .unanswered
                .iter()
                .filter(|sent| now.saturating_sub(**sent) > limit)
                .map(|&sent| Seen { sent, known: sent + limit, bad: true, answered: false })
                .collect(),
            None => Vec::new(),
        };
        waited.sort_by_key(|s| s.known);
        SeenIndex::from_sorted(self.basis.start, merge_by_known(answered, waited).filter(|s| s.known < now))
    }

    fn is_bad(&self, e: &Event) -> bool {
        match self.basis.latency_threshold {
            Some(t) => !is_fast(e, t),
            None => !e.ok,
        }
    }

    /// `(total, bad)` among the method's requests that became known in `[from, to)`.
    fn count(&self, seen: &SeenIndex, from: Duration, to: Duration) -> (u64, u64) {
        let (lo, hi) = seen.range(from, to);
        (seen.method[hi] - seen.method[lo], seen.method_bad[hi] - seen.method_bad[lo])
    }

    fn no_data(&self, now: Duration, seen: &SeenIndex, requests: bool, unanswered: usize) -> Option<String> {
        let limit = self.limits.no_data?.0;
        let start = self.basis.start;
        let last = seen.last_answered;
        let since = last.map_or(start, |l| l.max(start));
        let quiet = now.saturating_sub(since);
        if now <= start || quiet < limit {
            return None;
        }
        let what = if requests { "answer" } else { "event" };
        let waiting = match unanswered {
            0 => String::new(),
            1 => "; 1 request is waiting for its answer".to_string(),
            n => format!("; {} requests are waiting for their answers", format::count(n as u64)),
        };
        Some(match last {
            Some(at) => format!(
                "no data: {} since the last {what} ({} into the run){waiting}, limit {}",
                format::duration(quiet),
                format::duration(at),
                format::duration(limit)
            ),
            None => format!(
                "no data: no {what} in the {} since the method started{waiting}, limit {}",
                format::duration(quiet),
                format::duration(limit)
            ),
        })
    }

    fn budget(&self, seen: &SeenIndex) -> Option<String> {
        let f = decimal(self.limits.budget?.0);
        let (total, bad) = self.count(seen, Duration::ZERO, Duration::MAX);
        if f <= 0.0 {
            // A zero budget allows nothing: the first bad event trips.
            return (bad > 0).then(|| format!("budget: {} bad events, budget 0%", format::count(bad)));
        }
        let expected = match (self.basis.baseline_rate, self.basis.planned) {
            (Some(rate), Some(planned)) if rate.is_finite() && rate > 0.0 => rate * planned.as_secs_f64(),
            _ => 0.0,
        };
        let floor = (1.0 / f - TOLERANCE).ceil();
        let counted = expected.max(total as f64).max(floor);
        let allowance = f * counted;
        (bad as f64 > allowance + TOLERANCE).then(|| {
            format!(
                "budget: {} bad of {} events since the method started, over the allowance of {} ({} of {} \
                 events)",
                format::count(bad),
                format::count(total),
                trim(allowance),
                format::objective(f),
                format::count(counted.round() as u64),
            )
        })
    }

    fn tripwire(&self, now: Duration, seen: &SeenIndex) -> Option<String> {
        let tripwire = self.limits.tripwire.as_ref()?;
        let objective = self.basis.objective?;
        let (long, th) = (tripwire.window.0, tripwire.burn_rate);
        let short = (long / 12).max(MIN_SHORT_WINDOW).min(long);
        let budget = 1.0 - objective;
        let start = self.basis.start;
        let from = |w: Duration| now.saturating_sub(w).max(start);
        let (long_total, long_bad) = self.count(seen, from(long), now);
        let (short_total, short_bad) = self.count(seen, from(short), now);
        let needed = if budget * th > TOLERANCE { (1.0 / (th * budget) - 1e-6).ceil() as u64 } else { 1 };
        if long_total < needed.max(1) || short_total == 0 {
            return None;
        }
        let burn = |bad: u64, total: u64| {
            let ratio = bad as f64 / total as f64;
            if budget > TOLERANCE {
                ratio / budget
            } else if bad > 0 {
                f64::INFINITY
            } else {
                0.0
            }
        };
        let (long_burn, short_burn) = (burn(long_bad, long_total), burn(short_bad, short_total));
        (long_burn > th && short_burn > th).then(|| {
            format!(
                "tripwire: burn rate {long_burn:.1} over {} ({} bad of {}) and {short_burn:.1} over {} ({} bad of \
                 {}), both above {} (objective {})",
                format::duration(long),
                format::count(long_bad),
                format::count(long_total),
                format::duration(short),
                format::count(short_bad),
                format::count(short_total),
                trim(th),
                format::objective(objective),
            )
        })
    }

    fn traffic_floor(&self, now: Duration, seen: &SeenIndex) -> Option<String> {
        let floor = decimal(self.limits.min_traffic?.0);
        let baseline = self.basis.baseline_rate.filter(|r| r.is_finite() && *r > 0.0)?;
        let start = self.basis.start;
        if now < start + TRAFFIC_WINDOW {
            return None;
        }
        // Good answers only, whenever they were sent: failed requests are not traffic (see
        // `evaluate::traffic`), and a slow target's answers to requests sent just before the window still
        // arrived in it.
        let from = now - TRAFFIC_WINDOW;
        let (lo, hi) = seen.range(from, now);
        let served = seen.served[hi] - seen.served[lo];
        let rate = rate_per_second(served, TRAFFIC_WINDOW);
        (rate < floor * baseline - TOLERANCE).then(|| {
            format!(
                "traffic floor: {} served over the last {} is {} of the baseline {}, floor {}",
                format::rate(rate),
                format::duration(TRAFFIC_WINDOW),
                format::percent(rate / baseline, 1),
                format::rate(baseline),
                format::objective(floor),
            )
        })
    }
}

/// A float without noise: `60`, `14.4`, `0.2`.
fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use rand::{Rng as _, SeedableRng as _};

    use super::*;

    /// The index answers every windowed count exactly as a scan of the events does (seeded random events,
    /// windows and method starts, ties included).
    #[test]
    fn the_index_counts_what_a_scan_counts() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let ms = Duration::from_millis;
        for _ in 0..200 {
            let start = ms(rng.random_range(0..500));
            let seen: Vec<Seen> = (0..rng.random_range(0..300))
                .map(|_| {
                    let sent = ms(rng.random_range(0..1_000));
                    Seen {
                        sent,
                        known: sent + ms(rng.random_range(0..50)),
                        bad: rng.random_bool(0.3),
                        answered: rng.random_bool(0.9),
                    }
                })
                .collect();
            let index = SeenIndex::new(start, seen.clone());
            let last = seen.iter().filter(|s| s.answered).map(|s| s.known).max();
            assert_eq!(index.last_answered, last);
            for _ in 0..20 {
                let from = ms(rng.random_range(0..1_100));
                let to = ms(rng.random_range(0..1_100));
                let within = |s: &&Seen| s.known >= from && s.known < to;
                let method: Vec<&Seen> = seen.iter().filter(|s| s.sent >= start).filter(within).collect();
                let served = seen.iter().filter(within).filter(|s| s.answered && !s.bad).count() as u64;
                let (lo, hi) = index.range(from, to);
                assert_eq!(index.method[hi] - index.method[lo], method.len() as u64);
                assert_eq!(
                    index.method_bad[hi] - index.method_bad[lo],
                    method.iter().filter(|s| s.bad).count() as u64
                );
                assert_eq!(index.served[hi] - index.served[lo], served);
            }
        }
    }

    /// Building the index from a watch through the shared known order (answers merged with requests that
    /// waited too long) gives the index of the same events sorted directly.
    #[test]
    fn the_shared_order_indexes_what_sorting_indexes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let ms = Duration::from_millis;
        for _ in 0..50 {
            let events: Vec<Event> = (0..rng.random_range(0..200))
                .map(|_| Event {
                    at: ms(rng.random_range(0..1_000)),
                    latency: ms(rng.random_range(0..300)),
                    ok: rng.random_bool(0.8),
                })
                .collect();
            let unanswered: Vec<Duration> =
                (0..rng.random_range(0..20)).map(|_| ms(rng.random_range(0..1_000))).collect();
            let watch = Watch { events, unanswered, requests: true };
            let basis = GuardrailBasis {
                start: ms(rng.random_range(0..300)),
                latency_threshold: Some(ms(rng.random_range(50..250))),
                request_timeout: Some(ms(200)),
                ..GuardrailBasis::default()
            };
            let state = GuardrailState::new(&Guardrails::default(), basis);
            let now = ms(rng.random_range(0..1_400));
            let shared = state.seen_in(now, &watch, &KnownOrder::new(&watch));
            let limit = state.basis.unanswered_limit().unwrap();
            let mut seen: Vec<Seen> = watch
                .events
                .iter()
                .map(|e| Seen { sent: e.at, known: e.known_at(true), bad: state.is_bad(e), answered: true })
                .filter(|s| s.known < now)
                .collect();
            seen.extend(
                watch.unanswered.iter().filter(|s| now.saturating_sub(**s) > limit).map(|&sent| Seen {
                    sent,
                    known: sent + limit,
                    bad: true,
                    answered: false,
                }),
            );
            let direct = SeenIndex::new(state.basis.start, seen);
            assert_eq!(shared.known, direct.known);
            assert_eq!(shared.method, direct.method);
            assert_eq!(shared.method_bad, direct.method_bad);
            assert_eq!(shared.served, direct.served);
            assert_eq!(shared.last_answered, direct.last_answered);
        }
    }
}
