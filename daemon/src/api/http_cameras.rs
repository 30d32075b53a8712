//! HTTP camera routes: `/api/cameras` (health as JSON), `/snapshot/{camera}.jpg` (a JPEG of
//! the latest keyframe, made now) and `/snapshots/{alert}/{camera}.jpg` (the picture taken
//! when the alert opened). All need a viewer token; credentials never appear.

use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use gridsight_proto::v1 as pb;
use serde::Serialize;

use super::http::{HttpState, Reader};
use crate::{
    media::{MediaError, SnapshotError},
    store::read,
};

/// One camera of `/api/cameras`, borrowed from its [`pb::Camera`] and written straight into
/// the response: no `serde_json::Value` tree per camera (with them, a list of 500 cameras
/// was ~20,000 small allocations, made twice, on every poll).
#[derive(Serialize)]
struct CameraRow<'a> {
    id: &'a str,
    name: &'a str,
    url: &'a str,
    grid_ids: &'a [String],
    location: Option<[f64; 2]>,
    status: &'static str,
    fps: f64,
    expected_fps: f64,
    bitrate_kbps: f64,
    packet_loss: f64,
    last_frame_ms: Option<i64>,
    reconnects_last_hour: u32,
    stalls_last_hour: u32,
    activity: f64,
    frozen: bool,
    codec: &'a str,
    width: u32,
    height: u32,
    last_error: &'a str,
}

impl<'a> CameraRow<'a> {
    fn new(c: &'a pb::Camera, h: &'a pb::CameraHealth) -> Self {
        CameraRow {
            id: &c.id,
            name: &c.name,
            url: &c.url,
            grid_ids: &c.grid_ids,
            location: c.location.as_ref().map(|l| [l.lon, l.lat]),
            status: pb::CameraStatus::try_from(h.status)
                .map(|s| s.as_str_name())
                .unwrap_or("CAMERA_STATUS_UNSPECIFIED"),
            fps: h.fps,
            expected_fps: h.expected_fps,
            bitrate_kbps: h.bitrate_kbps,
            packet_loss: h.packet_loss,
            last_frame_ms: h.last_frame.as_ref().map(gridsight_proto::millis_from_ts),
            reconnects_last_hour: h.reconnects_last_hour,
            stalls_last_hour: h.stalls_last_hour,
            activity: h.activity,
            frozen: h.frozen,
            codec: &h.codec,
            width: h.width,
            height: h.height,
            last_error: &h.last_error,
        }
    }
}

/// Every camera with its health, sorted by id.
pub(super) async fn cameras(State(s): State<HttpState>, _: Reader) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        cameras: Vec<CameraRow<'a>>,
    }
    let mut list: Vec<_> = s.cameras.iter().map(|e| e.to_pb(s.camera_window)).collect();
    list.sort_by(|a, b| a.id.cmp(&b.id));
    let none = pb::CameraHealth::default();
    let cameras = list
        .iter()
        .map(|c| CameraRow::new(c, c.health.as_ref().unwrap_or(&none)))
        .collect();
    Json(Body { cameras }).into_response()
}

fn jpeg_name(file: &str) -> Option<&str> {
    file.strip_suffix(".jpg")
        .filter(|id| crate::config::valid_id(id))
}

fn jpeg(bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response()
}

/// A JPEG of the camera's latest keyframe.
pub(super) async fn live_snapshot(
    State(s): State<HttpState>,
    Path(file): Path<String>,
    _: Reader,
) -> Response {
    let Some(camera) = jpeg_name(&file) else {
        return (StatusCode::NOT_FOUND, "expected /snapshot/{camera}.jpg\n").into_response();
    };
    match s.snapshots.of_camera(&s.cameras, camera).await {
        Ok(shot) => jpeg(shot.jpeg.to_vec()),
        Err(e) => {
            let code = match &e {
                SnapshotError::UnknownCamera(_) => StatusCode::NOT_FOUND,
                SnapshotError::NoKeyframe(_) | SnapshotError::Media(MediaError::Busy) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                SnapshotError::Media(MediaError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
                SnapshotError::Media(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut r = (code, format!("{e}\n")).into_response();
            if code == StatusCode::SERVICE_UNAVAILABLE {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            r
        }
    }
}

/// The picture taken for an alert when it opened.
pub(super) async fn alert_snapshot(
    State(s): State<HttpState>,
    Path((alert, file)): Path<(String, String)>,
    _: Reader,
) -> Response {
    let Some(camera) = jpeg_name(&file).map(str::to_string) else {
        return (
            StatusCode::NOT_FOUND,
            "expected /snapshots/{alert}/{camera}.jpg\n",
        )
            .into_response();
    };
    // The alert is streamed as it opens, naming its pictures, while they are still being
    // made: a request for one that is pending waits for the writer to store a picture, then
    // reads again, so the URL works as soon as a client sees it.
    let mut until: Option<Option<tokio::time::Instant>> = None;
    loop {
        // Enabled before the read: a picture stored after it still wakes this request.
        let stored = s.store.seqs.snapshot_stored.notified();
        tokio::pin!(stored);
        stored.as_mut().enable();
        let (a, c) = (alert.clone(), camera.clone());
        match s.store.read(move |db| read::snapshot(db, &a, &c)).await {
            Ok(Some((_, bytes))) => return jpeg(bytes),
            Ok(None) => {}
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        }
        if until.is_none() {
            until = Some(pending_until(&s, &alert, &camera).await);
        }
        let waited = match until.flatten() {
            Some(deadline) => tokio::time::timeout_at(deadline, stored).await.is_ok(),
            None => false,
        };
        if !waited {
            return (
                StatusCode::NOT_FOUND,
                "no picture for this alert and camera (the camera had no keyframe when it opened)\n",
            )
                .into_response();
        }
    }
}

/// How long after an alert names a picture it may still be in the making (longer than a
/// snapshot's own timeout, `video.snapshot_timeout_ms`, 2 s by default).
const PENDING_WAIT_MS: i64 = 5_000;

/// When a picture of `camera` for `alert` stops being worth waiting for: `None` when the
/// alert names no such picture, or named it long ago.
async fn pending_until(s: &HttpState, alert: &str, camera: &str) -> Option<tokio::time::Instant> {
    let id = alert.to_string();
    let found = s
        .store
        .read(move |db| read::get_alert(db, &id))
        .await
        .ok()??;
    let taken = found
        .snapshots
        .iter()
        .find(|r| r.camera_id == camera)?
        .taken_at
        .as_ref()
        .map(gridsight_proto::millis_from_ts)?;
    let left = taken + PENDING_WAIT_MS - crate::domain::now_ms();
    (left > 0).then(|| tokio::time::Instant::now() + std::time::Duration::from_millis(left as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_row_has_every_field_the_dashboard_and_integrators_read() {
        let c = pb::Camera {
            id: "cam-7".into(),
            name: "North gate".into(),
            url: "rtsp://10.0.0.7/main".into(),
            location: Some(pb::LatLon {
                lat: 31.5,
                lon: 120.25,
            }),
            grid_ids: vec!["g1".into(), "g2".into()],
            health: Some(pb::CameraHealth {
                status: pb::CameraStatus::Degraded as i32,
                fps: 14.5,
                expected_fps: 15.0,
                bitrate_kbps: 812.0,
                packet_loss: 0.25,
                last_frame: Some(gridsight_proto::ts_from_millis(1_795_000_000_123)),
                reconnects_last_hour: 7,
                stalls_last_hour: 2,
                activity: 0.5,
                frozen: true,
                codec: "h264".into(),
                width: 1920,
                height: 1080,
                last_error: "the camera closed the stream".into(),
                ..Default::default()
            }),
        };
        let row = serde_json::to_value(CameraRow::new(&c, c.health.as_ref().unwrap())).unwrap();
        assert_eq!(
            row,
            serde_json::json!({
                "id": "cam-7", "name": "North gate", "url": "rtsp://10.0.0.7/main",
                "grid_ids": ["g1", "g2"], "location": [120.25, 31.5],
                "status": "CAMERA_STATUS_DEGRADED", "fps": 14.5, "expected_fps": 15.0,
                "bitrate_kbps": 812.0, "packet_loss": 0.25, "last_frame_ms": 1_795_000_000_123i64,
                "reconnects_last_hour": 7, "stalls_last_hour": 2, "activity": 0.5,
                "frozen": true, "codec": "h264", "width": 1920, "height": 1080,
                "last_error": "the camera closed the stream",
            })
        );
        // A camera not seen yet: no location, no frame, status unknown to this build.
        let none = pb::Camera {
            id: "cam-8".into(),
            ..Default::default()
        };
        let health = pb::CameraHealth {
            status: 99,
            ..Default::default()
        };
        let row = serde_json::to_value(CameraRow::new(&none, &health)).unwrap();
        assert_eq!(row["location"], serde_json::Value::Null);
        assert_eq!(row["last_frame_ms"], serde_json::Value::Null);
        assert_eq!(row["status"], "CAMERA_STATUS_UNSPECIFIED");
    }

    #[test]
    fn object_moves_its_values_in() {
        let list: Vec<serde_json::Value> = (0..3).map(|i| serde_json::json!({ "n": i })).collect();
        let v = crate::api::json::object([("cursor", 42u64.into()), ("items", list.into())]);
        assert_eq!(
            v,
            serde_json::json!({ "cursor": 42, "items": [{ "n": 0 }, { "n": 1 }, { "n": 2 }] })
        );
    }
}
