//! Rule tests on the pure engine: the worked examples, each pattern, clears, reloads, and
//! property tests against a reference model and across a restart (journal replay).

use crate::domain::AlertChange;
use std::sync::Arc;

use gridsight_proto::{ts_from_millis, v1 as pb};
use proptest::prelude::*;

use crate::{
    config::{CorrelationConfig, GridConfig, RuleConfig},
    correlate::engine::Engine,
    domain::{GridIndex, SensorEvent, SensorState},
    store::Ids,
};

use super::RuleSet;

/// county → town-a (3×3 communities a00..a22) and town-b (b00, east of a02... a22).
pub(crate) fn city() -> Vec<GridConfig> {
    let rect = |x: f64, y: f64| {
        let (w, s) = (120.0 + x * 0.01, 30.0 + y * 0.01);
        vec![
            [w, s],
            [w + 0.01, s],
            [w + 0.01, s + 0.01],
            [w, s + 0.01],
            [w, s],
        ]
    };
    let mut g = vec![
        GridConfig {
            id: "county".into(),
            name: "County".into(),
            parent: None,
            polygon: vec![],
        },
        GridConfig {
            id: "town-a".into(),
            name: "Town A".into(),
            parent: Some("county".into()),
            polygon: vec![],
        },
        GridConfig {
            id: "town-b".into(),
            name: "Town B".into(),
            parent: Some("county".into()),
            polygon: vec![],
        },
    ];
    for y in 0..3 {
        for x in 0..3 {
            g.push(GridConfig {
                id: format!("a{y}{x}"),
                name: format!("Community {y}{x}"),
                parent: Some("town-a".into()),
                polygon: rect(x as f64, y as f64),
            });
        }
    }
    g.push(GridConfig {
        id: "b00".into(),
        name: "East community".into(),
        parent: Some("town-b".into()),
        polygon: rect(3.0, 0.0),
    });
    g
}

pub(crate) fn rules(text: &str) -> Vec<RuleConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        rules: Vec<RuleConfig>,
    }
    let f: File = toml::from_str(text).expect("rules parse");
    let errs = crate::config::rules::validate(&f.rules, 2);
    assert!(errs.is_empty(), "{errs:?}");
    f.rules
}

pub(crate) fn engine_with(text: &str) -> Engine {
    engine_sharing(text, Arc::new(Ids::default()))
}

/// An engine allocating ids from `ids` (a restarted daemon continues its counters).
pub(crate) fn engine_sharing(text: &str, ids: Arc<Ids>) -> Engine {
    let cfg = CorrelationConfig {
        window_secs: 0,
        ..Default::default()
    };
    let mut e = Engine::new(cfg, ids);
    e.set_grids(Arc::new(GridIndex::new(&city())));
    e.set_rules(Arc::new(RuleSet::new(&rules(text))));
    e
}

pub(crate) fn sensor(id: &str, kind: &str, grid: &str, state: SensorState, at: i64) -> SensorEvent {
    SensorEvent {
        sensor_id: id.into(),
        kind: kind.into(),
        grid_id: grid.into(),
        state,
        reading: Some(1.0),
        device_ms: at,
        receive_ms: at,
        location: None,
    }
}

pub(crate) fn camera(
    id: &str,
    grid: &str,
    kind: pb::CameraEventKind,
    activity: f64,
    at: i64,
) -> pb::CameraEvent {
    pb::CameraEvent {
        camera_id: id.into(),
        kind: kind as i32,
        time: Some(ts_from_millis(at)),
        grid_ids: vec![grid.into()],
        activity,
        detail: String::new(),
    }
}

pub(crate) fn report(id: &str, grid: &str, cat: pb::IncidentCategory, at: i64) -> pb::Incident {
    pb::Incident {
        id: id.into(),
        grid_id: grid.into(),
        category: cat as i32,
        item_code: "AQ-01".into(),
        description: "smoke from a shop".into(),
        reported_at: Some(ts_from_millis(at)),
        ..Default::default()
    }
}

/// The demo's worked example: smoke + camera activity + a safety report in one grid.
pub(crate) const FIRE: &str = r#"
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

fn opened(changes: &[AlertChange]) -> Vec<pb::Alert> {
    changes
        .iter()
        .filter(|c| c.kind == pb::ChangeKind::Opened as i32)
        .filter_map(|c| c.alert.as_deref().cloned())
        .collect()
}

#[test]
fn smoke_activity_and_a_report_make_one_critical_alert_with_three_pieces_of_evidence() {
    use pb::CameraEventKind as K;
    let mut e = engine_with(FIRE);
    let smoke = e.on_sensor(
        1,
        &sensor("smk-1", "smoke", "a11", SensorState::Alarm, 1_000),
    );
    let smoke_alert = opened(&smoke)[0].clone();
    assert!(e
        .on_camera(&camera("cam-1", "a11", K::Activity, 4.0, 20_000), 20_000)
        .is_empty());
    let (inc, changes) = e.on_incident(
        report("inc-1", "a11", pb::IncidentCategory::SafetyHazard, 30_000),
        30_000,
    );
    let fired: Vec<_> = opened(&changes)
        .into_iter()
        .filter(|a| a.rule_id == "fire-confirmed")
        .collect();
    assert_eq!(fired.len(), 1, "{changes:#?}");
    let fire = &fired[0];
    assert_eq!(fire.severity, pb::Severity::Critical as i32);
    assert_eq!(fire.evidence.len(), 3);
    assert_eq!(fire.title, "Fire confirmed in Community 11");
    assert_eq!(fire.dedup_key, "rule/fire-confirmed/a11");
    assert_eq!(
        fire.camera_ids[0], "cam-1",
        "the active camera is shown first"
    );
    assert_eq!(fire.incident_ids, vec!["inc-1".to_string()]);
    assert_eq!(
        inc.alert_id, fire.id,
        "the report links to the correlated alert"
    );
    // The single-source alerts were merged: one open alert remains.
    let merged: Vec<_> = changes
        .iter()
        .filter_map(|c| c.alert.as_ref())
        .filter(|a| a.merged_into == fire.id)
        .map(|a| a.id.clone())
        .collect();
    assert!(merged.contains(&smoke_alert.id), "{merged:?}");
    assert_eq!(e.open_count(), 1);
    // The smoke sensor's repeats now fold into the correlated alert.
    let again = e.on_sensor(
        2,
        &sensor("smk-1", "smoke", "a11", SensorState::Alarm, 40_000),
    );
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].alert.as_ref().map(|a| a.id.clone()),
        Some(fire.id.clone())
    );
}

#[test]
fn the_fire_rule_needs_all_three_in_one_grid_within_the_window() {
    use pb::CameraEventKind as K;
    let mut e = engine_with(FIRE);
    e.on_sensor(1, &sensor("smk-1", "smoke", "a11", SensorState::Alarm, 0));
    // Activity in another grid, and a report after the window: nothing fires.
    e.on_camera(&camera("cam-2", "a12", K::Activity, 9.0, 10_000), 10_000);
    e.on_camera(&camera("cam-1", "a11", K::Activity, 2.0, 10_000), 10_000);
    let (_, changes) = e.on_incident(
        report("inc-1", "a11", pb::IncidentCategory::SafetyHazard, 60_000),
        60_000,
    );
    assert!(changes
        .iter()
        .all(|c| c.alert.as_ref().is_some_and(|a| a.rule_id.is_empty())));
    e.on_camera(&camera("cam-1", "a11", K::Activity, 5.0, 200_000), 200_000);
    let (_, changes) = e.on_incident(
        report("inc-2", "a11", pb::IncidentCategory::Dispute, 201_000),
        201_000,
    );
    assert!(changes
        .iter()
        .all(|c| c.alert.as_ref().is_some_and(|a| a.rule_id.is_empty())));
}

#[test]
fn water_in_three_neighbouring_grids_opens_one_major_alert_on_the_town() {
    let mut e = engine_with(FLOOD);
    let w = |e: &mut Engine, id: u64, grid: &str, at: i64| {
        e.on_sensor(
            id,
            &sensor(
                &format!("wl-{grid}"),
                "water_level",
                grid,
                SensorState::Alarm,
                at,
            ),
        )
    };
    // Three grids of town-a that do not touch each other: nothing.
    assert!(opened(&w(&mut e, 1, "a00", 1_000))
        .iter()
        .all(|a| a.rule_id.is_empty()));
    w(&mut e, 2, "a02", 2_000);
    let none = w(&mut e, 3, "a20", 3_000);
    assert!(
        opened(&none).iter().all(|a| a.rule_id.is_empty()),
        "{none:#?}"
    );
    // a01 joins a00 and a02 into a connected row of three.
    let row = w(&mut e, 4, "a01", 4_000);
    let town: Vec<_> = opened(&row)
        .into_iter()
        .filter(|a| a.rule_id == "flooding")
        .collect();
    assert_eq!(town.len(), 1, "{row:#?}");
    assert_eq!(town[0].grid_id, "town-a");
    assert_eq!(town[0].severity, pb::Severity::Major as i32);
    assert_eq!(town[0].evidence.len(), 3);
    assert_eq!(town[0].title, "Flooding in Town A: 3 neighbouring grids");
    // More water folds into it; a normal reading clears it.
    let more = w(&mut e, 5, "a11", 5_000);
    assert!(more.iter().any(|c| c
        .alert
        .as_ref()
        .is_some_and(|a| a.id == town[0].id && a.count >= 4)));
    let clear = e.on_sensor(
        6,
        &sensor("wl-a01", "water_level", "a01", SensorState::Normal, 6_000),
    );
    assert!(clear
        .iter()
        .any(|c| c.kind == pb::ChangeKind::Resolved as i32
            && c.alert.as_ref().is_some_and(|a| a.id == town[0].id)));
}

#[test]
fn a_camera_going_offline_raises_the_open_alert_of_its_grid() {
    use pb::CameraEventKind as K;
    let mut e = engine_with(
        r#"
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
"#,
    );
    let smoke =
        opened(&e.on_sensor(1, &sensor("smk-1", "smoke", "a11", SensorState::Alarm, 0)))[0].clone();
    assert_eq!(smoke.severity, pb::Severity::Major as i32);
    let changes = e.on_camera(&camera("cam-1", "a11", K::Offline, 0.0, 5_000), 5_000);
    let raised: Vec<_> = changes
        .iter()
        .filter_map(|c| c.alert.as_ref())
        .filter(|a| a.id == smoke.id)
        .collect();
    assert_eq!(raised.len(), 1, "{changes:#?}");
    assert_eq!(raised[0].severity, pb::Severity::Critical as i32);
    // The camera's own alert is not raised by its own event, and raising happens once.
    let cam = opened(&changes)[0].clone();
    assert_eq!(cam.severity, pb::Severity::Major as i32);
    let again = e.on_camera(&camera("cam-2", "a11", K::Offline, 0.0, 6_000), 6_000);
    assert!(again
        .iter()
        .filter_map(|c| c.alert.as_ref())
        .all(|a| a.id != smoke.id));
    // A camera offline in a grid without an open alert raises nothing.
    let elsewhere = e.on_camera(&camera("cam-3", "a00", K::Offline, 0.0, 7_000), 7_000);
    assert_eq!(elsewhere.len(), 1);
}

#[test]
fn absence_fires_when_the_second_event_never_comes() {
    use pb::CameraEventKind as K;
    let text = r#"
[[rules]]
id = "unattended-manhole"
title = "Manhole open and nobody near in {grid_name}"
severity = "major"
pattern = "absence"
scope = "neighbours"
window_secs = 300
[[rules.when]]
source = "sensor"
kind = "manhole_cover"
[[rules.when]]
source = "camera"
event = "activity"
"#;
    let mut e = engine_with(text);
    e.on_sensor(
        1,
        &sensor("mh-1", "manhole_cover", "a11", SensorState::Alarm, 0),
    );
    assert!(e
        .tick(299_000)
        .iter()
        .all(|c| c.alert.as_ref().is_some_and(|a| a.rule_id.is_empty())));
    let fired = e.tick(300_500);
    let rule: Vec<_> = opened(&fired)
        .into_iter()
        .filter(|a| !a.rule_id.is_empty())
        .collect();
    assert_eq!(rule.len(), 1, "{fired:#?}");
    assert_eq!(rule[0].grid_id, "a11");
    // Activity in a neighbouring grid within the window prevents it.
    let mut e = engine_with(text);
    e.on_sensor(
        1,
        &sensor("mh-1", "manhole_cover", "a11", SensorState::Alarm, 0),
    );
    e.on_camera(&camera("cam-9", "a12", K::Activity, 2.0, 100_000), 100_000);
    assert!(opened(&e.tick(400_000))
        .iter()
        .all(|a| a.rule_id.is_empty()));
}

#[test]
fn a_sequence_needs_its_order() {
    let text = r#"
[[rules]]
id = "gas-then-smoke"
title = "Gas then smoke at {grid}"
severity = "critical"
pattern = "sequence"
window_secs = 60
[[rules.when]]
source = "sensor"
kind = "gas"
[[rules.when]]
source = "sensor"
kind = "smoke"
"#;
    let mut e = engine_with(text);
    e.on_sensor(1, &sensor("s-1", "smoke", "a00", SensorState::Alarm, 0));
    let c = e.on_sensor(2, &sensor("g-1", "gas", "a00", SensorState::Alarm, 1_000));
    assert!(opened(&c).iter().all(|a| a.rule_id.is_empty()));
    let c = e.on_sensor(3, &sensor("s-2", "smoke", "a00", SensorState::Alarm, 2_000));
    assert_eq!(
        opened(&c)
            .iter()
            .filter(|a| a.rule_id == "gas-then-smoke")
            .count(),
        1
    );
}

#[test]
fn a_reload_keeps_the_windows_of_unchanged_rules() {
    let mut e = engine_with(FLOOD);
    for (i, g) in ["a00", "a01"].iter().enumerate() {
        e.on_sensor(
            i as u64,
            &sensor(
                &format!("wl-{g}"),
                "water_level",
                g,
                SensorState::Alarm,
                1_000,
            ),
        );
    }
    let mut both = rules(FLOOD);
    both.extend(rules(FIRE));
    e.set_rules(Arc::new(RuleSet::new(&both)));
    let c = e.on_sensor(
        9,
        &sensor("wl-a02", "water_level", "a02", SensorState::Alarm, 2_000),
    );
    assert_eq!(
        opened(&c)
            .iter()
            .filter(|a| a.rule_id == "flooding")
            .count(),
        1
    );
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    Smoke(usize, i64),
    Report(usize, i64),
    Resolve(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            (0..3usize, 0..90_000i64).prop_map(|(g, dt)| Step::Smoke(g, dt)),
            (0..3usize, 0..90_000i64).prop_map(|(g, dt)| Step::Report(g, dt)),
            (0..3usize).prop_map(Step::Resolve),
        ],
        1..60,
    )
}

const PAIR: &str = r#"
[[rules]]
id = "pair"
title = "Smoke and a report"
severity = "critical"
window_secs = 120
merge = false
[[rules.when]]
source = "sensor"
kind = "smoke"
[[rules.when]]
source = "incident"
"#;

const GRIDS: [&str; 3] = ["a00", "a11", "b00"];

/// Runs the steps on an engine; returns every change.
fn run(e: &mut Engine, steps: &[Step], start: i64) -> (Vec<AlertChange>, i64) {
    run_from(e, steps, 0, start)
}

/// The reference model of the `pair` rule: per grid, the times of smoke and reports in the
/// window, and whether its alert is open; returns (opened, folded) per grid.
fn model(steps: &[Step]) -> [(u32, u32); 3] {
    let mut now = 0;
    let mut open = [false; 3];
    let mut smoke: [Vec<i64>; 3] = Default::default();
    let mut reports: [Vec<i64>; 3] = Default::default();
    let mut out = [(0, 0); 3];
    for s in steps {
        let (g, is_smoke) = match s {
            Step::Smoke(g, dt) => {
                now += dt;
                (*g, true)
            }
            Step::Report(g, dt) => {
                now += dt;
                (*g, false)
            }
            Step::Resolve(g) => {
                now += 1;
                open[*g] = false;
                continue;
            }
        };
        if open[g] {
            out[g].1 += 1;
            continue;
        }
        if is_smoke {
            smoke[g].push(now)
        } else {
            reports[g].push(now)
        }
        let horizon = now - 120_000;
        smoke[g].retain(|t| *t >= horizon);
        reports[g].retain(|t| *t >= horizon);
        if !smoke[g].is_empty() && !reports[g].is_empty() {
            open[g] = true;
            out[g].0 += 1;
            smoke[g].clear();
            reports[g].clear();
        }
    }
    out
}

/// (alerts opened, events folded into them) per grid, as the changes show them: the
/// folds are what an alert's `count` grew by after it opened (repeats are coalesced, so
/// one update may carry several).
fn tally(changes: &[AlertChange]) -> [(u32, u32); 3] {
    let mut out = [(0, 0); 3];
    // Per alert: its grid, its count when opened, the highest count seen.
    let mut counts: std::collections::BTreeMap<String, (usize, u64, u64)> = Default::default();
    for c in changes {
        let Some(a) = c.alert.as_ref().filter(|a| a.rule_id == "pair") else {
            continue;
        };
        let g = GRIDS
            .iter()
            .position(|g| *g == a.grid_id)
            .expect("known grid");
        if c.kind == pb::ChangeKind::Opened as i32 {
            out[g].0 += 1;
            counts.insert(a.id.clone(), (g, a.count, a.count));
        } else if let Some(entry) = counts.get_mut(&a.id) {
            entry.2 = entry.2.max(a.count);
        }
    }
    for (g, opened, last) in counts.into_values() {
        out[g].1 += (last - opened) as u32;
    }
    out
}

/// At no point two open alerts with one key.
fn one_open_per_key(changes: &[AlertChange]) -> Result<(), TestCaseError> {
    let mut open: std::collections::HashMap<String, String> = Default::default();
    for a in changes.iter().filter_map(|c| c.alert.as_ref()) {
        if a.status == pb::AlertStatus::Resolved as i32 {
            open.retain(|_, id| *id != a.id);
        } else if let Some(other) = open.insert(a.dedup_key.clone(), a.id.clone()) {
            prop_assert_eq!(&other, &a.id, "two open alerts for {}", a.dedup_key);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn the_engine_agrees_with_the_reference_model(steps in steps()) {
        let mut e = engine_with(PAIR);
        let (changes, _) = run(&mut e, &steps, 0);
        prop_assert_eq!(tally(&changes), model(&steps));
        one_open_per_key(&changes)?;
    }

    #[test]
    fn a_restart_in_the_middle_of_a_window_changes_nothing(
        steps in steps(), cut in 0usize..60,
    ) {
        let cut = cut.min(steps.len());
        let before = &steps[..cut];
        // All live.
        let mut live = engine_with(PAIR);
        let (all, _) = run(&mut live, &steps, 0);
        // Live up to the cut, then a new engine restored from the open alerts and the
        // journal of the window, then the rest.
        let ids = Arc::new(Ids::default());
        let mut first = engine_sharing(PAIR, ids.clone());
        let (mut seen, now) = run(&mut first, before, 0);
        let mut second = engine_sharing(PAIR, ids);
        let mut last: std::collections::HashMap<String, pb::Alert> = Default::default();
        for a in seen.iter().filter_map(|c| c.alert.as_deref().cloned()) {
            last.insert(a.id.clone(), a);
        }
        for a in last.into_values().filter(|a| a.status != pb::AlertStatus::Resolved as i32) {
            second.restore(a);
        }
        for a in seen.iter().filter_map(|c| c.alert.as_ref()) {
            if a.status == pb::AlertStatus::Resolved as i32 && !a.rule_id.is_empty() {
                let at = a.updated_at.as_ref().map(gridsight_proto::millis_from_ts).unwrap_or(0);
                second.note_closed(a.dedup_key.clone(), at);
            }
        }
        let mut t = 0;
        for (i, s) in before.iter().enumerate() {
            let obs = match s {
                Step::Smoke(g, dt) => { t += dt; super::Obs::sensor(i as u64, &sensor(&format!("smk-{g}"), "smoke", GRIDS[*g], SensorState::Alarm, t)) }
                Step::Report(g, dt) => { t += dt; super::Obs::incident(&report(&format!("inc-0-{i}"), GRIDS[*g], pb::IncidentCategory::Dispute, t), t) }
                Step::Resolve(_) => { t += 1; continue }
            };
            if obs.at >= now - 120_000 {
                second.replay(obs);
            }
        }
        // The rest continues with the same incident ids the live run used.
        let (rest, _) = run_from(&mut second, &steps, cut, now);
        seen.extend(rest);
        prop_assert_eq!(tally(&seen), tally(&all));
        one_open_per_key(&seen)?;
    }
}

/// Like [`run`], from step `from` with the clock at `now`, numbering as a full run would.
fn run_from(e: &mut Engine, steps: &[Step], from: usize, now: i64) -> (Vec<AlertChange>, i64) {
    let mut out = Vec::new();
    let mut now = now;
    for (i, s) in steps.iter().enumerate().skip(from) {
        let (c, n) = run_one(e, s, i, now, &out);
        out.extend(c);
        now = n;
    }
    // What a shard sends when it stops: the updates still held back.
    out.extend(e.drain());
    (out, now)
}

fn run_one(
    e: &mut Engine,
    s: &Step,
    i: usize,
    mut now: i64,
    seen: &[AlertChange],
) -> (Vec<AlertChange>, i64) {
    let out = match s {
        Step::Smoke(g, dt) => {
            now += dt;
            e.on_sensor(
                i as u64,
                &sensor(
                    &format!("smk-{g}"),
                    "smoke",
                    GRIDS[*g],
                    SensorState::Alarm,
                    now,
                ),
            )
        }
        Step::Report(g, dt) => {
            now += dt;
            e.on_incident(
                report(
                    &format!("inc-0-{i}"),
                    GRIDS[*g],
                    pb::IncidentCategory::Dispute,
                    now,
                ),
                now,
            )
            .1
        }
        Step::Resolve(g) => {
            now += 1;
            let key = format!("rule/pair/{}", GRIDS[*g]);
            let Some(id) = e.open_id(&key) else {
                return (Vec::new(), now);
            };
            let version = e.open_version(&id).unwrap_or(0);
            let _ = seen;
            let cmd = crate::correlate::Command {
                alert_id: id,
                action: crate::correlate::Action::Resolve,
                expected_version: version,
                actor: "op".into(),
                note: String::new(),
            };
            e.command(&cmd, now).into_iter().collect()
        }
    };
    (out, now)
}

/// Routing copies: only readings some rule may anchor in another partition need one.
#[test]
fn a_reading_crosses_partitions_only_when_some_rule_reaches_past_its_own() {
    let set = RuleSet::new(&rules(
        r#"
[[rules]]
id = "smoke-here"
title = "t"
severity = "major"
window_secs = 60
[[rules.when]]
source = "sensor"
kind = "smoke"
[[rules.when]]
source = "incident"

[[rules]]
id = "water-town"
title = "t"
severity = "major"
window_secs = 60
pattern = "count"
min_count = 3
scope = "parent"
[[rules.when]]
source = "sensor"
kind = "water_level"
[[rules.clear]]
source = "sensor"
kind = "water_level"
state = "normal"

[[rules]]
id = "gas-near"
title = "t"
severity = "major"
window_secs = 60
pattern = "count"
min_count = 2
scope = "neighbours"
[[rules.when]]
source = "sensor"
kind = "gas"
"#,
    ));
    use SensorState::{Alarm, Normal};
    // Partitions are towns (tier 1); communities are at depth 2.
    assert!(!set.sensor_may_cross("smoke", Alarm, 2, 1), "grid scope");
    assert!(
        !set.sensor_may_cross("water_level", Normal, 2, 1),
        "the parent is the town"
    );
    assert!(
        set.sensor_may_cross("water_level", Normal, 1, 1),
        "a town's parent is above"
    );
    assert!(
        set.sensor_may_cross("gas", Alarm, 2, 1),
        "neighbours may be in another town"
    );
    assert!(
        !set.sensor_may_cross("gas", Normal, 2, 1),
        "no rule wants a normal gas reading"
    );
}

#[test]
fn an_event_is_offered_only_to_the_rules_naming_its_kind_or_none() {
    let set = RuleSet::new(&rules(&format!(
        "{FIRE}{}",
        r#"
[[rules]]
id = "any-sensor"
title = "t"
severity = "major"
window_secs = 60
pattern = "count"
min_count = 2
[[rules.when]]
source = "sensor"
"#
    )));
    use crate::config::Source::{Camera, Incident, Sensor};
    let ids = |list: &[usize]| -> Vec<String> {
        list.iter().map(|&i| set.rules[i].cfg.id.clone()).collect()
    };
    assert_eq!(
        ids(set.candidates_of_kind(Sensor, "smoke")),
        ["fire-confirmed", "any-sensor"]
    );
    assert_eq!(ids(set.candidates_of_kind(Sensor, "gas")), ["any-sensor"]);
    assert_eq!(
        ids(set.candidates_of_kind(Camera, "activity")),
        ["fire-confirmed"]
    );
    assert!(set.candidates_of_kind(Camera, "offline").is_empty());
    assert_eq!(
        ids(set.candidates_of_kind(Incident, "")),
        ["fire-confirmed"]
    );
}

#[test]
fn the_near_cache_keeps_the_points_in_use_across_generations() {
    let grids = GridIndex::new(&city());
    let mut near = super::NearCache::with_limit(4);
    let hot = [120.015, 30.015];
    let want = grids.grids_within_indices(hot, 300.0, None);
    assert!(!want.is_empty(), "the test point is inside the city");
    let first = near.grids_within(&grids, hot, 300.0, None);
    // Many other points, the hot one asked about in between: it is never recomputed
    // (the same shared answer comes back), and the cache stays bounded.
    for i in 0..50 {
        let p = [120.0 + f64::from(i) * 1e-4, 30.0];
        near.grids_within(&grids, p, 300.0, None);
        let again = near.grids_within(&grids, hot, 300.0, None);
        assert!(
            Arc::ptr_eq(&first, &again),
            "recomputed after {i} other points"
        );
        assert!(near.held() <= 8, "{} answers held", near.held());
    }
    assert_eq!(&*first, &*want.into_boxed_slice());
    // A point asked once is dropped after two generations of others.
    let cold = [120.005, 30.025];
    let cold_first = near.grids_within(&grids, cold, 300.0, None);
    for i in 0..20 {
        near.grids_within(&grids, [120.0, 30.0 + f64::from(i) * 1e-4], 300.0, None);
    }
    let cold_again = near.grids_within(&grids, cold, 300.0, None);
    assert!(!Arc::ptr_eq(&cold_first, &cold_again));
    assert_eq!(cold_first, cold_again);
}

#[test]
fn sensor_readings_are_asked_about_by_kind_and_state() {
    let any_kind = r#"
[[rules]]
id = "faulty"
title = "Faulty sensors in {grid_name}"
severity = "warning"
window_secs = 60
[[rules.when]]
source = "sensor"
state = "fault"
[[rules.clear]]
source = "sensor"
state = "normal"
"#;
    let set = RuleSet::new(&rules(&format!("{FIRE}{FLOOD}{any_kind}")));
    let clearing = |kind, state| set.sensor_clearing_rules(kind, state).collect::<Vec<_>>();
    // A kind a condition names: its own conditions and those naming no kind.
    assert!(set.wants_sensor("smoke", SensorState::Alarm));
    assert!(set.sensor_when_wants("smoke", SensorState::Alarm));
    assert!(!set.sensor_when_wants("smoke", SensorState::Normal));
    assert!(
        set.wants_sensor("smoke", SensorState::Normal),
        "the any-kind clear"
    );
    assert_eq!(clearing("water_level", SensorState::Normal), [1, 2]);
    assert_eq!(clearing("smoke", SensorState::Normal), [2]);
    assert!(clearing("water_level", SensorState::Alarm).is_empty());
    // A kind no condition names: only the conditions naming no kind.
    assert!(!set.wants_sensor("gas", SensorState::Alarm));
    assert!(set.sensor_when_wants("gas", SensorState::Fault));
    assert_eq!(clearing("gas", SensorState::Normal), [2]);
    // Without the any-kind rule, a normal smoke reading concerns nothing.
    let set = RuleSet::new(&rules(&format!("{FIRE}{FLOOD}")));
    assert!(!set.wants_sensor("smoke", SensorState::Normal));
    assert!(!set.wants_sensor("gas", SensorState::Fault));
    assert!(set.wants_sensor("water_level", SensorState::Normal));
}

#[test]
fn anchors_told_apart_by_pointer_are_the_anchors_told_apart_by_name() {
    let mut text = String::new();
    for (i, scope) in ["grid", "neighbours", "parent", "tier"].iter().enumerate() {
        let withins: &[&str] = if matches!(*scope, "grid" | "neighbours") {
            &["", "within_m = 1500.0\n"]
        } else {
            &[""]
        };
        for within in withins {
            let tier = if *scope == "tier" { "tier = 1\n" } else { "" };
            text.push_str(&format!(
                "[[rules]]\nid = \"r{i}{}\"\ntitle = \"t\"\nseverity = \"major\"\n\
                 scope = \"{scope}\"\n{tier}{within}window_secs = 60\n\
                 [[rules.when]]\nsource = \"sensor\"\nkind = \"smoke\"\n\n",
                within.len()
            ));
        }
    }
    let set = RuleSet::new(&rules(&text));
    let grids = GridIndex::new(&city());
    let mut compared = 0;
    for g in city().iter().map(|g| g.id.clone()) {
        let ev = sensor("s-1", "smoke", &g, SensorState::Alarm, 1_000);
        // As an event arrives: its grid a name of its own, not the index's.
        let by_name = super::Obs::sensor(1, &ev);
        assert!(!by_name.indexed_grids);
        // As the rule layer hands it on: the index's own grid.
        let mut by_pointer = super::Obs::sensor(1, &ev);
        by_pointer.grids = vec![grids.shared(&g).expect("a known grid").clone()];
        by_pointer.indexed_grids = true;
        for rule in &set.rules {
            let (a, b) = (
                rule.anchors(&by_name, &grids),
                rule.anchors(&by_pointer, &grids),
            );
            assert_eq!(a, b, "rule {} at {g}", rule.cfg.id);
            let mut unique = b.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), b.len(), "no anchor twice: {b:?}");
            compared += b.len();
        }
    }
    assert!(compared > 50, "{compared} anchors compared");
}
