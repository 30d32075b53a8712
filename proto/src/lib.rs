//! The `gridsight.v1` gRPC API, generated from `proto/gridsight/v1/gridsight.proto`.
//!
//! Owns the wire contract only: no behaviour lives here. The daemon, the simulators and the
//! tests all use these types, so a change to the contract is seen by all of them at once.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("gridsight.v1");

    /// Encoded `FileDescriptorSet` of the API, for the gRPC reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/gridsight_descriptor.bin"));
}

pub use prost_types::Timestamp;

/// Converts a `SystemTime`-like count of milliseconds since the Unix epoch to a `Timestamp`.
pub fn ts_from_millis(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds since the Unix epoch of a `Timestamp`.
pub fn millis_from_ts(ts: &Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}
