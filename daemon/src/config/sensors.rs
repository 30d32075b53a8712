//! `[[sensors]]`: sensors whose place is known, and their checks against the grids.
//!
//! The list is optional: a sensor not listed is still accepted from its MQTT topic, only
//! without a location. A listed sensor's `location` must lie in its grid's polygon (when
//! the grid has one), so a sensor placed in the wrong community is caught at
//! `check-config`, not on the wall.
//!
//! Invariant: after [`validate`] found nothing, ids are unique and valid, every `grid`
//! exists, and every location is a finite `[lon, lat]` inside its grid's polygon.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::domain::GridIndex;

/// `[[sensors]]`: one sensor with its place.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// The sensor id, as in its MQTT topic (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// The grid it stands in (the `{grid}` of its topic); `location` must lie in it.
    pub grid: String,
    /// Kind (smoke, water_level, ...), for the reader; events keep the kind of their topic.
    #[serde(default)]
    pub kind: Option<String>,
    /// Display name, e.g. "Xinhua Rd 12, basement".
    #[serde(default)]
    pub name: Option<String>,
    /// Where it stands, `[lon, lat]` in degrees.
    pub location: [f64; 2],
}

/// Where listed sensors stand, by sensor id: `(grid, [lon, lat])`.
pub fn places(sensors: &[SensorConfig]) -> HashMap<String, (String, [f64; 2])> {
    sensors
        .iter()
        .map(|s| (s.id.clone(), (s.grid.clone(), s.location)))
        .collect()
}

/// Checks of the sensors against the grids: (field path, message) per problem.
pub fn validate(sensors: &[SensorConfig], grids: &GridIndex) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, s) in sensors.iter().enumerate() {
        let at = |f: &str| format!("sensors[{i}].{f}");
        super::check_id("sensor", &s.id, at("id"), &mut seen, &mut errs);
        if let Some(kind) = &s.kind {
            if !super::valid_id(kind) {
                errs.push((at("kind"), format!("`{kind}` is not a valid kind")));
            }
        }
        if !grids.contains(&s.grid) {
            errs.push((at("grid"), format!("unknown grid `{}`", s.grid)));
            continue;
        }
        if !super::valid_lon_lat(s.location) {
            errs.push((at("location"), "must be [lon, lat] in degrees".into()));
            continue;
        }
        if grids.polygon_holds(&s.grid, s.location) == Some(false) {
            let [lon, lat] = s.location;
            let found = match grids.locate(lon, lat) {
                Some(g) => format!("it lies in `{g}`"),
                None => "it lies in no grid".into(),
            };
            errs.push((
                at("location"),
                format!(
                    "sensor `{}`: [{lon}, {lat}] is outside grid `{}` ({found})",
                    s.id, s.grid
                ),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GridConfig;

    fn grids() -> GridIndex {
        let square = |id: &str, w: f64| GridConfig {
            id: id.into(),
            name: id.into(),
            parent: None,
            polygon: vec![[w, 30.0], [w + 0.01, 30.0], [w + 0.01, 30.01], [w, 30.01]],
        };
        GridIndex::new(&[square("a", 120.0), square("b", 120.01)])
    }

    fn sensor(id: &str, grid: &str, location: [f64; 2]) -> SensorConfig {
        SensorConfig {
            id: id.into(),
            grid: grid.into(),
            kind: Some("smoke".into()),
            name: None,
            location,
        }
    }

    #[test]
    fn good_sensors_pass() {
        let ok = [
            sensor("s1", "a", [120.005, 30.005]),
            sensor("s2", "b", [120.01, 30.0]),
        ];
        assert!(validate(&ok, &grids()).is_empty());
        assert_eq!(places(&ok)["s2"], ("b".into(), [120.01, 30.0]));
    }

    #[test]
    fn bad_sensors_name_the_field() {
        let bad = [
            sensor("s1", "nope", [120.005, 30.005]),
            sensor("s1", "a", [120.015, 30.005]),
            sensor("s/3", "a", [200.0, 30.0]),
            sensor("s4", "a", [121.0, 31.0]),
        ];
        let errs = validate(&bad, &grids());
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "sensors[0].grid",
                "sensors[1].id",
                "sensors[1].location",
                "sensors[2].id",
                "sensors[2].location",
                "sensors[3].location",
            ],
            "{errs:?}"
        );
        assert!(
            errs[2].1.contains("outside grid `a` (it lies in `b`)"),
            "{errs:?}"
        );
        assert!(errs[5].1.contains("it lies in no grid"), "{errs:?}");
    }
}
