//! Tests of noise control on the pure engine: flap suppression, inhibition, silences
//! over time, escalation.

use crate::domain::AlertChange;
use std::sync::Arc;

use gridsight_proto::{ts_from_millis, v1 as pb};

use super::Engine;
use crate::{
    config::{AlertMatch, CorrelationConfig, EscalationConfig, EscalationStep, InhibitConfig},
    correlate::{
        engine::Inhibitors,
        rules::{tests as rt, RuleSet},
        silence::SilenceSet,
        Action, Command,
    },
    domain::{GridIndex, SensorState, Severity},
    store::Ids,
};

fn engine(cfg: CorrelationConfig) -> Engine {
    let mut e = Engine::new(cfg, Arc::new(Ids::default()));
    e.set_grids(Arc::new(GridIndex::new(&rt::city())));
    e
}

fn alerts(changes: &[AlertChange]) -> Vec<pb::Alert> {
    changes
        .iter()
        .filter_map(|c| c.alert.as_deref().cloned())
        .collect()
}

#[test]
fn a_flapping_sensor_keeps_one_alert_open_until_it_is_quiet() {
    let mut e = engine(CorrelationConfig {
        sensor_clear_on_normal: true,
        ..Default::default()
    });
    let s = |state, at| rt::sensor("wl-1", "water_level", "a00", state, at);
    // Not flapping yet: a normal reading resolves the alert.
    let first = alerts(&e.on_sensor(1, &s(SensorState::Alarm, 0)))[0].clone();
    let closed = e.on_sensor(2, &s(SensorState::Normal, 1_000));
    assert_eq!(closed[0].kind, pb::ChangeKind::Resolved as i32);
    assert_eq!(
        closed[0].alert.as_ref().map(|a| a.id.clone()),
        Some(first.id)
    );
    // Toggling: the fourth change within 300 s makes it flapping; normals no longer close.
    e.on_sensor(10, &s(SensorState::Alarm, 2_000));
    e.on_sensor(11, &s(SensorState::Normal, 3_000));
    e.on_sensor(12, &s(SensorState::Alarm, 4_000));
    let normal = e.on_sensor(13, &s(SensorState::Normal, 5_000));
    assert!(
        normal.is_empty(),
        "a normal while flapping closes nothing: {normal:#?}"
    );
    assert_eq!(e.open_count(), 1);
    let open = alerts(&e.on_sensor(20, &s(SensorState::Alarm, 7_000)));
    assert!(open[0].flapping);
    e.on_sensor(21, &s(SensorState::Normal, 8_000));
    assert!(e.tick(307_000).is_empty(), "not yet quiet for the window");
    let quiet = e.tick(308_500);
    assert_eq!(quiet.len(), 1);
    assert_eq!(quiet[0].kind, pb::ChangeKind::Resolved as i32);
    assert_eq!(e.open_count(), 0);
}

#[test]
fn a_sensor_toggling_slower_than_the_tick_is_still_seen_flapping() {
    let mut e = engine(CorrelationConfig {
        sensor_clear_on_normal: true,
        ..Default::default()
    });
    let s = |state, at| rt::sensor("wl-1", "water_level", "a00", state, at);
    // A change every 20 s, the shard ticking every second in between: the fourth change
    // (within the 300 s window) makes the sensor flapping, so that normal closes nothing.
    let mut last = Vec::new();
    for (i, state) in [
        SensorState::Alarm,
        SensorState::Normal,
        SensorState::Alarm,
        SensorState::Normal,
        SensorState::Alarm,
        SensorState::Normal,
    ]
    .into_iter()
    .enumerate()
    {
        let at = i as i64 * 20_000;
        last = e.on_sensor(i as u64 + 1, &s(state, at));
        for t in 1..20 {
            e.tick(at + t * 1_000);
        }
    }
    assert!(last.is_empty(), "the sixth reading closed: {last:#?}");
    assert_eq!(e.open_count(), 1);
}

#[test]
fn an_open_outage_mutes_the_camera_alerts_it_explains_on_every_shard() {
    use pb::CameraEventKind as K;
    let cfg = CorrelationConfig {
        inhibit: vec![InhibitConfig {
            source: AlertMatch {
                rule: Some("outage".into()),
                ..Default::default()
            },
            target: AlertMatch {
                dedup_key_prefix: Some("camera/".into()),
                ..Default::default()
            },
        }],
        ..Default::default()
    };
    let shared = Arc::new(Inhibitors::default());
    let outage_rules = rt::rules(
        r#"
[[rules]]
id = "outage"
title = "Network outage in {grid_name}"
severity = "critical"
pattern = "count"
min_count = 2
distinct = "camera"
scope = "tier"
tier = 0
window_secs = 60
[[rules.when]]
source = "camera"
event = "offline"
"#,
    );
    // Two shards sharing the registry: `a` owns the county (and town-b), `b` town-a.
    let mut a = engine(cfg.clone());
    let mut b = engine(cfg);
    for (shard, e) in [&mut a, &mut b].into_iter().enumerate() {
        e.set_inhibitors(shared.clone());
        e.set_rules(Arc::new(RuleSet::new(&outage_rules)));
        e.set_partition(crate::correlate::engine::Partition {
            shard,
            shards: 2,
            tier: 1,
        });
    }
    assert!(a.owns("county") && a.owns("b00") && b.owns("a00"));
    let on_b = b.on_camera(&rt::camera("cam-9", "a00", K::Offline, 0.0, 0), 0);
    b.note(&on_b);
    let cam_alert = alerts(&on_b)[0].clone();
    assert!(cam_alert.inhibited_by.is_empty());
    let c1 = a.on_camera(&rt::camera("cam-1", "b00", K::Offline, 0.0, 1_000), 1_000);
    a.note(&c1);
    let c2 = a.on_camera(&rt::camera("cam-2", "b00", K::Offline, 0.0, 2_000), 2_000);
    a.note(&c2);
    let outage = alerts(&c2)
        .into_iter()
        .find(|x| x.rule_id == "outage")
        .expect("outage opened");
    assert_eq!(outage.grid_id, "county");
    // The other shard mutes its camera alert on its next tick.
    let muted = b.tick(3_000);
    assert_eq!(muted.len(), 1);
    assert_eq!(alerts(&muted)[0].inhibited_by, outage.id);
    // A new camera alert there is muted at once.
    let later = b.on_camera(&rt::camera("cam-8", "a11", K::Offline, 0.0, 4_000), 4_000);
    assert_eq!(alerts(&later)[0].inhibited_by, outage.id);
    // The outage resolved: the next tick un-mutes.
    let resolved = a
        .command(
            &Command {
                alert_id: outage.id.clone(),
                action: Action::Resolve,
                expected_version: a.open_version(&outage.id).unwrap_or(0),
                actor: "op".into(),
                note: String::new(),
            },
            5_000,
        )
        .expect("resolve");
    a.note(std::slice::from_ref(&resolved));
    let unmuted = alerts(&b.tick(6_000));
    assert_eq!(unmuted.len(), 2);
    assert!(unmuted.iter().all(|x| x.inhibited_by.is_empty()));
}

#[test]
fn silences_mute_and_unmute_open_alerts_as_they_start_and_end() {
    let mut e = engine(CorrelationConfig::default());
    let a = alerts(&e.on_sensor(1, &rt::sensor("s-1", "smoke", "a00", SensorState::Alarm, 0)))[0]
        .clone();
    e.set_silences(Arc::new(SilenceSet::new(vec![pb::Silence {
        id: "sil-1".into(),
        matcher: Some(pb::SilenceMatcher {
            grid_id: "town-a".into(),
            ..Default::default()
        }),
        starts_at: Some(ts_from_millis(0)),
        ends_at: Some(ts_from_millis(10_000)),
        ..Default::default()
    }])));
    let muted = alerts(&e.tick(1_000));
    assert_eq!(muted.len(), 1);
    assert_eq!(muted[0].id, a.id);
    assert_eq!(muted[0].silenced_by, "sil-1");
    assert!(e.tick(2_000).is_empty(), "nothing changed since");
    let ended = alerts(&e.tick(10_500));
    assert_eq!(ended.len(), 1);
    assert!(ended[0].silenced_by.is_empty());
}

#[test]
fn unacknowledged_alerts_escalate_up_the_tiers_and_acknowledged_ones_do_not() {
    let mut e = engine(CorrelationConfig {
        escalation: vec![EscalationConfig {
            alerts: AlertMatch {
                min_severity: Some(Severity::Minor),
                ..Default::default()
            },
            steps: vec![
                EscalationStep {
                    after_secs: 60,
                    raise_by: 1,
                    to_tier: None,
                },
                EscalationStep {
                    after_secs: 300,
                    raise_by: 0,
                    to_tier: Some(0),
                },
            ],
        }],
        ..Default::default()
    });
    let a = alerts(&e.on_sensor(
        1,
        &rt::sensor("w-1", "water_level", "a00", SensorState::Alarm, 0),
    ))[0]
        .clone();
    let b = alerts(&e.on_sensor(
        2,
        &rt::sensor("w-2", "water_level", "a01", SensorState::Alarm, 0),
    ))[0]
        .clone();
    e.command(
        &Command {
            alert_id: b.id.clone(),
            action: Action::Acknowledge,
            expected_version: b.version,
            actor: "op".into(),
            note: String::new(),
        },
        1_000,
    )
    .expect("ack");
    assert!(e.tick(59_000).is_empty());
    let step1 = e.tick(60_000);
    assert_eq!(step1.len(), 1, "only the unacknowledged alert: {step1:#?}");
    assert_eq!(step1[0].kind, pb::ChangeKind::Escalated as i32);
    let x = step1[0].alert.clone().expect("alert");
    assert_eq!(x.id, a.id);
    assert_eq!(x.severity, pb::Severity::Major as i32);
    assert_eq!((x.escalation_level, x.escalated_to.as_str()), (1, "town-a"));
    let step2 = alerts(&e.tick(300_000));
    assert_eq!(
        (step2[0].escalation_level, step2[0].escalated_to.as_str()),
        (2, "county")
    );
    assert!(e.tick(900_000).is_empty(), "the chain has ended");
}

#[test]
fn camera_alerts_of_a_town_are_grouped_after_the_wait_and_the_group_closes_with_them() {
    use pb::CameraEventKind as K;
    let mut e = engine(CorrelationConfig {
        groups: vec![crate::config::GroupConfig {
            alerts: AlertMatch {
                dedup_key_prefix: Some("camera/".into()),
                ..Default::default()
            },
            tier: 1,
            min_members: 2,
            group_wait_secs: 30,
            group_interval_secs: 60,
            title: "{count} cameras offline in {grid_name}".into(),
        }],
        ..Default::default()
    });
    let one = alerts(&e.on_camera(&rt::camera("cam-1", "a00", K::Offline, 0.0, 0), 0))[0].clone();
    assert!(e.tick(40_000).is_empty(), "one alert is no group");
    let two = alerts(&e.on_camera(&rt::camera("cam-2", "a11", K::Offline, 0.0, 41_000), 41_000))[0]
        .clone();
    // Different towns are different groups.
    e.on_camera(&rt::camera("cam-3", "b00", K::Offline, 0.0, 41_000), 41_000);
    let grouped = e.tick(42_000);
    let group = grouped
        .iter()
        .find(|c| c.kind == pb::ChangeKind::Opened as i32)
        .and_then(|c| c.alert.clone())
        .expect("group alert opened");
    assert_eq!(group.grid_id, "town-a");
    let summary = alerts(&grouped)
        .into_iter()
        .rfind(|a| a.id == group.id)
        .expect("summary");
    assert_eq!(summary.group_size, 2);
    assert_eq!(summary.title, "2 cameras offline in Town A");
    assert_eq!(summary.severity, pb::Severity::Major as i32);
    let members: Vec<_> = alerts(&grouped)
        .into_iter()
        .filter(|a| a.parent_id == group.id)
        .collect();
    assert_eq!(members.len(), 2);
    assert!(members.iter().any(|a| a.id == one.id) && members.iter().any(|a| a.id == two.id));
    // Both cameras back: the group closes on the next tick.
    e.on_camera(&rt::camera("cam-1", "a00", K::Online, 0.0, 50_000), 50_000);
    e.on_camera(&rt::camera("cam-2", "a11", K::Online, 0.0, 50_000), 50_000);
    let closed = e.tick(51_000);
    assert!(closed
        .iter()
        .any(|c| c.kind == pb::ChangeKind::Resolved as i32
            && c.alert.as_ref().is_some_and(|a| a.id == group.id)));
}

#[test]
fn a_sensors_grid_is_found_again_when_it_moves_and_when_the_grids_change() {
    let mut e = engine(CorrelationConfig::default());
    let city = GridIndex::new(&rt::city());
    let at = |grid: &str, t| rt::sensor("wl-1", "water_level", grid, SensorState::Normal, t);
    assert_eq!(e.reading_grid(&at("a00", 0)), city.index_of("a00"));
    // Remembered: asked again, the same index.
    assert_eq!(e.reading_grid(&at("a00", 1)), city.index_of("a00"));
    // The sensor moved: its new grid, not the remembered one.
    assert_eq!(e.reading_grid(&at("a12", 2)), city.index_of("a12"));
    assert_ne!(city.index_of("a12"), city.index_of("a00"));
    // A grid the index does not know.
    assert_eq!(e.reading_grid(&at("nowhere", 3)), None);
    assert_eq!(e.reading_grid(&at("a12", 4)), city.index_of("a12"));
    // The grids are reloaded in reverse order: the remembered index is stale.
    let mut reversed = rt::city();
    reversed.reverse();
    let moved = GridIndex::new(&reversed);
    assert_ne!(moved.index_of("a12"), city.index_of("a12"));
    e.set_grids(Arc::new(moved.clone()));
    assert_eq!(e.reading_grid(&at("a12", 5)), moved.index_of("a12"));
}
