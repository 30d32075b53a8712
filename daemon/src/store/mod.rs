//! The durable record: sensor events, incidents, alerts, the alert change log, silences.
//!
//! One SQLite database in WAL mode. All writes go through one writer thread
//! ([`writer`]) that gathers what is queued into one transaction (group commit), assigns
//! each alert change its `seq` inside that transaction, and only after the commit:
//! acknowledges MQTT messages, answers RPCs and publishes the changes on the alert bus, in
//! `seq` order. Reads ([`read`]) use a small pool of read-only connections; [`figures`]
//! keeps the incident steps and alert times the statistics and deadline checks read.
//!
//! Invariants:
//! - nothing is acknowledged or published before the transaction that holds it committed;
//! - `seq` is dense and increasing over committed changes, and the bus carries them in
//!   order; a change is on the bus only once it can be read back from the store;
//! - a failed commit is retried with the same records and the same seqs until it succeeds
//!   or the daemon stops, so a full disk stops acknowledgements instead of losing records;
//! - a failure that would repeat (a constraint, a value too big) is not retried: the batch
//!   is written item by item and only the refused items are left out, each logged, counted
//!   (`store_rejected`) and answered with [`StoreError::Refused`], so one bad record never
//!   stops the writer.

mod checkpoint;
pub mod figures;
pub mod journal;
pub mod read;
mod schema;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use gridsight_proto::v1 as pb;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use read::{AlertFilter, DeadLetter, IncidentFilter, Page};
pub(crate) use writer::prune;

use crate::{
    config::StoreConfig,
    domain::{keys::numbered, SensorEvent},
    telemetry::Metrics,
};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A blob in the database does not decode.
    #[error("corrupt record {what}: {source}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why.
        source: prost::DecodeError,
    },
    /// The writer stopped (the daemon is shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// Creating the data folder failed.
    #[error("data folder {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A blocking read task failed.
    #[error("read task failed: {0}")]
    Join(String),
    /// The database refused a write item for good (a constraint, a value too big); the
    /// rest of its batch was stored.
    #[error("refused by the database: {0}")]
    Refused(String),
}

impl StoreError {
    /// Whether the database would refuse the same records again (so retrying cannot help).
    pub fn is_permanent(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) => {
                matches!(e.code, C::ConstraintViolation | C::TooBig | C::TypeMismatch)
            }
            StoreError::Sql(rusqlite::Error::ToSqlConversionFailure(_)) => true,
            _ => false,
        }
    }
}

/// One thing to write.
///
/// Alert changes are the common large record (an `Alert` is ~600 bytes); they are built
/// once and moved in the write batch, so they stay unboxed rather than cost an allocation.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Record {
    /// A validated sensor reading with its id.
    SensorEvent {
        /// Id allocated by [`Ids::next_event`].
        id: u64,
        /// The reading.
        event: SensorEvent,
    },
    /// A new incident (or a new version of one).
    Incident(pb::Incident),
    /// A new version of an alert; the writer fills in `seq` (in the alert too).
    AlertChange(crate::domain::AlertChange),
    /// A new silence, or a new version of one (expired early).
    Silence(pb::Silence),
    /// A camera status change or activity event (the camera journal).
    CameraEvent(pb::CameraEvent),
    /// A JPEG taken for an alert when it opened.
    Snapshot {
        /// The alert.
        alert_id: String,
        /// The camera.
        camera_id: String,
        /// When the keyframe arrived (ms since the Unix epoch).
        taken_ms: i64,
        /// The picture.
        jpeg: bytes::Bytes,
    },
    /// A message that could not be used, kept with its error.
    DeadLetter {
        /// When it arrived (ms since the Unix epoch).
        at_ms: i64,
        /// Its MQTT topic.
        topic: String,
        /// Short reason label (`bad_json`, `unknown_grid`, ...), as in metrics.
        reason: &'static str,
        /// The full error, naming the field.
        error: String,
        /// The payload (truncated to a few KiB).
        payload: Vec<u8>,
    },
}

/// What to do once a write item is durable.
#[derive(Debug)]
pub enum Done {
    /// Nothing.
    Nothing,
    /// Acknowledge these MQTT packets.
    MqttAcks(Vec<MqttAck>),
    /// Send back the records as committed (alert changes carry their seq).
    Reply(oneshot::Sender<Result<Vec<Record>, StoreError>>),
}

/// An MQTT packet to acknowledge: its id, on the connection (epoch) it arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttAck {
    /// Which connection: the ingest counts them up from 1.
    pub epoch: u32,
    /// Arrival order on that connection, from 0: acks are sent in this order.
    pub order: u64,
    /// The packet id.
    pub pkid: u16,
}

/// Records written in one transaction, and what to do after.
#[derive(Debug)]
pub struct WriteItem {
    /// The records.
    pub records: Vec<Record>,
    /// What to do once they are durable.
    pub done: Done,
}

/// Id allocation for records created before they are written.
#[derive(Debug, Default)]
pub struct Ids {
    event: AtomicU64,
    incident: AtomicU64,
    alert: AtomicU64,
    silence: AtomicU64,
}

impl Ids {
    /// The next sensor event id.
    pub fn next_event(&self) -> u64 {
        self.event.fetch_add(1, Ordering::Relaxed) + 1
    }
    /// The next incident id, e.g. `INC-000042`.
    pub fn next_incident(&self) -> String {
        numbered("INC-", self.incident.fetch_add(1, Ordering::Relaxed) + 1, 6)
    }
    /// The next alert id, e.g. `ALR-000042`.
    pub fn next_alert(&self) -> String {
        numbered("ALR-", self.alert.fetch_add(1, Ordering::Relaxed) + 1, 6)
    }
    /// The next silence id, e.g. `sil-7`.
    pub fn next_silence(&self) -> String {
        format!("sil-{}", self.silence.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// Bytes SQLite holds now, over every connection of the process (page caches, statements,
/// schema): what `gridsight_store_memory_bytes` shows.
pub fn memory_used() -> i64 {
    // SAFETY: sqlite3_memory_used takes no argument and reads SQLite's own counter under
    // its mutex (the bundled build is thread-safe); it is valid before and after
    // initialisation.
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}

/// What readers see of the writer's commits: sequence numbers, and a wake-up for pictures.
#[derive(Debug, Default)]
pub struct SeqState {
    /// The newest committed (and published) seq.
    pub last: AtomicU64,
    /// Every seq at or below this was deleted by retention.
    pub pruned_through: AtomicU64,
    /// Woken (`notify_waiters`) after each commit that stored an alert's picture: a reader
    /// waiting for a picture still being made enables a `notified()` before it reads, then
    /// awaits it, so no commit falls between the two.
    pub snapshot_stored: tokio::sync::Notify,
}

/// Handle to the store: cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<WriteItem>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: Arc<PathBuf>,
    /// Id allocators.
    pub ids: Arc<Ids>,
    /// Committed seqs.
    pub seqs: Arc<SeqState>,
    bus: broadcast::Sender<Arc<pb::AlertChange>>,
}

/// Everything [`Store::open`] starts.
pub struct Opened {
    /// The handle.
    pub store: Store,
    /// The writer thread; it ends when every `Store` handle is dropped and the queue
    /// drained, after the last checkpoint.
    pub writer: std::thread::JoinHandle<()>,
}

impl Store {
    /// Opens (creating if needed) the database in `cfg.data_dir` and starts the writer.
    /// `mqtt_acks` receives the packet ids to acknowledge after each commit.
    pub fn open(
        cfg: &StoreConfig,
        metrics: Arc<Metrics>,
        mqtt_acks: Option<mpsc::UnboundedSender<Vec<MqttAck>>>,
    ) -> Result<Opened, StoreError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| StoreError::Io {
            path: cfg.data_dir.clone(),
            source,
        })?;
        let path = cfg.data_dir.join("gridsight.db");
        let conn = schema::open_writer(&path, cfg.synchronous)?;
        let ids = Arc::new(Ids::default());
        let seqs = Arc::new(SeqState::default());
        schema::load_counters(&conn, &ids, &seqs)?;
        // Backpressure: blocking. Senders (correlator shards, the dead-letter path) wait
        // when the writer is behind, which in turn slows MQTT acknowledgements.
        let (tx, rx) = mpsc::channel(cfg.max_batch.max(64) * 2);
        // The bus drops for slow subscribers (they see `Lagged` and catch up from the
        // change log), so it never slows the writer.
        let (bus, _) = broadcast::channel(65_536);
        let checkpointer = checkpoint::spawn(path.clone()).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let writer = writer::spawn(writer::Writer {
            checkpointer: Some(checkpointer),
            conn,
            rx,
            bus: bus.clone(),
            seqs: seqs.clone(),
            metrics,
            mqtt_acks,
            max_batch: cfg.max_batch,
            dead_letter_capacity: cfg.dead_letter_capacity,
        })
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let store = Store {
            tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            path: Arc::new(path),
            ids,
            seqs,
            bus,
        };
        Ok(Opened { store, writer })
    }

    /// Queues an item for the writer; waits while the queue is full.
    pub async fn write(&self, item: WriteItem) -> Result<(), StoreError> {
        self.tx.send(item).await.map_err(|_| StoreError::Closed)
    }

    /// Writes records and waits until they are durable; returns them as committed.
    pub async fn write_and_wait(&self, records: Vec<Record>) -> Result<Vec<Record>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.write(WriteItem {
            records,
            done: Done::Reply(done),
        })
        .await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Items waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Committed alert changes, in seq order, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<pb::AlertChange>> {
        self.bus.subscribe()
    }

    /// Runs `f` on a pooled read-only connection, off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open_reader(&path)?,
            };
            let out = f(&conn);
            if let Ok(mut p) = readers.lock() {
                if p.len() < 8 {
                    p.push(conn);
                }
            }
            out
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

#[cfg(test)]
mod tests;
