//! Bulk MQTT load for benchmarks and tests: build N demo messages, publish them at QoS 1 over
//! several connections (waiting for every PubAck), and prepare, drain or clear a persistent
//! subscriber session.
//!
//! Every function talks to the broker directly (no retry loop): the broker is expected to be
//! up, and any connection failure is an error.

use std::time::{Duration, Instant};

use rand::{rngs::StdRng, SeedableRng};
use rumqttc::{AsyncClient, ConnAck, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use tokio::task::JoinSet;

use crate::{city::DemoCity, fleet::payload, now_unix_ms, SensorSim, SimError};

/// Messages as `(topic, payload)`.
pub type Messages = Vec<(String, Vec<u8>)>;

/// `n` messages of the city's sensors, round-robin, with about `alarm_ratio` alarms (runs of
/// 3), 0.1% faults and consecutive device times; deterministic from `seed`.
pub fn demo_messages(city: &DemoCity, n: usize, alarm_ratio: f64, seed: u64) -> Messages {
    let mut rng = StdRng::seed_from_u64(seed);
    let topics: Vec<String> = city.sensors.iter().map(|s| s.topic()).collect();
    let mut sims: Vec<SensorSim> = city
        .sensors
        .iter()
        .map(|s| SensorSim::new(&s.kind, &mut rng))
        .collect();
    if sims.is_empty() {
        return Vec::new();
    }
    let t0 = now_unix_ms();
    (0..n)
        .map(|i| {
            let k = i % sims.len();
            let s = sims[k].next(&mut rng, alarm_ratio, 0.001, 3);
            (
                topics[k].clone(),
                payload(t0 + i as i64 / 100, s.state, s.reading, s.seq),
            )
        })
        .collect()
}

/// Connection options used by every function here: big packets, many in flight.
pub fn options(client_id: &str, host: &str, port: u16, clean_session: bool) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_clean_session(clean_session)
        .set_keep_alive(Duration::from_secs(60))
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(1000);
    o
}

/// Polls until the ConnAck (the first event) and returns it.
pub async fn connack(eventloop: &mut EventLoop) -> Result<ConnAck, SimError> {
    loop {
        if let Event::Incoming(Incoming::ConnAck(ack)) = eventloop.poll().await? {
            if ack.code != rumqttc::ConnectReturnCode::Success {
                return Err(SimError::MqttBroker(format!(
                    "connect refused: {:?}",
                    ack.code
                )));
            }
            return Ok(ack);
        }
    }
}

/// Sends DISCONNECT and polls until it is written.
pub async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) -> Result<(), SimError> {
    client.disconnect().await?;
    loop {
        if let Event::Outgoing(Outgoing::Disconnect) = eventloop.poll().await? {
            return Ok(());
        }
    }
}

async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, SimError>>,
) -> Result<T, SimError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| SimError::timeout(what, limit))?
}

/// Connects `client_id` with a persistent session (clean_session = false), subscribes
/// `filter` at `qos`, waits for the SubAck and disconnects: from then on the broker queues
/// matching messages for that client.
pub async fn prepare_session(
    host: &str,
    port: u16,
    client_id: &str,
    filter: &str,
    qos: QoS,
    limit: Duration,
) -> Result<(), SimError> {
    let (client, mut el) = AsyncClient::new(options(client_id, host, port, false), 10);
    within(limit, "subscribe", async {
        connack(&mut el).await?;
        client.subscribe(filter, qos).await?;
        loop {
            if let Event::Incoming(Incoming::SubAck(ack)) = el.poll().await? {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    return Err(SimError::MqttBroker(format!(
                        "subscription to {filter} refused"
                    )));
                }
                break;
            }
        }
        disconnect(&client, &mut el).await
    })
    .await
}

/// Connects `client_id` with clean_session = true and disconnects, which discards any
/// persistent session (and queued messages) the broker held for it.
pub async fn clear_session(
    host: &str,
    port: u16,
    client_id: &str,
    limit: Duration,
) -> Result<(), SimError> {
    let (client, mut el) = AsyncClient::new(options(client_id, host, port, true), 10);
    within(limit, "session clean-up", async {
        connack(&mut el).await?;
        disconnect(&client, &mut el).await
    })
    .await
}

/// How long publishing took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishReport {
    /// Messages acknowledged by the broker.
    pub published: u64,
    /// From the first connect to the last PubAck.
    pub elapsed: Duration,
}

/// Publishes `messages` at QoS 1 over `connections` connections (a topic always goes over
/// the same one, so each sensor's messages stay in order) and returns once the broker has
/// acknowledged every one.
pub async fn publish_all(
    host: &str,
    port: u16,
    client_prefix: &str,
    messages: Messages,
    connections: usize,
    limit: Duration,
) -> Result<PublishReport, SimError> {
    let k = connections.max(1);
    let mut shards: Vec<Messages> = vec![Vec::new(); k];
    for m in messages {
        let h = m.0.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        shards[(h % k as u64) as usize].push(m);
    }
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let id = format!("{client_prefix}-{i}");
        let opts = options(&id, host, port, true);
        set.spawn(publish_shard(opts, shard));
    }
    let published = within(limit, "PubAcks of every message", async {
        let mut total = 0;
        while let Some(r) = set.join_next().await {
            total += r??;
        }
        Ok(total)
    })
    .await?;
    Ok(PublishReport {
        published,
        elapsed: start.elapsed(),
    })
}

async fn publish_shard(opts: MqttOptions, shard: Messages) -> Result<u64, SimError> {
    let expected = shard.len() as u64;
    if expected == 0 {
        return Ok(0);
    }
    let (client, mut el) = AsyncClient::new(opts, 1000);
    connack(&mut el).await?;
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            for (topic, body) in shard {
                client.publish(topic, QoS::AtLeastOnce, false, body).await?;
            }
            Ok::<(), SimError>(())
        })
    };
    let mut acked = 0;
    while acked < expected {
        if let Event::Incoming(Incoming::PubAck(_)) = el.poll().await? {
            acked += 1;
        }
    }
    publisher.await??;
    disconnect(&client, &mut el).await?;
    Ok(acked)
}

/// How a drain went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrainReport {
    /// Messages received.
    pub received: u64,
    /// From starting to connect to the last expected message.
    pub elapsed: Duration,
    /// From starting to connect to the first message.
    pub first_after: Option<Duration>,
}

/// Reconnects the persistent session `client_id` (which must still be present on the
/// broker) and receives until `expected` messages arrived; acknowledgements are automatic.
pub async fn drain_session(
    host: &str,
    port: u16,
    client_id: &str,
    expected: u64,
    limit: Duration,
) -> Result<DrainReport, SimError> {
    let (client, mut el) = AsyncClient::new(options(client_id, host, port, false), 1000);
    let start = Instant::now();
    let mut received = 0u64;
    let mut first_after = None;
    let work = async {
        let ack = connack(&mut el).await?;
        if !ack.session_present {
            return Err(SimError::MqttBroker(format!(
                "no persistent session for {client_id}"
            )));
        }
        while received < expected {
            if let Event::Incoming(Incoming::Publish(_)) = el.poll().await? {
                received += 1;
                first_after.get_or_insert_with(|| start.elapsed());
            }
        }
        Ok(start.elapsed())
    };
    let elapsed = tokio::time::timeout(limit, work).await.map_err(|_| {
        SimError::timeout(
            format!("{expected} messages on {client_id} (got {received})"),
            limit,
        )
    })??;
    disconnect(&client, &mut el).await?;
    Ok(DrainReport {
        received,
        elapsed,
        first_after,
    })
}
