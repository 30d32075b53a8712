//! gridsight: the real-time heart of a city command centre.
//!
//! Pipeline: `sources` (RTSP cameras, MQTT sensors) and `api` (gRPC incident reports) feed
//! `correlate` (shards by grid, owning their state), which writes through `store` (durable,
//! group commit) onto the alert bus that `api` streams to subscribers; `publish` tells the
//! MQTT broker the daemon's availability and every camera's status. `app` wires it
//! together; `incidents` moves reported incidents along their lifecycle, supervises their
//! deadlines and computes the daily figures; `config` is the one file that describes a
//! deployment; `demo` runs a built-in city; `media` turns a camera's cached keyframe into a
//! JPEG snapshot (GStreamer worker pool); `systemd` tells a
//! `Type=notify` unit when the daemon is ready, reloading or stopping.

pub mod api;
pub mod app;
pub mod config;
pub mod correlate;
pub mod demo;
pub mod domain;
#[doc(hidden)]
pub mod fuzzing;
pub mod incidents;
pub mod media;
pub mod publish;
pub mod reload;
pub mod shutdown;
pub mod sources;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod tls;

/// The memory allocator of the daemon (`main.rs` installs it; the engine bench wraps it in
/// its counter, so that it measures what the daemon runs). mimalloc: the correlation engine
/// allocates and frees many small strings and vectors per event (evidence, alert versions
/// going out), where glibc's malloc spent about a fifth of the engine's time.
pub type Allocator = mimalloc::MiMalloc;
