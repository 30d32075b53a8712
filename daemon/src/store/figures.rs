//! What the figures and the deadline supervision read: incident steps and alert times.
//!
//! Two tables kept beside the blobs, written by the writer in the same transaction as the
//! incident or alert they come from, so they never disagree with it:
//! - `incident_steps`: one row per lifecycle step (the incident blob's `steps`, keyed by
//!   `(incident_id, idx)`, inserted once);
//! - `alert_times`: per alert, when it opened, was first acknowledged and was resolved;
//! - `event_quarters`: how many readings, camera events and reports came in per quarter
//!   hour (the wall's events per hour), added to by each batch's transaction.
//!
//! The schema is additive (`CREATE ... IF NOT EXISTS`): an older data folder opens, and
//! its alerts are filled into `alert_times` from their blobs on first open.

use gridsight_proto::{millis_from_ts, v1 as pb};
use prost::Message;
use rusqlite::{params, params_from_iter, types::Value, Connection};

use super::StoreError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS incident_steps (
    incident_id TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    grid_id     TEXT NOT NULL,
    from_status INTEGER NOT NULL,
    to_status   INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    department  TEXT NOT NULL,
    deadline_ms INTEGER,
    PRIMARY KEY (incident_id, idx)
);
CREATE INDEX IF NOT EXISTS incident_steps_to ON incident_steps(to_status, at_ms);
CREATE INDEX IF NOT EXISTS incidents_reported ON incidents(reported_ms);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents(status);
CREATE TABLE IF NOT EXISTS alert_times (
    alert_id        TEXT PRIMARY KEY,
    grid_id         TEXT NOT NULL,
    opened_ms       INTEGER NOT NULL,
    acknowledged_ms INTEGER,
    resolved_ms     INTEGER
);
CREATE INDEX IF NOT EXISTS alert_times_opened ON alert_times(opened_ms);
CREATE INDEX IF NOT EXISTS alert_times_resolved ON alert_times(resolved_ms);
CREATE TABLE IF NOT EXISTS event_quarters (
    quarter_ms INTEGER NOT NULL,
    source     TEXT NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (quarter_ms, source)
) WITHOUT ROWID;
"#;

/// A quarter of an hour in ms: every time zone's offset is a whole number of them, so local
/// hours are sums of whole quarters.
pub const QUARTER_MS: i64 = 15 * 60_000;

/// Events that came in, by source (`sensor` readings, `camera` events, `incident` reports)
/// and quarter hour: what one committed batch adds to `event_quarters`.
#[derive(Debug, Default)]
pub(super) struct EventCounts(Vec<(i64, &'static str, i64)>);

impl EventCounts {
    /// Counts `r` if it is an event that came in (a reading, a camera event, a new report).
    pub(super) fn add(&mut self, r: &super::Record) {
        use super::Record;
        let (at, source) = match r {
            Record::SensorEvent { event, .. } => (event.receive_ms, "sensor"),
            Record::CameraEvent(e) => (e.time.as_ref().map_or(0, millis_from_ts), "camera"),
            Record::Incident(i) if i.version == 1 => {
                (i.reported_at.as_ref().map_or(0, millis_from_ts), "incident")
            }
            _ => return,
        };
        let quarter = at - at.rem_euclid(QUARTER_MS);
        // A batch spans a moment: a handful of (quarter, source) pairs at most.
        match self
            .0
            .iter_mut()
            .find(|(q, s, _)| *q == quarter && *s == source)
        {
            Some((_, _, n)) => *n += 1,
            None => self.0.push((quarter, source, 1)),
        }
    }

    /// Adds the counts to the table, in the batch's transaction.
    pub(super) fn write(&self, tx: &Connection) -> Result<(), StoreError> {
        let mut st = tx.prepare_cached(
            "INSERT INTO event_quarters (quarter_ms, source, count) VALUES (?1, ?2, ?3)
             ON CONFLICT(quarter_ms, source) DO UPDATE SET count = count + excluded.count",
        )?;
        for (quarter, source, n) in &self.0 {
            st.execute(params![quarter, source, n])?;
        }
        Ok(())
    }
}

/// The counts of `event_quarters` in `[from, to)`: `(quarter_ms, source, count)`.
pub fn event_quarters(
    conn: &Connection,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, String, i64)>, StoreError> {
    rows(
        conn,
        "SELECT quarter_ms, source, count FROM event_quarters
         WHERE quarter_ms >= ?1 AND quarter_ms < ?2 ORDER BY quarter_ms",
        vec![Value::from(from), Value::from(to)],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// Creates the tables if missing and fills `alert_times` for alerts stored before it.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    let tx = conn.unchecked_transaction()?;
    let missing: Vec<(String, Vec<u8>)> = rows(
        &tx,
        "SELECT id, blob FROM alerts WHERE id NOT IN (SELECT alert_id FROM alert_times)",
        Vec::new(),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (id, blob) in &missing {
        let alert = pb::Alert::decode(&blob[..]).map_err(|source| StoreError::Corrupt {
            what: id.clone(),
            source,
        })?;
        write_alert_times(&tx, &alert)?;
    }
    tx.commit()?;
    if !missing.is_empty() {
        tracing::info!(
            alerts = missing.len(),
            "alert times filled in from stored alerts"
        );
    }
    Ok(())
}

/// Inserts the steps of `inc` not yet stored (inside the writer's transaction).
pub(super) fn write_steps(tx: &Connection, inc: &pb::Incident) -> Result<(), StoreError> {
    let mut ins = tx.prepare_cached(
        "INSERT OR IGNORE INTO incident_steps
           (incident_id, idx, grid_id, from_status, to_status, at_ms, actor, department, deadline_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (idx, s) in inc.steps.iter().enumerate() {
        ins.execute(params![
            inc.id,
            idx as i64,
            inc.grid_id,
            s.from,
            s.to,
            s.at.as_ref().map(millis_from_ts).unwrap_or(0),
            s.actor,
            s.department,
            s.deadline.as_ref().map(millis_from_ts),
        ])?;
    }
    Ok(())
}

/// Records when `alert` opened, was acknowledged and resolved (the first time each).
pub(super) fn write_alert_times(tx: &Connection, alert: &pb::Alert) -> Result<(), StoreError> {
    let resolved = (alert.status == pb::AlertStatus::Resolved as i32)
        .then(|| alert.updated_at.as_ref().map(millis_from_ts))
        .flatten();
    tx.prepare_cached(
        "INSERT INTO alert_times (alert_id, grid_id, opened_ms, acknowledged_ms, resolved_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(alert_id) DO UPDATE SET
           acknowledged_ms = COALESCE(alert_times.acknowledged_ms, excluded.acknowledged_ms),
           resolved_ms = COALESCE(alert_times.resolved_ms, excluded.resolved_ms)",
    )?
    .execute(params![
        alert.id,
        alert.grid_id,
        alert.first_seen.as_ref().map(millis_from_ts).unwrap_or(0),
        alert.acknowledged_at.as_ref().map(millis_from_ts),
        resolved,
    ])?;
    Ok(())
}

/// Ids of incidents DISPATCHED or IN_PROGRESS, past their deadline at `now_ms` and not
/// yet marked overdue.
pub fn due_incidents(conn: &Connection, now_ms: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT id, blob FROM incidents WHERE status IN (?1, ?2)")?;
    let rows = stmt.query_map(
        params![
            pb::IncidentStatus::Dispatched as i32,
            pb::IncidentStatus::InProgress as i32
        ],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
    )?;
    let mut due = Vec::new();
    for row in rows {
        let (id, blob) = row?;
        let inc = pb::Incident::decode(&blob[..]).map_err(|source| StoreError::Corrupt {
            what: id.clone(),
            source,
        })?;
        if !inc.overdue
            && inc
                .deadline
                .as_ref()
                .is_some_and(|d| millis_from_ts(d) < now_ms)
        {
            due.push(id);
        }
    }
    Ok(due)
}

/// An incident reported in the period asked for, with when it first reached each stage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportRow {
    /// Its grid.
    pub grid_id: String,
    /// Who reported it.
    pub reporter_id: String,
    /// When (ms since the Unix epoch).
    pub reported_ms: i64,
    /// Its status now (wire value).
    pub status: i32,
    /// First step to ACCEPTED, DISPATCHED and RESOLVED, if any.
    pub accepted_ms: Option<i64>,
    /// See `accepted_ms`.
    pub dispatched_ms: Option<i64>,
    /// See `accepted_ms`.
    pub resolved_ms: Option<i64>,
}

/// An alert that opened or was resolved in the period asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertRow {
    /// Its grid.
    pub grid_id: String,
    /// When it opened, was first acknowledged and resolved (ms since the Unix epoch).
    pub opened_ms: i64,
    /// See `opened_ms`.
    pub acknowledged_ms: Option<i64>,
    /// See `opened_ms`.
    pub resolved_ms: Option<i64>,
}

/// One step of an incident that may have been dispatched and unfinished in the period.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepRow {
    /// The incident.
    pub incident_id: String,
    /// Its grid.
    pub grid_id: String,
    /// The status stepped to (wire value).
    pub to: i32,
    /// When.
    pub at_ms: i64,
    /// For DISPATCHED: the deadline given.
    pub deadline_ms: Option<i64>,
}

/// Runs `sql` with `args` and maps every row.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    args: Vec<Value>,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params_from_iter(args), map)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn grid_filter(grids: &Option<Vec<String>>, column: &str, args: &mut Vec<Value>) -> String {
    match grids {
        None => String::new(),
        Some(g) => {
            args.extend(g.iter().map(|id| Value::Text(id.clone())));
            format!("AND {column} IN ({})", vec!["?"; g.len()].join(","))
        }
    }
}

/// Incidents in `grids` (`None` = all) reported in `[from_ms, to_ms)`.
pub fn reports(
    conn: &Connection,
    grids: &Option<Vec<String>>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<ReportRow>, StoreError> {
    let mut args = vec![Value::Integer(from_ms), Value::Integer(to_ms)];
    let filter = grid_filter(grids, "i.grid_id", &mut args);
    let first = |to: pb::IncidentStatus| {
        format!(
            "(SELECT MIN(at_ms) FROM incident_steps s WHERE s.incident_id = i.id AND s.to_status = {})",
            to as i32
        )
    };
    let sql = format!(
        "SELECT i.grid_id, i.reporter_id, i.reported_ms, i.status, {}, {}, {}
         FROM incidents i WHERE i.reported_ms >= ?1 AND i.reported_ms < ?2 {filter}",
        first(pb::IncidentStatus::Accepted),
        first(pb::IncidentStatus::Dispatched),
        first(pb::IncidentStatus::Resolved),
    );
    rows(conn, &sql, args, |r| {
        Ok(ReportRow {
            grid_id: r.get(0)?,
            reporter_id: r.get(1)?,
            reported_ms: r.get(2)?,
            status: r.get(3)?,
            accepted_ms: r.get(4)?,
            dispatched_ms: r.get(5)?,
            resolved_ms: r.get(6)?,
        })
    })
}

/// Alerts in `grids` (`None` = all) opened or resolved in `[from_ms, to_ms)`.
pub fn alerts(
    conn: &Connection,
    grids: &Option<Vec<String>>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<AlertRow>, StoreError> {
    let mut args = vec![Value::Integer(from_ms), Value::Integer(to_ms)];
    let filter = grid_filter(grids, "grid_id", &mut args);
    let sql = format!(
        "SELECT grid_id, opened_ms, acknowledged_ms, resolved_ms FROM alert_times
         WHERE ((opened_ms >= ?1 AND opened_ms < ?2) OR (resolved_ms >= ?1 AND resolved_ms < ?2)) {filter}"
    );
    rows(conn, &sql, args, |r| {
        Ok(AlertRow {
            grid_id: r.get(0)?,
            opened_ms: r.get(1)?,
            acknowledged_ms: r.get(2)?,
            resolved_ms: r.get(3)?,
        })
    })
}

/// Every step of the incidents in `grids` (`None` = all) dispatched before `to_ms` and not
/// finished (closed, cancelled...) before `from_ms`, by incident, oldest step first.
pub fn supervised_steps(
    conn: &Connection,
    grids: &Option<Vec<String>>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<StepRow>, StoreError> {
    use pb::IncidentStatus as S;
    let mut args = vec![
        Value::Integer(S::Dispatched as i64),
        Value::Integer(to_ms),
        Value::Integer(from_ms),
    ];
    let filter = grid_filter(grids, "grid_id", &mut args);
    // The grid filter's anonymous `?`s come after `?3` in the text, so they number from 4.
    let finals = [S::Closed, S::Cancelled, S::Unfounded, S::Duplicate]
        .map(|s| (s as i32).to_string())
        .join(",");
    let sql = format!(
        "SELECT incident_id, grid_id, to_status, at_ms, deadline_ms FROM incident_steps
         WHERE incident_id NOT IN (
             SELECT incident_id FROM incident_steps WHERE to_status IN ({finals}) AND at_ms < ?3)
           AND incident_id IN (
             SELECT incident_id FROM incident_steps WHERE to_status = ?1 AND at_ms < ?2 {filter})
         ORDER BY incident_id, idx"
    );
    rows(conn, &sql, args, |r| {
        Ok(StepRow {
            incident_id: r.get(0)?,
            grid_id: r.get(1)?,
            to: r.get(2)?,
            at_ms: r.get(3)?,
            deadline_ms: r.get(4)?,
        })
    })
}

#[cfg(test)]
#[path = "figures_tests.rs"]
mod tests;
