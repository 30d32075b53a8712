//! Correlator shards and the router that feeds them, by grid.
//!
//! Each shard is one task that owns an [`engine::Engine`] outright (no shared mutex): all
//! events of a grid go to the same shard, through a bounded channel, so they are handled
//! in order. A shard hands its records and alert changes to the store in one write item,
//! together with what to do once they are durable (acknowledge the MQTT message, answer
//! the RPC), and goes on with the next event without waiting for the commit.
//!
//! Backpressure: the shard channels block. When a shard is behind, the MQTT ingest waits
//! on it (and so stops reading from the broker, which holds the unacknowledged messages),
//! and `Report` calls wait too.

pub mod engine;
pub mod silence;

use std::sync::Arc;

use gridsight_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};

use crate::{
    config::CorrelationConfig,
    domain::{now_ms, GridIndex, SensorEvent},
    store::{Done, MqttAck, Record, Store, StoreError, WriteItem},
    telemetry::{Metrics, ShardLabel},
};

pub use engine::{snapshot_url, Action, CameraRules, Command, CommandError, RaiseAlert};
pub use silence::SilenceSet;

/// What the store will answer once a write is durable.
pub type Committed = oneshot::Receiver<Result<Vec<Record>, StoreError>>;

/// A message to a shard.
pub enum ShardMsg {
    /// Validated sensor readings, in arrival order: one batch per socket read.
    Sensors(Vec<SensorIn>),
    /// A new incident (its id allocated); the reply carries the committed records.
    Incident {
        /// The incident.
        incident: pb::Incident,
        /// Where the committed records go.
        reply: oneshot::Sender<Result<Vec<Record>, StoreError>>,
    },
    /// A camera status change or activity event (journaled, and correlated).
    Camera(pb::CameraEvent),
    /// Who covers which grid now (sent to every shard at start and on reload).
    Cameras(CameraRules),
    /// The silences in force now (sent to every shard whenever one is created or expired).
    Silences(Arc<SilenceSet>),
    /// An alert raised from outside the sources (supervision of overdue incidents).
    Raise(RaiseAlert),
    /// An operator's command; answered at once with the refusal, or with the receiver of
    /// the commit.
    Command {
        /// The command.
        cmd: Command,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Committed, CommandError>>,
    },
}

/// One validated sensor reading on its way to a shard.
pub struct SensorIn {
    /// Allocated event id.
    pub id: u64,
    /// The reading.
    pub event: SensorEvent,
    /// MQTT packet to acknowledge once durable (QoS 1).
    pub ack: Option<MqttAck>,
}

/// Why the router could not deliver.
#[derive(Debug, thiserror::Error)]
#[error("the correlator is shutting down")]
pub struct RouterClosed;

/// Sends events to the shard of their grid.
#[derive(Clone)]
pub struct Router {
    shards: Arc<Vec<mpsc::Sender<ShardMsg>>>,
    grids: Arc<GridIndex>,
}

impl Router {
    /// The shard that owns `grid`.
    pub fn shard_of(&self, grid: &str) -> usize {
        let n = self.shards.len();
        match self.grids.index_of(grid) {
            Some(i) => i % n,
            None => {
                grid.bytes()
                    .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
                    % n
            }
        }
    }

    /// Delivers `msg` to the shard of `grid`, waiting while its queue is full.
    pub async fn send(&self, grid: &str, msg: ShardMsg) -> Result<(), RouterClosed> {
        self.shards[self.shard_of(grid)]
            .send(msg)
            .await
            .map_err(|_| RouterClosed)
    }

    /// Delivers `msg` to shard `shard` (from [`Router::shard_of`]), waiting while its queue
    /// is full.
    pub async fn send_to(&self, shard: usize, msg: ShardMsg) -> Result<(), RouterClosed> {
        self.shards[shard % self.shards.len()]
            .send(msg)
            .await
            .map_err(|_| RouterClosed)
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there are no shards (never, once started).
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The grid tree.
    pub fn grids(&self) -> &Arc<GridIndex> {
        &self.grids
    }

    /// Tells every shard who covers which grid.
    pub async fn set_cameras(&self, rules: CameraRules) -> Result<(), RouterClosed> {
        for i in 0..self.shards.len() {
            self.send_to(i, ShardMsg::Cameras(rules.clone())).await?;
        }
        Ok(())
    }

    /// Tells every shard which silences are in force.
    pub async fn set_silences(&self, set: Arc<SilenceSet>) -> Result<(), RouterClosed> {
        for i in 0..self.shards.len() {
            self.send_to(i, ShardMsg::Silences(set.clone())).await?;
        }
        Ok(())
    }

    /// Queue depth of each shard.
    pub fn depths(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.max_capacity() - s.capacity())
            .collect()
    }
}

/// Starts the shards, restoring the open alerts from the store. Returns the router and the
/// shard tasks; the tasks end when every `Router` clone is dropped and their queue is empty.
pub async fn start(
    cfg: &CorrelationConfig,
    grids: Arc<GridIndex>,
    store: Store,
    metrics: Arc<Metrics>,
) -> Result<(Router, Vec<tokio::task::JoinHandle<()>>), StoreError> {
    let n = if cfg.shards == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        cfg.shards
    };
    let (open, _) = store.read(crate::store::read::open_alerts).await?;
    let mut engines: Vec<engine::Engine> = (0..n)
        .map(|_| {
            let mut e = engine::Engine::new(cfg.clone(), store.ids.clone());
            e.set_grids(grids.clone());
            e
        })
        .collect();
    let mut senders = Vec::with_capacity(n);
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel(cfg.shard_queue);
        senders.push(tx);
        receivers.push(rx);
    }
    let router = Router {
        shards: Arc::new(senders),
        grids,
    };
    let restored = open.len();
    for alert in open {
        let shard = router.shard_of(&alert.grid_id);
        engines[shard].restore(alert);
    }
    tracing::info!(shards = n, restored, "correlator started");
    let tasks = engines
        .into_iter()
        .zip(receivers)
        .enumerate()
        .map(|(i, (engine, rx))| {
            let shard = Shard {
                engine,
                rx,
                store: store.clone(),
                metrics: metrics.clone(),
            };
            let span = tracing::info_span!("shard", shard = i);
            metrics
                .shard_queue_depth
                .get_or_create(&ShardLabel {
                    shard: i.to_string(),
                })
                .set(0);
            tokio::spawn(tracing::Instrument::instrument(shard.run(), span))
        })
        .collect();
    Ok((router, tasks))
}

struct Shard {
    engine: engine::Engine,
    rx: mpsc::Receiver<ShardMsg>,
    store: Store,
    metrics: Arc<Metrics>,
}

impl Shard {
    async fn run(mut self) {
        while let Some(msg) = self.rx.recv().await {
            if let Err(e) = self.handle(msg).await {
                tracing::warn!(error = %e, "shard stopped: store closed");
                break;
            }
        }
        tracing::debug!(open = self.engine.open_count(), "shard drained");
    }

    async fn handle(&mut self, msg: ShardMsg) -> Result<(), StoreError> {
        match msg {
            ShardMsg::Sensors(batch) => {
                let mut records = Vec::with_capacity(batch.len() + 4);
                let mut acks = Vec::with_capacity(batch.len());
                for SensorIn { id, event, ack } in batch {
                    if self.engine.is_repeat(&event) {
                        self.metrics.mqtt_duplicates.inc();
                    } else {
                        records.extend(
                            self.engine
                                .on_sensor(id, &event)
                                .into_iter()
                                .map(Record::AlertChange),
                        );
                    }
                    records.push(Record::SensorEvent { id, event });
                    acks.extend(ack);
                }
                self.store
                    .write(WriteItem {
                        records,
                        done: Done::MqttAcks(acks),
                    })
                    .await
            }
            ShardMsg::Incident { incident, reply } => {
                let (incident, changes) = self.engine.on_incident(incident, now_ms());
                let mut records = Vec::with_capacity(1 + changes.len());
                records.push(Record::Incident(incident));
                records.extend(changes.into_iter().map(Record::AlertChange));
                self.store
                    .write(WriteItem {
                        records,
                        done: Done::Reply(reply),
                    })
                    .await
            }
            ShardMsg::Camera(event) => {
                let changes = self.engine.on_camera(&event, now_ms());
                let mut records = Vec::with_capacity(1 + changes.len());
                records.push(Record::CameraEvent(event));
                records.extend(changes.into_iter().map(Record::AlertChange));
                self.store
                    .write(WriteItem {
                        records,
                        done: Done::Nothing,
                    })
                    .await
            }
            ShardMsg::Cameras(rules) => {
                self.engine.set_cameras(rules);
                Ok(())
            }
            ShardMsg::Silences(set) => {
                self.engine.set_silences(set);
                Ok(())
            }
            ShardMsg::Raise(r) => {
                let records = self
                    .engine
                    .raise(r, now_ms())
                    .into_iter()
                    .map(Record::AlertChange)
                    .collect();
                self.store
                    .write(WriteItem {
                        records,
                        done: Done::Nothing,
                    })
                    .await
            }
            ShardMsg::Command { cmd, reply } => match self.engine.command(&cmd, now_ms()) {
                Ok(change) => {
                    let (done, committed) = oneshot::channel();
                    self.store
                        .write(WriteItem {
                            records: vec![Record::AlertChange(change)],
                            done: Done::Reply(done),
                        })
                        .await?;
                    let _ = reply.send(Ok(committed));
                    Ok(())
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                    Ok(())
                }
            },
        }
    }
}
