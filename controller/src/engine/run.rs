//! `execute`: one experiment from plan to verdict, phase by phase, with every exit path reverting what it
//! applied; the verdict itself is [`super::judge`]'s.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::collect::Collection;
use super::judge::{Observed, judge};
use super::{
    Abort, DEFAULT_BASELINE, DEFAULT_RECOVERY, EngineError, EventKind, FaultDriver, LiveDriver, Logs,
    MethodContext, Plan, RunConfig, TimelineEvent, Timing, lock, run_steps,
};
use crate::experiment::Checked;
use crate::experiment::model::Slo;
use crate::probes::{self, ProbeResult};
use crate::signals::Event;

/// What a run produced: the verdict and everything the reports need.
#[derive(Debug, Default)]
pub struct Outcome {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub timeline: Vec<TimelineEvent>,
    pub probes_before: Vec<ProbeResult>,
    pub probes_after: Vec<ProbeResult>,
    pub slos: Vec<crate::slo::SloResult>,
    /// Per SLO: time from the last fault's end until its signal was back within objective.
    pub recovery: Vec<(String, Option<Duration>)>,
    pub logs: Logs,
    /// Utilisation samples per SLO source key (host, process and agent saturation), for the journal's series.
    pub saturation: std::collections::BTreeMap<String, Vec<crate::slo::SaturationSample>>,
    pub duration: Duration,
    pub method_window: Option<(Duration, Duration)>,
    /// Per expected alert of the experiment's `detection`: time to detect and to resolve.
    pub detection: Vec<crate::report::journal::DetectionOutcome>,
}

impl Outcome {
    /// A run that could not start (targets unresolvable): nothing was touched.
    pub fn inconclusive(reason: String) -> Outcome {
        Outcome { verdict: Verdict::Inconclusive, reasons: vec![reason], ..Outcome::default() }
    }
}

/// DESIGN §4 verdicts (one type for the engine and the reports).
pub use crate::report::Verdict;

/// Key of an SLO's event log.
pub fn source_key(slo: &Slo) -> String {
    if let Some(l) = &slo.source.load {
        format!("load:{l}")
    } else if let Some(p) = &slo.source.proxy {
        format!("proxy:{p}")
    } else if let (Some(h), Some(t)) = (&slo.source.host, &slo.source.target) {
        format!("agents:{t}:{h}")
    } else if let Some(h) = &slo.source.host {
        format!("host:{h}")
    } else if let Some(t) = &slo.source.processes {
        format!("processes:{t}:{}", slo.source.metric.as_deref().unwrap_or_default())
    } else if let Some(p) = &slo.source.prometheus {
        super::prometheus::key(p)
    } else {
        "prometheus".to_string()
    }
}

/// How [`execute_with`] runs beyond the run's own configuration: the engine's timing, the fault driver and
/// where the signals come from.
#[derive(Clone, Default)]
pub struct ExecuteOptions {
    pub timing: Timing,
    /// Applies the faults; the live driver over the plan when `None`.
    pub driver: Option<Arc<dyn FaultDriver>>,
    /// The SLO sources' event logs, fed by the caller: when given, no load generator, poller or sampler is
    /// started (tests drive the guardrails this way).
    pub signals: Option<Logs>,
}

/// Runs `exp` (already validated) against a resolved `plan`. `interrupt` is cancelled by SIGINT/SIGTERM.
pub async fn execute(exp: &Checked, plan: Plan, config: &RunConfig, interrupt: CancellationToken) -> Outcome {
    execute_with(exp, plan, config, interrupt, ExecuteOptions::default()).await
}

/// [`execute`] with the engine's timing, fault driver and signals given. The phases, in order: proxies,
/// preflight, signals, baseline, method (guarded), revert everything, recovery, SLOs, steady state again,
/// rollbacks, the verdict ([`judge`]). Every exit path reverts what was applied.
pub async fn execute_with(
    exp: &Checked,
    plan: Plan,
    config: &RunConfig,
    interrupt: CancellationToken,
    options: ExecuteOptions,
) -> Outcome {
    execute_external(exp, plan, config, interrupt, options, None).await
}

/// A method the engine does not run itself (a Chaos Toolkit method under `extensions: chaos`,
/// `ctk/native.rs`): the engine does everything around it (proxies, preflight, signals, baseline,
/// guardrails, recovery, SLOs, verdict), cancels `entered` when its method window opens (or when the run
/// stops before it), holds the window open until `ended` is cancelled, and cancels `tripped` when a guardrail
/// trips (or an interrupt arrives) during it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ExternalMethod {
    pub entered: CancellationToken,
    pub ended: CancellationToken,
    pub tripped: CancellationToken,
}

/// [`execute_with`], the method window held open by `external` (after the experiment's own steps, if any).
pub(crate) async fn execute_external(
    exp: &Checked,
    plan: Plan,
    config: &RunConfig,
    interrupt: CancellationToken,
    options: ExecuteOptions,
    external: Option<ExternalMethod>,
) -> Outcome {
    // Whatever the exit path, whoever waits for the method window is let go; a run that stops before its
    // method cancels `tripped` first, so the waiter can tell.
    let _guards = external.as_ref().map(|e| (e.tripped.clone().drop_guard(), e.entered.clone().drop_guard()));
    let run_start = Instant::now();
    let ExecuteOptions { timing, driver, signals } = options;
    let driver = driver.unwrap_or_else(|| {
        Arc::new(LiveDriver { plan: plan.clone(), seed: config.seed, margin: timing.deadline_margin })
    });
    let ctx = Arc::new(MethodContext::new(
        plan,
        driver.clone(),
        timing.clone(),
        run_start,
        interrupt.child_token(),
        config.progress.clone(),
    ));
    let mut outcome = Outcome { verdict: Verdict::Passed, ..Outcome::default() };

    // The budget gate comes before anything is touched: no proxy, probe or fault without budget left.
    if let Some(gate) = super::slo_gate::budget_gate(exp).await {
        super::slo_gate::note_gate(&ctx, &gate);
        if let Some(refusal) = gate.refusal {
            return stop_early(outcome, &ctx, refusal).await;
        }
    }
    // Proxies the experiment declares are created first: the steady state is checked through them.
    let created = match create_proxies(&ctx, exp).await {
        Ok(created) => created,
        Err(e) => return stop_early(outcome, &ctx, format!("infrastructure: {e}")).await,
    };
    outcome.probes_before = preflight(&ctx, exp).await;
    if let Some(bad) = outcome.probes_before.iter().find(|p| !p.ok) {
        let reason = format!("not steady before the method: probe {}: {}", bad.name, bad.detail);
        delete_proxies(&ctx, created).await;
        return stop_early(outcome, &ctx, reason).await;
    }
    let started = match signals {
        Some(logs) => Ok(Collection::given(logs)),
        None => Collection::start(exp, &ctx),
    };
    let mut collection = match started {
        Ok(collection) => collection,
        Err(reason) => {
            delete_proxies(&ctx, created).await;
            return stop_early(outcome, &ctx, reason).await;
        }
    };

    let baseline = baseline(&ctx, exp).await;
    let method_start = run_start.elapsed();
    // The expected alerts are watched from the method on; times are measured from the first fault.
    let mut detection = exp.detection.as_ref().and_then(|d| super::detection::Watch::start(d, ctx.clone()));
    let mut method_result = method(&ctx, exp, &collection.logs, baseline, config, external.as_ref()).await;
    // Every exit path reverts: normal end, guardrail trip, error, interrupt.
    ctx.revert_all().await;
    let method_end = run_start.elapsed();
    outcome.method_window = Some((method_start, method_end));

    if method_result.is_ok() {
        recovery(&ctx, exp).await;
        // An interrupt (or a late guardrail trip) during the recovery window still makes the run
        // inconclusive.
        if ctx.abort.is_cancelled() {
            method_result = Err(ctx.abort_reason());
        }
    }
    // Past the recovery window, the run waits only while an expected alert has not fired and `within` has not
    // elapsed since the injection (an interrupt cuts it short: the run is then inconclusive).
    if let Some(watch) = &mut detection
        && matches!(method_result, Ok(()) | Err(Abort::Guardrail(_)))
    {
        watch.settled(&ctx, &interrupt).await;
        if method_result.is_ok() && interrupt.is_cancelled() {
            method_result = Err(Abort::Interrupted);
        }
    }
    let detected = match detection {
        Some(watch) => Some(watch.finish(&ctx).await),
        None => None,
    };
    collection.stop().await;
    let end = run_start.elapsed();
    let window = Windows { baseline_start: baseline.0, method_start, method_end, end };
    (outcome.slos, outcome.recovery) = judge_slos(&ctx, exp, &collection, &window);

    if !matches!(method_result, Err(Abort::Interrupted)) {
        outcome.probes_after = steady_state_again(&ctx, exp).await;
    }
    rollbacks(&ctx, exp, config, driver, timing).await;
    delete_proxies(&ctx, created).await;

    let lost = lock(&ctx.lost).clone();
    let revert_failures = lock(&ctx.revert_failures).clone();
    (outcome.verdict, outcome.reasons) = judge(&Observed {
        method: &method_result,
        slos: &outcome.slos,
        probes_after: &outcome.probes_after,
        lost: &lost,
        revert_failures: &revert_failures,
        judges_something: !exp.slos.is_empty() || !exp.steady_state.is_empty() || exp.detection.is_some(),
        fire_and_forget: exp.fire_and_forget,
        detection: detected.as_ref(),
    });
    outcome.detection = detected.map(|d| d.outcomes).unwrap_or_default();
    outcome.saturation = collection.saturation.iter().map(|(k, s)| (k.clone(), lock(s).clone())).collect();
    outcome.logs = collection.logs;
    outcome.duration = end;
    finish(outcome, &ctx).await
}

/// A run that stops before its method: inconclusive for `reason`, everything reverted.
async fn stop_early(mut outcome: Outcome, ctx: &MethodContext, reason: String) -> Outcome {
    outcome.verdict = Verdict::Inconclusive;
    outcome.reasons.push(reason);
    finish(outcome, ctx).await
}

/// Creates the proxies the experiment declares, noting what was done about stale ones.
async fn create_proxies(
    ctx: &MethodContext,
    exp: &Checked,
) -> Result<super::run_proxies::CreatedProxies, EngineError> {
    let mut stale = Vec::new();
    let created = ctx.plan.create_proxies(&exp.title, &mut stale).await;
    for note in stale {
        ctx.note(EventKind::Note, "proxies", note, None);
    }
    created
}

/// Preflight: the steady state must hold before anything is injected.
async fn preflight(ctx: &MethodContext, exp: &Checked) -> Vec<ProbeResult> {
    ctx.note(EventKind::Phase, "preflight", "steady-state probes".into(), None);
    probe_all(ctx, exp).await
}

/// The steady-state probes once more, after the method.
async fn steady_state_again(ctx: &MethodContext, exp: &Checked) -> Vec<ProbeResult> {
    ctx.note(EventKind::Phase, "steady state", "probes after the method".into(), None);
    probe_all(ctx, exp).await
}

async fn probe_all(ctx: &MethodContext, exp: &Checked) -> Vec<ProbeResult> {
    let mut results = Vec::new();
    for probe in &exp.steady_state {
        let result = probes::run_with(probe, ctx.plan.probe_agents()).await;
        ctx.note(EventKind::Probe, &result.name, result.detail.clone(), Some(result.ok));
        results.push(result);
    }
    results
}

/// The baseline window: signal before any fault. Returns it as planned, `(start, start + length)`: it holds
/// exactly `rate × baseline` due requests, where the measured one is a timer's lateness longer.
async fn baseline(ctx: &MethodContext, exp: &Checked) -> (Duration, Duration) {
    let baseline = exp.baseline.map_or(DEFAULT_BASELINE, |d| d.0);
    ctx.note(
        EventKind::Phase,
        "baseline",
        format!("{} s of signal before any fault", baseline.as_secs_f64()),
        None,
    );
    let start = ctx.run_start.elapsed();
    interruptible_sleep(ctx, baseline).await;
    (start, start + baseline)
}

/// The method's steps, watched by the guardrails every second. The steps run in their own task, so a panic in
/// one becomes an error here and the reverts after it still run.
async fn method(
    ctx: &Arc<MethodContext>,
    exp: &Checked,
    logs: &Logs,
    baseline: (Duration, Duration),
    config: &RunConfig,
    external: Option<&ExternalMethod>,
) -> Result<(), Abort> {
    if ctx.abort.is_cancelled() {
        return Err(Abort::Interrupted);
    }
    let method_start = ctx.run_start.elapsed();
    ctx.note(EventKind::Phase, "method", format!("{} steps", exp.method.len()), None);
    let guard = tokio::spawn(super::watch::guardrails(
        ctx.clone(),
        exp.clone(),
        logs.clone(),
        baseline,
        method_start,
        config.progress.clone(),
    ));
    let burn = tokio::spawn(super::slo_gate::burn_guardrail(ctx.clone(), exp.clone()));
    let (steps_ctx, steps) = (ctx.clone(), exp.method().to_vec());
    let mut result = match tokio::spawn(async move { run_steps(&steps_ctx, &steps).await }).await {
        Ok(result) => result,
        Err(e) => {
            let abort = Abort::Error(EngineError::StepPanicked(e.to_string()));
            ctx.trip(abort.clone());
            Err(abort)
        }
    };
    if let Some(external) = external {
        external.entered.cancel();
        if result.is_ok() {
            tokio::select! {
                _ = external.ended.cancelled() => {}
                _ = ctx.abort.cancelled() => {}
            }
        }
        if result.is_ok() && ctx.abort.is_cancelled() && !external.ended.is_cancelled() {
            result = Err(ctx.abort_reason());
        }
        if result.is_err() {
            external.tripped.cancel();
        }
    }
    guard.abort();
    burn.abort();
    result
}

/// The recovery window: signals keep flowing; time to recover is measured afterwards.
async fn recovery(ctx: &MethodContext, exp: &Checked) {
    let recovery = exp.recovery.map_or(DEFAULT_RECOVERY, |d| d.0);
    ctx.note(
        EventKind::Phase,
        "recovery",
        format!("{} s to come back within SLO", recovery.as_secs_f64()),
        None,
    );
    interruptible_sleep(ctx, recovery).await;
}

/// The run's windows on its own clock.
struct Windows {
    baseline_start: Duration,
    method_start: Duration,
    method_end: Duration,
    end: Duration,
}

/// Judges every SLO over the method window, and the time each event-ratio SLO took to recover, counted from
/// the moment the last fault ended: its revert, or its injection for faults with nothing to revert (a kill);
/// without faults, from the end of the method.
fn judge_slos(
    ctx: &MethodContext,
    exp: &Checked,
    collection: &Collection,
    w: &Windows,
) -> (Vec<crate::slo::SloResult>, Vec<(String, Option<Duration>)>) {
    let fault_end = lock(&ctx.timeline)
        .iter()
        .rev()
        .find(|e| matches!(e.kind, EventKind::FaultReverted | EventKind::FaultInjected) && e.ok == Some(true))
        .map_or(w.method_end, |e| e.at)
        .min(w.method_end);
    let window = crate::slo::Phase::new("method", w.method_start, w.method_end);
    let baseline_len = w.method_start.saturating_sub(w.baseline_start).as_secs_f64();
    let (mut slos, mut recovery) = (Vec::new(), Vec::new());
    for slo in &exp.slos {
        let key = source_key(slo);
        let log = collection.logs.get(&key);
        let events: Vec<Event> = log.map(|l| l.between(w.method_start, w.method_end)).unwrap_or_default();
        // Served events: the baseline rate traffic is compared with.
        let baseline_events = log
            .map(|l| l.between(w.baseline_start, w.method_start).iter().filter(|e| e.ok).count())
            .unwrap_or(0);
        let saturation = collection.saturation.get(&key).map(|s| lock(s).clone()).unwrap_or_default();
        let mut observed = crate::slo::Observations::events(&events).with_saturation(&saturation);
        if baseline_len > 0.0 {
            observed = observed.with_baseline_rate(baseline_events as f64 / baseline_len);
        }
        slos.push(crate::slo::evaluate(slo, &observed, &window));
        if crate::slo::is_event_ratio(slo.signal) {
            let after: Vec<Event> = log.map(|l| l.between(fault_end, w.end)).unwrap_or_default();
            recovery.push((slo.name.clone(), crate::slo::time_to_recover(slo, &after, fault_end)));
        }
    }
    (slos, recovery)
}

/// The rollback steps, which run even after an abort (in their own context) and stop only on a second
/// interrupt (`config.stop_rollbacks`); what they apply is reverted too.
async fn rollbacks(
    ctx: &MethodContext,
    exp: &Checked,
    config: &RunConfig,
    driver: Arc<dyn FaultDriver>,
    timing: Timing,
) {
    if exp.rollbacks.is_empty() {
        return;
    }
    ctx.note(EventKind::Phase, "rollbacks", format!("{} steps", exp.rollbacks.len()), None);
    let rollback_ctx = MethodContext::new(
        ctx.plan.clone(),
        driver,
        timing,
        ctx.run_start,
        config.stop_rollbacks.child_token(),
        config.progress.clone(),
    );
    let _ = run_steps(&rollback_ctx, exp.rollbacks()).await;
    rollback_ctx.revert_all().await;
    lock(&ctx.timeline).append(&mut lock(&rollback_ctx.timeline));
    lock(&ctx.lost).append(&mut lock(&rollback_ctx.lost));
    // A rollback fault that could not be reverted is reported like a method fault's.
    lock(&ctx.revert_failures).append(&mut lock(&rollback_ctx.revert_failures));
}

async fn finish(mut outcome: Outcome, ctx: &MethodContext) -> Outcome {
    ctx.revert_all().await;
    outcome.timeline = lock(&ctx.timeline).clone();
    if outcome.duration.is_zero() {
        outcome.duration = ctx.run_start.elapsed();
    }
    outcome
}

/// Deletes the proxies the run created (their toxics go with them).
async fn delete_proxies(ctx: &MethodContext, created: super::run_proxies::CreatedProxies) {
    for (name, e) in created.delete().await {
        ctx.note(EventKind::Note, &name, e, Some(false));
    }
}

async fn interruptible_sleep(ctx: &MethodContext, d: Duration) {
    if d.is_zero() {
        return;
    }
    tokio::select! {
        _ = ctx.abort.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
