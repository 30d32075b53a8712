//! End to end: the real `gridsight` binary, a real Mosquitto on a free port, a real gRPC
//! client. Each test asserts on what a subscriber, an integrator or an operator would see.

mod common;

use std::time::Duration;

use common::*;
use gridsight_proto::v1 as pb;

const T: Duration = Duration::from_secs(10);

/// A subscription; a fresh one (no resume cursor) is read past its snapshot, which must be
/// empty here, so what the test sends afterwards shows as live changes, never folded into
/// a snapshot the server took a moment late.
async fn subscribe(
    d: &Daemon,
    r: pb::SubscribeAlertsRequest,
) -> tonic::Streaming<pb::SubscribeAlertsResponse> {
    let fresh = r.resume_after_seq == 0;
    let mut s = d
        .alerts()
        .await
        .subscribe(req(r, VIEWER))
        .await
        .expect("subscribe")
        .into_inner();
    if fresh {
        let (open, _) = read_snapshot(&mut s, T).await;
        assert!(open.is_empty(), "no open alerts yet: {open:?}");
    }
    s
}

fn report(key: &str, grid: &str) -> pb::ReportIncidentRequest {
    pb::ReportIncidentRequest {
        idempotency_key: key.into(),
        category: pb::IncidentCategory::SafetyHazard as i32,
        item_code: "AQ-0301".into(),
        description: "Smoke coming out of a shop on Dipu Road".into(),
        grid_id: grid.into(),
        location: Some(pb::LatLon {
            lat: 30.63,
            lon: 119.67,
        }),
        reporter_id: "rep-0042".into(),
        photo_urls: vec!["https://photos.example/1.jpg".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensor_alarm_reaches_subscriber_and_repeat_folds_into_it() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(
        dir.path(),
        &DaemonOpts::new(Some(broker.port)),
    ))
    .await;
    let mut s = subscribe(&d, Default::default()).await;
    let now = now_ms();
    publish_all(
        broker.port,
        vec![(topic("a-1", "smoke", "smk-1"), payload(now, "alarm", 0.8))],
    )
    .await;
    let seen = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Opened as i32).await;
    let opened = seen.last().unwrap().alert.clone().unwrap();
    assert_eq!(opened.grid_id, "a-1");
    assert_eq!(opened.count, 1);
    assert_eq!(sensors_of(&opened), vec!["smk-1"]);
    assert_eq!(opened.severity, pb::Severity::Major as i32);

    publish_all(
        broker.port,
        vec![(
            topic("a-1", "smoke", "smk-1"),
            payload(now + 1000, "alarm", 0.9),
        )],
    )
    .await;
    let seen = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Updated as i32).await;
    let updated = seen.last().unwrap().alert.clone().unwrap();
    assert_eq!(updated.id, opened.id, "a repeat never opens a second alert");
    assert_eq!(updated.count, 2);
    assert!(updated.seq > opened.seq);

    let open = d
        .alerts()
        .await
        .list(req(
            pb::ListAlertsRequest {
                status: pb::AlertStatus::Open as i32,
                ..Default::default()
            },
            VIEWER,
        ))
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(open.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_and_sensor_alarm_in_one_grid_become_one_alert() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(
        dir.path(),
        &DaemonOpts::new(Some(broker.port)),
    ))
    .await;
    let mut s = subscribe(
        &d,
        pb::SubscribeAlertsRequest {
            grid_ids: vec!["town-a".into()],
            ..Default::default()
        },
    )
    .await;
    let r = d
        .incidents()
        .await
        .report(req(report("k-1", "a-2"), REPORTER))
        .await
        .unwrap()
        .into_inner();
    let inc = r.incident.unwrap();
    assert!(inc.id.starts_with("INC-"));
    assert!(!r.duplicate);
    let first = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Opened as i32).await;
    let alert = first.last().unwrap().alert.clone().unwrap();
    assert_eq!(alert.severity, pb::Severity::Minor as i32);

    publish_all(
        broker.port,
        vec![(
            topic("a-2", "smoke", "smk-9"),
            payload(now_ms(), "alarm", 0.7),
        )],
    )
    .await;
    let seen = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Updated as i32).await;
    let joined = seen.last().unwrap().alert.clone().unwrap();
    assert_eq!(joined.id, alert.id, "one alert, not two");
    assert_eq!(joined.evidence.len(), 2);
    assert!(joined
        .evidence
        .iter()
        .any(|e| matches!(&e.item, Some(pb::evidence::Item::Incident(i)) if i.id == inc.id)));
    assert_eq!(sensors_of(&joined), vec!["smk-9"]);
    assert_eq!(
        joined.severity,
        pb::Severity::Critical as i32,
        "major smoke + report, raised one step"
    );
    assert_eq!(joined.count, 2);

    // Same idempotency key: the same incident back, nothing new.
    let again = d
        .incidents()
        .await
        .report(req(report("k-1", "a-2"), REPORTER))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.incident.unwrap().id, inc.id);
    let got = d
        .incidents()
        .await
        .get(req(pb::GetIncidentRequest { id: inc.id.clone() }, VIEWER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.alert_id, alert.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_dead_lettered_and_good_ones_behind_them_go_through() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(
        dir.path(),
        &DaemonOpts::new(Some(broker.port)),
    ))
    .await;
    let mut s = subscribe(&d, Default::default()).await;
    let t = topic("b-1", "gas", "gas-1");
    publish_all(
        broker.port,
        vec![
            (t.clone(), b"{not json".to_vec()),
            (t.clone(), br#"{"state": "alarm"}"#.to_vec()),
            (
                t.clone(),
                br#"{"device_time": 1, "state": "alarm", "reading": "high"}"#.to_vec(),
            ),
            (topic("nowhere", "gas", "gas-1"), payload(1, "alarm", 1.0)),
            (t.clone(), vec![b'x'; 20_000]),
            (t.clone(), payload(now_ms(), "alarm", 3.0)),
        ],
    )
    .await;
    let seen = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Opened as i32).await;
    assert_eq!(
        sensors_of(seen.last().unwrap().alert.as_ref().unwrap()),
        vec!["gas-1"]
    );
    for (reason, n) in [
        ("bad_json", 1.0),
        ("missing_field", 1.0),
        ("wrong_type", 1.0),
        ("unknown_grid", 1.0),
        ("oversized", 1.0),
    ] {
        let got = d.metric(&format!(
            "gridsight_mqtt_messages_rejected_total{{reason=\"{reason}\"}}"
        ));
        assert_eq!(got, n, "rejected {reason}");
    }
    let (code, body) = http_get(d.http, "/api/dead-letters", Some(VIEWER));
    assert_eq!(code, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let errors: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.starts_with("reading:")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("device_time:")),
        "{errors:?}"
    );
    // Everything was acknowledged (nothing left for redelivery), and the daemon is alive.
    assert_eq!(d.metric("gridsight_mqtt_messages_acked_total"), 6.0);
    assert_eq!(http_get(d.http, "/healthz", None).0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_seq_gets_exactly_the_missed_changes() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(
        dir.path(),
        &DaemonOpts::new(Some(broker.port)),
    ))
    .await;
    let mut s = subscribe(&d, Default::default()).await;
    let now = now_ms();
    publish_all(
        broker.port,
        vec![(topic("a-1", "smoke", "s-0"), payload(now, "alarm", 1.0))],
    )
    .await;
    let seen = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Opened as i32).await;
    let cursor = seen.last().unwrap().seq;
    drop(s);

    // While disconnected: 3 new alerts, 2 repeats, an acknowledge.
    let mut msgs = Vec::new();
    for i in 1..=3 {
        msgs.push((
            topic("b-1", "water_level", &format!("w-{i}")),
            payload(now + i, "alarm", 2.0),
        ));
    }
    msgs.push((
        topic("a-1", "smoke", "s-0"),
        payload(now + 10, "alarm", 1.1),
    ));
    msgs.push((
        topic("a-1", "smoke", "s-0"),
        payload(now + 20, "alarm", 1.2),
    ));
    publish_all(broker.port, msgs).await;
    let mut client = d.alerts().await;
    wait_for("the 3 new alerts", T, || async {
        (d.metric("gridsight_alerts_opened_total") >= 4.0).then_some(())
    })
    .await;
    let first_id = seen.last().unwrap().alert.as_ref().unwrap().id.clone();
    // Both repeats folded (their updates are coalesced: one or two changes, depending on
    // when they arrive within update_interval_ms).
    let first = wait_for("the two repeats folded and stored", T, || {
        let mut client = client.clone();
        let id = first_id.clone();
        async move {
            let a = client
                .get(req(pb::GetAlertRequest { id }, VIEWER))
                .await
                .ok()?
                .into_inner();
            (a.count == 3).then_some(a)
        }
    })
    .await;
    let acked = client
        .acknowledge(req(
            pb::AcknowledgeAlertRequest {
                id: first.id.clone(),
                expected_version: first.version,
                note: "on it".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let last_seq = acked.seq;
    assert!(
        last_seq >= cursor + 5,
        "3 opens, ≥ 1 update, the acknowledge"
    );

    let mut s = subscribe(
        &d,
        pb::SubscribeAlertsRequest {
            resume_after_seq: cursor,
            ..Default::default()
        },
    )
    .await;
    let missed = read_until(&mut s, T, |c| c.seq == last_seq).await;
    let seqs: Vec<u64> = missed.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        ((cursor + 1)..=last_seq).collect::<Vec<_>>(),
        "no gap, no duplicate, no snapshot"
    );
    assert_eq!(
        missed.last().unwrap().kind,
        pb::ChangeKind::Acknowledged as i32
    );
    let kinds = |k: pb::ChangeKind| missed.iter().filter(|c| c.kind == k as i32).count();
    assert_eq!(kinds(pb::ChangeKind::Opened), 3, "{missed:#?}");
    let updated: Vec<u64> = missed
        .iter()
        .filter(|c| c.kind == pb::ChangeKind::Updated as i32)
        .filter_map(|c| c.alert.as_ref())
        .map(|a| a.count)
        .collect();
    assert_eq!(
        updated.last(),
        Some(&3),
        "the repeats reached the stream: {missed:#?}"
    );
    assert_eq!(
        missed
            .last()
            .unwrap()
            .alert
            .as_ref()
            .unwrap()
            .acknowledged_by,
        "desk-1"
    );

    // A cursor from the future is refused, not silently accepted.
    let err = client
        .subscribe(req(
            pb::SubscribeAlertsRequest {
                resume_after_seq: last_seq + 100,
                ..Default::default()
            },
            VIEWER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_before_retention_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DaemonOpts::new(None);
    o.extra_store = "alert_change_retention_hours = 0\nretention_interval_secs = 1\n".into();
    let d = Daemon::start(&write_config(dir.path(), &o)).await;
    let mut client = d.incidents().await;
    for i in 0..3 {
        client
            .report(req(report(&format!("r-{i}"), "a-1"), INTEGRATOR))
            .await
            .unwrap();
    }
    let mut alerts = d.alerts().await;
    wait_for("retention to delete the change log", T, || {
        let mut alerts = alerts.clone();
        async move {
            let r = alerts
                .subscribe(req(
                    pb::SubscribeAlertsRequest {
                        resume_after_seq: 1,
                        ..Default::default()
                    },
                    VIEWER,
                ))
                .await;
            matches!(r, Err(e) if e.code() == tonic::Code::OutOfRange).then_some(())
        }
    })
    .await;
    // A fresh subscription still gets the open alerts as a snapshot.
    let mut s = alerts
        .subscribe(req(Default::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    let (open, cursor) = read_snapshot(&mut s, T).await;
    assert_eq!(open.len(), 3);
    assert!(cursor >= 3);
}
