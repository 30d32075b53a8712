//! HTTP: `/healthz`, `/readyz`, `/metrics`, JSON reads (alerts, dead letters, silences),
//! snapshots (in `http_cameras`), the daily figures (in `http_stats`), the alert stream over
//! a WebSocket (in `ws`), and the dashboard page.
//!
//! Everything but `/healthz` and `/readyz` needs a token, as `authorization: Bearer ...`
//! or, for a browser opening the page, `?token=...`. Wrong or missing token: 401; a role
//! that may not read: 403.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use axum::{
    extract::{Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    api::auth::{Auth, AuthError, Perm},
    correlate,
    store::{read, Store},
    telemetry::{Metrics, ShardLabel},
};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct HttpState {
    /// Tokens.
    pub auth: Auth,
    /// Reads.
    pub store: Store,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// For queue depths.
    pub router: correlate::Router,
    /// Ready: store open, correlator running, MQTT subscribed (when configured).
    pub ready: Arc<AtomicBool>,
    /// Whether MQTT ingest is configured (then readiness waits for its subscription).
    pub mqtt_ready: Option<Arc<AtomicBool>>,
    /// The cameras.
    pub cameras: crate::sources::rtsp::Registry,
    /// Snapshot maker.
    pub snapshots: crate::media::Snapshots,
    /// Rate window of camera figures.
    pub camera_window: std::time::Duration,
    /// The daily figures (`/api/stats`).
    pub figures: crate::incidents::Figures,
    /// Alert subscriptions (`/ws`) and, at shutdown, the tasks that serve them.
    pub alerts: crate::api::grpc::AlertApi,
    /// The listed sensors, as configured at start (`/api/map`).
    pub sensors: Arc<Vec<crate::config::SensorConfig>>,
}

/// Query parameters of the list reads (the token, if given there, is read by [`caller`]).
#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    limit: Option<u32>,
    include_expired: Option<bool>,
}

/// The caller of a handler that reads: `Reader(identity)`, or the 401/403 answer.
pub(super) struct Reader(pub crate::api::auth::Identity);

/// The caller of a handler that acts (acknowledge, resolve...): operators and integrators.
pub(super) struct Operator(pub crate::api::auth::Identity);

/// The token from the `authorization` header or, for a browser, `?token=`, checked for
/// `perm`: 401 when missing or unknown, 403 when its role may not.
fn caller(
    parts: &axum::http::request::Parts,
    s: &HttpState,
    perm: Perm,
) -> Result<crate::api::auth::Identity, Box<Response>> {
    // Only `token` is read here: another parameter that does not parse is its handler's
    // to refuse, naming it, not a reason for a 401.
    #[derive(Deserialize, Default)]
    struct OnlyToken {
        token: Option<String>,
    }
    let query = Query::<OnlyToken>::try_from_uri(&parts.uri)
        .map(|Query(q)| q.token)
        .unwrap_or_default();
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // A client certificate, when the connection is TLS and the client presented one.
    let cert = parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::tls::Peer>>()
        .and_then(|c| c.0.cert);
    s.auth
        .check_peer(header.or(query.as_deref()), cert, perm)
        .map_err(|e| {
            let code = match e {
                AuthError::Missing | AuthError::Invalid | AuthError::UnlistedCert(_) => {
                    StatusCode::UNAUTHORIZED
                }
                AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
            };
            Box::new((code, [(header::WWW_AUTHENTICATE, "Bearer")], e.to_string()).into_response())
        })
}

/// `FromRequestParts` for a caller type: its token checked for `$perm`.
macro_rules! caller_extractor {
    ($name:ident, $perm:expr) => {
        impl axum::extract::FromRequestParts<HttpState> for $name {
            type Rejection = Response;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                s: &HttpState,
            ) -> Result<Self, Response> {
                caller(parts, s, $perm).map($name).map_err(|r| *r)
            }
        }
    };
}
caller_extractor!(Reader, Perm::Read);
caller_extractor!(Operator, Perm::Operate);

/// The routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(super::assets::index))
        .route("/app.js", get(super::assets::app_js))
        .route("/app.css", get(super::assets::app_css))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/alerts", get(alerts))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/silences", get(silences))
        .route("/api/cameras", get(super::http_cameras::cameras))
        .route("/api/stats", get(super::http_stats::stats))
        .route("/api/stats/hours", get(super::http_stats::hours))
        .route("/ws", get(super::ws::ws))
        .route("/api/whoami", get(super::http_actions::whoami))
        .route("/api/map", get(super::http_map::map))
        .route("/api/departments", get(super::http_actions::departments))
        .route(
            "/api/alerts/{id}/dispatch",
            axum::routing::post(super::http_actions::dispatch),
        )
        .route(
            "/api/alerts/{id}/{action}",
            axum::routing::post(super::http_actions::alert_action),
        )
        .route("/snapshot/{file}", get(super::http_cameras::live_snapshot))
        .route(
            "/snapshots/{alert}/{file}",
            get(super::http_cameras::alert_snapshot),
        )
        .with_state(state)
}

async fn readyz(State(s): State<HttpState>) -> Response {
    let mqtt = s
        .mqtt_ready
        .as_ref()
        .is_none_or(|r| r.load(Ordering::Acquire));
    if s.ready.load(Ordering::Acquire) && mqtt {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let why = if mqtt {
            "starting"
        } else {
            "not subscribed to the MQTT broker"
        };
        (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
    }
}

async fn metrics(State(s): State<HttpState>, _: Reader) -> Response {
    s.metrics.sample_process();
    s.metrics
        .store_queue_depth
        .set(s.store.queue_depth() as i64);
    for (i, d) in s.router.depths().into_iter().enumerate() {
        s.metrics
            .shard_queue_depth
            .get_or_create(&ShardLabel {
                shard: i.to_string(),
            })
            .set(d as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn alerts(State(s): State<HttpState>, _: Reader) -> Response {
    match s.store.read(read::open_alerts).await {
        Ok((alerts, cursor)) => {
            let list: Vec<serde_json::Value> = alerts.iter().map(alert_json).collect();
            Json(super::json::object([
                ("cursor", cursor.into()),
                ("alerts", list.into()),
            ]))
            .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn dead_letters(
    State(s): State<HttpState>,
    _: Reader,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(100).min(1000);
    match s.store.read(move |c| read::dead_letters(c, limit)).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn silences(State(s): State<HttpState>, _: Reader, Query(q): Query<ListQuery>) -> Response {
    let all = q.include_expired.unwrap_or(false);
    let now = crate::domain::now_ms();
    match s
        .store
        .read(move |c| read::silences(c, all, now, read::SILENCES_LIMIT))
        .await
    {
        Ok(list) => {
            let list: Vec<_> = list.iter().map(|x| silence_json(x, now)).collect();
            Json(super::json::object([("silences", list.into())])).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A silence as JSON: times in RFC 3339, `null` when unset; `active` = in force at `now`.
fn silence_json(x: &gridsight_proto::v1::Silence, now: i64) -> serde_json::Value {
    let m = x.matcher.clone().unwrap_or_default();
    let at = |t: &Option<prost_types::Timestamp>| t.as_ref().map(ToString::to_string);
    let max_severity = crate::domain::Severity::from_pb(m.max_severity);
    serde_json::json!({
        "id": x.id,
        "matcher": {
            "grid_id": m.grid_id, "rule_id": m.rule_id,
            "dedup_key_prefix": m.dedup_key_prefix, "max_severity": max_severity,
        },
        "starts_at": at(&x.starts_at), "ends_at": at(&x.ends_at),
        "created_by": x.created_by, "created_at": at(&x.created_at), "comment": x.comment,
        "expired_by": x.expired_by, "expired_at": at(&x.expired_at),
        "active": correlate::silence::is_active(x, now),
    })
}

fn alert_json(a: &gridsight_proto::v1::Alert) -> serde_json::Value {
    use gridsight_proto::v1 as pb;
    let sev = pb::Severity::try_from(a.severity)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN");
    let status = pb::AlertStatus::try_from(a.status)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN");
    let ms = |t: &Option<prost_types::Timestamp>| t.as_ref().map(gridsight_proto::millis_from_ts);
    serde_json::json!({
        "id": a.id, "seq": a.seq, "version": a.version, "severity": sev, "status": status,
        "title": a.title, "grid_id": a.grid_id, "count": a.count,
        "first_seen_ms": ms(&a.first_seen), "last_seen_ms": ms(&a.last_seen),
        "evidence": a.evidence.len(),
    })
}

/// Serves HTTP on `listener` until `cancel`; with `tls`, over TLS (ALPN http/1.1), where
/// a client certificate the client presented is seen by the handlers' token check.
/// Request bodies above `api.limits.max_request_bytes` are refused with 413.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    tls: Option<Arc<crate::tls::ServerTls>>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let max = state.auth.limits.config().max_request_bytes;
    let metrics = state.metrics.clone();
    let app = router(state).layer(axum::extract::DefaultBodyLimit::max(max));
    let shutdown = {
        let cancel = cancel.clone();
        async move { cancel.cancelled().await }
    };
    match tls {
        Some(tls) => {
            let listener = crate::tls::HttpListener::new(listener, tls, metrics, cancel)?;
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<crate::tls::Peer>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
