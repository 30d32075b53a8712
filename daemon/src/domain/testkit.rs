//! Grid layouts for tests and benches (`testkit` feature): a square tiling of cells under
//! square parents, the shape of a county drawn on a grid.
//!
//! Invariant: adjacent cells and parents share their edge coordinates to the bit (every
//! edge is computed by one expression from its integer position), so neighbours are found
//! without relying on the touch tolerance.

use crate::config::GridConfig;

/// `parents × parents` root grids `p{row}-{col}`, each tiled by `cells × cells` grids
/// `c{row}-{col}` (rows and columns counted over the whole tiling, row 0 south), each cell
/// `step` degrees square, from `origin` (`[lon, lat]` of the south-west corner). Parents
/// come first, then cells row by row.
pub fn square_tiling(parents: usize, cells: usize, step: f64, origin: [f64; 2]) -> Vec<GridConfig> {
    let n = parents * cells;
    let lon = |k: usize| origin[0] + k as f64 * step;
    let lat = |k: usize| origin[1] + k as f64 * step;
    let square = |id: String, parent: Option<String>, (r0, c0, span): (usize, usize, usize)| {
        let (w, s, e, nn) = (lon(c0), lat(r0), lon(c0 + span), lat(r0 + span));
        GridConfig {
            name: id.clone(),
            id,
            parent,
            polygon: vec![[w, s], [e, s], [e, nn], [w, nn]],
        }
    };
    let mut grids = Vec::with_capacity(parents * parents + n * n);
    for pr in 0..parents {
        for pc in 0..parents {
            grids.push(square(
                format!("p{pr}-{pc}"),
                None,
                (pr * cells, pc * cells, cells),
            ));
        }
    }
    for r in 0..n {
        for c in 0..n {
            let parent = format!("p{}-{}", r / cells, c / cells);
            grids.push(square(format!("c{r}-{c}"), Some(parent), (r, c, 1)));
        }
    }
    grids
}
