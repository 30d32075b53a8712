//! `[[mqtt.mappings]]`: how a vendor's own topics and payload fields become a `SensorEvent`.
//!
//! Each field of the event comes from a [`FieldSource`]: a level of the topic, a JSON
//! pointer into the payload, or a constant. The ingest applies these; this module only
//! holds and checks them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One vendor mapping.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicMapping {
    /// MQTT topic filter to subscribe to (`+` one level, `#` the rest), e.g.
    /// `vendor/acme/+/+/data`.
    pub topic: String,
    /// Where the grid id comes from, e.g. `topic:2` (third level, 0-based).
    pub grid: FieldSource,
    /// Where the sensor id comes from.
    pub sensor_id: FieldSource,
    /// Where the sensor kind comes from, e.g. `const:water_level`.
    pub kind: FieldSource,
    /// Where the vendor's state comes from (translated by `state_map`); when absent the
    /// state is derived from `alarm_above`, or `normal`.
    #[serde(default)]
    pub state: Option<FieldSource>,
    /// Vendor state value (as text) → `normal`, `alarm` or `fault`.
    #[serde(default)]
    pub state_map: BTreeMap<String, String>,
    /// A reading above this is an alarm when the payload carries no state.
    #[serde(default)]
    pub alarm_above: Option<f64>,
    /// Where the numeric reading comes from (optional).
    #[serde(default)]
    pub reading: Option<FieldSource>,
    /// Where the device time comes from; absent = receive time.
    #[serde(default)]
    pub device_time: Option<FieldSource>,
    /// How the device time is written.
    #[serde(default)]
    pub time_format: TimeFormat,
}

/// Where one field of a vendor message comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FieldSource {
    /// The n-th level of the topic (0-based).
    Topic(usize),
    /// A JSON pointer (RFC 6901) into the payload, e.g. `/data/level`.
    Json(String),
    /// A fixed value.
    Const(String),
}

impl TryFrom<String> for FieldSource {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if let Some(n) = s.strip_prefix("topic:") {
            return n
                .parse()
                .map(FieldSource::Topic)
                .map_err(|_| format!("`{s}`: topic level must be a number, e.g. `topic:2`"));
        }
        if let Some(p) = s.strip_prefix("json:") {
            if !p.starts_with('/') {
                return Err(format!(
                    "`{s}`: a JSON pointer starts with `/`, e.g. `json:/value`"
                ));
            }
            return Ok(FieldSource::Json(p.to_string()));
        }
        if let Some(c) = s.strip_prefix("const:") {
            return Ok(FieldSource::Const(c.to_string()));
        }
        Err(format!(
            "`{s}`: expected `topic:N`, `json:/pointer` or `const:VALUE`"
        ))
    }
}

impl From<FieldSource> for String {
    fn from(f: FieldSource) -> String {
        match f {
            FieldSource::Topic(n) => format!("topic:{n}"),
            FieldSource::Json(p) => format!("json:{p}"),
            FieldSource::Const(c) => format!("const:{c}"),
        }
    }
}

/// How a device time is written.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// Milliseconds since the Unix epoch (number or numeric string).
    #[default]
    UnixMs,
    /// Seconds since the Unix epoch (number, may be fractional).
    UnixS,
    /// RFC 3339 text, e.g. `2026-11-23T08:00:00Z`.
    Rfc3339,
}

impl TopicMapping {
    /// Problems as (field, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let levels: Vec<&str> = self.topic.split('/').collect();
        if self.topic.is_empty()
            || levels.iter().enumerate().any(|(i, l)| {
                (l.contains('#') && (*l != "#" || i != levels.len() - 1))
                    || (l.contains('+') && *l != "+")
            })
        {
            errs.push((
                "topic".into(),
                format!("`{}` is not a valid MQTT topic filter", self.topic),
            ));
        }
        let fixed_levels = if levels.last() == Some(&"#") {
            usize::MAX
        } else {
            levels.len()
        };
        let mut check = |name: &str, src: Option<&FieldSource>| {
            if let Some(FieldSource::Topic(n)) = src {
                if *n >= fixed_levels {
                    errs.push((
                        name.to_string(),
                        format!("topic level {n} does not exist in `{}`", self.topic),
                    ));
                }
            }
        };
        check("grid", Some(&self.grid));
        check("sensor_id", Some(&self.sensor_id));
        check("kind", Some(&self.kind));
        check("state", self.state.as_ref());
        check("reading", self.reading.as_ref());
        check("device_time", self.device_time.as_ref());
        for (k, v) in &self.state_map {
            if !matches!(v.as_str(), "normal" | "alarm" | "fault") {
                errs.push((
                    format!("state_map.{k}"),
                    format!("`{v}` is not one of normal, alarm, fault"),
                ));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sources_parse() {
        assert_eq!(
            FieldSource::try_from("topic:2".to_string()),
            Ok(FieldSource::Topic(2))
        );
        assert_eq!(
            FieldSource::try_from("json:/a/b".to_string()),
            Ok(FieldSource::Json("/a/b".into()))
        );
        assert!(FieldSource::try_from("json:a".to_string()).is_err());
        assert!(FieldSource::try_from("header:x".to_string()).is_err());
    }

    #[test]
    fn topic_level_out_of_range_is_reported() {
        let m = TopicMapping {
            topic: "v/+/+".into(),
            grid: FieldSource::Topic(1),
            sensor_id: FieldSource::Topic(5),
            kind: FieldSource::Const("gas".into()),
            state: None,
            state_map: BTreeMap::from([("1".into(), "burning".into())]),
            alarm_above: None,
            reading: None,
            device_time: None,
            time_format: TimeFormat::UnixMs,
        };
        let errs = m.validate();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].0, "sensor_id");
        assert_eq!(errs[1].0, "state_map.1");
    }
}
