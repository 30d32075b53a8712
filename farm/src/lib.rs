//! The gridsight camera farm: a lightweight tokio RTSP server that serves thousands of
//! mounts from pre-encoded H.264 clips, paced at each mount's frame rate, with per-mount
//! fault injection. Used by the daemon's end-to-end tests, the benchmarks and
//! `gridsight demo`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gridsight_farm::FarmError> {
//! use gridsight_farm::{Content, Farm, FarmConfig, Fault, MountConfig};
//! let farm = Farm::start(FarmConfig::new(vec![
//!     MountConfig::new("cam0001", 15).with_content(Content::Busy),
//! ]))
//! .await?;
//! println!("{}", farm.url("cam0001")); // rtsp://127.0.0.1:PORT/cam0001
//! farm.set_fault("cam0001", Fault::Freeze)?;
//! farm.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Transport is RTSP/1.0 over TCP with interleaved RTP (what `retina` with
//! `Transport::Tcp` and `ffmpeg -rtsp_transport tcp` use); UDP is refused with `461`.

pub mod auth;
pub mod clip;
mod error;
pub mod flap;
pub mod mount;
mod player;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
mod server;
mod session;

pub use clip::cache::ClipCache;
pub use clip::{Clip, ClipSpec, Content, Frame};
pub use error::FarmError;
pub use flap::{Flap, Flapper};
pub use mount::{ContentSchedule, Fault, MountConfig, MountStats};
pub use server::{mount_name, Farm, FarmConfig, FarmHandle};
