//! The game-day records (issue 16): each game day run through the controller, its scenarios' runs and the
//! notes people add while it runs. Schema version 4 ([`MIGRATION`]).

use super::SqliteStore;

/// Version 4: game days and their append-only notes.
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
CREATE TRIGGER gameday_notes_no_update BEFORE UPDATE ON gameday_notes
BEGIN SELECT RAISE(ABORT, 'game-day notes are append-only'); END;
CREATE TRIGGER gameday_notes_no_delete BEFORE DELETE ON gameday_notes
BEGIN SELECT RAISE(ABORT, 'game-day notes are append-only'); END;
";

/// The game-day part of the [`super::Store`].
pub trait GameDayStore {}

impl GameDayStore for SqliteStore {}
