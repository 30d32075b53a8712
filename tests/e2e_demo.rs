//! End to end: `gridsight demo` (what `make run` starts) comes up with no config, prints
//! its URLs and tokens, and its embedded broker, sensor fleet and reporters flow through
//! the real pipeline. The embedded broker (rumqttd) drops a client that acknowledges out of
//! order, so this also holds the daemon to MQTT's in-order PUBACK rule.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_prints_its_urls_and_ingests() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args([
            "demo",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--sensor-rate",
            "400",
            "--report-rate",
            "5",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data.path().join("demo.log")).unwrap())
        .spawn()
        .expect("start gridsight demo");
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read");
            let done = line.contains("Stop:");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let banner = tokio::time::timeout(Duration::from_secs(30), banner)
        .await
        .expect("banner in time")
        .unwrap();
    let text = banner.join("\n");
    let url = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("Dashboard:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no dashboard URL in:\n{text}"))
        .to_string();
    let (addr, token) = url
        .strip_prefix("http://")
        .and_then(|u| u.split_once("/?token="))
        .unwrap_or_else(|| panic!("bad URL {url}"));
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    for role in ["viewer", "operator", "reporter", "integrator"] {
        assert!(text.contains(role), "token for {role} printed:\n{text}");
    }
    let (code, page) = http_get(port, &format!("/?token={token}"), None);
    assert_eq!(code, 200);
    assert!(page.contains("gridsight"));

    let metric = |name: &str| {
        let (_, body) = http_get(port, "/metrics", Some(token));
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(metric("gridsight_mqtt_messages_acked_total") >= 1000.0
        && metric("gridsight_incidents_reported_total") >= 3.0
        && metric("gridsight_alerts_opened_total") >= 1.0)
    {
        if std::time::Instant::now() > deadline {
            let (_, m) = http_get(port, "/metrics", Some(token));
            let log = std::fs::read_to_string(data.path().join("demo.log")).unwrap_or_default();
            panic!("the demo did not flow through in 30 s\n{m}\n--- log ---\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric("gridsight_mqtt_disconnects_total"),
        0.0,
        "the broker never dropped the daemon"
    );

    // Cameras from the built-in farm: all but the refusing one online; a snapshot works.
    let cams = |status: &str| metric(&format!("gridsight_cameras{{status=\"{status}\"}}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(cams("online") >= 46.0 && cams("offline") >= 1.0) {
        if std::time::Instant::now() > deadline {
            let (_, list) = http_get(port, "/api/cameras", Some(token));
            panic!("demo cameras not up in 30 s: {list}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, list) = http_get(port, "/api/cameras", Some(token));
    let list: serde_json::Value = serde_json::from_str(&list).expect("camera JSON");
    let first = list["cameras"][0]["id"]
        .as_str()
        .expect("a camera")
        .to_string();
    assert_eq!(list["cameras"].as_array().unwrap().len(), 48);
    let (code, jpeg) = http_get_bytes(port, &format!("/snapshot/{first}.jpg"), Some(token));
    assert_eq!(code, 200, "snapshot of {first}");
    assert!(gridsight::media::jpeg::parse_header(&jpeg).is_some());

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "demo exits 0 on SIGTERM: {status:?}");
}
