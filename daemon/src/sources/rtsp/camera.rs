//! One camera's task: a `run()` loop around `run_once()` (DESCRIBE, SETUP, PLAY, then read
//! frames until an error), with backoff and jitter between attempts.
//!
//! Invariants: shutdown is checked first (`select! { biased; ... }`); a connect holds one
//! admission permit only from DESCRIBE to PLAY, so at most `max_concurrent_connects`
//! cameras connect at once; the reader never waits on anyone: it updates its own registry
//! entry and counters and goes on. Credentials are handed to retina apart from the URL,
//! so errors and logs carry the URL without them.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use retina::client::{self, PlayOptions, SessionGroup, SessionOptions, SetupOptions};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoFrame};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::registry::{CameraEntry, Codec, Keyframe};
use crate::config::{CameraTransport, TimestampPolicy, VideoConfig};
use crate::telemetry::Metrics;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// The URL cannot be used.
    #[error("bad URL: {0}")]
    Url(String),
    /// DESCRIBE to PLAY took longer than the open timeout.
    #[error("no answer within {0:.1} s while opening the stream")]
    OpenTimeout(f64),
    /// No frame within the frame timeout while playing.
    #[error("no frame for {0:.1} s")]
    Stalled(f64),
    /// The server ended the stream.
    #[error("the camera closed the stream")]
    Ended,
    /// The stream has no H.264/H.265 video.
    #[error("no H.264 or H.265 video stream (streams: {0})")]
    NoVideo(String),
    /// An RTSP/RTP error from retina (URL without credentials).
    #[error("{0}")]
    Rtsp(String),
}

impl CameraError {
    /// Short reason label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CameraError::Url(_) => "bad_url",
            CameraError::OpenTimeout(_) => "open_timeout",
            CameraError::Stalled(_) => "stalled",
            CameraError::Ended => "ended",
            CameraError::NoVideo(_) => "no_video",
            CameraError::Rtsp(m) => {
                let m = m.to_ascii_lowercase();
                if m.contains("401") || m.contains("unauthorized") || m.contains("authentication") {
                    "auth"
                } else if m.contains("refused") || m.contains("unable to connect") {
                    "refused"
                } else if m.contains("reset") || m.contains("eof") || m.contains("closed") {
                    "disconnected"
                } else {
                    "protocol"
                }
            }
        }
    }
}

/// Everything one camera task needs.
pub struct CameraTask {
    /// Its registry entry (config inside).
    pub entry: Arc<CameraEntry>,
    /// Supervision settings.
    pub video: Arc<VideoConfig>,
    /// Connect admission (shared by all cameras).
    pub admit: Arc<Semaphore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl CameraTask {
    /// Runs until `cancel`: connect, read, back off, again.
    pub async fn run(self, cancel: CancellationToken) {
        let min = Duration::from_millis(self.video.reconnect_min_ms);
        let max = Duration::from_millis(self.video.reconnect_max_ms);
        let group = Arc::new(SessionGroup::default().named(self.entry.cfg.id.clone()));
        let mut backoff = min;
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                r = self.run_once(&group) => r,
            };
            let err = match result {
                Ok(()) => CameraError::Ended,
                Err(e) => e,
            };
            let played_long = self.on_disconnect(&err, started);
            backoff = if played_long {
                min
            } else {
                (backoff * 2).min(max)
            };
            let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
            let wait = backoff + Duration::from_millis(jitter);
            if attempt == 1 || attempt.is_power_of_two() || played_long {
                tracing::warn!(error = %err, reason = err.reason(), attempt, retry_in_ms = wait.as_millis() as u64, "camera connection ended");
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.entry.live().connected = false;
        tracing::debug!("camera task stopped");
    }

    /// Records the end of a connection; returns whether it had played for a while (then
    /// the next attempt starts from the shortest backoff).
    fn on_disconnect(&self, err: &CameraError, started: Instant) -> bool {
        let now = Instant::now();
        let mut live = self.entry.live();
        let was_playing = live.connected;
        live.connected = false;
        live.last_error = err.to_string();
        if was_playing {
            live.reconnects.push_back(now);
            self.metrics.camera_reconnects.inc();
        }
        if matches!(err, CameraError::Stalled(_)) {
            live.stalls.push_back(now);
            self.metrics.camera_stalls.inc();
        }
        self.metrics
            .camera_connect_errors
            .get_or_create(&crate::telemetry::ReasonLabel {
                reason: err.reason().to_string(),
            })
            .inc();
        was_playing && now.duration_since(started) > Duration::from_secs(10)
    }

    /// One connection: open (bounded by the open timeout and admission), then read.
    async fn run_once(&self, group: &Arc<SessionGroup>) -> Result<(), CameraError> {
        let cfg = &self.entry.cfg;
        let (url, creds) = cfg.split_credentials().map_err(CameraError::Url)?;
        let open_timeout = Duration::from_secs_f64(self.video.open_timeout_secs);
        let permit = self
            .admit
            .acquire()
            .await
            .map_err(|_| CameraError::Rtsp("supervisor stopped".into()))?;
        let opened = tokio::time::timeout(open_timeout, async {
            let opts = SessionOptions::default()
                .creds(creds.map(|(username, password)| client::Credentials { username, password }))
                .session_group(group.clone())
                .user_agent(format!("gridsight/{}", env!("CARGO_PKG_VERSION")));
            let mut session = client::Session::describe(url, opts)
                .await
                .map_err(|e| CameraError::Rtsp(e.to_string()))?;
            let (i, codec) = session
                .streams()
                .iter()
                .enumerate()
                .find_map(|(i, s)| {
                    let codec = match (s.media(), s.encoding_name()) {
                        ("video", "h264") => Codec::H264,
                        ("video", "h265") => Codec::H265,
                        _ => return None,
                    };
                    Some((i, codec))
                })
                .ok_or_else(|| {
                    let names: Vec<String> = session
                        .streams()
                        .iter()
                        .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                        .collect();
                    CameraError::NoVideo(names.join(", "))
                })?;
            let transport = match cfg.transport {
                CameraTransport::Tcp => client::Transport::Tcp(Default::default()),
                CameraTransport::Udp => client::Transport::Udp(Default::default()),
            };
            session
                .setup(
                    i,
                    SetupOptions::default()
                        .transport(transport)
                        .frame_format(FrameFormat::SIMPLE),
                )
                .await
                .map_err(|e| CameraError::Rtsp(e.to_string()))?;
            let mut play = PlayOptions::default().initial_timestamp(match cfg.timestamp_policy {
                TimestampPolicy::Default => client::InitialTimestampPolicy::Default,
                TimestampPolicy::Require => client::InitialTimestampPolicy::Require,
                TimestampPolicy::Ignore => client::InitialTimestampPolicy::Ignore,
                TimestampPolicy::Permissive => client::InitialTimestampPolicy::Permissive,
            });
            if let Some(secs) = cfg.max_timestamp_jump_secs.and_then(NonZeroU32::new) {
                play = play.enforce_timestamps_with_max_jump_secs(secs);
            }
            let playing = session
                .play(play)
                .await
                .map_err(|e| CameraError::Rtsp(e.to_string()))?;
            let demuxed = playing
                .demuxed()
                .map_err(|e| CameraError::Rtsp(e.to_string()))?;
            Ok::<_, CameraError>((demuxed, i, codec))
        })
        .await
        .map_err(|_| CameraError::OpenTimeout(self.video.open_timeout_secs))?;
        drop(permit);
        let (mut demuxed, stream_i, codec) = opened?;
        {
            let mut live = self.entry.live();
            live.connected = true;
            live.connected_at = Some(Instant::now());
            live.codec = Some(codec);
            live.window.clear();
            live.freeze.reset();
            live.last_ts = None;
            if let Some(ParametersRef::Video(v)) = demuxed.streams()[stream_i].parameters() {
                live.dims = v.pixel_dimensions();
            }
        }
        tracing::info!(codec = codec.as_str(), "camera playing");
        let frame_timeout = Duration::from_secs_f64(self.video.frame_timeout_secs);
        loop {
            let item = tokio::time::timeout(frame_timeout, demuxed.next())
                .await
                .map_err(|_| CameraError::Stalled(self.video.frame_timeout_secs))?;
            match item {
                None => return Err(CameraError::Ended),
                Some(Err(e)) => return Err(CameraError::Rtsp(e.to_string())),
                Some(Ok(CodecItem::VideoFrame(f))) if f.stream_id() == stream_i => {
                    let dims = f.has_new_parameters().then(|| {
                        match demuxed.streams()[stream_i].parameters() {
                            Some(ParametersRef::Video(v)) => v.pixel_dimensions(),
                            _ => (0, 0),
                        }
                    });
                    self.on_frame(f, codec, dims);
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Accounts one frame in the registry and the metrics.
    fn on_frame(&self, f: VideoFrame, codec: Codec, dims: Option<(u32, u32)>) {
        let now = Instant::now();
        let wall = crate::domain::now_ms();
        let ts = f.timestamp();
        let (elapsed, clock) = (ts.elapsed(), ts.clock_rate().get());
        let key = f.is_random_access_point();
        let loss = f.loss();
        let size = f.data().len();
        self.metrics.camera_frames.inc();
        self.metrics.camera_bytes.inc_by(size as u64);
        let mut live = self.entry.live();
        if let Some(d) = dims.filter(|d| d.0 > 0) {
            live.dims = d;
        }
        live.frames_total += 1;
        live.bytes_total += size as u64;
        live.last_frame = Some((now, wall));
        live.window
            .push_back((now, size.min(u32::MAX as usize) as u32, loss));
        if let Some((prev, _)) = live.last_ts {
            let step = elapsed - prev;
            if step < 0 || step > 10 * clock as i64 {
                live.timestamp_jumps += 1;
                self.metrics.camera_timestamp_jumps.inc();
            }
        }
        live.last_ts = Some((elapsed, clock));
        live.activity.on_frame(size, key);
        if key {
            live.keyframes_total += 1;
            let data = Bytes::from(f.into_data());
            live.freeze.on_frame(now, size, Some(&data), elapsed);
            live.keyframe = Some(Keyframe {
                data,
                codec,
                at_ms: wall,
            });
        } else {
            live.freeze.on_frame(now, size, None, elapsed);
        }
        let window = Duration::from_secs_f64(self.video.rate_window_secs);
        live.prune(now, window);
    }
}
