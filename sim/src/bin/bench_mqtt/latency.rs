//! Latency phase: MQTT alarm publish → `OPENED` change on an `AlertService.Subscribe` stream.
//!
//! Publishes steady traffic at a given rate in which every 50th message is an alarm from a
//! new sensor `lat-{n}` (kind `smoke`, a real community grid), so each should open its own
//! alert; the publish instant of each is matched with the arrival of the `OPENED` change
//! whose evidence names that sensor.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use gridsight_proto::v1::{
    alert_service_client::AlertServiceClient, evidence, subscribe_alerts_response, ChangeKind,
    SubscribeAlertsRequest,
};
use gridsight_sim::{fleet::payload, load, now_unix_ms, reporter::BearerAuth, DemoCity, SensorSim};
use rand::{rngs::StdRng, SeedableRng};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;

/// One alarm in every `ALARM_EVERY` messages.
const ALARM_EVERY: u64 = 50;

/// What the phase measured.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    /// Messages published.
    pub published: u64,
    /// Alarms from new sensors published.
    pub alarms: usize,
    /// Alarms whose OPENED change arrived.
    pub matched: usize,
    /// Alarms seen only in other change kinds (folded into an existing alert).
    pub other_kinds: usize,
    /// Sorted latencies of the matched alarms.
    pub latencies: Vec<Duration>,
}

impl LatencyReport {
    /// The `q`-quantile (0..=1) by nearest rank; zero when nothing matched.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1]
    }
}

/// Where to publish and subscribe.
pub struct Target<'a> {
    pub mqtt_host: &'a str,
    pub mqtt_port: u16,
    pub grpc_port: u16,
    pub token: &'a str,
}

/// Runs the phase: subscribe (snapshot, then live), publish at `rate` for `secs`, wait up
/// to 10 s more for the last OPENED changes.
pub async fn run(t: &Target<'_>, city: &DemoCity, rate: f64, secs: f64) -> Result<LatencyReport> {
    if rate.is_nan() || rate <= 0.0 || secs.is_nan() || secs <= 0.0 {
        bail!("latency phase needs a positive rate and duration (rate {rate}, secs {secs})");
    }
    let grids: Vec<&str> = city.communities().map(|g| g.id.as_str()).collect();
    if grids.is_empty() || city.sensors.is_empty() {
        bail!("latency phase needs a city with communities and sensors");
    }
    let endpoint = format!("http://127.0.0.1:{}", t.grpc_port);
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let mut alerts = AlertServiceClient::with_interceptor(channel, BearerAuth::new(t.token)?);
    let mut stream = alerts
        .subscribe(SubscribeAlertsRequest::default())
        .await
        .context("AlertService.Subscribe")?
        .into_inner();

    // Snapshot first: everything up to snapshot_end is old news.
    let snapshot = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0u64;
        loop {
            match stream.message().await? {
                Some(m)
                    if matches!(
                        m.event,
                        Some(subscribe_alerts_response::Event::SnapshotEnd(_))
                    ) =>
                {
                    return Ok::<u64, tonic::Status>(n)
                }
                Some(_) => n += 1,
                None => return Err(tonic::Status::aborted("stream ended before snapshot_end")),
            }
        }
    })
    .await
    .context("no snapshot_end within 30 s")??;
    tracing::info!(snapshot, "alert stream live");

    let (tx, mut rx) = mpsc::unbounded_channel::<(String, bool, Instant)>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(m)) = stream.message().await {
            let Some(subscribe_alerts_response::Event::Change(change)) = m.event else {
                continue;
            };
            let at = Instant::now();
            let opened = change.kind == ChangeKind::Opened as i32;
            for e in change.alert.iter().flat_map(|a| a.evidence.iter()) {
                if let Some(evidence::Item::SensorEvent(s)) = &e.item {
                    if s.sensor_id.starts_with("lat-")
                        && tx.send((s.sensor_id.clone(), opened, at)).is_err()
                    {
                        return;
                    }
                }
            }
        }
    });

    let opts = load::options("bench-latency-pub", t.mqtt_host, t.mqtt_port, true);
    let (client, mut el) = AsyncClient::new(opts, 10_000);
    load::connack(&mut el).await?;
    let driver = tokio::spawn(async move {
        loop {
            if let Err(e) = el.poll().await {
                return e;
            }
        }
    });
    let mut rng = StdRng::seed_from_u64(99);
    let mut sims: Vec<SensorSim> = city
        .sensors
        .iter()
        .map(|s| SensorSim::new(&s.kind, &mut rng))
        .collect();
    let topics: Vec<String> = city.sensors.iter().map(|s| s.topic()).collect();
    let total = (rate * secs).round().max(1.0) as u64;
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if driver.is_finished() {
            bail!("the latency publisher lost its MQTT connection");
        }
        if i % ALARM_EVERY == ALARM_EVERY - 1 {
            let n = sent_at.len();
            let id = format!("lat-{n}");
            let topic = format!("gridsight/sensors/{}/smoke/{id}", grids[n % grids.len()]);
            let body = payload(now_unix_ms(), "alarm", 8.5, 1);
            sent_at.insert(id, Instant::now());
            client.publish(topic, QoS::AtLeastOnce, false, body).await?;
        } else {
            let k = (i % sims.len() as u64) as usize;
            let s = sims[k].next(&mut rng, 0.0, 0.0, 1);
            let body = payload(now_unix_ms(), s.state, s.reading, s.seq);
            client
                .publish(topics[k].as_str(), QoS::AtLeastOnce, false, body)
                .await?;
        }
    }

    let mut opened_at: HashMap<String, Instant> = HashMap::new();
    let mut others: HashSet<String> = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while opened_at.len() < sent_at.len() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((id, true, at))) => {
                opened_at.entry(id).or_insert(at);
            }
            Ok(Some((id, false, _))) => {
                others.insert(id);
            }
            Ok(None) | Err(_) => break,
        }
    }
    reader.abort();
    let _ = client.try_disconnect();
    driver.abort();

    let mut latencies: Vec<Duration> = opened_at
        .iter()
        .filter_map(|(id, at)| sent_at.get(id).map(|s| at.saturating_duration_since(*s)))
        .collect();
    latencies.sort();
    Ok(LatencyReport {
        published: total,
        alarms: sent_at.len(),
        matched: latencies.len(),
        other_kinds: others
            .iter()
            .filter(|id| !opened_at.contains_key(*id))
            .count(),
        latencies,
    })
}
