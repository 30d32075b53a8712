//! Reading the journal back: the events of the last few minutes, for rebuilding the rule
//! windows after a restart (see `correlate::start`).
//!
//! Sensor events have no time index (an index would cost every insert); their ids are
//! allocated in receive order, so the first id at or after a time is found by a binary
//! search on the rowid. Camera events have a time index; incidents are few.

use gridsight_proto::v1 as pb;
use rusqlite::{params, Connection, OptionalExtension};

use super::{read::decode, StoreError};
use crate::domain::{SensorEvent, SensorState};

/// One journaled event (read once at start-up and replayed: kept unboxed).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Journaled {
    /// A sensor reading with its id.
    Sensor(u64, SensorEvent),
    /// A camera event, received at the time given.
    Camera(pb::CameraEvent, i64),
    /// An incident as reported, at its report time.
    Incident(pb::Incident, i64),
}

impl Journaled {
    /// When the daemon received it (ms).
    pub fn at(&self) -> i64 {
        match self {
            Journaled::Sensor(_, e) => e.receive_ms,
            Journaled::Camera(_, at) | Journaled::Incident(_, at) => *at,
        }
    }
}

/// Most events read back (a flood in the window is replayed in part, newest last).
pub const MAX_REPLAY: usize = 2_000_000;

/// Every event received at or after `since_ms`, oldest first.
pub fn since(conn: &Connection, since_ms: i64) -> Result<Vec<Journaled>, StoreError> {
    let mut out = Vec::new();
    let first = first_sensor_id_at(conn, since_ms)?;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, sensor_id, kind, grid_id, state, reading, device_ms, receive_ms
             FROM sensor_events WHERE id >= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![first, MAX_REPLAY as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<f64>>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })?;
        for row in rows {
            let (id, sensor_id, kind, grid_id, state, reading, device_ms, receive_ms) = row?;
            let Some(state) = SensorState::parse(&state) else {
                continue;
            };
            if receive_ms < since_ms {
                continue;
            }
            out.push(Journaled::Sensor(
                id as u64,
                SensorEvent {
                    sensor_id,
                    kind,
                    grid_id,
                    state,
                    reading,
                    device_ms,
                    receive_ms,
                    // Not journaled: rules fall back to the sensor's grid centre.
                    location: None,
                },
            ));
        }
    }
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, at_ms, blob FROM camera_events WHERE at_ms >= ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([since_ms], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        for row in rows {
            let (id, at, blob) = row?;
            out.push(Journaled::Camera(
                decode(&format!("camera event {id}"), &blob)?,
                at,
            ));
        }
    }
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, reported_ms, blob FROM incidents WHERE reported_ms >= ?1",
        )?;
        let rows = stmt.query_map([since_ms], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        for row in rows {
            let (id, at, blob) = row?;
            out.push(Journaled::Incident(decode(&id, &blob)?, at));
        }
    }
    out.sort_by_key(Journaled::at);
    Ok(out)
}

/// The smallest sensor event id whose receive time is at or after `t` (ids grow with
/// receive time); past the end when there is none.
fn first_sensor_id_at(conn: &Connection, t: i64) -> Result<i64, StoreError> {
    let bounds: (Option<i64>, Option<i64>) =
        conn.query_row("SELECT MIN(id), MAX(id) FROM sensor_events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (Some(mut lo), Some(hi)) = bounds else {
        return Ok(0);
    };
    let mut hi = hi + 1;
    let mut stmt = conn.prepare_cached(
        "SELECT receive_ms FROM sensor_events WHERE id >= ?1 ORDER BY id LIMIT 1",
    )?;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at: Option<i64> = stmt.query_row([mid], |r| r.get(0)).optional()?;
        match at {
            Some(at) if at < t => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Rule alerts resolved after `since_ms` (by last activity): (dedup key, resolve time).
/// Replay skips the events each had already consumed.
pub fn closed_rule_alerts(
    conn: &Connection,
    since_ms: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, blob FROM alerts WHERE status = ?1 AND last_ms >= ?2 AND dedup_key LIKE 'rule/%'",
    )?;
    let rows = stmt.query_map(params![pb::AlertStatus::Resolved as i32, since_ms], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, blob) = row?;
        let a: pb::Alert = decode(&id, &blob)?;
        let at = a
            .updated_at
            .as_ref()
            .map(gridsight_proto::millis_from_ts)
            .unwrap_or(since_ms);
        out.push((a.dedup_key, at));
    }
    Ok(out)
}
