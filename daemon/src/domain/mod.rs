//! Domain names shared by every stage: Severity, SensorState, SensorEvent, the grid model.
//!
//! Alerts and incidents are the `gridsight.v1` messages themselves (`pb::Alert`,
//! `pb::Incident`): they are what is stored, streamed and served, so one representation
//! keeps the store, the stream and the API from drifting apart. This module adds the
//! domain types that are not on the wire as such, and [`GridIndex`] (in `grids` and
//! `spatial`): the parent tree used to route events and to match a subscription's grids
//! against their descendants, and the geometry (polygons, neighbours, point lookup,
//! distances) built once from the config.
//!
//! Invariant: a `GridIndex` is built from a validated config, so every parent exists and
//! there is no cycle.

mod alert_change;
mod grids;
pub mod keys;
mod spatial;
#[cfg(test)]
mod spatial_tests;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

use gridsight_proto::v1 as pb;
use serde::{Deserialize, Serialize};

pub use alert_change::AlertChange;
pub use grids::GridIndex;
pub use spatial::TOUCH_TOLERANCE_DEG;

/// Alert severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information only.
    Info,
    /// Worth a look.
    Warning,
    /// Needs handling in the normal course.
    Minor,
    /// Needs handling now.
    Major,
    /// Life or property at risk.
    Critical,
}

impl Severity {
    /// The wire value.
    pub fn to_pb(self) -> pb::Severity {
        match self {
            Severity::Info => pb::Severity::Info,
            Severity::Warning => pb::Severity::Warning,
            Severity::Minor => pb::Severity::Minor,
            Severity::Major => pb::Severity::Major,
            Severity::Critical => pb::Severity::Critical,
        }
    }

    /// From the wire value; `None` for unspecified or unknown numbers.
    pub fn from_pb(v: i32) -> Option<Self> {
        match pb::Severity::try_from(v).ok()? {
            pb::Severity::Unspecified => None,
            pb::Severity::Info => Some(Severity::Info),
            pb::Severity::Warning => Some(Severity::Warning),
            pb::Severity::Minor => Some(Severity::Minor),
            pb::Severity::Major => Some(Severity::Major),
            pb::Severity::Critical => Some(Severity::Critical),
        }
    }

    /// `steps` levels more severe, capped at Critical.
    pub fn raised(self, steps: u8) -> Self {
        let all = [
            Severity::Info,
            Severity::Warning,
            Severity::Minor,
            Severity::Major,
            Severity::Critical,
        ];
        let i = all.iter().position(|s| *s == self).unwrap_or(0);
        all[(i + steps as usize).min(all.len() - 1)]
    }
}

/// A sensor's reported state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SensorState {
    /// Nothing to report.
    Normal,
    /// The sensor sees what it watches for.
    Alarm,
    /// The sensor itself is broken.
    Fault,
}

impl SensorState {
    /// Parses `normal`, `alarm` or `fault` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("normal") {
            Some(SensorState::Normal)
        } else if s.eq_ignore_ascii_case("alarm") {
            Some(SensorState::Alarm)
        } else if s.eq_ignore_ascii_case("fault") {
            Some(SensorState::Fault)
        } else {
            None
        }
    }

    /// The name used in storage and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorState::Normal => "normal",
            SensorState::Alarm => "alarm",
            SensorState::Fault => "fault",
        }
    }

    /// The wire value.
    pub fn to_pb(self) -> pb::SensorState {
        match self {
            SensorState::Normal => pb::SensorState::Normal,
            SensorState::Alarm => pb::SensorState::Alarm,
            SensorState::Fault => pb::SensorState::Fault,
        }
    }
}

/// One validated sensor reading, as it enters the correlator.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorEvent {
    /// Sensor id (unique per deployment).
    pub sensor_id: String,
    /// Kind: smoke, water_level, manhole_cover, gas, ...
    pub kind: String,
    /// Grid the sensor is in.
    pub grid_id: String,
    /// Reported state.
    pub state: SensorState,
    /// Reading, when the sensor sends one.
    pub reading: Option<f64>,
    /// Device clock, milliseconds since the Unix epoch.
    pub device_ms: i64,
    /// When the daemon received it, milliseconds since the Unix epoch.
    pub receive_ms: i64,
    /// Where the sensor stands, `[lon, lat]`: from `[[sensors]]` when the sensor is listed
    /// there (for the grid it reported in), else unknown.
    pub location: Option<[f64; 2]>,
}

impl SensorEvent {
    /// As evidence on an alert.
    pub fn to_pb(&self, id: u64) -> pb::SensorEvent {
        pb::SensorEvent {
            id,
            sensor_id: self.sensor_id.clone(),
            kind: self.kind.clone(),
            grid_id: self.grid_id.clone(),
            state: self.state.to_pb() as i32,
            reading: self.reading.unwrap_or(0.0),
            device_time: Some(gridsight_proto::ts_from_millis(self.device_ms)),
            receive_time: Some(gridsight_proto::ts_from_millis(self.receive_ms)),
            location: self.location.map(|[lon, lat]| pb::LatLon { lat, lon }),
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_raise_caps() {
        assert_eq!(Severity::Minor.raised(1), Severity::Major);
        assert_eq!(Severity::Major.raised(5), Severity::Critical);
    }

    #[test]
    fn sensor_location_goes_on_the_wire() {
        let mut ev = SensorEvent {
            sensor_id: "smk-1".into(),
            kind: "smoke".into(),
            grid_id: "g1".into(),
            state: SensorState::Alarm,
            reading: Some(0.5),
            device_ms: 1,
            receive_ms: 2,
            location: Some([119.68, 30.64]),
        };
        let loc = ev.to_pb(7).location.expect("located");
        assert_eq!((loc.lon, loc.lat), (119.68, 30.64));
        ev.location = None;
        assert_eq!(ev.to_pb(7).location, None);
    }
}
