//! The sensor fleet against a real Mosquitto: every message arrives on the contract topic
//! with the contract payload, in order per sensor, with alarm runs.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use gridsight_sim::{broker::MosquittoBroker, load, run_fleet, DemoCity, FleetConfig};
use rumqttc::{AsyncClient, Event, Incoming, QoS};
use tokio_util::sync::CancellationToken;

const N: u64 = 120;

#[tokio::test]
async fn fleet_messages_reach_a_subscriber_with_contract_topics_and_payloads() {
    let broker = MosquittoBroker::start().await.expect("mosquitto starts");
    let (host, port) = (broker.host(), broker.port());
    let city = DemoCity::generate(11, 2, 3, 2);

    // Subscribe first and wait for the SubAck, so no message can be missed.
    let (sub, mut el) = AsyncClient::new(load::options("fleet-test-sub", host, port, true), 100);
    tokio::time::timeout(Duration::from_secs(5), async {
        load::connack(&mut el).await.expect("subscriber connects");
        sub.subscribe("gridsight/sensors/#", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        while !matches!(el.poll().await, Ok(Event::Incoming(Incoming::SubAck(_)))) {}
    })
    .await
    .expect("SubAck in time");

    let mut cfg = FleetConfig::new(host, port);
    cfg.client_id = "fleet-test".into();
    cfg.rate_per_sec = 400.0;
    cfg.alarm_ratio = 0.2;
    cfg.max_messages = Some(N);
    let fleet = tokio::spawn(run_fleet(
        cfg,
        city.sensors.clone(),
        CancellationToken::new(),
    ));

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while (got.len() as u64) < N {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, el.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::Publish(p)))) => got.push((p.topic, p.payload)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("subscriber connection failed: {e}"),
            Err(_) => panic!("only {} of {N} messages arrived", got.len()),
        }
    }
    let stats = fleet.await.expect("fleet task").expect("fleet run");
    assert_eq!(stats.published, N);
    assert_eq!(stats.acked, N, "every QoS 1 publish acknowledged");

    let sensors: HashMap<&str, _> = city.sensors.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut alarms = 0;
    let now = gridsight_sim::now_unix_ms();
    for (topic, body) in &got {
        let parts: Vec<&str> = topic.split('/').collect();
        assert_eq!(parts.len(), 5, "{topic}");
        assert_eq!(&parts[..2], ["gridsight", "sensors"], "{topic}");
        let s = sensors
            .get(parts[4])
            .unwrap_or_else(|| panic!("unknown sensor in {topic}"));
        assert_eq!(
            (parts[2], parts[3]),
            (s.grid_id.as_str(), s.kind.as_str()),
            "{topic}"
        );

        assert!(
            (100..=200).contains(&body.len()),
            "payload of {} bytes",
            body.len()
        );
        let v: serde_json::Value = serde_json::from_slice(body).expect("JSON payload");
        let t = v["device_time"]
            .as_i64()
            .expect("device_time is an integer");
        assert!(
            (now - 60_000..=now).contains(&t),
            "device_time {t} not recent"
        );
        let state = v["state"].as_str().expect("state is a string");
        assert!(["normal", "alarm", "fault"].contains(&state), "{state}");
        assert!(v["reading"].as_f64().is_some(), "reading is a number");
        alarms += usize::from(state == "alarm");
        let seq = v["seq"].as_u64().expect("seq");
        let prev = last_seq.insert(s.id.clone(), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "{} out of order", s.id);
    }
    assert_eq!(
        last_seq.len(),
        city.sensors.len(),
        "round-robin reaches every sensor"
    );
    assert!(alarms > 0, "some alarms at alarm_ratio 0.2");
}
