//! `GET /ws`: the alert stream over a WebSocket, for the dashboard and for integrators
//! without gRPC. The same subscription as gRPC `AlertService.Subscribe`
//! ([`AlertApi::open`]): a snapshot of open alerts (or, with `resume_after`, every change
//! after that seq), then live changes, camera events and heartbeats, gap-free.
//!
//! Query: `token` (viewer or above; browsers cannot set headers on a WebSocket, so the
//! token may come here as on the page), `resume_after=SEQ`, `grid=a,b` (those grids and
//! beneath), `min_severity=MAJOR`, `exclude_muted=true`. A bad token is 401/403 and a bad
//! parameter 400 naming it, before the upgrade. After it, text frames of JSON
//! ([`crate::api::json::subscribe_response`]):
//! - `{"type":"change","seq","kind","alert"}` (`kind` `SNAPSHOT` for the snapshot);
//! - `{"type":"snapshot_end","cursor","open_alerts"}`;
//! - `{"type":"camera","camera"}`, live only;
//! - `{"type":"heartbeat","last_seq","server_time_ms"}`;
//! - `{"type":"error","code","message"}`, then the socket closes: code 1012 when the daemon
//!   stops (reconnect and resume after the last seq seen), 4416 when `resume_after` is
//!   outside the change log (subscribe afresh, without it), 4408 when the client read
//!   nothing for `api.limits.subscriber_stall_secs` and was cut off (reconnect and resume
//!   after the last seq seen), 1011 otherwise.
//!
//! Frames from the client are read only to notice a close; pings are answered. A client
//! that takes no frame for [`DEAD_AFTER`] (or twice the stall time, if longer) has its
//! connection dropped: its subscription was cut off long before, and a client that reads
//! again before then gets the error frame and close 4408 after what was sent.

use axum::{
    extract::{
        ws::{
            rejection::WebSocketUpgradeRejection, CloseFrame, Message, WebSocket, WebSocketUpgrade,
        },
        Query, State,
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use gridsight_proto::v1 as pb;
use serde::Deserialize;
use tonic::Code;

use super::{
    grpc::{subscription::Msg, ApiError, Subscription},
    http::{HttpState, Reader},
    json,
};

/// Close code: the resume cursor is outside the change log.
pub const CLOSE_OUT_OF_RANGE: u16 = 4416;
/// Close code: the daemon is stopping (1012, "service restart").
pub const CLOSE_RESTART: u16 = 1012;
/// Close code: any other end of the stream.
pub const CLOSE_ERROR: u16 = 1011;
/// Close code: the client read nothing for the stall time and was cut off.
pub const CLOSE_STALLED: u16 = 4408;
/// A frame not taken by the client for this long (or twice the stall time, if longer)
/// drops its connection.
pub const DEAD_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// The query of `/ws` (its `token` is read by [`Reader`]). Numbers and flags are read as
/// text, so that a wrong one is refused naming its parameter.
#[derive(Deserialize, Default)]
pub(crate) struct WsQuery {
    resume_after: Option<String>,
    grid: Option<String>,
    min_severity: Option<String>,
    exclude_muted: Option<String>,
}

/// The subscription a query asks for, or the parameter that is wrong and why.
pub(crate) fn request(q: &WsQuery) -> Result<pb::SubscribeAlertsRequest, (String, String)> {
    let bad = |p: &str, m: String| (p.to_string(), m);
    let resume_after_seq = match q.resume_after.as_deref() {
        None | Some("") => 0,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| bad("resume_after", format!("`{v}` is not a seq")))?,
    };
    let min_severity = match q.min_severity.as_deref() {
        None | Some("") => 0,
        Some(v) => pb::Severity::from_str_name(&v.to_ascii_uppercase())
            .filter(|s| *s != pb::Severity::Unspecified)
            .ok_or_else(|| {
                bad(
                    "min_severity",
                    format!("`{v}` is not INFO, WARNING, MINOR, MAJOR or CRITICAL"),
                )
            })? as i32,
    };
    let exclude_muted = match q.exclude_muted.as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(v) => return Err(bad("exclude_muted", format!("`{v}` is not true or false"))),
    };
    let grid_ids = q
        .grid
        .as_deref()
        .map(|g| {
            g.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(pb::SubscribeAlertsRequest {
        grid_ids,
        min_severity,
        resume_after_seq,
        exclude_muted,
    })
}

/// The handler.
pub(super) async fn ws(
    State(s): State<HttpState>,
    Reader(who): Reader,
    Query(q): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let req = match request(&q) {
        Ok(r) => r,
        Err((param, message)) => {
            return (StatusCode::BAD_REQUEST, format!("{param}: {message}\n")).into_response()
        }
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    // Opened before the upgrade, so that a wrong grid is a 400 the client can read; a
    // cursor out of range is told on the socket, where a browser can read it.
    let opened = match s.alerts.open(req, &who) {
        Ok(rx) => Ok(rx),
        Err(e @ ApiError::OutOfRange(_)) => Err(e.to_string()),
        Err(e @ ApiError::InvalidArgument { .. }) => {
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
        Err(ApiError::Limited(e)) => return super::limits::too_many(&e),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    let tasks = s.alerts.tasks.clone();
    // The page sends nothing but pings and a close: a larger message ends the socket.
    let limits = s.auth.limits.config();
    let max = limits.max_ws_message_bytes;
    let dead_after =
        DEAD_AFTER.max(std::time::Duration::from_secs(limits.subscriber_stall_secs) * 2);
    // A small read buffer: the socket is polled for a close each time its queue empties,
    // and every poll zeroes the buffer's free space (128 KiB by default, 1 % of the
    // daemon's CPU with 50 busy walls). Larger frames (up to `max`) still fit: it grows.
    let upgrade = upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER);
    upgrade.on_upgrade(move |socket| async move {
        // Tracked, so that shutdown waits for the close frame to go out.
        tasks.track_future(serve(socket, opened, dead_after)).await;
    })
}

async fn serve(
    mut socket: WebSocket,
    opened: Result<Subscription, String>,
    dead_after: std::time::Duration,
) {
    let mut rx = match opened {
        Ok(rx) => rx,
        Err(message) => {
            let _ = close(&mut socket, Code::OutOfRange, &message).await;
            return;
        }
    };
    loop {
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(Ok(m)) => {
                    let sent = tokio::time::timeout(dead_after, send_batch(&mut socket, m, &mut rx)).await;
                    match sent {
                        Ok(Ok(None)) => {}
                        Ok(Ok(Some(status))) => {
                            let _ = close(&mut socket, status.code(), status.message()).await;
                            return;
                        }
                        // Gone, or reading nothing for long: its subscription was cut off
                        // meanwhile; the connection goes too.
                        _ => return,
                    }
                }
                Some(Err(status)) => {
                    let _ = close(&mut socket, status.code(), status.message()).await;
                    return;
                }
                None => {
                    let _ = close(&mut socket, Code::Unavailable, "the subscription ended").await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The read buffer of a socket (the client sends pings and a close).
const READ_BUFFER: usize = 4096;

/// Frames written before one flush (one socket write for what is queued, not one each).
const BATCH: usize = 64;

/// The frame of one message.
fn frame(m: Msg) -> Message {
    Message::Text(match m {
        // Encoded once for every WebSocket that takes the change.
        Msg::Shared(c) => c.frame(),
        Msg::One(r) => json::subscribe_frame(&r).into(),
    })
}

/// Sends `first` and whatever else is queued already (up to [`BATCH`]) with one flush, so
/// that a busy wall costs one write per batch, not per change; a message never waits for
/// another. Returns the status that ended the subscription if one came in the batch.
async fn send_batch(
    socket: &mut WebSocket,
    first: Msg,
    rx: &mut Subscription,
) -> Result<Option<tonic::Status>, axum::Error> {
    use futures::SinkExt as _;
    socket.feed(frame(first)).await?;
    let mut ended = None;
    for _ in 1..BATCH {
        match rx.try_recv() {
            Some(Ok(m)) => socket.feed(frame(m)).await?,
            Some(Err(status)) => {
                ended = Some(status);
                break;
            }
            None => break,
        }
    }
    socket.flush().await?;
    Ok(ended)
}

/// Sends the error frame, then closes with the code that tells the client what to do.
async fn close(socket: &mut WebSocket, code: Code, message: &str) -> Result<(), axum::Error> {
    let name = match code {
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unavailable => "UNAVAILABLE",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        _ => "INTERNAL",
    };
    let frame = serde_json::json!({ "type": "error", "code": name, "message": message });
    socket.send(Message::Text(frame.to_string().into())).await?;
    let close_code = match code {
        Code::OutOfRange => CLOSE_OUT_OF_RANGE,
        Code::Unavailable => CLOSE_RESTART,
        Code::ResourceExhausted => CLOSE_STALLED,
        _ => CLOSE_ERROR,
    };
    // A close reason is at most 123 bytes: the message went in the frame above.
    socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code,
            reason: name.into(),
        })))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> WsQuery {
        let mut q = WsQuery::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "resume_after" => q.resume_after = v,
                "grid" => q.grid = v,
                "min_severity" => q.min_severity = v,
                "exclude_muted" => q.exclude_muted = v,
                _ => unreachable!("test query key {k}"),
            }
        }
        q
    }

    #[test]
    fn a_query_becomes_the_subscription_it_asks_for() {
        let r = request(&q(&[
            ("resume_after", "42"),
            ("grid", "town-1,c-2"),
            ("min_severity", "major"),
            ("exclude_muted", "true"),
        ]))
        .map_err(|e| e.0)
        .unwrap();
        assert_eq!(r.resume_after_seq, 42);
        assert_eq!(r.grid_ids, vec!["town-1".to_string(), "c-2".to_string()]);
        assert_eq!(r.min_severity, pb::Severity::Major as i32);
        assert!(r.exclude_muted);
        let empty = request(&WsQuery::default()).map_err(|e| e.0).unwrap();
        assert_eq!(empty, pb::SubscribeAlertsRequest::default());
    }

    #[test]
    fn a_wrong_parameter_is_named() {
        for (key, value) in [
            ("resume_after", "-1"),
            ("resume_after", "soon"),
            ("min_severity", "LOUD"),
            ("min_severity", "SEVERITY_UNSPECIFIED"),
            ("exclude_muted", "yes"),
        ] {
            let err = request(&q(&[(key, value)])).unwrap_err();
            assert_eq!(err.0, key, "{key}={value}");
            assert!(err.1.contains(value), "{err:?}");
        }
    }
}
