//! The [`Store`] in one embedded SQLite database file: WAL journal, one connection behind a mutex.

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{
    Connection, OptionalExtension, Row, Statement, ToSql, TransactionBehavior, ffi, named_params, params,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    AgentRecord, AuditRecord, EventRecord, ExperimentRecord, FreezeRecord, MIGRATIONS, NewAudit, RunRecord,
    RunState, ScheduleRecord, SloApplied, SloApply, SloOutcome, SloSource, SloVersion, Store, StoreError,
    StoreResult, StoredSlo,
};
use crate::slo_file::{self, Origin, SloDef};

/// The schema this code reads and writes, kept in `PRAGMA user_version`. A database with a newer version is
/// refused rather than misread; an older one is migrated ([`MIGRATIONS`]).
const SCHEMA_VERSION: i64 = 5;

/// Version 2: the SLO registry. Every apply of an SLO id adds a row to `slo_versions` (a deletion is a row
/// without a definition); the files they came from are kept once per distinct text in `slo_sources`. Both
/// are append-only.
pub(super) const SLO_REGISTRY: &str = "
CREATE TABLE slo_sources (
    seq INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL
);
CREATE TABLE slo_versions (
    seq INTEGER PRIMARY KEY,
    slo_id TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version > 0),
    definition TEXT,
    file TEXT NOT NULL,
    source_sha256 TEXT REFERENCES slo_sources (sha256),
    applied_ms INTEGER NOT NULL,
    applied_by TEXT NOT NULL,
    UNIQUE (slo_id, version),
    CHECK ((definition IS NULL) = (source_sha256 IS NULL))
);
CREATE TRIGGER slo_versions_no_update BEFORE UPDATE ON slo_versions
BEGIN SELECT RAISE(ABORT, 'SLO versions are append-only'); END;
CREATE TRIGGER slo_versions_no_delete BEFORE DELETE ON slo_versions
BEGIN SELECT RAISE(ABORT, 'SLO versions are append-only'); END;
CREATE TRIGGER slo_sources_no_update BEFORE UPDATE ON slo_sources
BEGIN SELECT RAISE(ABORT, 'SLO sources are append-only'); END;
CREATE TRIGGER slo_sources_no_delete BEFORE DELETE ON slo_sources
BEGIN SELECT RAISE(ABORT, 'SLO sources are append-only'); END;
";

/// How long a statement waits for another process's write lock before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema at version 1 (a new database then gets [`MIGRATIONS`]). Tables whose records are listed by insertion order have an
/// explicit `seq INTEGER PRIMARY KEY`, because an implicit rowid may change on `VACUUM`.
const SCHEMA: &str = "
CREATE TABLE experiments (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    file TEXT NOT NULL,
    source TEXT NOT NULL,
    vars TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    experiment_id TEXT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    verdict TEXT,
    reasons TEXT NOT NULL,
    seed INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    actor TEXT NOT NULL,
    schedule_id TEXT,
    plan TEXT NOT NULL,
    journal_json TEXT,
    exit_code INTEGER
);
CREATE INDEX runs_by_start ON runs (started_ms DESC, seq DESC);
CREATE INDEX runs_by_state ON runs (state, started_ms DESC, seq DESC);
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    detail TEXT NOT NULL,
    ok INTEGER,
    line TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE schedules (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    experiment_id TEXT NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    windows TEXT NOT NULL,
    skip_if_running INTEGER NOT NULL,
    blackout_dates TEXT NOT NULL,
    seed INTEGER,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_fire_ms INTEGER,
    last_run_id TEXT
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    labels TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    version TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    peer TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    agent_id TEXT,
    run_id TEXT,
    fault_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_run ON audit (run_id, seq);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE freeze (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    reason TEXT NOT NULL,
    set_by TEXT NOT NULL,
    since_ms INTEGER NOT NULL
);
";

/// A [`Store`] in an SQLite database: a file opened with [`SqliteStore::open`], or memory for tests.
///
/// One connection serves every caller in turn. A panic while it is held cannot leave a write half done (an
/// unfinished transaction rolls back when dropped), so a poisoned lock is taken over rather than failing
/// every later call.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens the database file at `path`, creating it (but not its directory) when it is missing, and creates
    /// or checks the schema. A database written by a newer schema version is refused.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let name = path.display().to_string();
        make_private(path)?;
        let conn = Connection::open(path).map_err(|e| failed(format_args!("opening {name}"), e))?;
        Self::start(conn, &name, true)
    }

    /// A fresh store in memory, gone when dropped.
    pub fn in_memory() -> StoreResult<SqliteStore> {
        let conn = Connection::open_in_memory().map_err(|e| failed("opening an in-memory database", e))?;
        Self::start(conn, ":memory:", false)
    }

    /// Sets the connection up and brings the schema to [`SCHEMA_VERSION`].
    fn start(mut conn: Connection, name: &str, file: bool) -> StoreResult<SqliteStore> {
        let setup = |conn: &Connection| -> rusqlite::Result<String> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // WAL lets readers go on while a run's events are written; NORMAL only syncs at checkpoints,
            // which loses at most the last commits on power loss, never the database.
            let mode = if file {
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?
            } else {
                String::from("memory")
            };
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", true)?;
            Ok(mode)
        };
        let mode = setup(&conn).map_err(|e| failed(format_args!("opening {name}"), e))?;
        if file && !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = name, journal_mode = mode, "the store could not use a WAL journal");
        }
        let created = migrate(&mut conn, name)?;
        tracing::info!(path = name, schema_version = SCHEMA_VERSION, created, "store opened");
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    /// The connection, for one operation.
    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Creates the schema in an empty database, or checks the version of an existing one and migrates an older
/// one; true when it created. The check, the creation and the migrations are one transaction, so two
/// processes opening a new file cannot both create, and a failed migration leaves the old version whole.
fn migrate(conn: &mut Connection, name: &str) -> StoreResult<bool> {
    let doing = format!("checking the schema of {name}");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| failed(&doing, e))?;
    let found: i64 =
        tx.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| failed(&doing, e))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "{name} has schema version {found}, newer than version {SCHEMA_VERSION} that this controller \
             knows: run a newer controller on it, or use another file"
        )));
    }
    if found == SCHEMA_VERSION {
        return Ok(false);
    }
    let created = found <= 0;
    if created {
        tx.execute_batch(SCHEMA).map_err(|e| failed(&doing, e))?;
    }
    let from = found.max(1);
    let pending = MIGRATIONS.iter().skip(usize::try_from(from - 1).unwrap_or(usize::MAX));
    for (version, migration) in (from..).zip(pending) {
        let doing = format!("migrating {name} from schema version {version} to {}", version + 1);
        tx.execute_batch(migration).map_err(|e| failed(&doing, e))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(|e| failed(&doing, e))?;
    tx.commit().map_err(|e| failed(&doing, e))?;
    if !created {
        tracing::info!(path = name, from = found, to = SCHEMA_VERSION, "store schema migrated");
    }
    Ok(created)
}

impl Store for SqliteStore {
    fn insert_experiment(&self, e: &ExperimentRecord) -> StoreResult<()> {
        let conn = self.conn();
        let inserted = conn
            .prepare_cached(
                "INSERT INTO experiments (id, title, file, source, vars, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![e.id, e.title, e.file, e.source, Json(&e.vars), e.created_ms])
            });
        match inserted {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => {
                Err(StoreError::Conflict(format!("experiment {} exists already", e.id)))
            }
            Err(err) => Err(failed(format_args!("inserting experiment {}", e.id), err)),
        }
    }

    fn experiment(&self, id: &str) -> StoreResult<Option<ExperimentRecord>> {
        let conn = self.conn();
        conn.prepare_cached("SELECT * FROM experiments WHERE id = ?1")
            .and_then(|mut stmt| stmt.query_row([id], experiment_row).optional())
            .map_err(|e| failed(format_args!("reading experiment {id}"), e))
    }

    fn experiments(&self) -> StoreResult<Vec<ExperimentRecord>> {
        let conn = self.conn();
        conn.prepare_cached("SELECT * FROM experiments ORDER BY created_ms DESC, seq DESC")
            .and_then(|mut stmt| stmt.query_map([], experiment_row)?.collect())
            .map_err(|e| failed("listing experiments", e))
    }

    fn insert_run(&self, r: &RunRecord) -> StoreResult<()> {
        let conn = self.conn();
        let inserted = conn
            .prepare_cached(
                "INSERT INTO runs (id, experiment_id, title, state, verdict, reasons, seed, started_ms,
                     finished_ms, actor, schedule_id, plan, journal_json, exit_code)
                 VALUES (:id, :experiment_id, :title, :state, :verdict, :reasons, :seed, :started_ms,
                     :finished_ms, :actor, :schedule_id, :plan, :journal_json, :exit_code)",
            )
            .and_then(|mut stmt| execute_run(&mut stmt, r));
        match inserted {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => {
                Err(StoreError::Conflict(format!("run {} exists already", r.id)))
            }
            Err(err) => Err(failed(format_args!("inserting run {}", r.id), err)),
        }
    }

    fn update_run(&self, r: &RunRecord) -> StoreResult<()> {
        let conn = self.conn();
        let changed = conn
            .prepare_cached(
                "UPDATE runs SET experiment_id = :experiment_id, title = :title, state = :state,
                     verdict = :verdict, reasons = :reasons, seed = :seed, started_ms = :started_ms,
                     finished_ms = :finished_ms, actor = :actor, schedule_id = :schedule_id, plan = :plan,
                     journal_json = :journal_json, exit_code = :exit_code
                 WHERE id = :id",
            )
            .and_then(|mut stmt| execute_run(&mut stmt, r))
            .map_err(|e| failed(format_args!("updating run {}", r.id), e))?;
        if changed == 0 {
            return Err(StoreError::NotFound { what: "run", id: r.id.clone() });
        }
        Ok(())
    }

    fn run(&self, id: &str) -> StoreResult<Option<RunRecord>> {
        let conn = self.conn();
        conn.prepare_cached("SELECT * FROM runs WHERE id = ?1")
            .and_then(|mut stmt| stmt.query_row([id], run_row).optional())
            .map_err(|e| failed(format_args!("reading run {id}"), e))
    }

    fn runs(&self, limit: usize, state: Option<RunState>) -> StoreResult<Vec<RunRecord>> {
        let conn = self.conn();
        let limit = sql_limit(limit);
        match state {
            Some(state) => conn
                .prepare_cached(
                    "SELECT * FROM runs WHERE state = ?1 ORDER BY started_ms DESC, seq DESC LIMIT ?2",
                )
                .and_then(|mut stmt| stmt.query_map(params![state.as_str(), limit], run_row)?.collect())
                .map_err(|e| failed(format_args!("listing {state} runs"), e)),
            None => conn
                .prepare_cached("SELECT * FROM runs ORDER BY started_ms DESC, seq DESC LIMIT ?1")
                .and_then(|mut stmt| stmt.query_map([limit], run_row)?.collect())
                .map_err(|e| failed("listing runs", e)),
        }
    }

    fn interrupt_unfinished(&self, now_ms: i64, reason: &str) -> StoreResult<Vec<String>> {
        let mut conn = self.conn();
        let interrupt = |conn: &mut Connection| -> rusqlite::Result<Vec<String>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let unfinished: Vec<(String, Json<Vec<String>>)> = tx
                .prepare_cached(
                    "SELECT id, reasons FROM runs WHERE state IN ('pending', 'running') ORDER BY seq",
                )?
                .query_map([], |row| Ok((row.get("id")?, row.get("reasons")?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut ids = Vec::with_capacity(unfinished.len());
            {
                let mut update = tx.prepare_cached(
                    "UPDATE runs SET state = 'interrupted', verdict = 'inconclusive', exit_code = 3,
                         finished_ms = ?2, reasons = ?3
                     WHERE id = ?1",
                )?;
                for (id, Json(mut reasons)) in unfinished {
                    reasons.push(reason.to_owned());
                    update.execute(params![id, now_ms, Json(&reasons)])?;
                    ids.push(id);
                }
            }
            tx.commit()?;
            Ok(ids)
        };
        let ids = interrupt(&mut conn).map_err(|e| failed("interrupting unfinished runs", e))?;
        if !ids.is_empty() {
            tracing::warn!(runs = ?ids, reason, "interrupted runs that their controller left unfinished");
        }
        Ok(ids)
    }

    fn append_event(&self, e: &EventRecord) -> StoreResult<()> {
        let conn = self.conn();
        let inserted = conn
            .prepare_cached(
                "INSERT INTO events (run_id, seq, at_ms, kind, name, detail, ok, line)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![e.run_id, e.seq, e.at_ms, e.kind, e.name, e.detail, e.ok, e.line])
            });
        match inserted {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => {
                Err(StoreError::Conflict(format!("event {} of run {} exists already", e.seq, e.run_id)))
            }
            Err(err) if has_extended_code(&err, ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => {
                Err(StoreError::NotFound { what: "run", id: e.run_id.clone() })
            }
            Err(err) => Err(failed(format_args!("appending event {} of run {}", e.seq, e.run_id), err)),
        }
    }

    fn events(&self, run_id: &str, after_seq: u64) -> StoreResult<Vec<EventRecord>> {
        // Stored seqs fit in an i64 (rusqlite refuses larger ones), so nothing comes after a larger `after_seq`.
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let conn = self.conn();
        conn.prepare_cached("SELECT * FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq")
            .and_then(|mut stmt| stmt.query_map(params![run_id, after], event_row)?.collect())
            .map_err(|e| failed(format_args!("reading the events of run {run_id}"), e))
    }

    fn insert_schedule(&self, s: &ScheduleRecord) -> StoreResult<()> {
        let conn = self.conn();
        let inserted = conn
            .prepare_cached(
                "INSERT INTO schedules (id, name, experiment_id, cron, timezone, windows, skip_if_running,
                     blackout_dates, seed, created_by, created_ms, last_fire_ms, last_run_id)
                 VALUES (:id, :name, :experiment_id, :cron, :timezone, :windows, :skip_if_running,
                     :blackout_dates, :seed, :created_by, :created_ms, :last_fire_ms, :last_run_id)",
            )
            .and_then(|mut stmt| {
                stmt.execute(named_params! {
                    ":id": s.id,
                    ":name": s.name,
                    ":experiment_id": s.experiment_id,
                    ":cron": s.cron,
                    ":timezone": s.timezone,
                    ":windows": Json(&s.windows),
                    ":skip_if_running": s.skip_if_running,
                    ":blackout_dates": Json(&s.blackout_dates),
                    ":seed": s.seed.map(u64::cast_signed),
                    ":created_by": s.created_by,
                    ":created_ms": s.created_ms,
                    ":last_fire_ms": s.last_fire_ms,
                    ":last_run_id": s.last_run_id,
                })
            });
        match inserted {
            Ok(_) => Ok(()),
            // SQLite names the column in its message: "UNIQUE constraint failed: schedules.name".
            Err(err) if is_unique_violation(&err) && err.to_string().contains("schedules.name") => {
                Err(StoreError::Conflict(format!("a schedule named {:?} exists already", s.name)))
            }
            Err(err) if is_unique_violation(&err) => {
                Err(StoreError::Conflict(format!("schedule {} exists already", s.id)))
            }
            Err(err) => Err(failed(format_args!("inserting schedule {:?}", s.name), err)),
        }
    }

    fn schedule_fired(&self, id: &str, fired_ms: i64, run_id: Option<&str>) -> StoreResult<()> {
        let conn = self.conn();
        let changed = conn
            .prepare_cached("UPDATE schedules SET last_fire_ms = ?2, last_run_id = ?3 WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute(params![id, fired_ms, run_id]))
            .map_err(|e| failed(format_args!("recording that schedule {id} fired"), e))?;
        if changed == 0 {
            return Err(StoreError::NotFound { what: "schedule", id: id.to_owned() });
        }
        Ok(())
    }

    fn schedules(&self) -> StoreResult<Vec<ScheduleRecord>> {
        let conn = self.conn();
        conn.prepare_cached("SELECT * FROM schedules ORDER BY name")
            .and_then(|mut stmt| stmt.query_map([], schedule_row)?.collect())
            .map_err(|e| failed("listing schedules", e))
    }

    fn delete_schedule(&self, id_or_name: &str) -> StoreResult<Option<ScheduleRecord>> {
        let mut conn = self.conn();
        let delete = |conn: &mut Connection| -> rusqlite::Result<Option<ScheduleRecord>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // An id wins over a name, so that a schedule named like another's id cannot shadow it.
            let found = tx
                .prepare_cached(
                    "SELECT * FROM schedules WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1",
                )?
                .query_row([id_or_name], schedule_row)
                .optional()?;
            if let Some(schedule) = &found {
                tx.prepare_cached("DELETE FROM schedules WHERE id = ?1")?.execute([&schedule.id])?;
            }
            tx.commit()?;
            Ok(found)
        };
        delete(&mut conn).map_err(|e| failed(format_args!("deleting schedule {id_or_name:?}"), e))
    }

    fn upsert_agent(&self, a: &AgentRecord) -> StoreResult<()> {
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO agents (id, hostname, labels, capabilities, version, boot_id, first_seen_ms,
                 last_seen_ms, peer)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, labels = excluded.labels,
                 capabilities = excluded.capabilities, version = excluded.version, boot_id = excluded.boot_id,
                 last_seen_ms = excluded.last_seen_ms, peer = excluded.peer",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                a.id,
                a.hostname,
                Json(&a.labels),
                Json(&a.capabilities),
                a.version,
                a.boot_id,
                a.first_seen_ms,
                a.last_seen_ms,
                a.peer,
            ])
        })
        .map(drop)
        .map_err(|e| failed(format_args!("storing agent {}", a.id), e))
    }

    fn agents(&self) -> StoreResult<Vec<AgentRecord>> {
        let conn = self.conn();
        conn.prepare_cached("SELECT * FROM agents ORDER BY id")
            .and_then(|mut stmt| stmt.query_map([], agent_row)?.collect())
            .map_err(|e| failed("listing agents", e))
    }

    fn append_audit(&self, a: &NewAudit) -> StoreResult<u64> {
        let conn = self.conn();
        insert_audit(&conn, a).map_err(|e| failed(format_args!("appending audit entry {:?}", a.action), e))
    }

    fn append_audit_batch(&self, a: &[NewAudit]) -> StoreResult<u64> {
        let mut conn = self.conn();
        let append = |conn: &mut Connection| -> rusqlite::Result<u64> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut last = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |row| row.get(0))?;
            for entry in a {
                last = insert_audit(&tx, entry)?;
            }
            tx.commit()?;
            Ok(last)
        };
        append(&mut conn).map_err(|e| failed(format_args!("appending {} audit entries", a.len()), e))
    }

    fn audit(&self, limit: usize, run_id: Option<&str>) -> StoreResult<Vec<AuditRecord>> {
        let conn = self.conn();
        let limit = sql_limit(limit);
        match run_id {
            Some(run_id) => conn
                .prepare_cached("SELECT * FROM audit WHERE run_id = ?1 ORDER BY seq DESC LIMIT ?2")
                .and_then(|mut stmt| stmt.query_map(params![run_id, limit], audit_row)?.collect())
                .map_err(|e| failed(format_args!("reading the audit log of run {run_id}"), e)),
            None => conn
                .prepare_cached("SELECT * FROM audit ORDER BY seq DESC LIMIT ?1")
                .and_then(|mut stmt| stmt.query_map([limit], audit_row)?.collect())
                .map_err(|e| failed("reading the audit log", e)),
        }
    }

    fn set_freeze(&self, f: Option<&FreezeRecord>) -> StoreResult<()> {
        let conn = self.conn();
        match f {
            Some(f) => conn
                .prepare_cached(
                    "INSERT INTO freeze (id, reason, set_by, since_ms) VALUES (1, ?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, set_by = excluded.set_by,
                         since_ms = excluded.since_ms",
                )
                .and_then(|mut stmt| stmt.execute(params![f.reason, f.by, f.since_ms]))
                .map(drop)
                .map_err(|e| failed("setting the freeze", e)),
            None => {
                conn.execute("DELETE FROM freeze", []).map(drop).map_err(|e| failed("clearing the freeze", e))
            }
        }
    }

    fn freeze(&self) -> StoreResult<Option<FreezeRecord>> {
        let conn = self.conn();
        conn.prepare_cached("SELECT reason, set_by, since_ms FROM freeze WHERE id = 1")
            .and_then(|mut stmt| {
                stmt.query_row([], |row| {
                    Ok(FreezeRecord { reason: row.get(0)?, by: row.get(1)?, since_ms: row.get(2)? })
                })
                .optional()
            })
            .map_err(|e| failed("reading the freeze", e))
    }

    fn apply_slos(&self, apply: &SloApply) -> StoreResult<Vec<SloApplied>> {
        if let Some((slo, index)) = apply.slos.iter().find(|(_, index)| *index >= apply.sources.len()) {
            return Err(StoreError::Backend(format!(
                "applying SLO {}: source {index} of {} given",
                slo.id(),
                apply.sources.len()
            )));
        }
        if let Some(big) = apply.sources.iter().find(|s| s.text.len() as u64 > slo_file::MAX_FILE_BYTES) {
            return Err(StoreError::Backend(format!(
                "applying {}: {} bytes, larger than the {} an SLO file may be",
                big.file,
                big.text.len(),
                slo_file::MAX_FILE_BYTES
            )));
        }
        // Hashed before the connection is taken: 8 MiB take a few milliseconds.
        let hashes: Vec<String> = apply.sources.iter().map(|s| sha256_hex(&s.text)).collect();
        let mut conn = self.conn();
        let run = |conn: &mut Connection| -> rusqlite::Result<Vec<SloApplied>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(apply.slos.len());
            for (slo, index) in &apply.slos {
                let id = slo.id();
                let current = latest_slo(&tx, &id)?;
                let (version, outcome) = match &current {
                    None => (1, SloOutcome::Created),
                    Some(SloVersion { version, slo: None, .. }) => (version + 1, SloOutcome::Created),
                    Some(SloVersion { version, slo: Some(stored), .. }) if same_definition(stored, slo) => {
                        (*version, SloOutcome::Unchanged)
                    }
                    Some(SloVersion { version, .. }) => (version + 1, SloOutcome::Updated),
                };
                if outcome != SloOutcome::Unchanged {
                    let (source, sha256) = (&apply.sources[*index], &hashes[*index]);
                    tx.prepare_cached(
                        "INSERT INTO slo_sources (sha256, text) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING",
                    )?
                    .execute(params![sha256, source.text])?;
                    tx.prepare_cached(
                        "INSERT INTO slo_versions (slo_id, version, definition, file, source_sha256, applied_ms,
                             applied_by)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        id,
                        version,
                        Json(slo),
                        source.file,
                        sha256,
                        apply.applied_ms,
                        apply.applied_by
                    ])?;
                }
                results.push(SloApplied { id, version, outcome });
            }
            tx.commit()?;
            Ok(results)
        };
        run(&mut conn).map_err(|e| failed(format_args!("applying {} SLOs", apply.slos.len()), e))
    }

    fn delete_slo(&self, id: &str, at_ms: i64, by: &str) -> StoreResult<Option<SloVersion>> {
        let mut conn = self.conn();
        let delete = |conn: &mut Connection| -> rusqlite::Result<Option<SloVersion>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version = match latest_slo(&tx, id)? {
                Some(SloVersion { version, slo: Some(_), .. }) => version + 1,
                _ => return Ok(None),
            };
            tx.prepare_cached(
                "INSERT INTO slo_versions (slo_id, version, definition, file, source_sha256, applied_ms,
                     applied_by)
                 VALUES (?1, ?2, NULL, '', NULL, ?3, ?4)",
            )?
            .execute(params![id, version, at_ms, by])?;
            tx.commit()?;
            Ok(Some(SloVersion {
                id: id.to_owned(),
                version,
                slo: None,
                file: String::new(),
                source_sha256: String::new(),
                applied_ms: at_ms,
                applied_by: by.to_owned(),
            }))
        };
        delete(&mut conn).map_err(|e| failed(format_args!("deleting SLO {id}"), e))
    }

    fn current_slo(&self, id: &str) -> StoreResult<Option<StoredSlo>> {
        let conn = self.conn();
        latest_slo(&conn, id)
            .map(|found| found.and_then(stored_slo))
            .map_err(|e| failed(format_args!("reading SLO {id}"), e))
    }

    fn current_slos(&self) -> StoreResult<Vec<StoredSlo>> {
        let conn = self.conn();
        conn.prepare_cached(
            "SELECT v.* FROM slo_versions v
             JOIN (SELECT slo_id, MAX(version) AS version FROM slo_versions GROUP BY slo_id) latest
                 ON latest.slo_id = v.slo_id AND latest.version = v.version
             WHERE v.definition IS NOT NULL
             ORDER BY v.slo_id",
        )
        .and_then(|mut stmt| stmt.query_map([], slo_version_row)?.collect::<rusqlite::Result<Vec<_>>>())
        .map(|versions| versions.into_iter().filter_map(stored_slo).collect())
        .map_err(|e| failed("listing SLOs", e))
    }

    fn slo_history(&self, id: &str) -> StoreResult<Vec<SloVersion>> {
        let conn = self.conn();
        conn.prepare_cached("SELECT * FROM slo_versions WHERE slo_id = ?1 ORDER BY version")
            .and_then(|mut stmt| stmt.query_map([id], slo_version_row)?.collect())
            .map_err(|e| failed(format_args!("reading the history of SLO {id}"), e))
    }

    fn slo_source(&self, id: &str, version: u32) -> StoreResult<Option<SloSource>> {
        let conn = self.conn();
        conn.prepare_cached(
            "SELECT v.file, s.text FROM slo_versions v JOIN slo_sources s ON s.sha256 = v.source_sha256
             WHERE v.slo_id = ?1 AND v.version = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![id, version], |row| Ok(SloSource { file: row.get(0)?, text: row.get(1)? }))
                .optional()
        })
        .map_err(|e| failed(format_args!("reading the source of SLO {id} version {version}"), e))
    }
}

// === rows ===

/// Runs the insert or the update of a run: both name every column.
fn execute_run(stmt: &mut Statement<'_>, r: &RunRecord) -> rusqlite::Result<usize> {
    stmt.execute(named_params! {
        ":id": r.id,
        ":experiment_id": r.experiment_id,
        ":title": r.title,
        ":state": r.state.as_str(),
        ":verdict": r.verdict,
        ":reasons": Json(&r.reasons),
        ":seed": r.seed.cast_signed(),
        ":started_ms": r.started_ms,
        ":finished_ms": r.finished_ms,
        ":actor": r.actor,
        ":schedule_id": r.schedule_id,
        ":plan": r.plan,
        ":journal_json": r.journal_json,
        ":exit_code": r.exit_code,
    })
}

/// Appends one audit entry and returns the seq that SQLite gave it.
fn insert_audit(conn: &Connection, a: &NewAudit) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "INSERT INTO audit (at_ms, actor, action, agent_id, run_id, fault_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         RETURNING seq",
    )?
    .query_row(params![a.at_ms, a.actor, a.action, a.agent_id, a.run_id, a.fault_id, a.detail], |row| {
        row.get(0)
    })
}

fn experiment_row(row: &Row<'_>) -> rusqlite::Result<ExperimentRecord> {
    Ok(ExperimentRecord {
        id: row.get("id")?,
        title: row.get("title")?,
        file: row.get("file")?,
        source: row.get("source")?,
        vars: row.get::<_, Json<_>>("vars")?.0,
        created_ms: row.get("created_ms")?,
    })
}

fn run_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get("id")?,
        experiment_id: row.get("experiment_id")?,
        title: row.get("title")?,
        state: row.get::<_, String>("state")?.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        verdict: row.get("verdict")?,
        reasons: row.get::<_, Json<_>>("reasons")?.0,
        seed: row.get::<_, i64>("seed")?.cast_unsigned(),
        started_ms: row.get("started_ms")?,
        finished_ms: row.get("finished_ms")?,
        actor: row.get("actor")?,
        schedule_id: row.get("schedule_id")?,
        plan: row.get("plan")?,
        journal_json: row.get("journal_json")?,
        exit_code: row.get("exit_code")?,
    })
}

fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        run_id: row.get("run_id")?,
        seq: row.get("seq")?,
        at_ms: row.get("at_ms")?,
        kind: row.get("kind")?,
        name: row.get("name")?,
        detail: row.get("detail")?,
        ok: row.get("ok")?,
        line: row.get("line")?,
    })
}

fn schedule_row(row: &Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        id: row.get("id")?,
        name: row.get("name")?,
        experiment_id: row.get("experiment_id")?,
        cron: row.get("cron")?,
        timezone: row.get("timezone")?,
        windows: row.get::<_, Json<_>>("windows")?.0,
        skip_if_running: row.get("skip_if_running")?,
        blackout_dates: row.get::<_, Json<_>>("blackout_dates")?.0,
        seed: row.get::<_, Option<i64>>("seed")?.map(i64::cast_unsigned),
        created_by: row.get("created_by")?,
        created_ms: row.get("created_ms")?,
        last_fire_ms: row.get("last_fire_ms")?,
        last_run_id: row.get("last_run_id")?,
    })
}

fn agent_row(row: &Row<'_>) -> rusqlite::Result<AgentRecord> {
    Ok(AgentRecord {
        id: row.get("id")?,
        hostname: row.get("hostname")?,
        labels: row.get::<_, Json<_>>("labels")?.0,
        capabilities: row.get::<_, Json<_>>("capabilities")?.0,
        version: row.get("version")?,
        boot_id: row.get("boot_id")?,
        first_seen_ms: row.get("first_seen_ms")?,
        last_seen_ms: row.get("last_seen_ms")?,
        peer: row.get("peer")?,
    })
}

fn audit_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.get("seq")?,
        entry: NewAudit {
            at_ms: row.get("at_ms")?,
            actor: row.get("actor")?,
            action: row.get("action")?,
            agent_id: row.get("agent_id")?,
            run_id: row.get("run_id")?,
            fault_id: row.get("fault_id")?,
            detail: row.get("detail")?,
        },
    })
}

/// The newest version of SLO `id`, deleted or not. The `(slo_id, version)` index answers it.
fn latest_slo(conn: &Connection, id: &str) -> rusqlite::Result<Option<SloVersion>> {
    conn.prepare_cached("SELECT * FROM slo_versions WHERE slo_id = ?1 ORDER BY version DESC LIMIT 1")?
        .query_row([id], slo_version_row)
        .optional()
}

fn slo_version_row(row: &Row<'_>) -> rusqlite::Result<SloVersion> {
    Ok(SloVersion {
        id: row.get("slo_id")?,
        version: row.get("version")?,
        slo: row.get::<_, Option<Json<SloDef>>>("definition")?.map(|Json(slo)| slo),
        file: row.get("file")?,
        source_sha256: row.get::<_, Option<String>>("source_sha256")?.unwrap_or_default(),
        applied_ms: row.get("applied_ms")?,
        applied_by: row.get("applied_by")?,
    })
}

/// The version as a current SLO; None for a deletion.
fn stored_slo(v: SloVersion) -> Option<StoredSlo> {
    let slo = v.slo?;
    Some(StoredSlo {
        id: v.id,
        version: v.version,
        slo,
        file: v.file,
        source_sha256: v.source_sha256,
        applied_ms: v.applied_ms,
        applied_by: v.applied_by,
    })
}

/// The same SLO, wherever each was read from.
fn same_definition(a: &SloDef, b: &SloDef) -> bool {
    let unplaced = |slo: &SloDef| SloDef { origin: Origin::default(), ..slo.clone() };
    unplaced(a) == unplaced(b)
}

/// SHA-256 of `text`, in lowercase hex.
fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// === helpers ===

/// A list or map kept as JSON text in one column.
struct Json<T>(T);

impl<T: Serialize> ToSql for Json<T> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let text =
            serde_json::to_string(&self.0).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
        Ok(ToSqlOutput::from(text))
    }
}

impl<T: DeserializeOwned> FromSql for Json<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        serde_json::from_str(value.as_str()?).map(Json).map_err(|e| FromSqlError::Other(e.into()))
    }
}

/// A `LIMIT` value: SQLite counts in i64, and no table holds more rows than that.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A database error, saying what was being done.
/// The database and its `-wal` and `-shm` files hold every experiment, run and audit entry: owner only,
/// whatever the umask. SQLite creates `-wal` and `-shm` with the database file's mode, so the database is
/// created 0600 before SQLite opens it; files an older version left more open are narrowed to 0600.
fn make_private(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |doing: &str, p: &Path, e: std::io::Error| {
        StoreError::Backend(format!("{doing} {}: {e}", p.display()))
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("creating", path, e))?;
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in files {
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io("narrowing the mode of", &file, e))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("reading", &file, e)),
        }
    }
    Ok(())
}

pub(super) fn failed(doing: impl fmt::Display, err: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("{doing}: {err}"))
}

fn is_unique_violation(err: &rusqlite::Error) -> bool {
    has_extended_code(err, ffi::SQLITE_CONSTRAINT_UNIQUE)
        || has_extended_code(err, ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn has_extended_code(err: &rusqlite::Error, code: i32) -> bool {
    err.sqlite_error().is_some_and(|e| e.extended_code == code)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rusqlite::types::Value;

    use super::*;

    /// A directory of its own under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("chaos-store-test-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn db(&self) -> PathBuf {
            self.0.join("chaos.db")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs `test` on an in-memory store and on one in a fresh file.
    fn each_store(test: impl Fn(&SqliteStore)) {
        test(&SqliteStore::in_memory().unwrap());
        let dir = TempDir::new();
        test(&SqliteStore::open(&dir.db()).unwrap());
    }

    fn experiment(id: &str, created_ms: i64) -> ExperimentRecord {
        ExperimentRecord {
            id: id.into(),
            title: format!("title of {id}"),
            file: "checkout.yaml".into(),
            source: "title: checkout\nmethod: []\n".into(),
            vars: BTreeMap::from([
                ("target".into(), "http://127.0.0.1:8080".into()),
                ("rps".into(), "50".into()),
            ]),
            created_ms,
        }
    }

    fn run(id: &str, started_ms: i64, state: &str) -> RunRecord {
        let state = state.parse().unwrap();
        RunRecord {
            id: id.into(),
            experiment_id: "e-1".into(),
            title: "checkout survives latency".into(),
            state,
            verdict: None,
            reasons: vec!["first reason".into()],
            seed: u64::MAX - 7,
            started_ms,
            finished_ms: None,
            actor: "alice".into(),
            schedule_id: Some("s-1".into()),
            plan: "1. baseline\n2. inject latency".into(),
            journal_json: None,
            exit_code: None,
        }
    }

    fn event(run_id: &str, seq: u64) -> EventRecord {
        EventRecord {
            run_id: run_id.into(),
            seq,
            at_ms: seq * 100,
            kind: "probe".into(),
            name: "health".into(),
            detail: format!("probe {seq}"),
            ok: if seq.is_multiple_of(2) { Some(true) } else { None },
            line: format!("line {seq}"),
        }
    }

    fn schedule(id: &str, name: &str) -> ScheduleRecord {
        ScheduleRecord {
            id: id.into(),
            name: name.into(),
            experiment_id: "e-1".into(),
            cron: "0 3 * * *".into(),
            timezone: "Europe/Paris".into(),
            windows: vec!["Mon-Fri 09:00-17:00".into()],
            skip_if_running: true,
            blackout_dates: vec!["2025-12-25".into(), "2026-01-01".into()],
            seed: Some(u64::MAX),
            created_by: "bob".into(),
            created_ms: 1_000,
            last_fire_ms: None,
            last_run_id: None,
        }
    }

    fn agent(id: &str, first_seen_ms: i64, last_seen_ms: i64) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            hostname: format!("{id}.example"),
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            capabilities: vec!["latency".into(), "kill".into()],
            version: "0.1.0".into(),
            boot_id: "boot-1".into(),
            first_seen_ms,
            last_seen_ms,
            peer: "127.0.0.1:50000".into(),
        }
    }

    fn audit(action: &str, run_id: Option<&str>) -> NewAudit {
        NewAudit {
            at_ms: 5,
            actor: "alice".into(),
            action: action.into(),
            agent_id: Some("a-1".into()),
            run_id: run_id.map(Into::into),
            fault_id: None,
            detail: "{\"why\":\"test\"}".into(),
        }
    }

    fn ids<T>(records: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
        records.iter().map(|r| id(r).to_owned()).collect()
    }

    #[test]
    fn experiments_round_trip_newest_first() {
        each_store(|store| {
            store.insert_experiment(&experiment("e-1", 10)).unwrap();
            store.insert_experiment(&experiment("e-2", 30)).unwrap();
            store.insert_experiment(&experiment("e-3", 10)).unwrap();
            assert_eq!(store.experiment("e-2").unwrap(), Some(experiment("e-2", 30)));
            assert_eq!(store.experiment("e-9").unwrap(), None);
            let all = store.experiments().unwrap();
            assert_eq!(ids(&all, |e| &e.id), ["e-2", "e-3", "e-1"]);

            let err = store.insert_experiment(&experiment("e-1", 99)).unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
            assert_eq!(err.to_string(), "experiment e-1 exists already");
            assert_eq!(store.experiment("e-1").unwrap(), Some(experiment("e-1", 10)));
        });
    }

    #[test]
    fn runs_round_trip_and_update_whole_records() {
        each_store(|store| {
            let mut r = run("r-1", 100, "running");
            store.insert_run(&r).unwrap();
            assert_eq!(store.run("r-1").unwrap(), Some(r.clone()));
            assert_eq!(store.run("r-2").unwrap(), None);

            r.state = RunState::Passed;
            r.verdict = Some("passed".into());
            r.reasons.push("all SLOs held".into());
            r.finished_ms = Some(200);
            r.schedule_id = None;
            r.journal_json = Some("{\"verdict\":\"passed\"}".into());
            r.exit_code = Some(0);
            r.seed = 0;
            store.update_run(&r).unwrap();
            assert_eq!(store.run("r-1").unwrap(), Some(r));

            let err = store.update_run(&run("r-2", 1, "running")).unwrap_err();
            assert!(matches!(&err, StoreError::NotFound { what: "run", id } if id == "r-2"), "{err:?}");
            assert_eq!(err.to_string(), "run \"r-2\" not found");
        });
    }

    #[test]
    fn a_reused_run_id_is_a_conflict_naming_it() {
        each_store(|store| {
            store.insert_run(&run("r-12", 1, "running")).unwrap();
            let err = store.insert_run(&run("r-12", 2, "pending")).unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
            assert_eq!(err.to_string(), "run r-12 exists already");
            assert_eq!(store.run("r-12").unwrap().map(|r| r.started_ms), Some(1));
        });
    }

    #[test]
    fn runs_are_listed_newest_first_with_a_limit_and_a_state_filter() {
        each_store(|store| {
            store.insert_run(&run("r-1", 100, "passed")).unwrap();
            store.insert_run(&run("r-2", 300, "failed")).unwrap();
            store.insert_run(&run("r-3", 200, "passed")).unwrap();
            // Same start as r-2: the later insertion comes first.
            store.insert_run(&run("r-4", 300, "passed")).unwrap();

            assert_eq!(ids(&store.runs(10, None).unwrap(), |r| &r.id), ["r-4", "r-2", "r-3", "r-1"]);
            assert_eq!(ids(&store.runs(2, None).unwrap(), |r| &r.id), ["r-4", "r-2"]);
            assert_eq!(
                ids(&store.runs(10, Some(RunState::Passed)).unwrap(), |r| &r.id),
                ["r-4", "r-3", "r-1"]
            );
            assert_eq!(ids(&store.runs(1, Some(RunState::Passed)).unwrap(), |r| &r.id), ["r-4"]);
            assert!(store.runs(10, Some(RunState::Halted)).unwrap().is_empty());
            assert!(store.runs(0, None).unwrap().is_empty());
            assert_eq!(store.runs(usize::MAX, None).unwrap().len(), 4);
        });
    }

    #[test]
    fn interrupt_unfinished_touches_only_pending_and_running_runs() {
        each_store(|store| {
            let states = ["pending", "running", "passed", "failed", "planned", "halted"];
            for (i, state) in states.iter().enumerate() {
                store.insert_run(&run(&format!("r-{i}"), 10, state)).unwrap();
            }
            store.append_event(&event("r-1", 1)).unwrap();
            store.append_event(&event("r-1", 2)).unwrap();

            let interrupted = store.interrupt_unfinished(5_000, "the controller restarted").unwrap();
            assert_eq!(interrupted, ["r-0", "r-1"]);

            let r1 = store.run("r-1").unwrap().unwrap();
            let expected = RunRecord {
                state: RunState::Interrupted,
                verdict: Some("inconclusive".into()),
                reasons: vec!["first reason".into(), "the controller restarted".into()],
                finished_ms: Some(5_000),
                exit_code: Some(3),
                ..run("r-1", 10, "running")
            };
            assert_eq!(r1, expected);
            assert_eq!(store.run("r-0").unwrap().map(|r| r.state), Some(RunState::Interrupted));
            for (i, state) in states.iter().enumerate().skip(2) {
                assert_eq!(store.run(&format!("r-{i}")).unwrap(), Some(run(&format!("r-{i}"), 10, state)));
            }
            assert_eq!(store.events("r-1", 0).unwrap(), [event("r-1", 1), event("r-1", 2)]);

            assert!(store.interrupt_unfinished(6_000, "again").unwrap().is_empty());
        });
    }

    #[test]
    fn events_come_after_a_seq_in_ascending_order() {
        each_store(|store| {
            store.insert_run(&run("r-1", 1, "running")).unwrap();
            store.insert_run(&run("r-2", 1, "running")).unwrap();
            for seq in [3, 1, 2, 10] {
                store.append_event(&event("r-1", seq)).unwrap();
            }
            store.append_event(&event("r-2", 1)).unwrap();

            let seqs = |after| store.events("r-1", after).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>();
            assert_eq!(seqs(0), [1, 2, 3, 10]);
            assert_eq!(seqs(2), [3, 10]);
            assert_eq!(seqs(10), Vec::<u64>::new());
            assert_eq!(seqs(u64::MAX), Vec::<u64>::new());
            assert_eq!(store.events("r-1", 2).unwrap()[0], event("r-1", 3));
            assert_eq!(store.events("r-2", 0).unwrap(), [event("r-2", 1)]);
            assert!(store.events("r-9", 0).unwrap().is_empty());
        });
    }

    #[test]
    fn an_event_needs_a_stored_run_and_a_fresh_seq() {
        each_store(|store| {
            store.insert_run(&run("r-1", 1, "running")).unwrap();
            store.append_event(&event("r-1", 1)).unwrap();
            let err =
                store.append_event(&EventRecord { line: "other".into(), ..event("r-1", 1) }).unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
            assert_eq!(err.to_string(), "event 1 of run r-1 exists already");

            let err = store.append_event(&event("r-9", 1)).unwrap_err();
            assert!(matches!(&err, StoreError::NotFound { what: "run", id } if id == "r-9"), "{err:?}");
            assert_eq!(store.events("r-1", 0).unwrap(), [event("r-1", 1)]);
        });
    }

    #[test]
    fn schedules_round_trip_by_name_and_refuse_a_taken_id_or_name() {
        each_store(|store| {
            store.insert_schedule(&schedule("s-1", "nightly")).unwrap();
            let hourly = ScheduleRecord {
                windows: vec![],
                blackout_dates: vec![],
                seed: None,
                ..schedule("s-2", "hourly")
            };
            store.insert_schedule(&hourly).unwrap();
            assert_eq!(store.schedules().unwrap(), [hourly, schedule("s-1", "nightly")]);

            let err = store.insert_schedule(&schedule("s-3", "nightly")).unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
            assert_eq!(err.to_string(), "a schedule named \"nightly\" exists already");
            let err = store.insert_schedule(&schedule("s-1", "weekly")).unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
            assert_eq!(err.to_string(), "schedule s-1 exists already");
            assert_eq!(store.schedules().unwrap().len(), 2);
        });
    }

    #[test]
    fn a_schedule_firing_is_recorded() {
        each_store(|store| {
            store.insert_schedule(&schedule("s-1", "nightly")).unwrap();
            store.schedule_fired("s-1", 7_000, Some("r-5")).unwrap();
            let fired = ScheduleRecord {
                last_fire_ms: Some(7_000),
                last_run_id: Some("r-5".into()),
                ..schedule("s-1", "nightly")
            };
            assert_eq!(store.schedules().unwrap(), std::slice::from_ref(&fired));

            // A skipped firing has no run.
            store.schedule_fired("s-1", 8_000, None).unwrap();
            let skipped = ScheduleRecord { last_fire_ms: Some(8_000), last_run_id: None, ..fired };
            assert_eq!(store.schedules().unwrap(), [skipped]);

            let err = store.schedule_fired("nightly", 9_000, None).unwrap_err();
            assert!(
                matches!(&err, StoreError::NotFound { what: "schedule", id } if id == "nightly"),
                "{err:?}"
            );
        });
    }

    #[test]
    fn schedules_are_deleted_by_id_or_by_name() {
        each_store(|store| {
            store.insert_schedule(&schedule("s-1", "nightly")).unwrap();
            store.insert_schedule(&schedule("s-2", "hourly")).unwrap();
            // Named like the other's id: deleting "s-1" still means the schedule whose id it is.
            store.insert_schedule(&schedule("s-3", "s-1")).unwrap();

            assert_eq!(store.delete_schedule("s-1").unwrap(), Some(schedule("s-1", "nightly")));
            assert_eq!(store.delete_schedule("hourly").unwrap(), Some(schedule("s-2", "hourly")));
            assert_eq!(store.delete_schedule("nightly").unwrap(), None);
            assert_eq!(store.schedules().unwrap(), [schedule("s-3", "s-1")]);
            assert_eq!(store.delete_schedule("s-1").unwrap(), Some(schedule("s-3", "s-1")));
            assert!(store.schedules().unwrap().is_empty());
            // A deleted name can be taken again.
            store.insert_schedule(&schedule("s-4", "nightly")).unwrap();
        });
    }

    #[test]
    fn upserting_an_agent_keeps_when_it_was_first_seen() {
        each_store(|store| {
            store.upsert_agent(&agent("b", 100, 100)).unwrap();
            store.upsert_agent(&agent("a", 50, 60)).unwrap();
            let rebooted = AgentRecord {
                boot_id: "boot-2".into(),
                version: "0.2.0".into(),
                capabilities: vec![],
                labels: BTreeMap::new(),
                peer: "127.0.0.1:50001".into(),
                ..agent("b", 900, 1_000)
            };
            store.upsert_agent(&rebooted).unwrap();

            let agents = store.agents().unwrap();
            assert_eq!(agents, [agent("a", 50, 60), AgentRecord { first_seen_ms: 100, ..rebooted }]);
        });
    }

    #[test]
    fn audit_entries_get_increasing_seqs_and_are_listed_newest_first() {
        each_store(|store| {
            assert_eq!(store.append_audit(&audit("run.start", Some("r-1"))).unwrap(), 1);
            assert_eq!(store.append_audit(&audit("freeze", None)).unwrap(), 2);
            assert_eq!(store.append_audit(&audit("run.halt", Some("r-1"))).unwrap(), 3);
            assert_eq!(store.append_audit(&audit("run.start", Some("r-2"))).unwrap(), 4);

            let all = store.audit(10, None).unwrap();
            assert_eq!(all.iter().map(|a| a.seq).collect::<Vec<_>>(), [4, 3, 2, 1]);
            let expected = AuditRecord { seq: 3, entry: audit("run.halt", Some("r-1")) };
            assert_eq!(all[1], expected);
            assert_eq!(store.audit(2, None).unwrap().iter().map(|a| a.seq).collect::<Vec<_>>(), [4, 3]);
            let of_r1 = store.audit(10, Some("r-1")).unwrap();
            assert_eq!(of_r1.iter().map(|a| a.seq).collect::<Vec<_>>(), [3, 1]);
            assert_eq!(store.audit(1, Some("r-1")).unwrap(), [expected]);
            assert!(store.audit(10, Some("r-9")).unwrap().is_empty());
        });
    }

    #[test]
    fn a_batch_of_audit_entries_is_one_append() {
        each_store(|store| {
            assert_eq!(store.append_audit_batch(&[]).unwrap(), 0);
            store.append_audit(&audit("freeze", None)).unwrap();
            let halts: Vec<NewAudit> = (0..1_000)
                .map(|i| NewAudit { agent_id: Some(format!("a-{i}")), ..audit("fault.halt", Some("r-1")) })
                .collect();
            assert_eq!(store.append_audit_batch(&halts).unwrap(), 1_001);
            assert_eq!(store.append_audit_batch(&[]).unwrap(), 1_001);

            let entries = store.audit(usize::MAX, Some("r-1")).unwrap();
            assert_eq!(entries.len(), 1_000);
            assert_eq!(entries[0].seq, 1_001);
            assert_eq!(entries[0].entry.agent_id.as_deref(), Some("a-999"));
            assert_eq!(entries[999].seq, 2);
            assert_eq!(entries[999].entry.agent_id.as_deref(), Some("a-0"));
        });
    }

    #[test]
    fn the_database_refuses_to_change_or_delete_audit_entries() {
        each_store(|store| {
            store.append_audit(&audit("freeze", None)).unwrap();
            let conn = store.conn();
            for sql in
                ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit", "DELETE FROM audit WHERE seq = 1"]
            {
                let err = conn.execute(sql, []).unwrap_err();
                assert!(err.to_string().contains("the audit log is append-only"), "{sql}: {err}");
            }
            drop(conn);
            let entries = store.audit(10, None).unwrap();
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].entry.actor, "alice");
        });
    }

    #[test]
    fn the_freeze_is_set_replaced_and_cleared() {
        each_store(|store| {
            assert_eq!(store.freeze().unwrap(), None);
            let first = FreezeRecord { reason: "release".into(), by: "alice".into(), since_ms: 10 };
            store.set_freeze(Some(&first)).unwrap();
            assert_eq!(store.freeze().unwrap(), Some(first));
            let second = FreezeRecord { reason: "incident 42".into(), by: "bob".into(), since_ms: 20 };
            store.set_freeze(Some(&second)).unwrap();
            assert_eq!(store.freeze().unwrap(), Some(second));
            store.set_freeze(None).unwrap();
            assert_eq!(store.freeze().unwrap(), None);
            store.set_freeze(None).unwrap();
        });
    }

    #[test]
    fn reopening_a_file_keeps_everything() {
        let dir = TempDir::new();
        let frozen = FreezeRecord { reason: "incident".into(), by: "alice".into(), since_ms: 10 };
        {
            let store = SqliteStore::open(&dir.db()).unwrap();
            store.insert_experiment(&experiment("e-1", 1)).unwrap();
            store.insert_run(&run("r-1", 2, "passed")).unwrap();
            store.append_event(&event("r-1", 1)).unwrap();
            store.insert_schedule(&schedule("s-1", "nightly")).unwrap();
            store.upsert_agent(&agent("a-1", 3, 4)).unwrap();
            store.append_audit(&audit("freeze", None)).unwrap();
            store.set_freeze(Some(&frozen)).unwrap();
        }
        let store = SqliteStore::open(&dir.db()).unwrap();
        assert_eq!(store.experiments().unwrap(), [experiment("e-1", 1)]);
        assert_eq!(store.runs(10, None).unwrap(), [run("r-1", 2, "passed")]);
        assert_eq!(store.events("r-1", 0).unwrap(), [event("r-1", 1)]);
        assert_eq!(store.schedules().unwrap(), [schedule("s-1", "nightly")]);
        assert_eq!(store.agents().unwrap(), [agent("a-1", 3, 4)]);
        assert_eq!(store.audit(10, None).unwrap().len(), 1);
        assert_eq!(store.freeze().unwrap(), Some(frozen));

        store.set_freeze(None).unwrap();
        drop(store);
        assert_eq!(SqliteStore::open(&dir.db()).unwrap().freeze().unwrap(), None);
    }

    #[test]
    fn audit_seqs_keep_increasing_across_reopening() {
        let dir = TempDir::new();
        {
            let store = SqliteStore::open(&dir.db()).unwrap();
            assert_eq!(store.append_audit_batch(&[audit("a", None), audit("b", None)]).unwrap(), 2);
            assert_eq!(store.append_audit(&audit("c", None)).unwrap(), 3);
        }
        let store = SqliteStore::open(&dir.db()).unwrap();
        assert_eq!(store.append_audit(&audit("d", None)).unwrap(), 4);
        assert_eq!(store.append_audit_batch(&[audit("e", None)]).unwrap(), 5);
        let actions: Vec<String> =
            store.audit(10, None).unwrap().into_iter().map(|a| a.entry.action).collect();
        assert_eq!(actions, ["e", "d", "c", "b", "a"]);
    }

    #[test]
    fn a_file_is_opened_in_wal_mode_with_foreign_keys() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.db()).unwrap();
        let conn = store.conn();
        let pragma = |name: &str| conn.pragma_query_value(None, name, |row| row.get::<_, Value>(0)).unwrap();
        assert_eq!(pragma("journal_mode"), Value::Text("wal".into()));
        assert_eq!(pragma("foreign_keys"), Value::Integer(1));
        // NORMAL is 1.
        assert_eq!(pragma("synchronous"), Value::Integer(1));
        assert_eq!(pragma("user_version"), Value::Integer(SCHEMA_VERSION));
        assert_eq!(pragma("busy_timeout"), Value::Integer(5_000));
    }

    #[test]
    fn a_database_from_a_newer_schema_is_refused_naming_it() {
        let dir = TempDir::new();
        let path = dir.db();
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 7).unwrap();

        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("store: "), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("schema version 7"), "{message}");
        assert!(message.contains(&format!("version {SCHEMA_VERSION}")), "{message}");
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_named_in_the_error() {
        let dir = TempDir::new();
        let missing_dir = dir.0.join("no-such-dir").join("chaos.db");
        let message = SqliteStore::open(&missing_dir).unwrap_err().to_string();
        assert!(message.contains(&missing_dir.display().to_string()), "{message}");

        let not_a_database = dir.0.join("notes.txt");
        std::fs::write(&not_a_database, "these are not the pages you are looking for ".repeat(100)).unwrap();
        let message = SqliteStore::open(&not_a_database).unwrap_err().to_string();
        assert!(message.starts_with(&format!("store: opening {}: ", not_a_database.display())), "{message}");
    }

    #[test]
    fn four_threads_appending_audit_entries_get_distinct_seqs() {
        let dir = TempDir::new();
        let shared = Arc::new(SqliteStore::open(&dir.db()).unwrap());
        // Two threads share one store, two share another connection to the same file.
        let other = Arc::new(SqliteStore::open(&dir.db()).unwrap());
        let threads: Vec<_> = [&shared, &shared, &other, &other]
            .into_iter()
            .enumerate()
            .map(|(t, store)| {
                let store = Arc::clone(store);
                std::thread::spawn(move || {
                    (0..100)
                        .map(|i| store.append_audit(&audit(&format!("t{t}-{i}"), None)).unwrap())
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut seqs = BTreeSet::new();
        for thread in threads {
            let mine = thread.join().unwrap();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "each thread's seqs increase: {mine:?}");
            seqs.extend(mine);
        }
        assert_eq!(seqs.len(), 400);
        assert_eq!(seqs.first(), Some(&1));
        assert_eq!(seqs.last(), Some(&400));
        assert_eq!(shared.audit(usize::MAX, None).unwrap().len(), 400);
    }

    /// Two SLOs of `file` (checkout/availability at `objective`, checkout/latency), as `slo_file` reads them.
    fn slo_text(objective: &str) -> String {
        format!(
            "apiVersion: chaos/v1\nkind: SLO\nservice: checkout\nname: availability\nobjective: {objective}\n\
             sli:\n  events:\n    bad: http_requests_total{{code=~\"5..\"}}\n    total: http_requests_total\n\
             ---\napiVersion: chaos/v1\nkind: SLO\nservice: checkout\nname: latency\nobjective: 99%\nperiod: 7d\n\
             sli:\n  latency:\n    histogram: http_request_duration_seconds\n    threshold: 300ms\n\
             \x20   buckets: [0.1, 0.3, 1]\n"
        )
    }

    fn slo_apply(file: &str, text: &str, by: &str, at_ms: i64) -> SloApply {
        let slos = slo_file::parse(file, text).unwrap().into_iter().map(|slo| (slo, 0)).collect();
        SloApply {
            sources: vec![SloSource { file: file.into(), text: text.into() }],
            slos,
            applied_ms: at_ms,
            applied_by: by.into(),
        }
    }

    fn outcomes(applied: &[SloApplied]) -> Vec<(String, u32, SloOutcome)> {
        applied.iter().map(|a| (a.id.clone(), a.version, a.outcome)).collect()
    }

    #[test]
    fn slo_versions_are_added_per_change_and_never_overwritten() {
        use SloOutcome::{Created, Unchanged, Updated};
        each_store(|store| {
            let first = slo_apply("checkout.yaml", &slo_text("99.9%"), "alice", 10);
            let done = store.apply_slos(&first).unwrap();
            assert_eq!(
                outcomes(&done),
                [("checkout/availability".into(), 1, Created), ("checkout/latency".into(), 1, Created)]
            );
            // The same definitions moved down the file (other lines, other origin): unchanged, no version.
            let moved = format!("# moved\n\n{}", slo_text("99.9%"));
            let done = store.apply_slos(&slo_apply("other.yaml", &moved, "bob", 20)).unwrap();
            assert_eq!(
                outcomes(&done),
                [("checkout/availability".into(), 1, Unchanged), ("checkout/latency".into(), 1, Unchanged)]
            );
            let changed = slo_apply("checkout.yaml", &slo_text("99.5%"), "bob", 30);
            let done = store.apply_slos(&changed).unwrap();
            assert_eq!(
                outcomes(&done),
                [("checkout/availability".into(), 2, Updated), ("checkout/latency".into(), 1, Unchanged)]
            );

            let current = store.current_slo("checkout/availability").unwrap().unwrap();
            assert_eq!((current.version, current.slo.objective), (2, 0.995));
            assert_eq!((current.applied_by.as_str(), current.applied_ms), ("bob", 30));
            assert_eq!(current.slo, changed.slos[0].0);
            let history = store.slo_history("checkout/availability").unwrap();
            let summary: Vec<_> = history
                .iter()
                .map(|v| (v.version, v.applied_by.as_str(), v.slo.as_ref().map(|s| s.objective)))
                .collect();
            assert_eq!(summary, [(1, "alice", Some(0.999)), (2, "bob", Some(0.995))]);
            assert_eq!(history[0].slo.as_ref(), Some(&first.slos[0].0));
            // Each version keeps the text it came from; one text is stored once for the SLOs sharing it.
            assert_eq!(store.slo_source("checkout/availability", 1).unwrap().unwrap(), first.sources[0]);
            assert_eq!(store.slo_source("checkout/availability", 2).unwrap().unwrap(), changed.sources[0]);
            assert_eq!(store.slo_source("checkout/latency", 1).unwrap().unwrap(), first.sources[0]);
            assert_eq!(history[0].source_sha256, sha256_hex(&first.sources[0].text));
            let sources: i64 =
                store.conn().query_row("SELECT COUNT(*) FROM slo_sources", [], |row| row.get(0)).unwrap();
            assert_eq!(sources, 2);
            assert_eq!(store.slo_source("checkout/availability", 3).unwrap(), None);
            let ids: Vec<_> = store.current_slos().unwrap().into_iter().map(|s| (s.id, s.version)).collect();
            assert_eq!(ids, [("checkout/availability".into(), 2), ("checkout/latency".into(), 1)]);
            assert_eq!(store.current_slo("checkout/nothing").unwrap(), None);
            assert!(store.slo_history("checkout/nothing").unwrap().is_empty());
        });
    }

    #[test]
    fn a_deleted_slo_leaves_the_current_list_keeps_its_history_and_can_come_back() {
        each_store(|store| {
            store.apply_slos(&slo_apply("checkout.yaml", &slo_text("99.9%"), "alice", 10)).unwrap();
            let deleted = store.delete_slo("checkout/latency", 20, "bob").unwrap().unwrap();
            assert_eq!(
                (deleted.version, deleted.slo.is_none(), deleted.applied_by.as_str()),
                (2, true, "bob")
            );
            assert_eq!(store.delete_slo("checkout/latency", 21, "bob").unwrap(), None);
            assert_eq!(store.delete_slo("checkout/nothing", 21, "bob").unwrap(), None);
            assert_eq!(store.current_slo("checkout/latency").unwrap(), None);
            let ids: Vec<_> = store.current_slos().unwrap().into_iter().map(|s| s.id).collect();
            assert_eq!(ids, ["checkout/availability"]);
            let history = store.slo_history("checkout/latency").unwrap();
            assert_eq!(
                history.iter().map(|v| (v.version, v.slo.is_some())).collect::<Vec<_>>(),
                [(1, true), (2, false)]
            );
            assert_eq!(history[1], deleted);
            assert_eq!(store.slo_source("checkout/latency", 2).unwrap(), None);

            // Applied again, identical to version 1: created as version 3.
            let done =
                store.apply_slos(&slo_apply("checkout.yaml", &slo_text("99.9%"), "carol", 30)).unwrap();
            assert_eq!(
                outcomes(&done),
                [
                    ("checkout/availability".into(), 1, SloOutcome::Unchanged),
                    ("checkout/latency".into(), 3, SloOutcome::Created)
                ]
            );
            assert_eq!(store.current_slo("checkout/latency").unwrap().unwrap().version, 3);
        });
    }

    #[test]
    fn an_apply_is_all_or_nothing_and_the_versions_cannot_be_changed() {
        each_store(|store| {
            let mut apply = slo_apply("checkout.yaml", &slo_text("99.9%"), "alice", 10);
            // A second source index out of range: refused before anything is written.
            apply.slos[1].1 = 7;
            let err = store.apply_slos(&apply).unwrap_err();
            assert!(err.to_string().contains("checkout/latency: source 7 of 1 given"), "{err}");
            assert!(store.current_slos().unwrap().is_empty());
            let huge = SloApply {
                sources: vec![SloSource {
                    file: "huge.yaml".into(),
                    text: " ".repeat(usize::try_from(slo_file::MAX_FILE_BYTES).unwrap() + 1),
                }],
                ..slo_apply("checkout.yaml", &slo_text("99.9%"), "alice", 10)
            };
            let err = store.apply_slos(&huge).unwrap_err();
            assert!(err.to_string().contains("huge.yaml: 8388609 bytes, larger than"), "{err}");
            assert!(store.current_slos().unwrap().is_empty());

            store.apply_slos(&slo_apply("checkout.yaml", &slo_text("99.9%"), "alice", 10)).unwrap();
            let conn = store.conn();
            for (sql, message) in [
                ("UPDATE slo_versions SET applied_by = 'mallory'", "SLO versions are append-only"),
                ("DELETE FROM slo_versions", "SLO versions are append-only"),
                ("UPDATE slo_sources SET text = ''", "SLO sources are append-only"),
                ("DELETE FROM slo_sources", "SLO sources are append-only"),
            ] {
                let err = conn.execute(sql, []).unwrap_err();
                assert!(err.to_string().contains(message), "{sql}: {err}");
            }
        });
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_records() {
        let dir = TempDir::new();
        let path = dir.db();
        {
            // What the previous release created: the version 1 schema only.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO audit (at_ms, actor, action, detail) VALUES (1, 'alice', 'freeze', 'release')",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let version: i64 = store.conn().pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(store.audit(10, None).unwrap()[0].entry.actor, "alice");
        store.apply_slos(&slo_apply("checkout.yaml", &slo_text("99.9%"), "alice", 10)).unwrap();
        drop(store);
        // Reopened at the current version: nothing to migrate, everything kept.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.current_slos().unwrap().len(), 2);
        assert_eq!(store.slo_history("checkout/latency").unwrap().len(), 1);
    }

    #[test]
    fn the_current_slo_is_one_indexed_lookup() {
        let store = SqliteStore::in_memory().unwrap();
        let conn = store.conn();
        let plan: Vec<String> = conn
            .prepare("EXPLAIN QUERY PLAN SELECT * FROM slo_versions WHERE slo_id = ?1 ORDER BY version DESC LIMIT 1")
            .unwrap()
            .query_map(["a/b"], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(plan[0].starts_with("SEARCH slo_versions USING INDEX"), "{plan:?}");
    }

    #[test]
    fn a_poisoned_lock_is_taken_over() {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        let holder = Arc::clone(&store);
        let panicked = std::thread::spawn(move || {
            let _conn = holder.conn();
            panic!("poison the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(store.conn.is_poisoned());
        assert_eq!(store.append_audit(&audit("after", None)).unwrap(), 1);
    }
}
