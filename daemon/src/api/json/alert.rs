//! An alert, its evidence and its change as JSON, written straight to the output through
//! `serde` (no `serde_json::Value` tree in between, which cost ~20 µs per change frame):
//! every `/ws` change frame is encoded here, on the fan-out's hot path.
//!
//! The fields and their forms are those of the module above (`super`): enums by short
//! name, times as `..._ms` (`null` when unset), evidence with its `source`.

use gridsight_proto::v1 as pb;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{alert_status, category, change_kind, incident_status, ms, severity, short};

/// `items` as a JSON array, each written by `f`.
struct Each<'a, T, F>(&'a [T], F);

impl<'a, T, J, F> Serialize for Each<'a, T, F>
where
    F: Fn(&'a T) -> J,
    J: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(&self.1))
    }
}

/// A point as `{"lon", "lat"}`, or `null`.
struct LatLon<'a>(&'a Option<pb::LatLon>);

impl Serialize for LatLon<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_none(),
            Some(l) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("lon", &l.lon)?;
                m.serialize_entry("lat", &l.lat)?;
                m.end()
            }
        }
    }
}

/// A camera event's fields with `time_ms` given (evidence gives its own time, and adds its
/// source).
fn camera_fields<M: SerializeMap>(
    m: &mut M,
    e: &pb::CameraEvent,
    time_ms: Option<i64>,
) -> Result<(), M::Error> {
    let kind = pb::CameraEventKind::try_from(e.kind)
        .map_or("UNKNOWN", |k| short(k.as_str_name(), "CAMERA_EVENT_KIND_"));
    m.serialize_entry("camera_id", &e.camera_id)?;
    m.serialize_entry("kind", kind)?;
    m.serialize_entry("time_ms", &time_ms)?;
    m.serialize_entry("grid_ids", &e.grid_ids)?;
    m.serialize_entry("activity", &e.activity)?;
    m.serialize_entry("detail", &e.detail)
}

/// A camera event.
pub struct CameraEventJson<'a>(pub &'a pb::CameraEvent);

impl Serialize for CameraEventJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(6))?;
        camera_fields(&mut m, self.0, ms(&self.0.time))?;
        m.end()
    }
}

/// One piece of evidence: `{"time_ms", "source", ...}` with the item's fields.
pub struct EvidenceJson<'a>(pub &'a pb::Evidence);

impl Serialize for EvidenceJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use pb::evidence::Item;
        let e = self.0;
        let time_ms = ms(&e.time);
        let mut m = s.serialize_map(None)?;
        match &e.item {
            Some(Item::SensorEvent(x)) => {
                let state = pb::SensorState::try_from(x.state)
                    .map_or("UNKNOWN", |v| short(v.as_str_name(), "SENSOR_STATE_"));
                m.serialize_entry("time_ms", &time_ms)?;
                m.serialize_entry("source", "sensor")?;
                m.serialize_entry("sensor_id", &x.sensor_id)?;
                m.serialize_entry("kind", &x.kind)?;
                m.serialize_entry("grid_id", &x.grid_id)?;
                m.serialize_entry("state", state)?;
                m.serialize_entry("reading", &x.reading)?;
                m.serialize_entry("location", &LatLon(&x.location))?;
            }
            Some(Item::CameraEvent(c)) => {
                camera_fields(&mut m, c, time_ms)?;
                m.serialize_entry("source", "camera")?;
            }
            Some(Item::Incident(i)) => {
                m.serialize_entry("time_ms", &time_ms)?;
                m.serialize_entry("source", "incident")?;
                m.serialize_entry("incident_id", &i.id)?;
                m.serialize_entry("category", category(i.category))?;
                m.serialize_entry("item_code", &i.item_code)?;
                m.serialize_entry("description", &i.description)?;
                m.serialize_entry("grid_id", &i.grid_id)?;
                m.serialize_entry("reporter_id", &i.reporter_id)?;
                m.serialize_entry("location", &LatLon(&i.location))?;
            }
            None => {
                m.serialize_entry("time_ms", &time_ms)?;
                m.serialize_entry("source", "unknown")?;
            }
        }
        m.end()
    }
}

/// Where an incident linked to an alert stands.
pub struct LinkedIncidentJson<'a>(pub &'a pb::LinkedIncident);

impl Serialize for LinkedIncidentJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let l = self.0;
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("id", &l.id)?;
        m.serialize_entry("status", incident_status(l.status))?;
        m.serialize_entry("category", category(l.category))?;
        m.serialize_entry("department", &l.department)?;
        m.serialize_entry("deadline_ms", &ms(&l.deadline))?;
        m.serialize_entry("overdue", &l.overdue)?;
        m.serialize_entry("updated_at_ms", &ms(&l.updated_at))?;
        m.serialize_entry("updated_by", &l.updated_by)?;
        m.serialize_entry("version", &l.version)?;
        m.end()
    }
}

struct SnapshotJson<'a>(&'a pb::SnapshotRef);

impl Serialize for SnapshotJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("camera_id", &x.camera_id)?;
        m.serialize_entry("url", &x.url)?;
        m.serialize_entry("taken_at_ms", &ms(&x.taken_at))?;
        m.end()
    }
}

struct NoteJson<'a>(&'a pb::AlertNote);

impl Serialize for NoteJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("by", &n.by)?;
        m.serialize_entry("at_ms", &ms(&n.at))?;
        m.serialize_entry("text", &n.text)?;
        m.end()
    }
}

/// An alert, whole.
pub struct AlertJson<'a>(pub &'a pb::Alert);

impl Serialize for AlertJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.0;
        let mut m = s.serialize_map(Some(32))?;
        m.serialize_entry("id", &a.id)?;
        m.serialize_entry("seq", &a.seq)?;
        m.serialize_entry("version", &a.version)?;
        m.serialize_entry("severity", severity(a.severity))?;
        m.serialize_entry("status", alert_status(a.status))?;
        m.serialize_entry("title", &a.title)?;
        m.serialize_entry("grid_id", &a.grid_id)?;
        m.serialize_entry("evidence", &Each(&a.evidence, EvidenceJson))?;
        m.serialize_entry("first_seen_ms", &ms(&a.first_seen))?;
        m.serialize_entry("last_seen_ms", &ms(&a.last_seen))?;
        m.serialize_entry("updated_at_ms", &ms(&a.updated_at))?;
        m.serialize_entry("count", &a.count)?;
        m.serialize_entry("dedup_key", &a.dedup_key)?;
        m.serialize_entry("acknowledged_by", &a.acknowledged_by)?;
        m.serialize_entry("acknowledged_at_ms", &ms(&a.acknowledged_at))?;
        m.serialize_entry("resolved_by", &a.resolved_by)?;
        m.serialize_entry("note", &a.note)?;
        m.serialize_entry("camera_ids", &a.camera_ids)?;
        m.serialize_entry("snapshots", &Each(&a.snapshots, SnapshotJson))?;
        m.serialize_entry("rule_id", &a.rule_id)?;
        m.serialize_entry("merged_into", &a.merged_into)?;
        m.serialize_entry("parent_id", &a.parent_id)?;
        m.serialize_entry("group_size", &a.group_size)?;
        m.serialize_entry("silenced_by", &a.silenced_by)?;
        m.serialize_entry("inhibited_by", &a.inhibited_by)?;
        m.serialize_entry("flapping", &a.flapping)?;
        m.serialize_entry("escalation_level", &a.escalation_level)?;
        m.serialize_entry("escalated_to", &a.escalated_to)?;
        m.serialize_entry("incident_ids", &a.incident_ids)?;
        m.serialize_entry("labels", &a.labels)?;
        m.serialize_entry("incidents", &Each(&a.incidents, LinkedIncidentJson))?;
        m.serialize_entry("notes", &Each(&a.notes, NoteJson))?;
        m.end()
    }
}

/// The `/ws` frame of an alert change: `{"type": "change", "seq", "kind", "alert"}`.
pub struct ChangeJson<'a>(pub &'a pb::AlertChange);

impl Serialize for ChangeJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("type", "change")?;
        m.serialize_entry("seq", &c.seq)?;
        m.serialize_entry("kind", change_kind(c.kind))?;
        m.serialize_entry("alert", &c.alert.as_ref().map(AlertJson))?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use gridsight_proto::ts_from_millis;
    use serde_json::Value;

    use super::*;

    fn t(ms: i64) -> Option<prost_types::Timestamp> {
        Some(ts_from_millis(ms))
    }

    /// Every field of an alert, with each kind of evidence.
    fn full_alert() -> pb::Alert {
        use pb::evidence::Item;
        pb::Alert {
            id: "ALR-000009".into(),
            seq: 12,
            version: 3,
            severity: pb::Severity::Major as i32,
            status: pb::AlertStatus::Acknowledged as i32,
            title: "Smoke \"near\" 桥头".into(),
            grid_id: "a-1".into(),
            evidence: vec![
                pb::Evidence {
                    time: t(1_000),
                    item: Some(Item::SensorEvent(pb::SensorEvent {
                        sensor_id: "smoke-1".into(),
                        kind: "smoke".into(),
                        grid_id: "a-1".into(),
                        state: pb::SensorState::Alarm as i32,
                        reading: 0.5,
                        location: Some(pb::LatLon {
                            lat: 30.25,
                            lon: 119.5,
                        }),
                        ..Default::default()
                    })),
                },
                pb::Evidence {
                    time: t(2_000),
                    item: Some(Item::CameraEvent(pb::CameraEvent {
                        camera_id: "cam-1".into(),
                        kind: pb::CameraEventKind::Offline as i32,
                        time: t(1_500),
                        grid_ids: vec!["a-1".into()],
                        activity: 0.25,
                        detail: "no frame".into(),
                    })),
                },
                pb::Evidence {
                    time: t(3_000),
                    item: Some(Item::Incident(Box::new(pb::Incident {
                        id: "INC-000001".into(),
                        category: pb::IncidentCategory::CentralTask as i32,
                        item_code: "A01".into(),
                        description: "smoke".into(),
                        grid_id: "a-1".into(),
                        reporter_id: "w-7".into(),
                        ..Default::default()
                    }))),
                },
                pb::Evidence {
                    time: None,
                    item: None,
                },
            ],
            first_seen: t(1_000),
            last_seen: t(3_000),
            updated_at: t(4_000),
            count: 3,
            dedup_key: "sensor/smoke-1".into(),
            acknowledged_by: "desk-1".into(),
            acknowledged_at: t(5_000),
            resolved_by: String::new(),
            note: "on it".into(),
            camera_ids: vec!["cam-1".into()],
            snapshots: vec![pb::SnapshotRef {
                camera_id: "cam-1".into(),
                url: "/snapshots/ALR-000009/cam-1.jpg".into(),
                taken_at: t(1_100),
            }],
            rule_id: "r1".into(),
            merged_into: String::new(),
            parent_id: "ALR-000001".into(),
            group_size: 2,
            silenced_by: "SIL-1".into(),
            inhibited_by: String::new(),
            flapping: true,
            escalation_level: 1,
            escalated_to: "town-a".into(),
            incident_ids: vec!["INC-000001".into()],
            labels: [("zone".to_string(), "north".to_string())].into(),
            incidents: vec![pb::LinkedIncident {
                id: "INC-000001".into(),
                status: pb::IncidentStatus::Dispatched as i32,
                category: pb::IncidentCategory::CentralTask as i32,
                department: "fire".into(),
                deadline: t(9_000),
                overdue: false,
                updated_at: t(6_000),
                updated_by: "desk-1".into(),
                version: 2,
            }],
            notes: vec![pb::AlertNote {
                by: "desk-1".into(),
                at: t(7_000),
                text: "called".into(),
            }],
        }
    }

    #[test]
    fn a_change_frame_holds_every_field_of_the_alert() {
        let c = pb::AlertChange {
            seq: 12,
            kind: pb::ChangeKind::Acknowledged as i32,
            alert: Some(full_alert()),
        };
        let frame: Value = serde_json::from_str(&super::super::change_frame(&c)).unwrap();
        let want: Value = serde_json::from_str(
            r#"{
            "type": "change", "seq": 12, "kind": "ACKNOWLEDGED",
            "alert": {
                "id": "ALR-000009", "seq": 12, "version": 3, "severity": "MAJOR",
                "status": "ACKNOWLEDGED", "title": "Smoke \"near\" 桥头", "grid_id": "a-1",
                "evidence": [
                    { "time_ms": 1000, "source": "sensor", "sensor_id": "smoke-1",
                      "kind": "smoke", "grid_id": "a-1", "state": "ALARM", "reading": 0.5,
                      "location": { "lon": 119.5, "lat": 30.25 } },
                    { "time_ms": 2000, "source": "camera", "camera_id": "cam-1",
                      "kind": "OFFLINE", "grid_ids": ["a-1"], "activity": 0.25,
                      "detail": "no frame" },
                    { "time_ms": 3000, "source": "incident", "incident_id": "INC-000001",
                      "category": "CENTRAL_TASK", "item_code": "A01", "description": "smoke",
                      "grid_id": "a-1", "reporter_id": "w-7", "location": null },
                    { "time_ms": null, "source": "unknown" }
                ],
                "first_seen_ms": 1000, "last_seen_ms": 3000, "updated_at_ms": 4000,
                "count": 3, "dedup_key": "sensor/smoke-1", "acknowledged_by": "desk-1",
                "acknowledged_at_ms": 5000, "resolved_by": "", "note": "on it",
                "camera_ids": ["cam-1"],
                "snapshots": [{ "camera_id": "cam-1",
                    "url": "/snapshots/ALR-000009/cam-1.jpg", "taken_at_ms": 1100 }],
                "rule_id": "r1", "merged_into": "", "parent_id": "ALR-000001",
                "group_size": 2, "silenced_by": "SIL-1", "inhibited_by": "",
                "flapping": true, "escalation_level": 1, "escalated_to": "town-a",
                "incident_ids": ["INC-000001"], "labels": { "zone": "north" },
                "incidents": [{ "id": "INC-000001", "status": "DISPATCHED",
                    "category": "CENTRAL_TASK", "department": "fire", "deadline_ms": 9000,
                    "overdue": false, "updated_at_ms": 6000, "updated_by": "desk-1",
                    "version": 2 }],
                "notes": [{ "by": "desk-1", "at_ms": 7000, "text": "called" }]
            }}"#,
        )
        .unwrap();
        assert_eq!(frame, want);
        // The HTTP answers' form of the alert is the same.
        assert_eq!(super::super::alert(&full_alert()), want["alert"]);
    }

    #[test]
    fn a_reading_that_is_not_a_number_is_null_not_broken_json() {
        let e = pb::Evidence {
            time: t(1),
            item: Some(pb::evidence::Item::SensorEvent(pb::SensorEvent {
                reading: f64::NAN,
                ..Default::default()
            })),
        };
        let text = serde_json::to_string(&EvidenceJson(&e)).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["reading"], Value::Null);
    }
}
