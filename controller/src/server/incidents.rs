//! `IncidentService` (issue 16) on the controller's [`Api`]: incidents opened, acknowledged, moved, noted,
//! resolved and updated by people (authenticated as `ControllerService` calls are, each change appended to
//! the audit log and told to on-call through the notifier), listed, read and aggregated; and
//! [`IncidentsFromRuns`], the run listener that opens an incident when a run whose experiment has
//! `on_failure.incident` fails. Proto types are converted here and nowhere else.

use std::sync::Arc;

use chaos_proto::v1::{self, incident_service_server::IncidentService};
use tonic::{Request, Response, Status};

use super::api::Api;
use super::error::ApiError;
use super::runs::{RunListener, now_ms};
use crate::engine;
use crate::experiment::Checked;
use crate::incident::{self, ActionItem, Change, Incident, Opening, Refused, Severity, Update, stats};
use crate::notify::{Event, IncidentChange, Notifier};
use crate::report::journal::Journal;
use crate::store::{IncidentFilter, NewAudit, RunRecord, StoreError, StoreHandle};

/// The most incidents one listing returns.
const MAX_LIST: usize = 1000;
/// The most incidents one stats call reads.
const MAX_STATS: usize = 100_000;

fn new_incident_id() -> String {
    let suffix: u16 = rand::random();
    format!("inc-{:x}-{suffix:04x}", now_ms())
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> ApiError {
        match r {
            Refused::State(reason) => ApiError::FailedPrecondition(reason),
            Refused::Invalid(reason) => ApiError::InvalidArgument(reason),
        }
    }
}

fn severity(s: &str) -> Result<Severity, ApiError> {
    s.parse().map_err(ApiError::InvalidArgument)
}

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn nonzero(ms: i64) -> Option<i64> {
    (ms != 0).then_some(ms)
}

/// An incident for the API.
pub fn incident_out(i: Incident) -> v1::Incident {
    let span = |ms: Option<i64>| ms.unwrap_or(-1);
    v1::Incident {
        time_to_detect_ms: span(i.time_to_detect_ms()),
        time_to_acknowledge_ms: span(i.time_to_acknowledge_ms()),
        time_to_recover_ms: span(i.time_to_recover_ms()),
        id: i.id,
        title: i.title,
        severity: i.severity.to_string(),
        status: i.status.to_string(),
        started_unix_ms: i.started_ms,
        detected_unix_ms: i.detected_ms.unwrap_or(0),
        acknowledged_unix_ms: i.acknowledged_ms.unwrap_or(0),
        acknowledged_by: i.acknowledged_by.unwrap_or_default(),
        resolved_unix_ms: i.resolved_ms.unwrap_or(0),
        commander: i.commander.unwrap_or_default(),
        responders: i.responders,
        services: i.services,
        root_cause: i.root_cause.unwrap_or_default(),
        action_items: i
            .action_items
            .into_iter()
            .map(|a| v1::IncidentActionItem {
                text: a.text,
                owner: a.owner.unwrap_or_default(),
                done: a.done,
            })
            .collect(),
        run_ids: i.runs,
        opened_by: i.opened_by,
        timeline: i
            .timeline
            .into_iter()
            .map(|e| v1::IncidentTimelineEntry {
                at_unix_ms: e.at_ms,
                author: e.author,
                kind: e.kind.to_string(),
                text: e.text,
            })
            .collect(),
    }
}

fn figure_out(f: &stats::Figure) -> v1::IncidentFigure {
    v1::IncidentFigure {
        count: u32::try_from(f.count).unwrap_or(u32::MAX),
        mean_ms: f.mean_ms.unwrap_or(0.0),
        p50_ms: f.p50_ms.unwrap_or(0),
        p90_ms: f.p90_ms.unwrap_or(0),
    }
}

fn group_out(g: &stats::Group) -> v1::IncidentGroupStats {
    v1::IncidentGroupStats {
        name: g.name.clone(),
        incidents: u32::try_from(g.incidents).unwrap_or(u32::MAX),
        open: u32::try_from(g.open).unwrap_or(u32::MAX),
        time_to_detect: Some(figure_out(&g.ttd)),
        time_to_acknowledge: Some(figure_out(&g.tta)),
        time_to_recover: Some(figure_out(&g.ttr)),
    }
}

/// The notification of an incident's change.
fn event(i: &Incident, change: IncidentChange, summary: String) -> Event {
    Event::Incident {
        change,
        id: i.id.clone(),
        title: i.title.clone(),
        severity: i.severity.to_string(),
        status: i.status.to_string(),
        services: i.services.clone(),
        commander: i.commander.clone(),
        summary,
    }
}

impl Api {
    /// Applies `change` by `actor` to incident `id`: stored with its timeline entries, audited as `action`,
    /// notified (resolved, or updated).
    async fn change_incident(
        &self,
        actor: String,
        id: String,
        action: &'static str,
        change: Change,
    ) -> Result<Incident, ApiError> {
        if id.is_empty() {
            return Err(ApiError::InvalidArgument("give the incident's id".into()));
        }
        if let Change::LinkRun(run) = &change {
            self.require_run(run).await?;
        }
        let now = now_ms();
        let (incident, entries) = self
            .store
            .call({
                let (id, actor, change) = (id.clone(), actor.clone(), change.clone());
                move |s| s.update_incident(&id, &change, now, &actor)
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => ApiError::NotFound { what: "incident", id: id.clone() },
                e => ApiError::Store(e),
            })??;
        let summary: Vec<String> = entries.iter().map(|e| format!("{}: {}", e.kind, e.text)).collect();
        let summary = summary.join("; ");
        self.audit(&actor, action, format!("{id}: {summary}"));
        let kind = if matches!(change, Change::Resolve { .. })
            || entries.iter().any(|e| e.kind == incident::EntryKind::Resolved)
        {
            IncidentChange::Resolved
        } else {
            IncidentChange::Updated
        };
        self.notifier.emit(event(&incident, kind, summary));
        Ok(incident)
    }

    async fn require_run(&self, run: &str) -> Result<(), ApiError> {
        let found = self
            .store
            .call({
                let run = run.to_string();
                move |s| s.run(&run)
            })
            .await?;
        found.map(|_| ()).ok_or_else(|| ApiError::NotFound { what: "run", id: run.to_string() })
    }

    async fn open_incident_as(
        &self,
        actor: String,
        req: v1::OpenIncidentRequest,
    ) -> Result<Incident, ApiError> {
        let now = now_ms();
        let opening = Opening {
            title: req.title,
            severity: severity(&req.severity)?,
            started_ms: nonzero(req.started_unix_ms).unwrap_or(now),
            detected_ms: Some(nonzero(req.detected_unix_ms).unwrap_or(now)),
            commander: some(req.commander),
            responders: req.responders,
            services: req.services,
            summary: some(req.summary),
        };
        if req.run_ids.len() > incident::MAX_ITEMS {
            return Err(ApiError::InvalidArgument(format!(
                "at most {} runs may be linked",
                incident::MAX_ITEMS
            )));
        }
        for run in &req.run_ids {
            self.require_run(run).await?;
        }
        let mut incident = Incident::open(new_incident_id(), opening, now, &actor)?;
        for run in req.run_ids {
            incident.apply(&Change::LinkRun(run), now, &actor)?;
        }
        let stored = incident.clone();
        self.store.call(move |s| s.insert_incident(&stored)).await?;
        self.audit(
            &actor,
            "incident_opened",
            format!(
                "{} ({}, {}): {}",
                incident.id,
                incident.severity,
                incident.services.join(", "),
                incident.title
            ),
        );
        self.notifier.emit(event(&incident, IncidentChange::Opened, format!("opened by {actor}")));
        Ok(incident)
    }
}

fn update_from(req: v1::UpdateIncidentRequest) -> Result<(Update, Vec<String>), ApiError> {
    let update = Update {
        title: req.title,
        severity: req.severity.as_deref().map(severity).transpose()?,
        commander: req.commander,
        add_responders: req.add_responders,
        remove_responders: req.remove_responders,
        add_services: req.add_services,
        remove_services: req.remove_services,
        root_cause: req.root_cause,
        add_action_items: req
            .add_action_items
            .into_iter()
            .map(|a| ActionItem { text: a.text, owner: some(a.owner), done: false })
            .collect(),
        done_action_items: req.done_action_items.into_iter().map(|n| n as usize).collect(),
    };
    Ok((update, req.link_run_ids))
}

#[tonic::async_trait]
impl IncidentService for Api {
    async fn open_incident(
        &self,
        request: Request<v1::OpenIncidentRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let incident = self.open_incident_as(actor, request.into_inner()).await?;
        Ok(Response::new(incident_out(incident)))
    }

    async fn ack_incident(
        &self,
        request: Request<v1::AckIncidentRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let change = Change::Ack { note: some(req.note) };
        let incident = self.change_incident(actor, req.id, "incident_acknowledged", change).await?;
        Ok(Response::new(incident_out(incident)))
    }

    async fn set_incident_status(
        &self,
        request: Request<v1::SetIncidentStatusRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let to = req.status.parse().map_err(ApiError::InvalidArgument)?;
        let change = Change::Status { to, reopen: req.reopen, note: some(req.note) };
        let action = if req.reopen { "incident_reopened" } else { "incident_status" };
        let incident = self.change_incident(actor, req.id, action, change).await?;
        Ok(Response::new(incident_out(incident)))
    }

    async fn add_incident_note(
        &self,
        request: Request<v1::AddIncidentNoteRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let incident = self.change_incident(actor, req.id, "incident_note", Change::Note(req.text)).await?;
        Ok(Response::new(incident_out(incident)))
    }

    async fn resolve_incident(
        &self,
        request: Request<v1::ResolveIncidentRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let change = Change::Resolve { root_cause: some(req.root_cause), note: some(req.note) };
        let incident = self.change_incident(actor, req.id, "incident_resolved", change).await?;
        Ok(Response::new(incident_out(incident)))
    }

    async fn update_incident(
        &self,
        request: Request<v1::UpdateIncidentRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let id = req.id.clone();
        let (update, links) = update_from(req)?;
        let mut incident = None;
        if update != Update::default() {
            incident = Some(
                self.change_incident(actor.clone(), id.clone(), "incident_updated", Change::Update(update))
                    .await?,
            );
        }
        if links.len() > incident::MAX_ITEMS {
            return Err(ApiError::InvalidArgument(format!(
                "at most {} runs may be linked",
                incident::MAX_ITEMS
            ))
            .into());
        }
        for run in links {
            let linked = self
                .change_incident(actor.clone(), id.clone(), "incident_run_linked", Change::LinkRun(run))
                .await?;
            incident = Some(linked);
        }
        let incident = incident.ok_or_else(|| {
            ApiError::InvalidArgument("nothing to change: give at least one field to update".into())
        })?;
        Ok(Response::new(incident_out(incident)))
    }

    async fn list_incidents(
        &self,
        request: Request<v1::ListIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let filter = IncidentFilter {
            status: some(req.status).map(|s| s.parse()).transpose().map_err(ApiError::InvalidArgument)?,
            severity: some(req.severity).map(|s| severity(&s)).transpose()?,
            service: some(req.service),
            since_ms: nonzero(req.since_unix_ms),
            until_ms: nonzero(req.until_unix_ms),
            limit: if req.limit == 0 { 100 } else { (req.limit as usize).min(MAX_LIST) },
        };
        let incidents = self.store.call(move |s| s.incidents(&filter)).await.map_err(ApiError::from)?;
        Ok(Response::new(v1::ListIncidentsResponse {
            incidents: incidents.into_iter().map(incident_out).collect(),
        }))
    }

    async fn get_incident(
        &self,
        request: Request<v1::GetIncidentRequest>,
    ) -> Result<Response<v1::Incident>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let id = request.into_inner().id;
        let found = self
            .store
            .call({
                let id = id.clone();
                move |s| s.incident(&id)
            })
            .await
            .map_err(ApiError::from)?;
        let incident = found.ok_or(ApiError::NotFound { what: "incident", id })?;
        Ok(Response::new(incident_out(incident)))
    }

    async fn incident_stats(
        &self,
        request: Request<v1::IncidentStatsRequest>,
    ) -> Result<Response<v1::IncidentStatsResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let until = nonzero(req.until_unix_ms).unwrap_or_else(now_ms);
        if req.since_unix_ms >= until {
            return Err(ApiError::InvalidArgument(
                "the period is empty: `since` must be before `until`".into(),
            )
            .into());
        }
        let filter = IncidentFilter {
            severity: some(req.severity).map(|s| severity(&s)).transpose()?,
            service: some(req.service),
            since_ms: Some(req.since_unix_ms),
            until_ms: Some(until),
            limit: MAX_STATS,
            ..IncidentFilter::default()
        };
        let incidents = self.store.call(move |s| s.incidents(&filter)).await.map_err(ApiError::from)?;
        let s = stats::stats(&incidents, req.since_unix_ms, until);
        Ok(Response::new(v1::IncidentStatsResponse {
            since_unix_ms: s.from_ms,
            until_unix_ms: s.to_ms,
            overall: Some(group_out(&s.overall)),
            by_service: s.by_service.iter().map(group_out).collect(),
            by_severity: s.by_severity.iter().map(group_out).collect(),
        }))
    }
}

/// Opens an incident when a run fails whose experiment has `on_failure.incident` ([`incident::from_run`]
/// says which runs and what the incident holds). Registered with `Runs::listen`; queues its writes with
/// `StoreHandle::submit`, so a caller reading after the run's `finished` event sees the incident.
pub struct IncidentsFromRuns {
    pub store: StoreHandle,
    pub notifier: Notifier,
}

impl IncidentsFromRuns {
    pub fn new(store: StoreHandle, notifier: Notifier) -> Arc<IncidentsFromRuns> {
        Arc::new(IncidentsFromRuns { store, notifier })
    }
}

impl RunListener for IncidentsFromRuns {
    fn run_finished(&self, run: &RunRecord, exp: &Checked, outcome: &engine::Outcome) {
        if !incident::from_run::opens_incident(outcome.verdict) {
            return;
        }
        let from_experiment = exp.on_failure.as_ref().and_then(|f| f.incident.clone());
        if from_experiment.is_none() && run.schedule_id.is_none() {
            return;
        }
        let (run, title, verdict) = (run.clone(), exp.title.clone(), outcome.verdict);
        let notifier = self.notifier.clone();
        // Decided on the store's queue: a schedule's own `on_failure` (read there) replaces the experiment's,
        // and whatever is read after the run's `finished` event sees the incident.
        self.store.submit("an incident opened by a failed run", move |s| {
            let template = match &run.schedule_id {
                Some(schedule) => match s.schedule_on_failure(schedule)? {
                    Some(own) => own.incident,
                    None => from_experiment,
                },
                None => from_experiment,
            };
            let Some(template) = template else { return Ok(()) };
            let journal = run_journal(&run, &title, verdict);
            let now = now_ms();
            let incident = match incident::from_run::incident_from_run(
                new_incident_id(),
                &template,
                &run.id,
                &journal,
                run.started_ms,
                now,
            ) {
                Ok(i) => i,
                Err(e) => {
                    tracing::error!(run = %run.id, error = %e, "could not open the incident the run's on_failure asks for");
                    return Ok(());
                }
            };
            s.insert_incident(&incident)?;
            let audit = NewAudit {
                at_ms: now,
                actor: format!("run:{}", run.id),
                action: "incident_opened".into(),
                run_id: Some(run.id.clone()),
                detail: format!(
                    "{} ({}, {}): {}",
                    incident.id,
                    incident.severity,
                    incident.services.join(", "),
                    incident.title
                ),
                ..NewAudit::default()
            };
            s.append_audit(&audit)?;
            tracing::info!(run = %run.id, incident = %incident.id, severity = %incident.severity, "a failed run opened an incident");
            notifier.emit(event(&incident, IncidentChange::Opened, format!("opened by run {}", run.id)));
            Ok(())
        });
    }
}

/// The run's journal (an empty one with the run's title, verdict and reasons when it has none or it does not
/// read: the incident then has no timeline from the run).
fn run_journal(run: &RunRecord, title: &str, verdict: crate::report::journal::Verdict) -> Journal {
    let mut journal = match run.journal_json.as_deref().map(serde_json::from_str::<Journal>).transpose() {
        Ok(Some(j)) => j,
        Ok(None) => Journal::default(),
        Err(e) => {
            tracing::error!(run = %run.id, error = %e, "the run's journal does not read: its incident has no run timeline");
            Journal::default()
        }
    };
    if journal.experiment.title.is_empty() {
        journal.experiment.title = title.to_string();
        journal.verdict = verdict;
    }
    if journal.reasons.is_empty() {
        journal.reasons = run.reasons.clone();
    }
    journal
}

/// The service for the gRPC server, with the controller service's message sizes.
pub fn service(
    api: &Api,
    max_message_bytes: usize,
) -> v1::incident_service_server::IncidentServiceServer<Api> {
    v1::incident_service_server::IncidentServiceServer::new(api.clone())
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes * 4)
}
