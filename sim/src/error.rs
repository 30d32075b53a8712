//! The crate's error type: every public fallible function returns [`SimError`].

use std::time::Duration;

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
