//! The incident records (issue 16): incidents, their append-only timelines and the runs they are linked to.
//! Schema version 3 ([`MIGRATION`]). What a change may do is [`crate::incident`]'s business: the store reads
//! the incident, applies the change and writes the incident and its new timeline entries in one transaction.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, StoreError, StoreResult};
use crate::experiment::model::OnFailure;
use crate::incident::{Change, Entry, Incident, Refused, Severity, Status};

/// Version 3: incidents. The timeline is append-only (triggers refuse an update or a delete); the incident
/// row holds the current state (every change to it is a timeline entry as well, and an audit entry).
/// `record` is the whole [`Incident`] as JSON without its timeline and runs, which have tables of their own.
pub(super) const MIGRATION: &str = "
CREATE TABLE incidents (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    detected_ms INTEGER,
    acknowledged_ms INTEGER,
    resolved_ms INTEGER,
    commander TEXT,
    record TEXT NOT NULL
);
CREATE INDEX incidents_by_start ON incidents (started_ms);
CREATE TABLE incident_runs (
    seq INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    run_id TEXT NOT NULL,
    linked_ms INTEGER NOT NULL,
    UNIQUE (incident_id, run_id)
);
CREATE INDEX incident_runs_by_run ON incident_runs (run_id);
CREATE TABLE incident_timeline (
    seq INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    at_ms INTEGER NOT NULL,
    author TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX incident_timeline_by_incident ON incident_timeline (incident_id, seq);
CREATE TRIGGER incident_timeline_no_update BEFORE UPDATE ON incident_timeline
BEGIN SELECT RAISE(ABORT, 'incident timelines are append-only'); END;
CREATE TRIGGER incident_timeline_no_delete BEFORE DELETE ON incident_timeline
BEGIN SELECT RAISE(ABORT, 'incident timelines are append-only'); END;
CREATE TABLE schedule_on_failure (
    schedule_id TEXT PRIMARY KEY,
    on_failure TEXT NOT NULL
);
";

/// An incident as other records see it: enough to list it beside a run or a game day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentRef {
    pub id: String,
    pub title: String,
    /// `sev1` .. `sev4`.
    pub severity: String,
    /// `investigating`, `identified`, `monitoring` or `resolved`.
    pub status: String,
    pub started_ms: i64,
}

/// Which incidents [`IncidentStore::incidents`] lists. Every field narrows; the default lists them all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    pub status: Option<Status>,
    pub severity: Option<Severity>,
    /// Incidents affecting this service.
    pub service: Option<String>,
    /// Started at or after (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Started before.
    pub until_ms: Option<i64>,
    /// At most this many, newest first; 0 for all.
    pub limit: usize,
}

/// What [`IncidentStore::update_incident`] answers: the incident as it is now and the timeline entries the
/// change added, or why the change was refused.
pub type Updated = Result<(Incident, Vec<Entry>), Refused>;

/// The incident part of the [`super::Store`].
pub trait IncidentStore {
    /// The incidents linked to `run_id` (opened from it, or linked to it later), oldest first.
    fn incidents_for_run(&self, run_id: &str) -> StoreResult<Vec<IncidentRef>>;

    /// Stores a new incident with its timeline and linked runs; [`StoreError::Conflict`] when its id is taken.
    fn insert_incident(&self, incident: &Incident) -> StoreResult<()>;

    /// The incident `id` with its timeline (oldest first) and linked runs.
    fn incident(&self, id: &str) -> StoreResult<Option<Incident>>;

    /// The incidents `filter` selects, newest start first, without their timelines (their runs included).
    fn incidents(&self, filter: &IncidentFilter) -> StoreResult<Vec<Incident>>;

    /// Applies `change` by `author` at `now_ms` to incident `id` and stores the result with the timeline
    /// entries it adds, in one transaction: the incident as it is now (timeline included) and the new entries,
    /// or why the change was refused (nothing stored then). [`StoreError::NotFound`] for an unknown id.
    fn update_incident(&self, id: &str, change: &Change, now_ms: i64, author: &str) -> StoreResult<Updated>;

    /// The timeline of incident `id`, oldest first (empty for an unknown id).
    fn incident_timeline(&self, id: &str) -> StoreResult<Vec<Entry>>;

    /// Keeps schedule `schedule_id`'s own `on_failure` (it replaces the experiment's for its runs).
    fn set_schedule_on_failure(&self, schedule_id: &str, on_failure: &OnFailure) -> StoreResult<()>;

    /// Schedule `schedule_id`'s own `on_failure`, if it has one.
    fn schedule_on_failure(&self, schedule_id: &str) -> StoreResult<Option<OnFailure>>;
}

/// A backend error, saying what was being done (as the rest of the store words them; a copy of its helper,
/// so this file does not import the SQLite store's, which imports this file's migration).
fn failed(doing: impl std::fmt::Display, err: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("{doing}: {err}"))
}

/// The record column: the incident without what has tables of its own.
fn record_json(i: &Incident) -> rusqlite::Result<String> {
    let bare = Incident { timeline: Vec::new(), runs: Vec::new(), ..i.clone() };
    serde_json::to_string(&bare).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn from_record(json: &str) -> rusqlite::Result<Incident> {
    serde_json::from_str(json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn write_row(conn: &Connection, i: &Incident, insert: bool) -> rusqlite::Result<usize> {
    let sql = if insert {
        "INSERT INTO incidents (id, title, severity, status, started_ms, detected_ms, acknowledged_ms,
             resolved_ms, commander, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    } else {
        "UPDATE incidents SET title = ?2, severity = ?3, status = ?4, started_ms = ?5, detected_ms = ?6,
             acknowledged_ms = ?7, resolved_ms = ?8, commander = ?9, record = ?10 WHERE id = ?1"
    };
    conn.prepare_cached(sql)?.execute(params![
        i.id,
        i.title,
        i.severity.as_str(),
        i.status.as_str(),
        i.started_ms,
        i.detected_ms,
        i.acknowledged_ms,
        i.resolved_ms,
        i.commander,
        record_json(i)?,
    ])
}

fn append_entries(conn: &Connection, id: &str, entries: &[Entry]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO incident_timeline (incident_id, at_ms, author, kind, text) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for e in entries {
        stmt.execute(params![id, e.at_ms, e.author, e.kind.as_str(), e.text])?;
    }
    Ok(())
}

fn link_run(conn: &Connection, id: &str, run: &str, at_ms: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO incident_runs (incident_id, run_id, linked_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![id, run, at_ms])?;
    Ok(())
}

fn timeline(conn: &Connection, id: &str) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at_ms, author, kind, text FROM incident_timeline WHERE incident_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([id], |row| {
        let kind: String = row.get(2)?;
        let kind = kind.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?;
        Ok(Entry { at_ms: row.get(0)?, author: row.get(1)?, kind, text: row.get(3)? })
    })?;
    rows.collect()
}

fn runs(conn: &Connection, id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT run_id FROM incident_runs WHERE incident_id = ?1 ORDER BY seq")?;
    let rows = stmt.query_map([id], |row| row.get(0))?;
    rows.collect()
}

/// The incident `id` with its timeline and runs, read through `conn` (a transaction or the connection).
fn read(conn: &Connection, id: &str) -> rusqlite::Result<Option<Incident>> {
    let record: Option<String> = conn
        .prepare_cached("SELECT record FROM incidents WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?;
    let Some(record) = record else { return Ok(None) };
    let mut incident = from_record(&record)?;
    incident.timeline = timeline(conn, id)?;
    incident.runs = runs(conn, id)?;
    Ok(Some(incident))
}

impl IncidentStore for SqliteStore {
    fn incidents_for_run(&self, run_id: &str) -> StoreResult<Vec<IncidentRef>> {
        let doing = "listing the incidents of a run";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT i.id, i.title, i.severity, i.status, i.started_ms FROM incident_runs r
                 JOIN incidents i ON i.id = r.incident_id WHERE r.run_id = ?1 ORDER BY i.seq",
            )
            .map_err(|e| failed(doing, e))?;
        let rows = stmt
            .query_map(params![run_id], |row| {
                Ok(IncidentRef {
                    id: row.get(0)?,
                    title: row.get(1)?,
                    severity: row.get(2)?,
                    status: row.get(3)?,
                    started_ms: row.get(4)?,
                })
            })
            .map_err(|e| failed(doing, e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| failed(doing, e))
    }

    fn insert_incident(&self, incident: &Incident) -> StoreResult<()> {
        let mut conn = self.conn();
        let insert = |conn: &mut Connection| -> rusqlite::Result<bool> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let taken: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM incidents WHERE id = ?1)")?
                .query_row([&incident.id], |row| row.get(0))?;
            if taken {
                return Ok(false);
            }
            write_row(&tx, incident, true)?;
            append_entries(&tx, &incident.id, &incident.timeline)?;
            let opened = incident.timeline.first().map_or(incident.started_ms, |e| e.at_ms);
            for run in &incident.runs {
                link_run(&tx, &incident.id, run, opened)?;
            }
            tx.commit()?;
            Ok(true)
        };
        match insert(&mut conn).map_err(|e| failed(format_args!("storing incident {}", incident.id), e))? {
            true => Ok(()),
            false => Err(StoreError::Conflict(format!("incident {} exists already", incident.id))),
        }
    }

    fn incident(&self, id: &str) -> StoreResult<Option<Incident>> {
        let conn = self.conn();
        read(&conn, id).map_err(|e| failed(format_args!("reading incident {id}"), e))
    }

    fn incidents(&self, filter: &IncidentFilter) -> StoreResult<Vec<Incident>> {
        let conn = self.conn();
        let list = || -> rusqlite::Result<Vec<Incident>> {
            let mut stmt = conn.prepare_cached(
                "SELECT id, record FROM incidents
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR severity = ?2)
                   AND (?3 IS NULL OR started_ms >= ?3) AND (?4 IS NULL OR started_ms < ?4)
                 ORDER BY started_ms DESC, seq DESC",
            )?;
            let rows = stmt.query_map(
                params![
                    filter.status.map(|s| s.as_str()),
                    filter.severity.map(|s| s.as_str()),
                    filter.since_ms,
                    filter.until_ms
                ],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (id, record) = row?;
                let mut incident = from_record(&record)?;
                if let Some(service) = &filter.service
                    && !incident.services.contains(service)
                {
                    continue;
                }
                incident.runs = runs(&conn, &id)?;
                out.push(incident);
                if filter.limit != 0 && out.len() >= filter.limit {
                    break;
                }
            }
            Ok(out)
        };
        list().map_err(|e| failed("listing incidents", e))
    }

    fn update_incident(&self, id: &str, change: &Change, now_ms: i64, author: &str) -> StoreResult<Updated> {
        let mut conn = self.conn();
        let update = |conn: &mut Connection| -> rusqlite::Result<Option<Updated>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(mut incident) = read(&tx, id)? else { return Ok(None) };
            let entries = match incident.apply(change, now_ms, author) {
                Ok(entries) => entries,
                Err(refused) => return Ok(Some(Err(refused))),
            };
            write_row(&tx, &incident, false)?;
            append_entries(&tx, id, &entries)?;
            if let Change::LinkRun(run) = change {
                link_run(&tx, id, run, now_ms)?;
            }
            tx.commit()?;
            Ok(Some(Ok((incident, entries))))
        };
        update(&mut conn)
            .map_err(|e| failed(format_args!("updating incident {id}"), e))?
            .ok_or_else(|| StoreError::NotFound { what: "incident", id: id.to_string() })
    }

    fn incident_timeline(&self, id: &str) -> StoreResult<Vec<Entry>> {
        let conn = self.conn();
        timeline(&conn, id).map_err(|e| failed(format_args!("reading the timeline of incident {id}"), e))
    }

    fn set_schedule_on_failure(&self, schedule_id: &str, on_failure: &OnFailure) -> StoreResult<()> {
        let doing = format!("storing the on_failure of schedule {schedule_id}");
        let json =
            serde_json::to_string(on_failure).map_err(|e| StoreError::Backend(format!("{doing}: {e}")))?;
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT OR REPLACE INTO schedule_on_failure (schedule_id, on_failure) VALUES (?1, ?2)",
        )
        .and_then(|mut stmt| stmt.execute(params![schedule_id, json]))
        .map_err(|e| failed(&doing, e))?;
        Ok(())
    }

    fn schedule_on_failure(&self, schedule_id: &str) -> StoreResult<Option<OnFailure>> {
        let doing = format!("reading the on_failure of schedule {schedule_id}");
        let conn = self.conn();
        let json: Option<String> = conn
            .prepare_cached("SELECT on_failure FROM schedule_on_failure WHERE schedule_id = ?1")
            .and_then(|mut stmt| stmt.query_row([schedule_id], |row| row.get(0)).optional())
            .map_err(|e| failed(&doing, e))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Backend(format!("{doing}: {e}"))))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{EntryKind, Opening};
    use crate::store::Store;

    fn opened(id: &str, started_ms: i64, services: &[&str]) -> Incident {
        let o = Opening {
            title: format!("incident {id}"),
            severity: Severity::Sev3,
            started_ms,
            detected_ms: None,
            commander: None,
            responders: vec![],
            services: services.iter().map(|s| s.to_string()).collect(),
            summary: None,
        };
        Incident::open(id.into(), o, started_ms + 1000, "ana").unwrap()
    }

    #[test]
    fn incidents_round_trip_with_their_timeline_and_runs() {
        let store = SqliteStore::in_memory().unwrap();
        let mut inc = opened("inc-1", 10_000, &["checkout"]);
        inc.runs.push("r-1".into());
        store.insert_incident(&inc).unwrap();
        assert!(matches!(store.insert_incident(&inc), Err(StoreError::Conflict(_))));
        assert_eq!(store.incident("inc-1").unwrap(), Some(inc.clone()));
        assert_eq!(store.incidents_for_run("r-1").unwrap()[0].id, "inc-1");
        let (after, entries) = store
            .update_incident("inc-1", &Change::Note("seen on the dashboard".into()), 12_000, "bo")
            .unwrap()
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(store.incident("inc-1").unwrap(), Some(after));
        let refused = store
            .update_incident(
                "inc-1",
                &Change::Status { to: Status::Investigating, reopen: false, note: None },
                13_000,
                "bo",
            )
            .unwrap();
        assert_eq!(refused, Err(Refused::State("the incident is already investigating".into())));
        let kinds: Vec<EntryKind> =
            store.incident_timeline("inc-1").unwrap().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EntryKind::Opened, EntryKind::Note], "a refused change stores nothing");
        let missing = store.update_incident("inc-9", &Change::Note("x".into()), 1, "bo");
        assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
    }

    #[test]
    fn the_timeline_is_append_only_in_the_database_itself() {
        let store = SqliteStore::in_memory().unwrap();
        store.insert_incident(&opened("inc-1", 10_000, &[])).unwrap();
        let conn = store.conn();
        let update = conn.execute("UPDATE incident_timeline SET text = 'rewritten'", []);
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = conn.execute("DELETE FROM incident_timeline", []);
        assert!(delete.unwrap_err().to_string().contains("append-only"));
    }

    #[test]
    fn lists_filter_by_period_service_status_and_severity() {
        let store = SqliteStore::in_memory().unwrap();
        for (id, start, services) in
            [("a", 1_000, &["web"][..]), ("b", 2_000, &["db", "web"][..]), ("c", 3_000, &[][..])]
        {
            store.insert_incident(&opened(id, start, services)).unwrap();
        }
        let ids = |f: IncidentFilter| -> Vec<String> {
            store.incidents(&f).unwrap().into_iter().map(|i| i.id).collect()
        };
        assert_eq!(ids(IncidentFilter::default()), ["c", "b", "a"]);
        assert_eq!(ids(IncidentFilter { service: Some("web".into()), ..Default::default() }), ["b", "a"]);
        assert_eq!(
            ids(IncidentFilter { since_ms: Some(2_000), until_ms: Some(3_000), ..Default::default() }),
            ["b"]
        );
        assert_eq!(ids(IncidentFilter { limit: 1, ..Default::default() }), ["c"]);
        assert_eq!(
            ids(IncidentFilter { severity: Some(Severity::Sev1), ..Default::default() }),
            Vec::<String>::new()
        );
        store
            .update_incident("a", &Change::Resolve { root_cause: None, note: None }, 5_000, "x")
            .unwrap()
            .unwrap();
        assert_eq!(ids(IncidentFilter { status: Some(Status::Resolved), ..Default::default() }), ["a"]);
        let _: &dyn Store = &store;
    }
}
