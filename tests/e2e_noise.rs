//! End to end: noise control in `[correlation]` through the real binary, a real Mosquitto
//! and real gRPC clients, on the tiled town of `common::city`: flap suppression with
//! `sensor_clear_on_normal`, inhibition by a county-wide rule alert across shards,
//! escalation chains stopped by an acknowledgement, and grouping by town. Each test asserts on what a dispatcher
//! sees on a `Subscribe` stream and through `AlertService`.

mod common;

use std::time::{Duration, Instant};

use common::{city::*, *};
use gridsight_proto::{millis_from_ts, v1 as pb};

/// `sensor_clear_on_normal` with flap suppression: 4 changes within 3 s.
const FLAPPY: &str =
    "sensor_clear_on_normal = true\n[correlation.flap]\nchanges = 4\nwindow_secs = 3\n";

/// Publishes `states` of one sensor, then a marker alarm in the same grid (same shard,
/// handled after them); returns the changes up to the marker's alert and when the readings
/// were sent (the daemon received the last normal one after that).
async fn toggle(
    c: &City,
    s: &mut tonic::Streaming<pb::SubscribeAlertsResponse>,
    sensor: &str,
    states: &[&str],
) -> (Vec<pb::AlertChange>, i64) {
    let list: Vec<_> = states
        .iter()
        .map(|st| ("a11", "smoke", sensor, *st))
        .collect();
    let sent = now_ms();
    c.readings(&list).await;
    let marker = format!("{sensor}-marker");
    c.alarm("a11", "gas", &marker).await;
    let key = format!("sensor/{marker}/gas");
    let (_, seen) = until_change(s, pb::ChangeKind::Opened, |a| a.dedup_key == key).await;
    (seen, sent)
}

/// Waits for the resolution of `id` on the stream; checks it came after the flap window.
async fn closes_after_flap_window(
    s: &mut tonic::Streaming<pb::SubscribeAlertsResponse>,
    id: &str,
    sent: i64,
) {
    let (closed, _) = until_change(s, pb::ChangeKind::Resolved, |a| a.id == id).await;
    assert_eq!(closed.resolved_by, "gridsight");
    let at = closed.updated_at.as_ref().map(millis_from_ts).unwrap_or(0);
    assert!(
        at - sent >= 3000,
        "closed {} ms after the readings were sent; the flap window is 3 s",
        at - sent
    );
}

/// Flap: a sensor toggling fast keeps one alert open, marked `flapping`, through its
/// normals; it closes once the sensor stayed normal for the flap window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_sensor_keeps_one_alert_open_until_it_stays_normal() {
    let c = City::start(FLAPPY, "").await;
    let mut s = c.subscribe().await;
    let states = [
        "alarm", "normal", "alarm", "normal", "alarm", "normal", "alarm", "normal",
    ];
    let (seen, sent) = toggle(&c, &mut s, "smk-f", &states).await;
    let key = "sensor/smk-f/smoke";
    let opened: Vec<_> = alerts_of(&seen, pb::ChangeKind::Opened)
        .into_iter()
        .filter(|a| a.dedup_key == key)
        .collect();
    // Before the 4th change it is an ordinary sensor: two alerts opened and closed.
    assert_eq!(opened.len(), 3, "{seen:#?}");
    let last = &opened[2];
    assert!(last.flapping, "{last:?}");
    // The next alarm folded into it (its update goes out within update_interval_ms).
    let (folded, _) = until_change(&mut s, pb::ChangeKind::Updated, |a| {
        a.id == last.id && a.count == 2
    })
    .await;
    assert!(folded.flapping, "{folded:?}");
    let now = c.get(&last.id).await;
    assert!(
        is_open(&now) && now.flapping,
        "stays open through normals: {now:?}"
    );
    assert_eq!(now.count, 2, "the store holds the fold");
    closes_after_flap_window(&mut s, &last.id, sent).await;
}

/// Flap, the sensor becoming flapping on a normal reading (its first reading was normal):
/// the alert it keeps open must be marked `flapping` and close after the flap window too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensor_that_becomes_flapping_on_a_normal_reading_still_closes() {
    let c = City::start(FLAPPY, "").await;
    let mut s = c.subscribe().await;
    let states = ["normal", "alarm", "normal", "alarm", "normal"];
    let (seen, sent) = toggle(&c, &mut s, "smk-g", &states).await;
    let opened: Vec<_> = alerts_of(&seen, pb::ChangeKind::Opened)
        .into_iter()
        .filter(|a| a.dedup_key == "sensor/smk-g/smoke")
        .collect();
    assert_eq!(opened.len(), 2, "{seen:#?}");
    let kept = c.get(&opened[1].id).await;
    assert!(is_open(&kept), "the 4th change made it flapping: {kept:?}");
    assert!(
        kept.flapping,
        "the alert kept open for a flapping sensor is not marked flapping: {kept:?}"
    );
    closes_after_flap_window(&mut s, &kept.id, sent).await;
}

/// Inhibition: a county-wide power outage (a rule alert) mutes the sensor-fault alerts
/// beneath it on every shard within about a second, and un-mutes them when it clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mutes_the_fault_alerts_it_explains_until_it_clears() {
    let inhibit = "[[correlation.inhibit]]\nsource = { rule = \"power-outage\" }\ntarget = { dedup_key_prefix = \"fault/\" }\n";
    let c = City::start("", &format!("{OUTAGE}{inhibit}")).await;
    c.readings(&[
        ("a11", "water_level", "ft-a11", "fault"),
        ("b00", "water_level", "ft-b00", "fault"),
        ("a12", "smoke", "smk-1", "alarm"),
    ])
    .await;
    let faults = [
        c.open_alert("fault/ft-a11").await,
        c.open_alert("fault/ft-b00").await,
    ];
    let smoke = c.open_alert("sensor/smk-1/smoke").await;
    assert!(faults.iter().all(|a| a.inhibited_by.is_empty()));
    let mut s = c.subscribe().await;

    c.readings(&[
        ("a00", "mains_power", "pw-a00", "alarm"),
        ("b00", "mains_power", "pw-b00", "alarm"),
    ])
    .await;
    let (outage, _) = until_change(&mut s, pb::ChangeKind::Opened, |a| {
        a.rule_id == "power-outage"
    })
    .await;
    assert_eq!(outage.grid_id, "county");
    let opened = Instant::now();
    let mut muted = Vec::new();
    while muted.len() < 2 {
        let (_, more) = until_change(&mut s, pb::ChangeKind::Updated, |a| {
            a.inhibited_by == outage.id
        })
        .await;
        muted.extend(
            alerts_of(&more, pb::ChangeKind::Updated)
                .into_iter()
                .filter(|a| a.inhibited_by == outage.id),
        );
    }
    let took = opened.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "muted {took:?} after the outage opened"
    );
    let mut ids: Vec<&str> = muted.iter().map(|a| a.dedup_key.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["fault/ft-a11", "fault/ft-b00"],
        "both towns, both shards"
    );
    assert!(
        c.get(&smoke.id).await.inhibited_by.is_empty(),
        "not a target"
    );
    // A fault while the outage is open is muted as it opens.
    c.readings(&[("a22", "water_level", "ft-a22", "fault")])
        .await;
    let late = c.open_alert("fault/ft-a22").await;
    assert_eq!(late.inhibited_by, outage.id);

    // Power back: the outage clears, the faults speak again.
    c.readings(&[("a00", "mains_power", "pw-a00", "normal")])
        .await;
    until_change(&mut s, pb::ChangeKind::Resolved, |a| a.id == outage.id).await;
    for key in ["fault/ft-a11", "fault/ft-b00", "fault/ft-a22"] {
        wait_for(
            &format!("{key} un-muted"),
            Duration::from_secs(5),
            || async {
                let a = c.open_alert(key).await;
                a.inhibited_by.is_empty().then_some(())
            },
        )
        .await;
    }
}

/// Escalation: an unacknowledged alert climbs its chain (parent grid, then the county);
/// acknowledging stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_alert_escalates_and_an_acknowledged_one_does_not() {
    let chain = "[[correlation.escalation]]\nalerts = { dedup_key_prefix = \"sensor/\" }\n[[correlation.escalation.steps]]\nafter_secs = 2\n[[correlation.escalation.steps]]\nafter_secs = 4\nto_tier = 0\n";
    let c = City::start("", chain).await;
    let mut s = c.subscribe().await;
    // Opened before the third, on its shard: their deadlines all come before its own.
    c.readings(&[
        ("a12", "gas", "gas-1", "alarm"),
        ("a11", "smoke", "smk-2", "alarm"),
    ])
    .await;
    let acked_at_once = c.open_alert("sensor/gas-1/gas").await;
    let acked = c.acknowledge(&acked_at_once).await;
    assert_eq!(acked.status, pb::AlertStatus::Acknowledged as i32);
    let acked_later = c.open_alert("sensor/smk-2/smoke").await;
    c.alarm("a11", "smoke", "smk-1").await;
    let never_acked = c.open_alert("sensor/smk-1/smoke").await;
    assert_eq!(never_acked.severity, pb::Severity::Major as i32);

    let (first, _) = until_change(&mut s, pb::ChangeKind::Escalated, |a| {
        a.id == acked_later.id
    })
    .await;
    assert_eq!(first.escalation_level, 1);
    assert_eq!(first.escalated_to, "town-a", "the grid's parent first");
    assert_eq!(first.severity, pb::Severity::Critical as i32, "one step up");
    let at = first.updated_at.as_ref().map(millis_from_ts).unwrap_or(0);
    let since = first.first_seen.as_ref().map(millis_from_ts).unwrap_or(0);
    assert!(
        at - since >= 2000,
        "escalated {} ms after opening",
        at - since
    );
    // Acknowledged after its first step: it stays there.
    c.acknowledge(&first).await;

    let (top, _) = until_change(&mut s, pb::ChangeKind::Escalated, |a| {
        a.id == never_acked.id && a.escalation_level == 2
    })
    .await;
    assert_eq!(top.escalated_to, "county", "to_tier = 0");
    assert_eq!(top.severity, pb::Severity::Critical as i32);
    let stopped = c.get(&acked_later.id).await;
    assert_eq!(stopped.escalation_level, 1, "{stopped:?}");
    let never = c.get(&acked_at_once.id).await;
    assert_eq!(never.escalation_level, 0, "{never:?}");
    assert_eq!(never.severity, pb::Severity::Major as i32);
    assert!(never.escalated_to.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_alerts_of_a_town_are_grouped_after_the_wait_and_the_group_closes_with_them() {
    let groups = "sensor_clear_on_normal = true\n[[correlation.groups]]\nalerts = { dedup_key_prefix = \"sensor/\" }\ntier = 1\nmin_members = 3\ngroup_wait_secs = 1\ngroup_interval_secs = 1\ntitle = \"{count} sensor alarms in {grid_name}\"\n";
    let c = City::start(groups, "").await;
    let mut s = c.subscribe().await;
    // Two alarms in town-a and one in town-b: no group (town-b is another group).
    c.readings(&[
        ("a00", "water_level", "wl-1", "alarm"),
        ("a11", "water_level", "wl-2", "alarm"),
        ("b00", "water_level", "wl-3", "alarm"),
    ])
    .await;
    // The third in town-a makes a group; its alert opens on the town after the wait.
    c.alarm("a22", "gas", "gas-1").await;
    let sent = Instant::now();
    let (group, _) = until_change(&mut s, pb::ChangeKind::Opened, |a| {
        a.dedup_key.starts_with("group/")
    })
    .await;
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "group_wait_secs = 1"
    );
    assert_eq!(group.grid_id, "town-a");
    let (summary, _) = until_change(&mut s, pb::ChangeKind::Updated, |a| {
        a.id == group.id && a.group_size == 3
    })
    .await;
    assert_eq!(summary.title, "3 sensor alarms in Town A");
    assert_eq!(
        summary.severity,
        pb::Severity::Major as i32,
        "the gas alarm's"
    );
    let members: Vec<pb::Alert> = c
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.parent_id == group.id)
        .collect();
    let mut keys: Vec<&str> = members.iter().map(|a| a.dedup_key.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "sensor/gas-1/gas",
            "sensor/wl-1/water_level",
            "sensor/wl-2/water_level"
        ]
    );
    let b = c.open_alert("sensor/wl-3/water_level").await;
    assert!(
        b.parent_id.is_empty(),
        "town-b's alarm is in no group: {b:?}"
    );
    // Every member back to normal: the group alert is resolved by the daemon.
    c.readings(&[
        ("a00", "water_level", "wl-1", "normal"),
        ("a11", "water_level", "wl-2", "normal"),
        ("a22", "gas", "gas-1", "normal"),
    ])
    .await;
    let (closed, _) = until_change(&mut s, pb::ChangeKind::Resolved, |a| a.id == group.id).await;
    assert_eq!(closed.resolved_by, "gridsight");
}
