//! The run lifecycle (`engine::execute_with`) under tokio's paused clock, with a fake fault driver and SLO
//! logs fed by the test: every exit path — a normal end, a revert that keeps failing, a panicking step, a
//! guardrail trip during a fault, a wait and a parallel group, an interrupt in the baseline, the method, the
//! recovery and the rollbacks, a second interrupt, an apply that never finishes, a lock poisoned by a panic —
//! ends with every applied fault reverted exactly once (or, for the one that cannot be, retried and reported).
//! No network, no real time: the whole file runs in milliseconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos_controller::engine::{
    self, ActiveFault, Applied, BoxFuture, ExecuteOptions, FaultDriver, FaultError, Logs, Outcome, Plan,
    Reverted, RunConfig, Timing, Verdict,
};
use chaos_controller::experiment::{self, checked::Fault};
use chaos_controller::signals::{Event, EventLog};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// === the fake driver ===

/// What the fake driver saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Applied(String),
    Reverted(String),
    RevertFailed(String),
}

#[derive(Default)]
struct Ledger(Mutex<Vec<Seen>>);

impl Ledger {
    fn push(&self, seen: Seen) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(seen);
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn applied(&self) -> Vec<String> {
        self.all().into_iter().filter_map(|s| if let Seen::Applied(n) = s { Some(n) } else { None }).collect()
    }

    fn count(&self, seen: &Seen) -> usize {
        self.all().iter().filter(|s| *s == seen).count()
    }

    /// Every fault applied was reverted exactly once, except `stuck` ones (whose reverts always fail).
    fn assert_each_reverted_once(&self) {
        for name in self.applied() {
            if name.starts_with("stuck") {
                continue;
            }
            assert_eq!(self.count(&Seen::Reverted(name.clone())), 1, "{name}: {:#?}", self.all());
        }
    }
}

/// Applies faults by step name: `hang…` never finishes applying, `panic…` panics, `refuse…` is refused,
/// `stuck…` applies but never reverts, `poison…` panics when asked whether it was lost; anything else applies
/// and reverts.
struct FakeDriver(Arc<Ledger>);

struct FakeFault {
    name: String,
    ledger: Arc<Ledger>,
}

impl FaultDriver for FakeDriver {
    fn apply<'a>(
        &'a self,
        step: &'a str,
        _fault: &'a Fault<'_>,
    ) -> BoxFuture<'a, Result<Applied, FaultError>> {
        Box::pin(async move {
            // An apply takes a moment, as a real one does.
            tokio::time::sleep(Duration::from_millis(10)).await;
            if step.starts_with("hang") {
                std::future::pending::<()>().await;
            }
            if step.starts_with("panic") {
                panic!("the fake driver panics applying {step}");
            }
            if step.starts_with("refuse") {
                return Err(FaultError::Agent(format!("{step} refused")));
            }
            self.0.push(Seen::Applied(step.to_string()));
            Ok(Applied::Active(Box::new(FakeFault { name: step.to_string(), ledger: self.0.clone() })))
        })
    }
}

impl ActiveFault for FakeFault {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn lost_now(&self) -> Option<String> {
        if self.name.starts_with("poison") {
            panic!("the fake fault panics while the list of active faults is locked");
        }
        None
    }

    fn revert(&self) -> BoxFuture<'_, Result<Reverted, FaultError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if self.name.starts_with("stuck") {
                self.ledger.push(Seen::RevertFailed(self.name.clone()));
                return Err(FaultError::Agent("the fake agent cannot revert it".into()));
            }
            self.ledger.push(Seen::Reverted(self.name.clone()));
            Ok(Reverted::Done)
        })
    }
}

// === the run ===

/// An experiment with one errors SLO on `shop` (guarded by `no_data: 1s`), a 2 s baseline and recovery, and
/// `method` and `rollbacks` as YAML lists.
fn experiment(method: &str, rollbacks: &str) -> experiment::Checked {
    let yaml = format!(
        "apiVersion: chaos/v1\ntitle: lifecycle\ntargets:\n  shop: {{ proxy: {{ api: \"http://127.0.0.1:9\", \
         name: shop }} }}\nslos:\n  - {{ name: availability, signal: errors, objective: 90%, source: {{ proxy: shop \
         }} }}\nguardrails: {{ no_data: 1s }}\nbaseline: 2s\nmethod:\n{method}\nrollbacks:\n{rollbacks}\nrecovery: \
         2s\n"
    );
    experiment::parse("lifecycle.yaml", &yaml, &[]).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn fault(name: &str, duration: &str) -> String {
    format!(
        "  - {{ name: {name}, fault: latency, target: shop, with: {{ latency: 100 }}, duration: {duration} }}\n"
    )
}

/// When things happen to a run, on its own clock.
#[derive(Default)]
struct Script {
    /// The SLO's source goes silent at this time (the `no_data` guardrail trips a second or two later).
    silent_at: Option<Duration>,
    interrupt_at: Option<Duration>,
    stop_rollbacks_at: Option<Duration>,
    apply_timeout: Option<Duration>,
}

struct Run {
    outcome: Outcome,
    ledger: Arc<Ledger>,
    /// How long the run took on the paused clock.
    took: Duration,
}

async fn run(exp: &experiment::Checked, script: Script) -> Run {
    let ledger = Arc::new(Ledger::default());
    let log = Arc::new(EventLog::default());
    let logs: Logs = BTreeMap::from([("proxy:shop".to_string(), log.clone())]);
    let start = Instant::now();
    // The source counts a good event every 100 ms until it goes silent.
    let feeder = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            let at = tick.tick().await.duration_since(start);
            if script.silent_at.is_some_and(|s| at >= s) {
                return;
            }
            log.push(Event { at, latency: Duration::ZERO, ok: true });
        }
    });
    let interrupt = CancellationToken::new();
    let stop_rollbacks = CancellationToken::new();
    for (at, token) in [(script.interrupt_at, &interrupt), (script.stop_rollbacks_at, &stop_rollbacks)] {
        if let Some(at) = at {
            let token = token.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(start + at).await;
                token.cancel();
            });
        }
    }
    let config = RunConfig {
        seed: 1,
        file: "lifecycle.yaml".into(),
        progress: None,
        stop_rollbacks: stop_rollbacks.clone(),
    };
    let mut timing = Timing::default();
    if let Some(timeout) = script.apply_timeout {
        timing.apply_timeout = timeout;
    }
    let options =
        ExecuteOptions { timing, driver: Some(Arc::new(FakeDriver(ledger.clone()))), signals: Some(logs) };
    let outcome = engine::execute_with(exp, Plan::default(), &config, interrupt, options).await;
    feeder.abort();
    Run { outcome, ledger, took: start.elapsed() }
}

fn reasons(outcome: &Outcome) -> String {
    outcome.reasons.join("\n")
}

fn phase_names(outcome: &Outcome) -> Vec<String> {
    outcome.timeline.iter().filter(|e| e.kind == "phase").map(|e| e.name.clone()).collect()
}

// === the exit paths ===

#[tokio::test(start_paused = true)]
async fn a_run_that_goes_to_plan_passes_and_reverts_each_fault_once() {
    let exp = experiment(&format!("{}  - {{ wait: 1s }}\n{}", fault("a", "3s"), fault("b", "2s")), "  []");
    let run = run(&exp, Script::default()).await;
    assert_eq!(run.outcome.verdict, Verdict::Passed, "{}", reasons(&run.outcome));
    assert_eq!(run.ledger.applied(), ["a", "b"]);
    run.ledger.assert_each_reverted_once();
    assert_eq!(phase_names(&run.outcome), ["preflight", "baseline", "method", "recovery", "steady state"]);
    // 2 s baseline, 3 + 1 + 2 s method, 2 s recovery, and the fakes' few milliseconds.
    assert!(run.took >= Duration::from_secs(10) && run.took < Duration::from_secs(11), "{:?}", run.took);
}

#[tokio::test(start_paused = true)]
async fn a_revert_that_keeps_failing_is_retried_then_the_run_is_inconclusive() {
    let exp = experiment(&format!("{}{}", fault("a", "1s"), fault("stuck", "1s")), "  []");
    let run = run(&exp, Script::default()).await;
    assert_eq!(run.outcome.verdict, Verdict::Inconclusive, "{}", reasons(&run.outcome));
    // Once at the step's end, then the final revert's attempts.
    let attempts = 1 + Timing::default().revert_attempts as usize;
    assert_eq!(run.ledger.count(&Seen::RevertFailed("stuck".into())), attempts, "{:#?}", run.ledger.all());
    assert!(
        reasons(&run.outcome).contains(
            "infrastructure: stuck could not be reverted: the fake agent cannot revert it (its own deadline \
             still removes it)"
        ),
        "{}",
        reasons(&run.outcome)
    );
    run.ledger.assert_each_reverted_once();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_step_is_an_infrastructure_error_and_what_was_applied_is_reverted() {
    let method = format!("  - parallel:\n  {}  {}", fault("a", "10s"), fault("panic", "10s"));
    let exp = experiment(&method, &fault("undo", "1s"));
    let run = run(&exp, Script::default()).await;
    assert_eq!(run.outcome.verdict, Verdict::Inconclusive, "{}", reasons(&run.outcome));
    assert!(reasons(&run.outcome).contains("infrastructure: a method step failed unexpectedly"));
    assert_eq!(run.ledger.applied(), ["a", "undo"], "the rollbacks still run");
    run.ledger.assert_each_reverted_once();
    assert!(run.took < Duration::from_secs(8), "the run did not wait out the 10 s fault: {:?}", run.took);
}

/// A guardrail trip aborts the method wherever it is; the faults in force are reverted once, the rollbacks
/// run, and the verdict is failed.
#[tokio::test(start_paused = true)]
async fn a_guardrail_trip_during_a_fault_a_wait_or_a_parallel_group_fails_the_run() {
    let during_fault = format!("{}{}", fault("a", "10s"), fault("never", "1s"));
    let during_wait = format!("{}  - {{ wait: 10s }}\n{}", fault("a", "1s"), fault("never", "1s"));
    let during_group =
        format!("  - parallel:\n  {}  {}{}", fault("a", "10s"), fault("b", "8s"), fault("never", "1s"));
    for (what, method, applied) in [
        ("a fault", during_fault, vec!["a", "undo"]),
        ("a wait", during_wait, vec!["a", "undo"]),
        ("a parallel group", during_group, vec!["a", "b", "undo"]),
    ] {
        let exp = experiment(&method, &fault("undo", "1s"));
        // Silent from 4 s into the run (2 s into the method): no_data (1 s) trips at the next tick after 5 s.
        let run = run(&exp, Script { silent_at: Some(Duration::from_secs(4)), ..Script::default() }).await;
        assert_eq!(run.outcome.verdict, Verdict::Failed, "{what}: {}", reasons(&run.outcome));
        assert!(
            reasons(&run.outcome).starts_with("guardrail aborted the run: no data"),
            "{what}: {}",
            reasons(&run.outcome)
        );
        let mut seen = run.ledger.applied();
        seen.sort();
        assert_eq!(seen, applied, "{what}");
        run.ledger.assert_each_reverted_once();
        let trip = run.outcome.timeline.iter().find(|e| e.kind == "guardrail").expect("a guardrail event");
        assert!(
            trip.at >= Duration::from_secs(5) && trip.at < Duration::from_secs(7),
            "{what}: {:?}",
            trip.at
        );
    }
}

/// An interrupt in any phase makes the run inconclusive; whatever is in force is reverted once, and the
/// rollbacks (which a first interrupt does not stop) run and are reverted too.
#[tokio::test(start_paused = true)]
async fn an_interrupt_in_the_baseline_the_method_or_the_recovery_is_inconclusive() {
    let exp = experiment(&format!("{}{}", fault("a", "3s"), fault("b", "3s")), &fault("undo", "1s"));
    // baseline 0–2 s, a 2–5 s, b 5–8 s, recovery 8–10 s.
    for (at, applied, reason) in [
        (1, vec!["undo"], "interrupted: every fault in force was reverted"),
        (3, vec!["a", "undo"], "interrupted: every fault in force was reverted"),
        (6, vec!["a", "b", "undo"], "interrupted: every fault in force was reverted"),
        (9, vec!["a", "b", "undo"], "interrupted: every fault in force was reverted"),
    ] {
        let interrupt_at = Some(Duration::from_secs(at));
        let run = run(&exp, Script { interrupt_at, ..Script::default() }).await;
        assert_eq!(run.outcome.verdict, Verdict::Inconclusive, "at {at} s: {}", reasons(&run.outcome));
        assert_eq!(run.outcome.reasons.first().map(String::as_str), Some(reason), "at {at} s");
        assert_eq!(run.ledger.applied(), applied, "at {at} s");
        run.ledger.assert_each_reverted_once();
        assert!(run.took < Duration::from_secs(at + 2), "at {at} s the run went on until {:?}", run.took);
    }
}

/// A first interrupt lets the rollbacks run; a second stops them, still reverting what they applied.
#[tokio::test(start_paused = true)]
async fn a_second_interrupt_stops_the_rollbacks_and_still_reverts() {
    let rollbacks = format!("{}{}", fault("undo", "5s"), fault("never", "1s"));
    let exp = experiment(&fault("a", "10s"), &rollbacks);
    let script = Script {
        interrupt_at: Some(Duration::from_secs(3)),
        stop_rollbacks_at: Some(Duration::from_secs(5)),
        ..Script::default()
    };
    let run = run(&exp, script).await;
    assert_eq!(run.outcome.verdict, Verdict::Inconclusive, "{}", reasons(&run.outcome));
    assert_eq!(run.ledger.applied(), ["a", "undo"]);
    run.ledger.assert_each_reverted_once();
    assert!(run.took < Duration::from_secs(6), "{:?}", run.took);
}

#[tokio::test(start_paused = true)]
async fn an_apply_that_never_finishes_times_out_and_the_run_is_inconclusive() {
    let exp =
        experiment(&format!("{}{}{}", fault("a", "1s"), fault("hang", "1s"), fault("never", "1s")), "  []");
    let apply_timeout = Some(Duration::from_secs(5));
    let run = run(&exp, Script { apply_timeout, ..Script::default() }).await;
    assert_eq!(run.outcome.verdict, Verdict::Inconclusive, "{}", reasons(&run.outcome));
    assert_eq!(
        run.outcome.reasons.first().map(String::as_str),
        Some("infrastructure: latency on shop: applying the fault did not finish within 5s")
    );
    assert_eq!(run.ledger.applied(), ["a"]);
    run.ledger.assert_each_reverted_once();
}

#[tokio::test(start_paused = true)]
async fn a_refused_fault_stops_the_method_and_reverts_the_others() {
    let method = format!("  - parallel:\n  {}  {}", fault("a", "10s"), fault("refuse", "10s"));
    let exp = experiment(&method, "  []");
    let run = run(&exp, Script::default()).await;
    assert_eq!(run.outcome.verdict, Verdict::Inconclusive, "{}", reasons(&run.outcome));
    assert_eq!(run.outcome.reasons.first().map(String::as_str), Some("infrastructure: refuse refused"));
    run.ledger.assert_each_reverted_once();
}

/// A panic while the list of faults in force is locked poisons the lock: the final revert must still find
/// and revert every fault on it.
#[tokio::test(start_paused = true)]
async fn a_lock_poisoned_by_a_panic_loses_no_fault_to_revert() {
    let method = format!("  - parallel:\n  {}  {}", fault("a", "10s"), fault("poison", "10s"));
    let exp = experiment(&method, "  []");
    let run = run(&exp, Script::default()).await;
    assert_eq!(run.outcome.verdict, Verdict::Inconclusive, "{}", reasons(&run.outcome));
    assert_eq!(run.ledger.applied(), ["a", "poison"]);
    assert_eq!(run.ledger.count(&Seen::Reverted("a".into())), 1, "{:#?}", run.ledger.all());
    assert_eq!(run.ledger.count(&Seen::Reverted("poison".into())), 1, "{:#?}", run.ledger.all());
}

/// A rollback fault whose revert keeps failing is reported like a method fault's: the run cannot pass.
#[tokio::test(start_paused = true)]
async fn a_rollback_fault_that_cannot_be_reverted_makes_the_run_inconclusive() {
    let exp = experiment(&fault("a", "1s"), &fault("stuck undo", "1s"));
    let run = run(&exp, Script::default()).await;
    assert_eq!(run.outcome.verdict, Verdict::Inconclusive, "{}", reasons(&run.outcome));
    assert!(
        reasons(&run.outcome).contains("infrastructure: stuck undo could not be reverted"),
        "{}",
        reasons(&run.outcome)
    );
    run.ledger.assert_each_reverted_once();
}
