//! The daemon's interfaces: gRPC (`grpc`), HTTP (`http`) and the tokens both check (`auth`).

pub mod auth;
pub mod grpc;
pub mod http;
mod http_cameras;
mod http_stats;
