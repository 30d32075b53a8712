//! An MQTT sensor fleet: publishes readings of the demo city's sensors at a given total rate.
//!
//! Topic: `gridsight/sensors/{grid}/{kind}/{sensor_id}`. Payload (the daemon's contract):
//! `{"device_time": <unix ms>, "state": "normal"|"alarm"|"fault", "reading": <number>, ...}`
//! plus fields the daemon ignores (`seq`, `battery`, `rssi`, `net`, `fw`, `hw`), about 150
//! bytes.
//! Sensors are visited round-robin; readings drift per kind ([`SensorSim`]) and an alarm
//! lasts several consecutive messages of the same sensor.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, SeedableRng};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing, QoS};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{city::DemoSensor, now_unix_ms, readings::SensorSim, SimError};

/// How the fleet connects and what it sends.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Broker host.
    pub host: String,
    /// Broker port (plain TCP).
    pub port: u16,
    /// MQTT client id of the fleet's one connection.
    pub client_id: String,
    /// QoS of every publish.
    pub qos: QoS,
    /// Total messages per second over all sensors; `f64::INFINITY` = as fast as possible.
    pub rate_per_sec: f64,
    /// Approximate share of messages in the `alarm` state (0..=1).
    pub alarm_ratio: f64,
    /// Share of messages in the `fault` state (0..=1).
    pub fault_ratio: f64,
    /// Consecutive messages a sensor stays in alarm once it goes there (at least 1).
    pub alarm_run: u32,
    /// Stop after this many messages; `None` = until cancelled.
    pub max_messages: Option<u64>,
    /// Seed of the readings.
    pub seed: u64,
    /// How long to wait for outstanding acknowledgements when stopping.
    pub flush_timeout: Duration,
}

impl FleetConfig {
    /// Defaults (QoS 1, 100 msg/s, 1% alarm, 0.2% fault, alarm runs of 4) for a broker.
    pub fn new(host: impl Into<String>, port: u16) -> FleetConfig {
        FleetConfig {
            host: host.into(),
            port,
            client_id: "gridsight-sim-fleet".to_string(),
            qos: QoS::AtLeastOnce,
            rate_per_sec: 100.0,
            alarm_ratio: 0.01,
            fault_ratio: 0.002,
            alarm_run: 4,
            max_messages: None,
            seed: 1,
            flush_timeout: Duration::from_secs(5),
        }
    }

    fn validate(&self) -> Result<(), SimError> {
        let bad = |m: &str| Err(SimError::InvalidConfig(format!("fleet: {m}")));
        if self.rate_per_sec.is_nan() || self.rate_per_sec <= 0.0 {
            return bad("rate_per_sec must be > 0");
        }
        if !(0.0..=1.0).contains(&self.alarm_ratio) || !(0.0..=1.0).contains(&self.fault_ratio) {
            return bad("alarm_ratio and fault_ratio must be within 0..=1");
        }
        if self.alarm_run == 0 {
            return bad("alarm_run must be at least 1");
        }
        if self.client_id.is_empty() {
            return bad("client_id must not be empty");
        }
        Ok(())
    }
}

/// What a fleet run did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FleetStats {
    /// Messages handed to the MQTT client.
    pub published: u64,
    /// Of those, in the `alarm` state.
    pub alarms: u64,
    /// Of those, in the `fault` state.
    pub faults: u64,
    /// QoS 1: PubAcks received; QoS 0: publishes written to the socket.
    pub acked: u64,
    /// From start to the end of the flush.
    pub elapsed: Duration,
}

#[derive(Serialize)]
struct Payload<'a> {
    device_time: i64,
    state: &'a str,
    reading: f64,
    seq: u64,
    battery: u64,
    rssi: i64,
    net: &'static str,
    fw: &'static str,
    hw: &'static str,
}

/// The JSON payload of one sensor message (about 150 bytes). `reading` is rounded to three
/// decimals (a non-finite reading is written as `null`); `battery` and `rssi` are derived
/// from `seq`.
pub fn payload(device_ms: i64, state: &str, reading: f64, seq: u64) -> Vec<u8> {
    let p = Payload {
        device_time: device_ms,
        state,
        reading: (reading * 1000.0).round() / 1000.0,
        seq,
        battery: 100 - (seq / 2000) % 40,
        rssi: -55 - (seq.wrapping_mul(7) % 31) as i64,
        net: "nb-iot",
        fw: "gs-sensor-2.4.1",
        hw: "GS-IOT-4G",
    };
    serde_json::to_vec(&p).unwrap_or_default()
}

/// Publishes readings of `sensors` round-robin at `cfg.rate_per_sec` until `cancel` fires or
/// `cfg.max_messages` are sent, then waits up to `cfg.flush_timeout` for acknowledgements.
///
/// Connection failures are logged and retried (the client buffers, then blocks); only an
/// invalid configuration or a dead client is an error.
pub async fn run_fleet(
    cfg: FleetConfig,
    sensors: Vec<DemoSensor>,
    cancel: CancellationToken,
) -> Result<FleetStats, SimError> {
    cfg.validate()?;
    if sensors.is_empty() {
        return Err(SimError::InvalidConfig("fleet: no sensors".into()));
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let topics: Vec<String> = sensors.iter().map(DemoSensor::topic).collect();
    let mut sims: Vec<SensorSim> = sensors
        .iter()
        .map(|s| SensorSim::new(&s.kind, &mut rng))
        .collect();

    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_inflight(200)
        .set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, eventloop) = AsyncClient::new(opts, 1000);
    let acked = Arc::new(AtomicU64::new(0));
    let loop_stop = CancellationToken::new();
    let driver = tokio::spawn(drive(eventloop, cfg.qos, acked.clone(), loop_stop.clone()));

    let start = Instant::now();
    let mut stats = FleetStats::default();
    let paced = cfg.rate_per_sec.is_finite();
    while cfg.max_messages.is_none_or(|max| stats.published < max) && !cancel.is_cancelled() {
        if paced {
            let due = start + Duration::from_secs_f64(stats.published as f64 / cfg.rate_per_sec);
            if due > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = cancel.cancelled() => break,
                }
            }
        }
        let i = (stats.published % sims.len() as u64) as usize;
        let s = sims[i].next(&mut rng, cfg.alarm_ratio, cfg.fault_ratio, cfg.alarm_run);
        let body = payload(now_unix_ms(), s.state, s.reading, s.seq);
        tokio::select! {
            r = client.publish(topics[i].as_str(), cfg.qos, false, body) => r?,
            _ = cancel.cancelled() => break,
        }
        stats.published += 1;
        stats.alarms += u64::from(s.state == "alarm");
        stats.faults += u64::from(s.state == "fault");
    }

    let deadline = Instant::now() + cfg.flush_timeout;
    while acked.load(Ordering::Relaxed) < stats.published && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stats.acked = acked.load(Ordering::Relaxed);
    if stats.acked < stats.published {
        tracing::warn!(
            published = stats.published,
            acked = stats.acked,
            "fleet: not all messages acknowledged"
        );
    }
    // If the request channel is full or closed, the stop token below ends the loop instead.
    let _ = client.try_disconnect();
    let mut driver = driver;
    let joined = match tokio::time::timeout(Duration::from_secs(2), &mut driver).await {
        Ok(joined) => joined,
        Err(_) => {
            loop_stop.cancel();
            driver.await
        }
    };
    joined?;
    stats.elapsed = start.elapsed();
    tracing::info!(?stats, "fleet stopped");
    Ok(stats)
}

/// Polls the event loop: counts acknowledgements, logs and backs off on connection errors,
/// ends after the Disconnect is written or when `stop` fires.
async fn drive(
    mut eventloop: rumqttc::EventLoop,
    qos: QoS,
    acked: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let ev = tokio::select! {
            ev = eventloop.poll() => ev,
            _ = stop.cancelled() => return,
        };
        match ev {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                tracing::info!(code = ?ack.code, "fleet connected");
                backoff = Duration::from_millis(100);
            }
            Ok(Event::Incoming(Incoming::PubAck(_))) if qos != QoS::AtMostOnce => {
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == QoS::AtMostOnce => {
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::RequestsDone) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "fleet: MQTT connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_json_with_the_contract_fields() {
        let body = payload(1_732_345_678_901, "alarm", 7.123_456, 42);
        assert!((100..=200).contains(&body.len()), "{} bytes", body.len());
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(v["device_time"].as_i64(), Some(1_732_345_678_901));
        assert_eq!(v["state"].as_str(), Some("alarm"));
        assert_eq!(v["reading"].as_f64(), Some(7.123));
        assert_eq!(v["seq"].as_u64(), Some(42));
        let odd = payload(0, "we\"ird", f64::NAN, 0);
        let v: serde_json::Value = serde_json::from_slice(&odd).expect("escaped JSON");
        assert_eq!(v["state"].as_str(), Some("we\"ird"));
        assert!(v["reading"].is_null());
    }

    #[test]
    fn bad_config_is_rejected() {
        let mut cfg = FleetConfig::new("127.0.0.1", 1);
        cfg.rate_per_sec = 0.0;
        assert!(matches!(cfg.validate(), Err(SimError::InvalidConfig(_))));
        let mut cfg = FleetConfig::new("127.0.0.1", 1);
        cfg.alarm_ratio = 1.5;
        assert!(cfg.validate().is_err());
        assert!(FleetConfig::new("127.0.0.1", 1).validate().is_ok());
    }
}
