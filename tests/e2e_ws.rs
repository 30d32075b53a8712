//! End to end: the alert stream over a WebSocket (`/ws`), as the dashboard and integrators
//! without gRPC use it. The real binary, a real Mosquitto, a real WebSocket client
//! (tokio-tungstenite) and a real gRPC client for the operator's action.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use gridsight_proto::v1 as pb;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{self, protocol::frame::coding::CloseCode, Message},
    MaybeTlsStream, WebSocketStream,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const T: Duration = Duration::from_secs(10);

async fn connect(d: &Daemon, query: &str) -> Result<Ws, tungstenite::Error> {
    let url = format!("ws://127.0.0.1:{}/ws?{query}", d.http);
    connect_async(url).await.map(|(ws, _)| ws)
}

/// The next JSON frame (heartbeats included); panics on a close or after `T`.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(T, ws.next())
            .await
            .expect("a frame within the timeout")
            .expect("the socket is open")
            .expect("a frame, not an error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Frames up to the first `type` = `want` that `pred` accepts (heartbeats skipped); returns
/// it and the changes before it.
async fn until(ws: &mut Ws, want: &str, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let v = next(ws).await;
        if v["type"] == want && pred(&v) {
            return (v, before);
        }
        if v["type"] == "change" {
            before.push(v);
        }
    }
}

/// The close frame after the error frame: `(error code, close code)`.
async fn error_and_close(ws: &mut Ws) -> (String, CloseCode) {
    let (err, _) = until(ws, "error", |_| true).await;
    loop {
        match tokio::time::timeout(T, ws.next()).await.expect("a close") {
            Some(Ok(Message::Close(Some(f)))) => {
                return (err["code"].as_str().unwrap_or("").to_string(), f.code)
            }
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// `POST path` with a JSON body over plain HTTP/1.0; the status code and body.
async fn alarm(broker: u16, grid: &str, sensor: &str) {
    publish_all(
        broker,
        vec![(
            topic(grid, "smoke", sensor),
            payload(now_ms(), "alarm", 0.8),
        )],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_streams_alerts_resumes_without_a_gap_and_says_why_it_closes() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&write_config(
        dir.path(),
        &DaemonOpts::new(Some(broker.port)),
    ))
    .await;

    // Refused before the upgrade, with what a client can act on.
    let e = connect(&d, "token=not-a-token").await.unwrap_err();
    assert!(
        matches!(&e, tungstenite::Error::Http(r) if r.status() == 401),
        "{e:?}"
    );
    let e = connect(&d, &format!("token={VIEWER}&min_severity=LOUD"))
        .await
        .unwrap_err();
    let tungstenite::Error::Http(r) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(r.status(), 400);
    let body = String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).to_string();
    assert!(body.starts_with("min_severity:"), "{body}");
    let e = connect(&d, &format!("token={VIEWER}&grid=nowhere"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, tungstenite::Error::Http(r) if r.status() == 400),
        "{e:?}"
    );

    // A fresh subscription: the (empty) snapshot, then a live alarm.
    let mut ws = connect(&d, &format!("token={VIEWER}"))
        .await
        .expect("connect");
    let (end, snapshot) = until(&mut ws, "snapshot_end", |_| true).await;
    assert!(snapshot.is_empty(), "{snapshot:?}");
    assert_eq!(end["open_alerts"], 0);
    alarm(broker.port, "a-1", "smk-1").await;
    let (opened, _) = until(&mut ws, "change", |v| v["kind"] == "OPENED").await;
    let a = &opened["alert"];
    assert_eq!(a["grid_id"], "a-1");
    assert_eq!(a["severity"], "MAJOR");
    assert_eq!(a["status"], "OPEN");
    assert_eq!(a["evidence"][0]["source"], "sensor");
    assert_eq!(a["evidence"][0]["sensor_id"], "smk-1");
    assert_eq!(a["evidence"][0]["state"], "ALARM");
    let first_id = a["id"].as_str().unwrap().to_string();
    let version = a["version"].as_u64().unwrap();

    // The page's actions refuse bad requests with what is wrong, and change nothing.
    let path = |action: &str| format!("/api/alerts/{first_id}/{action}");
    let ok_body = format!(r#"{{"expected_version": {version}}}"#);
    for (token, action, body, code, says) in [
        (VIEWER, "acknowledge", ok_body.as_str(), 403, "may not"),
        ("not-a-token", "acknowledge", ok_body.as_str(), 401, ""),
        (OPERATOR, "explode", ok_body.as_str(), 404, "explode"),
        (OPERATOR, "acknowledge", "{not json", 400, ""),
        (
            OPERATOR,
            "acknowledge",
            r#"{"expected_version": 1, "nots": "x"}"#,
            400,
            "nots",
        ),
        (
            OPERATOR,
            "acknowledge",
            r#"{"expected_version": 99}"#,
            409,
            "version",
        ),
        (OPERATOR, "note", r#"{"note": ""}"#, 400, "text"),
    ] {
        let (got, text) = http_post(d.http, &path(action), token, body);
        assert_eq!(got, code, "{action} {body}: {text}");
        assert!(text.contains(says), "{action} {body}: {text}");
    }
    let e = http_post(d.http, "/api/alerts/ALR-999999/resolve", OPERATOR, &ok_body);
    assert_eq!(e.0, 404, "{}", e.1);

    // An operator acknowledges over gRPC: the WebSocket shows who.
    d.alerts()
        .await
        .acknowledge(req(
            pb::AcknowledgeAlertRequest {
                id: first_id.clone(),
                expected_version: version,
                note: "on it".into(),
            },
            OPERATOR,
        ))
        .await
        .expect("acknowledge");
    let (acked, _) = until(&mut ws, "change", |v| v["kind"] == "ACKNOWLEDGED").await;
    assert_eq!(acked["alert"]["id"], first_id.as_str());
    assert_eq!(acked["alert"]["acknowledged_by"], "desk-1");
    assert_eq!(acked["alert"]["status"], "ACKNOWLEDGED");
    // A note over gRPC: refused without text (naming the field), then on every stream.
    let note = |text: &str| pb::AddAlertNoteRequest {
        id: first_id.clone(),
        text: text.into(),
    };
    let mut alerts = d.alerts().await;
    let e = alerts
        .add_note(req(note("  "), OPERATOR))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("text:"), "{}", e.message());
    let e = alerts.add_note(req(note("x"), VIEWER)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    alerts
        .add_note(req(note("pump truck on its way"), OPERATOR))
        .await
        .expect("note");
    let (noted, _) = until(&mut ws, "change", |v| v["kind"] == "UPDATED").await;
    // The acknowledgement's note first, then this one, each attributed.
    let notes = &noted["alert"]["notes"];
    assert_eq!(
        (&notes[0]["by"], &notes[0]["text"]),
        (&"desk-1".into(), &"on it".into())
    );
    assert_eq!(notes[1]["by"], "desk-1");
    assert_eq!(notes[1]["text"], "pump truck on its way");
    assert_eq!(noted["alert"]["note"], "pump truck on its way");
    assert_eq!(
        noted["alert"]["status"], "ACKNOWLEDGED",
        "a note changes no status"
    );
    let last_seen = noted["seq"].as_u64().unwrap();

    // Gone for a while: an alarm in another town comes meanwhile. Resuming after the last
    // seq seen gets exactly what was missed, with no snapshot.
    ws.close(None).await.expect("close");
    drop(ws);
    alarm(broker.port, "b-1", "smk-2").await;
    wait_for("the alarm to be stored", T, || async {
        (d.metric("gridsight_alerts_opened_total") >= 2.0).then_some(())
    })
    .await;
    let mut ws = connect(&d, &format!("token={VIEWER}&resume_after={last_seen}"))
        .await
        .expect("resume");
    let first = loop {
        let v = next(&mut ws).await;
        if v["type"] != "heartbeat" {
            break v;
        }
    };
    assert_eq!(first["type"], "change", "a resume has no snapshot: {first}");
    assert_eq!(first["seq"].as_u64(), Some(last_seen + 1), "{first}");
    assert_eq!(first["kind"], "OPENED");
    assert_eq!(first["alert"]["grid_id"], "b-1");

    // A filtered stream sees only its grids.
    let mut town_a = connect(&d, &format!("token={VIEWER}&grid=town-a"))
        .await
        .expect("filtered");
    let (end, snapshot) = until(&mut town_a, "snapshot_end", |_| true).await;
    assert_eq!(end["open_alerts"], 1, "{snapshot:?}");
    assert_eq!(snapshot[0]["alert"]["id"], first_id.as_str());
    assert_eq!(snapshot[0]["kind"], "SNAPSHOT");

    // A cursor ahead of the log is told on the socket, where a browser can read it.
    let mut ahead = connect(&d, &format!("token={VIEWER}&resume_after=999999"))
        .await
        .expect("upgrade");
    let (code, close) = error_and_close(&mut ahead).await;
    assert_eq!(code, "OUT_OF_RANGE");
    assert_eq!(close, CloseCode::from(4416));

    // The daemon stops: the client is told to come back and resume (1012).
    d.send_term();
    let (code, close) = error_and_close(&mut ws).await;
    assert_eq!(code, "UNAVAILABLE");
    assert_eq!(close, CloseCode::Restart);
    let exit = d.wait_exit(Duration::from_secs(15));
    assert_eq!(exit, Some(Some(0)), "clean exit: {}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_come_on_a_quiet_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(dir.path(), &DaemonOpts::new(None))).await;
    let mut ws = connect(&d, &format!("token={VIEWER}"))
        .await
        .expect("connect");
    until(&mut ws, "snapshot_end", |_| true).await;
    let (hb, _) = until(&mut ws, "heartbeat", |_| true).await;
    assert!(hb["server_time_ms"].as_i64().unwrap() > 0, "{hb}");
    assert!(hb["last_seq"].is_u64(), "{hb}");
    // The socket stays usable from the client side too.
    ws.send(Message::Ping(vec![1, 2, 3].into()))
        .await
        .expect("ping");
    let (hb2, _) = until(&mut ws, "heartbeat", |_| true).await;
    assert!(hb2["server_time_ms"].as_i64() >= hb["server_time_ms"].as_i64());
}
