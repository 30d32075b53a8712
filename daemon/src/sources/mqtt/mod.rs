//! MQTT sensor ingest: one persistent-session subscription, acknowledged late.
//!
//! The task keeps one MQTT 3.1.1 connection ([`session::Session`]), parses each message
//! ([`payload::Parser`]) and hands valid readings to the correlator shard of their grid, or
//! malformed ones to the store as dead letters. With QoS 1, a message is acknowledged to
//! the broker only after the store committed it (the store writer sends the packets back
//! here), and all acknowledgements ready at once go out in one write.
//!
//! Invariants:
//! - a packet id is acknowledged only on the connection it arrived on: acks from before a
//!   reconnect are dropped, because the broker redelivers those messages with the same ids
//!   and the redelivered copy is acknowledged once it is durable;
//! - acknowledgements go out in the order the messages arrived (MQTT 3.1.1 §4.6), even
//!   though shards commit independently: an ack is held back until every earlier message
//!   of the connection is durable too ([`AckOrder`]);
//! - a malformed message never stops the ones behind it: it is counted by reason, logged
//!   (rate-limited, once per reason per interval), kept as a dead letter, and acknowledged.

pub mod payload;
pub mod session;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use rand::Rng;
use rumqttc::{Packet, Publish, QoS};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    config::MqttConfig,
    correlate::{rules::Obs, Router, SensorIn, ShardMsg},
    domain::now_ms,
    store::{Done, MqttAck, Record, Store, WriteItem},
    telemetry::{Metrics, RateLimit},
};

use payload::Parser;
use session::{Session, SessionError};

/// Most payload bytes kept in a dead letter.
const DEAD_LETTER_BYTES: usize = 4096;

/// How long a stopping ingest waits for its in-flight messages to be acknowledged.
const DRAIN: Duration = Duration::from_secs(3);

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
    /// TLS to the broker (`[mqtt.tls]`).
    pub tls: Option<crate::tls::MqttTls>,
    /// Packets to acknowledge, from the store writer once durable.
    pub acks: mpsc::UnboundedReceiver<Vec<MqttAck>>,
    /// Set while subscribed.
    pub ready: Arc<AtomicBool>,
}

/// How a connection ended.
enum End {
    Stopped,
    Lost(SessionError),
}

impl MqttIngest {
    /// Runs until `cancel`, then stops reading, waits (briefly) for what is in flight to be
    /// acknowledged, and disconnects.
    pub async fn run(mut self, cancel: CancellationToken) {
        let qos = if self.cfg.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let mut topics: Vec<String> = self.cfg.mappings.iter().map(|m| m.topic.clone()).collect();
        if self.cfg.default_topics {
            topics.insert(0, format!("{}#", payload::DEFAULT_PREFIX));
        }
        let log_limit = RateLimit::new(Duration::from_secs(10));
        let mut backoff = self.cfg.reconnect_min_ms;
        let mut epoch = 0u32;
        loop {
            let opened = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                s = Session::open(&self.cfg, self.tls.as_ref(), &topics, qos) => s,
            };
            let error = match opened {
                Ok(session) => {
                    epoch += 1;
                    backoff = self.cfg.reconnect_min_ms;
                    self.metrics.mqtt_connected.set(1);
                    tracing::info!(host = %self.cfg.host, port = self.cfg.port, session_present = session.session_present, "connected to MQTT broker");
                    if epoch > 1 && !session.session_present && qos == QoS::AtLeastOnce {
                        // The broker forgot our session: what it queued for us while we
                        // were away, and what it had sent but we had not acknowledged, is
                        // gone with it. A broker restart does this without persistence.
                        tracing::warn!(host = %self.cfg.host, "the MQTT broker kept no session for us: readings queued while we were disconnected are lost (does the broker keep `persistence true`?)");
                    }
                    let end = self
                        .connected(session, epoch, &topics, &log_limit, &cancel)
                        .await;
                    self.ready.store(false, Ordering::Release);
                    self.metrics.mqtt_connected.set(0);
                    match end {
                        End::Stopped => break,
                        End::Lost(e) => {
                            self.metrics.mqtt_disconnects.inc();
                            e
                        }
                    }
                }
                Err(e) => e,
            };
            if let Some(suppressed) = log_limit.check("connection") {
                tracing::warn!(error = %error, retry_in_ms = backoff, suppressed, "MQTT connection lost or refused");
            }
            let jitter = rand::rng().random_range(0..=backoff / 2);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(backoff + jitter)) => {}
            }
            backoff = (backoff * 2).min(self.cfg.reconnect_max_ms);
        }
        tracing::info!("MQTT ingest stopped");
    }

    /// Serves one connection until it fails or `cancel`.
    async fn connected(
        &mut self,
        mut s: Session,
        epoch: u32,
        topics: &[String],
        log_limit: &RateLimit,
        cancel: &CancellationToken,
    ) -> End {
        let mut order = AckOrder::new(epoch);
        // `within_m` answers for routing copies of readings (sensors do not move).
        let mut near = crate::correlate::rules::NearCache::default();
        let mut arrived = 0u64;
        let mut in_flight = 0u64;
        let mut packets = Vec::with_capacity(256);
        let keep_alive = Duration::from_secs(self.cfg.keep_alive_secs.max(5));
        let mut tick = tokio::time::interval(keep_alive / 4);
        let mut last_write = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        loop {
            let step: Result<(), SessionError> = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.drain(&mut s, &mut order, &mut in_flight).await;
                    s.disconnect().await;
                    return End::Stopped;
                }
                Some(batch) = self.acks.recv() => {
                    let n = self.ack(&mut s, &mut order, batch);
                    in_flight = in_flight.saturating_sub(n);
                    last_write = Instant::now();
                    s.flush().await
                }
                r = s.read_packets(&mut packets) => match r {
                    Ok(()) => {
                        let mut result = Ok(());
                        // One batch per shard per read: one channel send each, not one per message.
                        let mut batches: Vec<Vec<SensorIn>> = (0..self.router.len()).map(|_| Vec::new()).collect();
                        let mut echoes: Vec<(usize, Arc<Obs>)> = Vec::new();
                        for p in packets.drain(..) {
                            match p {
                                Packet::Publish(p) => {
                                    let ack = (p.qos != QoS::AtMostOnce).then(|| {
                                        arrived += 1;
                                        in_flight += 1;
                                        MqttAck { epoch, order: arrived - 1, pkid: p.pkid }
                                    });
                                    if let Some((shard, reading)) = self.accept(&p, ack, log_limit).await {
                                        echoes.extend(self.router.sensor_echoes(reading.id, &reading.event, shard, &mut near));
                                        batches[shard].push(reading);
                                    }
                                }
                                Packet::PingResp => ping_sent = None,
                                Packet::SubAck(ack) => match Session::check_suback(&ack.return_codes, topics) {
                                    Ok(()) => self.ready.store(true, Ordering::Release),
                                    Err(e) => result = Err(e),
                                },
                                Packet::Disconnect => result = Err(SessionError::Closed),
                                _ => {}
                            }
                        }
                        for (shard, batch) in batches.into_iter().enumerate() {
                            if !batch.is_empty() && self.router.send_to(shard, ShardMsg::Sensors(batch)).await.is_err() && !cancel.is_cancelled() {
                                tracing::error!("correlator closed while the ingest runs");
                            }
                        }
                        // Copies for rule anchors on other shards, after the readings themselves.
                        for (shard, obs) in echoes {
                            if self.router.send_to(shard, ShardMsg::Echo(obs)).await.is_err() && !cancel.is_cancelled() {
                                tracing::error!("correlator closed while the ingest runs");
                            }
                        }
                        result
                    }
                    Err(e) => Err(e),
                },
                _ = tick.tick() => match ping_sent {
                    Some(at) if at.elapsed() > keep_alive => Err(SessionError::Timeout("PINGRESP")),
                    None if last_write.elapsed() >= keep_alive / 2 => {
                        ping_sent = Some(Instant::now());
                        last_write = Instant::now();
                        match s.ping() {
                            Ok(()) => s.flush().await,
                            Err(e) => Err(e),
                        }
                    }
                    _ => Ok(()),
                },
            };
            if let Err(e) = step {
                return End::Lost(e);
            }
        }
    }

    /// Queues the acknowledgements that may go out now; returns how many.
    fn ack(&mut self, s: &mut Session, order: &mut AckOrder, first: Vec<MqttAck>) -> u64 {
        let mut n = 0;
        let mut batch = Some(first);
        while let Some(b) = batch.take().or_else(|| self.acks.try_recv().ok()) {
            for pkid in order.release(b) {
                if s.puback(pkid).is_ok() {
                    n += 1;
                }
            }
        }
        self.metrics.mqtt_acked.inc_by(n);
        n
    }

    /// After cancel: no new messages are taken; what is in flight is acknowledged as it
    /// becomes durable, for a short while. Messages not acknowledged stay with the broker.
    async fn drain(&mut self, s: &mut Session, order: &mut AckOrder, in_flight: &mut u64) {
        let deadline = Instant::now() + DRAIN;
        while *in_flight > 0 {
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Ok(Some(batch)) => {
                    let n = self.ack(s, order, batch);
                    *in_flight = in_flight.saturating_sub(n);
                    if s.flush().await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Takes one message: a valid reading comes back with its shard; anything else becomes
    /// a dead letter (written here, acknowledged once durable). Never fails.
    async fn accept(
        &self,
        p: &Publish,
        ack: Option<MqttAck>,
        log_limit: &RateLimit,
    ) -> Option<(usize, SensorIn)> {
        self.metrics.mqtt_received.inc();
        let now = now_ms();
        let topic: &str = &p.topic;
        match self.parser.parse(topic, &p.payload, now) {
            Ok(event) => {
                let id = self.store.ids.next_event();
                Some((
                    self.router.shard_of(&event.grid_id),
                    SensorIn { id, event, ack },
                ))
            }
            Err(rej) => {
                self.metrics.reject(rej.reason);
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
                    done: Done::MqttAcks(ack.into_iter().collect()),
                };
                if self.store.write(item).await.is_err() {
                    tracing::error!("store closed while the ingest runs");
                }
                None
            }
        }
    }
}

/// Puts durable messages back in arrival order, for one connection.
struct AckOrder {
    epoch: u32,
    next: u64,
    /// Durable but held back until every earlier message is durable too.
    ready: std::collections::BTreeMap<u64, u16>,
}

impl AckOrder {
    fn new(epoch: u32) -> Self {
        Self {
            epoch,
            next: 0,
            ready: Default::default(),
        }
    }

    /// Takes what became durable; returns the packet ids that may be acknowledged now, in
    /// order. Acks of another connection are dropped.
    fn release(&mut self, durable: Vec<MqttAck>) -> Vec<u16> {
        let epoch = self.epoch;
        self.ready.extend(
            durable
                .into_iter()
                .filter(|a| a.epoch == epoch)
                .map(|a| (a.order, a.pkid)),
        );
        let mut out = Vec::new();
        while let Some(pkid) = self.ready.remove(&self.next) {
            self.next += 1;
            out.push(pkid);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(epoch: u32, order: u64) -> MqttAck {
        MqttAck {
            epoch,
            order,
            pkid: 100 + order as u16,
        }
    }

    #[test]
    fn acks_are_released_in_arrival_order() {
        let mut o = AckOrder::new(1);
        assert_eq!(
            o.release(vec![ack(1, 1), ack(1, 2)]),
            Vec::<u16>::new(),
            "0 not durable yet"
        );
        assert_eq!(o.release(vec![ack(1, 0)]), vec![100, 101, 102]);
        assert_eq!(o.release(vec![ack(1, 4)]), Vec::<u16>::new());
        // After a reconnect, what belongs to the old connection is dropped.
        let mut o = AckOrder::new(2);
        assert_eq!(o.release(vec![ack(1, 0), ack(2, 0)]), vec![100]);
    }
}
