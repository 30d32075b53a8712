//! Alarm → alert latency: MQTT publish of an alarm → `OPENED` change on an
//! `AlertService.Subscribe` stream.
//!
//! Publishes steady traffic at a given rate in which every `alarm_every`-th message is an
//! alarm from a new sensor `lat-{n}` (kind `smoke`, a real community grid), so each should
//! open its own alert; the publish instant of each is matched with the arrival of the
//! `OPENED` change whose evidence names that sensor (`Alert.evidence[].sensor_event`).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use gridsight_proto::v1::{
    alert_service_client::AlertServiceClient, evidence, subscribe_alerts_response, ChangeKind,
    SubscribeAlertsRequest,
};
use rand::{rngs::StdRng, SeedableRng};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;

use crate::{
    fleet::payload, load, now_unix_ms, reporter::BearerAuth, DemoCity, SensorSim, SimError,
};

/// Prefix of the ids of the latency probe sensors.
pub const PROBE_PREFIX: &str = "lat-";

/// Where to publish and subscribe, and how much.
#[derive(Debug, Clone)]
pub struct LatencyConfig {
    /// Broker host.
    pub mqtt_host: String,
    /// Broker port.
    pub mqtt_port: u16,
    /// The daemon's gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub grpc_endpoint: String,
    /// Bearer token allowed to subscribe to alerts.
    pub token: String,
    /// Messages per second (normal traffic and alarms together).
    pub rate_per_sec: f64,
    /// How long to publish.
    pub duration: Duration,
    /// One alarm every this many messages.
    pub alarm_every: u64,
    /// Connections for the normal traffic (the alarms get one more of their own).
    pub publishers: usize,
    /// How long to wait for the last OPENED changes after publishing.
    pub settle: Duration,
}

/// What the phase measured.
#[derive(Debug, Clone, Default)]
pub struct LatencyReport {
    /// Messages published.
    pub published: u64,
    /// How long publishing took (`published / publish_time` is the rate achieved).
    pub publish_time: Duration,
    /// Worst delay of a publish behind its schedule (the publishers could not keep up).
    pub max_lag: Duration,
    /// Open alerts in the snapshot at the start.
    pub snapshot: u64,
    /// Alarms from new sensors published.
    pub alarms: usize,
    /// Alarms whose OPENED change arrived.
    pub matched: usize,
    /// Alarms seen only in other change kinds (folded into an existing alert).
    pub other_kinds: usize,
    /// Sorted latencies of the matched alarms.
    pub latencies: Vec<Duration>,
    /// Sorted wall-clock milliseconds from publish to the daemon's receive time (the
    /// alert's `first_seen`): the broker's share.
    pub to_daemon_ms: Vec<i64>,
    /// Sorted wall-clock milliseconds from the daemon's receive time to the subscriber:
    /// the daemon's share (parse, correlate, commit, stream).
    pub in_daemon_ms: Vec<i64>,
}

impl LatencyReport {
    /// The `q`-quantile (0..=1) by nearest rank; zero when nothing matched.
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1]
    }
}

/// Subscribes (snapshot, then live), publishes for `cfg.duration`, waits up to
/// `cfg.settle` for the last OPENED changes, and matches them with the alarms.
pub async fn run_latency(cfg: &LatencyConfig, city: &DemoCity) -> Result<LatencyReport, SimError> {
    let rate = cfg.rate_per_sec;
    if rate.is_nan() || rate <= 0.0 || cfg.alarm_every == 0 {
        return Err(SimError::InvalidConfig(
            "latency: rate and alarm_every must be > 0".into(),
        ));
    }
    let grids: Vec<&str> = city.communities().map(|g| g.id.as_str()).collect();
    if grids.is_empty() || city.sensors.is_empty() {
        return Err(SimError::InvalidConfig(
            "latency: the city has no communities or sensors".into(),
        ));
    }
    let (snapshot, mut rx, reader) = subscribe(cfg).await?;

    // Normal traffic over `publishers` connections (a sensor always on the same one); the
    // alarms on a connection of their own, so they do not queue behind the bulk traffic in
    // the client.
    let mut clients = Vec::new();
    let mut drivers = Vec::new();
    for k in 0..=cfg.publishers.max(1) {
        let (c, d) = publisher(cfg, &format!("bench-latency-pub-{k}")).await?;
        clients.push(c);
        drivers.push(d);
    }
    let Some((alarm_client, bulk)) = clients.split_first() else {
        return Err(SimError::InvalidConfig("latency: no publishers".into()));
    };
    let mut rng = StdRng::seed_from_u64(99);
    let mut sims: Vec<SensorSim> = city
        .sensors
        .iter()
        .map(|s| SensorSim::new(&s.kind, &mut rng))
        .collect();
    let topics: Vec<String> = city.sensors.iter().map(|s| s.topic()).collect();
    let total = (rate * cfg.duration.as_secs_f64()).round().max(1.0) as u64;
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut sent_wall: HashMap<String, i64> = HashMap::new();
    let mut max_lag = Duration::ZERO;
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            max_lag = max_lag.max(now - due);
        }
        if let Some(d) = drivers.iter_mut().find(|d| d.is_finished()) {
            reader.abort();
            return Err(match d.await {
                Ok(e) => SimError::from(e),
                Err(e) => SimError::from(e),
            });
        }
        if i % cfg.alarm_every == cfg.alarm_every - 1 {
            let n = sent_at.len();
            let id = format!("{PROBE_PREFIX}{n}");
            let grid = grids[n % grids.len()];
            let topic = format!("{}/{grid}/smoke/{id}", crate::TOPIC_PREFIX);
            let body = payload(now_unix_ms(), "alarm", 8.5, 1);
            sent_wall.insert(id.clone(), now_unix_ms());
            sent_at.insert(id, Instant::now());
            alarm_client
                .publish(topic, QoS::AtLeastOnce, false, body)
                .await?;
        } else {
            let k = (i % sims.len() as u64) as usize;
            let s = sims[k].next(&mut rng, 0.0, 0.0, 1);
            let body = payload(now_unix_ms(), s.state, s.reading, s.seq);
            bulk[k % bulk.len()]
                .publish(topics[k].as_str(), QoS::AtLeastOnce, false, body)
                .await?;
        }
    }
    let publish_time = start.elapsed();

    let mut opened_at: HashMap<String, Instant> = HashMap::new();
    let mut walls: HashMap<String, (i64, i64)> = HashMap::new();
    let mut others: HashSet<String> = HashSet::new();
    let deadline = tokio::time::Instant::now() + cfg.settle;
    // Until every alarm was seen (opened, or folded into another alert) or `settle` passes.
    let seen = |o: &HashMap<String, Instant>, x: &HashSet<String>| {
        o.len() + x.iter().filter(|id| !o.contains_key(*id)).count()
    };
    while seen(&opened_at, &others) < sent_at.len() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((id, true, at, first_seen, recv))) => {
                walls.entry(id.clone()).or_insert((first_seen, recv));
                opened_at.entry(id).or_insert(at);
            }
            Ok(Some((id, false, ..))) => {
                others.insert(id);
            }
            Ok(None) | Err(_) => break,
        }
    }
    reader.abort();
    for (c, d) in clients.iter().zip(&drivers) {
        let _ = c.try_disconnect();
        d.abort();
    }

    let mut latencies: Vec<Duration> = opened_at
        .iter()
        .filter_map(|(id, at)| sent_at.get(id).map(|s| at.saturating_duration_since(*s)))
        .collect();
    latencies.sort();
    let mut to_daemon_ms: Vec<i64> = Vec::new();
    let mut in_daemon_ms: Vec<i64> = Vec::new();
    for (id, (first_seen, recv)) in &walls {
        if let Some(sent) = sent_wall.get(id) {
            to_daemon_ms.push(first_seen - sent);
            in_daemon_ms.push(recv - first_seen);
        }
    }
    to_daemon_ms.sort_unstable();
    in_daemon_ms.sort_unstable();
    Ok(LatencyReport {
        published: total,
        publish_time,
        max_lag,
        snapshot,
        alarms: sent_at.len(),
        matched: latencies.len(),
        other_kinds: others
            .iter()
            .filter(|id| !opened_at.contains_key(*id))
            .count(),
        latencies,
        to_daemon_ms,
        in_daemon_ms,
    })
}

/// A connected QoS 1 publisher and the task driving its event loop (which ends with the
/// connection error, if any).
async fn publisher(
    cfg: &LatencyConfig,
    id: &str,
) -> Result<
    (
        AsyncClient,
        tokio::task::JoinHandle<rumqttc::ConnectionError>,
    ),
    SimError,
> {
    let opts = load::options(id, &cfg.mqtt_host, cfg.mqtt_port, true);
    let (client, mut el) = AsyncClient::new(opts, 1000);
    load::connack(&mut el).await?;
    let driver = tokio::spawn(async move {
        loop {
            if let Err(e) = el.poll().await {
                return e;
            }
        }
    });
    Ok((client, driver))
}

/// A probe sensor id seen in a change: (sensor id, whether the change was OPENED, when).
/// Sensor id, whether OPENED, arrival instant, the alert's first_seen (ms) and the wall
/// clock at arrival (ms).
type Seen = (String, bool, Instant, i64, i64);

/// Opens the alert stream, reads the snapshot up to `snapshot_end` (within 30 s) and
/// spawns a reader that reports every probe sensor id in later changes.
async fn subscribe(
    cfg: &LatencyConfig,
) -> Result<
    (
        u64,
        mpsc::UnboundedReceiver<Seen>,
        tokio::task::JoinHandle<()>,
    ),
    SimError,
> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(cfg.grpc_endpoint.clone()).map_err(|source| {
            SimError::InvalidEndpoint {
                endpoint: cfg.grpc_endpoint.clone(),
                source,
            }
        })?;
    let channel = endpoint.connect().await.map_err(|e| SimError::Startup {
        what: format!("gRPC connection to {}", cfg.grpc_endpoint),
        detail: e.to_string(),
    })?;
    let mut alerts = AlertServiceClient::with_interceptor(channel, BearerAuth::new(&cfg.token)?);
    let mut stream = alerts
        .subscribe(SubscribeAlertsRequest::default())
        .await?
        .into_inner();

    let limit = Duration::from_secs(30);
    let snapshot = tokio::time::timeout(limit, async {
        let mut n = 0u64;
        loop {
            match stream.message().await? {
                Some(m) => match m.event {
                    Some(subscribe_alerts_response::Event::SnapshotEnd(_)) => return Ok(n),
                    Some(subscribe_alerts_response::Event::Change(_)) => n += 1,
                    _ => {}
                },
                None => {
                    return Err(SimError::Grpc(Box::new(tonic::Status::aborted(
                        "stream ended before snapshot_end",
                    ))))
                }
            }
        }
    })
    .await
    .map_err(|_| SimError::timeout("snapshot_end on the alert stream", limit))??;
    tracing::info!(snapshot, "alert stream live");

    let (tx, rx) = mpsc::unbounded_channel::<Seen>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(m)) = stream.message().await {
            let Some(subscribe_alerts_response::Event::Change(change)) = m.event else {
                continue;
            };
            let at = Instant::now();
            let recv = now_unix_ms();
            let opened = change.kind == ChangeKind::Opened as i32;
            let first_seen = change
                .alert
                .as_ref()
                .and_then(|a| a.first_seen.as_ref())
                .map(gridsight_proto::millis_from_ts)
                .unwrap_or(0);
            for e in change.alert.iter().flat_map(|a| a.evidence.iter()) {
                if let Some(evidence::Item::SensorEvent(s)) = &e.item {
                    if s.sensor_id.starts_with(PROBE_PREFIX)
                        && tx
                            .send((s.sensor_id.clone(), opened, at, first_seen, recv))
                            .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    Ok((snapshot, rx, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut r = LatencyReport::default();
        assert_eq!(r.quantile(0.5), Duration::ZERO);
        r.latencies = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(r.quantile(0.5), Duration::from_millis(50));
        assert_eq!(r.quantile(0.99), Duration::from_millis(99));
        assert_eq!(r.quantile(1.0), Duration::from_millis(100));
        assert_eq!(r.quantile(0.0), Duration::from_millis(1));
    }
}
