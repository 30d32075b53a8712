//! The camera registry: one entry per configured camera, keyed by id in a `DashMap`.
//!
//! Invariants: an entry's [`Live`] is written by its own camera task (frames, connects,
//! errors) and by the health monitor (status, freeze and activity flags); API handlers
//! only read. Each entry has its own small mutex, held for microseconds, so there is no
//! lock shared between cameras on the hot path. The latest keyframe is kept as `Bytes`
//! (Annex B, parameter sets in front) so a snapshot clones a pointer, never the picture.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;

use super::analytics::{ActivityMeter, FreezeDetector};
use crate::config::CameraConfig;
pub use crate::media::Codec;

/// Health of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Not connected yet since the daemon started (and not yet late enough to be offline).
    Connecting,
    /// Frames arrive as expected.
    Online,
    /// Frames arrive, but too few, with loss, or after repeated reconnects.
    Degraded,
    /// No frame for longer than the offline delay.
    Offline,
}

impl Status {
    /// Metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Online => "online",
            Status::Degraded => "degraded",
            Status::Offline => "offline",
        }
    }
}

/// The latest keyframe of a camera.
#[derive(Debug, Clone)]
pub struct Keyframe {
    /// Annex B with parameter sets in front.
    pub data: Bytes,
    /// Its codec.
    pub codec: Codec,
    /// When it arrived, ms since the Unix epoch.
    pub at_ms: i64,
}

/// What changes while a camera runs.
#[derive(Debug)]
pub struct Live {
    /// Current health (set by the monitor).
    pub status: Status,
    /// Since when (ms since the Unix epoch).
    pub status_since_ms: i64,
    /// Whether a session is playing now.
    pub connected: bool,
    /// When the current session started playing.
    pub connected_at: Option<Instant>,
    /// Last frame: when (monotonic) and wall clock ms.
    pub last_frame: Option<(Instant, i64)>,
    /// Frames, keyframes and bytes since start.
    pub frames_total: u64,
    /// Keyframes since start.
    pub keyframes_total: u64,
    /// Bytes of video since start.
    pub bytes_total: u64,
    /// Recent frames: (arrival, bytes, packets lost before it).
    pub window: VecDeque<(Instant, u32, u16)>,
    /// Reconnects in the last hour.
    pub reconnects: VecDeque<Instant>,
    /// Stalls (frame timeouts) in the last hour.
    pub stalls: VecDeque<Instant>,
    /// RTP timestamp jumps seen (more than 10 s forward or any step back).
    pub timestamp_jumps: u64,
    /// Last connection error, without credentials.
    pub last_error: String,
    /// Codec name and picture size, once known.
    pub codec: Option<Codec>,
    /// Picture size, once known.
    pub dims: (u32, u32),
    /// The latest keyframe.
    pub keyframe: Option<Keyframe>,
    /// Activity score.
    pub activity: ActivityMeter,
    /// Whether an activity event is in progress (set by the monitor).
    pub active: bool,
    /// Freeze detection.
    pub freeze: FreezeDetector,
    /// Whether the picture is frozen (set by the monitor).
    pub frozen: bool,
    /// Last RTP timestamp (clock units since the stream start).
    pub last_ts: Option<(i64, u32)>,
}

/// One camera: what the config says, and what is live.
#[derive(Debug)]
pub struct CameraEntry {
    /// Its configuration (credentials included: never print it whole).
    pub cfg: Arc<CameraConfig>,
    /// URL without credentials.
    pub url: String,
    /// When supervision started (for "offline since start").
    pub started: Instant,
    live: Mutex<Live>,
}

impl CameraEntry {
    /// A fresh entry, `Connecting`.
    pub fn new(cfg: Arc<CameraConfig>, max_pframe_bytes: usize) -> Self {
        Self {
            url: cfg.redacted_url(),
            cfg,
            started: Instant::now(),
            live: Mutex::new(Live {
                status: Status::Connecting,
                status_since_ms: crate::domain::now_ms(),
                connected: false,
                connected_at: None,
                last_frame: None,
                frames_total: 0,
                keyframes_total: 0,
                bytes_total: 0,
                window: VecDeque::new(),
                reconnects: VecDeque::new(),
                stalls: VecDeque::new(),
                timestamp_jumps: 0,
                last_error: String::new(),
                codec: None,
                dims: (0, 0),
                keyframe: None,
                activity: ActivityMeter::default(),
                active: false,
                freeze: FreezeDetector::new(max_pframe_bytes),
                frozen: false,
                last_ts: None,
            }),
        }
    }

    /// The live state (a poisoned lock is taken over: the state is plain counters).
    pub fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Live {
    /// Drops window entries older than `window` and history older than an hour.
    pub fn prune(&mut self, now: Instant, window: Duration) {
        while self
            .window
            .front()
            .is_some_and(|(t, ..)| now.duration_since(*t) > window)
        {
            self.window.pop_front();
        }
        let hour = Duration::from_secs(3600);
        for q in [&mut self.reconnects, &mut self.stalls] {
            while q.front().is_some_and(|t| now.duration_since(*t) > hour) {
                q.pop_front();
            }
        }
    }

    /// Frames per second, bitrate (kbit/s) and packet loss share over the window (measured
    /// over the part of the window the current session has been playing).
    pub fn rates(&self, now: Instant, window: Duration) -> (f64, f64, f64) {
        let span = match self.connected_at {
            Some(c) => now.duration_since(c).min(window),
            None => window,
        }
        .as_secs_f64()
        .max(0.001);
        let frames = self.window.len() as f64;
        let bytes: u64 = self.window.iter().map(|(_, b, _)| *b as u64).sum();
        let lost: u64 = self.window.iter().map(|(_, _, l)| *l as u64).sum();
        // Packets: roughly one per 1,400 bytes of payload, at least one per frame.
        let packets: u64 = self
            .window
            .iter()
            .map(|(_, b, _)| (*b as u64).div_ceil(1400).max(1))
            .sum();
        let loss = if lost + packets == 0 {
            0.0
        } else {
            lost as f64 / (lost + packets) as f64
        };
        (frames / span, bytes as f64 * 8.0 / 1000.0 / span, loss)
    }
}

/// Every camera, by id.
pub type Registry = Arc<DashMap<String, Arc<CameraEntry>>>;

impl CameraEntry {
    /// The camera as the API shows it (no credentials), its rates over `window`.
    pub fn to_pb(&self, window: Duration) -> gridsight_proto::v1::Camera {
        use gridsight_proto::{ts_from_millis, v1 as pb};
        let now = Instant::now();
        let live = self.live();
        let (fps, kbps, loss) = if live.connected {
            live.rates(now, window)
        } else {
            (0.0, 0.0, 0.0)
        };
        let status = match live.status {
            Status::Connecting => pb::CameraStatus::Connecting,
            Status::Online => pb::CameraStatus::Online,
            Status::Degraded => pb::CameraStatus::Degraded,
            Status::Offline => pb::CameraStatus::Offline,
        };
        pb::Camera {
            id: self.cfg.id.clone(),
            name: self.cfg.name.clone(),
            url: self.url.clone(),
            location: self.cfg.location.map(|[lon, lat]| pb::LatLon { lat, lon }),
            grid_ids: self.cfg.grids.clone(),
            health: Some(pb::CameraHealth {
                status: status as i32,
                fps,
                expected_fps: self.cfg.expected_fps,
                bitrate_kbps: kbps,
                packet_loss: loss,
                last_frame: live.last_frame.map(|(_, ms)| ts_from_millis(ms)),
                reconnects_last_hour: live.reconnects.len() as u32,
                stalls_last_hour: live.stalls.len() as u32,
                activity: live.activity.score(),
                frozen: live.frozen,
                codec: live
                    .codec
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
                width: live.dims.0,
                height: live.dims.1,
                last_error: live.last_error.clone(),
                status_since: Some(ts_from_millis(live.status_since_ms)),
                frames_total: live.frames_total,
                keyframes_total: live.keyframes_total,
            }),
        }
    }
}
