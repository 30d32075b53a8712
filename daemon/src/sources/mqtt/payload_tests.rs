//! Tests of the payload parser: every reject names its field and reason.

use std::sync::Arc;

use super::*;
use crate::{
    config::{FieldSource, GridConfig, TimeFormat, TopicMapping},
    domain::{GridIndex, SensorState},
};

fn parser() -> Parser {
    let grids = Arc::new(GridIndex::new(&[GridConfig {
        id: "g1".into(),
        name: "g".into(),
        parent: None,
        polygon: vec![],
    }]));
    let m = TopicMapping {
        topic: "acme/wl/+/+".into(),
        grid: FieldSource::Topic(2),
        sensor_id: FieldSource::Topic(3),
        kind: FieldSource::Const("water_level".into()),
        state: Some(FieldSource::Json("/st".into())),
        state_map: [
            ("0".to_string(), "normal".to_string()),
            ("1".to_string(), "alarm".to_string()),
        ]
        .into(),
        alarm_above: None,
        reading: Some(FieldSource::Json("/lvl".into())),
        device_time: Some(FieldSource::Json("/t".into())),
        time_format: TimeFormat::UnixS,
    };
    Parser::new(grids, &[m], 256)
}

const T: &str = "gridsight/sensors/g1/smoke/s-1";

#[test]
fn default_payload_parses() {
    let ev = parser()
        .parse(
            T,
            br#"{"device_time": 1700000000123, "state": "alarm", "reading": 0.7, "battery": 90}"#,
            5,
        )
        .unwrap();
    assert_eq!(
        (ev.sensor_id.as_str(), ev.kind.as_str(), ev.grid_id.as_str()),
        ("s-1", "smoke", "g1")
    );
    assert_eq!(ev.state, SensorState::Alarm);
    assert_eq!(ev.device_ms, 1_700_000_000_123);
    assert_eq!(ev.receive_ms, 5);
    let ev = parser()
        .parse(
            T,
            br#"{"device_time": "2026-11-23T08:00:00Z", "state": "normal"}"#,
            5,
        )
        .unwrap();
    assert_eq!(ev.device_ms, 1_795_420_800_000);
    assert_eq!(ev.reading, None);
}

#[test]
fn listed_sensors_get_their_location_in_their_grid_only() {
    let listed = |id: &str, grid: &str| crate::config::SensorConfig {
        id: id.into(),
        grid: grid.into(),
        kind: None,
        name: None,
        location: [119.68, 30.64],
    };
    let p = parser().with_sensors(&[listed("s-1", "g1"), listed("s-2", "elsewhere")]);
    let body = br#"{"device_time": 1, "state": "alarm"}"#;
    let ev = p.parse(T, body, 5).unwrap();
    assert_eq!(ev.location, Some([119.68, 30.64]));
    let moved = p.parse("gridsight/sensors/g1/smoke/s-2", body, 5).unwrap();
    assert_eq!(moved.location, None, "listed in another grid");
    let unlisted = p.parse("gridsight/sensors/g1/smoke/s-3", body, 5).unwrap();
    assert_eq!(unlisted.location, None);
}

#[test]
fn rejects_name_reason_and_field() {
    let p = parser();
    let cases: &[(&str, &[u8], &str, &str)] = &[
        (T, b"{not json", "bad_json", ""),
        (T, br#"{"state": "alarm"}"#, "missing_field", "device_time"),
        (
            T,
            br#"{"device_time": 1, "state": "alarm", "reading": "high"}"#,
            "wrong_type",
            "reading",
        ),
        (
            T,
            br#"{"device_time": 1, "state": "burning"}"#,
            "bad_value",
            "state",
        ),
        (
            T,
            br#"{"device_time": "yesterday", "state": "alarm"}"#,
            "bad_value",
            "device_time",
        ),
        (T, br#"[1,2]"#, "wrong_type", ""),
        (
            "gridsight/sensors/nope/smoke/s-1",
            br#"{"device_time": 1, "state": "alarm"}"#,
            "unknown_grid",
            "grid",
        ),
        (
            "gridsight/sensors/g1/smoke",
            br#"{"device_time": 1, "state": "alarm"}"#,
            "bad_topic",
            "",
        ),
        ("other/topic", b"{}", "bad_topic", ""),
        (T, &[b' '; 300], "oversized", ""),
    ];
    for (topic, payload, reason, field) in cases {
        let r = p.parse(topic, payload, 0).unwrap_err();
        assert_eq!(
            r.reason,
            *reason,
            "{topic} {:?}: {r}",
            String::from_utf8_lossy(payload)
        );
        assert!(r.error.starts_with(field), "{r} should name {field}");
    }
}

#[test]
fn vendor_mapping_applies() {
    let p = parser();
    let ev = p
        .parse(
            "acme/wl/g1/WL-7",
            br#"{"lvl": 3.9, "t": 1732348800, "st": 1}"#,
            0,
        )
        .unwrap();
    assert_eq!(
        (ev.sensor_id.as_str(), ev.kind.as_str()),
        ("WL-7", "water_level")
    );
    assert_eq!(ev.state, SensorState::Alarm);
    assert_eq!(ev.reading, Some(3.9));
    assert_eq!(ev.device_ms, 1_732_348_800_000);
    let r = p
        .parse("acme/wl/g1/WL-7", br#"{"lvl": 3.9, "t": 1, "st": 5}"#, 0)
        .unwrap_err();
    assert_eq!(r.reason, "bad_value");
    let r = p
        .parse("acme/wl/g1/WL-7", br#"{"t": 1, "st": 1}"#, 0)
        .unwrap_err();
    assert_eq!(
        (r.reason, r.error.starts_with("reading")),
        ("missing_field", true)
    );
}

#[test]
fn topic_filters_match() {
    let f = |s: &str| s.split('/').map(str::to_string).collect::<Vec<_>>();
    assert!(topic_matches(&f("a/+/c"), "a/b/c"));
    assert!(!topic_matches(&f("a/+/c"), "a/b/c/d"));
    assert!(topic_matches(&f("a/#"), "a/b/c/d"));
    assert!(!topic_matches(&f("a/+"), "a"));
}

mod robustness {
    use proptest::prelude::*;

    use super::parser;

    use crate::sources::mqtt::payload::REASONS;

    fn topic() -> impl Strategy<Value = String> {
        prop_oneof![
            "gridsight/sensors/(g1|g2|..)/[a-z_]{0,8}/[ -~]{0,12}",
            "acme/wl/(g1|x)/[A-Z0-9-]{0,6}(/extra)?",
            "[ -~]{0,40}",
        ]
    }

    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (any::<i64>(), "(normal|alarm|fault|ALARM|x)", any::<f64>(), any::<bool>()).prop_map(|(t, s, r, extra)| {
                let extra = if extra { r#", "seq": [1, {"a": null}]"# } else { "" };
                format!(r#"{{"device_time": {t}, "state": "{s}", "reading": {r}{extra}}}"#).into_bytes()
            }),
            ("[ -~]{0,10}", any::<i32>()).prop_map(|(t, v)| format!(r#"{{"lvl": "{t}", "t": {v}, "st": {v}}}"#).into_bytes()),
        ]
    }

    proptest! {
        /// Whatever arrives, the parser answers: an event for a known grid, or a reject
        /// with one of the metric labels and a message. It never panics.
        #[test]
        fn never_panics_and_rejects_are_labelled(t in topic(), p in payload()) {
            match parser().parse(&t, &p, 0) {
                Ok(ev) => prop_assert!(ev.grid_id == "g1"),
                Err(r) => {
                    prop_assert!(REASONS.contains(&r.reason), "{}", r.reason);
                    prop_assert!(!r.error.is_empty());
                }
            }
        }
    }
}
