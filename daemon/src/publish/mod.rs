//! What the daemon publishes to the MQTT broker for other systems: its own availability
//! (a retained `gridsight/status`, `online`, with a last will `offline`), each camera's
//! status as a retained message on `gridsight/cameras/{camera}/status`, so a subscriber that
//! connects later still sees every camera's current state, and alert changes ([`alerts`],
//! on a client of their own).
//!
//! Owns one MQTT client (`{client_id}-pub`, separate from the ingest session). Invariants:
//! after every (re)connect the availability and every camera's current status are
//! published again (the broker may have restarted without them); camera events come from
//! the live broadcast and a lag only triggers a full republish, so the retained state
//! always ends up right. The client's queue is bounded; when the broker is away, publishes
//! wait (this task only: nothing upstream waits on it).

pub mod alerts;

use std::{sync::Arc, time::Duration};

use gridsight_proto::v1 as pb;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::{
    config::MqttConfig,
    sources::rtsp::{Registry, Status},
};

/// The availability topic.
pub const STATUS_TOPIC: &str = "gridsight/status";

/// The retained status topic of `camera`.
pub fn camera_topic(camera: &str) -> String {
    format!("gridsight/cameras/{camera}/status")
}

/// The retained status payload of a camera entry.
fn camera_payload(e: &crate::sources::rtsp::CameraEntry) -> Vec<u8> {
    let live = e.live();
    let status = match live.status {
        Status::Connecting => "connecting",
        Status::Online => "online",
        Status::Degraded => "degraded",
        Status::Offline => "offline",
    };
    serde_json::json!({
        "camera_id": e.cfg.id,
        "status": status,
        "frozen": live.frozen,
        "since_ms": live.status_since_ms,
        "grid_ids": e.cfg.grids,
        "last_frame_ms": live.last_frame.map(|(_, ms)| ms),
    })
    .to_string()
    .into_bytes()
}

/// Options of a publishing client `{client_id}-{suffix}` on the `[mqtt]` broker (over TLS
/// when `tls` is given).
fn options(cfg: &MqttConfig, suffix: &str, tls: Option<&crate::tls::MqttTls>) -> MqttOptions {
    let mut opts = MqttOptions::new(format!("{}-{suffix}", cfg.client_id), &cfg.host, cfg.port);
    if let Some(tls) = tls {
        opts.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls.config.clone()),
        ));
    }
    opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)));
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        opts.set_credentials(u, p);
    }
    opts
}

/// Runs the publisher until `cancel`; on the way out, publishes `offline` itself.
pub async fn run(
    cfg: MqttConfig,
    cameras: Registry,
    mut events: broadcast::Receiver<Arc<pb::CameraEvent>>,
    tls: Option<crate::tls::MqttTls>,
    cancel: CancellationToken,
) {
    let mut opts = options(&cfg, "pub", tls.as_ref());
    opts.set_last_will(LastWill::new(
        STATUS_TOPIC,
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let republish = |client: AsyncClient, cameras: Registry| async move {
        let _ = client
            .publish(STATUS_TOPIC, QoS::AtLeastOnce, true, "online")
            .await;
        let entries: Vec<_> = cameras.iter().map(|e| e.value().clone()).collect();
        for e in entries {
            let payload = camera_payload(&e);
            let _ = client
                .publish(camera_topic(&e.cfg.id), QoS::AtLeastOnce, true, payload)
                .await;
        }
    };
    let mut backoff = Duration::from_millis(cfg.reconnect_min_ms.max(1));
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(cfg.reconnect_min_ms.max(1));
                    tracing::info!("MQTT publisher connected");
                    tokio::spawn(republish(client.clone(), cameras.clone()));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "MQTT publisher disconnected; retrying");
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(cfg.reconnect_max_ms.max(1)));
                }
            },
            ev = events.recv() => match ev {
                Ok(e) => {
                    use pb::CameraEventKind as K;
                    if matches!(K::try_from(e.kind), Ok(K::Activity)) {
                        continue;
                    }
                    // The registry already holds the new status (the monitor set it first).
                    if let Some(entry) = cameras.get(&e.camera_id).map(|x| x.value().clone()) {
                        let sent = client.try_publish(
                            camera_topic(&e.camera_id),
                            QoS::AtLeastOnce,
                            true,
                            camera_payload(&entry),
                        );
                        // Queue full (broker away): publish the whole state once it drains.
                        if sent.is_err() {
                            tokio::spawn(republish(client.clone(), cameras.clone()));
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    tokio::spawn(republish(client.clone(), cameras.clone()));
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
    // A clean goodbye: `offline`, retained, then disconnect (the will is for crashes).
    let _ = client.try_publish(STATUS_TOPIC, QoS::AtLeastOnce, true, "offline");
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}
