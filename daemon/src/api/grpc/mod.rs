//! The gRPC server: IncidentService, AlertService, CameraService, StatsService,
//! SilenceService, health and reflection.
//!
//! Owns the mapping of every error to a `tonic::Status` code ([`ApiError`]): bad fields
//! are `INVALID_ARGUMENT` naming the field, unknown ids `NOT_FOUND`, stale versions
//! `ABORTED`, cursors past retention `OUT_OF_RANGE`, shutdown `UNAVAILABLE`. Served with
//! graceful shutdown: on cancel, new calls are refused, subscriptions end with
//! `UNAVAILABLE` (resume from the last seq), and calls in flight finish.

mod alerts;
mod cameras;
mod dispatch;
pub mod fanout;
mod incidents;
pub mod silence_book;
mod silences;
mod stats;
pub mod subscription;

use std::sync::Arc;

use gridsight_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use alerts::{AlertApi, Subscription};
pub use cameras::CameraApi;
pub use fanout::Fanout;
pub use incidents::IncidentApi;
pub use silence_book::SilenceBook;
pub use silences::SilenceApi;
pub use stats::StatsApi;

// The checks of outside requests that need no store, for the fuzz targets
// ([`crate::fuzzing`]).
pub(crate) use alerts::{check_command, check_filter};
pub(crate) use dispatch::check_dispatch;
pub(crate) use incidents::validate_report;
pub(crate) use silences::check_create;

use crate::{
    api::auth::{Auth, Perm},
    correlate::{CommandError, CommandFailed, RouterClosed},
    domain::GridIndex,
    store::StoreError,
};

/// Errors of the API, each with its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field is wrong.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The field, e.g. `location.lat`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No such id.
    #[error("{0}")]
    NotFound(String),
    /// `expected_version` is stale.
    #[error("{0}")]
    Aborted(String),
    /// The object is not in a state that allows this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A resume cursor outside what is kept.
    #[error("{0}")]
    OutOfRange(String),
    /// The daemon is stopping.
    #[error("the daemon is shutting down; retry")]
    Unavailable,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A snapshot could not be made.
    #[error(transparent)]
    Snapshot(#[from] crate::media::SnapshotError),
    /// A per-token limit refused the call.
    #[error(transparent)]
    Limited(#[from] crate::api::limits::LimitError),
}

impl From<RouterClosed> for ApiError {
    fn from(_: RouterClosed) -> Self {
        ApiError::Unavailable
    }
}

impl From<CommandFailed> for ApiError {
    fn from(e: CommandFailed) -> Self {
        match e {
            CommandFailed::Refused(c) => c.into(),
            CommandFailed::Store(s) => ApiError::Store(s),
            CommandFailed::Stopped => ApiError::Unavailable,
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Stale { .. } => ApiError::Aborted(e.to_string()),
            CommandError::NotOpen(_) | CommandError::AlreadyAcknowledged(_) => {
                ApiError::FailedPrecondition(e.to_string())
            }
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let msg = e.to_string();
        match e {
            ApiError::InvalidArgument { .. } => tonic::Status::invalid_argument(msg),
            ApiError::NotFound(_) => tonic::Status::not_found(msg),
            ApiError::Aborted(_) => tonic::Status::aborted(msg),
            ApiError::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            ApiError::OutOfRange(_) => tonic::Status::out_of_range(msg),
            ApiError::Limited(_) => tonic::Status::resource_exhausted(msg),
            ApiError::Unavailable | ApiError::Store(StoreError::Closed) => {
                tonic::Status::unavailable(msg)
            }
            ApiError::Store(StoreError::Refused(_)) => tonic::Status::failed_precondition(msg),
            ApiError::Store(_) => {
                tracing::error!(error = %msg, "store error in an RPC");
                tonic::Status::internal(msg)
            }
            ApiError::Snapshot(e) => {
                use crate::media::{MediaError as M, SnapshotError as S};
                match e {
                    S::UnknownCamera(_) => tonic::Status::not_found(msg),
                    S::NoKeyframe(_) => tonic::Status::unavailable(msg),
                    S::Media(M::Busy) => tonic::Status::resource_exhausted(msg),
                    S::Media(M::Timeout) => tonic::Status::deadline_exceeded(msg),
                    S::Media(M::Decode(_)) => tonic::Status::failed_precondition(msg),
                    S::Media(_) => tonic::Status::internal(msg),
                }
            }
        }
    }
}

/// A bad field.
pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks a list of grid ids and expands them to every grid at or beneath them.
/// Empty in, `None` (all grids) out.
pub fn expand_grids(
    grids: &GridIndex,
    ids: &[String],
    field: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    if ids.is_empty() {
        return Ok(None);
    }
    for (i, g) in ids.iter().enumerate() {
        if !grids.contains(g) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("unknown grid `{g}`"),
            ));
        }
    }
    Ok(Some(grids.expand(ids)))
}

/// Page size (default 100, at most 1000) and the rowid bound from a page token.
pub fn page(size: u32, token: &str) -> Result<crate::store::Page, ApiError> {
    if size > 1000 {
        return Err(invalid("page_size", "at most 1000"));
    }
    let before = if token.is_empty() {
        0
    } else {
        token
            .parse::<i64>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| invalid("page_token", "not a token from a previous response"))?
    };
    Ok(crate::store::Page {
        size: if size == 0 { 100 } else { size },
        before,
    })
}

/// The services served.
pub struct Services {
    /// IncidentService.
    pub incidents: IncidentApi,
    /// AlertService.
    pub alerts: AlertApi,
    /// CameraService.
    pub cameras: CameraApi,
    /// StatsService.
    pub stats: StatsApi,
    /// SilenceService.
    pub silences: SilenceApi,
}

/// Serves gRPC on `listener` until `cancel`.
///
/// With `tls`, every connection is handshaken by [`crate::tls::listener`] first (ALPN
/// h2); a client certificate it presented is then seen by [`Auth::grpc`]. Messages above
/// `api.limits.max_request_bytes` are refused with `RESOURCE_EXHAUSTED`; header lists
/// above 16 KiB end the stream.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    auth: Auth,
    tls: Option<(Arc<crate::tls::ServerTls>, Arc<crate::telemetry::Metrics>)>,
    cancel: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let Services {
        incidents,
        alerts,
        cameras,
        stats,
        silences,
    } = services;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::incident_service_server::IncidentServiceServer<IncidentApi>>()
        .await;
    health
        .set_serving::<pb::alert_service_server::AlertServiceServer<AlertApi>>()
        .await;
    health
        .set_serving::<pb::camera_service_server::CameraServiceServer<CameraApi>>()
        .await;
    health
        .set_serving::<pb::stats_service_server::StatsServiceServer<StatsApi>>()
        .await;
    health
        .set_serving::<pb::silence_service_server::SilenceServiceServer<SilenceApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| {
            tracing::error!(error = %e, "reflection service");
            e
        });
    let max = auth.limits.config().max_request_bytes;
    let reflection_auth = Arc::new(auth);
    let check = move |req: tonic::Request<()>| -> Result<tonic::Request<()>, tonic::Status> {
        reflection_auth.grpc(&req, Perm::Read).or_else(|e| {
            // Any valid token may read the schema; reporters included.
            if e.code() == tonic::Code::PermissionDenied {
                Ok(crate::api::auth::Identity {
                    name: String::new(),
                    role: crate::config::Role::Reporter,
                })
            } else {
                Err(e)
            }
        })?;
        Ok(req)
    };
    let mut builder = tonic::transport::Server::builder()
        .http2_max_header_list_size(16 * 1024)
        .add_service(health_service)
        .add_service(
            pb::incident_service_server::IncidentServiceServer::new(incidents)
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::alert_service_server::AlertServiceServer::new(alerts)
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::camera_service_server::CameraServiceServer::new(cameras)
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::stats_service_server::StatsServiceServer::new(stats).max_decoding_message_size(max),
        )
        .add_service(
            pb::silence_service_server::SilenceServiceServer::new(silences)
                .max_decoding_message_size(max),
        );
    if let Ok(reflection) = reflection {
        builder = builder.add_service(tonic::service::interceptor::InterceptedService::new(
            reflection, check,
        ));
    }
    let cancel_accept = cancel.clone();
    let shutdown = async move {
        cancel.cancelled().await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    };
    match tls {
        Some((tls, metrics)) => {
            use tokio_stream::StreamExt;
            let rx = crate::tls::listener::accept(
                listener,
                tls,
                crate::tls::listener::Api::Grpc,
                metrics,
                cancel_accept,
            );
            let incoming = tokio_stream::wrappers::ReceiverStream::new(rx)
                .map(|(stream, _)| Ok::<_, std::io::Error>(stream));
            builder
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            builder
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    shutdown,
                )
                .await
        }
    }
}
