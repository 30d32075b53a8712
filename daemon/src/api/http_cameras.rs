//! HTTP camera routes: `/api/cameras` (health as JSON), `/snapshot/{camera}.jpg` (a JPEG of
//! the latest keyframe, made now) and `/snapshots/{alert}/{camera}.jpg` (the picture taken
//! when the alert opened). All need a viewer token; credentials never appear.

use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use super::http::{HttpState, Reader};
use crate::{
    media::{MediaError, SnapshotError},
    store::read,
};

/// Every camera with its health, sorted by id.
pub(super) async fn cameras(State(s): State<HttpState>, _: Reader) -> Response {
    let mut list: Vec<_> = s.cameras.iter().map(|e| e.to_pb(s.camera_window)).collect();
    list.sort_by(|a, b| a.id.cmp(&b.id));
    let json: Vec<serde_json::Value> = list
        .into_iter()
        .map(|c| {
            let h = c.health.unwrap_or_default();
            serde_json::json!({
                "id": c.id,
                "name": c.name,
                "url": c.url,
                "grid_ids": c.grid_ids,
                "location": c.location.map(|l| [l.lon, l.lat]),
                "status": gridsight_proto::v1::CameraStatus::try_from(h.status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("CAMERA_STATUS_UNSPECIFIED"),
                "fps": h.fps,
                "expected_fps": h.expected_fps,
                "bitrate_kbps": h.bitrate_kbps,
                "packet_loss": h.packet_loss,
                "last_frame_ms": h.last_frame.as_ref().map(gridsight_proto::millis_from_ts),
                "reconnects_last_hour": h.reconnects_last_hour,
                "stalls_last_hour": h.stalls_last_hour,
                "activity": h.activity,
                "frozen": h.frozen,
                "codec": h.codec,
                "width": h.width,
                "height": h.height,
                "last_error": h.last_error,
            })
        })
        .collect();
    Json(serde_json::json!({ "cameras": json })).into_response()
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
