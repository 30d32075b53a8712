//! Read queries: alerts, incidents, the change log, silences, dead letters, counts.
//!
//! Each function takes a read-only connection (see [`super::Store::read`]). Paging uses
//! the table's rowid, newest first; the page token is that rowid as text.

use gridsight_proto::v1 as pb;
use prost::Message;
use rusqlite::{params, params_from_iter, types::Value, Connection, OptionalExtension};
use serde::Serialize;

use super::StoreError;

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Grid ids (already expanded to descendants); `None` = all.
    pub grids: Option<Vec<String>>,
    /// Least severity (wire value); 0 = all.
    pub min_severity: i32,
    /// Status (wire value); 0 = all.
    pub status: i32,
}

/// Which incidents to list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Grid ids (already expanded to descendants); `None` = all.
    pub grids: Option<Vec<String>>,
    /// Category (wire value); 0 = all.
    pub category: i32,
    /// Reporter; empty = all.
    pub reporter_id: String,
}

/// A page request: at most `size` rows with rowid below `before` (0 = from the newest).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Rows wanted.
    pub size: u32,
    /// Exclusive upper rowid bound; 0 = none.
    pub before: i64,
}

/// A kept malformed message.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Row id.
    pub id: i64,
    /// When it arrived (ms since the Unix epoch).
    pub at_ms: i64,
    /// MQTT topic.
    pub topic: String,
    /// Reason label.
    pub reason: String,
    /// The error, naming the field.
    pub error: String,
    /// The payload, lossily as text.
    pub payload: String,
}

pub(crate) fn decode<M: Message + Default>(what: &str, blob: &[u8]) -> Result<M, StoreError> {
    M::decode(blob).map_err(|source| StoreError::Corrupt {
        what: what.to_string(),
        source,
    })
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    }
}

fn grid_cond(grids: &Option<Vec<String>>, conds: &mut Vec<String>, args: &mut Vec<Value>) {
    if let Some(grids) = grids {
        let marks = vec!["?"; grids.len()].join(",");
        conds.push(format!("grid_id IN ({marks})"));
        args.extend(grids.iter().map(|g| Value::Text(g.clone())));
    }
}

/// One alert by id.
pub fn get_alert(conn: &Connection, id: &str) -> Result<Option<pb::Alert>, StoreError> {
    let blob: Option<Vec<u8>> = conn
        .query_row("SELECT blob FROM alerts WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    blob.map(|b| decode(id, &b)).transpose()
}

/// A page of alerts, newest first, and the token of the next page (empty at the end).
pub fn list_alerts(
    conn: &Connection,
    f: &AlertFilter,
    page: Page,
) -> Result<(Vec<pb::Alert>, String), StoreError> {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    grid_cond(&f.grids, &mut conds, &mut args);
    if f.min_severity > 0 {
        conds.push("severity >= ?".into());
        args.push(Value::Integer(f.min_severity.into()));
    }
    if f.status > 0 {
        conds.push("status = ?".into());
        args.push(Value::Integer(f.status.into()));
    }
    if page.before > 0 {
        conds.push("rowid < ?".into());
        args.push(Value::Integer(page.before));
    }
    let sql = format!(
        "SELECT rowid, id, blob FROM alerts {} ORDER BY rowid DESC LIMIT {}",
        where_clause(&conds),
        page.size
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    let mut last = 0;
    for row in rows {
        let (rowid, id, blob) = row?;
        last = rowid;
        out.push(decode(&id, &blob)?);
    }
    let next = if out.len() as u32 == page.size {
        last.to_string()
    } else {
        String::new()
    };
    Ok((out, next))
}

/// Every alert not resolved, and the newest seq, read in one transaction so that the two
/// agree: every change up to that seq is reflected in the alerts returned.
pub fn open_alerts(conn: &Connection) -> Result<(Vec<pb::Alert>, u64), StoreError> {
    let tx = conn.unchecked_transaction()?;
    // Every change also rewrites its alert's row with its seq, so the alerts table knows the
    // newest seq even when retention emptied the change log.
    let last: Option<i64> = tx.query_row(
        "SELECT MAX(s) FROM (SELECT MAX(seq) AS s FROM alert_changes UNION ALL SELECT MAX(seq) FROM alerts)",
        [],
        |r| r.get(0),
    )?;
    let mut out = Vec::new();
    {
        let mut stmt =
            tx.prepare_cached("SELECT id, blob FROM alerts WHERE status IN (?1, ?2) ORDER BY seq")?;
        let rows = stmt.query_map(
            params![
                pb::AlertStatus::Open as i32,
                pb::AlertStatus::Acknowledged as i32
            ],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )?;
        for row in rows {
            let (id, blob) = row?;
            out.push(decode(&id, &blob)?);
        }
    }
    tx.commit()?;
    Ok((out, last.unwrap_or(0).max(0) as u64))
}

/// Up to `limit` changes with seq greater than `after`, in seq order.
pub fn changes_after(
    conn: &Connection,
    after: u64,
    limit: u32,
) -> Result<Vec<pb::AlertChange>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, blob FROM alert_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after as i64, limit], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, blob) = row?;
        out.push(decode(&format!("alert change {seq}"), &blob)?);
    }
    Ok(out)
}

/// Most silences an API lists at once (newest first).
pub const SILENCES_LIMIT: u32 = 1000;

/// Silences, newest first (at most `limit`): those that have not ended at `now_ms` (in
/// force or scheduled), or every one when `include_ended`.
pub fn silences(
    conn: &Connection,
    include_ended: bool,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<pb::Silence>, StoreError> {
    let from = if include_ended { i64::MIN } else { now_ms + 1 };
    let mut stmt = conn.prepare_cached(
        "SELECT id, blob FROM silences WHERE end_ms >= ?1 ORDER BY rowid DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![from, limit], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, blob) = row?;
        out.push(decode(&id, &blob)?);
    }
    Ok(out)
}

/// One silence by id.
pub fn get_silence(conn: &Connection, id: &str) -> Result<Option<pb::Silence>, StoreError> {
    let blob: Option<Vec<u8>> = conn
        .query_row("SELECT blob FROM silences WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    blob.map(|b| decode(id, &b)).transpose()
}

/// One incident by id.
pub fn get_incident(conn: &Connection, id: &str) -> Result<Option<pb::Incident>, StoreError> {
    let blob: Option<Vec<u8>> = conn
        .query_row("SELECT blob FROM incidents WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    blob.map(|b| decode(id, &b)).transpose()
}

/// The incident reported with this idempotency key, if any.
pub fn incident_by_key(conn: &Connection, key: &str) -> Result<Option<pb::Incident>, StoreError> {
    let row: Option<(String, Vec<u8>)> = conn
        .query_row(
            "SELECT id, blob FROM incidents WHERE idempotency_key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(id, b)| decode(&id, &b)).transpose()
}

/// A page of incidents, newest first, and the next page's token.
pub fn list_incidents(
    conn: &Connection,
    f: &IncidentFilter,
    page: Page,
) -> Result<(Vec<pb::Incident>, String), StoreError> {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    grid_cond(&f.grids, &mut conds, &mut args);
    if f.category > 0 {
        conds.push("category = ?".into());
        args.push(Value::Integer(f.category.into()));
    }
    if !f.reporter_id.is_empty() {
        conds.push("reporter_id = ?".into());
        args.push(Value::Text(f.reporter_id.clone()));
    }
    if page.before > 0 {
        conds.push("rowid < ?".into());
        args.push(Value::Integer(page.before));
    }
    let sql = format!(
        "SELECT rowid, id, blob FROM incidents {} ORDER BY rowid DESC LIMIT {}",
        where_clause(&conds),
        page.size
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    let mut last = 0;
    for row in rows {
        let (rowid, id, blob) = row?;
        last = rowid;
        out.push(decode(&id, &blob)?);
    }
    let next = if out.len() as u32 == page.size {
        last.to_string()
    } else {
        String::new()
    };
    Ok((out, next))
}

/// The newest dead letters, newest first.
pub fn dead_letters(conn: &Connection, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, topic, reason, error, payload FROM dead_letters ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(DeadLetter {
            id: r.get(0)?,
            at_ms: r.get(1)?,
            topic: r.get(2)?,
            reason: r.get(3)?,
            error: r.get(4)?,
            payload: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(5)?).into_owned(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Number of stored sensor events.
pub fn count_sensor_events(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM sensor_events", [], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// The JPEG stored for `camera` on `alert`, with when its keyframe arrived.
pub fn snapshot(
    conn: &Connection,
    alert: &str,
    camera: &str,
) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT taken_ms, jpeg FROM snapshots WHERE alert_id = ?1 AND camera_id = ?2",
            rusqlite::params![alert, camera],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}
