//! Tests of the grid geometry: neighbours, point lookup, distances, and a property test of
//! `locate` against a brute-force search over every grid.

use std::sync::Arc;

use proptest::prelude::*;

use super::GridIndex;
use crate::config::GridConfig;

/// A rectangle `[west, south, east, north]` as an open ring.
fn rect(id: &str, parent: Option<&str>, [w, s, e, n]: [f64; 4]) -> GridConfig {
    GridConfig {
        id: id.into(),
        name: id.into(),
        parent: parent.map(Into::into),
        polygon: vec![[w, s], [e, s], [e, n], [w, n]],
    }
}

const STEP: f64 = 0.01;
const LON0: f64 = 120.0;
const LAT0: f64 = 30.0;

/// A town of 3×3 cells `r{row}c{col}` (row 0 south, col 0 west) of 0.01°, and the town
/// drawn a cell wider to the east than its cells.
fn town_of_nine() -> GridIndex {
    let mut grids = vec![rect(
        "town",
        None,
        [LON0, LAT0, LON0 + 4.0 * STEP, LAT0 + 3.0 * STEP],
    )];
    for r in 0..3 {
        for c in 0..3 {
            let (w, s) = (LON0 + c as f64 * STEP, LAT0 + r as f64 * STEP);
            grids.push(rect(
                &format!("r{r}c{c}"),
                Some("town"),
                [w, s, w + STEP, s + STEP],
            ));
        }
    }
    GridIndex::new(&grids)
}

fn ids(n: &[Arc<str>]) -> Vec<&str> {
    n.iter().map(|s| &**s).collect()
}

#[test]
fn neighbours_share_an_edge_or_a_corner() {
    let g = town_of_nine();
    assert_eq!(
        ids(g.neighbours("r1c1")),
        vec!["r0c0", "r0c1", "r0c2", "r1c0", "r1c2", "r2c0", "r2c1", "r2c2"]
    );
    assert_eq!(ids(g.neighbours("r0c0")), vec!["r0c1", "r1c0", "r1c1"]);
    assert_eq!(
        ids(g.neighbours("r0c1")),
        vec!["r0c0", "r0c2", "r1c0", "r1c1", "r1c2"]
    );
    assert!(g.neighbours("missing").is_empty());
}

#[test]
fn no_neighbours_across_tiers() {
    let g = town_of_nine();
    assert!(g.neighbours("town").is_empty(), "the only grid at depth 0");
    assert!(!ids(g.neighbours("r1c1")).contains(&"town"));
}

#[test]
fn seams_within_the_tolerance_touch_wider_gaps_do_not() {
    let g = GridIndex::new(&[
        rect("a", None, [120.0, 30.0, 120.01, 30.01]),
        rect("b", None, [120.010_000_05, 30.0, 120.02, 30.01]),
        rect("far", None, [120.030_01, 30.0, 120.04, 30.01]),
        rect("c", None, [120.02 + 1e-5, 30.0, 120.03, 30.01]),
        GridConfig {
            id: "bare".into(),
            name: "bare".into(),
            parent: None,
            polygon: vec![],
        },
    ]);
    assert_eq!(ids(g.neighbours("a")), vec!["b"]);
    assert_eq!(ids(g.neighbours("b")), vec!["a"]);
    assert!(g.neighbours("c").is_empty());
    assert!(g.neighbours("far").is_empty());
    assert!(g.neighbours("bare").is_empty());
    assert_eq!(g.centroid("bare"), None);
}

#[test]
fn locate_inside_on_the_boundary_and_outside() {
    let g = town_of_nine();
    assert_eq!(g.locate(LON0 + 0.015, LAT0 + 0.015), Some("r1c1"));
    assert_eq!(g.locate(LON0 + 0.025, LAT0 + 0.005), Some("r0c2"));
    // On the edge between r0c0 and r0c1: both hold it, the first in the config wins.
    assert_eq!(g.locate(LON0 + STEP, LAT0 + 0.005), Some("r0c0"));
    // On the town's outer corner.
    assert_eq!(g.locate(LON0, LAT0), Some("r0c0"));
    assert_eq!(g.locate(LON0 + 4.0 * STEP, LAT0), Some("town"));
    assert_eq!(g.locate(LON0 - 1e-6, LAT0 + 0.015), None);
    assert_eq!(g.locate(LON0 + 0.015, LAT0 + 0.030_001), None);
    assert_eq!(g.locate(f64::NAN, LAT0), None);
}

#[test]
fn the_deepest_grid_wins() {
    let g = town_of_nine();
    assert_eq!(
        g.locate(LON0 + 0.035, LAT0 + 0.015),
        Some("town"),
        "no cell"
    );
    assert_eq!(g.locate(LON0 + 0.005, LAT0 + 0.005), Some("r0c0"));
    // The same, whatever the order in the config.
    let reversed = GridIndex::new(&[
        rect("c", Some("t"), [0.0, 0.0, 1.0, 1.0]),
        rect("t", None, [0.0, 0.0, 2.0, 2.0]),
    ]);
    assert_eq!(reversed.locate(0.5, 0.5), Some("c"));
    assert_eq!(reversed.locate(1.5, 0.5), Some("t"));
}

#[test]
fn grids_within_a_distance_nearest_first() {
    let g = town_of_nine();
    let centre = [LON0 + 0.015, LAT0 + 0.015];
    // West/east edges are 0.005° of longitude away (≈481 m at 30°N), south/north edges
    // 0.005° of latitude (≈556 m), the corners ≈735 m.
    assert_eq!(g.grids_within(centre, 0.0, Some(1)), vec!["r1c1"]);
    assert_eq!(g.grids_within(centre, 0.0, None), vec!["r1c1", "town"]);
    assert_eq!(g.grids_within(centre, 0.0, Some(0)), vec!["town"]);
    let near = g.grids_within(centre, 500.0, Some(1));
    assert_eq!(near[0], "r1c1");
    let mut rest = near[1..].to_vec();
    rest.sort();
    assert_eq!(rest, vec!["r1c0", "r1c2"]);
    let wider = g.grids_within(centre, 600.0, Some(1));
    assert_eq!(wider.len(), 5, "{wider:?}");
    let mut south_north = wider[3..].to_vec();
    south_north.sort();
    assert_eq!(
        south_north,
        vec!["r0c1", "r2c1"],
        "after the west and east cells"
    );
    assert_eq!(g.grids_within(centre, 800.0, Some(1)).len(), 9);
    // A point outside everything, 0.001° of latitude (≈111 m) south of the town.
    let south = [LON0 + 0.015, LAT0 - 0.001];
    assert!(g.grids_within(south, 100.0, None).is_empty());
    assert_eq!(g.grids_within(south, 120.0, Some(1)), vec!["r0c1"]);
    assert!(g.grids_within(centre, -1.0, None).is_empty());
}

#[test]
fn distances_and_centroids() {
    let d = GridIndex::distance_m([120.0, 30.0], [120.0, 31.0]);
    assert!((d - 111_195.0).abs() < 10.0, "{d}");
    assert_eq!(GridIndex::distance_m([120.0, 30.0], [120.0, 30.0]), 0.0);
    let g = town_of_nine();
    let [lon, lat] = g.centroid("r1c1").unwrap();
    assert!((lon - (LON0 + 0.015)).abs() < 1e-9 && (lat - (LAT0 + 0.015)).abs() < 1e-9);
    assert_eq!(g.centroid("missing"), None);
    assert_eq!(g.polygon_holds("r1c1", [lon, lat]), Some(true));
    assert_eq!(g.polygon_holds("r0c0", [lon, lat]), Some(false));
    assert_eq!(g.polygon_holds("missing", [lon, lat]), None);
}

#[test]
fn ten_thousand_grids_under_a_hundred_parents() {
    const N: usize = 100;
    let grids = super::testkit::square_tiling(10, 10, 0.001, [LON0, LAT0]);
    assert_eq!(grids.len(), N * N + 100);
    let g = GridIndex::new(&grids);
    // King moves on an n×n board.
    let kings = |r: usize, c: usize, n: usize| {
        let span = |k: usize| (k.saturating_sub(1)..=(k + 1).min(n - 1)).count();
        span(r) * span(c) - 1
    };
    for r in 0..N {
        for c in 0..N {
            let id = format!("c{r}-{c}");
            assert_eq!(g.neighbours(&id).len(), kings(r, c, N), "{id}");
        }
    }
    for r in 0..10 {
        for c in 0..10 {
            assert_eq!(g.neighbours(&format!("p{r}-{c}")).len(), kings(r, c, 10));
        }
    }
    assert_eq!(g.neighbours("c50-50").len(), 8);
    assert!(
        ids(g.neighbours("c9-9")).contains(&"c10-10"),
        "across parents"
    );
    for grid in ["c0-0", "c37-81", "c99-99"] {
        for n in g.neighbours(grid) {
            assert!(ids(g.neighbours(n)).contains(&grid), "{grid} ↔ {n}");
        }
    }
    assert_eq!(g.locate(LON0 + 0.0505, LAT0 + 0.0375), Some("c37-50"));
    assert_eq!(g.ancestor_at("c37-50", 0), Some("p3-5"));
}

/// Cut positions from widths: `[start, start + w0, start + w0 + w1, ...]`.
fn cuts(start: f64, widths: &[f64]) -> Vec<f64> {
    let mut out = vec![start];
    for w in widths {
        let last = out[out.len() - 1];
        out.push(last + w);
    }
    out
}

proptest! {
    #[test]
    fn locate_agrees_with_a_brute_force_search(
        lon0 in 100.0f64..130.0,
        lat0 in 20.0f64..40.0,
        widths in prop::collection::vec(0.001f64..0.02, 1..7),
        heights in prop::collection::vec(0.001f64..0.02, 1..7),
        holes in prop::collection::vec(any::<bool>(), 36),
        points in prop::collection::vec((0.0f64..1.0, 0.0f64..1.0, 0u8..4), 1..40),
    ) {
        let xs = cuts(lon0, &widths);
        let ys = cuts(lat0, &heights);
        let (x_end, y_end) = (xs[xs.len() - 1], ys[ys.len() - 1]);
        // The root covers the tiling; some cells are left out (holes: the root is found).
        let mut cells = vec![(rect("root", None, [lon0, lat0, x_end, y_end]), [lon0, lat0, x_end, y_end], 0)];
        for r in 0..heights.len() {
            for c in 0..widths.len() {
                if holes[r * 6 + c] && (r + c) % 3 == 0 {
                    continue;
                }
                let b = [xs[c], ys[r], xs[c + 1], ys[r + 1]];
                cells.push((rect(&format!("r{r}c{c}"), Some("root"), b), b, 1));
            }
        }
        let g = GridIndex::new(&cells.iter().map(|c| c.0.clone()).collect::<Vec<_>>());
        let (mx, my) = ((x_end - lon0) * 0.1, (y_end - lat0) * 0.1);
        for (fx, fy, snap) in points {
            let mut lon = lon0 - mx + fx * (x_end - lon0 + 2.0 * mx);
            let mut lat = lat0 - my + fy * (y_end - lat0 + 2.0 * my);
            // Now and then exactly on a cut line (a shared edge or corner).
            if snap & 1 == 1 {
                lon = xs[(fx * xs.len() as f64) as usize % xs.len()];
            }
            if snap & 2 == 2 {
                lat = ys[(fy * ys.len() as f64) as usize % ys.len()];
            }
            let expected = cells
                .iter()
                .enumerate()
                .filter(|(_, (_, [w, s, e, n], _))| *w <= lon && lon <= *e && *s <= lat && lat <= *n)
                .max_by_key(|(i, (_, _, depth))| (*depth, std::cmp::Reverse(*i)))
                .map(|(_, (cfg, _, _))| cfg.id.as_str());
            prop_assert_eq!(g.locate(lon, lat), expected, "at ({}, {})", lon, lat);
        }
    }
}

#[test]
fn an_outline_is_the_closed_ring_of_the_grid_and_none_without_a_polygon() {
    let g = town_of_nine();
    let ring = g.outline("r0c0").expect("a polygon");
    assert_eq!(ring.first(), ring.last(), "closed");
    assert_eq!(ring.len(), 5);
    for corner in [
        [LON0, LAT0],
        [LON0 + STEP, LAT0],
        [LON0 + STEP, LAT0 + STEP],
        [LON0, LAT0 + STEP],
    ] {
        assert!(ring.contains(&corner), "{corner:?} in {ring:?}");
    }
    assert!(g.outline("nowhere").is_none());
    let no_polygon = GridIndex::new(&[GridConfig {
        id: "county".into(),
        name: "County".into(),
        parent: None,
        polygon: vec![],
    }]);
    assert!(no_polygon.outline("county").is_none());
}
