//! MQTT sensor ingest: one persistent-session subscription, acknowledged late.
//!
//! The task polls the rumqttc event loop, parses each message ([`payload::Parser`]) and
//! hands valid readings to the correlator shard of their grid, or malformed ones to the
//! store as dead letters. With QoS 1 and manual acks, a message is acknowledged to the
//! broker only after the store committed it (the writer sends the packet ids back here).
//!
//! Invariants:
//! - a packet id is acknowledged only on the connection it arrived on: acks from before a
//!   reconnect are dropped, because the broker redelivers those messages with the same ids
//!   and the redelivered copy is acknowledged once it is durable;
//! - acknowledgements go out in the order the messages arrived (MQTT 3.1.1 §4.6), even
//!   though shards commit independently: the acker holds back an ack until every earlier
//!   message of the connection is durable too;
//! - a malformed message never stops the ones behind it: it is counted by reason, logged
//!   (rate-limited, once per reason per interval), kept as a dead letter, and acknowledged.

pub mod payload;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use rand::Rng;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    config::MqttConfig,
    correlate::{Router, ShardMsg},
    domain::now_ms,
    store::{Done, MqttAck, Record, Store, WriteItem},
    telemetry::{Metrics, RateLimit},
};

use payload::Parser;

/// Most payload bytes kept in a dead letter.
const DEAD_LETTER_BYTES: usize = 4096;

/// The ingest task's parts.
pub struct MqttIngest {
    /// Broker and topics.
    pub cfg: MqttConfig,
    /// Message parser.
    pub parser: Parser,
    /// Where readings go.
    pub router: Router,
    /// Where dead letters go.
    pub store: Store,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Packet ids to acknowledge, from the store writer.
    pub acks: mpsc::UnboundedReceiver<Vec<MqttAck>>,
    /// Set once subscribed.
    pub ready: Arc<AtomicBool>,
}

struct Shared {
    epoch: AtomicU32,
    pending: AtomicUsize,
}

impl MqttIngest {
    /// Runs until `cancel`, then stops reading, waits (briefly) for what is in flight to be
    /// acknowledged, and disconnects.
    pub async fn run(self, cancel: CancellationToken) {
        let MqttIngest {
            cfg,
            parser,
            router,
            store,
            metrics,
            acks,
            ready,
        } = self;
        let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
        opts.set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)))
            .set_max_packet_size(
                cfg.max_payload_bytes.saturating_mul(4).max(64 * 1024),
                64 * 1024,
            )
            .set_request_channel_capacity(65_536);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            opts.set_credentials(u.clone(), p.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 65_536);
        let shared = Arc::new(Shared {
            epoch: AtomicU32::new(0),
            pending: AtomicUsize::new(0),
        });
        let acker = tokio::spawn(acker(client.clone(), acks, shared.clone(), metrics.clone()));
        let qos = if cfg.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let mut topics: Vec<String> = cfg.mappings.iter().map(|m| m.topic.clone()).collect();
        if cfg.default_topics {
            topics.insert(0, format!("{}#", payload::DEFAULT_PREFIX));
        }
        let log_limit = RateLimit::new(Duration::from_secs(10));
        let mut backoff = cfg.reconnect_min_ms;
        let mut order = 0u64;
        loop {
            let ev = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                ev = eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    handle(
                        &p, &mut order, &parser, &router, &store, &metrics, &shared, &log_limit,
                        &cancel,
                    )
                    .await;
                }
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    shared.epoch.fetch_add(1, Ordering::AcqRel);
                    order = 0;
                    // Whatever was in flight will be redelivered on this connection.
                    shared.pending.store(0, Ordering::Release);
                    metrics.mqtt_connected.set(1);
                    backoff = cfg.reconnect_min_ms;
                    tracing::info!(host = %cfg.host, port = cfg.port, session_present = c.session_present, "connected to MQTT broker");
                    for t in &topics {
                        if let Err(e) = client.subscribe(t.clone(), qos).await {
                            tracing::error!(topic = %t, error = %e, "subscribe failed");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => ready.store(true, Ordering::Release),
                Ok(_) => {}
                Err(e) => {
                    if metrics.mqtt_connected.get() == 1 {
                        metrics.mqtt_disconnects.inc();
                    }
                    metrics.mqtt_connected.set(0);
                    ready.store(false, Ordering::Release);
                    if let Some(suppressed) = log_limit.check("connection") {
                        tracing::warn!(error = %e, retry_in_ms = backoff, suppressed, "MQTT connection lost");
                    }
                    let jitter = rand::rng().random_range(0..=backoff / 2);
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(backoff + jitter)) => {}
                    }
                    backoff = (backoff * 2).min(cfg.reconnect_max_ms);
                }
            }
        }
        drain(&client, &mut eventloop, &shared).await;
        acker.abort();
        metrics.mqtt_connected.set(0);
        tracing::info!("MQTT ingest stopped");
    }
}

/// Handles one message; never fails: what cannot be used becomes a dead letter.
#[allow(clippy::too_many_arguments)]
async fn handle(
    p: &Publish,
    order: &mut u64,
    parser: &Parser,
    router: &Router,
    store: &Store,
    metrics: &Metrics,
    shared: &Shared,
    log_limit: &RateLimit,
    cancel: &CancellationToken,
) {
    metrics.mqtt_received.inc();
    let ack = (p.qos != QoS::AtMostOnce).then(|| {
        *order += 1;
        MqttAck {
            epoch: shared.epoch.load(Ordering::Acquire),
            order: *order - 1,
            pkid: p.pkid,
        }
    });
    if ack.is_some() {
        shared.pending.fetch_add(1, Ordering::AcqRel);
    }
    let now = now_ms();
    let topic: &str = &p.topic;
    let result = parser.parse(topic, &p.payload, now);
    let sent = match result {
        Ok(event) => {
            let id = store.ids.next_event();
            let grid = event.grid_id.clone();
            router
                .send(&grid, ShardMsg::Sensor { id, event, ack })
                .await
                .is_ok()
        }
        Err(rej) => {
            metrics.reject(rej.reason);
            if let Some(suppressed) = log_limit.check(rej.reason) {
                tracing::warn!(topic = %topic, reason = rej.reason, error = %rej.error, suppressed, "rejected MQTT message");
            }
            let payload = p.payload[..p.payload.len().min(DEAD_LETTER_BYTES)].to_vec();
            let item = WriteItem {
                records: vec![Record::DeadLetter {
                    at_ms: now,
                    topic: topic.to_string(),
                    reason: rej.reason,
                    error: rej.error,
                    payload,
                }],
                done: ack.map_or(Done::Nothing, Done::MqttAck),
            };
            store.write(item).await.is_ok()
        }
    };
    if !sent && !cancel.is_cancelled() {
        tracing::error!("correlator or store closed while the ingest runs");
    }
}

/// Sends the acknowledgements the store writer hands back, for the current connection,
/// in arrival order.
async fn acker(
    client: AsyncClient,
    mut rx: mpsc::UnboundedReceiver<Vec<MqttAck>>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
) {
    let mut epoch_seen = 0;
    let mut next = 0u64;
    // Durable but held back until every earlier message is durable too.
    let mut ready: std::collections::BTreeMap<u64, u16> = Default::default();
    while let Some(batch) = rx.recv().await {
        let epoch = shared.epoch.load(Ordering::Acquire);
        if epoch != epoch_seen {
            epoch_seen = epoch;
            next = 0;
            ready.clear();
        }
        ready.extend(
            batch
                .into_iter()
                .filter(|a| a.epoch == epoch)
                .map(|a| (a.order, a.pkid)),
        );
        while let Some(pkid) = ready.remove(&next) {
            next += 1;
            let mut p = Publish::new("", QoS::AtLeastOnce, Vec::new());
            p.pkid = pkid;
            if client.ack(&p).await.is_err() {
                return;
            }
            metrics.mqtt_acked.inc();
            let _ = shared
                .pending
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

/// After cancel: keeps the connection turning (without taking new messages) until what was
/// in flight is acknowledged or a short deadline passes, then disconnects.
async fn drain(client: &AsyncClient, eventloop: &mut EventLoop, shared: &Shared) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while shared.pending.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        // Publishes that arrive now are not handled and not acknowledged: the broker keeps
        // them for the next start.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(50), eventloop.poll()).await
        {
            return;
        }
    }
    let _ = client.disconnect().await;
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await {
            Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) => return,
            _ => {}
        }
    }
}
