//! `ControllerService` (people and CI) and `AgentService` (the agents' streams): the gRPC boundary. Proto
//! types are converted here and nowhere else; every call is authenticated first. Includes the SLO registry
//! (`ApplySlos`, `ListSlos`, `SloHistory`, `DeleteSlo`): SLO files parsed with `slo_file::parse`, every
//! change kept as a new version in the store and audited.

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
use crate::experiment::{Diagnostic, Diagnostics};
use crate::fleet::{Fleet, check_agent_id};
use crate::notify::Event;
use crate::schedule::Timing;
use crate::slo_file::{self, Sli, windows};
use crate::store::{
    AuditRecord, ExperimentRecord, FreezeRecord, NewAudit, RunRecord, ScheduleRecord, SloApply, SloOutcome,
    SloSource, SloVersion, StoreHandle, StoredSlo, UnknownRunState,
};

/// The longest file name an SLO file may be applied under, and the longest SLO id asked about.
const MAX_SLO_NAME: usize = 1024;

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
    /// Where on-call notifications go ([`crate::notify`]); never waited for.
    pub notifier: crate::notify::Notifier,
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
            self.notifier.emit(Event::Freeze { actor: actor.into(), reason: reason.clone(), frozen: true });
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
        self.notifier.emit(Event::HaltAll { actor: actor.into(), reason, runs_halted: runs_halted.len() });
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
        self.audit(actor, "freeze", reason.clone());
        self.notifier.emit(Event::Freeze { actor: actor.into(), reason, frozen: true });
        Ok(freeze_out(self.runs.frozen()))
    }

    /// Unfreeze as `actor`; audited.
    pub async fn unfreeze_as(&self, actor: &str, reason: String) -> Result<v1::FreezeState, Status> {
        self.runs.set_frozen(None).await?;
        self.audit(actor, "unfreeze", reason.clone());
        self.notifier.emit(Event::Freeze { actor: actor.into(), reason, frozen: false });
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
        let on_failure = crate::incident::from_run::parse_on_failure_field(&req.on_failure)
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
        let (id, override_) = (record.id.clone(), on_failure);
        self.store
            .call(move |s| {
                s.insert_schedule(&stored)?;
                override_.map_or(Ok(()), |f| s.set_schedule_on_failure(&id, &f))
            })
            .await
            .map_err(ApiError::from)?;
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

    async fn apply_slos(
        &self,
        request: Request<v1::ApplySlosRequest>,
    ) -> Result<Response<v1::ApplySlosResponse>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let files = request.into_inner().files;
        // Parsing 8 MiB of YAML is CPU work: off the async workers.
        let by = actor.clone();
        let apply = tokio::task::spawn_blocking(move || read_slo_files(files, now_ms(), by))
            .await
            .map_err(|e| Status::internal(format!("reading the SLO files stopped: {e}")))??;
        let applied = self.store.call(move |s| s.apply_slos(&apply).map(|done| (apply, done))).await;
        let (apply, applied) = applied.map_err(ApiError::from)?;
        let entries: Vec<NewAudit> = applied
            .iter()
            .zip(&apply.slos)
            .filter(|(done, _)| done.outcome != SloOutcome::Unchanged)
            .map(|(done, (_, index))| NewAudit {
                at_ms: apply.applied_ms,
                actor: actor.clone(),
                action: "slo_applied".into(),
                detail: format!(
                    "{} v{} {} from {}",
                    done.id,
                    done.version,
                    done.outcome.as_str(),
                    apply.sources.get(*index).map_or("", |s| s.file.as_str())
                ),
                ..NewAudit::default()
            })
            .collect();
        if !entries.is_empty() {
            self.store.submit("the audit log", move |s| s.append_audit_batch(&entries).map(drop));
        }
        let slos = applied
            .into_iter()
            .map(|done| v1::AppliedSlo {
                id: done.id,
                version: done.version,
                outcome: done.outcome.as_str().into(),
            })
            .collect();
        Ok(Response::new(v1::ApplySlosResponse { slos }))
    }

    async fn list_slos(
        &self,
        request: Request<v1::ListSlosRequest>,
    ) -> Result<Response<v1::ListSlosResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let with_definitions = request.into_inner().with_definitions;
        let current = self.store.call(|s| s.current_slos()).await.map_err(ApiError::from)?;
        let slos = current
            .into_iter()
            .map(|s| {
                let mut out = slo_out(stored_version(s), String::new());
                if !with_definitions {
                    out.definition_json.clear();
                }
                out
            })
            .collect();
        Ok(Response::new(v1::ListSlosResponse { slos }))
    }

    async fn slo_history(
        &self,
        request: Request<v1::SloHistoryRequest>,
    ) -> Result<Response<v1::SloHistoryResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        check_slo_id(&req.id)?;
        let id = req.id.clone();
        let history = self.store.call(move |s| s.slo_history(&id)).await.map_err(ApiError::from)?;
        if history.is_empty() {
            return Err(ApiError::NotFound { what: "SLO", id: req.id }.into());
        }
        let versions = match req.version {
            None => history.into_iter().map(|v| slo_out(v, String::new())).collect(),
            Some(wanted) => {
                let Some(found) = history.into_iter().find(|v| v.version == wanted) else {
                    return Err(ApiError::NotFound {
                        what: "SLO version",
                        id: format!("{} v{wanted}", req.id),
                    }
                    .into());
                };
                let id = req.id.clone();
                let source =
                    self.store.call(move |s| s.slo_source(&id, wanted)).await.map_err(ApiError::from)?;
                vec![slo_out(found, source.map(|s| s.text).unwrap_or_default())]
            }
        };
        Ok(Response::new(v1::SloHistoryResponse { versions }))
    }

    async fn delete_slo(
        &self,
        request: Request<v1::DeleteSloRequest>,
    ) -> Result<Response<v1::DeleteSloResponse>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let id = request.into_inner().id;
        check_slo_id(&id)?;
        let (deleting, by) = (id.clone(), actor.clone());
        let deleted = self
            .store
            .call(move |s| s.delete_slo(&deleting, now_ms(), &by))
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound { what: "SLO", id })?;
        self.audit(&actor, "slo_deleted", format!("{} v{} deleted", deleted.id, deleted.version));
        Ok(Response::new(v1::DeleteSloResponse { deleted: Some(slo_out(deleted, String::new())) }))
    }
}

/// The files of an apply by `applied_by` at `applied_ms`, read all-or-nothing: each with `slo_file::parse` (file:line:column diagnostics),
/// then an id defined in two files is an error at its second definition. Every problem of every file is in
/// the one INVALID_ARGUMENT.
fn read_slo_files(
    files: Vec<v1::SloFile>,
    applied_ms: i64,
    applied_by: String,
) -> Result<SloApply, ApiError> {
    if files.is_empty() {
        return Err(ApiError::InvalidArgument("no SLO file given".into()));
    }
    let mut problems = Vec::new();
    let mut sources: Vec<SloSource> = Vec::with_capacity(files.len());
    let mut slos = Vec::new();
    for (index, file) in files.into_iter().enumerate() {
        let name = if file.file.is_empty() { format!("slos-{}.yaml", index + 1) } else { file.file };
        if name.len() > MAX_SLO_NAME {
            return Err(ApiError::InvalidArgument(format!(
                "an SLO file name is {} bytes long, at most {MAX_SLO_NAME}",
                name.len()
            )));
        }
        if sources.iter().any(|s| s.file == name) {
            return Err(ApiError::InvalidArgument(format!("{name} is given twice")));
        }
        if file.source.len() as u64 > slo_file::MAX_FILE_BYTES {
            problems.push(Diagnostic {
                file: name.clone(),
                line: 0,
                column: 0,
                message: format!(
                    "file is {} bytes, larger than the {} an SLO file may be",
                    file.source.len(),
                    slo_file::MAX_FILE_BYTES
                ),
            });
        } else {
            match slo_file::parse(&name, &file.source) {
                Ok(read) => slos.extend(read.into_iter().map(|slo| (slo, index))),
                Err(diagnostics) => problems.extend(diagnostics.0),
            }
        }
        sources.push(SloSource { file: name, text: file.source });
    }
    let defs: Vec<&slo_file::SloDef> = slos.iter().map(|(slo, _)| slo).collect();
    problems.extend(slo_file::duplicate_ids(defs));
    if slos.len() > slo_file::MAX_SLOS {
        problems.push(Diagnostic {
            file: "(all files)".into(),
            line: 0,
            column: 0,
            message: format!("{} SLOs given, at most {} are applied at once", slos.len(), slo_file::MAX_SLOS),
        });
    }
    if problems.is_empty() {
        Ok(SloApply { sources, slos, applied_ms, applied_by })
    } else {
        Err(ApiError::InvalidArgument(Diagnostics(problems).to_string()))
    }
}

/// An SLO id asked about: `service/name`, bounded.
fn check_slo_id(id: &str) -> Result<(), ApiError> {
    if id.len() > MAX_SLO_NAME {
        return Err(ApiError::InvalidArgument(format!(
            "an SLO id is {} bytes long, at most {MAX_SLO_NAME}",
            id.len()
        )));
    }
    match id.split_once('/') {
        Some((service, name)) if !service.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(ApiError::InvalidArgument(format!("SLO id {id:?} is not service/name"))),
    }
}

/// A current SLO as the version it is.
fn stored_version(s: StoredSlo) -> SloVersion {
    SloVersion {
        id: s.id,
        version: s.version,
        slo: Some(s.slo),
        file: s.file,
        source_sha256: s.source_sha256,
        applied_ms: s.applied_ms,
        applied_by: s.applied_by,
    }
}

/// An SLO version for the API; `source` is the file's text when it was asked for.
fn slo_out(v: SloVersion, source: String) -> v1::SloVersion {
    let (objective, period, sli_kind, definition_json) = match &v.slo {
        Some(slo) => (
            slo.objective,
            windows::period_text(slo.period),
            sli_kind(&slo.sli).to_string(),
            serde_json::to_string(slo).unwrap_or_default(),
        ),
        None => (0.0, String::new(), String::new(), String::new()),
    };
    v1::SloVersion {
        id: v.id,
        version: v.version,
        deleted: v.slo.is_none(),
        objective,
        period,
        sli_kind,
        file: v.file,
        applied_unix_ms: v.applied_ms,
        applied_by: v.applied_by,
        definition_json,
        source_sha256: v.source_sha256,
        source,
    }
}

/// `events`, `latency`, `error_ratio`.
fn sli_kind(sli: &Sli) -> &'static str {
    match sli {
        Sli::Events(_) => "events",
        Sli::Latency(_) => "latency",
        Sli::ErrorRatio(_) => "error_ratio",
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
