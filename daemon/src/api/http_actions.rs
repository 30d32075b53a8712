//! Operator actions over HTTP, for the dashboard: `POST /api/alerts/{id}/acknowledge`,
//! `.../resolve`, `.../note` and `.../dispatch`; `GET /api/whoami` (the token's name and
//! role, so the page shows the actions only to those who may take them) and
//! `GET /api/departments` (where work can be dispatched).
//!
//! An action is the same call as gRPC `AlertService.Acknowledge` / `Resolve` / `AddNote` /
//! `Dispatch`: attributed to the token's name, answered once the change is durable, and so
//! seen at once by every WebSocket and gRPC subscriber. The body is JSON
//! `{"expected_version": N, "note": "..."}` (a note needs only `note`); a dispatch's is
//! `{"expected_version": N, "department": "...", "deadline_ms": N, "note": "..."}` and it
//! answers `{"alert": ..., "incident": ...}`. Errors are the gRPC ones as HTTP codes, the
//! body naming the field or the reason: 400 a bad field, 401/403 the token, 404 no such
//! alert, 409 a stale `expected_version`, an alert already resolved or an incident that
//! cannot be dispatched, 503 while the daemon stops.

use axum::{
    extract::{rejection::JsonRejection, Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;

use super::{
    auth::Perm,
    grpc::ApiError,
    http::{HttpState, Operator, Reader},
};
use crate::{correlate::Action, store::StoreError};

/// The body of an action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionBody {
    /// The version of the alert the operator saw (not needed for a note).
    #[serde(default)]
    expected_version: u64,
    /// Kept with the alert.
    #[serde(default)]
    note: String,
}

/// The body of a dispatch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DispatchBody {
    /// The version of the alert the operator saw.
    #[serde(default)]
    expected_version: u64,
    /// The department's id.
    #[serde(default)]
    department: String,
    /// When the work has to be resolved by, ms since the Unix epoch.
    deadline_ms: Option<i64>,
    /// Kept with the DISPATCHED step and as the alert's note.
    #[serde(default)]
    note: String,
}

/// `GET /api/whoami`: `{"name", "role"}` of the token (any role that may read).
pub(super) async fn whoami(Reader(who): Reader) -> Response {
    Json(serde_json::json!({
        "name": who.name,
        "role": who.role.as_str(),
        "may_operate": who.role.allows(Perm::Operate),
    }))
    .into_response()
}

/// `GET /api/departments`: `[{"id", "name"}]`, as configured (empty: any id is taken).
pub(super) async fn departments(State(s): State<HttpState>, Reader(_): Reader) -> Response {
    let list: Vec<_> = s
        .alerts
        .desk
        .departments()
        .iter()
        .map(|d| serde_json::json!({ "id": d.id, "name": d.name }))
        .collect();
    Json(list).into_response()
}

/// `POST /api/alerts/{id}/dispatch`.
pub(super) async fn dispatch(
    State(s): State<HttpState>,
    Operator(who): Operator,
    Path(id): Path<String>,
    body: Result<Json<DispatchBody>, JsonRejection>,
) -> Response {
    let b = match body {
        Ok(Json(b)) => b,
        Err(e) => return bad_body(&e),
    };
    match s
        .alerts
        .dispatch_alert(
            id,
            b.expected_version,
            b.department,
            b.deadline_ms,
            b.note,
            who.name,
        )
        .await
    {
        Ok((alert, incident)) => Json(serde_json::json!({
            "alert": crate::api::json::alert(&alert),
            "incident": crate::api::json::incident(&incident),
        }))
        .into_response(),
        Err(e) => (code(&e), format!("{e}\n")).into_response(),
    }
}

/// `POST /api/alerts/{id}/{action}`.
pub(super) async fn alert_action(
    State(s): State<HttpState>,
    Operator(who): Operator,
    Path((id, action)): Path<(String, String)>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Response {
    let action = match action.as_str() {
        "acknowledge" => Action::Acknowledge,
        "resolve" => Action::Resolve,
        "note" => Action::Note,
        other => {
            return (
                StatusCode::NOT_FOUND,
                format!("no action `{other}` (acknowledge, resolve, note, dispatch)\n"),
            )
                .into_response()
        }
    };
    let body = match body {
        Ok(Json(b)) => b,
        // serde's message names the field (`missing field `expected_version``).
        Err(e) => return bad_body(&e),
    };
    match s
        .alerts
        .command(id, body.expected_version, body.note, action, who.name)
        .await
    {
        Ok(alert) => Json(crate::api::json::alert(&alert)).into_response(),
        Err(e) => (code(&e), format!("{e}\n")).into_response(),
    }
}

/// A body that is not the JSON asked for: 400 naming the problem, or 413 when it is
/// larger than `api.limits.max_request_bytes`.
fn bad_body(e: &JsonRejection) -> Response {
    let code = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    (code, format!("{}\n", e.body_text())).into_response()
}

/// The HTTP status of an API error (as its gRPC code would be).
fn code(e: &ApiError) -> StatusCode {
    match e {
        ApiError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::Aborted(_) | ApiError::FailedPrecondition(_) => StatusCode::CONFLICT,
        ApiError::Store(StoreError::Refused(_)) => StatusCode::CONFLICT,
        ApiError::OutOfRange(_) => StatusCode::BAD_REQUEST,
        ApiError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
        ApiError::Unavailable | ApiError::Store(StoreError::Closed) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_codes_a_browser_acts_on() {
        assert_eq!(
            code(&ApiError::Aborted("version 3 is stale".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            code(&ApiError::NotFound("alert ALR-1 not found".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            code(&ApiError::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            code(&ApiError::InvalidArgument {
                field: "note".into(),
                message: "at most 2000 bytes".into()
            }),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_body_with_an_unknown_field_is_refused() {
        let r: Result<ActionBody, _> =
            serde_json::from_str(r#"{"expected_version": 2, "notes": "x"}"#);
        assert!(r.unwrap_err().to_string().contains("notes"));
        let ok: ActionBody = serde_json::from_str(r#"{"expected_version": 2}"#).unwrap();
        assert_eq!((ok.expected_version, ok.note.as_str()), (2, ""));
        let d: DispatchBody = serde_json::from_str(
            r#"{"expected_version": 3, "department": "roads", "deadline_ms": 1790000000000}"#,
        )
        .unwrap();
        assert_eq!(
            (d.department.as_str(), d.deadline_ms),
            ("roads", Some(1_790_000_000_000))
        );
        let r: Result<DispatchBody, _> = serde_json::from_str(r#"{"dept": "roads"}"#);
        assert!(r.unwrap_err().to_string().contains("dept"));
        let note: ActionBody = serde_json::from_str(r#"{"note": "crew on site"}"#).unwrap();
        assert_eq!(
            (note.expected_version, note.note.as_str()),
            (0, "crew on site")
        );
    }
}
