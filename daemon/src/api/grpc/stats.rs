//! `StatsService.Daily`: the centre's daily figures, for any role that may read.
//!
//! The figures themselves are defined and computed in [`crate::incidents::stats`]; this
//! file checks the token and maps errors to status codes (a bad day or an unknown grid is
//! `INVALID_ARGUMENT` naming the field).

use tonic::{Request, Response, Status};

use super::{invalid, ApiError};
use crate::{
    api::auth::{Auth, Perm},
    domain::now_ms,
    incidents::{Figures, StatsError},
};
use gridsight_proto::v1 as pb;

/// The service.
#[derive(Clone)]
pub struct StatsApi {
    /// Tokens.
    pub auth: Auth,
    /// The figures.
    pub figures: Figures,
}

impl From<StatsError> for ApiError {
    fn from(e: StatsError) -> Self {
        match e {
            StatsError::Field { field, message } => invalid(field, message),
            StatsError::Store(s) => ApiError::Store(s),
        }
    }
}

#[tonic::async_trait]
impl pb::stats_service_server::StatsService for StatsApi {
    async fn daily(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        self.auth.grpc(&req, Perm::Read)?;
        let figures = self
            .figures
            .daily(req.get_ref(), now_ms())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(figures))
    }
}
