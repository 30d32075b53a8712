//! Errors of the camera farm library: clip encoding and caching, and server start-up.

use std::path::PathBuf;

/// Everything that can go wrong when preparing clips or starting the farm.
///
/// Errors on a single RTSP connection are never surfaced here: a bad request gets a
/// `400`, an I/O error closes that connection, and the farm keeps serving the others.
#[derive(Debug, thiserror::Error)]
pub enum FarmError {
    /// GStreamer could not be initialised, the pipeline could not be built, or it failed.
    #[error("GStreamer: {0}")]
    Gstreamer(String),
    /// The encoder produced a stream we cannot use (no SPS/PPS, no keyframe, ...).
    #[error("encoded clip is unusable: {0}")]
    BadClip(String),
    /// Reading or writing a cached clip failed.
    #[error("clip cache {path}: {source}")]
    Cache {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A cached clip file is truncated or has the wrong format.
    #[error("clip cache {0}: corrupt file")]
    CorruptCache(PathBuf),
    /// Binding the listening socket failed.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid (duplicate or malformed mount name, zero fps, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A mount name passed to the handle does not exist.
    #[error("no such mount {0:?}")]
    NoSuchMount(String),
}
