//! The reporters against a minimal in-test `IncidentService` (a stand-in for the daemon):
//! they wait for it to come up, send the bearer token and unique keys, and count rejected
//! calls without stopping.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use gridsight_proto::v1::{
    incident_service_server::{IncidentService, IncidentServiceServer},
    GetIncidentRequest, Incident, ListIncidentsRequest, ListIncidentsResponse,
    ReportIncidentRequest, ReportIncidentResponse,
};
use gridsight_sim::{broker::free_port, run_reporters_with, ReporterConfig};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

const TOKEN: &str = "reporter-token-0123456789";

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<ReportIncidentRequest>>>);

#[tonic::async_trait]
impl IncidentService for Recorder {
    async fn report(
        &self,
        req: Request<ReportIncidentRequest>,
    ) -> Result<Response<ReportIncidentResponse>, Status> {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {TOKEN}")) {
            return Err(Status::unauthenticated("bad token"));
        }
        let r = req.into_inner();
        let incident = Incident {
            id: format!("inc-{}", r.idempotency_key),
            idempotency_key: r.idempotency_key.clone(),
            ..Default::default()
        };
        self.0.lock().expect("lock").push(r);
        Ok(Response::new(ReportIncidentResponse {
            incident: Some(incident),
            duplicate: false,
        }))
    }

    async fn get(&self, _: Request<GetIncidentRequest>) -> Result<Response<Incident>, Status> {
        Err(Status::unimplemented("get"))
    }

    async fn list(
        &self,
        _: Request<ListIncidentsRequest>,
    ) -> Result<Response<ListIncidentsResponse>, Status> {
        Err(Status::unimplemented("list"))
    }

    async fn transition(
        &self,
        _: Request<gridsight_proto::v1::TransitionIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        Err(Status::unimplemented("transition"))
    }
}

fn config(port: u16, token: &str, n: u64) -> ReporterConfig {
    let grids = vec!["town-01-c01".to_string(), "town-01-c02".to_string()];
    let mut cfg = ReporterConfig::new(format!("http://127.0.0.1:{port}"), token, grids);
    cfg.rate_per_sec = 100.0;
    cfg.max_reports = Some(n);
    cfg
}

#[tokio::test]
async fn reporters_wait_for_the_server_then_report_with_token_and_unique_keys() {
    let port = free_port().expect("port");
    let cancel = CancellationToken::new();
    // The reporters start before the server exists: they must retry, not fail.
    let run = tokio::spawn(run_reporters_with(config(port, TOKEN, 30), cancel.clone()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !run.is_finished(),
        "reporters gave up while the server was down"
    );

    let recorder = Recorder::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IncidentServiceServer::new(recorder.clone()))
            .serve_with_shutdown(
                SocketAddr::from(([127, 0, 0, 1], port)),
                cancel.clone().cancelled_owned(),
            ),
    );
    let stats = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("reporters finish")
        .expect("join")
        .expect("run");
    assert_eq!(
        (stats.sent, stats.ok, stats.failed),
        (30, 30, 0),
        "{stats:?}"
    );

    let got = recorder.0.lock().expect("lock").clone();
    assert_eq!(got.len(), 30);
    let keys: HashSet<&str> = got.iter().map(|r| r.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), 30, "idempotency keys are unique");
    for r in &got {
        assert!(r.grid_id.starts_with("town-01-c0"));
        assert!(r.reporter_id.starts_with("rep-"));
        assert!(r.location.is_some() && !r.item_code.is_empty() && !r.description.is_empty());
    }

    // A wrong token: every call is rejected, counted, and the run still completes.
    let stats = tokio::time::timeout(
        Duration::from_secs(20),
        run_reporters_with(
            config(port, "wrong-token-0123456789", 5),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("finishes")
    .expect("run");
    assert_eq!((stats.sent, stats.ok, stats.failed), (5, 0, 5), "{stats:?}");

    cancel.cancel();
    server.await.expect("server task").expect("server");
}
