//! Alerts out to MQTT: every committed alert change, as a compact JSON document, QoS 1,
//! not retained, on `{alert_topic_prefix}/{grid_id}/{severity}` (severity in lower case).
//!
//! Owns one MQTT client (`{client_id}-alerts`) and a receiver of the store's alert bus.
//! Invariants:
//! - only committed changes are published (the bus carries nothing else), in seq order;
//! - changes of muted alerts (`silenced_by` or `inhibited_by` set) are never published;
//! - nothing upstream ever waits on this task: the bus is a broadcast, so when the task
//!   falls behind the oldest changes are skipped, counted in
//!   `gridsight_mqtt_alerts_dropped_total{reason="lagged"}` and logged once per burst;
//!   when the client's queue is full (broker away or slow) a change is dropped with
//!   `reason="queue_full"`. The gap-free channel is the gRPC `Subscribe` stream with its
//!   resume cursor; this one is for notification;
//! - the task ends when the bus closes (after the store's writer committed the last
//!   change at shutdown), sends what it holds and disconnects, within a second.

use std::{sync::Arc, time::Duration};

use gridsight_proto::v1 as pb;
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::{
    config::MqttConfig,
    correlate::silence::is_muted,
    telemetry::{Metrics, RateLimit, ReasonLabel},
};

/// Requests the client queues while the broker is slow or away.
const QUEUE: usize = 1024;

/// The document published for one alert change (the README documents it field by field).
#[derive(Debug, Serialize, PartialEq)]
pub struct AlertMessage<'a> {
    id: &'a str,
    seq: u64,
    version: u64,
    kind: String,
    severity: String,
    status: String,
    title: &'a str,
    grid_id: &'a str,
    rule_id: &'a str,
    dedup_key: &'a str,
    count: u64,
    first_seen: Option<String>,
    last_seen: Option<String>,
    camera_ids: &'a [String],
    snapshot_urls: Vec<&'a str>,
    incident_ids: &'a [String],
    escalation_level: u32,
    escalated_to: &'a str,
    parent_id: &'a str,
}

/// A proto enum's name without `prefix`, in lower case (`CHANGE_KIND_OPENED` → `opened`).
fn name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

/// `critical`, `major`... (`unspecified` for an unknown value).
pub fn severity_name(v: i32) -> String {
    pb::Severity::try_from(v)
        .map(|s| name(s.as_str_name(), "SEVERITY_"))
        .unwrap_or_else(|_| "unspecified".into())
}

impl<'a> AlertMessage<'a> {
    /// The document of `c`; `None` when it carries no alert, is a snapshot item, or the
    /// alert is muted.
    pub fn of(c: &'a pb::AlertChange) -> Option<Self> {
        let a = c.alert.as_ref()?;
        let kind = pb::ChangeKind::try_from(c.kind).ok()?;
        if is_muted(a) || matches!(kind, pb::ChangeKind::Snapshot) {
            return None;
        }
        let at = |t: &Option<prost_types::Timestamp>| t.as_ref().map(ToString::to_string);
        Some(Self {
            id: &a.id,
            seq: c.seq,
            version: a.version,
            kind: name(kind.as_str_name(), "CHANGE_KIND_"),
            severity: severity_name(a.severity),
            status: pb::AlertStatus::try_from(a.status)
                .map(|s| name(s.as_str_name(), "ALERT_STATUS_"))
                .unwrap_or_else(|_| "unspecified".into()),
            title: &a.title,
            grid_id: &a.grid_id,
            rule_id: &a.rule_id,
            dedup_key: &a.dedup_key,
            count: a.count,
            first_seen: at(&a.first_seen),
            last_seen: at(&a.last_seen),
            camera_ids: &a.camera_ids,
            snapshot_urls: a.snapshots.iter().map(|s| s.url.as_str()).collect(),
            incident_ids: &a.incident_ids,
            escalation_level: a.escalation_level,
            escalated_to: &a.escalated_to,
            parent_id: &a.parent_id,
        })
    }

    /// Its topic under `prefix`.
    pub fn topic(&self, prefix: &str) -> String {
        format!("{prefix}/{}/{}", self.grid_id, self.severity)
    }
}

/// Publishes alert changes from `bus` until it closes.
pub async fn run(
    cfg: MqttConfig,
    mut bus: broadcast::Receiver<Arc<pb::AlertChange>>,
    metrics: Arc<Metrics>,
    tls: Option<crate::tls::MqttTls>,
) {
    let mut opts = super::options(&cfg, "alerts", tls.as_ref());
    // An alert with many cameras and incidents is larger than rumqttc's 10 KiB default.
    opts.set_max_packet_size(256 * 1024, 256 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, QUEUE);
    let lag_log = RateLimit::new(Duration::from_secs(10));
    let min_backoff = Duration::from_millis(cfg.reconnect_min_ms.max(1));
    let mut backoff = min_backoff;
    // After a connection error the event loop rests for `backoff`; the bus is still read
    // meanwhile (into the client's queue), so a shutdown is never held up by the wait.
    let pause = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(pause);
    let mut paused = false;
    loop {
        tokio::select! {
            _ = &mut pause, if paused => paused = false,
            ev = eventloop.poll(), if !paused => match ev {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    metrics.mqtt_alerts_published.inc();
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = min_backoff;
                    tracing::info!("MQTT alert publisher connected");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "MQTT alert publisher disconnected; retrying");
                    pause.as_mut().reset(tokio::time::Instant::now() + backoff);
                    paused = true;
                    backoff = (backoff * 2).min(Duration::from_millis(cfg.reconnect_max_ms.max(1)));
                }
            },
            msg = bus.recv() => match msg {
                Ok(change) => publish(&client, &cfg.alert_topic_prefix, &change, &metrics),
                Err(RecvError::Lagged(n)) => {
                    metrics.mqtt_alerts_dropped.get_or_create(&ReasonLabel { reason: "lagged".into() }).inc_by(n);
                    if let Some(bursts) = lag_log.check("alerts_lagged") {
                        tracing::warn!(skipped = n, earlier_bursts_not_logged = bursts, "MQTT alert publisher fell behind; skipped alert changes (counted in gridsight_mqtt_alerts_dropped_total)");
                    }
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
    // The disconnect is queued behind what is left, so that goes out first.
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    metrics.mqtt_alerts_published.inc();
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Queues one change for the broker (never waits).
fn publish(client: &AsyncClient, prefix: &str, change: &pb::AlertChange, metrics: &Metrics) {
    let Some(msg) = AlertMessage::of(change) else {
        return;
    };
    let Ok(payload) = serde_json::to_vec(&msg) else {
        return;
    };
    if client
        .try_publish(msg.topic(prefix), QoS::AtLeastOnce, false, payload)
        .is_err()
    {
        metrics
            .mqtt_alerts_dropped
            .get_or_create(&ReasonLabel {
                reason: "queue_full".into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridsight_proto::ts_from_millis;

    fn change(kind: pb::ChangeKind) -> pb::AlertChange {
        pb::AlertChange {
            seq: 7,
            kind: kind as i32,
            alert: Some(pb::Alert {
                id: "ALR-000003".into(),
                version: 2,
                severity: pb::Severity::Critical as i32,
                status: pb::AlertStatus::Acknowledged as i32,
                title: "Smoke alarm".into(),
                grid_id: "a-1".into(),
                dedup_key: "sensor/smk-1/smoke".into(),
                count: 3,
                first_seen: Some(ts_from_millis(1_800_000_000_000)),
                last_seen: Some(ts_from_millis(1_800_000_001_500)),
                camera_ids: vec!["cam-1".into()],
                snapshots: vec![pb::SnapshotRef {
                    camera_id: "cam-1".into(),
                    url: "/snapshots/ALR-000003/cam-1.jpg".into(),
                    taken_at: None,
                }],
                incident_ids: vec!["INC-000001".into()],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_change_becomes_a_compact_document_on_its_grid_and_severity_topic() {
        let c = change(pb::ChangeKind::Acknowledged);
        let msg = AlertMessage::of(&c).unwrap();
        assert_eq!(
            msg.topic("gridsight/alerts"),
            "gridsight/alerts/a-1/critical"
        );
        let json: serde_json::Value = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["kind"], "acknowledged");
        assert_eq!(json["status"], "acknowledged");
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["first_seen"], "2027-01-15T08:00:00Z");
        assert_eq!(json["last_seen"], "2027-01-15T08:00:01.500Z");
        assert_eq!(
            json["snapshot_urls"],
            serde_json::json!(["/snapshots/ALR-000003/cam-1.jpg"])
        );
        assert_eq!(json["incident_ids"], serde_json::json!(["INC-000001"]));
        assert_eq!(json["parent_id"], "");
        assert!(!serde_json::to_string(&msg).unwrap().contains('\n'));
    }

    #[test]
    fn muted_alerts_and_snapshot_items_are_not_published() {
        let mut c = change(pb::ChangeKind::Opened);
        c.alert.as_mut().unwrap().silenced_by = "sil-1".into();
        assert_eq!(AlertMessage::of(&c), None);
        let mut c = change(pb::ChangeKind::Updated);
        c.alert.as_mut().unwrap().inhibited_by = "ALR-000001".into();
        assert_eq!(AlertMessage::of(&c), None);
        assert_eq!(AlertMessage::of(&change(pb::ChangeKind::Snapshot)), None);
        assert!(AlertMessage::of(&change(pb::ChangeKind::Escalated)).is_some());
    }
}
