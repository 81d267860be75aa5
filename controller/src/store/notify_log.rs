//! The notification delivery log (issue 16): every notification per channel (a delivery) and every attempt
//! to deliver it, for `chaos notify log`. Schema version 5 ([`MIGRATION`]). Payloads are kept as sent, with
//! secrets (a PagerDuty routing key) replaced by the caller.

use rusqlite::params;

use super::{SqliteStore, StoreError, StoreResult};

/// Version 5: notification deliveries, one row per notification and channel (its state updated as attempts
/// are made), and one row per attempt.
pub(super) const MIGRATION: &str = "
CREATE TABLE notify_deliveries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    notification TEXT NOT NULL,
    channel TEXT NOT NULL,
    channel_kind TEXT NOT NULL,
    event TEXT NOT NULL,
    summary TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    delivered_ms INTEGER,
    payload TEXT NOT NULL
);
CREATE INDEX notify_deliveries_by_channel ON notify_deliveries (channel, seq);
CREATE TABLE notify_attempts (
    seq INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES notify_deliveries (id),
    attempt INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    elapsed_ms INTEGER NOT NULL,
    status INTEGER,
    error TEXT,
    UNIQUE (delivery_id, attempt)
);
";

/// A database error, saying what was being done (as `sqlite.rs` words them; not imported from there, so that
/// this file and `sqlite.rs`, which reads [`MIGRATION`], do not import each other).
fn failed(doing: &str, err: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("{doing}: {err}"))
}

/// How many deliveries the log keeps: older ones (and their attempts) go as new ones are recorded.
pub const KEPT: i64 = 10_000;

/// The most deliveries one listing returns.
pub const MAX_LISTED: usize = 1000;

/// A delivery as first recorded, before any attempt (or dropped, with no attempt at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// Unique: the notification's id and the channel's name.
    pub id: String,
    /// The notification (one event): the same on every channel it went to.
    pub notification: String,
    pub channel: String,
    /// `webhook`, `slack`, `pagerduty`.
    pub channel_kind: String,
    /// `run_failed`, `incident_opened`, ...
    pub event: String,
    pub summary: String,
    pub created_ms: i64,
    /// `pending`, or `dropped` when the channel's queue was full.
    pub state: String,
    pub last_error: Option<String>,
    /// The body as sent, secrets replaced.
    pub payload: String,
}

/// One attempt to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    /// 1, 2, 3, ... per delivery.
    pub attempt: u32,
    pub at_ms: i64,
    pub elapsed_ms: u64,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it did not count as delivered.
    pub error: Option<String>,
}

/// A delivery with its attempts, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub delivery: NewDelivery,
    /// `pending`, `retrying`, `delivered`, `failed` or `dropped`.
    pub state: String,
    pub attempts: Vec<AttemptRecord>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_ms: Option<i64>,
}

/// Which deliveries to list (newest first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// At most this many (capped at [`MAX_LISTED`]; 0 means 100).
    pub limit: usize,
    pub channel: Option<String>,
    pub event: Option<String>,
    pub state: Option<String>,
    pub notification: Option<String>,
}

/// The notification part of the [`super::Store`].
pub trait NotifyStore {
    /// Records a delivery; [`StoreError::Conflict`] when its id is taken.
    fn insert_delivery(&self, d: &NewDelivery) -> StoreResult<()>;

    /// Appends an attempt to delivery `id` and sets its state (`retrying`, `delivered`, `failed`), in one
    /// transaction; [`StoreError::NotFound`] when there is no such delivery.
    fn record_attempt(&self, id: &str, a: &AttemptRecord, state: &str) -> StoreResult<()>;

    /// Deliveries matching `filter`, newest first, each with its attempts in order.
    fn deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<DeliveryRecord>>;
}

impl NotifyStore for SqliteStore {
    fn insert_delivery(&self, d: &NewDelivery) -> StoreResult<()> {
        let doing = "recording a notification delivery";
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO notify_deliveries (id, notification, channel, channel_kind, event, summary, created_ms,
                 state, attempts, last_error, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10)",
            params![
                d.id,
                d.notification,
                d.channel,
                d.channel_kind,
                d.event,
                d.summary,
                d.created_ms,
                d.state,
                d.last_error,
                d.payload
            ],
        );
        match inserted {
            Ok(_) => {
                // Bounded: the oldest beyond KEPT go (attempts first: they reference their delivery).
                let oldest_kept = conn.last_insert_rowid() - KEPT;
                if oldest_kept > 0 {
                    conn.execute(
                        "DELETE FROM notify_attempts WHERE delivery_id IN
                             (SELECT id FROM notify_deliveries WHERE seq <= ?1)",
                        params![oldest_kept],
                    )
                    .map_err(|e| failed(doing, e))?;
                    conn.execute("DELETE FROM notify_deliveries WHERE seq <= ?1", params![oldest_kept])
                        .map_err(|e| failed(doing, e))?;
                }
                Ok(())
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Conflict(format!("notification delivery {:?} exists", d.id)))
            }
            Err(e) => Err(failed(doing, e)),
        }
    }

    fn record_attempt(&self, id: &str, a: &AttemptRecord, state: &str) -> StoreResult<()> {
        let doing = "recording a notification attempt";
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| failed(doing, e))?;
        let delivered_ms =
            (state == "delivered").then_some(a.at_ms + i64::try_from(a.elapsed_ms).unwrap_or(0));
        let updated = tx
            .execute(
                "UPDATE notify_deliveries SET state = ?2, attempts = ?3, last_status = ?4, last_error = ?5,
                     delivered_ms = COALESCE(?6, delivered_ms)
                 WHERE id = ?1",
                params![id, state, a.attempt, a.status, a.error, delivered_ms],
            )
            .map_err(|e| failed(doing, e))?;
        if updated == 0 {
            return Err(StoreError::NotFound { what: "notification delivery", id: id.to_string() });
        }
        tx.execute(
            "INSERT INTO notify_attempts (delivery_id, attempt, at_ms, elapsed_ms, status, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                a.attempt,
                a.at_ms,
                i64::try_from(a.elapsed_ms).unwrap_or(i64::MAX),
                a.status,
                a.error
            ],
        )
        .map_err(|e| failed(doing, e))?;
        tx.commit().map_err(|e| failed(doing, e))
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<DeliveryRecord>> {
        let doing = "listing notification deliveries";
        let limit = match filter.limit {
            0 => 100,
            n => n.min(MAX_LISTED),
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, notification, channel, channel_kind, event, summary, created_ms, state, attempts,
                        last_status, last_error, delivered_ms, payload
                 FROM notify_deliveries
                 WHERE (?1 IS NULL OR channel = ?1) AND (?2 IS NULL OR event = ?2) AND (?3 IS NULL OR state = ?3)
                   AND (?4 IS NULL OR notification = ?4)
                 ORDER BY seq DESC LIMIT ?5",
            )
            .map_err(|e| failed(doing, e))?;
        let rows = stmt
            .query_map(
                params![
                    filter.channel,
                    filter.event,
                    filter.state,
                    filter.notification,
                    i64::try_from(limit).unwrap_or(100)
                ],
                |row| {
                    let delivery = NewDelivery {
                        id: row.get(0)?,
                        notification: row.get(1)?,
                        channel: row.get(2)?,
                        channel_kind: row.get(3)?,
                        event: row.get(4)?,
                        summary: row.get(5)?,
                        created_ms: row.get(6)?,
                        state: row.get(7)?,
                        last_error: row.get(10)?,
                        payload: row.get(12)?,
                    };
                    Ok(DeliveryRecord {
                        state: delivery.state.clone(),
                        attempts: Vec::new(),
                        last_status: row.get(9)?,
                        last_error: delivery.last_error.clone(),
                        delivered_ms: row.get(11)?,
                        delivery,
                    })
                },
            )
            .map_err(|e| failed(doing, e))?;
        let mut out = rows.collect::<Result<Vec<_>, _>>().map_err(|e| failed(doing, e))?;
        let mut attempts = conn
            .prepare_cached(
                "SELECT attempt, at_ms, elapsed_ms, status, error FROM notify_attempts
                 WHERE delivery_id = ?1 ORDER BY attempt",
            )
            .map_err(|e| failed(doing, e))?;
        for record in &mut out {
            let rows = attempts
                .query_map(params![record.delivery.id], |row| {
                    Ok(AttemptRecord {
                        attempt: row.get(0)?,
                        at_ms: row.get(1)?,
                        elapsed_ms: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                        status: row.get(3)?,
                        error: row.get(4)?,
                    })
                })
                .map_err(|e| failed(doing, e))?;
            record.attempts = rows.collect::<Result<Vec<_>, _>>().map_err(|e| failed(doing, e))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rusqlite::OptionalExtension as _;

    use super::*;

    /// Whether delivery `id` exists.
    fn has_delivery(store: &SqliteStore, id: &str) -> bool {
        let conn = store.conn();
        conn.query_row("SELECT 1 FROM notify_deliveries WHERE id = ?1", params![id], |_| Ok(()))
            .optional()
            .ok()
            .flatten()
            .is_some()
    }

    fn delivery(id: &str, channel: &str) -> NewDelivery {
        NewDelivery {
            id: id.into(),
            notification: "n-1".into(),
            channel: channel.into(),
            channel_kind: "webhook".into(),
            event: "run_failed".into(),
            summary: "run r-1 failed".into(),
            created_ms: 1000,
            state: "pending".into(),
            last_error: None,
            payload: "{}".into(),
        }
    }

    #[test]
    fn the_log_keeps_the_newest_deliveries_only() {
        let store = SqliteStore::in_memory().unwrap();
        let ok = AttemptRecord { attempt: 1, at_ms: 1, elapsed_ms: 1, status: Some(200), error: None };
        for n in 0..=KEPT + 1 {
            store.insert_delivery(&delivery(&format!("n-{n}/a"), "a")).unwrap();
            if n < 3 {
                store.record_attempt(&format!("n-{n}/a"), &ok, "delivered").unwrap();
            }
        }
        assert!(!has_delivery(&store, "n-0/a") && !has_delivery(&store, "n-1/a"));
        assert!(has_delivery(&store, "n-2/a") && has_delivery(&store, &format!("n-{}/a", KEPT + 1)));
        let conn = store.conn();
        let attempts: i64 = conn.query_row("SELECT COUNT(*) FROM notify_attempts", [], |r| r.get(0)).unwrap();
        let kept: i64 = conn.query_row("SELECT COUNT(*) FROM notify_deliveries", [], |r| r.get(0)).unwrap();
        assert_eq!((attempts, kept), (1, KEPT));
    }

    #[test]
    fn attempts_update_their_delivery_and_list_in_order() {
        let store = SqliteStore::in_memory().unwrap();
        store.insert_delivery(&delivery("n-1/a", "a")).unwrap();
        store.insert_delivery(&delivery("n-1/b", "b")).unwrap();
        assert!(matches!(store.insert_delivery(&delivery("n-1/a", "a")), Err(StoreError::Conflict(_))));
        let failed_attempt = AttemptRecord {
            attempt: 1,
            at_ms: 1000,
            elapsed_ms: 5,
            status: Some(500),
            error: Some("HTTP 500".into()),
        };
        store.record_attempt("n-1/a", &failed_attempt, "retrying").unwrap();
        let ok = AttemptRecord { attempt: 2, at_ms: 2000, elapsed_ms: 7, status: Some(200), error: None };
        store.record_attempt("n-1/a", &ok, "delivered").unwrap();
        assert!(matches!(store.record_attempt("nope", &ok, "delivered"), Err(StoreError::NotFound { .. })));
        assert!(has_delivery(&store, "n-1/b"));

        let all = store.deliveries(&DeliveryFilter::default()).unwrap();
        assert_eq!(all.iter().map(|d| d.delivery.id.as_str()).collect::<Vec<_>>(), ["n-1/b", "n-1/a"]);
        let a = &all[1];
        assert_eq!(
            (a.state.as_str(), a.delivered_ms, a.last_status, a.last_error.as_deref()),
            ("delivered", Some(2007), Some(200), None)
        );
        assert_eq!(a.attempts, vec![failed_attempt, ok]);
        let only_a = DeliveryFilter { channel: Some("a".into()), ..DeliveryFilter::default() };
        assert_eq!(store.deliveries(&only_a).unwrap().len(), 1);
        let pending = DeliveryFilter { state: Some("pending".into()), ..DeliveryFilter::default() };
        assert_eq!(store.deliveries(&pending).unwrap()[0].delivery.channel, "b");
    }
}
