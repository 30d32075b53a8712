//! End to end: the spatial model in the real binary. A report with only a location gets
//! the grid it lies in (the deepest), one in no grid is `INVALID_ARGUMENT` naming
//! `location`; a camera given only a location is listed in its grid; a listed sensor's
//! alarm carries its location on the alert; `check-config` names a sensor placed outside
//! its grid.

mod common;

use std::time::Duration;

use common::*;
use gridsight_proto::v1 as pb;
use tonic::Code;

/// A town 120.00-120.03 E × 30.00-30.01 N; its communities `sq-1` (120.00-120.01) and
/// `sq-2` (120.01-120.02); the strip 120.02-120.03 is the town's own.
const SQUARES: &str = r#"
[[grids]]
id = "sq-town"
name = "Square Town"
parent = "county"
polygon = [[120.0, 30.0], [120.03, 30.0], [120.03, 30.01], [120.0, 30.01]]
[[grids]]
id = "sq-1"
name = "Square 1"
parent = "sq-town"
polygon = [[120.0, 30.0], [120.01, 30.0], [120.01, 30.01], [120.0, 30.01]]
[[grids]]
id = "sq-2"
name = "Square 2"
parent = "sq-town"
polygon = [[120.01, 30.0], [120.02, 30.0], [120.02, 30.01], [120.01, 30.01]]
"#;

fn located(key: &str, lat: f64, lon: f64) -> pb::ReportIncidentRequest {
    pb::ReportIncidentRequest {
        idempotency_key: key.into(),
        category: pb::IncidentCategory::PublicService as i32,
        item_code: "FW-0401".into(),
        description: "Street light out on the corner".into(),
        grid_id: String::new(),
        location: Some(pb::LatLon { lat, lon }),
        reporter_id: "rep-0101".into(),
        photo_urls: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_alone_finds_its_grid_and_nowhere_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = DaemonOpts::new(None);
    opts.extra = format!(
        "{SQUARES}
[[cameras]]
id = \"cam-sq\"
url = \"rtsp://127.0.0.1:9/none\"
location = [120.015, 30.005]
enabled = false
"
    );
    let d = Daemon::start(&write_config(dir.path(), &opts)).await;
    let mut inc = d.incidents().await;

    for (key, lat, lon, grid) in [
        ("inside", 30.005, 120.015, "sq-2"),
        ("edge", 30.005, 120.01, "sq-1"),
        ("town-strip", 30.005, 120.025, "sq-town"),
    ] {
        let got = inc
            .report(req(located(key, lat, lon), REPORTER))
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"))
            .into_inner()
            .incident
            .expect("incident");
        assert_eq!(got.grid_id, grid, "{key}");
        let stored = inc
            .get(req(pb::GetIncidentRequest { id: got.id }, VIEWER))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(stored.grid_id, grid, "{key}, as stored");
        let alert = d
            .alerts()
            .await
            .get(req(
                pb::GetAlertRequest {
                    id: got.alert_id.clone(),
                },
                VIEWER,
            ))
            .await
            .expect("the report's alert")
            .into_inner();
        assert_eq!(alert.grid_id, grid, "{key}: the alert is routed by it");
    }

    let e = inc
        .report(req(located("nowhere", 31.0, 121.0), REPORTER))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("location:"), "{}", e.message());
    let mut neither = located("neither", 30.0, 120.0);
    neither.location = None;
    let e = inc.report(req(neither, REPORTER)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("grid_id"), "{}", e.message());

    let listed = d
        .cameras()
        .await
        .list(req(
            pb::ListCamerasRequest {
                grid_ids: vec!["sq-town".into()],
                ..Default::default()
            },
            VIEWER,
        ))
        .await
        .expect("list cameras")
        .into_inner()
        .cameras;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, "cam-sq");
    assert_eq!(listed[0].grid_ids, vec!["sq-2".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_sensor_alarm_carries_its_location() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = DaemonOpts::new(Some(broker.port));
    opts.extra = format!(
        "{SQUARES}
[[sensors]]
id = \"smk-sq-1\"
grid = \"sq-1\"
kind = \"smoke\"
location = [120.004, 30.006]
"
    );
    let d = Daemon::start(&write_config(dir.path(), &opts)).await;
    let mut s = d
        .alerts()
        .await
        .subscribe(req(Default::default(), VIEWER))
        .await
        .expect("subscribe")
        .into_inner();
    publish_all(
        broker.port,
        vec![
            (
                topic("sq-1", "smoke", "smk-sq-1"),
                payload(now_ms(), "alarm", 0.9),
            ),
            (
                topic("sq-2", "smoke", "smk-unlisted"),
                payload(now_ms(), "alarm", 0.9),
            ),
        ],
    )
    .await;
    let mut located = None;
    let mut unlisted = None;
    read_until(&mut s, Duration::from_secs(10), |c| {
        for e in c.alert.iter().flat_map(|a| &a.evidence) {
            if let Some(pb::evidence::Item::SensorEvent(ev)) = &e.item {
                match ev.sensor_id.as_str() {
                    "smk-sq-1" => located = Some(ev.location),
                    "smk-unlisted" => unlisted = Some(ev.location),
                    _ => {}
                }
            }
        }
        located.is_some() && unlisted.is_some()
    })
    .await;
    assert_eq!(
        located,
        Some(Some(pb::LatLon {
            lat: 30.006,
            lon: 120.004
        }))
    );
    assert_eq!(unlisted, Some(None), "an unlisted sensor has no location");
}

#[test]
fn check_config_names_a_sensor_outside_its_grid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sensors.toml");
    let config = |location: &str| {
        format!(
            "[[grids]]\nid = \"county\"\nname = \"C\"{SQUARES}[[sensors]]\nid = \"smk-lost\"\ngrid = \"sq-1\"\nlocation = {location}\n\n[api]\nplaintext = true\n"
        )
    };
    let check = |text: String| {
        std::fs::write(&path, text).unwrap();
        std::process::Command::new(binary())
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap()
    };
    // The location (line 22) lies in sq-2, not in sq-1.
    let out = check(config("[120.015, 30.005]"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:22: sensors[0].location: sensor `smk-lost`: [120.015, 30.005] is outside grid `sq-1` (it lies in `sq-2`)"
        )),
        "{err}"
    );
    let out = check(config("[120.005, 30.005]"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
