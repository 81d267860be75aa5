//! The notification delivery log (issue 16): every attempt to deliver every notification, for
//! `chaos notify log`. Schema version 5 ([`MIGRATION`]).

use super::SqliteStore;

/// Version 5: notification deliveries, one row per notification and channel, updated as attempts are made.
pub(super) const MIGRATION: &str = "
CREATE TABLE notify_deliveries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    delivered_ms INTEGER,
    payload TEXT NOT NULL
);
";

/// The notification part of the [`super::Store`].
pub trait NotifyStore {}

impl NotifyStore for SqliteStore {}
