//! Runs started through the controller: the same engine as `chaos run`, with targets on other hosts reached
//! through the fleet, every progress line kept as an event (for `watch`), the verdict and journal stored, and
//! per-agent locks so two runs never fault the same host at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::error::ApiError;
use crate::engine::{self, Plan, Remote, RunConfig};
use crate::experiment::Checked;
pub(crate) use crate::fleet::now_ms;
use crate::fleet::{Fleet, lock};
use crate::report::journal::Verdict;
use crate::store::{
    EventRecord, ExperimentRecord, FreezeRecord, NewAudit, RunRecord, RunState, StoreError, StoreHandle,
};

/// Limits checked before any run starts.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// The most agents one run may touch.
    pub max_agents_per_run: Option<usize>,
    /// The largest share of the connected fleet one run may touch, in percent.
    pub max_fleet_percent: Option<f64>,
    /// The most pods one run's `pods` targets may choose, all targets together.
    pub max_pods_per_run: Option<usize>,
    /// Let runs act on the controller's own host (local command probes, local process targets): off unless
    /// `chaos controller --allow-local-effects`, since anyone with an API token could then run programs and
    /// signal processes there as the controller's user (see [`super::local`]).
    pub allow_local_effects: bool,
}

/// Why [`Runs::start_or_refuse`] did not start a run.
#[derive(Debug)]
pub enum Refused {
    /// The budget gate refused it; `run` is the inconclusive run recorded for it.
    Gate { run: Box<RunRecord>, reason: String },
    /// Anything else, as the API answers it.
    Status(Status),
}

impl Refused {
    pub fn into_status(self) -> Status {
        match self {
            Refused::Gate { run, reason } => ApiError::FailedPrecondition(format!(
                "{reason} (run {} recorded as inconclusive; nothing was touched)",
                run.id
            ))
            .into(),
            Refused::Status(status) => status,
        }
    }
}

impl From<Status> for Refused {
    fn from(status: Status) -> Refused {
        Refused::Status(status)
    }
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Refused {
        Refused::Status(e.into())
    }
}

/// The terminal state of a dry run: planned, nothing applied.
pub const DRY_RUN: &str = "dry-run";

/// Every run of this controller.
pub struct Runs {
    store: StoreHandle,
    fleet: Fleet,
    limits: Limits,
    active: Mutex<HashMap<String, Arc<ActiveRun>>>,
    /// Agent id → the run holding it.
    locks: Mutex<BTreeMap<String, String>>,
    /// Proxy (API URL, name) → the run faulting (or having created) it.
    proxy_locks: Mutex<BTreeMap<(String, String), String>>,
    frozen: Mutex<Option<FreezeRecord>>,
    /// Where SLO references without `file:` are looked up (the controller's SLO registry).
    slo_catalog: Arc<dyn crate::experiment::SloCatalog>,
    /// Told about every finished run ([`Runs::listen`]).
    listeners: Mutex<Vec<Arc<dyn RunListener>>>,
    /// Bumped by every [`Runs::halt_all_runs`], with its "halted by ACTOR: REASON": what is waiting between runs
    /// (a game day's pause) stops too.
    halt_alls: tokio::sync::watch::Sender<(u64, String)>,
}

/// Told about every run that finishes through the controller, once its record (verdict, journal) is stored
/// and before its `finished` event is sent to watchers. Everything it applied is reverted by then: a listener
/// is never on a revert's path. It must not block (queue work with `StoreHandle::submit`, or spawn): the run's
/// watchers wait for it.
pub trait RunListener: Send + Sync {
    fn run_finished(&self, run: &RunRecord, exp: &Checked, outcome: &engine::Outcome);
}

/// A run in progress.
pub struct ActiveRun {
    pub id: String,
    pub schedule_id: Option<String>,
    halt: CancellationToken,
    halted: std::sync::atomic::AtomicBool,
    events: broadcast::Sender<EventRecord>,
    /// The last event's number; held while an event is stored and sent, so watchers see them in order.
    seq: Mutex<u64>,
    started: tokio::time::Instant,
    done: CancellationToken,
}

/// What [`Runs::start`] is asked.
#[derive(Clone, Debug)]
pub struct StartRequest {
    pub experiment: ExperimentRecord,
    pub seed: Option<u64>,
    pub dry_run: bool,
    pub actor: String,
    pub schedule_id: Option<String>,
}

pub(crate) fn internal(e: StoreError) -> Status {
    ApiError::from(e).into()
}

/// The state a run ends in with `verdict` (unless it was halted).
fn finished(verdict: Verdict) -> RunState {
    match verdict {
        Verdict::Passed => RunState::Passed,
        Verdict::Failed => RunState::Failed,
        Verdict::Invalid => RunState::Invalid,
        Verdict::Inconclusive => RunState::Inconclusive,
    }
}

/// A run id: the time in hex and a random suffix, so ids never repeat across controller restarts.
fn new_run_id() -> String {
    let suffix: u16 = rand::random();
    format!("r-{:x}-{suffix:04x}", now_ms())
}

impl Runs {
    pub async fn new(store: StoreHandle, fleet: Fleet, limits: Limits) -> Result<Arc<Runs>, StoreError> {
        Runs::with_slo_catalog(store, fleet, limits, Arc::new(crate::experiment::NoRegistry)).await
    }

    /// [`Runs::new`] with experiments' SLO references (`use:` without `file:`) looked up in `slo_catalog`.
    pub async fn with_slo_catalog(
        store: StoreHandle,
        fleet: Fleet,
        limits: Limits,
        slo_catalog: Arc<dyn crate::experiment::SloCatalog>,
    ) -> Result<Arc<Runs>, StoreError> {
        let frozen = store.call(|s| s.freeze()).await?;
        Ok(Arc::new(Runs {
            store,
            fleet,
            limits,
            active: Mutex::new(HashMap::new()),
            locks: Mutex::new(BTreeMap::new()),
            proxy_locks: Mutex::new(BTreeMap::new()),
            frozen: Mutex::new(frozen),
            slo_catalog,
            listeners: Mutex::new(Vec::new()),
            halt_alls: tokio::sync::watch::Sender::new((0, String::new())),
        }))
    }

    /// Changes at every halt-all (its value: a count and "halted by ACTOR: REASON").
    pub fn halt_alls(&self) -> tokio::sync::watch::Receiver<(u64, String)> {
        self.halt_alls.subscribe()
    }

    /// Adds a listener told about every run that finishes from now on.
    pub fn listen(&self, listener: Arc<dyn RunListener>) {
        lock(&self.listeners).push(listener);
    }

    /// Parses an experiment submitted here (`${env:NAME}` only with `--allow-local-effects`).
    pub fn parse(&self, file: &str, source: &str, vars: &[(String, String)]) -> Result<Checked, ApiError> {
        super::local::parse(file, source, vars, self.limits.allow_local_effects, self.slo_catalog.as_ref())
    }

    /// Refuses an experiment that would act on the controller's host, unless that was allowed at start.
    pub fn check_local_effects(&self, exp: &Checked) -> Result<(), ApiError> {
        super::local::check(exp, self.limits.allow_local_effects)
    }

    pub fn frozen(&self) -> Option<FreezeRecord> {
        lock(&self.frozen).clone()
    }

    /// Freezes (`Some`) or unfreezes (`None`), persistently.
    pub async fn set_frozen(&self, freeze: Option<FreezeRecord>) -> Result<(), Status> {
        let stored = freeze.clone();
        self.store.call(move |s| s.set_freeze(stored.as_ref())).await.map_err(internal)?;
        *lock(&self.frozen) = freeze;
        Ok(())
    }

    pub fn active(&self, id: &str) -> Option<Arc<ActiveRun>> {
        lock(&self.active).get(id).cloned()
    }

    /// Whether a run started by `schedule_id` is still going.
    pub fn schedule_running(&self, schedule_id: &str) -> bool {
        lock(&self.active).values().any(|r| r.schedule_id.as_deref() == Some(schedule_id))
    }

    /// Ids of the runs in progress.
    pub fn active_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.active).keys().cloned().collect();
        ids.sort();
        ids
    }

    fn audit(&self, actor: &str, action: &str, run: Option<&str>, detail: String) {
        let entry = NewAudit {
            at_ms: now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            agent_id: None,
            run_id: run.map(str::to_string),
            fault_id: None,
            detail,
        };
        self.store.submit("the audit log", move |s| s.append_audit(&entry).map(|_| ()));
    }

    /// Checks, plans and starts a run (or, with `dry_run`, only plans it). Everything that can refuse a run
    /// (frozen, bad targets, blast-radius caps, agent policy, locks, the budget gate) refuses it before
    /// anything is touched. A run the budget gate refuses is stored all the same, finished inconclusive with
    /// the gate's reason and figures (so it is in the run list), and refused here as FAILED_PRECONDITION.
    pub async fn start(self: &Arc<Self>, req: StartRequest) -> Result<RunRecord, Status> {
        self.start_or_refuse(req).await.map_err(Refused::into_status)
    }

    /// [`Runs::start`], telling a budget-gate refusal (with the run recorded for it) from other errors: the
    /// scheduler reports the former as a skipped firing.
    pub async fn start_or_refuse(self: &Arc<Self>, req: StartRequest) -> Result<RunRecord, Refused> {
        if !req.dry_run
            && let Some(f) = self.frozen()
        {
            return Err(ApiError::FailedPrecondition(format!(
                "the controller is frozen (by {}: {}): no run starts until `chaos unfreeze`",
                f.by, f.reason
            ))
            .into());
        }
        let rec = &req.experiment;
        let vars: Vec<(String, String)> = rec.vars.clone().into_iter().collect();
        let exp = self.parse(&rec.file, &rec.source, &vars)?;
        self.check_local_effects(&exp)?;
        if Plan::needs_host(&exp) {
            return Err(ApiError::FailedPrecondition(
                "host faults without a target (and pauses of local processes) act on the host running the \
                 experiment: through a controller, give them a target with `hosts:` labels"
                    .into(),
            )
            .into());
        }
        let id = new_run_id();
        let seed = req.seed.unwrap_or_else(rand::random);
        if !req.dry_run
            && let Some(gate) = engine::slo_gate::budget_gate(&exp).await
            && let Some(reason) = gate.refusal.clone()
        {
            return Err(self.refused_by_gate(&req, &exp, id, seed, reason, &gate).await);
        }
        let remote = Remote::new(Arc::new(self.fleet.clone()), id.clone(), req.actor.clone());
        // The file's fault is bad input (the client exits 2), the fleet's a precondition (exit 3).
        let mut plan = Plan::resolve_with(&exp, seed, Some(remote)).await.map_err(|e| {
            let message = format!("cannot resolve targets: {e}");
            if e.is_file() {
                ApiError::InvalidArgument(message)
            } else {
                ApiError::FailedPrecondition(message)
            }
        })?;
        let agents = plan.agents();
        let proxies = plan.held_proxies(&exp);
        self.check_blast_radius(&agents)?;
        self.check_pods(&plan.pods())?;
        plan.check_remote(&exp, seed)
            .await
            .map_err(|e| ApiError::FailedPrecondition(format!("preflight: {e}")))?;
        self.check_probes(&exp).await?;
        let mut record = RunRecord {
            id: id.clone(),
            experiment_id: rec.id.clone(),
            title: exp.title.clone(),
            state: RunState::Planned,
            verdict: None,
            reasons: Vec::new(),
            seed,
            started_ms: now_ms(),
            finished_ms: None,
            actor: req.actor.clone(),
            schedule_id: req.schedule_id.clone(),
            plan: plan.describe(&exp),
            journal_json: None,
            exit_code: None,
        };
        if req.dry_run {
            // Stored finished: a dry run ends here (nothing was applied), it is never left waiting.
            record.state = RunState::DryRun;
            record.finished_ms = Some(record.started_ms);
            record.exit_code = Some(0);
            let stored = record.clone();
            self.store.call(move |s| s.insert_run(&stored)).await.map_err(internal)?;
            let event = EventRecord {
                run_id: id.clone(),
                seq: 1,
                at_ms: 0,
                kind: "finished".into(),
                name: DRY_RUN.into(),
                detail: String::new(),
                ok: Some(true),
                line: format!("{}: dry run, nothing applied", exp.title),
            };
            self.store.submit("the dry run's finished event", move |s| s.append_event(&event));
            return Ok(record);
        }
        self.lock_agents(&id, &agents)?;
        if let Err(refused) = self.lock_proxies(&id, &proxies) {
            self.unlock_agents(&id);
            return Err(refused.into());
        }
        record.state = RunState::Running;
        let stored = record.clone();
        if let Err(e) = self.store.call(move |s| s.insert_run(&stored)).await {
            self.unlock_agents(&id);
            return Err(internal(e).into());
        }
        let (events, _) = broadcast::channel(1024);
        let active = Arc::new(ActiveRun {
            id: id.clone(),
            schedule_id: req.schedule_id.clone(),
            halt: CancellationToken::new(),
            halted: std::sync::atomic::AtomicBool::new(false),
            events,
            seq: Mutex::new(0),
            started: tokio::time::Instant::now(),
            done: CancellationToken::new(),
        });
        lock(&self.active).insert(id.clone(), active.clone());
        self.audit(
            &req.actor,
            "run_started",
            Some(&id),
            format!("{} (seed {seed}) on agents [{}]", exp.title, agents.join(", ")),
        );
        let runs = self.clone();
        let started_record = record.clone();
        tokio::spawn(async move { runs.execute(exp, plan, record, active).await });
        Ok(started_record)
    }

    /// Records a run the budget gate refused: finished inconclusive (exit 3) with the gate's reason, its
    /// figures as the run's plan, and an audit entry.
    async fn refused_by_gate(
        &self,
        req: &StartRequest,
        exp: &Checked,
        id: String,
        seed: u64,
        reason: String,
        gate: &engine::slo_gate::GateReport,
    ) -> Refused {
        let now = now_ms();
        let figures: Vec<String> = gate
            .lines
            .iter()
            .map(|(ok, line)| format!("{line}{}", if *ok { "" } else { " (refused)" }))
            .collect();
        let record = RunRecord {
            id: id.clone(),
            experiment_id: req.experiment.id.clone(),
            title: exp.title.clone(),
            state: RunState::Inconclusive,
            verdict: Some(Verdict::Inconclusive.as_str().to_string()),
            reasons: vec![reason.clone()],
            seed,
            started_ms: now,
            finished_ms: Some(now),
            actor: req.actor.clone(),
            schedule_id: req.schedule_id.clone(),
            plan: format!("not started: the budget gate refused it\n  {}\n", figures.join("\n  ")),
            journal_json: None,
            exit_code: Some(Verdict::Inconclusive.exit_code()),
        };
        let stored = record.clone();
        if let Err(e) = self.store.call(move |s| s.insert_run(&stored)).await {
            return Refused::Status(internal(e));
        }
        if req.schedule_id.is_none() {
            self.audit(&req.actor, "run_refused", Some(&id), format!("{}: {reason}", exp.title));
        }
        Refused::Gate { run: Box::new(record), reason }
    }

    /// Every command probe that runs on agents: they are connected and their policies allow it (nothing runs).
    async fn check_probes(&self, exp: &Checked) -> Result<(), ApiError> {
        for probe in &exp.steady_state {
            let Some(command) = &probe.command else { continue };
            crate::probes::command::preflight(command, &probe.name, Some(&self.fleet)).await.map_err(
                |e| {
                    ApiError::FailedPrecondition(format!(
                        "preflight: steady_state probe `{}`: {e}",
                        probe.name
                    ))
                },
            )?;
        }
        Ok(())
    }

    fn check_pods(&self, pods: &[String]) -> Result<(), ApiError> {
        match self.limits.max_pods_per_run {
            Some(max) if pods.len() > max => Err(ApiError::FailedPrecondition(format!(
                "blast radius: the run would touch {} pods ({}), above the cap of {max} per run",
                pods.len(),
                pods.join(", ")
            ))),
            _ => Ok(()),
        }
    }

    fn check_blast_radius(&self, agents: &[String]) -> Result<(), ApiError> {
        if let Some(max) = self.limits.max_agents_per_run
            && agents.len() > max
        {
            return Err(ApiError::FailedPrecondition(format!(
                "blast radius: the run would touch {} agents ({}), above the cap of {max} per run",
                agents.len(),
                agents.join(", ")
            )));
        }
        if let Some(max) = self.limits.max_fleet_percent
            && !agents.is_empty()
        {
            let fleet = self.fleet.connected().len().max(1);
            let share = agents.len() as f64 * 100.0 / fleet as f64;
            if share > max {
                return Err(ApiError::FailedPrecondition(format!(
                    "blast radius: the run would touch {} of {fleet} connected agents ({share:.0}%), above the \
                     cap of {max}%",
                    agents.len()
                )));
            }
        }
        Ok(())
    }

    fn lock_agents(&self, run: &str, agents: &[String]) -> Result<(), ApiError> {
        let mut locks = lock(&self.locks);
        for agent in agents {
            if let Some(holder) = locks.get(agent) {
                return Err(ApiError::FailedPrecondition(format!(
                    "agent {agent} is held by run {holder}: two runs never fault the same host at once"
                )));
            }
        }
        for agent in agents {
            locks.insert(agent.clone(), run.to_string());
        }
        Ok(())
    }

    /// Like [`Runs::lock_agents`], for the proxies the run faults (keyed by API URL and proxy name).
    fn lock_proxies(&self, run: &str, proxies: &[(String, String)]) -> Result<(), ApiError> {
        let mut locks = lock(&self.proxy_locks);
        for key @ (api, name) in proxies {
            if let Some(holder) = locks.get(key) {
                return Err(ApiError::FailedPrecondition(format!(
                    "proxy {name} at {api} is held by run {holder}: two runs never fault the same proxy at once"
                )));
            }
        }
        for key in proxies {
            locks.insert(key.clone(), run.to_string());
        }
        Ok(())
    }

    /// Releases the agents and proxies `run` holds.
    fn unlock_agents(&self, run: &str) {
        lock(&self.locks).retain(|_, holder| holder != run);
        lock(&self.proxy_locks).retain(|_, holder| holder != run);
    }

    async fn execute(
        self: Arc<Self>,
        exp: Checked,
        plan: Plan,
        mut record: RunRecord,
        active: Arc<ActiveRun>,
    ) {
        let runs = self.clone();
        let progress_run = active.clone();
        let config = RunConfig {
            seed: record.seed,
            file: record.title.clone(),
            progress: Some(Arc::new(move |line: String| {
                runs.event(&progress_run, "progress", "", &line, None)
            })),
            stop_rollbacks: CancellationToken::new(),
        };
        let wall_start = std::time::SystemTime::now();
        self.event(
            &active,
            "phase",
            "started",
            &format!("chaos run: {} (seed {})", exp.title, record.seed),
            None,
        );
        let outcome = engine::execute(&exp, plan, &config, active.halt.clone()).await;
        let journal = engine::journal(&exp, &config, &outcome, wall_start);
        let halted = active.halted.load(Ordering::SeqCst);
        record.state = if halted { RunState::Halted } else { finished(outcome.verdict) };
        record.verdict = Some(outcome.verdict.as_str().to_string());
        record.reasons = outcome.reasons.clone();
        record.exit_code = Some(outcome.verdict.exit_code());
        record.finished_ms = Some(now_ms());
        record.journal_json = serde_json::to_string(&journal).ok();
        let stored = record.clone();
        if let Err(e) = self.store.call(move |s| s.update_run(&stored)).await {
            tracing::error!(run = %record.id, error = %e, "could not store the run's outcome");
        }
        let listeners = lock(&self.listeners).clone();
        for listener in listeners {
            listener.run_finished(&record, &exp, &outcome);
        }
        let summary = format!("{}: {}", exp.title, outcome.verdict.as_str().to_uppercase());
        // The finished event carries the verdict and its reasons, so a watcher needs no further call (the
        // controller may be shutting down).
        let reasons = outcome.reasons.join("\n");
        let passed = Some(outcome.verdict.exit_code() == 0);
        self.event_with(&active, "finished", outcome.verdict.as_str(), &reasons, &summary, passed);
        self.unlock_agents(&record.id);
        lock(&self.active).remove(&record.id);
        active.done.cancel();
    }

    /// Records one event of a run and sends it to its watchers.
    fn event(&self, run: &ActiveRun, kind: &str, name: &str, line: &str, ok: Option<bool>) {
        self.event_with(run, kind, name, "", line, ok);
    }

    fn event_with(
        &self,
        run: &ActiveRun,
        kind: &str,
        name: &str,
        detail: &str,
        line: &str,
        ok: Option<bool>,
    ) {
        let mut seq = lock(&run.seq);
        *seq += 1;
        let event = EventRecord {
            run_id: run.id.clone(),
            seq: *seq,
            at_ms: u64::try_from(run.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            kind: kind.to_string(),
            name: name.to_string(),
            detail: detail.to_string(),
            ok,
            line: line.to_string(),
        };
        // Queued in order (under the `seq` lock): a watcher that reads the store after this sees it.
        let stored = event.clone();
        self.store.submit("a run event", move |s| s.append_event(&stored));
        let _ = run.events.send(event);
    }

    /// Halts one run: its method stops, everything it applied is reverted (the engine's revert path), and it
    /// ends as `halted` with an inconclusive verdict. Waits (up to `wait`) for it to finish.
    pub async fn halt(&self, id: &str, actor: &str, reason: &str, wait: Duration) -> Result<(), Status> {
        let Some(run) = self.active(id) else {
            let stored = id.to_string();
            return match self.store.call(move |s| s.run(&stored)).await.map_err(internal)? {
                Some(_) => Ok(()),
                None => Err(ApiError::NotFound { what: "run", id: id.to_string() }.into()),
            };
        };
        run.halted.store(true, Ordering::SeqCst);
        self.event(&run, "halt", actor, &format!("halted by {actor}: {reason}"), None);
        run.halt.cancel();
        self.audit(actor, "halt_run", Some(id), reason.to_string());
        let _ = tokio::time::timeout(wait, run.done.cancelled()).await;
        Ok(())
    }

    /// Halts every run in progress (without waiting); returns their ids.
    pub fn halt_all_runs(&self, actor: &str, reason: &str) -> Vec<String> {
        self.halt_alls.send_modify(|(seq, why)| {
            *seq += 1;
            *why = format!("halted by {actor}: {reason}");
        });
        let runs: Vec<Arc<ActiveRun>> = lock(&self.active).values().cloned().collect();
        let mut ids = Vec::new();
        for run in runs {
            run.halted.store(true, Ordering::SeqCst);
            self.event(&run, "halt", actor, &format!("halted by {actor}: {reason}"), None);
            run.halt.cancel();
            ids.push(run.id.clone());
        }
        ids.sort();
        ids
    }

    /// Waits until every run in progress has finished (their reverts done), up to `wait`.
    pub async fn drain(&self, wait: Duration) {
        let runs: Vec<Arc<ActiveRun>> = lock(&self.active).values().cloned().collect();
        let all = async {
            for run in runs {
                run.done.cancelled().await;
            }
        };
        let _ = tokio::time::timeout(wait, all).await;
    }

    /// Every event of run `id` after `after`, then live ones, ending after `finished`.
    pub async fn watch(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<EventRecord, Status>>, Status> {
        let live = self.active(id).map(|r| r.events.subscribe());
        let stored = id.to_string();
        if live.is_none() && self.store.call(move |s| s.run(&stored)).await.map_err(internal)?.is_none() {
            return Err(ApiError::NotFound { what: "run", id: id.to_string() }.into());
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let store = self.store.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let mut last = 0;
            let mut finished = false;
            // Stored first (everything so far), then live; a lagging watcher re-reads the store.
            let mut live = live;
            loop {
                let run = id.clone();
                let stored = match store.call(move |s| s.events(&run, last)).await {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = tx.send(Err(internal(e))).await;
                        return;
                    }
                };
                for event in stored {
                    last = event.seq;
                    finished |= event.kind == "finished";
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if finished {
                    return;
                }
                let Some(receiver) = live.as_mut() else { return };
                loop {
                    match receiver.recv().await {
                        Ok(event) if event.seq <= last => {}
                        Ok(event) => {
                            last = event.seq;
                            let end = event.kind == "finished";
                            if tx.send(Ok(event)).await.is_err() || end {
                                return;
                            }
                        }
                        // Missed some: back to the store for them.
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            live = None;
                            break;
                        }
                    }
                }
            }
        });
        Ok(rx)
    }
}
