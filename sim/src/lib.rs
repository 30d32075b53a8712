//! Simulators for gridsight, shared by the daemon's demo mode, the end-to-end tests and the
//! benchmarks.
//!
//! - [`city`]: a deterministic demo city (county → towns → communities, with polygons) and
//!   its sensors.
//! - [`fleet`]: an MQTT sensor fleet publishing the daemon's JSON payload contract on
//!   `gridsight/sensors/{grid}/{kind}/{sensor_id}`.
//! - [`readings`]: per-kind sensor behaviour (drift, alarm runs, faults).
//! - [`reporter`]: grid-worker reporters sending incident reports over gRPC.
//! - [`desk`]: an operator desk bot moving reported incidents along their lifecycle.
//! - [`latency`]: alarm publish → `OPENED` alert change latency over a live alert stream.
//! - [`broker`]: a real Mosquitto broker on a free loopback port, for tests and benches.
//! - [`load`]: bulk MQTT publishing and draining, for benchmarks and tests.
//! - [`probe`]: a tiny HTTP/1.0 GET and a Prometheus text parser.
//! - [`procstat`]: CPU and memory of processes from `/proc`, for benchmarks and soaks.
//!
//! Errors crossing the crate boundary are [`SimError`].

use std::time::Duration;

pub mod broker;
pub mod city;
pub mod desk;
pub mod fleet;
pub mod latency;
pub mod load;
pub mod probe;
pub mod procstat;
pub mod readings;
pub mod reporter;

pub use city::{DemoCity, DemoGrid, DemoSensor, GridLevel, SENSOR_KINDS};
pub use desk::{run_desk, DeskConfig};
pub use fleet::{payload, run_fleet, FleetConfig, FleetStats};
pub use latency::{run_latency, LatencyConfig, LatencyReport};
pub use readings::{Sample, SensorSim};
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

/// What can go wrong in a simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value is out of range (rate, ratio, empty list...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The MQTT client's request channel is closed (its event loop ended).
    #[error("MQTT client: {0}")]
    MqttClient(#[from] rumqttc::ClientError),
    /// The MQTT connection failed and could not be used.
    #[error("MQTT connection: {0}")]
    MqttConnection(Box<rumqttc::ConnectionError>),
    /// The broker refused something (a subscription, a session that should be present).
    #[error("MQTT broker: {0}")]
    MqttBroker(String),
    /// The gRPC endpoint string is not a valid URI.
    #[error("invalid gRPC endpoint {endpoint:?}: {source}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is invalid.
        source: tonic::transport::Error,
    },
    /// A gRPC call failed where the caller cannot just count it and go on.
    #[error("gRPC: {0}")]
    Grpc(Box<tonic::Status>),
    /// Starting or talking to a child process or socket failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A child process (the broker) did not come up.
    #[error("{what} did not start: {detail}")]
    Startup {
        /// Which process.
        what: String,
        /// Why, with the tail of its log when there is one.
        detail: String,
    },
    /// Something expected did not happen in time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// An HTTP response could not be parsed.
    #[error("bad HTTP response: {0}")]
    Http(String),
    /// A background task panicked or was aborted.
    #[error("task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<rumqttc::ConnectionError> for SimError {
    fn from(e: rumqttc::ConnectionError) -> Self {
        SimError::MqttConnection(Box::new(e))
    }
}

impl From<tonic::Status> for SimError {
    fn from(s: tonic::Status) -> Self {
        SimError::Grpc(Box::new(s))
    }
}

impl SimError {
    /// A [`SimError::Timeout`] for `what` after `waited`.
    pub fn timeout(what: impl Into<String>, waited: Duration) -> Self {
        SimError::Timeout {
            what: what.into(),
            waited,
        }
    }
}
