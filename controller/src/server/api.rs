//! `ControllerService` (people and CI) and `AgentService` (the agents' streams): the gRPC boundary. Proto
//! types are converted here and nowhere else; every call is authenticated first.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chaos_proto::v1::{self, agent_message, controller_service_server::ControllerService};
use tokio::sync::Notify;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};

use super::auth::Tokens;
use super::error::ApiError;
use super::runs::{Runs, StartRequest, now_ms};
use crate::fleet::{Fleet, check_agent_id};
use crate::schedule::Timing;
use crate::store::{
    AuditRecord, ExperimentRecord, FreezeRecord, NewAudit, RunRecord, ScheduleRecord, StoreHandle,
    UnknownRunState,
};

/// How long an agent has to send its hello after dialling.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The API, shared by both services.
#[derive(Clone)]
pub struct Api {
    pub store: StoreHandle,
    pub fleet: Fleet,
    pub runs: Arc<Runs>,
    pub tokens: Arc<Tokens>,
    /// Poked when schedules change, so the scheduler recomputes its next firing.
    pub schedules_changed: Arc<Notify>,
}

fn new_id(prefix: &str) -> String {
    let suffix: u16 = rand::random();
    format!("{prefix}-{:x}-{suffix:04x}", now_ms())
}

impl Api {
    pub(crate) fn audit(&self, actor: &str, action: &str, detail: String) {
        let entry = NewAudit {
            at_ms: now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            detail,
            ..NewAudit::default()
        };
        self.store.submit("the audit log", move |s| s.append_audit(&entry).map(|_| ()));
    }

    /// Parses and validates an experiment (errors at file:line:column) and stores it.
    async fn submit(&self, req: v1::SubmitExperimentRequest) -> Result<ExperimentRecord, Status> {
        let file = if req.file.is_empty() { "experiment.yaml".to_string() } else { req.file.clone() };
        let vars: Vec<(String, String)> = req.vars.clone().into_iter().collect();
        let exp = self.runs.parse(&file, &req.source, &vars)?;
        self.runs.check_local_effects(&exp)?;
        let record = ExperimentRecord {
            id: new_id("e"),
            title: exp.title.clone(),
            file,
            source: req.source,
            vars: req.vars.into_iter().collect(),
            created_ms: now_ms(),
        };
        let stored = record.clone();
        self.store.call(move |s| s.insert_experiment(&stored)).await.map_err(ApiError::from)?;
        Ok(record)
    }
}

impl Api {
    /// The stored run `id`, or NOT_FOUND.
    async fn stored_run(&self, id: String) -> Result<RunRecord, ApiError> {
        let found = self.store.call({
            let id = id.clone();
            move |s| s.run(&id)
        });
        found.await?.ok_or(ApiError::NotFound { what: "run", id })
    }

    /// HaltAll as `actor` (the API's principal, or the web console's logged-in one): optionally freezes, halts
    /// every run in progress and asks every agent to revert everything, each step in the audit log.
    pub async fn halt_all_as(
        &self,
        actor: &str,
        req: v1::HaltAllRequest,
    ) -> Result<v1::HaltAllResponse, Status> {
        let reason = if req.reason.is_empty() { "halt all".to_string() } else { req.reason };
        let timeout =
            if req.timeout_ms == 0 { Duration::from_secs(5) } else { Duration::from_millis(req.timeout_ms) };
        if req.freeze {
            let freeze = FreezeRecord { reason: reason.clone(), by: actor.to_string(), since_ms: now_ms() };
            self.runs.set_frozen(Some(freeze)).await?;
            self.audit(actor, "freeze", reason.clone());
        }
        // Agents first (the fast path every fault is reverted by), runs at the same time: their engines revert
        // proxies and whatever else they applied.
        let runs_halted = self.runs.halt_all_runs(actor, &reason);
        let report = self.fleet.halt_all(&reason, actor, timeout).await;
        self.audit(
            actor,
            "halt_all_done",
            format!(
                "{reason}: {} runs halted, {} agents acknowledged ({} faults reverted, {} failed), {} missing, {} ms",
                runs_halted.len(),
                report.acknowledged.len(),
                report.reverted,
                report.failed,
                report.missing.len(),
                report.elapsed.as_millis()
            ),
        );
        Ok(v1::HaltAllResponse {
            runs_halted,
            agents_acknowledged: report.acknowledged,
            agents_missing: report.missing,
            elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
            frozen: self.runs.frozen().is_some(),
        })
    }

    /// Freeze as `actor`: no run or fault starts until unfrozen; audited.
    pub async fn freeze_as(&self, actor: &str, reason: String) -> Result<v1::FreezeState, Status> {
        let reason = if reason.is_empty() { "frozen".to_string() } else { reason };
        let freeze = FreezeRecord { reason: reason.clone(), by: actor.to_string(), since_ms: now_ms() };
        self.runs.set_frozen(Some(freeze)).await?;
        self.audit(actor, "freeze", reason);
        Ok(freeze_out(self.runs.frozen()))
    }

    /// Unfreeze as `actor`; audited.
    pub async fn unfreeze_as(&self, actor: &str, reason: String) -> Result<v1::FreezeState, Status> {
        self.runs.set_frozen(None).await?;
        self.audit(actor, "unfreeze", reason);
        Ok(freeze_out(None))
    }
}

fn experiment_out(e: ExperimentRecord) -> v1::Experiment {
    v1::Experiment {
        id: e.id,
        title: e.title,
        file: e.file,
        source: e.source,
        created_unix_ms: e.created_ms,
        vars: e.vars.into_iter().collect(),
    }
}

/// A run for the API.
pub fn run_out(r: RunRecord) -> v1::Run {
    v1::Run {
        id: r.id,
        experiment_id: r.experiment_id,
        title: r.title,
        state: r.state.to_string(),
        verdict: r.verdict.unwrap_or_default(),
        reasons: r.reasons,
        seed: r.seed,
        started_unix_ms: r.started_ms,
        finished_unix_ms: r.finished_ms.unwrap_or(0),
        actor: r.actor,
        journal_json: r.journal_json.unwrap_or_default(),
        plan: r.plan,
        schedule_id: r.schedule_id.unwrap_or_default(),
        exit_code: r.exit_code.map_or(0, u32::from),
    }
}

fn schedule_out(s: ScheduleRecord) -> v1::Schedule {
    let next = Timing::parse(&s.cron, &s.timezone, &s.windows, &s.blackout_dates)
        .ok()
        .and_then(|t| t.next_after(chrono::Utc::now()))
        .map_or(0, |t| t.timestamp_millis());
    v1::Schedule {
        id: s.id,
        name: s.name,
        experiment_id: s.experiment_id,
        cron: s.cron,
        timezone: s.timezone,
        windows: s.windows,
        skip_if_running: s.skip_if_running,
        blackout_dates: s.blackout_dates,
        seed: s.seed,
        next_fire_unix_ms: next,
        last_fire_unix_ms: s.last_fire_ms.unwrap_or(0),
        last_run_id: s.last_run_id.unwrap_or_default(),
        created_by: s.created_by,
    }
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ControllerService for Api {
    async fn submit_experiment(
        &self,
        request: Request<v1::SubmitExperimentRequest>,
    ) -> Result<Response<v1::Experiment>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let record = self.submit(request.into_inner()).await?;
        self.audit(&actor, "experiment_submitted", format!("{} ({})", record.id, record.title));
        Ok(Response::new(experiment_out(record)))
    }

    async fn list_experiments(
        &self,
        request: Request<v1::ListExperimentsRequest>,
    ) -> Result<Response<v1::ListExperimentsResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let experiments = self
            .store
            .call(|s| s.experiments())
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(experiment_out)
            .collect();
        Ok(Response::new(v1::ListExperimentsResponse { experiments }))
    }

    async fn start_run(&self, request: Request<v1::StartRunRequest>) -> Result<Response<v1::Run>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let experiment = match req.experiment {
            Some(v1::start_run_request::Experiment::ExperimentId(id)) => self
                .store
                .call({
                    let id = id.clone();
                    move |s| s.experiment(&id)
                })
                .await
                .map_err(ApiError::from)?
                .ok_or(ApiError::NotFound { what: "experiment", id })?,
            Some(v1::start_run_request::Experiment::Submit(submit)) => self.submit(submit).await?,
            None => {
                return Err(ApiError::InvalidArgument(
                    "give an experiment id or an experiment to submit".into(),
                )
                .into());
            }
        };
        let start =
            StartRequest { experiment, seed: req.seed, dry_run: req.dry_run, actor, schedule_id: None };
        let run = self.runs.start(start).await?;
        Ok(Response::new(run_out(run)))
    }

    async fn list_runs(
        &self,
        request: Request<v1::ListRunsRequest>,
    ) -> Result<Response<v1::ListRunsResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let limit = if req.limit == 0 { 100 } else { req.limit as usize };
        let state = match req.state.as_str() {
            "" => None,
            name => {
                Some(name.parse().map_err(|e: UnknownRunState| ApiError::InvalidArgument(e.to_string()))?)
            }
        };
        let runs = self
            .store
            .call(move |s| s.runs(limit, state))
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(run_out)
            .collect();
        Ok(Response::new(v1::ListRunsResponse { runs }))
    }

    async fn get_run(&self, request: Request<v1::GetRunRequest>) -> Result<Response<v1::Run>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let id = request.into_inner().id;
        let run = self.stored_run(id).await?;
        Ok(Response::new(run_out(run)))
    }

    type WatchRunStream = Stream_<v1::RunEvent>;

    async fn watch_run(
        &self,
        request: Request<v1::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let id = request.into_inner().id;
        let rx = self.runs.watch(&id).await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|event| {
            event.map(|e| v1::RunEvent {
                run_id: e.run_id,
                seq: e.seq,
                at_ms: e.at_ms,
                kind: e.kind,
                name: e.name,
                detail: e.detail,
                ok: e.ok,
                line: e.line,
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn halt_run(&self, request: Request<v1::HaltRunRequest>) -> Result<Response<v1::Run>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let reason = if req.reason.is_empty() { "halted".to_string() } else { req.reason };
        self.runs.halt(&req.id, &actor, &reason, Duration::from_secs(60)).await?;
        let run = self.stored_run(req.id).await?;
        Ok(Response::new(run_out(run)))
    }

    async fn halt_all(
        &self,
        request: Request<v1::HaltAllRequest>,
    ) -> Result<Response<v1::HaltAllResponse>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        Ok(Response::new(self.halt_all_as(&actor, request.into_inner()).await?))
    }

    async fn freeze(&self, request: Request<v1::FreezeRequest>) -> Result<Response<v1::FreezeState>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        Ok(Response::new(self.freeze_as(&actor, request.into_inner().reason).await?))
    }

    async fn unfreeze(
        &self,
        request: Request<v1::UnfreezeRequest>,
    ) -> Result<Response<v1::FreezeState>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        Ok(Response::new(self.unfreeze_as(&actor, request.into_inner().reason).await?))
    }

    async fn list_agents(
        &self,
        request: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let selector: BTreeMap<String, String> = request.into_inner().selector.into_iter().collect();
        let agents = self
            .fleet
            .list(&selector)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|a| v1::Agent {
                id: a.info.id,
                hostname: a.info.hostname,
                labels: a.info.labels.into_iter().collect(),
                capabilities: a.info.capabilities,
                version: a.info.version,
                boot_id: a.info.boot_id,
                health: a.health.to_string(),
                last_seen_unix_ms: a.last_seen_ms,
                active_faults: a.active_faults,
                sample: a.sample,
                peer: a.info.peer,
            })
            .collect();
        Ok(Response::new(v1::ListAgentsResponse { agents }))
    }

    async fn create_schedule(
        &self,
        request: Request<v1::CreateScheduleRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        if req.name.trim().is_empty() {
            return Err(ApiError::InvalidArgument("a schedule needs a name".into()).into());
        }
        Timing::parse(&req.cron, &req.timezone, &req.windows, &req.blackout_dates)
            .map_err(ApiError::InvalidArgument)?;
        let experiment = req.experiment_id.clone();
        if self.store.call(move |s| s.experiment(&experiment)).await.map_err(ApiError::from)?.is_none() {
            return Err(ApiError::NotFound { what: "experiment", id: req.experiment_id }.into());
        }
        let record = ScheduleRecord {
            id: new_id("s"),
            name: req.name,
            experiment_id: req.experiment_id,
            cron: req.cron,
            timezone: req.timezone,
            windows: req.windows,
            skip_if_running: req.skip_if_running.unwrap_or(true),
            blackout_dates: req.blackout_dates,
            seed: req.seed,
            created_by: actor.clone(),
            created_ms: now_ms(),
            last_fire_ms: None,
            last_run_id: None,
        };
        // A name or id taken is ALREADY_EXISTS.
        let stored = record.clone();
        self.store.call(move |s| s.insert_schedule(&stored)).await.map_err(ApiError::from)?;
        self.audit(&actor, "schedule_created", format!("{} {:?} {}", record.id, record.name, record.cron));
        self.schedules_changed.notify_one();
        Ok(Response::new(schedule_out(record)))
    }

    async fn list_schedules(
        &self,
        request: Request<v1::ListSchedulesRequest>,
    ) -> Result<Response<v1::ListSchedulesResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let schedules = self
            .store
            .call(|s| s.schedules())
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(schedule_out)
            .collect();
        Ok(Response::new(v1::ListSchedulesResponse { schedules }))
    }

    async fn delete_schedule(
        &self,
        request: Request<v1::DeleteScheduleRequest>,
    ) -> Result<Response<v1::DeleteScheduleResponse>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let id = request.into_inner().id;
        let deleted = id.clone();
        match self.store.call(move |s| s.delete_schedule(&deleted)).await.map_err(ApiError::from)? {
            Some(s) => {
                self.audit(&actor, "schedule_deleted", format!("{} {:?}", s.id, s.name));
                self.schedules_changed.notify_one();
                Ok(Response::new(v1::DeleteScheduleResponse {}))
            }
            None => Err(ApiError::NotFound { what: "schedule", id }.into()),
        }
    }

    async fn list_audit(
        &self,
        request: Request<v1::ListAuditRequest>,
    ) -> Result<Response<v1::ListAuditResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let limit = if req.limit == 0 { 100 } else { req.limit as usize };
        let run = (!req.run_id.is_empty()).then_some(req.run_id);
        let entries = self
            .store
            .call(move |s| s.audit(limit, run.as_deref()))
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|AuditRecord { seq, entry: a }| v1::AuditEntry {
                seq,
                at_unix_ms: a.at_ms,
                actor: a.actor,
                action: a.action,
                agent_id: a.agent_id.unwrap_or_default(),
                run_id: a.run_id.unwrap_or_default(),
                fault_id: a.fault_id.unwrap_or_default(),
                detail: a.detail,
            })
            .collect();
        Ok(Response::new(v1::ListAuditResponse { entries }))
    }
}

fn freeze_out(f: Option<FreezeRecord>) -> v1::FreezeState {
    match f {
        Some(f) => v1::FreezeState { frozen: true, reason: f.reason, by: f.by, since_unix_ms: f.since_ms },
        None => v1::FreezeState::default(),
    }
}

/// The agents' side of the API.
#[derive(Clone)]
pub struct Agents {
    pub api: Api,
}

#[tonic::async_trait]
impl v1::agent_service_server::AgentService for Agents {
    type ConnectStream = Stream_<v1::ControllerMessage>;

    async fn connect(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let api = &self.api;
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let token = match api.tokens.agent_token(request.metadata()) {
            Ok(t) => t.to_string(),
            Err(e) => {
                api.audit("agent", "agent_refused", format!("{peer}: {e}"));
                return Err(e.into());
            }
        };
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.next())
            .await
            .map_err(|_| ApiError::NoHello(HELLO_TIMEOUT))?;
        let hello = match first {
            Some(Ok(v1::AgentMessage { body: Some(agent_message::Body::Hello(hello)) })) => hello,
            Some(Ok(_)) => return Err(ApiError::NotHello.into()),
            Some(Err(status)) => return Err(status),
            None => return Err(ApiError::ClosedBeforeHello.into()),
        };
        check_agent_id(&hello.agent_id).map_err(ApiError::InvalidArgument)?;
        if let Err(e) = api.tokens.agent_allowed(&token, &hello.agent_id) {
            api.audit("agent", "agent_refused", format!("{peer}: {e}"));
            return Err(e.into());
        }
        let id = hello.agent_id.clone();
        match api.fleet.attach(hello, peer.clone(), inbound) {
            Ok(outbound) => Ok(Response::new(Box::pin(outbound))),
            Err(e) => {
                api.audit("agent", "agent_refused", format!("{peer}: {id}: {e}"));
                Err(ApiError::from(e).into())
            }
        }
    }
}
