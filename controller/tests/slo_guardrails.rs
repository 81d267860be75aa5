//! Guardrails (budget, burn-rate tripwire, traffic floor, no data) checked second by second over synthetic
//! event streams, with time passed in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chaos_controller::experiment::model::{Guardrails, Slo};
use chaos_controller::signals::Event;
use chaos_controller::slo::{GuardrailBasis, GuardrailState, TripKind};
use serde_json::json;

// === helpers ===

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn guardrails(value: serde_json::Value) -> Guardrails {
    serde_json::from_value(value).unwrap()
}

/// `rate` events per second over `[from, to)`, evenly spaced; event `i` (counting from 0 in this stretch) is
/// described by `shape(i)` as (latency, ok).
fn stream(from: Duration, to: Duration, rate: u64, shape: impl Fn(u64) -> (Duration, bool)) -> Vec<Event> {
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let mut events = Vec::new();
    let (mut at, mut i) = (from, 0);
    while at < to {
        let (latency, ok) = shape(i);
        events.push(Event { at, latency, ok });
        at += gap;
        i += 1;
    }
    events
}

fn good(_: u64) -> (Duration, bool) {
    (ms(20), true)
}

/// Every `n`th event fails.
fn failing_every(n: u64) -> impl Fn(u64) -> (Duration, bool) {
    move |i| (ms(20), i % n != n - 1)
}

// === guardrails ===

/// Checks every second from `from` to `to` (inclusive) and returns the first trip: (kind, second).
fn first_trip(state: &mut GuardrailState, events: &[Event], from: u64, to: u64) -> Option<(TripKind, u64)> {
    (from..=to).find_map(|s| state.check(secs(s), events).map(|trip| (trip.kind, trip.at.as_secs())))
}

struct GuardCase {
    what: &'static str,
    guardrails: serde_json::Value,
    basis: GuardrailBasis,
    events: Vec<Event>,
    expect: Option<(TripKind, u64)>,
}

fn basis(objective: f64, baseline_rate: f64, planned: Option<u64>) -> GuardrailBasis {
    GuardrailBasis {
        start: secs(0),
        objective: Some(objective),
        baseline_rate: Some(baseline_rate),
        planned: planned.map(secs),
        ..GuardrailBasis::default()
    }
}

fn then(mut first: Vec<Event>, rest: Vec<Event>) -> Vec<Event> {
    first.extend(rest);
    first
}

#[test]
fn guardrail_rules() {
    let all = json!({"budget": "2%", "tripwire": {"window": "1m", "burn_rate": 14.4}, "min_traffic": "50%",
                     "no_data": "15s"});
    let outage_from =
        |s: u64| then(stream(secs(0), secs(s), 50, good), stream(secs(s), secs(60), 50, |_| (ms(5), false)));
    let cases = [
        GuardCase {
            what: "healthy run with a little noise",
            guardrails: all.clone(),
            basis: basis(0.999, 50.0, Some(60)),
            events: stream(secs(0), secs(60), 50, failing_every(2000)),
            expect: None,
        },
        GuardCase {
            what: "budget: 2% of 3,000 expected = 60 bad allowed; a full outage from 10 s spends 100 by 12 s",
            guardrails: json!({"budget": "2%"}),
            basis: basis(0.999, 50.0, Some(60)),
            events: outage_from(10),
            expect: Some((TripKind::Budget, 12)),
        },
        GuardCase {
            what: "budget without a plan: the ratio over the run, 5% errors against 2%",
            guardrails: json!({"budget": "2%"}),
            basis: GuardrailBasis::default(),
            events: stream(secs(0), secs(60), 50, failing_every(20)),
            expect: Some((TripKind::Budget, 1)),
        },
        GuardCase {
            what: "budget without a plan: 1% errors stay under 2%",
            guardrails: json!({"budget": "2%"}),
            basis: GuardrailBasis::default(),
            events: stream(secs(0), secs(60), 50, failing_every(100)),
            expect: None,
        },
        GuardCase {
            what: "budget: one early failure does not abort",
            guardrails: json!({"budget": "2%"}),
            basis: GuardrailBasis::default(),
            events: stream(secs(0), secs(60), 50, |i| (ms(5), i != 0)),
            expect: None,
        },
        GuardCase {
            what: "budget: slow requests spend it too when a latency SLO exists",
            guardrails: json!({"budget": "2%"}),
            basis: GuardrailBasis { latency_threshold: Some(ms(800)), ..basis(0.99, 50.0, Some(60)) },
            events: then(
                stream(secs(0), secs(10), 50, good),
                stream(secs(10), secs(60), 50, |_| (ms(900), true)),
            ),
            expect: Some((TripKind::Budget, 12)),
        },
        GuardCase {
            what: "tripwire: 20% errors from 30 s; long burn passes 14.4 at 33 s (30 bad of 1,650)",
            guardrails: json!({"tripwire": {"window": "1m", "burn_rate": 14.4}}),
            basis: basis(0.999, 50.0, None),
            events: then(
                stream(secs(0), secs(30), 50, good),
                stream(secs(30), secs(60), 50, failing_every(5)),
            ),
            expect: Some((TripKind::Tripwire, 33)),
        },
        GuardCase {
            what: "tripwire: one failure among too few events cannot trip it",
            guardrails: json!({"tripwire": {"window": "1m", "burn_rate": 14.4}}),
            basis: basis(0.999, 1.0, None),
            events: stream(secs(0), secs(60), 1, |i| (ms(5), i != 3)),
            expect: None,
        },
        GuardCase {
            what: "traffic floor: traffic stops at 20 s; the last 5 s fall under 50% of 50/s at 23 s",
            guardrails: all.clone(),
            basis: basis(0.999, 50.0, Some(60)),
            events: stream(secs(0), secs(20), 50, good),
            expect: Some((TripKind::TrafficFloor, 23)),
        },
        GuardCase {
            what: "traffic floor: halved traffic is at the floor, not below",
            guardrails: json!({"min_traffic": "50%"}),
            basis: basis(0.999, 50.0, None),
            events: stream(secs(0), secs(60), 25, good),
            expect: None,
        },
        GuardCase {
            what: "no data: the last event at 9.98 s, 15 s of silence by 25 s",
            guardrails: json!({"no_data": "15s"}),
            basis: basis(0.999, 50.0, None),
            events: stream(secs(0), secs(10), 50, good),
            expect: Some((TripKind::NoData, 25)),
        },
        GuardCase {
            what: "no data: nothing at all trips 15 s after the method starts",
            guardrails: json!({"no_data": "15s"}),
            basis: GuardrailBasis { start: secs(5), ..basis(0.999, 50.0, None) },
            events: vec![],
            expect: Some((TripKind::NoData, 20)),
        },
        GuardCase {
            what: "the traffic floor looks at the last 5 s, not further back: below half by 23 s",
            guardrails: json!({"min_traffic": "50%"}),
            basis: basis(0.999, 50.0, None),
            events: stream(secs(0), secs(20), 50, good),
            expect: Some((TripKind::TrafficFloor, 23)),
        },
        GuardCase {
            what: "no guardrails configured",
            guardrails: json!({}),
            basis: basis(0.999, 50.0, Some(60)),
            events: vec![],
            expect: None,
        },
    ];
    for case in cases {
        let mut state = GuardrailState::new(&guardrails(case.guardrails), case.basis);
        let trip = first_trip(&mut state, &case.events, 0, 60);
        assert_eq!(trip, case.expect, "{}", case.what);
    }
}

#[test]
fn tripwire_short_window_resets_after_a_burst() {
    // 20% errors during [10 s, 20 s), then clean: at 40 s the last minute still burns at 50 (100 bad of
    // 2,000), but the last 5 s are clean, so the tripwire stays quiet.
    let events = then(
        then(stream(secs(0), secs(10), 50, good), stream(secs(10), secs(20), 50, failing_every(5))),
        stream(secs(20), secs(60), 50, good),
    );
    let limits = guardrails(json!({"tripwire": {"window": "1m", "burn_rate": 14.4}}));
    let mut state = GuardrailState::new(&limits, basis(0.999, 50.0, None));
    assert_eq!(state.check(secs(40), &events), None);
    let mut fresh = GuardrailState::new(&limits, basis(0.999, 50.0, None));
    assert_eq!(fresh.check(secs(20), &events).map(|t| t.kind), Some(TripKind::Tripwire));
}

#[test]
fn guardrail_reasons_and_latching() {
    let limits = guardrails(json!({"budget": "2%", "tripwire": {"window": "1m", "burn_rate": 14.4}}));
    let events =
        then(stream(secs(0), secs(10), 50, good), stream(secs(10), secs(60), 50, |_| (ms(5), false)));
    let mut state = GuardrailState::new(&limits, basis(0.999, 50.0, Some(60)));
    let trip = state.check(secs(12), &events).unwrap();
    assert_eq!(trip.kind, TripKind::Budget);
    assert_eq!(
        trip.reason,
        "budget: 100 bad of 600 events since the method started, over the allowance of 60 (2% of 3,000 events)"
    );
    // Once tripped, the same trip comes back, whatever the events say now.
    assert_eq!(state.check(secs(13), &[]), Some(trip));

    let mut tripwire = GuardrailState::new(
        &guardrails(json!({"tripwire": {"window": "1m", "burn_rate": 14.4}})),
        basis(0.999, 50.0, None),
    );
    let burst = then(stream(secs(0), secs(30), 50, good), stream(secs(30), secs(60), 50, failing_every(5)));
    let trip = tripwire.check(secs(33), &burst).unwrap();
    assert_eq!(
        trip.reason,
        "tripwire: burn rate 18.2 over 1 min (30 bad of 1,650) and 120.0 over 5 s (30 bad of 250), both above 14.4 \
         (objective 99.9%)"
    );

    let mut floor = GuardrailState::new(&guardrails(json!({"min_traffic": "50%"})), basis(0.999, 50.0, None));
    let trip = floor.check(secs(23), &stream(secs(0), secs(20), 50, good)).unwrap();
    assert_eq!(
        trip.reason,
        "traffic floor: 20.0/s served over the last 5 s is 40% of the baseline 50.0/s, floor 50%"
    );

    let mut silent = GuardrailState::new(&guardrails(json!({"no_data": "15s"})), basis(0.999, 50.0, None));
    let trip = silent.check(secs(25), &stream(secs(0), secs(10), 50, good)).unwrap();
    assert_eq!(trip.reason, "no data: 15.02 s since the last event (9.98 s into the run), limit 15 s");
}

#[test]
fn guardrail_basis_is_each_slos_own() {
    let slos: Vec<Slo> = serde_json::from_value(json!([
        {"name": "a", "signal": "errors", "objective": "99.5%", "source": {"load": "x"}},
        {"name": "b", "signal": "latency", "threshold": "800ms", "objective": "99%", "source": {"load": "x"}},
        {"name": "c", "signal": "latency", "percentile": "p99.9 < 300ms", "source": {"load": "x"}},
        {"name": "d", "signal": "traffic", "min": "50%", "source": {"load": "x"}},
    ]))
    .unwrap();
    let own: Vec<_> = slos
        .iter()
        .map(|s| GuardrailBasis::for_slo(s).map(|b| (b.slo.unwrap(), b.objective, b.latency_threshold)))
        .collect();
    assert_eq!(
        own,
        [
            Some(("a".to_string(), Some(0.995), None)),
            Some(("b".to_string(), Some(0.99), Some(ms(800)))),
            Some(("c".to_string(), Some(0.999), Some(ms(300)))),
            None,
        ]
    );
}

/// Item 14 (issue 12): two SLOs on two sources, errors at 50% on one, latency 99% ≤ 300 ms on the other. The
/// first source's requests are slow but all succeed, the second's are fast: nothing is wrong for either SLO.
/// The guardrails used to judge the first SLO's source with the strictest objective (99%) and the tightest
/// threshold (300 ms) of all SLOs and tripped "objective 99%" on slow requests no SLO of that source cares
/// about. Each SLO now guards with its own source, objective and threshold; when the latency source does go
/// slow, the trip names that SLO.
#[test]
fn each_slo_guards_with_its_own_source_objective_and_threshold() {
    use std::sync::Arc;

    use chaos_controller::engine::{Logs, guards, watch_tick};
    use chaos_controller::signals::EventLog;

    let yaml = "apiVersion: chaos/v1\ntitle: t\nhypothesis: h\nload:\n  - { name: slow, http: { url: \
                \"http://127.0.0.1:1/\" }, rate: 50/s }\n  - { name: quick, http: { url: \"http://127.0.0.1:1/\" }, \
                rate: 50/s }\nslos:\n  - { name: availability, signal: errors, objective: 50%, source: { load: \
                slow } }\n  - { name: fast, signal: latency, threshold: 300ms, objective: 99%, source: { load: quick \
                } }\nbaseline: 2s\nmethod:\n  - { wait: 20s }\nguardrails: { tripwire: { window: 10s, burn_rate: \
                2 } }\n";
    let exp = chaos_controller::experiment::parse("two.yaml", yaml, &[]).unwrap_or_else(|e| panic!("{e}"));
    let run = |quick_latency: Duration| {
        let logs: Logs = [("load:slow", ms(500)), ("load:quick", quick_latency)]
            .into_iter()
            .map(|(key, latency)| {
                let log = Arc::new(EventLog::default());
                for e in stream(secs(0), secs(12), 50, |_| (latency, true)) {
                    log.push(e);
                }
                (key.to_string(), log)
            })
            .collect();
        let mut guards = guards(&exp, secs(2));
        assert_eq!(guards.iter().map(|g| g.source.as_str()).collect::<Vec<_>>(), ["load:slow", "load:quick"]);
        (3..=12).find_map(|s| watch_tick(&exp, &logs, &mut guards, "wait", secs(2), secs(s)).0)
    };
    assert_eq!(run(ms(20)), None, "slow successes do not concern an errors SLO");
    let trip = run(ms(400)).expect("the latency SLO's own source went slow");
    assert_eq!(trip.kind, TripKind::Tripwire);
    assert!(trip.reason.contains("(objective 99%), guarding SLO fast"), "{}", trip.reason);
}

#[test]
fn requests_count_when_answered_and_when_they_waited_too_long() {
    use chaos_controller::signals::Watch;
    // 50/s from 0 s, all answered 503 after 100 ms: known at `at + 100 ms`, whatever the request timeout.
    let answered = Watch {
        events: stream(secs(0), secs(2), 50, |_| (ms(100), false)),
        unanswered: vec![],
        requests: true,
    };
    let basis = GuardrailBasis { request_timeout: Some(secs(5)), ..basis(0.99, 50.0, Some(4)) };
    // Allowance 5% of 200 = 10: the 11th failure (sent at 200 ms) is known at 300 ms.
    let mut budget = GuardrailState::new(&guardrails(json!({"budget": "5%"})), basis.clone());
    assert_eq!(budget.check_watch(ms(300), &answered), None);
    assert_eq!(budget.check_watch(ms(301), &answered).map(|t| t.kind), Some(TripKind::Budget));

    // Nothing answered yet, the latency threshold 300 ms: a request waiting longer than that is bad.
    let waiting = Watch { events: vec![], unanswered: (0..50).map(|i| ms(20 * i)).collect(), requests: true };
    let slow = GuardrailBasis { latency_threshold: Some(ms(300)), ..basis };
    let mut budget = GuardrailState::new(&guardrails(json!({"budget": "5%"})), slow);
    assert_eq!(budget.check_watch(ms(500), &waiting), None, "10 waited over 300 ms: not over the allowance");
    let trip = budget.check_watch(ms(501), &waiting).unwrap();
    assert_eq!(
        trip.reason,
        "budget: 11 bad of 11 events since the method started, over the allowance of 10 (5% of 200 events)"
    );
}
