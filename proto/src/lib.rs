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

/// Milliseconds since the Unix epoch of a `Timestamp`. A client's timestamp can be any
/// pair of integers: one beyond the `i64` range of milliseconds saturates (and so is
/// refused as too far ahead, or already past, by the check that reads it) rather than
/// wrapping round into a plausible time. (Found by the `grpc_request` fuzz seeds.)
pub fn millis_from_ts(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_beyond_the_millisecond_range_saturates() {
        let at = |seconds, nanos| millis_from_ts(&Timestamp { seconds, nanos });
        assert_eq!(at(1_795_392_000, 123_000_000), 1_795_392_000_123);
        assert_eq!(at(i64::MAX / 2, 999_999_999), i64::MAX);
        assert_eq!(at(i64::MIN, -999_999_999), i64::MIN);
        assert_eq!(millis_from_ts(&ts_from_millis(-1)), -1);
    }
}
