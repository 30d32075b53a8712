//! `CameraService`: List and Get (health and figures, never credentials), Snapshot (a
//! JPEG of the latest keyframe, made by the media pool off the async runtime).

use std::time::Duration;

use gridsight_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{expand_grids, invalid, ApiError};
use crate::{
    api::auth::{Auth, Perm},
    domain::GridIndex,
    media::Snapshots,
    sources::rtsp::Registry,
};

/// The service.
#[derive(Clone)]
pub struct CameraApi {
    /// Tokens.
    pub auth: Auth,
    /// The cameras.
    pub cameras: Registry,
    /// The grid tree (for filters).
    pub grids: std::sync::Arc<GridIndex>,
    /// Rate window of the health figures.
    pub window: Duration,
    /// Snapshot maker.
    pub snapshots: Snapshots,
}

#[tonic::async_trait]
impl pb::camera_service_server::CameraService for CameraApi {
    async fn list(
        &self,
        req: Request<pb::ListCamerasRequest>,
    ) -> Result<Response<pb::ListCamerasResponse>, Status> {
        self.auth.grpc(&req, Perm::Read)?;
        let r = req.into_inner();
        let grids = expand_grids(&self.grids, &r.grid_ids, "grid_ids")?;
        let want = pb::CameraStatus::try_from(r.status)
            .map_err(|_| invalid("status", format!("unknown status {}", r.status)))?;
        let mut cameras: Vec<pb::Camera> = self
            .cameras
            .iter()
            .filter(|e| {
                grids
                    .as_ref()
                    .is_none_or(|gs| e.cfg.grids.iter().any(|g| gs.contains(g)))
            })
            .map(|e| e.to_pb(self.window))
            .filter(|c| {
                want == pb::CameraStatus::Unspecified
                    || c.health.as_ref().is_some_and(|h| h.status == want as i32)
            })
            .collect();
        cameras.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Response::new(pb::ListCamerasResponse { cameras }))
    }

    async fn get(
        &self,
        req: Request<pb::GetCameraRequest>,
    ) -> Result<Response<pb::Camera>, Status> {
        self.auth.grpc(&req, Perm::Read)?;
        let id = req.into_inner().id;
        if id.is_empty() {
            return Err(invalid("id", "required").into());
        }
        self.cameras
            .get(&id)
            .map(|e| Response::new(e.to_pb(self.window)))
            .ok_or_else(|| ApiError::NotFound(format!("camera {id} not found")).into())
    }

    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        self.auth.grpc(&req, Perm::Read)?;
        let id = req.into_inner().camera_id;
        if id.is_empty() {
            return Err(invalid("camera_id", "required").into());
        }
        let shot = self
            .snapshots
            .of_camera(&self.cameras, &id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SnapshotResponse {
            camera_id: id,
            width: shot.width,
            height: shot.height,
            keyframe_time: Some(gridsight_proto::ts_from_millis(shot.keyframe_ms)),
            jpeg: shot.jpeg.to_vec(),
        }))
    }
}
