//! Tests of the built-in correlation, including a property test against a small model.

use std::sync::Arc;

use gridsight_proto::v1 as pb;
use proptest::prelude::*;

use super::*;
use crate::{config::CorrelationConfig, domain::SensorState};

fn engine() -> Engine {
    Engine::new(CorrelationConfig::default(), Arc::new(Ids::default()))
}

fn alarm(sensor: &str, grid: &str, at: i64) -> SensorEvent {
    SensorEvent {
        sensor_id: sensor.into(),
        kind: "smoke".into(),
        grid_id: grid.into(),
        state: SensorState::Alarm,
        reading: Some(1.0),
        device_ms: at,
        receive_ms: at,
        location: None,
    }
}

fn incident(id: &str, grid: &str) -> pb::Incident {
    pb::Incident {
        id: id.into(),
        grid_id: grid.into(),
        category: pb::IncidentCategory::SafetyHazard as i32,
        item_code: "AQ-01".into(),
        description: "smoke from a shop".into(),
        ..Default::default()
    }
}

#[test]
fn repeats_fold_into_one_alert() {
    let mut e = engine();
    let c1 = e.on_sensor(1, &alarm("s1", "g1", 1000));
    assert_eq!(c1[0].kind, pb::ChangeKind::Opened as i32);
    let c2 = e.on_sensor(2, &alarm("s1", "g1", 2000));
    let a = c2[0].alert.as_ref().unwrap();
    assert_eq!(c2[0].kind, pb::ChangeKind::Updated as i32);
    assert_eq!(a.id, c1[0].alert.as_ref().unwrap().id);
    assert_eq!((a.count, a.version), (2, 2));
    assert_eq!(e.open_count(), 1);
}

#[test]
fn repeats_within_the_update_interval_go_out_once_with_every_fold() {
    let mut e = engine();
    let opened = e.on_sensor(1, &alarm("s1", "g1", 1_000));
    let id = opened[0].alert.as_ref().unwrap().id.clone();
    // Three repeats within a second of the open: nothing goes out yet.
    for (i, at) in [1_100, 1_200, 1_300].into_iter().enumerate() {
        assert!(e.on_sensor(2 + i as u64, &alarm("s1", "g1", at)).is_empty());
    }
    // The next call a second after the open sends one update holding all three.
    let c = e.tick(2_000);
    assert_eq!(c.len(), 1);
    let a = c[0].alert.as_ref().unwrap();
    assert_eq!(c[0].kind, pb::ChangeKind::Updated as i32);
    assert_eq!((a.id.as_str(), a.count, a.version), (id.as_str(), 4, 2));
    assert!(e.tick(3_000).is_empty(), "sent once");

    // In a batch, nothing goes out before its end; the end sends what is due.
    e.begin_batch();
    assert!(e.on_sensor(5, &alarm("s1", "g1", 3_100)).is_empty());
    assert!(e.on_sensor(6, &alarm("s1", "g1", 3_200)).is_empty());
    let c = e.end_batch(3_200);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].alert.as_ref().unwrap().count, 6);

    // A change other than a fold goes out at once and carries the held folds; the held
    // update is then dropped.
    assert!(e.on_sensor(7, &alarm("s1", "g1", 3_300)).is_empty());
    let resolved = e
        .command(
            &Command {
                alert_id: id.clone(),
                action: Action::Resolve,
                expected_version: 3,
                actor: "op".into(),
                note: String::new(),
            },
            3_400,
        )
        .unwrap();
    let a = resolved.alert.as_ref().unwrap();
    assert_eq!((a.count, a.version), (7, 4));
    assert!(e.tick(10_000).is_empty());

    // Stopping sends what is still held, due or not.
    let c = e.on_sensor(8, &alarm("s2", "g1", 20_000));
    assert_eq!(c[0].kind, pb::ChangeKind::Opened as i32);
    assert!(e.on_sensor(9, &alarm("s2", "g1", 20_001)).is_empty());
    let c = e.drain();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].alert.as_ref().unwrap().count, 2);
}

#[test]
fn alarm_and_incident_in_a_grid_become_one_raised_alert() {
    let mut e = engine();
    let c = e.on_sensor(1, &alarm("s1", "g1", 1_000));
    let sev = c[0].alert.as_ref().unwrap().severity;
    let (inc, changes) = e.on_incident(incident("INC-1", "g1"), 30_000);
    let a = changes[0].alert.as_ref().unwrap();
    assert_eq!(inc.alert_id, a.id);
    assert_eq!(a.evidence.len(), 2);
    assert!(a.severity > sev, "severity raised");
    assert_eq!(e.open_count(), 1);
    // Another grid, or outside the window: a separate alert.
    let (_, other) = e.on_incident(incident("INC-2", "g2"), 31_000);
    assert_eq!(other[0].kind, pb::ChangeKind::Opened as i32);
    let (_, late) = e.on_incident(incident("INC-3", "g1"), 1_000 + 121_000 + 30_000);
    assert_eq!(late[0].kind, pb::ChangeKind::Opened as i32);
}

#[test]
fn stale_versions_are_refused_and_resolve_frees_the_key() {
    let mut e = engine();
    let c = e.on_sensor(1, &alarm("s1", "g1", 1000));
    let id = c[0].alert.as_ref().unwrap().id.clone();
    let cmd = |action, v| Command {
        alert_id: id.clone(),
        action,
        expected_version: v,
        actor: "desk".into(),
        note: String::new(),
    };
    assert!(matches!(
        e.command(&cmd(Action::Acknowledge, 7), 2000),
        Err(CommandError::Stale { current: 1, .. })
    ));
    let ack = e.command(&cmd(Action::Acknowledge, 1), 2000).unwrap();
    assert_eq!(ack.alert.as_ref().unwrap().acknowledged_by, "desk");
    assert_eq!(
        e.command(&cmd(Action::Acknowledge, 2), 2000),
        Err(CommandError::AlreadyAcknowledged(id.clone()))
    );
    e.command(&cmd(Action::Resolve, 2), 3000).unwrap();
    assert_eq!(e.open_count(), 0);
    let again = e.on_sensor(2, &alarm("s1", "g1", 4000));
    assert_eq!(again[0].kind, pb::ChangeKind::Opened as i32);
    assert_ne!(again[0].alert.as_ref().unwrap().id, id);
}

#[test]
fn notes_need_no_version_are_attributed_and_bounded() {
    let mut e = engine();
    let c = e.on_sensor(1, &alarm("s1", "g1", 1000));
    let id = c[0].alert.as_ref().unwrap().id.clone();
    let note = |text: String| Command {
        alert_id: id.clone(),
        action: Action::Note,
        expected_version: 0,
        actor: "desk".into(),
        note: text,
    };
    let first = e.command(&note("crew on site".into()), 2000).unwrap();
    assert_eq!(first.kind, pb::ChangeKind::Updated as i32);
    let a = first.alert.as_ref().unwrap();
    assert_eq!(
        a.status,
        pb::AlertStatus::Open as i32,
        "a note changes no status"
    );
    assert_eq!(a.version, 2);
    assert_eq!(a.notes.len(), 1);
    assert_eq!(
        (a.notes[0].by.as_str(), a.notes[0].text.as_str()),
        ("desk", "crew on site")
    );
    assert_eq!(a.notes[0].at, Some(ts_from_millis(2000)));
    for i in 0..MAX_ALERT_NOTES + 5 {
        e.command(&note(format!("n{i}")), 3000 + i as i64).unwrap();
    }
    let last = e.command(&note("last".into()), 9000).unwrap();
    let a = last.alert.as_ref().unwrap();
    assert_eq!(a.notes.len(), MAX_ALERT_NOTES, "the oldest went first");
    assert_eq!(a.notes.last().unwrap().text, "last");
    assert_eq!(a.notes[0].text, "n6");
    assert_eq!(a.note, "last");
}

#[test]
fn a_step_on_a_linked_incident_updates_its_entry_with_an_attributed_note() {
    let mut e = engine();
    e.on_sensor(1, &alarm("s1", "g1", 1_000));
    let (inc, c) = e.on_incident(incident("INC-1", "g1"), 2_000);
    let a = c.last().unwrap().alert.as_ref().unwrap();
    assert_eq!(a.incident_ids, vec!["INC-1"]);
    assert_eq!(a.incidents.len(), 1, "a folded report is linked");
    assert_eq!(a.incidents[0].id, "INC-1");
    let mut stepped = inc.clone();
    stepped.status = pb::IncidentStatus::Dispatched as i32;
    stepped.department = "roads".into();
    stepped.deadline = Some(ts_from_millis(90_000));
    stepped.version = 3;
    let cmd = Command {
        alert_id: inc.alert_id.clone(),
        action: Action::Incident(Box::new(stepped)),
        // Not the alert's version: a step is checked against the incident's own.
        expected_version: 0,
        actor: "desk-1".into(),
        note: "INC-1 DISPATCHED to roads".into(),
    };
    let ch = e.command(&cmd, 3_000).unwrap();
    assert_eq!(ch.kind, pb::ChangeKind::Updated as i32);
    let a2 = ch.alert.as_ref().unwrap();
    assert_eq!(a2.version, a.version + 1);
    assert_eq!(a2.incidents.len(), 1);
    let l = &a2.incidents[0];
    assert_eq!(l.status, pb::IncidentStatus::Dispatched as i32);
    assert_eq!((l.department.as_str(), l.version), ("roads", 3));
    assert_eq!(l.updated_by, "desk-1");
    assert_eq!(a2.notes.last().unwrap().text, "INC-1 DISPATCHED to roads");
    assert_eq!(a2.notes.last().unwrap().by, "desk-1");
}

#[test]
fn evidence_is_bounded() {
    let mut e = engine();
    for i in 0..100 {
        e.on_sensor(i, &alarm("s1", "g1", 1000 + i as i64));
    }
    for i in 0..100 {
        e.on_sensor(i, &alarm(&format!("x{i}"), "g1", 5000));
    }
    let (_, c) = e.on_incident(incident("INC-1", "g1"), 6000);
    let a = c[0].alert.as_ref().unwrap();
    assert!(a.evidence.len() <= MAX_EVIDENCE);
}

#[test]
fn restore_rebuilds_the_keys() {
    let mut e = engine();
    let c = e.on_sensor(1, &alarm("s1", "g1", 1000));
    let alert = c[0].alert.clone().unwrap();
    let mut fresh = engine();
    fresh.restore((*alert).clone());
    let c2 = fresh.on_sensor(2, &alarm("s1", "g1", 2000));
    assert_eq!(c2[0].alert.as_ref().unwrap().id, alert.id);
    assert_eq!(c2[0].alert.as_ref().unwrap().count, 2);
}

#[derive(Debug, Clone)]
enum Ev {
    Alarm { sensor: u8, grid: u8, dt: u16 },
    Report { grid: u8, dt: u16 },
    Resolve { pick: u8 },
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0u8..6, 0u8..3, 0u16..90).prop_map(|(sensor, grid, dt)| Ev::Alarm { sensor, grid, dt }),
        (0u8..3, 0u16..90).prop_map(|(grid, dt)| Ev::Report { grid, dt }),
        any::<u8>().prop_map(|pick| Ev::Resolve { pick }),
    ]
}

proptest! {
    /// Against a model: at most one open alert per sensor key; every sensor alarm lands in
    /// the alert its key points to; versions grow by one; count = events folded in.
    #[test]
    fn one_open_alert_per_key(events in proptest::collection::vec(ev(), 1..200)) {
        let mut e = engine();
        let mut now = 0i64;
        let mut open: std::collections::HashMap<String, pb::Alert> = Default::default();
        let mut n = 0u64;
        for ev in events {
            let changes = match ev {
                Ev::Alarm { sensor, grid, dt } => {
                    now += dt as i64 * 1000;
                    n += 1;
                    // A sensor always stays in one grid.
                    let _ = grid;
                    let s = format!("s{sensor}");
                    e.on_sensor(n, &alarm(&s, &format!("g{}", sensor % 3), now))
                }
                Ev::Report { grid, dt } => {
                    now += dt as i64 * 1000;
                    n += 1;
                    e.on_incident(incident(&format!("INC-{n}"), &format!("g{grid}")), now).1
                }
                Ev::Resolve { pick } => {
                    let ids: Vec<_> = { let mut v: Vec<_> = open.keys().cloned().collect(); v.sort(); v };
                    if ids.is_empty() { continue; }
                    let id = &ids[pick as usize % ids.len()];
                    let v = open[id].version;
                    vec![e.command(&Command { alert_id: id.clone(), action: Action::Resolve, expected_version: v, actor: "t".into(), note: String::new() }, now).unwrap()]
                }
            };
            for c in changes {
                let a = c.alert.unwrap();
                match open.get(&a.id) {
                    Some(prev) => {
                        prop_assert_eq!(a.version, prev.version + 1);
                        prop_assert!(a.count >= prev.count);
                    }
                    None => prop_assert_eq!(c.kind, pb::ChangeKind::Opened as i32),
                }
                if a.status == pb::AlertStatus::Resolved as i32 { open.remove(&a.id); } else { open.insert(a.id.clone(), (*a).clone()); }
            }
            // At most one open alert holds each sensor's key.
            let mut holders: std::collections::HashMap<String, usize> = Default::default();
            for a in open.values() {
                let mut sensors: Vec<_> = a.evidence.iter().filter_map(|ev| match &ev.item {
                    Some(pb::evidence::Item::SensorEvent(s)) => Some(s.sensor_id.clone()),
                    _ => None,
                }).collect();
                sensors.sort();
                sensors.dedup();
                for s in sensors { *holders.entry(s).or_default() += 1; }
            }
            prop_assert!(holders.values().all(|&n| n == 1), "{:?}", holders);
            prop_assert_eq!(open.len(), e.open_count());
        }
    }
}
