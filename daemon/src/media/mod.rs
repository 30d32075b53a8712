//! Keyframe → JPEG snapshots with GStreamer, in a bounded pool of OS worker threads.
//!
//! The camera supervisors keep, per camera, the latest keyframe as Annex B bytes with the
//! parameter sets in front (retina's `FrameFormat::SIMPLE`: SPS/PPS, plus VPS for H.265,
//! before each IDR). This module owns turning such a keyframe into a JPEG on demand:
//!
//! - [`SnapshotPool`]: `workers` OS threads fed by one bounded queue. [`SnapshotPool::snapshot`]
//!   is `async` but never blocks the runtime: it enqueues with `try_send` and awaits a oneshot.
//! - Each worker owns one reusable GStreamer pipeline per codec
//!   (`appsrc ! {h264,h265}parse ! avdec_{h264,h265} ! videoconvert [! videoscale ! caps]
//!   ! jpegenc ! appsink`), built lazily (or by the warm-up) and rebuilt after an error.
//! - [`annexb`]: cheap validation of the input before it reaches GStreamer.
//! - [`jpeg`]: a tiny SOF parser to read a JPEG's dimensions.
//!
//! Invariants:
//! - Bytes from cameras are untrusted: bad input yields [`MediaError::Decode`], never a panic,
//!   and never kills a worker.
//! - One job never sees another job's picture: every job ends with EOS (which drains the
//!   decoder, even for streams with B-frames) and the pipeline is reset to NULL before the
//!   next job. The reset runs after the reply is sent, off the caller's critical path.
//! - Backpressure: the queue is bounded and full means [`MediaError::Busy`] at once (the
//!   caller, an HTTP/gRPC handler, answers 503 and the operator retries); nothing waits for
//!   room in the queue.
//! - Every job has a deadline ([`SnapshotConfig::timeout`], from submission); past it the
//!   caller gets [`MediaError::Timeout`] and the worker rebuilds its pipeline.
//! - `gst::init()` runs once per process ([`init`]).

pub mod annexb;
pub mod jpeg;
mod pipeline;
mod pool;
pub mod snapshots;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;

pub use pool::{SnapshotPool, SnapshotStats};
pub use snapshots::{Shot, SnapshotError, Snapshots};

/// The video codec of a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    pub const ALL: [Codec; 2] = [Codec::H264, Codec::H265];

    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }

    fn index(self) -> usize {
        match self {
            Codec::H264 => 0,
            Codec::H265 => 1,
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the pool is sized and what it produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// Worker threads, each with its own pipelines (at least 1).
    pub workers: usize,
    /// Jobs waiting for a worker beyond those being worked on (at least 1); more is `Busy`.
    pub queue: usize,
    /// Deadline of one job, from submission (queue wait included).
    pub timeout: Duration,
    /// `jpegenc` quality, 0..=100.
    pub jpeg_quality: u8,
    /// Downscale (keeping the aspect ratio, square pixels) when wider than this; never upscale.
    pub max_width: Option<u32>,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            queue: 16,
            timeout: Duration::from_secs(2),
            jpeg_quality: 85,
            max_width: None,
        }
    }
}

impl SnapshotConfig {
    fn validate(&self) -> Result<(), MediaError> {
        if self.workers == 0 || self.queue == 0 {
            return Err(MediaError::Config(
                "workers and queue must be at least 1".into(),
            ));
        }
        if self.jpeg_quality > 100 {
            return Err(MediaError::Config("jpeg_quality must be 0..=100".into()));
        }
        if self.max_width == Some(0) || self.max_width.is_some_and(|w| w > i32::MAX as u32) {
            return Err(MediaError::Config("max_width must be at least 1".into()));
        }
        if self.timeout.is_zero() {
            return Err(MediaError::Config("timeout must be positive".into()));
        }
        Ok(())
    }
}

/// One encoded snapshot.
#[derive(Debug, Clone)]
pub struct Jpeg {
    pub bytes: Bytes,
    pub width: u32,
    pub height: u32,
    /// From submission to the JPEG being ready (queue wait included).
    pub took: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The queue is full; the caller should answer "try again later".
    #[error("snapshot queue is full")]
    Busy,
    /// The job did not finish within its deadline.
    #[error("snapshot timed out")]
    Timeout,
    /// The keyframe could not be decoded (empty, missing parameter sets, corrupt).
    #[error("cannot decode keyframe: {0}")]
    Decode(String),
    /// GStreamer itself failed (init, missing plugin, state change).
    #[error("media pipeline failure: {0}")]
    Pipeline(String),
    /// Invalid [`SnapshotConfig`].
    #[error("invalid snapshot config: {0}")]
    Config(String),
    /// The pool has been shut down.
    #[error("snapshot pool is shut down")]
    ShutDown,
}

/// Initialise GStreamer once per process (≈10 ms); later calls return the first outcome.
pub fn init() -> Result<(), MediaError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gstreamer::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(MediaError::Pipeline)
}

/// A tiny (64×64) keyframe per codec, used to warm up pipelines: plugin loading and decoder
/// set-up happen before the first user-facing snapshot.
fn warmup_keyframe(codec: Codec) -> Bytes {
    match codec {
        Codec::H264 => Bytes::from_static(include_bytes!("assets/warmup_64x64.h264")),
        Codec::H265 => Bytes::from_static(include_bytes!("assets/warmup_64x64.h265")),
    }
}
