//! The daemon's interfaces: gRPC (`grpc`), HTTP (`http`, with the WebSocket stream in `ws`
//! and the browsers' JSON forms in `json`) and the tokens both check (`auth`); `runtime` is where they all run.

mod assets;
pub mod auth;
pub mod grpc;
pub mod http;
mod http_actions;
mod http_cameras;
mod http_map;
mod http_stats;
pub mod json;
pub mod limits;
pub mod runtime;
pub(crate) mod ws;
