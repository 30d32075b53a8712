//! Spatial benchmark: building the grid geometry for 10,000 grids (100×100 cells of ≈100 m
//! under 100 parents) and the cost of one `locate`, `grids_within` and `neighbours` call.
//!
//! `make bench-spatial` (or `cargo bench -p gridsight --bench spatial`). Prints figures;
//! lines starting with `RESULT` are the ones to grep. `SPATIAL_BENCH_CALLS` sets the number
//! of lookups (default 1,000,000).

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use gridsight::domain::{testkit::square_tiling, GridIndex};
use rand::{rngs::StdRng, Rng, SeedableRng};

const ORIGIN: [f64; 2] = [119.6, 30.6];
const STEP: f64 = 0.001;
const SIDE: f64 = 100.0 * STEP;

fn main() {
    let calls: usize = std::env::var("SPATIAL_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let grids = square_tiling(10, 10, STEP, ORIGIN);
    println!(
        "{} grids ({} cells under 100 parents)",
        grids.len(),
        100 * 100
    );

    let mut builds = Vec::new();
    let mut index = GridIndex::default();
    for _ in 0..7 {
        let start = Instant::now();
        index = black_box(GridIndex::new(&grids));
        builds.push(start.elapsed());
    }
    builds.sort();
    println!(
        "RESULT GridIndex::new: median {:.1} ms (min {:.1}, max {:.1}, 7 builds)",
        ms(builds[3]),
        ms(builds[0]),
        ms(builds[6])
    );

    // Points over the tiling and a 10 % margin around it (some in no grid).
    let mut rng = StdRng::seed_from_u64(7);
    let points: Vec<[f64; 2]> = (0..calls)
        .map(|_| {
            [
                ORIGIN[0] - 0.1 * SIDE + rng.random_range(0.0..1.2 * SIDE),
                ORIGIN[1] - 0.1 * SIDE + rng.random_range(0.0..1.2 * SIDE),
            ]
        })
        .collect();
    let start = Instant::now();
    let mut found = 0usize;
    for &[lon, lat] in &points {
        found += usize::from(black_box(index.locate(lon, lat)).is_some());
    }
    let per = start.elapsed() / calls as u32;
    println!(
        "RESULT locate: {:.2} µs per call ({calls} calls, {found} in a grid)",
        us(per)
    );

    let within_calls = (calls / 10).max(1);
    let start = Instant::now();
    let mut total = 0usize;
    for p in points.iter().take(within_calls) {
        total += black_box(index.grids_within(*p, 250.0, Some(1))).len();
    }
    let per = start.elapsed() / within_calls as u32;
    println!(
        "RESULT grids_within 250 m (cells): {:.2} µs per call ({within_calls} calls, {:.1} grids each)",
        us(per),
        total as f64 / within_calls as f64
    );

    let ids: Vec<String> = (0..calls.min(100_000))
        .map(|i| format!("c{}-{}", i % 100, (i / 100) % 100))
        .collect();
    let start = Instant::now();
    let mut n = 0usize;
    for id in &ids {
        n += black_box(index.neighbours(id)).len();
    }
    let per = start.elapsed() / ids.len() as u32;
    println!(
        "RESULT neighbours: {:.3} µs per call ({} calls, {:.2} each)",
        us(per),
        ids.len(),
        n as f64 / ids.len() as f64
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
