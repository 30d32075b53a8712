//! End to end: silences and alerts out to MQTT, with the real `gridsight` binary, a real
//! Mosquitto, an MQTT subscriber on `gridsight/alerts/#` and tonic clients. Asserts on
//! what a subscriber of either channel and an operator see.

mod common;

use std::time::Duration;

use common::*;
use gridsight_proto::{millis_from_ts, v1 as pb};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;
use tonic::transport::Channel;

const T: Duration = Duration::from_secs(10);

/// An MQTT subscriber on `gridsight/alerts/#`: every message, its topic and its JSON.
struct AlertFeed {
    rx: mpsc::UnboundedReceiver<(String, Value)>,
    task: tokio::task::JoinHandle<()>,
}

impl AlertFeed {
    /// Subscribes and waits for the broker's SUBACK, so nothing published after is missed.
    async fn start(port: u16) -> Self {
        let opts = MqttOptions::new(format!("alert-feed-{}", free_port()), "127.0.0.1", port);
        let (client, mut el) = AsyncClient::new(opts, 64);
        client
            .subscribe("gridsight/alerts/#", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _client = client;
            let mut ready = Some(ready_tx);
            while let Ok(ev) = el.poll().await {
                match ev {
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let json = serde_json::from_slice(&p.payload).unwrap_or_else(|e| {
                            panic!("not JSON on {}: {e}: {:?}", p.topic, p.payload)
                        });
                        let _ = tx.send((p.topic.clone(), json));
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(T, ready_rx)
            .await
            .expect("SUBACK in time")
            .expect("subscribed");
        AlertFeed { rx, task }
    }

    /// The next message.
    async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(T, self.rx.recv())
            .await
            .expect("an alert on MQTT in time")
            .expect("feed open")
    }
}

impl Drop for AlertFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn silences(d: &Daemon) -> pb::silence_service_client::SilenceServiceClient<Channel> {
    pb::silence_service_client::SilenceServiceClient::new(d.channel().await)
}

fn silence_for(grid: &str) -> pb::CreateSilenceRequest {
    pb::CreateSilenceRequest {
        matcher: Some(pb::SilenceMatcher {
            grid_id: grid.into(),
            ..Default::default()
        }),
        starts_at: None,
        duration_secs: 3600,
        comment: "sensor maintenance in community A1".into(),
    }
}

/// The alert holding a reading of `sensor`, once there is one.
async fn alert_of(d: &Daemon, sensor: &str) -> Option<pb::Alert> {
    let all = d
        .alerts()
        .await
        .list(req(pb::ListAlertsRequest::default(), VIEWER))
        .await
        .ok()?
        .into_inner()
        .alerts;
    all.into_iter().find(|a| sensors_of(a) == [sensor])
}

async fn alarm(broker: u16, grid: &str, kind: &str, sensor: &str) {
    publish_all(
        broker,
        vec![(topic(grid, kind, sensor), payload(now_ms(), "alarm", 1.0))],
    )
    .await;
}

async fn list_silences(d: &Daemon, include_expired: bool) -> Vec<pb::Silence> {
    silences(d)
        .await
        .list(req(pb::ListSilencesRequest { include_expired }, VIEWER))
        .await
        .expect("list silences")
        .into_inner()
        .silences
}

/// A fresh subscription that leaves muted alerts out.
async fn subscribe_unmuted(d: &Daemon) -> tonic::Streaming<pb::SubscribeAlertsResponse> {
    d.alerts()
        .await
        .subscribe(req(
            pb::SubscribeAlertsRequest {
                exclude_muted: true,
                ..Default::default()
            },
            VIEWER,
        ))
        .await
        .expect("subscribe")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_goes_out_on_mqtt_as_json_on_its_grid_and_severity() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(
        dir.path(),
        &DaemonOpts::new(Some(broker.port)),
    ))
    .await;
    let mut feed = AlertFeed::start(broker.port).await;
    alarm(broker.port, "a-1", "smoke", "smk-1").await;
    let (topic, msg) = feed.next().await;
    let alert = wait_for("the alert", T, || alert_of(&d, "smk-1")).await;
    assert_eq!(topic, "gridsight/alerts/a-1/major");
    assert_eq!(msg["id"], alert.id.as_str());
    assert_eq!(msg["kind"], "opened");
    assert_eq!(msg["severity"], "major");
    assert_eq!(msg["status"], "open");
    assert_eq!(msg["grid_id"], "a-1");
    assert_eq!(msg["dedup_key"], "sensor/smk-1/smoke");
    assert_eq!(msg["title"], alert.title.as_str());
    assert_eq!(
        (msg["seq"].as_u64(), msg["version"].as_u64()),
        (Some(alert.seq), Some(1))
    );
    assert_eq!(msg["count"], 1);
    let first_seen = msg["first_seen"].as_str().expect("first_seen");
    let parsed = humantime::parse_rfc3339(first_seen).expect("RFC 3339");
    let ms = parsed
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(Some(ms), alert.first_seen.as_ref().map(millis_from_ts));
    for list in ["camera_ids", "snapshot_urls", "incident_ids"] {
        assert!(msg[list].is_array(), "{list} in {msg}");
    }
    assert_eq!(msg["escalation_level"], 0);
    assert_eq!(msg["parent_id"], "");

    let acked = d
        .alerts()
        .await
        .acknowledge(req(
            pb::AcknowledgeAlertRequest {
                id: alert.id.clone(),
                expected_version: 1,
                note: "on it".into(),
            },
            OPERATOR,
        ))
        .await
        .expect("acknowledge")
        .into_inner();
    let (topic, msg) = feed.next().await;
    assert_eq!(topic, "gridsight/alerts/a-1/major");
    assert_eq!(msg["kind"], "acknowledged");
    assert_eq!(msg["status"], "acknowledged");
    assert_eq!(msg["seq"].as_u64(), Some(acked.seq));
    let d = &d;
    wait_for("published count", T, || async move {
        (d.metric("gridsight_mqtt_alerts_published_total") >= 2.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_mutes_its_grid_until_expired_and_survives_a_restart() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &DaemonOpts::new(Some(broker.port)));
    let mut d = Daemon::start(&cfg).await;
    let mut feed = AlertFeed::start(broker.port).await;
    let sil = silences(&d)
        .await
        .create(req(silence_for("a-1"), OPERATOR))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(sil.id, "sil-1");
    assert_eq!(sil.created_by, "desk-1");
    assert!(sil.ends_at.is_some() && sil.expired_at.is_none());
    let mut unmuted = subscribe_unmuted(&d).await;
    // Past the snapshot, so the alarms below show as live changes.
    read_snapshot(&mut unmuted, T).await;

    // Silenced: recorded and listed with `silenced_by`, but not on MQTT nor on the stream.
    alarm(broker.port, "a-1", "smoke", "smk-1").await;
    let muted = wait_for("the silenced alert", T, || alert_of(&d, "smk-1")).await;
    assert_eq!(muted.silenced_by, sil.id);
    alarm(broker.port, "b-1", "gas", "gas-1").await;
    let (topic, msg) = feed.next().await;
    assert_eq!(
        topic, "gridsight/alerts/b-1/major",
        "the muted alert came first: {msg}"
    );
    assert!(
        msg["seq"].as_u64() > Some(muted.seq),
        "published in seq order"
    );
    let seen = read_until(&mut unmuted, T, |c| c.kind == pb::ChangeKind::Opened as i32).await;
    assert!(
        seen.iter()
            .all(|c| c.alert.as_ref().is_some_and(|a| a.grid_id == "b-1")),
        "exclude_muted still streamed the muted alert: {seen:#?}"
    );

    // Restart: the silence is still listed and still mutes.
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0), "{}", d.log());
    d = Daemon::start(&cfg).await;
    let listed = list_silences(&d, false).await;
    assert_eq!(listed, vec![sil.clone()]);
    alarm(broker.port, "a-1", "smoke", "smk-2").await;
    let again = wait_for("muted after restart", T, || alert_of(&d, "smk-2")).await;
    assert_eq!(again.silenced_by, sil.id);
    let mut fresh = subscribe_unmuted(&d).await;
    let (snapshot, _) = read_snapshot(&mut fresh, T).await;
    let grids: Vec<_> = snapshot.iter().map(|a| a.grid_id.as_str()).collect();
    assert_eq!(grids, vec!["b-1"], "the snapshot leaves muted alerts out");

    // Expire: attributed, listed only with include_expired, and alarms go out again.
    let expired = silences(&d)
        .await
        .expire(req(
            pb::ExpireSilenceRequest { id: sil.id.clone() },
            OPERATOR,
        ))
        .await
        .expect("expire")
        .into_inner();
    assert_eq!(expired.expired_by, "desk-1");
    assert!(expired.expired_at.is_some());
    assert!(list_silences(&d, false).await.is_empty());
    assert_eq!(list_silences(&d, true).await, vec![expired.clone()]);
    let twice = silences(&d)
        .await
        .expire(req(
            pb::ExpireSilenceRequest { id: sil.id.clone() },
            OPERATOR,
        ))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition, "{twice:?}");
    let unknown = silences(&d)
        .await
        .expire(req(
            pb::ExpireSilenceRequest {
                id: "sil-99".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    alarm(broker.port, "a-1", "smoke", "smk-3").await;
    let (topic, msg) = feed.next().await;
    assert_eq!(topic, "gridsight/alerts/a-1/major");
    let loud = wait_for("alert after expiry", T, || alert_of(&d, "smk-3")).await;
    assert_eq!(msg["id"], loud.id.as_str());
    assert!(loud.silenced_by.is_empty());

    let (code, body) = http_get(d.http, "/api/silences?include_expired=true", Some(VIEWER));
    assert_eq!(code, 200, "{body}");
    let json: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["silences"][0]["id"], "sil-1");
    assert_eq!(json["silences"][0]["expired_by"], "desk-1");
    assert_eq!(json["silences"][0]["matcher"]["grid_id"], "a-1");
    assert_eq!(json["silences"][0]["active"], false);
    assert_eq!(d.metric("gridsight_silences_expired_total"), 1.0);
    assert_eq!(d.metric("gridsight_silences_active"), 0.0);
    let log = d.log();
    let audit = log
        .lines()
        .find(|l| l.contains("audit") && l.contains("silence.expire"))
        .unwrap_or_else(|| panic!("no audit line for the expiry:\n{log}"));
    assert!(audit.contains("desk-1") && audit.contains("sil-1") && audit.contains("a-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_requests_are_checked_and_need_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(dir.path(), &DaemonOpts::new(None))).await;
    let mut c = silences(&d).await;
    let code_of = |r: Result<tonic::Response<pb::Silence>, tonic::Status>| {
        r.map(|_| tonic::Code::Ok).unwrap_or_else(|e| e.code())
    };
    let denied = c.create(req(silence_for("a-1"), VIEWER)).await;
    assert_eq!(code_of(denied), tonic::Code::PermissionDenied);
    let denied = c
        .list(req(pb::ListSilencesRequest::default(), REPORTER))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let anonymous = c.create(req(silence_for("a-1"), "")).await;
    assert_eq!(code_of(anonymous), tonic::Code::Unauthenticated);

    let cases = [
        (
            pb::CreateSilenceRequest {
                matcher: None,
                ..silence_for("a-1")
            },
            "matcher: set at least one of",
        ),
        (silence_for(""), "matcher: set at least one of"),
        (silence_for("nowhere"), "matcher.grid_id: unknown grid"),
        (
            pb::CreateSilenceRequest {
                duration_secs: 0,
                ..silence_for("a-1")
            },
            "duration_secs:",
        ),
        (
            pb::CreateSilenceRequest {
                duration_secs: 604_801,
                ..silence_for("a-1")
            },
            "duration_secs:",
        ),
        (
            pb::CreateSilenceRequest {
                comment: String::new(),
                ..silence_for("a-1")
            },
            "comment:",
        ),
    ];
    for (r, start) in cases {
        let e = c.create(req(r, OPERATOR)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().starts_with(start),
            "{:?} vs {start}",
            e.message()
        );
    }
    assert!(
        list_silences(&d, true).await.is_empty(),
        "nothing refused was kept"
    );
    let made = c
        .create(req(silence_for("town-b"), INTEGRATOR))
        .await
        .expect("an integrator may")
        .into_inner();
    assert_eq!(made.created_by, "city-brain");
    assert_eq!(d.metric("gridsight_silences_created_total"), 1.0);
    assert_eq!(d.metric("gridsight_silences_active"), 1.0);
}
