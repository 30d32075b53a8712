//! Rules that look around an anchor: one cluster of events opens one alert, later events
//! in reach fold into it, `within_m` counts only what is near, and a restart rebuilds the
//! same state from the journal.

use crate::domain::AlertChange;
use gridsight_proto::v1 as pb;

use crate::correlate::rules::tests::{engine_with, sensor};
use crate::domain::{SensorEvent, SensorState};

const AROUND: &str = r#"
[[rules]]
id = "smoke-around"
title = "{count} smoke alarms around {grid_name}"
severity = "major"
pattern = "count"
min_count = 3
scope = "neighbours"
window_secs = 300
merge = false
[[rules.when]]
source = "sensor"
kind = "smoke"
"#;

const NEAR: &str = r#"
[[rules]]
id = "smoke-near"
title = "{count} smoke alarms within 300 m in {grid_name}"
severity = "major"
pattern = "count"
min_count = 2
within_m = 300.0
window_secs = 300
merge = false
[[rules.when]]
source = "sensor"
kind = "smoke"
"#;

fn smoke(id: &str, grid: &str, at: i64, location: Option<[f64; 2]>) -> SensorEvent {
    SensorEvent {
        location,
        ..sensor(id, "smoke", grid, SensorState::Alarm, at)
    }
}

/// The rule alerts among `changes`, by kind of change.
fn rule_alerts(changes: &[AlertChange], kind: pb::ChangeKind) -> Vec<pb::Alert> {
    changes
        .iter()
        .filter(|c| c.kind == kind as i32)
        .filter_map(|c| c.alert.as_deref().cloned())
        .filter(|a| !a.rule_id.is_empty())
        .collect()
}

#[test]
fn a_cluster_around_grids_opens_one_alert_and_later_alarms_in_reach_fold_into_it() {
    let mut e = engine_with(AROUND);
    let mut all = Vec::new();
    for (i, g) in ["a00", "a01", "a11"].iter().enumerate() {
        let at = i as i64 * 1_000;
        all.extend(e.on_sensor(i as u64, &smoke(&format!("s-{g}"), g, at, None)));
    }
    let opened = rule_alerts(&all, pb::ChangeKind::Opened);
    assert_eq!(opened.len(), 1, "{opened:#?}");
    assert_eq!(
        opened[0].grid_id, "a11",
        "evaluated at the newest alarm's grid"
    );
    assert_eq!(opened[0].count, 3);
    assert_eq!(opened[0].title, "3 smoke alarms around Community 11");
    // a10 touches a00, a01 and a11: pushed into every grid around, the three alarms
    // would open a second alert there; gathered, they were consumed by the first.
    let mut sent = e.on_sensor(3, &smoke("s-a10", "a10", 2_500, None));
    assert!(
        rule_alerts(&sent, pb::ChangeKind::Opened).is_empty(),
        "{sent:#?}"
    );
    sent.extend(e.drain());
    let updated = rule_alerts(&sent, pb::ChangeKind::Updated);
    assert_eq!(updated.len(), 1, "{sent:#?}");
    assert_eq!(
        (updated[0].id.as_str(), updated[0].count),
        (opened[0].id.as_str(), 4)
    );
    // b00 is not around a11: it neither folds nor counts there; three alarms in b00 open
    // an alert of their own.
    let mut east = Vec::new();
    for i in 0..3 {
        let ev = smoke(&format!("s-b00-{i}"), "b00", 4_000 + i * 100, None);
        east.extend(e.on_sensor(4 + i as u64, &ev));
    }
    assert!(rule_alerts(&e.drain(), pb::ChangeKind::Updated).is_empty());
    let east = rule_alerts(&east, pb::ChangeKind::Opened);
    assert_eq!(east.len(), 1, "{east:#?}");
    assert_eq!((east[0].grid_id.as_str(), east[0].count), ("b00", 3));
    // a02 touches both a11 and b00: the alarm counts once, for a11 (first by id).
    let mut both = e.on_sensor(9, &smoke("s-a02", "a02", 9_000, None));
    both.extend(e.drain());
    let updated = rule_alerts(&both, pb::ChangeKind::Updated);
    assert_eq!(updated.len(), 1, "{both:#?}");
    assert_eq!((updated[0].grid_id.as_str(), updated[0].count), ("a11", 5));
}

#[test]
fn within_m_counts_only_the_alarms_near_the_newest_one() {
    let mut e = engine_with(NEAR);
    // 96 m apart, across the border of a00 and a01.
    let first = e.on_sensor(1, &smoke("s-1", "a00", 0, Some([120.0095, 30.005])));
    assert!(rule_alerts(&first, pb::ChangeKind::Opened).is_empty());
    // 2 km away: not near the first.
    let far = e.on_sensor(2, &smoke("s-2", "a22", 1_000, Some([120.025, 30.025])));
    assert!(
        rule_alerts(&far, pb::ChangeKind::Opened).is_empty(),
        "{far:#?}"
    );
    let near = e.on_sensor(3, &smoke("s-3", "a01", 2_000, Some([120.0105, 30.005])));
    let opened = rule_alerts(&near, pb::ChangeKind::Opened);
    assert_eq!(opened.len(), 1, "{near:#?}");
    assert_eq!((opened[0].grid_id.as_str(), opened[0].count), ("a01", 2));
    let ids: Vec<String> = opened[0]
        .evidence
        .iter()
        .filter_map(|ev| match &ev.item {
            Some(pb::evidence::Item::SensorEvent(s)) => Some(s.sensor_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["s-1", "s-3"]);
}

#[test]
fn an_alarm_in_a_grid_the_index_does_not_know_still_folds_into_an_alert_in_reach() {
    let mut e = engine_with(NEAR);
    e.on_sensor(1, &smoke("s-1", "a00", 0, Some([120.0095, 30.005])));
    let opened = e.on_sensor(2, &smoke("s-2", "a01", 1_000, Some([120.0105, 30.005])));
    let opened = rule_alerts(&opened, pb::ChangeKind::Opened);
    assert_eq!(opened.len(), 1, "{opened:#?}");
    // A grid id from an old device config, at a place 100 m from both: its reach is
    // found by id (not by index), and it folds into the open alert all the same.
    let mut sent = e.on_sensor(3, &smoke("s-3", "gone", 2_000, Some([120.0100, 30.0055])));
    sent.extend(e.drain());
    let updated = rule_alerts(&sent, pb::ChangeKind::Updated);
    assert_eq!(updated.len(), 1, "{sent:#?}");
    assert_eq!(
        (updated[0].id.as_str(), updated[0].count),
        (opened[0].id.as_str(), 3)
    );
    // Known or not, a far one does not.
    let mut far = e.on_sensor(4, &smoke("s-4", "gone", 3_000, Some([120.025, 30.025])));
    far.extend(e.drain());
    assert!(
        rule_alerts(&far, pb::ChangeKind::Updated).is_empty(),
        "{far:#?}"
    );
}
