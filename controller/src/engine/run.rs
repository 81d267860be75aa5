//! `execute`: one experiment from plan to verdict, with every exit path reverting what it applied.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    Abort, DEFAULT_BASELINE, DEFAULT_RECOVERY, EngineError, EventKind, FaultDriver, LiveDriver, Logs,
    MethodContext, Plan, RunConfig, TimelineEvent, Timing, host, lock, run_steps, sources,
};
use crate::experiment::SourceKind;
use crate::experiment::model::{Experiment, Slo};
use crate::load::LoadGenerator;
use crate::probes::{self, ProbeResult};
use crate::signals::{Event, EventLog};

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
    pub duration: Duration,
    pub method_window: Option<(Duration, Duration)>,
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

/// How [`execute_with`] runs beyond the run's own configuration: the engine's timing and the fault driver.
#[derive(Clone, Default)]
pub struct ExecuteOptions {
    pub timing: Timing,
    /// Applies the faults; the live driver over the plan when `None`.
    pub driver: Option<Arc<dyn FaultDriver>>,
}

/// Runs `exp` (already validated) against a resolved `plan`. `interrupt` is cancelled by SIGINT/SIGTERM.
pub async fn execute(
    exp: &Experiment,
    plan: Plan,
    config: &RunConfig,
    interrupt: CancellationToken,
) -> Outcome {
    execute_with(exp, plan, config, interrupt, ExecuteOptions::default()).await
}

/// [`execute`] with the engine's timing and fault driver given.
pub async fn execute_with(
    exp: &Experiment,
    plan: Plan,
    config: &RunConfig,
    interrupt: CancellationToken,
    options: ExecuteOptions,
) -> Outcome {
    let run_start = Instant::now();
    let ExecuteOptions { timing, driver } = options;
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
    let mut outcome = Outcome {
        verdict: Verdict::Passed,
        reasons: Vec::new(),
        timeline: Vec::new(),
        probes_before: Vec::new(),
        probes_after: Vec::new(),
        slos: Vec::new(),
        recovery: Vec::new(),
        logs: BTreeMap::new(),
        duration: Duration::ZERO,
        method_window: None,
    };

    // Proxies the experiment declares are created first: the steady state is checked through them.
    let mut stale = Vec::new();
    let created = ctx.plan.create_proxies(&exp.title, &mut stale).await;
    for note in stale {
        ctx.note(EventKind::Note, "proxies", note, None);
    }
    let created = match created {
        Ok(created) => created,
        Err(e) => {
            outcome.verdict = Verdict::Inconclusive;
            outcome.reasons.push(format!("infrastructure: {e}"));
            return finish(outcome, &ctx).await;
        }
    };
    // Preflight: the steady state must hold before anything is injected.
    ctx.note(EventKind::Phase, "preflight", "steady-state probes".into(), None);
    for probe in &exp.steady_state {
        let result = probes::run_with(probe, ctx.plan.probe_agents()).await;
        ctx.note(EventKind::Probe, &result.name, result.detail.clone(), Some(result.ok));
        outcome.probes_before.push(result);
    }
    if let Some(bad) = outcome.probes_before.iter().find(|p| !p.ok) {
        outcome.verdict = Verdict::Inconclusive;
        outcome.reasons.push(format!("not steady before the method: probe {}: {}", bad.name, bad.detail));
        delete_proxies(&ctx, created).await;
        return finish(outcome, &ctx).await;
    }

    // Signals: load generators and proxy stats, one event log per SLO source.
    let stop_signals = CancellationToken::new();
    let mut logs: Logs = BTreeMap::new();
    let mut generators = Vec::new();
    for load in &exp.load {
        let log = Arc::new(EventLog::default());
        logs.insert(format!("load:{}", load.name), log.clone());
        match LoadGenerator::start(load, run_start, log, stop_signals.clone()) {
            Ok(handle) => generators.push(handle),
            Err(e) => {
                stop_signals.cancel();
                outcome.verdict = Verdict::Inconclusive;
                outcome.reasons.push(format!("load {}: {e}", load.name));
                delete_proxies(&ctx, created).await;
                return finish(outcome, &ctx).await;
            }
        }
    }
    let mut pollers = Vec::new();
    for slo in &exp.slos {
        if let Some(proxy_target) = &slo.source.proxy {
            let key = format!("proxy:{proxy_target}");
            if logs.contains_key(&key) {
                continue;
            }
            let log = Arc::new(EventLog::default());
            logs.insert(key, log.clone());
            if let Some(super::ResolvedTarget::Proxy { client, name, .. }) =
                ctx.plan.targets.get(proxy_target)
            {
                // Every latency threshold judged on this proxy becomes a histogram bound (http proxies).
                let thresholds: Vec<std::time::Duration> = exp
                    .slos
                    .iter()
                    .filter(|s| s.source.proxy.as_deref() == Some(proxy_target.as_str()))
                    .filter(|s| s.signal == crate::experiment::model::Signal::Latency)
                    .filter_map(|s| crate::slo::latency_target(s).ok().map(|(_, t)| t))
                    .collect();
                pollers.push(tokio::spawn(sources::poll_proxy(
                    (**client).clone(),
                    name.clone(),
                    thresholds,
                    run_start,
                    log,
                    stop_signals.clone(),
                )));
            }
        }
        if let Some(source) = &slo.source.prometheus
            && !logs.contains_key(&source_key(slo))
        {
            let log = Arc::new(EventLog::default());
            logs.insert(source_key(slo), log.clone());
            let (source, stop) = (source.clone(), stop_signals.clone());
            pollers.push(tokio::spawn(async move {
                super::prometheus::poll_prometheus(&source, run_start, log, stop).await
            }));
        }
    }

    // Saturation: one sampler per host metric, and per process target and metric, the SLOs name; its samples
    // are judged like events below.
    let mut saturation_samples: BTreeMap<String, Arc<Mutex<Vec<crate::slo::SaturationSample>>>> =
        BTreeMap::new();
    for slo in &exp.slos {
        let key = source_key(slo);
        if saturation_samples.contains_key(&key) {
            continue;
        }
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = stop_signals.clone();
        let poller = match slo.source.kind() {
            Ok(SourceKind::Host(metric)) => {
                tokio::spawn(host::sample_host(metric, run_start, samples.clone(), stop))
            }
            Ok(SourceKind::Agents { target, metric }) => {
                let (Some(super::ResolvedTarget::Hosts { agents, .. }), Some(remote)) =
                    (ctx.plan.targets.get(target), &ctx.plan.remote)
                else {
                    continue;
                };
                tokio::spawn(host::sample_agents(
                    remote.hosts.clone(),
                    agents.clone(),
                    metric,
                    run_start,
                    samples.clone(),
                    stop,
                ))
            }
            Ok(SourceKind::Processes { target, metric }) => {
                // Validation made it a process target; unresolved, the SLO has no samples (inconclusive).
                let Some(super::ResolvedTarget::Processes { selector, .. }) = ctx.plan.targets.get(target)
                else {
                    continue;
                };
                tokio::spawn(host::sample_processes(
                    target.to_string(),
                    selector.clone(),
                    metric,
                    run_start,
                    samples.clone(),
                    stop,
                ))
            }
            _ => continue,
        };
        saturation_samples.insert(key, samples);
        pollers.push(poller);
    }

    // Baseline.
    let baseline = exp.baseline.map_or(DEFAULT_BASELINE, |d| d.0);
    ctx.note(
        EventKind::Phase,
        "baseline",
        format!("{} s of signal before any fault", baseline.as_secs_f64()),
        None,
    );
    let baseline_start = run_start.elapsed();
    interruptible_sleep(&ctx, baseline).await;

    // Method, watched by the guardrails every second.
    let method_start = run_start.elapsed();
    let mut method_result = if ctx.abort.is_cancelled() {
        Err(Abort::Interrupted)
    } else {
        ctx.note(EventKind::Phase, "method", format!("{} steps", exp.method.len()), None);
        let guard = tokio::spawn(guardrails(
            ctx.clone(),
            exp.clone(),
            logs.clone(),
            // The planned window, not the measured one: it holds exactly `rate × baseline` due requests,
            // where the measured one is a timer's lateness longer.
            (baseline_start, baseline_start + baseline),
            method_start,
            config.progress.clone(),
        ));
        // The steps run in their own task, so a panic in one becomes an error here and the reverts below
        // still run.
        let (steps_ctx, steps) = (ctx.clone(), exp.method.clone());
        let result = match tokio::spawn(async move { run_steps(&steps_ctx, &steps).await }).await {
            Ok(result) => result,
            Err(e) => {
                let abort = Abort::Error(EngineError::StepPanicked(e.to_string()));
                ctx.trip(abort.clone());
                Err(abort)
            }
        };
        guard.abort();
        result
    };
    // Every exit path reverts: normal end, guardrail trip, error, interrupt.
    ctx.revert_all().await;
    let method_end = run_start.elapsed();
    outcome.method_window = Some((method_start, method_end));

    // Recovery window: signals keep flowing; time to recover is measured afterwards.
    if method_result.is_ok() {
        let recovery = exp.recovery.map_or(DEFAULT_RECOVERY, |d| d.0);
        ctx.note(
            EventKind::Phase,
            "recovery",
            format!("{} s to come back within SLO", recovery.as_secs_f64()),
            None,
        );
        interruptible_sleep(&ctx, recovery).await;
    }
    // An interrupt (or a late guardrail trip) during the recovery window still makes the run inconclusive.
    if method_result.is_ok() && ctx.abort.is_cancelled() {
        method_result = Err(ctx.abort_reason());
    }
    stop_signals.cancel();
    for g in generators {
        let _ = g.stop().await;
    }
    for p in pollers {
        let _ = p.await;
    }
    let end = run_start.elapsed();
    // Time to recover counts from the moment the last fault ended: its revert, or its injection for faults
    // with nothing to revert (a kill); without faults, from the end of the method.
    let fault_end = lock(&ctx.timeline)
        .iter()
        .rev()
        .find(|e| matches!(e.kind, EventKind::FaultReverted | EventKind::FaultInjected) && e.ok == Some(true))
        .map_or(method_end, |e| e.at)
        .min(method_end);

    // Judge the SLOs over the method window; time to recover from the end of the last fault.
    let window = crate::slo::Phase::new("method", method_start, method_end);
    let baseline_len = method_start.saturating_sub(baseline_start).as_secs_f64();
    for slo in &exp.slos {
        let key = source_key(slo);
        let log = logs.get(&key);
        let events: Vec<Event> = log.map(|l| l.between(method_start, method_end)).unwrap_or_default();
        // Served events: the baseline rate traffic is compared with.
        let baseline_events =
            log.map(|l| l.between(baseline_start, method_start).iter().filter(|e| e.ok).count()).unwrap_or(0);
        let saturation =
            saturation_samples.get(&key).and_then(|s| s.lock().ok().map(|s| s.clone())).unwrap_or_default();
        let mut observed = crate::slo::Observations::events(&events).with_saturation(&saturation);
        if baseline_len > 0.0 {
            observed = observed.with_baseline_rate(baseline_events as f64 / baseline_len);
        }
        outcome.slos.push(crate::slo::evaluate(slo, &observed, &window));
        if crate::slo::is_event_ratio(slo.signal) {
            let after: Vec<Event> = log.map(|l| l.between(fault_end, end)).unwrap_or_default();
            let ttr = crate::slo::time_to_recover(slo, &after, fault_end);
            outcome.recovery.push((slo.name.clone(), ttr));
        }
    }

    // Steady state again, then rollbacks.
    if !matches!(method_result, Err(Abort::Interrupted)) {
        ctx.note(EventKind::Phase, "steady state", "probes after the method".into(), None);
        for probe in &exp.steady_state {
            let result = probes::run_with(probe, ctx.plan.probe_agents()).await;
            ctx.note(EventKind::Probe, &result.name, result.detail.clone(), Some(result.ok));
            outcome.probes_after.push(result);
        }
    }
    if !exp.rollbacks.is_empty() {
        ctx.note(EventKind::Phase, "rollbacks", format!("{} steps", exp.rollbacks.len()), None);
        // Rollbacks run even after an abort: give them their own context.
        let rollback_ctx = MethodContext::new(
            ctx.plan.clone(),
            driver,
            timing,
            run_start,
            config.stop_rollbacks.child_token(),
            config.progress.clone(),
        );
        let _ = run_steps(&rollback_ctx, &exp.rollbacks).await;
        rollback_ctx.revert_all().await;
        lock(&ctx.timeline).append(&mut lock(&rollback_ctx.timeline));
        lock(&ctx.lost).append(&mut lock(&rollback_ctx.lost));
    }
    delete_proxies(&ctx, created).await;

    // Verdict.
    match &method_result {
        Err(Abort::Interrupted) => {
            outcome.verdict = Verdict::Inconclusive;
            outcome.reasons.push("interrupted: every fault in force was reverted".into());
        }
        Err(Abort::Error(e)) => {
            outcome.verdict = Verdict::Inconclusive;
            outcome.reasons.push(format!("infrastructure: {e}"));
        }
        Err(Abort::Guardrail(reason)) => {
            outcome.verdict = Verdict::Failed;
            outcome.reasons.push(format!("guardrail aborted the run: {reason}"));
        }
        Ok(()) => {}
    }
    if method_result.is_ok() || matches!(method_result, Err(Abort::Guardrail(_))) {
        for slo in &outcome.slos {
            match slo.passed {
                Some(true) => {}
                Some(false) => {
                    outcome.verdict = Verdict::Failed;
                    outcome.reasons.push(slo.reason.clone());
                }
                None => {
                    if outcome.verdict == Verdict::Passed {
                        outcome.verdict = Verdict::Inconclusive;
                    }
                    outcome.reasons.push(slo.reason.clone());
                }
            }
        }
        for probe in outcome.probes_after.iter().filter(|p| !p.ok) {
            outcome.verdict = Verdict::Failed;
            outcome.reasons.push(format!(
                "steady state broken after the method: probe {}: {}",
                probe.name, probe.detail
            ));
        }
    }
    // A fault lost mid-run (expired, its agent gone) means the method did not run as planned: neither a pass
    // nor a failure can be pinned on it (DESIGN §7.7). The SLO reasons above stay, after the loss.
    let lost = lock(&ctx.lost).clone();
    if !lost.is_empty() {
        outcome.verdict = Verdict::Inconclusive;
        outcome.reasons.splice(0..0, lost);
    }
    let failures = lock(&ctx.revert_failures).clone();
    if !failures.is_empty() {
        if outcome.verdict == Verdict::Passed {
            outcome.verdict = Verdict::Inconclusive;
        }
        outcome.reasons.extend(failures.into_iter().map(|f| format!("infrastructure: {f}")));
    }
    if outcome.verdict == Verdict::Passed {
        for slo in &outcome.slos {
            outcome.reasons.push(slo.reason.clone());
        }
    }
    judged_nothing(exp, &mut outcome);
    outcome.logs = logs;
    outcome.duration = end;
    finish(outcome, &ctx).await
}

/// A run with no SLO and no steady-state probe checked nothing of its hypothesis: it cannot pass, unless the
/// file opted in to a fire-and-forget run (which then passes on its faults alone: every one applied and
/// reverted, or the verdict is already inconclusive).
fn judged_nothing(exp: &Experiment, outcome: &mut Outcome) {
    if !exp.slos.is_empty() || !exp.steady_state.is_empty() {
        return;
    }
    if exp.fire_and_forget {
        outcome.reasons.push(FIRE_AND_FORGET.into());
    } else if outcome.verdict == Verdict::Passed {
        outcome.verdict = Verdict::Inconclusive;
        outcome.reasons.push(NOTHING_JUDGED.into());
    }
}

/// The reason of a run that judged nothing without opting in to it.
pub const NOTHING_JUDGED: &str = "nothing was judged: no SLO and no steady-state probe";
/// The reason of a fire-and-forget run (`fire_and_forget: true`).
pub const FIRE_AND_FORGET: &str = "fire and forget: nothing judged";

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

/// Every second: evaluates the guardrails (and reports progress); a trip aborts the method.
///
/// Each errors or latency SLO is guarded on its own source with its own objective and threshold
/// ([`guards`]); the first to trip aborts the run.
async fn guardrails(
    ctx: Arc<MethodContext>,
    exp: Experiment,
    logs: Logs,
    baseline: (Duration, Duration),
    method_start: Duration,
    progress: Option<super::Progress>,
) {
    let mut state = Some(guards(&exp, method_start));
    let exp = Arc::new(exp);
    let logs = Arc::new(logs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut baseline_known = false;
    loop {
        tick.tick().await;
        let now = ctx.run_start.elapsed();
        if !baseline_known && let Some(guards) = state.as_mut() {
            // Counted at the first tick rather than at the method's start: by now every request due in the
            // baseline has been registered, answered or not.
            baseline_known = true;
            for guard in guards.iter_mut() {
                let rate = logs.get(&guard.source).and_then(|l| baseline_rate(l, baseline.0, baseline.1));
                guard.state.set_baseline_rate(rate);
            }
        }
        let step = current_step(&ctx);
        // Judging 100 SLOs over a minute of 10k events/s is CPU work: keep it off the runtime's workers, so the
        // load generator's timing (which the SLOs judge) is not disturbed by the judging.
        let (exp, logs, mut taken) = (exp.clone(), logs.clone(), state.take());
        let Ok((returned, trip, line)) = tokio::task::spawn_blocking(move || {
            let (trip, line) = match taken.as_mut() {
                Some(guards) => watch_tick(&exp, &logs, guards, &step, method_start, now),
                None => (None, String::new()),
            };
            (taken, trip, line)
        })
        .await
        else {
            // A judge that cannot judge must not leave the method unguarded.
            ctx.note(EventKind::Guardrail, "guardrail", "guardrail evaluation failed".into(), Some(false));
            ctx.trip(Abort::Error(EngineError::GuardrailFailed));
            return;
        };
        state = returned;
        if ctx.abort.is_cancelled() {
            // Interrupted meanwhile: the interrupt, not a late trip, is the reason.
            return;
        }
        if let Some(trip) = trip {
            ctx.note(EventKind::Guardrail, "guardrail", trip.reason.clone(), Some(false));
            ctx.trip(Abort::Guardrail(trip.reason));
            return;
        }
        if let Some(progress) = &progress {
            progress(line);
        }
    }
}

/// The guardrails of a run: one per errors or latency SLO, on its own source (see [`Guard`]).
pub fn guards(exp: &Experiment, method_start: Duration) -> Vec<Guard> {
    let limits = exp.guardrails.clone().unwrap_or_default();
    exp.slos
        .iter()
        .filter_map(|slo| {
            let mut basis = crate::slo::GuardrailBasis::for_slo(slo)?;
            let source = source_key(slo);
            basis.start = method_start;
            basis.planned = Some(planned_length(&exp.method));
            // The source's request timeout, when it is a load (counted sources have no requests waiting).
            basis.request_timeout = exp
                .load
                .iter()
                .find(|l| source == format!("load:{}", l.name))
                .map(|l| l.timeout.map_or(crate::http::DEFAULT_TIMEOUT, |t| t.0));
            Some(Guard { source, state: crate::slo::GuardrailState::new(&limits, basis) })
        })
        .collect()
}

/// The guardrails of one errors or latency SLO, and the key of the source they watch.
#[derive(Clone, Debug)]
pub struct Guard {
    pub source: String,
    pub state: crate::slo::GuardrailState,
}

/// One second of the engine's watch over a running method: each source's events since the method started are
/// copied once (the lock is held only for the copy, however many SLOs read them), each SLO's guardrails are
/// checked on what its source knows now (`EventLog::watch`: answers as they came, requests still waiting; one
/// copy per source), the first trip in SLO order is returned, and the progress line is rendered, e.g.
/// `[  12.0s] slow payments (18s left) | availability 99.80% (objective 99.5%) ok | fast 97.10% (objective 99%) MISS`.
pub fn watch_tick(
    exp: &Experiment,
    logs: &Logs,
    guards: &mut [Guard],
    step: &str,
    method_start: Duration,
    now: Duration,
) -> (Option<crate::slo::Trip>, String) {
    let window_events: BTreeMap<&str, Vec<Event>> =
        logs.iter().map(|(key, log)| (key.as_str(), log.between(method_start, now))).collect();
    // The guardrails see what is known now (answers as they come, requests still waiting), not what was sent.
    // One watch per source, and one classification of its events per (source, threshold, wait limit): a
    // hundred SLOs on one source must not copy and classify its events a hundred times a second.
    let mut watches: BTreeMap<&str, crate::signals::Watch> = BTreeMap::new();
    type SeenKey<'a> = (&'a str, (Option<Duration>, Option<Duration>));
    let mut seen: BTreeMap<SeenKey<'_>, Vec<crate::slo::Seen>> = BTreeMap::new();
    let mut trip = None;
    for guard in guards.iter_mut() {
        let Some(log) = logs.get(&guard.source) else { continue };
        let watch = watches.entry(guard.source.as_str()).or_insert_with(|| log.watch(method_start));
        let events = seen
            .entry((guard.source.as_str(), guard.state.seen_key()))
            .or_insert_with(|| guard.state.seen(now, watch));
        trip = guard.state.check_seen(now, watch, events);
        if trip.is_some() {
            break;
        }
    }
    let window = crate::slo::Phase::new("method", method_start, now);
    let slos: Vec<String> = exp
        .slos
        .iter()
        .filter(|s| crate::slo::is_event_ratio(s.signal))
        .map(|slo| {
            let events = window_events.get(source_key(slo).as_str()).map_or(&[][..], Vec::as_slice);
            let r = crate::slo::evaluate_events(slo, events, &window);
            let mark = match r.passed {
                Some(true) => "ok",
                Some(false) => "MISS",
                None => "…",
            };
            format!("{} {:.2}% (objective {}%) {mark}", slo.name, r.observed * 100.0, r.objective * 100.0)
        })
        .collect();
    (trip, format!("[{:>6.1}s] {step} | {}", now.as_secs_f64(), slos.join(" | ")))
}

/// The baseline's rate in events per second: requests sent in `[from, to)` for a log of requests (answered
/// or not: a slow target's answers must not lower it), good events for a log of counted events.
fn baseline_rate(log: &EventLog, from: Duration, to: Duration) -> Option<f64> {
    let len = to.saturating_sub(from).as_secs_f64();
    if len <= 0.0 {
        return None;
    }
    let count = log
        .sent_between(from, to)
        .unwrap_or_else(|| log.between(from, to).iter().filter(|e| e.ok).count() as u64);
    Some(count as f64 / len)
}

/// The step running now, with the time it has left.
fn current_step(ctx: &MethodContext) -> String {
    match lock(&ctx.current).clone() {
        Some((name, started, Some(d))) => {
            format!("{name} ({:.0}s left)", d.saturating_sub(started.elapsed()).as_secs_f64())
        }
        Some((name, _, None)) => name,
        None => "starting".into(),
    }
}

/// The method's planned length: waits and fault durations, parallel groups by their longest branch.
fn planned_length(steps: &[crate::experiment::model::Step]) -> Duration {
    steps
        .iter()
        .map(|s| {
            if let Some(w) = s.wait {
                w.0
            } else if let Some(group) = &s.parallel {
                group.iter().map(|g| planned_length(std::slice::from_ref(g))).max().unwrap_or_default()
            } else {
                s.duration.map(|d| d.0).unwrap_or_default()
            }
        })
        .sum()
}

/// The journal of a run: what the reports (JSON, JUnit, Markdown) are made from.
pub fn journal(
    exp: &Experiment,
    config: &RunConfig,
    outcome: &Outcome,
    started: std::time::SystemTime,
) -> crate::report::Journal {
    use crate::report::{
        self, ExperimentInfo, Journal, ProbeOutcome, ProbePhase, RecoveryOutcome, TimelineEntry,
    };
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let probes = |phase: ProbePhase, list: &[ProbeResult]| -> Vec<ProbeOutcome> {
        list.iter()
            .map(|p| ProbeOutcome {
                name: p.name.clone(),
                phase,
                ok: p.ok,
                detail: p.detail.clone(),
                elapsed_ms: ms(p.elapsed),
            })
            .collect()
    };
    let mut all_probes = probes(ProbePhase::Before, &outcome.probes_before);
    all_probes.extend(probes(ProbePhase::After, &outcome.probes_after));
    let mut signals = Vec::new();
    for (source, log) in &outcome.logs {
        let events = log.between(Duration::ZERO, outcome.duration + Duration::from_secs(1));
        signals.extend(report::signal_samples(
            source,
            &events,
            Duration::ZERO,
            outcome.duration,
            Duration::from_secs(1),
        ));
    }
    Journal {
        chaos_version: env!("CARGO_PKG_VERSION").to_string(),
        experiment: ExperimentInfo {
            title: exp.title.clone(),
            hypothesis: exp.hypothesis.clone(),
            file: Some(config.file.clone()),
        },
        seed: config.seed,
        started_at: report::format_rfc3339(started),
        duration_ms: ms(outcome.duration),
        verdict: outcome.verdict,
        reasons: outcome.reasons.clone(),
        timeline: outcome
            .timeline
            .iter()
            .map(|t| TimelineEntry {
                at_ms: ms(t.at),
                kind: t.kind.journal(),
                name: t.name.clone(),
                detail: t.detail.clone(),
                ok: t.ok,
            })
            .collect(),
        probes: all_probes,
        slos: outcome.slos.clone(),
        recovery: outcome
            .recovery
            .iter()
            .map(|(slo, ttr)| RecoveryOutcome { slo: slo.clone(), time_to_recover_ms: ttr.map(ms) })
            .collect(),
        signals,
    }
}
