//! The run lifecycle, DESIGN §4: validate (done by the parser) → plan (`--dry-run` stops here) → preflight
//! (steady state holds, targets reachable) → start load and signal collection → baseline → method steps (each
//! fault with a deadline) → recovery (time to recover measured) → steady state again → rollbacks → verdict.
//! SIGINT/SIGTERM (the `interrupt` token) and a guardrail trip take the same path: revert everything, then
//! report.

mod collect;
mod detection;
mod driver;
mod error;
mod faults;
mod host;
mod journal;
mod judge;
mod plan;
mod prometheus;
mod remote;
mod run;
pub mod run_proxies;
pub mod slo_gate;
mod sources;
mod timeline;
mod watch;

pub use detection::{Detected, firing_query};
pub use journal::journal;
pub use judge::{FIRE_AND_FORGET, NO_FAULT_TO_DETECT, NOTHING_JUDGED, Observed, judge};
pub use run::{ExecuteOptions, Outcome, Verdict, execute, execute_with, source_key};
pub(crate) use run::{ExternalMethod, execute_external};
pub use watch::{Guard, guards, watch_tick};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::deadline::DEADLINE_MARGIN;
pub use driver::{Applied, FaultDriver, LiveDriver};
pub use error::{EngineError, FaultError};
pub use faults::ActiveFault;
pub use plan::{CheckError, HostOptions, Plan, ResolvedTarget};
pub use remote::{AgentSample, ApplyRequest, BoxFuture, PodRef, Remote, RemoteError, RemoteHosts, Reverted};
pub use timeline::EventKind;

use crate::experiment::{CheckedKind, CheckedStep};
use crate::signals::EventLog;

/// Receives one line of live progress per second (the CLI prints it on stderr).
pub type Progress = Arc<dyn Fn(String) + Send + Sync>;

/// How a run is configured beyond the experiment file.
#[derive(Clone)]
pub struct RunConfig {
    /// Seeds every random choice (process selection; recorded in the journal).
    pub seed: u64,
    /// The experiment file, for the journal.
    pub file: String,
    /// Where live progress goes, if anywhere.
    pub progress: Option<Progress>,
    /// Cancelled by a second interrupt: stops the rollbacks, which the first interrupt lets run.
    pub stop_rollbacks: CancellationToken,
}

/// The engine's own timing: margins, deadlines and retries (the defaults are what `chaos run` uses; tests
/// shorten or lengthen them).
#[derive(Clone, Debug)]
pub struct Timing {
    /// Extra time each fault's own deadline (toxic TTL, agent lease) allows beyond its planned duration.
    pub deadline_margin: Duration,
    /// The longest a fault's apply may take: past it the step fails (inconclusive) and the fault's own
    /// deadline removes whatever the abandoned apply left.
    pub apply_timeout: Duration,
    /// How many times a revert is tried before it is reported as failed.
    pub revert_attempts: u32,
    /// How often a running fault step looks whether its fault was lost.
    pub loss_poll: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            deadline_margin: DEADLINE_MARGIN,
            apply_timeout: APPLY_TIMEOUT,
            revert_attempts: 3,
            loss_poll: Duration::from_millis(250),
        }
    }
}

/// The default [`Timing::apply_timeout`]: far above any real apply (a remote apply has its own shorter
/// request timeout), short enough that a hung one cannot hold a run for ever.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Default baseline window when the experiment sets none.
pub const DEFAULT_BASELINE: Duration = Duration::from_secs(2);
/// Default recovery window when the experiment sets none.
pub const DEFAULT_RECOVERY: Duration = Duration::from_secs(5);

/// Why the method stopped early.
#[derive(Clone, Debug, PartialEq)]
pub enum Abort {
    /// A guardrail tripped: the hypothesis was refuted (verdict failed).
    Guardrail(String),
    /// SIGINT/SIGTERM or a halt (verdict inconclusive).
    Interrupted,
    /// A fault could not be applied, or a step failed (verdict inconclusive).
    Error(EngineError),
}

/// Locks `m`, taking over a poisoned lock: a panic elsewhere must never lose a fault from the list of faults
/// to revert (every holder leaves the data whole: a push or a remove).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// State shared by the steps of a running method.
pub(crate) struct MethodContext {
    pub plan: Plan,
    /// Applies the steps' faults.
    pub driver: Arc<dyn FaultDriver>,
    pub timing: Timing,
    pub run_start: Instant,
    /// Faults in force, in application order, each with an id for targeted reverts.
    pub active: Mutex<Vec<(u64, Box<dyn ActiveFault>)>>,
    pub next_id: std::sync::atomic::AtomicU64,
    /// Cancelled on a guardrail trip or an interrupt; every wait in the method selects on it.
    pub abort: CancellationToken,
    pub abort_reason: Mutex<Option<Abort>>,
    pub timeline: Mutex<Vec<TimelineEvent>>,
    /// The step running now, for progress.
    pub current: Mutex<Option<(String, Instant, Option<Duration>)>>,
    /// Where milestones (phases, faults, probes, guardrail trips) are reported live.
    pub progress: Option<Progress>,
    /// Faults whose revert failed even after retries (their own deadline still removes them).
    pub revert_failures: Mutex<Vec<String>>,
    /// Faults found gone before their planned end (expired, their agent lost): the verdict cannot be a pass.
    pub lost: Mutex<Vec<String>>,
}

/// One entry of the run's timeline, in the engine's own terms (mapped to the journal by the caller).
#[derive(Clone, Debug)]
pub struct TimelineEvent {
    pub at: Duration,
    pub kind: EventKind,
    pub name: String,
    pub detail: String,
    pub ok: Option<bool>,
}

impl MethodContext {
    /// A context for one run of steps (the method, or the rollbacks) on `plan`, aborted by `abort`.
    pub fn new(
        plan: Plan,
        driver: Arc<dyn FaultDriver>,
        timing: Timing,
        run_start: Instant,
        abort: CancellationToken,
        progress: Option<Progress>,
    ) -> MethodContext {
        MethodContext {
            plan,
            driver,
            timing,
            run_start,
            active: Mutex::new(Vec::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
            abort,
            abort_reason: Mutex::new(None),
            timeline: Mutex::new(Vec::new()),
            current: Mutex::new(None),
            progress,
            revert_failures: Mutex::new(Vec::new()),
            lost: Mutex::new(Vec::new()),
        }
    }

    pub fn note(&self, kind: EventKind, name: &str, detail: String, ok: Option<bool>) {
        let at = self.run_start.elapsed();
        let kind_name = kind.as_str();
        tracing::info!(kind = kind_name, name, %detail, "{kind_name}");
        if let Some(progress) = &self.progress {
            let mark = match ok {
                Some(true) => " ok",
                Some(false) => " FAILED",
                None => "",
            };
            progress(format!(
                "[{:>6.1}s] {}: {name}: {detail}{mark}",
                at.as_secs_f64(),
                kind_name.replace('_', " ")
            ));
        }
        lock(&self.timeline).push(TimelineEvent { at, kind, name: name.to_string(), detail, ok });
    }

    pub fn trip(&self, abort: Abort) {
        lock(&self.abort_reason).get_or_insert(abort);
        self.abort.cancel();
    }

    /// Why the method was aborted (an interrupt when nothing more precise was recorded).
    pub fn abort_reason(&self) -> Abort {
        lock(&self.abort_reason).clone().unwrap_or(Abort::Interrupted)
    }

    fn push_active(&self, fault: Box<dyn ActiveFault>) -> u64 {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.active).push((id, fault));
        id
    }

    fn take_active(&self, id: u64) -> Option<Box<dyn ActiveFault>> {
        let mut active = lock(&self.active);
        let i = active.iter().position(|(a, _)| *a == id)?;
        Some(active.remove(i).1)
    }

    /// Reverts every fault still in force, newest first, each retried a few times. A fault that still cannot be
    /// reverted is recorded (the verdict says so) and does not stop the others.
    pub async fn revert_all(&self) {
        loop {
            let next = lock(&self.active).pop();
            let Some((_, fault)) = next else { return };
            let what = fault.describe();
            let mut last = Ok(Reverted::Done);
            for attempt in 0..self.timing.revert_attempts.max(1) {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                last = fault.revert().await;
                if last.is_ok() {
                    break;
                }
            }
            match last {
                Ok(Reverted::Done) => {
                    self.note(EventKind::FaultReverted, &what, "reverted".into(), Some(true))
                }
                Ok(Reverted::Lost(why)) => self.note_lost(&what, &what, &why),
                Err(e) => {
                    self.note(EventKind::FaultReverted, &what, format!("revert failed: {e}"), Some(false));
                    lock(&self.revert_failures).push(format!(
                        "{what} could not be reverted: {e} (its own deadline still removes it)"
                    ));
                }
            }
        }
    }

    /// A fault the revert found already gone: says so (never "reverted") and records it for the verdict.
    fn note_lost(&self, name: &str, what: &str, why: &str) {
        self.note(
            EventKind::FaultReverted,
            name,
            format!("{what}: not reverted, it was lost before its planned end: {why}"),
            Some(false),
        );
        lock(&self.lost).push(format!("fault lost before its planned end: {what}: {why}"));
    }

    /// [`MethodContext::wait`] for a fault's duration, looking every [`Timing::loss_poll`] whether fault `id` is lost
    /// (expired, its agent gone), so the progress says so when it happens rather than at the step's end.
    async fn wait_watching(&self, d: Duration, id: u64) -> bool {
        let end = Instant::now() + d;
        let mut told = false;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return !self.abort.is_cancelled();
            }
            if !self.wait(left.min(self.timing.loss_poll)).await {
                return false;
            }
            if told {
                continue;
            }
            let lost = {
                let active = lock(&self.active);
                active
                    .iter()
                    .find(|(a, _)| *a == id)
                    .and_then(|(_, fault)| fault.lost_now().map(|why| (fault.describe(), why)))
            };
            if let Some((what, why)) = lost {
                told = true;
                self.note(
                    EventKind::FaultLost,
                    &what,
                    format!("lost before its planned end: {why}"),
                    Some(false),
                );
            }
        }
    }

    /// Sleeps `d` unless the method is aborted first; returns false when aborted.
    async fn wait(&self, d: Duration) -> bool {
        if d.is_zero() {
            return !self.abort.is_cancelled();
        }
        tokio::select! {
            _ = self.abort.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

/// Runs the method's steps in order (each `parallel` group concurrently). Returns early on abort.
pub(crate) async fn run_steps(ctx: &MethodContext, steps: &[CheckedStep]) -> Result<(), Abort> {
    for (i, step) in steps.iter().enumerate() {
        if ctx.abort.is_cancelled() {
            break;
        }
        Box::pin(run_step(ctx, step, i)).await?;
    }
    if ctx.abort.is_cancelled() {
        return Err(ctx.abort_reason());
    }
    Ok(())
}

async fn run_step(ctx: &MethodContext, step: &CheckedStep, index: usize) -> Result<(), Abort> {
    let name = step.name.clone().unwrap_or_else(|| format!("step {}: {}", index + 1, step.label()));
    let fault = match step.kind() {
        CheckedKind::Wait(wait) => {
            set_current(ctx, &name, Some(wait.0));
            ctx.note(EventKind::StepStarted, &name, format!("wait {wait}"), None);
            ctx.wait(wait.0).await;
            return Ok(());
        }
        CheckedKind::Parallel(group) => {
            ctx.note(EventKind::StepStarted, &name, format!("parallel group of {}", group.len()), None);
            let runs = group.iter().enumerate().map(|(i, s)| Box::pin(run_step(ctx, s, i)));
            return futures_join_all(runs).await.into_iter().collect();
        }
        CheckedKind::Fault(fault) => fault,
    };
    let duration = fault.duration.map(|d| d.0);
    set_current(ctx, &name, duration);
    ctx.note(EventKind::StepStarted, &name, format!("{} on {}", fault.kind.name(), fault.target), None);
    let timeout = ctx.timing.apply_timeout;
    let applied = match tokio::time::timeout(timeout, ctx.driver.apply(&name, &fault)).await {
        Ok(Ok(Applied::Active(applied))) => applied,
        // Instant faults (kill) have nothing to revert.
        Ok(Ok(Applied::Instant(what))) => {
            ctx.note(EventKind::FaultInjected, &name, what, Some(true));
            return Ok(());
        }
        Ok(Err(e)) => return Err(failed_apply(ctx, &name, e)),
        Err(_) => {
            let e = FaultError::TimedOut(timeout).on(fault.kind.name(), fault.target);
            return Err(failed_apply(ctx, &name, e));
        }
    };
    ctx.note(EventKind::FaultInjected, &name, applied.describe(), Some(true));
    let id = ctx.push_active(applied);
    if let Some(d) = duration
        && ctx.wait_watching(d, id).await
        && let Some(applied) = ctx.take_active(id)
    {
        let what = applied.describe();
        match applied.revert().await {
            Ok(Reverted::Done) => ctx.note(EventKind::FaultReverted, &name, what, Some(true)),
            Ok(Reverted::Lost(why)) => ctx.note_lost(&name, &what, &why),
            Err(e) => {
                // Back into the active list: the method's final revert_all retries it.
                ctx.note(EventKind::FaultReverted, &name, format!("{what}: {e} (will retry)"), Some(false));
                ctx.push_active(applied);
            }
        }
    }
    Ok(())
}

/// A fault that could not be applied: noted, and the method aborted (inconclusive).
fn failed_apply(ctx: &MethodContext, name: &str, e: FaultError) -> Abort {
    ctx.note(EventKind::FaultInjected, name, e.to_string(), Some(false));
    let abort = Abort::Error(e.into());
    ctx.trip(abort.clone());
    abort
}

fn set_current(ctx: &MethodContext, name: &str, duration: Option<Duration>) {
    *lock(&ctx.current) = Some((name.to_string(), Instant::now(), duration));
}

/// Awaits all futures concurrently (a tiny join_all, so the crate needs no `futures` dependency).
async fn futures_join_all<F: std::future::Future + Unpin>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set: Vec<Option<F>> = futures.map(Some).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in set.iter_mut().zip(out.iter_mut()) {
            if let Some(fut) = slot {
                match std::pin::Pin::new(fut).poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Event logs per SLO source key (`load:NAME`, `proxy:NAME`, …).
pub type Logs = BTreeMap<String, Arc<EventLog>>;
