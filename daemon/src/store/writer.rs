//! The writer thread: group commit, seq assignment, and what happens after a commit.
//!
//! It takes everything queued (up to `max_batch` records) into one transaction. Only once
//! the transaction committed does it acknowledge MQTT packets, answer waiting RPCs and
//! publish alert changes on the bus. A commit that fails (disk full, read-only file) is
//! retried with the same records and seqs, with backoff, so nothing is acknowledged that is
//! not stored and nothing is lost while the disk recovers.
//!
//! A failure that would come again for the same records (a unique constraint, a value too
//! big) is not retried as it is: the batch is written once more with a savepoint per item,
//! the refused items are rolled back alone (their seqs given back, so seqs stay dense) and
//! answered with [`StoreError::Refused`], and the rest commits.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use gridsight_proto::v1 as pb;
use prost::Message;
use rusqlite::{params, CachedStatement, Connection, OptionalExtension};
use tokio::sync::{broadcast, mpsc};

use super::{Done, MqttAck, Record, SeqState, StoreError, WriteItem};
use crate::telemetry::Metrics;

pub(super) struct Writer {
    pub checkpointer: Option<super::checkpoint::Checkpointer>,
    pub conn: Connection,
    pub rx: mpsc::Receiver<WriteItem>,
    pub bus: broadcast::Sender<Arc<pb::AlertChange>>,
    pub seqs: Arc<SeqState>,
    pub metrics: Arc<Metrics>,
    pub mqtt_acks: Option<mpsc::UnboundedSender<Vec<MqttAck>>>,
    pub max_batch: usize,
    pub dead_letter_capacity: u64,
}

pub(super) fn spawn(w: Writer) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || w.run())
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<WriteItem> = Vec::with_capacity(self.max_batch);
        while let Some(item) = self.rx.blocking_recv() {
            let mut records = item.records.len();
            batch.push(item);
            while records < self.max_batch {
                match self.rx.try_recv() {
                    Ok(item) => {
                        records += item.records.len();
                        batch.push(item);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
        }
        if let Some(c) = self.checkpointer.take() {
            c.stop();
        }
        tracing::debug!("store writer drained and stopped");
    }

    /// Commits `batch` (retrying until it succeeds or the daemon stops), then acts on it.
    ///
    /// A failure the database will give again for the same records (a constraint, a value
    /// too big) is not retried as it is: the batch is written again item by item, and only
    /// the items refused are left out, each logged, counted and answered with its error.
    fn commit(&mut self, batch: &mut Vec<WriteItem>) {
        let mut attempt: u32 = 0;
        let mut isolate = false;
        let committed = loop {
            let started = Instant::now();
            match self.try_commit(batch, isolate) {
                Ok(done) => {
                    self.metrics
                        .store_commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    if attempt > 0 {
                        self.metrics.store_failing.set(0);
                        tracing::info!(
                            attempts = attempt + 1,
                            "store commits again; acknowledgements resume"
                        );
                    }
                    break Some(done);
                }
                Err(e) if !isolate && e.is_permanent() => {
                    self.metrics.store_commit_errors.inc();
                    tracing::warn!(error = %e, items = batch.len(), "store refused a record; writing the batch item by item");
                    isolate = true;
                }
                Err(e) => {
                    attempt += 1;
                    self.metrics.store_commit_errors.inc();
                    self.metrics.store_failing.set(1);
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::error!(error = %e, attempt, "store commit failed; acknowledgements stop until it succeeds");
                    }
                    // Once the daemon is stopping (queue closed), give up after a few tries
                    // rather than hold the shutdown forever: nothing was acknowledged.
                    if self.rx.is_closed() && attempt >= 5 {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis((50u64 << attempt.min(6)).min(5_000)));
                }
            }
        };
        let Some((last_seq, refused)) = committed else {
            for item in batch.drain(..) {
                if let Done::Reply(tx) = item.done {
                    let _ = tx.send(Err(StoreError::Closed));
                }
            }
            return;
        };
        self.seqs.last.store(last_seq, Ordering::Release);
        self.metrics.store_commits.inc();
        let mut acks = Vec::new();
        // Refused items, last first, so each can be taken out of the batch by its index.
        for (i, e) in refused.into_iter().rev() {
            let item = batch.remove(i);
            self.metrics.store_rejected.inc();
            tracing::error!(error = %e, records = %describe(&item.records), "store refused a write item for good; it is not stored");
            match item.done {
                Done::Nothing => {}
                // Redelivery would be refused the same way: acknowledge, it is logged above.
                Done::MqttAcks(a) => acks.extend(a),
                Done::Reply(tx) => {
                    let _ = tx.send(Err(StoreError::Refused(e.to_string())));
                }
            }
        }
        let (mut from_mqtt, mut changes, mut opened, mut pictures) = (0u64, 0u64, 0u64, 0u64);
        let now_ms = crate::domain::now_ms();
        for mut item in batch.drain(..) {
            // A reply hands the records back; otherwise the bus may take each alert.
            let reply = matches!(item.done, Done::Reply(_));
            for r in &mut item.records {
                match r {
                    Record::AlertChange(c) => {
                        changes += 1;
                        if c.kind == pb::ChangeKind::Opened as i32 {
                            opened += 1;
                        }
                        if let Some(at) = c.alert.as_ref().and_then(|a| a.updated_at.as_ref()) {
                            let ms = (now_ms - gridsight_proto::millis_from_ts(at)).max(0);
                            self.metrics
                                .alert_latency_seconds
                                .observe(ms as f64 / 1000.0);
                        }
                        // The wire alert `write_record` made: moved to the bus, not copied
                        // (but for a reply, which hands the records back).
                        let alert = if reply {
                            c.alert.clone()
                        } else {
                            c.alert.take()
                        };
                        let wire = pb::AlertChange {
                            seq: c.seq,
                            kind: c.kind,
                            alert: alert.map(Arc::unwrap_or_clone),
                        };
                        // No receivers is fine: nobody is subscribed.
                        let _ = self.bus.send(Arc::new(wire));
                    }
                    Record::SensorEvent { .. } | Record::DeadLetter { .. } => from_mqtt += 1,
                    Record::Snapshot { .. } => pictures += 1,
                    Record::Incident(_) | Record::CameraEvent(_) | Record::Silence(_) => {}
                }
            }
            match item.done {
                Done::Nothing => {}
                Done::MqttAcks(a) => acks.extend(a),
                Done::Reply(tx) => {
                    let _ = tx.send(Ok(item.records));
                }
            }
        }
        if pictures > 0 {
            self.seqs.snapshot_stored.notify_waiters();
        }
        self.metrics.mqtt_stored.inc_by(from_mqtt);
        self.metrics.alert_changes.inc_by(changes);
        self.metrics.alerts_opened.inc_by(opened);
        if !acks.is_empty() {
            if let Some(tx) = &self.mqtt_acks {
                let _ = tx.send(acks);
            }
        }
    }

    /// One transaction over the whole batch; returns the last seq it holds.
    ///
    /// With `isolate`, each item is written under its own savepoint: an item the database
    /// refuses for good ([`StoreError::is_permanent`]) is rolled back alone, its seqs given
    /// back, and listed in the result; the rest commits.
    fn try_commit(
        &mut self,
        batch: &mut [WriteItem],
        isolate: bool,
    ) -> Result<(u64, Vec<(usize, StoreError)>), StoreError> {
        let mut seq = self.seqs.last.load(Ordering::Acquire);
        let mut refused = Vec::new();
        let tx = self.conn.transaction()?;
        {
            let mut st = Statements::prepare(&tx)?;
            let mut dead = 0u64;
            for (i, item) in batch.iter_mut().enumerate() {
                if !isolate {
                    for r in item.records.iter_mut() {
                        st.write(&tx, r, &mut seq, &mut dead)?;
                    }
                    continue;
                }
                tx.execute_batch("SAVEPOINT item")?;
                let (seq_before, dead_before) = (seq, dead);
                let written = item
                    .records
                    .iter_mut()
                    .try_for_each(|r| st.write(&tx, r, &mut seq, &mut dead));
                match written {
                    Ok(()) => tx.execute_batch("RELEASE item")?,
                    Err(e) if e.is_permanent() => {
                        tx.execute_batch("ROLLBACK TO item; RELEASE item")?;
                        (seq, dead) = (seq_before, dead_before);
                        refused.push((i, e));
                    }
                    Err(e) => return Err(e),
                }
            }
            // What came in, counted from the items that are committed.
            let mut counts = super::figures::EventCounts::default();
            for (i, item) in batch.iter().enumerate() {
                if !refused.iter().any(|(r, _)| *r == i) {
                    item.records.iter().for_each(|r| counts.add(r));
                }
            }
            counts.write(&tx)?;
            if dead > 0 {
                // Bounded dead-letter table: keep the newest `dead_letter_capacity`.
                tx.execute(
                    "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?1",
                    params![self.dead_letter_capacity as i64],
                )?;
            }
        }
        tx.commit()?;
        Ok((seq, refused))
    }
}

/// What a write item holds, for a log line: its first records by kind and id.
fn describe(records: &[Record]) -> String {
    let mut out = Vec::new();
    for r in records.iter().take(4) {
        out.push(match r {
            Record::SensorEvent { event, .. } => format!("sensor event of {}", event.sensor_id),
            Record::Incident(i) => format!("incident {} (key `{}`)", i.id, i.idempotency_key),
            Record::AlertChange(c) => format!(
                "alert change of {}",
                c.alert.as_ref().map(|a| a.id.as_str()).unwrap_or("?")
            ),
            Record::Silence(s) => format!("silence {}", s.id),
            Record::CameraEvent(e) => format!("camera event of {}", e.camera_id),
            Record::Snapshot { alert_id, .. } => format!("snapshot for {alert_id}"),
            Record::DeadLetter { topic, .. } => format!("dead letter from {topic}"),
        });
    }
    if records.len() > 4 {
        out.push(format!("and {} more", records.len() - 4));
    }
    out.join(", ")
}

/// The prepared (cached) insert statements of one transaction.
struct Statements<'c> {
    event: CachedStatement<'c>,
    incident: CachedStatement<'c>,
    alert: CachedStatement<'c>,
    change: CachedStatement<'c>,
    dead: CachedStatement<'c>,
    camera: CachedStatement<'c>,
    snapshot: CachedStatement<'c>,
    silence: CachedStatement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(tx: &'c Connection) -> Result<Self, StoreError> {
        Ok(Statements {
            event: tx.prepare_cached(
                "INSERT OR IGNORE INTO sensor_events (id, sensor_id, kind, grid_id, state, reading, device_ms, receive_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            incident: tx.prepare_cached(
                "INSERT INTO incidents (id, idempotency_key, grid_id, category, reporter_id, status, reported_ms, version, blob)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(id) DO UPDATE SET status = excluded.status, version = excluded.version, blob = excluded.blob",
            )?,
            alert: tx.prepare_cached(
                "INSERT INTO alerts (id, grid_id, severity, status, dedup_key, seq, version, first_ms, last_ms, blob)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(id) DO UPDATE SET severity = excluded.severity, status = excluded.status,
                   seq = excluded.seq, version = excluded.version, last_ms = excluded.last_ms, blob = excluded.blob",
            )?,
            change: tx.prepare_cached(
                "INSERT INTO alert_changes (seq, alert_id, kind, at_ms, blob) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
            dead: tx.prepare_cached(
                "INSERT INTO dead_letters (at_ms, topic, reason, error, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
            camera: tx.prepare_cached(
                "INSERT INTO camera_events (camera_id, kind, at_ms, blob) VALUES (?1, ?2, ?3, ?4)",
            )?,
            snapshot: tx.prepare_cached(
                "INSERT OR REPLACE INTO snapshots (alert_id, camera_id, taken_ms, jpeg) VALUES (?1, ?2, ?3, ?4)",
            )?,
            silence: tx.prepare_cached(
                "INSERT INTO silences (id, end_ms, blob) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET end_ms = excluded.end_ms, blob = excluded.blob",
            )?,
        })
    }

    /// Writes one record; an alert change takes the next `seq` (in the alert too).
    fn write(
        &mut self,
        tx: &Connection,
        r: &mut Record,
        seq: &mut u64,
        dead: &mut u64,
    ) -> Result<(), StoreError> {
        match r {
            Record::SensorEvent { id, event: e } => {
                self.event.execute(params![
                    *id as i64,
                    e.sensor_id,
                    e.kind,
                    e.grid_id,
                    e.state.as_str(),
                    e.reading,
                    e.device_ms,
                    e.receive_ms
                ])?;
            }
            Record::Incident(inc) => {
                self.incident.execute(params![
                    inc.id,
                    inc.idempotency_key,
                    inc.grid_id,
                    inc.category,
                    inc.reporter_id,
                    inc.status,
                    inc.reported_at
                        .as_ref()
                        .map(gridsight_proto::millis_from_ts)
                        .unwrap_or(0),
                    inc.version as i64,
                    inc.encode_to_vec()
                ])?;
                super::figures::write_steps(tx, inc)?;
            }
            Record::AlertChange(change) => {
                *seq += 1;
                change.seq = *seq;
                // The one copy of the alert (the engine keeps its own): numbered, written,
                // and put in the record in place of the engine's.
                let wire = change.to_wire(*seq);
                let Some(alert) = wire.alert.as_ref() else {
                    return Ok(());
                };
                let ms = |t: &Option<prost_types::Timestamp>| {
                    t.as_ref().map(gridsight_proto::millis_from_ts).unwrap_or(0)
                };
                self.alert.execute(params![
                    alert.id,
                    alert.grid_id,
                    alert.severity,
                    alert.status,
                    alert.dedup_key,
                    *seq as i64,
                    alert.version as i64,
                    ms(&alert.first_seen),
                    ms(&alert.last_seen),
                    alert.encode_to_vec()
                ])?;
                super::figures::write_alert_times(tx, alert)?;
                let (id, at) = (alert.id.clone(), ms(&alert.updated_at));
                self.change.execute(params![
                    *seq as i64,
                    id,
                    change.kind,
                    at,
                    wire.encode_to_vec()
                ])?;
                change.alert = wire.alert.map(Arc::new);
            }
            Record::CameraEvent(ev) => {
                let at = ev
                    .time
                    .as_ref()
                    .map(gridsight_proto::millis_from_ts)
                    .unwrap_or(0);
                self.camera
                    .execute(params![ev.camera_id, ev.kind, at, ev.encode_to_vec()])?;
            }
            Record::Snapshot {
                alert_id,
                camera_id,
                taken_ms,
                jpeg,
            } => {
                self.snapshot
                    .execute(params![&*alert_id, &*camera_id, *taken_ms, &jpeg[..]])?;
            }
            Record::Silence(s) => {
                self.silence.execute(params![
                    s.id,
                    crate::correlate::silence::end_ms(s),
                    s.encode_to_vec()
                ])?;
            }
            Record::DeadLetter {
                at_ms,
                topic,
                reason,
                error,
                payload,
            } => {
                *dead += 1;
                self.dead
                    .execute(params![*at_ms, &*topic, *reason, &*error, &*payload])?;
            }
        }
        Ok(())
    }
}

/// Deletes what retention no longer keeps. Runs on its own connection, off the writer.
pub(crate) fn prune(
    conn: &Connection,
    now_ms: i64,
    sensor_event_retention_ms: i64,
    alert_change_retention_ms: i64,
    seqs: &SeqState,
) -> Result<(usize, usize), StoreError> {
    // Ids grow with receive time, so the first id still kept bounds what goes; this scans
    // only what is deleted (there is no index on receive_ms to slow the inserts).
    let keep_from: Option<i64> = conn
        .query_row(
            "SELECT id FROM sensor_events WHERE receive_ms >= ?1 ORDER BY id LIMIT 1",
            params![now_ms - sensor_event_retention_ms],
            |r| r.get(0),
        )
        .optional()?;
    let keep_from = match keep_from {
        Some(id) => id,
        None => conn.query_row(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM sensor_events",
            [],
            |r| r.get(0),
        )?,
    };
    let mut events = 0;
    loop {
        // Small transactions, so the writer is never held up for long.
        let n = conn.execute(
            "DELETE FROM sensor_events WHERE id IN (SELECT id FROM sensor_events WHERE id < ?1 LIMIT 5000)",
            params![keep_from],
        )?;
        events += n;
        if n == 0 {
            break;
        }
    }
    // Camera events follow the sensor events' retention (indexed by time, few rows), and
    // so do the counts of what came in.
    events += conn.execute(
        "DELETE FROM camera_events WHERE at_ms < ?1",
        params![now_ms - sensor_event_retention_ms],
    )?;
    conn.execute(
        "DELETE FROM event_quarters WHERE quarter_ms < ?1",
        params![now_ms - sensor_event_retention_ms],
    )?;
    let cutoff = now_ms - alert_change_retention_ms;
    let through: Option<i64> = conn.query_row(
        "SELECT MAX(seq) FROM alert_changes WHERE at_ms < ?1",
        params![cutoff],
        |r| r.get(0),
    )?;
    let mut changes = 0;
    if let Some(through) = through {
        let tx = conn.unchecked_transaction()?;
        changes = tx.execute(
            "DELETE FROM alert_changes WHERE seq <= ?1",
            params![through],
        )?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('pruned_through', ?1)
             ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
            params![through],
        )?;
        tx.commit()?;
        seqs.pruned_through
            .fetch_max(through.max(0) as u64, Ordering::AcqRel);
    }
    Ok((events, changes))
}
