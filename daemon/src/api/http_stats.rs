//! `GET /api/stats`: the daily figures as JSON, for the wall's charts; `GET /api/stats/hours`:
//! events per hour of a day by source.
//!
//! Query: `from`, `to` (YYYY-MM-DD in the centre's time zone; empty = today), `grid`
//! (comma-separated grid ids, each with its descendants; empty = all), `by_grid=true`, and
//! `token` for a browser. The same figures as `StatsService.Daily` (one computation, in
//! [`crate::incidents::stats`]). A bad parameter is 400 naming it; the body is
//! `{"days": [...], "reporters": [...]}` with the proto's field names.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use gridsight_proto::v1 as pb;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{HttpState, Reader};
use crate::{domain::now_ms, incidents::StatsError};

/// The query parameters (the token is read by [`Reader`]).
#[derive(Deserialize, Default)]
pub(super) struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    grid: Option<String>,
    by_grid: Option<bool>,
}

/// The handler.
pub(super) async fn stats(
    State(s): State<HttpState>,
    _: Reader,
    Query(q): Query<StatsQuery>,
) -> Response {
    let req = pb::StatsRequest {
        grid_ids: q
            .grid
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(String::from)
            .collect(),
        from_day: q.from.unwrap_or_default(),
        to_day: q.to.unwrap_or_default(),
        by_grid: q.by_grid.unwrap_or(false),
    };
    match s.figures.daily(&req, now_ms()).await {
        Ok(r) => Json(json!({
            "days": r.days.iter().map(day_json).collect::<Vec<_>>(),
            "reporters": r.reporters.iter().map(reporter_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(StatsError::Field { field, message }) => (
            StatusCode::BAD_REQUEST,
            format!("{}: {message}\n", http_name(&field)),
        )
            .into_response(),
        Err(e @ StatsError::Store(_)) => {
            tracing::error!(error = %e, "store error in /api/stats");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

/// The query parameter a request field comes from.
fn http_name(field: &str) -> &str {
    match field {
        "from_day" => "from",
        "to_day" => "to",
        f if f.starts_with("grid_ids") => "grid",
        f => f,
    }
}

fn day_json(d: &pb::DayStats) -> Value {
    json!({
        "day": d.day, "grid_id": d.grid_id,
        "reported": d.reported, "accepted": d.accepted, "dispatched": d.dispatched,
        "resolved": d.resolved, "closed": d.closed, "discarded": d.discarded,
        "closure_rate": d.closure_rate, "handling_rate": d.handling_rate,
        "mean_secs_to_accept": d.mean_secs_to_accept,
        "mean_secs_to_dispatch": d.mean_secs_to_dispatch,
        "overdue": d.overdue, "alerts_opened": d.alerts_opened,
        "alerts_resolved": d.alerts_resolved,
        "mean_secs_to_acknowledge": d.mean_secs_to_acknowledge,
    })
}

fn reporter_json(r: &pb::ReporterStats) -> Value {
    json!({
        "reporter_id": r.reporter_id, "month": r.month, "reports": r.reports,
        "quota": r.quota, "quota_ratio": r.quota_ratio,
    })
}

/// The query of `/api/stats/hours`.
#[derive(Deserialize, Default)]
pub(super) struct HoursQuery {
    day: Option<String>,
}

/// `GET /api/stats/hours?day=YYYY-MM-DD` (empty = today): `{"day", "sources", "hours":
/// [{"hour", "sensor", "camera", "incident"}]}`, 24 local hours of what came in.
pub(super) async fn hours(
    State(s): State<HttpState>,
    _: Reader,
    Query(q): Query<HoursQuery>,
) -> Response {
    use crate::incidents::hours::SOURCES;
    match s
        .figures
        .hours(q.day.as_deref().unwrap_or(""), now_ms())
        .await
    {
        Ok((day, hours)) => {
            let hours: Vec<Value> = hours
                .iter()
                .map(|h| {
                    let mut v = json!({ "hour": h.hour });
                    for (name, n) in SOURCES.iter().zip(h.counts) {
                        v[*name] = json!(n);
                    }
                    v
                })
                .collect();
            Json(json!({ "day": day, "sources": SOURCES, "hours": hours })).into_response()
        }
        Err(StatsError::Field { field, message }) => {
            (StatusCode::BAD_REQUEST, format!("{field}: {message}\n")).into_response()
        }
        Err(e @ StatsError::Store(_)) => {
            tracing::error!(error = %e, "store error in /api/stats/hours");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}
