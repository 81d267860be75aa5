//! The game-day records (issue 16): each game day run through the controller ([`GameDayRecord`]: its plan,
//! its scenarios' runs and progress log) and the notes people add while it runs ([`NoteRecord`], append-only).
//! Schema version 4 ([`MIGRATION`]).

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::sqlite::failed;
use super::{SqliteStore, StoreError, StoreResult};
use crate::gameday::plan::Plan;

/// Version 4: game days and their append-only notes. The row's `state`, `started_ms` and `finished_ms` are
/// authoritative (an interrupted game day is marked there); `record` holds the rest as JSON.
pub(super) const MIGRATION: &str = "
CREATE TABLE gamedays (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    record TEXT NOT NULL
);
CREATE TABLE gameday_notes (
    seq INTEGER PRIMARY KEY,
    gameday_id TEXT NOT NULL REFERENCES gamedays (id),
    at_ms INTEGER NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX gameday_notes_by_gameday ON gameday_notes (gameday_id, seq);
CREATE TRIGGER gameday_notes_no_update BEFORE UPDATE ON gameday_notes
BEGIN SELECT RAISE(ABORT, 'game-day notes are append-only'); END;
CREATE TRIGGER gameday_notes_no_delete BEFORE DELETE ON gameday_notes
BEGIN SELECT RAISE(ABORT, 'game-day notes are append-only'); END;
";

/// The state of a game day still going.
pub const RUNNING: &str = "running";
/// The state of one its controller left running (it restarted).
pub const INTERRUPTED: &str = "interrupted";

/// One game day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GameDayRecord {
    pub id: String,
    pub title: String,
    /// `running`; then `completed` (every scenario ran), `stopped` (a scenario with `on_failure: stop` did not
    /// pass), `halted` (halted, by hand, by halt-all or a freeze) or `interrupted` (the controller restarted).
    pub state: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// Who started it.
    pub actor: String,
    /// Why it ended before its last scenario, if it did.
    #[serde(default)]
    pub reason: Option<String>,
    /// The plan file's name, as the client gave it.
    pub plan_file: String,
    pub plan: Plan,
    /// One per scenario of the plan, in order.
    pub scenarios: Vec<ScenarioRecord>,
    /// What happened, in order (scenario started, run finished, pauses, halts).
    #[serde(default)]
    pub log: Vec<LogLine>,
    /// The notes, oldest first (kept in their own append-only table, not in `record`).
    #[serde(skip)]
    pub notes: Vec<NoteRecord>,
}

/// One scenario of a game day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioRecord {
    pub name: String,
    /// The experiment file as the plan names it.
    pub experiment: String,
    /// `pending`, `running`, then the run's state (`passed`, `failed`, `inconclusive`, `invalid`, `halted`,
    /// `interrupted`), `not-started` (the controller refused the run: see `reasons`) or `skipped` (the game
    /// day ended before it).
    pub state: String,
    #[serde(default)]
    pub run_id: Option<String>,
    /// The run's verdict.
    #[serde(default)]
    pub verdict: Option<String>,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub started_ms: Option<i64>,
    #[serde(default)]
    pub finished_ms: Option<i64>,
}

/// One line of a game day's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub at_ms: i64,
    /// `gameday`, `scenario`, `run`, `pause`, `halt`.
    pub kind: String,
    pub text: String,
}

/// A note added to a game day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteRecord {
    pub at_ms: i64,
    pub author: String,
    pub text: String,
}

/// The game-day part of the [`super::Store`].
pub trait GameDayStore {
    /// Stores a new game day; [`StoreError::Conflict`] when its id is taken.
    fn insert_gameday(&self, g: &GameDayRecord) -> StoreResult<()>;
    /// Replaces a game day's state and record (not its notes); [`StoreError::NotFound`] when unknown.
    fn update_gameday(&self, g: &GameDayRecord) -> StoreResult<()>;
    /// One game day with its notes.
    fn gameday(&self, id: &str) -> StoreResult<Option<GameDayRecord>>;
    /// The latest `limit` game days, newest first, without their notes.
    fn gamedays(&self, limit: usize) -> StoreResult<Vec<GameDayRecord>>;
    /// Appends a note; [`StoreError::NotFound`] for an unknown game day.
    fn append_gameday_note(&self, gameday_id: &str, note: &NoteRecord) -> StoreResult<()>;
    /// Marks every game day still `running` as `interrupted` (its controller stopped); returns their ids.
    fn interrupt_gamedays(&self, now_ms: i64) -> StoreResult<Vec<String>>;
}

fn record_json(g: &GameDayRecord) -> StoreResult<String> {
    serde_json::to_string(g).map_err(|e| StoreError::Backend(format!("encoding game day {}: {e}", g.id)))
}

/// A row (`state`, `started_ms`, `finished_ms`, `record`) as a record; the columns win over the JSON.
fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, Option<i64>, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn decode(
    (state, started_ms, finished_ms, record): (String, i64, Option<i64>, String),
) -> StoreResult<GameDayRecord> {
    let mut g: GameDayRecord = serde_json::from_str(&record)
        .map_err(|e| StoreError::Backend(format!("decoding a game day record: {e}")))?;
    g.state = state;
    g.started_ms = started_ms;
    g.finished_ms = finished_ms;
    Ok(g)
}

impl GameDayStore for SqliteStore {
    fn insert_gameday(&self, g: &GameDayRecord) -> StoreResult<()> {
        let record = record_json(g)?;
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO gamedays (id, title, state, started_ms, finished_ms, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![g.id, g.title, g.state, g.started_ms, g.finished_ms, record],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                Err(StoreError::Conflict(format!("game day {} exists already", g.id)))
            }
            Err(e) => Err(failed(format_args!("inserting game day {}", g.id), e)),
        }
    }

    fn update_gameday(&self, g: &GameDayRecord) -> StoreResult<()> {
        let record = record_json(g)?;
        let conn = self.conn();
        let changed = conn
            .execute(
                "UPDATE gamedays SET title = ?2, state = ?3, started_ms = ?4, finished_ms = ?5, record = ?6
                 WHERE id = ?1",
                params![g.id, g.title, g.state, g.started_ms, g.finished_ms, record],
            )
            .map_err(|e| failed(format_args!("updating game day {}", g.id), e))?;
        if changed == 0 {
            return Err(StoreError::NotFound { what: "game day", id: g.id.clone() });
        }
        Ok(())
    }

    fn gameday(&self, id: &str) -> StoreResult<Option<GameDayRecord>> {
        let doing = format!("reading game day {id}");
        let conn = self.conn();
        let row = conn
            .prepare_cached("SELECT state, started_ms, finished_ms, record FROM gamedays WHERE id = ?1")
            .and_then(|mut stmt| stmt.query_row([id], from_row).optional())
            .map_err(|e| failed(&doing, e))?;
        let Some(row) = row else { return Ok(None) };
        let mut g = decode(row)?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, author, text FROM gameday_notes WHERE gameday_id = ?1 ORDER BY at_ms, seq",
            )
            .map_err(|e| failed(&doing, e))?;
        let notes = stmt
            .query_map([id], |row| {
                Ok(NoteRecord { at_ms: row.get(0)?, author: row.get(1)?, text: row.get(2)? })
            })
            .map_err(|e| failed(&doing, e))?;
        g.notes = notes.collect::<Result<Vec<_>, _>>().map_err(|e| failed(&doing, e))?;
        Ok(Some(g))
    }

    fn gamedays(&self, limit: usize) -> StoreResult<Vec<GameDayRecord>> {
        let doing = "listing game days";
        let conn = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn
            .prepare_cached(
                "SELECT state, started_ms, finished_ms, record FROM gamedays ORDER BY seq DESC LIMIT ?1",
            )
            .map_err(|e| failed(doing, e))?;
        let rows = stmt.query_map([limit], from_row).map_err(|e| failed(doing, e))?;
        let rows = rows.collect::<Result<Vec<_>, _>>().map_err(|e| failed(doing, e))?;
        rows.into_iter().map(decode).collect()
    }

    fn append_gameday_note(&self, gameday_id: &str, note: &NoteRecord) -> StoreResult<()> {
        let doing = format!("adding a note to game day {gameday_id}");
        let conn = self.conn();
        let known: Option<i64> = conn
            .query_row("SELECT seq FROM gamedays WHERE id = ?1", [gameday_id], |row| row.get(0))
            .optional()
            .map_err(|e| failed(&doing, e))?;
        if known.is_none() {
            return Err(StoreError::NotFound { what: "game day", id: gameday_id.to_string() });
        }
        conn.execute(
            "INSERT INTO gameday_notes (gameday_id, at_ms, author, text) VALUES (?1, ?2, ?3, ?4)",
            params![gameday_id, note.at_ms, note.author, note.text],
        )
        .map_err(|e| failed(&doing, e))?;
        Ok(())
    }

    fn interrupt_gamedays(&self, now_ms: i64) -> StoreResult<Vec<String>> {
        let doing = "interrupting unfinished game days";
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT id FROM gamedays WHERE state = ?1").map_err(|e| failed(doing, e))?;
        let ids = stmt
            .query_map([RUNNING], |row| row.get::<_, String>(0))
            .map_err(|e| failed(doing, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(doing, e))?;
        conn.execute(
            "UPDATE gamedays SET state = ?1, finished_ms = ?2 WHERE state = ?3",
            params![INTERRUPTED, now_ms, RUNNING],
        )
        .map_err(|e| failed(doing, e))?;
        if !ids.is_empty() {
            tracing::warn!(gamedays = ?ids, "interrupted game days that their controller left running");
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::Store;

    fn record(id: &str) -> GameDayRecord {
        let plan = crate::gameday::plan::parse(
            "plan.yaml",
            "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios:\n  - { name: a, experiment: a.yaml }\n",
        )
        .unwrap();
        GameDayRecord {
            id: id.into(),
            title: "t".into(),
            state: RUNNING.into(),
            started_ms: 1_000,
            finished_ms: None,
            actor: "me".into(),
            reason: None,
            plan_file: "plan.yaml".into(),
            plan,
            scenarios: vec![ScenarioRecord {
                name: "a".into(),
                state: "pending".into(),
                ..Default::default()
            }],
            log: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn game_days_round_trip_notes_append_only_and_running_ones_are_interrupted() {
        let store = SqliteStore::in_memory().unwrap();
        let mut g = record("g-1");
        store.insert_gameday(&g).unwrap();
        assert!(matches!(store.insert_gameday(&g), Err(StoreError::Conflict(_))));
        store
            .append_gameday_note(
                "g-1",
                &NoteRecord { at_ms: 2_000, author: "b".into(), text: "second".into() },
            )
            .unwrap();
        store
            .append_gameday_note(
                "g-1",
                &NoteRecord { at_ms: 1_500, author: "a".into(), text: "first".into() },
            )
            .unwrap();
        assert!(matches!(
            store.append_gameday_note("g-2", &NoteRecord { at_ms: 1, author: "a".into(), text: "x".into() }),
            Err(StoreError::NotFound { .. })
        ));
        g.scenarios[0].state = "passed".into();
        store.update_gameday(&g).unwrap();
        let read = store.gameday("g-1").unwrap().unwrap();
        assert_eq!(read.scenarios[0].state, "passed");
        let texts: Vec<&str> = read.notes.iter().map(|n| n.text.as_str()).collect();
        assert_eq!(texts, ["first", "second"], "notes in time order");
        let conn = store.conn();
        assert!(conn.execute("UPDATE gameday_notes SET text = 'changed'", []).is_err());
        assert!(conn.execute("DELETE FROM gameday_notes", []).is_err());
        drop(conn);
        assert_eq!(store.interrupt_gamedays(9_000).unwrap(), ["g-1"]);
        let read = store.gameday("g-1").unwrap().unwrap();
        assert_eq!((read.state.as_str(), read.finished_ms), (INTERRUPTED, Some(9_000)));
        assert_eq!(store.gamedays(10).unwrap().len(), 1);
        let _: &dyn Store = &store;
    }
}
