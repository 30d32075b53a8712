//! The geometry of the grid network: polygons, neighbours, point lookup and distances.
//!
//! Built once in [`GridIndex::new`] with `geo` (polygons, predicates, haversine) and an
//! `rstar` R*-tree of the polygons' bounding boxes, so that a lookup touches only the few
//! grids whose box holds the point, and neighbours are found without comparing every pair.
//!
//! Invariants:
//! - Coordinates are `[lon, lat]` degrees on a sphere of the earth's mean radius; longitudes
//!   do not wrap at ±180° (a county never straddles the antimeridian).
//! - A grid has geometry only when its polygon has at least three finite points; grids
//!   without (upper tiers drawn by their children only) are never located, have no
//!   neighbours and no centroid.
//! - Neighbours are symmetric, at the same depth, sorted by id, and never the grid itself.
//! - A point on a boundary is inside every grid that shares the boundary; [`GridIndex::locate`]
//!   picks the deepest, then the lowest index (the first in the config).

use std::{cmp::Reverse, sync::Arc};

use geo::{
    BoundingRect, Centroid, Closest, Distance, Euclidean, Haversine, HaversineClosestPoint,
    Intersects, LineString, Point, Polygon,
};
use rstar::{
    primitives::{GeomWithData, Rectangle},
    Envelope, RTree, RTreeObject, AABB,
};

use super::GridIndex;

/// Polygons at most this far apart (degrees, ≈1 cm) touch: seams between grids drawn
/// separately rarely meet to the last bit.
pub const TOUCH_TOLERANCE_DEG: f64 = 1e-7;

/// Metres in one degree of latitude, rounded down (110.57 km at the equator, more towards
/// the poles), so that a search box built from it is never too small.
const MIN_METRES_PER_DEGREE: f64 = 110_000.0;

/// A polygon's bounding box in the tree, with the grid's index.
type Boxed = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// Polygons and what is derived from them, by grid index.
#[derive(Debug, Clone, Default)]
pub(super) struct Geometry {
    /// Each grid's polygon, when it has one.
    polygons: Vec<Option<Polygon<f64>>>,
    /// Each grid's centroid `[lon, lat]`, when it has a polygon.
    centroids: Vec<Option<[f64; 2]>>,
    /// Bounding boxes of the polygons, for point and area queries.
    tree: RTree<Boxed>,
    /// Each grid's neighbours (ids, sorted).
    neighbours: Vec<Box<[Arc<str>]>>,
    /// The same neighbours as grid indices, in the same order.
    neighbour_ix: Vec<Box<[u32]>>,
}

impl Geometry {
    /// Polygons from `[lon, lat]` rings (closed or not), their tree and neighbours; `depths`
    /// and `names` are by the same index.
    pub(super) fn build(rings: &[&[[f64; 2]]], depths: &[usize], names: &[Arc<str>]) -> Self {
        let polygons: Vec<Option<Polygon<f64>>> = rings.iter().map(|r| polygon(r)).collect();
        let centroids = polygons
            .iter()
            .map(|p| {
                p.as_ref()
                    .and_then(|p| p.centroid())
                    .map(|c| [c.x(), c.y()])
            })
            .collect();
        let boxes = polygons
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let r = p.as_ref()?.bounding_rect()?;
                let rect = Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]);
                Some(GeomWithData::new(rect, i))
            })
            .collect();
        let mut geometry = Self {
            polygons,
            centroids,
            tree: RTree::bulk_load(boxes),
            neighbours: Vec::new(),
            neighbour_ix: Vec::new(),
        };
        geometry.neighbour_ix = (0..names.len())
            .map(|i| {
                let mut ix: Vec<u32> = geometry
                    .touching(i, depths)
                    .filter_map(|j| u32::try_from(j).ok())
                    .collect();
                ix.sort_by(|a, b| names[*a as usize].cmp(&names[*b as usize]));
                ix.into_boxed_slice()
            })
            .collect();
        geometry.neighbours = geometry
            .neighbour_ix
            .iter()
            .map(|ix| ix.iter().map(|&j| names[j as usize].clone()).collect())
            .collect();
        geometry
    }

    /// Grids at the depth of `i` whose polygons touch or overlap its own.
    fn touching<'a>(&'a self, i: usize, depths: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
        let own = self.polygons[i].as_ref();
        let envelope = own.and_then(|p| p.bounding_rect()).map(|r| {
            let t = TOUCH_TOLERANCE_DEG;
            AABB::from_corners(
                [r.min().x - t, r.min().y - t],
                [r.max().x + t, r.max().y + t],
            )
        });
        envelope
            .into_iter()
            .flat_map(move |env| self.tree.locate_in_envelope_intersecting(&env))
            .map(|b| b.data)
            .filter(move |&j| j != i && depths[j] == depths[i])
            .filter(move |&j| match (own, &self.polygons[j]) {
                (Some(a), Some(b)) => Euclidean.distance(a, b) <= TOUCH_TOLERANCE_DEG,
                _ => false,
            })
    }
}

/// A polygon from a ring of at least three finite points (geo closes an open ring).
fn polygon(ring: &[[f64; 2]]) -> Option<Polygon<f64>> {
    if ring.len() < 3 || ring.iter().flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let exterior: LineString<f64> = ring.iter().map(|&[lon, lat]| (lon, lat)).collect();
    Some(Polygon::new(exterior, Vec::new()))
}

/// [`metres_to_near`] for one polygon (the tests' reference).
#[cfg(test)]
fn metres_to(polygon: &Polygon<f64>, from: Point<f64>) -> f64 {
    metres_to_near(polygon, from, from.y().to_radians().cos(), true)
}

/// Great-circle metres from `from` to the nearest point of `polygon` (0 inside or on it).
///
/// Edges are straight on the map (as [`GridIndex::locate`] tests containment), not
/// great-circle arcs (which bulge poleward by centimetres over a kilometre). The nearest
/// point of an edge is found on a local equirectangular plane around `from` (a few
/// multiplications per edge, where a great-circle search costs a dozen trigonometric
/// calls), then measured on the sphere; the plane moves that point by a hair along its
/// edge, and the distance is stationary there (within 1 mm of a search along the edge).
///
/// `k` is the cosine of `from`'s latitude (the same for every polygon a query measures);
/// `may_contain` is false when `from` lies outside the polygon's bounding box, so the
/// containment test (the costliest part) is skipped: it would say no.
fn metres_to_near(polygon: &Polygon<f64>, from: Point<f64>, k: f64, may_contain: bool) -> f64 {
    if may_contain && polygon.intersects(&from) {
        return 0.0;
    }
    let (x0, y0) = (from.x(), from.y());
    if k < 1e-6 {
        // At a pole the plane degenerates: the great-circle search.
        return match polygon.haversine_closest_point(&from) {
            Closest::SinglePoint(p) => Haversine.distance(from, p),
            Closest::Intersection(_) => 0.0,
            Closest::Indeterminate => f64::INFINITY,
        };
    }
    let mut best = (f64::INFINITY, from);
    for edge in polygon.exterior().lines() {
        let (ax, ay) = ((edge.start.x - x0) * k, edge.start.y - y0);
        let (dx, dy) = ((edge.end.x - edge.start.x) * k, edge.end.y - edge.start.y);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (px, py) = (ax + t * dx, ay + t * dy);
        let d2 = px * px + py * py;
        if d2 < best.0 {
            best = (d2, Point::new(x0 + px / k, y0 + py));
        }
    }
    Haversine.distance(from, best.1)
}

impl GridIndex {
    /// Grids at the same depth whose polygons touch (a shared edge or corner, within
    /// [`TOUCH_TOLERANCE_DEG`]) or overlap this one's, sorted by id; empty for an unknown
    /// grid or one without a polygon.
    pub fn neighbours(&self, grid: &str) -> &[Arc<str>] {
        self.index_of(grid)
            .and_then(|i| self.geometry.neighbours.get(i))
            .map(|n| &n[..])
            .unwrap_or(&[])
    }

    /// [`GridIndex::neighbours`] of the grid with index `ix`, as indices (same order).
    pub fn neighbour_indices(&self, ix: usize) -> &[u32] {
        self.geometry
            .neighbour_ix
            .get(ix)
            .map(|n| &n[..])
            .unwrap_or(&[])
    }

    /// The deepest grid whose polygon holds `(lon, lat)` (its boundary included); between
    /// grids of the same depth (a point on their shared edge) the first in the config.
    pub fn locate(&self, lon: f64, lat: f64) -> Option<&str> {
        if !lon.is_finite() || !lat.is_finite() {
            return None;
        }
        let point = Point::new(lon, lat);
        let geometry = &self.geometry;
        geometry
            .tree
            .locate_all_at_point(&[lon, lat])
            .map(|b| b.data)
            .filter(|&i| {
                geometry.polygons[i]
                    .as_ref()
                    .is_some_and(|p| p.intersects(&point))
            })
            .max_by_key(|&i| (self.depths[i], Reverse(i)))
            .map(|i| &*self.names[i])
    }

    /// Whether the grid's polygon holds `[lon, lat]` (its boundary included); `None` for
    /// an unknown grid or one without a polygon.
    pub fn polygon_holds(&self, grid: &str, [lon, lat]: [f64; 2]) -> Option<bool> {
        let polygon = self.geometry.polygons.get(self.index_of(grid)?)?.as_ref()?;
        Some(lon.is_finite() && lat.is_finite() && polygon.intersects(&Point::new(lon, lat)))
    }

    /// The outer ring of the grid's polygon, `[lon, lat]` points, closed (for drawing).
    pub fn outline(&self, grid: &str) -> Option<Vec<[f64; 2]>> {
        let p = self.geometry.polygons.get(self.index_of(grid)?)?.as_ref()?;
        Some(p.exterior().coords().map(|c| [c.x, c.y]).collect())
    }

    /// The centroid of the grid's polygon, `[lon, lat]`.
    pub fn centroid(&self, grid: &str) -> Option<[f64; 2]> {
        *self.geometry.centroids.get(self.index_of(grid)?)?
    }

    /// Grids (only those at `depth`, when given) whose polygon lies within `metres` of
    /// `point` (`[lon, lat]`; 0 for a polygon that holds it), nearest first, then by id.
    pub fn grids_within(&self, point: [f64; 2], metres: f64, depth: Option<usize>) -> Vec<&str> {
        self.within(point, metres, depth)
            .into_iter()
            .map(|i| &*self.names[i])
            .collect()
    }

    /// [`GridIndex::grids_within`], as grid indices (in its order).
    pub fn grids_within_indices(
        &self,
        point: [f64; 2],
        metres: f64,
        depth: Option<usize>,
    ) -> Vec<u32> {
        self.within(point, metres, depth)
            .into_iter()
            .filter_map(|i| u32::try_from(i).ok())
            .collect()
    }

    /// Indices of the grids of [`GridIndex::grids_within`], in its order.
    fn within(&self, point: [f64; 2], metres: f64, depth: Option<usize>) -> Vec<usize> {
        let [lon, lat] = point;
        if !(lon.is_finite() && lat.is_finite() && metres.is_finite() && metres >= 0.0) {
            return Vec::new();
        }
        let dlat = metres / MIN_METRES_PER_DEGREE + TOUCH_TOLERANCE_DEG;
        let widest = (lat.abs() + dlat).min(90.0).to_radians().cos();
        let dlon = if widest > 1e-9 {
            (dlat / widest).min(360.0)
        } else {
            360.0
        };
        let envelope = AABB::from_corners([lon - dlon, lat - dlat], [lon + dlon, lat + dlat]);
        let from = Point::new(lon, lat);
        let k = lat.to_radians().cos();
        let mut found: Vec<(f64, usize)> = self
            .geometry
            .tree
            .locate_in_envelope_intersecting(&envelope)
            .filter(|b| depth.is_none_or(|d| self.depths[b.data] == d))
            .filter_map(|b| {
                let polygon = self.geometry.polygons[b.data].as_ref()?;
                let may_contain = b.geom().envelope().contains_point(&[lon, lat]);
                let m = metres_to_near(polygon, from, k, may_contain);
                (m <= metres).then_some((m, b.data))
            })
            .collect();
        found.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then_with(|| self.names[a.1].cmp(&self.names[b.1]))
        });
        found.into_iter().map(|(_, i)| i).collect()
    }

    /// Great-circle distance in metres between two `[lon, lat]` points (haversine, on the
    /// earth's mean radius).
    pub fn distance_m(a: [f64; 2], b: [f64; 2]) -> f64 {
        Haversine.distance(Point::from(a), Point::from(b))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The nearest point of each straight edge (on the map, as `locate` draws them) by a
    /// ternary search of the great-circle distance along it.
    fn reference(polygon: &Polygon<f64>, from: Point<f64>) -> f64 {
        if polygon.intersects(&from) {
            return 0.0;
        }
        let along = |a: geo::Coord<f64>, b: geo::Coord<f64>, t: f64| {
            Haversine.distance(
                from,
                Point::new(a.x + t * (b.x - a.x), a.y + t * (b.y - a.y)),
            )
        };
        let mut best = f64::INFINITY;
        for edge in polygon.exterior().lines() {
            let (mut lo, mut hi) = (0.0, 1.0);
            for _ in 0..200 {
                let (m1, m2) = (lo + (hi - lo) / 3.0, hi - (hi - lo) / 3.0);
                if along(edge.start, edge.end, m1) <= along(edge.start, edge.end, m2) {
                    hi = m2;
                } else {
                    lo = m1;
                }
            }
            best = best.min(along(edge.start, edge.end, (lo + hi) / 2.0));
        }
        best
    }

    proptest! {
        #[test]
        fn the_planar_search_finds_the_nearest_point_of_straight_edges_within_a_millimetre(
            lat in -60.0..60.0f64,
            lon in -170.0..170.0f64,
            (w, h) in (0.0005..0.02f64, 0.0005..0.02f64),
            skew in -0.3..0.3f64,
            (dx, dy) in (-0.05..0.05f64, -0.05..0.05f64),
        ) {
            // A parallelogram leaning by `skew`, and a point around it.
            let ring = [
                [lon, lat],
                [lon + w, lat],
                [lon + w + skew * h, lat + h],
                [lon + skew * h, lat + h],
            ];
            let polygon = polygon(&ring).expect("a valid ring");
            let from = Point::new(lon + dx, lat + dy);
            let (fast, exact) = (metres_to(&polygon, from), reference(&polygon, from));
            prop_assert!((fast - exact).abs() <= 1e-3, "{fast} vs {exact}");
        }

        #[test]
        fn grids_within_are_every_polygon_near_enough_nearest_first(
            (x, y) in (-0.01..0.07f64, -0.01..0.05f64),
            metres in 0.0..2_500.0f64,
        ) {
            // 8 x 6 skewed cells under one parent; the query point anywhere around them.
            let cell = |i: usize, j: usize| {
                let (w, s) = (120.0 + i as f64 * 0.007 + j as f64 * 0.001, 30.0 + j as f64 * 0.007);
                vec![[w, s], [w + 0.007, s], [w + 0.008, s + 0.007], [w + 0.001, s + 0.007]]
            };
            let mut cfg = vec![crate::config::GridConfig {
                id: "town".into(),
                name: "Town".into(),
                parent: None,
                polygon: vec![],
            }];
            for i in 0..8 {
                for j in 0..6 {
                    cfg.push(crate::config::GridConfig {
                        id: format!("c{i}{j}"),
                        name: format!("Cell {i}{j}"),
                        parent: Some("town".into()),
                        polygon: cell(i, j),
                    });
                }
            }
            let index = GridIndex::new(&cfg);
            let from = [120.0 + x, 30.0 + y];
            let mut brute: Vec<(f64, &str)> = cfg[1..]
                .iter()
                .map(|g| {
                    let p = polygon(&g.polygon).expect("a valid ring");
                    (metres_to(&p, Point::from(from)), g.id.as_str())
                })
                .filter(|(m, _)| *m <= metres)
                .collect();
            brute.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
            let brute: Vec<&str> = brute.into_iter().map(|(_, id)| id).collect();
            prop_assert_eq!(index.grids_within(from, metres, Some(1)), brute);
        }
    }
}
