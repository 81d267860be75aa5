//! The run lifecycle, DESIGN §4: validate (done by the parser) → plan (`--dry-run` stops here) → preflight
//! (steady state holds, targets reachable) → start load and signal collection → baseline → method steps (each
//! fault with a deadline) → recovery (time to recover measured) → steady state again → rollbacks → verdict.
//! SIGINT/SIGTERM (the `interrupt` token) and a guardrail trip take the same path: revert everything, then
//! report.

mod faults;
mod host;
mod plan;
mod prometheus;
mod run;
pub mod run_proxies;
mod sources;

pub use run::{
    FIRE_AND_FORGET, Guard, NOTHING_JUDGED, Outcome, Verdict, execute, guards, journal, source_key,
    watch_tick,
};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use faults::DEADLINE_MARGIN;
pub use plan::{CheckError, HostOptions, Plan, Remote, ResolvedTarget};

use crate::experiment::checked::StepKind;
use crate::experiment::model::Step;
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

/// How often a running fault step looks whether its fault was lost.
const LOSS_POLL: Duration = Duration::from_millis(250);

/// How many times a revert is tried before it is reported as failed.
const REVERT_ATTEMPTS: u32 = 3;

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
    /// A fault could not be applied (verdict inconclusive).
    Error(String),
}

/// State shared by the steps of a running method.
pub(crate) struct MethodContext {
    pub plan: Plan,
    pub seed: u64,
    pub run_start: Instant,
    /// Faults in force, in application order, each with an id for targeted reverts.
    pub active: Mutex<Vec<(u64, faults::Active)>>,
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
    pub kind: &'static str,
    pub name: String,
    pub detail: String,
    pub ok: Option<bool>,
}

impl MethodContext {
    pub fn note(&self, kind: &'static str, name: &str, detail: String, ok: Option<bool>) {
        let at = self.run_start.elapsed();
        tracing::info!(kind, name, %detail, "{kind}");
        if let Some(progress) = &self.progress {
            let mark = match ok {
                Some(true) => " ok",
                Some(false) => " FAILED",
                None => "",
            };
            progress(format!(
                "[{:>6.1}s] {}: {name}: {detail}{mark}",
                at.as_secs_f64(),
                kind.replace('_', " ")
            ));
        }
        if let Ok(mut t) = self.timeline.lock() {
            t.push(TimelineEvent { at, kind, name: name.to_string(), detail, ok });
        }
    }

    pub fn trip(&self, abort: Abort) {
        if let Ok(mut reason) = self.abort_reason.lock() {
            reason.get_or_insert(abort);
        }
        self.abort.cancel();
    }

    fn push_active(&self, fault: faults::Active) -> u64 {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut active) = self.active.lock() {
            active.push((id, fault));
        }
        id
    }

    fn take_active(&self, id: u64) -> Option<faults::Active> {
        let mut active = self.active.lock().ok()?;
        let i = active.iter().position(|(a, _)| *a == id)?;
        Some(active.remove(i).1)
    }

    /// Reverts every fault still in force, newest first, each retried a few times. A fault that still cannot be
    /// reverted is recorded (the verdict says so) and does not stop the others.
    pub async fn revert_all(&self) {
        loop {
            let next = self.active.lock().ok().and_then(|mut a| a.pop());
            let Some((_, fault)) = next else { return };
            let what = fault.describe();
            let mut last = Ok(faults::Reverted::Done);
            for attempt in 0..REVERT_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                last = fault.revert().await;
                if last.is_ok() {
                    break;
                }
            }
            match last {
                Ok(faults::Reverted::Done) => {
                    self.note("fault_reverted", &what, "reverted".into(), Some(true))
                }
                Ok(faults::Reverted::Lost(why)) => self.note_lost(&what, &what, &why),
                Err(e) => {
                    self.note("fault_reverted", &what, format!("revert failed: {e}"), Some(false));
                    if let Ok(mut failures) = self.revert_failures.lock() {
                        failures.push(format!(
                            "{what} could not be reverted: {e} (its own deadline still removes it)"
                        ));
                    }
                }
            }
        }
    }

    /// A fault the revert found already gone: says so (never "reverted") and records it for the verdict.
    fn note_lost(&self, name: &str, what: &str, why: &str) {
        self.note(
            "fault_reverted",
            name,
            format!("{what}: not reverted, it was lost before its planned end: {why}"),
            Some(false),
        );
        if let Ok(mut lost) = self.lost.lock() {
            lost.push(format!("fault lost before its planned end: {what}: {why}"));
        }
    }

    /// [`MethodContext::wait`] for a fault's duration, looking every [`LOSS_POLL`] whether fault `id` is lost
    /// (expired, its agent gone), so the progress says so when it happens rather than at the step's end.
    async fn wait_watching(&self, d: Duration, id: u64) -> bool {
        let end = Instant::now() + d;
        let mut told = false;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return !self.abort.is_cancelled();
            }
            if !self.wait(left.min(LOSS_POLL)).await {
                return false;
            }
            if told {
                continue;
            }
            let lost = self.active.lock().ok().and_then(|active| {
                let (_, fault) = active.iter().find(|(a, _)| *a == id)?;
                fault.lost_now().map(|why| (fault.describe(), why))
            });
            if let Some((what, why)) = lost {
                told = true;
                self.note("fault_lost", &what, format!("lost before its planned end: {why}"), Some(false));
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
pub(crate) async fn run_steps(ctx: &MethodContext, steps: &[Step]) -> Result<(), Abort> {
    for (i, step) in steps.iter().enumerate() {
        if ctx.abort.is_cancelled() {
            break;
        }
        Box::pin(run_step(ctx, step, i)).await?;
    }
    if ctx.abort.is_cancelled() {
        return Err(ctx.abort_reason.lock().ok().and_then(|r| r.clone()).unwrap_or(Abort::Interrupted));
    }
    Ok(())
}

async fn run_step(ctx: &MethodContext, step: &Step, index: usize) -> Result<(), Abort> {
    let name = step.name.clone().unwrap_or_else(|| format!("step {}: {}", index + 1, step.label()));
    let kind = match step.kind() {
        Ok(kind) => kind,
        Err(e) => {
            let abort = Abort::Error(e);
            ctx.trip(abort.clone());
            return Err(abort);
        }
    };
    let fault = match kind {
        StepKind::Wait(wait) => {
            set_current(ctx, &name, Some(wait.0));
            ctx.note("step_started", &name, format!("wait {wait}"), None);
            ctx.wait(wait.0).await;
            return Ok(());
        }
        StepKind::Parallel(group) => {
            ctx.note("step_started", &name, format!("parallel group of {}", group.len()), None);
            let runs = group.iter().enumerate().map(|(i, s)| Box::pin(run_step(ctx, s, i)));
            return futures_join_all(runs).await.into_iter().collect();
        }
        StepKind::Fault(fault) => fault,
    };
    let duration = fault.duration.map(|d| d.0);
    set_current(ctx, &name, duration);
    ctx.note("step_started", &name, format!("{} on {}", fault.kind.name(), fault.target), None);
    let applied = match plan::apply(ctx, &name, &fault).await {
        Ok(Some(applied)) => applied,
        Ok(None) => return Ok(()), // Instant faults (kill) have nothing to revert.
        Err(e) => {
            ctx.note("fault_injected", &name, e.clone(), Some(false));
            let abort = Abort::Error(e);
            ctx.trip(abort.clone());
            return Err(abort);
        }
    };
    ctx.note("fault_injected", &name, applied.describe(), Some(true));
    let id = ctx.push_active(applied);
    if let Some(d) = duration
        && ctx.wait_watching(d, id).await
        && let Some(applied) = ctx.take_active(id)
    {
        let what = applied.describe();
        match applied.revert().await {
            Ok(faults::Reverted::Done) => ctx.note("fault_reverted", &name, what, Some(true)),
            Ok(faults::Reverted::Lost(why)) => ctx.note_lost(&name, &what, &why),
            Err(e) => {
                // Back into the active list: the method's final revert_all retries it.
                ctx.note("fault_reverted", &name, format!("{what}: {e} (will retry)"), Some(false));
                ctx.push_active(applied);
            }
        }
    }
    Ok(())
}

fn set_current(ctx: &MethodContext, name: &str, duration: Option<Duration>) {
    if let Ok(mut c) = ctx.current.lock() {
        *c = Some((name.to_string(), Instant::now(), duration));
    }
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
