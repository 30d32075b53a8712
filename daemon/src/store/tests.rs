//! Store tests on a real SQLite file in a temp folder.

use std::sync::Arc;

use gridsight_proto::{ts_from_millis, v1 as pb};

use super::*;
use crate::{config::StoreConfig, domain::SensorState};

fn cfg(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        ..StoreConfig::default()
    }
}

fn change(id: &str, version: u64, at: i64) -> Record {
    Record::AlertChange(crate::domain::AlertChange::from(pb::AlertChange {
        seq: 0,
        kind: pb::ChangeKind::Opened as i32,
        alert: Some(pb::Alert {
            id: id.into(),
            version,
            grid_id: "g1".into(),
            status: pb::AlertStatus::Open as i32,
            severity: pb::Severity::Major as i32,
            first_seen: Some(ts_from_millis(at)),
            last_seen: Some(ts_from_millis(at)),
            updated_at: Some(ts_from_millis(at)),
            ..Default::default()
        }),
    }))
}

fn event(id: u64) -> Record {
    Record::SensorEvent {
        id,
        event: crate::domain::SensorEvent {
            sensor_id: "s".into(),
            kind: "smoke".into(),
            grid_id: "g1".into(),
            state: SensorState::Normal,
            reading: None,
            device_ms: 1,
            receive_ms: 1,
            location: None,
        },
    }
}

#[tokio::test]
async fn commits_assign_dense_seqs_publish_in_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (ack_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let Opened { store, writer } =
        Store::open(&cfg(dir.path()), Arc::new(Metrics::new()), Some(ack_tx)).unwrap();
    let mut bus = store.subscribe();
    store
        .write(WriteItem {
            records: vec![event(1)],
            done: Done::MqttAcks(vec![MqttAck {
                epoch: 1,
                order: 0,
                pkid: 7,
            }]),
        })
        .await
        .unwrap();
    let committed = store
        .write_and_wait(vec![
            change("ALR-000001", 1, 10),
            change("ALR-000002", 1, 10),
        ])
        .await
        .unwrap();
    let seqs: Vec<u64> = committed
        .iter()
        .filter_map(|r| match r {
            Record::AlertChange(c) => Some(c.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(bus.recv().await.unwrap().seq, 1);
    assert_eq!(bus.recv().await.unwrap().seq, 2);
    assert_eq!(
        acks.recv().await.unwrap(),
        vec![MqttAck {
            epoch: 1,
            order: 0,
            pkid: 7
        }]
    );
    let (open, cursor) = store.read(read::open_alerts).await.unwrap();
    assert_eq!((open.len(), cursor), (2, 2));
    assert_eq!(
        store
            .read(|c| read::changes_after(c, 1, 10))
            .await
            .unwrap()
            .len(),
        1
    );
    drop(store);
    writer.join().unwrap();

    let Opened { store, writer } =
        Store::open(&cfg(dir.path()), Arc::new(Metrics::new()), None).unwrap();
    assert_eq!(store.seqs.last.load(Ordering::Relaxed), 2);
    assert_eq!(store.ids.next_alert(), "ALR-000003");
    assert_eq!(store.ids.next_event(), 2);
    let again = store
        .write_and_wait(vec![change("ALR-000003", 1, 20)])
        .await
        .unwrap();
    assert!(matches!(&again[0], Record::AlertChange(c) if c.seq == 3));
    drop(store);
    writer.join().unwrap();
}

#[tokio::test]
async fn retention_prunes_and_remembers_what_it_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let Opened { store, writer } =
        Store::open(&cfg(dir.path()), Arc::new(Metrics::new()), None).unwrap();
    store
        .write_and_wait(vec![
            change("ALR-000001", 1, 1_000),
            change("ALR-000001", 2, 2_000),
            change("ALR-000001", 3, 50_000),
        ])
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let (_, deleted) = prune(&conn, 60_000, 1_000_000, 30_000, &store.seqs).unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(store.seqs.pruned_through.load(Ordering::Relaxed), 2);
    drop(store);
    writer.join().unwrap();
    let Opened { store, writer } =
        Store::open(&cfg(dir.path()), Arc::new(Metrics::new()), None).unwrap();
    assert_eq!(store.seqs.pruned_through.load(Ordering::Relaxed), 2);
    assert_eq!(store.seqs.last.load(Ordering::Relaxed), 3);
    drop(store);
    writer.join().unwrap();
}

#[tokio::test]
async fn dead_letters_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.dead_letter_capacity = 3;
    let Opened { store, writer } = Store::open(&c, Arc::new(Metrics::new()), None).unwrap();
    for i in 0..5 {
        store
            .write_and_wait(vec![Record::DeadLetter {
                at_ms: i,
                topic: "t".into(),
                reason: "bad_json",
                error: format!("error {i}"),
                payload: b"{".to_vec(),
            }])
            .await
            .unwrap();
    }
    let kept = store.read(|c| read::dead_letters(c, 10)).await.unwrap();
    assert_eq!(
        kept.iter().map(|d| d.error.as_str()).collect::<Vec<_>>(),
        vec!["error 4", "error 3", "error 2"]
    );
    drop(store);
    writer.join().unwrap();
}

#[tokio::test]
async fn silences_are_kept_updated_listed_by_end_and_their_ids_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let Opened { store, writer } =
        Store::open(&cfg(dir.path()), Arc::new(Metrics::new()), None).unwrap();
    let silence = |id: String, ends: i64| pb::Silence {
        id,
        starts_at: Some(ts_from_millis(0)),
        ends_at: Some(ts_from_millis(ends)),
        comment: "works".into(),
        ..Default::default()
    };
    let a = silence(store.ids.next_silence(), 10_000);
    let b = silence(store.ids.next_silence(), 20_000);
    assert_eq!((a.id.as_str(), b.id.as_str()), ("sil-1", "sil-2"));
    store
        .write_and_wait(vec![Record::Silence(a.clone()), Record::Silence(b)])
        .await
        .unwrap();
    let expired = pb::Silence {
        expired_by: "desk".into(),
        expired_at: Some(ts_from_millis(5_000)),
        ..a
    };
    store
        .write_and_wait(vec![Record::Silence(expired)])
        .await
        .unwrap();
    let ids = |v: Vec<pb::Silence>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let live = store.read(|c| read::silences(c, false, 6_000, 10)).await;
    assert_eq!(ids(live.unwrap()), vec!["sil-2"]);
    let all = store.read(|c| read::silences(c, true, 6_000, 10)).await;
    assert_eq!(ids(all.unwrap()), vec!["sil-2", "sil-1"]);
    let got = store.read(|c| read::get_silence(c, "sil-1")).await.unwrap();
    assert_eq!(got.unwrap().expired_by, "desk");
    drop(store);
    writer.join().unwrap();

    let Opened { store, writer } =
        Store::open(&cfg(dir.path()), Arc::new(Metrics::new()), None).unwrap();
    assert_eq!(store.ids.next_silence(), "sil-3");
    drop(store);
    writer.join().unwrap();
}

#[tokio::test]
async fn a_refused_item_is_answered_alone_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (ack_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let Opened { store, writer } =
        Store::open(&cfg(dir.path()), metrics.clone(), Some(ack_tx)).unwrap();
    let mut bus = store.subscribe();
    let incident = |id: &str| {
        Record::Incident(pb::Incident {
            id: id.into(),
            idempotency_key: "same-key".into(),
            grid_id: "g1".into(),
            version: 1,
            ..Default::default()
        })
    };
    // Queued together, so they may share a batch: the second incident repeats the first's
    // idempotency key (a unique constraint), the items around it are fine.
    let (first, second, third) = (
        store.write_and_wait(vec![incident("INC-1"), change("ALR-000001", 1, 10)]),
        store.write_and_wait(vec![incident("INC-2"), change("ALR-000002", 1, 10)]),
        store.write_and_wait(vec![change("ALR-000003", 1, 10)]),
    );
    let mqtt = |records: Vec<Record>, order: u64, pkid: u16| {
        store.write(WriteItem {
            records,
            done: Done::MqttAcks(vec![MqttAck {
                epoch: 1,
                order,
                pkid,
            }]),
        })
    };
    // A refused item that came over MQTT is acknowledged all the same (redelivery would be
    // refused again), as is the good one after it.
    let refused_mqtt = mqtt(vec![incident("INC-3")], 0, 8);
    let after = mqtt(vec![event(1)], 1, 9);
    let (first, second, third, refused_mqtt, after) =
        tokio::join!(first, second, third, refused_mqtt, after);
    first.unwrap();
    third.unwrap();
    refused_mqtt.unwrap();
    after.unwrap();
    let err = second.unwrap_err();
    assert!(matches!(err, StoreError::Refused(_)), "{err}");
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    let mut acked = Vec::new();
    let all_acked = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while acked.len() < 2 {
            acked.extend(acks.recv().await.unwrap().into_iter().map(|a| a.pkid));
        }
    })
    .await;
    assert!(all_acked.is_ok(), "acknowledged only {acked:?}");
    acked.sort();
    assert_eq!(acked, [8, 9]);
    // The refused item's change took no seq and went nowhere: seqs stay dense.
    let published: Vec<(u64, String)> = [bus.recv().await.unwrap(), bus.recv().await.unwrap()]
        .iter()
        .map(|c| (c.seq, c.alert.as_ref().unwrap().id.clone()))
        .collect();
    assert_eq!(
        published,
        vec![(1, "ALR-000001".into()), (2, "ALR-000003".into())]
    );
    let (open, cursor) = store.read(read::open_alerts).await.unwrap();
    assert_eq!((open.len(), cursor), (2, 2));
    let kept = store
        .read(|c| read::incident_by_key(c, "same-key"))
        .await
        .unwrap();
    assert_eq!(kept.unwrap().id, "INC-1");
    assert_eq!(metrics.store_rejected.get(), 2);
    // What came in is counted from what was committed: one report (not the two refused),
    // one reading; alert changes are not events that came in.
    let mut counted = store
        .read(|c| figures::event_quarters(c, 0, figures::QUARTER_MS))
        .await
        .unwrap();
    counted.sort();
    assert_eq!(
        counted,
        vec![(0, "incident".to_string(), 1), (0, "sensor".to_string(), 1)]
    );
    drop(store);
    writer.join().unwrap();
}
