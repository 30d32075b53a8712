//! The rules' test town and its daemon, for the end-to-end tests of correlation rules and
//! noise control (`e2e_rules`, `e2e_noise`).
//!
//! The map is a small tiled town: `town-a` is 3×3 square communities `a00`..`a22` (row,
//! column), `town-b` has `b00` east of `a02`; both under `county`. Grids sharing a border
//! are neighbours; `town-a` and `town-b` fall on different correlator shards (two shards,
//! partitioned by town). The built-in sensor and incident join is off (`window_secs = 0`),
//! so the rules do the joining. Helpers read what a dispatcher sees: `AlertService.List` and
//! `Get`, and `Subscribe` streams.

use std::time::{Duration, Instant};

use gridsight_farm::{Farm, FarmConfig, FarmHandle, MountConfig};
use gridsight_proto::v1 as pb;

use super::*;

/// How long a rule or noise-control effect may take to show.
pub const WAIT: Duration = Duration::from_secs(20);

/// Mains power lost in two grids of the county: one county alert, cleared by power back.
pub const OUTAGE: &str = include_str!("outage-rule.toml");

/// The tiled town's `[[grids]]`.
pub fn town() -> String {
    let mut s = String::new();
    let mut grid = |id: &str, name: &str, parent: Option<&str>, cell: Option<(u32, u32)>| {
        s.push_str(&format!("[[grids]]\nid = \"{id}\"\nname = \"{name}\"\n"));
        if let Some(p) = parent {
            s.push_str(&format!("parent = \"{p}\"\n"));
        }
        if let Some((x, y)) = cell {
            // Hundredths of a degree: a cell is 0.01° square, from 120.00° E, 30.00° N.
            let (w, s0) = (120 * 100 + x, 30 * 100 + y);
            let c = |lon: u32, lat: u32| {
                format!(
                    "[{}.{:02}, {}.{:02}]",
                    lon / 100,
                    lon % 100,
                    lat / 100,
                    lat % 100
                )
            };
            s.push_str(&format!(
                "polygon = [{}, {}, {}, {}, {}]\n",
                c(w, s0),
                c(w + 1, s0),
                c(w + 1, s0 + 1),
                c(w, s0 + 1),
                c(w, s0)
            ));
        }
    };
    grid("county", "County", None, None);
    grid("town-a", "Town A", Some("county"), None);
    grid("town-b", "Town B", Some("county"), None);
    for y in 0..3 {
        for x in 0..3 {
            let id = format!("a{y}{x}");
            grid(
                &id,
                &format!("Community {y}{x}"),
                Some("town-a"),
                Some((x, y)),
            );
        }
    }
    grid("b00", "East community", Some("town-b"), Some((3, 0)));
    s
}

#[test]
fn a_cell_centre_lies_in_its_cell() {
    let near = |g, (lon, lat): (f64, f64)| {
        let (x, y) = cell_centre(g).unwrap();
        (x - lon).abs() < 1e-9 && (y - lat).abs() < 1e-9
    };
    assert!(near("a12", (120.025, 30.015)));
    assert!(near("b00", (120.035, 30.005)));
    assert_eq!(cell_centre("town-a"), None);
}

/// A broker and a daemon on the tiled town, with the rules off the built-in join.
pub struct City {
    pub broker: Mosquitto,
    pub cfg: std::path::PathBuf,
    pub d: Daemon,
    _dir: tempfile::TempDir,
}

impl City {
    /// Starts with `correlation` lines in `[correlation]` and `extra` (rules, cameras...)
    /// appended.
    pub async fn start(correlation: &str, extra: &str) -> Self {
        let broker = Mosquitto::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = DaemonOpts::new(Some(broker.port));
        o.window_secs = 0;
        o.grids = town();
        o.extra_correlation = correlation.to_string();
        o.extra = extra.to_string();
        let cfg = write_config(dir.path(), &o);
        let d = Daemon::start(&cfg).await;
        City {
            broker,
            cfg,
            d,
            _dir: dir,
        }
    }

    /// Publishes readings `(grid, kind, sensor, state)` in order, device times 10 ms apart.
    pub async fn readings(&self, list: &[(&str, &str, &str, &str)]) {
        let now = now_ms();
        let msgs = list
            .iter()
            .enumerate()
            .map(|(i, (grid, kind, sensor, state))| {
                (
                    topic(grid, kind, sensor),
                    payload(now + 10 * i as i64, state, 1.0),
                )
            })
            .collect();
        publish_all(self.broker.port, msgs).await;
    }

    /// One alarm.
    pub async fn alarm(&self, grid: &str, kind: &str, sensor: &str) {
        self.readings(&[(grid, kind, sensor, "alarm")]).await;
    }

    /// A fresh unfiltered subscription, past its snapshot.
    pub async fn subscribe(&self) -> tonic::Streaming<pb::SubscribeAlertsResponse> {
        let mut s = self.subscribe_after(0).await;
        read_snapshot(&mut s, WAIT).await;
        s
    }

    pub async fn subscribe_after(&self, seq: u64) -> tonic::Streaming<pb::SubscribeAlertsResponse> {
        let r = pb::SubscribeAlertsRequest {
            resume_after_seq: seq,
            ..Default::default()
        };
        self.d
            .alerts()
            .await
            .subscribe(req(r, VIEWER))
            .await
            .expect("subscribe")
            .into_inner()
    }

    /// Every alert, any status.
    pub async fn alerts(&self) -> Vec<pb::Alert> {
        let r = pb::ListAlertsRequest {
            page_size: 1000,
            ..Default::default()
        };
        self.d
            .alerts()
            .await
            .list(req(r, VIEWER))
            .await
            .expect("list alerts")
            .into_inner()
            .alerts
    }

    pub async fn get(&self, id: &str) -> pb::Alert {
        self.d
            .alerts()
            .await
            .get(req(pb::GetAlertRequest { id: id.into() }, VIEWER))
            .await
            .expect("get alert")
            .into_inner()
    }

    /// The open alert with de-duplication key `key`, once there is one.
    pub async fn open_alert(&self, key: &str) -> pb::Alert {
        wait_for(&format!("an open alert `{key}`"), WAIT, || async {
            self.alerts()
                .await
                .into_iter()
                .find(|a| a.dedup_key == key && is_open(a))
        })
        .await
    }

    /// The newest alert with de-duplication key `key`, any status, once there is one.
    pub async fn alert_keyed(&self, key: &str) -> pb::Alert {
        wait_for(&format!("an alert `{key}`"), WAIT, || async {
            self.alerts().await.into_iter().find(|a| a.dedup_key == key)
        })
        .await
    }

    /// Alerts made by `rule`, any status.
    pub async fn rule_alerts(&self, rule: &str) -> Vec<pb::Alert> {
        let mut v = self.alerts().await;
        v.retain(|a| a.rule_id == rule);
        v
    }

    pub async fn acknowledge(&self, a: &pb::Alert) -> pb::Alert {
        let r = pb::AcknowledgeAlertRequest {
            id: a.id.clone(),
            expected_version: a.version,
            note: "on it".into(),
        };
        self.d
            .alerts()
            .await
            .acknowledge(req(r, OPERATOR))
            .await
            .expect("acknowledge")
            .into_inner()
    }
}

pub fn is_open(a: &pb::Alert) -> bool {
    a.status != pb::AlertStatus::Resolved as i32
}

pub fn kind_is(c: &pb::AlertChange, k: pb::ChangeKind) -> bool {
    c.kind == k as i32
}

/// The alert of a change, when the change is of `kind` and its alert satisfies `f`.
pub fn change_of(
    c: &pb::AlertChange,
    kind: pb::ChangeKind,
    f: impl Fn(&pb::Alert) -> bool,
) -> bool {
    kind_is(c, kind) && c.alert.as_ref().is_some_and(f)
}

pub fn alerts_of(changes: &[pb::AlertChange], kind: pb::ChangeKind) -> Vec<pb::Alert> {
    changes
        .iter()
        .filter(|c| kind_is(c, kind))
        .filter_map(|c| c.alert.clone())
        .collect()
}

/// The sources of an alert's evidence: `sensor:ID`, `camera:ID:kind`, `incident:ID`.
pub fn evidence_of(a: &pb::Alert) -> Vec<String> {
    a.evidence
        .iter()
        .filter_map(|e| match &e.item {
            Some(pb::evidence::Item::SensorEvent(s)) => Some(format!("sensor:{}", s.sensor_id)),
            Some(pb::evidence::Item::CameraEvent(c)) => Some(format!(
                "camera:{}:{}",
                c.camera_id,
                pb::CameraEventKind::try_from(c.kind)
                    .map(|k| k.as_str_name())
                    .unwrap_or("?")
            )),
            Some(pb::evidence::Item::Incident(i)) => Some(format!("incident:{}", i.id)),
            None => None,
        })
        .collect()
}

/// Reads the stream until camera `id` sends an event of `kind`; returns it and the alert
/// changes read meanwhile.
pub async fn camera_event(
    s: &mut tonic::Streaming<pb::SubscribeAlertsResponse>,
    id: &str,
    kind: pb::CameraEventKind,
) -> (pb::CameraEvent, Vec<pb::AlertChange>) {
    let mut changes = Vec::new();
    let deadline = Instant::now() + CAMERA_WAIT;
    loop {
        let msg = next_message(s, deadline, || format!("no {kind:?} from camera {id}")).await;
        match msg.event {
            Some(pb::subscribe_alerts_response::Event::CameraEvent(e))
                if e.camera_id == id && e.kind == kind as i32 =>
            {
                return (e, changes)
            }
            Some(pb::subscribe_alerts_response::Event::Change(c)) => changes.push(c),
            _ => {}
        }
    }
}

/// A farm of still cameras, and their `[video]` + `[[cameras]]` config: `(id, grid)`.
pub async fn farm(cameras: &[(&str, &str)]) -> (FarmHandle, String) {
    let mounts = cameras
        .iter()
        .map(|(id, _)| MountConfig::new(*id, 15))
        .collect();
    let farm = Farm::start(FarmConfig::new(mounts)).await.expect("farm");
    let mut toml = VIDEO.to_string();
    for (id, grid) in cameras {
        let mut cam = camera_toml(id, &farm.url(id), grid);
        if let Some((lon, lat)) = cell_centre(grid) {
            cam = cam.replace(
                "location = [120.1, 30.2]",
                &format!("location = [{lon}, {lat}]"),
            );
        }
        toml.push_str(&cam);
    }
    (farm, toml)
}

/// The centre of a cell of [`town`] (`aYX` or `b00`), as (lon, lat).
pub fn cell_centre(grid: &str) -> Option<(f64, f64)> {
    let (x, y) = match grid.as_bytes() {
        [b'a', y @ b'0'..=b'2', x @ b'0'..=b'2'] => (u32::from(x - b'0'), u32::from(y - b'0')),
        b"b00" => (3, 0),
        _ => return None,
    };
    Some((
        120.0 + (f64::from(x) + 0.5) / 100.0,
        30.0 + (f64::from(y) + 0.5) / 100.0,
    ))
}

/// Waits until camera `id` is online with its quiet baseline learnt (activity score set).
pub async fn warmed_up(d: &Daemon, id: &str) {
    wait_status(d, id, pb::CameraStatus::Online).await;
    wait_for(
        &format!("camera {id} to learn its baseline"),
        CAMERA_WAIT,
        || async {
            let h = camera(d, id).await.health?;
            (h.activity > 0.0 && h.activity < 2.0).then_some(())
        },
    )
    .await;
}

/// Reads `s` until a change of `kind` whose alert satisfies `f`; returns that alert and
/// every change read (camera events and heartbeats skipped).
pub async fn until_change(
    s: &mut tonic::Streaming<pb::SubscribeAlertsResponse>,
    kind: pb::ChangeKind,
    f: impl Fn(&pb::Alert) -> bool,
) -> (pb::Alert, Vec<pb::AlertChange>) {
    let seen = read_until(s, WAIT, |c| change_of(c, kind, &f)).await;
    let alert = seen.last().and_then(|c| c.alert.clone()).expect("an alert");
    (alert, seen)
}

/// Reads `s` into `seen` until `seen` holds `n` alerts resolved by merging (`merged_into`).
pub async fn until_merged(
    s: &mut tonic::Streaming<pb::SubscribeAlertsResponse>,
    seen: &mut Vec<pb::AlertChange>,
    n: usize,
) {
    let merged = |seen: &[pb::AlertChange]| {
        alerts_of(seen, pb::ChangeKind::Resolved)
            .iter()
            .filter(|a| !a.merged_into.is_empty())
            .count()
    };
    while merged(seen) < n {
        seen.extend(read_until(s, WAIT, |c| kind_is(c, pb::ChangeKind::Resolved)).await);
    }
}
