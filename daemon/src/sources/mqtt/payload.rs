//! MQTT topic + payload → [`SensorEvent`], or a [`Reject`] naming the field.
//!
//! Pure and allocation-light: the default topic tree is split in place and the default
//! JSON payload is read into borrowed fields. Vendor mappings ([`TopicMapping`]) take their
//! fields from topic levels, JSON pointers or constants. Nothing here panics on input; the
//! fuzz target `mqtt_message` holds it to that. A sensor listed in `[[sensors]]` gets its
//! configured location, when it reports in the grid it is listed in.

use std::{collections::HashMap, sync::Arc};

use serde::Deserialize;

use crate::{
    config::{sensors, valid_id, FieldSource, SensorConfig, TimeFormat, TopicMapping},
    domain::{GridIndex, SensorEvent, SensorState},
};

/// Prefix of the default topic tree.
pub const DEFAULT_PREFIX: &str = "gridsight/sensors/";

/// Why a message was not accepted. `reason` is the metrics label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {error}")]
pub struct Reject {
    /// Short label: `oversized`, `bad_topic`, `bad_json`, `missing_field`, `wrong_type`,
    /// `bad_value`, `unknown_grid`.
    pub reason: &'static str,
    /// What is wrong, naming the field.
    pub error: String,
}

/// Every [`Reject::reason`], the label set of `gridsight_mqtt_rejected_total{reason}`.
pub const REASONS: [&str; 7] = [
    "oversized",
    "bad_topic",
    "bad_json",
    "missing_field",
    "wrong_type",
    "bad_value",
    "unknown_grid",
];

fn reject(reason: &'static str, error: impl Into<String>) -> Reject {
    Reject {
        reason,
        error: error.into(),
    }
}

/// The default payload.
#[derive(Deserialize)]
struct DefaultPayload<'a> {
    #[serde(borrow)]
    device_time: TimeValue<'a>,
    #[serde(borrow)]
    state: std::borrow::Cow<'a, str>,
    #[serde(default)]
    reading: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TimeValue<'a> {
    Millis(i64),
    #[serde(borrow)]
    Text(std::borrow::Cow<'a, str>),
}

/// Parses messages of the default tree and of the configured vendor mappings.
pub struct Parser {
    grids: Arc<GridIndex>,
    mappings: Vec<(Vec<String>, TopicMapping)>,
    max_payload: usize,
    /// Listed sensors: id → (grid, `[lon, lat]`).
    places: HashMap<String, (String, [f64; 2])>,
}

impl Parser {
    /// A parser for these grids and mappings.
    pub fn new(grids: Arc<GridIndex>, mappings: &[TopicMapping], max_payload: usize) -> Self {
        Self {
            grids,
            mappings: mappings
                .iter()
                .map(|m| (m.topic.split('/').map(str::to_string).collect(), m.clone()))
                .collect(),
            max_payload,
            places: HashMap::new(),
        }
    }

    /// The same parser, placing the listed sensors at their configured locations.
    pub fn with_sensors(mut self, listed: &[SensorConfig]) -> Self {
        self.places = sensors::places(listed);
        self
    }

    /// One message; `now_ms` is the receive time.
    pub fn parse(&self, topic: &str, payload: &[u8], now_ms: i64) -> Result<SensorEvent, Reject> {
        if payload.len() > self.max_payload {
            return Err(reject(
                "oversized",
                format!(
                    "payload of {} bytes exceeds {} bytes",
                    payload.len(),
                    self.max_payload
                ),
            ));
        }
        let mut ev = if let Some(rest) = topic.strip_prefix(DEFAULT_PREFIX) {
            parse_default(rest, payload, now_ms)?
        } else if let Some((_, m)) = self.mappings.iter().find(|(f, _)| topic_matches(f, topic)) {
            parse_mapped(m, topic, payload, now_ms)?
        } else {
            return Err(reject(
                "bad_topic",
                format!("topic `{topic}` matches no mapping"),
            ));
        };
        if !self.grids.contains(&ev.grid_id) {
            return Err(reject(
                "unknown_grid",
                format!("grid: unknown grid `{}`", ev.grid_id),
            ));
        }
        // A sensor reporting from another grid than it is listed in keeps no location: the
        // configured point would contradict the grid its event is routed by.
        if let Some((grid, location)) = self.places.get(&ev.sensor_id) {
            if *grid == ev.grid_id {
                ev.location = Some(*location);
            }
        }
        Ok(ev)
    }
}

fn parse_default(rest: &str, payload: &[u8], now_ms: i64) -> Result<SensorEvent, Reject> {
    let mut parts = rest.split('/');
    let (Some(grid), Some(kind), Some(sensor), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(
            "bad_topic",
            format!("topic `{DEFAULT_PREFIX}{rest}` is not {DEFAULT_PREFIX}{{grid}}/{{kind}}/{{sensor_id}}"),
        ));
    };
    for (name, v) in [("grid", grid), ("kind", kind), ("sensor_id", sensor)] {
        if !valid_id(v) {
            return Err(reject(
                "bad_topic",
                format!("{name}: `{v}` in the topic is not a valid id"),
            ));
        }
    }
    // The fast path parses plainly; only a payload that fails is parsed again with path
    // tracking, to name the field in the error.
    let p: DefaultPayload = match serde_json::from_slice(payload) {
        Ok(p) => p,
        Err(_) => {
            let mut de = serde_json::Deserializer::from_slice(payload);
            let p: DefaultPayload =
                serde_path_to_error::deserialize(&mut de).map_err(json_reject)?;
            de.end().map_err(|e| reject("bad_json", e.to_string()))?;
            p
        }
    };
    let state = SensorState::parse(&p.state).ok_or_else(|| {
        reject(
            "bad_value",
            format!("state: `{}` is not one of normal, alarm, fault", p.state),
        )
    })?;
    if let Some(r) = p.reading {
        if !r.is_finite() {
            return Err(reject("bad_value", "reading: not a finite number"));
        }
    }
    let device_ms = match p.device_time {
        TimeValue::Millis(ms) => ms,
        TimeValue::Text(t) => parse_rfc3339(&t).ok_or_else(|| {
            reject(
                "bad_value",
                format!("device_time: `{t}` is neither Unix milliseconds nor RFC 3339"),
            )
        })?,
    };
    Ok(SensorEvent {
        sensor_id: sensor.to_string(),
        kind: kind.to_string(),
        grid_id: grid.to_string(),
        state,
        reading: p.reading,
        device_ms,
        receive_ms: now_ms,
        location: None,
    })
}

fn json_reject(e: serde_path_to_error::Error<serde_json::Error>) -> Reject {
    let path = e.path().to_string();
    let inner = e.into_inner();
    use serde_json::error::Category;
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => reject("bad_json", inner.to_string()),
        Category::Data => {
            let msg = inner.to_string();
            if let Some(rest) = msg.strip_prefix("missing field `") {
                let field = rest.split('`').next().unwrap_or("");
                reject("missing_field", format!("{field}: missing"))
            } else if path == "." {
                reject("wrong_type", format!("payload: {msg}"))
            } else {
                reject("wrong_type", format!("{path}: {msg}"))
            }
        }
    }
}

fn topic_matches(filter: &[String], topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter {
        match (f.as_str(), levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(l)) if f == l => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

fn parse_mapped(
    m: &TopicMapping,
    topic: &str,
    payload: &[u8],
    now_ms: i64,
) -> Result<SensorEvent, Reject> {
    let levels: Vec<&str> = topic.split('/').collect();
    let json: Option<serde_json::Value> = if payload.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(payload).map_err(|e| reject("bad_json", e.to_string()))?)
    };
    let get = |name: &str, src: &FieldSource| -> Result<String, Reject> {
        match src {
            FieldSource::Topic(i) => levels
                .get(*i)
                .map(|s| s.to_string())
                .ok_or_else(|| reject("bad_topic", format!("{name}: topic has no level {i}"))),
            FieldSource::Const(c) => Ok(c.clone()),
            FieldSource::Json(p) => match json.as_ref().and_then(|j| j.pointer(p)) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                Some(serde_json::Value::Bool(b)) => Ok(b.to_string()),
                Some(_) => Err(reject(
                    "wrong_type",
                    format!("{name}: `{p}` is not a string or number"),
                )),
                None => Err(reject("missing_field", format!("{name}: `{p}` is missing"))),
            },
        }
    };
    let grid = get("grid", &m.grid)?;
    let sensor = get("sensor_id", &m.sensor_id)?;
    let kind = get("kind", &m.kind)?;
    for (name, v) in [("grid", &grid), ("sensor_id", &sensor), ("kind", &kind)] {
        if !valid_id(v) {
            return Err(reject(
                "bad_value",
                format!("{name}: `{v}` is not a valid id"),
            ));
        }
    }
    let reading = match &m.reading {
        Some(src) => {
            let raw = get("reading", src)?;
            let v: f64 = raw
                .parse()
                .map_err(|_| reject("wrong_type", format!("reading: `{raw}` is not a number")))?;
            if !v.is_finite() {
                return Err(reject("bad_value", "reading: not a finite number"));
            }
            Some(v)
        }
        None => None,
    };
    let state = match &m.state {
        Some(src) => {
            let raw = get("state", src)?;
            let mapped = m
                .state_map
                .get(&raw)
                .map(String::as_str)
                .unwrap_or(raw.as_str());
            SensorState::parse(mapped).ok_or_else(|| {
                reject(
                    "bad_value",
                    format!("state: vendor value `{raw}` has no mapping"),
                )
            })?
        }
        None => match (m.alarm_above, reading) {
            (Some(t), Some(r)) if r > t => SensorState::Alarm,
            _ => SensorState::Normal,
        },
    };
    let device_ms = match &m.device_time {
        Some(src) => {
            let raw = get("device_time", src)?;
            let parsed = match m.time_format {
                TimeFormat::UnixMs => raw.parse::<i64>().ok(),
                TimeFormat::UnixS => raw
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite())
                    .map(|s| (s * 1000.0) as i64),
                TimeFormat::Rfc3339 => parse_rfc3339(&raw),
            };
            parsed.ok_or_else(|| {
                reject(
                    "bad_value",
                    format!("device_time: `{raw}` is not {:?}", m.time_format),
                )
            })?
        }
        None => now_ms,
    };
    Ok(SensorEvent {
        sensor_id: sensor,
        kind,
        grid_id: grid,
        state,
        reading,
        device_ms,
        receive_ms: now_ms,
        location: None,
    })
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
