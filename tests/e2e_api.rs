//! End to end: tokens and roles, field validation and status codes, health, reflection,
//! HTTP auth, and `check-config`.

mod common;

use std::time::Duration;

use common::*;
use gridsight_proto::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_and_fields_get_the_right_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(dir.path(), &DaemonOpts::new(None))).await;
    let mut inc = d.incidents().await;
    let mut alerts = d.alerts().await;

    let code = |r: Result<tonic::Response<pb::ReportIncidentResponse>, tonic::Status>| {
        r.map(|_| ()).unwrap_err()
    };
    assert_eq!(
        code(inc.report(req(dispute_report("a"), "")).await).code(),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            inc.report(req(dispute_report("a"), "not-a-token-at-all"))
                .await
        )
        .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        code(inc.report(req(dispute_report("a"), VIEWER)).await).code(),
        Code::PermissionDenied
    );
    assert_eq!(
        code(inc.report(req(dispute_report("a"), OPERATOR)).await).code(),
        Code::PermissionDenied
    );
    let e = inc
        .list(req(Default::default(), REPORTER))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "a reporter may only report"
    );
    let e = alerts
        .subscribe(req(Default::default(), ""))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // Bad fields: INVALID_ARGUMENT naming the field.
    type Mutate = Box<dyn Fn(&mut pb::ReportIncidentRequest)>;
    let cases: Vec<(&str, Mutate)> = vec![
        ("idempotency_key", Box::new(|r| r.idempotency_key.clear())),
        ("category", Box::new(|r| r.category = 0)),
        ("category", Box::new(|r| r.category = 99)),
        (
            "item_code",
            Box::new(|r| r.item_code = "no spaces allowed".into()),
        ),
        ("description", Box::new(|r| r.description = "  ".into())),
        ("grid_id", Box::new(|r| r.grid_id = "atlantis".into())),
        (
            "location.lat",
            Box::new(|r| {
                r.location = Some(pb::LatLon {
                    lat: 91.0,
                    lon: 0.0,
                })
            }),
        ),
        (
            "location.lon",
            Box::new(|r| {
                r.location = Some(pb::LatLon {
                    lat: 0.0,
                    lon: f64::NAN,
                })
            }),
        ),
        ("reporter_id", Box::new(|r| r.reporter_id.clear())),
        (
            "photo_urls[0]",
            Box::new(|r| r.photo_urls = vec!["file:///etc/passwd".into()]),
        ),
    ];
    for (field, mutate) in cases {
        let mut r = dispute_report("bad");
        mutate(&mut r);
        let e = code(inc.report(req(r, REPORTER)).await);
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(
            e.message().starts_with(field),
            "message `{}` should name {field}",
            e.message()
        );
    }

    let e = inc
        .get(req(
            pb::GetIncidentRequest {
                id: "INC-999999".into(),
            },
            VIEWER,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = alerts
        .get(req(
            pb::GetAlertRequest {
                id: "ALR-999999".into(),
            },
            VIEWER,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = alerts
        .subscribe(req(
            pb::SubscribeAlertsRequest {
                grid_ids: vec!["atlantis".into()],
                ..Default::default()
            },
            VIEWER,
        ))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message().starts_with("grid_ids[0]")),
        (Code::InvalidArgument, true),
        "{e:?}"
    );
    let e = alerts
        .list(req(
            pb::ListAlertsRequest {
                page_token: "xyz".into(),
                ..Default::default()
            },
            VIEWER,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Acknowledge: operator only, version checked, then attributed.
    let r = inc
        .report(req(dispute_report("ok-1"), INTEGRATOR))
        .await
        .unwrap()
        .into_inner();
    let alert_id = r.incident.unwrap().alert_id;
    let ack = |v: u64| pb::AcknowledgeAlertRequest {
        id: alert_id.clone(),
        expected_version: v,
        note: String::new(),
    };
    assert_eq!(
        alerts
            .acknowledge(req(ack(1), VIEWER))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        alerts
            .acknowledge(req(ack(0), OPERATOR))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        alerts
            .acknowledge(req(ack(5), OPERATOR))
            .await
            .unwrap_err()
            .code(),
        Code::Aborted
    );
    let a = alerts
        .acknowledge(req(ack(1), OPERATOR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((a.version, a.acknowledged_by.as_str()), (2, "desk-1"));
    assert_eq!(
        alerts
            .acknowledge(req(ack(2), OPERATOR))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    let resolved = alerts
        .resolve(req(
            pb::ResolveAlertRequest {
                id: alert_id.clone(),
                expected_version: 2,
                note: "fixed".into(),
            },
            INTEGRATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.status, pb::AlertStatus::Resolved as i32);
    let e = alerts
        .resolve(req(
            pb::ResolveAlertRequest {
                id: alert_id,
                expected_version: 3,
                note: String::new(),
            },
            OPERATOR,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // HTTP: 401 without or with a wrong token, 403 for a role that may not read.
    assert_eq!(http_get(d.http, "/metrics", None).0, 401);
    assert_eq!(
        http_get(d.http, "/metrics", Some("wrong-token-wrong-token")).0,
        401
    );
    assert_eq!(http_get(d.http, "/metrics", Some(REPORTER)).0, 403);
    assert_eq!(http_get(d.http, "/api/alerts", Some(VIEWER)).0, 200);
    assert_eq!(http_get(d.http, "/healthz", None).0, 200);
    // Report as viewer and as operator, List as reporter, Acknowledge as viewer, /metrics as reporter.
    assert_eq!(
        d.metric("gridsight_auth_failures_total{reason=\"forbidden\"}"),
        5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reports_with_one_key_make_one_incident() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(dir.path(), &DaemonOpts::new(None))).await;
    let inc = d.incidents().await;
    // Several rounds: the race between a call's read of the key and another's commit is
    // narrow, and one round seldom hits it.
    for round in 0..5 {
        let key = format!("same-key-{round}");
        let calls = (0..20).map(|_| {
            let mut c = inc.clone();
            let r = req(dispute_report(&key), REPORTER);
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(30), c.report(r))
                    .await
                    .expect("a report is answered")
            })
        });
        let results: Vec<_> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.unwrap().unwrap().into_inner())
            .collect();
        let ids: std::collections::HashSet<String> = results
            .iter()
            .map(|r| r.incident.as_ref().unwrap().id.clone())
            .collect();
        assert_eq!(ids.len(), 1, "round {round}: {ids:?}");
        let firsts = results.iter().filter(|r| !r.duplicate).count();
        assert_eq!(
            firsts, 1,
            "round {round}: one call made it, the rest were told duplicate"
        );
    }
    let all = d
        .incidents()
        .await
        .list(req(Default::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.incidents.len(), 5);
    assert!(
        !d.log().contains("refused"),
        "no write was refused by the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_work_for_standard_tools() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(dir.path(), &DaemonOpts::new(None))).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(d.channel().await);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "gridsight.v1.AlertService".into(),
        })
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut refl = ServerReflectionClient::new(d.channel().await);
    let ask = || {
        tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };
    let e = refl
        .server_reflection_info(ask())
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "reflection needs a token");
    let mut stream = refl
        .server_reflection_info(req(ask(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    let msg = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected {msg:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "gridsight.v1.IncidentService",
        "gridsight.v1.AlertService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}

#[test]
fn check_config_names_file_line_and_field_of_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[api]\ngrpc_listen = \"nonsense\"\n\n[mqtt]\nport = 1883\nqos = 1\ncolour = \"blue\"\n\n[[grids]]\nid = \"a\"\nname = \"A\"\nparent = \"ghost\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(err.contains(&format!("{file}:2: api.grpc_listen")), "{err}");
    assert!(err.contains(&format!("{file}:7: mqtt.colour")), "{err}");

    std::fs::write(&path, "[[grids]]\nid = \"a\"\nname = \"A\"\nparent = \"ghost\"\n\n[[grids]]\nid = \"a\"\nname = \"B\"\n").unwrap();
    let out = std::process::Command::new(binary())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{file}:4: grids[0].parent: unknown grid `ghost`")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:7: grids[1].id: duplicate grid id `a`")),
        "{err}"
    );

    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/gridsight.example.toml"
    );
    let out = std::process::Command::new(binary())
        .arg("check-config")
        .arg(example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
