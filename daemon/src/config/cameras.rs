//! `[video]` (how every camera is supervised) and `[[cameras]]` (which cameras), and their
//! checks. Credentials may sit in the URL or in `username`/`password`; they are split off
//! at load and never shown again (see [`CameraConfig::redacted_url`]).
//!
//! A camera names the grids it sees, or gives only its `location`: then [`place`] sets its
//! grid to the one the location lies in (`GridIndex::locate`), once, at load. A camera with
//! neither, or whose location lies in no grid, is a config error.

use serde::{Deserialize, Serialize};

use crate::domain::{GridIndex, Severity};

/// `[video]`: supervision of every camera.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// Most cameras connecting (DESCRIBE/SETUP/PLAY) at the same time, so that a restart
    /// with thousands of cameras is not a connect storm.
    pub max_concurrent_connects: usize,
    /// Give up on a connection attempt (DESCRIBE to PLAY) after this long, seconds.
    pub open_timeout_secs: f64,
    /// A playing stream with no frame for this long is dropped and reconnected, seconds.
    pub frame_timeout_secs: f64,
    /// A camera with no frame for this long is `offline` (debounce: a shorter blip is not
    /// an alarm), seconds.
    pub offline_after_secs: f64,
    /// A camera delivering less than this share of its expected fps is `degraded`.
    pub degraded_fps_ratio: f64,
    /// A camera losing more than this share of RTP packets is `degraded`.
    pub degraded_loss_ratio: f64,
    /// A camera that reconnected this many times in the last hour is `degraded`.
    pub degraded_reconnects_per_hour: u32,
    /// Window over which fps, bitrate and loss are measured, seconds.
    pub rate_window_secs: f64,
    /// First reconnect delay after an error, milliseconds (doubles up to the max, with
    /// jitter).
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, milliseconds.
    pub reconnect_max_ms: u64,
    /// The picture is frozen when, for this long, every P-frame was at most
    /// `freeze_max_pframe_bytes` or the RTP timestamps did not advance, seconds.
    pub freeze_after_secs: f64,
    /// P-frames at most this big carry no change (an encoder's skip frames).
    pub freeze_max_pframe_bytes: usize,
    /// Activity score (1 = the camera's quiet baseline) from which an `activity` event is
    /// sent; it ends below half of it.
    pub activity_threshold: f64,
    /// How often the health monitor evaluates every camera, milliseconds.
    pub monitor_interval_ms: u64,
    /// Severity of the alert opened for a camera that goes offline.
    pub offline_severity: Severity,
    /// Severity of the alert opened for a frozen picture.
    pub freeze_severity: Severity,
    /// Snapshot decoder threads (GStreamer pipelines, off the async runtime).
    pub snapshot_workers: usize,
    /// Snapshots waiting for a worker; more are refused at once (busy, retry).
    pub snapshot_queue: usize,
    /// Deadline of one snapshot, queue wait included, milliseconds.
    pub snapshot_timeout_ms: u64,
    /// JPEG quality, 0-100.
    pub snapshot_quality: u8,
    /// Scale snapshots down to at most this width (keeping the aspect); absent: full size.
    pub snapshot_max_width: Option<u32>,
}

impl VideoConfig {
    /// The snapshot pool's settings.
    pub fn snapshot_pool(&self) -> crate::media::SnapshotConfig {
        crate::media::SnapshotConfig {
            workers: self.snapshot_workers,
            queue: self.snapshot_queue,
            timeout: std::time::Duration::from_millis(self.snapshot_timeout_ms),
            jpeg_quality: self.snapshot_quality,
            max_width: self.snapshot_max_width,
        }
    }
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            max_concurrent_connects: 32,
            open_timeout_secs: 10.0,
            frame_timeout_secs: 5.0,
            offline_after_secs: 5.0,
            degraded_fps_ratio: 0.6,
            degraded_loss_ratio: 0.02,
            degraded_reconnects_per_hour: 6,
            rate_window_secs: 5.0,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            freeze_after_secs: 10.0,
            freeze_max_pframe_bytes: 64,
            activity_threshold: 3.0,
            monitor_interval_ms: 250,
            offline_severity: Severity::Major,
            freeze_severity: Severity::Minor,
            snapshot_workers: 2,
            snapshot_queue: 16,
            snapshot_timeout_ms: 2_000,
            snapshot_quality: 85,
            snapshot_max_width: None,
        }
    }
}

/// RTP transport asked of a camera.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CameraTransport {
    /// RTP interleaved on the RTSP TCP connection (works through NAT and firewalls).
    #[default]
    Tcp,
    /// RTP over UDP (LAN only: no reordering).
    Udp,
}

/// How the first RTP timestamp is mapped (a quirk of some cameras).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TimestampPolicy {
    /// retina's default.
    #[default]
    Default,
    /// Require `rtptime` in RTP-Info.
    Require,
    /// Ignore `rtptime` (cameras that send a wrong one).
    Ignore,
    /// Use `rtptime` when present.
    Permissive,
}

/// `[[cameras]]`: one street camera.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Unique id (letters, digits, `-`, `_`, `.`), used in the API and snapshot URLs.
    pub id: String,
    /// Display name, e.g. "Xinhua Rd / Park St, north".
    #[serde(default)]
    pub name: String,
    /// `rtsp://[user:pass@]host[:port]/path`. Credentials here are split off and never
    /// logged or shown.
    pub url: String,
    /// User name for RTSP authentication (overrides one in the URL).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for RTSP authentication (overrides one in the URL).
    #[serde(default)]
    pub password: Option<String>,
    /// Where it stands, `[lon, lat]`.
    #[serde(default)]
    pub location: Option<[f64; 2]>,
    /// The grids it sees; the first is where its own alerts (offline, freeze) belong.
    /// Empty or absent: the grid its `location` lies in.
    #[serde(default)]
    pub grids: Vec<String>,
    /// Frames per second it should deliver.
    #[serde(default = "default_fps")]
    pub expected_fps: f64,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub transport: CameraTransport,
    /// Initial RTP timestamp policy: `default`, `require`, `ignore`, `permissive`.
    #[serde(default)]
    pub timestamp_policy: TimestampPolicy,
    /// Refuse RTP timestamps that jump by more than this many seconds (drops the
    /// connection and reconnects); absent: no check.
    #[serde(default)]
    pub max_timestamp_jump_secs: Option<u32>,
    /// Whether the camera is supervised (false keeps it listed but not connected).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_fps() -> f64 {
    15.0
}

fn yes() -> bool {
    true
}

impl CameraConfig {
    /// The URL with any user name and password removed: safe to log and show.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// The URL without credentials, and the credentials (explicit fields win over the
    /// URL's).
    pub fn split_credentials(&self) -> Result<(url::Url, Option<(String, String)>), String> {
        let mut u = url::Url::parse(&self.url).map_err(|e| format!("bad URL: {e}"))?;
        let from_url = (!u.username().is_empty()).then(|| {
            (
                percent_decode(u.username()),
                percent_decode(u.password().unwrap_or("")),
            )
        });
        let _ = u.set_username("");
        let _ = u.set_password(None);
        let creds = match (&self.username, &self.password, from_url) {
            (Some(user), pass, _) => Some((user.clone(), pass.clone().unwrap_or_default())),
            (None, Some(pass), Some((user, _))) => Some((user, pass.clone())),
            (None, _, from_url) => from_url,
        };
        Ok((u, creds))
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` without user info; for an unparsable URL, everything up to `@` is cut.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => match url.rfind('@') {
            Some(at) => format!("rtsp://***@{}", &url[at + 1..]),
            None => url.to_string(),
        },
    }
}

/// Gives each camera that names no grid the grid its location lies in (the deepest).
/// Cameras that name grids, or cannot be placed (reported by [`validate`]), are left alone.
pub fn place(cameras: &mut [CameraConfig], grids: &GridIndex) {
    for c in cameras.iter_mut().filter(|c| c.grids.is_empty()) {
        if let Some(g) = c.location.and_then(|[lon, lat]| grids.locate(lon, lat)) {
            c.grids = vec![g.to_string()];
        }
    }
}

/// Checks of the cameras against the grids: (field path, message) per problem.
pub fn validate(
    video: &VideoConfig,
    cameras: &[CameraConfig],
    grids: &GridIndex,
) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if video.max_concurrent_connects == 0 {
        errs.push((
            "video.max_concurrent_connects".into(),
            "must be at least 1".into(),
        ));
    }
    for (name, v) in [
        ("open_timeout_secs", video.open_timeout_secs),
        ("frame_timeout_secs", video.frame_timeout_secs),
        ("offline_after_secs", video.offline_after_secs),
        ("rate_window_secs", video.rate_window_secs),
        ("freeze_after_secs", video.freeze_after_secs),
    ] {
        if !(v.is_finite() && v > 0.0) {
            errs.push((format!("video.{name}"), "must be a positive number".into()));
        }
    }
    if video.snapshot_workers == 0 || video.snapshot_queue == 0 {
        errs.push((
            "video.snapshot_workers".into(),
            "snapshot_workers and snapshot_queue must be at least 1".into(),
        ));
    }
    if video.snapshot_quality > 100 {
        errs.push(("video.snapshot_quality".into(), "must be 0-100".into()));
    }
    if video.snapshot_max_width == Some(0) {
        errs.push((
            "video.snapshot_max_width".into(),
            "must be at least 1".into(),
        ));
    }
    if video.snapshot_timeout_ms == 0 {
        errs.push((
            "video.snapshot_timeout_ms".into(),
            "must be at least 1".into(),
        ));
    }
    if video.reconnect_min_ms == 0 || video.reconnect_min_ms > video.reconnect_max_ms {
        errs.push((
            "video.reconnect_min_ms".into(),
            "must be at least 1 and at most reconnect_max_ms".into(),
        ));
    }
    for (i, c) in cameras.iter().enumerate() {
        let at = |f: &str| format!("cameras[{i}].{f}");
        super::check_id("camera", &c.id, at("id"), &mut seen, &mut errs);
        match c.split_credentials() {
            Ok((u, _)) if u.scheme() != "rtsp" && u.scheme() != "rtsps" => {
                errs.push((at("url"), format!("scheme `{}` is not rtsp", u.scheme())))
            }
            Ok((u, _)) if u.host_str().is_none_or(str::is_empty) => {
                errs.push((at("url"), "has no host".into()))
            }
            Ok(_) => {}
            Err(e) => errs.push((at("url"), format!("{e} (in {})", c.redacted_url()))),
        }
        for (j, g) in c.grids.iter().enumerate() {
            if !grids.contains(g) {
                errs.push((
                    format!("cameras[{i}].grids[{j}]"),
                    format!("unknown grid `{g}`"),
                ));
            }
        }
        if !(c.expected_fps.is_finite() && c.expected_fps > 0.0 && c.expected_fps <= 240.0) {
            errs.push((at("expected_fps"), "must be in (0, 240]".into()));
        }
        match c.location {
            Some(l) if !super::valid_lon_lat(l) => {
                errs.push((at("location"), "must be [lon, lat] in degrees".into()))
            }
            Some([lon, lat]) if c.grids.is_empty() && grids.locate(lon, lat).is_none() => errs
                .push((
                    at("location"),
                    format!(
                        "camera `{}`: [{lon}, {lat}] lies in no grid; name its `grids`",
                        c.id
                    ),
                )),
            None if c.grids.is_empty() => errs.push((
                at("grids"),
                format!(
                    "camera `{}`: name at least one grid, or give a `location` inside one",
                    c.id
                ),
            )),
            _ => {}
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(url: &str) -> CameraConfig {
        CameraConfig {
            id: "c1".into(),
            name: String::new(),
            url: url.into(),
            username: None,
            password: None,
            location: None,
            grids: vec!["g".into()],
            expected_fps: 15.0,
            transport: CameraTransport::Tcp,
            timestamp_policy: TimestampPolicy::Default,
            max_timestamp_jump_secs: None,
            enabled: true,
        }
    }

    #[test]
    fn credentials_are_split_off_and_redacted() {
        let c = cam("rtsp://admin:s%40cret@10.0.0.5:554/Streaming/101");
        assert_eq!(c.redacted_url(), "rtsp://10.0.0.5:554/Streaming/101");
        let (u, creds) = c.split_credentials().unwrap();
        assert_eq!(u.as_str(), "rtsp://10.0.0.5:554/Streaming/101");
        assert_eq!(creds, Some(("admin".into(), "s@cret".into())));
        assert!(!redact("rtsp://a:b@@bad url").contains("a:b"));
    }

    #[test]
    fn explicit_fields_win() {
        let mut c = cam("rtsp://admin:old@h/p");
        c.password = Some("new".into());
        assert_eq!(
            c.split_credentials().unwrap().1,
            Some(("admin".into(), "new".into()))
        );
        c.username = Some("op".into());
        assert_eq!(
            c.split_credentials().unwrap().1,
            Some(("op".into(), "new".into()))
        );
    }

    #[test]
    fn bad_cameras_name_the_field() {
        let mut bad = cam("http://h/p");
        bad.grids = vec!["nope".into()];
        bad.expected_fps = 0.0;
        let errs = validate(&VideoConfig::default(), &[bad, cam("rtsp://h/p")], &grids());
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert!(fields.contains(&"cameras[0].url"), "{errs:?}");
        assert!(fields.contains(&"cameras[0].grids[0]"), "{errs:?}");
        assert!(fields.contains(&"cameras[0].expected_fps"), "{errs:?}");
        assert!(fields.contains(&"cameras[1].id"), "duplicate: {errs:?}");
    }

    /// Grid `g`: the square 120.00-120.01 E, 30.00-30.01 N.
    fn grids() -> GridIndex {
        GridIndex::new(&[crate::config::GridConfig {
            id: "g".into(),
            name: "g".into(),
            parent: None,
            polygon: vec![
                [120.0, 30.0],
                [120.01, 30.0],
                [120.01, 30.01],
                [120.0, 30.01],
            ],
        }])
    }

    #[test]
    fn a_camera_with_only_a_location_is_placed_in_its_grid() {
        let mut placed = cam("rtsp://h/a");
        placed.grids.clear();
        placed.location = Some([120.005, 30.005]);
        let mut named = cam("rtsp://h/b");
        named.id = "c2".into();
        named.location = Some([121.0, 31.0]);
        let mut cameras = [placed, named];
        assert!(validate(&VideoConfig::default(), &cameras, &grids()).is_empty());
        place(&mut cameras, &grids());
        assert_eq!(cameras[0].grids, vec!["g".to_string()]);
        assert_eq!(cameras[1].grids, vec!["g".to_string()], "named grids stay");
    }

    #[test]
    fn a_camera_that_cannot_be_placed_is_named() {
        let mut nowhere = cam("rtsp://h/a");
        nowhere.grids.clear();
        nowhere.location = Some([121.0, 31.0]);
        let mut unplaced = cam("rtsp://h/b");
        unplaced.id = "c2".into();
        unplaced.grids.clear();
        let errs = validate(&VideoConfig::default(), &[nowhere, unplaced], &grids());
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].0, "cameras[0].location");
        assert!(errs[0].1.contains("camera `c1`"), "{errs:?}");
        assert_eq!(errs[1].0, "cameras[1].grids");
        assert!(errs[1].1.contains("camera `c2`"), "{errs:?}");
    }
}
