//! The JSON forms of the API's messages for browsers (the WebSocket stream, the dashboard).
//!
//! Owns one mapping per message, kept close to the protobuf fields' names (snake_case) so
//! an integrator reading the `.proto` can read these: enums as their short upper-case
//! names (`CRITICAL`, `OPENED`, `OFFLINE`, without the type's prefix), timestamps as
//! milliseconds since the epoch in fields ending `_ms` (`null` when unset), ids as strings,
//! 64-bit counters as numbers (seqs stay far below 2^53). Camera URLs and credentials are
//! never part of any message here.

mod alert;

use gridsight_proto::{millis_from_ts, v1 as pb};
use serde_json::{json, Value};

/// A JSON object of `fields`, moved in. `json!({ "alerts": list })` serializes `list` again,
/// a deep copy of every item (for `/api/map` thousands of cameras and grid outlines);
/// this takes the values as they are.
pub fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// `SEVERITY_CRITICAL` → `CRITICAL`: the name without its type's prefix.
fn short(name: &'static str, prefix: &str) -> &'static str {
    name.strip_prefix(prefix).unwrap_or(name)
}

fn ms(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().map(millis_from_ts)
}

/// A severity's short name (`UNKNOWN` for a value outside the enum).
pub fn severity(v: i32) -> &'static str {
    pb::Severity::try_from(v).map_or("UNKNOWN", |s| short(s.as_str_name(), "SEVERITY_"))
}

/// An alert status's short name.
pub fn alert_status(v: i32) -> &'static str {
    pb::AlertStatus::try_from(v).map_or("UNKNOWN", |s| short(s.as_str_name(), "ALERT_STATUS_"))
}

/// A change kind's short name.
pub fn change_kind(v: i32) -> &'static str {
    pb::ChangeKind::try_from(v).map_or("UNKNOWN", |s| short(s.as_str_name(), "CHANGE_KIND_"))
}

/// A camera event.
pub fn camera_event(e: &pb::CameraEvent) -> Value {
    value(&alert::CameraEventJson(e))
}

fn incident_status(v: i32) -> &'static str {
    pb::IncidentStatus::try_from(v)
        .map_or("UNKNOWN", |s| short(s.as_str_name(), "INCIDENT_STATUS_"))
}

fn category(v: i32) -> &'static str {
    pb::IncidentCategory::try_from(v)
        .map_or("UNKNOWN", |c| short(c.as_str_name(), "INCIDENT_CATEGORY_"))
}

/// Where an incident linked to an alert stands.
pub fn linked_incident(l: &pb::LinkedIncident) -> Value {
    json!({
        "id": l.id, "status": incident_status(l.status), "category": category(l.category),
        "department": l.department, "deadline_ms": ms(&l.deadline), "overdue": l.overdue,
        "updated_at_ms": ms(&l.updated_at), "updated_by": l.updated_by, "version": l.version,
    })
}

/// An incident (without its step history).
pub fn incident(i: &pb::Incident) -> Value {
    json!({
        "id": i.id, "status": incident_status(i.status), "category": category(i.category),
        "item_code": i.item_code, "description": i.description, "grid_id": i.grid_id,
        "reporter_id": i.reporter_id, "alert_id": i.alert_id, "department": i.department,
        "deadline_ms": ms(&i.deadline), "overdue": i.overdue, "version": i.version,
        "reported_at_ms": ms(&i.reported_at), "updated_at_ms": ms(&i.updated_at),
    })
}

/// One piece of an alert's evidence: `{"time_ms", "source", ...}` with the item's fields
/// (a camera event's, an incident's, a sensor reading's).
pub fn evidence(e: &pb::Evidence) -> Value {
    value(&alert::EvidenceJson(e))
}

/// An alert, whole.
pub fn alert(a: &pb::Alert) -> Value {
    value(&alert::AlertJson(a))
}

/// `v` as a `Value` (what the HTTP answers embed). Our serializers write only string keys
/// and JSON scalars, so this cannot fail.
fn value(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The `/ws` frame of one alert change (`"type": "change"`), as text.
pub fn change_frame(c: &pb::AlertChange) -> String {
    serde_json::to_string(&alert::ChangeJson(c)).unwrap_or_default()
}

/// One message of an alert subscription as the WebSocket's text frame.
pub fn subscribe_frame(r: &pb::SubscribeAlertsResponse) -> String {
    match &r.event {
        Some(pb::subscribe_alerts_response::Event::Change(c)) => change_frame(c),
        _ => subscribe_response(r).to_string(),
    }
}

/// One message of an alert subscription, as the WebSocket sends it (see `api::ws`).
pub fn subscribe_response(r: &pb::SubscribeAlertsResponse) -> Value {
    use pb::subscribe_alerts_response::Event;
    match &r.event {
        Some(Event::Change(c)) => value(&alert::ChangeJson(c)),
        Some(Event::SnapshotEnd(e)) => json!({
            "type": "snapshot_end", "cursor": e.cursor, "open_alerts": e.open_alerts,
        }),
        Some(Event::Heartbeat(h)) => json!({
            "type": "heartbeat", "last_seq": h.last_seq, "server_time_ms": ms(&h.server_time),
        }),
        Some(Event::CameraEvent(e)) => json!({ "type": "camera", "camera": camera_event(e) }),
        None => json!({ "type": "unknown" }),
    }
}

#[cfg(test)]
mod tests {
    use gridsight_proto::ts_from_millis;

    use super::*;

    #[test]
    fn an_alert_change_carries_short_names_times_in_ms_and_its_evidence() {
        let alert = pb::Alert {
            id: "ALR-000007".into(),
            seq: 41,
            version: 2,
            severity: pb::Severity::Critical as i32,
            status: pb::AlertStatus::Open as i32,
            first_seen: Some(ts_from_millis(1_790_000_000_123)),
            evidence: vec![pb::Evidence {
                time: Some(ts_from_millis(1_790_000_000_123)),
                item: Some(pb::evidence::Item::SensorEvent(pb::SensorEvent {
                    sensor_id: "smoke-1".into(),
                    kind: "smoke".into(),
                    state: pb::SensorState::Alarm as i32,
                    reading: 0.8,
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        let r = pb::SubscribeAlertsResponse {
            event: Some(pb::subscribe_alerts_response::Event::Change(
                pb::AlertChange {
                    seq: 41,
                    kind: pb::ChangeKind::Opened as i32,
                    alert: Some(alert),
                },
            )),
        };
        let v = subscribe_response(&r);
        assert_eq!(v["type"], "change");
        assert_eq!(v["kind"], "OPENED");
        assert_eq!(v["alert"]["severity"], "CRITICAL");
        assert_eq!(v["alert"]["status"], "OPEN");
        assert_eq!(v["alert"]["first_seen_ms"], 1_790_000_000_123i64);
        assert_eq!(v["alert"]["last_seen_ms"], Value::Null);
        let ev = &v["alert"]["evidence"][0];
        assert_eq!(ev["source"], "sensor");
        assert_eq!(ev["state"], "ALARM");
        assert_eq!(ev["sensor_id"], "smoke-1");
    }

    #[test]
    fn a_linked_incident_shows_its_status_department_and_deadline() {
        let a = pb::Alert {
            incident_ids: vec!["INC-000003".into()],
            incidents: vec![pb::LinkedIncident {
                id: "INC-000003".into(),
                status: pb::IncidentStatus::Dispatched as i32,
                department: "roads".into(),
                deadline: Some(ts_from_millis(1_790_000_600_000)),
                category: pb::IncidentCategory::CentralTask as i32,
                updated_by: "desk-1".into(),
                version: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = alert(&a);
        let l = &v["incidents"][0];
        assert_eq!(l["status"], "DISPATCHED");
        assert_eq!(l["category"], "CENTRAL_TASK");
        assert_eq!(l["department"], "roads");
        assert_eq!(l["deadline_ms"], 1_790_000_600_000i64);
        assert_eq!(
            (l["updated_by"].as_str(), l["version"].as_u64()),
            (Some("desk-1"), Some(3))
        );
    }

    #[test]
    fn a_value_outside_an_enum_is_unknown_not_a_panic() {
        assert_eq!(severity(99), "UNKNOWN");
        assert_eq!(change_kind(-1), "UNKNOWN");
        let e = pb::Evidence {
            time: None,
            item: Some(pb::evidence::Item::CameraEvent(pb::CameraEvent {
                camera_id: "cam-1".into(),
                kind: 1234,
                ..Default::default()
            })),
        };
        let v = evidence(&e);
        assert_eq!(v["source"], "camera");
        assert_eq!(v["kind"], "UNKNOWN");
        assert_eq!(v["time_ms"], Value::Null);
    }
}
