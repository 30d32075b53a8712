//! Operations, end to end against the real binary: what systemd sees of the daemon
//! (`Type=notify`: READY once serving, RELOADING/READY around SIGHUP, STOPPING at the
//! drain, watchdog pings) and the shipped files under `deploy/` (the production config
//! checks, the Grafana dashboard's metrics exist on `/metrics`).

mod common;

use std::{os::unix::net::UnixDatagram, time::Duration};

use common::*;

const T: Duration = Duration::from_secs(15);

/// Reads datagrams until one contains `want` (or panics after `within`), returning all read.
fn recv_until(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = within.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "no {want:?} from the daemon within {within:?}; got {got:?}"
        );
        sock.set_read_timeout(Some(left)).expect("timeout");
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.contains(want);
            got.push(msg);
            if done {
                return got;
            }
        }
    }
}

/// Under systemd (`NOTIFY_SOCKET`, `WATCHDOG_USEC`): READY=1 comes once the APIs answer,
/// the watchdog is pinged, a SIGHUP is bracketed by RELOADING=1 and READY=1, and SIGTERM
/// sends STOPPING=1 before the process exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_sees_ready_watchdog_reload_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    let config = write_config(dir.path(), &DaemonOpts::new(None));
    let mut d = Daemon::start_with_env(
        &config,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    )
    .await;
    let got = recv_until(&sock, "READY=1", Duration::from_secs(5));
    let ready = got.last().unwrap();
    assert!(ready.contains("STATUS=serving: grpc"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", d.pid())),
        "READY names the daemon's pid: {ready}"
    );
    // Ready means ready: the HTTP API answers (the gRPC one too, since both were bound).
    assert_eq!(http_get(d.http, "/readyz", None).0, 200);
    // Pinged every 200 ms: a few within a second.
    let pings = recv_until(&sock, "WATCHDOG=1", Duration::from_secs(2));
    assert!(pings.iter().all(|m| m == "WATCHDOG=1"), "{pings:?}");

    let _ = std::process::Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status();
    let got = recv_until(&sock, "RELOADING=1", Duration::from_secs(5));
    assert!(got.last().unwrap().contains("RELOADING=1"));
    let got = recv_until(&sock, "STATUS=reloaded", Duration::from_secs(5));
    assert!(got.last().unwrap().starts_with("READY=1"), "{got:?}");

    d.send_term();
    let got = recv_until(&sock, "STOPPING=1", Duration::from_secs(5));
    assert!(got.last().unwrap().contains("STATUS=draining"));
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(Some(0)));
}

/// The shipped unit passes `systemd-analyze verify` (with `ExecStart` pointing at the
/// built binary) and its sandboxing scores "OK" (exposure ≤ 2.0 of 10) offline.
#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/systemd/gridsight.service"
    ))
    .expect("deploy/systemd/gridsight.service");
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gridsight.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/gridsight", binary())).unwrap();
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd)");
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success(),
        "exposure above 2.0:\n{}",
        text.lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );
}

/// Every `gridsight_*` metric name in `text` (a dashboard, a rule file).
fn metric_names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("gridsight_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The shipped production files, as an operator installs them: the production config
/// (with certificates where it expects them, and its token file) checks; Mosquitto runs
/// with the shipped broker config (TLS, passwords, ACL, persistence), and the daemon, on
/// the production config moved only to loopback ports and a temp folder, connects to it
/// over TLS, with its user and password, and stores a gateway's reading; Prometheus' rules
/// and the Grafana dashboard name only metrics that `/metrics` serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_files_work_together() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let deploy = repo.join("deploy");
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("tls")).unwrap();
    let pki = tls::Pki::new(&etc.join("tls"));
    for (from, to) in [
        ("server.crt", "server.crt"),
        ("server.key", "server.key"),
        ("ca.crt", "clients-ca.crt"),
        ("ca.crt", "broker-ca.crt"),
    ] {
        if from != to {
            std::fs::copy(pki.dir.join(from), etc.join("tls").join(to)).unwrap();
        }
    }
    std::fs::copy(
        deploy.join("production/tokens.toml"),
        etc.join("tokens.toml"),
    )
    .unwrap();
    let production = std::fs::read_to_string(deploy.join("production/gridsight.toml")).unwrap();
    let config = etc.join("gridsight.toml");
    std::fs::write(&config, &production).unwrap();
    let check = std::process::Command::new(binary())
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the production config checks:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The broker, from deploy/mosquitto/ with its paths moved into the temp folder.
    let mqtt = dir.path().join("mosquitto");
    std::fs::create_dir_all(&mqtt).unwrap();
    let passwd = mqtt.join("passwd");
    for (i, (user, pass)) in [("gridsight", "change-me-mqtt"), ("gw-1", "gw-secret")]
        .iter()
        .enumerate()
    {
        let mut cmd = std::process::Command::new("mosquitto_passwd");
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        assert!(cmd
            .arg(&passwd)
            .args([user, pass])
            .status()
            .unwrap()
            .success());
    }
    let port = free_port();
    let conf = std::fs::read_to_string(deploy.join("mosquitto/gridsight.conf"))
        .unwrap()
        .replace(
            "/etc/mosquitto/certs/ca.crt",
            &pki.dir.join("ca.crt").display().to_string(),
        )
        .replace(
            "/etc/mosquitto/certs/server.crt",
            &pki.dir.join("server.crt").display().to_string(),
        )
        .replace(
            "/etc/mosquitto/certs/server.key",
            &pki.dir.join("server.key").display().to_string(),
        )
        .replace("/var/lib/mosquitto/", &format!("{}/", mqtt.display()))
        .replace("/etc/mosquitto/passwd", &passwd.display().to_string())
        .replace(
            "/etc/mosquitto/gridsight.acl",
            &deploy.join("mosquitto/gridsight.acl").display().to_string(),
        )
        .replace("listener 8883", &format!("listener {port} 127.0.0.1"));
    assert!(conf.contains(&format!("listener {port}")), "{conf}");
    // As root, mosquitto would drop to its own user, which cannot read the temp folder.
    let _broker = Mosquitto::start_conf_text(&format!("user root\n{conf}"), port);

    // The daemon on the production config, moved to loopback and a temp folder only.
    let mut doc: toml_edit::DocumentMut = production.parse().unwrap();
    doc["store"]["data_dir"] = toml_edit::value(dir.path().join("data").display().to_string());
    doc["api"]["grpc_listen"] = toml_edit::value(format!("127.0.0.1:{}", free_port()));
    doc["api"]["http_listen"] = toml_edit::value(format!("127.0.0.1:{}", free_port()));
    doc["mqtt"]["host"] = toml_edit::value("127.0.0.1");
    doc["mqtt"]["port"] = toml_edit::value(i64::from(port));
    let run = etc.join("gridsight-run.toml");
    std::fs::write(&run, doc.to_string()).unwrap();
    let d = Daemon::start_tls(&run, &pki).await;
    let viewer = "change-me-viewer-0001";
    wait_for("the daemon to subscribe to the broker", T, || async {
        let (code, body) = pki.https_get(d.http, "/metrics", Some(viewer), None);
        (code == 200 && sample_value(&body, "gridsight_mqtt_connected") == 1.0).then_some(())
    })
    .await;
    // A gateway, with its own user, over TLS: its reading is stored (the ACL lets it
    // publish and the daemon read).
    let publish = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-u", "gw-1", "-P", "gw-secret"])
        .arg("--cafile")
        .arg(pki.dir.join("ca.crt"))
        .args(["-t", "gridsight/sensors/town-01-c01/smoke/smk-prod-1"])
        .args(["-m", r#"{"device_time": 1795392000000, "state": "alarm"}"#])
        .output()
        .unwrap();
    assert!(publish.status.success(), "{publish:?}");
    let metrics = wait_for("the gateway's reading to be stored", T, || async {
        let (_, body) = pki.https_get(d.http, "/metrics", Some(viewer), None);
        (sample_value(&body, "gridsight_mqtt_messages_acked_total") >= 1.0).then_some(body)
    })
    .await;
    let mut unknown = std::collections::BTreeMap::new();

    // Names the exposition declares (`# TYPE name kind`), and the sample names they make.
    let mut served = std::collections::BTreeSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap().to_string();
            for suffix in ["", "_total", "_bucket", "_sum", "_count", "_created"] {
                served.insert(format!("{name}{suffix}"));
            }
        }
    }
    for file in ["prometheus/gridsight-rules.yml", "grafana/gridsight.json"] {
        let text = std::fs::read_to_string(deploy.join(file)).unwrap();
        let used = metric_names_in(&text);
        assert!(used.len() >= 8, "{file} names {used:?}");
        let missing: Vec<_> = used.difference(&served).cloned().collect();
        if !missing.is_empty() {
            unknown.insert(file, missing);
        }
    }
    assert!(
        unknown.is_empty(),
        "names of metrics /metrics does not serve: {unknown:?}"
    );
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy.join("grafana/gridsight.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    assert!(dashboard["panels"]
        .as_array()
        .is_some_and(|p| p.len() >= 10));
    let scrape = std::fs::read_to_string(deploy.join("prometheus/prometheus.yml")).unwrap();
    assert!(
        scrape.contains("credentials_file") && scrape.contains("scheme: https"),
        "Prometheus scrapes over TLS with a viewer token"
    );
}
