//! Domain names shared by every stage: Severity, SensorState, SensorEvent, the grid tree.
//!
//! Alerts and incidents are the `gridsight.v1` messages themselves (`pb::Alert`,
//! `pb::Incident`): they are what is stored, streamed and served, so one representation
//! keeps the store, the stream and the API from drifting apart. This module adds the
//! domain types that are not on the wire as such, and [`GridIndex`], the parent tree used
//! to route events and to match a subscription's grids against their descendants.
//!
//! Invariant: a `GridIndex` is built from a validated config, so every parent exists and
//! there is no cycle.

use std::{collections::HashMap, sync::Arc};

use gridsight_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::config::GridConfig;

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
            location: None,
        }
    }
}

/// The grid tree: which grids exist and who their ancestors are.
#[derive(Debug, Clone, Default)]
pub struct GridIndex {
    /// Grid id → index into `parents`/`names`.
    ids: HashMap<Arc<str>, usize>,
    /// Parent index of each grid.
    parents: Vec<Option<usize>>,
    /// Grid ids by index.
    names: Vec<Arc<str>>,
}

impl GridIndex {
    /// Builds the index from validated grids.
    pub fn new(grids: &[GridConfig]) -> Self {
        let names: Vec<Arc<str>> = grids.iter().map(|g| Arc::from(g.id.as_str())).collect();
        let ids: HashMap<Arc<str>, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let parents = grids
            .iter()
            .map(|g| g.parent.as_deref().and_then(|p| ids.get(p).copied()))
            .collect();
        Self {
            ids,
            parents,
            names,
        }
    }

    /// Whether the grid exists.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Number of grids.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no grids.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The grid's dense index, for routing.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.get(id).copied()
    }

    /// Whether `grid` is `ancestor` or lies beneath it.
    pub fn is_within(&self, grid: &str, ancestor: &str) -> bool {
        let (Some(mut g), Some(a)) = (self.index_of(grid), self.index_of(ancestor)) else {
            return false;
        };
        loop {
            if g == a {
                return true;
            }
            match self.parents[g] {
                Some(p) => g = p,
                None => return false,
            }
        }
    }

    /// Depth of the grid in the tree (0 for a top grid).
    pub fn depth(&self, grid: &str) -> Option<usize> {
        let mut g = self.index_of(grid)?;
        let mut d = 0;
        while let Some(p) = self.parents[g] {
            g = p;
            d += 1;
        }
        Some(d)
    }

    /// The deepest depth of any grid (0 when there are none).
    pub fn max_depth(&self) -> usize {
        self.names
            .iter()
            .filter_map(|n| self.depth(n))
            .max()
            .unwrap_or(0)
    }

    /// The grid's parent.
    pub fn parent(&self, grid: &str) -> Option<&str> {
        let p = self.parents[self.index_of(grid)?]?;
        Some(&self.names[p])
    }

    /// The grid's ancestor at exactly `depth` (the grid itself at its own depth); `None`
    /// when the grid is shallower or unknown.
    pub fn ancestor_at(&self, grid: &str, depth: usize) -> Option<&str> {
        let mut g = self.index_of(grid)?;
        let mut d = self.depth(grid)?;
        if d < depth {
            return None;
        }
        while d > depth {
            g = self.parents[g]?;
            d -= 1;
        }
        Some(&self.names[g])
    }

    /// Inverse of [`GridIndex::index_of`].
    pub fn id_at(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(|n| &**n)
    }

    /// Every grid at or beneath any of `roots`.
    pub fn expand(&self, roots: &[String]) -> Vec<String> {
        self.names
            .iter()
            .filter(|g| roots.iter().any(|r| self.is_within(g, r)))
            .map(|g| g.to_string())
            .collect()
    }

    /// The first grid id on a parent chain that comes back to itself, if any.
    pub fn find_cycle(grids: &[GridConfig]) -> Option<String> {
        let parent: HashMap<&str, &str> = grids
            .iter()
            .filter_map(|g| g.parent.as_deref().map(|p| (g.id.as_str(), p)))
            .collect();
        for g in grids {
            let mut cur = g.id.as_str();
            for _ in 0..=grids.len() {
                match parent.get(cur) {
                    Some(p) => cur = p,
                    None => break,
                }
                if cur == g.id {
                    return Some(g.id.clone());
                }
            }
        }
        None
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

    fn grid(id: &str, parent: Option<&str>) -> GridConfig {
        GridConfig {
            id: id.into(),
            name: id.into(),
            parent: parent.map(Into::into),
            polygon: vec![],
        }
    }

    #[test]
    fn descendants_match_their_ancestors() {
        let g = GridIndex::new(&[
            grid("county", None),
            grid("town", Some("county")),
            grid("c1", Some("town")),
            grid("other", None),
        ]);
        assert!(g.is_within("c1", "county"));
        assert!(g.is_within("c1", "c1"));
        assert!(!g.is_within("county", "c1"));
        assert!(!g.is_within("c1", "other"));
        assert!(!g.is_within("missing", "county"));
    }

    #[test]
    fn cycles_are_found() {
        assert_eq!(
            GridIndex::find_cycle(&[grid("a", Some("b")), grid("b", Some("a"))]),
            Some("a".into())
        );
        assert_eq!(
            GridIndex::find_cycle(&[grid("a", None), grid("b", Some("a"))]),
            None
        );
    }

    #[test]
    fn severity_raise_caps() {
        assert_eq!(Severity::Minor.raised(1), Severity::Major);
        assert_eq!(Severity::Major.raised(5), Severity::Critical);
    }
}
