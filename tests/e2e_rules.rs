//! End to end: correlation rules through the real binary, a real Mosquitto, the camera farm
//! and real gRPC clients. Each test asserts on what a dispatcher sees on a `Subscribe`
//! stream and through `AlertService`: the worked examples (fire, flooding, raise, absence),
//! merging across shards, a restart in the middle of an open window, a rule reload on
//! SIGHUP, and `check-config` on a bad rule. Noise control is in `e2e_noise`.
//!
//! The map is the tiled town of `common::city` (communities `a00`..`a22` in `town-a`, `b00`
//! in `town-b`, under `county`), with the rules doing all the joining.

mod common;

use std::time::{Duration, Instant};

use common::{city::*, *};
use gridsight_farm::{Content, Fault};
use gridsight_proto::v1 as pb;

const T: Duration = WAIT;

/// The worked example: smoke + camera activity + a safety-hazard report in one grid.
const FIRE: &str = r#"
[[rules]]
id = "fire-confirmed"
title = "Fire confirmed in {grid_name}"
severity = "critical"
window_secs = 120
[[rules.when]]
source = "sensor"
kind = "smoke"
[[rules.when]]
source = "camera"
event = "activity"
min_activity = 3.0
[[rules.when]]
source = "incident"
category = "safety_hazard"
"#;

/// Water in three neighbouring communities: one alert on their town.
const FLOOD: &str = r#"
[[rules]]
id = "flooding"
title = "Flooding in {grid_name}: {count} neighbouring grids"
severity = "major"
pattern = "count"
min_count = 3
distinct = "grid"
adjacent = true
scope = "parent"
window_secs = 600
[[rules.when]]
source = "sensor"
kind = "water_level"
[[rules.clear]]
source = "sensor"
kind = "water_level"
state = "normal"
"#;

/// A camera lost where an alert is open raises that alert.
const BLIND_SPOT: &str = r#"
[[rules]]
id = "blind-spot"
title = "Camera lost on an open alert"
action = "raise"
window_secs = 60
[[rules.when]]
source = "camera"
event = "offline"
[[rules.when]]
source = "alert"
min_severity = "minor"
"#;

/// A manhole cover open and no camera activity around it for 5 s.
const UNATTENDED: &str = r#"
[[rules]]
id = "unattended-manhole"
title = "Manhole open and nobody near in {grid_name}"
severity = "major"
pattern = "absence"
scope = "neighbours"
window_secs = 5
[[rules.when]]
source = "sensor"
kind = "manhole_cover"
[[rules.when]]
source = "camera"
event = "activity"
"#;

/// Fire: smoke on MQTT, activity on a farm camera and a report over gRPC in one grid make
/// one CRITICAL alert holding all three; the single-source alerts are merged into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_smoke_activity_and_a_report_make_one_critical_alert() {
    let (farm, cams) = farm(&[("cam-a11", "a11")]).await;
    let c = City::start("", &format!("{FIRE}{cams}")).await;
    warmed_up(&c.d, "cam-a11").await;
    let mut s = c.subscribe().await;
    farm.set_content("cam-a11", Content::Busy).expect("content");
    let (activity, _) = camera_event(&mut s, "cam-a11", pb::CameraEventKind::Activity).await;
    assert!(activity.activity >= 3.0, "{activity:?}");
    c.alarm("a11", "smoke", "smk-1").await;
    let smoke = c.open_alert("sensor/smk-1/smoke").await;
    assert!(smoke.rule_id.is_empty(), "two of three fire nothing yet");

    let report = pb::ReportIncidentRequest {
        idempotency_key: "fire-1".into(),
        category: pb::IncidentCategory::SafetyHazard as i32,
        item_code: "AQ-0301".into(),
        description: "Smoke coming out of a shop".into(),
        grid_id: "a11".into(),
        location: None,
        reporter_id: "rep-7".into(),
        photo_urls: vec![],
    };
    let inc =
        c.d.incidents()
            .await
            .report(req(report, REPORTER))
            .await
            .expect("report")
            .into_inner()
            .incident
            .expect("incident");
    let mut seen = Vec::new();
    until_merged(&mut s, &mut seen, 2).await;
    let fired: Vec<_> = alerts_of(&seen, pb::ChangeKind::Opened)
        .into_iter()
        .filter(|a| a.rule_id == "fire-confirmed")
        .collect();
    assert_eq!(fired.len(), 1, "{seen:#?}");
    let fire = &fired[0];
    assert_eq!(fire.severity, pb::Severity::Critical as i32);
    assert_eq!(fire.grid_id, "a11");
    assert_eq!(fire.title, "Fire confirmed in Community 11");
    let mut evidence = evidence_of(fire);
    evidence.sort();
    assert_eq!(
        evidence,
        vec![
            "camera:cam-a11:CAMERA_EVENT_KIND_ACTIVITY".to_string(),
            format!("incident:{}", inc.id),
            "sensor:smk-1".to_string(),
        ]
    );
    assert_eq!(fire.camera_ids.first().map(String::as_str), Some("cam-a11"));
    assert_eq!(fire.incident_ids, vec![inc.id.clone()]);
    assert_eq!(inc.alert_id, fire.id, "the report links to the fire alert");

    // The smoke alarm's and the report's own alerts were merged into it.
    let report_alert = alerts_of(&seen, pb::ChangeKind::Opened)
        .into_iter()
        .find(|a| a.dedup_key == format!("incident/{}", inc.id))
        .expect("the report's own alert");
    for id in [&smoke.id, &report_alert.id] {
        let a = c.get(id).await;
        assert_eq!(a.status, pb::AlertStatus::Resolved as i32, "{a:?}");
        assert_eq!(a.merged_into, fire.id);
        assert_eq!(a.resolved_by, "gridsight");
    }
    let open: Vec<String> = c
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.grid_id == "a11" && is_open(a))
        .map(|a| a.id)
        .collect();
    assert_eq!(open, vec![fire.id.clone()], "one open alert in the grid");
    let got =
        c.d.incidents()
            .await
            .get(req(pb::GetIncidentRequest { id: inc.id }, VIEWER))
            .await
            .expect("get incident")
            .into_inner();
    assert_eq!(got.alert_id, fire.id);
    farm.shutdown().await;
}

/// Flooding: water in three adjacent grids opens one MAJOR alert on the town; three that
/// do not touch open none; a normal reading clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_in_three_neighbouring_grids_opens_one_alert_on_the_town() {
    let c = City::start("", FLOOD).await;
    let mut s = c.subscribe().await;
    c.readings(&[
        ("a00", "water_level", "wl-a00", "alarm"),
        ("a02", "water_level", "wl-a02", "alarm"),
        ("a20", "water_level", "wl-a20", "alarm"),
    ])
    .await;
    // Once the last reading's own alert is there, the rule has seen all three.
    c.alert_keyed("sensor/wl-a20/water_level").await;
    assert!(
        c.rule_alerts("flooding").await.is_empty(),
        "grids that do not touch are not a flood"
    );

    c.readings(&[("a01", "water_level", "wl-a01", "alarm")])
        .await;
    let (flood, _) =
        until_change(&mut s, pb::ChangeKind::Opened, |a| a.rule_id == "flooding").await;
    assert_eq!(flood.grid_id, "town-a");
    assert_eq!(flood.severity, pb::Severity::Major as i32);
    assert_eq!(flood.title, "Flooding in Town A: 3 neighbouring grids");
    let mut evidence = evidence_of(&flood);
    evidence.sort();
    assert_eq!(
        evidence,
        ["sensor:wl-a00", "sensor:wl-a01", "sensor:wl-a02"],
        "the connected row, not the lone grid"
    );
    let lone = c.open_alert("sensor/wl-a20/water_level").await;
    assert!(lone.merged_into.is_empty());

    c.readings(&[("a01", "water_level", "wl-a01", "normal")])
        .await;
    let (cleared, _) = until_change(&mut s, pb::ChangeKind::Resolved, |a| a.id == flood.id).await;
    assert_eq!(cleared.resolved_by, "gridsight");
    assert_eq!(
        c.rule_alerts("flooding").await.len(),
        1,
        "one flood alert, ever"
    );
}

/// Raise: a camera going offline in a grid with an open alert raises that alert one step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_going_offline_raises_the_open_alert_of_its_grid() {
    let (farm, cams) = farm(&[("cam-a11", "a11")]).await;
    let c = City::start("", &format!("{BLIND_SPOT}{cams}")).await;
    wait_status(&c.d, "cam-a11", pb::CameraStatus::Online).await;
    c.readings(&[
        ("a11", "smoke", "smk-1", "alarm"),
        ("a00", "smoke", "smk-2", "alarm"),
    ])
    .await;
    let smoke = c.open_alert("sensor/smk-1/smoke").await;
    let elsewhere = c.open_alert("sensor/smk-2/smoke").await;
    assert_eq!(smoke.severity, pb::Severity::Major as i32);
    let mut s = c.subscribe().await;

    farm.set_fault("cam-a11", Fault::Refuse).expect("fault");
    let (raised, seen) = until_change(&mut s, pb::ChangeKind::Updated, |a| a.id == smoke.id).await;
    assert_eq!(
        raised.severity,
        pb::Severity::Critical as i32,
        "one step up"
    );
    assert!(
        evidence_of(&raised).contains(&"camera:cam-a11:CAMERA_EVENT_KIND_OFFLINE".to_string()),
        "{raised:?}"
    );
    let own = alerts_of(&seen, pb::ChangeKind::Opened)
        .into_iter()
        .find(|a| a.dedup_key == "camera/cam-a11/offline")
        .expect("the camera's own offline alert");
    assert_eq!(
        own.severity,
        pb::Severity::Major as i32,
        "not raised by itself"
    );
    assert_eq!(
        c.get(&elsewhere.id).await.severity,
        pb::Severity::Major as i32,
        "an alert in another grid stays"
    );
    farm.shutdown().await;
}

/// Absence: a manhole cover open with no activity nearby opens an alert after the window;
/// with a camera active in a neighbouring grid, none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manhole_open_with_nobody_near_opens_an_alert_after_the_window() {
    let (farm, cams) = farm(&[("cam-a01", "a01")]).await;
    let c = City::start("", &format!("{UNATTENDED}{cams}")).await;
    warmed_up(&c.d, "cam-a01").await;
    let mut s = c.subscribe().await;
    // Near the camera: the activity that follows within the window cancels it.
    c.alarm("a00", "manhole_cover", "mh-a00").await;
    farm.set_content("cam-a01", Content::Busy).expect("content");
    camera_event(&mut s, "cam-a01", pb::CameraEventKind::Activity).await;
    // Far from it, after the activity: nobody comes.
    let sent = Instant::now();
    c.alarm("a22", "manhole_cover", "mh-a22").await;
    let (alert, _) = until_change(&mut s, pb::ChangeKind::Opened, |a| !a.rule_id.is_empty()).await;
    let took = sent.elapsed();
    assert_eq!(alert.rule_id, "unattended-manhole");
    assert_eq!(
        alert.grid_id, "a22",
        "the first due is the far one: {alert:?}"
    );
    assert_eq!(alert.title, "Manhole open and nobody near in Community 22");
    assert!(
        took >= Duration::from_secs(5),
        "opened after {took:?}, the window is 5 s"
    );
    // The near one's deadline passed first, on the same shard: it would be there by now.
    let rule: Vec<String> = c
        .rule_alerts("unattended-manhole")
        .await
        .into_iter()
        .map(|a| a.grid_id)
        .collect();
    assert_eq!(rule, vec!["a22".to_string()]);
    farm.shutdown().await;
}

/// Merging across shards: a county rule's evidence comes from both towns (two shards);
/// the single-source alerts of all of it are merged into the county alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_county_rule_merges_the_single_source_alerts_of_every_town() {
    let c = City::start("", OUTAGE).await;
    c.readings(&[
        ("a00", "mains_power", "pw-a00", "alarm"),
        ("b00", "mains_power", "pw-b00", "alarm"),
    ])
    .await;
    let outage = wait_for("the outage alert", T, || async {
        c.rule_alerts("power-outage").await.into_iter().next()
    })
    .await;
    let mut evidence = evidence_of(&outage);
    evidence.sort();
    assert_eq!(evidence, ["sensor:pw-a00", "sensor:pw-b00"]);
    for key in ["sensor/pw-b00/mains_power", "sensor/pw-a00/mains_power"] {
        wait_for(
            &format!("{key} merged into {}", outage.id),
            Duration::from_secs(5),
            || async {
                let a = c.alert_keyed(key).await;
                (a.merged_into == outage.id && !is_open(&a)).then_some(())
            },
        )
        .await;
    }
}

/// Restart in the middle of an open window: two of three flooded grids, SIGTERM, restart on
/// the same store, the third opens the alert; a stream resumed across the restart has
/// every seq once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_window_keeps_it_and_the_stream_gap_free() {
    let mut c = City::start("", FLOOD).await;
    let mut s = c.subscribe_after(0).await;
    let (_, start) = read_snapshot(&mut s, T).await;
    c.readings(&[
        ("a00", "water_level", "wl-a00", "alarm"),
        ("a01", "water_level", "wl-a01", "alarm"),
    ])
    .await;
    let (_, before) = until_change(&mut s, pb::ChangeKind::Opened, |a| {
        a.dedup_key == "sensor/wl-a01/water_level"
    })
    .await;
    let cursor = before.last().map(|c| c.seq).expect("seq");
    let mut seqs: Vec<u64> = before.iter().map(|c| c.seq).collect();
    drop(s);

    let (code, _) = c.d.terminate();
    assert_eq!(code, Some(0), "{}", c.d.log());
    c.d = Daemon::start(&c.cfg).await;
    let mut s = c.subscribe_after(cursor).await;
    c.readings(&[("a02", "water_level", "wl-a02", "alarm")])
        .await;
    let (flood, mut after) =
        until_change(&mut s, pb::ChangeKind::Opened, |a| a.rule_id == "flooding").await;
    let mut evidence = evidence_of(&flood);
    evidence.sort();
    assert_eq!(
        evidence,
        ["sensor:wl-a00", "sensor:wl-a01", "sensor:wl-a02"],
        "the window survived the restart"
    );
    // The three grids' alerts, two of them from before the restart, merged into it.
    until_merged(&mut s, &mut after, 3).await;
    assert!(alerts_of(&after, pb::ChangeKind::Resolved)
        .iter()
        .all(|a| a.merged_into == flood.id));
    seqs.extend(after.iter().map(|c| c.seq));
    let want: Vec<u64> = (start + 1..start + 1 + seqs.len() as u64).collect();
    assert_eq!(
        seqs, want,
        "every change once, in order, across the restart"
    );
}

/// SIGHUP with a new rule set: the window of an unchanged rule survives, a changed rule
/// starts afresh, a new rule works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_windows_of_unchanged_rules_and_adds_new_ones() {
    let pair = |title: &str| {
        format!(
            "[[rules]]\nid = \"smoke-pair\"\ntitle = \"{title}\"\npattern = \"count\"\nmin_count = 2\nwindow_secs = 600\n[[rules.when]]\nsource = \"sensor\"\nkind = \"smoke\"\n"
        )
    };
    let gas = "[[rules]]\nid = \"gas-leak\"\ntitle = \"Gas leak in {grid_name}\"\nseverity = \"critical\"\nwindow_secs = 60\n[[rules.when]]\nsource = \"sensor\"\nkind = \"gas\"\n";
    let old = format!("{FLOOD}{}", pair("Two smoke alarms"));
    let c = City::start("", &old).await;
    c.readings(&[
        ("a00", "water_level", "wl-a00", "alarm"),
        ("a01", "water_level", "wl-a01", "alarm"),
        ("b00", "smoke", "smk-1", "alarm"),
    ])
    .await;
    c.open_alert("sensor/smk-1/smoke").await;

    let text = std::fs::read_to_string(&c.cfg).expect("config");
    let new = format!("{FLOOD}{}{gas}", pair("Smoke twice in {grid_name}"));
    std::fs::write(&c.cfg, text.replace(&old, &new)).expect("write config");
    let _ = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(c.d.pid().to_string())
        .status();
    wait_for("the rules to be reloaded", T, || async {
        c.d.log().contains("rules reloaded").then_some(())
    })
    .await;

    let mut s = c.subscribe().await;
    c.readings(&[
        ("a02", "water_level", "wl-a02", "alarm"),
        ("b00", "smoke", "smk-2", "alarm"),
        ("a11", "gas", "gas-1", "alarm"),
    ])
    .await;
    let (flood, _) =
        until_change(&mut s, pb::ChangeKind::Opened, |a| a.rule_id == "flooding").await;
    assert_eq!(
        flood.evidence.len(),
        3,
        "the flood window survived the reload"
    );
    let leak = wait_for("the new rule's alert", T, || async {
        c.rule_alerts("gas-leak").await.into_iter().next()
    })
    .await;
    assert_eq!(leak.title, "Gas leak in Community 11");
    assert_eq!(leak.severity, pb::Severity::Critical as i32);
    // The changed rule lost its window: one smoke alarm since is not two.
    c.alert_keyed("sensor/smk-2/smoke").await;
    assert!(c.rule_alerts("smoke-pair").await.is_empty());
}

/// `check-config` names the file, line and field of a bad rule and of bad noise control.
#[test]
fn check_config_names_the_line_and_field_of_a_bad_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = DaemonOpts::new(None);
    o.grids = town();
    o.extra = format!(
        "{}[[correlation.inhibit]]\nsource = {{ rule = \"no-such-rule\" }}\ntarget = {{ dedup_key_prefix = \"fault/\" }}\n",
        FIRE.replace("event = \"activity\"", "event = \"exploded\"")
    );
    let path = write_config(dir.path(), &o);
    let text = std::fs::read_to_string(&path).expect("config");
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .expect("line")
    };
    let out = std::process::Command::new(binary())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run check-config");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display();
    for (line, field) in [
        (line_of("\"exploded\""), "rules[0].when[1].event"),
        (
            line_of("no-such-rule"),
            "correlation.inhibit[0].source.rule",
        ),
    ] {
        let want = format!("{file}:{line}: {field}: ");
        assert!(err.contains(&want), "`{want}` not in:\n{err}");
    }
}
