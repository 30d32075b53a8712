//! The synthetic county of the engine bench and its pre-generated event stream.
//!
//! The county is a 100 × 100 tiling of community rectangles (0.005° on a side, ≈ 480 m ×
//! 555 m around lat 30.4°) under 100 towns (10 × 10 communities each) under one county:
//! 10,101 grids, one camera and four sensors (one per kind, placed inside the rectangle)
//! per community.
//!
//! The stream is deterministic from its seed and advances like a live one: event `i` is
//! received at `T0 + i / RATE` seconds (40,000 sensors each every 2 s). What it holds is a
//! [`Mix`]: [`Mix::DAY`] (a busy day at DESIGN.md's scale) or [`Mix::STORM`] (a flood or
//! fire across the county, far beyond it). Alarms, strong activity and safety reports
//! cluster around a few *hotspots* (a fire, a flood...) that move every 30–120 s, so the
//! spatial rules have something to find; the rest is spread over the whole county.

use std::{collections::HashMap, sync::Arc};

use gridsight::{
    config::GridConfig,
    correlate::CameraRules,
    domain::{GridIndex, SensorEvent, SensorState},
};
use gridsight_proto::{ts_from_millis, v1 as pb};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Communities per row and column of the county.
pub const SIDE: usize = 100;
/// Communities per row and column of one town.
const TOWN_SIDE: usize = 10;
/// Side of a community rectangle, degrees.
const CELL_DEG: f64 = 0.005;
const WEST: f64 = 119.4;
const SOUTH: f64 = 30.3;
/// Events per second of simulated time.
pub const RATE: i64 = 20_000;
/// Receive time of the first event (ms since the epoch).
pub const T0: i64 = 1_790_000_000_000;

/// A band of readings, `(low, high)`.
type Band = (f64, f64);

/// Sensor kinds, as in the simulators, with their normal and alarm bands.
const KINDS: [(&str, Band, Band); 4] = [
    ("smoke", (0.0, 0.6), (4.0, 12.0)),
    ("water_level", (0.2, 1.5), (2.6, 3.5)),
    ("manhole_cover", (0.0, 3.0), (15.0, 45.0)),
    ("gas", (0.0, 8.0), (20.0, 60.0)),
];

/// What an event is, for the per-kind breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Alarm,
    Fault,
    Activity,
    CameraStatus,
    Report,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Normal,
        Kind::Alarm,
        Kind::Fault,
        Kind::Activity,
        Kind::CameraStatus,
        Kind::Report,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Normal => "sensor normal",
            Kind::Alarm => "sensor alarm",
            Kind::Fault => "sensor fault",
            Kind::Activity => "camera activity",
            Kind::CameraStatus => "camera offline/online",
            Kind::Report => "incident report",
        }
    }
}

/// One pre-generated event (generated once, before timing: kept unboxed).
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// A reading with its stored id.
    Sensor(u64, SensorEvent),
    /// A camera event.
    Camera(pb::CameraEvent),
    /// A report (cloned into the engine, which takes it by value, as a shard does).
    Report(pb::Incident),
}

/// The shares of the kinds of event in a stream (the rest are normal readings from a random
/// sensor).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Its name in the bench's output and in `ENGINE_BENCH_MIX`.
    pub name: &'static str,
    /// Readings in alarm (80 % of them near a hotspot).
    pub alarm: f64,
    /// Readings of a sensor in fault.
    pub fault: f64,
    /// Camera activity (half of it strong, near a hotspot).
    pub activity: f64,
    /// Cameras going offline or coming back.
    pub camera_status: f64,
    /// Incident reports from grid workers.
    pub report: f64,
}

impl Mix {
    /// A busy day at the scale DESIGN.md gives (sensors every few seconds, 10,000 cameras,
    /// about 55,000 reports a year), each share set above what that scale makes:
    /// - alarms 1 % of readings (200 a second: 400 sensors in alarm at once), bench-mqtt's
    ///   default too;
    /// - faults 0.5 % (200 faulty sensors reporting);
    /// - camera activity 3 % (600 a second: each camera every 17 s);
    /// - cameras offline or back 2 a second (each camera about twice a day; the day's
    ///   average is under 1 a second);
    /// - reports 1 a second (55,000 a year is one every 9.5 minutes on average: this is
    ///   about 570 times that).
    pub const DAY: Mix = Mix {
        name: "day",
        alarm: 0.01,
        fault: 0.005,
        activity: 0.03,
        camera_status: 0.0001,
        report: 0.00005,
    };

    /// A storm over the whole county, the target workload of the benches before the twelfth
    /// session: 1,000 alarms a second (2,000 sensors in alarm), 200 cameras going offline or
    /// back a second, 100 reports a second (about 57,000 times the year's average).
    pub const STORM: Mix = Mix {
        name: "storm",
        alarm: 0.05,
        fault: 0.005,
        activity: 0.03,
        camera_status: 0.01,
        report: 0.005,
    };

    /// The mix named `name`.
    pub fn named(name: &str) -> Option<Mix> {
        [Mix::DAY, Mix::STORM].into_iter().find(|m| m.name == name)
    }

    /// The share of normal readings.
    pub fn normal(&self) -> f64 {
        1.0 - self.alarm - self.fault - self.activity - self.camera_status - self.report
    }

    /// The upper bounds of a uniform draw for normal, alarm, fault, activity and camera
    /// status (a report above the last). Storm's are 0.90, 0.95, 0.955, 0.985, 0.995, as
    /// the stream had them written out before mixes were named, so it is the same stream.
    fn bounds(&self) -> [f64; 5] {
        if *self == Mix::STORM {
            return [0.90, 0.95, 0.955, 0.985, 0.995];
        }
        let normal = self.normal();
        let alarm = normal + self.alarm;
        let fault = alarm + self.fault;
        let activity = fault + self.activity;
        [
            normal,
            alarm,
            fault,
            activity,
            activity + self.camera_status,
        ]
    }
}

/// An event, when it is received and what it is.
pub struct Timed {
    pub at: i64,
    pub kind: Kind,
    pub event: Event,
}

/// The county: grid tree, cameras, sensors.
pub struct County {
    pub grids: Arc<GridIndex>,
    pub cameras: CameraRules,
    /// Community ids by `y * SIDE + x`.
    communities: Vec<String>,
    /// Sensor ids by community, one per kind in [`KINDS`] order.
    sensors: Vec<[String; 4]>,
}

impl County {
    pub fn build() -> County {
        let mut grids = vec![GridConfig {
            id: "county".into(),
            name: "Bench County".into(),
            parent: None,
            polygon: vec![],
        }];
        for t in 0..(SIDE / TOWN_SIDE).pow(2) {
            grids.push(GridConfig {
                id: format!("town-{t:02}"),
                name: format!("Town {t}"),
                parent: Some("county".into()),
                polygon: vec![],
            });
        }
        let mut communities = Vec::with_capacity(SIDE * SIDE);
        let mut sensors = Vec::with_capacity(SIDE * SIDE);
        let mut by_grid = HashMap::with_capacity(SIDE * SIDE);
        for y in 0..SIDE {
            for x in 0..SIDE {
                let town = (y / TOWN_SIDE) * (SIDE / TOWN_SIDE) + x / TOWN_SIDE;
                let id = format!("town-{town:02}-c{y:02}{x:02}");
                let (w, s) = corner(x, y);
                grids.push(GridConfig {
                    id: id.clone(),
                    name: format!("Community {y}-{x}"),
                    parent: Some(format!("town-{town:02}")),
                    polygon: vec![
                        [w, s],
                        [w + CELL_DEG, s],
                        [w + CELL_DEG, s + CELL_DEG],
                        [w, s + CELL_DEG],
                        [w, s],
                    ],
                });
                by_grid.insert(id.clone(), vec![format!("cam-{y:02}{x:02}")]);
                sensors.push(KINDS.map(|(k, _, _)| format!("{k}-{y:02}{x:02}")));
                communities.push(id);
            }
        }
        County {
            grids: Arc::new(GridIndex::new(&grids)),
            cameras: CameraRules {
                by_grid,
                ..CameraRules::default()
            },
            communities,
            sensors,
        }
    }

    pub fn sensor_count(&self) -> usize {
        self.sensors.len() * KINDS.len()
    }
}

fn corner(x: usize, y: usize) -> (f64, f64) {
    (WEST + x as f64 * CELL_DEG, SOUTH + y as f64 * CELL_DEG)
}

/// A place where things happen together for a while.
struct Hotspot {
    x: usize,
    y: usize,
    /// A fire (smoke, gas, safety reports) or a flood (water level, manhole covers).
    fire: bool,
    until: i64,
}

/// The stream generator.
struct Gen<'a> {
    county: &'a County,
    /// [`Mix::bounds`].
    bounds: [f64; 5],
    rng: StdRng,
    hotspots: Vec<Hotspot>,
    offline: Vec<usize>,
    reports: u64,
}

impl Gen<'_> {
    fn hotspot(&mut self, at: i64) -> Hotspot {
        Hotspot {
            x: self.rng.random_range(0..SIDE),
            y: self.rng.random_range(0..SIDE),
            fire: self.rng.random_bool(0.5),
            until: at + self.rng.random_range(30_000..120_000),
        }
    }

    /// A community at or next to a random hotspot, and whether that one is a fire.
    fn near_hotspot(&mut self, at: i64) -> (usize, bool) {
        let i = self.rng.random_range(0..self.hotspots.len());
        if self.hotspots[i].until <= at {
            self.hotspots[i] = self.hotspot(at);
        }
        let h = &self.hotspots[i];
        let (fire, hx, hy) = (h.fire, h.x, h.y);
        let dx = self.rng.random_range(0..3);
        let dy = self.rng.random_range(0..3);
        let x = (hx + dx).saturating_sub(1).min(SIDE - 1);
        let y = (hy + dy).saturating_sub(1).min(SIDE - 1);
        (y * SIDE + x, fire)
    }

    fn anywhere(&mut self) -> usize {
        self.rng.random_range(0..SIDE * SIDE)
    }

    fn reading(&mut self, c: usize, k: usize, at: i64, id: u64, state: SensorState) -> Event {
        let (kind, normal, alarm) = KINDS[k];
        let band = if state == SensorState::Alarm {
            alarm
        } else {
            normal
        };
        let (w, s) = corner(c % SIDE, c / SIDE);
        let offset = (k as f64 + 0.5) / KINDS.len() as f64 * CELL_DEG;
        Event::Sensor(
            id,
            SensorEvent {
                sensor_id: self.county.sensors[c][k].clone(),
                kind: kind.to_string(),
                grid_id: self.county.communities[c].clone(),
                state,
                reading: Some(self.rng.random_range(band.0..band.1)),
                device_ms: at - 40,
                receive_ms: at,
                location: Some([w + offset, s + offset]),
            },
        )
    }

    fn camera(&self, c: usize, kind: pb::CameraEventKind, activity: f64, at: i64) -> Event {
        let (x, y) = (c % SIDE, c / SIDE);
        Event::Camera(pb::CameraEvent {
            camera_id: format!("cam-{y:02}{x:02}"),
            kind: kind as i32,
            time: Some(ts_from_millis(at)),
            grid_ids: vec![self.county.communities[c].clone()],
            activity,
            detail: String::new(),
        })
    }

    fn report(&mut self, at: i64) -> Event {
        use pb::IncidentCategory as C;
        let (c, category) = if self.rng.random_bool(0.5) {
            let (c, fire) = self.near_hotspot(at);
            (
                c,
                if fire {
                    C::SafetyHazard
                } else {
                    C::PublicService
                },
            )
        } else {
            let cats = [
                C::Dispute,
                C::SafetyHazard,
                C::CentralTask,
                C::PublicService,
            ];
            (self.anywhere(), cats[self.rng.random_range(0..cats.len())])
        };
        self.reports += 1;
        let (w, s) = corner(c % SIDE, c / SIDE);
        Event::Report(pb::Incident {
            id: format!("INC-{:07}", self.reports),
            category: category as i32,
            item_code: "AQ-01".into(),
            description: "reported from the street by a grid worker".into(),
            grid_id: self.county.communities[c].clone(),
            location: Some(pb::LatLon {
                lon: w + CELL_DEG / 2.0,
                lat: s + CELL_DEG / 2.0,
            }),
            reporter_id: format!("worker-{}", c % 3000),
            status: pb::IncidentStatus::Reported as i32,
            reported_at: Some(ts_from_millis(at)),
            version: 1,
            ..Default::default()
        })
    }

    fn next(&mut self, i: usize) -> Timed {
        use pb::CameraEventKind as K;
        let at = T0 + i as i64 * 1000 / RATE;
        let id = i as u64 + 1;
        let r: f64 = self.rng.random();
        let [normal, alarm, fault, activity, camera_status] = self.bounds;
        let (kind, event) = if r < normal {
            let (c, k) = (self.anywhere(), self.rng.random_range(0..KINDS.len()));
            (
                Kind::Normal,
                self.reading(c, k, at, id, SensorState::Normal),
            )
        } else if r < alarm {
            let (c, k) = if self.rng.random_bool(0.8) {
                let (c, fire) = self.near_hotspot(at);
                // Fire: smoke or gas; flood: water level or manhole cover.
                let other = self.rng.random_bool(0.3);
                let k = match (fire, other) {
                    (true, false) => 0,
                    (true, true) => 3,
                    (false, false) => 1,
                    (false, true) => 2,
                };
                (c, k)
            } else {
                (self.anywhere(), self.rng.random_range(0..KINDS.len()))
            };
            (Kind::Alarm, self.reading(c, k, at, id, SensorState::Alarm))
        } else if r < fault {
            let (c, k) = (self.anywhere(), self.rng.random_range(0..KINDS.len()));
            (Kind::Fault, self.reading(c, k, at, id, SensorState::Fault))
        } else if r < activity {
            let (c, activity) = if self.rng.random_bool(0.5) {
                (self.near_hotspot(at).0, self.rng.random_range(3.0..8.0))
            } else {
                (self.anywhere(), self.rng.random_range(0.5..3.0))
            };
            (Kind::Activity, self.camera(c, K::Activity, activity, at))
        } else if r < camera_status {
            let back = !self.offline.is_empty() && self.rng.random_bool(0.5);
            let event = if back {
                let j = self.rng.random_range(0..self.offline.len());
                let c = self.offline.swap_remove(j);
                self.camera(c, K::Online, 0.0, at)
            } else {
                let c = self.anywhere();
                self.offline.push(c);
                self.camera(c, K::Offline, 0.0, at)
            };
            (Kind::CameraStatus, event)
        } else {
            (Kind::Report, self.report(at))
        };
        Timed { at, kind, event }
    }
}

/// `n` events of the county in `mix`, deterministic from `seed`.
pub fn events(county: &County, n: usize, seed: u64, mix: &Mix) -> Vec<Timed> {
    let mut g = Gen {
        county,
        bounds: mix.bounds(),
        rng: StdRng::seed_from_u64(seed),
        hotspots: Vec::new(),
        offline: Vec::new(),
        reports: 0,
    };
    g.hotspots = (0..20).map(|_| g.hotspot(T0)).collect();
    (0..n).map(|i| g.next(i)).collect()
}
