//! `GET /api/map` (viewer+): what the wall's map draws, as JSON: every grid (`id`, `name`,
//! `parent`, `depth`, `polygon` — its closed outer ring of `[lon, lat]`, or `null` for a
//! grid drawn by its children), every camera (`id`, `name`, `location`, `grid_ids`,
//! `status`) and every listed sensor (`id`, `kind`, `name`, `grid_id`, `location`).
//!
//! Grids and sensors are the config's at start (SIGHUP reloads cameras and rules, not
//! them); cameras are the live registry's, with their health.

use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Json,
};
use gridsight_proto::v1 as pb;
use serde_json::{json, Value};

use super::http::{HttpState, Reader};

/// The handler.
pub(super) async fn map(State(s): State<HttpState>, _: Reader) -> Response {
    let index = s.router.grids();
    let grids: Vec<Value> = (0..index.len())
        .filter_map(|i| index.id_at(i))
        .map(|id| {
            json!({
                "id": id,
                "name": index.name(id),
                "parent": index.parent(id),
                "depth": index.depth(id),
                "polygon": index.outline(id),
            })
        })
        .collect();
    let mut cameras: Vec<pb::Camera> = s.cameras.iter().map(|e| e.to_pb(s.camera_window)).collect();
    cameras.sort_by(|a, b| a.id.cmp(&b.id));
    let cameras: Vec<Value> = cameras
        .iter()
        .map(|c| {
            let status = c
                .health
                .as_ref()
                .and_then(|h| pb::CameraStatus::try_from(h.status).ok())
                .map_or("UNKNOWN", |st| {
                    let n = st.as_str_name();
                    n.strip_prefix("CAMERA_STATUS_").unwrap_or(n)
                });
            json!({
                "id": c.id, "name": c.name,
                "location": c.location.as_ref().map(|l| [l.lon, l.lat]),
                "grid_ids": c.grid_ids, "status": status,
            })
        })
        .collect();
    let sensors: Vec<Value> = s
        .sensors
        .iter()
        .map(|x| {
            json!({
                "id": x.id, "kind": x.kind, "name": x.name, "grid_id": x.grid,
                "location": x.location,
            })
        })
        .collect();
    Json(super::json::object([
        ("grids", grids.into()),
        ("cameras", cameras.into()),
        ("sensors", sensors.into()),
    ]))
    .into_response()
}
