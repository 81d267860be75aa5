//! `GameDayService`: game days run through the controller. A plan ([`crate::gameday::plan`]) arrives with
//! every experiment it names inline; everything is checked before anything runs, then a task runs the
//! scenarios in order through [`super::runs::Runs`] (each a normal run: locks, blast-radius caps, the budget
//! gate, the audit log), waits for each run's end, pauses, and goes on or stops per `on_failure`. A halted
//! run (by hand, by halt-all or at shutdown) halts the game day; a frozen controller stops it before its next
//! scenario. Records and notes (append-only) live in the store ([`crate::store::GameDayStore`]); start, notes
//! and halts are audited.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos_proto::v1::{
    self, game_day_service_server::GameDayService, game_day_service_server::GameDayServiceServer,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::api::Api;
use super::error::ApiError;
use super::runs::{StartRequest, internal, now_ms};
use crate::experiment::{Diagnostic, Diagnostics};
use crate::fleet::lock;
use crate::gameday::plan::{self, OnFailure};
use crate::gameday::review::{IncidentInfo, Review};
use crate::report::journal::Journal;
use crate::store::{
    ExperimentRecord, GameDayRecord, LogLine, NoteRecord, RunState, ScenarioRecord, StoreError,
};

/// The longest note, in bytes, and the longest author name.
pub const MAX_NOTE_BYTES: usize = 4096;
pub const MAX_AUTHOR_BYTES: usize = 128;
/// The most game days one ListGameDays returns.
const MAX_LIST: usize = 1000;
/// How long HaltGameDay waits for the current run's reverts.
const HALT_WAIT: Duration = Duration::from_secs(60);

/// A game day in progress.
struct Active {
    halt: CancellationToken,
    /// Why it was halted, set once.
    halted: Mutex<Option<String>>,
    /// The run of the scenario in progress.
    run: Mutex<Option<String>>,
    /// Bumped after every stored change, for watchers.
    changed: watch::Sender<u64>,
    done: CancellationToken,
}

/// The game days of this controller.
pub struct GameDays {
    api: Api,
    active: Mutex<HashMap<String, Arc<Active>>>,
}

/// The gRPC service over [`GameDays`].
#[derive(Clone)]
pub struct GameDayServer(Arc<GameDays>);

/// The service for the controller's server; game days its previous process left running are marked
/// `interrupted` first (queued before any other store call of this service).
pub fn service(api: Api, max_message_bytes: usize) -> GameDayServiceServer<GameDayServer> {
    api.store.submit("interrupting game days", |s| s.interrupt_gamedays(now_ms()).map(drop));
    GameDayServiceServer::new(GameDayServer(Arc::new(GameDays { api, active: Mutex::new(HashMap::new()) })))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes.saturating_mul(16))
}

fn new_id(prefix: &str) -> String {
    let suffix: u16 = rand::random();
    format!("{prefix}-{:x}-{suffix:04x}", now_ms())
}

/// One scenario's experiment, checked and ready to submit.
struct Prepared {
    file: String,
    source: String,
    vars: Vec<(String, String)>,
    title: String,
}

impl GameDays {
    /// Checks the plan and its experiments (every problem in one INVALID_ARGUMENT).
    fn prepare(&self, req: &v1::StartGameDayRequest) -> Result<(plan::Plan, Vec<Prepared>), ApiError> {
        let name = if req.file.is_empty() { "gameday.yaml".to_string() } else { req.file.clone() };
        let plan = plan::parse(&name, &req.plan).map_err(|d| ApiError::InvalidArgument(d.to_string()))?;
        let mut overrides: Vec<(String, String)> = req.vars.clone().into_iter().collect();
        overrides.sort();
        let mut all_declared = Vec::new();
        if req.experiments.len() > plan::MAX_SCENARIOS {
            return Err(ApiError::InvalidArgument(format!(
                "{} experiments sent, at most {}",
                req.experiments.len(),
                plan::MAX_SCENARIOS
            )));
        }
        let mut problems = Vec::new();
        let mut prepared = Vec::new();
        for scenario in &plan.scenarios {
            let Some(sent) = req.experiments.iter().find(|e| e.path == scenario.experiment) else {
                problems.push(Diagnostic {
                    file: name.clone(),
                    line: 0,
                    column: 0,
                    message: format!(
                        "scenario {:?}: experiment {:?} was not sent with the plan",
                        scenario.name, scenario.experiment
                    ),
                });
                continue;
            };
            let file = if sent.file.is_empty() { sent.path.clone() } else { sent.file.clone() };
            let declared = plan::declared_vars(&file, &sent.source);
            let vars = plan::scenario_vars(scenario, &declared, &overrides);
            all_declared.push(declared);
            let checked = self.api.runs.parse(&file, &sent.source, &vars).and_then(|exp| {
                self.api.runs.check_local_effects(&exp)?;
                Ok(exp)
            });
            match checked {
                Ok(exp) => prepared.push(Prepared {
                    file,
                    source: sent.source.clone(),
                    vars,
                    title: exp.title.clone(),
                }),
                Err(e) => problems.push(Diagnostic {
                    file: file.clone(),
                    line: 0,
                    column: 0,
                    message: format!("scenario {:?}: {e}", scenario.name),
                }),
            }
        }
        for name in plan::unused_overrides(&overrides, &all_declared) {
            problems.push(Diagnostic {
                file: "vars".into(),
                line: 0,
                column: 0,
                message: format!("{name}: no experiment of the plan declares it in its `vars:`"),
            });
        }
        if problems.is_empty() {
            Ok((plan, prepared))
        } else {
            Err(ApiError::InvalidArgument(Diagnostics(problems).to_string()))
        }
    }

    async fn start(
        self: &Arc<Self>,
        actor: String,
        req: v1::StartGameDayRequest,
    ) -> Result<GameDayRecord, Status> {
        if let Some(f) = self.api.runs.frozen() {
            return Err(ApiError::FailedPrecondition(format!(
                "the controller is frozen (by {}: {}): no game day starts until `chaos unfreeze`",
                f.by, f.reason
            ))
            .into());
        }
        let (plan, prepared) = self.prepare(&req)?;
        let now = now_ms();
        let record = GameDayRecord {
            id: new_id("g"),
            title: plan.title.clone(),
            state: crate::store::GAMEDAY_RUNNING.to_string(),
            started_ms: now,
            finished_ms: None,
            actor: actor.clone(),
            reason: None,
            plan_file: if req.file.is_empty() { "gameday.yaml".into() } else { req.file.clone() },
            scenarios: plan
                .scenarios
                .iter()
                .map(|s| ScenarioRecord {
                    name: s.name.clone(),
                    experiment: s.experiment.clone(),
                    state: "pending".into(),
                    ..ScenarioRecord::default()
                })
                .collect(),
            plan,
            log: vec![LogLine { at_ms: now, kind: "gameday".into(), text: "game day started".into() }],
            notes: Vec::new(),
        };
        let stored = record.clone();
        self.api.store.call(move |s| s.insert_gameday(&stored)).await.map_err(internal)?;
        self.api.audit(
            &actor,
            "gameday_started",
            format!("{} {:?}: {} scenarios", record.id, record.title, record.scenarios.len()),
        );
        let active = Arc::new(Active {
            halt: CancellationToken::new(),
            halted: Mutex::new(None),
            run: Mutex::new(None),
            changed: watch::channel(0).0,
            done: CancellationToken::new(),
        });
        lock(&self.active).insert(record.id.clone(), active.clone());
        let me = self.clone();
        let running = record.clone();
        tokio::spawn(async move {
            let id = running.id.clone();
            me.drive(running, prepared, &active).await;
            lock(&me.active).remove(&id);
            active.done.cancel();
        });
        Ok(record)
    }

    /// Stores `g` and tells the watchers.
    async fn save(&self, g: &GameDayRecord, active: &Active) {
        let stored = g.clone();
        if let Err(e) = self.api.store.call(move |s| s.update_gameday(&stored)).await {
            tracing::error!(gameday = %g.id, error = %e, "could not store the game day's progress");
        }
        active.changed.send_modify(|n| *n += 1);
    }

    fn log(g: &mut GameDayRecord, kind: &str, text: String) {
        tracing::info!(gameday = %g.id, kind, "{text}");
        g.log.push(LogLine { at_ms: now_ms(), kind: kind.into(), text });
    }

    /// Waits `pause` unless the game day is halted (by its own halt or a halt-all) or the controller frozen first;
    /// false when it was.
    async fn pause(&self, pause: Duration, active: &Active) -> bool {
        let frozen = async {
            loop {
                if self.api.runs.frozen().is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let mut halt_alls = self.api.runs.halt_alls();
        tokio::select! {
            () = tokio::time::sleep(pause) => true,
            () = active.halt.cancelled() => false,
            () = frozen => false,
            Ok(()) = halt_alls.changed() => {
                let why = halt_alls.borrow().1.clone();
                lock(&active.halted).get_or_insert(why);
                false
            }
        }
    }

    /// Why the game day must not go on, if it must not.
    fn stop_reason(&self, active: &Active) -> Option<String> {
        let halted = lock(&active.halted).clone();
        if halted.is_some() {
            return halted;
        }
        self.api.runs.frozen().map(|f| format!("the controller was frozen (by {}: {})", f.by, f.reason))
    }

    /// Runs the scenarios in order.
    async fn drive(&self, mut g: GameDayRecord, prepared: Vec<Prepared>, active: &Active) {
        let actor = format!("gameday:{}", g.id);
        let mut end: Option<(&str, String)> = None;
        for (i, exp) in prepared.into_iter().enumerate() {
            let scenario = g.plan.scenarios[i].clone();
            if let Some(pause) = scenario.pause_before {
                Self::log(&mut g, "pause", format!("pausing {} before {:?}", pause, scenario.name));
                self.save(&g, active).await;
                self.pause(pause.0, active).await;
            }
            if let Some(why) = self.stop_reason(active) {
                end = Some(("halted", why));
                break;
            }
            g.scenarios[i].state = "running".into();
            g.scenarios[i].started_ms = Some(now_ms());
            Self::log(&mut g, "scenario", format!("scenario {}: {:?} ({})", i + 1, scenario.name, exp.title));
            let record = ExperimentRecord {
                id: new_id("e"),
                title: exp.title.clone(),
                file: exp.file.clone(),
                source: exp.source.clone(),
                vars: exp.vars.iter().cloned().collect(),
                created_ms: now_ms(),
            };
            let stored = record.clone();
            let started = match self.api.store.call(move |s| s.insert_experiment(&stored)).await {
                Ok(()) => {
                    let start = StartRequest {
                        experiment: record,
                        seed: None,
                        dry_run: false,
                        actor: actor.clone(),
                        schedule_id: None,
                    };
                    self.api.runs.start(start).await
                }
                Err(e) => Err(internal(e)),
            };
            let run = match started {
                Ok(run) => run,
                Err(status) => {
                    let s = &mut g.scenarios[i];
                    s.state = "not-started".into();
                    s.finished_ms = Some(now_ms());
                    s.reasons = vec![status.message().to_string()];
                    Self::log(
                        &mut g,
                        "scenario",
                        format!("scenario {:?} could not start: {}", scenario.name, status.message()),
                    );
                    if let Some(why) = self.stop_reason(active) {
                        end = Some(("halted", why));
                        break;
                    }
                    if scenario.on_failure == OnFailure::Stop {
                        end = Some((
                            "stopped",
                            format!("scenario {:?} could not start (on_failure: stop)", scenario.name),
                        ));
                        break;
                    }
                    self.save(&g, active).await;
                    continue;
                }
            };
            g.scenarios[i].run_id = Some(run.id.clone());
            Self::log(&mut g, "run", format!("run {} started", run.id));
            *lock(&active.run) = Some(run.id.clone());
            self.save(&g, active).await;
            // A halt that came while the run was starting.
            let halted = lock(&active.halted).clone();
            if let Some(why) = halted {
                let _ = self.api.runs.halt(&run.id, &actor, &why, Duration::ZERO).await;
            }
            let finished = self.wait_for_run(&run.id).await;
            *lock(&active.run) = None;
            let s = &mut g.scenarios[i];
            match finished {
                Some(r) => {
                    s.state = r.state.to_string();
                    s.verdict = r.verdict.clone();
                    s.reasons = r.reasons.clone();
                    s.finished_ms = r.finished_ms;
                }
                None => {
                    s.state = RunState::Interrupted.to_string();
                    s.finished_ms = Some(now_ms());
                }
            }
            let state = s.state.clone();
            let verdict = s.verdict.clone().unwrap_or_default();
            Self::log(&mut g, "run", format!("run {} ended {state} ({verdict})", run.id));
            if state == RunState::Halted.to_string() || state == RunState::Interrupted.to_string() {
                let why =
                    lock(&active.halted).clone().unwrap_or_else(|| format!("run {} was {state}", run.id));
                end = Some(("halted", why));
                break;
            }
            if verdict != "passed" && scenario.on_failure == OnFailure::Stop {
                end = Some((
                    "stopped",
                    format!("scenario {:?} ended {verdict} (on_failure: stop)", scenario.name),
                ));
                break;
            }
            if let Some(pause) = scenario.pause_after
                && i + 1 < g.scenarios.len()
            {
                Self::log(&mut g, "pause", format!("pausing {} after {:?}", pause, scenario.name));
                self.save(&g, active).await;
                self.pause(pause.0, active).await;
            } else {
                self.save(&g, active).await;
            }
        }
        for s in &mut g.scenarios {
            if s.state == "pending" {
                s.state = "skipped".into();
            }
        }
        let (state, reason) = match end {
            Some((state, why)) => (state, Some(why)),
            None => ("completed", None),
        };
        g.state = state.to_string();
        g.reason = reason.clone();
        g.finished_ms = Some(now_ms());
        let line = match &reason {
            Some(why) => format!("game day {state}: {why}"),
            None => format!("game day {state}"),
        };
        Self::log(&mut g, "gameday", line);
        self.save(&g, active).await;
    }

    /// Waits for run `id` to finish; its stored record, or `None` when its watch broke.
    async fn wait_for_run(&self, id: &str) -> Option<crate::store::RunRecord> {
        match self.api.runs.watch(id).await {
            Ok(mut events) => {
                while let Some(event) = events.recv().await {
                    match event {
                        Ok(e) if e.kind == "finished" => break,
                        Ok(_) => {}
                        Err(status) => {
                            tracing::warn!(run = id, error = %status, "watching a game day's run failed");
                            break;
                        }
                    }
                }
            }
            Err(status) => tracing::warn!(run = id, error = %status, "cannot watch a game day's run"),
        }
        let stored = id.to_string();
        match self.api.store.call(move |s| s.run(&stored)).await {
            Ok(Some(run)) if run.finished_ms.is_some() => Some(run),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(run = id, error = %e, "cannot read a game day's run");
                None
            }
        }
    }

    async fn stored(&self, id: &str) -> Result<GameDayRecord, Status> {
        let wanted = id.to_string();
        self.api
            .store
            .call(move |s| s.gameday(&wanted))
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound { what: "game day", id: id.to_string() }.into())
    }

    /// The review's data: each scenario's journal and incidents.
    async fn review(&self, g: &GameDayRecord) -> Result<Review, Status> {
        let ids: Vec<Option<String>> = g.scenarios.iter().map(|s| s.run_id.clone()).collect();
        let runs = self
            .api
            .store
            .call(move |s| {
                let mut out = Vec::new();
                for id in ids {
                    let Some(id) = id else {
                        out.push((None, Vec::new()));
                        continue;
                    };
                    let journal = s
                        .run(&id)?
                        .and_then(|r| r.journal_json)
                        .and_then(|j| serde_json::from_str::<Journal>(&j).ok());
                    let incidents: Vec<IncidentInfo> =
                        s.incidents_for_run(&id)?.into_iter().map(IncidentInfo::from).collect();
                    out.push((journal, incidents));
                }
                Ok::<_, StoreError>(out)
            })
            .await
            .map_err(internal)?;
        Ok(Review::new(g, runs))
    }

    /// The game day a note without an id goes to: the only one running.
    fn running_one(&self) -> Result<String, ApiError> {
        let mut ids: Vec<String> = lock(&self.active).keys().cloned().collect();
        ids.sort();
        match ids.len() {
            1 => Ok(ids.remove(0)),
            0 => Err(ApiError::FailedPrecondition("no game day is running: give the game day's id".into())),
            _ => Err(ApiError::FailedPrecondition(format!(
                "{} game days are running ({}): give the game day's id",
                ids.len(),
                ids.join(", ")
            ))),
        }
    }
}

fn scenario_out(s: &ScenarioRecord) -> v1::GameDayScenario {
    v1::GameDayScenario {
        name: s.name.clone(),
        experiment: s.experiment.clone(),
        state: s.state.clone(),
        run_id: s.run_id.clone().unwrap_or_default(),
        verdict: s.verdict.clone().unwrap_or_default(),
        reasons: s.reasons.clone(),
        started_unix_ms: s.started_ms.unwrap_or(0),
        finished_unix_ms: s.finished_ms.unwrap_or(0),
    }
}

fn note_out(n: &NoteRecord) -> v1::GameDayNoteEntry {
    v1::GameDayNoteEntry { at_unix_ms: n.at_ms, author: n.author.clone(), text: n.text.clone() }
}

/// A game day for the API; `review_json` only for GetGameDay.
fn gameday_out(g: &GameDayRecord, review_json: String) -> v1::GameDay {
    v1::GameDay {
        id: g.id.clone(),
        title: g.title.clone(),
        state: g.state.clone(),
        started_unix_ms: g.started_ms,
        finished_unix_ms: g.finished_ms.unwrap_or(0),
        actor: g.actor.clone(),
        reason: g.reason.clone().unwrap_or_default(),
        scenarios: g.scenarios.iter().map(scenario_out).collect(),
        notes: g.notes.iter().map(note_out).collect(),
        review_json,
    }
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl GameDayService for GameDayServer {
    async fn start_game_day(
        &self,
        request: Request<v1::StartGameDayRequest>,
    ) -> Result<Response<v1::GameDay>, Status> {
        let actor = self.0.api.tokens.api_principal(request.metadata())?;
        let g = self.0.start(actor, request.into_inner()).await?;
        Ok(Response::new(gameday_out(&g, String::new())))
    }

    type WatchGameDayStream = Stream_<v1::GameDayEvent>;

    async fn watch_game_day(
        &self,
        request: Request<v1::WatchGameDayRequest>,
    ) -> Result<Response<Self::WatchGameDayStream>, Status> {
        self.0.api.tokens.api_principal(request.metadata())?;
        let id = request.into_inner().id;
        // Subscribed before the first read: no change between them is missed.
        let mut changes = lock(&self.0.active).get(&id).map(|a| a.changed.subscribe());
        self.0.stored(&id).await?;
        let (tx, rx) = mpsc::channel(64);
        let days = self.0.clone();
        tokio::spawn(async move {
            // Log lines and notes sent so far; `seq` numbers both.
            let (mut lines, mut notes, mut seq) = (0usize, 0usize, 0u64);
            loop {
                let g = match days.stored(&id).await {
                    Ok(g) => g,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let new_lines = g.log.iter().skip(lines).map(|l| (l.at_ms, l.kind.clone(), l.text.clone()));
                let new_notes = g
                    .notes
                    .iter()
                    .skip(notes)
                    .map(|n| (n.at_ms, "note".to_string(), format!("note by {}: {}", n.author, n.text)));
                let mut fresh: Vec<(i64, String, String)> = new_lines.chain(new_notes).collect();
                fresh.sort_by_key(|(at, _, _)| *at);
                (lines, notes) = (g.log.len(), g.notes.len());
                for (at_ms, kind, line) in fresh {
                    seq += 1;
                    let event = v1::GameDayEvent { seq, at_unix_ms: at_ms, kind, line, gameday: None };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                let live = changes.is_some() && g.state == crate::store::GAMEDAY_RUNNING;
                if !live {
                    let event = v1::GameDayEvent {
                        seq: seq + 1,
                        at_unix_ms: g.finished_ms.unwrap_or_else(now_ms),
                        kind: "finished".into(),
                        line: format!("game day {}", g.state),
                        gameday: Some(gameday_out(&g, String::new())),
                    };
                    let _ = tx.send(Ok(event)).await;
                    return;
                }
                if let Some(rx) = changes.as_mut()
                    && rx.changed().await.is_err()
                {
                    // The game day ended (its sender dropped): one last read.
                    changes = None;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn game_day_note(
        &self,
        request: Request<v1::GameDayNoteRequest>,
    ) -> Result<Response<v1::GameDayNoteResponse>, Status> {
        let actor = self.0.api.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let text = req.text.trim().to_string();
        if text.is_empty() {
            return Err(ApiError::InvalidArgument("a note needs a text".into()).into());
        }
        if text.len() > MAX_NOTE_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "a note is {} bytes long, at most {MAX_NOTE_BYTES}",
                text.len()
            ))
            .into());
        }
        let author = if req.author.trim().is_empty() { actor.clone() } else { req.author.trim().to_string() };
        if author.len() > MAX_AUTHOR_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "an author name is {} bytes long, at most {MAX_AUTHOR_BYTES}",
                author.len()
            ))
            .into());
        }
        let id = if req.gameday_id.is_empty() { self.0.running_one()? } else { req.gameday_id };
        let note = NoteRecord { at_ms: now_ms(), author, text };
        let (stored, target) = (note.clone(), id.clone());
        self.0
            .api
            .store
            .call(move |s| s.append_gameday_note(&target, &stored))
            .await
            .map_err(ApiError::from)?;
        self.0.api.audit(&actor, "gameday_note", format!("{id} by {}: {}", note.author, note.text));
        // Its watchers show it.
        if let Some(active) = lock(&self.0.active).get(&id) {
            active.changed.send_modify(|n| *n += 1);
        }
        Ok(Response::new(v1::GameDayNoteResponse { gameday_id: id, note: Some(note_out(&note)) }))
    }

    async fn get_game_day(
        &self,
        request: Request<v1::GetGameDayRequest>,
    ) -> Result<Response<v1::GameDay>, Status> {
        self.0.api.tokens.api_principal(request.metadata())?;
        let g = self.0.stored(&request.into_inner().id).await?;
        let review = self.0.review(&g).await?;
        let json = serde_json::to_string(&review)
            .map_err(|e| Status::internal(format!("encoding the game day's review: {e}")))?;
        Ok(Response::new(gameday_out(&g, json)))
    }

    async fn list_game_days(
        &self,
        request: Request<v1::ListGameDaysRequest>,
    ) -> Result<Response<v1::ListGameDaysResponse>, Status> {
        self.0.api.tokens.api_principal(request.metadata())?;
        let limit = match request.into_inner().limit {
            0 => 100,
            n => (n as usize).min(MAX_LIST),
        };
        let list = self.0.api.store.call(move |s| s.gamedays(limit)).await.map_err(internal)?;
        let gamedays = list.iter().map(|g| gameday_out(g, String::new())).collect();
        Ok(Response::new(v1::ListGameDaysResponse { gamedays }))
    }

    async fn halt_game_day(
        &self,
        request: Request<v1::HaltGameDayRequest>,
    ) -> Result<Response<v1::GameDay>, Status> {
        let actor = self.0.api.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let reason = if req.reason.trim().is_empty() { "halted".to_string() } else { req.reason };
        let active = lock(&self.0.active).get(&req.id).cloned();
        let Some(active) = active else {
            // Finished already (or unknown: NOT_FOUND).
            let g = self.0.stored(&req.id).await?;
            return Ok(Response::new(gameday_out(&g, String::new())));
        };
        let why = format!("halted by {actor}: {reason}");
        lock(&active.halted).get_or_insert(why.clone());
        active.halt.cancel();
        self.0.api.audit(&actor, "gameday_halted", format!("{}: {reason}", req.id));
        let run = lock(&active.run).clone();
        if let Some(run) = run {
            self.0.api.runs.halt(&run, &actor, &why, HALT_WAIT).await?;
        }
        let _ = tokio::time::timeout(HALT_WAIT, active.done.cancelled()).await;
        let g = self.0.stored(&req.id).await?;
        Ok(Response::new(gameday_out(&g, String::new())))
    }
}
