//! The incident records (issue 16): incidents, their append-only timelines and the runs they are linked to.
//! Schema version 3 ([`MIGRATION`]).

use rusqlite::params;

use super::sqlite::failed;
use super::{SqliteStore, StoreResult};

/// Version 3: incidents. The timeline is append-only; the incident row holds the current state (every change to
/// it is a timeline entry as well, and an audit entry).
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

/// The incident part of the [`super::Store`].
pub trait IncidentStore {
    /// The incidents linked to `run_id` (opened from it, or linked to it later), oldest first.
    fn incidents_for_run(&self, run_id: &str) -> StoreResult<Vec<IncidentRef>>;
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
}
