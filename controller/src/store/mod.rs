//! What the controller persists (experiments, runs and their events, schedules, agents, the append-only audit
//! log, the freeze flag and the SLO registry with every version of every SLO), behind the [`Store`] trait so that another database can follow the embedded
//! SQLite one ([`SqliteStore`]).
//!
//! The records are plain data: the store checks uniqueness and that a referenced run exists, nothing else.
//! Which states a run may move through, and what an audit entry means, is the caller's business.

mod gamedays;
mod handle;
mod incidents;
mod notify_log;
mod sqlite;

use std::collections::BTreeMap;

use crate::slo_file::SloDef;

pub use gamedays::{
    GameDayRecord, GameDayStore, LogLine, NoteRecord, RUNNING as GAMEDAY_RUNNING, ScenarioRecord,
};
pub use handle::StoreHandle;
pub use incidents::{IncidentFilter, IncidentRef, IncidentStore};
pub use notify_log::{AttemptRecord, DeliveryFilter, DeliveryRecord, NewDelivery, NotifyStore};
pub use sqlite::SqliteStore;

/// The schema changes since version 1, in order: `MIGRATIONS[n]` takes a database from version `n + 1` to
/// `n + 2`. A new database gets the version 1 schema, then each of them. Each part of the store keeps its own.
const MIGRATIONS: [&str; 4] =
    [sqlite::SLO_REGISTRY, incidents::MIGRATION, gamedays::MIGRATION, notify_log::MIGRATION];

/// The result of every store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, corruption, locked): the message says which operation.
    #[error("store: {0}")]
    Backend(String),
    /// The record to change does not exist (`what` is `run`, `schedule`, ...).
    #[error("{what} {id:?} not found")]
    NotFound {
        /// The kind of record: `run`, `schedule`.
        what: &'static str,
        /// The id that was looked for.
        id: String,
    },
    /// A uniqueness rule was broken (a schedule name taken, an id reused).
    #[error("{0}")]
    Conflict(String),
}

/// An experiment as submitted: its source is kept verbatim, so a run can always be traced to what was run.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentRecord {
    /// Unique id, assigned by the controller.
    pub id: String,
    /// The experiment's title, for listings.
    pub title: String,
    /// The file name it was submitted as, for messages.
    pub file: String,
    /// The experiment text exactly as submitted.
    pub source: String,
    /// The variables it was submitted with.
    pub vars: BTreeMap<String, String>,
    /// When it was submitted, in milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// One run of an experiment, from the moment it is accepted until its verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// Unique id, assigned by the controller.
    pub id: String,
    /// The experiment that was run.
    pub experiment_id: String,
    /// The experiment's title at the time of the run, for listings.
    pub title: String,
    /// Where the run is: stored as its name (`running`, `passed`, `dry-run`, ...).
    pub state: RunState,
    /// The verdict once there is one.
    pub verdict: Option<String>,
    /// Why the verdict is what it is, in order.
    pub reasons: Vec<String>,
    /// The seed of every random choice of the run, so that it can be reproduced.
    pub seed: u64,
    /// When the run was accepted, in milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// When the run ended, if it has.
    pub finished_ms: Option<i64>,
    /// Who started it: a user, or `schedule:NAME`.
    pub actor: String,
    /// The schedule that fired it, if one did.
    pub schedule_id: Option<String>,
    /// The plan shown before the run, as text.
    pub plan: String,
    /// The run's journal once it has ended.
    pub journal_json: Option<String>,
    /// The exit code `chaos run` would have ended with, once known.
    pub exit_code: Option<u8>,
}

/// Where a run is. Stored, listed and filtered by its name ([`RunState::as_str`]); the names are the API's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Planned and checked, not started yet.
    Planned,
    /// Accepted, waiting to start.
    Pending,
    /// In progress: its faults may be applied.
    Running,
    /// Finished: every SLO held.
    Passed,
    /// Finished: an SLO did not hold.
    Failed,
    /// Finished: the experiment could not be judged as written.
    Invalid,
    /// Finished without a verdict either way (a fault lost, a revert failed, an error).
    Inconclusive,
    /// Stopped by a halt; everything it applied was reverted.
    Halted,
    /// Its controller stopped during the run (marked when the next one starts).
    Interrupted,
    /// A dry run: planned, nothing applied, finished when stored.
    DryRun,
    /// Failed to run.
    Error,
}

impl RunState {
    /// Every state, in the order above.
    pub const ALL: [RunState; 11] = [
        RunState::Planned,
        RunState::Pending,
        RunState::Running,
        RunState::Passed,
        RunState::Failed,
        RunState::Invalid,
        RunState::Inconclusive,
        RunState::Halted,
        RunState::Interrupted,
        RunState::DryRun,
        RunState::Error,
    ];

    /// Its name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Planned => "planned",
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Passed => "passed",
            RunState::Failed => "failed",
            RunState::Invalid => "invalid",
            RunState::Inconclusive => "inconclusive",
            RunState::Halted => "halted",
            RunState::Interrupted => "interrupted",
            RunState::DryRun => "dry-run",
            RunState::Error => "error",
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`RunState`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown run state {found:?}: expected one of {}", RunState::ALL.map(RunState::as_str).join(", "))]
pub struct UnknownRunState {
    /// The name given.
    pub found: String,
}

impl std::str::FromStr for RunState {
    type Err = UnknownRunState;

    fn from_str(name: &str) -> Result<RunState, UnknownRunState> {
        RunState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| UnknownRunState { found: name.to_string() })
    }
}

/// One line of a run's progress, kept so that a client can follow a run or read it back later.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// The run it belongs to; the run must be stored first.
    pub run_id: String,
    /// Its position in the run, unique within the run; clients resume after the last one they saw.
    pub seq: u64,
    /// When it happened, in milliseconds since the run started.
    pub at_ms: u64,
    /// What kind of event it is (phase, probe, fault, ...).
    pub kind: String,
    /// What it is about (a phase, probe or fault name).
    pub name: String,
    /// Details, as the event's producer wrote them.
    pub detail: String,
    /// Whether it went well, when that applies.
    pub ok: Option<bool>,
    /// The line as shown to a person.
    pub line: String,
}

/// An experiment run on a timetable.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleRecord {
    /// Unique id, assigned by the controller.
    pub id: String,
    /// Unique name, as people refer to it.
    pub name: String,
    /// The experiment to run.
    pub experiment_id: String,
    /// When to fire, as a cron expression.
    pub cron: String,
    /// The time zone the cron expression and windows are read in.
    pub timezone: String,
    /// The windows in which it may fire; empty means any time.
    pub windows: Vec<String>,
    /// Whether to skip a firing while another run is going on.
    pub skip_if_running: bool,
    /// Dates on which it never fires.
    pub blackout_dates: Vec<String>,
    /// A fixed seed for every run, or none for a new seed each time.
    pub seed: Option<u64>,
    /// Who created it.
    pub created_by: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When it last fired, if it has.
    pub last_fire_ms: Option<i64>,
    /// The run it last started, if its last firing started one.
    pub last_run_id: Option<String>,
}

/// An agent as last seen by the controller.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentRecord {
    /// Unique id, chosen by the agent.
    pub id: String,
    /// The host it runs on.
    pub hostname: String,
    /// Labels that experiments select agents by.
    pub labels: BTreeMap<String, String>,
    /// The fault kinds it can inject.
    pub capabilities: Vec<String>,
    /// Its version.
    pub version: String,
    /// Changes when the agent restarts, so that the controller knows its faults are gone.
    pub boot_id: String,
    /// When it was first seen, in milliseconds since the Unix epoch; an update keeps the stored one.
    pub first_seen_ms: i64,
    /// When it was last seen, in milliseconds since the Unix epoch.
    pub last_seen_ms: i64,
    /// The address it connected from.
    pub peer: String,
}

/// One audit entry to append (the store assigns `seq`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewAudit {
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who did it.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// The agent it concerns, if any.
    pub agent_id: Option<String>,
    /// The run it concerns, if any.
    pub run_id: Option<String>,
    /// The fault it concerns, if any.
    pub fault_id: Option<String>,
    /// Details, free text.
    pub detail: String,
}

/// One stored audit entry: the entry as appended, and its position in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// Its position in the log: 1, 2, 3, ... in the order of appending, never reused.
    pub seq: u64,
    pub entry: NewAudit,
}

/// The freeze flag: while it is set, no run or fault starts.
#[derive(Clone, Debug, PartialEq)]
pub struct FreezeRecord {
    /// Why everything is frozen.
    pub reason: String,
    /// Who froze it.
    pub by: String,
    /// Since when, in milliseconds since the Unix epoch.
    pub since_ms: i64,
}

/// One file of an SLO apply, kept verbatim so that every version can be traced to the text it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SloSource {
    /// The file name it was applied as.
    pub file: String,
    /// Its text exactly as applied; stored once per distinct text, however many SLOs and versions share it.
    pub text: String,
}

/// SLOs to apply together, in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct SloApply {
    /// The files the SLOs were read from.
    pub sources: Vec<SloSource>,
    /// Each SLO with the index in `sources` of the file it was read from. Ids are unique (the caller checks).
    pub slos: Vec<(SloDef, usize)>,
    /// When, in milliseconds since the Unix epoch.
    pub applied_ms: i64,
    /// Who applied them (the audit log's actor).
    pub applied_by: String,
}

/// What an apply did to one SLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SloOutcome {
    /// The id had no current version (never applied, or deleted): version 1, or the one after the deletion.
    Created,
    /// The definition differs from the current version's: a new version.
    Updated,
    /// The same definition as the current version (where it was read from aside): no new version.
    Unchanged,
}

impl SloOutcome {
    /// `created`, `updated`, `unchanged`: the API's names.
    pub fn as_str(self) -> &'static str {
        match self {
            SloOutcome::Created => "created",
            SloOutcome::Updated => "updated",
            SloOutcome::Unchanged => "unchanged",
        }
    }
}

/// The result of an apply for one SLO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SloApplied {
    /// `service/name`.
    pub id: String,
    /// Its current version after the apply.
    pub version: u32,
    pub outcome: SloOutcome,
}

/// One version of an SLO id, as kept in its history.
#[derive(Clone, Debug, PartialEq)]
pub struct SloVersion {
    /// `service/name`.
    pub id: String,
    /// 1, 2, 3, ... per id, never reused.
    pub version: u32,
    /// The definition; `None` for a deletion.
    pub slo: Option<SloDef>,
    /// The file it was applied from (empty for a deletion).
    pub file: String,
    /// SHA-256 (hex) of that file's text (empty for a deletion).
    pub source_sha256: String,
    /// When, in milliseconds since the Unix epoch.
    pub applied_ms: i64,
    /// Who applied or deleted it.
    pub applied_by: String,
}

/// The current version of an SLO that is not deleted.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSlo {
    /// `service/name`.
    pub id: String,
    pub version: u32,
    pub slo: SloDef,
    /// The file it was applied from.
    pub file: String,
    /// SHA-256 (hex) of that file's text.
    pub source_sha256: String,
    /// When, in milliseconds since the Unix epoch.
    pub applied_ms: i64,
    /// Who applied it.
    pub applied_by: String,
}

/// Everything the controller persists. Implementations are shared between threads; every method is one
/// short transaction, and blocks: async code calls it only through [`StoreHandle`] (a slow disk or a
/// database locked by another process then stalls no async worker).
pub trait Store: IncidentStore + GameDayStore + NotifyStore + Send + Sync + 'static {
    /// Stores a new experiment; [`StoreError::Conflict`] when its id is taken.
    fn insert_experiment(&self, e: &ExperimentRecord) -> StoreResult<()>;

    /// The experiment with this id, if there is one.
    fn experiment(&self, id: &str) -> StoreResult<Option<ExperimentRecord>>;

    /// Every experiment, newest first (by `created_ms`, then by order of insertion).
    fn experiments(&self) -> StoreResult<Vec<ExperimentRecord>>;

    /// Stores a new run; [`StoreError::Conflict`] when its id is taken.
    fn insert_run(&self, r: &RunRecord) -> StoreResult<()>;

    /// Replaces the whole stored run that has `r.id`; [`StoreError::NotFound`] when there is none.
    fn update_run(&self, r: &RunRecord) -> StoreResult<()>;

    /// The run with this id, if there is one.
    fn run(&self, id: &str) -> StoreResult<Option<RunRecord>>;

    /// At most `limit` runs, only those in `state` when it is given, newest first (by `started_ms`, then by
    /// order of insertion).
    fn runs(&self, limit: usize, state: Option<RunState>) -> StoreResult<Vec<RunRecord>>;

    /// Marks every run still `pending` or `running` as `interrupted` (verdict `inconclusive`, exit code 3,
    /// `reason` appended to its reasons, finished at `now_ms`) and returns their ids. Called when a controller starts:
    /// a run cannot survive its controller.
    fn interrupt_unfinished(&self, now_ms: i64, reason: &str) -> StoreResult<Vec<String>>;

    /// Appends an event to its run: [`StoreError::Conflict`] when the run already has an event with this
    /// `seq`, [`StoreError::NotFound`] when the run is not stored.
    fn append_event(&self, e: &EventRecord) -> StoreResult<()>;

    /// The events of a run whose `seq` is greater than `after_seq`, in ascending `seq` order.
    fn events(&self, run_id: &str, after_seq: u64) -> StoreResult<Vec<EventRecord>>;

    /// Stores a new schedule; [`StoreError::Conflict`], naming the id or name, when either is taken.
    fn insert_schedule(&self, s: &ScheduleRecord) -> StoreResult<()>;

    /// Records that a schedule fired (and the run it started, if any); [`StoreError::NotFound`] when there
    /// is no schedule with this id.
    fn schedule_fired(&self, id: &str, fired_ms: i64, run_id: Option<&str>) -> StoreResult<()>;

    /// Every schedule, by name.
    fn schedules(&self) -> StoreResult<Vec<ScheduleRecord>>;

    /// Deletes by id or by name; Ok(None) when neither matches, else the deleted record.
    fn delete_schedule(&self, id_or_name: &str) -> StoreResult<Option<ScheduleRecord>>;

    /// Stores an agent, or replaces the stored one with the same id while keeping its `first_seen_ms`.
    fn upsert_agent(&self, a: &AgentRecord) -> StoreResult<()>;

    /// Every agent, by id.
    fn agents(&self) -> StoreResult<Vec<AgentRecord>>;

    /// Appends one audit entry and returns its seq (1, 2, 3, ...).
    fn append_audit(&self, a: &NewAudit) -> StoreResult<u64>;

    /// Appends many in one transaction (a halt of 1,000 agents writes 1,000 entries); returns the last seq.
    /// An empty slice appends nothing and returns the seq of the newest stored entry (0 when there is none).
    fn append_audit_batch(&self, a: &[NewAudit]) -> StoreResult<u64>;

    /// At most `limit` audit entries, only those about `run_id` when it is given, newest first.
    fn audit(&self, limit: usize, run_id: Option<&str>) -> StoreResult<Vec<AuditRecord>>;

    /// Sets the freeze flag, or clears it with `None`.
    fn set_freeze(&self, f: Option<&FreezeRecord>) -> StoreResult<()>;

    /// The freeze flag, if it is set.
    fn freeze(&self) -> StoreResult<Option<FreezeRecord>>;

    /// Applies SLOs in one transaction: for each, a new version unless its definition equals the current one
    /// (compared without [`SloDef::origin`], so moving an SLO within its file changes nothing). Returns one
    /// result per SLO, in order.
    fn apply_slos(&self, apply: &SloApply) -> StoreResult<Vec<SloApplied>>;

    /// Deletes an SLO: appends a deletion version (the history stays). Ok(None) when the id has no current
    /// version (never applied, or deleted already); else the deletion.
    fn delete_slo(&self, id: &str, at_ms: i64, by: &str) -> StoreResult<Option<SloVersion>>;

    /// The current version of `id`, unless it was never applied or is deleted. One indexed lookup.
    fn current_slo(&self, id: &str) -> StoreResult<Option<StoredSlo>>;

    /// The current version of every SLO that is not deleted, by id.
    fn current_slos(&self) -> StoreResult<Vec<StoredSlo>>;

    /// Every version of `id`, oldest first (empty when it was never applied).
    fn slo_history(&self, id: &str) -> StoreResult<Vec<SloVersion>>;

    /// The text of the file version `version` of `id` was applied from: None when there is no such version
    /// or it is a deletion.
    fn slo_source(&self, id: &str, version: u32) -> StoreResult<Option<SloSource>>;
}
