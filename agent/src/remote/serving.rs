//! The faults held for the controller and the serving of its requests: each request on a task of its own, in
//! order per fault id, a halt that overtakes queued applies, lapsed leases found for the heartbeat, shutdown.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chaos_agent::faults::FaultId;
use chaos_agent::host::HostAgent;
use chaos_agent::pods::{self, PodSelector};
use chaos_agent::sample::Sampler;
use chaos_agent::spec::FaultSpec;
use chaos_proto::v1::controller_message::Body;
use chaos_proto::v1::{
    ActiveFault, AgentMessage, Apply, ControllerMessage, FaultState, FaultStatus, Plan, PodList, Renew,
    agent_message,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{RemoteError, lock, probe};

/// Kills (nothing to revert, nothing held) remembered by fault id, so a retried apply does not kill again.
pub(super) const KILLS_REMEMBERED: usize = 256;

/// How long shutdown waits for requests in flight (an apply under way) before reverting everything.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

// === the faults held for the controller ===

/// State shared by the sessions and their request tasks; outlives every session.
pub(super) struct Shared {
    pub(super) agent: HostAgent,
    pub(super) faults: Mutex<Faults>,
    /// Per controller fault id, the last request queued on it: each request waits for the one before.
    pub(super) queues: Mutex<HashMap<String, Turn>>,
    pub(super) next_turn: AtomicU64,
    /// Bumped by every `halt_all` (under the `faults` lock): an apply that began before a halt and finished
    /// after it is reverted at once instead of being left applied.
    pub(super) halts: AtomicU64,
    pub(super) sampler: Mutex<Sampler>,
    /// Every request task, so shutdown can wait for an apply under way before reverting everything.
    pub(super) tasks: TaskTracker,
    /// Cancelled at shutdown: a request task stops waiting to send its answer.
    pub(super) shutdown: CancellationToken,
    /// The secret of the last welcome, sent back in the next hello (empty before the first).
    pub(super) session_secret: Mutex<String>,
    /// The container runtime's CRI socket (pod targets).
    pub(super) cri_socket: std::path::PathBuf,
}

/// The controller's faults, by the controller's fault id.
#[derive(Default)]
pub(super) struct Faults {
    pub(super) held: HashMap<String, Held>,
    /// Kills done, oldest first (fault id, description): nothing to hold, but a retry must not kill again.
    pub(super) kills: VecDeque<(String, String)>,
}

/// A fault applied for the controller and not yet reverted.
pub(super) struct Held {
    pub(super) id: FaultId,
    pub(super) run_id: String,
    pub(super) kind: String,
    pub(super) description: String,
    /// A revert is under way: the fault leaving `HostAgent::active` is not its lease lapsing.
    pub(super) reverting: bool,
}

/// The last request queued on one fault id: its number, and the signal that it has finished.
pub(super) struct Turn {
    pub(super) number: u64,
    pub(super) done: oneshot::Receiver<()>,
}

/// A request's outcome: a state and a detail for people.
pub(super) type Outcome = (FaultState, String);

impl Shared {
    pub(super) fn new(
        agent: HostAgent,
        shutdown: CancellationToken,
        cri_socket: std::path::PathBuf,
    ) -> Shared {
        Shared {
            agent,
            faults: Mutex::new(Faults::default()),
            queues: Mutex::new(HashMap::new()),
            next_turn: AtomicU64::new(0),
            halts: AtomicU64::new(0),
            sampler: Mutex::new(Sampler::new()),
            tasks: TaskTracker::new(),
            shutdown,
            session_secret: Mutex::new(String::new()),
            cri_socket,
        }
    }

    pub(super) fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// Starts the task answering one controller request.
    pub(super) fn dispatch(self: &Arc<Self>, message: ControllerMessage, tx: &mpsc::Sender<AgentMessage>) {
        let request_id = message.request_id;
        let shared = self.clone();
        match message.body {
            None => {
                let outcome =
                    (FaultState::Failed, "invalid request: expected a body, found none".to_string());
                self.spawn(self.answer(tx, request_id, String::new(), async move { outcome }));
            }
            Some(Body::Welcome(_)) => tracing::warn!("a second welcome on the same stream; ignored"),
            Some(Body::Apply(apply)) => {
                // The halts seen on receipt: one after this is one this apply must not survive.
                let halts = self.halts.load(Ordering::SeqCst);
                let fault_id = apply.fault_id.clone();
                let work = async move { shared.apply(apply, halts).await };
                self.spawn_in_order(fault_id.clone(), self.answer(tx, request_id, fault_id, work));
            }
            Some(Body::Renew(renew)) => {
                let fault_id = renew.fault_id.clone();
                let work = async move { shared.renew(renew) };
                self.spawn_in_order(fault_id.clone(), self.answer(tx, request_id, fault_id, work));
            }
            Some(Body::Revert(revert)) => {
                let fault_id = revert.fault_id;
                let id = fault_id.clone();
                let work = async move { shared.revert(&id).await };
                self.spawn_in_order(fault_id.clone(), self.answer(tx, request_id, fault_id, work));
            }
            Some(Body::HaltAll(halt)) => {
                // Not queued behind anything: a halt is answered as soon as the reverts are done.
                let work = async move { shared.halt_all(&halt.reason).await };
                self.spawn(self.answer(tx, request_id, String::new(), work));
            }
            Some(Body::Plan(plan)) => {
                let work = async move { shared.plan(plan).await };
                self.spawn(self.answer(tx, request_id, String::new(), work));
            }
            Some(Body::ListPods(list)) => {
                let (tx, stop) = (tx.clone(), self.shutdown.clone());
                self.spawn(async move {
                    let selector = PodSelector {
                        namespace: list.namespace,
                        labels: list.labels.into_iter().collect(),
                        container: (!list.container.is_empty()).then_some(list.container),
                    };
                    let mut answer = PodList { request_id, ..PodList::default() };
                    match pods::find(&shared.cri_socket, &selector).await {
                        Ok(found) => answer.pods = found.iter().map(pods::to_proto).collect(),
                        Err(e) => answer.error = e.to_string(),
                    }
                    let message = AgentMessage { body: Some(agent_message::Body::PodList(answer)) };
                    tokio::select! {
                        _ = tx.send(message) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
            Some(Body::RunProbe(probe)) => {
                let (tx, stop) = (tx.clone(), self.shutdown.clone());
                self.spawn(async move {
                    let mut result = probe::run(shared.agent.policy(), &probe).await;
                    result.request_id = request_id;
                    let message = AgentMessage { body: Some(agent_message::Body::ProbeResult(result)) };
                    tokio::select! {
                        _ = tx.send(message) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        }
    }

    /// Runs `work` and sends its outcome as the answer to `request_id`.
    pub(super) fn answer<W, O>(
        self: &Arc<Self>,
        tx: &mpsc::Sender<AgentMessage>,
        request_id: u64,
        fault_id: String,
        work: W,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        W: Future<Output = O> + Send + 'static,
        O: Into<Answer>,
    {
        let tx = tx.clone();
        let shutdown = self.shutdown.clone();
        async move {
            let Answer { state, detail, reverted, failed } = work.await.into();
            let status = FaultStatus { request_id, fault_id, state: state.into(), detail, reverted, failed };
            // A stream that broke meanwhile loses the answer; the next hello says what is held.
            tokio::select! {
                _ = tx.send(status_message(status)) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }

    pub(super) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Spawns `task` to run once every request queued before it on `fault_id` has finished.
    pub(super) fn spawn_in_order(
        self: &Arc<Self>,
        fault_id: String,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let number = self.next_turn.fetch_add(1, Ordering::Relaxed);
        let (finished, done) = oneshot::channel();
        let before = lock(&self.queues).insert(fault_id.clone(), Turn { number, done });
        let shared = self.clone();
        self.tasks.spawn(async move {
            if let Some(before) = before {
                // An error means the task before was dropped: its turn is over all the same.
                let _ = before.done.await;
            }
            task.await;
            let mut queues = lock(&shared.queues);
            if queues.get(&fault_id).is_some_and(|turn| turn.number == number) {
                queues.remove(&fault_id);
            }
            drop(queues);
            let _ = finished.send(());
        });
    }

    pub(super) async fn apply(self: Arc<Self>, apply: Apply, halts_on_receipt: u64) -> Outcome {
        let Apply { fault_id, run_id, spec_json, lease_ms, seed, actor, pod } = apply;
        if fault_id.is_empty() {
            return (FaultState::Failed, "invalid apply: expected a fault id, found none".into());
        }
        let lease = match lease(lease_ms) {
            Ok(lease) => lease,
            Err(why) => return (FaultState::Failed, why),
        };
        if let Some(description) = self.applied_already(&fault_id, lease) {
            return (FaultState::Applied, description);
        }
        let spec = match FaultSpec::parse(&spec_json) {
            Ok(spec) => spec,
            Err(e) => return (FaultState::Failed, e.to_string()),
        };
        // A pod target: the pod as the runtime reports it now (still the sandbox that was chosen).
        let in_pod = match &pod {
            Some(pod) => match pods::resolve(&self.cri_socket, pod).await {
                Ok(found) => Some(found),
                Err(e) => return (FaultState::Failed, e.to_string()),
            },
            None => None,
        };
        if self.halts.load(Ordering::SeqCst) != halts_on_receipt {
            return (FaultState::Failed, "halted before it was applied; nothing was applied".into());
        }
        let agent = self.agent.clone();
        let applied = match tokio::task::spawn_blocking(move || match &in_pod {
            Some((pod, container)) => agent.apply_in_pod(&spec, pod, container, Some(lease), seed),
            None => agent.apply_seeded(&spec, Some(lease), seed),
        })
        .await
        {
            Ok(Ok(applied)) => applied,
            Ok(Err(e)) => {
                tracing::warn!(fault_id, run_id, actor, error = %e, "apply refused");
                return (FaultState::Failed, e.to_string());
            }
            Err(e) => return (FaultState::Failed, format!("the apply task failed: {e}")),
        };
        let local_id = applied.id.map(|id| id.to_string());
        tracing::info!(
            fault_id,
            run_id,
            actor,
            kind = applied.kind,
            local_id,
            detail = applied.description,
            "applied"
        );
        let Some(id) = applied.id else {
            self.faults().remember_kill(fault_id, applied.description.clone());
            return (FaultState::Applied, applied.description);
        };
        let halted = {
            let mut faults = self.faults();
            let halted = self.halts.load(Ordering::SeqCst) != halts_on_receipt;
            let held = Held {
                id,
                run_id,
                kind: applied.kind,
                description: applied.description.clone(),
                reverting: halted,
            };
            faults.held.insert(fault_id.clone(), held);
            halted
        };
        if !halted {
            return (FaultState::Applied, applied.description);
        }
        // A halt came while this was being applied and could not see it: undo it now.
        match self.revert_held(&fault_id).await {
            Some(Err(e)) => {
                (FaultState::Failed, format!("halted while it was being applied; revert failed: {e}"))
            }
            _ => (FaultState::Failed, "halted while it was being applied; reverted".into()),
        }
    }

    /// The description of `fault_id` if it is held (its lease renewed to `lease`, as the retry asks) or was a
    /// kill already done: a retried apply answers again instead of applying twice.
    pub(super) fn applied_already(&self, fault_id: &str, lease: Duration) -> Option<String> {
        let faults = self.faults();
        if let Some(held) = faults.held.get(fault_id).filter(|held| !held.reverting) {
            if let Err(e) = self.agent.renew(held.id, lease) {
                tracing::debug!(fault_id, error = %e, "renewing on a repeated apply failed");
            }
            return Some(held.description.clone());
        }
        faults.kills.iter().find(|(id, _)| id == fault_id).map(|(_, description)| description.clone())
    }

    pub(super) fn renew(&self, renew: Renew) -> Outcome {
        let lease = match lease(renew.lease_ms) {
            Ok(lease) => lease,
            Err(why) => return (FaultState::Failed, why),
        };
        let held = self.faults().held.get(&renew.fault_id).filter(|held| !held.reverting).map(|held| held.id);
        let Some(id) = held else {
            let why = format!(
                "{} is not held here: it was reverted, its lease lapsed, or it was never applied",
                renew.fault_id
            );
            return (FaultState::Failed, why);
        };
        match self.agent.renew(id, lease) {
            Ok(()) => (FaultState::Renewed, String::new()),
            Err(e) => (FaultState::Failed, e.to_string()),
        }
    }

    pub(super) async fn revert(&self, fault_id: &str) -> Outcome {
        match self.revert_held(fault_id).await {
            None => {
                (FaultState::Reverted, format!("{fault_id} is not held here (reverted already or lapsed)"))
            }
            Some(Ok(description)) => (FaultState::Reverted, format!("reverted: {description}")),
            Some(Err(e)) => (FaultState::Failed, format!("revert failed: {e}")),
        }
    }

    /// Reverts the fault held as `fault_id` and forgets it (kept, for a retry, if the revert fails); `None` when
    /// nothing is held under that id.
    pub(super) async fn revert_held(&self, fault_id: &str) -> Option<Result<String, String>> {
        let (id, description) = {
            let mut faults = self.faults();
            let held = faults.held.get_mut(fault_id)?;
            // Reverting twice (a halt and a revert at once) is harmless: a revert is idempotent.
            held.reverting = true;
            (held.id, held.description.clone())
        };
        let agent = self.agent.clone();
        let result = match tokio::task::spawn_blocking(move || agent.revert(id)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the revert task failed: {e}")),
        };
        let mut faults = self.faults();
        let still = faults.held.get_mut(fault_id).filter(|held| held.id == id);
        match (&result, still) {
            (Ok(()), Some(_)) => {
                faults.held.remove(fault_id);
            }
            (Err(_), Some(held)) => held.reverting = false,
            (_, None) => {}
        }
        drop(faults);
        match &result {
            Ok(()) => tracing::info!(fault_id, local_id = %id, "reverted"),
            Err(e) => tracing::warn!(fault_id, local_id = %id, error = %e, "revert failed"),
        }
        Some(result.map(|()| description))
    }

    pub(super) async fn halt_all(&self, reason: &str) -> Answer {
        {
            let mut faults = self.faults();
            self.halts.fetch_add(1, Ordering::SeqCst);
            faults.held.values_mut().for_each(|held| held.reverting = true);
        }
        tracing::warn!(reason, "halting: reverting every fault");
        let agent = self.agent.clone();
        let report = match tokio::task::spawn_blocking(move || agent.revert_all()).await {
            Ok(report) => report,
            Err(e) => {
                self.faults().held.values_mut().for_each(|held| held.reverting = false);
                return Answer::from((FaultState::Failed, format!("the halt task failed: {e}")));
            }
        };
        let reverted: HashSet<FaultId> = report.reverted.iter().copied().collect();
        let failed: HashSet<FaultId> = report.failed.iter().map(|(id, _)| *id).collect();
        {
            let mut faults = self.faults();
            let active = active_ids(&self.agent);
            // Gone either way: reverted by the halt, or by a revert or lease meanwhile.
            faults
                .held
                .retain(|_, held| !reverted.contains(&held.id) && active.contains(&held.id.to_string()));
            for held in faults.held.values_mut().filter(|held| failed.contains(&held.id)) {
                held.reverting = false;
            }
        }
        let detail = if report.failed.is_empty() {
            format!("reverted {} fault(s)", report.reverted.len())
        } else {
            let failures: Vec<String> = report.failed.iter().map(|(id, e)| format!("{id}: {e}")).collect();
            format!("reverted {}; could not revert {}", report.reverted.len(), failures.join("; "))
        };
        Answer {
            state: FaultState::Halted,
            detail,
            reverted: u32::try_from(report.reverted.len()).unwrap_or(u32::MAX),
            failed: u32::try_from(report.failed.len()).unwrap_or(u32::MAX),
        }
    }

    pub(super) async fn plan(&self, plan: Plan) -> Outcome {
        let spec = match FaultSpec::parse(&plan.spec_json) {
            Ok(spec) => spec,
            Err(e) => return (FaultState::Failed, e.to_string()),
        };
        // No lease means the policy's longest, as for a local plan.
        let duration = (plan.lease_ms > 0).then(|| Duration::from_millis(plan.lease_ms));
        let in_pod = match &plan.pod {
            Some(pod) => match pods::resolve(&self.cri_socket, pod).await {
                Ok(found) => Some(found),
                Err(e) => return (FaultState::Failed, e.to_string()),
            },
            None => None,
        };
        let agent = self.agent.clone();
        let seed = plan.seed;
        match tokio::task::spawn_blocking(move || match &in_pod {
            Some((pod, container)) => agent.plan_in_pod(&spec, pod, container, duration, seed),
            None => agent.plan_seeded(&spec, duration, seed),
        })
        .await
        {
            Ok(Ok(text)) => (FaultState::Planned, text),
            Ok(Err(e)) => (FaultState::Failed, e.to_string()),
            Err(e) => (FaultState::Failed, format!("the plan task failed: {e}")),
        }
    }

    /// Forgets the faults whose lease lapsed (gone from the agent with no revert under way) and returns their
    /// ids, with how many faults the agent holds.
    pub(super) fn expired(&self) -> (Vec<String>, usize) {
        // The agent's list is read under the `faults` lock: an apply that finished but is not listed here yet
        // cannot be taken for a lapsed one.
        let mut faults = self.faults();
        let active = active_ids(&self.agent);
        let lapsed: Vec<String> = faults
            .held
            .iter()
            .filter(|(_, held)| !held.reverting && !active.contains(&held.id.to_string()))
            .map(|(fault_id, _)| fault_id.clone())
            .collect();
        for fault_id in &lapsed {
            if let Some(held) = faults.held.remove(fault_id) {
                tracing::info!(fault_id, run_id = held.run_id, local_id = %held.id, "lease lapsed; the fault was reverted");
            }
        }
        (lapsed, active.len())
    }

    /// The faults held for the controller, oldest first, after forgetting those whose lease lapsed.
    pub(super) fn still_held(&self) -> Vec<ActiveFault> {
        let mut faults = self.faults();
        let active = active_ids(&self.agent);
        faults.held.retain(|fault_id, held| {
            let kept = active.contains(&held.id.to_string());
            if !kept {
                tracing::info!(
                    fault_id,
                    run_id = held.run_id,
                    "lease lapsed while disconnected; not in the hello"
                );
            }
            kept
        });
        let mut held: Vec<(&String, &Held)> = faults.held.iter().collect();
        held.sort_by_key(|(_, held)| held.id);
        held.into_iter()
            .map(|(fault_id, held)| ActiveFault {
                fault_id: fault_id.clone(),
                run_id: held.run_id.clone(),
                kind: held.kind.clone(),
                description: held.description.clone(),
            })
            .collect()
    }

    /// Waits (a while) for requests in flight, then reverts everything the agent holds, newest first.
    pub(super) async fn shut_down(&self) -> Result<(), RemoteError> {
        self.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait()).await.is_err() {
            tracing::warn!("requests still in flight at shutdown; reverting without waiting for them");
        }
        let agent = self.agent.clone();
        let report = tokio::task::spawn_blocking(move || agent.revert_all())
            .await
            .map_err(|e| RemoteError::Revert { failed: 0, detail: format!("the revert task failed: {e}") })?;
        self.faults().held.clear();
        tracing::info!(reverted = report.reverted.len(), failed = report.failed.len(), "shut down");
        if report.failed.is_empty() {
            return Ok(());
        }
        let failures: Vec<String> = report.failed.iter().map(|(id, e)| format!("{id}: {e}")).collect();
        Err(RemoteError::Revert { failed: report.failed.len(), detail: failures.join("; ") })
    }
}

impl Faults {
    pub(super) fn remember_kill(&mut self, fault_id: String, description: String) {
        if self.kills.len() == KILLS_REMEMBERED {
            self.kills.pop_front();
        }
        self.kills.push_back((fault_id, description));
    }
}

/// What a request task answers with; the counts are for `halt_all`.
pub(super) struct Answer {
    pub(super) state: FaultState,
    pub(super) detail: String,
    pub(super) reverted: u32,
    pub(super) failed: u32,
}

impl From<Outcome> for Answer {
    fn from((state, detail): Outcome) -> Answer {
        Answer { state, detail, reverted: 0, failed: 0 }
    }
}

/// The lease of an apply or renew; refused when zero, as every fault must have a deadline.
pub(super) fn lease(lease_ms: u64) -> Result<Duration, String> {
    match lease_ms {
        0 => Err("invalid lease: expected lease_ms above 0, found 0".into()),
        ms => Ok(Duration::from_millis(ms)),
    }
}

pub(super) fn active_ids(agent: &HostAgent) -> HashSet<String> {
    agent.active().into_iter().map(|info| info.id).collect()
}

pub(super) fn status_message(status: FaultStatus) -> AgentMessage {
    AgentMessage { body: Some(agent_message::Body::FaultStatus(status)) }
}
