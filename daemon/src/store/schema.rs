//! The database schema and the writer connection's settings.
//!
//! Alerts and incidents are kept as encoded `gridsight.v1` messages (the `blob` columns)
//! beside the columns that queries filter on; the blob is the truth, the columns are
//! indexes of it. `meta` holds `pruned_through` (the highest deleted alert change seq).
//! `silences.end_ms` is when a silence stops muting: its `ends_at`, or `expired_at` when it
//! was expired before that. Tables are only ever added (`CREATE ... IF NOT EXISTS`), so an
//! older database opens as is.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::{Ids, SeqState, StoreError};
use crate::config::Synchronous;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sensor_events (
    id         INTEGER PRIMARY KEY,
    sensor_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    grid_id    TEXT NOT NULL,
    state      TEXT NOT NULL,
    reading    REAL,
    device_ms  INTEGER NOT NULL,
    receive_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    grid_id         TEXT NOT NULL,
    category        INTEGER NOT NULL,
    reporter_id     TEXT NOT NULL,
    status          INTEGER NOT NULL,
    reported_ms     INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    blob            BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_grid ON incidents(grid_id, id);
CREATE TABLE IF NOT EXISTS alerts (
    id        TEXT PRIMARY KEY,
    grid_id   TEXT NOT NULL,
    severity  INTEGER NOT NULL,
    status    INTEGER NOT NULL,
    dedup_key TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    first_ms  INTEGER NOT NULL,
    last_ms   INTEGER NOT NULL,
    blob      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status, id);
CREATE TABLE IF NOT EXISTS alert_changes (
    seq      INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL,
    kind     INTEGER NOT NULL,
    at_ms    INTEGER NOT NULL,
    blob     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_changes_at ON alert_changes(at_ms);
CREATE TABLE IF NOT EXISTS camera_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id TEXT NOT NULL,
    kind      INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL,
    blob      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS camera_events_at ON camera_events(at_ms);
CREATE TABLE IF NOT EXISTS snapshots (
    alert_id  TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    taken_ms  INTEGER NOT NULL,
    jpeg      BLOB NOT NULL,
    PRIMARY KEY (alert_id, camera_id)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id      INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    topic   TEXT NOT NULL,
    reason  TEXT NOT NULL,
    error   TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS silences (
    id     TEXT PRIMARY KEY,
    end_ms INTEGER NOT NULL,
    blob   BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS silences_end ON silences(end_ms);
"#;

/// Opens the writer connection: WAL, the configured `synchronous`, the schema.
pub(super) fn open_writer(path: &Path, sync: Synchronous) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Checkpoints run on their own thread (see `checkpoint`), never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.execute_batch(SCHEMA)?;
    super::figures::migrate(&conn)?;
    Ok(conn)
}

/// Sets the id allocators and seq state from what is already stored.
pub(super) fn load_counters(
    conn: &Connection,
    ids: &Ids,
    seqs: &SeqState,
) -> Result<(), StoreError> {
    use std::sync::atomic::Ordering::Relaxed;
    let max_event: Option<i64> =
        conn.query_row("SELECT MAX(id) FROM sensor_events", [], |r| r.get(0))?;
    ids.event
        .store(max_event.unwrap_or(0).max(0) as u64, Relaxed);
    ids.incident.store(max_suffix(conn, "incidents")?, Relaxed);
    ids.alert.store(max_suffix(conn, "alerts")?, Relaxed);
    ids.silence.store(max_suffix(conn, "silences")?, Relaxed);
    let last: Option<i64> = conn.query_row(
        "SELECT MAX(s) FROM (SELECT MAX(seq) AS s FROM alert_changes UNION ALL SELECT MAX(seq) FROM alerts)",
        [],
        |r| r.get(0),
    )?;
    let pruned: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'pruned_through'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let pruned = pruned.unwrap_or(0).max(0) as u64;
    seqs.last
        .store((last.unwrap_or(0).max(0) as u64).max(pruned), Relaxed);
    seqs.pruned_through.store(pruned, Relaxed);
    Ok(())
}

/// The largest numeric suffix of the `PREFIX-000123` ids in `table`.
fn max_suffix(conn: &Connection, table: &str) -> Result<u64, StoreError> {
    // Ids are fixed-width until a million; the longest, then greatest, is the largest.
    let sql = format!("SELECT id FROM {table} ORDER BY length(id) DESC, id DESC LIMIT 1");
    let id: Option<String> = conn.query_row(&sql, [], |r| r.get(0)).optional()?;
    Ok(id
        .and_then(|id| id.rsplit('-').next().and_then(|n| n.parse().ok()))
        .unwrap_or(0))
}
