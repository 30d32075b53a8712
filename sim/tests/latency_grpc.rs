//! The latency probe against a real Mosquitto and a minimal in-test `AlertService` (a
//! stand-in for the daemon) that opens one alert per alarm message it receives over MQTT.

use std::{
    net::SocketAddr,
    pin::Pin,
    time::{Duration, Instant},
};

use gridsight_proto::v1::{
    alert_service_server::{AlertService, AlertServiceServer},
    evidence, subscribe_alerts_response, AcknowledgeAlertRequest, AddAlertNoteRequest, Alert,
    AlertChange, ChangeKind, Evidence, GetAlertRequest, ListAlertsRequest, ListAlertsResponse,
    ResolveAlertRequest, SensorEvent, SnapshotEnd, SubscribeAlertsRequest, SubscribeAlertsResponse,
};
use gridsight_sim::{
    broker::{free_port, MosquittoBroker},
    load, run_latency, DemoCity, LatencyConfig,
};
use rumqttc::{AsyncClient, Event, Incoming, QoS};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

const TOKEN: &str = "latency-token-0123456789";

type Changes = Pin<Box<dyn Stream<Item = Result<SubscribeAlertsResponse, Status>> + Send>>;

struct FakeAlerts {
    mqtt_port: u16,
}

fn change(kind: ChangeKind, sensor_id: &str) -> SubscribeAlertsResponse {
    let ev = Evidence {
        time: None,
        item: Some(evidence::Item::SensorEvent(SensorEvent {
            sensor_id: sensor_id.to_string(),
            ..Default::default()
        })),
    };
    SubscribeAlertsResponse {
        event: Some(subscribe_alerts_response::Event::Change(AlertChange {
            seq: 1,
            kind: kind as i32,
            alert: Some(Alert {
                id: format!("al-{sensor_id}"),
                evidence: vec![ev],
                ..Default::default()
            }),
        })),
    }
}

#[tonic::async_trait]
impl AlertService for FakeAlerts {
    type SubscribeStream = Changes;

    async fn subscribe(
        &self,
        req: Request<SubscribeAlertsRequest>,
    ) -> Result<Response<Changes>, Status> {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {TOKEN}")) {
            return Err(Status::unauthenticated("bad token"));
        }
        // Subscribe to MQTT before answering, so nothing published after snapshot_end is missed.
        let opts = load::options("fake-daemon", "127.0.0.1", self.mqtt_port, true);
        let (sub, mut el) = AsyncClient::new(opts, 100);
        load::connack(&mut el)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        sub.subscribe("gridsight/sensors/#", QoS::AtLeastOnce)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        while !matches!(el.poll().await, Ok(Event::Incoming(Incoming::SubAck(_)))) {}

        let (tx, rx) = mpsc::channel(1000);
        tokio::spawn(async move {
            let _keep = sub;
            let end = SubscribeAlertsResponse {
                event: Some(subscribe_alerts_response::Event::SnapshotEnd(SnapshotEnd {
                    cursor: 0,
                    open_alerts: 1,
                })),
            };
            // A snapshot of one old alert, then live changes.
            let _ = tx.send(Ok(change(ChangeKind::Snapshot, "lat-old"))).await;
            let _ = tx.send(Ok(end)).await;
            let mut n = 0u64;
            while let Ok(ev) = el.poll().await {
                let Event::Incoming(Incoming::Publish(p)) = ev else {
                    continue;
                };
                let sensor = p.topic.rsplit('/').next().unwrap_or_default().to_string();
                let alarm = serde_json::from_slice::<serde_json::Value>(&p.payload)
                    .is_ok_and(|v| v["state"] == "alarm");
                if !alarm || !sensor.starts_with("lat-") {
                    continue;
                }
                n += 1;
                // Every 5th probe is folded into an existing alert instead of opening one.
                let kind = if n.is_multiple_of(5) {
                    ChangeKind::Updated
                } else {
                    ChangeKind::Opened
                };
                if tx.send(Ok(change(kind, &sensor))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get(&self, _: Request<GetAlertRequest>) -> Result<Response<Alert>, Status> {
        Err(Status::unimplemented("get"))
    }

    async fn list(
        &self,
        _: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        Err(Status::unimplemented("list"))
    }

    async fn acknowledge(
        &self,
        _: Request<AcknowledgeAlertRequest>,
    ) -> Result<Response<Alert>, Status> {
        Err(Status::unimplemented("acknowledge"))
    }

    async fn resolve(&self, _: Request<ResolveAlertRequest>) -> Result<Response<Alert>, Status> {
        Err(Status::unimplemented("resolve"))
    }

    async fn add_note(&self, _: Request<AddAlertNoteRequest>) -> Result<Response<Alert>, Status> {
        Err(Status::unimplemented("add_note"))
    }

    async fn dispatch(
        &self,
        _: Request<gridsight_proto::v1::DispatchAlertRequest>,
    ) -> Result<Response<gridsight_proto::v1::DispatchAlertResponse>, Status> {
        Err(Status::unimplemented("dispatch"))
    }
}

#[tokio::test]
async fn probes_are_matched_with_their_opened_changes() {
    let broker = MosquittoBroker::start().await.expect("mosquitto starts");
    let grpc_port = free_port().expect("port");
    let addr = SocketAddr::from(([127, 0, 0, 1], grpc_port));
    let stop = CancellationToken::new();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AlertServiceServer::new(FakeAlerts {
                mqtt_port: broker.port(),
            }))
            .serve_with_shutdown(addr, stop.clone().cancelled_owned()),
    );
    // Wait (with a deadline) until the gRPC port accepts connections.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "gRPC server did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let city = DemoCity::generate(2, 2, 2, 2);
    let cfg = LatencyConfig {
        mqtt_host: broker.host().into(),
        mqtt_port: broker.port(),
        grpc_endpoint: format!("http://{addr}"),
        token: TOKEN.into(),
        rate_per_sec: 500.0,
        duration: Duration::from_secs(1),
        alarm_every: 10,
        publishers: 2,
        settle: Duration::from_secs(5),
    };
    let rep = run_latency(&cfg, &city).await.expect("latency run");
    assert_eq!(rep.published, 500);
    assert_eq!(rep.snapshot, 1);
    assert_eq!(rep.alarms, 50);
    assert_eq!(rep.matched, 40, "{rep:?}");
    assert_eq!(rep.other_kinds, 10, "{rep:?}");
    assert!(
        rep.quantile(0.5) > Duration::ZERO && rep.quantile(1.0) < Duration::from_secs(2),
        "{rep:?}"
    );

    let mut bad = cfg.clone();
    bad.token = "wrong-token-0123456789".into();
    assert!(
        run_latency(&bad, &city).await.is_err(),
        "a rejected subscription is an error"
    );

    stop.cancel();
    server.await.expect("server task").expect("server");
}
