//! End to end: the real binary supervising cameras served by the project's camera farm
//! (fault injection per mount) and by GStreamer's own RTSP server.

mod common;

use std::time::Duration;

use common::*;
use gridsight_farm::{ContentSchedule, Farm, FarmConfig, Fault, MountConfig};
use gridsight_proto::v1 as pb;

const T: Duration = Duration::from_secs(25);
const SECRET: &str = "s3cret-Pa55";

async fn open_alert_titled(d: &Daemon, title: &str) -> Option<pb::Alert> {
    let list = d
        .alerts()
        .await
        .list(req(pb::ListAlertsRequest::default(), VIEWER))
        .await
        .expect("list alerts")
        .into_inner();
    list.alerts
        .into_iter()
        .find(|a| a.title == title && a.status != pb::AlertStatus::Resolved as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_gives_the_right_health_and_events_and_the_others_carry_on() {
    let mounts = vec![
        MountConfig::new("ok", 15),
        MountConfig::new("down", 15),
        MountConfig::new("refuse", 15).with_fault(Fault::Refuse),
        MountConfig::new("auth-good", 15).with_fault(Fault::Auth {
            user: "admin".into(),
            pass: SECRET.into(),
        }),
        MountConfig::new("auth-bad", 15).with_fault(Fault::Auth {
            user: "admin".into(),
            pass: "other-password".into(),
        }),
        MountConfig::new("hang", 15).with_fault(Fault::HangDescribe),
        MountConfig::new("stall", 15).with_fault(Fault::StallAfter(Duration::from_millis(1500))),
        MountConfig::new("garbage", 15).with_fault(Fault::GarbageRtp),
        MountConfig::new("flap", 15).with_fault(Fault::DisconnectLoop(Duration::from_millis(800))),
        MountConfig::new("jump", 15).with_fault(Fault::TimestampJump),
        MountConfig::new("freeze", 15),
        MountConfig::new("busy", 15).with_content(ContentSchedule::Alternate {
            still: Duration::from_secs(6),
            busy: Duration::from_secs(6),
        }),
    ];
    let farm = Farm::start(FarmConfig::new(mounts)).await.expect("farm");
    let url = |m: &str| farm.url(m);
    let creds_url = |m: &str| url(m).replace("rtsp://", &format!("rtsp://admin:{SECRET}@"));
    let mut extra = VIDEO.to_string();
    for (id, u) in [
        ("ok", url("ok")),
        ("down", url("down")),
        ("refuse", url("refuse")),
        ("auth-good", creds_url("auth-good")),
        ("auth-bad", creds_url("auth-bad")),
        ("hang", url("hang")),
        ("stall", url("stall")),
        ("garbage", url("garbage")),
        ("flap", url("flap")),
        ("jump", url("jump")),
        ("freeze", url("freeze")),
        ("busy", url("busy")),
    ] {
        extra.push_str(&camera_toml(id, &u, "a-1"));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut o = DaemonOpts::new(None);
    o.extra = extra;
    let cfg = write_config(dir.path(), &o);
    let d = Daemon::start(&cfg).await;
    let mut stream = d
        .alerts()
        .await
        .subscribe(req(pb::SubscribeAlertsRequest::default(), VIEWER))
        .await
        .expect("subscribe")
        .into_inner();

    // Healthy cameras: online, at their rate, with the picture size from the stream.
    let ok = wait_status(&d, "ok", pb::CameraStatus::Online).await;
    wait_status(&d, "auth-good", pb::CameraStatus::Online).await;
    wait_status(&d, "jump", pb::CameraStatus::Online).await;
    wait_status(&d, "freeze", pb::CameraStatus::Online).await;
    let h = ok.health.unwrap();
    assert_eq!((h.width, h.height), (640, 360));
    assert_eq!(h.codec, "h264");
    assert!(ok.url.ends_with("/ok") && !ok.url.contains('@'));

    // Dead ones: offline within seconds, each with an alert; reasons counted.
    for id in ["refuse", "auth-bad", "hang", "garbage"] {
        let c = wait_status(&d, id, pb::CameraStatus::Offline).await;
        assert!(
            !c.health.unwrap().last_error.is_empty(),
            "{id} says why it is offline"
        );
        let title = format!("Camera {id} offline");
        wait_for(&format!("alert `{title}`"), T, || async {
            open_alert_titled(&d, &title).await
        })
        .await;
    }
    wait_for("reasons counted", T, || async {
        let auth = d.metric("gridsight_camera_connect_errors_total{reason=\"auth\"}");
        let timeout = d.metric("gridsight_camera_connect_errors_total{reason=\"open_timeout\"}");
        (auth >= 1.0 && timeout >= 1.0).then_some(())
    })
    .await;

    // A stream that stalls or keeps dropping: degraded (reconnects), never a false offline.
    for (id, what) in [("stall", "stalls"), ("flap", "reconnects")] {
        wait_for(
            &format!("{id} to be degraded with {what} counted"),
            T,
            || async {
                let c = camera(&d, id).await;
                let h = c.health.clone()?;
                let counted = if what == "stalls" {
                    h.stalls_last_hour >= 1
                } else {
                    h.reconnects_last_hour >= 3
                };
                (status(&c) == pb::CameraStatus::Degraded && counted).then_some(())
            },
        )
        .await;
    }

    // A timestamp jump is counted and the camera stays online.
    wait_for("the timestamp jump to be counted", T, || async {
        (d.metric("gridsight_camera_timestamp_jumps_total") >= 1.0).then_some(())
    })
    .await;
    assert_eq!(status(&camera(&d, "jump").await), pb::CameraStatus::Online);

    // Freeze: set at runtime → frozen, an alert; cleared → the alert resolves.
    farm.set_fault("freeze", Fault::Freeze).unwrap();
    wait_for("freeze to be found", T, || async {
        camera(&d, "freeze")
            .await
            .health
            .is_some_and(|h| h.frozen)
            .then_some(())
    })
    .await;
    let frozen_alert = wait_for("the freeze alert", T, || async {
        open_alert_titled(&d, "Camera freeze picture frozen").await
    })
    .await;
    // It carries the camera and the picture taken when it opened.
    assert_eq!(frozen_alert.camera_ids, vec!["freeze".to_string()]);
    let url = frozen_alert.snapshots[0].url.clone();
    let picture = wait_for("the alert's picture", T, || async {
        let (code, body) = http_get_bytes(d.http, &url, Some(VIEWER));
        (code == 200).then_some(body)
    })
    .await;
    let hdr = gridsight::media::jpeg::parse_header(&picture).expect("a JPEG");
    assert_eq!((hdr.width, hdr.height), (640, 360));
    assert_eq!(http_get_bytes(d.http, &url, None).0, 401);
    farm.set_fault("freeze", Fault::None).unwrap();
    wait_for("the freeze alert to resolve", T, || async {
        let a = d
            .alerts()
            .await
            .get(req(
                pb::GetAlertRequest {
                    id: frozen_alert.id.clone(),
                },
                VIEWER,
            ))
            .await
            .ok()?
            .into_inner();
        (a.status == pb::AlertStatus::Resolved as i32).then_some(())
    })
    .await;

    // A camera dies at runtime: offline after the delay (not before), an alert; back: resolved.
    wait_status(&d, "down", pb::CameraStatus::Online).await;
    farm.set_fault("down", Fault::Refuse).unwrap();
    let died = std::time::Instant::now();
    wait_status(&d, "down", pb::CameraStatus::Offline).await;
    let took = died.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(8),
        "offline after {took:?} (delay 3 s)"
    );
    farm.set_fault("down", Fault::None).unwrap();
    wait_status(&d, "down", pb::CameraStatus::Online).await;

    // Activity: the busy mount's switch from still to busy raises its score and an event.
    let deadline = std::time::Instant::now() + T;
    let activity = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no activity event from the busy camera within {T:?}"
        );
        let m = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("the stream sends heartbeats")
            .expect("stream")
            .expect("stream open");
        if let Some(pb::subscribe_alerts_response::Event::CameraEvent(e)) = m.event {
            if e.camera_id == "busy" && e.kind == pb::CameraEventKind::Activity as i32 {
                break e;
            }
        }
    };
    assert!(activity.activity >= 3.0, "{activity:?}");

    // The healthy camera carried on through all of it.
    let ok = camera(&d, "ok").await;
    assert_eq!(status(&ok), pb::CameraStatus::Online);
    let h = ok.health.unwrap();
    assert!(h.fps > 10.0, "fps {}", h.fps);
    assert_eq!(h.reconnects_last_hour, 0);

    // Credentials never show: not in the API, metrics or logs.
    let all = d
        .cameras()
        .await
        .list(req(pb::ListCamerasRequest::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.cameras.len(), 12);
    let shown = format!("{all:?}");
    let (_, metrics) = http_get(d.http, "/metrics", Some(VIEWER));
    for (what, text) in [("API", shown), ("metrics", metrics), ("log", d.log())] {
        assert!(!text.contains(SECRET), "the password shows in the {what}");
    }
    farm.shutdown().await;
}

/// A real peer that is not ours: GStreamer's RTSP server with live x264 video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_rtsp_server_camera_is_online() {
    let port = free_port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/peers/gst_rtsp_server.py"
    );
    let mut server = std::process::Command::new("/usr/bin/python3")
        .args([script, &port.to_string(), "640", "360", "15"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start GStreamer's RTSP server");
    let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready", "GStreamer RTSP server did not start");

    let dir = tempfile::tempdir().unwrap();
    let mut o = DaemonOpts::new(None);
    o.extra = format!(
        "{VIDEO}{}",
        camera_toml("gst", &format!("rtsp://127.0.0.1:{port}/cam"), "b-1")
    );
    let d = Daemon::start(&write_config(dir.path(), &o)).await;
    let c = wait_status(&d, "gst", pb::CameraStatus::Online).await;
    let h = c.health.unwrap();
    assert_eq!((h.width, h.height), (640, 360));
    assert_eq!(h.codec, "h264");
    wait_for("a keyframe and 15 fps", T, || async {
        let h = camera(&d, "gst").await.health?;
        (h.keyframes_total >= 1 && h.fps > 10.0).then_some(())
    })
    .await;
    // Snapshot over gRPC and HTTP: a valid JPEG of the stream's size.
    let shot = d
        .cameras()
        .await
        .snapshot(req(
            pb::SnapshotRequest {
                camera_id: "gst".into(),
            },
            VIEWER,
        ))
        .await
        .expect("snapshot")
        .into_inner();
    let hdr = gridsight::media::jpeg::parse_header(&shot.jpeg).expect("a JPEG");
    assert_eq!((hdr.width, hdr.height), (640, 360));
    assert_eq!((shot.width, shot.height), (640, 360));
    let (code, body) = http_get_bytes(d.http, "/snapshot/gst.jpg", Some(VIEWER));
    assert_eq!(code, 200);
    let hdr = gridsight::media::jpeg::parse_header(&body).expect("a JPEG over HTTP");
    assert_eq!((hdr.width, hdr.height), (640, 360));
    // Unknown camera and missing token: the right codes.
    let err = d
        .cameras()
        .await
        .snapshot(req(
            pb::SnapshotRequest {
                camera_id: "nope".into(),
            },
            VIEWER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(http_get_bytes(d.http, "/snapshot/gst.jpg", None).0, 401);
    assert_eq!(
        http_get_bytes(d.http, "/snapshot/nope.jpg", Some(VIEWER)).0,
        404
    );

    // A report in the camera's grid: the alert shows the camera, with the picture of then.
    let resp = d
        .incidents()
        .await
        .report(req(
            pb::ReportIncidentRequest {
                idempotency_key: "cam-report-1".into(),
                category: pb::IncidentCategory::SafetyHazard as i32,
                item_code: "AQ-0301".into(),
                description: "Smoke seen near the crossing".into(),
                grid_id: "b-1".into(),
                location: None,
                reporter_id: "rep-7".into(),
                photo_urls: vec![],
            },
            REPORTER,
        ))
        .await
        .expect("report")
        .into_inner();
    let alert_id = resp.incident.expect("incident").alert_id;
    let alert = d
        .alerts()
        .await
        .get(req(pb::GetAlertRequest { id: alert_id }, VIEWER))
        .await
        .expect("alert")
        .into_inner();
    assert_eq!(alert.camera_ids, vec!["gst".to_string()]);
    let url = alert.snapshots[0].url.clone();
    let picture = wait_for("the alert's picture", T, || async {
        let (code, body) = http_get_bytes(d.http, &url, Some(VIEWER));
        (code == 200).then_some(body)
    })
    .await;
    let hdr = gridsight::media::jpeg::parse_header(&picture).expect("a JPEG");
    assert_eq!((hdr.width, hdr.height), (640, 360));
    let _ = server.kill();
    let _ = server.wait();
}

/// SIGHUP: cameras added and removed from the config file, the others untouched; a bad
/// file changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_cameras_without_touching_the_others() {
    let mounts = ["keep", "drop", "add"]
        .into_iter()
        .map(|m| MountConfig::new(m, 15))
        .collect();
    let farm = Farm::start(FarmConfig::new(mounts)).await.expect("farm");
    let dir = tempfile::tempdir().unwrap();
    let mut o = DaemonOpts::new(None);
    o.extra = format!(
        "{VIDEO}{}{}",
        camera_toml("keep", &farm.url("keep"), "a-1"),
        camera_toml("drop", &farm.url("drop"), "a-2")
    );
    let cfg = write_config(dir.path(), &o);
    let d = Daemon::start(&cfg).await;
    wait_status(&d, "keep", pb::CameraStatus::Online).await;
    wait_status(&d, "drop", pb::CameraStatus::Online).await;
    let sessions_before = farm.stats("keep").unwrap().sessions_opened;
    let hup = || {
        let _ = std::process::Command::new("kill")
            .arg("-HUP")
            .arg(d.pid().to_string())
            .status();
    };

    // A broken file: logged, nothing changes.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\n[[cameras]]\nid = \"x\"\n")).unwrap();
    hup();
    wait_for("the bad file to be refused in the log", T, || async {
        d.log().contains("config not reloaded").then_some(())
    })
    .await;
    assert_eq!(status(&camera(&d, "drop").await), pb::CameraStatus::Online);

    let mut o2 = o.clone();
    o2.extra = format!(
        "{VIDEO}{}{}",
        camera_toml("keep", &farm.url("keep"), "a-1"),
        camera_toml("add", &farm.url("add"), "b-1")
    );
    let text = good.replace(&o.extra, &o2.extra);
    assert_ne!(text, good);
    std::fs::write(&cfg, text).unwrap();
    hup();
    wait_status(&d, "add", pb::CameraStatus::Online).await;
    wait_for("the removed camera to go", T, || async {
        let list = d
            .cameras()
            .await
            .list(req(pb::ListCamerasRequest::default(), VIEWER))
            .await
            .ok()?
            .into_inner();
        let ids: Vec<String> = list.cameras.into_iter().map(|c| c.id).collect();
        (ids == ["add", "keep"]).then_some(())
    })
    .await;
    assert_eq!(
        farm.stats("keep").unwrap().sessions_opened,
        sessions_before,
        "the kept camera was not reconnected"
    );
    farm.shutdown().await;
}

/// Retained messages on `topic` (with `#`), as a late subscriber sees them.
fn retained(port: u16, topic: &str, count: usize) -> Vec<(String, String)> {
    let out = std::process::Command::new("mosquitto_sub")
        .args(["-p", &port.to_string(), "-t", topic, "-v", "-W", "3"])
        .args(["-C", &count.to_string(), "--retained-only"])
        .output()
        .expect("run mosquitto_sub");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect()
}

/// Camera status and the daemon's availability, retained on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_status_is_retained_on_mqtt() {
    let broker = Mosquitto::start();
    let farm = Farm::start(FarmConfig::new(vec![
        MountConfig::new("up", 15),
        MountConfig::new("gone", 15).with_fault(Fault::Refuse),
    ]))
    .await
    .expect("farm");
    let dir = tempfile::tempdir().unwrap();
    let mut o = DaemonOpts::new(Some(broker.port));
    o.extra = format!(
        "{VIDEO}{}{}",
        camera_toml("up", &farm.url("up"), "a-1"),
        camera_toml("gone", &farm.url("gone"), "a-2")
    );
    let cfg = write_config(dir.path(), &o);
    let mut d = Daemon::start(&cfg).await;
    wait_status(&d, "gone", pb::CameraStatus::Offline).await;
    let seen = wait_for("retained camera status", T, || async {
        let got = retained(broker.port, "gridsight/#", 3);
        let find = |t: &str| {
            got.iter()
                .find(|(topic, _)| topic == t)
                .map(|(_, p)| p.clone())
        };
        let up = find("gridsight/cameras/up/status")?;
        let gone = find("gridsight/cameras/gone/status")?;
        (up.contains("\"online\"") && gone.contains("\"offline\"")).then_some(got)
    })
    .await;
    assert!(
        seen.contains(&("gridsight/status".to_string(), "online".to_string())),
        "{seen:?}"
    );
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
    let after = retained(broker.port, "gridsight/status", 1);
    assert_eq!(
        after,
        vec![("gridsight/status".to_string(), "offline".to_string())]
    );
    farm.shutdown().await;
}

/// Connects are admitted a bounded number at a time: 20 cameras whose servers hang in
/// DESCRIBE, 4 admitted at once, so the farm sees 4 connections per open timeout, not 20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_are_admitted_a_few_at_a_time() {
    let mounts: Vec<_> = (0..20)
        .map(|i| MountConfig::new(format!("h{i}"), 15).with_fault(Fault::HangDescribe))
        .collect();
    let farm = Farm::start(FarmConfig::new(mounts)).await.expect("farm");
    let dir = tempfile::tempdir().unwrap();
    let mut o = DaemonOpts::new(None);
    o.extra = VIDEO.replace("[video]\n", "[video]\nmax_concurrent_connects = 4\n");
    for i in 0..20 {
        let id = format!("h{i}");
        o.extra.push_str(&camera_toml(&id, &farm.url(&id), "a-1"));
    }
    let d = Daemon::start(&write_config(dir.path(), &o)).await;
    let total = || farm.total_stats().connections;
    // Sample for 4 s: within any 1.5 s (less than the 2 s open timeout), at most 4 new
    // connections: one admitted batch.
    let mut samples = Vec::new();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        samples.push((start.elapsed(), total()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, (t0, n0)) in samples.iter().enumerate() {
        for (t1, n1) in &samples[i..] {
            if *t1 - *t0 <= Duration::from_millis(1500) {
                assert!(
                    n1 - n0 <= 4,
                    "{} connections between {t0:?} and {t1:?}: more than 4 admitted at once",
                    n1 - n0
                );
            }
        }
    }
    assert!(total() >= 4, "connects started");
    // As attempts time out, the next ones go: all 20 get their turn.
    wait_for("every camera to try", T, || async {
        (0..20)
            .all(|i| {
                farm.stats(&format!("h{i}"))
                    .is_ok_and(|s| s.connections >= 1)
            })
            .then_some(())
    })
    .await;
    drop(d);
    farm.shutdown().await;
}
