//! Security, end to end against the real binary: TLS on gRPC, HTTP and WebSocket with
//! client certificates standing for tokens; certificate renewal and token rotation on
//! SIGHUP; per-token limits and request size limits; every role refused what it may not do.

mod common;

use std::time::Duration;

use common::{tls::Pki, *};
use futures::{SinkExt, StreamExt};
use gridsight_proto::v1 as pb;
use tonic::Code;

/// A config serving TLS with `pki`, its CA also the client CA, `extra` appended.
fn tls_config(dir: &std::path::Path, pki: &Pki, extra: &str) -> std::path::PathBuf {
    let mut o = DaemonOpts::new(None);
    o.api_tls = true;
    o.extra = format!("{}{extra}", pki.api_tls_toml());
    write_config(dir, &o)
}

/// TLS on every API: gRPC, HTTP and WebSocket answer over TLS with a bearer token; a
/// client certificate listed in `[[client_certs]]` stands for a token (an integrator
/// reports with it, attributed to its name); an unlisted one is refused naming it; one
/// signed by another CA, and plain text on a TLS port, fail the handshake and are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_on_grpc_http_and_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let listed = pki.client("city-brain", false);
    let unlisted = pki.client("stranger", false);
    let rogue = pki.client("rogue", true);
    let config = tls_config(
        dir.path(),
        &pki,
        &format!(
            "\n[[client_certs]]\nname = \"city-brain-cert\"\nsha256 = \"{}\"\nrole = \"integrator\"\n",
            listed.sha256
        ),
    );
    let d = Daemon::start_tls(&config, &pki).await;

    // HTTPS: a token, a listed certificate, nothing, an unlisted certificate.
    let (code, body) = pki.https_get(d.http, "/api/alerts", Some(VIEWER), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(pki.https_get(d.http, "/api/alerts", None, None).0, 401);
    let (code, body) = pki.https_get(d.http, "/api/whoami", None, Some(&listed));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("city-brain-cert"), "{body}");
    let (code, body) = pki.https_get(d.http, "/api/alerts", None, Some(&unlisted));
    assert_eq!(code, 401);
    assert!(body.contains("is not listed in [[client_certs]]"), "{body}");
    // A certificate from another CA: no TLS session at all.
    assert!(
        pki.https(d.http, "GET /readyz HTTP/1.0\r\n\r\n", Some(&rogue))
            .map(|(code, _)| code)
            .unwrap_or(0)
            == 0,
        "a rogue client certificate is refused in the handshake"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert_eq!(http_get(d.http, "/readyz", None).0, 0);

    // gRPC over TLS with a token.
    let ch = pki.channel(&d.grpc, None).await.expect("TLS channel");
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    alerts
        .list(req(pb::ListAlertsRequest::default(), VIEWER))
        .await
        .expect("List over TLS");
    // A listed certificate and no token: the integrator reports.
    let ch = pki
        .channel(&d.grpc, Some(&listed))
        .await
        .expect("mTLS channel");
    let mut incidents = pb::incident_service_client::IncidentServiceClient::new(ch);
    let inc = incidents
        .report(tonic::Request::new(dispute_report("tls-1")))
        .await
        .expect("Report with a client certificate")
        .into_inner()
        .incident
        .expect("incident");
    assert_eq!(inc.grid_id, "a-1");
    // An unlisted certificate without a token is refused, naming it.
    let ch = pki
        .channel(&d.grpc, Some(&unlisted))
        .await
        .expect("channel");
    let err = pb::alert_service_client::AlertServiceClient::new(ch)
        .list(tonic::Request::new(pb::ListAlertsRequest::default()))
        .await
        .expect_err("unlisted certificate");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err
        .message()
        .contains(&unlisted.sha256.replace(':', "").to_lowercase()));
    // A plain-text gRPC client gets nothing.
    let plain = tonic::transport::Channel::from_shared(d.grpc.clone())
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        let r = pb::alert_service_client::AlertServiceClient::new(ch)
            .list(req(pb::ListAlertsRequest::default(), VIEWER))
            .await;
        assert!(r.is_err(), "plain text on the TLS port must fail");
    }

    // The alert stream over a WebSocket on TLS.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", d.http))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(pki.rustls_client(None, b"http/1.1"))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            stream,
        )
        .await
        .expect("TLS to /ws");
    let url = format!("wss://localhost:{}/ws?token={VIEWER}", d.http);
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket over TLS");
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s")
        .expect("open")
        .expect("message");
    assert!(first.to_text().unwrap().contains("\"kind\""), "{first:?}");
    let _ = ws.close(None).await;

    // Every refused handshake was counted, by listener.
    let metrics = pki.https_get(d.http, "/metrics", Some(VIEWER), None).1;
    let failures = |api: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("gridsight_tls_handshake_failures_total{")
                    && l.contains(&format!("api=\"{api}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(failures("http") >= 2.0, "rogue + plain text:\n{metrics}");
    assert!(metrics.contains(r#"gridsight_auth_failures_total{reason="unlisted_cert"} 2"#));
}

/// SIGHUP renews the certificate for new connections and rotates tokens from the token
/// file: the removed token stops working, the new one (given as its SHA-256) works; a bad
/// token file is refused, counted, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_renews_the_certificate_and_rotates_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let tokens = dir.path().join("tokens.toml");
    let old = "old-desk-token-0123456789";
    let new = "new-desk-token-9876543210";
    std::fs::write(
        &tokens,
        format!("[[tokens]]\nname = \"desk-2\"\ntoken = \"{old}\"\nrole = \"operator\"\n"),
    )
    .unwrap();
    let mut o = DaemonOpts::new(None);
    o.api_tls = true;
    o.extra_api = "tokens_file = \"tokens.toml\"".into();
    o.extra = pki.api_tls_toml();
    let config = write_config(dir.path(), &o);
    let d = Daemon::start_tls(&config, &pki).await;
    let served = || {
        let s = pki.connect(d.http, None).expect("TLS");
        s.conn.peer_certificates().unwrap()[0].to_vec()
    };
    let first = served();
    assert_eq!(pki.https_get(d.http, "/api/whoami", Some(old), None).0, 200);

    let renewed = pki.write_server();
    assert_ne!(renewed, first);
    let hash = {
        use sha2::Digest;
        sha2::Sha256::digest(new.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::fs::write(
        &tokens,
        format!("[[tokens]]\nname = \"desk-2\"\ntoken_sha256 = \"{hash}\"\nrole = \"operator\"\n"),
    )
    .unwrap();
    let hup = || {
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &d.pid().to_string()])
            .status();
    };
    hup();
    let reloads = |reason: &str| {
        let m = pki.https_get(d.http, "/metrics", Some(VIEWER), None).1;
        sample_value(
            &m,
            &format!("gridsight_config_reloads_total{{reason=\"{reason}\"}}"),
        )
    };
    wait_for("reload", Duration::from_secs(10), || async {
        (reloads("ok") >= 1.0).then_some(())
    })
    .await;
    assert_eq!(
        served(),
        renewed,
        "new connections get the renewed certificate"
    );
    let (code, body) = pki.https_get(d.http, "/api/whoami", Some(old), None);
    assert_eq!(code, 401, "the removed token no longer works: {body}");
    let (code, body) = pki.https_get(d.http, "/api/whoami", Some(new), None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("desk-2"), "{body}");

    // A token file that does not check: refused, counted, nothing changes.
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"x\"\ntoken_sha256 = \"nope\"\nrole = \"viewer\"\n",
    )
    .unwrap();
    hup();
    wait_for("refused reload", Duration::from_secs(10), || async {
        (reloads("invalid") >= 1.0).then_some(())
    })
    .await;
    assert_eq!(pki.https_get(d.http, "/api/whoami", Some(new), None).0, 200);
    assert!(
        d.log()
            .contains("tokens[0].token_sha256: must be 64 hex digits"),
        "{}",
        d.log()
    );
}

/// Per-token limits: Report past its burst, subscriptions past their count, oversized
/// gRPC messages, HTTP bodies and WebSocket messages are refused with a clear answer and
/// counted; other tokens are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DaemonOpts::new(None);
    o.extra = "\n[api.limits]\nreport_per_minute = 60\nreport_burst = 3\nmax_streams_per_token = 2\nmax_request_bytes = 4096\nmax_ws_message_bytes = 1024\n".into();
    let d = Daemon::start(&write_config(dir.path(), &o)).await;

    let mut inc = d.incidents().await;
    for i in 0..3 {
        inc.report(req(dispute_report(&format!("burst-{i}")), REPORTER))
            .await
            .expect("within the burst");
    }
    let err = inc
        .report(req(dispute_report("burst-3"), REPORTER))
        .await
        .expect_err("past the burst");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message()
            .contains("rate limit: `app` may make 60 Report calls a minute (burst 3)"),
        "{}",
        err.message()
    );
    // The integrator's own bucket is full.
    inc.report(req(dispute_report("other-token"), INTEGRATOR))
        .await
        .expect("another token");

    // Two subscriptions held; a third gRPC one and a /ws are refused.
    let a = d.subscribe_all().await;
    let b = d.subscribe_all().await;
    let err = d
        .alerts()
        .await
        .subscribe(req(pb::SubscribeAlertsRequest::default(), VIEWER))
        .await
        .expect_err("a third subscription");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("already holds 2 open subscriptions"));
    let ws =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws?token={VIEWER}", d.http))
            .await;
    match ws {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 429);
            assert!(r.headers().contains_key("retry-after"));
        }
        other => panic!("expected 429, got {other:?}"),
    }
    // A stream given back frees its place (noticed at its next heartbeat).
    drop(a);
    let reopened = wait_for("a freed stream", Duration::from_secs(10), || async {
        d.alerts()
            .await
            .subscribe(req(pb::SubscribeAlertsRequest::default(), VIEWER))
            .await
            .ok()
    })
    .await;
    drop((b, reopened));

    // Sizes: a 8 KiB gRPC message, a 8 KiB HTTP body, a 4 KiB WebSocket message.
    let mut big = dispute_report("big");
    big.description = "x".repeat(8192);
    let err = inc
        .report(req(big, INTEGRATOR))
        .await
        .expect_err("oversized message");
    assert!(
        matches!(err.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{err:?}"
    );
    assert!(err.message().contains("4096"), "{}", err.message());
    let body = format!(
        "{{\"expected_version\": 1, \"note\": \"{}\"}}",
        "x".repeat(8192)
    );
    let (code, text) = http_post(d.http, "/api/alerts/ALR-1/acknowledge", OPERATOR, &body);
    assert_eq!(code, 413, "{text}");
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws?token={OPERATOR}", d.http))
            .await
            .expect("ws");
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "y".repeat(4096).into(),
    ))
    .await
    .expect("send");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))
                | None
                | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an oversized WebSocket message ends the socket"
    );
    assert!(d.metric(r#"gridsight_rate_limited_total{call="report",token="app"}"#) >= 1.0);
    assert!(d.metric(r#"gridsight_rate_limited_total{call="streams",token="wall"}"#) >= 2.0);
}

/// The answer code of each call a role may not make (gRPC and HTTP), made with `token`.
async fn forbidden_calls(d: &Daemon, token: &str, calls: &[&str]) -> Vec<(String, String)> {
    let ch = d.channel().await;
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    let mut incidents = pb::incident_service_client::IncidentServiceClient::new(ch.clone());
    let mut cameras = pb::camera_service_client::CameraServiceClient::new(ch.clone());
    let mut stats = pb::stats_service_client::StatsServiceClient::new(ch.clone());
    let mut silences = pb::silence_service_client::SilenceServiceClient::new(ch);
    let code = |r: Result<(), tonic::Status>| match r {
        Ok(()) => "OK".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    let mut out = Vec::new();
    for &call in calls {
        let got = match call {
            "Report" => code(incidents.report(req(dispute_report("forbidden"), token)).await.map(drop)),
            "IncidentGet" => code(incidents.get(req(pb::GetIncidentRequest { id: "INC-000001".into() }, token)).await.map(drop)),
            "IncidentList" => code(incidents.list(req(pb::ListIncidentsRequest::default(), token)).await.map(drop)),
            "Transition" => code(incidents.transition(req(pb::TransitionIncidentRequest { id: "INC-000001".into(), to: pb::IncidentStatus::Accepted as i32, expected_version: 1, ..Default::default() }, token)).await.map(drop)),
            "Subscribe" => code(alerts.subscribe(req(pb::SubscribeAlertsRequest::default(), token)).await.map(drop)),
            "AlertGet" => code(alerts.get(req(pb::GetAlertRequest { id: "ALR-1".into() }, token)).await.map(drop)),
            "AlertList" => code(alerts.list(req(pb::ListAlertsRequest::default(), token)).await.map(drop)),
            "Acknowledge" => code(alerts.acknowledge(req(pb::AcknowledgeAlertRequest { id: "ALR-1".into(), expected_version: 1, note: String::new() }, token)).await.map(drop)),
            "Resolve" => code(alerts.resolve(req(pb::ResolveAlertRequest { id: "ALR-1".into(), expected_version: 1, note: String::new() }, token)).await.map(drop)),
            "AddNote" => code(alerts.add_note(req(pb::AddAlertNoteRequest { id: "ALR-1".into(), text: "x".into() }, token)).await.map(drop)),
            "Dispatch" => code(alerts.dispatch(req(pb::DispatchAlertRequest { id: "ALR-1".into(), expected_version: 1, department: "fire".into(), ..Default::default() }, token)).await.map(drop)),
            "CameraList" => code(cameras.list(req(pb::ListCamerasRequest::default(), token)).await.map(drop)),
            "CameraGet" => code(cameras.get(req(pb::GetCameraRequest { id: "cam-1".into() }, token)).await.map(drop)),
            "Snapshot" => code(cameras.snapshot(req(pb::SnapshotRequest { camera_id: "cam-1".into() }, token)).await.map(drop)),
            "Daily" => code(stats.daily(req(pb::StatsRequest::default(), token)).await.map(drop)),
            "SilenceCreate" => code(silences.create(req(pb::CreateSilenceRequest { duration_secs: 60, comment: "x".into(), matcher: Some(pb::SilenceMatcher { grid_id: "a-1".into(), ..Default::default() }), ..Default::default() }, token)).await.map(drop)),
            "SilenceList" => code(silences.list(req(pb::ListSilencesRequest::default(), token)).await.map(drop)),
            "SilenceExpire" => code(silences.expire(req(pb::ExpireSilenceRequest { id: "SIL-1".into() }, token)).await.map(drop)),
            path if path.starts_with("GET ") => http_get(d.http, &path[4..], Some(token)).0.to_string(),
            path if path.starts_with("POST ") => http_post(d.http, &path[5..], token, r#"{"expected_version": 1, "note": "x", "text": "x", "department": "fire", "deadline_ms": 99999999999999}"#).0.to_string(),
            other => panic!("no such call {other}"),
        };
        out.push((call.to_string(), got));
    }
    out
}

const READS: &[&str] = &[
    "IncidentGet",
    "IncidentList",
    "Subscribe",
    "AlertGet",
    "AlertList",
    "CameraList",
    "CameraGet",
    "Snapshot",
    "Daily",
    "SilenceList",
    "GET /metrics",
    "GET /api/alerts",
    "GET /api/stats",
    "GET /api/cameras",
    "GET /api/silences",
    "GET /api/dead-letters",
    "GET /api/map",
    "GET /ws",
];
const ACTIONS: &[&str] = &[
    "Transition",
    "Acknowledge",
    "Resolve",
    "AddNote",
    "Dispatch",
    "SilenceCreate",
    "SilenceExpire",
    "POST /api/alerts/ALR-1/acknowledge",
    "POST /api/alerts/ALR-1/resolve",
    "POST /api/alerts/ALR-1/note",
    "POST /api/alerts/ALR-1/dispatch",
];

/// Each role is refused every call it may not make, with PERMISSION_DENIED / 403 (never
/// a NOT_FOUND that would tell it what exists), and nothing changed: a viewer cannot act
/// or report, a reporter can only report, an operator cannot report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_is_refused_what_it_may_not_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(dir.path(), &DaemonOpts::new(None))).await;
    let mut viewer_forbidden: Vec<&str> = ACTIONS.to_vec();
    viewer_forbidden.push("Report");
    let mut reporter_forbidden: Vec<&str> = READS.to_vec();
    reporter_forbidden.extend_from_slice(ACTIONS);
    for (role, token, calls) in [
        ("viewer", VIEWER, viewer_forbidden),
        ("reporter", REPORTER, reporter_forbidden),
        ("operator", OPERATOR, vec!["Report"]),
    ] {
        for (call, got) in forbidden_calls(&d, token, &calls).await {
            let refused = got == "PermissionDenied" || got == "403";
            assert!(refused, "{role} made {call}: {got}");
        }
    }
    // What the integrator may do is not refused (the calls reach their handler).
    let mut all: Vec<&str> = READS.to_vec();
    all.extend_from_slice(ACTIONS);
    all.push("Report");
    for (call, got) in forbidden_calls(&d, INTEGRATOR, &all).await {
        assert!(
            got != "PermissionDenied" && got != "403" && got != "Unauthenticated" && got != "401",
            "integrator refused {call}: {got}"
        );
    }
    // Nothing the refused calls asked for happened: the only incident is the integrator's.
    let list = d
        .incidents()
        .await
        .list(req(pb::ListIncidentsRequest::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.incidents.len(), 1, "{list:?}");
    assert!(d.metric(r#"gridsight_auth_failures_total{reason="forbidden"}"#) >= 40.0);
}

/// TLS to the broker: a Mosquitto that only speaks TLS; the daemon subscribes over TLS
/// (trusting `[mqtt.tls] ca`) and a sensor alarm published over TLS becomes an alert.
/// With a CA that did not sign the broker's certificate it never connects, says why, and
/// is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_to_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let broker = Mosquitto::start_tls(&pki);
    let mut o = DaemonOpts::new(Some(broker.port));
    o.mqtt_tls = true;
    o.extra = format!(
        "\n[mqtt.tls]\nca = \"{}\"\n",
        dir.path().join("ca.crt").display()
    );
    let d = Daemon::start(&write_config(dir.path(), &o)).await;
    assert_eq!(d.metric("gridsight_mqtt_connected"), 1.0);
    let mut sub = d.subscribe_all().await;
    let publish = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1"])
        .arg("--cafile")
        .arg(dir.path().join("ca.crt"))
        .args(["-t", &topic("a-1", "smoke", "smk-tls")])
        .arg("-m")
        .arg(String::from_utf8(payload(now_ms(), "alarm", 0.9)).unwrap())
        .output()
        .expect("mosquitto_pub");
    assert!(
        publish.status.success(),
        "{}",
        String::from_utf8_lossy(&publish.stderr)
    );
    let seen = read_until(&mut sub, Duration::from_secs(10), |c| {
        c.alert
            .as_ref()
            .is_some_and(|a| sensors_of(a).contains(&"smk-tls".to_string()))
    })
    .await;
    let alert = seen.last().and_then(|c| c.alert.clone()).expect("alert");
    assert_eq!(alert.grid_id, "a-1");

    // Another CA: no connection, a clear reason, not ready.
    let other = tempfile::tempdir().unwrap();
    let wrong = Pki::new(other.path());
    let mut o = DaemonOpts::new(Some(broker.port));
    o.mqtt_tls = true;
    o.extra = format!(
        "\n[mqtt.tls]\nca = \"{}\"\n",
        wrong.dir.join("ca.crt").display()
    );
    let d2 = Daemon::launch(&write_config(other.path(), &o), &[]).await;
    let log = wait_for(
        "the TLS refusal in the log",
        Duration::from_secs(10),
        || async {
            let log = d2.log();
            log.contains("TLS to the broker").then_some(log)
        },
    )
    .await;
    assert!(
        log.contains("UnknownIssuer") || log.contains("certificate"),
        "{log}"
    );
    assert_eq!(http_get(d2.http, "/readyz", None).0, 503);
}

/// Camera and broker passwords never show: with debug logging on, a camera whose
/// credentials work, one whose credentials are refused and a broker login, the password
/// is in no log line, metric, gRPC or HTTP answer, page, WebSocket message, retained MQTT
/// message or store file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_show_anywhere() {
    use gridsight_farm::{Farm, FarmConfig, Fault, MountConfig};
    const CAM_SECRET: &str = "Cam-S3cret-4242";
    const MQTT_SECRET: &str = "Mqtt-S3cret-4242";
    let farm = Farm::start(FarmConfig::new(vec![
        MountConfig::new("good", 15).with_fault(Fault::Auth {
            user: "admin".into(),
            pass: CAM_SECRET.into(),
        }),
        MountConfig::new("refused", 15).with_fault(Fault::Auth {
            user: "admin".into(),
            pass: "another-password".into(),
        }),
    ]))
    .await
    .expect("farm");
    let creds = |m: &str| {
        farm.url(m)
            .replace("rtsp://", &format!("rtsp://admin:{CAM_SECRET}@"))
    };
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut o = DaemonOpts::new(Some(broker.port));
    o.extra = format!(
        "{VIDEO}\n{}\n{}",
        camera_toml("good", &creds("good"), "a-1"),
        camera_toml("refused", &creds("refused"), "a-2")
    );
    let config = write_config(dir.path(), &o);
    // The broker login: mosquitto (anonymous allowed) accepts any user and password.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "plaintext = true\nclient_id",
        &format!(
            "plaintext = true\nusername = \"gridsight\"\npassword = \"{MQTT_SECRET}\"\nclient_id"
        ),
    );
    assert!(text.contains(MQTT_SECRET));
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start_with_env(&config, &[("RUST_LOG", "debug")]).await;
    wait_status(&d, "good", pb::CameraStatus::Online).await;
    wait_for("the refused login", CAMERA_WAIT, || async {
        (d.metric(r#"gridsight_camera_connect_errors_total{reason="auth"}"#) >= 1.0).then_some(())
    })
    .await;
    // The refused camera's offline alert, with its evidence.
    wait_for("the offline alert", CAMERA_WAIT, || async {
        let (_, body) = http_get(d.http, "/api/alerts", Some(VIEWER));
        body.contains("refused").then_some(())
    })
    .await;

    let mut seen: Vec<(String, String)> = Vec::new();
    for path in [
        "/metrics",
        "/api/cameras",
        "/api/map",
        "/api/alerts",
        "/api/stats",
        "/api/whoami",
        "/api/dead-letters",
        "/",
        "/app.js",
        "/app.css",
    ] {
        let (code, body) = http_get(d.http, path, Some(VIEWER));
        assert_eq!(code, 200, "{path}");
        seen.push((path.to_string(), body));
    }
    let mut cams = d.cameras().await;
    let list = cams
        .list(req(pb::ListCamerasRequest::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.cameras.len(), 2);
    seen.push(("CameraService.List".into(), format!("{list:?}")));
    for id in ["good", "refused"] {
        seen.push((
            format!("CameraService.Get {id}"),
            format!("{:?}", camera(&d, id).await),
        ));
    }
    let alerts = d
        .alerts()
        .await
        .list(req(pb::ListAlertsRequest::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    assert!(!alerts.alerts.is_empty());
    seen.push(("AlertService.List".into(), format!("{alerts:?}")));
    // The page's stream: its snapshot of open alerts.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws?token={VIEWER}", d.http))
            .await
            .expect("ws");
    let mut frames = String::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
        frames.push_str(m.to_text().unwrap_or_default());
    }
    assert!(frames.contains("refused"), "{frames}");
    seen.push(("WebSocket".into(), frames));
    // What the daemon keeps retained on the broker (availability, camera status).
    let retained = std::process::Command::new("mosquitto_sub")
        .args([
            "-p",
            &broker.port.to_string(),
            "-t",
            "gridsight/#",
            "-v",
            "-W",
            "1",
        ])
        .output()
        .expect("mosquitto_sub");
    let retained = String::from_utf8_lossy(&retained.stdout).into_owned();
    assert!(retained.contains("good"), "{retained}");
    seen.push(("retained MQTT".into(), retained));
    let mut store = Vec::new();
    for f in std::fs::read_dir(&d.data_dir).unwrap().flatten() {
        store.extend(std::fs::read(f.path()).unwrap_or_default());
    }
    seen.push((
        "store files".into(),
        String::from_utf8_lossy(&store).into_owned(),
    ));
    let log = d.log();
    assert!(log.contains("DEBUG"), "debug logging is on");
    seen.push(("log".into(), log));

    for (what, text) in &seen {
        for secret in [CAM_SECRET, MQTT_SECRET] {
            assert!(!text.contains(secret), "{secret} shows in {what}");
        }
    }
    farm.shutdown().await;
}
