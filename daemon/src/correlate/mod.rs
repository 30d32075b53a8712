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
//!
//! Partitioning: a grid belongs to the shard of its ancestor at `partition_tier` (a town,
//! by default), so rules whose scope stays inside a town never leave one shard. When a
//! rule's anchor for an event lies on another shard (a neighbour across a town border, a
//! county-wide rule), the router sends that shard a copy of the event (`Echo`) as well;
//! only the shard owning an anchor evaluates it, so each de-duplication key has one writer.
//! Senders are never shards, so these sends cannot deadlock.
//!
//! Timers: each shard ticks once a second (absence deadlines, quiet clears, escalation).
//! Restart: the open alerts come back from the store, and the rule windows are rebuilt by
//! replaying the journal of the longest rule window.

pub mod engine;
mod held;
pub mod linked;
mod open_alert;
mod rule_alerts;
pub mod rules;
mod sensor_book;
#[cfg(test)]
mod shard_tests;
pub mod silence;

use crate::domain::AlertChange;
use std::sync::Arc;

use arc_swap::ArcSwap;

use gridsight_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};

use crate::{
    config::CorrelationConfig,
    domain::{now_ms, GridIndex, SensorEvent},
    store::{journal::Journaled, Done, MqttAck, Record, Store, StoreError, WriteItem},
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
    /// A copy of an event for the rule anchors this shard owns (journaled elsewhere).
    Echo(Arc<rules::Obs>),
    /// New rules (on reload); windows of unchanged rules are kept.
    Rules(Arc<rules::RuleSet>),
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

/// Why an operator's command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandFailed {
    /// The engine refused it (stale version, not open, already acknowledged).
    #[error(transparent)]
    Refused(#[from] CommandError),
    /// The store did not make it durable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The correlator is stopping.
    #[error("the correlator is shutting down")]
    Stopped,
}

impl From<RouterClosed> for CommandFailed {
    fn from(_: RouterClosed) -> Self {
        CommandFailed::Stopped
    }
}

/// Sends events to the shard of their grid.
#[derive(Clone)]
pub struct Router {
    shards: Arc<Vec<mpsc::Sender<ShardMsg>>>,
    grids: Arc<GridIndex>,
    rules: Arc<ArcSwap<rules::RuleSet>>,
    tier: usize,
}

impl Router {
    /// The shard that owns `grid` (by its ancestor at the partition tier).
    pub fn shard_of(&self, grid: &str) -> usize {
        engine::partition_shard(&self.grids, self.tier, self.shards.len(), grid)
    }

    /// The other shards that own a rule anchor of `obs` (whose primary shard is `primary`).
    pub fn echo_shards(&self, obs: &rules::Obs, primary: usize) -> Vec<usize> {
        if self.shards.len() <= 1 {
            return Vec::new();
        }
        self.shards_for(&self.rules.load(), obs, primary)
    }

    /// The shards other than `primary` owning an anchor of `obs` under `set`.
    fn shards_for(&self, set: &rules::RuleSet, obs: &rules::Obs, primary: usize) -> Vec<usize> {
        let mut out: Vec<usize> = set
            .anchors_of(obs, &self.grids)
            .iter()
            .map(|a| self.shard_of(a))
            .filter(|s| *s != primary)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Copies for other shards of a sensor reading bound for `primary`, if any rule needs
    /// them: (shard, copy).
    /// `near` is the caller's own cache of `within_m` answers (an ingest task keeps one).
    pub fn sensor_echoes(
        &self,
        id: u64,
        ev: &SensorEvent,
        primary: usize,
        near: &mut rules::NearCache,
    ) -> Vec<(usize, Arc<rules::Obs>)> {
        if self.shards.len() <= 1 {
            return Vec::new();
        }
        let set = self.rules.load();
        if !set.wants_sensor(&ev.kind, ev.state) {
            return Vec::new();
        }
        // Most readings (a normal one that only a town-level clear wants) stay in their
        // partition: no observation built, no anchors computed.
        let depth = self.grids.depth(&ev.grid_id).unwrap_or(0);
        if !set.sensor_may_cross(&ev.kind, ev.state, depth, self.tier) {
            return Vec::new();
        }
        let obs = rules::Obs::sensor(id, ev);
        let mut shards: Vec<usize> = set
            .anchors_of_near(&obs, &self.grids, Some(near))
            .iter()
            .map(|a| self.shard_of(a))
            .filter(|s| *s != primary)
            .collect();
        shards.sort_unstable();
        shards.dedup();
        if shards.is_empty() {
            return Vec::new();
        }
        let obs = Arc::new(obs);
        shards.into_iter().map(|s| (s, obs.clone())).collect()
    }

    /// Sends a camera event to its shard, and copies where rules need them.
    pub async fn send_camera(&self, ev: pb::CameraEvent) -> Result<(), RouterClosed> {
        let grid = ev.grid_ids.first().cloned().unwrap_or_default();
        let primary = self.shard_of(&grid);
        let echoes = self.echo_shards(&rules::Obs::camera(&ev, now_ms()), primary);
        self.send_to(primary, ShardMsg::Camera(ev.clone())).await?;
        self.echo(echoes, rules::Obs::camera(&ev, now_ms())).await
    }

    /// Sends a new incident to its shard, and copies where rules need them.
    pub async fn send_incident(
        &self,
        incident: pb::Incident,
        reply: oneshot::Sender<Result<Vec<Record>, StoreError>>,
    ) -> Result<(), RouterClosed> {
        let primary = self.shard_of(&incident.grid_id);
        let obs = rules::Obs::incident(&incident, now_ms());
        let echoes = self.echo_shards(&obs, primary);
        self.send_to(primary, ShardMsg::Incident { incident, reply })
            .await?;
        self.echo(echoes, obs).await
    }

    async fn echo(&self, shards: Vec<usize>, obs: rules::Obs) -> Result<(), RouterClosed> {
        if shards.is_empty() {
            return Ok(());
        }
        let obs = Arc::new(obs);
        for s in shards {
            self.send_to(s, ShardMsg::Echo(obs.clone())).await?;
        }
        Ok(())
    }

    /// Replaces the rules on every shard (windows of unchanged rules are kept).
    pub async fn set_rules(&self, set: Arc<rules::RuleSet>) -> Result<(), RouterClosed> {
        self.rules.store(set.clone());
        for i in 0..self.shards.len() {
            self.send_to(i, ShardMsg::Rules(set.clone())).await?;
        }
        Ok(())
    }

    /// Delivers `msg` to the shard of `grid`, waiting while its queue is full.
    pub async fn send(&self, grid: &str, msg: ShardMsg) -> Result<(), RouterClosed> {
        self.shards[self.shard_of(grid)]
            .send(msg)
            .await
            .map_err(|_| RouterClosed)
    }

    /// Hands `cmd` to the shard of `grid` (the alert's grid) and waits until its change is
    /// durable; returns the alert as changed.
    pub async fn command(&self, grid: &str, cmd: Command) -> Result<pb::Alert, CommandFailed> {
        let (reply, rx) = oneshot::channel();
        self.send(grid, ShardMsg::Command { cmd, reply }).await?;
        let committed = rx.await.map_err(|_| CommandFailed::Stopped)??;
        let records = committed.await.map_err(|_| CommandFailed::Stopped)??;
        records
            .into_iter()
            .find_map(|r| match r {
                Record::AlertChange(c) => c.alert.map(Arc::unwrap_or_clone),
                _ => None,
            })
            .ok_or(CommandFailed::Stopped)
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
    rule_cfgs: &[crate::config::RuleConfig],
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
    let rule_set = Arc::new(rules::RuleSet::new(rule_cfgs));
    let inhibitors = Arc::new(engine::Inhibitors::default());
    let mut engines: Vec<engine::Engine> = (0..n)
        .map(|shard| {
            let mut e = engine::Engine::new(cfg.clone(), store.ids.clone());
            e.set_grids(grids.clone());
            e.set_rules(rule_set.clone());
            e.set_inhibitors(inhibitors.clone());
            e.set_partition(engine::Partition {
                shard,
                shards: n,
                tier: cfg.partition_tier,
            });
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
    // Shard to shard (a rule alert merging a single-source alert of another shard): rare,
    // so unbounded; a shard never waits on another, so shards cannot deadlock.
    let (peer_tx, mut peer_rx): (Vec<_>, Vec<_>) =
        (0..n).map(|_| mpsc::unbounded_channel::<Control>()).unzip();
    let peers = Arc::new(peer_tx);
    let router = Router {
        shards: Arc::new(senders),
        grids,
        rules: Arc::new(ArcSwap::new(rule_set.clone())),
        tier: cfg.partition_tier,
    };
    let restored = open.len();
    for alert in open {
        let shard = router.shard_of(&alert.grid_id);
        engines[shard].note(&[AlertChange {
            alert: Some(Arc::new(alert.clone())),
            ..Default::default()
        }]);
        engines[shard].restore(alert);
    }
    let replayed = if rule_set.is_empty() {
        0
    } else {
        let since = now_ms() - rule_set.max_window_ms;
        let (journal, closed) = store
            .read(move |c| {
                Ok((
                    crate::store::journal::since(c, since)?,
                    crate::store::journal::closed_rule_alerts(c, since)?,
                ))
            })
            .await?;
        for e in &mut engines {
            for (key, at) in &closed {
                e.note_closed(key.clone(), *at);
            }
        }
        for entry in &journal {
            let obs = match entry {
                Journaled::Sensor(id, ev) => {
                    if !rule_set.wants_sensor(&ev.kind, ev.state) {
                        continue;
                    }
                    rules::Obs::sensor(*id, ev)
                }
                Journaled::Camera(ev, at) => rules::Obs::camera(ev, *at),
                Journaled::Incident(inc, at) => rules::Obs::incident(inc, *at),
            };
            // Each engine evaluates only the anchors it owns.
            for e in &mut engines {
                e.replay(obs.clone());
            }
        }
        for e in &mut engines {
            e.end_replay();
        }
        journal.len()
    };
    tracing::info!(
        shards = n,
        restored,
        replayed,
        rules = rule_set.rules.len(),
        "correlator started"
    );
    let tasks = engines
        .into_iter()
        .zip(receivers)
        .enumerate()
        .map(|(i, (engine, rx))| {
            let shard = Shard {
                engine,
                rx,
                control: peer_rx.remove(0),
                peers: peers.clone(),
                grids: router.grids.clone(),
                tier: cfg.partition_tier,
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

/// A message from one shard to another.
enum Control {
    /// Merge your single-source alert holding `key` into rule alert `into`.
    Merge {
        key: String,
        into: String,
        rule: String,
    },
}

struct Shard {
    engine: engine::Engine,
    rx: mpsc::Receiver<ShardMsg>,
    control: mpsc::UnboundedReceiver<Control>,
    peers: Arc<Vec<mpsc::UnboundedSender<Control>>>,
    grids: Arc<GridIndex>,
    tier: usize,
    store: Store,
    metrics: Arc<Metrics>,
}

impl Shard {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let result = tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                Some(ctl) = self.control.recv() => self.control(ctl).await,
                _ = tick.tick() => self.tick().await,
            };
            self.ask_peers();
            if let Err(e) = result {
                tracing::warn!(error = %e, "shard stopped: store closed");
                break;
            }
        }
        // Updates still held back (repeats within `update_interval_ms`) go to the store.
        let held = self.engine.drain();
        if let Err(e) = self.write_changes(held).await {
            tracing::warn!(error = %e, "held-back alert updates not stored");
        }
        tracing::debug!(open = self.engine.open_count(), "shard drained");
    }

    /// A peer's request, after what was already queued here.
    ///
    /// A request follows from messages routed here before it: the router queues a reading
    /// (or camera event, or incident) on its own shard before it sends the rule copy to the
    /// peer, and the peer asks only after handling that copy. So the messages queued now
    /// are handled first (as many as are queued, not what keeps arriving), and the alert
    /// the request names exists when it is read.
    async fn control(&mut self, ctl: Control) -> Result<(), StoreError> {
        for _ in 0..self.rx.len() {
            match self.rx.try_recv() {
                Ok(msg) => self.handle(msg).await?,
                Err(_) => break,
            }
        }
        match ctl {
            Control::Merge { key, into, rule } => {
                let changes = self.engine.merge_foreign(&key, &into, &rule, now_ms());
                self.write_changes(changes).await
            }
        }
    }

    /// Sends the merges the engine asks of other shards.
    fn ask_peers(&mut self) {
        let n = self.peers.len();
        for (grid, key, into, rule) in self.engine.take_foreign_merges() {
            let shard = engine::partition_shard(&self.grids, self.tier, n, &grid);
            if let Some(peer) = self.peers.get(shard) {
                let _ = peer.send(Control::Merge { key, into, rule });
            }
        }
    }

    async fn tick(&mut self) -> Result<(), StoreError> {
        let changes = self.engine.tick(now_ms());
        self.write_changes(changes).await
    }

    async fn write_changes(&mut self, changes: Vec<AlertChange>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.engine.note(&changes);
        self.store
            .write(WriteItem {
                records: changes.into_iter().map(Record::AlertChange).collect(),
                done: Done::Nothing,
            })
            .await
    }

    async fn handle(&mut self, msg: ShardMsg) -> Result<(), StoreError> {
        match msg {
            ShardMsg::Sensors(batch) => {
                let mut records = Vec::with_capacity(batch.len() + 4);
                let mut acks = Vec::with_capacity(batch.len());
                // Repeats of one alert within the batch go out once, at its end.
                self.engine.begin_batch();
                self.engine.prefetch_batch(batch.iter().map(|s| &s.event));
                let mut batch = batch.into_iter().peekable();
                while let Some(SensorIn { id, event, ack }) = batch.next() {
                    if let Some(next) = batch.peek() {
                        self.engine.prefetch_next(&next.event);
                    }
                    if self.engine.is_repeat(&event) {
                        self.metrics.mqtt_duplicates.inc();
                    } else {
                        let changes = self.engine.on_sensor(id, &event);
                        self.engine.note(&changes);
                        records.extend(changes.into_iter().map(Record::AlertChange));
                    }
                    records.push(Record::SensorEvent { id, event });
                    acks.extend(ack);
                }
                let updates = self.engine.end_batch(now_ms());
                self.engine.note(&updates);
                records.extend(updates.into_iter().map(Record::AlertChange));
                self.store
                    .write(WriteItem {
                        records,
                        done: Done::MqttAcks(acks),
                    })
                    .await
            }
            ShardMsg::Incident { incident, reply } => {
                let (incident, changes) = self.engine.on_incident(incident, now_ms());
                self.engine.note(&changes);
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
                self.engine.note(&changes);
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
                let changes = self.engine.raise(r, now_ms());
                self.write_changes(changes).await
            }
            ShardMsg::Echo(obs) => {
                let changes = self.engine.observe((*obs).clone(), now_ms());
                self.write_changes(changes).await
            }
            ShardMsg::Rules(set) => {
                self.engine.set_rules(set);
                Ok(())
            }
            ShardMsg::Command { cmd, reply } => match self.engine.command(&cmd, now_ms()) {
                Ok(change) => {
                    self.engine.note(std::slice::from_ref(&change));
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
