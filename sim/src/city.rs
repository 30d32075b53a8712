//! A deterministic demo city: one county, its towns, their communities, and the sensors in
//! each community.
//!
//! Grids are rectangles on a plausible lon/lat layout around Anji county (lon 119.68,
//! lat 30.64): towns tile the county, communities tile their town (rows of equal height;
//! the last row's cells are wider when the count does not fill it). Everything is derived
//! from the seed with `StdRng`, so the same arguments always give the same city.

use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use serde::Serialize;

use layout::{
    cols_for, ring, round6, tile, width_for, CENTRE, COMMUNITY_STEMS, TOWN_NAMES, TOWN_SIZE,
};

mod layout;

/// Sensor kinds the fleet simulates, as they appear in MQTT topics.
pub const SENSOR_KINDS: [&str; 4] = ["smoke", "water_level", "manhole_cover", "gas"];

/// Id of the top grid.
pub const COUNTY_ID: &str = "county";

/// Tier of a grid in the governance network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GridLevel {
    /// The whole county (the root).
    County,
    /// A town, township or subdistrict.
    Town,
    /// A community or village: the leaf cells sensors and reports belong to.
    Community,
}

/// One grid of the demo city.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoGrid {
    /// `county`, `town-01`, `town-01-c01`...
    pub id: String,
    /// Chinese and English display name, e.g. `竹林村 Zhulin Village`.
    pub name: String,
    /// The enclosing grid; `None` for the county.
    pub parent: Option<String>,
    /// Tier.
    pub level: GridLevel,
    /// Closed ring of `[lon, lat]` points (first point repeated last), counter-clockwise.
    pub polygon: Vec<[f64; 2]>,
}

impl DemoGrid {
    /// `[west, south, east, north]` of the polygon.
    pub fn bbox(&self) -> [f64; 4] {
        let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        for [lon, lat] in &self.polygon {
            b = [
                b[0].min(*lon),
                b[1].min(*lat),
                b[2].max(*lon),
                b[3].max(*lat),
            ];
        }
        b
    }

    /// Centre of the bounding box, `[lon, lat]`.
    pub fn centre(&self) -> [f64; 2] {
        let [w, s, e, n] = self.bbox();
        [(w + e) / 2.0, (s + n) / 2.0]
    }

    /// Whether `[lon, lat]` lies inside (or on the edge of) the grid's rectangle.
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let [w, s, e, n] = self.bbox();
        (w..=e).contains(&lon) && (s..=n).contains(&lat)
    }
}

/// One sensor of the demo city.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoSensor {
    /// E.g. `smk-town-01-c01-03`: kind prefix, community id, index in the community.
    pub id: String,
    /// One of [`SENSOR_KINDS`].
    pub kind: String,
    /// The community the sensor is in.
    pub grid_id: String,
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
}

impl DemoSensor {
    /// The MQTT topic the sensor publishes on: `gridsight/sensors/{grid}/{kind}/{id}`.
    pub fn topic(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            crate::TOPIC_PREFIX,
            self.grid_id,
            self.kind,
            self.id
        )
    }
}

/// The demo city: grids (county first, then each town followed by its communities) and
/// sensors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoCity {
    /// Every grid; parents come before their children.
    pub grids: Vec<DemoGrid>,
    /// Every sensor, grouped by community.
    pub sensors: Vec<DemoSensor>,
}

impl DemoCity {
    /// Generates the city; the same arguments always give the same city.
    pub fn generate(
        seed: u64,
        towns: usize,
        communities_per_town: usize,
        sensors_per_community: usize,
    ) -> DemoCity {
        let mut rng = StdRng::seed_from_u64(seed);
        let cols = cols_for(towns).max(1);
        let rows = towns.div_ceil(cols).max(1);
        let (w, h) = (cols as f64 * TOWN_SIZE[0], rows as f64 * TOWN_SIZE[1]);
        let county_rect = [
            CENTRE[0] - w / 2.0,
            CENTRE[1] - h / 2.0,
            CENTRE[0] + w / 2.0,
            CENTRE[1] + h / 2.0,
        ];
        let mut grids = vec![DemoGrid {
            id: COUNTY_ID.to_string(),
            name: "安吉县 Anji County".to_string(),
            parent: None,
            level: GridLevel::County,
            polygon: ring(county_rect),
        }];
        let mut sensors = Vec::new();
        let mut town_names: Vec<usize> = (0..TOWN_NAMES.len()).collect();
        town_names.shuffle(&mut rng);
        let tw = width_for(towns);
        let cw = width_for(communities_per_town);
        for (t, town_rect) in tile(county_rect, towns).into_iter().enumerate() {
            let town_id = format!("town-{:0tw$}", t + 1);
            let (cn, en) = TOWN_NAMES[town_names[t % TOWN_NAMES.len()]];
            let round = t / TOWN_NAMES.len();
            let suffix = if round == 0 {
                String::new()
            } else {
                format!(" {}", round + 1)
            };
            grids.push(DemoGrid {
                id: town_id.clone(),
                name: format!("{cn}{suffix} {en}{suffix}"),
                parent: Some(COUNTY_ID.to_string()),
                level: GridLevel::Town,
                polygon: ring(town_rect),
            });
            let mut stems: Vec<usize> = (0..COMMUNITY_STEMS.len()).collect();
            stems.shuffle(&mut rng);
            for (c, rect) in tile(town_rect, communities_per_town)
                .into_iter()
                .enumerate()
            {
                let id = format!("{town_id}-c{:0cw$}", c + 1);
                let (cn, en) = COMMUNITY_STEMS[stems[c % COMMUNITY_STEMS.len()]];
                let round = c / COMMUNITY_STEMS.len();
                let suffix = if round == 0 {
                    String::new()
                } else {
                    format!("{}", round + 1)
                };
                let (cn_kind, en_kind) = if rng.random_bool(0.4) {
                    ("社区", "Community")
                } else {
                    ("村", "Village")
                };
                grids.push(DemoGrid {
                    id: id.clone(),
                    name: format!("{cn}{suffix}{cn_kind} {en}{suffix} {en_kind}"),
                    parent: Some(town_id.clone()),
                    level: GridLevel::Community,
                    polygon: ring(rect),
                });
                for k in 1..=sensors_per_community {
                    let kind = SENSOR_KINDS[rng.random_range(0..SENSOR_KINDS.len())];
                    let [west, south, east, north] = rect;
                    let (mx, my) = ((east - west) * 0.1, (north - south) * 0.1);
                    sensors.push(DemoSensor {
                        id: format!("{}-{id}-{k:02}", kind_prefix(kind)),
                        kind: kind.to_string(),
                        grid_id: id.clone(),
                        lon: round6(rng.random_range(west + mx..=east - mx)),
                        lat: round6(rng.random_range(south + my..=north - my)),
                    });
                }
            }
        }
        DemoCity { grids, sensors }
    }

    /// The grid with this id.
    pub fn grid(&self, id: &str) -> Option<&DemoGrid> {
        self.grids.iter().find(|g| g.id == id)
    }

    /// The leaf grids (communities), in order.
    pub fn communities(&self) -> impl Iterator<Item = &DemoGrid> {
        self.grids
            .iter()
            .filter(|g| g.level == GridLevel::Community)
    }

    /// The grids as `[[grids]]` TOML tables (`id`, `name`, `parent`, `polygon`), the shape
    /// of the daemon's config.
    pub fn grids_toml(&self) -> String {
        let mut out = String::new();
        for g in &self.grids {
            out.push_str("[[grids]]\n");
            out.push_str(&format!("id = {}\n", toml_str(&g.id)));
            out.push_str(&format!("name = {}\n", toml_str(&g.name)));
            if let Some(p) = &g.parent {
                out.push_str(&format!("parent = {}\n", toml_str(p)));
            }
            let points: Vec<String> = g
                .polygon
                .iter()
                .map(|[lon, lat]| format!("[{lon}, {lat}]"))
                .collect();
            out.push_str(&format!("polygon = [{}]\n\n", points.join(", ")));
        }
        out
    }
}

/// Short id prefix of a sensor kind.
pub fn kind_prefix(kind: &str) -> &'static str {
    match kind {
        "smoke" => "smk",
        "water_level" => "wlv",
        "manhole_cover" => "mhc",
        "gas" => "gas",
        _ => "sen",
    }
}

/// A TOML basic string (JSON string escaping is valid TOML).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(g: &DemoGrid) -> f64 {
        let [w, s, e, n] = g.bbox();
        (e - w) * (n - s)
    }

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a = DemoCity::generate(7, 8, 10, 4);
        let b = DemoCity::generate(7, 8, 10, 4);
        assert_eq!(a, b);
        assert_ne!(a, DemoCity::generate(8, 8, 10, 4));
        assert_eq!(a.grids.len(), 1 + 8 + 80);
        assert_eq!(a.sensors.len(), 320);
        assert_eq!(a.grids[0].id, "county");
        assert!(a.grid("town-08-c10").is_some());
        assert!(a.sensors.iter().any(|s| s.id.ends_with("-town-01-c01-03")));
    }

    #[test]
    fn parents_exist_and_come_first() {
        let city = DemoCity::generate(1, 5, 7, 2);
        for (i, g) in city.grids.iter().enumerate() {
            match &g.parent {
                None => assert_eq!(g.level, GridLevel::County),
                Some(p) => {
                    let pi = city.grids.iter().position(|x| &x.id == p);
                    assert!(matches!(pi, Some(pi) if pi < i), "parent of {}", g.id);
                }
            }
        }
        for s in &city.sensors {
            let g = city.grid(&s.grid_id).expect("sensor grid exists");
            assert_eq!(g.level, GridLevel::Community);
            assert!(g.contains(s.lon, s.lat), "{} outside {}", s.id, g.id);
            assert!(SENSOR_KINDS.contains(&s.kind.as_str()));
            assert!(s.id.starts_with(kind_prefix(&s.kind)));
            assert_eq!(s.topic().split('/').count(), 5);
        }
    }

    #[test]
    fn children_lie_inside_and_tile_their_parent() {
        let eps = 1e-9;
        // 7 communities: rows of 3, 3 and 1 (the last one as wide as the town).
        let city = DemoCity::generate(3, 5, 7, 0);
        for parent in &city.grids {
            let kids: Vec<&DemoGrid> = city
                .grids
                .iter()
                .filter(|g| g.parent.as_deref() == Some(parent.id.as_str()))
                .collect();
            if kids.is_empty() {
                continue;
            }
            let [pw, ps, pe, pn] = parent.bbox();
            for k in &kids {
                assert_eq!(k.polygon.first(), k.polygon.last());
                for [lon, lat] in &k.polygon {
                    assert!(*lon >= pw - eps && *lon <= pe + eps, "{} lon", k.id);
                    assert!(*lat >= ps - eps && *lat <= pn + eps, "{} lat", k.id);
                }
            }
            let sum: f64 = kids.iter().map(|k| area(k)).sum();
            assert!((sum - area(parent)).abs() < 1e-9, "{} not tiled", parent.id);
        }
    }

    #[test]
    fn grids_toml_lists_every_grid() {
        let city = DemoCity::generate(1, 2, 2, 1);
        let toml = city.grids_toml();
        assert_eq!(toml.matches("[[grids]]").count(), city.grids.len());
        assert!(toml.contains("parent = \"town-02\""));
        assert!(toml.contains("name = \"安吉县 Anji County\""));
    }
}
