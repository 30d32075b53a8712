//! Camera events in the first correlation, and the cameras shown with every alert.
//!
//! - `offline` opens an alert keyed `camera/{id}/offline` in the camera's first grid;
//!   repeats fold into it; `online` resolves it (by `gridsight`, with how long it lasted).
//! - `freeze` / `unfreeze` do the same under `camera/{id}/freeze`.
//! - `activity` is evidence: it joins the newest open sensor or incident alert of one of
//!   the camera's grids seen within the window; alone it opens nothing.
//! - `degraded` opens nothing: it shows in the camera's health.
//!
//! Every new alert lists the cameras to show (its own camera, or up to
//! [`MAX_ALERT_CAMERAS`] covering its grid) and one snapshot reference per camera, whose
//! picture the daemon takes as the alert opens.

use std::borrow::Cow;

use crate::domain::{keys::concat, AlertChange};
use gridsight_proto::{ts_from_millis, v1 as pb};

use super::{has, Engine, Source};
use crate::domain::Severity;

/// Most cameras (and snapshots) listed on one alert.
pub const MAX_ALERT_CAMERAS: usize = 4;

/// What the engine knows of cameras: who covers which grid, and the severities of their
/// own alerts.
#[derive(Debug, Clone)]
pub struct CameraRules {
    /// Camera ids covering each grid, in config order.
    pub by_grid: std::collections::HashMap<String, Vec<String>>,
    /// Severity of a camera-offline alert.
    pub offline_severity: Severity,
    /// Severity of a frozen-picture alert.
    pub freeze_severity: Severity,
}

impl Default for CameraRules {
    fn default() -> Self {
        Self {
            by_grid: std::collections::HashMap::new(),
            offline_severity: Severity::Major,
            freeze_severity: Severity::Minor,
        }
    }
}

/// The snapshot URL of `camera` for `alert` (served by the HTTP API).
pub fn snapshot_url(alert_id: &str, camera_id: &str) -> String {
    format!("/snapshots/{alert_id}/{camera_id}.jpg")
}

/// The de-duplication key a camera event opens an alert under, if it opens one.
pub(super) fn camera_key(c: &pb::CameraEvent) -> Option<String> {
    use pb::CameraEventKind as K;
    match K::try_from(c.kind) {
        Ok(K::Offline) => Some(concat(&["camera/", &c.camera_id, "/offline"])),
        Ok(K::Freeze) => Some(concat(&["camera/", &c.camera_id, "/freeze"])),
        _ => None,
    }
}

impl Engine {
    /// Sets who covers which grid (at start and on reload); open alerts keep their lists.
    pub fn set_cameras(&mut self, rules: CameraRules) {
        self.cameras_by_grid = rules.by_grid.clone().into_iter().collect();
        self.camera_rules = rules;
    }

    /// A camera event; returns the alert changes it causes: its own alert first, then what
    /// the rules make of it.
    pub fn on_camera(&mut self, ev: &pb::CameraEvent, now: i64) -> Vec<AlertChange> {
        let mut out = self.on_camera_base(ev, now);
        let name = super::super::rules::camera_event_name(ev.kind);
        let set = &self.rules.set;
        if !set
            .candidates_of_kind(crate::config::Source::Camera, name)
            .is_empty()
        {
            let rules = self.observe_after(super::Obs::camera(ev, now), now, &out);
            out.extend(rules);
        }
        self.finish(out, now)
    }

    fn on_camera_base(&mut self, ev: &pb::CameraEvent, now: i64) -> Vec<AlertChange> {
        use pb::CameraEventKind as K;
        let Some(grid) = ev.grid_ids.first().cloned() else {
            return Vec::new();
        };
        let evidence = pb::Evidence {
            time: ev.time,
            item: Some(pb::evidence::Item::CameraEvent(ev.clone())),
        };
        let kind = K::try_from(ev.kind).unwrap_or(K::Unspecified);
        match kind {
            K::Offline | K::Freeze => {
                let Some(key) = camera_key(ev) else {
                    return Vec::new();
                };
                if let Some(id) = self.resolve_key(&key) {
                    return self.fold(&id, Cow::Owned(evidence), now, None);
                }
                let (severity, title) = if kind == K::Offline {
                    (
                        self.camera_rules.offline_severity,
                        format!("Camera {} offline", ev.camera_id),
                    )
                } else {
                    (
                        self.camera_rules.freeze_severity,
                        format!("Camera {} picture frozen", ev.camera_id),
                    )
                };
                vec![self.open_alert(key, severity, title, &grid, evidence, now)]
            }
            K::Online | K::Unfreeze => {
                let key = if kind == K::Online {
                    concat(&["camera/", &ev.camera_id, "/offline"])
                } else {
                    concat(&["camera/", &ev.camera_id, "/freeze"])
                };
                let Some(id) = self.by_key.get(&key).cloned() else {
                    return Vec::new();
                };
                self.auto_resolve(&id, evidence, &ev.detail, now)
            }
            K::Activity => {
                let partner = ev.grid_ids.iter().find_map(|g| {
                    self.partner(g, now, Source::Sensor)
                        .or_else(|| self.partner(g, now, Source::Incident))
                });
                match partner {
                    Some(id) => {
                        // The first activity on an alert puts its camera first on the wall.
                        if let Some(a) = self.open.get_mut(&id) {
                            if !has(a, Source::Camera) {
                                a.camera_ids.retain(|c| c != &ev.camera_id);
                                a.camera_ids.insert(0, ev.camera_id.clone());
                                a.camera_ids.truncate(MAX_ALERT_CAMERAS);
                            }
                        }
                        self.fold(&id, Cow::Owned(evidence), now, None)
                    }
                    None => Vec::new(),
                }
            }
            K::Degraded | K::Unspecified => Vec::new(),
        }
    }

    /// Resolves `id` on the daemon's own authority (the condition cleared).
    pub(super) fn auto_resolve(
        &mut self,
        id: &str,
        evidence: pb::Evidence,
        detail: &str,
        now: i64,
    ) -> Vec<AlertChange> {
        let Some(alert) = self.open.get_mut(id) else {
            return Vec::new();
        };
        alert.add_evidence(Cow::Owned(evidence));
        alert.status = pb::AlertStatus::Resolved as i32;
        alert.resolved_by = "gridsight".into();
        alert.note = if detail.is_empty() {
            "cleared".into()
        } else {
            detail.to_string()
        };
        alert.version += 1;
        alert.last_seen = Some(ts_from_millis(now));
        alert.updated_at = alert.last_seen;
        let change = AlertChange {
            seq: 0,
            kind: pb::ChangeKind::Resolved as i32,
            alert: Some(alert.to_pb()),
        };
        self.forget(id);
        vec![change]
    }

    /// Fills in the cameras to show and their snapshot references on a new alert.
    pub(super) fn attach_cameras(&self, alert: &mut pb::Alert, own: &Option<String>, now: i64) {
        let ids: Vec<String> = match own {
            Some(c) => vec![c.clone()],
            None => self
                .cameras_by_grid
                .get(&alert.grid_id)
                .map(|v| v.iter().take(MAX_ALERT_CAMERAS).cloned().collect())
                .unwrap_or_default(),
        };
        alert.snapshots = ids
            .iter()
            .map(|c| pb::SnapshotRef {
                camera_id: c.clone(),
                url: snapshot_url(&alert.id, c),
                taken_at: Some(ts_from_millis(now)),
            })
            .collect();
        alert.camera_ids = ids;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::CorrelationConfig;

    fn engine() -> Engine {
        let mut e = Engine::new(CorrelationConfig::default(), Arc::new(Default::default()));
        let mut by_grid = std::collections::HashMap::new();
        by_grid.insert("g1".to_string(), vec!["cam-a".to_string(), "cam-b".into()]);
        e.set_cameras(CameraRules {
            by_grid,
            ..Default::default()
        });
        e
    }

    fn ev(camera: &str, kind: pb::CameraEventKind, at: i64) -> pb::CameraEvent {
        pb::CameraEvent {
            camera_id: camera.into(),
            kind: kind as i32,
            time: Some(ts_from_millis(at)),
            grid_ids: vec!["g1".into()],
            activity: 4.0,
            detail: "no frame for 6.0 s".into(),
        }
    }

    #[test]
    fn offline_opens_once_and_online_resolves() {
        use pb::CameraEventKind as K;
        let mut e = engine();
        let opened = e.on_camera(&ev("cam-a", K::Offline, 1_000), 1_000);
        assert_eq!(opened.len(), 1);
        let a = opened[0].alert.clone().unwrap();
        assert_eq!(a.severity, pb::Severity::Major as i32);
        assert_eq!(a.camera_ids, vec!["cam-a".to_string()]);
        assert_eq!(a.snapshots[0].url, snapshot_url(&a.id, "cam-a"));
        let again = e.on_camera(&ev("cam-a", K::Offline, 2_000), 2_000);
        assert_eq!(again[0].alert.as_ref().unwrap().id, a.id);
        assert_eq!(again[0].alert.as_ref().unwrap().count, 2);
        let back = e.on_camera(&ev("cam-a", K::Online, 3_000), 3_000);
        assert_eq!(back[0].kind, pb::ChangeKind::Resolved as i32);
        assert_eq!(back[0].alert.as_ref().unwrap().resolved_by, "gridsight");
        assert_eq!(e.open_count(), 0);
        // Online with nothing open changes nothing.
        assert!(e
            .on_camera(&ev("cam-a", K::Online, 4_000), 4_000)
            .is_empty());
    }

    #[test]
    fn activity_joins_a_sensor_alert_and_alone_opens_nothing() {
        use pb::CameraEventKind as K;
        let mut e = engine();
        assert!(e
            .on_camera(&ev("cam-b", K::Activity, 1_000), 1_000)
            .is_empty());
        let reading = crate::domain::SensorEvent {
            sensor_id: "smk-1".into(),
            kind: "smoke".into(),
            grid_id: "g1".into(),
            state: crate::domain::SensorState::Alarm,
            reading: Some(1.0),
            device_ms: 2_000,
            receive_ms: 2_000,
            location: None,
        };
        let opened = e.on_sensor(1, &reading);
        let a = opened[0].alert.clone().unwrap();
        assert_eq!(a.camera_ids, vec!["cam-a".to_string(), "cam-b".into()]);
        let joined = e.on_camera(&ev("cam-b", K::Activity, 3_000), 3_000);
        let j = joined[0].alert.clone().unwrap();
        assert_eq!(j.id, a.id);
        assert_eq!(j.evidence.len(), 2);
        assert_eq!(j.camera_ids[0], "cam-b", "the active camera comes first");
    }
}
