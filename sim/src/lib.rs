//! Simulators for gridsight, shared by the daemon's demo mode, the end-to-end tests and the
//! benchmarks.
//!
//! - [`city`]: a deterministic demo city (county → towns → communities, with polygons) and
//!   its sensors.
//! - [`fleet`]: an MQTT sensor fleet publishing the daemon's JSON payload contract on
//!   `gridsight/sensors/{grid}/{kind}/{sensor_id}`.
//! - [`reporter`]: grid-worker reporters sending incident reports over gRPC.
//! - [`latency`]: alarm publish → `OPENED` alert change latency over a live alert stream.
//! - [`broker`]: a real Mosquitto broker on a free loopback port, for tests and benches.
//! - [`load`]: bulk MQTT publishing and draining, for benchmarks and tests.
//! - [`probe`]: a tiny HTTP/1.0 GET and a Prometheus text parser.
//!
//! Errors crossing the crate boundary are [`SimError`].

pub mod broker;
pub mod city;
mod error;
pub mod fleet;
pub mod latency;
pub mod load;
pub mod probe;
pub mod reporter;

pub use city::{DemoCity, DemoGrid, DemoSensor, GridLevel, SENSOR_KINDS};
pub use error::SimError;
pub use fleet::{payload, run_fleet, FleetConfig, FleetStats, SensorSim};
pub use latency::{run_latency, LatencyConfig, LatencyReport};
pub use reporter::{run_reporters, run_reporters_with, ReporterConfig, ReporterStats};

/// The default topic prefix the daemon subscribes to (`{prefix}/{grid}/{kind}/{sensor_id}`).
pub const TOPIC_PREFIX: &str = "gridsight/sensors";

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
